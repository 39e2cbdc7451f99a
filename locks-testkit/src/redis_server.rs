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

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

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

/// How many fresh ports a start tries before giving up (a port can be taken between the moment
/// it is found free and the moment the server binds it).
const PORT_ATTEMPTS: usize = 5;

/// The pause between two polls of a server that is starting or stopping.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long one PING attempt may take before the next one.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// How many bytes of the server log an error carries.
const LOG_TAIL_BYTES: u64 = 4096;

/// The line Redis (4.0 and later) logs once it listens.
const READY_LINE: &str = "ready to accept connections";

/// The advice every "no server" message ends with.
const FIX: &str = "install redis-server (apt-get update && apt-get install -y redis-server), \
                   or set LOCKS_TEST_REDIS_URL=redis://host:port, \
                   or enable the `docker` feature with a Docker engine";

/// Ports held by the servers of this process, so that two fixtures never share one and a
/// stopped server keeps its port for [`RedisServer::restart`].
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Why the fixture could not provide, stop or restart a server. Every message says how to fix
/// the cause.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// No way to get a server worked: no external URL, no `redis-server` binary, no Docker.
    #[error("no Redis server available for the tests{detail}: {FIX}")]
    NoServer {
        /// What was tried and why it failed (empty, or starting with "; ").
        detail: String,
    },

    /// The `redis-server` binary named by [`RedisServerConfig::binary`] does not exist.
    #[error("redis-server binary not found at {}: {FIX}", path.display())]
    BinaryNotFound {
        /// The path that was given.
        path: PathBuf,
    },

    /// The `redis-server` binary exists but could not be run.
    #[error(
        "could not run {} ({source}): check that it is an executable redis-server, \
         or {FIX}",
        path.display()
    )]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },

    /// The server process exited before it answered PING.
    #[error(
        "redis-server on 127.0.0.1:{port} exited before answering PING ({status}); \
         check the extra arguments and the log below, or {FIX}\n--- server log (tail) ---\n{log_tail}"
    )]
    Exited {
        /// The port it was given.
        port: u16,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log_tail: String,
    },

    /// The server did not answer PING in time.
    #[error(
        "redis-server on 127.0.0.1:{port} did not answer PING within {timeout:?}; \
         the machine may be overloaded (raise RedisServerConfig::timeout) or the server \
         misconfigured (see the log below)\n--- server log (tail) ---\n{log_tail}"
    )]
    NotReady {
        /// The port it was given.
        port: u16,
        /// How long the fixture waited.
        timeout: Duration,
        /// The end of its log.
        log_tail: String,
    },

    /// Every free port found was taken before the server could bind it.
    #[error(
        "redis-server could not bind a free loopback port after {attempts} attempts; \
         free some ports or retry\n--- server log (tail) ---\n{log_tail}"
    )]
    PortsExhausted {
        /// How many ports were tried.
        attempts: usize,
        /// The end of the log of the last attempt.
        log_tail: String,
    },

    /// The port of a stopped server still accepts connections.
    #[error(
        "127.0.0.1:{port} still accepts connections {timeout:?} after redis-server was \
         killed; another process may be listening there"
    )]
    StillListening {
        /// The port.
        port: u16,
        /// How long the fixture waited.
        timeout: Duration,
    },

    /// The operation needs a server the fixture started itself.
    #[error(
        "{operation} is not supported for {what} ({url}); unset {URL_ENV} or use \
         RedisServerConfig::local_only() to get a private redis-server"
    )]
    Unsupported {
        /// The operation, `stop` or `restart`.
        operation: &'static str,
        /// The kind of server: "an external server" or "a Docker container".
        what: &'static str,
        /// Its address.
        url: String,
    },

    /// `LOCKS_TEST_REDIS_URL` is not a usable `redis://host:port` URL.
    #[error(
        "{URL_ENV}={url:?} is not a usable Redis URL ({reason}); set it to \
         redis://host:port, or unset it to start a private redis-server"
    )]
    BadUrl {
        /// The value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The external server does not answer.
    #[error(
        "the external Redis server {url} (from {URL_ENV}) does not answer: {reason}; \
         start it, fix the URL, or unset {URL_ENV} to start a private redis-server"
    )]
    ExternalUnreachable {
        /// Its URL.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// `LOCKS_TEST_REDIS_URL` names fewer servers than [`RedisServer::start_many`] needs.
    #[error(
        "{needed} independent Redis servers are needed but {URL_ENV} names {available}; \
         list {needed} comma-separated URLs, or unset {URL_ENV} to start private redis-servers"
    )]
    NotEnoughExternal {
        /// How many servers were asked for.
        needed: usize,
        /// How many URLs the variable holds.
        available: usize,
    },

    /// A file operation of the fixture itself failed (temporary directory, log file).
    #[error("redis fixture: could not {context}: {source}; check the temporary directory (TMPDIR)")]
    Io {
        /// What the fixture was doing.
        context: &'static str,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },

    /// Docker could not start a Redis container.
    #[cfg(feature = "docker")]
    #[error(
        "could not start a Redis container ({image}): {source}; start the Docker engine, \
         set {IMAGE_ENV} to a pullable image, or {FIX}"
    )]
    Docker {
        /// The image.
        image: String,
        /// The error of `testcontainers`.
        #[source]
        source: testcontainers::TestcontainersError,
    },
}

