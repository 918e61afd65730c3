//! A real server's several checks folded into one result per round.
//!
//! A block with several `check` lines gives each of its reals several probes (each shared,
//! as any probe, with the reals whose check is the same). All of them run on the real's own
//! grid; the real's result is decided once each of its checks has reported since the last
//! result (a round): it passes when every one passed, and fails with the reason and detail of
//! the lowest-numbered check that failed, which the detail names (`check=N`). So `fall` and
//! `rise` count rounds, as they count checks of a real with one check line; a check deferred
//! by a local error only delays the round.

use crate::plugins::{Detail, Reason, Verdict};

/// No round: the real server has one check (the entry of a probe's real that says so).
pub(crate) const NO_ROUND: u32 = u32::MAX;

/// One real server's round in progress: fixed size, no heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Round {
    /// One bit per check of the real (bit k: check k + 1).
    all: u32,
    /// The checks that reported in this round.
    seen: u32,
    /// The lowest-numbered check that failed in this round, with its reason and detail.
    failed: Option<(u8, Reason, Detail)>,
    /// The longest check of the round, in µs (they run side by side).
    latency_us: u64,
}

impl Round {
    /// A round of `checks` checks (2 to 32), none reported yet.
    pub(crate) fn new(checks: usize) -> Round {
        debug_assert!((2..=32).contains(&checks), "{checks} checks");
        Round {
            all: if checks >= 32 {
                u32::MAX
            } else {
                (1u32 << checks) - 1
            },
            seen: 0,
            failed: None,
            latency_us: 0,
        }
    }

    /// Check `n` (1-based) ended with `v` after `latency_us`. When that completes the round,
    /// the real's result and the round's latency; the next round then starts empty.
    pub(crate) fn add(&mut self, n: u8, v: Verdict, latency_us: u64) -> Option<(Verdict, u64)> {
        debug_assert!(n >= 1 && u32::from(n) <= 32);
        self.seen |= 1u32 << (n - 1);
        self.latency_us = self.latency_us.max(latency_us);
        if let Verdict::Fail(r, d) = v {
            if self.failed.is_none_or(|(k, _, _)| n < k) {
                self.failed = Some((n, r, d));
            }
        }
        if self.seen & self.all != self.all {
            return None;
        }
        let v = match self.failed {
            Some((k, r, d)) => Verdict::Fail(r, d.of_check(k)),
            None => Verdict::Pass,
        };
        let latency = self.latency_us;
        *self = Round {
            all: self.all,
            seen: 0,
            failed: None,
            latency_us: 0,
        };
        Some((v, latency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(r: Reason, text: &str) -> Verdict {
        Verdict::fail_with(r, text.as_bytes())
    }

    #[test]
    fn a_round_passes_when_every_check_passed() {
        let mut r = Round::new(3);
        assert_eq!(r.add(2, Verdict::Pass, 500), None);
        assert_eq!(r.add(1, Verdict::Pass, 900), None);
        // A check that reports twice before the others still counts once.
        assert_eq!(r.add(2, Verdict::Pass, 100), None);
        assert_eq!(r.add(3, Verdict::Pass, 300), Some((Verdict::Pass, 900)));
        // The next round starts empty.
        assert_eq!(r.add(3, Verdict::Pass, 300), None);
    }

    #[test]
    fn a_round_fails_with_the_lowest_numbered_failing_check() {
        let mut r = Round::new(3);
        assert_eq!(r.add(3, fail(Reason::HttpStatus, "503"), 10), None);
        assert_eq!(r.add(1, Verdict::Pass, 20), None);
        // A later pass of a failed check does not undo its failure within the round.
        assert_eq!(r.add(3, Verdict::Pass, 5), None);
        let (v, lat) = r.add(2, fail(Reason::ConnectRefused, "x"), 30).unwrap();
        assert_eq!(lat, 30);
        match v {
            Verdict::Fail(reason, d) => {
                assert_eq!(reason, Reason::ConnectRefused);
                assert_eq!(d.as_str(), "x");
                assert_eq!(d.check(), 2);
            }
            Verdict::Pass => panic!("a failing check passed the round"),
        }
        // The next round knows nothing of the last one's failures.
        for n in 1..=3 {
            let done = r.add(n, Verdict::Pass, 1);
            assert_eq!(done, (n == 3).then_some((Verdict::Pass, 1)));
        }
    }

    #[test]
    fn thirty_two_checks_make_a_round() {
        let mut r = Round::new(32);
        for n in 1..32 {
            assert_eq!(r.add(n, Verdict::Pass, 1), None);
        }
        assert_eq!(r.add(32, Verdict::Pass, 1), Some((Verdict::Pass, 1)));
    }
}
