//! The Redis backend against a real `redis-server` (the testkit fixture), never a mock.
//!
//! Real-time tests: every wait is bounded by `tokio::time::timeout`, and no assertion is about
//! speed beyond "well inside the budget".

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use locks_core::{
    AcquireOptions, AcquireResult, BackendError, Holders, LeaseInfo, LeaseKind, LockBackend,
    LockError, LockKey, LockService, LostReason, OwnerToken, RetryPolicy, RwInfo, Wake,
};
use locks_memory::MemoryBackend;
use locks_redis::redis::{self, AsyncCommands, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisBackendError, RedisKeys};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

/// Bound for anything that should happen "at once" in real time.
const SOON: Duration = Duration::from_secs(5);

fn fail<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

async fn start_server(private: bool) -> RedisServer {
    let cfg = if private {
        RedisServerConfig::new().local_only()
    } else {
        RedisServerConfig::new()
    };
    RedisServer::start_with(cfg)
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"))
}

async fn backend(server: &RedisServer) -> RedisBackend {
    RedisBackend::builder(server.url())
        .connect_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e}", server.url()))
}

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap_or_else(|e| panic!("client: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("raw connection: {e}"))
}

/// A key name no other test (or run, on a shared external server) uses.
fn unique(name: &str) -> String {
    format!("{name}:{}", OwnerToken::new())
}

fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).unwrap_or_else(|e| panic!("{e}"))
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(SOON, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {SOON:?}"))
}

/// Poll `check` until it holds (bounded by [`SOON`]).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn numsub(conn: &mut MultiplexedConnection, channel: &str) -> i64 {
    redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(channel)
        .query_async::<(String, i64)>(conn)
        .await
        .map(|(_, n)| n)
        .unwrap_or(-1)
}

/// The holder of the mutex `k`, if any.
async fn mutex_holder(
    backend: &dyn LockBackend,
    k: &LockKey,
) -> Result<Option<LeaseInfo>, BackendError> {
    let holders = backend.holders(k, MUTEX).await?;
    assert!(holders.leases.len() <= 1, "{holders:?}");
    Ok(holders.leases.first().copied())
}

/// Retry a backend call through the transient errors of a reconnection.
async fn retry<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BackendError>>,
{
    within(what, async {
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{what}: permanent error {e}"),
            }
        }
    })
    .await
}

