//! The semaphore: at most N holders, each with a lease of its own.

use crate::backend::LeaseInfo;
use crate::error::LockError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::lease::LockGuard;
use crate::options::AcquireOptions;
use crate::service::LockService;

/// A distributed semaphore: at most `permits` holders at once, each holding a lease of its own
/// (owner token, ttl, renewal, `lost()`, release). A holder that crashes loses its permit when
/// its ttl passes — permits never leak, unlike an INCR/DECR counter.
///
/// **Changing the permit count**: the count travels with every acquire
/// ([`with_permits`](Semaphore::with_permits) gives a handle with another count). Lowering it
/// never revokes live permits; new permits are refused until enough holders have left.
/// Raising it lets waiters in at once.
///
/// **Waiting is not first come, first served.** Permits have no waiting line, neither in the
/// store nor inside a service (only exclusive kinds — mutex and writer — queue locally): every
/// waiter asks the store on its own, and after a release whoever asks first gets the permit.
/// Woken waiters that have lost more rounds ask a little earlier, so waiting is roughly fair,
/// but nothing guarantees the order.
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
    fn kind(&self) -> LeaseKind {
        LeaseKind::Permit {
            limit: self.permits,
        }
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
        self.service
            .ensure_supported(LeaseKind::Permit { limit: permits })?;
        Ok(Semaphore {
            permits,
            ..self.clone()
        })
    }

    /// Take a permit, waiting up to the service's default wait timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn acquire(&self) -> Result<LockGuard, LockError> {
        self.acquire_opts(AcquireOptions::default()).await
    }

    /// Take a permit with these options.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn acquire_opts(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_kind(&self.key, self.kind(), opts, true)
            .await
    }

    /// One attempt: `Err(Contended)` when every permit is taken.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_acquire(&self) -> Result<LockGuard, LockError> {
        self.service
            .acquire_kind(&self.key, self.kind(), AcquireOptions::default(), false)
            .await
    }

    /// The live permits (owner, remaining ttl, fence), oldest first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn holders(&self) -> Result<Vec<LeaseInfo>, LockError> {
        self.service
            .backend()
            .holders(&self.key, self.kind())
            .await
            .map(|h| h.leases)
            .map_err(|e| LockError::backend("holders", e))
    }

    /// Permits free now under this handle's count.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn available(&self) -> Result<u32, LockError> {
        let held = u32::try_from(self.holders().await?.len()).unwrap_or(u32::MAX);
        Ok(self.permits.saturating_sub(held))
    }
}

impl LockService {
    /// A semaphore with `permits` permits (at least 1) under `name`.
    ///
    /// `Err(Unsupported)` when the backend cannot store permits; `Err(InvalidOptions)` for 0
    /// permits; `Err(InvalidKey)` for a bad name.
    pub fn semaphore(&self, name: &str, permits: u32) -> Result<Semaphore, LockError> {
        validate_permits(permits)?;
        let key = self.key(name)?;
        self.ensure_supported(LeaseKind::Permit { limit: permits })?;
        Ok(Semaphore {
            service: self.clone(),
            key,
            permits,
        })
    }
}
