//! A real PostgreSQL server for tests: private, on a free loopback port, gone when the tests
//! are done.
//!
//! Where the server comes from, in this order:
//!
//! 1. an external server named by `LOCKS_TEST_POSTGRES_URL` (a superuser URL such as
//!    `postgres://postgres@127.0.0.1:5433/postgres`: tests create schemas and roles);
//!    [`PostgresServer::stop`] and [`PostgresServer::restart`] are not supported for it;
//! 2. the local `initdb` and `pg_ctl` (on `PATH`, else in Debian's
//!    `/usr/lib/postgresql/<version>/bin`, newest first): a cluster copied from a template
//!    made once per machine by `initdb` (trust authentication, superuser `postgres`), started
//!    with `fsync=off` and small buffers on a free port of `127.0.0.1`, its socket and log in
//!    its own directory. As root, the tools run as the `postgres` user through `runuser`
//!    (PostgreSQL refuses to run as root).
//!
//! When neither works the fixture returns [`FixtureError::NoServer`], whose message says how to
//! fix the machine: a test that needs PostgreSQL fails loudly, it never skips.
//!
//! Port 5432 is never used: a PostgreSQL already running there is neither relied on nor
//! disturbed.
//!
//! Two ways to get one:
//!
//! - [`PostgresServer::start`]: a server of your own, stopped and removed on drop; it can be
//!   stopped and restarted (fault tests).
//! - [`shared_url`]: one server for every test of a run (every process of a `cargo nextest`
//!   run, or the one process of `cargo test`), started by the first test that asks and stopped
//!   by a watchdog when the run ends. Give each test a schema of its own ([`fresh_schema`]).
//!
//! ```no_run
//! use locks_testkit::postgres_server::{PostgresServer, fresh_schema, shared_url};
//!
//! # async fn demo() -> Result<(), locks_testkit::postgres_server::FixtureError> {
//! let url = shared_url().await?;
//! let schema = fresh_schema(&url).await?; // tables of this test go there
//!
//! let mut private = PostgresServer::start().await?;
//! private.restart().await?; // same port, same data
//! # drop((schema, private)); Ok(()) }
//! ```

mod client;
mod error;
mod process;
mod shared;
mod tools;

use std::fmt;

pub use client::{connect, fresh_schema};
pub use error::FixtureError;

use process::LocalServer;
use tools::Tools;

/// The environment variable naming an external server.
pub const URL_ENV: &str = "LOCKS_TEST_POSTGRES_URL";

/// The port of a shared server the fixture must never touch.
const SHARED_PORT: u16 = 5432;

/// The advice every "no server" message ends with.
const FIX: &str = "install PostgreSQL (apt-get update && apt-get install -y postgresql; \
                   initdb and pg_ctl land in /usr/lib/postgresql/<version>/bin), \
                   or set LOCKS_TEST_POSTGRES_URL=postgres://user@host:port/db (a superuser)";

/// A PostgreSQL server for one test. Dropping it stops the server and removes its files.
pub struct PostgresServer {
    backing: Backing,
}

enum Backing {
    Local(Box<LocalServer>),
    External(String),
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PostgresServer");
        match &self.backing {
            Backing::Local(l) => d.field("url", &l.url()).field("dir", &l.dir()),
            Backing::External(_) => d.field("kind", &"external"),
        };
        d.finish()
    }
}

/// The URL of the external server, if `LOCKS_TEST_POSTGRES_URL` is set (and not empty).
fn external() -> Option<String> {
    std::env::var(URL_ENV).ok().filter(|u| !u.trim().is_empty())
}

/// The URL of the run's shared server (see the [module docs](self)), or of the external one.
///
/// # Cancel safety
///
/// Cancel safe: the start runs on a blocking thread and finishes (and publishes the server)
/// even if this future is dropped.
pub async fn shared_url() -> Result<String, FixtureError> {
    if let Some(url) = external() {
        return Ok(url);
    }
    blocking(shared::url).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, FixtureError> + Send + 'static,
) -> Result<T, FixtureError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(FixtureError::Io {
            context: "run the fixture's blocking work",
            source: std::io::Error::other(e.to_string()),
        })
    })
}

impl PostgresServer {
    /// A server of this test's own: the external one if `LOCKS_TEST_POSTGRES_URL` is set, else
    /// a private cluster (see the [module docs](self)).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a start dropped half-way may leave its directory behind.
    pub async fn start() -> Result<PostgresServer, FixtureError> {
        if let Some(url) = external() {
            return Ok(PostgresServer {
                backing: Backing::External(url),
            });
        }
        Self::start_local().await
    }

    /// A private cluster, whatever the environment says (for tests that stop or restart it).
    ///
    /// # Cancel safety
    ///
    /// As [`start`](Self::start).
    pub async fn start_local() -> Result<PostgresServer, FixtureError> {
        let server = blocking(|| {
            let tools = Tools::find()?;
            let dir = tempfile::Builder::new()
                .prefix("locks-pg-")
                .tempdir()
                .map_err(FixtureError::io("create a temporary directory"))?
                .keep();
            LocalServer::start_in(tools, dir, true)
        })
        .await?;
        Ok(PostgresServer {
            backing: Backing::Local(Box::new(server)),
        })
    }

    /// The superuser URL: `postgres://postgres@127.0.0.1:PORT/postgres` for a private server.
    pub fn url(&self) -> String {
        match &self.backing {
            Backing::Local(l) => l.url(),
            Backing::External(url) => url.clone(),
        }
    }

    /// The port of a private server (`None` for an external one).
    pub fn port(&self) -> Option<u16> {
        match &self.backing {
            Backing::Local(l) => Some(l.port()),
            Backing::External(_) => None,
        }
    }

    /// Whether the server came from `LOCKS_TEST_POSTGRES_URL`.
    pub fn is_external(&self) -> bool {
        matches!(self.backing, Backing::External(_))
    }

    /// Stop the server at once (`pg_ctl stop -m immediate`: a crash as far as clients can
    /// tell; the data stays for [`restart`](Self::restart)).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it blocks the calling thread until `pg_ctl` returns (a fraction of a
    /// second).
    pub async fn stop(&mut self) -> Result<(), FixtureError> {
        match &mut self.backing {
            Backing::Local(l) => l.stop(),
            Backing::External(url) => Err(unsupported("stop", url)),
        }
    }

    /// Stop the server (if running) and start it again on the same port with the same data,
    /// waiting until it accepts connections.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: it blocks the calling thread until `pg_ctl` returns (a fraction of a
    /// second).
    pub async fn restart(&mut self) -> Result<(), FixtureError> {
        match &mut self.backing {
            Backing::Local(l) => {
                l.stop()?;
                l.spawn()
            }
            Backing::External(url) => Err(unsupported("restart", url)),
        }
    }
}

fn unsupported(operation: &'static str, url: &str) -> FixtureError {
    let shown = match url.split_once('@') {
        Some((_, host)) => format!("postgres://…@{host}"),
        None => url.to_owned(),
    };
    FixtureError::Unsupported {
        operation,
        url: shown,
    }
}
