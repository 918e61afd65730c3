//! The status page's rendering cost (lvsmon(8), STATUS PAGE): a daemon of N reals built
//! in-process (`--dry-run`'s IPVS, no socket), its history filled with two days of results (one
//! a minute per real, a few failing), then `/`, `/virtual/ID` and `/status.json` rendered
//! 64 KiB at a time as the metrics server renders them, on the loop, for a client. Prints the
//! loop time per whole page (the sum of its render calls), the longest call (one turn's
//! 64 KiB: what one loop turn spends at most on it) and the page's size.
//!
//! ```text
//! cargo run --release --example bench_page -- [--n 10000] [--repeat 20]
//! ```
//!
//! Two layouts of the same N: 100 reals per virtual service (the overview lists 50 virtuals
//! of 20 reals each), and one virtual service holding all N (its row folds all of them).

use std::time::{Duration, Instant};

use lvsmon::event_loop::Daemon;

#[path = "inproc.rs"]
mod inproc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// A daemon of `n` reals, `per` to a virtual service, with two days of history.
fn daemon(n: usize, per: usize) -> Daemon {
    let mut d = inproc::daemon("", n, per);
    let (h, now) = d.history_mut();
    let reason = lvsmon::plugins::Reason::ConnectRefused;
    let mut t = now - 2 * 86_400 + 60;
    while t <= now {
        for r in 0..n {
            let lat = 300 + ((r as u64 * 7 + t / 60) % 900);
            let fail = (r as u64 + t / 60).is_multiple_of(97);
            h.record(r, t, lat, fail.then_some(reason));
        }
        t += 60;
    }
    d
}

/// Renders `target` whole `repeat` times: (mean per render, longest call, bytes).
fn measure(d: &mut Daemon, target: &str, repeat: usize) -> (Duration, Duration, usize) {
    let mut out = vec![0u8; lvsmon::control::OUT_CAP];
    let (mut total, mut longest, mut bytes) = (Duration::ZERO, Duration::ZERO, 0);
    for _ in 0..repeat {
        let mut cursor = 0u64;
        bytes = 0;
        for _ in 0..1_000_000 {
            let t = Instant::now();
            let (len, done) = d.render_page(target, &mut cursor, &mut out);
            let took = t.elapsed();
            total += took;
            longest = longest.max(took);
            bytes += len;
            if done {
                break;
            }
        }
    }
    (total / repeat as u32, longest, bytes)
}

fn main() {
    let n = arg("--n", 10_000);
    let repeat = arg("--repeat", 20);
    println!("status page, {n} reals, two days of history each; mean of {repeat} renders");
    println!(
        "{:<26} {:<36} {:>12} {:>14} {:>10}",
        "layout", "page", "loop ms", "longest call", "KiB"
    );
    for per in [100, n] {
        let t = Instant::now();
        let mut d = daemon(n, per);
        let built = t.elapsed();
        let layout = format!("{} per virtual", per.min(n));
        for target in ["/", "/virtual/tcp:10.0.0.0:80", "/status.json"] {
            let (mean, longest, bytes) = measure(&mut d, target, repeat);
            println!(
                "{:<26} {:<36} {:>12.2} {:>11.2} ms {:>10}",
                layout,
                target,
                mean.as_secs_f64() * 1e3,
                longest.as_secs_f64() * 1e3,
                bytes / 1024
            );
        }
        eprintln!("({layout}: daemon and history built in {built:.1?})");
    }
}
