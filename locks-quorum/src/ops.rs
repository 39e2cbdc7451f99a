//! `extend`, `release`, `holders` and `force_release` over the nodes.

use std::collections::HashMap;
use std::time::Duration;

use locks_core::{BackendError, Holders, LeaseInfo, LeaseKind, LockKey, OwnerToken};

use crate::backend::QuorumBackend;
use crate::error::NoQuorum;
use crate::fanout::{Fanout, Tally, permanent_majority};
use crate::fence::{self, Record};

impl QuorumBackend {
    /// A compare-and-act operation answered by every node: `true` with a majority of `true`,
    /// `false` once no majority can say `true` any more (a majority said "not owner": the lease
    /// is lost), else a transient [`NoQuorum`] (the nodes that failed may have applied it: the
    /// lease's state is unknown).
    async fn majority_bool(
        &self,
        operation: &'static str,
        fanout: Fanout<bool>,
    ) -> Result<bool, BackendError> {
        self.majority_tally(operation, fanout).await.0
    }

    /// [`majority_bool`](Self::majority_bool), with the nodes that said `false` before the
    /// outcome was known.
    async fn majority_tally(
        &self,
        operation: &'static str,
        fanout: Fanout<bool>,
    ) -> (Result<bool, BackendError>, Vec<usize>) {
        let (majority, blocking) = (self.majority(), self.blocking());
        let mut tally = Tally::collect(fanout, |t| t.yes >= majority || t.no >= blocking).await;
        let said_no = std::mem::take(&mut tally.said_no);
        (self.decide(operation, tally), said_no)
    }

    fn decide(&self, operation: &'static str, mut tally: Tally) -> Result<bool, BackendError> {
        let (majority, blocking) = (self.majority(), self.blocking());
        if tally.yes >= majority {
            return Ok(true);
        }
        if tally.no >= blocking {
            return Ok(false);
        }
        let n = self.s.nodes.len();
        if let Some(e) = permanent_majority(&mut tally.failed, n, majority) {
            return Err(e);
        }
        Err(NoQuorum {
            operation,
            agreed: tally.yes,
            refused: tally.no,
            failed: tally.failed.len(),
            needed: majority,
            nodes: n,
            validity_exhausted: false,
        }
        .into_backend_error())
    }

    /// Extend on every node; see [`majority_bool`](Self::majority_bool). When a majority
    /// confirmed, the nodes that no longer had the lease (restarted empty, a clock that jumped,
    /// down when it was granted) are asked to grant it again, in the background: where the key
    /// is free there, the lease is whole again, and a later fault on another node does not
    /// leave it on a bare majority.
    pub(crate) async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let n = self.s.nodes.len();
        let fanout = Fanout::start(&self.s.nodes, 0..n, self.node_timeout(), |_, node| {
            let key = key.clone();
            async move { node.extend(&key, LeaseKind::Mutex, token, ttl).await }
        });
        let (answer, said_no) = self.majority_tally("extend", fanout).await;
        if matches!(answer, Ok(true)) && !said_no.is_empty() {
            let nodes: Vec<_> = said_no
                .iter()
                .filter_map(|i| self.s.nodes.get(*i).cloned())
                .collect();
            let key = key.clone();
            tokio::spawn(async move {
                for node in nodes {
                    // Best effort: refused where someone else holds it, which is fine.
                    let _ = node.try_acquire(&key, LeaseKind::Mutex, token, ttl).await;
                }
            });
        }
        answer
    }

    /// Release on every node; `true` when a majority still had the lease.
    pub(crate) async fn release(
        &self,
        key: &LockKey,
        token: OwnerToken,
    ) -> Result<bool, BackendError> {
        let n = self.s.nodes.len();
        let fanout = Fanout::start(&self.s.nodes, 0..n, self.node_timeout(), |_, node| {
            let key = key.clone();
            async move { node.release(&key, LeaseKind::Mutex, token).await }
        });
        self.majority_bool("release", fanout).await
    }

    /// Force-release on every node; `true` if the nodes that had a lease, with the ones that
    /// failed, could have made a majority (a lease left on a minority is cleared but is not
    /// a lock anybody held). Needs a majority of answers to say `false`.
    pub(crate) async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        let n = self.s.nodes.len();
        let fanout = Fanout::start(&self.s.nodes, 0..n, self.node_timeout(), |_, node| {
            let key = key.clone();
            async move { node.force_release(&key, LeaseKind::Mutex).await }
        });
        let mut tally = Tally::collect(fanout, |_| false).await;
        if tally.yes > 0 && tally.yes + tally.failed.len() >= self.majority() {
            return Ok(true);
        }
        if tally.yes + tally.no >= self.majority() {
            return Ok(false);
        }
        if let Some(e) = permanent_majority(&mut tally.failed, n, self.majority()) {
            return Err(e);
        }
        Err(NoQuorum {
            operation: "force_release",
            agreed: tally.no,
            refused: 0,
            failed: tally.failed.len(),
            needed: self.majority(),
            nodes: n,
            validity_exhausted: false,
        }
        .into_backend_error())
    }

    /// The leases held on a majority of the nodes. A lease's remaining time is the
    /// majority-th longest among the nodes that list it (how long a majority keeps it), its
    /// fence the one the quorum handed out (from the fence records; the largest node fence if
    /// the records are gone). Needs a majority of answers.
    pub(crate) async fn holders(&self, key: &LockKey) -> Result<Holders, BackendError> {
        let records_key = fence::record_key(key)?;
        let n = self.s.nodes.len();
        let mut round = Fanout::start(&self.s.nodes, 0..n, self.node_timeout(), |_, node| {
            let (key, records_key) = (key.clone(), records_key.clone());
            async move {
                let leases = node.holders(&key, LeaseKind::Mutex).await?.leases;
                let records = fence::read(&*node, &records_key).await?;
                Ok((leases, records))
            }
        });
        let mut by_owner: HashMap<OwnerToken, Vec<LeaseInfo>> = HashMap::new();
        let mut records: Vec<Record> = Vec::new();
        let (mut answered, mut failed) = (0, Vec::new());
        while let Some((_, answer)) = round.next().await {
            match answer {
                Ok((leases, recs)) => {
                    answered += 1;
                    records.extend(recs);
                    for lease in leases {
                        by_owner.entry(lease.owner).or_default().push(lease);
                    }
                }
                Err(e) => failed.push(e),
            }
        }
        if answered < self.majority() {
            if let Some(e) = permanent_majority(&mut failed, n, self.majority()) {
                return Err(e);
            }
            return Err(NoQuorum {
                operation: "holders",
                agreed: answered,
                refused: 0,
                failed: failed.len(),
                needed: self.majority(),
                nodes: n,
                validity_exhausted: false,
            }
            .into_backend_error());
        }
        let mut leases: Vec<LeaseInfo> = by_owner
            .into_iter()
            .filter(|(_, on)| on.len() >= self.majority())
            .map(|(owner, mut on)| {
                on.sort_unstable_by_key(|l| std::cmp::Reverse(l.remaining));
                let remaining = on
                    .get(self.majority() - 1)
                    .map_or(Duration::ZERO, |l| l.remaining);
                let fence = records
                    .iter()
                    .filter(|r| r.is_for(owner))
                    .map(|r| r.fence)
                    .max()
                    .unwrap_or_else(|| on.iter().map(|l| l.fence).max().unwrap_or(0));
                LeaseInfo::new(LeaseKind::Mutex, owner, remaining, fence)
            })
            .collect();
        leases.sort_unstable_by_key(|l| l.fence);
        Ok(Holders::new(leases))
    }
}
