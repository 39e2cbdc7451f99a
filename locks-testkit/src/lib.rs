//! # locks-testkit
//!
//! Test tools for `locks`, organised by audience. Each audience turns on only the feature it
//! needs, and compiles only what that feature uses.
//!
//! | audience | feature | what |
//! |---|---|---|
//! | application authors | *(none)* | [`recording`]: a [`RecordingBackend`](recording::RecordingBackend) that records every lock event for assertions ("ran under lock X", "every lock was released", "never held these two at once") and stages contention and revoked leases; [`faulty`]: a decorator that injects failures, lost replies and latency into any backend |
//! | backend implementers | `conformance` | `conformance`: the mutex, primitives and adapter suites every backend runs for the kinds it supports, their [`Harness`], and `broken` backends that prove a checker can fail |
//! | property testing | `model` | `model`: random operation sequences checked step by step against a reference model (proptest) |
//! | real servers | `redis` | `redis_server`: a private `redis-server` for tests; `proxy`: a loopback TCP proxy that injects network faults |
//! | the demo | `sim` | `sim`: the contention simulator behind the `locks-sim` binary |
//!
//! With no feature, this crate depends on `locks-core`, `locks-memory` and tokio only.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod faulty;
pub mod recording;

#[cfg(feature = "conformance")]
pub mod broken;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "model")]
pub mod model;
#[cfg(feature = "redis")]
pub mod proxy;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "conformance")]
pub use conformance::Harness;
