//! Property tests against a reference model: random operation sequences run on a real
//! backend and checked, step by step, against [`Model`], a few lines of obviously correct code
//! that states the [`LockBackend`] contract for the mutex lease.
//!
//! - [`Op`] is one step of a script (acquire, release, extend, force-release, inspect, advance
//!   the store's clock, make the next calls fail); its `Debug` output reads as a script, so a
//!   shrunk failure is readable: `[try_acquire(o0, k0, ttl=50ms), release(o1, k0)]`.
//! - [`ops`] and [`real_time_ops`] are the [`proptest`](mod@proptest) strategies that generate scripts over a
//!   small domain ([`OWNERS`] owners, [`KEYS`] keys), so that owners collide on keys often.
//! - [`check`] runs a script on a backend and compares every answer with the model.
//! - [`ForgetfulBackend`] breaks the contract on purpose, to prove that [`check`] can fail.
//!
//! # Time
//!
//! The model needs to know the store's time. [`ModelClock`] is how a script's
//! [`Op::Advance`] moves it:
//!
//! - The memory backend built with [`MemoryBackend::with_clock`](locks_memory::MemoryBackend::with_clock)
//!   on a [`ManualClock`] (which implements [`ModelClock`]): advancing is exact and the whole
//!   check is deterministic, expiry included (a lease is gone when its ttl has fully passed).
//! - A store with its own clock (Redis): real time must pass, and sleeping makes tests slow and
//!   flaky. So such stores run [`real_time_ops`] with the [`RealTime`] clock: the scripts have no
//!   `Advance`, and their ttls (at least 10 s) outlast any case, so nothing expires during a
//!   case; remaining times are compared within a tolerance window
//!   (`expected - tolerance ..= expected`). Expiry itself is covered by the memory backend's
//!   property and by the conformance suite.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use locks_core::ManualClock;
//! use locks_memory::MemoryBackend;
//! use locks_testkit::model::{self, Op};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let clock = ManualClock::new();
//! let backend = Arc::new(MemoryBackend::with_clock(clock.clone()));
//! let script = [
//!     Op::TryAcquire { owner: 0, key: 0, ttl_ms: 100 },
//!     Op::TryAcquire { owner: 1, key: 0, ttl_ms: 100 }, // held by o0
//!     Op::Advance { ms: 100 },                          // o0's lease expires
//!     Op::TryAcquire { owner: 1, key: 0, ttl_ms: 100 }, // o1 gets a larger fence
//!     Op::Fault { ops: 1 },
//!     Op::Inspect { key: 0 },                           // fails, transiently
//!     Op::Release { owner: 1, key: 0 },
//! ];
//! model::check(backend, &clock, &script).await.unwrap();
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, LeaseInfo, LockBackend, LockKey, ManualClock, OwnerToken,
    ReleaseListener,
};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, NewTree, ValueTree};
use proptest::test_runner::TestRunner;

use crate::faulty::FaultyBackend;

/// Number of distinct owners the strategies use (`o0`, `o1`, `o2`).
pub const OWNERS: u8 = 3;

/// Number of distinct keys the strategies use (`k0`, `k1`).
pub const KEYS: u8 = 2;

/// The ttls (in ms) of [`ops`]: short, and straddled by [`Op::Advance`] steps.
pub const TTL_MS: RangeInclusive<u64> = 50..=2000;

/// The ttls (in ms) of [`real_time_ops`]: long enough that nothing expires during a case.
pub const REAL_TIME_TTL_MS: RangeInclusive<u64> = 10_000..=60_000;

/// The largest number of consecutive failing calls an [`Op::Fault`] asks for.
pub const MAX_FAULTS: u32 = 3;

/// The key prefix [`check`] uses.
pub const KEY_PREFIX: &str = "_lock:";

