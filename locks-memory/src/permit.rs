//! The semaphore: at most `limit` permits per key, each a lease of its own.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseInfo, LeaseKind, LockKey, OwnerToken};

use crate::slot::{Held, info, soonest};
use crate::store::MemoryBackend;

impl MemoryBackend {
    pub(crate) fn acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> AcquireResult {
        let expires_at = self.expiry(ttl);
        let (mut slot, now) = self.slot(key);
        if let Some(h) = slot.permits.get_mut(&token) {
            h.expires_at = expires_at;
            return AcquireResult::Acquired(Lease::new(h.fence));
        }
        if slot.permits.len() >= usize::try_from(permits).unwrap_or(usize::MAX) {
            return AcquireResult::Held {
                remaining: soonest(&slot.permits, now),
            };
        }
        let fence = slot.next_fence();
        slot.permits.insert(
            token,
            Held {
                owner: token,
                expires_at,
                fence,
            },
        );
        AcquireResult::Acquired(Lease::new(fence))
    }

    pub(crate) fn release_permit(&self, key: &LockKey, token: OwnerToken) -> bool {
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        let had = slot.permits.remove(&token).is_some();
        if had {
            slot.wake();
        }
        had
    }

    pub(crate) fn extend_permit(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        let expires_at = self.expiry(ttl);
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        match slot.permits.get_mut(&token) {
            Some(h) => {
                h.expires_at = expires_at;
                true
            }
            None => false,
        }
    }

    pub(crate) fn permit_holders(&self, key: &LockKey, kind: LeaseKind) -> Holders {
        let Some((slot, now)) = self.existing_slot(key) else {
            return Holders::default();
        };
        let mut out: Vec<LeaseInfo> = slot.permits.values().map(|h| info(kind, h, now)).collect();
        out.sort_by_key(|i| i.fence);
        Holders::new(out)
    }

    pub(crate) fn force_release_permits(&self, key: &LockKey) -> bool {
        let Some((mut slot, _)) = self.existing_slot(key) else {
            return false;
        };
        let had = !slot.permits.is_empty();
        slot.permits.clear();
        slot.wake();
        had
    }
}
