//! The eviction-policy check (safety rule 1 of the design: nothing may silently delete a live
//! lease).
//!
//! Under any `maxmemory-policy` but `noeviction`, a server at `maxmemory` deletes keys to make
//! room, and every lock key has a ttl, so the `volatile-*` policies (the default of managed
//! services is `volatile-lru`) pick leases first: a second holder then gets in while the first
//! is still `Held`. So the policy is read at connect (`CONFIG GET maxmemory-policy`; if that
//! command is refused or unknown, the `maxmemory_policy` field of `INFO memory`) and anything
//! but `noeviction` is refused, as is a policy that cannot be read, unless the builder's
//! [`allow_eviction_policy(true)`](crate::RedisBackendBuilder::allow_eviction_policy) turns the
//! check off.
//!
//! **After a reconnection** (the command connection counts the moments it may have been
//! replaced, see [`connection`](crate::connection)) the next operation reads the policy again
//! before it runs its script. If the policy became unsafe (or unreadable), that operation and
//! every later one fail with a *permanent* [`BackendError`] whose source is
//! [`RedisBackendError::EvictionPolicy`] (or [`EvictionPolicyUnknown`]), each reading the
//! policy again first, until the server says `noeviction` again: then operations go through as
//! before. A renewal that fails this way leaves the lease `Unknown`, and it is lost at its
//! deadline unless the policy is fixed before then. A failure to *reach* the server during the
//! re-check is transient, like any dropped connection, and the re-check is tried again by the
//! next operation.
//!
//! A policy changed with `CONFIG SET` on a connection that stays up is not noticed until the
//! next reconnection.
//!
//! [`EvictionPolicyUnknown`]: RedisBackendError::EvictionPolicyUnknown

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use locks_core::BackendError;
use redis::{RedisError, Value};

use crate::connection::Connection;
use crate::error::{RedisBackendError, backend_error, is_transient};
use crate::functions::Calls;

/// The only policy that never deletes a key with a ttl before it expires.
const SAFE_POLICY: &str = "noeviction";

/// What reading the policy found.
enum Reading {
    /// The policy the server reported.
    Policy(String),
    /// Neither command answered with a policy: why, for the error message.
    Unreadable(String),
}

/// The reply to `cmd`, run on `conn` (on a cluster: on the node `node`, `host:port`).
async fn query<T: redis::FromRedisValue>(
    conn: &Arc<Connection>,
    cmd: redis::Cmd,
    node: Option<&str>,
) -> Result<T, RedisError> {
    conn.query_node(cmd, node).await
}

/// Read the server's `maxmemory-policy` (see [`read_node_policy`]). On a cluster, that of every
/// node the cluster client is connected to (the primaries): the first whose policy is not
/// `noeviction`, or cannot be read, decides (issue 12).
async fn read_policy(conn: &Arc<Connection>) -> Result<Reading, RedisError> {
    // Boxed: the futures of every operation nest this one; keep their layout shallow.
    let Some(nodes) = Box::pin(conn.cluster_nodes()).await? else {
        return Box::pin(read_node_policy(conn, None)).await;
    };
    for node in &nodes {
        match Box::pin(read_node_policy(conn, Some(node))).await? {
            Reading::Policy(policy) if is_safe(&policy) => {}
            Reading::Policy(policy) => return Ok(Reading::Policy(format!("{policy} (on {node})"))),
            Reading::Unreadable(why) => return Ok(Reading::Unreadable(format!("{node}: {why}"))),
        }
    }
    Ok(Reading::Policy(SAFE_POLICY.to_owned()))
}

