//! Mutex cases: mutual exclusion, ownership, fencing, expiry, renewal and loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{
    AcquireOptions, AcquireResult, LeaseKind, LeaseState, LockBackend, LockError, LostReason,
    OwnerToken,
};
use tokio::time::{Instant, timeout};

use super::common::{
    Occupancy, acquire_and_release, acquire_with_ttl, assert_renewed_past_ttl, faulty_service,
    holder, join_all, service, unique, waiting_at_most, within,
};
use crate::Harness;

const M: LeaseKind = LeaseKind::Mutex;

/// 100 tasks on 4 services over one store: at most one inside the critical section, ever.
pub(super) async fn mutual_exclusion_100_tasks<H: Harness>(h: H) {
    let key = unique("mutex");
    let services: Vec<_> = (0..4).map(|_| service(h.backend())).collect();
    let occupancy = Arc::new(Occupancy::default());
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let svc = services[i % services.len()].clone();
        let (key, occupancy, done) = (key.clone(), occupancy.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let guard = svc
                .acquire_opts(&key, waiting_at_most(Duration::from_secs(60)))
                .await
                .expect("acquire");
            occupancy.enter();
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            tokio::task::yield_now().await;
            occupancy.leave();
            guard.release().await.expect("release");
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    join_all("100 tasks", tasks).await;
    assert_eq!(done.load(Ordering::SeqCst), 100);
    assert_eq!(occupancy.most(), 1, "two holders overlapped");
    assert!(!services[0].is_locked(&key).await.expect("inspect"));
}

/// `try_acquire` fails at once while another owner holds the key, and succeeds after release.
pub(super) async fn try_acquire_fails_while_held<H: Harness>(h: H) {
    let key = unique("try");
    let (a, b) = (service(h.backend()), service(h.backend()));
    let guard = a.try_acquire(&key).await.expect("free key");
    match b.try_acquire(&key).await {
        Err(LockError::Contended { key: k, remaining }) => {
            assert_eq!(k, key);
            let remaining = remaining.expect("a ttl hint");
            assert!(remaining <= Duration::from_secs(2));
        }
        other => panic!("expected Contended, got {other:?}"),
    }
    // Same service, same key: not reentrant.
    assert!(matches!(
        a.try_acquire(&key).await,
        Err(LockError::Contended { .. })
    ));
    assert!(b.is_locked(&key).await.expect("inspect"));
    guard.release().await.expect("release");
    assert!(!b.is_locked(&key).await.expect("inspect"));
    acquire_and_release(b.try_acquire(&key), "free again").await;
}

/// Release and extend are compare-and-act on the owner token.
pub(super) async fn non_owner_cannot_release_or_extend<H: Harness>(h: H) {
    let backend = h.backend();
    let svc = service(backend.clone());
    let key_name = unique("owner");
    let key = svc.key(&key_name).expect("key");
    let (owner, intruder) = (OwnerToken::new(), OwnerToken::new());
    let ttl = Duration::from_secs(2);
    assert!(matches!(
        backend
            .try_acquire(&key, M, owner, ttl)
            .await
            .expect("acquire"),
        AcquireResult::Acquired(_)
    ));
    assert!(!backend.release(&key, M, intruder).await.expect("release"));
    assert!(
        !backend
            .extend(&key, M, intruder, ttl)
            .await
            .expect("extend")
    );
    let info = holder(&backend, &key).await.expect("held");
    assert_eq!(info.owner, owner);
    assert!(backend.extend(&key, M, owner, ttl).await.expect("extend"));
    assert!(backend.release(&key, M, owner).await.expect("release"));
    assert!(
        !backend
            .release(&key, M, owner)
            .await
            .expect("second release")
    );
    assert!(
        !backend
            .extend(&key, M, owner, ttl)
            .await
            .expect("extend gone")
    );
    assert!(holder(&backend, &key).await.is_none());

    // Through the service: a late release after the lease was taken is "not owner".
    let guard = svc
        .acquire_opts(&key_name, AcquireOptions::new().auto_renew(false))
        .await
        .expect("acquire");
    h.expire(&key).await;
    let thief = service(backend.clone())
        .try_acquire(&key_name)
        .await
        .expect("expired key is free");
    assert!(matches!(
        guard.extend(ttl).await,
        Err(LockError::NotOwner { .. })
    ));
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. })
    ));
    assert!(
        thief.is_held().await.expect("inspect"),
        "thief keeps its lease"
    );
    thief.release().await.expect("release");
}

