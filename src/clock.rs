//! Time as the daemon sees it: microseconds on the monotonic clock since the daemon started.
//!
//! Only the event loop reads the clock; everything else takes `now: Time` as an argument, so
//! tests can drive any module with made-up times. Wall-clock jumps never reach this clock.

use std::time::{Duration, Instant};

/// A point on the daemon's monotonic time line, in microseconds since [`Clock::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Time(pub u64);

impl Time {
    /// The start of the time line.
    pub const ZERO: Time = Time(0);

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }

    /// `self + us` microseconds, saturating.
    pub fn add_micros(self, us: u64) -> Time {
        Time(self.0.saturating_add(us))
    }

    /// Microseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn micros_since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.micros_since(earlier))
    }
}

/// Converts a duration to whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

/// The monotonic clock (`CLOCK_MONOTONIC` through [`Instant`]).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock whose [`Time::ZERO`] is now.
    pub fn new() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Time {
        Time(micros(self.origin.elapsed()))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
