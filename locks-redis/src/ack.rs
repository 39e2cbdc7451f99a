//! Replica acknowledgement ([`RedisBackendBuilder::replica_ack`](crate::RedisBackendBuilder::replica_ack)):
//! an acquire, extend or renewal counts as done only once `WAIT min_replicas timeout`, sent on
//! the same connection right after the script, reports that many replicas have it.
//!
//! - `WAIT` covers every write sent on the connection before it, so it is sent on the
//!   connection that carried the script: the multiplexed command connection (one server,
//!   Sentinel), or, on a cluster, the connection to the primary that owns the key's slot. If
//!   the connection may have been replaced between the script and the `WAIT` (the backend
//!   counts reconnections), a `WAIT` on the new connection would prove nothing: that counts as
//!   not acknowledged.
//! - Not acknowledged (too few replicas, `WAIT` failed, or a reconnection): an **acquire** is
//!   released again (the release script, same token) and fails with a *transient*
//!   [`BackendError`] whose source is [`RedisBackendError::NotReplicated`]: the service retries
//!   it with a new token within the wait budget, and reports it when the budget is spent
//!   (`LockError::Timeout` for `acquire`, `LockError::Backend` for `try_acquire`). An
//!   **extend or renewal** fails with the same transient error, and the lease is `Unknown`
//!   (the ttl may or may not have moved): renewal keeps trying until the holder's deadline.
//! - Releases, inspections and force-releases are not waited for.
//!
//! `WAIT` blocks the connection it is sent on (Redis answers the commands behind it only after
//! it): on the shared multiplexed connection, every operation queued behind an unacknowledged
//! write waits up to the timeout. So the timeout must be shorter than the response timeout.

use std::sync::Arc;
use std::time::Duration;

use locks_core::backend::{Action, Operation, Outcome};
use locks_core::{AcquireResult, BackendError};
use redis::RedisResult;

use crate::connection::Connection;
use crate::counter::FenceCounterTtl;
use crate::dispatch::dispatch;
use crate::error::RedisBackendError;
use crate::keys::{self, LEASE};
use crate::policy::PolicyGate;
use crate::topology::Conn;

/// `WAIT min_replicas timeout` after every write that takes or extends a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplicaAck {
    /// How many replicas must acknowledge.
    pub(crate) min_replicas: u32,
    /// How long `WAIT` may block.
    pub(crate) timeout: Duration,
}

/// What a confirmation needs of the backend.
pub(crate) struct Store<'a> {
    pub(crate) conn: &'a Arc<Connection>,
    pub(crate) gate: &'a PolicyGate,
    pub(crate) counter: FenceCounterTtl,
}

impl ReplicaAck {
    /// `outcome` of `op` once enough replicas acknowledged it; see the [module docs](self).
    /// `seen` is the connection's reconnection count read before the script was sent.
    pub(crate) async fn confirm(
        &self,
        store: Store<'_>,
        op: Operation<'_>,
        outcome: Outcome,
        seen: u64,
    ) -> Result<Outcome, BackendError> {
        let token = match (op.action, &outcome) {
            (Action::TryAcquire { token, .. }, Outcome::Acquire(AcquireResult::Acquired(_))) => {
                Some(token)
            }
            (Action::Extend { .. }, Outcome::Done(true)) => None,
            _ => return Ok(outcome),
        };
        let acked = self.wait(store.conn, op).await;
        let replaced = store.conn.reconnects() != seen;
        let why = match acked {
            Ok(n) if n >= i64::from(self.min_replicas) && !replaced => return Ok(outcome),
            Ok(n) if replaced => format!(
                "{n} replicas acknowledged, but the connection may have been replaced since the \
                 write"
            ),
            Ok(n) => format!("{n} replicas acknowledged"),
            Err(e) => format!("WAIT failed: {e}"),
        };
        if let Some(token) = token {
            // Give the unacknowledged lease back, so nobody finds it taken by a token that
            // will never be used. A failure leaves it to expire (the token is retired).
            let release = Operation::new(op.key, op.kind, Action::Release { token });
            let released = Box::pin(dispatch(store.conn, store.gate, store.counter, release));
            if let Err(e) = released.await {
                tracing::debug!(error = %e, "releasing an unacknowledged lease failed");
            }
        }
        let e = RedisBackendError::NotReplicated {
            operation: op.name(),
            wanted: self.min_replicas,
            timeout: self.timeout,
            detail: why,
        };
        Err(BackendError::transient(e.to_string()).with_source(e))
    }

    /// `WAIT` on the connection that carried `op`'s script: the number of replicas.
    async fn wait(&self, conn: &Arc<Connection>, op: Operation<'_>) -> RedisResult<i64> {
        let ms = u64::try_from(self.timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.min_replicas).arg(ms);
        #[cfg(feature = "cluster")]
        let lease = keys::name(op.key, LEASE);
        #[cfg(not(feature = "cluster"))]
        let _ = (op, LEASE, keys::name);
        conn.run(|c| async move {
            match c {
                Conn::Single(mut c) => wait.query_async(&mut c).await,
                #[cfg(feature = "cluster")]
                Conn::Cluster(mut c) => {
                    // The node that owns the key's slot: the one that ran the script.
                    use redis::cluster_routing::{
                        Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
                    };
                    let route = Route::new(slot(lease.as_bytes()), SlotAddr::Master);
                    let routing =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                    let value = c.route_command(wait, routing).await?;
                    redis::from_redis_value(value).map_err(redis::RedisError::from)
                }
            }
        })
        .await
    }
}

/// The Redis Cluster hash slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key, modulo 16384.
#[cfg(feature = "cluster")]
fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(key) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use super::slot;

    /// Values from `CLUSTER KEYSLOT` of Redis 7.
    #[test]
    fn slots_match_redis() {
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"_lock:{payment:42}"), slot(b"payment:42"));
        assert_eq!(slot(b"_lock:{payment:42}:fence"), slot(b"payment:42"));
        assert_ne!(slot(b"{}x"), slot(b"x"));
    }
}