/// Acquiring again with the same token (a retry after a lost reply) keeps the same fence.
pub(super) async fn acquire_is_idempotent_for_the_same_token<H: Harness>(h: H) {
    let backend = h.backend();
    let key = service(backend.clone()).key(&unique("idem")).expect("key");
    let token = OwnerToken::new();
    let ttl = Duration::from_secs(2);
    let AcquireResult::Acquired(first) = backend.try_acquire(&key, M, token, ttl).await.expect("a")
    else {
        panic!("free key")
    };
    let AcquireResult::Acquired(again) = backend.try_acquire(&key, M, token, ttl).await.expect("b")
    else {
        panic!("same token must get the lease back")
    };
    assert_eq!(first.fence, again.fence);
    assert!(matches!(
        backend
            .try_acquire(&key, M, OwnerToken::new(), ttl)
            .await
            .expect("c"),
        AcquireResult::Held { .. }
    ));
    assert!(backend.release(&key, M, token).await.expect("release"));
}

/// When a lease expires (by ttl, or forced), the next holder gets in.
pub(super) async fn expiry_lets_the_next_holder_in<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    // Forced expiry (a "GC pause": the store moves on, the holder does not know).
    let key = unique("expiry");
    let held = a
        .acquire_opts(&key, AcquireOptions::new().auto_renew(false))
        .await
        .expect("acquire");
    h.expire(&a.key(&key).expect("key")).await;
    let next = b.try_acquire(&key).await.expect("expired lease is free");
    assert!(next.fence() > held.fence());
    next.release().await.expect("release");
    drop(held);

    // Natural expiry: a holder that stops renewing is replaced after its ttl.
    let key = unique("ttl");
    let ttl = Duration::from_millis(300);
    let start = Instant::now();
    let held = a
        .acquire_opts(&key, AcquireOptions::new().ttl(ttl).auto_renew(false))
        .await
        .expect("acquire");
    let next = within(
        "waiter after ttl",
        b.acquire_opts(&key, waiting_at_most(Duration::from_secs(10))),
    )
    .await
    .expect("acquired after expiry");
    assert!(start.elapsed() >= ttl, "got in before the ttl ran out");
    assert!(next.fence() > held.fence());
    next.release().await.expect("release");
    assert!(matches!(
        held.release().await,
        Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. })
    ));
}

/// Fences strictly increase across holders, through release, expiry and force-release.
pub(super) async fn fencing_strictly_increases<H: Harness>(h: H) {
    let key = unique("fence");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let mut last = 0u64;
    for i in 0..30 {
        let svc = &services[i % 3];
        let guard = svc.acquire(&key).await.expect("acquire");
        assert!(guard.fence() > last, "fence {} after {last}", guard.fence());
        last = guard.fence();
        let info = svc.inspect(&key).await.expect("inspect").expect("held");
        assert_eq!(info.fence, last);
        assert_eq!(info.owner, guard.token());
        match i % 3 {
            0 => guard.release().await.expect("release"),
            1 => {
                h.expire(&svc.key(&key).expect("key")).await;
                drop(guard);
            }
            _ => {
                assert!(svc.force_release(&key).await.expect("force"));
                drop(guard);
            }
        }
    }
}

