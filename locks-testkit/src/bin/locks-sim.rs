//! `locks-sim`: the contention simulator as a command-line demo.
//!
//! Many workers fight over a few keys through several lock services sharing one backend, while
//! an invariant checker counts the holders of every key. Prints the scenario and a table of
//! throughput, wait percentiles and violations.
//!
//! Exit codes: 0 no violation, 1 at least one violation (each printed as a `VIOLATION` line),
//! 2 bad arguments or an error.
//!
//! ```text
//! cargo run --release -p locks-testkit --bin locks-sim -- --workers 32 --keys 2 --duration 5s
//! cargo run --release -p locks-testkit --bin locks-sim -- --backend broken --duration 200ms
//! ```

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use locks_core::LockBackend;
use locks_memory::MemoryBackend;
use locks_testkit::broken::GrantAllBackend;
use locks_testkit::sim::{self, SimConfig, SimReport};

/// Exit code when no violation was seen.
const EXIT_PASSED: u8 = 0;
/// Exit code when the invariant checker saw a violation.
const EXIT_VIOLATION: u8 = 1;
/// Exit code for bad arguments (clap uses it too) and runtime errors.
const EXIT_ERROR: u8 = 2;

/// Which store the simulated processes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The in-memory backend (`locks-memory`).
    Memory,
    /// `GrantAllBackend`: grants every acquire, to show what a violation looks like.
    Broken,
    /// A Redis server (`--redis URL`, default `redis://127.0.0.1:6379`).
    Redis,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Memory => "memory",
            BackendKind::Broken => "broken",
            BackendKind::Redis => "redis",
        })
    }
}

/// Contention simulator for distributed locks: N workers, K keys, random hold times, and a
/// checker that counts the holders of every key at every instant.
#[derive(Debug, Parser)]
#[command(name = "locks-sim", version, about)]
struct Args {
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    workers: usize,

    /// Distinct keys the workers contend for.
    #[arg(long, default_value_t = 4)]
    keys: usize,

    /// How long to run, e.g. `2s`, `500ms`, `1m` (default 2s unless --ops-per-worker is given).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Stop each worker after this many acquires (with --duration: whichever comes first).
    #[arg(long)]
    ops_per_worker: Option<u64>,

    /// Shortest hold time of a lock, in milliseconds.
    #[arg(long, default_value_t = 0)]
    hold_min_ms: u64,

    /// Longest hold time of a lock, in milliseconds.
    #[arg(long, default_value_t = 2)]
    hold_max_ms: u64,

    /// Lease ttl, e.g. `5s`.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    ttl: Duration,

    /// How long one acquire may wait before it counts as a timeout, e.g. `5s`.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    wait_timeout: Duration,

    /// Lock service instances sharing the backend, as if in separate processes
    /// (default: min(workers, 8)).
    #[arg(long)]
    services: Option<usize>,

    /// Seed for the workers' key and hold-time choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// The store to run against (`--redis URL` alone implies `redis`).
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,

    /// Redis URL for `--backend redis`, e.g. `redis://127.0.0.1:6379` (ACL users and
    /// `rediss://` work as in `locks-redis`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// Print the report as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// Why a duration argument was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ParseDurationError {
    /// Nothing was given.
    Empty,
    /// The number part is missing or not a whole number.
    BadNumber(String),
    /// The unit is not one of `ms`, `s`, `m`, `h`.
    BadUnit(String),
    /// The value does not fit in a `Duration`.
    TooLarge(String),
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseDurationError::Empty => f.write_str("empty duration (try `2s` or `500ms`)"),
            ParseDurationError::BadNumber(s) => {
                write!(
                    f,
                    "`{s}` does not start with a whole number (try `2s` or `500ms`)"
                )
            }
            ParseDurationError::BadUnit(u) => {
                write!(f, "unknown unit `{u}` (use ms, s, m or h, e.g. `2s`)")
            }
            ParseDurationError::TooLarge(s) => write!(f, "`{s}` is too large"),
        }
    }
}

impl std::error::Error for ParseDurationError {}

/// Parses `<whole number><unit>` with unit `ms`, `s`, `m` or `h` (`2s`, `500ms`, `1m`).
/// A bare `0` is accepted as zero.
fn parse_duration(input: &str) -> Result<Duration, ParseDurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| ParseDurationError::BadNumber(s.to_owned()))?;
    let too_large = || ParseDurationError::TooLarge(s.to_owned());
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => value
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "h" => value
            .checked_mul(3600)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
        "" if value == 0 => Ok(Duration::ZERO),
        other => Err(ParseDurationError::BadUnit(other.to_owned())),
    }
}

fn config(args: &Args) -> SimConfig {
    let defaults = SimConfig::default();
    let duration = match (args.duration, args.ops_per_worker) {
        (None, None) => defaults.duration,
        (d, _) => d,
    };
    SimConfig {
        workers: args.workers,
        keys: args.keys,
        duration,
        ops_per_worker: args.ops_per_worker,
        hold_min: Duration::from_millis(args.hold_min_ms),
        hold_max: Duration::from_millis(args.hold_max_ms),
        ttl: args.ttl,
        wait_timeout: args.wait_timeout,
        services: args.services.unwrap_or(0),
        seed: args.seed,
    }
}

async fn make_backend(
    kind: BackendKind,
    redis_url: Option<&str>,
) -> Result<Arc<dyn LockBackend>, String> {
    Ok(match kind {
        BackendKind::Memory => Arc::new(MemoryBackend::new()),
        BackendKind::Broken => Arc::new(GrantAllBackend::new()),
        BackendKind::Redis => {
            let url = redis_url.unwrap_or("redis://127.0.0.1:6379");
            let backend = locks_redis::RedisBackend::connect(url)
                .await
                .map_err(|e| format!("cannot connect to Redis at {url}: {e}"))?;
            Arc::new(backend)
        }
    })
}

