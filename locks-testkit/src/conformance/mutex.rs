//! The conformance suite: one set of async tests every [`LockBackend`] must pass.
//!
//! A backend crate instantiates it with a factory that returns a fresh [`Harness`]:
//!
//! ```ignore
//! async fn harness() -> MyHarness { MyHarness::new().await }
//! locks_testkit::conformance_tests!(harness);               // tokio paused time
//! locks_testkit::conformance_tests!(harness, time = real);  // a networked store
//! ```
//!
//! The invoking crate needs `tokio` (features `macros`, `rt`, `test-util`) as a
//! dev-dependency. With `time = paused` every test runs on a current-thread runtime with
//! tokio's clock paused, so the memory backend's tests take no wall time; `time = real` is for
//! stores with their own clock (Redis) and keeps every ttl short.
//!
//! Every case is also a public `async fn` here, so a backend can run a single one by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{
    AcquireOptions, AcquireResult, LeaseState, LockBackend, LockError, LockService, LostReason,
    OwnerToken, RetryPolicy,
};
use tokio::time::{Instant, timeout};

use crate::Harness;
use crate::faulty::FaultyBackend;

/// Instantiate the conformance suite for a backend. See the [module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!($factory, time = paused);
    };
    ($factory:path, time = paused) => {
        $crate::__conformance_cases!(
            $factory,
            [::tokio::test(
                flavor = "current_thread",
                start_paused = true
            )]
        );
    };
    ($factory:path, time = real) => {
        $crate::__conformance_cases!(
            $factory,
            [::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        );
    };
}

/// Implementation detail of [`conformance_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($factory:path, [$attr:meta]) => {
        $crate::__conformance_cases!(@each $factory, [$attr],
            mutual_exclusion_100_tasks,
            try_acquire_fails_while_held,
            non_owner_cannot_release_or_extend,
            acquire_is_idempotent_for_the_same_token,
            expiry_lets_the_next_holder_in,
            fencing_strictly_increases,
            extend_resets_ttl_and_later_renewals_use_it,
            renewal_keeps_lease_past_ttl,
            lost_fires_when_store_revokes,
            lost_fires_at_local_deadline_when_store_unreachable,
            transient_renewal_failure_is_unknown_then_held,
            max_hold_stops_renewal,
            wait_budget_is_honoured,
            max_attempts_limits_waiting,
            waiter_gets_lock_after_release,
            releaser_does_not_keep_winning,
            transient_acquire_errors_are_retried,
            lost_acquire_reply_does_not_leak_a_lease,
            shutdown_releases_and_refuses,
            with_lock_releases_on_success_error_and_panic,
            with_lock_releases_on_cancellation,
            dropped_guard_releases_in_background,
            validation_errors_are_typed_and_write_nothing
        );
    };
    (@each $factory:path, [$attr:meta], $($name:ident),* $(,)?) => {
        /// The locks-testkit conformance suite.
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$attr]
                async fn $name() {
                    let harness = $factory().await;
                    $crate::conformance::$name(harness).await;
                }
            )*
        }
    };
}

/// A key no other test uses (tests may share a store).
pub(crate) fn unique(name: &str) -> String {
    format!("conformance:{name}:{}", OwnerToken::new())
}

/// A service with short timings so real-time stores finish quickly.
pub(crate) fn service(backend: Arc<dyn LockBackend>) -> LockService {
    LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(2))
        .default_wait_timeout(Duration::from_secs(10))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(2))
                .max_delay(Duration::from_millis(50)),
        )
        .build()
        .expect("valid test service")
}

const LIMIT: Duration = Duration::from_secs(20);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {LIMIT:?}"))
}

/// Poll a condition (without sleeping to synchronise: a bounded loop of short waits).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIMIT,
            "{what}: condition never became true"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// 100 tasks on 4 services over one store: at most one inside the critical section, ever.
