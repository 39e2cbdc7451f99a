//! Safety rule 1: a server whose `maxmemory-policy` may evict live leases is refused at connect
//! (unless the builder opts out), and a policy that became unsafe is noticed after a
//! reconnection. Real `redis-server`s from the testkit fixture.
//!
//! Real-time tests: every wait is a bounded poll, no assertion is about speed.

use std::error::Error as _;
use std::time::Duration;

use locks_core::{AcquireResult, BackendError, LeaseKind, LockBackend, LockKey, OwnerToken};
use locks_redis::redis::{self, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisBackendBuilder, RedisBackendError};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

mod common;
use common::{builder, raw, server_with, unique, within};

const TTL: Duration = Duration::from_secs(5);

async fn server(policy: &str) -> RedisServer {
    server_with(RedisServerConfig::new().args(["--maxmemory-policy", policy])).await
}

async fn command(conn: &mut MultiplexedConnection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

async fn set_policy(conn: &mut MultiplexedConnection, policy: &str) {
    command(conn, &["CONFIG", "SET", "maxmemory-policy", policy]).await;
}

fn key(name: &str) -> LockKey {
    common::key(&unique(name))
}

/// A mutex acquire and release with a fresh token: the backend works.
async fn works(backend: &RedisBackend) -> Result<(), BackendError> {
    let (k, token) = (key("works"), OwnerToken::new());
    match backend
        .try_acquire(&k, LeaseKind::Mutex, token, TTL)
        .await?
    {
        AcquireResult::Acquired(_) => {}
        other => panic!("a fresh key is held: {other:?}"),
    }
    assert!(backend.release(&k, LeaseKind::Mutex, token).await?);
    Ok(())
}

/// The backend `builder` connects (bounded by [`SOON`](common::SOON)), checked to work;
/// `case` names the case in a failure.
async fn connect_working(case: &str, builder: RedisBackendBuilder) -> RedisBackend {
    let backend = within("connect", builder.connect())
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    within("work", works(&backend))
        .await
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    backend
}

/// The policy a refused connect or operation named, if it was refused for the policy.
fn refused_policy(e: &RedisBackendError) -> Option<&str> {
    match e {
        RedisBackendError::EvictionPolicy { policy, .. } => Some(policy),
        _ => None,
    }
}

/// An operation's error as the [`RedisBackendError`] it carries, if any.
fn typed(e: &BackendError) -> Option<&RedisBackendError> {
    e.source()?.downcast_ref::<RedisBackendError>()
}

/// Promise: a server whose `maxmemory-policy` is not `noeviction` is refused at connect with
/// [`RedisBackendError::EvictionPolicy`], whose message names the fix (`noeviction`, a
/// dedicated instance) and the opt-out; with `allow_eviction_policy(true)` the same server is
/// accepted; a `noeviction` server is accepted without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_may_evict_leases_are_refused_unless_the_builder_opts_out() {
    let server = server("allkeys-lru").await;
    let mut admin = raw(&server).await;
    for policy in ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-lfu"] {
        set_policy(&mut admin, policy).await;
        let refused = within("connect", builder(server.url()).connect()).await;
        let e = refused
            .err()
            .unwrap_or_else(|| panic!("{policy}: connected"));
        assert_eq!(refused_policy(&e), Some(policy), "{e:?}");
        assert!(!e.is_transient(), "{e}");
        let message = e.to_string();
        for needed in [
            policy,
            "maxmemory-policy noeviction",
            "dedicated instance",
            "allow_eviction_policy(true)",
        ] {
            assert!(message.contains(needed), "{policy}: {message}");
        }
        connect_working(
            &format!("{policy} with the opt-out"),
            builder(server.url()).allow_eviction_policy(true),
        )
        .await;
    }

    let safe = self::server("noeviction").await;
    connect_working("noeviction", builder(safe.url())).await;
}

