//! The lease engine: one held lease's shared state, the guard that owns it, and the keeper
//! that renews every lease of a service and notices loss.

mod guard;
pub(crate) mod held;
pub(crate) mod keeper;
pub(crate) mod resource;
pub(crate) mod shared;

pub use guard::{LeaseHandle, LockGuard};
pub use shared::drift_margin;
