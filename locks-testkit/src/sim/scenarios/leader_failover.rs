//! `leader-failover`: candidates run an election on one role, each through its own service
//! over its own [`FaultyBackend`]; a controller deploys the leader away or cuts it off from
//! the store. The world's checker counts two leaders acting at once, and actions of a stale
//! term.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{AcquireOptions, LeaseHandle, LeaseState, LockService};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::faulty::FaultyBackend;
use crate::sim::ctx::{Ctx, ERROR_PAUSE, Outcome};
use crate::sim::util::{lock, stop_at, to_u64, worker_seed};

/// The shortest time between two actions of a leader, so that a leader with a zero hold time
/// still lets (paused) time advance.
const MIN_ACTION_INTERVAL: Duration = Duration::from_millis(1);

/// The role's world: who leads, what the leaders did, and the fault controls.
struct World {
    acting: AtomicU64,
    max_term: Mutex<u64>,
    actions: AtomicU64,
    overlapping: AtomicU64,
    stale: AtomicU64,
    elections: AtomicU64,
    deploys: AtomicU64,
    cutoffs: AtomicU64,
    current: Mutex<Option<usize>>,
    deploy: Vec<watch::Sender<u64>>,
    faulty: Vec<FaultyBackend>,
    campaign_since: Vec<Mutex<Instant>>,
}

/// Runs the scenario's workers to the end and sums up what its checker saw.
pub(in crate::sim) async fn run(
    ctx: &Arc<Ctx>,
    services: &[LockService],
    faulty: Vec<FaultyBackend>,
) -> Outcome {
    let candidates = ctx.cfg.workers;
    let world = Arc::new(World {
        acting: AtomicU64::new(0),
        max_term: Mutex::new(0),
        actions: AtomicU64::new(0),
        overlapping: AtomicU64::new(0),
        stale: AtomicU64::new(0),
        elections: AtomicU64::new(0),
        deploys: AtomicU64::new(0),
        cutoffs: AtomicU64::new(0),
        current: Mutex::new(None),
        deploy: (0..candidates).map(|_| watch::channel(0).0).collect(),
        faulty,
        campaign_since: (0..candidates).map(|_| Mutex::new(ctx.start)).collect(),
    });
    let mut tasks = JoinSet::new();
    for who in 0..candidates {
        tasks.spawn(candidate(
            Arc::clone(ctx),
            Arc::clone(&world),
            who,
            services.get(who).cloned(),
        ));
    }
    tasks.spawn(controller(Arc::clone(ctx), Arc::clone(&world)));
    ctx.join(tasks).await;
    for f in &world.faulty {
        f.set_unavailable(false);
    }

    let overlapping = world.overlapping.load(Ordering::SeqCst);
    let stale = world.stale.load(Ordering::SeqCst);
    let elections = world.elections.load(Ordering::SeqCst);
    let deploys = world.deploys.load(Ordering::SeqCst);
    let cutoffs = world.cutoffs.load(Ordering::SeqCst);
    let actions = world.actions.load(Ordering::SeqCst);
    let mut details = Vec::new();
    if overlapping > 0 {
        details.push(format!(
            "{overlapping} action(s) while another leader was acting"
        ));
    }
    if stale > 0 {
        details.push(format!(
            "{stale} action(s) by a stale leader (a term lower than an earlier action's)"
        ));
    }
    let mut problems = Vec::new();
    if elections == 0 {
        problems.push("no leader was ever elected".to_owned());
    } else if actions == 0 {
        problems.push("no leader ever acted".to_owned());
    }
    if deploys + cutoffs == 0 {
        problems
            .push("no failover was injected (no leader at any fault time): run longer".to_owned());
    }
    Outcome {
        ops: Some(actions),
        violations: overlapping.saturating_add(stale),
        counters: vec![
            ("candidates", to_u64(candidates)),
            ("elections", elections),
            ("actions", actions),
            ("deploys", deploys),
            ("cutoffs", cutoffs),
            ("overlapping_actions", overlapping),
            ("stale_actions", stale),
        ],
        details,
        problems,
    }
}

