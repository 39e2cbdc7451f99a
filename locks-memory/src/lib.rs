//! # locks-memory
//!
//! An in-memory [`LockBackend`] on a `DashMap`: the double for fast, deterministic unit tests,
//! and a real lock for tasks inside one process.
//!
//! - Expiry follows a [`Clock`]: by default [`TokioClock`], so under
//!   `#[tokio::test(start_paused = true)]` the store and the service share tokio's paused time;
//!   with a [`ManualClock`](locks_core::ManualClock) leases expire only when the test advances
//!   it (a "GC pause": the store expires a lease under a holder that does not know it).
//! - Fencing tokens increase strictly per key for the life of the backend (every clone shares
//!   the state; one counter per key ever used is kept in memory).
//! - Releases wake waiters at once; expiry is lazy and wakes nobody (like Redis), so waiters
//!   fall back to polling at the holder's remaining ttl.
//! - [`Faults`] injects failures and latency.
//!
//! ```
//! use locks_core::LockService;
//! use locks_memory::MemoryBackend;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! let backend = MemoryBackend::new();
//! let locks = LockService::new(backend.clone())?;
//!
//! // Make the next two store operations fail with a transient error:
//! backend.faults().fail_next(2);
//! let guard = locks.acquire("job:7").await?; // retried through the failures
//! assert_eq!(backend.faults().injected(), 2);
//! guard.release().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::one::RefMut;
use locks_core::{
    AcquireResult, BackendError, Clock, Lease, LeaseInfo, LockBackend, LockKey, OwnerToken,
    ReleaseListener, RwInfo, TokioClock, Wake,
};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy)]
struct Held {
    owner: OwnerToken,
    expires_at: Duration,
    fence: u64,
}

/// Everything stored under one key: the mutex lease, semaphore permits, read-write leases,
/// one fence counter for all of them, and the release notifications.
#[derive(Debug)]
struct Slot {
    lease: Option<Held>,
    permits: HashMap<OwnerToken, Held>,
    readers: HashMap<OwnerToken, Held>,
    writer: Option<Held>,
    writer_waiting: Option<(OwnerToken, Duration)>,
    last_fence: u64,
    releases: watch::Sender<u64>,
}

fn info(h: &Held, now: Duration) -> LeaseInfo {
    LeaseInfo::new(h.owner, h.expires_at.saturating_sub(now), h.fence)
}

fn soonest(holders: &HashMap<OwnerToken, Held>, now: Duration) -> Option<Duration> {
    holders
        .values()
        .map(|h| h.expires_at.saturating_sub(now))
        .min()
}

impl Slot {
    fn new() -> Self {
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

    fn next_fence(&mut self) -> u64 {
        self.last_fence += 1;
        self.last_fence
    }

    /// Drop expired permits, readers, writer and waiting-writer marks.
    fn purge(&mut self, now: Duration) {
        self.permits.retain(|_, h| h.expires_at > now);
        self.readers.retain(|_, h| h.expires_at > now);
        if self.writer.is_some_and(|h| h.expires_at <= now) {
            self.writer = None;
        }
        if self.writer_waiting.is_some_and(|(_, until)| until <= now) {
            self.writer_waiting = None;
        }
    }

    fn clear(&mut self) {
        self.lease = None;
        self.permits.clear();
        self.readers.clear();
        self.writer = None;
        self.writer_waiting = None;
    }

    /// The lease if it has not expired by `now`; drops an expired one.
    fn live(&mut self, now: Duration) -> Option<Held> {
        if self.lease.is_some_and(|h| h.expires_at <= now) {
            self.lease = None;
        }
        self.lease
    }

    fn wake(&self) {
        self.releases.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Fault injection for a [`MemoryBackend`]. Shared by all clones of the backend.
#[derive(Debug, Default)]
pub struct Faults {
    fail_next: AtomicU32,
    lose_replies: AtomicU32,
    unavailable: AtomicBool,
    latency_nanos: AtomicU64,
    injected: AtomicU64,
}

enum Injected {
    None,
    FailBefore,
    FailAfter,
}

impl Faults {
    /// The next `n` operations fail with a transient error before touching the store.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` operations are applied, then report a transient error (a reply lost on a
    /// dropped connection: the caller cannot know whether the operation ran).
    pub fn lose_replies_next(&self, n: u32) {
        self.lose_replies.store(n, Ordering::SeqCst);
    }

    /// While `true`, every operation fails with a transient error (a partition).
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable.store(down, Ordering::SeqCst);
    }

    /// Add this much latency (tokio time) before every operation.
    pub fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.latency_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Clear every fault.
    pub fn clear(&self) {
        self.fail_next.store(0, Ordering::SeqCst);
        self.lose_replies.store(0, Ordering::SeqCst);
        self.unavailable.store(false, Ordering::SeqCst);
        self.latency_nanos.store(0, Ordering::SeqCst);
    }

    /// How many operations have failed by injection so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    async fn before(&self) -> Injected {
        let nanos = self.latency_nanos.load(Ordering::SeqCst);
        if nanos > 0 {
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
        if self.unavailable.load(Ordering::SeqCst) || Self::take(&self.fail_next) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Injected::FailBefore
        } else if Self::take(&self.lose_replies) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Injected::FailAfter
        } else {
            Injected::None
        }
    }
}

