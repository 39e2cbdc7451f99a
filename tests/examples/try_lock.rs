//! Try-lock: skip work already in progress — four workers scan the same 40 jobs and skip the
//! ones another worker is running; each job runs exactly once.
//!
//! `cargo run -p locks-tests --example try_lock` (memory) or with `REDIS_URL=...`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use locks_core::{LockBackend, LockService};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What the example saw.
#[derive(Debug)]
pub struct Report {
    /// Runs per job (each exactly 1).
    pub runs_per_job: Vec<u64>,
    /// Times a worker skipped a job another worker was running.
    pub skipped_in_progress: u64,
}

/// `workers` workers, each with its own service, scan the same `jobs` in the same order.
pub async fn run(
    backend: Arc<dyn LockBackend>,
    workers: usize,
    jobs: usize,
) -> Result<Report, Error> {
    let runs: Arc<Vec<AtomicU64>> = Arc::new((0..jobs).map(|_| AtomicU64::new(0)).collect());
    let done: Arc<Vec<AtomicBool>> = Arc::new((0..jobs).map(|_| AtomicBool::new(false)).collect());
    let skipped = Arc::new(AtomicU64::new(0));
    let mut running = Vec::new();
    for _ in 0..workers {
        let locks = LockService::builder_arc(backend.clone()).build()?;
        let (runs, done, skipped) = (runs.clone(), done.clone(), skipped.clone());
        running.push(tokio::spawn(async move {
            let (runs, done) = (&runs, &done);
            for job in 0..jobs {
                // One attempt, no waiting: `None` when another worker holds the job's lock.
                let ran = locks
                    .try_with_lock(&format!("job:{job}"), |_lease| async move {
                        if !done[job].load(Ordering::SeqCst) {
                            runs[job].fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await; // the job
                            done[job].store(true, Ordering::SeqCst);
                        }
                    })
                    .await?;
                if ran.is_none() {
                    skipped.fetch_add(1, Ordering::SeqCst);
                }
            }
            Ok::<_, locks_core::LockError>(())
        }));
    }
    for worker in running {
        worker.await??;
    }
    Ok(Report {
        runs_per_job: runs.iter().map(|r| r.load(Ordering::SeqCst)).collect(),
        skipped_in_progress: skipped.load(Ordering::SeqCst),
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let backend = locks_tests::backend_from_env().await?;
    let r = run(backend, 4, 40).await?;
    println!(
        "40 jobs, 4 workers: runs per job {:?}; {} skipped while in progress",
        r.runs_per_job, r.skipped_in_progress
    );
    if r.runs_per_job.iter().any(|&n| n != 1) {
        return Err("a job ran twice or not at all".into());
    }
    Ok(())
}
