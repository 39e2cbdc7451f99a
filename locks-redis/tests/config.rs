//! `RedisConfig`: settings from data connect to a private redis-server with every setting
//! applied, and bad values give the builder's typed errors (nothing connects).

use std::time::Duration;

use locks_core::{AcquireOptions, LockService};
use locks_redis::redis::{self, AsyncCommands};
use locks_redis::{
    FenceCounterTtl, RedisBackend, RedisBackendError, RedisConfig, RedisTopology, TopologyKind,
};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

fn parse(json: &str) -> RedisConfig {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("valid config {json}: {e}"))
}

async fn server(config: RedisServerConfig) -> RedisServer {
    RedisServer::start_with(config)
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"))
}

/// The option an `InvalidOption` names, or a panic showing what came instead.
fn invalid_option<T>(result: Result<T, RedisBackendError>) -> &'static str {
    match result {
        Err(RedisBackendError::InvalidOption { option, .. }) => option,
        Err(e) => panic!("expected InvalidOption, got {e:?}"),
        Ok(_) => panic!("expected InvalidOption, got a backend"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parsed_config_connects_with_every_setting_applied() {
    let server = server(RedisServerConfig::new()).await;
    let config = parse(&format!(
        r#"{{
            "topology": "single",
            "url": "{}",
            "connect_timeout": "3s",
            "response_timeout": "2s 500ms",
            "allow_eviction_policy": false,
            "fence_counter_ttl": {{ "multiplier": 3, "floor": "10m" }}
        }}"#,
        server.url()
    ));
    assert_eq!(config.topology, TopologyKind::Single);
    assert_eq!(config.response_timeout, Some(Duration::from_millis(2_500)));
    assert_eq!(
        config.fence_counter_ttl.as_ref().map(|f| f.ttl()),
        Some(FenceCounterTtl::new(3, Duration::from_secs(600)))
    );
    let builder_debug = format!("{:?}", config.clone().into_builder().expect("builder"));
    assert!(
        builder_debug.contains("response_timeout: 2.5s"),
        "{builder_debug}"
    );
    assert!(
        builder_debug.contains("connect_timeout: 3s"),
        "{builder_debug}"
    );

    let locks = LockService::new(config.connect().await.expect("connect")).expect("service");
    let guard = locks
        .acquire_opts("cfg:k", AcquireOptions::new().ttl(Duration::from_secs(1)))
        .await
        .expect("acquire");
    // The fence counter lives `max(3 × 1 s, 10 min)`, not the default `max(2 × 1 s, 60 s)`.
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection");
    let pttl: i64 = conn.pttl("_lock:{cfg:k}:fence").await.expect("PTTL");
    assert!(
        pttl > 60_000 && pttl <= 600_000,
        "fence counter PTTL {pttl} ms"
    );
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eviction_policy_opt_out_is_applied() {
    let server =
        server(RedisServerConfig::new().args(["--maxmemory-policy", "volatile-lru"])).await;
    let refused = RedisConfig::single(server.url()).connect().await;
    assert!(
        matches!(refused, Err(RedisBackendError::EvictionPolicy { ref policy, .. }) if policy == "volatile-lru"),
        "{refused:?}"
    );
    let config = parse(&format!(
        r#"{{ "url": "{}", "allow_eviction_policy": true }}"#,
        server.url()
    ));
    config.connect().await.expect("accepted with the opt-out");
}

#[tokio::test]
async fn bad_values_give_the_builders_typed_errors() {
    // Out of range: the builder's own check, the same error as a builder made in code.
    for (json, option) in [
        (
            r#"{ "url": "redis://127.0.0.1:1", "connect_timeout": "0s" }"#,
            "connect_timeout",
        ),
        (
            r#"{ "url": "redis://127.0.0.1:1", "response_timeout": "500us" }"#,
            "response_timeout",
        ),
        (
            r#"{ "url": "redis://127.0.0.1:1", "fence_counter_ttl": { "multiplier": 0 } }"#,
            "fence_counter_ttl",
        ),
        (
            r#"{ "url": "redis://127.0.0.1:1", "fence_counter_ttl": { "floor": "400days" } }"#,
            "fence_counter_ttl",
        ),
        (
            r#"{ "url": "redis://127.0.0.1:1", "replica_ack": { "min_replicas": 0, "timeout": "100ms" } }"#,
            "replica_ack",
        ),
    ] {
        assert_eq!(
            invalid_option(parse(json).connect().await),
            option,
            "{json}"
        );
    }
    let from_config = parse(r#"{ "url": "redis://127.0.0.1:1", "connect_timeout": "0s" }"#)
        .connect()
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    let from_builder = RedisBackend::builder("redis://127.0.0.1:1")
        .connect_timeout(Duration::ZERO)
        .connect()
        .await
        .map(drop)
        .map_err(|e| e.to_string());
    assert_eq!(from_config, from_builder);

    // A malformed URL.
    let bad_url = RedisConfig::single("http://127.0.0.1:6379").connect().await;
    assert!(
        matches!(bad_url, Err(RedisBackendError::InvalidUrl { .. })),
        "{bad_url:?}"
    );

    // Fields that do not fit the topology.
    for (json, option) in [
        (r#"{}"#, "url"),
        (r#"{ "urls": ["redis://a:1"] }"#, "urls"),
        (
            r#"{ "url": "redis://a:1", "master_name": "m" }"#,
            "master_name",
        ),
        (r#"{ "topology": "cluster" }"#, "urls"),
        (r#"{ "topology": "cluster", "url": "redis://a:1" }"#, "url"),
        (
            r#"{ "topology": "sentinel", "urls": ["redis://s:26379"] }"#,
            "master_name",
        ),
        (r#"{ "topology": "sentinel", "master_name": "m" }"#, "urls"),
    ] {
        assert_eq!(invalid_option(parse(json).into_builder()), option, "{json}");
    }
}

#[test]
fn topologies_parse_into_their_kind() {
    let cluster =
        parse(r#"{ "topology": "cluster", "urls": ["redis://a:7000", "redis://b:7001"] }"#);
    assert_eq!(
        cluster.topology().expect("cluster"),
        RedisTopology::Cluster {
            urls: vec!["redis://a:7000".into(), "redis://b:7001".into()]
        }
    );
    let sentinel = parse(
        r#"{ "topology": "sentinel", "master_name": "locks", "urls": ["redis://s1:26379"] }"#,
    );
    assert_eq!(
        sentinel.topology().expect("sentinel"),
        RedisTopology::Sentinel {
            master_name: "locks".into(),
            sentinels: vec!["redis://s1:26379".into()]
        }
    );
}

#[test]
fn malformed_data_is_a_deserialization_error() {
    for json in [
        r#"{ "url": "redis://a:1", "connect_timeout": "soon" }"#,
        r#"{ "url": "redis://a:1", "conect_timeout": "1s" }"#,
        r#"{ "topology": "ring" }"#,
        r#"{ "url": "redis://a:1", "fence_counter_ttl": { "multiplier": -1 } }"#,
    ] {
        assert!(
            serde_json::from_str::<RedisConfig>(json).is_err(),
            "accepted {json}"
        );
    }
}

#[test]
fn debug_hides_passwords() {
    let config = parse(r#"{ "url": "redis://app:hunter2@db:6379/0" }"#);
    let shown = format!("{config:?} {:?}", config.topology().expect("single"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("db:6379/0"), "{shown}");
}

/// `cluster` and `sentinel` go to their builders when the crate feature is on, and are refused
/// with a typed error naming the feature when it is off.
#[test]
fn cluster_and_sentinel_topologies_reach_their_builders() {
    let cluster =
        parse(r#"{ "topology": "cluster", "urls": ["redis://a:7000", "redis://b:7001"] }"#);
    #[cfg(feature = "cluster")]
    {
        let shown = format!("{:?}", cluster.into_builder().expect("cluster builder"));
        assert!(shown.contains("cluster of 2 seed url(s)"), "{shown}");
    }
    #[cfg(not(feature = "cluster"))]
    assert_eq!(invalid_option(cluster.into_builder()), "topology");

    let sentinel = parse(
        r#"{ "topology": "sentinel", "master_name": "locks", "urls": ["redis://s1:26379"] }"#,
    );
    #[cfg(feature = "sentinel")]
    {
        let shown = format!("{:?}", sentinel.into_builder().expect("sentinel builder"));
        assert!(
            shown.contains("sentinel master")
                && shown.contains("locks")
                && shown.contains("via 1 url(s)"),
            "{shown}"
        );
    }
    #[cfg(not(feature = "sentinel"))]
    assert_eq!(invalid_option(sentinel.into_builder()), "topology");
}

#[test]
fn replica_ack_and_function_library_are_applied() {
    let config = parse(
        r#"{ "url": "redis://a:1", "replica_ack": { "min_replicas": 1, "timeout": "100ms" },
             "function_library": true }"#,
    );
    let shown = format!("{:?}", config.into_builder().expect("builder"));
    assert!(shown.contains("min_replicas: 1"), "{shown}");
    assert!(shown.contains("timeout: 100ms"), "{shown}");
    assert!(shown.contains("function_library: true"), "{shown}");
    assert!(
        serde_json::from_str::<RedisConfig>(r#"{ "replica_ack": { "min_replicas": 1 } }"#).is_err(),
        "a replica_ack without its timeout was accepted"
    );
}
