//! Timeout: give up after a wait budget — a slow report holds the lock; a caller waits 500 ms,
//! gets `AcquireTimeout` with the time waited and the attempts made, and moves on.
//!
//! `cargo run -p locks-tests --example timeout` (memory) or with `REDIS_URL=...`.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{AcquireOptions, LockBackend, LockError, LockService};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// How long the caller waited before giving up (at least the budget).
    pub waited: Duration,
    /// Acquire attempts it made meanwhile.
    pub attempts: u32,
    /// Whether the slow holder still held the lock when the caller gave up (yes).
    pub still_held: bool,
}

/// A slow report holds `report:monthly`; a caller on another service waits up to `budget`.
pub async fn run(backend: Arc<dyn LockBackend>, budget: Duration) -> Result<Report, Error> {
    let slow = LockService::builder_arc(backend.clone()).build()?;
    let caller = LockService::builder_arc(backend).build()?;
    let holder = slow.acquire("report:monthly").await?;

    let attempt = caller
        .acquire_opts("report:monthly", AcquireOptions::new().wait_timeout(budget))
        .await;

    let still_held = holder.is_held().await?;
    holder.release().await?;
    match attempt {
        Err(LockError::AcquireTimeout {
            waited, attempts, ..
        }) => Ok(Report {
            waited,
            attempts,
            still_held,
        }), // move on: serve the cached report, retry later, ...
        Ok(_guard) => Err("got a lock that was held for longer than the budget".into()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let budget = Duration::from_millis(500);
    let r = run(backend, budget).await?;
    println!(
        "gave up after {:?} ({} attempts); the holder still held it: {}",
        r.waited, r.attempts, r.still_held
    );
    if r.waited < budget || !r.still_held {
        return Err("gave up early, or the holder lost its lock".into());
    }
    Ok(())
}
