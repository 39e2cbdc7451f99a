//! The quorum backend: the contract over N nodes, one operation at a time.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Action, Dispatch, ListPage, ListQuery, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockBackend, LockKey, ReleaseListener};

use crate::builder::QuorumBuilder;
use crate::error::QuorumError;

/// A lock backend over N ≥ 3 independent backends (Redlock): a lease is granted when a majority
/// of the nodes granted it within its validity time, kept while a majority confirms its
/// renewals, and its fence is strictly larger than every fence handed out before for the key,
/// whatever the nodes' clocks say. See the [crate docs](crate) for the algorithm and what it
/// guarantees.
///
/// Mutex leases only: [`supports`](LockBackend::supports) is `false` for semaphores and
/// read-write locks (the crate docs say why), and a
/// [`LockService`](locks_core::LockService) refuses those primitives when they are created.
/// Cloning is cheap and shares the nodes.
#[derive(Debug, Clone)]
pub struct QuorumBackend {
    pub(crate) s: Arc<Settings>,
}

/// A built quorum's settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) nodes: Vec<Arc<dyn LockBackend>>,
    pub(crate) majority: usize,
    pub(crate) drift_factor: f64,
    pub(crate) drift_floor: Duration,
    pub(crate) node_timeout: Duration,
    pub(crate) record_ttl: Duration,
}

impl QuorumBackend {
    /// A [`QuorumBuilder`] with no nodes and the default settings.
    pub fn builder() -> QuorumBuilder {
        QuorumBuilder::new()
    }

    /// A quorum over `nodes` with the default settings (see [`QuorumBuilder`]).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use locks_core::{LockBackend, LockService};
    /// use locks_memory::MemoryBackend;
    /// use locks_quorum::QuorumBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let nodes: Vec<Arc<dyn LockBackend>> =
    ///     (0..3).map(|_| Arc::new(MemoryBackend::new()) as Arc<dyn LockBackend>).collect();
    /// let locks = LockService::new(QuorumBackend::new(nodes)?)?;
    /// let guard = locks.acquire("payment:42").await?;
    /// println!("fence {}", guard.fence());
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn new(nodes: impl IntoIterator<Item = Arc<dyn LockBackend>>) -> Result<Self, QuorumError> {
        QuorumBuilder::new().nodes(nodes).build()
    }

    pub(crate) fn from_settings(s: Settings) -> Self {
        QuorumBackend { s: Arc::new(s) }
    }

    /// The nodes, in the order given.
    pub fn nodes(&self) -> &[Arc<dyn LockBackend>] {
        &self.s.nodes
    }

    /// How many nodes make a majority: `N / 2 + 1`.
    pub fn majority(&self) -> usize {
        self.s.majority
    }

    /// The clock drift allowed for a lease of `ttl`: `ttl × drift factor + drift floor`.
    pub fn drift(&self, ttl: Duration) -> Duration {
        ttl.mul_f64(self.s.drift_factor)
            .saturating_add(self.s.drift_floor)
    }

    /// How many refusals or failures decide that no majority can agree: `N - majority + 1`.
    pub(crate) fn blocking(&self) -> usize {
        self.s.nodes.len() - self.s.majority + 1
    }

    /// The node timeout.
    pub(crate) fn node_timeout(&self) -> Duration {
        self.s.node_timeout
    }

    fn check_kind(kind: LeaseKind) -> Result<(), BackendError> {
        if kind == LeaseKind::Mutex {
            Ok(())
        } else {
            Err(BackendError::unsupported("quorum", kind))
        }
    }
}

#[async_trait]
impl Dispatch for QuorumBackend {
    fn name(&self) -> &'static str {
        "quorum"
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        kind == LeaseKind::Mutex
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        Self::check_kind(op.kind)?;
        match op.action {
            Action::TryAcquire { token, ttl } => {
                self.acquire(op.key, token, ttl).await.map(Outcome::Acquire)
            }
            Action::Extend { token, ttl } => {
                self.extend(op.key, token, ttl).await.map(Outcome::Done)
            }
            Action::Release { token } => self.release(op.key, token).await.map(Outcome::Done),
            Action::Holders => self.holders(op.key).await.map(Outcome::Holders),
            Action::ForceRelease => self.force_release(op.key).await.map(Outcome::Done),
            _ => Err(BackendError::permanent(format!(
                "the quorum backend does not know the operation `{}`",
                op.name()
            ))),
        }
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        crate::listen::listen_all(self, key).await
    }

    /// The mutex leases a majority of the nodes hold (see the crate's `list` module).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        crate::list::list_page(self, query).await
    }
}

locks_core::impl_lock_backend!(QuorumBackend);
