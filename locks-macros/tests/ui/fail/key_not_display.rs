use locks_core::{LockError, LockService};
use locks_macros::with_lock;

struct Order {
    id: u64,
}

#[with_lock(locks = locks, key = "order:{order}")]
async fn ship(locks: &LockService, order: &Order) -> Result<u64, LockError> {
    Ok(order.id)
}

fn main() {}
