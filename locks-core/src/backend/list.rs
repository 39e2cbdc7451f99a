//! Listing: the live leases under a key prefix, one bounded page at a time
//! ([`LockBackend::list`]), and [`list_stream`], which turns the pages into a stream.

use std::sync::Arc;

use futures::Stream;

use super::{Holders, LockBackend};
use crate::error::{BackendError, LockError};
use crate::key::{LockKey, validate_prefix};
use crate::kind::LeaseKind;

/// The most locks one page may hold: [`ListQuery::page_size`] is clamped to it.
pub const MAX_LIST_PAGE: u32 = 1000;

/// The page size of a new [`ListQuery`].
pub const DEFAULT_LIST_PAGE: u32 = 100;

/// Which primitive a listed lock is: a store lists each lock once per primitive (a name used
/// as a mutex and as a semaphore is listed twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum LockKind {
    /// A mutex lease ([`LeaseKind::Mutex`]).
    Mutex,
    /// A semaphore's permits ([`LeaseKind::Permit`]).
    Semaphore,
    /// A read-write lock: readers, the writer, a waiting writer ([`LeaseKind::Read`] and
    /// [`LeaseKind::Write`]).
    RwLock,
    /// A fair mutex's lease ([`LeaseKind::FairMutex`]).
    FairMutex,
}

impl LockKind {
    /// Every kind, in listing order.
    pub const ALL: [LockKind; 4] = [
        LockKind::Mutex,
        LockKind::Semaphore,
        LockKind::RwLock,
        LockKind::FairMutex,
    ];

    /// A short, stable name for tables and JSON: `mutex`, `semaphore`, `rwlock`, `fair`.
    pub fn label(self) -> &'static str {
        match self {
            LockKind::Mutex => "mutex",
            LockKind::Semaphore => "semaphore",
            LockKind::RwLock => "rwlock",
            LockKind::FairMutex => "fair",
        }
    }

    /// The primitive a lease of `kind` belongs to.
    pub fn of(kind: LeaseKind) -> Self {
        match kind {
            LeaseKind::Permit { .. } => LockKind::Semaphore,
            LeaseKind::Read | LeaseKind::Write => LockKind::RwLock,
            LeaseKind::FairMutex => LockKind::FairMutex,
            _ => LockKind::Mutex,
        }
    }

    /// The lease kind to ask [`LockBackend::holders`] or [`LockBackend::force_release`] with
    /// for this primitive. A semaphore's limit is not stored (it travels with each acquire),
    /// so it is `Permit { limit: 0 }`, which means "unknown" in listings.
    pub fn lease_kind(self) -> LeaseKind {
        match self {
            LockKind::Mutex => LeaseKind::Mutex,
            LockKind::Semaphore => LeaseKind::Permit { limit: 0 },
            LockKind::RwLock => LeaseKind::Read,
            LockKind::FairMutex => LeaseKind::FairMutex,
        }
    }

    /// The kind named by [`label`](LockKind::label).
    pub fn from_label(label: &str) -> Option<Self> {
        LockKind::ALL.into_iter().find(|k| k.label() == label)
    }
}

/// Where a listing resumes: opaque text written by the backend that answered the previous
/// page (each backend documents its form). Pass it back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListCursor(String);

impl ListCursor {
    /// A cursor with this text (for backends).
    pub fn new(text: impl Into<String>) -> Self {
        ListCursor(text.into())
    }

    /// The cursor's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What to list: the locks of one key prefix whose names start with some text, from a cursor,
/// at most [`page_size`](ListQuery::page_size) of them per page.
///
/// ```
/// use locks_core::backend::ListQuery;
/// let q = ListQuery::new("_lock:").unwrap().names_starting_with("payment:").page_size(50);
/// assert_eq!(q.prefix(), "_lock:");
/// assert_eq!(q.name_prefix(), "payment:");
/// assert_eq!(q.limit(), 50);
/// assert_eq!(ListQuery::new("_lock:").unwrap().page_size(1_000_000).limit(), 1000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    prefix: Arc<str>,
    name_prefix: String,
    after: Option<ListCursor>,
    limit: u32,
}

impl ListQuery {
    /// Every lock under the key `prefix` (validated like a service's key prefix), from the
    /// start, [`DEFAULT_LIST_PAGE`] per page.
    pub fn new(prefix: &str) -> Result<Self, LockError> {
        validate_prefix(prefix)?;
        Ok(ListQuery {
            prefix: Arc::from(prefix),
            name_prefix: String::new(),
            after: None,
            limit: DEFAULT_LIST_PAGE,
        })
    }

    /// Only locks whose name (without the key prefix) starts with `text`.
    pub fn names_starting_with(mut self, text: impl Into<String>) -> Self {
        self.name_prefix = text.into();
        self
    }

    /// At most `n` locks per page, clamped to `1..=`[`MAX_LIST_PAGE`].
    pub fn page_size(mut self, n: u32) -> Self {
        self.limit = n.clamp(1, MAX_LIST_PAGE);
        self
    }

