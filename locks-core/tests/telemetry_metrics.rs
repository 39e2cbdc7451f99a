//! Every metric of `locks_core::metrics_labels` is recorded where it should be, with bounded
//! labels: asserted through `metrics-util`'s recording `DebuggingRecorder`, installed as the
//! thread's local recorder (the tests run on one thread, with tokio's paused clock).

use std::collections::HashMap;
use std::time::Duration;

use locks_core::metrics_labels::{self as m, ALL};
use locks_core::{AcquireOptions, LockError, LockService};
use locks_memory::MemoryBackend;
use locks_testkit::faulty::FaultyBackend;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

/// A series: metric name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Everything recorded so far. The recorder's snapshot resets counters and gauges, so totals
/// are accumulated here: counter and gauge values are summed, histogram samples appended.
struct Recorded {
    snapshotter: Snapshotter,
    counters: HashMap<Series, u64>,
    gauges: HashMap<Series, f64>,
    histograms: HashMap<Series, Vec<f64>>,
}

fn series(key: &CompositeKey) -> Series {
    let mut labels: Vec<(String, String)> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    (key.key().name().to_owned(), labels)
}

impl Recorded {
    fn new(snapshotter: Snapshotter) -> Self {
        Recorded {
            snapshotter,
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn take(&mut self) -> &mut Self {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let s = series(&key);
            match (key.kind(), value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    *self.counters.entry(s).or_default() += n
                }
                (MetricKind::Gauge, DebugValue::Gauge(g)) => {
                    *self.gauges.entry(s).or_default() += g.into_inner()
                }
                (MetricKind::Histogram, DebugValue::Histogram(v)) => self
                    .histograms
                    .entry(s)
                    .or_default()
                    .extend(v.into_iter().map(|x| x.into_inner())),
                other => panic!("unexpected metric {other:?}"),
            }
        }
        self
    }

    /// Whether `labels` are all among the series' labels.
    fn matches(s: &Series, name: &str, labels: &[(&str, &str)]) -> bool {
        s.0 == name
            && labels
                .iter()
                .all(|(k, v)| s.1.iter().any(|(sk, sv)| sk == k && sv == v))
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.take();
        self.counters
            .iter()
            .filter(|(s, _)| Self::matches(s, name, labels))
            .map(|(_, n)| n)
            .sum()
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.take();
        self.gauges
            .iter()
            .filter(|(s, _)| Self::matches(s, name, labels))
            .map(|(_, g)| g)
            .sum()
    }

    fn samples(&mut self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.take();
        self.histograms
            .iter()
            .filter(|(s, _)| Self::matches(s, name, labels))
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    fn all_series(&mut self) -> Vec<Series> {
        self.take();
        self.counters
            .keys()
            .chain(self.gauges.keys())
            .chain(self.histograms.keys())
            .cloned()
            .collect()
    }
}

fn record() -> (DebuggingRecorder, Recorded) {
    let recorder = DebuggingRecorder::new();
    let recorded = Recorded::new(recorder.snapshotter());
    (recorder, recorded)
}

fn service(faulty: &FaultyBackend) -> LockService {
    LockService::builder(faulty.clone())
        .default_ttl(Duration::from_secs(10))
        .build()
        .expect("service")
}

const MEMORY: (&str, &str) = ("backend", "memory");

/// Acquire outcomes, wait and hand-off latency, the waiters and held gauges, hold time.
#[tokio::test(start_paused = true)]
async fn acquire_wait_handoff_waiters_held_and_hold_time_are_recorded() {
    let (recorder, mut rec) = record();
    let _local = metrics::set_default_local_recorder(&recorder);
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);

    let guard = locks.acquire("payment:1").await.expect("acquire");
    assert_eq!(
        rec.counter(m::ACQUIRE_TOTAL, &[MEMORY, ("result", "acquired")]),
        1
    );
    assert_eq!(rec.samples(m::ACQUIRE_WAIT_SECONDS, &[MEMORY]), vec![0.0]);
    assert_eq!(rec.gauge(m::HELD, &[MEMORY]), 1.0);
    assert_eq!(
        rec.gauge(m::WAITERS, &[MEMORY]),
        0.0,
        "an uncontended acquire never waits"
    );

    let err = locks.try_acquire("payment:1").await;
    assert!(matches!(err, Err(LockError::Contended { .. })), "{err:?}");
    assert_eq!(rec.counter(m::ACQUIRE_TOTAL, &[("result", "contended")]), 1);

