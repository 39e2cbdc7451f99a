//! The contention simulator: a correct backend passes, a broken one is caught, and the
//! `locks-sim` binary reports both with the right exit code.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use locks_core::LockError;
use locks_memory::MemoryBackend;
use locks_testkit::broken::GrantAllBackend;
use locks_testkit::sim::{self, SimConfig};

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
    let report = sim::run(Arc::new(MemoryBackend::new()), &cfg)
        .await
        .expect("valid config");
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
        hold_max: Duration::ZERO,
        services: 3,
        ..ops_config(8, 1, 20)
    };
    let report = sim::run(Arc::new(MemoryBackend::new()), &cfg)
        .await
        .expect("valid config");
    assert!(report.passed(), "{}", report.table());
    assert_eq!(report.acquired, 8 * 20);
}

#[tokio::test(start_paused = true)]
async fn long_waits_are_measured() {
    // One key, four workers, every hold exactly 100 ms: the last in line waits about 300 ms.
    let cfg = SimConfig {
        hold_min: Duration::from_millis(100),
        hold_max: Duration::from_millis(100),
        ..ops_config(4, 1, 2)
    };
    let report = sim::run(Arc::new(MemoryBackend::new()), &cfg)
        .await
        .expect("valid config");
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
    let report = sim::run(Arc::new(MemoryBackend::new()), &cfg)
        .await
        .expect("valid config");
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
    let report = sim::run(Arc::new(MemoryBackend::new()), &cfg)
        .await
        .expect("valid config");
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
    let report = sim::run(backend.clone(), &cfg).await.expect("valid config");
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
    let cfg = SimConfig {
        hold_max: Duration::ZERO,
        ..ops_config(4, 1, 5)
    };
    let report = sim::run(Arc::new(GrantAllBackend::new()), &cfg)
        .await
        .expect("valid config");
    assert!(!report.passed(), "{}", report.table());
}

#[tokio::test(start_paused = true)]
async fn bad_configs_are_typed_errors() {
    let bad = [
        (
            "sim.workers",
            SimConfig {
                workers: 0,
                ..SimConfig::default()
            },
        ),
        (
            "sim.keys",
            SimConfig {
                keys: 0,
                ..SimConfig::default()
            },
        ),
        (
            "sim.duration",
            SimConfig {
                duration: None,
                ops_per_worker: None,
                ..SimConfig::default()
            },
        ),
        (
            "sim.hold_min",
            SimConfig {
                hold_min: Duration::from_millis(3),
                ..SimConfig::default()
            },
        ),
    ];
    for (name, cfg) in bad {
        match sim::run(Arc::new(MemoryBackend::new()), &cfg).await {
            Err(LockError::InvalidOptions { option, .. }) => assert_eq!(option, name),
            other => panic!("{name}: {other:?}"),
        }
    }
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

fn run_binary(args: &[&str]) -> (Output, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_locks-sim"))
        .args(args)
        .output()
        .expect("run locks-sim");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, text)
}

#[test]
fn binary_reports_violations_of_the_broken_backend() {
    let (output, text) = run_binary(&["--backend", "broken", "--duration", "200ms"]);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("VIOLATION"), "{text}");
}

#[test]
fn binary_passes_on_the_memory_backend() {
    let (output, text) = run_binary(&["--backend", "memory", "--duration", "300ms"]);
    assert_eq!(output.status.code(), Some(0), "{text}");
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
    let (output, text) = run_binary(&["--duration", "soon"]);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("soon"), "{text}");
    let (output, text) = run_binary(&["--workers", "0", "--duration", "10ms"]);
    assert_eq!(output.status.code(), Some(2), "{text}");
}

#[test]
fn binary_json_output() {
    let (output, text) = run_binary(&["--json", "--ops-per-worker", "5", "--workers", "4"]);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.trim_start().starts_with('{'), "{stdout}");
    assert!(stdout.contains("\"acquired\":20"), "{stdout}");
    assert!(stdout.contains("\"passed\":true"), "{stdout}");
}

/// The same contention scenario against a real, private Redis server: 0 violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_passes_on_redis() {
    let server = locks_testkit::redis_server::RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"));
    let url = server.url();
    let (output, text) = tokio::task::spawn_blocking(move || {
        run_binary(&[
            "--redis",
            &url,
            "--duration",
            "1s",
            "--workers",
            "8",
            "--keys",
            "2",
        ])
    })
    .await
    .expect("binary ran");
    assert_eq!(output.status.code(), Some(0), "{text}");
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
    let server = locks_testkit::redis_server::RedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("cannot start a Redis server for the tests: {e}"));
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
