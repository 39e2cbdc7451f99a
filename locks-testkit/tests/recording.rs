//! The recording backend: what it records, what it counts as held, and that each assertion
//! passes on correct code and fails (with a useful message) on wrong code.

use std::time::Duration;

use locks_core::{AcquireOptions, LeaseKind, LockError, LockGuard, LockService, LostReason};
use locks_testkit::recording::{EndReason, HeldElsewhere, LockEventKind, RecordingBackend};
use tokio::time::{Instant, sleep};

fn kinds(rec: &RecordingBackend, key: &str) -> Vec<LockEventKind> {
    rec.events_for(key).into_iter().map(|e| e.kind).collect()
}

fn service(rec: &RecordingBackend) -> LockService {
    rec.service().expect("valid defaults")
}

/// A recording of the memory backend, and a service over it.
fn recorded_service() -> (RecordingBackend, LockService) {
    let rec = RecordingBackend::memory();
    let locks = service(&rec);
    (rec, locks)
}

/// A recording of the memory backend, a service over it, and `key` held through that service.
async fn holding(key: &str) -> (RecordingBackend, LockService, LockGuard) {
    let (rec, locks) = recorded_service();
    let guard = locks.acquire(key).await.unwrap();
    (rec, locks, guard)
}

/// Takes `key` and releases it at once.
async fn acquire_and_release(locks: &LockService, key: &str) {
    locks.acquire(key).await.unwrap().release().await.unwrap();
}

/// A recording of the memory backend and a service over it that took each of `keys` in turn,
/// releasing it before taking the next.
async fn taken_one_at_a_time(keys: &[&str]) -> (RecordingBackend, LockService) {
    let (rec, locks) = recorded_service();
    for key in keys {
        acquire_and_release(&locks, key).await;
    }
    (rec, locks)
}

/// `key` held by another process for a minute.
async fn held_elsewhere(rec: &RecordingBackend, key: &str) -> HeldElsewhere {
    rec.hold_elsewhere(key, Duration::from_secs(60))
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn records_acquire_contention_and_release_in_order() {
    let rec = RecordingBackend::memory();
    let a = service(&rec);
    let b = service(&rec);

    let guard = a.acquire("order:1").await.unwrap();
    let refused = b.try_acquire("order:1").await.unwrap_err();
    assert!(
        matches!(refused, LockError::Contended { .. }),
        "{refused:?}"
    );
    let (token, fence) = (guard.token(), guard.fence());
    guard.release().await.unwrap();

    let history = rec.history();
    let got: Vec<LockEventKind> = history.iter().map(|e| e.kind).collect();
    assert!(matches!(
        got.as_slice(),
        [
            LockEventKind::Acquired,
            LockEventKind::Contended { remaining: Some(_) },
            LockEventKind::Released
        ]
    ));
    assert!(
        history
            .windows(2)
            .all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at)
    );
    let acquired = &history[0];
    assert_eq!(acquired.key, "order:1");
    assert_eq!(acquired.full_key, "_lock:order:1");
    assert_eq!(acquired.lease_kind, LeaseKind::Mutex);
    assert_eq!(acquired.owner, Some(token));
    assert_eq!(acquired.fence, Some(fence));
    assert!(!acquired.elsewhere);
    assert_ne!(
        history[1].owner,
        Some(token),
        "contended carries the refused caller"
    );
    assert_eq!(history[2].fence, Some(fence));
    assert_eq!(rec.events_for("_lock:order:1").len(), 3);
    assert!(rec.events_for("order:2").is_empty());
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn renewals_are_recorded_and_keep_the_key_held() {
    let (rec, _locks, guard) = holding("job").await;
    // Virtual time: the 1 s lease is renewed every 500 ms.
    sleep(Duration::from_millis(2600)).await;
    rec.assert_held("job");
    let renewals = kinds(&rec, "job")
        .into_iter()
        .filter(|k| matches!(k, LockEventKind::Extended { ttl } if *ttl == RecordingBackend::SERVICE_TTL))
        .count();
    assert!(renewals >= 4, "{}", rec.timeline());
    guard.release().await.unwrap();
    rec.assert_not_held("job");
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn held_now_follows_the_store() {
    let (rec, locks) = recorded_service();
    assert!(rec.held_now().is_empty());
    let b = locks.acquire("b").await.unwrap();
    let a = locks.acquire("a").await.unwrap();
    assert_eq!(rec.held_now(), vec!["a".to_owned(), "b".to_owned()]);
    assert!(rec.is_held("a") && rec.is_held("_lock:a"));
    let holders = rec.holders("a");
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].owner, holders[0].fence), (a.token(), a.fence()));
    assert!(!holders[0].elsewhere);
    a.release().await.unwrap();
    assert_eq!(rec.held_now(), vec!["b".to_owned()]);
    b.release().await.unwrap();
    assert!(rec.held_now().is_empty() && !rec.is_held("b"));
}

