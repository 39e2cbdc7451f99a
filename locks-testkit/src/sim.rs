//! The contention simulator: named scenarios that mirror real incidents, each with its own
//! invariant checker, run by many workers through several [`LockService`]s sharing one backend.
//!
//! | [`Scenario`] | the incident | the checker counts a violation when |
//! |---|---|---|
//! | `mutex` (default) | N workers, K keys, random hold times | a key has two holders at once |
//! | `double-payment` | every instance receives the same stream of order ids | an order is charged twice |
//! | `oversell` | buyers race for the last units of a SKU | units are sold that were not in stock |
//! | `job-dedup` | a cron job fires on every instance | a job runs twice |
//! | `leader-failover` | leaders are deployed away or cut off from the store | two leaders act at once, or a deposed leader acts |
//! | `gc-pause` | a holder pauses past its ttl, then writes (Kleppmann) | the fenced store accepts the stale write |
//!
//! In every scenario the generic checker also verifies that fences strictly increase per key
//! (a regression is a violation), and measures wait latency (acquire called → guard returned)
//! and hand-off latency (a holder leaves → the next holder *of another worker* enters).
//! [`SimConfig::unsafe_no_lock`] makes workers skip the lock, to prove that each checker
//! catches the incident it is about; [`GrantAllBackend`](crate::broken::GrantAllBackend) shows
//! what a broken store looks like.
//!
//! All time is tokio time ([`tokio::time::Instant`], [`tokio::time::sleep`]), so a run works
//! under `#[tokio::test(start_paused = true)]`, where it takes no wall-clock time.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use locks_memory::MemoryBackend;
//! use locks_testkit::sim::{self, Scenario, SimConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! // The default scenario, `mutex`.
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
//!
//! // An incident: 4 instances receive the same 20 orders; each order is charged once.
//! let cfg = SimConfig {
//!     workers: 4,
//!     keys: 20,
//!     hold_max: Duration::ZERO,
//!     ..SimConfig::for_scenario(Scenario::DoublePayment)
//! };
//! let report = sim::run(Arc::new(MemoryBackend::new()), &cfg).await?;
//! assert!(report.passed(), "{}", report.table());
//! assert_eq!(report.counter("charges"), Some(20));
//! # Ok(()) }
//! ```

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use locks_core::{
    AcquireOptions, LeaseHandle, LeaseState, LockBackend, LockError, LockGuard, LockService,
    RetryPolicy,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::faulty::FaultyBackend;

/// How long a worker pauses after an acquire error, so a dead backend does not spin a core
/// (and so paused test time can advance).
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// The most [`LockService`] instances [`SimConfig::default`] and `services: 0` ask for.
const DEFAULT_MAX_SERVICES: usize = 8;

/// The shortest time between two actions of a leader (`leader-failover`), so that a leader
/// with a zero hold time still lets (paused) time advance.
const MIN_ACTION_INTERVAL: Duration = Duration::from_millis(1);

/// How many offending ids a violation line names.
const MAX_EXAMPLES: usize = 5;

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A named simulation: what the workers do, and which invariant the checker enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scenario {
    /// N workers pick one of K keys at random, hold its lock for a random time and release it;
    /// the checker counts the holders of every key at every instant (a violation: two at once).
    #[default]
    Mutex,
    /// W instances (workers spread over several services, as separate processes) receive the
    /// same stream of K order ids. Under the order's lock a worker checks the shared ledger and,
    /// if the order is unpaid, charges it (the payment provider call takes the hold time) and
    /// marks it paid. Violation: an order charged twice.
    DoublePayment,
    /// K SKUs start with [`SimConfig::stock`] units each. Buyers keep buying until everything is
    /// sold out: under the SKU's lock they read the stock, wait the hold time, and write
    /// `stock - 1` if it was above 0. Violation: stock below 0, or units sold that were never
    /// taken out of stock (at the end, sold must equal the initial stock). Not selling out
    /// before the time limit fails the run too.
    Oversell,
    /// J jobs; every worker walks the same job list and claims each job with `try_acquire`
    /// (contended: skip it, someone else is running it). Under the lock a job that is not yet
    /// done runs (hold time) and is marked done. Violation: a job ran twice.
    JobDedup,
    /// N candidates run [`Election::run_until`](locks_core::Election::run_until) on one role,
    /// each through its own service over its own [`FaultyBackend`]. The leader acts every hold
    /// time, stamping each action with its term. Every
    /// [`fault_interval`](SimConfig::fault_interval) the current leader is either deployed
    /// away (stopped and restarted) or cut off from the store for two ttls
    /// ([`FaultyBackend::set_unavailable`]) so that its lease runs out. Violation: two leaders
    /// acting at the same instant, or an action with a term lower than an earlier action's (a
    /// stale leader acting). `keys` and `ops_per_worker` are not used.
    LeaderFailover,
    /// Holders write to a protected store that rejects writes whose fence is lower than the
    /// highest fence it has seen (Kleppmann's fencing tokens). Normal holders write with
    /// their fence as soon as they get the lock, hold it, write again, release, and do other
    /// work for the hold time. Worker 0 is GC-prone: it takes its locks with auto-renew off,
    /// pauses for 1.5 ttl (its lease runs out, another worker takes the key and writes), then
    /// writes. A write is stale when another holder entered the key after the writer did.
    /// Violation: a stale write accepted. A run that produces no stale write attempt fails too
    /// (the scenario tested nothing); the report counts the stale writes rejected.
    GcPause,
}

impl Scenario {
    /// Every scenario, in the order `--scenario all` runs them.
    pub const ALL: [Scenario; 6] = [
        Scenario::Mutex,
        Scenario::DoublePayment,
        Scenario::Oversell,
        Scenario::JobDedup,
        Scenario::LeaderFailover,
        Scenario::GcPause,
    ];

    /// The scenario's name on the command line (`double-payment`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Mutex => "mutex",
            Scenario::DoublePayment => "double-payment",
            Scenario::Oversell => "oversell",
            Scenario::JobDedup => "job-dedup",
            Scenario::LeaderFailover => "leader-failover",
            Scenario::GcPause => "gc-pause",
        }
    }

    /// One line saying what the scenario simulates.
    pub fn description(self) -> &'static str {
        match self {
            Scenario::Mutex => "workers contend for random keys; at most one holder per key",
            Scenario::DoublePayment => {
                "every instance gets the same order stream; each order is charged once"
            }
            Scenario::Oversell => "buyers race for limited stock; never sell what is not there",
            Scenario::JobDedup => "a job fires on every instance; try-lock runs it at most once",
            Scenario::LeaderFailover => {
                "leaders are deployed away or cut off; one leader acts at a time, never a stale one"
            }
            Scenario::GcPause => {
                "a holder pauses past its ttl, then writes; the fenced store rejects the write"
            }
        }
    }

    /// Whether the run ends when its work is done (orders, stock, jobs) rather than when its
    /// time is up; [`SimConfig::duration`] is then only a cap.
    pub fn is_finite(self) -> bool {
        matches!(
            self,
            Scenario::DoublePayment | Scenario::Oversell | Scenario::JobDedup
        )
    }

    /// Whether [`SimConfig::ops_per_worker`] limits this scenario (`mutex` and `gc-pause`).
    pub fn uses_ops_limit(self) -> bool {
        matches!(self, Scenario::Mutex | Scenario::GcPause)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A scenario name that [`Scenario::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scenario `{0}` (expected mutex, double-payment, oversell, job-dedup, \
     leader-failover or gc-pause)"
)]
pub struct UnknownScenario(String);

impl UnknownScenario {
    /// The name that was given.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl FromStr for Scenario {
    type Err = UnknownScenario;

    /// Parses a name of [`Scenario::name`] (ASCII case-insensitive, `_` accepted for `-`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == wanted)
            .ok_or_else(|| UnknownScenario(s.to_owned()))
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

/// What to simulate.
///
/// Start from [`SimConfig::default`] (the `mutex` scenario) or
/// [`SimConfig::for_scenario`] (that scenario's defaults) and change fields with struct update
/// syntax. How the run ends depends on the scenario:
///
/// - `mutex`, `gc-pause`: at least one of [`duration`](SimConfig::duration) and
///   [`ops_per_worker`](SimConfig::ops_per_worker) must be set; with both, the run stops at
///   whichever limit comes first.
/// - `leader-failover`: runs for [`duration`](SimConfig::duration), which must be set and
///   longer than [`fault_interval`](SimConfig::fault_interval).
/// - `double-payment`, `oversell`, `job-dedup`: run until their work is done;
///   [`duration`](SimConfig::duration), if set, is a cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Which scenario to run (default [`Scenario::Mutex`]).
    pub scenario: Scenario,
    /// Concurrent worker tasks (>= 1; `gc-pause` needs 2). In `leader-failover`, the
    /// candidates.
    pub workers: usize,
    /// Distinct keys (>= 1): the keys of `mutex` and `gc-pause`, the orders of
    /// `double-payment`, the SKUs of `oversell`, the jobs of `job-dedup`. Not used by
    /// `leader-failover` (one role).
    pub keys: usize,
    /// Stop after this much (tokio) time. An acquire still waiting at that point is abandoned
    /// and not counted; a worker inside its critical section finishes it first.
    ///
    /// Under paused tokio time, time only moves while every task is waiting: a run with
    /// `hold_max` zero never lets it move, so give such a run `ops_per_worker`.
    pub duration: Option<Duration>,
    /// Stop each worker after this many acquire attempts (acquired, timed out or failed);
    /// `mutex` and `gc-pause` only.
    pub ops_per_worker: Option<u64>,
    /// Shortest time a worker holds a lock (the simulated critical section: a payment call, a
    /// job, ...). In `leader-failover`, the shortest time between two actions of a leader.
    pub hold_min: Duration,
    /// Longest time a worker holds a lock (>= `hold_min`).
    pub hold_max: Duration,
    /// Lease ttl (the services' `max_ttl` is raised to it if needed). In `gc-pause` the
    /// GC-prone worker pauses for 1.5 ttl; in `leader-failover` a cut-off lasts 2 ttl.
    pub ttl: Duration,
    /// How long one acquire may wait before it counts as a timeout.
    pub wait_timeout: Duration,
    /// How many [`LockService`] instances share the backend, as if they ran in separate
    /// processes; workers are spread over them round-robin. `0` means
    /// `workers.min(8)`; more than `workers` is capped at `workers`. (`leader-failover` gives
    /// every candidate a service of its own.)
    pub services: usize,
    /// Seed of the per-worker random number generators (key and hold-time choices). The
    /// choices are reproducible; the interleaving of a multi-thread runtime is not.
    pub seed: u64,
    /// `oversell`: initial stock of every SKU (>= 1).
    pub stock: u64,
    /// `leader-failover`: time between two injected failovers (> 0).
    pub fault_interval: Duration,
    /// **Unsafe, for testing the checkers**: workers skip the lock entirely (no acquire, no
    /// fence, no election) and run their critical sections unprotected. Every scenario's
    /// checker must then report violations.
    pub unsafe_no_lock: bool,
}

impl Default for SimConfig {
    /// The `mutex` scenario: 16 workers, 4 keys, 2 s, hold 0..2 ms, ttl 5 s, wait timeout 5 s,
    /// 8 services, seed 42, locking on (stock 50 and fault interval 400 ms are unused).
    fn default() -> Self {
        let workers = 16;
        SimConfig {
            scenario: Scenario::Mutex,
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
            stock: 50,
            fault_interval: Duration::from_millis(400),
            unsafe_no_lock: false,
        }
    }
}

impl SimConfig {
    /// The defaults of `scenario` (the other fields as in [`SimConfig::default`]):
    ///
    /// | scenario | workers | keys | duration | hold | ttl | other |
    /// |---|---|---|---|---|---|---|
    /// | `mutex` | 16 | 4 | 2 s | 0..2 ms | 5 s | 8 services |
    /// | `double-payment` | 8 | 100 orders | cap 60 s | 0..2 ms | 5 s | |
    /// | `oversell` | 16 | 4 SKUs | cap 60 s | 0..1 ms | 5 s | stock 50 |
    /// | `job-dedup` | 8 | 200 jobs | cap 60 s | 0..2 ms | 5 s | |
    /// | `leader-failover` | 4 | (1 role) | 2 s | 1..5 ms | 200 ms | fault every 400 ms |
    /// | `gc-pause` | 4 | 1 | 2 s | 0..2 ms | 100 ms | |
    ///
    /// Every scenario but `mutex` uses `services: 0` (one per worker, at most 8).
    pub fn for_scenario(scenario: Scenario) -> Self {
        let base = SimConfig {
            scenario,
            services: 0,
            ..SimConfig::default()
        };
        let cap = Some(Duration::from_secs(60));
        match scenario {
            Scenario::Mutex => SimConfig::default(),
            Scenario::DoublePayment => SimConfig {
                workers: 8,
                keys: 100,
                duration: cap,
                ..base
            },
            Scenario::Oversell => SimConfig {
                workers: 16,
                keys: 4,
                duration: cap,
                hold_max: Duration::from_millis(1),
                ..base
            },
            Scenario::JobDedup => SimConfig {
                workers: 8,
                keys: 200,
                duration: cap,
                ..base
            },
            Scenario::LeaderFailover => SimConfig {
                workers: 4,
                keys: 1,
                hold_min: Duration::from_millis(1),
                hold_max: Duration::from_millis(5),
                ttl: Duration::from_millis(200),
                fault_interval: Duration::from_millis(400),
                ..base
            },
            Scenario::GcPause => SimConfig {
                workers: 4,
                keys: 1,
                ttl: Duration::from_millis(100),
                ..base
            },
        }
    }

    /// The number of [`LockService`] instances a run actually builds: `services`, or
    /// `workers.min(8)` when it is 0, never more than `workers` and never less than 1.
    /// (`leader-failover` builds one per candidate instead.)
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
    /// Errors are [`LockError::InvalidOptions`] naming the field (`sim.workers`, ...). A bad
    /// ttl is reported by the services as [`LockError::InvalidTtl`] when the run starts.
    pub fn validate(&self) -> Result<(), LockError> {
        if self.workers == 0 {
            return Err(invalid("sim.workers", "must be at least 1"));
        }
        if self.keys == 0 {
            return Err(invalid("sim.keys", "must be at least 1"));
        }
        match self.scenario {
            Scenario::Mutex | Scenario::GcPause => {
                if self.duration.is_none() && self.ops_per_worker.is_none() {
                    return Err(invalid(
                        "sim.duration",
                        "set a duration, ops_per_worker, or both (the run would never stop)",
                    ));
                }
            }
            Scenario::LeaderFailover => match self.duration {
                None => {
                    return Err(invalid(
                        "sim.duration",
                        "leader-failover runs for a duration: set one",
                    ));
                }
                Some(d) if d <= self.fault_interval => {
                    return Err(invalid(
                        "sim.fault_interval",
                        format!(
                            "{:?} is not shorter than the duration {d:?}: no failover would \
                             happen",
                            self.fault_interval
                        ),
                    ));
                }
                Some(_) => {}
            },
            Scenario::DoublePayment | Scenario::Oversell | Scenario::JobDedup => {}
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
        if self.scenario == Scenario::Oversell && self.stock == 0 {
            return Err(invalid("sim.stock", "must be at least 1"));
        }
        if self.scenario == Scenario::LeaderFailover && self.fault_interval.is_zero() {
            return Err(invalid("sim.fault_interval", "must be greater than zero"));
        }
        if self.scenario == Scenario::GcPause && self.workers < 2 {
            return Err(invalid(
                "sim.workers",
                "gc-pause needs at least 2 workers (one pauses, another takes over)",
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

// ---------------------------------------------------------------------------------------------
// Report

/// Percentiles of a latency distribution, in microseconds (hdrhistogram, 3 significant
/// digits; values above one hour count as one hour). All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// How many values were recorded.
    pub count: u64,
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
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"count\":{},\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}}",
            self.count, self.p50, self.p90, self.p99, self.max
        )
    }
}

/// What a run measured and what the invariant checkers saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The configuration it ran with.
    pub config: SimConfig,
    /// The backend's name ([`LockBackend::name`]).
    pub backend: &'static str,
    /// `false` when the run skipped locking ([`SimConfig::unsafe_no_lock`]).
    pub locking: bool,
    /// The operations [`ops_per_sec`](SimReport::ops_per_sec) counts: critical sections
    /// entered, or in `leader-failover` the leaders' actions.
    pub ops: u64,
    /// Critical sections entered: locks acquired (and held for the chosen time), elections
    /// won, or with `unsafe_no_lock` sections entered without a lock.
    pub acquired: u64,
    /// Acquires that ran out of `wait_timeout` (`LockError::AcquireTimeout`).
    pub timeouts: u64,
    /// Other acquire errors, releases that failed unexpectedly (for example `NotOwner`: the
    /// lease ran out during the critical section), and worker tasks that panicked.
    pub errors: u64,
    /// Safety violations: the scenario checker's count (see [`Scenario`]) plus every fence
    /// regression (also counted in [`fence_regressions`](SimReport::fence_regressions)).
    pub violations: u64,
    /// The most holders any key had at the same instant (1 for a correct backend that granted
    /// anything, 0 if nothing was acquired). Only `mutex` counts more than one as a violation:
    /// in `gc-pause` a paused holder overlapping the next one is the point.
    pub max_concurrent_per_key: u64,
    /// Tokio time from the first worker's start to the last worker's end.
    pub elapsed: Duration,
    /// `ops / elapsed`, per second (0 when no time passed, as under paused time with no
    /// hold).
    pub ops_per_sec: f64,
    /// Time from calling acquire to getting the guard, for acquires that succeeded (in
    /// `leader-failover`: from starting to campaign to being elected).
    pub wait: LatencySummary,
    /// Time from a holder leaving a key's critical section (just before its release) to the
    /// next holder entering it, when that holder is another worker.
    pub handoff: LatencySummary,
    /// Acquires whose fence was not strictly larger than the last fence seen on that key.
    pub fence_regressions: u64,
    /// Scenario-specific figures, by name (`charges`, `sold`, `stale_rejected`, ...).
    pub counters: Vec<(&'static str, u64)>,
    /// One human-readable line per kind of violation seen (empty when there was none).
    pub violation_details: Vec<String>,
    /// Why the scenario itself failed without a safety violation: it did not finish its work
    /// (stock left, orders never charged, jobs never run), or it never exercised what it is
    /// about (no stale write in `gc-pause`, no failover in `leader-failover`).
    pub problems: Vec<String>,
}

impl SimReport {
    /// `true` when the checkers saw no violation (no fence regression, nothing the scenario
    /// forbids) and the scenario did its work. Timeouts and errors alone do not fail a run:
    /// they are liveness, not safety.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.fence_regressions == 0 && self.problems.is_empty()
    }

    /// A scenario-specific counter by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The lines a human should see when the run failed: `VIOLATION: ...` for each kind of
    /// violation, `FAILED: ...` for each problem. Empty when the run passed.
    pub fn violation_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .violation_details
            .iter()
            .map(|d| format!("VIOLATION ({}): {d}", self.scenario))
            .collect();
        if lines.is_empty() && (self.violations > 0 || self.fence_regressions > 0) {
            lines.push(format!(
                "VIOLATION ({}): {} violation(s)",
                self.scenario, self.violations
            ));
        }
        lines.extend(
            self.problems
                .iter()
                .map(|p| format!("FAILED ({}): {p}", self.scenario)),
        );
        lines
    }

    /// An aligned two-column table for humans.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("scenario".into(), self.scenario.name().into()),
            ("backend".into(), self.backend.into()),
            (
                "locking".into(),
                if self.locking {
                    "on".into()
                } else {
                    "OFF (unsafe)".into()
                },
            ),
            ("operations/s".into(), format!("{:.1}", self.ops_per_sec)),
            ("operations".into(), self.ops.to_string()),
            ("acquired".into(), self.acquired.to_string()),
            ("timeouts".into(), self.timeouts.to_string()),
            ("errors".into(), self.errors.to_string()),
            ("wait p50 (µs)".into(), self.wait.p50.to_string()),
            ("wait p90 (µs)".into(), self.wait.p90.to_string()),
            ("wait p99 (µs)".into(), self.wait.p99.to_string()),
            ("wait max (µs)".into(), self.wait.max.to_string()),
            ("hand-off p50 (µs)".into(), self.handoff.p50.to_string()),
            ("hand-off p99 (µs)".into(), self.handoff.p99.to_string()),
            (
                "max holders per key".into(),
                self.max_concurrent_per_key.to_string(),
            ),
        ];
        rows.extend(
            self.counters
                .iter()
                .map(|(name, value)| (name.replace('_', " "), value.to_string())),
        );
        rows.extend([
            ("violations".into(), self.violations.to_string()),
            (
                "fence regressions".into(),
                self.fence_regressions.to_string(),
            ),
            (
                "elapsed".into(),
                format!("{:.3} s", self.elapsed.as_secs_f64()),
            ),
            (
                "result".into(),
                if self.passed() { "PASS" } else { "FAIL" }.into(),
            ),
        ]);
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

    /// The whole report as one line of JSON (an object): the configuration, every figure,
    /// the counters (an object), the violation details and problems (arrays of strings) and
    /// `passed`. Latencies are in microseconds (`wait_us`, `handoff_us`), durations in
    /// milliseconds; `ops_per_sec` is `null` if it is not a finite number.
    pub fn to_json(&self) -> String {
        let c = &self.config;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let opt = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |n| n.to_string());
        let ops_per_sec = if self.ops_per_sec.is_finite() {
            format!("{:.3}", self.ops_per_sec)
        } else {
            "null".to_owned()
        };
        let mut o = String::from("{");
        let _ = write!(
            o,
            "\"scenario\":{},\"backend\":{},\"locking\":{},",
            json_string(self.scenario.name()),
            json_string(self.backend),
            self.locking
        );
        let _ = write!(
            o,
            "\"workers\":{},\"keys\":{},\"services\":{},\"duration_ms\":{},\
             \"ops_per_worker\":{},\"hold_min_us\":{},\"hold_max_us\":{},\"ttl_ms\":{},\
             \"wait_timeout_ms\":{},\"seed\":{},\"stock\":{},\"fault_interval_ms\":{},",
            c.workers,
            c.keys,
            c.effective_services(),
            opt(c.duration.map(ms)),
            opt(c.ops_per_worker),
            micros(c.hold_min),
            micros(c.hold_max),
            ms(c.ttl),
            ms(c.wait_timeout),
            c.seed,
            c.stock,
            ms(c.fault_interval),
        );
        let _ = write!(
            o,
            "\"ops\":{},\"acquired\":{},\"timeouts\":{},\"errors\":{},\"violations\":{},\
             \"fence_regressions\":{},\"max_concurrent_per_key\":{},\"elapsed_ms\":{:.3},\
             \"ops_per_sec\":{},\"wait_us\":{},\"handoff_us\":{},",
            self.ops,
            self.acquired,
            self.timeouts,
            self.errors,
            self.violations,
            self.fence_regressions,
            self.max_concurrent_per_key,
            self.elapsed.as_secs_f64() * 1000.0,
            ops_per_sec,
            self.wait.json(),
            self.handoff.json(),
        );
        o.push_str("\"counters\":{");
        for (i, (name, value)) in self.counters.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{}:{value}", json_string(name));
        }
        o.push_str("},\"violation_details\":");
        o.push_str(&json_strings(&self.violation_details));
        o.push_str(",\"problems\":");
        o.push_str(&json_strings(&self.problems));
        let _ = write!(o, ",\"passed\":{}}}", self.passed());
        o
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_strings(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| json_string(s)).collect();
    format!("[{}]", parts.join(","))
}

/// Live figures of a running simulation, for a progress display: another thread or task
/// reads them while [`run_with_progress`] runs.
#[derive(Debug, Default)]
pub struct Progress {
    ops: AtomicU64,
    violations: AtomicU64,
}

impl Progress {
    /// Zero operations, zero violations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations done so far (critical sections entered, or leader actions).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Violations seen so far (best effort: some checkers only count at the end of a run).
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// Run the simulation described by `cfg` on `backend`, and report what happened.
///
/// Builds the services over `backend` ([`SimConfig::effective_services`] of them, or one per
/// candidate in `leader-failover`, each over its own [`FaultyBackend`]; ttl, wait timeout and
/// a quick retry policy from `cfg`), spawns the workers on the current runtime, waits for all
/// of them, then shuts the services down.
///
/// Errors: [`LockError::InvalidOptions`] or [`LockError::InvalidTtl`] for a bad configuration.
/// Failures during the run are counted in the report, not returned.
pub async fn run(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> Result<SimReport, LockError> {
    run_with_progress(backend, cfg, Arc::new(Progress::new())).await
}

/// [`run`], updating `progress` as the run goes.
pub async fn run_with_progress(
    backend: Arc<dyn LockBackend>,
    cfg: &SimConfig,
    progress: Arc<Progress>,
) -> Result<SimReport, LockError> {
    cfg.validate()?;
    let locking = !cfg.unsafe_no_lock;
    let key_count = if cfg.scenario == Scenario::LeaderFailover {
        1
    } else {
        cfg.keys
    };
    let names = key_names(cfg.scenario, key_count);

    // Services first: a bad ttl is an error before anything runs.
    let mut faulty = Vec::new();
    let mut services = Vec::new();
    if cfg.scenario == Scenario::LeaderFailover {
        for _ in 0..cfg.workers {
            let f = FaultyBackend::from_arc(Arc::clone(&backend));
            services.push(build_service(Arc::new(f.clone()), cfg)?);
            faulty.push(f);
        }
    } else {
        for _ in 0..cfg.effective_services() {
            services.push(build_service(Arc::clone(&backend), cfg)?);
        }
    }

    let ctx = Arc::new(Ctx::new(cfg.clone(), locking, names, progress)?);
    let start = ctx.start;
    let outcome = match cfg.scenario {
        Scenario::Mutex => mutex::run(&ctx, &services).await,
        Scenario::DoublePayment => double_payment::run(&ctx, &services).await,
        Scenario::Oversell => oversell::run(&ctx, &services).await,
        Scenario::JobDedup => job_dedup::run(&ctx, &services).await,
        Scenario::LeaderFailover => leader_failover::run(&ctx, &services, faulty).await,
        Scenario::GcPause => gc_pause::run(&ctx, &services).await,
    };
    let elapsed = start.elapsed();
    for service in &services {
        service.shutdown().await;
    }

    let acquired = ctx.acquired.load(Ordering::SeqCst);
    let fence_regressions = ctx.fence_regressions.load(Ordering::SeqCst);
    let ops = outcome.ops.unwrap_or(acquired);
    let mut violation_details = outcome.details;
    if fence_regressions > 0 {
        violation_details.push(format!(
            "{fence_regressions} fence regression(s): a holder got a fence not larger than an \
             earlier holder's of the same key"
        ));
    }
    let secs = elapsed.as_secs_f64();
    Ok(SimReport {
        scenario: cfg.scenario,
        config: cfg.clone(),
        backend: backend.name(),
        locking,
        ops,
        acquired,
        timeouts: ctx.timeouts.load(Ordering::SeqCst),
        errors: ctx.errors.load(Ordering::SeqCst),
        violations: outcome.violations.saturating_add(fence_regressions),
        max_concurrent_per_key: ctx.max_concurrent.load(Ordering::SeqCst),
        elapsed,
        ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
        wait: LatencySummary::from_histogram(&lock(&ctx.wait)),
        handoff: LatencySummary::from_histogram(&lock(&ctx.handoff)),
        fence_regressions,
        counters: outcome.counters,
        violation_details,
        problems: outcome.problems,
    })
}

fn build_service(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> Result<LockService, LockError> {
    LockService::builder_arc(backend)
        .max_ttl(cfg.ttl.max(Duration::from_secs(300)))
        .default_ttl(cfg.ttl)
        .default_wait_timeout(cfg.wait_timeout)
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(50)),
        )
        .build()
}

/// Key names unique to this run, so runs sharing a store (a Redis server) never meet.
fn key_names(scenario: Scenario, count: usize) -> Vec<String> {
    let run = fastrand::u32(..);
    (0..count)
        .map(|k| format!("sim:{run:08x}:{scenario}:{k}"))
        .collect()
}

/// A distinct, reproducible seed per worker.
fn worker_seed(seed: u64, index: usize) -> u64 {
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Sleeps until `deadline`, or forever without one.
async fn stop_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The critical section's work: let every other task run (so an overlap shows even with a
/// zero hold time), then sleep `hold`.
async fn hold_for(hold: Duration) {
    tokio::task::yield_now().await;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
}

/// "ids 3, 7, 9" (at most [`MAX_EXAMPLES`], then "...").
fn examples(ids: &[usize]) -> String {
    let mut s: Vec<String> = ids
        .iter()
        .take(MAX_EXAMPLES)
        .map(usize::to_string)
        .collect();
    if ids.len() > MAX_EXAMPLES {
        s.push("...".into());
    }
    s.join(", ")
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

/// What a scenario adds to the generic figures.
#[derive(Default)]
struct Outcome {
    /// Operations for the throughput figure; `None`: the critical sections entered.
    ops: Option<u64>,
    violations: u64,
    counters: Vec<(&'static str, u64)>,
    details: Vec<String>,
    problems: Vec<String>,
}

/// The generic checker's state for one key.
#[derive(Debug, Default)]
struct KeyState {
    holders: AtomicU64,
    last_fence: AtomicU64,
    /// Who left the critical section last, and when (for hand-off latency).
    last_leave: Mutex<Option<(usize, Instant)>>,
}

/// Shared by every worker of a run: configuration, key names, the generic checker and the
/// latency histograms.
struct Ctx {
    cfg: SimConfig,
    locking: bool,
    names: Vec<String>,
    keys: Vec<KeyState>,
    start: Instant,
    deadline: Option<Instant>,
    acquired: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    overlaps: AtomicU64,
    fence_regressions: AtomicU64,
    max_concurrent: AtomicU64,
    wait: Mutex<Histogram<u64>>,
    handoff: Mutex<Histogram<u64>>,
    progress: Arc<Progress>,
}

/// How a worker asks for a lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    /// `acquire_opts`: wait up to the wait timeout.
    Wait,
    /// `try_acquire_opts`: one attempt.
    Try,
}

/// The result of asking for a lock.
enum Attempt<'a> {
    /// Inside the critical section.
    Entered(Section<'a>),
    /// `try_acquire` found the lock held.
    Contended,
    /// The wait timed out (counted).
    TimedOut,
    /// Another error (counted; the worker paused briefly).
    Failed,
    /// The run's time is up.
    Stopped,
}

impl Ctx {
    fn new(
        cfg: SimConfig,
        locking: bool,
        names: Vec<String>,
        progress: Arc<Progress>,
    ) -> Result<Self, LockError> {
        let start = Instant::now();
        let deadline = cfg.duration.and_then(|d| start.checked_add(d));
        Ok(Ctx {
            keys: names.iter().map(|_| KeyState::default()).collect(),
            names,
            locking,
            start,
            deadline,
            acquired: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            overlaps: AtomicU64::new(0),
            fence_regressions: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            wait: Mutex::new(new_histogram()?),
            handoff: Mutex::new(new_histogram()?),
            progress,
            cfg,
        })
    }

    fn rng(&self, worker: usize) -> fastrand::Rng {
        fastrand::Rng::with_seed(worker_seed(self.cfg.seed, worker))
    }

    fn hold(&self, rng: &mut fastrand::Rng) -> Duration {
        Duration::from_nanos(rng.u64(nanos(self.cfg.hold_min)..=nanos(self.cfg.hold_max)))
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|at| Instant::now() >= at)
    }

    fn ops_exhausted(&self, done: u64) -> bool {
        self.cfg.ops_per_worker.is_some_and(|ops| done >= ops)
    }

    fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }

    fn count_violation(&self) {
        self.progress.violations.fetch_add(1, Ordering::Relaxed);
    }

    fn count_release(&self, released: Option<Result<(), LockError>>) {
        if let Some(Err(_)) = released {
            self.count_error();
        }
    }

    fn record_wait(&self, waited: Duration) {
        lock(&self.wait).saturating_record(micros(waited));
    }

    /// Ask for `key` (or, with locking off, just enter).
    async fn attempt(
        &self,
        service: &LockService,
        worker: usize,
        key: usize,
        opts: AcquireOptions,
        how: How,
    ) -> Attempt<'_> {
        let Some(name) = self.names.get(key) else {
            return Attempt::Stopped;
        };
        let mut guard = None;
        if self.locking {
            let started = Instant::now();
            let acquire = async {
                match how {
                    How::Wait => service.acquire_opts(name, opts).await,
                    How::Try => service.try_acquire_opts(name, opts).await,
                }
            };
            let outcome = tokio::select! {
                r = acquire => r,
                // Abandon a wait that outlives the run (the service cleans up after itself).
                () = stop_at(self.deadline) => return Attempt::Stopped,
            };
            match outcome {
                Ok(g) => {
                    self.record_wait(started.elapsed());
                    guard = Some(g);
                }
                Err(LockError::Contended { .. }) => return Attempt::Contended,
                Err(LockError::AcquireTimeout { .. }) => {
                    self.timeouts.fetch_add(1, Ordering::SeqCst);
                    return Attempt::TimedOut;
                }
                Err(_) => {
                    self.count_error();
                    tokio::time::sleep(ERROR_PAUSE).await;
                    return Attempt::Failed;
                }
            }
        }
        let fence = guard.as_ref().map_or(0, |g| g.fence());
        self.entered(worker, key, fence);
        self.progress.ops.fetch_add(1, Ordering::Relaxed);
        Attempt::Entered(Section {
            ctx: self,
            worker,
            key,
            guard,
            fence,
            open: true,
        })
    }

    /// The generic checker, right after `worker` got `key` with `fence` (0: no lock).
    fn entered(&self, worker: usize, key: usize, fence: u64) {
        self.acquired.fetch_add(1, Ordering::SeqCst);
        let Some(state) = self.keys.get(key) else {
            return;
        };
        let now = state.holders.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        if now > 1 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
            if self.cfg.scenario == Scenario::Mutex {
                self.count_violation();
            }
        }
        if self.locking {
            let previous = state.last_fence.fetch_max(fence, Ordering::SeqCst);
            if previous >= fence {
                self.fence_regressions.fetch_add(1, Ordering::SeqCst);
                self.count_violation();
            }
        }
        let left = lock(&state.last_leave).take();
        if let Some((by, at)) = left {
            if by != worker {
                lock(&self.handoff).saturating_record(micros(at.elapsed()));
            }
        }
    }

    /// The generic checker, when `worker` leaves `key` (before releasing it).
    fn left(&self, worker: usize, key: usize) {
        if let Some(state) = self.keys.get(key) {
            state.holders.fetch_sub(1, Ordering::SeqCst);
            *lock(&state.last_leave) = Some((worker, Instant::now()));
        }
    }

    async fn join(&self, mut tasks: JoinSet<()>) {
        while let Some(joined) = tasks.join_next().await {
            // A worker that panicked or was cancelled: count it, keep the others' numbers.
            if joined.is_err() {
                self.count_error();
            }
        }
    }

    /// The service of `worker` (round-robin); `None` only if there is no service at all.
    fn service_for(services: &[LockService], worker: usize) -> Option<LockService> {
        services.get(worker % services.len().max(1)).cloned()
    }
}

/// Being inside a key's critical section, with or without a lock.
struct Section<'a> {
    ctx: &'a Ctx,
    worker: usize,
    key: usize,
    guard: Option<LockGuard>,
    fence: u64,
    open: bool,
}

impl Section<'_> {
    fn close(&mut self) {
        if self.open {
            self.open = false;
            self.ctx.left(self.worker, self.key);
        }
    }

    /// Leave the critical section, then release the lock. `None` when there was no lock.
    async fn leave(mut self) -> Option<Result<(), LockError>> {
        self.close();
        match self.guard.take() {
            Some(guard) => Some(guard.release().await),
            None => None,
        }
    }
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        // Cancelled inside the section: still keep the holder count right. The guard, if any,
        // releases in the background.
        self.close();
    }
}

// ---------------------------------------------------------------------------------------------
// mutex

mod mutex {
    use super::*;

    pub(super) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
        let mut tasks = JoinSet::new();
        for worker in 0..ctx.cfg.workers {
            let Some(service) = Ctx::service_for(services, worker) else {
                break;
            };
            tasks.spawn(run_worker(Arc::clone(ctx), service, worker));
        }
        ctx.join(tasks).await;
        let overlaps = ctx.overlaps.load(Ordering::SeqCst);
        let mut details = Vec::new();
        if overlaps > 0 {
            details.push(format!(
                "{overlaps} acquire(s) found the key already held (up to {} holders of one key \
                 at once)",
                ctx.max_concurrent.load(Ordering::SeqCst)
            ));
        }
        Outcome {
            ops: None,
            violations: overlaps,
            counters: vec![("overlaps", overlaps)],
            details,
            problems: Vec::new(),
        }
    }

    async fn run_worker(ctx: Arc<Ctx>, service: LockService, worker: usize) {
        let mut rng = ctx.rng(worker);
        let mut done: u64 = 0;
        loop {
            if ctx.ops_exhausted(done) || ctx.past_deadline() {
                break;
            }
            let key = rng.usize(..ctx.names.len());
            let hold = ctx.hold(&mut rng);
            let attempt = ctx
                .attempt(&service, worker, key, AcquireOptions::new(), How::Wait)
                .await;
            match attempt {
                Attempt::Stopped => break,
                Attempt::Entered(section) => {
                    done += 1;
                    hold_for(hold).await;
                    ctx.count_release(section.leave().await);
                }
                Attempt::Contended | Attempt::TimedOut | Attempt::Failed => done += 1,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// at-most-once work (double-payment and job-dedup)

/// Work that must happen at most once per item — a charge per order, a run per job — checked
/// by counting how often each item was actually done.
struct AtMostOnce {
    done: Vec<AtomicBool>,
    runs: Vec<AtomicU64>,
    duplicates: AtomicU64,
    skipped_done: AtomicU64,
}

/// What an [`AtMostOnce`] saw, at the end of a run.
struct OnceTally {
    total: u64,
    twice: Vec<usize>,
    never: Vec<usize>,
    duplicates: u64,
    skipped_done: u64,
}

impl AtMostOnce {
    fn new(items: usize) -> Self {
        AtMostOnce {
            done: (0..items).map(|_| AtomicBool::new(false)).collect(),
            runs: (0..items).map(|_| AtomicU64::new(0)).collect(),
            duplicates: AtomicU64::new(0),
            skipped_done: AtomicU64::new(0),
        }
    }

    /// Inside the item's critical section: skip it when it is already done, else do it (the
    /// side effect is recorded first, then takes `hold`). `false` for an unknown item.
    async fn perform(&self, ctx: &Ctx, item: usize, hold: Duration) -> bool {
        let (Some(done), Some(runs)) = (self.done.get(item), self.runs.get(item)) else {
            return false;
        };
        if done.load(Ordering::SeqCst) {
            self.skipped_done.fetch_add(1, Ordering::SeqCst);
        } else {
            if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                self.duplicates.fetch_add(1, Ordering::SeqCst);
                ctx.count_violation();
            }
            hold_for(hold).await;
            done.store(true, Ordering::SeqCst);
        }
        true
    }

    fn tally(&self) -> OnceTally {
        let runs: Vec<u64> = self.runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        let items = |pred: fn(u64) -> bool| -> Vec<usize> {
            runs.iter()
                .enumerate()
                .filter(|&(_, &n)| pred(n))
                .map(|(i, _)| i)
                .collect()
        };
        OnceTally {
            total: runs.iter().sum(),
            twice: items(|n| n > 1),
            never: items(|n| n == 0),
            duplicates: self.duplicates.load(Ordering::SeqCst),
            skipped_done: self.skipped_done.load(Ordering::SeqCst),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// double-payment

mod double_payment {
    use super::*;

    /// The shared ledger (paid orders) and the payment provider's record of charges.
    type Ledger = AtMostOnce;

    pub(super) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
        let orders = ctx.names.len();
        let ledger = Arc::new(Ledger::new(orders));
        let mut tasks = JoinSet::new();
        for worker in 0..ctx.cfg.workers {
            let Some(service) = Ctx::service_for(services, worker) else {
                break;
            };
            tasks.spawn(run_worker(
                Arc::clone(ctx),
                Arc::clone(&ledger),
                service,
                worker,
            ));
        }
        ctx.join(tasks).await;

        let OnceTally {
            total: charges,
            twice,
            never: unpaid,
            duplicates,
            skipped_done: already_paid,
        } = ledger.tally();
        let mut details = Vec::new();
        if duplicates > 0 {
            details.push(format!(
                "{duplicates} duplicate charge(s): {} order(s) charged more than once \
                 (orders {})",
                twice.len(),
                examples(&twice)
            ));
        }
        let mut problems = Vec::new();
        if !unpaid.is_empty() {
            problems.push(format!(
                "{} of {orders} order(s) were never charged (orders {}): the run hit its time \
                 limit or every attempt failed",
                unpaid.len(),
                examples(&unpaid)
            ));
        }
        Outcome {
            ops: None,
            violations: duplicates,
            counters: vec![
                ("orders", to_u64(orders)),
                ("charges", charges),
                ("duplicate_charges", duplicates),
                ("orders_charged_twice", to_u64(twice.len())),
                ("already_paid_skips", already_paid),
                ("unpaid_orders", to_u64(unpaid.len())),
            ],
            details,
            problems,
        }
    }

    async fn run_worker(ctx: Arc<Ctx>, ledger: Arc<Ledger>, service: LockService, worker: usize) {
        let mut rng = ctx.rng(worker);
        // Every instance receives the same stream of orders, in the same order.
        for order in 0..ctx.names.len() {
            if ctx.past_deadline() {
                break;
            }
            let hold = ctx.hold(&mut rng);
            let attempt = ctx
                .attempt(&service, worker, order, AcquireOptions::new(), How::Wait)
                .await;
            let section = match attempt {
                Attempt::Entered(section) => section,
                Attempt::Stopped => break,
                // Another instance will charge it.
                Attempt::Contended | Attempt::TimedOut | Attempt::Failed => continue,
            };
            // Charge unless paid: the provider records the charge, then answers after `hold`.
            if !ledger.perform(&ctx, order, hold).await {
                break;
            }
            ctx.count_release(section.leave().await);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// oversell

mod oversell {
    use super::*;

    /// The inventory (read and written as plain values, like a row without a transaction) and
    /// the confirmed sales.
    struct Shop {
        stock: Vec<AtomicI64>,
        sold: Vec<AtomicU64>,
        min_stock: AtomicI64,
        found_empty: AtomicU64,
    }

    pub(super) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
        let skus = ctx.names.len();
        let initial = i64::try_from(ctx.cfg.stock).unwrap_or(i64::MAX);
        let shop = Arc::new(Shop {
            stock: (0..skus).map(|_| AtomicI64::new(initial)).collect(),
            sold: (0..skus).map(|_| AtomicU64::new(0)).collect(),
            min_stock: AtomicI64::new(initial),
            found_empty: AtomicU64::new(0),
        });
        let mut tasks = JoinSet::new();
        for worker in 0..ctx.cfg.workers {
            let Some(service) = Ctx::service_for(services, worker) else {
                break;
            };
            tasks.spawn(run_worker(
                Arc::clone(ctx),
                Arc::clone(&shop),
                service,
                worker,
            ));
        }
        ctx.join(tasks).await;

        let mut sold_total: u64 = 0;
        let mut remaining_total: i64 = 0;
        let mut oversold_total: u64 = 0;
        let mut oversold_skus = Vec::new();
        let mut negative_skus = Vec::new();
        for sku in 0..skus {
            let (Some(stock), Some(sold)) = (shop.stock.get(sku), shop.sold.get(sku)) else {
                continue;
            };
            let stock = stock.load(Ordering::SeqCst);
            let sold = sold.load(Ordering::SeqCst);
            sold_total = sold_total.saturating_add(sold);
            remaining_total = remaining_total.saturating_add(stock);
            // Units taken out of stock; every sale must have taken one.
            let taken = u64::try_from(initial.saturating_sub(stock)).unwrap_or(0);
            if sold > taken {
                oversold_total += sold - taken;
                oversold_skus.push(sku);
            }
            if stock < 0 {
                negative_skus.push(sku);
            }
        }
        let min_stock = shop.min_stock.load(Ordering::SeqCst);
        let below_zero = if min_stock < 0 {
            to_u64(negative_skus.len()).max(1)
        } else {
            0
        };
        let mut details = Vec::new();
        if oversold_total > 0 {
            details.push(format!(
                "{oversold_total} unit(s) oversold: {sold_total} sold from an initial stock of \
                 {} with {remaining_total} left (SKUs {})",
                ctx.cfg.stock.saturating_mul(to_u64(skus)),
                examples(&oversold_skus)
            ));
        }
        if below_zero > 0 {
            details.push(format!(
                "stock went below zero (lowest {min_stock}; SKUs {})",
                examples(&negative_skus)
            ));
        }
        let mut problems = Vec::new();
        if remaining_total > 0 {
            problems.push(format!(
                "did not sell out: {remaining_total} unit(s) left when the run ended (raise the \
                 duration or lower the stock)"
            ));
        }
        Outcome {
            ops: None,
            violations: oversold_total.saturating_add(below_zero),
            counters: vec![
                ("skus", to_u64(skus)),
                ("initial_stock", ctx.cfg.stock.saturating_mul(to_u64(skus))),
                ("sold", sold_total),
                ("oversold", oversold_total),
                ("remaining", u64::try_from(remaining_total).unwrap_or(0)),
                ("stock_below_zero", below_zero),
                ("found_sold_out", shop.found_empty.load(Ordering::SeqCst)),
            ],
            details,
            problems,
        }
    }

    async fn run_worker(ctx: Arc<Ctx>, shop: Arc<Shop>, service: LockService, worker: usize) {
        let mut rng = ctx.rng(worker);
        let skus = shop.stock.len();
        loop {
            if ctx.past_deadline() {
                break;
            }
            // Browse: a random SKU that still shows stock; none left means sold out.
            let first = rng.usize(..skus.max(1));
            let Some(sku) = (0..skus).map(|i| (first + i) % skus).find(|&s| {
                shop.stock
                    .get(s)
                    .is_some_and(|v| v.load(Ordering::SeqCst) > 0)
            }) else {
                break;
            };
            let hold = ctx.hold(&mut rng);
            let attempt = ctx
                .attempt(&service, worker, sku, AcquireOptions::new(), How::Wait)
                .await;
            let section = match attempt {
                Attempt::Entered(section) => section,
                Attempt::Stopped => break,
                Attempt::Contended | Attempt::TimedOut | Attempt::Failed => continue,
            };
            let (Some(stock), Some(sold)) = (shop.stock.get(sku), shop.sold.get(sku)) else {
                break;
            };
            let seen = stock.load(Ordering::SeqCst);
            hold_for(hold).await;
            if seen > 0 {
                let left = seen - 1;
                stock.store(left, Ordering::SeqCst);
                sold.fetch_add(1, Ordering::SeqCst);
                shop.min_stock.fetch_min(left, Ordering::SeqCst);
                let taken = ctx
                    .cfg
                    .stock
                    .saturating_sub(u64::try_from(left).unwrap_or(0));
                if sold.load(Ordering::SeqCst) > taken {
                    ctx.count_violation();
                }
            } else {
                shop.found_empty.fetch_add(1, Ordering::SeqCst);
            }
            ctx.count_release(section.leave().await);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// job-dedup

mod job_dedup {
    use super::*;

    struct Jobs {
        work: AtMostOnce,
        skipped_in_progress: AtomicU64,
    }

    pub(super) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
        let count = ctx.names.len();
        let jobs = Arc::new(Jobs {
            work: AtMostOnce::new(count),
            skipped_in_progress: AtomicU64::new(0),
        });
        let mut tasks = JoinSet::new();
        for worker in 0..ctx.cfg.workers {
            let Some(service) = Ctx::service_for(services, worker) else {
                break;
            };
            tasks.spawn(run_worker(
                Arc::clone(ctx),
                Arc::clone(&jobs),
                service,
                worker,
            ));
        }
        ctx.join(tasks).await;

        let OnceTally {
            total: total_runs,
            twice,
            never,
            duplicates,
            skipped_done,
        } = jobs.work.tally();
        let mut details = Vec::new();
        if duplicates > 0 {
            details.push(format!(
                "{duplicates} duplicate run(s): {} job(s) ran more than once (jobs {})",
                twice.len(),
                examples(&twice)
            ));
        }
        let mut problems = Vec::new();
        if !never.is_empty() {
            problems.push(format!(
                "{} of {count} job(s) never ran (jobs {}): the run hit its time limit or every \
                 attempt failed",
                never.len(),
                examples(&never)
            ));
        }
        Outcome {
            ops: None,
            violations: duplicates,
            counters: vec![
                ("jobs", to_u64(count)),
                ("runs", total_runs),
                ("duplicate_runs", duplicates),
                ("jobs_run_twice", to_u64(twice.len())),
                (
                    "skipped_in_progress",
                    jobs.skipped_in_progress.load(Ordering::SeqCst),
                ),
                ("skipped_done", skipped_done),
                ("jobs_never_run", to_u64(never.len())),
            ],
            details,
            problems,
        }
    }

    async fn run_worker(ctx: Arc<Ctx>, jobs: Arc<Jobs>, service: LockService, worker: usize) {
        let mut rng = ctx.rng(worker);
        // The job fires on every instance: all walk the same list in the same order.
        for job in 0..ctx.names.len() {
            if ctx.past_deadline() {
                break;
            }
            let hold = ctx.hold(&mut rng);
            let attempt = ctx
                .attempt(&service, worker, job, AcquireOptions::new(), How::Try)
                .await;
            let section = match attempt {
                Attempt::Entered(section) => section,
                Attempt::Contended => {
                    jobs.skipped_in_progress.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                Attempt::Stopped => break,
                Attempt::TimedOut | Attempt::Failed => continue,
            };
            if !jobs.work.perform(&ctx, job, hold).await {
                break;
            }
            ctx.count_release(section.leave().await);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// leader-failover

mod leader_failover {
    use super::*;

    /// The role's world: who leads, what the leaders did, and the fault controls.
    struct World {
        acting: AtomicU64,
        max_term: Mutex<u64>,
        actions: AtomicU64,
        overlapping: AtomicU64,
        stale: AtomicU64,
        elections: AtomicU64,
        deploys: AtomicU64,
        cutoffs: AtomicU64,
        current: Mutex<Option<usize>>,
        deploy: Vec<watch::Sender<u64>>,
        faulty: Vec<FaultyBackend>,
        campaign_since: Vec<Mutex<Instant>>,
    }

    pub(super) async fn run(
        ctx: &Arc<Ctx>,
        services: &[LockService],
        faulty: Vec<FaultyBackend>,
    ) -> Outcome {
        let candidates = ctx.cfg.workers;
        let world = Arc::new(World {
            acting: AtomicU64::new(0),
            max_term: Mutex::new(0),
            actions: AtomicU64::new(0),
            overlapping: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            elections: AtomicU64::new(0),
            deploys: AtomicU64::new(0),
            cutoffs: AtomicU64::new(0),
            current: Mutex::new(None),
            deploy: (0..candidates).map(|_| watch::channel(0).0).collect(),
            faulty,
            campaign_since: (0..candidates).map(|_| Mutex::new(ctx.start)).collect(),
        });
        let mut tasks = JoinSet::new();
        for who in 0..candidates {
            tasks.spawn(candidate(
                Arc::clone(ctx),
                Arc::clone(&world),
                who,
                services.get(who).cloned(),
            ));
        }
        tasks.spawn(controller(Arc::clone(ctx), Arc::clone(&world)));
        ctx.join(tasks).await;
        for f in &world.faulty {
            f.set_unavailable(false);
        }

        let overlapping = world.overlapping.load(Ordering::SeqCst);
        let stale = world.stale.load(Ordering::SeqCst);
        let elections = world.elections.load(Ordering::SeqCst);
        let deploys = world.deploys.load(Ordering::SeqCst);
        let cutoffs = world.cutoffs.load(Ordering::SeqCst);
        let actions = world.actions.load(Ordering::SeqCst);
        let mut details = Vec::new();
        if overlapping > 0 {
            details.push(format!(
                "{overlapping} action(s) while another leader was acting"
            ));
        }
        if stale > 0 {
            details.push(format!(
                "{stale} action(s) by a stale leader (a term lower than an earlier action's)"
            ));
        }
        let mut problems = Vec::new();
        if elections == 0 {
            problems.push("no leader was ever elected".to_owned());
        } else if actions == 0 {
            problems.push("no leader ever acted".to_owned());
        }
        if deploys + cutoffs == 0 {
            problems.push(
                "no failover was injected (no leader at any fault time): run longer".to_owned(),
            );
        }
        Outcome {
            ops: Some(actions),
            violations: overlapping.saturating_add(stale),
            counters: vec![
                ("candidates", to_u64(candidates)),
                ("elections", elections),
                ("actions", actions),
                ("deploys", deploys),
                ("cutoffs", cutoffs),
                ("overlapping_actions", overlapping),
                ("stale_actions", stale),
            ],
            details,
            problems,
        }
    }

    /// One candidate process: campaigns, leads while elected, and restarts after a deploy.
    async fn candidate(ctx: Arc<Ctx>, world: Arc<World>, who: usize, service: Option<LockService>) {
        let Some(sender) = world.deploy.get(who) else {
            return;
        };
        let mut deploys = sender.subscribe();
        let role = ctx.names.first().cloned().unwrap_or_default();
        let election = if ctx.locking {
            match service.as_ref().map(|s| s.election(&role)) {
                Some(Ok(election)) => Some(election),
                _ => {
                    ctx.count_error();
                    return;
                }
            }
        } else {
            None
        };
        let restart_delay = ctx.cfg.ttl / 4;
        loop {
            if ctx.past_deadline() {
                break;
            }
            if let Some(since) = world.campaign_since.get(who) {
                *lock(since) = Instant::now();
            }
            let deadline = ctx.deadline;
            let stop = async {
                tokio::select! {
                    r = deploys.changed() => {
                        if r.is_err() {
                            stop_at(deadline).await;
                        }
                    }
                    () = stop_at(deadline) => {}
                }
            };
            match &election {
                Some(election) => {
                    let task = |handle: LeaseHandle| {
                        lead(Arc::clone(&ctx), Arc::clone(&world), who, Some(handle))
                    };
                    if election
                        .run_until(AcquireOptions::new(), task, stop)
                        .await
                        .is_err()
                    {
                        ctx.count_error();
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
                None => {
                    tokio::select! {
                        () = lead(Arc::clone(&ctx), Arc::clone(&world), who, None) => {}
                        () = stop => {}
                    }
                }
            }
            if ctx.past_deadline() {
                break;
            }
            // Deployed: the new version of the process starts a moment later.
            tokio::select! {
                () = tokio::time::sleep(restart_delay) => {}
                () = stop_at(deadline) => break,
            }
        }
    }

    /// Ends a leader's tenure when its task is dropped (cancelled by `run_until`).
    struct Tenure<'a> {
        ctx: &'a Ctx,
        world: &'a World,
        who: usize,
    }

    impl Drop for Tenure<'_> {
        fn drop(&mut self) {
            self.ctx.left(self.who, 0);
            let mut current = lock(&self.world.current);
            if *current == Some(self.who) {
                *current = None;
            }
            drop(current);
            if let Some(since) = self.world.campaign_since.get(self.who) {
                *lock(since) = Instant::now();
            }
        }
    }

    /// The leader task: act every hold time while the lease is trusted. Never returns; it is
    /// cancelled when leadership ends.
    async fn lead(ctx: Arc<Ctx>, world: Arc<World>, who: usize, handle: Option<LeaseHandle>) {
        let term = handle.as_ref().map_or(0, |h| h.fence());
        if ctx.locking {
            if let Some(since) = world.campaign_since.get(who) {
                let waited = lock(since).elapsed();
                ctx.record_wait(waited);
            }
        }
        world.elections.fetch_add(1, Ordering::SeqCst);
        *lock(&world.current) = Some(who);
        ctx.entered(who, 0, term);
        let _tenure = Tenure {
            ctx: &ctx,
            world: &world,
            who,
        };
        let mut rng = fastrand::Rng::with_seed(worker_seed(ctx.cfg.seed ^ term, who));
        loop {
            // A careful leader does not act while a renewal is unconfirmed (`Unknown`).
            let trusted = handle
                .as_ref()
                .is_none_or(|h| h.state() == LeaseState::Held);
            if trusted {
                act(&ctx, &world, term).await;
            }
            tokio::time::sleep(ctx.hold(&mut rng).max(MIN_ACTION_INTERVAL)).await;
        }
    }

    /// Counts a leader in the act while it lives.
    struct Acting<'a>(&'a World);

    impl Drop for Acting<'_> {
        fn drop(&mut self) {
            self.0.acting.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// One action of a leader, stamped with its term; the checker looks at both invariants.
    async fn act(ctx: &Ctx, world: &World, term: u64) {
        let now = world.acting.fetch_add(1, Ordering::SeqCst) + 1;
        let acting = Acting(world);
        if now > 1 {
            world.overlapping.fetch_add(1, Ordering::SeqCst);
            ctx.count_violation();
        }
        {
            let mut max = lock(&world.max_term);
            if term < *max {
                world.stale.fetch_add(1, Ordering::SeqCst);
                ctx.count_violation();
            } else {
                *max = term;
            }
        }
        world.actions.fetch_add(1, Ordering::SeqCst);
        ctx.progress.ops.fetch_add(1, Ordering::Relaxed);
        // The action takes a moment: every other task may run now.
        tokio::task::yield_now().await;
        drop(acting);
    }

    /// Every `fault_interval`: deploy the current leader away, or cut it off from the store
    /// for two ttls, alternately.
    async fn controller(ctx: Arc<Ctx>, world: Arc<World>) {
        let cut_for = ctx.cfg.ttl.saturating_mul(2);
        let mut faults: u64 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(ctx.cfg.fault_interval) => {}
                () = stop_at(ctx.deadline) => break,
            }
            let leader = *lock(&world.current);
            let Some(leader) = leader else {
                continue;
            };
            if faults % 2 == 0 {
                if let Some(tx) = world.deploy.get(leader) {
                    tx.send_modify(|generation| *generation = generation.wrapping_add(1));
                    world.deploys.fetch_add(1, Ordering::SeqCst);
                }
            } else {
                let link = world.faulty.get(leader);
                if let Some(f) = link {
                    f.set_unavailable(true);
                }
                world.cutoffs.fetch_add(1, Ordering::SeqCst);
                tokio::select! {
                    () = tokio::time::sleep(cut_for) => {}
                    () = stop_at(ctx.deadline) => {}
                }
                if let Some(f) = link {
                    f.set_unavailable(false);
                }
            }
            faults += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gc-pause

mod gc_pause {
    use super::*;

    /// One resource of the fenced store, plus the checker's view of who holds it.
    #[derive(Default)]
    struct Resource {
        /// Bumped by every holder entering: a write from an older entry is stale.
        epoch: u64,
        /// The highest fence the store has seen.
        max_fence: u64,
    }

    /// The protected store: rejects writes with a fence lower than the highest it has seen.
    struct Store {
        resources: Vec<Mutex<Resource>>,
        pauses: AtomicU64,
        writes: AtomicU64,
        accepted: AtomicU64,
        stale_attempts: AtomicU64,
        stale_rejected: AtomicU64,
        stale_accepted: AtomicU64,
        fresh_rejected: AtomicU64,
        expired_releases: AtomicU64,
    }

    impl Store {
        /// A holder entered `key`; with `fence`, it writes at once (a normal holder touches
        /// the store first thing). Returns its entry epoch.
        fn enter(&self, ctx: &Ctx, key: usize, fence: Option<u64>) -> u64 {
            let Some(resource) = self.resources.get(key) else {
                return 0;
            };
            let mut r = lock(resource);
            r.epoch += 1;
            let epoch = r.epoch;
            if let Some(fence) = fence {
                self.apply(ctx, &mut r, epoch, fence);
            }
            epoch
        }

        fn write(&self, ctx: &Ctx, key: usize, epoch: u64, fence: u64) {
            if let Some(resource) = self.resources.get(key) {
                let mut r = lock(resource);
                self.apply(ctx, &mut r, epoch, fence);
            }
        }

        fn apply(&self, ctx: &Ctx, r: &mut Resource, epoch: u64, fence: u64) {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let stale = epoch != r.epoch;
            let accepted = fence >= r.max_fence;
            if accepted {
                r.max_fence = fence;
                self.accepted.fetch_add(1, Ordering::SeqCst);
            }
            match (stale, accepted) {
                (true, true) => {
                    self.stale_attempts.fetch_add(1, Ordering::SeqCst);
                    self.stale_accepted.fetch_add(1, Ordering::SeqCst);
                    ctx.count_violation();
                }
                (true, false) => {
                    self.stale_attempts.fetch_add(1, Ordering::SeqCst);
                    self.stale_rejected.fetch_add(1, Ordering::SeqCst);
                }
                (false, false) => {
                    self.fresh_rejected.fetch_add(1, Ordering::SeqCst);
                }
                (false, true) => {}
            }
        }
    }

    pub(super) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
        let store = Arc::new(Store {
            resources: ctx.names.iter().map(|_| Mutex::default()).collect(),
            pauses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            stale_attempts: AtomicU64::new(0),
            stale_rejected: AtomicU64::new(0),
            stale_accepted: AtomicU64::new(0),
            fresh_rejected: AtomicU64::new(0),
            expired_releases: AtomicU64::new(0),
        });
        let mut tasks = JoinSet::new();
        for worker in 0..ctx.cfg.workers {
            let Some(service) = Ctx::service_for(services, worker) else {
                break;
            };
            tasks.spawn(run_worker(
                Arc::clone(ctx),
                Arc::clone(&store),
                service,
                worker,
            ));
        }
        ctx.join(tasks).await;

        let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
        let pauses = load(&store.pauses);
        let attempts = load(&store.stale_attempts);
        let rejected = load(&store.stale_rejected);
        let accepted_stale = load(&store.stale_accepted);
        let mut details = Vec::new();
        if accepted_stale > 0 {
            details.push(format!(
                "{accepted_stale} of {attempts} stale write(s) accepted by the fenced store \
                 (a holder wrote after its lease ran out and another holder had written)"
            ));
        }
        let mut problems = Vec::new();
        if attempts == 0 {
            problems.push(format!(
                "no stale write was attempted in {pauses} GC pause(s): nobody took the lock \
                 during a pause (use more workers, fewer keys or a longer run)"
            ));
        }
        Outcome {
            ops: None,
            violations: accepted_stale,
            counters: vec![
                ("gc_pauses", pauses),
                ("writes", load(&store.writes)),
                ("writes_accepted", load(&store.accepted)),
                ("stale_attempts", attempts),
                ("stale_rejected", rejected),
                ("stale_accepted", accepted_stale),
                ("fresh_rejected", load(&store.fresh_rejected)),
                ("expired_releases", load(&store.expired_releases)),
            ],
            details,
            problems,
        }
    }

    async fn run_worker(ctx: Arc<Ctx>, store: Arc<Store>, service: LockService, worker: usize) {
        let mut rng = ctx.rng(worker);
        // Worker 0 is the one with the long GC pauses.
        let gc_prone = worker == 0;
        let pause = ctx.cfg.ttl.saturating_add(ctx.cfg.ttl / 2);
        let opts = if gc_prone {
            AcquireOptions::new().auto_renew(false)
        } else {
            AcquireOptions::new()
        };
        let mut done: u64 = 0;
        loop {
            if ctx.ops_exhausted(done) || ctx.past_deadline() {
                break;
            }
            let key = rng.usize(..ctx.names.len());
            let hold = ctx.hold(&mut rng);
            let attempt = ctx
                .attempt(&service, worker, key, opts.clone(), How::Wait)
                .await;
            let section = match attempt {
                Attempt::Entered(section) => section,
                Attempt::Stopped => break,
                Attempt::Contended | Attempt::TimedOut | Attempt::Failed => {
                    done += 1;
                    continue;
                }
            };
            done += 1;
            let fence = section.fence;
            if gc_prone {
                let epoch = store.enter(&ctx, key, None);
                store.pauses.fetch_add(1, Ordering::SeqCst);
                // Stop the world: longer than the ttl, with no renewal running.
                tokio::time::sleep(pause).await;
                store.write(&ctx, key, epoch, fence);
                match section.leave().await {
                    Some(Err(LockError::NotOwner { .. } | LockError::Lost { .. })) => {
                        store.expired_releases.fetch_add(1, Ordering::SeqCst);
                    }
                    other => ctx.count_release(other),
                }
            } else {
                let epoch = store.enter(&ctx, key, Some(fence));
                hold_for(hold).await;
                store.write(&ctx, key, epoch, fence);
                ctx.count_release(section.leave().await);
                // Other work before the next write: waiters in other processes get a turn.
                hold_for(hold).await;
            }
        }
    }
}
