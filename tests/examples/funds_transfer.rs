//! Lock hierarchy: funds transfer — two tellers move money in opposite directions between the
//! same two accounts. `acquire_all` takes both account locks in one global order, so they
//! never deadlock, and the total is conserved.
//!
//! `cargo run -p locks-tests --example funds_transfer` (memory) or with `REDIS_URL=...`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use locks_core::{AcquireOptions, LockBackend, LockService};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// Transfers made.
    pub transfers: u64,
    /// Sum of the balances before.
    pub total_before: i64,
    /// Sum of the balances after (the same).
    pub total_after: i64,
}

/// Two tellers, each with its own service, make `transfers_each` transfers in opposite
/// directions.
pub async fn run(backend: Arc<dyn LockBackend>, transfers_each: u64) -> Result<Report, Error> {
    let accounts = Arc::new(Mutex::new(HashMap::from([
        ("account:alice", 10_000i64),
        ("account:bob", 10_000i64),
    ])));
    let total = |a: &Mutex<HashMap<&str, i64>>| -> i64 {
        a.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    };
    let total_before = total(&accounts);
    let mut tellers = Vec::new();
    for (from, to) in [
        ("account:alice", "account:bob"),
        ("account:bob", "account:alice"),
    ] {
        let locks = LockService::builder_arc(backend.clone()).build()?;
        let accounts = accounts.clone();
        tellers.push(tokio::spawn(async move {
            for i in 0..transfers_each {
                // Both locks, taken in one global (sorted) order whatever order we name them.
                let both = locks
                    .acquire_all(&[from, to], AcquireOptions::new())
                    .await?;
                let amount = (i % 13 + 1) as i64;
                let debit = accounts.lock().unwrap_or_else(|p| p.into_inner())[from] - amount;
                tokio::task::yield_now().await; // read, think, write: safe only under both locks
                {
                    let mut balances = accounts.lock().unwrap_or_else(|p| p.into_inner());
                    balances.insert(from, debit);
                    *balances.entry(to).or_insert(0) += amount;
                }
                both.release().await?;
            }
            Ok::<_, locks_core::LockError>(())
        }));
    }
    for teller in tellers {
        teller.await??;
    }
    Ok(Report {
        transfers: transfers_each * 2,
        total_before,
        total_after: total(&accounts),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 1000).await?;
    println!(
        "{} transfers: total {} before, {} after",
        r.transfers, r.total_before, r.total_after
    );
    if r.total_before != r.total_after {
        return Err("money was created or destroyed".into());
    }
    Ok(())
}
