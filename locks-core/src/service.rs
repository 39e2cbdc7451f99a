//! The lock service: what applications call.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{AcquireResult, LeaseInfo, LockBackend, ReleaseListener, Wake};
use crate::error::{BackendError, LockError};
use crate::key::{DEFAULT_PREFIX, LockKey, validate_prefix};
use crate::lease::{
    Keeper, LeaseConfig, LeaseHandle, LeaseResource, LeaseShared, LockGuard, LostReason,
    MutexResource,
};
use crate::options::{AcquireOptions, Resolved, RetryPolicy, validate_ttl};
use crate::token::OwnerToken;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a key counts as contended after an attempt of this service found it held: its
/// next acquires listen for releases *before* their first attempt, so that a failed attempt
/// needs no second look (see [`LockService::acquire_with`]).
const CONTENDED_HINT: Duration = Duration::from_secs(1);

/// Lines are swept of idle entries (no caller, no fresh hint) when there are more than this.
const LINES_SWEEP_MIN: usize = 1024;

/// One key's local waiting line: a fair mutex, the number of callers in line, and when an
/// attempt last found the key held by someone else.
#[derive(Default)]
struct Line {
    mutex: Arc<tokio::sync::Mutex<()>>,
    callers: usize,
    contended_at: Option<Instant>,
}

impl Line {
    fn contended_recently(&self, now: Instant) -> bool {
        self.contended_at
            .is_some_and(|at| now.saturating_duration_since(at) < CONTENDED_HINT)
    }
}

/// The lines of every key this service is acquiring, or recently found contended.
#[derive(Default)]
struct LineMap {
    lines: HashMap<LockKey, Line>,
    /// Size after the last sweep of idle entries.
    swept_len: usize,
}

type Lines = Arc<Mutex<LineMap>>;

/// Note on `key`'s line (if it has one) whether an attempt just found it held.
fn note_contended(lines: &Lines, key: &LockKey, contended: Option<Instant>) {
    if let Some(line) = lock(lines).lines.get_mut(key) {
        line.contended_at = contended;
    }
}

/// A place in this service's local waiting line for one key. Only the head of the line talks
/// to the store; the others wait in FIFO order in memory. A holder that releases and asks
/// again joins the back of the line, so it cannot keep winning against local waiters.
struct LineTicket {
    lines: Lines,
    key: LockKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl LineTicket {
    /// Whether an attempt of this service found the key held within [`CONTENDED_HINT`].
    fn contended_recently(&self) -> bool {
        let now = Instant::now();
        lock(&self.lines)
            .lines
            .get(&self.key)
            .is_some_and(|line| line.contended_recently(now))
    }
}

impl Drop for LineTicket {
    fn drop(&mut self) {
        self.guard.take();
        let now = Instant::now();
        let mut map = lock(&self.lines);
        if let Some(line) = map.lines.get_mut(&self.key) {
            line.callers = line.callers.saturating_sub(1);
            // A line with a fresh hint stays, so the next acquire sees it.
            if line.callers == 0 && !line.contended_recently(now) {
                map.lines.remove(&self.key);
            }
        }
        if map.lines.len() > LINES_SWEEP_MIN.max(2 * map.swept_len) {
            map.lines
                .retain(|_, line| line.callers > 0 || line.contended_recently(now));
            map.swept_len = map.lines.len();
        }
    }
}

/// Random spread of the yields after a release notification (see [`shuffle_after_wake`]).
const WAKE_SPREAD: usize = 4;
/// Extra yields per missing level of age (see [`shuffle_after_wake`]).
const AGE_STEP: usize = 2;
/// Failed attempts after which a waiter gets no extra yields.
const AGE_LEVELS: usize = 6;

/// Let other ready tasks run a few times before asking the store after a release notification:
/// a random `0..WAKE_SPREAD` times, plus `AGE_STEP` for every level a waiter is younger than
/// `AGE_LEVELS` failed attempts.
///
/// Waiters in other services (other processes) woken by the same release all ask at once, and
/// whoever asks first wins: the store keeps no queue. The order in which they are woken is
/// mostly the same every time (the order of their subscriptions, sockets and tasks), so
/// without this the same waiters would win round after round. The random part breaks the
/// order; the age part lets a waiter that has lost many rounds ask before fresh ones, so
/// waiting is roughly first come, first served across processes too. A holder that released a
/// contended key and asks again at once starts at age 0, behind everyone already waiting.
/// Yields cost no timer, only a pass of the scheduler each.
async fn shuffle_after_wake(failed: u32) {
    let age = usize::try_from(failed)
        .unwrap_or(usize::MAX)
        .min(AGE_LEVELS);
    let yields = fastrand::usize(..WAKE_SPREAD) + AGE_STEP * (AGE_LEVELS - age);
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
}

/// Releases a lease that an attempt may have created when the acquire ends without a guard
/// (error, timeout, shutdown, or the caller dropping the future).
struct MaybeHeld {
    armed: Option<(Arc<dyn LeaseResource>, OwnerToken)>,
}

impl Drop for MaybeHeld {
    fn drop(&mut self) {
        if let Some((resource, token)) = self.armed.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = resource.release(token).await;
                });
            }
        }
    }
}

