//! What every suite shares: the [`Harness`] a backend provides, the case registry and the
//! runner that makes the suites capability-aware, and small helpers.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use locks_core::{
    AcquireOptions, LeaseInfo, LeaseKind, LockBackend, LockError, LockGuard, LockKey, LockService,
    LostReason, OwnerToken, RetryPolicy,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

use crate::faulty::FaultyBackend;

/// What the suites need from a backend under test, beyond [`LockBackend`].
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// The backend under test. Every call returns a handle to the *same* store.
    fn backend(&self) -> Arc<dyn LockBackend>;

    /// Make every lease under `key` (mutex lease, semaphore permits, read and write leases)
    /// expire now in the store, without telling the holders (as if their ttls had run out
    /// while they were paused).
    async fn expire(&self, key: &LockKey);
}

#[async_trait]
impl Harness for Box<dyn Harness> {
    fn backend(&self) -> Arc<dyn LockBackend> {
        (**self).backend()
    }
    async fn expire(&self, key: &LockKey) {
        (**self).expire(key).await;
    }
}

/// A [`Harness`] made of its parts, for a backend that needs no harness type of its own: the
/// backend under test, a function that expires every lease of a key in its store, and whatever
/// must live as long as the harness (a server process, say).
///
/// ```ignore
/// async fn harness() -> BackendHarness {
///     let store = MemoryBackend::new();
///     BackendHarness::new(store.clone(), move |key| {
///         store.expire_now(&key);
///         async {}
///     })
/// }
/// ```
pub struct BackendHarness {
    backend: Arc<dyn LockBackend>,
    expire: Box<dyn Fn(LockKey) -> BoxFuture<'static, ()> + Send + Sync>,
    // Last: dropped after the backend and the expire function.
    kept: Vec<Box<dyn Any + Send + Sync>>,
}

impl BackendHarness {
    /// A harness for `backend`; [`Harness::expire`] runs `expire` (see there for what it must
    /// do).
    pub fn new<F, Fut>(backend: impl LockBackend, expire: F) -> Self
    where
        F: Fn(LockKey) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        BackendHarness {
            backend: Arc::new(backend),
            expire: Box::new(move |key| Box::pin(expire(key))),
            kept: Vec::new(),
        }
    }

    /// Keeps `resource` alive until the harness drops, after the backend.
    pub fn keeping(mut self, resource: impl Send + Sync + 'static) -> Self {
        self.kept.push(Box::new(resource));
        self
    }
}

#[async_trait]
impl Harness for BackendHarness {
    fn backend(&self) -> Arc<dyn LockBackend> {
        Arc::clone(&self.backend)
    }
    async fn expire(&self, key: &LockKey) {
        (self.expire)(key.clone()).await;
    }
}

/// A case's future (the suites run on the test's own runtime; no `Send` needed).
pub type CaseFuture = Pin<Box<dyn Future<Output = ()>>>;

/// One case of a suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name: the name of the test generated for it.
    pub name: &'static str,
    /// Runs the case against a harness.
    pub run: fn(Box<dyn Harness>) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// A suite: its cases (from the suite's one case list) and the lease kinds they need.
#[derive(Debug)]
pub struct Suite {
    /// The suite's name (`mutex`, `semaphore`, `rwlock`, `coordination`).
    pub name: &'static str,
    /// The kinds a backend must support to run the cases.
    pub kinds: &'static [LeaseKind],
    /// Every case, in list order.
    pub cases: &'static [Case],
}

impl Suite {
    /// The case called `name`.
    pub fn case(&self, name: &str) -> Option<&'static Case> {
        self.cases.iter().find(|c| c.name == name)
    }

    /// Run case `name` on `harness` if the backend supports the suite's kinds; otherwise check
    /// that the backend says so and that the service refuses the primitive with
    /// [`LockError::Unsupported`] when it is created. A backend never skips a case silently.
    ///
    /// # Panics
    ///
    /// When the case does not exist in this suite, or fails.
    pub async fn run(&self, name: &str, harness: Box<dyn Harness>) {
        let Some(case) = self.case(name) else {
            panic!("suite `{}` has no case `{name}`", self.name);
        };
        let backend = harness.backend();
        match self.kinds.iter().find(|k| !backend.supports(**k)) {
            None => (case.run)(harness).await,
            Some(kind) => assert_refused(&backend, *kind),
        }
    }
}

/// The service refuses a primitive of `kind` at creation when the backend does not support it.
fn assert_refused(backend: &Arc<dyn LockBackend>, kind: LeaseKind) {
    let svc = LockService::builder_arc(Arc::clone(backend))
        .build()
        .expect("a service builds on any backend");
    let refused = match kind {
        LeaseKind::Permit { limit } => svc.semaphore("refused", limit).map(drop),
        LeaseKind::Read | LeaseKind::Write => svc.rwlock("refused").map(drop),
        _ => svc.ensure_supported(kind),
    };
    assert!(
        matches!(refused, Err(LockError::Unsupported { kind: k, .. }) if k == kind),
        "{} does not support {kind}, but creating the primitive gave {refused:?}",
        backend.name()
    );
}

