//! Operations shared by the two kinds kept as a set of leases per key: semaphore permits and
//! readers. Each takes the set it works on as a [`Members`] selector.

use std::collections::HashMap;
use std::time::Duration;

use locks_core::{AcquireResult, Lease, LeaseInfo, LeaseKind, LockKey, OwnerToken};

use crate::slot::{Held, Slot, info};
use crate::store::{Ask, MemoryBackend};

/// Picks one set of leases out of a slot (the permits, or the readers).
pub(crate) type Members = fn(&mut Slot) -> &mut HashMap<OwnerToken, Held>;

pub(crate) fn permits(slot: &mut Slot) -> &mut HashMap<OwnerToken, Held> {
    &mut slot.permits
}

pub(crate) fn readers(slot: &mut Slot) -> &mut HashMap<OwnerToken, Held> {
    &mut slot.readers
}

/// `token`'s lease in `set` with its expiry moved to `expires_at`: its fence, if it has one.
pub(crate) fn renew(
    set: &mut HashMap<OwnerToken, Held>,
    token: OwnerToken,
    expires_at: Duration,
) -> Option<u64> {
    set.get_mut(&token).map(|h| {
        h.expires_at = expires_at;
        h.fence
    })
}

impl MemoryBackend {
    /// Add a new lease for `token` to the set with the store's next fence.
    pub(crate) fn grant(&self, slot: &mut Slot, members: Members, ask: Ask) -> AcquireResult {
        let fence = self.next_fence();
        let held = Held {
            owner: ask.token,
            expires_at: ask.expires_at,
            fence,
        };
        members(slot).insert(ask.token, held);
        AcquireResult::Acquired(Lease::new(fence))
    }

    /// Reset the ttl of `token`'s lease in the set. `false`: not a member.
    pub(crate) fn extend_member(
        &self,
        key: &LockKey,
        members: Members,
        token: OwnerToken,
        ttl: Duration,
    ) -> bool {
        let expires_at = self.expiry(ttl);
        self.with_existing(key, |slot, _| {
            renew(members(slot), token, expires_at).is_some()
        })
        .unwrap_or(false)
    }

    /// Remove `token`'s lease from the set and wake waiters. `false`: not a member.
    pub(crate) fn release_member(
        &self,
        key: &LockKey,
        members: Members,
        token: OwnerToken,
    ) -> bool {
        self.with_existing(key, |slot, _| {
            let had = members(slot).remove(&token).is_some();
            if had {
                slot.wake();
            }
            had
        })
        .unwrap_or(false)
    }

    /// The live members, oldest first, as leases of `kind`.
    pub(crate) fn member_leases(
        &self,
        key: &LockKey,
        members: Members,
        kind: LeaseKind,
    ) -> Vec<LeaseInfo> {
        self.with_existing(key, |slot, now| sorted_leases(members(slot), kind, now))
            .unwrap_or_default()
    }
}

/// The leases of `set` as `kind`, oldest (smallest fence) first.
pub(crate) fn sorted_leases(
    set: &HashMap<OwnerToken, Held>,
    kind: LeaseKind,
    now: Duration,
) -> Vec<LeaseInfo> {
    let mut out: Vec<LeaseInfo> = set.values().map(|h| info(kind, h, now)).collect();
    out.sort_by_key(|i| i.fence);
    out
}
