//! Listing ([`LockBackend::list`](locks_core::LockBackend::list)): `SCAN ... MATCH` over the
//! key layout of [`keys`](crate::keys), on every primary of a cluster, then one `holders`
//! script per lock found.
//!
//! A page runs a few `SCAN` steps until it has found [`ListQuery::limit`] locks or done
//! [`STEPS_PER_PAGE`] steps. Its cursor is `node:scan-cursor:last-name`: the node index (0 on
//! one server; on a cluster the index in the sorted list of primaries), the `SCAN` cursor of
//! the batch being read, and the last Redis name of that batch already handled (a batch is
//! read in name order, so a page can stop in the middle of one and the next page re-reads it
//! and skips what was handled).
//!
//! Each lock is listed once: a mutex by its lease key, a fair mutex by its fair lease key, a
//! semaphore by its permits key, a
//! read-write lock by its readers key while it has live readers, else by its writer key. The
//! other names (fence counters, fence hashes, waiting marks, retired tokens) are skipped.

use std::sync::Arc;

use locks_core::backend::{ListCursor, ListPage, ListQuery, ListedLock, LockKind};
use locks_core::{BackendError, LeaseKind, LockBackend};
use redis::RedisResult;

use crate::backend::RedisBackend;
use crate::connection::Connection;
use crate::error::backend_error;
use crate::keys::{self, FAIR, LEASE, RW_READERS, RW_WRITER, SEMAPHORE};

/// At most this many `SCAN` steps per page: a page may come back short (even empty) with a
/// next cursor, so one call never walks a whole large keyspace.
pub(crate) const STEPS_PER_PAGE: usize = 16;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    node: usize,
    scan: u64,
    last: Option<String>,
}

impl Position {
    fn parse(cursor: Option<&ListCursor>) -> Result<Self, BackendError> {
        let Some(cursor) = cursor else {
            return Ok(Position {
                node: 0,
                scan: 0,
                last: None,
            });
        };
        let bad = || BackendError::permanent(format!("not a redis list cursor: {cursor:?}"));
        let mut parts = cursor.as_str().splitn(3, ':');
        let node = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let scan = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let last = parts.next().ok_or_else(bad)?;
        Ok(Position {
            node,
            scan,
            last: (!last.is_empty()).then(|| last.to_owned()),
        })
    }

    fn cursor(&self) -> ListCursor {
        let last = self.last.as_deref().unwrap_or("");
        ListCursor::new(format!("{}:{}:{last}", self.node, self.scan))
    }
}

/// One page of the listing of `backend` (see the module docs).
pub(crate) async fn list_page(
    backend: &RedisBackend,
    conn: &Arc<Connection>,
    query: &ListQuery,
) -> Result<ListPage, BackendError> {
    let nodes = primaries(conn)
        .await
        .map_err(|e| backend_error("list", e))?;
    let mut at = Position::parse(query.cursor())?;
    let pattern = keys::scan_pattern(query.prefix(), query.name_prefix());
    let count = query.limit().max(100);
    let limit = query.limit_usize();
    let mut locks = Vec::new();
    for _ in 0..STEPS_PER_PAGE {
        let Some(node) = nodes.get(at.node) else {
            return Ok(ListPage::new(locks, None));
        };
        let mut scan = redis::cmd("SCAN");
        scan.arg(at.scan)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(count);
        let (next, mut names): (u64, Vec<String>) = conn
            .query_node(scan, node.as_deref())
            .await
            .map_err(|e| backend_error("list", e))?;
        names.sort();
        names.dedup();
        for redis_name in names {
            if at.last.as_ref().is_some_and(|last| redis_name <= *last) {
                continue;
            }
            if let Some(lock) = listed(backend, query, &redis_name).await? {
                locks.push(lock);
            }
            at.last = Some(redis_name);
            if locks.len() == limit {
                return Ok(ListPage::new(locks, Some(at.cursor())));
            }
        }
        at.last = None;
        if next == 0 {
            at.node += 1;
            at.scan = 0;
        } else {
            at.scan = next;
        }
    }
    let done = at.node >= nodes.len();
    Ok(ListPage::new(locks, (!done).then(|| at.cursor())))
}

/// The lock `redis_name` stands for, with its live holders, if it is the name a lock is
/// listed by (see the module docs) and something is held.
async fn listed(
    backend: &RedisBackend,
    query: &ListQuery,
    redis_name: &str,
) -> Result<Option<ListedLock>, BackendError> {
    let Some((name, suffix)) = keys::parse(query.prefix(), redis_name) else {
        return Ok(None);
    };
    let kind = match suffix {
        LEASE => LockKind::Mutex,
        SEMAPHORE => LockKind::Semaphore,
        RW_READERS | RW_WRITER => LockKind::RwLock,
        FAIR => LockKind::FairMutex,
        _ => return Ok(None),
    };
    // A name the service would refuse was not written by a service: not a lock.
    let Ok(key) = query.key(name) else {
        return Ok(None);
    };
    if !key.name().starts_with(query.name_prefix()) {
        return Ok(None);
    }
    let holders = backend.holders(&key, kind.lease_kind()).await?;
    let readers = holders.leases.iter().any(|l| l.kind == LeaseKind::Read);
    let listed_here = match suffix {
        RW_READERS => readers,
        RW_WRITER => !readers,
        _ => true,
    };
    Ok((listed_here && !holders.leases.is_empty()).then(|| ListedLock::new(key, kind, holders)))
}

/// The nodes to scan: `[None]` (wherever the connection goes) on one server; on a cluster
/// every primary's address, sorted.
async fn primaries(conn: &Arc<Connection>) -> RedisResult<Vec<Option<String>>> {
    #[cfg(feature = "cluster")]
    if let Some(nodes) = cluster_primaries(conn).await? {
        return Ok(nodes.into_iter().map(Some).collect());
    }
    #[cfg(not(feature = "cluster"))]
    let _ = conn;
    Ok(vec![None])
}

#[cfg(feature = "cluster")]
async fn cluster_primaries(conn: &Arc<Connection>) -> RedisResult<Option<Vec<String>>> {
    use crate::topology::Conn;
    use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
    conn.run(|c| async move {
        let Conn::Cluster(mut c) = c else {
            return Ok(None);
        };
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let pings = c.route_command(redis::cmd("PING"), routing).await?;
        let mut nodes: Vec<String> = match pings {
            redis::Value::Map(pairs) => pairs
                .into_iter()
                .filter_map(|(addr, _)| redis::from_redis_value::<String>(addr).ok())
                .collect(),
            _ => Vec::new(),
        };
        nodes.sort();
        Ok(Some(nodes))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        for at in [
            Position {
                node: 0,
                scan: 0,
                last: None,
            },
            Position {
                node: 2,
                scan: 981,
                last: Some("_lock:{a:b:c}:sem".into()),
            },
        ] {
            assert_eq!(Position::parse(Some(&at.cursor())).unwrap(), at);
        }
        assert!(Position::parse(Some(&ListCursor::new("x"))).is_err());
    }
}