fn acquired(r: Result<AcquireResult, BackendError>) -> u64 {
    match r {
        Ok(AcquireResult::Acquired(lease)) => lease.fence,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

const MUTEX: LeaseKind = LeaseKind::Mutex;
const READ: LeaseKind = LeaseKind::Read;
const WRITE: LeaseKind = LeaseKind::Write;

/// A semaphore permit of `limit` (the limit only matters to an acquire).
fn permit(limit: u32) -> LeaseKind {
    LeaseKind::Permit { limit }
}

/// The lines of a scripted sequence of operations, with fences replaced by their rank of
/// appearance and owners by their names, so that two backends can be compared line by line.
struct Trace {
    ttl: Duration,
    owners: Vec<(OwnerToken, &'static str)>,
    fences: Vec<u64>,
    lines: Vec<String>,
}

impl Trace {
    fn new(ttl: Duration, owners: &[(OwnerToken, &'static str)]) -> Self {
        Trace {
            ttl,
            owners: owners.to_vec(),
            fences: Vec::new(),
            lines: Vec::new(),
        }
    }

    fn rank(&mut self, fence: u64) -> String {
        let pos = self
            .fences
            .iter()
            .position(|x| *x == fence)
            .unwrap_or_else(|| {
                self.fences.push(fence);
                self.fences.len() - 1
            });
        format!("fence#{pos}")
    }

    fn who(&self, token: OwnerToken) -> &'static str {
        self.owners
            .iter()
            .find(|(t, _)| *t == token)
            .map_or("?", |(_, n)| *n)
    }

    fn line(&mut self, label: &str, shown: impl std::fmt::Display) {
        self.lines.push(format!("{label}: {shown}"));
    }

    /// An acquire attempt: acquired (with the fence's rank) or held (with a sane hint).
    fn step(&mut self, label: &str, r: Result<AcquireResult, BackendError>) {
        let shown = match r {
            Ok(AcquireResult::Acquired(l)) => format!("acquired {}", self.rank(l.fence)),
            Ok(AcquireResult::Held { remaining }) => format!(
                "held, remaining in (0, ttl]: {}",
                remaining.is_some_and(|r| !r.is_zero() && r <= self.ttl)
            ),
            Err(e) => format!("error {e}"),
        };
        self.line(label, shown);
    }

    /// An extend or a release.
    fn flag(&mut self, label: &str, r: Result<bool, BackendError>) {
        self.line(label, format!("{:?}", r.map_err(|e| e.to_string())));
    }

    fn list(&mut self, infos: &[LeaseInfo]) -> String {
        infos
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} (<= 20 s: {})",
                    self.who(i.owner),
                    i.kind.label(),
                    self.rank(i.fence),
                    i.remaining <= Duration::from_secs(20)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The holders of a mutex or a semaphore.
    fn holders(&mut self, label: &str, r: Result<Holders, BackendError>) {
        let shown = match r {
            Ok(h) => format!("[{}], waiting {}", self.list(&h.leases), h.writer_waiting),
            Err(e) => format!("error {e}"),
        };
        self.line(label, shown);
    }

    /// The readers, writer and waiting mark of a read-write lock.
    fn rw(&mut self, label: &str, r: Result<Holders, BackendError>) {
        let shown = match r.map(RwInfo::from) {
            Ok(i) => format!(
                "readers [{}], writer [{}], waiting {}",
                self.list(&i.readers),
                self.list(i.writer.as_slice()),
                i.writer_waiting
            ),
            Err(e) => format!("error {e}"),
        };
        self.line(label, shown);
    }

    /// The lines, and a last one saying whether the raw fences strictly increase (each new
    /// holder got the next rank, so the ranks prove the sequence).
    fn finish(mut self) -> Vec<String> {
        let increasing = self.fences.windows(2).all(|w| w[0] < w[1]);
        self.line("fences strictly increase", increasing);
        self.lines
    }
}

/// The remaining ttl of `token`'s lease of `kind`, if it holds one.
async fn remaining_of(
    backend: &dyn LockBackend,
    k: &LockKey,
    kind: LeaseKind,
    token: OwnerToken,
) -> Option<Duration> {
    let holders = backend.holders(k, kind).await.ok()?;
    holders
        .leases
        .into_iter()
        .find(|i| i.owner == token)
        .map(|i| i.remaining)
}

/// Run `script` on a memory backend and on Redis under the same (fresh) name: the traces must
/// be equal line by line. Returns the trace, for checks that it exercised what it should.
async fn same_as_memory<F>(name: &str, script: F) -> Vec<String>
where
    F: for<'a> Fn(&'a dyn LockBackend, &'a str) -> BoxFuture<'a, Vec<String>>,
{
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let memory = MemoryBackend::new();
    let name = unique(name);
    let expected = script(&memory, &name).await;
    let got = script(&redis, &name).await;
    assert_eq!(got, expected);
    assert_eq!(
        expected.last().map(String::as_str),
        Some("fences strictly increase: true")
    );
    assert_eq!(redis.name(), "redis");
    expected
}

/// One scripted sequence of mutex operations.
async fn trace(backend: &dyn LockBackend, name: &str) -> Vec<String> {
    let k = key(name);
    let (a, b) = (OwnerToken::new(), OwnerToken::new());
    let ttl = Duration::from_secs(10);
    let mut t = Trace::new(ttl, &[(a, "a"), (b, "b")]);

    t.step("a acquires", backend.try_acquire(&k, MUTEX, a, ttl).await);
    t.step(
        "a acquires again",
        backend.try_acquire(&k, MUTEX, a, ttl).await,
    );
    t.step("b acquires", backend.try_acquire(&k, MUTEX, b, ttl).await);
    t.holders("inspect", backend.holders(&k, MUTEX).await);
    t.flag("b releases", backend.release(&k, MUTEX, b).await);
    t.flag("b extends", backend.extend(&k, MUTEX, b, ttl).await);
    t.flag(
        "a extends",
        backend.extend(&k, MUTEX, a, Duration::from_secs(20)).await,
    );
    let remaining = remaining_of(backend, &k, MUTEX, a).await;
    t.line(
        "extended past the old ttl",
        remaining.is_some_and(|r| r > ttl),
    );
    t.flag("a releases", backend.release(&k, MUTEX, a).await);
    t.flag("a releases again", backend.release(&k, MUTEX, a).await);
    t.flag(
        "a extends after release",
        backend.extend(&k, MUTEX, a, ttl).await,
    );
    t.holders("inspect", backend.holders(&k, MUTEX).await);
    t.step("b acquires", backend.try_acquire(&k, MUTEX, b, ttl).await);
    t.flag("force release", backend.force_release(&k, MUTEX).await);
    t.flag(
        "force release again",
        backend.force_release(&k, MUTEX).await,
    );
    t.holders("inspect", backend.holders(&k, MUTEX).await);
    t.flag(
        "b releases after force",
        backend.release(&k, MUTEX, b).await,
    );
    // Expiry by the store's own clock.
    t.step(
        "a acquires for 100 ms",
        backend
            .try_acquire(&k, MUTEX, a, Duration::from_millis(100))
            .await,
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    t.holders("inspect after expiry", backend.holders(&k, MUTEX).await);
    t.flag(
        "a extends after expiry",
        backend.extend(&k, MUTEX, a, ttl).await,
    );
    t.step(
        "b acquires after expiry",
        backend.try_acquire(&k, MUTEX, b, ttl).await,
    );
    t.flag("b releases", backend.release(&k, MUTEX, b).await);
    t.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_match_the_memory_backend() {
    let expected = same_as_memory("semantics", |b, n| Box::pin(trace(b, n))).await;
    assert!(expected.iter().any(|l| l == "b acquires: acquired fence#1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_is_idempotent_for_the_same_token() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let k = key(&unique("idempotent"));
    let token = OwnerToken::new();
    let first = acquired(
        redis
            .try_acquire(&k, MUTEX, token, Duration::from_secs(2))
            .await,
    );
    // A retried acquire (reply lost) gets the same fence and a fresh, longer ttl.
    let again = acquired(
        redis
            .try_acquire(&k, MUTEX, token, Duration::from_secs(30))
            .await,
    );
    assert_eq!(first, again);
    let info = mutex_holder(&redis, &k)
        .await
        .map_err(fail("holders"))
        .and_then(|i| i.ok_or_else(|| "no lease".to_owned()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.owner, token);
    assert_eq!(info.fence, first);
    assert!(info.remaining > Duration::from_secs(2), "{info:?}");
    // Fences are seeded from the server clock in microseconds.
    assert!(first > 1_600_000_000_000_000, "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_strictly_increase_across_holders() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let k = key(&unique("fences"));
    let mut last = 0;
    for _ in 0..50 {
        let token = OwnerToken::new();
        let fence = acquired(
            redis
                .try_acquire(&k, MUTEX, token, Duration::from_secs(5))
                .await,
        );
        assert!(fence > last, "{fence} after {last}");
        last = fence;
        assert_eq!(redis.release(&k, MUTEX, token).await.ok(), Some(true));
    }
    // Through the service, with contention: every holder's fence is larger than the one before.
    let locks = LockService::new(redis.clone()).unwrap_or_else(|e| panic!("{e}"));
    let name = unique("fences-contended");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (locks, name, seen) = (locks.clone(), name.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let guard = locks.acquire(&name).await.map_err(|e| e.to_string())?;
                seen.lock().map_err(|e| e.to_string())?.push(guard.fence());
                guard.release().await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        within("contended workers", t)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 40);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_still_work_after_script_flush() {
    let server = start_server(true).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let k = key("flush");
    let (a, b) = (OwnerToken::new(), OwnerToken::new());
    let ttl = Duration::from_secs(5);
    let f1 = acquired(redis.try_acquire(&k, MUTEX, a, ttl).await);
    let flush = || {
        let mut conn = conn.clone();
        async move {
            redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query_async::<()>(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("SCRIPT FLUSH: {e}"));
        }
    };
    flush().await;
    assert_eq!(redis.extend(&k, MUTEX, a, ttl).await.ok(), Some(true));
    flush().await;
    assert_eq!(
        mutex_holder(&redis, &k)
            .await
            .ok()
            .flatten()
            .map(|i| i.owner),
        Some(a)
    );
    flush().await;
    assert_eq!(redis.release(&k, MUTEX, a).await.ok(), Some(true));
    flush().await;
    let f2 = acquired(redis.try_acquire(&k, MUTEX, b, ttl).await);
    assert!(f2 > f1);
    flush().await;
    assert_eq!(redis.force_release(&k, MUTEX).await.ok(), Some(true));
    let loaded: Vec<bool> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg("0000000000000000000000000000000000000000")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    assert_eq!(loaded, vec![false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_keep_increasing_after_an_empty_restart() {
    let mut server = start_server(true).await;
    let redis = backend(&server).await;
    let mut max = 0;
    for i in 0..5 {
        let k = key(&format!("restart:{i}"));
        for _ in 0..3 {
            let t = OwnerToken::new();
            max = max.max(acquired(
                redis
                    .try_acquire(&k, MUTEX, t, Duration::from_secs(60))
                    .await,
            ));
            assert_eq!(redis.release(&k, MUTEX, t).await.ok(), Some(true));
        }
        // Leave the last one held: the restart loses it.
        max = max.max(acquired(
            redis
                .try_acquire(&k, MUTEX, OwnerToken::new(), Duration::from_secs(60))
                .await,
        ));
    }
    server
        .restart()
        .await
        .unwrap_or_else(|e| panic!("restart: {e}"));
    for i in 0..5 {
        let k = key(&format!("restart:{i}"));
        let info = retry("holders after restart", || mutex_holder(&redis, &k)).await;
        assert_eq!(info, None, "the restart lost every lease");
        let fence = match retry("acquire after restart", || {
            redis.try_acquire(&k, MUTEX, OwnerToken::new(), Duration::from_secs(60))
        })
        .await
        {
            AcquireResult::Acquired(l) => l.fence,
            other => panic!("{other:?}"),
        };
        assert!(fence > max, "fence {fence} after restart <= {max}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holder_notices_loss_when_the_server_is_down_longer_than_the_ttl() {
    let mut server = start_server(true).await;
    let redis = backend(&server).await;
    let locks = LockService::new(redis).unwrap_or_else(|e| panic!("{e}"));
    let guard = locks
        .acquire_opts(
            "lost",
            AcquireOptions::new().ttl(Duration::from_millis(300)),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lost = guard.lost();
    server.stop().await.unwrap_or_else(|e| panic!("stop: {e}"));
    let reason = within("lost()", lost).await;
    assert_eq!(reason, LostReason::DeadlineExpired);
    assert!(!guard.is_held().await.unwrap_or(false));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_address_fails_within_the_connect_timeout() {
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(timeout)
        .connect()
        .await;
    let took = started.elapsed();
    match result {
        Err(e @ RedisBackendError::Connect { .. }) => {
            assert!(e.is_transient());
            assert!(std::error::Error::source(&e).is_some());
        }
        Err(RedisBackendError::ConnectTimeout { .. }) => {}
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(took <= timeout + Duration::from_millis(500), "{took:?}");

    // Bad URLs and options are typed too, and never echo a password.
    let err = RedisBackend::connect("http://user:hunter2@127.0.0.1:1")
        .await
        .err();
    assert!(
        matches!(err, Some(RedisBackendError::InvalidUrl { .. })),
        "{err:?}"
    );
    assert!(
        !err.map(|e| e.to_string())
            .unwrap_or_default()
            .contains("hunter2")
    );
    let err = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .response_timeout(Duration::ZERO)
        .connect()
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(RedisBackendError::InvalidOption {
                option: "response_timeout",
                ..
            })
        ),
        "{err:?}"
    );
    let err = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
        .response_timeout(Duration::from_nanos(1))
        .connect()
        .await
        .err();
    assert!(
        matches!(
            err,
            Some(RedisBackendError::InvalidOption {
                option: "response_timeout",
                ..
            })
        ),
        "{err:?}"
    );
    #[cfg(not(feature = "tls"))]
    {
        let err = RedisBackend::connect("rediss://127.0.0.1:1").await.err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.to_string().contains("`tls` feature")),
            "{err:?}"
        );
    }
    // As a LockError, for `?` in applications.
    let lock: LockError = RedisBackendError::ConnectTimeout {
        addr: "x".into(),
        timeout,
    }
    .into();
    assert!(matches!(
        lock,
        LockError::Backend {
            operation: "connect",
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_typed_error() {
    let server =
        RedisServer::start_with(RedisServerConfig::new().args(["--requirepass", "s3cret"]))
            .await
            .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let port = server.port();
    let connect = |url: String| async move {
        within(
            "connect",
            RedisBackend::builder(url)
                .connect_timeout(Duration::from_secs(2))
                .connect(),
        )
        .await
    };
    let wrong = connect(format!("redis://:wrong@127.0.0.1:{port}")).await;
    assert!(
        matches!(wrong, Err(RedisBackendError::Authentication { .. })),
        "{wrong:?}"
    );
    let err = wrong.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!err.contains("wrong@"), "{err}");
    let missing = connect(format!("redis://127.0.0.1:{port}")).await;
    assert!(
        matches!(missing, Err(RedisBackendError::Authentication { .. })),
        "{missing:?}"
    );
    let ok = connect(format!("redis://:s3cret@127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let k = key("auth");
    acquired(
        ok.try_acquire(&k, MUTEX, OwnerToken::new(), Duration::from_secs(5))
            .await,
    );

    // An ACL user with just the keys and channels of the locks.
    let mut admin = redis::Client::open(format!("redis://:s3cret@127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    redis::cmd("ACL")
        .arg(&[
            "SETUSER", "app", "on", ">apppw", "~_lock:*", "&_lock:*", "+@all",
        ])
        .query_async::<()>(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("ACL SETUSER: {e}"));
    let app = connect(format!("redis://app:apppw@127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = OwnerToken::new();
    let k = key("acl");
    acquired(app.try_acquire(&k, MUTEX, t, Duration::from_secs(5)).await);
    assert_eq!(app.release(&k, MUTEX, t).await.ok(), Some(true));
    let bad_user = connect(format!("redis://app:nope@127.0.0.1:{port}")).await;
    assert!(
        matches!(bad_user, Err(RedisBackendError::Authentication { .. })),
        "{bad_user:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_spaces_braces_colons_and_unicode_round_trip() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let locks = LockService::new(redis).unwrap_or_else(|e| panic!("{e}"));
    let run = OwnerToken::new();
    for base in [
        "a b",
        "{tag}",
        "x:y:z",
        "zahlung-übersicht-支付",
        "}{",
        "🔒 {x}:y z",
    ] {
        let name = format!("{base} {run}");
        let guard = locks
            .try_acquire(&name)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert!(locks.is_locked(&name).await.unwrap_or(false), "{name:?}");
        let info = locks.inspect(&name).await.ok().flatten();
        assert_eq!(
            info.map(|i| (i.owner, i.fence)),
            Some((guard.token(), guard.fence()))
        );
        let stored = format!("_lock:{{{name}}}");
        let exists: bool = conn.exists(&stored).await.unwrap_or(false);
        assert!(exists, "{stored:?} not found");
        let owner: Option<String> = conn.hget(&stored, "owner").await.unwrap_or(None);
        assert_eq!(owner, Some(guard.token().to_hyphenated()));
        let fence: Option<String> = conn.hget(&stored, "fence").await.unwrap_or(None);
        assert_eq!(fence, Some(guard.fence().to_string()));
        let counter: Option<String> = conn.get(format!("{stored}:fence")).await.unwrap_or(None);
        assert_eq!(counter, Some(guard.fence().to_string()));
        let counter_ttl: i64 = conn.pttl(format!("{stored}:fence")).await.unwrap_or(-3);
        assert!(counter_ttl > 86_000_000, "{counter_ttl}");
        assert_eq!(RedisKeys::new(&key(&name)).lease, stored);
        guard.release().await.unwrap_or_else(|e| panic!("{e}"));
        let exists: bool = conn.exists(&stored).await.unwrap_or(true);
        assert!(!exists, "{stored:?} still there after release");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_a_permanent_error() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let name = unique("wrongtype");
    let _: () = conn
        .set(format!("_lock:{{{name}}}"), "not a lease")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = redis
        .try_acquire(
            &key(&name),
            MUTEX,
            OwnerToken::new(),
            Duration::from_secs(1),
        )
        .await
        .err();
    assert!(err.as_ref().is_some_and(|e| !e.is_transient()), "{err:?}");
    assert!(
        err.as_ref()
            .and_then(|e| std::error::Error::source(e))
            .is_some(),
        "the redis error is kept as the source"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_hears_a_release_after_listen_returns() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let other = backend(&server).await;
    let mut conn = raw(&server).await;
    let k = key(&unique("listen"));
    let channel = RedisKeys::new(&k).channel;
    let holder = OwnerToken::new();
    acquired(
        other
            .try_acquire(&k, MUTEX, holder, Duration::from_secs(60))
            .await,
    );

    let mut listener = redis.listen(&k).await.unwrap_or_else(|e| panic!("{e}"));
    // `listen` returned: the SUBSCRIBE is confirmed, so this release cannot be missed.
    assert_eq!(numsub(&mut conn, &channel).await, 1);
    assert_eq!(other.release(&k, MUTEX, holder).await.ok(), Some(true));
    let wake = within(
        "notification",
        listener.wait_for_release(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(wake.ok(), Some(Wake::Notified));
    // Nothing else happened: the next wait times out.
    let wake = listener.wait_for_release(Duration::from_millis(50)).await;
    assert_eq!(wake.ok(), Some(Wake::TimedOut));

    // Force release notifies too; a second listener shares the subscription.
    let mut second = redis.listen(&k).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(redis.release_channels(), 1);
    acquired(
        other
            .try_acquire(&k, MUTEX, holder, Duration::from_secs(60))
            .await,
    );
    assert_eq!(other.force_release(&k, MUTEX).await.ok(), Some(true));
    for l in [&mut listener, &mut second] {
        let wake = within("notification", l.wait_for_release(Duration::from_secs(60))).await;
        assert_eq!(wake.ok(), Some(Wake::Notified));
    }

    // The last listener gone, the channel is unsubscribed (lazily).
    drop(listener);
    drop(second);
    eventually("UNSUBSCRIBE", || {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move { numsub(&mut conn, &channel).await == 0 }
    })
    .await;
    assert_eq!(redis.release_channels(), 0);
}

/// A waiter whose polling delay is 60 s (and whose holder's ttl is 60 s) can only be woken in
/// time by the release notification.
fn notification_only() -> AcquireOptions {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_is_woken_by_the_release_notification() {
    let server = start_server(false).await;
    let conn = raw(&server).await;
    let holder = LockService::new(backend(&server).await).unwrap_or_else(|e| panic!("{e}"));
    let waiter = LockService::new(backend(&server).await).unwrap_or_else(|e| panic!("{e}"));
    let name = unique("wake");
    let channel = RedisKeys::new(&key(&name)).channel;
    let guard = holder
        .acquire_opts(&name, notification_only())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first_fence = guard.fence();
    let waiting = tokio::spawn({
        let (waiter, name) = (waiter.clone(), name.clone());
        async move { waiter.acquire_opts(&name, notification_only()).await }
    });
    eventually("the waiter subscribes", || {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move { numsub(&mut conn, &channel).await >= 1 }
    })
    .await;
    guard.release().await.unwrap_or_else(|e| panic!("{e}"));
    let got = within("the waiter acquires", waiting)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(got.fence() > first_fence);
    got.release().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiter_acquires_after_the_subscription_connection_is_killed() {
    let server = start_server(true).await;
    let conn = raw(&server).await;
    let redis = backend(&server).await;
    let holder = LockService::new(backend(&server).await).unwrap_or_else(|e| panic!("{e}"));
    let waiter = LockService::new(redis.clone()).unwrap_or_else(|e| panic!("{e}"));
    let name = "killed";
    let k = key(name);
    let channel = RedisKeys::new(&k).channel;
    let subscribers = |want: fn(i64) -> bool| {
        let conn = conn.clone();
        let channel = channel.clone();
        move || {
            let mut conn = conn.clone();
            let channel = channel.clone();
            async move { want(numsub(&mut conn, &channel).await) }
        }
    };
    let subscribed = || subscribers(|n| n >= 1);
    let unsubscribed = || subscribers(|n| n == 0);
    let kill_pubsub = || {
        let mut conn = conn.clone();
        async move {
            let killed: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("CLIENT KILL: {e}"));
            assert!(killed >= 1, "no pub/sub client was killed");
        }
    };

    // A bare listener is woken by the disconnection itself (a release may have been missed).
    let guard = holder
        .acquire_opts(name, notification_only())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut listener = redis.listen(&k).await.unwrap_or_else(|e| panic!("{e}"));
    kill_pubsub().await;
    let wake = within(
        "wake-up on disconnect",
        listener.wait_for_release(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(wake.ok(), Some(Wake::Notified));
    eventually("resubscription", subscribed()).await;
    drop(listener);
    eventually("lazy UNSUBSCRIBE", unsubscribed()).await;

    // A waiter parked across a disconnection still hears the release afterwards.
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.acquire_opts(name, notification_only()).await }
    });
    eventually("the waiter subscribes", subscribed()).await;
    kill_pubsub().await;
    eventually("resubscription", subscribed()).await;
    guard.release().await.unwrap_or_else(|e| panic!("{e}"));
    let got = within("the waiter acquires", waiting)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    got.release().await.unwrap_or_else(|e| panic!("{e}"));
    eventually("lazy UNSUBSCRIBE", unsubscribed()).await;

    // And a waiter that starts after the reconnection is woken as well.
    let guard = holder
        .acquire_opts(name, notification_only())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.acquire_opts(name, notification_only()).await }
    });
    eventually("the waiter subscribes", subscribed()).await;
    guard.release().await.unwrap_or_else(|e| panic!("{e}"));
    let got = within("the waiter acquires", waiting)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    got.release().await.unwrap_or_else(|e| panic!("{e}"));
}

/// `rediss://` through the `tls` feature, against a server whose certificate a test CA signed
/// (made with the `openssl` command-line tool).
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_work() {
    /// Removed on drop, also when the test fails.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let dir = Dir(std::env::temp_dir().join(format!("locks-redis-tls-{}", OwnerToken::new())));
    std::fs::create_dir_all(&dir.0).unwrap_or_else(|e| panic!("{e}"));
    let file = |name: &str| dir.0.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("the TLS test needs the openssl command: {e}"));
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    // A test CA, and a server certificate for localhost signed by it.
    let (ca, ca_key, cert, key_file) = (
        file("ca.pem"),
        file("ca.key"),
        file("cert.pem"),
        file("key.pem"),
    );
    let (csr, ext) = (file("server.csr"), file("ext.cnf"));
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        .unwrap_or_else(|e| panic!("{e}"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=locks test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca,
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key_file,
        "-out",
        &csr,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let server = RedisServer::start_with(RedisServerConfig::new().args([
        "--tls-port".to_owned(),
        tls_port.to_string(),
        "--tls-cert-file".to_owned(),
        cert.clone(),
        "--tls-key-file".to_owned(),
        key_file.clone(),
        "--tls-ca-cert-file".to_owned(),
        ca.clone(),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ]))
    .await
    .unwrap_or_else(|e| panic!("redis fixture with TLS: {e}"));
    let url = format!("rediss://localhost:{tls_port}");

    // The platform's roots do not trust the test CA: a typed error.
    let untrusted = RedisBackend::builder(url.as_str())
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(
            untrusted,
            Err(RedisBackendError::Connect { .. } | RedisBackendError::ConnectTimeout { .. })
        ),
        "{untrusted:?}"
    );

    let root = std::fs::read(&ca).unwrap_or_else(|e| panic!("{e}"));
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = RedisBackend::builder_from_client(client)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("TLS connect: {e}: {:?}", std::error::Error::source(&e)));
    let plain = backend(&server).await;
    let k = key("tls");
    let t = OwnerToken::new();
    acquired(tls.try_acquire(&k, MUTEX, t, Duration::from_secs(60)).await);
    let mut listener = plain.listen(&k).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(tls.release(&k, MUTEX, t).await.ok(), Some(true));
    let wake = within("notification", listener.wait_for_release(SOON)).await;
    assert_eq!(wake.ok(), Some(Wake::Notified));
}

// ---- Semaphores and read-write locks ---------------------------------------------------------

/// The server's clock (`TIME`) in milliseconds.
async fn server_ms(conn: &mut MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .unwrap_or_else(|e| panic!("TIME: {e}"));
    secs * 1000 + micros / 1000
}

async fn zscore(conn: &mut MultiplexedConnection, set: &str, token: OwnerToken) -> Option<u64> {
    let score: Option<f64> = conn
        .zscore(set, token.to_hyphenated())
        .await
        .unwrap_or_else(|e| panic!("ZSCORE {set}: {e}"));
    score.map(|s| s as u64)
}

async fn zcard(conn: &mut MultiplexedConnection, set: &str) -> usize {
    conn.zcard(set)
        .await
        .unwrap_or_else(|e| panic!("ZCARD {set}: {e}"))
}

async fn hlen(conn: &mut MultiplexedConnection, hash: &str) -> usize {
    conn.hlen(hash)
        .await
        .unwrap_or_else(|e| panic!("HLEN {hash}: {e}"))
}

async fn pttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    conn.pttl(key)
        .await
        .unwrap_or_else(|e| panic!("PTTL {key}: {e}"))
}

/// The readers, writer and waiting mark of the read-write lock `k`.
async fn rw_info(backend: &dyn LockBackend, k: &LockKey) -> RwInfo {
    let holders = backend
        .holders(k, READ)
        .await
        .unwrap_or_else(|e| panic!("holders: {e}"));
    RwInfo::from(holders)
}

fn held_remaining(r: Result<AcquireResult, BackendError>) -> Duration {
    match r {
        Ok(AcquireResult::Held {
            remaining: Some(remaining),
        }) => remaining,
        other => panic!("expected Held with a hint, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_never_exceeds_its_permits_and_reclaims_expired_ones_on_acquire() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let k = key(&unique("sem-reclaim"));
    let keys = RedisKeys::new(&k);
    let long = Duration::from_secs(60);

    // A burst of 20 concurrent acquirers on 3 permits: exactly 3 get in.
    let burst = |n: usize| {
        let redis = redis.clone();
        let k = k.clone();
        async move {
            let tokens: Vec<OwnerToken> = (0..n).map(|_| OwnerToken::new()).collect();
            let results = futures::future::join_all(
                tokens
                    .iter()
                    .map(|t| redis.try_acquire(&k, permit(3), *t, long)),
            )
            .await;
            let mut winners = Vec::new();
            for (t, r) in tokens.into_iter().zip(results) {
                match r {
                    Ok(AcquireResult::Acquired(lease)) => winners.push((t, lease.fence)),
                    Ok(AcquireResult::Held { remaining }) => assert!(
                        remaining.is_some_and(|r| !r.is_zero() && r <= long),
                        "{remaining:?}"
                    ),
                    Err(e) => panic!("permit: {e}"),
                }
            }
            winners
        }
    };
    let winners = burst(20).await;
    assert_eq!(winners.len(), 3, "{winners:?}");
    assert_eq!(zcard(&mut conn, &keys.semaphore).await, 3);
    assert_eq!(hlen(&mut conn, &keys.semaphore_fences).await, 3);
    let holders = redis
        .holders(&k, permit(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .leases;
    assert_eq!(holders.len(), 3);
    assert!(holders.windows(2).all(|w| w[0].fence < w[1].fence));
    for (t, fence) in &winners {
        assert!(holders.iter().any(|h| h.owner == *t && h.fence == *fence));
    }
    for (t, _) in &winners {
        assert_eq!(redis.release(&k, permit(3), *t).await.ok(), Some(true));
    }
    // The last release leaves nothing behind.
    let exists: bool = conn.exists(&keys.semaphore).await.unwrap_or(true);
    assert!(!exists);
    let exists: bool = conn.exists(&keys.semaphore_fences).await.unwrap_or(true);
    assert!(!exists);

    // Two permits with a tiny ttl (taken directly through the backend, nothing renews them)
    // and one long one, which keeps the set (and its PEXPIRE) alive.
    let tiny = Duration::from_millis(50);
    let (crashed1, crashed2, alive) = (OwnerToken::new(), OwnerToken::new(), OwnerToken::new());
    let mut last_fence = 0;
    for (t, ttl) in [(crashed1, tiny), (crashed2, tiny), (alive, long)] {
        let fence = acquired(redis.try_acquire(&k, permit(3), t, ttl).await);
        assert!(fence > last_fence);
        last_fence = fence;
    }
    let hint = held_remaining(
        redis
            .try_acquire(&k, permit(3), OwnerToken::new(), long)
            .await,
    );
    assert!(hint <= tiny, "the first permit expires first: {hint:?}");
    let sem_ttl = pttl(&mut conn, &keys.semaphore).await;
    assert!(sem_ttl > 50_000 && sem_ttl <= 60_000, "{sem_ttl}");
    // Wait (by the server's clock) until the tiny permits have expired; they are still in the
    // set, since only a script removes expired members.
    let expiry = zscore(&mut conn, &keys.semaphore, crashed2)
        .await
        .unwrap_or_else(|| panic!("permit missing"));
    eventually("the server clock passes the tiny permits' expiry", || {
        let mut conn = conn.clone();
        async move { server_ms(&mut conn).await > expiry }
    })
    .await;
    assert_eq!(zcard(&mut conn, &keys.semaphore).await, 3);

    let next = OwnerToken::new();
    let fence = acquired(redis.try_acquire(&k, permit(3), next, long).await);
    assert!(fence > last_fence);
    // The acquire script reclaimed both expired permits, and their fences.
    assert_eq!(zcard(&mut conn, &keys.semaphore).await, 2);
    assert_eq!(hlen(&mut conn, &keys.semaphore_fences).await, 2);
    for t in [crashed1, crashed2] {
        assert_eq!(zscore(&mut conn, &keys.semaphore, t).await, None);
        let fence: Option<String> = conn
            .hget(&keys.semaphore_fences, t.to_hyphenated())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fence, None);
        assert_eq!(redis.release(&k, permit(3), t).await.ok(), Some(false));
        assert_eq!(redis.extend(&k, permit(3), t, long).await.ok(), Some(false));
    }
    // One permit left: of another burst, exactly one gets in.
    assert_eq!(burst(10).await.len(), 1);
    assert_eq!(
        redis
            .holders(&k, permit(3))
            .await
            .map(|h| h.leases.len())
            .ok(),
        Some(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_and_reader_expiry_is_the_server_time_plus_the_ttl() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let k = key(&unique("sem-time"));
    let keys = RedisKeys::new(&k);
    let t = OwnerToken::new();
    let ttl = Duration::from_secs(60);

    let before = server_ms(&mut conn).await;
    let fence = acquired(redis.try_acquire(&k, permit(2), t, ttl).await);
    let after = server_ms(&mut conn).await;
    let score = zscore(&mut conn, &keys.semaphore, t)
        .await
        .unwrap_or_else(|| panic!("no permit"));
    assert!(
        (before + 60_000..=after + 60_000).contains(&score),
        "score {score} not TIME + ttl within [{before}, {after}] + 60000"
    );
    let stored: Option<String> = conn
        .hget(&keys.semaphore_fences, t.to_hyphenated())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, Some(fence.to_string()));
    for key in [&keys.semaphore, &keys.semaphore_fences] {
        let left = pttl(&mut conn, key).await;
        assert!(left > 0 && left <= 60_000, "{key}: {left}");
    }
    // Holders report score - TIME.
    let now = server_ms(&mut conn).await;
    let holders = redis
        .holders(&k, permit(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .leases;
    assert_eq!(holders.len(), 1);
    assert_eq!((holders[0].owner, holders[0].fence), (t, fence));
    let reported = u64::try_from(holders[0].remaining.as_millis()).unwrap_or(u64::MAX);
    assert!(
        reported <= score - now && reported + 1000 >= score - now,
        "{reported} vs {}",
        score - now
    );

    // Extending moves the expiry to TIME + the new ttl, and the keys' PEXPIRE with it.
    let before = server_ms(&mut conn).await;
    assert_eq!(
        redis
            .extend(&k, permit(2), t, Duration::from_secs(120))
            .await
            .ok(),
        Some(true)
    );
    let after = server_ms(&mut conn).await;
    let score = zscore(&mut conn, &keys.semaphore, t)
        .await
        .unwrap_or_else(|| panic!("no permit"));
    assert!(
        (before + 120_000..=after + 120_000).contains(&score),
        "{score}"
    );
    assert!(pttl(&mut conn, &keys.semaphore).await > 60_000);
    assert!(pttl(&mut conn, &keys.semaphore_fences).await > 60_000);
    // Idempotent: the same token gets its permit back, same fence, new expiry.
    assert_eq!(
        acquired(redis.try_acquire(&k, permit(2), t, ttl).await),
        fence
    );
    let score = zscore(&mut conn, &keys.semaphore, t).await.unwrap_or(0);
    assert!(score <= server_ms(&mut conn).await + 60_000);
    assert!(pttl(&mut conn, &keys.semaphore).await <= 60_000);

    // Readers too.
    let r = OwnerToken::new();
    let before = server_ms(&mut conn).await;
    let read_fence = acquired(redis.try_acquire(&k, READ, r, ttl).await);
    let after = server_ms(&mut conn).await;
    assert!(read_fence > fence, "one fence counter per key");
    let score = zscore(&mut conn, &keys.rw_readers, r)
        .await
        .unwrap_or_else(|| panic!("no reader"));
    assert!(
        (before + 60_000..=after + 60_000).contains(&score),
        "{score}"
    );
    let left = pttl(&mut conn, &keys.rw_readers).await;
    assert!(left > 0 && left <= 60_000, "{left}");
    let stored: Option<String> = conn
        .hget(&keys.rw_fences, r.to_hyphenated())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stored, Some(read_fence.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_writer_blocks_new_readers_until_its_release_clears_its_mark() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let other = backend(&server).await;
    let mut conn = raw(&server).await;
    let k = key(&unique("rw-waiting"));
    let keys = RedisKeys::new(&k);
    let (r1, r2, w, w2) = (
        OwnerToken::new(),
        OwnerToken::new(),
        OwnerToken::new(),
        OwnerToken::new(),
    );
    let ttl = Duration::from_secs(30);
    let reader_ttl = Duration::from_secs(10);

    let f1 = acquired(redis.try_acquire(&k, READ, r1, reader_ttl).await);
    // The writer finds a reader: it waits, marked, with the reader's remaining ttl as its hint.
    let hint = held_remaining(redis.try_acquire(&k, WRITE, w, ttl).await);
    assert!(hint <= reader_ttl && !hint.is_zero(), "{hint:?}");
    let mark: Option<String> = conn.get(&keys.rw_waiting).await.unwrap_or(None);
    assert_eq!(mark, Some(w.to_hyphenated()));
    let mark_ttl = pttl(&mut conn, &keys.rw_waiting).await;
    assert!(mark_ttl > 20_000 && mark_ttl <= 30_000, "{mark_ttl}");
    let info = rw_info(&redis, &k).await;
    assert!(info.writer_waiting && info.writer.is_none());
    assert_eq!(
        info.readers
            .iter()
            .map(|i| (i.owner, i.fence))
            .collect::<Vec<_>>(),
        vec![(r1, f1)]
    );

    // New readers are refused while the mark stands (hint: the mark's ttl); the reader that is
    // in keeps its lease (idempotent re-acquire, extend).
    let hint = held_remaining(other.try_acquire(&k, READ, r2, ttl).await);
    assert!(hint > reader_ttl && hint <= ttl, "{hint:?}");
    assert_eq!(
        acquired(redis.try_acquire(&k, READ, r1, reader_ttl).await),
        f1
    );
    assert_eq!(
        redis.extend(&k, READ, r1, reader_ttl).await.ok(),
        Some(true)
    );
    // A second writer does not take over the mark.
    held_remaining(other.try_acquire(&k, WRITE, w2, ttl).await);
    let mark: Option<String> = conn.get(&keys.rw_waiting).await.unwrap_or(None);
    assert_eq!(mark, Some(w.to_hyphenated()));
    assert_eq!(other.release(&k, WRITE, w2).await.ok(), Some(false));
    let mark: Option<String> = conn.get(&keys.rw_waiting).await.unwrap_or(None);
    assert_eq!(mark, Some(w.to_hyphenated()), "only its own mark goes");

    // The writer gives up: its release clears its mark (it held nothing: false) and wakes the
    // readers that were turned away.
    let mut listener = other.listen(&k).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(redis.release(&k, WRITE, w).await.ok(), Some(false));
    let wake = within(
        "notification",
        listener.wait_for_release(Duration::from_secs(60)),
    )
    .await;
    assert_eq!(wake.ok(), Some(Wake::Notified));
    let exists: bool = conn.exists(&keys.rw_waiting).await.unwrap_or(true);
    assert!(!exists, "mark still there");
    assert!(!rw_info(&redis, &k).await.writer_waiting);
    let f2 = acquired(other.try_acquire(&k, READ, r2, ttl).await);
    assert!(f2 > f1);

    // Readers gone, the writer gets in; readers are then refused with the writer's ttl.
    assert_eq!(redis.release(&k, READ, r1).await.ok(), Some(true));
    assert_eq!(other.release(&k, READ, r2).await.ok(), Some(true));
    let fw = acquired(redis.try_acquire(&k, WRITE, w, ttl).await);
    assert!(fw > f2);
    assert_eq!(acquired(redis.try_acquire(&k, WRITE, w, ttl).await), fw);
    let hint = held_remaining(other.try_acquire(&k, READ, r1, ttl).await);
    assert!(hint <= ttl && hint > reader_ttl, "{hint:?}");
    let owner: Option<String> = conn.hget(&keys.rw_writer, "owner").await.unwrap_or(None);
    assert_eq!(owner, Some(w.to_hyphenated()));
    let info = rw_info(&redis, &k).await;
    assert_eq!(info.writer.map(|i| (i.owner, i.fence)), Some((w, fw)));
    assert!(info.readers.is_empty() && !info.writer_waiting);
    assert_eq!(redis.extend(&k, READ, r1, ttl).await.ok(), Some(false));
    assert_eq!(redis.release(&k, WRITE, w).await.ok(), Some(true));
    assert_eq!(redis.release(&k, WRITE, w).await.ok(), Some(false));

    // A mark also ends by itself: a writer that crashed while waiting blocks readers for its
    // ttl at most.
    let r3 = OwnerToken::new();
    acquired(redis.try_acquire(&k, READ, r3, ttl).await);
    held_remaining(
        redis
            .try_acquire(&k, WRITE, OwnerToken::new(), Duration::from_millis(100))
            .await,
    );
    held_remaining(redis.try_acquire(&k, READ, OwnerToken::new(), ttl).await);
    eventually("the mark expires", || {
        let redis = redis.clone();
        let k = k.clone();
        async move {
            matches!(
                redis.try_acquire(&k, READ, OwnerToken::new(), ttl).await,
                Ok(AcquireResult::Acquired(_))
            )
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_and_rwlock_names_with_spaces_braces_and_unicode_round_trip() {
    let server = start_server(false).await;
    let redis = backend(&server).await;
    let mut conn = raw(&server).await;
    let locks = LockService::new(redis.clone()).unwrap_or_else(|e| panic!("{e}"));
    let run = OwnerToken::new();
    for base in [
        "a b",
        "{tag}",
        "x:y:z",
        "zahlung-übersicht-支付",
        "}{",
        "🔒 {x}:y z",
    ] {
        let name = format!("{base} {run}");
        let stored = format!("_lock:{{{name}}}");
        let keys = RedisKeys::new(&key(&name));
        assert_eq!(keys.semaphore, format!("{stored}:sem"));
        assert_eq!(keys.rw_readers, format!("{stored}:rw:readers"));

        let sem = locks
            .semaphore(&name, 2)
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let p = sem
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let holders = sem.holders().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            holders
                .iter()
                .map(|i| (i.owner, i.fence))
                .collect::<Vec<_>>(),
            vec![(p.token(), p.fence())],
            "{name:?}"
        );
        assert!(
            zscore(&mut conn, &format!("{stored}:sem"), p.token())
                .await
                .is_some(),
            "{name:?}"
        );
        let fence: Option<String> = conn
            .hget(format!("{stored}:sem:fences"), p.token().to_hyphenated())
            .await
            .unwrap_or(None);
        assert_eq!(fence, Some(p.fence().to_string()));
        let permit_fence = p.fence();
        p.release().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(sem.holders().await.is_ok_and(|h| h.is_empty()));

        let rw = locks.rwlock(&name).unwrap_or_else(|e| panic!("{e}"));
        let r = rw.try_read().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(r.fence() > permit_fence);
        assert!(
            zscore(&mut conn, &format!("{stored}:rw:readers"), r.token())
                .await
                .is_some(),
            "{name:?}"
        );
        let info = rw.inspect().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            info.readers
                .iter()
                .map(|i| (i.owner, i.fence))
                .collect::<Vec<_>>(),
            vec![(r.token(), r.fence())]
        );
        r.release().await.unwrap_or_else(|e| panic!("{e}"));
        let w = rw.try_write().await.unwrap_or_else(|e| panic!("{e}"));
        let owner: Option<String> = conn
            .hget(format!("{stored}:rw:writer"), "owner")
            .await
            .unwrap_or(None);
        assert_eq!(owner, Some(w.token().to_hyphenated()));
        let info = rw.inspect().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            info.writer.map(|i| (i.owner, i.fence)),
            Some((w.token(), w.fence()))
        );
        let write_fence = w.fence();
        w.release().await.unwrap_or_else(|e| panic!("{e}"));

        // Nothing is left behind but the fence counter.
        for suffix in [
            ":sem",
            ":sem:fences",
            ":rw:readers",
            ":rw:fences",
            ":rw:writer",
            ":rw:waiting",
        ] {
            let exists: bool = conn
                .exists(format!("{stored}{suffix}"))
                .await
                .unwrap_or(true);
            assert!(!exists, "{stored}{suffix} still there");
        }
        let counter: Option<String> = conn.get(format!("{stored}:fence")).await.unwrap_or(None);
        assert_eq!(counter, Some(write_fence.to_string()));
    }

    // A permit set of another type is a permanent error, never overwritten.
    let name = unique("sem-wrongtype");
    let _: () = conn
        .set(format!("_lock:{{{name}}}:sem"), "not a semaphore")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = redis
        .try_acquire(
            &key(&name),
            permit(1),
            OwnerToken::new(),
            Duration::from_secs(1),
        )
        .await
        .err();
    assert!(err.as_ref().is_some_and(|e| !e.is_transient()), "{err:?}");
}

/// One scripted sequence of semaphore and read-write operations, recorded like [`trace`].
async fn primitives_trace(backend: &dyn LockBackend, name: &str) -> Vec<String> {
    let k = key(name);
    let (a, b, c, w, w2) = (
        OwnerToken::new(),
        OwnerToken::new(),
        OwnerToken::new(),
        OwnerToken::new(),
        OwnerToken::new(),
    );
    let ttl = Duration::from_secs(10);
    let mut t = Trace::new(ttl, &[(a, "a"), (b, "b"), (c, "c"), (w, "w"), (w2, "w2")]);
    let (p1, p2, p3) = (permit(1), permit(2), permit(3));

    t.step("mutex a", backend.try_acquire(&k, MUTEX, a, ttl).await);
    t.step("permit a", backend.try_acquire(&k, p2, a, ttl).await);
    t.step("permit a again", backend.try_acquire(&k, p2, a, ttl).await);
    t.step("permit b", backend.try_acquire(&k, p2, b, ttl).await);
    t.step("permit c", backend.try_acquire(&k, p2, c, ttl).await);
    t.step(
        "permit c, 3 permits",
        backend.try_acquire(&k, p3, c, ttl).await,
    );
    t.step(
        "permit w, 1 permit",
        backend.try_acquire(&k, p1, w, ttl).await,
    );
    t.holders("holders", backend.holders(&k, p2).await);
    t.flag("c releases permit", backend.release(&k, p2, c).await);
    t.flag("c releases permit again", backend.release(&k, p2, c).await);
    t.flag("w extends permit", backend.extend(&k, p2, w, ttl).await);
    t.flag(
        "a extends permit",
        backend.extend(&k, p2, a, Duration::from_secs(20)).await,
    );
    let longest = remaining_of(backend, &k, p2, a).await;
    t.line(
        "a's permit extended past the old ttl",
        longest.is_some_and(|r| r > ttl),
    );
    t.flag("a releases permit", backend.release(&k, p2, a).await);
    t.flag("b releases permit", backend.release(&k, p2, b).await);
    t.holders("holders", backend.holders(&k, p2).await);
    t.flag(
        "read release of a permit holder",
        backend.release(&k, READ, a).await,
    );
    t.flag(
        "write release of a permit holder",
        backend.release(&k, WRITE, a).await,
    );

    t.step("read a", backend.try_acquire(&k, READ, a, ttl).await);
    t.step("read a again", backend.try_acquire(&k, READ, a, ttl).await);
    t.step("write w", backend.try_acquire(&k, WRITE, w, ttl).await);
    t.rw("rw", backend.holders(&k, READ).await);
    t.step("read b", backend.try_acquire(&k, READ, b, ttl).await);
    t.step("write w2", backend.try_acquire(&k, WRITE, w2, ttl).await);
    t.step(
        "write w again",
        backend.try_acquire(&k, WRITE, w, ttl).await,
    );
    t.flag("w2 releases", backend.release(&k, WRITE, w2).await);
    t.rw("rw", backend.holders(&k, WRITE).await);
    t.flag("w releases (gives up)", backend.release(&k, WRITE, w).await);
    t.rw("rw", backend.holders(&k, READ).await);
    t.step("read b", backend.try_acquire(&k, READ, b, ttl).await);
    t.flag("b extends", backend.extend(&k, READ, b, ttl).await);
    t.flag("w extends", backend.extend(&k, WRITE, w, ttl).await);
    t.flag("a releases", backend.release(&k, READ, a).await);
    t.flag("b releases", backend.release(&k, READ, b).await);
    t.step("write w", backend.try_acquire(&k, WRITE, w, ttl).await);
    t.step(
        "write w again",
        backend.try_acquire(&k, WRITE, w, ttl).await,
    );
    t.step("write w2", backend.try_acquire(&k, WRITE, w2, ttl).await);
    t.step("read a", backend.try_acquire(&k, READ, a, ttl).await);
    t.flag("w extends", backend.extend(&k, WRITE, w, ttl).await);
    t.rw("rw", backend.holders(&k, WRITE).await);
    t.flag("w releases", backend.release(&k, WRITE, w).await);
    t.flag("w releases again", backend.release(&k, WRITE, w).await);
    t.rw("rw", backend.holders(&k, READ).await);
    t.flag("mutex a releases", backend.release(&k, MUTEX, a).await);

    // Expiry by the store's own clock.
    let short = Duration::from_millis(100);
    t.step(
        "permit a for 100 ms",
        backend.try_acquire(&k, p1, a, short).await,
    );
    t.step(
        "read b for 100 ms",
        backend.try_acquire(&k, READ, b, short).await,
    );
    t.step(
        "write w for 100 ms",
        backend.try_acquire(&k, WRITE, w, short).await,
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    t.holders("holders after expiry", backend.holders(&k, p1).await);
    t.rw("rw after expiry", backend.holders(&k, READ).await);
    t.flag(
        "a extends permit after expiry",
        backend.extend(&k, p1, a, ttl).await,
    );
    t.flag(
        "b extends after expiry",
        backend.extend(&k, READ, b, ttl).await,
    );
    t.step("permit c", backend.try_acquire(&k, p1, c, ttl).await);
    t.step("read a", backend.try_acquire(&k, READ, a, ttl).await);
    t.flag("c releases permit", backend.release(&k, p1, c).await);
    t.flag("a releases", backend.release(&k, READ, a).await);
    t.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_and_rwlock_semantics_match_the_memory_backend() {
    let expected = same_as_memory("primitives-semantics", |b, n| {
        Box::pin(primitives_trace(b, n))
    })
    .await;
    // The sequence does exercise refusals: a full semaphore, a waiting writer, a writer.
    for line in [
        "permit c: held, remaining in (0, ttl]: true",
        "read b: held, remaining in (0, ttl]: true",
        "read a: held, remaining in (0, ttl]: true",
        "rw after expiry: readers [], writer [], waiting false",
    ] {
        assert!(
            expected.iter().any(|l| l == line),
            "{line:?} not in {expected:#?}"
        );
    }
}
