//! Retry policy and per-call acquire options.

use std::time::Duration;

use crate::error::LockError;

/// Exponential backoff with jitter between acquire attempts.
///
/// The n-th wait is `min(initial_delay * multiplier^(n-1), max_delay)`, shortened by a random
/// fraction of up to `jitter`, and never longer than the holder's remaining ttl or the
/// caller's remaining wait budget. Waiters are woken earlier by release notifications where
/// the backend has them, so the delay is the *polling* fallback.
///
/// ```
/// use locks_core::RetryPolicy;
/// use std::time::Duration;
///
/// let retry = RetryPolicy::default()
///     .initial_delay(Duration::from_millis(5))
///     .max_delay(Duration::from_millis(200))
///     .multiplier(1.5)
///     .jitter(0.3);
/// assert!(retry.validate().is_ok());
/// assert!(RetryPolicy::default().multiplier(0.5).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub(crate) initial_delay: Duration,
    pub(crate) multiplier: f64,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    /// 10 ms, doubling, at most 500 ms, 20 % jitter, no attempt limit (the wait budget decides).
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_millis(10),
            multiplier: 2.0,
            max_delay: Duration::from_millis(500),
            jitter: 0.2,
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// First delay after a failed attempt (must be > 0).
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }

    /// Growth factor per attempt (finite, >= 1).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = m;
        self
    }

    /// Upper bound of a single delay (>= `initial_delay`).
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Fraction in `[0, 1]` of each delay that is randomised away.
    pub fn jitter(mut self, j: f64) -> Self {
        self.jitter = j;
        self
    }

    /// Give up after this many attempts (>= 1) even if wait budget remains. `None`: only the
    /// wait budget limits waiting.
    pub fn max_attempts(mut self, n: Option<u32>) -> Self {
        self.max_attempts = n;
        self
    }

    /// Check every field; the service calls this at the edge.
    pub fn validate(&self) -> Result<(), LockError> {
        if self.initial_delay.is_zero() {
            return Err(LockError::invalid_option(
                "retry.initial_delay",
                "must be greater than zero",
            ));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(LockError::invalid_option(
                "retry.multiplier",
                format!("{} is not a finite number >= 1", self.multiplier),
            ));
        }
        if self.max_delay < self.initial_delay {
            return Err(LockError::invalid_option(
                "retry.max_delay",
                format!(
                    "{:?} is shorter than initial_delay {:?}",
                    self.max_delay, self.initial_delay
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(LockError::invalid_option(
                "retry.jitter",
                format!("{} is outside [0, 1]", self.jitter),
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(LockError::invalid_option(
                "retry.max_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The delay before attempt `attempt + 1`, after `attempt` (>= 1) failed attempts.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial_delay.as_secs_f64() * self.multiplier.powi(exp);
        let capped = base.min(self.max_delay.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * fastrand::f64());
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(self.max_delay)
            .max(Duration::from_micros(100))
    }
}

/// Per-call options; anything left unset falls back to the service's defaults.
///
/// ```
/// use locks_core::{AcquireOptions, RetryPolicy};
/// use std::time::Duration;
///
/// let opts = AcquireOptions::new()
///     .ttl(Duration::from_secs(10))
///     .wait_timeout(Duration::from_secs(2))
///     .auto_renew(false)
///     .retry(RetryPolicy::default().max_attempts(Some(5)));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcquireOptions {
    pub(crate) ttl: Option<Duration>,
    pub(crate) wait_timeout: Option<Duration>,
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) auto_renew: Option<bool>,
    pub(crate) max_hold: Option<Option<Duration>>,
    pub(crate) fair: Option<bool>,
}

impl AcquireOptions {
    /// All defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lease time to live (> 0, <= the service's `max_ttl`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The whole time `acquire` may wait for the lock.
    pub fn wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = Some(d);
        self
    }

    /// Backoff between attempts.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Renew the lease in the background while the guard lives.
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = Some(on);
        self
    }

    /// Stop renewing after this long (`None`: renew for as long as the guard lives).
    pub fn max_hold(mut self, max_hold: Option<Duration>) -> Self {
        self.max_hold = Some(max_hold);
        self
    }

    /// Fair mode for this mutex acquire (default: the service's
    /// [`fair`](crate::LockServiceBuilder::fair)): waiters queue in the store in arrival
    /// order, across every process, and a release hands the lease straight to the head of the
    /// queue, which learns it from the release notification without asking the store (a
    /// hand-off costs about one notification). A lease of kind
    /// [`LeaseKind::FairMutex`](crate::LeaseKind::FairMutex), kept under names of its own:
    /// every user of a lock name must use the same mode. A backend that cannot keep fair
    /// mutexes (PostgreSQL, quorum) refuses it with `Unsupported` before anything is sent.
    ///
    /// While it waits, a fair waiter re-asks the store once a second (a third of
    /// [`FAIR_WAITER_TTL`](crate::FAIR_WAITER_TTL), or of the ttl if shorter) to keep its
    /// place, instead of following the retry backoff (`max_attempts` still counts those attempts). A waiter that stops
    /// waiting leaves the queue; after a transient store error it starts again at the tail
    /// (its token is retired, as always after an attempt with an unknown outcome). A single
    /// attempt (`try_acquire`) that finds the lock held leaves the queue with one more store
    /// call, in the background.
    ///
    /// ```
    /// use locks_core::{AcquireOptions, LockService};
    /// use locks_memory::MemoryBackend;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), locks_core::LockError> {
    /// let locks = LockService::new(MemoryBackend::new())?;
    /// let guard = locks.acquire_opts("inventory:sku-9", AcquireOptions::new().fair(true)).await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn fair(mut self, on: bool) -> Self {
        self.fair = Some(on);
        self
    }
}

/// Options with the service defaults filled in and validated.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub ttl: Duration,
    pub wait_timeout: Duration,
    pub retry: RetryPolicy,
    pub auto_renew: bool,
    pub renew_fraction: f64,
    pub max_hold: Option<Duration>,
}

/// The largest ttl any lease may have, whatever `max_ttl` says: one day. A lease longer than
/// that is a configuration mistake, and the bound keeps every deadline computation in range.
pub const TTL_LIMIT: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) fn validate_ttl(ttl: Duration, max_ttl: Duration) -> Result<(), LockError> {
    if ttl > TTL_LIMIT {
        return Err(LockError::InvalidTtl {
            ttl,
            reason: format!("exceeds the absolute limit of {TTL_LIMIT:?}"),
        });
    }
    if ttl < Duration::from_millis(1) {
        return Err(LockError::InvalidTtl {
            ttl,
            reason: "must be at least 1 ms".into(),
        });
    }
    if ttl > max_ttl {
        return Err(LockError::InvalidTtl {
            ttl,
            reason: format!("exceeds the service's max_ttl of {max_ttl:?}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_cap_and_jitter_downwards() {
        let p = RetryPolicy::default()
            .initial_delay(Duration::from_millis(10))
            .multiplier(2.0)
            .max_delay(Duration::from_millis(100))
            .jitter(0.0);
        assert_eq!(p.delay(1), Duration::from_millis(10));
        assert_eq!(p.delay(2), Duration::from_millis(20));
        assert_eq!(p.delay(4), Duration::from_millis(80));
        assert_eq!(p.delay(5), Duration::from_millis(100));
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(100));
        let j = p.clone().jitter(0.5);
        for n in 1..50 {
            let d = j.delay(n);
            assert!(d <= p.delay(n) && d >= p.delay(n) / 2, "{d:?}");
        }
    }

    #[test]
    fn invalid_policies_are_typed_errors() {
        let bad = [
            (
                "retry.initial_delay",
                RetryPolicy::default().initial_delay(Duration::ZERO),
            ),
            ("retry.multiplier", RetryPolicy::default().multiplier(0.9)),
            (
                "retry.multiplier",
                RetryPolicy::default().multiplier(f64::NAN),
            ),
            (
                "retry.multiplier",
                RetryPolicy::default().multiplier(f64::INFINITY),
            ),
            (
                "retry.max_delay",
                RetryPolicy::default().max_delay(Duration::from_millis(1)),
            ),
            ("retry.jitter", RetryPolicy::default().jitter(1.5)),
            ("retry.jitter", RetryPolicy::default().jitter(-0.1)),
            (
                "retry.max_attempts",
                RetryPolicy::default().max_attempts(Some(0)),
            ),
        ];
        for (name, p) in bad {
            match p.validate() {
                Err(LockError::InvalidOptions { option, .. }) => assert_eq!(option, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn ttl_bounds() {
        let max = Duration::from_secs(300);
        assert!(validate_ttl(Duration::ZERO, max).is_err());
        assert!(validate_ttl(Duration::from_micros(999), max).is_err());
        assert!(validate_ttl(Duration::from_secs(301), max).is_err());
        assert!(validate_ttl(Duration::from_secs(300), max).is_ok());
        assert!(validate_ttl(Duration::MAX, Duration::MAX).is_err());
        assert!(validate_ttl(TTL_LIMIT, Duration::MAX).is_ok());
    }
}
