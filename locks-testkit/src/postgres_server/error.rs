//! [`FixtureError`]: why the fixture could not provide, stop or restart a PostgreSQL server,
//! each message with its fix.

use std::io;
use std::path::PathBuf;

use super::{FIX, URL_ENV};

/// Why the fixture could not provide, stop or restart a server. Every message says how to fix
/// the cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// No `initdb`/`pg_ctl` found and no external URL set.
    #[error("no PostgreSQL server available for the tests ({detail}): {FIX}")]
    NoServer {
        /// What was looked for.
        detail: String,
    },
    /// A PostgreSQL tool (`initdb`, `pg_ctl`, `runuser`) failed.
    #[error("{tool} failed ({status}): {output}; {FIX}")]
    Tool {
        /// The command.
        tool: String,
        /// Its exit status.
        status: String,
        /// Its output (and the server log's tail, for `pg_ctl start`).
        output: String,
    },
    /// The operation needs a server the fixture started itself.
    #[error(
        "{operation} is not supported for the external server {URL_ENV}={url}; unset it to get a private server"
    )]
    Unsupported {
        /// `stop` or `restart`.
        operation: &'static str,
        /// The external URL (without its password).
        url: String,
    },
    /// The shared server of this test run did not come up in time (another test process
    /// started it).
    #[error("the shared PostgreSQL server in {} did not come up within {secs} s; see its log there", dir.display())]
    SharedNotReady {
        /// Its directory.
        dir: PathBuf,
        /// How long the fixture waited.
        secs: u64,
    },
    /// Connecting to the server failed.
    #[error("could not connect to the test server {url}: {source}")]
    Connect {
        /// The URL.
        url: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A file operation of the fixture itself failed.
    #[error(
        "postgres fixture: could not {context}: {source}; check the temporary directory (TMPDIR)"
    )]
    Io {
        /// What the fixture was doing.
        context: &'static str,
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },
}

impl FixtureError {
    pub(super) fn io(context: &'static str) -> impl FnOnce(io::Error) -> FixtureError {
        move |source| FixtureError::Io { context, source }
    }
}
