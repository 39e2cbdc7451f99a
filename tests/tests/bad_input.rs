//! Bad input (safety rule 5): property tests that feed arbitrary keys (any Unicode, control
//! characters, empty, very long), ttls (zero, huge, `Duration::MAX`), retry settings (NaN,
//! infinities, negative, zero), permit counts, prefixes and URLs to every public entry point of
//! `LockService`, `Semaphore`, `RwLock`, `Election`, `acquire_all`, `LockGuard::extend` and
//! `RedisBackend::builder`/`connect`, on a private `redis-server`.
//!
//! The promise: every call returns a typed error or succeeds; nothing panics (not the caller,
//! not a background task: a panic hook counts panics on every thread); a call rejected for its
//! input writes nothing to Redis (`DBSIZE` unchanged); nothing hangs (every case is bounded).

use std::future::Future;
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use locks_core::{
    AcquireOptions, LockError, LockGuard, LockKey, LockService, RetryPolicy, Semaphore,
};
use locks_redis::redis::aio::MultiplexedConnection;
use locks_redis::redis::{self, AsyncCommands};
use locks_redis::{RedisBackend, RedisBackendError};
use locks_testkit::redis_server::RedisServer;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

mod common;
use common::{dbsize, private_server};

/// Longest time one case may take (most take a few milliseconds).
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Names of the threads that panicked (caller or background task), so that each test counts
/// the panics of its own threads only.
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or_default().to_owned();
            PANICKED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(name);
            previous(info);
        }));
    });
}

/// Panics so far on the thread `test` or on the runtime threads named `workers`.
fn panics_of(test: &str, workers: &str) -> usize {
    PANICKED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|n| *n == test || *n == workers)
        .count()
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        // No regression files in the source tree; a failure prints its minimal input.
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The environment: a private server, a backend, a runtime; one case at a time.

struct Inner {
    backend: RedisBackend,
    conn: MultiplexedConnection,
    server: RedisServer,
}

struct Env {
    inner: Option<Inner>,
    /// The test's own thread, and the name of its runtime's worker threads.
    test_thread: String,
    workers: String,
    rt: tokio::runtime::Runtime,
}

impl Env {
    fn start() -> Env {
        count_panics();
        let test_thread = std::thread::current().name().unwrap_or_default().to_owned();
        let workers = format!("bad-input:{test_thread}");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(workers.clone())
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        let inner = rt.block_on(async {
            let server = private_server(&[]).await;
            let backend = RedisBackend::builder(server.url())
                .connect_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(2))
                .connect()
                .await
                .unwrap_or_else(|e| panic!("connect: {e}"));
            let conn = server
                .connection()
                .await
                .unwrap_or_else(|e| panic!("direct connection: {e}"));
            Inner {
                backend,
                conn,
                server,
            }
        });
        Env {
            inner: Some(inner),
            test_thread,
            workers,
            rt,
        }
    }

    fn inner(&self) -> &Inner {
        self.inner
            .as_ref()
            .unwrap_or_else(|| panic!("the environment is gone"))
    }

    fn backend(&self) -> RedisBackend {
        self.inner().backend.clone()
    }

    fn conn(&self) -> MultiplexedConnection {
        self.inner().conn.clone()
    }

    fn port(&self) -> u16 {
        self.inner().server.port()
    }

    /// Run one case: bounded, then empty the server; any panic anywhere fails the case.
    fn case(
        &self,
        fut: impl Future<Output = Result<(), TestCaseError>>,
    ) -> Result<(), TestCaseError> {
        let panics = panics_of(&self.test_thread, &self.workers);
        let mut conn = self.conn();
        let result = self.rt.block_on(async {
            let result = tokio::time::timeout(CASE_LIMIT, fut)
                .await
                .unwrap_or_else(|_| {
                    Err(TestCaseError::fail(format!(
                        "the case did not finish within {CASE_LIMIT:?}"
                    )))
                });
            // Every database: a garbage URL may have selected another one.
            let _: () = redis::cmd("FLUSHALL")
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("FLUSHALL: {e}"));
            result
        });
        let panicked = panics_of(&self.test_thread, &self.workers) - panics;
        if panicked > 0 {
            return Err(TestCaseError::fail(format!(
                "{panicked} panic(s) during the case (see the output above)"
            )));
        }
        result
    }

    fn run<S: Strategy>(
        &self,
        cases: u32,
        strategy: S,
        test: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) where
        S::Value: std::fmt::Debug,
    {
        let mut runner = TestRunner::new(config(cases));
        if let Err(e) = runner.run(&strategy, test) {
            panic!("{e}");
        }
    }

    /// [`run`](Env::run) cases that call a default service: each case gets a fresh service on
    /// the shared backend, with the database size before the case; the service is shut down
    /// after it.
    fn run_on_service<S, Fut>(&self, cases: u32, strategy: S, test: impl Fn(S::Value, Case) -> Fut)
    where
        S: Strategy,
        S::Value: std::fmt::Debug,
        Fut: Future<Output = Result<(), TestCaseError>>,
    {
        self.run(cases, strategy, |value| {
            let locks = default_service(self.backend());
            let mut conn = self.conn();
            let test = &test;
            self.case(async move {
                let before = dbsize(&mut conn).await;
                let case = Case {
                    locks: locks.clone(),
                    conn,
                    before,
                };
                let result = test(value, case).await;
                locks.shutdown().await;
                result
            })
        });
    }
}

