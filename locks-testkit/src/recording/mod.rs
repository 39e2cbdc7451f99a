//! [`RecordingBackend`]: a backend wrapper that records every lock event, so a downstream
//! crate can assert in its own tests *how* its code locked: that a side effect ran under the
//! lock, that every lock was released, that two keys were never held together, that keys
//! were taken in order. It also stages the conditions such code must survive: a key held by
//! another owner ([`hold_elsewhere`](RecordingBackend::hold_elsewhere)), a lease the store
//! drops mid-operation ([`revoke`](RecordingBackend::revoke)) and transient store failures
//! ([`fail_next`](RecordingBackend::fail_next)).
//!
//! # What is recorded
//!
//! Every operation that reached the store and got an answer, in the order the answers came,
//! each with a sequence number (strictly increasing, shared with probe hits), the tokio
//! [`Instant`] it was recorded at and the
//! [`LeaseKind`](locks_core::LeaseKind) it concerned (mutex, permit, read, write). From those
//! events the recorder keeps one [`Holding`] per lease: from the grant to the release, revoke
//! or force-release, or to the end of its ttl (acquire or last renewal sent + ttl, by tokio
//! time) when that comes first. Operations that failed (for instance through
//! [`fail_next`](RecordingBackend::fail_next)) are not recorded: they never reached the store.
//!
//! Expiry is estimated on tokio's clock, which is the memory backend's default clock. A
//! lease the store expires by another clock (a [`ManualClock`](locks_memory::ManualClock),
//! [`MemoryBackend::expire_now`](locks_memory::MemoryBackend::expire_now)) ends, as far as
//! the recorder knows, when the store next shows it is gone: a refused renewal or release,
//! or another owner's grant.
//!
//! Keys are given as the name passed to the [`LockService`](locks_core::LockService)
//! (`"payment:42"`) or the full key with the prefix (`"_lock:payment:42"`).
//!
//! # Layout
//!
//! - `event`: what a test reads back ([`LockEvent`], [`Holding`], [`Holder`]).
//! - `log`: the recording itself, and how each store answer changes it.
//! - `timeline`: the recording as text, for assertion messages.
//! - `recorder`: the decorator that records the answers of the wrapped backend.
//! - `backend`: [`RecordingBackend`], the front the code under test is given.
//! - `assertions`: the `assert_*` methods.
//! - `staging`: contention and revoked leases ([`HeldElsewhere`]).
//! - `probe`: side effects checked against the lock ([`Probe`], [`ProbeHit`]).

mod assertions;
mod backend;
mod event;
mod log;
mod probe;
mod recorder;
mod staging;
mod timeline;

pub use backend::RecordingBackend;
pub use event::{EndReason, Holder, Holding, LockEvent, LockEventKind};
pub use probe::{Probe, ProbeHit};
pub use staging::HeldElsewhere;

use locks_core::OwnerToken;
use tokio::time::Instant;

/// How many timeline lines an assertion message shows (the most recent ones).
const TIMELINE_LINES: usize = 40;

/// The first characters of a token, enough to tell owners apart in a message.
fn short(token: OwnerToken) -> String {
    token.to_hyphenated().chars().take(8).collect()
}

/// `at` relative to the start of the recording.
fn rel(origin: Instant, at: Instant) -> String {
    format!("t+{:?}", at.saturating_duration_since(origin))
}
