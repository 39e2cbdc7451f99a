//! What the PostgreSQL test binaries share: the run's shared server, a schema per test, a
//! backend on it, and a superuser connection for what tests do behind the backend's back.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use locks_core::LockKey;
use locks_postgres::tokio_postgres::Client;
use locks_postgres::{PostgresBackend, PostgresBackendBuilder};
use locks_testkit::conformance::BackendHarness;
use locks_testkit::postgres_server::{connect, fresh_schema, shared_url};

/// A schema of its own on the run's shared server.
pub struct Fixture {
    pub url: String,
    pub schema: String,
    pub admin: Arc<Client>,
}

impl Fixture {
    pub async fn new() -> Fixture {
        let url = shared_url()
            .await
            .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
        let schema = fresh_schema(&url)
            .await
            .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
        let admin = Arc::new(
            connect(&url)
                .await
                .unwrap_or_else(|e| panic!("postgres fixture: {e}")),
        );
        Fixture { url, schema, admin }
    }

    pub fn builder(&self) -> PostgresBackendBuilder {
        PostgresBackend::builder(&self.url)
            .schema(&self.schema)
            .pool_size(4)
    }

    pub async fn backend(&self) -> PostgresBackend {
        self.backend_with(|b| b).await
    }

    /// A backend from [`builder`](Self::builder) as `configure` changes it.
    pub async fn backend_with(
        &self,
        configure: impl FnOnce(PostgresBackendBuilder) -> PostgresBackendBuilder,
    ) -> PostgresBackend {
        configure(self.builder())
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }

    /// Every row in the schema's lease table.
    pub async fn lease_rows(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\".locks_leases", self.schema);
        self.admin.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// Every row in the schema's fence table.
    pub async fn fence_rows(&self) -> i64 {
        let sql = format!("SELECT count(*) FROM \"{}\".locks_fences", self.schema);
        self.admin.query_one(&sql, &[]).await.unwrap().get(0)
    }

    /// Opens a transaction on the admin connection that locks the lease table, so that every
    /// statement on it blocks until [`unblock_leases`](Self::unblock_leases).
    pub async fn block_leases(&self) {
        let sql = format!(
            "BEGIN; LOCK TABLE \"{}\".locks_leases IN ACCESS EXCLUSIVE MODE",
            self.schema
        );
        self.admin.batch_execute(&sql).await.unwrap();
    }

    /// Ends the transaction of [`block_leases`](Self::block_leases).
    pub async fn unblock_leases(&self) {
        self.admin.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Every lease of `key` (and a writer's mark) expired by the store's clock, nobody told.
pub async fn expire(admin: &Client, schema: &str, key: &LockKey) {
    let sql = format!(
        "UPDATE \"{schema}\".locks_leases SET expires_at = clock_timestamp() - interval '1 second' \
         WHERE lock_prefix = $1 AND lock_name = $2"
    );
    if let Err(e) = admin.execute(&sql, &[&key.prefix(), &key.name()]).await {
        panic!("expire {key:?}: {e}");
    }
}

/// A conformance harness on a fresh schema of the shared server.
pub async fn harness() -> BackendHarness {
    let f = Fixture::new().await;
    let backend = f.backend().await;
    let (admin, schema) = (Arc::clone(&f.admin), f.schema.clone());
    BackendHarness::new(backend, move |key| {
        let (admin, schema) = (Arc::clone(&admin), schema.clone());
        async move { expire(&admin, &schema, &key).await }
    })
    .keeping(f.admin)
}

/// A generous upper bound for waiting on events of a real server.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
