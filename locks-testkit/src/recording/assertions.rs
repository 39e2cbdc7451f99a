//! The `assert_*` methods of [`RecordingBackend`]. Each panics with the recorded timeline in
//! its message.

use super::event::EndReason;
use super::log::Record;
use super::probe::check_hits;
use super::{RecordingBackend, TIMELINE_LINES, rel};

impl RecordingBackend {
    #[track_caller]
    fn fail(&self, message: String) -> ! {
        let timeline = self.state().lock().timeline(TIMELINE_LINES);
        panic!("{message}\n{timeline}");
    }

    /// Assert that `key` is held now (by anyone, [`hold_elsewhere`](Self::hold_elsewhere)
    /// holders included, any lease kind).
    ///
    /// # Panics
    ///
    /// When nobody holds `key`; the message says how its last lease ended.
    #[doc(alias = "assert_locked")]
    #[track_caller]
    pub fn assert_held(&self, key: &str) {
        let message = {
            let log = self.state().lock();
            let now = log.now_point();
            if log.live(key, now).next().is_some() {
                return;
            }
            let last = log.records.iter().rev().find(|r| r.matches(key));
            match last.and_then(|r| r.end_point().map(|e| (r, e))) {
                Some((r, (end, reason))) => format!(
                    "assert_held: `{key}` is not held; its last lease, {}, ended at {} ({reason:?})",
                    r.describe(log.origin),
                    rel(log.origin, end.at)
                ),
                None => format!("assert_held: `{key}` is not held; it was never acquired"),
            }
        };
        self.fail(message);
    }

    /// Assert that nobody holds `key` now.
    ///
    /// # Panics
    ///
    /// When `key` is held; the message names the holders.
    #[track_caller]
    pub fn assert_not_held(&self, key: &str) {
        let message = {
            let log = self.state().lock();
            let now = log.now_point();
            let holders: Vec<String> = log.live(key, now).map(|r| r.describe(log.origin)).collect();
            if holders.is_empty() {
                return;
            }
            format!("assert_not_held: `{key}` is held: {}", holders.join("; "))
        };
        self.fail(message);
    }

    /// Assert that every lock was released: every lease the code under test took ended by a
    /// release (or by [`revoke`](Self::revoke) or a force-release), none is held now, and none
    /// simply ran out its ttl. [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored.
    ///
    /// # Panics
    ///
    /// When a lease is still held or expired without a release; the message lists them.
    #[track_caller]
    pub fn assert_all_released(&self) {
        let message = {
            let log = self.state().lock();
            let now = log.now_point();
            let mut problems = Vec::new();
            for r in log.records.iter().filter(|r| !r.elsewhere) {
                match r.end_point() {
                    Some((end, EndReason::Expired)) if end < now => problems.push(format!(
                        "{} was never released: it expired at {}",
                        r.describe(log.origin),
                        rel(log.origin, end.at)
                    )),
                    Some((end, _)) if end < now => {}
                    _ => problems.push(format!("{} is still held", r.describe(log.origin))),
                }
            }
            if problems.is_empty() {
                return;
            }
            format!(
                "assert_all_released: {} lock(s) were not released:\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            )
        };
        self.fail(message);
    }

    /// Assert that no two of `keys` were ever held at the same time by the code under test
    /// (any lease kind; [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored). Leases
    /// are intervals from grant to end in recording order, so a release and a grant at the
    /// same tokio instant do not overlap when the release was recorded first.
    ///
    /// # Panics
    ///
    /// At the first overlap, naming both leases.
    #[track_caller]
    pub fn assert_never_held_together(&self, keys: &[&str]) {
        let message = {
            let log = self.state().lock();
            let ours: Vec<&Record> = log
                .records
                .iter()
                .filter(|r| !r.elsewhere && keys.iter().any(|k| r.matches(k)))
                .collect();
            let mut found = None;
            'outer: for (n, a) in ours.iter().enumerate() {
                for b in ours.iter().skip(n + 1) {
                    if a.full == b.full {
                        continue;
                    }
                    let a_end = a.end_point().map(|(e, _)| e);
                    let b_end = b.end_point().map(|(e, _)| e);
                    let overlap =
                        a_end.is_none_or(|e| b.start < e) && b_end.is_none_or(|e| a.start < e);
                    if overlap {
                        found = Some((*a, *b));
                        break 'outer;
                    }
                }
            }
            let Some((a, b)) = found else {
                return;
            };
            let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
            let now = log.now_point();
            let until = match first.end_point() {
                Some((end, reason)) if end < now => {
                    format!("held until {} ({reason:?})", rel(log.origin, end.at))
                }
                _ => "still held".to_owned(),
            };
            format!(
                "assert_never_held_together: `{}` and `{}` were held together: {} ({until}) \
                 while {}",
                first.key,
                second.key,
                first.describe(log.origin),
                second.describe(log.origin),
            )
        };
        self.fail(message);
    }

    /// Assert that every probe hit (of every probe of this recorder) ran under the lock: see
    /// [`ProbeHit::under_lock`](super::ProbeHit::under_lock).
    ///
    /// # Panics
    ///
    /// When a hit ran outside the lock (the message lists each one and why), and when no probe
    /// was hit at all (nothing would have been checked: did the side effect run?).
    #[track_caller]
    pub fn assert_every_hit_under_lock(&self) {
        let hits = self.probe_hits();
        if let Some(message) = check_hits(&hits, None) {
            self.fail(message);
        }
    }

    /// Assert that the code under test first acquired each of `keys` in this order (the
    /// first grant of each key; [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored).
    ///
    /// # Panics
    ///
    /// When a key was never acquired, or two keys were first acquired in the other order.
    #[track_caller]
    pub fn assert_acquired_in_order(&self, keys: &[&str]) {
        let message = {
            let log = self.state().lock();
            let first = |key: &str| {
                log.records
                    .iter()
                    .filter(|r| !r.elsewhere && r.matches(key))
                    .min_by_key(|r| r.start)
            };
            let mut previous: Option<(&str, &Record)> = None;
            let mut problem = None;
            for key in keys {
                let Some(r) = first(key) else {
                    problem = Some(format!(
                        "assert_acquired_in_order: `{key}` was never acquired (expected order: {keys:?})"
                    ));
                    break;
                };
                if let Some((prev_key, prev)) = previous
                    && r.start < prev.start
                {
                    problem = Some(format!(
                        "assert_acquired_in_order: `{key}` was first acquired before \
                             `{prev_key}` (expected order: {keys:?}): {} came before {}",
                        r.describe(log.origin),
                        prev.describe(log.origin)
                    ));
                    break;
                }
                previous = Some((key, r));
            }
            problem
        };
        if let Some(message) = message {
            self.fail(message);
        }
    }
}
