//! A private `redis-server` process: a temporary directory, a free loopback port reserved for
//! the life of the fixture, a log file per run, and stop/restart on the same port.

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
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::probe::ping;
use super::{FixtureError, POLL_INTERVAL, RedisServerConfig, SHARED_PORT};

/// How many fresh ports a start tries before giving up (a port can be taken between the moment
/// it is found free and the moment the server binds it).
const PORT_ATTEMPTS: usize = 5;

/// How long one probe of a stopped server's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How many bytes of the server log an error carries.
const LOG_TAIL_BYTES: u64 = 4096;

/// The line Redis (4.0 and later) logs once it listens.
const READY_LINE: &str = "ready to accept connections";

/// The line a Sentinel logs once it listens (it never logs [`READY_LINE`]).
const SENTINEL_READY_LINE: &str = "sentinel id is";

/// Ports held by the servers of this process, so that two fixtures never share one and a
/// stopped server keeps its port for a restart.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A `redis-server` process the fixture owns. Dropping it kills the process, gives its port
/// back and removes its directory.
pub(super) struct LocalServer {
    binary: PathBuf,
    config_file: Option<PathBuf>,
    args: Vec<String>,
    timeout: Duration,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    runs: u32,
    // Last, so the directory is removed after the process is killed.
    dir: TempDir,
}

impl LocalServer {
    /// `redis://127.0.0.1:PORT`.
    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the running server, if it runs.
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The server's temporary directory (its working directory: `--dir`).
    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What `RedisServer`'s `Debug` shows of a local server.
    pub(super) fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("binary", &self.binary)
            .field("pid", &self.child.as_ref().and_then(Child::id))
            .field("dir", &self.dir.path())
            .field("log", &self.log);
    }

    /// Stops the process, then starts it again on the same port, empty.
    pub(super) async fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// Starts `binary` on a free port in a new temporary directory and waits until it answers
    /// PING; retries on another port when the one found free was taken meanwhile.
    pub(super) async fn start(
        binary: PathBuf,
        cfg: &RedisServerConfig,
    ) -> Result<LocalServer, FixtureError> {
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
            config_file: cfg.config_file.clone(),
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
                    release_port(std::mem::take(&mut server.port));
                    last_tail = log_tail;
                }
                Err(e) => {
                    release_port(std::mem::take(&mut server.port));
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
        command.args(&self.config_file);
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
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(FixtureError::Exited {
                    port: self.port,
                    status: status.to_string(),
                    log_tail: log_tail(&self.log),
                });
            }
            // The log line proves that *our* process bound the port, not another one.
            if log_contains_ready(&self.log) && ping(self.url()).await.is_ok() {
                return Ok(());
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

    /// Kills the process and waits until its port refuses connections (the port stays
    /// reserved).
    pub(super) async fn stop(&mut self) -> Result<(), FixtureError> {
        self.kill().await;
        let deadline = Instant::now() + self.timeout;
        loop {
            if refuses_connections(self.port).await {
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

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Errors mean the process is already gone; tokio reaps it in the background.
            let _ = child.start_kill();
        }
        // Port 0: a failed start already gave its port back.
        if self.port != 0 {
            release_port(self.port);
        }
        // The temporary directory is removed when the field drops.
    }
}

/// The `redis-server` binary on `PATH`, else in `/usr/bin` or `/usr/local/bin`.
pub(super) fn find_binary() -> Option<PathBuf> {
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

/// Where fixtures put their servers: below Linux's ephemeral range (32768 and up by default),
/// so that no outgoing connection of any process on the machine takes a port while its server
/// is down for a restart, and low enough that a cluster node's bus port (`port + 10000`) is
/// below that range too.
pub(super) const FIXTURE_PORTS: std::ops::Range<u16> = 15_000..22_000;

/// Whether nobody listens on `127.0.0.1:port` now.
fn bindable(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

/// Finds a loopback port in [`FIXTURE_PORTS`] nobody listens on, whose cluster bus port
/// (`port + 10000`) is free too, and that no fixture of this process holds, and reserves it.
/// Ports are picked at random so that test processes running side by side rarely try the
/// same one (and a server that fails to bind is started again on another).
pub(super) fn reserve_free_port() -> Result<u16, FixtureError> {
    for _ in 0..256 {
        let port = fastrand::u16(FIXTURE_PORTS);
        if port == SHARED_PORT || !bindable(port) || !bindable(port + 10_000) {
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
        source: io::Error::other(format!(
            "256 random ports in {FIXTURE_PORTS:?} (and their port + 10000) were all in use"
        )),
    })
}

pub(super) fn release_port(port: u16) {
    RESERVED_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&port);
}

/// Whether `127.0.0.1:port` refuses TCP connections (or does not accept one in time).
async fn refuses_connections(port: u16) -> bool {
    let connect = TcpStream::connect((Ipv4Addr::LOCALHOST, port));
    !matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, connect).await,
        Ok(Ok(_))
    )
}

fn is_bind_failure(log: &str) -> bool {
    let log = log.to_ascii_lowercase();
    log.contains("address already in use") || log.contains("could not create server tcp")
}

fn log_contains_ready(path: &Path) -> bool {
    std::fs::read(path)
        .map(|bytes| {
            let log = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
            log.contains(READY_LINE) || log.contains(SENTINEL_READY_LINE)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_and_never_6379() {
        let ports: Vec<u16> = (0..8).filter_map(|_| reserve_free_port().ok()).collect();
        assert_eq!(ports.len(), 8);
        let unique: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len());
        assert!(!unique.contains(&SHARED_PORT));
        assert!(
            unique.iter().all(|p| FIXTURE_PORTS.contains(p)),
            "{unique:?}"
        );
        for port in ports {
            release_port(port);
        }
    }
}
