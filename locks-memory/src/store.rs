//! The store: a `DashMap` of slots, the clock it expires leases by, and test hooks.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use locks_core::backend::Signal;
use locks_core::{BackendError, LockKey, OwnerToken, ReleaseListener, Wake};
use tokio::sync::watch;

use crate::clock::{Clock, TokioClock};
use crate::slot::Slot;

/// The store sweeps every slot (purging expired leases, removing idle slots) once this many
/// slots were created since the last sweep, or as many as the sweep left, whichever is more:
/// amortised O(1) per created slot.
const SWEEP_MIN: usize = 1024;

/// How long a released token that held nothing stays retired: an acquire with it is refused
/// meanwhile (the backend contract's rule for late acquires; in memory nothing arrives late,
/// the rule is kept so that both backends answer alike).
pub(crate) const RETIRED_FOR: Duration = Duration::from_secs(120);

/// One acquire attempt: who asks, the store's time, and when the lease would expire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask {
    pub(crate) token: OwnerToken,
    pub(crate) now: Duration,
    pub(crate) expires_at: Duration,
}

pub(crate) struct Inner {
    /// Keyed by the whole [`LockKey`] (prefix and name apart), so two services whose
    /// `prefix + name` strings happen to be equal (`"a:" + "b"`, `"a" + ":b"`) never share a
    /// slot.
    pub(crate) slots: DashMap<LockKey, Slot, foldhash::fast::RandomState>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The last fence handed out, for every key of the store.
    fences: AtomicU64,
    /// Slots created since the last sweep.
    created: AtomicUsize,
    /// Slots the last sweep left.
    swept_len: AtomicUsize,
}

impl Inner {
    /// Remove `key`'s slot if, with expired leases purged, it is idle.
    fn free_if_idle(&self, key: &LockKey) {
        let now = self.clock.now();
        self.slots.remove_if_mut(key, |_, slot| {
            slot.purge(now);
            slot.is_idle()
        });
    }
}

/// The in-memory backend. `Default + Clone`; clones share the same store.
///
/// **Memory**: a key takes memory only while something is held, a writer waits, or a waiter
/// listens for its releases. A slot left idle by a release, a purge of expired leases, or its
/// last listener going away is removed at once; leases that expire unobserved are purged by a
/// sweep that runs, amortised, as new keys are created. So a process that locks millions of
/// distinct names keeps only the ones in use ([`slot_count`](MemoryBackend::slot_count)).
///
/// **Fences** come from one counter for the whole store: every new holder of any key gets
/// the next value. Fences are therefore strictly increasing per key (indeed across all keys)
/// for the life of the store — a freed key that is locked again gets a fence larger than any
/// it had — without keeping a counter per key forever. They are not consecutive per key.
#[derive(Clone)]
pub struct MemoryBackend {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("keys", &self.inner.slots.len())
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A backend on tokio's clock (paused time in tests, the monotonic clock otherwise).
    pub fn new() -> Self {
        Self::with_clock(TokioClock::new())
    }

