//! Memory-backend behaviour that the shared suite does not cover: the manual clock ("GC
//! pauses", skewed clocks) and the fault decorator over it.

use std::time::Duration;

use locks_core::{
    AcquireOptions, LeaseKind, LeaseState, LockBackend, LockError, LockGuard, LockService,
    LostReason, OwnerToken,
};
use locks_memory::{ManualClock, MemoryBackend};
use locks_testkit::faulty::FaultyBackend;

fn service<B: LockBackend + Clone>(backend: &B) -> LockService {
    LockService::builder(backend.clone())
        .default_ttl(Duration::from_secs(10))
        .build()
        .expect("valid service")
}

/// A service over a memory backend on a manual clock takes `name` (10 s ttl), then the store's
/// clock jumps `ahead` (the holder's does not).
async fn held_while_the_store_clock_jumps(
    name: &str,
    ahead: Duration,
) -> (MemoryBackend, LockService, LockGuard) {
    let clock = ManualClock::new();
    let backend = MemoryBackend::with_clock(clock.clone());
    let svc = service(&backend);
    let guard = svc.acquire(name).await.expect("acquire");
    clock.advance(ahead);
    (backend, svc, guard)
}

/// The store's clock jumps past the ttl while the holder is "paused": the store lets a second
/// holder in with a larger fence, and the first holder's late release is refused.
#[tokio::test(start_paused = true)]
async fn gc_pause_lets_the_next_holder_in_and_refuses_the_late_release() {
    let clock = ManualClock::new();
    let backend = MemoryBackend::with_clock(clock.clone());
    let (a, b) = (service(&backend), service(&backend));
    let first = a
        .acquire_opts("order:1", AcquireOptions::new().auto_renew(false))
        .await
        .expect("acquire");
    assert!(matches!(
        b.try_acquire("order:1").await,
        Err(LockError::Contended { .. })
    ));
    clock.advance(Duration::from_secs(11));
    let second = b
        .try_acquire("order:1")
        .await
        .expect("expired in the store");
    assert!(second.fence() > first.fence());
    // The paused holder still believes it holds the lock: only the fence can stop it.
    assert_eq!(first.state(), LeaseState::Held);
    assert!(!first.is_held().await.expect("inspect"));
    assert!(matches!(
        first.release().await,
        Err(LockError::NotOwner { .. })
    ));
    second.release().await.expect("release");
}

/// With a store clock that runs ahead of the holder, renewal still notices the loss.
#[tokio::test(start_paused = true)]
async fn a_store_clock_running_ahead_is_noticed_at_the_next_renewal() {
    // The store: expired; the holder: 0 s elapsed.
    let (_backend, _svc, guard) =
        held_while_the_store_clock_jumps("skew", Duration::from_secs(10)).await;
    let reason = tokio::time::timeout(Duration::from_secs(6), guard.lost())
        .await
        .expect("lost at the first renewal (ttl × 0.5)");
    assert_eq!(reason, LostReason::NotOwner);
}

/// The remaining-ttl hint comes from the store's clock.
#[tokio::test(start_paused = true)]
async fn inspect_reports_remaining_ttl_by_the_store_clock() {
    let (backend, svc, guard) =
        held_while_the_store_clock_jumps("hint", Duration::from_secs(4)).await;
    let info = svc.inspect("hint").await.expect("inspect").expect("held");
    assert_eq!(info.remaining, Duration::from_secs(6));
    assert_eq!(info.owner, guard.token());
    assert_eq!(backend.clock().now(), Duration::from_secs(4));
    assert_eq!(backend.live_leases(), 1);
    guard.release().await.expect("release");
    assert_eq!(backend.live_leases(), 0);
}

/// The fault decorator over the memory backend: transient failures are retried, a lost reply
/// is idempotent, an unavailable store makes the holder lose the lease at its local deadline.
#[tokio::test(start_paused = true)]
async fn fault_decorator_drives_retry_and_loss() {
    let backend = FaultyBackend::new(MemoryBackend::new());
    let svc = service(&backend);
    backend.fail_next(2);
    let guard = svc.acquire("faults").await.expect("retried");
    assert_eq!(backend.injected(), 2);
    guard.release().await.expect("release");

    backend.lose_replies_next(1);
    let guard = svc.acquire("faults").await.expect("acquire");
    let info = svc.inspect("faults").await.expect("inspect").expect("held");
    assert_eq!(info.owner, guard.token(), "the retry found its own lease");

    backend.set_unavailable(true);
    assert_eq!(guard.lost().await, LostReason::DeadlineExpired);
    backend.clear();
    // The holder gave up *before* the store expires the lease (safety rule 1) ...
    assert!(svc.is_locked("faults").await.expect("inspect"));
    // ... which happens one drift margin later.
    tokio::time::sleep(locks_core::drift_margin(Duration::from_secs(10))).await;
    assert!(!svc.is_locked("faults").await.expect("inspect"));

    // Latency is tokio time: with paused time it costs nothing real.
    backend.set_latency(Duration::from_millis(50));
    let before = tokio::time::Instant::now();
    let token = OwnerToken::new();
    let key = svc.key("latency").expect("key");
    backend
        .try_acquire(&key, LeaseKind::Mutex, token, Duration::from_secs(1))
        .await
        .expect("acquire");
    assert!(before.elapsed() >= Duration::from_millis(50));
}
