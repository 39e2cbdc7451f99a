//! [`RecordingBackend`]: a backend wrapper that records every lock event, so a downstream
//! crate can assert in its own tests *how* its code locked: that a side effect ran under the
//! lock, that every lock was released, that two keys were never held together, that keys
//! were taken in order. It also stages the conditions such code must survive: a key held by
//! another owner ([`hold_elsewhere`](RecordingBackend::hold_elsewhere)), a lease the store
//! drops mid-operation ([`revoke`](RecordingBackend::revoke)) and transient store failures
//! ([`fail_next`](RecordingBackend::fail_next)).
//!
//! # What is recorded
//!
//! Every operation that reached the store and got an answer, in the order the answers came,
//! each with a sequence number (strictly increasing, shared with probe hits) and the tokio
//! [`Instant`] it was recorded at. From those events the recorder keeps one [`Holding`] per
//! lease: from the grant to the release, revoke or force-release, or to the end of its ttl
//! (acquire or last renewal sent + ttl, by tokio time) when that comes first. Operations that
//! failed (for instance through [`fail_next`](RecordingBackend::fail_next)) are not recorded:
//! they never reached the store.
//!
//! Expiry is estimated on tokio's clock, which is the memory backend's default clock. A
//! lease the store expires by another clock (a [`ManualClock`](locks_core::ManualClock),
//! `MemoryBackend::expire_now`) ends, as far as the recorder knows, when the store next shows
//! it is gone: a refused renewal or release, or another owner's grant.
//!
//! Keys are given as the name passed to the [`LockService`] (`"payment:42"`) or the full key
//! with the prefix (`"_lock:payment:42"`).

use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::key::DEFAULT_PREFIX;
use locks_core::{
    AcquireResult, BackendError, LeaseInfo, LockBackend, LockError, LockKey, LockService,
    LockServiceBuilder, OwnerToken, ReleaseListener, RwInfo,
};
use locks_memory::MemoryBackend;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::faulty::FaultyBackend;

/// How many timeline lines an assertion message shows (the most recent ones).
const TIMELINE_LINES: usize = 40;

/// Which primitive a lock event or holding concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockMode {
    /// A mutex lease ([`LockService::acquire`] and friends).
    Mutex,
    /// A semaphore permit.
    Permit,
    /// The read side of a read-write lock.
    Read,
    /// The write side of a read-write lock.
    Write,
}

impl LockMode {
    fn label(self) -> &'static str {
        match self {
            LockMode::Mutex => "mutex",
            LockMode::Permit => "permit",
            LockMode::Read => "read",
            LockMode::Write => "write",
        }
    }

    /// Whether a grant in mode `self` proves that another owner's `other` lease is gone.
    fn excludes(self, other: LockMode) -> bool {
        matches!(
            (self, other),
            (LockMode::Mutex, LockMode::Mutex)
                | (LockMode::Write, LockMode::Read | LockMode::Write)
                | (LockMode::Read, LockMode::Write)
        )
    }
}

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
    /// A release the store refused: the owner no longer held the lease (expired or taken).
    ReleaseRefused,
    /// A renewal or extend the store confirmed.
    Extended {
        /// The new ttl.
        ttl: Duration,
    },
    /// A renewal or extend the store refused: the owner had lost the lease.
    LostExtend,
    /// The lease was deleted whoever held it, through the backend's `force_release` (by the
    /// code under test or by [`LockService::force_release`]).
    ForceReleased {
        /// Whether there was a lease to delete.
        had_lease: bool,
    },
    /// The test dropped the lease with [`RecordingBackend::revoke`].
    Revoked {
        /// Whether there was a lease to delete.
        had_lease: bool,
    },
}

impl LockEventKind {
    fn label(self) -> String {
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
                format!(
                    "force-released{}",
                    if had_lease { "" } else { " (no lease)" }
                )
            }
            LockEventKind::Revoked { had_lease } => {
                format!(
                    "revoked by the test{}",
                    if had_lease { "" } else { " (no lease)" }
                )
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
    /// Which primitive.
    pub mode: LockMode,
    /// The owner token of the call; for a force-release or revoke, the evicted holder's (when
    /// the recorder knew one).
    pub owner: Option<OwnerToken>,
    /// The fence of the lease concerned, when known.
    pub fence: Option<u64>,
    /// Whether the owner is a [`hold_elsewhere`](RecordingBackend::hold_elsewhere) holder.
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
    /// The test revoked it ([`RecordingBackend::revoke`]).
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
    /// Which primitive.
    pub mode: LockMode,
    /// The holder.
    pub owner: OwnerToken,
    /// The fence the store gave.
    pub fence: u64,
    /// Whether the holder is a [`hold_elsewhere`](RecordingBackend::hold_elsewhere) holder.
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
    /// Which primitive it holds.
    pub mode: LockMode,
    /// Whether it is a [`hold_elsewhere`](RecordingBackend::hold_elsewhere) holder (not the
    /// code under test).
    pub elsewhere: bool,
}

/// One [`Probe::hit`]: a side effect and who held its key at that instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeHit {
    /// Position in the recording (shared with lock events).
    pub seq: u64,
    /// When the hit happened (tokio time).
    pub at: Instant,
    /// The probe's key, as given to [`RecordingBackend::probe`].
    pub key: String,
    /// The fence the side effect carried, for [`Probe::hit_with_fence`].
    pub fence: Option<u64>,
    /// Who held the key at that instant: the code under test's holder when there was one
    /// (with the matching fence first), else the other holder. `None`: nobody.
    pub holder: Option<Holder>,
}

