use locks_core::{LockError, LockService};
use locks_macros::with_lock;

#[with_lock(locks = locks, key = "job:{name}", on_contended = "fail")]
async fn run(locks: &LockService, name: &str) -> Result<(), LockError> {
    let _ = name;
    Ok(())
}

fn main() {}
