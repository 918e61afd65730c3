//! A hashed timing wheel: one pending deadline per monitor, O(1) to set, move or cancel, and
//! no allocation after [`Wheel::new`].
//!
//! Time is cut into ticks of [`TICK_US`] microseconds and the wheel has a power-of-two number
//! of slots; a deadline at tick `t` sits in slot `t % slots`, in an intrusive doubly linked
//! list threaded through per-entry `next`/`prev` arrays (entries are monitor indices, so the
//! lists need no nodes of their own). Deadlines further away than one turn of the wheel simply
//! wait in their slot for later turns: each entry carries its absolute tick.
//!
//! Invariants:
//! - every tick before `cur` has been processed; an entry whose tick is before `cur` lives in
//!   the `due` list, never in a slot, so setting a deadline in the past makes it fire at the
//!   next [`Wheel::pop_expired`];
//! - bit `s` of `occupied` is set exactly when slot `s` is not empty, so the next expiry is
//!   found by scanning at most `slots / 64` words, never the entries.
//!
//! A deadline fires at its tick or up to one tick later, never before its time.

use crate::clock::Time;

/// Length of one tick in microseconds (1 ms: finer than any timeout, coarse enough that all
/// checks due in the same millisecond start in one pass).
pub const TICK_US: u64 = 1_000;

const NIL: u32 = u32::MAX;
/// `tick` of an entry that is not scheduled.
const OFF: u64 = u64::MAX;

/// One entry's place: its list links and its absolute tick, or `OFF`. The tick also says
/// which list the entry is in: the `due` list when it is before `cur`, else slot
/// `tick % slots`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tick: u64,
    next: u32,
    prev: u32,
}

/// The wheel. Entries are `0..capacity`.
#[derive(Debug)]
pub struct Wheel {
    /// Head entry of each slot's list.
    heads: Box<[u32]>,
    /// One bit per slot: set when the slot's list is not empty.
    occupied: Box<[u64]>,
    /// Per entry its links and tick, together: one cache line touched per entry, not three.
    e: Box<[Entry]>,
    /// Entries whose tick has passed, oldest first: `due_head` .. `due_tail`.
    due_head: u32,
    due_tail: u32,
    /// First tick not yet processed.
    cur: u64,
    mask: u64,
    len: usize,
}

impl Wheel {
    /// A wheel for entries `0..capacity` with `slots` slots (rounded up to a power of two, at
    /// least 64).
    pub fn new(capacity: usize, slots: usize) -> Wheel {
        let slots = slots.max(64).next_power_of_two();
        Wheel {
            heads: vec![NIL; slots].into_boxed_slice(),
            occupied: vec![0; slots / 64].into_boxed_slice(),
            e: vec![
                Entry {
                    tick: OFF,
                    next: NIL,
                    prev: NIL
                };
                capacity
            ]
            .into_boxed_slice(),
            due_head: NIL,
            due_tail: NIL,
            cur: 0,
            mask: slots as u64 - 1,
            len: 0,
        }
    }

    /// A wheel as [`Wheel::new`] whose time starts at `origin` rather than zero (a daemon
    /// that has run for hours builds a new wheel at a reload: it must not walk every tick
    /// since its start).
    pub fn starting_at(capacity: usize, slots: usize, origin: Time) -> Wheel {
        let mut w = Wheel::new(capacity, slots);
        w.cur = origin.0 / TICK_US;
        w
    }

    /// Number of scheduled entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `id` has a deadline.
    pub fn is_scheduled(&self, id: u32) -> bool {
        self.e[id as usize].tick != OFF
    }

    /// The tick at which a deadline at `at` fires: the first tick that starts at or after it.
    fn tick_of(at: Time) -> u64 {
        at.0.div_ceil(TICK_US)
    }

    /// Sets `id`'s deadline to `at`, replacing any earlier one.
    pub fn set(&mut self, id: u32, at: Time) {
        self.cancel(id);
        let i = id as usize;
        let t = Self::tick_of(at);
        self.e[i].tick = t;
        self.len += 1;
        if t < self.cur {
            // Already past: straight to the due list, in order of arrival.
            self.e[i].next = NIL;
            self.e[i].prev = self.due_tail;
            if self.due_tail == NIL {
                self.due_head = id;
            } else {
                self.e[self.due_tail as usize].next = id;
            }
            self.due_tail = id;
            return;
        }
        let s = (t & self.mask) as usize;
        let head = self.heads[s];
        self.e[i].prev = NIL;
        self.e[i].next = head;
        if head != NIL {
            self.e[head as usize].prev = id;
        }
        self.heads[s] = id;
        self.occupied[s / 64] |= 1 << (s % 64);
    }