impl ProbeHit {
    /// Whether the hit ran under the lock: the key was held by the code under test (not by a
    /// [`hold_elsewhere`](RecordingBackend::hold_elsewhere) holder) and, when the hit carried a
    /// fence, by the lease with that fence.
    pub fn under_lock(&self) -> bool {
        self.holder
            .is_some_and(|h| !h.elsewhere && self.fence.is_none_or(|f| f == h.fence))
    }

    fn problem(&self) -> Option<String> {
        match (self.holder, self.fence) {
            (None, _) => Some(format!("`{}` was not held", self.key)),
            (Some(h), _) if h.elsewhere => Some(format!(
                "`{}` was held only by another owner ({}, set up with hold_elsewhere)",
                self.key,
                short(h.owner)
            )),
            (Some(h), Some(f)) if f != h.fence => Some(format!(
                "`{}` was held by {} with fence {}, but the side effect carried fence {f}",
                self.key,
                short(h.owner),
                h.fence
            )),
            _ => None,
        }
    }
}

/// A point in the recording: tokio time, then sequence number. Sequence 0 (never given to an
/// event) stands for "at this instant, before any event": where a ttl runs out, since a store
/// treats a lease as expired at its expiry instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Point {
    at: Instant,
    seq: u64,
}

#[derive(Debug, Clone)]
struct Record {
    key: String,
    full: String,
    mode: LockMode,
    owner: OwnerToken,
    fence: u64,
    elsewhere: bool,
    start: Point,
    /// Estimated store expiry; `None` once a release proved the lease lived until then.
    expires: Option<Instant>,
    /// An observed end.
    end: Option<(Point, EndReason)>,
}

impl Record {
    fn matches(&self, key: &str) -> bool {
        self.key == key || self.full == key
    }

    fn open(&self) -> bool {
        self.end.is_none()
    }

    /// Where the lease stopped being held: the observed end or the ttl, whichever is first.
    /// `None`: not ended and no expiry known.
    fn end_point(&self) -> Option<(Point, EndReason)> {
        let expiry = self
            .expires
            .map(|at| (Point { at, seq: 0 }, EndReason::Expired));
        match (self.end, expiry) {
            (Some(end), Some(exp)) => Some(if exp.0 < end.0 { exp } else { end }),
            (end, exp) => end.or(exp),
        }
    }

    fn live_at(&self, p: Point) -> bool {
        self.start < p && self.end_point().is_none_or(|(end, _)| p < end)
    }

    fn holder(&self) -> Holder {
        Holder {
            owner: self.owner,
            fence: self.fence,
            mode: self.mode,
            elsewhere: self.elsewhere,
        }
    }

    fn describe(&self, origin: Instant) -> String {
        format!(
            "`{}` ({} owner {}{}, fence {}) acquired at {} (#{})",
            self.key,
            self.mode.label(),
            short(self.owner),
            if self.elsewhere { " [elsewhere]" } else { "" },
            self.fence,
            rel(origin, self.start.at),
            self.start.seq
        )
    }

