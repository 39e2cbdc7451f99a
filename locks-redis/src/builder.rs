//! Building a [`RedisBackend`]: the target (URL or client), the timeouts, the fence counter's
//! lifetime and their validation, the eviction-policy opt-out, and
//! [`connect`](RedisBackendBuilder::connect), which fails with a typed [`RedisBackendError`]
//! within the connect timeout.

use std::fmt;
use std::time::Duration;

use redis::Client;

use crate::ack::ReplicaAck;
use crate::backend::RedisBackend;
use crate::connect::Target;
use crate::counter::FenceCounterTtl;
use crate::error::RedisBackendError;
use crate::policy::PolicyGate;

/// The default [`RedisBackendBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`RedisBackendBuilder::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest timeout the builder accepts.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Builds a [`RedisBackend`]: [`RedisBackend::builder`] or
/// [`RedisBackend::builder_from_client`], optional timeouts, then
/// [`connect`](RedisBackendBuilder::connect).
pub struct RedisBackendBuilder {
    target: Target,
    connect_timeout: Duration,
    response_timeout: Duration,
    allow_eviction_policy: bool,
    fence_counter_ttl: FenceCounterTtl,
    replica_ack: Option<ReplicaAck>,
    function_library: bool,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the URL: it may carry a password.
        let target = self.target.describe();
        f.debug_struct("RedisBackendBuilder")
            .field("target", &target)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("allow_eviction_policy", &self.allow_eviction_policy)
            .field("fence_counter_ttl", &self.fence_counter_ttl)
            .field("replica_ack", &self.replica_ack)
            .field("function_library", &self.function_library)
            .finish()
    }
}

impl RedisBackend {
    /// Connect to `url` with the default timeouts. See [`RedisBackendBuilder::connect`].
    pub async fn connect(url: &str) -> Result<RedisBackend, RedisBackendError> {
        Self::builder(url).connect().await
    }

    /// Start building a backend for `url` (`redis://`, `rediss://` with feature `tls`,
    /// `unix://`); the URL is parsed by [`connect`](RedisBackendBuilder::connect).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Target::Url(url.into()))
    }

    /// Start building a backend on an existing [`redis::Client`] (e.g. one built with custom
    /// TLS certificates through `Client::build_with_tls`).
    pub fn builder_from_client(client: Client) -> RedisBackendBuilder {
        RedisBackendBuilder::new(Target::Client(Box::new(client)))
    }

    /// Start building a backend on a Redis Cluster (feature **`cluster`**), given one or more
    /// seed nodes (`redis://host:port`, credentials in the URLs). The redis crate's async
    /// cluster client routes each script to the primary that owns its lock's slot and follows
    /// `MOVED`/`ASK` itself; release notifications listen on the node that owns the channel's
    /// slot. See [Redis Cluster](crate#redis-cluster).
    ///
    /// ```no_run
    /// use locks_redis::RedisBackend;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::cluster_builder([
    ///     "redis://10.0.0.1:7000",
    ///     "redis://10.0.0.2:7000",
    ///     "redis://10.0.0.3:7000",
    /// ])
    /// .connect()
    /// .await?;
    /// # drop(backend);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "cluster")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cluster")))]
    pub fn cluster_builder<I, S>(seed_urls: I) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBackendBuilder::new(Target::Cluster(
            seed_urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// Start building a backend on the primary that a set of Sentinels names for
    /// `master_name` (feature **`sentinel`**). Every new connection asks the Sentinels for the
    /// primary again, and a connection that fails or finds its server demoted (`READONLY`) is
    /// replaced, so the backend follows a failover; the release subscription resubscribes on
    /// the new primary. See [Sentinel](crate#sentinel).
    ///
    /// ```no_run
    /// use locks_redis::RedisBackend;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::sentinel_builder(
    ///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"],
    ///     "locks",
    /// )
    /// .connect()
    /// .await?;
    /// # drop(backend);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel_builder<I, S>(
        sentinel_urls: I,
        master_name: impl Into<String>,
    ) -> RedisBackendBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisBackendBuilder::new(Target::Sentinel {
            urls: sentinel_urls.into_iter().map(Into::into).collect(),
            master: master_name.into(),
            node_auth: None,
        })
    }
}

impl RedisBackendBuilder {
    fn new(target: Target) -> Self {
        RedisBackendBuilder {
            target,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            allow_eviction_policy: false,
            fence_counter_ttl: FenceCounterTtl::DEFAULT,
            replica_ack: None,
            function_library: false,
        }
    }

    /// The least-privilege mode (Redis >= 7.0): run the scripts as the installed function
    /// library ([`LIBRARY`](crate::LIBRARY), `FCALL`/`FCALL_RO`) instead of `EVALSHA`, so the
    /// application user needs no script loading ([`APP_USER_ACL`](crate::APP_USER_ACL)). An
    /// operator installs the library once per server with
    /// [`install_functions`](crate::install_functions); [`connect`](Self::connect) refuses a
    /// server without it, or with another version, with
    /// [`RedisBackendError::FunctionLibrary`]. Default `false` (`EVALSHA`, any Redis).
    pub fn function_library(mut self, on: bool) -> Self {
        self.function_library = on;
        self
    }

