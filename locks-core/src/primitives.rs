//! Coordination primitives on top of the lease engine: semaphore, read-write lock, leader
//! election and ordered multi-lock. Every lease they hand out is a [`LockGuard`] with the same
//! renewal, lost signal, release and shutdown behaviour as a mutex guard.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::backend::{AcquireResult, LeaseInfo, LockBackend, ReleaseListener, RwInfo};
use crate::error::{BackendError, LockError};
use crate::key::LockKey;
use crate::lease::{LeaseHandle, LeaseResource, LockGuard, LostReason};
use crate::options::AcquireOptions;
use crate::service::LockService;
use crate::token::OwnerToken;

// ---------------------------------------------------------------------------------------------
// Semaphore

struct PermitResource {
    backend: Arc<dyn LockBackend>,
    key: LockKey,
    permits: u32,
}

#[async_trait]
impl LeaseResource for PermitResource {
    fn key(&self) -> &LockKey {
        &self.key
    }
    async fn try_acquire(
        &self,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.backend
            .try_acquire_permit(&self.key, token, ttl, self.permits)
            .await
    }
    async fn extend(&self, token: OwnerToken, ttl: Duration) -> Result<bool, BackendError> {
        self.backend.extend_permit(&self.key, token, ttl).await
    }
    async fn release(&self, token: OwnerToken) -> Result<bool, BackendError> {
        self.backend.release_permit(&self.key, token).await
    }
    async fn is_held_by(&self, token: OwnerToken) -> Result<bool, BackendError> {
        Ok(self
            .backend
            .permit_holders(&self.key)
            .await?
            .iter()
            .any(|i| i.owner == token))
    }
    async fn listen(&self) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.backend.listen(&self.key).await
    }
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
    fn exclusive(&self) -> bool {
        false
    }
}

/// A distributed semaphore: at most `permits` holders at once, each holding a lease of its own
/// (owner token, ttl, renewal, `lost()`, release). A holder that crashes loses its permit when
/// its ttl passes — permits never leak, unlike an INCR/DECR counter.
///
/// **Changing the permit count**: the count travels with every acquire
/// ([`with_permits`](Semaphore::with_permits) gives a handle with another count). Lowering it
/// never revokes live permits; new permits are refused until enough holders have left.
/// Raising it lets waiters in at once.
///
/// ```
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(MemoryBackend::new())?;
/// let pool = locks.semaphore("db-connections", 2)?;
/// let a = pool.acquire().await?;
/// let b = pool.acquire().await?;
/// assert!(pool.try_acquire().await.is_err()); // both permits taken
/// assert_eq!(pool.available().await?, 0);
/// a.release().await?;
/// let c = pool.try_acquire().await?;
/// # drop((b, c));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Semaphore {
    service: LockService,
    key: LockKey,
    permits: u32,
}

impl std::fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Semaphore")
            .field("key", &self.key)
            .field("permits", &self.permits)
            .finish()
    }
}

fn validate_permits(permits: u32) -> Result<(), LockError> {
    if permits == 0 {
        return Err(LockError::InvalidOptions {
            option: "permits",
            reason: "a semaphore needs at least 1 permit".into(),
        });
    }
    Ok(())
}

impl Semaphore {
    fn resource(&self) -> Arc<dyn LeaseResource> {
        Arc::new(PermitResource {
            backend: Arc::clone(self.service.backend()),
            key: self.key.clone(),
            permits: self.permits,
        })
    }

    /// The permit count this handle acquires with.
    pub fn permits(&self) -> u32 {
        self.permits
    }

    /// The semaphore's key.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// The same semaphore with another permit count (at least 1).
    pub fn with_permits(&self, permits: u32) -> Result<Semaphore, LockError> {
        validate_permits(permits)?;
        Ok(Semaphore {
            permits,
            ..self.clone()
        })
    }

    /// Take a permit, waiting up to the service's default wait timeout.
    pub async fn acquire(&self) -> Result<LockGuard, LockError> {
        self.acquire_with(AcquireOptions::default()).await
    }

    /// Take a permit with these options.
    pub async fn acquire_with(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(), opts, true)
            .await
    }

    /// One attempt: `Err(Contended)` when every permit is taken.
    pub async fn try_acquire(&self) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(), AcquireOptions::default(), false)
            .await
    }

    /// The live permits (owner, remaining ttl, fence), oldest first.
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>, LockError> {
        self.service
            .backend()
            .permit_holders(&self.key)
            .await
            .map_err(|e| LockError::backend("permit_holders", e))
    }

    /// Permits free now under this handle's count.
    pub async fn available(&self) -> Result<u32, LockError> {
        let held = u32::try_from(self.holders().await?.len()).unwrap_or(u32::MAX);
        Ok(self.permits.saturating_sub(held))
    }
}

