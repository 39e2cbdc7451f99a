//! What every worker of a run shares ([`Ctx`]): the configuration, the key names, the generic
//! checker, the counters and the wait histogram; how a worker asks for a lock
//! ([`Ctx::attempt`]) and the critical section it is then in ([`Section`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use locks_core::{AcquireOptions, LockError, LockGuard, LockService};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::checker::KeyChecker;
use super::config::SimConfig;
use super::report::LatencySummary;
use super::runner::Progress;
use super::scenario::Scenario;
use super::util::{lock, micros, nanos, new_histogram, stop_at, worker_seed};

/// How long a worker pauses after an acquire error, so a dead backend does not spin a core
/// (and so paused test time can advance).
pub(super) const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// What a scenario adds to the generic figures.
#[derive(Default)]
pub(super) struct Outcome {
    /// Operations for the throughput figure; `None`: the critical sections entered.
    pub(super) ops: Option<u64>,
    /// The scenario checker's violations.
    pub(super) violations: u64,
    /// Scenario-specific figures, by name.
    pub(super) counters: Vec<(&'static str, u64)>,
    /// One line per kind of violation.
    pub(super) details: Vec<String>,
    /// Why the scenario failed without a violation.
    pub(super) problems: Vec<String>,
}

/// Shared by every worker of a run: configuration, key names, the generic checker and the
/// latency histograms.
pub(super) struct Ctx {
    pub(super) cfg: SimConfig,
    /// `false` with [`SimConfig::unsafe_no_lock`].
    pub(super) locking: bool,
    pub(super) names: Vec<String>,
    pub(super) checker: KeyChecker,
    pub(super) start: Instant,
    pub(super) deadline: Option<Instant>,
    pub(super) timeouts: AtomicU64,
    pub(super) errors: AtomicU64,
    wait: Mutex<Histogram<u64>>,
    pub(super) progress: Arc<Progress>,
}

/// How a worker asks for a lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum How {
    /// `acquire_opts`: wait up to the wait timeout.
    Wait,
    /// `try_acquire_opts`: one attempt.
    Try,
}

/// The result of asking for a lock.
pub(super) enum Attempt<'a> {
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
    pub(super) fn new(
        cfg: SimConfig,
        locking: bool,
        names: Vec<String>,
        progress: Arc<Progress>,
    ) -> Result<Self, LockError> {
        let start = Instant::now();
        let deadline = cfg.duration.and_then(|d| start.checked_add(d));
        Ok(Ctx {
            checker: KeyChecker::new(names.len(), cfg.scenario == Scenario::Mutex, locking)?,
            names,
            locking,
            start,
            deadline,
            timeouts: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            wait: Mutex::new(new_histogram()?),
            progress,
            cfg,
        })
    }

    /// The reproducible random number generator of `worker`.
    pub(super) fn rng(&self, worker: usize) -> fastrand::Rng {
        fastrand::Rng::with_seed(worker_seed(self.cfg.seed, worker))
    }

    /// A random hold time within the configured range.
    pub(super) fn hold(&self, rng: &mut fastrand::Rng) -> Duration {
        Duration::from_nanos(rng.u64(nanos(self.cfg.hold_min)..=nanos(self.cfg.hold_max)))
    }

    pub(super) fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|at| Instant::now() >= at)
    }

    pub(super) fn ops_exhausted(&self, done: u64) -> bool {
        self.cfg.ops_per_worker.is_some_and(|ops| done >= ops)
    }

    pub(super) fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn count_violation(&self) {
        self.progress.add_violation();
    }

    /// Counts a release that failed as an error.
    pub(super) fn count_release(&self, released: Option<Result<(), LockError>>) {
        if let Some(Err(_)) = released {
            self.count_error();
        }
    }

    pub(super) fn record_wait(&self, waited: Duration) {
        lock(&self.wait).saturating_record(micros(waited));
    }

    /// The wait latency percentiles so far.
    pub(super) fn wait(&self) -> LatencySummary {
        LatencySummary::from_histogram(&lock(&self.wait))
    }

    /// Ask for `key` (or, with locking off, just enter).
    pub(super) async fn attempt(
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
        self.progress.add_op();
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
    pub(super) fn entered(&self, worker: usize, key: usize, fence: u64) {
        self.checker.entered(worker, key, fence, &self.progress);
    }

    /// The generic checker, when `worker` leaves `key` (before releasing it).
    pub(super) fn left(&self, worker: usize, key: usize) {
        self.checker.left(worker, key);
    }

    /// Waits for every task; a worker that panicked or was cancelled counts as an error.
    pub(super) async fn join(&self, mut tasks: JoinSet<()>) {
        while let Some(joined) = tasks.join_next().await {
            // Keep the other workers' numbers.
            if joined.is_err() {
                self.count_error();
            }
        }
    }

    /// The service of `worker` (round-robin); `None` only if there is no service at all.
    fn service_for(services: &[LockService], worker: usize) -> Option<LockService> {
        services.get(worker % services.len().max(1)).cloned()
    }

    /// Spawns one task per configured worker, `worker(ctx, service, index)` with the services
    /// shared round-robin, and waits for all of them (see [`Ctx::join`]).
    pub(super) async fn run_workers<W, F>(self: &Arc<Self>, services: &[LockService], mut worker: W)
    where
        W: FnMut(Arc<Ctx>, LockService, usize) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for index in 0..self.cfg.workers {
            let Some(service) = Ctx::service_for(services, index) else {
                break;
            };
            tasks.spawn(worker(Arc::clone(self), service, index));
        }
        self.join(tasks).await;
    }

    /// The random key and hold-time choices of `worker` in `mutex` and `gc-pause`.
    pub(super) fn random_picks(&self, worker: usize) -> RandomPicks {
        RandomPicks {
            rng: self.rng(worker),
            attempts: 0,
        }
    }
}

/// The choices of a worker that asks for random keys with random hold times, until its
/// attempts ([`SimConfig::ops_per_worker`]) or the run's time are used up.
pub(super) struct RandomPicks {
    rng: fastrand::Rng,
    attempts: u64,
}

impl RandomPicks {
    /// The next key to ask for and how long to hold it, counted as an attempt; `None` once
    /// the worker is done.
    pub(super) fn next(&mut self, ctx: &Ctx) -> Option<(usize, Duration)> {
        if ctx.ops_exhausted(self.attempts) || ctx.past_deadline() {
            return None;
        }
        self.attempts += 1;
        let key = self.rng.usize(..ctx.names.len());
        Some((key, ctx.hold(&mut self.rng)))
    }
}

/// Being inside a key's critical section, with or without a lock.
pub(super) struct Section<'a> {
    ctx: &'a Ctx,
    worker: usize,
    key: usize,
    guard: Option<LockGuard>,
    /// The lock's fence (0 without a lock).
    pub(super) fence: u64,
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
    pub(super) async fn leave(mut self) -> Option<Result<(), LockError>> {
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
