//! [`RedisServerConfig`]: how to start a private server.

use std::path::PathBuf;
use std::time::Duration;

use super::DEFAULT_TIMEOUT;

/// How to start a private server. Built with [`RedisServerConfig::new`] (or `Default`) and its
/// chained methods.
///
/// A config with extra arguments or an explicit binary always gets a private server: an
/// external server from `LOCKS_TEST_REDIS_URL` could not honour them.
#[derive(Debug, Clone)]
pub struct RedisServerConfig {
    /// Extra `redis-server` arguments, after the fixture's own.
    pub(super) args: Vec<String>,
    /// An explicit binary instead of the one found on the machine.
    pub(super) binary: Option<PathBuf>,
    /// A configuration file, passed first on the command line (Sentinel needs one).
    pub(super) config_file: Option<PathBuf>,
    local_only: bool,
    /// How long to wait for PING (and, on stop, for the port to close).
    pub(super) timeout: Duration,
}

impl Default for RedisServerConfig {
    fn default() -> Self {
        Self {
            args: Vec::new(),
            binary: None,
            config_file: None,
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

    /// Starts the server with this configuration file (the first command-line argument, as
    /// `redis-server` requires; the fixture's own arguments still override it). A Sentinel
    /// needs one it can rewrite: `.config_file(path).arg("--sentinel")`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Ignores `LOCKS_TEST_REDIS_URL`: always starts a private server, as tests that
    /// [`stop`](super::RedisServer::stop) or [`restart`](super::RedisServer::restart) it need.
    pub fn local_only(mut self) -> Self {
        self.local_only = true;
        self
    }

    /// How long to wait for the server to answer PING (and, on stop, for its port to close).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether this config needs a server the fixture starts itself.
    pub(super) fn wants_private(&self) -> bool {
        self.local_only
            || self.binary.is_some()
            || self.config_file.is_some()
            || !self.args.is_empty()
    }
}