    /// A backend that expires leases by `clock`, e.g. a [`ManualClock`](crate::ManualClock).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                slots: DashMap::default(),
                clock: Arc::new(clock),
                fences: AtomicU64::new(0),
                created: AtomicUsize::new(0),
                swept_len: AtomicUsize::new(0),
            }),
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// Expire every lease under `key` now (mutex lease, permits, read and write leases), as
    /// if their ttls had run out: nobody is told (holders find out at their next renewal,
    /// waiters at their next poll). `true` if there was anything to expire.
    pub fn expire_now(&self, key: &LockKey) -> bool {
        self.with_existing(key, |slot, _| {
            let had = slot.is_held();
            slot.clear();
            had
        })
        .unwrap_or(false)
    }

    /// Expire one holder's permit, read or write lease under `key` now, without telling it
    /// (a crashed holder whose ttl ran out). `true` if it held something.
    pub fn expire_holder(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.with_existing(key, |slot, _| {
            let mut had = slot.permits.remove(&token).is_some();
            had |= slot.readers.remove(&token).is_some();
            if slot.writer.is_some_and(|h| h.owner == token) {
                slot.writer = None;
                had = true;
            }
            if slot.lease.is_some_and(|h| h.owner == token) {
                slot.lease = None;
                had = true;
            }
            if slot.fair.is_some_and(|h| h.owner == token) {
                slot.fair = None;
                had = true;
            }
            had
        })
        .unwrap_or(false)
    }

    /// Number of live (unexpired) mutex leases.
    pub fn live_leases(&self) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .slots
            .iter()
            .filter(|s| s.lease.is_some_and(|h| h.expires_at > now))
            .count()
    }

    /// How many keys the store keeps state for now (a test hook, e.g. to check that memory
    /// stays flat). A key counts while it has a lease of any kind, a writer's waiting mark, or
    /// a release listener; one whose leases all expired unobserved counts until an operation
    /// on it or the next sweep purges it.
    pub fn slot_count(&self) -> usize {
        self.inner.slots.len()
    }

    /// Run `f` on `key`'s slot (created if missing) with state expired by `now` (the store's
    /// time of the attempt, [`Ask::now`]) purged. A slot `f` leaves idle is removed (or, if it
    /// was new, never stored) under the same lock, so nothing can slip in between.
    pub(crate) fn with_slot<T>(
        &self,
        key: &LockKey,
        now: Duration,
        f: impl FnOnce(&mut Slot, Duration) -> T,
    ) -> T {
        let (out, created) = match self.inner.slots.entry(key.clone()) {
            Entry::Occupied(mut entry) => {
                let slot = entry.get_mut();
                slot.purge(now);
                let out = f(slot, now);
                if slot.is_idle() {
                    entry.remove();
                }
                (out, false)
            }
            Entry::Vacant(entry) => {
                let mut slot = Slot::default();
                let out = f(&mut slot, now);
                let keep = !slot.is_idle();
                if keep {
                    entry.insert(slot);
                }
                (out, keep)
            }
        };
        if created {
            self.note_created();
        }
        out
    }

    /// Like [`with_slot`](Self::with_slot) at the store's time now, but `None` (and no slot
    /// created) when `key` has no slot.
    pub(crate) fn with_existing<T>(
        &self,
        key: &LockKey,
        f: impl FnOnce(&mut Slot, Duration) -> T,
    ) -> Option<T> {
        let now = self.now();
        let mut out = None;
        self.inner.slots.remove_if_mut(key, |_, slot| {
            slot.purge(now);
            out = Some(f(slot, now));
            slot.is_idle()
        });
        out
    }

    /// Count a new slot, and sweep when enough were created since the last sweep. Must be
    /// called while holding no reference into the map.
    fn note_created(&self) {
        let inner = &self.inner;
        let created = inner.created.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = SWEEP_MIN.max(inner.swept_len.load(Ordering::Relaxed));
        if created < threshold
            || inner
                .created
                .compare_exchange(created, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now = inner.clock.now();
        inner.slots.retain(|_, slot| {
            slot.purge(now);
            !slot.is_idle()
        });
        inner.swept_len.store(inner.slots.len(), Ordering::Relaxed);
    }

    /// The next fence of the store: larger than every fence handed out before, for any key.
    pub(crate) fn next_fence(&self) -> u64 {
        // 2^64 grants are out of reach; wrapping is not a practical concern.
        self.inner
            .fences
            .fetch_add(1, Ordering::SeqCst)
            .wrapping_add(1)
    }

    pub(crate) fn expiry(&self, ttl: Duration) -> Duration {
        self.inner.clock.now().saturating_add(ttl)
    }

    /// An acquire by `token` for `ttl`, at the store's time now.
    pub(crate) fn ask(&self, token: OwnerToken, ttl: Duration) -> Ask {
        let now = self.now();
        Ask {
            token,
            now,
            expires_at: now.saturating_add(ttl),
        }
    }

    /// Remember `token` as released while it held nothing (see [`RETIRED_FOR`]).
    pub(crate) fn retire(&self, key: &LockKey, token: OwnerToken) {
        let now = self.now();
        self.with_slot(key, now, |slot, now| {
            slot.retired.insert(token, now.saturating_add(RETIRED_FOR));
        });
    }

    /// Whether `token` is retired under `key` now.
    pub(crate) fn is_retired(&self, key: &LockKey, token: OwnerToken) -> bool {
        self.with_existing(key, |slot, _| slot.retired.contains_key(&token))
            .unwrap_or(false)
    }

    /// The store's time now.
    pub(crate) fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    /// A listener for `key`'s releases. It keeps the slot alive while it lives, and frees it
    /// when dropped if nothing else needs it.
    pub(crate) fn listener(&self, key: &LockKey) -> MemoryListener {
        let (rx, created) = match self.inner.slots.entry(key.clone()) {
            Entry::Occupied(mut entry) => (entry.get_mut().subscribe(), false),
            Entry::Vacant(entry) => {
                let mut slot = Slot::default();
                let rx = slot.subscribe();
                entry.insert(slot);
                (rx, true)
            }
        };
        if created {
            self.note_created();
        }
        let seen = rx.borrow().generation;
        MemoryListener {
            seen,
            rx: Some(rx),
            key: key.clone(),
            store: Arc::downgrade(&self.inner),
        }
    }
}

pub(crate) struct MemoryListener {
    /// `Some` until dropped.
    rx: Option<watch::Receiver<Signal>>,
    /// The generation of the last notification reported.
    seen: u64,
    key: LockKey,
    store: Weak<Inner>,
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        // The receiver goes first, so that the slot no longer counts it as listening.
        drop(self.rx.take());
        if let Some(inner) = self.store.upgrade() {
            inner.free_if_idle(&self.key);
        }
    }
}

#[async_trait]
impl ReleaseListener for MemoryListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        let Some(rx) = self.rx.as_mut() else {
            return Err(BackendError::transient("release listener closed"));
        };
        match tokio::time::timeout(max, rx.changed()).await {
            Ok(Ok(())) => {
                let signal = *rx.borrow_and_update();
                let wake = signal.wake_since(self.seen);
                self.seen = signal.generation;
                Ok(match wake {
                    Wake::TimedOut => Wake::Notified,
                    other => other,
                })
            }
            // A slot with a listener is never removed, so this cannot happen; if it did, the
            // service would listen again rather than spin on a closed channel.
            Ok(Err(_)) => Err(BackendError::transient("release channel closed")),
            Err(_) => Ok(Wake::TimedOut),
        }
    }
}
