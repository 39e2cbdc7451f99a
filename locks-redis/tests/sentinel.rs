//! Sentinel (feature `sentinel`) and replica acknowledgement, on a local set of one primary,
//! two replicas and three Sentinels: the backend follows a failover while leases are held and
//! waiters wait; `replica_ack` refuses what the replicas did not get; and without it, a primary
//! that dies before replicating grants a lease twice, which the fence catches.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LeaseState, LockError, LockService};
use locks_redis::redis;
use locks_redis::{RedisBackend, RedisBackendError};
use locks_testkit::redis_sentinel::{MASTER_NAME, RedisSentinel};
use locks_testkit::redis_server::{subscribers, subscribers_reach};
use tokio::sync::Mutex;

const TIMEOUT: Duration = Duration::from_secs(2);
/// Upper bound for anything that takes a failover (down-after, election, reconfiguration).
const FAILOVER_BOUND: Duration = Duration::from_secs(60);

async fn set() -> RedisSentinel {
    let set = RedisSentinel::start()
        .await
        .unwrap_or_else(|e| panic!("sentinel fixture: {e}"));
    eprintln!("sentinel set started in {:?}", set.started_in());
    set
}

async fn backend(set: &RedisSentinel, ack: Option<(u32, Duration)>) -> RedisBackend {
    let mut b = RedisBackend::sentinel_builder(set.sentinel_urls(), MASTER_NAME)
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT);
    if let Some((n, t)) = ack {
        b = b.replica_ack(n, t);
    }
    b.connect()
        .await
        .unwrap_or_else(|e| panic!("connect through the Sentinels: {e}"))
}

fn unique(name: &str) -> String {
    format!("{name}:{}", locks_core::OwnerToken::new())
}

/// The `RedisBackendError` somewhere in `e`'s source chain.
fn redis_source(e: &LockError) -> Option<&RedisBackendError> {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(found) = s.downcast_ref::<RedisBackendError>() {
            return Some(found);
        }
        source = s.source();
    }
    None
}

/// A store that accepts a write only with a fence at least as high as every fence it saw.
#[derive(Default)]
struct FencedStore {
    highest: u64,
    writes: Vec<&'static str>,
}

impl FencedStore {
    fn write(&mut self, fence: u64, who: &'static str) -> bool {
        if fence < self.highest {
            return false;
        }
        self.highest = fence;
        self.writes.push(who);
        true
    }
}

/// With `replica_ack(1, ..)`: a Sentinel failover while one lease is held and three waiters
/// wait. Never two holders; fences keep increasing; the holder either stays held (its lease
/// was on the promoted replica) or reports lost; every waiter gets the lease in the end, from
/// the new primary (the backend followed it and resubscribed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover_with_leases_held_and_waiters_waiting() {
    let set = set().await;
    let locks = LockService::new(backend(&set, Some((1, Duration::from_millis(500)))).await)
        .unwrap_or_else(|e| panic!("{e}"));
    let key = unique("sentinel-failover");
    let opts = AcquireOptions::new()
        .ttl(Duration::from_secs(3))
        .wait_timeout(FAILOVER_BOUND);
    let inside = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));

    let holder = locks
        .acquire_opts(&key, opts.clone())
        .await
        .unwrap_or_else(|e| panic!("first acquire: {e}"));
    inside.fetch_add(1, Ordering::SeqCst);
    fences.lock().await.push(holder.fence());

    let mut waiters = Vec::new();
    for _ in 0..3 {
        let (locks, key, opts) = (locks.clone(), key.clone(), opts.clone());
        let (inside, fences) = (Arc::clone(&inside), Arc::clone(&fences));
        waiters.push(tokio::spawn(async move {
            let guard = locks.acquire_opts(&key, opts).await?;
            let others = inside.fetch_add(1, Ordering::SeqCst);
            fences.lock().await.push(guard.fence());
            tokio::task::yield_now().await;
            inside.fetch_sub(1, Ordering::SeqCst);
            let released = guard.release().await;
            Ok::<_, LockError>((others, released))
        }));
    }

    let old = set.primary().await.unwrap_or_else(|e| panic!("{e}"));
    let new = set.failover().await.unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(old, new);

    // The acknowledged lease survived on the promoted replica: the holder still holds it.
    // (Were it lost, its state would say so before anyone else got in: the waiters count.)
    let held = tokio::time::timeout(FAILOVER_BOUND, async {
        loop {
            match holder.is_held().await {
                Ok(held) => return held,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the backend never reached the new primary"));
    assert!(held, "the acknowledged lease was lost in the failover");
    assert!(
        !matches!(holder.state(), LeaseState::Lost(_)),
        "{:?}",
        holder.state()
    );
    inside.fetch_sub(1, Ordering::SeqCst);
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release after the failover: {e}"));

    for w in waiters {
        let (others, released) = w
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("a waiter did not get the lease: {e}"));
        assert_eq!(others, 0, "two holders at once");
        released.unwrap_or_else(|e| panic!("release: {e}"));
    }
    let fences = fences.lock().await.clone();
    assert_eq!(fences.len(), 4);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences must keep increasing: {fences:?}"
    );
}

/// `replica_ack(2, ..)` with one replica paused: a new acquire is given back and fails with
/// `NotReplicated` (nothing stays held), and a renewal of a held lease leaves it `Unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_ack_gives_back_unacknowledged_acquires_and_leaves_renewals_unknown() {
    let set = set().await;
    let b = backend(&set, Some((2, Duration::from_millis(200)))).await;
    let locks = LockService::new(b).unwrap_or_else(|e| panic!("{e}"));
    let held = unique("ack-held");
    let guard = locks
        .acquire_opts(
            &held,
            AcquireOptions::new()
                .ttl(Duration::from_secs(20))
                .auto_renew(false),
        )
        .await
        .unwrap_or_else(|e| panic!("acquire with both replicas up: {e}"));

    set.pause(2).await.unwrap_or_else(|e| panic!("{e}"));
    let refused = unique("ack-refused");
    let attempt = locks.try_acquire(&refused).await;
    let renewal = guard.extend(Duration::from_secs(20)).await;
    let state = guard.state();
    set.resume(2).await.unwrap_or_else(|e| panic!("{e}"));

    let e = attempt
        .err()
        .unwrap_or_else(|| panic!("an unacknowledged acquire succeeded"));
    assert!(
        matches!(
            redis_source(&e),
            Some(RedisBackendError::NotReplicated { wanted: 2, .. })
        ),
        "{e:?}"
    );
    let info = locks
        .inspect(&refused)
        .await
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    assert!(
        info.is_none(),
        "the unacknowledged lease was not given back: {info:?}"
    );

    let e = renewal
        .err()
        .unwrap_or_else(|| panic!("an unacknowledged renewal succeeded"));
    assert!(redis_source(&e).is_some(), "{e:?}");
    assert_eq!(state, LeaseState::Unknown);
    // Once the replica is back, renewals are acknowledged again.
    guard
        .extend(Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("renewal with both replicas up: {e}"));
    assert_eq!(guard.state(), LeaseState::Held);
}

