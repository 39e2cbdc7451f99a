//! [`TlsRedisServer`]: a private `redis-server` that also listens for TLS (`rediss://`), with
//! a throw-away certificate authority made by the `openssl` command.
//!
//! The fixture makes, in a temporary directory removed on drop, a test CA (`/CN=locks test
//! CA`) and a server certificate for `localhost` signed by it (subject alternative names
//! `DNS:localhost,IP:127.0.0.1`), then starts a private server with
//! `--tls-port PORT --tls-cert-file … --tls-key-file … --tls-ca-cert-file … --tls-auth-clients no`
//! through [`RedisServer::start_with`]. Clients do not need a certificate of their own; they
//! must trust [`TlsRedisServer::ca_pem`] (the platform's roots do not).
//!
//! It needs the `openssl` command and a local `redis-server` built with TLS (Debian's is):
//! without `openssl` it fails with [`FixtureError::OpensslMissing`], whose message names the
//! fix. `LOCKS_TEST_REDIS_URL` and the `docker` feature are not used: the certificate files
//! live on this machine.
//!
//! # Example
//!
//! ```no_run
//! use locks_testkit::redis_server::TlsRedisServer;
//!
//! # async fn demo() -> Result<(), locks_testkit::redis_server::FixtureError> {
//! let tls = TlsRedisServer::start().await?;
//! // `rediss://localhost:PORT`: trust `tls.ca_pem()` to connect.
//! println!("connect to {} trusting {}", tls.url(), tls.ca_path().display());
//! // The same server without TLS.
//! println!("or to {}", tls.server().url());
//! # Ok(())
//! # }
//! ```

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use tokio::process::Command;

use super::process::{find_binary, release_port, reserve_free_port};
use super::{FixtureError, RedisServer, RedisServerConfig};

/// How many TLS ports a start tries before giving up (a port can be taken between the moment
/// it is found free and the moment the server binds it).
const TLS_PORT_ATTEMPTS: usize = 3;

/// A private Redis server listening for TLS on `localhost` (and without TLS on its usual
/// port), with the test CA that signed its certificate. Dropping it kills the server and
/// removes the certificate files. It needs the `openssl` command and a local `redis-server`
/// built with TLS; clients must trust [`ca_pem`](Self::ca_pem).
pub struct TlsRedisServer {
    // First, so the server is killed before its files are removed and its port given back.
    server: RedisServer,
    url: String,
    ca: PathBuf,
    ca_pem: Vec<u8>,
    tls_port: ReservedPort,
    dir: TempDir,
}

