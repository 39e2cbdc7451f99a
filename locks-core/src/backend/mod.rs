//! The backend contract: the atomic lease operations a store offers, parameterised by
//! [`LeaseKind`].

mod decorator;
mod lease;
mod list;
mod listen;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use decorator::{Action, Decorator, Dispatch, Operation, Outcome};
pub use lease::{AcquireResult, Holders, Lease, LeaseInfo};
pub(crate) use list::service_holders;
pub use list::{
    DEFAULT_LIST_PAGE, ListCursor, ListPage, ListQuery, ListedLock, LockKind, MAX_LIST_PAGE,
    list_stream,
};
pub use listen::{ReleaseListener, Signal, SleepingListener, Wake};

use crate::error::BackendError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::token::OwnerToken;

/// A store of leases with atomic, compare-and-act operations.
///
/// Nine methods serve every primitive: each operation names the [`LeaseKind`] it acts on
/// (mutex, semaphore permit, reader, writer). A backend offers primitives only; retry,
/// waiting, renewal and lost-lock detection live in [`LockService`](crate::LockService),
/// written once for every backend. Time for expiry is the store's own. A new backend is one
/// crate that implements this trait and passes `locks_testkit::conformance_tests!` for the
/// kinds it [`supports`](LockBackend::supports).
///
/// Every operation must be atomic, and idempotent for the same owner token: a call that failed
/// on a dropped connection may or may not have been applied, and the service may send it again.
/// An operation on a kind the backend does not support returns
/// [`BackendError::unsupported`]; the service never sends one, because it checks
/// [`supports`](LockBackend::supports) when a primitive is created.
///
/// Semantics per kind:
///
/// - `Mutex`: one holder.
/// - `Permit { limit }`: at most `limit` holders, each its own lease; expired permits are
///   reclaimed first; a limit lower than the live permits refuses new ones and never revokes.
/// - `Read` / `Write`: many readers or one writer, writer-preferring: a writer that finds
///   readers records that it waits (for at most its ttl, refreshed by every attempt), and no
///   new reader gets in meanwhile. Releasing a writer also clears its waiting mark.
///
/// A backend can be written as one dispatcher: implement [`Dispatch`] (every operation arrives
/// as an [`Operation`]) or, for a wrapper, [`Decorator`], and let
/// [`impl_lock_backend!`](crate::impl_lock_backend) write these methods, under
/// `#[deny(clippy::missing_trait_methods)]` so that none silently falls back to a default.
#[async_trait]
pub trait LockBackend: fmt::Debug + Send + Sync + 'static {
    /// A short name for logs, metrics and errors (`"memory"`, `"redis"`).
    fn name(&self) -> &'static str;

    /// Whether this store can keep leases of `kind`. A backend that returns `false` answers
    /// every operation on that kind with [`BackendError::unsupported`].
    fn supports(&self, kind: LeaseKind) -> bool;

    /// Take a lease of `kind` for `token` if the kind's rule allows it. A token that already
    /// holds one gets it back with its ttl reset and the *same* fence. A new holder gets a
    /// fence larger than every fence handed out for this key before. When refused,
    /// `Held { remaining }` hints how long until a holder's lease runs out.
    async fn try_acquire(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError>;

    /// Reset the ttl of `token`'s lease of `kind` to `ttl`. `false`: not a holder.
    async fn extend(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError>;

    /// Delete `token`'s lease of `kind` (a writer's waiting mark too) and wake waiters.
    /// `false`: not a holder (expired, taken, or never held).
    ///
    /// **A released token is retired.** The service never acquires with a token after
    /// releasing it, and releases (retires) every token whose acquire attempt had an unknown
    /// outcome (a transient error). A store whose requests can arrive late — a request held in
    /// the network, or sent on a connection the client already gave up on — must make such a
    /// late acquire harmless: when a release finds nothing held by `token`, it remembers the
    /// token for a while (the Redis backend: 2 minutes) and refuses a later `try_acquire` with
    /// it (an error; nobody waits for the answer). Otherwise the late acquire would leave a
    /// lease (or a writer's waiting mark) that nobody holds, blocking the key for a ttl. A
    /// store without late requests (in-process) needs nothing.
    async fn release(
        &self,
        key: &LockKey,
        kind: LeaseKind,
        token: OwnerToken,
    ) -> Result<bool, BackendError>;

    /// The live leases of `key` for `kind` (see [`Holders`]).
    async fn holders(&self, key: &LockKey, kind: LeaseKind) -> Result<Holders, BackendError>;

    /// Delete every lease of `kind` under `key` whoever holds it, and wake waiters (an
    /// operator's tool). `true` if there was one. For `Read` and `Write` this clears the whole
    /// read-write lock.
    async fn force_release(&self, key: &LockKey, kind: LeaseKind) -> Result<bool, BackendError>;

    /// Start listening for releases of `key` (every kind). A store without notifications
    /// returns a [`SleepingListener`]: waiters then poll.
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError>;

    /// One page of the locks under `query`'s key prefix that have at least one live lease
    /// (an operator's view: `locks ls`, [`LockService::holders`](crate::LockService)), at most
    /// [`ListQuery::limit`] of them, resuming after [`ListQuery::cursor`]. Each lock is listed
    /// once per primitive ([`LockKind`]) with its [`Holders`]. [`list_stream`] walks every
    /// page. Read-only; a store that cannot enumerate its keys answers with a permanent error
    /// saying so.
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError>;
}

/// A shared backend is a backend: every operation goes to the one it points at.
#[async_trait]
impl<T: LockBackend + ?Sized> Dispatch for Arc<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn supports(&self, kind: LeaseKind) -> bool {
        (**self).supports(kind)
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        op.send(&**self).await
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        (**self).listen(key).await
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        (**self).list(query).await
    }
}

crate::impl_lock_backend!(impl<T> for Arc<T> where T: LockBackend + ?Sized);
