//! The backend contract: every operation dispatched by lease kind.

use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, Holders, LeaseKind, LockBackend, LockKey, OwnerToken,
    ReleaseListener,
};

use crate::slot::Slot;
use crate::store::{MemoryBackend, MemoryListener};

fn unsupported(kind: LeaseKind) -> BackendError {
    BackendError::unsupported("memory", kind)
}

#[async_trait]
impl LockBackend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        matches!(
            kind,
            LeaseKind::Mutex | LeaseKind::Permit { .. } | LeaseKind::Read | LeaseKind::Write
        )
    }

    async fn try_acquire(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.acquire_mutex(key, token, ttl)),
            LeaseKind::Permit { limit } => Ok(self.acquire_permit(key, token, ttl, limit)),
            LeaseKind::Read => Ok(self.acquire_read(key, token, ttl)),
            LeaseKind::Write => Ok(self.acquire_write(key, token, ttl)),
            other => Err(unsupported(other)),
        }
    }

    async fn extend(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.extend_mutex(key, token, ttl)),
            LeaseKind::Permit { .. } => Ok(self.extend_permit(key, token, ttl)),
            LeaseKind::Read => Ok(self.extend_read(key, token, ttl)),
            LeaseKind::Write => Ok(self.extend_write(key, token, ttl)),
            other => Err(unsupported(other)),
        }
    }

    async fn release(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
    ) -> Result<bool, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.release_mutex(key, token)),
            LeaseKind::Permit { .. } => Ok(self.release_permit(key, token)),
            LeaseKind::Read => Ok(self.release_read(key, token)),
            LeaseKind::Write => Ok(self.release_write(key, token)),
            other => Err(unsupported(other)),
        }
    }

    async fn holders(&self, key: &LockKey, kind: LeaseKind) -> Result<Holders, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.mutex_holders(key)),
            LeaseKind::Permit { .. } => Ok(self.permit_holders(key, kind)),
            LeaseKind::Read | LeaseKind::Write => Ok(self.rw_holders(key)),
            other => Err(unsupported(other)),
        }
    }

    async fn force_release(&self, key: &LockKey, kind: LeaseKind) -> Result<bool, BackendError> {
        match kind {
            LeaseKind::Mutex => Ok(self.force_release_mutex(key)),
            LeaseKind::Permit { .. } => Ok(self.force_release_permits(key)),
            LeaseKind::Read | LeaseKind::Write => Ok(self.force_release_rw(key)),
            other => Err(unsupported(other)),
        }
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
