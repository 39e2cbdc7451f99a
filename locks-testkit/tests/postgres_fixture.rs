//! The PostgreSQL fixture: a private server on a free port (never 5432) that stops, restarts
//! with its data, and leaves nothing behind; the run's shared server; errors that name the fix.

use locks_testkit::postgres_server::{
    FixtureError, PostgresServer, connect, fresh_schema, shared_url,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_server_restarts_with_its_data_and_is_removed_on_drop() {
    let mut server = PostgresServer::start_local()
        .await
        .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
    let port = server.port().expect("a private server has a port");
    assert_ne!(port, 5432);
    let url = server.url();
    let client = connect(&url).await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    server.stop().await.unwrap();
    assert!(
        connect(&url).await.is_err(),
        "a stopped server refuses connections"
    );
    server.restart().await.unwrap();
    let client = connect(&url).await.unwrap();
    let v: i32 = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
    let dir = format!("{server:?}");
    drop(client);
    drop(server);
    assert!(
        connect(&url).await.is_err(),
        "a dropped server is stopped: {dir}"
    );
}

#[tokio::test]
async fn the_shared_server_is_started_once_and_schemas_keep_tests_apart() {
    let a = shared_url()
        .await
        .unwrap_or_else(|e| panic!("postgres fixture: {e}"));
    let b = shared_url().await.unwrap();
    assert_eq!(a, b);
    let (s1, s2) = (
        fresh_schema(&a).await.unwrap(),
        fresh_schema(&a).await.unwrap(),
    );
    assert_ne!(s1, s2);
    let client = connect(&a).await.unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)",
            &[&vec![s1, s2]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn a_missing_server_names_the_fix() {
    let e = FixtureError::NoServer {
        detail: "no initdb".into(),
    };
    let msg = e.to_string();
    assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
    assert!(msg.contains("LOCKS_TEST_POSTGRES_URL"), "{msg}");
    assert!(msg.contains("/usr/lib/postgresql"), "{msg}");
}
