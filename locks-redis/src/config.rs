//! [`RedisConfig`]: the backend's settings as data (feature `serde`), for services that
//! configure Redis from a file or the environment, next to `locks_core::LockConfig`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::backend::RedisBackend;
use crate::builder::RedisBackendBuilder;
use crate::counter::FenceCounterTtl;
use crate::error::RedisBackendError;

/// The settings of a [`RedisBackend`], deserializable (TOML, JSON, YAML, env through your
/// config crate): where the servers are (the topology), the timeouts, the eviction-policy
/// opt-out and the fence counter's lifetime. Durations are humantime strings (`"2s"`,
/// `"500ms"`). Unknown fields and malformed durations are deserialization errors; every value
/// is then checked by [`into_builder`](Self::into_builder) and
/// [`RedisBackendBuilder::connect`], so an invalid config gives the same typed
/// [`RedisBackendError`] as the builder (`InvalidUrl`, `InvalidOption`), and nothing connects.
///
/// | field | default | range | `@nestjs-redisx` |
/// |---|---|---|---|
/// | `topology` | `"single"` | `"single"`, `"cluster"`, `"sentinel"` | `type` |
/// | `url` | — (required for `single`) | a `redis://`, `rediss://` (feature `tls`) or `unix://` URL | `url` / `host`, `port`, `password`, `db` |
/// | `urls` | — (required for `cluster`, `sentinel`) | the seed nodes, or the Sentinels | `nodes` / `sentinels` |
/// | `master_name` | — (required for `sentinel`) | the monitored master's name | `name` |
/// | `connect_timeout` | `"5s"` | ≥ 1 ms | `connectTimeout` |
/// | `response_timeout` | `"5s"` | ≥ 1 ms | `commandTimeout` |
/// | `allow_eviction_policy` | `false` | | — (the seed does not check) |
/// | `fence_counter_ttl.multiplier` | `2` | 1 ..= 1000 | — |
/// | `fence_counter_ttl.floor` | `"60s"` | 1 ms ..= 365 days | — |
/// | `replica_ack.min_replicas`, `.timeout` | off | ≥ 1; 1 ms ..< `response_timeout` | — |
/// | `function_library` | `false` | | — |
///
/// The key prefix is a service setting (`key_prefix` of `LockConfig` or
/// `LockServiceBuilder`), not a backend one.
///
/// ```no_run
/// use locks_core::LockService;
/// use locks_redis::RedisConfig;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config: RedisConfig = serde_json::from_str(
///     r#"{ "url": "redis://127.0.0.1:6379/0", "connect_timeout": "2s",
///          "fence_counter_ttl": { "floor": "10m" } }"#,
/// )?;
/// let locks = LockService::new(config.connect().await?)?;
/// # Ok(()) }
/// ```
///
/// A Sentinel deployment:
///
/// ```toml
/// [redis]
/// topology = "sentinel"
/// master_name = "locks"
/// urls = ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379", "redis://10.0.0.3:26379"]
/// ```
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Which kind of deployment the URLs name.
    pub topology: TopologyKind,
    /// The server, for [`TopologyKind::Single`].
    pub url: Option<String>,
    /// The cluster's seed nodes ([`TopologyKind::Cluster`]) or the Sentinels
    /// ([`TopologyKind::Sentinel`]).
    pub urls: Vec<String>,
    /// The name of the master the Sentinels monitor ([`TopologyKind::Sentinel`]).
    pub master_name: Option<String>,
    /// See [`RedisBackendBuilder::connect_timeout`].
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Option<Duration>,
    /// See [`RedisBackendBuilder::response_timeout`].
    #[serde(deserialize_with = "duration")]
    pub response_timeout: Option<Duration>,
    /// See [`RedisBackendBuilder::allow_eviction_policy`].
    pub allow_eviction_policy: Option<bool>,
    /// See [`RedisBackendBuilder::fence_counter_ttl`].
    pub fence_counter_ttl: Option<FenceCounterTtlConfig>,
    /// See [`RedisBackendBuilder::replica_ack`].
    pub replica_ack: Option<ReplicaAckConfig>,
    /// See [`RedisBackendBuilder::function_library`].
    pub function_library: Option<bool>,
}

/// The `replica_ack` part of a [`RedisConfig`]: `{ min_replicas = 1, timeout = "100ms" }`
/// (see [`RedisBackendBuilder::replica_ack`]); both fields are required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ReplicaAckConfig {
    /// Replicas that must acknowledge each acquire and renewal.
    pub min_replicas: u32,
    /// How long to wait for them.
    #[serde(deserialize_with = "required_duration")]
    pub timeout: Duration,
}

/// The deployment a [`RedisConfig`] names (`topology = "single" | "cluster" | "sentinel"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TopologyKind {
    /// One server (or a primary whose replicas are not used for locks): `url`.
    #[default]
    Single,
    /// A Redis Cluster: `urls` are seed nodes.
    Cluster,
    /// A primary found through Redis Sentinel: `master_name` and the Sentinels' `urls`.
    Sentinel,
}

