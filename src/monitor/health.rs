//! The decision: when a real server counts as UP or DOWN (lvsmon(8), DECISIONS).
//!
//! Each real server behind each virtual service has a [`Health`]. Results come in one at a
//! time; [`Health::record`] returns a [`Change`] only on the result that crosses a threshold,
//! so events are edge-triggered by construction: a state that holds produces nothing.
//!
//! - From `Unknown` (just started), the first result decides at once.
//! - `Up` → `Down` after `fall` consecutive failures, or `fall` failures inside the sliding
//!   `within` window, or when no check has passed for `down-after`.
//! - `Down` → `Up` after `rise` consecutive successes.
//!
//! The `within` window keeps the times of the last `fall` failures in a ring that the caller
//! sizes at startup (one slot per unit of `fall`), so nothing here allocates.

use crate::clock::Time;

/// What lvsmon believes about a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No check has finished since start: the table keeps what it had.
    Unknown,
    /// Serving.
    Up,
    /// Failing its checks.
    Down,
}

impl State {
    /// `unknown`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// A threshold crossing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing crossed.
    None,
    /// Became UP.
    Up,
    /// Became DOWN.
    Down,
}

/// The thresholds in the loop's units (microseconds; 0 = unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rules {
    /// Failures that make DOWN (`fall`), ≥ 1.
    pub fall: u32,
    /// Successes that make UP (`rise`), ≥ 1.
    pub rise: u32,
    /// `within` window in µs, 0 for consecutive counting.
    pub within_us: u64,
    /// `down-after` in µs, 0 when unset.
    pub down_after_us: u64,
}

/// `Health::last_ok` before any check passed (8 bytes a real where an `Option` takes 16).
const NEVER: Time = Time(u64::MAX);

/// The counters behind one real server's decision.
#[derive(Debug, Clone, Copy)]
pub struct Health {
    /// Current state.
    pub state: State,
    /// When the state last changed (or the daemon started).
    pub since: Time,
    /// Consecutive failures (saturating).
    pub fails: u32,
    /// Consecutive successes (saturating).
    pub oks: u32,
    /// Last passed check, or [`NEVER`] (see [`Health::last_ok`]).
    last_ok: Time,
    /// Next slot to overwrite in the `within` ring.
    ring_pos: u32,
}

impl Health {
    /// A real server nothing is known about yet, at `now`.
    pub fn new(now: Time) -> Health {
        Health {
            state: State::Unknown,
            since: now,
            fails: 0,
            oks: 0,
            last_ok: NEVER,
            ring_pos: 0,
        }
    }

    /// The last passed check, if any.
    pub fn last_ok(&self) -> Option<Time> {
        (self.last_ok != NEVER).then_some(self.last_ok)
    }

    /// Forgets where the `within` ring was (its slots were cleared or resized).
    pub fn restart_window(&mut self) {
        self.ring_pos = 0;
    }

    /// True when checks should come at `retry-interval`: DOWN, or failing.
    pub fn failing(&self) -> bool {
        self.state == State::Down || self.fails > 0
    }

    /// Records one result. `ring` is this server's window ring (`rules.fall` slots, or empty
    /// when `within` is unset).
    pub fn record(&mut self, pass: bool, now: Time, rules: &Rules, ring: &mut [u64]) -> Change {
        if pass {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            self.last_ok = now;
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if !ring.is_empty() {
                ring[self.ring_pos as usize % ring.len()] = now.0.saturating_add(1);
                self.ring_pos = (self.ring_pos + 1) % ring.len() as u32;
            }
        }
        let next = match self.state {
            State::Unknown => {
                if pass {
                    State::Up
                } else {
                    State::Down
                }
            }
            State::Up if !pass && self.should_fall(now, rules, ring) => State::Down,
            State::Down if pass && self.oks >= rules.rise => State::Up,
            s => s,
        };
        if next == self.state {
            return Change::None;
        }
        self.state = next;
        self.since = now;
        if next == State::Up {
            // A fresh start for the window: failures before this UP don't count again.
            ring.iter_mut().for_each(|t| *t = 0);
            Change::Up
        } else {
            Change::Down
        }
    }

