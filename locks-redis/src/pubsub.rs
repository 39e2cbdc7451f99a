//! Release notifications: one shared pub/sub connection per backend, multiplexing every waiter.
//!
//! - A map `channel → (refcount, subscribed, watch::Sender<Signal>)`. A message on a
//!   channel bumps its generation (and a fair mutex's grant, `granted:<token>:<fence>`, is
//!   kept with it: see [`grant`](crate::grant)); a [`RedisListener`] waits for its receiver
//!   to change.
//! - [`Notifier::listen`] returns only once the `SUBSCRIBE` of its channel is confirmed by the
//!   server (or was already), so a release published after `listen` returns is never missed
//!   while the connection lives.
//! - Dropping the last listener of a channel queues it for a lazy, batched `UNSUBSCRIBE` done by
//!   the background task [`LINGER`] later, which re-checks the refcount under the subscription
//!   lock so that a concurrent `listen` of the same channel is never left unsubscribed. The
//!   linger keeps a hot key's channel subscribed between one wait and the next, so that
//!   `listen` on a contended key costs no round trip.
//! - When the connection drops, a periodic `PING` fails, or a request on it goes unanswered
//!   (see below), the task bumps *every* generation (every waiter re-checks at once: a release
//!   may have been missed), reconnects with exponential backoff and jitter, resubscribes every
//!   live channel (one `SUBSCRIBE`, every confirmation awaited), and bumps every generation
//!   again (releases published while it was away).
//! - While it is reconnecting, `listen` fails fast with a transient error; the service then
//!   polls at `min(backoff, remaining ttl of the holder)` and listens again on its next round.
//!
//! # Half-open connections
//!
//! A connection can stay up while the server's replies never arrive (a stalled middlebox, a
//! half-open TCP connection). Without care, every `listen` of a channel not yet subscribed
//! would wait for its `SUBSCRIBE` confirmation up to the response timeout, on every round of
//! every waiter. Instead:
//!
//! - A `SUBSCRIBE` (or health-check `PING`, or lazy `UNSUBSCRIBE`) that is not answered within
//!   the response timeout, or fails with an I/O error, marks the connection *broken*: it is
//!   taken out of service under the subscription lock, so a `listen` queued behind that request
//!   does not send on it but fails at once, and the task replaces it like a dropped one. One
//!   waiter pays the response timeout once per broken connection (those listening at that
//!   moment share it), not each waiter on each round.
//! - A connection counts as working again only once the server has *answered* on it: the
//!   resubscription of the live channels, or a `PING` when there are none, confirmed within the
//!   response timeout. Until then `listen` fails fast and waiters poll at
//!   `min(backoff, remaining ttl of the holder)` right away; reconnection attempts through the
//!   same silent path keep failing within the connect or response timeout, in the background.
//! - Once a new connection is confirmed, `listen` subscribes again and notifications resume
//!   (and every waiter re-checks, as after any reconnection).
//! - A channel still subscribed on a connection that has gone silent is not re-checked by
//!   `listen` (the hot-key path costs no round trip): its waiters hear nothing and poll at the
//!   same pace until the health check or another unanswered request finds the connection
//!   broken.
//!
//! Why not redis's own `ConnectionManager` with a push sender and automatic resubscription:
//! it needs RESP3, replays the subscriptions without checking the result, and does not
//! reconnect after a timed-out `PING`, so a connection that silently stops delivering (a
//! partition, a half-open TCP connection) is never replaced: measured with
//! `examples/pubsub_reconnect.rs --partition`, its waiters were never woken and later
//! `SUBSCRIBE`s timed out, where this loop woke them and resubscribed within seconds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use futures::{FutureExt, StreamExt};
use locks_core::backend::Signal;
use locks_core::{BackendError, ReleaseListener, Wake};
use redis::aio::{PubSub, PubSubSink, PubSubStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::error::backend_error;
use crate::topology::Source;

/// How often the idle subscription connection is checked with a `PING`.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// Pauses between reconnection attempts: 25 ms doubling up to 2.5 s, each plus a random
/// jitter of up to 100 % (so 25–50 ms first, at most 5 s).
const RECONNECT_BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(25))
    .with_max_delay(Duration::from_millis(2500))
    .with_factor(2.0)
    .with_jitter()
    .without_max_times();
/// The pause if the backoff ever ran out (it does not: no maximum number of attempts).
const RECONNECT_MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a channel stays subscribed after its last listener is gone.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Channel {
    /// Live listeners of this channel.
    refs: usize,
    /// A `SUBSCRIBE` for it was confirmed on the current connection.
    subscribed: bool,
    /// When the last listener left (`refs` became 0).
    idle_since: Option<Instant>,
    /// Bumped on every message (with the grant it carries) and on every (re)connection event.
    generation: watch::Sender<Signal>,
}

