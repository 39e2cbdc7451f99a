//! Faults: a real private `redis-server` behind the testkit's [`FaultProxy`], which adds
//! latency, stalls, blackholes and drops connections on command; server restarts, a full
//! server (`maxmemory`, `maxclients`), flushed and killed scripts; and a soak with faults
//! injected at random.
//!
//! Every test states the promise it checks. Everything is bounded by `tokio::time::timeout`;
//! nothing sleeps to synchronise (conditions are polled in bounded loops; the soak's sleeps
//! only pace the random faults and the simulated work).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{
    AcquireOptions, AcquireResult, LeaseHandle, LeaseKind, LeaseState, LockBackend, LockError,
    LockGuard, LockService, LostReason, OwnerToken, RetryPolicy,
};
use locks_redis::redis::aio::MultiplexedConnection;
use locks_redis::redis::{self, AsyncCommands, AsyncConnectionConfig, Value};
use locks_redis::{RedisBackend, RedisBackendError, RedisKeys};
use locks_testkit::proxy::{Direction, FaultProxy};
use locks_testkit::redis_server::{RedisServer, fill_to_oom};
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod common;
use common::{SOON, dbsize, info_field, key, private_server, within, within_for};

const MUTEX: LeaseKind = LeaseKind::Mutex;

/// How late a timer may fire on a loaded test machine and still count as "on time".
const SLACK: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Poll `check` every few milliseconds until it holds (bounded by `limit`).
async fn until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within_for(limit, what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

async fn proxy_for(server: &RedisServer) -> FaultProxy {
    FaultProxy::for_server(server)
        .await
        .unwrap_or_else(|e| panic!("fault proxy: {e}"))
}

async fn backend(url: &str, response_timeout: Duration) -> RedisBackend {
    RedisBackend::builder(url)
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(response_timeout)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

fn service(backend: RedisBackend) -> LockService {
    LockService::new(backend).unwrap_or_else(|e| panic!("{e}"))
}

/// A private server started with `args`, the fault proxy in front of it, a direct connection
/// for checks and setup, and a service whose backend talks through the proxy.
struct Rig {
    server: RedisServer,
    proxy: FaultProxy,
    direct: MultiplexedConnection,
    locks: LockService,
}

async fn rig(args: &[&str], response_timeout: Duration) -> Rig {
    let server = private_server(args).await;
    let proxy = proxy_for(&server).await;
    let direct = direct(&server).await;
    let locks = service(backend(&proxy.url(), response_timeout).await);
    Rig {
        server,
        proxy,
        direct,
        locks,
    }
}

/// Acquire the mutex `name` with `ttl` (bounded by [`SOON`]).
async fn acquire_for(locks: &LockService, name: &str, ttl: Duration) -> LockGuard {
    within(
        "acquire",
        locks.acquire_opts(name, AcquireOptions::new().ttl(ttl)),
    )
    .await
    .unwrap_or_else(|e| panic!("acquire {name}: {e}"))
}

/// Record the states of `guard` from now on: the current one, then every change up to the
/// first state for which `last` holds.
fn record_states(guard: &LockGuard, last: fn(LeaseState) -> bool) -> JoinHandle<Vec<LeaseState>> {
    let mut states = guard.watch_state();
    let mut seen = vec![*states.borrow_and_update()];
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let s = *states.borrow_and_update();
            seen.push(s);
            if last(s) {
                break;
            }
        }
        seen
    })
}

/// Once a request (or reply) is held in the proxy in direction `dir` (the proxy stalls it),
/// reset every connection through the proxy and let traffic flow again.
async fn drop_connections_once_held(proxy: &FaultProxy, dir: Direction, what: &str) {
    until(
        SOON,
        &format!("the {what} is held in the proxy"),
        || async { proxy.held_bytes(dir) > 0 },
    )
    .await;
    let dropped = proxy.drop_connections().await;
    assert!(dropped >= 1, "no connection to drop");
    proxy.heal();
}

/// A direct connection to the server (not through the proxy), for checks and setup.
async fn direct(server: &RedisServer) -> MultiplexedConnection {
    direct_with(server, Some(Duration::from_secs(2))).await
}

async fn direct_with(
    server: &RedisServer,
    response_timeout: Option<Duration>,
) -> MultiplexedConnection {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(response_timeout);
    redis::Client::open(server.url())
        .unwrap_or_else(|e| panic!("client: {e}"))
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("direct connection: {e}"))
}

/// The owner token in a mutex lease value (`"<fence> <owner token>"`).
fn owner_of(lease: Option<String>) -> Option<String> {
    lease.and_then(|v| v.split_once(' ').map(|(_, owner)| owner.to_owned()))
}

/// The owner stored in Redis for the mutex `name`, read directly.
async fn stored_owner(conn: &mut MultiplexedConnection, name: &str) -> Option<String> {
    let lease: Option<String> = conn
        .get(RedisKeys::new(&key(name)).lease)
        .await
        .unwrap_or_else(|e| panic!("GET: {e}"));
    owner_of(lease)
}

/// The owner and the `PTTL` of the mutex lease `lease_key`, read atomically.
async fn owner_and_pttl(
    conn: &mut MultiplexedConnection,
    lease_key: &str,
) -> (Option<String>, i64) {
    let (lease, pttl): (Option<String>, i64) = redis::pipe()
        .atomic()
        .get(lease_key)
        .pttl(lease_key)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("GET + PTTL: {e}"));
    (owner_of(lease), pttl)
}

fn ok<T, E: std::fmt::Display>(what: &str) -> impl FnOnce(Result<T, E>) -> T + '_ {
    move |r| r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Polling every 5 ms with no jitter: the waits below are about the store, not the backoff.
fn fast_polling() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(5))
        .max_delay(Duration::from_millis(5))
        .jitter(0.0)
}

// ---------------------------------------------------------------------------------------------
// Partitions

