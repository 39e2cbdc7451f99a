//! The property of a store that keeps its own clock (Redis, PostgreSQL), run in real time.

use std::sync::Arc;

use locks_core::LockBackend;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tokio::runtime::Runtime;

use super::{RealTime, check, real_time_ops};

/// The runtime [`check_real_time`] blocks on: multi-thread with one worker, every driver on.
///
/// # Errors
///
/// When the runtime cannot be built (as [`tokio::runtime::Builder::build`]).
pub fn real_time_runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs `cases` random scripts of [`real_time_ops`]`(max_len)` on `backend`, each checked by
/// [`check`] with the [`RealTime`] clock, blocking on `rt`. Returns the runner's failure, with
/// the shrunk script.
///
/// Failures are not persisted: outside the `proptest!` macro the runner knows no source file
/// to save them next to.
///
/// # Panics
///
/// When called from inside an async context (it blocks on `rt`).
pub fn check_real_time(
    rt: &Runtime,
    backend: Arc<dyn LockBackend>,
    cases: u32,
    max_len: usize,
) -> Result<(), String> {
    let clock = RealTime::default();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(&real_time_ops(max_len), |ops| {
            rt.block_on(check(Arc::clone(&backend), &clock, &ops))
                .map_err(TestCaseError::fail)
        })
        .map_err(|e| e.to_string())
}
