//! [`ForgetfulBackend`]: a store that breaks the contract on purpose, to prove that
//! [`check`](super::check) can fail.

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, Operation, Outcome};
use locks_core::{BackendError, LockBackend};
use std::sync::Arc;

/// A test double that **breaks the contract on purpose**: `release` forgets the owner check
/// and deletes every lease of the kind whoever holds it (it forwards to `force_release`).
/// Everything else is the wrapped backend's. [`check`](super::check) must catch it: a release
/// by a non-holder answers `true` and frees the key. **Never use it to protect anything.**
#[derive(Debug, Clone)]
pub struct ForgetfulBackend {
    inner: Arc<dyn LockBackend>,
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

#[async_trait]
impl Decorator for ForgetfulBackend {
    fn inner(&self) -> &dyn LockBackend {
        &*self.inner
    }

    fn name(&self) -> &'static str {
        "forgetful"
    }

    /// The bug: a release has no owner check.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        match op.action {
            Action::Release { .. } => {
                let had = self.inner.force_release(op.key, op.kind).await?;
                Ok(Outcome::Done(had))
            }
            _ => op.send(&*self.inner).await,
        }
    }
}

locks_core::impl_lock_backend!(ForgetfulBackend);
