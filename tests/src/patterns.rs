//! The seven coordination patterns, each a small program over any backend that returns what
//! it observed, so that a test can check the promise it demonstrates.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use locks_core::{AcquireOptions, LockBackend, LockError, LockService, RetryPolicy};
use tokio::time::Instant;

fn service(backend: &Arc<dyn LockBackend>) -> Result<LockService, LockError> {
    LockService::builder_arc(Arc::clone(backend))
        .default_ttl(Duration::from_secs(5))
        .default_wait_timeout(Duration::from_secs(30))
        .retry(
            RetryPolicy::default()
                .initial_delay(Duration::from_millis(2))
                .max_delay(Duration::from_millis(100)),
        )
        .build()
}

/// Run `worker` on `n` service instances at once, each on its own task (as separate processes
/// would), and wait for all of them. The first error is returned; a task that panicked counts
/// as `ShuttingDown`.
async fn on_instances<F, Fut>(
    backend: &Arc<dyn LockBackend>,
    n: usize,
    worker: F,
) -> Result<(), LockError>
where
    F: Fn(usize, LockService) -> Fut,
    Fut: Future<Output = Result<(), LockError>> + Send + 'static,
{
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(tokio::spawn(worker(i, service(backend)?)));
    }
    for t in futures::future::join_all(tasks).await {
        t.map_err(|_| LockError::ShuttingDown)??;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A payment provider that rejects writes carrying an older fence than it has seen per order.
#[derive(Default)]
struct PaymentProvider {
    charges: Mutex<HashMap<u64, (u32, u64)>>, // order -> (charges, highest fence)
}

impl PaymentProvider {
    fn charged(&self, order: u64) -> bool {
        lock(&self.charges).get(&order).is_some_and(|(n, _)| *n > 0)
    }

    fn charge(&self, order: u64, fence: u64) -> bool {
        let mut charges = lock(&self.charges);
        let entry = charges.entry(order).or_insert((0, 0));
        if fence < entry.1 {
            return false; // a stale holder
        }
        entry.0 += 1;
        entry.1 = fence;
        true
    }
}

/// What the payment example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReport {
    /// Orders processed.
    pub orders: u64,
    /// How many orders were charged exactly once.
    pub charged_once: u64,
    /// Orders charged more than once (must be 0).
    pub double_charges: u64,
    /// Attempts that found the order already paid.
    pub skipped_already_paid: u64,
}

