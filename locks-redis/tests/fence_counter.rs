//! The fence counter (`…:fence`): what it costs per lock name, how long it is kept, and that
//! fences keep increasing across holders whatever happened to it. A real `redis-server` from the
//! testkit fixture.
//!
//! Real time: every wait is a bounded poll; nothing sleeps to let time pass.

use std::time::Duration;

use locks_core::{AcquireResult, BackendError, LeaseKind, LockBackend, LockKey, OwnerToken};
use locks_redis::redis::{self, AsyncCommands, aio::MultiplexedConnection};
use locks_redis::{FenceCounterTtl, RedisKeys};

mod common;
use common::{builder, connect, key, private_rig, private_server, raw, server_us, within};

/// The key of `name` for leases of `kind` (a key per kind), and its fence counter.
fn kind_key(name: &str, kind: LeaseKind) -> (LockKey, String) {
    let k = key(&format!("{name}:{}", kind.label()));
    let counter = RedisKeys::new(&k).fence;
    (k, counter)
}

fn acquired(what: &str, r: Result<AcquireResult, BackendError>) -> u64 {
    match r {
        Ok(AcquireResult::Acquired(lease)) => lease.fence,
        other => panic!("{what}: expected Acquired, got {other:?}"),
    }
}

/// `used_memory` of `INFO memory`, in bytes.
async fn used_memory(conn: &mut MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("INFO memory: {e}"));
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in {info}"))
}

async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("DBSIZE: {e}"))
}

/// How much memory a lock name keeps after its lease is released: the fence counter alone.
/// Measured twice, `MEMORY USAGE` of one counter and the `used_memory` growth over 10,000
/// names (which also counts the growth of the server's key and expiry tables), and printed
/// (`--no-capture`) for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_name_keeps_only_its_fence_counter_of_about_a_hundred_bytes() {
    let (_server, redis, mut conn) = private_rig().await;
    let ttl = Duration::from_secs(30);
    const NAMES: usize = 10_000;

    let before = used_memory(&mut conn).await;
    let names: Vec<String> = (0..NAMES).map(|i| format!("order:{i:08}")).collect();
    for chunk in names.chunks(100) {
        let redis = &redis;
        let ops = chunk.iter().map(|name| async move {
            let k = key(name);
            let t = OwnerToken::new();
            acquired(name, redis.try_acquire(&k, LeaseKind::Mutex, t, ttl).await);
            assert_eq!(
                redis.release(&k, LeaseKind::Mutex, t).await.ok(),
                Some(true)
            );
        });
        within("100 acquires and releases", futures::future::join_all(ops)).await;
    }
    let after = used_memory(&mut conn).await;
    assert_eq!(
        dbsize(&mut conn).await,
        NAMES as i64,
        "only the counters stay"
    );

    let counter = RedisKeys::new(&key(&names[0])).fence;
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&counter)
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("MEMORY USAGE: {e}"));
    let per_name = (after - before) / NAMES as i64;
    let pttl = pttl(&mut conn, &counter).await;
    println!(
        "fence counter `{counter}`: MEMORY USAGE {usage} B; used_memory +{} B over {NAMES} \
         names = {per_name} B per name; PTTL after release {pttl} ms",
        after - before
    );
    assert!(usage > 0 && usage <= 128, "MEMORY USAGE {usage}");
    assert!(per_name > 0 && per_name <= 200, "{per_name} B per name");
    // And only for the default lifetime, max(2 × 30 s, 60 s).
    assert!(pttl > 0 && pttl <= 60_000, "{pttl}");
}

// ---- Fences across an expired or advanced counter (issue 11 item 6) -----------------------

const KINDS: [LeaseKind; 4] = [
    LeaseKind::Mutex,
    LeaseKind::Permit { limit: 2 },
    LeaseKind::Read,
    LeaseKind::Write,
];

async fn counter_value(conn: &mut MultiplexedConnection, counter: &str) -> Option<u64> {
    let v: Option<String> = conn
        .get(counter)
        .await
        .unwrap_or_else(|e| panic!("GET {counter}: {e}"));
    v.map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{counter} = {v:?}: {e}"))
    })
}

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    conn.pttl(key)
        .await
        .unwrap_or_else(|e| panic!("PTTL {key}: {e}"))
}

