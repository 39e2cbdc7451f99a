//! `gc-pause` (Kleppmann): holders write to a store that rejects writes with a fence lower
//! than the highest it has seen; worker 0 pauses past its ttl with renewal off, then writes.
//! The store's checker counts a stale write accepted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use locks_core::{AcquireOptions, LockError, LockService};

use crate::sim::ctx::{Attempt, Ctx, How, Outcome};
use crate::sim::util::{hold_for, lock};

/// One resource of the fenced store, plus the checker's view of who holds it.
#[derive(Default)]
struct Resource {
    /// Bumped by every holder entering: a write from an older entry is stale.
    epoch: u64,
    /// The highest fence the store has seen.
    max_fence: u64,
}

/// The protected store: rejects writes with a fence lower than the highest it has seen.
struct Store {
    resources: Vec<Mutex<Resource>>,
    pauses: AtomicU64,
    writes: AtomicU64,
    accepted: AtomicU64,
    stale_attempts: AtomicU64,
    stale_rejected: AtomicU64,
    stale_accepted: AtomicU64,
    fresh_rejected: AtomicU64,
    expired_releases: AtomicU64,
}

impl Store {
    /// A holder entered `key`; with `fence`, it writes at once (a normal holder touches
    /// the store first thing). Returns its entry epoch.
    fn enter(&self, ctx: &Ctx, key: usize, fence: Option<u64>) -> u64 {
        let Some(resource) = self.resources.get(key) else {
            return 0;
        };
        let mut r = lock(resource);
        r.epoch += 1;
        let epoch = r.epoch;
        if let Some(fence) = fence {
            self.apply(ctx, &mut r, epoch, fence);
        }
        epoch
    }

    fn write(&self, ctx: &Ctx, key: usize, epoch: u64, fence: u64) {
        if let Some(resource) = self.resources.get(key) {
            let mut r = lock(resource);
            self.apply(ctx, &mut r, epoch, fence);
        }
    }

    fn apply(&self, ctx: &Ctx, r: &mut Resource, epoch: u64, fence: u64) {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let stale = epoch != r.epoch;
        let accepted = fence >= r.max_fence;
        if accepted {
            r.max_fence = fence;
            self.accepted.fetch_add(1, Ordering::SeqCst);
        }
        match (stale, accepted) {
            (true, true) => {
                self.stale_attempts.fetch_add(1, Ordering::SeqCst);
                self.stale_accepted.fetch_add(1, Ordering::SeqCst);
                ctx.count_violation();
            }
            (true, false) => {
                self.stale_attempts.fetch_add(1, Ordering::SeqCst);
                self.stale_rejected.fetch_add(1, Ordering::SeqCst);
            }
            (false, false) => {
                self.fresh_rejected.fetch_add(1, Ordering::SeqCst);
            }
            (false, true) => {}
        }
    }
}

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(ctx: &Arc<Ctx>, services: &[LockService]) -> Outcome {
    let store = Arc::new(Store {
        resources: ctx.names.iter().map(|_| Mutex::default()).collect(),
        pauses: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
        stale_attempts: AtomicU64::new(0),
        stale_rejected: AtomicU64::new(0),
        stale_accepted: AtomicU64::new(0),
        fresh_rejected: AtomicU64::new(0),
        expired_releases: AtomicU64::new(0),
    });
    ctx.run_workers(services, |ctx, service, worker| {
        run_worker(ctx, Arc::clone(&store), service, worker)
    })
    .await;

    let load = |c: &AtomicU64| c.load(Ordering::SeqCst);
    let pauses = load(&store.pauses);
    let attempts = load(&store.stale_attempts);
    let rejected = load(&store.stale_rejected);
    let accepted_stale = load(&store.stale_accepted);
    let mut details = Vec::new();
    if accepted_stale > 0 {
        details.push(format!(
            "{accepted_stale} of {attempts} stale write(s) accepted by the fenced store \
             (a holder wrote after its lease ran out and another holder had written)"
        ));
    }
    let mut problems = Vec::new();
    if attempts == 0 {
        problems.push(format!(
            "no stale write was attempted in {pauses} GC pause(s): nobody took the lock \
             during a pause (use more workers, fewer keys or a longer run)"
        ));
    }
    Outcome {
        ops: None,
        violations: accepted_stale,
        counters: vec![
            ("gc_pauses", pauses),
            ("writes", load(&store.writes)),
            ("writes_accepted", load(&store.accepted)),
            ("stale_attempts", attempts),
            ("stale_rejected", rejected),
            ("stale_accepted", accepted_stale),
            ("fresh_rejected", load(&store.fresh_rejected)),
            ("expired_releases", load(&store.expired_releases)),
        ],
        details,
        problems,
    }
}

async fn run_worker(ctx: Arc<Ctx>, store: Arc<Store>, service: LockService, worker: usize) {
    // Worker 0 is the one with the long GC pauses.
    let gc_prone = worker == 0;
    let pause = ctx.cfg.ttl.saturating_add(ctx.cfg.ttl / 2);
    let opts = if gc_prone {
        AcquireOptions::new().auto_renew(false)
    } else {
        AcquireOptions::new()
    };
    let mut picks = ctx.random_picks(worker);
    while let Some((key, hold)) = picks.next(&ctx) {
        let attempt = ctx
            .attempt(&service, worker, key, opts.clone(), How::Wait)
            .await;
        let section = match attempt {
            Attempt::Entered(section) => section,
            Attempt::Stopped => break,
            Attempt::Contended | Attempt::TimedOut | Attempt::Failed => continue,
        };
        let fence = section.fence;
        if gc_prone {
            let epoch = store.enter(&ctx, key, None);
            store.pauses.fetch_add(1, Ordering::SeqCst);
            // Stop the world: longer than the ttl, with no renewal running.
            tokio::time::sleep(pause).await;
            store.write(&ctx, key, epoch, fence);
            match section.leave().await {
                Some(Err(LockError::NotOwner { .. } | LockError::Lost { .. })) => {
                    store.expired_releases.fetch_add(1, Ordering::SeqCst);
                }
                other => ctx.count_release(other),
            }
        } else {
            let epoch = store.enter(&ctx, key, Some(fence));
            hold_for(hold).await;
            store.write(&ctx, key, epoch, fence);
            ctx.count_release(section.leave().await);
            // Other work before the next write: waiters in other processes get a turn.
            hold_for(hold).await;
        }
    }
}
