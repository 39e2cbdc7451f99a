//! Helpers shared by the integration tests that run against a private `redis-server`
//! (`mod common;` in each test file that uses them).

// Each test binary compiles this module and uses only some of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use locks_core::LockKey;
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

/// Bound for anything that should happen "at once" in real time.
pub const SOON: Duration = Duration::from_secs(5);

/// `fut`, bounded by [`SOON`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    within_for(SOON, what, fut).await
}

/// `fut`, bounded by `limit`.
pub async fn within_for<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {limit:?}"))
}

/// A private server (never an external one: the tests restart it, change its limits, its
/// users and its script cache), started with the extra `args`.
pub async fn private_server(args: &[&str]) -> RedisServer {
    RedisServer::start_with(
        RedisServerConfig::new()
            .local_only()
            .args(args.iter().copied()),
    )
    .await
    .unwrap_or_else(|e| panic!("redis fixture: {e}"))
}

/// `name` under the default prefix.
pub fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).unwrap_or_else(|e| panic!("{e}"))
}

/// How many keys the server holds (`DBSIZE`).
pub async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("DBSIZE: {e}"))
}

/// The number `field` of the `INFO` section `section` (`INFO clients`: `connected_clients`).
pub async fn info_field(conn: &mut MultiplexedConnection, section: &str, field: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info:?}"))
}
