//! The keeper: the one task per service that renews every held lease and watches deadlines.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::shared::{LeaseShared, Timing, drift_margin, lock};
use crate::error::BackendError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::metrics_labels::RENEW_TOTAL;
use crate::state::{LeaseState, LostReason};

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
/// there has been nothing left for [`IDLE_LINGER`]; meanwhile it looks every [`IDLE_TICK`], so
/// a lease given back before its first renewal costs the task nothing.
pub(crate) struct Keeper {
    state: Mutex<KeeperState>,
    wake: Notify,
    pub(crate) next_id: AtomicU64,
    /// Keep the owners index (self-wait detection is on).
    track_owners: bool,
    /// How many times the task was spawned.
    #[cfg(test)]
    pub(crate) spawned: AtomicU64,
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

/// While it has nothing to watch, the task looks at the queue this often (so a lease due later
/// than its next look costs no wake-up at all)...
const IDLE_TICK: Duration = Duration::from_secs(1);
/// ...and ends after this long with nothing to watch. Leases taken and given back within a
/// renewal period (the common case: a lock around a short critical section) then cost a map
/// insert and remove, not a task spawn, a wake-up and a task end each.
const IDLE_LINGER: Duration = Duration::from_secs(5);

#[derive(Default)]
struct KeeperState {
    /// Every lease held through the service (for shutdown and `held_count`).
    held: HashMap<u64, Entry, BuildHasherDefault<IdHasher>>,
    /// `(due, id)`: the next event (renewal or deadline) of every lease that has one.
    queue: BTreeSet<(Instant, u64)>,
    task: TaskState,
    /// Exclusive leases (mutex, writer) by `(key, kind)`, with the task that acquired each:
    /// how an acquire notices that its own task already holds the lock.
    owners: HashMap<(LockKey, LeaseKind), Vec<(u64, tokio::task::Id)>, foldhash::fast::RandomState>,
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
    /// Whether renewal is on: auto-renew, `max_hold` not exhausted, not stopped by the holder.
    fn renews(&self) -> bool {
        self.renewing && self.lease.auto_renewing.load(Ordering::SeqCst)
    }

