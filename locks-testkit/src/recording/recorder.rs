//! [`Recorder`]: the decorator that forwards to the wrapped backend and notes every answer in
//! the [`Log`](super::log::Log).
//!
//! It sits *behind* the fault injector of [`RecordingBackend`](super::RecordingBackend): a
//! failure injected before the store never reaches the recorder, while a lost reply (applied by
//! the store, then dropped) is recorded. That ordering is why the recorder is a layer of its
//! own rather than the front itself.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, Operation, Outcome};
use locks_core::{AcquireResult, BackendError, Lease, LeaseKind, LockBackend, LockKey};
use tokio::time::Instant;

use super::event::EndReason;
use super::log::{Op, State};

pub(super) struct Recorder {
    pub(super) inner: Arc<dyn LockBackend>,
    pub(super) state: Arc<State>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("inner", &self.inner.name())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A fair mutex's release hands the lease to the head of its queue inside the store, and
    /// the new holder takes it without a call: note it as acquired by whoever holds it now.
    async fn note_grant(&self, key: &LockKey) {
        let sent = Instant::now();
        let kind = LeaseKind::FairMutex;
        let Ok(holders) = self.inner.holders(key, kind).await else {
            return;
        };
        if let Some(lease) = holders.leases.first() {
            let entry = Op::Acquire {
                token: lease.owner,
                ttl: lease.remaining,
                result: AcquireResult::Acquired(Lease::new(lease.fence)),
            };
            self.state.record(|log| log.apply(key, kind, sent, entry));
        }
    }

    /// Drop the mutex lease of `key` in the store whoever holds it, recorded as revoked (not
    /// as a release by the holder).
    pub(super) async fn revoke(&self, key: &LockKey) -> Result<bool, BackendError> {
        let sent = Instant::now();
        let had = self.inner.force_release(key, LeaseKind::Mutex).await?;
        let entry = Op::Force {
            had,
            reason: EndReason::Revoked,
        };
        self.state
            .record(|log| log.apply(key, LeaseKind::Mutex, sent, entry));
        Ok(had)
    }
}

#[async_trait]
impl Decorator for Recorder {
    fn inner(&self) -> &dyn LockBackend {
        &*self.inner
    }

    /// The one recording path: send the operation and, when the store answered, note what it
    /// did. Errors are not recorded (the store may not have seen the call); `holders` and
    /// `listen` change nothing and are not recorded.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let sent = Instant::now();
        let answer = op.send(&*self.inner).await?;
        let entry = match (op.action, &answer) {
            (Action::TryAcquire { token, ttl }, Outcome::Acquire(result)) => Some(Op::Acquire {
                token,
                ttl,
                result: *result,
            }),
            (Action::Extend { token, ttl }, Outcome::Done(ok)) => Some(Op::Extend {
                token,
                ttl,
                ok: *ok,
            }),
            (Action::Release { token }, Outcome::Done(ok)) => Some(Op::Release { token, ok: *ok }),
            (Action::ForceRelease, Outcome::Done(had)) => Some(Op::Force {
                had: *had,
                reason: EndReason::ForceReleased,
            }),
            _ => None,
        };
        if let Some(entry) = entry {
            self.state
                .record(|log| log.apply(op.key, op.kind, sent, entry));
        }
        if let (Action::Release { .. }, Outcome::Done(true), LeaseKind::FairMutex) =
            (op.action, &answer, op.kind)
        {
            self.note_grant(op.key).await;
        }
        Ok(answer)
    }
}

locks_core::impl_lock_backend!(Recorder);
