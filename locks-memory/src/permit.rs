//! The semaphore: at most `limit` permits per key, each a lease of its own.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::members::{permits, renew};
use crate::slot::soonest;
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    pub(crate) fn acquire_permit(&self, key: &LockKey, ask: Ask, limit: u32) -> AcquireResult {
        self.with_slot(key, ask.now, |slot, now| {
            if let Some(fence) = renew(&mut slot.permits, ask.token, ask.expires_at) {
                return AcquireResult::Acquired(Lease::new(fence));
            }
            if slot.permits.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
                return AcquireResult::Held {
                    remaining: soonest(&slot.permits, now),
                };
            }
            self.grant(slot, permits, ask)
        })
    }

    pub(crate) fn release_permit(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.release_member(key, permits, token)
    }

    pub(crate) fn extend_permit(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_member(key, permits, token, ttl)
    }

    pub(crate) fn permit_holders(&self, key: &LockKey, kind: LeaseKind) -> Holders {
        Holders::new(self.member_leases(key, permits, kind))
    }

    pub(crate) fn force_release_permits(&self, key: &LockKey) -> bool {
        self.with_existing(key, |slot, _| {
            let had = !slot.permits.is_empty();
            slot.permits.clear();
            slot.wake();
            had
        })
        .unwrap_or(false)
    }
}
