//! The command connection: a [`ConnectionManager`] (multiplexed, reconnects after a dropped
//! connection), set up without retries and with connect and response timeouts, and retired
//! after a response timeout.
//!
//! The redis crate matches replies to requests in the order they were sent, and keeps a
//! connection after a response timeout. A request lost on a connection that stays open (a
//! middlebox discarding bytes) would shift every later reply to the wrong request, so a
//! response timeout marks the connection `broken`: no later command is sent on it, and a new
//! connection manager (same client, same configuration) replaces it, made in the background
//! and awaited by the next command (at most the connect timeout; if it cannot be made, that
//! command fails transiently and the one after it tries again).
//!
//! The connection also counts the moments it may have been replaced by another one (possibly
//! to another server, or to one whose configuration changed), so that server facts checked at
//! connect — the eviction policy ([`policy`](crate::policy)) — are checked again: a command
//! that failed on the connection (I/O error, dropped, refused, timed out: the manager
//! reconnects after each), a replacement after a response timeout, and, on RESP3 connections,
//! the manager's own silent reconnection after a disconnection push.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{PushInfo, PushKind, RedisError, RedisResult};

use crate::topology::{Conn, Source};

/// The shared command connection of a backend and its clones.
pub(crate) struct Connection {
    source: Arc<Source>,
    /// How the connection is made (and remade).
    config: ConnectionManagerConfig,
    connect_timeout: Duration,
    /// The server address, for logs.
    addr: String,
    slot: RwLock<Slot>,
    /// Held while a replacement connection is being made: one attempt at a time.
    reconnecting: tokio::sync::Mutex<()>,
    /// How many times the connection may have been replaced (see the module docs).
    reconnects: Arc<AtomicU64>,
}

/// The current connection. The `generation` tells whether a timed-out command used the current
/// connection (N concurrent timeouts replace it once); `attempts` counts reconnection attempts,
/// so commands waiting for one attempt do not each start another after it failed.
struct Slot {
    conn: Conn,
    generation: u64,
    broken: bool,
    attempts: u64,
}

/// The connection manager's configuration. No retries inside it: a dropped connection fails the
/// command (transient) and reconnects on the next one; the service decides about retrying.
///
/// On RESP3 the manager also reconnects by itself when the server closes the connection (a
/// disconnection push), without failing a command: a push handler counts those reconnections.
/// (RESP2 connections get no pushes; there a reconnection always follows a failed command.)
fn manager_config(
    resp3: bool,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnects: &Arc<AtomicU64>,
) -> ConnectionManagerConfig {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(0);
    if !resp3 {
        return config;
    }
    let reconnects = Arc::clone(reconnects);
    config.set_push_sender(move |push: PushInfo| {
        if push.kind == PushKind::Disconnection {
            reconnects.fetch_add(1, Ordering::AcqRel);
        }
        Ok::<(), std::convert::Infallible>(())
    })
}

/// Whether the connection manager replaces its connection after this error.
fn drops_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// Whether a connection that got this error must be replaced by one to the primary named now
/// (Sentinel): it failed (the node may be gone), or the node it talks to was demoted.
fn primary_may_have_moved(e: &RedisError) -> bool {
    drops_connection(e) || e.code() == Some("READONLY")
}

impl Connection {
    /// Connect (no timeout of its own: the caller bounds it by the connect timeout). `resp3`:
    /// whether the connections speak RESP3 (then the manager's silent reconnections are
    /// counted through its push handler).
    pub(crate) async fn open(
        source: Arc<Source>,
        addr: String,
        resp3: bool,
        (connect_timeout, response_timeout): (Duration, Duration),
    ) -> RedisResult<Arc<Connection>> {
        let reconnects = Arc::new(AtomicU64::new(0));
        let config = manager_config(resp3, connect_timeout, response_timeout, &reconnects);
        let conn = source.open(&config).await?;
        Ok(Arc::new(Connection {
            source,
            config,
            connect_timeout,
            addr,
            slot: RwLock::new(Slot {
                conn,
                generation: 0,
                broken: false,
                attempts: 0,
            }),
            reconnecting: tokio::sync::Mutex::new(()),
            reconnects,
        }))
    }

