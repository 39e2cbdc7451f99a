//! The [`proptest`](mod@proptest) strategies that generate scripts, and the shrinker that
//! makes a failing script short.

use std::ops::RangeInclusive;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, NewTree, Union, ValueTree};
use proptest::test_runner::TestRunner;

use super::ops::{KEYS, Kind, MAX_FAULTS, MAX_PERMITS, OWNERS, Op, REAL_TIME_TTL_MS, TTL_MS};

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

/// Mostly mutexes; permits of a semaphore of 1 to [`MAX_PERMITS`]. Shrinks towards the mutex.
fn kind_strategy() -> BoxedStrategy<Kind> {
    prop_oneof![
        3 => Just(Kind::Mutex),
        2 => (1..=MAX_PERMITS).prop_map(|limit| Kind::Permit { limit }),
    ]
    .boxed()
}

fn op_strategy(ttl: RangeInclusive<u64>, with_advance: bool) -> BoxedStrategy<Op> {
    let owner = 0..OWNERS;
    let key = 0..KEYS;
    let kind = kind_strategy();
    let ttl = ttl_strategy(ttl);
    let acquire = (owner.clone(), key.clone(), kind.clone(), ttl.clone()).prop_map(
        |(owner, key, kind, ttl_ms)| Op::TryAcquire {
            owner,
            key,
            kind,
            ttl_ms,
        },
    );
    let release = (owner.clone(), key.clone(), kind.clone())
        .prop_map(|(owner, key, kind)| Op::Release { owner, key, kind });
    let extend =
        (owner, key.clone(), kind.clone(), ttl).prop_map(|(owner, key, kind, ttl_ms)| Op::Extend {
            owner,
            key,
            kind,
            ttl_ms,
        });
    let force = (key.clone(), kind.clone()).prop_map(|(key, kind)| Op::ForceRelease { key, kind });
    let holders = (key, kind).prop_map(|(key, kind)| Op::Holders { key, kind });
    let fault = (1..=MAX_FAULTS).prop_map(|ops| Op::Fault { ops });
    // Weighted, in the order a failing step shrinks (towards the first).
    let mut steps = vec![
        (4, acquire.boxed()),
        (2, release.boxed()),
        (2, extend.boxed()),
        (1, force.boxed()),
        (2, holders.boxed()),
    ];
    if with_advance {
        let advance =
            prop_oneof![select(GRID_MS.to_vec()), 1u64..=2500].prop_map(|ms| Op::Advance { ms });
        steps.push((3, advance.boxed()));
    }
    steps.push((1, fault.boxed()));
    Union::new_weighted(steps).boxed()
}

/// Scripts of 1 to `max_len` steps over the whole domain, [`Op::Advance`] included, with ttls
/// in [`TTL_MS`]: for stores whose clock the test moves (the memory backend on a
/// [`ManualClock`](locks_memory::ManualClock)).
///
/// A failing script shrinks like a `Vec` (drop steps, then simplify each step), and then
/// drops steps again after the steps were simplified, so counterexamples come out short.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    Scripts::new(op_strategy(TTL_MS, true), max_len)
}

/// Scripts of 1 to `max_len` steps without [`Op::Advance`], with ttls in
/// [`REAL_TIME_TTL_MS`]: for stores with their own clock (Redis), checked with
/// [`RealTime`](super::RealTime).
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