/// Promise (safety rule 1): a holder cut off from Redis — every byte blackholed both ways, the
/// connections still open — for longer than its ttl reports `lost()` with `DeadlineExpired` at
/// its local deadline (acquire *sent* + ttl − drift margin): not before it, and at most a
/// timer's slack after it, and while Redis still holds its lease. A second client talking to
/// Redis directly gets the lock only after that moment: its first successful attempt was
/// *sent* after the holder had given up.
///
/// The acquire's *reply* is delayed (server → client), not its request: Redis starts the
/// lease's ttl as soon as the request was sent, and the holder learns of it 200 ms later. So the
/// drift margin is the only time between the holder giving up and Redis freeing the key: a
/// deadline counted from the reply, or with no margin (`drift_margin` returning zero), fails
/// the "Redis still holds it" check. (A delayed request would add its delay to that time and
/// hide a missing margin.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_holder_gives_up_before_a_second_holder_gets_in() {
    let server = private_server(&[]).await;
    let proxy = proxy_for(&server).await;
    let holder = service(backend(&proxy.url(), Duration::from_millis(400)).await);
    let rival = backend(&server.url(), Duration::from_secs(2)).await;
    let mut check = direct(&server).await;
    let name = "partition";
    let ttl = Duration::from_secs(2);
    let margin = locks_core::drift_margin(ttl);
    // Load the scripts first: the acquire below is one round trip.
    let warm = acquire_for(&holder, "partition-warm-up", ttl).await;
    within("warm-up release", warm.release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    proxy.set_latency(Direction::ServerToClient, Duration::from_millis(200));
    let guard = acquire_for(&holder, name, ttl).await;
    proxy.set_latency(Direction::ServerToClient, Duration::ZERO);
    proxy.blackhole(Direction::Both, true);
    let partitioned_at = Instant::now();
    let lease_key = RedisKeys::new(&key(name)).lease;

    let seen = record_states(&guard, |s| matches!(s, LeaseState::Lost(_)));
    let lost = guard.lost();
    let rival_task = tokio::spawn(async move {
        let k = key(name);
        let token = OwnerToken::new();
        loop {
            let sent = Instant::now();
            match rival
                .try_acquire(&k, MUTEX, token, Duration::from_secs(5))
                .await
            {
                Ok(AcquireResult::Acquired(lease)) => return (sent, Instant::now(), lease.fence),
                Ok(AcquireResult::Held { .. }) => {}
                Err(e) => panic!("rival: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let reason = within("lost()", lost).await;
    let lost_at = Instant::now();
    // Redis still holds the lease when the holder gives up (by about the drift margin, less
    // the timer's and this query's delay); with no margin it would hold it for under 2 ms.
    let (store_owner, store_left) = owner_and_pttl(&mut check, &lease_key).await;
    let deadline = guard.deadline();
    assert_eq!(reason, LostReason::DeadlineExpired);
    assert!(
        store_owner == Some(guard.token().to_hyphenated()) && store_left >= 2,
        "the holder gave up when Redis had {store_left} ms left on its lease (owner \
         {store_owner:?}, drift margin {margin:?}): a second holder could get in before the \
         first one stopped"
    );
    assert!(
        lost_at >= deadline,
        "lost {:?} before the deadline",
        deadline - lost_at
    );
    assert!(
        lost_at <= deadline + SLACK,
        "lost {:?} after the deadline",
        lost_at - deadline
    );
    let (rival_sent, rival_acquired, rival_fence) = within("the rival acquires", rival_task)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        rival_sent >= lost_at,
        "the rival's winning attempt was sent {:?} before the holder gave up",
        lost_at - rival_sent
    );
    assert!(rival_fence > guard.fence());
    let seen = within("state history", seen)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.first(), Some(&LeaseState::Held));
    assert_eq!(
        seen.last(),
        Some(&LeaseState::Lost(LostReason::DeadlineExpired))
    );
    println!(
        "partition: lost {:?} after the partition ({:?} after the deadline, Redis had {store_left} \
         ms left, drift margin {margin:?}), rival in {:?} after that; states {seen:?}; {} bytes \
         blackholed",
        lost_at - partitioned_at,
        lost_at - deadline,
        rival_acquired - lost_at,
        proxy.discarded_bytes(Direction::Both)
    );
    // The partition ends the way a long one ends over TCP: the connections are reset. (Over a
    // connection that silently lost requests, replies would be matched to the wrong requests:
    // see `blackholed_requests_never_cause_misattributed_replies`.)
    proxy.heal();
    proxy.drop_connections().await;
    // The first command on a dropped connection fails (transient) and reconnects.
    until(SOON, "the holder's backend reconnects", || {
        let holder = holder.clone();
        async move { holder.inspect(name).await.is_ok() }
    })
    .await;
    // The old holder's release is refused ("not owner"), never reported as a success.
    let released = within("late release", guard.release()).await;
    assert!(
        matches!(released, Err(LockError::NotOwner { .. })),
        "{released:?}"
    );
}

/// Promise (issue 11 item 2, on Redis): an `extend` to a shorter ttl whose reply never comes
/// back may have been applied, so the holder trusts its lease only until `sent + shorter ttl −
/// drift margin` and its state is `Unknown`. Here Redis did apply it (the reply is held in the
/// proxy, then everything is blackholed): cut off, the holder gives up at that lowered
/// deadline, while Redis still holds the lease — not at the old ttl's deadline, long after
/// Redis let the key go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extend_whose_reply_is_lost_lowers_the_deadline_before_redis_lets_go() {
    let rig = rig(&[], Duration::from_millis(300)).await;
    let (proxy, locks, mut check) = (&rig.proxy, &rig.locks, rig.direct.clone());
    let (long, short) = (Duration::from_secs(10), Duration::from_secs(2));
    let guard = acquire_for(locks, "extend-lost", long).await;
    let lease_key = RedisKeys::new(guard.lock_key()).lease;
    // Load the extend script first: the held reply below is the extend's own, not `NOSCRIPT`.
    within("extend", guard.extend(long))
        .await
        .unwrap_or_else(|e| panic!("extend: {e}"));

    proxy.stall(Direction::ServerToClient);
    let before = Instant::now();
    let extend = guard.extend(short);
    let held = async {
        until(SOON, "the extend's reply is held in the proxy", || async {
            proxy.held_bytes(Direction::ServerToClient) > 0
        })
        .await;
        // From now on nothing gets through: renewals retried after the failure go nowhere.
        proxy.blackhole(Direction::Both, true);
        Instant::now()
    };
    let (extended, sent_by) = tokio::join!(extend, held);
    assert!(
        matches!(extended, Err(LockError::Backend { .. })),
        "{extended:?}"
    );
    assert_eq!(guard.state(), LeaseState::Unknown);
    let margin = locks_core::drift_margin(short);
    assert!(
        guard.deadline() <= sent_by + short - margin
            && guard.deadline() + Duration::from_millis(1) >= before + short - margin,
        "deadline {:?} from the extend's start, expected about {:?}",
        guard.deadline() - before,
        short - margin
    );
    // Redis applied it.
    let applied: i64 = check
        .pttl(&lease_key)
        .await
        .unwrap_or_else(|e| panic!("PTTL: {e}"));
    assert!(applied > 0 && applied <= 2_000, "PTTL {applied}");

    let reason = within("lost()", guard.lost()).await;
    assert_eq!(reason, LostReason::DeadlineExpired);
    let (owner, left) = owner_and_pttl(&mut check, &lease_key).await;
    assert!(
        owner == Some(guard.token().to_hyphenated()) && left >= 2,
        "the holder gave up when Redis had {left} ms left (owner {owner:?})"
    );
    println!(
        "extend with a lost reply: lost {:?} after the extend was sent, Redis had {left} ms left",
        Instant::now() - before
    );
    proxy.heal();
}

// ---------------------------------------------------------------------------------------------
// Dropped connections

/// Promise (safety rule 2 and the guard's `release` contract): a connection dropped while a
/// release is in flight never turns into a false success. With the request held in the proxy
/// (it never reaches Redis) or the reply held (Redis ran it), the connection is reset:
/// `release` returns `Ok` only if the lease is gone from Redis, otherwise a `Backend` error —
/// and a lease whose release did not happen still ends by its ttl (renewal was stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_across_a_dropped_connection_never_reports_a_release_that_did_not_happen() {
    let rig = rig(&[], Duration::from_secs(2)).await;
    let (proxy, locks, mut check) = (&rig.proxy, &rig.locks, rig.direct.clone());
    // Load the scripts first, so the held request is the release itself, not a NOSCRIPT round.
    let warm = within("warm-up", locks.acquire("warm-up")).await;
    within("warm-up release", ok("warm-up")(warm).release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    for (dir, name) in [
        (Direction::ClientToServer, "release:request-lost"),
        (Direction::ServerToClient, "release:reply-lost"),
    ] {
        let ttl = Duration::from_secs(2);
        let guard = acquire_for(locks, name, ttl).await;
        let token = guard.token().to_hyphenated();
        assert_eq!(
            stored_owner(&mut check, name).await.as_deref(),
            Some(token.as_str())
        );

        proxy.stall(dir);
        let release = tokio::spawn(guard.release());
        drop_connections_once_held(proxy, dir, "release").await;
        let result = within("release", release)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let owner = stored_owner(&mut check, name).await;
        println!("{dir:?} held, connection dropped: release -> {result:?}, stored owner {owner:?}");
        match (&result, &owner) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => panic!("release reported success but the lease is still in Redis"),
            (Err(LockError::Backend { operation, source }), _) => {
                assert_eq!(*operation, "release");
                assert!(source.is_transient(), "{source}");
            }
            (Err(e), _) => panic!("unexpected release error: {e:?}"),
        }
        match dir {
            // The request never reached Redis: the lease is still there, and must end by its
            // ttl since the guard stopped renewing it.
            Direction::ClientToServer => {
                assert!(result.is_err());
                assert_eq!(owner.as_deref(), Some(token.as_str()));
                until(ttl + SLACK, "the unreleased lease expires", || {
                    let mut c = check.clone();
                    async move { stored_owner(&mut c, name).await.is_none() }
                })
                .await;
            }
            // Redis ran the release; only the reply was lost.
            _ => assert_eq!(owner, None),
        }
    }
}

/// Promise (lease states): a renewal whose connection is dropped — request lost, or applied
/// with its reply lost — turns the lease `Unknown` (never `Lost`, `lost()` does not fire), the
/// renewal is retried over a new connection, and the lease is `Held` again and still the
/// holder's in Redis, with a fresh ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_across_a_dropped_connection_goes_unknown_then_held() {
    let rig = rig(&[], Duration::from_secs(2)).await;
    let (proxy, locks, mut check) = (&rig.proxy, &rig.locks, rig.direct.clone());
    for (dir, name) in [
        (Direction::ClientToServer, "renew:request-lost"),
        (Direction::ServerToClient, "renew:reply-lost"),
    ] {
        // Renewal at 1 s, retried 250 ms after a failure, deadline at 1.978 s.
        let guard = acquire_for(locks, name, Duration::from_secs(2)).await;
        let token = guard.token().to_hyphenated();
        let first_deadline = guard.deadline();
        let history = record_states(&guard, |s| {
            s == LeaseState::Held || matches!(s, LeaseState::Lost(_))
        });

        proxy.stall(dir);
        drop_connections_once_held(proxy, dir, "renewal").await;

        let seen = within("Unknown, then Held", history)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            seen,
            [LeaseState::Held, LeaseState::Unknown, LeaseState::Held],
            "{dir:?}"
        );
        assert_eq!(guard.state(), LeaseState::Held);
        assert!(
            guard.deadline() > first_deadline,
            "the renewal moved the deadline"
        );
        assert_eq!(
            stored_owner(&mut check, name).await.as_deref(),
            Some(token.as_str())
        );
        let pttl: i64 = check
            .pttl(RedisKeys::new(&key(name)).lease)
            .await
            .unwrap_or_else(|e| panic!("PTTL: {e}"));
        assert!(pttl > 1000, "the ttl was renewed: {pttl} ms left");
        within("release", guard.release())
            .await
            .unwrap_or_else(|e| panic!("release: {e}"));
    }
}

