//! `#[with_lock]` at run time: mutual exclusion between concurrent calls, keys from arguments
//! and their fields, the lease parameter, skip mode, acquire errors converted into the
//! caller's error type, and release after `Err`, panic and cancellation. On the memory backend
//! in tokio's paused time, and once on a real Redis server.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures::FutureExt;
use locks_core::{LeaseHandle, LockError, LockService};
use locks_macros::with_lock;
use locks_memory::MemoryBackend;
use locks_redis::RedisBackend;
use locks_testkit::redis_server::RedisServer;
use tokio::sync::oneshot;
use tokio::time::Instant;

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Declined,
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

/// What the bodies report, shared by the instances of one test.
#[derive(Default)]
struct Probe {
    /// Bodies running now, and the most ever seen at once.
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    runs: AtomicU32,
}

/// Application code with annotated methods: a ledger that posts to accounts, one posting per
/// account at a time.
struct Ledger {
    locks: LockService,
    probe: Arc<Probe>,
    panic_next: AtomicBool,
}

impl Ledger {
    fn new(locks: LockService) -> Self {
        Ledger::sharing(locks, &Arc::default())
    }

    /// Another instance (its own service) reporting to `probe`.
    fn sharing(locks: LockService, probe: &Arc<Probe>) -> Self {
        Ledger {
            locks,
            probe: probe.clone(),
            panic_next: AtomicBool::new(false),
        }
    }

    /// Post to `account`; the posting takes `work` (virtual time in the paused tests).
    #[with_lock(locks = self.locks, key = "account:{account}", ttl = "10s")]
    async fn post(
        &self,
        account: u32,
        work: Duration,
        lease: LeaseHandle,
    ) -> Result<u64, AppError> {
        let probe = &self.probe;
        let now = probe.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_in_flight.fetch_max(now, Ordering::SeqCst);
        probe.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(work).await;
        probe.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("posting to account {account} blew up");
        }
        Ok(lease.fence())
    }

    /// Waits at most 2 s for the account; declines when `decline`.
    #[with_lock(locks = &self.locks, key = "account:{account}", wait = "2s")]
    async fn transfer(&self, account: u32, decline: bool) -> Result<u32, AppError> {
        self.probe.runs.fetch_add(1, Ordering::SeqCst);
        if decline {
            return Err(AppError::Declined);
        }
        Ok(account)
    }

    /// Like `transfer`, waiting only briefly (for the real-time Redis test).
    #[with_lock(locks = self.locks, key = "account:{account}", wait = "50ms")]
    async fn transfer_briefly(&self, account: u32) -> Result<u32, AppError> {
        self.probe.runs.fetch_add(1, Ordering::SeqCst);
        Ok(account)
    }

    /// The nightly job: skipped when another instance runs it.
    #[with_lock(locks = self.locks, key = "job:{name}", on_contended = "skip")]
    async fn nightly(&self, name: &str, lease: LeaseHandle) -> Result<Option<u64>, AppError> {
        self.probe.runs.fetch_add(1, Ordering::SeqCst);
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("job {name} blew up");
        }
        if name == "failing" {
            return Err(AppError::Declined);
        }
        Ok(lease.fence())
    }

    /// Signals `started` once it holds the lock, then never finishes (until cancelled).
    #[with_lock(locks = self.locks, key = "account:{account}")]
    async fn stuck(&self, account: u32, started: oneshot::Sender<()>) -> Result<(), AppError> {
        let _ = started.send(());
        std::future::pending::<()>().await;
        Ok(())
    }

    fn runs(&self) -> u32 {
        self.probe.runs.load(Ordering::SeqCst)
    }

    fn max_in_flight(&self) -> u32 {
        self.probe.max_in_flight.load(Ordering::SeqCst)
    }
}

fn memory_service() -> LockService {
    LockService::new(MemoryBackend::new()).unwrap()
}

struct Customer {
    region: String,
}

struct Order {
    id: u64,
    customer: Customer,
}

/// A free function with a key from nested fields; reports what it saw under the lock.
#[with_lock(locks = locks, key = "order:{order.customer.region}/{order.id}", ttl = "10s")]
async fn ship(
    locks: &LockService,
    order: &Order,
    lease: &LeaseHandle,
) -> Result<(String, bool, Duration, u64), AppError> {
    let held_now = locks.is_locked(lease.key()).await?;
    let stored_fence = locks
        .inspect(lease.key())
        .await?
        .map_or(0, |info| info.fence);
    assert_eq!(
        stored_fence,
        lease.fence(),
        "the lease's fence is the store's"
    );
    Ok((lease.key().to_owned(), held_now, lease.ttl(), lease.fence()))
}

