//! The Redis figures: the lock service next to the raw commands it is built on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use locks_core::{
    AcquireOptions, LeaseKind, LeaseState, LockBackend, LockGuard, LockKey, LockService, OwnerToken,
};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use locks_redis::redis::{self, Client};
use tokio::task::JoinSet;

use crate::sys::{cpu_time, rss_bytes};
use crate::table::{Row, Table, Verdict, grouped, median, micros, rate, times};
use crate::{Config, Flavor, Result, Section};

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
    let sides = Sides {
        svc: &svc,
        backend: &backend,
        raw: &raw,
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
    if cfg.runs(Section::Handoff) {
        for workers in [4, 8] {
            let before = ping_rtt(&mut raw, cfg.measure / 8).await?;
            let report = handoff(url, workers, cfg).await?;
            let after = ping_rtt(&mut raw, cfg.measure / 8).await?;
            report.rows(rt, (before + after) / 2, uncontended, table)?;
        }
    }
    if cfg.runs(Section::Renewal) {
        renewal(url, flavor, cfg, table).await?;
    }
    Ok(())
}

/// Two rows that split a throughput figure: the backend's scripts called directly (what a
/// Lua-script design costs against the plain commands), and the service against its scripts
/// (what the service itself costs).
fn scripts_rows(table: &mut Table, rt: &'static str, what: &str, tally: &Tally, floor_name: &str) {
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

async fn raw_cycle(conn: &mut ConnectionManager, key: &str) -> Result<()> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(RAW_TOKEN)
        .arg("NX")
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .query_async(conn)
        .await?;
    if set.is_none() {
        return Err(format!("raw SET NX found {key} taken").into());
    }
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

/// Per-round rates of the three sides of a throughput figure. Rounds interleave the sides (in
/// a rotating order), so load from outside the benchmark hits every side alike; medians keep
/// a burst of it from deciding the result.
#[derive(Debug, Default)]
pub struct Tally {
    rounds: Vec<[f64; 3]>,
}

impl Tally {
    fn push(&mut self, side: Side, rate: f64, round: usize) {
        if self.rounds.len() <= round {
            self.rounds.resize(round + 1, [0.0; 3]);
        }
        self.rounds[round][side as usize] = rate;
    }

    /// The median rate of `side`.
    pub fn rate(&self, side: Side) -> f64 {
        median(self.rounds.iter().map(|r| r[side as usize]).collect())
    }

    /// The median over rounds of `a / b`.
    pub fn ratio(&self, a: Side, b: Side) -> f64 {
        median(
            self.rounds
                .iter()
                .map(|r| r[a as usize] / r[b as usize].max(1e-9))
                .collect(),
        )
    }
}

/// The order of the sides in round `round`.
fn order(round: usize) -> [Side; 3] {
    let sides = [Side::Raw, Side::Scripts, Side::Service];
    [0, 1, 2].map(|i| sides[(i + round) % 3])
}

/// Cycles per second on one connection, one at a time, for each side.
async fn sequential(sides: &Sides<'_>, cfg: &Config) -> Result<Tally> {
    // Indexed by `Side`.
    let mut cyclers = [
        sides.cycler(Side::Service, format!("{}:seq", cfg.run_id))?,
        sides.cycler(Side::Scripts, format!("{}:scripts-seq", cfg.run_id))?,
        sides.cycler(Side::Raw, format!("{}:raw-seq", cfg.run_id))?,
    ];
    for _ in 0..200 {
        for cycler in &mut cyclers {
            cycler.cycle().await?;
        }
    }
    let slice = cfg.measure / cfg.rounds;
    let mut tally = Tally::default();
    for round in 0..cfg.rounds as usize {
        for side in order(round) {
            let start = Instant::now();
            let n = cyclers[side as usize].cycles_until(start + slice).await?;
            tally.push(side, n as f64 / start.elapsed().as_secs_f64(), round);
        }
    }
    Ok(tally)
}

/// Which side of a throughput figure runs.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// The lock service (acquire + release).
    Service = 0,
    /// The backend's scripts called directly.
    Scripts = 1,
    /// Plain `SET NX PX` + `DEL`.
    Raw = 2,
}

