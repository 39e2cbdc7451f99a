//! The metrics the service records, their labels, and the opt-in key classifier.
//!
//! Every metric goes through the [`metrics`] facade, so any recorder works (Prometheus,
//! StatsD, ...); nothing is recorded until the application installs one. Labels are bounded:
//! `backend` (the backend's [`name`](crate::LockBackend::name)), `result` or `reason` (a fixed
//! set each, listed below), and, only when the service was built with a key classifier
//! ([`LockServiceBuilder::metric_key_class`](crate::LockServiceBuilder::metric_key_class) or
//! [`metric_key_patterns`](crate::LockServiceBuilder::metric_key_patterns)), `key_class`.
//! Lock names never become labels by default: one series per lock name would grow without
//! bound.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | [`ACQUIRE_TOTAL`] | counter | `result` = `acquired` \| `contended` \| `timeout` \| `error` | acquire calls by outcome |
//! | [`ACQUIRE_WAIT_SECONDS`] | histogram | | from the call to the lease, for acquires that got one |
//! | [`HANDOFF_SECONDS`] | histogram | | from a release notification to the woken waiter holding the lease |
//! | [`WAITERS`] | gauge | | callers waiting in `acquire` now |
//! | [`HELD`] | gauge | | leases held now |
//! | [`HOLD_SECONDS`] | histogram | | how long leases were held |
//! | [`RENEW_TOTAL`] | counter | `result` = `ok` \| `not_owner` \| `error` | background renewals |
//! | [`LOST_TOTAL`] | counter | `reason` = [`LostReason::label`](crate::LostReason::label) | leases lost while held |
//! | [`RELEASE_FAILED_TOTAL`] | counter | `result` = `not_owner` \| `error` | releases the store refused or did not confirm |
//!
//! Every metric also has `backend`, and `key_class` when a classifier is set.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use metrics::{Key, Label, Level, Metadata, SharedString};

/// Counter: acquire calls by `result` (`acquired`, `contended`, `timeout`, `error`).
pub const ACQUIRE_TOTAL: &str = "locks_acquire_total";
/// Histogram (seconds): from the acquire call to the lease, for acquires that got one.
pub const ACQUIRE_WAIT_SECONDS: &str = "locks_acquire_wait_seconds";
/// Histogram (seconds): from the release notification that woke a waiter to that waiter
/// holding the lease (the hand-off latency seen by this service).
pub const HANDOFF_SECONDS: &str = "locks_handoff_seconds";
/// Gauge: callers of this process waiting in `acquire` (a waiting acquire, from its call to
/// its end).
pub const WAITERS: &str = "locks_waiters";
/// Gauge: leases held by this process.
pub const HELD: &str = "locks_held";
/// Histogram (seconds): how long each lease was held, from the acquire request to its end.
pub const HOLD_SECONDS: &str = "locks_hold_seconds";
/// Counter: background renewals by `result` (`ok`, `not_owner`, `error`).
pub const RENEW_TOTAL: &str = "locks_renew_total";
/// Counter: leases lost while held, by `reason` (not counted: released, abandoned).
pub const LOST_TOTAL: &str = "locks_lost_total";
/// Counter: releases that failed, by `result`: `not_owner` (the lease had expired or been
/// taken) or `error` (the store did not confirm; the lease ends by its ttl).
pub const RELEASE_FAILED_TOTAL: &str = "locks_release_failed_total";

/// Every metric name, for a test or a dashboard generator.
pub const ALL: [&str; 9] = [
    ACQUIRE_TOTAL,
    ACQUIRE_WAIT_SECONDS,
    HANDOFF_SECONDS,
    WAITERS,
    HELD,
    HOLD_SECONDS,
    RENEW_TOTAL,
    LOST_TOTAL,
    RELEASE_FAILED_TOTAL,
];

/// Describe every metric (unit and help text) to the installed recorder, for exporters that
/// print them (Prometheus `# HELP`). Optional: recording works without it. Call it once, after
/// installing the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        ACQUIRE_TOTAL,
        Unit::Count,
        "Acquire calls by result: acquired, contended, timeout, error."
    );
    describe_histogram!(
        ACQUIRE_WAIT_SECONDS,
        Unit::Seconds,
        "Time from the acquire call to the lease, for acquires that got one."
    );
    describe_histogram!(
        HANDOFF_SECONDS,
        Unit::Seconds,
        "Time from the release notification that woke a waiter to that waiter holding the lease."
    );
    describe_gauge!(
        WAITERS,
        Unit::Count,
        "Callers of this process waiting in acquire."
    );
    describe_gauge!(HELD, Unit::Count, "Leases held by this process.");
    describe_histogram!(HOLD_SECONDS, Unit::Seconds, "How long leases were held.");
    describe_counter!(
        RENEW_TOTAL,
        Unit::Count,
        "Background renewals by result: ok, not_owner, error."
    );
    describe_counter!(
        LOST_TOTAL,
        Unit::Count,
        "Leases lost while held, by reason."
    );
    describe_counter!(
        RELEASE_FAILED_TOTAL,
        Unit::Count,
        "Releases that failed, by result: not_owner, error."
    );
}

/// The `key_class` of a key no pattern or classifier matched.
pub const OTHER_CLASS: &str = "other";

