//! Measures how the release subscription recovers from a lost connection, on a private
//! `redis-server`, through the public API only:
//!
//! - `kill`: `CLIENT KILL TYPE pubsub` under `LISTENERS` listeners (one per key);
//! - `restart`: the server is killed (SIGKILL) and started again, empty, on the same port;
//! - `partition` (only with `--partition`, about 20 s a run): the backend talks to the server
//!   through the testkit's fault proxy, which blackholes both directions for 18 s (longer than
//!   the subscription's 15 s health check plus the 2 s response timeout) and then heals; the
//!   connections stay open, like a half-open TCP connection behind a NAT.
//!
//! For each run it reports, in ms from the disruption (for `restart`: from the moment the new
//! server answers `PING`, for `partition`: from the heal, except the first wake-up, always
//! counted from the start of the disruption):
//! `woken` — every listener woken by the disconnection itself; `resubscribed` — every channel
//! has a subscriber again (`PUBSUB NUMSUB`, polled back to back); `rewoken` — every listener
//! woken again after its channel was resubscribed (so a release published while the
//! subscription was down is re-checked, not missed until the next poll).
//! After each run a `PUBLISH` on every channel must reach exactly one subscriber.
//!
//! ```sh
//! cargo run --release -p locks-redis --example pubsub_reconnect -- 20 16
//! cargo run --release -p locks-redis --example pubsub_reconnect -- 3 16 --partition
//! ```

use std::error::Error;
use std::time::{Duration, Instant};

use locks_core::{LockBackend, LockKey, OwnerToken, Wake};
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisKeys};
use locks_testkit::proxy::{Direction, FaultProxy};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};
use tokio::sync::watch;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Longest wait for any single event; a run that misses it reports the event as missing.
const LIMIT: Duration = Duration::from_secs(30);
/// How long the `partition` scenario blackholes the connections.
const PARTITION: Duration = Duration::from_secs(18);
/// How long the listeners keep recording after the resubscription was seen.
const GRACE: Duration = Duration::from_millis(200);

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Kill,
    Restart,
    Partition,
}

#[derive(Default)]
struct Run {
    woken: Option<f64>,
    resubscribed: Option<f64>,
    rewoken: Option<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn raw(server: &RedisServer) -> Res<MultiplexedConnection> {
    Ok(redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?)
}

async fn numsub(conn: &mut MultiplexedConnection, channels: &[String]) -> Res<Vec<i64>> {
    let reply: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channels)
        .query_async(conn)
        .await?;
    Ok(reply.into_iter().map(|(_, n)| n).collect())
}

