//! One file per scenario. Each has a `run(ctx, services) -> Outcome` that spawns its workers,
//! waits for them, and turns what its own checker saw into counters, violations and problems.
//! `same_items` holds the worker that `double-payment` and `job-dedup` share.

pub(super) mod double_payment;
pub(super) mod gc_pause;
pub(super) mod job_dedup;
pub(super) mod leader_failover;
pub(super) mod mutex;
pub(super) mod oversell;
mod same_items;
