//! `locks-sim`: the contention simulator as a command-line demo.
//!
//! Runs named scenarios that mirror real incidents (`mutex`, `double-payment`, `oversell`,
//! `job-dedup`, `leader-failover`, `gc-pause`, or `all` of them in turn): many workers go
//! through several lock services sharing one backend, while each scenario's invariant checker
//! watches for the incident it is about. Prints, per scenario, a table of throughput, wait and
//! hand-off latency percentiles, scenario counters and violations (or one JSON object per
//! scenario with `--json`).
//!
//! Exit codes: 0 every scenario passed, 1 at least one violation or failed scenario (each
//! printed as a `VIOLATION` or `FAILED` line), 2 bad arguments or an error.
//!
//! ```text
//! cargo run --release -p locks-testkit --bin locks-sim -- --scenario all
//! cargo run --release -p locks-testkit --bin locks-sim -- --workers 32 --keys 2 --duration 5s
//! cargo run --release -p locks-testkit --bin locks-sim -- --scenario double-payment --unsafe-no-lock
//! cargo run --release -p locks-testkit --bin locks-sim -- --backend broken --duration 200ms
//! ```

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use locks_core::LockBackend;
use locks_memory::MemoryBackend;
use locks_testkit::broken::GrantAllBackend;
use locks_testkit::sim::{self, Progress, Scenario, SimConfig, SimReport};

/// Exit code when no violation was seen.
const EXIT_PASSED: u8 = 0;
/// Exit code when an invariant checker saw a violation (or a scenario failed).
const EXIT_VIOLATION: u8 = 1;
/// Exit code for bad arguments (clap uses it too) and runtime errors.
const EXIT_ERROR: u8 = 2;

/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Runs shorter than this never show a progress line.
const PROGRESS_AFTER: Duration = Duration::from_secs(2);

/// Which store the simulated processes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The in-memory backend (`locks-memory`).
    Memory,
    /// `GrantAllBackend`: grants every acquire, to show what a violation looks like.
    Broken,
    /// A Redis server (`--redis URL`, default `redis://127.0.0.1:6379`).
    Redis,
    /// A PostgreSQL server (`--postgres URL`; the lock tables are created if missing).
    Postgres,
    /// A quorum (Redlock) over independent redis-servers (`--redis-quorum URL,URL,URL`).
    RedisQuorum,
    /// A Redis Cluster (`--redis-cluster URL,URL,...`: seed nodes).
    RedisCluster,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Memory => "memory",
            BackendKind::Broken => "broken",
            BackendKind::Redis => "redis",
            BackendKind::Postgres => "postgres",
            BackendKind::RedisQuorum => "redis-quorum",
            BackendKind::RedisCluster => "redis-cluster",
        })
    }
}

/// One scenario, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScenarioChoice {
    One(Scenario),
    All,
}

impl ScenarioChoice {
    fn scenarios(self) -> Vec<Scenario> {
        match self {
            ScenarioChoice::One(s) => vec![s],
            ScenarioChoice::All => Scenario::ALL.to_vec(),
        }
    }
}

fn parse_scenario(input: &str) -> Result<ScenarioChoice, String> {
    if input.trim().eq_ignore_ascii_case("all") {
        return Ok(ScenarioChoice::All);
    }
    input
        .parse::<Scenario>()
        .map(ScenarioChoice::One)
        .map_err(|e| format!("{e}, or all"))
}

/// Contention simulator for distributed locks: named scenarios that mirror real incidents
/// (double payment, oversell, duplicate jobs, leader failover, GC pause), each with an
/// invariant checker; reports throughput, wait and hand-off latency, and violations.
///
/// Options left out take the scenario's defaults (see `--scenario`).
#[derive(Debug, Parser)]
#[command(name = "locks-sim", version, about)]
struct Args {
    /// Scenario: mutex, double-payment, oversell, job-dedup, leader-failover, gc-pause, or
    /// all (each in turn).
    #[arg(long, value_name = "NAME", default_value = "mutex", value_parser = parse_scenario)]
    scenario: ScenarioChoice,

    /// Concurrent workers (leader-failover: candidates) [default: per scenario, mutex 16].
    #[arg(long)]
    workers: Option<usize>,

    /// Distinct keys: keys (mutex, gc-pause), orders (double-payment), SKUs (oversell), jobs
    /// (job-dedup) [default: per scenario, mutex 4].
    #[arg(long)]
    keys: Option<usize>,

    /// How long to run, e.g. `2s`, `500ms`, `1m`; a cap for double-payment, oversell and
    /// job-dedup, which end when their work is done [default: 2s; cap 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// Stop each worker after this many acquires (mutex and gc-pause; with --duration:
    /// whichever comes first).
    #[arg(long)]
    ops_per_worker: Option<u64>,

