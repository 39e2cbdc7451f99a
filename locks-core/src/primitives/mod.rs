//! Coordination primitives on top of the lease engine: semaphore, read-write lock, leader
//! election and ordered multi-lock. Every lease they hand out is a [`LockGuard`] with the same
//! renewal, lost signal, release and shutdown behaviour as a mutex guard.
//!
//! [`LockGuard`]: crate::LockGuard

mod election;
mod multi;
mod pool;
mod rwlock;
mod semaphore;

pub use election::{Election, Leadership};
pub use multi::MultiGuard;
pub use pool::{Pool, Pooled};
pub use rwlock::{RwInfo, RwLock};
pub use semaphore::Semaphore;
