use locks_core::{LockError, LockService};
use locks_macros::with_lock;

#[with_lock(locks = locks, key = "job:{name}", on_contended = "skip", wait = "5s")]
async fn run(locks: &LockService, name: &str) -> Result<Option<usize>, LockError> {
    Ok(name.len())
}

fn main() {}
