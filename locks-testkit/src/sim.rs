//! The contention simulator: many workers fight over a few keys through several
//! [`LockService`]s sharing one backend, while an invariant checker counts the holders of every
//! key at every instant.
//!
//! Each worker loops: pick a key at random, [`acquire_with`](LockService::acquire_with) it,
//! record the wait, enter the critical section (holder count `+1`, fence check), hold it for a
//! random time, leave it (holder count `-1`) and [`release`](locks_core::LockGuard::release).
//! A correct backend keeps every key at one holder and every key's fences strictly increasing;
//! [`SimReport::passed`] says whether it did. [`GrantAllBackend`](crate::broken::GrantAllBackend)
//! shows what a failure looks like.
//!
//! All time is tokio time ([`tokio::time::Instant`], [`tokio::time::sleep`]), so a run works
//! under `#[tokio::test(start_paused = true)]`, where it takes no wall-clock time.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use locks_memory::MemoryBackend;
//! use locks_testkit::sim::{self, SimConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! let cfg = SimConfig {
//!     workers: 4,
//!     keys: 2,
//!     duration: None,
//!     ops_per_worker: Some(10),
//!     hold_max: Duration::ZERO,
//!     ..SimConfig::default()
//! };
//! let report = sim::run(Arc::new(MemoryBackend::new()), &cfg).await?;
//! assert!(report.passed());
//! assert_eq!(report.acquired, 40);
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use locks_core::{AcquireOptions, LockBackend, LockError, LockService, RetryPolicy};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a worker pauses after an acquire error, so a dead backend does not spin a core
/// (and so paused test time can advance).
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// The most [`LockService`] instances [`SimConfig::default`] and `services: 0` ask for.
const DEFAULT_MAX_SERVICES: usize = 8;

/// What to simulate.
///
/// At least one of [`duration`](SimConfig::duration) and
/// [`ops_per_worker`](SimConfig::ops_per_worker) must be set; with both, the run stops at
/// whichever limit comes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Concurrent worker tasks (>= 1).
    pub workers: usize,
    /// Distinct keys the workers pick from, uniformly at random (>= 1).
    pub keys: usize,
    /// Stop after this much (tokio) time. An acquire still waiting at that point is abandoned
    /// and not counted; a worker inside its critical section finishes it first.
    ///
    /// Under paused tokio time, time only moves while every task is waiting: a run with
    /// `hold_max` zero never lets it move, so give such a run `ops_per_worker`.
    pub duration: Option<Duration>,
    /// Stop each worker after this many acquire attempts (acquired, timed out or failed).
    pub ops_per_worker: Option<u64>,
    /// Shortest time a worker holds a lock (the simulated critical section).
    pub hold_min: Duration,
    /// Longest time a worker holds a lock (>= `hold_min`).
    pub hold_max: Duration,
    /// Lease ttl (the services' `max_ttl` is raised to it if needed).
    pub ttl: Duration,
    /// How long one acquire may wait before it counts as a timeout.
    pub wait_timeout: Duration,
    /// How many [`LockService`] instances share the backend, as if they ran in separate
    /// processes; workers are spread over them round-robin. `0` means
    /// `workers.min(8)`; more than `workers` is capped at `workers`.
    pub services: usize,
    /// Seed of the per-worker random number generators (key and hold-time choices). The
    /// choices are reproducible; the interleaving of a multi-thread runtime is not.
    pub seed: u64,
}

impl Default for SimConfig {
    /// 16 workers, 4 keys, 2 s, hold 0..2 ms, ttl 5 s, wait timeout 5 s, 8 services, seed 42.
    fn default() -> Self {
        let workers = 16;
        SimConfig {
            workers,
            keys: 4,
            duration: Some(Duration::from_secs(2)),
            ops_per_worker: None,
            hold_min: Duration::ZERO,
            hold_max: Duration::from_millis(2),
            ttl: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(5),
            services: workers.min(DEFAULT_MAX_SERVICES),
            seed: 42,
        }
    }
}

