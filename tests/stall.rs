//! A loop that stood still (SIGSTOP, a paused VM, a swap storm) must not judge the checks it
//! could not watch: what arrived while it stood still is read before any deadline is
//! expired, and a check whose deadline passed meanwhile gets the time it had left.
//!
//! Two tests: the real binary stopped with SIGSTOP for 10 s while 50 reals answer after
//! 0.3 s (`fall 1`: one wrong verdict is a DOWN), and the loop itself, driven in this process,
//! standing still right after it started a check.

mod common;

use std::time::{Duration, Instant};

use common::backend::REQUEST_END;
use common::lvsmon::{Lvsmon, TempDir};
use common::observe::{metric, scrape};
use common::{http_response, Action, Backend, Script};
use lvsmon::event_loop::{Daemon, Options};
use lvsmon::ipvs::DryRun;
use lvsmon::log::{Level, Log, Sink};
use lvsmon::monitor::health::State;

const S: Duration = Duration::from_secs(1);

/// An HTTP server that answers 0.3 s after the request.
fn slow_http() -> Backend {
    Backend::start(Script(vec![
        Action::Expect(REQUEST_END.to_vec()),
        Action::Sleep(Duration::from_millis(300)),
        Action::Send(http_response(200, "OK")),
        Action::Close,
    ]))
}

/// `kill -STOP` for 10 s, `kill -CONT`: the replies that arrived meanwhile are read, the
/// checks running when the daemon stopped end with a pass, no real goes DOWN, the stall is
/// logged and counted, and checking goes on.
#[test]
fn sigstop_for_10s_marks_no_real_down() {
    let backends: Vec<Backend> = (0..50).map(|_| slow_http()).collect();
    let mut conf = String::from(
        "interval 1s\nconnect-timeout 1s\ntimeout 1s\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {\n  check http\n",
    );
    for b in &backends {
        conf.push_str(&format!("  real {}\n", b.addr()));
    }
    conf.push_str("}\n");
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let maddr = d.metrics_addr();
    let end = Instant::now() + 10 * S;
    while d.count(&["event=up"]) < 50 && Instant::now() < end {
        d.try_wait_for(&["event=up"], end.saturating_duration_since(Instant::now()));
    }
    assert_eq!(d.count(&["event=up"]), 50, "not every real came up");
    // Checks are spread over the interval and take 0.3 s: about 15 are running at any time.
    d.collect_for(S / 2);
    d.signal(libc::SIGSTOP);
    std::thread::sleep(10 * S);
    let passes_before = d.count(&["result=pass"]);
    d.signal(libc::SIGCONT);
    // Three intervals after the stop: every real checked again, and passed.
    d.collect_for(3 * S);
    let passes = d.count(&["result=pass"]) - passes_before;
    let downs = d.count(&["event=down"]);
    let fails: Vec<&String> = d
        .seen()
        .iter()
        .filter(|l| l.contains("result=fail"))
        .take(5)
        .collect();
    assert_eq!(
        downs, 0,
        "reals went DOWN after the stop; failures: {fails:#?}"
    );
    assert!(fails.is_empty(), "checks failed after the stop: {fails:#?}");
    assert!(
        passes >= 100,
        "only {passes} passes in the 3 s after the stop"
    );
    let l = d.wait_seen(&["msg=\"loop stalled\""], 5 * S);
    let stalled: f64 = common::lvsmon::field(&l, "seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no seconds= in {l}"));
    assert!((9.0..30.0).contains(&stalled), "{l}");
    let page = scrape(maddr, None).unwrap();
    let stalls = metric(&page, "lvsmon_loop_stalls_total").expect("lvsmon_loop_stalls_total");
    assert!(stalls >= 1.0, "lvsmon_loop_stalls_total {stalls}");
    println!("stopped 10 s: stall of {stalled} s logged, {passes} passes in 3 s after, no DOWN");
}

