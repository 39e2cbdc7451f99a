//! The primitives' conformance suite: semaphore, read-write lock, leader election and ordered
//! multi-lock, on any backend. Instantiate it next to the mutex suite:
//!
//! ```ignore
//! locks_testkit::primitives_tests!(harness);               // tokio paused time
//! locks_testkit::primitives_tests!(harness, time = real);  // a store with its own clock
//! ```
//!
//! The mutex suite also runs through [`adapters`](crate::adapters) (a one-permit semaphore and
//! a write lock): `locks_testkit::adapter_conformance_tests!(harness)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use locks_core::{AcquireOptions, LeaseState, LockError, LostReason};
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::{Instant, timeout};

use crate::Harness;
use crate::conformance::service;
use crate::faulty::FaultyBackend;

/// Instantiate the primitives suite. Same arguments as
/// [`conformance_tests!`](crate::conformance_tests).
#[macro_export]
macro_rules! primitives_tests {
    ($factory:path) => {
        $crate::primitives_tests!($factory, time = paused);
    };
    ($factory:path, time = paused) => {
        $crate::__primitives_cases!(
            $factory,
            [::tokio::test(
                flavor = "current_thread",
                start_paused = true
            )]
        );
    };
    ($factory:path, time = real) => {
        $crate::__primitives_cases!(
            $factory,
            [::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        );
    };
}

/// Implementation detail of [`primitives_tests!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __primitives_cases {
    ($factory:path, [$attr:meta]) => {
        $crate::__primitives_cases!(@each $factory, [$attr],
            semaphore_never_exceeds_its_permits,
            semaphore_crashed_holder_permit_returns_after_ttl,
            semaphore_permits_renew_and_report_loss,
            semaphore_permit_count_can_change,
            semaphore_waiter_is_woken_by_release,
            rwlock_readers_share_writers_exclude,
            rwlock_writer_is_not_starved_by_readers,
            rwlock_abandoned_writer_does_not_block_readers,
            rwlock_leases_renew_and_report_loss,
            election_one_leader_with_increasing_terms,
            election_task_cancelled_before_next_leader_starts,
            election_run_returns_on_shutdown,
            multi_lock_opposite_orders_never_deadlock,
            multi_lock_rolls_back_on_timeout,
            primitive_inputs_are_validated
        );
    };
    (@each $factory:path, [$attr:meta], $($name:ident),* $(,)?) => {
        /// The locks-testkit primitives suite.
        mod primitives {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[$attr]
                async fn $name() {
                    let harness = $factory().await;
                    $crate::primitives_suite::$name(harness).await;
                }
            )*
        }
    };
}

/// Run the mutex conformance suite through a one-permit semaphore and a write lock.
#[macro_export]
macro_rules! adapter_conformance_tests {
    ($factory:path $(, time = $time:ident)?) => {
        /// The mutex suite through a one-permit semaphore.
        mod semaphore_as_mutex {
            #[allow(unused_imports)]
            use super::*;
            async fn adapted() -> $crate::adapters::AdaptedHarness<impl $crate::Harness> {
                $crate::adapters::AdaptedHarness::semaphore($factory().await)
            }
            $crate::conformance_tests!(adapted $(, time = $time)?);
        }
        /// The mutex suite through the write side of a read-write lock.
        mod write_lock_as_mutex {
            #[allow(unused_imports)]
            use super::*;
            async fn adapted() -> $crate::adapters::AdaptedHarness<impl $crate::Harness> {
                $crate::adapters::AdaptedHarness::write_lock($factory().await)
            }
            $crate::conformance_tests!(adapted $(, time = $time)?);
        }
    };
}

fn unique(name: &str) -> String {
    crate::conformance::unique(&format!("primitives:{name}"))
}

const LIMIT: Duration = Duration::from_secs(30);

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {LIMIT:?}"))
}

