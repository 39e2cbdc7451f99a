//! The shared conformance suites (mutex, primitives, and the mutex suite through a 1-permit
//! semaphore and a write lock) on a real Redis server, in real time.

use std::sync::Arc;

use async_trait::async_trait;
use locks_core::{LockBackend, LockKey};
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisKeys};
use locks_testkit::Harness;
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

struct RedisHarness {
    backend: RedisBackend,
    raw: MultiplexedConnection,
    _server: RedisServer,
}

#[async_trait]
impl Harness for RedisHarness {
    fn backend(&self) -> Arc<dyn LockBackend> {
        Arc::new(self.backend.clone())
    }

    async fn expire(&self, key: &LockKey) {
        // Gone by the store's decision, and nobody is told (no PUBLISH): like a ttl running out.
        // Every lease of the key goes: mutex lease, permits, readers, writer, waiting mark. The
        // fence counter stays (fences must keep increasing).
        let keys = RedisKeys::new(key);
        let mut raw = self.raw.clone();
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
}

async fn harness() -> RedisHarness {
    let server = RedisServer::start_with(RedisServerConfig::new().local_only())
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let backend = RedisBackend::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let raw = backend
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection: {e}"));
    RedisHarness {
        backend,
        raw,
        _server: server,
    }
}

locks_testkit::conformance_tests!(harness, time = real);
locks_testkit::primitives_tests!(harness, time = real);
locks_testkit::adapter_conformance_tests!(harness, time = real);
