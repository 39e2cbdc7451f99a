//! Opening a backend's connections for its target (one server, Sentinel, cluster): the
//! command connection (checked with `PING`), the eviction-policy check, and the release
//! subscription, all within the connect timeout.

use std::sync::Arc;
use std::time::Duration;

use redis::{Client, Value};

use crate::backend::Notifiers;
use crate::connection::Connection;
use crate::error::{RedisBackendError, connect_error};
use crate::policy::check_at_connect;
use crate::pubsub::Notifier;
use crate::topology::Source;

/// Where a builder connects to.
pub(crate) enum Target {
    /// One server, by URL.
    Url(String),
    /// One server, by client.
    Client(Box<Client>),
    /// A cluster, by seed node URLs.
    #[cfg(feature = "cluster")]
    Cluster(Vec<String>),
    /// The primary named by these Sentinels for this master name.
    #[cfg(feature = "sentinel")]
    Sentinel {
        /// The Sentinels' URLs.
        urls: Vec<String>,
        /// The monitored master's name.
        master: String,
        /// The data nodes' user (if any) and password.
        node_auth: Option<(Option<String>, String)>,
    },
}

impl Target {
    /// What `Debug` of a builder shows (never a password).
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Url(_) => "url (redacted)".to_owned(),
            Target::Client(c) => c.get_connection_info().addr().to_string(),
            #[cfg(feature = "cluster")]
            Target::Cluster(urls) => format!("cluster of {} seed url(s) (redacted)", urls.len()),
            #[cfg(feature = "sentinel")]
            Target::Sentinel { urls, master, .. } => {
                format!(
                    "sentinel master {master:?} via {} url(s) (redacted)",
                    urls.len()
                )
            }
        }
    }
}

/// What [`open`] made.
pub(crate) struct Parts {
    pub(crate) source: Arc<Source>,
    pub(crate) addr: String,
    pub(crate) conn: Arc<Connection>,
    /// The reconnection count when the policy was checked (`None`: not checked).
    pub(crate) checked: Option<u64>,
    pub(crate) notifier: Notifiers,
}

/// `url` as a client, or the typed error.
pub(crate) fn open_client(url: &str) -> Result<Client, RedisBackendError> {
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

/// The address of every URL (`host:port`), for logs and errors, checked to parse.
#[cfg(any(feature = "cluster", feature = "sentinel"))]
fn addrs(urls: &[String], what: &str) -> Result<String, RedisBackendError> {
    if urls.is_empty() {
        return Err(RedisBackendError::InvalidUrl {
            reason: format!("no {what} URL given"),
            source: None,
        });
    }
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        out.push(open_client(url)?.get_connection_info().addr().to_string());
    }
    Ok(out.join(","))
}

/// Whether `url` asks for RESP3 (`?protocol=resp3`).
fn resp3(client: &Client) -> bool {
    client
        .get_connection_info()
        .redis_settings()
        .protocol()
        .supports_resp3()
}

/// The source of `target`, its address for logs, and whether it speaks RESP3.
fn source(
    target: Target,
    (ct, rt): (Duration, Duration),
) -> Result<(Source, String, bool), RedisBackendError> {
    let client = match target {
        Target::Client(client) => *client,
        Target::Url(url) => open_client(&url)?,
        #[cfg(feature = "cluster")]
        Target::Cluster(urls) => {
            let addr = format!("cluster:{}", addrs(&urls, "cluster seed")?);
            let client = redis::cluster::ClusterClientBuilder::new(urls)
                .connection_timeout(ct)
                .response_timeout(rt)
                .build()
                .map_err(|e| RedisBackendError::InvalidUrl {
                    reason: e.to_string(),
                    source: Some(e),
                })?;
            return Ok((Source::Cluster(client), addr, false));
        }
        #[cfg(feature = "sentinel")]
        Target::Sentinel {
            urls,
            master,
            node_auth,
        } => {
            let addr = format!("sentinel:{master}@{}", addrs(&urls, "sentinel")?);
            let node = node_auth.map(|(user, password)| {
                let mut info = redis::RedisConnectionInfo::default().set_password(password);
                if let Some(user) = user {
                    info = info.set_username(user);
                }
                redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(info)
            });
            let resp3 = urls
                .first()
                .and_then(|u| Client::open(u.as_str()).ok())
                .is_some_and(|c| resp3(&c));
            let client = redis::sentinel::SentinelClient::build(
                urls,
                master.clone(),
                node,
                redis::sentinel::SentinelServerType::Master,
            )
            .map_err(|e| RedisBackendError::InvalidUrl {
                reason: e.to_string(),
                source: Some(e),
            })?;
            let _ = (ct, rt);
            return Ok((
                Source::Sentinel(Box::new(tokio::sync::Mutex::new(client))),
                addr,
                resp3,
            ));
        }
    };
    let _ = (ct, rt);
    #[cfg(feature = "tls")]
    crate::builder::install_crypto_provider(&client);
    let addr = client.get_connection_info().addr().to_string();
    let resp3 = resp3(&client);
    Ok((Source::Single(client), addr, resp3))
}

/// Open the connections of `target` within the connect timeout; `check_policy`: read the
/// eviction policy.
pub(crate) async fn open(
    target: Target,
    (ct, rt): (Duration, Duration),
    check_policy: bool,
) -> Result<Parts, RedisBackendError> {
    #[cfg(feature = "cluster")]
    let seeds = match &target {
        Target::Cluster(urls) => Some(urls.clone()),
        _ => None,
    };
    let (source, addr, resp3) = source(target, (ct, rt))?;
    let source = Arc::new(source);
    let connected = tokio::time::timeout(ct, async {
        let conn = Connection::open(Arc::clone(&source), addr.clone(), resp3, (ct, rt))
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
        #[cfg(feature = "cluster")]
        if let Some(seeds) = seeds {
            let notifier = crate::sharded::open(seeds, (ct, rt))
                .await
                .map_err(|e| connect_error(&addr, e))?;
            return Ok::<_, RedisBackendError>((conn, checked, Notifiers::Cluster(notifier)));
        }
        let client = match source.primary_client().await {
            Some(client) => client.map_err(|e| connect_error(&addr, e))?,
            None => {
                return Err(RedisBackendError::InvalidUrl {
                    reason: "no server to subscribe on".into(),
                    source: None,
                });
            }
        };
        let pubsub = client
            .get_async_pubsub()
            .await
            .map_err(|e| connect_error(&addr, e))?;
        let notifier = Notifier::start(Arc::clone(&source), pubsub, ct, rt);
        Ok((conn, checked, Notifiers::Single(notifier)))
    })
    .await;
    let (conn, checked, notifier) = match connected {
        Ok(r) => r?,
        Err(_) => return Err(RedisBackendError::ConnectTimeout { addr, timeout: ct }),
    };
    Ok(Parts {
        source,
        addr,
        conn,
        checked,
        notifier,
    })
}