pub async fn mutual_exclusion_100_tasks<H: Harness>(h: H) {
    let key = unique("mutex");
    let services: Vec<_> = (0..4).map(|_| service(h.backend())).collect();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let svc = services[i % services.len()].clone();
        let (key, inside, max_inside, done) = (
            key.clone(),
            inside.clone(),
            max_inside.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let guard = svc
                .acquire_opts(
                    &key,
                    AcquireOptions::new().wait_timeout(Duration::from_secs(60)),
                )
                .await
                .expect("acquire");
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            max_inside.fetch_max(now, Ordering::SeqCst);
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            tokio::task::yield_now().await;
            inside.fetch_sub(1, Ordering::SeqCst);
            guard.release().await.expect("release");
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    within("100 tasks", futures::future::try_join_all(tasks))
        .await
        .expect("no task panicked");
    assert_eq!(done.load(Ordering::SeqCst), 100);
    assert_eq!(
        max_inside.load(Ordering::SeqCst),
        1,
        "two holders overlapped"
    );
    assert!(!services[0].is_locked(&key).await.expect("inspect"));
}

/// `try_acquire` fails at once while another owner holds the key, and succeeds after release.
pub async fn try_acquire_fails_while_held<H: Harness>(h: H) {
    let key = unique("try");
    let (a, b) = (service(h.backend()), service(h.backend()));
    let guard = a.try_acquire(&key).await.expect("free key");
    match b.try_acquire(&key).await {
        Err(LockError::Contended { key: k, remaining }) => {
            assert_eq!(k, key);
            let remaining = remaining.expect("a ttl hint");
            assert!(remaining <= Duration::from_secs(2));
        }
        other => panic!("expected Contended, got {other:?}"),
    }
    // Same service, same key: not reentrant.
    assert!(matches!(
        a.try_acquire(&key).await,
        Err(LockError::Contended { .. })
    ));
    assert!(b.is_locked(&key).await.expect("inspect"));
    guard.release().await.expect("release");
    assert!(!b.is_locked(&key).await.expect("inspect"));
    b.try_acquire(&key)
        .await
        .expect("free again")
        .release()
        .await
        .expect("release");
}

/// Release and extend are compare-and-act on the owner token.
pub async fn non_owner_cannot_release_or_extend<H: Harness>(h: H) {
    let backend = h.backend();
    let svc = service(backend.clone());
    let key_name = unique("owner");
    let key = svc.key(&key_name).expect("key");
    let (owner, intruder) = (OwnerToken::new(), OwnerToken::new());
    let ttl = Duration::from_secs(2);
    assert!(matches!(
        backend
            .try_acquire(&key, owner, ttl)
            .await
            .expect("acquire"),
        AcquireResult::Acquired(_)
    ));
    assert!(!backend.release(&key, intruder).await.expect("release"));
    assert!(!backend.extend(&key, intruder, ttl).await.expect("extend"));
    let info = backend.inspect(&key).await.expect("inspect").expect("held");
    assert_eq!(info.owner, owner);
    assert!(backend.extend(&key, owner, ttl).await.expect("extend"));
    assert!(backend.release(&key, owner).await.expect("release"));
    assert!(!backend.release(&key, owner).await.expect("second release"));
    assert!(!backend.extend(&key, owner, ttl).await.expect("extend gone"));
    assert!(backend.inspect(&key).await.expect("inspect").is_none());

    // Through the service: a late release after the lease was taken is "not owner".
    let guard = svc
        .acquire_opts(&key_name, AcquireOptions::new().auto_renew(false))
        .await
        .expect("acquire");
    h.expire(&key).await;
    let thief = service(backend.clone())
        .try_acquire(&key_name)
        .await
        .expect("expired key is free");
    assert!(matches!(
        guard.extend(ttl).await,
        Err(LockError::NotOwner { .. })
    ));
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. })
    ));
    assert!(
        thief.is_held().await.expect("inspect"),
        "thief keeps its lease"
    );
    thief.release().await.expect("release");
}

/// Acquiring again with the same token (a retry after a lost reply) keeps the same fence.
pub async fn acquire_is_idempotent_for_the_same_token<H: Harness>(h: H) {
    let backend = h.backend();
    let key = service(backend.clone()).key(&unique("idem")).expect("key");
    let token = OwnerToken::new();
    let ttl = Duration::from_secs(2);
    let AcquireResult::Acquired(first) = backend.try_acquire(&key, token, ttl).await.expect("a")
    else {
        panic!("free key")
    };
    let AcquireResult::Acquired(again) = backend.try_acquire(&key, token, ttl).await.expect("b")
    else {
        panic!("same token must get the lease back")
    };
    assert_eq!(first.fence, again.fence);
    assert!(matches!(
        backend
            .try_acquire(&key, OwnerToken::new(), ttl)
            .await
            .expect("c"),
        AcquireResult::Held { .. }
    ));
    assert!(backend.release(&key, token).await.expect("release"));
}