/// Promise (safety rule 2 over a connection that lost requests): when requests are lost on a
/// connection that stays open (a middlebox discarding bytes: every request times out), no later
/// operation is answered with the reply of another one — a non-owner's extend is never `true` —
/// and the backend works again within a few response timeouts of the network healing.
///
/// The redis crate matches replies to requests in order and keeps a connection after a
/// response timeout, so a request that never gets a reply would shift every later reply by one
/// (before the fix, a non-owner's `extend` returned `Ok(true)`, the reply of a concurrent
/// `release`, and every later command timed out until the connection was dropped). The fix, in
/// locks-redis: a response timeout retires the connection it happened on; later commands wait
/// for a fresh connection manager instead of using it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_requests_never_cause_misattributed_replies() {
    let server = private_server(&[]).await;
    let proxy = proxy_for(&server).await;
    let ours = backend(&proxy.url(), Duration::from_millis(200)).await;
    let rival = backend(&server.url(), Duration::from_secs(2)).await;
    let (a, c) = (key("desync:a"), key("desync:c"));
    let (not_owner, ours_c) = (OwnerToken::new(), OwnerToken::new());
    let held = rival
        .try_acquire(&a, MUTEX, OwnerToken::new(), Duration::from_secs(30))
        .await;
    assert!(matches!(held, Ok(AcquireResult::Acquired(_))), "{held:?}");
    let mine = ours
        .try_acquire(&c, MUTEX, ours_c, Duration::from_secs(30))
        .await;
    assert!(matches!(mine, Ok(AcquireResult::Acquired(_))), "{mine:?}");
    // Load the extend and release scripts, so no SCRIPT LOAD round trip comes in between.
    assert_eq!(
        ours.extend(&a, MUTEX, not_owner, Duration::from_secs(1))
            .await
            .ok(),
        Some(false)
    );
    assert_eq!(ours.release(&a, MUTEX, not_owner).await.ok(), Some(false));

    // Two requests are lost on a connection that stays open.
    proxy.blackhole(Direction::ClientToServer, true);
    for _ in 0..2 {
        let lost = ours.holders(&c, MUTEX).await;
        assert!(lost.as_ref().is_err_and(|e| e.is_transient()), "{lost:?}");
    }
    proxy.heal();
    let (extend, _, release) = tokio::join!(
        ours.extend(&a, MUTEX, not_owner, Duration::from_secs(30)),
        ours.extend(&a, MUTEX, not_owner, Duration::from_secs(30)),
        ours.release(&c, MUTEX, ours_c),
    );
    assert!(
        !matches!(extend, Ok(true)),
        "a non-owner's extend was answered `true` (release of another key: {release:?})"
    );
    let mut recovered = false;
    for _ in 0..10 {
        if ours.holders(&a, MUTEX).await.is_ok() {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "the backend still times out after the network healed"
    );
}

// ---------------------------------------------------------------------------------------------
// Restart

