//! Decorators: backends that wrap a backend and act on every operation in one place.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::{AcquireResult, Holders, ListPage, ListQuery, LockBackend, ReleaseListener};
use crate::error::BackendError;
use crate::key::LockKey;
use crate::kind::LeaseKind;
use crate::token::OwnerToken;

/// One store operation of the [`LockBackend`] contract, as a value, so that a [`Dispatch`]
/// (a store or a [`Decorator`]) can handle all of them in one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Operation<'a> {
    /// The key it acts on.
    pub key: &'a LockKey,
    /// The lease kind it acts on.
    pub kind: LeaseKind,
    /// What it does.
    pub action: Action,
}

/// What an [`Operation`] does: one per store method of [`LockBackend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// [`LockBackend::try_acquire`] for `token` with `ttl`.
    TryAcquire {
        /// The owner token.
        token: OwnerToken,
        /// The requested ttl.
        ttl: Duration,
    },
    /// [`LockBackend::extend`] of `token`'s lease to `ttl`.
    Extend {
        /// The owner token.
        token: OwnerToken,
        /// The new ttl.
        ttl: Duration,
    },
    /// [`LockBackend::release`] of `token`'s lease.
    Release {
        /// The owner token.
        token: OwnerToken,
    },
    /// [`LockBackend::holders`].
    Holders,
    /// [`LockBackend::force_release`].
    ForceRelease,
}

impl<'a> Operation<'a> {
    /// `action` on the lease of `kind` at `key`.
    pub fn new(key: &'a LockKey, kind: LeaseKind, action: Action) -> Self {
        Operation { key, kind, action }
    }

    /// The same operation on another kind (how an adapter maps kinds).
    pub fn with_kind(self, kind: LeaseKind) -> Self {
        Operation { kind, ..self }
    }

    /// The method's name (`try_acquire`, `extend`, ...), for logs and errors.
    pub fn name(&self) -> &'static str {
        match self.action {
            Action::TryAcquire { .. } => "try_acquire",
            Action::Extend { .. } => "extend",
            Action::Release { .. } => "release",
            Action::Holders => "holders",
            Action::ForceRelease => "force_release",
        }
    }

    /// Whether it may change the store (everything but `holders`).
    pub fn is_write(&self) -> bool {
        self.action != Action::Holders
    }

    /// Send it to `backend`.
    ///
    /// # Cancel safety
    ///
    /// As the backend's method: a write dropped before it completes may or may not have been
    /// applied (every operation is idempotent per owner token, so it may be sent again).
    pub async fn send<B: LockBackend + ?Sized>(self, backend: &B) -> Result<Outcome, BackendError> {
        let Operation { key, kind, action } = self;
        match action {
            Action::TryAcquire { token, ttl } => backend
                .try_acquire(key, kind, token, ttl)
                .await
                .map(Outcome::Acquire),
            Action::Extend { token, ttl } => backend
                .extend(key, kind, token, ttl)
                .await
                .map(Outcome::Done),
            Action::Release { token } => backend.release(key, kind, token).await.map(Outcome::Done),
            Action::Holders => backend.holders(key, kind).await.map(Outcome::Holders),
            Action::ForceRelease => backend.force_release(key, kind).await.map(Outcome::Done),
        }
    }
}

/// What an [`Operation`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The answer of `try_acquire`.
    Acquire(AcquireResult),
    /// The answer of `extend`, `release` or `force_release`: whether it applied.
    Done(bool),
    /// The answer of `holders`.
    Holders(Holders),
}

impl Outcome {
    /// The `try_acquire` answer, or an error naming the mismatch.
    pub fn into_acquire(self) -> Result<AcquireResult, BackendError> {
        match self {
            Outcome::Acquire(r) => Ok(r),
            other => Err(mismatch("try_acquire", &other)),
        }
    }

