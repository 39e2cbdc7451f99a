//! The recording backend in fair mode: a lease handed over by a release (no acquire call by its
//! new holder) is recorded as acquired, so the assertions see who held the lock when.

use locks_core::{AcquireOptions, LockService};
use locks_testkit::recording::{LockEventKind, RecordingBackend};

#[tokio::test(start_paused = true)]
async fn a_fair_hand_off_is_recorded_as_an_acquisition() {
    let rec = RecordingBackend::memory();
    let a: LockService = rec.service().expect("service");
    let b: LockService = rec.service().expect("service");
    let fair = || AcquireOptions::new().fair(true);
    let held = a.acquire_opts("stock:1", fair()).await.expect("a");
    let waiter = tokio::spawn(async move { b.acquire_opts("stock:1", fair()).await });
    while !rec
        .events_for("stock:1")
        .iter()
        .any(|e| matches!(e.kind, LockEventKind::Contended { .. }))
    {
        tokio::task::yield_now().await;
    }
    held.release().await.expect("release");
    let next = waiter.await.expect("task").expect("b");
    rec.assert_held("stock:1");
    let acquired: Vec<_> = rec
        .events_for("stock:1")
        .into_iter()
        .filter(|e| e.kind == LockEventKind::Acquired)
        .map(|e| e.fence)
        .collect();
    assert_eq!(acquired.len(), 2, "{acquired:?}");
    assert_eq!(acquired[1], Some(next.fence()));
    next.release().await.expect("release");
    rec.assert_all_released();
}
