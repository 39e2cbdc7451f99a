//! Fair mode on the memory backend, in tokio's paused time: strict FIFO across services with
//! direct hand-off (no acquire round trip), crashed waiters skipped after the waiter ttl,
//! waiters that give up leaving the queue, and the service-wide default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, ListQuery, LockKind, Operation, Outcome};
use locks_core::{
    AcquireOptions, AcquireResult, BackendError, FAIR_WAITER_TTL, LeaseKind, LockBackend,
    LockError, LockKey, LockService, OwnerToken,
};
use locks_memory::MemoryBackend;

const FAIR: LeaseKind = LeaseKind::FairMutex;

/// Counts the fair `try_acquire`s the store answered `Acquired` (a lease taken by asking), and
/// the extends (renewals).
#[derive(Debug)]
struct Counting {
    inner: MemoryBackend,
    acquired: AtomicU64,
    extends: AtomicU64,
    attempts: AtomicU64,
}

#[async_trait]
impl Decorator for Counting {
    fn inner(&self) -> &dyn LockBackend {
        &self.inner
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let out = op.send(&self.inner).await;
        match op.action {
            Action::Extend { .. } => self.extends.fetch_add(1, Ordering::SeqCst),
            Action::TryAcquire { .. } => self.attempts.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        if let (Action::TryAcquire { .. }, Ok(Outcome::Acquire(AcquireResult::Acquired(_)))) =
            (op.action, &out)
        {
            self.acquired.fetch_add(1, Ordering::SeqCst);
        }
        out
    }
}
locks_core::impl_lock_backend!(Counting);

fn counting(store: &MemoryBackend) -> Arc<Counting> {
    Arc::new(Counting {
        inner: store.clone(),
        acquired: AtomicU64::new(0),
        extends: AtomicU64::new(0),
        attempts: AtomicU64::new(0),
    })
}

/// A fair service over `backend` (each one stands for a process of its own).
fn fair_service(backend: Arc<dyn LockBackend>) -> LockService {
    LockService::builder_arc(backend)
        .fair(true)
        .build()
        .expect("service")
}

fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).expect("key")
}

