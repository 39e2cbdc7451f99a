//! Release notifications: how a waiter hears that a key may be free.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;

/// Why a [`ReleaseListener`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A release (or something that may have been one, such as a lost subscription) was seen.
    Notified,
    /// The time limit passed without a notification.
    TimedOut,
}

/// Receives the release notifications of one key, from the moment it was created.
///
/// Created by [`LockBackend::listen`](crate::LockBackend::listen) *before* the acquire attempt
/// whose failure makes the caller wait, so a release that happens between the attempt and the
/// wait is not missed.
#[async_trait]
pub trait ReleaseListener: Send {
    /// Wait until the key may have been released since the listener was created (or since
    /// this method last returned), or until `max` passes. Spurious wake-ups are allowed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future loses nothing but the wait; a release seen meanwhile
    /// is reported by the next call.
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError>;
}

/// A listener that never hears anything and just sleeps: for stores without notifications.
/// Waiters then rely on polling at `min(backoff, holder's remaining ttl)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SleepingListener;

#[async_trait]
impl ReleaseListener for SleepingListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        tokio::time::sleep(max).await;
        Ok(Wake::TimedOut)
    }
}
