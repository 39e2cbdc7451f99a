//! A real Redis server for tests: private, on a free loopback port, gone on drop.
//!
//! [`RedisServer::start`] picks, in this order:
//!
//! 1. an external server named by the environment variable `LOCKS_TEST_REDIS_URL`
//!    (for example `redis://127.0.0.1:7000`); [`RedisServer::stop`] and
//!    [`RedisServer::restart`] are not supported for it;
//! 2. a local `redis-server` binary (searched on `PATH`, then in `/usr/bin` and
//!    `/usr/local/bin`), started on a free port of `127.0.0.1` in a temporary directory, with
//!    no persistence, its output in a log file of that directory;
//! 3. with the `docker` feature of this crate, a container of the image named by
//!    `LOCKS_TEST_REDIS_IMAGE` (default `redis:7.4`) through `testcontainers`.
//!
//! When none of these works the fixture returns [`FixtureError::NoServer`], whose message says
//! how to fix the machine: a test that needs Redis fails loudly, it never skips silently.
//!
//! The fixture never uses the well-known port 6379, so a shared server running there is neither
//! relied on nor disturbed.
//!
//! The fixture waits with real time: use it from a runtime whose clock is not paused.
//!
//! # Example
//!
//! ```no_run
//! use locks_testkit::redis_server::{RedisServer, RedisServerConfig};
//!
//! # async fn demo() -> Result<(), locks_testkit::redis_server::FixtureError> {
//! // A private server, answering PING when `start` returns.
//! let mut server = RedisServer::start().await?;
//! println!("connect to {}", server.url());
//!
//! // Simulate a crash and a recovery: the data is gone, the address is the same.
//! server.stop().await?;
//! server.restart().await?;
//!
//! // A server with a password and a memory limit.
//! let cfg = RedisServerConfig::new()
//!     .args(["--requirepass", "s3cret"])
//!     .args(["--maxmemory", "64mb"]);
//! let guarded = RedisServer::start_with(cfg).await?;
//! # drop(guarded);
//!
//! // Three independent servers, for Redlock.
//! let servers = RedisServer::start_many(3).await?;
//! assert_eq!(servers.len(), 3);
//! # Ok(())
//! # }
//! ```

// One file per concept: this file holds the public `RedisServer` handle and the constants;
// `discovery.rs` the order of choice (environment URL, local binary, Docker) and the external
// server; `process.rs` a private `redis-server` process (temporary directory, free port,
// stop and restart on the same port); `docker.rs` the container of the `docker` feature;
// `probe.rs` the PING through the `redis` client; `client.rs` what tests do with a running
// server (a connection of their own, pub/sub subscriber counts, options that only a release
// notification serves); `config.rs` and `error.rs` the config and the errors with their fixes;
// `tls.rs` a private server with TLS and the throw-away CA that signed its certificate.

mod client;
mod config;
mod discovery;
mod docker;
mod error;
mod probe;
mod process;
mod tls;

use std::fmt;
use std::time::Duration;

pub use client::{fill_to_oom, notification_only, subscribers, subscribers_reach};
pub use config::RedisServerConfig;
pub use error::FixtureError;
pub use tls::TlsRedisServer;

pub(crate) use discovery::host_and_port;

use process::LocalServer;

/// The environment variable naming an external server (or several, separated by commas).
pub const URL_ENV: &str = "LOCKS_TEST_REDIS_URL";

/// The environment variable overriding the Docker image (`name:tag`) of the `docker` feature.
pub const IMAGE_ENV: &str = "LOCKS_TEST_REDIS_IMAGE";

/// The Docker image used by the `docker` feature when [`IMAGE_ENV`] is not set.
pub const DEFAULT_IMAGE: &str = "redis:7.4";

/// How long [`RedisServer::start`] and [`RedisServer::restart`] wait for a PING answer, and
/// [`RedisServer::stop`] for the port to close, unless the config says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The port of a shared server the fixture must never touch.
const SHARED_PORT: u16 = 6379;

/// The pause between two polls of a server that is starting or stopping.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The advice every "no server" message ends with.
const FIX: &str = "install redis-server (apt-get update && apt-get install -y redis-server), \
                   or set LOCKS_TEST_REDIS_URL=redis://host:port, \
                   or enable the `docker` feature with a Docker engine";

/// A Redis server for one test. Dropping it kills the server and removes its files.
///
/// See the [module documentation](self) for where the server comes from.
pub struct RedisServer {
    backing: Backing,
}

