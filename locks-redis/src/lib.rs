//! # locks-redis
//!
//! The Redis [`LockBackend`] for [`locks_core::LockService`]: atomic Lua scripts over a
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
//!   unreachable server, a wrong password (never retried) are told apart.
//! - An ACL user needs the commands `EVAL`, `EVALSHA`, `SCRIPT`, `PING`, `SUBSCRIBE`,
//!   `UNSUBSCRIBE` and, inside the scripts, `HGET`, `HMGET`, `HSET`, `HDEL`, `GET`, `SET`,
//!   `DEL`, `EXISTS`, `PEXPIRE`, `PTTL`, `TIME`, `PUBLISH`, and for semaphores and read-write
//!   locks `ZADD`, `ZREM`, `ZSCORE`, `ZCARD`, `ZRANGE`, `ZRANGEBYSCORE`, `ZREMRANGEBYSCORE`;
//!   the keys `~_lock:*` and the channels `&_lock:*` (with the default prefix), e.g.
//!   `ACL SETUSER app on >s3cret ~_lock:* &_lock:* +@scripting +@pubsub +ping +@hash +@string +@sortedset +@keyspace +time`.
//!   Without channel permissions, locking still works (`PUBLISH` runs under `pcall`) and
//!   waiters poll.
//!
//! ## Key layout
//!
//! One function, [`RedisKeys::new`], maps a [`LockKey`] to Redis names. All of them share
//! the hash tag `{name}`, so a script touches one Redis Cluster slot:
//!
//! | what | name (prefix `_lock:`, name `payment:42`) | content |
//! |---|---|---|
//! | lease | `_lock:{payment:42}` | hash: `owner` = owner token, `fence` = decimal fence; `PX` = lease ttl |
//! | fence counter | `_lock:{payment:42}:fence` | string: last fence of *any* kind (lease, permit, reader, writer); `PX` = `max(10 × ttl, 1 day)` |
//! | release channel | `_lock:{payment:42}:released` | pub/sub channel, message `released`, for every kind of release |
//! | semaphore permits | `_lock:{payment:42}:sem` | sorted set: member = owner token, score = expiry in ms by the server's `TIME`; `PX` = latest expiry |
//! | permit fences | `_lock:{payment:42}:sem:fences` | hash: owner token → decimal fence; `PX` as the set |
//! | readers | `_lock:{payment:42}:rw:readers` | sorted set: member = owner token, score = expiry in ms by the server's `TIME`; `PX` = latest expiry |
//! | reader fences | `_lock:{payment:42}:rw:fences` | hash: owner token → decimal fence; `PX` as the set |
//! | writer | `_lock:{payment:42}:rw:writer` | hash: `owner`, `fence`; `PX` = write lease ttl |
//! | waiting writer | `_lock:{payment:42}:rw:waiting` | string: the waiting writer's token; `PX` = its ttl, refreshed by each attempt |
//!
//! A mutex, a semaphore and a read-write lock under the same name are independent locks that
//! share the fence counter (so their fences never repeat) and the release channel.
//!
//! ## Scripts
//!
//! Every operation is one Lua script, run with `EVALSHA` (reloaded after `NOSCRIPT`, e.g. after
//! `SCRIPT FLUSH` or a restart). User values reach Lua through `KEYS`/`ARGV` only. Each is
//! atomic and idempotent for the same owner token, because a command that failed on a dropped
//! connection may or may not have run and the service may send it again.
//!
//! - **acquire**: own lease → reset its ttl, same fence; someone else's → "held" with its
//!   `PTTL`; none → new fence `max(TIME in µs, counter + 1)`, counter stored with a long
//!   expiry, lease hash written with `PX` ttl.
//! - **release**: compare owner and `DEL`, then `PUBLISH` on the release channel.
//! - **extend**: compare owner and `PEXPIRE`.
//! - **inspect**: `HMGET owner fence` and `PTTL`, atomically.
//! - **force release**: `DEL` whoever holds it, `PUBLISH` if there was a lease.
//!
//! Semaphores and read-write locks keep their permits and readers in a sorted set scored by
//! expiry, computed inside the script from the server's `TIME` (never the client's clock).
//! Every script that touches a set first removes the members whose expiry has passed
//! (`ZREMRANGEBYSCORE -inf now`) together with their fences, and every script that changes
//! it sets the set's and the fence hash's `PEXPIRE` to the latest member expiry, so an
//! abandoned semaphore disappears by itself. New permits, readers and writers get their fence
//! from the shared counter, exactly like a lease.
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
//! ## Guarantees and limits
//!
//! - Expiry is Redis's own clock (`PX`, and `TIME` for permits and readers). Ttls are rounded
//!   up to whole milliseconds. Both are absolute server times, so a step of the server clock
//!   moves every expiry with it.
//! - Fencing tokens are strictly increasing per key across all holders: each is
//!   `max(server time in microseconds, last fence + 1)`. They keep increasing after the counter
//!   expired and after a restart that lost all data, because the server clock has moved on.
//!   **The one thing that breaks them is the server clock stepping backwards** (NTP step, a
//!   failover to a replica whose clock is behind). Fences are about 1.8 × 10^15 today, exact in
//!   Lua's doubles until the year 2255.
//! - A single Redis server (or a failover pair) is a single point of truth: a failover that
//!   loses a fresh lease lets a second holder in. The core's lost-lock detection makes the
//!   first holder stop at its local deadline; fences let the protected store reject it.
//! - Release notifications are at most once (pub/sub): waiters also poll at
//!   `min(backoff, holder's remaining ttl)`, and every waiter re-checks when the subscription
//!   connection drops. An expired lease publishes nothing.
//! - A lease key that holds something this backend did not write (wrong type) is a permanent
//!   error, never overwritten.
//! - The backend talks to one server (standalone, or the address of a primary). The key layout
//!   is ready for Redis Cluster, but cluster connections, Redlock and `WAIT` are not part of
//!   this crate yet.
//! - An expired permit, reader or writer publishes nothing (like an expired lease): waiters
//!   find out at their next poll, at most the holder's remaining ttl later.
//!
//! ## Errors
//!
//! Operations report [`BackendError`] with the [`redis::RedisError`] as source. Transient (the
//! service retries): I/O errors, timeouts, dropped or refused connections, `BUSY`, `LOADING`,
//! `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`. Permanent: authentication and
//! permissions, `NOSCRIPT` after a reload, script errors, `WRONGTYPE`, malformed replies.
//!
//! A command that hits the response timeout retires the connection it was sent on: replies are
//! matched to requests in order, so after a lost request a later command could get another
//! one's reply. The next commands wait for a new connection (at most the connect timeout; if it
//! cannot be made they fail transiently and the next one tries again).
//!
//! ## Notifications
//!
//! One pub/sub connection per backend (shared by its clones) carries every waiter's channel,
//! driven by one background task. [`LockBackend::listen`] returns once the `SUBSCRIBE` is
//! confirmed; a channel is unsubscribed (lazily) a second after its last listener is gone, so a
//! contended key stays subscribed between one wait and the next. When the connection drops,
//! every waiter is woken to re-check, and the task reconnects with backoff and resubscribes.

