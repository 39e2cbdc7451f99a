//! Typed errors: a quorum that cannot be built, and a quorum operation without a majority.

use std::time::Duration;

use locks_core::{BackendError, LeaseKind};

/// Why [`QuorumBuilder::build`](crate::QuorumBuilder::build) refused its settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// A quorum needs at least three nodes: with two, a majority is both of them and one failed
    /// node stops every lock; with one, it is just that backend.
    #[error("a quorum needs at least 3 nodes, got {got}")]
    TooFewNodes {
        /// How many nodes were given.
        got: usize,
    },
    /// A node cannot store a kind the quorum needs: mutex leases for the locks themselves,
    /// semaphore permits for the fence records (see the crate docs, *Fences*).
    #[error("node {node} ({backend}) does not support {kind} leases, which the quorum needs")]
    NodeLacksKind {
        /// The node's index in the order given.
        node: usize,
        /// The node's backend name.
        backend: &'static str,
        /// The kind it lacks.
        kind: LeaseKind,
    },
    /// The drift factor must be a finite number in `0.0..0.5`.
    #[error("the drift factor must be in 0.0..0.5, got {0}")]
    DriftFactor(f64),
    /// A duration setting out of range.
    #[error("invalid `{option}` {value:?}: {reason}")]
    Duration {
        /// The setting's name.
        option: &'static str,
        /// The value given.
        value: Duration,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a quorum operation got no majority answer: the source of the transient
/// [`BackendError`] the quorum returns (find it with `std::error::Error::source` or
/// [`NoQuorum::find`]).
///
/// With a majority of nodes down, every acquire fails with this error, and
/// [`LockService::acquire`](locks_core::LockService::acquire) gives up when its wait budget runs
/// out with `LockError::AcquireTimeout { last_error: Some(..) }` whose source is this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no quorum for {operation}: {agreed} of {nodes} nodes agreed, {needed} needed \
     ({refused} refused, {failed} failed){detail}",
    detail = if self.validity_exhausted { "; the validity time ran out" } else { "" }
)]
#[non_exhaustive]
pub struct NoQuorum {
    /// The contract method (`try_acquire`, `extend`, ...).
    pub operation: &'static str,
    /// How many nodes answered the way that would have decided it.
    pub agreed: usize,
    /// How many nodes answered otherwise (a refusal, "not owner").
    pub refused: usize,
    /// How many nodes failed or did not answer within the node timeout.
    pub failed: usize,
    /// The majority.
    pub needed: usize,
    /// The quorum's size.
    pub nodes: usize,
    /// A majority granted, but too late: the lease's validity (`ttl - elapsed - drift`) was
    /// used up, so the grant was given back.
    pub validity_exhausted: bool,
}

impl NoQuorum {
    /// The `NoQuorum` behind a backend error, if that is why it failed.
    pub fn find(error: &BackendError) -> Option<&NoQuorum> {
        std::error::Error::source(error).and_then(|s| s.downcast_ref::<NoQuorum>())
    }

    /// As a transient [`BackendError`]: the nodes may come back, and retrying may succeed.
    pub(crate) fn into_backend_error(self) -> BackendError {
        BackendError::transient(self.to_string()).with_source(self)
    }
}
