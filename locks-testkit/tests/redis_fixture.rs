//! The real-Redis fixture: start, stop, restart, drop, passwords, and its errors.
//!
//! These tests need a Redis server: a local `redis-server` (see `scripts/test`), or the
//! `docker` feature. They fail, with the fix in the message, when none can be started.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use locks_testkit::redis_server::{FixtureError, RedisServer, RedisServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Upper bound for a condition polled in a test (the port closing, for instance).
const POLL_LIMIT: Duration = Duration::from_secs(10);

/// A private server (never the external one of `LOCKS_TEST_REDIS_URL`), or a loud failure.
async fn private_server(cfg: RedisServerConfig) -> RedisServer {
    match RedisServer::start_with(cfg.local_only()).await {
        Ok(server) => server,
        Err(e) => panic!("could not start a Redis server for the tests: {e}"),
    }
}

/// Sends one command as a RESP array and returns the reply, bulk strings as `$<data>` and nil
/// as `$nil`.
async fn command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(stream);
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let line = line.trim_end().to_owned();
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line);
    };
    let len: i64 = len
        .parse()
        .map_err(|_| std::io::Error::other(format!("bad bulk length in {line:?}")))?;
    let Ok(len) = usize::try_from(len) else {
        return Ok("$nil".to_owned());
    };
    let mut data = vec![0_u8; len + 2];
    stream.read_exact(&mut data).await?;
    data.truncate(len);
    Ok(format!("${}", String::from_utf8_lossy(&data)))
}

async fn ping(port: u16) -> String {
    match command(port, &["PING"]).await {
        Ok(reply) => reply,
        Err(e) => panic!("PING to 127.0.0.1:{port} failed: {e}"),
    }
}

/// Whether a TCP connection to the port is refused.
async fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

