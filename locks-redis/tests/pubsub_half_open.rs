//! A half-open release subscription (issue 11, item 10): the pub/sub connection stays up but
//! the server's replies never arrive (the testkit's [`FaultProxy`] stalls them, like a stalled
//! middlebox), while the commands go straight to the server.
//!
//! Promise: the first `SUBSCRIBE` that goes unanswered within the response timeout takes the
//! connection out of service, and until a new one is confirmed `listen` fails at once, so a
//! contended acquire waits about one polling interval after the release, not a response
//! timeout per round; once the path heals, notifications resume.
//!
//! Only the subscription suffers: the service under test runs on [`Split`], a backend that
//! sends every store operation through a backend connected to the server directly, and
//! listens through a second backend connected through the proxy (whose own command connection
//! is never used after connecting).
//!
//! Real time, real `redis-server`. Nothing sleeps to synchronise: conditions are polled in
//! bounded loops, and every wait is bounded by `tokio::time::timeout`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use locks_core::backend::{Action, Dispatch, Operation, Outcome};
use locks_core::{
    AcquireOptions, AcquireResult, BackendError, LeaseKind, LockBackend, LockGuard, LockKey,
    LockService, OwnerToken, ReleaseListener, RetryPolicy, Wake,
};
use locks_redis::RedisBackend;
use locks_testkit::proxy::{Direction, FaultProxy};
use locks_testkit::redis_server::{RedisServer, RedisServerConfig, notification_only};
use tokio::time::Instant;

mod common;
use common::{builder, connect, key, unique};

/// The response timeout of the backends: what a waiter paid per round before the fix.
const RESPONSE_TIMEOUT: Duration = common::TIMEOUT;
/// The waiter's polling interval (its backoff, fixed: no growth, no jitter).
const POLL: Duration = Duration::from_millis(100);
/// Scheduling slack for a loaded two-core test machine.
const SLACK: Duration = Duration::from_millis(700);
/// Contended acquires in a row while the subscription is half-open.
const ROUNDS: usize = 5;
/// Bound for anything that should happen "soon" (reconnections pause up to 5 s).
const SOON: Duration = Duration::from_secs(20);
/// A hand-off faster than this with [`notification_only`] options (60 s between polls) was
/// woken by the release notification.
const NOTIFIED: Duration = Duration::from_secs(5);

/// Store operations through `commands`, release notifications through `subscription`; counts
/// the attempts that found the lock held and the listeners handed out.
#[derive(Debug)]
struct Split {
    commands: RedisBackend,
    subscription: RedisBackend,
    held: AtomicU64,
    listening: AtomicU64,
}

#[async_trait::async_trait]
impl Dispatch for Split {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn supports(&self, kind: LeaseKind) -> bool {
        LockBackend::supports(&self.commands, kind)
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        let out = op.send(&self.commands).await;
        if matches!(op.action, Action::TryAcquire { .. })
            && matches!(out, Ok(Outcome::Acquire(AcquireResult::Held { .. })))
        {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
        out
    }

    async fn listen(&self, key: &LockKey) -> Result<Box<dyn ReleaseListener>, BackendError> {
        let listener = LockBackend::listen(&self.subscription, key).await?;
        self.listening.fetch_add(1, Ordering::SeqCst);
        Ok(listener)
    }

    async fn list(
        &self,
        query: &locks_core::backend::ListQuery,
    ) -> Result<locks_core::backend::ListPage, BackendError> {
        LockBackend::list(&self.commands, query).await
    }
}

locks_core::impl_lock_backend!(Split);

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {limit:?}"))
}

/// Poll `check` every few milliseconds until it holds (bounded by [`SOON`]).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    within(SOON, what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// A backend connected to `url`, with connect and response timeouts of [`RESPONSE_TIMEOUT`].
async fn backend(url: &str) -> RedisBackend {
    connect(builder(url)).await
}

