//! The store side: atomic lease primitives a backend offers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::key::LockKey;
use crate::token::OwnerToken;

/// A lease the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token: strictly increasing per key across all holders, for the life of the
    /// store (see the backend's docs for what survives a restart).
    pub fence: u64,
}

impl Lease {
    /// A lease with this fencing token.
    pub fn new(fence: u64) -> Self {
        Lease { fence }
    }
}

/// What a single acquire attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireResult {
    /// The caller now holds the lease.
    Acquired(Lease),
    /// Someone else holds it.
    Held {
        /// The holder's remaining time to live, as a wait hint, when the store knows it.
        remaining: Option<Duration>,
    },
}

/// What the store knows about a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The holder's owner token.
    pub owner: OwnerToken,
    /// How long until the store expires the lease, by the store's clock.
    pub remaining: Duration,
    /// The fencing token the holder was given.
    pub fence: u64,
}

impl LeaseInfo {
    /// Build a lease description.
    pub fn new(owner: OwnerToken, remaining: Duration, fence: u64) -> Self {
        LeaseInfo {
            owner,
            remaining,
            fence,
        }
    }
}

/// What the store knows about a read-write lock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RwInfo {
    /// The current readers.
    pub readers: Vec<LeaseInfo>,
    /// The current writer, if any.
    pub writer: Option<LeaseInfo>,
    /// A writer waiting for the readers to leave (new readers are refused meanwhile).
    pub writer_waiting: bool,
}

impl RwInfo {
    /// Build a description.
    pub fn new(readers: Vec<LeaseInfo>, writer: Option<LeaseInfo>, writer_waiting: bool) -> Self {
        RwInfo {
            readers,
            writer,
            writer_waiting,
        }
    }
}

fn unsupported(backend: &str, what: &str) -> BackendError {
    BackendError::permanent(format!("the {backend} backend does not support {what}"))
}

/// Why a [`ReleaseListener`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A release (or something that may have been one, such as a lost subscription) was seen.
    Notified,
    /// The time limit passed without a notification.
    TimedOut,
}

/// Receives the release notifications of one key, from the moment it was created.
///
/// Created by [`LockBackend::listen`] *before* the acquire attempt whose failure makes the
/// caller wait, so a release that happens between the attempt and the wait is not missed.
#[async_trait]
pub trait ReleaseListener: Send {
    /// Wait until the key may have been released since the listener was created (or since
    /// this method last returned), or until `max` passes. Spurious wake-ups are allowed.
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError>;
}

/// A listener that never hears anything and just sleeps: the default for stores without
/// notifications. Waiters then rely on polling at `min(backoff, holder's remaining ttl)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SleepingListener;

#[async_trait]
impl ReleaseListener for SleepingListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        tokio::time::sleep(max).await;
        Ok(Wake::TimedOut)
    }
}

