//! Coordination cases on mutex leases: leader election and ordered multi-lock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LockService, MultiGuard};
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

use super::common::{faulty_service, join_all, service, unique_primitive, waiting_at_most, within};
use crate::Harness;

/// Three candidates: one leader at a time, terms increase, `leader()` shows who leads.
pub(super) async fn election_one_leader_with_increasing_terms<H: Harness>(h: H) {
    let role = unique_primitive("leader");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let leaders = Arc::new(AtomicUsize::new(0));
    let terms = Arc::new(AsyncMutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for svc in &services {
        let election = svc.election(&role).expect("election");
        let (leaders, terms) = (leaders.clone(), terms.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let lead = election
                    .campaign_opts(waiting_at_most(Duration::from_secs(60)))
                    .await
                    .expect("elected");
                assert_eq!(leaders.fetch_add(1, Ordering::SeqCst), 0, "two leaders");
                let seen = election.leader().await.expect("leader").expect("someone");
                assert_eq!(seen.owner, lead.token());
                assert_eq!(seen.fence, lead.term());
                terms.lock().await.push(lead.term());
                tokio::time::sleep(Duration::from_millis(5)).await;
                leaders.fetch_sub(1, Ordering::SeqCst);
                lead.resign().await.expect("resign");
            }
        }));
    }
    join_all("campaigns", tasks).await;
    let terms = terms.lock().await.clone();
    assert_eq!(terms.len(), 9);
    assert!(
        terms.windows(2).all(|w| w[0] < w[1]),
        "terms not increasing: {terms:?}"
    );
    let election = services[0].election(&role).expect("election");
    assert!(election.leader().await.expect("leader").is_none());
}

