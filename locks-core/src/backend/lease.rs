//! What the store answers: a granted lease, a refused attempt, the live holders.

use std::time::Duration;

use crate::kind::LeaseKind;
use crate::token::OwnerToken;

/// A lease the store granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The fencing token: strictly increasing per key across all holders, for the life of the
    /// store (see the backend's docs for what survives a restart).
    pub fence: u64,
}

impl Lease {
    /// A lease with this fencing token.
    pub fn new(fence: u64) -> Self {
        Lease { fence }
    }
}

/// What a single acquire attempt got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireResult {
    /// The caller now holds the lease.
    Acquired(Lease),
    /// Someone else holds it.
    Held {
        /// The holder's remaining time to live, as a wait hint, when the store knows it.
        remaining: Option<Duration>,
    },
}

/// One live lease as the store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The kind of the lease (a read-write lock lists readers and its writer together).
    pub kind: LeaseKind,
    /// The holder's owner token.
    pub owner: OwnerToken,
    /// How long until the store expires the lease, by the store's clock.
    pub remaining: Duration,
    /// The fencing token the holder was given.
    pub fence: u64,
}

impl LeaseInfo {
    /// Describe a lease.
    pub fn new(kind: LeaseKind, owner: OwnerToken, remaining: Duration, fence: u64) -> Self {
        LeaseInfo {
            kind,
            owner,
            remaining,
            fence,
        }
    }
}

/// The live leases of one key and kind, as [`LockBackend::holders`](crate::LockBackend::holders)
/// reports them.
///
/// - `Mutex`, `FairMutex`: the holder, if any.
/// - `Permit { .. }`: every live permit, oldest first.
/// - `Read` or `Write`: the whole read-write lock: the readers (kind `Read`), then the writer
///   (kind `Write`), and whether a writer waits for the readers to leave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holders {
    /// The live leases.
    pub leases: Vec<LeaseInfo>,
    /// Read-write locks only: a writer waits for the readers to leave (new readers are
    /// refused meanwhile).
    pub writer_waiting: bool,
}

impl Holders {
    /// Holders with no waiting writer.
    pub fn new(leases: Vec<LeaseInfo>) -> Self {
        Holders {
            leases,
            writer_waiting: false,
        }
    }

    /// The same, marking whether a writer waits.
    pub fn with_writer_waiting(mut self, waiting: bool) -> Self {
        self.writer_waiting = waiting;
        self
    }

    /// Whether `token` holds a lease of `kind` among these.
    pub fn is_held_by(&self, token: OwnerToken, kind: LeaseKind) -> bool {
        self.leases
            .iter()
            .any(|l| l.owner == token && Self::same_side(l.kind, kind))
    }

    /// Whether two kinds name the same side of a lock (permit limits may differ).
    pub fn same_side(a: LeaseKind, b: LeaseKind) -> bool {
        matches!(
            (a, b),
            (LeaseKind::Mutex, LeaseKind::Mutex)
                | (LeaseKind::Permit { .. }, LeaseKind::Permit { .. })
                | (LeaseKind::Read, LeaseKind::Read)
                | (LeaseKind::Write, LeaseKind::Write)
                | (LeaseKind::FairMutex, LeaseKind::FairMutex)
        )
    }
}
