//! Safety of the primitives on a real store: a single write attempt leaves nothing behind, and
//! an election loop does not spin on a failing store.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Decorator, Operation, Outcome};
use locks_core::{AcquireOptions, BackendError, LockBackend, LockError, LockService, Wake};
use locks_memory::MemoryBackend;
use locks_testkit::faulty::FaultyBackend;

/// Readers hold the lock; `try_write` fails at once, and leaves no "writer waiting" mark: a
/// new reader gets in right away, and a listener of the key hears nothing.
#[tokio::test(start_paused = true)]
async fn try_write_leaves_no_waiting_mark_and_wakes_nobody() {
    let store = MemoryBackend::new();
    let locks = LockService::new(store.clone()).expect("service");
    let rw = locks.rwlock("doc").expect("rwlock");
    let first = rw.read().await.expect("first reader");
    let mut listener = store.listen(rw.key()).await.expect("listen");

    match rw.try_write().await {
        Err(LockError::Contended { key, remaining }) => {
            assert_eq!(key, "doc");
            assert!(
                remaining.is_some(),
                "the readers' remaining ttl is the hint"
            );
        }
        other => panic!("try_write beside a reader: {other:?}"),
    }
    assert!(
        !rw.inspect().await.expect("inspect").writer_waiting,
        "a single attempt must not mark the writer as waiting"
    );
    let second = rw
        .try_read()
        .await
        .expect("a new reader gets in at once after a failed try_write");
    assert_eq!(
        listener
            .wait_for_release(Duration::from_millis(10))
            .await
            .expect("wait"),
        Wake::TimedOut,
        "a failed try_write must not publish a release"
    );

    first.release().await.expect("release");
    second.release().await.expect("release");
    let w = rw
        .try_write()
        .await
        .expect("a free lock is written at once");
    assert!(rw.try_read().await.is_err());
    w.release().await.expect("release");
}

/// Refuses every acquire attempt after `cap` of them with a permanent error, so that a loop
/// that spins ends (with an error) instead of hanging the test.
#[derive(Debug)]
struct Capped {
    inner: FaultyBackend,
    attempts: AtomicU32,
    cap: u32,
}

#[async_trait]
impl Decorator for Capped {
    fn inner(&self) -> &dyn LockBackend {
        &self.inner
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        if matches!(op.action, Action::TryAcquire { .. })
            && self.attempts.fetch_add(1, Ordering::SeqCst) >= self.cap
        {
            return Err(BackendError::permanent(
                "too many attempts: the campaigns spin",
            ));
        }
        op.send(&self.inner).await
    }
}
locks_core::impl_lock_backend!(Capped);

/// A store that fails every call at once, and campaigns with no wait budget (each campaign
/// is one attempt): over 10 s of virtual time `run_until` campaigns a bounded number of times,
/// paced by the retry policy (10 ms doubling to 500 ms, 20 % jitter: 20 to 30 campaigns).
#[tokio::test(start_paused = true)]
async fn run_until_backs_off_between_failed_campaigns() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    faulty.set_unavailable(true);
    let capped = std::sync::Arc::new(Capped {
        inner: faulty.clone(),
        attempts: AtomicU32::new(0),
        cap: 1_000,
    });
    let locks = LockService::builder_arc(capped.clone())
        .build()
        .expect("service");
    let election = locks.election("scheduler").expect("election");
    let opts = AcquireOptions::new().wait_timeout(Duration::ZERO);

    let started = tokio::time::Instant::now();
    let run = election
        .run_until(
            opts,
            |_| async { panic!("never elected: the store is down") },
            tokio::time::sleep(Duration::from_secs(10)),
        )
        .await;
    assert!(run.is_ok(), "the loop spun into the cap: {run:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    let attempts = capped.attempts.load(Ordering::SeqCst);
    assert!(
        (10..=40).contains(&attempts),
        "{attempts} campaigns in 10 s"
    );
    // Each failed attempt is also followed by a background release of whatever it may have
    // created, which fails the same way.
    assert!(faulty.injected() >= u64::from(attempts));
}
