//! The shared conformance suites on 3-node and 5-node quorums of memory backends, in tokio's
//! paused time. Kinds the quorum does not support (semaphores, read-write locks) are checked to
//! be refused when the primitive is created.

use locks_memory::MemoryBackend;
use locks_quorum::QuorumBackend;
use locks_testkit::conformance::BackendHarness;

/// A quorum of `n` fresh stores; expiry expires the key on every node.
fn harness(n: usize) -> BackendHarness {
    let nodes: Vec<MemoryBackend> = (0..n).map(|_| MemoryBackend::new()).collect();
    let quorum = nodes
        .iter()
        .fold(QuorumBackend::builder(), |b, node| b.node(node.clone()))
        .build()
        .unwrap_or_else(|e| panic!("quorum: {e}"));
    BackendHarness::new(quorum, move |key| {
        for node in &nodes {
            node.expire_now(&key);
        }
        async {}
    })
}

/// Three nodes.
mod three {
    use super::*;

    async fn harness() -> BackendHarness {
        super::harness(3)
    }

    locks_testkit::conformance_tests!(harness);
    locks_testkit::primitives_tests!(harness);
    locks_testkit::adapter_conformance_tests!(harness);
}

/// Five nodes.
mod five {
    use super::*;

    async fn harness() -> BackendHarness {
        super::harness(5)
    }

    locks_testkit::conformance_tests!(harness);
    locks_testkit::primitives_tests!(harness);
    locks_testkit::adapter_conformance_tests!(harness);
}