#[tokio::test(start_paused = true)]
async fn a_lease_left_to_expire_ends_at_its_ttl() {
    let (rec, locks) = recorded_service();
    let start = Instant::now();
    locks.acquire("crashy").await.unwrap().abandon();
    rec.assert_held("crashy");
    sleep(Duration::from_millis(1500)).await;
    rec.assert_not_held("crashy");
    let holdings = rec.holdings();
    assert_eq!(holdings.len(), 1);
    let (ended_at, reason) = holdings[0].ended.expect("ended");
    assert_eq!(reason, EndReason::Expired);
    assert_eq!(ended_at - start, RecordingBackend::SERVICE_TTL);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "assert_held: `nothing` is not held; it was never acquired")]
async fn assert_held_fails_for_a_key_never_taken() {
    RecordingBackend::memory().assert_held("nothing");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "ended at t+0ns (Released)")]
async fn assert_held_says_how_the_last_lease_ended() {
    let rec = RecordingBackend::memory();
    acquire_and_release(&service(&rec), "k").await;
    rec.assert_held("k");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "assert_not_held: `k` is held: `k` (mutex owner")]
async fn assert_not_held_fails_while_held() {
    let rec = RecordingBackend::memory();
    let _guard = service(&rec).acquire("k").await.unwrap();
    rec.assert_not_held("k");
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "assert_all_released: 1 lock(s) were not released")]
async fn assert_all_released_fails_while_a_lock_is_held() {
    let (rec, locks) = recorded_service();
    acquire_and_release(&locks, "done").await;
    let _forgotten = locks.acquire("forgotten").await.unwrap();
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "was never released: it expired at t+1s")]
async fn assert_all_released_fails_for_a_lease_that_ran_out() {
    let rec = RecordingBackend::memory();
    service(&rec).acquire("leaky").await.unwrap().abandon();
    sleep(Duration::from_secs(5)).await;
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn assert_all_released_accepts_revoked_and_ignores_elsewhere() {
    let (rec, _locks, guard) = holding("revoked").await;
    assert!(rec.revoke("revoked").await.unwrap());
    let _other = held_elsewhere(&rec, "theirs").await;
    rec.assert_all_released();
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn revoke_makes_the_holder_lose_its_lease_without_a_release() {
    let (rec, _locks, guard) = holding("pay:1").await;
    let (token, fence) = (guard.token(), guard.fence());

    assert!(rec.revoke("pay:1").await.unwrap());
    rec.assert_not_held("pay:1");
    // The holder finds out at its next renewal (half a ttl later, in paused time).
    assert_eq!(guard.lost().await, LostReason::NotOwner);
    assert!(matches!(
        guard.release().await,
        Err(LockError::NotOwner { .. })
    ));

    let history = rec.events_for("pay:1");
    let got: Vec<LockEventKind> = history.iter().map(|e| e.kind).collect();
    assert_eq!(
        got,
        vec![
            LockEventKind::Acquired,
            LockEventKind::Revoked { had_lease: true },
            LockEventKind::LostExtend
        ]
    );
    assert_eq!(history[1].owner, Some(token), "the evicted holder");
    assert_eq!(history[1].fence, Some(fence));
    assert_eq!(
        rec.holdings()[0].ended.map(|(_, r)| r),
        Some(EndReason::Revoked)
    );
    assert!(
        !rec.revoke("pay:1").await.unwrap(),
        "nothing left to revoke"
    );
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn force_release_through_the_service_is_recorded_as_such() {
    let (rec, locks, guard) = holding("k").await;
    assert!(locks.force_release("k").await.unwrap());
    let last = rec.history().pop().expect("an event");
    assert_eq!(last.kind, LockEventKind::ForceReleased { had_lease: true });
    assert_eq!(last.owner, Some(guard.token()));
    assert_eq!(
        rec.holdings()[0].ended.map(|(_, r)| r),
        Some(EndReason::ForceReleased)
    );
    drop(guard);
}

#[tokio::test(start_paused = true)]
async fn hold_elsewhere_makes_the_code_wait_then_time_out() {
    let (rec, locks) = recorded_service();
    let other = rec
        .hold_elsewhere("busy", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(other.fence() > 0);
    rec.assert_held("busy");
    assert!(rec.holders("busy")[0].elsewhere);

    let again = rec.hold_elsewhere("busy", Duration::from_secs(60)).await;
    assert!(
        matches!(again, Err(LockError::Contended { .. })),
        "{again:?}"
    );

    let start = Instant::now();
    let err = locks
        .acquire_opts(
            "busy",
            AcquireOptions::new().wait_timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::AcquireTimeout { .. }), "{err:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    let events = rec.events_for("busy");
    assert!(events[0].elsewhere && events[0].kind == LockEventKind::Acquired);
    // events[1] is the second hold_elsewhere attempt (refused).
    assert!(events[1].elsewhere);
    assert!(
        events[2..]
            .iter()
            .all(|e| !e.elsewhere && matches!(e.kind, LockEventKind::Contended { .. })),
        "{}",
        rec.timeline()
    );
    assert!(other.release().await.unwrap());
    rec.assert_not_held("busy");
    assert!(matches!(
        rec.hold_elsewhere("busy", Duration::ZERO).await,
        Err(LockError::InvalidTtl { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_held_elsewhere_releases_it_and_wakes_waiters() {
    let (rec, locks) = recorded_service();
    let other = held_elsewhere(&rec, "shared").await;
    let waiter = tokio::spawn(async move { locks.acquire("shared").await.map(|g| g.fence()) });
    rec.wait_until(|r| {
        r.events_for("shared")
            .iter()
            .any(|e| matches!(e.kind, LockEventKind::Contended { .. }))
    })
    .await;
    let start = Instant::now();
    drop(other);
    let fence = waiter.await.unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(10),
        "woken by the release"
    );
    assert_eq!(fence, 2);
}

#[tokio::test(start_paused = true)]
async fn fail_next_is_retried_and_the_failures_are_not_recorded() {
    let (rec, locks) = recorded_service();
    rec.fail_next(2);
    let guard = locks.acquire("flaky").await.unwrap();
    assert_eq!(rec.faults().injected(), 2);
    assert_eq!(kinds(&rec, "flaky"), vec![LockEventKind::Acquired]);
    guard.release().await.unwrap();
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn a_lost_reply_retires_its_token_and_the_retry_takes_a_new_lease() {
    let (rec, locks) = recorded_service();
    rec.faults().lose_replies_next(1);
    let guard = locks.acquire("k").await.unwrap();
    // The store applied the first attempt, whose outcome the service never learned: it
    // released (retired) that token before retrying with a new one, so no lease is left that
    // nobody holds (issue 11 item 4).
    assert_eq!(
        kinds(&rec, "k"),
        vec![
            LockEventKind::Acquired,
            LockEventKind::Released,
            LockEventKind::Acquired
        ]
    );
    assert_eq!(rec.holdings().len(), 2, "the retired lease and the guard's");
    guard.release().await.unwrap();
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn never_held_together_passes_for_one_at_a_time() {
    let (rec, locks) = taken_one_at_a_time(&["a", "b", "a", "c"]).await;
    rec.assert_never_held_together(&["a", "b", "c"]);
    // The same key twice is not "two keys".
    rec.assert_never_held_together(&["a", "_lock:a"]);
    // A key held elsewhere does not count.
    let _other = held_elsewhere(&rec, "b").await;
    let a = locks.acquire("a").await.unwrap();
    rec.assert_never_held_together(&["a", "b"]);
    a.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
#[should_panic(
    expected = "assert_never_held_together: `a` and `c` were held together: `a` (mutex owner"
)]
async fn never_held_together_fails_on_overlap() {
    let (rec, locks) = recorded_service();
    acquire_and_release(&locks, "b").await;
    let a = locks.acquire("a").await.unwrap();
    let c = locks.acquire("c").await.unwrap();
    rec.assert_never_held_together(&["a", "b"]);
    rec.assert_never_held_together(&["b", "c"]);
    drop((a, c));
    rec.assert_never_held_together(&["a", "c"]);
}

#[tokio::test(start_paused = true)]
async fn probe_hits_under_the_lock_pass() {
    let (rec, locks) = recorded_service();
    let probe = rec.probe("write:1");
    let fence = locks
        .with_lock("write:1", {
            let probe = probe.clone();
            move |lease| async move {
                assert!(probe.hit().under_lock());
                let hit = probe.hit_with_fence(lease.fence());
                assert_eq!(hit.holder.map(|h| h.fence), Some(lease.fence()));
                lease.fence()
            }
        })
        .await
        .unwrap();
    assert_eq!(probe.hits().len(), 2);
    assert_eq!(probe.hits()[1].fence, Some(fence));
    probe.assert_every_hit_under_lock();
    rec.assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
#[should_panic(
    expected = "1 of 2 probe hit(s) ran outside the lock:\n  - probe `write:1` hit #4: `write:1` was not held"
)]
async fn a_probe_hit_after_the_release_fails() {
    let (rec, locks) = recorded_service();
    let probe = rec.probe("write:1");
    let guard = locks.acquire("write:1").await.unwrap();
    probe.hit();
    guard.release().await.unwrap();
    probe.hit();
    rec.assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "but the side effect carried fence 1")]
async fn a_probe_hit_with_a_stale_fence_fails() {
    let (rec, locks, first) = holding("k").await;
    let stale = first.fence();
    first.release().await.unwrap();
    let _second = locks.acquire("k").await.unwrap();
    let hit = rec.probe("k").hit_with_fence(stale);
    assert!(!hit.under_lock());
    rec.probe("k").assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "was held only by another owner")]
async fn a_probe_hit_while_held_elsewhere_fails() {
    let rec = RecordingBackend::memory();
    let _other = held_elsewhere(&rec, "k").await;
    let hit = rec.probe("k").hit();
    assert!(hit.holder.is_some_and(|h| h.elsewhere) && !hit.under_lock());
    rec.assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "no probe was ever hit, so nothing was checked")]
async fn assert_every_hit_under_lock_fails_when_nothing_was_hit() {
    let rec = RecordingBackend::memory();
    let _probe = rec.probe("k");
    rec.assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "the probe `other` was ever hit")]
async fn a_probe_checks_only_its_own_key() {
    let rec = RecordingBackend::memory();
    let guard = service(&rec).acquire("k").await.unwrap();
    rec.probe("k").hit();
    drop(guard);
    rec.probe("other").assert_every_hit_under_lock();
}

#[tokio::test(start_paused = true)]
async fn acquired_in_order_passes_for_the_first_grants() {
    let (rec, _locks) = taken_one_at_a_time(&["acct:1", "acct:2", "acct:1", "acct:3"]).await;
    rec.assert_acquired_in_order(&["acct:1", "acct:2", "acct:3"]);
    rec.assert_acquired_in_order(&["acct:2", "_lock:acct:3"]);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`acct:1` was first acquired before `acct:2`")]
async fn acquired_in_order_fails_for_the_wrong_order() {
    let (rec, locks) = recorded_service();
    let all = locks
        .acquire_all(&["acct:2", "acct:1"], AcquireOptions::new())
        .await
        .unwrap();
    all.release().await.unwrap();
    rec.assert_acquired_in_order(&["acct:2", "acct:1"]);
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "`acct:9` was never acquired")]
async fn acquired_in_order_fails_for_a_key_never_taken() {
    let (rec, locks) = recorded_service();
    acquire_and_release(&locks, "acct:1").await;
    let _elsewhere = rec
        .hold_elsewhere("acct:9", Duration::from_secs(9))
        .await
        .unwrap();
    rec.assert_acquired_in_order(&["acct:1", "acct:9"]);
}

#[tokio::test(start_paused = true)]
async fn semaphores_and_rw_locks_are_forwarded_and_recorded() {
    let (rec, locks) = recorded_service();

    let sem = locks.semaphore("pool", 2).unwrap();
    let p1 = sem.acquire().await.unwrap();
    let p2 = sem.acquire().await.unwrap();
    assert!(sem.try_acquire().await.is_err());
    assert_eq!(sem.holders().await.unwrap().len(), 2);
    assert_eq!(rec.holders("pool").len(), 2);
    assert!(
        rec.holders("pool")
            .iter()
            .all(|h| h.lease_kind == LeaseKind::Permit { limit: 2 })
    );
    sleep(Duration::from_secs(2)).await; // renewed through extend(Permit)
    rec.assert_held("pool");
    p1.release().await.unwrap();
    p2.release().await.unwrap();
    rec.assert_not_held("pool");

    let rw = locks.rwlock("doc").unwrap();
    let r1 = rw.read().await.unwrap();
    let r2 = rw.read().await.unwrap();
    assert!(rw.try_write().await.is_err());
    assert_eq!(rw.inspect().await.unwrap().readers.len(), 2);
    sleep(Duration::from_secs(2)).await; // renewed through extend(Read)
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    let w = rw.write().await.unwrap();
    assert_eq!(rec.holders("doc")[0].lease_kind, LeaseKind::Write);
    w.release().await.unwrap();

    let modes: Vec<(LeaseKind, LockEventKind)> = rec
        .history()
        .into_iter()
        .filter(|e| !matches!(e.kind, LockEventKind::Extended { .. }))
        .map(|e| (e.lease_kind, e.kind))
        .collect();
    let contended = LockEventKind::Contended { remaining: None };
    let permit = LeaseKind::Permit { limit: 2 };
    let strip = |k: LockEventKind| match k {
        LockEventKind::Contended { .. } => contended,
        k => k,
    };
    let modes: Vec<(LeaseKind, LockEventKind)> =
        modes.into_iter().map(|(m, k)| (m, strip(k))).collect();
    assert_eq!(
        modes,
        vec![
            (permit, LockEventKind::Acquired),
            (permit, LockEventKind::Acquired),
            (permit, contended),
            (permit, LockEventKind::Released),
            (permit, LockEventKind::Released),
            (LeaseKind::Read, LockEventKind::Acquired),
            (LeaseKind::Read, LockEventKind::Acquired),
            // try_write looks before it writes: while readers hold the lock it sends no
            // attempt (so it leaves no "writer waiting" mark) and records nothing.
            (LeaseKind::Read, LockEventKind::Released),
            (LeaseKind::Read, LockEventKind::Released),
            (LeaseKind::Write, LockEventKind::Acquired),
            (LeaseKind::Write, LockEventKind::Released),
        ],
        "{}",
        rec.timeline()
    );
    assert!(
        rec.history()
            .iter()
            .any(|e| e.lease_kind == permit && matches!(e.kind, LockEventKind::Extended { .. }))
    );
    assert!(rec.history().iter().any(
        |e| e.lease_kind == LeaseKind::Read && matches!(e.kind, LockEventKind::Extended { .. })
    ));
    rec.assert_all_released();
}

#[tokio::test(start_paused = true)]
async fn force_release_of_permits_and_rw_locks_ends_every_lease_of_the_lock() {
    use locks_core::LockBackend as _;
    let (rec, locks) = recorded_service();

    let sem = locks.semaphore("pool", 2).unwrap();
    let (p1, p2) = (sem.acquire().await.unwrap(), sem.acquire().await.unwrap());
    let permit = LeaseKind::Permit { limit: 2 };
    assert!(
        rec.force_release(&rec.key("pool").unwrap(), permit)
            .await
            .unwrap()
    );
    rec.assert_not_held("pool");
    let last = rec.history().pop().expect("an event");
    assert_eq!(last.kind, LockEventKind::ForceReleased { had_lease: true });
    assert_eq!(last.lease_kind, permit);
    assert_eq!(last.owner, None, "two holders were evicted, not one");

    let rw = locks.rwlock("doc").unwrap();
    let (r1, r2) = (rw.read().await.unwrap(), rw.read().await.unwrap());
    // Forcing either side clears the whole read-write lock.
    assert!(
        rec.force_release(&rec.key("doc").unwrap(), LeaseKind::Write)
            .await
            .unwrap()
    );
    rec.assert_not_held("doc");
    assert!(
        rec.holdings()
            .iter()
            .all(|h| h.ended.map(|(_, r)| r) == Some(EndReason::ForceReleased)),
        "{}",
        rec.timeline()
    );
    assert!(
        rec.timeline()
            .contains("acquired `pool` permit (of 2) owner")
    );
    rec.assert_all_released();
    drop((p1, p2, r1, r2));
}

#[tokio::test(start_paused = true)]
async fn wait_until_held_and_released_follow_the_events() {
    let (rec, locks) = recorded_service();
    let task = tokio::spawn(async move {
        let guard = locks.acquire("bg").await.unwrap();
        sleep(Duration::from_secs(3)).await; // virtual work
        guard.release().await.unwrap();
    });
    let start = Instant::now();
    rec.wait_until_held("bg").await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    rec.wait_until_released("bg").await;
    assert_eq!(start.elapsed(), Duration::from_secs(3));
    task.await.unwrap();

    // Expiry is not an event, but it wakes the waiter too.
    service(&rec).acquire("ttl").await.unwrap().abandon();
    let start = Instant::now();
    rec.wait_until_released("ttl").await;
    assert_eq!(start.elapsed(), RecordingBackend::SERVICE_TTL);
}

#[tokio::test(start_paused = true)]
async fn a_custom_prefix_is_shared_with_the_service() {
    let rec = RecordingBackend::memory().with_key_prefix("app:");
    let locks = service(&rec);
    let guard = locks.acquire("x").await.unwrap();
    assert_eq!(rec.history()[0].full_key, "app:x");
    assert!(rec.is_held("x") && rec.is_held("app:x") && !rec.is_held("_lock:x"));
    assert!(rec.revoke("x").await.unwrap());
    assert_eq!(rec.key("x").unwrap().full(), "app:x");
    drop(guard);
    assert!(
        RecordingBackend::memory()
            .with_key_prefix("{bad}")
            .service()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn timeline_and_debug_describe_the_recording() {
    let (rec, _locks, guard) = holding("k").await;
    rec.probe("k").hit();
    let timeline = rec.timeline();
    assert!(
        timeline.contains("#1 t+0ns acquired `k` mutex owner"),
        "{timeline}"
    );
    assert!(
        timeline.contains("#2 t+0ns probe hit `k`: held by"),
        "{timeline}"
    );
    let debug = format!("{rec:?}");
    assert!(
        debug.contains("RecordingBackend") && debug.contains("held_now: [\"k\"]"),
        "{debug}"
    );
    use locks_core::LockBackend as _;
    assert_eq!(rec.name(), "memory");
    guard.release().await.unwrap();
}
