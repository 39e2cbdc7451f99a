//! How long the fence counter of a lock name is kept: [`FenceCounterTtl`], set with
//! [`RedisBackendBuilder::fence_counter_ttl`](crate::RedisBackendBuilder::fence_counter_ttl).

use std::time::Duration;

use crate::error::RedisBackendError;

/// Longest expiry sent to Redis, in milliseconds (100 years of 365 days); longer ones are
/// capped, and the scripts refuse anything above it.
pub(crate) const MAX_PX_MS: u64 = 100 * 365 * 86_400 * 1000;

/// How long the fence counter of a lock name (`…:fence`, one per name, shared by every kind of
/// lease under it) is kept: after each acquire or renewal of a lease of ttl `ttl`, for at least
/// `max(multiplier × ttl, floor)`. A lease never shortens what another one asked for, and a
/// counter that is ahead of the server clock is kept at least until the clock has passed it.
///
/// Default: [`FenceCounterTtl::DEFAULT`], `max(2 × ttl, 60 s)`.
///
/// # What the counter is for, and why it may expire
///
/// A new fence is `max(server TIME in µs, counter + 1)`. While the server clock does not step
/// back, `TIME` alone is already larger than every fence handed out before, so the counter only
/// matters when the clock steps back (an NTP step, a failover to a server whose clock is
/// behind): then new fences are `counter + 1`, and the scripts keep the counter until `TIME`
/// has caught up with it. After it expires, fences fall back to `TIME`, still strictly
/// increasing unless the clock steps back *further than the counter's lifetime* after it
/// expired.
///
/// Each renewal refreshes the counter, so it outlives every live lease by at least
/// `(multiplier - 1) × ttl` (and the floor): a holder that still trusts its lease never sees a
/// later holder get a smaller fence, whatever the clock does. A name that is not used any more
/// costs its counter (about 160 bytes of server memory, `MEMORY USAGE` 72 bytes) for that long
/// and then nothing: at 1,000 new names per second and the default 30 s ttl, about 60,000
/// counters (≈ 10 MB) at any time, where a day's lifetime would keep 86 million (≈ 14 GB).
///
/// A longer lifetime protects against larger backward clock steps after a name went idle (a
/// stale holder that was paused for longer than the lifetime *and* a clock that stepped back by
/// more than it), at the price of memory per distinct name.
///
/// ```
/// use std::time::Duration;
/// use locks_redis::FenceCounterTtl;
///
/// let ttl = FenceCounterTtl::new(3, Duration::from_secs(300));
/// assert_eq!((ttl.multiplier(), ttl.floor()), (3, Duration::from_secs(300)));
/// assert_eq!(FenceCounterTtl::default(), FenceCounterTtl::DEFAULT);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FenceCounterTtl {
    multiplier: u32,
    floor: Duration,
}

impl FenceCounterTtl {
    /// `max(2 × ttl, 60 s)`: the counter outlives every lease by at least its own ttl, and a
    /// released name costs memory for about a minute (see the type's docs).
    pub const DEFAULT: FenceCounterTtl = FenceCounterTtl {
        multiplier: 2,
        floor: Duration::from_secs(60),
    };

    /// The largest multiplier [`connect`](crate::RedisBackendBuilder::connect) accepts.
    pub const MAX_MULTIPLIER: u32 = 1_000;

    /// The longest floor [`connect`](crate::RedisBackendBuilder::connect) accepts (365 days).
    pub const MAX_FLOOR: Duration = Duration::from_secs(365 * 86_400);

    /// `max(multiplier × ttl, floor)`. Checked by
    /// [`connect`](crate::RedisBackendBuilder::connect): `multiplier` in
    /// `1..=`[`MAX_MULTIPLIER`](Self::MAX_MULTIPLIER) (below 1 the counter could expire under
    /// a live lease), `floor` from 1 ms to [`MAX_FLOOR`](Self::MAX_FLOOR).
    pub const fn new(multiplier: u32, floor: Duration) -> Self {
        FenceCounterTtl { multiplier, floor }
    }

