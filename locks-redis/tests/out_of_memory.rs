//! A full server (`maxmemory` reached under `noeviction`) keeps every lease it already holds:
//! renewals and re-acquires of mutex leases, permits, readers and writers go through, releases
//! too, and only new leases are refused, with a typed error. A real `redis-server` from the
//! testkit fixture.
//!
//! Real time: every wait is a bounded poll; nothing sleeps to let time pass.

use std::error::Error as _;
use std::time::Duration;

use locks_core::{
    AcquireOptions, AcquireResult, LeaseKind, LeaseState, LockBackend, LockError, LockGuard,
    LockService, LostReason,
};
use locks_redis::redis::{self, AsyncCommands, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisBackendError, RedisKeys};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig, fill_to_oom};
use tokio::task::JoinHandle;

mod common;
use common::within;

/// Short, so that several renewals happen within a test: one every `TTL / 2`.
const TTL: Duration = Duration::from_millis(1000);

/// How many renewals each lease must get on the full server.
const RENEWALS: usize = 3;

fn ok<T, E: std::fmt::Display>(what: &str) -> impl FnOnce(Result<T, E>) -> T + '_ {
    move |r| r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Write 8 KiB values until the server answers `OOM`, then lower `maxmemory` to 1 MB, far below
/// its usage whatever buffers come and go. (It starts at 2 MB: an empty Redis 7 with a few
/// clients uses about 1 MB, and the leases taken before the fill need the headroom.) Returns
/// how many keys it wrote.
async fn fill(conn: &mut MultiplexedConnection) -> usize {
    let filled = fill_to_oom(conn, 10_000)
        .await
        .unwrap_or_else(|e| panic!("filling: {e}"))
        .unwrap_or_else(|| panic!("the server never ran out of memory"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1mb")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET maxmemory: {e}"));
    filled
}

/// Every state a guard goes through from now on.
fn record_states(guard: &LockGuard) -> JoinHandle<Vec<LeaseState>> {
    let mut states = guard.watch_state();
    tokio::spawn(async move {
        let mut seen = vec![*states.borrow_and_update()];
        while states.changed().await.is_ok() {
            seen.push(*states.borrow_and_update());
        }
        seen
    })
}

/// The server's absolute expiry (ms) of the lease `guard` holds: the member's score for a permit
/// or reader, `PEXPIRETIME` of the hash for a mutex lease or writer. Each renewal moves it on.
async fn expiry(conn: &mut MultiplexedConnection, guard: &LockGuard) -> i64 {
    let keys = RedisKeys::new(guard.lock_key());
    let token = guard.token().to_hyphenated();
    let r: redis::RedisResult<Option<f64>> = match guard.kind() {
        LeaseKind::Permit { .. } => conn.zscore(&keys.semaphore, &token).await,
        LeaseKind::Read => conn.zscore(&keys.rw_readers, &token).await,
        LeaseKind::Write => {
            redis::cmd("PEXPIRETIME")
                .arg(&keys.rw_writer)
                .query_async(conn)
                .await
        }
        _ => {
            redis::cmd("PEXPIRETIME")
                .arg(&keys.lease)
                .query_async(conn)
                .await
        }
    };
    let ms = r.unwrap_or_else(|e| panic!("expiry of {}: {e}", guard.key()));
    ms.unwrap_or_else(|| panic!("{} ({}) is gone from the server", guard.key(), guard.kind()))
        as i64
}

/// `r` is the typed refusal of a new lease on a full server: `LockError::Backend`, permanent,
/// its source a [`RedisBackendError::OutOfMemory`] that mentions `OOM`.
fn assert_out_of_memory(what: &str, r: Result<LockGuard, LockError>) {
    let source = match r {
        Err(LockError::Backend { source, .. }) => source,
        other => panic!("{what}: expected LockError::Backend (OOM), got {other:?}"),
    };
    assert!(!source.is_transient(), "{what}: {source}");
    assert!(source.to_string().contains("OOM"), "{what}: {source}");
    let typed = source
        .source()
        .and_then(|s| s.downcast_ref::<RedisBackendError>());
    assert!(
        matches!(typed, Some(RedisBackendError::OutOfMemory { .. })),
        "{what}: {typed:?}"
    );
}

