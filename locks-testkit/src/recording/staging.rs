//! Staging what the code under test must survive: a key held by another owner
//! ([`HeldElsewhere`]) and a lease the store drops ([`revoke`](RecordingBackend::revoke)).
//! Both go through the recorder but not through the fault injector.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use locks_core::{
    AcquireResult, BackendError, LeaseKind, LockBackend, LockError, LockKey, OwnerToken,
};

use super::RecordingBackend;
use super::recorder::Recorder;

/// Report a store failure of a staging helper as `LockError::Backend`.
fn backend_error(operation: &'static str) -> impl FnOnce(BackendError) -> LockError {
    move |source| LockError::Backend { operation, source }
}

impl RecordingBackend {
    /// Take `key` (a mutex lease) for another owner for `ttl`, so that the code under test
    /// finds it held (contention). The holder does not renew: the lease ends at `ttl`, on
    /// [`HeldElsewhere::release`], or when the handle is dropped. It is recorded, marked
    /// `elsewhere`, and not affected by [`fail_next`](Self::fail_next).
    ///
    /// Errors: `InvalidKey`, `InvalidTtl` (zero), `Contended` (someone holds the key),
    /// `Backend`.
    pub async fn hold_elsewhere(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<HeldElsewhere, LockError> {
        let lock_key = self.key(key)?;
        if ttl.is_zero() {
            return Err(LockError::InvalidTtl {
                ttl,
                reason: "must be greater than zero".to_owned(),
            });
        }
        let token = OwnerToken::new();
        self.state().lock().elsewhere.insert(token);
        let recorder = Arc::clone(&self.recorder);
        match recorder
            .try_acquire(&lock_key, LeaseKind::Mutex, token, ttl)
            .await
            .map_err(backend_error("hold_elsewhere"))?
        {
            AcquireResult::Acquired(lease) => Ok(HeldElsewhere {
                recorder,
                key: lock_key,
                token,
                fence: lease.fence,
                done: false,
            }),
            AcquireResult::Held { remaining } => Err(LockError::Contended {
                key: key.to_owned(),
                remaining,
            }),
        }
    }

    /// The store drops the mutex lease of `key` now, as if it had expired or an operator had
    /// deleted it: the holder is not told, finds out at its next renewal (its `lost()` fires
    /// with `NotOwner`), and its release is refused. Recorded as
    /// [`LockEventKind::Revoked`](super::LockEventKind::Revoked), not as a release by the
    /// holder. `true` if there was a lease.
    ///
    /// Goes straight to the wrapped backend's `force_release` (not affected by
    /// [`fail_next`](Self::fail_next)).
    pub async fn revoke(&self, key: &str) -> Result<bool, LockError> {
        let lock_key = self.key(key)?;
        self.recorder
            .revoke(&lock_key)
            .await
            .map_err(backend_error("revoke"))
    }
}

/// A lease held by "another owner", from [`RecordingBackend::hold_elsewhere`]. Dropping it
/// releases the lease in the background; [`release`](HeldElsewhere::release) does it now.
#[must_use = "dropping a HeldElsewhere releases the lease at once"]
pub struct HeldElsewhere {
    recorder: Arc<Recorder>,
    key: LockKey,
    token: OwnerToken,
    fence: u64,
    done: bool,
}

impl fmt::Debug for HeldElsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldElsewhere")
            .field("key", &self.key)
            .field("token", &self.token)
            .field("fence", &self.fence)
            .finish()
    }
}

impl HeldElsewhere {
    /// The key name (without prefix).
    pub fn key(&self) -> &str {
        self.key.name()
    }

    /// The other owner's token.
    pub fn token(&self) -> OwnerToken {
        self.token
    }

    /// The fence the other owner got.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Release the lease now. `Ok(false)`: it had already expired or been taken.
    pub async fn release(mut self) -> Result<bool, LockError> {
        self.done = true;
        self.recorder
            .release(&self.key, LeaseKind::Mutex, self.token)
            .await
            .map_err(backend_error("release"))
    }

    /// Forget the lease without releasing it: the store keeps it until its ttl runs out (a
    /// crashed holder).
    pub fn abandon(mut self) {
        self.done = true;
    }
}

impl Drop for HeldElsewhere {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let recorder = Arc::clone(&self.recorder);
            let key = self.key.clone();
            let token = self.token;
            rt.spawn(async move {
                let _ = recorder.release(&key, LeaseKind::Mutex, token).await;
            });
        }
    }
}
