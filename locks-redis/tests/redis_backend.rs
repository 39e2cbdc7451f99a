//! The Redis backend against a real `redis-server` (the testkit fixture), never a mock.
//!
//! Real-time tests: every wait is bounded by `tokio::time::timeout`, and no assertion is about
//! speed beyond "well inside the budget".

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use locks_core::{
    AcquireOptions, AcquireResult, BackendError, LeaseInfo, LeaseKind, LeaseState, LockBackend,
    LockError, LockGuard, LockKey, LockService, LostReason, OwnerToken, RwInfo, Wake,
};
use locks_memory::MemoryBackend;
use locks_redis::redis::{self, AsyncCommands, aio::MultiplexedConnection};
use locks_redis::{RedisBackend, RedisBackendError, RedisKeys};
use locks_testkit::redis_server::{self, RedisServer, RedisServerConfig, notification_only};
use tokio::task::JoinHandle;

mod common;
use common::{SOON, backend, key, raw, server_with, unique, within};

fn fail<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

async fn start_server(private: bool) -> RedisServer {
    let cfg = if private {
        RedisServerConfig::new().local_only()
    } else {
        RedisServerConfig::new()
    };
    server_with(cfg).await
}

/// Lock names with spaces, braces (Redis Cluster hash tags), colons and non-ASCII text, each
/// with a suffix of its own.
fn awkward_names() -> Vec<String> {
    let run = OwnerToken::new();
    [
        "a b",
        "{tag}",
        "x:y:z",
        "zahlung-übersicht-支付",
        "}{",
        "🔒 {x}:y z",
    ]
    .iter()
    .map(|base| format!("{base} {run}"))
    .collect()
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

/// The holder of the mutex `k`, if any.
async fn mutex_holder(
    backend: &dyn LockBackend,
    k: &LockKey,
) -> Result<Option<LeaseInfo>, BackendError> {
    let holders = backend.holders(k, MUTEX).await?;
    assert!(holders.leases.len() <= 1, "{holders:?}");
    Ok(holders.leases.first().copied())
}

/// Waits (within [`SOON`]) until the number of subscribers of `channel` satisfies `want`.
async fn until_subscribers(
    what: &str,
    conn: &MultiplexedConnection,
    channel: &str,
    want: fn(i64) -> bool,
) {
    let reached = redis_server::subscribers_reach(conn, channel, SOON, want).await;
    assert!(reached, "{what} did not happen within {SOON:?}");
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

/// A scripted sequence of operations on one key of one backend, recorded as lines with fences
/// replaced by their rank of appearance and owners by their names, so that two backends can be
/// compared line by line.
struct Trace<'a> {
    backend: &'a dyn LockBackend,
    key: LockKey,
    /// The ttl of every lease the script takes, unless it says otherwise.
    ttl: Duration,
    owners: Vec<(OwnerToken, &'static str)>,
    fences: Vec<u64>,
    lines: Vec<String>,
}

impl<'a> Trace<'a> {
    fn new(
        backend: &'a dyn LockBackend,
        name: &str,
        ttl: Duration,
        owners: &[(OwnerToken, &'static str)],
    ) -> Self {
        Trace {
            backend,
            key: key(name),
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

    /// An acquire attempt with the script's ttl.
    async fn acquire(&mut self, label: &str, kind: LeaseKind, token: OwnerToken) {
        self.acquire_for(label, kind, token, self.ttl).await;
    }

    /// An acquire attempt: acquired (with the fence's rank) or held (with a sane hint).
    async fn acquire_for(
        &mut self,
        label: &str,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) {
        let shown = match self.backend.try_acquire(&self.key, kind, token, ttl).await {
            Ok(AcquireResult::Acquired(l)) => format!("acquired {}", self.rank(l.fence)),
            Ok(AcquireResult::Held { remaining }) => format!(
                "held, remaining in (0, ttl]: {}",
                remaining.is_some_and(|r| !r.is_zero() && r <= self.ttl)
            ),
            Err(e) => format!("error {e}"),
        };
        self.line(label, shown);
    }

    /// An extend to the script's ttl.
    async fn extend(&mut self, label: &str, kind: LeaseKind, token: OwnerToken) {
        let done = self.backend.extend(&self.key, kind, token, self.ttl).await;
        self.flag(label, done);
    }

    /// `token` extends its lease of `kind` to twice the script's ttl: the store must then
    /// report more than the script's ttl left.
    async fn extend_past_ttl(&mut self, label: &str, kind: LeaseKind, token: OwnerToken) {
        let (backend, k) = (self.backend, &self.key);
        let done = backend.extend(k, kind, token, self.ttl * 2).await;
        let remaining = match backend.holders(k, kind).await {
            Ok(h) => h
                .leases
                .iter()
                .find(|i| i.owner == token)
                .map(|i| i.remaining),
            Err(_) => None,
        };
        self.flag(label, done);
        let past = remaining.is_some_and(|r| r > self.ttl);
        self.line(&format!("{label}, past the old ttl"), past);
    }

    async fn release(&mut self, label: &str, kind: LeaseKind, token: OwnerToken) {
        let done = self.backend.release(&self.key, kind, token).await;
        self.flag(label, done);
    }

    async fn force_release(&mut self, label: &str, kind: LeaseKind) {
        let done = self.backend.force_release(&self.key, kind).await;
        self.flag(label, done);
    }

    /// The answer of an extend or a release.
    fn flag(&mut self, label: &str, r: Result<bool, BackendError>) {
        self.line(label, format!("{:?}", r.map_err(|e| e.to_string())));
    }

    fn list(&mut self, infos: &[LeaseInfo]) -> String {
        let max = self.ttl * 2;
        infos
            .iter()
            .map(|i| {
                format!(
                    "{} {} {} (<= {max:?}: {})",
                    self.who(i.owner),
                    i.kind.label(),
                    self.rank(i.fence),
                    i.remaining <= max
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The holders of a mutex or a semaphore.
    async fn holders(&mut self, label: &str, kind: LeaseKind) {
        let shown = match self.backend.holders(&self.key, kind).await {
            Ok(h) => format!("[{}], waiting {}", self.list(&h.leases), h.writer_waiting),
            Err(e) => format!("error {e}"),
        };
        self.line(label, shown);
    }

    /// The readers, writer and waiting mark of a read-write lock, asked as `kind` (`Read` or
    /// `Write`: both answer the whole lock).
    async fn rw(&mut self, label: &str, kind: LeaseKind) {
        let shown = match self
            .backend
            .holders(&self.key, kind)
            .await
            .map(RwInfo::from)
        {
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

/// Run `script` on a memory backend and on Redis under the same (fresh) name: the traces must
/// be equal line by line, and contain the lines `expect` (proof that the script exercised what
/// it should).
async fn same_as_memory<F>(name: &str, expect: &[&str], script: F)
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
    for line in expect {
        assert!(
            expected.iter().any(|l| l == line),
            "{line:?} not in {expected:#?}"
        );
    }
}

/// One scripted sequence of mutex operations.
async fn trace(backend: &dyn LockBackend, name: &str) -> Vec<String> {
    let [a, b, c, d, e] = std::array::from_fn(|_| OwnerToken::new());
    let mut t = Trace::new(
        backend,
        name,
        Duration::from_secs(10),
        &[(a, "a"), (b, "b"), (c, "c"), (d, "d"), (e, "e")],
    );
    t.acquire("a acquires", MUTEX, a).await;
    t.acquire("a acquires again", MUTEX, a).await;
    t.acquire("b acquires", MUTEX, b).await;
    t.holders("inspect", MUTEX).await;
    t.release("b releases", MUTEX, b).await;
    t.extend("b extends", MUTEX, b).await;
    t.extend_past_ttl("a extends", MUTEX, a).await;
    t.release("a releases", MUTEX, a).await;
    t.release("a releases again", MUTEX, a).await;
    t.extend("a extends after release", MUTEX, a).await;
    t.holders("inspect", MUTEX).await;
    // `b` released while it held nothing: retired, its acquires are refused.
    t.acquire("b acquires, retired", MUTEX, b).await;
    t.acquire("c acquires", MUTEX, c).await;
    t.force_release("force release", MUTEX).await;
    t.force_release("force release again", MUTEX).await;
    t.holders("inspect", MUTEX).await;
    t.release("c releases after force", MUTEX, c).await;
    // Expiry by the store's own clock.
    let short = Duration::from_millis(100);
    t.acquire_for("d acquires for 100 ms", MUTEX, d, short)
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    t.holders("inspect after expiry", MUTEX).await;
    t.extend("d extends after expiry", MUTEX, d).await;
    t.acquire("e acquires after expiry", MUTEX, e).await;
    t.release("e releases", MUTEX, e).await;
    t.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantics_match_the_memory_backend() {
    let expect = [
        "c acquires: acquired fence#1",
        "a extends, past the old ttl: true",
        "b acquires, retired: error permanent backend error: this owner token was released; an acquire with it is refused",
    ];
    same_as_memory("semantics", &expect, |b, n| Box::pin(trace(b, n))).await;
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
    assert_eq!(guard.state(), LeaseState::Lost(LostReason::DeadlineExpired));
    // The store cannot be asked: the answer is an error, never a guess.
    assert!(guard.is_held().await.is_err(), "the server is stopped");
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
    for response_timeout in [Duration::ZERO, Duration::from_nanos(1)] {
        let err = RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
            .response_timeout(response_timeout)
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
            "{response_timeout:?}: {err:?}"
        );
    }
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
    for name in awkward_names() {
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
        // One string: "<fence> <owner token>".
        let lease: Option<String> = conn.get(&stored).await.unwrap_or(None);
        assert_eq!(
            lease,
            Some(format!(
                "{} {}",
                guard.fence(),
                guard.token().to_hyphenated()
            ))
        );
        let counter: Option<String> = conn.get(format!("{stored}:fence")).await.unwrap_or(None);
        assert_eq!(counter, Some(guard.fence().to_string()));
        let counter_ttl: i64 = conn.pttl(format!("{stored}:fence")).await.unwrap_or(-3);
        // The default fence counter ttl: max(2 × 30 s, 60 s).
        assert!(
            counter_ttl > 50_000 && counter_ttl <= 60_000,
            "{counter_ttl}"
        );
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
    // A string that is not "<fence> <token>", and a hash (the layout of older versions).
    for string in [true, false] {
        let name = unique("wrongtype");
        let stored = format!("_lock:{{{name}}}");
        let _: () = if string {
            conn.set(&stored, "not a lease").await
        } else {
            conn.hset(&stored, "owner", "x").await
        }
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
    let subscribed = redis_server::subscribers(&mut conn, &channel).await;
    assert_eq!(subscribed.ok(), Some(1));
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
    until_subscribers("UNSUBSCRIBE", &conn, &channel, |n| n == 0).await;
    assert_eq!(redis.release_channels(), 0);
}

/// `locks` waits for `name` in a task, with [`notification_only`] options.
fn spawn_waiter(locks: &LockService, name: &str) -> JoinHandle<Result<LockGuard, LockError>> {
    let (locks, name) = (locks.clone(), name.to_owned());
    tokio::spawn(async move { locks.acquire_opts(&name, notification_only()).await })
}

/// Release `guard`: the task `waiting` for the lock gets it (within [`SOON`]) and releases it
/// too. Returns the waiter's fence.
async fn hand_over(guard: LockGuard, waiting: JoinHandle<Result<LockGuard, LockError>>) -> u64 {
    guard.release().await.unwrap_or_else(|e| panic!("{e}"));
    let got = within("the waiter acquires", waiting)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let fence = got.fence();
    got.release().await.unwrap_or_else(|e| panic!("{e}"));
    fence
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
    let waiting = spawn_waiter(&waiter, &name);
    until_subscribers("the waiter subscribes", &conn, &channel, |n| n >= 1).await;
    assert!(hand_over(guard, waiting).await > first_fence);
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
    let subscribed = |what| until_subscribers(what, &conn, &channel, |n| n >= 1);
    let unsubscribed = |what| until_subscribers(what, &conn, &channel, |n| n == 0);
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
    subscribed("resubscription").await;
    drop(listener);
    unsubscribed("lazy UNSUBSCRIBE").await;

    // A waiter parked across a disconnection still hears the release afterwards.
    let waiting = spawn_waiter(&waiter, name);
    subscribed("the waiter subscribes").await;
    kill_pubsub().await;
    subscribed("resubscription").await;
    hand_over(guard, waiting).await;
    unsubscribed("lazy UNSUBSCRIBE").await;

    // And a waiter that starts after the reconnection is woken as well.
    let guard = holder
        .acquire_opts(name, notification_only())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let waiting = spawn_waiter(&waiter, name);
    subscribed("the waiter subscribes").await;
    hand_over(guard, waiting).await;
}

/// `rediss://` through the `tls` feature, against a server whose certificate a test CA signed
/// (made with the `openssl` command-line tool).
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_work() {
    let tls_server = redis_server::TlsRedisServer::start()
        .await
        .unwrap_or_else(|e| panic!("redis fixture with TLS: {e}"));
    let server = tls_server.server();
    let url = tls_server.url();

    // The platform's roots do not trust the test CA: a typed error.
    let untrusted = RedisBackend::builder(url)
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

    let client = redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(tls_server.ca_pem().to_vec()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tls = RedisBackend::builder_from_client(client)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("TLS connect: {e}: {:?}", std::error::Error::source(&e)));
    let plain = backend(server).await;
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

/// Run `op` between two readings of the server's clock: its output, and the two readings.
async fn clock_around<T>(
    conn: &mut MultiplexedConnection,
    op: impl Future<Output = T>,
) -> (T, (u64, u64)) {
    let before = server_ms(conn).await;
    let out = op.await;
    let after = server_ms(conn).await;
    (out, (before, after))
}

/// `token`'s expiry (its score in the sorted set `set`), which must be the server's time plus
/// `ttl` at some moment `during` the operation that set it.
async fn expiry_of(
    conn: &mut MultiplexedConnection,
    set: &str,
    token: OwnerToken,
    during: (u64, u64),
    ttl: Duration,
) -> u64 {
    let score = zscore(conn, set, token)
        .await
        .unwrap_or_else(|| panic!("{token:?} not in {set}"));
    let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let (before, after) = during;
    assert!(
        (before + ttl..=after + ttl).contains(&score),
        "{set}: score {score} not TIME + ttl within [{before}, {after}] + {ttl}"
    );
    score
}

/// The fence stored for `token` in the hash `fences`.
async fn stored_fence(
    conn: &mut MultiplexedConnection,
    fences: &str,
    token: OwnerToken,
) -> Option<String> {
    conn.hget(fences, token.to_hyphenated())
        .await
        .unwrap_or_else(|e| panic!("HGET {fences}: {e}"))
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
    // The set outlives its last member's expiry by its last millisecond.
    assert!(sem_ttl > 50_000 && sem_ttl <= 60_001, "{sem_ttl}");
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
        assert_eq!(
            stored_fence(&mut conn, &keys.semaphore_fences, t).await,
            None
        );
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

    let (fence, during) = clock_around(&mut conn, redis.try_acquire(&k, permit(2), t, ttl)).await;
    let fence = acquired(fence);
    let score = expiry_of(&mut conn, &keys.semaphore, t, during, ttl).await;
    let stored = stored_fence(&mut conn, &keys.semaphore_fences, t).await;
    assert_eq!(stored, Some(fence.to_string()));
    for key in [&keys.semaphore, &keys.semaphore_fences] {
        let left = pttl(&mut conn, key).await;
        assert!(left > 0 && left <= 60_001, "{key}: {left}");
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
    let longer = Duration::from_secs(120);
    let (extended, during) = clock_around(&mut conn, redis.extend(&k, permit(2), t, longer)).await;
    assert_eq!(extended.ok(), Some(true));
    expiry_of(&mut conn, &keys.semaphore, t, during, longer).await;
    assert!(pttl(&mut conn, &keys.semaphore).await > 60_000);
    assert!(pttl(&mut conn, &keys.semaphore_fences).await > 60_000);
    // Idempotent: the same token gets its permit back, same fence, new expiry.
    assert_eq!(
        acquired(redis.try_acquire(&k, permit(2), t, ttl).await),
        fence
    );
    let score = zscore(&mut conn, &keys.semaphore, t).await.unwrap_or(0);
    assert!(score <= server_ms(&mut conn).await + 60_000);
    assert!(pttl(&mut conn, &keys.semaphore).await <= 60_001);

    // Readers too.
    let r = OwnerToken::new();
    let (read_fence, during) = clock_around(&mut conn, redis.try_acquire(&k, READ, r, ttl)).await;
    let read_fence = acquired(read_fence);
    assert!(read_fence > fence, "one fence counter per key");
    expiry_of(&mut conn, &keys.rw_readers, r, during, ttl).await;
    let left = pttl(&mut conn, &keys.rw_readers).await;
    assert!(left > 0 && left <= 60_001, "{left}");
    let stored = stored_fence(&mut conn, &keys.rw_fences, r).await;
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
    // Its token, released while it held nothing, is retired (a late acquire with it is
    // refused); a writer that asks again does so with a new one.
    assert!(
        redis
            .try_acquire(&k, WRITE, w, ttl)
            .await
            .is_err_and(|e| !e.is_transient())
    );
    let w = OwnerToken::new();

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
    for name in awkward_names() {
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
        let fence = stored_fence(&mut conn, &format!("{stored}:sem:fences"), p.token()).await;
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
    // A token released while it held nothing is retired: later steps use new ones.
    let [a, b, c, w, w2, r, x, y, p, z, d, e] = std::array::from_fn(|_| OwnerToken::new());
    let owners = [
        (a, "a"),
        (b, "b"),
        (c, "c"),
        (w, "w"),
        (w2, "w2"),
        (r, "r"),
        (x, "x"),
        (y, "y"),
        (p, "p"),
        (z, "z"),
        (d, "d"),
        (e, "e"),
    ];
    let mut t = Trace::new(backend, name, Duration::from_secs(10), &owners);
    let (p1, p2, p3) = (permit(1), permit(2), permit(3));

    t.acquire("mutex a", MUTEX, a).await;
    t.acquire("permit a", p2, a).await;
    t.acquire("permit a again", p2, a).await;
    t.acquire("permit b", p2, b).await;
    t.acquire("permit c", p2, c).await;
    t.acquire("permit c, 3 permits", p3, c).await;
    t.acquire("permit w, 1 permit", p1, w).await;
    t.holders("holders", p2).await;
    t.release("c releases permit", p2, c).await;
    t.release("c releases permit again", p2, c).await;
    t.extend("w extends permit", p2, w).await;
    t.extend_past_ttl("a extends permit", p2, a).await;
    t.release("a releases permit", p2, a).await;
    t.release("b releases permit", p2, b).await;
    t.holders("holders", p2).await;
    t.release("read release of a permit holder", READ, a).await;
    t.release("write release of a permit holder", WRITE, a)
        .await;

    t.acquire("read a, retired", READ, a).await;
    t.acquire("read r", READ, r).await;
    t.acquire("read r again", READ, r).await;
    t.acquire("write w", WRITE, w).await;
    t.rw("rw", READ).await;
    t.acquire("read b", READ, b).await;
    t.acquire("write w2", WRITE, w2).await;
    t.acquire("write w again", WRITE, w).await;
    t.release("w2 releases", WRITE, w2).await;
    t.rw("rw", WRITE).await;
    t.release("w releases (gives up)", WRITE, w).await;
    t.rw("rw", READ).await;
    t.acquire("read b", READ, b).await;
    t.extend("b extends", READ, b).await;
    t.extend("w extends", WRITE, w).await;
    t.release("r releases", READ, r).await;
    t.release("b releases", READ, b).await;
    t.acquire("write x", WRITE, x).await;
    t.acquire("write x again", WRITE, x).await;
    t.acquire("write w2, retired", WRITE, w2).await;
    t.acquire("read y", READ, y).await;
    t.extend("x extends", WRITE, x).await;
    t.rw("rw", WRITE).await;
    t.release("x releases", WRITE, x).await;
    t.release("x releases again", WRITE, x).await;
    t.rw("rw", READ).await;
    t.release("mutex a releases", MUTEX, a).await;

    // Expiry by the store's own clock.
    let short = Duration::from_millis(100);
    t.acquire_for("permit p for 100 ms", p1, p, short).await;
    t.acquire_for("read b for 100 ms", READ, b, short).await;
    t.acquire_for("write z for 100 ms", WRITE, z, short).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    t.holders("holders after expiry", p1).await;
    t.rw("rw after expiry", READ).await;
    t.extend("p extends permit after expiry", p1, p).await;
    t.extend("b extends after expiry", READ, b).await;
    t.acquire("permit d", p1, d).await;
    t.acquire("read e", READ, e).await;
    t.release("d releases permit", p1, d).await;
    t.release("e releases", READ, e).await;
    t.finish()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semaphore_and_rwlock_semantics_match_the_memory_backend() {
    // The sequence does exercise refusals: a full semaphore, a waiting writer, a writer.
    let expect = [
        "permit c: held, remaining in (0, ttl]: true",
        "read b: held, remaining in (0, ttl]: true",
        "read y: held, remaining in (0, ttl]: true",
        "write w2, retired: error permanent backend error: this owner token was released; an acquire with it is refused",
        "rw after expiry: readers [], writer [], waiting false",
        "a extends permit, past the old ttl: true",
    ];
    same_as_memory("primitives-semantics", &expect, |b, n| {
        Box::pin(primitives_trace(b, n))
    })
    .await;
}
