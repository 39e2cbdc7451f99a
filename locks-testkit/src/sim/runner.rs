//! [`run`]: build the services, run a scenario's workers, and gather the [`SimReport`];
//! [`Progress`]: the live figures of a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use locks_core::{LockBackend, LockError, LockService, RetryPolicy};

use super::config::SimConfig;
use super::ctx::Ctx;
use super::report::SimReport;
use super::scenario::Scenario;
use super::scenarios;
use crate::faulty::FaultyBackend;

/// Live figures of a running simulation, for a progress display: another thread or task
/// reads them while [`run_with_progress`] runs.
#[derive(Debug, Default)]
pub struct Progress {
    ops: AtomicU64,
    violations: AtomicU64,
}

impl Progress {
    /// Zero operations, zero violations.
    pub fn new() -> Self {
        Self::default()
    }

    /// Operations done so far (critical sections entered, or leader actions).
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Violations seen so far (best effort: some checkers only count at the end of a run).
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// Counts one operation.
    pub(super) fn add_op(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one violation.
    pub(super) fn add_violation(&self) {
        self.violations.fetch_add(1, Ordering::Relaxed);
    }
}

/// Run the simulation described by `cfg` on `backend`, and report what happened.
///
/// Builds the services over `backend` ([`SimConfig::effective_services`] of them, or one per
/// candidate in `leader-failover`, each over its own [`FaultyBackend`]; ttl, wait timeout and
/// a quick retry policy from `cfg`), spawns the workers on the current runtime, waits for all
/// of them, then shuts the services down.
///
/// Errors: [`LockError::InvalidOptions`] or [`LockError::InvalidTtl`] for a bad configuration.
/// Failures during the run are counted in the report, not returned.
pub async fn run(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> Result<SimReport, LockError> {
    run_with_progress(backend, cfg, Arc::new(Progress::new())).await
}

/// [`run`], updating `progress` as the run goes.
pub async fn run_with_progress(
    backend: Arc<dyn LockBackend>,
    cfg: &SimConfig,
    progress: Arc<Progress>,
) -> Result<SimReport, LockError> {
    cfg.validate()?;
    let locking = !cfg.unsafe_no_lock;
    let key_count = if cfg.scenario == Scenario::LeaderFailover {
        1
    } else {
        cfg.keys
    };
    let names = key_names(cfg.scenario, key_count);

    // Services first: a bad ttl is an error before anything runs.
    let mut faulty = Vec::new();
    let mut services = Vec::new();
    if cfg.scenario == Scenario::LeaderFailover {
        for _ in 0..cfg.workers {
            let f = FaultyBackend::from_arc(Arc::clone(&backend));
            services.push(build_service(Arc::new(f.clone()), cfg)?);
            faulty.push(f);
        }
    } else {
        for _ in 0..cfg.effective_services() {
            services.push(build_service(Arc::clone(&backend), cfg)?);
        }
    }

    let ctx = Arc::new(Ctx::new(cfg.clone(), locking, names, progress)?);
    let start = ctx.start;
    let outcome = match cfg.scenario {
        Scenario::Mutex => scenarios::mutex::run(&ctx, &services).await,
        Scenario::DoublePayment => scenarios::double_payment::run(&ctx, &services).await,
        Scenario::Oversell => scenarios::oversell::run(&ctx, &services).await,
        Scenario::JobDedup => scenarios::job_dedup::run(&ctx, &services).await,
        Scenario::LeaderFailover => scenarios::leader_failover::run(&ctx, &services, faulty).await,
        Scenario::GcPause => scenarios::gc_pause::run(&ctx, &services).await,
    };
    let elapsed = start.elapsed();
    for service in &services {
        service.shutdown().await;
    }

    let acquired = ctx.checker.acquired.load(Ordering::SeqCst);
    let fence_regressions = ctx.checker.fence_regressions.load(Ordering::SeqCst);
    let ops = outcome.ops.unwrap_or(acquired);
    let mut violation_details = outcome.details;
    if fence_regressions > 0 {
        violation_details.push(format!(
            "{fence_regressions} fence regression(s): a holder got a fence not larger than an \
             earlier holder's of the same key"
        ));
    }
    let secs = elapsed.as_secs_f64();
    Ok(SimReport {
        scenario: cfg.scenario,
        config: cfg.clone(),
        backend: backend.name(),
        locking,
        ops,
        acquired,
        timeouts: ctx.timeouts.load(Ordering::SeqCst),
        errors: ctx.errors.load(Ordering::SeqCst),
        violations: outcome.violations.saturating_add(fence_regressions),
        max_concurrent_per_key: ctx.checker.max_concurrent.load(Ordering::SeqCst),
        elapsed,
        ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
        wait: ctx.wait(),
        handoff: ctx.checker.handoff(),
        fence_regressions,
        counters: outcome.counters,
        violation_details,
        problems: outcome.problems,
    })
}

/// One service over `backend` with the run's ttl, wait timeout and a quick retry policy.
fn build_service(backend: Arc<dyn LockBackend>, cfg: &SimConfig) -> Result<LockService, LockError> {
    LockService::builder_arc(backend)
        .max_ttl(cfg.ttl.max(Duration::from_secs(300)))
        .default_ttl(cfg.ttl)
        .default_wait_timeout(cfg.wait_timeout)
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(50)),
        )
        .build()
}

/// Key names unique to this run, so runs sharing a store (a Redis server) never meet.
fn key_names(scenario: Scenario, count: usize) -> Vec<String> {
    let run = fastrand::u32(..);
    (0..count)
        .map(|k| format!("sim:{run:08x}:{scenario}:{k}"))
        .collect()
}
