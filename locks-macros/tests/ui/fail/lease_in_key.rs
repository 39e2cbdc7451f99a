use locks_core::{LockError, LockService};
use locks_macros::with_lock;

#[with_lock(locks = locks, key = "payment:{lease}")]
async fn charge(locks: &LockService, lease: locks_core::LeaseHandle) -> Result<u64, LockError> {
    Ok(lease.fence())
}

fn main() {}