/// Read one server's `maxmemory-policy`: `CONFIG GET`, and if the server refuses it (ACL,
/// renamed or disabled on managed services), `INFO memory`. A transport error (the server could
/// not be reached) is returned as such, for the caller to report as transient.
async fn read_node_policy(
    conn: &Arc<Connection>,
    node: Option<&str>,
) -> Result<Reading, RedisError> {
    let mut config_get = redis::cmd("CONFIG");
    config_get.arg("GET").arg("maxmemory-policy");
    let config = query::<Value>(conn, config_get, node).await;
    let config_failure = match config {
        Ok(value) => match from_config_reply(&value) {
            Some(policy) => return Ok(Reading::Policy(policy)),
            None => format!("CONFIG GET maxmemory-policy: no value in {value:?}"),
        },
        Err(e) if is_transient(&e) => return Err(e),
        Err(e) => format!("CONFIG GET maxmemory-policy: {e}"),
    };
    let mut info_memory = redis::cmd("INFO");
    info_memory.arg("memory");
    let info = query::<String>(conn, info_memory, node).await;
    let info_failure = match info {
        Ok(text) => match from_info(&text) {
            Some(policy) => return Ok(Reading::Policy(policy)),
            None => "INFO memory: no maxmemory_policy field".to_owned(),
        },
        Err(e) if is_transient(&e) => return Err(e),
        Err(e) => format!("INFO memory: {e}"),
    };
    Ok(Reading::Unreadable(format!(
        "{config_failure}; {info_failure}"
    )))
}

/// The policy in a `CONFIG GET` reply: `[name, value]` (RESP2) or `{name: value}` (RESP3).
fn from_config_reply(value: &Value) -> Option<String> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_owned),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let is_name = |v: &Value| text(v).is_some_and(|n| n.eq_ignore_ascii_case("maxmemory-policy"));
    match value {
        Value::Array(items) => items
            .chunks_exact(2)
            .find(|pair| is_name(&pair[0]))
            .and_then(|pair| text(&pair[1])),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(name, _)| is_name(name))
            .and_then(|(_, v)| text(v)),
        _ => None,
    }
}

/// The `maxmemory_policy` field of an `INFO memory` reply.
fn from_info(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        line.trim()
            .strip_prefix("maxmemory_policy:")
            .map(|policy| policy.trim().to_owned())
    })
}

fn is_safe(policy: &str) -> bool {
    policy.eq_ignore_ascii_case(SAFE_POLICY)
}

/// The eviction policy for a health report (see [`crate::health`]): `Ok(None)` when it cannot
/// be read; on a cluster, the first node's unsafe policy, with `(on host:port)`.
pub(crate) async fn current_policy(conn: &Arc<Connection>) -> Result<Option<String>, RedisError> {
    Ok(match read_policy(conn).await? {
        Reading::Policy(policy) => Some(policy),
        Reading::Unreadable(_) => None,
    })
}

/// Whether `policy` (as [`current_policy`] reports it) keeps every live lease.
pub(crate) fn is_safe_policy(policy: &str) -> bool {
    is_safe(policy)
}

/// The connect-time check: `Ok` for `noeviction`, else the typed refusal. A transport error is
/// returned as the Redis error, for the builder to classify like any connect failure.
pub(crate) async fn check_at_connect(
    conn: &Arc<Connection>,
    addr: &str,
) -> Result<Result<(), RedisBackendError>, RedisError> {
    Ok(match read_policy(conn).await? {
        Reading::Policy(policy) if is_safe(&policy) => Ok(()),
        Reading::Policy(policy) => Err(RedisBackendError::EvictionPolicy {
            addr: addr.to_owned(),
            policy,
        }),
        Reading::Unreadable(reason) => Err(RedisBackendError::EvictionPolicyUnknown {
            addr: addr.to_owned(),
            reason,
        }),
    })
}

/// Re-checks the policy after the command connection may have been replaced.
pub(crate) struct PolicyGate {
    /// Off with `allow_eviction_policy(true)`.
    enabled: bool,
    addr: String,
    /// The connection's [`reconnects`](Connection::reconnects) reading before the last check
    /// that found `noeviction`.
    checked: AtomicU64,
    /// One re-check at a time; operations arriving meanwhile wait for its outcome.
    checking: tokio::sync::Mutex<()>,
    /// How scripts run: `EVALSHA`, or `FCALL` of the library found at connect.
    calls: Calls,
}

