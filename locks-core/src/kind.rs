//! What kind of lease a caller asks for: the one parameter that lets a single backend contract
//! serve every primitive.

use std::fmt;
use std::time::Duration;

/// How long a queued waiter of a [`LeaseKind::FairMutex`] keeps its place without asking
/// again: a store drops a queue entry whose token has not re-asked within this time (a waiter
/// that crashed or gave up without leaving), so it never blocks the queue for longer. The
/// service re-asks at least every third of it while it waits.
pub const FAIR_WAITER_TTL: Duration = Duration::from_secs(3);

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
/// assert!(LeaseKind::FairMutex.is_exclusive());
/// assert_eq!(LeaseKind::FairMutex.label(), "fair");
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
    /// A mutex with a store-side FIFO queue of waiters and direct hand-off (the service's
    /// opt-in *fair mode*: [`AcquireOptions::fair`](crate::AcquireOptions::fair)). One holder,
    /// like [`Mutex`](LeaseKind::Mutex), but kept under names of its own: every user of a
    /// name must agree on the mode (as with a mutex and a semaphore of the same name, a fair
    /// and a plain mutex of one name do not exclude each other).
    ///
    /// The contract for this kind:
    ///
    /// - `try_acquire(token, ttl)`: queue entries that expired are dropped first. If `token`
    ///   holds the lease, its ttl is reset and its fence returned (this is also how a waiter
    ///   claims a lease granted to it). If the lease is free and the queue is empty or headed
    ///   by `token`, `token` gets a new lease (a new fence, as for a mutex) and leaves the
    ///   queue. Otherwise `token` is queued at the tail if absent (it keeps its place if
    ///   present), its entry lives [`FAIR_WAITER_TTL`] from now, its requested `ttl` is
    ///   remembered, and the answer is `Held { remaining }`.
    /// - `release(token)`: if `token` holds the lease, the lease is deleted, expired queue
    ///   entries dropped, and the head of the queue, if any, gets the lease at once (a new
    ///   fence; the ttl it last asked for, at most [`FAIR_WAITER_TTL`]: the grant is
    ///   provisional until the new holder renews it, so a waiter that crashed while queued
    ///   blocks the lock for no longer than that) and leaves the queue; the store then notifies listeners with
    ///   [`Wake::Granted`](crate::backend::Wake::Granted) naming the head's token and fence,
    ///   or, with nobody queued, a plain release notification. Returns `true`. Otherwise the
    ///   token leaves the queue (a waiter that gave up), is retired like any release of a
    ///   token that holds nothing, and `false` is returned.
    /// - `extend`, `holders`, `list`: as for a mutex. `force_release` deletes the lease and
    ///   the queue.
    FairMutex,
}

impl LeaseKind {
    /// Whether at most one lease of this kind can exist per key (mutex, fair mutex, writer).
    /// Waiters of an exclusive kind queue in FIFO order inside a service (a fair mutex's in
    /// the store).
    pub fn is_exclusive(self) -> bool {
        matches!(
            self,
            LeaseKind::Mutex | LeaseKind::Write | LeaseKind::FairMutex
        )
    }

    /// A short, stable name for logs, metrics and JSON: `mutex`, `permit`, `read`, `write`,
    /// `fair`.
    pub fn label(self) -> &'static str {
        match self {
            LeaseKind::Mutex => "mutex",
            LeaseKind::Permit { .. } => "permit",
            LeaseKind::Read => "read",
            LeaseKind::Write => "write",
            LeaseKind::FairMutex => "fair",
        }
    }

    /// Whether a failed attempt of this kind may leave state in the store that must be cleaned
    /// up with a release when the caller stops waiting (a writer's "waiting" mark, a fair
    /// mutex's queue entry).
    pub(crate) fn leaves_mark_when_waiting(self) -> bool {
        matches!(self, LeaseKind::Write | LeaseKind::FairMutex)
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
