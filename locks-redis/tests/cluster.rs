//! Redis Cluster (feature `cluster`): the conformance, primitives and adapter suites on a local
//! cluster of 3 primaries and 3 replicas, a slot migrated while its key is contended, and a
//! primary failing over while leases are held and waiters wait.
//!
//! Each test starts its own cluster (nextest runs every test in its own process); the suites
//! share one cluster and run their cases a few at a time, each on a fresh backend.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use locks_core::{AcquireOptions, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::{self, cluster_async::ClusterConnection};
use locks_testkit::conformance::adapters::AdaptedHarness;
use locks_testkit::conformance::{BackendHarness, Case, MUTEX, SUITES};
use locks_testkit::redis_cluster::RedisCluster;

mod common;

/// The connect and response timeouts of the backends under test.
const TIMEOUT: Duration = Duration::from_secs(2);

async fn cluster() -> RedisCluster {
    let started = RedisCluster::start()
        .await
        .unwrap_or_else(|e| panic!("redis cluster fixture: {e}"));
    eprintln!("cluster of 6 nodes started in {:?}", started.started_in());
    started
}

/// A backend on `cluster`.
async fn backend(cluster: &RedisCluster) -> RedisBackend {
    RedisBackend::cluster_builder(cluster.urls())
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}"))
}

/// A raw cluster connection, to change the store behind a backend's back.
async fn raw(cluster: &RedisCluster) -> ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.urls())
        .unwrap_or_else(|e| panic!("cluster client: {e}"))
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw cluster connection: {e}"))
}

async fn harness(cluster: &RedisCluster) -> BackendHarness {
    let backend = backend(cluster).await;
    assert!(backend.is_cluster());
    common::harness_over(backend, raw(cluster).await)
}

/// Runs every case of every suite, and the mutex suite through a 1-permit semaphore and a
/// write lock, on one cluster, a few cases at a time; fails with the list of failed cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_passes_on_a_cluster() {
    let cluster = cluster().await;
    let began = Instant::now();
    // (suite, adapter, case)
    let mut cases: Vec<(&'static str, &'static str, &'static Case)> = Vec::new();
    for suite in SUITES {
        for case in suite.cases {
            cases.push((suite.name, "direct", case));
        }
    }
    for adapter in ["semaphore_as_mutex", "write_lock_as_mutex"] {
        for case in MUTEX.cases {
            cases.push(("mutex", adapter, case));
        }
    }
    let total = cases.len();
    let cluster = &cluster;
    let failures: Vec<String> = futures::stream::iter(cases)
        .map(|(suite, adapter, case)| async move {
            let h = harness(cluster).await;
            let suite_ref = SUITES
                .iter()
                .find(|s| s.name == suite)
                .unwrap_or_else(|| panic!("suite {suite}"));
            let run = async {
                match adapter {
                    "direct" => suite_ref.run(case.name, Box::new(h)).await,
                    "semaphore_as_mutex" => {
                        suite_ref
                            .run(case.name, Box::new(AdaptedHarness::semaphore(h)))
                            .await
                    }
                    _ => {
                        suite_ref
                            .run(case.name, Box::new(AdaptedHarness::write_lock(h)))
                            .await
                    }
                }
            };
            match AssertUnwindSafe(run).catch_unwind().await {
                Ok(()) => None,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    Some(format!("{suite}/{adapter}/{}: {why}", case.name))
                }
            }
        })
        .buffer_unordered(4)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    eprintln!("{total} cases on the cluster in {:?}", began.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed on the cluster:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `workers` tasks take and give back the lock `key` in a loop until `stop`; each checks that
/// it is alone inside. Returns (cycles, the first error any of them got).
async fn contend(
    locks: &LockService,
    key: &str,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> (usize, Option<String>) {
    let inside = Arc::new(AtomicUsize::new(0));
    let cycles = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (locks, key) = (locks.clone(), key.to_owned());
        let (inside, cycles, stop) = (Arc::clone(&inside), Arc::clone(&cycles), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let opts = AcquireOptions::new()
                .ttl(Duration::from_secs(5))
                .wait_timeout(Duration::from_secs(20));
            while !stop.load(Ordering::SeqCst) {
                let guard = locks
                    .acquire_opts(&key, opts.clone())
                    .await
                    .map_err(|e| format!("acquire: {e}"))?;
                if inside.fetch_add(1, Ordering::SeqCst) != 0 {
                    return Err("two holders at once".to_owned());
                }
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.map_err(|e| format!("release: {e}"))?;
                cycles.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), String>(())
        }));
    }
    let mut first_error = None;
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string()).and_then(|r| r);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    (cycles.load(Ordering::SeqCst), first_error)
}