async fn one_run(
    scenario: Scenario,
    server: &mut RedisServer,
    proxy: &FaultProxy,
    backend: &RedisBackend,
    listeners: usize,
) -> Res<Run> {
    let keys: Vec<LockKey> = (0..listeners)
        .map(|i| LockKey::new("_lock:", &format!("bench:{i}:{}", OwnerToken::new())))
        .collect::<Result<_, _>>()?;
    let channels: Vec<String> = keys.iter().map(|k| RedisKeys::new(k).channel).collect();
    // Each listener returns once its SUBSCRIBE is confirmed. Each task records every wake-up
    // until the run is over (the listener lives until then, so its channel stays wanted).
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for key in &keys {
        let mut listener = backend.listen(key).await?;
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let mut at = Vec::new();
            loop {
                tokio::select! {
                    woke = listener.wait_for_release(LIMIT) => match woke {
                        Ok(Wake::Notified) => at.push(Instant::now()),
                        _ => break,
                    },
                    _ = stopped.changed() => break,
                }
            }
            at
        }));
    }
    let mut conn = raw(server).await?;
    let start = Instant::now();
    let ready = match scenario {
        Scenario::Kill => {
            let killed: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut conn)
                .await?;
            if killed < 1 {
                return Err("no pub/sub client was killed".into());
            }
            start
        }
        Scenario::Restart => {
            server.restart().await?;
            conn = raw(server).await?;
            Instant::now()
        }
        Scenario::Partition => {
            proxy.blackhole(Direction::Both, true);
            tokio::time::sleep(PARTITION).await;
            proxy.heal();
            Instant::now()
        }
    };
    let mut run = Run::default();
    // The resubscription completed after `missing_seen`: the send time of the last poll that
    // still found a channel without subscriber.
    let mut missing_seen = ready;
    while ready.elapsed() < LIMIT {
        let sent = Instant::now();
        if numsub(&mut conn, &channels).await?.iter().all(|&n| n >= 1) {
            run.resubscribed = Some(ms(ready.elapsed()));
            break;
        }
        missing_seen = sent;
    }
    // Wake-ups right after the resubscription still count.
    tokio::time::sleep(GRACE).await;
    let _ = stop.send(true);
    let (mut first, mut again) = (Some(start), Some(ready));
    for task in tasks {
        let at = task.await?;
        let after = at.iter().copied().find(|t| *t > missing_seen);
        first = first.zip(at.first().copied()).map(|(x, y)| x.max(y));
        again = again.zip(after).map(|(x, y)| x.max(y));
    }
    run.woken = first.map(|t| ms(t - start));
    run.rewoken = again.map(|t| ms(t - ready));
    for channel in &channels {
        let heard: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg("released")
            .query_async(&mut conn)
            .await?;
        // After a partition the server may still count the abandoned connection.
        if heard < 1 || (heard > 1 && scenario != Scenario::Partition) {
            return Err(format!("PUBLISH on {channel} reached {heard} subscribers").into());
        }
    }
    Ok(run)
}

fn summary(name: &str, values: &[Option<f64>]) -> String {
    let mut got: Vec<f64> = values.iter().flatten().copied().collect();
    got.sort_by(f64::total_cmp);
    let missing = values.len() - got.len();
    if got.is_empty() {
        return format!("{name:>13}: never ({missing} of {})", values.len());
    }
    let pick = |q: f64| got[((got.len() - 1) as f64 * q).round() as usize];
    format!(
        "{name:>13}: median {:7.2} ms  p90 {:7.2} ms  max {:7.2} ms{}",
        pick(0.5),
        pick(0.9),
        pick(1.0),
        if missing > 0 {
            format!("  ({missing} of {} never)", values.len())
        } else {
            String::new()
        }
    )
}

#[tokio::main]
async fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(Ok(20), |a| a.parse())?;
    let listeners: usize = args.next().map_or(Ok(16), |a| a.parse())?;
    let scenarios = if args.next().as_deref() == Some("--partition") {
        vec![Scenario::Partition]
    } else {
        vec![Scenario::Kill, Scenario::Restart]
    };
    for scenario in scenarios {
        let mut server = RedisServer::start_with(RedisServerConfig::new().local_only()).await?;
        let proxy = FaultProxy::for_server(&server).await?;
        let url = match scenario {
            Scenario::Partition => proxy.url(),
            Scenario::Kill | Scenario::Restart => server.url(),
        };
        let backend = RedisBackend::builder(url)
            .connect_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .connect()
            .await?;
        let (mut all, mut failed) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            match one_run(scenario, &mut server, &proxy, &backend, listeners).await {
                Ok(run) => all.push(run),
                Err(e) => {
                    failed.push(e.to_string());
                    all.push(Run::default());
                }
            }
        }
        let name = match scenario {
            Scenario::Kill => "CLIENT KILL TYPE pubsub",
            Scenario::Restart => "server restart (SIGKILL + start, empty)",
            Scenario::Partition => "partition: both directions blackholed for 18 s, then healed",
        };
        println!("{name}: {runs} runs, {listeners} listeners");
        for (label, pick) in [
            ("woken", (|r: &Run| r.woken) as fn(&Run) -> Option<f64>),
            ("resubscribed", |r: &Run| r.resubscribed),
            ("rewoken", |r: &Run| r.rewoken),
        ] {
            let values: Vec<Option<f64>> = all.iter().map(pick).collect();
            println!("  {}", summary(label, &values));
        }
        for e in &failed {
            println!("  failed run: {e}");
        }
    }
    Ok(())
}
