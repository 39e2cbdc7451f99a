//! The listing case: `LockBackend::list` reports every live lease under a prefix, page by page.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::TryStreamExt;
use locks_core::backend::{ListQuery, ListedLock, LockKind, list_stream};
use locks_core::{LeaseKind, LockBackend, OwnerToken};

use super::common::{service, unique_primitive, with_ttl};
use crate::Harness;

/// Held mutexes, semaphore permits and readers are listed with their owners, fences and ttls,
/// in pages of at most the asked size; released locks and other names are not.
pub(super) async fn list_reports_live_leases_in_bounded_pages<H: Harness>(h: H) {
    let backend = h.backend();
    let base = unique_primitive("listing");
    let svc = service(backend.clone());
    let ttl = Duration::from_secs(20);
    let mut expect: BTreeMap<(String, LockKind), Vec<(OwnerToken, u64)>> = BTreeMap::new();
    let mut guards = Vec::new();
    for n in 0..3 {
        let name = format!("{base}:mutex:{n}");
        let g = svc.acquire_opts(&name, with_ttl(ttl)).await.expect("mutex");
        expect.insert((name, LockKind::Mutex), vec![(g.token(), g.fence())]);
        guards.push(g);
    }
    // Released: not listed.
    svc.acquire(&format!("{base}:mutex:released"))
        .await
        .expect("mutex")
        .release()
        .await
        .expect("release");
    // Another prefix of names: not listed.
    let other = svc.acquire(&format!("{base}-other")).await.expect("other");
    if backend.supports(LeaseKind::Permit { limit: 2 }) {
        let name = format!("{base}:sem");
        let sem = svc.semaphore(&name, 2).expect("semaphore");
        let a = sem.acquire_opts(with_ttl(ttl)).await.expect("permit");
        let b = sem.acquire_opts(with_ttl(ttl)).await.expect("permit");
        expect.insert(
            (name, LockKind::Semaphore),
            vec![(a.token(), a.fence()), (b.token(), b.fence())],
        );
        guards.extend([a, b]);
    }
    if backend.supports(LeaseKind::Read) {
        let name = format!("{base}:rw");
        let rw = svc.rwlock(&name).expect("rwlock");
        let r = rw.read_opts(with_ttl(ttl)).await.expect("reader");
        expect.insert((name, LockKind::RwLock), vec![(r.token(), r.fence())]);
        guards.push(r);
    }

    let prefix = svc.key("x").expect("key").prefix().to_owned();
    let query = ListQuery::new(&prefix)
        .expect("query")
        .names_starting_with(format!("{base}:"))
        .page_size(2);
    // Page by page: never more than the page size.
    let (mut pages, mut next, mut listed) = (0, None, Vec::<ListedLock>::new());
    loop {
        let page = backend
            .list(&query.clone().after(next))
            .await
            .expect("list");
        assert!(page.locks.len() <= 2, "a page of {}", page.locks.len());
        listed.extend(page.locks);
        pages += 1;
        assert!(pages < 10_000, "the listing does not end");
        next = page.next;
        if next.is_none() {
            break;
        }
    }
    let mut got: BTreeMap<(String, LockKind), Vec<(OwnerToken, u64)>> = BTreeMap::new();
    for lock in &listed {
        assert_eq!(lock.key.prefix(), prefix);
        for lease in &lock.holders.leases {
            assert!(
                lease.remaining > Duration::ZERO && lease.remaining <= ttl,
                "{lock:?}"
            );
            assert_eq!(LockKind::of(lease.kind), lock.kind, "{lock:?}");
        }
        let mut owners: Vec<_> = lock
            .holders
            .leases
            .iter()
            .map(|l| (l.owner, l.fence))
            .collect();
        owners.sort();
        got.entry((lock.key.name().to_owned(), lock.kind))
            .or_default()
            .extend(owners);
    }
    for owners in expect.values_mut() {
        owners.sort();
    }
    assert_eq!(got, expect);

    // The stream and the service see the same.
    let streamed: Vec<_> = list_stream(&*backend, query.page_size(1))
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(streamed.len(), expect.len());
    let held: Vec<_> = svc
        .holders(&format!("{base}:"))
        .try_collect()
        .await
        .expect("holders");
    assert_eq!(held.len(), expect.len());

    for g in guards {
        g.release().await.expect("release");
    }
    other.release().await.expect("release");
    let after: Vec<_> = svc.holders(&base).try_collect().await.expect("holders");
    assert!(after.is_empty(), "still listed after release: {after:?}");
}
