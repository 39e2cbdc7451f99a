//! [`RecordingBackend`]: the front the code under test is given. Construction, the test
//! service, reading the recording back, and the [`LockBackend`] impl (through the fault
//! injector, then the recorder).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use locks_core::backend::{Decorator, Operation, Outcome};
use locks_core::key::DEFAULT_PREFIX;
use locks_core::{BackendError, LockBackend, LockError, LockKey, LockService, LockServiceBuilder};
use locks_memory::MemoryBackend;

use super::event::{Holder, Holding, LockEvent};
use super::log::{Record, State};
use super::probe::ProbeHit;
use super::recorder::Recorder;
use crate::faulty::FaultyBackend;

/// A backend wrapper that records every lock event and keeps the set of keys held, with
/// assertions for downstream test suites and helpers that stage contention, revoked leases
/// and store failures. Clones share the recording. Every [`LeaseKind`](locks_core::LeaseKind) the wrapped backend
/// supports is recorded: mutexes, semaphore permits, readers and writers.
///
/// Hand it (or [`service`](RecordingBackend::service)) to the code under test, drive that
/// code, then assert:
///
/// | Assertion | Checks |
/// |---|---|
/// | [`assert_held`](RecordingBackend::assert_held) / [`assert_not_held`](RecordingBackend::assert_not_held) | a key is (not) held now |
/// | [`assert_all_released`](RecordingBackend::assert_all_released) | every lease the code took was released |
/// | [`assert_never_held_together`](RecordingBackend::assert_never_held_together) | no two of these keys were ever held at once |
/// | [`assert_every_hit_under_lock`](RecordingBackend::assert_every_hit_under_lock) | each [`Probe::hit`](super::Probe::hit) ran while its key was held |
/// | [`assert_acquired_in_order`](RecordingBackend::assert_acquired_in_order) | keys were first taken in this order |
///
/// Every assertion panics with the recorded timeline in its message.
///
/// Layers: `RecordingBackend` → fault injection ([`FaultyBackend`], for
/// [`fail_next`](RecordingBackend::fail_next)) → recorder → the wrapped backend. An injected
/// failure never reaches the store and is not recorded; a lost reply
/// ([`faults`](RecordingBackend::faults)`().lose_replies_next`) is recorded, since the store
/// applied it.
///
/// ```
/// use locks_testkit::recording::RecordingBackend;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), locks_core::LockError> {
/// let recorder = RecordingBackend::memory();
/// let locks = recorder.service()?; // hand this to the code under test
///
/// // A fake the code under test calls for its side effect reports it to a probe.
/// let charges = recorder.probe("payment:42");
/// locks
///     .with_lock("payment:42", move |lease| async move {
///         charges.hit_with_fence(lease.fence()); // "the card was charged now"
///     })
///     .await?;
///
/// recorder.assert_every_hit_under_lock();
/// recorder.assert_all_released();
/// assert_eq!(recorder.held_now(), Vec::<String>::new());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RecordingBackend {
    pub(super) recorder: Arc<Recorder>,
    front: FaultyBackend,
    prefix: Arc<str>,
}

impl fmt::Debug for RecordingBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (events, hits) = {
            let log = self.state().lock();
            (log.events.len(), log.hits.len())
        };
        f.debug_struct("RecordingBackend")
            .field("inner", &self.recorder.inner.name())
            .field("prefix", &self.prefix)
            .field("events", &events)
            .field("probe_hits", &hits)
            .field("held_now", &self.held_now())
            .finish()
    }
}

impl RecordingBackend {
    /// Lease ttl of [`service`](RecordingBackend::service): short, so that renewals (every
    /// half ttl) and lost leases happen within a few virtual seconds of paused time.
    pub const SERVICE_TTL: Duration = Duration::from_secs(1);

    /// Default wait timeout of [`service`](RecordingBackend::service).
    pub const SERVICE_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

    /// Record `inner`.
    pub fn new(inner: impl LockBackend) -> Self {
        Self::from_arc(Arc::new(inner))
    }

    /// Record a shared backend.
    pub fn from_arc(inner: Arc<dyn LockBackend>) -> Self {
        let state = Arc::new(State::new());
        let recorder = Arc::new(Recorder { inner, state });
        let front = FaultyBackend::from_arc(Arc::clone(&recorder) as Arc<dyn LockBackend>);
        RecordingBackend {
            recorder,
            front,
            prefix: Arc::from(DEFAULT_PREFIX),
        }
    }

    /// Record a fresh [`MemoryBackend`] (on tokio's clock: under
    /// `#[tokio::test(start_paused = true)]` leases expire in paused time).
    pub fn memory() -> Self {
        Self::new(MemoryBackend::new())
    }

    /// Use `prefix` for the keys of [`service`](RecordingBackend::service),
    /// [`hold_elsewhere`](RecordingBackend::hold_elsewhere), [`revoke`](RecordingBackend::revoke)
    /// and [`key`](RecordingBackend::key) (default `_lock:`, the [`LockService`] default). Set
    /// it to the prefix of the service under test when that service sets its own.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The wrapped backend (operations on it are not recorded).
    pub fn inner(&self) -> &Arc<dyn LockBackend> {
        &self.recorder.inner
    }

    /// The fault injector in front of the recorder: transient failures, lost replies,
    /// partitions, latency. Clones share it.
    pub fn faults(&self) -> &FaultyBackend {
        &self.front
    }

