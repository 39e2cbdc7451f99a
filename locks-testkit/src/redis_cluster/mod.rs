//! A local Redis Cluster for tests: 3 primaries and 3 replicas on free loopback ports, every
//! slot covered, gone on drop.
//!
//! [`RedisCluster::start`] starts six private `redis-server --cluster-enabled yes` processes
//! through the single-node fixture ([`RedisServer`], same binary search, same loud failures),
//! gives each primary a third of the 16384 slots (`CLUSTER ADDSLOTSRANGE`), joins them
//! (`CLUSTER MEET`), makes node `3 + i` the replica of primary `i` (`CLUSTER REPLICATE`), and
//! returns once every node says `cluster_state:ok` with all slots assigned and every replica's
//! link to its primary is up. Nodes time each other out after
//! [`NODE_TIMEOUT`], so a killed primary is replaced by its replica within a few seconds.
//!
//! The helpers change the topology the way operations and failures do: [`kill`](RedisCluster::kill)
//! and [`pause`](RedisCluster::pause) a node, [`failover`](RedisCluster::failover) a primary to
//! its replica, and migrate a slot step by step
//! ([`begin_migration`](RedisCluster::begin_migration),
//! [`move_keys`](RedisCluster::move_keys), [`finish_migration`](RedisCluster::finish_migration)),
//! so a test can contend a key while its slot moves.
//!
//! The fixture waits with real time: use it from a runtime whose clock is not paused. It always
//! starts private servers (`LOCKS_TEST_REDIS_URL` names single servers, not clusters).
//!
//! # Cancel safety
//!
//! Every async method only sends commands or signals and polls: dropping its future leaves the
//! topology wherever it got to (a half-done migration or failover stays half done, and the next
//! call sees it), and never leaks a process: the fixture kills every process it started when it
//! is dropped.
//!
//! ```no_run
//! use locks_testkit::redis_cluster::RedisCluster;
//!
//! # async fn demo() -> Result<(), locks_testkit::redis_server::FixtureError> {
//! let cluster = RedisCluster::start().await?;
//! println!("seed nodes: {:?}", cluster.urls());
//! let slot = cluster.slot_of("_lock:{payment:42}").await?;
//! let owner = cluster.primary_of_slot(slot).await?;
//! cluster.failover(owner).await?; // its replica takes over, without losing writes
//! # Ok(())
//! # }
//! ```

mod migrate;
mod setup;

use std::fmt;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisResult};

use crate::redis_server::{FixtureError, RedisServer};

/// How many primaries the cluster has (each with one replica).
pub const PRIMARIES: usize = 3;

/// The `cluster-node-timeout` of every node: how long a node may be unreachable before the
/// others count it as failed and its replica takes over.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long the fixture waits for the cluster to settle (start, failover, migration).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The pause between two polls of the cluster's state.
const POLL: Duration = Duration::from_millis(20);

/// A private Redis Cluster of [`PRIMARIES`] primaries and as many replicas. Dropping it kills
/// every node and removes their files.
pub struct RedisCluster {
    /// Nodes `0..PRIMARIES` started as primaries, node `PRIMARIES + i` as the replica of `i`.
    nodes: Vec<RedisServer>,
    /// Each node's cluster id, in the same order.
    ids: Vec<String>,
    /// How long `start` took.
    started_in: Duration,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("urls", &self.urls())
            .field("started_in", &self.started_in)
            .finish()
    }
}

/// A fixture error for step `step` of the cluster setup.
fn failed(step: &'static str, detail: impl fmt::Display) -> FixtureError {
    FixtureError::Topology {
        topology: "cluster",
        step,
        detail: detail.to_string(),
    }
}

impl RedisCluster {
    /// The URL of every node (`redis://127.0.0.1:PORT`), primaries first: any of them is a
    /// seed for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The nodes, in the order of [`urls`](Self::urls).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// How long [`start`](Self::start) took (six processes, slots, joins, replication).
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// A plain connection to node `node` (no cluster routing: it answers `MOVED` for slots it
    /// does not own).
    pub async fn connection(&self, node: usize) -> RedisResult<MultiplexedConnection> {
        self.node(node)?.connection().await
    }