/// One case of [`Env::run_on_service`].
struct Case {
    locks: LockService,
    /// A direct connection to the server.
    conn: MultiplexedConnection,
    /// The database size before the case.
    before: i64,
}

impl Case {
    /// [`judged`] against the database size before the case.
    async fn judged<T>(
        &mut self,
        what: &str,
        r: Result<T, LockError>,
    ) -> Result<Option<T>, TestCaseError> {
        judged(what, &mut self.conn, self.before, r).await
    }

    /// Judge an acquire, and give back what it got.
    async fn judged_guard(
        &mut self,
        what: &str,
        r: Result<LockGuard, LockError>,
    ) -> Result<(), TestCaseError> {
        if let Some(g) = self.judged(what, r).await? {
            release(what, g).await?;
        }
        Ok(())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The backend and the server go away inside their runtime.
        let _entered = self.rt.enter();
        self.inner.take();
    }
}

/// Errors that reject the input itself.
fn is_rejection(e: &LockError) -> bool {
    matches!(
        e,
        LockError::InvalidKey { .. }
            | LockError::InvalidTtl { .. }
            | LockError::InvalidOptions { .. }
    )
}

/// The outcome of one call: a value, or a typed error. A rejected input must have written
/// nothing; errors other than rejections are not expected on a fresh key of a healthy server,
/// except a zero-attempt timeout (a wait budget too small to try; nothing sent either).
async fn judged<T>(
    what: &str,
    conn: &mut MultiplexedConnection,
    before: i64,
    r: Result<T, LockError>,
) -> Result<Option<T>, TestCaseError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if is_rejection(&e) || matches!(e, LockError::AcquireTimeout { attempts: 0, .. }) =>
        {
            let after = dbsize(conn).await;
            prop_assert_eq!(after, before, "{}: {:?} wrote to Redis", what, e);
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!(
            "{what}: unexpected error {e:?}"
        ))),
    }
}

async fn release(what: &str, g: LockGuard) -> Result<(), TestCaseError> {
    match g.release().await {
        // A 1 ms lease may be gone before we give it back: "not owner" is the truth then.
        Ok(()) | Err(LockError::NotOwner { .. }) | Err(LockError::Lost { .. }) => Ok(()),
        Err(e) => Err(TestCaseError::fail(format!("{what}: release: {e:?}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// Keys: arbitrary Unicode (control characters included), empty, around the length limit in
/// one- and three-byte characters, Lua/Redis syntax, braces.
fn keys() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => Just(String::new()),
        2 => "[a-z:{} ]{1,24}",
        2 => "\\PC{1,40}",
        1 => (1020_usize..1030).prop_map(|n| "k".repeat(n)),
        1 => (340_usize..344).prop_map(|n| "€".repeat(n)),
        1 => Just("]] redis.call('FLUSHALL') --".to_owned()),
        1 => Just("\" ' ` \\ [[ ]] {{ }} *?".to_owned()),
        1 => "[a-z]{1,5}[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}][a-z]{0,5}",
        1 => (10_000_usize..20_000).prop_map(|n| "x".repeat(n)),
    ]
}

/// Prefixes: the same, plus braces (not allowed: they would change the hash tag).
fn prefixes() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("_lock:".to_owned()),
        3 => any::<String>(),
        2 => "[a-z:{}]{0,12}",
        1 => (126_usize..131).prop_map(|n| "p".repeat(n)),
        1 => Just(String::new()),
    ]
}

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_micros(999)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(300)),
        Just(Duration::from_secs(300) + Duration::from_nanos(1)),
        Just(Duration::from_secs(u64::MAX / 2)),
        (0_u64..600_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        (any::<u64>(), 0_u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn floats() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(-1.0),
        Just(1.0),
        Just(f64::MIN_POSITIVE),
        Just(1.0 - f64::EPSILON),
        Just(f64::MAX),
        any::<f64>(),
        0.0..=1.0_f64,
        1.0..16.0_f64,
    ]
}

