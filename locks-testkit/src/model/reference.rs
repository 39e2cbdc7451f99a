//! The reference model: what the store must answer to each [`Op`], in a few lines of
//! obviously correct code.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::ops::{Kind, Op};

/// A lease as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelLease {
    /// The owner index.
    pub owner: u8,
    /// When the store expires it, on the model's clock.
    pub expires_at: Duration,
    /// Its fence, once observed (see [`Model::observe_fence`]).
    pub fence: Option<u64>,
}

/// What the fence of a successful acquire must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceRule {
    /// The caller already held the lease: the same fence again.
    Same(u64),
    /// A new holder: strictly greater than the key's last fence, whatever its kind (any fence
    /// if `None`: the key never had one). Not "last + 1": Redis seeds fences from the
    /// server's time.
    Above(Option<u64>),
}

/// One lease that [`LockBackend::holders`](locks_core::LockBackend::holders) must list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedLease {
    /// The holder's owner index.
    pub owner: u8,
    /// The remaining ttl (within the clock's tolerance).
    pub remaining: Duration,
    /// The holder's fence; `None` if never observed (then any fence is accepted).
    pub fence: Option<u64>,
}

/// What the model says a step must answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// `Ok(Acquired)` with a fence obeying the rule.
    Acquired(FenceRule),
    /// `Ok(Held)`: every slot is taken. `remaining` is the time until the first holder's
    /// lease runs out (within the clock's tolerance); `None` only when nobody holds one (a
    /// semaphore of 0).
    Held {
        /// The soonest remaining ttl among the holders.
        remaining: Option<Duration>,
    },
    /// `Ok(answer)` from release, extend or force-release.
    Answer(bool),
    /// `Ok(holders)`: exactly these leases of `kind`, oldest first, and no waiting writer.
    Holders {
        /// The kind asked for (each lease must be of its side: permit limits may differ).
        kind: Kind,
        /// The live leases, in the order they were acquired.
        leases: Vec<ExpectedLease>,
    },
    /// A transient error, and nothing changed in the store (an injected fault).
    Transient,
    /// A permanent error, and nothing changed: an acquire with a token retired by a release
    /// that found nothing (see [`LockBackend::release`](locks_core::LockBackend::release)).
    Retired,
    /// Not a backend call ([`Op::Advance`], [`Op::Fault`]).
    Nothing,
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Acquired(FenceRule::Same(fence)) => write!(f, "Ok(Acquired(fence {fence}))"),
            Expected::Acquired(FenceRule::Above(Some(last))) => {
                write!(f, "Ok(Acquired(fence > {last}))")
            }
            Expected::Acquired(FenceRule::Above(None)) => write!(f, "Ok(Acquired(any fence))"),
            Expected::Held {
                remaining: Some(remaining),
            } => write!(f, "Ok(Held(remaining {remaining:?}))"),
            Expected::Held { remaining: None } => write!(f, "Ok(Held(remaining unknown))"),
            Expected::Answer(answer) => write!(f, "Ok({answer})"),
            Expected::Holders { kind, leases } => {
                write!(f, "Ok([")?;
                for (i, lease) in leases.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(
                        f,
                        "{sep}o{} {} remaining {:?} fence ",
                        lease.owner,
                        kind.lease_kind().label(),
                        lease.remaining
                    )?;
                    match lease.fence {
                        Some(fence) => write!(f, "{fence}")?,
                        None => write!(f, "any")?,
                    }
                }
                write!(f, "])")
            }
            Expected::Transient => write!(f, "Err(transient)"),
            Expected::Retired => write!(f, "Err(permanent: retired token)"),
            Expected::Nothing => write!(f, "(no call)"),
        }
    }
}

/// The two locks the model keeps under one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    Mutex,
    Permits,
}

fn side(kind: Kind) -> Side {
    match kind {
        Kind::Mutex => Side::Mutex,
        Kind::Permit { .. } => Side::Permits,
    }
}

/// The reference model of the lease contract for the mutex and the semaphore permit: the
/// leases per key and kind (owner, expiry, in the order they were taken), the last fence per
/// key, and the number of calls still to fail.
///
/// A mutex is a semaphore of one, so one rule serves both kinds. [`apply`](Model::apply) says
/// what a step must answer and updates the state as the store must. New fences cannot be
/// predicted (only bounded), so after a successful acquire the caller tells the model the
/// fence it saw with [`observe_fence`](Model::observe_fence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    leases: BTreeMap<(u8, Side), Vec<ModelLease>>,
    last_fence: BTreeMap<u8, u64>,
    failing: u32,
    /// `(owner, key)` whose token a release that found nothing retired, and until when.
    retired: BTreeMap<(u8, u8), Duration>,
}