    fn to_holding(&self, now: Point) -> Holding {
        Holding {
            key: self.key.clone(),
            full_key: self.full.clone(),
            mode: self.mode,
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

fn short(token: OwnerToken) -> String {
    token.to_hyphenated().chars().take(8).collect()
}

fn rel(origin: Instant, at: Instant) -> String {
    format!("t+{:?}", at.saturating_duration_since(origin))
}

/// The recording, behind one mutex.
#[derive(Debug)]
struct Log {
    origin: Instant,
    seq: u64,
    events: Vec<LockEvent>,
    records: Vec<Record>,
    hits: Vec<ProbeHit>,
    elsewhere: HashSet<OwnerToken>,
}

impl Log {
    fn next_point(&mut self) -> Point {
        self.seq += 1;
        Point {
            at: Instant::now(),
            seq: self.seq,
        }
    }

    /// Now, after every recorded event.
    fn now_point(&self) -> Point {
        Point {
            at: Instant::now(),
            seq: self.seq + 1,
        }
    }

    fn push_event(
        &mut self,
        p: Point,
        key: &LockKey,
        mode: LockMode,
        owner: Option<OwnerToken>,
        fence: Option<u64>,
        kind: LockEventKind,
    ) {
        let elsewhere = owner.is_some_and(|o| self.elsewhere.contains(&o));
        self.events.push(LockEvent {
            seq: p.seq,
            at: p.at,
            key: key.name().to_owned(),
            full_key: key.full(),
            mode,
            owner,
            fence,
            elsewhere,
            kind,
        });
    }

    fn on_acquire(
        &mut self,
        key: &LockKey,
        mode: LockMode,
        token: OwnerToken,
        ttl: Duration,
        sent: Instant,
        result: &AcquireResult,
    ) {
        let p = self.next_point();
        let lease = match *result {
            AcquireResult::Held { remaining } => {
                let kind = LockEventKind::Contended { remaining };
                self.push_event(p, key, mode, Some(token), None, kind);
                return;
            }
            AcquireResult::Acquired(lease) => lease,
        };
        let full = key.full();
        let expires = sent.checked_add(ttl);
        let same = self.records.iter_mut().rev().find(|r| {
            r.open()
                && r.full == full
                && r.mode == mode
                && r.owner == token
                && r.fence == lease.fence
        });
        match same {
            // The same lease confirmed again (an idempotent retry): the store says it is held.
            Some(r) => r.expires = expires,
            None => {
                // This grant proves that conflicting leases are gone.
                for r in self
                    .records
                    .iter_mut()
                    .filter(|r| r.open() && r.full == full)
                {
                    let conflicts = if r.owner == token {
                        r.mode == mode
                    } else {
                        mode.excludes(r.mode)
                    };
                    if conflicts {
                        r.end = Some((p, EndReason::Expired));
                    }
                }
                let elsewhere = self.elsewhere.contains(&token);
                self.records.push(Record {
                    key: key.name().to_owned(),
                    full,
                    mode,
                    owner: token,
                    fence: lease.fence,
                    elsewhere,
                    start: p,
                    expires,
                    end: None,
                });
            }
        }
        self.push_event(
            p,
            key,
            mode,
            Some(token),
            Some(lease.fence),
            LockEventKind::Acquired,
        );
    }

    /// The mode of `token`'s last event on `key` (a writer that only waited has no record).
    fn last_mode(&self, full: &str, token: OwnerToken) -> Option<LockMode> {
        self.events
            .iter()
            .rev()
            .find(|e| e.full_key == full && e.owner == Some(token))
            .map(|e| e.mode)
    }

    /// The most recent record of `token` on `key` in one of `modes`.
    fn latest(&mut self, full: &str, modes: &[LockMode], token: OwnerToken) -> Option<&mut Record> {
        self.records
            .iter_mut()
            .rev()
            .find(|r| r.full == full && r.owner == token && modes.contains(&r.mode))
    }

    fn on_release(&mut self, key: &LockKey, modes: &[LockMode], token: OwnerToken, ok: bool) {
        let p = self.next_point();
        let full = key.full();
        let mut mode = self
            .last_mode(&full, token)
            .or_else(|| modes.first().copied())
            .unwrap_or(LockMode::Mutex);
        let mut fence = None;
        if let Some(r) = self.latest(&full, modes, token) {
            mode = r.mode;
            fence = Some(r.fence);
            if r.open() {
                if ok {
                    // The store held it until now, whatever the ttl estimate said.
                    r.expires = None;
                    r.end = Some((p, EndReason::Released));
                } else {
                    r.end = Some((p, EndReason::Expired));
                }
            }
        }
        let kind = if ok {
            LockEventKind::Released
        } else {
            LockEventKind::ReleaseRefused
        };
        self.push_event(p, key, mode, Some(token), fence, kind);
    }

    fn on_extend(
        &mut self,
        key: &LockKey,
        modes: &[LockMode],
        token: OwnerToken,
        ttl: Duration,
        sent: Instant,
        ok: bool,
    ) {
        let p = self.next_point();
        let full = key.full();
        let mut mode = self
            .last_mode(&full, token)
            .or_else(|| modes.first().copied())
            .unwrap_or(LockMode::Mutex);
        let mut fence = None;
        if let Some(r) = self.latest(&full, modes, token) {
            mode = r.mode;
            fence = Some(r.fence);
            if r.open() {
                if ok {
                    r.expires = sent.checked_add(ttl);
                } else {
                    r.end = Some((p, EndReason::Expired));
                }
            }
        }
        let kind = if ok {
            LockEventKind::Extended { ttl }
        } else {
            LockEventKind::LostExtend
        };
        self.push_event(p, key, mode, Some(token), fence, kind);
    }

    /// A mutex lease deleted whoever held it.
    fn on_force(&mut self, key: &LockKey, had_lease: bool, reason: EndReason) {
        let p = self.next_point();
        let full = key.full();
        let mut evicted = None;
        for r in self
            .records
            .iter_mut()
            .filter(|r| r.open() && r.full == full && r.mode == LockMode::Mutex)
        {
            if r.live_at(p) {
                evicted = Some((r.owner, r.fence));
            }
            r.end = Some((p, reason));
        }
        let kind = match reason {
            EndReason::Revoked => LockEventKind::Revoked { had_lease },
            _ => LockEventKind::ForceReleased { had_lease },
        };
        self.push_event(
            p,
            key,
            LockMode::Mutex,
            evicted.map(|(o, _)| o),
            evicted.map(|(_, f)| f),
            kind,
        );
    }

    fn live(&self, key: &str, p: Point) -> impl Iterator<Item = &Record> {
        self.records
            .iter()
            .filter(move |r| r.matches(key) && r.live_at(p))
    }

    fn hit(&mut self, key: &str, fence: Option<u64>) -> ProbeHit {
        let p = self.next_point();
        let live: Vec<&Record> = self.live(key, p).collect();
        let ours = |r: &&&Record| !r.elsewhere;
        let holder = live
            .iter()
            .filter(ours)
            .find(|r| fence.is_none_or(|f| f == r.fence))
            .or_else(|| live.iter().find(ours))
            .or_else(|| live.first())
            .map(|r| r.holder());
        let hit = ProbeHit {
            seq: p.seq,
            at: p.at,
            key: key.to_owned(),
            fence,
            holder,
        };
        self.hits.push(hit.clone());
        hit
    }

    /// The recording as text, events and probe hits interleaved, the last `max` lines.
    fn timeline(&self, max: usize) -> String {
        let mut lines: Vec<(u64, String)> = Vec::with_capacity(self.events.len() + self.hits.len());
        for e in &self.events {
            let mut line = format!(
                "#{} {} {} `{}` {}",
                e.seq,
                rel(self.origin, e.at),
                e.kind.label(),
                e.key,
                e.mode.label()
            );
            if let Some(owner) = e.owner {
                let _ = write!(line, " owner {}", short(owner));
            }
            if let Some(fence) = e.fence {
                let _ = write!(line, " fence {fence}");
            }
            if e.elsewhere {
                line.push_str(" [elsewhere]");
            }
            lines.push((e.seq, line));
        }
        for h in &self.hits {
            let mut line = format!(
                "#{} {} probe hit `{}`",
                h.seq,
                rel(self.origin, h.at),
                h.key
            );
            if let Some(f) = h.fence {
                let _ = write!(line, " with fence {f}");
            }
            match h.holder {
                Some(holder) => {
                    let _ = write!(
                        line,
                        ": held by {} fence {}{}",
                        short(holder.owner),
                        holder.fence,
                        if holder.elsewhere { " [elsewhere]" } else { "" }
                    );
                }
                None => line.push_str(": NOT HELD"),
            }
            lines.push((h.seq, line));
        }
        lines.sort_by_key(|(seq, _)| *seq);
        let mut out = String::from("recorded timeline:\n");
        if lines.is_empty() {
            out.push_str("  (nothing was recorded)\n");
        }
        let skip = lines.len().saturating_sub(max);
        if skip > 0 {
            let _ = writeln!(out, "  ... {skip} earlier line(s)");
        }
        for (_, line) in lines.into_iter().skip(skip) {
            let _ = writeln!(out, "  {line}");
        }
        out
    }
}

/// Shared by every clone of a [`RecordingBackend`], its probes and its holders.
struct State {
    log: Mutex<Log>,
    changes: watch::Sender<u64>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Record under the lock, then wake [`RecordingBackend::wait_until`].
    fn record<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        let out = f(&mut self.lock());
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        out
    }
}

/// The recording layer itself: forwards to the real backend and records the answers.
struct Core {
    inner: Arc<dyn LockBackend>,
    state: Arc<State>,
}

impl Core {
    async fn acquire(
        &self,
        key: &LockKey,
        mode: LockMode,
        token: OwnerToken,
        ttl: Duration,
        op: impl Future<Output = Result<AcquireResult, BackendError>> + Send,
    ) -> Result<AcquireResult, BackendError> {
        let sent = Instant::now();
        let result = op.await;
        if let Ok(answer) = &result {
            self.state
                .record(|log| log.on_acquire(key, mode, token, ttl, sent, answer));
        }
        result
    }

    async fn release(
        &self,
        key: &LockKey,
        modes: &[LockMode],
        token: OwnerToken,
        op: impl Future<Output = Result<bool, BackendError>> + Send,
    ) -> Result<bool, BackendError> {
        let result = op.await;
        if let Ok(ok) = result {
            self.state
                .record(|log| log.on_release(key, modes, token, ok));
        }
        result
    }

    async fn extend(
        &self,
        key: &LockKey,
        modes: &[LockMode],
        token: OwnerToken,
        ttl: Duration,
        op: impl Future<Output = Result<bool, BackendError>> + Send,
    ) -> Result<bool, BackendError> {
        let sent = Instant::now();
        let result = op.await;
        if let Ok(ok) = result {
            self.state
                .record(|log| log.on_extend(key, modes, token, ttl, sent, ok));
        }
        result
    }
}

const RW: &[LockMode] = &[LockMode::Read, LockMode::Write];

#[async_trait]
impl LockBackend for Core {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = self.inner.try_acquire(key, token, ttl);
        self.acquire(key, LockMode::Mutex, token, ttl, op).await
    }

    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let op = self.inner.release(key, token);
        Core::release(self, key, &[LockMode::Mutex], token, op).await
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = self.inner.extend(key, token, ttl);
        Core::extend(self, key, &[LockMode::Mutex], token, ttl, op).await
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        self.inner.inspect(key).await
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        let had = self.inner.force_release(key).await?;
        self.state
            .record(|log| log.on_force(key, had, EndReason::ForceReleased));
        Ok(had)
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        let op = self.inner.try_acquire_permit(key, token, ttl, permits);
        self.acquire(key, LockMode::Permit, token, ttl, op).await
    }

    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let op = self.inner.release_permit(key, token);
        Core::release(self, key, &[LockMode::Permit], token, op).await
    }

    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = self.inner.extend_permit(key, token, ttl);
        Core::extend(self, key, &[LockMode::Permit], token, ttl, op).await
    }

    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        self.inner.permit_holders(key).await
    }

    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = self.inner.try_acquire_read(key, token, ttl);
        self.acquire(key, LockMode::Read, token, ttl, op).await
    }

    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let op = self.inner.try_acquire_write(key, token, ttl);
        self.acquire(key, LockMode::Write, token, ttl, op).await
    }

    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let op = self.inner.release_rw(key, token);
        Core::release(self, key, RW, token, op).await
    }

    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let op = self.inner.extend_rw(key, token, ttl);
        Core::extend(self, key, RW, token, ttl, op).await
    }

    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        self.inner.inspect_rw(key).await
    }
}

