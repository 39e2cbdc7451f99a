//! Building a [`LockService`]: defaults, and the checks every value passes.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Inner, LockService};
use crate::backend::LockBackend;
use crate::error::LockError;
use crate::health::HealthCheck;
use crate::key::{DEFAULT_PREFIX, validate_prefix};
use crate::kind::LeaseKind;
use crate::lease::keeper::Keeper;
use crate::metrics_labels::{KeyClassifier, Labels};
use crate::options::{RetryPolicy, validate_ttl};

pub(crate) struct Defaults {
    pub(crate) ttl: Duration,
    pub(crate) max_ttl: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) auto_renew: bool,
    pub(crate) renew_fraction: f64,
    pub(crate) max_hold: Option<Duration>,
    /// Mutex acquires use fair mode unless a call says otherwise.
    pub(crate) fair: bool,
}

/// Builds a [`LockService`]; every value is checked by [`build`](LockServiceBuilder::build).
pub struct LockServiceBuilder {
    backend: Arc<dyn LockBackend>,
    prefix: String,
    defaults: Defaults,
    detect_self_wait: bool,
    key_class: Option<KeyClassifier>,
    health: Option<Arc<dyn HealthCheck>>,
}

impl fmt::Debug for LockServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockServiceBuilder")
            .field("backend", &self.backend.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl LockServiceBuilder {
    /// Prefix for every key (default `_lock:`; at most 128 bytes, no braces or control chars).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Lease ttl when a call does not set one (default 30 s).
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.defaults.ttl = ttl;
        self
    }

    /// Largest ttl accepted (default 5 min). Larger ttls are an error, never clamped.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.defaults.max_ttl = ttl;
        self
    }

    /// How long `acquire` waits when a call does not say (default 30 s).
    pub fn default_wait_timeout(mut self, d: Duration) -> Self {
        self.defaults.wait_timeout = d;
        self
    }

    /// Backoff between attempts (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.defaults.retry = retry;
        self
    }

    /// Renew held leases in the background (default on).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.defaults.auto_renew = on;
        self
    }

    /// Renew when this fraction of the ttl has passed since the last confirmed renewal;
    /// within [`RENEW_FRACTION_RANGE`], 0.05 to 0.9 (default 0.5).
    pub fn renew_fraction(mut self, fraction: f64) -> Self {
        self.defaults.renew_fraction = fraction;
        self
    }

    /// Stop renewing a lease after it has been held this long, so a hung but living process
    /// cannot hold a lock forever (default: no limit).
    pub fn max_hold(mut self, max_hold: Option<Duration>) -> Self {
        self.defaults.max_hold = max_hold;
        self
    }

    /// Fair mode for every mutex call of this service (`acquire`, `try_acquire`, `with_lock`,
    /// ... and `is_locked`, `inspect`, `force_release`, `waiters`, which then look at fair
    /// leases) unless a call's [`AcquireOptions::fair`](crate::AcquireOptions::fair) says
    /// otherwise (default off). See [`LeaseKind::FairMutex`] for what the store does: a FIFO
    /// queue of waiters across processes and direct hand-off on release. Every user of a
    /// lock name must use the same mode. On a backend that cannot keep fair mutexes
    /// (PostgreSQL, quorum) mutex calls fail with `Unsupported`.
    ///
    /// ```
    /// use locks_core::LockService;
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::builder(MemoryBackend::new()).fair(true).build()?;
    /// let ran = locks.with_lock("inventory:sku-9", |lease| async move { lease.fence() }).await?;
    /// assert!(ran > 0);
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        self.defaults.fair = on;
        self
    }

    /// Refuse at once, with `SelfWait`, a waiting acquire of a mutex or write lock that the
    /// calling tokio task already holds through this service (default on). The check is one
    /// map lookup per waiting acquire. It follows the task that *acquired* the lease: a guard
    /// moved to another task still counts for the task that took it; turn it off if your
    /// tasks hand guards over and then wait for the same lock again.
    pub fn detect_self_wait(mut self, on: bool) -> Self {
        self.detect_self_wait = on;
        self
    }

    /// Add a `key_class` label to every metric, computed from the lock name (without prefix)
    /// by `classify` once per acquire; `None` is the class `"other"`. Off by default: metrics
    /// carry no per-key label, since one series per lock name grows without bound. `classify`
    /// must return few distinct values (never the name itself). See
    /// [`metrics_labels`](crate::metrics_labels).
    ///
    /// ```
    /// use locks_core::LockService;
    /// use locks_memory::MemoryBackend;
    ///
    /// let locks = LockService::builder(MemoryBackend::new())
    ///     .metric_key_class(|name| name.split_once(':').map(|(class, _)| class.to_owned()))
    ///     .build()?;
    /// # Ok::<(), locks_core::LockError>(())
    /// ```
    pub fn metric_key_class<F, S>(mut self, classify: F) -> Self
    where
        F: Fn(&str) -> Option<S> + Send + Sync + 'static,
        S: Into<metrics::SharedString>,
    {
        self.key_class = Some(KeyClassifier::new(classify));
        self
    }

    /// Add a `key_class` label to every metric: the first of `patterns` (globs, `*` matching
    /// any run of characters, e.g. `payment:*`) that matches the lock name, else `"other"`.
    /// See [`metric_key_class`](Self::metric_key_class).
    pub fn metric_key_patterns<I, S>(mut self, patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.key_class = Some(KeyClassifier::patterns(patterns));
        self
    }

    /// The store's health facts for [`LockService::health`] (see [`crate::health`]). Without
    /// one, `health()` measures a round trip and knows nothing else.
    pub fn health_check(self, check: impl HealthCheck) -> Self {
        self.health_check_arc(Arc::new(check))
    }

    /// [`health_check`](Self::health_check) with a shared check.
    pub fn health_check_arc(mut self, check: Arc<dyn HealthCheck>) -> Self {
        self.health = Some(check);
        self
    }

    /// Validate and build. A backend that cannot store some kinds still builds a service: its
    /// primitives are refused with `Unsupported` when created, and mutex calls before anything
    /// is sent when it cannot store mutexes.
    pub fn build(self) -> Result<LockService, LockError> {
        validate_prefix(&self.prefix)?;
        let d = &self.defaults;
        if d.max_ttl < Duration::from_millis(1) {
            return Err(LockError::invalid_option(
                "max_ttl",
                "must be at least 1 ms",
            ));
        }
        validate_ttl(d.ttl, d.max_ttl)?;
        d.retry.validate()?;
        validate_fraction(d.renew_fraction)?;
        validate_max_hold(d.max_hold)?;
        let mutex_supported = self.backend.supports(LeaseKind::Mutex);
        let labels = Labels::new(self.backend.name(), None);
        Ok(LockService {
            inner: Arc::new(Inner {
                backend: self.backend,
                prefix: Arc::from(self.prefix.as_str()),
                defaults: self.defaults,
                keeper: Arc::new(Keeper::new(self.detect_self_wait)),
                closing: CancellationToken::new(),
                closed: AtomicBool::new(false),
                lines: Arc::default(),
                mutex_supported,
                detect_self_wait: self.detect_self_wait,
                key_class: self.key_class,
                labels,
                health: self.health,
            }),
        })
    }
}