/// One step of a script. Owners and keys are small indexes (`o0`..`o2`, `k0`, `k1`);
/// [`check`] maps them to fixed owner tokens and to keys unique to the run.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// [`LockBackend::try_acquire`] of `key` by `owner` for `ttl_ms`.
    TryAcquire {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
        /// The ttl in milliseconds.
        ttl_ms: u64,
    },
    /// [`LockBackend::release`] of `key` by `owner`.
    Release {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
    },
    /// [`LockBackend::extend`] of `key` by `owner` to `ttl_ms`.
    Extend {
        /// The owner index.
        owner: u8,
        /// The key index.
        key: u8,
        /// The new ttl in milliseconds.
        ttl_ms: u64,
    },
    /// [`LockBackend::force_release`] of `key`.
    ForceRelease {
        /// The key index.
        key: u8,
    },
    /// [`LockBackend::inspect`] of `key`.
    Inspect {
        /// The key index.
        key: u8,
    },
    /// Move the store's clock forward (through the [`ModelClock`]); no backend call.
    Advance {
        /// How far, in milliseconds.
        ms: u64,
    },
    /// The next `ops` backend calls fail with a transient error before reaching the store
    /// ([`FaultyBackend::fail_next`]: replaces any count still pending); no backend call.
    Fault {
        /// How many calls fail.
        ops: u32,
    },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::TryAcquire { owner, key, ttl_ms } => {
                write!(f, "try_acquire(o{owner}, k{key}, ttl={ttl_ms}ms)")
            }
            Op::Release { owner, key } => write!(f, "release(o{owner}, k{key})"),
            Op::Extend { owner, key, ttl_ms } => {
                write!(f, "extend(o{owner}, k{key}, ttl={ttl_ms}ms)")
            }
            Op::ForceRelease { key } => write!(f, "force_release(k{key})"),
            Op::Inspect { key } => write!(f, "inspect(k{key})"),
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

/// Round durations (ms) that ttls and advances share, so that sums of advances often land
/// exactly on an expiry ("expires exactly now" is the boundary most worth testing).
const GRID_MS: [u64; 7] = [50, 100, 200, 250, 500, 1000, 2000];

fn ttl_strategy(range: RangeInclusive<u64>) -> BoxedStrategy<u64> {
    let grid: Vec<u64> = GRID_MS
        .into_iter()
        .filter(|ms| range.contains(ms))
        .collect();
    if grid.is_empty() {
        range.boxed()
    } else {
        prop_oneof![select(grid), range].boxed()
    }
}

fn op_strategy(ttl: RangeInclusive<u64>, with_advance: bool) -> BoxedStrategy<Op> {
    let owner = 0..OWNERS;
    let key = 0..KEYS;
    let ttl = ttl_strategy(ttl);
    let acquire = (owner.clone(), key.clone(), ttl.clone())
        .prop_map(|(owner, key, ttl_ms)| Op::TryAcquire { owner, key, ttl_ms });
    let release = (owner.clone(), key.clone()).prop_map(|(owner, key)| Op::Release { owner, key });
    let extend = (owner, key.clone(), ttl).prop_map(|(owner, key, ttl_ms)| Op::Extend {
        owner,
        key,
        ttl_ms,
    });
    let force = key.clone().prop_map(|key| Op::ForceRelease { key });
    let inspect = key.prop_map(|key| Op::Inspect { key });
    let fault = (1..=MAX_FAULTS).prop_map(|ops| Op::Fault { ops });
    if with_advance {
        let advance =
            prop_oneof![select(GRID_MS.to_vec()), 1u64..=2500].prop_map(|ms| Op::Advance { ms });
        prop_oneof![
            4 => acquire,
            2 => release,
            2 => extend,
            1 => force,
            2 => inspect,
            3 => advance,
            1 => fault,
        ]
        .boxed()
    } else {
        prop_oneof![
            4 => acquire,
            2 => release,
            2 => extend,
            1 => force,
            2 => inspect,
            1 => fault,
        ]
        .boxed()
    }
}

/// Scripts of 1 to `max_len` steps over the whole domain, [`Op::Advance`] included, with ttls
/// in [`TTL_MS`]: for stores whose clock the test moves (the memory backend on a
/// [`ManualClock`]).
///
/// A failing script shrinks like a `Vec` (drop steps, then simplify each step), and then
/// drops steps again after the steps were simplified, so counterexamples come out short.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    Scripts::new(op_strategy(TTL_MS, true), max_len)
}

/// Scripts of 1 to `max_len` steps without [`Op::Advance`], with ttls in
/// [`REAL_TIME_TTL_MS`]: for stores with their own clock (Redis), checked with [`RealTime`].
pub fn real_time_ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    Scripts::new(op_strategy(REAL_TIME_TTL_MS, false), max_len)
}

