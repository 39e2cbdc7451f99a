//! Property test: random scripts on a real PostgreSQL server must answer exactly as the
//! reference model (`locks_testkit::model`) says, for mutex leases and semaphore permits.
//!
//! PostgreSQL keeps its own clock, which the test cannot move and must not sleep on, so the
//! scripts come from `model::real_time_ops`: no `Advance` step, and ttls of at least 10 s, so
//! nothing expires during a case; remaining times are compared within `RealTime`'s tolerance.
//! Expiry is covered by the conformance suite. One schema of the run's shared server serves
//! every case; each case uses keys of its own.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::Fixture;
use locks_testkit::model;

#[test]
fn postgres_backend_matches_the_model() {
    let started = Instant::now();
    let rt = model::real_time_runtime().expect("a tokio runtime");
    let _context = rt.enter();
    let (fixture, backend) = rt.block_on(async {
        let f = Fixture::new().await;
        let b = f.backend().await;
        (f, b)
    });
    let result = model::check_real_time(&rt, Arc::new(backend), 32, 24);
    if let Err(e) = result {
        panic!(
            "the PostgreSQL backend differs from the model (schema {}):\n{e}",
            fixture.schema
        );
    }
    println!("32 cases on {} in {:?}", fixture.url, started.elapsed());
}
