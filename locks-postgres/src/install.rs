//! Creating (or finding) the lock tables at connect.

use tokio_postgres::error::SqlState;

use crate::error::PostgresBackendError;
use crate::ops::Conn;
use crate::schema::Schema;

/// Create the tables if `install` (idempotent, one transaction under an advisory lock, so that
/// processes starting together do not race on the catalog), then check that they can be used.
/// A role that may not create them (`42501`) goes on to the check: an operator may have
/// installed them.
pub(crate) async fn ensure(
    conn: Conn,
    schema: &Schema,
    install: bool,
) -> Result<(), PostgresBackendError> {
    let client = conn.client()?;
    if install {
        let script = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({}, 0); {} COMMIT;",
            schema.lock_class,
            schema.install_sql()
        );
        match client.batch_execute(&script).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::debug!(schema = %schema.name, "no right to create the lock tables; checking that they exist");
                client
                    .batch_execute("ROLLBACK")
                    .await
                    .map_err(|e| PostgresBackendError::pg("connect", e))?;
            }
            Err(e) if crate::error::is_transient(&e) => {
                return Err(PostgresBackendError::pg("connect", e));
            }
            Err(source) => {
                return Err(PostgresBackendError::NotInstalled {
                    schema: schema.name.clone(),
                    source,
                });
            }
        }
    }
    let probe = format!(
        "SELECT lock_prefix, lock_name, kind, owner, fence, expires_at FROM {} LIMIT 0; \
         SELECT lock_prefix, lock_name, last_fence FROM {} LIMIT 0",
        schema.leases, schema.fences
    );
    match client.batch_execute(&probe).await {
        Ok(()) => {
            conn.done();
            Ok(())
        }
        Err(e) if crate::error::is_transient(&e) => Err(PostgresBackendError::pg("connect", e)),
        Err(source) => Err(PostgresBackendError::NotInstalled {
            schema: schema.name.clone(),
            source,
        }),
    }
}
