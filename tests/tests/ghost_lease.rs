//! No ghost lease (issue 11 item 4): an acquire request held in the network (here: on a
//! connection the client retired after a response timeout) and applied by Redis *after* the
//! caller gave up, or after it got the lease on a retry and released it, leaves nothing
//! behind: the key is free at once and nobody believes they hold it. For every kind of lease.
//!
//! The fault proxy holds the request ([`FaultProxy::stall_open`]: only the connection open
//! then; the client's replacement connection works), and lets it through once the caller is
//! done. `INFO commandstats` tells when Redis has run it. Without the fix (a retried attempt
//! reused the token; a release of a token that holds nothing left no trace) each case leaves
//! a lease, or a writer's waiting mark, that blocks the key for a whole ttl.

use std::time::Duration;

use locks_core::{AcquireOptions, LeaseKind, LockBackend, LockError, LockGuard, LockService};
use locks_redis::RedisBackend;
use locks_redis::redis::aio::MultiplexedConnection;
use locks_testkit::proxy::{Direction, FaultProxy};

mod common;
use common::{SOON, key, private_server, within};

/// Short, so that a held attempt gives up quickly; long enough for a loaded machine.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(400);

const KINDS: [LeaseKind; 4] = [
    LeaseKind::Mutex,
    LeaseKind::Permit { limit: 1 },
    LeaseKind::Read,
    LeaseKind::Write,
];

