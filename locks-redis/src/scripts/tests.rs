//! Every script against a real `redis-server` (the testkit fixture), called directly with bad
//! `KEYS`/`ARGV` through a raw connection, as a script (`EVALSHA`) and as a function of the
//! installed library (`FCALL`): each refuses with an `ERR locks: ...` reply and writes nothing,
//! whether the lock is free or held. And retired tokens: a release that finds nothing makes a
//! later acquire with the token fail, for every kind.

use std::time::Duration;

use locks_core::{BackendError, LeaseKind, LockBackend, LockKey, OwnerToken};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};
use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};

use super::*;
use crate::functions::{Calls, library_source, read_only};
use crate::keys::{
    CHANNEL, FENCE, LEASE, RETIRED, RW_FENCES, RW_READERS, RW_WAITING, RW_WRITER, SEMAPHORE,
    SEMAPHORE_FENCES, name,
};

const TOKEN: &str = "3f1c0b5e-8f6c-4a59-9b71-0d3e0c3e7a11";

/// Good ARGV: token, ttl, fence counter ttl.
const TTLS: &[&str] = &[TOKEN, "60000", "120000"];
/// Good ARGV of a permit acquire: token, ttl, count, fence counter ttl.
const PERMIT: &[&str] = &[TOKEN, "60000", "3", "120000"];

/// Good ARGV of a release: token, how long a retired token is remembered.
const RELEASE_ARGS: &[&str] = &[TOKEN, "120000"];

const MUTEX_ACQUIRE: &[&str] = &[LEASE, FENCE, RETIRED];
const MUTEX_KEYS: &[&str] = &[LEASE, FENCE];
const MUTEX_RELEASE: &[&str] = &[LEASE, CHANNEL, RETIRED];
const SEM_ACQUIRE: &[&str] = &[SEMAPHORE, SEMAPHORE_FENCES, FENCE, RETIRED];
const SEM_EXTEND: &[&str] = &[SEMAPHORE, SEMAPHORE_FENCES, FENCE];
const SEM_RELEASE: &[&str] = &[SEMAPHORE, SEMAPHORE_FENCES, CHANNEL, RETIRED];
const SEM_ONLY: &[&str] = &[SEMAPHORE, SEMAPHORE_FENCES];
const RW_ACQUIRE: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, FENCE, RETIRED];
const RW_EXTEND: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, FENCE];
const RW_RELEASE: &[&str] = &[
    RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING, CHANNEL, RETIRED,
];
const RW_ALL: &[&str] = &[RW_READERS, RW_FENCES, RW_WRITER, RW_WAITING];

/// A script call: the script, its keys (suffixes of the lock's names) and arguments.
#[derive(Clone, Copy)]
struct Call {
    what: &'static str,
    script: &'static Lua,
    keys: &'static [&'static str],
    args: &'static [&'static str],
}

/// A script under test, and how its lock is held in the "held" state (an acquire by `TOKEN`).
struct Case {
    call: Call,
    /// Positions in `args` of ttls in ms.
    ms: &'static [usize],
    /// Position in `args` of a permit count.
    count: Option<usize>,
    held_by: &'static [Call],
}

const fn call(
    what: &'static str,
    script: &'static Lua,
    keys: &'static [&'static str],
    args: &'static [&'static str],
) -> Call {
    Call {
        what,
        script,
        keys,
        args,
    }
}

const TAKE_MUTEX: Call = call("acquire", &ACQUIRE, MUTEX_ACQUIRE, TTLS);
const TAKE_PERMIT: Call = call("acquire permit", &ACQUIRE_PERMIT, SEM_ACQUIRE, PERMIT);
const TAKE_READ: Call = call("acquire read", &ACQUIRE_READ, RW_ACQUIRE, TTLS);
const TAKE_WRITE: Call = call("acquire write", &ACQUIRE_WRITE, RW_ACQUIRE, TTLS);