/// The deployment of a [`RedisConfig`], its fields checked for the kind:
/// [`RedisConfig::topology`](RedisConfig::topology()).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTopology {
    /// One server.
    Single {
        /// Its URL.
        url: String,
    },
    /// A Redis Cluster.
    Cluster {
        /// Seed nodes (at least one).
        urls: Vec<String>,
    },
    /// A primary found through Sentinel.
    Sentinel {
        /// The monitored master's name.
        master_name: String,
        /// The Sentinels (at least one).
        sentinels: Vec<String>,
    },
}

/// The `fence_counter_ttl` part of a [`RedisConfig`] (see [`FenceCounterTtl`]); absent fields
/// keep the default's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FenceCounterTtlConfig {
    /// How many lease ttls the counter is kept after each acquire or renewal (default 2).
    pub multiplier: Option<u32>,
    /// The shortest time it is kept (default 60 s).
    #[serde(deserialize_with = "duration")]
    pub floor: Option<Duration>,
}

impl FenceCounterTtlConfig {
    /// These settings over [`FenceCounterTtl::DEFAULT`] (checked at connect).
    pub fn ttl(&self) -> FenceCounterTtl {
        let d = FenceCounterTtl::DEFAULT;
        FenceCounterTtl::new(
            self.multiplier.unwrap_or(d.multiplier()),
            self.floor.unwrap_or(d.floor()),
        )
    }
}

impl RedisConfig {
    /// A config for one server at `url`, every other setting at its default.
    pub fn single(url: impl Into<String>) -> Self {
        RedisConfig {
            url: Some(url.into()),
            ..RedisConfig::default()
        }
    }

    /// The deployment, checked for its kind: `single` needs `url` and no `urls`; `cluster`
    /// needs `urls` and no `url` or `master_name`; `sentinel` needs `master_name` and `urls`
    /// and no `url`. Anything else is [`RedisBackendError::InvalidOption`] naming the field.
    pub fn topology(&self) -> Result<RedisTopology, RedisBackendError> {
        let invalid = |option: &'static str, reason: &str| RedisBackendError::InvalidOption {
            option,
            reason: reason.to_owned(),
        };
        let no_master = || match self.master_name {
            Some(_) => Err(invalid(
                "master_name",
                "only a `sentinel` topology has a master name",
            )),
            None => Ok(()),
        };
        match self.topology {
            TopologyKind::Single => {
                no_master()?;
                if !self.urls.is_empty() {
                    return Err(invalid(
                        "urls",
                        "a `single` topology takes one `url`; `urls` are for `cluster` (seed \
                         nodes) and `sentinel` (the Sentinels)",
                    ));
                }
                let url = self.url.clone().ok_or_else(|| {
                    invalid(
                        "url",
                        "missing: a `single` topology needs the server's `url`",
                    )
                })?;
                Ok(RedisTopology::Single { url })
            }
            TopologyKind::Cluster => {
                no_master()?;
                if self.url.is_some() {
                    return Err(invalid(
                        "url",
                        "a `cluster` topology takes its seed nodes as `urls`",
                    ));
                }
                if self.urls.is_empty() {
                    return Err(invalid(
                        "urls",
                        "missing: a `cluster` topology needs at least one seed node",
                    ));
                }
                Ok(RedisTopology::Cluster {
                    urls: self.urls.clone(),
                })
            }
            TopologyKind::Sentinel => {
                if self.url.is_some() {
                    return Err(invalid(
                        "url",
                        "a `sentinel` topology takes the Sentinels as `urls` (the master is \
                         found through them)",
                    ));
                }
                let master_name = self.master_name.clone().ok_or_else(|| {
                    invalid(
                        "master_name",
                        "missing: a `sentinel` topology needs the monitored master's name",
                    )
                })?;
                if self.urls.is_empty() {
                    return Err(invalid(
                        "urls",
                        "missing: a `sentinel` topology needs at least one Sentinel",
                    ));
                }
                Ok(RedisTopology::Sentinel {
                    master_name,
                    sentinels: self.urls.clone(),
                })
            }
        }
    }

    /// A [`RedisBackendBuilder`] for the topology with every setting of this config applied.
    /// Fails with [`RedisBackendError::InvalidOption`] when the topology's fields do not fit
    /// its kind ([`topology`](Self::topology())); the values themselves (URLs, timeouts, the
    /// fence counter ttl) are checked by [`connect`](RedisBackendBuilder::connect), exactly as
    /// for a builder made in code.
    pub fn into_builder(self) -> Result<RedisBackendBuilder, RedisBackendError> {
        let builder = match self.topology()? {
            RedisTopology::Single { url } => RedisBackend::builder(url),
            RedisTopology::Cluster { urls } => cluster(urls)?,
            RedisTopology::Sentinel {
                master_name,
                sentinels,
            } => sentinel(sentinels, master_name)?,
        };
        let builder = set(builder, self.connect_timeout, |b, d| b.connect_timeout(d));
        let builder = set(builder, self.response_timeout, |b, d| b.response_timeout(d));
        let builder = set(builder, self.allow_eviction_policy, |b, a| {
            b.allow_eviction_policy(a)
        });
        let builder = set(builder, self.fence_counter_ttl, |b, f| {
            b.fence_counter_ttl(f.ttl())
        });
        let builder = set(builder, self.replica_ack, |b, a| {
            b.replica_ack(a.min_replicas, a.timeout)
        });
        Ok(set(builder, self.function_library, |b, on| {
            b.function_library(on)
        }))
    }

    /// [`into_builder`](Self::into_builder), then [`connect`](RedisBackendBuilder::connect).
    ///
    /// # Cancel safety
    ///
    /// As [`RedisBackendBuilder::connect`]: dropping the future drops the connections it had
    /// opened; no background task outlives it.
    pub async fn connect(&self) -> Result<RedisBackend, RedisBackendError> {
        self.clone().into_builder()?.connect().await
    }
}

