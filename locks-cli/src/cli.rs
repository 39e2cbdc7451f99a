//! The command line: `locks [--url URL] [--prefix P] [--json] COMMAND`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Inspect and operate the locks of a lock store (Redis, PostgreSQL).
///
/// Exit codes: 0 success; 1 the operation failed (store error, nothing released); 2 bad
/// command line or bad URL; 3 the store cannot be reached (connection refused, timeout,
/// authentication); 4 a release refused (no `--force`, or not confirmed).
#[derive(Debug, Parser)]
#[command(name = "locks", version)]
pub struct Cli {
    /// The store: `redis://[user:password@]host:port[/db]`, `rediss://...` (TLS),
    /// `redis+cluster://host:port,host:port` (every primary is listed), or
    /// `postgres://user:password@host/db`.
    #[arg(long, env = "LOCKS_URL", default_value = "redis://127.0.0.1:6379")]
    pub url: String,

    /// A PEM file of CA certificates to trust for a `rediss://` URL (one server), instead of
    /// the platform's roots: a private CA's certificate.
    #[arg(long, env = "LOCKS_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// The services' key prefix.
    #[arg(long, default_value = locks_core::key::DEFAULT_PREFIX)]
    pub prefix: String,

    /// Print JSON instead of a table (one document; `watch` prints one per refresh).
    #[arg(long, global = true)]
    pub json: bool,

    /// How long to wait for the store to answer a connection.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every held lock, semaphore and read-write lock whose name starts with PATTERN
    /// (a trailing `*` is allowed and ignored).
    Ls {
        /// The start of the names to list (default: all).
        pattern: Option<String>,
    },
    /// One lock: every primitive held under NAME, with each holder.
    Show {
        /// The lock's name (without the prefix).
        name: String,
    },
    /// `ls`, refreshed until interrupted (a live table in a terminal).
    Watch {
        /// The start of the names to list (default: all).
        pattern: Option<String>,
        /// Time between refreshes.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        interval: Duration,
        /// Stop after this many refreshes (default: never), with or without `--json`.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Delete a lock whoever holds it (its holder finds out at its next renewal).
    Release {
        /// The lock's name (without the prefix).
        name: String,
        /// Required: a forced release breaks the holder's mutual exclusion.
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Only this primitive (default: every primitive held under NAME).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// The store's health: ping, version, eviction policy, memory, clock offset, replication.
    Health,
}

/// A primitive, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// A mutex.
    Mutex,
    /// A semaphore.
    Semaphore,
    /// A read-write lock.
    Rwlock,
    /// A fair mutex (fair mode).
    Fair,
}

impl KindArg {
    /// As the library names it.
    pub fn kind(self) -> locks_core::backend::LockKind {
        use locks_core::backend::LockKind;
        match self {
            KindArg::Mutex => LockKind::Mutex,
            KindArg::Semaphore => LockKind::Semaphore,
            KindArg::Rwlock => LockKind::RwLock,
            KindArg::Fair => LockKind::FairMutex,
        }
    }
}

/// `250ms`, `2s`, `1m`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 2s, 1m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
    }
}
