//! The history rings (`src/history.rs`): what the loop asks of them for every check result.
//!
//! `History::record` runs once per check: one raw slot written, the real's open minute and
//! hour folded, and, once a minute (hour) per real, the bucket it leaves packed. Sizes are the
//! benchmark's, at the default spans: 10,000 reals every second and 100,000 every 10 s, both
//! 10,000 results per second of simulated time, the reals taken in turn.

use std::time::Duration;

use divan::counter::ItemsCount;
use divan::{black_box, Bencher};
use lvsmon::config::HistorySpec;
use lvsmon::history::History;

fn main() {
    divan::main();
}

/// 2023-11-14T21:00:00Z.
const T0: u64 = 1_699_995_600;

/// 1,000 results in a row, the reals in turn, 10,000 a second of simulated time: the steady
/// state, minute and hour roll-overs included as they come. Counted per result.
#[divan::bench(args = [10_000, 100_000])]
fn record(bencher: Bencher, n: usize) {
    let iv = Duration::from_secs(n as u64 / 10_000);
    let mut h = History::new(&HistorySpec::default(), &vec![iv; n]);
    // Every real once first: the rings' pages are touched, as in a daemon that has run.
    for r in 0..n {
        h.record(r, T0 - 1, 100, None);
    }
    let mut k = 0u64;
    bencher.counter(ItemsCount::new(1000usize)).bench_local(|| {
        for _ in 0..1000 {
            let r = (k % n as u64) as usize;
            let lat = 150 + (k * 7919) % 40_000;
            let reason = k
                .is_multiple_of(97)
                .then_some(lvsmon::plugins::Reason::Timeout);
            h.record(r, T0 + k / 10_000, lat, reason);
            k += 1;
        }
        black_box(&h);
    });
}