#![warn(missing_docs)]

mod error;
mod keys;
mod pubsub;
mod scripts;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::{
    AcquireResult, BackendError, Lease, LeaseInfo, LockBackend, LockKey, OwnerToken,
    ReleaseListener, RwInfo,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, RedisError, RedisResult, ScriptInvocation, Value};

pub use crate::error::RedisBackendError;
pub use crate::keys::RedisKeys;
/// The redis crate this backend is built on, for [`RedisBackend::builder_from_client`] and raw
/// commands.
pub use redis;

use crate::error::{backend_error, connect_error, malformed};
use crate::keys::{CHANNEL_SUFFIX, FENCE_SUFFIX, LeaseKeys};
use crate::pubsub::Notifier;

/// The default [`RedisBackendBuilder::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The default [`RedisBackendBuilder::response_timeout`].
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest time the fence counter of a key is kept after its last new lease.
pub const MIN_FENCE_COUNTER_TTL: Duration = Duration::from_secs(86_400);

/// Longest expiry sent to Redis, in milliseconds (about 100 years); longer ttls are capped.
const MAX_PX_MS: u64 = 100 * 365 * 86_400 * 1000;

/// A [`LockBackend`] on Redis. Cheap to clone: clones share the connection, the subscription
/// and its background task. See the [crate docs](crate) for layout, scripts and guarantees.
///
/// Must be created (and used) inside a tokio runtime.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The command connection, replaced after a response timeout (see [`Slot`]).
    slot: RwLock<Slot>,
    /// Held while a replacement connection is being made: one attempt at a time.
    reconnecting: tokio::sync::Mutex<()>,
    /// How the command connection is made (and remade).
    config: ConnectionManagerConfig,
    notifier: Arc<Notifier>,
    addr: String,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("addr", &self.inner.addr)
            .field("connect_timeout", &self.inner.connect_timeout)
            .field("response_timeout", &self.inner.response_timeout)
            .field("release_channels", &self.inner.notifier.channel_count())
            .finish()
    }
}

