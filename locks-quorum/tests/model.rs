//! Property test: random scripts of mutex operations on 3- and 5-node memory quorums, with
//! random node faults (a minority of the nodes: down for some calls, restarted empty, clocks
//! jumping ahead; every node's clock skewed by up to ±10 s), must answer exactly as the
//! reference model says (fences included: strictly increasing across holders, the same for a
//! holder that acquires again).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::Restartable;
use locks_core::backend::{Dispatch, Operation, Outcome};
use locks_core::{BackendError, LeaseKind, LockBackend, LockKey, ReleaseListener};
use locks_memory::ManualClock;
use locks_quorum::QuorumBackend;
use locks_testkit::model::{self, Kind, ModelClock, Op};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// What a faulty node does at one of its calls.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer normally.
    None,
    /// Fail without reaching the store.
    Down,
    /// Lose everything first.
    Restart,
    /// Its clock jumps ahead by this many ms first.
    Jump(u64),
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        12 => Just(Fault::None),
        4 => Just(Fault::Down),
        1 => Just(Fault::Restart),
        2 => (1u64..3000).prop_map(Fault::Jump),
    ]
}

/// A node that follows a fault plan, one entry per call (then behaves).
#[derive(Debug)]
struct Flaky {
    node: Restartable,
    clock: ManualClock,
    plan: Vec<Fault>,
    calls: AtomicUsize,
}

impl Flaky {
    fn next_fault(&self) -> Result<(), BackendError> {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        match self.plan.get(i).copied().unwrap_or(Fault::None) {
            Fault::None => Ok(()),
            Fault::Down => Err(BackendError::transient("node down (plan)")),
            Fault::Restart => {
                self.node.restart_empty();
                Ok(())
            }
            Fault::Jump(ms) => {
                self.clock.advance(Duration::from_millis(ms));
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Dispatch for Flaky {
    fn name(&self) -> &'static str {
        "flaky"
    }
    fn supports(&self, kind: LeaseKind) -> bool {
        LockBackend::supports(&self.node, kind)
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        self.next_fault()?;
        op.send(&self.node).await
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        LockBackend::listen(&self.node, key).await
    }

    async fn list(
        &self,
        query: &locks_core::backend::ListQuery,
    ) -> Result<locks_core::backend::ListPage, BackendError> {
        LockBackend::list(&self.node, query).await
    }
}
locks_core::impl_lock_backend!(Flaky);

/// Every node's clock, moved together by the script.
struct Clocks(Vec<ManualClock>);

impl ModelClock for Clocks {
    fn advance(&self, by: Duration) -> Result<(), String> {
        for c in &self.0 {
            c.advance(by);
        }
        Ok(())
    }
    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }
}

/// A quorum of `n` nodes, the healthy majority first (so that, on a current-thread runtime,
/// their answers decide every operation), then the faulty minority following `plans`.
fn quorum(n: usize, skews: &[u64], plans: Vec<Vec<Fault>>) -> (QuorumBackend, Clocks) {
    let majority = n / 2 + 1;
    let mut builder = QuorumBackend::builder();
    let mut clocks = Vec::new();
    let mut plans = plans.into_iter();
    for i in 0..n {
        let clock = ManualClock::new();
        clock.advance(Duration::from_millis(skews.get(i).copied().unwrap_or(0)));
        let node = Restartable::new(Some(clock.clone()));
        builder = if i < majority {
            builder.node(node)
        } else {
            builder.node(Flaky {
                node,
                clock: clock.clone(),
                plan: plans.next().unwrap_or_default(),
                calls: AtomicUsize::new(0),
            })
        };
        clocks.push(clock);
    }
    (builder.build().expect("quorum"), Clocks(clocks))
}

/// Scripts of mutex operations only (the quorum supports no other kind).
fn mutex_ops() -> impl Strategy<Value = Vec<Op>> {
    model::ops(24).prop_map(|ops| {
        ops.into_iter()
            .filter(|op| match op {
                Op::TryAcquire { kind, .. }
                | Op::Release { kind, .. }
                | Op::Extend { kind, .. }
                | Op::ForceRelease { kind, .. }
                | Op::Holders { kind, .. } => *kind == Kind::Mutex,
                _ => true,
            })
            .collect()
    })
}

fn run(n: usize, skews: &[u64], plans: Vec<Vec<Fault>>, ops: &[Op]) -> Result<(), String> {
    let (quorum, clocks) = quorum(n, skews, plans);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(model::check(Arc::new(quorum), &clocks, ops))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_quorum_with_a_faulty_minority_matches_the_model(
        five in any::<bool>(),
        skews in proptest::collection::vec(0u64..20_000, 5),
        plans in proptest::collection::vec(proptest::collection::vec(fault(), 0..80), 2),
        ops in mutex_ops(),
    ) {
        let n = if five { 5 } else { 3 };
        if let Err(report) = run(n, &skews, plans, &ops) {
            return Err(TestCaseError::fail(report));
        }
    }
}

/// The check can fail: a quorum whose faulty nodes are a majority (two of three restarted
/// empty under a live lease) grants a second holder, which the model refuses.
#[test]
fn a_faulty_majority_is_caught() {
    let acquire = |owner| Op::TryAcquire {
        owner,
        key: 0,
        kind: Kind::Mutex,
        ttl_ms: 1000,
    };
    let ops = [acquire(0), acquire(1)];
    // Three nodes, majority 2; nodes 1 and 2 restart empty before the second acquire.
    let (quorum, clocks) = {
        let mut builder = QuorumBackend::builder();
        let mut clocks = Vec::new();
        for i in 0..3 {
            let clock = ManualClock::new();
            let node = Restartable::new(Some(clock.clone()));
            let plan = if i == 0 {
                vec![]
            } else {
                // Calls 0-2: the first acquire, its record read and write; 3: the second
                // acquire, after a restart.
                vec![Fault::None, Fault::None, Fault::None, Fault::Restart]
            };
            builder = builder.node(Flaky {
                node,
                clock: clock.clone(),
                plan,
                calls: AtomicUsize::new(0),
            });
            clocks.push(clock);
        }
        (builder.build().expect("quorum"), Clocks(clocks))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = rt.block_on(model::check(Arc::new(quorum), &clocks, &ops));
    assert!(out.is_err(), "a double grant went unnoticed");
}