    /// The next `n` operations of the code under test fail with a transient error before
    /// reaching the store (and are not recorded). [`hold_elsewhere`](Self::hold_elsewhere) and
    /// [`revoke`](Self::revoke) are not affected.
    pub fn fail_next(&self, n: u32) {
        self.front.fail_next(n);
    }

    /// A [`LockService`] builder over this recorder with test-friendly defaults: this
    /// recorder's key prefix, ttl [`SERVICE_TTL`](Self::SERVICE_TTL) (renewed every half
    /// second) and wait timeout [`SERVICE_WAIT_TIMEOUT`](Self::SERVICE_WAIT_TIMEOUT). Override
    /// any of them before `build()`.
    pub fn service_builder(&self) -> LockServiceBuilder {
        LockService::builder(self.clone())
            .key_prefix(&*self.prefix)
            .default_ttl(Self::SERVICE_TTL)
            .default_wait_timeout(Self::SERVICE_WAIT_TIMEOUT)
    }

    /// A [`LockService`] over this recorder with the defaults of
    /// [`service_builder`](Self::service_builder). Call it several times for several
    /// application instances sharing one store.
    ///
    /// Errors only when the key prefix set with [`with_key_prefix`](Self::with_key_prefix) is
    /// invalid.
    pub fn service(&self) -> Result<LockService, LockError> {
        self.service_builder().build()
    }

    /// The validated key for `name` under this recorder's prefix.
    pub fn key(&self, name: &str) -> Result<LockKey, LockError> {
        LockKey::new(&self.prefix, name)
    }

    pub(super) fn state(&self) -> &State {
        &self.recorder.state
    }

    // ---- Observing ----

    /// Every recorded lock event, in order.
    pub fn history(&self) -> Vec<LockEvent> {
        self.state().lock().events.clone()
    }

    /// The recorded events of one key (name or full key), in order.
    pub fn events_for(&self, key: &str) -> Vec<LockEvent> {
        self.state()
            .lock()
            .events
            .iter()
            .filter(|e| e.key == key || e.full_key == key)
            .cloned()
            .collect()
    }

    /// Every lease seen so far, in the order they were granted, with how each ended.
    pub fn holdings(&self) -> Vec<Holding> {
        let log = self.state().lock();
        let now = log.now_point();
        log.records.iter().map(|r| r.to_holding(now)).collect()
    }

    /// The names of the keys held now (by anyone, [`hold_elsewhere`](Self::hold_elsewhere)
    /// holders included), sorted, each once.
    pub fn held_now(&self) -> Vec<String> {
        let log = self.state().lock();
        let now = log.now_point();
        let mut keys: Vec<String> = log
            .records
            .iter()
            .filter(|r| r.live_at(now))
            .map(|r| r.key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether anyone holds `key` now (mutex, permit, read or write lease).
    pub fn is_held(&self, key: &str) -> bool {
        !self.holders(key).is_empty()
    }

    /// Who holds `key` now, every kind, as recorded. (This inherent method shadows
    /// [`LockBackend::holders`] in method syntax; call that one as
    /// `LockBackend::holders(&recorder, &key, kind)` for the store's own answer.)
    pub fn holders(&self, key: &str) -> Vec<Holder> {
        let log = self.state().lock();
        let now = log.now_point();
        log.live(key, now).map(Record::holder).collect()
    }

    /// Every probe hit so far, in order.
    pub fn probe_hits(&self) -> Vec<ProbeHit> {
        self.state().lock().hits.clone()
    }

    /// The recording as text (events and probe hits, in order), for messages and debugging.
    pub fn timeline(&self) -> String {
        self.state().lock().timeline(usize::MAX)
    }

    /// Wait until `condition` holds, checking it after every recorded event and whenever a
    /// lease's ttl runs out. Wrap it in `tokio::time::timeout` if the condition may never come.
    ///
    /// ```
    /// # use locks_testkit::recording::RecordingBackend;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let recorder = RecordingBackend::memory();
    /// let locks = recorder.service().unwrap();
    /// let task = tokio::spawn(async move { locks.acquire("job").await.map(|g| g.abandon()) });
    /// recorder.wait_until(|r| r.is_held("job")).await;
    /// # task.await.unwrap().unwrap();
    /// # }
    /// ```
    pub async fn wait_until(&self, mut condition: impl FnMut(&RecordingBackend) -> bool) {
        let mut changes = self.state().changes.subscribe();
        loop {
            if condition(self) {
                return;
            }
            let next_expiry = {
                let log = self.state().lock();
                let now = log.now_point();
                log.records
                    .iter()
                    .filter_map(|r| r.end_point())
                    .map(|(end, _)| end)
                    .filter(|end| *end > now && end.seq == 0)
                    .map(|end| end.at)
                    .min()
            };
            let changed = async {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            match next_expiry {
                Some(at) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// Wait until `key` is held (see [`wait_until`](Self::wait_until)).
    pub async fn wait_until_held(&self, key: &str) {
        self.wait_until(|r| r.is_held(key)).await;
    }

    /// Wait until nobody holds `key` (see [`wait_until`](Self::wait_until)).
    pub async fn wait_until_released(&self, key: &str) {
        self.wait_until(|r| !r.is_held(key)).await;
    }
}

/// Forwards to the fault injector, which forwards to the recorder.
#[async_trait]
impl Decorator for RecordingBackend {
    fn inner(&self) -> &dyn LockBackend {
        &self.front
    }

    async fn call(&self, op: Operation<'_>) -> Result<Outcome, BackendError> {
        op.send(&self.front).await
    }
}

locks_core::impl_lock_backend!(RecordingBackend);
