//! An adapter that presents one side of a primitive as a plain mutex backend, so the mutex
//! conformance suite proves that a 1-permit semaphore and a write lock keep mutual exclusion
//! too.

use std::sync::Arc;

use async_trait::async_trait;
use locks_core::backend::{Decorator, Operation, Outcome};
use locks_core::{BackendError, Holders, LeaseKind, LockBackend, LockKey};

use crate::Harness;

/// A backend whose `Mutex` leases are really leases of another kind on the wrapped store
/// (a one-permit semaphore, or the write side of a read-write lock). It supports `Mutex` only.
#[derive(Debug, Clone)]
pub struct MutexVia {
    inner: Arc<dyn LockBackend>,
    kind: LeaseKind,
}

impl MutexVia {
    /// Mutex leases as permits of a one-permit semaphore.
    pub fn semaphore(inner: Arc<dyn LockBackend>) -> Self {
        MutexVia {
            inner,
            kind: LeaseKind::Permit { limit: 1 },
        }
    }

    /// Mutex leases as the write side of a read-write lock.
    pub fn write_lock(inner: Arc<dyn LockBackend>) -> Self {
        MutexVia {
            inner,
            kind: LeaseKind::Write,
        }
    }

    /// The kind the wrapped store is asked for; other kinds are refused.
    fn map(&self, kind: LeaseKind) -> Result<LeaseKind, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.kind),
            other => Err(BackendError::unsupported(self.inner.name(), other)),
        }
    }
}

#[async_trait]
impl Decorator for MutexVia {
    fn inner(&self) -> &dyn LockBackend {
        &*self.inner
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        kind == LeaseKind::Mutex && self.inner.supports(self.kind)
    }

    /// Every operation on the mapped kind. `holders` lists the leases of the mapped kind only
    /// (a write lock's readers are not mutex holders), reported as `Mutex` leases.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let mapped = self.map(op.kind)?;
        match op.with_kind(mapped).send(&*self.inner).await? {
            Outcome::Holders(mut holders) => {
                holders
                    .leases
                    .retain(|l| Holders::same_side(l.kind, mapped));
                for lease in &mut holders.leases {
                    lease.kind = LeaseKind::Mutex;
                }
                Ok(Outcome::Holders(Holders::new(holders.leases)))
            }
            other => Ok(other),
        }
    }
}

locks_core::impl_lock_backend!(MutexVia);

/// A harness whose backend is a [`MutexVia`] adapter over another harness's store.
pub struct AdaptedHarness<H> {
    inner: H,
    backend: Arc<dyn LockBackend>,
}

impl<H: Harness> AdaptedHarness<H> {
    /// The mutex suite through a one-permit semaphore.
    pub fn semaphore(inner: H) -> Self {
        let backend = Arc::new(MutexVia::semaphore(inner.backend()));
        AdaptedHarness { inner, backend }
    }

    /// The mutex suite through the write side of a read-write lock.
    pub fn write_lock(inner: H) -> Self {
        let backend = Arc::new(MutexVia::write_lock(inner.backend()));
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