/// **Mutex: payment per order id.** `instances` service instances all receive the same
/// `orders` payment requests; under the order's lock each checks whether it is paid and
/// charges with its fencing token. Every order is charged exactly once.
pub async fn payment(
    backend: Arc<dyn LockBackend>,
    instances: usize,
    orders: u64,
) -> Result<PaymentReport, LockError> {
    let provider = Arc::new(PaymentProvider::default());
    let skipped = Arc::new(AtomicU64::new(0));
    on_instances(&backend, instances, |_, svc| {
        let (provider, skipped) = (provider.clone(), skipped.clone());
        async move {
            for order in 0..orders {
                let provider = provider.clone();
                let outcome = svc
                    .with_lock(&format!("payment:{order}"), |lease| async move {
                        if provider.charged(order) {
                            return Ok(true);
                        }
                        // Check right before the irreversible step, and send the fence along.
                        lease.ensure_held()?;
                        provider.charge(order, lease.fence());
                        Ok::<bool, LockError>(false)
                    })
                    .await?;
                let paid_already = outcome?;
                if paid_already {
                    skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(())
        }
    })
    .await?;
    let charges = lock(&provider.charges);
    Ok(PaymentReport {
        orders,
        charged_once: charges.values().filter(|(n, _)| *n == 1).count() as u64,
        double_charges: charges.values().filter(|(n, _)| *n > 1).count() as u64,
        skipped_already_paid: skipped.load(Ordering::Relaxed),
    })
}

/// What the leader-election example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderReport {
    /// Terms of the leaders, in the order they started leading.
    pub terms: Vec<u64>,
    /// Times two leaders ran their task at once (must be 0).
    pub overlaps: u64,
}

/// **Leader election.** `nodes` schedulers campaign for one role with `Election::run`; the
/// leader runs its loop until its node shuts down (a deploy), then another takes over, until
/// every node has led once. Terms increase and two leaders never act at once.
pub async fn leader_election(
    backend: Arc<dyn LockBackend>,
    nodes: usize,
) -> Result<LeaderReport, LockError> {
    let active = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicU64::new(0));
    let terms = Arc::new(Mutex::new(Vec::new()));
    let mut runs = Vec::new();
    let mut stops = Vec::new();
    let (elected_tx, mut elected_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    for node in 0..nodes {
        let svc = service(&backend)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(Some(stop_tx));
        let election = svc.election("scheduler")?;
        let (active, overlaps, terms, elected_tx) = (
            active.clone(),
            overlaps.clone(),
            terms.clone(),
            elected_tx.clone(),
        );
        runs.push(tokio::spawn(async move {
            election
                .run_until(
                    AcquireOptions::new().ttl(Duration::from_secs(2)),
                    move |lease| {
                        let (active, overlaps, terms, elected_tx) = (
                            active.clone(),
                            overlaps.clone(),
                            terms.clone(),
                            elected_tx.clone(),
                        );
                        async move {
                            struct Leading(Arc<AtomicUsize>);
                            impl Drop for Leading {
                                fn drop(&mut self) {
                                    self.0.fetch_sub(1, Ordering::SeqCst);
                                }
                            }
                            if active.fetch_add(1, Ordering::SeqCst) != 0 {
                                overlaps.fetch_add(1, Ordering::SeqCst);
                            }
                            let _leading = Leading(active);
                            lock(&terms).push(lease.fence());
                            let _ = elected_tx.send(node);
                            // The scheduler loop: runs until leadership is lost.
                            std::future::pending::<()>().await
                        }
                    },
                    async move {
                        let _ = stop_rx.await;
                    },
                )
                .await
        }));
    }
    for _ in 0..nodes {
        let Some(leader) = elected_rx.recv().await else {
            break;
        };
        // Deploy: the leading node is told to stop; its leader task is cancelled, then it
        // resigns, and the next node is elected.
        if let Some(stop) = stops.get_mut(leader).and_then(Option::take) {
            let _ = stop.send(());
        }
    }
    for r in futures::future::join_all(runs).await {
        r.map_err(|_| LockError::ShuttingDown)??;
    }
    let terms = lock(&terms).clone();
    Ok(LeaderReport {
        terms,
        overlaps: overlaps.load(Ordering::SeqCst),
    })
}

/// What the resource-pool example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    /// Jobs done.
    pub jobs: u64,
    /// Most connections in use at once (at most the pool size).
    pub max_in_use: usize,
    /// Times one connection was handed to two workers at once (must be 0).
    pub double_use: u64,
}

/// **Resource pool: N workers sharing K connections.** A `K`-permit semaphore guards a pool
/// of K connections; each worker takes a permit, then a free connection, uses it, and gives
/// both back.
pub async fn resource_pool(
    backend: Arc<dyn LockBackend>,
    workers: usize,
    connections: usize,
    jobs_per_worker: u64,
) -> Result<PoolReport, LockError> {
    let svc = service(&backend)?;
    let permits = u32::try_from(connections).unwrap_or(u32::MAX);
    let pool = Arc::new(Mutex::new((0..connections).collect::<Vec<_>>()));
    let in_use = Arc::new(AtomicUsize::new(0));
    let max_in_use = Arc::new(AtomicUsize::new(0));
    let double_use = Arc::new(AtomicU64::new(0));
    on_instances(&backend, workers, |_, worker| {
        let (pool, in_use, max_in_use, double_use) = (
            pool.clone(),
            in_use.clone(),
            max_in_use.clone(),
            double_use.clone(),
        );
        async move {
            let sem = worker.semaphore("db-pool", permits)?;
            for _ in 0..jobs_per_worker {
                let permit = sem.acquire().await?;
                let conn = lock(&pool).pop();
                let Some(conn) = conn else {
                    double_use.fetch_add(1, Ordering::SeqCst); // a permit without a connection
                    permit.release().await?;
                    continue;
                };
                let now = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                max_in_use.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await; // the query
                in_use.fetch_sub(1, Ordering::SeqCst);
                lock(&pool).push(conn);
                permit.release().await?;
            }
            Ok(())
        }
    })
    .await?;
    drop(svc);
    Ok(PoolReport {
        jobs: workers as u64 * jobs_per_worker,
        max_in_use: max_in_use.load(Ordering::SeqCst),
        double_use: double_use.load(Ordering::SeqCst),
    })
}

