//! [`PostgresBackend`]: the pool, the statements, the notifier, and the backend contract.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::Pool;
use locks_core::backend::{Action, Dispatch, ListPage, ListQuery, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockKey, ReleaseListener, SleepingListener};

use crate::builder::PostgresBackendBuilder;
use crate::error::PostgresBackendError;
use crate::listen::Notifier;
use crate::ops::{Conn, Ops, check_kind, ttl_us};

/// The PostgreSQL backend: leases in a table, fences from a durable per-key counter, release
/// notifications over `LISTEN`/`NOTIFY`. `Clone` is cheap; clones share the pool and the
/// listening connection. See the [crate docs](crate) for the schema and the guarantees.
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) ops: Ops,
    pub(crate) notifier: Option<Arc<Notifier>>,
    /// The client-side limit of one operation.
    pub(crate) op_timeout: Duration,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.inner.pool.status();
        f.debug_struct("PostgresBackend")
            .field("schema", &self.inner.ops.schema.name)
            .field("pool_size", &status.size)
            .field("pool_max", &status.max_size)
            .field("notifier", &self.inner.notifier)
            .finish()
    }
}

impl PostgresBackend {
    /// Connect with the default options (schema `public`, see [`PostgresBackendBuilder`]).
    ///
    /// `url` is a libpq-style connection string: `postgres://user:password@host:port/db` or
    /// `host=... user=... dbname=...`. TLS is not supported (use a local socket, a private
    /// network, or a TLS-terminating proxy).
    ///
    /// # Cancel safety
    ///
    /// As [`PostgresBackendBuilder::connect`].
    pub async fn connect(url: &str) -> Result<PostgresBackend, PostgresBackendError> {
        Self::builder(url).connect().await
    }

    /// A builder for the options.
    pub fn builder(url: impl Into<String>) -> PostgresBackendBuilder {
        PostgresBackendBuilder::new(url.into())
    }

    /// The SQL that creates the lock tables of `schema` (what `sql/install.sql` holds, the
    /// schema filled in), for an operator who installs them ahead of time.
    ///
    /// ```
    /// let sql = locks_postgres::PostgresBackend::install_sql("locks").unwrap();
    /// assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"locks\".locks_leases"));
    /// ```
    pub fn install_sql(schema: &str) -> Result<String, PostgresBackendError> {
        crate::schema::install_sql(schema)
    }

    /// The grants that let `role` use the lock tables of `schema`: `USAGE` on the schema and
    /// `SELECT, INSERT, UPDATE, DELETE` on the two tables (`sql/grant.sql`).
    pub fn grant_sql(schema: &str, role: &str) -> Result<String, PostgresBackendError> {
        crate::schema::grant_sql(schema, role)
    }

    /// The schema of the lock tables.
    pub fn schema(&self) -> &str {
        &self.inner.ops.schema.name
    }

    /// Whether the release notification connection is up (`false` also when notifications are
    /// off): while it is down, waiters poll.
    pub fn notifications_up(&self) -> bool {
        self.inner.notifier.as_ref().is_some_and(|n| n.is_up())
    }

    /// Run one operation on a pooled connection within the client-side timeout.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        f: F,
    ) -> Result<T, BackendError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = Result<T, PostgresBackendError>>,
    {
        let timeout = self.inner.op_timeout;
        let work = async {
            let conn = Conn::get(&self.inner.pool, operation).await?;
            f(conn).await
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r.map_err(BackendError::from),
            Err(_) => Err(PostgresBackendError::Timeout { operation, timeout }.into()),
        }
    }
}

#[async_trait]
impl Dispatch for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    /// Every kind: mutex, semaphore permits, readers and writers.
    fn supports(&self, kind: LeaseKind) -> bool {
        matches!(
            kind,
            LeaseKind::Mutex | LeaseKind::Permit { .. } | LeaseKind::Read | LeaseKind::Write
        )
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let Operation {
            key, kind, action, ..
        } = op;
        if !self.supports(kind) {
            return Err(BackendError::unsupported("postgres", kind));
        }
        // Bad input is refused before anything is sent. A permit's limit matters only to an
        // acquire: `holders` and `force_release` take any (listings use `limit: 0`).
        if matches!(action, Action::TryAcquire { .. }) {
            check_kind(kind)?;
        }
        let ops = &self.inner.ops;
        match action {
            Action::TryAcquire { token, ttl } => {
                let ttl = ttl_us(ttl)?;
                self.run(op.name(), |c| ops.acquire(c, key, kind, token, ttl))
                    .await
                    .map(Outcome::Acquire)
            }
            Action::Extend { token, ttl } => {
                let ttl = ttl_us(ttl)?;
                self.run(op.name(), |c| ops.extend(c, key, kind, token, ttl))
                    .await
                    .map(Outcome::Done)
            }
            Action::Release { token } => self
                .run(op.name(), |c| ops.release(c, key, kind, token))
                .await
                .map(Outcome::Done),
            Action::Holders => self
                .run(op.name(), |c| ops.holders(c, key, kind))
                .await
                .map(Outcome::Holders),
            Action::ForceRelease => self
                .run(op.name(), |c| ops.force_release(c, key, kind))
                .await
                .map(Outcome::Done),
            _ => Err(BackendError::permanent(format!(
                "the postgres backend does not know the operation `{}`",
                op.name()
            ))),
        }
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        match &self.inner.notifier {
            Some(n) => Ok(Box::new(n.listen(key)?)),
            None => Ok(Box::new(SleepingListener)),
        }
    }

    /// One keyset-paginated `SELECT` of the next locks, then their holders (see the crate's
    /// `list` module).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        let sql = crate::list::statement(&self.inner.ops.schema);
        crate::list::list_page(self, &sql, query).await
    }
}

locks_core::impl_lock_backend!(PostgresBackend);
