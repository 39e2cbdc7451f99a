//! SIGTERM to a real child process: its leases are released at once (not after their ttl) and
//! its waiters fail with `shutting_down`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use locks_core::LockService;
use locks_redis::RedisBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_leases_and_fails_waiters() {
    let server = common::private_server(&[]).await;
    let parent = LockService::new(RedisBackend::connect(&server.url()).await.expect("connect"))
        .expect("service");
    // The child will wait for this one.
    let blocker = parent.acquire("shutdown:wanted").await.expect("acquire");

    let mut child = Command::new(env!("CARGO_BIN_EXE_graceful-shutdown"))
        .args([server.url().as_str(), "shutdown:held", "shutdown:wanted"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.next().and_then(Result::ok);
        (ready, lines)
    });
    let (ready, lines) = tokio::time::timeout(Duration::from_secs(30), lines)
        .await
        .expect("the child got ready in time")
        .expect("reader");
    assert_eq!(ready.as_deref(), Some("ready"));
    assert!(parent.is_locked("shutdown:held").await.expect("inspect"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let rest: Vec<String> = tokio::task::spawn_blocking(move || {
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = child.wait().expect("wait");
        assert!(status.success(), "child exit {status}");
        rest
    })
    .await
    .expect("reader");
    assert_eq!(
        rest,
        ["released 1", "waiter shutting_down", "lost shutdown"],
        "child output"
    );
    // Released, not left to its 30 s ttl.
    assert!(!parent.is_locked("shutdown:held").await.expect("inspect"));
    blocker.release().await.expect("release");
}