/// The strategy behind [`ops`] and [`real_time_ops`].
#[derive(Debug)]
struct Scripts {
    op: BoxedStrategy<Op>,
    len: RangeInclusive<usize>,
}

impl Scripts {
    fn new(op: BoxedStrategy<Op>, max_len: usize) -> Self {
        Scripts {
            op,
            len: 1..=max_len.max(1),
        }
    }
}

impl Strategy for Scripts {
    type Tree = ScriptTree;
    type Value = Vec<Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let len = self.len.clone().new_tree(runner)?.current();
        let elements = (0..len)
            .map(|_| self.op.new_tree(runner))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ScriptTree {
            included: vec![true; elements.len()],
            elements,
            min_len: *self.len.start(),
            next: Shrink::Delete(0),
            prev: None,
            simplified: false,
            passes: 0,
        })
    }
}

/// How many times shrinking goes back to dropping steps after simplifying them.
const MAX_DELETION_PASSES: u32 = 8;

#[derive(Debug, Clone, Copy)]
enum Shrink {
    Delete(usize),
    Simplify(usize),
    Done,
}

/// Shrinks a script: drop each step in turn, simplify each remaining step, and when a step
/// was simplified, start dropping steps again (proptest's own `Vec` tree makes one pass only,
/// so two steps that became equal while simplifying would both stay).
struct ScriptTree {
    elements: Vec<Box<dyn ValueTree<Value = Op>>>,
    included: Vec<bool>,
    min_len: usize,
    next: Shrink,
    prev: Option<Shrink>,
    simplified: bool,
    passes: u32,
}

impl ValueTree for ScriptTree {
    type Value = Vec<Op>;

    fn current(&self) -> Vec<Op> {
        self.elements
            .iter()
            .zip(&self.included)
            .filter(|(_, included)| **included)
            .map(|(e, _)| e.current())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        loop {
            match self.next {
                Shrink::Delete(ix) if ix >= self.elements.len() => {
                    self.next = Shrink::Simplify(0);
                }
                Shrink::Delete(ix) => {
                    self.next = Shrink::Delete(ix + 1);
                    let live = self.included.iter().filter(|i| **i).count();
                    if self.included[ix] && live > self.min_len {
                        self.included[ix] = false;
                        self.prev = Some(Shrink::Delete(ix));
                        return true;
                    }
                }
                Shrink::Simplify(ix) if ix >= self.elements.len() => {
                    if self.simplified && self.passes < MAX_DELETION_PASSES {
                        self.simplified = false;
                        self.passes += 1;
                        self.next = Shrink::Delete(0);
                    } else {
                        self.next = Shrink::Done;
                    }
                }
                Shrink::Simplify(ix) => {
                    if self.included[ix] && self.elements[ix].simplify() {
                        self.simplified = true;
                        self.prev = Some(Shrink::Simplify(ix));
                        return true;
                    }
                    self.next = Shrink::Simplify(ix + 1);
                }
                Shrink::Done => return false,
            }
        }
    }

    fn complicate(&mut self) -> bool {
        match self.prev {
            Some(Shrink::Delete(ix)) => {
                self.included[ix] = true;
                self.prev = None;
                true
            }
            Some(Shrink::Simplify(ix)) => {
                if self.elements[ix].complicate() {
                    true
                } else {
                    self.prev = None;
                    false
                }
            }
            Some(Shrink::Done) | None => false,
        }
    }
}

/// How [`check`] moves the store's time for [`Op::Advance`], and how far the store's clock may
/// run ahead of the model's.
pub trait ModelClock: Send + Sync {
    /// Move the store's clock forward by `by`. `Err`: this clock cannot be moved.
    fn advance(&self, by: Duration) -> Result<(), String>;

    /// How much more time may have passed in the store than the model knows of: remaining
    /// times are accepted in `expected - tolerance ..= expected`. Zero for an exact clock.
    fn tolerance(&self) -> Duration;
}

/// The memory backend's manual clock: exact, so the check is fully deterministic.
impl ModelClock for ManualClock {
    fn advance(&self, by: Duration) -> Result<(), String> {
        ManualClock::advance(self, by);
        Ok(())
    }

    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }
}