/// Where the builder connects to.
enum Target {
    Url(String),
    Client(Box<Client>),
}

/// Builds a [`RedisBackend`]: [`RedisBackend::builder`] or
/// [`RedisBackend::builder_from_client`], optional timeouts, then
/// [`connect`](RedisBackendBuilder::connect).
pub struct RedisBackendBuilder {
    target: Target,
    connect_timeout: Duration,
    response_timeout: Duration,
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the URL: it may carry a password.
        let target = match &self.target {
            Target::Url(_) => "url (redacted)".to_owned(),
            Target::Client(c) => c.get_connection_info().addr().to_string(),
        };
        f.debug_struct("RedisBackendBuilder")
            .field("target", &target)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisBackendBuilder {
    /// How long [`connect`](Self::connect) may take in total (TCP, TLS, `AUTH`, `PING` and the
    /// pub/sub connection), and each later reconnection attempt. Default 5 s; at least 1 ms.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long one command may wait for its reply before it fails with a transient error.
    /// Default 5 s; at least 1 ms.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connect: the command connection (checked with `PING`) and the pub/sub connection.
    ///
    /// Fails within the connect timeout with [`RedisBackendError`]: `InvalidUrl`,
    /// `InvalidOption`, `Authentication` (not retried), `Connect` or `ConnectTimeout`.
    pub async fn connect(self) -> Result<RedisBackend, RedisBackendError> {
        for (option, value) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if value < Duration::from_millis(1) {
                return Err(RedisBackendError::InvalidOption {
                    option,
                    reason: "must be at least 1 ms".into(),
                });
            }
        }
        let client = match self.target {
            Target::Client(client) => *client,
            Target::Url(url) => open_client(&url)?,
        };
        #[cfg(feature = "tls")]
        install_crypto_provider(&client);
        let addr = client.get_connection_info().addr().to_string();
        let (ct, rt) = (self.connect_timeout, self.response_timeout);
        let connected = tokio::time::timeout(ct, async {
            // No retries inside the connection manager: a dropped connection fails the command
            // (transient) and reconnects on the next one; the service decides about retrying.
            let mut conn =
                ConnectionManager::new_with_config(client.clone(), manager_config(ct, rt))
                    .await
                    .map_err(|e| connect_error(&addr, e))?;
            // The connection setup authenticates; PING catches `NOAUTH` (password missing).
            redis::cmd("PING")
                .query_async::<Value>(&mut conn)
                .await
                .map_err(|e| connect_error(&addr, e))?;
            let pubsub = client
                .get_async_pubsub()
                .await
                .map_err(|e| connect_error(&addr, e))?;
            Ok::<_, RedisBackendError>((conn, pubsub))
        })
        .await;
        let (conn, pubsub) = match connected {
            Ok(r) => r?,
            Err(_) => {
                return Err(RedisBackendError::ConnectTimeout { addr, timeout: ct });
            }
        };
        let notifier = Notifier::start(client.clone(), pubsub, ct, rt);
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                client,
                slot: RwLock::new(Slot {
                    conn,
                    generation: 0,
                    broken: false,
                    attempts: 0,
                }),
                reconnecting: tokio::sync::Mutex::new(()),
                config: manager_config(ct, rt),
                notifier,
                addr,
                connect_timeout: ct,
                response_timeout: rt,
            }),
        })
    }
}

/// The command connection's configuration. No retries inside the connection manager: a dropped
/// connection fails the command (transient) and reconnects on the next one; the service decides
/// about retrying.
fn manager_config(
    connect_timeout: Duration,
    response_timeout: Duration,
) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(connect_timeout))
        .set_response_timeout(Some(response_timeout))
        .set_number_of_retries(0)
}