    /// The `extend`/`release`/`force_release` answer, or an error naming the mismatch.
    pub fn into_done(self, op: &'static str) -> Result<bool, BackendError> {
        match self {
            Outcome::Done(done) => Ok(done),
            other => Err(mismatch(op, &other)),
        }
    }

    /// The `holders` answer, or an error naming the mismatch.
    pub fn into_holders(self) -> Result<Holders, BackendError> {
        match self {
            Outcome::Holders(h) => Ok(h),
            other => Err(mismatch("holders", &other)),
        }
    }
}

fn mismatch(op: &str, got: &Outcome) -> BackendError {
    BackendError::permanent(format!("decorator bug: `{op}` was answered with {got:?}"))
}

/// A backend written as one dispatcher: every store operation arrives as an [`Operation`] in
/// [`call`](Dispatch::call), and [`impl_lock_backend!`](crate::impl_lock_backend) implements
/// [`LockBackend`] from it. Stores (the memory backend) and decorators (through
/// [`Decorator`]) both use it, so the nine method signatures are written once, in the macro.
#[async_trait]
pub trait Dispatch: fmt::Debug + Send + Sync + 'static {
    /// See [`LockBackend::name`].
    fn name(&self) -> &'static str;

    /// See [`LockBackend::supports`].
    fn supports(&self, kind: LeaseKind) -> bool;

    /// Run one store operation.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError>;

    /// See [`LockBackend::listen`].
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError>;

    /// See [`LockBackend::list`]. Not an [`Operation`] (it has no key): a store says here how
    /// it enumerates its leases.
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError>;
}

/// A backend that wraps another and handles every store operation in one place: fault
/// injection, recording, kind adapters. Implement [`call`](Decorator::call) (and whatever else
/// differs), then [`impl_lock_backend!`](crate::impl_lock_backend) implements
/// [`LockBackend`] by routing every method through it (every `Decorator` is a [`Dispatch`]).
///
/// ```
/// use async_trait::async_trait;
/// use locks_core::backend::{Decorator, Operation, Outcome};
/// use locks_core::{BackendError, LockBackend, LockService};
/// use locks_memory::MemoryBackend;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// /// Counts the operations that may change the store.
/// #[derive(Debug)]
/// struct Counting {
///     inner: MemoryBackend,
///     writes: AtomicU64,
/// }
///
/// #[async_trait]
/// impl Decorator for Counting {
///     fn inner(&self) -> &dyn LockBackend {
///         &self.inner
///     }
///     async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
///         if op.is_write() {
///             self.writes.fetch_add(1, Ordering::Relaxed);
///         }
///         op.send(&self.inner).await
///     }
/// }
/// locks_core::impl_lock_backend!(Counting);
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let counting = std::sync::Arc::new(Counting { inner: MemoryBackend::new(), writes: AtomicU64::new(0) });
/// let locks = LockService::builder_arc(counting.clone()).auto_renew(false).build()?;
/// locks.acquire("k").await?.release().await?;
/// assert_eq!(counting.writes.load(Ordering::Relaxed), 2); // acquire + release
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Decorator: fmt::Debug + Send + Sync + 'static {
    /// The backend this one wraps.
    fn inner(&self) -> &dyn LockBackend;

    /// Handle one operation; [`Operation::send`] passes it on to the inner backend.
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError>;

    /// The name for logs and metrics (default: the inner backend's).
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    /// Which kinds it stores (default: the inner backend's).
    fn supports(&self, kind: LeaseKind) -> bool {
        self.inner().supports(kind)
    }

    /// Release notifications (default: the inner backend's, untouched).
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        self.inner().listen(key).await
    }

    /// The listing (default: the inner backend's, untouched).
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        self.inner().list(query).await
    }
}

#[async_trait]
impl<D: Decorator> Dispatch for D {
    fn name(&self) -> &'static str {
        Decorator::name(self)
    }
    fn supports(&self, kind: LeaseKind) -> bool {
        Decorator::supports(self, kind)
    }
    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        Decorator::call(self, op).await
    }
    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        Decorator::listen(self, key).await
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage, BackendError> {
        Decorator::list(self, query).await
    }
}