/// When a lease expires (by ttl, or forced), the next holder gets in.
pub async fn expiry_lets_the_next_holder_in<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    // Forced expiry (a "GC pause": the store moves on, the holder does not know).
    let key = unique("expiry");
    let held = a
        .acquire_opts(&key, AcquireOptions::new().auto_renew(false))
        .await
        .expect("acquire");
    h.expire(&a.key(&key).expect("key")).await;
    let next = b.try_acquire(&key).await.expect("expired lease is free");
    assert!(next.fence() > held.fence());
    next.release().await.expect("release");
    drop(held);

    // Natural expiry: a holder that stops renewing is replaced after its ttl.
    let key = unique("ttl");
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let held = a
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl).auto_renew(false))
        .await
        .expect("acquire");
    let next = within(
        "waiter after ttl",
        b.acquire_opts(
            &key,
            AcquireOptions::new().wait_timeout(Duration::from_secs(10)),
        ),
    )
    .await
    .expect("acquired after expiry");
    assert!(start.elapsed() >= ttl, "got in before the ttl ran out");
    assert!(next.fence() > held.fence());
    next.release().await.expect("release");
    assert!(matches!(
        held.release().await,
        Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. })
    ));
}

/// Fences strictly increase across holders, through release, expiry and force-release.
pub async fn fencing_strictly_increases<H: Harness>(h: H) {
    let key = unique("fence");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let mut last = 0u64;
    for i in 0..30 {
        let svc = &services[i % 3];
        let guard = svc.acquire(&key).await.expect("acquire");
        assert!(guard.fence() > last, "fence {} after {last}", guard.fence());
        last = guard.fence();
        let info = svc.inspect(&key).await.expect("inspect").expect("held");
        assert_eq!(info.fence, last);
        assert_eq!(info.owner, guard.token());
        match i % 3 {
            0 => guard.release().await.expect("release"),
            1 => {
                h.expire(&svc.key(&key).expect("key")).await;
                drop(guard);
            }
            _ => {
                assert!(svc.force_release(&key).await.expect("force"));
                drop(guard);
            }
        }
    }
}

/// `extend` resets the ttl, and later renewals use the new ttl.
pub async fn extend_resets_ttl_and_later_renewals_use_it<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("extend");
    let guard = svc
        .acquire_opts(&key, AcquireOptions::new().ttl(Duration::from_millis(500)))
        .await
        .expect("acquire");
    guard.extend(Duration::from_secs(5)).await.expect("extend");
    assert_eq!(guard.ttl(), Duration::from_secs(5));
    let info = svc.inspect(&key).await.expect("inspect").expect("held");
    assert!(
        info.remaining > Duration::from_secs(4),
        "{:?}",
        info.remaining
    );
    // Past the old ttl: a renewal with the old ttl would leave < 500 ms.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let info = svc.inspect(&key).await.expect("inspect").expect("held");
    assert!(
        info.remaining > Duration::from_millis(1500),
        "{:?}",
        info.remaining
    );
    assert!(matches!(
        guard.extend(Duration::ZERO).await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert!(matches!(
        guard.extend(Duration::from_secs(3600)).await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert_eq!(guard.state(), LeaseState::Held);
    guard.release().await.expect("release");
}

/// Auto-renewal keeps a lease alive well past its ttl.
pub async fn renewal_keeps_lease_past_ttl<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    let key = unique("renew");
    let ttl = Duration::from_millis(300);
    let guard = a
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    tokio::time::sleep(ttl * 4).await;
    assert_eq!(guard.state(), LeaseState::Held);
    assert!(guard.is_held().await.expect("inspect"));
    assert!(matches!(
        b.try_acquire(&key).await,
        Err(LockError::Contended { .. })
    ));
    guard.release().await.expect("release");
}

/// When the store revokes the lease, `lost()` fires with `NotOwner` (at the next renewal).
pub async fn lost_fires_when_store_revokes<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("revoke");
    let ttl = Duration::from_millis(400);
    let guard = svc
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    let lost = guard.lost();
    h.expire(&svc.key(&key).expect("key")).await;
    let reason = timeout(ttl * 3, lost).await.expect("lost() fired");
    assert_eq!(reason, LostReason::NotOwner);
    assert_eq!(guard.state(), LeaseState::Lost(LostReason::NotOwner));
    assert!(guard.ensure_held().is_err());
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. })
    ));

    // Force-release by an operator has the same effect.
    let guard = svc
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    assert!(
        service(h.backend())
            .force_release(&key)
            .await
            .expect("force")
    );
    let reason = timeout(ttl * 3, guard.lost()).await.expect("lost() fired");
    assert_eq!(reason, LostReason::NotOwner);
}

