//! The lock service: what applications call.

mod acquire;
mod builder;
mod health;
mod line;
mod signal;
#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

pub use builder::{LockServiceBuilder, RENEW_FRACTION_RANGE};
#[cfg(feature = "signal")]
pub use signal::terminate;

use self::acquire::Mode;
use self::builder::{Defaults, validate_max_hold};
use self::line::{Lines, lock};
use crate::backend::{LeaseInfo, LockBackend};
use crate::error::LockError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::lease::held;
use crate::lease::keeper::Keeper;
use crate::lease::resource::Resource;
use crate::lease::{LeaseHandle, LockGuard};
use crate::metrics_labels::Labels;
use crate::options::{AcquireOptions, Resolved, RetryPolicy, validate_ttl};
use crate::state::LostReason;

pub(crate) struct Inner {
    pub(crate) backend: Arc<dyn LockBackend>,
    pub(crate) prefix: Arc<str>,
    pub(crate) defaults: Defaults,
    pub(crate) keeper: Arc<Keeper>,
    pub(crate) closing: CancellationToken,
    /// Mirrors `closing` (set first): a cheaper check for the hot path.
    pub(crate) closed: AtomicBool,
    pub(crate) lines: Lines,
    /// The backend supports mutex leases (asked once, at build).
    pub(crate) mutex_supported: bool,
    /// Refuse a waiting acquire of a lock the calling task holds (see the builder).
    pub(crate) detect_self_wait: bool,
    /// The opt-in `key_class` metric label.
    pub(crate) key_class: Option<crate::metrics_labels::KeyClassifier>,
    /// The metric labels of every resource when there is no classifier: `backend`.
    pub(crate) labels: Labels,
    /// The store's health facts, if the builder was given them.
    pub(crate) health: Option<Arc<dyn crate::health::HealthCheck>>,
}

/// Distributed locks over any [`LockBackend`]: waiting with backoff and notifications,
/// automatic renewal, lost-lock detection, fencing tokens, key prefixing and validation,
/// graceful shutdown and metrics. Cheap to clone; clones share everything.
///
/// ```
/// use locks_core::{LockService, AcquireOptions};
/// use locks_memory::MemoryBackend;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::builder(MemoryBackend::new())
///     .default_ttl(Duration::from_secs(10))
///     .build()?;
///
/// // Wait up to 2 s for the lock; it is renewed in the background while held.
/// let guard = locks
///     .acquire_opts("payment:42", AcquireOptions::new().wait_timeout(Duration::from_secs(2)))
///     .await?;
/// assert!(locks.try_acquire("payment:42").await.is_err()); // held: not reentrant
/// let fence = guard.fence(); // hand this to the resource you protect
/// guard.release().await?;
///
/// // Or scope the work: released on success, error, panic and cancellation.
/// let charged = locks.with_lock("payment:43", |lease| async move { lease.fence() > 0 }).await?;
/// assert!(charged && fence > 0);
/// locks.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockService {
    inner: Arc<Inner>,
}

impl fmt::Debug for LockService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockService")
            .field("backend", &self.inner.backend.name())
            .field("prefix", &self.inner.prefix)
            .field("held", &self.inner.keeper.len())
            .field("shut_down", &self.is_shut_down())
            .finish()
    }
}

/// What [`LockService::shutdown`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Leases released in the store.
    pub released: usize,
    /// Leases the store no longer listed as ours (expired or taken before shutdown).
    pub not_owner: usize,
    /// Releases that failed (those leases end by their ttl).
    pub failed: usize,
}

impl LockService {
    /// The backend this service runs on.
    pub fn backend(&self) -> &Arc<dyn LockBackend> {
        &self.inner.backend
    }

    /// Validate `name` and add this service's prefix.
    pub fn key(&self, name: &str) -> Result<LockKey, LockError> {
        LockKey::with_prefix(&self.inner.prefix, name)
    }

    fn resolve(&self, opts: &AcquireOptions) -> Result<Resolved, LockError> {
        let d = &self.inner.defaults;
        let ttl = opts.ttl.unwrap_or(d.ttl);
        validate_ttl(ttl, d.max_ttl)?;
        let retry = opts.retry.clone().unwrap_or_else(|| d.retry.clone());
        retry.validate()?;
        let max_hold = opts.max_hold.unwrap_or(d.max_hold);
        validate_max_hold(max_hold)?;
        Ok(Resolved {
            ttl,
            wait_timeout: opts.wait_timeout.unwrap_or(d.wait_timeout),
            retry,
            auto_renew: opts.auto_renew.unwrap_or(d.auto_renew),
            renew_fraction: d.renew_fraction,
            max_hold,
        })
    }