/// Stops shorter than a stall (0.3 s, five times) while checks with a 0.2 s timeout wait for
/// replies that come after 0.1 s: the wait ends with EINTR at SIGCONT and returns nothing,
/// and the replies, there all along, are read before the deadlines that passed meanwhile.
#[test]
fn short_stops_read_the_replies_before_the_deadlines() {
    let backends: Vec<Backend> = (0..20)
        .map(|_| {
            Backend::start(Script(vec![
                Action::Expect(REQUEST_END.to_vec()),
                Action::Sleep(Duration::from_millis(100)),
                Action::Send(http_response(200, "OK")),
                Action::Close,
            ]))
        })
        .collect();
    let mut conf = String::from(
        "interval 500ms\nconnect-timeout 200ms\ntimeout 200ms\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {\n  check http\n",
    );
    for b in &backends {
        conf.push_str(&format!("  real {}\n", b.addr()));
    }
    conf.push_str("}\n");
    let mut d = Lvsmon::start(&conf, &[]);
    let end = Instant::now() + 10 * S;
    while d.count(&["event=up"]) < 20 && Instant::now() < end {
        d.try_wait_for(&["event=up"], end.saturating_duration_since(Instant::now()));
    }
    assert_eq!(d.count(&["event=up"]), 20, "not every real came up");
    // About 4 checks wait for a reply at any time.
    for _ in 0..5 {
        d.collect_for(S / 2);
        d.signal(libc::SIGSTOP);
        std::thread::sleep(Duration::from_millis(300));
        d.signal(libc::SIGCONT);
    }
    d.collect_for(S);
    let fails: Vec<&String> = d
        .seen()
        .iter()
        .filter(|l| l.contains("result=fail"))
        .take(5)
        .collect();
    assert!(
        fails.is_empty(),
        "checks failed across the stops: {fails:#?}"
    );
    assert_eq!(d.count(&["event=down"]), 0);
    assert!(d.count(&["result=pass"]) >= 60);
}

/// The loop stands still (this thread sleeps) right after it started a check: the connect
/// completes meanwhile, and the check's whole timeout passes. Once the loop runs again the
/// request goes out and the reply, 0.3 s later, decides: a pass, not a `recv-timeout`.
#[test]
fn a_check_started_just_before_a_stall_is_judged_by_its_reply() {
    let b = slow_http();
    let dir = TempDir::new("stall");
    let conf = format!(
        "interval 5s\nconnect-timeout 1s\ntimeout 1s\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {{\n  check http\n  real {}\n}}\n",
        b.addr()
    );
    let path = dir.file("lvsmon.conf", &conf);
    let plan = lvsmon::config::load(&path, None).expect("config");
    let opts = Options {
        signals: false,
        ..Options::default()
    };
    let mut d = Daemon::new(
        plan,
        Box::new(DryRun::default()),
        Log::new(Sink::Null, Level::Info),
        &opts,
    )
    .expect("daemon");
    d.startup();
    // The first check: UP.
    let end = Instant::now() + 5 * S;
    while d.real_state(0).0 != State::Up && Instant::now() < end {
        d.turn(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(d.real_state(0).0, State::Up);
    // Until the next check starts (5 s on): stand still the moment it has.
    let started = d.stats().started;
    let end = Instant::now() + 10 * S;
    while d.stats().started == started && Instant::now() < end {
        d.turn(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(
        d.stats().started,
        started + 1,
        "the second check never started"
    );
    std::thread::sleep(2 * S);
    // Back: the check gets the second it had left.
    let checks = d.stats().checks;
    let end = Instant::now() + 3 * S;
    while d.stats().checks == checks && Instant::now() < end {
        d.turn(Some(Duration::from_millis(50))).unwrap();
    }
    let st = d.stats();
    assert_eq!(st.checks, checks + 1, "the check never ended");
    assert_eq!(
        st.failures.iter().sum::<u64>(),
        0,
        "failed after the stall: {:?}",
        st.failures
    );
    assert_eq!(d.real_state(0).0, State::Up);
    assert!(st.loop_stalls >= 1, "stall not counted");
}
