//! Errors: what [`RedisBackend::connect`](crate::RedisBackend::connect) returns, and how
//! Redis errors map to [`BackendError`] (an `OOM` refusal becomes a typed
//! [`RedisBackendError::OutOfMemory`] source).

use std::time::Duration;

use locks_core::{BackendError, LockError};
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Why a [`RedisBackend`](crate::RedisBackend) could not be built, or a server condition an
/// operation was refused for.
///
/// Match on the variant; the Redis error, where there is one, is the
/// [`source`](std::error::Error::source). Messages never contain the password of the URL.
///
/// [`connect`](crate::RedisBackendBuilder::connect) returns it directly. Operations report a
/// [`BackendError`] whose source is this type for the server conditions the backend recognises:
/// [`EvictionPolicy`](Self::EvictionPolicy) and
/// [`EvictionPolicyUnknown`](Self::EvictionPolicyUnknown) (the policy became unsafe, or
/// unreadable, after a reconnection) and [`OutOfMemory`](Self::OutOfMemory) (a new lease on a
/// full server). Find it with `std::error::Error::source` and `downcast_ref`.
///
/// It converts into [`BackendError`] (transient for [`Connect`](Self::Connect) and
/// [`ConnectTimeout`](Self::ConnectTimeout), permanent otherwise) and into [`LockError`]
/// (`LockError::Backend` with operation `"connect"`), so `?` works in functions returning
/// either.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBackendError {
    /// The URL does not parse, names an unsupported scheme, or asks for TLS (`rediss://`)
    /// without the `tls` feature of this crate.
    #[error("invalid Redis URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
        /// The redis crate's error, if it reported one.
        #[source]
        source: Option<RedisError>,
    },
    /// A builder value is out of range (a zero timeout, a fence counter ttl of 0 or absurd).
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The server did not complete the connection (TCP, TLS, `AUTH`, `PING`, and the pub/sub
    /// connection) within the connect timeout.
    #[error("Redis at {addr} did not answer within the connect timeout of {timeout:?}")]
    ConnectTimeout {
        /// The server address (`host:port` or a socket path).
        addr: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The server rejected the credentials of the URL (`WRONGPASS`, `NOAUTH`: a password is
    /// required) or the ACL user lacks a permission the backend needs (`NOPERM`). Not retried.
    #[error("Redis at {addr} rejected the credentials: check the user and password of the URL")]
    Authentication {
        /// The server address.
        addr: String,
        /// The redis crate's error.
        #[source]
        source: RedisError,
    },
    /// The connection failed: refused, reset, unreachable, DNS, TLS handshake, ...
    #[error("could not connect to Redis at {addr}")]
    Connect {
        /// The server address.
        addr: String,
        /// The redis crate's error.
        #[source]
        source: RedisError,
    },
    /// The server's `maxmemory-policy` is not `noeviction`: when it reaches `maxmemory` it may
    /// delete live leases (every lock key has a ttl, so the `volatile-*` policies pick them
    /// first), and a second holder would get in while the first one still holds. Set
    /// `maxmemory-policy noeviction` (on a managed service, in its parameter group), or give
    /// the locks a dedicated instance that uses it. Accepting the risk instead:
    /// [`allow_eviction_policy(true)`](crate::RedisBackendBuilder::allow_eviction_policy).
    ///
    /// Returned by `connect`, and by every operation after a reconnection found the policy
    /// changed, until it is `noeviction` again.
    #[error(
        "Redis at {addr} has maxmemory-policy `{policy}`, which may evict live leases and let a \
         second holder in: set `maxmemory-policy noeviction` or use a dedicated instance with \
         it (or accept the risk with `allow_eviction_policy(true)`)"
    )]
    EvictionPolicy {
        /// The server address.
        addr: String,
        /// The policy the server reported, e.g. `volatile-lru`.
        policy: String,
    },
    /// The server's `maxmemory-policy` could not be read: `CONFIG GET maxmemory-policy` and
    /// `INFO memory` were both refused (an ACL user without either command, a managed service
    /// that hides them). Grant the user `+config|get` or `+info|memory`, or accept the risk with
    /// [`allow_eviction_policy(true)`](crate::RedisBackendBuilder::allow_eviction_policy).
    #[error(
        "could not read the maxmemory-policy of Redis at {addr} ({reason}): grant the user \
         `+info|memory` or `+config|get`, or accept the risk of evicted leases with \
         `allow_eviction_policy(true)`"
    )]
    EvictionPolicyUnknown {
        /// The server address.
        addr: String,
        /// What the server answered to both commands.
        reason: String,
    },
    /// Least-privilege mode ([`function_library(true)`](crate::RedisBackendBuilder::function_library)):
    /// the server does not have this build's function library (missing, another version, or
    /// Redis older than 7.0), or refused to install it. An operator installs or upgrades it with
    /// [`install_functions`](crate::install_functions).
    #[error("the locks function library on Redis at {addr} cannot be used: {reason}")]
    FunctionLibrary {
        /// The server address.
        addr: String,
        /// What is wrong, and the fix.
        reason: String,
        /// The Redis error, if there was one.
        #[source]
        source: Option<RedisError>,
    },
    /// The server is out of memory (`maxmemory` reached under `noeviction`) and refused to write
    /// a new lease, permit, reader or writer (Redis's `OOM` error, its source). Nothing was
    /// written. Existing leases are still renewed, re-acquired and released. Permanent: the
    /// service does not retry it within the wait budget (a full server stays full until someone
    /// frees memory or raises `maxmemory`).
    #[error(
        "Redis is out of memory (OOM: used memory > maxmemory): {operation} cannot write a new \
         lease until memory is freed or maxmemory raised; held leases are still renewed"
    )]
    OutOfMemory {
        /// The operation that was refused (`try_acquire`).
        operation: &'static str,
        /// The redis crate's error (code `OOM`).
        #[source]
        source: RedisError,
    },
    /// A write that takes or extends a lease was not acknowledged by enough replicas (`WAIT`,
    /// with [`replica_ack`](crate::RedisBackendBuilder::replica_ack)). An acquire was released
    /// again (nothing is held); an extend or renewal may or may not have moved the ttl (the
    /// lease is `Unknown`). Operations report it as the source of a *transient*
    /// [`BackendError`]: the service retries an acquire with a new token within its wait budget.
    #[error(
        "redis {operation} was not acknowledged by {wanted} replica(s) within {timeout:?} \
         ({detail}); an acquire was given back, a renewal leaves the lease unknown"
    )]
    NotReplicated {
        /// The operation (`try_acquire`, `extend`).
        operation: &'static str,
        /// How many replicas had to acknowledge.
        wanted: u32,
        /// How long `WAIT` waited.
        timeout: Duration,
        /// What `WAIT` said (how many replicas acknowledged, or why it failed).
        detail: String,
    },
}