    faulty.fail_next(1);
    let err = locks.try_acquire("payment:2").await;
    assert!(matches!(err, Err(LockError::Backend { .. })), "{err:?}");
    assert_eq!(rec.counter(m::ACQUIRE_TOTAL, &[("result", "error")]), 1);

    let opts = AcquireOptions::new().wait_timeout(Duration::from_millis(300));
    let err = locks.acquire_opts("payment:1", opts).await;
    assert!(
        matches!(err, Err(LockError::AcquireTimeout { .. })),
        "{err:?}"
    );
    assert_eq!(rec.counter(m::ACQUIRE_TOTAL, &[("result", "timeout")]), 1);
    assert_eq!(
        rec.gauge(m::WAITERS, &[MEMORY]),
        0.0,
        "a timed-out waiter is no longer counted"
    );

    // Two waiters: one talks to the store, one waits in the local line. Both count.
    let waiter = |locks: LockService| async move {
        let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(60));
        let g = locks.acquire_opts("payment:1", opts).await.expect("waiter");
        tokio::time::sleep(Duration::from_millis(500)).await;
        g.release().await.expect("release");
    };
    let first = tokio::spawn(waiter(locks.clone()));
    let second = tokio::spawn(waiter(locks.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.gauge(m::WAITERS, &[MEMORY]), 2.0);

    tokio::time::sleep(Duration::from_secs(1)).await;
    guard.release().await.expect("release");
    first.await.expect("first");
    second.await.expect("second");
    assert_eq!(rec.gauge(m::WAITERS, &[MEMORY]), 0.0);
    assert_eq!(rec.gauge(m::HELD, &[MEMORY]), 0.0);
    // The first waiter was woken by the release notification: one hand-off, with no time
    // passing on the paused clock between the wake-up and the lease.
    let handoffs = rec.samples(m::HANDOFF_SECONDS, &[MEMORY]);
    assert!(!handoffs.is_empty(), "no hand-off recorded");
    assert!(handoffs.iter().all(|&s| s < 0.001), "{handoffs:?}");
    // The first acquire did not wait; the waiters waited for the release (1.1 s), the second
    // also for the first waiter's hold (0.5 s more).
    let mut waits = rec.samples(m::ACQUIRE_WAIT_SECONDS, &[MEMORY]);
    waits.sort_by(f64::total_cmp);
    assert_eq!(waits.len(), 3, "{waits:?}");
    assert!(
        waits[0] == 0.0 && (waits[1] - 1.1).abs() < 0.01 && (waits[2] - 1.6).abs() < 0.01,
        "{waits:?}"
    );
    // Held 1.1 s (the first guard) and 0.5 s (each waiter).
    let mut holds = rec.samples(m::HOLD_SECONDS, &[MEMORY]);
    holds.sort_by(f64::total_cmp);
    assert_eq!(holds.len(), 3, "{holds:?}");
    assert!(
        (holds[0] - 0.5).abs() < 0.01 && holds[2] >= 1.1,
        "{holds:?}"
    );
    locks.shutdown().await;
}

/// Renewals by result, lost leases by reason, failed releases by result.
#[tokio::test(start_paused = true)]
async fn renewals_losses_and_failed_releases_are_recorded() {
    let (recorder, mut rec) = record();
    let _local = metrics::set_default_local_recorder(&recorder);
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);

    let guard = locks.acquire("job:1").await.expect("acquire");
    tokio::time::sleep(Duration::from_millis(5_100)).await;
    assert_eq!(rec.counter(m::RENEW_TOTAL, &[MEMORY, ("result", "ok")]), 1);

    faulty.fail_next(1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rec.counter(m::RENEW_TOTAL, &[("result", "error")]), 1);

    assert!(locks.force_release("job:1").await.expect("force"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rec.counter(m::RENEW_TOTAL, &[("result", "not_owner")]), 1);
    assert_eq!(
        rec.counter(m::LOST_TOTAL, &[MEMORY, ("reason", "not_owner")]),
        1
    );
    let err = guard.release().await;
    assert!(matches!(err, Err(LockError::NotOwner { .. })), "{err:?}");
    assert_eq!(
        rec.counter(m::RELEASE_FAILED_TOTAL, &[MEMORY, ("result", "not_owner")]),
        1
    );

    let guard = locks.acquire("job:2").await.expect("acquire");
    faulty.fail_next(1);
    let err = guard.release().await;
    assert!(matches!(err, Err(LockError::Backend { .. })), "{err:?}");
    assert_eq!(
        rec.counter(m::RELEASE_FAILED_TOTAL, &[("result", "error")]),
        1
    );

    // A partitioned holder loses its lease at its deadline.
    let guard = locks.acquire("job:3").await.expect("acquire");
    faulty.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(rec.counter(m::LOST_TOTAL, &[("reason", "deadline")]), 1);
    faulty.set_unavailable(false);
    drop(guard);
    locks.shutdown().await;
}