/// Sets the expiry of the fence counter `counter` (which must exist) to `ms`: as if time had
/// passed since it was set, or another lease had set a longer one.
async fn age_counter(conn: &mut MultiplexedConnection, counter: &str, ms: i64) {
    let set: bool = conn
        .pexpire(counter, ms)
        .await
        .unwrap_or_else(|e| panic!("PEXPIRE: {e}"));
    assert!(set, "no fence counter to age");
}

/// Put the counter `ahead` µs ahead of the server's clock (as a clock that had been ahead, or
/// stepped back since, leaves it), without expiry. Returns its value.
async fn counter_ahead(conn: &mut MultiplexedConnection, counter: &str, ahead: u64) -> u64 {
    let value = server_us(conn).await + ahead;
    let _: () = conn
        .set(counter, value.to_string())
        .await
        .unwrap_or_else(|e| panic!("SET {counter}: {e}"));
    value
}

/// 10^12 µs: about 11.6 days.
const AHEAD: u64 = 1_000_000_000_000;

/// A counter ahead of `TIME` is followed (`counter + 1`), and kept until `TIME` has passed it,
/// so fences go on increasing after it would otherwise have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_ahead_of_the_clock_is_followed_and_kept_until_the_clock_passes_it() {
    let (_server, redis, mut conn) = private_rig().await;
    let ttl = Duration::from_secs(30);
    for kind in KINDS {
        let (k, counter) = kind_key("ahead", kind);
        let value = counter_ahead(&mut conn, &counter, AHEAD).await;
        let a = OwnerToken::new();
        let first = acquired("a", redis.try_acquire(&k, kind, a, ttl).await);
        assert_eq!(first, value + 1, "{kind}");
        assert_eq!(counter_value(&mut conn, &counter).await, Some(first));
        // Kept at least until TIME passes it: 10^12 µs = 10^9 ms from now.
        let left = pttl(&mut conn, &counter).await;
        assert!(left >= 999_000_000, "{kind}: counter PTTL {left} ms");
        assert_eq!(redis.release(&k, kind, a).await.ok(), Some(true));
        // The next holder's fence is larger (TIME alone is 10^12 µs below it).
        let b = OwnerToken::new();
        let second = acquired("b", redis.try_acquire(&k, kind, b, ttl).await);
        assert_eq!(second, first + 1, "{kind}");
        assert_eq!(redis.release(&k, kind, b).await.ok(), Some(true));
    }
}

/// Every renewal (an extend, or an acquire by the holder itself) lengthens the counter's
/// expiry to the configured margin, never shortens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_refresh_the_fence_counter_of_every_kind_of_lease() {
    let (_server, redis, mut conn) = private_rig().await;
    let ttl = Duration::from_secs(60);
    // The default: max(2 × ttl, 60 s).
    let margin: i64 = 120_000;
    for kind in KINDS {
        let (k, counter) = kind_key("renew", kind);
        let t = OwnerToken::new();
        let fence = acquired("acquire", redis.try_acquire(&k, kind, t, ttl).await);
        let left = pttl(&mut conn, &counter).await;
        assert!(left > margin - 5_000 && left <= margin, "{kind}: {left}");

        // As if time had passed since the acquire.
        age_counter(&mut conn, &counter, 500).await;
        assert_eq!(redis.extend(&k, kind, t, ttl).await.ok(), Some(true));
        let left = pttl(&mut conn, &counter).await;
        assert!(
            left > margin - 5_000,
            "{kind}: extend left the counter at {left} ms"
        );

        age_counter(&mut conn, &counter, 500).await;
        let again = acquired("re-acquire", redis.try_acquire(&k, kind, t, ttl).await);
        assert_eq!(again, fence);
        let left = pttl(&mut conn, &counter).await;
        assert!(
            left > margin - 5_000,
            "{kind}: re-acquire left the counter at {left} ms"
        );

        // A longer expiry (another lease's) is kept.
        age_counter(&mut conn, &counter, 10_000_000).await;
        assert_eq!(redis.extend(&k, kind, t, ttl).await.ok(), Some(true));
        let left = pttl(&mut conn, &counter).await;
        assert!(
            left > 9_900_000,
            "{kind}: extend shortened the counter to {left} ms"
        );
        assert_eq!(counter_value(&mut conn, &counter).await, Some(fence));
        assert_eq!(redis.release(&k, kind, t).await.ok(), Some(true));
    }
}