impl Channel {
    fn new() -> Self {
        Channel {
            refs: 0,
            subscribed: false,
            idle_since: None,
            generation: watch::Sender::new(Signal::default()),
        }
    }

    /// A message with `payload`, or (`None`) a reconnection event.
    fn wake(&self, payload: Option<&[u8]>) {
        self.generation
            .send_modify(|s| crate::grant::record(s, payload));
    }
}

/// State shared by the background task, the backend and the listeners.
struct Shared {
    /// Where a new subscription connection goes: the server, or the primary the Sentinels
    /// name at that moment.
    source: Arc<Source>,
    connect_timeout: Duration,
    response_timeout: Duration,
    channels: Mutex<HashMap<String, Channel>>,
    /// The command side of the subscription connection; `None` while it is broken or being
    /// replaced (until a new one is confirmed). Held across every (un)subscribe so that they
    /// reach the server in decision order.
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    /// Signalled when a request on the current connection went unanswered (or failed with an
    /// I/O error): the task drops the connection and reconnects.
    broken: Notify,
}

enum Flow {
    Disconnected,
    Shutdown,
}

impl Shared {
    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, channel: &str, payload: &[u8]) {
        if let Some(c) = self.channels().get(channel) {
            c.wake(Some(payload));
        }
    }

    fn wake_all(&self) {
        for c in self.channels().values() {
            c.wake(None);
        }
    }

    fn is_subscribed(&self, channel: &str) -> bool {
        self.channels().get(channel).is_some_and(|c| c.subscribed)
    }

    fn set_subscribed(&self, channel: &str) {
        if let Some(c) = self.channels().get_mut(channel) {
            c.subscribed = true;
        }
    }

    /// Take the current connection out of service (`slot` is the locked sink): no request is
    /// sent on it any more, `listen` fails fast until a new connection is confirmed, and the
    /// task is told to replace it.
    fn break_connection(&self, slot: &mut Option<PubSubSink>, why: &'static str) {
        if slot.take().is_none() {
            return;
        }
        for c in self.channels().values_mut() {
            c.subscribed = false;
        }
        tracing::debug!(
            reason = why,
            "redis release subscription connection broken; replacing it, waiters poll meanwhile"
        );
        self.broken.notify_one();
    }

    /// Subscribe `channel` on the current connection unless it already is. Fails fast while
    /// the connection is broken or being replaced; a `SUBSCRIBE` unanswered within the
    /// response timeout breaks the connection.
    async fn subscribe(&self, channel: &str) -> Result<(), BackendError> {
        // Every holder of the lock is bounded by the response timeout; if one ran into it, it
        // broke the connection and this fails fast below.
        let Ok(mut slot) = tokio::time::timeout(self.response_timeout, self.sink.lock()).await
        else {
            return Err(BackendError::transient(
                "timed out waiting for the redis release subscription connection",
            ));
        };
        if self.is_subscribed(channel) {
            return Ok(());
        }
        let Some(sink) = slot.as_mut() else {
            return Err(BackendError::transient(
                "the redis release subscription is reconnecting",
            ));
        };
        match tokio::time::timeout(self.response_timeout, sink.subscribe(channel)).await {
            Ok(Ok(())) => {
                self.set_subscribed(channel);
                Ok(())
            }
            Ok(Err(e)) => {
                // A refusal (say, an ACL without this channel) leaves the connection in service.
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                    self.break_connection(&mut slot, "SUBSCRIBE failed");
                }
                Err(backend_error("subscribe", e))
            }
            Err(_) => {
                self.break_connection(&mut slot, "SUBSCRIBE unanswered");
                Err(BackendError::transient(
                    "timed out subscribing to the redis release channel; \
                     the subscription connection is being replaced",
                ))
            }
        }
    }

    /// Read messages and housekeeping requests until the connection ends or every handle is
    /// gone.
    async fn pump(
        &self,
        mut stream: PubSubStream,
        idle: &mut mpsc::UnboundedReceiver<String>,
    ) -> Flow {
        let mut health = tokio::time::interval_at(
            Instant::now() + HEALTH_CHECK_INTERVAL,
            HEALTH_CHECK_INTERVAL,
        );
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Idle channels in the order they went idle, with the time to unsubscribe them.
        let mut lingering: VecDeque<(Instant, String)> = VecDeque::new();
        loop {
            let next_due = lingering.front().map(|(at, _)| *at);
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => self.wake(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => return Flow::Disconnected,
                },
                first = idle.recv() => match first {
                    Some(first) => {
                        let due = Instant::now() + LINGER;
                        lingering.push_back((due, first));
                        while let Ok(more) = idle.try_recv() {
                            lingering.push_back((due, more));
                        }
                    }
                    None => return Flow::Shutdown,
                },
                _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    let now = Instant::now();
                    let mut batch = HashSet::new();
                    while lingering.front().is_some_and(|(at, _)| *at <= now) {
                        if let Some((_, name)) = lingering.pop_front() {
                            batch.insert(name);
                        }
                    }
                    if !self.unsubscribe_idle(batch, now).await {
                        return Flow::Disconnected;
                    }
                }
                _ = health.tick() => {
                    if !self.ping().await {
                        return Flow::Disconnected;
                    }
                }
                () = self.broken.notified() => return Flow::Disconnected,
            }
        }
    }

    /// Unsubscribe every channel of `batch` that has had no listener for [`LINGER`] at `now`.
    /// `false`: the connection failed.
    async fn unsubscribe_idle(&self, batch: HashSet<String>, now: Instant) -> bool {
        let mut sink = self.sink.lock().await;
        let gone: Vec<String> = {
            let mut channels = self.channels();
            batch
                .into_iter()
                .filter(|name| {
                    let idle = channels.get(name).is_some_and(|c| {
                        c.refs == 0 && c.idle_since.is_some_and(|t| t + LINGER <= now)
                    });
                    if idle {
                        channels.remove(name);
                    }
                    idle
                })
                .collect()
        };
        let Some(conn) = sink.as_mut() else {
            return true;
        };
        // Never an empty UNSUBSCRIBE: it would drop every channel.
        if gone.is_empty() {
            return true;
        }
        let ok = matches!(
            tokio::time::timeout(self.response_timeout, conn.unsubscribe(&gone)).await,
            Ok(Ok(()))
        );
        if !ok {
            self.break_connection(&mut sink, "UNSUBSCRIBE failed or unanswered");
        }
        ok
    }

    /// The health check. `false`: the connection failed (and is out of service).
    async fn ping(&self) -> bool {
        let mut sink = self.sink.lock().await;
        let Some(conn) = sink.as_mut() else {
            return true;
        };
        let ok = matches!(
            tokio::time::timeout(self.response_timeout, conn.ping::<redis::Value>()).await,
            Ok(Ok(_))
        );
        if !ok {
            self.break_connection(&mut sink, "PING failed or unanswered");
        }
        ok
    }

    /// Reconnect with backoff until it works (`Some`) or every handle is gone (`None`).
    async fn reconnect(&self, idle: &mut mpsc::UnboundedReceiver<String>) -> Option<PubSubStream> {
        {
            let mut sink = self.sink.lock().await;
            *sink = None;
            for c in self.channels().values_mut() {
                c.subscribed = false;
            }
            // A break signalled for the connection that is gone now is dealt with: forget it
            // (no new one can be signalled before a new connection is in service).
            let _ = self.broken.notified().now_or_never();
        }
        // A release may have been published while the connection was going down.
        self.wake_all();
        let mut pauses = RECONNECT_BACKOFF.build();
        loop {
            if idle.is_closed() {
                return None;
            }
            let pause = pauses.next().unwrap_or(RECONNECT_MAX_PAUSE);
            match self.try_reconnect().await {
                Ok(stream) => {
                    tracing::debug!("redis release subscription reconnected");
                    // Releases published while we were away were missed: re-check.
                    self.wake_all();
                    return Some(stream);
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause,
                        "redis release subscription is down; waiters poll until it is back");
                }
            }
            let until = Instant::now() + pause;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    // Channels dropped meanwhile are cleaned up by the next resubscription.
                    req = idle.recv() => {
                        req.as_ref()?;
                    }
                }
            }
        }
    }

    async fn try_reconnect(&self) -> Result<PubSubStream, BackendError> {
        let connect = async {
            match self.source.primary_client().await {
                Some(client) => client?.get_async_pubsub().await,
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "a cluster has no single subscription connection",
                ))),
            }
        };
        let pubsub = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(r) => r.map_err(|e| backend_error("subscribe", e))?,
            Err(_) => {
                return Err(BackendError::transient(
                    "timed out reconnecting the redis release subscription",
                ));
            }
        };
        let (new_sink, stream) = pubsub.split();
        // Not under the subscription lock: `listen` fails fast (the sink is `None`) instead of
        // waiting for a confirmation that may never come. A channel that gets its first
        // listener meanwhile is subscribed by that listener's next `listen`.
        let names: Vec<String> = {
            let mut channels = self.channels();
            channels.retain(|_, c| c.refs > 0);
            channels.keys().cloned().collect()
        };
        // The connection is in service only once the server has answered on it: one SUBSCRIBE
        // for every channel (it returns once each one is confirmed), or a PING if there is none.
        let mut confirm = new_sink.clone();
        let confirmed = async {
            if names.is_empty() {
                confirm.ping::<redis::Value>().await.map(drop)
            } else {
                confirm.subscribe(&names).await
            }
        };
        match tokio::time::timeout(self.response_timeout, confirmed).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(backend_error("subscribe", e)),
            Err(_) => {
                return Err(BackendError::transient(
                    "timed out resubscribing the redis release channels",
                ));
            }
        }
        let mut sink = self.sink.lock().await;
        {
            let mut channels = self.channels();
            for name in &names {
                if let Some(c) = channels.get_mut(name) {
                    c.subscribed = true;
                }
            }
        }
        *sink = Some(new_sink);
        Ok(stream)
    }
}