    /// Shortest hold time of a lock, in milliseconds [default: per scenario].
    #[arg(long)]
    hold_min_ms: Option<u64>,

    /// Longest hold time of a lock, in milliseconds [default: per scenario, mutex 2].
    #[arg(long)]
    hold_max_ms: Option<u64>,

    /// Lease ttl, e.g. `5s` [default: per scenario, mutex 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    ttl: Option<Duration>,

    /// How long one acquire may wait before it counts as a timeout, e.g. `5s` [default: 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    wait_timeout: Option<Duration>,

    /// Lock service instances sharing the backend, as if in separate processes
    /// [default: min(workers, 8)].
    #[arg(long)]
    services: Option<usize>,

    /// Seed for the workers' key and hold-time choices.
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// oversell: initial stock of every SKU [default: 50].
    #[arg(long)]
    stock: Option<u64>,

    /// leader-failover: time between injected failovers, e.g. `400ms` [default: 400ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    fault_interval: Option<Duration>,

    /// UNSAFE: skip locking entirely, to watch each scenario's checker catch the incident.
    #[arg(long)]
    unsafe_no_lock: bool,

    /// The store to run against (`--redis URL` alone implies `redis`).
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,

    /// Redis URL for `--backend redis`, e.g. `redis://127.0.0.1:6379` (ACL users and
    /// `rediss://` work as in `locks-redis`).
    #[arg(long, value_name = "URL")]
    redis: Option<String>,

    /// PostgreSQL URL for `--backend postgres` (implies it), e.g.
    /// `postgres://user:password@127.0.0.1:5432/db`.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,

    /// Redis URLs of at least 3 independent servers for `--backend redis-quorum` (implies it),
    /// comma-separated: `redis://127.0.0.1:7001,redis://127.0.0.1:7002,redis://127.0.0.1:7003`.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    redis_quorum: Option<Vec<String>>,

    /// Seed node URLs of a Redis Cluster for `--backend redis-cluster` (implies it),
    /// comma-separated: `redis://127.0.0.1:7000,redis://127.0.0.1:7001`.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    redis_cluster: Option<Vec<String>>,

    /// Print one JSON object per scenario (one per line) instead of the tables.
    #[arg(long)]
    json: bool,
}

/// The configuration of `scenario`: its defaults, overridden by what the command line says.
fn config(args: &Args, scenario: Scenario) -> SimConfig {
    let base = SimConfig::for_scenario(scenario);
    let duration = match (args.duration, args.ops_per_worker) {
        (Some(d), _) => Some(d),
        (None, Some(_)) if scenario.uses_ops_limit() => None,
        (None, _) => base.duration,
    };
    SimConfig {
        scenario,
        workers: args.workers.unwrap_or(base.workers),
        keys: args.keys.unwrap_or(base.keys),
        duration,
        ops_per_worker: args.ops_per_worker,
        hold_min: args
            .hold_min_ms
            .map_or(base.hold_min, Duration::from_millis),
        hold_max: args
            .hold_max_ms
            .map_or(base.hold_max, Duration::from_millis),
        ttl: args.ttl.unwrap_or(base.ttl),
        wait_timeout: args.wait_timeout.unwrap_or(base.wait_timeout),
        services: args.services.unwrap_or(base.services),
        seed: args.seed,
        stock: args.stock.unwrap_or(base.stock),
        fault_interval: args.fault_interval.unwrap_or(base.fault_interval),
        unsafe_no_lock: args.unsafe_no_lock,
    }
}

async fn make_backend(
    kind: BackendKind,
    redis_url: Option<&str>,
    postgres_url: Option<&str>,
    quorum_urls: Option<&[String]>,
    cluster_urls: Option<&[String]>,
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
        BackendKind::RedisCluster => {
            let urls = cluster_urls.ok_or("--backend redis-cluster needs --redis-cluster URLS")?;
            let backend = locks_redis::RedisBackend::cluster_builder(urls.iter().cloned())
                .connect()
                .await
                .map_err(|e| format!("cannot connect to the Redis Cluster: {e}"))?;
            Arc::new(backend)
        }
        BackendKind::RedisQuorum => {
            let urls = quorum_urls.ok_or("--backend redis-quorum needs --redis-quorum URLS")?;
            let backend = locks_quorum::redis::connect(urls)
                .await
                .map_err(|e| format!("cannot connect the Redis quorum: {e}"))?;
            Arc::new(backend)
        }
        BackendKind::Postgres => {
            let url = postgres_url.ok_or("--backend postgres needs --postgres URL")?;
            let backend = locks_postgres::PostgresBackend::connect(url)
                .await
                .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
            Arc::new(backend)
        }
    })
}

