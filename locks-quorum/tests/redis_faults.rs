//! Node faults on a quorum of 3 real redis-servers: one stopped, one stalled by the fault
//! proxy, one restarted empty; mutual exclusion and fence monotonicity hold; with a majority
//! down, acquire fails with a typed error within its budget.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{assert_contended, contend, no_quorum_within};
use locks_core::LockService;
use locks_quorum::QuorumBackend;
use locks_testkit::proxy::{Direction, FaultProxy};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig};

const TTL: Duration = Duration::from_secs(2);

async fn servers(n: usize) -> Vec<RedisServer> {
    futures::future::try_join_all(
        (0..n).map(|_| RedisServer::start_with(RedisServerConfig::new().local_only())),
    )
    .await
    .unwrap_or_else(|e| panic!("redis-server: {e}"))
}

async fn service(urls: &[String]) -> LockService {
    let quorum = locks_quorum::redis::connect_with(
        QuorumBackend::builder().node_timeout(Duration::from_millis(300)),
        urls,
        |node| node.response_timeout(Duration::from_millis(250)),
    )
    .await
    .unwrap_or_else(|e| panic!("quorum: {e}"));
    // The conformance suites' service: ttl 2 s (`TTL`), quick retries.
    locks_testkit::conformance::service(Arc::new(quorum))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_stopped_then_restarted_empty() {
    let mut nodes = servers(3).await;
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let svc = service(&urls).await;
    let before = contend(&svc, "stop", 3, 3, Duration::ZERO).await;
    nodes[0].stop().await.expect("stop");
    let during = contend(&svc, "stop", 3, 3, Duration::ZERO).await;
    // A lease taken while node 0 is down, then node 0 comes back empty: still exclusive.
    let held = svc.acquire("stop").await.expect("acquire");
    nodes[0].restart().await.expect("restart");
    assert_contended(svc.try_acquire("stop").await);
    let fence = held.fence();
    held.release().await.expect("release");
    let after = contend(&svc, "stop", 3, 3, Duration::ZERO).await;
    assert!(
        before.last() < during.first() && fence < after[0],
        "{before:?} {during:?} {fence} {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_stalled_by_the_proxy() {
    let nodes = servers(3).await;
    let proxy = FaultProxy::for_server(&nodes[2]).await.expect("proxy");
    let urls = vec![nodes[0].url(), nodes[1].url(), proxy.url()];
    let svc = service(&urls).await;
    proxy.stall(Direction::Both);
    contend(&svc, "stall", 3, 3, Duration::ZERO).await;
    // Renewals go on with the two others.
    let guard = svc.acquire("stall:renew").await.expect("acquire");
    let lost = tokio::time::timeout(TTL * 2, guard.lost()).await;
    assert!(lost.is_err(), "lost while a majority renews: {lost:?}");
    assert!(guard.is_held().await.expect("inspect"));
    proxy.resume(Direction::Both);
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_down_fails_with_a_typed_error_within_the_budget() {
    let mut nodes = servers(3).await;
    let urls: Vec<String> = nodes.iter().map(RedisServer::url).collect();
    let svc = service(&urls).await;
    nodes[0].stop().await.expect("stop");
    nodes[1].stop().await.expect("stop");
    let budget = Duration::from_millis(800);
    let (_, waited) = no_quorum_within(&svc, "down", budget).await;
    // The budget, plus at most one attempt in flight (node timeout 300 ms) and slack.
    assert!(waited < budget + Duration::from_millis(900), "{waited:?}");
}
