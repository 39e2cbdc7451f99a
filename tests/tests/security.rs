//! Security: owner tokens, a least-privilege Redis ACL user, and Lua that never contains user
//! text. On private `redis-server`s; every wait is bounded.
//!
//! TLS (`rediss://`) is covered by `tls_connections_work` in `locks-redis/tests/redis_backend.rs`,
//! which runs with `cargo test -p locks-redis --features tls`.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use locks_core::{AcquireOptions, LockError, LockGuard, LockService, OwnerToken};
use locks_redis::redis::aio::MultiplexedConnection;
use locks_redis::redis::{self, AsyncCommands};
use locks_redis::{RedisBackend, RedisBackendError, RedisKeys};
use locks_testkit::redis_server::{RedisServer, notification_only, subscribers_reach};
use tokio::time::Instant;

mod common;
use common::{info_field, key, private_server, within};

async fn admin(server: &RedisServer) -> MultiplexedConnection {
    server
        .connection()
        .await
        .unwrap_or_else(|e| panic!("admin connection: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Owner tokens

/// Promise: owner tokens are random UUID v4 (version nibble 4, RFC 4122 variant), 36
/// characters in their stored form, and never repeat — none in 100 000, including those of
/// real acquisitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_tokens_are_uuid_v4_and_unique() {
    let mut seen = HashSet::with_capacity(100_000);
    for _ in 0..100_000 {
        let t = OwnerToken::new();
        let text = t.to_hyphenated();
        let bytes = text.as_bytes();
        assert_eq!(text.len(), 36, "{text}");
        assert_eq!(bytes[14], b'4', "version nibble of {text}");
        assert!(
            matches!(bytes[19], b'8' | b'9' | b'a' | b'b'),
            "variant of {text}"
        );
        assert_eq!(t.as_uuid().get_version_num(), 4);
        assert_eq!(text.parse::<OwnerToken>().ok(), Some(t));
        assert!(seen.insert(t), "token {text} repeated");
    }
    // The tokens the service puts in the store are the same kind, and new for every lease.
    let locks =
        LockService::new(locks_memory::MemoryBackend::new()).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..100 {
        let g = locks
            .acquire("tokens")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(g.token().as_uuid().get_version_num(), 4);
        assert!(seen.insert(g.token()), "a lease reused a token");
        g.release().await.unwrap_or_else(|e| panic!("{e}"));
    }
}

// ---------------------------------------------------------------------------------------------
// A least-privilege ACL user

/// The commands the backend needs, and nothing else. Outside scripts: `EVALSHA`, `SCRIPT LOAD`
/// (after `NOSCRIPT`), `PING` (connect), `SUBSCRIBE`/`UNSUBSCRIBE` (release notifications).
/// Inside the scripts: the rest.
const COMMANDS: &[&str] = &[
    // The backend reads the eviction policy at connect (CONFIG GET, else INFO memory).
    "info|memory",
    "evalsha",
    "script|load",
    "ping",
    "subscribe",
    "unsubscribe",
    "publish",
    "time",
    "get",
    "set",
    "del",
    "exists",
    "pexpire",
    "pttl",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "zadd",
    "zrem",
    "zscore",
    "zcard",
    "zrange",
    "zrangebyscore",
    "zremrangebyscore",
];

const USER: &str = "locks";
const PASSWORD: &str = "s3cret-locks";

/// The `ACL SETUSER` rules: keys and channels of the default prefix only, no command but
/// `COMMANDS`.
fn acl_rules() -> Vec<String> {
    let mut rules: Vec<String> = [
        "reset",
        "on",
        &format!(">{PASSWORD}"),
        "~_lock:*",
        "&_lock:*",
        "-@all",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    rules.extend(COMMANDS.iter().map(|c| format!("+{c}")));
    rules
}

async fn acl_setuser(admin: &mut MultiplexedConnection, rules: &[String]) {
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(USER)
        .arg(rules)
        .query_async(admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER {rules:?}: {e}"));
}

/// The ids of the clients connected now (`CLIENT LIST`).
async fn client_ids(admin: &mut MultiplexedConnection) -> HashSet<u64> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .unwrap_or_else(|e| panic!("CLIENT LIST: {e}"));
    list.lines()
        .filter_map(|l| l.strip_prefix("id="))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect()
}

/// Poll `check` until it holds or `limit` passes.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bound one step of the scenario; a timeout or an error is the scenario's failure.
async fn step<T, E: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e:?}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

fn check(what: &str, ok: bool) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_owned()) }
}

