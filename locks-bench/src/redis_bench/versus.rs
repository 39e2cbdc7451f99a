//! Contended, side by side with rslock: `workers` workers loop on ONE key, each with its own
//! connections (its own `RedisBackend` + `LockService`, or its own rslock `LockManager`, plus
//! its own raw connection), default retry settings on both sides. The critical section is
//! `GET counter` then `SET counter n+1` on the worker's raw connection (two round trips), so
//! any overlap of two holders shows as a lost update: at the end the counter must equal the
//! number of critical sections.
//!
//! A third side is the lock service in fair mode (`LockServiceBuilder::fair(true)`: a FIFO queue
//! in the store, the release hands the lease to the head waiter). Rounds rotate the sides (ours,
//! fair, rslock; fair, rslock, ours; ...). A round runs for a fixed time;
//! a worker that wins the lock after it only releases it (no critical section, not counted),
//! but its wait still counts toward the longest wait.

use std::time::{Duration, Instant};

use locks_core::{LockGuard, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::ConnectionManager;
use locks_redis::redis::{self, Client};
use rslock::LockManager;
use tokio::task::JoinSet;

use super::rslock::{manager, rslock_cycle};
use super::{TTL, lib_cycle, raw_conn};
use crate::table::{Row, Table, Verdict, median, micros, rate, times};
use crate::{BoxError, Config, Result};

/// Rounds per side of a contended figure.
const ROUNDS: u32 = 3;

/// One worker's lock client.
#[derive(Clone)]
enum Locker {
    Ours(LockService),
    Rslock(LockManager),
}

/// A lock one worker holds.
enum Held {
    Ours(LockGuard),
    Rslock(rslock::LockGuard),
}

impl Locker {
    /// Wait for `key` with the library's default retry settings.
    async fn acquire(&self, key: &str) -> Result<Held> {
        Ok(match self {
            Locker::Ours(svc) => Held::Ours(svc.acquire(key).await?),
            Locker::Rslock(mgr) => Held::Rslock(mgr.acquire(key, TTL).await?),
        })
    }
}

impl Held {
    async fn release(self) -> Result<()> {
        match self {
            Held::Ours(guard) => guard.release().await?,
            Held::Rslock(guard) => guard.release().await,
        }
        Ok(())
    }
}

/// The sides of a contended figure, in the order of [`Contended`]'s rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The lock service, default settings.
    Ours = 0,
    /// The lock service in fair mode.
    Fair = 1,
    /// rslock.
    Rslock = 2,
}

/// The order of the sides in round `round` (rotating, so no side always goes first).
fn rotation(round: usize) -> [Side; 3] {
    let sides = [Side::Ours, Side::Fair, Side::Rslock];
    [0, 1, 2].map(|i| sides[(i + round) % 3])
}

/// What one round of one side measured.
#[derive(Debug, Clone)]
struct Round {
    /// Critical sections per worker.
    counts: Vec<u64>,
    /// Measuring time (the fixed round time).
    elapsed: Duration,
    /// The longest single wait (call → lock held) of any worker.
    longest: Duration,
    /// Critical sections minus the counter's final value.
    lost: u64,
}

