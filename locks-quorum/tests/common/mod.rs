//! Test nodes: memory stores that can be stopped, stalled, restarted empty and skewed.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Dispatch, Operation, Outcome};
use locks_core::{
    AcquireOptions, BackendError, LeaseKind, LockBackend, LockError, LockKey, LockService,
    ReleaseListener,
};
use locks_memory::{ManualClock, MemoryBackend};
use locks_quorum::{NoQuorum, QuorumBackend};
use locks_testkit::faulty::FaultyBackend;
use tokio::time::Instant;

/// A memory store that can be restarted empty (a new store behind the same node), on its own
/// manual clock or on tokio's.
#[derive(Debug, Clone)]
pub struct Restartable {
    store: Arc<Mutex<MemoryBackend>>,
    clock: Option<ManualClock>,
}

impl Restartable {
    fn fresh(clock: &Option<ManualClock>) -> MemoryBackend {
        match clock {
            Some(c) => MemoryBackend::with_clock(c.clone()),
            None => MemoryBackend::new(),
        }
    }

    pub fn new(clock: Option<ManualClock>) -> Self {
        Restartable {
            store: Arc::new(Mutex::new(Self::fresh(&clock))),
            clock,
        }
    }

    /// The store now behind the node.
    pub fn store(&self) -> MemoryBackend {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lose everything: leases, fence counter.
    pub fn restart_empty(&self) {
        *self.store.lock().unwrap_or_else(PoisonError::into_inner) = Self::fresh(&self.clock);
    }
}

#[async_trait]
impl Dispatch for Restartable {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn supports(&self, kind: LeaseKind) -> bool {
        LockBackend::supports(&self.store(), kind)
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        op.send(&self.store()).await
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        LockBackend::listen(&self.store(), key).await
    }

    async fn list(
        &self,
        query: &locks_core::backend::ListQuery,
    ) -> Result<locks_core::backend::ListPage, BackendError> {
        LockBackend::list(&self.store(), query).await
    }
}
locks_core::impl_lock_backend!(Restartable);

/// One node of a test quorum: its store, its clock (if manual) and its fault switch.
#[derive(Debug, Clone)]
pub struct Node {
    pub store: Restartable,
    pub clock: Option<ManualClock>,
    pub faults: FaultyBackend,
}

impl Node {
    /// Stop (or start again) answering.
    pub fn down(&self, down: bool) {
        self.faults.set_unavailable(down);
    }

    /// Move this node's clock forward (it must be manual).
    pub fn jump(&self, by: Duration) {
        self.clock.as_ref().expect("a manual clock").advance(by);
    }
}

/// `n` nodes on tokio's clock.
pub fn nodes(n: usize) -> Vec<Node> {
    (0..n).map(|_| node(None)).collect()
}

/// `n` nodes on manual clocks, node `i` started `skew × i` ahead (so with a skew of 10 s the
/// middle node is 10 s off each neighbour).
pub fn skewed_nodes(n: usize, skew: Duration) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let clock = ManualClock::new();
            clock.advance(skew * u32::try_from(i).expect("few nodes"));
            node(Some(clock))
        })
        .collect()
}

fn node(clock: Option<ManualClock>) -> Node {
    let store = Restartable::new(clock.clone());
    let faults = FaultyBackend::new(store.clone());
    Node {
        store,
        clock,
        faults,
    }
}

/// A quorum over `nodes` with a short node timeout.
pub fn quorum(nodes: &[Node]) -> QuorumBackend {
    nodes
        .iter()
        .fold(QuorumBackend::builder(), |b, n| b.node(n.faults.clone()))
        .node_timeout(Duration::from_millis(100))
        .build()
        .expect("quorum")
}

/// A service with short waits over `backend`.
pub fn service(backend: impl LockBackend) -> LockService {
    LockService::builder(backend)
        .default_ttl(Duration::from_secs(2))
        .default_wait_timeout(Duration::from_secs(10))
        .build()
        .expect("service")
}

/// Raise node `node`'s fence counter by taking and giving back `times` leases of other keys
/// directly on it, so the nodes' counters disagree.
pub async fn raise_counter(node: &Node, times: usize) {
    let store = node.store.store();
    for i in 0..times {
        let key = LockKey::new("_lock:", &format!("other:{i}")).expect("key");
        let token = locks_core::OwnerToken::new();
        store
            .try_acquire(&key, LeaseKind::Mutex, token, Duration::from_secs(1))
            .await
            .expect("acquire");
        store
            .release(&key, LeaseKind::Mutex, token)
            .await
            .expect("release");
    }
}

/// A resource that refuses writes with a fence lower than the largest it accepted.
#[derive(Debug, Default)]
pub struct FencedResource {
    largest: std::sync::atomic::AtomicU64,
}

impl FencedResource {
    /// Accept a write with `fence` if it is not below the largest so far.
    pub fn write(&self, fence: u64) -> bool {
        self.largest.fetch_max(fence, Ordering::SeqCst) <= fence
    }
}

/// `tasks` tasks take `key` `rounds` times each through `svc`, each staying inside for `hold`
/// (tokio time; zero: one yield to the scheduler); never two inside at once, and the fences
/// seen inside strictly increase in the order the holders got in. Returns those fences.
pub async fn contend(
    svc: &LockService,
    key: &str,
    tasks: usize,
    rounds: usize,
    hold: Duration,
) -> Vec<u64> {
    let inside = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (svc, key) = (svc.clone(), key.to_owned());
        let (inside, fences) = (Arc::clone(&inside), Arc::clone(&fences));
        handles.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let guard = svc.acquire(&key).await.expect("acquire");
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                fences.lock().expect("fences").push(guard.fence());
                if hold.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(hold).await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.expect("release");
            }
        }));
    }
    for h in handles {
        h.await.expect("task");
    }
    let fences = fences.lock().expect("fences").clone();
    assert_eq!(fences.len(), tasks * rounds);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not strictly increasing: {fences:?}"
    );
    fences
}

/// Acquires `key` through `svc` with a wait budget of `budget` while no majority answers: it
/// must give up with `AcquireTimeout` whose backend error is a [`NoQuorum`]. Returns that
/// error and how long the acquire took.
pub async fn no_quorum_within(
    svc: &LockService,
    key: &str,
    budget: Duration,
) -> (NoQuorum, Duration) {
    let started = Instant::now();
    let err = svc
        .acquire_opts(key, AcquireOptions::new().wait_timeout(budget))
        .await
        .expect_err("no majority");
    let waited = started.elapsed();
    let LockError::AcquireTimeout {
        last_error: Some(source),
        ..
    } = &err
    else {
        panic!("expected a timeout with the backend error, got {err:?}");
    };
    let no =
        NoQuorum::find(source).unwrap_or_else(|| panic!("the source is not NoQuorum: {source:?}"));
    (no.clone(), waited)
}

/// Asserts that an acquire was refused because someone else holds the lock.
pub fn assert_contended<T: std::fmt::Debug>(answer: Result<T, LockError>) {
    assert!(
        matches!(answer, Err(LockError::Contended { .. })),
        "{answer:?}"
    );
}
