//! A quorum over independent redis-servers (feature **`redis`**).
//!
//! Here rather than as `RedisBackend::quorum` in locks-redis: this crate depends on
//! locks-redis, never the other way round, so there is no dependency cycle (locks-redis's
//! own tests and the quorum's tests would otherwise each build the other crate twice).

use std::time::Duration;

use futures::future::join_all;
use locks_redis::{RedisBackend, RedisBackendBuilder, RedisBackendError};

use crate::{QuorumBackend, QuorumBuilder, QuorumError};

/// Why [`connect`] or [`connect_with`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisQuorumError {
    /// A node did not connect (the first one that failed, in the order given).
    #[error("quorum node {node} ({url}) did not connect")]
    Connect {
        /// The node's index in the order given.
        node: usize,
        /// Its URL, as given.
        url: String,
        /// Why.
        #[source]
        source: RedisBackendError,
    },
    /// The quorum's settings (fewer than 3 URLs, ...).
    #[error(transparent)]
    Quorum(#[from] QuorumError),
}

/// A quorum over the redis-servers at `urls` (at least 3, independent servers: not replicas of
/// each other), with the default settings of [`QuorumBuilder`] and of each
/// [`RedisBackend`]. Every node must connect.
///
/// ```no_run
/// use locks_core::LockService;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quorum = locks_quorum::redis::connect([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])
/// .await?;
/// let locks = LockService::new(quorum)?;
/// let guard = locks.acquire("payment:42").await?;
/// # drop(guard);
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Cancel safe: dropping the future drops the connections made so far.
pub async fn connect<I, S>(urls: I) -> Result<QuorumBackend, RedisQuorumError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    connect_with(QuorumBuilder::new(), urls, |b| b).await
}

/// Like [`connect`], with the quorum's settings from `quorum` and each node's backend set up by
/// `node` (timeouts, fence counter ttl, ...). The quorum's node timeout should be at least the
/// nodes' response timeout.
///
/// ```no_run
/// use std::time::Duration;
/// use locks_quorum::QuorumBackend;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quorum = locks_quorum::redis::connect_with(
///     QuorumBackend::builder().node_timeout(Duration::from_millis(500)),
///     ["redis://a:6379", "redis://b:6379", "redis://c:6379"],
///     |node| node.response_timeout(Duration::from_millis(400)),
/// )
/// .await?;
/// # drop(quorum);
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Cancel safe: dropping the future drops the connections made so far.
pub async fn connect_with<I, S>(
    quorum: QuorumBuilder,
    urls: I,
    node: impl Fn(RedisBackendBuilder) -> RedisBackendBuilder,
) -> Result<QuorumBackend, RedisQuorumError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
    if urls.len() < 3 {
        return Err(QuorumError::TooFewNodes { got: urls.len() }.into());
    }
    let connecting = urls
        .iter()
        .map(|url| node(RedisBackend::builder(url.clone())).connect());
    let mut quorum = quorum;
    for (i, backend) in join_all(connecting).await.into_iter().enumerate() {
        match backend {
            Ok(b) => quorum = quorum.node(b),
            Err(source) => {
                return Err(RedisQuorumError::Connect {
                    node: i,
                    url: urls.get(i).cloned().unwrap_or_default(),
                    source,
                });
            }
        }
    }
    Ok(quorum.build()?)
}

/// A short connect and response timeout for nodes on one network: 1 s and 500 ms.
pub fn local_node(builder: RedisBackendBuilder) -> RedisBackendBuilder {
    builder
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_millis(500))
}
