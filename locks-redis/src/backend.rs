//! [`RedisBackend`] and its [`LockBackend`](locks_core::LockBackend) implementation: each
//! operation is one [`dispatch`] of an [`Operation`] and one [`Reply`](crate::replies::Reply)
//! decoder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Dispatch, ListPage, ListQuery, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener};
use redis::Client;

use crate::ack::{ReplicaAck, Store};
use crate::connection::Connection;
use crate::counter::FenceCounterTtl;
use crate::dispatch::dispatch;
use crate::keys::{self, CHANNEL};
use crate::policy::PolicyGate;
use crate::pubsub::Notifier;
#[cfg(feature = "cluster")]
use crate::sharded::ShardedNotifier;
use crate::topology::Source;

/// A [`LockBackend`](locks_core::LockBackend) on Redis. Cheap to clone: clones share the connection, the subscription
/// and its background task. See the [crate docs](crate) for layout, scripts and guarantees.
///
/// Must be created (and used) inside a tokio runtime.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<Source>,
    conn: Arc<Connection>,
    gate: PolicyGate,
    notifier: Notifiers,
    replica_ack: Option<ReplicaAck>,
    addr: String,
    fence_counter_ttl: FenceCounterTtl,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// The release subscription: one connection to the server (or the Sentinels' primary), or the
/// cluster's shard-aware one.
pub(crate) enum Notifiers {
    /// One server, or the primary the Sentinels name.
    Single(Arc<Notifier>),
    /// A cluster.
    #[cfg(feature = "cluster")]
    Cluster(Arc<ShardedNotifier>),
}

impl Notifiers {
    fn channel_count(&self) -> usize {
        match self {
            Notifiers::Single(n) => n.channel_count(),
            #[cfg(feature = "cluster")]
            Notifiers::Cluster(n) => n.channel_count(),
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("response_timeout", &self.inner.response_timeout)
            .field("fence_counter_ttl", &self.inner.fence_counter_ttl)
            .field("replica_ack", &self.inner.replica_ack)
            .field("release_channels", &self.inner.notifier.channel_count())
            .finish()
    }
}

impl RedisBackend {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        source: Arc<Source>,
        addr: String,
        conn: Arc<Connection>,
        gate: PolicyGate,
        notifier: Notifiers,
        replica_ack: Option<ReplicaAck>,
        fence_counter_ttl: FenceCounterTtl,
        (connect_timeout, response_timeout): (Duration, Duration),
    ) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                source,
                conn,
                gate,
                notifier,
                replica_ack,
                addr,
                fence_counter_ttl,
                connect_timeout,
                response_timeout,
            }),
        }
    }

    /// The redis client of a single-server backend (for raw commands on the same server);
    /// `None` for a cluster or Sentinel backend, whose server is not fixed.
    pub fn client(&self) -> Option<&Client> {
        match &*self.inner.source {
            Source::Single(client) => Some(client),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether this backend talks to a Redis Cluster (feature `cluster`).
    pub fn is_cluster(&self) -> bool {
        self.inner.source.is_cluster()
    }

    /// The replica acknowledgement this backend waits for, if any (see
    /// [`RedisBackendBuilder::replica_ack`](crate::RedisBackendBuilder::replica_ack)):
    /// `(min_replicas, timeout)`.
    pub fn replica_ack(&self) -> Option<(u32, Duration)> {
        self.inner.replica_ack.map(|a| (a.min_replicas, a.timeout))
    }

    /// The server address (`host:port` or a socket path), without credentials; for a cluster
    /// `cluster:` and the seed addresses, for Sentinel `sentinel:` and the master name.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The command connection (for the health report, [`crate::health`]).
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.inner.conn
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

    /// One script call (planned by the crate's dispatcher) and the decoder for its answer.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let inner = &self.inner;
        let seen = inner.conn.reconnects();
        let reply = dispatch(&inner.conn, &inner.gate, inner.fence_counter_ttl, op).await?;
        let outcome = match op.action {
            Action::TryAcquire { .. } => reply.acquired().map(Outcome::Acquire)?,
            Action::Holders => reply.holders(op.kind).map(Outcome::Holders)?,
            _ => reply.done().map(Outcome::Done)?,
        };
        match &inner.replica_ack {
            Some(ack) => {
                let store = Store {
                    conn: &inner.conn,
                    gate: &inner.gate,
                    counter: inner.fence_counter_ttl,
                };
                ack.confirm(store, op, outcome, seen).await
            }
            None => Ok(outcome),
        }
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let channel = keys::name(key, CHANNEL);
        let listener: Box<dyn ReleaseListener> = match &self.inner.notifier {
            Notifiers::Single(n) => Box::new(n.listen(channel).await?),
            #[cfg(feature = "cluster")]
            Notifiers::Cluster(n) => Box::new(n.listen(channel).await?),
        };
        // A fair grant is not acknowledged by replicas: with `replica_ack`, the waiter takes
        // it through an acquire, which is.
        Ok(match self.inner.replica_ack {
            Some(_) => Box::new(crate::grant::NoGrants(listener)),
            None => listener,
        })
    }

    /// `SCAN ... MATCH` over the key layout (every primary of a cluster), then one `holders`
    /// script per lock found (see the crate's `list` module).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        crate::list::list_page(self, &self.inner.conn, query).await
    }
}

locks_core::impl_lock_backend!(RedisBackend);
