//! [`SimConfig`]: what to simulate, with the defaults of every scenario and their validation.

use std::time::Duration;

use locks_core::LockError;

use super::scenario::Scenario;

/// The most `LockService` instances [`SimConfig::default`] and `services: 0` ask for.
const DEFAULT_MAX_SERVICES: usize = 8;

/// The default time cap of the scenarios that end when their work is done.
const FINITE_RUN_CAP: Duration = Duration::from_secs(60);

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
    /// How many [`LockService`](locks_core::LockService) instances share the backend, as if
    /// they ran in separate processes; workers are spread over them round-robin. `0` means
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
        match scenario {
            Scenario::Mutex => SimConfig::default(),
            Scenario::DoublePayment => base.until_done(8, 100),
            Scenario::Oversell => SimConfig {
                hold_max: Duration::from_millis(1),
                ..base.until_done(16, 4)
            },
            Scenario::JobDedup => base.until_done(8, 200),
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

    /// `self` for a scenario that ends when its work is done: `workers` on `keys` items, with
    /// the duration as a cap ([`FINITE_RUN_CAP`]).
    fn until_done(self, workers: usize, keys: usize) -> Self {
        SimConfig {
            workers,
            keys,
            duration: Some(FINITE_RUN_CAP),
            ..self
        }
    }

    /// The number of [`LockService`](locks_core::LockService) instances a run actually
    /// builds: `services`, or `workers.min(8)` when it is 0, never more than `workers` and
    /// never less than 1.
    /// (`leader-failover` builds one per candidate instead.)
    pub fn effective_services(&self) -> usize {
        let wanted = if self.services == 0 {
            self.workers.min(DEFAULT_MAX_SERVICES)
        } else {
            self.services
        };
        wanted.min(self.workers).max(1)
    }

    /// Check the configuration; [`run`](super::run) calls this first.
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

/// The error of a bad simulator option.
pub(super) fn invalid(option: &'static str, reason: impl Into<String>) -> LockError {
    LockError::InvalidOptions {
        option,
        reason: reason.into(),
    }
}