/// The shared command connection.
///
/// The redis crate matches replies to requests in the order they were sent, and keeps a
/// connection after a response timeout. A request lost on a connection that stays open (a
/// middlebox discarding bytes) would shift every later reply to the wrong request, so a
/// response timeout marks the connection `broken`: no later command is sent on it, and a new
/// connection manager (same client, same configuration) replaces it. The `generation` tells
/// whether a timed-out command used the current connection (N concurrent timeouts replace it
/// once); `attempts` counts reconnection attempts, so commands waiting for one attempt do not
/// each start another after it failed.
struct Slot {
    conn: ConnectionManager,
    generation: u64,
    broken: bool,
    attempts: u64,
}

impl Inner {
    fn read_slot(&self) -> std::sync::RwLockReadGuard<'_, Slot> {
        self.slot.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_slot(&self) -> std::sync::RwLockWriteGuard<'_, Slot> {
        self.slot.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A command that used connection `generation` timed out: mark it broken if it is still
    /// the current one. Returns the attempt count to reconnect from, if this call marked it.
    fn mark_broken(&self, generation: u64) -> Option<u64> {
        let mut slot = self.write_slot();
        if slot.generation != generation || slot.broken {
            return None;
        }
        slot.broken = true;
        tracing::warn!(
            addr = %self.addr,
            "redis command timed out: replacing the command connection (replies could be \
             matched to the wrong requests on it)"
        );
        Some(slot.attempts)
    }

    /// Replace the broken connection, unless another attempt happened since `seen_attempts`
    /// (then its outcome stands). Bounded by the connect timeout. On failure the old
    /// connection stays marked broken, so the next command tries again.
    async fn reconnect(&self, seen_attempts: u64) -> RedisResult<(ConnectionManager, u64)> {
        let _one_at_a_time = self.reconnecting.lock().await;
        {
            let slot = self.read_slot();
            if !slot.broken {
                return Ok((slot.conn.clone(), slot.generation));
            }
            if slot.attempts != seen_attempts {
                return Err(not_connected(
                    "reconnecting after a response timeout failed",
                ));
            }
        }
        let made = tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(self.client.clone(), self.config.clone()),
        )
        .await;
        let mut slot = self.write_slot();
        slot.attempts = slot.attempts.wrapping_add(1);
        match made {
            Ok(Ok(conn)) => {
                slot.conn = conn.clone();
                slot.generation = slot.generation.wrapping_add(1);
                slot.broken = false;
                tracing::info!(addr = %self.addr, "redis command connection replaced");
                Ok((conn, slot.generation))
            }
            Ok(Err(e)) => {
                tracing::warn!(addr = %self.addr, error = %e, "redis reconnection failed");
                Err(e)
            }
            Err(_) => {
                tracing::warn!(addr = %self.addr, "redis reconnection timed out");
                Err(RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "reconnecting after a response timeout timed out",
                )))
            }
        }
    }
}

/// A transient "not connected" error (an I/O error, so `error::is_transient` holds).
fn not_connected(message: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        message,
    ))
}

fn open_client(url: &str) -> Result<Client, RedisBackendError> {
    Client::open(url).map_err(|e| {
        let reason = if url.starts_with("rediss://") && cfg!(not(feature = "tls")) {
            "rediss:// (TLS) needs the `tls` feature of locks-redis".to_owned()
        } else {
            e.to_string()
        };
        RedisBackendError::InvalidUrl {
            reason,
            source: Some(e),
        }
    })
}