/// 30 tasks on 3 services share a 3-permit semaphore: never more than 3 inside, and all 3
/// permits do get used.
pub async fn semaphore_never_exceeds_its_permits<H: Harness>(h: H) {
    let name = unique("sem");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let inside = Arc::new(AtomicUsize::new(0));
    let max_inside = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..30 {
        let sem = services[i % 3].semaphore(&name, 3).expect("semaphore");
        let (inside, max_inside) = (inside.clone(), max_inside.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem
                .acquire_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(60)))
                .await
                .expect("permit");
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            max_inside.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            inside.fetch_sub(1, Ordering::SeqCst);
            permit.release().await.expect("release");
        }));
    }
    within("30 tasks", futures::future::try_join_all(tasks))
        .await
        .expect("no panic");
    let max = max_inside.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} holders of a 3-permit semaphore");
    assert_eq!(max, 3, "permits were never used in parallel");
    let sem = services[0].semaphore(&name, 3).expect("semaphore");
    assert!(sem.holders().await.expect("holders").is_empty());
    assert_eq!(sem.available().await.expect("available"), 3);
}

/// A holder that crashes (its guard abandoned: no renewal, no release) gives its permit back
/// when the ttl passes; a waiter then gets it.
pub async fn semaphore_crashed_holder_permit_returns_after_ttl<H: Harness>(h: H) {
    let name = unique("crash");
    let (a, b) = (service(h.backend()), service(h.backend()));
    let sem_a = a.semaphore(&name, 2).expect("semaphore");
    let ttl = Duration::from_millis(500);
    let crashed = sem_a
        .acquire_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("permit");
    let alive = sem_a.acquire().await.expect("permit");
    let crashed_token = crashed.token();
    let start = Instant::now();
    crashed.abandon();
    let sem_b = b.semaphore(&name, 2).expect("semaphore");
    assert!(matches!(
        sem_b.try_acquire().await,
        Err(LockError::Contended { .. })
    ));
    let next = within(
        "permit after the crashed holder's ttl",
        sem_b.acquire_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(10))),
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
pub async fn semaphore_permits_renew_and_report_loss<H: Harness>(h: H) {
    let name = unique("semrenew");
    let svc = service(h.backend());
    let sem = svc.semaphore(&name, 1).expect("semaphore");
    let ttl = Duration::from_millis(300);
    let permit = sem
        .acquire_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("permit");
    tokio::time::sleep(ttl * 4).await;
    assert_eq!(permit.state(), LeaseState::Held);
    assert!(permit.is_held().await.expect("inspect"));
    h.expire(sem.key()).await;
    let reason = timeout(ttl * 3, permit.lost()).await.expect("lost fired");
    assert_eq!(reason, LostReason::NotOwner);
}

/// Lowering the permit count refuses new permits until enough holders leave (live permits
/// are never revoked); raising it lets new holders in at once.
pub async fn semaphore_permit_count_can_change<H: Harness>(h: H) {
    let name = unique("resize");
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
pub async fn semaphore_waiter_is_woken_by_release<H: Harness>(h: H) {
    let name = unique("semwake");
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
            .acquire_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(10)))
            .await
    });
    tokio::task::yield_now().await;
    let fence = held.fence();
    held.release().await.expect("release");
    let next = within("waiter", waiter)
        .await
        .expect("task")
        .expect("permit after release");
    assert!(next.fence() > fence);
    next.release().await.expect("release");
}

