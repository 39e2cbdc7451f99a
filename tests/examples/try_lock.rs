//! Try-lock: skip work already in progress — four workers scan the same 40 jobs and skip the
//! ones another worker is running; each job runs exactly once.
//!
//! `cargo run -p locks-tests --example try_lock` (memory) or with `REDIS_URL=...`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::try_lock(backend, 4, 40).await?;
    println!("{report:#?}");
    if report.runs_per_job.iter().any(|&n| n != 1) {
        return Err("a job ran twice or not at all".into());
    }
    Ok(())
}
