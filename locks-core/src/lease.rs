//! Held leases: the guard, its state, and the keeper that renews every lease of a service and
//! notices loss.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, sleep_until};

use crate::backend::{AcquireResult, LockBackend, ReleaseListener};
use crate::error::{BackendError, LockError};
use crate::key::LockKey;
use crate::options::validate_ttl;
use crate::token::OwnerToken;

/// Why a lease can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The store answered "not owner" to a renewal or extend: the lease expired or was taken.
    NotOwner,
    /// The holder's local deadline (acquire sent + ttl - drift margin) passed without a
    /// confirmed renewal, e.g. because the store could not be reached.
    DeadlineExpired,
    /// The service's `max_hold` stopped renewal and the lease ran out.
    MaxHoldReached,
    /// The holder released it.
    Released,
    /// The service was shut down, which released it.
    Shutdown,
    /// The holder abandoned it with [`LockGuard::abandon`]: no release, no renewal; the store
    /// expires it by its ttl.
    Abandoned,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::NotOwner => "the store no longer lists this owner",
            LostReason::DeadlineExpired => "the local deadline passed without a confirmed renewal",
            LostReason::MaxHoldReached => "the maximum hold time was reached",
            LostReason::Released => "it was released",
            LostReason::Shutdown => "the service shut down",
            LostReason::Abandoned => "it was abandoned (left to expire)",
        })
    }
}

impl LostReason {
    fn label(self) -> &'static str {
        match self {
            LostReason::NotOwner => "not_owner",
            LostReason::DeadlineExpired => "deadline",
            LostReason::MaxHoldReached => "max_hold",
            LostReason::Released => "released",
            LostReason::Shutdown => "shutdown",
            LostReason::Abandoned => "abandoned",
        }
    }
}

/// The holder's view of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// The last acquire or renewal was confirmed by the store and the local deadline is ahead.
    Held,
    /// A renewal failed for a transient reason; it may or may not have been applied. Renewal is
    /// retried until the local deadline, then the state becomes `Lost`.
    Unknown,
    /// The lease can no longer be trusted. Final.
    Lost(LostReason),
}

/// One lockable thing on a store, as the lease engine sees it: a mutex key today; semaphore
/// permits and read/write sides use the same shape. Implement it to build a new primitive on
/// the core's retry, waiting, renewal and lost-lock machinery.
#[async_trait]
pub trait LeaseResource: Send + Sync + 'static {
    /// The key this resource lives under.
    fn key(&self) -> &LockKey;
    /// One atomic attempt to take a lease for `token`.
    async fn try_acquire(
        &self,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError>;
    /// Compare-and-extend.
    async fn extend(&self, token: OwnerToken, ttl: Duration) -> Result<bool, BackendError>;
    /// Compare-and-release.
    async fn release(&self, token: OwnerToken) -> Result<bool, BackendError>;
    /// Whether the store lists `token` as a holder now.
    async fn is_held_by(&self, token: OwnerToken) -> Result<bool, BackendError>;
    /// Start listening for releases.
    async fn listen(&self) -> Result<Box<dyn ReleaseListener>, BackendError>;
    /// Backend name for metrics.
    fn backend_name(&self) -> &'static str;
    /// Whether at most one lease can exist at a time (a mutex: `true`, the default). Waiters
    /// of an exclusive resource queue in FIFO order inside the service.
    fn exclusive(&self) -> bool {
        true
    }
    /// Whether a failed attempt may leave state in the store that must be cleaned up with
    /// [`release`](LeaseResource::release) when the caller stops waiting (a writer's "waiting"
    /// mark). Default `false`.
    fn cleanup_after_wait(&self) -> bool {
        false
    }
}

/// A plain mutex key on a [`LockBackend`].
pub(crate) struct MutexResource {
    pub backend: Arc<dyn LockBackend>,
    pub key: LockKey,
}

