//! The invariant checkers: the generic one every scenario runs ([`KeyChecker`]: holders per
//! key at every instant, fences strictly increasing per key, hand-off latency), and the
//! at-most-once checker of `double-payment` and `job-dedup` ([`AtMostOnce`]).
//!
//! Scenario-specific checkers (the oversell shop, the leader-failover world, the gc-pause
//! fenced store) live with their scenario under `scenarios/`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use locks_core::LockError;
use tokio::time::Instant;

use super::report::LatencySummary;
use super::runner::Progress;
use super::util::{hold_for, lock, micros, new_histogram};

/// The generic checker's state for one key.
#[derive(Debug, Default)]
struct KeyState {
    holders: AtomicU64,
    last_fence: AtomicU64,
    /// Who left the critical section last, and when (for hand-off latency).
    last_leave: Mutex<Option<(usize, Instant)>>,
}

/// Counts the holders of every key at every instant, checks that fences strictly increase per
/// key, and measures hand-off latency (a holder leaves → the next holder *of another worker*
/// enters).
pub(super) struct KeyChecker {
    keys: Vec<KeyState>,
    /// Whether a second holder of a key is a violation (only in `mutex`: in `gc-pause` a
    /// paused holder overlapping the next one is the point).
    overlap_is_violation: bool,
    /// Whether fences are checked (off when the workers skip the lock).
    check_fences: bool,
    /// Critical sections entered.
    pub(super) acquired: AtomicU64,
    /// Entries that found the key already held.
    pub(super) overlaps: AtomicU64,
    /// Entries whose fence was not larger than the last one seen on the key.
    pub(super) fence_regressions: AtomicU64,
    /// The most holders any key had at once.
    pub(super) max_concurrent: AtomicU64,
    handoff: Mutex<Histogram<u64>>,
}

impl KeyChecker {
    pub(super) fn new(
        keys: usize,
        overlap_is_violation: bool,
        check_fences: bool,
    ) -> Result<Self, LockError> {
        Ok(KeyChecker {
            keys: (0..keys).map(|_| KeyState::default()).collect(),
            overlap_is_violation,
            check_fences,
            acquired: AtomicU64::new(0),
            overlaps: AtomicU64::new(0),
            fence_regressions: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            handoff: Mutex::new(new_histogram()?),
        })
    }

    /// Right after `worker` got `key` with `fence` (0: no lock).
    pub(super) fn entered(&self, worker: usize, key: usize, fence: u64, progress: &Progress) {
        self.acquired.fetch_add(1, Ordering::SeqCst);
        let Some(state) = self.keys.get(key) else {
            return;
        };
        let now = state.holders.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        if now > 1 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
            if self.overlap_is_violation {
                progress.add_violation();
            }
        }
        if self.check_fences {
            let previous = state.last_fence.fetch_max(fence, Ordering::SeqCst);
            if previous >= fence {
                self.fence_regressions.fetch_add(1, Ordering::SeqCst);
                progress.add_violation();
            }
        }
        let left = lock(&state.last_leave).take();
        if let Some((by, at)) = left
            && by != worker
        {
            lock(&self.handoff).saturating_record(micros(at.elapsed()));
        }
    }

    /// When `worker` leaves `key` (before releasing it).
    pub(super) fn left(&self, worker: usize, key: usize) {
        if let Some(state) = self.keys.get(key) {
            state.holders.fetch_sub(1, Ordering::SeqCst);
            *lock(&state.last_leave) = Some((worker, Instant::now()));
        }
    }

    /// The hand-off latency percentiles so far.
    pub(super) fn handoff(&self) -> LatencySummary {
        LatencySummary::from_histogram(&lock(&self.handoff))
    }
}

/// Work that must happen at most once per item — a charge per order, a run per job — checked
/// by counting how often each item was actually done.
pub(super) struct AtMostOnce {
    done: Vec<AtomicBool>,
    runs: Vec<AtomicU64>,
    duplicates: AtomicU64,
    skipped_done: AtomicU64,
}

/// What an [`AtMostOnce`] saw, at the end of a run.
pub(super) struct OnceTally {
    /// How often items were done, in all.
    pub(super) total: u64,
    /// The items done more than once.
    pub(super) twice: Vec<usize>,
    /// The items never done.
    pub(super) never: Vec<usize>,
    /// Every time an item was done again (the violations).
    pub(super) duplicates: u64,
    /// Entries that found their item already done and skipped it.
    pub(super) skipped_done: u64,
}

impl AtMostOnce {
    pub(super) fn new(items: usize) -> Self {
        AtMostOnce {
            done: (0..items).map(|_| AtomicBool::new(false)).collect(),
            runs: (0..items).map(|_| AtomicU64::new(0)).collect(),
            duplicates: AtomicU64::new(0),
            skipped_done: AtomicU64::new(0),
        }
    }

    /// Inside the item's critical section: skip it when it is already done, else do it (the
    /// side effect is recorded first, then takes `hold`). `false` for an unknown item.
    pub(super) async fn perform(&self, progress: &Progress, item: usize, hold: Duration) -> bool {
        let (Some(done), Some(runs)) = (self.done.get(item), self.runs.get(item)) else {
            return false;
        };
        if done.load(Ordering::SeqCst) {
            self.skipped_done.fetch_add(1, Ordering::SeqCst);
        } else {
            if runs.fetch_add(1, Ordering::SeqCst) > 0 {
                self.duplicates.fetch_add(1, Ordering::SeqCst);
                progress.add_violation();
            }
            hold_for(hold).await;
            done.store(true, Ordering::SeqCst);
        }
        true
    }

    pub(super) fn tally(&self) -> OnceTally {
        let runs: Vec<u64> = self.runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
        let items = |pred: fn(u64) -> bool| -> Vec<usize> {
            runs.iter()
                .enumerate()
                .filter(|&(_, &n)| pred(n))
                .map(|(i, _)| i)
                .collect()
        };
        OnceTally {
            total: runs.iter().sum(),
            twice: items(|n| n > 1),
            never: items(|n| n == 0),
            duplicates: self.duplicates.load(Ordering::SeqCst),
            skipped_done: self.skipped_done.load(Ordering::SeqCst),
        }
    }
}