/// The range `renew_fraction` must lie in. Below it renewal runs nearly back to back; above it
/// the renewal would come after (or too close to) the local deadline, `ttl − drift margin`.
pub const RENEW_FRACTION_RANGE: std::ops::RangeInclusive<f64> = 0.05..=0.9;

fn validate_fraction(f: f64) -> Result<(), LockError> {
    if RENEW_FRACTION_RANGE.contains(&f) {
        Ok(())
    } else {
        Err(LockError::invalid_option(
            "renew_fraction",
            format!(
                "{f} is outside [{}, {}]",
                RENEW_FRACTION_RANGE.start(),
                RENEW_FRACTION_RANGE.end()
            ),
        ))
    }
}

pub(crate) fn validate_max_hold(max_hold: Option<Duration>) -> Result<(), LockError> {
    match max_hold {
        Some(d) if d.is_zero() => Err(LockError::invalid_option(
            "max_hold",
            "must be greater than zero",
        )),
        _ => Ok(()),
    }
}

impl LockService {
    /// Start building a service over `backend`.
    pub fn builder(backend: impl LockBackend) -> LockServiceBuilder {
        Self::builder_arc(Arc::new(backend))
    }

    /// Start building a service over a shared backend.
    pub fn builder_arc(backend: Arc<dyn LockBackend>) -> LockServiceBuilder {
        LockServiceBuilder {
            backend,
            prefix: DEFAULT_PREFIX.to_owned(),
            detect_self_wait: true,
            key_class: None,
            health: None,
            defaults: Defaults {
                ttl: Duration::from_secs(30),
                max_ttl: Duration::from_secs(300),
                wait_timeout: Duration::from_secs(30),
                retry: RetryPolicy::default(),
                auto_renew: true,
                renew_fraction: 0.5,
                max_hold: None,
                fair: false,
            },
        }
    }

    /// Start building a service over a backend that also reports its health: the same value
    /// serves as the store and as the [`health_check`](LockServiceBuilder::health_check).
    pub fn builder_with_health<B: LockBackend + HealthCheck>(backend: B) -> LockServiceBuilder {
        let backend = Arc::new(backend);
        let check: Arc<dyn HealthCheck> = backend.clone();
        Self::builder_arc(backend).health_check_arc(check)
    }

    /// A service with every default.
    pub fn new(backend: impl LockBackend) -> Result<Self, LockError> {
        Self::builder(backend).build()
    }
}
