//! A local Sentinel set for tests: one primary, two replicas and three Sentinels with quick
//! failover settings, gone on drop.
//!
//! [`RedisSentinel::start`] starts the data nodes through the single-node fixture
//! ([`RedisServer`], same binary search, same loud failures): node 0 as the primary, nodes 1 and
//! 2 with `--replicaof` it; waits until both replicas are in sync; then starts three
//! `redis-server <conf> --sentinel` processes monitoring the primary as [`MASTER_NAME`] with
//! quorum 2, `down-after-milliseconds` [`DOWN_AFTER`] and a long failover timeout, and returns
//! once every Sentinel knows both replicas and the two other Sentinels (so a failover can be
//! authorised at once).
//!
//! The helpers: [`primary`](RedisSentinel::primary) (which node the Sentinels name now),
//! [`failover`](RedisSentinel::failover) (`SENTINEL FAILOVER`, then wait for the new primary),
//! [`kill`](RedisSentinel::kill), [`pause`](RedisSentinel::pause) /
//! [`resume`](RedisSentinel::resume) a node, hold back the first primary's replication stream
//! ([`hold_replication`](RedisSentinel::hold_replication): its replicas replicate through a
//! [`FaultProxy`]), and
//! [`wait_for_new_primary`](RedisSentinel::wait_for_new_primary) after a crash.
//!
//! The fixture waits with real time: use it from a runtime whose clock is not paused.
//!
//! # Cancel safety
//!
//! Every async method only sends commands or signals and polls: dropping its future leaves the
//! topology wherever it got to (a half-done migration or failover stays half done, and the next
//! call sees it), and never leaks a process: the fixture kills every process it started when it
//! is dropped.
//!
//! ```no_run
//! use locks_testkit::redis_sentinel::{MASTER_NAME, RedisSentinel};
//!
//! # async fn demo() -> Result<(), locks_testkit::redis_server::FixtureError> {
//! let mut set = RedisSentinel::start().await?;
//! println!("sentinels {:?} watch {MASTER_NAME}", set.sentinel_urls());
//! let old = set.primary().await?;
//! set.kill(old).await?; // a crash: the Sentinels promote a replica
//! let new = set.wait_for_new_primary(old).await?;
//! assert_ne!(old, new);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use redis::aio::MultiplexedConnection;
use redis::{FromRedisValue, RedisResult};
use tempfile::TempDir;

use crate::proxy::{Direction, FaultProxy};
use crate::redis_server::{FixtureError, RedisServer, RedisServerConfig};

/// The name the Sentinels monitor the primary under.
pub const MASTER_NAME: &str = "locks-primary";

/// How many replicas the primary has.
pub const REPLICAS: usize = 2;

/// How many Sentinels watch it (quorum 2).
pub const SENTINELS: usize = 3;

/// `down-after-milliseconds`: how long the primary may not answer before a Sentinel thinks it
/// is down.
pub const DOWN_AFTER: Duration = Duration::from_millis(500);

/// How long the fixture waits for the set to settle (start, failover).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

const POLL: Duration = Duration::from_millis(20);

/// A private Sentinel set. Dropping it kills every process and removes their files.
pub struct RedisSentinel {
    /// Node 0 started as the primary, nodes 1.. as its replicas.
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    /// The replicas' first replication link goes through this proxy, so a test can hold the
    /// replication stream back (the Sentinels' later reconfigurations connect directly).
    replication: FaultProxy,
    /// The data nodes' password, if they have one.
    password: Option<String>,
    started_in: Duration,
    // Last: removed after the Sentinels that rewrite their files in it are gone.
    _conf_dir: TempDir,
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("nodes", &self.node_urls())
            .field("sentinels", &self.sentinel_urls())
            .field("started_in", &self.started_in)
            .finish()
    }
}

fn failed(step: &'static str, detail: impl fmt::Display) -> FixtureError {
    FixtureError::Topology {
        topology: "sentinel",
        step,
        detail: detail.to_string(),
    }
}

/// A connection to `server`, with `password` if it has one.
async fn connect(
    server: &RedisServer,
    password: Option<&str>,
) -> RedisResult<MultiplexedConnection> {
    match password {
        None => server.connection().await,
        Some(password) => {
            // The fixture's passwords are plain words: no percent-encoding needed.
            let url = format!("redis://:{password}@127.0.0.1:{}", server.port());
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await
        }
    }
}

/// `cmd`'s reply from `server` (authenticated with `password` if given), within 5 s.
async fn query<T: FromRedisValue>(
    server: &RedisServer,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> RedisResult<T> {
    let mut conn = connect(server, password).await?;
    tokio::time::timeout(Duration::from_secs(5), cmd.query_async(&mut conn))
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "sentinel fixture: no reply within 5 s",
            ))
        })?
}

