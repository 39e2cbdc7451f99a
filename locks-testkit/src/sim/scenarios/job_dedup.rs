//! `job-dedup`: a job fires on every instance, each claims it with `try_acquire` and skips it
//! when contended; the [`AtMostOnce`] checker counts a job that ran twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use locks_core::LockService;

use super::same_items::{Words, do_every_item};
use crate::sim::checker::AtMostOnce;
use crate::sim::ctx::{Ctx, How, Outcome};

struct Jobs {
    work: AtMostOnce,
    skipped_in_progress: AtomicU64,
}

/// The report's words and counters (besides `skipped_in_progress`: the entries that found
/// their job's lock held).
const WORDS: Words = Words {
    item: "job",
    deed: "run",
    done_twice: "ran more than once",
    never_done: "never ran",
    counters: [
        "jobs",
        "runs",
        "duplicate_runs",
        "jobs_run_twice",
        "skipped_done",
        "jobs_never_run",
    ],
};

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

    let skipped_in_progress = jobs.skipped_in_progress.load(Ordering::SeqCst);
    WORDS.outcome(
        count,
        jobs.work.tally(),
        [("skipped_in_progress", skipped_in_progress)],
    )
}
