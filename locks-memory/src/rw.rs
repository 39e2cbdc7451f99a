//! The read-write lock: many readers or one writer, writer-preferring.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::members::{readers, renew, sorted_leases};
use crate::slot::{Waiting, info, soonest};
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    pub(crate) fn acquire_read(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        self.with_slot(key, ask.now, |slot, now| {
            if let Some(fence) = renew(&mut slot.readers, ask.token, ask.expires_at) {
                return AcquireResult::Acquired(Lease::new(fence));
            }
            if let Some(w) = slot.writer {
                return AcquireResult::Held {
                    remaining: Some(w.expires_at.saturating_sub(now)),
                };
            }
            if let Some(mark) = slot.writer_waiting.as_mut() {
                mark.refused = true;
                return AcquireResult::Held {
                    remaining: Some(mark.until.saturating_sub(now)),
                };
            }
            self.grant(slot, readers, ask)
        })
    }

    pub(crate) fn acquire_write(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let Ask {
            token, expires_at, ..
        } = ask;
        self.with_slot(key, ask.now, |slot, now| {
            if let Some(w) = slot.writer.as_mut() {
                if w.owner == token {
                    w.expires_at = expires_at;
                    return AcquireResult::Acquired(Lease::new(w.fence));
                }
                return AcquireResult::Held {
                    remaining: Some(w.expires_at.saturating_sub(now)),
                };
            }
            // Another writer's mark: it is first, and refuses this one too.
            let other_waiting = match slot.writer_waiting.as_mut() {
                Some(mark) if mark.owner != token => {
                    mark.refused = true;
                    Some(mark.until.saturating_sub(now))
                }
                _ => None,
            };
            if !slot.readers.is_empty() || other_waiting.is_some() {
                if other_waiting.is_none() {
                    // Set or refresh this writer's own mark.
                    let refused = slot.writer_waiting.is_some_and(|m| m.refused);
                    slot.writer_waiting = Some(Waiting {
                        owner: token,
                        until: expires_at,
                        refused,
                    });
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
            self.grant_single(&mut slot.writer, token, expires_at)
        })
    }

    /// Release `token`'s read lease.
    pub(crate) fn release_read(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.release_member(key, readers, token)
    }

    /// Release `token`'s write lease and its waiting mark. Waiters are woken when a lease
    /// ended, or when the mark had refused someone; a mark that refused nobody goes quietly.
    pub(crate) fn release_write(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.with_existing(key, |slot, _| {
            let had = slot.writer.is_some_and(|w| w.owner == token);
            if had {
                slot.writer = None;
            }
            let mark = slot.writer_waiting.filter(|m| m.owner == token);
            if mark.is_some() {
                slot.writer_waiting = None;
            }
            if had || mark.is_some_and(|m| m.refused) {
                slot.wake();
            }
            had
        })
        .unwrap_or(false)
    }

    /// Reset the ttl of `token`'s read lease.
    pub(crate) fn extend_read(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_member(key, readers, token, ttl)
    }

    /// Reset the ttl of `token`'s write lease.
    pub(crate) fn extend_write(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_single(key, |slot| &mut slot.writer, token, ttl)
    }

    /// Readers (oldest first), then the writer, and the waiting mark.
    pub(crate) fn rw_holders(&self, key: &LockKey) -> Holders {
        self.with_existing(key, |slot, now| {
            let mut leases = sorted_leases(&slot.readers, LeaseKind::Read, now);
            leases.extend(slot.writer.as_ref().map(|h| info(LeaseKind::Write, h, now)));
            Holders::new(leases).with_writer_waiting(slot.writer_waiting.is_some())
        })
        .unwrap_or_default()
    }

    /// Clear the whole read-write lock.
    pub(crate) fn force_release_rw(&self, key: &LockKey) -> bool {
        self.with_existing(key, |slot, _| {
            let had = !slot.readers.is_empty() || slot.writer.is_some();
            slot.readers.clear();
            slot.writer = None;
            slot.writer_waiting = None;
            slot.wake();
            had
        })
        .unwrap_or(false)
    }
}