/// Polls `check` until it is `Ok`, for at most [`SETTLE_TIMEOUT`].
async fn settle<T, F, Fut>(step: &'static str, mut check: F) -> Result<T, FixtureError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(why) if Instant::now() >= deadline => {
                return Err(failed(
                    step,
                    format!("not done after {SETTLE_TIMEOUT:?}: {why}"),
                ));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

impl RedisSentinel {
    /// Starts the set (see the [module docs](self)). Fails loudly ([`FixtureError`]) when there
    /// is no `redis-server`, or when the set does not settle within [`SETTLE_TIMEOUT`].
    pub async fn start() -> Result<RedisSentinel, FixtureError> {
        Self::start_inner(None).await
    }

    /// Like [`start`](Self::start), with `password` (letters and digits) required by every data node
    /// (`requirepass`, and `masterauth` for replication; the Sentinels use `auth-pass`). The
    /// Sentinels themselves need none. [`connection`](Self::connection) authenticates.
    pub async fn start_with_password(password: &str) -> Result<RedisSentinel, FixtureError> {
        Self::start_inner(Some(password)).await
    }

    async fn start_inner(password: Option<&str>) -> Result<RedisSentinel, FixtureError> {
        let began = Instant::now();
        let auth: Vec<String> = match password {
            Some(p) => vec![
                "--requirepass".into(),
                p.into(),
                "--masterauth".into(),
                p.into(),
            ],
            None => Vec::new(),
        };
        // Replicas sync at once (Redis 7 waits 5 s by default to batch diskless syncs).
        let primary = RedisServer::start_with(
            RedisServerConfig::new()
                .local_only()
                .args(["--repl-diskless-sync-delay", "0"])
                .args(auth.clone()),
        )
        .await?;
        let port = primary.port().to_string();
        let replication =
            FaultProxy::for_server(&primary)
                .await
                .map_err(|source| FixtureError::Io {
                    context: "start the replication proxy",
                    source,
                })?;
        let via_proxy = replication.port().to_string();
        let replica = RedisServerConfig::new()
            .local_only()
            .args(["--replicaof", "127.0.0.1", &via_proxy])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(auth);
        let replicas =
            try_join_all((0..REPLICAS).map(|_| RedisServer::start_with(replica.clone()))).await?;
        let mut nodes = vec![primary];
        nodes.extend(replicas);
        settle("waiting for the replicas to sync", || async {
            for (i, node) in nodes.iter().enumerate().skip(1) {
                let info: String = query(node, password, redis::cmd("INFO").arg("replication"))
                    .await
                    .map_err(|e| e.to_string())?;
                if !info.contains("master_link_status:up") {
                    return Err(format!("replica {i} not in sync"));
                }
            }
            Ok(())
        })
        .await?;
        let conf_dir = tempfile::Builder::new()
            .prefix("locks-sentinel-")
            .tempdir()
            .map_err(|source| FixtureError::Io {
                context: "create a temporary directory",
                source,
            })?;
        // A long failover timeout: a Sentinel "fixes" a replica whose master address differs
        // from the primary's (ours replicate through the proxy) only after that long, so the
        // proxied links stay for the life of a test; forced failovers do not wait for it.
        let mut configs = Vec::with_capacity(SENTINELS);
        for i in 0..SENTINELS {
            let path = conf_dir.path().join(format!("sentinel-{i}.conf"));
            let auth_pass = password
                .map(|p| format!("sentinel auth-pass {MASTER_NAME} {p}\n"))
                .unwrap_or_default();
            let text = format!(
                "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 2\n{auth_pass}\
                 sentinel down-after-milliseconds {MASTER_NAME} {}\n\
                 sentinel failover-timeout {MASTER_NAME} 60000\n\
                 sentinel parallel-syncs {MASTER_NAME} 2\n",
                DOWN_AFTER.as_millis()
            );
            std::fs::write(&path, text).map_err(|source| FixtureError::Io {
                context: "write a sentinel configuration file",
                source,
            })?;
            configs.push(
                RedisServerConfig::new()
                    .local_only()
                    .config_file(path)
                    .arg("--sentinel"),
            );
        }
        let sentinels = try_join_all(configs.into_iter().map(RedisServer::start_with)).await?;
        let set = RedisSentinel {
            nodes,
            sentinels,
            replication,
            password: password.map(str::to_owned),
            started_in: Duration::ZERO,
            _conf_dir: conf_dir,
        };
        set.wait_settled(0).await?;
        Ok(RedisSentinel {
            started_in: began.elapsed(),
            ..set
        })
    }

    /// Waits until every Sentinel names node `primary` as the primary, knows the other
    /// Sentinels, and knows every other live node as a replica.
    async fn wait_settled(&self, primary: usize) -> Result<(), FixtureError> {
        let want_port = self.nodes[primary].port();
        let live_replicas = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != primary && n.pid().is_some())
            .count();
        settle("waiting for the Sentinels to agree", || async {
            for (i, sentinel) in self.sentinels.iter().enumerate() {
                let fields: HashMap<String, String> = query(
                    sentinel,
                    None,
                    redis::cmd("SENTINEL").arg("MASTER").arg(MASTER_NAME),
                )
                .await
                .map_err(|e| format!("sentinel {i}: {e}"))?;
                let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
                if get("port") != want_port.to_string()
                    || get("flags") != "master"
                    || get("num-other-sentinels") != (SENTINELS - 1).to_string()
                    || get("num-slaves").parse::<usize>().unwrap_or(0) < live_replicas
                {
                    return Err(format!("sentinel {i}: {fields:?}"));
                }
            }
            Ok(())
        })
        .await
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The URL of every Sentinel (`redis://127.0.0.1:PORT`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(RedisServer::url).collect()
    }

    /// The URL of every data node, node 0 (the first primary) first.
    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The data nodes, in the order of [`node_urls`](Self::node_urls).
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// A plain connection to data node `node` (authenticated, if the nodes have a password).
    pub async fn connection(&self, node: usize) -> Result<MultiplexedConnection, FixtureError> {
        connect(self.node(node)?, self.password.as_deref())
            .await
            .map_err(|e| failed("connect to a node", e))
    }

    fn node(&self, node: usize) -> Result<&RedisServer, FixtureError> {
        self.nodes
            .get(node)
            .ok_or_else(|| failed("find a node", format!("no node {node}")))
    }

    /// The node the first Sentinel that answers names as the primary now.
    pub async fn primary(&self) -> Result<usize, FixtureError> {
        let mut last = String::from("no sentinel answered");
        for sentinel in &self.sentinels {
            let addr: RedisResult<(String, u16)> = query(
                sentinel,
                None,
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER_NAME),
            )
            .await;
            match addr {
                Ok((_, port)) => {
                    return self
                        .nodes
                        .iter()
                        .position(|n| n.port() == port)
                        .ok_or_else(|| failed("find the primary", format!("unknown port {port}")));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(failed("find the primary", last))
    }

    /// Kills data node `node` (SIGKILL, as a crash would).
    pub async fn kill(&mut self, node: usize) -> Result<(), FixtureError> {
        self.nodes
            .get_mut(node)
            .ok_or_else(|| failed("kill a node", format!("no node {node}")))?
            .stop()
            .await
    }

    /// Pauses data node `node` (SIGSTOP): connected, answering nothing. A paused replica
    /// receives no writes, so the primary's newest writes exist on the primary only.
    pub async fn pause(&self, node: usize) -> Result<(), FixtureError> {
        self.node(node)?.pause().await
    }

    /// Resumes a node paused by [`pause`](Self::pause) (SIGCONT).
    pub async fn resume(&self, node: usize) -> Result<(), FixtureError> {
        self.node(node)?.resume().await
    }

    /// Holds back the replication stream from the first primary to its replicas (in the
    /// proxy their replication link goes through): from now on its writes reach no replica,
    /// although every connection stays up. [`drop_held_replication`](Self::drop_held_replication)
    /// loses them for good (a primary that dies before replicating), and
    /// [`release_replication`](Self::release_replication) delivers them.
    pub fn hold_replication(&self) {
        self.replication.stall(Direction::ServerToClient);
    }

    /// Resets the replication connections held by [`hold_replication`](Self::hold_replication):
    /// the writes held in them never reach the replicas.
    pub async fn drop_held_replication(&self) -> usize {
        self.replication.drop_connections().await
    }

    /// Delivers what [`hold_replication`](Self::hold_replication) held, and lets the stream
    /// flow again.
    pub fn release_replication(&self) {
        self.replication.heal();
    }

    /// Asks the Sentinels for a failover (`SENTINEL FAILOVER`, no agreement needed) and waits
    /// until a replica is the new primary. Returns it.
    pub async fn failover(&self) -> Result<usize, FixtureError> {
        let old = self.primary().await?;
        let _: String = query(
            &self.sentinels[0],
            None,
            redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER_NAME),
        )
        .await
        .map_err(|e| failed("SENTINEL FAILOVER", e))?;
        self.wait_for_new_primary(old).await
    }

    /// Waits until every Sentinel names a primary other than `old` and that node says it is
    /// a primary (after [`kill`](Self::kill) or [`pause`](Self::pause) of `old`, this takes
    /// [`DOWN_AFTER`] and an election). Returns it.
    pub async fn wait_for_new_primary(&self, old: usize) -> Result<usize, FixtureError> {
        settle("waiting for a new primary", || async {
            let mut named = None;
            for (i, sentinel) in self.sentinels.iter().enumerate() {
                let (_, port): (String, u16) = query(
                    sentinel,
                    None,
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(MASTER_NAME),
                )
                .await
                .map_err(|e| format!("sentinel {i}: {e}"))?;
                let node = self
                    .nodes
                    .iter()
                    .position(|n| n.port() == port)
                    .ok_or_else(|| format!("unknown port {port}"))?;
                if node == old || named.is_some_and(|n| n != node) {
                    return Err(format!("sentinel {i} names node {node}"));
                }
                named = Some(node);
            }
            let node = named.ok_or("no sentinel")?;
            let role: Vec<redis::Value> = query(
                &self.nodes[node],
                self.password.as_deref(),
                &redis::cmd("ROLE"),
            )
            .await
            .map_err(|e| e.to_string())?;
            let is_primary = role
                .into_iter()
                .next()
                .and_then(|r| redis::from_redis_value::<String>(r).ok())
                .is_some_and(|r| r == "master");
            if is_primary {
                Ok(node)
            } else {
                Err(format!("node {node} is not a primary yet"))
            }
        })
        .await
    }
}