/// A counter that expired under a live lease (kept for a day after the acquire by earlier
/// versions, while renewals went on) whose fence is ahead of the clock: the holder's next
/// renewal writes its fence back, so the next holder's fence is still larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_keep_increasing_after_the_counter_expired_under_a_renewed_lease() {
    let (_server, redis, mut conn) = private_rig().await;
    let ttl = Duration::from_secs(30);
    for kind in KINDS {
        let (k, counter) = kind_key("expired-under-lease", kind);
        counter_ahead(&mut conn, &counter, AHEAD).await;
        let a = OwnerToken::new();
        let held = acquired("a", redis.try_acquire(&k, kind, a, ttl).await);
        let _: i64 = conn.del(&counter).await.unwrap_or(0);
        assert_eq!(redis.extend(&k, kind, a, ttl).await.ok(), Some(true));
        let restored = counter_value(&mut conn, &counter).await;
        assert_eq!(redis.release(&k, kind, a).await.ok(), Some(true));
        let next = acquired(
            "b",
            redis.try_acquire(&k, kind, OwnerToken::new(), ttl).await,
        );
        assert!(next > held, "{kind}: fence {next} after {held}");
        assert_eq!(restored, Some(held), "{kind}");
    }
}

// ---- What a distinct name costs, and for how long (issue 11 item 7) -----------------------

/// With the default, a released name keeps its counter for `max(2 × ttl, 60 s)`, not a day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_released_name_keeps_its_counter_for_a_minute() {
    let (_server, redis, mut conn) = private_rig().await;
    for (ttl, expect) in [(1_000, 60_000), (30_000, 60_000), (45_000, 90_000)] {
        let k = key(&format!("default:{ttl}"));
        let counter = RedisKeys::new(&k).fence;
        let t = OwnerToken::new();
        let kind = LeaseKind::Mutex;
        acquired(
            "acquire",
            redis
                .try_acquire(&k, kind, t, Duration::from_millis(ttl))
                .await,
        );
        assert_eq!(redis.release(&k, kind, t).await.ok(), Some(true));
        let left = pttl(&mut conn, &counter).await;
        assert!(
            left > expect - 5_000 && left <= expect,
            "ttl {ttl}: counter PTTL {left}"
        );
    }
}

/// The builder's policy sets the counter's lifetime; once it has passed, the name costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_counter_lifetime_is_used_and_then_nothing_is_left() {
    let server = private_server().await;
    let policy = FenceCounterTtl::new(3, Duration::from_secs(2));
    let redis = connect(builder(server.url()).fence_counter_ttl(policy)).await;
    assert_eq!(redis.fence_counter_ttl(), policy);
    let mut conn = raw(&server).await;
    for kind in KINDS {
        let (k, counter) = kind_key("configured", kind);
        let t = OwnerToken::new();
        // 3 × 1 s.
        acquired(
            "acquire",
            redis.try_acquire(&k, kind, t, Duration::from_secs(1)).await,
        );
        let left = pttl(&mut conn, &counter).await;
        assert!(left > 2_500 && left <= 3_000, "{kind}: {left}");
        // The floor, for a short lease: 2 s rather than 3 × 100 ms (after the counter's expiry
        // ran down to 1 ms, else the 3 s would be kept).
        age_counter(&mut conn, &counter, 1).await;
        assert_eq!(
            redis
                .extend(&k, kind, t, Duration::from_millis(100))
                .await
                .ok(),
            Some(true)
        );
        let left = pttl(&mut conn, &counter).await;
        assert!(left > 1_500 && left <= 2_000, "{kind}: {left}");
        assert_eq!(redis.release(&k, kind, t).await.ok(), Some(true));
    }
    within("every counter to expire", async {
        while dbsize(&mut conn).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
