//! The operator's step of the least-privilege mode: install (or upgrade) the locks function
//! library on a Redis >= 7.0 server, with a user allowed `FUNCTION LOAD`.
//!
//! ```sh
//! cargo run -p locks-redis --example install_functions -- redis://admin:secret@127.0.0.1:6379
//! ```
//!
//! Then applications connect with `RedisBackend::builder(url).function_library(true)` as a
//! user with `locks_redis::APP_USER_ACL` (printed below).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Some(url) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
    else {
        eprintln!("usage: install_functions REDIS_URL (or set REDIS_URL)");
        return ExitCode::FAILURE;
    };
    match locks_redis::install_functions(&url).await {
        Ok(version) => {
            println!("installed the function library {version}");
            println!(
                "application user: ACL SETUSER <name> {}",
                locks_redis::APP_USER_ACL
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("could not install the function library: {e}");
            ExitCode::FAILURE
        }
    }
}
