//! The store: a `DashMap` of slots, the clock it expires leases by, and test hooks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::one::RefMut;
use locks_core::{BackendError, LockKey, OwnerToken, ReleaseListener, Wake};
use tokio::sync::watch;

use crate::clock::{Clock, TokioClock};
use crate::slot::Slot;

/// One acquire attempt: who asks, the store's time, and when the lease would expire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask {
    pub(crate) token: OwnerToken,
    pub(crate) now: Duration,
    pub(crate) expires_at: Duration,
}

pub(crate) struct Inner {
    pub(crate) slots: DashMap<String, Slot>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The in-memory backend. `Default + Clone`; clones share the same store.
#[derive(Clone)]
pub struct MemoryBackend {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("keys", &self.inner.slots.len())
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend on tokio's clock (paused time in tests, the monotonic clock otherwise).
    pub fn new() -> Self {
        Self::with_clock(TokioClock::new())
    }

    /// A backend that expires leases by `clock`, e.g. a [`ManualClock`](crate::ManualClock).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                slots: DashMap::new(),
                clock: Arc::new(clock),
            }),
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// Expire every lease under `key` now (mutex lease, permits, read and write leases), as
    /// if their ttls had run out: nobody is told (holders find out at their next renewal,
    /// waiters at their next poll). `true` if there was anything to expire.
    pub fn expire_now(&self, key: &LockKey) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        let had = slot.is_held();
        slot.clear();
        had
    }

    /// Expire one holder's permit, read or write lease under `key` now, without telling it
    /// (a crashed holder whose ttl ran out). `true` if it held something.
    pub fn expire_holder(&self, key: &LockKey, token: OwnerToken) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        let mut had = slot.permits.remove(&token).is_some();
        had |= slot.readers.remove(&token).is_some();
        if slot.writer.is_some_and(|h| h.owner == token) {
            slot.writer = None;
            had = true;
        }
        if slot.lease.is_some_and(|h| h.owner == token) {
            slot.lease = None;
            had = true;
        }
        had
    }

    /// Number of live (unexpired) leases.
    pub fn live_leases(&self) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .slots
            .iter()
            .filter(|s| s.lease.is_some_and(|h| h.expires_at > now))
            .count()
    }

    /// The slot of `key` (created if missing) with expired permits, readers, writer and
    /// waiting marks purged, and the store's time.
    pub(crate) fn slot(&self, key: &LockKey) -> (RefMut<'_, String, Slot>, Duration) {
        let now = self.inner.clock.now();
        let mut slot = self.inner.slots.entry(key.full()).or_insert_with(Slot::new);
        slot.purge(now);
        (slot, now)
    }

    /// Like [`slot`](Self::slot), but `None` when the key was never used.
    pub(crate) fn existing_slot(
        &self,
        key: &LockKey,
    ) -> Option<(RefMut<'_, String, Slot>, Duration)> {
        let now = self.inner.clock.now();
        let mut slot = self.inner.slots.get_mut(&key.full())?;
        slot.purge(now);
        Some((slot, now))
    }

    pub(crate) fn expiry(&self, ttl: Duration) -> Duration {
        self.inner.clock.now().saturating_add(ttl)
    }

    /// An acquire by `token` for `ttl`, at the store's time now.
    pub(crate) fn ask(&self, token: OwnerToken, ttl: Duration) -> Ask {
        let now = self.now();
        Ask {
            token,
            now,
            expires_at: now.saturating_add(ttl),
        }
    }

    /// The store's time now.
    pub(crate) fn now(&self) -> Duration {
        self.inner.clock.now()
    }
}

pub(crate) struct MemoryListener {
    pub(crate) rx: watch::Receiver<u64>,
}

#[async_trait]
impl ReleaseListener for MemoryListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        match tokio::time::timeout(max, self.rx.changed()).await {
            Ok(Ok(())) => Ok(Wake::Notified),
            // Slots are never removed, so this cannot happen; if it did, the service would
            // listen again rather than spin on a closed channel.
            Ok(Err(_)) => Err(BackendError::transient("release channel closed")),
            Err(_) => Ok(Wake::TimedOut),
        }
    }
}