#[async_trait]
impl LeaseResource for MutexResource {
    fn key(&self) -> &LockKey {
        &self.key
    }
    async fn try_acquire(
        &self,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.backend.try_acquire(&self.key, token, ttl).await
    }
    async fn extend(&self, token: OwnerToken, ttl: Duration) -> Result<bool, BackendError> {
        self.backend.extend(&self.key, token, ttl).await
    }
    async fn release(&self, token: OwnerToken) -> Result<bool, BackendError> {
        self.backend.release(&self.key, token).await
    }
    async fn is_held_by(&self, token: OwnerToken) -> Result<bool, BackendError> {
        Ok(self
            .backend
            .inspect(&self.key)
            .await?
            .is_some_and(|info| info.owner == token))
    }
    async fn listen(&self) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.backend.listen(&self.key).await
    }
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
}

/// The safety margin subtracted from a ttl for the holder's local deadline: 1 % of the ttl
/// plus 2 ms (as in Redlock), at most half the ttl.
pub fn drift_margin(ttl: Duration) -> Duration {
    (ttl / 100 + Duration::from_millis(2)).min(ttl / 2)
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    ttl: Duration,
    sent: Instant,
    deadline: Instant,
    version: u64,
}

/// The lease state, with a `watch` channel created only when someone subscribes (most leases
/// are released without anyone watching, and a channel costs an allocation and a notification
/// per change).
#[derive(Default)]
struct StateCell {
    inner: Mutex<StateInner>,
}

struct StateInner {
    state: LeaseState,
    watch: Option<watch::Sender<LeaseState>>,
}

impl Default for StateInner {
    fn default() -> Self {
        StateInner {
            state: LeaseState::Held,
            watch: None,
        }
    }
}

impl StateCell {
    fn get(&self) -> LeaseState {
        lock(&self.inner).state
    }

    /// Apply `modify`; when it reports a change, subscribers see the new state.
    fn update(&self, modify: impl FnOnce(&mut LeaseState) -> bool) -> bool {
        let mut inner = lock(&self.inner);
        let changed = modify(&mut inner.state);
        if changed {
            let state = inner.state;
            if let Some(tx) = &inner.watch {
                tx.send_replace(state);
            }
        }
        changed
    }

    fn subscribe(&self) -> watch::Receiver<LeaseState> {
        let mut inner = lock(&self.inner);
        let state = inner.state;
        inner
            .watch
            .get_or_insert_with(|| watch::Sender::new(state))
            .subscribe()
    }
}

pub(crate) struct LeaseConfig {
    pub ttl: Duration,
    pub max_ttl: Duration,
    pub auto_renew: bool,
    pub renew_fraction: f64,
    pub max_hold: Option<Duration>,
}

