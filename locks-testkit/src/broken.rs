//! Deliberately broken backends, for proving that checkers can fail.
//!
//! A safety checker that never fails proves nothing. These test doubles break the
//! [`LockBackend`] contract on purpose, so a test can show that the contention simulator (or
//! any other assertion) notices. **Never use them to protect anything.**

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{ListPage, ListQuery};
use locks_core::{
    AcquireResult, BackendError, Holders, Lease, LeaseKind, LockBackend, LockKey, OwnerToken,
    ReleaseListener, SleepingListener,
};

/// A test double that **violates mutual exclusion on purpose**: every `try_acquire` succeeds,
/// whoever holds the key.
///
/// - `try_acquire` always returns [`AcquireResult::Acquired`] with a new fence, strictly
///   increasing across all keys (so fences alone look fine; only overlap gives it away, unless
///   two holders are checked out of order).
/// - `release` and `extend` always return `true`; `holders` and `list` always report nobody;
///   `force_release` returns `false` (it remembers nothing).
///
/// ```
/// use locks_core::LockService;
/// use locks_testkit::broken::GrantAllBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(GrantAllBackend::new())?;
/// let first = locks.acquire("payment:42").await?;
/// let second = locks.acquire("payment:42").await?; // two holders at once: broken on purpose
/// assert!(second.fence() > first.fence());
/// // The simulator's checker catches it (see `locks_testkit::sim`, feature `sim`).
/// # drop((first, second));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct GrantAllBackend {
    last_fence: AtomicU64,
}

impl GrantAllBackend {
    /// A backend that grants everything, starting at fence 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leases it has handed out (the last fence).
    pub fn granted(&self) -> u64 {
        self.last_fence.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LockBackend for GrantAllBackend {
    fn name(&self) -> &'static str {
        "grant-all"
    }

    fn supports(&self, _kind: LeaseKind) -> bool {
        true
    }

    async fn try_acquire(
        &self,
        _key: &LockKey,
        _kind: LeaseKind,
        _token: OwnerToken,
        _ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let fence = self
            .last_fence
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1);
        Ok(AcquireResult::Acquired(Lease::new(fence)))
    }

    async fn extend(
        &self,
        _key: &LockKey,
        _kind: LeaseKind,
        _token: OwnerToken,
        _ttl: Duration,
    ) -> Result<bool, BackendError> {
        Ok(true)
    }

    async fn release(
        &self,
        _key: &LockKey,
        _kind: LeaseKind,
        _token: OwnerToken,
    ) -> Result<bool, BackendError> {
        Ok(true)
    }

    async fn holders(&self, _key: &LockKey, _kind: LeaseKind) -> Result<Holders, BackendError> {
        Ok(Holders::default())
    }

    async fn force_release(&self, _key: &LockKey, _kind: LeaseKind) -> Result<bool, BackendError> {
        Ok(false)
    }

    async fn listen(&self, _key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        Ok(Box::new(SleepingListener))
    }

    /// Lists nothing: it remembers no lease.
    async fn list(&self, _query: &ListQuery) -> Result<ListPage, BackendError> {
        Ok(ListPage::default())
    }
}
