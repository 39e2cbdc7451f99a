//! Redis beyond one node, on private servers of the testkit fixtures, through the lock
//! service: a Redis Cluster (3 primaries + 3 replicas) beside the single node, uncontended and
//! contended; `replica_ack` beside the same primary without it (a primary with 2 replicas that
//! replicate from it directly, and the cluster); a primary found through Sentinel beside the
//! same primary addressed directly. Every row is informational (no target).

use std::sync::Arc;
use std::time::{Duration, Instant};

use locks_core::{LockBackend, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis;
use locks_testkit::redis_cluster::RedisCluster;
use locks_testkit::redis_sentinel::{MASTER_NAME, RedisSentinel, SENTINELS};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

use super::quorum::{WORKERS, contended, interleaved};
use crate::table::{Row, Table, Verdict, micros, rate, times};
use crate::{BoxError, Config, Result};

/// The `WAIT` timeout of every `replica_ack` row.
const ACK_TIMEOUT: Duration = Duration::from_millis(100);
/// Replicas of the directly replicated primary.
const REPLICAS: usize = 2;
/// How long the replicas may take to sync with their primary.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// A primary and [`REPLICAS`] replicas that replicate from it directly (the Sentinel fixture's
/// replicas go through a fault proxy, which would add a hop to every `WAIT`).
struct Replicated {
    primary: RedisServer,
    _replicas: Vec<RedisServer>,
}

impl Replicated {
    /// Starts the servers and returns once every replica is online.
    async fn start() -> Result<Replicated> {
        // Replicas sync at once (Redis 7 waits 5 s by default to batch diskless syncs).
        let primary = RedisServer::start_with(
            RedisServerConfig::new()
                .local_only()
                .args(["--repl-diskless-sync-delay", "0"]),
        )
        .await?;
        let port = primary.port().to_string();
        let replica =
            RedisServerConfig::new()
                .local_only()
                .args(["--replicaof", "127.0.0.1", &port]);
        let replicas = futures::future::try_join_all(
            (0..REPLICAS).map(|_| RedisServer::start_with(replica.clone())),
        )
        .await?;
        let mut conn = primary.connection().await?;
        let deadline = Instant::now() + SYNC_TIMEOUT;
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await?;
            let online = info
                .lines()
                .filter(|l| l.starts_with("slave") && l.contains("state=online"))
                .count();
            if online == REPLICAS {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{online} of {REPLICAS} replicas online after {SYNC_TIMEOUT:?}:\n{info}"
                )
                .into());
            }
            // No event to wait on: the server's replication state is polled, as the
            // fixtures do.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Replicated {
            primary,
            _replicas: replicas,
        })
    }
}

/// A row comparing sequential acquire+release figures (cycles/s and p50 cycle time).
fn sequential_row(
    figure: String,
    ours: (f64, Duration),
    reference: &str,
    theirs: (f64, Duration),
) -> Row {
    Row {
        figure,
        runtime: "multi-thread",
        locks: format!("{} (p50 {})", rate(ours.0), micros(ours.1)),
        reference: format!("{reference}: {} (p50 {})", rate(theirs.0), micros(theirs.1)),
        ratio: times(ours.0 / theirs.0),
        target: String::new(),
        verdict: Verdict::Info,
    }
}

/// Measures `ours` beside `theirs` (interleaved) and pushes the row.
async fn compare(
    table: &mut Table,
    figure: String,
    ours: &LockService,
    (reference, theirs): (&str, &LockService),
    key: &str,
    cfg: &Config,
) -> Result<()> {
    // Warm-up: scripts and connections.
    for svc in [theirs, ours] {
        svc.acquire(key).await?.release().await?;
    }
    let [base, measured] = interleaved([theirs, ours], key, cfg).await?;
    table.push(sequential_row(figure, measured, reference, base));
    Ok(())
}