pub(crate) struct LeaseShared {
    id: u64,
    resource: Arc<dyn LeaseResource>,
    token: OwnerToken,
    fence: u64,
    acquired_at: Instant,
    hold_end: Option<Instant>,
    auto_renew: bool,
    renew_fraction: f64,
    max_ttl: Duration,
    timing: Mutex<Timing>,
    state: StateCell,
    /// A renewal of this lease is in flight (set by the keeper under its lock).
    renewing: AtomicBool,
    /// Signalled when an in-flight renewal has ended.
    renewal_done: Notify,
    finished: AtomicBool,
    keeper: Weak<Keeper>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LeaseShared {
    /// Build the shared state of a lease acquired by a request sent at `sent`, and hand it to
    /// the service's keeper, which renews it and watches its deadline.
    pub(crate) fn start(
        keeper: &Arc<Keeper>,
        resource: Arc<dyn LeaseResource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        cfg: &LeaseConfig,
    ) -> Arc<Self> {
        let deadline = sent + cfg.ttl.saturating_sub(drift_margin(cfg.ttl));
        let shared = Arc::new(LeaseShared {
            id: keeper.next_id.fetch_add(1, Ordering::Relaxed),
            resource,
            token,
            fence,
            acquired_at: sent,
            hold_end: cfg.max_hold.and_then(|h| sent.checked_add(h)),
            auto_renew: cfg.auto_renew,
            renew_fraction: cfg.renew_fraction,
            max_ttl: cfg.max_ttl,
            timing: Mutex::new(Timing {
                ttl: cfg.ttl,
                sent,
                deadline,
                version: 0,
            }),
            state: StateCell::default(),
            renewing: AtomicBool::new(false),
            renewal_done: Notify::new(),
            finished: AtomicBool::new(false),
            keeper: Arc::downgrade(keeper),
        });
        metrics::gauge!("locks_held", "backend" => shared.resource.backend_name()).increment(1.0);
        keeper.insert(Arc::clone(&shared));
        shared
    }

    fn timing(&self) -> Timing {
        *lock(&self.timing)
    }

    fn mark_lost(&self, reason: LostReason) {
        let changed = self.state.update(|s| {
            if matches!(s, LeaseState::Lost(_)) {
                false
            } else {
                *s = LeaseState::Lost(reason);
                true
            }
        });
        if changed && !matches!(reason, LostReason::Released | LostReason::Abandoned) {
            metrics::counter!("locks_lost_total", "backend" => self.resource.backend_name(), "reason" => reason.label())
                .increment(1);
            tracing::warn!(key = %self.resource.key(), fence = self.fence, %reason, "lease lost");
        }
    }

    fn set_state(&self, new: LeaseState) {
        self.state.update(|s| {
            if matches!(s, LeaseState::Lost(_)) || *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }

    /// The state, with the local deadline checked on the spot: a holder that was paused (or
    /// whose keeper has not run yet) never reports `Held` past its deadline.
    fn current_state(&self) -> LeaseState {
        let state = self.state.get();
        if matches!(state, LeaseState::Lost(_)) {
            return state;
        }
        let timing = self.timing();
        if Instant::now() >= timing.deadline {
            self.mark_lost(self.deadline_reason(&timing, false));
            return self.state.get();
        }
        state
    }

    /// Why the lease is lost when its deadline passes: `MaxHoldReached` if `max_hold` is what
    /// stopped renewal, else `DeadlineExpired`.
    fn deadline_reason(&self, timing: &Timing, hold_exhausted: bool) -> LostReason {
        match self.hold_end {
            Some(end)
                if self.auto_renew
                    && (hold_exhausted || timing.deadline + drift_margin(timing.ttl) >= end) =>
            {
                LostReason::MaxHoldReached
            }
            _ => LostReason::DeadlineExpired,
        }
    }

    /// Wait until no renewal of this lease is in flight. The caller has already taken the lease
    /// off the keeper's schedule, so none can start afterwards.
    async fn renewal_ended(&self) {
        while self.renewing.load(Ordering::SeqCst) {
            let done = self.renewal_done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if !self.renewing.load(Ordering::SeqCst) {
                return;
            }
            done.await;
        }
    }

    /// Stop renewal (waiting for a renewal in flight), then release in the store.
    /// `Ok(None)`: someone else (release, drop or shutdown) already finished this lease.
    pub(crate) async fn finish(
        self: &Arc<Self>,
        reason: LostReason,
    ) -> Result<Option<bool>, BackendError> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        if let Some(keeper) = self.keeper.upgrade() {
            keeper.remove(self.id);
        }
        self.renewal_ended().await;
        let backend = self.resource.backend_name();
        metrics::gauge!("locks_held", "backend" => backend).decrement(1.0);
        metrics::histogram!("locks_hold_seconds", "backend" => backend)
            .record(self.acquired_at.elapsed().as_secs_f64());
        let revoked = self.current_state() == LeaseState::Lost(LostReason::NotOwner);
        // Tell the holder first (lost() fires), then give the lease back.
        self.mark_lost(reason);
        let result = if revoked {
            Ok(false)
        } else {
            self.resource.release(self.token).await
        };
        result.map(Some)
    }

    async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        validate_ttl(ttl, self.max_ttl)?;
        if let LeaseState::Lost(reason) = self.current_state() {
            return Err(LockError::Lost {
                key: self.resource.key().name().to_owned(),
                reason,
            });
        }
        let sent = Instant::now();
        match self.resource.extend(self.token, ttl).await {
            Ok(true) => {
                {
                    let mut t = lock(&self.timing);
                    t.ttl = ttl;
                    t.sent = sent;
                    t.deadline = sent + ttl.saturating_sub(drift_margin(ttl));
                    t.version += 1;
                }
                self.set_state(LeaseState::Held);
                if let Some(keeper) = self.keeper.upgrade() {
                    keeper.replan(self.id);
                }
                Ok(())
            }
            Ok(false) => {
                self.mark_lost(LostReason::NotOwner);
                Err(LockError::NotOwner {
                    key: self.resource.key().name().to_owned(),
                })
            }
            Err(e) => Err(LockError::backend("extend", e)),
        }
    }
}

/// How long to wait before retrying a renewal that failed transiently.
fn renew_retry_delay(ttl: Duration, fraction: f64) -> Duration {
    (ttl.mul_f64(fraction) / 4).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// The leases one service holds, and the single task that renews them all and watches their
/// deadlines.
///
/// Per lease the rules are those of a dedicated keeper: renew at `ttl * fraction` after the last
/// confirmed renewal (never two renewals of one lease at once), retry a transient failure after
/// [`renew_retry_delay`] (state `Unknown`), mark the lease lost when the store says "not owner"
/// or when its local deadline passes without a confirmed renewal, stop renewing at `max_hold`.
/// One task for all leases means no task spawn per acquire, no task join per release, and no
/// cross-thread wake-up on either: taking a lease is a map insert, and the task is woken only
/// when the new lease is due before everything it already waits for (the first lease, or one
/// with a shorter ttl). The task is spawned when there is something to watch and ends when
/// there is nothing left.
#[derive(Default)]
pub(crate) struct Keeper {
    state: Mutex<KeeperState>,
    wake: Notify,
    next_id: AtomicU64,
}

/// Hashes lease ids (sequential `u64`s) with one multiplication; SipHash is needlessly slow
/// for them.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Default)]
struct KeeperState {
    /// Every lease held through the service (for shutdown and `held_count`).
    held: HashMap<u64, Entry, BuildHasherDefault<IdHasher>>,
    /// `(due, id)`: the next event (renewal or deadline) of every lease that has one.
    queue: BTreeSet<(Instant, u64)>,
    task: TaskState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum TaskState {
    /// No task runs: the next lease that needs one spawns it.
    #[default]
    Stopped,
    /// The task runs and sleeps until this time (or until woken, when `None`).
    Sleeping(Option<Instant>),
}

struct Entry {
    lease: Arc<LeaseShared>,
    /// The due time of this lease's queue entry, if it has one.
    queued: Option<Instant>,
    /// When to retry a renewal that failed transiently.
    retry_at: Option<Instant>,
    /// Renewal is on (auto-renew, and `max_hold` not exhausted).
    renewing: bool,
    hold_exhausted: bool,
    /// `extend` moved the lease while a renewal was in flight: drop the retry time after it.
    replanned: bool,
    /// Renewal and deadline watching are over (lost, or stopped); the lease stays held.
    done: bool,
}

/// What the keeper does with a lease whose time has come.
enum Due {
    Lose(Arc<LeaseShared>, LostReason),
    Renew(Renewal),
}

struct Renewal {
    lease: Arc<LeaseShared>,
    ttl: Duration,
    sent: Instant,
    timing: Timing,
}

/// Clears the lease's in-flight mark when a renewal ends, also when it is dropped unfinished
/// (the runtime shut down), so that `finish` never waits for a renewal that cannot end.
struct InFlight(Arc<LeaseShared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.renewing.store(false, Ordering::SeqCst);
        self.0.renewal_done.notify_waiters();
    }
}

/// Marks the keeper stopped when the runtime drops its task before it ended by itself.
struct TaskGuard {
    keeper: Arc<Keeper>,
    armed: bool,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.armed {
            self.keeper.state().task = TaskState::Stopped;
        }
    }
}

impl Entry {
    /// The next event: the renewal time (if renewing) or the deadline, whichever is first.
    fn due(&self, timing: &Timing) -> Instant {
        if self.renewing {
            let renew_at = self
                .retry_at
                .unwrap_or_else(|| timing.sent + timing.ttl.mul_f64(self.lease.renew_fraction));
            renew_at.min(timing.deadline)
        } else {
            timing.deadline
        }
    }
}

impl KeeperState {
    /// (Re)queue lease `id` at its next event. Returns the due time.
    fn schedule(&mut self, id: u64) -> Option<Instant> {
        let entry = self.held.get_mut(&id)?;
        if let Some(at) = entry.queued.take() {
            self.queue.remove(&(at, id));
        }
        if entry.done {
            return None;
        }
        let due = entry.due(&entry.lease.timing());
        entry.queued = Some(due);
        self.queue.insert((due, id));
        Some(due)
    }