fn retries() -> impl Strategy<Value = RetryPolicy> {
    (
        durations(),
        floats(),
        durations(),
        floats(),
        prop::option::of(prop_oneof![
            Just(0_u32),
            Just(1),
            Just(u32::MAX),
            any::<u32>()
        ]),
    )
        .prop_map(|(initial, multiplier, max, jitter, attempts)| {
            RetryPolicy::default()
                .initial_delay(initial)
                .multiplier(multiplier)
                .max_delay(max)
                .jitter(jitter)
                .max_attempts(attempts)
        })
}

/// Per-call options; every field may be left unset.
fn options() -> impl Strategy<Value = AcquireOptions> {
    (
        prop::option::of(durations()),
        prop::option::of(durations()),
        prop::option::of(retries()),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::option::of(durations())),
    )
        .prop_map(|(ttl, wait, retry, renew, max_hold)| {
            let mut o = AcquireOptions::new();
            if let Some(t) = ttl {
                o = o.ttl(t);
            }
            if let Some(w) = wait {
                o = o.wait_timeout(w);
            }
            if let Some(r) = retry {
                o = o.retry(r);
            }
            if let Some(a) = renew {
                o = o.auto_renew(a);
            }
            if let Some(h) = max_hold {
                o = o.max_hold(h);
            }
            o
        })
}

fn permits() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0_u32), Just(1), Just(2), Just(u32::MAX), any::<u32>()]
}