impl Round {
    fn sections(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn rate(&self) -> f64 {
        self.sections() as f64 / self.elapsed.as_secs_f64()
    }

    /// The smallest worker's count over its fair share.
    fn min_share(&self) -> f64 {
        let fair = self.sections() as f64 / self.counts.len().max(1) as f64;
        let min = self.counts.iter().copied().min().unwrap_or(0) as f64;
        if fair > 0.0 { min / fair } else { 0.0 }
    }
}

/// Both sides of a contended figure, every round.
pub(super) struct Contended {
    workers: usize,
    ours: Vec<Round>,
    fair: Vec<Round>,
    theirs: Vec<Round>,
}

/// Run the contended figure with `workers` workers per side.
pub(super) async fn contended(url: &str, workers: usize, cfg: &Config) -> Result<Contended> {
    let client = Client::open(url)?;
    let keys = [
        format!("{}:vs-rslock-{workers}", cfg.run_id),
        format!("{}:vs-rslock-fair-{workers}", cfg.run_id),
        format!("{}:rslock-{workers}", cfg.run_id),
    ];
    let mut sides: [Vec<(Locker, ConnectionManager)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..workers {
        // Own backend (command + pub/sub connections) and service per worker, as separate
        // processes would have; warmed up (connections, script cache).
        let svc = LockService::new(RedisBackend::connect(url).await?)?;
        lib_cycle(&svc, &keys[0]).await?;
        sides[0].push((Locker::Ours(svc), raw_conn(&client).await?));
        let fair = LockService::builder(RedisBackend::connect(url).await?)
            .fair(true)
            .build()?;
        lib_cycle(&fair, &keys[1]).await?;
        sides[1].push((Locker::Ours(fair), raw_conn(&client).await?));
        let mgr = manager(url)?;
        rslock_cycle(&mgr, &keys[2]).await?;
        sides[2].push((Locker::Rslock(mgr), raw_conn(&client).await?));
    }
    let dur = cfg.handoff / ROUNDS;
    let mut measured: [Vec<Round>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS as usize {
        for side in rotation(round) {
            let i = side as usize;
            let counter = format!("{}:counter:{side:?}:{workers}:{round}", keys[i]);
            measured[i].push(run_round(&sides[i], &keys[i], &counter, dur).await?);
        }
    }
    for (locker, _) in sides[0].iter().chain(&sides[1]) {
        if let Locker::Ours(svc) = locker {
            svc.shutdown().await;
        }
    }
    let [ours, fair, theirs] = measured;
    Ok(Contended {
        workers,
        ours,
        fair,
        theirs,
    })
}

/// One round of one side: every worker loops until `dur` has passed.
async fn run_round(
    workers: &[(Locker, ConnectionManager)],
    key: &str,
    counter: &str,
    dur: Duration,
) -> Result<Round> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = JoinSet::new();
    for (i, (locker, conn)) in workers.iter().enumerate() {
        let (locker, mut conn) = (locker.clone(), conn.clone());
        let (key, counter) = (key.to_owned(), counter.to_owned());
        tasks.spawn(async move {
            let mut longest = Duration::ZERO;
            let mut count = 0u64;
            while Instant::now() < deadline {
                let asked = Instant::now();
                let held = locker.acquire(&key).await?;
                longest = longest.max(asked.elapsed());
                if Instant::now() < deadline {
                    let n: Option<u64> = redis::cmd("GET")
                        .arg(&counter)
                        .query_async(&mut conn)
                        .await?;
                    let () = redis::cmd("SET")
                        .arg(&counter)
                        .arg(n.unwrap_or(0) + 1)
                        .query_async(&mut conn)
                        .await?;
                    count += 1;
                }
                held.release().await?;
            }
            Ok::<_, BoxError>((i, count, longest))
        });
    }
    let mut counts = vec![0; workers.len()];
    let mut longest = Duration::ZERO;
    while let Some(joined) = tasks.join_next().await {
        let (i, count, wait) = joined??;
        counts[i] = count;
        longest = longest.max(wait);
    }
    let mut conn = workers
        .first()
        .map(|(_, c)| c.clone())
        .ok_or("no workers")?;
    let value: Option<u64> = redis::cmd("GET")
        .arg(counter)
        .query_async(&mut conn)
        .await?;
    let sections: u64 = counts.iter().sum();
    Ok(Round {
        counts,
        elapsed: dur,
        longest,
        lost: sections.saturating_sub(value.unwrap_or(0)),
    })
}

/// Per-worker shares over all rounds, in %.
fn shares(rounds: &[Round]) -> String {
    let workers = rounds.first().map_or(0, |r| r.counts.len());
    let totals: Vec<u64> = (0..workers)
        .map(|i| rounds.iter().map(|r| r.counts[i]).sum())
        .collect();
    let all: u64 = totals.iter().sum::<u64>().max(1);
    totals
        .iter()
        .map(|c| format!("{:.0}", 100.0 * *c as f64 / all as f64))
        .collect::<Vec<_>>()
        .join("/")
}

impl Contended {
    /// Push the rows of the default side (targets on 4 workers only) and of the fair side
    /// (information). A lost update on our sides is an error (exit code 2); on rslock's side
    /// it is reported.
    pub(super) fn rows(&self, rt: &'static str, table: &mut Table) -> Result<()> {
        self.side_rows("vs rslock", &self.ours, self.workers == 4, rt, table)?;
        self.side_rows("fair mode vs rslock", &self.fair, false, rt, table)
    }

    fn side_rows(
        &self,
        what: &str,
        ours: &[Round],
        gated: bool,
        rt: &'static str,
        table: &mut Table,
    ) -> Result<()> {
        let w = self.workers;
        let verdict = |ok: bool| {
            if gated {
                Verdict::of(ok)
            } else {
                Verdict::Info
            }
        };
        let target = |t: &str| if gated { t.to_owned() } else { String::new() };
        let lost = |rounds: &[Round]| rounds.iter().map(|r| r.lost).sum::<u64>();
        let (ours_lost, theirs_lost) = (lost(ours), lost(&self.theirs));
        let lost_note = |n: u64| {
            if n == 0 {
                String::new()
            } else {
                format!(" — {n} lost updates!")
            }
        };
        let rate_of = |rounds: &[Round]| median(rounds.iter().map(Round::rate).collect());
        let ratio = median(
            ours.iter()
                .zip(&self.theirs)
                .map(|(o, t)| o.rate() / t.rate().max(1e-9))
                .collect(),
        );
        table.push(Row {
            figure: format!("{what}: critical sections/s, {w} workers"),
            runtime: rt,
            locks: format!("{}{}", rate(rate_of(ours)), lost_note(ours_lost)),
            reference: format!(
                "rslock: {}{}",
                rate(rate_of(&self.theirs)),
                lost_note(theirs_lost)
            ),
            ratio: times(ratio),
            target: target("≥ 1.00×"),
            verdict: if ours_lost > 0 {
                Verdict::Fail
            } else {
                verdict(ratio >= 1.0)
            },
        });
        // The longest wait of the whole measurement (every round), not a median.
        let longest = |rounds: &[Round]| {
            rounds
                .iter()
                .map(|r| r.longest)
                .max()
                .unwrap_or(Duration::ZERO)
        };
        let (ours_wait, theirs_wait) = (longest(ours), longest(&self.theirs));
        table.push(Row {
            figure: format!("{what}: longest wait, {w} workers"),
            runtime: rt,
            locks: micros(ours_wait),
            reference: format!("rslock: {}", micros(theirs_wait)),
            ratio: times(ours_wait.as_secs_f64() / theirs_wait.as_secs_f64().max(1e-9)),
            target: target("≤ 50 ms"),
            verdict: verdict(ours_wait <= Duration::from_millis(50)),
        });
        let min_share = |rounds: &[Round]| median(rounds.iter().map(Round::min_share).collect());
        let (ours_min, theirs_min) = (min_share(ours), min_share(&self.theirs));
        table.push(Row {
            figure: format!("{what}: smallest worker share, {w} workers"),
            runtime: rt,
            locks: format!("{} of fair (shares {} %)", times(ours_min), shares(ours)),
            reference: format!(
                "rslock: {} of fair (shares {} %)",
                times(theirs_min),
                shares(&self.theirs)
            ),
            ratio: format!("min {}", times(ours_min)),
            target: target("≥ 0.50×"),
            verdict: verdict(ours_min >= 0.5),
        });
        if ours_lost > 0 {
            return Err(format!(
                "mutual exclusion broken: {ours_lost} lost updates with {w} workers ({what})"
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(counts: &[u64]) -> Round {
        Round {
            counts: counts.to_vec(),
            elapsed: Duration::from_secs(2),
            longest: Duration::ZERO,
            lost: 0,
        }
    }

    #[test]
    fn every_side_goes_first_once_in_three_rounds() {
        let firsts: Vec<Side> = (0..3).map(|r| rotation(r)[0]).collect();
        assert_eq!(firsts, [Side::Ours, Side::Fair, Side::Rslock]);
        assert!((0..3).all(|r| {
            let mut sides = rotation(r).map(|s| s as usize);
            sides.sort_unstable();
            sides == [0, 1, 2]
        }));
    }

    #[test]
    fn rates_and_shares() {
        let even = round(&[25, 25, 25, 25]);
        assert_eq!(even.rate(), 50.0);
        assert_eq!(even.min_share(), 1.0);
        let skewed = round(&[70, 10, 10, 10]);
        assert!((skewed.min_share() - 0.4).abs() < 1e-9);
        assert_eq!(round(&[0, 0]).min_share(), 0.0);
        assert_eq!(shares(&[even, skewed]), "48/18/18/18");
    }
}