/// Readers overlap with each other, never with a writer; writers never overlap.
pub async fn rwlock_readers_share_writers_exclude<H: Harness>(h: H) {
    let name = unique("rw");
    let services: Vec<_> = (0..3).map(|_| service(h.backend())).collect();
    let readers = Arc::new(AtomicI64::new(0));
    let writers = Arc::new(AtomicI64::new(0));
    let max_readers = Arc::new(AtomicI64::new(0));
    let bad = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..24 {
        let rw = services[i % 3].rwlock(&name).expect("rwlock");
        let (readers, writers, max_readers, bad) = (
            readers.clone(),
            writers.clone(),
            max_readers.clone(),
            bad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(60));
            if i % 4 == 0 {
                let w = rw.write_opts(opts).await.expect("write");
                if writers.fetch_add(1, Ordering::SeqCst) != 0
                    || readers.load(Ordering::SeqCst) != 0
                {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                writers.fetch_sub(1, Ordering::SeqCst);
                w.release().await.expect("release");
            } else {
                let r = rw.read_opts(opts).await.expect("read");
                let now = readers.fetch_add(1, Ordering::SeqCst) + 1;
                max_readers.fetch_max(now, Ordering::SeqCst);
                if writers.load(Ordering::SeqCst) != 0 {
                    bad.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                readers.fetch_sub(1, Ordering::SeqCst);
                r.release().await.expect("release");
            }
        }));
    }
    within("24 tasks", futures::future::try_join_all(tasks))
        .await
        .expect("no panic");
    assert!(!bad.load(Ordering::SeqCst), "a writer overlapped someone");
    assert!(
        max_readers.load(Ordering::SeqCst) > 1,
        "readers never shared"
    );
    let info = services[0]
        .rwlock(&name)
        .expect("rwlock")
        .inspect()
        .await
        .expect("inspect");
    assert!(info.readers.is_empty() && info.writer.is_none());
}