/// A backend wrapper that records every lock event and keeps the set of keys held, with
/// assertions for downstream test suites and helpers that stage contention, revoked leases
/// and store failures. Clones share the recording.
///
/// Hand it (or [`service`](RecordingBackend::service)) to the code under test, drive that
/// code, then assert:
///
/// | Assertion | Checks |
/// |---|---|
/// | [`assert_held`](RecordingBackend::assert_held) / [`assert_not_held`](RecordingBackend::assert_not_held) | a key is (not) held now |
/// | [`assert_all_released`](RecordingBackend::assert_all_released) | every lease the code took was released |
/// | [`assert_never_held_together`](RecordingBackend::assert_never_held_together) | no two of these keys were ever held at once |
/// | [`assert_every_hit_under_lock`](RecordingBackend::assert_every_hit_under_lock) | each [`Probe::hit`] ran while its key was held |
/// | [`assert_acquired_in_order`](RecordingBackend::assert_acquired_in_order) | keys were first taken in this order |
///
/// Every assertion panics with the recorded timeline in its message.
///
/// Layers: `RecordingBackend` → fault injection ([`FaultyBackend`], for
/// [`fail_next`](RecordingBackend::fail_next)) → recorder → the wrapped backend. An injected
/// failure never reaches the store and is not recorded; a lost reply
/// ([`faults`](RecordingBackend::faults)`().lose_replies_next`) is recorded, since the store
/// applied it.
///
/// ```
/// use locks_testkit::recording::RecordingBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let recorder = RecordingBackend::memory();
/// let locks = recorder.service()?; // hand this to the code under test
///
/// // A fake the code under test calls for its side effect reports it to a probe.
/// let charges = recorder.probe("payment:42");
/// locks
///     .with_lock("payment:42", move |lease| async move {
///         charges.hit_with_fence(lease.fence()); // "the card was charged now"
///     })
///     .await?;
///
/// recorder.assert_every_hit_under_lock();
/// recorder.assert_all_released();
/// assert_eq!(recorder.held_now(), Vec::<String>::new());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RecordingBackend {
    core: Arc<Core>,
    front: FaultyBackend,
    prefix: Arc<str>,
}