    /// The credentials of the data nodes behind the Sentinels (feature **`sentinel`**): the
    /// Sentinel URLs' credentials are for the Sentinels only. Without this, the data nodes are
    /// reached without `AUTH`. Ignored for a target that is not a Sentinel set.
    ///
    /// ```no_run
    /// use locks_redis::RedisBackend;
    ///
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let backend = RedisBackend::sentinel_builder(["redis://10.0.0.1:26379"], "locks")
    ///     .sentinel_node_auth(Some("app"), "s3cret")
    ///     .connect()
    ///     .await?;
    /// # drop(backend);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "sentinel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sentinel")))]
    pub fn sentinel_node_auth(mut self, username: Option<&str>, password: &str) -> Self {
        if let Target::Sentinel { node_auth, .. } = &mut self.target {
            *node_auth = Some((username.map(str::to_owned), password.to_owned()));
        }
        self
    }

    /// Count an acquire, extend or renewal as done only once `min_replicas` replicas have
    /// acknowledged it (`WAIT min_replicas timeout` after the script, on the same
    /// connection). Off by default.
    ///
    /// Without enough acknowledgements within `timeout`, an acquire is released again and
    /// fails with a transient error whose source is [`RedisBackendError::NotReplicated`] (the
    /// service retries it within its wait budget); a renewal fails the same way and leaves the
    /// lease `Unknown`. What it buys: a primary that dies right after granting a lease cannot
    /// lose it, provided an acknowledging replica is promoted. What it does not: replication
    /// stays asynchronous (a failover may still promote a replica that did not acknowledge),
    /// and it says nothing about persistence to disk (`WAITAOF`). See
    /// [Replica acknowledgement](crate#replica-acknowledgement).
    ///
    /// [`connect`](Self::connect) refuses `min_replicas` of 0 and a `timeout` below 1 ms or not
    /// below the response timeout (a `WAIT` blocks the shared connection for up to `timeout`)
    /// with [`RedisBackendError::InvalidOption`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use locks_redis::RedisBackend;
    ///
    /// let builder = RedisBackend::builder("redis://127.0.0.1:6379")
    ///     .replica_ack(1, Duration::from_millis(100));
    /// # drop(builder);
    /// ```
    pub fn replica_ack(mut self, min_replicas: u32, timeout: Duration) -> Self {
        self.replica_ack = Some(ReplicaAck {
            min_replicas,
            timeout,
        });
        self
    }

    /// How long [`connect`](Self::connect) may take in total (TCP, TLS, `AUTH`, `PING` and the
    /// pub/sub connection), and each later reconnection attempt. Default 5 s; at least 1 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may wait for its reply before it fails with a transient error.
    /// Default 5 s; at least 1 ms.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Accept a server whose `maxmemory-policy` is not `noeviction` (or cannot be read).
    /// Default `false`: [`connect`](Self::connect) refuses such a server with
    /// [`RedisBackendError::EvictionPolicy`] or [`RedisBackendError::EvictionPolicyUnknown`], and
    /// after a reconnection operations fail while the policy is unsafe.
    ///
    /// **The risk you accept with `true`:** a server at its `maxmemory` limit under any other
    /// policy deletes keys to make room, and every lease has a ttl, so the `volatile-*`
    /// policies (the default of many managed services is `volatile-lru`) evict leases first,
    /// the `allkeys-*` ones among all keys. An evicted lease is free for the next caller while
    /// its holder still sees it `Held` until its next renewal: two holders at once, and fences
    /// are the only protection left. Only turn the check off for a server that can never reach
    /// `maxmemory` (no limit, and nothing else writes to it), or where losing exclusion is
    /// acceptable. With `true` the policy is not read at all (no `CONFIG`/`INFO` permission
    /// needed).
    pub fn allow_eviction_policy(mut self, allow: bool) -> Self {
        self.allow_eviction_policy = allow;
        self
    }

    /// How long the fence counter of a lock name is kept after each acquire or renewal:
    /// `max(multiplier × ttl, floor)`. Default [`FenceCounterTtl::DEFAULT`], `max(2 × ttl,
    /// 60 s)`; see [`FenceCounterTtl`] for what the counter protects and what a distinct name
    /// costs. [`connect`](Self::connect) refuses a multiplier of 0 or above 1,000 and a floor
    /// below 1 ms or above 365 days with [`RedisBackendError::InvalidOption`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use locks_redis::{FenceCounterTtl, RedisBackend};
    ///
    /// // Keep counters for at least 10 minutes, and 3 ttls after the last renewal.
    /// let builder = RedisBackend::builder("redis://127.0.0.1:6379")
    ///     .fence_counter_ttl(FenceCounterTtl::new(3, Duration::from_secs(600)));
    /// # drop(builder);
    /// ```
    pub fn fence_counter_ttl(mut self, ttl: FenceCounterTtl) -> Self {
        self.fence_counter_ttl = ttl;
        self
    }

