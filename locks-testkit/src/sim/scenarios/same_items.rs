//! What `double-payment` and `job-dedup` share: every instance walks the same items in the
//! same order and, under each item's lock, does the item unless it is done already; the
//! [`AtMostOnce`] checker counts an item done twice, and its tally is reported in the
//! scenario's own [`Words`].

use locks_core::{AcquireOptions, LockService};

use crate::sim::checker::{AtMostOnce, OnceTally};
use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::{examples, to_u64};

/// How a scenario reports an [`AtMostOnce`] tally.
pub(super) struct Words {
    /// An item, in the singular (`order`).
    pub(super) item: &'static str,
    /// Doing an item once, as a noun (`charge`).
    pub(super) deed: &'static str,
    /// What happened to an item done more than once (`charged more than once`).
    pub(super) done_twice: &'static str,
    /// What happened to an item never done (`were never charged`).
    pub(super) never_done: &'static str,
    /// The counters, in report order: the items, how often they were done, the duplicates,
    /// the items done more than once, the entries that found their item done already, the
    /// items never done.
    pub(super) counters: [&'static str; 6],
}

impl Words {
    /// The outcome of a run over `items` items whose checker counted `tally`. The scenario's
    /// own counters, `extra`, come after the items done more than once.
    pub(super) fn outcome(
        &self,
        items: usize,
        tally: OnceTally,
        extra: impl IntoIterator<Item = (&'static str, u64)>,
    ) -> Outcome {
        let Words { item, deed, .. } = self;
        let OnceTally {
            total,
            twice,
            never,
            duplicates,
            skipped_done,
        } = tally;
        let mut details = Vec::new();
        if duplicates > 0 {
            details.push(format!(
                "{duplicates} duplicate {deed}(s): {} {item}(s) {} ({item}s {})",
                twice.len(),
                self.done_twice,
                examples(&twice)
            ));
        }
        let mut problems = Vec::new();
        if !never.is_empty() {
            problems.push(format!(
                "{} of {items} {item}(s) {} ({item}s {}): the run hit its time limit or every \
                 attempt failed",
                never.len(),
                self.never_done,
                examples(&never)
            ));
        }
        let [
            items_name,
            total_name,
            duplicates_name,
            twice_name,
            skipped_name,
            never_name,
        ] = self.counters;
        let mut counters = vec![
            (items_name, to_u64(items)),
            (total_name, total),
            (duplicates_name, duplicates),
            (twice_name, to_u64(twice.len())),
        ];
        counters.extend(extra);
        counters.push((skipped_name, skipped_done));
        counters.push((never_name, to_u64(never.len())));
        Outcome {
            ops: None,
            violations: duplicates,
            counters,
            details,
            problems,
        }
    }
}

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