/// The clock of a store that keeps its own time (Redis), which a test cannot move: use it with
/// [`real_time_ops`] (no [`Op::Advance`]; ttls that outlast a case). An `Advance` step is an
/// error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealTime {
    tolerance: Duration,
}

impl RealTime {
    /// A real-time clock whose remaining times may lag the model's by up to `tolerance` (the
    /// longest a case may take, with margin).
    pub fn new(tolerance: Duration) -> Self {
        RealTime { tolerance }
    }
}

impl Default for RealTime {
    /// A tolerance of 5 s: far more than a case takes, far less than
    /// [`REAL_TIME_TTL_MS`]'s shortest ttl.
    fn default() -> Self {
        RealTime::new(Duration::from_secs(5))
    }
}

impl ModelClock for RealTime {
    fn advance(&self, by: Duration) -> Result<(), String> {
        Err(format!(
            "advance({}ms): a real-time store's clock cannot be moved; generate scripts with \
             model::real_time_ops",
            by.as_millis()
        ))
    }

    fn tolerance(&self) -> Duration {
        self.tolerance
    }
}

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
    /// A new holder: strictly greater than the key's last fence (any fence if `None`: the key
    /// never had one). Not "last + 1": Redis seeds fences from the server's time.
    Above(Option<u64>),
}

/// What the model says a step must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// `Ok(Acquired)` with a fence obeying the rule.
    Acquired(FenceRule),
    /// `Ok(Held)` with this remaining time (`Some`, within the clock's tolerance).
    Held {
        /// The holder's remaining ttl.
        remaining: Duration,
    },
    /// `Ok(answer)` from release, extend or force-release.
    Answer(bool),
    /// `Ok(None)` from inspect.
    Free,
    /// `Ok(Some(lease))` from inspect.
    Leased {
        /// The holder's owner index.
        owner: u8,
        /// The remaining ttl (within the clock's tolerance).
        remaining: Duration,
        /// The holder's fence; `None` if never observed (then any fence is accepted).
        fence: Option<u64>,
    },
    /// A transient error, and nothing changed in the store (an injected fault).
    Transient,
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
            Expected::Held { remaining } => write!(f, "Ok(Held(remaining {remaining:?}))"),
            Expected::Answer(answer) => write!(f, "Ok({answer})"),
            Expected::Free => write!(f, "Ok(None)"),
            Expected::Leased {
                owner,
                remaining,
                fence,
            } => {
                write!(f, "Ok(Some(o{owner}, remaining {remaining:?}, fence ")?;
                match fence {
                    Some(fence) => write!(f, "{fence}))"),
                    None => write!(f, "any))"),
                }
            }
            Expected::Transient => write!(f, "Err(transient)"),
            Expected::Nothing => write!(f, "(no call)"),
        }
    }
}

/// The reference model of the mutex lease contract: leases per key (owner, expiry), the last
/// fence per key, and the number of calls still to fail.
///
/// [`apply`](Model::apply) says what a step must answer and updates the state as the store
/// must. New fences cannot be predicted (only bounded), so after a successful acquire the
/// caller tells the model the fence it saw with [`observe_fence`](Model::observe_fence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    leases: BTreeMap<u8, ModelLease>,
    last_fence: BTreeMap<u8, u64>,
    failing: u32,
}

impl Model {
    /// An empty store: no leases, no fences, no faults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live lease of `key` at `now`, if any.
    pub fn lease(&self, key: u8, now: Duration) -> Option<ModelLease> {
        self.leases
            .get(&key)
            .copied()
            .filter(|l| l.expires_at > now)
    }

    /// The last fence observed for `key`.
    pub fn last_fence(&self, key: u8) -> Option<u64> {
        self.last_fence.get(&key).copied()
    }