impl fmt::Debug for RecordingBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (events, hits) = {
            let log = self.core.state.lock();
            (log.events.len(), log.hits.len())
        };
        f.debug_struct("RecordingBackend")
            .field("inner", &self.core.inner.name())
            .field("prefix", &self.prefix)
            .field("events", &events)
            .field("probe_hits", &hits)
            .field("held_now", &self.held_now())
            .finish()
    }
}

impl RecordingBackend {
    /// Lease ttl of [`service`](RecordingBackend::service): short, so that renewals (every
    /// half ttl) and lost leases happen within a few virtual seconds of paused time.
    pub const SERVICE_TTL: Duration = Duration::from_secs(1);

    /// Default wait timeout of [`service`](RecordingBackend::service).
    pub const SERVICE_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Record `inner`.
    pub fn new(inner: impl LockBackend) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Record a shared backend.
    pub fn from_arc(inner: Arc<dyn LockBackend>) -> Self {
        let log = Log {
            origin: Instant::now(),
            seq: 0,
            events: Vec::new(),
            records: Vec::new(),
            hits: Vec::new(),
            elsewhere: HashSet::new(),
        };
        let state = Arc::new(State {
            log: Mutex::new(log),
            changes: watch::Sender::new(0),
        });
        let core = Arc::new(Core { inner, state });
        let front = FaultyBackend::from_arc(Arc::clone(&core) as Arc<dyn LockBackend>);
        RecordingBackend {
            core,
            front,
            prefix: Arc::from(DEFAULT_PREFIX),
        }
    }

