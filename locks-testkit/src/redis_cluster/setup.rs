//! Starting the cluster: six nodes, slots, joins, replicas, and the wait until it is settled.

use std::time::{Duration, Instant};

use futures::future::try_join_all;

use super::{NODE_TIMEOUT, POLL, PRIMARIES, RedisCluster, SETTLE_TIMEOUT, failed};
use crate::redis_server::{FixtureError, RedisServer, RedisServerConfig};

/// The number of hash slots of a Redis Cluster.
pub(super) const SLOTS: u16 = 16384;

impl RedisCluster {
    /// Starts [`PRIMARIES`] primaries and as many replicas (see the [module docs](super)) and
    /// returns once the cluster serves every slot and every replica is in sync. Fails loudly
    /// ([`FixtureError`]) when there is no `redis-server` (version 7 or newer: the fixture uses
    /// `CLUSTER ADDSLOTSRANGE`), or when the cluster does not settle within
    /// [`SETTLE_TIMEOUT`].
    pub async fn start() -> Result<RedisCluster, FixtureError> {
        let began = Instant::now();
        let node_timeout = NODE_TIMEOUT.as_millis().to_string();
        let cfg = RedisServerConfig::new().local_only().args([
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            &node_timeout,
            // A replica whose primary died always takes over, however stale (the tests look at
            // what a failover loses); and it stays with its primary.
            "--cluster-replica-validity-factor",
            "0",
            "--cluster-allow-replica-migration",
            "no",
            // Replicas sync at once (Redis 7 waits 5 s by default to batch diskless syncs).
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let nodes =
            try_join_all((0..2 * PRIMARIES).map(|_| RedisServer::start_with(cfg.clone()))).await?;
        let mut cluster = RedisCluster {
            nodes,
            ids: Vec::new(),
            started_in: Duration::ZERO,
        };
        cluster.ids = cluster.read_ids().await?;
        cluster.assign_slots().await?;
        cluster.join().await?;
        cluster.attach_replicas().await?;
        cluster.wait_ok().await?;
        cluster.started_in = began.elapsed();
        Ok(cluster)
    }

    async fn read_ids(&self) -> Result<Vec<String>, FixtureError> {
        let mut ids = Vec::with_capacity(self.nodes.len());
        for node in 0..self.nodes.len() {
            let id: String = self
                .query(node, redis::cmd("CLUSTER").arg("MYID"))
                .await
                .map_err(|e| failed("CLUSTER MYID", e))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// A third of the slots to each primary, each with its own config epoch (no collision to
    /// resolve after the join).
    async fn assign_slots(&self) -> Result<(), FixtureError> {
        let per = SLOTS / PRIMARIES as u16 + 1;
        for primary in 0..PRIMARIES {
            let start = primary as u16 * per;
            let end = ((primary as u16 + 1) * per).min(SLOTS) - 1;
            let _: () = self
                .query(
                    primary,
                    redis::cmd("CLUSTER")
                        .arg("ADDSLOTSRANGE")
                        .arg(start)
                        .arg(end),
                )
                .await
                .map_err(|e| failed("CLUSTER ADDSLOTSRANGE", e))?;
            let _: () = self
                .query(
                    primary,
                    redis::cmd("CLUSTER")
                        .arg("SET-CONFIG-EPOCH")
                        .arg(primary + 1),
                )
                .await
                .map_err(|e| failed("CLUSTER SET-CONFIG-EPOCH", e))?;
        }
        Ok(())
    }

    /// Every node meets node 0; gossip does the rest.
    async fn join(&self) -> Result<(), FixtureError> {
        let first = self.nodes[0].port();
        for node in 1..self.nodes.len() {
            let _: () = self
                .query(
                    node,
                    redis::cmd("CLUSTER")
                        .arg("MEET")
                        .arg("127.0.0.1")
                        .arg(first),
                )
                .await
                .map_err(|e| failed("CLUSTER MEET", e))?;
        }
        Ok(())
    }

    /// Node `PRIMARIES + i` replicates primary `i`, once it knows that primary.
    async fn attach_replicas(&self) -> Result<(), FixtureError> {
        for primary in 0..PRIMARIES {
            let replica = PRIMARIES + primary;
            let id = &self.ids[primary];
            let deadline = Instant::now() + SETTLE_TIMEOUT;
            loop {
                let replicated: redis::RedisResult<()> = self
                    .query(replica, redis::cmd("CLUSTER").arg("REPLICATE").arg(id))
                    .await;
                match replicated {
                    Ok(()) => break,
                    // "Unknown node": the gossip has not told it yet.
                    Err(_) if Instant::now() < deadline => tokio::time::sleep(POLL).await,
                    Err(e) => return Err(failed("CLUSTER REPLICATE", e)),
                }
            }
        }
        Ok(())
    }

    /// Waits until every live node says `cluster_state:ok` with every slot assigned and
    /// working, every node knows every other, and every live replica's link to its primary is
    /// up (so `WAIT` and a coordinated failover work).
    pub async fn wait_ok(&self) -> Result<(), FixtureError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let last = match self.settled().await {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(failed(
                    "waiting for the cluster to settle",
                    format!("not settled after {SETTLE_TIMEOUT:?}: {last}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `Ok` when settled, else what is not yet.
    async fn settled(&self) -> Result<(), String> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|&n| self.nodes[n].pid().is_some())
            .collect();
        for &node in &live {
            let info: String = self
                .query(node, redis::cmd("CLUSTER").arg("INFO"))
                .await
                .map_err(|e| format!("node {node}: CLUSTER INFO: {e}"))?;
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                    .unwrap_or("")
                    .to_owned()
            };
            let slots = SLOTS.to_string();
            if field("cluster_state") != "ok"
                || field("cluster_slots_assigned") != slots
                || field("cluster_slots_ok") != slots
            {
                return Err(format!("node {node}: {}", info.replace("\r\n", " ")));
            }
            if field("cluster_known_nodes") != self.nodes.len().to_string() {
                return Err(format!(
                    "node {node} knows {} nodes",
                    field("cluster_known_nodes")
                ));
            }
            let replication: String = self
                .query(node, redis::cmd("INFO").arg("replication"))
                .await
                .map_err(|e| format!("node {node}: INFO replication: {e}"))?;
            if replication.contains("role:slave") && !replication.contains("master_link_status:up")
            {
                return Err(format!("node {node}: replica link not up"));
            }
        }
        Ok(())
    }
}
