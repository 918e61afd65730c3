//! A log reader that stops reading must not stop checking.
//!
//! lvsmon runs with `-v` (a line per check) and 200 reals checked every second, its stderr a
//! pipe that this test reads itself. The test stops reading for 20 s: the pipe and then
//! lvsmon's log ring fill up. Meanwhile every grid point must still be checked, the control
//! socket and the metrics endpoint must still answer, and the lines that did not fit must be
//! counted (`lvsmon_log_dropped_total`). Once the test reads again, exactly one
//! `msg="log lines dropped" count=N` line says how many were lost, and every line that does
//! arrive is whole.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::farm::{Farm, Serve};
use common::lvsmon::{bin, field, TempDir};
use common::observe::{metric, scrape};

const S: Duration = Duration::from_secs(1);
const REALS: usize = 200;
const STALL: Duration = Duration::from_secs(20);

/// The daemon, stopped by pid when dropped (SIGTERM, then SIGKILL after 3 s).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + 3 * S;
            while Instant::now() < end {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Lines from the reader thread, kept as they come.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    /// Waits up to `limit` for a line containing every one of `parts`.
    fn wait_for(&mut self, parts: &[&str], limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            let Ok(l) = self.rx.recv_timeout(left) else {
                return None;
            };
            self.seen.push(l.clone());
            if parts.iter().all(|p| l.contains(p)) {
                return Some(l);
            }
        }
        None
    }

    /// Takes every line that comes within `d`.
    fn collect_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => break,
            }
        }
    }
}

/// Runs `lvsmon status` against `sock`; returns how long the reply took, or `None` when
/// there was none within `limit` (the client is then killed).
fn status_within(sock: &std::path::Path, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    let mut c = Command::new(bin())
        .arg("status")
        .arg("--socket")
        .arg(sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run lvsmon status");
    let end = t + limit;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return st.success().then(|| t.elapsed());
        }
        if Instant::now() >= end {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `lvsmon_check_lateness_seconds` observations later than 1 s.
fn late_checks(page: &str) -> f64 {
    metric(page, "lvsmon_check_lateness_seconds_count").unwrap()
        - metric(page, "lvsmon_check_lateness_seconds_bucket{le=\"1\"}").unwrap()
}

/// Scrapes `/metrics`, bounded: a daemon whose loop is stuck gives no page.
fn scrape_within(addr: SocketAddr, limit: Duration) -> Option<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(scrape(addr, None));
    });
    rx.recv_timeout(limit).ok().and_then(Result::ok)
}

/// A running lvsmon whose stderr this test reads, and can stop reading.
struct Run {
    daemon: Daemon,
    lines: Lines,
    /// While true the reader reads nothing at all, so the pipe fills up behind it.
    paused: Arc<AtomicBool>,
    maddr: SocketAddr,
    sock: std::path::PathBuf,
    _dir: TempDir,
}

