use locks_core::LockError;
use locks_macros::with_lock;

#[with_lock(key = "payment:{order_id}")]
async fn charge(order_id: u64) -> Result<u64, LockError> {
    Ok(order_id)
}

fn main() {}
