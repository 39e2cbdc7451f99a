//! From a URL to a backend (and its health check): Redis (one server, TLS, ACL users, a
//! cluster) or PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use locks_core::LockBackend;
use locks_core::health::HealthCheck;
use locks_postgres::{PostgresBackend, PostgresBackendError};
use locks_redis::redis::{Client, TlsCertificates};
use locks_redis::{RedisBackend, RedisBackendError};

use crate::error::CliError;

/// A connected store.
pub struct Store {
    /// The lock store.
    pub backend: Arc<dyn LockBackend>,
    /// Its health facts.
    pub health: Arc<dyn HealthCheck>,
}

/// Connect to `url` within `timeout`, trusting the CA certificates of the PEM file `tls_ca`
/// (a `rediss://` URL only) instead of the platform's roots. The eviction policy is
/// *reported* (by `health`), not refused: an operator must be able to look at a
/// misconfigured server.
pub async fn connect(
    url: &str,
    tls_ca: Option<&Path>,
    timeout: Duration,
) -> Result<Store, CliError> {
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
    if tls_ca.is_some() && scheme != "rediss" {
        return Err(CliError::Usage(format!(
            "--tls-ca needs a rediss:// URL (one server), not {:?}",
            redacted(url)
        )));
    }
    match scheme {
        "redis" | "rediss" | "redis+unix" | "unix" => {
            let builder = match tls_ca {
                Some(ca) => RedisBackend::builder_from_client(tls_client(url, ca)?),
                None => RedisBackend::builder(url),
            };
            let backend = builder
                .connect_timeout(timeout)
                .response_timeout(timeout)
                .allow_eviction_policy(true)
                .connect()
                .await
                .map_err(redis_error)?;
            Ok(store(backend))
        }
        "redis+cluster" | "rediss+cluster" => {
            let seeds = cluster_seeds(url)?;
            let backend = RedisBackend::cluster_builder(seeds)
                .connect_timeout(timeout)
                .response_timeout(timeout)
                .allow_eviction_policy(true)
                .connect()
                .await
                .map_err(redis_error)?;
            Ok(store(backend))
        }
        "postgres" | "postgresql" => {
            let backend = PostgresBackend::builder(url)
                .connect_timeout(timeout)
                .connect()
                .await
                .map_err(postgres_error)?;
            Ok(store(backend))
        }
        _ => Err(CliError::Usage(format!(
            "unsupported URL {:?}: use redis://, rediss://, redis+cluster:// or postgres://",
            redacted(url)
        ))),
    }
}

/// The start of a certificate in a PEM file.
const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

/// A client for the `rediss://` `url` that trusts the CA certificates in the PEM file `ca`.
fn tls_client(url: &str, ca: &Path) -> Result<Client, CliError> {
    let root = std::fs::read(ca)
        .map_err(|e| CliError::Usage(format!("--tls-ca {}: {e}", ca.display())))?;
    // The redis crate would take a file without certificates and trust nothing.
    if !root
        .windows(CERTIFICATE.len())
        .any(|w| w == CERTIFICATE.as_bytes())
    {
        return Err(CliError::Usage(format!(
            "--tls-ca {}: no PEM certificate (`{CERTIFICATE}`) in the file",
            ca.display()
        )));
    }
    let certificates = TlsCertificates {
        client_tls: None,
        root_cert: Some(root),
    };
    Client::build_with_tls(url, certificates).map_err(|e| {
        CliError::Usage(format!(
            "{:?} with --tls-ca {}: {e}",
            redacted(url),
            ca.display()
        ))
    })
}

fn store<B: LockBackend + HealthCheck>(backend: B) -> Store {
    let backend = Arc::new(backend);
    Store {
        backend: backend.clone(),
        health: backend,
    }
}

/// `redis+cluster://[user:pass@]h1:p1,h2:p2` → `redis://[user:pass@]h1:p1`, ...
fn cluster_seeds(url: &str) -> Result<Vec<String>, CliError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let plain = scheme.trim_end_matches("+cluster");
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((auth, hosts)) => (format!("{auth}@"), hosts),
        None => (String::new(), rest),
    };
    let seeds: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{plain}://{auth}{h}"))
        .collect();
    if seeds.is_empty() {
        return Err(CliError::Usage(format!(
            "no cluster node in {:?}",
            redacted(url)
        )));
    }
    Ok(seeds)
}

fn redis_error(e: RedisBackendError) -> CliError {
    match e {
        RedisBackendError::InvalidUrl { .. } | RedisBackendError::InvalidOption { .. } => {
            CliError::Usage(e.to_string())
        }
        RedisBackendError::ConnectTimeout { .. }
        | RedisBackendError::Authentication { .. }
        | RedisBackendError::Connect { .. } => CliError::Unreachable(with_source(&e)),
        other => CliError::Failed(with_source(&other)),
    }
}

fn postgres_error(e: PostgresBackendError) -> CliError {
    match e {
        PostgresBackendError::InvalidUrl { .. } | PostgresBackendError::InvalidOption { .. } => {
            CliError::Usage(e.to_string())
        }
        PostgresBackendError::ConnectTimeout { .. } => CliError::Unreachable(e.to_string()),
        other => CliError::Unreachable(with_source(&other)),
    }
}

/// An error and its first cause (`could not connect ...: Connection refused`).
fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// `url` without its password.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redacted("redis://app:s3cret@h:6379/0"),
            "redis://app:***@h:6379/0"
        );
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn cluster_urls_give_one_seed_per_node() {
        assert_eq!(
            cluster_seeds("redis+cluster://u:p@a:1,b:2").unwrap(),
            ["redis://u:p@a:1", "redis://u:p@b:2"]
        );
        assert!(cluster_seeds("redis+cluster://").is_err());
    }
}
