//! How a script moves the store's time: [`ModelClock`], implemented by the memory backend's
//! [`ManualClock`] (exact) and by [`RealTime`] (a store with its own clock).

use std::time::Duration;

use locks_memory::ManualClock;

/// How [`check`](super::check) moves the store's time for [`Op::Advance`](super::Op::Advance),
/// and how far the store's clock may run ahead of the model's.
pub trait ModelClock: Send + Sync {
    /// Move the store's clock forward by `by`. `Err`: this clock cannot be moved.
    fn advance(&self, by: Duration) -> Result<(), String>;

    /// How much more time may have passed in the store than the model knows of: remaining
    /// times are accepted in `expected - tolerance ..= expected`. Zero for an exact clock.
    fn tolerance(&self) -> Duration;
}

/// The memory backend's manual clock: exact, so the check is fully deterministic.
impl ModelClock for ManualClock {
    fn advance(&self, by: Duration) -> Result<(), String> {
        ManualClock::advance(self, by);
        Ok(())
    }

    fn tolerance(&self) -> Duration {
        Duration::ZERO
    }
}

/// The clock of a store that keeps its own time (Redis), which a test cannot move: use it with
/// [`real_time_ops`](super::real_time_ops()) (no [`Op::Advance`](super::Op::Advance); ttls that
/// outlast a case). An `Advance` step is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealTime {
    tolerance: Duration,
}

impl RealTime {
    /// A real-time clock whose remaining times may lag the model's by up to `tolerance` (the
    /// longest a case may take, with margin).
    pub fn new(tolerance: Duration) -> Self {
        RealTime { tolerance }
    }
}

impl Default for RealTime {
    /// A tolerance of 5 s: far more than a case takes, far less than
    /// [`REAL_TIME_TTL_MS`](super::REAL_TIME_TTL_MS)'s shortest ttl.
    fn default() -> Self {
        RealTime::new(Duration::from_secs(5))
    }
}

impl ModelClock for RealTime {
    fn advance(&self, by: Duration) -> Result<(), String> {
        Err(format!(
            "advance({}ms): a real-time store's clock cannot be moved; generate scripts with \
             model::real_time_ops",
            by.as_millis()
        ))
    }

    fn tolerance(&self) -> Duration {
        self.tolerance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_exactly_and_real_time_refuses() {
        use locks_memory::Clock;
        let clock = ManualClock::new();
        assert!(ModelClock::advance(&clock, Duration::from_millis(250)).is_ok());
        assert_eq!(clock.now(), Duration::from_millis(250));
        assert_eq!(ModelClock::tolerance(&clock), Duration::ZERO);
        let real = RealTime::default();
        assert_eq!(real.tolerance(), Duration::from_secs(5));
        assert!(real.advance(Duration::from_millis(1)).is_err());
    }
}