    /// Apply `op` at store time `now` (time since the start of the script): the answer the
    /// store must give, with the state updated as the store must update it.
    ///
    /// - A pending fault fails any backend call with a transient error and changes nothing.
    /// - A lease expires when its ttl has fully passed (`expires_at <= now`).
    /// - Acquire: free → the caller holds it with a fence above every earlier one; held by the
    ///   caller → ttl reset, same fence; held by another → `Held` with its remaining ttl.
    /// - Release and extend act only for the holder; force-release for any live lease.
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
        self.leases.retain(|_, l| l.expires_at > now);
        match *op {
            Op::TryAcquire { owner, key, ttl_ms } => {
                let expires_at = now.saturating_add(Duration::from_millis(ttl_ms));
                let last = self.last_fence(key);
                match self.leases.get_mut(&key) {
                    Some(lease) if lease.owner == owner => {
                        lease.expires_at = expires_at;
                        Expected::Acquired(match lease.fence {
                            Some(fence) => FenceRule::Same(fence),
                            None => FenceRule::Above(last),
                        })
                    }
                    Some(lease) => Expected::Held {
                        remaining: lease.expires_at.saturating_sub(now),
                    },
                    None => {
                        self.leases.insert(
                            key,
                            ModelLease {
                                owner,
                                expires_at,
                                fence: None,
                            },
                        );
                        Expected::Acquired(FenceRule::Above(last))
                    }
                }
            }
            Op::Release { owner, key } => {
                let held = self.leases.get(&key).is_some_and(|l| l.owner == owner);
                if held {
                    self.leases.remove(&key);
                }
                Expected::Answer(held)
            }
            Op::Extend { owner, key, ttl_ms } => match self.leases.get_mut(&key) {
                Some(lease) if lease.owner == owner => {
                    lease.expires_at = now.saturating_add(Duration::from_millis(ttl_ms));
                    Expected::Answer(true)
                }
                _ => Expected::Answer(false),
            },
            Op::ForceRelease { key } => Expected::Answer(self.leases.remove(&key).is_some()),
            Op::Inspect { key } => match self.leases.get(&key) {
                Some(lease) => Expected::Leased {
                    owner: lease.owner,
                    remaining: lease.expires_at.saturating_sub(now),
                    fence: lease.fence,
                },
                None => Expected::Free,
            },
            Op::Advance { .. } | Op::Fault { .. } => Expected::Nothing,
        }
    }

    /// Record the fence the store gave `key`'s current holder (after an acquire that matched
    /// [`Expected::Acquired`]).
    pub fn observe_fence(&mut self, key: u8, fence: u64) {
        if let Some(lease) = self.leases.get_mut(&key) {
            lease.fence = Some(fence);
        }
        let last = self.last_fence.entry(key).or_insert(fence);
        *last = (*last).max(fence);
    }
}

/// What the backend answered to one step.
enum Observed {
    Acquired(u64),
    Held(Option<Duration>),
    Answer(bool),
    Lease(Option<LeaseInfo>),
    Error(BackendError),
    Nothing,
}

/// The owner token of owner index `owner`: fixed, so runs are reproducible.
fn owner_token(owner: u8) -> Result<OwnerToken, String> {
    format!("00000000-0000-4000-8000-{:012x}", u64::from(owner) + 1)
        .parse()
        .map_err(|e| format!("owner token for o{owner}: {e}"))
}

/// The owner label (`o1`) of a token, or the token itself if no owner of the script has it.
fn owner_label(token: OwnerToken) -> String {
    (0..=u8::MAX)
        .find(|&o| owner_token(o).is_ok_and(|t| t == token))
        .map_or_else(|| token.to_string(), |o| format!("o{o}"))
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Observed::Acquired(fence) => write!(f, "Ok(Acquired(fence {fence}))"),
            Observed::Held(Some(remaining)) => write!(f, "Ok(Held(remaining {remaining:?}))"),
            Observed::Held(None) => write!(f, "Ok(Held(remaining unknown))"),
            Observed::Answer(answer) => write!(f, "Ok({answer})"),
            Observed::Lease(None) => write!(f, "Ok(None)"),
            Observed::Lease(Some(info)) => write!(
                f,
                "Ok(Some({}, remaining {:?}, fence {}))",
                owner_label(info.owner),
                info.remaining,
                info.fence
            ),
            Observed::Error(e) => write!(f, "Err({:?}: {e})", e.kind()),
            Observed::Nothing => write!(f, "(no call)"),
        }
    }
}

