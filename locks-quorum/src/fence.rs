//! Fence records: how the quorum keeps fences strictly increasing across holders when the
//! nodes' own counters disagree (skewed clocks, a node restarted empty, nodes used unevenly).
//!
//! Every grant writes a *record* of its fence on every node that granted (a majority): a
//! semaphore permit on the lock's companion key `<name>:quorum-fences` whose owner token
//! carries the fence in its high 64 bits and the holder's token's low 64 bits in its low ones.
//! Owner tokens are compared for equality only, so the store keeps the value exactly, in any
//! backend, with no change to the contract. The next grant reads the records on its own
//! majority, which shares a node with the last grant's majority, and takes a fence above every
//! record it sees and above every node fence of its grant. Records are written before the
//! grant is returned; once a node lists a few, the next writer gives back the older ones it
//! read there, so a node keeps a handful of records per lock. Nothing ever lowers the largest
//! record.

use std::time::Duration;

use locks_core::{BackendError, LeaseKind, LockBackend, LockKey, OwnerToken};
use uuid::Uuid;

/// The permit limit of the record semaphore: records must always be grantable.
pub(crate) const RECORD_LIMIT: u32 = u32::MAX;

/// The lease kind of the records.
pub(crate) const RECORD_KIND: LeaseKind = LeaseKind::Permit {
    limit: RECORD_LIMIT,
};

/// The suffix of the companion key that holds a lock's fence records.
pub const RECORD_SUFFIX: &str = ":quorum-fences";

/// One fence record as a node lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// The fence the quorum handed out.
    pub(crate) fence: u64,
    /// The low 64 bits of the holder's owner token.
    pub(crate) holder: u64,
    /// The record's own token (to give it back).
    pub(crate) token: OwnerToken,
    /// The fence the node gave the record itself (0 if not read from a node): a grant whose
    /// node fence is below it is the lease that was recorded, still held there.
    pub(crate) node_fence: u64,
}

impl Record {
    /// The record of `fence` handed to `holder`.
    pub(crate) fn new(fence: u64, holder: OwnerToken) -> Self {
        let holder = low_bits(holder);
        Record {
            fence,
            holder,
            token: OwnerToken::from(Uuid::from_u64_pair(fence, holder)),
            node_fence: 0,
        }
    }

    /// Whether `token` is the holder this record was written for.
    pub(crate) fn is_for(&self, token: OwnerToken) -> bool {
        self.holder == low_bits(token)
    }

    fn from_token(token: OwnerToken, node_fence: u64) -> Self {
        let (fence, holder) = token.as_uuid().as_u64_pair();
        Record {
            fence,
            holder,
            token,
            node_fence,
        }
    }
}

fn low_bits(token: OwnerToken) -> u64 {
    token.as_uuid().as_u64_pair().1
}

/// The companion key of `key`, under the same prefix.
pub(crate) fn record_key(key: &LockKey) -> Result<LockKey, BackendError> {
    LockKey::new(key.prefix(), &format!("{}{RECORD_SUFFIX}", key.name())).map_err(|e| {
        BackendError::permanent(format!(
            "the quorum cannot keep fence records for `{}`: {e} (the companion key adds \
             {} bytes to the name)",
            key.name(),
            RECORD_SUFFIX.len()
        ))
    })
}

/// The records of `records_key` on `node`.
pub(crate) async fn read(
    node: &dyn LockBackend,
    records_key: &LockKey,
) -> Result<Vec<Record>, BackendError> {
    let holders = node.holders(records_key, RECORD_KIND).await?;
    Ok(holders
        .leases
        .iter()
        .map(|l| Record::from_token(l.owner, l.fence))
        .collect())
}

/// How many records a node may list before a writer gives the older ones back (clean-up is
/// batched: most grants cost no extra call).
const PRUNE_AT: usize = 4;

/// Write `record` on `node` for `ttl`, then, once [`PRUNE_AT`] records were read there
/// (`seen`), give back the ones older than it. Returns once the record is written; the
/// clean-up runs on.
pub(crate) async fn write(
    node: std::sync::Arc<dyn LockBackend>,
    records_key: LockKey,
    record: Record,
    ttl: Duration,
    seen: Vec<Record>,
) -> Result<bool, BackendError> {
    let written = node
        .try_acquire(&records_key, RECORD_KIND, record.token, ttl)
        .await?;
    let ok = matches!(written, locks_core::AcquireResult::Acquired(_));
    if seen.len() < PRUNE_AT {
        return Ok(ok);
    }
    let older: Vec<Record> = seen
        .into_iter()
        .filter(|r| r.fence < record.fence)
        .collect();
    if ok && !older.is_empty() {
        tokio::spawn(async move {
            for r in older {
                // Best effort: an old record left behind expires by itself.
                let _ = node.release(&records_key, RECORD_KIND, r.token).await;
            }
        });
    }
    Ok(ok)
}

