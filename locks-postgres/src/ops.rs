//! The operations on the server: each one statement, or one short transaction that first
//! takes the lock name's advisory lock (acquire: read the live rows, decide, write, commit).
//!
//! The statements of a transaction are pipelined (`BEGIN`, the advisory lock and the read go
//! out together, then the write and `COMMIT`), so an acquire costs two round trips. The
//! pipelines use `futures::join!`, which polls its futures in order, so the requests leave in
//! order (each is sent on its first poll). A
//! connection whose operation failed or was cancelled half-way is never given back to the
//! pool: it is closed, and the server rolls back whatever was not committed (see [`Conn`]).

use std::time::Duration;

use deadpool_postgres::ClientWrapper as Client;
use deadpool_postgres::{Object, Pool, PoolError};
use locks_core::{AcquireResult, Holders, Lease, LeaseInfo, LeaseKind, LockKey, OwnerToken};
use tokio_postgres::Row as PgRow;
use tokio_postgres::types::ToSql;

/// Bind parameters.
type Params<'a, const N: usize> = [&'a (dyn ToSql + Sync); N];

use crate::error::PostgresBackendError;
use crate::plan::{Plan, Row, acquire_side, decide, released, row_kind, side};
use crate::schema::Schema;
use crate::sql::Statements;

/// The longest ttl a lease may have (100 years).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long a token released while it held nothing stays retired: a late acquire with it (a
/// request still in flight on a connection the client gave up on) is refused meanwhile, as
/// the backend contract asks (the same 2 minutes as the Redis backend).
pub const RETIRED_FOR: Duration = Duration::from_secs(120);

type Result<T> = std::result::Result<T, PostgresBackendError>;

/// A pooled connection for one operation. [`Conn::done`] gives it back; dropped without it (an
/// error, a timeout, a cancelled future), the connection is taken out of the pool and closed,
/// so no half-done transaction is ever reused.
pub(crate) struct Conn {
    object: Option<Object>,
}

impl Conn {
    pub(crate) async fn get(pool: &Pool, operation: &'static str) -> Result<Conn> {
        let object = pool.get().await.map_err(|e| match e {
            PoolError::Backend(source) => PostgresBackendError::pg(operation, source),
            other => PostgresBackendError::Pool {
                operation,
                reason: other.to_string(),
            },
        })?;
        Ok(Conn {
            object: Some(object),
        })
    }

    pub(crate) fn client(&self) -> Result<&Client> {
        match self.object.as_ref() {
            Some(o) => Ok(o),
            None => Err(PostgresBackendError::Pool {
                operation: "checkout",
                reason: "the connection was already given back".into(),
            }),
        }
    }

    /// Give the connection back to the pool.
    pub(crate) fn done(mut self) {
        drop(self.object.take());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(object) = self.object.take() {
            // Detached from the pool and dropped: the connection closes.
            drop(Object::take(object));
        }
    }
}

/// The ttl in whole microseconds, rounded up; zero or above [`MAX_TTL`] is refused.
pub(crate) fn ttl_us(ttl: Duration) -> Result<i64> {
    if ttl.is_zero() {
        return Err(PostgresBackendError::InvalidTtl {
            ttl,
            reason: "a lease needs a ttl above zero",
        });
    }
    if ttl > MAX_TTL {
        return Err(PostgresBackendError::InvalidTtl {
            ttl,
            reason: "above the largest ttl of the PostgreSQL backend (100 years)",
        });
    }
    i64::try_from(ttl.as_nanos().div_ceil(1000)).map_err(|_| PostgresBackendError::InvalidTtl {
        ttl,
        reason: "too large",
    })
}

/// Refuse a semaphore of zero permits.
pub(crate) fn check_kind(kind: LeaseKind) -> Result<()> {
    match kind {
        LeaseKind::Permit { limit: 0 } => Err(PostgresBackendError::InvalidPermits),
        _ => Ok(()),
    }
}

/// The payload of a release notification: the key's prefix and name, joined by the unit
/// separator (a control character, so never part of either).
pub(crate) fn payload(key: &LockKey) -> String {
    format!("{}\u{1f}{}", key.prefix(), key.name())
}

/// What the operations need: the statements, the schema.
#[derive(Debug)]
pub(crate) struct Ops {
    pub(crate) sql: Statements,
    pub(crate) schema: Schema,
}

fn pg(operation: &'static str) -> impl Fn(tokio_postgres::Error) -> PostgresBackendError {
    move |e| PostgresBackendError::pg(operation, e)
}

fn live_row(r: &PgRow) -> std::result::Result<Option<Row>, tokio_postgres::Error> {
    let kind: Option<String> = r.try_get("kind")?;
    let Some(kind) = kind else { return Ok(None) };
    Ok(Some(Row {
        kind,
        owner: r.try_get("owner")?,
        fence: r.try_get("fence")?,
        expires_us: r.try_get("expires_us")?,
    }))
}

