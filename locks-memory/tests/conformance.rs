//! The shared conformance suite on the memory backend, in tokio's paused time.

use std::sync::Arc;

use async_trait::async_trait;
use locks_core::{LockBackend, LockKey};
use locks_memory::MemoryBackend;
use locks_testkit::Harness;

struct MemoryHarness {
    backend: MemoryBackend,
}

#[async_trait]
impl Harness for MemoryHarness {
    fn backend(&self) -> Arc<dyn LockBackend> {
        Arc::new(self.backend.clone())
    }

    async fn expire(&self, key: &LockKey) {
        self.backend.expire_now(key);
    }
}

async fn harness() -> MemoryHarness {
    MemoryHarness {
        backend: MemoryBackend::new(),
    }
}

locks_testkit::conformance_tests!(harness);
locks_testkit::primitives_tests!(harness);
locks_testkit::adapter_conformance_tests!(harness);
