//! Adapters that present a primitive as a plain mutex backend, so the mutex conformance suite
//! proves that a 1-permit semaphore and a write lock keep mutual exclusion too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, LeaseInfo, LockBackend, LockKey, OwnerToken, ReleaseListener,
};

use crate::Harness;

/// A one-permit semaphore seen as a mutex.
#[derive(Clone)]
pub struct SemaphoreAsMutex {
    inner: Arc<dyn LockBackend>,
}

/// A read-write lock's write side seen as a mutex.
#[derive(Clone)]
pub struct WriteLockAsMutex {
    inner: Arc<dyn LockBackend>,
}

impl SemaphoreAsMutex {
    /// Wrap a backend.
    pub fn new(inner: Arc<dyn LockBackend>) -> Self {
        SemaphoreAsMutex { inner }
    }
}

impl WriteLockAsMutex {
    /// Wrap a backend.
    pub fn new(inner: Arc<dyn LockBackend>) -> Self {
        WriteLockAsMutex { inner }
    }
}

#[async_trait]
impl LockBackend for SemaphoreAsMutex {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.inner.try_acquire_permit(key, token, ttl, 1).await
    }
    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.inner.release_permit(key, token).await
    }
    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.inner.extend_permit(key, token, ttl).await
    }
    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        Ok(self.inner.permit_holders(key).await?.into_iter().next())
    }
    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        let mut any = false;
        for holder in self.inner.permit_holders(key).await? {
            any |= self.inner.release_permit(key, holder.owner).await?;
        }
        Ok(any)
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[async_trait]
impl LockBackend for WriteLockAsMutex {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.inner.try_acquire_write(key, token, ttl).await
    }
    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.inner.release_rw(key, token).await
    }
    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.inner.extend_rw(key, token, ttl).await
    }
    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        Ok(self.inner.inspect_rw(key).await?.writer)
    }
    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        match self.inner.inspect_rw(key).await?.writer {
            Some(w) => self.inner.release_rw(key, w.owner).await,
            None => Ok(false),
        }
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }
    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

/// A harness whose backend is an adapter over another harness's store.
pub struct AdaptedHarness<H> {
    inner: H,
    backend: Arc<dyn LockBackend>,
}

impl<H: Harness> AdaptedHarness<H> {
    /// The mutex suite through a one-permit semaphore.
    pub fn semaphore(inner: H) -> Self {
        let backend = Arc::new(SemaphoreAsMutex::new(inner.backend()));
        AdaptedHarness { inner, backend }
    }

    /// The mutex suite through the write side of a read-write lock.
    pub fn write_lock(inner: H) -> Self {
        let backend = Arc::new(WriteLockAsMutex::new(inner.backend()));
        AdaptedHarness { inner, backend }
    }
}

#[async_trait]
impl<H: Harness> Harness for AdaptedHarness<H> {
    fn backend(&self) -> Arc<dyn LockBackend> {
        Arc::clone(&self.backend)
    }
    async fn expire(&self, key: &LockKey) {
        self.inner.expire(key).await;
    }
}
