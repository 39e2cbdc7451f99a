//! [`HealthCheck`] for PostgreSQL: what `locks health` prints and a readiness probe reads.
//!
//! One `SELECT 1` (timed), then one query for the server version, the server's clock
//! (`clock_timestamp()`, against this host's), whether it is a standby (`pg_is_in_recovery()`)
//! and how many standbys stream from it (`pg_stat_replication`). PostgreSQL never evicts
//! rows to make room, so `may_evict` is `Some(false)`; it has no memory limit to report.

use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use locks_core::health::{BackendHealth, HealthCheck, Replication, clock_offset};
use locks_core::{BackendError, LockBackend};

use crate::backend::PostgresBackend;
use crate::error::PostgresBackendError;

const FACTS: &str = "SELECT current_setting('server_version'), \
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, \
     pg_is_in_recovery(), \
     (SELECT count(*) FROM pg_stat_replication)";

/// The facts of the server behind `backend`.
///
/// ```no_run
/// use locks_core::{HealthCheck, LockService};
/// use locks_postgres::PostgresBackend;
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = PostgresBackend::connect("postgres://app@127.0.0.1/app").await?;
/// let locks = LockService::builder_with_health(backend).build()?;
/// let health = locks.health().await?;
/// println!("postgres {:?}, clock offset {:?}", health.server_version, health.clock_offset);
/// # Ok(()) }
/// ```
#[async_trait]
impl HealthCheck for PostgresBackend {
    async fn health(&self) -> Result<BackendHealth, BackendError> {
        let pg = |e| PostgresBackendError::pg("health", e);
        let started = Instant::now();
        self.run("health", |conn| async move {
            conn.client()?
                .query_one("SELECT 1", &[])
                .await
                .map_err(pg)?;
            Ok(())
        })
        .await?;
        let mut health = BackendHealth::new(self.name(), started.elapsed());
        let (row, sent, received) = self
            .run("health", |conn| async move {
                let sent = SystemTime::now();
                let row = conn.client()?.query_one(FACTS, &[]).await.map_err(pg)?;
                Ok((row, sent, SystemTime::now()))
            })
            .await?;
        let fact = |e| BackendError::from(PostgresBackendError::pg("health", e));
        let version: String = row.try_get(0).map_err(fact)?;
        let clock_us: i64 = row.try_get(1).map_err(fact)?;
        let in_recovery: bool = row.try_get(2).map_err(fact)?;
        let standbys: i64 = row.try_get(3).map_err(fact)?;
        health.server_version = Some(version);
        health.may_evict = Some(false);
        health.clock_offset = clock_offset(clock_us, sent, received);
        let mut replication = Replication::new(if in_recovery { "standby" } else { "primary" });
        if !in_recovery {
            replication.connected_replicas = u32::try_from(standbys).ok();
        }
        health.replication = Some(replication);
        Ok(health)
    }
}