/// Without replica acknowledgement, the documented window is real: the primary grants a lease,
/// dies before its replicas got it, a replica is promoted, and a second caller gets the same
/// lease while the first still believes it holds it. The fence protects a fenced resource:
/// the second holder's fence is higher, and the store rejects the first holder's late write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ack_a_primary_dying_before_replicating_grants_twice_and_the_fence_protects() {
    let mut set = set().await;
    let first = LockService::new(backend(&set, None).await).unwrap_or_else(|e| panic!("{e}"));
    let key = unique("double-grant");
    let opts = AcquireOptions::new()
        .ttl(Duration::from_secs(30))
        .wait_timeout(FAILOVER_BOUND);

    // The replicas hear nothing of the grant: the primary dies with it.
    set.hold_replication();
    let a = first
        .acquire_opts(&key, opts.clone())
        .await
        .unwrap_or_else(|e| panic!("first acquire: {e}"));
    set.kill(0).await.unwrap_or_else(|e| panic!("{e}"));
    set.drop_held_replication().await;
    set.release_replication();
    set.wait_for_new_primary(0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let second = LockService::new(backend(&set, None).await).unwrap_or_else(|e| panic!("{e}"));
    let b = second
        .acquire_opts(&key, opts)
        .await
        .unwrap_or_else(|e| panic!("second acquire: {e}"));
    // Two holders: the first has not noticed anything (its deadline is 30 s away).
    assert_eq!(a.state(), LeaseState::Held);
    assert!(
        b.fence() > a.fence(),
        "fences are seeded from the server clock: {} then {}",
        a.fence(),
        b.fence()
    );
    let mut store = FencedStore::default();
    assert!(store.write(b.fence(), "second"));
    assert!(
        !store.write(a.fence(), "first"),
        "the stale holder's write got in"
    );
    assert_eq!(store.writes, ["second"]);
    a.abandon();
    b.release().await.unwrap_or_else(|e| panic!("{e}"));
}

