//! [`ForgetfulBackend`]: a store that breaks the contract on purpose, to prove that
//! [`check`](super::check) can fail.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, Holders, LeaseKind, LockBackend, LockKey, OwnerToken,
    ReleaseListener,
};

/// A test double that **breaks the contract on purpose**: `release` forgets the owner check
/// and deletes every lease of the kind whoever holds it (it forwards to `force_release`).
/// Everything else is the wrapped backend's. [`check`](super::check) must catch it: a release
/// by a non-holder answers `true` and frees the key. **Never use it to protect anything.**
#[derive(Clone)]
pub struct ForgetfulBackend {
    inner: Arc<dyn LockBackend>,
}

impl fmt::Debug for ForgetfulBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgetfulBackend")
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl ForgetfulBackend {
    /// Wrap `inner`.
    pub fn new(inner: impl LockBackend) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Wrap a shared backend.
    pub fn from_arc(inner: Arc<dyn LockBackend>) -> Self {
        ForgetfulBackend { inner }
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl LockBackend for ForgetfulBackend {
    fn name(&self) -> &'static str {
        "forgetful"
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        self.inner.supports(kind)
    }

    async fn try_acquire(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.inner.try_acquire(key, kind, token, ttl).await
    }

    async fn extend(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.inner.extend(key, kind, token, ttl).await
    }

    /// The bug: no owner check.
    async fn release(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        _token: OwnerToken,
    ) -> Result<bool, BackendError> {
        self.inner.force_release(key, kind).await
    }

    async fn holders(&self, key: &LockKey, kind: LeaseKind) -> Result<Holders, BackendError> {
        self.inner.holders(key, kind).await
    }

    async fn force_release(&self, key: &LockKey, kind: LeaseKind) -> Result<bool, BackendError> {
        self.inner.force_release(key, kind).await
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }
}
