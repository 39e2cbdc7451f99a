//! What `double-payment` and `job-dedup` share: every instance walks the same items in the
//! same order and, under each item's lock, does the item unless it is done already; the
//! [`AtMostOnce`] checker counts an item done twice.

use locks_core::{AcquireOptions, LockService};

use crate::sim::checker::AtMostOnce;
use crate::sim::ctx::{Attempt, Ctx, How};

/// `worker` walks every item of the run in order through `service`, asking for each item's
/// lock as `how` says, and does the item under it. An item it cannot get the lock of is left
/// to another instance. Returns how many items it skipped because their lock was held
/// (only [`How::Try`] reports that).
pub(super) async fn do_every_item(
    ctx: &Ctx,
    work: &AtMostOnce,
    service: &LockService,
    worker: usize,
    how: How,
) -> u64 {
    let mut rng = ctx.rng(worker);
    let mut contended = 0;
    for item in 0..ctx.names.len() {
        if ctx.past_deadline() {
            break;
        }
        let hold = ctx.hold(&mut rng);
        let attempt = ctx
            .attempt(service, worker, item, AcquireOptions::new(), how)
            .await;
        let section = match attempt {
            Attempt::Entered(section) => section,
            Attempt::Stopped => break,
            Attempt::Contended => {
                contended += 1;
                continue;
            }
            Attempt::TimedOut | Attempt::Failed => continue,
        };
        // Skipped if done; otherwise the side effect is recorded, then takes `hold`.
        if !work.perform(&ctx.progress, item, hold).await {
            break;
        }
        ctx.count_release(section.leave().await);
    }
    contended
}