/// Where the server comes from.
enum Backing {
    /// A `redis-server` process of the fixture (killed when it drops).
    Local(Box<LocalServer>),
    /// A server named by `LOCKS_TEST_REDIS_URL`.
    External { url: String, port: u16 },
    /// A container of the `docker` feature (removed when it drops).
    #[cfg(feature = "docker")]
    Docker {
        container: Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
        url: String,
        port: u16,
    },
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisServer");
        d.field("url", &self.url());
        match &self.backing {
            Backing::Local(local) => {
                d.field("kind", &"local");
                local.debug_fields(&mut d);
            }
            Backing::External { .. } => {
                d.field("kind", &"external");
            }
            #[cfg(feature = "docker")]
            Backing::Docker { container, .. } => {
                d.field("kind", &"docker")
                    .field("container", &container.id());
            }
        }
        d.finish()
    }
}

impl RedisServer {
    /// The address to connect to: `redis://127.0.0.1:PORT` for a private server, the URL as
    /// given for an external one.
    pub fn url(&self) -> String {
        match &self.backing {
            Backing::Local(local) => local.url(),
            Backing::External { url, .. } => url.clone(),
            #[cfg(feature = "docker")]
            Backing::Docker { url, .. } => url.clone(),
        }
    }

    /// The TCP port of the server (on `127.0.0.1` for a private server).
    pub fn port(&self) -> u16 {
        match &self.backing {
            Backing::Local(local) => local.port(),
            Backing::External { port, .. } => *port,
            #[cfg(feature = "docker")]
            Backing::Docker { port, .. } => *port,
        }
    }

    /// The process id of a private server while it runs (`None` for an external server or a
    /// container, or after [`stop`](Self::stop)): to pause it (`SIGSTOP`) as a hung server.
    pub fn pid(&self) -> Option<u32> {
        match &self.backing {
            Backing::Local(local) => local.pid(),
            _ => None,
        }
    }

    /// Pauses a private server (SIGSTOP): its connections stay open but it answers nothing,
    /// like a hung process or a partition. [`resume`](Self::resume) undoes it.
    pub async fn pause(&self) -> Result<(), FixtureError> {
        self.signal("-STOP").await
    }

    /// Resumes a server paused by [`pause`](Self::pause) (SIGCONT).
    pub async fn resume(&self) -> Result<(), FixtureError> {
        self.signal("-CONT").await
    }

    async fn signal(&self, signal: &'static str) -> Result<(), FixtureError> {
        let operation = if signal == "-STOP" { "pause" } else { "resume" };
        let Some(pid) = self.pid() else {
            return Err(match &self.backing {
                Backing::Local(local) => FixtureError::Io {
                    context: "pause or resume a server",
                    source: std::io::Error::other(format!(
                        "{} is stopped: restart it first",
                        local.url()
                    )),
                },
                other => other.unsupported(operation),
            });
        };
        let status = tokio::process::Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .await
            .map_err(|source| FixtureError::Io {
                context: "run kill(1) to pause or resume a server",
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(FixtureError::Io {
                context: "pause or resume a server with kill(1)",
                source: std::io::Error::other(format!("kill {signal} {pid}: {status}")),
            })
        }
    }

    /// The working directory of a private server (`None` otherwise).
    pub fn dir(&self) -> Option<&std::path::Path> {
        match &self.backing {
            Backing::Local(local) => Some(local.dir()),
            _ => None,
        }
    }

    /// Whether the server came from `LOCKS_TEST_REDIS_URL` (and so cannot be stopped or
    /// restarted by the fixture).
    pub fn is_external(&self) -> bool {
        matches!(self.backing, Backing::External { .. })
    }

    /// Kills the server (SIGKILL, as a crash would) and waits until its port refuses
    /// connections. The port stays reserved for [`RedisServer::restart`]. Stopping a stopped
    /// server does nothing.
    pub async fn stop(&mut self) -> Result<(), FixtureError> {
        match &mut self.backing {
            Backing::Local(local) => local.stop().await,
            other => Err(other.unsupported("stop")),
        }
    }

    /// Starts the server again on the same port, empty (nothing was persisted), with the same
    /// arguments, and waits until it answers PING. A running server is stopped first.
    pub async fn restart(&mut self) -> Result<(), FixtureError> {
        match &mut self.backing {
            Backing::Local(local) => local.restart().await,
            other => Err(other.unsupported("restart")),
        }
    }
}

impl Backing {
    fn unsupported(&self, operation: &'static str) -> FixtureError {
        let (what, url) = match self {
            Backing::Local(local) => ("a local server", local.url()),
            Backing::External { url, .. } => ("an external server", url.clone()),
            #[cfg(feature = "docker")]
            Backing::Docker { url, .. } => ("a Docker container", url.clone()),
        };
        FixtureError::Unsupported {
            operation,
            what,
            url,
        }
    }
}