/// Everything an application does, as the ACL user: connect, acquire, inspect, extend, wait
/// with notifications (and unsubscribe afterwards without losing the subscription
/// connection), force release, a semaphore whose expired permit is reclaimed, a read-write
/// lock with a waiting writer, an election, `acquire_all`. Each step is bounded; the first
/// failure is returned.
async fn scenario(url: &str, admin: &mut MultiplexedConnection, tag: &str) -> Result<(), String> {
    scenario_with(url, admin, tag, false).await
}

/// [`scenario`], with the backend in the least-privilege mode (`FCALL` of the installed
/// function library) when `functions`.
async fn scenario_with(
    url: &str,
    admin: &mut MultiplexedConnection,
    tag: &str,
    functions: bool,
) -> Result<(), String> {
    let quick = Duration::from_secs(1);
    // A fresh script cache: every script goes through NOSCRIPT and SCRIPT LOAD.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(admin)
        .await
        .map_err(|e| format!("SCRIPT FLUSH: {e}"))?;
    let connect = || {
        RedisBackend::builder(url)
            .connect_timeout(quick)
            .response_timeout(quick)
            .function_library(functions)
            .connect()
    };
    let a =
        LockService::new(step("connect", quick, connect()).await?).map_err(|e| e.to_string())?;
    let b =
        LockService::new(step("connect", quick, connect()).await?).map_err(|e| e.to_string())?;

    // Mutex: acquire, inspect, extend, is_locked.
    let k = format!("{tag}:mutex");
    let held = step("acquire", quick, a.acquire_opts(&k, notification_only())).await?;
    let info = step("inspect", quick, a.inspect(&k)).await?;
    check(
        "inspect shows the owner",
        info.map(|i| i.owner) == Some(held.token()),
    )?;
    step("extend", quick, held.extend(Duration::from_secs(30))).await?;
    check(
        "is_locked",
        step("is_locked", quick, b.is_locked(&k)).await?,
    )?;

    // Force release by an operator.
    let k2 = format!("{tag}:forced");
    let g = step("acquire", quick, a.acquire(&k2)).await?;
    check(
        "force_release",
        step("force_release", quick, b.force_release(&k2)).await?,
    )?;
    check(
        "a force-released lease is gone",
        step("inspect", quick, a.inspect(&k2)).await?.is_none(),
    )?;
    check(
        "the holder learns it was not the owner any more",
        matches!(g.release().await, Err(LockError::NotOwner { .. })),
    )?;

    // Semaphore: an expired permit is reclaimed.
    let pool = a
        .semaphore(&format!("{tag}:pool"), 2)
        .map_err(|e| e.to_string())?;
    let p1 = step("permit", quick, pool.acquire()).await?;
    let short = AcquireOptions::new()
        .ttl(Duration::from_millis(50))
        .auto_renew(false);
    let p2 = step("short permit", quick, pool.acquire_opts(short)).await?;
    p2.abandon();
    let reclaimed = poll(quick, || {
        let pool = pool.clone();
        async move { pool.holders().await.map(|h| h.len()).unwrap_or(99) == 1 }
    })
    .await;
    check("the expired permit is reclaimed", reclaimed)?;
    let p3 = step("permit", quick, pool.try_acquire()).await?;
    check(
        "two permits held",
        step("available", quick, pool.available()).await? == 0,
    )?;
    step("release permit", quick, p1.release()).await?;
    step("release permit", quick, p3.release()).await?;

    // Read-write lock: a writer waits for a reader (its mark blocks new readers).
    let rw = a.rwlock(&format!("{tag}:rw")).map_err(|e| e.to_string())?;
    let rw_b = b.rwlock(&format!("{tag}:rw")).map_err(|e| e.to_string())?;
    let r1 = step("read", quick, rw.read()).await?;
    let mut writer = tokio::spawn(async move { rw_b.write().await });
    let marked = poll(quick, || {
        let rw = rw.clone();
        async move {
            rw.inspect()
                .await
                .map(|i| i.writer_waiting)
                .unwrap_or(false)
        }
    })
    .await;
    if !marked {
        writer.abort();
        return Err("the writer did not mark itself as waiting".to_owned());
    }
    check(
        "a new reader waits behind the writer",
        matches!(rw.try_read().await, Err(LockError::Contended { .. })),
    )?;
    step("release read", quick, r1.release()).await?;
    let w = match tokio::time::timeout(quick, &mut writer).await {
        Ok(Ok(Ok(w))) => w,
        other => {
            writer.abort();
            return Err(format!("writer: {other:?}"));
        }
    };
    check(
        "the writer holds it",
        step("inspect rw", quick, rw.inspect())
            .await?
            .writer
            .is_some(),
    )?;
    step("release write", quick, w.release()).await?;

    // Election and ordered multi-lock.
    let election = a
        .election(&format!("{tag}:leader"))
        .map_err(|e| e.to_string())?;
    let leadership = step("campaign", quick, election.campaign()).await?;
    check(
        "leader",
        step("leader", quick, election.leader())
            .await?
            .map(|l| l.owner)
            == Some(leadership.token()),
    )?;
    step("resign", quick, leadership.resign()).await?;
    let (x, y) = (format!("{tag}:x"), format!("{tag}:y"));
    let both = step(
        "acquire_all",
        quick,
        a.acquire_all(&[&y, &x], AcquireOptions::new()),
    )
    .await?;
    step("release all", quick, both.release()).await?;

    // Last (it takes the longest): a waiter woken by the release notification, then
    // unsubscribed lazily.
    let channel = RedisKeys::new(&key(&k)).channel;
    let mut waiter = tokio::spawn({
        let (b, k) = (b.clone(), k.clone());
        async move { b.acquire_opts(&k, notification_only()).await }
    });
    let subscribed = subscribers_reach(admin, &channel, quick, |n| n >= 1).await;
    if !subscribed {
        waiter.abort();
        return Err("the waiter could not subscribe".to_owned());
    }
    let clients = client_ids(admin).await;
    step("release", quick, held.release()).await?;
    let woken = match tokio::time::timeout(quick, &mut waiter).await {
        Ok(Ok(Ok(g))) => g,
        Ok(Ok(Err(e))) => return Err(format!("waiter: {e:?}")),
        Ok(Err(e)) => return Err(format!("waiter task: {e}")),
        Err(_) => {
            waiter.abort();
            return Err("the waiter was not woken by the release".to_owned());
        }
    };
    step("release (waiter)", quick, woken.release()).await?;
    // The backend unsubscribes an idle channel lazily (after about a second).
    let unsubscribed = subscribers_reach(admin, &channel, Duration::from_secs(4), |n| n == 0).await;
    check("the waiter unsubscribed", unsubscribed)?;
    check(
        "the subscription connection was kept (no reconnection)",
        client_ids(admin).await.is_superset(&clients),
    )?;

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

/// Promise: an ACL user restricted to the keys `~_lock:*` and channels `&_lock:*` (the default
/// prefix), with exactly the commands in `COMMANDS`, can run every operation — acquire,
/// release, extend, inspect, force release, waiting woken by notifications, semaphores,
/// read-write locks, elections, `acquire_all` — and each of those commands is needed: without
/// any one of them the same scenario fails (or, for `UNSUBSCRIBE`, the subscription
/// connection has to be replaced). The same user cannot touch a key or channel outside the
/// prefix — but it can run any Lua on the lock keys (`SCRIPT LOAD` + `EVALSHA`): an ACL
/// confines to keys, not to operations (README "Trust model").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_acl_user_runs_every_operation_and_is_confined_to_the_lock_keys() {
    let server = private_server(&[]).await;
    let mut admin = admin(&server).await;
    let rules = acl_rules();
    acl_setuser(&mut admin, &rules).await;
    println!("ACL SETUSER {USER} {}", rules.join(" "));
    let url = format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}", server.port());

    scenario(&url, &mut admin, "full")
        .await
        .unwrap_or_else(|e| panic!("with every command: {e}"));

    // Each command is needed.
    let mut runs = 0;
    for (i, cmd) in COMMANDS.iter().enumerate() {
        let mut fewer = rules.clone();
        // Redis accepts `+info|memory` but not `-info|memory`: take the whole command away.
        let without = if *cmd == "info|memory" { "info" } else { cmd };
        fewer.push(format!("-{without}"));
        acl_setuser(&mut admin, &fewer).await;
        let r = scenario(&url, &mut admin, &format!("without-{i}")).await;
        println!("without {cmd}: {r:?}");
        assert!(
            r.is_err(),
            "the scenario works without `{cmd}`: it is not needed"
        );
        runs += 1;
    }
    assert_eq!(runs, COMMANDS.len());
    acl_setuser(&mut admin, &rules).await;

    // Nothing outside the prefix, and no other command.
    let _: () = admin
        .set("outside", "keep")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut user = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect as {USER}: {e}"));
    let forbidden = [
        ("GET outside", redis::cmd("GET").arg("outside").clone()),
        (
            "SET outside",
            redis::cmd("SET").arg("outside").arg("x").clone(),
        ),
        ("DEL outside", redis::cmd("DEL").arg("outside").clone()),
        (
            "HGET other:{k}",
            redis::cmd("HGET").arg("other:{k}").arg("owner").clone(),
        ),
        ("KEYS", redis::cmd("KEYS").arg("*").clone()),
        ("FLUSHALL", redis::cmd("FLUSHALL").clone()),
        (
            "CONFIG GET",
            redis::cmd("CONFIG").arg("GET").arg("*").clone(),
        ),
        ("EVAL", redis::cmd("EVAL").arg("return 1").arg(0).clone()),
        ("SCRIPT FLUSH", redis::cmd("SCRIPT").arg("FLUSH").clone()),
        (
            "PUBLISH other",
            redis::cmd("PUBLISH").arg("other").arg("x").clone(),
        ),
    ];
    for (what, cmd) in forbidden {
        let r: redis::RedisResult<redis::Value> = cmd.query_async(&mut user).await;
        let code = r.as_ref().err().and_then(|e| e.code().map(str::to_owned));
        assert_eq!(code.as_deref(), Some("NOPERM"), "{what} -> {r:?}");
    }
    // What the ACL does not confine (README "Trust model"): the user can load and run any Lua
    // on the lock keys, so it can write anything there — confinement is to keys, not to the
    // library's operations.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('SET', KEYS[1], 'anything')")
        .query_async(&mut user)
        .await
        .unwrap_or_else(|e| panic!("SCRIPT LOAD: {e}"));
    let written: String = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg("_lock:{anything}")
        .query_async(&mut user)
        .await
        .unwrap_or_else(|e| panic!("EVALSHA: {e}"));
    assert_eq!(written, "OK");
    // A service with another prefix gets a typed, permanent error, and writes nothing.
    let backend = RedisBackend::builder(url.as_str())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let other = LockService::builder(backend)
        .key_prefix("other:")
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let r = within("acquire outside the prefix", other.acquire("k")).await;
    match r {
        Err(LockError::Backend { source, .. }) => {
            assert!(!source.is_transient(), "{source}");
            let text = source.to_string().to_ascii_lowercase();
            assert!(
                text.contains("noperm") || text.contains("no permissions"),
                "{source}"
            );
        }
        other => panic!("expected a NOPERM backend error, got {other:?}"),
    }
    let keys: Vec<String> = admin
        .keys("other:*")
        .await
        .unwrap_or_else(|e| panic!("KEYS: {e}"));
    assert!(keys.is_empty(), "{keys:?}");
    let kept: Option<String> = admin
        .get("outside")
        .await
        .unwrap_or_else(|e| panic!("GET: {e}"));
    assert_eq!(kept.as_deref(), Some("keep"));

    // A wrong password is an authentication error, never retried.
    let wrong = RedisBackend::builder(format!("redis://{USER}:wrong@127.0.0.1:{}", server.port()))
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(wrong, Err(RedisBackendError::Authentication { .. })),
        "{wrong:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The least-privilege mode: the function library

