//! [`Op`], one step of a script, and [`Kind`], the lease a step acts on.

use std::fmt;
use std::ops::RangeInclusive;

use locks_core::LeaseKind;

/// Number of distinct owners the strategies use (`o0`, `o1`, `o2`).
pub const OWNERS: u8 = 3;

/// Number of distinct keys the strategies use (`k0`, `k1`).
pub const KEYS: u8 = 2;

/// The largest semaphore limit the strategies use: limits run `1..=MAX_PERMITS`, so that the
/// [`OWNERS`] often fill a semaphore, and a lower limit often meets more live permits.
pub const MAX_PERMITS: u32 = 3;

/// The ttls (in ms) of [`ops`](super::ops()): short, and straddled by [`Op::Advance`] steps.
pub const TTL_MS: RangeInclusive<u64> = 50..=2000;

/// The ttls (in ms) of [`real_time_ops`](super::real_time_ops()): long enough that nothing
/// expires during a case.
pub const REAL_TIME_TTL_MS: RangeInclusive<u64> = 10_000..=60_000;

/// The largest number of consecutive failing calls an [`Op::Fault`] asks for.
pub const MAX_FAULTS: u32 = 3;

/// The lease a step acts on: the model covers the mutex and the semaphore permit. Under one
/// key they are two independent locks (a force-release of the mutex leaves the permits), and
/// they share the key's fences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// [`LeaseKind::Mutex`]: one holder.
    Mutex,
    /// [`LeaseKind::Permit`]: at most `limit` holders. The limit is sent with every call; it
    /// matters to acquires only (a lower limit refuses new permits, never revokes).
    Permit {
        /// The semaphore's limit (at least 1).
        limit: u32,
    },
}

impl Kind {
    /// The kind the backend is called with.
    pub fn lease_kind(self) -> LeaseKind {
        match self {
            Kind::Mutex => LeaseKind::Mutex,
            Kind::Permit { limit } => LeaseKind::Permit { limit },
        }
    }

    /// How many holders an acquire of this kind admits (1 for the mutex).
    pub fn limit(self) -> u32 {
        match self {
            Kind::Mutex => 1,
            Kind::Permit { limit } => limit,
        }
    }
}

/// One step of a script. Owners and keys are small indexes (`o0`..`o2`, `k0`, `k1`);
/// [`check`](super::check) maps them to fixed owner tokens and to keys unique to the run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`LockBackend::try_acquire`](locks_core::LockBackend::try_acquire) of `key`'s `kind` by
    /// `owner` for `ttl_ms`.
    TryAcquire {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
        /// The lease kind.
        kind: Kind,
        /// The ttl in milliseconds.
        ttl_ms: u64,
    },
    /// [`LockBackend::release`](locks_core::LockBackend::release) of `key`'s `kind` by `owner`.
    Release {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
        /// The lease kind.
        kind: Kind,
    },
    /// [`LockBackend::extend`](locks_core::LockBackend::extend) of `key`'s `kind` by `owner`
    /// to `ttl_ms`.
    Extend {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
        /// The lease kind.
        kind: Kind,
        /// The new ttl in milliseconds.
        ttl_ms: u64,
    },
    /// [`LockBackend::force_release`](locks_core::LockBackend::force_release) of `key`'s
    /// `kind`.
    ForceRelease {
        /// The key index.
        key: u8,
        /// The lease kind.
        kind: Kind,
    },
    /// [`LockBackend::holders`](locks_core::LockBackend::holders) of `key`'s `kind`.
    Holders {
        /// The key index.
        key: u8,
        /// The lease kind.
        kind: Kind,
    },
    /// Move the store's clock forward (through the [`ModelClock`](super::ModelClock)); no
    /// backend call.
    Advance {
        /// How far, in milliseconds.
        ms: u64,
    },
    /// The next `ops` backend calls fail with a transient error before reaching the store
    /// ([`FaultyBackend::fail_next`](crate::faulty::FaultyBackend::fail_next): replaces any
    /// count still pending); no backend call.
    Fault {
        /// How many calls fail.
        ops: u32,
    },
}

/// `k0` for the mutex, `k0 permit/2` for a permit of a semaphore of 2.
struct Target {
    key: u8,
    kind: Kind,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Mutex => write!(f, "k{}", self.key),
            Kind::Permit { limit } => write!(f, "k{} permit/{limit}", self.key),
        }
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |key, kind| Target { key, kind };
        match *self {
            Op::TryAcquire {
                owner,
                key,
                kind,
                ttl_ms,
            } => write!(
                f,
                "try_acquire(o{owner}, {}, ttl={ttl_ms}ms)",
                on(key, kind)
            ),
            Op::Release { owner, key, kind } => write!(f, "release(o{owner}, {})", on(key, kind)),
            Op::Extend {
                owner,
                key,
                kind,
                ttl_ms,
            } => write!(f, "extend(o{owner}, {}, ttl={ttl_ms}ms)", on(key, kind)),
            Op::ForceRelease { key, kind } => write!(f, "force_release({})", on(key, kind)),
            Op::Holders { key, kind } => write!(f, "holders({})", on(key, kind)),
            Op::Advance { ms } => write!(f, "advance({ms}ms)"),
            Op::Fault { ops } => write!(f, "fail_next({ops})"),
        }
    }
}

/// A script as numbered lines (`  0: try_acquire(o0, k0, ttl=50ms)`), for failure reports.
pub fn script(ops: &[Op]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, op)| format!("  {i}: {op:?}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_as_a_script() {
        let ops = [
            Op::TryAcquire {
                owner: 0,
                key: 1,
                kind: Kind::Mutex,
                ttl_ms: 50,
            },
            Op::Release {
                owner: 2,
                key: 1,
                kind: Kind::Mutex,
            },
            Op::Holders {
                key: 0,
                kind: Kind::Permit { limit: 2 },
            },
            Op::Advance { ms: 300 },
            Op::Fault { ops: 2 },
        ];
        assert_eq!(
            format!("{ops:?}"),
            "[try_acquire(o0, k1, ttl=50ms), release(o2, k1), holders(k0 permit/2), \
             advance(300ms), fail_next(2)]"
        );
        assert_eq!(
            script(&ops[..2]),
            "  0: try_acquire(o0, k1, ttl=50ms)\n  1: release(o2, k1)\n"
        );
    }

    #[test]
    fn kinds_map_to_lease_kinds() {
        assert_eq!(Kind::Mutex.lease_kind(), LeaseKind::Mutex);
        assert_eq!(Kind::Mutex.limit(), 1);
        let permit = Kind::Permit { limit: 3 };
        assert_eq!(permit.lease_kind(), LeaseKind::Permit { limit: 3 });
        assert_eq!(permit.limit(), 3);
    }
}
