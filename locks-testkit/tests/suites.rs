//! Self-checks of the suites: the registries built from the case lists, the capability-aware
//! runner, and that a case cannot be asked for by a wrong name.

use std::collections::HashSet;
use std::sync::Arc;

use locks_core::LeaseKind;
use locks_memory::MemoryBackend;
use locks_testkit::Harness;
use locks_testkit::conformance::adapters::MutexVia;
use locks_testkit::conformance::{
    BackendHarness, COORDINATION, FAIR, MUTEX, RWLOCK, SEMAPHORE, SUITES,
};

/// A store that can only keep mutex leases: the memory backend seen through a one-permit
/// semaphore adapter (which supports `Mutex` and nothing else).
fn mutex_only() -> Box<dyn Harness> {
    let memory = MemoryBackend::new();
    let adapter = MutexVia::semaphore(Arc::new(memory.clone()));
    Box::new(BackendHarness::new(adapter, move |key| {
        memory.expire_now(&key);
        async {}
    }))
}

#[test]
fn every_suite_lists_its_cases_once() {
    let expected = [
        (&MUTEX, 23),
        (&SEMAPHORE, 6),
        (&RWLOCK, 4),
        (&COORDINATION, 6),
        (&FAIR, 2),
    ];
    for (suite, count) in expected {
        let names: HashSet<_> = suite.cases.iter().map(|c| c.name).collect();
        assert_eq!(
            names.len(),
            suite.cases.len(),
            "{}: a case is listed twice",
            suite.name
        );
        assert_eq!(
            suite.cases.len(),
            count,
            "{}: cases added or removed",
            suite.name
        );
    }
    let suite_names: HashSet<_> = SUITES.iter().map(|s| s.name).collect();
    assert_eq!(suite_names.len(), 5);
}

#[test]
fn each_suite_names_the_kinds_it_needs() {
    assert_eq!(MUTEX.kinds, &[LeaseKind::Mutex]);
    assert!(matches!(SEMAPHORE.kinds, [LeaseKind::Permit { .. }]));
    assert_eq!(RWLOCK.kinds, &[LeaseKind::Read, LeaseKind::Write]);
    assert_eq!(COORDINATION.kinds, &[LeaseKind::Mutex]);
    assert_eq!(FAIR.kinds, &[LeaseKind::FairMutex]);
}

/// A backend without permits and read-write leases does not skip those suites: each case
/// checks that the primitive is refused with `Unsupported` when created.
#[tokio::test(start_paused = true)]
async fn unsupported_kinds_run_the_refusal_check_instead_of_being_skipped() {
    let backend = mutex_only().backend();
    assert!(backend.supports(LeaseKind::Mutex));
    assert!(!backend.supports(LeaseKind::Permit { limit: 1 }));
    assert!(!backend.supports(LeaseKind::Read));
    for case in SEMAPHORE.cases.iter().chain(RWLOCK.cases) {
        let suite = if SEMAPHORE.case(case.name).is_some() {
            &SEMAPHORE
        } else {
            &RWLOCK
        };
        suite.run(case.name, mutex_only()).await;
    }
    assert!(!backend.supports(LeaseKind::FairMutex));
    for case in FAIR.cases {
        FAIR.run(case.name, mutex_only()).await;
    }
    // The kinds it does support run for real.
    MUTEX.run("fencing_strictly_increases", mutex_only()).await;
}

#[tokio::test(start_paused = true)]
#[should_panic(expected = "suite `mutex` has no case `no_such_case`")]
async fn asking_for_a_case_that_is_not_listed_panics() {
    MUTEX.run("no_such_case", mutex_only()).await;
}
