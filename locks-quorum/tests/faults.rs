//! Node faults on memory quorums, in paused time: a node stopped, stalled, restarted empty, its
//! clock skewed; mutual exclusion and fence monotonicity hold, and a quorum with a majority
//! down fails with a typed error within the wait budget.

mod common;

use std::time::Duration;

use common::{
    FencedResource, assert_contended, contend, no_quorum_within, quorum, raise_counter, service,
};
use locks_core::{AcquireOptions, LockError};
use locks_quorum::NoQuorum;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(2);

/// How long a holder stays inside in [`contend`] (paused time).
const HOLD: Duration = Duration::from_millis(3);

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_node_stopped_keeps_exclusion_and_fences() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let before = contend(&svc, "stopped", 3, 4, HOLD).await;
    nodes[0].down(true);
    let during = contend(&svc, "stopped", 3, 4, HOLD).await;
    nodes[0].down(false);
    let after = contend(&svc, "stopped", 3, 4, HOLD).await;
    assert!(before.last() < during.first() && during.last() < after.first());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_node_stalled_does_not_hold_up_the_majority() {
    let nodes = common::nodes(5);
    let svc = service(quorum(&nodes));
    nodes[4].faults.set_latency(Duration::from_secs(3600));
    let started = Instant::now();
    contend(&svc, "stalled", 2, 3, HOLD).await;
    // 6 holds of 3 ms each, one after the other; no call waited for the stalled node
    // beyond its node timeout (100 ms).
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    let guard = svc.acquire("stalled:renew").await.expect("acquire");
    tokio::time::sleep(TTL * 3).await;
    assert!(
        guard.is_held().await.expect("inspect"),
        "renewed by the majority"
    );
    guard.release().await.expect("release");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn one_node_restarted_empty_keeps_exclusion_and_fences() {
    let nodes = common::nodes(3);
    // Node 0 has handed out many more fences than the others.
    raise_counter(&nodes[0], 200).await;
    let svc = service(quorum(&nodes));
    let first = svc.acquire("restarted").await.expect("acquire");
    // Node 0 comes back empty under a live lease: the other two still refuse.
    nodes[0].store.restart_empty();
    assert_contended(svc.try_acquire("restarted").await);
    let fence = first.fence();
    first.release().await.expect("release");
    // The next grant comes from node 0 (empty: counter 1) and node 2 (node 1 is down, a second
    // fault): the fence record that node 2 took keeps it above the first one (node 0's large
    // counter and its record are gone).
    nodes[1].down(true);
    let second = svc.acquire("restarted").await.expect("acquire");
    assert!(second.fence() > fence, "{} <= {fence}", second.fence());
    second.release().await.expect("release");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_skewed_clock_keeps_exclusion_and_fences() {
    let nodes = common::skewed_nodes(3, Duration::from_secs(10));
    raise_counter(&nodes[2], 100).await;
    let svc = service(quorum(&nodes));
    let opts = AcquireOptions::new().ttl(TTL).auto_renew(false);
    let first = svc
        .acquire_opts("skew", opts.clone())
        .await
        .expect("acquire");
    // Node 1's clock jumps past the lease: it lets go early, the other two hold on.
    nodes[1].jump(TTL * 2);
    assert_contended(svc.try_acquire_opts("skew", opts.clone()).await);
    let fence = first.fence();
    first.release().await.expect("release");
    nodes[2].down(true);
    let second = svc.try_acquire_opts("skew", opts).await.expect("acquire");
    assert!(second.fence() > fence);
    second.release().await.expect("release");
}

/// Redlock's known weakness (Kleppmann): a holder on a bare majority, one of whose nodes then
/// loses the lease early (a clock jump), is joined by a second holder. The fences still
/// order them, so a resource that checks fences refuses the first holder's late write.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_double_grant_after_a_clock_jump_is_caught_by_the_fence() {
    let nodes = common::skewed_nodes(3, Duration::from_secs(10));
    // Node 0's counter is far ahead: the first grant's fence comes from it.
    raise_counter(&nodes[0], 500).await;
    let svc = service(quorum(&nodes));
    let opts = AcquireOptions::new().ttl(TTL).auto_renew(false);
    nodes[2].down(true);
    let first = svc
        .acquire_opts("kleppmann", opts.clone())
        .await
        .expect("acquire");
    nodes[2].down(false);
    nodes[1].jump(TTL * 2);
    let second = svc
        .try_acquire_opts("kleppmann", opts)
        .await
        .expect("granted on 1 and 2");
    // Nodes 1 and 2 have small counters; without the fence records this would be below.
    assert!(
        second.fence() > first.fence(),
        "{} <= {}",
        second.fence(),
        first.fence()
    );
    let resource = FencedResource::default();
    assert!(resource.write(second.fence()));
    assert!(
        !resource.write(first.fence()),
        "the stale holder's write is refused"
    );
    drop((first, second));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_majority_down_fails_with_a_typed_error_within_the_budget() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    nodes[0].down(true);
    nodes[1].down(true);
    let budget = Duration::from_secs(1);
    let (no, waited) = no_quorum_within(&svc, "down", budget).await;
    assert_eq!((no.needed, no.nodes, no.failed), (2, 3, 2), "{no}");
    assert!(waited <= budget + Duration::from_millis(200), "{waited:?}");
    // Without waiting: the backend error at once.
    let err = svc.try_acquire("down").await.expect_err("no majority");
    assert!(
        matches!(&err, LockError::Backend { source, .. } if NoQuorum::find(source).is_some()),
        "{err:?}"
    );
    // The node that granted gave its grant back (in the background when its grant came
    // after the decision): polled, within a bound.
    let key = svc.key("down").expect("key");
    let mut left = None;
    for _ in 0..100 {
        let holders =
            locks_core::LockBackend::holders(&nodes[2].store, &key, locks_core::LeaseKind::Mutex)
                .await
                .expect("holders");
        if holders.leases.is_empty() {
            left = None;
            break;
        }
        left = Some(holders);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(left.is_none(), "{left:?}");
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_renewal_on_a_minority_is_unknown_then_lost_on_a_majority_no() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let guard = svc.acquire("state").await.expect("acquire");
    // Two nodes unreachable: renewals fail, the state is unknown, not lost, until the
    // deadline; back in time, a renewal confirms it again.
    nodes[0].down(true);
    nodes[1].down(true);
    tokio::time::sleep(TTL / 2 + Duration::from_millis(50)).await;
    assert_eq!(guard.state(), locks_core::LeaseState::Unknown);
    nodes[0].down(false);
    nodes[1].down(false);
    tokio::time::sleep(TTL / 2).await;
    assert_eq!(guard.state(), locks_core::LeaseState::Held);
    // A majority says "not owner": lost.
    for n in &nodes[..2] {
        n.store.store().expire_now(&svc.key("state").expect("key"));
    }
    let reason = tokio::time::timeout(TTL * 2, guard.lost())
        .await
        .expect("lost");
    assert_eq!(reason, locks_core::LostReason::NotOwner);
}

/// One node says "not owner", one fails, one confirms: no majority either way, so the state is
/// unknown (not lost); once the failed node answers again, two confirm and it is held.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_split_renewal_is_unknown_not_lost() {
    let nodes = common::nodes(3);
    let svc = service(quorum(&nodes));
    let guard = svc.acquire("split").await.expect("acquire");
    nodes[0]
        .store
        .store()
        .expire_now(&svc.key("split").expect("key"));
    nodes[1].down(true);
    tokio::time::sleep(TTL / 2 + Duration::from_millis(50)).await;
    assert_eq!(guard.state(), locks_core::LeaseState::Unknown);
    nodes[1].down(false);
    tokio::time::sleep(TTL / 4).await;
    assert_eq!(guard.state(), locks_core::LeaseState::Held);
    guard.release().await.expect("release");
}