#[tokio::test(start_paused = true)]
async fn with_lock_concurrent_calls_exclude_each_other() {
    let ledger = Ledger::new(memory_service());
    let work = Duration::from_millis(10);

    let fences = futures::future::join_all((0..8).map(|_| ledger.post(1, work))).await;
    let mut fences: Vec<u64> = fences.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(ledger.max_in_flight(), 1, "two postings overlapped");
    assert_eq!(ledger.runs(), 8);
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 8, "every holder had its own fence");
    assert_eq!(ledger.locks.held_count(), 0);

    // Different keys do not exclude each other.
    ledger.probe.max_in_flight.store(0, Ordering::SeqCst);
    let (a, b) = tokio::join!(ledger.post(1, work), ledger.post(2, work));
    assert!(a.is_ok() && b.is_ok());
    assert_eq!(ledger.max_in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn with_lock_instances_sharing_a_store_exclude_each_other() {
    // Two application instances (two services) over one store.
    let store = MemoryBackend::new();
    let first = Ledger::new(LockService::new(store.clone()).unwrap());
    let second = Ledger::sharing(LockService::new(store).unwrap(), &first.probe);

    let calls = (0..6).map(|i| {
        let ledger = if i % 2 == 0 { &first } else { &second };
        ledger.post(9, Duration::from_millis(5))
    });
    let mut fences: Vec<u64> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first.max_in_flight(), 1, "the instances overlapped");
    assert_eq!(first.runs(), 6);
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 6, "every holder had its own fence");
    assert!(!first.locks.is_locked("account:9").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn with_lock_key_template_uses_fields() {
    let locks = memory_service();
    let order = Order {
        id: 42,
        customer: Customer {
            region: "eu".into(),
        },
    };

    let (key, held_during, ttl, fence) = ship(&locks, &order).await.unwrap();
    assert_eq!(key, "order:eu/42");
    assert!(held_during, "the body ran under the lock");
    assert_eq!(
        ttl,
        Duration::from_secs(10),
        "ttl = \"10s\" reached the lease"
    );
    assert!(fence > 0);
    assert!(!locks.is_locked("order:eu/42").await.unwrap(), "released");
}

#[tokio::test(start_paused = true)]
async fn with_lock_lease_parameter_gives_the_fence() {
    let ledger = Ledger::new(memory_service());

    let first = ledger.post(3, Duration::ZERO).await.unwrap();
    let second = ledger.post(3, Duration::ZERO).await.unwrap();
    assert!(first > 0 && second > first, "{first} then {second}");

    // By reference too, and it is the store's fence (asserted inside `ship`).
    let order = Order {
        id: 1,
        customer: Customer {
            region: "us".into(),
        },
    };
    let (_, _, _, fence) = ship(&ledger.locks, &order).await.unwrap();
    assert!(fence > second);
}

#[tokio::test(start_paused = true)]
async fn with_lock_skip_returns_none_while_held() {
    let ledger = Ledger::new(memory_service());

    let held = ledger.locks.acquire("job:nightly").await.unwrap();
    let start = Instant::now();
    assert!(matches!(ledger.nightly("nightly").await, Ok(None)));
    assert_eq!(start.elapsed(), Duration::ZERO, "one attempt, no waiting");
    assert_eq!(ledger.runs(), 0, "the body did not run");
    held.release().await.unwrap();

    let fence = ledger.nightly("nightly").await.unwrap();
    assert!(fence.is_some_and(|f| f > 0), "{fence:?}");
    assert_eq!(ledger.runs(), 1);
    assert!(!ledger.locks.is_locked("job:nightly").await.unwrap());

    // An error body: `Err` comes through, and the lock is released.
    assert!(matches!(
        ledger.nightly("failing").await,
        Err(AppError::Declined)
    ));
    assert!(!ledger.locks.is_locked("job:failing").await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn with_lock_acquire_timeout_becomes_the_callers_error() {
    let ledger = Ledger::new(memory_service());

    let held = ledger.locks.acquire("account:5").await.unwrap();
    let start = Instant::now();
    let err = ledger.transfer(5, false).await.unwrap_err();
    match err {
        AppError::Lock(LockError::AcquireTimeout { key, .. }) => assert_eq!(key, "account:5"),
        other => panic!("{other:?}"),
    }
    assert_eq!(start.elapsed(), Duration::from_secs(2), "wait = \"2s\"");
    assert_eq!(ledger.runs(), 0, "the body did not run");
    held.release().await.unwrap();

    // Other acquire errors too: a key template that renders an invalid key.
    let locks = memory_service();
    let order = Order {
        id: 1,
        customer: Customer {
            region: "x".repeat(10_000),
        },
    };
    assert!(matches!(
        ship(&locks, &order).await,
        Err(AppError::Lock(LockError::InvalidKey { .. }))
    ));
}

#[tokio::test(start_paused = true)]
async fn with_lock_releases_after_an_err_body() {
    let ledger = Ledger::new(memory_service());

    assert!(matches!(
        ledger.transfer(7, true).await,
        Err(AppError::Declined)
    ));
    assert!(!ledger.locks.is_locked("account:7").await.unwrap());
    assert_eq!(ledger.locks.held_count(), 0);
    // Free for the next caller at once.
    assert_eq!(ledger.transfer(7, false).await.unwrap(), 7);
}

#[tokio::test(start_paused = true)]
async fn with_lock_releases_after_a_panic() {
    let ledger = Ledger::new(memory_service());

    ledger.panic_next.store(true, Ordering::SeqCst);
    let caught = AssertUnwindSafe(ledger.post(8, Duration::from_millis(1)))
        .catch_unwind()
        .await;
    let panic = caught.expect_err("the body panicked");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, "posting to account 8 blew up");
    // Released before the panic resumed: no background task to wait for.
    assert!(!ledger.locks.is_locked("account:8").await.unwrap());
    assert_eq!(ledger.locks.held_count(), 0);

    // Skip mode too.
    ledger.panic_next.store(true, Ordering::SeqCst);
    let caught = AssertUnwindSafe(ledger.nightly("nightly"))
        .catch_unwind()
        .await;
    assert!(caught.is_err());
    assert!(!ledger.locks.is_locked("job:nightly").await.unwrap());
    assert_eq!(ledger.locks.held_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn with_lock_releases_when_the_call_is_cancelled() {
    let ledger = Arc::new(Ledger::new(memory_service()));

    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn({
        let ledger = ledger.clone();
        async move { ledger.stuck(4, tx).await }
    });
    rx.await.unwrap();
    assert!(ledger.locks.is_locked("account:4").await.unwrap());

    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The dropped guard releases in the background: let that task run.
    for _ in 0..100 {
        if !ledger.locks.is_locked("account:4").await.unwrap() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(!ledger.locks.is_locked("account:4").await.unwrap());
    assert_eq!(ledger.transfer(4, false).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_lock_on_redis() {
    let server = RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"));
    let connect = || async {
        RedisBackend::connect(&server.url())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test Redis server: {e}"))
    };
    // Two instances, each with its own connection.
    let first = Arc::new(Ledger::new(LockService::new(connect().await).unwrap()));
    let second = Arc::new(Ledger::sharing(
        LockService::new(connect().await).unwrap(),
        &first.probe,
    ));

    let calls = (0..6).map(|i| {
        let ledger = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tokio::spawn(async move { ledger.post(1, Duration::from_millis(5)).await })
    });
    let mut fences = Vec::new();
    for call in futures::future::join_all(calls).await {
        fences.push(call.unwrap().unwrap());
    }
    assert_eq!(first.max_in_flight(), 1, "the instances overlapped");
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 6, "every holder had its own fence");

    // Skip mode against the other instance's lease.
    let held = second.locks.acquire("job:nightly").await.unwrap();
    assert!(matches!(first.nightly("nightly").await, Ok(None)));
    held.release().await.unwrap();
    assert!(first.nightly("nightly").await.unwrap().is_some());

    // The acquire timeout converted, and release after an error body.
    let held = second.locks.acquire("account:2").await.unwrap();
    assert!(matches!(
        first.transfer_briefly(2).await,
        Err(AppError::Lock(LockError::AcquireTimeout { .. }))
    ));
    held.release().await.unwrap();
    assert!(matches!(
        first.transfer(2, true).await,
        Err(AppError::Declined)
    ));
    assert!(!second.locks.is_locked("account:2").await.unwrap());
    first.locks.shutdown().await;
    second.locks.shutdown().await;
}
