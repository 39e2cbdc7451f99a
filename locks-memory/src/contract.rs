//! The backend contract: one dispatcher, every operation routed by lease kind.

use async_trait::async_trait;
use locks_core::backend::{Dispatch, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener};

use crate::slot::Slot;
use crate::store::{MemoryBackend, MemoryListener};

#[async_trait]
impl Dispatch for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Every kind: mutex, semaphore permits, readers and writers.
    fn supports(&self, kind: LeaseKind) -> bool {
        matches!(
            kind,
            LeaseKind::Mutex | LeaseKind::Permit { .. } | LeaseKind::Read | LeaseKind::Write
        )
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        use LeaseKind::{Mutex, Permit, Read, Write};
        use Operation as Op;
        use Outcome::{Acquire, Done, Holders};
        Ok(match op {
            Op::TryAcquire {
                key,
                kind,
                token,
                ttl,
            } => Acquire(match kind {
                Mutex => self.acquire_mutex(key, token, ttl),
                Permit { limit } => self.acquire_permit(key, token, ttl, limit),
                Read => self.acquire_read(key, token, ttl),
                Write => self.acquire_write(key, token, ttl),
                other => return Err(BackendError::unsupported("memory", other)),
            }),
            Op::Extend {
                key,
                kind,
                token,
                ttl,
            } => Done(match kind {
                Mutex => self.extend_mutex(key, token, ttl),
                Permit { .. } => self.extend_permit(key, token, ttl),
                Read => self.extend_read(key, token, ttl),
                Write => self.extend_write(key, token, ttl),
                other => return Err(BackendError::unsupported("memory", other)),
            }),
            Op::Release { key, kind, token } => Done(match kind {
                Mutex => self.release_mutex(key, token),
                Permit { .. } => self.release_permit(key, token),
                Read => self.release_read(key, token),
                Write => self.release_write(key, token),
                other => return Err(BackendError::unsupported("memory", other)),
            }),
            Op::Holders { key, kind } => Holders(match kind {
                Mutex => self.mutex_holders(key),
                Permit { .. } => self.permit_holders(key, kind),
                Read | Write => self.rw_holders(key),
                other => return Err(BackendError::unsupported("memory", other)),
            }),
            Op::ForceRelease { key, kind } => Done(match kind {
                Mutex => self.force_release_mutex(key),
                Permit { .. } => self.force_release_permits(key),
                Read | Write => self.force_release_rw(key),
                other => return Err(BackendError::unsupported("memory", other)),
            }),
            other => {
                return Err(BackendError::permanent(format!(
                    "unknown operation {other:?}"
                )));
            }
        })
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let rx = self
            .inner
            .slots
            .entry(key.full())
            .or_insert_with(Slot::new)
            .releases
            .subscribe();
        Ok(Box::new(MemoryListener { rx }))
    }
}

locks_core::impl_lock_backend!(MemoryBackend);
