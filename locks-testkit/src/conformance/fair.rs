//! Fair mutex cases ([`LeaseKind::FairMutex`]): FIFO order across services with direct
//! hand-off, and waiters that give up leave the queue (a grant they got is passed on).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, Operation, Outcome};
use locks_core::{
    AcquireOptions, AcquireResult, BackendError, LeaseKind, LockBackend, LockError, LockService,
    OwnerToken, RetryPolicy,
};

use super::common::{eventually, join_all, unique_primitive, within};
use crate::Harness;

const FAIR: LeaseKind = LeaseKind::FairMutex;

/// What the services of a case asked the store for their fair leases.
#[derive(Debug, Default)]
struct Seen {
    /// Tokens the store answered `Held` (queued), in the order of the answers.
    queued: Vec<OwnerToken>,
    /// Tokens whose `try_acquire` the store answered `Acquired`.
    acquired: Vec<OwnerToken>,
    /// Tokens released.
    released: HashSet<OwnerToken>,
}

/// A decorator that notes the fair operations of the services over it.
#[derive(Debug)]
struct Watch {
    inner: Arc<dyn LockBackend>,
    seen: Mutex<Seen>,
}

impl Watch {
    fn new(inner: Arc<dyn LockBackend>) -> Arc<Self> {
        Arc::new(Watch {
            inner,
            seen: Mutex::new(Seen::default()),
        })
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The distinct tokens the store has queued.
    fn queued_set(&self) -> HashSet<OwnerToken> {
        self.seen().queued.iter().copied().collect()
    }

    /// How many distinct tokens the store has queued.
    fn queued(&self) -> usize {
        self.queued_set().len()
    }

    /// The one token queued since `before`, if exactly one was.
    fn queued_since(&self, before: &HashSet<OwnerToken>) -> Option<OwnerToken> {
        let new: Vec<OwnerToken> = self.queued_set().difference(before).copied().collect();
        match new.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

#[async_trait]
impl Decorator for Watch {
    fn inner(&self) -> &dyn LockBackend {
        &*self.inner
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let out = op.send(&*self.inner).await;
        if op.kind == FAIR {
            let mut seen = self.seen();
            match (op.action, &out) {
                (Action::TryAcquire { token, .. }, Ok(Outcome::Acquire(r))) => match r {
                    AcquireResult::Acquired(_) => seen.acquired.push(token),
                    AcquireResult::Held { .. } => seen.queued.push(token),
                },
                (Action::Release { token }, Ok(_)) => {
                    seen.released.insert(token);
                }
                _ => {}
            }
        }
        out
    }
}

locks_core::impl_lock_backend!(Watch);

fn fair() -> AcquireOptions {
    AcquireOptions::new().fair(true)
}

/// A fair service over `watch` (as a separate process would have), with the timings of
/// [`service`](super::common::service).
fn fair_service(watch: &Arc<Watch>) -> LockService {
    let backend: Arc<dyn LockBackend> = watch.clone();
    LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(2))
        .default_wait_timeout(Duration::from_secs(10))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(2))
                .max_delay(Duration::from_millis(50)),
        )
        .fair(true)
        .build()
        .expect("valid test service")
}

