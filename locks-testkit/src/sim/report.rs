//! [`SimReport`]: what a run measured and what the checkers saw, with latency percentiles and
//! the text table for humans (the JSON form is in `json.rs`).

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::config::SimConfig;
use super::scenario::Scenario;

/// Percentiles of a latency distribution, in microseconds (hdrhistogram, 3 significant
/// digits; values above one hour count as one hour). All zero when nothing was recorded.
///
/// Serialized (JSON) as an object with the field names below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// How many values were recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value recorded.
    pub max: u64,
}

impl LatencySummary {
    pub(super) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// What a run measured and what the invariant checkers saw.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// The scenario that ran.
    pub scenario: Scenario,
    /// The configuration it ran with.
    pub config: SimConfig,
    /// The backend's name ([`LockBackend::name`](locks_core::LockBackend::name)).
    pub backend: &'static str,
    /// `false` when the run skipped locking ([`SimConfig::unsafe_no_lock`]).
    pub locking: bool,
    /// The operations [`ops_per_sec`](SimReport::ops_per_sec) counts: critical sections
    /// entered, or in `leader-failover` the leaders' actions.
    pub ops: u64,
    /// Critical sections entered: locks acquired (and held for the chosen time), elections
    /// won, or with `unsafe_no_lock` sections entered without a lock.
    pub acquired: u64,
    /// Acquires that ran out of `wait_timeout` (`LockError::AcquireTimeout`).
    pub timeouts: u64,
    /// Other acquire errors, releases that failed unexpectedly (for example `NotOwner`: the
    /// lease ran out during the critical section), and worker tasks that panicked.
    pub errors: u64,
    /// Safety violations: the scenario checker's count (see [`Scenario`]) plus every fence
    /// regression (also counted in [`fence_regressions`](SimReport::fence_regressions)).
    pub violations: u64,
    /// The most holders any key had at the same instant (1 for a correct backend that granted
    /// anything, 0 if nothing was acquired). Only `mutex` counts more than one as a violation:
    /// in `gc-pause` a paused holder overlapping the next one is the point.
    pub max_concurrent_per_key: u64,
    /// Tokio time from the first worker's start to the last worker's end.
    pub elapsed: Duration,
    /// `ops / elapsed`, per second (0 when no time passed, as under paused time with no
    /// hold).
    pub ops_per_sec: f64,
    /// Time from calling acquire to getting the guard, for acquires that succeeded (in
    /// `leader-failover`: from starting to campaign to being elected).
    pub wait: LatencySummary,
    /// Time from a holder leaving a key's critical section (just before its release) to the
    /// next holder entering it, when that holder is another worker.
    pub handoff: LatencySummary,
    /// Acquires whose fence was not strictly larger than the last fence seen on that key.
    pub fence_regressions: u64,
    /// Scenario-specific figures, by name (`charges`, `sold`, `stale_rejected`, ...).
    pub counters: Vec<(&'static str, u64)>,
    /// One human-readable line per kind of violation seen (empty when there was none).
    pub violation_details: Vec<String>,
    /// Why the scenario itself failed without a safety violation: it did not finish its work
    /// (stock left, orders never charged, jobs never run), or it never exercised what it is
    /// about (no stale write in `gc-pause`, no failover in `leader-failover`).
    pub problems: Vec<String>,
}

impl SimReport {
    /// `true` when the checkers saw no violation (no fence regression, nothing the scenario
    /// forbids) and the scenario did its work. Timeouts and errors alone do not fail a run:
    /// they are liveness, not safety.
    pub fn passed(&self) -> bool {
        self.violations == 0 && self.fence_regressions == 0 && self.problems.is_empty()
    }

    /// A scenario-specific counter by name.
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }

    /// The lines a human should see when the run failed: `VIOLATION: ...` for each kind of
    /// violation, `FAILED: ...` for each problem. Empty when the run passed.
    pub fn violation_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .violation_details
            .iter()
            .map(|d| format!("VIOLATION ({}): {d}", self.scenario))
            .collect();
        if lines.is_empty() && (self.violations > 0 || self.fence_regressions > 0) {
            lines.push(format!(
                "VIOLATION ({}): {} violation(s)",
                self.scenario, self.violations
            ));
        }
        lines.extend(
            self.problems
                .iter()
                .map(|p| format!("FAILED ({}): {p}", self.scenario)),
        );
        lines
    }

    /// An aligned two-column table for humans.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = vec![
            ("scenario".into(), self.scenario.name().into()),
            ("backend".into(), self.backend.into()),
            (
                "locking".into(),
                if self.locking {
                    "on".into()
                } else {
                    "OFF (unsafe)".into()
                },
            ),
            ("operations/s".into(), format!("{:.1}", self.ops_per_sec)),
            ("operations".into(), self.ops.to_string()),
            ("acquired".into(), self.acquired.to_string()),
            ("timeouts".into(), self.timeouts.to_string()),
            ("errors".into(), self.errors.to_string()),
            ("wait p50 (µs)".into(), self.wait.p50.to_string()),
            ("wait p90 (µs)".into(), self.wait.p90.to_string()),
            ("wait p99 (µs)".into(), self.wait.p99.to_string()),
            ("wait max (µs)".into(), self.wait.max.to_string()),
            ("hand-off p50 (µs)".into(), self.handoff.p50.to_string()),
            ("hand-off p99 (µs)".into(), self.handoff.p99.to_string()),
            (
                "max holders per key".into(),
                self.max_concurrent_per_key.to_string(),
            ),
        ];
        rows.extend(
            self.counters
                .iter()
                .map(|(name, value)| (name.replace('_', " "), value.to_string())),
        );
        rows.extend([
            ("violations".into(), self.violations.to_string()),
            (
                "fence regressions".into(),
                self.fence_regressions.to_string(),
            ),
            (
                "elapsed".into(),
                format!("{:.3} s", self.elapsed.as_secs_f64()),
            ),
            (
                "result".into(),
                if self.passed() { "PASS" } else { "FAIL" }.into(),
            ),
        ]);
        let label_width = column_width("metric", rows.iter().map(|(l, _)| l));
        let value_width = column_width("value", rows.iter().map(|(_, v)| v));
        let mut out = String::new();
        let _ = writeln!(out, "{:<label_width$}  {:>value_width$}", "metric", "value");
        let _ = writeln!(
            out,
            "{}  {}",
            "-".repeat(label_width),
            "-".repeat(value_width)
        );
        for (label, value) in &rows {
            // `{:<w$}` pads by chars, so "µs" lines stay aligned.
            let _ = writeln!(out, "{label:<label_width$}  {value:>value_width$}");
        }
        out
    }
}

/// The width in chars of a column with `header` over `cells`.
fn column_width<'a>(header: &str, cells: impl Iterator<Item = &'a String>) -> usize {
    cells
        .map(|cell| cell.chars().count())
        .fold(header.chars().count(), usize::max)
}