    fn node(&self, node: usize) -> RedisResult<&RedisServer> {
        self.nodes.get(node).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "no such cluster node",
                format!("node {node} of {}", self.nodes.len()),
            ))
        })
    }

    /// `cmd`'s reply from node `node`.
    async fn query<T: FromRedisValue>(&self, node: usize, cmd: &redis::Cmd) -> RedisResult<T> {
        let mut conn = self.connection(node).await?;
        tokio::time::timeout(Duration::from_secs(5), cmd.query_async(&mut conn))
            .await
            .map_err(|_| {
                redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "cluster fixture: no reply within 5 s",
                ))
            })?
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub async fn slot_of(&self, key: &str) -> Result<u16, FixtureError> {
        let node = self.any_live_node()?;
        self.query(node, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))
            .await
            .map_err(|e| failed("CLUSTER KEYSLOT", e))
    }

    /// The node that serves `slot` as primary now, as a live node sees it (`CLUSTER SHARDS`).
    pub async fn primary_of_slot(&self, slot: u16) -> Result<usize, FixtureError> {
        let node = self.any_live_node()?;
        let slots: Vec<(u16, u16, Vec<redis::Value>)> = self
            .query::<Vec<redis::Value>>(node, redis::cmd("CLUSTER").arg("SLOTS"))
            .await
            .map_err(|e| failed("CLUSTER SLOTS", e))?
            .into_iter()
            .filter_map(|range| match range {
                redis::Value::Array(mut parts) if parts.len() >= 3 => {
                    let start = redis::from_redis_value::<u16>(parts.remove(0)).ok()?;
                    let end = redis::from_redis_value::<u16>(parts.remove(0)).ok()?;
                    Some((start, end, parts))
                }
                _ => None,
            })
            .collect();
        let (_, _, nodes) = slots
            .into_iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot))
            .ok_or_else(|| {
                failed(
                    "find a slot's primary",
                    format!("slot {slot} is not served"),
                )
            })?;
        let port = nodes
            .into_iter()
            .next()
            .and_then(|primary| match primary {
                redis::Value::Array(parts) => parts
                    .into_iter()
                    .nth(1)
                    .and_then(|p| redis::from_redis_value::<u16>(p).ok()),
                _ => None,
            })
            .ok_or_else(|| failed("find a slot's primary", "malformed CLUSTER SLOTS reply"))?;
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .ok_or_else(|| failed("find a slot's primary", format!("unknown port {port}")))
    }

    /// The node that replicates `primary` now (`CLUSTER REPLICAS`), if one does.
    pub async fn replica_of(&self, primary: usize) -> Result<Option<usize>, FixtureError> {
        let id = self.ids.get(primary).cloned().unwrap_or_default();
        let lines: Vec<String> = self
            .query(primary, redis::cmd("CLUSTER").arg("REPLICAS").arg(&id))
            .await
            .map_err(|e| failed("CLUSTER REPLICAS", e))?;
        Ok(lines.iter().find_map(|line| {
            let id = line.split_whitespace().next()?;
            let healthy = !line.contains("fail");
            self.ids.iter().position(|i| i == id).filter(|_| healthy)
        }))
    }

    /// Kills node `node` (SIGKILL, as a crash would) and waits until its port refuses
    /// connections. If it was a primary, its replica takes over after [`NODE_TIMEOUT`] and an
    /// election; [`wait_ok`](Self::wait_ok) waits for that.
    pub async fn kill(&mut self, node: usize) -> Result<(), FixtureError> {
        let server = self
            .nodes
            .get_mut(node)
            .ok_or_else(|| failed("kill a node", format!("no node {node}")))?;
        server.stop().await
    }

    /// Starts a node stopped by [`kill`](Self::kill) again on the same port, with its cluster
    /// configuration (`nodes.conf`) but no data: it rejoins the cluster, as the replica of
    /// whoever took over its slots. Waits until the cluster is settled with it.
    pub async fn restart(&mut self, node: usize) -> Result<(), FixtureError> {
        self.nodes
            .get_mut(node)
            .ok_or_else(|| failed("restart a node", format!("no node {node}")))?
            .restart()
            .await?;
        self.wait_ok().await
    }

    /// Pauses node `node` (SIGSTOP): it keeps its connections but answers nothing, like a hung
    /// process or a partition. [`resume`](Self::resume) undoes it.
    pub async fn pause(&self, node: usize) -> Result<(), FixtureError> {
        self.node(node)
            .map_err(|e| failed("pause a node", e))?
            .pause()
            .await
    }

    /// Resumes a node paused by [`pause`](Self::pause) (SIGCONT).
    pub async fn resume(&self, node: usize) -> Result<(), FixtureError> {
        self.node(node)
            .map_err(|e| failed("resume a node", e))?
            .resume()
            .await
    }

    /// Makes the replica of `primary` take over its slots with `CLUSTER FAILOVER` (the
    /// coordinated manual failover: the replica first catches up with the primary, so no
    /// acknowledged write is lost), and waits until the replica serves them. Returns the new
    /// primary.
    pub async fn failover(&self, primary: usize) -> Result<usize, FixtureError> {
        let replica = self
            .replica_of(primary)
            .await?
            .ok_or_else(|| failed("CLUSTER FAILOVER", format!("node {primary} has no replica")))?;
        let _: String = self
            .query(replica, redis::cmd("CLUSTER").arg("FAILOVER"))
            .await
            .map_err(|e| failed("CLUSTER FAILOVER", e))?;
        let role_changed = async {
            loop {
                let role: RedisResult<Vec<redis::Value>> =
                    self.query(replica, &redis::cmd("ROLE")).await;
                if let Ok(role) = role
                    && let Some(first) = role.into_iter().next()
                    && redis::from_redis_value::<String>(first).is_ok_and(|r| r == "master")
                {
                    return;
                }
                tokio::time::sleep(POLL).await;
            }
        };
        tokio::time::timeout(SETTLE_TIMEOUT, role_changed)
            .await
            .map_err(|_| failed("CLUSTER FAILOVER", "the replica never became primary"))?;
        self.wait_ok().await?;
        Ok(replica)
    }

    /// A live node (the first that answers `PING`).
    fn any_live_node(&self) -> Result<usize, FixtureError> {
        self.nodes
            .iter()
            .position(|n| n.pid().is_some())
            .ok_or_else(|| failed("find a live node", "every node is stopped"))
    }
}
