//! The JSON form of a [`SimReport`], through `serde`: [`SimReport`] serializes as a flat
//! object (the [`ReportJson`] view), and [`SimReport::to_json`] writes it on one line.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::report::{LatencySummary, SimReport};
use super::scenario::Scenario;
use super::util::micros;

/// A report as its JSON object shows it: the configuration (durations in milliseconds, hold
/// times in microseconds), every figure, the latencies in microseconds, the counters as an
/// object, and `passed`.
#[derive(Serialize)]
struct ReportJson<'a> {
    scenario: Scenario,
    backend: &'a str,
    locking: bool,
    workers: usize,
    keys: usize,
    services: usize,
    duration_ms: Option<u64>,
    ops_per_worker: Option<u64>,
    hold_min_us: u64,
    hold_max_us: u64,
    ttl_ms: u64,
    wait_timeout_ms: u64,
    seed: u64,
    stock: u64,
    fault_interval_ms: u64,
    ops: u64,
    acquired: u64,
    timeouts: u64,
    errors: u64,
    violations: u64,
    fence_regressions: u64,
    max_concurrent_per_key: u64,
    elapsed_ms: f64,
    /// `null` when it is not a finite number.
    ops_per_sec: Option<f64>,
    wait_us: LatencySummary,
    handoff_us: LatencySummary,
    #[serde(serialize_with = "counters_as_object")]
    counters: &'a [(&'static str, u64)],
    violation_details: &'a [String],
    problems: &'a [String],
    passed: bool,
}

impl<'a> From<&'a SimReport> for ReportJson<'a> {
    fn from(r: &'a SimReport) -> Self {
        let c = &r.config;
        ReportJson {
            scenario: r.scenario,
            backend: r.backend,
            locking: r.locking,
            workers: c.workers,
            keys: c.keys,
            services: c.effective_services(),
            duration_ms: c.duration.map(millis),
            ops_per_worker: c.ops_per_worker,
            hold_min_us: micros(c.hold_min),
            hold_max_us: micros(c.hold_max),
            ttl_ms: millis(c.ttl),
            wait_timeout_ms: millis(c.wait_timeout),
            seed: c.seed,
            stock: c.stock,
            fault_interval_ms: millis(c.fault_interval),
            ops: r.ops,
            acquired: r.acquired,
            timeouts: r.timeouts,
            errors: r.errors,
            violations: r.violations,
            fence_regressions: r.fence_regressions,
            max_concurrent_per_key: r.max_concurrent_per_key,
            elapsed_ms: three_decimals(r.elapsed.as_secs_f64() * 1000.0),
            ops_per_sec: r
                .ops_per_sec
                .is_finite()
                .then(|| three_decimals(r.ops_per_sec)),
            wait_us: r.wait,
            handoff_us: r.handoff,
            counters: &r.counters,
            violation_details: &r.violation_details,
            problems: &r.problems,
            passed: r.passed(),
        }
    }
}

/// The scenario counters, in their order, as one JSON object.
fn counters_as_object<S: Serializer>(
    counters: &&[(&'static str, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(counters.iter().map(|(name, value)| (*name, *value)))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn three_decimals(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The JSON object described at [`SimReport::to_json`].
impl Serialize for SimReport {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ReportJson::from(self).serialize(serializer)
    }
}

impl SimReport {
    /// The whole report as one line of JSON (an object): `scenario`, `backend`, `locking`;
    /// the configuration (`workers`, `keys`, `services`, `duration_ms`, `ops_per_worker`,
    /// `hold_min_us`, `hold_max_us`, `ttl_ms`, `wait_timeout_ms`, `seed`, `stock`,
    /// `fault_interval_ms`); every figure (`ops`, `acquired`, `timeouts`, `errors`,
    /// `violations`, `fence_regressions`, `max_concurrent_per_key`, `elapsed_ms`,
    /// `ops_per_sec`); the latencies `wait_us` and `handoff_us` (objects of
    /// [`LatencySummary`] fields, in microseconds); `counters` (an object); the
    /// `violation_details` and `problems` (arrays of strings); and `passed`. `ops_per_sec` is
    /// `null` if it is not a finite number. The same object is what [`SimReport`]'s
    /// `Serialize` implementation produces.
    pub fn to_json(&self) -> String {
        match serde_json::to_string(self) {
            Ok(json) => json,
            // Unreachable (every key is a string, every value serializable); still JSON.
            Err(e) => serde_json::json!({ "error": e.to_string() }).to_string(),
        }
    }
}