/// `extend` resets the ttl, and later renewals use the new ttl.
pub(super) async fn extend_resets_ttl_and_later_renewals_use_it<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("extend");
    let guard = acquire_with_ttl(&svc, &key, Duration::from_millis(500)).await;
    guard.extend(Duration::from_secs(5)).await.expect("extend");
    assert_eq!(guard.ttl(), Duration::from_secs(5));
    let info = svc.inspect(&key).await.expect("inspect").expect("held");
    assert!(
        info.remaining > Duration::from_secs(4),
        "{:?}",
        info.remaining
    );
    // Past the old ttl: a renewal with the old ttl would leave < 500 ms.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let info = svc.inspect(&key).await.expect("inspect").expect("held");
    assert!(
        info.remaining > Duration::from_millis(1500),
        "{:?}",
        info.remaining
    );
    assert!(matches!(
        guard.extend(Duration::ZERO).await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert!(matches!(
        guard.extend(Duration::from_secs(3600)).await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert_eq!(guard.state(), LeaseState::Held);
    guard.release().await.expect("release");
}

/// Auto-renewal keeps a lease alive well past its ttl.
pub(super) async fn renewal_keeps_lease_past_ttl<H: Harness>(h: H) {
    let (a, b) = (service(h.backend()), service(h.backend()));
    let key = unique("renew");
    let ttl = Duration::from_millis(300);
    let guard = acquire_with_ttl(&a, &key, ttl).await;
    assert_renewed_past_ttl(&guard, ttl).await;
    assert_eq!(guard.state(), LeaseState::Held);
    assert!(matches!(
        b.try_acquire(&key).await,
        Err(LockError::Contended { .. })
    ));
    guard.release().await.expect("release");
}

/// When the store revokes the lease, `lost()` fires with `NotOwner` (at the next renewal).
pub(super) async fn lost_fires_when_store_revokes<H: Harness>(h: H) {
    let svc = service(h.backend());
    let key = unique("revoke");
    let ttl = Duration::from_millis(400);
    let guard = acquire_with_ttl(&svc, &key, ttl).await;
    let lost = guard.lost();
    h.expire(&svc.key(&key).expect("key")).await;
    let reason = timeout(ttl * 3, lost).await.expect("lost() fired");
    assert_eq!(reason, LostReason::NotOwner);
    assert_eq!(guard.state(), LeaseState::Lost(LostReason::NotOwner));
    assert!(guard.ensure_held().is_err());
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. })
    ));

    // Force-release by an operator has the same effect.
    let guard = acquire_with_ttl(&svc, &key, ttl).await;
    assert!(
        service(h.backend())
            .force_release(&key)
            .await
            .expect("force")
    );
    let reason = timeout(ttl * 3, guard.lost()).await.expect("lost() fired");
    assert_eq!(reason, LostReason::NotOwner);
}

/// Cut off from the store, the holder gives up at its local deadline (sent + ttl − drift),
/// before the store lets a second holder in.
pub(super) async fn lost_fires_at_local_deadline_when_store_unreachable<H: Harness>(h: H) {
    let (faulty, holder_svc) = faulty_service(&h);
    let other = service(h.backend());
    let key = unique("partition");
    let ttl = Duration::from_secs(1);
    let before = Instant::now();
    let guard = acquire_with_ttl(&holder_svc, &key, ttl).await;
    assert!(guard.deadline() + locks_core::drift_margin(ttl) <= Instant::now() + ttl);
    assert!(guard.deadline() >= before + ttl - locks_core::drift_margin(ttl));
    faulty.set_unavailable(true);
    let mut states = guard.watch_state();
    within(
        "state Unknown",
        states.wait_for(|s| *s == LeaseState::Unknown),
    )
    .await
    .expect("state channel open");
    let contender = {
        let other = other.clone();
        let key = key.clone();
        let holder_state = guard.watch_state();
        tokio::spawn(async move {
            let g = other
                .acquire_opts(&key, waiting_at_most(Duration::from_secs(10)))
                .await;
            // What the first holder believed at the moment the second one got in.
            let first_was = *holder_state.borrow();
            (Instant::now(), first_was, g)
        })
    };
    let reason = within("lost()", guard.lost()).await;
    let lost_at = Instant::now();
    assert_eq!(reason, LostReason::DeadlineExpired);
    // The holder trusts its lease until its deadline and not a moment longer (its state is
    // `Lost` from that instant on); the second holder must get in only after that.
    let gave_up_at = guard.deadline();
    assert!(lost_at >= gave_up_at, "lost() fired before the deadline");
    let (got_at, first_was, second) = within("second holder", contender).await.expect("task");
    let second = second.expect("second holder after the store expired the lease");
    // The order of events: the first holder had marked its lease lost before the second
    // holder's acquire returned (never two holders that both believe they hold it).
    assert_eq!(
        first_was,
        LeaseState::Lost(LostReason::DeadlineExpired),
        "the second holder got in while the first still trusted its lease"
    );
    assert!(
        got_at > gave_up_at,
        "second holder got in at {got_at:?}, before the first gave up at {gave_up_at:?}"
    );
    assert!(gave_up_at >= before + ttl - locks_core::drift_margin(ttl) - Duration::from_millis(1));
    second.release().await.expect("release");
    faulty.set_unavailable(false);
}
