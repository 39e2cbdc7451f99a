//! # locks-testkit
//!
//! Tools that prove a lock backend behaves, and that help downstream crates test their own
//! locking:
//!
//! - [`conformance`]: the suite every backend must pass, instantiated with
//!   [`conformance_tests!`](crate::conformance_tests).
//! - [`faulty`]: a wrapper that injects transient failures and latency into any backend.
//! - [`sim`]: the contention simulator behind the `locks-sim` binary.

#![warn(missing_docs)]

pub mod conformance;
pub mod faulty;
pub mod sim;

use std::sync::Arc;

use async_trait::async_trait;
use locks_core::{LockBackend, LockKey};

/// What the conformance suite needs from a backend under test, beyond [`LockBackend`].
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The backend under test. Every call returns a handle to the *same* store.
    fn backend(&self) -> Arc<dyn LockBackend>;

    /// Make the lease of `key` expire now in the store, without telling its holder (as if its
    /// ttl had run out while the holder was paused).
    async fn expire(&self, key: &LockKey);
}
