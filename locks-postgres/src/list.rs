//! Listing ([`LockBackend::list`](locks_core::LockBackend::list)): one `SELECT` of the next
//! locks in `(name, kind)` order (keyset pagination: no `OFFSET`), then the holders of each.
//!
//! The cursor is the last listed lock: its kind's index (0 mutex, 1 semaphore, 2 read-write
//! lock), `:`, and its name. Names compare byte by byte (`COLLATE "C"`).

use locks_core::backend::{ListCursor, ListPage, ListQuery, ListedLock, LockKind};
use locks_core::{BackendError, LockBackend};

use crate::backend::PostgresBackend;
use crate::error::PostgresBackendError;
use crate::ops::Conn;
use crate::schema::Schema;

/// The kind of a row as an index: `0` mutex, `1` permit, `2` read, write.
const FAMILY: &str = "CASE l.kind WHEN 'mutex' THEN 0 WHEN 'permit' THEN 1 ELSE 2 END";

/// The next locks after `($3, $4)` under prefix `$1` whose names start with `$2`, with at least
/// one live lease (by the server's clock), at most `$5`.
pub(crate) fn statement(schema: &Schema) -> String {
    format!(
        "WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t) \
         SELECT DISTINCT l.lock_name COLLATE \"C\" AS name, {FAMILY} AS family \
         FROM {leases} l, now \
         WHERE l.lock_prefix = $1 AND starts_with(l.lock_name, $2) \
             AND l.kind IN ('mutex', 'permit', 'read', 'write') AND l.expires_at > now.t \
             AND (l.lock_name COLLATE \"C\", {FAMILY}) > ($3::text COLLATE \"C\", $4::int) \
         ORDER BY 1, 2 LIMIT $5",
        leases = schema.leases
    )
}

/// One page of `backend`'s listing (see the module docs).
pub(crate) async fn list_page(
    backend: &PostgresBackend,
    sql: &str,
    query: &ListQuery,
) -> Result<ListPage, BackendError> {
    const OP: &str = "list";
    let (after_name, after_family) = parse(query.cursor())?;
    let limit = i64::from(query.limit());
    let prefix = query.prefix().to_owned();
    let name_prefix = query.name_prefix().to_owned();
    let found: Vec<(String, i32)> = backend
        .run(OP, |conn: Conn| async move {
            let c = conn.client()?;
            let pg = |e| PostgresBackendError::pg(OP, e);
            let st = c.prepare_cached(sql).await.map_err(pg)?;
            let rows = c
                .query(
                    &st,
                    &[&prefix, &name_prefix, &after_name, &after_family, &limit],
                )
                .await
                .map_err(pg)?;
            conn.done();
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("family")?)))
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(pg)
        })
        .await?;
    let full = found.len() == query.limit_usize();
    let mut next = None;
    let mut locks = Vec::with_capacity(found.len());
    for (name, family) in found {
        let kind = match family {
            0 => LockKind::Mutex,
            1 => LockKind::Semaphore,
            _ => LockKind::RwLock,
        };
        next = Some(ListCursor::new(format!("{family}:{name}")));
        // A name no service could have written is not a lock.
        let Ok(key) = query.key(&name) else { continue };
        let holders = backend.holders(&key, kind.lease_kind()).await?;
        if !holders.leases.is_empty() {
            locks.push(ListedLock::new(key, kind, holders));
        }
    }
    Ok(ListPage::new(locks, next.filter(|_| full)))
}

/// The `(name, family)` a cursor names; `("", -1)` before the first.
fn parse(cursor: Option<&ListCursor>) -> Result<(String, i32), BackendError> {
    let Some(cursor) = cursor else {
        return Ok((String::new(), -1));
    };
    cursor
        .as_str()
        .split_once(':')
        .and_then(|(f, name)| Some((name.to_owned(), f.parse().ok()?)))
        .ok_or_else(|| BackendError::permanent(format!("not a postgres list cursor: {cursor:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_carry_the_kind_and_the_name() {
        assert_eq!(parse(None).unwrap(), (String::new(), -1));
        let c = ListCursor::new("1:a:b:c");
        assert_eq!(parse(Some(&c)).unwrap(), ("a:b:c".to_owned(), 1));
        assert!(parse(Some(&ListCursor::new("x"))).is_err());
    }
}