fn cases() -> Vec<Case> {
    let case = |call, ms: &'static [usize], count, held_by: &'static [Call]| Case {
        call,
        ms,
        count,
        held_by,
    };
    vec![
        case(TAKE_MUTEX, &[1, 2], None, &[TAKE_MUTEX]),
        case(
            call("extend", &EXTEND, MUTEX_KEYS, TTLS),
            &[1, 2],
            None,
            &[TAKE_MUTEX],
        ),
        case(
            call("release", &RELEASE, MUTEX_RELEASE, RELEASE_ARGS),
            &[1],
            None,
            &[TAKE_MUTEX],
        ),
        case(call("inspect", &INSPECT, &[LEASE], &[]), &[], None, &[]),
        case(
            call("force release", &FORCE_RELEASE, &[LEASE, CHANNEL], &[]),
            &[],
            None,
            &[],
        ),
        case(TAKE_PERMIT, &[1, 3], Some(2), &[TAKE_PERMIT]),
        case(
            call("release permit", &RELEASE_PERMIT, SEM_RELEASE, RELEASE_ARGS),
            &[1],
            None,
            &[TAKE_PERMIT],
        ),
        case(
            call("extend permit", &EXTEND_PERMIT, SEM_EXTEND, TTLS),
            &[1, 2],
            None,
            &[TAKE_PERMIT],
        ),
        case(
            call("extend permit (oom)", &EXTEND_PERMIT_OOM, SEM_EXTEND, TTLS),
            &[1, 2],
            None,
            &[TAKE_PERMIT],
        ),
        case(
            call("permit holders", &PERMIT_HOLDERS, SEM_ONLY, &[]),
            &[],
            None,
            &[],
        ),
        case(TAKE_READ, &[1, 2], None, &[TAKE_READ]),
        case(TAKE_WRITE, &[1, 2], None, &[TAKE_WRITE, TAKE_READ]),
        case(
            call("release rw", &RELEASE_RW, RW_RELEASE, RELEASE_ARGS),
            &[1],
            None,
            &[TAKE_READ, TAKE_WRITE],
        ),
        case(
            call("extend rw", &EXTEND_RW, RW_EXTEND, TTLS),
            &[1, 2],
            None,
            &[TAKE_READ, TAKE_WRITE],
        ),
        case(
            call("extend rw (oom)", &EXTEND_RW_OOM, RW_EXTEND, TTLS),
            &[1, 2],
            None,
            &[TAKE_READ, TAKE_WRITE],
        ),
        case(
            call(
                "reacquire permit (oom)",
                &REACQUIRE_MEMBER_OOM,
                SEM_ACQUIRE,
                PERMIT,
            ),
            &[1, 3],
            Some(2),
            &[TAKE_PERMIT],
        ),
        case(
            call(
                "reacquire read (oom)",
                &REACQUIRE_MEMBER_OOM,
                RW_ACQUIRE,
                TTLS,
            ),
            &[1, 2],
            None,
            &[TAKE_READ],
        ),
        case(call("inspect rw", &INSPECT_RW, RW_ALL, &[]), &[], None, &[]),
    ]
}

/// Values no ttl or count may take.
const BAD_NUMBERS: &[&str] = &[
    "0",
    "007",
    "-5",
    "-0",
    "1.5",
    "abc",
    "",
    "1e3",
    "0x10",
    " 5",
    "inf",
    "nan",
    "3153600000001",
    "99999999999999999999",
];

tokio::task_local! {
    /// How [`run`] calls scripts in this task (`EVALSHA` outside a scope).
    static CALLS: Calls;
}

fn calls() -> Calls {
    CALLS.try_with(|c| *c).unwrap_or(Calls::Eval)
}

async fn run(
    conn: &mut MultiplexedConnection,
    key: &LockKey,
    script: &Lua,
    keys: &[&str],
    args: &[&str],
) -> Result<Value, RedisError> {
    if calls() == Calls::Functions {
        let mut cmd = redis::cmd(if read_only(script) {
            "FCALL_RO"
        } else {
            "FCALL"
        });
        cmd.arg(script.function).arg(keys.len());
        for suffix in keys {
            cmd.arg(name(key, suffix));
        }
        for arg in args {
            cmd.arg(*arg);
        }
        return cmd.query_async(conn).await;
    }
    let mut invocation = script.eval().prepare_invoke();
    for suffix in keys {
        invocation.key(name(key, suffix));
    }
    for arg in args {
        invocation.arg(*arg);
    }
    invocation.invoke_async(conn).await
}

/// Every key of the database with its serialized value and its `PTTL`.
async fn snapshot(conn: &mut MultiplexedConnection) -> Vec<(String, Value, i64)> {
    let mut names: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("KEYS: {e}"));
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let dump: Value = redis::cmd("DUMP")
            .arg(&n)
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("DUMP: {e}"));
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&n)
            .query_async(conn)
            .await
            .unwrap_or_else(|e| panic!("PTTL: {e}"));
        out.push((n, dump, pttl));
    }
    out
}

