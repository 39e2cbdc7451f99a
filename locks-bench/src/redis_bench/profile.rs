//! Where the client's time goes in one uncontended cycle: process CPU per cycle (every thread
//! of the process, from `/proc/self/task/*/schedstat`) and allocation calls per cycle (the
//! counting global allocator), for the service, its backend scripts alone, rslock and plain
//! `SET NX PX` + `DEL`, in interleaved rounds, medians.

use std::time::{Duration, Instant};

use locks_core::{LockKey, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::Client;
use locks_redis::redis::aio::ConnectionManager;
use rslock::LockManager;

use super::rslock::{manager, rslock_cycle};
use super::{backend_cycle, lib_cycle, raw_conn, raw_cycle};
use crate::alloc_count::{Counting, allocations};
use crate::sys::ThreadCpu;
use crate::table::{Row, Table, Verdict, median, micros, times};
use crate::{Config, Result};

/// One side of the profile, on its own key and connection.
enum Cycler {
    Service(LockService, String),
    Scripts(RedisBackend, LockKey),
    Rslock(LockManager, String),
    Raw(ConnectionManager, String),
}

impl Cycler {
    async fn cycle(&mut self) -> Result<()> {
        match self {
            Cycler::Service(svc, key) => lib_cycle(svc, key).await,
            Cycler::Scripts(backend, key) => backend_cycle(backend, key).await,
            Cycler::Rslock(mgr, key) => rslock_cycle(mgr, key).await,
            Cycler::Raw(conn, key) => raw_cycle(conn, key).await,
        }
    }
}

/// Per side: (client CPU per cycle, allocation calls per cycle).
type Figures = (Duration, f64);

/// The two profile rows on the current runtime.
pub(super) async fn run(
    url: &str,
    rt: &'static str,
    cfg: &Config,
    table: &mut Table,
) -> Result<()> {
    let svc = LockService::new(RedisBackend::connect(url).await?)?;
    let backend = RedisBackend::connect(url).await?;
    let key = |side: &str| format!("{}:profile-{side}", cfg.run_id);
    // Indexed like the columns below: service, scripts, rslock, raw.
    let mut cyclers = [
        Cycler::Service(svc.clone(), key("service")),
        Cycler::Scripts(backend, LockKey::new("_lock:", &key("scripts"))?),
        Cycler::Rslock(manager(url)?, key("rslock")),
        Cycler::Raw(raw_conn(&Client::open(url)?).await?, key("raw")),
    ];
    for _ in 0..200 {
        for cycler in &mut cyclers {
            cycler.cycle().await?;
        }
    }
    let slice = cfg.measure / cfg.rounds;
    let counting = Counting::enable();
    let mut rounds: Vec<[Figures; 4]> = Vec::new();
    for round in 0..cfg.rounds as usize {
        let mut figures = [(Duration::ZERO, 0.0); 4];
        for i in (0..4).map(|i| (i + round) % 4) {
            let cycler = &mut cyclers[i];
            let (cpu0, allocs0, start) = (ThreadCpu::now(), allocations(), Instant::now());
            let mut n = 0u64;
            while start.elapsed() < slice {
                cycler.cycle().await?;
                n += 1;
            }
            let allocs = allocations() - allocs0;
            let cpu = match (ThreadCpu::now(), cpu0) {
                (Some(after), Some(before)) => after.since(&before),
                _ => return Err("cannot read /proc/self/task/*/schedstat".into()),
            };
            let n = n.max(1);
            figures[i] = (cpu / u32::try_from(n)?, allocs as f64 / n as f64);
        }
        rounds.push(figures);
    }
    drop(counting);
    svc.shutdown().await;
    let cpu: Vec<Duration> = (0..4)
        .map(|i| {
            Duration::from_secs_f64(median(
                rounds.iter().map(|r| r[i].0.as_secs_f64()).collect(),
            ))
        })
        .collect();
    let allocs: Vec<f64> = (0..4)
        .map(|i| median(rounds.iter().map(|r| r[i].1).collect()))
        .collect();
    table.push(Row {
        figure: "profile: client CPU per uncontended cycle".into(),
        runtime: rt,
        locks: format!("{} (service)", micros(cpu[0])),
        reference: format!(
            "rslock: {}, scripts alone: {}, SET NX PX + DEL: {}",
            micros(cpu[2]),
            micros(cpu[1]),
            micros(cpu[3])
        ),
        ratio: times(cpu[0].as_secs_f64() / cpu[2].as_secs_f64().max(1e-12)),
        target: String::new(),
        verdict: Verdict::Info,
    });
    table.push(Row {
        figure: "profile: allocations per uncontended cycle".into(),
        runtime: rt,
        locks: format!("{:.1} (service)", allocs[0]),
        reference: format!(
            "rslock: {:.1}, scripts alone: {:.1}, SET NX PX + DEL: {:.1}",
            allocs[2], allocs[1], allocs[3]
        ),
        ratio: times(allocs[0] / allocs[2].max(1e-9)),
        target: String::new(),
        verdict: Verdict::Info,
    });
    Ok(())
}