/// Promise (safety rule 3): when Redis restarts empty under live holders, every holder — mutex,
/// semaphore permit, reader, writer — learns it at its next renewal or extend (`lost()` with
/// `NotOwner`), and every fence handed out afterwards is larger than every fence handed out
/// before.
///
/// Limit (shown, not hidden): between the data loss and that renewal, the old holder still
/// trusts its lease while a new holder has the lock — the same as a failover to a replica that
/// had not received the lease. Only the fence separates them: the new holder's is larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_empty_revokes_holders_and_fences_keep_increasing() {
    let mut server = private_server(&[]).await;
    let proxy = proxy_for(&server).await;
    let locks = service(backend(&proxy.url(), Duration::from_secs(1)).await);
    let opts = || AcquireOptions::new().ttl(Duration::from_secs(3));
    let mut guards: Vec<(&str, LockGuard)> = Vec::new();
    // Renewed only after 10 s: still trusted by its holder well after the restart.
    let long = within(
        "acquire",
        locks.acquire_opts(
            "restart:a",
            AcquireOptions::new().ttl(Duration::from_secs(20)),
        ),
    )
    .await;
    guards.push(("restart:a", ok("acquire")(long)));
    let g = within("acquire", locks.acquire_opts("restart:b", opts())).await;
    guards.push(("restart:b", ok("acquire")(g)));
    let pool = ok("semaphore")(locks.semaphore("restart:pool", 2));
    for _ in 0..2 {
        let g = within("permit", pool.acquire_opts(opts())).await;
        guards.push(("restart:pool", ok("permit")(g)));
    }
    let rw = ok("rwlock")(locks.rwlock("restart:rw"));
    let r = within("read", rw.read_opts(opts())).await;
    guards.push(("restart:rw", ok("read")(r)));
    let w = within(
        "write",
        ok("rwlock")(locks.rwlock("restart:w")).write_opts(opts()),
    )
    .await;
    guards.push(("restart:w", ok("write")(w)));
    let max_before = guards.iter().map(|(_, g)| g.fence()).max().unwrap_or(0);

    within_for(Duration::from_secs(15), "restart", server.restart())
        .await
        .unwrap_or_else(|e| panic!("restart: {e}"));

    // The limit: a second holder gets `restart:a` while the first still trusts its lease.
    let rival = service(backend(&server.url(), Duration::from_secs(1)).await);
    let (_, old) = &guards[0];
    let taken = within("the rival acquires", rival.try_acquire("restart:a")).await;
    let taken = ok("the rival acquires")(taken);
    assert_eq!(old.state(), LeaseState::Held);
    assert!(
        Instant::now() < old.deadline(),
        "the old holder still trusts its lease"
    );
    assert!(
        taken.fence() > old.fence(),
        "only the fence tells them apart"
    );
    // The old holder finds out as soon as it talks to the store.
    let extended = within("extend after the restart", async {
        loop {
            match old.extend(Duration::from_secs(20)).await {
                Err(LockError::Backend { source, .. }) if source.is_transient() => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(extended, Err(LockError::NotOwner { .. })),
        "{extended:?}"
    );
    within("release", taken.release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    for (name, g) in &guards {
        let reason = within(&format!("lost() of {name}"), g.lost()).await;
        assert_eq!(reason, LostReason::NotOwner, "{name}");
    }
    let mut after = Vec::new();
    for name in ["restart:a", "restart:b", "restart:new"] {
        let g = within("acquire after restart", locks.acquire_opts(name, opts())).await;
        after.push(ok("acquire after restart")(g));
    }
    let g = within("permit after restart", pool.acquire_opts(opts())).await;
    after.push(ok("permit after restart")(g));
    let g = within("read after restart", rw.read_opts(opts())).await;
    after.push(ok("read after restart")(g));
    for g in &after {
        assert!(
            g.fence() > max_before,
            "{}: fence {} after the restart <= {max_before} before it",
            g.key(),
            g.fence()
        );
    }
    for (_, g) in guards {
        // The store no longer lists them: "not owner", never a success.
        assert!(matches!(
            g.release().await,
            Err(LockError::NotOwner { .. } | LockError::Lost { .. })
        ));
    }
    for g in after {
        within("release", g.release())
            .await
            .unwrap_or_else(|e| panic!("release: {e}"));
    }
}

/// A resource that accepts a write only with a fence at least as large as every fence it has
/// seen (Kleppmann's fencing).
#[derive(Default)]
struct FencedResource {
    highest: u64,
    writes: Vec<(u64, &'static str)>,
}

impl FencedResource {
    fn write(&mut self, fence: u64, what: &'static str) -> bool {
        if fence < self.highest {
            return false;
        }
        self.highest = fence;
        self.writes.push((fence, what));
        true
    }
}

/// Limit (process pauses need fencing): a holder whose whole process stops — here its runtime
/// thread is blocked, as in a long GC pause or a frozen VM — past its deadline cannot notice
/// anything while it is stopped; the store lets a second holder in, and when the first resumes
/// it may act before its keeper has run. The promise that remains: its deadline has passed
/// (`Instant::now() >= deadline()` is the honest check), a fence-checking resource rejects its
/// write, and `lost()` fires as soon as it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_holder_is_stopped_by_the_fence() {
    let server = private_server(&[]).await;
    let proxy = proxy_for(&server).await;
    let url = proxy.url();
    let rival = service(backend(&server.url(), Duration::from_secs(2)).await);
    let check = direct(&server).await;
    let resource = Arc::new(Mutex::new(FencedResource::default()));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();

    let holder = std::thread::spawn({
        let resource = Arc::clone(&resource);
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
            rt.block_on(async move {
                let locks = service(backend(&url, Duration::from_secs(2)).await);
                let guard = acquire_for(&locks, "paused", Duration::from_millis(500)).await;
                let _ = ready_tx.send((guard.handle(), guard.fence()));
                // The pause: this thread — the holder's runtime, its keeper, its connection —
                // stops until the test lets it go.
                let _ = resume_rx.recv_timeout(Duration::from_secs(10));
                let past_deadline = Instant::now() >= guard.deadline();
                let believed = guard.ensure_held().is_ok();
                let accepted = locked(&resource).write(guard.fence(), "paused holder");
                let lost = tokio::time::timeout(SOON, guard.lost()).await;
                let _ = done_tx.send((past_deadline, believed, accepted, lost));
            });
        }
    });

    let (handle, fence) = within("the holder acquires", ready_rx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    until(SOON, "the store expires the lease", || {
        let mut c = check.clone();
        async move { stored_owner(&mut c, "paused").await.is_none() }
    })
    .await;
    let state_while_paused = handle.state();
    let g = within("the rival acquires", rival.acquire("paused"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(g.fence() > fence);
    assert!(locked(&resource).write(g.fence(), "new holder"));
    let _ = resume_tx.send(());
    let (past_deadline, believed, accepted, lost) = within("the holder resumes", done_rx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    within(
        "the holder thread ends",
        tokio::task::spawn_blocking(move || holder.join()),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
    .unwrap_or_else(|_| panic!("the holder thread panicked"));
    println!(
        "paused holder: state while paused {state_while_paused:?}, ensure_held() after the \
         pause {believed}, write accepted {accepted}; lost() -> {lost:?}"
    );
    assert!(
        past_deadline,
        "the deadline had passed when the holder resumed"
    );
    assert!(
        !believed,
        "ensure_held() must see the passed deadline without waiting for the keeper"
    );
    assert!(
        !accepted,
        "the fence check must reject the paused holder's write"
    );
    assert_eq!(
        locked(&resource).writes,
        vec![(g.fence(), "new holder")],
        "only the new holder wrote"
    );
    assert!(
        matches!(lost, Ok(LostReason::DeadlineExpired | LostReason::NotOwner)),
        "{lost:?}"
    );
    within("release", g.release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// A full or busy server

/// Promise (typed errors): when Redis is out of memory (`maxmemory` with `noeviction`), an
/// acquire — mutex, try-lock, semaphore, read-write — fails at once with `LockError::Backend`
/// carrying Redis's `OOM` error: no panic, no waiter stuck until its wait budget, nothing
/// written. A holder can still release. Once memory is freed, acquiring works again.
///
/// (The server starts with `--maxmemory 2mb`: an empty Redis 7 with a few clients already uses
/// about 1 MB, so the lock taken before the fill needs the headroom. After the fill the limit
/// is lowered to 1 MB, so that the server stays far above it whatever buffers come and go.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_is_a_typed_error_and_nothing_is_stuck() {
    let Rig {
        server: _server,
        proxy: _proxy,
        direct: mut fill,
        locks,
    } = rig(
        &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"],
        Duration::from_secs(2),
    )
    .await;
    let held = within("acquire before the fill", locks.acquire("oom:held")).await;
    let held = ok("acquire before the fill")(held);

    // Fill the server until it refuses writes, then lower the limit well below its usage.
    let filled = fill_to_oom(&mut fill, 10_000)
        .await
        .unwrap_or_else(|e| panic!("filling: {e}"))
        .unwrap_or_else(|| panic!("the server never ran out of memory"));
    let config = fill.clone();
    let set_maxmemory = |limit: &'static str| {
        let mut conn = config.clone();
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CONFIG SET maxmemory {limit}: {e}"));
        }
    };
    set_maxmemory("1mb").await;
    let keys_before = dbsize(&mut fill).await;

    let budget = AcquireOptions::new().wait_timeout(Duration::from_secs(3));
    let started = Instant::now();
    let attempts: Vec<(&str, Result<LockGuard, LockError>)> = vec![
        (
            "acquire",
            within("acquire", locks.acquire_opts("oom:new", budget.clone())).await,
        ),
        (
            "try_acquire",
            within("try_acquire", locks.try_acquire("oom:new")).await,
        ),
        (
            "semaphore",
            within(
                "semaphore",
                ok("semaphore")(locks.semaphore("oom:pool", 3)).acquire_opts(budget.clone()),
            )
            .await,
        ),
        (
            "read",
            within(
                "read",
                ok("rwlock")(locks.rwlock("oom:rw")).read_opts(budget.clone()),
            )
            .await,
        ),
    ];
    let took = started.elapsed();
    for (what, r) in attempts {
        match r {
            Err(LockError::Backend { source, .. }) => {
                assert!(source.to_string().contains("OOM"), "{what}: {source}");
                assert!(!source.is_transient(), "{what}: {source}");
            }
            other => panic!("{what}: expected LockError::Backend (OOM), got {other:?}"),
        }
    }
    // Failed at once, not after the 3 s wait budgets.
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(
        dbsize(&mut fill).await,
        keys_before,
        "a refused acquire wrote something"
    );

    // The write-lock script deletes the (absent) waiting mark before its first write that
    // needs memory; Redis lets a script that has already written go on ("it cannot stop in
    // the middle"), so a writer may still get in. Either way: a typed answer, at once.
    let write = within(
        "write",
        ok("rwlock")(locks.rwlock("oom:rw")).write_opts(budget),
    )
    .await;
    println!("maxmemory: write lock under OOM -> {write:?}");
    match write {
        Ok(g) => ok("release write")(within("release write", g.release()).await),
        Err(LockError::Backend { source, .. }) => {
            assert!(source.to_string().contains("OOM"), "write: {source}");
        }
        Err(e) => panic!("write: {e:?}"),
    }

    // Deleting frees memory: a holder can always give its lease back.
    within("release under OOM", held.release())
        .await
        .unwrap_or_else(|e| panic!("release under OOM: {e}"));
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut fill)
        .await
        .unwrap_or_else(|e| panic!("FLUSHALL: {e}"));
    set_maxmemory("2mb").await;
    let g = within("acquire after freeing memory", locks.acquire("oom:new")).await;
    within("release", ok("acquire after freeing memory")(g).release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("maxmemory: {filled} fill keys, refused acquires took {took:?} in total");
}

/// Open raw TCP connections to the server until it answers "max number of clients reached".
async fn exhaust_clients(server: &RedisServer) -> Vec<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut held = Vec::new();
    loop {
        assert!(held.len() < 64, "the server never refused a client");
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port()))
            .unwrap_or_else(|e| panic!("raw connect: {e}"));
        s.set_read_timeout(Some(SOON))
            .unwrap_or_else(|e| panic!("{e}"));
        s.write_all(b"PING\r\n").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0_u8; 128];
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("raw read: {e}"));
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        if reply.starts_with("+PONG") {
            held.push(s);
        } else if reply.contains("max number of clients") {
            return held;
        } else {
            panic!("unexpected reply {reply:?}");
        }
    }
}

/// How many clients the server has now (`INFO clients`).
async fn connected_clients(conn: &mut MultiplexedConnection) -> usize {
    let n = info_field(conn, "clients", "connected_clients").await;
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Promise (typed errors): when Redis has reached `maxclients`, `RedisBackend::connect` fails
/// within its connect timeout with a typed, transient `RedisBackendError`; a connected backend
/// that loses its connections then gets typed errors (never a hang past its wait budget); both
/// work again once clients leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maxclients_gives_typed_errors_and_recovers() {
    let Rig {
        server,
        proxy,
        direct: mut admin,
        locks,
    } = rig(&["--maxclients", "6"], Duration::from_secs(1)).await;
    let g = within("acquire", locks.acquire("clients:a")).await;
    within("release", ok("acquire")(g).release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let crowd = exhaust_clients(&server).await;
    let started = Instant::now();
    let connect_timeout = Duration::from_secs(2);
    let refused = RedisBackend::builder(proxy.url())
        .connect_timeout(connect_timeout)
        .connect()
        .await;
    let took = started.elapsed();
    println!("maxclients: connect -> {refused:?} after {took:?}");
    match &refused {
        Err(e @ (RedisBackendError::Connect { .. } | RedisBackendError::ConnectTimeout { .. })) => {
            assert!(e.is_transient());
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(took <= connect_timeout + SLACK, "{took:?}");

    // The connected backend loses its connections and must reconnect to a full server: no new
    // connection gets through the proxy until the slots it freed are taken again.
    proxy.refuse_new(true);
    assert!(proxy.drop_connections().await >= 1);
    let ours = 1 + crowd.len();
    until(SOON, "the server notices the dropped clients", || {
        let mut admin = admin.clone();
        async move { connected_clients(&mut admin).await == ours }
    })
    .await;
    let more = exhaust_clients(&server).await;
    assert_eq!(connected_clients(&mut admin).await, 6);
    proxy.refuse_new(false);
    let budget = Duration::from_millis(800);
    let started = Instant::now();
    let r = within(
        "acquire against a full server",
        locks.acquire_opts("clients:b", AcquireOptions::new().wait_timeout(budget)),
    )
    .await;
    let took = started.elapsed();
    println!("maxclients: acquire while reconnecting -> {r:?} after {took:?}");
    match r {
        Err(LockError::AcquireTimeout {
            last_error: Some(_),
            ..
        }) => {}
        Err(LockError::Backend { .. }) => {}
        other => panic!("expected a typed error, got {other:?}"),
    }
    assert!(took <= budget + Duration::from_secs(2), "{took:?}");

    drop(crowd);
    drop(more);
    let g = within(
        "acquire after clients left",
        locks.acquire_opts("clients:b", AcquireOptions::new().wait_timeout(SOON)),
    )
    .await;
    within("release", ok("acquire after clients left")(g).release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let fresh = within(
        "connect after clients left",
        RedisBackend::builder(proxy.url()).connect(),
    )
    .await;
    assert!(fresh.is_ok(), "{fresh:?}");
}

/// Promise (scripts are reloaded): after `SCRIPT FLUSH` at any point, every operation of every
/// primitive keeps working — acquire, extend, inspect, release, semaphore, read-write lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_flush_at_any_point_changes_nothing() {
    let Rig {
        server: _server,
        proxy: _proxy,
        direct: mut admin,
        locks,
    } = rig(&[], Duration::from_secs(2)).await;
    let flush = || {
        let mut admin = admin.clone();
        async move {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("SCRIPT FLUSH: {e}"));
        }
    };
    flush().await;
    let g = ok("acquire")(within("acquire", locks.acquire("flush:m")).await);
    flush().await;
    ok("extend")(within("extend", g.extend(Duration::from_secs(20))).await);
    flush().await;
    let info = ok("inspect")(within("inspect", locks.inspect("flush:m")).await);
    assert_eq!(info.map(|i| i.owner), Some(g.token()));
    flush().await;
    ok("release")(within("release", g.release()).await);
    flush().await;
    let pool = ok("semaphore")(locks.semaphore("flush:pool", 2));
    let p = ok("permit")(within("permit", pool.acquire()).await);
    flush().await;
    assert_eq!(
        ok("holders")(within("holders", pool.holders()).await).len(),
        1
    );
    flush().await;
    ok("release permit")(within("release permit", p.release()).await);
    flush().await;
    let rw = ok("rwlock")(locks.rwlock("flush:rw"));
    let w = ok("write")(within("write", rw.write()).await);
    flush().await;
    assert!(
        ok("inspect rw")(within("inspect rw", rw.inspect()).await)
            .writer
            .is_some()
    );
    flush().await;
    ok("release write")(within("release write", w.release()).await);
    flush().await;
    let r = ok("read")(within("read", rw.read()).await);
    flush().await;
    ok("release read")(within("release read", r.release()).await);
    assert_eq!(
        dbsize(&mut admin).await,
        3,
        "only the three fence counters are left"
    );
}

/// Promise (transient errors are retried): while another client's script keeps Redis busy,
/// our operations get `BUSY`, a *transient* error, and an acquire keeps retrying inside its
/// wait budget; after `SCRIPT KILL` it succeeds within that budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_script_is_transient_and_acquire_succeeds_after_script_kill() {
    // BUSY replies start 100 ms into a script (default: 5 s).
    let server = private_server(&["--busy-reply-threshold", "100"]).await;
    let proxy = proxy_for(&server).await;
    let mut admin = direct(&server).await;
    let redis = backend(&proxy.url(), Duration::from_secs(2)).await;
    let locks = service(redis.clone());
    let g = ok("warm-up")(within("warm-up", locks.acquire("busy:warm")).await);
    ok("warm-up release")(within("warm-up release", g.release()).await);

    let mut looping = direct_with(&server, None).await;
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg("while true do end")
            .arg(0)
            .query_async::<Value>(&mut looping)
            .await
    });
    until(SOON, "Redis answers BUSY", || {
        let mut admin = admin.clone();
        async move {
            let r: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut admin).await;
            matches!(&r, Err(e) if e.code() == Some("BUSY"))
        }
    })
    .await;

    let k = key("busy:lock");
    let err = within(
        "a direct attempt",
        redis.try_acquire(&k, MUTEX, OwnerToken::new(), Duration::from_secs(5)),
    )
    .await
    .err()
    .unwrap_or_else(|| panic!("an attempt succeeded while Redis was busy"));
    assert!(err.is_transient(), "BUSY must be transient: {err}");
    assert!(err.to_string().contains("BUSY"), "{err}");

    let replies_before = proxy.forwarded_bytes(Direction::ServerToClient);
    let budget = Duration::from_secs(5);
    let started = Instant::now();
    let waiting = tokio::spawn({
        let locks = locks.clone();
        async move {
            locks
                .acquire_opts(
                    "busy:lock",
                    AcquireOptions::new()
                        .wait_timeout(budget)
                        .retry(fast_polling()),
                )
                .await
        }
    });
    // At least three more BUSY replies reached the service: it is retrying, not stuck.
    let busy_reply = "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or \
                      SHUTDOWN NOSAVE.\r\n"
        .len() as u64;
    until(SOON, "the acquire retries", || async {
        proxy.forwarded_bytes(Direction::ServerToClient) >= replies_before + 3 * busy_reply
    })
    .await;
    assert!(!waiting.is_finished());

    let _: () = redis::cmd("SCRIPT")
        .arg("KILL")
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("SCRIPT KILL: {e}"));
    let killed = within("the busy script ends", busy)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.is_err(), "{killed:?}");
    let guard = within_for(budget + SLACK, "the acquire", waiting)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("acquire after SCRIPT KILL: {e}"));
    let took = started.elapsed();
    assert!(took < budget, "{took:?}");
    println!("busy: acquired {took:?} after it started, inside its {budget:?} budget");
    within("release", guard.release())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// Soak