/// A waiting writer blocks new readers, so a stream of overlapping readers cannot starve it.
pub async fn rwlock_writer_is_not_starved_by_readers<H: Harness>(h: H) {
    let name = unique("starve");
    let (r_svc, w_svc) = (service(h.backend()), service(h.backend()));
    let rw = r_svc.rwlock(&name).expect("rwlock");
    let first = rw.read().await.expect("read");
    let writer = {
        let rw = w_svc.rwlock(&name).expect("rwlock");
        tokio::spawn(async move {
            rw.write_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(20)))
                .await
        })
    };
    // Wait until the writer has marked itself as waiting.
    within("writer waiting", async {
        while !rw.inspect().await.expect("inspect").writer_waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(
        matches!(rw.try_read().await, Err(LockError::Contended { .. })),
        "a new reader got in ahead of the waiting writer"
    );
    // The reader that was in leaves; the writer gets in although readers keep asking.
    let readers_keep_asking = {
        let rw = rw.clone();
        tokio::spawn(async move {
            let mut got = 0u32;
            for _ in 0..50 {
                if let Ok(g) = rw.try_read().await {
                    got += 1;
                    g.release().await.expect("release");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            got
        })
    };
    first.release().await.expect("release");
    let w = within("writer", writer)
        .await
        .expect("task")
        .expect("writer not starved");
    assert_eq!(
        rw.inspect().await.expect("inspect").writer.map(|i| i.owner),
        Some(w.token())
    );
    w.release().await.expect("release");
    within("readers", readers_keep_asking).await.expect("task");
    rw.read()
        .await
        .expect("readers after the writer")
        .release()
        .await
        .expect("release");
}

/// A writer that gives up removes its waiting mark: readers are not blocked by a ghost.
pub async fn rwlock_abandoned_writer_does_not_block_readers<H: Harness>(h: H) {
    let name = unique("ghost");
    let svc = service(h.backend());
    let rw = svc.rwlock(&name).expect("rwlock");
    let reader = rw.read().await.expect("read");
    let err = rw
        .write_opts(
            AcquireOptions::new()
                .wait_timeout(Duration::from_millis(200))
                .ttl(Duration::from_secs(60)),
        )
        .await
        .expect_err("readers hold it");
    assert!(matches!(err, LockError::AcquireTimeout { .. }), "{err:?}");
    within("mark removed", async {
        while rw.inspect().await.expect("inspect").writer_waiting {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let second = rw.try_read().await.expect("no ghost writer");
    second.release().await.expect("release");
    reader.release().await.expect("release");
}

/// Read and write leases renew, and report revocation through `lost()`.
pub async fn rwlock_leases_renew_and_report_loss<H: Harness>(h: H) {
    let name = unique("rwrenew");
    let svc = service(h.backend());
    let rw = svc.rwlock(&name).expect("rwlock");
    let ttl = Duration::from_millis(300);
    let r = rw
        .read_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("read");
    tokio::time::sleep(ttl * 4).await;
    assert!(r.is_held().await.expect("inspect"));
    h.expire(rw.key()).await;
    assert_eq!(
        timeout(ttl * 3, r.lost()).await.expect("lost"),
        LostReason::NotOwner
    );
    let w = rw
        .write_opts(AcquireOptions::new().ttl(ttl))
        .await
        .expect("write");
    tokio::time::sleep(ttl * 4).await;
    assert!(w.is_held().await.expect("inspect"));
    assert!(w.fence() > r.fence());
    w.release().await.expect("release");
}

/// Three candidates: one leader at a time, terms increase, `leader()` shows who leads.
pub async fn election_one_leader_with_increasing_terms<H: Harness>(h: H) {
    let role = unique("leader");
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
                    .campaign_opts(AcquireOptions::new().wait_timeout(Duration::from_secs(60)))
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
    within("campaigns", futures::future::try_join_all(tasks))
        .await
        .expect("no panic");
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
pub async fn election_task_cancelled_before_next_leader_starts<H: Harness>(h: H) {
    let role = unique("failover");
    let faulty = FaultyBackend::from_arc(h.backend());
    let old = service(Arc::new(faulty.clone()));
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
pub async fn election_run_returns_on_shutdown<H: Harness>(h: H) {
    let role = unique("stop");
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

/// Two tasks move money in opposite directions many times through `acquire_all`: no
/// deadlock, the total is conserved, and no transfer ever overlaps another on an account.
pub async fn multi_lock_opposite_orders_never_deadlock<H: Harness>(h: H) {
    let (a, b) = (unique("account-a"), unique("account-b"));
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
                let both = svc
                    .acquire_all(
                        &[from.as_str(), to.as_str()],
                        AcquireOptions::new().wait_timeout(Duration::from_secs(30)),
                    )
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
    within("transfers", futures::future::try_join_all(tasks))
        .await
        .expect("no deadlock, no panic");
    let bal = balances.lock().expect("balances");
    assert_eq!(
        bal.values().sum::<i64>(),
        2_000,
        "money created or destroyed"
    );
}

/// When one key cannot be had within the budget, the keys already taken are released.
pub async fn multi_lock_rolls_back_on_timeout<H: Harness>(h: H) {
    let (a, b) = (unique("ma"), unique("mb"));
    let (keys_sorted_first, keys_sorted_second) = if a < b { (a, b) } else { (b, a) };
    let (svc, other) = (service(h.backend()), service(h.backend()));
    let blocker = other.acquire(&keys_sorted_second).await.expect("blocker");
    let err = svc
        .acquire_all(
            &[keys_sorted_second.as_str(), keys_sorted_first.as_str()],
            AcquireOptions::new().wait_timeout(Duration::from_millis(300)),
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

/// Bad names, zero permits and bad keys in a multi-lock are typed errors that write nothing.
pub async fn primitive_inputs_are_validated<H: Harness>(h: H) {
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
    let good = unique("good");
    assert!(matches!(
        svc.acquire_all(&[good.as_str(), ""], AcquireOptions::new())
            .await,
        Err(LockError::InvalidKey { .. })
    ));
    assert!(
        !svc.is_locked(&good).await.expect("inspect"),
        "a rejected call wrote"
    );
    let sem = svc.semaphore(&unique("semttl"), 1).expect("semaphore");
    assert!(matches!(
        sem.acquire_opts(AcquireOptions::new().ttl(Duration::ZERO))
            .await,
        Err(LockError::InvalidTtl { .. })
    ));
    assert!(sem.holders().await.expect("holders").is_empty());
}
