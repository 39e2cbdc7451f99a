//! `locks-bench`: the lock service against raw Redis commands, the loopback round trip, a raw
//! `DashMap` and `tokio::sync::Mutex`, side by side in one run.
//!
//! It starts a private `redis-server` through the testkit fixture (or uses `--redis URL`), runs
//! every Redis figure on tokio's multi-thread runtime (what `#[tokio::main]` gives) and on the
//! current-thread runtime, then the memory-backend figures, and prints one Markdown table with
//! every ratio and target.
//!
//! Sections (`--only`, comma-separated; default all): `sequential`, `concurrent`, `handoff`,
//! `renewal`, `memory`, `postgres`, `quorum`, `cluster`, and
//!
//! - `rslock`: [rslock](https://crates.io/crates/rslock) 0.10 side by side on the same server,
//!   same process, interleaved rounds — uncontended `acquire`+`release` against
//!   `lock`+`unlock`, and 4 and 8 workers on one key (each with its own connections, a
//!   `GET`/`SET` counter pair as the critical section, default retry settings on both sides):
//!   critical sections/s, longest wait, smallest worker share, lost updates (an overlap on
//!   our side is an error, exit code 2);
//! - `server-cost` (multi-thread runtime only): 50 connections saturate the server with the
//!   backend's acquire+release scripts against `SET NX PX` + compare-and-delete; plus the
//!   server's µs per call of each (`CONFIG RESETSTAT` + `INFO commandstats`, private server
//!   only);
//! - `profile`: client CPU (every thread, `/proc/self/task/*/schedstat`) and allocation calls
//!   (a counting global allocator, [`alloc_count`]) per uncontended cycle, for the service,
//!   its scripts alone, rslock and `SET NX PX` + `DEL`.
//!
//! ```text
//! cargo run --release -p locks-bench                 # the full run (a few minutes)
//! cargo run --release -p locks-bench -- --quick      # a smoke run (seconds)
//! cargo run --release -p locks-bench -- --only handoff --measure 5s
//! cargo run --release -p locks-bench -- --only cluster   # cluster, replica_ack, Sentinel
//! cargo run --release -p locks-bench -- --only rslock,server-cost,profile
//! ```
//!
//! Exit codes: 0 every target met, 1 a target missed, 2 an error.

mod alloc_count;
mod memory_bench;
mod postgres_bench;
mod redis_bench;
mod sys;
mod table;

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use locks_testkit::redis_server::RedisServer;
use tokio::runtime::Runtime;

use crate::table::Table;

/// Every allocation of the process is counted (the profile rows' allocations per cycle).
#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// The error type of the binary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The result type of the binary.
pub type Result<T> = std::result::Result<T, BoxError>;

/// A group of figures (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Uncontended acquire+release on one connection, sequential, vs SET NX PX + DEL.
    Sequential,
    /// The same with 64 concurrent tasks on one multiplexed connection.
    Concurrent,
    /// 4 and 8 workers on one key: hand-off latency, throughput, waits, shares.
    Handoff,
    /// Many leases held with auto-renewal: round trips, CPU, memory.
    Renewal,
    /// The in-memory backend vs DashMap and tokio::sync::Mutex.
    Memory,
    /// The PostgreSQL backend (a private server) beside the Redis backend, same cycles.
    Postgres,
    /// A quorum (Redlock) of 3 private redis-servers beside the single node.
    Quorum,
    /// A private Redis Cluster beside the single node, and what `replica_ack` and Sentinel
    /// cost beside the same primary without them.
    Cluster,
    /// rslock side by side: uncontended, and 4 and 8 workers on one key (throughput, longest
    /// wait, worker shares, lost updates).
    Rslock,
    /// Server cost of the acquire+release scripts vs `SET NX PX` + compare-and-delete under a
    /// saturating load (50 connections), and the server's µs per call of each.
    ServerCost,
    /// Client CPU and allocations per uncontended cycle: service, scripts, rslock, raw.
    Profile,
}

/// Benchmarks of the locks service against raw Redis, the loopback round trip, DashMap and
/// tokio::sync::Mutex.
#[derive(Debug, Parser)]
#[command(name = "locks-bench", version, about)]
struct Args {
    /// Use this Redis server instead of starting a private one (keys are namespaced per run;
    /// nothing is flushed). Never point it at a server others depend on.
    #[arg(long)]
    redis: Option<String>,

    /// A short smoke run: every row, tiny durations and 200 renewed leases.
    #[arg(long)]
    quick: bool,

    /// Measuring time per side of each throughput figure (e.g. `2s`, `300ms`).
    #[arg(long, value_parser = humantime::parse_duration)]
    measure: Option<Duration>,

    /// How long the leases of the renewal figure are held.
    #[arg(long, value_parser = humantime::parse_duration)]
    renew_duration: Option<Duration>,

