//! The Redis figures: the lock service next to the raw commands it is built on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use locks_core::{LeaseKind, LockBackend, LockKey, LockService, OwnerToken};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use locks_redis::redis::{self, Client};

use crate::table::{Row, Table, Verdict, micros, rate, times};
use crate::{Config, Flavor, Result, Section};

pub mod cluster;
mod floor;
mod handoff;
mod profile;
pub mod quorum;
mod renewal;
mod rslock;
mod server_cost;
mod throughput;
mod versus;

use handoff::handoff;
pub use renewal::measure_renewal;
use renewal::renewal;
pub use throughput::{Side, Tally};
use throughput::{Sides, concurrent, sequential};

/// Concurrent tasks of the concurrent figure.
const TASKS: usize = 64;
/// Ttl of the throughput and hand-off leases (the service default).
const TTL: Duration = Duration::from_secs(30);
/// A fixed 36-character token for the raw `SET NX`, as long as an owner token.
const RAW_TOKEN: &str = "00000000-0000-4000-8000-000000000000";

/// A connection of the same type and configuration as the backend's command connection.
async fn raw_conn(client: &Client) -> Result<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(locks_redis::DEFAULT_CONNECT_TIMEOUT))
        .set_response_timeout(Some(locks_redis::DEFAULT_RESPONSE_TIMEOUT))
        .set_number_of_retries(0);
    Ok(client.get_connection_manager_with_config(config).await?)
}

/// The server's `redis_version`.
pub async fn server_version(url: &str) -> Result<String> {
    let mut conn = raw_conn(&Client::open(url)?).await?;
    let info = info(&mut conn, "server").await?;
    Ok(info
        .get("redis_version")
        .cloned()
        .unwrap_or_else(|| "?".into()))
}

async fn info(conn: &mut ConnectionManager, section: &str) -> Result<HashMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