/// How to start a private server. Built with [`RedisServerConfig::new`] (or `Default`) and its
/// chained methods.
///
/// A config with extra arguments or an explicit binary always gets a private server: an
/// external server from `LOCKS_TEST_REDIS_URL` could not honour them.
#[derive(Debug, Clone)]
pub struct RedisServerConfig {
    args: Vec<String>,
    binary: Option<PathBuf>,
    local_only: bool,
    timeout: Duration,
}

impl Default for RedisServerConfig {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            binary: None,
            local_only: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl RedisServerConfig {
    /// The default config: no extra argument, the binary found on the machine, a 10 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one argument to the `redis-server` command line, after the fixture's own
    /// (so it can override them), e.g. `.arg("--maxmemory").arg("64mb")`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments to the `redis-server` command line, e.g.
    /// `.args(["--requirepass", "s3cret"])`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs this `redis-server` binary instead of searching the machine for one.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Ignores `LOCKS_TEST_REDIS_URL`: always starts a private server, as tests that
    /// [`stop`](RedisServer::stop) or [`restart`](RedisServer::restart) it need.
    pub fn local_only(mut self) -> Self {
        self.local_only = true;
        self
    }

    /// How long to wait for the server to answer PING (and, on stop, for its port to close).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn wants_private(&self) -> bool {
        self.local_only || self.binary.is_some() || !self.args.is_empty()
    }
}

/// A Redis server for one test. Dropping it kills the server and removes its files.
///
/// See the [module documentation](self) for where the server comes from.
pub struct RedisServer {
    backing: Backing,
}

enum Backing {
    Local(Box<LocalServer>),
    External {
        url: String,
        port: u16,
    },
    #[cfg(feature = "docker")]
    Docker {
        container: Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
        url: String,
        port: u16,
    },
}