#[cfg(feature = "cluster")]
fn cluster(urls: Vec<String>) -> Result<RedisBackendBuilder, RedisBackendError> {
    Ok(RedisBackend::cluster_builder(urls))
}

#[cfg(not(feature = "cluster"))]
fn cluster(_urls: Vec<String>) -> Result<RedisBackendBuilder, RedisBackendError> {
    Err(feature_missing("cluster"))
}

#[cfg(feature = "sentinel")]
fn sentinel(
    sentinels: Vec<String>,
    master_name: String,
) -> Result<RedisBackendBuilder, RedisBackendError> {
    Ok(RedisBackend::sentinel_builder(sentinels, master_name))
}

#[cfg(not(feature = "sentinel"))]
fn sentinel(
    _sentinels: Vec<String>,
    _master_name: String,
) -> Result<RedisBackendBuilder, RedisBackendError> {
    Err(feature_missing("sentinel"))
}

/// The typed error for a topology whose crate feature is off.
#[cfg(any(not(feature = "cluster"), not(feature = "sentinel")))]
fn feature_missing(kind: &str) -> RedisBackendError {
    RedisBackendError::InvalidOption {
        option: "topology",
        reason: format!(
            "`topology = \"{kind}\"` needs the `{kind}` feature of locks-redis (or of the \
             `locks` facade)"
        ),
    }
}

/// `apply(target, value)` when the value is present, else `target` unchanged.
fn set<B, T>(target: B, value: Option<T>, apply: impl FnOnce(B, T) -> B) -> B {
    match value {
        Some(v) => apply(target, v),
        None => target,
    }
}

/// A humantime duration (`"30s"`), or absent.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| humantime::parse_duration(t.trim()).map_err(serde::de::Error::custom))
        .transpose()
}

/// A humantime duration (`"100ms"`), required.
fn required_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(text.trim()).map_err(serde::de::Error::custom)
}

/// `scheme://user:password@host` → `scheme://(redacted)@host`: URLs may carry a password.
fn redact(url: &str) -> String {
    let rest_at = url.find("://").map_or(0, |i| i + 3);
    match url[rest_at..].rfind('@') {
        Some(at) => format!("{}(redacted)@{}", &url[..rest_at], &url[rest_at + at + 1..]),
        None => url.to_owned(),
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("topology", &self.topology)
            .field("url", &self.url.as_deref().map(redact))
            .field(
                "urls",
                &self.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("master_name", &self.master_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("allow_eviction_policy", &self.allow_eviction_policy)
            .field("fence_counter_ttl", &self.fence_counter_ttl)
            .field("replica_ack", &self.replica_ack)
            .field("function_library", &self.function_library)
            .finish()
    }
}

impl fmt::Debug for RedisTopology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |urls: &[String]| urls.iter().map(|u| redact(u)).collect::<Vec<_>>();
        match self {
            RedisTopology::Single { url } => {
                f.debug_struct("Single").field("url", &redact(url)).finish()
            }
            RedisTopology::Cluster { urls } => f
                .debug_struct("Cluster")
                .field("urls", &redacted(urls))
                .finish(),
            RedisTopology::Sentinel {
                master_name,
                sentinels,
            } => f
                .debug_struct("Sentinel")
                .field("master_name", master_name)
                .field("sentinels", &redacted(sentinels))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://app:s3cret@db:6379/0"),
            "redis://(redacted)@db:6379/0"
        );
        assert_eq!(redact("redis://:p@ss@db"), "redis://(redacted)@db");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
        assert_eq!(redact("unix:///tmp/r.sock"), "unix:///tmp/r.sock");
    }
}