/// Polls until the port refuses connections, at most [`POLL_LIMIT`].
async fn wait_refused(port: u16) -> bool {
    let deadline = Instant::now() + POLL_LIMIT;
    while Instant::now() < deadline {
        if refuses(port).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_answers_ping() {
    let server = match RedisServer::start().await {
        Ok(server) => server,
        Err(e) => panic!("could not start a Redis server for the tests: {e}"),
    };
    if !server.is_external() {
        assert_ne!(server.port(), 6379, "the fixture must never use port 6379");
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
        assert_eq!(ping(server.port()).await, "+PONG");
    }
    let debug = format!("{server:?}");
    assert!(debug.contains("RedisServer"), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_get_different_ports() {
    let a = private_server(RedisServerConfig::new()).await;
    let b = private_server(RedisServerConfig::new()).await;
    assert_ne!(a.port(), b.port());
    assert_eq!(ping(a.port()).await, "+PONG");
    assert_eq!(ping(b.port()).await, "+PONG");

    // They are independent: a key written in one is absent from the other.
    assert_eq!(
        command(a.port(), &["SET", "k", "a"]).await.ok().as_deref(),
        Some("+OK")
    );
    assert_eq!(
        command(b.port(), &["GET", "k"]).await.ok().as_deref(),
        Some("$nil")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_many_gives_independent_servers() {
    if std::env::var_os("LOCKS_TEST_REDIS_URL").is_some() {
        // The external servers are whatever the variable lists; check only the count.
        let servers = RedisServer::start_many(1).await;
        assert!(servers.is_ok_and(|s| s.len() == 1));
        return;
    }
    let servers = match RedisServer::start_many(3).await {
        Ok(servers) => servers,
        Err(e) => panic!("could not start Redis servers for the tests: {e}"),
    };
    assert_eq!(servers.len(), 3);
    let ports: BTreeSet<u16> = servers.iter().map(RedisServer::port).collect();
    assert_eq!(ports.len(), 3, "ports must differ: {ports:?}");
    assert!(!ports.contains(&6379));
    for server in &servers {
        assert_eq!(ping(server.port()).await, "+PONG");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_closes_the_port_and_restart_is_empty_on_the_same_port() {
    let mut server = private_server(RedisServerConfig::new()).await;
    let port = server.port();
    assert_eq!(
        command(port, &["SET", "survivor", "1"])
            .await
            .ok()
            .as_deref(),
        Some("+OK")
    );
    assert_eq!(
        command(port, &["GET", "survivor"]).await.ok().as_deref(),
        Some("$1")
    );

    if let Err(e) = server.stop().await {
        panic!("stop failed: {e}");
    }
    assert!(
        refuses(port).await,
        "the port must refuse connections after stop"
    );
    // Stopping twice is harmless.
    assert!(server.stop().await.is_ok());

    if let Err(e) = server.restart().await {
        panic!("restart failed: {e}");
    }
    assert_eq!(server.port(), port, "restart must reuse the port");
    assert_eq!(ping(port).await, "+PONG");
    assert_eq!(
        command(port, &["GET", "survivor"]).await.ok().as_deref(),
        Some("$nil"),
        "a restarted server must be empty"
    );
    assert_eq!(command(port, &["DBSIZE"]).await.ok().as_deref(), Some(":0"));

    // Restarting a running server works too, and empties it again.
    assert_eq!(
        command(port, &["SET", "again", "1"]).await.ok().as_deref(),
        Some("+OK")
    );
    if let Err(e) = server.restart().await {
        panic!("second restart failed: {e}");
    }
    assert_eq!(
        command(port, &["GET", "again"]).await.ok().as_deref(),
        Some("$nil")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_the_server() {
    let server = private_server(RedisServerConfig::new()).await;
    let port = server.port();
    assert_eq!(ping(port).await, "+PONG");
    drop(server);
    assert!(
        wait_refused(port).await,
        "127.0.0.1:{port} still answers {POLL_LIMIT:?} after the fixture was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirepass_answers_noauth() {
    let server = private_server(
        RedisServerConfig::new()
            .args(["--requirepass", "s3cret"])
            .arg("--maxmemory")
            .arg("64mb"),
    )
    .await;
    let port = server.port();
    let reply = ping(port).await;
    assert!(reply.starts_with("-NOAUTH"), "{reply}");

    // With the password, the server serves commands (one connection for AUTH and PING).
    let stream = TcpStream::connect(("127.0.0.1", port)).await;
    let Ok(stream) = stream else {
        panic!("connect to 127.0.0.1:{port} failed");
    };
    let mut stream = BufReader::new(stream);
    let sent = stream
        .get_mut()
        .write_all(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*1\r\n$4\r\nPING\r\n")
        .await;
    assert!(sent.is_ok());
    let mut replies = Vec::new();
    for _ in 0..2 {
        let mut line = String::new();
        assert!(stream.read_line(&mut line).await.is_ok_and(|n| n > 0));
        replies.push(line.trim_end().to_owned());
    }
    assert_eq!(replies, ["+OK", "+PONG"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bogus_binary_is_a_typed_error_with_the_fix() {
    let result = RedisServer::start_with(
        RedisServerConfig::new().binary("/nonexistent/bin/redis-server-bogus"),
    )
    .await;
    let err = match result {
        Ok(server) => panic!("a bogus binary started a server: {server:?}"),
        Err(e) => e,
    };
    assert!(
        matches!(err, FixtureError::BinaryNotFound { .. }),
        "unexpected error: {err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("apt-get install"), "{message}");
    assert!(message.contains("LOCKS_TEST_REDIS_URL"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_that_is_not_redis_is_a_typed_error() {
    // `/bin/false` exists and exits at once: the fixture reports the exit with the log.
    let result = RedisServer::start_with(RedisServerConfig::new().binary("/bin/false")).await;
    match result {
        Ok(server) => panic!("/bin/false started a server: {server:?}"),
        Err(FixtureError::Exited { port, .. }) => assert_ne!(port, 6379),
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_argument_reports_the_server_log() {
    let result =
        RedisServer::start_with(RedisServerConfig::new().args(["--no-such-option", "1"])).await;
    match result {
        Ok(server) => panic!("a bad option started a server: {server:?}"),
        Err(e @ FixtureError::Exited { .. }) => {
            let message = e.to_string();
            assert!(message.contains("no-such-option"), "{message}");
        }
        Err(other) => panic!("unexpected error: {other}"),
    }
}
