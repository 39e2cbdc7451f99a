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
//! | real servers | `postgres` | `postgres_server`: a private PostgreSQL (`initdb` + `pg_ctl`), or one shared by a test run |
//! | real servers | `redis` | `redis_server`: a private `redis-server` for tests; `redis_cluster`: a local Redis Cluster (3 primaries + 3 replicas); `redis_sentinel`: a primary, 2 replicas and 3 Sentinels; `proxy`: a loopback TCP proxy that injects network faults |
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
#[cfg(feature = "postgres")]
pub mod postgres_server;
#[cfg(feature = "redis")]
pub mod proxy;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_sentinel;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "conformance")]
pub use conformance::Harness;
