//! Hand-off latency and fairness between workers contending for one key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use locks_core::{AcquireOptions, LockGuard, LockService};
use locks_redis::RedisBackend;
use tokio::task::JoinSet;

use super::{lib_cycle, new_histogram, us};
use crate::table::{Row, Table, Verdict, grouped, micros, rate, times};
use crate::{Config, Result};

/// What one hand-off run measured.
pub(super) struct Handoff {
    workers: usize,
    /// The services ran in fair mode.
    fair: bool,
    sections: u64,
    elapsed: Duration,
    handoff: Histogram<u64>,
    longest_wait: Duration,
    counts: Vec<u64>,
    violations: u64,
    lost_updates: u64,
    /// Hand-offs where the releaser took the lock again.
    again: u64,
}

#[derive(Default)]
struct Shared {
    /// When the current holder started its release, and which worker it is (taken by the
    /// next holder).
    released_at: Mutex<Option<(Instant, usize)>>,
    /// Hand-offs where the releaser took the lock again itself.
    again: AtomicU64,
    /// Holders inside the critical section right now (must never exceed 1).
    inside: AtomicU64,
    violations: AtomicU64,
    /// Incremented non-atomically (load, yield, store) inside the critical section.
    counter: AtomicU64,
}

/// `workers` lock services, each with its own backend (its own command and pub/sub
/// connections, as separate processes would have), loop on one key with a tiny critical
/// section; in fair mode (`LockServiceBuilder::fair`) when `fair`.
pub(super) async fn handoff(
    url: &str,
    workers: usize,
    fair: bool,
    cfg: &Config,
) -> Result<Handoff> {
    let key = format!(
        "{}:handoff{workers}{}",
        cfg.run_id,
        if fair { "f" } else { "" }
    );
    let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(10));
    let mut services = Vec::with_capacity(workers);
    for _ in 0..workers {
        let svc = LockService::builder(RedisBackend::connect(url).await?)
            .fair(fair)
            .build()?;
        // Warm-up: script cache and connections.
        lib_cycle(&svc, &key).await?;
        services.push(svc);
    }
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let deadline = start + cfg.handoff;
    let mut tasks = JoinSet::new();
    for (i, svc) in services.iter().enumerate() {
        let (svc, key, opts, shared) =
            (svc.clone(), key.clone(), opts.clone(), Arc::clone(&shared));
        tasks.spawn(async move {
            let mut hist = new_histogram()?;
            let mut longest = Duration::ZERO;
            let mut count = 0u64;
            while Instant::now() < deadline {
                let asked = Instant::now();
                let guard: LockGuard = svc.acquire_opts(&key, opts.clone()).await?;
                let got = Instant::now();
                longest = longest.max(got - asked);
                let released = shared
                    .released_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some((released, by)) = released {
                    hist.record(us(got - released))?;
                    if by == i {
                        shared.again.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if shared.inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    shared.violations.fetch_add(1, Ordering::SeqCst);
                }
                let v = shared.counter.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                shared.counter.store(v + 1, Ordering::SeqCst);
                shared.inside.fetch_sub(1, Ordering::SeqCst);
                count += 1;
                *shared
                    .released_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), i));
                guard.release().await?;
            }
            Ok::<_, crate::BoxError>((i, count, longest, hist))
        });
    }
    let mut handoff = new_histogram()?;
    let mut counts = vec![0; workers];
    let mut longest_wait = Duration::ZERO;
    while let Some(r) = tasks.join_next().await {
        let (i, count, longest, hist) = r??;
        counts[i] = count;
        longest_wait = longest_wait.max(longest);
        handoff.add(hist)?;
    }
    let elapsed = start.elapsed();
    for svc in &services {
        svc.shutdown().await;
    }
    let sections: u64 = counts.iter().sum();
    Ok(Handoff {
        workers,
        fair,
        sections,
        elapsed,
        handoff,
        longest_wait,
        counts,
        violations: shared.violations.load(Ordering::SeqCst),
        lost_updates: sections.saturating_sub(shared.counter.load(Ordering::SeqCst)),
        again: shared.again.load(Ordering::SeqCst),
    })
}

