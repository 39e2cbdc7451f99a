//! Leader election — three schedulers campaign; each leader is deployed away in turn and the
//! next takes over with a higher term; two leaders never act at once.
//!
//! `cargo run -p locks-tests --example leader_election` (memory) or with `REDIS_URL=...`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::leader_election(backend, 3).await?;
    println!("{report:#?}");
    if report.overlaps > 0 || !report.terms.windows(2).all(|w| w[0] < w[1]) {
        return Err("two leaders at once, or a term went backwards".into());
    }
    Ok(())
}
