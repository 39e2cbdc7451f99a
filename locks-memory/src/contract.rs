//! The backend contract: one dispatcher, every operation routed by lease kind.

use async_trait::async_trait;
use locks_core::backend::{Action, Dispatch, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener};

use crate::store::MemoryBackend;

use Outcome::{Acquire, Done};

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
        use Action::{Extend, ForceRelease, Holders, Release, TryAcquire};
        use LeaseKind::{Mutex, Permit, Read, Write};
        let Operation {
            key, kind, action, ..
        } = op;
        Ok(match (action, kind) {
            (TryAcquire { token, ttl }, _) => {
                let ask = self.ask(token, ttl);
                Acquire(match kind {
                    Mutex => self.acquire_mutex(key, ask),
                    Permit { limit } => self.acquire_permit(key, ask, limit),
                    Read => self.acquire_read(key, ask),
                    Write => self.acquire_write(key, ask),
                    _ => return Err(BackendError::unsupported("memory", kind)),
                })
            }
            (Extend { token, ttl }, Mutex) => Done(self.extend_mutex(key, token, ttl)),
            (Extend { token, ttl }, Permit { .. }) => Done(self.extend_permit(key, token, ttl)),
            (Extend { token, ttl }, Read) => Done(self.extend_read(key, token, ttl)),
            (Extend { token, ttl }, Write) => Done(self.extend_write(key, token, ttl)),
            (Release { token }, Mutex) => Done(self.release_mutex(key, token)),
            (Release { token }, Permit { .. }) => Done(self.release_permit(key, token)),
            (Release { token }, Read) => Done(self.release_read(key, token)),
            (Release { token }, Write) => Done(self.release_write(key, token)),
            (Holders, Mutex) => Outcome::Holders(self.mutex_holders(key)),
            (Holders, Permit { .. }) => Outcome::Holders(self.permit_holders(key, kind)),
            (Holders, Read | Write) => Outcome::Holders(self.rw_holders(key)),
            (ForceRelease, Mutex) => Done(self.force_release_mutex(key)),
            (ForceRelease, Permit { .. }) => Done(self.force_release_permits(key)),
            (ForceRelease, Read | Write) => Done(self.force_release_rw(key)),
            _ => return Err(BackendError::unsupported("memory", kind)),
        })
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        Ok(Box::new(self.listener(key)))
    }
}

locks_core::impl_lock_backend!(MemoryBackend);
