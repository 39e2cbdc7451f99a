//! The local waiting line: inside one service, callers of one `(key, kind)` wait in FIFO
//! order in memory, and only the head talks to the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::acquire::Waiting;
use crate::key::LockKey;
use crate::kind::LeaseKind;

/// What a line is kept for: a key and a lease kind (a mutex and the write side of a
/// read-write lock of the same name are different lines).
pub(crate) type LineKey = (LockKey, LeaseKind);

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long a key counts as contended after an attempt of this service found it held: its
/// next acquires listen for releases *before* their first attempt, so that a failed attempt
/// needs no second look (see [`LockService::acquire_opts`]).
pub(crate) const CONTENDED_HINT: Duration = Duration::from_secs(1);

/// Lines are swept of idle entries (no caller, no fresh hint) when there are more than this.
const LINES_SWEEP_MIN: usize = 1024;

/// One key's local waiting line: a fair mutex, the number of callers in line, and when an
/// attempt last found the key held by someone else.
#[derive(Default)]
pub(crate) struct Line {
    pub(crate) mutex: Arc<tokio::sync::Mutex<()>>,
    pub(crate) callers: usize,
    pub(crate) contended_at: Option<Instant>,
}

impl Line {
    fn contended_recently(&self, now: Instant) -> bool {
        self.contended_at
            .is_some_and(|at| now.saturating_duration_since(at) < CONTENDED_HINT)
    }
}

/// The lines of every key this service is acquiring, or recently found contended.
#[derive(Default)]
pub(crate) struct LineMap {
    pub(crate) lines: HashMap<LineKey, Line, foldhash::fast::RandomState>,
    /// Size after the last sweep of idle entries.
    swept_len: usize,
}

pub(crate) type Lines = Arc<Mutex<LineMap>>;

/// Note on `key`'s line (if it has one) whether an attempt just found it held.
pub(crate) fn note_contended(lines: &Lines, key: &LineKey, contended: Option<Instant>) {
    if let Some(line) = lock(lines).lines.get_mut(key) {
        line.contended_at = contended;
    }
}

/// A place in this service's local waiting line for one key. Only the head of the line talks
/// to the store; the others wait in FIFO order in memory. A holder that releases and asks
/// again joins the back of the line, so it cannot keep winning against local waiters.
pub(crate) struct LineTicket {
    lines: Lines,
    key: LineKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl LineTicket {
    /// Whether an attempt of this service found the key held within [`CONTENDED_HINT`].
    pub(crate) fn contended_recently(&self) -> bool {
        let now = Instant::now();
        lock(&self.lines)
            .lines
            .get(&self.key)
            .is_some_and(|line| line.contended_recently(now))
    }
}

impl Drop for LineTicket {
    fn drop(&mut self) {
        self.guard.take();
        let now = Instant::now();
        let mut map = lock(&self.lines);
        if let Some(line) = map.lines.get_mut(&self.key) {
            line.callers = line.callers.saturating_sub(1);
            // A line with a fresh hint stays, so the next acquire sees it.
            if line.callers == 0 && !line.contended_recently(now) {
                map.lines.remove(&self.key);
            }
        }
        if map.lines.len() > LINES_SWEEP_MIN.max(2 * map.swept_len) {
            map.lines
                .retain(|_, line| line.callers > 0 || line.contended_recently(now));
            map.swept_len = map.lines.len();
        }
    }
}

/// Count a fair-mode caller among `key`'s callers (for [`LockService::waiters`]) without a
/// place in the local line: fair waiters queue in the store, where arrival order across every
/// process decides, so none of them waits behind another in memory.
///
/// [`LockService::waiters`]: super::LockService::waiters
pub(crate) fn count_in_line(lines: &Lines, key: &LineKey) -> LineTicket {
    lock(lines).lines.entry(key.clone()).or_default().callers += 1;
    LineTicket {
        lines: Arc::clone(lines),
        key: key.clone(),
        guard: None,
    }
}

/// Wait for the head of `key`'s local line. `Ok(Some((ticket, contended)))`: this caller
/// may talk to the store; `contended` says whether the key was found held recently.
/// `Ok(None)`: the deadline passed. `Err(())`: shutdown.
pub(crate) async fn join_line(
    lines: &Lines,
    closing: &CancellationToken,
    key: &LineKey,
    deadline: Instant,
    waiting: &mut Waiting<'_>,
) -> Result<Option<(LineTicket, bool)>, ()> {
    let (mutex, contended) = {
        let mut map = lock(lines);
        let line = map.lines.entry(key.clone()).or_default();
        line.callers += 1;
        let contended = line
            .contended_at
            .is_some_and(|at| at.elapsed() < CONTENDED_HINT);
        (Arc::clone(&line.mutex), contended)
    };
    let mut ticket = LineTicket {
        lines: Arc::clone(lines),
        key: key.clone(),
        guard: None,
    };
    // Nobody in line (the usual case): no timer, no cancellation waiter.
    if let Ok(g) = Arc::clone(&mutex).try_lock_owned() {
        ticket.guard = Some(g);
        return Ok(Some((ticket, contended)));
    }
    waiting.start();
    tokio::select! {
        g = mutex.lock_owned() => {
            ticket.guard = Some(g);
            let contended = ticket.contended_recently();
            Ok(Some((ticket, contended)))
        }
        _ = tokio::time::sleep_until(deadline) => Ok(None),
        _ = closing.cancelled() => Err(()),
    }
}
