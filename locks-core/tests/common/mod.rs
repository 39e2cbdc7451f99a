//! Shared by the integration tests of locks-core (each test crate uses some of it).
#![allow(dead_code)]

use std::time::Duration;

use locks_core::{LockBackend, LockService};
use locks_memory::MemoryBackend;

/// A service on a fresh memory backend (tokio's clock) with this default ttl.
pub fn memory_service(ttl: Duration) -> LockService {
    service_on(MemoryBackend::new(), ttl)
}

/// A service on `backend` with this default ttl.
pub fn service_on(backend: impl LockBackend, ttl: Duration) -> LockService {
    LockService::builder(backend)
        .default_ttl(ttl)
        .build()
        .expect("valid service")
}
