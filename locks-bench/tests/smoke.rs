//! `locks-bench --quick` runs end to end (private redis-server included) and prints every row
//! of the table. No timing is asserted: figures belong to the benchmark, not to tests.

use std::process::Command;

/// Every figure and the runtimes it must be reported for.
const ROWS: &[(&str, &[&str])] = &[
    ("loopback round trip (PING, p50)", BOTH),
    ("sequential acquire+release, 1 connection", BOTH),
    (
        "sequential: floor, a minimal fenced lock (SET NX PX + INCR script, CAD)",
        BOTH,
    ),
    ("sequential: backend scripts alone (no service)", BOTH),
    ("sequential: service over its own scripts", BOTH),
    ("64 concurrent tasks, 1 multiplexed connection", BOTH),
    (
        "64 concurrent: floor, a minimal fenced lock (SET NX PX + INCR script, CAD)",
        BOTH,
    ),
    ("64 concurrent: backend scripts alone (no service)", BOTH),
    ("64 concurrent: service over its own scripts", BOTH),
    ("hand-off p50 (release → next acquire), 4 workers", BOTH),
    ("hand-off p99, 4 workers", BOTH),
    ("critical sections/s, 4 workers", BOTH),
    ("longest single wait, 4 workers", BOTH),
    ("worker shares (%), 4 workers", BOTH),
    ("hand-off p50 (release → next acquire), 8 workers", BOTH),
    ("hand-off p99, 8 workers", BOTH),
    ("critical sections/s, 8 workers", BOTH),
    ("longest single wait, 8 workers", BOTH),
    ("worker shares (%), 8 workers", BOTH),
    (
        "fair mode: hand-off p50 (release → next acquire), 4 workers",
        BOTH,
    ),
    ("fair mode: hand-off p99, 4 workers", BOTH),
    ("fair mode: critical sections/s, 4 workers", BOTH),
    ("fair mode: longest single wait, 4 workers", BOTH),
    ("fair mode: worker shares (%), 4 workers", BOTH),
    ("renewal: round trips per renewal period", BOTH),
    ("renewal: leases still held after", BOTH),
    ("renewal: process CPU", BOTH),
    ("renewal: resident memory per held lease", BOTH),
    (
        "memory: uncontended acquire+release vs self-wait detection off",
        BOTH,
    ),
    ("memory: uncontended acquire+release vs DashMap", BOTH),
    ("memory: uncontended acquire+release vs tokio Mutex", BOTH),
    (
        "memory: 2 tasks contended, one service, critical sections/s",
        MULTI,
    ),
    (
        "memory: 2 tasks contended, two services, critical sections/s",
        MULTI,
    ),
    ("postgres: sequential acquire+release", MULTI),
    ("postgres: concurrent acquire+release", MULTI),
    ("quorum of 3: sequential acquire+release", MULTI),
    ("quorum of 3: 8 workers on one key", MULTI),
    ("cluster of 3+3: sequential acquire+release", MULTI),
    (
        "cluster of 3+3: 8 workers on one key, critical sections/s",
        MULTI,
    ),
    ("cluster of 3+3: replica_ack(1, 100ms), sequential", MULTI),
    (
        "primary + 2 replicas: replica_ack(1, 100ms), sequential",
        MULTI,
    ),
    (
        "primary + 2 replicas: replica_ack(2, 100ms), sequential",
        MULTI,
    ),
    (
        "Sentinel: primary found through 3 Sentinels, sequential",
        MULTI,
    ),
    ("vs rslock: uncontended acquire+release", BOTH),
    ("vs rslock: critical sections/s, 4 workers", BOTH),
    ("vs rslock: longest wait, 4 workers", BOTH),
    ("vs rslock: smallest worker share, 4 workers", BOTH),
    ("vs rslock: critical sections/s, 8 workers", BOTH),
    ("vs rslock: longest wait, 8 workers", BOTH),
    ("vs rslock: smallest worker share, 8 workers", BOTH),
    ("fair mode vs rslock: critical sections/s, 4 workers", BOTH),
    ("fair mode vs rslock: longest wait, 4 workers", BOTH),
    (
        "fair mode vs rslock: smallest worker share, 4 workers",
        BOTH,
    ),
    ("fair mode vs rslock: critical sections/s, 8 workers", BOTH),
    ("fair mode vs rslock: longest wait, 8 workers", BOTH),
    (
        "fair mode vs rslock: smallest worker share, 8 workers",
        BOTH,
    ),
    (
        "server cost: acquire+release scripts vs SET NX PX + compare-and-delete (50 connections)",
        MULTI,
    ),
    (
        "server cost floor: a minimal fenced lock (SET NX PX + INCR script, CAD) vs SET NX PX + \
         CAD (50 connections)",
        MULTI,
    ),
    ("server cost: µs per call (INFO commandstats)", MULTI),
    ("profile: client CPU per uncontended cycle", BOTH),
    ("profile: allocations per uncontended cycle", BOTH),
];

const BOTH: &[&str] = &["multi-thread", "current-thread"];
const MULTI: &[&str] = &["multi-thread"];

/// The table rows as cells: `figure | runtime | locks | reference | ratio | target | result`.
fn rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| figure |"))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

#[test]
fn quick_run_prints_every_row() {
    let output = Command::new(env!("CARGO_BIN_EXE_locks-bench"))
        .arg("--quick")
        .output()
        .expect("run locks-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 0: every target met, 1: some missed (timing depends on the machine), 2: an error.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "locks-bench --quick failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let table = rows(&stdout);
    for (figure, runtimes) in ROWS {
        for runtime in *runtimes {
            let row = table
                .iter()
                .find(|r| r.len() == 7 && r[0].starts_with(figure) && r[1] == *runtime);
            let Some(row) = row else {
                panic!("no row {figure:?} on {runtime}:\n{stdout}");
            };
            assert!(
                !row[2].is_empty() && !row[3].is_empty() && !row[4].is_empty(),
                "row {figure:?} on {runtime} has an empty cell: {row:?}"
            );
        }
    }
    assert_eq!(
        table.len(),
        ROWS.iter().map(|(_, r)| r.len()).sum::<usize>(),
        "unexpected rows:\n{stdout}"
    );
    assert!(stdout.contains("target(s) missed"), "{stdout}");
}
