//! How the memory store keeps keys: apart by prefix and name, freed when idle, with fences
//! that keep increasing after a key was freed.

use std::time::Duration;

use locks_core::{
    AcquireResult, LeaseKind, LockBackend, LockKey, LockService, OwnerToken, ReleaseListener, Wake,
};
use locks_memory::{ManualClock, MemoryBackend};

const TTL: Duration = Duration::from_secs(30);

fn key(name: &str) -> LockKey {
    LockKey::new("_lock:", name).unwrap()
}

async fn acquire(store: &MemoryBackend, key: &LockKey, kind: LeaseKind, token: OwnerToken) -> u64 {
    match store.try_acquire(key, kind, token, TTL).await.unwrap() {
        AcquireResult::Acquired(lease) => lease.fence,
        held => panic!("{key:?} {kind}: {held:?}"),
    }
}

/// `"a:" + "b"` and `"a" + ":b"` spell the same string, but they are two locks.
#[tokio::test(start_paused = true)]
async fn equal_prefix_plus_name_strings_of_two_prefixes_are_two_locks() {
    let store = MemoryBackend::new();
    let colon = LockService::builder(store.clone())
        .key_prefix("a:")
        .build()
        .unwrap();
    let plain = LockService::builder(store.clone())
        .key_prefix("a")
        .build()
        .unwrap();

    let first = colon.try_acquire("b").await.unwrap();
    let second = plain
        .try_acquire(":b")
        .await
        .unwrap_or_else(|e| panic!("another prefix's lock: {e}"));
    assert_eq!(store.slot_count(), 2);
    first.release().await.unwrap();
    assert!(plain.is_locked(":b").await.unwrap());
    assert!(!colon.is_locked("b").await.unwrap());
    second.release().await.unwrap();
    assert_eq!(store.slot_count(), 0);
}

/// Acquire and release many distinct names, of every kind: the store keeps nothing for them
/// afterwards, and a name used again gets a larger fence than it had.
///
/// One million names, straight on the backend (no service), in paused time: about 3 s in a
/// debug build on 2 busy cores.
#[tokio::test(start_paused = true)]
async fn a_million_distinct_names_leave_no_slots_and_fences_keep_increasing() {
    const NAMES: usize = 1_000_000;
    let store = MemoryBackend::new();
    let kinds = [
        LeaseKind::Mutex,
        LeaseKind::Permit { limit: 2 },
        LeaseKind::Read,
        LeaseKind::Write,
    ];
    // One owner for every name (a token is unique per holder, not per key): fresh random
    // tokens would cost more than the store.
    let token = OwnerToken::new();
    let started = std::time::Instant::now();
    let mut first_fences = Vec::new();
    for i in 0..NAMES {
        let k = key(&format!("name-{i}"));
        let kind = kinds[i % kinds.len()];
        let fence = acquire(&store, &k, kind, token).await;
        if i < kinds.len() {
            first_fences.push(fence);
        }
        if i % 64 == 0 {
            // Only the key just acquired (counting the slots locks the whole map: sampled).
            assert_eq!(store.slot_count(), 1, "after {i} names");
        }
        assert!(store.release(&k, kind, token).await.unwrap());
    }
    eprintln!(
        "{NAMES} names acquired and released in {:?}",
        started.elapsed()
    );
    assert_eq!(store.slot_count(), 0);

    for (i, (kind, before)) in kinds.iter().zip(first_fences).enumerate() {
        let k = key(&format!("name-{i}"));
        let again = acquire(&store, &k, *kind, OwnerToken::new()).await;
        assert!(again > before, "{kind}: fence {again} after {before}");
    }
}

/// Leases that expire without anyone looking at their key again are swept as new keys come.
#[tokio::test(start_paused = true)]
async fn keys_whose_leases_expired_unobserved_are_swept() {
    let clock = ManualClock::new();
    let store = MemoryBackend::with_clock(clock.clone());
    for i in 0..5_000 {
        acquire(
            &store,
            &key(&format!("crashed-{i}")),
            LeaseKind::Mutex,
            OwnerToken::new(),
        )
        .await;
    }
    assert_eq!(store.slot_count(), 5_000);
    clock.advance(TTL);
    for i in 0..10_000 {
        let k = key(&format!("fresh-{i}"));
        let token = OwnerToken::new();
        acquire(&store, &k, LeaseKind::Read, token).await;
        store.release(&k, LeaseKind::Read, token).await.unwrap();
    }
    assert_eq!(store.slot_count(), 0);
}