/// A `redis-server` process the fixture owns.
struct LocalServer {
    binary: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    runs: u32,
    // Last, so the directory is removed after the process is killed.
    dir: TempDir,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RedisServer");
        d.field("url", &self.url());
        match &self.backing {
            Backing::Local(local) => {
                d.field("kind", &"local")
                    .field("binary", &local.binary)
                    .field("pid", &local.child.as_ref().and_then(Child::id))
                    .field("dir", &local.dir.path())
                    .field("log", &local.log);
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
    /// Provides a server with the default config: see [`RedisServer::start_with`].
    pub async fn start() -> Result<RedisServer, FixtureError> {
        Self::start_with(RedisServerConfig::default()).await
    }

    /// Provides a server: the external one of `LOCKS_TEST_REDIS_URL` (unless `cfg` asks for a
    /// private one), else a local `redis-server`, else (feature `docker`) a container. Returns
    /// once the server answers PING.
    pub async fn start_with(cfg: RedisServerConfig) -> Result<RedisServer, FixtureError> {
        if !cfg.wants_private() {
            if let Some(urls) = external_urls()? {
                if let Some(url) = urls.into_iter().next() {
                    return Self::external(url).await;
                }
            }
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

    /// The address to connect to: `redis://127.0.0.1:PORT` for a private server, the URL as
    /// given for an external one.
    pub fn url(&self) -> String {
        match &self.backing {
            Backing::Local(local) => format!("redis://127.0.0.1:{}", local.port),
            Backing::External { url, .. } => url.clone(),
            #[cfg(feature = "docker")]
            Backing::Docker { url, .. } => url.clone(),
        }
    }

    /// The TCP port of the server (on `127.0.0.1` for a private server).
    pub fn port(&self) -> u16 {
        match &self.backing {
            Backing::Local(local) => local.port,
            Backing::External { port, .. } => *port,
            #[cfg(feature = "docker")]
            Backing::Docker { port, .. } => *port,
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
            Backing::Local(local) => {
                local.stop().await?;
                local.spawn_and_wait().await
            }
            other => Err(other.unsupported("restart")),
        }
    }

    async fn external(url: String) -> Result<RedisServer, FixtureError> {
        let (host, port) = parse_url(&url)?;
        let reply = ping(&host, port)
            .await
            .map_err(|e| FixtureError::ExternalUnreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !is_alive_reply(&reply) {
            return Err(FixtureError::ExternalUnreachable {
                url,
                reason: format!("PING was answered with {reply:?}"),
            });
        }
        Ok(RedisServer {
            backing: Backing::External { url, port },
        })
    }

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
        Self::start_docker(cfg).await
    }

    #[cfg(not(feature = "docker"))]
    async fn start_docker(_cfg: &RedisServerConfig) -> Result<RedisServer, FixtureError> {
        Err(FixtureError::NoServer {
            detail: "; no redis-server binary on PATH, in /usr/bin or /usr/local/bin, \
                     no LOCKS_TEST_REDIS_URL, and the `docker` feature is off"
                .to_owned(),
        })
    }

    #[cfg(feature = "docker")]
    async fn start_docker(cfg: &RedisServerConfig) -> Result<RedisServer, FixtureError> {
        use testcontainers::core::{IntoContainerPort, WaitFor};
        use testcontainers::runners::AsyncRunner;
        use testcontainers::{GenericImage, ImageExt};

        let image = std::env::var(IMAGE_ENV)
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
        let (name, tag) = split_image(&image);
        let mut cmd: Vec<String> = ["redis-server", "--save", "", "--appendonly", "no"]
            .into_iter()
            .map(str::to_owned)
            .collect();
        cmd.extend(cfg.args.iter().cloned());
        let docker_err = |source| FixtureError::Docker {
            image: image.clone(),
            source,
        };
        let container = GenericImage::new(name, tag)
            .with_exposed_port(6379.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_cmd(cmd)
            .with_startup_timeout(cfg.timeout.max(Duration::from_secs(60)))
            .start()
            .await
            .map_err(docker_err)?;
        let host = container.get_host().await.map_err(docker_err)?.to_string();
        let port = container
            .get_host_port_ipv4(6379.tcp())
            .await
            .map_err(docker_err)?;
        let deadline = Instant::now() + cfg.timeout;
        loop {
            if let Ok(reply) = ping(&host, port).await {
                if is_alive_reply(&reply) {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(FixtureError::NotReady {
                    port,
                    timeout: cfg.timeout,
                    log_tail: format!("(container {} of {image})", container.id()),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        Ok(RedisServer {
            backing: Backing::Docker {
                container: Box::new(container),
                url: format!("redis://{host}:{port}"),
                port,
            },
        })
    }
}

impl Backing {
    fn unsupported(&self, operation: &'static str) -> FixtureError {
        let (what, url) = match self {
            Backing::Local(local) => ("a local server", format!("127.0.0.1:{}", local.port)),
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

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Backing::Local(local) = &mut self.backing {
            if let Some(child) = local.child.as_mut() {
                // Errors mean the process is already gone; tokio reaps it in the background.
                let _ = child.start_kill();
            }
            release_port(local.port);
        }
        // The temporary directory (and a container) are removed when the fields drop.
    }
}

impl LocalServer {
    async fn start(binary: PathBuf, cfg: &RedisServerConfig) -> Result<LocalServer, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("locks-redis-")
            .tempdir()
            .map_err(|source| FixtureError::Io {
                context: "create a temporary directory",
                source,
            })?;
        let mut last_tail = String::new();
        let mut server = LocalServer {
            binary,
            args: cfg.args.clone(),
            timeout: cfg.timeout,
            port: 0,
            child: None,
            log: PathBuf::new(),
            runs: 0,
            dir,
        };
        for _ in 0..PORT_ATTEMPTS {
            server.port = reserve_free_port()?;
            match server.spawn_and_wait().await {
                Ok(()) => return Ok(server),
                Err(FixtureError::Exited { log_tail, .. }) if is_bind_failure(&log_tail) => {
                    // Someone took the port between our check and the server's bind: retry.
                    release_port(server.port);
                    last_tail = log_tail;
                }
                Err(e) => {
                    release_port(server.port);
                    return Err(e);
                }
            }
        }
        Err(FixtureError::PortsExhausted {
            attempts: PORT_ATTEMPTS,
            log_tail: last_tail,
        })
    }

    /// Spawns the process on `self.port` with a fresh log file and waits until it answers.
    async fn spawn_and_wait(&mut self) -> Result<(), FixtureError> {
        self.runs += 1;
        self.log = self.dir.path().join(format!("redis-{}.log", self.runs));
        // Leftovers would make a restarted server non-empty.
        for leftover in ["dump.rdb", "appendonly.aof"] {
            let _ = std::fs::remove_file(self.dir.path().join(leftover));
        }
        let _ = std::fs::remove_dir_all(self.dir.path().join("appendonlydir"));

        let log = File::create(&self.log).map_err(|source| FixtureError::Io {
            context: "create the server log file",
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| FixtureError::Io {
            context: "duplicate the server log file handle",
            source,
        })?;
        let port = self.port.to_string();
        let mut command = Command::new(&self.binary);
        command
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| FixtureError::Spawn {
            path: self.binary.clone(),
            source,
        })?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Polls until the process logs that it listens and answers PING, or exits, or time runs out.
    async fn wait_ready(&mut self) -> Result<(), FixtureError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(FixtureError::Exited {
                        port: self.port,
                        status: status.to_string(),
                        log_tail: log_tail(&self.log),
                    });
                }
            }
            // The log line proves that *our* process bound the port, not another one.
            if log_contains_ready(&self.log) {
                if let Ok(reply) = ping("127.0.0.1", self.port).await {
                    if is_alive_reply(&reply) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() >= deadline {
                self.kill().await;
                return Err(FixtureError::NotReady {
                    port: self.port,
                    timeout: self.timeout,
                    log_tail: log_tail(&self.log),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means the process had already exited.
            let _ = child.kill().await;
        }
    }

    async fn stop(&mut self) -> Result<(), FixtureError> {
        self.kill().await;
        let deadline = Instant::now() + self.timeout;
        loop {
            if connect("127.0.0.1", self.port).await.is_err() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(FixtureError::StillListening {
                    port: self.port,
                    timeout: self.timeout,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
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
        parse_url(url)?;
    }
    Ok(Some(urls))
}

/// Host and port of a `redis://[user[:password]@]host[:port][/db]` URL.
fn parse_url(url: &str) -> Result<(String, u16), FixtureError> {
    let bad = |reason: &str| FixtureError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("only redis:// URLs are supported"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        // [IPv6]:port
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in the host"))?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number from 1 to 65535"))?,
        None => SHARED_PORT,
    };
    if port == 0 {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    Ok((host.to_owned(), port))
}

/// The `redis-server` binary on `PATH`, else in `/usr/bin` or `/usr/local/bin`.
fn find_binary() -> Option<PathBuf> {
    let name = OsStr::new("redis-server");
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds a loopback port nobody listens on and that no fixture of this process holds, and
/// reserves it.
fn reserve_free_port() -> Result<u16, FixtureError> {
    let mut last_error = None;
    for _ in 0..64 {
        let port = match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .and_then(|listener| listener.local_addr())
        {
            Ok(addr) => addr.port(),
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        if port == SHARED_PORT {
            continue;
        }
        let mut reserved = RESERVED_PORTS
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if reserved.insert(port) {
            return Ok(port);
        }
    }
    Err(FixtureError::Io {
        context: "find a free port on 127.0.0.1",
        source: last_error.unwrap_or_else(|| io::Error::other("every port found was in use")),
    })
}

fn release_port(port: u16) {
    RESERVED_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&port);
}

async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    match tokio::time::timeout(PING_TIMEOUT, TcpStream::connect((host, port))).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Sends an inline `PING` and returns the first reply line, without its `\r\n`.
async fn ping(host: &str, port: u16) -> io::Result<String> {
    let exchange = async {
        let mut stream = TcpStream::connect((host, port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = Vec::new();
        let mut buf = [0_u8; 256];
        while !reply.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a reply",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if reply.len() > 4096 {
                break;
            }
        }
        let line = String::from_utf8_lossy(&reply);
        Ok(line.lines().next().unwrap_or_default().to_owned())
    };
    match tokio::time::timeout(PING_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "PING timed out")),
    }
}

/// `+PONG`, or `-NOAUTH` from a server with a password: either way it serves commands.
fn is_alive_reply(reply: &str) -> bool {
    reply == "+PONG" || reply.starts_with("-NOAUTH")
}

fn is_bind_failure(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("could not create server tcp")
}

fn log_contains_ready(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .to_ascii_lowercase()
                .contains(READY_LINE)
        })
        .unwrap_or(false)
}

/// The last few kilobytes of a log file, or a note saying why there are none.
fn log_tail(path: &Path) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(tail) if tail.trim().is_empty() => format!("({} is empty)", path.display()),
        Ok(tail) => tail,
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// `name:tag` → (`name`, `tag`), where a `:` before the last `/` belongs to a registry host.
#[cfg(feature = "docker")]
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            parse_url("redis://127.0.0.1:7000").ok(),
            Some(("127.0.0.1".to_owned(), 7000))
        );
        assert_eq!(
            parse_url("redis://:pw@example.invalid:7001/2").ok(),
            Some(("example.invalid".to_owned(), 7001))
        );
        assert_eq!(
            parse_url("redis://[::1]:7002").ok(),
            Some(("::1".to_owned(), 7002))
        );
        assert_eq!(
            parse_url("redis://host").ok(),
            Some(("host".to_owned(), 6379))
        );
        assert!(matches!(
            parse_url("http://host:1"),
            Err(FixtureError::BadUrl { .. })
        ));
        assert!(matches!(
            parse_url("redis://host:notaport"),
            Err(FixtureError::BadUrl { .. })
        ));
        assert!(matches!(
            parse_url("redis://:1"),
            Err(FixtureError::BadUrl { .. })
        ));
    }

    #[test]
    fn alive_replies() {
        assert!(is_alive_reply("+PONG"));
        assert!(is_alive_reply("-NOAUTH Authentication required."));
        assert!(!is_alive_reply(
            "-LOADING Redis is loading the dataset in memory"
        ));
    }

    #[test]
    fn reserved_ports_are_distinct_and_never_6379() {
        let ports: Vec<u16> = (0..8).filter_map(|_| reserve_free_port().ok()).collect();
        assert_eq!(ports.len(), 8);
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(!unique.contains(&SHARED_PORT));
        for port in ports {
            release_port(port);
        }
    }

    #[cfg(feature = "docker")]
    #[test]
    fn splits_images() {
        assert_eq!(
            split_image("redis:7.4"),
            ("redis".to_owned(), "7.4".to_owned())
        );
        assert_eq!(
            split_image("registry:5000/redis"),
            ("registry:5000/redis".to_owned(), "latest".to_owned())
        );
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
        assert_eq!(
            ping("127.0.0.1", private.port()).await.ok().as_deref(),
            Some("+PONG")
        );
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