/// Total cycles per second of [`TASKS`] tasks on one connection, each on its own key, for
/// each side.
async fn concurrent(sides: &Sides<'_>, cfg: &Config) -> Result<Tally> {
    // Warm-up, then interleaved rounds.
    for side in [Side::Service, Side::Scripts, Side::Raw] {
        concurrent_round(sides, &cfg.run_id, side, Duration::from_millis(50)).await?;
    }
    let slice = cfg.measure / cfg.rounds;
    let mut tally = Tally::default();
    for round in 0..cfg.rounds as usize {
        for side in order(round) {
            let (n, t) = concurrent_round(sides, &cfg.run_id, side, slice).await?;
            tally.push(side, n as f64 / t.as_secs_f64(), round);
        }
    }
    Ok(tally)
}

/// What the sides of a throughput figure run on: the service, its backend, and a raw
/// connection (one multiplexed connection each).
struct Sides<'a> {
    svc: &'a LockService,
    backend: &'a RedisBackend,
    raw: &'a ConnectionManager,
}

impl Sides<'_> {
    /// Acquire+release cycles of `side` on the key `name`.
    fn cycler(&self, side: Side, name: String) -> Result<Cycler> {
        Ok(match side {
            Side::Service => Cycler::Service {
                svc: self.svc.clone(),
                key: name,
            },
            Side::Scripts => Cycler::Scripts {
                backend: self.backend.clone(),
                key: LockKey::new("_lock:", &name)?,
            },
            Side::Raw => Cycler::Raw {
                conn: self.raw.clone(),
                key: name,
            },
        })
    }
}

/// One side of a throughput figure, on its own key.
enum Cycler {
    Service {
        svc: LockService,
        key: String,
    },
    Scripts {
        backend: RedisBackend,
        key: LockKey,
    },
    Raw {
        conn: ConnectionManager,
        key: String,
    },
}

impl Cycler {
    /// One acquire+release cycle.
    async fn cycle(&mut self) -> Result<()> {
        match self {
            Cycler::Service { svc, key } => lib_cycle(svc, key).await,
            Cycler::Scripts { backend, key } => backend_cycle(backend, key).await,
            Cycler::Raw { conn, key } => raw_cycle(conn, key).await,
        }
    }

    /// Cycles until `deadline`; returns how many ran.
    async fn cycles_until(&mut self, deadline: Instant) -> Result<u64> {
        let mut n = 0u64;
        while Instant::now() < deadline {
            self.cycle().await?;
            n += 1;
        }
        Ok(n)
    }
}

async fn concurrent_round(
    sides: &Sides<'_>,
    run_id: &str,
    side: Side,
    dur: Duration,
) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        let mut cycler = sides.cycler(side, format!("{run_id}:conc-{side:?}:{i}"))?;
        tasks.spawn(async move { cycler.cycles_until(deadline).await });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        total += r??;
    }
    Ok((total, start.elapsed()))
}

/// What one hand-off run measured.
struct Handoff {
    workers: usize,
    sections: u64,
    elapsed: Duration,
    handoff: Histogram<u64>,
    longest_wait: Duration,
    counts: Vec<u64>,
    violations: u64,
    lost_updates: u64,
    /// Hand-offs where the releaser took the lock again.
    again: u64,
}

#[derive(Default)]
struct Shared {
    /// When the current holder started its release, and which worker it is (taken by the
    /// next holder).
    released_at: Mutex<Option<(Instant, usize)>>,
    /// Hand-offs where the releaser took the lock again itself.
    again: AtomicU64,
    /// Holders inside the critical section right now (must never exceed 1).
    inside: AtomicU64,
    violations: AtomicU64,
    /// Incremented non-atomically (load, yield, store) inside the critical section.
    counter: AtomicU64,
}

