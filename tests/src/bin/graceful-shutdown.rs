//! A service that stops cleanly on SIGTERM: it holds a lock and waits for another, ties
//! `shutdown()` to the signal with one line, and reports what happened. Used by
//! `tests/tests/graceful_shutdown.rs` as a real child process.
//!
//! ```sh
//! cargo run -p locks-tests --bin graceful-shutdown -- redis://127.0.0.1:6379 held:a held:b
//! ```

use std::process::ExitCode;
use std::time::Duration;

use locks_core::{AcquireOptions, LockService};
use locks_redis::RedisBackend;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, held, wanted] = args.as_slice() else {
        eprintln!("usage: graceful-shutdown REDIS_URL HELD_KEY WANTED_KEY");
        return ExitCode::from(2);
    };
    let backend = match RedisBackend::connect(url).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(locks) = LockService::new(backend) else {
        return ExitCode::FAILURE;
    };
    // The one line: SIGTERM or Ctrl-C shuts the service down (leases released, waiters failed).
    let shutdown = locks.shutdown_on(locks_core::terminate());

    let Ok(guard) = locks.acquire(held).await else {
        eprintln!("cannot acquire {held}");
        return ExitCode::FAILURE;
    };
    let waiter = tokio::spawn({
        let locks = locks.clone();
        let wanted = wanted.clone();
        async move {
            let opts = AcquireOptions::new().wait_timeout(Duration::from_secs(600));
            locks.acquire_opts(&wanted, opts).await.map(drop)
        }
    });
    println!("ready");

    let report = match shutdown.await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("shutdown task: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("released {}", report.released);
    match waiter.await {
        Ok(Err(e)) => println!("waiter {}", e.code()),
        Ok(Ok(())) => println!("waiter acquired"),
        Err(e) => println!("waiter panicked: {e}"),
    }
    println!("lost {}", guard.lost().await.label());
    ExitCode::SUCCESS
}
