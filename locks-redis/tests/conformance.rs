//! The shared conformance suites (mutex, primitives, and the mutex suite through a 1-permit
//! semaphore and a write lock) on a real Redis server, in real time.

use locks_redis::RedisBackend;
use locks_testkit::conformance::BackendHarness;

mod common;

use common::{connect, harness_over, private_server, raw};

/// A private server, the backend on it, and a raw connection to it for the harness's `expire`.
async fn harness() -> BackendHarness {
    let server = private_server().await;
    let backend = connect(RedisBackend::builder(server.url())).await;
    let raw = raw(&server).await;
    harness_over(backend, raw).keeping(server)
}

locks_testkit::conformance_tests!(harness, time = real);
locks_testkit::primitives_tests!(harness, time = real);
locks_testkit::adapter_conformance_tests!(harness, time = real);
