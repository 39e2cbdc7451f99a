//! # locks-quorum
//!
//! Quorum locking (Redlock) as a combinator: [`QuorumBackend`] is a
//! [`LockBackend`](locks_core::LockBackend) over N ≥ 3 independent backends of any kind, so the
//! whole of [`LockService`](locks_core::LockService) — waiting, renewal, `lost()`, `with_lock`,
//! elections, multi-lock — works on it unchanged.
//!
//! ```
//! use std::time::Duration;
//! use locks_core::{AcquireOptions, LockService};
//! use locks_memory::MemoryBackend;
//! use locks_quorum::QuorumBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let quorum = QuorumBackend::builder()
//!     .node(MemoryBackend::new())
//!     .node(MemoryBackend::new())
//!     .node(MemoryBackend::new())
//!     .build()?;
//! let locks = LockService::new(quorum)?;
//! let guard = locks
//!     .acquire_opts("payment:42", AcquireOptions::new().ttl(Duration::from_secs(10)))
//!     .await?;
//! // Pass guard.fence() to the resource, which refuses fences lower than the last it saw.
//! assert!(guard.fence() > 0);
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! For real servers, [`redis::connect`] (feature **`redis`**) takes the URLs of N independent
//! redis-servers.
//!
//! ## The algorithm
//!
//! - **Acquire**: sent to every node at once. Granted when a majority (`N / 2 + 1`) granted
//!   within the validity time `ttl - elapsed - drift` (drift = `ttl × 0.01 + 2 ms` by default,
//!   [`QuorumBuilder::drift_factor`]); the service's own deadline (`sent + ttl - drift`,
//!   counted from before the first node was asked) already accounts for the slowest grant.
//!   Otherwise the partial grants are released on every node and the answer is `Held` with the
//!   best wait hint (the time until enough refusing nodes may be free) when refusals alone deny
//!   a majority, or a transient [`NoQuorum`] error when failures do (nodes down, or the
//!   validity ran out). A node that does not answer within [`QuorumBuilder::node_timeout`]
//!   counts as failed; the acquire does not wait for stragglers once a majority decided.
//! - **Extend and release** go to every node; `true` with a majority of `true`, `false` once a
//!   majority said "not owner" (the service marks the lease `Lost`), and a transient error
//!   otherwise (the service keeps the lease `Unknown` and retries until its local deadline).
//!   A confirmed renewal also takes the lease again on the nodes that had lost it (restarted
//!   empty, a clock jump) where the key is free, so it does not stay on a bare majority.
//! - **Holders** lists the leases held on a majority; **force-release** clears every node.
//! - **Notifications**: the waiter listens on every node, and the first node that reports a
//!   release wakes it.
//!
//! ## Fences
//!
//! The nodes' own fence counters cannot be compared with each other: Redis seeds fences from
//! its clock (which may be seconds off on one node), a memory store counts for all its keys,
//! a node restarted empty starts again. So the quorum does not hand out a node's fence as it
//! is. Each grant takes a fence above every node fence of its grant *and* above every **fence
//! record** it finds on its majority, then writes its own record on every granting node before
//! it returns (a majority must take it). Records are semaphore permits of a companion key
//! `<name>:quorum-fences` whose owner token carries the fence (see [`RECORD_SUFFIX`]); so the
//! nodes need semaphore support, and names ending in that suffix are the quorum's. Two
//! majorities share a node, so the next grant sees the last grant's record: fences strictly
//! increase across holders, with the nodes' clocks skewed by any amount and without any change
//! to the backend contract. Records live [`QuorumBuilder::record_ttl`] (10 min by default) after
//! each grant; with Redis nodes, whose fences follow their clocks, that only has to outlast
//! the clock skew between nodes. A grant costs two round trips (grant and read the records,
//! then write the record).
//!
//! ## Guarantees and limits
//!
//! Mutual exclusion relies on timing, as in every Redlock: bounded clock drift between the
//! holder and the nodes (the drift factor), and nodes that do not lose a granted lease early
//! (a node's clock jumping forward, or a node restarted empty while a lease lives, can let a
//! second holder in if the first held no more than a bare majority). The fences do not rely on
//! timing: a resource that refuses fences lower than the last one it accepted stays safe even
//! then, because the second holder's fence is larger (Kleppmann's argument, and the reason to
//! pass `guard.fence()` along). Restart a crashed node after the longest ttl in use, or keep
//! its data (AOF with `fsync always`), to keep mutual exclusion too.
//!
//! ## Kinds
//!
//! Mutex leases only (and everything built on them: elections, multi-lock, `with_lock`).
//!
//! - **Semaphores** are not sound over a majority: with 3 nodes and 2 permits, holders
//!   `{1,2}`, `{2,3}` and `{1,3}` each hold a majority while every node has only 2 permits
//!   out — 3 holders of 2 permits. Soundness needs `N·L/(L+1) + 1` nodes per permit, which
//!   for 3 nodes is all of them.
//! - **Read-write locks** would be sound for exclusion (a reader's and a writer's majority
//!   share a node), but the writer preference is not: a writer refused by a majority must keep
//!   its waiting marks on the nodes that refused it while it gives back what it got elsewhere,
//!   and the contract's release clears both at once.
//!
//! [`supports`](locks_core::LockBackend::supports) is `false` for both, and a
//! [`LockService`](locks_core::LockService) refuses the primitive with
//! `LockError::Unsupported` when it is created.

mod acquire;
mod backend;
mod builder;
mod error;
mod fanout;
mod fence;
mod list;
mod listen;
mod ops;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;

pub use backend::QuorumBackend;
pub use builder::QuorumBuilder;
pub use error::{NoQuorum, QuorumError};
pub use fence::RECORD_SUFFIX;
