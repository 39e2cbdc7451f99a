//! [`Recorder`]: the decorator that forwards to the wrapped backend and notes every answer in
//! the [`Log`](super::log::Log).
//!
//! It sits *behind* the fault injector of [`RecordingBackend`](super::RecordingBackend): a
//! failure injected before the store never reaches the recorder, while a lost reply (applied by
//! the store, then dropped) is recorded. That ordering is why the recorder is a layer of its
//! own rather than the front itself.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, Holders, LeaseKind, LockBackend, LockKey, OwnerToken,
    ReleaseListener,
};
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
    /// The one recording path: send `call`, and when the store answered, note `op(answer)`
    /// for `key` and `kind`. Errors are not recorded (the store may not have seen the call).
    pub(super) async fn observe<T: Copy + Send>(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        call: impl Future<Output = Result<T, BackendError>> + Send,
        op: impl FnOnce(T) -> Op + Send,
    ) -> Result<T, BackendError> {
        let sent = Instant::now();
        let answer = call.await?;
        self.state
            .record(|log| log.apply(key, kind, sent, op(answer)));
        Ok(answer)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl LockBackend for Recorder {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        self.inner.supports(kind)
    }

    async fn try_acquire(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let call = self.inner.try_acquire(key, kind, token, ttl);
        let op = move |result| Op::Acquire { token, ttl, result };
        self.observe(key, kind, call, op).await
    }

    async fn extend(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let call = self.inner.extend(key, kind, token, ttl);
        let op = move |ok| Op::Extend { token, ttl, ok };
        self.observe(key, kind, call, op).await
    }

    async fn release(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
    ) -> Result<bool, BackendError> {
        let call = self.inner.release(key, kind, token);
        self.observe(key, kind, call, move |ok| Op::Release { token, ok })
            .await
    }

    /// Not recorded: it changes nothing.
    async fn holders(&self, key: &LockKey, kind: LeaseKind) -> Result<Holders, BackendError> {
        self.inner.holders(key, kind).await
    }

    async fn force_release(&self, key: &LockKey, kind: LeaseKind) -> Result<bool, BackendError> {
        let call = self.inner.force_release(key, kind);
        let op = |had| Op::Force {
            had,
            reason: EndReason::ForceReleased,
        };
        self.observe(key, kind, call, op).await
    }

    /// Not recorded: it changes nothing.
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }
}
