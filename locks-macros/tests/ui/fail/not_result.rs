use locks_core::LockService;
use locks_macros::with_lock;

#[with_lock(locks = locks, key = "payment:{order_id}")]
async fn charge(locks: &LockService, order_id: u64) -> u64 {
    order_id
}

fn main() {}