/// How long a token released while it held nothing stays retired (both backends).
pub(crate) const RETIRED_FOR: Duration = Duration::from_secs(120);

impl Model {
    /// An empty store: no leases, no fences, no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live leases of `key`'s `kind` at `now`, oldest first (at most one for a mutex).
    pub fn leases(&self, key: u8, kind: Kind, now: Duration) -> Vec<ModelLease> {
        self.leases
            .get(&(key, side(kind)))
            .into_iter()
            .flatten()
            .filter(|l| l.expires_at > now)
            .copied()
            .collect()
    }

    /// The last fence observed for `key` (any kind).
    pub fn last_fence(&self, key: u8) -> Option<u64> {
        self.last_fence.get(&key).copied()
    }

    /// Apply `op` at store time `now` (time since the start of the script): the answer the
    /// store must give, with the state updated as the store must update it.
    ///
    /// - A pending fault fails any backend call with a transient error and changes nothing.
    /// - A lease expires when its ttl has fully passed (`expires_at <= now`).
    /// - Acquire: the caller holds one → ttl reset, same fence; fewer live leases than the
    ///   kind's limit (1 for a mutex) → a new lease with a fence above every earlier one of
    ///   the key; else `Held` with the soonest remaining ttl (a lowered limit revokes nobody).
    /// - Release and extend act only on the caller's own lease; force-release on every live
    ///   lease of the kind. The mutex and the permits of a key are independent.
    /// - A release that finds nothing of the caller's retires the caller's token under the key
    ///   (every kind) for 120 s: its acquires are refused with a permanent error.
    pub fn apply(&mut self, op: &Op, now: Duration) -> Expected {
        match *op {
            Op::Advance { .. } => return Expected::Nothing,
            Op::Fault { ops } => {
                self.failing = ops;
                return Expected::Nothing;
            }
            _ => {}
        }
        if self.failing > 0 {
            self.failing -= 1;
            return Expected::Transient;
        }
        for held in self.leases.values_mut() {
            held.retain(|l| l.expires_at > now);
        }
        self.retired.retain(|_, until| *until > now);
        match *op {
            Op::TryAcquire { owner, key, .. } if self.retired.contains_key(&(owner, key)) => {
                Expected::Retired
            }
            Op::TryAcquire {
                owner,
                key,
                kind,
                ttl_ms,
            } => {
                let expires_at = now.saturating_add(Duration::from_millis(ttl_ms));
                let last = self.last_fence(key);
                let held = self.leases.entry((key, side(kind))).or_default();
                if let Some(lease) = held.iter_mut().find(|l| l.owner == owner) {
                    lease.expires_at = expires_at;
                    return Expected::Acquired(match lease.fence {
                        Some(fence) => FenceRule::Same(fence),
                        None => FenceRule::Above(last),
                    });
                }
                if held.len() >= usize::try_from(kind.limit()).unwrap_or(usize::MAX) {
                    return Expected::Held {
                        remaining: held.iter().map(|l| l.expires_at.saturating_sub(now)).min(),
                    };
                }
                held.push(ModelLease {
                    owner,
                    expires_at,
                    fence: None,
                });
                Expected::Acquired(FenceRule::Above(last))
            }
            Op::Release { owner, key, kind } => {
                let held = self.leases.entry((key, side(kind))).or_default();
                let before = held.len();
                held.retain(|l| l.owner != owner);
                let released = held.len() < before;
                if !released {
                    self.retired
                        .insert((owner, key), now.saturating_add(RETIRED_FOR));
                }
                Expected::Answer(released)
            }
            Op::Extend {
                owner,
                key,
                kind,
                ttl_ms,
            } => {
                let held = self.leases.entry((key, side(kind))).or_default();
                match held.iter_mut().find(|l| l.owner == owner) {
                    Some(lease) => {
                        lease.expires_at = now.saturating_add(Duration::from_millis(ttl_ms));
                        Expected::Answer(true)
                    }
                    None => Expected::Answer(false),
                }
            }
            Op::ForceRelease { key, kind } => Expected::Answer(
                self.leases
                    .remove(&(key, side(kind)))
                    .is_some_and(|held| !held.is_empty()),
            ),
            Op::Holders { key, kind } => Expected::Holders {
                kind,
                leases: self
                    .leases(key, kind, now)
                    .into_iter()
                    .map(|l| ExpectedLease {
                        owner: l.owner,
                        remaining: l.expires_at.saturating_sub(now),
                        fence: l.fence,
                    })
                    .collect(),
            },
            Op::Advance { .. } | Op::Fault { .. } => Expected::Nothing,
        }
    }

