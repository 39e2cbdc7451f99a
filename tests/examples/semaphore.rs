//! Semaphore with crash-safe permits — at most 3 exports at once; an exporter crashes holding
//! a permit, which comes back by itself when its ttl passes.
//!
//! `cargo run -p locks-tests --example semaphore` (memory) or with `REDIS_URL=...`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{AcquireOptions, LockBackend, LockService};
use tokio::time::Instant;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// Most exports at once (at most the permit count).
    pub max_concurrent: usize,
    /// How long the crashed exporter's permit stayed taken (`None`: it never came back).
    pub crashed_permit_returned_after: Option<Duration>,
}

/// `exports` exporters, each with its own service, share `permits` permits; one exporter
/// crashed holding a permit with a 500 ms ttl just before.
pub async fn run(
    backend: Arc<dyn LockBackend>,
    permits: u32,
    exports: usize,
) -> Result<Report, Error> {
    let crashed_at = Instant::now();
    let crasher = LockService::builder_arc(backend.clone()).build()?;
    let crashed = crasher
        .semaphore("exports", permits)?
        .acquire_opts(AcquireOptions::new().ttl(Duration::from_millis(500)))
        .await?;
    let crashed_token = crashed.token();
    crashed.abandon(); // the crash: no release, no renewal

    let (running_now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let returned_after = Arc::new(Mutex::new(None));
    let mut running = Vec::new();
    for _ in 0..exports {
        let exports = LockService::builder_arc(backend.clone())
            .build()?
            .semaphore("exports", permits)?;
        let (running_now, max, returned_after) =
            (running_now.clone(), max.clone(), returned_after.clone());
        running.push(tokio::spawn(async move {
            let permit = exports.acquire().await?; // one of `permits` slots, renewed while held
            if exports
                .holders()
                .await?
                .iter()
                .all(|h| h.owner != crashed_token)
            {
                let mut after = returned_after.lock().unwrap_or_else(|p| p.into_inner());
                after.get_or_insert_with(|| crashed_at.elapsed()); // the crashed permit is back
            }
            let now = running_now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await; // the export
            running_now.fetch_sub(1, Ordering::SeqCst);
            permit.release().await
        }));
    }
    for exporter in running {
        exporter.await??;
    }
    let crashed_permit_returned_after = *returned_after.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Report {
        max_concurrent: max.load(Ordering::SeqCst),
        crashed_permit_returned_after,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 3, 12).await?;
    println!(
        "12 exports, 3 permits: at most {} at once; the crashed permit came back after {:?}",
        r.max_concurrent, r.crashed_permit_returned_after
    );
    if r.max_concurrent > 3 || r.crashed_permit_returned_after.is_none() {
        return Err("too many exports at once, or the crashed permit never came back".into());
    }
    Ok(())
}
