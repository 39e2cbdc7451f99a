//! `double-payment`: every instance receives the same stream of order ids and charges an
//! unpaid order under its lock; the [`AtMostOnce`] ledger counts an order charged twice.

use std::sync::Arc;

use locks_core::LockService;

use super::same_items::do_every_item;
use crate::sim::checker::{AtMostOnce, OnceTally};
use crate::sim::ctx::{Ctx, How, Outcome};
use crate::sim::util::{examples, to_u64};

/// The shared ledger (paid orders) and the payment provider's record of charges.
type Ledger = AtMostOnce;

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let orders = ctx.names.len();
    let ledger = Arc::new(Ledger::new(orders));
    ctx.run_workers(services, |ctx, service, worker| {
        let ledger = Arc::clone(&ledger);
        // Every instance receives the same stream of orders, in the same order; an order
        // whose lock it cannot get is left to another instance.
        async move {
            do_every_item(&ctx, &ledger, &service, worker, How::Wait).await;
        }
    })
    .await;

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
