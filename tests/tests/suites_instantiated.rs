//! Every backend crate must run the shared conformance suite: this fails when a backend's test
//! directory does not instantiate it.

use std::path::Path;

fn instantiates_suite(crate_dir: &str) -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("tests");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read_to_string(e.path())
            .map(|text| text.contains("locks_testkit::conformance_tests!("))
            .unwrap_or(false)
    })
}

#[test]
fn every_backend_runs_the_conformance_suite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let backends: Vec<String> = std::fs::read_dir(&root)
        .expect("workspace root")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            // The core, the testkit and the benchmarks are not backends.
            name.starts_with("locks-")
                && name != "locks-core"
                && name != "locks-testkit"
                && name != "locks-bench"
        })
        .collect();
    assert!(backends.contains(&"locks-memory".to_owned()));
    for backend in &backends {
        assert!(
            instantiates_suite(backend),
            "{backend} does not instantiate locks_testkit::conformance_tests!"
        );
    }
}