fn header(kind: BackendKind, cfg: &SimConfig) -> String {
    let limit = match (cfg.duration, cfg.ops_per_worker) {
        (Some(d), Some(n)) if cfg.scenario.uses_ops_limit() => {
            format!("{d:?} or {n} ops/worker")
        }
        (Some(d), _) if cfg.scenario.is_finite() => format!("until done (cap {d:?})"),
        (Some(d), _) => format!("{d:?}"),
        (None, Some(n)) => format!("{n} ops/worker"),
        (None, None) => "until done".to_owned(),
    };
    let mut line = format!(
        "locks-sim: scenario={} ({}) backend={kind} locking={} workers={} keys={} services={} \
         run={limit} hold={:?}..{:?} ttl={:?} wait-timeout={:?} seed={}",
        cfg.scenario,
        cfg.scenario.description(),
        if cfg.unsafe_no_lock {
            "OFF(unsafe)"
        } else {
            "on"
        },
        cfg.workers,
        cfg.keys,
        cfg.effective_services(),
        cfg.hold_min,
        cfg.hold_max,
        cfg.ttl,
        cfg.wait_timeout,
        cfg.seed,
    );
    match cfg.scenario {
        Scenario::Oversell => line.push_str(&format!(" stock={}", cfg.stock)),
        Scenario::LeaderFailover => {
            line.push_str(&format!(" fault-interval={:?}", cfg.fault_interval));
        }
        _ => {}
    }
    line
}

/// A `\r`-redrawn status line on stderr, only when stderr is a terminal and the run has lasted
/// longer than [`PROGRESS_AFTER`].
struct ProgressLine {
    task: tokio::task::JoinHandle<()>,
    drawn: Arc<AtomicBool>,
}

impl ProgressLine {
    fn start(
        runtime: &tokio::runtime::Runtime,
        cfg: &SimConfig,
        progress: Arc<Progress>,
    ) -> Option<ProgressLine> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let drawn = Arc::new(AtomicBool::new(false));
        let scenario = cfg.scenario;
        let planned = cfg
            .duration
            .filter(|_| !scenario.is_finite())
            .map(|d| format!("/{:.1}s", d.as_secs_f64()))
            .unwrap_or_default();
        let flag = Arc::clone(&drawn);
        let task = runtime.spawn(async move {
            let started = std::time::Instant::now();
            let mut ticker = tokio::time::interval(PROGRESS_EVERY);
            loop {
                ticker.tick().await;
                let elapsed = started.elapsed();
                if elapsed < PROGRESS_AFTER {
                    continue;
                }
                let line = format!(
                    "locks-sim: {scenario} {:.1}s{planned}  ops {}  violations {}",
                    elapsed.as_secs_f64(),
                    progress.ops(),
                    progress.violations(),
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{line:<72}");
                let _ = err.flush();
                flag.store(true, Ordering::SeqCst);
            }
        });
        Some(ProgressLine { task, drawn })
    }

    fn finish(self) {
        self.task.abort();
        if self.drawn.load(Ordering::SeqCst) {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:72}\r", "");
            let _ = err.flush();
        }
    }
}