    /// A number that changes whenever the connection may have been replaced since it was last
    /// read (compare two readings; the value itself means nothing).
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Acquire)
    }

    /// The reply to `cmd`: on the current connection, or on a cluster on node `node`
    /// (`host:port`, one of [`cluster_nodes`](Self::cluster_nodes)); `None`: wherever the
    /// connection routes it.
    pub(crate) async fn query_node<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        cmd: redis::Cmd,
        node: Option<&str>,
    ) -> RedisResult<T> {
        let node = node.map(str::to_owned);
        self.run(|c| async move {
            match (c, node) {
                #[cfg(feature = "cluster")]
                (Conn::Cluster(mut c), Some(node)) => {
                    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                    let (host, port) = node.rsplit_once(':').unwrap_or((node.as_str(), ""));
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.to_owned(),
                        port: port.parse().unwrap_or(0),
                    });
                    let value = c.route_command(cmd, routing).await?;
                    Ok(redis::from_redis_value(value)?)
                }
                (mut c, _) => cmd.query_async::<T>(&mut c).await,
            }
        })
        .await
    }

    /// On a cluster, the address (`host:port`) of every node the client knows; `None` for one
    /// server.
    pub(crate) async fn cluster_nodes(self: &Arc<Self>) -> RedisResult<Option<Vec<String>>> {
        if !self.source.is_cluster() {
            return Ok(None);
        }
        self.run(|c| async move {
            match c {
                #[cfg(feature = "cluster")]
                Conn::Cluster(mut c) => {
                    use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                    let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None));
                    let pings = c.route_command(redis::cmd("PING"), routing).await?;
                    let mut nodes: Vec<String> = match pings {
                        redis::Value::Map(pairs) => pairs
                            .into_iter()
                            .filter_map(|(addr, _)| redis::from_redis_value::<String>(addr).ok())
                            .collect(),
                        _ => Vec::new(),
                    };
                    nodes.sort();
                    Ok(Some(nodes))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    /// Run one command on the current connection. A response timeout retires the connection it
    /// was sent on and starts a replacement in the background; the command itself fails with
    /// the (transient) timeout error. Behind Sentinels, so do an error that dropped the
    /// connection and `READONLY` (the replacement goes to the primary named now).
    pub(crate) async fn run<T, F, Fut>(self: &Arc<Self>, command: F) -> RedisResult<T>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (conn, generation) = self.current().await?;
        let e = match command(conn).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if drops_connection(&e) {
            self.reconnects.fetch_add(1, Ordering::AcqRel);
        }
        let replace =
            e.is_timeout() || (self.source.follows_primary() && primary_may_have_moved(&e));
        if replace && let Some(seen_attempts) = self.mark_broken(generation) {
            let this = Arc::clone(self);
            tokio::spawn(async move {
                // A failure leaves the connection marked: the next command tries again.
                let _ = this.reconnect(seen_attempts).await;
            });
        }
        Err(e)
    }

    fn read_slot(&self) -> RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_slot(&self) -> RwLockWriteGuard<'_, Slot> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current connection and its generation; reconnects first if the last one broke.
    async fn current(&self) -> RedisResult<(Conn, u64)> {
        let seen_attempts = {
            let slot = self.read_slot();
            if !slot.broken {
                return Ok((slot.conn.clone(), slot.generation));
            }
            slot.attempts
        };
        self.reconnect(seen_attempts).await
    }

    /// A command that used connection `generation` timed out: mark it broken if it is still
    /// the current one. Returns the attempt count to reconnect from, if this call marked it.
    fn mark_broken(&self, generation: u64) -> Option<u64> {
        let mut slot = self.write_slot();
        if slot.generation != generation || slot.broken {
            return None;
        }
        slot.broken = true;
        tracing::warn!(
            addr = %self.addr,
            "redis command timed out, or its server may no longer be the primary: replacing \
             the command connection"
        );
        Some(slot.attempts)
    }

    /// Replace the broken connection, unless another attempt happened since `seen_attempts`
    /// (then its outcome stands). Bounded by the connect timeout. On failure the old
    /// connection stays marked broken, so the next command tries again.
    async fn reconnect(&self, seen_attempts: u64) -> RedisResult<(Conn, u64)> {
        let _one_at_a_time = self.reconnecting.lock().await;
        {
            let slot = self.read_slot();
            if !slot.broken {
                return Ok((slot.conn.clone(), slot.generation));
            }
            if slot.attempts != seen_attempts {
                return Err(io_error(
                    std::io::ErrorKind::NotConnected,
                    "reconnecting after a response timeout failed",
                ));
            }
        }
        let made = tokio::time::timeout(self.connect_timeout, self.source.open(&self.config)).await;
        let mut slot = self.write_slot();
        slot.attempts = slot.attempts.wrapping_add(1);
        match made {
            Ok(Ok(conn)) => {
                slot.conn = conn.clone();
                slot.generation = slot.generation.wrapping_add(1);
                slot.broken = false;
                self.reconnects.fetch_add(1, Ordering::AcqRel);
                tracing::info!(addr = %self.addr, "redis command connection replaced");
                Ok((conn, slot.generation))
            }
            Ok(Err(e)) => {
                tracing::warn!(addr = %self.addr, error = %e, "redis reconnection failed");
                Err(e)
            }
            Err(_) => {
                tracing::warn!(addr = %self.addr, "redis reconnection timed out");
                Err(io_error(
                    std::io::ErrorKind::TimedOut,
                    "reconnecting after a response timeout timed out",
                ))
            }
        }
    }
}

/// A transient I/O error (`error::is_transient` holds for it).
fn io_error(kind: std::io::ErrorKind, message: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(kind, message))
}