    /// Ttl of the renewed leases; they renew at half of it.
    #[arg(long, value_parser = humantime::parse_duration)]
    renew_ttl: Option<Duration>,

    /// Number of leases held for the renewal figure.
    #[arg(long)]
    renew_leases: Option<usize>,

    /// Run only these sections (repeat or comma-separate); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,

    /// Internal: measure the renewal figure alone in this (fresh) process on this runtime,
    /// against `--redis`, and print one `RENEWAL ...` line.
    #[arg(long, value_enum, hide = true, requires = "redis")]
    renewal_child: Option<ChildFlavor>,
}

/// The runtime of a `--renewal-child` process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ChildFlavor {
    /// `Builder::new_multi_thread()`.
    MultiThread,
    /// `Builder::new_current_thread()`.
    CurrentThread,
}

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Config {
    /// Measuring time per side of a throughput figure (split into interleaved rounds).
    pub measure: Duration,
    /// Interleaved rounds per throughput figure (locks and reference alternate, so machine
    /// noise hits both sides alike).
    pub rounds: u32,
    /// Measuring time of a hand-off figure.
    pub handoff: Duration,
    /// Leases held for the renewal figure.
    pub renew_leases: usize,
    /// Their ttl.
    pub renew_ttl: Duration,
    /// How long they are held.
    pub renew_duration: Duration,
    /// Sections to run.
    pub sections: Vec<Section>,
    /// A per-run tag in every key, so runs against a shared server do not collide.
    pub run_id: String,
    /// Whether the server is the private one of the testkit fixture (not `--redis`): only
    /// then are its statistics reset (`CONFIG RESETSTAT`).
    pub private_server: bool,
}

impl Config {
    fn from_args(args: &Args) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let run_id = format!("bench-{}-{}", std::process::id(), nanos % 1_000_000_000);
        let (measure, rounds, handoff, leases, ttl, hold) = if args.quick {
            (
                Duration::from_millis(100),
                2,
                Duration::from_millis(200),
                200,
                Duration::from_secs(1),
                Duration::from_millis(1600),
            )
        } else {
            (
                Duration::from_secs(2),
                10,
                Duration::from_secs(3),
                10_000,
                Duration::from_secs(10),
                Duration::from_secs(30),
            )
        };
        let sections = if args.only.is_empty() {
            vec![
                Section::Sequential,
                Section::Concurrent,
                Section::Handoff,
                Section::Renewal,
                Section::Memory,
                Section::Postgres,
                Section::Quorum,
                Section::Cluster,
                Section::Rslock,
                Section::ServerCost,
                Section::Profile,
            ]
        } else {
            args.only.clone()
        };
        Config {
            measure: args.measure.unwrap_or(measure),
            rounds,
            handoff: args.measure.map_or(handoff, |m| m.max(handoff)),
            renew_leases: args.renew_leases.unwrap_or(leases),
            renew_ttl: args.renew_ttl.unwrap_or(ttl),
            renew_duration: args.renew_duration.unwrap_or(hold),
            sections,
            run_id,
            private_server: args.redis.is_none(),
        }
    }

    /// Whether `section` is to run.
    pub fn runs(&self, section: Section) -> bool {
        self.sections.contains(&section)
    }
}

/// A tokio runtime flavour, with the label the table uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `Builder::new_multi_thread()`, one worker per core: what `#[tokio::main]` gives.
    MultiThread,
    /// `Builder::new_current_thread()`.
    CurrentThread,
}

