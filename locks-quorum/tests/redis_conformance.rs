//! The shared conformance suites on 3-node and 5-node quorums of real, independent
//! redis-servers, in real time.

use std::error::Error;

use locks_core::LockKey;
use locks_quorum::QuorumBackend;
use locks_redis::RedisKeys;
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_testkit::conformance::BackendHarness;
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

/// The mutex lease of `key` gone on every node, nobody told: like a ttl running out. The fence
/// counters and the quorum's fence records stay.
async fn expire(raw: Vec<MultiplexedConnection>, key: LockKey) {
    let lease = RedisKeys::new(&key).lease;
    for mut conn in raw {
        let deleted: Result<i64, _> = redis::cmd("DEL").arg(&lease).query_async(&mut conn).await;
        if let Err(e) = deleted {
            panic!("expire {key:?}: DEL failed: {e}");
        }
    }
}

/// `n` private servers, a quorum over them, raw connections for [`expire`].
async fn start(n: usize) -> Result<BackendHarness, Box<dyn Error>> {
    let servers = futures::future::try_join_all(
        (0..n).map(|_| RedisServer::start_with(RedisServerConfig::new().local_only())),
    )
    .await?;
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let quorum: QuorumBackend = locks_quorum::redis::connect(&urls).await?;
    let mut raw = Vec::new();
    for s in &servers {
        raw.push(s.connection().await?);
    }
    Ok(BackendHarness::new(quorum, move |key| expire(raw.clone(), key)).keeping(servers))
}

/// Three servers.
mod three {
    use super::*;

    async fn harness() -> BackendHarness {
        start(3)
            .await
            .unwrap_or_else(|e| panic!("redis quorum harness: {e}"))
    }

    locks_testkit::conformance_tests!(harness, time = real);
    locks_testkit::primitives_tests!(harness, time = real);
    locks_testkit::adapter_conformance_tests!(harness, time = real);
}

/// Five servers. The adapter suites (a one-permit semaphore and a write lock as mutexes) only
/// check that the quorum refuses those kinds, which the three-server quorum already shows.
mod five {
    use super::*;

    async fn harness() -> BackendHarness {
        start(5)
            .await
            .unwrap_or_else(|e| panic!("redis quorum harness: {e}"))
    }

    locks_testkit::conformance_tests!(harness, time = real);
    locks_testkit::primitives_tests!(harness, time = real);
}
