//! Property tests: random scripts on the memory backend (on a manual clock, so fully
//! deterministic) must answer exactly as the reference model says, and a backend that forgets
//! the owner check on release must be caught with a short, readable counterexample.

use std::sync::Arc;
use std::time::Instant;

use locks_core::LockBackend;
use locks_memory::{ManualClock, MemoryBackend};
use locks_testkit::model::{self, ForgetfulBackend, Kind, Op, RealTime};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRng, TestRunner};

/// A current-thread runtime for one case (nothing in the check waits on a timer).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Run one script on a fresh memory backend with a manual clock.
fn run_on_memory(
    ops: &[Op],
    wrap: fn(MemoryBackend) -> Arc<dyn LockBackend>,
) -> Result<(), String> {
    let clock = ManualClock::new();
    let backend = wrap(MemoryBackend::with_clock(clock.clone()));
    runtime().block_on(model::check(backend, &clock, ops))
}

fn memory(b: MemoryBackend) -> Arc<dyn LockBackend> {
    Arc::new(b)
}

fn forgetful(b: MemoryBackend) -> Arc<dyn LockBackend> {
    Arc::new(ForgetfulBackend::new(b))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // A failure is saved next to this file (`model.proptest-regressions`) and rerun first.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn memory_backend_matches_the_model(ops in model::ops(32)) {
        if let Err(report) = run_on_memory(&ops, memory) {
            return Err(TestCaseError::fail(report));
        }
    }
}

const MUTEX: Kind = Kind::Mutex;
const PERMIT_OF_1: Kind = Kind::Permit { limit: 1 };
const PERMIT_OF_2: Kind = Kind::Permit { limit: 2 };

fn acquire(owner: u8, key: u8, kind: Kind, ttl_ms: u64) -> Op {
    Op::TryAcquire {
        owner,
        key,
        kind,
        ttl_ms,
    }
}

fn extend(owner: u8, key: u8, kind: Kind, ttl_ms: u64) -> Op {
    Op::Extend {
        owner,
        key,
        kind,
        ttl_ms,
    }
}

#[test]
fn a_hand_written_script_covers_every_op() {
    use Op::{Advance, Fault, ForceRelease, Holders, Release};
    let ops = [
        Holders {
            key: 0,
            kind: MUTEX,
        },
        acquire(0, 0, MUTEX, 100),
        acquire(0, 0, MUTEX, 200), // idempotent: same fence, ttl reset
        acquire(1, 0, MUTEX, 100), // held, 200 ms left
        Release {
            owner: 1,
            key: 0,
            kind: MUTEX,
        }, // not the owner
        extend(2, 0, MUTEX, 500),  // not the owner
        Advance { ms: 150 },
        extend(0, 0, MUTEX, 100),
        Holders {
            key: 0,
            kind: MUTEX,
        },
        Advance { ms: 100 }, // exactly the ttl: expired
        Holders {
            key: 0,
            kind: MUTEX,
        },
        extend(0, 0, MUTEX, 100),
        acquire(1, 0, MUTEX, 50), // a new holder, a larger fence
        Fault { ops: 2 },
        ForceRelease {
            key: 0,
            kind: MUTEX,
        }, // fails, changes nothing
        acquire(2, 1, MUTEX, 50), // fails, changes nothing
        Holders {
            key: 1,
            kind: MUTEX,
        },
        ForceRelease {
            key: 0,
            kind: MUTEX,
        },
        ForceRelease {
            key: 0,
            kind: MUTEX,
        },
        acquire(2, 0, MUTEX, 50),
        Release {
            owner: 2,
            key: 0,
            kind: MUTEX,
        },
        // Permits: a semaphore beside the mutex of the same key, sharing its fences.
        acquire(0, 0, PERMIT_OF_2, 100),
        acquire(1, 0, PERMIT_OF_2, 200),
        acquire(2, 0, PERMIT_OF_2, 100), // full: held, 100 ms until o0's permit ends
        acquire(2, 0, MUTEX, 100),       // the mutex is another lock
        Holders {
            key: 0,
            kind: PERMIT_OF_2,
        }, // o0 then o1, oldest first
        acquire(1, 0, PERMIT_OF_1, 200), // a holder keeps its permit under a lower limit
        Release {
            owner: 2,
            key: 0,
            kind: PERMIT_OF_2,
        }, // not a holder
        Advance { ms: 100 },             // o0's permit and o2's mutex expire
        acquire(2, 0, PERMIT_OF_1, 100), // o1 alone fills a semaphore of 1
        acquire(2, 0, PERMIT_OF_2, 100),
        ForceRelease {
            key: 0,
            kind: MUTEX,
        }, // expired: nothing to release
        Holders {
            key: 0,
            kind: PERMIT_OF_2,
        },
        extend(1, 0, PERMIT_OF_2, 50),
        ForceRelease {
            key: 0,
            kind: PERMIT_OF_2,
        },
        Holders {
            key: 0,
            kind: PERMIT_OF_2,
        },
    ];
    run_on_memory(&ops, memory).unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn the_check_reports_the_step_and_both_sides() {
    let ops = [
        acquire(0, 0, MUTEX, 100),
        Op::Release {
            owner: 1,
            key: 0,
            kind: MUTEX,
        },
    ];
    let report = run_on_memory(&ops, forgetful).expect_err("the forgetful backend is caught");
    assert!(report.contains("step 1 of 2 `release(o1, k0)`"), "{report}");
    assert!(report.contains("backend answered Ok(true)"), "{report}");
    assert!(report.contains("model expected   Ok(false)"), "{report}");
    assert!(
        report.contains("0: try_acquire(o0, k0, ttl=100ms) -> Ok(Acquired(fence 1))"),
        "{report}"
    );
}

#[test]
fn a_real_time_clock_refuses_to_advance() {
    let backend: Arc<dyn LockBackend> = Arc::new(MemoryBackend::new());
    let result = runtime().block_on(model::check(
        backend,
        &RealTime::default(),
        &[Op::Advance { ms: 10 }],
    ));
    let report = result.expect_err("advance needs a clock that moves");
    assert!(report.contains("real_time_ops"), "{report}");
}

/// The negative test: the property must fail on a backend that ignores the owner on release,
/// and proptest must shrink the counterexample to a handful of steps.
#[test]
fn a_forgetful_backend_fails_with_a_short_counterexample() {
    let started = Instant::now();
    let config = Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&model::ops(32), |ops| {
        run_on_memory(&ops, forgetful).map_err(TestCaseError::fail)
    });
    match result {
        Err(TestError::Fail(reason, minimal)) => {
            println!(
                "shrunk counterexample ({} ops, found in {:?}):\n{}\n{reason}",
                minimal.len(),
                started.elapsed(),
                model::script(&minimal)
            );
            assert!(
                minimal.len() <= 4,
                "the counterexample should shrink to at most 4 ops:\n{}",
                model::script(&minimal)
            );
            assert!(
                minimal.iter().any(|op| matches!(op, Op::Release { .. })),
                "the counterexample must exercise release:\n{}",
                model::script(&minimal)
            );
        }
        Err(other) => panic!("unexpected proptest error: {other}"),
        Ok(()) => panic!("the model check passed a backend that ignores the owner on release"),
    }
}
