//! `double-payment`: every instance receives the same stream of order ids and charges an
//! unpaid order under its lock; the [`AtMostOnce`] ledger counts an order charged twice.

use std::sync::Arc;

use locks_core::{AcquireOptions, LockService};
use tokio::task::JoinSet;

use crate::sim::checker::{AtMostOnce, OnceTally};
use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::{examples, to_u64};

/// The shared ledger (paid orders) and the payment provider's record of charges.
type Ledger = AtMostOnce;

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let orders = ctx.names.len();
    let ledger = Arc::new(Ledger::new(orders));
    let mut tasks = JoinSet::new();
    for worker in 0..ctx.cfg.workers {
        let Some(service) = Ctx::service_for(services, worker) else {
            break;
        };
        tasks.spawn(run_worker(
            Arc::clone(ctx),
            Arc::clone(&ledger),
            service,
            worker,
        ));
    }
    ctx.join(tasks).await;

    let OnceTally {
        total: charges,
        twice,
        never: unpaid,
        duplicates,
        skipped_done: already_paid,
    } = ledger.tally();
    let mut details = Vec::new();
    if duplicates > 0 {
        details.push(format!(
            "{duplicates} duplicate charge(s): {} order(s) charged more than once \
             (orders {})",
            twice.len(),
            examples(&twice)
        ));
    }
    let mut problems = Vec::new();
    if !unpaid.is_empty() {
        problems.push(format!(
            "{} of {orders} order(s) were never charged (orders {}): the run hit its time \
             limit or every attempt failed",
            unpaid.len(),
            examples(&unpaid)
        ));
    }
    Outcome {
        ops: None,
        violations: duplicates,
        counters: vec![
            ("orders", to_u64(orders)),
            ("charges", charges),
            ("duplicate_charges", duplicates),
            ("orders_charged_twice", to_u64(twice.len())),
            ("already_paid_skips", already_paid),
            ("unpaid_orders", to_u64(unpaid.len())),
        ],
        details,
        problems,
    }
}

async fn run_worker(ctx: Arc<Ctx>, ledger: Arc<Ledger>, service: LockService, worker: usize) {
    let mut rng = ctx.rng(worker);
    // Every instance receives the same stream of orders, in the same order.
    for order in 0..ctx.names.len() {
        if ctx.past_deadline() {
            break;
        }
        let hold = ctx.hold(&mut rng);
        let attempt = ctx
            .attempt(&service, worker, order, AcquireOptions::new(), How::Wait)
            .await;
        let section = match attempt {
            Attempt::Entered(section) => section,
            Attempt::Stopped => break,
            // Another instance will charge it.
            Attempt::Contended | Attempt::TimedOut | Attempt::Failed => continue,
        };
        // Charge unless paid: the provider records the charge, then answers after `hold`.
        if !ledger.perform(&ctx.progress, order, hold).await {
            break;
        }
        ctx.count_release(section.leave().await);
    }
}
