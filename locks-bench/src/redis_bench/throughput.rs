//! Uncontended and concurrent cycles: the lock service next to raw commands.

use std::time::{Duration, Instant};

use locks_core::{LockKey, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::ConnectionManager;
use tokio::task::JoinSet;

use super::floor::Floor;
use super::{TASKS, backend_cycle, lib_cycle, raw_cycle};
use crate::table::median;
use crate::{Config, Result};

/// Per-round rates of the four sides of a throughput figure. Rounds interleave the sides (in
/// a rotating order), so load from outside the benchmark hits every side alike; medians keep
/// a burst of it from deciding the result.
#[derive(Debug, Default)]
pub struct Tally {
    rounds: Vec<[f64; SIDES]>,
}

impl Tally {
    fn push(&mut self, side: Side, rate: f64, round: usize) {
        if self.rounds.len() <= round {
            self.rounds.resize(round + 1, [0.0; SIDES]);
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
fn order(round: usize) -> [Side; SIDES] {
    let sides = [Side::Raw, Side::Floor, Side::Scripts, Side::Service];
    [0, 1, 2, 3].map(|i| sides[(i + round) % SIDES])
}

/// Cycles per second on one connection, one at a time, for each side.
pub(super) async fn sequential(sides: &Sides<'_>, cfg: &Config) -> Result<Tally> {
    // Indexed by `Side`.
    let mut cyclers = [
        sides.cycler(Side::Service, format!("{}:seq", cfg.run_id))?,
        sides.cycler(Side::Scripts, format!("{}:scripts-seq", cfg.run_id))?,
        sides.cycler(Side::Raw, format!("{}:raw-seq", cfg.run_id))?,
        sides.cycler(Side::Floor, format!("{}:floor-seq", cfg.run_id))?,
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
    /// The minimal fenced lock ([`Floor`]).
    Floor = 3,
}

/// How many sides a throughput figure has.
const SIDES: usize = 4;

/// Total cycles per second of [`TASKS`] tasks on one connection, each on its own key, for
/// each side.
pub(super) async fn concurrent(sides: &Sides<'_>, cfg: &Config) -> Result<Tally> {
    // Warm-up, then interleaved rounds.
    for side in [Side::Service, Side::Scripts, Side::Raw, Side::Floor] {
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
pub(super) struct Sides<'a> {
    pub(super) svc: &'a LockService,
    pub(super) backend: &'a RedisBackend,
    pub(super) raw: &'a ConnectionManager,
    pub(super) floor: &'a Floor,
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
            Side::Floor => Cycler::Floor {
                conn: self.raw.clone(),
                floor: self.floor.clone(),
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
    Floor {
        conn: ConnectionManager,
        floor: Floor,
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
            Cycler::Floor { conn, floor, key } => floor.cycle(conn, key).await,
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
