//! `HealthCheck for RedisBackend` and `LockService::health()` against real `redis-server`s:
//! the facts match what the server itself says, an evicting policy and a replica are problems,
//! an unreachable server is a transient error.

use std::time::Duration;

use locks_core::health::{HealthLimits, HealthProblem};
use locks_core::{HealthCheck, LockError, LockService};
use locks_redis::redis;
use locks_testkit::redis_server::RedisServerConfig;

mod common;
use common::{builder, connect, raw, server_with, within};

const MAX_MEMORY: u64 = 64 * 1024 * 1024;

/// The value of `name` in the server's own `INFO section`.
async fn info_field(
    conn: &mut redis::aio::MultiplexedConnection,
    section: &str,
    name: &str,
) -> String {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{name}:"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no {name} in INFO {section}"))
}

#[tokio::test]
async fn reports_version_policy_memory_clock_and_replication_of_a_primary() {
    let server = server_with(
        RedisServerConfig::new()
            .local_only()
            .args(["--maxmemory", &MAX_MEMORY.to_string()]),
    )
    .await;
    let backend = connect(builder(server.url())).await;
    let health = within("health", backend.health()).await.expect("health");
    let mut conn = raw(&server).await;
    println!("{health:#?}"); // what the README's "Monitoring" shows

    assert_eq!(health.backend, "redis");
    assert_eq!(health.address.as_deref(), Some(backend.addr()));
    assert_eq!(
        health.server_version.as_deref(),
        Some(
            info_field(&mut conn, "server", "redis_version")
                .await
                .as_str()
        )
    );
    assert_eq!(health.eviction_policy.as_deref(), Some("noeviction"));
    assert_eq!(health.may_evict, Some(false));
    assert_eq!(health.max_memory, Some(MAX_MEMORY));
    assert!(
        health
            .used_memory
            .is_some_and(|used| used > 0 && used < MAX_MEMORY),
        "{health:?}"
    );
    // Same host, same clock: the offset is within the round trip (a unit or epoch mistake
    // would be seconds or years off).
    let offset = health.clock_offset.expect("TIME answered");
    assert!(offset.magnitude() < Duration::from_millis(100), "{offset}");
    let replication = health.replication.clone().expect("INFO replication");
    assert_eq!(replication.role, "master");
    assert_eq!(replication.connected_replicas, Some(0));
    assert_eq!(replication.link_up, None);
    assert!(
        health.is_healthy(),
        "{:?}",
        health.problems(&HealthLimits::default())
    );

    // The service gives a readiness probe the same facts (but the ping and clock readings).
    let locks = LockService::builder_with_health(backend)
        .build()
        .expect("service");
    let through_service = within("health", locks.health()).await.expect("health");
    assert_eq!(through_service.server_version, health.server_version);
    assert_eq!(through_service.eviction_policy, health.eviction_policy);
    assert_eq!(through_service.max_memory, health.max_memory);
    assert_eq!(through_service.replication, health.replication);
}

#[tokio::test]
async fn an_evicting_policy_and_a_replica_are_problems_and_a_dead_server_an_error() {
    let mut primary = server_with(
        RedisServerConfig::new()
            .local_only()
            .args(["--maxmemory-policy", "allkeys-lru"]),
    )
    .await;
    let replica = server_with(RedisServerConfig::new().local_only()).await;
    let mut conn = raw(&replica).await;
    let () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port())
        .query_async(&mut conn)
        .await
        .expect("REPLICAOF");

    // Accepting the risk at connect; health still says it.
    let backend = connect(builder(primary.url()).allow_eviction_policy(true)).await;
    let health = within("health", backend.health()).await.expect("health");
    assert_eq!(health.eviction_policy.as_deref(), Some("allkeys-lru"));
    assert_eq!(health.may_evict, Some(true));
    assert_eq!(
        health.problems(&HealthLimits::default()),
        vec![HealthProblem::MayEvict {
            policy: Some("allkeys-lru".into())
        }]
    );

    let on_replica = connect(builder(replica.url())).await;
    let health = within("health", on_replica.health()).await.expect("health");
    let replication = health.replication.clone().expect("INFO replication");
    assert_eq!(replication.role, "slave");
    assert!(replication.link_up.is_some(), "{replication:?}");
    assert!(
        health
            .problems(&HealthLimits::default())
            .contains(&HealthProblem::Replica {
                role: "slave".into()
            }),
        "{health:?}"
    );

    let locks = LockService::builder_with_health(backend)
        .build()
        .expect("service");
    primary.stop().await.expect("stop");
    let err = within("health", locks.health()).await;
    match err {
        Err(LockError::Backend { source, .. }) => assert!(source.is_transient(), "{source}"),
        other => panic!("a stopped server: {other:?}"),
    }
}