/// The slot of a contended key moves to another primary (`CLUSTER SETSLOT` migration, keys
/// moved with `MIGRATE` while the slot is half-way): no error reaches the callers, and mutual
/// exclusion holds throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_contended_slot_is_invisible_to_callers() {
    let cluster = cluster().await;
    let locks = LockService::new(backend(&cluster).await).unwrap_or_else(|e| panic!("{e}"));
    let name = format!("reshard:{}", locks_core::OwnerToken::new());
    let slot = cluster
        .slot_of(&format!("_lock:{{{name}}}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let from = cluster
        .primary_of_slot(slot)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let to = (from + 1) % locks_testkit::redis_cluster::PRIMARIES;
    let stop = Arc::new(AtomicBool::new(false));
    let work = contend(&locks, &name, 4, Arc::clone(&stop));
    let reshard = async {
        cluster
            .begin_migration(slot, from, to)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut moved = 0;
        for _ in 0..3 {
            moved += cluster
                .move_keys(slot, from, to)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            tokio::task::yield_now().await;
        }
        cluster
            .finish_migration(slot, from, to)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Some more rounds on the new owner.
        let owner = cluster
            .primary_of_slot(slot)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        stop.store(true, Ordering::SeqCst);
        (moved, owner)
    };
    let ((cycles, error), (moved, owner)) = tokio::join!(work, reshard);
    assert_eq!(owner, to, "the slot did not move");
    assert!(error.is_none(), "a caller saw: {error:?}");
    eprintln!("{cycles} lock cycles while the slot moved ({moved} keys migrated)");
    assert!(cycles > 0);
}

/// With `replica_ack(1, ..)`, the primary of a held, contended key fails over to its replica
/// (`CLUSTER FAILOVER`): the holder still holds it, nobody else got in meanwhile, and every
/// waiter gets it afterwards with a higher fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_keeps_acknowledged_leases_and_exclusion() {
    let cluster = cluster().await;
    let ContendedKey {
        locks: _,
        name: _,
        holder,
        holding,
        waiters,
        slot: _,
        primary,
    } = ContendedKey::start(&cluster, "failover", Duration::from_secs(3)).await;
    let promoted = cluster
        .failover(primary)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(promoted, primary);
    let held = holder
        .is_held()
        .await
        .unwrap_or_else(|e| panic!("inspect after the failover: {e}"));
    assert!(held, "the acknowledged lease was lost in the failover");
    holding.store(false, Ordering::SeqCst);
    let first = holder.fence();
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    let mut fences = waiters_fences(waiters, first).await;
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 3, "fences repeat: {fences:?}");
}

/// A release wakes a waiter through sharded pub/sub: the waiter's `SSUBSCRIBE` is on the
/// primary that owns the key's slot (`PUBSUB SHARDNUMSUB` there), and with a poll interval of
/// 60 s only the release's `SPUBLISH` can wake it within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_a_waiter_through_its_shard() {
    let cluster = cluster().await;
    let locks = LockService::new(backend(&cluster).await).unwrap_or_else(|e| panic!("{e}"));
    let name = format!("shard-wake:{}", locks_core::OwnerToken::new());
    let holder = locks
        .acquire(&name)
        .await
        .unwrap_or_else(|e| panic!("acquire: {e}"));
    let waiter = {
        let (locks, name) = (locks.clone(), name.clone());
        tokio::spawn(async move {
            locks
                .acquire_opts(&name, locks_testkit::redis_server::notification_only())
                .await
        })
    };
    let channel = format!("_lock:{{{name}}}:released");
    let slot = cluster
        .slot_of(&channel)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let owner = cluster
        .primary_of_slot(slot)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut conn = cluster
        .connection(owner)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let subscribed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (_, n): (String, i64) = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(&channel)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("PUBSUB SHARDNUMSUB: {e}"));
            if n >= 1 {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        subscribed.is_ok(),
        "the waiter never SSUBSCRIBEd on node {owner}, the owner of slot {slot}"
    );
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    let woken = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap_or_else(|_| panic!("the release did not wake the waiter (no SPUBLISH heard)"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("waiter: {e}"));
    woken
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// The eviction-policy check reads every primary of the cluster: one primary with
/// `volatile-lru` (not the one a plain `CONFIG GET` happens to reach) is enough for `connect`
/// to refuse the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refuses_a_cluster_with_one_node_that_may_evict() {
    let cluster = cluster().await;
    let last = locks_testkit::redis_cluster::PRIMARIES - 1;
    let mut conn = cluster
        .connection(last)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("volatile-lru")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET: {e}"));
    let refused = RedisBackend::cluster_builder(cluster.urls())
        .connect_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .connect()
        .await;
    let port = cluster.nodes()[last].port();
    match refused {
        Err(locks_redis::RedisBackendError::EvictionPolicy { policy, .. }) => assert!(
            policy.contains("volatile-lru") && policy.contains(&port.to_string()),
            "{policy}"
        ),
        other => panic!("a node with volatile-lru was accepted: {other:?}"),
    }
    // With every node on `noeviction` again, it connects.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("noeviction")
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CONFIG SET: {e}"));
    backend(&cluster).await;
}

