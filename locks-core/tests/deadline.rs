//! The local deadline never outlives the store's expiry (safety rule 1): any request that may
//! change the expiry first lowers the deadline to what it may set; only a confirmation raises
//! it; the holder's `extend` and the keeper's renewal never overlap.

mod common;

use std::time::Duration;

use locks_core::{LeaseKind, LeaseState, LockBackend, LockError, LockService, LostReason};
use locks_memory::MemoryBackend;
use locks_testkit::faulty::FaultyBackend;
use tokio::time::Instant;

fn setup(ttl: Duration) -> (FaultyBackend, LockService) {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = common::service_on(faulty.clone(), ttl);
    (faulty, locks)
}

/// When the store expires `key`, by its own clock (the memory backend shares tokio's).
async fn store_expiry(backend: &dyn LockBackend, locks: &LockService, key: &str) -> Instant {
    let key = locks.key(key).expect("key");
    let holders = backend
        .holders(&key, LeaseKind::Mutex)
        .await
        .expect("holders");
    Instant::now() + holders.leases.first().expect("held").remaining
}

/// `extend(shorter)` whose reply is lost: it may have been applied, so the holder trusts the
/// lease only until the shorter expiry, and its state is `Unknown` until a renewal confirms.
#[tokio::test(start_paused = true)]
async fn an_extend_with_a_lost_reply_lowers_the_deadline_and_makes_the_state_unknown() {
    let (faulty, locks) = setup(Duration::from_secs(10));
    let guard = locks.acquire("k").await.expect("acquire");
    tokio::time::sleep(Duration::from_secs(1)).await;

    faulty.lose_replies_next(1);
    let err = guard.extend(Duration::from_secs(2)).await;
    assert!(matches!(err, Err(LockError::Backend { .. })), "{err:?}");
    assert_eq!(guard.state(), LeaseState::Unknown);
    // The store applied it: the lease expires at 1 s + 2 s. The holder's deadline is earlier.
    let expires = store_expiry(&faulty, &locks, "k").await;
    assert!(
        guard.deadline() < expires,
        "deadline {:?} is not before the store's expiry {:?}",
        guard.deadline(),
        expires
    );

    // The store is unreachable from now on: the holder gives up before the store lets a
    // second holder in.
    faulty.set_unavailable(true);
    let lost = guard.lost();
    let reason = tokio::time::timeout_at(expires, lost).await;
    assert_eq!(reason, Ok(LostReason::DeadlineExpired));
}

/// A renewal capped by `max_hold` whose reply is lost may have set the store's expiry to the
/// end of the hold: the deadline comes down to it, even after an `extend` moved it past.
#[tokio::test(start_paused = true)]
async fn a_capped_renewal_with_a_lost_reply_lowers_the_deadline_to_the_hold_end() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = LockService::builder(faulty.clone())
        .default_ttl(Duration::from_secs(10))
        .max_hold(Some(Duration::from_secs(12)))
        .build()
        .expect("service");
    let start = Instant::now();
    let guard = locks.acquire("k").await.expect("acquire");
    tokio::time::sleep(Duration::from_secs(1)).await;
    guard.extend(Duration::from_secs(20)).await.expect("extend");
    // The next renewal (at 1 s + 10 s) is capped to the 1 s left of the hold; its reply is lost.
    faulty.lose_replies_next(1);
    tokio::time::sleep(Duration::from_millis(10_100)).await;
    assert_eq!(faulty.injected(), 1, "the capped renewal was sent");
    let hold_end = start + Duration::from_secs(12);
    assert!(
        guard.deadline() <= hold_end,
        "deadline {:?} after the hold end {hold_end:?}",
        guard.deadline()
    );
    assert!(guard.deadline() <= store_expiry(&faulty, &locks, "k").await);
}