impl SimConfig {
    /// The number of [`LockService`] instances a run actually builds: `services`, or
    /// `workers.min(8)` when it is 0, never more than `workers` and never less than 1.
    pub fn effective_services(&self) -> usize {
        let wanted = if self.services == 0 {
            self.workers.min(DEFAULT_MAX_SERVICES)
        } else {
            self.services
        };
        wanted.min(self.workers).max(1)
    }

    /// Check the configuration; [`run`] calls this first.
    ///
    /// Errors are [`LockError::InvalidOptions`] naming the field (`sim.workers`, ...).
    pub fn validate(&self) -> Result<(), LockError> {
        if self.workers == 0 {
            return Err(invalid("sim.workers", "must be at least 1"));
        }
        if self.keys == 0 {
            return Err(invalid("sim.keys", "must be at least 1"));
        }
        if self.duration.is_none() && self.ops_per_worker.is_none() {
            return Err(invalid(
                "sim.duration",
                "set a duration, ops_per_worker, or both (the run would never stop)",
            ));
        }
        if self.ops_per_worker == Some(0) {
            return Err(invalid("sim.ops_per_worker", "must be at least 1"));
        }
        if self.hold_min > self.hold_max {
            return Err(invalid(
                "sim.hold_min",
                format!(
                    "{:?} is longer than hold_max {:?}",
                    self.hold_min, self.hold_max
                ),
            ));
        }
        Ok(())
    }
}

fn invalid(option: &'static str, reason: impl Into<String>) -> LockError {
    LockError::InvalidOptions {
        option,
        reason: reason.into(),
    }
}

/// Percentiles of a latency distribution, in microseconds (hdrhistogram, 3 significant
/// digits; values above one hour count as one hour). All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl LatencySummary {
    fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// What a run measured and what the invariant checker saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Locks acquired (and held for the chosen time).
    pub acquired: u64,
    /// Acquires that ran out of `wait_timeout` (`LockError::AcquireTimeout`).
    pub timeouts: u64,
    /// Other acquire errors, plus releases that failed (for example `NotOwner`: the lease ran
    /// out during the critical section).
    pub errors: u64,
    /// Safety violations: every time a worker entered a key's critical section while another
    /// holder was still inside it, plus every fence regression (counted again in
    /// [`fence_regressions`](SimReport::fence_regressions)).
    pub violations: u64,
    /// The most holders any key had at the same instant (1 for a correct backend that granted
    /// anything, 0 if nothing was acquired).
    pub max_concurrent_per_key: u64,
    /// Tokio time from the first worker's start to the last worker's end.
    pub elapsed: Duration,
    /// `acquired / elapsed`, per second (0 when no time passed, as under paused time with no
    /// hold).
    pub ops_per_sec: f64,
    /// Time from calling acquire to getting the guard, for acquires that succeeded.
    pub wait: LatencySummary,
    /// Acquires whose fence was not strictly larger than the last fence seen on that key.
    pub fence_regressions: u64,
}

impl SimReport {
    /// `true` when the checker saw no violation (no overlap, no fence regression). Timeouts
    /// and errors do not fail a run: they are liveness, not safety.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.fence_regressions == 0
    }

    /// An aligned two-column table for humans.
    pub fn table(&self) -> String {
        let elapsed = format!("{:.3} s", self.elapsed.as_secs_f64());
        let rows: [(&str, String); 13] = [
            ("operations/s", format!("{:.1}", self.ops_per_sec)),
            ("acquired", self.acquired.to_string()),
            ("timeouts", self.timeouts.to_string()),
            ("errors", self.errors.to_string()),
            ("wait p50 (µs)", self.wait.p50.to_string()),
            ("wait p90 (µs)", self.wait.p90.to_string()),
            ("wait p99 (µs)", self.wait.p99.to_string()),
            ("wait max (µs)", self.wait.max.to_string()),
            (
                "max holders per key",
                self.max_concurrent_per_key.to_string(),
            ),
            ("violations", self.violations.to_string()),
            ("fence regressions", self.fence_regressions.to_string()),
            ("elapsed", elapsed),
            (
                "result",
                if self.passed() { "PASS" } else { "FAIL" }.to_owned(),
            ),
        ];
        let label_width = rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0)
            .max("metric".len());
        let value_width = rows
            .iter()
            .map(|(_, v)| v.chars().count())
            .max()
            .unwrap_or(0)
            .max("value".len());
        let mut out = String::new();
        let _ = writeln!(out, "{:<label_width$}  {:>value_width$}", "metric", "value");
        let _ = writeln!(
            out,
            "{}  {}",
            "-".repeat(label_width),
            "-".repeat(value_width)
        );
        for (label, value) in &rows {
            // `{:<w$}` pads by chars, so "µs" lines stay aligned.
            let _ = writeln!(out, "{label:<label_width$}  {value:>value_width$}");
        }
        out
    }
}

