//! The one error type callers match on, and the error a backend reports.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::kind::LeaseKind;
use crate::state::LostReason;

/// Everything that can go wrong when taking, keeping or giving back a lock.
///
/// Match on the variant; backend failures keep their original error as
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The wait budget (or the attempt limit) ran out while someone else held the lock.
    #[error("timed out acquiring lock `{key}` after {waited:?} and {attempts} attempt(s)")]
    AcquireTimeout {
        /// The caller's key (without prefix).
        key: String,
        /// How long the caller waited in total.
        waited: Duration,
        /// How many acquire attempts were sent to the store.
        attempts: u32,
        /// The last transient backend error seen while waiting, if any.
        #[source]
        last_error: Option<BackendError>,
    },
    /// `try_acquire` found the lock held by someone else.
    #[error("lock `{key}` is held by another owner")]
    Contended {
        /// The caller's key (without prefix).
        key: String,
        /// The holder's remaining time to live, when the store reported it.
        remaining: Option<Duration>,
    },
    /// The store says this owner token does not hold the lease (it expired, was
    /// force-released, or was taken by another owner).
    #[error("lock `{key}` is not held by this owner (expired or taken)")]
    NotOwner {
        /// The caller's key (without prefix).
        key: String,
    },
    /// The lease can no longer be trusted; see the reason.
    #[error("lock `{key}` was lost: {reason}")]
    Lost {
        /// The caller's key (without prefix).
        key: String,
        /// Why the lease was lost.
        reason: LostReason,
    },
    /// The key is empty, too long, or contains control characters.
    #[error("invalid lock key: {reason}")]
    InvalidKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A ttl of zero, or above the configured maximum.
    #[error("invalid ttl {ttl:?}: {reason}")]
    InvalidTtl {
        /// The ttl that was rejected.
        ttl: Duration,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value out of range (retry policy, renewal fraction, prefix, ...).
    #[error("invalid option `{option}`: {reason}")]
    InvalidOptions {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The backend cannot store leases of this kind (for example a store without semaphores).
    /// Returned when the primitive is created (`LockService::semaphore`, `rwlock`, or the
    /// service itself for mutexes), never at first use.
    #[error("the {backend} backend does not support {kind} leases")]
    Unsupported {
        /// The backend's [`name`](crate::LockBackend::name).
        backend: &'static str,
        /// The kind it refused.
        kind: LeaseKind,
    },
    /// The calling task already holds this lock (same key and kind) through this service:
    /// leases are not reentrant, so waiting would only run out the wait budget. Returned at
    /// once instead. Pass the held lease down, or turn detection off with
    /// `LockServiceBuilder::detect_self_wait(false)`.
    #[error("lock `{key}` is already held by this task (leases are not reentrant)")]
    SelfWait {
        /// The caller's key (without prefix).
        key: String,
    },
    /// The service has been shut down (or is shutting down) and takes no new locks.
    #[error("the lock service is shutting down")]
    ShuttingDown,
    /// The store failed; the original error is the source.
    #[error("lock backend error during {operation}")]
    Backend {
        /// The operation that failed (`acquire`, `release`, `extend`, ...).
        operation: &'static str,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
}

impl LockError {
    /// A short, stable code for logs, metrics and HTTP mapping: `acquire_timeout`,
    /// `contended`, `not_owner`, `lost`, `invalid_key`, `invalid_ttl`, `invalid_options`,
    /// `unsupported`, `self_wait`, `shutting_down`, `backend`. Codes are never renamed; new
    /// variants get new codes.
    ///
    /// A typical HTTP mapping, for a handler that takes a lock per request:
    ///
    /// | code | status | why |
    /// |---|---|---|
    /// | `acquire_timeout`, `contended` | 409 Conflict (or 503 with `Retry-After`) | someone else is doing this now; retry later |
    /// | `not_owner`, `lost` | 409 Conflict | the lease ended under the work: it may be incomplete |
    /// | `invalid_key` | 400 Bad Request | when the key comes from the request; else 500 |
    /// | `invalid_ttl`, `invalid_options`, `unsupported`, `self_wait` | 500 | a bug or a misconfiguration in the service |
    /// | `shutting_down` | 503 Service Unavailable | this instance is stopping; another one can serve |
    /// | `backend` | 503 Service Unavailable | the lock store is unreachable or failing |
    ///
    /// ```
    /// use locks_core::LockError;
    ///
    /// let e = LockError::Contended { key: "job".into(), remaining: None };
    /// assert_eq!(e.code(), "contended");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            LockError::AcquireTimeout { .. } => "acquire_timeout",
            LockError::Contended { .. } => "contended",
            LockError::NotOwner { .. } => "not_owner",
            LockError::Lost { .. } => "lost",
            LockError::InvalidKey { .. } => "invalid_key",
            LockError::InvalidTtl { .. } => "invalid_ttl",
            LockError::InvalidOptions { .. } => "invalid_options",
            LockError::Unsupported { .. } => "unsupported",
            LockError::SelfWait { .. } => "self_wait",
            LockError::ShuttingDown => "shutting_down",
            LockError::Backend { .. } => "backend",
        }
    }

    pub(crate) fn invalid_option(option: &'static str, reason: impl Into<String>) -> Self {
        LockError::InvalidOptions {
            option,
            reason: reason.into(),
        }
    }

    pub(crate) fn backend(operation: &'static str, source: BackendError) -> Self {
        match source.unsupported {
            Some((backend, kind)) => LockError::Unsupported { backend, kind },
            None => LockError::Backend { operation, source },
        }
    }
}