/// rustls needs a process-wide crypto provider; install `ring` unless the application did.
#[cfg(feature = "tls")]
fn install_crypto_provider(client: &Client) {
    if matches!(
        client.get_connection_info().addr(),
        redis::ConnectionAddr::TcpTls { .. }
    ) && rustls::crypto::CryptoProvider::get_default().is_none()
    {
        // Losing the race to another installer is fine: some provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

impl RedisBackend {
    /// Connect to `url` with the default timeouts. See [`RedisBackendBuilder::connect`].
    pub async fn connect(url: &str) -> Result<RedisBackend, RedisBackendError> {
        Self::builder(url).connect().await
    }

    /// Start building a backend for `url` (`redis://`, `rediss://` with feature `tls`,
    /// `unix://`); the URL is parsed by [`connect`](RedisBackendBuilder::connect).
    pub fn builder(url: impl Into<String>) -> RedisBackendBuilder {
        Self::builder_with(Target::Url(url.into()))
    }

    /// Start building a backend on an existing [`redis::Client`] (e.g. one built with custom
    /// TLS certificates through `Client::build_with_tls`).
    pub fn builder_from_client(client: Client) -> RedisBackendBuilder {
        Self::builder_with(Target::Client(Box::new(client)))
    }

    fn builder_with(target: Target) -> RedisBackendBuilder {
        RedisBackendBuilder {
            target,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The redis client this backend connects with (for raw commands on the same server).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The server address (`host:port` or a socket path), without credentials.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// How many release channels the shared subscription tracks right now (channels with a
    /// waiter, plus those waiting for their lazy `UNSUBSCRIBE`).
    pub fn release_channels(&self) -> usize {
        self.inner.notifier.channel_count()
    }

    /// The current command connection and its generation; reconnects first if the last one
    /// broke (see [`Slot`]).
    async fn conn(&self) -> RedisResult<(ConnectionManager, u64)> {
        let seen_attempts = {
            let slot = self.inner.read_slot();
            if !slot.broken {
                return Ok((slot.conn.clone(), slot.generation));
            }
            slot.attempts
        };
        self.inner.reconnect(seen_attempts).await
    }

    /// Run one command on the command connection. Every command goes through here: a
    /// response timeout retires the connection it was sent on (see [`Slot`]) and starts a
    /// reconnection in the background; the command itself fails with a transient error.
    async fn command<T, F, Fut>(&self, operation: &'static str, run: F) -> Result<T, BackendError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (conn, generation) = self.conn().await.map_err(|e| backend_error(operation, e))?;
        let e = match run(conn).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if e.is_timeout() {
            if let Some(seen_attempts) = self.inner.mark_broken(generation) {
                let inner = Arc::clone(&self.inner);
                tokio::spawn(async move {
                    // A failure leaves the connection marked: the next command tries again.
                    let _ = inner.reconnect(seen_attempts).await;
                });
            }
        }
        Err(backend_error(operation, e))
    }

    /// Run a script invocation through [`command`](Self::command).
    async fn invoke<T: FromRedisValue>(
        &self,
        operation: &'static str,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, BackendError> {
        self.command(operation, |mut conn| async move {
            invocation.invoke_async(&mut conn).await
        })
        .await
    }

    /// Run `ACQUIRE_READ` or `ACQUIRE_WRITE` (same keys and arguments).
    async fn acquire_rw(
        &self,
        script: &redis::Script,
        operation: &'static str,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let keys = RedisKeys::new(key);
        let ttl_ms = px(ttl);
        let reply: (i64, Value) = self
            .invoke(
                operation,
                script
                    .prepare_invoke()
                    .key(&keys.rw_readers)
                    .key(&keys.rw_fences)
                    .key(&keys.rw_writer)
                    .key(&keys.rw_waiting)
                    .key(&keys.fence)
                    .arg(token.to_hyphenated())
                    .arg(ttl_ms)
                    .arg(counter_px(ttl_ms)),
            )
            .await?;
        acquire_result(operation, reply)
    }
}

/// Length of an owner token in its hyphenated form.
const TOKEN_LEN: usize = 36;

/// `token` in its hyphenated form (as [`OwnerToken::to_hyphenated`] writes it), without
/// allocating.
fn token_arg(token: OwnerToken, buf: &mut [u8; TOKEN_LEN]) -> &str {
    token.as_uuid().hyphenated().encode_lower(buf)
}

/// A ttl in whole milliseconds, rounded up, at least 1, at most [`MAX_PX_MS`].
fn px(ttl: Duration) -> u64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX).clamp(1, MAX_PX_MS)
}

/// How long the fence counter outlives the last new lease: `max(10 × ttl, 1 day)`.
fn counter_px(ttl_ms: u64) -> u64 {
    let floor = u64::try_from(MIN_FENCE_COUNTER_TTL.as_millis()).unwrap_or(MAX_PX_MS);
    ttl_ms.saturating_mul(10).max(floor).min(MAX_PX_MS)
}

fn parse_u64(v: &Value) -> Option<u64> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    }
}