/// What the semaphore example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemaphoreReport {
    /// Exports that ran.
    pub exports: u64,
    /// Most exports at once (at most the permit count).
    pub max_concurrent: usize,
    /// How long the permit of the crashed exporter stayed taken.
    pub crashed_permit_returned_after: Duration,
}

/// **Semaphore with crash-safe permits.** At most `permits` exports run at once. One exporter
/// "crashes" holding a permit (its guard abandoned: no release, no renewal); its permit comes
/// back by itself when its ttl passes, and the remaining exports all run.
pub async fn semaphore(
    backend: Arc<dyn LockBackend>,
    permits: u32,
    exports: u64,
) -> Result<SemaphoreReport, LockError> {
    let ttl = Duration::from_millis(500);
    let crashed_at = Instant::now();
    let crasher = service(&backend)?.semaphore("exports", permits)?;
    let crashed = crasher.acquire_opts(AcquireOptions::new().ttl(ttl)).await?;
    let crashed_token = crashed.token();
    crashed.abandon();
    let running = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let returned_after = Arc::new(Mutex::new(None));
    let exporters = usize::try_from(exports).unwrap_or(usize::MAX);
    on_instances(&backend, exporters, |_, exporter| {
        let (running, max, returned_after) = (running.clone(), max.clone(), returned_after.clone());
        async move {
            let sem = exporter.semaphore("exports", permits)?;
            let permit = sem.acquire().await?;
            let holders = sem.holders().await?;
            if holders.iter().all(|h| h.owner != crashed_token) {
                // The crashed exporter's permit has come back.
                let mut r = lock(&returned_after);
                r.get_or_insert_with(|| crashed_at.elapsed());
            }
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            permit.release().await
        }
    })
    .await?;
    let after = *lock(&returned_after);
    Ok(SemaphoreReport {
        exports,
        max_concurrent: max.load(Ordering::SeqCst),
        crashed_permit_returned_after: after.unwrap_or(Duration::MAX),
    })
}

/// What the funds-transfer example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Transfers made.
    pub transfers: u64,
    /// Sum of all balances before.
    pub total_before: i64,
    /// Sum of all balances after (equal to before).
    pub total_after: i64,
}

/// **Lock hierarchy: funds transfer between two accounts.** Two tellers move money in opposite
/// directions between the same accounts; `acquire_all` takes both account locks in one global
/// order, so they never deadlock, and the total is conserved.
pub async fn funds_transfer(
    backend: Arc<dyn LockBackend>,
    transfers_each: u64,
) -> Result<TransferReport, LockError> {
    let accounts = Arc::new(Mutex::new(HashMap::from([
        ("account:alice".to_owned(), 10_000i64),
        ("account:bob".to_owned(), 10_000i64),
    ])));
    let total_before: i64 = lock(&accounts).values().sum();
    let directions = [
        ("account:alice", "account:bob"),
        ("account:bob", "account:alice"),
    ];
    on_instances(&backend, directions.len(), |teller, svc| {
        let (from, to) = directions[teller];
        let accounts = accounts.clone();
        async move {
            for i in 0..transfers_each {
                let both = svc.acquire_all(&[from, to], AcquireOptions::new()).await?;
                let amount = i64::try_from(i % 13 + 1).unwrap_or(1);
                let debit = lock(&accounts).get(from).copied().unwrap_or(0) - amount;
                tokio::task::yield_now().await; // read, think, write: only safe under both locks
                {
                    let mut acc = lock(&accounts);
                    acc.insert(from.to_owned(), debit);
                    *acc.entry(to.to_owned()).or_insert(0) += amount;
                }
                both.release().await?;
            }
            Ok(())
        }
    })
    .await?;
    let total_after: i64 = lock(&accounts).values().sum();
    Ok(TransferReport {
        transfers: transfers_each * 2,
        total_before,
        total_after,
    })
}