    /// Record the fence the store gave `owner` for `key`'s `kind` (after an acquire that
    /// matched [`Expected::Acquired`]).
    pub fn observe_fence(&mut self, key: u8, kind: Kind, owner: u8, fence: u64) {
        if let Some(lease) = self
            .leases
            .get_mut(&(key, side(kind)))
            .and_then(|held| held.iter_mut().find(|l| l.owner == owner))
        {
            lease.fence = Some(fence);
        }
        let last = self.last_fence.entry(key).or_insert(fence);
        *last = (*last).max(fence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn acquire(owner: u8, kind: Kind) -> Op {
        Op::TryAcquire {
            owner,
            key: 0,
            kind,
            ttl_ms: 100,
        }
    }

    #[test]
    fn model_expires_at_ttl_and_faults_change_nothing() {
        let mut m = Model::new();
        let mutex = Kind::Mutex;
        assert_eq!(
            m.apply(&acquire(0, mutex), ms(0)),
            Expected::Acquired(FenceRule::Above(None))
        );
        m.observe_fence(0, mutex, 0, 7);
        assert_eq!(m.apply(&Op::Fault { ops: 1 }, ms(0)), Expected::Nothing);
        let release = Op::Release {
            owner: 0,
            key: 0,
            kind: mutex,
        };
        assert_eq!(m.apply(&release, ms(0)), Expected::Transient);
        assert_eq!(
            m.apply(&acquire(1, mutex), ms(99)),
            Expected::Held {
                remaining: Some(ms(1))
            }
        );
        assert_eq!(
            m.apply(&acquire(0, mutex), ms(99)),
            Expected::Acquired(FenceRule::Same(7))
        );
        assert_eq!(
            m.apply(&acquire(1, mutex), ms(199)),
            Expected::Acquired(FenceRule::Above(Some(7)))
        );
    }

    #[test]
    fn permits_fill_up_share_fences_and_a_lower_limit_revokes_nobody() {
        let mut m = Model::new();
        let two = Kind::Permit { limit: 2 };
        assert_eq!(
            m.apply(&acquire(0, Kind::Mutex), ms(0)),
            Expected::Acquired(FenceRule::Above(None))
        );
        m.observe_fence(0, Kind::Mutex, 0, 1);
        // The mutex and the permits are independent, but share the key's fences.
        assert_eq!(
            m.apply(&acquire(1, two), ms(10)),
            Expected::Acquired(FenceRule::Above(Some(1)))
        );
        m.observe_fence(0, two, 1, 2);
        assert_eq!(
            m.apply(&acquire(2, two), ms(20)),
            Expected::Acquired(FenceRule::Above(Some(2)))
        );
        m.observe_fence(0, two, 2, 3);
        assert_eq!(
            m.apply(&acquire(0, two), ms(30)),
            Expected::Held {
                remaining: Some(ms(80))
            }
        );
        // A lower limit refuses newcomers, keeps both holders, and re-grants a holder.
        let one = Kind::Permit { limit: 1 };
        assert_eq!(
            m.apply(&acquire(2, one), ms(40)),
            Expected::Acquired(FenceRule::Same(3))
        );
        assert_eq!(
            m.apply(&Op::Holders { key: 0, kind: one }, ms(50)),
            Expected::Holders {
                kind: one,
                leases: vec![
                    ExpectedLease {
                        owner: 1,
                        remaining: ms(60),
                        fence: Some(2)
                    },
                    ExpectedLease {
                        owner: 2,
                        remaining: ms(90),
                        fence: Some(3)
                    },
                ],
            }
        );
        let force = Op::ForceRelease { key: 0, kind: two };
        assert_eq!(m.apply(&force, ms(50)), Expected::Answer(true));
        assert_eq!(m.apply(&force, ms(50)), Expected::Answer(false));
        assert_eq!(m.leases(0, Kind::Mutex, ms(50)).len(), 1);
    }
}