/// The `{status, value}` reply of an acquire script: `{1, fence}` or `{0, remaining ms}` (a
/// negative remaining time means "unknown").
fn acquire_result(
    operation: &'static str,
    (status, value): (i64, Value),
) -> Result<AcquireResult, BackendError> {
    match status {
        1 => parse_u64(&value)
            .map(|fence| AcquireResult::Acquired(Lease::new(fence)))
            .ok_or_else(|| malformed(operation, format_args!("fence {value:?}"))),
        0 => {
            let remaining = match value {
                Value::Int(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
                other => return Err(malformed(operation, format_args!("pttl {other:?}"))),
            };
            Ok(AcquireResult::Held { remaining })
        }
        other => Err(malformed(operation, format_args!("status {other}"))),
    }
}

fn parse_token(operation: &'static str, v: &Value) -> Result<OwnerToken, BackendError> {
    let text = match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s.as_str()),
        _ => None,
    };
    text.and_then(|t| t.parse().ok())
        .ok_or_else(|| malformed(operation, format_args!("owner {v:?}")))
}

fn parse_fence(operation: &'static str, v: &Value) -> Result<u64, BackendError> {
    parse_u64(v).ok_or_else(|| malformed(operation, format_args!("fence {v:?}")))
}

/// A remaining time in ms as a script computed it (`score - TIME`, or a `PTTL`): `-1` (no
/// expiry: something outside this backend persisted the key) is "forever".
fn parse_remaining(operation: &'static str, v: &Value) -> Result<Duration, BackendError> {
    match v {
        Value::Int(-1) => Ok(Duration::MAX),
        Value::Int(ms) => Ok(Duration::from_millis(u64::try_from(*ms).unwrap_or(0))),
        other => Err(malformed(operation, format_args!("remaining {other:?}"))),
    }
}

/// The members of a sorted set as a script lists them, flat `{token, remaining ms, fence, ...}`,
/// sorted by fence.
fn parse_members(operation: &'static str, v: &Value) -> Result<Vec<LeaseInfo>, BackendError> {
    let Value::Array(items) = v else {
        return Err(malformed(operation, format_args!("members {v:?}")));
    };
    if items.len() % 3 != 0 {
        return Err(malformed(
            operation,
            format_args!("{} values for token/remaining/fence triples", items.len()),
        ));
    }
    let mut out = items
        .chunks_exact(3)
        .map(|m| {
            Ok(LeaseInfo::new(
                parse_token(operation, &m[0])?,
                parse_remaining(operation, &m[1])?,
                parse_fence(operation, &m[2])?,
            ))
        })
        .collect::<Result<Vec<_>, BackendError>>()?;
    out.sort_by_key(|i| i.fence);
    Ok(out)
}

/// The reply of the `INSPECT_RW` script: `{readers, {owner, fence, pttl} or {}, 0|1}`.
fn parse_rw(v: &Value) -> Result<RwInfo, BackendError> {
    const OP: &str = "inspect_rw";
    let Value::Array(parts) = v else {
        return Err(malformed(OP, format_args!("{v:?}")));
    };
    let [readers, writer, waiting] = parts.as_slice() else {
        return Err(malformed(OP, format_args!("{} parts", parts.len())));
    };
    let readers = parse_members(OP, readers)?;
    let writer = match writer {
        Value::Array(w) if w.is_empty() => None,
        Value::Array(w) => match w.as_slice() {
            [owner, fence, pttl] => Some(LeaseInfo::new(
                parse_token(OP, owner)?,
                parse_remaining(OP, pttl)?,
                parse_fence(OP, fence)?,
            )),
            _ => return Err(malformed(OP, format_args!("writer {writer:?}"))),
        },
        other => return Err(malformed(OP, format_args!("writer {other:?}"))),
    };
    let waiting = match waiting {
        Value::Int(n) => *n != 0,
        other => return Err(malformed(OP, format_args!("waiting {other:?}"))),
    };
    Ok(RwInfo::new(readers, writer, waiting))
}

