//! The settings of a quorum and their checks.

use std::sync::Arc;
use std::time::Duration;

use locks_core::{LeaseKind, LockBackend};

use crate::backend::{QuorumBackend, Settings};
use crate::error::QuorumError;
use crate::fence::RECORD_KIND;

/// Settings for a [`QuorumBackend`]; [`build`](Self::build) checks them.
///
/// ```
/// use std::time::Duration;
/// use locks_memory::MemoryBackend;
/// use locks_quorum::QuorumBackend;
///
/// let quorum = QuorumBackend::builder()
///     .node(MemoryBackend::new())
///     .node(MemoryBackend::new())
///     .node(MemoryBackend::new())
///     .drift_factor(0.01)
///     .node_timeout(Duration::from_millis(200))
///     .build()?;
/// assert_eq!((quorum.nodes().len(), quorum.majority()), (3, 2));
/// # Ok::<(), locks_quorum::QuorumError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QuorumBuilder {
    nodes: Vec<Arc<dyn LockBackend>>,
    drift_factor: f64,
    drift_floor: Duration,
    node_timeout: Duration,
    record_ttl: Duration,
}

impl Default for QuorumBuilder {
    fn default() -> Self {
        QuorumBuilder {
            nodes: Vec::new(),
            drift_factor: Self::DEFAULT_DRIFT_FACTOR,
            drift_floor: Self::DEFAULT_DRIFT_FLOOR,
            node_timeout: Self::DEFAULT_NODE_TIMEOUT,
            record_ttl: Self::DEFAULT_RECORD_TTL,
        }
    }
}

impl QuorumBuilder {
    /// The default drift factor: 1 % of the ttl (as in Redlock).
    pub const DEFAULT_DRIFT_FACTOR: f64 = 0.01;
    /// The default fixed part of the drift: 2 ms.
    pub const DEFAULT_DRIFT_FLOOR: Duration = Duration::from_millis(2);
    /// The default node timeout: 1 s.
    pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(1);
    /// The default lifetime of a fence record: 10 minutes.
    pub const DEFAULT_RECORD_TTL: Duration = Duration::from_secs(600);

    /// A builder with no nodes and the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a node (any backend).
    pub fn node(mut self, node: impl LockBackend) -> Self {
        self.nodes.push(Arc::new(node));
        self
    }

    /// Add a shared node.
    pub fn node_arc(mut self, node: Arc<dyn LockBackend>) -> Self {
        self.nodes.push(node);
        self
    }

    /// Add several shared nodes.
    pub fn nodes(mut self, nodes: impl IntoIterator<Item = Arc<dyn LockBackend>>) -> Self {
        self.nodes.extend(nodes);
        self
    }

    /// The clock drift allowed for, as a fraction of the ttl (default 0.01, in `0.0..0.5`). A
    /// grant is valid for `ttl - elapsed - (ttl × factor + floor)`; when nothing is left the
    /// grant is given back.
    pub fn drift_factor(mut self, factor: f64) -> Self {
        self.drift_factor = factor;
        self
    }

    /// The fixed part of the drift (default 2 ms, at most 1 s).
    pub fn drift_floor(mut self, floor: Duration) -> Self {
        self.drift_floor = floor;
        self
    }

    /// How long one node may take to answer one call (default 1 s, from 1 ms to 60 s). A
    /// stalled node counts as failed after it; an acquire waits at most this long (or the
    /// lease's validity, if shorter) for a majority.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// How long a fence record lives after a grant (default 10 min, at least 1 s; at least
    /// twice the lease's ttl in any case). Records must outlive the disagreement between the
    /// nodes' fence counters; Redis seeds fences from its clock, so there this is the largest
    /// clock skew between the nodes (see the crate docs, *Fences*).
    pub fn record_ttl(mut self, ttl: Duration) -> Self {
        self.record_ttl = ttl;
        self
    }

    /// The quorum, or a typed error: fewer than 3 nodes, a node without mutex or semaphore
    /// leases (records are permits), a setting out of range.
    pub fn build(self) -> Result<QuorumBackend, QuorumError> {
        if self.nodes.len() < 3 {
            return Err(QuorumError::TooFewNodes {
                got: self.nodes.len(),
            });
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for kind in [LeaseKind::Mutex, RECORD_KIND] {
                if !node.supports(kind) {
                    return Err(QuorumError::NodeLacksKind {
                        node: i,
                        backend: node.name(),
                        kind,
                    });
                }
            }
        }
        if !(0.0..0.5).contains(&self.drift_factor) {
            return Err(QuorumError::DriftFactor(self.drift_factor));
        }
        let check = |option, value: Duration, ok: bool, reason| {
            if ok {
                Ok(())
            } else {
                Err(QuorumError::Duration {
                    option,
                    value,
                    reason,
                })
            }
        };
        check(
            "drift_floor",
            self.drift_floor,
            self.drift_floor <= Duration::from_secs(1),
            "at most 1 s",
        )?;
        check(
            "node_timeout",
            self.node_timeout,
            (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&self.node_timeout),
            "from 1 ms to 60 s",
        )?;
        check(
            "record_ttl",
            self.record_ttl,
            self.record_ttl >= Duration::from_secs(1),
            "at least 1 s",
        )?;
        let majority = self.nodes.len() / 2 + 1;
        Ok(QuorumBackend::from_settings(Settings {
            nodes: self.nodes,
            majority,
            drift_factor: self.drift_factor,
            drift_floor: self.drift_floor,
            node_timeout: self.node_timeout,
            record_ttl: self.record_ttl,
        }))
    }
}