/// Whether a backend failure may go away by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackendErrorKind {
    /// A dropped connection, a timeout, a busy server: retrying may succeed, and the
    /// operation may or may not have been applied.
    Transient,
    /// Authentication, a script error, a malformed reply: retrying will not help.
    Permanent,
}

/// An error reported by a [`LockBackend`](crate::LockBackend).
///
/// It keeps the store's own error as its source, and says whether it is
/// [`BackendErrorKind::Transient`] (the core retries) or permanent (the core gives up).
#[derive(Debug)]
pub struct BackendError {
    kind: BackendErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    unsupported: Option<(&'static str, LeaseKind)>,
}

impl BackendError {
    /// A transient failure with a message.
    pub fn transient(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Transient,
            message: message.into(),
            source: None,
            unsupported: None,
        }
    }

    /// A permanent failure with a message.
    pub fn permanent(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Permanent,
            message: message.into(),
            source: None,
            unsupported: None,
        }
    }

    /// The backend `backend` was asked for a lease kind it does not
    /// [`support`](crate::LockBackend::supports) (permanent). The service turns it into
    /// [`LockError::Unsupported`].
    pub fn unsupported(backend: &'static str, kind: LeaseKind) -> Self {
        BackendError {
            unsupported: Some((backend, kind)),
            ..BackendError::permanent(format!(
                "the {backend} backend does not support {kind} leases"
            ))
        }
    }

    /// The kind a backend refused, when this is an [`unsupported`](BackendError::unsupported)
    /// error.
    pub fn unsupported_kind(&self) -> Option<LeaseKind> {
        self.unsupported.map(|(_, kind)| kind)
    }

    /// Attach the store's own error as the source.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Whether the failure is transient or permanent.
    pub fn kind(&self) -> BackendErrorKind {
        self.kind
    }

    /// True for [`BackendErrorKind::Transient`].
    pub fn is_transient(&self) -> bool {
        self.kind == BackendErrorKind::Transient
    }

    /// The backend's description of the failure.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BackendErrorKind::Transient => "transient",
            BackendErrorKind::Permanent => "permanent",
        };
        write!(f, "{kind} backend error: {}", self.message)
    }
}

impl StdError for BackendError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_error_keeps_source_and_kind() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = BackendError::transient("connection dropped").with_source(io);
        assert!(err.is_transient());
        assert_eq!(err.source().map(|s| s.to_string()), Some("reset".into()));
        let wrapped = LockError::backend("release", err);
        let src = wrapped.source().expect("source kept");
        assert!(src.to_string().contains("connection dropped"));
    }
}
