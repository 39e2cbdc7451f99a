//! # locks-core
//!
//! Distributed locks with pluggable backends. This crate holds the [`LockBackend`] trait (the
//! atomic lease primitives a store offers) and the [`LockService`] (what applications call),
//! which owns everything a backend should not have to write again: key prefixing and
//! validation, retry with exponential backoff and jitter, notification-first waiting,
//! automatic renewal, lost-lock detection, fencing tokens, graceful shutdown and metrics.
//!
//! Backends: `locks-memory` (deterministic, for tests and single-process use) and
//! `locks-redis` (production). `locks-testkit` proves that a backend behaves.
//!
//! ```
//! use locks_core::LockService;
//! use locks_memory::MemoryBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! let locks = LockService::new(MemoryBackend::new())?;
//! let guard = locks.acquire("job:nightly-report").await?;
//! tokio::select! {
//!     _ = async { /* the work, passing guard.fence() to the store it writes */ } => {}
//!     reason = guard.lost() => eprintln!("lock lost: {reason}; stop writing"),
//! }
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! ## The lease model
//!
//! - A lease has a key, an owner token (random UUID v4, never reused), a ttl and a fencing
//!   token (strictly increasing per key). Renewal and release are compare-and-act on the token.
//! - The holder's own deadline is *time the acquire was sent + ttl − drift margin*
//!   ([`drift_margin`]). When it passes without a confirmed renewal the guard is
//!   [`LeaseState::Lost`], even if the store cannot be reached, so a partitioned holder gives up
//!   before the store lets a second holder in.
//! - A renewal that fails for a transient reason makes the state [`LeaseState::Unknown`] and is
//!   retried until the deadline; only `Lost` fires [`LeaseHandle::lost`].
//! - Leases are not reentrant, and ownership belongs to the guard, not to a task.
//!
//! ## Metrics, tracing and health
//!
//! Through the `metrics` facade: `locks_acquire_total{backend,result}`,
//! `locks_acquire_wait_seconds`, `locks_handoff_seconds`, `locks_waiters` (gauge),
//! `locks_hold_seconds`, `locks_held` (gauge), `locks_renew_total{backend,result}`,
//! `locks_lost_total{backend,reason}`, `locks_release_failed_total{backend,result}`; no lock
//! names in labels unless a bounded key classifier is opted into (see [`metrics_labels`]).
//! Tracing spans `lock.acquire`, `lock.hold` (with `lock.renew` children) and the events
//! `lock.lost` and `lock.release_failed`. [`LockService::health`] gives a readiness probe the
//! store's facts (see [`health`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// Vocabulary → contract → engine → service → primitives: each module imports only from
// the ones before it.
#[cfg(feature = "serde")]
pub mod config;
pub mod error;
pub mod health;
pub mod key;
pub mod kind;
pub mod options;
pub mod state;
pub mod token;

pub mod backend;

pub mod lease;

pub mod metrics_labels;

pub mod service;

pub mod primitives;

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

pub use backend::{
    AcquireResult, Holders, Lease, LeaseInfo, LockBackend, ReleaseListener, SleepingListener, Wake,
};
#[cfg(feature = "serde")]
pub use config::{LockConfig, RetryConfig};
pub use error::{BackendError, BackendErrorKind, LockError};
pub use health::{BackendHealth, ClockOffset, HealthCheck, HealthProblem, Replication};
pub use key::{LockKey, MAX_KEY_LEN, MAX_PREFIX_LEN};
pub use kind::{FAIR_WAITER_TTL, LeaseKind};
pub use lease::{LeaseHandle, LockGuard, drift_margin};
pub use options::{AcquireOptions, RetryPolicy, TTL_LIMIT};
pub use primitives::{Election, Leadership, MultiGuard, Pool, Pooled, RwInfo, RwLock, Semaphore};
#[cfg(feature = "signal")]
pub use service::terminate;
pub use service::{LockService, LockServiceBuilder, RENEW_FRACTION_RANGE, ShutdownReport};
pub use state::{LeaseState, LostReason};
pub use token::OwnerToken;
