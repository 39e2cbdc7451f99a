//! The fair mutex ([`LeaseKind::FairMutex`]): one lease per key and a FIFO queue of waiters;
//! a release hands the lease to the head of the queue and notifies it.

use std::time::Duration;

use locks_core::{AcquireResult, FAIR_WAITER_TTL, Holders, Lease, LeaseKind, LockKey, OwnerToken};

use crate::slot::{Held, Queued, Slot, info};
use crate::store::{Ask, MemoryBackend};

impl MemoryBackend {
    /// See the contract on [`LeaseKind::FairMutex`]: renew our own lease (a grant is claimed
    /// this way), take a free lease if nobody is queued ahead of us, else queue (or keep our
    /// place) for [`FAIR_WAITER_TTL`].
    pub(crate) fn acquire_fair(&self, key: &LockKey, ask: Ask) -> AcquireResult {
        let Ask {
            token,
            now,
            expires_at,
        } = ask;
        let ttl = expires_at.saturating_sub(now);
        self.with_slot(key, now, |slot, now| match slot.fair.as_mut() {
            Some(held) if held.owner == token => {
                held.expires_at = expires_at;
                AcquireResult::Acquired(Lease::new(held.fence))
            }
            Some(held) => {
                let remaining = held.expires_at.saturating_sub(now);
                enqueue(slot, token, now, ttl);
                AcquireResult::Held {
                    remaining: Some(remaining),
                }
            }
            None => match slot.fair_queue.front() {
                Some(head) if head.token != token => {
                    // Free, but the head has not claimed it yet: wait for it, at most until
                    // its entry expires.
                    let remaining = head.until.saturating_sub(now);
                    enqueue(slot, token, now, ttl);
                    AcquireResult::Held {
                        remaining: Some(remaining),
                    }
                }
                _ => {
                    slot.fair_queue.retain(|q| q.token != token);
                    self.grant_single(&mut slot.fair, token, expires_at)
                }
            },
        })
    }

    /// The owner's release hands the lease to the head of the queue (new fence, its requested
    /// ttl but at most [`FAIR_WAITER_TTL`]) and notifies with a grant; a non-owner leaves the queue. `true`: it was the owner.
    pub(crate) fn release_fair(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.with_existing(key, |slot, now| match slot.fair {
            Some(held) if held.owner == token => {
                slot.fair = None;
                match slot.fair_queue.pop_front() {
                    Some(next) => {
                        let fence = self.next_fence();
                        slot.fair = Some(Held {
                            owner: next.token,
                            expires_at: now.saturating_add(next.ttl),
                            fence,
                        });
                        slot.grant(next.token, fence);
                    }
                    None => slot.wake(),
                }
                true
            }
            _ => {
                let was_head = slot.fair_queue.front().is_some_and(|q| q.token == token);
                slot.fair_queue.retain(|q| q.token != token);
                // A free lease whose head gave up: the next waiter may take it now.
                if was_head && slot.fair.is_none() && !slot.fair_queue.is_empty() {
                    slot.wake();
                }
                false
            }
        })
        .unwrap_or(false)
    }

    pub(crate) fn extend_fair(&self, key: &LockKey, token: OwnerToken, ttl: Duration) -> bool {
        self.extend_single(key, |slot| &mut slot.fair, token, ttl)
    }

    pub(crate) fn fair_holders(&self, key: &LockKey) -> Holders {
        self.with_existing(key, |slot, now| {
            Holders::new(
                slot.fair
                    .map(|h| info(LeaseKind::FairMutex, &h, now))
                    .into_iter()
                    .collect(),
            )
        })
        .unwrap_or_default()
    }

    /// Delete the fair lease and the queue.
    pub(crate) fn force_release_fair(&self, key: &LockKey) -> bool {
        self.with_existing(key, |slot, _| {
            let had = slot.fair.take().is_some();
            slot.fair_queue.clear();
            slot.wake();
            had
        })
        .unwrap_or(false)
    }

    /// The live queue of `key`'s fair mutex, head first (a test hook: wait until a waiter is
    /// queued without sleeping).
    pub fn fair_queue(&self, key: &LockKey) -> Vec<OwnerToken> {
        self.with_existing(key, |slot, _| {
            slot.fair_queue.iter().map(|q| q.token).collect()
        })
        .unwrap_or_default()
    }
}

/// Queue `token` at the tail, or keep its place; its entry lives [`FAIR_WAITER_TTL`] from
/// `now`, and remembers the ttl of its grant: the ttl it asks for, at most
/// [`FAIR_WAITER_TTL`] (a grant is provisional until the new holder renews it).
fn enqueue(slot: &mut Slot, token: OwnerToken, now: Duration, ttl: Duration) {
    let until = now.saturating_add(FAIR_WAITER_TTL);
    let ttl = ttl.min(FAIR_WAITER_TTL);
    match slot.fair_queue.iter_mut().find(|q| q.token == token) {
        Some(q) => {
            q.until = until;
            q.ttl = ttl;
        }
        None => slot.fair_queue.push_back(Queued { token, until, ttl }),
    }
}
