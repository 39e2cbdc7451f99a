//! The mutex: one lease per key.

use std::time::Duration;

use locks_core::{AcquireResult, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::slot::{Held, Slot, info};
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    pub(crate) fn acquire_mutex(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let Ask {
            token, expires_at, ..
        } = ask;
        self.with_slot(key, ask.now, |slot, now| match slot.lease.as_mut() {
            Some(held) if held.owner == token => {
                held.expires_at = expires_at;
                AcquireResult::Acquired(Lease::new(held.fence))
            }
            Some(held) => AcquireResult::Held {
                remaining: Some(held.expires_at.saturating_sub(now)),
            },
            None => self.grant_single(&mut slot.lease, token, expires_at),
        })
    }

    /// Put a new lease for `token` with the next fence into a one-holder place of a slot (the
    /// mutex lease, the writer).
    pub(crate) fn grant_single(
        &self,
        place: &mut Option<Held>,
        token: OwnerToken,
        expires_at: Duration,
    ) -> AcquireResult {
        let fence = self.next_fence();
        *place = Some(Held {
            owner: token,
            expires_at,
            fence,
        });
        AcquireResult::Acquired(Lease::new(fence))
    }

    pub(crate) fn release_mutex(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.with_existing(key, |slot, _| match slot.lease {
            Some(held) if held.owner == token => {
                slot.lease = None;
                slot.wake();
                true
            }
            _ => false,
        })
        .unwrap_or(false)
    }

    pub(crate) fn extend_mutex(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_single(key, |slot| &mut slot.lease, token, ttl)
    }

    /// Reset the ttl of `token`'s lease in a one-holder place of the slot (the mutex lease, the
    /// writer). `false`: `token` does not hold it.
    pub(crate) fn extend_single(
        &self,
        key: &LockKey,
        place: fn(&mut Slot) -> &mut Option<Held>,
        token: OwnerToken,
        ttl: Duration,
    ) -> bool {
        let expires_at = self.expiry(ttl);
        self.with_existing(key, |slot, _| match place(slot).as_mut() {
            Some(held) if held.owner == token => {
                held.expires_at = expires_at;
                true
            }
            _ => false,
        })
        .unwrap_or(false)
    }

    pub(crate) fn mutex_holders(&self, key: &LockKey) -> Holders {
        self.with_existing(key, |slot, now| {
            Holders::new(
                slot.lease
                    .map(|h| info(LeaseKind::Mutex, &h, now))
                    .into_iter()
                    .collect(),
            )
        })
        .unwrap_or_default()
    }

    pub(crate) fn force_release_mutex(&self, key: &LockKey) -> bool {
        self.with_existing(key, |slot, _| {
            let had = slot.lease.take().is_some();
            slot.wake();
            had
        })
        .unwrap_or(false)
    }
}
