//! The in-memory backend next to a raw `DashMap` and `tokio::sync::Mutex`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use locks_core::{AcquireOptions, LockService};
use locks_memory::MemoryBackend;
use tokio::task::JoinSet;

use crate::table::{Row, Table, Verdict, median, nanos, rate, times};
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

/// Nanoseconds per operation, measured in batches for `dur`.
async fn time_ns<F, Fut>(dur: Duration, mut op: F) -> Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < dur {
        for _ in 0..BATCH {
            op().await?;
        }
        n += u64::from(BATCH);
    }
    Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
}

async fn uncontended(flavor: Flavor, cfg: &Config, table: &mut Table) -> Result<()> {
    let svc = LockService::new(MemoryBackend::new())?;
    // The same, without self-wait detection (issue 14): what the detection costs per cycle.
    let undetected = LockService::builder(MemoryBackend::new())
        .detect_self_wait(false)
        .build()?;
    let key = "bench:memory";
    let full_key = format!("_lock:{key}");
    let map: DashMap<String, u128> = DashMap::new();
    let mutex = tokio::sync::Mutex::new(0u64);
    let slice = cfg.measure / cfg.rounds;
    // Warm-up.
    for _ in 0..1000 {
        svc.acquire(key).await?.release().await?;
        undetected.acquire(key).await?.release().await?;
    }
    let (mut lib, mut raw, mut tmx, mut off) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.rounds {
        raw.push(
            time_ns(slice, || async {
                map.insert(black_box(full_key.clone()), black_box(1));
                black_box(map.remove(black_box(full_key.as_str())));
                Ok(())
            })
            .await?,
        );
        tmx.push(
            time_ns(slice, || async {
                let mut g = mutex.lock().await;
                *g += 1;
                Ok(())
            })
            .await?,
        );
        lib.push(
            time_ns(slice, || async {
                svc.acquire(key).await?.release().await?;
                Ok(())
            })
            .await?,
        );
        off.push(
            time_ns(slice, || async {
                undetected.acquire(key).await?.release().await?;
                Ok(())
            })
            .await?,
        );
    }
    svc.shutdown().await;
    undetected.shutdown().await;
    let ratio_off = median(lib.iter().zip(&off).map(|(l, o)| l / o).collect());
    let off = median(off);
    let ratio_raw = median(lib.iter().zip(&raw).map(|(l, r)| l / r).collect());
    let ratio_tmx = median(lib.iter().zip(&tmx).map(|(l, r)| l / r).collect());
    let (lib, raw, tmx) = (median(lib), median(raw), median(tmx));
    let ns = |x: f64| nanos(Duration::from_secs_f64(x / 1e9));
    for (against, reference, ratio, target, verdict) in [
        (
            "self-wait detection off",
            format!("detect_self_wait(false): {}", ns(off)),
            ratio_off,
            "",
            Verdict::Info,
        ),
        (
            "DashMap",
            format!("DashMap insert+remove: {}", ns(raw)),
            ratio_raw,
            "≤ 5.00×",
            Verdict::of(ratio_raw <= 5.0),
        ),
        (
            "tokio Mutex",
            format!("tokio::sync::Mutex lock+unlock: {}", ns(tmx)),
            ratio_tmx,
            "",
            Verdict::Info,
        ),
    ] {
        table.push(Row {
            figure: format!("memory: uncontended acquire+release vs {against}"),
            runtime: flavor.label(),
            locks: format!("{} per cycle", ns(lib)),
            reference,
            ratio: times(ratio),
            target: target.into(),
            verdict,
        });
    }
    Ok(())
}

/// Critical sections per second of two tasks looping on one key for `dur`, and each task's
/// count. `services` are the lock services the two tasks use (the same one twice, or two).
async fn fight(services: [LockService; 2], dur: Duration) -> Result<(f64, [u64; 2])> {
    let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(10));
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = JoinSet::new();
    for (i, svc) in services.into_iter().enumerate() {
        let opts = opts.clone();
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                svc.acquire_opts("bench:contended", opts.clone())
                    .await?
                    .release()
                    .await?;
                n += 1;
            }
            Ok::<_, crate::BoxError>((i, n))
        });
    }
    let mut counts = [0u64; 2];
    while let Some(r) = tasks.join_next().await {
        let (i, n) = r??;
        counts[i] = n;
    }
    Ok((
        (counts[0] + counts[1]) as f64 / start.elapsed().as_secs_f64(),
        counts,
    ))
}

/// Two tasks on the two-worker multi-thread runtime fight over one key: through one shared
/// service (its local FIFO line decides), and through two services on one backend (separate
/// processes, as far as the service knows: the store and its notifications decide). The
/// reference is a `tokio::sync::Mutex` fought over the same way.
async fn contended(cfg: &Config, table: &mut Table) -> Result<()> {
    let backend = MemoryBackend::new();
    let shared = LockService::new(backend.clone())?;
    let separate = [
        LockService::new(backend.clone())?,
        LockService::new(backend.clone())?,
    ];
    let slice = cfg.measure / cfg.rounds;
    let mutex = Arc::new(tokio::sync::Mutex::new(0u64));
    let (mut one, mut two, mut tmx) = (Vec::new(), Vec::new(), Vec::new());
    let (mut one_counts, mut two_counts) = ([0u64; 2], [0u64; 2]);
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
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            n += r?;
        }
        tmx.push(n as f64 / start.elapsed().as_secs_f64());

        let (r, c) = fight([shared.clone(), shared.clone()], slice).await?;
        one.push(r);
        one_counts = [one_counts[0] + c[0], one_counts[1] + c[1]];
        let (r, c) = fight(separate.clone(), slice).await?;
        two.push(r);
        two_counts = [two_counts[0] + c[0], two_counts[1] + c[1]];
    }
    shared.shutdown().await;
    for svc in &separate {
        svc.shutdown().await;
    }
    let shares = |c: [u64; 2]| {
        let total = (c[0] + c[1]).max(1) as f64;
        format!(
            "shares {:.0}/{:.0} %",
            100.0 * c[0] as f64 / total,
            100.0 * c[1] as f64 / total
        )
    };
    let ratio = |lib: &[f64]| median(lib.iter().zip(&tmx).map(|(l, t)| l / t).collect());
    let tmx_rate = median(tmx.clone());
    for (figure, rates, counts) in [
        ("memory: 2 tasks contended, one service", &one, one_counts),
        ("memory: 2 tasks contended, two services", &two, two_counts),
    ] {
        table.push(Row {
            figure: format!("{figure}, critical sections/s"),
            runtime: Flavor::MultiThread.label(),
            locks: format!("{} ({})", rate(median(rates.clone())), shares(counts)),
            reference: format!("tokio::sync::Mutex, 2 tasks: {}", rate(tmx_rate)),
            ratio: times(ratio(rates)),
            target: String::new(),
            verdict: Verdict::Info,
        });
    }
    Ok(())
}