    fn should_fall(&self, now: Time, rules: &Rules, ring: &[u64]) -> bool {
        if rules.down_after_us > 0 {
            // Without any success since start, count from the state's start.
            let from = self.last_ok().unwrap_or(self.since);
            if now.micros_since(from) >= rules.down_after_us {
                return true;
            }
        }
        if rules.within_us > 0 && !ring.is_empty() {
            // Ring entries hold time+1 (0 = empty slot).
            let recent = ring
                .iter()
                .filter(|&&t| t != 0 && now.0 + 1 - t.min(now.0 + 1) < rules.within_us)
                .count();
            recent as u32 >= rules.fall
        } else {
            self.fails >= rules.fall
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn rules(fall: u32, rise: u32) -> Rules {
        Rules {
            fall,
            rise,
            within_us: 0,
            down_after_us: 0,
        }
    }

    /// Feeds `results` (`+` pass, `-` fail) one per second and returns the changes as a string
    /// (`U`, `D`, `.`).
    fn run(h: &mut Health, r: &Rules, ring: &mut [u64], results: &str, t0: u64) -> String {
        results
            .chars()
            .enumerate()
            .map(
                |(i, c)| match h.record(c == '+', Time(t0 + i as u64 * S), r, ring) {
                    Change::None => '.',
                    Change::Up => 'U',
                    Change::Down => 'D',
                },
            )
            .collect()
    }

    #[test]
    fn first_result_decides_at_once() {
        let r = rules(3, 2);
        let mut h = Health::new(Time(0));
        assert_eq!(run(&mut h, &r, &mut [], "+", 0), "U");
        let mut h = Health::new(Time(0));
        assert_eq!(run(&mut h, &r, &mut [], "-", 0), "D");
    }

    #[test]
    fn fall_and_rise_are_consecutive_and_edge_triggered() {
        let r = rules(3, 2);
        let mut h = Health::new(Time(0));
        assert_eq!(
            run(&mut h, &r, &mut [], "+--+---------++--++", 0),
            "U.....D.......U...."
        );
        // The state held through the long run of failures: one event only.
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn fall_within_a_sliding_window() {
        // 3 failures within 10 s.
        let r = Rules {
            fall: 3,
            rise: 1,
            within_us: 10 * S,
            down_after_us: 0,
        };
        let mut ring = [0u64; 3];
        let mut h = Health::new(Time(0));
        // Failures at 1, 3, 5 s (interleaved with passes): DOWN at the third.
        assert_eq!(run(&mut h, &r, &mut ring, "+-+-+-", 0), "U....D");
        // Spread-out failures never make three in 10 s.
        let mut ring = [0u64; 3];
        let mut h = Health::new(Time(0));
        assert_eq!(
            run(&mut h, &r, &mut ring, "+-+++++-+++++-+++++-", 0),
            "U..................."
        );
    }

    #[test]
    fn down_after_without_success() {
        let r = Rules {
            fall: 100,
            rise: 1,
            within_us: 0,
            down_after_us: 5 * S,
        };
        let mut h = Health::new(Time(0));
        // Pass at 0, failures from 1 s: at 5 s the last success is 5 s old.
        assert_eq!(run(&mut h, &r, &mut [], "+------", 0), "U....D.");
    }

    #[test]
    fn counters_saturate() {
        let r = rules(3, 2);
        let mut h = Health::new(Time(0));
        h.fails = u32::MAX;
        h.state = State::Down;
        h.record(false, Time(1), &r, &mut []);
        assert_eq!(h.fails, u32::MAX);
    }
}

#[cfg(test)]
mod proptests {
    //! Properties of [`Health::record`] over any sequence of results (lvsmon(8), DECISIONS), checked
    //! against the results themselves rather than against a second implementation.

    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000;

    /// Fed results: pass or fail, and its time in µs.
    #[derive(Debug, Clone)]
    struct Case {
        rules: Rules,
        start: u64,
        results: Vec<(bool, u64)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            1u32..=6,
            1u32..=6,
            prop::option::of(1u64..=60),
            prop::option::of(1u64..=120),
            (0u64..=4_000).prop_map(|k| k * S / 4),
            // Steps of 0 to 10 s: mostly whole quarter seconds, so that equal times and
            // results exactly at a window's or `down-after`'s edge are common; some in µs.
            prop::collection::vec(
                (
                    any::<bool>(),
                    prop_oneof![3 => (0u64..=40).prop_map(|k| k * S / 4), 1 => 0u64..=10 * S],
                ),
                1..80,
            ),
        )
            .prop_map(|(fall, rise, within, down_after, start, steps)| {
                let mut t = start;
                let results = steps
                    .into_iter()
                    .map(|(pass, step)| {
                        t += step;
                        (pass, t)
                    })
                    .collect();
                Case {
                    rules: Rules {
                        fall,
                        rise,
                        within_us: within.map_or(0, |s| s * S),
                        down_after_us: down_after.map_or(0, |s| s * S),
                    },
                    start,
                    results,
                }
            })
    }

    /// Feeds every result (ring sized as the event loop sizes it) and returns the changes.
    fn run(c: &Case) -> Vec<Change> {
        let mut ring = vec![
            0u64;
            if c.rules.within_us > 0 {
                c.rules.fall as usize
            } else {
                0
            }
        ];
        let mut h = Health::new(Time(c.start));
        c.results
            .iter()
            .map(|&(pass, t)| h.record(pass, Time(t), &c.rules, &mut ring))
            .collect()
    }

    /// Results of the same kind (`pass`) ending at index `i`, `i` included.
    fn trailing(results: &[(bool, u64)], i: usize, pass: bool) -> usize {
        results[..=i]
            .iter()
            .rev()
            .take_while(|r| r.0 == pass)
            .count()
    }

    /// Failures at or before `i`, after index `after` (exclusive; `None`: from the start),
    /// less than `within_us` before result `i`.
    fn fails_in_window(c: &Case, i: usize, after: Option<usize>) -> usize {
        let now = c.results[i].1;
        let from = after.map_or(0, |a| a + 1);
        c.results[from..=i]
            .iter()
            .filter(|&&(pass, t)| !pass && now - t < c.rules.within_us)
            .count()
    }

    /// Time since the last pass before `i`, if there was one.
    fn since_pass(c: &Case, i: usize) -> Option<u64> {
        let now = c.results[i].1;
        c.results[..i].iter().rev().find(|r| r.0).map(|r| now - r.1)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// (a) changes alternate; (d) the first result decides at once.
        #[test]
        fn first_decides_then_changes_alternate(c in case()) {
            let changes = run(&c);
            let want = if c.results[0].0 { Change::Up } else { Change::Down };
            prop_assert_eq!(changes[0], want, "first result");
            let mut last = changes[0];
            for (i, &ch) in changes.iter().enumerate().skip(1) {
                if ch != Change::None {
                    prop_assert_ne!(ch, last, "two {:?} in a row at result {}", ch, i);
                    last = ch;
                }
            }
        }

        /// (b) a DOWN (after the first result) only on a failure that ends `fall` consecutive
        /// failures (without `within`), or has `fall` failures inside the `within` window
        /// (counting failures since the last UP only), or comes `down-after` or more after the
        /// last pass; (c) an UP (after a DOWN) only on the pass that ends exactly `rise`
        /// consecutive passes.
        #[test]
        fn changes_only_at_thresholds(c in case()) {
            let changes = run(&c);
            let r = c.rules;
            let mut last_up = (changes[0] == Change::Up).then_some(0);
            for (i, &ch) in changes.iter().enumerate().skip(1) {
                match ch {
                    Change::Down => {
                        prop_assert!(!c.results[i].0, "DOWN on a pass at {}", i);
                        let by_count = if r.within_us > 0 {
                            fails_in_window(&c, i, last_up) >= r.fall as usize
                        } else {
                            trailing(&c.results, i, false) >= r.fall as usize
                        };
                        let silent = r.down_after_us > 0
                            && since_pass(&c, i).is_some_and(|d| d >= r.down_after_us);
                        prop_assert!(by_count || silent, "DOWN at {} without a reason", i);
                    }
                    Change::Up => {
                        prop_assert!(c.results[i].0, "UP on a failure at {}", i);
                        prop_assert_eq!(
                            trailing(&c.results, i, true),
                            r.rise as usize,
                            "UP at {} after another number of passes than rise", i
                        );
                        last_up = Some(i);
                    }
                    Change::None => {}
                }
            }
        }

        /// The converse: while UP, a failure that meets the rule in force (consecutive
        /// failures, or failures since the last UP inside the window, or `down-after`) makes
        /// DOWN; while DOWN, the `rise`-th consecutive pass makes UP.
        #[test]
        fn thresholds_always_change(c in case()) {
            let changes = run(&c);
            let r = c.rules;
            let mut state = changes[0];
            let mut last_up = (state == Change::Up).then_some(0);
            for (i, &ch) in changes.iter().enumerate().skip(1) {
                let (pass, _) = c.results[i];
                if state == Change::Up && !pass {
                    let by_count = if r.within_us > 0 {
                        fails_in_window(&c, i, last_up) >= r.fall as usize
                    } else {
                        trailing(&c.results, i, false) >= r.fall as usize
                    };
                    let silent = r.down_after_us > 0
                        && since_pass(&c, i).is_some_and(|d| d >= r.down_after_us);
                    if by_count || silent {
                        prop_assert_eq!(ch, Change::Down, "no DOWN at {}", i);
                    }
                }
                if state == Change::Down && pass && trailing(&c.results, i, true) == r.rise as usize {
                    prop_assert_eq!(ch, Change::Up, "no UP at {}", i);
                }
                if ch != Change::None {
                    state = ch;
                    if ch == Change::Up {
                        last_up = Some(i);
                    }
                }
            }
        }
    }
}