    /// How many ttls the counter outlives the last acquire or renewal by.
    pub const fn multiplier(self) -> u32 {
        self.multiplier
    }

    /// The shortest time the counter is kept after an acquire or renewal.
    pub const fn floor(self) -> Duration {
        self.floor
    }

    /// Both values within their bounds, else [`RedisBackendError::InvalidOption`].
    pub(crate) fn validate(self) -> Result<(), RedisBackendError> {
        let reason = if self.multiplier == 0 {
            "the multiplier must be at least 1: the counter must outlive the lease".to_owned()
        } else if self.multiplier > Self::MAX_MULTIPLIER {
            format!(
                "the multiplier {} is above {}",
                self.multiplier,
                Self::MAX_MULTIPLIER
            )
        } else if self.floor < Duration::from_millis(1) {
            "the floor must be at least 1 ms".to_owned()
        } else if self.floor > Self::MAX_FLOOR {
            format!("the floor {:?} is above 365 days", self.floor)
        } else {
            return Ok(());
        };
        Err(RedisBackendError::InvalidOption {
            option: "fence_counter_ttl",
            reason,
        })
    }

    /// The counter's expiry in ms for a lease of `ttl_ms`: `max(multiplier × ttl, floor)`,
    /// within `1..=MAX_PX_MS`.
    pub(crate) fn px(self, ttl_ms: u64) -> u64 {
        let floor = u64::try_from(self.floor.as_millis()).unwrap_or(MAX_PX_MS);
        ttl_ms
            .saturating_mul(u64::from(self.multiplier))
            .max(floor)
            .clamp(1, MAX_PX_MS)
    }
}

impl Default for FenceCounterTtl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_expiry_is_the_larger_of_multiplier_times_ttl_and_the_floor() {
        let d = FenceCounterTtl::DEFAULT;
        assert_eq!(d.px(300), 60_000);
        assert_eq!(d.px(30_000), 60_000);
        assert_eq!(d.px(45_000), 90_000);
        assert_eq!(d.px(u64::MAX), MAX_PX_MS);
        let one = FenceCounterTtl::new(1, Duration::from_millis(1));
        assert_eq!(one.px(1), 1);
        assert_eq!(one.px(700), 700);
        let long =
            FenceCounterTtl::new(FenceCounterTtl::MAX_MULTIPLIER, FenceCounterTtl::MAX_FLOOR);
        assert_eq!(long.px(1), 365 * 86_400_000);
        assert_eq!(long.px(MAX_PX_MS), MAX_PX_MS);
    }

    #[test]
    fn zero_and_absurd_values_are_refused() {
        let refused = |ttl: FenceCounterTtl| {
            matches!(
                ttl.validate(),
                Err(RedisBackendError::InvalidOption {
                    option: "fence_counter_ttl",
                    ..
                })
            )
        };
        let minute = Duration::from_secs(60);
        assert!(refused(FenceCounterTtl::new(0, minute)));
        assert!(refused(FenceCounterTtl::new(1_001, minute)));
        assert!(refused(FenceCounterTtl::new(u32::MAX, minute)));
        assert!(refused(FenceCounterTtl::new(2, Duration::ZERO)));
        assert!(refused(FenceCounterTtl::new(2, Duration::from_micros(999))));
        assert!(refused(FenceCounterTtl::new(
            2,
            FenceCounterTtl::MAX_FLOOR + Duration::from_millis(1)
        )));
        assert!(refused(FenceCounterTtl::new(2, Duration::MAX)));
        for ok in [
            FenceCounterTtl::DEFAULT,
            FenceCounterTtl::new(1, Duration::from_millis(1)),
            FenceCounterTtl::new(FenceCounterTtl::MAX_MULTIPLIER, FenceCounterTtl::MAX_FLOOR),
        ] {
            assert!(ok.validate().is_ok(), "{ok:?}");
        }
    }
}