    fn unqueue(&mut self, id: u64) {
        if let Some(entry) = self.held.get_mut(&id) {
            if let Some(at) = entry.queued.take() {
                self.queue.remove(&(at, id));
            }
        }
    }

    /// Decide what to do with lease `id`, whose queue entry came due at `now`.
    fn fire(&mut self, id: u64, now: Instant) -> Option<Due> {
        let entry = self.held.get_mut(&id)?;
        entry.queued = None;
        if entry.done {
            return None;
        }
        let lease = &entry.lease;
        let timing = lease.timing();
        if now >= timing.deadline {
            entry.done = true;
            let reason = lease.deadline_reason(&timing, entry.hold_exhausted);
            return Some(Due::Lose(Arc::clone(lease), reason));
        }
        if entry.renewing && now >= entry.due(&timing) {
            let mut ttl = timing.ttl;
            if let Some(end) = lease.hold_end {
                let left = end.saturating_duration_since(now);
                if left < Duration::from_millis(1) {
                    entry.renewing = false;
                    entry.hold_exhausted = true;
                    self.schedule(id);
                    return None;
                }
                ttl = ttl.min(left);
            }
            lease.renewing.store(true, Ordering::SeqCst);
            return Some(Due::Renew(Renewal {
                lease: Arc::clone(lease),
                ttl,
                sent: now,
                timing,
            }));
        }
        // Moved since it was queued (extend): queue it again.
        self.schedule(id);
        None
    }
}

impl Keeper {
    fn state(&self) -> MutexGuard<'_, KeeperState> {
        lock(&self.state)
    }

