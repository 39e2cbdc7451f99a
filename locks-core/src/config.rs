//! [`LockConfig`]: the service's settings as data, for services that configure locks from a
//! file or the environment (feature `serde`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::backend::LockBackend;
use crate::options::RetryPolicy;
use crate::service::{LockService, LockServiceBuilder};

/// The settings of a [`LockService`], deserializable (JSON, TOML, YAML, env through your config
/// crate). Every field is optional; absent fields keep the builder's defaults. Durations are
/// humantime strings (`"30s"`, `"1m 30s"`, `"250ms"`). Values are checked by
/// [`LockServiceBuilder::build`], so an invalid config gives the same typed errors as the
/// builder, and nothing is built.
///
/// | field | default | range | `@nestjs-redisx/locks` |
/// |---|---|---|---|
/// | `key_prefix` | `"_lock:"` | ≤ 128 bytes, no braces | `keyPrefix` |
/// | `default_ttl` | `"30s"` | 1 ms ..= `max_ttl` | `defaultTtl` |
/// | `max_ttl` | `"5m"` | ≥ 1 ms, ≤ 1 day | — |
/// | `wait_timeout` | `"30s"` | any | `waitTimeout` |
/// | `retry.initial_delay` | `"10ms"` | > 0 | `retry.initialDelay` |
/// | `retry.multiplier` | `2.0` | ≥ 1, finite | `retry.multiplier` |
/// | `retry.max_delay` | `"500ms"` | ≥ initial delay | `retry.maxDelay` |
/// | `retry.jitter` | `0.2` | 0 ..= 1 | — |
/// | `retry.max_attempts` | none | ≥ 1 | `retry.maxRetries` |
/// | `auto_renew` | `true` | | `autoRenew.enabled` |
/// | `renew_fraction` | `0.5` | 0.05 ..= 0.9 | `autoRenew.intervalFraction` |
/// | `max_hold` | none | > 0 | — |
/// | `detect_self_wait` | `true` | | — |
///
/// ```
/// use locks_core::LockConfig;
/// use locks_memory::MemoryBackend;
///
/// let config: LockConfig = serde_json::from_str(
///     r#"{ "key_prefix": "orders:", "default_ttl": "10s", "retry": { "max_delay": "200ms" } }"#,
/// ).unwrap();
/// let locks = config.builder(MemoryBackend::new()).build()?;
/// # Ok::<(), locks_core::LockError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct LockConfig {
    /// Prefix of every key.
    pub key_prefix: Option<String>,
    /// Lease ttl when a call does not set one.
    #[serde(deserialize_with = "duration")]
    pub default_ttl: Option<Duration>,
    /// Largest ttl accepted.
    #[serde(deserialize_with = "duration")]
    pub max_ttl: Option<Duration>,
    /// How long `acquire` waits when a call does not say.
    #[serde(deserialize_with = "duration")]
    pub wait_timeout: Option<Duration>,
    /// Backoff between attempts.
    pub retry: Option<RetryConfig>,
    /// Renew held leases in the background.
    pub auto_renew: Option<bool>,
    /// Renew when this fraction of the ttl has passed.
    pub renew_fraction: Option<f64>,
    /// Stop renewing after a lease has been held this long.
    #[serde(deserialize_with = "duration")]
    pub max_hold: Option<Duration>,
    /// Refuse at once (`LockError::SelfWait`) a wait for a lock the same task holds
    /// ([`LockServiceBuilder::detect_self_wait`]).
    pub detect_self_wait: Option<bool>,
}

/// The retry part of a [`LockConfig`] (see [`RetryPolicy`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// First delay after a failed attempt.
    #[serde(deserialize_with = "duration")]
    pub initial_delay: Option<Duration>,
    /// Growth factor per attempt.
    pub multiplier: Option<f64>,
    /// Longest delay.
    #[serde(deserialize_with = "duration")]
    pub max_delay: Option<Duration>,
    /// Random fraction taken off each delay.
    pub jitter: Option<f64>,
    /// Give up after this many attempts (default: the wait budget decides).
    pub max_attempts: Option<u32>,
}

impl RetryConfig {
    /// These settings over the default policy.
    pub fn policy(&self) -> RetryPolicy {
        let p = RetryPolicy::default();
        let p = set(p, self.initial_delay, RetryPolicy::initial_delay);
        let p = set(p, self.multiplier, RetryPolicy::multiplier);
        let p = set(p, self.max_delay, RetryPolicy::max_delay);
        let p = set(p, self.jitter, RetryPolicy::jitter);
        set(p, self.max_attempts, |p, n| p.max_attempts(Some(n)))
    }
}

impl LockConfig {
    /// A builder over `backend` with these settings applied; [`build`](LockServiceBuilder::build)
    /// checks them.
    pub fn builder(&self, backend: impl LockBackend) -> LockServiceBuilder {
        self.apply(LockService::builder(backend))
    }

    /// Apply these settings to `builder` (fields that are absent leave it unchanged).
    pub fn apply(&self, b: LockServiceBuilder) -> LockServiceBuilder {
        let b = set(b, self.key_prefix.clone(), |b, p| b.key_prefix(p));
        let b = set(b, self.default_ttl, LockServiceBuilder::default_ttl);
        let b = set(b, self.max_ttl, LockServiceBuilder::max_ttl);
        let b = set(
            b,
            self.wait_timeout,
            LockServiceBuilder::default_wait_timeout,
        );
        let b = set(
            b,
            self.retry.as_ref().map(RetryConfig::policy),
            LockServiceBuilder::retry,
        );
        let b = set(b, self.auto_renew, LockServiceBuilder::auto_renew);
        let b = set(b, self.renew_fraction, LockServiceBuilder::renew_fraction);
        let b = set(b, self.max_hold, |b, d| b.max_hold(Some(d)));
        set(
            b,
            self.detect_self_wait,
            LockServiceBuilder::detect_self_wait,
        )
    }
}

/// `apply(target, value)` when the value is present, else `target` unchanged.
fn set<B, T>(target: B, value: Option<T>, apply: impl FnOnce(B, T) -> B) -> B {
    match value {
        Some(v) => apply(target, v),
        None => target,
    }
}

/// A humantime duration (`"30s"`), or absent.
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}
