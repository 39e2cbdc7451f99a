//! What kind of lease a caller asks for: the one parameter that lets a single backend contract
//! serve every primitive.

use std::fmt;

/// The kind of a lease. Every [`LockBackend`](crate::LockBackend) operation takes one, so a
/// single small contract serves the mutex, the semaphore and the read-write lock.
///
/// A backend says which kinds it can store with
/// [`supports`](crate::LockBackend::supports); the service refuses a primitive whose kind is
/// not supported when the primitive is created, with [`LockError::Unsupported`](crate::LockError::Unsupported).
///
/// ```
/// use locks_core::LeaseKind;
///
/// assert!(LeaseKind::Mutex.is_exclusive());
/// assert!(LeaseKind::Write.is_exclusive());
/// assert!(!LeaseKind::Permit { limit: 3 }.is_exclusive());
/// assert_eq!(LeaseKind::Read.label(), "read");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeaseKind {
    /// One holder at a time.
    Mutex,
    /// One of at most `limit` holders (a semaphore permit). The limit travels with every
    /// acquire: lowering it never revokes live permits, it only refuses new ones until enough
    /// holders have left.
    Permit {
        /// How many permits the semaphore has (at least 1).
        limit: u32,
    },
    /// A reader of a read-write lock: many at once, never beside a writer.
    Read,
    /// The writer of a read-write lock: alone. A writer that finds readers marks itself as
    /// waiting, so that new readers wait too (writer-preferring).
    Write,
}

impl LeaseKind {
    /// Whether at most one lease of this kind can exist per key (mutex, writer). Waiters of an
    /// exclusive kind queue in FIFO order inside a service.
    pub fn is_exclusive(self) -> bool {
        matches!(self, LeaseKind::Mutex | LeaseKind::Write)
    }

    /// A short, stable name for logs, metrics and JSON: `mutex`, `permit`, `read`, `write`.
    pub fn label(self) -> &'static str {
        match self {
            LeaseKind::Mutex => "mutex",
            LeaseKind::Permit { .. } => "permit",
            LeaseKind::Read => "read",
            LeaseKind::Write => "write",
        }
    }

    /// Whether a failed attempt of this kind may leave state in the store that must be cleaned
    /// up with a release when the caller stops waiting (a writer's "waiting" mark).
    pub(crate) fn leaves_mark_when_waiting(self) -> bool {
        matches!(self, LeaseKind::Write)
    }
}

impl fmt::Display for LeaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaseKind::Permit { limit } => write!(f, "permit (of {limit})"),
            other => f.write_str(other.label()),
        }
    }
}
