//! [`HealthCheck`] for Redis: what `locks health` prints and a readiness probe reads.
//!
//! One `PING` (timed), `INFO server` (version), `INFO memory` (used and max memory), the
//! eviction policy as the connect-time check reads it (`CONFIG GET maxmemory-policy`, else
//! `INFO memory`; on a cluster every node), `INFO replication` (role, connected replicas, link
//! to the primary) and `TIME` against this host's clock. A section the server refuses (an ACL
//! user without `INFO` or `CONFIG`) leaves its facts `None`; only a server that cannot be
//! reached is an error. On a cluster, the facts but the policy come from the node the client
//! routes each command to.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use locks_core::health::{BackendHealth, HealthCheck, Replication, clock_offset};
use locks_core::{BackendError, LockBackend};
use redis::RedisError;

use crate::backend::RedisBackend;
use crate::connection::Connection;
use crate::error::{backend_error, is_transient};
use crate::policy::{current_policy, is_safe_policy};

/// The facts of the server behind `backend`.
///
/// ```no_run
/// use locks_core::{HealthCheck, LockService};
/// use locks_redis::RedisBackend;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = RedisBackend::connect("redis://127.0.0.1:6379").await?;
/// let health = backend.health().await?;
/// println!("redis {:?}, policy {:?}", health.server_version, health.eviction_policy);
/// // Or through the service, for a readiness probe:
/// let locks = LockService::builder_with_health(backend).build()?;
/// assert!(locks.health().await?.is_healthy());
/// # Ok(()) }
/// ```
#[async_trait]
impl HealthCheck for RedisBackend {
    async fn health(&self) -> Result<BackendHealth, BackendError> {
        let conn = self.connection();
        let fail = |e: RedisError| backend_error("health", e);
        let started = Instant::now();
        conn.query_node::<String>(redis::cmd("PING"), None)
            .await
            .map_err(fail)?;
        let mut health = BackendHealth::new(self.name(), started.elapsed());
        health.address = Some(self.addr().to_owned());

        let server = info(conn, "server").await.map_err(fail)?;
        health.server_version = server.as_deref().and_then(|t| field(t, "redis_version"));

        let memory = info(conn, "memory").await.map_err(fail)?;
        let number = |name| memory.as_deref().and_then(|t| field(t, name)?.parse().ok());
        health.used_memory = number("used_memory");
        health.max_memory = number("maxmemory");

        let policy = current_policy(conn).await.map_err(fail)?;
        health.may_evict = policy.as_deref().map(|p| !is_safe_policy(p));
        health.eviction_policy = policy;

        let replication = info(conn, "replication").await.map_err(fail)?;
        health.replication = replication.as_deref().and_then(replication_state);

        health.clock_offset = store_offset(conn).await.map_err(fail)?;
        Ok(health)
    }
}

/// `INFO section`; `Ok(None)` when the server refuses it (ACL, a renamed command).
async fn info(conn: &Arc<Connection>, section: &str) -> Result<Option<String>, RedisError> {
    let mut cmd = redis::cmd("INFO");
    cmd.arg(section);
    refused_is_none(conn.query_node::<String>(cmd, None).await)
}

/// The store's clock minus this host's, from `TIME`; `Ok(None)` when `TIME` is refused.
async fn store_offset(
    conn: &Arc<Connection>,
) -> Result<Option<locks_core::ClockOffset>, RedisError> {
    let sent = SystemTime::now();
    let time = conn
        .query_node::<(i64, i64)>(redis::cmd("TIME"), None)
        .await;
    let received = SystemTime::now();
    Ok(refused_is_none(time)?.and_then(|(secs, micros)| {
        let store = secs.checked_mul(1_000_000)?.checked_add(micros)?;
        clock_offset(store, sent, received)
    }))
}

fn refused_is_none<T>(reply: Result<T, RedisError>) -> Result<Option<T>, RedisError> {
    match reply {
        Ok(value) => Ok(Some(value)),
        Err(e) if is_transient(&e) => Err(e),
        Err(_) => Ok(None),
    }
}

/// The value of `name:` in an `INFO` reply.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == name).then(|| value.trim().to_owned())
    })
}

/// Role, connected replicas (on a primary) and the primary link (on a replica).
fn replication_state(text: &str) -> Option<Replication> {
    let mut state = Replication::new(field(text, "role")?);
    state.connected_replicas = field(text, "connected_slaves").and_then(|n| n.parse().ok());
    state.link_up = field(text, "master_link_status").map(|s| s == "up");
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_info_fields_and_replication() {
        let text =
            "# Replication\r\nrole:slave\r\nmaster_link_status:down\r\nconnected_slaves:0\r\n";
        let state = replication_state(text);
        assert_eq!(state.as_ref().map(|s| s.role.as_str()), Some("slave"));
        assert_eq!(state.as_ref().and_then(|s| s.link_up), Some(false));
        assert_eq!(state.and_then(|s| s.connected_replicas), Some(0));
        assert_eq!(field("a:1\r\nab:2\r\n", "ab").as_deref(), Some("2"));
        assert_eq!(field("a:1\r\n", "b"), None);
        assert!(replication_state("# Replication\r\n").is_none());
    }
}
