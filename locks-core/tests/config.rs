//! `LockConfig`: settings from data, checked like the builder's.

use std::time::Duration;

use locks_core::{LockConfig, LockError, LockService};
use locks_memory::MemoryBackend;

fn parse(json: &str) -> Result<LockConfig, serde_json::Error> {
    serde_json::from_str(json)
}

#[tokio::test(start_paused = true)]
async fn a_config_sets_what_it_names_and_keeps_the_rest() {
    let config = parse(
        r#"{
            "key_prefix": "orders:",
            "default_ttl": "10s",
            "max_ttl": "1m",
            "wait_timeout": "2s",
            "retry": { "initial_delay": "5ms", "max_delay": "100ms", "max_attempts": 3 },
            "auto_renew": false,
            "renew_fraction": 0.25,
            "max_hold": "30s"
        }"#,
    )
    .expect("valid config");
    assert_eq!(config.default_ttl, Some(Duration::from_secs(10)));
    let locks = built(&config, "orders:k", Duration::from_secs(2));
    let guard = locks.acquire("k").await.expect("acquire");
    assert_eq!(guard.ttl(), Duration::from_secs(10));
    assert!(!guard.is_auto_renewing());
    guard.release().await.expect("release");

    let defaults = parse("{}").expect("empty config");
    built(&defaults, "_lock:k", Duration::from_secs(30));
}

/// A service from `config`, checked to name key `k` as `full_key` and to wait `wait`.
fn built(config: &LockConfig, full_key: &str, wait: Duration) -> LockService {
    let locks = config
        .builder(MemoryBackend::new())
        .build()
        .expect("builds");
    assert_eq!(locks.key("k").expect("key").full(), full_key);
    assert_eq!(locks.default_wait_timeout(), wait);
    locks
}

#[test]
fn invalid_values_get_the_builders_typed_errors() {
    let out_of_range = parse(r#"{ "renew_fraction": 0.99 }"#).expect("parses");
    assert!(matches!(
        out_of_range.builder(MemoryBackend::new()).build(),
        Err(LockError::InvalidOptions {
            option: "renew_fraction",
            ..
        })
    ));
    let ttl_over_max = parse(r#"{ "default_ttl": "10m", "max_ttl": "1m" }"#).expect("parses");
    assert!(matches!(
        ttl_over_max.builder(MemoryBackend::new()).build(),
        Err(LockError::InvalidTtl { .. })
    ));
    let bad_prefix = parse(r#"{ "key_prefix": "a{b" }"#).expect("parses");
    assert!(bad_prefix.builder(MemoryBackend::new()).build().is_err());
}

#[test]
fn malformed_configs_are_refused_when_read() {
    for bad in [
        r#"{ "default_ttl": "ten seconds" }"#,
        r#"{ "default_ttl": 10 }"#,
        r#"{ "defualt_ttl": "10s" }"#,
        r#"{ "retry": { "multiplyer": 2.0 } }"#,
    ] {
        assert!(parse(bad).is_err(), "{bad} was accepted");
    }
}

#[tokio::test(start_paused = true)]
async fn self_wait_detection_can_be_turned_off() {
    let wait = r#"{ "wait_timeout": "1s" }"#;
    let on = parse(wait).expect("parses");
    let off = parse(r#"{ "wait_timeout": "1s", "detect_self_wait": false }"#).expect("parses");
    assert_eq!(off.detect_self_wait, Some(false));
    for (config, detected) in [(on, true), (off, false)] {
        let locks = config
            .builder(MemoryBackend::new())
            .build()
            .expect("builds");
        // Detection follows tokio tasks: the test body itself is not one.
        let second = tokio::spawn(async move {
            let held = locks.acquire("k").await.expect("acquire");
            let second = locks.acquire("k").await.map(drop);
            held.release().await.expect("release");
            second
        })
        .await
        .expect("task");
        match second {
            Err(LockError::SelfWait { .. }) => assert!(detected, "detected although off"),
            Err(LockError::AcquireTimeout { .. }) => assert!(!detected, "waited although on"),
            other => panic!("{other:?}"),
        }
    }
}