fn header(kind: BackendKind, cfg: &SimConfig) -> String {
    let limit = match (cfg.duration, cfg.ops_per_worker) {
        (Some(d), Some(n)) => format!("{d:?} or {n} ops/worker"),
        (Some(d), None) => format!("{d:?}"),
        (None, Some(n)) => format!("{n} ops/worker"),
        (None, None) => "-".to_owned(),
    };
    format!(
        "locks-sim: backend={kind} workers={} keys={} services={} run={limit} \
         hold={:?}..{:?} ttl={:?} wait-timeout={:?} seed={}",
        cfg.workers,
        cfg.keys,
        cfg.effective_services(),
        cfg.hold_min,
        cfg.hold_max,
        cfg.ttl,
        cfg.wait_timeout,
        cfg.seed,
    )
}

fn violation_lines(report: &SimReport) -> Vec<String> {
    let mut lines = Vec::new();
    let overlaps = report.violations.saturating_sub(report.fence_regressions);
    if overlaps > 0 {
        lines.push(format!(
            "VIOLATION: {overlaps} acquire(s) found the key already held \
             (up to {} holders of one key at once)",
            report.max_concurrent_per_key
        ));
    }
    if report.fence_regressions > 0 {
        lines.push(format!(
            "VIOLATION: {} fence regression(s): a holder got a fence not larger than an \
             earlier holder's",
            report.fence_regressions
        ));
    }
    if lines.is_empty() && !report.passed() {
        lines.push(format!("VIOLATION: {} violation(s)", report.violations));
    }
    lines
}

fn json(kind: BackendKind, cfg: &SimConfig, report: &SimReport) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_owned(), |n| n.to_string());
    let ops_per_sec = if report.ops_per_sec.is_finite() {
        format!("{:.3}", report.ops_per_sec)
    } else {
        "null".to_owned()
    };
    format!(
        concat!(
            "{{\"backend\":\"{}\",\"workers\":{},\"keys\":{},\"services\":{},",
            "\"duration_ms\":{},\"ops_per_worker\":{},\"seed\":{},",
            "\"acquired\":{},\"timeouts\":{},\"errors\":{},\"violations\":{},",
            "\"fence_regressions\":{},\"max_concurrent_per_key\":{},",
            "\"elapsed_ms\":{:.3},\"ops_per_sec\":{},",
            "\"wait_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},\"passed\":{}}}"
        ),
        kind,
        cfg.workers,
        cfg.keys,
        cfg.effective_services(),
        opt(cfg
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        opt(cfg.ops_per_worker),
        cfg.seed,
        report.acquired,
        report.timeouts,
        report.errors,
        report.violations,
        report.fence_regressions,
        report.max_concurrent_per_key,
        report.elapsed.as_secs_f64() * 1000.0,
        ops_per_sec,
        report.wait.p50,
        report.wait.p90,
        report.wait.p99,
        report.wait.max,
        report.passed(),
    )
}

fn main() -> ExitCode {
    // Bad arguments: clap prints usage and exits with 2 (0 for --help / --version).
    let args = Args::parse();
    let cfg = config(&args);
    if let Err(e) = cfg.validate() {
        eprintln!("locks-sim: {e}");
        return ExitCode::from(EXIT_ERROR);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("locks-sim: cannot start the tokio runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let kind = match (args.backend, args.redis.as_deref()) {
        (Some(kind), _) => kind,
        (None, Some(_)) => BackendKind::Redis,
        (None, None) => BackendKind::Memory,
    };
    if args.redis.is_some() && kind != BackendKind::Redis {
        eprintln!("locks-sim: --redis needs --backend redis (or no --backend)");
        return ExitCode::from(EXIT_ERROR);
    }
    let backend = match runtime.block_on(make_backend(kind, args.redis.as_deref())) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("locks-sim: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    if !args.json {
        println!("{}", header(kind, &cfg));
    }
    let report = match runtime.block_on(sim::run(backend, &cfg)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("locks-sim: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let violations = violation_lines(&report);
    if args.json {
        println!("{}", json(kind, &cfg, &report));
        for line in &violations {
            eprintln!("{line}");
        }
    } else {
        println!();
        print!("{}", report.table());
        for line in &violations {
            println!("{line}");
        }
    }
    if report.passed() {
        ExitCode::from(EXIT_PASSED)
    } else {
        ExitCode::from(EXIT_VIOLATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 1m "), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(""), Err(ParseDurationError::Empty));
        assert!(matches!(
            parse_duration("s"),
            Err(ParseDurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.5s"),
            Err(ParseDurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("10"),
            Err(ParseDurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("3days"),
            Err(ParseDurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(ParseDurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(ParseDurationError::TooLarge(_))
        ));
    }

    #[test]
    fn args_parse_and_build_a_config() {
        let args = Args::try_parse_from(["locks-sim", "--ops-per-worker", "10"]);
        let cfg = config(&args.expect("valid args"));
        assert_eq!(cfg.duration, None);
        assert_eq!(cfg.ops_per_worker, Some(10));
        assert_eq!(cfg.effective_services(), 8);

        let cfg = config(&Args::try_parse_from(["locks-sim"]).expect("valid args"));
        assert_eq!(cfg.duration, Some(Duration::from_secs(2)));

        assert!(Args::try_parse_from(["locks-sim", "--duration", "2 parsecs"]).is_err());
        assert!(Args::try_parse_from(["locks-sim", "--backend", "nope"]).is_err());
    }
}