/// `actual` in `expected - tolerance ..= expected`.
fn close(actual: Duration, expected: Duration, tolerance: Duration) -> bool {
    actual <= expected && actual.saturating_add(tolerance) >= expected
}

fn matches(expected: &Expected, observed: &Observed, tolerance: Duration) -> bool {
    match (expected, observed) {
        (Expected::Acquired(FenceRule::Same(want)), Observed::Acquired(got)) => got == want,
        (Expected::Acquired(FenceRule::Above(last)), Observed::Acquired(got)) => {
            last.is_none_or(|last| *got > last)
        }
        (Expected::Held { remaining }, Observed::Held(Some(got))) => {
            close(*got, *remaining, tolerance)
        }
        (Expected::Answer(want), Observed::Answer(got)) => want == got,
        (Expected::Free, Observed::Lease(None)) => true,
        (
            Expected::Leased {
                owner,
                remaining,
                fence,
            },
            Observed::Lease(Some(info)),
        ) => {
            owner_token(*owner).is_ok_and(|t| t == info.owner)
                && close(info.remaining, *remaining, tolerance)
                && fence.is_none_or(|f| f == info.fence)
        }
        (Expected::Transient, Observed::Error(e)) => e.is_transient(),
        (Expected::Nothing, Observed::Nothing) => true,
        _ => false,
    }
}

/// The run's keys and owners.
struct Names {
    run: String,
}

impl Names {
    fn key(&self, key: u8) -> Result<LockKey, String> {
        LockKey::new(KEY_PREFIX, &format!("model:{}:k{key}", self.run))
            .map_err(|e| format!("key k{key}: {e}"))
    }
}

async fn call(
    backend: &FaultyBackend,
    clock: &dyn ModelClock,
    names: &Names,
    op: &Op,
) -> Result<Observed, String> {
    let result = match *op {
        Op::TryAcquire { owner, key, ttl_ms } => backend
            .try_acquire(
                &names.key(key)?,
                owner_token(owner)?,
                Duration::from_millis(ttl_ms),
            )
            .await
            .map(|r| match r {
                AcquireResult::Acquired(lease) => Observed::Acquired(lease.fence),
                AcquireResult::Held { remaining } => Observed::Held(remaining),
            }),
        Op::Release { owner, key } => backend
            .release(&names.key(key)?, owner_token(owner)?)
            .await
            .map(Observed::Answer),
        Op::Extend { owner, key, ttl_ms } => backend
            .extend(
                &names.key(key)?,
                owner_token(owner)?,
                Duration::from_millis(ttl_ms),
            )
            .await
            .map(Observed::Answer),
        Op::ForceRelease { key } => backend
            .force_release(&names.key(key)?)
            .await
            .map(Observed::Answer),
        Op::Inspect { key } => backend.inspect(&names.key(key)?).await.map(Observed::Lease),
        Op::Advance { ms } => {
            clock.advance(Duration::from_millis(ms))?;
            Ok(Observed::Nothing)
        }
        Op::Fault { ops } => {
            backend.fail_next(ops);
            Ok(Observed::Nothing)
        }
    };
    Ok(result.unwrap_or_else(Observed::Error))
}

/// Run `ops` on `backend` (wrapped in a [`FaultyBackend`] for [`Op::Fault`]), moving time with
/// `clock`, and compare every answer with the [`Model`].
///
/// Owners are fixed owner tokens; keys are `_lock:model:<run>:k<i>` with a `<run>` unique to
/// this call, so runs can share a store. `clock` must be the store's clock (the memory
/// backend's [`ManualClock`]) or [`RealTime`] for a store with its own clock.
///
/// `Err` names the first step whose answer differs from the model's, with both sides and the
/// script up to that step with what the backend answered.
pub async fn check(
    backend: Arc<dyn LockBackend>,
    clock: &dyn ModelClock,
    ops: &[Op],
) -> Result<(), String> {
    let backend = FaultyBackend::from_arc(backend);
    let names = Names {
        run: OwnerToken::new().to_string(),
    };
    let tolerance = clock.tolerance();
    let mut model = Model::new();
    let mut now = Duration::ZERO;
    let mut trace = String::new();
    for (step, op) in ops.iter().enumerate() {
        let expected = model.apply(op, now);
        let observed = call(&backend, clock, &names, op)
            .await
            .map_err(|e| format!("step {step} `{op:?}`: {e}\nscript so far:\n{trace}"))?;
        if !matches(&expected, &observed, tolerance) {
            return Err(format!(
                "step {step} of {len} `{op:?}` on the {name} backend:\n  \
                 backend answered {observed}\n  model expected   {expected}{tol}\n\
                 script so far (with the backend's answers):\n{trace}  {step}: {op:?} -> {observed}   <-- here",
                len = ops.len(),
                name = backend.name(),
                tol = if tolerance.is_zero()
                    || !matches!(expected, Expected::Held { .. } | Expected::Leased { .. })
                {
                    String::new()
                } else {
                    format!(" (remaining times within {tolerance:?})")
                },
            ));
        }
        match (op, &observed) {
            (Op::TryAcquire { key, .. }, Observed::Acquired(fence)) => {
                model.observe_fence(*key, *fence);
            }
            (Op::Advance { ms }, _) => now = now.saturating_add(Duration::from_millis(*ms)),
            _ => {}
        }
        trace.push_str(&format!("  {step}: {op:?} -> {observed}\n"));
    }
    Ok(())
}

