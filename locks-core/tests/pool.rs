//! `Pool<T>`: N holders never share a resource, across services.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LockService};
use locks_memory::MemoryBackend;

#[tokio::test(start_paused = true)]
async fn holders_never_share_a_resource_across_services() {
    let store = MemoryBackend::new();
    let services: Vec<LockService> = (0..3)
        .map(|_| common::service_on(store.clone(), Duration::from_secs(10)))
        .collect();
    // Three real resources; every service names them in the same order.
    let in_use: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let most_at_once = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..18 {
        let pool = services[worker % 3]
            .pool("connections", vec![0usize, 1, 2])
            .expect("pool");
        let (in_use, most, total) = (in_use.clone(), most_at_once.clone(), total.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..4 {
                let conn = pool
                    .acquire_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(60)))
                    .await
                    .expect("a resource");
                let sharing = in_use[*conn].fetch_add(1, Ordering::SeqCst);
                assert_eq!(sharing, 0, "resource {} shared", *conn);
                let now = total.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1 + (worker + round) as u64 % 5)).await;
                total.fetch_sub(1, Ordering::SeqCst);
                in_use[*conn].fetch_sub(1, Ordering::SeqCst);
                conn.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    assert_eq!(
        most_at_once.load(Ordering::SeqCst),
        3,
        "every resource was used at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_refuses_try_and_an_empty_pool_is_an_error() {
    let locks = common::memory_service(Duration::from_secs(10));
    assert!(matches!(
        locks.pool::<u8>("none", Vec::new()),
        Err(LockError::InvalidOptions { .. })
    ));
    let pool = locks.pool("one", vec!["only"]).expect("pool");
    let held = pool.try_acquire().await.expect("free");
    assert_eq!(*held, "only");
    assert!(matches!(
        pool.try_acquire().await,
        Err(LockError::Contended { .. })
    ));
    drop(held); // given back in the background
    let mut again = None;
    for _ in 0..100 {
        if let Ok(g) = pool.try_acquire().await {
            again = Some(g);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(again.is_some(), "a dropped Pooled gives the resource back");
}
