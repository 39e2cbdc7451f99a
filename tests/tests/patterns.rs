//! Every pattern example, on the memory backend (paused time) and on a real Redis server.

use std::sync::Arc;
use std::time::Duration;

use locks_core::LockBackend;
use locks_memory::MemoryBackend;
use locks_redis::RedisBackend;
use locks_testkit::redis_server::RedisServer;
use locks_tests::patterns;

fn memory() -> Arc<dyn LockBackend> {
    Arc::new(MemoryBackend::new())
}

/// A private redis-server and a backend on it. Fails loudly (with the fix) when no server can
/// be started.
async fn redis() -> (RedisServer, Arc<dyn LockBackend>) {
    let server = RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"));
    let backend = RedisBackend::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Redis server: {e}"));
    (server, Arc::new(backend))
}

async fn check_payment(backend: Arc<dyn LockBackend>) {
    let r = patterns::payment(backend, 4, 30).await.expect("payment");
    assert_eq!(r.charged_once, 30, "{r:?}");
    assert_eq!(r.double_charges, 0, "{r:?}");
    assert_eq!(r.skipped_already_paid, 30 * 3, "{r:?}");
}

async fn check_leader(backend: Arc<dyn LockBackend>) {
    let r = patterns::leader_election(backend, 3)
        .await
        .expect("election");
    assert_eq!(r.terms.len(), 3, "every node led once: {r:?}");
    assert!(r.terms.windows(2).all(|w| w[0] < w[1]), "{r:?}");
    assert_eq!(r.overlaps, 0, "{r:?}");
}

async fn check_pool(backend: Arc<dyn LockBackend>) {
    let r = patterns::resource_pool(backend, 12, 3, 5)
        .await
        .expect("pool");
    assert_eq!(r.jobs, 60);
    assert!(r.max_in_use <= 3, "{r:?}");
    assert_eq!(r.max_in_use, 3, "the pool was never fully used: {r:?}");
    assert_eq!(r.double_use, 0, "{r:?}");
}

async fn check_semaphore(backend: Arc<dyn LockBackend>) {
    let r = patterns::semaphore(backend, 3, 12)
        .await
        .expect("semaphore");
    assert!(r.max_concurrent <= 3, "{r:?}");
    let ttl = Duration::from_millis(500);
    assert!(
        r.crashed_permit_returned_after >= ttl - locks_core::drift_margin(ttl),
        "the crashed permit came back before its ttl: {r:?}"
    );
    assert!(
        r.crashed_permit_returned_after < Duration::from_secs(60),
        "the crashed permit never came back: {r:?}"
    );
}

async fn check_transfer(backend: Arc<dyn LockBackend>, each: u64) {
    let r = patterns::funds_transfer(backend, each)
        .await
        .expect("transfer");
    assert_eq!(r.transfers, each * 2);
    assert_eq!(r.total_before, r.total_after, "{r:?}");
}

async fn check_try_lock(backend: Arc<dyn LockBackend>) {
    let r = patterns::try_lock(backend, 4, 24).await.expect("try-lock");
    assert!(r.runs_per_job.iter().all(|&n| n == 1), "{r:?}");
    assert!(r.skipped_in_progress > 0, "workers never met: {r:?}");
}

async fn check_timeout(backend: Arc<dyn LockBackend>) {
    let budget = Duration::from_millis(300);
    let r = patterns::timeout(backend, budget).await.expect("timeout");
    assert!(r.waited >= budget, "{r:?}");
    assert!(r.attempts >= 2, "{r:?}");
    assert!(r.still_held, "{r:?}");
}

mod memory_backend {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn payment() {
        check_payment(memory()).await;
    }
    #[tokio::test(start_paused = true)]
    async fn leader_election() {
        check_leader(memory()).await;
    }
    #[tokio::test(start_paused = true)]
    async fn resource_pool() {
        check_pool(memory()).await;
    }
    #[tokio::test(start_paused = true)]
    async fn semaphore() {
        check_semaphore(memory()).await;
    }
    #[tokio::test(start_paused = true)]
    async fn funds_transfer_thousands_of_times() {
        check_transfer(memory(), 2_000).await;
    }
    #[tokio::test(start_paused = true)]
    async fn try_lock() {
        check_try_lock(memory()).await;
    }
    #[tokio::test(start_paused = true)]
    async fn timeout() {
        check_timeout(memory()).await;
    }
}

mod redis_backend {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn payment() {
        let (_server, backend) = redis().await;
        check_payment(backend).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leader_election() {
        let (_server, backend) = redis().await;
        check_leader(backend).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resource_pool() {
        let (_server, backend) = redis().await;
        check_pool(backend).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn semaphore() {
        let (_server, backend) = redis().await;
        check_semaphore(backend).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn funds_transfer_thousands_of_times() {
        let (_server, backend) = redis().await;
        check_transfer(backend, 1_000).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn try_lock() {
        let (_server, backend) = redis().await;
        check_try_lock(backend).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timeout() {
        let (_server, backend) = redis().await;
        check_timeout(backend).await;
    }
}
