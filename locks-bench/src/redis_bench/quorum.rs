//! A quorum (Redlock) of 3 private redis-servers beside a single node: uncontended and
//! contended acquire+release through the lock service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use locks_core::{AcquireOptions, LockBackend, LockService};
use locks_redis::RedisBackend;
use locks_testkit::redis_server::RedisServer;
use tokio::task::JoinSet;

use super::{new_histogram, us};
use crate::table::{Row, Table, Verdict, micros, rate, times};
use crate::{Config, Result};

/// Workers of the contended figure (each with its own service and connections).
pub(super) const WORKERS: usize = 8;

/// Sequential acquire+release cycles on one service for `dur`: cycles per second and the p50
/// cycle time.
pub(super) async fn uncontended(
    svc: &LockService,
    key: &str,
    dur: Duration,
) -> Result<(f64, Duration)> {
    let mut hist = new_histogram()?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        let t = Instant::now();
        svc.acquire(key).await?.release().await?;
        hist.record(us(t.elapsed()))?;
        n += 1;
    }
    let p50 = Duration::from_micros(hist.value_at_quantile(0.5));
    Ok((n as f64 / start.elapsed().as_secs_f64(), p50))
}

/// Sequential acquire+release on each of `svcs` in turn, in `cfg.rounds` interleaved rounds
/// of `cfg.measure / rounds` each (machine noise hits both alike): each one's mean cycles per
/// second and mean p50 cycle time.
pub(super) async fn interleaved(
    svcs: [&LockService; 2],
    key: &str,
    cfg: &Config,
) -> Result<[(f64, Duration); 2]> {
    let rounds = cfg.rounds.max(1);
    let mut sums = [(0.0, Duration::ZERO); 2];
    for _ in 0..rounds {
        for (svc, sum) in svcs.iter().zip(&mut sums) {
            let (rate, p50) = uncontended(svc, key, cfg.measure / rounds).await?;
            sum.0 += rate;
            sum.1 += p50;
        }
    }
    Ok(sums.map(|(rate, p50)| (rate / f64::from(rounds), p50 / rounds)))
}

/// `WORKERS` services loop on one key for `dur`: hand-overs per second and the p50 wait.
pub(super) async fn contended(
    backends: Vec<Arc<dyn LockBackend>>,
    key: &str,
    dur: Duration,
) -> Result<(f64, Duration)> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for backend in backends {
        let svc = LockService::builder_arc(backend).build()?;
        let (key, done) = (key.to_owned(), Arc::clone(&done));
        tasks.spawn(async move {
            let mut waits = new_histogram()?;
            let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(10));
            while start.elapsed() < dur {
                let t = Instant::now();
                let guard = svc.acquire_opts(&key, opts.clone()).await?;
                waits.record(us(t.elapsed()))?;
                tokio::task::yield_now().await;
                guard.release().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            svc.shutdown().await;
            Ok::<Histogram<u64>, crate::BoxError>(waits)
        });
    }
    let mut waits = new_histogram()?;
    while let Some(joined) = tasks.join_next().await {
        waits.add(joined??)?;
    }
    let ops = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    Ok((ops, Duration::from_micros(waits.value_at_quantile(0.5))))
}

/// The quorum rows: a quorum of 3 private servers (started here) beside the single server at
/// `url`, uncontended (1 service, sequential) and contended (`WORKERS` services on one key).
pub async fn run(url: &str, cfg: &Config, table: &mut Table) -> Result<()> {
    let servers = futures::future::try_join_all((0..3).map(|_| RedisServer::start())).await?;
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let key = format!("{}:quorum", cfg.run_id);
    let single = LockService::new(RedisBackend::connect(url).await?)?;
    let quorum = LockService::new(locks_quorum::redis::connect(&urls).await?)?;
    // Warm-up: scripts and connections.
    for svc in [&single, &quorum] {
        svc.acquire(&key).await?.release().await?;
    }
    let [(s_rate, s_p50), (q_rate, q_p50)] = interleaved([&single, &quorum], &key, cfg).await?;
    table.push(Row {
        figure: "quorum of 3: sequential acquire+release".into(),
        runtime: "multi-thread",
        locks: format!("{} (p50 {})", rate(q_rate), micros(q_p50)),
        reference: format!("single node: {} (p50 {})", rate(s_rate), micros(s_p50)),
        ratio: times(q_rate / s_rate),
        target: String::new(),
        verdict: Verdict::Info,
    });
    single.shutdown().await;
    quorum.shutdown().await;

    let mut single_nodes: Vec<Arc<dyn LockBackend>> = Vec::new();
    let mut quorums: Vec<Arc<dyn LockBackend>> = Vec::new();
    for _ in 0..WORKERS {
        single_nodes.push(Arc::new(RedisBackend::connect(url).await?));
        quorums.push(Arc::new(locks_quorum::redis::connect(&urls).await?));
    }
    let contended_key = format!("{key}:contended");
    let (s_ops, s_wait) = contended(single_nodes, &contended_key, cfg.handoff).await?;
    let (q_ops, q_wait) = contended(quorums, &contended_key, cfg.handoff).await?;
    table.push(Row {
        figure: format!("quorum of 3: {WORKERS} workers on one key"),
        runtime: "multi-thread",
        locks: format!("{} (wait p50 {})", rate(q_ops), micros(q_wait)),
        reference: format!("single node: {} (wait p50 {})", rate(s_ops), micros(s_wait)),
        ratio: times(q_ops / s_ops),
        target: String::new(),
        verdict: Verdict::Info,
    });
    drop(servers);
    Ok(())
}
