//! The shared conformance suite on the memory backend, in tokio's paused time.

use locks_memory::MemoryBackend;
use locks_testkit::conformance::BackendHarness;

/// A fresh store; expiry is the store's own `expire_now`.
async fn harness() -> BackendHarness {
    let store = MemoryBackend::new();
    BackendHarness::new(store.clone(), move |key| {
        store.expire_now(&key);
        async {}
    })
}

locks_testkit::conformance_tests!(harness);
locks_testkit::primitives_tests!(harness);
locks_testkit::adapter_conformance_tests!(harness);
