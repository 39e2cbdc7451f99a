//! The contention simulator: named scenarios that mirror real incidents, each with its own
//! invariant checker, run by many workers through several
//! [`LockService`](locks_core::LockService)s sharing one backend.
//!
//! | [`Scenario`] | the incident | the checker counts a violation when |
//! |---|---|---|
//! | `mutex` (default) | N workers, K keys, random hold times | a key has two holders at once |
//! | `double-payment` | every instance receives the same stream of order ids | an order is charged twice |
//! | `oversell` | buyers race for the last units of a SKU | units are sold that were not in stock |
//! | `job-dedup` | a cron job fires on every instance | a job runs twice |
//! | `leader-failover` | leaders are deployed away or cut off from the store | two leaders act at once, or a deposed leader acts |
//! | `gc-pause` | a holder pauses past its ttl, then writes (Kleppmann) | the fenced store accepts the stale write |
//!
//! In every scenario the generic checker also verifies that fences strictly increase per key
//! (a regression is a violation), and measures wait latency (acquire called → guard returned)
//! and hand-off latency (a holder leaves → the next holder *of another worker* enters).
//! [`SimConfig::unsafe_no_lock`] makes workers skip the lock, to prove that each checker
//! catches the incident it is about; [`GrantAllBackend`](crate::broken::GrantAllBackend) shows
//! what a broken store looks like.
//!
//! All time is tokio time ([`tokio::time::Instant`], [`tokio::time::sleep`]), so a run works
//! under `#[tokio::test(start_paused = true)]`, where it takes no wall-clock time.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use locks_memory::MemoryBackend;
//! use locks_testkit::sim::{self, Scenario, SimConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), locks_core::LockError> {
//! // The default scenario, `mutex`.
//! let cfg = SimConfig {
//!     workers: 4,
//!     keys: 2,
//!     duration: None,
//!     ops_per_worker: Some(10),
//!     hold_max: Duration::ZERO,
//!     ..SimConfig::default()
//! };
//! let report = sim::run(Arc::new(MemoryBackend::new()), &cfg).await?;
//! assert!(report.passed());
//! assert_eq!(report.acquired, 40);
//! println!("{}", report.table());
//!
//! // An incident: 4 instances receive the same 20 orders; each order is charged once.
//! let cfg = SimConfig {
//!     workers: 4,
//!     keys: 20,
//!     hold_max: Duration::ZERO,
//!     ..SimConfig::for_scenario(Scenario::DoublePayment)
//! };
//! let report = sim::run(Arc::new(MemoryBackend::new()), &cfg).await?;
//! assert!(report.passed(), "{}", report.table());
//! assert_eq!(report.counter("charges"), Some(20));
//! # Ok(()) }
//! ```

// One file per concept: the scenario names, the configuration, the runner (and its progress
// figures), the context every worker shares, the invariant checkers, the report with its text
// and JSON forms, and one file per scenario under `scenarios/`.

mod checker;
mod config;
mod ctx;
mod json;
mod report;
mod runner;
mod scenario;
mod scenarios;
mod util;

pub use config::SimConfig;
pub use report::{LatencySummary, SimReport};
pub use runner::{Progress, run, run_with_progress};
pub use scenario::{Scenario, UnknownScenario};
