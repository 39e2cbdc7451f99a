//! What tests do with a server besides starting it: a plain connection of their own, the
//! pub/sub subscriber count of a channel (`PUBSUB NUMSUB`), polled until it is as expected,
//! and acquire options under which only a release notification wakes a waiter in time.

use std::time::Duration;

use locks_core::{AcquireOptions, RetryPolicy};
use redis::RedisResult;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use super::RedisServer;

/// The pause between two polls of [`subscribers_reach`].
const SUBSCRIBERS_POLL: Duration = Duration::from_millis(5);

impl RedisServer {
    /// A plain connection to the server (on [`RedisServer::url`]), for a test to look at the
    /// store, or change it, behind a backend's back.
    pub async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        redis::Client::open(self.url())?
            .get_multiplexed_async_connection()
            .await
    }
}

/// How many clients are subscribed to `channel` (`PUBSUB NUMSUB`).
pub async fn subscribers(conn: &mut MultiplexedConnection, channel: &str) -> RedisResult<i64> {
    let (_, n): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async(conn)
        .await?;
    Ok(n)
}

/// Polls [`subscribers`] of `channel` until the count satisfies `want`, for at most `limit`
/// (real time). Whether it did; a failed query counts as "not yet".
pub async fn subscribers_reach(
    conn: &MultiplexedConnection,
    channel: &str,
    limit: Duration,
    want: impl Fn(i64) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    let mut conn = conn.clone();
    loop {
        if subscribers(&mut conn, channel).await.is_ok_and(&want) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(SUBSCRIBERS_POLL).await;
    }
}

/// Options for a waiter that only a release notification can wake in time: it polls every 60 s,
/// waits at most 120 s, and takes a lease of 60 s.
pub fn notification_only() -> AcquireOptions {
    AcquireOptions::new()
        .ttl(Duration::from_secs(60))
        .wait_timeout(Duration::from_secs(120))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_secs(60))
                .max_delay(Duration::from_secs(60))
                .jitter(0.0),
        )
}

/// Writes 8 KiB values (`fill:0`, `fill:1`, …) through `conn` until the server answers `OOM`,
/// as one under `noeviction` with a small `maxmemory` does once it is full. How many keys it
/// wrote, or `None` if the server still took writes after `max_keys` of them; any other error
/// of a write is returned.
pub async fn fill_to_oom(
    conn: &mut MultiplexedConnection,
    max_keys: usize,
) -> RedisResult<Option<usize>> {
    let value = "x".repeat(8 * 1024);
    for filled in 0..max_keys {
        let r: RedisResult<()> = redis::cmd("SET")
            .arg(format!("fill:{filled}"))
            .arg(&value)
            .query_async(conn)
            .await;
        match r {
            Ok(()) => {}
            Err(e) if e.code() == Some("OOM") => return Ok(Some(filled)),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