    /// Resume after `cursor` (the `next` of the previous [`ListPage`]); `None` starts over.
    pub fn after(mut self, cursor: Option<ListCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The text every listed name starts with (empty: every name).
    pub fn name_prefix(&self) -> &str {
        &self.name_prefix
    }

    /// Where to resume, if not at the start.
    pub fn cursor(&self) -> Option<&ListCursor> {
        self.after.as_ref()
    }

    /// The most locks a page may hold.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// [`limit`](ListQuery::limit) as a `usize`.
    pub fn limit_usize(&self) -> usize {
        usize::try_from(self.limit).unwrap_or(usize::MAX)
    }

    /// Whether `key` is under this query's prefix and name prefix.
    pub fn matches(&self, key: &LockKey) -> bool {
        key.prefix() == &*self.prefix && key.name().starts_with(&self.name_prefix)
    }

    /// The key of `name` under this query's prefix (for backends that read names back).
    pub fn key(&self, name: &str) -> Result<LockKey, LockError> {
        LockKey::with_prefix(&self.prefix, name)
    }
}

/// One lock with at least one live lease, as [`LockBackend::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListedLock {
    /// The lock's key (prefix and name).
    pub key: LockKey,
    /// Which primitive it is.
    pub kind: LockKind,
    /// Its live leases, as [`LockBackend::holders`] with [`LockKind::lease_kind`] reports
    /// them (semaphore permits carry `Permit { limit: 0 }`: the limit is not stored).
    pub holders: Holders,
}

impl ListedLock {
    /// Describe a listed lock.
    pub fn new(key: LockKey, kind: LockKind, holders: Holders) -> Self {
        ListedLock { key, kind, holders }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListPage {
    /// At most [`ListQuery::limit`] locks, each with at least one live lease.
    pub locks: Vec<ListedLock>,
    /// Where the next page starts; `None` when the listing is complete. A page may hold fewer
    /// locks than the limit, even none, and still have a next page (a Redis `SCAN` step).
    pub next: Option<ListCursor>,
}

impl ListPage {
    /// A page.
    pub fn new(locks: Vec<ListedLock>, next: Option<ListCursor>) -> Self {
        ListPage { locks, next }
    }
}

/// Every lock `backend` lists for `query`, page after page, as a stream: at most one page
/// ([`ListQuery::limit`] locks) is held in memory at a time. The stream ends after the last
/// page, or after the first error (which it yields).
///
/// A lock live for the whole listing is listed at least once; a lock taken or released
/// meanwhile may or may not be; a store whose scan can repeat itself (Redis, while the
/// keyspace is rehashed) may list a lock twice.
///
/// ```
/// use futures::TryStreamExt;
/// use locks_core::backend::{ListQuery, LockKind, list_stream};
/// use locks_core::LockService;
/// use locks_memory::MemoryBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let backend = MemoryBackend::new();
/// let locks = LockService::new(backend.clone())?;
/// let _a = locks.acquire("payment:1").await?;
/// let _b = locks.acquire("payment:2").await?;
/// let query = ListQuery::new("_lock:")?.names_starting_with("payment:").page_size(1);
/// let listed: Vec<_> = list_stream(&backend, query).try_collect().await?;
/// assert_eq!(listed.len(), 2);
/// assert_eq!(listed[0].kind, LockKind::Mutex);
/// # Ok(()) }
/// ```
///
/// # Cancel safety
///
/// Dropping the stream stops the listing; it changes nothing in the store.
pub fn list_stream<B: LockBackend + ?Sized>(
    backend: &B,
    query: ListQuery,
) -> impl Stream<Item = Result<ListedLock, BackendError>> + Send + '_ {
    pages(backend, query)
}

/// The stream of [`list_stream`] over any handle to a backend (a reference, an `Arc`).
fn pages<R>(backend: R, query: ListQuery) -> impl Stream<Item = Result<ListedLock, BackendError>>
where
    R: std::ops::Deref + Send + Sync,
    R::Target: LockBackend,
{
    struct State<R> {
        backend: R,
        query: Option<ListQuery>,
        buffered: std::vec::IntoIter<ListedLock>,
    }
    let state = State {
        backend,
        query: Some(query),
        buffered: Vec::new().into_iter(),
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(lock) = state.buffered.next() {
                return Some((Ok(lock), state));
            }
            let query = state.query.take()?;
            match state.backend.list(&query).await {
                Ok(page) => {
                    state.query = page.next.map(|next| query.after(Some(next)));
                    state.buffered = page.locks.into_iter();
                }
                Err(e) => return Some((Err(e), state)),
            }
        }
    })
}

/// What [`LockService::holders`](crate::LockService::holders) streams: [`list_stream`] over a
/// service's backend and (already validated) prefix, errors as [`LockError::Backend`].
pub(crate) fn service_holders(
    backend: Arc<dyn LockBackend>,
    prefix: &Arc<str>,
    name_prefix: &str,
) -> impl Stream<Item = Result<ListedLock, LockError>> + Send + 'static {
    use futures::StreamExt;
    let query = ListQuery {
        prefix: Arc::clone(prefix),
        name_prefix: name_prefix.to_owned(),
        after: None,
        limit: DEFAULT_LIST_PAGE,
    };
    pages(backend, query).map(|r| r.map_err(|e| LockError::backend("list", e)))
}