fn main() -> ExitCode {
    // Bad arguments: clap prints usage and exits with 2 (0 for --help / --version).
    let args = Args::parse();
    let configs: Vec<SimConfig> = args
        .scenario
        .scenarios()
        .into_iter()
        .map(|s| config(&args, s))
        .collect();
    for cfg in &configs {
        if let Err(e) = cfg.validate() {
            eprintln!("locks-sim: {}: {e}", cfg.scenario);
            return ExitCode::from(EXIT_ERROR);
        }
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
        (None, None) if args.postgres.is_some() => BackendKind::Postgres,
        (None, None) if args.redis_quorum.is_some() => BackendKind::RedisQuorum,
        (None, None) if args.redis_cluster.is_some() => BackendKind::RedisCluster,
        (None, None) => BackendKind::Memory,
    };
    if args.postgres.is_some() && kind != BackendKind::Postgres {
        eprintln!("locks-sim: --postgres needs --backend postgres (or no --backend)");
        return ExitCode::from(EXIT_ERROR);
    }
    if args.redis_quorum.is_some() && kind != BackendKind::RedisQuorum {
        eprintln!("locks-sim: --redis-quorum needs --backend redis-quorum (or no --backend)");
        return ExitCode::from(EXIT_ERROR);
    }
    if args.redis_cluster.is_some() && kind != BackendKind::RedisCluster {
        eprintln!("locks-sim: --redis-cluster needs --backend redis-cluster (or no --backend)");
        return ExitCode::from(EXIT_ERROR);
    }
    if args.redis.is_some() && kind != BackendKind::Redis {
        eprintln!("locks-sim: --redis needs --backend redis (or no --backend)");
        return ExitCode::from(EXIT_ERROR);
    }
    let backend = match runtime.block_on(make_backend(
        kind,
        args.redis.as_deref(),
        args.postgres.as_deref(),
        args.redis_quorum.as_deref(),
        args.redis_cluster.as_deref(),
    )) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("locks-sim: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };

    let mut results: Vec<(Scenario, bool)> = Vec::new();
    for (i, cfg) in configs.iter().enumerate() {
        if !args.json {
            if i > 0 {
                println!();
            }
            println!("{}", header(kind, cfg));
        }
        let progress = Arc::new(Progress::new());
        let line = ProgressLine::start(&runtime, cfg, Arc::clone(&progress));
        let outcome = runtime.block_on(sim::run_with_progress(Arc::clone(&backend), cfg, progress));
        if let Some(line) = line {
            line.finish();
        }
        let report = match outcome {
            Ok(report) => report,
            Err(e) => {
                eprintln!("locks-sim: {}: {e}", cfg.scenario);
                return ExitCode::from(EXIT_ERROR);
            }
        };
        print_report(&report, args.json);
        results.push((report.scenario, report.passed()));
    }
    if !args.json && results.len() > 1 {
        let summary: Vec<String> = results
            .iter()
            .map(|(s, ok)| format!("{s} {}", if *ok { "PASS" } else { "FAIL" }))
            .collect();
        println!();
        println!("locks-sim: summary: {}", summary.join(", "));
    }
    if results.iter().all(|(_, ok)| *ok) {
        ExitCode::from(EXIT_PASSED)
    } else {
        ExitCode::from(EXIT_VIOLATION)
    }
}

fn print_report(report: &SimReport, json: bool) {
    let lines = report.violation_lines();
    if json {
        println!("{}", report.to_json());
        for line in &lines {
            eprintln!("{line}");
        }
    } else {
        println!();
        print!("{}", report.table());
        for line in &lines {
            println!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let duration = |text: &str| {
            Args::try_parse_from(["locks-sim", "--duration", text])
                .ok()
                .and_then(|args| args.duration)
        };
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(duration("1s 500ms"), Some(Duration::from_millis(1500)));
        assert_eq!(duration("0"), Some(Duration::ZERO));
        for bad in ["", "s", "10", "3 parsecs", "soon", "18446744073709551615h"] {
            assert_eq!(duration(bad), None, "{bad:?} was accepted");
        }
        let ttl = Args::try_parse_from(["locks-sim", "--ttl", "250ms", "--fault-interval", "1s"])
            .expect("valid args");
        assert_eq!(ttl.ttl, Some(Duration::from_millis(250)));
        assert_eq!(ttl.fault_interval, Some(Duration::from_secs(1)));
    }

    #[test]
    fn args_parse_and_build_a_config() {
        let args = Args::try_parse_from(["locks-sim", "--ops-per-worker", "10"]);
        let args = args.expect("valid args");
        assert_eq!(args.scenario, ScenarioChoice::One(Scenario::Mutex));
        let cfg = config(&args, Scenario::Mutex);
        assert_eq!(
            cfg,
            SimConfig {
                duration: None,
                ops_per_worker: Some(10),
                ..SimConfig::default()
            }
        );
        assert_eq!(cfg.effective_services(), 8);
        // --ops-per-worker does not bound the finite or timed scenarios.
        assert!(config(&args, Scenario::Oversell).duration.is_some());
        assert!(config(&args, Scenario::LeaderFailover).duration.is_some());

        let cfg = config(
            &Args::try_parse_from(["locks-sim"]).expect("valid args"),
            Scenario::Mutex,
        );
        assert_eq!(cfg, SimConfig::default());

        assert!(Args::try_parse_from(["locks-sim", "--duration", "2 parsecs"]).is_err());
        assert!(Args::try_parse_from(["locks-sim", "--backend", "nope"]).is_err());
    }

    #[test]
    fn scenarios_parse_and_take_their_defaults() {
        let args = Args::try_parse_from([
            "locks-sim",
            "--scenario",
            "all",
            "--workers",
            "3",
            "--unsafe-no-lock",
        ])
        .expect("valid args");
        assert_eq!(args.scenario.scenarios(), Scenario::ALL.to_vec());
        for s in Scenario::ALL {
            let cfg = config(&args, s);
            assert_eq!(cfg.scenario, s);
            assert_eq!(cfg.workers, 3);
            assert!(cfg.unsafe_no_lock);
            assert_eq!(cfg.ttl, SimConfig::for_scenario(s).ttl);
        }
        let args = Args::try_parse_from(["locks-sim", "--scenario", "gc-pause", "--stock", "7"])
            .expect("valid args");
        assert_eq!(args.scenario, ScenarioChoice::One(Scenario::GcPause));
        assert_eq!(config(&args, Scenario::Oversell).stock, 7);
        assert!(Args::try_parse_from(["locks-sim", "--scenario", "nope"]).is_err());
    }
}
