//! `try_acquire` on a majority: the grant round, the fence records, the validity check.

use std::time::Duration;

use locks_core::{AcquireResult, BackendError, Lease, LeaseKind, LockKey, OwnerToken};
use tokio::time::Instant;

use crate::backend::QuorumBackend;
use crate::error::NoQuorum;
use crate::fanout::{Fanout, permanent_majority};
use crate::fence::{self, Record};

/// What one node said to the acquire.
enum NodeAnswer {
    /// It granted, with its own fence and the fence records it lists.
    Granted { fence: u64, records: Vec<Record> },
    /// Someone holds it there.
    Held(Option<Duration>),
}

impl QuorumBackend {
    /// Acquire on every node at once; granted with a majority within the validity time, with a
    /// fence above every earlier one (see [`fence`]). Otherwise every node's grant is given
    /// back, and the answer is `Held` when refusals alone deny a majority, else a transient
    /// [`NoQuorum`] error.
    pub(crate) async fn acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let records_key = fence::record_key(key)?;
        let start = Instant::now();
        let drift = self.drift(ttl);
        if drift >= ttl {
            return Err(BackendError::permanent(format!(
                "a ttl of {ttl:?} leaves no validity after the quorum's drift allowance of \
                 {drift:?}"
            )));
        }
        let budget = self.node_timeout().min(ttl.saturating_sub(drift));
        let n = self.s.nodes.len();
        let mut round = Fanout::start(&self.s.nodes, 0..n, budget, |_, node| {
            let (key, records_key) = (key.clone(), records_key.clone());
            async move {
                match node.try_acquire(&key, LeaseKind::Mutex, token, ttl).await? {
                    AcquireResult::Held { remaining } => Ok(NodeAnswer::Held(remaining)),
                    AcquireResult::Acquired(lease) => Ok(NodeAnswer::Granted {
                        fence: lease.fence,
                        records: fence::read(&*node, &records_key).await?,
                    }),
                }
            }
        });
        let mut granted: Vec<(usize, u64, Vec<Record>)> = Vec::new();
        let mut held: Vec<Option<Duration>> = Vec::new();
        let mut failed: Vec<BackendError> = Vec::new();
        let majority = self.majority();
        while let Some((i, answer)) = round.next().await {
            match answer {
                Ok(NodeAnswer::Granted { fence, records }) => granted.push((i, fence, records)),
                Ok(NodeAnswer::Held(remaining)) => held.push(remaining),
                Err(e) => failed.push(e),
            }
            // Only a majority of grants ends the round early. A refused attempt waits for
            // every node (within the budget) so that it can give back every grant it got: a
            // grant left behind would block the others until this waiter's next attempt,
            // and under contention every waiter would hold one (a livelock). Failures do not
            // end it either: the nodes still answering may refuse, which makes the answer
            // `Held` (with a hint) rather than an error. And a holder acquiring again gets its
            // own fence back only where a majority shows its recorded lease still held: the
            // first majority to answer may not show it (a record write of the last grant still
            // on its way to one of them), so it hears the others too.
            if granted.len() >= majority
                && !fence::own_unproven(token, &answers_of(&granted), majority)
            {
                break;
            }
        }
        let no_quorum = |validity_exhausted, agreed, refused, failed| NoQuorum {
            operation: "try_acquire",
            agreed,
            refused,
            failed,
            needed: majority,
            nodes: n,
            validity_exhausted,
        };
        if granted.len() < majority {
            self.give_back(key, token, granted.iter().map(|(i, _, _)| *i).collect())
                .await;
            if held.len() >= self.blocking() {
                return Ok(AcquireResult::Held {
                    remaining: hint(&held, majority - granted.len()),
                });
            }
            if let Some(e) = permanent_majority(&mut failed, n, majority) {
                return Err(e);
            }
            let e = no_quorum(false, granted.len(), held.len(), failed.len());
            return Err(e.into_backend_error());
        }

