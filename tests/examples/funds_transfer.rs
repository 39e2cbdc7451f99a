//! Lock hierarchy: funds transfer — two tellers move money in opposite directions between the
//! same two accounts with `acquire_all`; no deadlock, and the total is conserved.
//!
//! `cargo run -p locks-tests --example funds_transfer` (memory) or with `REDIS_URL=...`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::funds_transfer(backend, 1000).await?;
    println!("{report:#?}");
    if report.total_before != report.total_after {
        return Err("money was created or destroyed".into());
    }
    Ok(())
}