    /// The engine's resource for `key` (already validated) and `kind`.
    pub(crate) fn resource(&self, key: LockKey, kind: LeaseKind) -> Arc<Resource> {
        // Without a classifier every resource shares the service's labels (no allocation).
        let labels = match &self.inner.key_class {
            Some(c) => Labels::new(self.inner.backend.name(), Some(c.classify(key.name()))),
            None => self.inner.labels.clone(),
        };
        Resource::new(Arc::clone(&self.inner.backend), key, kind, labels)
    }

    /// `Err(Unsupported)` unless the backend can store leases of `kind`. Primitives check it
    /// when they are created ([`semaphore`](LockService::semaphore),
    /// [`rwlock`](LockService::rwlock)); mutex calls check it before anything is sent.
    pub fn ensure_supported(&self, kind: LeaseKind) -> Result<(), LockError> {
        let supported = match kind {
            LeaseKind::Mutex => self.inner.mutex_supported,
            other => self.inner.backend.supports(other),
        };
        if supported {
            Ok(())
        } else {
            Err(LockError::Unsupported {
                backend: self.inner.backend.name(),
                kind,
            })
        }
    }

    /// Acquire a lease of `kind` on `key` with this service's waiting, renewal and shutdown:
    /// how every primitive takes its leases. `wait = false` makes a single attempt.
    pub(crate) async fn acquire_kind(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        opts: AcquireOptions,
        wait: bool,
    ) -> Result<LockGuard, LockError> {
        let resolved = self.resolve(&opts)?;
        let mode = if wait { Mode::Wait } else { Mode::Once };
        self.run_acquire(self.resource(key.clone(), kind), &resolved, mode)
            .await
    }