/// `calls` of one command in `INFO commandstats`.
fn calls(stats: &HashMap<String, String>, command: &str) -> u64 {
    stats
        .get(&format!("cmdstat_{command}"))
        .and_then(|v| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Server CPU seconds (user + system) from `INFO cpu`.
fn server_cpu(stats: &HashMap<String, String>) -> f64 {
    ["used_cpu_user", "used_cpu_sys"]
        .iter()
        .filter_map(|k| stats.get(*k).and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

fn new_histogram() -> Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Run every Redis section of `cfg` on the current runtime.
pub async fn run(url: &str, flavor: Flavor, cfg: &Config, table: &mut Table) -> Result<()> {
    let rt = flavor.label();
    let client = Client::open(url)?;
    let mut raw = raw_conn(&client).await?;
    let rtt = ping_rtt(&mut raw, cfg.measure / 2).await?;
    table.push(Row {
        figure: "loopback round trip (PING, p50)".into(),
        runtime: rt,
        locks: "-".into(),
        reference: format!("PING: {}", micros(rtt)),
        ratio: "1 RTT".into(),
        target: String::new(),
        verdict: Verdict::Info,
    });
    let backend = RedisBackend::connect(url).await?;
    let svc = LockService::new(backend.clone())?;
    let floor = floor::Floor::new();
    let sides = Sides {
        svc: &svc,
        backend: &backend,
        raw: &raw,
        floor: &floor,
    };

    let mut uncontended: Option<f64> = None;
    if cfg.runs(Section::Sequential) || cfg.runs(Section::Handoff) {
        let tally = sequential(&sides, cfg).await?;
        let (lib, floor) = (tally.rate(Side::Service), tally.rate(Side::Raw));
        uncontended = Some(lib);
        let ratio = tally.ratio(Side::Service, Side::Raw);
        table.push(Row {
            figure: "sequential acquire+release, 1 connection".into(),
            runtime: rt,
            locks: format!(
                "{} ({} per cycle)",
                rate(lib),
                micros(Duration::from_secs_f64(1.0 / lib))
            ),
            reference: format!(
                "SET NX PX + DEL: {} ({} per cycle)",
                rate(floor),
                micros(Duration::from_secs_f64(1.0 / floor))
            ),
            ratio: times(ratio),
            target: "≥ 0.90×".into(),
            verdict: Verdict::of(ratio >= 0.90),
        });
        scripts_rows(table, rt, "sequential", &tally, "SET NX PX + DEL");
    }
    if cfg.runs(Section::Concurrent) {
        let tally = concurrent(&sides, cfg).await?;
        let ratio = tally.ratio(Side::Service, Side::Raw);
        table.push(Row {
            figure: format!("{TASKS} concurrent tasks, 1 multiplexed connection"),
            runtime: rt,
            locks: rate(tally.rate(Side::Service)),
            reference: format!(
                "SET NX PX + DEL, {TASKS} tasks: {}",
                rate(tally.rate(Side::Raw))
            ),
            ratio: times(ratio),
            target: "≥ 0.80×".into(),
            verdict: Verdict::of(ratio >= 0.80),
        });
        scripts_rows(
            table,
            rt,
            &format!("{TASKS} concurrent"),
            &tally,
            &format!("SET NX PX + DEL, {TASKS} tasks"),
        );
    }
    svc.shutdown().await;
    floor::clean(&mut raw, &cfg.run_id).await?;
    if cfg.runs(Section::Handoff) {
        // Default mode with 4 and 8 workers, then fair mode with 4.
        for (workers, fair) in [(4, false), (8, false), (4, true)] {
            let before = ping_rtt(&mut raw, cfg.measure / 8).await?;
            let report = handoff(url, workers, fair, cfg).await?;
            let after = ping_rtt(&mut raw, cfg.measure / 8).await?;
            report.rows(rt, (before + after) / 2, uncontended, table)?;
        }
    }
    if cfg.runs(Section::Renewal) {
        renewal(url, flavor, cfg, table).await?;
    }
    if cfg.runs(Section::Rslock) {
        rslock::run(url, rt, cfg, table).await?;
    }
    if cfg.runs(Section::ServerCost) && flavor == Flavor::MultiThread {
        server_cost::run(url, cfg, table).await?;
    }
    if cfg.runs(Section::Profile) {
        profile::run(url, rt, cfg, table).await?;
    }
    Ok(())
}

/// Three rows that split a throughput figure: the minimal fenced lock (the best any
/// script-based design with fences can do against the plain commands), the backend's scripts
/// called directly, and the service against its scripts (what the service itself costs).
fn scripts_rows(table: &mut Table, rt: &'static str, what: &str, tally: &Tally, floor_name: &str) {
    table.push(Row {
        figure: format!("{what}: floor, a minimal fenced lock (SET NX PX + INCR script, CAD)"),
        runtime: rt,
        locks: rate(tally.rate(Side::Floor)),
        reference: format!("{floor_name}: {}", rate(tally.rate(Side::Raw))),
        ratio: times(tally.ratio(Side::Floor, Side::Raw)),
        target: String::new(),
        verdict: Verdict::Info,
    });
    let scripts = tally.rate(Side::Scripts);
    table.push(Row {
        figure: format!("{what}: backend scripts alone (no service)"),
        runtime: rt,
        locks: rate(scripts),
        reference: format!("{floor_name}: {}", rate(tally.rate(Side::Raw))),
        ratio: times(tally.ratio(Side::Scripts, Side::Raw)),
        target: String::new(),
        verdict: Verdict::Info,
    });
    table.push(Row {
        figure: format!("{what}: service over its own scripts"),
        runtime: rt,
        locks: rate(tally.rate(Side::Service)),
        reference: format!("scripts alone: {}", rate(scripts)),
        ratio: times(tally.ratio(Side::Service, Side::Scripts)),
        target: String::new(),
        verdict: Verdict::Info,
    });
}

/// Median round trip of sequential `PING`s.
async fn ping_rtt(conn: &mut ConnectionManager, dur: Duration) -> Result<Duration> {
    let mut hist = new_histogram()?;
    for _ in 0..100 {
        let _: String = redis::cmd("PING").query_async(conn).await?;
    }
    let start = Instant::now();
    while start.elapsed() < dur {
        let t = Instant::now();
        let _: String = redis::cmd("PING").query_async(conn).await?;
        hist.record(us(t.elapsed()))?;
    }
    Ok(Duration::from_micros(hist.value_at_quantile(0.5)))
}

/// `SET key tok NX PX 30000`, which must succeed.
async fn raw_set(conn: &mut ConnectionManager, key: &str) -> Result<()> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(RAW_TOKEN)
        .arg("NX")
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(conn)
        .await?;
    set.map(drop)
        .ok_or_else(|| format!("raw SET NX found {key} taken").into())
}

async fn raw_cycle(conn: &mut ConnectionManager, key: &str) -> Result<()> {
    raw_set(conn, key).await?;
    let _: i64 = redis::cmd("DEL").arg(key).query_async(conn).await?;
    Ok(())
}

/// The backend's own acquire and release (one script each), with a fresh token per cycle as
/// the service uses.
async fn backend_cycle(backend: &RedisBackend, key: &LockKey) -> Result<()> {
    let token = OwnerToken::new();
    match backend
        .try_acquire(key, LeaseKind::Mutex, token, TTL)
        .await?
    {
        locks_core::AcquireResult::Acquired(_) => {}
        locks_core::AcquireResult::Held { .. } => {
            return Err(format!("backend acquire found {key:?} held").into());
        }
    }
    if !backend.release(key, LeaseKind::Mutex, token).await? {
        return Err(format!("backend release of {key:?}: not owner").into());
    }
    Ok(())
}

async fn lib_cycle(svc: &LockService, key: &str) -> Result<()> {
    let guard = svc.acquire(key).await?;
    guard.release().await?;
    Ok(())
}