/// The background task: pump messages, reconnect when needed, stop when every handle is gone.
async fn run(
    shared: Arc<Shared>,
    mut stream: PubSubStream,
    mut idle: mpsc::UnboundedReceiver<String>,
) {
    loop {
        match shared.pump(stream, &mut idle).await {
            Flow::Shutdown => return,
            Flow::Disconnected => {
                tracing::debug!("redis release subscription lost; every waiter re-checks");
            }
        }
        stream = match shared.reconnect(&mut idle).await {
            Some(s) => s,
            None => return,
        };
    }
}

/// The backend's handle on the shared subscription. The background task stops when the last
/// handle (backend clone or listener) is dropped.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    idle: mpsc::UnboundedSender<String>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.shared.channels().len())
            .finish()
    }
}

impl Notifier {
    /// Take over a connected pub/sub connection and start the background task.
    pub(crate) fn start(
        source: Arc<Source>,
        pubsub: PubSub,
        connect_timeout: Duration,
        response_timeout: Duration,
    ) -> Arc<Notifier> {
        let (sink, stream) = pubsub.split();
        let shared = Arc::new(Shared {
            source,
            connect_timeout,
            response_timeout,
            channels: Mutex::new(HashMap::new()),
            sink: tokio::sync::Mutex::new(Some(sink)),
            broken: Notify::new(),
        });
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Arc::clone(&shared), stream, idle_rx));
        Arc::new(Notifier {
            shared,
            idle: idle_tx,
        })
    }

    /// Listen on `channel`; returns once the subscription is confirmed.
    ///
    /// Fails with a transient error at once while the connection is broken or being replaced
    /// (see [Half-open connections](self#half-open-connections)), and within the response
    /// timeout if the `SUBSCRIBE` goes unanswered (which breaks the connection), plus at most
    /// one more response timeout waiting for a request already on the connection.
    pub(crate) async fn listen(
        self: &Arc<Self>,
        channel: String,
    ) -> Result<RedisListener, BackendError> {
        let (rx, subscribed) = {
            let mut channels = self.shared.channels();
            let c = channels.entry(channel.clone()).or_insert_with(Channel::new);
            c.refs += 1;
            c.idle_since = None;
            (c.generation.subscribe(), c.subscribed)
        };
        let seen = rx.borrow().generation;
        // From here on, dropping the listener gives the reference back.
        let listener = RedisListener {
            notifier: Arc::clone(self),
            channel,
            rx,
            seen,
        };
        if !subscribed {
            self.shared.subscribe(&listener.channel).await?;
        }
        Ok(listener)
    }

    /// Number of channels with a subscription entry (live or waiting to be unsubscribed).
    pub(crate) fn channel_count(&self) -> usize {
        self.shared.channels().len()
    }
}

/// Waits for the releases of one key: see the [module docs](self).
pub(crate) struct RedisListener {
    notifier: Arc<Notifier>,
    channel: String,
    rx: watch::Receiver<Signal>,
    /// The generation of the last notification reported.
    seen: u64,
}

#[async_trait]
impl ReleaseListener for RedisListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        crate::grant::wait(&mut self.rx, &mut self.seen, max).await
    }
}

impl Drop for RedisListener {
    fn drop(&mut self) {
        let idle = {
            let mut channels = self.notifier.shared.channels();
            match channels.get_mut(&self.channel) {
                Some(c) => {
                    c.refs = c.refs.saturating_sub(1);
                    if c.refs == 0 {
                        c.idle_since = Some(Instant::now());
                    }
                    c.refs == 0
                }
                None => false,
            }
        };
        if idle {
            // The task re-checks the refcount before it unsubscribes. If it is gone, so is
            // the connection.
            let _ = self.notifier.idle.send(std::mem::take(&mut self.channel));
        }
    }
}