struct Defaults {
    ttl: Duration,
    max_ttl: Duration,
    wait_timeout: Duration,
    retry: RetryPolicy,
    auto_renew: bool,
    renew_fraction: f64,
    max_hold: Option<Duration>,
}

struct Inner {
    backend: Arc<dyn LockBackend>,
    prefix: Arc<str>,
    defaults: Defaults,
    keeper: Arc<Keeper>,
    closing: CancellationToken,
    /// Mirrors `closing` (set first): a cheaper check for the hot path.
    closed: AtomicBool,
    lines: Lines,
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
///     .acquire_with("payment:42", AcquireOptions::new().wait_timeout(Duration::from_secs(2)))
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

/// Builds a [`LockService`]; every value is checked by [`build`](LockServiceBuilder::build).
pub struct LockServiceBuilder {
    backend: Arc<dyn LockBackend>,
    prefix: String,
    defaults: Defaults,
}

impl fmt::Debug for LockServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockServiceBuilder")
            .field("backend", &self.backend.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LockServiceBuilder {
    /// Prefix for every key (default `_lock:`; at most 128 bytes, no braces or control chars).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Lease ttl when a call does not set one (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.defaults.ttl = ttl;
        self
    }

    /// Largest ttl accepted (default 5 min). Larger ttls are an error, never clamped.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.defaults.max_ttl = ttl;
        self
    }

    /// How long `acquire` waits when a call does not say (default 30 s).
    pub fn default_wait_timeout(mut self, d: Duration) -> Self {
        self.defaults.wait_timeout = d;
        self
    }

    /// Backoff between attempts (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.defaults.retry = retry;
        self
    }

    /// Renew held leases in the background (default on).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.defaults.auto_renew = on;
        self
    }

    /// Renew when this fraction of the ttl has passed since the last confirmed renewal;
    /// within [`RENEW_FRACTION_RANGE`], 0.05 to 0.9 (default 0.5).
    pub fn renew_fraction(mut self, fraction: f64) -> Self {
        self.defaults.renew_fraction = fraction;
        self
    }

    /// Stop renewing a lease after it has been held this long, so a hung but living process
    /// cannot hold a lock forever (default: no limit).
    pub fn max_hold(mut self, max_hold: Option<Duration>) -> Self {
        self.defaults.max_hold = max_hold;
        self
    }

    /// Validate and build.
    pub fn build(self) -> Result<LockService, LockError> {
        validate_prefix(&self.prefix)?;
        let d = &self.defaults;
        if d.max_ttl < Duration::from_millis(1) {
            return Err(LockError::invalid_option(
                "max_ttl",
                "must be at least 1 ms",
            ));
        }
        validate_ttl(d.ttl, d.max_ttl)?;
        d.retry.validate()?;
        validate_fraction(d.renew_fraction)?;
        validate_max_hold(d.max_hold)?;
        Ok(LockService {
            inner: Arc::new(Inner {
                backend: self.backend,
                prefix: Arc::from(self.prefix.as_str()),
                defaults: self.defaults,
                keeper: Arc::new(Keeper::default()),
                closing: CancellationToken::new(),
                closed: AtomicBool::new(false),
                lines: Arc::default(),
            }),
        })
    }
}

