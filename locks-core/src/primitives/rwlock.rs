//! The read-write lock: many readers or one writer, writer-preferring.

use crate::backend::{Holders, LeaseInfo};
use crate::error::LockError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::lease::LockGuard;
use crate::options::AcquireOptions;
use crate::service::LockService;

/// What the store knows about a read-write lock (see [`RwLock::inspect`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RwInfo {
    /// The current readers.
    pub readers: Vec<LeaseInfo>,
    /// The current writer, if any.
    pub writer: Option<LeaseInfo>,
    /// A writer waiting for the readers to leave (new readers are refused meanwhile).
    pub writer_waiting: bool,
}

impl From<Holders> for RwInfo {
    fn from(holders: Holders) -> Self {
        let (writers, readers): (Vec<_>, Vec<_>) = holders
            .leases
            .into_iter()
            .partition(|l| l.kind == LeaseKind::Write);
        RwInfo {
            readers,
            writer: writers.into_iter().next(),
            writer_waiting: holders.writer_waiting,
        }
    }
}

/// A distributed read-write lock: many readers or one writer, each a renewable lease.
///
/// **Policy: writer-preferring.** A writer that finds readers marks itself as waiting; from
/// then on new readers wait too, so a stream of readers cannot starve a writer. The mark lasts
/// for the writer's ttl after its latest attempt and is removed when the writer gets the lock
/// or gives up. Readers that already hold the lock keep it until they release. A single
/// attempt ([`try_write`](RwLock::try_write)) never marks itself as waiting.
///
/// **Waiting order.** Writers of one service wait in a local first-come, first-served line per
/// key, and only the first of them asks the store. Readers do not queue: each waiting reader
/// asks the store on its own. Across services there is no queue for either (see
/// [`LockService::acquire_opts`]).
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
    /// The lock's key.
    pub fn key(&self) -> &LockKey {
        &self.key
    }

    /// Take a read lease, waiting up to the default wait timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn read(&self) -> Result<LockGuard, LockError> {
        self.read_opts(AcquireOptions::default()).await
    }

    /// Take a read lease with these options.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn read_opts(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_kind(&self.key, LeaseKind::Read, opts, true)
            .await
    }

    /// One attempt at a read lease.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_read(&self) -> Result<LockGuard, LockError> {
        self.service
            .acquire_kind(&self.key, LeaseKind::Read, AcquireOptions::default(), false)
            .await
    }

    /// Take the write lease, waiting up to the default wait timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn write(&self) -> Result<LockGuard, LockError> {
        self.write_opts(AcquireOptions::default()).await
    }

    /// Take the write lease with these options.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background,
    /// together with this writer's waiting mark).
    pub async fn write_opts(&self, opts: AcquireOptions) -> Result<LockGuard, LockError> {
        self.service
            .acquire_kind(&self.key, LeaseKind::Write, opts, true)
            .await
    }

    /// One attempt at the write lease: `Err(Contended)` at once when readers or a writer hold
    /// the lock, or a writer waits for it.
    ///
    /// A single attempt never marks itself as waiting: it looks at the lock first (one read of
    /// the store) and, if the lock is taken, fails without writing anything, so new readers
    /// still get in and nobody is woken. Only a free-looking lock is attempted. If a reader
    /// slips in between the look and the attempt, the attempt's mark is removed again in the
    /// background (a reader arriving in that instant may wait for it; on the memory backend a
    /// mark that refused nobody is removed without a notification).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_write(&self) -> Result<LockGuard, LockError> {
        if self.service.is_shut_down() {
            return Err(LockError::ShuttingDown);
        }
        let backend = self.service.backend();
        let holders = backend
            .holders(&self.key, LeaseKind::Write)
            .await
            .map_err(|e| LockError::backend("holders", e))?;
        if !holders.leases.is_empty() || holders.writer_waiting {
            metrics::counter!("locks_acquire_total", "backend" => backend.name(), "result" => "contended")
                .increment(1);
            return Err(LockError::Contended {
                key: self.key.name().to_owned(),
                remaining: holders.leases.iter().map(|l| l.remaining).min(),
            });
        }
        self.service
            .acquire_kind(
                &self.key,
                LeaseKind::Write,
                AcquireOptions::default(),
                false,
            )
            .await
    }

    /// Readers, writer and whether a writer waits.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads the store.
    pub async fn inspect(&self) -> Result<RwInfo, LockError> {
        self.service
            .backend()
            .holders(&self.key, LeaseKind::Read)
            .await
            .map(RwInfo::from)
            .map_err(|e| LockError::backend("holders", e))
    }
}

impl LockService {
    /// A read-write lock under `name`. `Err(Unsupported)` when the backend cannot store read
    /// and write leases.
    pub fn rwlock(&self, name: &str) -> Result<RwLock, LockError> {
        let key = self.key(name)?;
        self.ensure_supported(LeaseKind::Read)?;
        self.ensure_supported(LeaseKind::Write)?;
        Ok(RwLock {
            service: self.clone(),
            key,
        })
    }
}
