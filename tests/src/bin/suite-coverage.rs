//! Checks that every backend crate of the workspace runs every case of every suite.
//!
//! ```sh
//! cargo nextest list --workspace --message-format json > target/nextest-list.json
//! cargo run -p locks-tests --bin suite-coverage -- target/nextest-list.json
//! ```
//!
//! The case names come from the suites' registries (`locks_testkit::conformance::SUITES`,
//! built from each suite's one case list), the backend crates from `cargo metadata`, and what
//! runs from the test list nextest compiled. A backend crate that does not instantiate a
//! suite, or a case the generated tests do not include, fails the check with its name.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, ExitCode};

use locks_testkit::conformance::{COORDINATION, FAIR, MUTEX, RWLOCK, SEMAPHORE, Suite};
use serde_json::Value;

/// Workspace crates that are not lock backends.
const NOT_BACKENDS: &[&str] = &[
    "locks-core",
    "locks-testkit",
    "locks-bench",
    "locks-tests",
    "locks-macros",
    "locks-cli",
    // The facade (re-exports only). Not matched by the `locks-` filter below; listed so that
    // a wider filter would not count it as a backend.
    "locks",
];

/// Where each suite's generated tests live: (module path, suite).
fn expected() -> Vec<(&'static str, &'static Suite)> {
    vec![
        ("conformance", &MUTEX),
        ("primitives", &SEMAPHORE),
        ("primitives", &RWLOCK),
        ("primitives", &COORDINATION),
        ("primitives", &FAIR),
        ("semaphore_as_mutex::conformance", &MUTEX),
        ("write_lock_as_mutex::conformance", &MUTEX),
    ]
}

fn backend_crates() -> Result<Vec<String>, String> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    let meta: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    let packages = meta["packages"]
        .as_array()
        .ok_or("cargo metadata: no packages")?;
    Ok(packages
        .iter()
        .filter_map(|p| p["name"].as_str())
        .filter(|name| name.starts_with("locks-") && !NOT_BACKENDS.contains(name))
        .map(str::to_owned)
        .collect())
}

/// Every test name nextest listed, per package.
fn listed_tests(list: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut tests: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(suites) = list["rust-suites"].as_object() {
        for binary in suites.values() {
            let package = binary["package-name"].as_str().unwrap_or_default();
            if let Some(cases) = binary["testcases"].as_object() {
                tests
                    .entry(package.to_owned())
                    .or_default()
                    .extend(cases.keys().cloned());
            }
        }
    }
    tests
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: suite-coverage NEXTEST_LIST.json");
        return ExitCode::from(2);
    };
    let list: Value = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("suite-coverage: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    let backends = match backend_crates() {
        Ok(b) if !b.is_empty() => b,
        Ok(_) => {
            eprintln!("suite-coverage: no backend crate in the workspace");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("suite-coverage: {e}");
            return ExitCode::from(2);
        }
    };
    let tests = listed_tests(&list);
    let mut missing = Vec::new();
    let mut checked = 0;
    for backend in &backends {
        let names = tests.get(backend).cloned().unwrap_or_default();
        for (module, suite) in expected() {
            for case in suite.cases {
                checked += 1;
                let wanted = format!("{module}::{}", case.name);
                if !names
                    .iter()
                    .any(|n| n == &wanted || n.ends_with(&format!("::{wanted}")))
                {
                    missing.push(format!("{backend}: {wanted} ({} suite)", suite.name));
                }
            }
        }
    }
    if missing.is_empty() {
        println!(
            "suite coverage: {} backend crate(s) ({}) run all {checked} suite cases",
            backends.len(),
            backends.join(", ")
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "suite coverage: {} suite case(s) are not run:",
            missing.len()
        );
        for m in &missing {
            eprintln!("  {m}");
        }
        eprintln!(
            "instantiate locks_testkit::{{conformance_tests!, primitives_tests!, \
             adapter_conformance_tests!}} in the backend crate's tests"
        );
        ExitCode::FAILURE
    }
}