    /// Connect: the command connection (checked with `PING`), the eviction policy (unless
    /// [`allow_eviction_policy`](Self::allow_eviction_policy)), and the pub/sub connection.
    ///
    /// Fails within the connect timeout with [`RedisBackendError`]: `InvalidUrl`,
    /// `InvalidOption`, `Authentication` (not retried), `Connect`, `ConnectTimeout`,
    /// `EvictionPolicy` (the server's `maxmemory-policy` is not `noeviction`) or
    /// `EvictionPolicyUnknown` (neither `CONFIG GET` nor `INFO memory` is permitted).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future drops the connections it had opened; no background task is started
    /// before it completes.
    pub async fn connect(self) -> Result<RedisBackend, RedisBackendError> {
        self.validate()?;
        let (ct, rt) = (self.connect_timeout, self.response_timeout);
        let parts =
            crate::connect::open(self.target, (ct, rt), !self.allow_eviction_policy).await?;
        let mut gate = PolicyGate::new(parts.addr.clone(), parts.checked);
        if parts.source.is_cluster() {
            // Waiters `SSUBSCRIBE` on the key's shard: the scripts must `SPUBLISH` there.
            gate = gate.with_calls(crate::functions::Calls::EvalSharded);
        }
        if self.function_library {
            crate::functions::require_library(&parts.conn, &parts.addr, ct).await?;
            gate = gate.with_calls(crate::functions::Calls::Functions);
        }
        Ok(RedisBackend::from_parts(
            parts.source,
            parts.addr,
            parts.conn,
            gate,
            parts.notifier,
            self.replica_ack,
            self.fence_counter_ttl,
            (ct, rt),
        ))
    }

    /// Every option within its bounds.
    fn validate(&self) -> Result<(), RedisBackendError> {
        // Issue 12: on a cluster, waiters listen with `SSUBSCRIBE` and only the scripts' sharded
        // `EVALSHA` form announces with `SPUBLISH`; the function library's functions `PUBLISH`.
        #[cfg(feature = "cluster")]
        if self.function_library && matches!(self.target, Target::Cluster(_)) {
            return Err(RedisBackendError::InvalidOption {
                option: "function_library",
                reason: "not supported on a Redis Cluster yet (its functions announce releases \
                         with PUBLISH, and cluster waiters listen with SSUBSCRIBE)"
                    .into(),
            });
        }
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value < MIN_TIMEOUT {
                return Err(RedisBackendError::InvalidOption {
                    option,
                    reason: "must be at least 1 ms".into(),
                });
            }
        }
        if let Some(ack) = self.replica_ack {
            if ack.min_replicas == 0 {
                return Err(RedisBackendError::InvalidOption {
                    option: "replica_ack",
                    reason: "min_replicas must be at least 1".into(),
                });
            }
            if ack.timeout < MIN_TIMEOUT || ack.timeout >= self.response_timeout {
                return Err(RedisBackendError::InvalidOption {
                    option: "replica_ack",
                    reason: format!(
                        "the timeout must be at least 1 ms and below the response timeout \
                         ({:?}), got {:?}",
                        self.response_timeout, ack.timeout
                    ),
                });
            }
        }
        self.fence_counter_ttl.validate()
    }
}

/// rustls needs a process-wide crypto provider; install `ring` unless the application did.
#[cfg(feature = "tls")]
pub(crate) fn install_crypto_provider(client: &Client) {
    if matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    ) && rustls::crypto::CryptoProvider::get_default().is_none()
    {
        // Losing the race to another installer is fine: some provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_debug_hides_the_url() {
        let b = RedisBackend::builder("redis://user:hunter2@example.invalid:1");
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn timeouts_below_a_millisecond_are_refused() {
        let b = RedisBackend::builder("redis://127.0.0.1:1").response_timeout(Duration::ZERO);
        assert!(matches!(
            b.validate(),
            Err(RedisBackendError::InvalidOption {
                option: "response_timeout",
                ..
            })
        ));
        let b = RedisBackend::builder("redis://127.0.0.1:1")
            .connect_timeout(Duration::from_micros(999));
        assert!(matches!(
            b.validate(),
            Err(RedisBackendError::InvalidOption {
                option: "connect_timeout",
                ..
            })
        ));
        assert!(
            RedisBackend::builder("redis://127.0.0.1:1")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_zero_or_absurd_fence_counter_ttl_is_refused() {
        let with = |multiplier, floor| {
            RedisBackend::builder("redis://127.0.0.1:1")
                .fence_counter_ttl(FenceCounterTtl::new(multiplier, floor))
                .validate()
        };
        let minute = Duration::from_secs(60);
        for (multiplier, floor) in [
            (0, minute),
            (1_001, minute),
            (2, Duration::ZERO),
            (2, Duration::from_secs(366 * 86_400)),
        ] {
            assert!(
                matches!(
                    with(multiplier, floor),
                    Err(RedisBackendError::InvalidOption {
                        option: "fence_counter_ttl",
                        ..
                    })
                ),
                "{multiplier} × ttl, {floor:?}"
            );
        }
        assert!(with(1, Duration::from_millis(1)).is_ok());
        let b = RedisBackend::builder("redis://127.0.0.1:1");
        assert!(format!("{b:?}").contains("multiplier: 2"));
    }
}
