//! Server cost under a saturating load: 50 connections, each looping acquire+release on its own
//! key, (a) through the backend's own scripts (50 separate `RedisBackend`s, one command
//! connection each), against (b) the cheapest safe pair of plain commands, `SET key tok NX PX`
//! and a compare-and-delete script, on 50 raw connections, and (c) the
//! [floor](super::floor) of any fenced lock on the same raw connections. With the server
//! saturated, the ratio of the rates is the ratio of the server's cost per cycle; `INFO cpu`
//! gives the server CPU per cycle beside it.
//!
//! Then a profile row: the server's µs per call of each script and command, from
//! `CONFIG RESETSTAT` + `INFO commandstats` around a phase of only acquires, then only
//! releases, then only `SET NX PX`, then only compare-and-deletes (private server only).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use locks_core::{AcquireResult, LeaseKind, LockBackend, LockKey, OwnerToken};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::ConnectionManager;
use locks_redis::redis::{self, Client, Script};
use tokio::task::JoinSet;

use super::floor::{CAD, Floor};
use super::{RAW_TOKEN, TTL, backend_cycle, info, raw_conn, raw_set, server_cpu};
use crate::table::{Row, Table, Verdict, median, micros, rate, times};
use crate::{BoxError, Config, Result};

/// Connections (and looping tasks) per side.
const CONNECTIONS: usize = 50;

/// Which side a round loads the server with.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// The backend's acquire and release scripts.
    Scripts = 0,
    /// `SET NX PX` + compare-and-delete.
    Raw = 1,
    /// The minimal fenced lock ([`Floor`]).
    Floor = 2,
}

/// The order of the sides in round `round` (rotating).
fn order(round: usize) -> [Load; 3] {
    let loads = [Load::Scripts, Load::Raw, Load::Floor];
    [0, 1, 2].map(|i| loads[(i + round) % 3])
}

/// One round: per side (indexed by [`Load`]), cycles/s and server CPU µs per cycle.
type Pair = [(f64, f64); 3];

/// What the two sides run on: one connection per task.
struct Sides {
    backends: Vec<RedisBackend>,
    conns: Vec<ConnectionManager>,
    cad: Script,
    floor: Floor,
}

/// The server-cost rows (multi-thread runtime).
pub(super) async fn run(url: &str, cfg: &Config, table: &mut Table) -> Result<()> {
    let rt = "multi-thread";
    let client = Client::open(url)?;
    let mut sides = Sides {
        backends: Vec::with_capacity(CONNECTIONS),
        conns: Vec::with_capacity(CONNECTIONS),
        cad: Script::new(CAD),
        floor: Floor::new(),
    };
    for _ in 0..CONNECTIONS {
        sides.backends.push(RedisBackend::connect(url).await?);
        sides.conns.push(raw_conn(&client).await?);
    }
    let mut admin = raw_conn(&client).await?;
    let prefix = format!("{}:cost", cfg.run_id);
    // Warm-up (script caches, connections), then interleaved rounds.
    for who in [Load::Scripts, Load::Raw, Load::Floor] {
        saturate(&sides, who, &prefix, Duration::from_millis(50)).await?;
    }
    let slice = cfg.measure / cfg.rounds;
    let mut rounds: Vec<Pair> = Vec::new();
    for round in 0..cfg.rounds as usize {
        let mut pair = [(0.0, 0.0); 3];
        for who in order(round) {
            let cpu_before = server_cpu(&info(&mut admin, "cpu").await?);
            let (n, t) = saturate(&sides, who, &prefix, slice).await?;
            let cpu = server_cpu(&info(&mut admin, "cpu").await?) - cpu_before;
            // (cycles/s, server CPU µs per cycle)
            pair[who as usize] = (n as f64 / t.as_secs_f64(), cpu * 1e6 / n.max(1) as f64);
        }
        rounds.push(pair);
    }
    let med = |f: fn(&Pair) -> f64| median(rounds.iter().map(f).collect());
    let (ours, raw) = (med(|r| r[0].0), med(|r| r[1].0));
    let (ours_cpu, raw_cpu) = (med(|r| r[0].1), med(|r| r[1].1));
    let ratio = med(|r| r[1].0 / r[0].0.max(1e-9));
    table.push(Row {
        figure: format!(
            "server cost: acquire+release scripts vs SET NX PX + compare-and-delete \
             ({CONNECTIONS} connections)"
        ),
        runtime: rt,
        locks: format!("{} (server CPU {ours_cpu:.1} µs/cycle)", rate(ours)),
        reference: format!(
            "SET NX PX + CAD: {} (server CPU {raw_cpu:.1} µs/cycle)",
            rate(raw)
        ),
        ratio: times(ratio),
        target: "≤ 1.30×".into(),
        verdict: Verdict::of(ratio <= 1.30),
    });
    let floor_cpu = med(|r| r[2].1);
    table.push(Row {
        figure: format!(
            "server cost floor: a minimal fenced lock (SET NX PX + INCR script, CAD) vs SET NX \
             PX + CAD ({CONNECTIONS} connections)"
        ),
        runtime: rt,
        locks: format!(
            "{} (server CPU {floor_cpu:.1} µs/cycle)",
            rate(med(|r| r[2].0))
        ),
        reference: format!("SET NX PX + CAD: {}", rate(raw)),
        ratio: times(med(|r| r[1].0 / r[2].0.max(1e-9))),
        target: String::new(),
        verdict: Verdict::Info,
    });
    super::floor::clean(&mut admin, &prefix).await?;
    let figure = "server cost: µs per call (INFO commandstats)".to_owned();
    if !cfg.private_server {
        table.push(Row {
            figure,
            runtime: rt,
            locks: "skipped: --redis (no CONFIG RESETSTAT on a server others use)".into(),
            reference: "-".into(),
            ratio: "-".into(),
            target: String::new(),
            verdict: Verdict::Info,
        });
        return Ok(());
    }
    let calls = (cfg.rounds as usize * 200).max(400);
    let per_call = per_call(&sides, &mut admin, &prefix, calls).await?;
    let fmt = |us: f64| micros(Duration::from_secs_f64(us / 1e6));
    table.push(Row {
        figure,
        runtime: rt,
        locks: format!("acquire {}, release {}", fmt(per_call[0]), fmt(per_call[1])),
        reference: format!(
            "SET NX PX {}, CAD {} ({calls} calls each)",
            fmt(per_call[2]),
            fmt(per_call[3])
        ),
        ratio: times((per_call[0] + per_call[1]) / (per_call[2] + per_call[3]).max(1e-9)),
        target: String::new(),
        verdict: Verdict::Info,
    });
    Ok(())
}

