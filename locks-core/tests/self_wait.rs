//! A task waiting for a lock it already holds gets `SelfWait` at once, not a timeout.

mod common;

use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LockService};
use locks_memory::MemoryBackend;

#[tokio::test(start_paused = true)]
async fn a_task_that_holds_the_lock_is_refused_at_once() {
    let locks = common::memory_service(Duration::from_secs(10));
    let task = tokio::spawn({
        let locks = locks.clone();
        async move {
            let guard = locks.acquire("job").await.expect("acquire");
            let started = tokio::time::Instant::now();
            let again = locks
                .acquire_opts(
                    "job",
                    AcquireOptions::new().wait_timeout(Duration::from_secs(30)),
                )
                .await;
            assert!(
                matches!(&again, Err(LockError::SelfWait { key }) if key == "job"),
                "{again:?}"
            );
            assert_eq!(started.elapsed(), Duration::ZERO, "it did not wait");
            // Other keys, and the write side of a read-write lock of the same name, are fine.
            let other = locks.acquire("other").await.expect("another key");
            other.release().await.expect("release");
            guard.release().await.expect("release");
            // Once released, the same task takes it again.
            locks
                .acquire("job")
                .await
                .expect("again")
                .release()
                .await
                .expect("release");
        }
    });
    task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn another_task_waits_as_usual_and_detection_can_be_turned_off() {
    let locks = common::memory_service(Duration::from_secs(10));
    let held = locks.acquire("job").await.expect("acquire");
    let waited = in_a_new_task(locks.clone(), false).await;
    assert!(
        matches!(waited, Err(LockError::AcquireTimeout { .. })),
        "{waited:?}"
    );
    held.release().await.expect("release");

    let off = LockService::builder(MemoryBackend::new())
        .detect_self_wait(false)
        .build()
        .expect("service");
    let waited = in_a_new_task(off, true).await;
    assert!(
        matches!(waited, Err(LockError::AcquireTimeout { .. })),
        "{waited:?}"
    );
}

/// In a new task: take `job` first if asked, then wait up to 50 ms for `job`.
async fn in_a_new_task(locks: LockService, take_first: bool) -> Result<(), LockError> {
    tokio::spawn(async move {
        let mut held = None;
        if take_first {
            held = Some(locks.acquire("job").await.expect("acquire"));
        }
        let wait = AcquireOptions::new().wait_timeout(Duration::from_millis(50));
        let result = locks.acquire_opts("job", wait).await.map(drop);
        drop(held);
        result
    })
    .await
    .expect("task")
}

/// A lease the task lost (revoked, deadline passed) does not count: taking the lock again is
/// what its holder should do.
#[tokio::test(start_paused = true)]
async fn a_lost_lease_does_not_count_as_held() {
    let locks = common::memory_service(Duration::from_secs(10));
    let task = tokio::spawn({
        let locks = locks.clone();
        async move {
            let guard = locks.acquire("job").await.expect("acquire");
            assert!(locks.force_release("job").await.expect("revoke"));
            // The next renewal hears "not owner".
            assert_eq!(guard.lost().await, locks_core::LostReason::NotOwner);
            let again = locks.acquire("job").await.expect("taken again");
            again.release().await.expect("release");
            drop(guard);
        }
    });
    task.await.expect("task");
}

/// A dropped guard no longer counts, though its release runs in the background: the task may
/// wait for the lock again at once.
#[tokio::test(start_paused = true)]
async fn a_dropped_guard_does_not_count_as_held() {
    let locks = common::memory_service(Duration::from_secs(10));
    let task = tokio::spawn({
        let locks = locks.clone();
        async move {
            drop(locks.acquire("job").await.expect("acquire"));
            let again = locks
                .acquire("job")
                .await
                .expect("waits for the background release");
            again.release().await.expect("release");
        }
    });
    task.await.expect("task");
}