impl RedisBackendError {
    /// True when trying again later may succeed ([`Connect`](Self::Connect),
    /// [`ConnectTimeout`](Self::ConnectTimeout)).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RedisBackendError::Connect { .. }
                | RedisBackendError::ConnectTimeout { .. }
                | RedisBackendError::NotReplicated { .. }
        )
    }
}

impl From<RedisBackendError> for BackendError {
    fn from(e: RedisBackendError) -> Self {
        let base = if e.is_transient() {
            BackendError::transient(e.to_string())
        } else {
            BackendError::permanent(e.to_string())
        };
        base.with_source(e)
    }
}

impl From<RedisBackendError> for LockError {
    fn from(e: RedisBackendError) -> Self {
        LockError::Backend {
            operation: "connect",
            source: e.into(),
        }
    }
}

/// Server error codes that go away by themselves: a busy script, a server loading its data, a
/// cluster resharding or failing over (`MOVED`, `ASK`: the cluster client follows them itself,
/// and one that still reaches us means the slot map is changing), a demoted master.
const TRANSIENT_CODES: &[&str] = &[
    "BUSY",
    "LOADING",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MASTERDOWN",
    "READONLY",
    "MOVED",
    "ASK",
];

/// Server error codes that mean "these credentials will not work".
const AUTH_CODES: &[&str] = &["NOAUTH", "WRONGPASS", "NOPERM"];

/// Whether a Redis error may go away if the operation is sent again.
///
/// Transient: I/O errors, timeouts, dropped or refused connections, `BUSY`, `LOADING`,
/// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `MOVED`, `ASK`. Everything else is
/// permanent:
/// authentication and permissions, `NOSCRIPT` after the script was reloaded, script errors,
/// `WRONGTYPE` (something else owns the key), malformed replies.
pub(crate) fn is_transient(e: &RedisError) -> bool {
    if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() {
        return true;
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        )
        | ErrorKind::ClusterConnectionNotFound => true,
        _ => e.code().is_some_and(|code| TRANSIENT_CODES.contains(&code)),
    }
}

/// Whether a Redis error says the credentials (or the user's permissions) are wrong.
pub(crate) fn is_auth(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || e.code().is_some_and(|code| AUTH_CODES.contains(&code))
}

/// Whether the server refused a write because it is out of memory (`OOM`).
pub(crate) fn is_oom(e: &RedisError) -> bool {
    e.code() == Some("OOM")
}

/// The prefix of the error replies of the scripts' argument checks (`ERR locks: ...`).
const INVALID_ARGUMENT: &str = "locks:";

/// Whether a script refused its arguments (an `ERR locks: ...` reply of its checks, sent before
/// it wrote anything).
pub(crate) fn is_invalid_argument(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail().is_some_and(|d| d.starts_with(INVALID_ARGUMENT))
}