/// One candidate process: campaigns, leads while elected, and restarts after a deploy.
async fn candidate(ctx: Arc<Ctx>, world: Arc<World>, who: usize, service: Option<LockService>) {
    let Some(sender) = world.deploy.get(who) else {
        return;
    };
    let mut deploys = sender.subscribe();
    let role = ctx.names.first().cloned().unwrap_or_default();
    let election = if ctx.locking {
        match service.as_ref().map(|s| s.election(&role)) {
            Some(Ok(election)) => Some(election),
            _ => {
                ctx.count_error();
                return;
            }
        }
    } else {
        None
    };
    let restart_delay = ctx.cfg.ttl / 4;
    loop {
        if ctx.past_deadline() {
            break;
        }
        if let Some(since) = world.campaign_since.get(who) {
            *lock(since) = Instant::now();
        }
        let deadline = ctx.deadline;
        let stop = async {
            tokio::select! {
                r = deploys.changed() => {
                    if r.is_err() {
                        stop_at(deadline).await;
                    }
                }
                () = stop_at(deadline) => {}
            }
        };
        match &election {
            Some(election) => {
                let task = |handle: LeaseHandle| {
                    lead(Arc::clone(&ctx), Arc::clone(&world), who, Some(handle))
                };
                if election
                    .run_until(AcquireOptions::new(), task, stop)
                    .await
                    .is_err()
                {
                    ctx.count_error();
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
            None => {
                tokio::select! {
                    () = lead(Arc::clone(&ctx), Arc::clone(&world), who, None) => {}
                    () = stop => {}
                }
            }
        }
        if ctx.past_deadline() {
            break;
        }
        // Deployed: the new version of the process starts a moment later.
        tokio::select! {
            () = tokio::time::sleep(restart_delay) => {}
            () = stop_at(deadline) => break,
        }
    }
}

/// Ends a leader's tenure when its task is dropped (cancelled by `run_until`).
struct Tenure<'a> {
    ctx: &'a Ctx,
    world: &'a World,
    who: usize,
}

impl Drop for Tenure<'_> {
    fn drop(&mut self) {
        self.ctx.left(self.who, 0);
        let mut current = lock(&self.world.current);
        if *current == Some(self.who) {
            *current = None;
        }
        drop(current);
        if let Some(since) = self.world.campaign_since.get(self.who) {
            *lock(since) = Instant::now();
        }
    }
}

/// The leader task: act every hold time while the lease is trusted. Never returns; it is
/// cancelled when leadership ends.
async fn lead(ctx: Arc<Ctx>, world: Arc<World>, who: usize, handle: Option<LeaseHandle>) {
    let term = handle.as_ref().map_or(0, |h| h.fence());
    if ctx.locking
        && let Some(since) = world.campaign_since.get(who)
    {
        let waited = lock(since).elapsed();
        ctx.record_wait(waited);
    }
    world.elections.fetch_add(1, Ordering::SeqCst);
    *lock(&world.current) = Some(who);
    ctx.entered(who, 0, term);
    let _tenure = Tenure {
        ctx: &ctx,
        world: &world,
        who,
    };
    let mut rng = fastrand::Rng::with_seed(worker_seed(ctx.cfg.seed ^ term, who));
    loop {
        // A careful leader does not act while a renewal is unconfirmed (`Unknown`).
        let trusted = handle
            .as_ref()
            .is_none_or(|h| h.state() == LeaseState::Held);
        if trusted {
            act(&ctx, &world, term).await;
        }
        tokio::time::sleep(ctx.hold(&mut rng).max(MIN_ACTION_INTERVAL)).await;
    }
}

/// Counts a leader in the act while it lives.
struct Acting<'a>(&'a World);

impl Drop for Acting<'_> {
    fn drop(&mut self) {
        self.0.acting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One action of a leader, stamped with its term; the checker looks at both invariants.
async fn act(ctx: &Ctx, world: &World, term: u64) {
    let now = world.acting.fetch_add(1, Ordering::SeqCst) + 1;
    let acting = Acting(world);
    if now > 1 {
        world.overlapping.fetch_add(1, Ordering::SeqCst);
        ctx.count_violation();
    }
    {
        let mut max = lock(&world.max_term);
        if term < *max {
            world.stale.fetch_add(1, Ordering::SeqCst);
            ctx.count_violation();
        } else {
            *max = term;
        }
    }
    world.actions.fetch_add(1, Ordering::SeqCst);
    ctx.progress.add_op();
    // The action takes a moment: every other task may run now.
    tokio::task::yield_now().await;
    drop(acting);
}

/// Every `fault_interval`: deploy the current leader away, or cut it off from the store
/// for two ttls, alternately.
async fn controller(ctx: Arc<Ctx>, world: Arc<World>) {
    let cut_for = ctx.cfg.ttl.saturating_mul(2);
    let mut faults: u64 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(ctx.cfg.fault_interval) => {}
            () = stop_at(ctx.deadline) => break,
        }
        let leader = *lock(&world.current);
        let Some(leader) = leader else {
            continue;
        };
        if faults.is_multiple_of(2) {
            if let Some(tx) = world.deploy.get(leader) {
                tx.send_modify(|generation| *generation = generation.wrapping_add(1));
                world.deploys.fetch_add(1, Ordering::SeqCst);
            }
        } else {
            let link = world.faulty.get(leader);
            if let Some(f) = link {
                f.set_unavailable(true);
            }
            world.cutoffs.fetch_add(1, Ordering::SeqCst);
            tokio::select! {
                () = tokio::time::sleep(cut_for) => {}
                () = stop_at(ctx.deadline) => {}
            }
            if let Some(f) = link {
                f.set_unavailable(false);
            }
        }
        faults += 1;
    }
}