    /// Register a freshly acquired lease and queue its first event.
    fn insert(self: &Arc<Self>, lease: Arc<LeaseShared>) {
        let id = lease.id;
        let renewing = lease.auto_renew;
        let mut st = self.state();
        st.held.insert(
            id,
            Entry {
                lease,
                queued: None,
                retry_at: None,
                renewing,
                hold_exhausted: false,
                replanned: false,
                done: false,
            },
        );
        let due = st.schedule(id);
        self.wake_for(st, due);
    }

    /// Make sure the task will look at the queue by `due`: spawn it, wake it, or let it be.
    fn wake_for(self: &Arc<Self>, mut st: MutexGuard<'_, KeeperState>, due: Option<Instant>) {
        let Some(due) = due else { return };
        match st.task {
            TaskState::Sleeping(Some(until)) if until <= due => {}
            TaskState::Sleeping(_) => {
                drop(st);
                self.wake.notify_one();
            }
            TaskState::Stopped => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    st.task = TaskState::Sleeping(None);
                    drop(st);
                    rt.spawn(run_keeper(TaskGuard {
                        keeper: Arc::clone(self),
                        armed: true,
                    }));
                }
                Err(_) => {
                    tracing::warn!("no tokio runtime: held leases are not renewed");
                }
            },
        }
    }

    /// `extend` moved lease `id`: requeue it at its new time.
    fn replan(self: &Arc<Self>, id: u64) {
        let mut st = self.state();
        let Some(entry) = st.held.get_mut(&id) else {
            return;
        };
        if entry.lease.renewing.load(Ordering::SeqCst) {
            // The renewal in flight requeues it when it ends.
            entry.replanned = true;
            return;
        }
        entry.retry_at = None;
        let due = st.schedule(id);
        self.wake_for(st, due);
    }

    /// Forget lease `id`: no renewal starts after this returns (one may be in flight).
    fn remove(&self, id: u64) {
        let mut st = self.state();
        st.unqueue(id);
        st.held.remove(&id);
    }

    /// Stop renewing and watching lease `id`, but keep it registered as held.
    fn stop(&self, id: u64) {
        let mut st = self.state();
        st.unqueue(id);
        if let Some(entry) = st.held.get_mut(&id) {
            entry.done = true;
        }
    }

    /// Take every lease off the books (for shutdown).
    pub(crate) fn drain(&self) -> Vec<Arc<LeaseShared>> {
        let mut st = self.state();
        st.queue.clear();
        st.held.drain().map(|(_, e)| e.lease).collect()
    }

    /// How many leases are held.
    pub(crate) fn len(&self) -> usize {
        self.state().held.len()
    }

    /// Whether no task runs (nothing to renew or watch).
    #[cfg(test)]
    pub(crate) fn is_idle(&self) -> bool {
        self.state().task == TaskState::Stopped
    }

    /// Apply the outcome of a renewal and requeue the lease.
    fn renewed(self: &Arc<Self>, renewal: Renewal, outcome: Option<Result<bool, BackendError>>) {
        let Renewal {
            lease,
            sent,
            timing,
            ..
        } = renewal;
        let backend = lease.resource.backend_name();
        let mut retry_at = None;
        let mut keep_going = true;
        match outcome {
            None => {
                // The deadline passed while the renewal was in flight; unless `extend` moved
                // it meanwhile, the lease is lost.
                let current = lease.timing();
                if current.version == timing.version || current.deadline <= Instant::now() {
                    let hold_exhausted = self
                        .state()
                        .held
                        .get(&lease.id)
                        .is_some_and(|e| e.hold_exhausted);
                    lease.mark_lost(lease.deadline_reason(&current, hold_exhausted));
                    keep_going = false;
                }
            }
            Some(Ok(true)) => {
                {
                    let mut t = lock(&lease.timing);
                    if t.version == timing.version {
                        let ttl = renewal.ttl;
                        t.sent = sent;
                        t.deadline = sent + ttl.saturating_sub(drift_margin(ttl));
                    }
                }
                lease.set_state(LeaseState::Held);
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "ok")
                    .increment(1);
            }
            Some(Ok(false)) => {
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "not_owner")
                    .increment(1);
                lease.mark_lost(LostReason::NotOwner);
                keep_going = false;
            }
            Some(Err(e)) => {
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "error")
                    .increment(1);
                tracing::debug!(key = %lease.resource.key(), error = %e, "renewal failed; state unknown, retrying");
                lease.set_state(LeaseState::Unknown);
                retry_at = Some(sent + renew_retry_delay(timing.ttl, lease.renew_fraction));
            }
        }
        let mut st = self.state();
        // Under the lock: a concurrent `replan` either saw the renewal in flight (and left
        // `replanned` for us) or sees it over (and requeues the lease itself, from its new
        // timing). `InFlight` clears it again and wakes a waiting `finish`.
        lease.renewing.store(false, Ordering::SeqCst);
        let Some(entry) = st.held.get_mut(&lease.id) else {
            return;
        };
        if !keep_going {
            entry.done = true;
            return;
        }
        entry.retry_at = if entry.replanned { None } else { retry_at };
        entry.replanned = false;
        st.schedule(lease.id);
        // The task requeued it itself: it looks at the queue before it sleeps again.
    }
}