/// Three waiters on three services queue one after the other behind a holder on a fourth:
/// each gets the lease in arrival order when its predecessor releases, straight from the
/// release's notification (the store never answers one of their `try_acquire`s `Acquired`:
/// no acquire round trip, no herd), with increasing fences.
pub(super) async fn fair_waiters_get_the_lease_in_arrival_order_by_hand_off<H: Harness>(h: H) {
    let name = unique_primitive("fair-order");
    let watch = Watch::new(h.backend());
    let holder_svc = fair_service(&watch);
    let holder = holder_svc
        .acquire_opts(&name, fair())
        .await
        .expect("holder");
    let holder_fence = holder.fence();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let mut services = Vec::new();
    for i in 0..3 {
        let svc = fair_service(&watch);
        services.push(svc.clone());
        let (name, order) = (name.clone(), Arc::clone(&order));
        tasks.push(tokio::spawn(async move {
            let guard = svc.acquire_opts(&name, fair()).await.expect("waiter");
            order
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((i, guard.fence()));
            guard.release().await.expect("release");
        }));
        // Arrival order: the next waiter starts once this one is queued in the store.
        eventually("the waiter is queued", || watch.queued() == i + 1).await;
    }
    let acquired_before = watch.seen().acquired.len();
    holder.release().await.expect("release");
    join_all("three waiters", tasks).await;
    let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let turns: Vec<usize> = order.iter().map(|(i, _)| *i).collect();
    assert_eq!(turns, vec![0, 1, 2], "not served in arrival order");
    let fences: Vec<u64> = order.iter().map(|(_, f)| *f).collect();
    assert!(holder_fence < fences[0] && fences[0] < fences[1] && fences[1] < fences[2]);
    assert_eq!(
        watch.seen().acquired.len(),
        acquired_before,
        "a waiter asked the store for the lease it was handed"
    );
    assert!(!holder_svc.is_locked(&name).await.expect("inspect"));
    assert!(holder_svc.inspect(&name).await.expect("inspect").is_none());
    drop(services);
}

/// Waiters that give up leave the queue: one that times out and a single fair `try_acquire`
/// release their tokens (the store drops their entries), and a grant to a queued token that
/// never claims it is passed on to the next waiter by that token's release.
pub(super) async fn fair_waiters_that_give_up_leave_the_queue<H: Harness>(h: H) {
    let name = unique_primitive("fair-give-up");
    let watch = Watch::new(h.backend());
    let svc = fair_service(&watch);
    let key = svc.key(&name).expect("key");
    let holder = svc.acquire_opts(&name, fair()).await.expect("holder");
    // A queued token that will not claim its grant (a waiter that gave up at that moment).
    let absent = OwnerToken::new();
    let answer = watch
        .try_acquire(&key, FAIR, absent, Duration::from_secs(2))
        .await
        .expect("queue");
    assert!(matches!(answer, AcquireResult::Held { .. }), "{answer:?}");
    // A waiter behind it.
    let waiter_svc = fair_service(&watch);
    let waiter = {
        let (svc, name) = (waiter_svc.clone(), name.clone());
        tokio::spawn(async move { svc.acquire_opts(&name, fair()).await })
    };
    eventually("the waiter is queued", || watch.queued() == 2).await;
    // A waiter that times out, and a single attempt: both leave the queue.
    let impatient = fair_service(&watch);
    let before = watch.queued_set();
    let timed_out = impatient
        .acquire_opts(&name, fair().wait_timeout(Duration::from_millis(50)))
        .await;
    assert!(
        matches!(timed_out, Err(LockError::AcquireTimeout { .. })),
        "{timed_out:?}"
    );
    let gave_up = watch
        .queued_since(&before)
        .expect("the impatient waiter was queued");
    eventually("the timed-out waiter left", || {
        watch.seen().released.contains(&gave_up)
    })
    .await;
    let before = watch.queued_set();
    let once = impatient.try_acquire_opts(&name, fair()).await;
    assert!(matches!(once, Err(LockError::Contended { .. })), "{once:?}");
    let tried = watch
        .queued_since(&before)
        .expect("the single attempt was answered Held");
    eventually("the single attempt left", || {
        watch.seen().released.contains(&tried)
    })
    .await;
    // The release hands the lease to the head, which never claims it.
    let holder_fence = holder.fence();
    holder.release().await.expect("release");
    // The release script granted it atomically: it is there when the release returns.
    let granted = svc
        .inspect(&name)
        .await
        .expect("inspect")
        .expect("the lease was handed to the head");
    assert_eq!(granted.owner, absent, "the lease went past the head");
    assert!(granted.fence > holder_fence);
    // Its release (what the service sends for a token it gives up) passes the grant on.
    assert!(watch.release(&key, FAIR, absent).await.expect("release"));
    let next = within("the waiter", waiter)
        .await
        .expect("task")
        .expect("the waiter gets the lease passed on");
    assert!(next.fence() > granted.fence);
    // Nobody else is queued: after this release the lock is free, not granted to a ghost.
    next.release().await.expect("release");
    let after = svc.try_acquire_opts(&name, fair()).await.expect("free");
    after.release().await.expect("release");
}