/// `extend(longer)` while a renewal carrying the old ttl is in flight: the extend waits for
/// the renewal, so the renewal cannot land after it and shorten the lease behind the holder's
/// back.
#[tokio::test(start_paused = true)]
async fn an_extend_never_overlaps_a_renewal_in_flight() {
    let (faulty, locks) = setup(Duration::from_secs(10));
    let guard = locks.acquire("k").await.expect("acquire");
    // Every request now takes 100 ms to reach the store; the renewal is due at 5 s.
    faulty.set_latency(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(5_010)).await;
    faulty.set_latency(Duration::ZERO);
    let started = Instant::now();
    guard.extend(Duration::from_secs(30)).await.expect("extend");
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "the extend did not wait for the renewal in flight"
    );
    let expires = store_expiry(&faulty, &locks, "k").await;
    assert!(
        guard.deadline() <= expires,
        "deadline {:?} beyond the store's expiry {expires:?}",
        guard.deadline()
    );
    assert!(
        expires >= started + Duration::from_secs(29),
        "the longer ttl is in force"
    );
    assert_eq!(guard.state(), LeaseState::Held);
    guard.release().await.expect("release");
}

/// The store's clock runs 0.5 % fast (it expires leases early by the holder's measure). The
/// drift margin (1 % + 2 ms) covers it: a holder cut off from the store gives up before the
/// store lets a rival in. With no margin (deadline = sent + ttl) this test fails: the store
/// frees the key at 9.95 s of the holder's time, the holder would trust it until 10 s.
#[tokio::test(start_paused = true)]
async fn a_store_clock_running_fast_is_covered_by_the_drift_margin() {
    #[derive(Debug)]
    struct Fast(Instant);
    impl locks_memory::Clock for Fast {
        fn now(&self) -> Duration {
            self.0.elapsed().mul_f64(1.005)
        }
    }
    let store = MemoryBackend::with_clock(Fast(Instant::now()));
    let faulty = FaultyBackend::new(store.clone());
    let holder = common::service_on(faulty.clone(), Duration::from_secs(10));
    let rival = common::service_on(store, Duration::from_secs(10));
    let guard = holder.acquire("k").await.expect("acquire");
    faulty.set_unavailable(true); // the holder is cut off from now on
    let lost = guard.lost();
    let rival_got_in = tokio::spawn(async move {
        loop {
            if let Ok(g) = rival.try_acquire("k").await {
                let at = Instant::now();
                g.release().await.expect("release");
                return at;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    assert_eq!(lost.await, LostReason::DeadlineExpired);
    let gave_up = guard.deadline();
    let got_in = rival_got_in.await.expect("rival");
    assert!(
        gave_up < got_in,
        "the rival got in at {got_in:?}, the holder trusted its lease until {gave_up:?}"
    );
}

/// A lease marked lost is never renewed afterwards (issue 11 item 11). Every renewal is applied
/// but its reply lost, so the store keeps pushing the lease's expiry forward while the holder's
/// deadline stays put: the holder gives up at its deadline with the lease still in the store.
/// Replies flow again from that moment: a keeper that renewed a lost lease would keep it alive
/// in the store; it ends by its ttl instead.
#[tokio::test(start_paused = true)]
async fn a_lease_marked_lost_is_never_renewed_afterwards() {
    let (faulty, locks) = setup(Duration::from_secs(10));
    let guard = locks.acquire("k").await.expect("acquire");
    faulty.lose_replies_next(u32::MAX);
    let reason = guard.lost().await;
    assert_eq!(reason, LostReason::DeadlineExpired);
    faulty.clear();
    let key = locks.key("k").expect("key");
    let still = faulty
        .holders(&key, LeaseKind::Mutex)
        .await
        .expect("holders");
    assert!(
        still.is_held_by(guard.token(), LeaseKind::Mutex),
        "the store still holds the lease when the holder gives up: {still:?}"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(guard.state(), LeaseState::Lost(LostReason::DeadlineExpired));
    let after = faulty
        .holders(&key, LeaseKind::Mutex)
        .await
        .expect("holders");
    assert!(
        after.leases.is_empty(),
        "a lost lease was renewed: {after:?}"
    );
}
