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

use locks_redis::RedisBackend;
use locks_testkit::model;
use locks_testkit::redis_server::RedisServer;

#[test]
fn redis_backend_matches_the_model() {
    let started = Instant::now();
    let rt = model::real_time_runtime().expect("a tokio runtime");
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
    let result = model::check_real_time(&rt, Arc::new(backend), 32, 24);
    if let Err(e) = result {
        panic!("the Redis backend differs from the model ({server:?}):\n{e}");
    }
    println!("32 cases on {} in {:?}", server.url(), started.elapsed());
}
