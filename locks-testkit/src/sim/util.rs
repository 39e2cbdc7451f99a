//! Small helpers every part of the simulator uses: seeds, conversions, tokio-time waits, the
//! latency histogram and the example lists of violation messages.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use locks_core::LockError;
use tokio::time::Instant;

use super::config::invalid;

/// How many offending ids a violation line names.
const MAX_EXAMPLES: usize = 5;

/// The longest wait the histogram tells apart, in µs (one hour); longer waits are recorded
/// as one hour.
const MAX_TRACKED_WAIT_MICROS: u64 = 3_600_000_000;

/// A distinct, reproducible seed per worker.
pub(super) fn worker_seed(seed: u64, index: usize) -> u64 {
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Locks `m`, ignoring poisoning (a panicked worker is counted elsewhere).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `d` in whole nanoseconds, saturating.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `d` in whole microseconds, saturating.
pub(super) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `n` as a `u64`, saturating.
pub(super) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn stop_at(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The critical section's work: let every other task run (so an overlap shows even with a
/// zero hold time), then sleep `hold`.
pub(super) async fn hold_for(hold: Duration) {
    tokio::task::yield_now().await;
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
}

/// "ids 3, 7, 9" (at most [`MAX_EXAMPLES`], then "...").
pub(super) fn examples(ids: &[usize]) -> String {
    let mut s: Vec<String> = ids
        .iter()
        .take(MAX_EXAMPLES)
        .map(usize::to_string)
        .collect();
    if ids.len() > MAX_EXAMPLES {
        s.push("...".into());
    }
    s.join(", ")
}

/// A fixed-range histogram: `saturating_record` never resizes an auto-resizing one, so the
/// range must be set up front.
pub(super) fn new_histogram() -> Result<Histogram<u64>, LockError> {
    Histogram::new_with_bounds(1, MAX_TRACKED_WAIT_MICROS, 3)
        .map_err(|e| invalid("sim.histogram", e.to_string()))
}
