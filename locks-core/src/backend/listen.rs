//! Release notifications: how a waiter hears that a key may be free.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::BackendError;
use crate::token::OwnerToken;

/// Why a [`ReleaseListener`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A release (or something that may have been one, such as a lost subscription) was seen.
    Notified,
    /// The time limit passed without a notification.
    TimedOut,
    /// A release of a [`FairMutex`](crate::LeaseKind::FairMutex) handed the lease directly to
    /// the head of its queue: `token` holds it now, with `fence`. The waiter named by `token`
    /// owns the lease without asking the store; every other waiter keeps its place and waits
    /// on. When several grants came since the listener last returned, the last one is
    /// reported; when a plain release came too, [`Notified`](Wake::Notified) is.
    Granted {
        /// The owner token the lease was granted to.
        token: OwnerToken,
        /// The fence of the granted lease.
        fence: u64,
    },
}

/// What a key's notification channel carried, for backends whose listeners read it from a
/// `tokio::sync::watch` (the memory and Redis backends): how many notifications there were,
/// the last grant, and when the last plain release came. A listener remembers the
/// [`generation`](Signal::generation) it has seen and asks [`wake_since`](Signal::wake_since)
/// what to report.
///
/// ```
/// use locks_core::backend::{Signal, Wake};
/// use locks_core::OwnerToken;
///
/// let mut signal = Signal::default();
/// let token = OwnerToken::new();
/// signal.granted(token, 7);
/// assert_eq!(signal.wake_since(0), Wake::Granted { token, fence: 7 });
/// let next = OwnerToken::new();
/// signal.granted(next, 8);
/// assert_eq!(signal.wake_since(0), Wake::Granted { token: next, fence: 8 }); // the last one
/// signal.released();
/// assert_eq!(signal.wake_since(0), Wake::Notified); // a release among them
/// assert_eq!(signal.wake_since(2), Wake::Notified);
/// assert_eq!(signal.wake_since(3), Wake::TimedOut); // nothing new
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signal {
    /// How many notifications there were (wrapping).
    pub generation: u64,
    /// The last grant: its token and fence.
    pub grant: Option<(OwnerToken, u64)>,
    /// The generation of the last plain release notification.
    pub released_at: u64,
}

impl Signal {
    /// A plain release notification (or a reconnection: something may have been missed).
    pub fn released(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.released_at = self.generation;
    }

    /// A grant of a fair mutex to `token` with `fence`.
    pub fn granted(&mut self, token: OwnerToken, fence: u64) {
        self.generation = self.generation.wrapping_add(1);
        self.grant = Some((token, fence));
    }

    /// What a listener that has seen generation `seen` reports: nothing new
    /// ([`Wake::TimedOut`]), only grants (the last one, [`Wake::Granted`]), or a plain
    /// release among them ([`Wake::Notified`]).
    pub fn wake_since(&self, seen: u64) -> Wake {
        if self.generation == seen {
            return Wake::TimedOut;
        }
        // Generations since `seen`, wrapping: a release came after `seen` if it is at most
        // that many back.
        let new = self.generation.wrapping_sub(seen);
        let release_age = self.generation.wrapping_sub(self.released_at);
        match self.grant {
            Some((token, fence)) if release_age >= new => Wake::Granted { token, fence },
            _ => Wake::Notified,
        }
    }
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
