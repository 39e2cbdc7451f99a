//! Mutex: payment per order id — four instances receive the same payment requests; each order
//! is charged exactly once.
//!
//! `cargo run -p locks-tests --example payment` (memory) or with `REDIS_URL=redis://host:port`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backend = locks_tests::backend_from_env().await?;
    let report = locks_tests::patterns::payment(backend, 4, 50).await?;
    println!("{report:#?}");
    if report.double_charges > 0 || report.charged_once != report.orders {
        return Err("an order was not charged exactly once".into());
    }
    Ok(())
}