/// `workers` lock services, each with its own backend (its own command and pub/sub
/// connections, as separate processes would have), loop on one key with a tiny critical
/// section.
async fn handoff(url: &str, workers: usize, cfg: &Config) -> Result<Handoff> {
    let key = format!("{}:handoff{workers}", cfg.run_id);
    let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(10));
    let mut services = Vec::with_capacity(workers);
    for _ in 0..workers {
        let svc = LockService::new(RedisBackend::connect(url).await?)?;
        // Warm-up: script cache and connections.
        lib_cycle(&svc, &key).await?;
        services.push(svc);
    }
    let shared = Arc::new(Shared::default());
    let start = Instant::now();
    let deadline = start + cfg.handoff;
    let mut tasks = JoinSet::new();
    for (i, svc) in services.iter().enumerate() {
        let (svc, key, opts, shared) =
            (svc.clone(), key.clone(), opts.clone(), Arc::clone(&shared));
        tasks.spawn(async move {
            let mut hist = new_histogram()?;
            let mut longest = Duration::ZERO;
            let mut count = 0u64;
            while Instant::now() < deadline {
                let asked = Instant::now();
                let guard: LockGuard = svc.acquire_opts(&key, opts.clone()).await?;
                let got = Instant::now();
                longest = longest.max(got - asked);
                let released = shared
                    .released_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some((released, by)) = released {
                    hist.record(us(got - released))?;
                    if by == i {
                        shared.again.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if shared.inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    shared.violations.fetch_add(1, Ordering::SeqCst);
                }
                let v = shared.counter.load(Ordering::SeqCst);
                tokio::task::yield_now().await;
                shared.counter.store(v + 1, Ordering::SeqCst);
                shared.inside.fetch_sub(1, Ordering::SeqCst);
                count += 1;
                *shared
                    .released_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), i));
                guard.release().await?;
            }
            Ok::<_, crate::BoxError>((i, count, longest, hist))
        });
    }
    let mut handoff = new_histogram()?;
    let mut counts = vec![0; workers];
    let mut longest_wait = Duration::ZERO;
    while let Some(r) = tasks.join_next().await {
        let (i, count, longest, hist) = r??;
        counts[i] = count;
        longest_wait = longest_wait.max(longest);
        handoff.add(hist)?;
    }
    let elapsed = start.elapsed();
    for svc in &services {
        svc.shutdown().await;
    }
    let sections: u64 = counts.iter().sum();
    Ok(Handoff {
        workers,
        sections,
        elapsed,
        handoff,
        longest_wait,
        counts,
        violations: shared.violations.load(Ordering::SeqCst),
        lost_updates: sections.saturating_sub(shared.counter.load(Ordering::SeqCst)),
        again: shared.again.load(Ordering::SeqCst),
    })
}

impl Handoff {
    fn rows(
        &self,
        rt: &'static str,
        rtt: Duration,
        uncontended: Option<f64>,
        table: &mut Table,
    ) -> Result<()> {
        let w = self.workers;
        let gated = w == 4;
        let rtts = |d: Duration| d.as_secs_f64() / rtt.as_secs_f64();
        // The percentiles, with the most round trips the target allows.
        for (quantile, label, max_rtts) in [
            (0.5, "p50 (release → next acquire)", Some(3.0)),
            (0.99, "p99", None),
        ] {
            let d = Duration::from_micros(self.handoff.value_at_quantile(quantile));
            table.push(Row {
                figure: format!("hand-off {label}, {w} workers"),
                runtime: rt,
                locks: micros(d),
                reference: format!("PING: {}", micros(rtt)),
                ratio: format!("{:.1} RTT", rtts(d)),
                target: max_rtts.map_or_else(String::new, |max| format!("≤ {max} RTT")),
                verdict: max_rtts.map_or(Verdict::Info, |max| Verdict::of(rtts(d) <= max)),
            });
        }
        let cs = self.sections as f64 / self.elapsed.as_secs_f64();
        let (reference, ratio) = match uncontended {
            Some(u) => (format!("uncontended cycle: {}", rate(u)), cs / u),
            None => ("uncontended cycle: not measured".into(), f64::NAN),
        };
        let integrity = if self.violations == 0 && self.lost_updates == 0 {
            String::new()
        } else {
            format!(
                " — {} overlaps, {} lost updates!",
                self.violations, self.lost_updates
            )
        };
        table.push(Row {
            figure: format!("critical sections/s, {w} workers"),
            runtime: rt,
            locks: format!("{}{integrity}", rate(cs)),
            reference,
            ratio: times(ratio),
            target: if gated {
                "≥ 0.50×".into()
            } else {
                String::new()
            },
            verdict: if self.violations > 0 || self.lost_updates > 0 {
                Verdict::Fail
            } else if gated {
                Verdict::of(ratio >= 0.5)
            } else {
                Verdict::Info
            },
        });
        table.push(Row {
            figure: format!("longest single wait, {w} workers"),
            runtime: rt,
            locks: micros(self.longest_wait),
            reference: format!("PING: {}", micros(rtt)),
            ratio: format!("{} RTT", grouped(rtts(self.longest_wait))),
            target: if gated {
                "≤ 50 ms".into()
            } else {
                String::new()
            },
            verdict: if gated {
                Verdict::of(self.longest_wait <= Duration::from_millis(50))
            } else {
                Verdict::Info
            },
        });
        let fair = self.sections as f64 / w as f64;
        let min = self.counts.iter().copied().min().unwrap_or(0) as f64;
        let shares: Vec<String> = self
            .counts
            .iter()
            .map(|c| format!("{:.0}", 100.0 * *c as f64 / self.sections.max(1) as f64))
            .collect();
        table.push(Row {
            figure: format!("worker shares (%), {w} workers"),
            runtime: rt,
            locks: format!(
                "{} (releaser took it again: {:.0} %)",
                shares.join("/"),
                100.0 * self.again as f64 / self.handoff.len().max(1) as f64
            ),
            reference: format!("fair: {:.1} each", 100.0 / w as f64),
            ratio: format!("min {}", times(min / fair)),
            target: if gated {
                "min ≥ 0.50×".into()
            } else {
                String::new()
            },
            verdict: if gated {
                Verdict::of(min / fair >= 0.5)
            } else {
                Verdict::Info
            },
        });
        Ok(())
    }
}

