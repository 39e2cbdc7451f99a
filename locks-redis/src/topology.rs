//! Where the command and subscription connections go: one server, the primary a set of
//! Sentinels names (feature `sentinel`), or a Redis Cluster (feature `cluster`); and [`Conn`],
//! the command connection of either kind behind one [`ConnectionLike`].
//!
//! - **Single**: a [`ConnectionManager`] on the client's address (it reconnects to the same
//!   address).
//! - **Sentinel**: the Sentinels are asked for the current primary (`SENTINEL
//!   GET-MASTER-ADDR-BY-NAME`, then `ROLE` on that node, by the redis crate) each time a
//!   connection is made, so a replacement connection follows a failover. The command
//!   connection is replaced after any error that drops it, after a response timeout, and after
//!   `READONLY` (the node it talks to was demoted), see [`connection`](crate::connection).
//! - **Cluster**: the redis crate's async [`ClusterConnection`]: it routes each script to the
//!   node that owns its keys' slot (every key of a lock shares the `{name}` hash tag), follows
//!   `MOVED` and `ASK` redirections and refreshes its slot map by itself.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[cfg(feature = "cluster")]
use redis::cluster::ClusterClient;
#[cfg(feature = "cluster")]
use redis::cluster_async::ClusterConnection;
#[cfg(feature = "sentinel")]
use redis::sentinel::SentinelClient;

/// Where the connections of a backend go (one per backend: the size of its variants does not
/// matter).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Source {
    /// One server.
    Single(Client),
    /// The primary named by a set of Sentinels.
    #[cfg(feature = "sentinel")]
    Sentinel(Box<tokio::sync::Mutex<SentinelClient>>),
    /// A Redis Cluster.
    #[cfg(feature = "cluster")]
    Cluster(ClusterClient),
}

impl Source {
    /// Whether this is a cluster (sharded pub/sub, `WAIT` routed by slot).
    pub(crate) fn is_cluster(&self) -> bool {
        #[cfg(feature = "cluster")]
        if let Source::Cluster(_) = self {
            return true;
        }
        false
    }

    /// Whether the server behind a connection may change (a Sentinel failover): then a
    /// connection that failed, or talks to a demoted primary, is replaced with one to the
    /// primary named now.
    pub(crate) fn follows_primary(&self) -> bool {
        #[cfg(feature = "sentinel")]
        if let Source::Sentinel(_) = self {
            return true;
        }
        false
    }

    /// A client of the server to talk to now: the single server, or the primary the Sentinels
    /// name now. `None` for a cluster (it has no single server).
    pub(crate) async fn primary_client(&self) -> Option<RedisResult<Client>> {
        match self {
            Source::Single(client) => Some(Ok(client.clone())),
            #[cfg(feature = "sentinel")]
            Source::Sentinel(sentinel) => Some(sentinel.lock().await.async_get_client().await),
            #[cfg(feature = "cluster")]
            Source::Cluster(_) => None,
        }
    }

    /// A new command connection.
    pub(crate) async fn open(&self, config: &ConnectionManagerConfig) -> RedisResult<Conn> {
        #[cfg(feature = "cluster")]
        if let Source::Cluster(client) = self {
            return client.get_async_connection().await.map(Conn::Cluster);
        }
        let client = match self.primary_client().await {
            Some(client) => client?,
            None => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "no server",
                )));
            }
        };
        ConnectionManager::new_with_config(client, config.clone())
            .await
            .map(Conn::Single)
    }
}

/// A command connection: to one server, or to a cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server (or the primary a Sentinel named).
    Single(ConnectionManager),
    /// A cluster.
    #[cfg(feature = "cluster")]
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            #[cfg(feature = "cluster")]
            Conn::Cluster(c) => c.get_db(),
        }
    }
}
