//! The recording: every answered store operation as a [`LockEvent`], and one [`Record`] per
//! lease, kept up to date by [`Log::apply`].

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use locks_core::{AcquireResult, Holders, LeaseKind, LockKey, OwnerToken};
use tokio::sync::watch;
use tokio::time::Instant;

use super::event::{EndReason, Holder, Holding, LockEvent, LockEventKind};
use super::probe::ProbeHit;
use super::{rel, short};

/// A point in the recording: tokio time, then sequence number. Sequence 0 (never given to an
/// event) stands for "at this instant, before any event": where a ttl runs out, since a store
/// treats a lease as expired at its expiry instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Point {
    pub(super) at: Instant,
    pub(super) seq: u64,
}

/// One lease as the recorder knows it.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) key: String,
    pub(super) full: String,
    pub(super) kind: LeaseKind,
    pub(super) owner: OwnerToken,
    pub(super) fence: u64,
    pub(super) elsewhere: bool,
    pub(super) start: Point,
    /// Estimated store expiry; `None` once a release proved the lease lived until then.
    expires: Option<Instant>,
    /// An observed end.
    end: Option<(Point, EndReason)>,
}

impl Record {
    pub(super) fn matches(&self, key: &str) -> bool {
        self.key == key || self.full == key
    }

    fn open(&self) -> bool {
        self.end.is_none()
    }

    /// Where the lease stopped being held: the observed end or the ttl, whichever is first.
    /// `None`: not ended and no expiry known.
    pub(super) fn end_point(&self) -> Option<(Point, EndReason)> {
        let expiry = self
            .expires
            .map(|at| (Point { at, seq: 0 }, EndReason::Expired));
        match (self.end, expiry) {
            (Some(end), Some(exp)) => Some(if exp.0 < end.0 { exp } else { end }),
            (end, exp) => end.or(exp),
        }
    }

    pub(super) fn live_at(&self, p: Point) -> bool {
        self.start < p && self.end_point().is_none_or(|(end, _)| p < end)
    }

    pub(super) fn holder(&self) -> Holder {
        Holder {
            owner: self.owner,
            fence: self.fence,
            lease_kind: self.kind,
            elsewhere: self.elsewhere,
        }
    }

    pub(super) fn describe(&self, origin: Instant) -> String {
        format!(
            "`{}` ({} owner {}{}, fence {}) acquired at {} (#{})",
            self.key,
            self.kind,
            short(self.owner),
            if self.elsewhere { " [elsewhere]" } else { "" },
            self.fence,
            rel(origin, self.start.at),
            self.start.seq
        )
    }

    pub(super) fn to_holding(&self, now: Point) -> Holding {
        Holding {
            key: self.key.clone(),
            full_key: self.full.clone(),
            lease_kind: self.kind,
            owner: self.owner,
            fence: self.fence,
            elsewhere: self.elsewhere,
            acquired_at: self.start.at,
            acquired_seq: self.start.seq,
            ended: self
                .end_point()
                .filter(|(end, _)| *end < now)
                .map(|(end, reason)| (end.at, reason)),
        }
    }
}

/// Whether a grant of `grant` to one owner proves that another owner's `other` lease is gone.
fn excludes(grant: LeaseKind, other: LeaseKind) -> bool {
    matches!(
        (grant, other),
        (LeaseKind::Mutex, LeaseKind::Mutex)
            | (LeaseKind::FairMutex, LeaseKind::FairMutex)
            | (LeaseKind::Write, LeaseKind::Read | LeaseKind::Write)
            | (LeaseKind::Read, LeaseKind::Write)
    )
}

/// Whether `force_release(kind)` deletes a lease of kind `lease`: the same side, and for a
/// read-write lock both sides.
fn forced(kind: LeaseKind, lease: LeaseKind) -> bool {
    match kind {
        LeaseKind::Read | LeaseKind::Write => matches!(lease, LeaseKind::Read | LeaseKind::Write),
        _ => Holders::same_side(kind, lease),
    }
}

/// A store answer to note, with what the call asked.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Acquire {
        token: OwnerToken,
        ttl: Duration,
        result: AcquireResult,
    },
    Extend {
        token: OwnerToken,
        ttl: Duration,
        ok: bool,
    },
    Release {
        token: OwnerToken,
        ok: bool,
    },
    /// Every lease of the kind deleted, by the code under test or by the test (`reason`).
    Force {
        had: bool,
        reason: EndReason,
    },
}

/// The recording, behind [`State`]'s mutex.
#[derive(Debug)]
pub(super) struct Log {
    pub(super) origin: Instant,
    seq: u64,
    pub(super) events: Vec<LockEvent>,
    pub(super) records: Vec<Record>,
    pub(super) hits: Vec<ProbeHit>,
    pub(super) elsewhere: HashSet<OwnerToken>,
}

impl Log {
    fn new() -> Self {
        Log {
            origin: Instant::now(),
            seq: 0,
            events: Vec::new(),
            records: Vec::new(),
            hits: Vec::new(),
            elsewhere: HashSet::new(),
        }
    }

    pub(super) fn next_point(&mut self) -> Point {
        self.seq += 1;
        Point {
            at: Instant::now(),
            seq: self.seq,
        }
    }