impl PolicyGate {
    /// A gate whose last good check started at connection reading `checked` (`None`: the check
    /// is turned off).
    pub(crate) fn new(addr: String, checked: Option<u64>) -> Self {
        PolicyGate {
            enabled: checked.is_some(),
            addr,
            checked: AtomicU64::new(checked.unwrap_or(0)),
            checking: tokio::sync::Mutex::new(()),
            calls: Calls::Eval,
        }
    }

    /// The same gate, for a server whose function library `connect` checked: scripts run as
    /// `FCALL` (see [`functions`](crate::functions)).
    pub(crate) fn with_calls(mut self, calls: Calls) -> Self {
        self.calls = calls;
        self
    }

    /// How scripts run on this server.
    pub(crate) fn calls(&self) -> Calls {
        self.calls
    }

    /// `Ok` unless the connection may have been replaced since the last good check and the
    /// policy, read again now, is not `noeviction` (permanent error) or could not be read
    /// (permanent if refused, transient if the server could not be reached). `operation` names
    /// the operation in errors.
    pub(crate) async fn ensure(
        &self,
        conn: &Arc<Connection>,
        operation: &'static str,
    ) -> Result<(), BackendError> {
        if !self.enabled || self.checked.load(Ordering::Acquire) == conn.reconnects() {
            return Ok(());
        }
        let _one_at_a_time = self.checking.lock().await;
        let before = conn.reconnects();
        if self.checked.load(Ordering::Acquire) == before {
            return Ok(());
        }
        let refusal = match read_policy(conn).await {
            Ok(Reading::Policy(policy)) if is_safe(&policy) => {
                // Readings taken after `before` stay unequal: a reconnection during the check is
                // checked by the next operation.
                self.checked.store(before, Ordering::Release);
                return Ok(());
            }
            Ok(Reading::Policy(policy)) => RedisBackendError::EvictionPolicy {
                addr: self.addr.clone(),
                policy,
            },
            Ok(Reading::Unreadable(reason)) => RedisBackendError::EvictionPolicyUnknown {
                addr: self.addr.clone(),
                reason,
            },
            Err(e) => return Err(backend_error(operation, e)),
        };
        tracing::error!(
            addr = %self.addr,
            error = %refusal,
            "redis eviction policy re-checked after a reconnection: refusing lock operations"
        );
        Err(
            BackendError::permanent(format!("redis {operation} refused: {refusal}"))
                .with_source(refusal),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replies::tests::bulk;

    #[test]
    fn reads_config_replies_of_both_protocols() {
        let resp2 = Value::Array(vec![bulk("maxmemory-policy"), bulk("volatile-lru")]);
        assert_eq!(from_config_reply(&resp2).as_deref(), Some("volatile-lru"));
        let resp3 = Value::Map(vec![(bulk("maxmemory-policy"), bulk("noeviction"))]);
        assert_eq!(from_config_reply(&resp3).as_deref(), Some("noeviction"));
        assert_eq!(from_config_reply(&Value::Array(vec![])), None);
        assert_eq!(from_config_reply(&Value::Nil), None);
    }

    #[test]
    fn reads_the_info_field() {
        let info = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:allkeys-lru\r\nx:y\r\n";
        assert_eq!(from_info(info).as_deref(), Some("allkeys-lru"));
        assert_eq!(from_info("# Memory\r\nused_memory:1\r\n"), None);
    }

    #[test]
    fn only_noeviction_is_safe() {
        assert!(is_safe("noeviction"));
        assert!(is_safe("NoEviction"));
        for policy in [
            "volatile-lru",
            "allkeys-lru",
            "volatile-lfu",
            "allkeys-lfu",
            "volatile-random",
            "allkeys-random",
            "volatile-ttl",
            "",
        ] {
            assert!(!is_safe(policy), "{policy}");
        }
    }
}
