//! Listing ([`LockBackend::list`](locks_core::LockBackend::list)): the slots under a prefix,
//! in name order, one page at a time.

use locks_core::backend::{ListCursor, ListPage, ListQuery, ListedLock, LockKind};
use locks_core::{Holders, LockKey};

use crate::store::MemoryBackend;

/// Between a name and a kind label in a cursor: names never hold control characters.
const SEP: char = '\0';

impl MemoryBackend {
    /// One page of [`LockBackend::list`](locks_core::LockBackend::list), ordered by
    /// `(name, kind)`. The cursor is the last listed name, a NUL, and its kind's label. Each page
    /// walks every slot of the store once (the store keeps no index by name): fine for tests and
    /// a single process, not for millions of live keys.
    pub(crate) fn list_page(&self, query: &ListQuery) -> ListPage {
        let after = query.cursor().and_then(|c| parse(c.as_str()));
        let mut keys: Vec<LockKey> = self
            .inner
            .slots
            .iter()
            .filter(|entry| query.matches(entry.key()))
            .filter(|entry| match &after {
                Some((name, _)) => entry.key().name() >= name.as_str(),
                None => true,
            })
            .map(|entry| entry.key().clone())
            .collect();
        keys.sort_by(|a, b| a.name().cmp(b.name()));
        let limit = query.limit_usize();
        let mut locks = Vec::new();
        for key in keys {
            for kind in LockKind::ALL {
                if let Some((name, last)) = &after
                    && (key.name(), kind) <= (name.as_str(), *last)
                {
                    continue;
                }
                let holders = self.holders_of(&key, kind);
                if holders.leases.is_empty() {
                    continue;
                }
                if locks.len() == limit {
                    let next = locks.last().map(cursor);
                    return ListPage::new(locks, next);
                }
                locks.push(ListedLock::new(key.clone(), kind, holders));
            }
        }
        ListPage::new(locks, None)
    }

    fn holders_of(&self, key: &LockKey, kind: LockKind) -> Holders {
        match kind {
            LockKind::Mutex => self.mutex_holders(key),
            LockKind::Semaphore => self.permit_holders(key, kind.lease_kind()),
            LockKind::FairMutex => self.fair_holders(key),
            _ => self.rw_holders(key),
        }
    }
}

fn cursor(lock: &ListedLock) -> ListCursor {
    ListCursor::new(format!("{}{SEP}{}", lock.key.name(), lock.kind.label()))
}

fn parse(text: &str) -> Option<(String, LockKind)> {
    let (name, label) = text.rsplit_once(SEP)?;
    Some((name.to_owned(), LockKind::from_label(label)?))
}
