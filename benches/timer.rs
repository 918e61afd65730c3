//! The timer wheel (`src/timer.rs`): what the loop asks of it for every check.
//!
//! A check sets its probe's deadline about three times (connect deadline, then the phase
//! deadline after each step that waits, then the next grid point when it finishes), and every
//! turn pops what is due and asks for the next expiry. Sizes are the benchmark's: 10,000
//! probes every second and 100,000 every 10 s, both 10,000 checks per second. Also the clock
//! the loop reads to drive the wheel (`clock_now`).

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use lvsmon::clock::Time;
use lvsmon::timer::{Wheel, TICK_US};

fn main() {
    divan::main();
}

/// The wheel as `Daemon::new` builds it (4096 slots), `n` probes spread over `interval_us`.
fn loaded(n: usize, interval_us: u64) -> Wheel {
    let mut w = Wheel::new(n, 4096);
    for i in 0..n {
        w.set(i as u32, Time(interval_us * i as u64 / n as u64));
    }
    w
}

/// 10,000 checks per second: `n` probes at an interval of `n / 10,000` seconds.
fn interval_for(n: usize) -> u64 {
    n as u64 * 100
}

/// One 1 ms tick of the steady state: pop every probe that is due and set it one interval
/// later (10 probes per tick at 10,000 checks/s). Counted per check.
#[divan::bench(args = [10_000, 100_000])]
fn steady_tick(bencher: Bencher, n: usize) {
    let interval = interval_for(n);
    let mut w = loaded(n, interval);
    let mut now = 0u64;
    bencher.counter(ItemsCount::new(10usize)).bench_local(|| {
        now += TICK_US;
        let t = Time(now);
        let mut k = 0u32;
        while let Some(id) = w.pop_expired(t) {
            w.set(id, Time(now + interval));
            k += 1;
        }
        black_box(k)
    });
}

/// Moving a scheduled probe's deadline (a cancel and an insert): what every phase change
/// does.
#[divan::bench(args = [10_000, 100_000])]
fn set_move(bencher: Bencher, n: usize) {
    let interval = interval_for(n);
    let mut w = loaded(n, interval);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    bencher.bench_local(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.set((x % n as u64) as u32, Time((x >> 20) % interval));
    });
}

/// Where the next wake-up is, in a loaded wheel (asked once per loop turn).
#[divan::bench(args = [10_000, 100_000])]
fn next_expiry(bencher: Bencher, n: usize) {
    let w = loaded(n, interval_for(n));
    bencher.bench_local(|| black_box(&w).next_expiry());
}

/// A probe alone in the wheel: set, then popped when due.
#[divan::bench]
fn set_and_pop_one(bencher: Bencher) {
    let mut w = Wheel::new(1, 4096);
    let mut now = 0u64;
    bencher.bench_local(|| {
        w.set(0, Time(now + 3 * TICK_US));
        now += 3 * TICK_US;
        black_box(w.pop_expired(Time(now)))
    });
}

/// The loop's clock, read a few times every turn (before the wait, after it, and for the
/// stall check): the monotonic clock of `Daemon::new`.
#[divan::bench]
fn clock_now(bencher: Bencher) {
    let c = lvsmon::clock::Clock::new();
    bencher.bench_local(|| black_box(&c).now());
}