        let granted_nodes: Vec<usize> = granted.iter().map(|(i, _, _)| *i).collect();
        let fence = fence::choose(token, &answers_of(&granted), majority);
        let written = self
            .write_records(&records_key, Record::new(fence, token), ttl, granted)
            .await;
        let elapsed = start.elapsed();
        let valid = elapsed.saturating_add(drift) < ttl;
        if written < self.majority() || !valid {
            self.give_back(key, token, granted_nodes).await;
            let e = no_quorum(!valid, written, held.len(), failed.len());
            return Err(e.into_backend_error());
        }
        Ok(AcquireResult::Acquired(Lease::new(fence)))
    }

    /// Write the grant's fence record on every node (the ones that granted clear the older
    /// records they listed); how many wrote it, once a majority did or cannot any more. Writing
    /// beyond the majority that granted keeps the record when one of those nodes later comes
    /// back empty.
    async fn write_records(
        &self,
        records_key: &LockKey,
        record: Record,
        ttl: Duration,
        granted: Vec<(usize, u64, Vec<Record>)>,
    ) -> usize {
        let record_ttl = self.s.record_ttl.max(ttl.saturating_mul(2));
        let total = self.s.nodes.len();
        let mut seen_by_node: Vec<(usize, Vec<Record>)> =
            granted.into_iter().map(|(i, _, r)| (i, r)).collect();
        let mut round = Fanout::start(&self.s.nodes, 0..total, self.node_timeout(), |i, node| {
            let seen = seen_by_node
                .iter_mut()
                .find(|(j, _)| *j == i)
                .map(|(_, r)| std::mem::take(r))
                .unwrap_or_default();
            fence::write(node, records_key.clone(), record, record_ttl, seen)
        });
        let (mut written, mut lost) = (0, 0);
        while let Some((_, answer)) = round.next().await {
            match answer {
                Ok(true) => written += 1,
                _ => lost += 1,
            }
            if written >= self.majority() || total - lost < self.majority() {
                break;
            }
        }
        written
    }

    /// Release `token`'s lease on the nodes that granted it (a failed acquire gives its
    /// partial grants back), waiting for their answers within the node timeout. Only there:
    /// a store may retire a token released where it holds nothing (refusing it from then on),
    /// and the service acquires again with the same token after a `Held`. A refused attempt
    /// has heard every node by then; a node that did not answer within the budget may still
    /// apply the grant late: after `Held` it is the service's next attempt's (same token),
    /// after an error the service retires the token (a release on every node), and otherwise
    /// it runs out with its ttl.
    async fn give_back(&self, key: &LockKey, token: OwnerToken, granted: Vec<usize>) {
        let mut round = Fanout::start(&self.s.nodes, granted, self.node_timeout(), |_, node| {
            let key = key.clone();
            async move { node.release(&key, LeaseKind::Mutex, token).await }
        });
        while round.next().await.is_some() {}
    }
}

/// Each granting node's fence and records, as [`fence::choose`] reads them.
fn answers_of(granted: &[(usize, u64, Vec<Record>)]) -> Vec<(u64, Vec<Record>)> {
    granted.iter().map(|(_, f, r)| (*f, r.clone())).collect()
}

/// The best wait hint from the nodes that refused: the time until `needed` of them may be free
/// (the `needed`-th smallest remaining ttl), if they told it.
pub(crate) fn hint(held: &[Option<Duration>], needed: usize) -> Option<Duration> {
    let mut known: Vec<Duration> = held.iter().flatten().copied().collect();
    known.sort_unstable();
    known.get(needed.checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_when_enough_refusing_nodes_may_be_free() {
        let ms = Duration::from_millis;
        let held = [Some(ms(300)), Some(ms(100)), Some(ms(200))];
        assert_eq!(hint(&held, 1), Some(ms(100)));
        assert_eq!(hint(&held, 2), Some(ms(200)));
        assert_eq!(hint(&[Some(ms(5)), None], 2), None);
        assert_eq!(hint(&[Some(ms(5))], 0), None);
    }
}
