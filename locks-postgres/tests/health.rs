//! `HealthCheck for PostgresBackend` and `LockService::health()` against the run's real
//! PostgreSQL server: version, clock offset and recovery state match what the server says.

use std::time::Duration;

use locks_core::health::HealthLimits;
use locks_core::{HealthCheck, LockService};

mod common;
use common::Fixture;

#[tokio::test]
async fn reports_version_clock_and_replication_of_the_server() {
    let fx = Fixture::new().await;
    let backend = fx.backend().await;
    let health = backend.health().await.expect("health");

    let row = fx
        .admin
        .query_one(
            "SELECT current_setting('server_version'), pg_is_in_recovery()",
            &[],
        )
        .await
        .expect("query");
    let version: String = row.get(0);
    let in_recovery: bool = row.get(1);
    assert_eq!(health.backend, "postgres");
    assert_eq!(health.server_version.as_deref(), Some(version.as_str()));
    assert_eq!(health.may_evict, Some(false));
    let replication = health.replication.clone().expect("replication");
    assert_eq!(
        replication.role,
        if in_recovery { "standby" } else { "primary" }
    );
    assert_eq!(replication.connected_replicas, Some(0));
    // Same host, same clock: within the round trip (a unit or epoch mistake would be far off).
    let offset = health.clock_offset.expect("clock");
    assert!(offset.magnitude() < Duration::from_millis(100), "{offset}");
    assert!(
        health.problems(&HealthLimits::default()).is_empty(),
        "{health:?}"
    );

    let locks = LockService::builder_with_health(backend)
        .build()
        .expect("service");
    let through_service = locks.health().await.expect("health");
    assert_eq!(through_service.server_version, health.server_version);
    assert_eq!(through_service.replication, health.replication);
}