/// No lock name in any label by default; with a classifier, `key_class` is the pattern (or
/// `other`), never the name.
#[tokio::test(start_paused = true)]
async fn labels_are_bounded_and_the_key_classifier_is_opt_in() {
    let (recorder, mut rec) = record();
    let _local = metrics::set_default_local_recorder(&recorder);
    let plain = LockService::new(MemoryBackend::new()).expect("service");
    for name in ["payment:1", "payment:2", "inventory:9"] {
        plain
            .acquire(name)
            .await
            .expect("acquire")
            .release()
            .await
            .expect("release");
    }
    let series = rec.all_series();
    assert!(!series.is_empty());
    for (name, labels) in &series {
        for (k, v) in labels {
            assert!(
                ["backend", "result", "reason"].contains(&k.as_str()),
                "{name}: unexpected label {k}"
            );
            assert!(!v.contains(':'), "{name}: a lock name in label {k}={v}");
        }
    }
    plain.shutdown().await;

    let classified = LockService::builder(MemoryBackend::new())
        .metric_key_patterns(["payment:*"])
        .build()
        .expect("service");
    for name in ["payment:1", "payment:2", "inventory:9"] {
        let g = classified.acquire(name).await.expect("acquire");
        g.release().await.expect("release");
    }
    let acquired = |rec: &mut Recorded, class| {
        rec.counter(
            m::ACQUIRE_TOTAL,
            &[("key_class", class), ("result", "acquired")],
        )
    };
    assert_eq!(acquired(&mut rec, "payment:*"), 2);
    assert_eq!(acquired(&mut rec, "other"), 1);
    assert_eq!(
        rec.samples(m::HOLD_SECONDS, &[("key_class", "payment:*")])
            .len(),
        2
    );
    let classes: Vec<String> = rec
        .all_series()
        .into_iter()
        .flat_map(|(_, labels)| labels)
        .filter(|(k, _)| k == "key_class")
        .map(|(_, v)| v)
        .collect();
    assert!(
        classes.iter().all(|c| c == "payment:*" || c == "other"),
        "{classes:?}"
    );

    let by_prefix = LockService::builder(MemoryBackend::new())
        .metric_key_class(|name| name.split_once(':').map(|(class, _)| class.to_owned()))
        .build()
        .expect("service");
    by_prefix
        .acquire("inventory:3")
        .await
        .expect("acquire")
        .release()
        .await
        .expect("release");
    assert_eq!(acquired(&mut rec, "inventory"), 1);
    classified.shutdown().await;
    by_prefix.shutdown().await;
}

/// The list of names in the docs is the list recorded: every one of them shows up in the
/// scenarios above (run here together, against one recorder).
#[tokio::test(start_paused = true)]
async fn every_documented_metric_is_recorded() {
    let (recorder, mut rec) = record();
    let _local = metrics::set_default_local_recorder(&recorder);
    let faulty = FaultyBackend::new(MemoryBackend::new());
    let locks = service(&faulty);
    let guard = locks.acquire("k").await.expect("acquire");
    let waiter = tokio::spawn({
        let locks = locks.clone();
        async move { locks.acquire("k").await.expect("waiter").release().await }
    });
    tokio::time::sleep(Duration::from_millis(5_100)).await; // one renewal
    guard.release().await.expect("release");
    waiter.await.expect("task").expect("release");
    let guard = locks.acquire("k").await.expect("acquire");
    locks.force_release("k").await.expect("force");
    tokio::time::sleep(Duration::from_secs(6)).await; // renewal: not owner, lost
    let _ = guard.release().await; // a failed release
    let names: Vec<String> = rec.all_series().into_iter().map(|(n, _)| n).collect();
    for name in ALL {
        assert!(
            names.iter().any(|n| n == name),
            "{name} never recorded: {names:?}"
        );
    }
    locks.shutdown().await;
}
