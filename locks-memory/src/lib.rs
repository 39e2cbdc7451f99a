//! # locks-memory
//!
//! An in-memory [`LockBackend`](locks_core::LockBackend) on a `DashMap`: the double for fast,
//! deterministic unit tests, and a real lock for tasks inside one process. It stores every
//! [`LeaseKind`](locks_core::LeaseKind): mutex, semaphore permits, readers and writers, and
//! the fair mutex (a FIFO queue of waiters with direct hand-off).
//!
//! - Expiry follows a [`Clock`]: by default [`TokioClock`], so under
//!   `#[tokio::test(start_paused = true)]` the store and the service share tokio's paused time;
//!   with a [`ManualClock`] leases expire only when the test advances it (a "GC pause": the
//!   store expires a lease under a holder that does not know it).
//! - Keys are kept apart by prefix and name (two services whose `prefix + name` strings are
//!   equal never share a lock).
//! - Fencing tokens increase strictly per key for the life of the backend (every clone shares
//!   the state). They come from one counter for the whole store, so no per-key state has to
//!   outlive the key's leases: a key that nothing holds, waits for or listens to is freed, and
//!   memory stays flat however many distinct names are locked over time
//!   ([`MemoryBackend::slot_count`]).
//! - Releases wake waiters at once; expiry is lazy and wakes nobody (like Redis), so waiters
//!   fall back to polling at the holder's remaining ttl.
//! - Failures and latency come from the generic fault decorator
//!   (`locks_testkit::faulty::FaultyBackend`), which wraps this backend like any other.
//!
//! ```
//! use locks_core::LockService;
//! use locks_memory::{ManualClock, MemoryBackend};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! let clock = ManualClock::new();
//! let backend = MemoryBackend::with_clock(clock.clone());
//! let locks = LockService::builder(backend.clone()).auto_renew(false).build()?;
//!
//! let guard = locks.acquire("job:7").await?;
//! clock.advance(Duration::from_secs(31)); // the store's ttl (30 s) runs out under the holder
//! assert!(!locks.is_locked("job:7").await?);
//! assert!(guard.release().await.is_err()); // not the owner any more
//! # Ok(()) }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod clock;
mod contract;
mod fair;
mod health;
mod list;
mod members;
mod mutex;
mod permit;
mod rw;
mod slot;
mod store;

pub use clock::{Clock, ManualClock, TokioClock};
pub use store::MemoryBackend;