    /// Record a fresh [`MemoryBackend`] (on tokio's clock: under
    /// `#[tokio::test(start_paused = true)]` leases expire in paused time).
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new())
    }

    /// Use `prefix` for the keys of [`service`](RecordingBackend::service),
    /// [`hold_elsewhere`](RecordingBackend::hold_elsewhere), [`revoke`](RecordingBackend::revoke)
    /// and [`key`](RecordingBackend::key) (default `_lock:`, the [`LockService`] default). Set
    /// it to the prefix of the service under test when that service sets its own.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The wrapped backend (operations on it are not recorded).
    pub fn inner(&self) -> &Arc<dyn LockBackend> {
        &self.core.inner
    }

    /// The fault injector in front of the recorder: transient failures, lost replies,
    /// partitions, latency. Clones share it.
    pub fn faults(&self) -> &FaultyBackend {
        &self.front
    }

    /// The next `n` operations of the code under test fail with a transient error before
    /// reaching the store (and are not recorded). [`hold_elsewhere`](Self::hold_elsewhere) and
    /// [`revoke`](Self::revoke) are not affected.
    pub fn fail_next(&self, n: u32) {
        self.front.fail_next(n);
    }

    /// A [`LockService`] builder over this recorder with test-friendly defaults: this
    /// recorder's key prefix, ttl [`SERVICE_TTL`](Self::SERVICE_TTL) (renewed every half
    /// second) and wait timeout [`SERVICE_WAIT_TIMEOUT`](Self::SERVICE_WAIT_TIMEOUT). Override
    /// any of them before `build()`.
    pub fn service_builder(&self) -> LockServiceBuilder {
        LockService::builder(self.clone())
            .key_prefix(&*self.prefix)
            .default_ttl(Self::SERVICE_TTL)
            .default_wait_timeout(Self::SERVICE_WAIT_TIMEOUT)
    }

    /// A [`LockService`] over this recorder with the defaults of
    /// [`service_builder`](Self::service_builder). Call it several times for several
    /// application instances sharing one store.
    ///
    /// Errors only when the key prefix set with [`with_key_prefix`](Self::with_key_prefix) is
    /// invalid.
    pub fn service(&self) -> Result<LockService, LockError> {
        self.service_builder().build()
    }

    /// The validated key for `name` under this recorder's prefix.
    pub fn key(&self, name: &str) -> Result<LockKey, LockError> {
        LockKey::new(&self.prefix, name)
    }

    // ---- Observing ----

    /// Every recorded lock event, in order.
    pub fn history(&self) -> Vec<LockEvent> {
        self.core.state.lock().events.clone()
    }

    /// The recorded events of one key (name or full key), in order.
    pub fn events_for(&self, key: &str) -> Vec<LockEvent> {
        self.core
            .state
            .lock()
            .events
            .iter()
            .filter(|e| e.key == key || e.full_key == key)
            .cloned()
            .collect()
    }

    /// Every lease seen so far, in the order they were granted, with how each ended.
    pub fn holdings(&self) -> Vec<Holding> {
        let log = self.core.state.lock();
        let now = log.now_point();
        log.records.iter().map(|r| r.to_holding(now)).collect()
    }

    /// The names of the keys held now (by anyone, [`hold_elsewhere`](Self::hold_elsewhere)
    /// holders included), sorted, each once.
    pub fn held_now(&self) -> Vec<String> {
        let log = self.core.state.lock();
        let now = log.now_point();
        let mut keys: Vec<String> = log
            .records
            .iter()
            .filter(|r| r.live_at(now))
            .map(|r| r.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether anyone holds `key` now (mutex, permit, read or write lease).
    pub fn is_held(&self, key: &str) -> bool {
        !self.holders(key).is_empty()
    }

    /// Who holds `key` now.
    pub fn holders(&self, key: &str) -> Vec<Holder> {
        let log = self.core.state.lock();
        let now = log.now_point();
        log.live(key, now).map(Record::holder).collect()
    }

    /// Every probe hit so far, in order.
    pub fn probe_hits(&self) -> Vec<ProbeHit> {
        self.core.state.lock().hits.clone()
    }

    /// The recording as text (events and probe hits, in order), for messages and debugging.
    pub fn timeline(&self) -> String {
        self.core.state.lock().timeline(usize::MAX)
    }

    /// Wait until `condition` holds, checking it after every recorded event and whenever a
    /// lease's ttl runs out. Wrap it in `tokio::time::timeout` if the condition may never come.
    ///
    /// ```
    /// # use locks_testkit::recording::RecordingBackend;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = RecordingBackend::memory();
    /// let locks = recorder.service().unwrap();
    /// let task = tokio::spawn(async move { locks.acquire("job").await.map(|g| g.abandon()) });
    /// recorder.wait_until(|r| r.is_held("job")).await;
    /// # task.await.unwrap().unwrap();
    /// # }
    /// ```
    pub async fn wait_until(&self, mut condition: impl FnMut(&RecordingBackend) -> bool) {
        let mut changes = self.core.state.changes.subscribe();
        loop {
            if condition(self) {
                return;
            }
            let next_expiry = {
                let log = self.core.state.lock();
                let now = log.now_point();
                log.records
                    .iter()
                    .filter_map(|r| r.end_point())
                    .map(|(end, _)| end)
                    .filter(|end| *end > now && end.seq == 0)
                    .map(|end| end.at)
                    .min()
            };
            let changed = async {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            match next_expiry {
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Wait until `key` is held (see [`wait_until`](Self::wait_until)).
    pub async fn wait_until_held(&self, key: &str) {
        self.wait_until(|r| r.is_held(key)).await;
    }

    /// Wait until nobody holds `key` (see [`wait_until`](Self::wait_until)).
    pub async fn wait_until_released(&self, key: &str) {
        self.wait_until(|r| !r.is_held(key)).await;
    }

    // ---- Staging conditions ----

    /// Take `key` for another owner for `ttl`, so that the code under test finds it held
    /// (contention). The holder does not renew: the lease ends at `ttl`, on
    /// [`HeldElsewhere::release`], or when the handle is dropped. It is recorded, marked
    /// `elsewhere`, and not affected by [`fail_next`](Self::fail_next).
    ///
    /// Errors: `InvalidKey`, `InvalidTtl` (zero), `Contended` (someone holds the key),
    /// `Backend`.
    pub async fn hold_elsewhere(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<HeldElsewhere, LockError> {
        let lock_key = self.key(key)?;
        if ttl.is_zero() {
            return Err(LockError::InvalidTtl {
                ttl,
                reason: "must be greater than zero".to_owned(),
            });
        }
        let token = OwnerToken::new();
        self.core.state.lock().elsewhere.insert(token);
        match self.core.try_acquire(&lock_key, token, ttl).await {
            Ok(AcquireResult::Acquired(lease)) => Ok(HeldElsewhere {
                core: Arc::clone(&self.core),
                key: lock_key,
                token,
                fence: lease.fence,
                done: false,
            }),
            Ok(AcquireResult::Held { remaining }) => Err(LockError::Contended {
                key: key.to_owned(),
                remaining,
            }),
            Err(source) => Err(LockError::Backend {
                operation: "hold_elsewhere",
                source,
            }),
        }
    }

    /// The store drops the mutex lease of `key` now, as if it had expired or an operator had
    /// deleted it: the holder is not told, finds out at its next renewal (its `lost()` fires
    /// with `NotOwner`), and its release is refused. Recorded as
    /// [`LockEventKind::Revoked`], not as a release by the holder. `true` if there was a lease.
    ///
    /// Goes straight to the wrapped backend's `force_release` (not affected by
    /// [`fail_next`](Self::fail_next)).
    pub async fn revoke(&self, key: &str) -> Result<bool, LockError> {
        let lock_key = self.key(key)?;
        let had = self
            .core
            .inner
            .force_release(&lock_key)
            .await
            .map_err(|source| LockError::Backend {
                operation: "revoke",
                source,
            })?;
        self.core
            .state
            .record(|log| log.on_force(&lock_key, had, EndReason::Revoked));
        Ok(had)
    }

    // ---- Probes ----

    /// A probe for "this ran while holding `key`": give it to the fake that performs the
    /// side effect, which calls [`Probe::hit`] at that moment. Probes are cheap; making one
    /// per call (`recorder.probe(&format!("payment:{id}"))`) is fine.
    pub fn probe(&self, key: &str) -> Probe {
        Probe {
            state: Arc::clone(&self.core.state),
            key: key.to_owned(),
        }
    }

    // ---- Assertions ----

    #[track_caller]
    fn fail(&self, message: String) -> ! {
        let timeline = self.core.state.lock().timeline(TIMELINE_LINES);
        panic!("{message}\n{timeline}");
    }

    /// Assert that `key` is held now (by anyone, [`hold_elsewhere`](Self::hold_elsewhere)
    /// holders included).
    ///
    /// # Panics
    ///
    /// When nobody holds `key`; the message says how its last lease ended.
    #[doc(alias = "assert_locked")]
    #[track_caller]
    pub fn assert_held(&self, key: &str) {
        let message = {
            let log = self.core.state.lock();
            let now = log.now_point();
            if log.live(key, now).next().is_some() {
                return;
            }
            let last = log.records.iter().rev().find(|r| r.matches(key));
            match last.and_then(|r| r.end_point().map(|e| (r, e))) {
                Some((r, (end, reason))) => format!(
                    "assert_held: `{key}` is not held; its last lease, {}, ended at {} ({reason:?})",
                    r.describe(log.origin),
                    rel(log.origin, end.at)
                ),
                None => format!("assert_held: `{key}` is not held; it was never acquired"),
            }
        };
        self.fail(message);
    }

    /// Assert that nobody holds `key` now.
    ///
    /// # Panics
    ///
    /// When `key` is held; the message names the holders.
    #[track_caller]
    pub fn assert_not_held(&self, key: &str) {
        let message = {
            let log = self.core.state.lock();
            let now = log.now_point();
            let holders: Vec<String> = log.live(key, now).map(|r| r.describe(log.origin)).collect();
            if holders.is_empty() {
                return;
            }
            format!("assert_not_held: `{key}` is held: {}", holders.join("; "))
        };
        self.fail(message);
    }

    /// Assert that every lock was released: every lease the code under test took ended by a
    /// release (or by [`revoke`](Self::revoke) or a force-release), none is held now, and none
    /// simply ran out its ttl. [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored.
    ///
    /// # Panics
    ///
    /// When a lease is still held or expired without a release; the message lists them.
    #[track_caller]
    pub fn assert_all_released(&self) {
        let message = {
            let log = self.core.state.lock();
            let now = log.now_point();
            let mut problems = Vec::new();
            for r in log.records.iter().filter(|r| !r.elsewhere) {
                match r.end_point() {
                    Some((end, EndReason::Expired)) if end < now => problems.push(format!(
                        "{} was never released: it expired at {}",
                        r.describe(log.origin),
                        rel(log.origin, end.at)
                    )),
                    Some((end, _)) if end < now => {}
                    _ => problems.push(format!("{} is still held", r.describe(log.origin))),
                }
            }
            if problems.is_empty() {
                return;
            }
            format!(
                "assert_all_released: {} lock(s) were not released:\n  - {}",
                problems.len(),
                problems.join("\n  - ")
            )
        };
        self.fail(message);
    }

    /// Assert that no two of `keys` were ever held at the same time by the code under test
    /// (any primitive; [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored). Leases
    /// are intervals from grant to end in recording order, so a release and a grant at the
    /// same tokio instant do not overlap when the release was recorded first.
    ///
    /// # Panics
    ///
    /// At the first overlap, naming both leases.
    #[track_caller]
    pub fn assert_never_held_together(&self, keys: &[&str]) {
        let message = {
            let log = self.core.state.lock();
            let ours: Vec<&Record> = log
                .records
                .iter()
                .filter(|r| !r.elsewhere && keys.iter().any(|k| r.matches(k)))
                .collect();
            let mut found = None;
            'outer: for (n, a) in ours.iter().enumerate() {
                for b in ours.iter().skip(n + 1) {
                    if a.full == b.full {
                        continue;
                    }
                    let a_end = a.end_point().map(|(e, _)| e);
                    let b_end = b.end_point().map(|(e, _)| e);
                    let overlap =
                        a_end.is_none_or(|e| b.start < e) && b_end.is_none_or(|e| a.start < e);
                    if overlap {
                        found = Some((*a, *b));
                        break 'outer;
                    }
                }
            }
            let Some((a, b)) = found else {
                return;
            };
            let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
            let now = log.now_point();
            let until = match first.end_point() {
                Some((end, reason)) if end < now => {
                    format!("held until {} ({reason:?})", rel(log.origin, end.at))
                }
                _ => "still held".to_owned(),
            };
            format!(
                "assert_never_held_together: `{}` and `{}` were held together: {} ({until}) \
                 while {}",
                first.key,
                second.key,
                first.describe(log.origin),
                second.describe(log.origin),
            )
        };
        self.fail(message);
    }

    /// Assert that every probe hit (of every probe of this recorder) ran under the lock: see
    /// [`ProbeHit::under_lock`].
    ///
    /// # Panics
    ///
    /// When a hit ran outside the lock (the message lists each one and why), and when no probe
    /// was hit at all (nothing would have been checked: did the side effect run?).
    #[track_caller]
    pub fn assert_every_hit_under_lock(&self) {
        let hits = self.probe_hits();
        if let Some(message) = check_hits(&hits, None) {
            self.fail(message);
        }
    }

    /// Assert that the code under test first acquired each of `keys` in this order (the
    /// first grant of each key; [`hold_elsewhere`](Self::hold_elsewhere) leases are ignored).
    ///
    /// # Panics
    ///
    /// When a key was never acquired, or two keys were first acquired in the other order.
    #[track_caller]
    pub fn assert_acquired_in_order(&self, keys: &[&str]) {
        let message = {
            let log = self.core.state.lock();
            let first = |key: &str| {
                log.records
                    .iter()
                    .filter(|r| !r.elsewhere && r.matches(key))
                    .min_by_key(|r| r.start)
            };
            let mut previous: Option<(&str, &Record)> = None;
            let mut problem = None;
            for key in keys {
                let Some(r) = first(key) else {
                    problem = Some(format!(
                        "assert_acquired_in_order: `{key}` was never acquired (expected order: {keys:?})"
                    ));
                    break;
                };
                if let Some((prev_key, prev)) = previous {
                    if r.start < prev.start {
                        problem = Some(format!(
                            "assert_acquired_in_order: `{key}` was first acquired before \
                             `{prev_key}` (expected order: {keys:?}): {} came before {}",
                            r.describe(log.origin),
                            prev.describe(log.origin)
                        ));
                        break;
                    }
                }
                previous = Some((key, r));
            }
            problem
        };
        if let Some(message) = message {
            self.fail(message);
        }
    }
}

/// The hits that ran outside the lock, as a message; `None` when all is well.
fn check_hits(hits: &[ProbeHit], probe: Option<&str>) -> Option<String> {
    let what = probe.map_or_else(|| "no probe".to_owned(), |k| format!("the probe `{k}`"));
    if hits.is_empty() {
        return Some(format!(
            "assert_every_hit_under_lock: {what} was ever hit, so nothing was checked \
             (did the side effect run?)"
        ));
    }
    let bad: Vec<String> = hits
        .iter()
        .filter_map(|h| {
            h.problem()
                .map(|p| format!("probe `{}` hit #{}: {p}", h.key, h.seq))
        })
        .collect();
    if bad.is_empty() {
        return None;
    }
    Some(format!(
        "assert_every_hit_under_lock: {} of {} probe hit(s) ran outside the lock:\n  - {}",
        bad.len(),
        hits.len(),
        bad.join("\n  - ")
    ))
}

#[async_trait]
impl LockBackend for RecordingBackend {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.front.try_acquire(key, token, ttl).await
    }

    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.front.release(key, token).await
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.front.extend(key, token, ttl).await
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        self.front.inspect(key).await
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        self.front.force_release(key).await
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.front.listen(key).await
    }

    fn name(&self) -> &'static str {
        self.core.inner.name()
    }

    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        self.front
            .try_acquire_permit(key, token, ttl, permits)
            .await
    }

    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.front.release_permit(key, token).await
    }

    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.front.extend_permit(key, token, ttl).await
    }

    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        self.front.permit_holders(key).await
    }

    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.front.try_acquire_read(key, token, ttl).await
    }

    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.front.try_acquire_write(key, token, ttl).await
    }

    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        self.front.release_rw(key, token).await
    }

    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.front.extend_rw(key, token, ttl).await
    }

    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        self.front.inspect_rw(key).await
    }
}

