//! [`RedisBackend`] and its [`LockBackend`](locks_core::LockBackend) implementation: each
//! operation is one [`dispatch`] of an [`Operation`] and one [`Reply`](crate::replies::Reply)
//! decoder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Dispatch, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener};
use redis::Client;

use crate::connection::Connection;
use crate::counter::FenceCounterTtl;
use crate::dispatch::dispatch;
use crate::keys::{self, CHANNEL};
use crate::policy::PolicyGate;
use crate::pubsub::Notifier;

/// A [`LockBackend`](locks_core::LockBackend) on Redis. Cheap to clone: clones share the connection, the subscription
/// and its background task. See the [crate docs](crate) for layout, scripts and guarantees.
///
/// Must be created (and used) inside a tokio runtime.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    conn: Arc<Connection>,
    gate: PolicyGate,
    notifier: Arc<Notifier>,
    addr: String,
    fence_counter_ttl: FenceCounterTtl,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("response_timeout", &self.inner.response_timeout)
            .field("fence_counter_ttl", &self.inner.fence_counter_ttl)
            .field("release_channels", &self.inner.notifier.channel_count())
            .finish()
    }
}

impl RedisBackend {
    pub(crate) fn from_parts(
        client: Client,
        addr: String,
        conn: Arc<Connection>,
        gate: PolicyGate,
        notifier: Arc<Notifier>,
        fence_counter_ttl: FenceCounterTtl,
        (connect_timeout, response_timeout): (Duration, Duration),
    ) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                client,
                conn,
                gate,
                notifier,
                addr,
                fence_counter_ttl,
                connect_timeout,
                response_timeout,
            }),
        }
    }

    /// The redis client this backend connects with (for raw commands on the same server).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The server address (`host:port` or a socket path), without credentials.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// How long fence counters are kept (see
    /// [`RedisBackendBuilder::fence_counter_ttl`](crate::RedisBackendBuilder::fence_counter_ttl)).
    pub fn fence_counter_ttl(&self) -> FenceCounterTtl {
        self.inner.fence_counter_ttl
    }

    /// How many release channels the shared subscription tracks right now (channels with a
    /// waiter, plus those waiting for their lazy `UNSUBSCRIBE`).
    pub fn release_channels(&self) -> usize {
        self.inner.notifier.channel_count()
    }
}

#[async_trait]
impl Dispatch for RedisBackend {
    fn name(&self) -> &'static str {
        "redis"
    }

    /// Every kind: mutex, semaphore permits, readers and writers.
    fn supports(&self, kind: LeaseKind) -> bool {
        matches!(
            kind,
            LeaseKind::Mutex | LeaseKind::Permit { .. } | LeaseKind::Read | LeaseKind::Write
        )
    }

    /// One script call (planned by the crate's dispatcher) and the decoder for its answer.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let inner = &self.inner;
        let reply = dispatch(&inner.conn, &inner.gate, inner.fence_counter_ttl, op).await?;
        match op.action {
            Action::TryAcquire { .. } => reply.acquired().map(Outcome::Acquire),
            Action::Holders => reply.holders(op.kind).map(Outcome::Holders),
            _ => reply.done().map(Outcome::Done),
        }
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let channel = keys::name(key, CHANNEL);
        Ok(Box::new(self.inner.notifier.listen(channel).await?))
    }
}

locks_core::impl_lock_backend!(RedisBackend);
