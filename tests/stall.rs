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

/// Sends SIGSTOP once the loop sleeps in `epoll_wait` (its thread is the process's first),
/// so that it stops in its wait and every check it started has sent its request. A stop that
/// caught it between a connect and the request would leave that check nothing to read after
/// a short stop, which is then judged at its deadline (lvsmon(8), Stalls), and a busy
/// machine can hold the loop right there. Waits at most 5 s, then stops it anyway.
fn stop_in_its_wait(d: &Lvsmon) {
    let end = Instant::now() + 5 * S;
    while !sleeps_in_its_wait(d.pid()) && Instant::now() < end {
        std::thread::sleep(Duration::from_micros(200));
    }
    d.signal(libc::SIGSTOP);
}

/// Whether process `pid`'s first thread (lvsmon's loop) sleeps in `epoll_wait`.
fn sleeps_in_its_wait(pid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    // Kernels that hide wait channels show "0": the sleeping state alone then.
    (wchan.contains("epoll") || wchan == "0") && state_of(pid) == Some('S')
}

/// Process `pid`'s state letter (`S` sleeping, `R` running, `T` stopped).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses.
    stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next())
}

/// Stops shorter than a stall (0.4 s, five times) while checks with a 0.3 s timeout wait for
/// replies that come after 0.05 s: the loop stops in its wait, which ends with EINTR at
/// SIGCONT and returns nothing, and the replies, there all along, are read before the
/// deadlines that passed meanwhile.
///
/// The backends are threads of this process, which a busy machine delays too: a reply is due
/// 0.25 s before its check's deadline, so that only a backend held up longer than that can
/// fail a check by itself, while a stop (0.4 s, under the stall margin of 0.5 s) still
/// outlasts the deadline of every check it catches waiting.
#[test]
fn short_stops_read_the_replies_before_the_deadlines() {
    let backends: Vec<Backend> = (0..40)
        .map(|_| {
            Backend::start(Script(vec![
                Action::Expect(REQUEST_END.to_vec()),
                Action::Sleep(Duration::from_millis(50)),
                Action::Send(http_response(200, "OK")),
                Action::Close,
            ]))
        })
        .collect();
    let mut conf = String::from(
        "interval 500ms\nconnect-timeout 300ms\ntimeout 300ms\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {\n  check http\n",
    );
    for b in &backends {
        conf.push_str(&format!("  real {}\n", b.addr()));
    }
    conf.push_str("}\n");
    let mut d = Lvsmon::start(&conf, &[]);
    let end = Instant::now() + 10 * S;
    while d.count(&["event=up"]) < 40 && Instant::now() < end {
        d.try_wait_for(&["event=up"], end.saturating_duration_since(Instant::now()));
    }
    assert_eq!(d.count(&["event=up"]), 40, "not every real came up");
    // About 4 checks wait for a reply at any time.
    for _ in 0..5 {
        d.collect_for(S / 2);
        stop_in_its_wait(&d);
        std::thread::sleep(Duration::from_millis(400));
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
    assert!(d.count(&["result=pass"]) >= 120);
}

/// Pins the calling thread to `cpu`; returns the set it had, for [`restore_cpus`].
fn pin_to(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: the sets are plain data we own; the calls read or fill them.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut old);
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one),
            0,
            "pin to CPU {cpu}"
        );
        old
    }
}

fn restore_cpus(set: &libc::cpu_set_t) {
    // SAFETY: a set sched_getaffinity filled.
    unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) };
}

/// Accepts one connection from `l` (non-blocking), waiting at most `limit`.
fn accept_within(l: &std::net::TcpListener, limit: Duration) -> std::net::TcpStream {
    let end = Instant::now() + limit;
    loop {
        match l.accept() {
            Ok((c, _)) => return c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("no check connected within {limit:?}: {e}"),
        }
    }
}

/// A stop that catches the loop as readiness has just ended its wait does not cut the wait
/// short: the poll returns that readiness, the process stops on its way out, and once
/// continued the loop has readiness older than its clock. What came meanwhile (here the
/// banner a check waits for, sent while the loop stood still, after the check's 0.3 s
/// timeout had passed) is read before that deadline is expired: a pass, not a timeout.
///
/// To stop it there: the loop (at nice 19) and this thread share one CPU, so the loop, woken
/// by a connection to its control socket, runs only once this thread has sent SIGSTOP and
/// sleeps; the banner is sent once the loop has stopped.
#[test]
fn a_stop_as_readiness_ends_the_wait_reads_what_came_meanwhile() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let conf = format!(
        "interval 1s\nconnect-timeout 300ms\ntimeout 300ms\nfall 1\nrise 1\n\
         virtual tcp 127.1.0.1:80 {{\n  check banner\n  real {}\n}}\n",
        l.local_addr().unwrap()
    );
    // SAFETY: sched_getcpu has no arguments.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    let old = pin_to(cpu);
    let mut d = Lvsmon::start_with(&conf, &[], |cmd| {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut one);
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one);
                libc::setpriority(libc::PRIO_PROCESS, 0, 19);
                Ok(())
            });
        }
    });
    let target = format!("target={} ", l.local_addr().unwrap());
    // UP first: answer checks until one passes (a busy machine may hold this thread past the
    // first one's timeout). Each check's line comes before the next check starts.
    for attempt in 1.. {
        let mut c = accept_within(&l, 10 * S);
        std::io::Write::write_all(&mut c, b"x\n").unwrap();
        let line = d.wait_for(&[" check ", &target], 5 * S);
        if line.contains("result=pass") {
            break;
        }
        assert!(attempt < 5, "no check passed: {line}");
    }
    let (mut judged, mut rounds) = (0, 0);
    while judged < 3 && rounds < 10 {
        rounds += 1;
        let mut c = accept_within(&l, 5 * S);
        let started = Instant::now();
        // Until the loop sleeps in its wait for the banner.
        let end = Instant::now() + S;
        while !sleeps_in_its_wait(d.pid()) && Instant::now() < end {
            std::thread::sleep(Duration::from_micros(200));
        }
        let trigger = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        d.signal(libc::SIGSTOP);
        // Now the loop runs (this thread sleeps): its wait returns the new connection, and
        // it stops on the way out. The banner comes after that.
        let end = Instant::now() + S;
        while state_of(d.pid()) != Some('T') && Instant::now() < end {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Only a round whose check had most of its 0.3 s left at the stop shows anything: on
        // a busy machine this thread may have come too late.
        let in_time = started.elapsed() < Duration::from_millis(150);
        std::io::Write::write_all(&mut c, b"x\n").unwrap();
        std::thread::sleep(Duration::from_millis(400));
        d.signal(libc::SIGCONT);
        let line = d.wait_for(&[" check ", &target], 5 * S);
        drop(trigger);
        if in_time {
            judged += 1;
            assert!(line.contains("result=pass"), "round {rounds}: {line}");
        }
    }
    restore_cpus(&old);
    assert!(
        judged >= 1,
        "no round stopped the loop in time ({rounds} rounds)"
    );
    println!("{judged} of {rounds} rounds judged, each a pass");
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
