//! Everything the store keeps under one key.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use locks_core::backend::Signal;
use locks_core::{LeaseInfo, LeaseKind, OwnerToken};
use tokio::sync::watch;

/// One lease in the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) owner: OwnerToken,
    pub(crate) expires_at: Duration,
    pub(crate) fence: u64,
}

/// A writer's "waiting" mark: while it stands, new readers (and other writers) are refused.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub(crate) owner: OwnerToken,
    pub(crate) until: Duration,
    /// Someone was refused because of this mark: clearing it must wake waiters. A mark that
    /// refused nobody (a writer that gave up, or a single attempt that raced with a reader)
    /// is cleared without a notification.
    pub(crate) refused: bool,
}

/// A waiter in a fair mutex's queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    pub(crate) token: OwnerToken,
    /// Dropped from the queue at this store time unless it asks again.
    pub(crate) until: Duration,
    /// The ttl of the lease it is granted on release: the one it asked for, at most
    /// [`FAIR_WAITER_TTL`](locks_core::FAIR_WAITER_TTL).
    pub(crate) ttl: Duration,
}

/// Everything stored under one key: the mutex lease, semaphore permits, read-write leases and
/// the release notifications (a channel created by the first listener). Fences come from the store's one counter (see
/// [`MemoryBackend`](crate::MemoryBackend)), so a slot holds no state that must outlive its
/// leases: an idle slot (see [`is_idle`](Slot::is_idle)) is removed.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) lease: Option<Held>,
    pub(crate) permits: HashMap<OwnerToken, Held>,
    pub(crate) readers: HashMap<OwnerToken, Held>,
    pub(crate) writer: Option<Held>,
    pub(crate) writer_waiting: Option<Waiting>,
    /// The fair mutex's lease.
    pub(crate) fair: Option<Held>,
    /// The fair mutex's waiters, head first.
    pub(crate) fair_queue: VecDeque<Queued>,
    /// Owner tokens released while they held nothing, and until when (store time) an acquire
    /// with them is refused (see [`RETIRED_FOR`](crate::store::RETIRED_FOR)).
    pub(crate) retired: HashMap<OwnerToken, Duration>,
    /// Release notifications; `None` until someone listens.
    releases: Option<watch::Sender<Signal>>,
}

pub(crate) fn info(kind: LeaseKind, h: &Held, now: Duration) -> LeaseInfo {
    LeaseInfo::new(kind, h.owner, h.expires_at.saturating_sub(now), h.fence)
}

pub(crate) fn soonest(holders: &HashMap<OwnerToken, Held>, now: Duration) -> Option<Duration> {
    holders
        .values()
        .map(|h| h.expires_at.saturating_sub(now))
        .min()
}

impl Slot {
    /// Drop the expired mutex lease, permits, readers, writer and waiting-writer mark. Expiry
    /// is lazy and wakes nobody (like Redis).
    pub(crate) fn purge(&mut self, now: Duration) {
        if self.lease.is_some_and(|h| h.expires_at <= now) {
            self.lease = None;
        }
        self.permits.retain(|_, h| h.expires_at > now);
        self.readers.retain(|_, h| h.expires_at > now);
        if self.writer.is_some_and(|h| h.expires_at <= now) {
            self.writer = None;
        }
        if self.writer_waiting.is_some_and(|w| w.until <= now) {
            self.writer_waiting = None;
        }
        if self.fair.is_some_and(|h| h.expires_at <= now) {
            self.fair = None;
        }
        self.fair_queue.retain(|q| q.until > now);
        self.retired.retain(|_, until| *until > now);
    }

    pub(crate) fn clear(&mut self) {
        self.lease = None;
        self.permits.clear();
        self.readers.clear();
        self.writer = None;
        self.writer_waiting = None;
        self.fair = None;
    }

    /// Notify the listeners of this key. Nobody listening: nothing to do (a listener created
    /// later starts from the current value, so it could not see this notification anyway).
    pub(crate) fn wake(&self) {
        if let Some(tx) = self.releases.as_ref().filter(|tx| tx.receiver_count() > 0) {
            tx.send_modify(Signal::released);
        }
    }

    /// Notify the listeners of this key that the fair lease was handed to `token`.
    pub(crate) fn grant(&self, token: OwnerToken, fence: u64) {
        if let Some(tx) = self.releases.as_ref().filter(|tx| tx.receiver_count() > 0) {
            tx.send_modify(|s| s.granted(token, fence));
        }
    }

    /// A receiver of this key's release notifications from now on.
    pub(crate) fn subscribe(&mut self) -> watch::Receiver<Signal> {
        self.releases
            .get_or_insert_with(|| watch::Sender::new(Signal::default()))
            .subscribe()
    }

    /// Whether anything is held under this key (as of the last [`purge`](Slot::purge)).
    pub(crate) fn is_held(&self) -> bool {
        self.lease.is_some()
            || !self.permits.is_empty()
            || !self.readers.is_empty()
            || self.writer.is_some()
            || self.fair.is_some()
    }

    /// Nothing held, no writer waiting, no retired token, and nobody listening: the slot can be
    /// removed without
    /// losing anything (fences live in the store's counter, and a listener keeps its slot).
    pub(crate) fn is_idle(&self) -> bool {
        !self.is_held()
            && self.writer_waiting.is_none()
            && self.fair_queue.is_empty()
            && self.retired.is_empty()
            && self
                .releases
                .as_ref()
                .is_none_or(|tx| tx.receiver_count() == 0)
    }
}