/// Cut off from the store, the holder gives up at its local deadline (sent + ttl − drift),
/// before the store lets a second holder in.
pub async fn lost_fires_at_local_deadline_when_store_unreachable<H: Harness>(h: H) {
    let faulty = FaultyBackend::from_arc(h.backend());
    let holder_svc = service(Arc::new(faulty.clone()));
    let other = service(h.backend());
    let key = unique("partition");
    let ttl = Duration::from_secs(1);
    let before = Instant::now();
    let guard = holder_svc
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    assert!(guard.deadline() + locks_core::drift_margin(ttl) <= Instant::now() + ttl);
    assert!(guard.deadline() >= before + ttl - locks_core::drift_margin(ttl));
    faulty.set_unavailable(true);
    let mut states = guard.watch_state();
    within(
        "state Unknown",
        states.wait_for(|s| *s == LeaseState::Unknown),
    )
    .await
    .expect("state channel open");
    let contender = {
        let other = other.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let g = other
                .acquire_opts(
                    &key,
                    AcquireOptions::new().wait_timeout(Duration::from_secs(10)),
                )
                .await;
            (Instant::now(), g)
        })
    };
    let reason = within("lost()", guard.lost()).await;
    let lost_at = Instant::now();
    assert_eq!(reason, LostReason::DeadlineExpired);
    let (got_at, second) = within("second holder", contender).await.expect("task");
    let second = second.expect("second holder after the store expired the lease");
    assert!(
        got_at >= lost_at || guard.state() == LeaseState::Lost(LostReason::DeadlineExpired),
        "second holder got in before the first gave up"
    );
    assert!(lost_at >= before + ttl - locks_core::drift_margin(ttl) - Duration::from_millis(1));
    second.release().await.expect("release");
    faulty.set_unavailable(false);
}

/// A renewal that fails transiently makes the state `Unknown`; the retry makes it `Held`.
pub async fn transient_renewal_failure_is_unknown_then_held<H: Harness>(h: H) {
    let faulty = FaultyBackend::from_arc(h.backend());
    let svc = service(Arc::new(faulty.clone()));
    let key = unique("unknown");
    let ttl = Duration::from_millis(600);
    let guard = svc
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl))
        .await
        .expect("acquire");
    let mut states = guard.watch_state();
    faulty.set_unavailable(true);
    within("Unknown", states.wait_for(|s| *s == LeaseState::Unknown))
        .await
        .expect("open");
    faulty.set_unavailable(false);
    within("Held again", states.wait_for(|s| *s == LeaseState::Held))
        .await
        .expect("open");
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(guard.state(), LeaseState::Held);
    guard.release().await.expect("release");
}