/// A test double that **breaks the contract on purpose**: `release` forgets the owner check
/// and deletes the lease whoever holds it (it forwards to `force_release`). Everything else is
/// the wrapped backend's. [`check`] must catch it: a release by a non-holder answers `true`
/// and frees the key. **Never use it to protect anything.**
#[derive(Clone)]
pub struct ForgetfulBackend {
    inner: Arc<dyn LockBackend>,
}

impl fmt::Debug for ForgetfulBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgetfulBackend")
            .field("inner", &self.inner.name())
            .finish()
    }
}

impl ForgetfulBackend {
    /// Wrap `inner`.
    pub fn new(inner: impl LockBackend) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Wrap a shared backend.
    pub fn from_arc(inner: Arc<dyn LockBackend>) -> Self {
        ForgetfulBackend { inner }
    }
}

#[async_trait]
impl LockBackend for ForgetfulBackend {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.inner.try_acquire(key, token, ttl).await
    }

    async fn release(&self, key: &LockKey, _token: OwnerToken) -> Result<bool, BackendError> {
        self.inner.force_release(key).await
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        self.inner.extend(key, token, ttl).await
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        self.inner.inspect(key).await
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        self.inner.force_release(key).await
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner.listen(key).await
    }

    fn name(&self) -> &'static str {
        "forgetful"
    }
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
                ttl_ms: 50,
            },
            Op::Release { owner: 2, key: 1 },
            Op::Advance { ms: 300 },
            Op::Fault { ops: 2 },
        ];
        assert_eq!(
            format!("{ops:?}"),
            "[try_acquire(o0, k1, ttl=50ms), release(o2, k1), advance(300ms), fail_next(2)]"
        );
        assert_eq!(
            script(&ops[..2]),
            "  0: try_acquire(o0, k1, ttl=50ms)\n  1: release(o2, k1)\n"
        );
    }

    #[test]
    fn model_expires_at_ttl_and_faults_change_nothing() {
        let mut m = Model::new();
        let ms = Duration::from_millis;
        let acquire = |owner| Op::TryAcquire {
            owner,
            key: 0,
            ttl_ms: 100,
        };
        assert_eq!(
            m.apply(&acquire(0), ms(0)),
            Expected::Acquired(FenceRule::Above(None))
        );
        m.observe_fence(0, 7);
        assert_eq!(m.apply(&Op::Fault { ops: 1 }, ms(0)), Expected::Nothing);
        assert_eq!(
            m.apply(&Op::Release { owner: 0, key: 0 }, ms(0)),
            Expected::Transient
        );
        assert_eq!(
            m.apply(&acquire(1), ms(99)),
            Expected::Held { remaining: ms(1) }
        );
        assert_eq!(
            m.apply(&acquire(0), ms(99)),
            Expected::Acquired(FenceRule::Same(7))
        );
        assert_eq!(
            m.apply(&acquire(1), ms(199)),
            Expected::Acquired(FenceRule::Above(Some(7)))
        );
        assert!(owner_token(0).is_ok_and(|t| owner_label(t) == "o0"));
    }
}
