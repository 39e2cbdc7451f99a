//! Property test: random scripts on a real Redis server must answer exactly as the reference
//! model (`locks_testkit::model`) says, for mutex leases and semaphore permits (the backend
//! must support both kinds).
//!
//! Redis keeps its own clock, which the test cannot move and must not sleep on, so the scripts
//! come from `model::real_time_ops`: no `Advance` step, and ttls of at least 10 s, so nothing
//! expires during a case; remaining times are compared within `RealTime`'s tolerance (5 s).
//! Expiry is covered by the memory backend's property and by the conformance suite.
//!
//! One private server serves every case; each case uses keys of its own. Without a server the
//! test fails with the fixture's message (how to install one); it never skips.

use std::sync::Arc;
use std::time::Instant;

use locks_core::LockBackend;
use locks_redis::RedisBackend;
use locks_testkit::model::{self, RealTime};
use locks_testkit::redis_server::RedisServer;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

#[test]
fn redis_backend_matches_the_model() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    // The connection and the server process are dropped inside the runtime's context.
    let _context = rt.enter();
    let (server, backend) = rt.block_on(async {
        let server = RedisServer::start()
            .await
            .unwrap_or_else(|e| panic!("redis fixture: {e}"));
        let backend = RedisBackend::connect(&server.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", server.url()));
        (server, backend)
    });
    let backend: Arc<dyn LockBackend> = Arc::new(backend);
    let clock = RealTime::default();

    let config = Config {
        cases: 32,
        // Outside the `proptest!` macro the runner knows no source file to save failures next
        // to; the failure message carries the shrunk script.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&model::real_time_ops(24), |ops| {
        rt.block_on(model::check(Arc::clone(&backend), &clock, &ops))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("the Redis backend differs from the model ({server:?}):\n{e}");
    }
    println!("32 cases on {} in {:?}", server.url(), started.elapsed());
}
