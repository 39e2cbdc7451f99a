//! # locks-testkit
//!
//! Tools that prove a lock backend behaves, and that help downstream crates test their own
//! locking:
//!
//! - [`conformance`]: the suite every backend must pass, instantiated with
//!   [`conformance_tests!`](crate::conformance_tests).
//! - [`primitives_suite`]: the semaphore / read-write / election / multi-lock suite,
//!   [`primitives_tests!`](crate::primitives_tests), and the mutex suite through
//!   [`adapters`] ([`adapter_conformance_tests!`](crate::adapter_conformance_tests)).
//! - [`faulty`]: a wrapper that injects transient failures and latency into any backend.
//! - [`recording`]: [`RecordingBackend`](recording::RecordingBackend), which records every lock
//!   event for assertions in downstream test suites ("ran under lock X", "every lock was
//!   released", "never held these two at once") and stages contention and revoked leases.
//! - [`model`]: property tests (proptest) of random operation sequences checked step by step
//!   against a reference model, with [`check`](model::check) and the [`ops`](model::ops)
//!   strategies.
//! - [`sim`]: the contention simulator behind the `locks-sim` binary.
//! - [`redis_server`]: a private real `redis-server` for tests (or an external/Docker one).
//! - [`proxy`]: a loopback TCP proxy between a client and a test server that injects network
//!   faults on command (latency, stalls, blackholes, dropped and refused connections).
//! - [`broken`]: deliberately broken backends (such as
//!   [`GrantAllBackend`](broken::GrantAllBackend)) that prove a checker can fail.

#![warn(missing_docs)]

pub mod adapters;
pub mod broken;
pub mod conformance;
pub mod faulty;
pub mod model;
pub mod primitives_suite;
pub mod proxy;
pub mod recording;
pub mod redis_server;
pub mod sim;

use std::sync::Arc;

use async_trait::async_trait;
use locks_core::{LockBackend, LockKey};

/// What the conformance suite needs from a backend under test, beyond [`LockBackend`].
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The backend under test. Every call returns a handle to the *same* store.
    fn backend(&self) -> Arc<dyn LockBackend>;

    /// Make every lease under `key` (mutex lease, semaphore permits, read and write leases)
    /// expire now in the store, without telling the holders (as if their ttls had run out
    /// while they were paused).
    async fn expire(&self, key: &LockKey);
}
