//! Fair mode on a real Redis server (a private one from the testkit fixture): strict FIFO across
//! separate backends (connections and subscriptions of their own, as separate processes would
//! have) with direct hand-off, a crashed waiter skipped once its place lapsed, and the
//! provisional grant to a waiter that does not claim it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, ListQuery, LockKind, Operation, Outcome};
use locks_core::{
    AcquireResult, BackendError, FAIR_WAITER_TTL, LeaseKind, LockBackend, LockService, OwnerToken,
};
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisKeys};

mod common;

use common::{backend, key, private_server, raw, unique, within};

const FAIR: LeaseKind = LeaseKind::FairMutex;

/// Counts the fair `try_acquire`s the store answered `Acquired` (a lease taken by asking).
#[derive(Debug)]
struct Counting {
    inner: RedisBackend,
    acquired: AtomicU64,
}

#[async_trait]
impl Decorator for Counting {
    fn inner(&self) -> &dyn LockBackend {
        &self.inner
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let out = op.send(&self.inner).await;
        if let (Action::TryAcquire { .. }, Ok(Outcome::Acquire(AcquireResult::Acquired(_)))) =
            (op.action, &out)
        {
            self.acquired.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
}
locks_core::impl_lock_backend!(Counting);

fn fair_service(backend: Arc<dyn LockBackend>) -> LockService {
    LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(5))
        .fair(true)
        .build()
        .expect("service")
}

/// The tokens queued for `name`, head first.
async fn queue(conn: &mut MultiplexedConnection, name: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(RedisKeys::new(&key(name)).fair_queue)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .expect("ZRANGE")
}

/// Poll the store (a bounded loop) until `name`'s queue has `n` entries.
async fn until_queued(conn: &mut MultiplexedConnection, name: &str, n: usize) {
    within("queued", async {
        while queue(conn, name).await.len() != n {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// Five backends on one server (each with its own connection and subscription): a holder and
/// four waiters that arrive one after the other, each queued in the store before the next
/// starts. They get the lock in arrival order, each handed the lease by its predecessor's
/// release: none of them is ever answered `Acquired` by the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_fifo_across_processes_with_direct_hand_off() {
    let server = private_server().await;
    let mut conn = raw(&server).await;
    let name = unique("fair-fifo");
    let holder_svc = fair_service(Arc::new(backend(&server).await));
    let holder = holder_svc.acquire(&name).await.expect("holder");
    let order = Arc::new(Mutex::new(Vec::new()));
    let (mut counters, mut tasks) = (Vec::new(), Vec::new());
    for i in 1..=4 {
        let counting = Arc::new(Counting {
            inner: backend(&server).await,
            acquired: AtomicU64::new(0),
        });
        counters.push(Arc::clone(&counting));
        let svc = fair_service(counting);
        let (lock, order) = (name.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let guard = svc.acquire(&lock).await.expect("waiter");
            order.lock().expect("order").push((i, guard.fence()));
            guard.release().await.expect("release");
        }));
        until_queued(&mut conn, &name, i).await;
    }
    holder.release().await.expect("release");
    for t in tasks {
        within("waiter", t).await.expect("task");
    }
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    assert!(order.windows(2).all(|w| w[0].1 < w[1].1), "{order:?}");
    for (i, c) in counters.iter().enumerate() {
        assert_eq!(
            c.acquired.load(Ordering::SeqCst),
            0,
            "waiter {} asked the store for its lease",
            i + 1
        );
    }
    assert!(queue(&mut conn, &name).await.is_empty());
    assert!(!holder_svc.is_locked(&name).await.expect("inspect"));
}

/// A queued waiter that crashed loses its place once it lapsed (its expiry moved into the
/// past here, as if the waiter ttl had passed without it asking again): the release hands the
/// lease to the live waiter behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_waiter_is_skipped_once_its_place_lapsed() {
    let server = private_server().await;
    let mut conn = raw(&server).await;
    let name = unique("fair-crashed");
    let k = key(&name);
    let store = backend(&server).await;
    let svc = fair_service(Arc::new(store.clone()));
    let holder = svc.acquire(&name).await.expect("holder");
    let crashed = OwnerToken::new();
    let answer = store
        .try_acquire(&k, FAIR, crashed, Duration::from_secs(30))
        .await
        .expect("queue");
    assert!(matches!(answer, AcquireResult::Held { .. }), "{answer:?}");
    let waiter_svc = fair_service(Arc::new(backend(&server).await));
    let waiter = {
        let name = name.clone();
        tokio::spawn(async move { waiter_svc.acquire(&name).await })
    };
    until_queued(&mut conn, &name, 2).await;
    let live = queue(&mut conn, &name).await[1].clone();
    // The crashed waiter's place lapses (one ms ago, by the server's clock).
    let now_ms = common::server_us(&mut conn).await / 1000;
    let _: i64 = redis::cmd("ZADD")
        .arg(RedisKeys::new(&k).fair_expiry)
        .arg(now_ms - 1)
        .arg(crashed.to_hyphenated())
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    holder.release().await.expect("release");
    let guard = within("waiter", waiter)
        .await
        .expect("task")
        .expect("the live waiter");
    assert_eq!(guard.token().to_hyphenated(), live);
    assert!(queue(&mut conn, &name).await.is_empty());
    guard.release().await.expect("release");
}

/// A release hands the lease to the head of the queue only provisionally: for the ttl it
/// asked for but at most the waiter ttl, so a waiter that crashed while queued blocks the lock
/// for no longer than that. Its holder's renewal (here the token's own acquire, as a claim)
/// gives it the full ttl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_provisional_until_claimed() {
    let server = private_server().await;
    let mut conn = raw(&server).await;
    let name = unique("fair-provisional");
    let k = key(&name);
    let store = backend(&server).await;
    let svc = fair_service(Arc::new(store.clone()));
    let holder = svc.acquire(&name).await.expect("holder");
    let head = OwnerToken::new();
    let ttl = Duration::from_secs(60);
    store.try_acquire(&k, FAIR, head, ttl).await.expect("queue");
    holder.release().await.expect("release");
    let lease = store.holders(&k, FAIR).await.expect("holders").leases;
    assert_eq!(lease[0].owner, head);
    let waiter_ms = u64::try_from(FAIR_WAITER_TTL.as_millis()).expect("ms");
    let pttl: u64 = redis::cmd("PTTL")
        .arg(RedisKeys::new(&k).fair)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(pttl <= waiter_ms, "granted for {pttl} ms");
    let claimed = store.try_acquire(&k, FAIR, head, ttl).await.expect("claim");
    assert_eq!(
        claimed,
        AcquireResult::Acquired(locks_core::Lease::new(lease[0].fence))
    );
    let pttl: u64 = redis::cmd("PTTL")
        .arg(RedisKeys::new(&k).fair)
        .query_async(&mut conn)
        .await
        .expect("PTTL");
    assert!(pttl > waiter_ms, "claimed for {pttl} ms");
    // Listed once, as a fair mutex (its queue names are not locks of their own).
    let query = ListQuery::new("_lock:")
        .expect("query")
        .names_starting_with(name.as_str());
    let page = store.list(&query).await.expect("list");
    assert_eq!(page.locks.len(), 1, "{page:?}");
    assert_eq!(page.locks[0].kind, LockKind::FairMutex);
    assert_eq!(page.locks[0].holders.leases[0].owner, head);
    assert!(store.release(&k, FAIR, head).await.expect("release"));
}
