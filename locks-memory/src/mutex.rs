//! The mutex: one lease per key.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::slot::{Held, Slot, info};
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    pub(crate) fn acquire_mutex(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let Ask {
            token,
            now,
            expires_at,
        } = ask;
        let mut slot = self.inner.slots.entry(key.full()).or_insert_with(Slot::new);
        match slot.live(now) {
            Some(mut held) if held.owner == token => {
                held.expires_at = expires_at;
                slot.lease = Some(held);
                AcquireResult::Acquired(Lease::new(held.fence))
            }
            Some(held) => AcquireResult::Held {
                remaining: Some(held.expires_at.saturating_sub(now)),
            },
            None => {
                let fence = slot.last_fence + 1;
                slot.last_fence = fence;
                slot.lease = Some(Held {
                    owner: token,
                    expires_at,
                    fence,
                });
                AcquireResult::Acquired(Lease::new(fence))
            }
        }
    }

    pub(crate) fn release_mutex(&self, key: &LockKey, token: OwnerToken) -> bool {
        let now = self.now();
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        match slot.live(now) {
            Some(held) if held.owner == token => {
                slot.lease = None;
                slot.wake();
                true
            }
            _ => false,
        }
    }

    pub(crate) fn extend_mutex(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        let now = self.now();
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        match slot.live(now) {
            Some(mut held) if held.owner == token => {
                held.expires_at = self.expiry(ttl);
                slot.lease = Some(held);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn mutex_holders(&self, key: &LockKey) -> Holders {
        let now = self.now();
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return Holders::default();
        };
        Holders::new(
            slot.live(now)
                .map(|h| info(LeaseKind::Mutex, &h, now))
                .into_iter()
                .collect(),
        )
    }

    pub(crate) fn force_release_mutex(&self, key: &LockKey) -> bool {
        let now = self.now();
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        let had = slot.live(now).is_some();
        slot.lease = None;
        slot.wake();
        had
    }
}