impl fmt::Debug for TlsRedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsRedisServer")
            .field("url", &self.url)
            .field("ca", &self.ca)
            .field("dir", &self.dir.path())
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl TlsRedisServer {
    /// Makes a test CA and a certificate for `localhost` with the `openssl` command, starts a
    /// private `redis-server` with TLS on a free port, and returns once the server answers
    /// PING.
    ///
    /// # Errors
    ///
    /// [`FixtureError::OpensslMissing`] without the `openssl` command,
    /// [`FixtureError::Openssl`] when one of its steps fails, [`FixtureError::NoServer`]
    /// without a local `redis-server`, and the errors of [`RedisServer::start_with`].
    ///
    /// # Cancel safety
    ///
    /// Cancelling it kills what it started and removes its files: nothing is left behind.
    pub async fn start() -> Result<TlsRedisServer, FixtureError> {
        let Some(binary) = find_binary() else {
            return Err(FixtureError::NoServer {
                detail: "; the TLS fixture needs a local redis-server binary (its certificate \
                         files are on this machine, so neither LOCKS_TEST_REDIS_URL nor Docker \
                         can serve it)"
                    .to_owned(),
            });
        };
        let dir = tempfile::Builder::new()
            .prefix("locks-redis-tls-")
            .tempdir()
            .map_err(|source| FixtureError::Io {
                context: "create a temporary directory for the TLS certificates",
                source,
            })?;
        let files = make_certificates(dir.path()).await?;
        let ca_pem = std::fs::read(&files.ca).map_err(|source| FixtureError::Io {
            context: "read the test CA certificate",
            source,
        })?;
        let mut last = None;
        for _ in 0..TLS_PORT_ATTEMPTS {
            let tls_port = ReservedPort(reserve_free_port()?);
            let cfg = RedisServerConfig::new()
                .binary(binary.clone())
                .args(files.server_args(tls_port.0));
            match RedisServer::start_with(cfg).await {
                Ok(server) => {
                    return Ok(TlsRedisServer {
                        server,
                        url: format!("rediss://localhost:{}", tls_port.0),
                        ca: files.ca,
                        ca_pem,
                        tls_port,
                        dir,
                    });
                }
                // Every plain port the fixture tried failed to bind: the TLS port is the one
                // taken meanwhile. Try another.
                Err(e @ FixtureError::PortsExhausted { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(FixtureError::PortsExhausted {
            attempts: TLS_PORT_ATTEMPTS,
            log_tail: String::new(),
        }))
    }

    /// The TLS address: `rediss://localhost:PORT` (the certificate names `localhost`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TLS port, on `127.0.0.1`.
    pub fn tls_port(&self) -> u16 {
        self.tls_port.0
    }

    /// The PEM file of the test CA that signed the server's certificate (for a command-line
    /// option such as `--tls-ca`). It exists as long as the fixture does.
    pub fn ca_path(&self) -> &Path {
        &self.ca
    }

    /// The PEM bytes of the test CA, the root certificate a TLS client must trust
    /// (`redis::TlsCertificates::root_cert`).
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The server itself: its plain (non-TLS) [`url`](RedisServer::url) and port, and its
    /// other controls.
    pub fn server(&self) -> &RedisServer {
        &self.server
    }
}

/// A port reserved among the fixtures of this process, given back on drop.
#[derive(Debug)]
struct ReservedPort(u16);

impl Drop for ReservedPort {
    fn drop(&mut self) {
        release_port(self.0);
    }
}

/// The files `openssl` made.
struct Certificates {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Certificates {
    /// The `redis-server` arguments that turn TLS on at `tls_port` with these files.
    fn server_args(&self, tls_port: u16) -> Vec<String> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(&self.cert),
            "--tls-key-file".to_owned(),
            path(&self.key),
            "--tls-ca-cert-file".to_owned(),
            path(&self.ca),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ]
    }
}

/// Makes, in `dir`, a test CA and a server certificate for `localhost` signed by it.
async fn make_certificates(dir: &Path) -> Result<Certificates, FixtureError> {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let csr = dir.join("server.csr");
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").map_err(|source| {
        FixtureError::Io {
            context: "write the certificate extensions file",
            source,
        }
    })?;
    let s = OsStr::new;
    openssl(
        dir,
        &[
            s("req"),
            s("-x509"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-days"),
            s("1"),
            s("-subj"),
            s("/CN=locks test CA"),
            s("-keyout"),
            ca_key.as_os_str(),
            s("-out"),
            ca.as_os_str(),
        ],
    )
    .await?;
    openssl(
        dir,
        &[
            s("req"),
            s("-newkey"),
            s("rsa:2048"),
            s("-nodes"),
            s("-subj"),
            s("/CN=localhost"),
            s("-keyout"),
            key.as_os_str(),
            s("-out"),
            csr.as_os_str(),
        ],
    )
    .await?;
    openssl(
        dir,
        &[
            s("x509"),
            s("-req"),
            s("-in"),
            csr.as_os_str(),
            s("-CA"),
            ca.as_os_str(),
            s("-CAkey"),
            ca_key.as_os_str(),
            s("-CAcreateserial"),
            s("-days"),
            s("1"),
            s("-extfile"),
            ext.as_os_str(),
            s("-out"),
            cert.as_os_str(),
        ],
    )
    .await?;
    Ok(Certificates { ca, cert, key })
}

/// Runs `openssl ARGS` in `dir`; a missing command and a failure are distinct errors.
async fn openssl(dir: &Path, args: &[&OsStr]) -> Result<(), FixtureError> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| FixtureError::OpensslMissing { source })?;
    if out.status.success() {
        return Ok(());
    }
    Err(FixtureError::Openssl {
        command: args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}
