//! The backend contract: one dispatcher, every operation routed by lease kind.

use async_trait::async_trait;
use locks_core::backend::{Action, Dispatch, ListPage, ListQuery, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener};

use crate::store::MemoryBackend;

use Outcome::{Acquire, Done};

#[async_trait]
impl Dispatch for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    /// Every kind: mutex, semaphore permits, readers and writers, fair mutex.
    fn supports(&self, kind: LeaseKind) -> bool {
        matches!(
            kind,
            LeaseKind::Mutex
                | LeaseKind::Permit { .. }
                | LeaseKind::Read
                | LeaseKind::Write
                | LeaseKind::FairMutex
        )
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        use Action::{Extend, ForceRelease, Holders, Release, TryAcquire};
        use LeaseKind::{FairMutex, Mutex, Permit, Read, Write};
        let Operation {
            key, kind, action, ..
        } = op;
        Ok(match (action, kind) {
            (TryAcquire { token, .. }, _) if self.is_retired(key, token) => {
                return Err(BackendError::permanent(
                    "this owner token was released; an acquire with it is refused",
                ));
            }
            (TryAcquire { token, ttl }, _) => {
                let ask = self.ask(token, ttl);
                Acquire(match kind {
                    Mutex => self.acquire_mutex(key, ask),
                    Permit { limit } => self.acquire_permit(key, ask, limit),
                    Read => self.acquire_read(key, ask),
                    Write => self.acquire_write(key, ask),
                    FairMutex => self.acquire_fair(key, ask),
                    _ => return Err(BackendError::unsupported("memory", kind)),
                })
            }
            (Extend { token, ttl }, Mutex) => Done(self.extend_mutex(key, token, ttl)),
            (Extend { token, ttl }, Permit { .. }) => Done(self.extend_permit(key, token, ttl)),
            (Extend { token, ttl }, Read) => Done(self.extend_read(key, token, ttl)),
            (Extend { token, ttl }, Write) => Done(self.extend_write(key, token, ttl)),
            (Extend { token, ttl }, FairMutex) => Done(self.extend_fair(key, token, ttl)),
            (Release { token }, _) => {
                let released = match kind {
                    Mutex => self.release_mutex(key, token),
                    Permit { .. } => self.release_permit(key, token),
                    Read => self.release_read(key, token),
                    Write => self.release_write(key, token),
                    FairMutex => self.release_fair(key, token),
                    _ => return Err(BackendError::unsupported("memory", kind)),
                };
                // The contract: a token released while it holds nothing is retired.
                if !released {
                    self.retire(key, token);
                }
                Done(released)
            }
            (Holders, Mutex) => Outcome::Holders(self.mutex_holders(key)),
            (Holders, Permit { .. }) => Outcome::Holders(self.permit_holders(key, kind)),
            (Holders, Read | Write) => Outcome::Holders(self.rw_holders(key)),
            (Holders, FairMutex) => Outcome::Holders(self.fair_holders(key)),
            (ForceRelease, Mutex) => Done(self.force_release_mutex(key)),
            (ForceRelease, Permit { .. }) => Done(self.force_release_permits(key)),
            (ForceRelease, Read | Write) => Done(self.force_release_rw(key)),
            (ForceRelease, FairMutex) => Done(self.force_release_fair(key)),
            _ => return Err(BackendError::unsupported("memory", kind)),
        })
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        Ok(Box::new(self.listener(key)))
    }

    /// Every slot under the prefix, in `(name, kind)` order (see the crate's `list` module).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        Ok(self.list_page(query))
    }
}

locks_core::impl_lock_backend!(MemoryBackend);