    /// Removes `id`'s deadline, if any.
    pub fn cancel(&mut self, id: u32) {
        let i = id as usize;
        let t = self.e[i].tick;
        if t == OFF {
            return;
        }
        let (p, n) = (self.e[i].prev, self.e[i].next);
        if n != NIL {
            self.e[n as usize].prev = p;
        }
        if t < self.cur {
            if p == NIL {
                self.due_head = n;
            } else {
                self.e[p as usize].next = n;
            }
            if n == NIL {
                self.due_tail = p;
            }
        } else {
            let s = (t & self.mask) as usize;
            if p == NIL {
                self.heads[s] = n;
                if n == NIL {
                    self.occupied[s / 64] &= !(1 << (s % 64));
                }
            } else {
                self.e[p as usize].next = n;
            }
        }
        self.e[i].tick = OFF;
        self.e[i].next = NIL;
        self.e[i].prev = NIL;
        self.len -= 1;
    }

    /// Moves every entry whose tick has come by `now` to the due list (each slot is visited at
    /// most once per tick), then takes the oldest due entry off the wheel and returns it.
    /// Call until it returns `None`.
    pub fn pop_expired(&mut self, now: Time) -> Option<u32> {
        if self.due_head == NIL {
            self.advance(now);
        }
        let id = self.due_head;
        if id == NIL {
            return None;
        }
        self.cancel(id);
        Some(id)
    }

    /// The entry [`Wheel::pop_expired`] returns next, if it is already on the due list (a
    /// hint: the caller may load its data while it handles the current one).
    pub fn next_due(&self) -> Option<u32> {
        (self.due_head != NIL).then_some(self.due_head)
    }

    /// Processes every tick up to and including the one `now` falls in.
    fn advance(&mut self, now: Time) {
        let now_tick = now.0 / TICK_US;
        while self.cur <= now_tick {
            // Skip empty stretches a word of the bitmap at a time.
            let s = (self.cur & self.mask) as usize;
            if self.occupied[s / 64] >> (s % 64) == 0 {
                let skip = 64 - (s % 64) as u64;
                self.cur = (self.cur + skip).min(now_tick + 1);
                continue;
            }
            let mut e = self.heads[s];
            while e != NIL {
                let n = self.e[e as usize].next;
                let t = self.e[e as usize].tick;
                if t <= self.cur {
                    // In this slot, so `t == cur`: off the slot's list, then on the due list
                    // with its tick kept (before `cur` once this tick is done).
                    self.cancel(e);
                    self.e[e as usize].tick = t;
                    self.len += 1;
                    self.e[e as usize].prev = self.due_tail;
                    if self.due_tail == NIL {
                        self.due_head = e;
                    } else {
                        self.e[self.due_tail as usize].next = e;
                    }
                    self.due_tail = e;
                }
                e = n;
            }
            self.cur += 1;
        }
    }

    /// The earliest time at which [`Wheel::pop_expired`] may return something: `Some(t)` with
    /// `t` at or before the next deadline (never after it), or `None` when nothing is
    /// scheduled. The result may be early by up to a turn when the nearest occupied slot holds
    /// only later turns' entries; the caller then wakes once for nothing.
    pub fn next_expiry(&self) -> Option<Time> {
        if self.len == 0 {
            return None;
        }
        if self.due_head != NIL {
            return Some(Time((self.cur.saturating_sub(1)) * TICK_US));
        }
        let slots = self.heads.len() as u64;
        let start = self.cur & self.mask;
        let mut dist = 0u64;
        while dist < slots {
            let s = ((start + dist) & self.mask) as usize;
            let word = self.occupied[s / 64] >> (s % 64);
            if word != 0 {
                let d = dist + word.trailing_zeros() as u64;
                if d < slots {
                    return Some(Time((self.cur + d) * TICK_US));
                }
                break;
            }
            dist += 64 - (s % 64) as u64;
        }
        // Unreachable while len > 0 and the bitmap is right; stay safe.
        Some(Time(self.cur * TICK_US))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Time {
        Time(n * 1000)
    }

    fn drain(w: &mut Wheel, now: Time) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some(id) = w.pop_expired(now) {
            v.push(id);
        }
        v
    }