/// Implement [`LockBackend`](crate::LockBackend) for types that implement
/// [`Dispatch`](crate::backend::Dispatch) (every [`Decorator`](crate::backend::Decorator)
/// does): every method becomes one [`Operation`](crate::backend::Operation) handed to
/// `Dispatch::call`.
#[macro_export]
macro_rules! impl_lock_backend {
    (impl<$param:ident> for $ty:ty where $($bounds:tt)+) => {
        $crate::impl_lock_backend!(@impl [<$param>] $ty [where $($bounds)+]);
    };
    ($($ty:ty),+ $(,)?) => {$(
        $crate::impl_lock_backend!(@impl [] $ty []);
    )+};
    (@impl [$($generics:tt)*] $ty:ty [$($where:tt)*]) => {
        #[deny(clippy::missing_trait_methods)]
        #[$crate::__async_trait]
        impl $($generics)* $crate::LockBackend for $ty $($where)* {
            fn name(&self) -> &'static str {
                $crate::backend::Dispatch::name(self)
            }
            fn supports(&self, kind: $crate::LeaseKind) -> bool {
                $crate::backend::Dispatch::supports(self, kind)
            }
            async fn try_acquire(
                &self,
                key: &$crate::LockKey,
                kind: $crate::LeaseKind,
                token: $crate::OwnerToken,
                ttl: ::std::time::Duration,
            ) -> ::std::result::Result<$crate::AcquireResult, $crate::BackendError> {
                let op = $crate::backend::Operation::new(
                    key,
                    kind,
                    $crate::backend::Action::TryAcquire { token, ttl },
                );
                $crate::backend::Dispatch::call(self, op).await?.into_acquire()
            }
            async fn extend(
                &self,
                key: &$crate::LockKey,
                kind: $crate::LeaseKind,
                token: $crate::OwnerToken,
                ttl: ::std::time::Duration,
            ) -> ::std::result::Result<bool, $crate::BackendError> {
                let op = $crate::backend::Operation::new(
                    key,
                    kind,
                    $crate::backend::Action::Extend { token, ttl },
                );
                $crate::backend::Dispatch::call(self, op).await?.into_done("extend")
            }
            async fn release(
                &self,
                key: &$crate::LockKey,
                kind: $crate::LeaseKind,
                token: $crate::OwnerToken,
            ) -> ::std::result::Result<bool, $crate::BackendError> {
                let op = $crate::backend::Operation::new(
                    key,
                    kind,
                    $crate::backend::Action::Release { token },
                );
                $crate::backend::Dispatch::call(self, op).await?.into_done("release")
            }
            async fn holders(
                &self,
                key: &$crate::LockKey,
                kind: $crate::LeaseKind,
            ) -> ::std::result::Result<$crate::Holders, $crate::BackendError> {
                let op = $crate::backend::Operation::new(key, kind, $crate::backend::Action::Holders);
                $crate::backend::Dispatch::call(self, op).await?.into_holders()
            }
            async fn force_release(
                &self,
                key: &$crate::LockKey,
                kind: $crate::LeaseKind,
            ) -> ::std::result::Result<bool, $crate::BackendError> {
                let op = $crate::backend::Operation::new(key, kind, $crate::backend::Action::ForceRelease);
                $crate::backend::Dispatch::call(self, op)
                    .await?
                    .into_done("force_release")
            }
            async fn listen(
                &self,
                key: &$crate::LockKey,
            ) -> ::std::result::Result<
                ::std::boxed::Box<dyn $crate::ReleaseListener>,
                $crate::BackendError,
            > {
                $crate::backend::Dispatch::listen(self, key).await
            }
            async fn list(
                &self,
                query: &$crate::backend::ListQuery,
            ) -> ::std::result::Result<$crate::backend::ListPage, $crate::BackendError> {
                $crate::backend::Dispatch::list(self, query).await
            }
        }
    };
}
