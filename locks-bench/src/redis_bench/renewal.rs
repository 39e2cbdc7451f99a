//! The cost of renewing many held leases.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use locks_core::{LeaseState, LockGuard, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::Client;

use super::{TASKS, calls, info, lib_cycle, raw_conn, server_cpu};
use crate::sys::{cpu_time, rss_bytes};
use crate::table::{Row, Table, Verdict, grouped, micros, times};
use crate::{Config, Flavor, Result};

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
pub(super) async fn renewal(
    url: &str,
    flavor: Flavor,
    cfg: &Config,
    table: &mut Table,
) -> Result<()> {
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
        target: "< 0.05 core".into(),
        verdict: Verdict::of(cores < 0.05),
    });
    let per_lease = f.rss_held.saturating_sub(f.rss_before) as f64 / n as f64;
    table.push(Row {
        figure: format!(
            "renewal: resident memory per held lease, {} leases",
            grouped(n as f64)
        ),
        runtime: rt,
        locks: format!("{} B", grouped(per_lease)),
        reference: "1 KiB".into(),
        ratio: times(per_lease / 1024.0),
        target: "< 1 KiB".into(),
        verdict: Verdict::of(per_lease < 1024.0),
    });
    Ok(())
}