/// The holder takes `name`; the waiter (`locks`, on `split`) starts waiting for it with
/// `opts`; once `ready` says the waiter is where the round wants it, the holder releases.
/// Returns how long the waiter's acquire took, from its start.
async fn contended_acquire(
    holder: &LockService,
    locks: &LockService,
    name: &str,
    opts: AcquireOptions,
    ready: impl Fn() -> bool,
) -> Duration {
    let guard = holder
        .acquire_opts(name, AcquireOptions::new().ttl(Duration::from_secs(60)))
        .await
        .unwrap_or_else(|e| panic!("holder: {e}"));
    let start = Instant::now();
    let waiting = tokio::spawn({
        let (locks, name) = (locks.clone(), name.to_owned());
        async move { locks.acquire_opts(&name, opts).await }
    });
    until("the waiter is waiting", &ready).await;
    guard
        .release()
        .await
        .unwrap_or_else(|e| panic!("holder release: {e}"));
    let got: LockGuard = within(SOON, "the waiter acquires", waiting)
        .await
        .unwrap_or_else(|e| panic!("waiter task: {e}"))
        .unwrap_or_else(|e| panic!("waiter: {e}"));
    let took = start.elapsed();
    got.release()
        .await
        .unwrap_or_else(|e| panic!("waiter release: {e}"));
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_subscription_costs_one_response_timeout_then_waiters_poll() {
    let server = RedisServer::start_with(RedisServerConfig::new().local_only())
        .await
        .unwrap_or_else(|e| panic!("redis fixture: {e}"));
    let proxy = FaultProxy::for_server(&server)
        .await
        .unwrap_or_else(|e| panic!("fault proxy: {e}"));
    let split = Arc::new(Split {
        commands: backend(&server.url()).await,
        subscription: backend(&proxy.url()).await,
        held: AtomicU64::new(0),
        listening: AtomicU64::new(0),
    });
    let locks = LockService::builder_arc(split.clone())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = LockService::new(backend(&server.url()).await).unwrap_or_else(|e| panic!("{e}"));
    let polling = AcquireOptions::new().wait_timeout(SOON).retry(
        RetryPolicy::default()
            .initial_delay(POLL)
            .max_delay(POLL)
            .jitter(0.0),
    );
    // Released as soon as the waiter has found the lock held (and is about to listen).
    let found_held = |before: u64| {
        let split = Arc::clone(&split);
        move || split.held.load(Ordering::SeqCst) > before
    };
    // Released once the waiter has a listener (its SUBSCRIBE is confirmed).
    let listening = |before: u64| {
        let split = Arc::clone(&split);
        move || split.listening.load(Ordering::SeqCst) > before
    };

    // Half-open: the subscription's replies (SUBSCRIBE confirmations, messages) are held in the
    // proxy from now on; the requests still reach the server, the commands are not affected.
    // Nothing has been sent on the subscription connection since it was set up, so the first
    // request to go unanswered is a waiter's SUBSCRIBE. (A request in flight when the stall
    // begins, such as the lazy UNSUBSCRIBE of an earlier waiter's channel, would find the
    // connection half-open first.)
    proxy.stall(Direction::ServerToClient);
    let mut took = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let name = unique(&format!("half-open-{round}"));
        let ready = found_held(split.held.load(Ordering::SeqCst));
        let t = contended_acquire(&holder, &locks, &name, polling.clone(), ready).await;
        println!("half-open round {round}: {t:?}");
        took.push(t);
    }
    assert!(
        proxy.held_bytes(Direction::ServerToClient) > 0,
        "the subscription's replies are held in the proxy"
    );
    // The first round finds the connection half-open: its SUBSCRIBE waits one response
    // timeout, then the waiter polls.
    assert!(
        took[0] <= RESPONSE_TIMEOUT + POLL + SLACK,
        "round 0 took {took:?}"
    );
    // Every later round: `listen` fails at once, so about one polling interval after the
    // release (before the fix, each paid at least the response timeout again).
    for (round, t) in took.iter().enumerate().skip(1) {
        assert!(
            *t <= POLL + SLACK,
            "round {round} took {t:?} (all: {took:?}); a half-open subscription must not cost \
             a response timeout ({RESPONSE_TIMEOUT:?}) per waiter"
        );
    }
    // And `listen` itself fails fast while the connection is being replaced.
    let started = Instant::now();
    let refused = LockBackend::listen(&split.subscription, &key(&unique("probe"))).await;
    let listen_took = started.elapsed();
    assert!(refused.is_err(), "listen on a half-open subscription");
    assert!(
        listen_took <= SLACK,
        "listen took {listen_took:?} to fail while the subscription is being replaced"
    );

    // Healed: the subscription is replaced (within its reconnection backoff) and `listen`
    // works again...
    proxy.heal();
    let probe = key(&unique("probe"));
    let mut listener = within(SOON, "listen works again", async {
        loop {
            match LockBackend::listen(&split.subscription, &probe).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
    .await;
    let token = OwnerToken::new();
    let ttl = Duration::from_secs(60);
    let commands = &split.commands;
    let got = LockBackend::try_acquire(commands, &probe, LeaseKind::Mutex, token, ttl).await;
    assert!(matches!(got, Ok(AcquireResult::Acquired(_))), "{got:?}");
    let released = LockBackend::release(commands, &probe, LeaseKind::Mutex, token).await;
    assert_eq!(released.ok(), Some(true));
    let wake = within(SOON, "the release notification", async {
        listener.wait_for_release(SOON).await
    })
    .await;
    assert_eq!(wake.ok(), Some(Wake::Notified));
    drop(listener);

    // ...and a waiter is woken by the notification again (a 60 s backoff otherwise).
    let took = contended_acquire(
        &holder,
        &locks,
        &unique("healed"),
        notification_only(),
        listening(split.listening.load(Ordering::SeqCst)),
    )
    .await;
    println!("healed, woken by the notification: {took:?}");
    assert!(took < NOTIFIED, "healed hand-off took {took:?}");

    locks.shutdown().await;
    holder.shutdown().await;
}
