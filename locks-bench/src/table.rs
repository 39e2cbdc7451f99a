//! The result table: one row per figure, printed as Markdown.

use std::fmt::Write as _;
use std::time::Duration;

/// Whether a row meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target is met.
    Pass,
    /// The target is missed.
    Fail,
    /// The row has no target (a reference figure or extra information).
    Info,
}

impl Verdict {
    /// `Pass` when `ok`, else `Fail`.
    pub fn of(ok: bool) -> Self {
        if ok { Verdict::Pass } else { Verdict::Fail }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "**FAIL**",
            Verdict::Info => "",
        }
    }
}

/// One figure: what the library did, what it is compared with, and the target.
#[derive(Debug, Clone)]
pub struct Row {
    /// What is measured (stable text: the smoke test looks for it).
    pub figure: String,
    /// `multi-thread`, `current-thread`, or `-`.
    pub runtime: &'static str,
    /// The library's figure.
    pub locks: String,
    /// The reference it is compared with, named.
    pub reference: String,
    /// locks / reference, in the unit the target uses.
    pub ratio: String,
    /// The target, or empty.
    pub target: String,
    /// Whether the target is met.
    pub verdict: Verdict,
}

/// All rows of one run.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Add a row (and echo it to stderr, so a long run shows progress).
    pub fn push(&mut self, row: Row) {
        eprintln!(
            "  {} [{}]: {} | {} | {} {}",
            row.figure,
            row.runtime,
            row.locks,
            row.reference,
            row.ratio,
            row.verdict.label()
        );
        self.rows.push(row);
    }

    /// The rows that missed their target.
    pub fn failures(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .count()
    }

    /// The table as Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("| figure | runtime | locks | reference | ratio | target | result |\n");
        out.push_str("|---|---|---:|---|---:|---|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.figure,
                r.runtime,
                r.locks,
                r.reference,
                r.ratio,
                r.target,
                r.verdict.label()
            );
        }
        out
    }
}

/// The median of `v` (NaN when empty): what a figure reports over its interleaved rounds.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `12345.6` as `12,346`.
pub fn grouped(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate as `12,345/s`.
pub fn rate(per_sec: f64) -> String {
    format!("{}/s", grouped(per_sec))
}

/// A duration in µs (or ms above 10 ms).
pub fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else if us >= 100.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

/// A duration in ns.
pub fn nanos(d: Duration) -> String {
    format!("{} ns", grouped(d.as_secs_f64() * 1e9))
}

/// A ratio as `0.93×`.
pub fn times(x: f64) -> String {
    format!("{x:.2}×")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(grouped(1_234_567.4), "1,234,567");
        assert_eq!(grouped(999.0), "999");
        assert_eq!(rate(12_345.0), "12,345/s");
        assert_eq!(micros(Duration::from_micros(42)), "42.0 µs");
        assert_eq!(micros(Duration::from_millis(12)), "12.0 ms");
        assert_eq!(times(0.934), "0.93×");
    }
}
