//! `LockService::health()`: a registered check's facts, or a measured round trip when there
//! is none; an unreachable store is a typed, transient error.

use locks_core::health::{BackendHealth, ClockOffset};
use locks_core::{LockError, LockService};
use locks_memory::MemoryBackend;
use locks_testkit::faulty::FaultyBackend;

#[tokio::test]
async fn without_a_check_the_service_measures_a_round_trip_and_knows_nothing_else() {
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = LockService::new(faulty.clone()).expect("service");
    let health = locks.health().await.expect("health");
    let expected = BackendHealth::new("memory", health.ping);
    assert_eq!(health, expected);

    faulty.set_unavailable(true);
    match locks.health().await {
        Err(LockError::Backend { operation, source }) => {
            assert_eq!(operation, "health");
            assert!(source.is_transient(), "{source}");
        }
        other => panic!("an unreachable store: {other:?}"),
    }
}

#[tokio::test]
async fn the_memory_backend_reports_its_trivial_facts() {
    let locks = LockService::builder_with_health(MemoryBackend::new())
        .build()
        .expect("service");
    let health = locks.health().await.expect("health");
    assert_eq!(health.backend, "memory");
    assert_eq!(health.may_evict, Some(false));
    assert_eq!(health.clock_offset, Some(ClockOffset::from_micros(0)));
    assert!(
        health
            .server_version
            .as_deref()
            .is_some_and(|v| v.starts_with("locks-memory ")),
        "{health:?}"
    );
    assert_eq!(health.replication, None);
    assert!(health.is_healthy());
}
