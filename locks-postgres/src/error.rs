//! Errors: what [`PostgresBackend::connect`](crate::PostgresBackend::connect) returns, and how
//! PostgreSQL errors map to a transient or permanent [`BackendError`].

use std::time::Duration;

use locks_core::{BackendError, LockError};

/// Why a [`PostgresBackend`](crate::PostgresBackend) could not be built, or why an operation
/// was refused before anything was sent.
///
/// Match on the variant; the driver's error, where there is one, is the
/// [`source`](std::error::Error::source). Messages never contain the password of the URL.
/// Operations report a [`BackendError`] whose source is this type; find it with
/// `std::error::Error::source` and `downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresBackendError {
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {source}")]
    InvalidUrl {
        /// The driver's parse error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A builder value is out of range (a zero timeout or pool size, a bad schema name).
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A ttl of zero, or above [`MAX_TTL`](crate::MAX_TTL). Nothing was written.
    #[error("invalid ttl {ttl:?}: {reason}")]
    InvalidTtl {
        /// The ttl that was refused.
        ttl: Duration,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An acquire with an owner token that a release already retired (it found nothing held):
    /// a late request, refused so that it cannot leave a lease nobody holds. Nothing was
    /// written. The service never sends one on purpose.
    #[error("this owner token was released; an acquire with it is refused")]
    RetiredToken,
    /// A semaphore of zero permits. Nothing was written.
    #[error("invalid permit count 0: a semaphore needs at least 1 permit")]
    InvalidPermits,
    /// The server did not complete the connection within the connect timeout.
    #[error("PostgreSQL did not answer within the connect timeout of {timeout:?}")]
    ConnectTimeout {
        /// The connect timeout.
        timeout: Duration,
    },
    /// An operation got no answer within the client-side operation timeout (the connection
    /// is dropped, so the server rolls back whatever it had not committed).
    #[error("PostgreSQL did not answer `{operation}` within {timeout:?}")]
    Timeout {
        /// The operation.
        operation: &'static str,
        /// The client-side timeout.
        timeout: Duration,
    },
    /// The lock tables do not exist in the schema and the role may not create them.
    #[error(
        "the lock tables are missing in schema `{schema}` and could not be created ({source}); \
         run the install SQL (`PostgresBackend::install_sql`, or sql/install.sql with psql) \
         as the schema's owner, then grant the application role SELECT, INSERT, UPDATE, \
         DELETE on them"
    )]
    NotInstalled {
        /// The schema.
        schema: String,
        /// Why creating or reading them failed.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The server answered with an error, or the connection failed.
    #[error("PostgreSQL error during {operation}")]
    Postgres {
        /// The operation (`connect`, `try_acquire`, `listen`, ...).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The pool could not hand out a connection.
    #[error("no PostgreSQL connection for {operation}: {reason}")]
    Pool {
        /// The operation.
        operation: &'static str,
        /// What the pool said.
        reason: String,
    },
}

impl PostgresBackendError {
    /// Whether retrying may succeed (a dropped connection, a timeout, a server shutting down).
    pub fn is_transient(&self) -> bool {
        match self {
            PostgresBackendError::ConnectTimeout { .. }
            | PostgresBackendError::Timeout { .. }
            | PostgresBackendError::Pool { .. } => true,
            PostgresBackendError::Postgres { source, .. } => is_transient(source),
            _ => false,
        }
    }

    pub(crate) fn pg(operation: &'static str, source: tokio_postgres::Error) -> Self {
        PostgresBackendError::Postgres { operation, source }
    }
}

impl From<PostgresBackendError> for BackendError {
    fn from(e: PostgresBackendError) -> Self {
        let message = e.to_string();
        let base = if e.is_transient() {
            BackendError::transient(message)
        } else {
            BackendError::permanent(message)
        };
        base.with_source(e)
    }
}

impl From<PostgresBackendError> for LockError {
    fn from(e: PostgresBackendError) -> Self {
        LockError::Backend {
            operation: "connect",
            source: e.into(),
        }
    }
}

/// SQLSTATE classes and codes worth a retry: connection exceptions (`08`), insufficient
/// resources (`53`), operator intervention (`57`: a statement timeout or cancel `57014`, an
/// administrator's `pg_terminate_backend` `57P01`, a shutdown or restart `57P02`/`57P03`),
/// serialization failures and deadlocks (`40001`, `40P01`), lock timeouts (`55P03`).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    let Some(state) = e.code() else {
        // No SQLSTATE: an I/O error, a closed connection, a timeout of the driver.
        return true;
    };
    let code = state.code();
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || matches!(code, "40001" | "40P01" | "55P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_are_permanent_and_pool_errors_transient() {
        let ttl = PostgresBackendError::InvalidTtl {
            ttl: Duration::ZERO,
            reason: "zero",
        };
        assert!(!ttl.is_transient());
        assert!(!PostgresBackendError::InvalidPermits.is_transient());
        let pool = PostgresBackendError::Pool {
            operation: "release",
            reason: "timed out".into(),
        };
        assert!(pool.is_transient());
        let e: BackendError = pool.into();
        assert_eq!(e.kind(), locks_core::BackendErrorKind::Transient);
    }
}
