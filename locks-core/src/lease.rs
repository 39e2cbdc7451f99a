//! Held leases: the guard, its state, and the keeper task that renews it and notices loss.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::backend::{AcquireResult, LockBackend, ReleaseListener};
use crate::error::{BackendError, LockError};
use crate::key::LockKey;
use crate::options::validate_ttl;
use crate::service::Registry;
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
    state: watch::Sender<LeaseState>,
    stop: CancellationToken,
    replan: Notify,
    keeper: Mutex<Option<JoinHandle<()>>>,
    finished: AtomicBool,
    registry: Weak<Registry>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LeaseShared {
    /// Build the shared state of a lease acquired by a request sent at `sent`, and start its
    /// keeper task.
    pub(crate) fn start(
        id: u64,
        resource: Arc<dyn LeaseResource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        cfg: &LeaseConfig,
        registry: Weak<Registry>,
    ) -> Arc<Self> {
        let deadline = sent + cfg.ttl.saturating_sub(drift_margin(cfg.ttl));
        let shared = Arc::new(LeaseShared {
            id,
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
            state: watch::Sender::new(LeaseState::Held),
            stop: CancellationToken::new(),
            replan: Notify::new(),
            keeper: Mutex::new(None),
            finished: AtomicBool::new(false),
            registry,
        });
        let handle = tokio::spawn(keeper(Arc::clone(&shared)));
        *lock(&shared.keeper) = Some(handle);
        metrics::gauge!("locks_held", "backend" => shared.resource.backend_name()).increment(1.0);
        shared
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn timing(&self) -> Timing {
        *lock(&self.timing)
    }

    fn mark_lost(&self, reason: LostReason) {
        let changed = self.state.send_if_modified(|s| {
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
        self.state.send_if_modified(|s| {
            if matches!(s, LeaseState::Lost(_)) || *s == new {
                false
            } else {
                *s = new;
                true
            }
        });
    }

    fn current_state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// Stop the keeper (waiting for an in-flight renewal), then release in the store.
    /// `Ok(None)`: someone else (release, drop or shutdown) already finished this lease.
    pub(crate) async fn finish(
        self: &Arc<Self>,
        reason: LostReason,
    ) -> Result<Option<bool>, BackendError> {
        if self.finished.swap(true, Ordering::SeqCst) {
            return Ok(None);
        }
        self.stop.cancel();
        let keeper = lock(&self.keeper).take();
        if let Some(handle) = keeper {
            let _ = handle.await;
        }
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
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
        let key = self.resource.key().name().to_owned();
        validate_ttl(ttl, self.max_ttl)?;
        if let LeaseState::Lost(reason) = self.current_state() {
            return Err(LockError::Lost { key, reason });
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
                self.replan.notify_one();
                Ok(())
            }
            Ok(false) => {
                self.mark_lost(LostReason::NotOwner);
                Err(LockError::NotOwner { key })
            }
            Err(e) => Err(LockError::backend("extend", e)),
        }
    }
}

/// How long to wait before retrying a renewal that failed transiently.
fn renew_retry_delay(ttl: Duration, fraction: f64) -> Duration {
    (ttl.mul_f64(fraction) / 4).clamp(Duration::from_millis(1), Duration::from_secs(1))
}

/// The keeper: renews at `ttl * fraction` (never overlapping itself), and marks the lease lost
/// when the store says "not owner" or the local deadline passes without a confirmed renewal.
async fn keeper(shared: Arc<LeaseShared>) {
    let backend = shared.resource.backend_name();
    let mut retry_at: Option<Instant> = None;
    let mut renewing = shared.auto_renew;
    let mut hold_exhausted = false;
    loop {
        let timing = shared.timing();
        let renew_at = renewing.then(|| {
            retry_at.unwrap_or_else(|| timing.sent + timing.ttl.mul_f64(shared.renew_fraction))
        });
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return,
            _ = shared.replan.notified() => {
                retry_at = None;
                continue;
            }
            _ = sleep_until(timing.deadline) => {
                let reason = match shared.hold_end {
                    Some(end)
                        if shared.auto_renew
                            && (hold_exhausted
                                || timing.deadline + drift_margin(timing.ttl) >= end) =>
                    {
                        LostReason::MaxHoldReached
                    }
                    _ => LostReason::DeadlineExpired,
                };
                shared.mark_lost(reason);
                return;
            }
            _ = sleep_until(renew_at.unwrap_or(timing.deadline)), if renew_at.is_some() => {}
        }
        let now = Instant::now();
        let mut renew_ttl = timing.ttl;
        if let Some(end) = shared.hold_end {
            let left = end.saturating_duration_since(now);
            if left < Duration::from_millis(1) {
                renewing = false;
                hold_exhausted = true;
                continue;
            }
            renew_ttl = renew_ttl.min(left);
        }
        let outcome = tokio::select! {
            r = shared.resource.extend(shared.token, renew_ttl) => Some(r),
            _ = sleep_until(timing.deadline) => None,
        };
        match outcome {
            None => continue, // the deadline branch above fires at once
            Some(Ok(true)) => {
                retry_at = None;
                {
                    let mut t = lock(&shared.timing);
                    if t.version == timing.version {
                        t.sent = now;
                        t.deadline = now + renew_ttl.saturating_sub(drift_margin(renew_ttl));
                    }
                }
                shared.set_state(LeaseState::Held);
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "ok")
                    .increment(1);
            }
            Some(Ok(false)) => {
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "not_owner")
                    .increment(1);
                shared.mark_lost(LostReason::NotOwner);
                return;
            }
            Some(Err(e)) => {
                metrics::counter!("locks_renew_total", "backend" => backend, "result" => "error")
                    .increment(1);
                tracing::debug!(key = %shared.resource.key(), error = %e, "renewal failed; state unknown, retrying");
                shared.set_state(LeaseState::Unknown);
                retry_at = Some(now + renew_retry_delay(timing.ttl, shared.renew_fraction));
            }
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

    /// Stop renewal (waiting for any renewal in flight), then release the lease in the store.
    ///
    /// `Err(NotOwner)` when the lease had expired or been taken: whatever ran under it may have
    /// overlapped another holder. `Err(Lost { reason: Shutdown })` when the service's shutdown
    /// released it first. `Err(Backend)`: the release may or may not have happened; the lease
    /// then ends by its ttl at the latest.
    pub async fn release(self) -> Result<(), LockError> {
        let shared = Arc::clone(&self.handle.shared);
        let key = shared.resource.key().name().to_owned();
        match shared.finish(LostReason::Released).await {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => Err(LockError::NotOwner { key }),
            Ok(None) => Err(LockError::Lost {
                key,
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
        shared.stop.cancel();
        if let Some(registry) = shared.registry.upgrade() {
            registry.remove(shared.id);
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
                shared.stop.cancel();
            }
        }
    }
}
