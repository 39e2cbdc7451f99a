//! The shared conformance suites (mutex, primitives, and the mutex suite through a 1-permit
//! semaphore and a write lock) on a real Redis server, in real time.

use std::error::Error;

use locks_core::LockKey;
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisKeys};
use locks_testkit::conformance::BackendHarness;
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

/// Every lease of `key` gone by the store's decision, and nobody told (no PUBLISH): like a ttl
/// running out. Every lease of the key goes: mutex lease, permits, readers, writer, waiting
/// mark. The fence counter stays (fences must keep increasing).
async fn expire(mut raw: MultiplexedConnection, key: LockKey) {
    let keys = RedisKeys::new(&key);
    let deleted: Result<i64, _> = redis::cmd("DEL")
        .arg(&keys.lease)
        .arg(&keys.semaphore)
        .arg(&keys.semaphore_fences)
        .arg(&keys.rw_readers)
        .arg(&keys.rw_fences)
        .arg(&keys.rw_writer)
        .arg(&keys.rw_waiting)
        .query_async(&mut raw)
        .await;
    if let Err(e) = deleted {
        panic!("expire {key:?}: DEL failed: {e}");
    }
}

/// A private server, the backend on it, and a raw connection for [`expire`].
async fn start() -> Result<BackendHarness, Box<dyn Error>> {
    let server = RedisServer::start_with(RedisServerConfig::new().local_only()).await?;
    let backend = RedisBackend::connect(&server.url()).await?;
    let raw = server.connection().await?;
    Ok(BackendHarness::new(backend, move |key| expire(raw.clone(), key)).keeping(server))
}

async fn harness() -> BackendHarness {
    start()
        .await
        .unwrap_or_else(|e| panic!("redis harness: {e}"))
}

locks_testkit::conformance_tests!(harness, time = real);
locks_testkit::primitives_tests!(harness, time = real);
locks_testkit::adapter_conformance_tests!(harness, time = real);