    // Tests for setting and expiring.

    #[test]
    fn fires_at_its_time_not_before() {
        let mut w = Wheel::new(4, 64);
        w.set(0, Time(5_500));
        assert_eq!(drain(&mut w, Time(5_499)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, Time(5_999)), Vec::<u32>::new());
        assert_eq!(drain(&mut w, Time(6_000)), vec![0]);
        assert!(w.is_empty());
    }

    #[test]
    fn many_in_one_tick_all_fire_in_one_pass() {
        let mut w = Wheel::new(100, 64);
        for i in 0..100 {
            w.set(i, ms(3));
        }
        let mut got = drain(&mut w, ms(3));
        got.sort();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn past_deadline_fires_next_pop() {
        let mut w = Wheel::new(4, 64);
        assert!(drain(&mut w, ms(100)).is_empty());
        w.set(1, ms(10));
        assert_eq!(drain(&mut w, ms(100)), vec![1]);
    }

    #[test]
    fn beyond_one_turn_waits_for_its_turn() {
        let mut w = Wheel::new(4, 64);
        w.set(2, ms(64 * 3 + 5));
        for t in (0..64 * 3 + 5).step_by(7) {
            assert!(drain(&mut w, ms(t)).is_empty(), "fired early at {t}");
        }
        assert_eq!(drain(&mut w, ms(64 * 3 + 5)), vec![2]);
    }

    #[test]
    fn cancel_and_reset() {
        let mut w = Wheel::new(4, 64);
        w.set(0, ms(5));
        w.set(1, ms(5));
        w.cancel(0);
        w.set(1, ms(9));
        assert_eq!(w.len(), 1);
        assert!(drain(&mut w, ms(8)).is_empty());
        assert_eq!(drain(&mut w, ms(9)), vec![1]);
        w.cancel(1);
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn cancel_in_due_list() {
        let mut w = Wheel::new(4, 64);
        w.set(0, ms(1));
        w.set(1, ms(1));
        w.set(2, ms(1));
        assert!(w.pop_expired(ms(2)).is_some());
        // the two left are in the due list; cancel the middle of what remains
        let left: Vec<u32> = (0..3).filter(|&i| w.is_scheduled(i)).collect();
        w.cancel(left[0]);
        assert_eq!(drain(&mut w, ms(2)), vec![left[1]]);
    }

    // Tests for next_expiry.

    #[test]
    fn next_expiry_never_after_the_deadline() {
        let mut w = Wheel::new(8, 64);
        assert_eq!(w.next_expiry(), None);
        w.set(3, Time(12_345));
        let n = w.next_expiry().unwrap();
        assert!(n <= Time(13_000) && n >= Time(12_000), "{n:?}");
        drain(&mut w, ms(1));
        w.set(4, ms(500)); // beyond one turn
        let n = w.next_expiry().unwrap();
        assert!(n <= ms(500));
    }

    #[test]
    fn randomized_against_a_sorted_model() {
        // Deterministic pseudo-random schedule; every deadline fires within one tick after its
        // time and never before.
        let mut w = Wheel::new(64, 128);
        let mut model: Vec<Option<u64>> = vec![None; 64];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut now = 0u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = (x % 64) as u32;
            match (x >> 8) % 4 {
                0 => {
                    w.cancel(id);
                    model[id as usize] = None;
                }
                _ => {
                    let at = now + (x >> 16) % 400_000;
                    w.set(id, Time(at));
                    model[id as usize] = Some(at);
                }
            }
            now += (x >> 40) % 3_000;
            while let Some(e) = w.pop_expired(Time(now)) {
                let at = model[e as usize].take().expect("fired but not scheduled");
                assert!(at <= now, "fired early");
                assert!(now - at < 3_000 + TICK_US, "fired late: at {at} now {now}");
            }
            for (i, m) in model.iter().enumerate() {
                if let Some(at) = m {
                    assert!(*at + TICK_US > now, "{i} missed");
                }
            }
            assert_eq!(w.len(), model.iter().filter(|m| m.is_some()).count());
        }
    }
}