    /// Now, after every recorded event.
    pub(super) fn now_point(&self) -> Point {
        Point {
            at: Instant::now(),
            seq: self.seq + 1,
        }
    }

    /// The leases of `key` (name or full key) held at `p`.
    pub(super) fn live(&self, key: &str, p: Point) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(move |r| r.matches(key) && r.live_at(p))
    }

    /// Note the store's answer to an operation on `key` and `kind` sent at `sent`.
    pub(super) fn apply(&mut self, key: &LockKey, kind: LeaseKind, sent: Instant, op: Op) {
        let p = self.next_point();
        let (owner, fence, event) = match op {
            Op::Acquire { token, ttl, result } => match result {
                AcquireResult::Acquired(lease) => {
                    self.granted(p, key, kind, token, lease.fence, sent.checked_add(ttl));
                    (Some(token), Some(lease.fence), LockEventKind::Acquired)
                }
                AcquireResult::Held { remaining } => {
                    (Some(token), None, LockEventKind::Contended { remaining })
                }
            },
            Op::Extend { token, ttl, ok } => {
                let fence = self.change_latest(key, kind, token, |r| {
                    if ok {
                        r.expires = sent.checked_add(ttl);
                    } else {
                        r.end = Some((p, EndReason::Expired));
                    }
                });
                let event = if ok {
                    LockEventKind::Extended { ttl }
                } else {
                    LockEventKind::LostExtend
                };
                (Some(token), fence, event)
            }
            Op::Release { token, ok } => {
                let fence = self.change_latest(key, kind, token, |r| {
                    if ok {
                        // The store held it until now, whatever the ttl estimate said.
                        r.expires = None;
                        r.end = Some((p, EndReason::Released));
                    } else {
                        r.end = Some((p, EndReason::Expired));
                    }
                });
                let event = if ok {
                    LockEventKind::Released
                } else {
                    LockEventKind::ReleaseRefused
                };
                (Some(token), fence, event)
            }
            Op::Force { had, reason } => {
                let evicted = self.forced(p, key, kind, reason);
                let event = match reason {
                    EndReason::Revoked => LockEventKind::Revoked { had_lease: had },
                    _ => LockEventKind::ForceReleased { had_lease: had },
                };
                (evicted.map(|(o, _)| o), evicted.map(|(_, f)| f), event)
            }
        };
        let elsewhere = owner.is_some_and(|o| self.elsewhere.contains(&o));
        self.events.push(LockEvent {
            seq: p.seq,
            at: p.at,
            key: key.name().to_owned(),
            full_key: key.full(),
            lease_kind: kind,
            owner,
            fence,
            elsewhere,
            kind: event,
        });
    }

    /// A grant: the same lease confirmed again (an idempotent retry), or a new lease, which
    /// proves that the leases it excludes are gone.
    fn granted(
        &mut self,
        p: Point,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        fence: u64,
        expires: Option<Instant>,
    ) {
        let full = key.full();
        let same = self.records.iter_mut().rev().find(|r| {
            r.open()
                && r.full == full
                && Holders::same_side(r.kind, kind)
                && r.owner == token
                && r.fence == fence
        });
        if let Some(r) = same {
            r.expires = expires;
            return;
        }
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.open() && r.full == full)
        {
            let gone = if r.owner == token {
                Holders::same_side(r.kind, kind)
            } else {
                excludes(kind, r.kind)
            };
            if gone {
                r.end = Some((p, EndReason::Expired));
            }
        }
        self.records.push(Record {
            key: key.name().to_owned(),
            full,
            kind,
            owner: token,
            fence,
            elsewhere: self.elsewhere.contains(&token),
            start: p,
            expires,
            end: None,
        });
    }

    /// Apply `change` to `token`'s latest lease of `kind` on `key` if it is still open, and
    /// return that lease's fence (a writer that only waited has no lease).
    fn change_latest(
        &mut self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        change: impl FnOnce(&mut Record),
    ) -> Option<u64> {
        let full = key.full();
        let r = self
            .records
            .iter_mut()
            .rev()
            .find(|r| r.full == full && r.owner == token && Holders::same_side(r.kind, kind))?;
        if r.open() {
            change(r);
        }
        Some(r.fence)
    }

    /// End every open lease that `force_release(kind)` deletes; the evicted holder, when
    /// exactly one was live.
    fn forced(
        &mut self,
        p: Point,
        key: &LockKey,
        kind: LeaseKind,
        reason: EndReason,
    ) -> Option<(OwnerToken, u64)> {
        let full = key.full();
        let mut evicted = Vec::new();
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.open() && r.full == full && forced(kind, r.kind))
        {
            if r.live_at(p) {
                evicted.push((r.owner, r.fence));
            }
            r.end = Some((p, reason));
        }
        match evicted.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// Shared by every clone of a [`RecordingBackend`](super::RecordingBackend), its probes and
/// its holders.
#[derive(Debug)]
pub(super) struct State {
    log: Mutex<Log>,
    pub(super) changes: watch::Sender<u64>,
}

impl State {
    pub(super) fn new() -> Self {
        State {
            log: Mutex::new(Log::new()),
            changes: watch::Sender::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record under the lock, then wake
    /// [`RecordingBackend::wait_until`](super::RecordingBackend::wait_until).
    pub(super) fn record<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let out = f(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        out
    }
}
