//! Helpers shared by the integration tests of this crate that run against a real
//! `redis-server` from the testkit fixture (`mod common;` in each test file that uses them).

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use locks_core::{LockKey, OwnerToken};
use locks_redis::redis::aio::ConnectionLike;
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisBackendBuilder, RedisKeys};
use locks_testkit::conformance::BackendHarness;
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

/// Bound for anything that should happen "at once" in real time.
pub const SOON: Duration = Duration::from_secs(5);

/// The connect and response timeouts of [`builder`].
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// A server started with `cfg`.
pub async fn server_with(cfg: RedisServerConfig) -> RedisServer {
    RedisServer::start_with(cfg)
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"))
}

/// A private server (never an external one), with the default config otherwise.
pub async fn private_server() -> RedisServer {
    server_with(RedisServerConfig::new().local_only()).await
}

/// A backend builder for `url`, with connect and response timeouts of [`TIMEOUT`].
pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
    RedisBackend::builder(url)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
}

/// The backend `builder` connects.
pub async fn connect(builder: RedisBackendBuilder) -> RedisBackend {
    builder
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A backend connected to `server` by [`builder`].
pub async fn backend(server: &RedisServer) -> RedisBackend {
    connect(builder(server.url())).await
}

/// A plain connection to `server`, to look at or change the store behind a backend's back.
pub async fn raw(server: &RedisServer) -> MultiplexedConnection {
    server
        .connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection: {e}"))
}

/// A key name no other test (or run, on a shared external server) uses.
pub fn unique(name: &str) -> String {
    format!("{name}:{}", OwnerToken::new())
}

/// The lock key of `name` under the default prefix.
pub fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).unwrap_or_else(|e| panic!("{e}"))
}

/// `fut`, bounded by [`SOON`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(SOON, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {SOON:?}"))
}

/// The server's clock (`TIME`) in microseconds.
pub async fn server_us(conn: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("TIME: {e}"));
    secs * 1_000_000 + micros
}

/// A [`private_server`], a [`backend`] connected to it and a [`raw`] connection to it.
pub async fn private_rig() -> (RedisServer, RedisBackend, MultiplexedConnection) {
    let server = private_server().await;
    let backend = backend(&server).await;
    let conn = raw(&server).await;
    (server, backend, conn)
}

/// Every lease of `key` gone by the store's decision, and nobody told (no PUBLISH): like a ttl
/// running out. Every lease of the key goes: mutex lease, permits, readers, writer, waiting
/// mark, fair mutex lease (its queue stays). The fence counter stays (fences must keep increasing). `raw` is any connection that
/// may delete the keys (a plain or a cluster one): the `expire` of a conformance harness.
pub async fn expire<C: ConnectionLike>(mut raw: C, key: LockKey) {
    let keys = RedisKeys::new(&key);
    let deleted: Result<i64, _> = redis::cmd("DEL")
        .arg(&keys.lease)
        .arg(&keys.semaphore)
        .arg(&keys.semaphore_fences)
        .arg(&keys.rw_readers)
        .arg(&keys.rw_fences)
        .arg(&keys.rw_writer)
        .arg(&keys.rw_waiting)
        .arg(&keys.fair)
        .query_async(&mut raw)
        .await;
    if let Err(e) = deleted {
        panic!("expire {key:?}: DEL failed: {e}");
    }
}

/// The conformance harness of `backend`, whose `expire` is [`expire`] through `raw`.
pub fn harness_over<C>(backend: RedisBackend, raw: C) -> BackendHarness
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    BackendHarness::new(backend, move |key| expire(raw.clone(), key))
}
