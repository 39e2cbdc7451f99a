//! The shared conformance suite on a real Redis server, in real time.

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
        let mut raw = self.raw.clone();
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(RedisKeys::new(key).lease)
            .query_async(&mut raw)
            .await;
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