/// A listener keeps its key's slot (and so every notification) alive; the last one to go
/// frees it. A release observed after expiry frees it too.
#[tokio::test(start_paused = true)]
async fn listeners_keep_their_slot_and_the_last_one_frees_it() {
    let clock = ManualClock::new();
    let store = MemoryBackend::with_clock(clock.clone());
    let k = key("watched");
    let mut listener = store.listen(&k).await.unwrap();
    assert_eq!(store.slot_count(), 1);
    let token = OwnerToken::new();
    let fence = acquire(&store, &k, LeaseKind::Mutex, token).await;
    assert!(store.release(&k, LeaseKind::Mutex, token).await.unwrap());
    assert_eq!(store.slot_count(), 1, "a listener keeps the slot");
    assert_eq!(
        listener
            .wait_for_release(Duration::from_millis(10))
            .await
            .unwrap(),
        Wake::Notified
    );
    drop(listener);
    assert_eq!(store.slot_count(), 0);

    let token = OwnerToken::new();
    assert!(acquire(&store, &k, LeaseKind::Mutex, token).await > fence);
    clock.advance(TTL);
    assert!(!store.release(&k, LeaseKind::Mutex, token).await.unwrap());
    // The late release found nothing: the token is retired (an acquire with it is refused)
    // for two minutes, and only that keeps the slot.
    assert_eq!(store.slot_count(), 1, "the retired token keeps the slot");
    assert!(
        store
            .try_acquire(&k, LeaseKind::Mutex, token, TTL)
            .await
            .is_err_and(|e| !e.is_transient())
    );
    clock.advance(Duration::from_secs(120));
    assert!(
        store
            .holders(&k, LeaseKind::Mutex)
            .await
            .unwrap()
            .leases
            .is_empty()
    );
    assert_eq!(
        store.slot_count(),
        0,
        "the retirement ended and the slot was freed"
    );
}

/// A writer's waiting mark that refused nobody is cleared without waking anyone; one that
/// refused a reader wakes waiters when it goes.
#[tokio::test(start_paused = true)]
async fn a_waiting_mark_wakes_waiters_only_if_it_refused_someone() {
    let store = MemoryBackend::new();
    let k = key("doc");
    let reader = OwnerToken::new();
    acquire(&store, &k, LeaseKind::Read, reader).await;
    let mut listener = store.listen(&k).await.unwrap();

    let writer = OwnerToken::new();
    let refused = store.try_acquire(&k, LeaseKind::Write, writer, TTL).await;
    assert!(matches!(refused, Ok(AcquireResult::Held { .. })));
    assert!(
        store
            .holders(&k, LeaseKind::Read)
            .await
            .unwrap()
            .writer_waiting
    );
    assert!(!store.release(&k, LeaseKind::Write, writer).await.unwrap());
    assert!(
        !store
            .holders(&k, LeaseKind::Read)
            .await
            .unwrap()
            .writer_waiting
    );
    assert_eq!(
        heard(&mut listener).await,
        Wake::TimedOut,
        "the mark refused nobody"
    );

    let writer = OwnerToken::new();
    let refused = store.try_acquire(&k, LeaseKind::Write, writer, TTL).await;
    assert!(matches!(refused, Ok(AcquireResult::Held { .. })));
    let late_reader = store
        .try_acquire(&k, LeaseKind::Read, OwnerToken::new(), TTL)
        .await;
    assert!(matches!(late_reader, Ok(AcquireResult::Held { .. })));
    assert!(!store.release(&k, LeaseKind::Write, writer).await.unwrap());
    assert_eq!(
        heard(&mut listener).await,
        Wake::Notified,
        "the mark refused a reader: it must hear that the writer gave up"
    );
}

/// What `listener` hears within 10 ms.
async fn heard(listener: &mut Box<dyn ReleaseListener>) -> Wake {
    listener
        .wait_for_release(Duration::from_millis(10))
        .await
        .unwrap()
}