/// Promise (Redis backend, "renewals of existing members must succeed on a full server"): on a
/// server at `maxmemory` with `noeviction`, a mutex lease, a semaphore permit, a read lease and
/// a write lease held through a `LockService` with auto-renewal stay `Held` — never `Unknown`
/// — across several renewals; an acquire again with the same token (what the service sends
/// after a lost reply) gets the same lease back; every holder can release. A new lease of each
/// kind is refused at once with a permanent, typed `OutOfMemory` error, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_keeps_renewing_held_leases_and_refuses_new_ones() {
    let server = RedisServer::start_with(RedisServerConfig::new().args([
        "--maxmemory",
        "2mb",
        "--maxmemory-policy",
        "noeviction",
    ]))
    .await
    .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let mut conn = ok("raw connection")(server.connection().await);
    let backend = ok("connect")(
        within(
            "connect",
            RedisBackend::builder(server.url())
                .connect_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(2))
                .connect(),
        )
        .await,
    );
    let locks = ok("service")(LockService::new(backend.clone()));
    let opts = AcquireOptions::new().ttl(TTL);
    let pool = ok("semaphore")(locks.semaphore("oom:pool", 3));
    let readers = ok("rwlock")(locks.rwlock("oom:readers"));
    let writers = ok("rwlock")(locks.rwlock("oom:writers"));
    let guards = vec![
        ok("mutex")(within("mutex", locks.acquire_opts("oom:mutex", opts.clone())).await),
        ok("permit")(within("permit", pool.acquire_opts(opts.clone())).await),
        ok("read")(within("read", readers.read_opts(opts.clone())).await),
        ok("write")(within("write", writers.write_opts(opts.clone())).await),
    ];
    let states: Vec<_> = guards.iter().map(record_states).collect();

    let filled = fill(&mut conn).await;
    let keys_before: usize = ok("DBSIZE")(redis::cmd("DBSIZE").query_async(&mut conn).await);

    // Several renewals of every lease on the full server, each confirmed (`Held`).
    let mut last = Vec::new();
    for g in &guards {
        last.push(expiry(&mut conn, g).await);
    }
    let mut renewals = vec![0; guards.len()];
    let budget = TTL * (RENEWALS as u32 + 3);
    tokio::time::timeout(budget, async {
        while renewals.iter().any(|&n| n < RENEWALS) {
            for (i, g) in guards.iter().enumerate() {
                assert_eq!(g.state(), LeaseState::Held, "{} ({})", g.key(), g.kind());
                let now = expiry(&mut conn, g).await;
                if now > last[i] {
                    renewals[i] += 1;
                    last[i] = now;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("not every lease was renewed {RENEWALS} times: {renewals:?}"));

    // The same token acquiring again gets its own lease back, with the same fence.
    for g in &guards {
        let again = within(
            "acquire again",
            backend.try_acquire(g.lock_key(), g.kind(), g.token(), TTL),
        )
        .await;
        match again {
            Ok(AcquireResult::Acquired(lease)) => {
                assert_eq!(lease.fence, g.fence(), "{} ({})", g.key(), g.kind());
            }
            other => panic!("{} ({}) acquired again: {other:?}", g.key(), g.kind()),
        }
    }

    // New leases are refused at once, typed, and write nothing.
    assert_out_of_memory("mutex", within("mutex", locks.try_acquire("oom:new")).await);
    assert_out_of_memory("permit", within("permit", pool.try_acquire()).await);
    assert_out_of_memory("read", within("read", readers.try_read()).await);
    let other_writers = ok("rwlock")(locks.rwlock("oom:new-writers"));
    assert_out_of_memory("write", within("write", other_writers.try_write()).await);
    let keys_after: usize = ok("DBSIZE")(redis::cmd("DBSIZE").query_async(&mut conn).await);
    assert_eq!(keys_after, keys_before, "a refused acquire wrote something");

    // Every holder can release, and none of them was ever anything but `Held`.
    for g in guards {
        let what = format!("release {} ({})", g.key(), g.kind());
        ok(&what)(within(&what, g.release()).await);
    }
    for recorded in states {
        let seen = ok("state recorder")(within("state recorder", recorded).await);
        let (released, held) = seen.split_last().unwrap_or_else(|| panic!("no state"));
        assert_eq!(
            *released,
            LeaseState::Lost(LostReason::Released),
            "{seen:?}"
        );
        assert!(
            held.iter().all(|s| *s == LeaseState::Held),
            "a lease left `Held` on the full server: {seen:?}"
        );
    }
    println!("out of memory: {filled} fill keys, renewals {renewals:?}");
}