    /// Acquire `key` with the service defaults, waiting up to the default wait timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        self.acquire_opts(key, AcquireOptions::default()).await
    }

    /// Acquire `key`, waiting until the lock is free or `wait_timeout` has passed.
    ///
    /// The whole wait budget is used (unless the retry policy sets `max_attempts`). Waiting is
    /// notification-first where the backend supports it, with polling at
    /// `min(backoff, holder's remaining ttl)` as the fallback. Within one service, waiters of a
    /// key are served first come, first served.
    ///
    /// Between services (processes) the store keeps no queue: every waiter woken by a release
    /// asks, and the first to ask wins. Woken waiters therefore let a few other tasks run
    /// first, fewer the more rounds they have lost, so that the longest waiter tends to ask
    /// first; and [`LockGuard::release`] lets the waiters it woke run before it returns.
    ///
    /// An uncontended acquire is one store round trip, and listens for nothing. After a failed
    /// attempt the service listens for releases and, since a release may have come in between,
    /// looks once more before it waits. A key this service found held within the last second
    /// is listened to before the first attempt instead, which saves that second look.
    ///
    /// Errors: `InvalidKey`, `InvalidTtl`, `InvalidOptions` (nothing is sent to the store),
    /// `Unsupported` (the backend cannot store mutexes), `AcquireTimeout`, `ShuttingDown`,
    /// `Backend` (a permanent store error).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing. If an attempt was in
    /// flight, the lease it may have created is released in the background (the owner token
    /// is never handed out), and the caller's place in the local line is given up.
    pub async fn acquire_opts(
        &self,
        key: &str,
        opts: AcquireOptions,
    ) -> Result<LockGuard, LockError> {
        self.acquire_mutex(key, opts, true).await
    }

    /// One attempt with the service defaults: `Err(Contended)` at once if the lock is held.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        self.try_acquire_opts(key, AcquireOptions::default()).await
    }

    /// One attempt: `Err(Contended)` at once if the lock is held (the wait options are unused).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`acquire_opts`](LockService::acquire_opts).
    pub async fn try_acquire_opts(
        &self,
        key: &str,
        opts: AcquireOptions,
    ) -> Result<LockGuard, LockError> {
        self.acquire_mutex(key, opts, false).await
    }

    /// Validate `key`, check mutex (or fair mutex) support, then acquire (waiting or once).
    async fn acquire_mutex(
        &self,
        key: &str,
        opts: AcquireOptions,
        wait: bool,
    ) -> Result<LockGuard, LockError> {
        let key = self.key(key)?;
        let kind = match opts.fair {
            Some(true) => LeaseKind::FairMutex,
            Some(false) => LeaseKind::Mutex,
            None => self.mutex_kind(),
        };
        self.ensure_supported(kind)?;
        self.acquire_kind(&key, kind, opts, wait).await
    }

    /// The lease kind of this service's mutex calls: [`LeaseKind::FairMutex`] when built with
    /// [`fair(true)`](LockServiceBuilder::fair), else [`LeaseKind::Mutex`].
    fn mutex_kind(&self) -> LeaseKind {
        if self.inner.defaults.fair {
            LeaseKind::FairMutex
        } else {
            LeaseKind::Mutex
        }
    }

    /// Run `work` while holding `key` (service defaults), then release.
    ///
    /// See [`with_lock_opts`](LockService::with_lock_opts).
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock_opts`](LockService::with_lock_opts).
    pub async fn with_lock<F, Fut, T>(&self, key: &str, work: F) -> Result<T, LockError>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        self.with_lock_opts(key, AcquireOptions::default(), work)
            .await
    }

    /// Run `work` while holding `key`, then release: on success, on error (an error is just a
    /// value of `T`), on panic (released, then the panic resumes) and on cancellation (dropping
    /// the future drops the guard, which releases in the background).
    ///
    /// `work` receives a [`LeaseHandle`]: check `lost()` or `ensure_held()` before an
    /// irreversible step, and pass `fence()` to the protected resource.
    ///
    /// **When the release itself fails** (the lease was lost during the work, or the store could
    /// not be reached), the result of `work` is still returned as `Ok`: the work has already
    /// happened, and turning it into an error would invite a retry that repeats it. The failure
    /// is logged (`tracing` warning) and counted (`locks_release_failed_total`); use
    /// [`acquire`](LockService::acquire) and [`LockGuard::release`] to act on it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future while waiting holds nothing (as [`acquire_opts`](Self::acquire_opts));
    /// dropping it while `work` runs cancels `work` at its current await point and releases the
    /// lock in the background. `work` itself must tolerate being cancelled there.
    pub async fn with_lock_opts<F, Fut, T>(
        &self,
        key: &str,
        opts: AcquireOptions,
        work: F,
    ) -> Result<T, LockError>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let guard = self.acquire_opts(key, opts).await?;
        Ok(self.run_under(guard, work).await)
    }

    /// Run `work` while holding `key` if the lock is free now (one attempt with the service
    /// defaults); `Ok(None)` at once, without running `work`, if someone else holds it.
    ///
    /// See [`try_with_lock_opts`](LockService::try_with_lock_opts).
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock_opts`](LockService::with_lock_opts).
    pub async fn try_with_lock<F, Fut, T>(&self, key: &str, work: F) -> Result<Option<T>, LockError>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        self.try_with_lock_opts(key, AcquireOptions::default(), work)
            .await
    }

    /// Run `work` while holding `key` if the lock is free now: one attempt, then `Ok(None)`
    /// without running `work` when the lock is held elsewhere (`Contended` becomes `None`; every
    /// other error is returned). When it runs, the lock is released exactly as by
    /// [`with_lock_opts`](LockService::with_lock_opts): on success, error, panic and
    /// cancellation. The at-most-once job: whichever instance gets the lock runs it, the
    /// others skip.
    ///
    /// ```
    /// use locks_core::LockService;
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::new(MemoryBackend::new())?;
    /// let held = locks.acquire("job:nightly").await?;
    /// let skipped = locks.try_with_lock("job:nightly", |_| async { "ran" }).await?;
    /// assert_eq!(skipped, None);
    /// held.release().await?;
    /// let ran = locks.try_with_lock("job:nightly", |_| async { "ran" }).await?;
    /// assert_eq!(ran, Some("ran"));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// As [`with_lock_opts`](LockService::with_lock_opts).
    pub async fn try_with_lock_opts<F, Fut, T>(
        &self,
        key: &str,
        opts: AcquireOptions,
        work: F,
    ) -> Result<Option<T>, LockError>
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        match self.try_acquire_opts(key, opts).await {
            Ok(guard) => Ok(Some(self.run_under(guard, work).await)),
            Err(LockError::Contended { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Run `work` with the lease of `guard`, then release it (also after a panic, which then
    /// resumes; a dropped future releases through the guard's `Drop`).
    async fn run_under<F, Fut, T>(&self, guard: LockGuard, work: F) -> T
    where
        F: FnOnce(LeaseHandle) -> Fut,
        Fut: Future<Output = T>,
    {
        let handle = guard.handle();
        let outcome = AssertUnwindSafe(async move { work(handle).await })
            .catch_unwind()
            .await;
        // A failed release is counted and traced where every release ends (see `finish`).
        if let Err(e) = guard.release().await {
            tracing::debug!(error = %e, "with_lock: release after the work failed");
        }
        match outcome {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether anyone holds `key` now (asks the store).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn is_locked(&self, key: &str) -> Result<bool, LockError> {
        Ok(self.inspect(key).await?.is_some())
    }

    /// The current lease of `key`, if any: owner, remaining ttl, fence.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn inspect(&self, key: &str) -> Result<Option<LeaseInfo>, LockError> {
        let key = self.key(key)?;
        self.inner
            .backend
            .holders(&key, self.mutex_kind())
            .await
            .map(|h| h.leases.into_iter().next())
            .map_err(|e| LockError::backend("inspect", e))
    }

    /// Delete the lease of `key` whoever holds it (an operator's tool). The holder finds out
    /// at its next renewal (`lost()` fires with `NotOwner`). `true` if there was a lease.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may or may not leave the deletion applied; the lease ends by its ttl
    /// at the latest either way.
    pub async fn force_release(&self, key: &str) -> Result<bool, LockError> {
        let key = self.key(key)?;
        self.inner
            .backend
            .force_release(&key, self.mutex_kind())
            .await
            .map_err(|e| LockError::backend("force_release", e))
    }

    /// Every lock under this service's prefix whose name starts with `name_prefix` (`""`: all)
    /// that has a live lease, with its holders, streamed a page at a time
    /// ([`LockBackend::list`], [`list_stream`](crate::backend::list_stream)). Dropping the
    /// stream stops the listing; it only reads the store.
    pub fn holders(
        &self,
        name_prefix: &str,
    ) -> impl futures::Stream<Item = Result<crate::backend::ListedLock, LockError>> + Send + 'static
    {
        let backend = Arc::clone(&self.inner.backend);
        crate::backend::service_holders(backend, &self.inner.prefix, name_prefix)
    }

    /// How many callers of this service are waiting for `key` now (0 for an invalid key).
    pub fn waiters(&self, key: &str) -> usize {
        let Ok(key) = self.key(key) else { return 0 };
        lock(&self.inner.lines)
            .lines
            .get(&(key, self.mutex_kind()))
            .map_or(0, |line| line.callers)
    }

    /// The wait timeout `acquire` uses when a call does not set one.
    pub fn default_wait_timeout(&self) -> Duration {
        self.inner.defaults.wait_timeout
    }

    /// The retry policy used when a call does not set one.
    pub(crate) fn default_retry(&self) -> &RetryPolicy {
        &self.inner.defaults.retry
    }

    /// How many leases this service holds now.
    pub fn held_count(&self) -> usize {
        self.inner.keeper.len()
    }

    /// Whether [`shutdown`](LockService::shutdown) has been called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Stop taking locks (waiting and new calls get `ShuttingDown`), stop every renewal, and
    /// release every lease this service holds. Their guards' `lost()` fires with
    /// [`LostReason::Shutdown`]. Idempotent.
    ///
    /// # Cancel safety
    ///
    /// The service is marked shut down before the first await: dropping the future leaves it
    /// refusing new locks, with the leases not yet released ending by their ttls.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.closing.cancel();
        let leases = self.inner.keeper.drain();
        // Drained: the keeper no longer lists them, so there is nothing to take them off.
        let drained = std::sync::Weak::new();
        let results = futures::future::join_all(
            leases
                .iter()
                .map(|shared| held::finish(shared, &drained, LostReason::Shutdown)),
        )
        .await;
        let mut report = ShutdownReport::default();
        for r in results {
            match r {
                Ok(Some(true)) => report.released += 1,
                Ok(Some(false)) => report.not_owner += 1,
                Ok(None) => {}
                Err(_) => report.failed += 1,
            }
        }
        tracing::info!(?report, "lock service shut down");
        report
    }
}
