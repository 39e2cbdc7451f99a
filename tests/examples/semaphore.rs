//! Semaphore with crash-safe permits — at most 3 exports at once; an exporter crashes holding
//! a permit, which comes back by itself when its ttl passes.
//!
//! `cargo run -p locks-tests --example semaphore` (memory) or with `REDIS_URL=...`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::semaphore(backend, 3, 12).await?;
    println!("{report:#?}");
    if report.max_concurrent > 3 || report.crashed_permit_returned_after == std::time::Duration::MAX
    {
        return Err("too many exports at once, or the crashed permit never came back".into());
    }
    Ok(())
}
