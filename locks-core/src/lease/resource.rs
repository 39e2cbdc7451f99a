//! The one thing the lease engine acquires, renews and releases: a key and a lease kind on a
//! backend.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{AcquireResult, LockBackend, ReleaseListener};
use crate::error::BackendError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::token::OwnerToken;

/// A `(key, kind)` on a backend. Every primitive (mutex, permit, reader, writer) is one of
/// these; the engine has no other notion of what it holds.
pub(crate) struct Resource {
    pub backend: Arc<dyn LockBackend>,
    pub key: LockKey,
    pub kind: LeaseKind,
}

impl Resource {
    pub fn new(backend: Arc<dyn LockBackend>, key: LockKey, kind: LeaseKind) -> Arc<Self> {
        Arc::new(Resource { backend, key, kind })
    }

    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future before it completes holds nothing (a lease an attempt
    /// in flight may have created is released in the background).
    pub async fn try_acquire(
        &self,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.backend
            .try_acquire(&self.key, self.kind, token, ttl)
            .await
    }

    pub async fn extend(&self, token: OwnerToken, ttl: Duration) -> Result<bool, BackendError> {
        self.backend.extend(&self.key, self.kind, token, ttl).await
    }

    ///
    /// # Cancel safety
    ///
    /// Renewal has stopped once the future first runs; dropping it before the store answered
    /// leaves the lease to end by its ttl at the latest.
    pub async fn release(&self, token: OwnerToken) -> Result<bool, BackendError> {
        self.backend.release(&self.key, self.kind, token).await
    }

    /// Whether the store lists `token` as a holder of this kind now.
    pub async fn is_held_by(&self, token: OwnerToken) -> Result<bool, BackendError> {
        Ok(self
            .backend
            .holders(&self.key, self.kind)
            .await?
            .is_held_by(token, self.kind))
    }

    pub async fn listen(&self) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.backend.listen(&self.key).await
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
}
