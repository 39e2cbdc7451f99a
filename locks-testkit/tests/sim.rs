//! The contention simulator: a correct backend passes every scenario, every scenario's checker
//! catches its incident when locking is off (or the store is broken), and the `locks-sim`
//! binary reports all of it with the right exit code and parseable JSON.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use locks_core::{LockBackend, LockError};
use locks_memory::MemoryBackend;
use locks_testkit::broken::GrantAllBackend;
use locks_testkit::redis_server::RedisServer;
use locks_testkit::sim::{self, Scenario, SimConfig, SimReport};
use serde_json::{Value, json};

async fn run_on(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> SimReport {
    sim::run(backend, cfg).await.expect("valid config")
}

async fn run_memory(cfg: &SimConfig) -> SimReport {
    run_on(Arc::new(MemoryBackend::new()), cfg).await
}

/// Each config fails validation with `LockError::InvalidOptions` naming its option.
/// `base` with `change` made: a config whose validation must name `option`.
fn refused(
    option: &'static str,
    base: SimConfig,
    change: impl FnOnce(&mut SimConfig),
) -> (&'static str, SimConfig) {
    let mut cfg = base;
    change(&mut cfg);
    (option, cfg)
}

async fn assert_invalid_options<const N: usize>(bad: [(&str, SimConfig); N]) {
    for (name, cfg) in bad {
        match sim::run(Arc::new(MemoryBackend::new()), &cfg).await {
            Err(LockError::InvalidOptions { option, .. }) => assert_eq!(option, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// A private Redis server for one test.
async fn start_redis() -> RedisServer {
    RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"))
}

/// `cfg` with every lock held for exactly `hold`.
fn holding_exactly(hold: Duration, cfg: SimConfig) -> SimConfig {
    SimConfig {
        hold_min: hold,
        hold_max: hold,
        ..cfg
    }
}

fn ops_config(workers: usize, keys: usize, ops: u64) -> SimConfig {
    SimConfig {
        workers,
        keys,
        duration: None,
        ops_per_worker: Some(ops),
        ..SimConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn memory_backend_keeps_one_holder_per_key() {
    let cfg = ops_config(16, 4, 25);
    let report = run_memory(&cfg).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.violations, 0);
    assert_eq!(report.fence_regressions, 0);
    assert_eq!(report.acquired, 16 * 25, "{}", report.table());
    assert_eq!(report.timeouts, 0);
    assert_eq!(report.errors, 0);
    assert_eq!(report.max_concurrent_per_key, 1);
    // 16 workers on 4 keys with holds up to 2 ms: somebody waited, and time passed.
    assert!(report.wait.max > 0, "{}", report.table());
    assert!(report.wait.p50 <= report.wait.p90 && report.wait.p90 <= report.wait.p99);
    assert!(report.wait.p99 <= report.wait.max);
    assert!(report.elapsed > Duration::ZERO);
    assert!(report.ops_per_sec > 0.0);
}

#[tokio::test(start_paused = true)]
async fn memory_backend_passes_with_zero_hold_and_one_key() {
    let cfg = SimConfig {
        services: 3,
        ..holding_exactly(Duration::ZERO, ops_config(8, 1, 20))
    };
    let report = run_memory(&cfg).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.acquired, 8 * 20);
}

#[tokio::test(start_paused = true)]
async fn long_waits_are_measured() {
    // One key, four workers, every hold exactly 100 ms: the last in line waits about 300 ms.
    let cfg = holding_exactly(Duration::from_millis(100), ops_config(4, 1, 2));
    let report = run_memory(&cfg).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.acquired, 8);
    assert!(report.wait.max >= 290_000, "{}", report.table());
    assert!(report.wait.max < 1_000_000, "{}", report.table());
    assert!(report.elapsed >= Duration::from_millis(800));
}

#[tokio::test(start_paused = true)]
async fn duration_limit_stops_the_run() {
    let cfg = SimConfig {
        duration: Some(Duration::from_millis(100)),
        ..SimConfig::default()
    };
    let report = run_memory(&cfg).await;
    assert!(report.passed(), "{}", report.table());
    assert!(report.acquired > 0);
    // A worker may finish the critical section it is in (at most hold_max) after the limit.
    assert!(report.elapsed >= Duration::from_millis(100));
    assert!(report.elapsed <= Duration::from_millis(100) + cfg.hold_max + Duration::from_millis(5));
}

#[tokio::test(start_paused = true)]
async fn both_limits_stop_at_the_first() {
    let cfg = SimConfig {
        duration: Some(Duration::from_secs(3600)),
        ..ops_config(4, 2, 10)
    };
    let report = run_memory(&cfg).await;
    assert_eq!(report.acquired, 40);
    assert!(report.elapsed < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn grant_all_backend_is_caught() {
    let cfg = SimConfig {
        hold_min: Duration::from_millis(1),
        ..ops_config(8, 2, 10)
    };
    let backend = Arc::new(GrantAllBackend::new());
    let report = run_on(backend.clone(), &cfg).await;
    assert!(report.violations > 0, "{}", report.table());
    assert!(report.max_concurrent_per_key > 1);
    assert!(!report.passed());
    assert!(report.table().contains("FAIL"));
    assert_eq!(report.acquired, 80);
    assert!(backend.granted() >= 80);
}

#[tokio::test(start_paused = true)]
async fn grant_all_backend_is_caught_with_zero_hold() {
    // yield_now inside the critical section makes the overlap visible without any sleep.
    let cfg = holding_exactly(Duration::ZERO, ops_config(4, 1, 5));
    let report = run_on(Arc::new(GrantAllBackend::new()), &cfg).await;
    assert!(!report.passed(), "{}", report.table());
}

#[tokio::test(start_paused = true)]
async fn bad_configs_are_typed_errors() {
    let bad = [
        refused("sim.workers", SimConfig::default(), |c| c.workers = 0),
        refused("sim.keys", SimConfig::default(), |c| c.keys = 0),
        refused("sim.duration", SimConfig::default(), |c| {
            c.duration = None;
            c.ops_per_worker = None;
        }),
        refused("sim.hold_min", SimConfig::default(), |c| {
            c.hold_min = Duration::from_millis(3)
        }),
    ];
    assert_invalid_options(bad).await;
    let zero_ttl = SimConfig {
        ttl: Duration::ZERO,
        ..SimConfig::default()
    };
    assert!(matches!(
        sim::run(Arc::new(MemoryBackend::new()), &zero_ttl).await,
        Err(LockError::InvalidTtl { .. })
    ));
}

#[test]
fn services_default_and_cap() {
    assert_eq!(SimConfig::default().services, 8);
    assert_eq!(SimConfig::default().effective_services(), 8);
    let few = SimConfig {
        workers: 3,
        ..SimConfig::default()
    };
    assert_eq!(few.effective_services(), 3);
    let auto = SimConfig {
        workers: 5,
        services: 0,
        ..SimConfig::default()
    };
    assert_eq!(auto.effective_services(), 5);
}

/// Runs `locks-sim` with `args` and checks its exit code; returns its output and the text it
/// printed (stdout, then stderr).
fn run_binary(args: &[&str], exit_code: i32) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_locks-sim"))
        .args(args)
        .output()
        .expect("run locks-sim");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(exit_code), "{text}");
    (output, text)
}

/// `double-payment` without locks: every order is charged by several instances.
const UNLOCKED_DOUBLE_PAYMENT: [&str; 7] = [
    "--scenario",
    "double-payment",
    "--unsafe-no-lock",
    "--workers",
    "3",
    "--keys",
    "10",
];

#[test]
fn binary_reports_violations_of_the_broken_backend() {
    let (_, text) = run_binary(&["--backend", "broken", "--duration", "200ms"], 1);
    assert!(text.contains("VIOLATION"), "{text}");
}

#[test]
fn binary_passes_on_the_memory_backend() {
    let (_, text) = run_binary(&["--backend", "memory", "--duration", "300ms"], 0);
    for row in [
        "operations/s",
        "acquired",
        "wait p99",
        "max holders per key",
    ] {
        assert!(text.contains(row), "missing `{row}`:\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("violations") && l.trim_end().ends_with(" 0")),
        "{text}"
    );
    assert!(!text.contains("VIOLATION"), "{text}");
}

#[test]
fn binary_rejects_bad_arguments_with_exit_code_2() {
    let (_, text) = run_binary(&["--duration", "soon"], 2);
    assert!(text.contains("soon"), "{text}");
    run_binary(&["--workers", "0", "--duration", "10ms"], 2);
}

#[test]
fn binary_json_output() {
    let (output, _) = run_binary(&["--json", "--ops-per-worker", "5", "--workers", "4"], 0);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_start().starts_with('{'), "{stdout}");
    assert!(stdout.contains("\"acquired\":20"), "{stdout}");
    let objects = json_lines(&stdout);
    assert_eq!(objects.len(), 1, "{stdout}");
    let o = &objects[0];
    assert_eq!(o["scenario"], "mutex", "{o}");
    assert_eq!(o["acquired"], 20, "{o}");
    assert_eq!(o["ops_per_worker"], 5, "{o}");
    assert!(o["duration_ms"].is_null(), "{o}");
    assert_eq!(o["passed"], true, "{o}");

    // A failed run: the violation lines are JSON strings, `passed` is false, exit code 1.
    let (output, text) = run_binary(&[&["--json"][..], &UNLOCKED_DOUBLE_PAYMENT].concat(), 1);
    let objects = json_lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(objects.len(), 1, "{text}");
    let o = &objects[0];
    assert_eq!(o["scenario"], "double-payment", "{o}");
    assert_eq!(o["locking"], false, "{o}");
    assert_eq!(o["passed"], false, "{o}");
    assert!(num(o, "violations") > 0.0, "{o}");
    let details = o["violation_details"].as_array().expect("an array");
    assert!(
        details
            .iter()
            .any(|d| d.as_str().is_some_and(|d| d.contains("duplicate charge"))),
        "{o}"
    );
}

/// The same contention scenario against a real, private Redis server: 0 violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_passes_on_redis() {
    let server = start_redis().await;
    let url = server.url();
    let (_, text) = tokio::task::spawn_blocking(move || {
        run_binary(
            &[
                "--redis",
                &url,
                "--duration",
                "1s",
                "--workers",
                "8",
                "--keys",
                "2",
            ],
            0,
        )
    })
    .await
    .expect("binary ran");
    assert!(text.contains("backend=redis"), "{text}");
    assert!(text.contains("violations"), "{text}");
    let acquired: u64 = text
        .lines()
        .find(|l| l.starts_with("acquired"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .expect("an acquired row");
    assert!(acquired > 0, "{text}");
}

/// The library entry point on Redis, many workers on one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_keeps_one_holder_per_key() {
    let server = start_redis().await;
    let backend = locks_redis::RedisBackend::connect(&server.url())
        .await
        .expect("connect");
    let cfg = SimConfig {
        duration: None,
        hold_max: Duration::from_millis(1),
        ..ops_config(12, 1, 10)
    };
    let report = sim::run(Arc::new(backend), &cfg).await.expect("run");
    assert_eq!(report.violations, 0, "{}", report.table());
    assert_eq!(report.acquired, 120, "{}", report.table());
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn counter(report: &SimReport, name: &str) -> u64 {
    report
        .counter(name)
        .unwrap_or_else(|| panic!("no counter `{name}`:\n{}", report.table()))
}

fn assert_clean(report: &SimReport) {
    assert!(
        report.passed(),
        "{}\n{:?}",
        report.table(),
        report.violation_lines()
    );
    assert_eq!(report.violations, 0, "{}", report.table());
    assert_eq!(report.fence_regressions, 0, "{}", report.table());
    assert!(report.violation_lines().is_empty());
    assert!(report.locking);
    assert!(report.acquired > 0, "{}", report.table());
    assert!(report.table().contains("PASS"));
}

/// The run failed for `problem` (a `FAILED` line), with no violation.
fn assert_failed_without_violation(report: &SimReport, problem: &str) {
    assert_eq!(report.violations, 0, "{}", report.table());
    assert!(!report.passed());
    let lines = report.violation_lines();
    assert!(lines.iter().any(|l| l.contains(problem)), "{lines:?}");
}

fn double_payment(workers: usize, orders: usize) -> SimConfig {
    SimConfig {
        workers,
        keys: orders,
        ..SimConfig::for_scenario(Scenario::DoublePayment)
    }
}

fn oversell(workers: usize, skus: usize, stock: u64) -> SimConfig {
    SimConfig {
        workers,
        keys: skus,
        stock,
        ..SimConfig::for_scenario(Scenario::Oversell)
    }
}

fn job_dedup(workers: usize, jobs: usize) -> SimConfig {
    SimConfig {
        workers,
        keys: jobs,
        ..SimConfig::for_scenario(Scenario::JobDedup)
    }
}

fn leader_failover(candidates: usize, duration: Duration) -> SimConfig {
    SimConfig {
        workers: candidates,
        duration: Some(duration),
        ..SimConfig::for_scenario(Scenario::LeaderFailover)
    }
}

fn gc_pause(workers: usize, duration: Duration) -> SimConfig {
    SimConfig {
        workers,
        duration: Some(duration),
        ..SimConfig::for_scenario(Scenario::GcPause)
    }
}

fn unlocked(cfg: SimConfig) -> SimConfig {
    SimConfig {
        unsafe_no_lock: true,
        ..cfg
    }
}

#[tokio::test(start_paused = true)]
async fn double_payment_charges_every_order_exactly_once() {
    let cfg = SimConfig {
        services: 3,
        ..double_payment(6, 40)
    };
    let report = run_memory(&cfg).await;
    assert_clean(&report);
    assert_eq!(report.scenario, Scenario::DoublePayment);
    assert_eq!(counter(&report, "orders"), 40);
    assert_eq!(counter(&report, "charges"), 40);
    assert_eq!(counter(&report, "duplicate_charges"), 0);
    assert_eq!(counter(&report, "unpaid_orders"), 0);
    // Every instance saw every order: one charged it, the five others found it paid.
    assert_eq!(counter(&report, "already_paid_skips"), 5 * 40);
    assert_eq!(report.acquired, 6 * 40);
    assert!(report.wait.max > 0, "{}", report.table());
    assert!(report.handoff.count > 0, "{}", report.table());
    assert!(report.handoff.p50 <= report.handoff.p99);
    assert!(report.ops_per_sec > 0.0);
}

#[tokio::test(start_paused = true)]
async fn oversell_sells_exactly_the_stock() {
    let report = run_memory(&oversell(8, 3, 20)).await;
    assert_clean(&report);
    assert_eq!(counter(&report, "initial_stock"), 60);
    assert_eq!(counter(&report, "sold"), 60);
    assert_eq!(counter(&report, "remaining"), 0);
    assert_eq!(counter(&report, "oversold"), 0);
    assert_eq!(counter(&report, "stock_below_zero"), 0);
    assert!(report.handoff.count > 0, "{}", report.table());
}

#[tokio::test(start_paused = true)]
async fn oversell_that_cannot_sell_out_fails() {
    // 1 ms per sale, one SKU, 500 units, 50 ms: most of the stock is left.
    let cfg = SimConfig {
        duration: Some(Duration::from_millis(50)),
        ..holding_exactly(Duration::from_millis(1), oversell(4, 1, 500))
    };
    let report = run_memory(&cfg).await;
    assert_failed_without_violation(&report, "did not sell out");
    assert!(counter(&report, "remaining") > 0);
}

#[tokio::test(start_paused = true)]
async fn job_dedup_runs_every_job_exactly_once() {
    let report = run_memory(&job_dedup(6, 60)).await;
    assert_clean(&report);
    assert_eq!(counter(&report, "jobs"), 60);
    assert_eq!(counter(&report, "runs"), 60);
    assert_eq!(counter(&report, "duplicate_runs"), 0);
    assert_eq!(counter(&report, "jobs_never_run"), 0);
    // Every instance walks the same list: some found a job in progress and skipped it.
    assert!(
        counter(&report, "skipped_in_progress") > 0,
        "{}",
        report.table()
    );
    assert_eq!(report.timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn leader_failover_keeps_one_current_leader_acting() {
    let report = run_memory(&leader_failover(3, Duration::from_secs(3))).await;
    assert_clean(&report);
    // 3 s, a fault every 400 ms (a cut-off lasts 400 ms): deploys and cut-offs both happen,
    // and a new leader is elected after each.
    assert!(counter(&report, "deploys") >= 2, "{}", report.table());
    assert!(counter(&report, "cutoffs") >= 2, "{}", report.table());
    let faults = counter(&report, "deploys") + counter(&report, "cutoffs");
    assert!(counter(&report, "elections") > faults, "{}", report.table());
    assert!(counter(&report, "actions") > 100, "{}", report.table());
    assert_eq!(counter(&report, "overlapping_actions"), 0);
    assert_eq!(counter(&report, "stale_actions"), 0);
    assert_eq!(report.ops, counter(&report, "actions"));
    assert!(report.handoff.count > 0, "{}", report.table());
    assert!(report.elapsed >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn gc_pause_stale_writes_are_rejected_by_the_fenced_store() {
    let report = run_memory(&gc_pause(3, Duration::from_secs(2))).await;
    assert_clean(&report);
    let attempts = counter(&report, "stale_attempts");
    assert!(attempts >= 5, "{}", report.table());
    assert_eq!(counter(&report, "stale_rejected"), attempts);
    assert_eq!(counter(&report, "stale_accepted"), 0);
    assert_eq!(counter(&report, "fresh_rejected"), 0);
    assert!(counter(&report, "gc_pauses") >= attempts);
    // The paused holder and the next one were both "inside" at once: that is the point.
    assert_eq!(report.max_concurrent_per_key, 2);
}

#[tokio::test(start_paused = true)]
async fn gc_pause_without_a_stale_attempt_fails() {
    // Too short for the paused holder ever to be overtaken (the pause is 150 ms).
    let cfg = SimConfig {
        duration: Some(Duration::from_millis(20)),
        ..gc_pause(2, Duration::from_millis(20))
    };
    let report = run_memory(&cfg).await;
    assert_failed_without_violation(&report, "no stale write");
    assert_eq!(counter(&report, "stale_attempts"), 0);
}

/// Short runs of the incident scenarios `double-payment`, `oversell`, `job-dedup` and
/// `leader-failover`, each with the counter that shows its incident when the lock does not
/// protect.
fn incident_cases() -> [(SimConfig, &'static str); 4] {
    [
        (double_payment(4, 5), "duplicate_charges"),
        (
            holding_exactly(Duration::from_millis(1), oversell(4, 1, 10)),
            "oversold",
        ),
        (job_dedup(4, 5), "duplicate_runs"),
        (
            leader_failover(3, Duration::from_secs(1)),
            "overlapping_actions",
        ),
    ]
}

/// With locking off, every scenario's own checker reports its incident. Yields inside every
/// critical section (and paused time) make the interleavings certain.
#[tokio::test(start_paused = true)]
async fn every_checker_catches_its_incident_with_locking_off() {
    let mutex = holding_exactly(Duration::ZERO, ops_config(4, 1, 5));
    let stale_write = gc_pause(3, Duration::from_secs(1));
    let cases = std::iter::once((mutex, "overlaps"))
        .chain(incident_cases())
        .chain([(stale_write, "stale_accepted")]);
    for (cfg, name) in cases {
        let report = run_memory(&unlocked(cfg)).await;
        assert!(!report.locking);
        assert!(counter(&report, name) > 0, "{name}:\n{}", report.table());
        assert!(report.violations > 0, "{}", report.table());
        assert!(!report.passed(), "{}", report.table());
        assert!(report.table().contains("OFF"));
        let lines = report.violation_lines();
        let tag = format!("VIOLATION ({})", report.scenario);
        assert!(lines.iter().any(|l| l.starts_with(&tag)), "{lines:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn exact_interleavings_without_locks() {
    // 4 instances, 5 orders, every charge yields (no sleep): each order is charged by all 4.
    let cfg = holding_exactly(Duration::ZERO, double_payment(4, 5));
    let report = run_memory(&unlocked(cfg)).await;
    assert_eq!(counter(&report, "charges"), 20, "{}", report.table());
    assert_eq!(counter(&report, "duplicate_charges"), 15);
    assert_eq!(counter(&report, "orders_charged_twice"), 5);
    assert_eq!(report.violations, 15);
    // Same for jobs.
    let cfg = holding_exactly(Duration::ZERO, job_dedup(4, 5));
    let report = run_memory(&unlocked(cfg)).await;
    assert_eq!(counter(&report, "runs"), 20, "{}", report.table());
    assert_eq!(counter(&report, "duplicate_runs"), 15);
}

/// A store that grants every request is caught by the incident checkers too.
#[tokio::test(start_paused = true)]
async fn grant_all_backend_fails_the_incident_scenarios() {
    for (cfg, name) in incident_cases() {
        let report = run_on(Arc::new(GrantAllBackend::new()), &cfg).await;
        assert!(report.locking);
        assert!(counter(&report, name) > 0, "{name}:\n{}", report.table());
        assert!(!report.passed(), "{}", report.table());
    }
}

#[tokio::test(start_paused = true)]
async fn scenario_configs_are_validated() {
    use Scenario::{GcPause, LeaderFailover, Oversell};
    let scenario = SimConfig::for_scenario;
    let bad = [
        refused("sim.stock", scenario(Oversell), |c| c.stock = 0),
        refused("sim.duration", scenario(LeaderFailover), |c| {
            c.duration = None
        }),
        refused("sim.fault_interval", scenario(LeaderFailover), |c| {
            c.duration = Some(Duration::from_millis(300));
            c.fault_interval = Duration::from_millis(300);
        }),
        refused("sim.workers", scenario(GcPause), |c| c.workers = 1),
        refused("sim.duration", scenario(GcPause), |c| c.duration = None),
    ];
    assert_invalid_options(bad).await;
    // The finite scenarios need no time limit at all.
    let cfg = SimConfig {
        duration: None,
        ..job_dedup(2, 3)
    };
    assert!(run_memory(&cfg).await.passed());
}

#[test]
fn scenario_names_round_trip() {
    for s in Scenario::ALL {
        assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        assert_eq!(s.to_string(), s.name());
        assert!(!s.description().is_empty());
        assert_eq!(SimConfig::for_scenario(s).scenario, s);
        assert!(SimConfig::for_scenario(s).validate().is_ok(), "{s}");
    }
    assert_eq!("GC_PAUSE".parse::<Scenario>(), Ok(Scenario::GcPause));
    let err = "nope".parse::<Scenario>().expect_err("unknown");
    assert_eq!(err.name(), "nope");
    assert!(err.to_string().contains("double-payment"));
    assert_eq!(
        SimConfig::for_scenario(Scenario::Mutex),
        SimConfig::default()
    );
    assert_eq!(Scenario::default(), Scenario::Mutex);
}

/// Every incident scenario against a private real Redis server: 0 violations. Short runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_passes_every_scenario() {
    let server = start_redis().await;
    let backend: Arc<dyn LockBackend> = Arc::new(
        locks_redis::RedisBackend::connect(&server.url())
            .await
            .expect("connect"),
    );
    let cases = [
        (
            SimConfig {
                hold_max: Duration::from_millis(1),
                ..double_payment(4, 30)
            },
            "charges",
            30,
        ),
        (oversell(8, 2, 20), "sold", 40),
        (job_dedup(4, 60), "runs", 60),
        (
            SimConfig {
                ttl: Duration::from_millis(150),
                fault_interval: Duration::from_millis(250),
                ..leader_failover(3, Duration::from_millis(1000))
            },
            "stale_actions",
            0,
        ),
        (gc_pause(3, Duration::from_millis(700)), "stale_accepted", 0),
    ];
    for (cfg, name, expected) in cases {
        let started = std::time::Instant::now();
        let report = sim::run(Arc::clone(&backend), &cfg).await.expect("run");
        assert_eq!(report.backend, "redis");
        assert_clean(&report);
        assert_eq!(counter(&report, name), expected, "{}", report.table());
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} took {:?}",
            cfg.scenario,
            started.elapsed()
        );
        match cfg.scenario {
            Scenario::LeaderFailover => {
                assert!(counter(&report, "deploys") >= 1, "{}", report.table());
                assert!(counter(&report, "cutoffs") >= 1, "{}", report.table());
                assert!(counter(&report, "elections") >= 3, "{}", report.table());
            }
            Scenario::GcPause => {
                assert!(counter(&report, "stale_rejected") > 0, "{}", report.table());
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary: every scenario, JSON output

/// The number under `key` of a JSON object, or a panic naming what is there instead.
fn num(o: &Value, key: &str) -> f64 {
    match o.get(key).and_then(Value::as_f64) {
        Some(n) => n,
        None => panic!("`{key}` is not a number: {:?} in {o}", o.get(key)),
    }
}

/// Every non-empty line of `stdout` parsed as one JSON value.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn binary_runs_every_scenario_with_json_output() {
    let (output, _) = run_binary(
        &[
            "--scenario",
            "all",
            "--json",
            "--duration",
            "600ms",
            "--workers",
            "4",
        ],
        0,
    );
    let objects = json_lines(&String::from_utf8_lossy(&output.stdout));
    let names: Vec<&str> = objects
        .iter()
        .map(|o| match o.get("scenario").and_then(Value::as_str) {
            Some(s) => s,
            None => panic!("no scenario: {o}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "mutex",
            "double-payment",
            "oversell",
            "job-dedup",
            "leader-failover",
            "gc-pause"
        ]
    );
    for o in &objects {
        assert_eq!(o["passed"], true, "{o}");
        assert_eq!(o["locking"], true, "{o}");
        assert_eq!(o["backend"], "memory", "{o}");
        assert_eq!(num(o, "violations"), 0.0, "{o}");
        assert_eq!(num(o, "workers"), 4.0, "{o}");
        assert!(num(o, "ops") > 0.0, "{o}");
        assert!(num(o, "ops_per_sec") > 0.0, "{o}");
        assert!(num(o, "elapsed_ms") > 0.0, "{o}");
        for field in [
            "keys",
            "services",
            "duration_ms",
            "hold_min_us",
            "hold_max_us",
            "ttl_ms",
            "wait_timeout_ms",
            "seed",
            "stock",
            "fault_interval_ms",
            "acquired",
            "timeouts",
            "errors",
            "fence_regressions",
            "max_concurrent_per_key",
        ] {
            let _ = num(o, field);
        }
        assert!(o["ops_per_worker"].is_null(), "{o}");
        for histogram in ["wait_us", "handoff_us"] {
            let h = o
                .get(histogram)
                .unwrap_or_else(|| panic!("{histogram}: {o}"));
            for field in ["count", "p50", "p90", "p99", "max"] {
                let _ = num(h, field);
            }
            assert!(num(h, "p50") <= num(h, "p99"), "{o}");
        }
        match o.get("counters").and_then(Value::as_object) {
            Some(members) => assert!(!members.is_empty(), "{o}"),
            None => panic!("counters: {o}"),
        }
        assert_eq!(o["violation_details"], json!([]), "{o}");
        assert_eq!(o["problems"], json!([]), "{o}");
    }
    let gc = objects.last().expect("gc-pause");
    let counters = &gc["counters"];
    assert!(num(counters, "stale_rejected") > 0.0, "{gc}");
    assert_eq!(num(counters, "stale_accepted"), 0.0, "{gc}");
}

#[test]
fn binary_without_locks_reports_the_incident_and_exits_1() {
    let (_, text) = run_binary(&UNLOCKED_DOUBLE_PAYMENT, 1);
    assert!(text.contains("VIOLATION (double-payment)"), "{text}");
    assert!(text.contains("locking=OFF"), "{text}");
    assert!(text.contains("FAIL"), "{text}");
}

#[test]
fn binary_rejects_an_unknown_scenario() {
    let (_, text) = run_binary(&["--scenario", "nope"], 2);
    assert!(text.contains("nope"), "{text}");
    // A scenario-specific bad value is an error too, named after the scenario.
    let (_, text) = run_binary(&["--scenario", "oversell", "--stock", "0"], 2);
    assert!(
        text.contains("oversell") && text.contains("sim.stock"),
        "{text}"
    );
}

/// Runs every scenario for at most `duration` (a humantime string: the slower stores need
/// longer to charge every order of the finite scenarios) with `backend_args` and checks that
/// each reports 0 violations and that the report names `backend`.
async fn every_scenario_passes(backend_args: Vec<String>, backend: &str, duration: &'static str) {
    let (_, text) = tokio::task::spawn_blocking(move || {
        let mut args: Vec<&str> = backend_args.iter().map(String::as_str).collect();
        args.extend(["--scenario", "all", "--duration", duration]);
        run_binary(&args, 0)
    })
    .await
    .expect("binary ran");
    assert!(text.contains(&format!("backend={backend}")), "{text}");
    assert!(!text.contains("VIOLATION"), "{text}");
    let clean = text
        .lines()
        .filter(|l| l.starts_with("violations") && l.trim_end().ends_with(" 0"))
        .count();
    assert_eq!(
        clean,
        locks_testkit::sim::Scenario::ALL.len(),
        "every scenario reports 0 violations:\n{text}"
    );
}

/// Every scenario against a local Redis Cluster (`--redis-cluster`): 0 violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_passes_every_scenario_on_a_redis_cluster() {
    let cluster = locks_testkit::redis_cluster::RedisCluster::start()
        .await
        .unwrap_or_else(|e| panic!("redis cluster fixture: {e}"));
    let urls = cluster.urls().join(",");
    every_scenario_passes(vec!["--redis-cluster".into(), urls], "redis-cluster", "1s").await;
}

/// Every scenario against a quorum of 3 independent redis-servers (`--redis-quorum`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_passes_every_scenario_on_a_redis_quorum() {
    let servers = RedisServer::start_many(3)
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    every_scenario_passes(
        vec!["--redis-quorum".into(), urls.join(",")],
        "redis-quorum",
        "3s",
    )
    .await;
}

/// Every scenario against a private PostgreSQL server (`--postgres`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_passes_every_scenario_on_postgres() {
    let server = locks_testkit::postgres_server::PostgresServer::start()
        .await
        .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
    every_scenario_passes(vec!["--postgres".into(), server.url()], "postgres", "3s").await;
}