impl Flavor {
    /// The label of the runtime column.
    pub fn label(self) -> &'static str {
        match self {
            Flavor::MultiThread => "multi-thread",
            Flavor::CurrentThread => "current-thread",
        }
    }

    /// Build a runtime of this flavour with every driver on.
    pub fn build(self) -> Result<Runtime> {
        let mut builder = match self {
            Flavor::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        };
        Ok(builder.enable_all().build()?)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(child), Some(url)) = (args.renewal_child, &args.redis) {
        let flavor = match child {
            ChildFlavor::MultiThread => Flavor::MultiThread,
            ChildFlavor::CurrentThread => Flavor::CurrentThread,
        };
        let cfg = Config::from_args(&args);
        let measured = flavor
            .build()
            .and_then(|rt| rt.block_on(redis_bench::measure_renewal(url, &cfg)));
        return match measured {
            Ok(figures) => {
                println!("{}", figures.to_line());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("locks-bench (renewal child): {e}");
                ExitCode::from(2)
            }
        };
    }
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("locks-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<usize> {
    let cfg = Config::from_args(args);
    // The fixture's own runtime owns the server process for the whole run.
    let fixture_rt = Flavor::CurrentThread.build()?;
    let needs_redis = cfg.sections.iter().any(|s| *s != Section::Memory);
    let (server, url) = match (&args.redis, needs_redis) {
        (Some(url), _) => (None, Some(url.clone())),
        (None, true) => {
            let server = fixture_rt.block_on(RedisServer::start())?;
            let url = server.url();
            (Some(server), Some(url))
        }
        (None, false) => (None, None),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut table = Table::default();
    let mut notes = Vec::new();
    if let Some(url) = &url {
        let version = fixture_rt.block_on(redis_bench::server_version(url))?;
        notes.push(format!(
            "Redis {version} at {} ({}), {cores} CPU cores shared by client and server",
            redact(url),
            if server.is_some() {
                "private redis-server started by the testkit fixture"
            } else {
                "--redis"
            },
        ));
        for flavor in [Flavor::MultiThread, Flavor::CurrentThread] {
            eprintln!("redis figures on the {} runtime", flavor.label());
            let rt = flavor.build()?;
            rt.block_on(redis_bench::run(url, flavor, &cfg, &mut table))?;
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
    if url.is_some() && cfg.runs(Section::Rslock) {
        notes.push(
            "rslock 0.10.0 (crates.io) on the same server, defaults: `lock` = up to 3 \
             `SET NX PX` attempts, its unlock script after every failed one, a random 0–200 ms \
             pause between them; `acquire` loops on `lock`. Contended rows: 3 interleaved rounds \
             of a third of the hand-off time per side, medians (longest wait: the longest of all \
             rounds)"
                .to_owned(),
        );
    }
    if url.is_some() && cfg.runs(Section::ServerCost) {
        notes.push(
            "server cost: 50 connections per side saturate the server (client and server share \
             the cores, so the rate ratio understates the server CPU ratio printed beside it)"
                .to_owned(),
        );
    }
    if let (Some(url), true) = (&url, cfg.runs(Section::Postgres)) {
        eprintln!("postgres figures beside redis");
        let rt = Flavor::MultiThread.build()?;
        let version = rt.block_on(postgres_bench::run(url, &cfg, &mut table))?;
        notes.push(format!(
            "PostgreSQL {version}: private server of the testkit fixture (fsync=off), \
             pool of 16, beside the Redis backend on the server above"
        ));
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    if let (Some(url), true) = (&url, cfg.runs(Section::Quorum)) {
        eprintln!("quorum figures beside the single node");
        let rt = Flavor::MultiThread.build()?;
        rt.block_on(redis_bench::quorum::run(url, &cfg, &mut table))?;
        notes.push(
            "quorum of 3: private redis-servers of the testkit fixture on this machine, \
             beside the single server above"
                .to_owned(),
        );
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    if let (Some(url), true) = (&url, cfg.runs(Section::Cluster)) {
        eprintln!("cluster, replica-ack and Sentinel figures beside the single node");
        let rt = Flavor::MultiThread.build()?;
        rt.block_on(redis_bench::cluster::run(url, &cfg, &mut table))?;
        notes.push(
            "cluster of 3 primaries + 3 replicas, a primary with 2 replicas, a Sentinel set \
             (1 primary, 2 replicas, 3 Sentinels): private redis-servers of the testkit \
             fixtures on this machine"
                .to_owned(),
        );
        rt.shutdown_timeout(Duration::from_secs(2));
    }
    if cfg.runs(Section::Memory) {
        eprintln!("memory-backend figures");
        memory_bench::run(&cfg, &mut table)?;
    }
    notes.push(format!(
        "throughput sides measured {:?} each in {} interleaved rounds; hand-off runs {:?}; \
         renewal holds {} leases (ttl {:?}, renewed every {:?}) for {:?}",
        cfg.measure,
        cfg.rounds,
        cfg.handoff,
        cfg.renew_leases,
        cfg.renew_ttl,
        cfg.renew_ttl / 2,
        cfg.renew_duration
    ));
    println!();
    for n in &notes {
        println!("{n}");
    }
    println!();
    print!("{}", table.render());
    let failures = table.failures();
    println!();
    println!("{failures} target(s) missed");
    {
        let _enter = fixture_rt.enter();
        drop(server);
    }
    Ok(failures)
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let measure = |text: &str| {
            Args::try_parse_from(["locks-bench", "--measure", text])
                .ok()
                .and_then(|args| args.measure)
        };
        assert_eq!(measure("30s"), Some(Duration::from_secs(30)));
        assert_eq!(measure("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(measure("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(measure("1m"), Some(Duration::from_secs(60)));
        assert_eq!(measure("1min"), Some(Duration::from_secs(60)));
        // humantime wants a unit: a bare number other than 0 is refused.
        assert_eq!(measure("2"), None);
        assert_eq!(measure("fast"), None);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
    }
}