/// [`CONNECTIONS`] tasks of one side loop on their own keys for `dur`.
async fn saturate(
    sides: &Sides,
    who: Load,
    prefix: &str,
    dur: Duration,
) -> Result<(u64, Duration)> {
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = JoinSet::new();
    for i in 0..CONNECTIONS {
        match who {
            Load::Scripts => {
                let backend = sides.backends[i].clone();
                let key = LockKey::new("_lock:", &format!("{prefix}:ours:{i}"))?;
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        backend_cycle(&backend, &key).await?;
                        n += 1;
                    }
                    Ok::<_, BoxError>(n)
                });
            }
            Load::Floor => {
                let (mut conn, floor) = (sides.conns[i].clone(), sides.floor.clone());
                let key = format!("{prefix}:floor:{i}");
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        floor.cycle(&mut conn, &key).await?;
                        n += 1;
                    }
                    Ok::<_, BoxError>(n)
                });
            }
            Load::Raw => {
                let (mut conn, cad) = (sides.conns[i].clone(), sides.cad.clone());
                let key = format!("{prefix}:raw:{i}");
                tasks.spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        raw_set(&mut conn, &key).await?;
                        raw_cad(&mut conn, &cad, &key).await?;
                        n += 1;
                    }
                    Ok::<_, BoxError>(n)
                });
            }
        }
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined??;
    }
    Ok((total, start.elapsed()))
}

/// The compare-and-delete script (`EVALSHA`), which must delete.
async fn raw_cad(conn: &mut ConnectionManager, cad: &Script, key: &str) -> Result<()> {
    let deleted: i64 = cad.key(key).arg(RAW_TOKEN).invoke_async(conn).await?;
    if deleted == 1 {
        Ok(())
    } else {
        Err(format!("compare-and-delete of {key}: not owner").into())
    }
}

/// `usec_per_call` of `cmdstat_<command>` in `INFO commandstats`.
fn usec_per_call(stats: &HashMap<String, String>, command: &str) -> Option<f64> {
    stats.get(&format!("cmdstat_{command}")).and_then(|v| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix("usec_per_call="))
            .and_then(|n| n.parse().ok())
    })
}

/// Server µs per call: `[acquire script, release script, SET NX PX, CAD]`, each over `calls`
/// calls in a phase of its own after `CONFIG RESETSTAT`.
async fn per_call(
    sides: &Sides,
    admin: &mut ConnectionManager,
    prefix: &str,
    calls: usize,
) -> Result<[f64; 4]> {
    let backend = sides.backends.first().ok_or("no backend")?;
    let mut conn = sides.conns.first().ok_or("no connection")?.clone();
    let mut leases = Vec::with_capacity(calls);
    for i in 0..calls {
        leases.push((
            LockKey::new("_lock:", &format!("{prefix}:stat-ours:{i}"))?,
            OwnerToken::new(),
        ));
    }
    let raw_keys: Vec<String> = (0..calls)
        .map(|i| format!("{prefix}:stat-raw:{i}"))
        .collect();
    let mut out = [0.0; 4];
    for (phase, slot) in out.iter_mut().enumerate() {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(admin)
            .await?;
        match phase {
            0 => {
                for (key, token) in &leases {
                    let got = backend
                        .try_acquire(key, LeaseKind::Mutex, *token, TTL)
                        .await?;
                    if !matches!(got, AcquireResult::Acquired(_)) {
                        return Err(format!("backend acquire found {key:?} held").into());
                    }
                }
            }
            1 => {
                for (key, token) in &leases {
                    if !backend.release(key, LeaseKind::Mutex, *token).await? {
                        return Err(format!("backend release of {key:?}: not owner").into());
                    }
                }
            }
            2 => {
                for key in &raw_keys {
                    raw_set(&mut conn, key).await?;
                }
            }
            _ => {
                for key in &raw_keys {
                    raw_cad(&mut conn, &sides.cad, key).await?;
                }
            }
        }
        let stats = info(admin, "commandstats").await?;
        // The backend calls its scripts with EVALSHA, or FCALL with the function library.
        let command = match phase {
            2 => "set",
            _ => ["evalsha", "fcall"]
                .into_iter()
                .find(|c| usec_per_call(&stats, c).is_some())
                .unwrap_or("evalsha"),
        };
        *slot = usec_per_call(&stats, command).ok_or_else(|| {
            format!("INFO commandstats has no cmdstat_{command} after phase {phase}")
        })?;
    }
    Ok(out)
}
