//! The `/metrics` page (`src/event_loop/report.rs`, through `Daemon::render_metrics`) and
//! the Prometheus helpers it is made of (`src/stats.rs`).
//!
//! The page has a fixed part (counters, failure reasons, IPVS operations, the two
//! histograms) and one `lvsmon_real_up` line per real server, so its cost grows with the
//! reals; it streams through the metrics server's 64 KiB output buffer.

use std::io::Cursor;

use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use lvsmon::event_loop::Daemon;
use lvsmon::stats::{label_value, Histogram};

#[path = "../bench/inproc.rs"]
mod inproc;

fn main() {
    divan::main();
}

/// A daemon for `n` reals, 100 per virtual, as the load benchmark configures them.
fn daemon(n: usize) -> Daemon {
    inproc::daemon("history raw 0 minute 0 hour 0\n", n, 100)
}

/// The whole page, rendered 64 KiB at a time; counted per real server.
#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 30)]
fn page(bencher: Bencher, n: usize) {
    let mut d = daemon(n);
    let mut out = vec![0u8; lvsmon::control::OUT_CAP];
    bencher.counter(ItemsCount::new(n)).bench_local(|| {
        let mut cursor = 0u64;
        let mut total = 0usize;
        // Bounded: the page of 100,000 reals is a few hundred buffers.
        for _ in 0..100_000 {
            let (len, done) = d.render_metrics(&mut cursor, &mut out);
            total += len;
            if done {
                break;
            }
        }
        black_box(total)
    });
}

/// One observation into a histogram (twice per check: duration and lateness).
#[divan::bench]
fn histogram_observe(bencher: Bencher) {
    let mut h = Histogram::default();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    bencher.bench_local(|| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Mostly sub-millisecond, as lateness and loopback durations are.
        h.observe(black_box(x % 3_000));
    });
}

/// The 20 lines of one histogram family.
#[divan::bench]
fn histogram_render(bencher: Bencher) {
    let mut h = Histogram::default();
    for us in [50, 120, 400, 900, 3_000, 70_000, 2_000_000] {
        h.observe(us);
    }
    let mut buf = [0u8; 4096];
    let len = {
        let mut c = Cursor::new(&mut buf[..]);
        h.render("lvsmon_check_lateness_seconds", &mut c).unwrap();
        c.position() as usize
    };
    bencher.counter(BytesCount::new(len)).bench_local(|| {
        let mut c = Cursor::new(&mut buf[..]);
        h.render("lvsmon_check_lateness_seconds", &mut c).unwrap();
        c.position()
    });
}

/// A label value escaped (a service identifier, as on every per-real line).
#[divan::bench]
fn label_escape(bencher: Bencher) {
    let mut buf = [0u8; 256];
    bencher.bench_local(|| {
        let mut c = Cursor::new(&mut buf[..]);
        label_value(&mut c, black_box(b"tcp:10.0.12.34:80")).unwrap();
        c.position()
    });
}