/// A lease held by "another owner", from [`RecordingBackend::hold_elsewhere`]. Dropping it
/// releases the lease in the background; [`release`](HeldElsewhere::release) does it now.
#[must_use = "dropping a HeldElsewhere releases the lease at once"]
pub struct HeldElsewhere {
    core: Arc<Core>,
    key: LockKey,
    token: OwnerToken,
    fence: u64,
    done: bool,
}

impl fmt::Debug for HeldElsewhere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldElsewhere")
            .field("key", &self.key)
            .field("token", &self.token)
            .field("fence", &self.fence)
            .finish()
    }
}

impl HeldElsewhere {
    /// The key name (without prefix).
    pub fn key(&self) -> &str {
        self.key.name()
    }

    /// The other owner's token.
    pub fn token(&self) -> OwnerToken {
        self.token
    }

    /// The fence the other owner got.
    pub fn fence(&self) -> u64 {
        self.fence
    }

    /// Release the lease now. `Ok(false)`: it had already expired or been taken.
    pub async fn release(mut self) -> Result<bool, LockError> {
        self.done = true;
        LockBackend::release(&*self.core, &self.key, self.token)
            .await
            .map_err(|source| LockError::Backend {
                operation: "release",
                source,
            })
    }

    /// Forget the lease without releasing it: the store keeps it until its ttl runs out (a
    /// crashed holder).
    pub fn abandon(mut self) {
        self.done = true;
    }
}