// ---------------------------------------------------------------------------------------------
// Read-write lock

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Read,
    Write,
}

struct RwResource {
    backend: Arc<dyn LockBackend>,
    key: LockKey,
    side: Side,
}

#[async_trait]
impl LeaseResource for RwResource {
    fn key(&self) -> &LockKey {
        &self.key
    }
    async fn try_acquire(
        &self,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        match self.side {
            Side::Read => self.backend.try_acquire_read(&self.key, token, ttl).await,
            Side::Write => self.backend.try_acquire_write(&self.key, token, ttl).await,
        }
    }
    async fn extend(&self, token: OwnerToken, ttl: Duration) -> Result<bool, BackendError> {
        self.backend.extend_rw(&self.key, token, ttl).await
    }
    async fn release(&self, token: OwnerToken) -> Result<bool, BackendError> {
        self.backend.release_rw(&self.key, token).await
    }
    async fn is_held_by(&self, token: OwnerToken) -> Result<bool, BackendError> {
        let info = self.backend.inspect_rw(&self.key).await?;
        Ok(match self.side {
            Side::Read => info.readers.iter().any(|r| r.owner == token),
            Side::Write => info.writer.is_some_and(|w| w.owner == token),
        })
    }
    async fn listen(&self) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.backend.listen(&self.key).await
    }
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
    fn exclusive(&self) -> bool {
        self.side == Side::Write
    }
    fn cleanup_after_wait(&self) -> bool {
        self.side == Side::Write
    }
}

/// A distributed read-write lock: many readers or one writer, each a renewable lease.
///
/// **Policy: writer-preferring.** A writer that finds readers marks itself as waiting; from
/// then on new readers wait too, so a stream of readers cannot starve a writer. The mark lasts
/// for the writer's ttl after its latest attempt and is removed when the writer gets the lock
/// or gives up. Readers that already hold the lock keep it until they release.
///
/// ```
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(MemoryBackend::new())?;
/// let config = locks.rwlock("config:pricing")?;
/// let r1 = config.read().await?;
/// let r2 = config.read().await?;            // readers share
/// assert!(config.try_write().await.is_err()); // the writer waits for both
/// r1.release().await?;
/// r2.release().await?;
/// let w = config.write().await?;
/// assert!(config.try_read().await.is_err());
/// w.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RwLock {
    service: LockService,
    key: LockKey,
}

impl std::fmt::Debug for RwLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RwLock").field("key", &self.key).finish()
    }
}

impl RwLock {
    fn resource(&self, side: Side) -> Arc<dyn LeaseResource> {
        Arc::new(RwResource {
            backend: Arc::clone(self.service.backend()),
            key: self.key.clone(),
            side,
        })
    }

    /// The lock's key.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// Take a read lease, waiting up to the default wait timeout.
    pub async fn read(&self) -> Result<LockGuard, LockError> {
        self.read_with(AcquireOptions::default()).await
    }

    /// Take a read lease with these options.
    pub async fn read_with(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(Side::Read), opts, true)
            .await
    }

    /// One attempt at a read lease.
    pub async fn try_read(&self) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(Side::Read), AcquireOptions::default(), false)
            .await
    }

    /// Take the write lease, waiting up to the default wait timeout.
    pub async fn write(&self) -> Result<LockGuard, LockError> {
        self.write_with(AcquireOptions::default()).await
    }

    /// Take the write lease with these options.
    pub async fn write_with(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(Side::Write), opts, true)
            .await
    }

    /// One attempt at the write lease (it leaves no waiting mark behind).
    pub async fn try_write(&self) -> Result<LockGuard, LockError> {
        self.service
            .acquire_lease(self.resource(Side::Write), AcquireOptions::default(), false)
            .await
    }

    /// Readers, writer and whether a writer waits.
    pub async fn inspect(&self) -> Result<RwInfo, LockError> {
        self.service
            .backend()
            .inspect_rw(&self.key)
            .await
            .map_err(|e| LockError::backend("inspect_rw", e))
    }
}

// ---------------------------------------------------------------------------------------------
// Leader election