/// The same keys with the same values, and no expiry moved on, removed or added.
fn unchanged(what: &str, before: &[(String, Value, i64)], after: &[(String, Value, i64)]) {
    assert_eq!(before.len(), after.len(), "{what}: {before:?} -> {after:?}");
    for ((n0, v0, t0), (n1, v1, t1)) in before.iter().zip(after) {
        assert_eq!((n0, v0), (n1, v1), "{what}");
        let same_kind = (*t0 < 0 && t0 == t1) || (*t0 > 0 && *t1 > 0 && t1 <= t0);
        assert!(same_kind, "{what}: {n0} PTTL {t0} -> {t1}");
    }
}

/// `call` with `args` is refused with `ERR locks: ...` that mentions `about`, and leaves the
/// store as it was.
async fn refused(
    conn: &mut MultiplexedConnection,
    key: &LockKey,
    (what, about): (&str, &str),
    call: &Call,
    keys: &[&str],
    args: &[&str],
) {
    let before = snapshot(conn).await;
    let reply = run(conn, key, call.script, keys, args).await;
    let what = format!("{what}: {} {keys:?} {args:?}", call.what);
    match &reply {
        Err(e)
            if e.code() == Some("ERR")
                && e.detail()
                    .is_some_and(|d| d.starts_with("locks:") && d.contains(about)) => {}
        other => panic!("{what}: expected an `ERR locks: ...{about}...` reply, got {other:?}"),
    }
    unchanged(&what, &before, &snapshot(conn).await);
}

/// A private server and a plain connection to it.
async fn server() -> (RedisServer, MultiplexedConnection) {
    let server = RedisServer::start_with(RedisServerConfig::new().local_only())
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let conn = server
        .connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection: {e}"));
    (server, conn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_script_refuses_bad_arguments_before_writing_anything() {
    let (_server, mut conn) = server().await;
    refuses_bad_arguments(&mut conn).await;
    // The same through the function library.
    let _: Value = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library_source())
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("FUNCTION LOAD: {e}"));
    CALLS
        .scope(Calls::Functions, refuses_bad_arguments(&mut conn))
        .await;
}

/// A release that finds nothing retires the token: an acquire with it is refused afterwards
/// (with an error, writing nothing), for every kind; a release that found the lease does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_finds_nothing_retires_the_token() {
    let (_server, mut conn) = server().await;
    let key = LockKey::new("_lock:", "retired").unwrap_or_else(|e| panic!("{e}"));
    let pairs = [
        (
            TAKE_MUTEX,
            call("release", &RELEASE, MUTEX_RELEASE, RELEASE_ARGS),
        ),
        (
            TAKE_PERMIT,
            call("release permit", &RELEASE_PERMIT, SEM_RELEASE, RELEASE_ARGS),
        ),
        (
            TAKE_READ,
            call("release rw", &RELEASE_RW, RW_RELEASE, RELEASE_ARGS),
        ),
        (
            TAKE_WRITE,
            call("release rw", &RELEASE_RW, RW_RELEASE, RELEASE_ARGS),
        ),
    ];
    for (take, release) in pairs {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("FLUSHALL: {e}"));
        // Held, then released: the token may not come back (the service never reuses it),
        // but nothing marks it either.
        let got = run(&mut conn, &key, take.script, take.keys, take.args).await;
        assert!(got.is_ok(), "{}: {got:?}", take.what);
        let released = run(&mut conn, &key, release.script, release.keys, release.args).await;
        assert_eq!(released.ok(), Some(Value::Int(1)), "{}", release.what);
        assert!(
            snapshot(&mut conn)
                .await
                .iter()
                .all(|(n, _, _)| !n.ends_with(":retired"))
        );
        // A release that finds nothing: the token is retired for the time given.
        let released = run(&mut conn, &key, release.script, release.keys, release.args).await;
        assert_eq!(released.ok(), Some(Value::Int(0)), "{}", release.what);
        let pttl: i64 = redis::cmd("PTTL")
            .arg(name(&key, RETIRED))
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("PTTL: {e}"));
        assert!(
            (110_000..=120_001).contains(&pttl),
            "{}: {pttl}",
            release.what
        );
        let before = snapshot(&mut conn).await;
        let late = run(&mut conn, &key, take.script, take.keys, take.args).await;
        match &late {
            Err(e)
                if e.detail().is_some_and(|d| {
                    d == "locks-retired: this owner token was released; an acquire with it is refused"
                }) => {}
            other => panic!("{}: a retired token got {other:?}", take.what),
        }
        unchanged(take.what, &before, &snapshot(&mut conn).await);
        // Another token is not affected.
        let other: Vec<&str> = std::iter::once("another-token")
            .chain(take.args[1..].iter().copied())
            .collect();
        let got = run(&mut conn, &key, take.script, take.keys, &other).await;
        assert!(got.is_ok(), "{}: another token: {got:?}", take.what);
    }
}