impl Handoff {
    pub(super) fn rows(
        &self,
        rt: &'static str,
        rtt: Duration,
        uncontended: Option<f64>,
        table: &mut Table,
    ) -> Result<()> {
        let w = self.workers;
        let gated = w == 4 && !self.fair;
        // Fair-mode rows: the same figures, named apart, information only.
        let mode = if self.fair { "fair mode: " } else { "" };
        let rtts = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
        // The percentiles, with the most round trips the target allows.
        for (quantile, label, max_rtts) in [
            (0.5, "p50 (release → next acquire)", Some(3.0)),
            (0.99, "p99", None),
        ] {
            let d = Duration::from_micros(self.handoff.value_at_quantile(quantile));
            table.push(Row {
                figure: format!("{mode}hand-off {label}, {w} workers"),
                runtime: rt,
                locks: micros(d),
                reference: format!("PING: {}", micros(rtt)),
                ratio: format!("{:.1} RTT", rtts(d)),
                target: max_rtts
                    .filter(|_| !self.fair)
                    .map_or_else(String::new, |max| format!("≤ {max} RTT")),
                verdict: max_rtts
                    .filter(|_| !self.fair)
                    .map_or(Verdict::Info, |max| Verdict::of(rtts(d) <= max)),
            });
        }
        let cs = self.sections as f64 / self.elapsed.as_secs_f64();
        let (reference, ratio) = match uncontended {
            Some(u) => (format!("uncontended cycle: {}", rate(u)), cs / u),
            None => ("uncontended cycle: not measured".into(), f64::NAN),
        };
        let integrity = if self.violations == 0 && self.lost_updates == 0 {
            String::new()
        } else {
            format!(
                " — {} overlaps, {} lost updates!",
                self.violations, self.lost_updates
            )
        };
        table.push(Row {
            figure: format!("{mode}critical sections/s, {w} workers"),
            runtime: rt,
            locks: format!("{}{integrity}", rate(cs)),
            reference,
            ratio: times(ratio),
            target: if gated {
                "≥ 0.50×".into()
            } else {
                String::new()
            },
            verdict: if self.violations > 0 || self.lost_updates > 0 {
                Verdict::Fail
            } else if gated {
                Verdict::of(ratio >= 0.5)
            } else {
                Verdict::Info
            },
        });
        table.push(Row {
            figure: format!("{mode}longest single wait, {w} workers"),
            runtime: rt,
            locks: micros(self.longest_wait),
            reference: format!("PING: {}", micros(rtt)),
            ratio: format!("{} RTT", grouped(rtts(self.longest_wait))),
            target: if gated {
                "≤ 50 ms".into()
            } else {
                String::new()
            },
            verdict: if gated {
                Verdict::of(self.longest_wait <= Duration::from_millis(50))
            } else {
                Verdict::Info
            },
        });
        let fair = self.sections as f64 / w as f64;
        let min = self.counts.iter().copied().min().unwrap_or(0) as f64;
        let shares: Vec<String> = self
            .counts
            .iter()
            .map(|c| format!("{:.0}", 100.0 * *c as f64 / self.sections.max(1) as f64))
            .collect();
        table.push(Row {
            figure: format!("{mode}worker shares (%), {w} workers"),
            runtime: rt,
            locks: format!(
                "{} (releaser took it again: {:.0} %)",
                shares.join("/"),
                100.0 * self.again as f64 / self.handoff.len().max(1) as f64
            ),
            reference: format!("fair: {:.1} each", 100.0 / w as f64),
            ratio: format!("min {}", times(min / fair)),
            target: if gated {
                "min ≥ 0.50×".into()
            } else {
                String::new()
            },
            verdict: if gated {
                Verdict::of(min / fair >= 0.5)
            } else {
                Verdict::Info
            },
        });
        Ok(())
    }
}