/// One renewal, bounded by the lease's deadline.
async fn renew(renewal: Renewal) -> (Renewal, Option<Result<bool, BackendError>>, InFlight) {
    let in_flight = InFlight(Arc::clone(&renewal.lease));
    let lease = &renewal.lease;
    let outcome = tokio::select! {
        r = lease.resource.extend(lease.token, renewal.ttl) => Some(r),
        _ = sleep_until(renewal.timing.deadline) => None,
    };
    (renewal, outcome, in_flight)
}

/// The keeper task: fire due events, run renewals concurrently, sleep until the next event.
async fn run_keeper(mut guard: TaskGuard) {
    let keeper = Arc::clone(&guard.keeper);
    let mut in_flight = FuturesUnordered::new();
    let mut due = Vec::new();
    loop {
        let now = Instant::now();
        let next = {
            let mut st = keeper.state();
            while let Some(&(at, id)) = st.queue.first() {
                if at > now {
                    break;
                }
                st.queue.pop_first();
                if let Some(d) = st.fire(id, now) {
                    due.push(d);
                }
            }
            let next = st.queue.first().map(|&(at, _)| at);
            if next.is_none() && in_flight.is_empty() && due.is_empty() {
                st.task = TaskState::Stopped;
                guard.armed = false;
                return;
            }
            st.task = TaskState::Sleeping(next);
            next
        };
        for d in due.drain(..) {
            match d {
                Due::Lose(lease, reason) => lease.mark_lost(reason),
                Due::Renew(renewal) => in_flight.push(renew(renewal)),
            }
        }
        tokio::select! {
            biased;
            Some((renewal, outcome, done)) = in_flight.next(), if !in_flight.is_empty() => {
                keeper.renewed(renewal, outcome);
                drop(done);
            }
            _ = keeper.wake.notified() => {}
            _ = sleep_until(next.unwrap_or(now)), if next.is_some() => {}
        }
    }
}