/// Promise: an ACL user without `CONFIG` still gets the policy checked, through
/// `INFO memory`; a user with neither command is refused with
/// [`RedisBackendError::EvictionPolicyUnknown`] (naming the permissions that would do), unless
/// the builder opts out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_read_from_info_when_config_is_not_permitted() {
    let server = server("volatile-lru").await;
    let mut admin = raw(&server).await;
    let url = |user: &str| format!("redis://{user}:pw@127.0.0.1:{}", server.port());
    for (user, rules) in [
        ("noconfig", vec!["+@all", "-config"]),
        (
            "infomemory",
            vec!["+@all", "-config", "-info", "+info|memory"],
        ),
        ("neither", vec!["+@all", "-config", "-info"]),
    ] {
        let mut args = vec!["ACL", "SETUSER", user, "reset", "on", ">pw", "~*", "&*"];
        args.extend(rules);
        command(&mut admin, &args).await;
    }

    for user in ["noconfig", "infomemory"] {
        let refused = within("connect", builder(url(user)).connect()).await;
        let e = refused.err().unwrap_or_else(|| panic!("{user}: connected"));
        assert_eq!(refused_policy(&e), Some("volatile-lru"), "{user}: {e:?}");
    }
    let unknown = within("connect", builder(url("neither")).connect()).await;
    match &unknown {
        Err(e @ RedisBackendError::EvictionPolicyUnknown { .. }) => {
            let message = e.to_string();
            assert!(message.contains("+info|memory"), "{message}");
            assert!(message.contains("allow_eviction_policy(true)"), "{message}");
            assert!(!e.is_transient());
        }
        other => panic!("expected EvictionPolicyUnknown, got {other:?}"),
    }
    connect_working(
        "opt-out",
        builder(url("neither")).allow_eviction_policy(true),
    )
    .await;

    set_policy(&mut admin, "noeviction").await;
    for user in ["noconfig", "infomemory"] {
        connect_working(&format!("{user} on noeviction"), builder(url(user))).await;
    }
}

/// Kill the server's normal client connections but the caller's own (the backends' command
/// connections; their pub/sub connections stay).
async fn kill_command_connections(admin: &mut MultiplexedConnection) {
    let killed = command(
        admin,
        &["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
    )
    .await;
    assert!(
        matches!(killed, redis::Value::Int(n) if n >= 1),
        "no client was killed: {killed:?}"
    );
}

/// Poll `backend` (bounded by [`SOON`](common::SOON)) through the transient errors of a
/// reconnection until it answers; return that answer.
async fn settled(backend: &RedisBackend) -> Result<(), BackendError> {
    within("a settled answer", async {
        loop {
            match works(backend).await {
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(10)).await,
                other => return other,
            }
        }
    })
    .await
}

/// Promise: a policy changed to `volatile-lru` while connected is noticed after the command
/// connection is replaced: every operation then fails with a permanent error whose source is
/// [`RedisBackendError::EvictionPolicy`], until the policy is `noeviction` again. A backend
/// built with the opt-out keeps working. On RESP2 (a command fails, then the connection is
/// remade) and RESP3 (the connection manager reconnects by itself after the server's close).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_while_connected_is_refused_after_a_reconnection() {
    let server = server("noeviction").await;
    let mut admin = raw(&server).await;
    for protocol in ["resp2", "resp3"] {
        let url = format!("{}/?protocol={protocol}", server.url());
        let backend = connect_working(protocol, builder(url.as_str())).await;
        let allowed = within(
            "connect",
            builder(url.as_str()).allow_eviction_policy(true).connect(),
        )
        .await
        .unwrap_or_else(|e| panic!("{protocol}: {e}"));

        set_policy(&mut admin, "volatile-lru").await;
        kill_command_connections(&mut admin).await;
        let refused = settled(&backend).await;
        let e = refused.err().unwrap_or_else(|| {
            panic!("{protocol}: an operation after the reconnection went through")
        });
        assert!(!e.is_transient(), "{protocol}: {e}");
        assert_eq!(
            typed(&e).and_then(refused_policy),
            Some("volatile-lru"),
            "{protocol}: {e:?}"
        );
        assert!(e.to_string().contains("noeviction"), "{protocol}: {e}");
        // Still refused: each operation reads the policy again, and it is still unsafe.
        let again = within("again", works(&backend)).await;
        assert!(
            again
                .as_ref()
                .err()
                .and_then(typed)
                .and_then(refused_policy)
                .is_some(),
            "{protocol}: {again:?}"
        );
        settled(&allowed)
            .await
            .unwrap_or_else(|e| panic!("{protocol}: the opt-out backend: {e}"));

        // Fixed: operations go through again.
        set_policy(&mut admin, "noeviction").await;
        within("work after the fix", works(&backend))
            .await
            .unwrap_or_else(|e| panic!("{protocol}: after the fix: {e}"));
    }
}
