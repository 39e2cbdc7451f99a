//! Resource pool — 16 workers share 4 database connections through a 4-permit semaphore.
//!
//! `cargo run -p locks-tests --example resource_pool` (memory) or with `REDIS_URL=...`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::resource_pool(backend, 16, 4, 10).await?;
    println!("{report:#?}");
    if report.max_in_use > 4 || report.double_use > 0 {
        return Err("more connections in use than the pool has".into());
    }
    Ok(())
}