#[async_trait]
impl LockBackend for RedisBackend {
    async fn try_acquire(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        let keys = LeaseKeys::new(key, FENCE_SUFFIX);
        let ttl_ms = px(ttl);
        let mut token_buf = [0u8; TOKEN_LEN];
        let reply: (i64, Value) = self
            .invoke(
                "acquire",
                scripts::ACQUIRE
                    .prepare_invoke()
                    .key(keys.lease())
                    .key(keys.suffixed())
                    .arg(token_arg(token, &mut token_buf))
                    .arg(ttl_ms)
                    .arg(counter_px(ttl_ms)),
            )
            .await?;
        acquire_result("acquire", reply)
    }

    async fn release(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let keys = LeaseKeys::new(key, CHANNEL_SUFFIX);
        let mut token_buf = [0u8; TOKEN_LEN];
        let released: i64 = self
            .invoke(
                "release",
                scripts::RELEASE
                    .prepare_invoke()
                    .key(keys.lease())
                    .key(keys.suffixed())
                    .arg(token_arg(token, &mut token_buf)),
            )
            .await?;
        Ok(released == 1)
    }

    async fn extend(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let keys = LeaseKeys::new(key, "");
        let mut token_buf = [0u8; TOKEN_LEN];
        let extended: i64 = self
            .invoke(
                "extend",
                scripts::EXTEND
                    .prepare_invoke()
                    .key(keys.lease())
                    .arg(token_arg(token, &mut token_buf))
                    .arg(px(ttl)),
            )
            .await?;
        Ok(extended == 1)
    }

    async fn inspect(&self, key: &LockKey) -> Result<Option<LeaseInfo>, BackendError> {
        let keys = LeaseKeys::new(key, "");
        let reply: Option<(String, Value, i64)> = self
            .invoke(
                "inspect",
                scripts::INSPECT.prepare_invoke().key(keys.lease()),
            )
            .await?;
        let Some((owner, fence, pttl)) = reply else {
            return Ok(None);
        };
        let owner: OwnerToken = owner
            .parse()
            .map_err(|e| malformed("inspect", format_args!("owner: {e}")))?;
        let fence = parse_u64(&fence)
            .ok_or_else(|| malformed("inspect", format_args!("fence {fence:?}")))?;
        let remaining = match pttl {
            // No expiry: something outside this backend persisted the key.
            -1 => Duration::MAX,
            ms => Duration::from_millis(u64::try_from(ms).unwrap_or(0)),
        };
        Ok(Some(LeaseInfo::new(owner, remaining, fence)))
    }

    async fn force_release(&self, key: &LockKey) -> Result<bool, BackendError> {
        let keys = LeaseKeys::new(key, CHANNEL_SUFFIX);
        let deleted: i64 = self
            .invoke(
                "force_release",
                scripts::FORCE_RELEASE
                    .prepare_invoke()
                    .key(keys.lease())
                    .key(keys.suffixed()),
            )
            .await?;
        Ok(deleted == 1)
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let listener = self
            .inner
            .notifier
            .listen(LeaseKeys::new(key, CHANNEL_SUFFIX).into_suffixed())
            .await?;
        Ok(Box::new(listener))
    }