/// A default service on the shared backend (5 s wait: a fresh key never waits anyway).
fn default_service(backend: RedisBackend) -> LockService {
    LockService::new(backend).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------------------------
// Properties

/// Every builder setting — prefix, default and maximum ttl, wait timeout, retry policy,
/// renewal, renewal fraction, maximum hold — is either rejected by `build` with a typed error,
/// or gives a service that can take and give back a lock, stored under its prefix.
#[test]
fn service_builder_settings_are_rejected_or_work() {
    let env = Env::start();
    // Each setting is usually its default, sometimes wild, so that many combinations build.
    let strategy = (
        prop_oneof![2 => Just("_lock:".to_owned()), 1 => prefixes()],
        prop_oneof![2 => Just(Duration::from_secs(30)), 1 => durations()],
        prop_oneof![2 => Just(Duration::from_secs(300)), 1 => durations()],
        prop_oneof![2 => Just(Duration::from_secs(5)), 1 => durations()],
        prop_oneof![2 => Just(RetryPolicy::default()), 1 => retries()],
        any::<bool>(),
        prop_oneof![2 => Just(0.5), 1 => floats()],
        prop_oneof![2 => Just(None), 1 => prop::option::of(durations())],
    );
    env.run(
        512,
        strategy,
        |(prefix, ttl, max_ttl, wait, retry, renew, fraction, max_hold)| {
            let backend = env.backend();
            let mut conn = env.conn();
            env.case(async move {
                let built = LockService::builder(backend)
                    .key_prefix(prefix.clone())
                    .default_ttl(ttl)
                    .max_ttl(max_ttl)
                    .default_wait_timeout(wait)
                    .retry(retry)
                    .auto_renew(renew)
                    .renew_fraction(fraction)
                    .max_hold(max_hold)
                    .build();
                let Some(locks) = judged("build", &mut conn, 0, built).await? else {
                    return Ok(());
                };
                let r = locks.acquire("k").await;
                if let Some(g) = judged("acquire", &mut conn, 0, r).await? {
                    let stored = format!("{prefix}{{k}}");
                    let exists: bool = conn.exists(&stored).await.expect("EXISTS");
                    // A 1 ms lease may already have expired.
                    prop_assert!(exists || ttl < Duration::from_millis(50), "{stored:?}");
                    release("acquire", g).await?;
                }
                locks.shutdown().await;
                Ok(())
            })
        },
    );
}

/// `LockService` entry points with arbitrary keys and per-call options: `acquire_opts`,
/// `try_acquire_opts`, `with_lock_opts`, `is_locked`, `inspect`, `force_release`, `waiters`,
/// `key`, and `LockKey::new` with an arbitrary prefix.
#[test]
fn mutex_entry_points_reject_bad_keys_and_options_without_writing() {
    let env = Env::start();
    env.run_on_service(
        512,
        (0_u8..9, keys(), options(), prefixes()),
        |(op, key, opts, prefix), mut cx| async move {
            let locks = cx.locks.clone();
            match op {
                0 => {
                    let r = locks.acquire_opts(&key, opts).await;
                    cx.judged_guard("acquire_opts", r).await?;
                }
                1 => {
                    let r = locks.try_acquire_opts(&key, opts).await;
                    cx.judged_guard("try_acquire_opts", r).await?;
                }
                2 => {
                    let r = locks
                        .with_lock_opts(&key, opts, |lease| async move { lease.fence() })
                        .await;
                    if let Some(fence) = cx.judged("with_lock_opts", r).await? {
                        prop_assert!(fence > 0);
                    }
                }
                3 => {
                    let r = locks.is_locked(&key).await;
                    cx.judged("is_locked", r).await?;
                }
                4 => {
                    let r = locks.inspect(&key).await;
                    cx.judged("inspect", r).await?;
                }
                5 => {
                    let r = locks.force_release(&key).await;
                    cx.judged("force_release", r).await?;
                }
                6 => {
                    prop_assert_eq!(locks.waiters(&key), 0);
                    let r = locks.key(&key);
                    cx.judged("key", r).await?;
                }
                7 => {
                    let r = LockKey::new(&prefix, &key);
                    if let Some(k) = cx.judged("LockKey::new", r).await? {
                        prop_assert_eq!(k.full(), format!("{prefix}{key}"));
                    }
                }
                _ => {
                    // Valid key, arbitrary options: only the options can be rejected.
                    let r = locks.acquire_opts("valid", opts).await;
                    cx.judged_guard("acquire_opts(valid)", r).await?;
                }
            }
            Ok(())
        },
    );
}

/// `Semaphore` (`semaphore`, `with_permits`, `acquire_opts`, `try_acquire`, `holders`,
/// `available`), `RwLock` (`rwlock`, `read_opts`, `write_opts`, `try_read`, `try_write`,
/// `inspect`) and `Election` (`election`, `campaign_opts`, `try_campaign`, `leader`) with
/// arbitrary names, permit counts and options.
#[test]
fn primitive_entry_points_reject_bad_input_without_writing() {
    let env = Env::start();
    env.run_on_service(
        512,
        (0_u8..12, keys(), permits(), permits(), options()),
        |(op, key, permits, other_permits, opts), mut cx| async move {
            let locks = cx.locks.clone();
            match op {
                0..=3 => {
                    let r = locks.semaphore(&key, permits);
                    let Some(s) = cx.judged::<Semaphore>("semaphore", r).await? else {
                        return Ok(());
                    };
                    match op {
                        0 => {
                            let r = s.acquire_opts(opts).await;
                            cx.judged_guard("semaphore acquire_opts", r).await?;
                        }
                        1 => {
                            let r = s.try_acquire().await;
                            cx.judged_guard("semaphore try_acquire", r).await?;
                        }
                        2 => {
                            let r = s.holders().await;
                            cx.judged("holders", r).await?;
                            let r = s.available().await;
                            if let Some(n) = cx.judged("available", r).await? {
                                prop_assert_eq!(n, permits);
                            }
                        }
                        _ => {
                            let r = s.with_permits(other_permits);
                            if let Some(s2) = cx.judged("with_permits", r).await? {
                                let r = s2.try_acquire().await;
                                cx.judged_guard("with_permits try", r).await?;
                            }
                        }
                    }
                }
                4..=8 => {
                    let r = locks.rwlock(&key);
                    let Some(rw) = cx.judged("rwlock", r).await? else {
                        return Ok(());
                    };
                    let r = match op {
                        4 => rw.read_opts(opts).await,
                        5 => rw.write_opts(opts).await,
                        6 => rw.try_read().await,
                        7 => rw.try_write().await,
                        _ => {
                            let r = rw.inspect().await;
                            cx.judged("inspect rw", r).await?;
                            return Ok(());
                        }
                    };
                    cx.judged_guard("rwlock acquire", r).await?;
                }
                _ => {
                    let r = locks.election(&key);
                    let Some(e) = cx.judged("election", r).await? else {
                        return Ok(());
                    };
                    prop_assert_eq!(e.role(), key.as_str());
                    let r = match op {
                        9 => e.campaign_opts(opts).await,
                        10 => e.try_campaign().await,
                        _ => {
                            let r = e.leader().await;
                            cx.judged("leader", r).await?;
                            return Ok(());
                        }
                    };
                    if let Some(l) = cx.judged("campaign", r).await? {
                        match l.resign().await {
                            Ok(()) | Err(LockError::NotOwner { .. }) => {}
                            Err(e) => {
                                return Err(TestCaseError::fail(format!("resign: {e:?}")));
                            }
                        }
                    }
                }
            }
            Ok(())
        },
    );
}

/// `acquire_all` with arbitrary key lists (empty, duplicates, one bad key among good ones) and
/// options validates every key before sending anything; `LockGuard::extend` with an arbitrary
/// ttl is rejected or applied, and a rejected extend leaves the lease as it was.
#[test]
fn acquire_all_and_extend_reject_bad_input_without_writing() {
    let env = Env::start();
    env.run_on_service(
        512,
        (
            prop::collection::vec(keys(), 0..5),
            any::<bool>(),
            options(),
            durations(),
        ),
        |(mut keys, add_good, opts, extend_ttl), mut cx| async move {
            let locks = cx.locks.clone();
            if add_good {
                keys.push("good:a".to_owned());
                keys.push("good:b".to_owned());
            }
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let r = locks.acquire_all(&refs, opts).await;
            if let Some(all) = cx.judged("acquire_all", r).await? {
                let mut want: Vec<&str> = refs.clone();
                want.sort_unstable();
                want.dedup();
                let got: Vec<&str> = all.guards().iter().map(|g| g.key()).collect();
                prop_assert_eq!(got, want);
                match all.release().await {
                    Ok(()) | Err(LockError::NotOwner { .. }) => {}
                    Err(e) => return Err(TestCaseError::fail(format!("release all: {e:?}"))),
                }
            }

            // extend on a held 30 s lease.
            let g = locks
                .acquire("extend")
                .await
                .map_err(|e| TestCaseError::fail(format!("acquire: {e}")))?;
            let lease = locks_redis::RedisKeys::new(g.lock_key()).lease;
            let conn = &mut cx.conn;
            let before: i64 = conn.pttl(&lease).await.unwrap_or(-3);
            match g.extend(extend_ttl).await {
                Ok(()) => {
                    prop_assert!(extend_ttl >= Duration::from_millis(1));
                    prop_assert!(extend_ttl <= Duration::from_secs(300));
                }
                Err(e) => {
                    prop_assert!(is_rejection(&e), "extend: {:?}", e);
                    let after: i64 = conn.pttl(&lease).await.unwrap_or(-3);
                    prop_assert!(after <= before && after > 0, "{} -> {}", before, after);
                }
            }
            release("extend", g).await
        },
    );
}

/// URLs for the connect property: arbitrary strings, and real-looking URLs with garbage in
/// every part (scheme, user, password, host, port, database, query), some of them pointing at
/// the private server.
fn urls(port: u16) -> impl Strategy<Value = String> {
    let garbage = || any::<String>();
    prop_oneof![
        3 => garbage(),
        1 => Just(String::new()),
        1 => "[a-z+]{0,8}://[a-z0-9.:@/\\[\\]%?#=]{0,30}",
        1 => garbage().prop_map(|g| format!("redis://{g}")),
        1 => garbage().prop_map(|g| format!("rediss://{g}")),
        1 => garbage().prop_map(|g| format!("unix://{g}")),
        1 => garbage().prop_map(move |g| format!("redis://127.0.0.1:{port}/{g}")),
        1 => garbage().prop_map(move |g| format!("redis://{g}@127.0.0.1:{port}")),
        1 => garbage().prop_map(move |g| format!("redis://:{g}@127.0.0.1:{port}")),
        1 => garbage().prop_map(move |g| format!("redis://127.0.0.1:{port}?{g}")),
        1 => garbage().prop_map(|g| format!("redis://127.0.0.1:{g}")),
        1 => any::<i64>().prop_map(move |db| format!("redis://127.0.0.1:{port}/{db}")),
        1 => any::<u32>().prop_map(|p| format!("redis://127.0.0.1:{p}")),
    ]
}

/// `RedisBackend::builder(url)` with arbitrary URLs and timeouts (zero included), and
/// `RedisBackend::connect(url)`: a backend or a typed `RedisBackendError`, within the connect
/// timeout, never a panic, nothing written; a zero timeout is `InvalidOption`.
#[test]
fn redis_urls_and_timeouts_are_rejected_or_work() {
    let env = Env::start();
    let port = env.port();
    let timeouts = || {
        prop_oneof![
            Just(Duration::ZERO),
            Just(Duration::from_nanos(1)),
            (1_u64..300).prop_map(Duration::from_millis),
        ]
    };
    env.run(
        512,
        (urls(port), timeouts(), timeouts(), any::<bool>()),
        |(url, connect_timeout, response_timeout, plain_connect)| {
            let mut conn = env.conn();
            env.case(async move {
                let before = dbsize(&mut conn).await;
                let r = if plain_connect && !url.contains("://") {
                    // Default timeouts; without a scheme nothing can be reached.
                    RedisBackend::connect(&url).await
                } else {
                    RedisBackend::builder(url.clone())
                        .connect_timeout(connect_timeout)
                        .response_timeout(response_timeout)
                        .connect()
                        .await
                };
                match r {
                    Ok(backend) => {
                        let min = Duration::from_millis(1);
                        prop_assert!(connect_timeout >= min && response_timeout >= min);
                        // The backend answers typed results (with a 1 ms response timeout,
                        // possibly transient "timed out" errors).
                        let locks = default_service(backend);
                        match locks.try_acquire("via-garbage-url").await {
                            Ok(g) => match g.release().await {
                                Ok(()) | Err(LockError::Backend { .. }) => {}
                                Err(e) => {
                                    return Err(TestCaseError::fail(format!("release: {e:?}")));
                                }
                            },
                            Err(LockError::Backend { .. } | LockError::Contended { .. }) => {}
                            Err(e) => {
                                return Err(TestCaseError::fail(format!("try_acquire: {e:?}")));
                            }
                        }
                        locks.shutdown().await;
                    }
                    Err(RedisBackendError::InvalidOption { option, .. }) => {
                        // Timeouts below 1 ms are rejected.
                        let min = Duration::from_millis(1);
                        prop_assert!(
                            (option == "connect_timeout" && connect_timeout < min)
                                || (option == "response_timeout" && response_timeout < min),
                            "{}",
                            option
                        );
                    }
                    Err(e) => {
                        // Typed, with a message that never echoes a password-looking part.
                        let _ = e.is_transient();
                        let text = e.to_string();
                        prop_assert!(!text.is_empty());
                        prop_assert_eq!(dbsize(&mut conn).await, before);
                    }
                }
                Ok(())
            })
        },
    );
}

/// A huge ttl never panics and never reaches the store: `Duration::MAX` with
/// `max_ttl(Duration::MAX)` is a typed `InvalidTtl` (every ttl is bounded by
/// `locks_core::TTL_LIMIT`, one day), whether it is the default or a per-call ttl. (Before the
/// bound, the local deadline `Instant + ttl` overflowed and panicked after the store had
/// granted the lease.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_huge_ttl_never_panics() {
    // Per call, with the service's max_ttl lifted as far as it goes: a typed error.
    let lifted = LockService::builder(locks_memory::MemoryBackend::new())
        .max_ttl(Duration::MAX)
        .build()
        .expect("a huge max_ttl is accepted; ttls are still bounded by TTL_LIMIT");
    let r = lifted
        .acquire_opts(
            "huge-ttl",
            locks_core::AcquireOptions::new().ttl(Duration::MAX),
        )
        .await;
    assert!(matches!(r, Err(LockError::InvalidTtl { .. })), "{r:?}");
    assert!(!lifted.is_locked("huge-ttl").await.expect("inspect"));
    let locks = LockService::builder(locks_memory::MemoryBackend::new())
        .max_ttl(Duration::MAX)
        .default_ttl(Duration::MAX)
        .build();
    // Rejecting the setting is a fine answer too.
    let Ok(locks) = locks else { return };
    let acquired = tokio::spawn(async move {
        let g = locks.acquire("huge-ttl").await?;
        g.release().await
    })
    .await;
    match acquired {
        Ok(Ok(())) | Ok(Err(LockError::InvalidTtl { .. })) => {}
        Ok(Err(e)) => panic!("{e:?}"),
        Err(panic) => panic!("acquire panicked: {panic}"),
    }
}
