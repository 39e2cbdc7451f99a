//! The service's features on a quorum, unchanged: renewal, `lost()`, `with_lock`, elections,
//! multi-lock (3 memory nodes, paused time).

mod common;

use std::time::Duration;

use common::{quorum, service};
use locks_core::{AcquireOptions, LeaseKind, LockBackend, LostReason};

const TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn renewal_keeps_the_lease_and_lost_fires_when_a_majority_drops_it() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let guard = svc.acquire("renew").await.expect("acquire");
    tokio::time::sleep(TTL * 4).await;
    let info = svc.inspect("renew").await.expect("inspect").expect("held");
    assert_eq!((info.owner, info.fence), (guard.token(), guard.fence()));
    let key = svc.key("renew").expect("key");
    nodes[0].store.store().expire_now(&key);
    tokio::time::sleep(TTL).await;
    assert!(
        guard.is_held().await.expect("inspect"),
        "one node alone does not lose it"
    );
    // The renewal that found node 0 empty took the lease there again.
    let on_node_0 = LockBackend::holders(&nodes[0].store, &key, LeaseKind::Mutex)
        .await
        .expect("holders");
    assert_eq!(
        on_node_0.leases.first().map(|l| l.owner),
        Some(guard.token())
    );
    nodes[0].store.store().expire_now(&key);
    nodes[1].store.store().expire_now(&key);
    let reason = tokio::time::timeout(TTL * 2, guard.lost())
        .await
        .expect("lost");
    assert_eq!(reason, LostReason::NotOwner);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn with_lock_holds_the_quorum_lease_while_it_runs() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let inner = svc.clone();
    let fence = svc
        .with_lock("work", |guard| async move {
            assert!(inner.is_locked("work").await.expect("inspect"));
            guard.fence()
        })
        .await
        .expect("with_lock");
    assert!(fence > 0);
    assert!(!svc.is_locked("work").await.expect("inspect"));
    for n in &nodes {
        assert_eq!(n.store.store().live_leases(), 0, "released on every node");
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn elections_hand_over_with_increasing_terms() {
    let nodes = common::nodes(3);
    let (a, b) = (service(quorum(&nodes)), service(quorum(&nodes)));
    let (ea, eb) = (
        a.election("leader").expect("e"),
        b.election("leader").expect("e"),
    );
    let first = ea.campaign().await.expect("elected");
    assert_eq!(
        eb.leader().await.expect("leader").map(|l| l.fence),
        Some(first.term())
    );
    let waiting = tokio::spawn(async move { eb.campaign().await.map(|l| l.term()) });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let term = first.term();
    first.resign().await.expect("resign");
    let next = waiting.await.expect("task").expect("elected");
    assert!(next > term);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn multi_lock_takes_every_key_on_the_quorum() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let all = svc
        .acquire_all(&["b", "a", "c"], AcquireOptions::new())
        .await
        .expect("acquire_all");
    assert_eq!(all.guards().len(), 3);
    for k in ["a", "b", "c"] {
        assert!(svc.is_locked(k).await.expect("inspect"));
    }
    let other = service(quorum(&nodes));
    let refused = other
        .acquire_all(
            &["c", "d"],
            AcquireOptions::new().wait_timeout(Duration::from_millis(100)),
        )
        .await;
    assert!(refused.is_err());
    assert!(!svc.is_locked("d").await.expect("inspect"), "rolled back");
    all.release().await.expect("release");
    assert!(!svc.is_locked("a").await.expect("inspect"));
}