fn injected_error() -> BackendError {
    BackendError::transient("injected fault (memory backend)")
}

struct Inner {
    slots: DashMap<String, Slot>,
    clock: Arc<dyn Clock>,
    faults: Faults,
}

/// The in-memory backend. `Default + Clone`; clones share the same store.
#[derive(Clone)]
pub struct MemoryBackend {
    inner: Arc<Inner>,
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

    /// A backend that expires leases by `clock`, e.g. a [`ManualClock`](locks_core::ManualClock).
    pub fn with_clock(clock: impl Clock) -> Self {
        MemoryBackend {
            inner: Arc::new(Inner {
                slots: DashMap::new(),
                clock: Arc::new(clock),
                faults: Faults::default(),
            }),
        }
    }

    /// The fault injector shared by every clone.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.inner.clock
    }

    /// Expire every lease under `key` now (mutex lease, permits, read and write leases), as
    /// if their ttls had run out: nobody is told (holders find out at their next renewal,
    /// waiters at their next poll). `true` if there was anything to expire.
    pub fn expire_now(&self, key: &LockKey) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
        let had = slot.lease.is_some()
            || !slot.permits.is_empty()
            || !slot.readers.is_empty()
            || slot.writer.is_some();
        slot.clear();
        had
    }

    /// Expire one holder's permit, read or write lease under `key` now, without telling it
    /// (a crashed holder whose ttl ran out). `true` if it held something.
    pub fn expire_holder(&self, key: &LockKey, token: OwnerToken) -> bool {
        let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
            return false;
        };
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
        had
    }

    /// Number of live (unexpired) leases.
    pub fn live_leases(&self) -> usize {
        let now = self.inner.clock.now();
        self.inner
            .slots
            .iter()
            .filter(|s| s.lease.is_some_and(|h| h.expires_at > now))
            .count()
    }

    /// The slot of `key` (created if missing) with expired permits, readers, writer and
    /// waiting marks purged, and the store's time.
    fn slot(&self, key: &LockKey) -> (RefMut<'_, String, Slot>, Duration) {
        let now = self.inner.clock.now();
        let mut slot = self.inner.slots.entry(key.full()).or_insert_with(Slot::new);
        slot.purge(now);
        (slot, now)
    }

    /// Like [`slot`](Self::slot), but `None` when the key was never used.
    fn existing_slot(&self, key: &LockKey) -> Option<(RefMut<'_, String, Slot>, Duration)> {
        let now = self.inner.clock.now();
        let mut slot = self.inner.slots.get_mut(&key.full())?;
        slot.purge(now);
        Some((slot, now))
    }

    fn expiry(&self, ttl: Duration) -> Duration {
        self.inner.clock.now().saturating_add(ttl)
    }

    async fn run<T>(&self, op: impl FnOnce() -> T) -> Result<T, BackendError> {
        match self.inner.faults.before().await {
            Injected::FailBefore => Err(injected_error()),
            Injected::FailAfter => {
                let _ = op();
                Err(injected_error())
            }
            Injected::None => Ok(op()),
        }
    }
}

struct MemoryListener {
    rx: watch::Receiver<u64>,
}

#[async_trait]
impl ReleaseListener for MemoryListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        match tokio::time::timeout(max, self.rx.changed()).await {
            Ok(Ok(())) => Ok(Wake::Notified),
            // Slots are never removed, so this cannot happen; if it did, the service would
            // listen again rather than spin on a closed channel.
            Ok(Err(_)) => Err(BackendError::transient("release channel closed")),
            Err(_) => Ok(Wake::TimedOut),
        }
    }
}