/// The range `renew_fraction` must lie in. Below it renewal runs nearly back to back; above it
/// the renewal would come after (or too close to) the local deadline, `ttl − drift margin`.
pub const RENEW_FRACTION_RANGE: std::ops::RangeInclusive<f64> = 0.05..=0.9;

fn validate_fraction(f: f64) -> Result<(), LockError> {
    if RENEW_FRACTION_RANGE.contains(&f) {
        Ok(())
    } else {
        Err(LockError::invalid_option(
            "renew_fraction",
            format!(
                "{f} is outside [{}, {}]",
                RENEW_FRACTION_RANGE.start(),
                RENEW_FRACTION_RANGE.end()
            ),
        ))
    }
}

fn validate_max_hold(max_hold: Option<Duration>) -> Result<(), LockError> {
    match max_hold {
        Some(d) if d.is_zero() => Err(LockError::invalid_option(
            "max_hold",
            "must be greater than zero",
        )),
        _ => Ok(()),
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

enum Mode {
    Wait,
    Once,
}

impl LockService {
    /// Start building a service over `backend`.
    pub fn builder(backend: impl LockBackend) -> LockServiceBuilder {
        Self::builder_arc(Arc::new(backend))
    }

    /// Start building a service over a shared backend.
    pub fn builder_arc(backend: Arc<dyn LockBackend>) -> LockServiceBuilder {
        LockServiceBuilder {
            backend,
            prefix: DEFAULT_PREFIX.to_owned(),
            defaults: Defaults {
                ttl: Duration::from_secs(30),
                max_ttl: Duration::from_secs(300),
                wait_timeout: Duration::from_secs(30),
                retry: RetryPolicy::default(),
                auto_renew: true,
                renew_fraction: 0.5,
                max_hold: None,
            },
        }
    }

    /// A service with every default.
    pub fn new(backend: impl LockBackend) -> Result<Self, LockError> {
        Self::builder(backend).build()
    }

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

    fn mutex(&self, name: &str) -> Result<Arc<dyn LeaseResource>, LockError> {
        Ok(Arc::new(MutexResource {
            backend: Arc::clone(&self.inner.backend),
            key: self.key(name)?,
        }))
    }

    /// Acquire `key` with the service defaults, waiting up to the default wait timeout.
    pub async fn acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        self.acquire_with(key, AcquireOptions::default()).await
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
    /// `AcquireTimeout`, `ShuttingDown`, `Backend` (a permanent store error).
    pub async fn acquire_with(
        &self,
        key: &str,
        opts: AcquireOptions,
    ) -> Result<LockGuard, LockError> {
        let resource = self.mutex(key)?;
        let resolved = self.resolve(&opts)?;
        self.run_acquire(resource, &resolved, Mode::Wait).await
    }

    /// One attempt with the service defaults: `Err(Contended)` at once if the lock is held.
    pub async fn try_acquire(&self, key: &str) -> Result<LockGuard, LockError> {
        self.try_acquire_with(key, AcquireOptions::default()).await
    }

    /// One attempt: `Err(Contended)` at once if the lock is held (the wait options are unused).
    pub async fn try_acquire_with(
        &self,
        key: &str,
        opts: AcquireOptions,
    ) -> Result<LockGuard, LockError> {
        let resource = self.mutex(key)?;
        let resolved = self.resolve(&opts)?;
        self.run_acquire(resource, &resolved, Mode::Once).await
    }

    /// Acquire a lease on any [`LeaseResource`] (how primitives such as semaphore permits reuse
    /// this service's waiting, renewal and shutdown). `wait = false` makes a single attempt.
    pub async fn acquire_lease(
        &self,
        resource: Arc<dyn LeaseResource>,
        opts: AcquireOptions,
        wait: bool,
    ) -> Result<LockGuard, LockError> {
        let resolved = self.resolve(&opts)?;
        let mode = if wait { Mode::Wait } else { Mode::Once };
        self.run_acquire(resource, &resolved, mode).await
    }

    /// Run `work` while holding `key` (service defaults), then release.
    ///
    /// See [`with_lock_opts`](LockService::with_lock_opts).
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
        let guard = self.acquire_with(key, opts).await?;
        let handle = guard.handle();
        let outcome = AssertUnwindSafe(async move { work(handle).await })
            .catch_unwind()
            .await;
        if let Err(e) = guard.release().await {
            metrics::counter!("locks_release_failed_total", "backend" => self.inner.backend.name())
                .increment(1);
            tracing::warn!(key, error = %e, "with_lock: release after the work failed");
        }
        match outcome {
            Ok(value) => Ok(value),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Whether anyone holds `key` now (asks the store).
    pub async fn is_locked(&self, key: &str) -> Result<bool, LockError> {
        Ok(self.inspect(key).await?.is_some())
    }

    /// The current lease of `key`, if any: owner, remaining ttl, fence.
    pub async fn inspect(&self, key: &str) -> Result<Option<LeaseInfo>, LockError> {
        let key = self.key(key)?;
        self.inner
            .backend
            .inspect(&key)
            .await
            .map_err(|e| LockError::backend("inspect", e))
    }

    /// Delete the lease of `key` whoever holds it (an operator's tool). The holder finds out
    /// at its next renewal (`lost()` fires with `NotOwner`). `true` if there was a lease.
    pub async fn force_release(&self, key: &str) -> Result<bool, LockError> {
        let key = self.key(key)?;
        self.inner
            .backend
            .force_release(&key)
            .await
            .map_err(|e| LockError::backend("force_release", e))
    }

    /// How many callers of this service are waiting for `key` now (0 for an invalid key).
    pub fn waiters(&self, key: &str) -> usize {
        let Ok(key) = self.key(key) else { return 0 };
        lock(&self.inner.lines)
            .lines
            .get(&key)
            .map_or(0, |line| line.callers)
    }

    /// The wait timeout `acquire` uses when a call does not set one.
    pub fn default_wait_timeout(&self) -> Duration {
        self.inner.defaults.wait_timeout
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
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.closing.cancel();
        let leases = self.inner.keeper.drain();
        let results = futures::future::join_all(
            leases
                .iter()
                .map(|shared| shared.finish(LostReason::Shutdown)),
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

    /// Wait for the head of `key`'s local line. `Ok(Some((ticket, contended)))`: this caller
    /// may talk to the store; `contended` says whether the key was found held recently.
    /// `Ok(None)`: the deadline passed. `Err(())`: shutdown.
    async fn join_line(
        &self,
        key: &LockKey,
        deadline: Instant,
    ) -> Result<Option<(LineTicket, bool)>, ()> {
        let (mutex, contended) = {
            let mut map = lock(&self.inner.lines);
            let line = map.lines.entry(key.clone()).or_default();
            line.callers += 1;
            let contended = line
                .contended_at
                .is_some_and(|at| at.elapsed() < CONTENDED_HINT);
            (Arc::clone(&line.mutex), contended)
        };
        let mut ticket = LineTicket {
            lines: Arc::clone(&self.inner.lines),
            key: key.clone(),
            guard: None,
        };
        // Nobody in line (the usual case): no timer, no cancellation waiter.
        if let Ok(g) = Arc::clone(&mutex).try_lock_owned() {
            ticket.guard = Some(g);
            return Ok(Some((ticket, contended)));
        }
        tokio::select! {
            g = mutex.lock_owned() => {
                ticket.guard = Some(g);
                let contended = ticket.contended_recently();
                Ok(Some((ticket, contended)))
            }
            _ = tokio::time::sleep_until(deadline) => Ok(None),
            _ = self.inner.closing.cancelled() => Err(()),
        }
    }

    /// Start listening for releases of `resource`, bounded by `deadline` and shutdown.
    /// `Err(ShuttingDown)` on shutdown; `Ok(None)` when listening failed or timed out (the
    /// caller polls this round).
    async fn listen(
        &self,
        resource: &Arc<dyn LeaseResource>,
        deadline: Instant,
    ) -> Result<Option<Box<dyn ReleaseListener>>, LockError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        let listening = tokio::select! {
            r = tokio::time::timeout(budget, resource.listen()) => r,
            _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
        };
        match listening {
            Ok(Ok(l)) => Ok(Some(l)),
            Ok(Err(e)) => {
                tracing::debug!(key = %resource.key(), error = %e, "cannot listen for releases; polling");
                Ok(None)
            }
            Err(_) => {
                tracing::debug!(key = %resource.key(), "listening for releases timed out; polling");
                Ok(None)
            }
        }
    }

    async fn run_acquire(
        &self,
        resource: Arc<dyn LeaseResource>,
        opts: &Resolved,
        mode: Mode,
    ) -> Result<LockGuard, LockError> {
        if self.is_shut_down() {
            return Err(LockError::ShuttingDown);
        }
        let backend = resource.backend_name();
        let start = Instant::now();
        let deadline = start
            .checked_add(opts.wait_timeout)
            .unwrap_or_else(|| start + Duration::from_secs(86400 * 365 * 30));
        // The key's name is copied into a `String` only for an error.
        let key = resource.key().clone();
        let name = key.name();
        let token = OwnerToken::new();
        let timeout = |attempts: u32, last_error: Option<BackendError>| {
            metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "timeout")
                .increment(1);
            LockError::AcquireTimeout {
                key: name.to_owned(),
                waited: start.elapsed(),
                attempts,
                last_error,
            }
        };

        let (ticket, contended) = match mode {
            Mode::Wait if resource.exclusive() => {
                match self.join_line(resource.key(), deadline).await {
                    Ok(Some((t, contended))) => (Some(t), contended),
                    Ok(None) => return Err(timeout(0, None)),
                    Err(()) => return Err(LockError::ShuttingDown),
                }
            }
            _ => (None, false),
        };

        let mut maybe_held = MaybeHeld { armed: None };
        let mut attempts: u32 = 0;
        let mut last_error: Option<BackendError> = None;
        // A key this service found held moments ago is probably still contended: listen before
        // the first attempt, so that a failed attempt needs no second look (one store round
        // trip less per contended acquire). Other keys listen only once an attempt failed.
        let mut listener: Option<Box<dyn ReleaseListener>> = if contended {
            self.listen(&resource, deadline).await?
        } else {
            None
        };
        let listened_first = listener.is_some();
        let mut failed: u32 = 0;
        if contended {
            shuffle_after_wake(failed).await;
        }
        loop {
            if self.is_shut_down() {
                return Err(LockError::ShuttingDown);
            }
            attempts = attempts.saturating_add(1);
            let sent = Instant::now();
            maybe_held.armed = Some((Arc::clone(&resource), token));
            let hint = match resource.try_acquire(token, opts.ttl).await {
                Ok(AcquireResult::Acquired(lease)) => {
                    maybe_held.armed = None;
                    if listened_first && attempts == 1 {
                        // Free at once after all: stop treating the key as contended.
                        note_contended(&self.inner.lines, &key, None);
                    }
                    metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "acquired")
                        .increment(1);
                    metrics::histogram!("locks_acquire_wait_seconds", "backend" => backend)
                        .record(start.elapsed().as_secs_f64());
                    return self.register(resource, token, lease.fence, sent, opts);
                }
                Ok(AcquireResult::Held { remaining }) => {
                    // Acquire is idempotent per token: "held" means not by us.
                    if !resource.cleanup_after_wait() {
                        maybe_held.armed = None;
                    }
                    failed = failed.saturating_add(1);
                    if ticket.is_some() {
                        note_contended(&self.inner.lines, &key, Some(Instant::now()));
                    }
                    remaining
                }
                Err(e) if e.is_transient() => {
                    tracing::debug!(key = %name, error = %e, "acquire attempt failed; retrying");
                    last_error = Some(e);
                    None
                }
                Err(e) => {
                    metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "error")
                        .increment(1);
                    return Err(LockError::backend("acquire", e));
                }
            };
            if let Mode::Once = mode {
                if let Some(e) = last_error {
                    return Err(LockError::backend("acquire", e));
                }
                metrics::counter!("locks_acquire_total", "backend" => backend, "result" => "contended")
                    .increment(1);
                return Err(LockError::Contended {
                    key: name.to_owned(),
                    remaining: hint,
                });
            }
            let now = Instant::now();
            if now >= deadline || opts.retry.max_attempts.is_some_and(|max| attempts >= max) {
                return Err(timeout(attempts, last_error));
            }
            if listener.is_none() {
                // If listening fails, poll this round; listening is tried again on the next.
                if let Some(l) = self.listen(&resource, deadline).await? {
                    listener = Some(l);
                    // A release may have happened before we listened: look again at once.
                    continue;
                }
            }
            let now = Instant::now();
            let mut delay = opts.retry.delay(attempts);
            if let Some(remaining) = hint {
                delay = delay.min(remaining.max(Duration::from_millis(1)));
            }
            delay = delay.min(deadline.saturating_duration_since(now));
            let waited = match listener.as_mut() {
                Some(l) => tokio::select! {
                    r = l.wait_for_release(delay) => r,
                    _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                },
                None => tokio::select! {
                    _ = tokio::time::sleep(delay) => Ok(Wake::TimedOut),
                    _ = self.inner.closing.cancelled() => return Err(LockError::ShuttingDown),
                },
            };
            match waited {
                Ok(Wake::Notified) => shuffle_after_wake(failed).await,
                Ok(Wake::TimedOut) => {}
                Err(e) => {
                    tracing::debug!(key = %name, error = %e, "release listener failed; listening again");
                    listener = None;
                }
            }
        }
    }

    fn register(
        &self,
        resource: Arc<dyn LeaseResource>,
        token: OwnerToken,
        fence: u64,
        sent: Instant,
        opts: &Resolved,
    ) -> Result<LockGuard, LockError> {
        let cfg = LeaseConfig {
            ttl: opts.ttl,
            max_ttl: self.inner.defaults.max_ttl,
            auto_renew: opts.auto_renew,
            renew_fraction: opts.renew_fraction,
            max_hold: opts.max_hold,
        };
        let shared = LeaseShared::start(&self.inner.keeper, resource, token, fence, sent, &cfg);
        let guard = LockGuard::new(shared);
        if self.is_shut_down() {
            // Shutdown began while we acquired: dropping the guard releases the lease.
            drop(guard);
            return Err(LockError::ShuttingDown);
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use async_trait::async_trait;
    use tokio::sync::watch;

    use super::*;
    use crate::backend::Lease;
    use crate::lease::LeaseState;

    /// A minimal store (no expiry) that counts acquire attempts.
    #[derive(Default)]
    struct Counting {
        leases: Mutex<HashMap<LockKey, (OwnerToken, u64)>>,
        fence: AtomicU64,
        attempts: AtomicU64,
        extends: AtomicU64,
        released: Mutex<Option<watch::Sender<u64>>>,
    }

    impl Counting {
        fn releases(&self) -> watch::Sender<u64> {
            lock(&self.released)
                .get_or_insert_with(|| watch::Sender::new(0))
                .clone()
        }
    }

    struct Listener(watch::Receiver<u64>);

    #[async_trait]
    impl ReleaseListener for Listener {
        async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
            match tokio::time::timeout(max, self.0.changed()).await {
                Ok(_) => Ok(Wake::Notified),
                Err(_) => Ok(Wake::TimedOut),
            }
        }
    }

    #[async_trait]
    impl LockBackend for Counting {
        async fn try_acquire(
            &self,
            key: &LockKey,
            token: OwnerToken,
            _ttl: Duration,
        ) -> Result<AcquireResult, BackendError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let mut leases = lock(&self.leases);
            match leases.get(key) {
                Some((owner, fence)) if *owner == token => {
                    Ok(AcquireResult::Acquired(Lease::new(*fence)))
                }
                Some(_) => Ok(AcquireResult::Held { remaining: None }),
                None => {
                    let fence = self.fence.fetch_add(1, Ordering::SeqCst) + 1;
                    leases.insert(key.clone(), (token, fence));
                    Ok(AcquireResult::Acquired(Lease::new(fence)))
                }
            }
        }
        async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
            let mut leases = lock(&self.leases);
            if leases.get(key).is_some_and(|(owner, _)| *owner == token) {
                leases.remove(key);
                drop(leases);
                self.releases().send_modify(|n| *n += 1);
                return Ok(true);
            }
            Ok(false)
        }
        async fn extend(
            &self,
            key: &LockKey,
            token: OwnerToken,
            _ttl: Duration,
        ) -> Result<bool, BackendError> {
            self.extends.fetch_add(1, Ordering::SeqCst);
            Ok(lock(&self.leases)
                .get(key)
                .is_some_and(|(owner, _)| *owner == token))
        }
        async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
            Ok(lock(&self.leases)
                .get(key)
                .map(|(owner, fence)| LeaseInfo::new(*owner, Duration::MAX, *fence)))
        }
        async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
            Ok(lock(&self.leases).remove(key).is_some())
        }
        async fn listen(&self, _key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
            Ok(Box::new(Listener(self.releases().subscribe())))
        }
    }

    fn service(store: &Arc<Counting>) -> LockService {
        let backend: Arc<dyn LockBackend> = Arc::clone(store) as Arc<dyn LockBackend>;
        LockService::builder_arc(backend)
            .default_ttl(Duration::from_secs(1))
            .build()
            .expect("service")
    }

    fn keeper_idle(svc: &LockService) -> bool {
        svc.inner.keeper.is_idle()
    }

    #[tokio::test(start_paused = true)]
    async fn one_keeper_renews_every_lease_then_stops() {
        let store = Arc::new(Counting::default());
        let svc = service(&store);
        let mut guards = Vec::new();
        for i in 0..100 {
            guards.push(svc.acquire(&format!("k{i}")).await.expect("acquire"));
        }
        assert_eq!(svc.held_count(), 100);
        // ttl 1 s, renewed every 0.5 s: 4.2 s is 8 renewals each.
        tokio::time::sleep(Duration::from_millis(4200)).await;
        assert_eq!(store.extends.load(Ordering::SeqCst), 800);
        assert!(guards.iter().all(|g| g.state() == LeaseState::Held));
        for g in guards {
            g.release().await.expect("release");
        }
        assert_eq!(svc.held_count(), 0);
        // Nothing left to watch: the task ends at its next wake-up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(keeper_idle(&svc));
        assert_eq!(store.extends.load(Ordering::SeqCst), 800);
        // And comes back for the next lease.
        let g = svc.acquire("again").await.expect("acquire");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(store.extends.load(Ordering::SeqCst), 801);
        g.release().await.expect("release");
    }

    #[tokio::test(start_paused = true)]
    async fn a_recently_contended_key_is_listened_to_before_the_first_attempt() {
        let store = Arc::new(Counting::default());
        let (a, b) = (service(&store), service(&store));
        let attempts = || store.attempts.load(Ordering::SeqCst);

        // First contended acquire: attempt, listen, look again, wait, attempt after release.
        let held = a.acquire("k").await.expect("a acquires");
        let before = attempts();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.acquire("k").await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        held.release().await.expect("release");
        let got = waiter.await.expect("task").expect("b acquires");
        assert_eq!(attempts() - before, 3);
        got.release().await.expect("release");

        // Moments later the key is still marked contended for `b`: it listens first, so one
        // failed attempt is enough before waiting.
        let held = a.acquire("k").await.expect("a acquires again");
        let before = attempts();
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.acquire("k").await }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        held.release().await.expect("release");
        let got = waiter.await.expect("task").expect("b acquires");
        assert_eq!(attempts() - before, 2);
        got.release().await.expect("release");

        // Free at once: the mark is dropped; and after the hint's lifetime, the line is gone.
        b.acquire("k")
            .await
            .expect("free")
            .release()
            .await
            .expect("release");
        tokio::time::sleep(CONTENDED_HINT).await;
        b.acquire("k")
            .await
            .expect("free")
            .release()
            .await
            .expect("release");
        assert!(lock(&b.inner.lines).lines.is_empty());
    }
}
