//! What an acquire does, decided from the live rows of the lock name: pure functions, so the
//! rules of every kind are in one place and unit-tested without a server.

use std::time::Duration;

use locks_core::{LeaseKind, OwnerToken};
use uuid::Uuid;

/// One live row of a lock name, as the `state` statement returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) kind: String,
    pub(crate) owner: Uuid,
    pub(crate) fence: i64,
    /// Expiry, µs since the epoch by the server's clock.
    pub(crate) expires_us: i64,
}

/// What an acquire attempt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The caller holds a lease of this kind already: reset its expiry, same fence.
    Renew { fence: i64 },
    /// A new lease with a new fence.
    Grant,
    /// Refused; `mark`: set (or refresh) the caller's writer waiting mark.
    Refuse {
        remaining: Option<Duration>,
        mark: bool,
    },
    /// The caller's token was retired by a release that found nothing: a late acquire,
    /// refused with an error (nobody waits for its answer).
    Retired,
}

/// The rows' `kind` values a lease kind sees (its side of the lock).
pub(crate) fn side(kind: LeaseKind) -> &'static [&'static str] {
    match kind {
        LeaseKind::Mutex => &["mutex"],
        LeaseKind::Permit { .. } => &["permit"],
        _ => &["read", "write", "waiting"],
    }
}

/// What an acquire of `kind` reads: its side, and retired tokens (of every kind).
pub(crate) fn acquire_side(kind: LeaseKind) -> &'static [&'static str] {
    match kind {
        LeaseKind::Mutex => &["mutex", "retired"],
        LeaseKind::Permit { .. } => &["permit", "retired"],
        _ => &["read", "write", "waiting", "retired"],
    }
}

/// The rows a release of `kind` deletes (a writer's waiting mark goes with its lease).
pub(crate) fn released(kind: LeaseKind) -> &'static [&'static str] {
    match kind {
        LeaseKind::Mutex => &["mutex"],
        LeaseKind::Permit { .. } => &["permit"],
        LeaseKind::Read => &["read"],
        _ => &["write", "waiting"],
    }
}

/// The `kind` value of a lease of `kind`.
pub(crate) fn row_kind(kind: LeaseKind) -> &'static str {
    match kind {
        LeaseKind::Mutex => "mutex",
        LeaseKind::Permit { .. } => "permit",
        LeaseKind::Read => "read",
        _ => "write",
    }
}

fn left(row: &Row, now_us: i64) -> Duration {
    Duration::from_micros(u64::try_from(row.expires_us.saturating_sub(now_us)).unwrap_or(0))
}

fn soonest<'a>(rows: impl Iterator<Item = &'a Row>, now_us: i64) -> Option<Duration> {
    rows.map(|r| left(r, now_us)).min()
}