/// A small deterministic PRNG (xorshift64*), so a failing soak can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// Whether a holder can still trust its lease *now*: not lost, and its local deadline not
/// passed (read directly, so a keeper task that has not run yet cannot make it look held).
fn trusted(h: &LeaseHandle) -> bool {
    !matches!(h.state(), LeaseState::Lost(_)) && Instant::now() < h.deadline()
}

/// A resource that checks fences (Kleppmann): an operation with a fence lower than the highest
/// seen is rejected; every accepted operation raises the highest seen. A counter guarded by a
/// lock is read and written through it.
#[derive(Default)]
struct Resource {
    max_fence: u64,
    value: u64,
    committed: u64,
    rejected: u64,
}

#[derive(Default)]
struct Checker {
    /// Open critical sections per lock: (kind, handle).
    sections: Mutex<HashMap<String, Vec<(Kind, LeaseHandle)>>>,
    store: Mutex<HashMap<String, Resource>>,
    violations: Mutex<Vec<String>>,
    acquired: AtomicU64,
    committed: AtomicU64,
    lost_mid_section: AtomicU64,
    stale_rejected: AtomicU64,
    abandoned: AtomicU64,
    acquire_errors: Mutex<HashMap<String, u64>>,
    release_results: Mutex<HashMap<String, u64>>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Mutex,
    Permit(usize),
    Read,
    Write,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Checker {
    fn violation(&self, v: String) {
        locked(&self.violations).push(v);
    }

    fn count(map: &Mutex<HashMap<String, u64>>, what: String) {
        *locked(map).entry(what).or_default() += 1;
    }

    /// Enter a critical section: no other holder of `lock` may still trust a conflicting lease.
    fn enter(&self, lock: &str, kind: Kind, me: &LeaseHandle) {
        self.acquired.fetch_add(1, Ordering::Relaxed);
        let mut sections = locked(&self.sections);
        let open = sections.entry(lock.to_owned()).or_default();
        let conflicting: Vec<String> = open
            .iter()
            .filter(|(k, h)| {
                trusted(h)
                    && !matches!(
                        (kind, *k),
                        (Kind::Read, Kind::Read) | (Kind::Permit(_), Kind::Permit(_))
                    )
            })
            .map(|(k, h)| format!("{k:?} fence {}", h.fence()))
            .collect();
        if !conflicting.is_empty() {
            self.violation(format!(
                "{lock}: {kind:?} fence {} entered while {conflicting:?} still trusted",
                me.fence()
            ));
        }
        if let Kind::Permit(permits) = kind {
            let trusted_permits = open.iter().filter(|(_, h)| trusted(h)).count() + 1;
            if trusted_permits > permits {
                self.violation(format!(
                    "{lock}: {trusted_permits} trusted permits of {permits}"
                ));
            }
        }
        open.push((kind, me.clone()));
    }

    fn leave(&self, lock: &str, me: &LeaseHandle) {
        if let Some(open) = locked(&self.sections).get_mut(lock) {
            open.retain(|(_, h)| h.token() != me.token());
        }
    }

    /// One fenced operation on the resource `lock`; `write` is `Some(new value)`. A rejection
    /// of a holder that still trusts its lease is a violation: someone with a newer fence got
    /// in while this lease was valid.
    fn fenced(&self, lock: &str, me: &LeaseHandle, write: Option<u64>) -> Option<u64> {
        let mut store = locked(&self.store);
        let r = store.entry(lock.to_owned()).or_default();
        let fence = me.fence();
        if fence < r.max_fence {
            r.rejected += 1;
            self.stale_rejected.fetch_add(1, Ordering::Relaxed);
            if trusted(me) {
                self.violation(format!(
                    "{lock}: fence {fence} rejected (newest {}) while its lease was trusted",
                    r.max_fence
                ));
            }
            return None;
        }
        r.max_fence = fence;
        if let Some(v) = write {
            r.value = v;
            r.committed += 1;
            self.committed.fetch_add(1, Ordering::Relaxed);
        }
        Some(r.value)
    }
}

struct Soak {
    checker: Arc<Checker>,
    stop: Arc<AtomicBool>,
    opts: AcquireOptions,
}

impl Soak {
    /// A critical section: read the counter, work a little, write it back, all fenced; stop as
    /// soon as the lease is lost. `fenced` is false for shared sections (readers, permits).
    async fn section(&self, lock: &str, kind: Kind, guard: LockGuard, fenced: bool, rng: &mut Rng) {
        let c = &self.checker;
        let me = guard.handle();
        c.enter(lock, kind, &me);
        let lost = me.lost();
        tokio::pin!(lost);
        // Mostly short; now and then longer than the ttl, so that renewal has to keep it.
        let work = if rng.below(16) == 0 {
            rng.millis(100, 1000)
        } else {
            rng.millis(0, 15)
        };
        let finished = tokio::select! {
            _ = &mut lost => false,
            done = async {
                let read = if fenced && me.ensure_held().is_ok() {
                    c.fenced(lock, &me, None)
                } else {
                    None
                };
                tokio::time::sleep(work).await;
                if let (Some(v), true) = (read, me.ensure_held().is_ok()) {
                    c.fenced(lock, &me, Some(v + 1));
                }
                true
            } => done,
        };
        if !finished {
            c.lost_mid_section.fetch_add(1, Ordering::Relaxed);
        }
        c.leave(lock, &me);
        match rng.below(20) {
            // A crash: the lease stays until its ttl.
            0 => {
                c.abandoned.fetch_add(1, Ordering::Relaxed);
                guard.abandon();
            }
            // Dropped: released in the background.
            1 => drop(guard),
            _ => {
                let r = guard.release().await;
                let label = match r {
                    Ok(()) => "ok".to_owned(),
                    Err(LockError::Backend { .. }) => "backend error".to_owned(),
                    Err(LockError::NotOwner { .. }) => "not owner".to_owned(),
                    Err(LockError::Lost { reason, .. }) => format!("lost: {reason}"),
                    Err(e) => {
                        c.violation(format!("{lock}: unexpected release error {e:?}"));
                        "other".to_owned()
                    }
                };
                Checker::count(&c.release_results, label);
            }
        }
    }