/// The mutex lease of `key` on `backend`, if any.
pub(crate) async fn holder(backend: &Arc<dyn LockBackend>, key: &LockKey) -> Option<LeaseInfo> {
    backend
        .holders(key, LeaseKind::Mutex)
        .await
        .expect("holders")
        .leases
        .into_iter()
        .next()
}

/// A key no other test uses (tests may share a store).
pub(crate) fn unique(name: &str) -> String {
    format!("conformance:{name}:{}", OwnerToken::new())
}

/// A key no other test uses, for the semaphore, read-write lock and coordination suites.
pub(crate) fn unique_primitive(name: &str) -> String {
    unique(&format!("primitives:{name}"))
}

/// Options for a lease of `ttl`.
pub(crate) fn with_ttl(ttl: Duration) -> AcquireOptions {
    AcquireOptions::new().ttl(ttl)
}

/// Options that wait at most `limit` for the lease.
pub(crate) fn waiting_at_most(limit: Duration) -> AcquireOptions {
    AcquireOptions::new().wait_timeout(limit)
}

/// Options that make at most `attempts` attempts.
pub(crate) fn attempts_at_most(attempts: u32) -> AcquireOptions {
    AcquireOptions::new().retry(RetryPolicy::default().max_attempts(Some(attempts)))
}

/// A service with short timings so real-time stores finish quickly: ttl 2 s, wait 10 s,
/// retries from 2 ms up to 50 ms apart. The one the suites use, for other tests on real stores.
pub fn service(backend: Arc<dyn LockBackend>) -> LockService {
    LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(2))
        .default_wait_timeout(Duration::from_secs(10))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(2))
                .max_delay(Duration::from_millis(50)),
        )
        .build()
        .expect("valid test service")
}

/// A [`service`] whose store calls go through a fault injector over `h`'s backend, and the
/// injector.
pub(crate) fn faulty_service<H: Harness>(h: &H) -> (FaultyBackend, LockService) {
    let faulty = FaultyBackend::from_arc(h.backend());
    let svc = service(Arc::new(faulty.clone()));
    (faulty, svc)
}

/// Takes `key` with a lease of `ttl`.
pub(crate) async fn acquire_with_ttl(svc: &LockService, key: &str, ttl: Duration) -> LockGuard {
    svc.acquire_opts(key, with_ttl(ttl)).await.expect("acquire")
}

/// Waits for a lease that must be granted (`what` says which), and releases it at once.
pub(crate) async fn acquire_and_release(
    acquired: impl Future<Output = Result<LockGuard, LockError>>,
    what: &str,
) {
    acquired
        .await
        .expect(what)
        .release()
        .await
        .expect("release");
}

/// Waits four ttls and checks that renewal kept `guard`'s lease in the store.
pub(crate) async fn assert_renewed_past_ttl(guard: &LockGuard, ttl: Duration) {
    tokio::time::sleep(ttl * 4).await;
    assert!(guard.is_held().await.expect("inspect"));
}

/// Expires every lease of `key` in the store, then checks that `guard`, a lease of `ttl`, finds
/// out at a renewal: `lost()` says `NotOwner` within three ttls.
pub(crate) async fn assert_lost_after_expiry<H: Harness>(
    h: &H,
    key: &LockKey,
    guard: &LockGuard,
    ttl: Duration,
) {
    h.expire(key).await;
    let reason = timeout(ttl * 3, guard.lost()).await.expect("lost fired");
    assert_eq!(reason, LostReason::NotOwner);
}

/// Releases `held`, then checks that `waiter` gets the lease next, with a larger fence.
pub(crate) async fn assert_waiter_takes_over(
    held: LockGuard,
    waiter: JoinHandle<Result<LockGuard, LockError>>,
) {
    let fence = held.fence();
    held.release().await.expect("release");
    let next = within("waiter", waiter)
        .await
        .expect("task")
        .expect("acquired after release");
    assert!(next.fence() > fence);
    next.release().await.expect("release");
}

/// How many tasks are inside a critical section, and the most that ever were at once.
#[derive(Debug, Default)]
pub(crate) struct Occupancy {
    inside: AtomicUsize,
    most: AtomicUsize,
}

impl Occupancy {
    /// A task enters; returns how many are inside now, itself included.
    pub(crate) fn enter(&self) -> usize {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        now
    }

    /// A task leaves.
    pub(crate) fn leave(&self) {
        self.inside.fetch_sub(1, Ordering::SeqCst);
    }

    /// How many are inside now.
    pub(crate) fn now(&self) -> usize {
        self.inside.load(Ordering::SeqCst)
    }

    /// The most that were ever inside at once.
    pub(crate) fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

const LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {LIMIT:?}"))
}

/// Waits for every task, within the time limit; panics if one panicked.
pub(crate) async fn join_all(what: &str, tasks: Vec<JoinHandle<()>>) {
    within(what, futures::future::try_join_all(tasks))
        .await
        .unwrap_or_else(|e| panic!("{what}: a task failed: {e}"));
}

/// The pause between two polls of a condition.
const POLL: Duration = Duration::from_millis(1);

/// Poll a condition (without sleeping to synchronise: a bounded loop of short waits).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIMIT,
            "{what}: condition never became true"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Poll the store until `key` is free, within the time limit.
pub(crate) async fn until_unlocked(what: &str, svc: &LockService, key: &str) {
    within(what, async {
        while svc.is_locked(key).await.expect("inspect") {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
}
