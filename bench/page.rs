//! The status page's rendering cost (lvsmon(8), STATUS PAGE): a daemon of N reals built
//! in-process (`--dry-run`'s IPVS, no socket), its history filled with two days of results (one
//! a minute per real, a few failing), then `/`, `/virtual/ID` and `/status.json` rendered
//! 64 KiB at a time as the metrics server renders them, on the loop, for a client. Prints the
//! loop time per whole page (the sum of its render calls), the longest call (one turn's
//! 64 KiB or less: what one loop turn spends at most on it), the median over the renders of
//! each one's longest call (the longest alone catches any preemption on a busy machine),
//! the calls per page and the page's size.
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

/// What [`measure`] found.
struct Figures {
    /// Loop time per whole page, the mean over the renders.
    mean: Duration,
    /// The longest render call of all.
    longest: Duration,
    /// The median over the renders of each one's longest call: on a busy machine, where
    /// any call may be preempted, what a page's longest call costs by itself.
    typical_longest: Duration,
    /// Calls per page.
    calls: usize,
    /// Bytes per page.
    bytes: usize,
}

/// Renders `target` whole `repeat` times.
fn measure(d: &mut Daemon, target: &str, repeat: usize) -> Figures {
    let mut out = vec![0u8; lvsmon::control::OUT_CAP];
    let (mut total, mut longest, mut bytes, mut calls) = (Duration::ZERO, Duration::ZERO, 0, 0);
    let mut longest_of = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let mut cursor = 0u64;
        let mut page_longest = Duration::ZERO;
        (bytes, calls) = (0, 0);
        for _ in 0..1_000_000 {
            let t = Instant::now();
            let (len, done) = d.render_page(target, &mut cursor, &mut out);
            let took = t.elapsed();
            total += took;
            page_longest = page_longest.max(took);
            bytes += len;
            calls += 1;
            if done {
                break;
            }
        }
        longest = longest.max(page_longest);
        longest_of.push(page_longest);
    }
    longest_of.sort();
    Figures {
        mean: total / repeat as u32,
        longest,
        typical_longest: longest_of[longest_of.len() / 2],
        calls,
        bytes,
    }
}

fn main() {
    let n = arg("--n", 10_000);
    let repeat = arg("--repeat", 20);
    println!("status page, {n} reals, two days of history each; mean of {repeat} renders");
    println!(
        "{:<20} {:<28} {:>9} {:>14} {:>16} {:>6} {:>6}",
        "layout", "page", "loop ms", "longest call", "median longest", "calls", "KiB"
    );
    for per in [100, n] {
        let t = Instant::now();
        let mut d = daemon(n, per);
        let built = t.elapsed();
        let layout = format!("{} per virtual", per.min(n));
        for target in ["/", "/virtual/tcp:10.0.0.0:80", "/status.json"] {
            let f = measure(&mut d, target, repeat);
            println!(
                "{:<20} {:<28} {:>9.2} {:>11.2} ms {:>13.2} ms {:>6} {:>6}",
                layout,
                target,
                f.mean.as_secs_f64() * 1e3,
                f.longest.as_secs_f64() * 1e3,
                f.typical_longest.as_secs_f64() * 1e3,
                f.calls,
                f.bytes / 1024
            );
        }
        eprintln!("({layout}: daemon and history built in {built:.1?})");
    }
}
