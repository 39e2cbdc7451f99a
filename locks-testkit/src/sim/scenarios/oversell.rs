//! `oversell`: buyers race for the last units of every SKU, reading and writing the stock
//! under the SKU's lock; the shop counts units sold that were never taken out of stock, and
//! stock below zero.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use locks_core::{AcquireOptions, LockService};

use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::{examples, hold_for, to_u64};

/// The inventory (read and written as plain values, like a row without a transaction) and
/// the confirmed sales.
struct Shop {
    stock: Vec<AtomicI64>,
    sold: Vec<AtomicU64>,
    min_stock: AtomicI64,
    found_empty: AtomicU64,
}

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let skus = ctx.names.len();
    let initial = i64::try_from(ctx.cfg.stock).unwrap_or(i64::MAX);
    let shop = Arc::new(Shop {
        stock: (0..skus).map(|_| AtomicI64::new(initial)).collect(),
        sold: (0..skus).map(|_| AtomicU64::new(0)).collect(),
        min_stock: AtomicI64::new(initial),
        found_empty: AtomicU64::new(0),
    });
    ctx.run_workers(services, |ctx, service, worker| {
        run_worker(ctx, Arc::clone(&shop), service, worker)
    })
    .await;

    let mut sold_total: u64 = 0;
    let mut remaining_total: i64 = 0;
    let mut oversold_total: u64 = 0;
    let mut oversold_skus = Vec::new();
    let mut negative_skus = Vec::new();
    for sku in 0..skus {
        let (Some(stock), Some(sold)) = (shop.stock.get(sku), shop.sold.get(sku)) else {
            continue;
        };
        let stock = stock.load(Ordering::SeqCst);
        let sold = sold.load(Ordering::SeqCst);
        sold_total = sold_total.saturating_add(sold);
        remaining_total = remaining_total.saturating_add(stock);
        // Units taken out of stock; every sale must have taken one.
        let taken = u64::try_from(initial.saturating_sub(stock)).unwrap_or(0);
        if sold > taken {
            oversold_total += sold - taken;
            oversold_skus.push(sku);
        }
        if stock < 0 {
            negative_skus.push(sku);
        }
    }
    let min_stock = shop.min_stock.load(Ordering::SeqCst);
    let below_zero = if min_stock < 0 {
        to_u64(negative_skus.len()).max(1)
    } else {
        0
    };
    let mut details = Vec::new();
    if oversold_total > 0 {
        details.push(format!(
            "{oversold_total} unit(s) oversold: {sold_total} sold from an initial stock of \
             {} with {remaining_total} left (SKUs {})",
            ctx.cfg.stock.saturating_mul(to_u64(skus)),
            examples(&oversold_skus)
        ));
    }
    if below_zero > 0 {
        details.push(format!(
            "stock went below zero (lowest {min_stock}; SKUs {})",
            examples(&negative_skus)
        ));
    }
    let mut problems = Vec::new();
    if remaining_total > 0 {
        problems.push(format!(
            "did not sell out: {remaining_total} unit(s) left when the run ended (raise the \
             duration or lower the stock)"
        ));
    }
    Outcome {
        ops: None,
        violations: oversold_total.saturating_add(below_zero),
        counters: vec![
            ("skus", to_u64(skus)),
            ("initial_stock", ctx.cfg.stock.saturating_mul(to_u64(skus))),
            ("sold", sold_total),
            ("oversold", oversold_total),
            ("remaining", u64::try_from(remaining_total).unwrap_or(0)),
            ("stock_below_zero", below_zero),
            ("found_sold_out", shop.found_empty.load(Ordering::SeqCst)),
        ],
        details,
        problems,
    }
}

async fn run_worker(ctx: Arc<Ctx>, shop: Arc<Shop>, service: LockService, worker: usize) {
    let mut rng = ctx.rng(worker);
    let skus = shop.stock.len();
    loop {
        if ctx.past_deadline() {
            break;
        }
        // Browse: a random SKU that still shows stock; none left means sold out.
        let first = rng.usize(..skus.max(1));
        let Some(sku) = (0..skus).map(|i| (first + i) % skus).find(|&s| {
            shop.stock
                .get(s)
                .is_some_and(|v| v.load(Ordering::SeqCst) > 0)
        }) else {
            break;
        };
        let hold = ctx.hold(&mut rng);
        let attempt = ctx
            .attempt(&service, worker, sku, AcquireOptions::new(), How::Wait)
            .await;
        let section = match attempt {
            Attempt::Entered(section) => section,
            Attempt::Stopped => break,
            Attempt::Contended | Attempt::TimedOut | Attempt::Failed => continue,
        };
        let (Some(stock), Some(sold)) = (shop.stock.get(sku), shop.sold.get(sku)) else {
            break;
        };
        let seen = stock.load(Ordering::SeqCst);
        hold_for(hold).await;
        if seen > 0 {
            let left = seen - 1;
            stock.store(left, Ordering::SeqCst);
            sold.fetch_add(1, Ordering::SeqCst);
            shop.min_stock.fetch_min(left, Ordering::SeqCst);
            let taken = ctx
                .cfg
                .stock
                .saturating_sub(u64::try_from(left).unwrap_or(0));
            if sold.load(Ordering::SeqCst) > taken {
                ctx.count_violation();
            }
        } else {
            shop.found_empty.fetch_add(1, Ordering::SeqCst);
        }
        ctx.count_release(section.leave().await);
    }
}
