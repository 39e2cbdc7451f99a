//! A pool of N resources shared by many processes: each holder gets one resource together with
//! the leases that make it exclusive.

use std::ops::Deref;
use std::sync::Arc;

use tokio::time::Instant;

use crate::error::LockError;
use crate::lease::LockGuard;
use crate::options::AcquireOptions;
use crate::primitives::semaphore::Semaphore;
use crate::service::LockService;

/// A pool of resources (connections, licences, GPUs, ...) that many services share: at most one
/// holder per resource across every service, at most `len` holders in all. A holder gets a
/// [`Pooled`] — the resource and its leases — and gives it back by dropping or releasing it; a
/// crashed holder's resource comes back when its leases expire.
///
/// Every service builds the pool with the same name and the same resources, in the same order
/// (index `i` names the same real resource everywhere). Waiting goes through a semaphore of
/// `len` permits (notifications, backoff, renewal, `lost()`); a permit holder then takes the
/// first free resource by a mutex per index, so two holders never share one.
///
/// ```
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let locks = LockService::new(MemoryBackend::new())?;
/// let gpus = locks.pool("gpus", vec!["gpu-0", "gpu-1"])?;
/// let a = gpus.acquire().await?;
/// let b = gpus.acquire().await?;
/// assert_ne!(*a, *b);
/// assert!(gpus.try_acquire().await.is_err()); // both taken
/// a.release().await?;
/// let c = gpus.acquire().await?;
/// # drop((b, c));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Pool<T> {
    service: LockService,
    name: String,
    permits: Semaphore,
    items: Arc<Vec<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            service: self.service.clone(),
            name: self.name.clone(),
            permits: self.permits.clone(),
            items: Arc::clone(&self.items),
        }
    }
}

/// A resource taken from a [`Pool`], with its leases. Dereferences to the resource. Dropping it
/// gives the resource back (in the background); [`release`](Pooled::release) does it now.
#[must_use = "dropping a Pooled gives the resource back at once"]
#[clippy::has_significant_drop]
#[derive(Debug)]
pub struct Pooled<T> {
    index: usize,
    items: Arc<Vec<T>>,
    slot: LockGuard,
    permit: LockGuard,
}

impl<T> Deref for Pooled<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.items[self.index]
    }
}

impl<T> Pooled<T> {
    /// The resource's index in the pool.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The lease that makes this resource exclusive (fence, `lost()`).
    pub fn lease(&self) -> &LockGuard {
        &self.slot
    }

    /// Give the resource back now: its lease, then the permit. The first error is returned.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves what was not released yet to be released in the background.
    pub async fn release(self) -> Result<(), LockError> {
        let slot = self.slot.release().await;
        let permit = self.permit.release().await;
        slot.and(permit)
    }
}

impl<T> Pool<T> {
    /// How many resources the pool has.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the pool has no resource (never: [`LockService::pool`] refuses an empty one).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Take a resource, waiting up to the service's default wait timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future holds nothing.
    pub async fn acquire(&self) -> Result<Pooled<T>, LockError> {
        self.acquire_opts(AcquireOptions::default()).await
    }

    /// One attempt: `Err(Contended)` when every resource is taken.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future holds nothing.
    pub async fn try_acquire(&self) -> Result<Pooled<T>, LockError> {
        let permit = self.permits.try_acquire().await?;
        match self.take_free_slot(&AcquireOptions::default()).await? {
            Some((index, slot)) => Ok(self.pooled(index, slot, permit)),
            None => Err(LockError::Contended {
                key: self.name.clone(),
                remaining: None,
            }),
        }
    }

    /// Take a resource with these options (ttl, wait budget, retry).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future holds nothing (leases taken so far are released in
    /// the background).
    pub async fn acquire_opts(&self, opts: AcquireOptions) -> Result<Pooled<T>, LockError> {
        let start = Instant::now();
        let budget = opts
            .wait_timeout
            .unwrap_or_else(|| self.service.default_wait_timeout());
        let permit = self.permits.acquire_opts(opts.clone()).await?;
        let retry = opts
            .retry
            .clone()
            .unwrap_or_else(|| self.service.default_retry().clone());
        let mut attempts = 0;
        loop {
            if let Some((index, slot)) = self.take_free_slot(&opts).await? {
                return Ok(self.pooled(index, slot, permit));
            }
            // A permit with no free resource: a crashed holder's resource lease outlives its
            // permit for a moment. Try again shortly, within the budget.
            attempts += 1;
            let left = budget.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(LockError::AcquireTimeout {
                    key: self.name.clone(),
                    waited: start.elapsed(),
                    attempts,
                    last_error: None,
                });
            }
            tokio::time::sleep(retry.delay(attempts).min(left)).await;
        }
    }

    /// The first resource whose mutex is free, taken.
    async fn take_free_slot(
        &self,
        opts: &AcquireOptions,
    ) -> Result<Option<(usize, LockGuard)>, LockError> {
        for index in 0..self.items.len() {
            match self
                .service
                .try_acquire_opts(&slot_name(&self.name, index), opts.clone())
                .await
            {
                Ok(slot) => return Ok(Some((index, slot))),
                Err(LockError::Contended { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn pooled(&self, index: usize, slot: LockGuard, permit: LockGuard) -> Pooled<T> {
        Pooled {
            index,
            items: Arc::clone(&self.items),
            slot,
            permit,
        }
    }
}

/// The mutex of resource `index` of pool `name`.
fn slot_name(name: &str, index: usize) -> String {
    format!("{name}/{index}")
}

impl LockService {
    /// A pool of `items` under `name`. Every service that shares the pool passes the same
    /// resources in the same order. `Err(InvalidOptions)` for an empty pool, `Err(InvalidKey)`
    /// for a bad name, `Err(Unsupported)` when the backend cannot store semaphore permits.
    pub fn pool<T>(&self, name: &str, items: Vec<T>) -> Result<Pool<T>, LockError> {
        let len = u32::try_from(items.len())
            .map_err(|_| LockError::invalid_option("pool", "more than u32::MAX resources"))?;
        if len == 0 {
            return Err(LockError::invalid_option(
                "pool",
                "a pool needs at least one resource",
            ));
        }
        self.key(&slot_name(name, items.len() - 1))?;
        let permits = self.semaphore(name, len)?;
        Ok(Pool {
            service: self.clone(),
            name: name.to_owned(),
            permits,
            items: Arc::new(items),
        })
    }
}