/// The invariant checker's state for one key.
#[derive(Debug, Default)]
struct KeyState {
    holders: AtomicU64,
    last_fence: AtomicU64,
}

/// Shared by every worker.
#[derive(Debug)]
struct Checker {
    keys: Vec<KeyState>,
    violations: AtomicU64,
    fence_regressions: AtomicU64,
    max_concurrent: AtomicU64,
}

impl Checker {
    fn new(keys: usize) -> Self {
        Checker {
            keys: (0..keys).map(|_| KeyState::default()).collect(),
            violations: AtomicU64::new(0),
            fence_regressions: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
        }
    }

    /// Right after acquire returned a guard with `fence`.
    fn enter(&self, key: usize, fence: u64) {
        let Some(state) = self.keys.get(key) else {
            return;
        };
        let now = state.holders.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        if now > 1 {
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        let previous = state.last_fence.fetch_max(fence, Ordering::SeqCst);
        if previous >= fence {
            self.fence_regressions.fetch_add(1, Ordering::SeqCst);
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Right before the guard is released.
    fn leave(&self, key: usize) {
        if let Some(state) = self.keys.get(key) {
            state.holders.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What one worker counted.
struct WorkerStats {
    acquired: u64,
    timeouts: u64,
    errors: u64,
    wait: Histogram<u64>,
}

struct Worker {
    service: LockService,
    checker: Arc<Checker>,
    names: Arc<[String]>,
    opts: AcquireOptions,
    rng: fastrand::Rng,
    hold_min_nanos: u64,
    hold_max_nanos: u64,
    ops: Option<u64>,
    deadline: Option<Instant>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sleeps until `deadline`, or forever without one.
async fn stop_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    async fn run(mut self, mut stats: WorkerStats) -> WorkerStats {
        let mut done: u64 = 0;
        loop {
            if self.ops.is_some_and(|ops| done >= ops)
                || self.deadline.is_some_and(|at| Instant::now() >= at)
            {
                break;
            }
            let key = self.rng.usize(..self.names.len());
            let hold =
                Duration::from_nanos(self.rng.u64(self.hold_min_nanos..=self.hold_max_nanos));
            let Some(name) = self.names.get(key) else {
                break;
            };
            let started = Instant::now();
            let outcome = tokio::select! {
                r = self.service.acquire_with(name, self.opts.clone()) => r,
                // Abandon a wait that outlives the run (the service cleans up after itself).
                () = stop_at(self.deadline) => break,
            };
            done += 1;
            match outcome {
                Ok(guard) => {
                    stats.wait.saturating_record(micros(started.elapsed()));
                    stats.acquired += 1;
                    self.checker.enter(key, guard.fence());
                    // Let every other task run while we hold the lock, so an overlap shows
                    // even with a zero hold time.
                    tokio::task::yield_now().await;
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                    self.checker.leave(key);
                    if guard.release().await.is_err() {
                        stats.errors += 1;
                    }
                }
                Err(LockError::AcquireTimeout { .. }) => stats.timeouts += 1,
                Err(_) => {
                    stats.errors += 1;
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
        stats
    }
}

/// The longest wait the histogram tells apart, in µs (one hour); longer waits are recorded
/// as one hour.
const MAX_TRACKED_WAIT_MICROS: u64 = 3_600_000_000;

/// A fixed-range histogram: `saturating_record` never resizes an auto-resizing one, so the
/// range must be set up front.
fn new_histogram() -> Result<Histogram<u64>, LockError> {
    Histogram::new_with_bounds(1, MAX_TRACKED_WAIT_MICROS, 3)
        .map_err(|e| invalid("sim.histogram", e.to_string()))
}

/// Run the simulation described by `cfg` on `backend`, and report what happened.
///
/// Builds [`SimConfig::effective_services`] services over `backend` (ttl, wait timeout and a
/// quick retry policy from `cfg`), spawns `cfg.workers` tasks on the current runtime, waits for
/// all of them, then shuts the services down.
///
/// Errors: [`LockError::InvalidOptions`] or [`LockError::InvalidTtl`] for a bad configuration.
/// Failures during the run are counted in the report, not returned.
pub async fn run(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> Result<SimReport, LockError> {
    cfg.validate()?;
    let mut services = Vec::with_capacity(cfg.effective_services());
    for _ in 0..cfg.effective_services() {
        let service = LockService::builder_arc(Arc::clone(&backend))
            .max_ttl(cfg.ttl.max(Duration::from_secs(300)))
            .default_ttl(cfg.ttl)
            .default_wait_timeout(cfg.wait_timeout)
            .retry(
                RetryPolicy::default()
                    .initial_delay(Duration::from_millis(1))
                    .max_delay(Duration::from_millis(50)),
            )
            .build()?;
        services.push(service);
    }
    let checker = Arc::new(Checker::new(cfg.keys));
    let names: Arc<[String]> = (0..cfg.keys).map(|k| format!("sim:{k}")).collect();

    let start = Instant::now();
    let deadline = cfg.duration.and_then(|d| start.checked_add(d));
    let mut tasks = JoinSet::new();
    for index in 0..cfg.workers {
        let Some(service) = services.get(index % services.len()) else {
            break;
        };
        let worker = Worker {
            service: service.clone(),
            checker: Arc::clone(&checker),
            names: Arc::clone(&names),
            opts: AcquireOptions::new(),
            rng: fastrand::Rng::with_seed(worker_seed(cfg.seed, index)),
            hold_min_nanos: nanos(cfg.hold_min),
            hold_max_nanos: nanos(cfg.hold_max),
            ops: cfg.ops_per_worker,
            deadline,
        };
        let stats = WorkerStats {
            acquired: 0,
            timeouts: 0,
            errors: 0,
            wait: new_histogram()?,
        };
        tasks.spawn(worker.run(stats));
    }

    let mut wait = new_histogram()?;
    let (mut acquired, mut timeouts, mut errors) = (0u64, 0u64, 0u64);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(stats) => {
                acquired += stats.acquired;
                timeouts += stats.timeouts;
                errors += stats.errors;
                wait.add(&stats.wait)
                    .map_err(|e| invalid("sim.histogram", e.to_string()))?;
            }
            // A worker that panicked or was cancelled: count it, keep the others' numbers.
            Err(_) => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    for service in &services {
        service.shutdown().await;
    }

    let secs = elapsed.as_secs_f64();
    Ok(SimReport {
        acquired,
        timeouts,
        errors,
        violations: checker.violations.load(Ordering::SeqCst),
        max_concurrent_per_key: checker.max_concurrent.load(Ordering::SeqCst),
        elapsed,
        ops_per_sec: if secs > 0.0 {
            acquired as f64 / secs
        } else {
            0.0
        },
        wait: LatencySummary::from_histogram(&wait),
        fence_regressions: checker.fence_regressions.load(Ordering::SeqCst),
    })
}

/// A distinct, reproducible seed per worker.
fn worker_seed(seed: u64, index: usize) -> u64 {
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
