//! What every suite shares: the [`Harness`] a backend provides, the case registry and the
//! runner that makes the suites capability-aware, and small helpers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    LeaseInfo, LeaseKind, LockBackend, LockError, LockKey, LockService, OwnerToken, RetryPolicy,
};
use tokio::time::{Instant, timeout};

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

/// A service with short timings so real-time stores finish quickly.
pub(crate) fn service(backend: Arc<dyn LockBackend>) -> LockService {
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

const LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: did not finish within {LIMIT:?}"))
}

/// Poll a condition (without sleeping to synchronise: a bounded loop of short waits).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < LIMIT,
            "{what}: condition never became true"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