/// Maps a lock name (without prefix) to a small, bounded set of classes used as the
/// `key_class` metric label. Opt-in: see
/// [`LockServiceBuilder::metric_key_class`](crate::LockServiceBuilder::metric_key_class).
///
/// ```
/// use locks_core::metrics_labels::KeyClassifier;
///
/// let classes = KeyClassifier::patterns(["payment:*", "job:nightly-*"]);
/// assert_eq!(&*classes.classify("payment:42"), "payment:*");
/// assert_eq!(&*classes.classify("job:nightly-report"), "job:nightly-*");
/// assert_eq!(&*classes.classify("inventory:7"), "other");
/// ```
#[derive(Clone)]
pub struct KeyClassifier {
    classify: Arc<ClassifyFn>,
}

/// A lock name's class, if it has one.
type ClassifyFn = dyn Fn(&str) -> Option<SharedString> + Send + Sync;

impl fmt::Debug for KeyClassifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyClassifier")
    }
}

impl KeyClassifier {
    /// Classes from a function of the lock name; `None` is [`OTHER_CLASS`]. The function must
    /// return few distinct values (never the name itself): each one is a series per metric.
    pub fn new<F, S>(classify: F) -> Self
    where
        F: Fn(&str) -> Option<S> + Send + Sync + 'static,
        S: Into<SharedString>,
    {
        KeyClassifier {
            classify: Arc::new(move |name| classify(name).map(Into::into)),
        }
    }

    /// Classes from glob patterns, first match wins, the pattern itself being the class:
    /// `*` matches any run of characters, every other character itself.
    pub fn patterns<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<SharedString> = patterns
            .into_iter()
            .map(|p| SharedString::from(p.into()))
            .collect();
        KeyClassifier {
            classify: Arc::new(move |name| patterns.iter().find(|p| glob_match(p, name)).cloned()),
        }
    }

    /// The class of `name` ([`OTHER_CLASS`] when nothing matched).
    pub fn classify(&self, name: &str) -> SharedString {
        (self.classify)(name).unwrap_or(SharedString::const_str(OTHER_CLASS))
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: an exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The labels every metric of one resource carries: `backend`, and `key_class` if classified.
///
/// Label sets are interned: each distinct set is built once and kept for the life of the
/// process (a recorder keeps one series per set anyway, and sets are bounded: see the module
/// documentation), so recording a metric allocates nothing. The sets with one of the
/// [`EXTRAS`] are found per resource, without the interning lock.
#[derive(Debug, Clone)]
pub(crate) struct Labels {
    base: &'static [Label],
    extended: Arc<[OnceLock<&'static [Label]>; EXTRAS.len()]>,
}

/// Every extra label the service records (`result` of acquires, renewals and failed
/// releases; `reason` of lost leases).
const EXTRAS: [(&str, &str); 12] = [
    ("result", "acquired"),
    ("result", "contended"),
    ("result", "timeout"),
    ("result", "error"),
    ("result", "ok"),
    ("result", "not_owner"),
    ("reason", "not_owner"),
    ("reason", "deadline"),
    ("reason", "max_hold"),
    ("reason", "released"),
    ("reason", "shutdown"),
    ("reason", "abandoned"),
];

/// The metadata of every metric the service records.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Every label set in use.
#[derive(Default)]
struct Interned {
    sets: HashSet<&'static [Label]>,
}

fn interned() -> MutexGuard<'static, Interned> {
    static INTERNED: OnceLock<Mutex<Interned>> = OnceLock::new();
    INTERNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

impl Interned {
    fn intern(&mut self, labels: Vec<Label>) -> &'static [Label] {
        if let Some(set) = self.sets.get(labels.as_slice()) {
            return set;
        }
        let set: &'static [Label] = Box::leak(labels.into_boxed_slice());
        self.sets.insert(set);
        set
    }
}

impl Labels {
    pub(crate) fn new(backend: &'static str, class: Option<SharedString>) -> Self {
        let mut base = vec![Label::from_static_parts("backend", backend)];
        if let Some(class) = class {
            base.push(Label::new("key_class", class));
        }
        Labels {
            base: interned().intern(base),
            extended: Arc::new(std::array::from_fn(|_| OnceLock::new())),
        }
    }

    fn with(&self, extra: Option<(&'static str, &'static str)>) -> &'static [Label] {
        let Some((k, v)) = extra else {
            return self.base;
        };
        let extend = || {
            let mut labels = self.base.to_vec();
            labels.push(Label::from_static_parts(k, v));
            interned().intern(labels)
        };
        match EXTRAS.iter().position(|&e| e == (k, v)) {
            Some(i) => self.extended[i].get_or_init(extend),
            None => extend(),
        }
    }

    pub(crate) fn counter(&self, name: &'static str, extra: Option<(&'static str, &'static str)>) {
        let key = Key::from_static_parts(name, self.with(extra));
        metrics::with_recorder(|r| r.register_counter(&key, &METADATA)).increment(1);
    }

    pub(crate) fn gauge(&self, name: &'static str, delta: f64) {
        let key = Key::from_static_parts(name, self.base);
        metrics::with_recorder(|r| r.register_gauge(&key, &METADATA)).increment(delta);
    }

    pub(crate) fn seconds(&self, name: &'static str, value: std::time::Duration) {
        let key = Key::from_static_parts(name, self.base);
        metrics::with_recorder(|r| r.register_histogram(&key, &METADATA))
            .record(value.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("payment:*", "payment:42"));
        assert!(glob_match("payment:*", "payment:"));
        assert!(!glob_match("payment:*", "payments:1"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*:42", "order:42"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("ab*ba", "aba"));
    }
}
