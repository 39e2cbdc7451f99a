//! The read-write lock: many readers or one writer, writer-preferring.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::members::{grant, readers, renew, sorted_leases};
use crate::slot::{Held, info, soonest};
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    pub(crate) fn acquire_read(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let (mut slot, now) = self.slot(key);
        if let Some(fence) = renew(&mut slot.readers, ask.token, ask.expires_at) {
            return AcquireResult::Acquired(Lease::new(fence));
        }
        if let Some(w) = slot.writer {
            return AcquireResult::Held {
                remaining: Some(w.expires_at.saturating_sub(now)),
            };
        }
        if let Some((_, until)) = slot.writer_waiting {
            return AcquireResult::Held {
                remaining: Some(until.saturating_sub(now)),
            };
        }
        grant(&mut slot, readers, ask)
    }

    pub(crate) fn acquire_write(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let Ask {
            token, expires_at, ..
        } = ask;
        let (mut slot, now) = self.slot(key);
        if let Some(w) = slot.writer.as_mut() {
            if w.owner == token {
                w.expires_at = expires_at;
                return AcquireResult::Acquired(Lease::new(w.fence));
            }
            return AcquireResult::Held {
                remaining: Some(w.expires_at.saturating_sub(now)),
            };
        }
        let other_waiting = slot
            .writer_waiting
            .filter(|(t, _)| *t != token)
            .map(|(_, until)| until.saturating_sub(now));
        if !slot.readers.is_empty() || other_waiting.is_some() {
            if other_waiting.is_none() {
                slot.writer_waiting = Some((token, expires_at));
            }
            let readers = soonest(&slot.readers, now);
            return AcquireResult::Held {
                remaining: match (readers, other_waiting) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
            };
        }
        slot.writer_waiting = None;
        let fence = slot.next_fence();
        slot.writer = Some(Held {
            owner: token,
            expires_at,
            fence,
        });
        AcquireResult::Acquired(Lease::new(fence))
    }

    /// Release `token`'s read lease.
    pub(crate) fn release_read(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.release_member(key, readers, token)
    }

    /// Release `token`'s write lease and its waiting mark.
    pub(crate) fn release_write(&self, key: &LockKey, token: OwnerToken) -> bool {
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        let had = slot.writer.is_some_and(|w| w.owner == token);
        if had {
            slot.writer = None;
        }
        let was_waiting = slot.writer_waiting.is_some_and(|(t, _)| t == token);
        if was_waiting {
            slot.writer_waiting = None;
        }
        if had || was_waiting {
            slot.wake();
        }
        had
    }

    /// Reset the ttl of `token`'s read lease.
    pub(crate) fn extend_read(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_member(key, readers, token, ttl)
    }

    /// Reset the ttl of `token`'s write lease.
    pub(crate) fn extend_write(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        let expires_at = self.expiry(ttl);
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        match slot.writer.as_mut() {
            Some(w) if w.owner == token => {
                w.expires_at = expires_at;
                true
            }
            _ => false,
        }
    }

    /// Readers (oldest first), then the writer, and the waiting mark.
    pub(crate) fn rw_holders(&self, key: &LockKey) -> Holders {
        let Some((slot, now)) = self.existing_slot(key) else {
            return Holders::default();
        };
        let mut leases = sorted_leases(&slot.readers, LeaseKind::Read, now);
        leases.extend(slot.writer.as_ref().map(|h| info(LeaseKind::Write, h, now)));
        Holders::new(leases).with_writer_waiting(slot.writer_waiting.is_some())
    }

    /// Clear the whole read-write lock.
    pub(crate) fn force_release_rw(&self, key: &LockKey) -> bool {
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        let had = !slot.readers.is_empty() || slot.writer.is_some();
        slot.readers.clear();
        slot.writer = None;
        slot.writer_waiting = None;
        slot.wake();
        had
    }
}
