//! The PostgreSQL backend beyond the shared suites: bad input, a least-privilege role,
//! notifications, and faults (a killed connection, a statement timeout, a server restart).

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use common::{EVENT_TIMEOUT, Fixture};
use locks_core::{
    AcquireResult, BackendError, LeaseKind, LockBackend, LockKey, LockService, OwnerToken, Wake,
};
use locks_postgres::tokio_postgres::Config;
use locks_postgres::tokio_postgres::error::SqlState;
use locks_postgres::{PostgresBackend, PostgresBackendError};
use locks_testkit::postgres_server::{PostgresServer, connect, fresh_schema};

fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).unwrap()
}

fn pg_source(e: &BackendError) -> Option<&PostgresBackendError> {
    e.source()?.downcast_ref::<PostgresBackendError>()
}

fn fence(r: AcquireResult) -> u64 {
    match r {
        AcquireResult::Acquired(lease) => lease.fence,
        other => panic!("expected a lease, got {other:?}"),
    }
}

/// `url` with another user and application name (key-value form).
fn as_user(url: &str, user: &str, app: &str) -> String {
    let c: Config = url.parse().unwrap();
    let host = match c.get_hosts().first() {
        Some(locks_postgres::tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let db = c.get_dbname().unwrap_or("postgres");
    format!("host={host} port={port} user={user} dbname={db} application_name={app}")
}

#[tokio::test]
async fn bad_input_is_typed_and_writes_nothing() {
    let f = Fixture::new().await;
    let b = f.backend().await;
    let (k, t) = (key("bad"), OwnerToken::new());
    let huge = locks_postgres::MAX_TTL + Duration::from_secs(1);
    for (kind, ttl) in [
        (LeaseKind::Mutex, Duration::ZERO),
        (LeaseKind::Mutex, huge),
        (LeaseKind::Write, Duration::ZERO),
        (LeaseKind::Permit { limit: 0 }, Duration::from_secs(1)),
    ] {
        let e = b.try_acquire(&k, kind, t, ttl).await.unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(
            matches!(
                pg_source(&e),
                Some(
                    PostgresBackendError::InvalidTtl { .. } | PostgresBackendError::InvalidPermits
                )
            ),
            "{kind} {ttl:?}: {e:?}"
        );
        let e = b.extend(&k, kind, t, Duration::ZERO).await.unwrap_err();
        assert!(pg_source(&e).is_some(), "{e:?}");
    }
    assert_eq!(f.lease_rows().await, 0);
    assert_eq!(f.fence_rows().await, 0);
    // Bad options never reach the server.
    let bad = PostgresBackend::builder(&f.url)
        .schema("x; DROP")
        .connect()
        .await;
    assert!(matches!(
        bad,
        Err(PostgresBackendError::InvalidOption {
            option: "schema",
            ..
        })
    ));
    // A schema without tables, and no right asked to create them: a typed error with the fix.
    let empty = fresh_schema(&f.url).await.unwrap();
    let missing = PostgresBackend::builder(&f.url)
        .schema(&empty)
        .install(false)
        .connect()
        .await;
    assert!(
        matches!(missing, Err(PostgresBackendError::NotInstalled { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_role_with_only_dml_grants_suffices() {
    let f = Fixture::new().await;
    let role = format!("app_{}", &f.schema[2..14]);
    f.admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .await
        .unwrap();
    f.admin
        .batch_execute(&PostgresBackend::install_sql(&f.schema).unwrap())
        .await
        .unwrap();
    f.admin
        .batch_execute(&PostgresBackend::grant_sql(&f.schema, &role).unwrap())
        .await
        .unwrap();
    let can_create: bool = f
        .admin
        .query_one(
            "SELECT has_schema_privilege($1, $2, 'CREATE')",
            &[&role, &f.schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!can_create);
    // The default connect tries to create the tables, is refused, and finds them.
    let url = as_user(&f.url, &role, "least_privilege");
    let backend = PostgresBackend::builder(&url)
        .schema(&f.schema)
        .pool_size(2)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("least-privilege connect: {e}"));
    let locks = LockService::new(backend).unwrap();
    let g = locks.acquire("job").await.unwrap();
    assert!(locks.try_acquire("job").await.is_err());
    g.release().await.unwrap();
    let sem = locks.semaphore("pool", 2).unwrap();
    let p = sem.acquire().await.unwrap();
    p.release().await.unwrap();
    let rw = locks.rwlock("doc").unwrap();
    rw.read().await.unwrap().release().await.unwrap();
    rw.write().await.unwrap().release().await.unwrap();
    // And the role really has no more: it cannot create a table.
    let app = connect(&url).await.unwrap();
    let refused = app
        .batch_execute(&format!("CREATE TABLE \"{}\".x (i int)", f.schema))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}

#[tokio::test]
async fn a_release_notifies_a_listener_of_another_backend() {
    let f = Fixture::new().await;
    let (a, b) = (f.backend().await, f.backend().await);
    let (k, t) = (key("notify"), OwnerToken::new());
    let ttl = Duration::from_secs(30);
    fence(a.try_acquire(&k, LeaseKind::Mutex, t, ttl).await.unwrap());
    let mut listener = b.listen(&k).await.unwrap();
    assert!(a.release(&k, LeaseKind::Mutex, t).await.unwrap());
    // A polling listener would time out: only NOTIFY ends this wait early.
    assert_eq!(
        listener.wait_for_release(EVENT_TIMEOUT).await.unwrap(),
        Wake::Notified
    );
    // A release that finds nothing notifies nobody.
    assert!(!a.release(&k, LeaseKind::Mutex, t).await.unwrap());
    assert_eq!(
        listener
            .wait_for_release(Duration::from_millis(200))
            .await
            .unwrap(),
        Wake::TimedOut
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_replaced_and_waiters_re_check() {
    let f = Fixture::new().await;
    let app = format!("killed_{}", &f.schema[2..14]);
    let url = as_user(&f.url, "postgres", &app);
    let backend = PostgresBackend::builder(&url)
        .schema(&f.schema)
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    let locks = LockService::new(backend.clone()).unwrap();
    let g = locks.acquire("k").await.unwrap();
    let mut listener = backend.listen(&key("other")).await.unwrap();
    let killed: i64 = f
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 2, "pool and listening connections: {killed}");
    // The listening connection's loss wakes every waiter (a release may have been missed).
    assert_eq!(
        listener.wait_for_release(EVENT_TIMEOUT).await.unwrap(),
        Wake::Notified
    );
    // The lease is still in the table. The first operation may still draw a pooled connection
    // whose end the pool has not seen yet (a transient error the service retries).
    let k = key("k");
    let holders = retry(|| backend.holders(&k, LeaseKind::Mutex)).await;
    assert!(holders.is_held_by(g.token(), LeaseKind::Mutex));
    g.release().await.unwrap();
    let again = locks.acquire("k").await.unwrap();
    again.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_is_transient_and_rolls_back() {
    let f = Fixture::new().await;
    let backend = f
        .backend_with(|b| b.statement_timeout(Duration::from_millis(200)))
        .await;
    let (k, t) = (key("stuck"), OwnerToken::new());
    f.block_leases().await;
    let e = backend
        .try_acquire(&k, LeaseKind::Mutex, t, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let code = match pg_source(&e) {
        Some(PostgresBackendError::Postgres { source, .. }) => source.code().cloned(),
        other => panic!("{other:?}"),
    };
    assert_eq!(code, Some(SqlState::QUERY_CANCELED));
    f.unblock_leases().await;
    assert_eq!(
        f.lease_rows().await,
        0,
        "the timed-out acquire wrote nothing"
    );
    assert_eq!(
        f.fence_rows().await,
        0,
        "the timed-out acquire wrote nothing"
    );
    fence(
        backend
            .try_acquire(&k, LeaseKind::Mutex, t, Duration::from_secs(10))
            .await
            .unwrap(),
    );
}

/// Retry `op` over the transient errors of a server coming back (bounded).
async fn retry<T, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let mut last = None;
    for _ in 0..100 {
        match op().await {
            Ok(v) => return v,
            Err(e) if e.is_transient() => last = Some(e),
            Err(e) => panic!("{e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("still failing after the restart: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_fences_survive_a_server_restart() {
    let mut server = PostgresServer::start_local()
        .await
        .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
    let url = server.url();
    let backend = PostgresBackend::builder(&url)
        .pool_size(2)
        .connect()
        .await
        .unwrap();
    let backend = Arc::new(backend);
    let (k, a, b) = (key("durable"), OwnerToken::new(), OwnerToken::new());
    let ttl = Duration::from_secs(60);
    let first = fence(
        backend
            .try_acquire(&k, LeaseKind::Mutex, a, ttl)
            .await
            .unwrap(),
    );
    server.restart().await.unwrap();
    // The lease is still there, with its fence.
    let holders = retry(|| backend.holders(&k, LeaseKind::Mutex)).await;
    assert!(holders.is_held_by(a, LeaseKind::Mutex));
    assert!(matches!(
        retry(|| backend.try_acquire(&k, LeaseKind::Mutex, b, ttl)).await,
        AcquireResult::Held { .. }
    ));
    assert!(retry(|| backend.release(&k, LeaseKind::Mutex, a)).await);
    let second = fence(retry(|| backend.try_acquire(&k, LeaseKind::Mutex, b, ttl)).await);
    assert!(second > first, "{second} > {first}");
    // The listening connection comes back: a release notifies again.
    let mut listener = retry(|| backend.listen(&k)).await;
    assert!(backend.release(&k, LeaseKind::Mutex, b).await.unwrap());
    assert_eq!(
        listener.wait_for_release(EVENT_TIMEOUT).await.unwrap(),
        Wake::Notified
    );
}

#[tokio::test]
async fn dead_rows_are_deleted_by_the_next_acquire() {
    let f = Fixture::new().await;
    let b = f.backend().await;
    let (k, three) = (key("sweep"), LeaseKind::Permit { limit: 3 });
    let ttl = Duration::from_secs(30);
    for _ in 0..3 {
        fence(
            b.try_acquire(&k, three, OwnerToken::new(), ttl)
                .await
                .unwrap(),
        );
    }
    let late = OwnerToken::new();
    assert!(matches!(
        b.try_acquire(&k, three, late, ttl).await.unwrap(),
        AcquireResult::Held { .. }
    ));
    common::expire(&f.admin, &f.schema, &k).await;
    assert_eq!(
        f.lease_rows().await,
        3,
        "dead rows stay until an operation sees them"
    );
    assert!(b.holders(&k, three).await.unwrap().leases.is_empty());
    fence(b.try_acquire(&k, three, late, ttl).await.unwrap());
    assert_eq!(
        f.lease_rows().await,
        1,
        "the acquire deleted the dead permits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_leaves_no_transaction_open() {
    let f = Fixture::new().await;
    let a = f.backend_with(|b| b.pool_size(1)).await;
    let b = f
        .backend_with(|b| b.statement_timeout(Duration::from_secs(3)))
        .await;
    let k = key("cancelled");
    let ttl = Duration::from_secs(30);
    // Warm A's one connection up (its statements prepared), so that the acquire below gets
    // inside its transaction before it blocks.
    let (warm, w) = (key("warm"), OwnerToken::new());
    fence(
        a.try_acquire(&warm, LeaseKind::Mutex, w, ttl)
            .await
            .unwrap(),
    );
    assert!(a.release(&warm, LeaseKind::Mutex, w).await.unwrap());
    // Park A's acquire inside its transaction, then drop it there.
    f.block_leases().await;
    let attempt = a.try_acquire(&k, LeaseKind::Mutex, OwnerToken::new(), ttl);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), attempt)
            .await
            .is_err()
    );
    f.unblock_leases().await;
    // Had A's connection gone back to the pool mid-transaction, it would hold the name's
    // advisory lock and B would wait until its statement timeout.
    let t = OwnerToken::new();
    fence(b.try_acquire(&k, LeaseKind::Mutex, t, ttl).await.unwrap());
    // A's pool works on a fresh connection.
    assert!(matches!(
        a.try_acquire(&k, LeaseKind::Mutex, OwnerToken::new(), ttl)
            .await
            .unwrap(),
        AcquireResult::Held { .. }
    ));
    assert_eq!(f.lease_rows().await, 1);
}

#[tokio::test]
async fn a_late_acquire_after_an_empty_release_is_refused_and_writes_nothing() {
    let f = Fixture::new().await;
    let b = f.backend().await;
    let (k, t) = (key("late"), OwnerToken::new());
    let ttl = Duration::from_secs(30);
    // The service gave up on an acquire with `t` and released it: nothing was held yet.
    assert!(!b.release(&k, LeaseKind::Mutex, t).await.unwrap());
    for kind in [
        LeaseKind::Mutex,
        LeaseKind::Permit { limit: 2 },
        LeaseKind::Read,
    ] {
        let e = b.try_acquire(&k, kind, t, ttl).await.unwrap_err();
        assert!(!e.is_transient());
        assert!(
            matches!(pg_source(&e), Some(PostgresBackendError::RetiredToken)),
            "{e:?}"
        );
    }
    assert!(
        b.holders(&k, LeaseKind::Mutex)
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    // Other tokens are not held up by it.
    fence(
        b.try_acquire(&k, LeaseKind::Mutex, OwnerToken::new(), ttl)
            .await
            .unwrap(),
    );
}
