//! # locks-postgres
//!
//! The PostgreSQL [`LockBackend`](locks_core::LockBackend) for [`locks_core::LockService`]:
//! leases are rows of a table, fences come from a durable per-key counter, and waiters are
//! woken by `LISTEN`/`NOTIFY`. Mutex leases, semaphores
//! ([`LockService::semaphore`](locks_core::LockService::semaphore)), read-write locks
//! ([`LockService::rwlock`](locks_core::LockService::rwlock)), and everything built on them
//! (leader election, ordered multi-lock). For a service that already runs PostgreSQL and
//! would rather not add Redis for locking.
//!
//! ```
//! use std::time::Duration;
//! use locks_core::{AcquireOptions, LockService};
//! use locks_postgres::PostgresBackend;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A private test server (the testkit fixture), and a schema of this example's own.
//! # let url = locks_testkit::postgres_server::shared_url().await?;
//! # let schema = locks_testkit::postgres_server::fresh_schema(&url).await?;
//! // url: "postgres://app:s3cret@db.internal:5432/app"
//! let backend = PostgresBackend::builder(&url).schema(&schema).connect().await?;
//! let locks = LockService::new(backend)?;
//!
//! let opts = AcquireOptions::new().ttl(Duration::from_secs(10));
//! let guard = locks.acquire_opts("payment:42", opts).await?;
//! assert!(locks.try_acquire("payment:42").await.is_err()); // held
//! let fence = guard.fence(); // pass it to the payment store with every write
//! guard.release().await?;
//! assert!(locks.acquire("payment:42").await?.fence() > fence);
//! # Ok(()) }
//! ```
//!
//! ## Driver
//!
//! [`tokio-postgres`](tokio_postgres) with a [`deadpool-postgres`](deadpool_postgres) pool.
//! `tokio-postgres` is the maintained async client underneath most Rust PostgreSQL stacks; it
//! pipelines requests on one connection (an acquire is two round trips though it is a
//! four-statement transaction) and exposes `LISTEN` notifications as messages of the
//! connection. `deadpool-postgres` adds a small pool and a per-connection prepared statement
//! cache, and nothing else: no macros, no migrations engine, no compile-time database access.
//! `sqlx` would bring its macro crates, its own runtime abstraction and a larger tree for
//! features this backend does not use. TLS is not built in (the `NoTls` connector): connect
//! over a Unix socket, a private network, or a TLS-terminating proxy.
//!
//! ## Schema
//!
//! Two tables in one schema (default `public`, [`schema`](PostgresBackendBuilder::schema)),
//! created at connect with `CREATE TABLE IF NOT EXISTS` (under an advisory lock) unless the role
//! may not, in which case an operator installs them with `sql/install.sql` (or
//! [`PostgresBackend::install_sql`]):
//!
//! - `locks_leases (lock_prefix, lock_name, kind, owner uuid, fence bigint, expires_at
//!   timestamptz)`, primary key `(lock_prefix, lock_name, kind, owner)`, `kind` one of
//!   `mutex`, `permit`, `read`, `write`, `waiting` (a writer's waiting mark), `retired` (a
//!   token released while it held nothing, see below); a partial
//!   unique index keeps at most one `mutex`, `write` and `waiting` row per name whatever
//!   happens.
//! - `locks_fences (lock_prefix, lock_name, last_fence bigint)`: the last fence of every name.
//!
//! ## How each operation runs
//!
//! - **Server time only.** Expiry is `clock_timestamp()` of the server; the client clock is
//!   never used. A row whose `expires_at` has passed is dead: every statement ignores it.
//! - **`try_acquire`**: one transaction: `pg_advisory_xact_lock` on the name (so operations on
//!   one name serialise and different names never wait for each other), read the live rows
//!   (deleting the name's dead ones), decide by the kind's rule, write, commit. Pipelined: two
//!   round trips.
//! - **`extend`**, **`force_release`**, **`holders`**: one statement each, compare-and-act on
//!   the owner token (`UPDATE ... WHERE owner = $token AND expires_at > clock_timestamp()`).
//! - **`release`**: `DELETE ... WHERE owner = $token` under the name's advisory lock (a
//!   pipelined four-statement transaction: one round trip). A release after expiry deletes the
//!   dead row and answers "not owner". A release that deleted something calls `pg_notify` in the
//!   same statement. A release that found no live lease *retires* the token for
//!   [`RETIRED_FOR`] (2 minutes): a late acquire with it (one still in flight on a connection
//!   the client gave up on) is refused with [`PostgresBackendError::RetiredToken`] instead of
//!   leaving a lease nobody holds, as the backend contract asks.
//! - **Fences**: `max(last_fence + 1, server time in µs)`, written to `locks_fences` in the
//!   acquire transaction. The table is durable, so fences keep increasing across restarts and
//!   crashes; seeding from the clock also keeps them increasing after a restore from an old
//!   backup (unless the server clock stepped back meanwhile). A renewal keeps its fence.
//! - **Expired rows** are deleted by the next acquire of the same name; names never locked
//!   again keep their dead rows (a few bytes each) until a periodic
//!   `DELETE FROM locks_leases WHERE expires_at < now() - interval '1 hour'` removes them, if
//!   you want one: nothing depends on it for correctness. Counter rows are never deleted.
//! - **Bad input** (a zero or huge ttl, a semaphore of zero permits) is refused with a typed
//!   [`PostgresBackendError`] before any statement is sent: nothing is written.
//! - **Failures**: a dropped or killed connection, a server restart, a `statement_timeout`
//!   (default 5 s, [`statement_timeout`](PostgresBackendBuilder::statement_timeout)) give a
//!   transient error (the service retries); the transaction was rolled back, or, for a failed
//!   `COMMIT`, may have committed (every operation is idempotent per owner token). A
//!   connection whose operation failed or was cancelled half-way is closed, never reused.
//!
//! ## Wake-ups
//!
//! One dedicated connection per backend `LISTEN`s on the channel `locks:<schema>`; the
//! payload of a notification names the key. It is health-checked, reconnected with backoff,
//! and every waiter re-checks when it drops or comes back; meanwhile waiters poll at
//! `min(backoff, holder's remaining ttl)`. `NOTIFY` is at-most-once, and a crashed holder sends
//! nothing, so polling stays the safety net.
//!
//! ## Least privilege
//!
//! The application role needs `USAGE` on the schema and `SELECT, INSERT, UPDATE, DELETE` on
//! the two tables, nothing else (advisory locks, `LISTEN` and `pg_notify` are open to every
//! role). As the tables' owner:
//!
//! ```sql
//! -- psql -v schema=public -f sql/install.sql
//! -- psql -v schema=public -v role=app -f sql/grant.sql
//! GRANT USAGE ON SCHEMA "public" TO "app";
//! GRANT SELECT, INSERT, UPDATE, DELETE ON "public".locks_fences, "public".locks_leases TO "app";
//! ```
//!
//! ## Guarantees and limits
//!
//! - Mutual exclusion and the permit limit hold as long as the PostgreSQL primary is the one
//!   the clients talk to: a row is a lease, and every grant is decided under the name's lock.
//!   With asynchronous replication, a failover can lose the last committed grants (as Redis
//!   replicas can): use synchronous replication (`synchronous_commit = on` with a synchronous
//!   standby) where a double grant after failover matters.
//! - Fences strictly increase per name, forever, across restarts; only the server clock
//!   stepping back *and* the counter row being lost together could break that.
//! - Holders find out about a lost lease at their next renewal, or at their local deadline
//!   (the service's drift margin), as with any backend.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod builder;
mod error;
mod health;
mod install;
mod list;
mod listen;
mod ops;
mod plan;
mod schema;
mod sql;

pub use backend::PostgresBackend;
pub use builder::{DEFAULT_SCHEMA, PostgresBackendBuilder};
pub use error::PostgresBackendError;
pub use ops::{MAX_TTL, RETIRED_FOR};
pub use schema::MAX_SCHEMA_LEN;

/// The driver, re-exported for tests and tools that talk to the same server.
pub use tokio_postgres;
