//! Workspace integration tests (in `tests/`) and the pattern examples (in `examples/`).
//!
//! Each example (`examples/*.rs`) holds its pattern's locking code as a `run` function and
//! runs it on the memory backend, or on Redis when `REDIS_URL` is set; the integration tests
//! (`tests/patterns.rs`) include the example files as modules and run every one on both
//! backends. The README's Rust examples are compiled and run as this crate's doctests, so the
//! README cannot drift from the API.
#![doc = include_str!("../../README.md")]

use std::sync::Arc;

use locks_core::LockBackend;

/// The backend the examples run on: Redis at `REDIS_URL` when it is set, else in memory.
pub async fn backend_from_env()
-> Result<Arc<dyn LockBackend>, Box<dyn std::error::Error + Send + Sync>> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let backend = locks_redis::RedisBackend::connect(&url).await?;
            println!("backend: redis at {url}");
            Ok(Arc::new(backend))
        }
        _ => {
            println!("backend: memory (set REDIS_URL=redis://host:port to use Redis)");
            Ok(Arc::new(locks_memory::MemoryBackend::new()))
        }
    }
}