/// A cheap, clonable, read-only view of a held lease: key, fence, state and the lost signal.
///
/// [`LockGuard`] dereferences to it; [`LockService::with_lock`](crate::LockService::with_lock)
/// hands one to the closure.
#[derive(Clone)]
pub struct LeaseHandle {
    shared: Arc<LeaseShared>,
}

impl fmt::Debug for LeaseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseHandle")
            .field("key", self.shared.resource.key())
            .field("fence", &self.shared.fence)
            .field("state", &self.state())
            .finish()
    }
}

impl LeaseHandle {
    /// The caller's key (without the service prefix).
    pub fn key(&self) -> &str {
        self.shared.resource.key().name()
    }

    /// The full key with prefix.
    pub fn lock_key(&self) -> &LockKey {
        self.shared.resource.key()
    }

    /// The fencing token: pass it to the protected resource so it can reject stale holders.
    pub fn fence(&self) -> u64 {
        self.shared.fence
    }

    /// This holder's owner token.
    pub fn token(&self) -> OwnerToken {
        self.shared.token
    }

    /// The ttl renewals use.
    pub fn ttl(&self) -> Duration {
        self.shared.timing().ttl
    }

    /// The local deadline: past it, the lease is treated as lost unless a renewal was confirmed.
    pub fn deadline(&self) -> Instant {
        self.shared.timing().deadline
    }

