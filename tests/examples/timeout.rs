//! Timeout: give up after a wait budget — a slow report holds the lock; a caller waits 500 ms,
//! gets `AcquireTimeout` with the time waited and the attempts made, and moves on.
//!
//! `cargo run -p locks-tests --example timeout` (memory) or with `REDIS_URL=...`.

use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::timeout(backend, Duration::from_millis(500)).await?;
    println!("{report:#?}");
    if report.waited < report.budget || !report.still_held {
        return Err("gave up early, or the holder lost its lock".into());
    }
    Ok(())
}