/// `locks_redis::APP_USER_ACL` as `ACL SETUSER` rules (after `reset`), with our password.
fn function_acl_rules() -> Vec<String> {
    std::iter::once("reset".to_owned())
        .chain(
            locks_redis::APP_USER_ACL
                .split_whitespace()
                .map(|r| r.replace(">PASSWORD", &format!(">{PASSWORD}"))),
        )
        .collect()
}

/// Promise (issue 11 item 15): with the function library installed by an operator
/// (`install_functions`), a user with exactly the documented `APP_USER_ACL` — `FCALL`/`FCALL_RO`,
/// no `EVAL*`, `SCRIPT` or `FUNCTION` — runs every operation of the library in the
/// least-privilege mode (`function_library(true)`), and cannot load or run code of its own.
/// Without `FCALL` the mode fails. A missing or different library is a typed error at
/// connect. What the mode cannot do (README "Trust model"): Redis checks each command a
/// function runs against the caller's ACL, so the data commands stay allowed directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_mode_runs_every_operation_through_the_function_library_and_loads_no_code()
{
    let server = private_server(&[]).await;
    let mut admin = admin(&server).await;
    let version = within(
        "install_functions",
        locks_redis::install_functions(&server.url()),
    )
    .await
    .unwrap_or_else(|e| panic!("install_functions: {e}"));
    assert_eq!(version, locks_redis::library_version());
    let rules = function_acl_rules();
    acl_setuser(&mut admin, &rules).await;
    let url = format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}", server.port());

    scenario_with(&url, &mut admin, "functions", true)
        .await
        .unwrap_or_else(|e| panic!("in the least-privilege mode: {e}"));
    // The scripts never went through EVALSHA: the mode really calls the library.
    assert_eq!(cached_scripts(&mut admin).await, 0);
    // The mode needs FCALL (and the EVALSHA path is not allowed for this user).
    let mut without_fcall = rules.clone();
    without_fcall.push("-fcall".to_owned());
    acl_setuser(&mut admin, &without_fcall).await;
    let r = scenario_with(&url, &mut admin, "functions-without-fcall", true).await;
    assert!(r.is_err(), "the scenario works without FCALL");
    let r = scenario_with(&url, &mut admin, "evalsha-as-function-user", false).await;
    assert!(r.is_err(), "the function user could use EVALSHA");
    acl_setuser(&mut admin, &rules).await;

    // No code of its own.
    let mut user = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect as {USER}: {e}"));
    let library = "#!lua name=mine\nredis.register_function('mine', function(k) \
                   return redis.call('SET', k[1], 'x') end)";
    let forbidden = [
        (
            "SCRIPT LOAD",
            redis::cmd("SCRIPT").arg("LOAD").arg("return 1").clone(),
        ),
        ("EVAL", redis::cmd("EVAL").arg("return 1").arg(0).clone()),
        (
            "EVALSHA",
            redis::cmd("EVALSHA")
                .arg("e0e1f9fabfc9d4800c877a703b823ac0578ff8db")
                .arg(0)
                .clone(),
        ),
        (
            "FUNCTION LOAD",
            redis::cmd("FUNCTION").arg("LOAD").arg(library).clone(),
        ),
        (
            "FUNCTION DELETE",
            redis::cmd("FUNCTION")
                .arg("DELETE")
                .arg(locks_redis::LIBRARY)
                .clone(),
        ),
        (
            "FUNCTION FLUSH",
            redis::cmd("FUNCTION").arg("FLUSH").clone(),
        ),
        ("SCRIPT FLUSH", redis::cmd("SCRIPT").arg("FLUSH").clone()),
        ("GET outside", redis::cmd("GET").arg("outside").clone()),
    ];
    for (what, cmd) in forbidden {
        let r: redis::RedisResult<redis::Value> = cmd.query_async(&mut user).await;
        let code = r.as_ref().err().and_then(|e| e.code().map(str::to_owned));
        assert_eq!(code.as_deref(), Some("NOPERM"), "{what} -> {r:?}");
    }
    // What no ACL can take away (README "Trust model"): the data commands the functions run.
    let written: String = redis::cmd("SET")
        .arg("_lock:{anything}:fence")
        .arg("1")
        .query_async(&mut user)
        .await
        .unwrap_or_else(|e| panic!("SET: {e}"));
    assert_eq!(written, "OK");

    // Without the library, or with another version of it: a typed error at connect.
    let connect = || {
        RedisBackend::builder(url.as_str())
            .connect_timeout(Duration::from_secs(2))
            .function_library(true)
            .connect()
    };
    let other = format!(
        "#!lua name={}\nredis.register_function{{function_name = '{}_version', \
         callback = function() return 'locks_v2:0' end, flags = {{'no-writes'}}}}",
        locks_redis::LIBRARY,
        locks_redis::LIBRARY
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(&other)
        .query_async(&mut admin)
        .await
        .map(|_: String| ())
        .unwrap_or_else(|e| panic!("FUNCTION LOAD: {e}"));
    let r = connect().await;
    assert!(
        matches!(&r, Err(RedisBackendError::FunctionLibrary { reason, .. }) if reason.contains("version")),
        "{r:?}"
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("FUNCTION FLUSH: {e}"));
    let r = connect().await;
    assert!(
        matches!(&r, Err(RedisBackendError::FunctionLibrary { reason, .. }) if reason.contains("not installed")),
        "{r:?}"
    );
    // Installing again (as an upgrade would) makes it usable.
    within("reinstall", locks_redis::install_functions(&server.url()))
        .await
        .unwrap_or_else(|e| panic!("install_functions: {e}"));
    let backend = connect()
        .await
        .unwrap_or_else(|e| panic!("connect after installing: {e}"));
    let locks = LockService::new(backend).unwrap_or_else(|e| panic!("{e}"));
    acquire_and_release("after-upgrade", "acquire", locks.acquire("after-upgrade")).await;
}

