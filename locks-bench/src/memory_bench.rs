//! The in-memory backend next to a raw `DashMap` and `tokio::sync::Mutex`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use locks_core::{AcquireOptions, LockService};
use locks_memory::MemoryBackend;
use tokio::task::JoinSet;

use crate::table::{Row, Table, Verdict, nanos, rate, times};
use crate::{Config, Flavor, Result};

/// Operations per timing check.
const BATCH: u32 = 256;

/// Run the memory figures: uncontended on both runtimes, contended on the multi-thread one.
pub fn run(cfg: &Config, table: &mut Table) -> Result<()> {
    for flavor in [Flavor::MultiThread, Flavor::CurrentThread] {
        let rt = flavor.build()?;
        rt.block_on(uncontended(flavor, cfg, table))?;
    }
    let rt = Flavor::MultiThread.build()?;
    rt.block_on(contended(cfg, table))?;
    Ok(())
}

/// Mean time of `op`, measured in batches for `dur`.
fn time_sync(dur: Duration, mut op: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..BATCH {
            op();
        }
        n += u64::from(BATCH);
    }
    (n, start.elapsed())
}

async fn uncontended(flavor: Flavor, cfg: &Config, table: &mut Table) -> Result<()> {
    let svc = LockService::new(MemoryBackend::new())?;
    let key = "bench:memory";
    let full_key = format!("_lock:{key}");
    let map: DashMap<String, u128> = DashMap::new();
    let mutex = tokio::sync::Mutex::new(0u64);
    let slice = cfg.measure / cfg.rounds;
    let mut lib = (0u64, Duration::ZERO);
    let mut raw = (0u64, Duration::ZERO);
    let mut tmx = (0u64, Duration::ZERO);
    // Warm-up.
    for _ in 0..1000 {
        svc.acquire(key).await?.release().await?;
    }
    for _ in 0..cfg.rounds {
        let (n, t) = time_sync(slice, || {
            map.insert(black_box(full_key.clone()), black_box(1));
            black_box(map.remove(black_box(full_key.as_str())));
        });
        raw.0 += n;
        raw.1 += t;
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice {
            for _ in 0..BATCH {
                let mut g = mutex.lock().await;
                *g += 1;
            }
            n += u64::from(BATCH);
        }
        tmx.0 += n;
        tmx.1 += start.elapsed();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < slice {
            for _ in 0..BATCH {
                svc.acquire(key).await?.release().await?;
            }
            n += u64::from(BATCH);
        }
        lib.0 += n;
        lib.1 += start.elapsed();
    }
    svc.shutdown().await;
    let per = |(n, t): (u64, Duration)| t / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let (lib, raw, tmx) = (per(lib), per(raw), per(tmx));
    let ratio = lib.as_secs_f64() / raw.as_secs_f64();
    table.push(Row {
        figure: "memory: uncontended acquire+release vs DashMap".into(),
        runtime: flavor.label(),
        locks: format!("{} per cycle", nanos(lib)),
        reference: format!("DashMap insert+remove: {}", nanos(raw)),
        ratio: times(ratio),
        target: "≤ 3×".into(),
        verdict: Verdict::of(ratio <= 3.0),
    });
    table.push(Row {
        figure: "memory: uncontended acquire+release vs tokio Mutex".into(),
        runtime: flavor.label(),
        locks: format!("{} per cycle", nanos(lib)),
        reference: format!("tokio::sync::Mutex lock+unlock: {}", nanos(tmx)),
        ratio: times(lib.as_secs_f64() / tmx.as_secs_f64()),
        target: String::new(),
        verdict: Verdict::Info,
    });
    Ok(())
}

/// Two tasks on a two-worker multi-thread runtime fight over one key, each through its own
/// service on a shared backend; the reference is a `tokio::sync::Mutex` fought over the same
/// way.
async fn contended(cfg: &Config, table: &mut Table) -> Result<()> {
    let backend = MemoryBackend::new();
    let services = [
        LockService::new(backend.clone())?,
        LockService::new(backend.clone())?,
    ];
    let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(10));
    let mut lib = (0u64, Duration::ZERO, [0u64; 2]);
    let mut tmx = (0u64, Duration::ZERO);
    let slice = cfg.measure / cfg.rounds;
    let mutex = Arc::new(tokio::sync::Mutex::new(0u64));
    for _ in 0..cfg.rounds {
        let start = Instant::now();
        let deadline = start + slice;
        let mut tasks = JoinSet::new();
        for _ in 0..2 {
            let mutex = Arc::clone(&mutex);
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let mut g = mutex.lock().await;
                    *g += 1;
                    drop(g);
                    n += 1;
                }
                n
            });
        }
        while let Some(n) = tasks.join_next().await {
            tmx.0 += n?;
        }
        tmx.1 += start.elapsed();

        let start = Instant::now();
        let deadline = start + slice;
        let mut tasks = JoinSet::new();
        for (i, svc) in services.iter().enumerate() {
            let (svc, opts) = (svc.clone(), opts.clone());
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    svc.acquire_with("bench:contended", opts.clone())
                        .await?
                        .release()
                        .await?;
                    n += 1;
                }
                Ok::<_, crate::BoxError>((i, n))
            });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, n) = r??;
            lib.0 += n;
            lib.2[i] += n;
        }
        lib.1 += start.elapsed();
    }
    for svc in &services {
        svc.shutdown().await;
    }
    let lib_rate = lib.0 as f64 / lib.1.as_secs_f64();
    let tmx_rate = tmx.0 as f64 / tmx.1.as_secs_f64();
    let total = lib.0.max(1) as f64;
    table.push(Row {
        figure: "memory: 2 threads contended, critical sections/s".into(),
        runtime: Flavor::MultiThread.label(),
        locks: format!(
            "{} (shares {:.0}/{:.0} %)",
            rate(lib_rate),
            100.0 * lib.2[0] as f64 / total,
            100.0 * lib.2[1] as f64 / total
        ),
        reference: format!("tokio::sync::Mutex, 2 tasks: {}", rate(tmx_rate)),
        ratio: times(lib_rate / tmx_rate),
        target: String::new(),
        verdict: Verdict::Info,
    });
    Ok(())
}