/// After the primary crashes and a replica is promoted, the backend's release subscription
/// follows: a waiter that only a notification can wake in time (it polls every 60 s)
/// subscribes on the new primary and is woken by the release there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_resume_on_the_new_primary() {
    let mut set = set().await;
    let b = backend(&set, None).await;
    let locks = LockService::new(b.clone()).unwrap_or_else(|e| panic!("{e}"));
    // The subscription is connected (a first waiter round trip) before the crash.
    let warm = unique("warm");
    drop(locks.acquire(&warm).await.unwrap_or_else(|e| panic!("{e}")));
    let old = set.primary().await.unwrap_or_else(|e| panic!("{e}"));
    set.kill(old).await.unwrap_or_else(|e| panic!("{e}"));
    let new = set
        .wait_for_new_primary(old)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let key = unique("resubscribed");
    let holder = tokio::time::timeout(FAILOVER_BOUND, async {
        loop {
            match locks.try_acquire(&key).await {
                Ok(guard) => return guard,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no acquire reached the new primary"));
    // `listen` fails fast while the subscription reconnects, and returns once the channel's
    // SUBSCRIBE is confirmed on the new connection: wait for that.
    let lock_key = locks_core::LockKey::new("_lock:", &key).unwrap_or_else(|e| panic!("{e}"));
    let probe = tokio::time::timeout(FAILOVER_BOUND, async {
        loop {
            match locks_core::LockBackend::listen(&b, &lock_key).await {
                Ok(listener) => return listener,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the release subscription never came back"));
    let waiter = {
        let (locks, key) = (locks.clone(), key.clone());
        tokio::spawn(async move {
            locks
                .acquire_opts(&key, locks_testkit::redis_server::notification_only())
                .await
        })
    };
    let channel = format!("_lock:{{{key}}}:released");
    // The primary named *now*: under load the Sentinels may fail over once more (the new
    // primary missing its pings for DOWN_AFTER), and the subscription must follow that too.
    let primary = subscribed_primary(&set, &channel)
        .await
        .unwrap_or_else(|e| panic!("the subscription did not move to the new primary: {e}"));
    assert_ne!(primary, old, "the killed node is named the primary");
    eprintln!("first new primary: node {new}; subscribed on node {primary}");
    let mut conn = set
        .connection(primary)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(probe);
    holder.release().await.unwrap_or_else(|e| panic!("{e}"));
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap_or_else(|_| panic!("the release on the new primary did not wake the waiter"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("waiter: {e}"));
    woken.release().await.unwrap_or_else(|e| panic!("{e}"));
    let _: i64 = locks_redis::redis::cmd("DBSIZE")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Polls until the primary the Sentinels name now has a subscriber on `channel`, for at most
/// [`FAILOVER_BOUND`]; returns that node. Else what each node reports (role, subscribers).
async fn subscribed_primary(set: &RedisSentinel, channel: &str) -> Result<usize, String> {
    let end = tokio::time::Instant::now() + FAILOVER_BOUND;
    loop {
        if let Ok(primary) = set.primary().await
            && let Ok(conn) = set.connection(primary).await
            && subscribers_reach(&conn, channel, Duration::from_millis(100), |n| n >= 1).await
        {
            return Ok(primary);
        }
        if tokio::time::Instant::now() >= end {
            break;
        }
        // Bounded polling of the servers' state (a failed query returns at once).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut nodes = Vec::new();
    for node in 0..set.nodes().len() {
        let seen = match set.connection(node).await {
            Ok(mut conn) => {
                let count = subscribers(&mut conn, channel).await;
                let role: redis::RedisResult<Vec<redis::Value>> =
                    redis::cmd("ROLE").query_async(&mut conn).await;
                let role = role
                    .ok()
                    .and_then(|r| r.into_iter().next())
                    .and_then(|r| redis::from_redis_value::<String>(r).ok());
                format!("node {node}: role {role:?}, subscribers {count:?}")
            }
            Err(e) => format!("node {node}: {e}"),
        };
        nodes.push(seen);
    }
    Err(format!(
        "the Sentinels name {:?}; {}",
        set.primary().await,
        nodes.join("; ")
    ))
}

/// Data nodes with a password: the Sentinel URLs carry none (the Sentinels need none), the
/// data nodes' credentials come from `sentinel_node_auth`; without them, `connect` fails with
/// the typed authentication error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_node_credentials_are_separate_from_the_sentinels() {
    let set = RedisSentinel::start_with_password("n0desecret")
        .await
        .unwrap_or_else(|e| panic!("sentinel fixture: {e}"));
    let refused = RedisBackend::sentinel_builder(set.sentinel_urls(), MASTER_NAME)
        .connect_timeout(TIMEOUT)
        .connect()
        .await;
    assert!(
        matches!(refused, Err(RedisBackendError::Authentication { .. })),
        "{refused:?}"
    );
    let b = RedisBackend::sentinel_builder(set.sentinel_urls(), MASTER_NAME)
        .sentinel_node_auth(None, "n0desecret")
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect with the node password: {e}"));
    let locks = LockService::new(b).unwrap_or_else(|e| panic!("{e}"));
    let guard = locks
        .acquire(&unique("authenticated"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    guard.release().await.unwrap_or_else(|e| panic!("{e}"));
}