/// Starts `lvsmon --dry-run -v --metrics` checking `reals` entries of `farm` (50 to a
/// virtual service) every `interval`, with a reader of its stderr; waits for the starting
/// line.
fn start(farm: &Farm, reals: usize, interval: &str) -> Run {
    let mut conf = format!("interval {interval}\ntimeout 500ms\nfall 1\nrise 1\n");
    for v in 0..reals.div_ceil(50) {
        conf.push_str(&format!(
            "virtual tcp 127.1.9.{}:80 {{\n  check tcp\n",
            v + 1
        ));
        for r in v * 50..reals.min(v * 50 + 50) {
            conf.push_str(&format!("  real {}\n", farm.addr(r)));
        }
        conf.push_str("}\n");
    }
    let dir = TempDir::new("logstall");
    let path = dir.file("lvsmon.conf", &conf);
    let sock = dir.0.join("lvsmon.sock");
    let mut child = Command::new(bin())
        .args(["--dry-run", "-v", "--metrics", "127.0.0.1:0", "-f"])
        .arg(&path)
        .arg("--socket")
        .arg(&sock)
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lvsmon");
    let err = child.stderr.take().unwrap();
    // The smallest pipe (one page), so that lvsmon's own ring (256 KiB, about 13 s of
    // lines at 200 checks a second) is what fills up during a stall.
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on the read end of the pipe we own.
        unsafe { libc::fcntl(err.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    }
    let daemon = Daemon(child);
    let paused = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let p = paused.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(1024, err);
        let mut line = String::new();
        loop {
            while p.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if tx.send(line.clone()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut lines = Lines {
        rx,
        seen: Vec::new(),
    };
    let start = lines
        .wait_for(&["msg=\"starting\"", "metrics=http://"], 10 * S)
        .expect("no starting line");
    let maddr: SocketAddr = start.split("metrics=http://").nth(1).unwrap()[..]
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Run {
        daemon,
        lines,
        paused,
        maddr,
        sock,
        _dir: dir,
    }
}

#[test]
fn a_stalled_log_reader_never_stalls_checking() {
    let farm = Farm::start(vec![Serve::Tcp(vec![]); REALS], None, 120 * S);
    let Run {
        daemon,
        mut lines,
        paused,
        maddr,
        sock,
        _dir,
    } = start(&farm, REALS, "1s");
    for _ in 0..REALS {
        lines
            .wait_for(&["event=up"], 10 * S)
            .expect("not every real came up");
    }
    lines.collect_for(S);

    let page0 = scrape_within(maddr, 5 * S).expect("no metrics page");
    let t0 = Instant::now();
    paused.store(true, Ordering::Relaxed);
    // While nobody reads: the loop must answer a control client at any time (asked every
    // 4 s, so also once the pipe and the ring are full).
    let mut replies = Vec::new();
    while t0.elapsed() + 4 * S < STALL {
        std::thread::sleep(4 * S);
        let took = status_within(&sock, 5 * S);
        assert!(
            took.is_some_and(|t| t < 2 * S),
            "`lvsmon status` {:?} after the reader stopped: {took:?} (no reply within 2 s)",
            t0.elapsed()
        );
        replies.push(took.unwrap());
    }
    std::thread::sleep(STALL.saturating_sub(t0.elapsed() + S / 2));
    let page1 = scrape_within(maddr, 5 * S).expect("no metrics page while the reader stalls");
    let window = t0.elapsed();
    paused.store(false, Ordering::Relaxed);

    // Every grid point of the stall was checked: 200 checks a second, within one per real.
    let checks = metric(&page1, "lvsmon_checks_total").unwrap()
        - metric(&page0, "lvsmon_checks_total").unwrap();
    let want = REALS as f64 * window.as_secs_f64();
    assert!(
        (checks - want).abs() <= REALS as f64,
        "{checks} checks in {window:?} while the log reader stalled, want {want:.0} ± {REALS}"
    );
    let missed = metric(&page1, "lvsmon_missed_starts_total").unwrap()
        - metric(&page0, "lvsmon_missed_starts_total").unwrap();
    assert_eq!(
        missed, 0.0,
        "grid points missed while the log reader stalled"
    );
    let late = late_checks(&page1) - late_checks(&page0);
    assert_eq!(
        late, 0.0,
        "checks started over 1 s late while the log reader stalled"
    );
    let dropped = metric(&page1, "lvsmon_log_dropped_total").unwrap();
    assert!(dropped > 0.0, "no log line dropped in a 20 s stall");

    // The reader is back: one line says how many were dropped.
    let notice = lines
        .wait_for(&["msg=\"log lines dropped\""], 15 * S)
        .expect("no `log lines dropped` line after the reader came back");
    let count: u64 = field(notice.trim_end(), "count").unwrap().parse().unwrap();
    assert!(
        count as f64 >= dropped,
        "{notice} but {dropped} dropped by then"
    );
    lines.collect_for(3 * S);
    let page2 = scrape_within(maddr, 5 * S).expect("no metrics page after the stall");
    drop(daemon);
    lines.collect_for(3 * S);
    let notices = lines
        .seen
        .iter()
        .filter(|l| l.contains("msg=\"log lines dropped\""))
        .count();
    assert_eq!(notices, 1, "one `log lines dropped` line after one stall");
    assert_eq!(
        metric(&page2, "lvsmon_log_dropped_total").unwrap(),
        count as f64,
        "the line's count and the metric disagree"
    );
    // Nothing cut or run together: every line is one whole logfmt line.
    for l in &lines.seen {
        assert!(
            l.starts_with("ts=") && l.ends_with('\n') && l.matches("ts=20").count() == 1,
            "a line cut or run together: {l:?}"
        );
    }
    // The final line was flushed at exit.
    assert!(
        lines.seen.iter().any(|l| l.contains("msg=\"stopping\"")),
        "no stopping line at exit"
    );
    println!(
        "log stall: {checks} checks in {window:?}, {count} lines dropped, status replies {replies:?}"
    );
}

/// SIGTERM while the ring is full and dropping: the daemon writes the ring out first (waiting
/// at most 2 s for the reader), so the stopping line still finds room, after the line that
/// tells what was dropped.
#[test]
fn the_stopping_line_is_not_dropped_with_a_full_ring() {
    // 1,000 reals: the ring fills within a few seconds.
    let farm = Farm::start(vec![Serve::Tcp(vec![]); 1000], None, 60 * S);
    let mut run = start(&farm, 1000, "1s");
    run.lines.collect_for(2 * S);
    run.paused.store(true, Ordering::Relaxed);
    let t = Instant::now();
    loop {
        std::thread::sleep(S / 2);
        let page = scrape_within(run.maddr, 5 * S).expect("no metrics page");
        if metric(&page, "lvsmon_log_dropped_total").unwrap() > 0.0 {
            break;
        }
        assert!(t.elapsed() < 20 * S, "no log line dropped in a 20 s stall");
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(run.daemon.0.id() as i32, libc::SIGTERM) };
    std::thread::sleep(S / 2);
    run.paused.store(false, Ordering::Relaxed);
    let stop = run
        .lines
        .wait_for(&["msg=\"stopping\""], 5 * S)
        .expect("the stopping line was lost");
    let end = Instant::now() + 5 * S;
    let code = loop {
        if let Ok(Some(st)) = run.daemon.0.try_wait() {
            break st.code();
        }
        assert!(Instant::now() < end, "no exit 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, Some(0));
    let notice = run
        .lines
        .seen
        .iter()
        .position(|l| l.contains("msg=\"log lines dropped\""))
        .expect("no `log lines dropped` line before the stopping line");
    let stopping = run.lines.seen.iter().position(|l| *l == stop).unwrap();
    assert!(notice < stopping);
}

/// SIGUSR1 with more status lines than the log can hold while its reader is stalled: the
/// dump waits for the reader instead of dropping lines.
#[test]
fn sigusr1_status_lines_wait_for_the_reader() {
    const N: usize = 3000;
    // 3,000 status lines are about 450 KB, more than the ring and the pipe together; at a
    // 30 s interval the checks themselves log little.
    let farm = Farm::start(vec![Serve::Tcp(vec![]); N], None, 60 * S);
    let mut run = start(&farm, N, "30s");
    run.lines.collect_for(S);
    run.paused.store(true, Ordering::Relaxed);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(run.daemon.0.id() as i32, libc::SIGUSR1) };
    std::thread::sleep(2 * S);
    // The loop is not held up meanwhile.
    let took = status_within(&run.sock, 5 * S);
    assert!(took.is_some_and(|t| t < 2 * S), "status: {took:?}");
    run.paused.store(false, Ordering::Relaxed);
    let last = format!("real={} ", farm.addr(N - 1));
    run.lines
        .wait_for(&["status virtual=", &last], 20 * S)
        .expect("the status dump did not finish");
    let page = scrape_within(run.maddr, 5 * S).expect("no metrics page");
    let status = run
        .lines
        .seen
        .iter()
        .filter(|l| l.contains(" status virtual="))
        .count();
    assert_eq!(status, N, "status lines lost");
    assert_eq!(metric(&page, "lvsmon_log_dropped_total"), Some(0.0));
}