/// The fence of a grant for `token`, from what each granting node said (its node fence and the
/// records it lists): the holder's own fence again when a majority of the granting nodes still
/// had the very lease that was recorded (the same token acquiring again while it holds) and
/// nobody recorded a larger one; otherwise above every record and every node fence.
pub(crate) fn choose(token: OwnerToken, granted: &[(u64, Vec<Record>)], majority: usize) -> u64 {
    let (own, others, still_held) = own_fence(token, granted);
    if let Some(own) = own
        && still_held >= majority
        && others.is_none_or(|o| o < own)
    {
        return own;
    }
    let highest_record = own.max(others).map_or(0, |f| f.saturating_add(1));
    granted
        .iter()
        .map(|(f, _)| *f)
        .max()
        .unwrap_or(0)
        .max(highest_record)
}

/// Whether `token` has the largest record among `granted` but fewer than `majority` of them
/// show its recorded lease still held: the answers heard so far cannot tell a holder acquiring
/// again from a new lease, and the nodes not heard yet may (a record write of the last grant
/// still on its way to one of them, or the grant that node saw there).
pub(crate) fn own_unproven(
    token: OwnerToken,
    granted: &[(u64, Vec<Record>)],
    majority: usize,
) -> bool {
    let (own, others, still_held) = own_fence(token, granted);
    own.is_some_and(|own| others.is_none_or(|o| o < own)) && still_held < majority
}

/// `token`'s largest recorded fence, the largest recorded fence of anyone else, and on how
/// many of the granting nodes `token`'s recorded lease is still the one held.
fn own_fence(
    token: OwnerToken,
    granted: &[(u64, Vec<Record>)],
) -> (Option<u64>, Option<u64>, usize) {
    let records = || granted.iter().flat_map(|(_, r)| r.iter());
    let own = records().filter(|r| r.is_for(token)).map(|r| r.fence).max();
    let others = records()
        .filter(|r| !r.is_for(token))
        .map(|r| r.fence)
        .max();
    let still_held = granted
        .iter()
        .filter(|(node_fence, recs)| {
            recs.iter()
                .any(|r| r.is_for(token) && Some(r.fence) == own && *node_fence < r.node_fence)
        })
        .count();
    (own, others, still_held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_keeps_its_fence_and_holder_in_the_token() {
        let holder = OwnerToken::new();
        let r = Record::new(u64::MAX - 7, holder);
        let back = Record::from_token(r.token, 0);
        assert_eq!(back, r);
        assert!(back.is_for(holder));
        assert!(!back.is_for(OwnerToken::new()));
    }

    fn on(node_fence: u64, records: &[Record]) -> (u64, Vec<Record>) {
        (node_fence, records.to_vec())
    }

    fn rec(fence: u64, holder: OwnerToken, node_fence: u64) -> Record {
        Record {
            node_fence,
            ..Record::new(fence, holder)
        }
    }

    #[test]
    fn a_new_holder_goes_above_every_record_and_node_fence() {
        let (me, other) = (OwnerToken::new(), OwnerToken::new());
        let records = [rec(500, other, 3), rec(90, other, 2)];
        assert_eq!(choose(me, &[on(7, &records), on(12, &[])], 2), 501);
        assert_eq!(choose(me, &[on(7, &records), on(900, &[])], 2), 900);
        assert_eq!(choose(me, &[on(3, &[]), on(2, &[])], 2), 3);
    }

    #[test]
    fn the_same_holder_gets_its_fence_again_only_while_it_holds_a_majority() {
        let (me, other) = (OwnerToken::new(), OwnerToken::new());
        // The node fences 5 and 6 are below the records' (8, 9): the recorded lease.
        let held = [on(5, &[rec(40, me, 8)]), on(6, &[rec(40, me, 9)])];
        assert_eq!(choose(me, &held, 2), 40);
        // Granted anew on one node (its fence is above the record's): a new lease.
        let renewed = [on(5, &[rec(40, me, 8)]), on(10, &[rec(40, me, 9)])];
        assert_eq!(choose(me, &renewed, 2), 41);
        // Someone recorded a larger fence since.
        let passed = [
            on(5, &[rec(40, me, 8), rec(50, other, 9)]),
            on(6, &[rec(40, me, 9)]),
        ];
        assert_eq!(choose(me, &passed, 2), 51);
    }

    #[test]
    fn a_holder_not_yet_seen_holding_on_a_majority_waits_for_the_other_nodes() {
        let (me, other) = (OwnerToken::new(), OwnerToken::new());
        // The record write of the last grant has not reached the second node yet.
        let first_two = [on(5, &[rec(40, me, 8)]), on(6, &[])];
        assert!(own_unproven(me, &first_two, 2));
        let all = [
            on(5, &[rec(40, me, 8)]),
            on(6, &[]),
            on(7, &[rec(40, me, 9)]),
        ];
        assert!(!own_unproven(me, &all, 2));
        assert_eq!(choose(me, &all, 2), 40);
        // Nothing to wait for: no record of mine, or someone else's is larger.
        assert!(!own_unproven(me, &[on(5, &[]), on(6, &[])], 2));
        let passed = [on(5, &[rec(40, me, 8), rec(50, other, 9)]), on(6, &[])];
        assert!(!own_unproven(me, &passed, 2));
    }
}