/// Let every ready task run until `cond` holds (bounded: no sleeping to synchronise).
async fn until(what: &str, store: &MemoryBackend, cond: impl Fn(&MemoryBackend) -> bool) {
    for _ in 0..10_000 {
        if cond(store) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: never happened");
}

/// Five services: a holder and four waiters that arrive one after the other (each queued in
/// the store before the next starts). They get the lock in arrival order, each straight from
/// its predecessor's release: none of them is ever answered `Acquired` by the store.
#[tokio::test(start_paused = true)]
async fn strict_fifo_across_services_with_direct_hand_off() {
    let store = MemoryBackend::new();
    let k = key("fifo");
    let holder_svc = fair_service(counting(&store));
    let holder = holder_svc.acquire("fifo").await.expect("holder");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut counters = Vec::new();
    let mut tasks = Vec::new();
    for i in 1..=4 {
        let backend = counting(&store);
        counters.push(Arc::clone(&backend));
        let svc = fair_service(backend);
        let order = Arc::clone(&order);
        tasks.push(tokio::spawn(async move {
            let guard = svc.acquire("fifo").await.expect("waiter");
            order.lock().expect("order").push((i, guard.fence()));
            guard.release().await.expect("release");
        }));
        until("queued", &store, |s| s.fair_queue(&k).len() == i).await;
    }
    let queue = store.fair_queue(&k);
    holder.release().await.expect("release");
    for t in tasks {
        t.await.expect("task");
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
    assert_eq!(queue.len(), 4);
    assert!(store.fair_queue(&k).is_empty());
    assert!(!holder_svc.is_locked("fifo").await.expect("inspect"));
}

/// A fair waiter asks the store once and then only listens when its service found the key
/// held moments ago: it listened before that attempt, so no release can fall between the
/// attempt and the listening (a first wait on a key needs a second look for that).
#[tokio::test(start_paused = true)]
async fn a_waiter_on_a_key_found_held_moments_ago_asks_the_store_once() {
    let store = MemoryBackend::new();
    let k = key("hot");
    let holder = fair_service(counting(&store));
    let backend = counting(&store);
    let waiter_svc = fair_service(Arc::clone(&backend) as Arc<dyn LockBackend>);
    let mut asked = Vec::new();
    for round in 0..2 {
        let held = holder.acquire("hot").await.expect("holder");
        let before = backend.attempts.load(Ordering::SeqCst);
        let svc = waiter_svc.clone();
        let waiter = tokio::spawn(async move { svc.acquire("hot").await });
        until("queued", &store, |s| s.fair_queue(&k).len() == 1).await;
        held.release().await.expect("release");
        let guard = waiter.await.expect("task").expect("waiter");
        asked.push(backend.attempts.load(Ordering::SeqCst) - before);
        guard.release().await.expect("release");
        assert_eq!(backend.acquired.load(Ordering::SeqCst), 0, "round {round}");
    }
    // First wait: an attempt, listening, a second look; then the grant. Second wait, on a key
    // found held a moment ago: listening, one attempt; then the grant.
    assert_eq!(asked, [2, 1]);
}

/// A grant is provisional (the store keeps it for the waiter ttl until its holder renews it):
/// the new holder's deadline starts within the waiter ttl, nothing is renewed at once, and the
/// first renewal, at the usual fraction of the waiter ttl, gives the lease its full ttl and
/// its full renewal period.
#[tokio::test(start_paused = true)]
async fn a_grant_is_provisional_until_its_first_renewal_asks_for_the_full_ttl() {
    let store = MemoryBackend::new();
    let k = key("grow");
    let holder = fair_service(counting(&store))
        .acquire("grow")
        .await
        .expect("holder");
    let backend = counting(&store);
    let svc = fair_service(Arc::clone(&backend) as Arc<dyn LockBackend>);
    let waiter = tokio::spawn(async move { svc.acquire("grow").await.expect("waiter") });
    until("queued", &store, |s| s.fair_queue(&k).len() == 1).await;
    let released = tokio::time::Instant::now();
    holder.release().await.expect("release");
    let guard = waiter.await.expect("task");
    assert_eq!(
        backend.acquired.load(Ordering::SeqCst),
        0,
        "taken by the grant"
    );
    assert!(
        guard.deadline() <= released + FAIR_WAITER_TTL,
        "provisional deadline"
    );
    // No renewal at once, nor before half the waiter ttl (the default renewal fraction)...
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.extends.load(Ordering::SeqCst), 0);
    // ...then one (at 1.5 s), which asks for the service's ttl (30 s)...
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.extends.load(Ordering::SeqCst), 1);
    let now = tokio::time::Instant::now();
    assert!(
        guard.deadline() > now + Duration::from_secs(25),
        "full ttl after the first renewal"
    );
    // ...and the next one comes half of 30 s later (at 16.5 s), not 1.5 s later.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(backend.extends.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(backend.extends.load(Ordering::SeqCst), 2);
    assert_eq!(guard.state(), locks_core::LeaseState::Held);
    guard.release().await.expect("release");
}

/// A queued waiter that crashed (never asks again) loses its place after the waiter ttl: the
/// release hands the lease to the live waiter behind it, which kept its place by re-asking.
#[tokio::test(start_paused = true)]
async fn a_crashed_waiter_is_skipped_after_the_waiter_ttl() {
    let store = MemoryBackend::new();
    let k = key("crashed");
    let svc = fair_service(Arc::new(store.clone()));
    let holder = svc.acquire("crashed").await.expect("holder");
    let crashed = OwnerToken::new();
    let answer = store
        .try_acquire(&k, FAIR, crashed, Duration::from_secs(30))
        .await
        .expect("queue");
    assert!(matches!(answer, AcquireResult::Held { .. }));
    let waiter_svc = fair_service(Arc::new(store.clone()));
    let waiter = tokio::spawn(async move { waiter_svc.acquire("crashed").await });
    until("queued", &store, |s| s.fair_queue(&k).len() == 2).await;
    let live = store.fair_queue(&k)[1];
    tokio::time::sleep(FAIR_WAITER_TTL + Duration::from_millis(1)).await;
    assert_eq!(
        store.fair_queue(&k),
        vec![live],
        "the crashed waiter kept its place"
    );
    holder.release().await.expect("release");
    let guard = waiter.await.expect("task").expect("the live waiter");
    assert_eq!(guard.token(), live);
    guard.release().await.expect("release");
}

