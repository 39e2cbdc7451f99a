//! The least-privilege mode (issue 11 item 15): the shared conformance suites (mutex,
//! primitives, and the mutex suite through a 1-permit semaphore and a write lock) with the
//! scripts run as the installed function library (`FCALL`/`FCALL_RO`), as an application user
//! with exactly [`locks_redis::APP_USER_ACL`]: no `EVAL*`, `SCRIPT` or `FUNCTION`. The library
//! is installed by the operator path, [`locks_redis::install_functions`], as the default user.

use std::error::Error;

use locks_redis::{RedisBackend, redis};
use locks_testkit::conformance::BackendHarness;

mod common;

use common::{harness_over, private_server, raw};

const PASSWORD: &str = "app-s3cret";

/// A private server with the library installed and the application user set up, the backend
/// in the least-privilege mode as that user, and an admin connection for the harness's
/// `expire`.
async fn start() -> Result<BackendHarness, Box<dyn Error>> {
    let server = private_server().await;
    locks_redis::install_functions(&server.url()).await?;
    let mut raw = raw(&server).await;
    let rules: Vec<String> = std::iter::once("reset".to_owned())
        .chain(
            locks_redis::APP_USER_ACL
                .split_whitespace()
                .map(|r| r.replace(">PASSWORD", &format!(">{PASSWORD}"))),
        )
        .collect();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg(&rules)
        .query_async(&mut raw)
        .await?;
    let url = format!("redis://app:{PASSWORD}@127.0.0.1:{}", server.port());
    let backend = RedisBackend::builder(url)
        .function_library(true)
        .connect()
        .await?;
    Ok(harness_over(backend, raw).keeping(server))
}

async fn harness() -> BackendHarness {
    start()
        .await
        .unwrap_or_else(|e| panic!("redis harness (function library): {e}"))
}

locks_testkit::conformance_tests!(harness, time = real);
locks_testkit::primitives_tests!(harness, time = real);
locks_testkit::adapter_conformance_tests!(harness, time = real);