impl Drop for HeldElsewhere {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let core = Arc::clone(&self.core);
            let key = self.key.clone();
            let token = self.token;
            rt.spawn(async move {
                let _ = LockBackend::release(&*core, &key, token).await;
            });
        }
    }
}

/// Reports side effects to a [`RecordingBackend`]: call [`hit`](Probe::hit) at the moment the
/// side effect happens (in the fake that performs it); the recorder notes whether the probe's
/// key was held then, and by whom. Cheap to clone; clones share the recording.
#[derive(Clone)]
pub struct Probe {
    state: Arc<State>,
    key: String,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe").field("key", &self.key).finish()
    }
}

impl Probe {
    /// The key this probe checks.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The side effect happens now: record who holds the key.
    pub fn hit(&self) -> ProbeHit {
        self.state.record(|log| log.hit(&self.key, None))
    }

    /// The side effect happens now and carries `fence` (the fencing token the code under test
    /// passed along): it counts as under the lock only if the lease with that fence holds the
    /// key now.
    pub fn hit_with_fence(&self, fence: u64) -> ProbeHit {
        self.state.record(|log| log.hit(&self.key, Some(fence)))
    }

    /// The hits of this probe's key so far, in order.
    pub fn hits(&self) -> Vec<ProbeHit> {
        self.state
            .lock()
            .hits
            .iter()
            .filter(|h| h.key == self.key)
            .cloned()
            .collect()
    }

    /// Assert that every hit of this probe's key ran under the lock (see
    /// [`ProbeHit::under_lock`]).
    ///
    /// # Panics
    ///
    /// When a hit ran outside the lock, and when this probe's key was never hit.
    #[track_caller]
    pub fn assert_every_hit_under_lock(&self) {
        if let Some(message) = check_hits(&self.hits(), Some(&self.key)) {
            let timeline = self.state.lock().timeline(TIMELINE_LINES);
            panic!("{message}\n{timeline}");
        }
    }
}
