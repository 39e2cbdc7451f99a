use locks_core::LockService;
use locks_macros::with_lock;

#[derive(Debug)]
struct AppError;

#[with_lock(locks = locks, key = "payment:{order_id}")]
async fn charge(locks: &LockService, order_id: u64) -> Result<u64, AppError> {
    Ok(order_id)
}

fn main() {}