/// Decide an acquire of `kind` by `token` from the live rows of its side at `now_us`.
///
/// - Mutex: own lease → renew; another holder → refuse; else grant.
/// - Permit: own permit → renew; `limit` or more live permits → refuse (soonest expiry);
///   else grant.
/// - Read: own read lease → renew; a writer or a waiting writer → refuse; else grant.
/// - Write: own write lease → renew; another writer → refuse; readers or another writer's
///   mark → refuse (and mark, unless another writer waits); else grant (clearing the mark).
pub(crate) fn decide(kind: LeaseKind, token: OwnerToken, rows: &[Row], now_us: i64) -> Plan {
    let me = *token.as_uuid();
    let own = row_kind(kind);
    if rows.iter().any(|r| r.owner == me && r.kind == "retired") {
        return Plan::Retired;
    }
    if let Some(mine) = rows.iter().find(|r| r.owner == me && r.kind == own) {
        return Plan::Renew { fence: mine.fence };
    }
    let of = |k: &'static str| rows.iter().filter(move |r| r.kind == k);
    let refuse = |remaining, mark| Plan::Refuse { remaining, mark };
    match kind {
        LeaseKind::Mutex => match of("mutex").next() {
            Some(holder) => refuse(Some(left(holder, now_us)), false),
            None => Plan::Grant,
        },
        LeaseKind::Permit { limit } => {
            let live = of("permit").count();
            if live >= usize::try_from(limit).unwrap_or(usize::MAX) {
                refuse(soonest(of("permit"), now_us), false)
            } else {
                Plan::Grant
            }
        }
        LeaseKind::Read => {
            if let Some(w) = of("write").next() {
                refuse(Some(left(w, now_us)), false)
            } else if let Some(mark) = of("waiting").next() {
                refuse(Some(left(mark, now_us)), false)
            } else {
                Plan::Grant
            }
        }
        _ => {
            if let Some(w) = of("write").next() {
                return refuse(Some(left(w, now_us)), false);
            }
            let other_mark = of("waiting").find(|m| m.owner != me);
            let readers = soonest(of("read"), now_us);
            if readers.is_none() && other_mark.is_none() {
                return Plan::Grant;
            }
            let other = other_mark.map(|m| left(m, now_us));
            let remaining = match (readers, other) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            refuse(remaining, other_mark.is_none())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, owner: OwnerToken, fence: i64, expires_us: i64) -> Row {
        Row {
            kind: kind.into(),
            owner: *owner.as_uuid(),
            fence,
            expires_us,
        }
    }

    const MS: i64 = 1000;

    #[test]
    fn a_retired_token_is_refused_and_others_are_not_held_up_by_it() {
        let (a, b) = (OwnerToken::new(), OwnerToken::new());
        let rows = [row("retired", a, 0, 50 * MS)];
        for kind in [
            LeaseKind::Mutex,
            LeaseKind::Permit { limit: 1 },
            LeaseKind::Write,
        ] {
            assert_eq!(decide(kind, a, &rows, 0), Plan::Retired);
            assert_eq!(decide(kind, b, &rows, 0), Plan::Grant);
        }
    }

    #[test]
    fn mutex_renews_own_refuses_others_grants_free() {
        let (a, b) = (OwnerToken::new(), OwnerToken::new());
        let rows = [row("mutex", a, 7, 50 * MS)];
        assert_eq!(
            decide(LeaseKind::Mutex, a, &rows, 0),
            Plan::Renew { fence: 7 }
        );
        assert_eq!(
            decide(LeaseKind::Mutex, b, &rows, 10 * MS),
            Plan::Refuse {
                remaining: Some(Duration::from_millis(40)),
                mark: false
            }
        );
        assert_eq!(decide(LeaseKind::Mutex, b, &[], 0), Plan::Grant);
    }

    #[test]
    fn permits_respect_the_limit_and_report_the_soonest_expiry() {
        let (a, b, c) = (OwnerToken::new(), OwnerToken::new(), OwnerToken::new());
        let rows = [row("permit", a, 1, 30 * MS), row("permit", b, 2, 20 * MS)];
        let two = LeaseKind::Permit { limit: 2 };
        assert_eq!(decide(two, b, &rows, 0), Plan::Renew { fence: 2 });
        assert_eq!(
            decide(two, c, &rows, 0),
            Plan::Refuse {
                remaining: Some(Duration::from_millis(20)),
                mark: false
            }
        );
        assert_eq!(
            decide(LeaseKind::Permit { limit: 3 }, c, &rows, 0),
            Plan::Grant
        );
        // A lowered limit refuses new permits and revokes none.
        assert_eq!(
            decide(LeaseKind::Permit { limit: 1 }, a, &rows, 0),
            Plan::Renew { fence: 1 }
        );
    }

    #[test]
    fn writers_are_preferred_and_mark_once() {
        let (r, w, w2) = (OwnerToken::new(), OwnerToken::new(), OwnerToken::new());
        let readers = [row("read", r, 1, 10 * MS)];
        // A writer that finds a reader waits and marks.
        assert_eq!(
            decide(LeaseKind::Write, w, &readers, 0),
            Plan::Refuse {
                remaining: Some(Duration::from_millis(10)),
                mark: true
            }
        );
        let marked = [row("read", r, 1, 10 * MS), row("waiting", w, 0, 30 * MS)];
        // New readers are refused while the mark lives; the reader itself renews.
        assert!(matches!(
            decide(LeaseKind::Read, w2, &marked, 0),
            Plan::Refuse { mark: false, .. }
        ));
        assert_eq!(
            decide(LeaseKind::Read, r, &marked, 0),
            Plan::Renew { fence: 1 }
        );
        // Another writer is refused without taking over the mark.
        assert_eq!(
            decide(LeaseKind::Write, w2, &marked, 0),
            Plan::Refuse {
                remaining: Some(Duration::from_millis(10)),
                mark: false
            }
        );
        // The marked writer gets in once the readers are gone.
        let mark_only = [row("waiting", w, 0, 30 * MS)];
        assert_eq!(decide(LeaseKind::Write, w, &mark_only, 0), Plan::Grant);
        assert!(matches!(
            decide(LeaseKind::Write, w2, &mark_only, 0),
            Plan::Refuse { mark: false, .. }
        ));
        let writer = [row("write", w, 9, 5 * MS)];
        assert_eq!(
            decide(LeaseKind::Write, w, &writer, 0),
            Plan::Renew { fence: 9 }
        );
        assert!(matches!(
            decide(LeaseKind::Read, r, &writer, 0),
            Plan::Refuse { mark: false, .. }
        ));
    }
}
