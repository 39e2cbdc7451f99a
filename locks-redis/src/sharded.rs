//! Release notifications on a Redis Cluster: one subscription connection of the redis crate's
//! cluster client (RESP3, a push handler), which sends each channel's `SSUBSCRIBE` to the node
//! that owns the channel's slot — the slot of the lock's keys, since the channel shares their
//! `{name}` hash tag — and subscribes again by itself after a reconnection or a slot move.
//!
//! - A map `channel → (refcount, subscribed, watch::Sender<Signal>)`, as for one server
//!   ([`pubsub`](crate::pubsub)): a message bumps its channel's generation, a
//!   [`ShardedListener`] waits for its receiver to change.
//! - [`ShardedNotifier::listen`] returns once the subscription is confirmed (or already was),
//!   so a release published after it returns is heard while the connection lives.
//! - A disconnection push (the client lost a node's connection) bumps *every* generation: a
//!   release may have been missed, every waiter re-checks at once. Waiters also poll at
//!   `min(backoff, holder's remaining ttl)`, so a missed message costs at most that.
//! - A channel whose last listener is gone is unsubscribed [`LINGER`] later, unless a listener
//!   came back meanwhile (checked under the lock that orders every (un)subscribe).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::Signal;
use locks_core::{BackendError, ReleaseListener, Wake};
use redis::cluster_async::ClusterConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::watch;

use crate::error::backend_error;
use crate::pubsub::LINGER;

/// How the scripts announce a release on a cluster, and so how waiters listen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channels {
    /// `SPUBLISH` / `SSUBSCRIBE` (Redis >= 7): the message stays on the shard of the key.
    Sharded,
    /// `PUBLISH` / `SUBSCRIBE`: the cluster bus copies every message to every node.
    #[allow(dead_code)] // the scripts' plain form; kept for a server without sharded pub/sub
    Classic,
}

/// How waiters listen on a cluster: as the scripts publish. On a cluster the backend runs the
/// scripts' sharded form (`Calls::EvalSharded`), whose releases `SPUBLISH` on the shard that
/// owns the lock's slot; `Classic` would have every node carry every message.
const CHANNELS: Channels = Channels::Sharded;

struct Channel {
    refs: usize,
    subscribed: bool,
    generation: watch::Sender<Signal>,
}

impl Channel {
    /// A message with `payload`, or (`None`) a disconnection.
    fn wake(&self, payload: Option<&[u8]>) {
        self.generation
            .send_modify(|s| crate::grant::record(s, payload));
    }
}

/// The channel map, shared with the push handler.
#[derive(Default)]
pub(crate) struct Registry {
    channels: Mutex<HashMap<String, Channel>>,
}

impl Registry {
    fn channels(&self) -> MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The push handler: a message wakes its channel, a disconnection every channel.
    pub(crate) fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let name = match push.data.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => return,
                };
                let payload = match push.data.get(1) {
                    Some(Value::BulkString(b)) => Some(b.as_slice()),
                    Some(Value::SimpleString(s)) => Some(s.as_bytes()),
                    _ => None,
                };
                if let Some(c) = self.channels().get(&name) {
                    c.wake(Some(payload.unwrap_or_default()));
                }
            }
            PushKind::Disconnection => {
                for c in self.channels().values() {
                    c.wake(None);
                }
            }
            _ => {}
        }
    }
}

/// The shared subscription of a cluster backend and its clones.
pub(crate) struct ShardedNotifier {
    registry: Arc<Registry>,
    conn: ClusterConnection,
    mode: Channels,
    response_timeout: Duration,
    /// Orders every (un)subscribe, so a lingering unsubscribe never undoes a newer subscribe.
    ops: tokio::sync::Mutex<()>,
}

impl ShardedNotifier {
    /// Take over a cluster connection made with a push sender that feeds `registry`.
    pub(crate) fn new(
        registry: Arc<Registry>,
        conn: ClusterConnection,
        mode: Channels,
        response_timeout: Duration,
    ) -> Arc<ShardedNotifier> {
        Arc::new(ShardedNotifier {
            registry,
            conn,
            mode,
            response_timeout,
            ops: tokio::sync::Mutex::new(()),
        })
    }

    /// Number of channels with an entry (listened to, or waiting for their unsubscribe).
    pub(crate) fn channel_count(&self) -> usize {
        self.registry.channels().len()
    }