/// A store of leases with atomic, compare-and-act operations.
///
/// A backend offers primitives only; retry, waiting, renewal and lost-lock detection live in
/// [`LockService`](crate::LockService), written once for every backend. Time for expiry is the
/// store's own. A new backend is one crate that implements this trait and passes
/// `locks_testkit::conformance_tests!`.
///
/// Every operation must be atomic, and idempotent for the same owner token: a call that failed
/// on a dropped connection may or may not have been applied, and the service may send it again.
#[async_trait]
pub trait LockBackend: Send + Sync + 'static {
    /// Take the lease for `token` if nobody holds it (or `token` already holds it, in which
    /// case its ttl is reset and the *same* fence is returned). A new holder gets a fence
    /// larger than every fence handed out for this key before.
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError>;

    /// Delete the lease if `token` holds it, and wake waiters. `false`: not the owner (expired,
    /// taken, or never held).
    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError>;

    /// Reset the lease's ttl to `ttl` if `token` holds it. `false`: not the owner.
    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError>;

    /// The current lease, if any.
    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError>;

    /// Delete the lease whoever holds it, and wake waiters. `true` if there was one.
    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError>;

    /// Start listening for releases of `key`. The default never hears anything (waiters poll).
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let _ = key;
        Ok(Box::new(SleepingListener))
    }

    /// A short name for logs and metrics (`"memory"`, `"redis"`).
    fn name(&self) -> &'static str {
        "backend"
    }

    // ---- Semaphore: `permits` leases under one key, each with its own token and expiry. ----

    /// Take one of `permits` permits for `token` (idempotent: a token that holds one gets it
    /// back with its ttl reset). Expired permits are reclaimed first. When all are taken,
    /// `Held { remaining }` gives the time until the first one expires. A permit count lower
    /// than the number of live permits refuses new permits until enough are released; live
    /// permits are never revoked.
    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        let _ = (key, token, ttl, permits);
        Err(unsupported(self.name(), "semaphores"))
    }

    /// Give back `token`'s permit and wake waiters. `false`: not a holder.
    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let _ = (key, token);
        Err(unsupported(self.name(), "semaphores"))
    }

    /// Reset the ttl of `token`'s permit. `false`: not a holder.
    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let _ = (key, token, ttl);
        Err(unsupported(self.name(), "semaphores"))
    }

    /// The live permits of the semaphore at `key`.
    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        let _ = key;
        Err(unsupported(self.name(), "semaphores"))
    }

    // ---- Read-write lock: many readers or one writer, writer-preferring. ----

    /// Take a read lease unless a writer holds the lock or waits for it.
    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let _ = (key, token, ttl);
        Err(unsupported(self.name(), "read-write locks"))
    }

    /// Take the write lease if nobody reads or writes. While readers remain, record that this
    /// writer waits (for at most `ttl`, refreshed by every attempt), so no new reader gets in.
    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let _ = (key, token, ttl);
        Err(unsupported(self.name(), "read-write locks"))
    }

    /// Release `token`'s read or write lease (and its waiting-writer mark), waking waiters.
    /// `false`: `token` held neither.
    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let _ = (key, token);
        Err(unsupported(self.name(), "read-write locks"))
    }

    /// Reset the ttl of `token`'s read or write lease. `false`: not a holder.
    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let _ = (key, token, ttl);
        Err(unsupported(self.name(), "read-write locks"))
    }

    /// Readers, writer and waiting writer of the read-write lock at `key`.
    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        let _ = key;
        Err(unsupported(self.name(), "read-write locks"))
    }
}

macro_rules! forward_backend {
    ($ty:ty) => {
        #[async_trait]
        impl<T: LockBackend + ?Sized> LockBackend for $ty {
            async fn try_acquire(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<AcquireResult, BackendError> {
                (**self).try_acquire(key, token, ttl).await
            }
            async fn release(
                &self,
                key: &LockKey,
                token: OwnerToken,
            ) -> Result<bool, BackendError> {
                (**self).release(key, token).await
            }
            async fn extend(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<bool, BackendError> {
                (**self).extend(key, token, ttl).await
            }
            async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
                (**self).inspect(key).await
            }
            async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
                (**self).force_release(key).await
            }
            async fn listen(
                &self,
                key: &LockKey,
            ) -> Result<Box<dyn ReleaseListener>, BackendError> {
                (**self).listen(key).await
            }
            fn name(&self) -> &'static str {
                (**self).name()
            }
            async fn try_acquire_permit(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
                permits: u32,
            ) -> Result<AcquireResult, BackendError> {
                (**self).try_acquire_permit(key, token, ttl, permits).await
            }
            async fn release_permit(
                &self,
                key: &LockKey,
                token: OwnerToken,
            ) -> Result<bool, BackendError> {
                (**self).release_permit(key, token).await
            }
            async fn extend_permit(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<bool, BackendError> {
                (**self).extend_permit(key, token, ttl).await
            }
            async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
                (**self).permit_holders(key).await
            }
            async fn try_acquire_read(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<AcquireResult, BackendError> {
                (**self).try_acquire_read(key, token, ttl).await
            }
            async fn try_acquire_write(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<AcquireResult, BackendError> {
                (**self).try_acquire_write(key, token, ttl).await
            }
            async fn release_rw(
                &self,
                key: &LockKey,
                token: OwnerToken,
            ) -> Result<bool, BackendError> {
                (**self).release_rw(key, token).await
            }
            async fn extend_rw(
                &self,
                key: &LockKey,
                token: OwnerToken,
                ttl: Duration,
            ) -> Result<bool, BackendError> {
                (**self).extend_rw(key, token, ttl).await
            }
            async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
                (**self).inspect_rw(key).await
            }
        }
    };
}

forward_backend!(Arc<T>);
forward_backend!(Box<T>);
