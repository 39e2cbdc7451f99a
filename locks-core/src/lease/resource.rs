//! The one thing the lease engine acquires, renews and releases: a key and a lease kind on a
//! backend.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{AcquireResult, LockBackend, ReleaseListener};
use crate::error::BackendError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::metrics_labels::Labels;
use crate::token::OwnerToken;

/// How long [`Resource::retire`] keeps retrying a release that fails transiently.
pub(crate) const RETIRE_FOR: Duration = Duration::from_secs(30);

/// A `(key, kind)` on a backend. Every primitive (mutex, permit, reader, writer) is one of
/// these; the engine has no other notion of what it holds.
pub(crate) struct Resource {
    pub backend: Arc<dyn LockBackend>,
    pub key: LockKey,
    pub kind: LeaseKind,
    /// The labels of every metric about this resource.
    pub labels: Labels,
}

impl Resource {
    pub fn new(
        backend: Arc<dyn LockBackend>,
        key: LockKey,
        kind: LeaseKind,
        labels: Labels,
    ) -> Arc<Self> {
        Arc::new(Resource {
            backend,
            key,
            kind,
            labels,
        })
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

    /// Give up `token` for good after an acquire attempt whose outcome is unknown (a transient
    /// error, or the caller dropping the attempt): release it, retrying transient failures
    /// with backoff for at most [`RETIRE_FOR`], and never acquire with it again.
    ///
    /// The attempt may still be applied later (a request held in the network or on a retired
    /// connection). If it was applied before the release, the release removes its lease; if it
    /// arrives after, the store refuses it: a release of a token that holds nothing makes the
    /// store remember the token (see [`LockBackend::release`]). Either way no lease is left
    /// that nobody holds.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops the retries; [`retire_in_background`](Self::retire_in_background)
    /// is the form that cannot be cancelled.
    pub async fn retire(&self, token: OwnerToken) {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match self.release(token).await {
                Err(e) if e.is_transient() && started.elapsed() < RETIRE_FOR => {
                    tracing::debug!(key = %&self.key, error = %e, "retiring an owner token failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => {
                    tracing::warn!(key = %&self.key, error = %e, "could not retire an owner token whose acquire may still be applied; a lease it creates ends by its ttl");
                    return;
                }
                Ok(_) => return,
            }
        }
    }

    /// One release of `token` now; if it fails transiently, [`retire`](Self::retire) it in the
    /// background.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may leave `token` unreleased: the caller retires it then.
    pub async fn retire_once(self: &Arc<Self>, token: OwnerToken) {
        if let Err(e) = self.release(token).await
            && e.is_transient()
        {
            self.retire_in_background(token);
        }
    }

    /// [`retire`](Self::retire) `token` in a task of its own (no-op outside a tokio runtime).
    pub fn retire_in_background(self: &Arc<Self>, token: OwnerToken) {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let this = Arc::clone(self);
            rt.spawn(async move { this.retire(token).await });
        }
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
