//! [`LockService::health`]: the store's facts for a readiness probe.

use std::time::Instant;

use super::LockService;
use crate::error::LockError;
use crate::health::BackendHealth;
use crate::kind::LeaseKind;

/// The lock name whose holders a service without a health check reads to measure a round trip.
const PROBE_NAME: &str = "__health";

impl LockService {
    /// The store's health: a round trip, and, when the service was built with a
    /// [`health_check`](crate::LockServiceBuilder::health_check), every fact the store
    /// reports (server version, eviction policy, memory, clock offset to this host,
    /// replication). The same facts the `locks health` command prints. See [`crate::health`].
    ///
    /// `Err(Backend)` when the store cannot be reached (or refuses the probe): a readiness
    /// probe then reports not ready. Facts the store does not give are `None`;
    /// [`BackendHealth::problems`] says whether the others are fit for locks.
    ///
    /// ```
    /// use locks_core::LockService;
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::builder_with_health(MemoryBackend::new()).build()?;
    /// let health = locks.health().await?;
    /// assert_eq!(health.backend, "memory");
    /// assert!(health.is_healthy(), "{:?}", health.problems(&Default::default()));
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only reads.
    pub async fn health(&self) -> Result<BackendHealth, LockError> {
        if let Some(check) = &self.inner.health {
            return check
                .health()
                .await
                .map_err(|e| LockError::backend("health", e));
        }
        let key = self.key(PROBE_NAME)?;
        let started = Instant::now();
        self.inner
            .backend
            .holders(&key, LeaseKind::Mutex)
            .await
            .map_err(|e| LockError::backend("health", e))?;
        Ok(BackendHealth::new(
            self.inner.backend.name(),
            started.elapsed(),
        ))
    }
}