/// What the renewal figure measured.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RenewalFigures {
    /// Leases held.
    pub leases: usize,
    /// Script calls (`EVALSHA` + `EVAL`) the server ran while they were held.
    pub scripts: u64,
    /// How long they were held, in seconds.
    pub elapsed: f64,
    /// CPU seconds of the holding process meanwhile.
    pub cpu: f64,
    /// CPU seconds of the server meanwhile.
    pub server_cpu: f64,
    /// Resident memory before the leases were taken, in bytes.
    pub rss_before: u64,
    /// Resident memory with every lease held, in bytes.
    pub rss_held: u64,
    /// Leases still `Held` at the end.
    pub still_held: usize,
}

impl RenewalFigures {
    /// One line for the parent process: `RENEWAL key=value ...`.
    pub fn to_line(&self) -> String {
        format!(
            "RENEWAL leases={} scripts={} elapsed={} cpu={} server_cpu={} rss_before={} rss_held={} still_held={}",
            self.leases,
            self.scripts,
            self.elapsed,
            self.cpu,
            self.server_cpu,
            self.rss_before,
            self.rss_held,
            self.still_held
        )
    }

    /// Parse the line [`to_line`](Self::to_line) wrote, out of a child's whole output.
    pub fn from_output(output: &str) -> Option<Self> {
        let line = output.lines().find_map(|l| l.strip_prefix("RENEWAL "))?;
        let mut f = RenewalFigures::default();
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=')?;
            match k {
                "leases" => f.leases = v.parse().ok()?,
                "scripts" => f.scripts = v.parse().ok()?,
                "elapsed" => f.elapsed = v.parse().ok()?,
                "cpu" => f.cpu = v.parse().ok()?,
                "server_cpu" => f.server_cpu = v.parse().ok()?,
                "rss_before" => f.rss_before = v.parse().ok()?,
                "rss_held" => f.rss_held = v.parse().ok()?,
                "still_held" => f.still_held = v.parse().ok()?,
                _ => {}
            }
        }
        Some(f)
    }
}

/// Hold many leases with auto-renewal in this process; count round trips, CPU and memory.
/// Run it in a fresh process ([`renewal_in_child`]) so that memory freed by earlier figures
/// does not hide what the leases take.
pub async fn measure_renewal(url: &str, cfg: &Config) -> Result<RenewalFigures> {
    let n = cfg.renew_leases;
    let mut raw = raw_conn(&Client::open(url)?).await?;
    let backend = RedisBackend::connect(url).await?;
    let svc = LockService::builder(backend)
        .default_ttl(cfg.renew_ttl)
        .build()?;
    let warm = format!("{}:renew-warm", cfg.run_id);
    for _ in 0..200 {
        lib_cycle(&svc, &warm).await?;
    }
    let rss_before = rss_bytes().unwrap_or(0);
    let guards: Vec<LockGuard> = futures::stream::iter(0..n)
        .map(|i| {
            let (svc, key) = (svc.clone(), format!("{}:renew:{i}", cfg.run_id));
            async move { svc.acquire(&key).await }
        })
        .buffer_unordered(TASKS)
        .try_collect()
        .await?;
    let rss_held = rss_bytes().unwrap_or(0);
    let stats_before = info(&mut raw, "commandstats").await?;
    let server_before = info(&mut raw, "cpu").await?;
    let cpu_before = cpu_time().unwrap_or_default();
    let start = Instant::now();
    tokio::time::sleep(cfg.renew_duration).await;
    let elapsed = start.elapsed();
    let cpu = cpu_time().unwrap_or_default().saturating_sub(cpu_before);
    let stats_after = info(&mut raw, "commandstats").await?;
    let server_after = info(&mut raw, "cpu").await?;
    let still_held = guards
        .iter()
        .filter(|g| g.state() == LeaseState::Held)
        .count();
    futures::stream::iter(guards)
        .map(|g| g.release())
        .buffer_unordered(TASKS)
        .try_collect::<Vec<()>>()
        .await?;
    svc.shutdown().await;
    // Every lock operation is one script call: EVALSHA (or EVAL after a NOSCRIPT).
    let scripts = ["evalsha", "eval"]
        .iter()
        .map(|c| calls(&stats_after, c).saturating_sub(calls(&stats_before, c)))
        .sum::<u64>();
    Ok(RenewalFigures {
        leases: n,
        scripts,
        elapsed: elapsed.as_secs_f64(),
        cpu: cpu.as_secs_f64(),
        server_cpu: server_cpu(&server_after) - server_cpu(&server_before),
        rss_before,
        rss_held,
        still_held,
    })
}

