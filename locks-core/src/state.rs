//! The holder's view of a lease: [`LeaseState`] and, once it is over, [`LostReason`].

use std::fmt;

/// Why a lease can no longer be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// The store answered "not owner" to a renewal or extend: the lease expired or was taken.
    NotOwner,
    /// The holder's local deadline (acquire sent + ttl - drift margin) passed without a
    /// confirmed renewal, e.g. because the store could not be reached.
    DeadlineExpired,
    /// The service's `max_hold` stopped renewal and the lease ran out.
    MaxHoldReached,
    /// The holder released it.
    Released,
    /// The service was shut down, which released it.
    Shutdown,
    /// The holder abandoned it with [`LockGuard::abandon`](crate::LockGuard::abandon): no
    /// release, no renewal; the store expires it by its ttl.
    Abandoned,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::NotOwner => "the store no longer lists this owner",
            LostReason::DeadlineExpired => "the local deadline passed without a confirmed renewal",
            LostReason::MaxHoldReached => "the maximum hold time was reached",
            LostReason::Released => "it was released",
            LostReason::Shutdown => "the service shut down",
            LostReason::Abandoned => "it was abandoned (left to expire)",
        })
    }
}

impl LostReason {
    /// A short, stable label for metrics and logs (`not_owner`, `deadline`, ...).
    pub fn label(self) -> &'static str {
        match self {
            LostReason::NotOwner => "not_owner",
            LostReason::DeadlineExpired => "deadline",
            LostReason::MaxHoldReached => "max_hold",
            LostReason::Released => "released",
            LostReason::Shutdown => "shutdown",
            LostReason::Abandoned => "abandoned",
        }
    }
}

/// The holder's view of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaseState {
    /// The last acquire or renewal was confirmed by the store and the local deadline is ahead.
    Held,
    /// A renewal failed for a transient reason; it may or may not have been applied. Renewal is
    /// retried until the local deadline, then the state becomes `Lost`.
    Unknown,
    /// The lease can no longer be trusted. Final.
    Lost(LostReason),
}
