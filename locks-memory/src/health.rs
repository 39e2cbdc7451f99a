//! [`HealthCheck`] for the memory backend: the trivial facts of a store inside this process.

use async_trait::async_trait;
use locks_core::health::{BackendHealth, ClockOffset, HealthCheck};
use locks_core::{BackendError, LockBackend};

use crate::store::MemoryBackend;

/// In-process: no round trip (`ping` is zero), no eviction, no clock of another host
/// (offset zero), no replication; `server_version` is this crate's version.
///
/// ```
/// use locks_core::HealthCheck;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::BackendError> {
/// let health = MemoryBackend::new().health().await?;
/// assert_eq!(health.may_evict, Some(false));
/// # Ok(()) }
/// ```
#[async_trait]
impl HealthCheck for MemoryBackend {
    async fn health(&self) -> Result<BackendHealth, BackendError> {
        let mut health = BackendHealth::new(self.name(), std::time::Duration::ZERO);
        health.server_version = Some(concat!("locks-memory ", env!("CARGO_PKG_VERSION")).into());
        health.may_evict = Some(false);
        health.clock_offset = Some(ClockOffset::from_micros(0));
        Ok(health)
    }
}