/// Leader election for a named role: one leader at a time, its fencing token as the term.
///
/// ```
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(MemoryBackend::new())?;
/// let election = locks.election("scheduler")?;
/// let leadership = election.campaign().await?;
/// let leader = election.leader().await?.expect("someone leads");
/// assert_eq!(leader.owner, leadership.token());
/// assert_eq!(leader.fence, leadership.term());
/// leadership.resign().await?;
/// assert!(election.leader().await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Election {
    service: LockService,
    role: String,
}

/// Being the leader: a lease on the role. Dereferences to [`LeaseHandle`] (`lost()`,
/// `state()`, `fence()`, ...). Dropping it resigns in the background.
#[derive(Debug)]
#[must_use = "dropping a Leadership resigns at once"]
pub struct Leadership {
    guard: LockGuard,
}

impl std::ops::Deref for Leadership {
    type Target = LeaseHandle;
    fn deref(&self) -> &LeaseHandle {
        &self.guard
    }
}

impl Leadership {
    /// The leadership term: the lease's fencing token, larger for every new leader. Stamp
    /// writes with it so a deposed leader's late writes can be rejected.
    pub fn term(&self) -> u64 {
        self.guard.fence()
    }

    /// Step down: stop renewing and release the role so another candidate can win.
    pub async fn resign(self) -> Result<(), LockError> {
        self.guard.release().await
    }
}

impl Election {
    /// The role's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// Campaign until elected (or the default wait timeout passes).
    pub async fn campaign(&self) -> Result<Leadership, LockError> {
        self.campaign_with(AcquireOptions::default()).await
    }

    /// Campaign with these options (ttl = how long a crashed leader blocks the role).
    pub async fn campaign_with(&self, opts: AcquireOptions) -> Result<Leadership, LockError> {
        let guard = self.service.acquire_with(&self.role, opts).await?;
        Ok(Leadership { guard })
    }

    /// Become leader only if nobody leads now.
    pub async fn try_campaign(&self) -> Result<Leadership, LockError> {
        let guard = self.service.try_acquire(&self.role).await?;
        Ok(Leadership { guard })
    }

    /// Who leads now: owner token, remaining ttl, and term (`fence`).
    pub async fn leader(&self) -> Result<Option<LeaseInfo>, LockError> {
        self.service.inspect(&self.role).await
    }

    /// Keep campaigning and run `task` only while leadership holds.
    ///
    /// Each time this candidate is elected, `task` runs with the leadership's handle. When the
    /// leadership is lost (`lost()` fires: revoked, deadline passed, shutdown), the task's
    /// future is dropped — cancelled — and the candidate campaigns again. Since a holder's
    /// local deadline comes before the store's expiry, a leader cut off from the store stops
    /// before a new one can be elected. When `task` finishes by itself, the role is resigned
    /// and `run` returns `Ok`. `run` also returns `Ok` when the service shuts down; a
    /// permanent store error is returned as `Err`. Dropping the `run` future cancels the task
    /// and resigns in the background.
    ///
    /// To hand leadership over cleanly (a deploy), use [`run_until`](Election::run_until):
    /// [`LockService::shutdown`] releases the role at once, so the next leader may start while
    /// this task is still being cancelled — the term (fence) protects the resource then.
    pub async fn run<F, Fut>(&self, opts: AcquireOptions, task: F) -> Result<(), LockError>
    where
        F: FnMut(LeaseHandle) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.run_until(opts, task, std::future::pending()).await
    }

    /// [`run`](Election::run), until `stop` completes: then the leader task (if running) is
    /// cancelled *first*, the role is resigned, and `run_until` returns `Ok`. A stop while
    /// campaigning just stops campaigning.
    pub async fn run_until<F, Fut, S>(
        &self,
        opts: AcquireOptions,
        mut task: F,
        stop: S,
    ) -> Result<(), LockError>
    where
        F: FnMut(LeaseHandle) -> Fut,
        Fut: Future<Output = ()>,
        S: Future<Output = ()>,
    {
        let mut stop = std::pin::pin!(stop);
        loop {
            let campaign = tokio::select! {
                r = self.campaign_with(opts.clone()) => r,
                _ = &mut stop => return Ok(()),
            };
            let leadership = match campaign {
                Ok(l) => l,
                Err(LockError::AcquireTimeout { .. }) => continue,
                Err(LockError::ShuttingDown) => return Ok(()),
                Err(LockError::Backend { source, .. }) if source.is_transient() => continue,
                Err(e) => return Err(e),
            };
            let lost = leadership.lost();
            let ended = {
                let work = task(leadership.guard.handle());
                tokio::select! {
                    _ = work => Ended::TaskDone,
                    reason = lost => Ended::Lost(reason),
                    _ = &mut stop => Ended::Stopped,
                }
                // `work` (the leader task) is dropped here, before resigning.
            };
            match ended {
                Ended::TaskDone | Ended::Stopped => {
                    return match leadership.resign().await {
                        Ok(()) | Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. }) => {
                            Ok(())
                        }
                        Err(e) => Err(e),
                    };
                }
                Ended::Lost(reason) => {
                    tracing::warn!(role = %self.role, term = leadership.term(), %reason,
                        "leadership lost; leader task cancelled");
                    drop(leadership);
                    if reason == LostReason::Shutdown {
                        return Ok(());
                    }
                }
            }
        }
    }
}

