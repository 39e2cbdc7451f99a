//! [`PostgresBackendBuilder`]: the connection string and options, and `connect`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{Config, NoTls};

use crate::backend::{Inner, PostgresBackend};
use crate::error::PostgresBackendError;
use crate::listen::Notifier;
use crate::ops::{Conn, Ops};
use crate::schema::Schema;
use crate::sql::Statements;

/// The default schema of the lock tables.
pub const DEFAULT_SCHEMA: &str = "public";

/// Options of a [`PostgresBackend`]; [`connect`](Self::connect) builds it.
///
/// ```no_run
/// use std::time::Duration;
/// use locks_postgres::PostgresBackend;
///
/// # async fn demo() -> Result<(), locks_postgres::PostgresBackendError> {
/// let backend = PostgresBackend::builder("postgres://app:s3cret@db.internal/app")
///     .schema("locks")
///     .pool_size(8)
///     .statement_timeout(Duration::from_secs(2))
///     .connect()
///     .await?;
/// # drop(backend); Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresBackendBuilder {
    url: String,
    schema: String,
    pool_size: usize,
    connect_timeout: Duration,
    statement_timeout: Duration,
    install: bool,
    notifications: bool,
}

impl PostgresBackendBuilder {
    pub(crate) fn new(url: String) -> Self {
        PostgresBackendBuilder {
            url,
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            install: true,
            notifications: true,
        }
    }

    /// The schema of the lock tables (default `public`): an ASCII letter or `_`, then letters,
    /// digits or `_`, at most 48 bytes. The schema itself must exist.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// How many pooled connections operations use at most (default 16). The release
    /// notifications use one more connection of their own.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long opening a connection may take (default 5 s), at connect and later.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The server's `statement_timeout` for every statement of the backend (default 5 s): a
    /// statement stuck behind a lock, or on an overloaded server, is cancelled by the server
    /// and the operation fails with a transient error, its transaction rolled back. The client
    /// gives up on an operation after twice this time (a server that stopped answering) and
    /// closes its connection.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Whether `connect` creates the lock tables when they are missing (default `true`; the
    /// statements of [`PostgresBackend::install_sql`], under an advisory lock, idempotent). A
    /// role without `CREATE` on the schema simply finds the tables an operator installed;
    /// `false` skips the attempt and only checks that they can be read.
    pub fn install(mut self, install: bool) -> Self {
        self.install = install;
        self
    }

    /// Whether waiters hear releases through `LISTEN`/`NOTIFY` (default `true`). `false`
    /// opens no listening connection, and waiters poll.
    pub fn notifications(mut self, on: bool) -> Self {
        self.notifications = on;
        self
    }

    fn validate(&self) -> Result<(Config, Schema), PostgresBackendError> {
        let schema = Schema::new(&self.schema)?;
        let bad = |option, reason: &str| PostgresBackendError::InvalidOption {
            option,
            reason: reason.to_owned(),
        };
        if self.pool_size == 0 {
            return Err(bad("pool_size", "at least 1 connection is needed"));
        }
        if self.connect_timeout.is_zero() {
            return Err(bad("connect_timeout", "must be above zero"));
        }
        if self.statement_timeout < Duration::from_millis(1)
            || self.statement_timeout > Duration::from_secs(24 * 3600)
        {
            return Err(bad("statement_timeout", "must be from 1 ms to 24 h"));
        }
        let mut config = Config::from_str(&self.url)
            .map_err(|source| PostgresBackendError::InvalidUrl { source })?;
        config.connect_timeout(self.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("locks-postgres");
        }
        let mut options = config.get_options().unwrap_or_default().to_owned();
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str(&format!(
            "-c statement_timeout={}",
            self.statement_timeout.as_millis()
        ));
        config.options(&options);
        Ok((config, schema))
    }

    /// Connect: build the pool, create (or find) the lock tables, and open the release
    /// notification connection, all within the connect timeout each.
    ///
    /// # Errors
    ///
    /// A typed [`PostgresBackendError`]: a bad option or connection string (nothing is
    /// contacted), an unreachable server or a refused login, tables that are missing and
    /// cannot be created ([`NotInstalled`](PostgresBackendError::NotInstalled)).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future closes the connections opened so far; table creation
    /// runs in one transaction.
    pub async fn connect(self) -> Result<PostgresBackend, PostgresBackendError> {
        let (config, schema) = self.validate()?;
        let op_timeout = self.statement_timeout * 2;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(self.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(op_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| PostgresBackendError::Pool {
                operation: "connect",
                reason: e.to_string(),
            })?;
        let conn =
            match tokio::time::timeout(self.connect_timeout, Conn::get(&pool, "connect")).await {
                Ok(c) => c?,
                Err(_) => {
                    return Err(PostgresBackendError::ConnectTimeout {
                        timeout: self.connect_timeout,
                    });
                }
            };
        crate::install::ensure(conn, &schema, self.install).await?;
        let notifier = if self.notifications {
            Some(Notifier::start(config, schema.channel.clone(), self.connect_timeout).await?)
        } else {
            None
        };
        let sql = Statements::new(&schema);
        Ok(PostgresBackend {
            inner: Arc::new(Inner {
                pool,
                ops: Ops { sql, schema },
                notifier,
                op_timeout,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_refused_before_connecting() {
        let b = || PostgresBackendBuilder::new("postgres://u@127.0.0.1:1/db".into());
        let cases = [
            (b().pool_size(0), "pool_size"),
            (b().connect_timeout(Duration::ZERO), "connect_timeout"),
            (b().statement_timeout(Duration::ZERO), "statement_timeout"),
            (b().schema("no-such name"), "schema"),
        ];
        for (builder, option) in cases {
            match builder.validate() {
                Err(PostgresBackendError::InvalidOption { option: o, .. }) => assert_eq!(o, option),
                other => panic!("{option}: {other:?}"),
            }
        }
        assert!(matches!(
            PostgresBackendBuilder::new("postgres://u@host:notaport/db".into()).validate(),
            Err(PostgresBackendError::InvalidUrl { .. })
        ));
        let (config, _) = b()
            .statement_timeout(Duration::from_millis(250))
            .validate()
            .unwrap();
        assert_eq!(config.get_options(), Some("-c statement_timeout=250"));
    }
}
