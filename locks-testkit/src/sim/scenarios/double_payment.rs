//! `double-payment`: every instance receives the same stream of order ids and charges an
//! unpaid order under its lock; the [`AtMostOnce`] ledger counts an order charged twice.

use std::sync::Arc;

use locks_core::LockService;

use super::same_items::{Words, do_every_item};
use crate::sim::checker::AtMostOnce;
use crate::sim::ctx::{Ctx, How, Outcome};

/// The shared ledger (paid orders) and the payment provider's record of charges.
type Ledger = AtMostOnce;

/// The report's words and counters.
const WORDS: Words = Words {
    item: "order",
    deed: "charge",
    done_twice: "charged more than once",
    never_done: "were never charged",
    counters: [
        "orders",
        "charges",
        "duplicate_charges",
        "orders_charged_twice",
        "already_paid_skips",
        "unpaid_orders",
    ],
};

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

    WORDS.outcome(orders, ledger.tally(), [])
}
