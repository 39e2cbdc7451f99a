//! [`FixtureError`]: why the fixture could not provide, stop or restart a server, each message
//! with its fix.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "docker")]
use super::IMAGE_ENV;
use super::{FIX, URL_ENV};

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

    /// The `redis-server` binary named by
    /// [`RedisServerConfig::binary`](super::RedisServerConfig::binary) does not exist.
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

    /// `LOCKS_TEST_REDIS_URL` names fewer servers than
    /// [`RedisServer::start_many`](super::RedisServer::start_many) needs.
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

    /// Setting up or changing a Redis Cluster or a Sentinel set failed at one step (its
    /// servers started, but `redis-cli --cluster create`, a `CLUSTER`/`SENTINEL` command, or the
    /// wait for the topology to settle did not succeed).
    #[error(
        "redis {topology} fixture: {step} failed: {detail}; check the server logs in the \
         fixture's temporary directories, or that redis-server and redis-cli are version 7 or \
         newer (apt-get install -y redis-server)"
    )]
    Topology {
        /// `cluster` or `sentinel`.
        topology: &'static str,
        /// What the fixture was doing.
        step: &'static str,
        /// What went wrong (a command's output or error, or the last state seen).
        detail: String,
    },

    /// The `openssl` command, which [`TlsRedisServer`](super::TlsRedisServer) runs to make
    /// its certificates, could not be run (most often: it is not installed).
    #[error(
        "the TLS redis fixture needs the `openssl` command, which could not be run ({source}): \
         install openssl (apt-get update && apt-get install -y openssl; scripts/test installs it)"
    )]
    OpensslMissing {
        /// The error of the operating system.
        #[source]
        source: io::Error,
    },

    /// An `openssl` command of [`TlsRedisServer`](super::TlsRedisServer) failed.
    #[error(
        "TLS redis fixture: `openssl {command}` failed ({status}): {stderr}; check that the \
         openssl command works (openssl version) and that TMPDIR is writable"
    )]
    Openssl {
        /// The arguments given to `openssl`.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote on its standard error.
        stderr: String,
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
