//! Mutex cases: waiting, retries, shutdown, scoped locking and input validation.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{
    AcquireOptions, LeaseState, LockError, LockGuard, LockService, LostReason, RetryPolicy,
};
use tokio::time::{Instant, timeout};

use super::common::{
    acquire_with_ttl, assert_waiter_takes_over, attempts_at_most, eventually, faulty_service,
    service, unique, until_unlocked, waiting_at_most, with_ttl, within,
};
use crate::Harness;

/// A fresh key held through one service, and a second service (another process, as far as
/// the services know) to ask for it.
async fn held_through_another_service<H: Harness>(
    h: &H,
    name: &str,
) -> (String, LockGuard, LockService) {
    let key = unique(name);
    let guard = service(h.backend()).acquire(&key).await.expect("acquire");
    (key, guard, service(h.backend()))
}

/// A renewal that fails transiently makes the state `Unknown`; the retry makes it `Held`.
pub(super) async fn transient_renewal_failure_is_unknown_then_held<H: Harness>(h: H) {
    let (faulty, svc) = faulty_service(&h);
    let key = unique("unknown");
    let ttl = Duration::from_millis(600);
    let guard = acquire_with_ttl(&svc, &key, ttl).await;
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
pub(super) async fn max_hold_stops_renewal<H: Harness>(h: H) {
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
    until_unlocked("free after max hold", &svc, &key).await;
}

/// `acquire` uses the whole wait budget (not cut short by a retry count) and then times out.
pub(super) async fn wait_budget_is_honoured<H: Harness>(h: H) {
    let (key, guard, b) = held_through_another_service(&h, "budget").await;
    let budget = Duration::from_millis(700);
    let start = Instant::now();
    let err = b
        .acquire_opts(&key, waiting_at_most(budget))
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
pub(super) async fn max_attempts_limits_waiting<H: Harness>(h: H) {
    let (key, guard, b) = held_through_another_service(&h, "attempts").await;
    let err = b
        .acquire_opts(
            &key,
            attempts_at_most(3).wait_timeout(Duration::from_secs(30)),
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
pub(super) async fn waiter_gets_lock_after_release<H: Harness>(h: H) {
    let (key, guard, b) = held_through_another_service(&h, "handoff").await;
    let waiter = {
        let key = key.clone();
        let b = b.clone();
        tokio::spawn(async move {
            b.acquire_opts(&key, waiting_at_most(Duration::from_secs(10)))
                .await
        })
    };
    eventually("waiter queued", || b.waiters(&key) == 1).await;
    assert_waiter_takes_over(guard, waiter).await;
}

/// A holder that releases and asks again at once must not keep winning over a local waiter.
pub(super) async fn releaser_does_not_keep_winning<H: Harness>(h: H) {
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
pub(super) async fn transient_acquire_errors_are_retried<H: Harness>(h: H) {
    let (faulty, svc) = faulty_service(&h);
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
pub(super) async fn lost_acquire_reply_does_not_leak_a_lease<H: Harness>(h: H) {
    let (faulty, svc) = faulty_service(&h);
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
        .acquire_opts(&key, attempts_at_most(1).ttl(Duration::from_secs(60)))
        .await
        .expect_err("the only reply was lost");
    assert!(matches!(err, LockError::AcquireTimeout { .. }), "{err:?}");
    until_unlocked("orphan released", &svc, &key).await;
}

/// Shutdown stops renewals, releases every lease, fails waiters, then refuses new calls.
pub(super) async fn shutdown_releases_and_refuses<H: Harness>(h: H) {
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
pub(super) async fn with_lock_releases_on_success_error_and_panic<H: Harness>(h: H) {
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
pub(super) async fn with_lock_releases_on_cancellation<H: Harness>(h: H) {
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
    until_unlocked("released after cancellation", &svc, &key).await;
    assert_eq!(svc.held_count(), 0);
}

/// Dropping a guard without `release` releases it in the background and stops renewal.
pub(super) async fn dropped_guard_releases_in_background<H: Harness>(h: H) {
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
    until_unlocked("released in the background", &svc, &key).await;
    assert_eq!(svc.held_count(), 0);
}

/// Every bad input is a typed error, and nothing is written to the store.
pub(super) async fn validation_errors_are_typed_and_write_nothing<H: Harness>(h: H) {
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
        with_ttl(Duration::ZERO),
        with_ttl(Duration::from_secs(301)),
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
