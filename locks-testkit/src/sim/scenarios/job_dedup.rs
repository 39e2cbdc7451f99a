//! `job-dedup`: a job fires on every instance, each claims it with `try_acquire` and skips it
//! when contended; the [`AtMostOnce`] checker counts a job that ran twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use locks_core::LockService;

use super::same_items::do_every_item;
use crate::sim::checker::{AtMostOnce, OnceTally};
use crate::sim::ctx::{Ctx, How, Outcome};
use crate::sim::util::{examples, to_u64};

struct Jobs {
    work: AtMostOnce,
    skipped_in_progress: AtomicU64,
}

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let count = ctx.names.len();
    let jobs = Arc::new(Jobs {
        work: AtMostOnce::new(count),
        skipped_in_progress: AtomicU64::new(0),
    });
    ctx.run_workers(services, |ctx, service, worker| {
        let jobs = Arc::clone(&jobs);
        // The job fires on every instance: all walk the same list in the same order, and
        // skip a job whose lock is held (someone else is running it).
        async move {
            let skipped = do_every_item(&ctx, &jobs.work, &service, worker, How::Try).await;
            jobs.skipped_in_progress
                .fetch_add(skipped, Ordering::SeqCst);
        }
    })
    .await;

    let OnceTally {
        total: total_runs,
        twice,
        never,
        duplicates,
        skipped_done,
    } = jobs.work.tally();
    let mut details = Vec::new();
    if duplicates > 0 {
        details.push(format!(
            "{duplicates} duplicate run(s): {} job(s) ran more than once (jobs {})",
            twice.len(),
            examples(&twice)
        ));
    }
    let mut problems = Vec::new();
    if !never.is_empty() {
        problems.push(format!(
            "{} of {count} job(s) never ran (jobs {}): the run hit its time limit or every \
             attempt failed",
            never.len(),
            examples(&never)
        ));
    }
    Outcome {
        ops: None,
        violations: duplicates,
        counters: vec![
            ("jobs", to_u64(count)),
            ("runs", total_runs),
            ("duplicate_runs", duplicates),
            ("jobs_run_twice", to_u64(twice.len())),
            (
                "skipped_in_progress",
                jobs.skipped_in_progress.load(Ordering::SeqCst),
            ),
            ("skipped_done", skipped_done),
            ("jobs_never_run", to_u64(never.len())),
        ],
        details,
        problems,
    }
}