/// A leader cut off from the store has its task cancelled at its local deadline, before the
/// next leader (elected once the store expires the role) starts its task.
pub(super) async fn election_task_cancelled_before_next_leader_starts<H: Harness>(h: H) {
    let role = unique_primitive("failover");
    let (faulty, old) = faulty_service(&h);
    let new = service(h.backend());
    let ttl = Duration::from_millis(600);
    let opts = AcquireOptions::new()
        .ttl(ttl)
        .wait_timeout(Duration::from_secs(30));
    let events = Arc::new(std::sync::Mutex::new(Vec::<(&'static str, Instant)>::new()));
    let started = Arc::new(tokio::sync::Notify::new());

    struct OnDrop(Arc<std::sync::Mutex<Vec<(&'static str, Instant)>>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            if let Ok(mut ev) = self.0.lock() {
                ev.push(("old leader cancelled", Instant::now()));
            }
        }
    }

    let old_run = {
        let (election, opts, events, started) = (
            old.election(&role).expect("election"),
            opts.clone(),
            events.clone(),
            started.clone(),
        );
        tokio::spawn(async move {
            let once = Arc::new(AtomicBool::new(false));
            election
                .run(opts, move |_lease| {
                    let (events, started, once) = (events.clone(), started.clone(), once.clone());
                    async move {
                        if once.swap(true, Ordering::SeqCst) {
                            // Re-elected after the partition: stay quiet until the test ends.
                            return std::future::pending().await;
                        }
                        let _cancel = OnDrop(events);
                        started.notify_one();
                        std::future::pending::<()>().await
                    }
                })
                .await
        })
    };
    within("old leader started", started.notified()).await;
    faulty.set_unavailable(true);
    let new_leader = {
        let (election, events) = (new.election(&role).expect("election"), events.clone());
        let done = Arc::new(tokio::sync::Notify::new());
        let done2 = done.clone();
        let task = tokio::spawn(async move {
            election
                .run(opts, move |_lease| {
                    let (events, done) = (events.clone(), done2.clone());
                    async move {
                        if let Ok(mut ev) = events.lock() {
                            ev.push(("new leader started", Instant::now()));
                        }
                        done.notify_one();
                    }
                })
                .await
        });
        within("new leader ran", done.notified()).await;
        task
    };
    within("new run returns", new_leader)
        .await
        .expect("task")
        .expect("run ok");
    let events = events.lock().expect("events").clone();
    let names: Vec<_> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["old leader cancelled", "new leader started"],
        "{events:?}"
    );
    old_run.abort();
    faulty.set_unavailable(false);
}

/// `Election::run` returns `Ok` when the service shuts down, cancelling the leader task.
pub(super) async fn election_run_returns_on_shutdown<H: Harness>(h: H) {
    let role = unique_primitive("stop");
    let svc = service(h.backend());
    let election = svc.election(&role).expect("election");
    let running = Arc::new(tokio::sync::Notify::new());
    let r2 = running.clone();
    let run = tokio::spawn(async move {
        election
            .run(AcquireOptions::new(), move |_| {
                let r = r2.clone();
                async move {
                    r.notify_one();
                    std::future::pending::<()>().await
                }
            })
            .await
    });
    within("leading", running.notified()).await;
    svc.shutdown().await;
    within("run returns", run)
        .await
        .expect("task")
        .expect("Ok on shutdown");
    assert!(
        !service(h.backend())
            .is_locked(&role)
            .await
            .expect("inspect")
    );
}

/// `acquire_all` of two keys, in the order given, waiting at most `limit`.
async fn acquire_both(
    svc: &LockService,
    keys: [&str; 2],
    limit: Duration,
) -> Result<MultiGuard, LockError> {
    svc.acquire_all(&keys, waiting_at_most(limit)).await
}

/// Two tasks move money in opposite directions many times through `acquire_all`: no
/// deadlock, the total is conserved, and no transfer ever overlaps another on an account.
pub(super) async fn multi_lock_opposite_orders_never_deadlock<H: Harness>(h: H) {
    let (a, b) = (unique_primitive("account-a"), unique_primitive("account-b"));
    let balances = Arc::new(std::sync::Mutex::new(HashMap::from([
        (a.clone(), 1_000i64),
        (b.clone(), 1_000i64),
    ])));
    let busy = Arc::new(AtomicBool::new(false));
    let rounds = 500;
    let mut tasks = Vec::new();
    for (from, to) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        let svc = service(h.backend());
        let (balances, busy) = (balances.clone(), busy.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..rounds {
                let both = acquire_both(&svc, [&from, &to], Duration::from_secs(30))
                    .await
                    .expect("both accounts");
                assert!(!busy.swap(true, Ordering::SeqCst), "two transfers at once");
                let amount = (i % 7 + 1) as i64;
                {
                    let mut bal = balances.lock().expect("balances");
                    *bal.get_mut(&from).expect("from") -= amount;
                    *bal.get_mut(&to).expect("to") += amount;
                }
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
                busy.store(false, Ordering::SeqCst);
                both.release().await.expect("release");
            }
        }));
    }
    join_all("transfers (no deadlock)", tasks).await;
    let bal = balances.lock().expect("balances");
    assert_eq!(
        bal.values().sum::<i64>(),
        2_000,
        "money created or destroyed"
    );
}

/// When one key cannot be had within the budget, the keys already taken are released.
pub(super) async fn multi_lock_rolls_back_on_timeout<H: Harness>(h: H) {
    let (a, b) = (unique_primitive("ma"), unique_primitive("mb"));
    let (keys_sorted_first, keys_sorted_second) = if a < b { (a, b) } else { (b, a) };
    let (svc, other) = (service(h.backend()), service(h.backend()));
    let blocker = other.acquire(&keys_sorted_second).await.expect("blocker");
    let err = acquire_both(
        &svc,
        [&keys_sorted_second, &keys_sorted_first],
        Duration::from_millis(300),
    )
    .await
    .expect_err("second key is held");
    assert!(
        matches!(err, LockError::AcquireTimeout { ref key, .. } if *key == keys_sorted_second),
        "{err:?}"
    );
    assert!(
        !svc.is_locked(&keys_sorted_first).await.expect("inspect"),
        "the first key was not rolled back"
    );
    assert_eq!(svc.held_count(), 0);
    blocker.release().await.expect("release");
    let both = svc
        .acquire_all(
            &[keys_sorted_first.as_str(), keys_sorted_second.as_str()],
            AcquireOptions::new(),
        )
        .await
        .expect("both free");
    assert_eq!(both.guards().len(), 2);
    assert!(both.get(&keys_sorted_first).is_some());
    both.release().await.expect("release");
}