    fn acquire_failed(&self, e: LockError) {
        let label = match &e {
            LockError::AcquireTimeout { .. } => "timeout".to_owned(),
            LockError::Contended { .. } => "contended".to_owned(),
            LockError::Backend { source, .. } if source.is_transient() => {
                "transient backend error".to_owned()
            }
            other => {
                self.checker
                    .violation(format!("unexpected acquire error {other:?}"));
                "other".to_owned()
            }
        };
        Checker::count(&self.checker.acquire_errors, label);
    }

    async fn mutex_worker(self: Arc<Self>, locks: LockService, mut rng: Rng) {
        while !self.stop.load(Ordering::Relaxed) {
            let lock = format!("soak:m{}", rng.below(2));
            let r = if rng.below(4) == 0 {
                locks.try_acquire_opts(&lock, self.opts.clone()).await
            } else {
                locks.acquire_opts(&lock, self.opts.clone()).await
            };
            match r {
                Ok(g) => self.section(&lock, Kind::Mutex, g, true, &mut rng).await,
                Err(e) => self.acquire_failed(e),
            }
        }
    }

    async fn permit_worker(self: Arc<Self>, locks: LockService, mut rng: Rng) {
        let permits = 2;
        let lock = "soak:pool";
        let pool = ok("semaphore")(locks.semaphore(lock, permits as u32));
        while !self.stop.load(Ordering::Relaxed) {
            match pool.acquire_opts(self.opts.clone()).await {
                Ok(g) => {
                    self.section(lock, Kind::Permit(permits), g, false, &mut rng)
                        .await
                }
                Err(e) => self.acquire_failed(e),
            }
        }
    }

