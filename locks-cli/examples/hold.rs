//! Hold a few locks on a Redis server until stdin closes, for trying the `locks` tool:
//!
//! ```sh
//! cargo run -p locks-cli --example hold -- redis://127.0.0.1:6379
//! ```

use std::time::Duration;

use locks_core::{AcquireOptions, LockService};
use locks_redis::RedisBackend;
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let locks = LockService::new(RedisBackend::connect(&url).await?)?;
    let opts = AcquireOptions::new().ttl(Duration::from_secs(30));
    let mut guards = Vec::new();
    for order in [42, 43] {
        guards.push(
            locks
                .acquire_opts(&format!("payment:{order}"), opts.clone())
                .await?,
        );
    }
    guards.push(
        locks
            .acquire_opts("job:nightly-report", opts.clone())
            .await?,
    );
    let pool = locks.semaphore("pool:db", 3)?;
    guards.push(pool.acquire_opts(opts.clone()).await?);
    guards.push(pool.acquire_opts(opts.clone()).await?);
    let config = locks.rwlock("config")?;
    let reader = config.read_opts(opts.clone()).await?;
    guards.push(reader);
    // A writer arrives: it waits for the reader, and marks itself as waiting.
    let writer = {
        let config = locks.rwlock("config")?;
        let opts = opts.clone().wait_timeout(Duration::from_secs(3600));
        tokio::spawn(async move { config.write_opts(opts).await })
    };
    println!(
        "holding {} leases; close stdin to release them",
        guards.len()
    );
    let mut sink = Vec::new();
    tokio::io::stdin().read_to_end(&mut sink).await?;
    writer.abort();
    for guard in guards {
        guard.release().await?;
    }
    locks.shutdown().await;
    Ok(())
}