/// Scripts Redis has run so far (`EVALSHA` calls, failed ones included).
async fn scripts_run(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = locks_redis::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("INFO commandstats: {e}"));
    let Some(line) = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:"))
    else {
        return 0;
    };
    line.split(',')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| matches!(*k, "calls" | "rejected_calls" | "failed_calls"))
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// Wait until Redis has run at least `n` scripts.
async fn until_scripts_run(conn: &mut MultiplexedConnection, n: u64, what: &str) {
    within(what, async {
        while scripts_run(conn).await < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Take `kind` of the lock `name` waiting up to [`SOON`], or with one attempt only.
async fn take(
    locks: &LockService,
    name: &str,
    kind: LeaseKind,
    wait: bool,
) -> Result<LockGuard, LockError> {
    take_within(locks, name, kind, wait.then_some(SOON)).await
}

/// Take `kind` of the lock `name` waiting up to `wait`, or with one attempt only (`None`).
async fn take_within(
    locks: &LockService,
    name: &str,
    kind: LeaseKind,
    wait: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let opts = AcquireOptions::new()
        .ttl(Duration::from_secs(30))
        .wait_timeout(wait.unwrap_or(SOON));
    match (kind, wait.is_some()) {
        (LeaseKind::Mutex, true) => locks.acquire_opts(name, opts).await,
        (LeaseKind::Mutex, false) => locks.try_acquire(name).await,
        (LeaseKind::Permit { limit }, true) => {
            locks.semaphore(name, limit)?.acquire_opts(opts).await
        }
        (LeaseKind::Permit { limit }, false) => locks.semaphore(name, limit)?.try_acquire().await,
        (LeaseKind::Read, true) => locks.rwlock(name)?.read_opts(opts).await,
        (LeaseKind::Read, false) => locks.rwlock(name)?.try_read().await,
        (_, true) => locks.rwlock(name)?.write_opts(opts).await,
        (_, false) => locks.rwlock(name)?.try_write().await,
    }
}

/// Nothing of `kind` is held under `name` (no waiting writer either), and another service
/// takes it with a single attempt.
async fn free(backend: &RedisBackend, other: &LockService, name: &str, kind: LeaseKind) {
    let holders = backend
        .holders(&key(name), kind)
        .await
        .unwrap_or_else(|e| panic!("holders: {e}"));
    assert!(
        holders.leases.is_empty() && !holders.writer_waiting,
        "{kind}: a late acquire left {holders:?}"
    );
    let guard = within("try_acquire", take(other, name, kind, false))
        .await
        .unwrap_or_else(|e| panic!("{kind}: the key is blocked: {e}"));
    guard
        .release()
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

struct Rig {
    proxy: FaultProxy,
    direct: MultiplexedConnection,
    /// Through the proxy.
    locks: LockService,
    /// Straight to the server.
    backend: RedisBackend,
    other: LockService,
    _server: locks_testkit::redis_server::RedisServer,
}

async fn rig() -> Rig {
    let server = private_server(&[]).await;
    let proxy = FaultProxy::for_server(&server)
        .await
        .unwrap_or_else(|e| panic!("fault proxy: {e}"));
    let direct = server
        .connection()
        .await
        .unwrap_or_else(|e| panic!("direct connection: {e}"));
    let proxied = RedisBackend::builder(proxy.url())
        .response_timeout(RESPONSE_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect through the proxy: {e}"));
    let backend = RedisBackend::connect(&server.url())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    let locks = LockService::new(proxied).unwrap_or_else(|e| panic!("{e}"));
    let other = LockService::new(backend.clone()).unwrap_or_else(|e| panic!("{e}"));
    // Every script in the server's cache: no `NOSCRIPT` round trip counts as a run below.
    for kind in KINDS {
        let g = within("warm-up", take(&locks, "warm-up", kind, true))
            .await
            .unwrap_or_else(|e| panic!("warm-up {kind}: {e}"));
        g.release().await.unwrap_or_else(|e| panic!("{e}"));
        // A release that finds nothing (the path that retires a token).
        let g = within("warm-up", take(&locks, "warm-up", kind, true))
            .await
            .unwrap_or_else(|e| panic!("warm-up {kind}: {e}"));
        within("force release", other_force(&other, kind)).await;
        let _ = g.release().await;
    }
    Rig {
        proxy,
        direct,
        locks,
        backend,
        other,
        _server: server,
    }
}

/// One operation through the proxy, so that whatever the backend does after a reconnection
/// (reading the eviction policy again) is done before the next request is held.
async fn settle(locks: &LockService) {
    within("settle", locks.is_locked("settle"))
        .await
        .unwrap_or_else(|e| panic!("settle: {e}"));
}

async fn other_force(other: &LockService, kind: LeaseKind) {
    let k = key("warm-up");
    other
        .backend()
        .force_release(&k, kind)
        .await
        .unwrap_or_else(|e| panic!("force release: {e}"));
}

/// The caller gives up (a single attempt that times out; for a writer, whose single attempt
/// reads the lock first, a wait budget shorter than the response timeout); the attempt
/// reaches Redis after the service retired its token. Nothing is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_applied_after_the_caller_gave_up_leaves_no_lease() {
    let mut rig = rig().await;
    for kind in KINDS {
        let name = format!("gave-up:{kind}");
        settle(&rig.locks).await;
        let before = scripts_run(&mut rig.direct).await;
        rig.proxy.stall_open(Direction::ClientToServer);
        let budget = (kind == LeaseKind::Write).then_some(Duration::from_millis(100));
        let attempt = within("try_acquire", take_within(&rig.locks, &name, kind, budget)).await;
        assert!(attempt.is_err(), "{kind}: the held attempt got {attempt:?}");
        // The service's release of the attempt's token, on a new connection.
        until_scripts_run(&mut rig.direct, before + 1, "the retiring release").await;
        rig.proxy.resume(Direction::ClientToServer);
        until_scripts_run(&mut rig.direct, before + 2, "the late acquire").await;
        free(&rig.backend, &rig.other, &name, kind).await;
    }
}

/// The first attempt is held; the service retries on a new connection, gets the lease,
/// and the caller releases it. Then the first attempt reaches Redis: no lease comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_applied_after_the_lease_was_released_does_not_resurrect_it() {
    let mut rig = rig().await;
    for kind in KINDS {
        let name = format!("resurrect:{kind}");
        settle(&rig.locks).await;
        rig.proxy.stall_open(Direction::ClientToServer);
        let guard = within("acquire", take(&rig.locks, &name, kind, true))
            .await
            .unwrap_or_else(|e| panic!("{kind}: acquire after a held attempt: {e}"));
        guard
            .release()
            .await
            .unwrap_or_else(|e| panic!("{kind}: release: {e}"));
        let before = scripts_run(&mut rig.direct).await;
        rig.proxy.resume(Direction::ClientToServer);
        until_scripts_run(&mut rig.direct, before + 1, "the late acquire").await;
        free(&rig.backend, &rig.other, &name, kind).await;
    }
}
