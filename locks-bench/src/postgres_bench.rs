//! PostgreSQL beside Redis: the same lock-service cycles (acquire + release through
//! `LockService`, uncontended) on both backends, sequential and with concurrent tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use locks_core::{LockBackend, LockService};
use locks_postgres::PostgresBackend;
use locks_redis::RedisBackend;
use locks_testkit::postgres_server::PostgresServer;
use tokio::task::JoinSet;

use crate::table::{Row, Table, Verdict, median, rate, times};
use crate::{Config, Flavor, Result};

/// Concurrent tasks of the concurrent figure (each on keys of its own).
const TASKS: usize = 16;

/// Acquire+release cycles per second of `tasks` tasks, each on its own key, for `time`.
async fn cycles(
    backend: Arc<dyn LockBackend>,
    tag: &str,
    tasks: usize,
    time: Duration,
) -> Result<f64> {
    let locks = LockService::builder_arc(backend)
        .auto_renew(false)
        .build()?;
    let start = Instant::now();
    let until = start + time;
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (locks, key) = (locks.clone(), format!("{tag}:{t}"));
        set.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                locks.acquire(&key).await?.release().await?;
                n += 1;
            }
            Ok::<u64, locks_core::LockError>(n)
        });
    }
    let mut total = 0;
    while let Some(r) = set.join_next().await {
        total += r??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Run the PostgreSQL figures against a private server (the testkit fixture), Redis at
/// `redis_url` beside them. Rounds alternate the two backends.
pub async fn run(redis_url: &str, cfg: &Config, table: &mut Table) -> Result<String> {
    let server = PostgresServer::start().await?;
    let pg: Arc<dyn LockBackend> = Arc::new(
        PostgresBackend::builder(server.url())
            .pool_size(TASKS)
            .connect()
            .await?,
    );
    let redis: Arc<dyn LockBackend> = Arc::new(RedisBackend::connect(redis_url).await?);
    let version: String = {
        let client = locks_testkit::postgres_server::connect(&server.url()).await?;
        client.query_one("SHOW server_version", &[]).await?.get(0)
    };
    let slice = cfg.measure / cfg.rounds;
    for (figure, tasks) in [("sequential", 1), ("concurrent", TASKS)] {
        let (mut p, mut r) = (Vec::new(), Vec::new());
        // Warm-up: connections, prepared statements, scripts.
        cycles(
            Arc::clone(&pg),
            &format!("{}:pgw", cfg.run_id),
            tasks,
            slice / 4,
        )
        .await?;
        cycles(
            Arc::clone(&redis),
            &format!("{}:rw", cfg.run_id),
            tasks,
            slice / 4,
        )
        .await?;
        for round in 0..cfg.rounds {
            let tag = format!("{}:{figure}:{round}", cfg.run_id);
            p.push(cycles(Arc::clone(&pg), &format!("{tag}:pg"), tasks, slice).await?);
            r.push(cycles(Arc::clone(&redis), &format!("{tag}:redis"), tasks, slice).await?);
        }
        let ratios: Vec<f64> = p.iter().zip(&r).map(|(a, b)| a / b.max(1e-9)).collect();
        let (pm, rm) = (median(p), median(r));
        table.push(Row {
            figure: format!("postgres: {figure} acquire+release ({tasks} task(s)), cycles/s"),
            runtime: Flavor::MultiThread.label(),
            locks: rate(pm),
            reference: format!("redis backend, same cycles: {}", rate(rm)),
            ratio: times(median(ratios)),
            target: String::new(),
            verdict: Verdict::Info,
        });
    }
    drop((pg, redis));
    drop(server);
    Ok(version)
}