/// The cluster rows: every fixture is started here (at once), the single node at `url` is the
/// reference of the cluster rows.
pub async fn run(url: &str, cfg: &Config, table: &mut Table) -> Result<()> {
    let (cluster, replicated, sentinel) = tokio::try_join!(
        async { Ok::<_, BoxError>(RedisCluster::start().await?) },
        Replicated::start(),
        async { Ok::<_, BoxError>(RedisSentinel::start().await?) },
    )?;
    let key = format!("{}:cluster", cfg.run_id);
    let cluster_backend = || RedisBackend::cluster_builder(cluster.urls());

    // The cluster beside the single node.
    let single = LockService::new(RedisBackend::connect(url).await?)?;
    let on_cluster = LockService::new(cluster_backend().connect().await?)?;
    compare(
        table,
        "cluster of 3+3: sequential acquire+release".into(),
        &on_cluster,
        ("single node", &single),
        &key,
        cfg,
    )
    .await?;
    single.shutdown().await;

    let mut single_nodes: Vec<Arc<dyn LockBackend>> = Vec::new();
    let mut clusters: Vec<Arc<dyn LockBackend>> = Vec::new();
    for _ in 0..WORKERS {
        single_nodes.push(Arc::new(RedisBackend::connect(url).await?));
        clusters.push(Arc::new(cluster_backend().connect().await?));
    }
    let contended_key = format!("{key}:contended");
    let (s_ops, s_wait) = contended(single_nodes, &contended_key, cfg.handoff).await?;
    let (c_ops, c_wait) = contended(clusters, &contended_key, cfg.handoff).await?;
    table.push(Row {
        figure: format!("cluster of 3+3: {WORKERS} workers on one key, critical sections/s"),
        runtime: "multi-thread",
        locks: format!("{} (wait p50 {})", rate(c_ops), micros(c_wait)),
        reference: format!("single node: {} (wait p50 {})", rate(s_ops), micros(s_wait)),
        ratio: times(c_ops / s_ops),
        target: String::new(),
        verdict: Verdict::Info,
    });

    let cluster_ack = LockService::new(
        cluster_backend()
            .replica_ack(1, ACK_TIMEOUT)
            .connect()
            .await?,
    )?;
    compare(
        table,
        format!("cluster of 3+3: replica_ack(1, {ACK_TIMEOUT:?}), sequential"),
        &cluster_ack,
        ("same cluster, no ack", &on_cluster),
        &key,
        cfg,
    )
    .await?;
    cluster_ack.shutdown().await;
    on_cluster.shutdown().await;
    drop(cluster);

    // Replica acknowledgement beside the same primary without it.
    let primary_url = replicated.primary.url();
    let no_ack = LockService::new(RedisBackend::connect(&primary_url).await?)?;
    for n in [1, 2] {
        let acked = LockService::new(
            RedisBackend::builder(primary_url.as_str())
                .replica_ack(n, ACK_TIMEOUT)
                .connect()
                .await?,
        )?;
        compare(
            table,
            format!("primary + {REPLICAS} replicas: replica_ack({n}, {ACK_TIMEOUT:?}), sequential"),
            &acked,
            ("same primary, no ack", &no_ack),
            &key,
            cfg,
        )
        .await?;
        acked.shutdown().await;
    }
    no_ack.shutdown().await;
    drop(replicated);

    // The primary found through the Sentinels beside the same primary addressed directly.
    let primary = sentinel.primary().await?;
    let direct = LockService::new(RedisBackend::connect(&sentinel.node_urls()[primary]).await?)?;
    let through = LockService::new(
        RedisBackend::sentinel_builder(sentinel.sentinel_urls(), MASTER_NAME)
            .connect()
            .await?,
    )?;
    compare(
        table,
        format!("Sentinel: primary found through {SENTINELS} Sentinels, sequential"),
        &through,
        ("same primary, direct", &direct),
        &key,
        cfg,
    )
    .await?;
    through.shutdown().await;
    direct.shutdown().await;
    drop(sentinel);
    Ok(())
}
