//! The `locks` binary against a real PostgreSQL server (`postgres://` URLs).

use std::process::Stdio;
use std::time::Duration;

use locks_core::{AcquireOptions, LockService};
use locks_postgres::PostgresBackend;
use locks_testkit::postgres_server::shared_url;
use serde_json::Value;
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_and_release_work_on_postgres() {
    let url = shared_url()
        .await
        .expect("a PostgreSQL server (see the README)");
    let locks =
        LockService::new(PostgresBackend::connect(&url).await.expect("connect")).expect("service");
    let name = format!("cli-pg:{}", locks_core::OwnerToken::new());
    let guard = locks
        .acquire_opts(&name, AcquireOptions::new().ttl(Duration::from_secs(60)))
        .await
        .expect("mutex");
    let run = |args: Vec<String>| async move {
        let out = Command::new(env!("CARGO_BIN_EXE_locks"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run locks");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(vec![
        "--url".into(),
        url.clone(),
        "--json".into(),
        "ls".into(),
        format!("{name}*"),
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).expect("JSON");
    let listed = doc["locks"].as_array().expect("locks");
    assert_eq!(listed.len(), 1, "{doc}");
    assert_eq!(listed[0]["name"], name.as_str());
    assert_eq!(
        listed[0]["holders"][0]["owner"],
        guard.token().to_hyphenated()
    );
    assert_eq!(listed[0]["holders"][0]["fence"], guard.fence());

    let (code, stdout) = run(vec![
        "--url".into(),
        url.clone(),
        "release".into(),
        name.clone(),
        "--force".into(),
        "--yes".into(),
    ])
    .await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(!locks.is_locked(&name).await.expect("is_locked"));
}
