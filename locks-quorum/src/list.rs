//! Listing ([`LockBackend::list`](locks_core::LockBackend::list)) over the nodes: the mutex
//! leases a majority of the nodes hold.
//!
//! A lease held by a majority is on at least one of the first `N - majority + 1` nodes, so the
//! quorum walks those nodes' own listings, one node page per quorum page (so a page never
//! holds more than the limit). A lock found on node `i` is listed there only if none of the
//! nodes before `i` holds it (it was, or will be, listed from there), and only if a majority
//! holds it ([`QuorumBackend::holders`](crate::QuorumBackend), the same answer as `holders`:
//! the agreed owner, the majority-th longest remaining time, the quorum's fence). Nodes that
//! cannot list make the listing fail. The cursor is `node:` followed by that node's cursor.

use locks_core::backend::{ListCursor, ListPage, ListQuery, ListedLock, LockKind};
use locks_core::{BackendError, LeaseKind};

use crate::backend::QuorumBackend;

/// One page of the quorum's listing (see the module docs).
pub(crate) async fn list_page(
    q: &QuorumBackend,
    query: &ListQuery,
) -> Result<ListPage, BackendError> {
    let (mut node, mut inner) = parse(query.cursor())?;
    let scanned = q.blocking().min(q.s.nodes.len());
    while node < scanned {
        let page = q.s.nodes[node]
            .list(&query.clone().after(inner.take()))
            .await?;
        let mut locks = Vec::new();
        for lock in page.locks {
            if lock.kind != LockKind::Mutex {
                continue; // the fence records (and nothing else the quorum writes)
            }
            let mut earlier = false;
            for before in &q.s.nodes[..node] {
                if !before
                    .holders(&lock.key, LeaseKind::Mutex)
                    .await?
                    .leases
                    .is_empty()
                {
                    earlier = true;
                    break;
                }
            }
            if earlier {
                continue;
            }
            let holders = q.holders(&lock.key).await?;
            if !holders.leases.is_empty() {
                locks.push(ListedLock::new(lock.key, LockKind::Mutex, holders));
            }
        }
        let next = match page.next {
            Some(c) => Some(ListCursor::new(format!("{node}:{}", c.as_str()))),
            None if node + 1 < scanned => Some(ListCursor::new(format!("{}:", node + 1))),
            None => None,
        };
        if !locks.is_empty() || next.is_none() {
            return Ok(ListPage::new(locks, next));
        }
        // An empty page: go on with the next one rather than hand back nothing.
        match next {
            Some(c) => (node, inner) = parse(Some(&c))?,
            None => node = scanned,
        }
    }
    Ok(ListPage::default())
}

/// The node index and that node's own cursor (`None`: from its start).
fn parse(cursor: Option<&ListCursor>) -> Result<(usize, Option<ListCursor>), BackendError> {
    let Some(cursor) = cursor else {
        return Ok((0, None));
    };
    let (node, inner) = cursor
        .as_str()
        .split_once(':')
        .and_then(|(n, rest)| Some((n.parse().ok()?, rest)))
        .ok_or_else(|| BackendError::permanent(format!("not a quorum list cursor: {cursor:?}")))?;
    Ok((node, (!inner.is_empty()).then(|| ListCursor::new(inner))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_name_a_node_and_its_cursor() {
        assert_eq!(parse(None).unwrap(), (0, None));
        let c = ListCursor::new("1:0:12:_lock:{a}");
        assert_eq!(
            parse(Some(&c)).unwrap(),
            (1, Some(ListCursor::new("0:12:_lock:{a}")))
        );
        assert_eq!(parse(Some(&ListCursor::new("2:"))).unwrap(), (2, None));
        assert!(parse(Some(&ListCursor::new("x"))).is_err());
    }
}
