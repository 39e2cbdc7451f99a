//! `mutex`: N workers pick one of K keys at random, hold its lock for a random time and
//! release it; the generic checker counts the holders of every key at every instant (a
//! violation: two at once).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use locks_core::{AcquireOptions, LockService};

use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::hold_for;

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    ctx.run_workers(services, run_worker).await;
    let overlaps = ctx.checker.overlaps.load(Ordering::SeqCst);
    let mut details = Vec::new();
    if overlaps > 0 {
        details.push(format!(
            "{overlaps} acquire(s) found the key already held (up to {} holders of one key \
             at once)",
            ctx.checker.max_concurrent.load(Ordering::SeqCst)
        ));
    }
    Outcome {
        ops: None,
        violations: overlaps,
        counters: vec![("overlaps", overlaps)],
        details,
        problems: Vec::new(),
    }
}

async fn run_worker(ctx: Arc<Ctx>, service: LockService, worker: usize) {
    let mut picks = ctx.random_picks(worker);
    while let Some((key, hold)) = picks.next(&ctx) {
        let attempt = ctx
            .attempt(&service, worker, key, AcquireOptions::new(), How::Wait)
            .await;
        match attempt {
            Attempt::Stopped => break,
            Attempt::Entered(section) => {
                hold_for(hold).await;
                ctx.count_release(section.leave().await);
            }
            Attempt::Contended | Attempt::TimedOut | Attempt::Failed => {}
        }
    }
}
