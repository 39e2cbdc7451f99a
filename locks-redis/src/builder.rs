//! Building a [`RedisBackend`]: the target (URL or client), the timeouts, the fence counter's
//! lifetime and their validation, the eviction-policy opt-out, and
//! [`connect`](RedisBackendBuilder::connect), which fails with a typed [`RedisBackendError`]
//! within the connect timeout.

use std::fmt;
use std::time::Duration;

use redis::{Client, Value};

use crate::backend::RedisBackend;
use crate::connection::Connection;
use crate::counter::FenceCounterTtl;
use crate::error::{RedisBackendError, connect_error};
use crate::policy::{PolicyGate, check_at_connect};
use crate::pubsub::Notifier;

/// The default [`RedisBackendBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`RedisBackendBuilder::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest timeout the builder accepts.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Where the builder connects to.
enum Target {
    Url(String),
    Client(Box<Client>),
}

/// Builds a [`RedisBackend`]: [`RedisBackend::builder`] or
/// [`RedisBackend::builder_from_client`], optional timeouts, then
/// [`connect`](RedisBackendBuilder::connect).
pub struct RedisBackendBuilder {
    target: Target,
    connect_timeout: Duration,
    response_timeout: Duration,
    allow_eviction_policy: bool,
    fence_counter_ttl: FenceCounterTtl,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the URL: it may carry a password.
        let target = match &self.target {
            Target::Url(_) => "url (redacted)".to_owned(),
            Target::Client(c) => c.get_connection_info().addr().to_string(),
        };
        f.debug_struct("RedisBackendBuilder")
            .field("target", &target)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("allow_eviction_policy", &self.allow_eviction_policy)
            .field("fence_counter_ttl", &self.fence_counter_ttl)
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
}

impl RedisBackendBuilder {
    fn new(target: Target) -> Self {
        RedisBackendBuilder {
            target,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            allow_eviction_policy: false,
            fence_counter_ttl: FenceCounterTtl::DEFAULT,
        }
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
        let client = match self.target {
            Target::Client(client) => *client,
            Target::Url(url) => open_client(&url)?,
        };
        #[cfg(feature = "tls")]
        install_crypto_provider(&client);
        let addr = client.get_connection_info().addr().to_string();
        let (ct, rt) = (self.connect_timeout, self.response_timeout);
        let check_policy = !self.allow_eviction_policy;
        let fence_counter_ttl = self.fence_counter_ttl;
        let connected = tokio::time::timeout(ct, async {
            let conn = Connection::open(client.clone(), addr.clone(), ct, rt)
                .await
                .map_err(|e| connect_error(&addr, e))?;
            // The connection setup authenticates; PING catches `NOAUTH` (password missing).
            conn.run(|mut c| async move { redis::cmd("PING").query_async::<Value>(&mut c).await })
                .await
                .map_err(|e| connect_error(&addr, e))?;
            let checked = if check_policy {
                let before = conn.reconnects();
                check_at_connect(&conn, &addr)
                    .await
                    .map_err(|e| connect_error(&addr, e))??;
                Some(before)
            } else {
                None
            };
            let pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| connect_error(&addr, e))?;
            Ok::<_, RedisBackendError>((conn, checked, pubsub))
        })
        .await;
        let (conn, checked, pubsub) = match connected {
            Ok(r) => r?,
            Err(_) => return Err(RedisBackendError::ConnectTimeout { addr, timeout: ct }),
        };
        let gate = PolicyGate::new(addr.clone(), checked);
        let notifier = Notifier::start(client.clone(), pubsub, ct, rt);
        Ok(RedisBackend::from_parts(
            client,
            addr,
            conn,
            gate,
            notifier,
            fence_counter_ttl,
            (ct, rt),
        ))
    }

    /// Every option within its bounds.
    fn validate(&self) -> Result<(), RedisBackendError> {
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
        self.fence_counter_ttl.validate()
    }
}

fn open_client(url: &str) -> Result<Client, RedisBackendError> {
    Client::open(url).map_err(|e| {
        let reason = if url.starts_with("rediss://") && cfg!(not(feature = "tls")) {
            "rediss:// (TLS) needs the `tls` feature of locks-redis".to_owned()
        } else {
            e.to_string()
        };
        RedisBackendError::InvalidUrl {
            reason,
            source: Some(e),
        }
    })
}

/// rustls needs a process-wide crypto provider; install `ring` unless the application did.
#[cfg(feature = "tls")]
fn install_crypto_provider(client: &Client) {
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