    fn name(&self) -> &'static str {
        "redis"
    }

    async fn try_acquire_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
        permits: u32,
    ) -> Result<AcquireResult, BackendError> {
        let keys = RedisKeys::new(key);
        let ttl_ms = px(ttl);
        let reply: (i64, Value) = self
            .invoke(
                "try_acquire_permit",
                scripts::ACQUIRE_PERMIT
                    .prepare_invoke()
                    .key(&keys.semaphore)
                    .key(&keys.semaphore_fences)
                    .key(&keys.fence)
                    .arg(token.to_hyphenated())
                    .arg(ttl_ms)
                    .arg(permits)
                    .arg(counter_px(ttl_ms)),
            )
            .await?;
        acquire_result("try_acquire_permit", reply)
    }

    async fn release_permit(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let keys = RedisKeys::new(key);
        let released: i64 = self
            .invoke(
                "release_permit",
                scripts::RELEASE_PERMIT
                    .prepare_invoke()
                    .key(&keys.semaphore)
                    .key(&keys.semaphore_fences)
                    .key(&keys.channel)
                    .arg(token.to_hyphenated()),
            )
            .await?;
        Ok(released == 1)
    }

    async fn extend_permit(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let keys = RedisKeys::new(key);
        let extended: i64 = self
            .invoke(
                "extend_permit",
                scripts::EXTEND_PERMIT
                    .prepare_invoke()
                    .key(&keys.semaphore)
                    .key(&keys.semaphore_fences)
                    .arg(token.to_hyphenated())
                    .arg(px(ttl)),
            )
            .await?;
        Ok(extended == 1)
    }

    async fn permit_holders(&self, key: &LockKey) -> Result<Vec<LeaseInfo>, BackendError> {
        let keys = RedisKeys::new(key);
        let reply: Value = self
            .invoke(
                "permit_holders",
                scripts::PERMIT_HOLDERS
                    .prepare_invoke()
                    .key(&keys.semaphore)
                    .key(&keys.semaphore_fences),
            )
            .await?;
        parse_members("permit_holders", &reply)
    }

    async fn try_acquire_read(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.acquire_rw(&scripts::ACQUIRE_READ, "try_acquire_read", key, token, ttl)
            .await
    }

    async fn try_acquire_write(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<AcquireResult, BackendError> {
        self.acquire_rw(
            &scripts::ACQUIRE_WRITE,
            "try_acquire_write",
            key,
            token,
            ttl,
        )
        .await
    }

    async fn release_rw(&self, key: &LockKey, token: OwnerToken) -> Result<bool, BackendError> {
        let keys = RedisKeys::new(key);
        let released: i64 = self
            .invoke(
                "release_rw",
                scripts::RELEASE_RW
                    .prepare_invoke()
                    .key(&keys.rw_readers)
                    .key(&keys.rw_fences)
                    .key(&keys.rw_writer)
                    .key(&keys.rw_waiting)
                    .key(&keys.channel)
                    .arg(token.to_hyphenated()),
            )
            .await?;
        Ok(released == 1)
    }

    async fn extend_rw(
        &self,
        key: &LockKey,
        token: OwnerToken,
        ttl: Duration,
    ) -> Result<bool, BackendError> {
        let keys = RedisKeys::new(key);
        let extended: i64 = self
            .invoke(
                "extend_rw",
                scripts::EXTEND_RW
                    .prepare_invoke()
                    .key(&keys.rw_readers)
                    .key(&keys.rw_fences)
                    .key(&keys.rw_writer)
                    .arg(token.to_hyphenated())
                    .arg(px(ttl)),
            )
            .await?;
        Ok(extended == 1)
    }

    async fn inspect_rw(&self, key: &LockKey) -> Result<RwInfo, BackendError> {
        let keys = RedisKeys::new(key);
        let reply: Value = self
            .invoke(
                "inspect_rw",
                scripts::INSPECT_RW
                    .prepare_invoke()
                    .key(&keys.rw_readers)
                    .key(&keys.rw_fences)
                    .key(&keys.rw_writer)
                    .key(&keys.rw_waiting),
            )
            .await?;
        parse_rw(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_milliseconds() {
        assert_eq!(px(Duration::from_micros(1)), 1);
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_millis(300)), 300);
        assert_eq!(px(Duration::from_micros(300_001)), 301);
        assert_eq!(px(Duration::MAX), MAX_PX_MS);
        assert_eq!(counter_px(300), 86_400_000);
        assert_eq!(counter_px(10_000_000), 100_000_000);
        assert_eq!(counter_px(u64::MAX), MAX_PX_MS);
    }

    #[test]
    fn parses_fences() {
        assert_eq!(
            parse_u64(&Value::BulkString(b"1734000000000123".to_vec())),
            Some(1_734_000_000_000_123)
        );
        assert_eq!(parse_u64(&Value::Int(7)), Some(7));
        assert_eq!(parse_u64(&Value::Int(-7)), None);
        assert_eq!(parse_u64(&Value::Nil), None);
        assert_eq!(parse_u64(&Value::BulkString(b"1.5e15".to_vec())), None);
    }

    #[test]
    fn token_args_are_hyphenated_tokens() {
        let token = OwnerToken::new();
        let mut buf = [0u8; TOKEN_LEN];
        assert_eq!(token_arg(token, &mut buf), token.to_hyphenated());
    }

    #[test]
    fn builder_debug_hides_the_url() {
        let b = RedisBackend::builder("redis://user:hunter2@example.invalid:1");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