/// `max_hold` stops renewal: the lease ends and `lost()` says why.
pub async fn max_hold_stops_renewal<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("maxhold");
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let guard = svc
        .acquire_opts(
            &key,
            AcquireOptions::new()
                .ttl(ttl)
                .max_hold(Some(Duration::from_millis(900))),
        )
        .await
        .expect("acquire");
    let reason = within("lost()", guard.lost()).await;
    assert_eq!(reason, LostReason::MaxHoldReached);
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    within("free after max hold", async {
        loop {
            if !svc.is_locked(&key).await.expect("inspect") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// `acquire` uses the whole wait budget (not cut short by a retry count) and then times out.
pub async fn wait_budget_is_honoured<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    let key = unique("budget");
    let guard = a.acquire(&key).await.expect("acquire");
    let budget = Duration::from_millis(700);
    let start = Instant::now();
    let err = b
        .acquire_opts(&key, AcquireOptions::new().wait_timeout(budget))
        .await
        .expect_err("held for longer than the budget");
    let waited_outside = start.elapsed();
    match err {
        LockError::AcquireTimeout {
            key: k,
            waited,
            attempts,
            ..
        } => {
            assert_eq!(k, key);
            assert!(waited >= budget, "gave up early: {waited:?}");
            assert!(waited_outside >= budget);
            assert!(attempts > 3, "only {attempts} attempts in {budget:?}");
        }
        other => panic!("expected AcquireTimeout, got {other:?}"),
    }
    assert!(
        waited_outside < Duration::from_secs(2),
        "overran the budget"
    );
    guard.release().await.expect("release");
}

/// `max_attempts` ends waiting early with a timeout error that reports the attempts.
pub async fn max_attempts_limits_waiting<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    let key = unique("attempts");
    let guard = a.acquire(&key).await.expect("acquire");
    let err = b
        .acquire_opts(
            &key,
            AcquireOptions::new()
                .wait_timeout(Duration::from_secs(30))
                .retry(RetryPolicy::default().max_attempts(Some(3))),
        )
        .await
        .expect_err("held");
    assert!(
        matches!(err, LockError::AcquireTimeout { attempts: 3, .. }),
        "{err:?}"
    );
    guard.release().await.expect("release");
}

/// A waiter gets the lock after a release, well before its backoff or the ttl would let it.
pub async fn waiter_gets_lock_after_release<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    let key = unique("handoff");
    let guard = a.acquire(&key).await.expect("acquire");
    let waiter = {
        let key = key.clone();
        let b = b.clone();
        tokio::spawn(async move {
            b.acquire_opts(
                &key,
                AcquireOptions::new().wait_timeout(Duration::from_secs(10)),
            )
            .await
        })
    };
    eventually("waiter queued", || b.waiters(&key) == 1).await;
    let fence = guard.fence();
    guard.release().await.expect("release");
    let next = within("waiter", waiter)
        .await
        .expect("task")
        .expect("acquired after release");
    assert!(next.fence() > fence);
    next.release().await.expect("release");
}

/// A holder that releases and asks again at once must not keep winning over a local waiter.
pub async fn releaser_does_not_keep_winning<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("fair");
    let first = svc.acquire(&key).await.expect("acquire");
    let waiter = {
        let (svc, key) = (svc.clone(), key.clone());
        tokio::spawn(async move {
            let g = svc.acquire(&key).await.expect("waiter acquires");
            let fence = g.fence();
            g.release().await.expect("release");
            fence
        })
    };
    eventually("waiter queued", || svc.waiters(&key) == 1).await;
    first.release().await.expect("release");
    let again = svc.acquire(&key).await.expect("re-acquire");
    let waiter_fence = within("waiter", waiter).await.expect("task");
    assert!(
        waiter_fence < again.fence(),
        "the releaser jumped the queue ({} < {})",
        again.fence(),
        waiter_fence
    );
    again.release().await.expect("release");
}

/// Transient store errors while acquiring are retried within the wait budget.
pub async fn transient_acquire_errors_are_retried<H: Harness>(h: H) {
    let faulty = FaultyBackend::from_arc(h.backend());
    let svc = service(Arc::new(faulty.clone()));
    let key = unique("transient");
    faulty.fail_next(3);
    let guard = svc.acquire(&key).await.expect("acquired through failures");
    assert_eq!(faulty.injected(), 3);
    guard.release().await.expect("release");
    // try_acquire makes one attempt: a transient error is reported, typed.
    faulty.fail_next(1);
    match svc.try_acquire(&key).await {
        Err(LockError::Backend { source, .. }) => assert!(source.is_transient()),
        other => panic!("expected a backend error, got {other:?}"),
    }
}

