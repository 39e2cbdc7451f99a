//! Whether a server serves commands: a `PING` through the `redis` client.

use std::time::Duration;

use redis::{IntoConnectionInfo, RedisResult};

/// How long one PING attempt (connect and reply) may take before the next one.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Connects to `target` (a URL or a `ConnectionInfo`, with its credentials and database if it
/// has any) and sends `PING`. `Ok` when the server serves commands: it answered `PONG`, or
/// `NOAUTH` (it has a password the target does not give). `Err` says what went wrong.
pub(super) async fn ping(target: impl IntoConnectionInfo) -> Result<(), String> {
    let exchange = async {
        let client = redis::Client::open(target)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(PING_TIMEOUT, exchange).await {
        Ok(reply) => alive(reply),
        Err(_) => Err(format!("no PING reply within {PING_TIMEOUT:?}")),
    }
}

/// `PONG`, or `NOAUTH` from a server with a password: either way it serves commands.
fn alive(reply: RedisResult<String>) -> Result<(), String> {
    match reply {
        Ok(pong) if pong == "PONG" => Ok(()),
        Ok(other) => Err(format!("PING was answered with {other:?}")),
        Err(e) if e.code() == Some("NOAUTH") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reply the client would get for `resp`, a raw RESP reply line.
    fn reply(resp: &[u8]) -> RedisResult<String> {
        let value = redis::parse_redis_value(resp)?.extract_error()?;
        Ok(redis::from_redis_value(value)?)
    }

    #[test]
    fn alive_replies() {
        assert_eq!(alive(reply(b"+PONG\r\n")), Ok(()));
        assert_eq!(
            alive(reply(b"-NOAUTH Authentication required.\r\n")),
            Ok(())
        );
        let loading = alive(reply(
            b"-LOADING Redis is loading the dataset in memory\r\n",
        ));
        assert!(
            loading
                .as_ref()
                .is_err_and(|e| e.to_ascii_lowercase().contains("loading")),
            "{loading:?}"
        );
        let odd = alive(reply(b"+HELLO\r\n"));
        assert!(odd.as_ref().is_err_and(|e| e.contains("HELLO")), "{odd:?}");
    }
}
