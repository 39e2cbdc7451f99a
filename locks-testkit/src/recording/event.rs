//! What a test reads back: the recorded events, the leases they add up to, the holders of a
//! key.

use std::time::Duration;

use locks_core::{LeaseKind, OwnerToken};
use tokio::time::Instant;

/// What happened in one [`LockEvent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockEventKind {
    /// The store granted the lease (or confirmed it again to the same owner).
    Acquired,
    /// The store refused: someone else holds the lock.
    Contended {
        /// The holder's remaining ttl, when the store reported it.
        remaining: Option<Duration>,
    },
    /// The owner released its lease.
    Released,
    /// A release the store refused: the owner no longer held the lease (expired or taken), or
    /// it only cleared a waiting writer's mark.
    ReleaseRefused,
    /// A renewal or extend the store confirmed.
    Extended {
        /// The new ttl.
        ttl: Duration,
    },
    /// A renewal or extend the store refused: the owner had lost the lease.
    LostExtend,
    /// The leases of one kind were deleted whoever held them, through the backend's
    /// `force_release` (by the code under test or by
    /// [`LockService::force_release`](locks_core::LockService::force_release)).
    ForceReleased {
        /// Whether there was a lease to delete.
        had_lease: bool,
    },
    /// The test dropped the lease with [`RecordingBackend::revoke`](super::RecordingBackend::revoke).
    Revoked {
        /// Whether there was a lease to delete.
        had_lease: bool,
    },
}

impl LockEventKind {
    pub(super) fn label(self) -> String {
        let no_lease = |had: bool| if had { "" } else { " (no lease)" };
        match self {
            LockEventKind::Acquired => "acquired".to_owned(),
            LockEventKind::Contended { remaining: Some(r) } => {
                format!("contended (holder has {r:?} left)")
            }
            LockEventKind::Contended { remaining: None } => "contended".to_owned(),
            LockEventKind::Released => "released".to_owned(),
            LockEventKind::ReleaseRefused => "release refused (not owner)".to_owned(),
            LockEventKind::Extended { ttl } => format!("extended to {ttl:?}"),
            LockEventKind::LostExtend => "renewal refused (lease lost)".to_owned(),
            LockEventKind::ForceReleased { had_lease } => {
                format!("force-released{}", no_lease(had_lease))
            }
            LockEventKind::Revoked { had_lease } => {
                format!("revoked by the test{}", no_lease(had_lease))
            }
        }
    }
}

/// One recorded store operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockEvent {
    /// Position in the recording: strictly increasing, shared with probe hits.
    pub seq: u64,
    /// When the answer was recorded (tokio time).
    pub at: Instant,
    /// The caller's key name, without the prefix.
    pub key: String,
    /// The key with the prefix.
    pub full_key: String,
    /// The kind of lease the operation named (mutex, permit with its limit, read, write).
    pub lease_kind: LeaseKind,
    /// The owner token of the call; for a force-release or revoke, the evicted holder's (when
    /// the recorder knew exactly one).
    pub owner: Option<OwnerToken>,
    /// The fence of the lease concerned, when known.
    pub fence: Option<u64>,
    /// Whether the owner is a [`hold_elsewhere`](super::RecordingBackend::hold_elsewhere)
    /// holder.
    pub elsewhere: bool,
    /// What happened.
    pub kind: LockEventKind,
}

/// How a [`Holding`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// Its owner released it.
    Released,
    /// The test revoked it ([`RecordingBackend::revoke`](super::RecordingBackend::revoke)).
    Revoked,
    /// Somebody force-released it through the backend.
    ForceReleased,
    /// Its ttl ran out (or the store showed it was gone) without a release.
    Expired,
}

/// One lease, from its grant to its end, as the recorder saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holding {
    /// The caller's key name, without the prefix.
    pub key: String,
    /// The key with the prefix.
    pub full_key: String,
    /// The kind of lease (as granted).
    pub lease_kind: LeaseKind,
    /// The holder.
    pub owner: OwnerToken,
    /// The fence the store gave.
    pub fence: u64,
    /// Whether the holder is a [`hold_elsewhere`](super::RecordingBackend::hold_elsewhere)
    /// holder.
    pub elsewhere: bool,
    /// When it was granted.
    pub acquired_at: Instant,
    /// The sequence number of the grant.
    pub acquired_seq: u64,
    /// When and how it ended; `None` while it is held.
    pub ended: Option<(Instant, EndReason)>,
}

/// A live holder of a key at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Its owner token.
    pub owner: OwnerToken,
    /// Its fence.
    pub fence: u64,
    /// The kind of lease it holds.
    pub lease_kind: LeaseKind,
    /// Whether it is a [`hold_elsewhere`](super::RecordingBackend::hold_elsewhere) holder (not
    /// the code under test).
    pub elsewhere: bool,
}
