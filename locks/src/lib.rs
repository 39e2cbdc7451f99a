//! # locks
//!
//! Distributed locks for Rust services, as one dependency. This crate re-exports
//! [`locks-core`](locks_core) at its root — [`LockService`], [`AcquireOptions`],
//! [`LockError`], the guards and the primitives ([`Semaphore`], [`RwLock`], [`Election`],
//! [`Pool`], [`MultiGuard`]) — and the other crates behind features:
//!
//! | feature | what you get |
//! |---|---|
//! | `memory` (default) | `memory` (`locks-memory`): `MemoryBackend`, `ManualClock`: tests and single-process locks |
//! | `redis` | `redis` (`locks-redis`): `RedisBackend`, its builder and errors |
//! | `tls` | `rediss://` URLs for the Redis backend (implies `redis`) |
//! | `cluster`, `sentinel` | Redis Cluster, Redis Sentinel for the Redis backend (imply `redis`) |
//! | `macros` | `#[locks::with_lock(locks = self.locks, key = "payment:{order_id}")]` |
//! | `serde` | `LockConfig` (and `locks::redis::RedisConfig` with `redis`): settings from a file or the environment |
//! | `signal` | `terminate()`: a future for [`LockService::shutdown_on`] (SIGTERM or Ctrl-C) |
//! | `testkit` | `testkit` (`locks-testkit`): recording assertions and the fault decorator for your tests |
//!
//! ```toml
//! [dependencies]
//! locks = { version = "0.1", features = ["redis", "macros"] }
//! tokio = { version = "1", features = ["rt-multi-thread", "macros", "time", "sync", "net"] }
//! ```
//!
//! ```
//! use std::time::Duration;
//! use locks::{AcquireOptions, LockService, MemoryBackend};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks::LockError> {
//! // In production: locks::RedisBackend::connect("redis://127.0.0.1:6379").await?
//! let locks = LockService::new(MemoryBackend::new())?;
//! let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(5));
//! let guard = locks.acquire_opts("payment:42", opts).await?;
//! assert!(locks.is_locked("payment:42").await?);
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! The crates behind it (`locks-core`, `locks-memory`, `locks-redis`, `locks-macros`,
//! `locks-testkit`) can also be used directly; the types are the same.
#![cfg_attr(
    all(feature = "macros", feature = "memory"),
    doc = include_str!("with_lock.md")
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[doc(inline)]
pub use locks_core::*;

/// The in-memory backend (`locks-memory`): deterministic, with a clock the test controls.
#[cfg(feature = "memory")]
pub use locks_memory as memory;
#[cfg(feature = "memory")]
#[doc(no_inline)]
pub use locks_memory::{ManualClock, MemoryBackend};

/// The Redis backend (`locks-redis`).
#[cfg(feature = "redis")]
pub use locks_redis as redis;
#[cfg(feature = "redis")]
#[doc(no_inline)]
pub use locks_redis::{RedisBackend, RedisBackendBuilder, RedisBackendError};

/// Test tools (`locks-testkit`): recording assertions and the fault decorator.
#[cfg(feature = "testkit")]
pub use locks_testkit as testkit;

/// Run an `async fn` or method while holding a distributed lock:
/// `#[locks::with_lock(locks = <service>, key = "<template>", ttl = "10s", wait = "5s")]`.
///
/// The generated code names this crate (`::locks`), so a crate that depends on `locks` alone
/// needs no `crate = ...` argument. The arguments, the function's shape, skip mode and the
/// lease parameter are documented on [`locks_macros::with_lock`].
#[cfg(feature = "macros")]
pub use locks_macros::with_lock_via_facade as with_lock;
