//! The shapes `#[with_lock]` supports compile, and behave.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use locks_core::{LeaseHandle, LockError, LockService};
use locks_macros::with_lock;

mod reexport {
    pub use locks_core as core_path;
}

#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Invalid,
}

impl From<LockError> for AppError {
    fn from(e: LockError) -> Self {
        AppError::Lock(e)
    }
}

type AppResult<T> = Result<T, AppError>;

/// A generic free function; `locks` by value through `Arc`; `{{`/`}}` escapes.
#[with_lock(locks = locks, key = "{{gen}}:{k}")]
pub async fn generic<K: Display + Send>(locks: Arc<LockService>, k: K) -> Result<String, LockError> {
    Ok(format!("{k}"))
}

/// The lease by reference in the middle; `?` and `return` in the body; an alias result.
#[with_lock(locks = &locks, key = "check:{n}", ttl = "1m 30s", wait = "250ms")]
pub(crate) async fn early(locks: LockService, lease: &LeaseHandle, n: u32) -> AppResult<u64> {
    if n == 0 {
        return Err(AppError::Invalid);
    }
    lease.ensure_held()?;
    Ok(lease.fence())
}

/// A raw identifier and a boxed error type; a crate path override.
#[with_lock(locks = locks, key = "raw:{r#type}", crate = reexport::core_path)]
async fn raw(
    locks: &LockService,
    r#type: &str,
) -> Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    Ok(r#type.len())
}

struct Counter {
    locks: LockService,
    id: (u32, String),
    count: u64,
}

impl Counter {
    /// `&mut self`, a key from `self`'s fields.
    #[with_lock(locks = self.locks, key = "counter:{self.id.1}/{self.id.0}")]
    async fn bump(&mut self, by: u64, _lease: LeaseHandle) -> Result<u64, LockError> {
        self.count += by;
        Ok(self.count)
    }

    /// `self` by value, skip mode with a lease.
    #[with_lock(locks = self.locks, key = "counter:{self.id.1}/{self.id.0}", on_contended = "skip")]
    async fn finish(self, lease: LeaseHandle) -> Result<Option<(u64, String)>, LockError> {
        Ok((self.count, lease.key().to_owned()))
    }
}

fn assert_send<F: Future + Send>(f: F) -> F {
    f
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let locks = LockService::new(locks_memory::MemoryBackend::new()).unwrap();

    assert_eq!(
        assert_send(generic(Arc::new(locks.clone()), 5)).await.unwrap(),
        "5"
    );
    assert!(matches!(
        early(locks.clone(), 0).await,
        Err(AppError::Invalid)
    ));
    assert!(early(locks.clone(), 1).await.unwrap() > 0);
    assert_eq!(raw(&locks, "abc").await.unwrap(), 3);

    let mut counter = Counter {
        locks: locks.clone(),
        id: (7, "eu".into()),
        count: 0,
    };
    assert_eq!(assert_send(counter.bump(2)).await.unwrap(), 2);
    assert_eq!(counter.bump(3).await.unwrap(), 5);
    assert_eq!(
        counter.finish().await.unwrap(),
        Some((5, "counter:eu/7".to_owned()))
    );
    assert_eq!(locks.held_count(), 0);

    let held = locks.acquire("check:2").await.unwrap();
    assert!(matches!(
        early(locks.clone(), 2).await,
        Err(AppError::Lock(LockError::AcquireTimeout { .. }))
    ));
    held.release().await.unwrap();
    assert!(!locks.is_locked("{gen}:5").await.unwrap());
}
