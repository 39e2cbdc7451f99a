//! Property tests: random scripts on the memory backend (on a manual clock, so fully
//! deterministic) must answer exactly as the reference model says, and a backend that forgets
//! the owner check on release must be caught with a short, readable counterexample.

use std::sync::Arc;
use std::time::Instant;

use locks_core::{LockBackend, ManualClock};
use locks_memory::MemoryBackend;
use locks_testkit::model::{self, ForgetfulBackend, Op, RealTime};
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

#[test]
fn a_hand_written_script_covers_every_op() {
    use Op::*;
    let ops = [
        Inspect { key: 0 },
        TryAcquire {
            owner: 0,
            key: 0,
            ttl_ms: 100,
        },
        TryAcquire {
            owner: 0,
            key: 0,
            ttl_ms: 200,
        }, // idempotent: same fence, ttl reset
        TryAcquire {
            owner: 1,
            key: 0,
            ttl_ms: 100,
        }, // held, 200 ms left
        Release { owner: 1, key: 0 }, // not the owner
        Extend {
            owner: 2,
            key: 0,
            ttl_ms: 500,
        }, // not the owner
        Advance { ms: 150 },
        Extend {
            owner: 0,
            key: 0,
            ttl_ms: 100,
        },
        Inspect { key: 0 },
        Advance { ms: 100 }, // exactly the ttl: expired
        Inspect { key: 0 },
        Extend {
            owner: 0,
            key: 0,
            ttl_ms: 100,
        },
        TryAcquire {
            owner: 1,
            key: 0,
            ttl_ms: 50,
        }, // a new holder, a larger fence
        Fault { ops: 2 },
        ForceRelease { key: 0 }, // fails, changes nothing
        TryAcquire {
            owner: 2,
            key: 1,
            ttl_ms: 50,
        }, // fails, changes nothing
        Inspect { key: 1 },
        ForceRelease { key: 0 },
        ForceRelease { key: 0 },
        TryAcquire {
            owner: 2,
            key: 0,
            ttl_ms: 50,
        },
        Release { owner: 2, key: 0 },
    ];
    run_on_memory(&ops, memory).unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn the_check_reports_the_step_and_both_sides() {
    let ops = [
        Op::TryAcquire {
            owner: 0,
            key: 0,
            ttl_ms: 100,
        },
        Op::Release { owner: 1, key: 0 },
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