#[async_trait]
impl LockBackend for MemoryBackend {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.run(|| {
            let now = self.inner.clock.now();
            let mut slot = self.inner.slots.entry(key.full()).or_insert_with(Slot::new);
            match slot.live(now) {
                Some(mut held) if held.owner == token => {
                    held.expires_at = self.expiry(ttl);
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
                        expires_at: self.expiry(ttl),
                        fence,
                    });
                    AcquireResult::Acquired(Lease::new(fence))
                }
            }
        })
        .await
    }

    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.run(|| {
            let now = self.inner.clock.now();
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
        })
        .await
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.run(|| {
            let now = self.inner.clock.now();
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
        })
        .await
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        self.run(|| {
            let now = self.inner.clock.now();
            let mut slot = self.inner.slots.get_mut(&key.full())?;
            slot.live(now)
                .map(|h| LeaseInfo::new(h.owner, h.expires_at.saturating_sub(now), h.fence))
        })
        .await
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        self.run(|| {
            let now = self.inner.clock.now();
            let Some(mut slot) = self.inner.slots.get_mut(&key.full()) else {
                return false;
            };
            let had = slot.live(now).is_some();
            slot.lease = None;
            slot.wake();
            had
        })
        .await
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let rx = self
            .inner
            .slots
            .entry(key.full())
            .or_insert_with(Slot::new)
            .releases
            .subscribe();
        Ok(Box::new(MemoryListener { rx }))
    }

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        self.run(|| {
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
        })
        .await
    }

    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.run(|| {
            let Some((mut slot, _)) = self.existing_slot(key) else {
                return false;
            };
            let had = slot.permits.remove(&token).is_some();
            if had {
                slot.wake();
            }
            had
        })
        .await
    }

    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.run(|| {
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
        })
        .await
    }

    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        self.run(|| {
            let Some((slot, now)) = self.existing_slot(key) else {
                return Vec::new();
            };
            let mut out: Vec<LeaseInfo> = slot.permits.values().map(|h| info(h, now)).collect();
            out.sort_by_key(|i| i.fence);
            out
        })
        .await
    }

    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.run(|| {
            let expires_at = self.expiry(ttl);
            let (mut slot, now) = self.slot(key);
            if let Some(h) = slot.readers.get_mut(&token) {
                h.expires_at = expires_at;
                return AcquireResult::Acquired(Lease::new(h.fence));
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
            let fence = slot.next_fence();
            slot.readers.insert(
                token,
                Held {
                    owner: token,
                    expires_at,
                    fence,
                },
            );
            AcquireResult::Acquired(Lease::new(fence))
        })
        .await
    }

    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.run(|| {
            let expires_at = self.expiry(ttl);
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
        })
        .await
    }

    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.run(|| {
            let Some((mut slot, _)) = self.existing_slot(key) else {
                return false;
            };
            let mut had = slot.readers.remove(&token).is_some();
            if slot.writer.is_some_and(|w| w.owner == token) {
                slot.writer = None;
                had = true;
            }
            let was_waiting = slot.writer_waiting.is_some_and(|(t, _)| t == token);
            if was_waiting {
                slot.writer_waiting = None;
            }
            if had || was_waiting {
                slot.wake();
            }
            had
        })
        .await
    }

    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.run(|| {
            let expires_at = self.expiry(ttl);
            let Some((mut slot, _)) = self.existing_slot(key) else {
                return false;
            };
            if let Some(h) = slot.readers.get_mut(&token) {
                h.expires_at = expires_at;
                return true;
            }
            match slot.writer.as_mut() {
                Some(w) if w.owner == token => {
                    w.expires_at = expires_at;
                    true
                }
                _ => false,
            }
        })
        .await
    }

    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        self.run(|| {
            let Some((slot, now)) = self.existing_slot(key) else {
                return RwInfo::default();
            };
            let mut readers: Vec<LeaseInfo> = slot.readers.values().map(|h| info(h, now)).collect();
            readers.sort_by_key(|i| i.fence);
            RwInfo::new(
                readers,
                slot.writer.as_ref().map(|h| info(h, now)),
                slot.writer_waiting.is_some(),
            )
        })
        .await
    }
}