    async fn rw_worker(self: Arc<Self>, locks: LockService, mut rng: Rng) {
        let lock = "soak:rw";
        let rw = ok("rwlock")(locks.rwlock(lock));
        while !self.stop.load(Ordering::Relaxed) {
            let write = rng.below(3) == 0;
            let r = if write {
                rw.write_opts(self.opts.clone()).await
            } else {
                rw.read_opts(self.opts.clone()).await
            };
            match r {
                Ok(g) if write => self.section(lock, Kind::Write, g, true, &mut rng).await,
                Ok(g) => self.section(lock, Kind::Read, g, false, &mut rng).await,
                Err(e) => self.acquire_failed(e),
            }
        }
    }
}

/// Promise (the whole model under stress): several services — three through the fault proxy,
/// one direct — run mutexes, try-locks, a 2-permit semaphore and a read-write lock for
/// `LOCKS_SOAK_SECS` seconds (default 5) on a `noeviction` server while latency spikes,
/// dropped connections, short stalls and requests held on connections the clients retire (and
/// delivered late) hit the proxied ones at random. Then:
/// - no holder ever entered a critical section while a conflicting holder could still trust
///   its lease (not lost, before its local deadline), and a semaphore never had more trusted
///   holders than permits;
/// - the fence-checking resource never rejected a holder that still trusted its lease, and
///   never lost an update (its counter equals the number of accepted writes);
/// - every acquire error was a timeout, a contention or a transient backend error; every
///   release answered `Ok`, `NotOwner`, `Lost` or a `Backend` error;
/// - after shutdown, every lease is released or expired: no lease, permit, reader, writer or
///   waiting key is left after the ttl (only the long-lived fence counters remain).
///
/// `LOCKS_SOAK_SEED` replays a run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_under_random_faults() {
    let secs: u64 = std::env::var("LOCKS_SOAK_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("LOCKS_SOAK_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    println!("soak: {secs} s, LOCKS_SOAK_SEED={seed}");
    let mut rng = Rng::new(seed);

    // Eviction-safe, as the backend requires (and checks at connect).
    let server = private_server(&["--maxmemory-policy", "noeviction"]).await;
    let proxy = Arc::new(proxy_for(&server).await);
    let mut admin = direct(&server).await;
    let ttl = Duration::from_millis(600);
    let soak = Arc::new(Soak {
        checker: Arc::new(Checker::default()),
        stop: Arc::new(AtomicBool::new(false)),
        opts: AcquireOptions::new()
            .ttl(ttl)
            .wait_timeout(Duration::from_secs(1))
            .retry(
                RetryPolicy::default()
                    .initial_delay(Duration::from_millis(5))
                    .max_delay(Duration::from_millis(50)),
            ),
    });
    let mut services = Vec::new();
    for _ in 0..3 {
        services.push(service(
            backend(&proxy.url(), Duration::from_millis(500)).await,
        ));
    }
    services.push(service(
        backend(&server.url(), Duration::from_millis(500)).await,
    ));

    let mut workers = Vec::new();
    for locks in &services {
        for _ in 0..2 {
            let seeded = Rng::new(rng.next());
            workers.push(tokio::spawn(
                Arc::clone(&soak).mutex_worker(locks.clone(), seeded),
            ));
        }
        let seeded = Rng::new(rng.next());
        workers.push(tokio::spawn(
            Arc::clone(&soak).permit_worker(locks.clone(), seeded),
        ));
        let seeded = Rng::new(rng.next());
        workers.push(tokio::spawn(
            Arc::clone(&soak).rw_worker(locks.clone(), seeded),
        ));
    }

    // Random faults until the end of the soak.
    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults: HashMap<&str, u64> = HashMap::new();
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        let pause = rng.millis(50, 300).min(left);
        match rng.below(5) {
            0 => {
                let dir = [
                    Direction::ClientToServer,
                    Direction::ServerToClient,
                    Direction::Both,
                ][rng.below(3) as usize];
                proxy.set_latency(dir, rng.millis(20, 150));
                tokio::time::sleep(pause).await;
                proxy.set_latency(Direction::Both, Duration::ZERO);
                *faults.entry("latency spike").or_default() += 1;
            }
            1 => {
                proxy.drop_connections().await;
                tokio::time::sleep(pause).await;
                *faults.entry("connections dropped").or_default() += 1;
            }
            2 => {
                // Mostly short; now and then longer than the ttl, so that leases are lost.
                let stall = if rng.below(4) == 0 {
                    rng.millis(300, 900)
                } else {
                    rng.millis(20, 250)
                };
                proxy.stall(Direction::Both);
                tokio::time::sleep(stall.min(left)).await;
                proxy.resume(Direction::Both);
                *faults.entry("stall").or_default() += 1;
            }
            3 => {
                // Requests held on the connections open now, past the response timeout: the
                // clients retire them and carry on over new ones, then the held requests
                // arrive late (the ghost-lease case).
                proxy.stall_open(Direction::ClientToServer);
                tokio::time::sleep(rng.millis(550, 900).min(left)).await;
                proxy.resume(Direction::ClientToServer);
                *faults
                    .entry("requests held on retired connections")
                    .or_default() += 1;
            }
            _ => tokio::time::sleep(pause).await,
        }
    }
    proxy.heal();
    soak.stop.store(true, Ordering::Relaxed);
    for w in workers {
        within("a soak worker stops", w)
            .await
            .unwrap_or_else(|e| panic!("soak worker: {e}"));
    }
    let mut reports = Vec::new();
    for locks in &services {
        reports.push(within("shutdown", locks.shutdown()).await);
    }