/// `statement` and `COMMIT`, pipelined (one round trip); the statement's error first.
async fn with_commit<T>(
    c: &Client,
    statement: impl Future<Output = std::result::Result<T, tokio_postgres::Error>>,
) -> std::result::Result<T, tokio_postgres::Error> {
    let (out, commit) = futures::join!(statement, c.batch_execute("COMMIT"));
    let out = out?;
    commit?;
    Ok(out)
}

fn fence_of(fence: i64) -> u64 {
    u64::try_from(fence).unwrap_or(0)
}

impl Ops {
    /// `try_acquire`: one transaction under the name's advisory lock.
    pub(crate) async fn acquire(
        &self,
        conn: Conn,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl_us: i64,
    ) -> Result<AcquireResult> {
        const OP: &str = "try_acquire";
        let c = conn.client()?;
        let (p, n) = (key.prefix(), key.name());
        let lock = c.prepare_cached(&self.sql.lock).await.map_err(pg(OP))?;
        let state = c.prepare_cached(&self.sql.state).await.map_err(pg(OP))?;
        let kinds = acquire_side(kind);
        let lock_params: Params<'_, 2> = [&p, &n];
        let state_params: Params<'_, 3> = [&p, &n, &kinds];
        let (begin, locked, rows) = futures::join!(
            c.batch_execute("BEGIN"),
            c.execute(&lock, &lock_params),
            c.query(&state, &state_params),
        );
        begin.map_err(pg(OP))?;
        locked.map_err(pg(OP))?;
        let rows = rows.map_err(pg(OP))?;
        let mut now_us: i64 = 0;
        let mut live = Vec::with_capacity(rows.len());
        for r in &rows {
            now_us = r.try_get("now_us").map_err(pg(OP))?;
            live.extend(live_row(r).map_err(pg(OP))?);
        }
        let me = *token.as_uuid();
        let own = row_kind(kind);
        let expires = now_us.saturating_add(ttl_us);
        let answer = match decide(kind, token, &live, now_us) {
            Plan::Renew { fence } => {
                let renew = c.prepare_cached(&self.sql.renew).await.map_err(pg(OP))?;
                let params: Params<'_, 5> = [&p, &n, &own, &me, &expires];
                with_commit(c, c.execute(&renew, &params))
                    .await
                    .map_err(pg(OP))?;
                AcquireResult::Acquired(Lease::new(fence_of(fence)))
            }
            Plan::Grant => {
                let grant = c.prepare_cached(&self.sql.grant).await.map_err(pg(OP))?;
                let params: Params<'_, 6> = [&p, &n, &own, &now_us, &me, &ttl_us];
                let granted = with_commit(c, c.query_one(&grant, &params))
                    .await
                    .map_err(pg(OP))?;
                let fence: i64 = granted.try_get(0).map_err(pg(OP))?;
                AcquireResult::Acquired(Lease::new(fence_of(fence)))
            }
            Plan::Refuse { remaining, mark } => {
                if mark {
                    let set = c.prepare_cached(&self.sql.mark).await.map_err(pg(OP))?;
                    let params: Params<'_, 4> = [&p, &n, &me, &expires];
                    with_commit(c, c.execute(&set, &params))
                        .await
                        .map_err(pg(OP))?;
                } else {
                    // The purge of dead rows is worth keeping.
                    c.batch_execute("COMMIT").await.map_err(pg(OP))?;
                }
                AcquireResult::Held { remaining }
            }
            Plan::Retired => {
                c.batch_execute("COMMIT").await.map_err(pg(OP))?;
                conn.done();
                return Err(PostgresBackendError::RetiredToken);
            }
        };
        conn.done();
        Ok(answer)
    }

    /// `extend`: one compare-and-update statement.
    pub(crate) async fn extend(
        &self,
        conn: Conn,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl_us: i64,
    ) -> Result<bool> {
        const OP: &str = "extend";
        let c = conn.client()?;
        let st = c.prepare_cached(&self.sql.extend).await.map_err(pg(OP))?;
        let own = row_kind(kind);
        let n = c
            .execute(
                &st,
                &[&key.prefix(), &key.name(), &own, token.as_uuid(), &ttl_us],
            )
            .await
            .map_err(pg(OP))?;
        conn.done();
        Ok(n > 0)
    }

