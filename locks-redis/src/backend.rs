//! [`RedisBackend`] and its [`LockBackend`] implementation. Each operation is one
//! [`dispatch`] of an [`Op`] on a lease [`Kind`], and one [`Reply`](crate::replies::Reply)
//! decoder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, LeaseInfo, LockBackend, LockKey, OwnerToken, ReleaseListener,
    RwInfo,
};
use redis::Client;

use crate::connection::Connection;
use crate::dispatch::{Kind, Op, dispatch};
use crate::keys::{self, CHANNEL};
use crate::pubsub::Notifier;
use crate::replies::Reply;

/// A [`LockBackend`] on Redis. Cheap to clone: clones share the connection, the subscription
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
    notifier: Arc<Notifier>,
    addr: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("response_timeout", &self.inner.response_timeout)
            .field("release_channels", &self.inner.notifier.channel_count())
            .finish()
    }
}

impl RedisBackend {
    pub(crate) fn from_parts(
        client: Client,
        addr: String,
        conn: Arc<Connection>,
        notifier: Arc<Notifier>,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Self {
        RedisBackend {
            inner: Arc::new(Inner {
                client,
                conn,
                notifier,
                addr,
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

    /// How many release channels the shared subscription tracks right now (channels with a
    /// waiter, plus those waiting for their lazy `UNSUBSCRIBE`).
    pub fn release_channels(&self) -> usize {
        self.inner.notifier.channel_count()
    }

    /// Run `op` on the lease of `kind` at `key` (see [`dispatch`]).
    async fn run(&self, op: Op, kind: Kind, key: &LockKey) -> Result<Reply, BackendError> {
        dispatch(&self.inner.conn, op, kind, key).await
    }
}

#[async_trait]
impl LockBackend for RedisBackend {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = Op::Acquire { token, ttl };
        self.run(op, Kind::Mutex, key).await?.acquired()
    }

    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let op = Op::Release { token };
        self.run(op, Kind::Mutex, key).await?.done()
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = Op::Extend { token, ttl };
        self.run(op, Kind::Mutex, key).await?.done()
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        self.run(Op::Holders, Kind::Mutex, key).await?.lease()
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        self.run(Op::ForceRelease, Kind::Mutex, key).await?.done()
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let channel = keys::name(key, CHANNEL);
        Ok(Box::new(self.inner.notifier.listen(channel).await?))
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        let op = Op::Acquire { token, ttl };
        let kind = Kind::Permit { limit: permits };
        self.run(op, kind, key).await?.acquired()
    }

    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let op = Op::Release { token };
        self.run(op, Kind::Permit { limit: 0 }, key).await?.done()
    }

    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = Op::Extend { token, ttl };
        self.run(op, Kind::Permit { limit: 0 }, key).await?.done()
    }

    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        let kind = Kind::Permit { limit: 0 };
        self.run(Op::Holders, kind, key).await?.members()
    }

    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = Op::Acquire { token, ttl };
        self.run(op, Kind::Read, key).await?.acquired()
    }

    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = Op::Acquire { token, ttl };
        self.run(op, Kind::Write, key).await?.acquired()
    }

    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        // One script releases a read or a write lease: the kind only picks the script.
        let op = Op::Release { token };
        self.run(op, Kind::Write, key).await?.done()
    }

    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = Op::Extend { token, ttl };
        self.run(op, Kind::Write, key).await?.done()
    }

    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        self.run(Op::Holders, Kind::Write, key).await?.rw()
    }
}
