//! The lease accessors and stable error codes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use locks_core::{LockError, LostReason};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn stop_auto_renew_lets_the_lease_run_out_at_its_deadline() {
    let locks = common::memory_service(Duration::from_secs(2));
    let before = Instant::now();
    let renewed = locks.acquire("renewed").await.expect("acquire");
    let stopped = locks.acquire("stopped").await.expect("acquire");
    assert!(stopped.acquired_at() >= before && stopped.acquired_at() <= Instant::now());
    assert!(stopped.is_auto_renewing() && renewed.is_auto_renewing());

    stopped.stop_auto_renew();
    assert!(!stopped.is_auto_renewing());
    let deadline = stopped.deadline();
    assert_eq!(stopped.lost().await, LostReason::DeadlineExpired);
    assert!(Instant::now() >= deadline);
    // The other lease is still renewed, well past its first ttl.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(renewed.is_auto_renewing());
    assert!(renewed.is_held().await.expect("store"));
    renewed.release().await.expect("release");
    assert!(
        !locks.is_locked("stopped").await.expect("store"),
        "the store expired it too"
    );
}

#[test]
fn error_codes_are_distinct_and_stable() {
    let errors = [
        LockError::Contended {
            key: "k".into(),
            remaining: None,
        },
        LockError::NotOwner { key: "k".into() },
        LockError::Lost {
            key: "k".into(),
            reason: LostReason::NotOwner,
        },
        LockError::InvalidKey { reason: "r".into() },
        LockError::InvalidTtl {
            ttl: Duration::ZERO,
            reason: "r".into(),
        },
        LockError::ShuttingDown,
    ];
    let codes: Vec<_> = errors.iter().map(LockError::code).collect();
    assert_eq!(
        codes,
        [
            "contended",
            "not_owner",
            "lost",
            "invalid_key",
            "invalid_ttl",
            "shutting_down"
        ]
    );
    assert_eq!(codes.iter().collect::<HashSet<_>>().len(), codes.len());
}
