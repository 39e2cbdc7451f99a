//! Unit tests of the service's keeper and contended-key hint, on a minimal counting store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use tokio::sync::watch;

use super::line::CONTENDED_HINT;
use super::*;
use crate::backend::{
    AcquireResult, Action, Dispatch, Holders, Lease, Operation, Outcome, ReleaseListener, Wake,
};
use crate::error::BackendError;
use crate::state::LeaseState;
use crate::token::OwnerToken;

/// A minimal store (no expiry) that counts acquire attempts.
#[derive(Debug, Default)]
struct Counting {
    leases: Mutex<HashMap<LockKey, (OwnerToken, u64)>>,
    fence: AtomicU64,
    attempts: AtomicU64,
    extends: AtomicU64,
    released: Mutex<Option<watch::Sender<u64>>>,
}

impl Counting {
    fn releases(&self) -> watch::Sender<u64> {
        lock(&self.released)
            .get_or_insert_with(|| watch::Sender::new(0))
            .clone()
    }
}

struct Listener(watch::Receiver<u64>);

#[async_trait]
impl ReleaseListener for Listener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        match tokio::time::timeout(max, self.0.changed()).await {
            Ok(_) => Ok(Wake::Notified),
            Err(_) => Ok(Wake::TimedOut),
        }
    }
}

#[async_trait]
impl Dispatch for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn supports(&self, kind: LeaseKind) -> bool {
        kind == LeaseKind::Mutex
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let key = op.key;
        let mut leases = lock(&self.leases);
        let held_by = |token| leases.get(key).is_some_and(|(owner, _)| *owner == token);
        Ok(match op.action {
            Action::TryAcquire { token, .. } => {
                self.attempts.fetch_add(1, Ordering::SeqCst);
                Outcome::Acquire(match leases.get(key) {
                    Some((owner, fence)) if *owner == token => {
                        AcquireResult::Acquired(Lease::new(*fence))
                    }
                    Some(_) => AcquireResult::Held { remaining: None },
                    None => {
                        let fence = self.fence.fetch_add(1, Ordering::SeqCst) + 1;
                        leases.insert(key.clone(), (token, fence));
                        AcquireResult::Acquired(Lease::new(fence))
                    }
                })
            }
            Action::Release { token } => {
                let owned = held_by(token);
                if owned {
                    leases.remove(key);
                    drop(leases);
                    self.releases().send_modify(|n| *n += 1);
                }
                Outcome::Done(owned)
            }
            Action::Extend { token, .. } => {
                self.extends.fetch_add(1, Ordering::SeqCst);
                Outcome::Done(held_by(token))
            }
            Action::Holders => Outcome::Holders(Holders::new(
                leases
                    .get(key)
                    .map(|(owner, fence)| LeaseInfo::new(op.kind, *owner, Duration::MAX, *fence))
                    .into_iter()
                    .collect(),
            )),
            Action::ForceRelease => Outcome::Done(leases.remove(key).is_some()),
        })
    }
    async fn listen(&self, _key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        Ok(Box::new(Listener(self.releases().subscribe())))
    }
    async fn list(
        &self,
        _query: &crate::backend::ListQuery,
    ) -> Result<crate::backend::ListPage, BackendError> {
        Err(BackendError::permanent("the counting store cannot list"))
    }
}

crate::impl_lock_backend!(Counting);

fn service(store: &Arc<Counting>) -> LockService {
    let backend: Arc<dyn LockBackend> = Arc::clone(store) as Arc<dyn LockBackend>;
    LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(1))
        .build()
        .expect("service")
}

fn keeper_idle(svc: &LockService) -> bool {
    svc.inner.keeper.is_idle()
}

