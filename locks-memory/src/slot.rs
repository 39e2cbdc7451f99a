//! Everything the store keeps under one key.

use std::collections::HashMap;
use std::time::Duration;

use locks_core::{LeaseInfo, LeaseKind, OwnerToken};
use tokio::sync::watch;

/// One lease in the store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) owner: OwnerToken,
    pub(crate) expires_at: Duration,
    pub(crate) fence: u64,
}

/// Everything stored under one key: the mutex lease, semaphore permits, read-write leases,
/// one fence counter for all of them, and the release notifications.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) lease: Option<Held>,
    pub(crate) permits: HashMap<OwnerToken, Held>,
    pub(crate) readers: HashMap<OwnerToken, Held>,
    pub(crate) writer: Option<Held>,
    pub(crate) writer_waiting: Option<(OwnerToken, Duration)>,
    pub(crate) last_fence: u64,
    pub(crate) releases: watch::Sender<u64>,
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
    pub(crate) fn new() -> Self {
        Slot {
            lease: None,
            permits: HashMap::new(),
            readers: HashMap::new(),
            writer: None,
            writer_waiting: None,
            last_fence: 0,
            releases: watch::Sender::new(0),
        }
    }

    pub(crate) fn next_fence(&mut self) -> u64 {
        self.last_fence += 1;
        self.last_fence
    }

    /// Drop expired permits, readers, writer and waiting-writer marks.
    pub(crate) fn purge(&mut self, now: Duration) {
        self.permits.retain(|_, h| h.expires_at > now);
        self.readers.retain(|_, h| h.expires_at > now);
        if self.writer.is_some_and(|h| h.expires_at <= now) {
            self.writer = None;
        }
        if self.writer_waiting.is_some_and(|(_, until)| until <= now) {
            self.writer_waiting = None;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.lease = None;
        self.permits.clear();
        self.readers.clear();
        self.writer = None;
        self.writer_waiting = None;
    }

    /// The lease if it has not expired by `now`; drops an expired one.
    pub(crate) fn live(&mut self, now: Duration) -> Option<Held> {
        if self.lease.is_some_and(|h| h.expires_at <= now) {
            self.lease = None;
        }
        self.lease
    }

    pub(crate) fn wake(&self) {
        self.releases.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether anything is held under this key.
    pub(crate) fn is_held(&self) -> bool {
        self.lease.is_some()
            || !self.permits.is_empty()
            || !self.readers.is_empty()
            || self.writer.is_some()
    }
}