    /// The lease state as this holder knows it (no store round trip).
    pub fn state(&self) -> LeaseState {
        self.shared.current_state()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<LeaseState> {
        self.shared.state.subscribe()
    }

    /// Completes when the lease can no longer be trusted, with the reason. Only `Lost` fires it;
    /// `Unknown` does not. Completes with [`LostReason::Released`] after a release.
    ///
    /// The future is `'static`: `select!` on it next to the protected work.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let mut rx = self.shared.state.subscribe();
        async move {
            loop {
                if let LeaseState::Lost(reason) = *rx.borrow_and_update() {
                    return reason;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }

    /// Asks the store whether this owner still holds the lease.
    pub async fn is_held(&self) -> Result<bool, LockError> {
        self.shared
            .resource
            .is_held_by(self.shared.token)
            .await
            .map_err(|e| LockError::backend("inspect", e))
    }

    /// `Ok` while the state is `Held` or `Unknown`; the `Lost` error otherwise. A cheap check
    /// before an irreversible side effect (pair it with the fence for real safety).
    pub fn ensure_held(&self) -> Result<(), LockError> {
        match self.state() {
            LeaseState::Lost(reason) => Err(LockError::Lost {
                key: self.key().to_owned(),
                reason,
            }),
            _ => Ok(()),
        }
    }
}

/// An acquired lock. Dropping it releases the lock in the background; prefer
/// [`release`](LockGuard::release) to learn whether the release happened.
///
/// The guard, not a thread or task, owns the lease: it can be moved between tasks. Leases are
/// not reentrant: acquiring a key the caller already holds waits like anyone else.
///
/// Dereferences to [`LeaseHandle`] for `key`, `fence`, `state`, `lost` and `is_held`.
#[must_use = "dropping a LockGuard releases the lock at once"]
pub struct LockGuard {
    handle: LeaseHandle,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockGuard").field(&self.handle).finish()
    }
}

impl Deref for LockGuard {
    type Target = LeaseHandle;
    fn deref(&self) -> &LeaseHandle {
        &self.handle
    }
}

impl LockGuard {
    pub(crate) fn new(shared: Arc<LeaseShared>) -> Self {
        LockGuard {
            handle: LeaseHandle { shared },
        }
    }

    /// A clonable view of this lease for other tasks.
    pub fn handle(&self) -> LeaseHandle {
        self.handle.clone()
    }

    /// Extend the lease to `ttl` from now; later renewals use the new ttl.
    /// Errors: `InvalidTtl`, `NotOwner` (the lease is gone: the guard is now lost), `Lost`,
    /// or `Backend` (it may or may not have been applied; renewal goes on as before).
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        self.handle.shared.extend(ttl).await
    }

    /// Stop renewal (waiting for any renewal in flight), then release the lease in the store:
    /// one round trip. After a successful release the task yields once, so that waiters the
    /// release woke can ask before this caller asks again.
    ///
    /// `Err(NotOwner)` when the lease had expired or been taken: whatever ran under it may have
    /// overlapped another holder. `Err(Lost { reason: Shutdown })` when the service's shutdown
    /// released it first. `Err(Backend)`: the release may or may not have happened; the lease
    /// then ends by its ttl at the latest.
    pub async fn release(self) -> Result<(), LockError> {
        let shared = Arc::clone(&self.handle.shared);
        let key = || shared.resource.key().name().to_owned();
        let result = shared.finish(LostReason::Released).await;
        if matches!(result, Ok(Some(true))) {
            // Let the waiters this release woke run before the caller goes on: a caller that
            // asks for the same key again at once (with a store that answers without waiting,
            // such as the memory backend) would otherwise win every time.
            tokio::task::yield_now().await;
        }
        match result {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => Err(LockError::NotOwner { key: key() }),
            Ok(None) => Err(LockError::Lost {
                key: key(),
                reason: match shared.current_state() {
                    LeaseState::Lost(r) => r,
                    _ => LostReason::Released,
                },
            }),
            Err(e) => Err(LockError::backend("release", e)),
        }
    }
}

impl LockGuard {
    /// Stop renewing and forget the lease *without* releasing it: the store keeps it until its
    /// ttl runs out. This is what a crashed process leaves behind, so tests use it to simulate
    /// a crash; it also keeps a lock for its ttl after the work (a simple rate limit).
    pub fn abandon(self) {
        let shared = &self.handle.shared;
        if shared.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(keeper) = shared.keeper.upgrade() {
            keeper.remove(shared.id);
        }
        metrics::gauge!("locks_held", "backend" => shared.resource.backend_name()).decrement(1.0);
        shared.mark_lost(LostReason::Abandoned);
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let shared = &self.handle.shared;
        if shared.finished.load(Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let shared = Arc::clone(shared);
                rt.spawn(async move {
                    if let Err(e) = shared.finish(LostReason::Released).await {
                        tracing::warn!(key = %shared.resource.key(), error = %e,
                            "background release of a dropped guard failed; the lease ends by its ttl");
                    }
                });
            }
            Err(_) => {
                // No runtime: nothing can be sent. Renewal is stopped; the lease ends by its ttl.
                if let Some(keeper) = shared.keeper.upgrade() {
                    keeper.stop(shared.id);
                }
            }
        }
    }
}
