//! Resource pool — 16 workers, each with its own service (as separate processes would), share
//! 4 database connections through a `Pool`: at most 4 in use, never one by two workers.
//!
//! `cargo run -p locks-tests --example resource_pool` (memory) or with `REDIS_URL=...`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{LockBackend, LockService};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A stand-in for a database connection that notices being used by two workers at once.
struct Connection {
    busy: AtomicBool,
}

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// Queries run.
    pub queries: u64,
    /// Most connections in use at once (at most the pool size).
    pub max_in_use: usize,
    /// Times a connection was handed to a second worker while in use (none).
    pub double_use: u64,
}

/// `workers` workers run `queries_each` queries each on a pool of `connections`.
pub async fn run(
    backend: Arc<dyn LockBackend>,
    workers: usize,
    connections: usize,
    queries_each: u64,
) -> Result<Report, Error> {
    let conns: Arc<Vec<Connection>> = Arc::new(
        (0..connections)
            .map(|_| Connection {
                busy: AtomicBool::new(false),
            })
            .collect(),
    );
    let (in_use, max_in_use, double_use) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut running = Vec::new();
    for _ in 0..workers {
        let locks = LockService::builder_arc(backend.clone()).build()?;
        // Every service names the same resources in the same order.
        let pool = locks.pool("db-pool", (0..connections).collect())?;
        let (conns, in_use, max_in_use, double_use) = (
            conns.clone(),
            in_use.clone(),
            max_in_use.clone(),
            double_use.clone(),
        );
        running.push(tokio::spawn(async move {
            for _ in 0..queries_each {
                let conn = pool.acquire().await?; // waits for a free connection
                let c = &conns[*conn];
                if c.busy.swap(true, Ordering::SeqCst) {
                    double_use.fetch_add(1, Ordering::SeqCst);
                }
                let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_use.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await; // the query
                in_use.fetch_sub(1, Ordering::SeqCst);
                c.busy.store(false, Ordering::SeqCst);
                conn.release().await?; // or drop it
            }
            Ok::<_, locks_core::LockError>(())
        }));
    }
    for worker in running {
        worker.await??;
    }
    Ok(Report {
        queries: workers as u64 * queries_each,
        max_in_use: max_in_use.load(Ordering::SeqCst),
        double_use: double_use.load(Ordering::SeqCst),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 16, 4, 10).await?;
    println!(
        "{} queries by 16 workers on 4 connections: at most {} in use at once, {} shared",
        r.queries, r.max_in_use, r.double_use
    );
    if r.max_in_use > 4 || r.double_use > 0 {
        return Err("more connections in use than the pool has, or one shared".into());
    }
    Ok(())
}
