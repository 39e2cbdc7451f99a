//! Semaphore permits and readers (members of a sorted set scored by expiry) never expire on the
//! server before the holder's deadline, even with ttls of a millisecond or two: a member is
//! live while the server's `TIME` in whole ms is at most its score, as Redis expires a key set
//! with `PX`. A real `redis-server` from the testkit fixture.
//!
//! Real time: no sleeps; the server's own clock brackets every check.

use std::time::{Duration, Instant};

use locks_core::{AcquireResult, LeaseKind, LockBackend, LockKey, OwnerToken};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::MultiplexedConnection;

mod common;
use common::{key, private_rig, server_us};

/// Whether `token` holds a lease of `kind` on `k`, and its reported remaining time.
async fn listed(
    backend: &RedisBackend,
    k: &LockKey,
    kind: LeaseKind,
    token: OwnerToken,
) -> Option<Duration> {
    let holders = backend
        .holders(k, kind)
        .await
        .unwrap_or_else(|e| panic!("holders: {e}"));
    holders
        .leases
        .iter()
        .find(|l| l.owner == token)
        .map(|l| l.remaining)
}

/// One lease of `kind` on `k` for `token`, taken or extended by `ttl`.
struct Lease<'a> {
    k: &'a LockKey,
    kind: LeaseKind,
    token: OwnerToken,
    ttl: Duration,
}

impl Lease<'_> {
    /// Checks the lease right after `what` (an acquire or an extend), sent at server time
    /// `sent` (µs): while the server's time is still before `sent + ttl`, it must be listed,
    /// with a remaining time of at most the ttl. Whether the check fell inside that deadline.
    async fn outlives_deadline(
        &self,
        backend: &RedisBackend,
        conn: &mut MultiplexedConnection,
        sent: u64,
        what: &str,
    ) -> bool {
        let Lease {
            k,
            kind,
            token,
            ttl,
        } = *self;
        let remaining = listed(backend, k, kind, token).await;
        let now = server_us(conn).await;
        if u128::from(now) >= u128::from(sent) + ttl.as_micros() {
            return false;
        }
        let remaining = remaining.unwrap_or_else(|| {
            panic!("{kind} {what} {ttl:?} at TIME >= {sent} µs is gone at TIME <= {now} µs")
        });
        assert!(remaining <= ttl, "{remaining:?} > {ttl:?}");
        true
    }
}

/// Many acquires and extends of permits and readers with ttls of 1 to 3 ms. Each is checked
/// right after it succeeded, by the server's clock: while the server's time is still before
/// `TIME read before the request + ttl` (which the holder trusts, and more), the member must be
/// listed, with a remaining time of at most the ttl.
///
/// Members used to be scored `TIME in ms (rounded down) + ttl` and dropped once the score was
/// reached, so a 1 ms permit taken late in a millisecond lived a fraction of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_and_readers_with_millisecond_ttls_outlive_the_holders_deadline() {
    let (_server, backend, mut conn) = private_rig().await;
    let permits = LeaseKind::Permit { limit: 1_000 };
    let (sem, rw) = (key("edge:sem"), key("edge:rw"));

    // Enough checks that fall inside the deadline, within a bounded time.
    const WANTED: usize = 300;
    let started = Instant::now();
    let (mut checked, mut attempts) = (0usize, 0u64);
    while checked < WANTED {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {checked} of {attempts} checks fell within their deadline"
        );
        attempts += 1;
        let (k, kind) = if attempts % 2 == 0 {
            (&sem, permits)
        } else {
            (&rw, LeaseKind::Read)
        };
        let ttl_ms = 1 + attempts % 3;
        let ttl = Duration::from_millis(ttl_ms);
        let token = OwnerToken::new();

        let lease = Lease {
            k,
            kind,
            token,
            ttl,
        };

        let sent = server_us(&mut conn).await;
        match backend.try_acquire(k, kind, token, ttl).await {
            Ok(AcquireResult::Acquired(_)) => {}
            other => panic!("{kind} of {ttl:?}: {other:?}"),
        }
        if lease
            .outlives_deadline(&backend, &mut conn, sent, "acquired for")
            .await
        {
            checked += 1;
        }

        // An extend by the holder, checked the same way.
        let sent = server_us(&mut conn).await;
        if backend.extend(k, kind, token, ttl).await.ok() == Some(true)
            && lease
                .outlives_deadline(&backend, &mut conn, sent, "extended by")
                .await
        {
            checked += 1;
        }
    }
}