    /// `release`: one compare-and-delete statement that notifies when a row went.
    pub(crate) async fn release(
        &self,
        conn: Conn,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
    ) -> Result<bool> {
        const OP: &str = "release";
        let c = conn.client()?;
        let lock = c.prepare_cached(&self.sql.lock).await.map_err(pg(OP))?;
        let st = c.prepare_cached(&self.sql.release).await.map_err(pg(OP))?;
        let kinds = released(kind);
        let payload = payload(key);
        let retired_us = i64::try_from(RETIRED_FOR.as_micros()).unwrap_or(i64::MAX);
        let (p, n) = (key.prefix(), key.name());
        let lock_params: Params<'_, 2> = [&p, &n];
        let params: Params<'_, 7> = [
            &p,
            &n,
            token.as_uuid(),
            &kinds,
            &self.schema.channel,
            &payload,
            &retired_us,
        ];
        // One round trip: the four statements are pipelined.
        let (begin, locked, row, commit) = futures::join!(
            c.batch_execute("BEGIN"),
            c.execute(&lock, &lock_params),
            c.query_one(&st, &params),
            c.batch_execute("COMMIT"),
        );
        begin.map_err(pg(OP))?;
        locked.map_err(pg(OP))?;
        let released: bool = row.map_err(pg(OP))?.try_get("released").map_err(pg(OP))?;
        commit.map_err(pg(OP))?;
        conn.done();
        Ok(released)
    }

    /// `force_release`: one delete of the whole side of the lock, notifying when a row went.
    pub(crate) async fn force_release(
        &self,
        conn: Conn,
        key: &LockKey,
        kind: LeaseKind,
    ) -> Result<bool> {
        const OP: &str = "force_release";
        let c = conn.client()?;
        let st = c
            .prepare_cached(&self.sql.force_release)
            .await
            .map_err(pg(OP))?;
        let kinds = side(kind);
        let payload = payload(key);
        let row = c
            .query_one(
                &st,
                &[
                    &key.prefix(),
                    &key.name(),
                    &kinds,
                    &self.schema.channel,
                    &payload,
                ],
            )
            .await
            .map_err(pg(OP))?;
        let released: bool = row.try_get("released").map_err(pg(OP))?;
        conn.done();
        Ok(released)
    }

    /// `holders`: one read.
    pub(crate) async fn holders(
        &self,
        conn: Conn,
        key: &LockKey,
        kind: LeaseKind,
    ) -> Result<Holders> {
        const OP: &str = "holders";
        let c = conn.client()?;
        let st = c.prepare_cached(&self.sql.holders).await.map_err(pg(OP))?;
        let kinds = side(kind);
        let rows = c
            .query(&st, &[&key.prefix(), &key.name(), &kinds])
            .await
            .map_err(pg(OP))?;
        conn.done();
        let mut leases = Vec::with_capacity(rows.len());
        let mut waiting = false;
        for r in &rows {
            let row_kind: String = r.try_get("kind").map_err(pg(OP))?;
            let lease_kind = match row_kind.as_str() {
                "waiting" => {
                    waiting = true;
                    continue;
                }
                "read" => LeaseKind::Read,
                "write" => LeaseKind::Write,
                // The caller's kind (a permit keeps the limit it was asked with).
                _ => kind,
            };
            let owner: uuid::Uuid = r.try_get("owner").map_err(pg(OP))?;
            let fence: i64 = r.try_get("fence").map_err(pg(OP))?;
            let remaining: i64 = r.try_get("remaining_us").map_err(pg(OP))?;
            let remaining = Duration::from_micros(u64::try_from(remaining).unwrap_or(0));
            leases.push(LeaseInfo::new(
                lease_kind,
                OwnerToken::from(owner),
                remaining,
                fence_of(fence),
            ));
        }
        let holders = Holders::new(leases);
        Ok(match kind {
            LeaseKind::Read | LeaseKind::Write => holders.with_writer_waiting(waiting),
            _ => holders,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_microseconds_and_are_bounded() {
        assert_eq!(ttl_us(Duration::from_nanos(1)).unwrap(), 1);
        assert_eq!(ttl_us(Duration::from_millis(300)).unwrap(), 300_000);
        assert!(matches!(
            ttl_us(Duration::ZERO),
            Err(PostgresBackendError::InvalidTtl { .. })
        ));
        assert!(ttl_us(MAX_TTL).is_ok());
        assert!(matches!(
            ttl_us(MAX_TTL + Duration::from_secs(1)),
            Err(PostgresBackendError::InvalidTtl { .. })
        ));
        assert!(matches!(
            check_kind(LeaseKind::Permit { limit: 0 }),
            Err(PostgresBackendError::InvalidPermits)
        ));
        assert!(check_kind(LeaseKind::Permit { limit: u32::MAX }).is_ok());
    }

    #[test]
    fn payloads_keep_prefix_and_name_apart() {
        let a = LockKey::new("a:", "b").unwrap();
        let b = LockKey::new("a", ":b").unwrap();
        assert_ne!(payload(&a), payload(&b));
    }
}