// ---------------------------------------------------------------------------------------------
// Lua never contains user text

async fn cached_scripts(admin: &mut MultiplexedConnection) -> u64 {
    info_field(admin, "memory", "number_of_cached_scripts").await
}

/// Take a lease with `acquire` (bounded by [`SOON`]) and give it back; a failure names `name`.
async fn acquire_and_release(
    name: &str,
    what: &str,
    acquire: impl Future<Output = Result<LockGuard, LockError>>,
) {
    let guard = within(what, acquire)
        .await
        .unwrap_or_else(|e| panic!("{name:?}: {what}: {e}"));
    guard
        .release()
        .await
        .unwrap_or_else(|e| panic!("{name:?}: release after {what}: {e}"));
}

/// Promise (Lua takes user values through `KEYS`/`ARGV` only): names full of Lua and Redis
/// syntax — `]] redis.call('FLUSHALL') --`, quotes, long brackets, `%s`, backslashes — are
/// valid keys that round-trip byte for byte through every primitive, and nothing they say is
/// executed (a key outside the prefix survives, no `FLUSHALL` ran). The server's script cache
/// holds the same number of scripts after a hundred different names as after one: no script
/// text depends on a name. Names with newlines or other control characters are rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_and_redis_syntax_in_names_is_data_not_code() {
    let server = private_server(&[]).await;
    let mut admin = admin(&server).await;
    let backend = RedisBackend::builder(server.url())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let locks = LockService::new(backend).unwrap_or_else(|e| panic!("{e}"));
    let _: () = admin
        .set("sentinel", "still here")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let checker = admin.clone();
    let exercise = |name: String| {
        let locks = locks.clone();
        let mut admin = checker.clone();
        async move {
            let g = within("acquire", locks.acquire(&name))
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let stored = RedisKeys::new(g.lock_key()).lease;
            assert_eq!(stored, format!("_lock:{{{name}}}"));
            let lease: Option<String> = admin.get(&stored).await.unwrap_or(None);
            assert_eq!(
                lease,
                Some(format!("{} {}", g.fence(), g.token().to_hyphenated())),
                "{name:?}"
            );
            let info = within("inspect", locks.inspect(&name))
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            assert_eq!(
                info.map(|i| (i.owner, i.fence)),
                Some((g.token(), g.fence()))
            );
            g.release()
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let pool = locks.semaphore(&name, 1).unwrap_or_else(|e| panic!("{e}"));
            let p = within("permit", pool.acquire())
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let holders = within("holders", pool.holders())
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(holders.len(), 1);
            p.release()
                .await
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
            let rw = locks.rwlock(&name).unwrap_or_else(|e| panic!("{e}"));
            acquire_and_release(&name, "write", rw.write()).await;
            acquire_and_release(&name, "read", rw.read()).await;
            assert!(
                !within("force_release", locks.force_release(&name))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
            );
        }
    };

    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    exercise("plain".to_owned()).await;
    let scripts_for_one = cached_scripts(&mut admin).await;

    let hostile = [
        "]] redis.call('FLUSHALL') --",
        "') redis.call('FLUSHALL') --",
        "\") redis.call(\"FLUSHALL\") --",
        "[[ ]] [=[ ]=] ]==]",
        "'; FLUSHALL; '",
        "%s %d %q %%",
        "\\\\ \\' \\\" \\x00",
        "{tag} }{ {{}}",
        "KEYS[1] ARGV[1] redis.call",
        "` $(rm -rf /) ${HOME}",
        "* ? [a-z] _lock:*",
    ];
    let mut names: Vec<String> = hostile.iter().map(|s| (*s).to_owned()).collect();
    for i in 0..90 {
        names.push(format!("{} #{i}", hostile[i % hostile.len()]));
    }
    for name in names {
        exercise(name).await;
    }
    let sentinel: Option<String> = admin.get("sentinel").await.unwrap_or(None);
    assert_eq!(sentinel.as_deref(), Some("still here"), "FLUSHALL ran");
    assert_eq!(
        cached_scripts(&mut admin).await,
        scripts_for_one,
        "the script cache grew with the names: script text depends on user input"
    );

    for bad in [
        "line\nbreak",
        "cr\rhere",
        "nul\0",
        "tab\t",
        "esc\u{1b}[0m",
        "del\u{7f}",
    ] {
        let r = locks.acquire(bad).await;
        assert!(
            matches!(r, Err(LockError::InvalidKey { .. })),
            "{bad:?}: {r:?}"
        );
    }
    let sentinel: Option<String> = admin.get("sentinel").await.unwrap_or(None);
    assert_eq!(sentinel.as_deref(), Some("still here"));
}
