//! What the holder holds: [`LockGuard`] (owns the lease) and [`LeaseHandle`] (a clonable view).

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::held::Held;
use crate::error::LockError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::state::{LeaseState, LostReason};
use crate::token::OwnerToken;

/// A cheap, clonable, read-only view of a held lease: key, fence, state and the lost signal.
///
/// [`LockGuard`] dereferences to it; [`LockService::with_lock`](crate::LockService::with_lock)
/// hands one to the closure.
#[derive(Clone)]
pub struct LeaseHandle {
    held: Held,
}

impl fmt::Debug for LeaseHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseHandle")
            .field("key", &self.held.shared.resource.key)
            .field("kind", &self.held.shared.resource.kind)
            .field("fence", &self.held.shared.fence)
            .field("state", &self.state())
            .finish()
    }
}

impl LeaseHandle {
    /// The caller's key (without the service prefix).
    pub fn key(&self) -> &str {
        self.held.shared.resource.key.name()
    }

    /// The full key with prefix.
    pub fn lock_key(&self) -> &LockKey {
        &self.held.shared.resource.key
    }

    /// The kind of lease held (mutex, permit, reader, writer).
    pub fn kind(&self) -> LeaseKind {
        self.held.shared.resource.kind
    }

    /// The fencing token: pass it to the protected resource so it can reject stale holders.
    pub fn fence(&self) -> u64 {
        self.held.shared.fence
    }

    /// This holder's owner token.
    pub fn token(&self) -> OwnerToken {
        self.held.shared.token
    }

    /// The ttl renewals use.
    pub fn ttl(&self) -> Duration {
        self.held.shared.timing().ttl
    }

    /// When the acquire request that got this lease was sent (the start of the hold).
    pub fn acquired_at(&self) -> Instant {
        self.held.shared.acquired_at
    }

    /// Whether the service renews this lease in the background (auto-renew on, `max_hold` not
    /// reached, not stopped with [`LockGuard::stop_auto_renew`], and not lost or released).
    pub fn is_auto_renewing(&self) -> bool {
        self.held.shared.auto_renewing.load(Ordering::SeqCst)
            && !self.held.shared.finished.load(Ordering::SeqCst)
            && !matches!(self.state(), LeaseState::Lost(_))
    }

    /// The local deadline: past it, the lease is treated as lost unless a renewal was confirmed.
    pub fn deadline(&self) -> Instant {
        self.held.shared.timing().deadline
    }

    /// The lease state as this holder knows it (no store round trip).
    pub fn state(&self) -> LeaseState {
        self.held.shared.current_state()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<LeaseState> {
        self.held.shared.state.subscribe()
    }

    /// Completes when the lease can no longer be trusted, with the reason. Only `Lost` fires it;
    /// `Unknown` does not. Completes with [`LostReason::Released`] after a release.
    ///
    /// The future is `'static`: `select!` on it next to the protected work.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let mut rx = self.held.shared.state.subscribe();
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
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn is_held(&self) -> Result<bool, LockError> {
        self.held
            .shared
            .resource
            .is_held_by(self.held.shared.token)
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
/// not reentrant: a task waiting for a mutex or write lock it acquired itself gets
/// [`LockError::SelfWait`] at once; otherwise acquiring a held key waits like anyone else.
///
/// Dereferences to [`LeaseHandle`] for `key`, `fence`, `state`, `lost` and `is_held`.
#[must_use = "dropping a LockGuard releases the lock at once"]
#[clippy::has_significant_drop]
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
    pub(crate) fn new(held: Held) -> Self {
        LockGuard {
            handle: LeaseHandle { held },
        }
    }

    /// A clonable view of this lease for other tasks.
    pub fn handle(&self) -> LeaseHandle {
        self.handle.clone()
    }

    /// Extend the lease to `ttl` from now; later renewals use the new ttl.
    /// Errors: `InvalidTtl`, `NotOwner` (the lease is gone: the guard is now lost), `Lost`,
    /// or `Backend` (it may or may not have been applied; renewal goes on as before).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves the extend possibly applied in the
    /// store; the local deadline is not raised without a confirmation, so the lease is never
    /// trusted longer than the store keeps it.
    pub async fn extend(&self, ttl: Duration) -> Result<(), LockError> {
        self.handle.held.extend(ttl).await
    }

    /// Stop renewal (waiting for any renewal in flight), then release the lease in the store:
    /// one round trip. After a successful release the task yields once, so that waiters the
    /// release woke can ask before this caller asks again.
    ///
    /// `Err(NotOwner)` when the lease had expired or been taken: whatever ran under it may have
    /// overlapped another holder. `Err(Lost { reason: Shutdown })` when the service's shutdown
    /// released it first. `Err(Backend)`: the release may or may not have happened; the lease
    /// then ends by its ttl at the latest.
    ///
    /// # Cancel safety
    ///
    /// Renewal has stopped and `lost()` has fired once the future first runs; dropping it
    /// before the store answered leaves the lease to end by its ttl at the latest.
    pub async fn release(self) -> Result<(), LockError> {
        let held = self.handle.held.clone();
        let shared = &held.shared;
        let key = || shared.resource.key.name().to_owned();
        let result = held.finish(LostReason::Released).await;
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

    /// Stop renewing this lease in the background: it stays held until its deadline (the
    /// store's ttl minus the drift margin from the last confirmed renewal), unless
    /// [`extend`](LockGuard::extend)ed; then `lost()` fires with `DeadlineExpired`. For work
    /// that must not outlive a fixed budget.
    pub fn stop_auto_renew(&self) {
        self.handle.held.stop_auto_renew();
    }

    /// Stop renewing and forget the lease *without* releasing it: the store keeps it until its
    /// ttl runs out. This is what a crashed process leaves behind, so tests use it to simulate
    /// a crash; it also keeps a lock for its ttl after the work (a simple rate limit).
    pub fn abandon(self) {
        self.handle.held.abandon();
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let held = &self.handle.held;
        if held.shared.finished.load(Ordering::SeqCst) {
            return;
        }
        held.disown();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let held = held.clone();
                rt.spawn(async move {
                    if let Err(e) = held.finish(LostReason::Released).await {
                        tracing::warn!(key = %held.shared.resource.key, error = %e,
                            "background release of a dropped guard failed; the lease ends by its ttl");
                    }
                });
            }
            Err(_) => {
                // No runtime: nothing can be sent. Renewal is stopped; the lease ends by its ttl.
                held.stop();
            }
        }
    }
}
