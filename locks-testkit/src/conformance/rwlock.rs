//! Read-write lock cases: readers share, writers exclude, writer preference, renewal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, RwLock};

use super::common::{
    Occupancy, acquire_and_release, assert_lost_after_expiry, assert_renewed_past_ttl, join_all,
    service, unique_primitive, waiting_at_most, with_ttl, within,
};
use crate::Harness;

/// Poll `rw` until its writer-waiting mark is `waiting`, within the time limit.
async fn until_writer_waiting_is(what: &str, rw: &RwLock, waiting: bool) {
    within(what, async {
        while rw.inspect().await.expect("inspect").writer_waiting != waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

/// Readers overlap with each other, never with a writer; writers never overlap.
pub(super) async fn rwlock_readers_share_writers_exclude<H: Harness>(h: H) {
    let name = unique_primitive("rw");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let readers = Arc::new(Occupancy::default());
    let writers = Arc::new(Occupancy::default());
    let bad = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let rw = services[i % 3].rwlock(&name).expect("rwlock");
        let (readers, writers, bad) = (readers.clone(), writers.clone(), bad.clone());
        tasks.push(tokio::spawn(async move {
            let opts = waiting_at_most(Duration::from_secs(60));
            if i % 4 == 0 {
                let w = rw.write_opts(opts).await.expect("write");
                if writers.enter() != 1 || readers.now() != 0 {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                writers.leave();
                w.release().await.expect("release");
            } else {
                let r = rw.read_opts(opts).await.expect("read");
                readers.enter();
                if writers.now() != 0 {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                readers.leave();
                r.release().await.expect("release");
            }
        }));
    }
    join_all("24 tasks", tasks).await;
    assert!(!bad.load(Ordering::SeqCst), "a writer overlapped someone");
    assert!(readers.most() > 1, "readers never shared");
    let info = services[0]
        .rwlock(&name)
        .expect("rwlock")
        .inspect()
        .await
        .expect("inspect");
    assert!(info.readers.is_empty() && info.writer.is_none());
}

/// A waiting writer blocks new readers, so a stream of overlapping readers cannot starve it.
pub(super) async fn rwlock_writer_is_not_starved_by_readers<H: Harness>(h: H) {
    let name = unique_primitive("starve");
    let (r_svc, w_svc) = (service(h.backend()), service(h.backend()));
    let rw = r_svc.rwlock(&name).expect("rwlock");
    let first = rw.read().await.expect("read");
    let writer = {
        let rw = w_svc.rwlock(&name).expect("rwlock");
        tokio::spawn(async move {
            rw.write_opts(waiting_at_most(Duration::from_secs(20)))
                .await
        })
    };
    // Wait until the writer has marked itself as waiting.
    until_writer_waiting_is("writer waiting", &rw, true).await;
    assert!(
        matches!(rw.try_read().await, Err(LockError::Contended { .. })),
        "a new reader got in ahead of the waiting writer"
    );
    // The reader that was in leaves; the writer gets in although readers keep asking.
    let readers_keep_asking = {
        let rw = rw.clone();
        tokio::spawn(async move {
            let mut got = 0u32;
            for _ in 0..50 {
                if let Ok(g) = rw.try_read().await {
                    got += 1;
                    g.release().await.expect("release");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            got
        })
    };
    first.release().await.expect("release");
    let w = within("writer", writer)
        .await
        .expect("task")
        .expect("writer not starved");
    assert_eq!(
        rw.inspect().await.expect("inspect").writer.map(|i| i.owner),
        Some(w.token())
    );
    w.release().await.expect("release");
    within("readers", readers_keep_asking).await.expect("task");
    acquire_and_release(rw.read(), "readers after the writer").await;
}

/// A writer that gives up removes its waiting mark: readers are not blocked by a ghost.
pub(super) async fn rwlock_abandoned_writer_does_not_block_readers<H: Harness>(h: H) {
    let name = unique_primitive("ghost");
    let svc = service(h.backend());
    let rw = svc.rwlock(&name).expect("rwlock");
    let reader = rw.read().await.expect("read");
    let err = rw
        .write_opts(
            AcquireOptions::new()
                .wait_timeout(Duration::from_millis(200))
                .ttl(Duration::from_secs(60)),
        )
        .await
        .expect_err("readers hold it");
    assert!(matches!(err, LockError::AcquireTimeout { .. }), "{err:?}");
    until_writer_waiting_is("mark removed", &rw, false).await;
    acquire_and_release(rw.try_read(), "no ghost writer").await;
    reader.release().await.expect("release");
}

/// Read and write leases renew, and report revocation through `lost()`.
pub(super) async fn rwlock_leases_renew_and_report_loss<H: Harness>(h: H) {
    let name = unique_primitive("rwrenew");
    let svc = service(h.backend());
    let rw = svc.rwlock(&name).expect("rwlock");
    let ttl = Duration::from_millis(300);
    let r = rw.read_opts(with_ttl(ttl)).await.expect("read");
    assert_renewed_past_ttl(&r, ttl).await;
    assert_lost_after_expiry(&h, rw.key(), &r, ttl).await;
    let w = rw.write_opts(with_ttl(ttl)).await.expect("write");
    assert_renewed_past_ttl(&w, ttl).await;
    assert!(w.fence() > r.fence());
    w.release().await.expect("release");
}
