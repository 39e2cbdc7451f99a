//! Read-write lock cases: readers share, writers exclude, writer preference, renewal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LostReason};
use tokio::time::timeout;

use super::common::{service, within};
use crate::Harness;

fn unique(name: &str) -> String {
    super::common::unique(&format!("primitives:{name}"))
}

/// Readers overlap with each other, never with a writer; writers never overlap.
pub(super) async fn rwlock_readers_share_writers_exclude<H: Harness>(h: H) {
    let name = unique("rw");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let readers = Arc::new(AtomicI64::new(0));
    let writers = Arc::new(AtomicI64::new(0));
    let max_readers = Arc::new(AtomicI64::new(0));
    let bad = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let rw = services[i % 3].rwlock(&name).expect("rwlock");
        let (readers, writers, max_readers, bad) = (
            readers.clone(),
            writers.clone(),
            max_readers.clone(),
            bad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(60));
            if i % 4 == 0 {
                let w = rw.write_opts(opts).await.expect("write");
                if writers.fetch_add(1, Ordering::SeqCst) != 0
                    || readers.load(Ordering::SeqCst) != 0
                {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                writers.fetch_sub(1, Ordering::SeqCst);
                w.release().await.expect("release");
            } else {
                let r = rw.read_opts(opts).await.expect("read");
                let now = readers.fetch_add(1, Ordering::SeqCst) + 1;
                max_readers.fetch_max(now, Ordering::SeqCst);
                if writers.load(Ordering::SeqCst) != 0 {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                readers.fetch_sub(1, Ordering::SeqCst);
                r.release().await.expect("release");
            }
        }));
    }
    within("24 tasks", futures::future::try_join_all(tasks))
        .await
        .expect("no panic");
    assert!(!bad.load(Ordering::SeqCst), "a writer overlapped someone");
    assert!(
        max_readers.load(Ordering::SeqCst) > 1,
        "readers never shared"
    );
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
    let name = unique("starve");
    let (r_svc, w_svc) = (service(h.backend()), service(h.backend()));
    let rw = r_svc.rwlock(&name).expect("rwlock");
    let first = rw.read().await.expect("read");
    let writer = {
        let rw = w_svc.rwlock(&name).expect("rwlock");
        tokio::spawn(async move {
            rw.write_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(20)))
                .await
        })
    };
    // Wait until the writer has marked itself as waiting.
    within("writer waiting", async {
        while !rw.inspect().await.expect("inspect").writer_waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
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
    rw.read()
        .await
        .expect("readers after the writer")
        .release()
        .await
        .expect("release");
}

/// A writer that gives up removes its waiting mark: readers are not blocked by a ghost.
pub(super) async fn rwlock_abandoned_writer_does_not_block_readers<H: Harness>(h: H) {
    let name = unique("ghost");
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
    within("mark removed", async {
        while rw.inspect().await.expect("inspect").writer_waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let second = rw.try_read().await.expect("no ghost writer");
    second.release().await.expect("release");
    reader.release().await.expect("release");
}

/// Read and write leases renew, and report revocation through `lost()`.
pub(super) async fn rwlock_leases_renew_and_report_loss<H: Harness>(h: H) {
    let name = unique("rwrenew");
    let svc = service(h.backend());
    let rw = svc.rwlock(&name).expect("rwlock");
    let ttl = Duration::from_millis(300);
    let r = rw
        .read_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("read");
    tokio::time::sleep(ttl * 4).await;
    assert!(r.is_held().await.expect("inspect"));
    h.expire(rw.key()).await;
    assert_eq!(
        timeout(ttl * 3, r.lost()).await.expect("lost"),
        LostReason::NotOwner
    );
    let w = rw
        .write_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("write");
    tokio::time::sleep(ttl * 4).await;
    assert!(w.is_held().await.expect("inspect"));
    assert!(w.fence() > r.fence());
    w.release().await.expect("release");
}
