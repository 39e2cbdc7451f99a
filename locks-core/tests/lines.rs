//! Local waiting lines are kept per `(key, kind)`.

mod common;

use std::time::Duration;

use locks_core::LeaseKind;

/// A mutex and the write side of a read-write lock of the same name are different locks: a
/// free write lock is granted at once while a mutex waiter of that name waits in its line.
#[tokio::test(start_paused = true)]
async fn mutex_and_write_lock_of_one_name_do_not_share_a_waiting_line() {
    let svc = common::memory_service(Duration::from_secs(10));
    let held = svc.acquire("config").await.expect("mutex");
    let waiter = tokio::spawn({
        let svc = svc.clone();
        async move { svc.acquire("config").await }
    });
    tokio::task::yield_now().await;
    assert_eq!(svc.waiters("config"), 1, "the mutex waiter is in its line");
    let write = tokio::time::timeout(Duration::from_millis(1), async {
        svc.rwlock("config").expect("rwlock").write().await
    })
    .await
    .expect("the write lock is not queued behind the mutex waiter")
    .expect("write lock");
    assert_eq!(write.kind(), LeaseKind::Write);
    write.release().await.expect("release write");
    held.release().await.expect("release mutex");
    waiter
        .await
        .expect("task")
        .expect("the mutex waiter gets the mutex")
        .release()
        .await
        .expect("release");
}
