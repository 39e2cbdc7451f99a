//! Bad settings are typed errors, before any node is touched.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{LeaseKind, LockBackend, LockError, LockService};
use locks_memory::MemoryBackend;
use locks_quorum::{QuorumBackend, QuorumBuilder, QuorumError};
use locks_testkit::conformance::adapters::MutexVia;

fn memory_nodes(n: usize) -> QuorumBuilder {
    (0..n).fold(QuorumBackend::builder(), |b, _| {
        b.node(MemoryBackend::new())
    })
}

#[test]
fn fewer_than_three_nodes_is_refused() {
    for n in 0..3 {
        let err = memory_nodes(n).build().expect_err("too few");
        assert_eq!(err, QuorumError::TooFewNodes { got: n });
    }
    assert_eq!(memory_nodes(4).build().expect("4 nodes").majority(), 3);
}

#[test]
fn a_node_without_semaphores_is_refused() {
    let mutex_only: Arc<dyn LockBackend> =
        Arc::new(MutexVia::write_lock(Arc::new(MemoryBackend::new())));
    let err = memory_nodes(2)
        .node_arc(mutex_only)
        .build()
        .expect_err("needs permits for the fence records");
    assert!(
        matches!(
            err,
            QuorumError::NodeLacksKind {
                node: 2,
                kind: LeaseKind::Permit { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn settings_out_of_range_are_refused() {
    let err = memory_nodes(3)
        .drift_factor(0.7)
        .build()
        .expect_err("drift");
    assert!(matches!(err, QuorumError::DriftFactor(_)), "{err:?}");
    let err = memory_nodes(3)
        .node_timeout(Duration::ZERO)
        .build()
        .expect_err("timeout");
    assert!(
        matches!(
            err,
            QuorumError::Duration {
                option: "node_timeout",
                ..
            }
        ),
        "{err:?}"
    );
    let err = memory_nodes(3)
        .record_ttl(Duration::from_millis(10))
        .build()
        .expect_err("record ttl");
    assert!(
        matches!(
            err,
            QuorumError::Duration {
                option: "record_ttl",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_ttl_within_the_drift_is_a_permanent_error_and_kinds_are_refused() {
    let svc = LockService::new(memory_nodes(3).build().expect("quorum")).expect("service");
    let err = svc
        .acquire_opts(
            "short",
            locks_core::AcquireOptions::new().ttl(Duration::from_millis(2)),
        )
        .await
        .expect_err("no validity left");
    assert!(
        matches!(&err, LockError::Backend { source, .. } if !source.is_transient()),
        "{err:?}"
    );
    assert!(matches!(
        svc.semaphore("pool", 2),
        Err(LockError::Unsupported { .. })
    ));
    assert!(matches!(
        svc.rwlock("doc"),
        Err(LockError::Unsupported { .. })
    ));
}