/// With `replica_ack(1, ..)`, the primary of a held, contended key crashes (SIGKILL): its
/// replica takes over after the node timeout and an election. The holder still holds the lease
/// on the new primary and nobody gets in meanwhile — not even after the holder released it,
/// while the new primary has no replica to acknowledge a grant; once the crashed node is back
/// as its replica, every waiter gets the lease with a higher fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_primary_keeps_acknowledged_leases_and_exclusion() {
    let mut cluster = cluster().await;
    let ContendedKey {
        locks,
        name,
        holder,
        holding,
        waiters,
        slot,
        primary,
    } = ContendedKey::start(&cluster, "crash", Duration::from_secs(10)).await;
    cluster
        .kill(primary)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    cluster.wait_ok().await.unwrap_or_else(|e| panic!("{e}"));
    let held = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match holder.is_held().await {
                Ok(held) => return held,
                Err(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the backend never reached the promoted replica"));
    assert!(
        held,
        "the acknowledged lease was lost with the crashed primary"
    );
    let first = holder.fence();
    // The promoted replica has no replica of its own: no grant can be acknowledged there (a
    // key of another slot it now owns).
    let promoted = cluster
        .primary_of_slot(slot)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut other = 0;
    let other_name = loop {
        let candidate = format!("{name}:{other}");
        let s = cluster
            .slot_of(&format!("_lock:{{{candidate}}}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if s != slot
            && cluster
                .primary_of_slot(s)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                == promoted
        {
            break candidate;
        }
        other += 1;
    };
    let unacknowledged = locks
        .try_acquire(&other_name)
        .await
        .err()
        .unwrap_or_else(|| panic!("a grant without any replica was acknowledged"));
    assert!(
        format!("{unacknowledged:?}").contains("NotReplicated"),
        "{unacknowledged:?}"
    );
    holding.store(false, Ordering::SeqCst);
    holder
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    cluster
        .restart(primary)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    waiters_fences(waiters, first).await;
}

/// The function library is refused on a cluster (its functions announce releases with
/// `PUBLISH`, which sharded waiters would not hear), with a typed error before connecting.
#[tokio::test]
async fn the_function_library_is_refused_on_a_cluster() {
    let refused = RedisBackend::cluster_builder(["redis://127.0.0.1:1"])
        .function_library(true)
        .connect()
        .await;
    assert!(
        matches!(
            refused,
            Err(locks_redis::RedisBackendError::InvalidOption {
                option: "function_library",
                ..
            })
        ),
        "{refused:?}"
    );
}

/// A held key with 3 waiters, on a backend with `replica_ack(1, 500ms)`: the failover tests'
/// starting point. `holding` is true until the test releases the holder; each waiter returns
/// whether it got in while that was true, and its fence.
struct ContendedKey {
    locks: LockService,
    name: String,
    holder: locks_core::LockGuard,
    holding: Arc<AtomicBool>,
    waiters: Vec<tokio::task::JoinHandle<Result<(bool, u64), locks_core::LockError>>>,
    /// The key's slot and the node that was its primary when the waiters started.
    slot: u16,
    primary: usize,
}

impl ContendedKey {
    async fn start(cluster: &RedisCluster, prefix: &str, ttl: Duration) -> ContendedKey {
        let backend = RedisBackend::cluster_builder(cluster.urls())
            .connect_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .replica_ack(1, Duration::from_millis(500))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let locks = LockService::new(backend).unwrap_or_else(|e| panic!("{e}"));
        let name = format!("{prefix}:{}", locks_core::OwnerToken::new());
        let opts = AcquireOptions::new()
            .ttl(ttl)
            .wait_timeout(Duration::from_secs(40));
        let holder = locks
            .acquire_opts(&name, opts.clone())
            .await
            .unwrap_or_else(|e| panic!("acquire: {e}"));
        let holding = Arc::new(AtomicBool::new(true));
        let mut waiters = Vec::new();
        for _ in 0..3 {
            let (locks, name, opts, holding) = (
                locks.clone(),
                name.clone(),
                opts.clone(),
                Arc::clone(&holding),
            );
            waiters.push(tokio::spawn(async move {
                let guard = locks.acquire_opts(&name, opts).await?;
                let overlapped = holding.load(Ordering::SeqCst);
                let fence = guard.fence();
                guard.release().await?;
                Ok::<_, locks_core::LockError>((overlapped, fence))
            }));
        }
        let slot = cluster
            .slot_of(&format!("_lock:{{{name}}}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let primary = cluster
            .primary_of_slot(slot)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        ContendedKey {
            locks,
            name,
            holder,
            holding,
            waiters,
            slot,
            primary,
        }
    }
}

/// Every waiter's fence; each got in only after the holder let go, with a fence above `first`.
async fn waiters_fences(
    waiters: Vec<tokio::task::JoinHandle<Result<(bool, u64), locks_core::LockError>>>,
    first: u64,
) -> Vec<u64> {
    let mut fences = Vec::new();
    for w in waiters {
        let (overlapped, fence) = w
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("a waiter: {e}"));
        assert!(!overlapped, "a waiter got in while the holder held");
        assert!(fence > first, "fence {fence} after {first}");
        fences.push(fence);
    }
    fences
}