#[tokio::test(start_paused = true)]
async fn one_keeper_renews_every_lease_then_stops() {
    let store = Arc::new(Counting::default());
    let svc = service(&store);
    let mut guards = Vec::new();
    for i in 0..100 {
        guards.push(svc.acquire(&format!("k{i}")).await.expect("acquire"));
    }
    assert_eq!(svc.held_count(), 100);
    // ttl 1 s, renewed every 0.5 s: 4.2 s is 8 renewals each.
    tokio::time::sleep(Duration::from_millis(4200)).await;
    assert_eq!(store.extends.load(Ordering::SeqCst), 800);
    assert!(guards.iter().all(|g| g.state() == LeaseState::Held));
    for g in guards {
        g.release().await.expect("release");
    }
    assert_eq!(svc.held_count(), 0);
    // Nothing left to watch: the task lingers a while, then ends.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!keeper_idle(&svc));
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(keeper_idle(&svc));
    assert_eq!(store.extends.load(Ordering::SeqCst), 800);
    // And comes back for the next lease.
    let g = svc.acquire("again").await.expect("acquire");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(store.extends.load(Ordering::SeqCst), 801);
    g.release().await.expect("release");
    assert_eq!(svc.inner.keeper.spawned.load(Ordering::SeqCst), 2);
}

/// Leases given back before their first renewal cost the keeper no task spawn and no
/// wake-up: the lingering task, looking every second, never needs to hear of them.
#[tokio::test(start_paused = true)]
async fn short_holds_cost_the_keeper_no_spawn() {
    let store = Arc::new(Counting::default());
    let backend: Arc<dyn LockBackend> = Arc::clone(&store) as Arc<dyn LockBackend>;
    let svc = LockService::builder_arc(backend)
        .default_ttl(Duration::from_secs(30))
        .build()
        .expect("service");
    for i in 0..1000 {
        let g = svc.acquire(&format!("k{}", i % 7)).await.expect("acquire");
        g.release().await.expect("release");
        if i % 100 == 0 {
            // Time passes between bursts, within the linger.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    assert_eq!(svc.inner.keeper.spawned.load(Ordering::SeqCst), 1);
    assert_eq!(store.extends.load(Ordering::SeqCst), 0);
}

/// `a` holds `key` while `b` waits for it; `a` releases 5 ms later and `b` gets it. Returns
/// how many acquire attempts reached the store from `a`'s grant to `b`'s.
async fn hand_over(store: &Counting, a: &LockService, b: &LockService, key: &'static str) -> u64 {
    let held = a.acquire(key).await.expect("a acquires");
    let before = store.attempts.load(Ordering::SeqCst);
    let waiter = tokio::spawn({
        let b = b.clone();
        async move { b.acquire(key).await }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    held.release().await.expect("release");
    let got = waiter.await.expect("task").expect("b acquires");
    let attempts = store.attempts.load(Ordering::SeqCst) - before;
    got.release().await.expect("release");
    attempts
}

#[tokio::test(start_paused = true)]
async fn a_recently_contended_key_is_listened_to_before_the_first_attempt() {
    let store = Arc::new(Counting::default());
    let (a, b) = (service(&store), service(&store));

    // First contended acquire: attempt, listen, look again, wait, attempt after release.
    assert_eq!(hand_over(&store, &a, &b, "k").await, 3);

    // Moments later the key is still marked contended for `b`: it listens first, so one
    // failed attempt is enough before waiting.
    assert_eq!(hand_over(&store, &a, &b, "k").await, 2);

    // Free at once: the mark is dropped; and after the hint's lifetime, the line is gone.
    let take_free = || async {
        let guard = b.acquire("k").await.expect("free");
        guard.release().await.expect("release");
    };
    take_free().await;
    tokio::time::sleep(CONTENDED_HINT).await;
    take_free().await;
    assert!(lock(&b.inner.lines).lines.is_empty());
}

#[tokio::test]
async fn a_kind_the_backend_cannot_store_is_refused_when_the_primitive_is_created() {
    let store = Arc::new(Counting::default());
    let svc = service(&store);
    let attempts = store.attempts.load(Ordering::SeqCst);
    match svc.semaphore("pool", 3) {
        Err(LockError::Unsupported { backend, kind }) => {
            assert_eq!(backend, "counting");
            assert_eq!(kind, LeaseKind::Permit { limit: 3 });
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(
        svc.rwlock("config"),
        Err(LockError::Unsupported {
            kind: LeaseKind::Read,
            ..
        })
    ));
    // Nothing was sent to the store, and the mutex (which it supports) still works.
    assert_eq!(store.attempts.load(Ordering::SeqCst), attempts);
    svc.acquire("k")
        .await
        .expect("mutex")
        .release()
        .await
        .expect("release");
}
