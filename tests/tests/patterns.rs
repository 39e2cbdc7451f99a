//! Every pattern example, on the memory backend (paused time) and on a real Redis server. The
//! example files are included as modules, so the code tested is the code the examples run
//! (their `main`s are compiled here too, unused; `payment_with_lock` runs through its `main`).

use std::sync::Arc;
use std::time::Duration;

use locks_core::LockBackend;
use locks_memory::MemoryBackend;
use locks_redis::RedisBackend;
use locks_testkit::redis_server::RedisServer;

// Each example file as a module (its `main` is unused here).
#[allow(dead_code)]
#[path = "../examples/funds_transfer.rs"]
mod funds_transfer;
#[allow(dead_code)]
#[path = "../examples/leader_election.rs"]
mod leader_election;
#[allow(dead_code)]
#[path = "../examples/payment.rs"]
mod payment;
#[allow(dead_code)]
#[path = "../examples/resource_pool.rs"]
mod resource_pool;
#[allow(dead_code)]
#[path = "../examples/semaphore.rs"]
mod semaphore;
#[allow(dead_code)]
#[path = "../examples/timeout.rs"]
mod timeout;
#[allow(dead_code)]
#[path = "../examples/try_lock.rs"]
mod try_lock;

// `#[with_lock]` on the payment service: run as its own program, `main` and all.
#[path = "../examples/payment_with_lock.rs"]
mod payment_with_lock;

/// The `payment_with_lock` example runs to success (memory backend, unless `REDIS_URL` is set):
/// every order charged exactly once.
#[test]
fn payment_with_lock_example_runs() {
    payment_with_lock::main().unwrap_or_else(|e| panic!("the example failed: {e}"));
}

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
    let r = payment::run(backend, 4, 30).await.expect("payment");
    assert_eq!(r.charged_once, 30, "{r:?}");
    assert_eq!(r.double_charges, 0, "{r:?}");
    assert_eq!(r.already_paid, 30 * 3, "{r:?}");
}

async fn check_leader(backend: Arc<dyn LockBackend>) {
    let r = leader_election::run(backend, 3).await.expect("election");
    assert_eq!(r.terms.len(), 3, "every node led once: {r:?}");
    assert!(r.terms.windows(2).all(|w| w[0] < w[1]), "{r:?}");
    assert_eq!(r.overlaps, 0, "{r:?}");
}

async fn check_pool(backend: Arc<dyn LockBackend>) {
    let r = resource_pool::run(backend, 12, 3, 5).await.expect("pool");
    assert_eq!(r.queries, 60);
    assert_eq!(
        r.max_in_use, 3,
        "more than 3, or the pool was never fully used: {r:?}"
    );
    assert_eq!(r.double_use, 0, "{r:?}");
}

async fn check_semaphore(backend: Arc<dyn LockBackend>) {
    let r = semaphore::run(backend, 3, 12).await.expect("semaphore");
    assert!(r.max_concurrent <= 3, "{r:?}");
    let ttl = Duration::from_millis(500);
    let returned = r
        .crashed_permit_returned_after
        .unwrap_or_else(|| panic!("the crashed permit never came back: {r:?}"));
    assert!(
        returned >= ttl - locks_core::drift_margin(ttl),
        "the crashed permit came back before its ttl: {r:?}"
    );
}

async fn check_transfer(backend: Arc<dyn LockBackend>, each: u64) {
    let r = funds_transfer::run(backend, each).await.expect("transfer");
    assert_eq!(r.transfers, each * 2);
    assert_eq!(r.total_before, r.total_after, "{r:?}");
}

async fn check_try_lock(backend: Arc<dyn LockBackend>) {
    let r = try_lock::run(backend, 4, 24).await.expect("try-lock");
    assert_eq!(r.runs_per_job.len(), 24);
    assert!(r.runs_per_job.iter().all(|&n| n == 1), "{r:?}");
    assert!(r.skipped_in_progress > 0, "workers never met: {r:?}");
}

async fn check_timeout(backend: Arc<dyn LockBackend>) {
    let budget = Duration::from_millis(300);
    let r = timeout::run(backend, budget).await.expect("timeout");
    assert!(r.waited >= budget, "{r:?}");
    assert!(r.attempts >= 2, "{r:?}");
    assert!(r.still_held, "{r:?}");
}

/// One test per pattern on each backend, from one list: `test: check;` runs `check(backend)`,
/// `test: check memory(a) redis(b);` runs `check(backend, a)` on the memory backend and
/// `check(backend, b)` on Redis. The memory backend runs in paused time; Redis is a private
/// server, in real time.
macro_rules! on_both_backends {
    ($($test:ident: $check:ident $(memory($($m:expr),*) redis($($r:expr),*))?;)*) => {
        mod memory_backend {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $test() {
                    $check(memory() $($(, $m)*)?).await;
                }
            )*
        }

        mod redis_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_server, backend) = redis().await;
                    $check(backend $($(, $r)*)?).await;
                }
            )*
        }
    };
}

on_both_backends! {
    payment: check_payment;
    leader_election: check_leader;
    resource_pool: check_pool;
    semaphore: check_semaphore;
    funds_transfer_thousands_of_times: check_transfer memory(2_000) redis(1_000);
    try_lock: check_try_lock;
    timeout: check_timeout;
}
