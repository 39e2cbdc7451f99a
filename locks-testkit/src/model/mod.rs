//! Property tests against a reference model: random operation sequences run on a real
//! backend and checked, step by step, against [`Model`], a few lines of obviously correct code
//! that states the [`LockBackend`](locks_core::LockBackend) contract for the mutex and the
//! semaphore permit ([`Kind`]).
//!
//! - [`Op`] is one step of a script (acquire, release, extend, force-release, list the
//!   holders, advance the store's clock, make the next calls fail) on one key and [`Kind`];
//!   its `Debug` output reads as a script, so a shrunk failure is readable:
//!   `[try_acquire(o0, k0, ttl=50ms), release(o1, k0)]` (a permit reads `k0 permit/2`).
//! - [`ops`] and [`real_time_ops`] are the [`proptest`](mod@proptest) strategies that generate
//!   scripts over a small domain ([`OWNERS`] owners, [`KEYS`] keys, semaphores of at most
//!   [`MAX_PERMITS`]), so that owners collide on keys often.
//! - [`check`] runs a script on a backend and compares every answer with the model;
//!   [`check_real_time`] runs many on a store with its own clock.
//! - [`ForgetfulBackend`] breaks the contract on purpose, to prove that [`check`] can fail.
//!
//! Reader and writer leases are not modelled; the conformance suite covers them.
//!
//! # Time
//!
//! The model needs to know the store's time. [`ModelClock`] is how a script's
//! [`Op::Advance`] moves it:
//!
//! - The memory backend built with [`MemoryBackend::with_clock`](locks_memory::MemoryBackend::with_clock)
//!   on a [`ManualClock`](locks_memory::ManualClock) (which implements [`ModelClock`]):
//!   advancing is exact and the whole check is deterministic, expiry included (a lease is gone
//!   when its ttl has fully passed).
//! - A store with its own clock (Redis): real time must pass, and sleeping makes tests slow and
//!   flaky. So such stores run [`real_time_ops`] with the [`RealTime`] clock: the scripts have no
//!   `Advance`, and their ttls (at least 10 s) outlast any case, so nothing expires during a
//!   case; remaining times are compared within a tolerance window
//!   (`expected - tolerance ..= expected`). Expiry itself is covered by the memory backend's
//!   property and by the conformance suite.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use locks_memory::{ManualClock, MemoryBackend};
//! use locks_testkit::model::{self, Kind, Op};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = ManualClock::new();
//! let backend = Arc::new(MemoryBackend::with_clock(clock.clone()));
//! let (mutex, permit) = (Kind::Mutex, Kind::Permit { limit: 2 });
//! let script = [
//!     Op::TryAcquire { owner: 0, key: 0, kind: mutex, ttl_ms: 100 },
//!     Op::TryAcquire { owner: 1, key: 0, kind: mutex, ttl_ms: 100 }, // held by o0
//!     Op::TryAcquire { owner: 1, key: 0, kind: permit, ttl_ms: 100 }, // another lock
//!     Op::Advance { ms: 100 },                                        // both expire
//!     Op::TryAcquire { owner: 1, key: 0, kind: mutex, ttl_ms: 100 }, // a larger fence
//!     Op::Fault { ops: 1 },
//!     Op::Holders { key: 0, kind: mutex },                            // fails, transiently
//!     Op::Release { owner: 1, key: 0, kind: mutex },
//! ];
//! model::check(backend, &clock, &script).await.unwrap();
//! # }
//! ```

mod check;
mod clock;
mod forgetful;
mod ops;
mod real_time;
mod reference;
mod strategy;

pub use check::{KEY_PREFIX, check};
pub use clock::{ModelClock, RealTime};
pub use forgetful::ForgetfulBackend;
pub use ops::{KEYS, Kind, MAX_FAULTS, MAX_PERMITS, OWNERS, Op, REAL_TIME_TTL_MS, TTL_MS, script};
pub use real_time::{check_real_time, real_time_runtime};
pub use reference::{Expected, ExpectedLease, FenceRule, Model, ModelLease};
pub use strategy::{ops, real_time_ops};
