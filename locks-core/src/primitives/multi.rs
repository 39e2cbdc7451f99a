//! Ordered multi-lock: several keys taken all-or-nothing in one global order.

use std::future::Future;

use tokio::time::Instant;

use crate::error::LockError;
use crate::lease::LockGuard;
use crate::options::AcquireOptions;
use crate::service::LockService;
use crate::state::LostReason;

/// Several locks held together, taken all-or-nothing in one global order.
#[derive(Debug)]
#[must_use = "dropping a MultiGuard releases every lock at once"]
#[clippy::has_significant_drop]
pub struct MultiGuard {
    guards: Vec<LockGuard>,
}

impl MultiGuard {
    /// The guards, in acquisition order (sorted by key).
    pub fn guards(&self) -> &[LockGuard] {
        &self.guards
    }

    /// The guard of `key`, if it is one of these.
    pub fn get(&self, key: &str) -> Option<&LockGuard> {
        self.guards.iter().find(|g| g.key() == key)
    }

    /// Completes when any of the locks is lost, with its key and reason.
    pub fn lost(&self) -> impl Future<Output = (String, LostReason)> + Send + 'static {
        let watches: Vec<_> = self
            .guards
            .iter()
            .map(|g| {
                let key = g.key().to_owned();
                let lost = g.lost();
                Box::pin(async move { (key, lost.await) })
            })
            .collect();
        async move {
            if watches.is_empty() {
                return std::future::pending().await;
            }
            futures::future::select_all(watches).await.0
        }
    }

    /// Release every lock (in reverse order). All are attempted; the first error is returned.
    ///
    /// # Cancel safety
    ///
    /// Renewal has stopped once the future first runs; dropping it before the store answered
    /// leaves the lease to end by its ttl at the latest.
    pub async fn release(mut self) -> Result<(), LockError> {
        let mut first = Ok(());
        while let Some(g) = self.guards.pop() {
            let r = g.release().await;
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl LockService {
    /// Acquire every key, all or nothing, in one global order (sorted, duplicates removed), so
    /// two callers asking for the same keys in different orders never deadlock. The wait
    /// budget is shared by all keys. On failure or timeout the locks already taken are
    /// released before the error is returned. Every key is validated before anything is sent.
    /// Each key is taken as a mutex, so callers of one service waiting for the same key are
    /// served first come, first served per key (not for the set as a whole).
    ///
    /// ```
    /// use locks_core::{AcquireOptions, LockService};
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::new(MemoryBackend::new())?;
    /// let both = locks
    ///     .acquire_all(&["account:B", "account:A", "account:B"], AcquireOptions::new())
    ///     .await?;
    /// let keys: Vec<_> = both.guards().iter().map(|g| g.key()).collect();
    /// assert_eq!(keys, ["account:A", "account:B"]);
    /// both.release().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future releases, in the background, every lock already taken
    /// (their guards are dropped) and holds nothing.
    pub async fn acquire_all(
        &self,
        keys: &[&str],
        opts: AcquireOptions,
    ) -> Result<MultiGuard, LockError> {
        for k in keys {
            self.key(k)?;
        }
        let mut sorted: Vec<&str> = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let budget = opts
            .wait_timeout
            .unwrap_or_else(|| self.default_wait_timeout());
        let start = Instant::now();
        let mut guards = Vec::with_capacity(sorted.len());
        for key in sorted {
            let remaining = budget.saturating_sub(start.elapsed());
            match self
                .acquire_opts(key, opts.clone().wait_timeout(remaining))
                .await
            {
                Ok(g) => guards.push(g),
                Err(e) => {
                    let partial = MultiGuard { guards };
                    if let Err(rollback) = partial.release().await {
                        tracing::warn!(error = %rollback, "acquire_all: rollback release failed");
                    }
                    return Err(e);
                }
            }
        }
        Ok(MultiGuard { guards })
    }
}
