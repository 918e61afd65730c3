//! Time as the daemon sees it: microseconds on the monotonic clock since the daemon started.
//!
//! Only the event loop reads the clock; everything else takes `now: Time` as an argument, so
//! tests can drive any module with made-up times. Wall-clock jumps never reach this clock.
//!
//! A [`Clock`] is either the system's monotonic clock ([`Clock::new`], what the daemon runs
//! on) or a manual one ([`Clock::manual`]) that stands still until a test sets or advances
//! it: the loop (given one in its `Options::clock`) and the phase tests
//! (`monitor/phase/steps.rs`) read the same type. The real clock pays one well-predicted
//! branch for this (`benches/timer.rs`, `clock_now`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// The monotonic clock: `CLOCK_MONOTONIC`, the clock [`std::time::Instant`] reads on Linux,
/// read with `clock_gettime(2)` and kept in whole nanoseconds (the loop reads it twice a turn;
/// `Instant` and `Duration` would add checked arithmetic and a 128-bit conversion each time).
///
/// Or, made by [`Clock::manual`], a clock that reads what a test set. Copies of a manual
/// clock share its time, so a test keeps one and hands copies to what it drives (a daemon
/// copies its clock to its timer and to the reload's helper thread). A manual clock places
/// its times on `CLOCK_MONOTONIC` from its creation, as a real one does, so a timer set
/// from it ([`Clock::monotonic_ns_at`]) is well-formed; it fires at that real time, which a
/// test driving a loop with short waits does not mind.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// `CLOCK_MONOTONIC` in ns at [`Time::ZERO`].
    origin_ns: u64,
    /// The same in µs, for protocols that carry the system's own monotonic time (systemd's
    /// `MONOTONIC_USEC`).
    origin_monotonic_us: u64,
    /// A manual clock's time in µs (`None`: the real clock). A `'static` reference keeps
    /// `Clock` `Copy` and `Send` as the real one always was: each manual clock keeps 8 bytes
    /// for the life of the process (tests make a handful).
    manual: Option<&'static AtomicU64>,
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec.max(0) as u64)
}

impl Clock {
    /// A clock whose [`Time::ZERO`] is now.
    pub fn new() -> Clock {
        let origin_ns = monotonic_ns();
        Clock {
            origin_ns,
            origin_monotonic_us: origin_ns / 1000,
            manual: None,
        }
    }

    /// A manual clock reading `at` until it is [set](Clock::set) or
    /// [advanced](Clock::advance). For tests.
    pub fn manual(at: Time) -> Clock {
        Clock {
            manual: Some(Box::leak(Box::new(AtomicU64::new(at.0)))),
            ..Clock::new()
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Sets a manual clock (and its copies) to `t`; earlier than it read is allowed, for
    /// tests of what a clock must never do.
    ///
    /// # Panics
    /// On the real clock, which cannot be set.
    pub fn set(&self, t: Time) {
        self.manual
            .expect("Clock::set on the real clock")
            .store(t.0, Ordering::Relaxed);
    }

    /// Moves a manual clock (and its copies) on by `us` microseconds; returns the new time.
    ///
    /// # Panics
    /// On the real clock.
    pub fn advance(&self, us: u64) -> Time {
        let m = self.manual.expect("Clock::advance on the real clock");
        Time(m.fetch_add(us, Ordering::Relaxed).saturating_add(us))
    }

    /// `CLOCK_MONOTONIC` in µs at [`Time::ZERO`] of this clock: `origin + t.0` is the
    /// system's monotonic time at `t`.
    pub fn monotonic_origin_us(&self) -> u64 {
        self.origin_monotonic_us
    }

    /// `CLOCK_MONOTONIC` in ns at `t`: once the system's clock reads this, [`Clock::now`]
    /// is `t` or later (a timer set to it never wakes the loop early).
    pub fn monotonic_ns_at(&self, t: Time) -> u64 {
        self.origin_ns.saturating_add(t.0.saturating_mul(1000))
    }

    /// The current time: whole microseconds since [`Time::ZERO`] (a manual clock: the time
    /// last set).
    #[inline]
    pub fn now(&self) -> Time {
        if let Some(m) = self.manual {
            return Time(m.load(Ordering::Relaxed));
        }
        Time(monotonic_ns().saturating_sub(self.origin_ns) / 1000)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The wall clock in µs since the Unix epoch (for timestamps only; decisions use the
/// monotonic clock).
pub fn wall_now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec.max(0) as u64 * 1_000_000 + ts.tv_nsec.max(0) as u64 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_origin_places_times_on_clock_monotonic() {
        let c = Clock::new();
        std::thread::sleep(Duration::from_millis(5));
        let t = c.now();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        let placed = c.monotonic_origin_us() + t.0;
        // Read after `t`, so at or after it but for the moment between the two reads of
        // Clock::new, and close (bounds generous for a busy machine).
        assert!(placed <= mono + 10_000, "{placed} is after {mono}");
        assert!(mono - placed.min(mono) < 1_000_000, "{mono} vs {placed}");
        assert!(!c.is_manual());
    }

    /// A manual clock stands still while real time passes, reads what it was set to, and
    /// its copies share it (including across threads, as the reload's helper reads it).
    #[test]
    fn a_manual_clock_reads_what_it_was_set_to_in_every_copy() {
        let c = Clock::manual(Time(7));
        let copy = c;
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.now(), Time(7));
        assert!(c.is_manual());
        c.set(Time(1_000_000));
        assert_eq!(copy.now(), Time(1_000_000));
        assert_eq!(copy.advance(250), Time(1_000_250));
        assert_eq!(c.now(), Time(1_000_250));
        let seen = std::thread::spawn(move || copy.now()).join().unwrap();
        assert_eq!(seen, Time(1_000_250));
        // Placed on CLOCK_MONOTONIC from its creation, like a real clock.
        assert_eq!(
            c.monotonic_ns_at(Time(5)),
            c.monotonic_origin_us() * 1000 + c.origin_ns % 1000 + 5000
        );
        // Another manual clock has its own time.
        let other = Clock::manual(Time::ZERO);
        assert_eq!(other.now(), Time::ZERO);
        assert_eq!(c.now(), Time(1_000_250));
    }

    #[test]
    #[should_panic(expected = "real clock")]
    fn the_real_clock_cannot_be_set() {
        Clock::new().set(Time(1));
    }
}