/// What the try-lock example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryLockReport {
    /// Runs per job (each must be 1).
    pub runs_per_job: Vec<u32>,
    /// Times a worker skipped a job another worker was running.
    pub skipped_in_progress: u64,
}

/// **Try-lock: skip work already in progress.** `workers` workers all scan the same `jobs`; a
/// worker runs a job only if `try_acquire` gets its lock at once and the job is not done yet;
/// otherwise it moves on without waiting. Each job runs exactly once.
pub async fn try_lock(
    backend: Arc<dyn LockBackend>,
    workers: usize,
    jobs: usize,
) -> Result<TryLockReport, LockError> {
    let runs = Arc::new((0..jobs).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let done = Arc::new(
        (0..jobs)
            .map(|_| AtomicBool::new(false))
            .collect::<Vec<_>>(),
    );
    let skipped = Arc::new(AtomicU64::new(0));
    on_instances(&backend, workers, |_, svc| {
        let (runs, done, skipped) = (runs.clone(), done.clone(), skipped.clone());
        async move {
            // Every worker scans the jobs in the same order, so they run into each other.
            for job in 0..jobs {
                match svc.try_acquire(&format!("job:{job}")).await {
                    Ok(guard) => {
                        if !done[job].load(Ordering::SeqCst) {
                            runs[job].fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            done[job].store(true, Ordering::SeqCst);
                        }
                        guard.release().await?;
                    }
                    Err(LockError::Contended { .. }) => {
                        skipped.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(TryLockReport {
        runs_per_job: runs
            .iter()
            .map(|r| u32::try_from(r.load(Ordering::SeqCst)).unwrap_or(u32::MAX))
            .collect(),
        skipped_in_progress: skipped.load(Ordering::SeqCst),
    })
}

/// What the timeout example saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutReport {
    /// The wait budget.
    pub budget: Duration,
    /// How long the caller waited before giving up.
    pub waited: Duration,
    /// Acquire attempts it made meanwhile.
    pub attempts: u32,
    /// Whether the lock was still held by the slow holder when the caller gave up.
    pub still_held: bool,
}

/// **Timeout: give up after a wait budget.** A slow report holds the lock; a caller with a
/// `budget` waits, then gets `AcquireTimeout` (with the time waited and the attempts) and
/// moves on.
pub async fn timeout(
    backend: Arc<dyn LockBackend>,
    budget: Duration,
) -> Result<TimeoutReport, LockError> {
    let slow = service(&backend)?;
    let caller = service(&backend)?;
    let holder = slow.acquire("report:monthly").await?;
    let result = caller
        .acquire_opts("report:monthly", AcquireOptions::new().wait_timeout(budget))
        .await;
    let still_held = holder.is_held().await?;
    holder.release().await?;
    match result {
        Err(LockError::AcquireTimeout {
            waited, attempts, ..
        }) => Ok(TimeoutReport {
            budget,
            waited,
            attempts,
            still_held,
        }),
        Ok(guard) => {
            guard.release().await?;
            Err(LockError::InvalidOptions {
                option: "budget",
                reason: "the caller got a lock that was held for longer than the budget".into(),
            })
        }
        Err(e) => Err(e),
    }
}
