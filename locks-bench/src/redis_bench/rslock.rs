//! rslock side by side: the lock service and [rslock](https://crates.io/crates/rslock) 0.10 on
//! the same Redis, in the same process, in interleaved rounds.
//!
//! - uncontended, one at a time: `LockService::acquire` + `LockGuard::release` against
//!   rslock's `LockManager::lock` + `LockManager::unlock` (30 s ttl both);
//! - contended (see [`versus`](super::versus)): 4 and 8 workers on one key, each with its own
//!   connections, default retry settings on both sides.
//!
//! rslock's defaults, for reading the figures: `lock` makes up to 3 attempts (`SET NX PX`),
//! runs its unlock script after *every* failed attempt (one more round trip, even though the
//! key is someone else's), and sleeps a random 0–200 ms between attempts; `acquire` loops on
//! `lock` until it wins. Nothing is queued and nobody is woken by a release.

use std::time::{Duration, Instant};

use locks_core::LockService;
use locks_redis::RedisBackend;
use locks_redis::redis::Client;
use rslock::LockManager;

use super::versus::contended;
use super::{TTL, lib_cycle};
use crate::table::{Row, Table, Verdict, median, micros, rate, times};
use crate::{Config, Result};

/// Which library a round measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    /// The lock service.
    Ours = 0,
    /// rslock.
    Rslock = 1,
}

/// The order of the two sides in round `round` (alternating, so neither always goes first).
pub(super) fn order(round: usize) -> [Who; 2] {
    if round.is_multiple_of(2) {
        [Who::Ours, Who::Rslock]
    } else {
        [Who::Rslock, Who::Ours]
    }
}

/// An rslock manager on the single server at `url` (its connection opens on first use).
pub(super) fn manager(url: &str) -> Result<LockManager> {
    Ok(LockManager::from_clients(vec![Client::open(url)?]))
}

/// One uncontended rslock cycle: `lock` (a `SET NX PX` with a fresh 20-byte value) and
/// `unlock` (its compare-and-delete script).
pub(super) async fn rslock_cycle(mgr: &LockManager, key: &str) -> Result<()> {
    let lock = mgr.lock(key, TTL).await?;
    mgr.unlock(&lock).await;
    Ok(())
}

/// The rslock rows on the current runtime: uncontended, then 4 and 8 workers on one key.
pub(super) async fn run(
    url: &str,
    rt: &'static str,
    cfg: &Config,
    table: &mut Table,
) -> Result<()> {
    uncontended(url, rt, cfg, table).await?;
    for workers in [4, 8] {
        contended(url, workers, cfg).await?.rows(rt, table)?;
    }
    Ok(())
}

/// Sequential cycles per second of each side, interleaved rounds, medians.
async fn uncontended(url: &str, rt: &'static str, cfg: &Config, table: &mut Table) -> Result<()> {
    let svc = LockService::new(RedisBackend::connect(url).await?)?;
    let mgr = manager(url)?;
    let ours_key = format!("{}:vs-rslock-seq", cfg.run_id);
    let theirs_key = format!("{}:rslock-seq", cfg.run_id);
    // Warm-up: connections, script caches.
    for _ in 0..200 {
        lib_cycle(&svc, &ours_key).await?;
        rslock_cycle(&mgr, &theirs_key).await?;
    }
    let slice = cfg.measure / cfg.rounds;
    let mut rounds = Vec::new();
    for round in 0..cfg.rounds as usize {
        let mut rates = [0.0; 2];
        for who in order(round) {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < slice {
                match who {
                    Who::Ours => lib_cycle(&svc, &ours_key).await?,
                    Who::Rslock => rslock_cycle(&mgr, &theirs_key).await?,
                }
                n += 1;
            }
            rates[who as usize] = n as f64 / start.elapsed().as_secs_f64();
        }
        rounds.push(rates);
    }
    svc.shutdown().await;
    let ours = median(rounds.iter().map(|r| r[0]).collect());
    let theirs = median(rounds.iter().map(|r| r[1]).collect());
    let ratio = median(rounds.iter().map(|r| r[0] / r[1].max(1e-9)).collect());
    let per_cycle = |r: f64| micros(Duration::from_secs_f64(1.0 / r.max(1e-9)));
    table.push(Row {
        figure: "vs rslock: uncontended acquire+release".into(),
        runtime: rt,
        locks: format!("{} ({} per cycle)", rate(ours), per_cycle(ours)),
        reference: format!(
            "rslock lock+unlock: {} ({} per cycle)",
            rate(theirs),
            per_cycle(theirs)
        ),
        ratio: times(ratio),
        target: "≥ 1.00×".into(),
        verdict: Verdict::of(ratio >= 1.0),
    });
    Ok(())
}