/// Run [`measure_renewal`] in a fresh `locks-bench` process on the `flavor` runtime.
async fn renewal_in_child(url: &str, flavor: Flavor, cfg: &Config) -> Result<RenewalFigures> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--renewal-child")
        .arg(match flavor {
            Flavor::MultiThread => "multi-thread",
            Flavor::CurrentThread => "current-thread",
        })
        .arg("--redis")
        .arg(url)
        .arg("--renew-leases")
        .arg(cfg.renew_leases.to_string())
        .arg("--renew-ttl")
        .arg(format!("{}ms", cfg.renew_ttl.as_millis()))
        .arg("--renew-duration")
        .arg(format!("{}ms", cfg.renew_duration.as_millis()));
    let output = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "renewal child failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    RenewalFigures::from_output(&stdout)
        .ok_or_else(|| format!("renewal child printed no figures: {stdout}").into())
}

/// The renewal rows, measured in a child process.
async fn renewal(url: &str, flavor: Flavor, cfg: &Config, table: &mut Table) -> Result<()> {
    let rt = flavor.label();
    let f = renewal_in_child(url, flavor, cfg).await?;
    let n = f.leases;
    let scripts = f.scripts;
    let elapsed = Duration::from_secs_f64(f.elapsed);
    let period = cfg.renew_ttl / 2;
    let periods = elapsed.as_secs_f64() / period.as_secs_f64();
    let per_period = scripts as f64 / periods;
    table.push(Row {
        figure: format!(
            "renewal: round trips per renewal period, {} leases",
            grouped(n as f64)
        ),
        runtime: rt,
        locks: format!(
            "{} ({} in {:.1} periods of {:?})",
            grouped(per_period),
            grouped(scripts as f64),
            periods,
            period
        ),
        reference: format!("one per lease: {}", grouped(n as f64)),
        ratio: format!("{:.2} per lease", per_period / n as f64),
        target: String::new(),
        verdict: Verdict::Info,
    });
    table.push(Row {
        figure: format!("renewal: leases still held after {:?}", cfg.renew_duration),
        runtime: rt,
        locks: grouped(f.still_held as f64),
        reference: format!("held: {}", grouped(n as f64)),
        ratio: times(f.still_held as f64 / n as f64),
        target: "all".into(),
        verdict: Verdict::of(f.still_held == n),
    });
    let cores = f.cpu / f.elapsed;
    let server_cores = f.server_cpu / f.elapsed;
    let per_renewal = f.cpu / scripts.max(1) as f64;
    table.push(Row {
        figure: format!("renewal: process CPU, {} leases", grouped(n as f64)),
        runtime: rt,
        locks: format!(
            "{:.3} core ({} per renewal; redis-server {:.3} core)",
            cores,
            micros(Duration::from_secs_f64(per_renewal)),
            server_cores
        ),
        reference: "one core".into(),
        ratio: times(cores),
        target: "≤ 0.10× (well under one core)".into(),
        verdict: Verdict::of(cores <= 0.10),
    });
    let per_lease = f.rss_held.saturating_sub(f.rss_before) as f64 / n as f64;
    table.push(Row {
        figure: format!(
            "renewal: resident memory per held lease, {} leases",
            grouped(n as f64)
        ),
        runtime: rt,
        locks: format!("{} B", grouped(per_lease)),
        reference: "2 KiB".into(),
        ratio: times(per_lease / 2048.0),
        target: "< 2 KiB".into(),
        verdict: Verdict::of(per_lease < 2048.0),
    });
    Ok(())
}