    /// The next event: the renewal time (if renewing) or the deadline, whichever is first.
    fn due(&self, timing: &Timing) -> Instant {
        if self.renews() {
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
    /// Drop `lease` from the owners index.
    fn forget_owner(&mut self, lease: &LeaseShared) {
        let owner = (lease.resource.key.clone(), lease.resource.kind);
        if let Some(owners) = self.owners.get_mut(&owner) {
            owners.retain(|&(id, _)| id != lease.id);
            if owners.is_empty() {
                self.owners.remove(&owner);
            }
        }
    }

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
        if let Some(entry) = self.held.get_mut(&id)
            && let Some(at) = entry.queued.take()
        {
            self.queue.remove(&(at, id));
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
        if entry.renews() && now >= entry.due(&timing) {
            let mut ttl = timing.grow_to.unwrap_or(timing.ttl);
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
    /// A keeper with nothing held; `track_owners` keeps the index self-wait detection reads.
    pub(crate) fn new(track_owners: bool) -> Self {
        Keeper {
            state: Mutex::default(),
            wake: Notify::new(),
            next_id: AtomicU64::new(0),
            track_owners,
            #[cfg(test)]
            spawned: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, KeeperState> {
        lock(&self.state)
    }

    /// Register a freshly acquired lease and queue its first event.
    pub(crate) fn insert(self: &Arc<Self>, lease: Arc<LeaseShared>) {
        let id = lease.id;
        let renewing = lease.auto_renew;
        let mut st = self.state();
        if let Some(task) = lease
            .task
            .filter(|_| self.track_owners && lease.resource.kind.is_exclusive())
        {
            let owner = (lease.resource.key.clone(), lease.resource.kind);
            st.owners.entry(owner).or_default().push((id, task));
        }
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
                    #[cfg(test)]
                    self.spawned.fetch_add(1, Ordering::SeqCst);
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
    pub(crate) fn replan(self: &Arc<Self>, id: u64) {
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
    pub(crate) fn remove(&self, id: u64) {
        let mut st = self.state();
        st.unqueue(id);
        if let Some(entry) = st.held.remove(&id) {
            st.forget_owner(&entry.lease);
        }
    }

    /// Whether `task` acquired, through this service, an exclusive lease of `kind` on `key`
    /// that it still holds and can still trust (a lost lease does not count: waiting for the
    /// lock again is what its holder should do).
    pub(crate) fn held_by_task(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        task: tokio::task::Id,
    ) -> bool {
        let st = self.state();
        st.owners.get(&(key.clone(), kind)).is_some_and(|owners| {
            owners.iter().any(|&(id, t)| {
                t == task
                    && st
                        .held
                        .get(&id)
                        .is_some_and(|e| !matches!(e.lease.current_state(), LeaseState::Lost(_)))
            })
        })
    }

    /// Take lease `id` out of the owners index now (its guard was dropped; the release follows
    /// in the background), so that its task may wait for the lock again at once.
    pub(crate) fn disown(&self, id: u64) {
        let mut st = self.state();
        if let Some(lease) = st.held.get(&id).map(|e| Arc::clone(&e.lease)) {
            st.forget_owner(&lease);
        }
    }

    /// Stop renewing and watching lease `id`, but keep it registered as held.
    pub(crate) fn stop(&self, id: u64) {
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
        st.owners.clear();
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
    fn renewed(self: &Arc<Self>, renewal: Renewal, outcome: Answer) {
        let Renewal {
            lease,
            sent,
            timing,
            ..
        } = renewal;
        let labels = &lease.resource.labels;
        let mut retry_at = None;
        let mut keep_going = true;
        match outcome {
            Answer::Superseded => {}
            Answer::AlreadyLost => keep_going = false,
            Answer::DeadlinePassed => {
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
            Answer::Store(Ok(true)) => {
                {
                    let mut t = lock(&lease.timing);
                    if t.version == timing.version {
                        let ttl = renewal.ttl;
                        t.sent = sent;
                        t.deadline = sent + ttl.saturating_sub(drift_margin(ttl));
                        // A provisional lease has its full ttl from now on.
                        if let Some(full) = t.grow_to.take() {
                            t.ttl = full;
                        }
                    }
                }
                lease.set_state(LeaseState::Held);
                labels.counter(RENEW_TOTAL, Some(("result", "ok")));
            }
            Answer::Store(Ok(false)) => {
                labels.counter(RENEW_TOTAL, Some(("result", "not_owner")));
                lease.mark_lost(LostReason::NotOwner);
                keep_going = false;
            }
            Answer::Store(Err(e)) => {
                labels.counter(RENEW_TOTAL, Some(("result", "error")));
                tracing::debug!(key = %lease.resource.key, error = %e, "renewal failed; state unknown, retrying");
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

/// How a renewal ended.
enum Answer {
    /// The store answered.
    Store(Result<bool, BackendError>),
    /// The local deadline passed first.
    DeadlinePassed,
    /// The holder's `extend` was confirmed while this renewal waited its turn: nothing sent.
    Superseded,
    /// The lease was already lost (e.g. an `extend` heard "not owner"): nothing sent, ever again.
    AlreadyLost,
}

/// One renewal, bounded by the lease's deadline: waits for the holder's `extend` in flight,
/// lowers the deadline to what this request may set, then sends it.
async fn renew(renewal: Renewal, span: tracing::Span) -> (Renewal, Answer, InFlight) {
    let (renewal, answer, in_flight) = send_renewal(renewal).await;
    span.record(
        "result",
        match &answer {
            Answer::Store(Ok(true)) => "ok",
            Answer::Store(Ok(false)) => "not_owner",
            Answer::Store(Err(_)) => "error",
            Answer::DeadlinePassed => "deadline",
            Answer::Superseded | Answer::AlreadyLost => "skipped",
        },
    );
    (renewal, answer, in_flight)
}

/// The body of [`renew`].
async fn send_renewal(mut renewal: Renewal) -> (Renewal, Answer, InFlight) {
    let in_flight = InFlight(Arc::clone(&renewal.lease));
    let lease = Arc::clone(&renewal.lease);
    let _one_at_a_time = tokio::select! {
        guard = lease.expiry_change.lock() => guard,
        _ = sleep_until(lease.timing().deadline) => return (renewal, Answer::DeadlinePassed, in_flight),
    };
    if matches!(lease.state.get(), LeaseState::Lost(_)) {
        return (renewal, Answer::AlreadyLost, in_flight);
    }
    if lease.timing().version != renewal.timing.version {
        return (renewal, Answer::Superseded, in_flight);
    }
    renewal.sent = Instant::now();
    let deadline = lease.lower_deadline(renewal.sent, renewal.ttl);
    let answer = tokio::select! {
        r = lease.resource.extend(lease.token, renewal.ttl) => Answer::Store(r),
        _ = sleep_until(deadline) => Answer::DeadlinePassed,
    };
    (renewal, answer, in_flight)
}

/// The keeper task: fire due events, run renewals concurrently, sleep until the next event.
async fn run_keeper(mut guard: TaskGuard) {
    let keeper = Arc::clone(&guard.keeper);
    let mut in_flight = FuturesUnordered::new();
    let mut due = Vec::new();
    // Since when the task has had nothing to watch.
    let mut idle_since: Option<Instant> = None;
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
            let mut next = st.queue.first().map(|&(at, _)| at);
            if next.is_none() && in_flight.is_empty() && due.is_empty() {
                let since = *idle_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= IDLE_LINGER {
                    st.task = TaskState::Stopped;
                    guard.armed = false;
                    return;
                }
                next = Some(now + IDLE_TICK);
            } else {
                idle_since = None;
            }
            st.task = TaskState::Sleeping(next);
            next
        };
        for d in due.drain(..) {
            match d {
                Due::Lose(lease, reason) => lease.mark_lost(reason),
                Due::Renew(renewal) => {
                    let span = tracing::debug_span!(
                        parent: &renewal.lease.span,
                        "lock.renew",
                        ttl = ?renewal.ttl,
                        result = tracing::field::Empty,
                    );
                    in_flight.push(renew(renewal, span.clone()).instrument(span));
                }
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