    /// Listen on `channel`; returns once the subscription is confirmed. Fails with a
    /// transient error if it is not confirmed within the response timeout.
    pub(crate) async fn listen(
        self: &Arc<Self>,
        channel: String,
    ) -> Result<ShardedListener, BackendError> {
        let rx = {
            let mut channels = self.registry.channels();
            let c = channels.entry(channel.clone()).or_insert_with(|| Channel {
                refs: 0,
                subscribed: false,
                generation: watch::Sender::new(Signal::default()),
            });
            c.refs += 1;
            c.generation.subscribe()
        };
        let seen = rx.borrow().generation;
        let listener = ShardedListener {
            notifier: Arc::clone(self),
            channel,
            rx,
            seen,
        };
        let _ordered = self.ops.lock().await;
        let subscribed = self
            .registry
            .channels()
            .get(&listener.channel)
            .is_some_and(|c| c.subscribed);
        if !subscribed {
            let mut conn = self.conn.clone();
            let name = listener.channel.as_str();
            let request = async {
                match self.mode {
                    Channels::Sharded => conn.ssubscribe(name).await,
                    Channels::Classic => conn.subscribe(name).await,
                }
            };
            match tokio::time::timeout(self.response_timeout, request).await {
                Ok(Ok(())) => {
                    if let Some(c) = self.registry.channels().get_mut(&listener.channel) {
                        c.subscribed = true;
                    }
                }
                Ok(Err(e)) => return Err(backend_error("subscribe", e)),
                Err(_) => {
                    return Err(BackendError::transient(
                        "timed out subscribing to the redis release channel on its shard",
                    ));
                }
            }
        }
        Ok(listener)
    }

    /// Unsubscribe `channel` if it still has no listener (after [`LINGER`]).
    async fn unsubscribe_if_idle(self: Arc<Self>, channel: String) {
        tokio::time::sleep(LINGER).await;
        let _ordered = self.ops.lock().await;
        {
            let mut channels = self.registry.channels();
            match channels.get(&channel) {
                Some(c) if c.refs == 0 => {
                    channels.remove(&channel);
                }
                _ => return,
            }
        }
        let mut conn = self.conn.clone();
        let request = async {
            match self.mode {
                Channels::Sharded => conn.sunsubscribe(channel.as_str()).await,
                Channels::Classic => conn.unsubscribe(channel.as_str()).await,
            }
        };
        // A failure leaves a subscription nobody listens to: harmless (its messages wake no
        // one), and the client drops it with the connection.
        if let Ok(Err(e)) = tokio::time::timeout(self.response_timeout, request).await {
            tracing::debug!(error = %e, "redis release channel: unsubscribe failed");
        }
    }
}

/// Waits for the releases of one key on a cluster: see the [module docs](self).
pub(crate) struct ShardedListener {
    notifier: Arc<ShardedNotifier>,
    channel: String,
    rx: watch::Receiver<Signal>,
    /// The generation of the last notification reported.
    seen: u64,
}

#[async_trait]
impl ReleaseListener for ShardedListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        crate::grant::wait(&mut self.rx, &mut self.seen, max).await
    }
}

impl Drop for ShardedListener {
    fn drop(&mut self) {
        let idle = {
            let mut channels = self.notifier.registry.channels();
            match channels.get_mut(&self.channel) {
                Some(c) => {
                    c.refs = c.refs.saturating_sub(1);
                    c.refs == 0
                }
                None => false,
            }
        };
        if idle && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let notifier = Arc::clone(&self.notifier);
            runtime.spawn(notifier.unsubscribe_if_idle(std::mem::take(&mut self.channel)));
        }
    }
}

/// Open the subscription connection of a cluster with seed nodes `seeds`: RESP3 (pushes), the
/// connect and response timeouts, and a push handler feeding a new registry.
pub(crate) async fn open(
    seeds: Vec<String>,
    (connect_timeout, response_timeout): (Duration, Duration),
) -> redis::RedisResult<Arc<ShardedNotifier>> {
    let registry = Arc::new(Registry::default());
    let handler = Arc::clone(&registry);
    let client = redis::cluster::ClusterClientBuilder::new(seeds)
        .use_protocol(redis::ProtocolVersion::RESP3)
        .connection_timeout(connect_timeout)
        .response_timeout(response_timeout)
        .push_sender(move |push: PushInfo| {
            handler.on_push(&push);
            Ok::<(), std::convert::Infallible>(())
        })
        .build()?;
    let conn = client.get_async_connection().await?;
    Ok(ShardedNotifier::new(
        registry,
        conn,
        CHANNELS,
        response_timeout,
    ))
}

#[cfg(test)]
mod tests {
    use crate::scripts::{Oom, eval_source, sharded_source};

    /// The sharded form of every script announces with `SPUBLISH` and nothing else changes:
    /// fails if the helper's publish call is ever reworded without the cluster form following.
    #[test]
    fn the_sharded_scripts_spublish() {
        let body = "announce(KEYS[1]) return 1";
        let plain = eval_source(body, Oom::Keeps);
        let sharded = sharded_source(body, Oom::Keeps);
        assert!(plain.contains("redis.pcall('PUBLISH', channel, 'released')"));
        assert!(sharded.contains("redis.pcall('SPUBLISH', channel, 'released')"));
        assert!(!sharded.contains("'PUBLISH'"));
        assert_eq!(plain.len() + 1, sharded.len());
    }
}