/// An acquire whose reply was lost is retried with the same token: one lease, not two, and
/// a timed-out caller's possibly-created lease is released.
pub async fn lost_acquire_reply_does_not_leak_a_lease<H: Harness>(h: H) {
    let faulty = FaultyBackend::from_arc(h.backend());
    let svc = service(Arc::new(faulty.clone()));
    let key = unique("lostreply");
    faulty.lose_replies_next(1);
    let guard = svc.acquire(&key).await.expect("acquire");
    let info = svc.inspect(&key).await.expect("inspect").expect("held");
    assert_eq!(info.owner, guard.token());
    assert_eq!(info.fence, guard.fence());
    guard.release().await.expect("release");
    assert!(!svc.is_locked(&key).await.expect("inspect"));

    // The reply of the only attempt is lost and the caller gives up: the lease it may have
    // created is released in the background instead of blocking everyone for a ttl.
    faulty.lose_replies_next(1);
    let err = svc
        .acquire_opts(
            &key,
            AcquireOptions::new()
                .ttl(Duration::from_secs(60))
                .retry(RetryPolicy::default().max_attempts(Some(1))),
        )
        .await
        .expect_err("the only reply was lost");
    assert!(matches!(err, LockError::AcquireTimeout { .. }), "{err:?}");
    within("orphan released", async {
        while svc.is_locked(&key).await.expect("inspect") {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// Shutdown stops renewals, releases every lease, fails waiters, then refuses new calls.
pub async fn shutdown_releases_and_refuses<H: Harness>(h: H) {
    let svc = service(h.backend());
    let observer = service(h.backend());
    let keys: Vec<String> = (0..3).map(|i| unique(&format!("shutdown{i}"))).collect();
    let mut guards = Vec::new();
    for k in &keys {
        guards.push(svc.acquire(k).await.expect("acquire"));
    }
    assert_eq!(svc.held_count(), 3);
    let waiter = {
        let (svc, key) = (svc.clone(), keys[0].clone());
        tokio::spawn(async move { svc.acquire(&key).await })
    };
    eventually("waiter queued", || svc.waiters(&keys[0]) == 1).await;
    let report = svc.shutdown().await;
    assert_eq!(report.released, 3, "{report:?}");
    assert_eq!(svc.held_count(), 0);
    for k in &keys {
        assert!(
            !observer.is_locked(k).await.expect("inspect"),
            "{k} still locked"
        );
    }
    for g in &guards {
        assert_eq!(g.state(), LeaseState::Lost(LostReason::Shutdown));
        assert_eq!(
            timeout(Duration::from_secs(1), g.lost())
                .await
                .expect("fired"),
            LostReason::Shutdown
        );
    }
    assert!(matches!(
        within("waiter", waiter).await.expect("task"),
        Err(LockError::ShuttingDown)
    ));
    assert!(matches!(
        svc.acquire(&keys[1]).await,
        Err(LockError::ShuttingDown)
    ));
    assert!(matches!(
        svc.try_acquire(&keys[1]).await,
        Err(LockError::ShuttingDown)
    ));
    let g = guards.pop().expect("three guards");
    assert!(matches!(
        g.release().await,
        Err(LockError::Lost {
            reason: LostReason::Shutdown,
            ..
        })
    ));
    assert_eq!(svc.shutdown().await.released, 0, "idempotent");
}

/// `with_lock` releases after success, after an error value, and after a panic.
pub async fn with_lock_releases_on_success_error_and_panic<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("withlock");
    let out = svc
        .with_lock(&key, |lease| async move {
            assert_eq!(lease.state(), LeaseState::Held);
            lease.fence()
        })
        .await
        .expect("with_lock");
    assert!(out > 0);
    assert!(!svc.is_locked(&key).await.expect("inspect"));

    let out: Result<Result<(), String>, LockError> = svc
        .with_lock(&key, |_| async { Err("charge declined".to_owned()) })
        .await;
    assert_eq!(out.expect("lock ok"), Err("charge declined".to_owned()));
    assert!(!svc.is_locked(&key).await.expect("inspect"));

    let (svc2, key2) = (svc.clone(), key.clone());
    let panicked = tokio::spawn(async move {
        svc2.with_lock(&key2, |_| async {
            panic!("boom inside the critical section")
        })
        .await
    })
    .await;
    assert!(panicked.expect_err("the panic resumes").is_panic());
    assert!(!svc.is_locked(&key).await.expect("inspect"));
    assert_eq!(svc.held_count(), 0);
}

/// Dropping a `with_lock` future mid-work releases the lock in the background.
pub async fn with_lock_releases_on_cancellation<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("cancel");
    let entered = Arc::new(tokio::sync::Notify::new());
    let task = {
        let (svc, key, entered) = (svc.clone(), key.clone(), entered.clone());
        tokio::spawn(async move {
            svc.with_lock(&key, |_| async move {
                entered.notify_one();
                std::future::pending::<()>().await
            })
            .await
        })
    };
    within("entered", entered.notified()).await;
    assert!(svc.is_locked(&key).await.expect("inspect"));
    task.abort();
    assert!(task.await.expect_err("aborted").is_cancelled());
    within("released after cancellation", async {
        while svc.is_locked(&key).await.expect("inspect") {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(svc.held_count(), 0);
}

/// Dropping a guard without `release` releases it in the background and stops renewal.
pub async fn dropped_guard_releases_in_background<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("drop");
    let guard = svc.acquire(&key).await.expect("acquire");
    let handle = guard.handle();
    drop(guard);
    // lost() fires as soon as the guard is dropped (the lease can no longer be trusted); the
    // store release follows in the background.
    assert_eq!(
        within("lost after drop", handle.lost()).await,
        LostReason::Released
    );
    within("released in the background", async {
        while svc.is_locked(&key).await.expect("inspect") {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert_eq!(svc.held_count(), 0);
}

/// Every bad input is a typed error, and nothing is written to the store.
pub async fn validation_errors_are_typed_and_write_nothing<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("valid");
    let long = "k".repeat(locks_core::MAX_KEY_LEN + 1);
    for bad in ["", "line\nbreak", "nul\0", long.as_str()] {
        assert!(matches!(
            svc.acquire(bad).await,
            Err(LockError::InvalidKey { .. })
        ));
        assert!(matches!(
            svc.try_acquire(bad).await,
            Err(LockError::InvalidKey { .. })
        ));
        assert!(matches!(
            svc.is_locked(bad).await,
            Err(LockError::InvalidKey { .. })
        ));
        assert!(matches!(
            svc.with_lock(bad, |_| async {}).await,
            Err(LockError::InvalidKey { .. })
        ));
    }
    let bad_opts = [
        AcquireOptions::new().ttl(Duration::ZERO),
        AcquireOptions::new().ttl(Duration::from_secs(301)),
        AcquireOptions::new().retry(RetryPolicy::default().multiplier(0.5)),
        AcquireOptions::new().retry(RetryPolicy::default().jitter(2.0)),
        AcquireOptions::new().retry(RetryPolicy::default().initial_delay(Duration::ZERO)),
        AcquireOptions::new().retry(RetryPolicy::default().max_attempts(Some(0))),
        AcquireOptions::new().max_hold(Some(Duration::ZERO)),
    ];
    for opts in bad_opts {
        let err = svc
            .acquire_opts(&key, opts.clone())
            .await
            .expect_err("rejected");
        assert!(
            matches!(
                err,
                LockError::InvalidTtl { .. } | LockError::InvalidOptions { .. }
            ),
            "{opts:?}: {err:?}"
        );
        assert!(svc.try_acquire_opts(&key, opts).await.is_err());
    }
    assert!(
        !svc.is_locked(&key).await.expect("inspect"),
        "a rejected call wrote"
    );
    assert_eq!(svc.held_count(), 0);

    let b = || LockService::builder_arc(h.backend());
    let bad_builders = [
        ("renew_fraction", b().renew_fraction(0.0)),
        ("renew_fraction", b().renew_fraction(1.0)),
        ("renew_fraction", b().renew_fraction(f64::NAN)),
        ("renew_fraction", b().renew_fraction(0.01)),
        ("renew_fraction", b().renew_fraction(0.99)),
        ("key_prefix", b().key_prefix("{braces}")),
        ("max_hold", b().max_hold(Some(Duration::ZERO))),
        ("max_ttl", b().max_ttl(Duration::ZERO)),
        (
            "retry.max_delay",
            b().retry(RetryPolicy::default().max_delay(Duration::from_micros(1))),
        ),
    ];
    for (option, builder) in bad_builders {
        match builder.build() {
            Err(LockError::InvalidOptions { option: o, .. }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        }
    }
    assert!(matches!(
        b().default_ttl(Duration::from_secs(600)).build(),
        Err(LockError::InvalidTtl { .. })
    ));
}
