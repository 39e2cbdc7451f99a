use locks_core::{LockError, LockService};
use locks_macros::with_lock;

#[with_lock(locks = locks, key = "payment:{order}")]
async fn charge(locks: &LockService, order_id: u64) -> Result<u64, LockError> {
    Ok(order_id)
}

fn main() {}