enum Ended {
    TaskDone,
    Stopped,
    Lost(LostReason),
}

// ---------------------------------------------------------------------------------------------
// Ordered multi-lock

/// Several locks held together, taken all-or-nothing in one global order.
#[derive(Debug)]
#[must_use = "dropping a MultiGuard releases every lock at once"]
pub struct MultiGuard {
    guards: Vec<LockGuard>,
}

impl MultiGuard {
    /// The guards, in acquisition order (sorted by key).
    pub fn guards(&self) -> &[LockGuard] {
        &self.guards
    }

    /// The guard of `key`, if it is one of these.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.guards.iter().find(|g| g.key() == key)
    }

    /// Completes when any of the locks is lost, with its key and reason.
    pub fn lost(&self) -> impl Future<Output = (String, LostReason)> + Send + 'static {
        let watches: Vec<_> = self
            .guards
            .iter()
            .map(|g| {
                let key = g.key().to_owned();
                let lost = g.lost();
                Box::pin(async move { (key, lost.await) })
            })
            .collect();
        async move {
            if watches.is_empty() {
                return std::future::pending().await;
            }
            futures::future::select_all(watches).await.0
        }
    }

    /// Release every lock (in reverse order). All are attempted; the first error is returned.
    pub async fn release(mut self) -> Result<(), LockError> {
        let mut first = Ok(());
        while let Some(g) = self.guards.pop() {
            let r = g.release().await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl LockService {
    /// A semaphore with `permits` permits (at least 1) under `name`.
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore, LockError> {
        validate_permits(permits)?;
        Ok(Semaphore {
            service: self.clone(),
            key: self.key(name)?,
            permits,
        })
    }

    /// A read-write lock under `name`.
    pub fn rwlock(&self, name: &str) -> Result<RwLock, LockError> {
        Ok(RwLock {
            service: self.clone(),
            key: self.key(name)?,
        })
    }

    /// Leader election for `role`.
    pub fn election(&self, role: &str) -> Result<Election, LockError> {
        self.key(role)?;
        Ok(Election {
            service: self.clone(),
            role: role.to_owned(),
        })
    }

    /// Acquire every key, all or nothing, in one global order (sorted, duplicates removed), so
    /// two callers asking for the same keys in different orders never deadlock. The wait
    /// budget is shared by all keys. On failure or timeout the locks already taken are
    /// released before the error is returned. Every key is validated before anything is sent.
    ///
    /// ```
    /// use locks_core::{AcquireOptions, LockService};
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::new(MemoryBackend::new())?;
    /// let both = locks
    ///     .acquire_all(&["account:B", "account:A", "account:B"], AcquireOptions::new())
    ///     .await?;
    /// let keys: Vec<_> = both.guards().iter().map(|g| g.key()).collect();
    /// assert_eq!(keys, ["account:A", "account:B"]);
    /// both.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn acquire_all(
        &self,
        keys: &[&str],
        opts: AcquireOptions,
    ) -> Result<MultiGuard, LockError> {
        for k in keys {
            self.key(k)?;
        }
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let budget = opts
            .wait_timeout
            .unwrap_or_else(|| self.default_wait_timeout());
        let start = Instant::now();
        let mut guards = Vec::with_capacity(sorted.len());
        for key in sorted {
            let remaining = budget.saturating_sub(start.elapsed());
            match self
                .acquire_with(key, opts.clone().wait_timeout(remaining))
                .await
            {
                Ok(g) => guards.push(g),
                Err(e) => {
                    let partial = MultiGuard { guards };
                    if let Err(rollback) = partial.release().await {
                        tracing::warn!(error = %rollback, "acquire_all: rollback release failed");
                    }
                    return Err(e);
                }
            }
        }
        Ok(MultiGuard { guards })
    }
}