async fn refuses_bad_arguments(conn: &mut MultiplexedConnection) {
    let mut conn = conn.clone();
    for (i, case) in cases().iter().enumerate() {
        let c = &case.call;
        let states = std::iter::once(None).chain(case.held_by.iter().map(Some));
        for (j, held_by) in states.enumerate() {
            let _: () = redis::cmd("FLUSHALL")
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("FLUSHALL: {e}"));
            let key = LockKey::new("_lock:", &format!("args:{i}:{j}")).unwrap_or_else(|e| {
                panic!("{e}");
            });
            let state = match held_by {
                None => "free".to_owned(),
                Some(setup) => {
                    let got = run(&mut conn, &key, setup.script, setup.keys, setup.args).await;
                    assert!(got.is_ok(), "{}: {got:?}", setup.what);
                    format!("held ({})", setup.what)
                }
            };
            let state = state.as_str();
            let mut args: Vec<&str> = c.args.to_vec();
            let ms = case
                .ms
                .iter()
                .map(|p| (*p, "ttl must be an integer number of ms"));
            let count = case.count.map(|p| (p, "permit count must be an integer"));
            for (pos, about) in ms.chain(count) {
                // Too large for a count or a ttl (a count above u32::MAX, a ttl above 100
                // years), and the rest.
                for bad in BAD_NUMBERS.iter().chain(&["4294967296000"]) {
                    args[pos] = bad;
                    refused(&mut conn, &key, (state, about), c, c.keys, &args).await;
                }
                args[pos] = c.args[pos];
            }
            if let Some(pos) = case.count {
                args[pos] = "4294967296";
                refused(&mut conn, &key, (state, "permit count"), c, c.keys, &args).await;
                args[pos] = c.args[pos];
            }
            if !c.args.is_empty() {
                args[0] = "";
                refused(&mut conn, &key, (state, "owner token"), c, c.keys, &args).await;
                args[0] = TOKEN;
                let fewer = &args[..args.len() - 1];
                refused(&mut conn, &key, (state, ""), c, c.keys, fewer).await;
            }
            let fewer = &c.keys[..c.keys.len() - 1];
            refused(&mut conn, &key, (state, "keys"), c, fewer, &args).await;
            // And the good call goes through.
            let good = run(&mut conn, &key, c.script, c.keys, c.args).await;
            assert!(good.is_ok(), "{state}: {}: {good:?}", c.what);
        }
    }
}

/// The largest ttl is accepted and sent to Redis as an integer, so a lease gets exactly it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_ttl_is_accepted() {
    let (_server, mut conn) = server().await;
    let key = LockKey::new("_lock:", "largest").unwrap_or_else(|e| panic!("{e}"));
    let max = MAX_PX_MS.to_string();
    let got = run(
        &mut conn,
        &key,
        &ACQUIRE,
        MUTEX_ACQUIRE,
        &[TOKEN, &max, &max],
    )
    .await;
    assert!(got.is_ok(), "{got:?}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(name(&key, LEASE))
        .query_async(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("PTTL: {e}"));
    let max = i64::try_from(MAX_PX_MS).unwrap_or(i64::MAX);
    assert!(pttl > max - 60_000 && pttl <= max, "{pttl}");
}

/// Through the backend, a refused argument (a semaphore of 0 permits, which the service never
/// sends) is a permanent error that says so, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_argument_is_a_permanent_backend_error() {
    let (server, mut conn) = server().await;
    let backend = crate::RedisBackend::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let key = LockKey::new("_lock:", "zero-permits").unwrap_or_else(|e| panic!("{e}"));
    let r = backend
        .try_acquire(
            &key,
            LeaseKind::Permit { limit: 0 },
            OwnerToken::new(),
            Duration::from_secs(1),
        )
        .await;
    let e: BackendError = match r {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    };
    assert!(!e.is_transient(), "{e}");
    assert!(
        e.message().contains("refused an invalid argument") && e.message().contains("permit count"),
        "{}",
        e.message()
    );
    assert!(snapshot(&mut conn).await.is_empty());
}
