//! Side effects checked against the lock: a [`Probe`] is hit at the moment a side effect
//! happens, and the recorder notes who held the probe's key then ([`ProbeHit`]).

use std::fmt;
use std::sync::Arc;

use tokio::time::Instant;

use super::event::Holder;
use super::log::{Log, Record, State};
use super::{RecordingBackend, TIMELINE_LINES, short};

/// One [`Probe::hit`]: a side effect and who held its key at that instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeHit {
    /// Position in the recording (shared with lock events).
    pub seq: u64,
    /// When the hit happened (tokio time).
    pub at: Instant,
    /// The probe's key, as given to [`RecordingBackend::probe`].
    pub key: String,
    /// The fence the side effect carried, for [`Probe::hit_with_fence`].
    pub fence: Option<u64>,
    /// Who held the key at that instant: the code under test's holder when there was one
    /// (with the matching fence first), else the other holder. `None`: nobody.
    pub holder: Option<Holder>,
}

impl ProbeHit {
    /// Whether the hit ran under the lock: the key was held by the code under test (not by a
    /// [`hold_elsewhere`](RecordingBackend::hold_elsewhere) holder) and, when the hit carried a
    /// fence, by the lease with that fence.
    pub fn under_lock(&self) -> bool {
        self.holder
            .is_some_and(|h| !h.elsewhere && self.fence.is_none_or(|f| f == h.fence))
    }

    fn problem(&self) -> Option<String> {
        match (self.holder, self.fence) {
            (None, _) => Some(format!("`{}` was not held", self.key)),
            (Some(h), _) if h.elsewhere => Some(format!(
                "`{}` was held only by another owner ({}, set up with hold_elsewhere)",
                self.key,
                short(h.owner)
            )),
            (Some(h), Some(f)) if f != h.fence => Some(format!(
                "`{}` was held by {} with fence {}, but the side effect carried fence {f}",
                self.key,
                short(h.owner),
                h.fence
            )),
            _ => None,
        }
    }
}

/// The hits that ran outside the lock, as a message; `None` when all is well. `probe`: the
/// key of the one probe checked, `None` for every probe.
pub(super) fn check_hits(hits: &[ProbeHit], probe: Option<&str>) -> Option<String> {
    let what = probe.map_or_else(|| "no probe".to_owned(), |k| format!("the probe `{k}`"));
    if hits.is_empty() {
        return Some(format!(
            "assert_every_hit_under_lock: {what} was ever hit, so nothing was checked \
             (did the side effect run?)"
        ));
    }
    let bad: Vec<String> = hits
        .iter()
        .filter_map(|h| {
            h.problem()
                .map(|p| format!("probe `{}` hit #{}: {p}", h.key, h.seq))
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "assert_every_hit_under_lock: {} of {} probe hit(s) ran outside the lock:\n  - {}",
        bad.len(),
        hits.len(),
        bad.join("\n  - ")
    ))
}

impl Log {
    /// A side effect on `key` now: note who holds it.
    fn hit(&mut self, key: &str, fence: Option<u64>) -> ProbeHit {
        let p = self.next_point();
        let live: Vec<&Record> = self.live(key, p).collect();
        let ours = |r: &&&Record| !r.elsewhere;
        let holder = live
            .iter()
            .filter(ours)
            .find(|r| fence.is_none_or(|f| f == r.fence))
            .or_else(|| live.iter().find(ours))
            .or_else(|| live.first())
            .map(|r| r.holder());
        let hit = ProbeHit {
            seq: p.seq,
            at: p.at,
            key: key.to_owned(),
            fence,
            holder,
        };
        self.hits.push(hit.clone());
        hit
    }
}

impl RecordingBackend {
    /// A probe for "this ran while holding `key`": give it to the fake that performs the
    /// side effect, which calls [`Probe::hit`] at that moment. Probes are cheap; making one
    /// per call (`recorder.probe(&format!("payment:{id}"))`) is fine.
    pub fn probe(&self, key: &str) -> Probe {
        Probe {
            state: Arc::clone(&self.recorder.state),
            key: key.to_owned(),
        }
    }
}

/// Reports side effects to a [`RecordingBackend`]: call [`hit`](Probe::hit) at the moment the
/// side effect happens (in the fake that performs it); the recorder notes whether the probe's
/// key was held then, and by whom. Cheap to clone; clones share the recording.
#[derive(Clone)]
pub struct Probe {
    state: Arc<State>,
    key: String,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe").field("key", &self.key).finish()
    }
}

impl Probe {
    /// The key this probe checks.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The side effect happens now: record who holds the key.
    pub fn hit(&self) -> ProbeHit {
        self.state.record(|log| log.hit(&self.key, None))
    }

    /// The side effect happens now and carries `fence` (the fencing token the code under test
    /// passed along): it counts as under the lock only if the lease with that fence holds the
    /// key now.
    pub fn hit_with_fence(&self, fence: u64) -> ProbeHit {
        self.state.record(|log| log.hit(&self.key, Some(fence)))
    }

    /// The hits of this probe's key so far, in order.
    pub fn hits(&self) -> Vec<ProbeHit> {
        self.state
            .lock()
            .hits
            .iter()
            .filter(|h| h.key == self.key)
            .cloned()
            .collect()
    }

    /// Assert that every hit of this probe's key ran under the lock (see
    /// [`ProbeHit::under_lock`]).
    ///
    /// # Panics
    ///
    /// When a hit ran outside the lock, and when this probe's key was never hit.
    #[track_caller]
    pub fn assert_every_hit_under_lock(&self) {
        if let Some(message) = check_hits(&self.hits(), Some(&self.key)) {
            let timeline = self.state.lock().timeline(TIMELINE_LINES);
            panic!("{message}\n{timeline}");
        }
    }
}
