//! # locks-redis
//!
//! The Redis [`LockBackend`](locks_core::LockBackend) for [`locks_core::LockService`]: atomic Lua scripts over a
//! multiplexed, auto-reconnecting connection, fencing tokens seeded from the server clock, and
//! release notifications over one shared pub/sub connection. Mutex leases, semaphores
//! ([`LockService::semaphore`](locks_core::LockService::semaphore)), read-write locks
//! ([`LockService::rwlock`](locks_core::LockService::rwlock)), and everything built on them
//! (leader election, ordered multi-lock).
//!
//! ```no_run
//! use std::time::Duration;
//! use locks_core::{AcquireOptions, LockService};
//! use locks_redis::RedisBackend;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = RedisBackend::builder("redis://app:s3cret@127.0.0.1:6380/0")
//!     .connect_timeout(Duration::from_secs(2))
//!     .response_timeout(Duration::from_secs(1))
//!     .connect()
//!     .await?;
//! let locks = LockService::new(backend)?;
//!
//! let opts = AcquireOptions::new().ttl(Duration::from_secs(10));
//! let guard = locks.acquire_opts("payment:42", opts).await?;
//! tokio::select! {
//!     _ = async { /* charge, passing guard.fence() to the payment store */ } => {}
//!     reason = guard.lost() => eprintln!("lock lost: {reason}; stop writing"),
//! }
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! ## Connecting
//!
//! - [`RedisBackend::connect`]`(url)` or [`RedisBackend::builder`]`(url)` with
//!   [`connect_timeout`](RedisBackendBuilder::connect_timeout) (default 5 s) and
//!   [`response_timeout`](RedisBackendBuilder::response_timeout) (default 5 s);
//!   [`RedisBackend::builder_from_client`] takes an existing [`redis::Client`].
//! - URL forms: `redis://host:port/db`, `redis://:password@host:port`, ACL users as
//!   `redis://user:password@host:port`, Unix sockets as `unix:///path/to/redis.sock`, and TLS
//!   as `rediss://host:port` with the crate feature **`tls`** (rustls; server certificates are
//!   checked against the platform's roots; `rediss://host:port/#insecure` turns the check
//!   off and needs the redis crate's own `tls-rustls-insecure` feature). With `tls`, the
//!   `ring` crypto provider is installed as the process default unless the application
//!   installed one first.
//! - `connect` returns a typed [`RedisBackendError`] within the connect timeout: a bad URL, an
//!   unreachable server, a wrong password (never retried), a server that may evict leases are
//!   told apart.
//! - **The server must use `maxmemory-policy noeviction`.** Any other policy deletes keys when
//!   the server reaches `maxmemory`, and every lease has a ttl, so the `volatile-*` policies
//!   (the default of managed services is usually `volatile-lru`) evict live leases first and
//!   let a second holder in. `connect` reads the policy (`CONFIG GET maxmemory-policy`, or the
//!   `maxmemory_policy` field of `INFO memory` when `CONFIG` is not permitted) and refuses
//!   anything else with [`RedisBackendError::EvictionPolicy`], and a policy it cannot read
//!   with [`RedisBackendError::EvictionPolicyUnknown`]. The fix is `noeviction`, or a dedicated
//!   instance for the locks that uses it;
//!   [`allow_eviction_policy(true)`](RedisBackendBuilder::allow_eviction_policy) accepts the
//!   risk instead (and skips the check). After the command connection is replaced (a dropped
//!   connection, a response timeout) the policy is read again before the next operation; while
//!   it is unsafe, operations fail with a permanent error whose source is
//!   [`RedisBackendError::EvictionPolicy`], until it is `noeviction` again. A `CONFIG SET` on a
//!   connection that stays up is noticed at the next reconnection only.
//! - An ACL user needs the commands `EVAL`, `EVALSHA`, `SCRIPT`, `PING`, `SUBSCRIBE`,
//!   `UNSUBSCRIBE`, `INFO` (the `memory` section is enough: `+info|memory`; or `CONFIG GET`) and,
//!   inside the scripts, `HGET`, `HMGET`, `HSET`, `HDEL`, `GET`, `SET`,
//!   `DEL`, `EXISTS`, `PEXPIRE`, `PTTL`, `TIME`, `PUBLISH`, and for semaphores and read-write
//!   locks `ZADD`, `ZREM`, `ZSCORE`, `ZCARD`, `ZRANGE`, `ZRANGEBYSCORE`, `ZREMRANGEBYSCORE`;
//!   the keys `~_lock:*` and the channels `&_lock:*` (with the default prefix), e.g.
//!   `ACL SETUSER app on >s3cret ~_lock:* &_lock:* +@scripting +@pubsub +ping +info|memory +@hash +@string +@sortedset +@keyspace +time`.
//!   Without channel permissions, locking still works (`PUBLISH` runs under `pcall`) and
//!   waiters poll.
//! - Redis 7.0 or newer is needed for leases to survive a full server (below); everything else
//!   works on older servers with `EVALSHA`.
//! - [`fence_counter_ttl`](RedisBackendBuilder::fence_counter_ttl) sets how long a lock name's
//!   fence counter is kept after each acquire or renewal: [`FenceCounterTtl`], by default
//!   `max(2 × ttl, 60 s)` (see [Guarantees](#guarantees-and-limits) for what it protects and
//!   what it costs).
//!
//! ## Key layout
//!
//! One function (`RedisKeys::new`, public with the feature `layout`) maps a [`LockKey`](locks_core::LockKey) to Redis names. All of them share
//! the hash tag `{name}`, so a script touches one Redis Cluster slot:
//!
//! | what | name (prefix `_lock:`, name `payment:42`) | content |
//! |---|---|---|
//! | lease | `_lock:{payment:42}` | hash: `owner` = owner token, `fence` = decimal fence; `PX` = lease ttl |
//! | fence counter | `_lock:{payment:42}:fence` | string: last fence of *any* kind (lease, permit, reader, writer); `PX` = `max(2 × ttl, 60 s)` ([`FenceCounterTtl`]) from each acquire or renewal, never shortened, and while ahead of `TIME` until `TIME` passes it |
//! | release channel | `_lock:{payment:42}:released` | pub/sub channel, message `released`, for every kind of release |
//! | semaphore permits | `_lock:{payment:42}:sem` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` (live while `TIME` in ms `<=` score, as `PX`); `PX` = past the latest expiry |
//! | permit fences | `_lock:{payment:42}:sem:fences` | hash: owner token → decimal fence; `PX` as the set |
//! | readers | `_lock:{payment:42}:rw:readers` | sorted set: member = owner token, score = expiry in ms by the server's `TIME` (live while `TIME` in ms `<=` score, as `PX`); `PX` = past the latest expiry |
//! | reader fences | `_lock:{payment:42}:rw:fences` | hash: owner token → decimal fence; `PX` as the set |
//! | writer | `_lock:{payment:42}:rw:writer` | hash: `owner`, `fence`; `PX` = write lease ttl |
//! | waiting writer | `_lock:{payment:42}:rw:waiting` | string: the waiting writer's token; `PX` = its ttl, refreshed by each attempt |
//! | fair mutex lease | `_lock:{payment:42}:fair` | hash: `owner`, `fence`; `PX` = lease ttl |
//! | fair mutex queue | `_lock:{payment:42}:fair:queue` | sorted set: waiter token → arrival number (FIFO); `PX` = past the latest waiter expiry |
//! | fair waiter expiry | `_lock:{payment:42}:fair:expiry` | sorted set: waiter token → until when (ms by `TIME`) its place is kept ([`FAIR_WAITER_TTL`](locks_core::FAIR_WAITER_TTL) after its last attempt) |
//! | fair waiter ttls | `_lock:{payment:42}:fair:ttl` | hash: waiter token → `<lease ttl ms>:<fence counter ttl ms>`, the lease it is granted on release |
//!
//! A mutex, a semaphore, a read-write lock and a fair mutex under the same name are
//! independent locks that share the fence counter (so their fences never repeat) and the
//! release channel. A release of a fair mutex that hands the lease to the head of its queue
//! publishes `granted:<token>:<fence>` instead of `released` (see `Wake::Granted`).
//!
//! ## Scripts
//!
//! Every operation is one Lua script, run with `EVALSHA` (reloaded after `NOSCRIPT`, e.g. after
//! `SCRIPT FLUSH` or a restart). User values reach Lua through `KEYS`/`ARGV` only. Each is
//! atomic and idempotent for the same owner token, because a command that failed on a dropped
//! connection may or may not have run and the service may send it again.
//!
//! Every script checks its arguments before its first write: the number of keys, a non-empty
//! owner token, each ttl (lease and fence counter) a decimal integer of ms from 1 to 100 years,
//! a permit count a decimal integer from 1 to `u32::MAX`, both without leading zeros. A bad one
//! (`0`, `007`, `-5`, `1.5`, `abc`, missing, huge) gets the error reply
//! `ERR locks: <what>, got '<value>'` and nothing is written: never a lease without expiry,
//! never a false success. The backend reports it as a permanent error ("refused an invalid
//! argument").
//!
//! - **acquire**: own lease → reset its ttl, keep the fence counter, same fence; someone
//!   else's → "held" with its `PTTL`; none → new fence `max(TIME in µs, counter + 1)`, counter
//!   stored with the fence counter ttl (never shortened), lease hash written with `PX` ttl.
//! - **release**: compare owner and `DEL`, then `PUBLISH` on the release channel.
//! - **extend**: compare owner and `PEXPIRE`, then keep the fence counter: its expiry is
//!   lengthened to the fence counter ttl, and a counter found missing (or below the lease's
//!   fence) is written back with the lease's fence.
//! - **inspect**: `HMGET owner fence` and `PTTL`, atomically.
//! - **force release**: `DEL` whoever holds it, `PUBLISH` if there was a lease.
//!
//! Semaphores and read-write locks keep their permits and readers in a sorted set scored by
//! expiry, computed inside the script from the server's `TIME` (never the client's clock):
//! score = `TIME` in whole ms + ttl, and the member is live while `TIME` in whole ms is at most
//! its score, exactly as Redis expires a key set with `PX`, so it never expires before the
//! ttl has passed. Every script that touches a set first removes the members whose expiry has
//! passed (`ZREMRANGEBYSCORE -inf (now`) together with their fences, and every script that
//! changes it sets the set's and the fence hash's `PEXPIRE` past the latest member expiry, so
//! an abandoned semaphore disappears by itself. New permits, readers and writers get their
//! fence from the shared counter, exactly like a lease, and their renewals keep the counter
//! like a lease's.
//!
//! - **acquire permit**: reclaim expired permits; own permit → new expiry, same fence; fewer
//!   live permits than the count → `ZADD` with a new fence; else "held" with the time until
//!   the first permit expires. A count below the live permits refuses new ones, never
//!   revokes.
//! - **release / extend permit**: `ZREM` (then `PUBLISH`) / `ZADD XX` if the token holds a
//!   live permit.
//! - **permit holders**: the live members with `score - TIME` and their fences.
//! - **acquire read**: own read lease → new expiry, same fence; a writer holds the lock, or
//!   one waits → "held" with that key's `PTTL`; else a new reader.
//! - **acquire write** (writer-preferring): own write lease → ttl reset, same fence; another
//!   writer → "held" with its `PTTL`; live readers → the writer marks itself as waiting
//!   (`SET …:rw:waiting token PX ttl`, unless another writer's mark is there) so no new reader
//!   gets in, and gets "held" with the time until the first reader (or the other mark)
//!   expires; nobody → mark cleared, write lease written with a new fence.
//! - **release rw**: removes the token's read or write lease and its waiting mark, and
//!   publishes if anything was removed (a writer giving up lets the blocked readers in).
//! - **extend rw / inspect rw**: compare-and-extend; readers, writer and mark in one read.
//!
//! On a full server (`maxmemory` reached under `noeviction`), Redis refuses a script at its
//! first command that may need memory unless it has already written (then it lets it finish),
//! so a refused script has written nothing. Mutex and writer renewals (`PEXPIRE`) and every
//! release (deletes) are never refused; moving a permit's or reader's expiry (`ZADD XX`) is.
//! So after an `OOM` refusal the dispatcher sends, once, a variant flagged
//! `#!lua flags=allow-oom` (Redis >= 7.0): **extend permit** and **extend rw** as they are, and
//! for **acquire permit** / **acquire read** a "re-acquire" script that renews the caller's
//! existing member (same fence) and otherwise writes nothing. The normal path stays one round
//! trip; an `OOM` costs a second one.
//!
//! ## Guarantees and limits
//!
//! - Expiry is Redis's own clock (`PX`, and `TIME` for permits and readers). Ttls are rounded
//!   up to whole milliseconds. Both are absolute server times, so a step of the server clock
//!   moves every expiry with it.
//! - Fencing tokens are strictly increasing per key across all holders: each is
//!   `max(server time in microseconds, last fence + 1)`. They keep increasing after the counter
//!   expired and after a restart that lost all data, because the server clock has moved on.
//!   The counter is what keeps them increasing when the clock steps back: every acquire and
//!   renewal keeps it for the [`FenceCounterTtl`] (default `max(2 × ttl, 60 s)`, so it outlives
//!   every live lease), and a counter ahead of the clock is kept until the clock has passed it.
//!   **What breaks them is the server clock stepping backwards by more than the counter's
//!   lifetime after it expired** (NTP step, a failover to a replica whose clock is behind, on a
//!   name idle for longer than that). Fences are about 1.8 × 10^15 today, exact in Lua's
//!   doubles until the year 2255.
//! - A distinct lock name costs its fence counter after its leases are gone: about 160 bytes of
//!   server memory (`MEMORY USAGE` 72 bytes; `used_memory` grows 160–165 bytes per name over
//!   10,000 names, Redis 7.0), for the counter's lifetime only. At 1,000 new names per second
//!   and the default 30 s ttl: about 60,000 counters, ≈ 10 MB (a day's lifetime would keep
//!   86 million, ≈ 14 GB).
//! - A single Redis server (or a failover pair) is a single point of truth: a failover that
//!   loses a fresh lease lets a second holder in. The core's lost-lock detection makes the
//!   first holder stop at its local deadline; fences let the protected store reject it.
//! - Release notifications are at most once (pub/sub): waiters also poll at
//!   `min(backoff, holder's remaining ttl)`, and every waiter re-checks when the subscription
//!   connection drops. An expired lease publishes nothing.
//! - No eviction: `connect` refuses a server whose `maxmemory-policy` is not `noeviction`
//!   (see [Connecting](#connecting)), unless the builder opts out, and re-checks it after a
//!   reconnection.
//! - A full server keeps what is held: on a server at `maxmemory` (with `noeviction`), held
//!   mutex leases, permits, readers and writers are renewed, acquired again by their holder,
//!   and released; only new leases are refused (Redis >= 7.0; on older servers permit and
//!   reader renewals are refused, and those holders lose their leases at their deadline).
//! - A lease key that holds something this backend did not write (wrong type) is a permanent
//!   error, never overwritten.
//! - The backend talks to one server, the primary a set of Sentinels names, or a Redis Cluster
//!   (see [Redis Cluster](#redis-cluster), [Sentinel](#sentinel)). Replication is
//!   asynchronous: without [replica acknowledgement](#replica-acknowledgement) a failover can
//!   lose a fresh lease and let a second holder in (the fence protects a fenced resource).
//! - An expired permit, reader or writer publishes nothing (like an expired lease): waiters
//!   find out at their next poll, at most the holder's remaining ttl later.
//!
//! ## Redis Cluster
//!
//! `RedisBackend::cluster_builder(seed_urls)` (feature **`cluster`**) connects through the
//! redis crate's async cluster client: each script goes to the primary that owns its lock's
//! slot (every name of a lock shares the `{name}` hash tag, and no script touches a key outside
//! its `KEYS`), `MOVED`/`ASK` are followed by the client, and `MOVED`, `ASK`, `TRYAGAIN`,
//! `CLUSTERDOWN` that still reach the backend are transient (retried within the wait budget).
//! The scripts announce releases with `SPUBLISH` and waiters `SSUBSCRIBE` on the key's primary
//! (sharded pub/sub, Redis >= 7), over one RESP3 subscription connection of the cluster client,
//! which subscribes again after a reconnection or a slot move; a lost node connection wakes
//! every waiter to re-check. The eviction policy of every primary is read at connect and after
//! a reconnection (replicas are not read: configure every node with `noeviction`). An ACL user also needs
//! `SPUBLISH`, `SSUBSCRIBE`, `SUNSUBSCRIBE` and `CLUSTER SLOTS`.
//!
//! ## Sentinel
//!
//! `RedisBackend::sentinel_builder(sentinel_urls, master_name)` (feature **`sentinel`**)
//! asks the Sentinels for the primary on every (re)connection. The command connection is
//! replaced after an error that dropped it, a response timeout, or `READONLY` (its node was
//! demoted), so the backend follows a failover; the release subscription reconnects to the new
//! primary and resubscribes, waking every waiter to re-check. The eviction policy is checked
//! again after each replacement. The Sentinel URLs' credentials are for the Sentinels; the data
//! nodes' are set with `sentinel_node_auth(username, password)`.
//!
//! ## Replica acknowledgement
//!
//! [`replica_ack(min_replicas, timeout)`](RedisBackendBuilder::replica_ack) makes an acquire,
//! extend or renewal count as done only once `WAIT min_replicas timeout`, on the connection
//! that carried the script, reports that many replicas. Otherwise an acquire is released again
//! and fails with a transient error whose source is [`RedisBackendError::NotReplicated`] (the
//! service retries it within the wait budget), and a renewal leaves the lease `Unknown`. It
//! buys: no two holders after a failover *that promotes an acknowledging replica*. It does not
//! buy: synchronous replication (a lagging replica can still be promoted) or persistence
//! (`WAITAOF`). It costs one more round trip per grant (measured: 4,171 → 2,216 uncontended
//! cycles/s on loopback; see the README).
//!
//! ## Errors
//!
//! Operations report [`BackendError`](locks_core::BackendError) with the [`redis::RedisError`] as source. Transient (the
//! service retries): I/O errors, timeouts, dropped or refused connections, `BUSY`, `LOADING`,
//! `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`. Permanent: authentication and
//! permissions, `NOSCRIPT` after a reload, script errors (among them a script's refusal of an
//! invalid argument, `ERR locks: ...`), `WRONGTYPE`, malformed replies, an
//! eviction policy found unsafe after a reconnection (source
//! [`RedisBackendError::EvictionPolicy`]), and `OOM`.
//!
//! `OOM` (a new lease on a full server) is permanent, with the source
//! [`RedisBackendError::OutOfMemory`]: nothing was written, and a full server stays full until
//! someone frees memory or raises `maxmemory`, so the service answers at once instead of
//! retrying until the wait budget is spent (a waiter is never stuck on it). Renewals of held
//! leases do not get it (see [Scripts](#scripts)).
//!
//! A command that hits the response timeout retires the connection it was sent on: replies are
//! matched to requests in order, so after a lost request a later command could get another
//! one's reply. The next commands wait for a new connection (at most the connect timeout; if it
//! cannot be made they fail transiently and the next one tries again).
//!
//! ## Notifications
//!
//! One pub/sub connection per backend (shared by its clones) carries every waiter's channel,
//! driven by one background task. [`LockBackend::listen`](locks_core::LockBackend::listen) returns once the `SUBSCRIBE` is
//! confirmed; a channel is unsubscribed (lazily) a second after its last listener is gone, so a
//! contended key stays subscribed between one wait and the next. When the connection drops,
//! every waiter is woken to re-check, and the task reconnects with backoff and resubscribes.

#![warn(missing_docs)]

mod ack;
mod backend;
mod builder;
#[cfg(feature = "serde")]
mod config;
mod connect;
mod connection;
mod counter;
mod dispatch;
mod error;
mod functions;
mod grant;
mod health;
mod keys;
mod list;
mod policy;
mod pubsub;
mod replies;
mod scripts;
#[cfg(feature = "cluster")]
mod sharded;
mod topology;

pub use crate::backend::RedisBackend;
pub use crate::builder::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT, RedisBackendBuilder};
#[cfg(feature = "serde")]
pub use crate::config::{
    FenceCounterTtlConfig, RedisConfig, RedisTopology, ReplicaAckConfig, TopologyKind,
};
pub use crate::counter::FenceCounterTtl;
pub use crate::error::RedisBackendError;
pub use crate::functions::{
    APP_USER_ACL, LIBRARY, install_functions, install_functions_with, library_source,
    library_version,
};
#[cfg(feature = "layout")]
pub use crate::keys::RedisKeys;
/// The redis crate this backend is built on, for [`RedisBackend::builder_from_client`] and raw
/// commands.
pub use redis;
