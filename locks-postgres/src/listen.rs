//! Release notifications: one shared `LISTEN` connection per backend, multiplexing every
//! waiter of every key.
//!
//! - A release (or a force-release) runs `pg_notify(channel, payload)` in its own statement,
//!   so the notification leaves when the delete commits. The channel is one per schema
//!   (`locks:<schema>`), the payload names the key (prefix and name).
//! - The backend keeps one dedicated connection (outside the pool) that `LISTEN`s on the
//!   channel, and a map `key → (refcount, watch::Sender<u64> generation)`. A notification
//!   bumps its key's generation; a [`PgListener`] waits for its receiver to change. Since the
//!   whole channel is listened to, [`Notifier::listen`] costs no round trip.
//! - A health check (`SELECT 1` every [`HEALTH_INTERVAL`], answered within the operation
//!   timeout) catches a half-open connection. When the connection ends or fails the check, every
//!   generation is bumped (every waiter re-checks: a release may have been missed), the task
//!   reconnects with exponential backoff and jitter, `LISTEN`s again, and bumps every
//!   generation once more (releases while it was away).
//! - While it is down, `listen` fails at once with a transient error: the service then polls at
//!   `min(backoff, remaining ttl of the holder)` and listens again on its next round.
//! - The task stops when the last handle (backend clone or listener) is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use locks_core::{BackendError, LockKey, ReleaseListener, Wake};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::error::PostgresBackendError;
use crate::ops::payload;

/// How often the listening connection is checked.
pub(crate) const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The first pause before a reconnection attempt, doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_secs(2);

struct Entry {
    refs: usize,
    generation: watch::Sender<u64>,
}

struct Shared {
    keys: Mutex<HashMap<String, Entry>>,
    up: AtomicBool,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, payload: &str) {
        if let Some(e) = self.keys().get(payload) {
            e.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    fn wake_all(&self) {
        for e in self.keys().values() {
            e.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }
}

/// The backend's handle on the shared `LISTEN` connection.
pub(crate) struct Notifier {
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("up", &self.shared.up.load(Ordering::Relaxed))
            .field("keys", &self.shared.keys().len())
            .finish()
    }
}

/// One live listening connection: the client (for `LISTEN` and health checks) and the
/// notifications its connection task forwards (the channel closes when the connection ends).
struct Session {
    client: Client,
    payloads: mpsc::UnboundedReceiver<String>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connect, start the connection task, `LISTEN`.
async fn open(
    config: &Config,
    channel: &str,
    timeout: Duration,
) -> Result<Session, PostgresBackendError> {
    let connect = async {
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| PostgresBackendError::pg("listen", e))?;
        let (tx, payloads) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message
                    && tx.send(n.payload().to_owned()).is_err()
                {
                    return;
                }
            }
        });
        let session = Session {
            client,
            payloads,
            driver,
        };
        // The channel is an identifier: quoted, with any `"` doubled (the schema rules allow
        // none, but the quoting does not rely on it).
        let listen = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
        session
            .client
            .batch_execute(&listen)
            .await
            .map_err(|e| PostgresBackendError::pg("listen", e))?;
        Ok(session)
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(PostgresBackendError::ConnectTimeout { timeout }),
    }
}

/// Why a session ended.
enum Flow {
    Lost,
    Stop,
}

async fn pump(
    shared: &Shared,
    session: &mut Session,
    stop: &mut oneshot::Receiver<()>,
    timeout: Duration,
) -> Flow {
    let mut health = tokio::time::interval_at(Instant::now() + HEALTH_INTERVAL, HEALTH_INTERVAL);
    health.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut *stop => return Flow::Stop,
            payload = session.payloads.recv() => match payload {
                Some(p) => shared.wake(&p),
                None => return Flow::Lost,
            },
            _ = health.tick() => {
                let check = tokio::time::timeout(timeout, session.client.batch_execute("SELECT 1"));
                if !matches!(check.await, Ok(Ok(()))) {
                    return Flow::Lost;
                }
            }
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    config: Config,
    channel: String,
    timeout: Duration,
    mut session: Session,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        if let Flow::Stop = pump(&shared, &mut session, &mut stop, timeout).await {
            return;
        }
        shared.up.store(false, Ordering::SeqCst);
        drop(session);
        tracing::debug!("postgres release notifications lost; every waiter re-checks");
        shared.wake_all();
        let mut pause = FIRST_PAUSE;
        session = loop {
            let jitter = pause.mul_f64(fastrand::f64() * 0.5);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(pause + jitter) => {}
            }
            match open(&config, &channel, timeout).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause,
                        "postgres release notifications are down; waiters poll until they are back");
                    pause = (pause * 2).min(MAX_PAUSE);
                }
            }
        };
        shared.up.store(true, Ordering::SeqCst);
        // Releases published while we were away were missed: re-check.
        shared.wake_all();
        tracing::debug!("postgres release notifications reconnected");
    }
}

impl Notifier {
    /// Open the listening connection (within `timeout`) and start the background task.
    pub(crate) async fn start(
        config: Config,
        channel: String,
        timeout: Duration,
    ) -> Result<Arc<Notifier>, PostgresBackendError> {
        let session = open(&config, &channel, timeout).await?;
        let shared = Arc::new(Shared {
            keys: Mutex::new(HashMap::new()),
            up: AtomicBool::new(true),
        });
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(run(
            Arc::clone(&shared),
            config,
            channel,
            timeout,
            session,
            stop_rx,
        ));
        Ok(Arc::new(Notifier {
            shared,
            _stop: stop_tx,
        }))
    }

    /// A listener for `key`'s releases, or a transient error while the connection is down.
    pub(crate) fn listen(self: &Arc<Self>, key: &LockKey) -> Result<PgListener, BackendError> {
        let key = payload(key);
        let rx = {
            let mut keys = self.shared.keys();
            let e = keys.entry(key.clone()).or_insert_with(|| Entry {
                refs: 0,
                generation: watch::channel(0).0,
            });
            e.refs += 1;
            e.generation.subscribe()
        };
        // Registered first: if the connection goes down from here on, the task wakes us.
        let listener = PgListener {
            notifier: Arc::clone(self),
            key,
            rx,
        };
        if !self.shared.up.load(Ordering::SeqCst) {
            return Err(BackendError::transient(
                "the postgres release notification connection is reconnecting; waiters poll",
            ));
        }
        Ok(listener)
    }

    /// Whether the listening connection is up.
    pub(crate) fn is_up(&self) -> bool {
        self.shared.up.load(Ordering::SeqCst)
    }
}

/// Waits for the releases of one key: see the [module docs](self).
pub(crate) struct PgListener {
    notifier: Arc<Notifier>,
    key: String,
    rx: watch::Receiver<u64>,
}

#[async_trait]
impl ReleaseListener for PgListener {
    async fn wait_for_release(&mut self, max: Duration) -> Result<Wake, BackendError> {
        match tokio::time::timeout(max, self.rx.changed()).await {
            Ok(Ok(())) => Ok(Wake::Notified),
            // Cannot happen while this listener holds a reference; do not spin if it does.
            Ok(Err(_)) => Err(BackendError::transient(
                "postgres release notifications stopped",
            )),
            Err(_) => Ok(Wake::TimedOut),
        }
    }
}

impl Drop for PgListener {
    fn drop(&mut self) {
        let mut keys = self.notifier.shared.keys();
        if let Some(e) = keys.get_mut(&self.key) {
            e.refs = e.refs.saturating_sub(1);
            if e.refs == 0 {
                keys.remove(&self.key);
            }
        }
    }
}
