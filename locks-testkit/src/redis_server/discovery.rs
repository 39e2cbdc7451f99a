//! Where a server comes from, in order: the external server(s) named by `LOCKS_TEST_REDIS_URL`,
//! a local `redis-server` binary, then (feature `docker`) a container; none of them is
//! [`FixtureError::NoServer`], whose message names the three fixes.

use redis::{ConnectionAddr, IntoConnectionInfo};

use super::docker::start_docker;
use super::probe::ping;
use super::process::{LocalServer, find_binary};
use super::{Backing, FixtureError, RedisServer, RedisServerConfig, URL_ENV};

impl RedisServer {
    /// Provides a server with the default config: see [`RedisServer::start_with`].
    pub async fn start() -> Result<RedisServer, FixtureError> {
        Self::start_with(RedisServerConfig::default()).await
    }

    /// Provides a server: the external one of `LOCKS_TEST_REDIS_URL` (unless `cfg` asks for a
    /// private one), else a local `redis-server`, else (feature `docker`) a container. Returns
    /// once the server answers PING.
    pub async fn start_with(cfg: RedisServerConfig) -> Result<RedisServer, FixtureError> {
        if !cfg.wants_private()
            && let Some(urls) = external_urls()?
            && let Some(url) = urls.into_iter().next()
        {
            return Self::external(url).await;
        }
        Self::start_private(&cfg).await
    }

    /// Provides `n` independent servers (for Redlock). With `LOCKS_TEST_REDIS_URL` set, it must
    /// list at least `n` comma-separated URLs.
    pub async fn start_many(n: usize) -> Result<Vec<RedisServer>, FixtureError> {
        if let Some(urls) = external_urls()? {
            if urls.len() < n {
                return Err(FixtureError::NotEnoughExternal {
                    needed: n,
                    available: urls.len(),
                });
            }
            let mut servers = Vec::with_capacity(n);
            for url in urls.into_iter().take(n) {
                servers.push(Self::external(url).await?);
            }
            return Ok(servers);
        }
        let cfg = RedisServerConfig::default();
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            servers.push(Self::start_private(&cfg).await?);
        }
        Ok(servers)
    }

    /// The external server at `url`, once it answers PING.
    pub(super) async fn external(url: String) -> Result<RedisServer, FixtureError> {
        let (_, port) = host_and_port(&url)?;
        if let Err(reason) = ping(url.as_str()).await {
            return Err(FixtureError::ExternalUnreachable { url, reason });
        }
        Ok(RedisServer {
            backing: Backing::External { url, port },
        })
    }

    /// A local `redis-server` (the configured binary, or the one found on the machine), else a
    /// container, else [`FixtureError::NoServer`].
    async fn start_private(cfg: &RedisServerConfig) -> Result<RedisServer, FixtureError> {
        let binary = match &cfg.binary {
            Some(path) if path.is_file() => Some(path.clone()),
            Some(path) => return Err(FixtureError::BinaryNotFound { path: path.clone() }),
            None => find_binary(),
        };
        if let Some(binary) = binary {
            let local = LocalServer::start(binary, cfg).await?;
            return Ok(RedisServer {
                backing: Backing::Local(Box::new(local)),
            });
        }
        start_docker(cfg).await
    }
}

/// The URLs listed in `LOCKS_TEST_REDIS_URL`, if it is set and not blank.
fn external_urls() -> Result<Option<Vec<String>>, FixtureError> {
    let Ok(value) = std::env::var(URL_ENV) else {
        return Ok(None);
    };
    let urls: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    for url in &urls {
        host_and_port(url)?;
    }
    Ok(Some(urls))
}

/// Host and port of a Redis URL (`redis://[user[:password]@]host[:port][/db]`, port 6379 by
/// default), as the `redis` crate reads it.
pub(crate) fn host_and_port(url: &str) -> Result<(String, u16), FixtureError> {
    let bad = |reason: String| FixtureError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let info = url.into_connection_info().map_err(|e| bad(e.to_string()))?;
    let (host, port) = match info.addr() {
        ConnectionAddr::Tcp(host, port) => (host, *port),
        ConnectionAddr::TcpTls { host, port, .. } => (host, *port),
        other => return Err(bad(format!("{other} is not a TCP address"))),
    };
    if host.is_empty() {
        return Err(bad("no host".to_owned()));
    }
    if port == 0 {
        return Err(bad("port 0 is not a port a server listens on".to_owned()));
    }
    Ok((host.clone(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_server::process::{release_port, reserve_free_port};

    #[test]
    fn parses_urls() {
        let parsed = |url: &str| host_and_port(url).ok();
        assert_eq!(
            parsed("redis://127.0.0.1:7000"),
            Some(("127.0.0.1".to_owned(), 7000))
        );
        assert_eq!(
            parsed("redis://:pw@example.invalid:7001/2"),
            Some(("example.invalid".to_owned(), 7001))
        );
        assert_eq!(
            parsed("redis://user:pw@example.invalid:7003/0"),
            Some(("example.invalid".to_owned(), 7003))
        );
        assert_eq!(parsed("redis://[::1]:7002"), Some(("::1".to_owned(), 7002)));
        assert_eq!(parsed("redis://host"), Some(("host".to_owned(), 6379)));
        for bad in [
            "http://host:1",
            "redis://host:notaport",
            "redis://:1",
            "redis://host:0",
            "redis+unix:///tmp/redis.sock",
            "not a url",
        ] {
            let err = host_and_port(bad);
            assert!(
                matches!(err, Err(FixtureError::BadUrl { .. })),
                "{bad}: {err:?}"
            );
        }
    }

    /// The external path, pointed at a private server: it answers, and refuses stop/restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn external_server_refuses_stop_and_restart() {
        let private = RedisServer::start_with(RedisServerConfig::new().local_only())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut external = RedisServer::external(private.url())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(external.is_external());
        assert_eq!(external.port(), private.port());
        assert_eq!(external.url(), private.url());
        let err = external.stop().await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|m| m.contains("not supported for an external server")),
            "{err:?}"
        );
        let err = external.restart().await.err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|m| m.contains("not supported for an external server")),
            "{err:?}"
        );
        drop(external);
        // Dropping the external handle must not have stopped the private server.
        assert_eq!(ping(private.url()).await, Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn external_unreachable_is_typed() {
        // A port just released by us: nothing listens there.
        let port = reserve_free_port().unwrap_or_else(|e| panic!("{e}"));
        release_port(port);
        let err = RedisServer::external(format!("redis://127.0.0.1:{port}"))
            .await
            .err();
        assert!(
            matches!(err, Some(FixtureError::ExternalUnreachable { .. })),
            "{err:?}"
        );
    }
}
