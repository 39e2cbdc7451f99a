//! `mutex`: N workers pick one of K keys at random, hold its lock for a random time and
//! release it; the generic checker counts the holders of every key at every instant (a
//! violation: two at once).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use locks_core::{AcquireOptions, LockService};
use tokio::task::JoinSet;

use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::hold_for;

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let mut tasks = JoinSet::new();
    for worker in 0..ctx.cfg.workers {
        let Some(service) = Ctx::service_for(services, worker) else {
            break;
        };
        tasks.spawn(run_worker(Arc::clone(ctx), service, worker));
    }
    ctx.join(tasks).await;
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
    let mut rng = ctx.rng(worker);
    let mut done: u64 = 0;
    loop {
        if ctx.ops_exhausted(done) || ctx.past_deadline() {
            break;
        }
        let key = rng.usize(..ctx.names.len());
        let hold = ctx.hold(&mut rng);
        let attempt = ctx
            .attempt(&service, worker, key, AcquireOptions::new(), How::Wait)
            .await;
        match attempt {
            Attempt::Stopped => break,
            Attempt::Entered(section) => {
                done += 1;
                hold_for(hold).await;
                ctx.count_release(section.leave().await);
            }
            Attempt::Contended | Attempt::TimedOut | Attempt::Failed => done += 1,
        }
    }
}