/// A Redis error as a [`BackendError`], keeping it as the source. An `OOM` refusal is permanent,
/// with a [`RedisBackendError::OutOfMemory`] source (which keeps the Redis error as its own). A
/// script's refusal of its arguments is permanent (the same call is refused again; nothing was
/// written).
pub(crate) fn backend_error(operation: &'static str, e: RedisError) -> BackendError {
    // An acquire with a retired owner token (`scripts::RELEASE`): worded as every backend
    // words it.
    if let Some(reason) = e.detail().and_then(|d| d.strip_prefix("locks-retired: ")) {
        return BackendError::permanent(reason.to_owned()).with_source(e);
    }
    if is_invalid_argument(&e) {
        let detail = e.detail().unwrap_or_default();
        let reason = detail
            .strip_prefix(INVALID_ARGUMENT)
            .unwrap_or(detail)
            .trim();
        return BackendError::permanent(format!(
            "redis {operation} refused an invalid argument (nothing was written): {reason}"
        ))
        .with_source(e);
    }
    if is_oom(&e) {
        let e = RedisBackendError::OutOfMemory {
            operation,
            source: e,
        };
        return BackendError::permanent(format!("redis {operation} refused: {e}")).with_source(e);
    }
    let message = format!("redis {operation} failed: {e}");
    let base = if is_transient(&e) {
        BackendError::transient(message)
    } else {
        BackendError::permanent(message)
    };
    base.with_source(e)
}

/// A connection-time Redis error as a [`RedisBackendError`].
pub(crate) fn connect_error(addr: &str, e: RedisError) -> RedisBackendError {
    if is_auth(&e) {
        RedisBackendError::Authentication {
            addr: addr.to_owned(),
            source: e,
        }
    } else if e.kind() == ErrorKind::InvalidClientConfig {
        RedisBackendError::InvalidUrl {
            reason: e.to_string(),
            source: Some(e),
        }
    } else {
        RedisBackendError::Connect {
            addr: addr.to_owned(),
            source: e,
        }
    }
}

/// A reply the scripts never produce: the store holds something this backend did not write.
pub(crate) fn malformed(operation: &'static str, what: impl std::fmt::Display) -> BackendError {
    BackendError::permanent(format!("redis {operation}: malformed reply: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> RedisError {
        redis::make_extension_error(code.to_owned(), Some("detail".to_owned()))
    }

    #[test]
    fn classifies_errors() {
        let io = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(is_transient(&io));
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert!(is_transient(&timeout));
        for code in [
            "BUSY",
            "LOADING",
            "TRYAGAIN",
            "CLUSTERDOWN",
            "MASTERDOWN",
            "MOVED",
            "ASK",
        ] {
            assert!(is_transient(&server(code)), "{code}");
        }
        for code in ["WRONGTYPE", "NOAUTH", "WRONGPASS", "ERR"] {
            assert!(!is_transient(&server(code)), "{code}");
        }
        assert!(is_auth(&server("WRONGPASS")));
        assert!(is_auth(&server("NOAUTH")));
        let auth = RedisError::from((ErrorKind::AuthenticationFailed, "bad"));
        assert!(is_auth(&auth));
        assert!(!is_transient(&auth));
        let parse = RedisError::from((ErrorKind::UnexpectedReturnType, "bad"));
        assert!(!backend_error("acquire", parse).is_transient());
        assert!(backend_error("acquire", io).is_transient());
        let oom = backend_error("try_acquire", server("OOM"));
        assert!(!oom.is_transient());
        assert!(oom.message().contains("OOM"), "{}", oom.message());
        let source =
            std::error::Error::source(&oom).and_then(|s| s.downcast_ref::<RedisBackendError>());
        assert!(
            matches!(
                source,
                Some(RedisBackendError::OutOfMemory {
                    operation: "try_acquire",
                    ..
                })
            ),
            "{source:?}"
        );
    }

    #[test]
    fn a_refused_argument_is_a_permanent_error() {
        let refused = redis::make_extension_error(
            "ERR".to_owned(),
            Some("locks: ttl must be an integer number of ms, got '0'".to_owned()),
        );
        assert!(is_invalid_argument(&refused));
        let e = backend_error("extend", refused);
        assert!(!e.is_transient());
        assert!(
            e.message()
                .contains("extend refused an invalid argument (nothing was written): ttl must"),
            "{}",
            e.message()
        );
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<RedisError>());
        assert!(source.is_some_and(|s| s.code() == Some("ERR")));
        // Any other script error is not mistaken for one.
        assert!(!is_invalid_argument(&server("ERR")));
        assert!(!is_invalid_argument(&redis::make_extension_error(
            "WRONGTYPE".to_owned(),
            Some("locks: no".to_owned())
        )));
    }

    #[test]
    fn connect_errors_convert() {
        let e = RedisBackendError::ConnectTimeout {
            addr: "127.0.0.1:1".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(BackendError::from(e).is_transient());
        let e = RedisBackendError::InvalidUrl {
            reason: "nope".into(),
            source: None,
        };
        let lock: LockError = e.into();
        assert!(matches!(
            lock,
            LockError::Backend {
                operation: "connect",
                ..
            }
        ));
    }
}