/// A waiter that crashed after it was queued and got the lease on release holds it only
/// provisionally (the waiter ttl, not the 30 s it asked for): the next waiter gets it soon
/// after, and the lease never had two holders.
#[tokio::test(start_paused = true)]
async fn a_crashed_grantee_blocks_for_at_most_the_waiter_ttl() {
    let store = MemoryBackend::new();
    let k = key("grantee");
    let svc = fair_service(Arc::new(store.clone()));
    let holder = svc.acquire("grantee").await.expect("holder");
    let crashed = OwnerToken::new();
    store
        .try_acquire(&k, FAIR, crashed, Duration::from_secs(30))
        .await
        .expect("queue");
    let waiter_svc = fair_service(Arc::new(store.clone()));
    let waiter = tokio::spawn(async move { waiter_svc.acquire("grantee").await });
    until("queued", &store, |s| s.fair_queue(&k).len() == 2).await;
    holder.release().await.expect("release");
    let granted = store.holders(&k, FAIR).await.expect("holders").leases;
    assert_eq!(granted[0].owner, crashed);
    assert!(granted[0].remaining <= FAIR_WAITER_TTL, "{granted:?}");
    let start = tokio::time::Instant::now();
    let guard = waiter.await.expect("task").expect("the live waiter");
    let waited = start.elapsed();
    assert!(
        waited <= FAIR_WAITER_TTL + Duration::from_secs(1),
        "waited {waited:?}"
    );
    assert!(guard.fence() > granted[0].fence);
    guard.release().await.expect("release");
}

/// A waiter that times out, and a fair `try_acquire` that finds the lock held, leave no queue
/// entry: the holder's release then frees the lock instead of handing it to a ghost.
#[tokio::test(start_paused = true)]
async fn waiters_that_give_up_leave_the_queue() {
    let store = MemoryBackend::new();
    let k = key("give-up");
    let svc = fair_service(Arc::new(store.clone()));
    let holder = svc.acquire("give-up").await.expect("holder");
    let other = fair_service(Arc::new(store.clone()));
    let timed_out = other
        .acquire_opts(
            "give-up",
            AcquireOptions::new().wait_timeout(Duration::from_millis(300)),
        )
        .await;
    assert!(matches!(timed_out, Err(LockError::AcquireTimeout { .. })));
    until("left", &store, |s| s.fair_queue(&k).is_empty()).await;
    let once = other.try_acquire("give-up").await;
    assert!(matches!(once, Err(LockError::Contended { .. })));
    until("left", &store, |s| s.fair_queue(&k).is_empty()).await;
    holder.release().await.expect("release");
    assert!(!svc.is_locked("give-up").await.expect("inspect"));
}

/// A service built with `fair(true)` takes fair leases for every mutex call, and looks at them
/// in `is_locked`, `inspect`, `force_release` and `waiters`; a call can opt out.
#[tokio::test(start_paused = true)]
async fn the_service_default_and_the_per_call_option() {
    let store = MemoryBackend::new();
    let k = key("default");
    let svc = fair_service(Arc::new(store.clone()));
    let guard = svc.acquire("default").await.expect("fair");
    let fair = store.holders(&k, FAIR).await.expect("holders").leases;
    assert_eq!(fair.len(), 1);
    assert_eq!(fair[0].owner, guard.token());
    assert!(
        store
            .holders(&k, LeaseKind::Mutex)
            .await
            .expect("holders")
            .leases
            .is_empty()
    );
    assert!(svc.is_locked("default").await.expect("inspect"));
    let query = ListQuery::new("_lock:").expect("query");
    let page = store.list(&query).await.expect("list");
    assert_eq!(page.locks.len(), 1, "{page:?}");
    assert_eq!(page.locks[0].kind, LockKind::FairMutex);
    assert_eq!(
        svc.inspect("default")
            .await
            .expect("inspect")
            .map(|l| l.owner),
        Some(guard.token())
    );
    // Opting out: a plain mutex under the same name is a different lock.
    let plain = svc
        .try_acquire_opts("default", AcquireOptions::new().fair(false))
        .await
        .expect("plain mutex");
    let waiter = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.acquire("default").await })
    };
    until("queued", &store, |s| s.fair_queue(&k).len() == 1).await;
    assert_eq!(svc.waiters("default"), 1);
    assert!(svc.force_release("default").await.expect("force"));
    assert!(
        store.fair_queue(&k).is_empty(),
        "force_release keeps the queue"
    );
    plain.release().await.expect("release");
    drop(guard);
    let next = waiter
        .await
        .expect("task")
        .expect("acquired after the force release");
    next.release().await.expect("release");
    // And the other way round: a plain service takes a fair lease when asked.
    let plain_svc = LockService::new(store.clone()).expect("service");
    let g = plain_svc
        .acquire_opts("other", AcquireOptions::new().fair(true))
        .await
        .expect("fair");
    assert_eq!(
        store
            .holders(&key("other"), FAIR)
            .await
            .expect("holders")
            .leases
            .len(),
        1
    );
    g.release().await.expect("release");
}
