//! [`FaultyBackend`]: wraps any backend and injects transient failures, lost replies and
//! latency, so renewal and lost-lock paths can be tested on every backend the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Decorator, ListPage, ListQuery, Operation, Outcome};
use locks_core::{BackendError, LockBackend};

#[derive(Debug, Default)]
struct Plan {
    fail_next: AtomicU32,
    lose_replies: AtomicU32,
    unavailable: AtomicBool,
    latency_nanos: AtomicU64,
    injected: AtomicU64,
}

/// A backend wrapper that fails or delays operations on command. Clones share the plan.
///
/// ```
/// use locks_memory::MemoryBackend;
/// use locks_testkit::faulty::FaultyBackend;
///
/// let faulty = FaultyBackend::new(MemoryBackend::new());
/// faulty.set_unavailable(true); // every call now fails with a transient error
/// # faulty.set_unavailable(false);
/// ```
#[derive(Clone)]
pub struct FaultyBackend {
    inner: Arc<dyn LockBackend>,
    plan: Arc<Plan>,
}

impl std::fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("inner", &self.inner.name())
            .field("plan", &self.plan)
            .finish()
    }
}

enum Fault {
    None,
    Before,
    After,
}

impl FaultyBackend {
    /// Wrap `inner`.
    pub fn new(inner: impl LockBackend) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Wrap a shared backend.
    pub fn from_arc(inner: Arc<dyn LockBackend>) -> Self {
        FaultyBackend {
            inner,
            plan: Arc::default(),
        }
    }

    /// The next `n` operations fail with a transient error without reaching the store.
    pub fn fail_next(&self, n: u32) {
        self.plan.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` operations reach the store, then report a transient error (a lost reply).
    pub fn lose_replies_next(&self, n: u32) {
        self.plan.lose_replies.store(n, Ordering::SeqCst);
    }

    /// While `true`, every operation fails with a transient error (a partition). Listening
    /// for releases is not affected.
    pub fn set_unavailable(&self, down: bool) {
        self.plan.unavailable.store(down, Ordering::SeqCst);
    }

    /// Delay every operation by `latency` (tokio time).
    pub fn set_latency(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.plan.latency_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Clear every fault (the count of injected faults stays).
    pub fn clear(&self) {
        self.plan.fail_next.store(0, Ordering::SeqCst);
        self.plan.lose_replies.store(0, Ordering::SeqCst);
        self.plan.unavailable.store(false, Ordering::SeqCst);
        self.plan.latency_nanos.store(0, Ordering::SeqCst);
    }

    /// How many operations failed by injection.
    pub fn injected(&self) -> u64 {
        self.plan.injected.load(Ordering::SeqCst)
    }

    async fn fault(&self) -> Fault {
        let nanos = self.plan.latency_nanos.load(Ordering::SeqCst);
        if nanos > 0 {
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
        let take = |c: &AtomicU32| {
            c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        let fault = if self.plan.unavailable.load(Ordering::SeqCst) || take(&self.plan.fail_next) {
            Fault::Before
        } else if take(&self.plan.lose_replies) {
            Fault::After
        } else {
            return Fault::None;
        };
        self.plan.injected.fetch_add(1, Ordering::SeqCst);
        fault
    }

    async fn call<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        F: Future<Output = Result<T, BackendError>> + Send,
    {
        match self.fault().await {
            Fault::Before => Err(BackendError::transient("injected fault (before the store)")),
            Fault::After => {
                let _ = op.await;
                Err(BackendError::transient("injected fault (reply lost)"))
            }
            Fault::None => op.await,
        }
    }
}

#[async_trait]
impl Decorator for FaultyBackend {
    fn inner(&self) -> &dyn LockBackend {
        &*self.inner
    }

    /// Every store operation may fail, lose its reply or be delayed. Listening for releases is
    /// not affected: a partitioned client can still be woken (it then fails).
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        self.call(op.send(&*self.inner)).await
    }

    /// A listing fails, loses its reply or is delayed like any store operation.
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        self.call(self.inner.list(query)).await
    }
}

locks_core::impl_lock_backend!(FaultyBackend);
