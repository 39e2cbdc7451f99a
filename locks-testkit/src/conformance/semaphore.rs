//! Semaphore cases: the permit limit, crashed holders, renewal, changing the count, wake-ups.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{AcquireOptions, LeaseState, LockError};
use tokio::time::Instant;

use super::common::{
    Occupancy, assert_lost_after_expiry, assert_renewed_past_ttl, assert_waiter_takes_over,
    join_all, service, unique_primitive, waiting_at_most, with_ttl, within,
};
use crate::Harness;

/// 30 tasks on 3 services share a 3-permit semaphore: never more than 3 inside, and all 3
/// permits do get used.
pub(super) async fn semaphore_never_exceeds_its_permits<H: Harness>(h: H) {
    let name = unique_primitive("sem");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let occupancy = Arc::new(Occupancy::default());
    let mut tasks = Vec::new();
    for i in 0..30 {
        let sem = services[i % 3].semaphore(&name, 3).expect("semaphore");
        let occupancy = occupancy.clone();
        tasks.push(tokio::spawn(async move {
            let permit = sem
                .acquire_opts(waiting_at_most(Duration::from_secs(60)))
                .await
                .expect("permit");
            occupancy.enter();
            tokio::time::sleep(Duration::from_millis(20)).await;
            occupancy.leave();
            permit.release().await.expect("release");
        }));
    }
    join_all("30 tasks", tasks).await;
    let max = occupancy.most();
    assert!(max <= 3, "{max} holders of a 3-permit semaphore");
    assert_eq!(max, 3, "permits were never used in parallel");
    let sem = services[0].semaphore(&name, 3).expect("semaphore");
    assert!(sem.holders().await.expect("holders").is_empty());
    assert_eq!(sem.available().await.expect("available"), 3);
}

/// A holder that crashes (its guard abandoned: no renewal, no release) gives its permit back
/// when the ttl passes; a waiter then gets it.
pub(super) async fn semaphore_crashed_holder_permit_returns_after_ttl<H: Harness>(h: H) {
    let name = unique_primitive("crash");
    let (a, b) = (service(h.backend()), service(h.backend()));
    let sem_a = a.semaphore(&name, 2).expect("semaphore");
    let ttl = Duration::from_millis(500);
    // Before the acquire is sent: the store's expiry cannot come earlier than `start + ttl`
    // (starting after the second acquire would count its round trip against the store).
    let start = Instant::now();
    let crashed = sem_a.acquire_opts(with_ttl(ttl)).await.expect("permit");
    let alive = sem_a.acquire().await.expect("permit");
    let crashed_token = crashed.token();
    crashed.abandon();
    let sem_b = b.semaphore(&name, 2).expect("semaphore");
    assert!(matches!(
        sem_b.try_acquire().await,
        Err(LockError::Contended { .. })
    ));
    let next = within(
        "permit after the crashed holder's ttl",
        sem_b.acquire_opts(waiting_at_most(Duration::from_secs(10))),
    )
    .await
    .expect("permit returned");
    assert!(start.elapsed() >= ttl - locks_core::drift_margin(ttl));
    let holders = sem_b.holders().await.expect("holders");
    assert_eq!(holders.len(), 2);
    assert!(holders.iter().all(|i| i.owner != crashed_token));
    next.release().await.expect("release");
    alive.release().await.expect("release");
}

/// Permits renew like mutex leases, and a revoked permit fires `lost()`.
pub(super) async fn semaphore_permits_renew_and_report_loss<H: Harness>(h: H) {
    let name = unique_primitive("semrenew");
    let svc = service(h.backend());
    let sem = svc.semaphore(&name, 1).expect("semaphore");
    let ttl = Duration::from_millis(300);
    let permit = sem.acquire_opts(with_ttl(ttl)).await.expect("permit");
    assert_renewed_past_ttl(&permit, ttl).await;
    assert_eq!(permit.state(), LeaseState::Held);
    assert_lost_after_expiry(&h, sem.key(), &permit, ttl).await;
}

/// Lowering the permit count refuses new permits until enough holders leave (live permits
/// are never revoked); raising it lets new holders in at once.
pub(super) async fn semaphore_permit_count_can_change<H: Harness>(h: H) {
    let name = unique_primitive("resize");
    let svc = service(h.backend());
    let two = svc.semaphore(&name, 2).expect("semaphore");
    let p1 = two.acquire().await.expect("permit");
    let p2 = two.acquire().await.expect("permit");
    let three = two.with_permits(3).expect("3 permits");
    let p3 = three
        .try_acquire()
        .await
        .expect("raised count admits a third");
    let one = two.with_permits(1).expect("1 permit");
    assert!(matches!(
        one.try_acquire().await,
        Err(LockError::Contended { .. })
    ));
    p1.release().await.expect("release");
    p2.release().await.expect("release");
    assert!(p3.is_held().await.expect("live permits are not revoked"));
    assert!(matches!(
        one.try_acquire().await,
        Err(LockError::Contended { .. })
    ));
    p3.release().await.expect("release");
    let only = one.try_acquire().await.expect("free under the new count");
    assert_eq!(one.available().await.expect("available"), 0);
    only.release().await.expect("release");
    assert!(matches!(
        two.with_permits(0),
        Err(LockError::InvalidOptions {
            option: "permits",
            ..
        })
    ));
}

/// A waiter for a full semaphore gets the permit once a holder releases.
pub(super) async fn semaphore_waiter_is_woken_by_release<H: Harness>(h: H) {
    let name = unique_primitive("semwake");
    let (a, b) = (service(h.backend()), service(h.backend()));
    let held = a
        .semaphore(&name, 1)
        .expect("semaphore")
        .acquire()
        .await
        .expect("permit");
    let sem_b = b.semaphore(&name, 1).expect("semaphore");
    let waiter = tokio::spawn(async move {
        sem_b
            .acquire_opts(waiting_at_most(Duration::from_secs(10)))
            .await
    });
    tokio::task::yield_now().await;
    assert_waiter_takes_over(held, waiter).await;
}

/// Bad names, zero permits and bad keys in a multi-lock are typed errors that write nothing.
pub(super) async fn primitive_inputs_are_validated<H: Harness>(h: H) {
    let svc = service(h.backend());
    assert!(matches!(
        svc.semaphore("", 2),
        Err(LockError::InvalidKey { .. })
    ));
    assert!(matches!(
        svc.semaphore("pool", 0),
        Err(LockError::InvalidOptions {
            option: "permits",
            ..
        })
    ));
    assert!(matches!(
        svc.rwlock("a\nb"),
        Err(LockError::InvalidKey { .. })
    ));
    assert!(matches!(
        svc.election(""),
        Err(LockError::InvalidKey { .. })
    ));
    let good = unique_primitive("good");
    assert!(matches!(
        svc.acquire_all(&[good.as_str(), ""], AcquireOptions::new())
            .await,
        Err(LockError::InvalidKey { .. })
    ));
    assert!(
        !svc.is_locked(&good).await.expect("inspect"),
        "a rejected call wrote"
    );
    let sem = svc
        .semaphore(&unique_primitive("semttl"), 1)
        .expect("semaphore");
    assert!(matches!(
        sem.acquire_opts(with_ttl(Duration::ZERO)).await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert!(sem.holders().await.expect("holders").is_empty());
}