    let c = &soak.checker;
    let acquired = c.acquired.load(Ordering::Relaxed);
    println!(
        "soak: {acquired} acquisitions, {} committed writes, {} lost mid-section, {} stale \
         writes rejected by fence, {} abandoned; faults {faults:?}; acquire errors {:?}; \
         releases {:?}; shutdown {reports:?}; proxy accepted {} connections",
        c.committed.load(Ordering::Relaxed),
        c.lost_mid_section.load(Ordering::Relaxed),
        c.stale_rejected.load(Ordering::Relaxed),
        c.abandoned.load(Ordering::Relaxed),
        locked(&c.acquire_errors),
        locked(&c.release_results),
        proxy.accepted(),
    );
    let violations = locked(&c.violations).clone();
    assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
    for (lock, r) in locked(&c.store).iter() {
        assert_eq!(
            r.value, r.committed,
            "seed {seed}: {lock}: lost update ({} rejected)",
            r.rejected
        );
    }
    assert!(
        acquired >= 20 * secs,
        "seed {seed}: only {acquired} acquisitions in {secs} s"
    );

    // Every lease is released or expires by its ttl; only fence counters stay, and the retired
    // tokens of releases that found nothing (no lease: they end two minutes after the release).
    let limit = Instant::now() + ttl + Duration::from_secs(2);
    loop {
        let keys: Vec<String> = admin
            .keys("_lock:*")
            .await
            .unwrap_or_else(|e| panic!("KEYS: {e}"));
        for retired in keys.iter().filter(|k| k.ends_with("}:retired")) {
            let pttl: i64 = admin
                .pttl(retired)
                .await
                .unwrap_or_else(|e| panic!("PTTL: {e}"));
            assert!(
                pttl == -2 || (0..=120_001).contains(&pttl),
                "seed {seed}: {retired} lives {pttl} ms"
            );
        }
        let left: Vec<&String> = keys
            .iter()
            .filter(|k| !k.ends_with("}:fence") && !k.ends_with("}:retired"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < limit,
            "seed {seed}: still there {:?} after the ttl: {left:?}",
            ttl + Duration::from_secs(2)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The soak's checks are not vacuous: on a backend that grants every request (so two holders
/// hold one key at once), the same workers and checker report overlaps at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_checker_catches_a_backend_that_grants_everyone() {
    let soak = Arc::new(Soak {
        checker: Arc::new(Checker::default()),
        stop: Arc::new(AtomicBool::new(false)),
        opts: AcquireOptions::new().ttl(Duration::from_millis(600)),
    });
    let locks = LockService::new(locks_testkit::broken::GrantAllBackend::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let workers: Vec<_> = (0..4)
        .map(|i| tokio::spawn(Arc::clone(&soak).mutex_worker(locks.clone(), Rng::new(i + 1))))
        .collect();
    let checker = Arc::clone(&soak.checker);
    until(SOON, "the checker reports an overlap", || {
        let checker = Arc::clone(&checker);
        async move { !locked(&checker.violations).is_empty() }
    })
    .await;
    soak.stop.store(true, Ordering::Relaxed);
    for w in workers {
        within("a worker stops", w)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let violations = locked(&soak.checker.violations).clone();
    assert!(
        violations.iter().any(|v| v.contains("still trusted")),
        "{violations:#?}"
    );
}
