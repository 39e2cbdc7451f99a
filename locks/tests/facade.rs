//! The facade alone is enough: a service on the memory backend, `#[locks::with_lock]` in both
//! modes with no `crate = ...` argument, and the lease reachable in the body — all through
//! `locks::` paths (this test depends on no other workspace crate).

use std::time::Duration;

use locks::{AcquireOptions, LeaseHandle, LockError, LockService, MemoryBackend};

#[derive(Debug)]
enum AppError {
    Lock(LockError),
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

struct Jobs {
    locks: LockService,
}

impl Jobs {
    #[locks::with_lock(locks = self.locks, key = "job:{id}", ttl = "10s", wait = "50ms")]
    async fn run(&self, id: u32, lease: LeaseHandle) -> Result<(String, u64), AppError> {
        Ok((lease.key().to_owned(), lease.fence()))
    }

    #[locks::with_lock(locks = self.locks, key = "job:{id}", on_contended = "skip")]
    async fn run_unless_running(&self, id: u32) -> Result<Option<u32>, AppError> {
        Ok(id * 2)
    }
}

#[tokio::test(start_paused = true)]
async fn with_lock_through_the_facade_locks_and_releases() {
    let jobs = Jobs {
        locks: LockService::new(MemoryBackend::new()).expect("service"),
    };
    let (key, fence) = jobs.run(7).await.expect("run");
    assert_eq!(key, "job:7");
    assert!(fence > 0);
    assert!(!jobs.locks.is_locked("job:7").await.expect("inspect"));

    // Held elsewhere: wait mode times out (converted), skip mode returns `None`; the body of
    // neither runs.
    let held = jobs
        .locks
        .acquire_opts("job:7", AcquireOptions::new().ttl(Duration::from_secs(60)))
        .await
        .expect("acquire");
    assert!(matches!(
        jobs.run(7).await,
        Err(AppError::Lock(LockError::AcquireTimeout { .. }))
    ));
    assert_eq!(jobs.run_unless_running(7).await.expect("skip"), None);
    held.release().await.expect("release");
    assert_eq!(jobs.run_unless_running(7).await.expect("run"), Some(14));
    assert!(!jobs.locks.is_locked("job:7").await.expect("inspect"));
}

#[tokio::test]
async fn the_core_vocabulary_is_at_the_root() {
    // Options, errors, primitives and backends by their facade paths.
    let locks = LockService::builder(locks::memory::MemoryBackend::new())
        .retry(locks::RetryPolicy::default())
        .build()
        .expect("service");
    let sem: locks::Semaphore = locks.semaphore("exports", 2).expect("semaphore");
    let permit = sem.acquire().await.expect("permit");
    assert_eq!(sem.holders().await.expect("holders").len(), 1);
    permit.release().await.expect("release");
    let code: fn(&locks::error::LockError) -> &'static str = LockError::code;
    assert_eq!(code(&LockError::ShuttingDown), "shutting_down");
}
