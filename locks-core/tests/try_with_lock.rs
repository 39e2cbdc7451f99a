//! `try_with_lock`: runs only if the lock is free, and releases like `with_lock`.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use locks_core::{LockError, LockService};

fn locks() -> LockService {
    common::memory_service(Duration::from_secs(10))
}

#[tokio::test(start_paused = true)]
async fn held_elsewhere_skips_without_running_the_work() {
    let locks = locks();
    let held = locks.acquire("job").await.expect("acquire");
    let mut ran = false;
    let r = locks.try_with_lock("job", |_| async { ran = true }).await;
    assert_eq!(r.expect("no error"), None);
    assert!(!ran, "the work ran while the lock was held elsewhere");
    held.release().await.expect("release");
}

#[tokio::test(start_paused = true)]
async fn the_lock_is_released_after_success_error_panic_and_cancellation() {
    let locks = locks();
    // Success: the value comes back, the lock is free afterwards.
    let fence = locks
        .try_with_lock("job", |lease| async move { lease.fence() })
        .await
        .expect("ok");
    assert!(fence.is_some_and(|f| f > 0));
    assert!(!locks.is_locked("job").await.expect("inspect"));

    // An error is a value of the work's type.
    let r: Option<Result<(), &str>> = locks
        .try_with_lock("job", |_| async { Err("failed") })
        .await
        .expect("ok");
    assert_eq!(r, Some(Err("failed")));
    assert!(!locks.is_locked("job").await.expect("inspect"));

    // A panic is released, then resumed.
    let panicked = AssertUnwindSafe(locks.try_with_lock("job", |_| async { panic!("boom") }))
        .catch_unwind()
        .await;
    assert!(panicked.is_err());
    assert!(!locks.is_locked("job").await.expect("inspect"));

    // Cancelled while the work runs: the guard is dropped and releases in the background.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        locks.try_with_lock("job", |_| std::future::pending::<()>()),
    )
    .await;
    assert!(cancelled.is_err());
    // The background release needs a few polls of the runtime, no time.
    let mut released = false;
    for _ in 0..100 {
        if !locks.is_locked("job").await.expect("inspect") {
            released = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(released, "a cancelled try_with_lock left the lock held");
}

#[tokio::test(start_paused = true)]
async fn other_errors_are_returned() {
    let locks = locks();
    let r = locks.try_with_lock("", |_| async {}).await;
    assert!(matches!(r, Err(LockError::InvalidKey { .. })), "{r:?}");
}
