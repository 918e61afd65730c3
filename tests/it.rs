//! Integration tests: the real `lvsmon` binary against real, misbehaving backends on loopback
//! (and in a network namespace the test creates, where a route is needed).
//!
//! Each test writes a config, starts `lvsmon --dry-run -v`, and reads its log lines: the
//! `check ...` line of every result, the `event=...` lines and the `ipvs op=...` lines are
//! the daemon's contract (lvsmon(8) and lvsmon.conf(5)), so they are what the tests assert on.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::backend::REQUEST_END;
use common::farm::{Farm, Serve, Step};
use common::lvsmon::{bin, check_config, check_starts, field, stdout_of_success, Lvsmon, TempDir};
use common::observe::{
    max_lateness, metric, open_files_limit, parse_status_json, scrape, set_open_files_limit,
    CpuMeter,
};
use common::udp::{dns_answer, UdpServer};
use common::{http_response, refused_addr, Action, Backend, FullQueue, Netns, Script};

const S: Duration = Duration::from_secs(1);

/// A virtual address for the `n`-th virtual of a test: loopback, never contacted in dry-run.
fn vip(n: usize) -> String {
    format!("127.1.{}.{}:80", n / 250, n % 250 + 1)
}

/// `lvsmon -n -v -f CONF` started inside network namespace `ns`, with its socket and state
/// in `dir`.
fn dry_run_in_netns(ns: &Netns, conf: &std::path::Path, dir: TempDir) -> Lvsmon {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), bin(), "-n", "-v", "-f"])
        .arg(conf)
        .arg("--socket")
        .arg(dir.0.join("sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    Lvsmon::spawn(cmd, dir)
}

fn secs(line: &str, key: &str) -> f64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

// ---------------------------------------------------------------------------------------------
// Failure reasons
// ---------------------------------------------------------------------------------------------

/// Every failure reason of lvsmon(8), DECISIONS that a backend can cause on loopback, each from a
/// real misbehaving server, in one daemon; passing servers beside them come UP.
#[test]
fn every_failure_reason_from_a_real_backend() {
    let (refused, _guard) = refused_addr();
    let full = FullQueue::new();
    let req = || Action::Expect(REQUEST_END.to_vec());
    let reset = Backend::start(Script(vec![req(), Action::Reset]));
    let closed = Backend::start(Script(vec![req(), Action::Close]));
    let silent = Backend::start(Script(vec![Action::Hold]));
    let trickle = Backend::start(Script(vec![
        req(),
        Action::Trickle(http_response(200, "OK"), Duration::from_millis(1000)),
    ]));
    let status = Backend::start(Script::http(503, "maintenance"));
    let invalid = Backend::start(Script::raw(&b"SSH-2.0-OpenSSH_9.2\r\n"[..]));
    let body = Backend::start(Script::http(200, "all is not well"));
    let banner = Backend::start(Script::banner("220 mail.example.org ESMTP"));
    let expect = Backend::start(Script(vec![
        Action::expect("PING\r\n"),
        Action::send("-ERR unknown command\r\n"),
        Action::Drain,
    ]));
    let large = Backend::start(Script(vec![
        req(),
        Action::send("HTTP/1.1 200 OK\r\n"),
        Action::Endless(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec()),
    ]));
    let good_http = Backend::start(Script::http(200, "status: OK"));
    let good_banner = Backend::start(Script::banner("SSH-2.0-OpenSSH_9.2"));
    let good_script = Backend::start(Script(vec![
        Action::expect("PING\r\n"),
        Action::send("+PONG\r\n"),
        Action::Drain,
    ]));
    let good_v6 = Backend::start_on("[::1]:0".parse().unwrap(), Script::http(200, "OK"));

    let http = "check http --url http://health.example/ping --expect 200-399";
    let cases: Vec<(SocketAddr, &str, Option<&str>)> = vec![
        (refused, "check tcp", Some("connect-refused")),
        (full.addr(), "check tcp", Some("connect-timeout")),
        (reset.addr(), http, Some("reset")),
        (closed.addr(), http, Some("closed")),
        (silent.addr(), http, Some("recv-timeout")),
        (trickle.addr(), http, Some("timeout")),
        (status.addr(), http, Some("http-status")),
        (invalid.addr(), http, Some("http-invalid")),
        (
            body.addr(),
            "check http --match \"status: OK\"",
            Some("body-mismatch"),
        ),
        (
            banner.addr(),
            "check banner --expect SSH-2.0-",
            Some("banner-mismatch"),
        ),
        (
            expect.addr(),
            "check script --send \"PING\\r\\n\" --expect +PONG",
            Some("expect-mismatch"),
        ),
        (
            large.addr(),
            "check http --max-response 1024",
            Some("response-too-large"),
        ),
        (good_http.addr(), "check http --match \"status: OK\"", None),
        (good_banner.addr(), "check banner --expect SSH-2.0-", None),
        (
            good_script.addr(),
            "check script --send \"PING\\r\\n\" --expect +PONG",
            None,
        ),
        (good_v6.addr(), http, None),
    ];
    let mut conf = String::from("interval 1s\nconnect-timeout 500ms\ntimeout 2s\nfall 1\nrise 1\n");
    for (i, (addr, check, _)) in cases.iter().enumerate() {
        let v = if addr.is_ipv6() {
            format!("[::1]:{}", 8000 + i)
        } else {
            vip(i)
        };
        conf.push_str(&format!(
            "virtual tcp {v} {{\n  {check}\n  real {addr} weight 5\n}}\n"
        ));
    }
    let mut d = Lvsmon::start(&conf, &[]);
    for (addr, _, reason) in &cases {
        let real = format!("real={addr}");
        match reason {
            Some(r) => {
                let ev = d.wait_seen(&["event=down", &real], 8 * S);
                assert_eq!(field(&ev, "reason"), Some(*r), "{ev}");
                let line = d.wait_seen(
                    &["check ", &format!("target={addr} "), "result=fail"],
                    8 * S,
                );
                assert_eq!(field(&line, "reason"), Some(*r), "{line}");
            }
            None => {
                d.wait_seen(&["event=up", &real], 8 * S);
                let op = d.wait_seen(&["ipvs op=edit-dest", &real], 3 * S);
                assert!(
                    op.contains("weight=5") && op.contains("result=dry-run"),
                    "{op}"
                );
            }
        }
    }
    // Details say what went wrong.
    let s = d
        .seen()
        .iter()
        .find(|l| l.contains("reason=http-status"))
        .unwrap()
        .clone();
    assert_eq!(field(&s, "detail"), Some("503"), "{s}");
    let b = d
        .seen()
        .iter()
        .find(|l| l.contains("reason=banner-mismatch"))
        .unwrap()
        .clone();
    assert!(field(&b, "detail").unwrap().starts_with("220 mail"), "{b}");
    // The trickle was cut at the whole-check timeout, not left to run.
    let t = d
        .seen()
        .iter()
        .find(|l| l.contains(&format!("target={} ", trickle.addr())) && l.contains("result=fail"))
        .unwrap()
        .clone();
    let took = secs(&t, "duration");
    assert!(
        (1.9..2.8).contains(&took),
        "trickle check took {took}s: {t}"
    );
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
}

/// `unreachable`: a route that says "no route to host", inside a network namespace the test
/// creates, with lvsmon running inside it.
#[test]
fn unreachable_inside_a_network_namespace() {
    let Some(ns) = Netns::new_or_skip() else {
        return;
    };
    ns.add_unreachable_route("198.51.100.0/24");
    let dir = TempDir::new("netns");
    let conf = dir.file(
        "lvsmon.conf",
        "interval 1s\nvirtual tcp 127.0.0.1:80 {\n  check tcp\n  real 198.51.100.7:80\n}\n",
    );
    let mut d = dry_run_in_netns(&ns, &conf, dir);
    let ev = d.wait_for(&["event=down", "real=198.51.100.7:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("unreachable"), "{ev}");
    assert_eq!(field(&ev, "detail"), Some("EHOSTUNREACH"), "{ev}");
    assert_eq!(d.stop().0, Some(0));
}

// ---------------------------------------------------------------------------------------------
// Decisions and events
// ---------------------------------------------------------------------------------------------

/// `fall 3`, `rise 2` end to end: the `event=` lines carry the failures and the reason, and
/// IPVS follows (quiesce, then the weight again). The rule itself (edge-triggered, exactly
/// the third failure and the second success, nothing repeated while a state holds) is
/// table::tests::fall_and_rise_are_edge_triggered.
#[test]
fn fall_rise_edge_triggered() {
    let b = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 200ms\nfall 3\nrise 2\ntimeout 1s\nvirtual tcp {} {{\n  check http\n  real {} weight 7\n}}\n",
        vip(0),
        b.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up"], 5 * S);
    d.wait_for(&["ipvs op=edit-dest", "weight=7"], S);
    b.set_script(Script::http(500, "oops"));
    let down = d.wait_for(&["event=down"], 5 * S);
    assert_eq!(field(&down, "failures"), Some("3"), "{down}");
    assert_eq!(field(&down, "reason"), Some("http-status"));
    d.wait_for(&["ipvs op=edit-dest", "weight=0"], S);
    b.set_script(Script::http(200, "OK"));
    d.wait_for(&["event=up"], 5 * S);
    d.wait_for(&["ipvs op=edit-dest", "weight=7"], S);
}

/// The same real server behind three virtuals with the same check is probed once per
/// interval, and each virtual gets its own event.
#[test]
fn shared_real_is_checked_once() {
    let b = Backend::start(Script::http(200, "OK"));
    let mut conf = String::from("interval 500ms\n");
    for i in 0..3 {
        conf.push_str(&format!(
            "virtual tcp {} {{\n  check http\n  real {}\n}}\n",
            vip(i),
            b.addr()
        ));
    }
    let mut d = Lvsmon::start(&conf, &[]);
    for i in 0..3 {
        d.wait_for(&["event=up", &format!("virtual=tcp:{}", vip(i))], 5 * S);
    }
    let n0 = b.accepted();
    std::thread::sleep(2 * S);
    let n = b.accepted() - n0;
    assert!(
        (3..=5).contains(&n),
        "{n} connections in 2 s for one shared check at 500 ms"
    );
}

/// Checks start on a fixed grid (no drift whatever a check takes), and the first checks of
/// many servers are spread over the first interval.
///
/// The starts are the loop's own (`check_starts`), and the loop says how late it started any
/// check (`max_lateness`): on a busy machine a start may come that much after its grid point,
/// so the bounds widen by that much (and a little for the millisecond time stamps).
#[test]
fn fixed_grid_and_spread_first_checks() {
    let backends: Vec<Backend> = (0..10)
        .map(|i| {
            // Half of them answer slowly: their checks take 150 ms, which must not shift starts.
            let delay = if i % 2 == 0 { 0 } else { 150 };
            Backend::start(Script(vec![
                Action::Expect(REQUEST_END.to_vec()),
                Action::Sleep(Duration::from_millis(delay)),
                Action::send(http_response(200, "OK")),
                Action::Close,
            ]))
        })
        .collect();
    let mut conf = String::from("interval 1s\nvirtual tcp 127.1.0.1:80 {\n  check http\n");
    for b in &backends {
        conf.push_str(&format!("  real {}\n", b.addr()));
    }
    conf.push_str("}\n");
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let m = d.metrics_addr();
    let targets: Vec<String> = backends.iter().map(|b| b.addr().to_string()).collect();
    // Four checks of every real.
    let end = Instant::now() + 15 * S;
    while targets.iter().any(|t| check_starts(d.seen(), t).len() < 4) && Instant::now() < end {
        d.try_wait_for(&[" check "], S);
    }
    let page = scrape(m, None).unwrap();
    // A loop held up half a second would be a stall; later starts are the grid's fault.
    let late = max_lateness(&page);
    assert!(late <= 0.5, "a check started up to {late} s late");
    let slack = late + 0.02;
    let mut firsts = Vec::new();
    for target in &targets {
        let t = check_starts(d.seen(), target);
        assert!(t.len() >= 4, "only {} checks of {target}", t.len());
        // Period: each start is 1 s after the one before, and the fourth is 3 s after the
        // first: no drift accumulates.
        for w in t.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                (gap - 1.0).abs() <= slack,
                "gap {gap} (slack {slack}) in {t:?}"
            );
        }
        let span = t[3] - t[0];
        assert!(
            (span - 3.0).abs() <= slack,
            "3 periods took {span} (slack {slack})"
        );
        firsts.push(t[0]);
    }
    firsts.sort_by(f64::total_cmp);
    // Ten first checks spread evenly over the first second: 0.1 s apart.
    let spread = firsts[9] - firsts[0];
    assert!(
        (0.7 - slack..1.0 + slack).contains(&spread),
        "first checks spread over {spread} s (slack {slack}): {firsts:?}"
    );
    for w in firsts.windows(2) {
        assert!(
            w[1] - w[0] > 0.08 - slack,
            "two first checks within {} s (slack {slack}): {firsts:?}",
            w[1] - w[0]
        );
    }
}

/// While failing, checks come at `retry-interval`; once UP again, at `interval`.
#[test]
fn retry_interval_while_failing() {
    let (refused, _g) = refused_addr();
    let conf = format!(
        "interval 5s\nretry-interval 200ms\nvirtual tcp {} {{\n  real {refused}\n}}\n",
        vip(0)
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=down"], 7 * S);
    d.collect_for(S + S / 10);
    let n = d.count(&["check ", "result=fail"]);
    assert!(
        (5..=8).contains(&n),
        "{n} failed checks in 1.1 s at retry-interval 200ms"
    );
}

// ---------------------------------------------------------------------------------------------
// IPVS lines, quorum, sorry server
// ---------------------------------------------------------------------------------------------

/// Dry-run logs the table it would build at startup, then each change; with `on-down
/// remove` the destination leaves and comes back; losing quorum brings the sorry server.
/// The end-to-end smoke of the `ipvs op=` and quorum lines; the rules themselves are
/// table::tests (adoption_at_start_..., quorum_and_sorry_server_under_on_down_remove).
#[test]
fn ipvs_lines_quorum_and_sorry_server() {
    let a = Backend::start(Script::http(200, "OK"));
    let b = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\n\
         virtual tcp 127.1.0.1:80 {{\n  scheduler rr\n  persistent 300s\n  on-down remove\n  quorum 2\n  sorry 127.0.0.1:8080\n  check http\n  real {} weight 3\n  real {} weight 4\n}}\n\
         virtual fwmark 42 {{\n  check tcp\n  real {}\n}}\n",
        a.addr(),
        b.addr(),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["ipvs op=add-service virtual=tcp:127.1.0.1:80 scheduler=rr persistent=300 result=dry-run"], 3 * S);
    d.wait_for(
        &["ipvs op=add-service virtual=fwmark:42", "result=dry-run"],
        S,
    );
    // quiesce (default) at fwmark 42: added at weight 0 until checked; remove: not added yet.
    d.wait_for(&["ipvs op=add-dest virtual=fwmark:42", "weight=0"], S);
    d.wait_for(
        &[
            "ipvs op=add-dest virtual=tcp:127.1.0.1:80",
            &format!("real={}", a.addr()),
            "weight=3",
        ],
        3 * S,
    );
    d.wait_for(
        &[
            "ipvs op=add-dest virtual=tcp:127.1.0.1:80",
            &format!("real={}", b.addr()),
            "weight=4",
        ],
        3 * S,
    );
    b.set_script(Script::http(503, "no"));
    d.wait_for(&["event=down", &format!("real={}", b.addr())], 3 * S);
    d.wait_seen(
        &[
            "ipvs op=del-dest virtual=tcp:127.1.0.1:80",
            &format!("real={}", b.addr()),
        ],
        S,
    );
    // Events are logged when decided, IPVS lines when the change is done: same turn, either
    // order.
    d.wait_seen(&["event=quorum-lost virtual=tcp:127.1.0.1:80"], S);
    d.wait_seen(
        &["ipvs op=add-dest virtual=tcp:127.1.0.1:80 real=127.0.0.1:8080"],
        S,
    );
    b.set_script(Script::http(200, "OK"));
    d.wait_for(&["event=up", &format!("real={}", b.addr())], 3 * S);
    d.wait_seen(&["event=quorum-restored virtual=tcp:127.1.0.1:80"], S);
    d.wait_seen(
        &["ipvs op=del-dest virtual=tcp:127.1.0.1:80 real=127.0.0.1:8080"],
        S,
    );
    assert_eq!(d.count(&["event=quorum-lost"]), 1);
}

// ---------------------------------------------------------------------------------------------
// Notify
// ---------------------------------------------------------------------------------------------

/// The notify command runs with argv as written and the `LVSMON_*` environment, once per
/// event.
#[test]
fn notify_gets_argv_and_environment() {
    let b = Backend::start(Script::http(503, "down for maintenance"));
    let dir = TempDir::new("notify");
    let out = dir.0.join("events.txt");
    let conf = format!(
        "interval 300ms\nfall 1\nnotify-max 1\nnotify \"/bin/sh\" \"-c\" \"printf '%s|%s|%s|%s|%s|%s|%s\\n' \\\"$1\\\" \\\"$LVSMON_EVENT\\\" \\\"$LVSMON_VIRTUAL\\\" \\\"$LVSMON_REAL\\\" \\\"$LVSMON_REASON\\\" \\\"$LVSMON_DETAIL\\\" \\\"$LVSMON_FAILURES\\\" >> {}\" \"sh\" \"arg one\"\n\
         virtual tcp 127.1.0.1:80 {{\n  check http\n  real {}\n}}\n",
        out.display(),
        b.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=down"], 3 * S);
    let end = Instant::now() + 3 * S;
    let mut text = String::new();
    while Instant::now() < end {
        text = std::fs::read_to_string(&out).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The real's `down`, then (its only real being down) the virtual's `quorum-lost`, in order
    // (notify-max 1 runs one at a time), the second with an empty LVSMON_REAL.
    let want = format!(
        "arg one|down|tcp:127.1.0.1:80|{}|http-status|503|1\narg one|quorum-lost|tcp:127.1.0.1:80||||0",
        b.addr()
    );
    let end = Instant::now() + 3 * S;
    while text.trim_end() != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        text = std::fs::read_to_string(&out).unwrap_or_default();
    }
    assert_eq!(text.trim_end(), want);
    // Still down: no further notification.
    d.collect_for(S);
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
}

// ---------------------------------------------------------------------------------------------
// The director's own problems
// ---------------------------------------------------------------------------------------------

/// A config of `n` distinct checks (banner checks that differ in their expect) of one
/// address, `interval` apart.
fn distinct_checks(n: usize, addr: SocketAddr, interval: &str) -> String {
    let mut conf = format!("interval {interval}\n");
    for i in 0..n {
        conf.push_str(&format!(
            "virtual tcp {} {{\n  check banner --expect x{i}\n  real {addr}\n}}\n",
            vip(i)
        ));
    }
    conf
}

/// Whether this process holds CAP_SYS_RESOURCE (bit 24 of CapEff), which lets root raise a
/// hard limit.
fn has_cap_sys_resource() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(l.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 24) != 0)
}

/// Between fork and exec: set RLIMIT_NOFILE to (soft, hard) (`None`: keep the hard limit),
/// and with `drop_cap` take CAP_SYS_RESOURCE out of the bounding set, so that even root
/// cannot raise the hard limit after exec.
fn with_open_files(cmd: &mut Command, soft: u64, hard: Option<u64>, drop_cap: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and get/setrlimit only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if drop_cap {
                // CAP_SYS_RESOURCE is 24 (linux/capability.h). Without CAP_SETPCAP this fails,
                // and then the process had no CAP_SYS_RESOURCE to lose.
                libc::prctl(libc::PR_CAPBSET_DROP, 24, 0, 0, 0);
            }
            let mut l = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            l.rlim_cur = soft as libc::rlim_t;
            if let Some(h) = hard {
                l.rlim_max = h as libc::rlim_t;
            }
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// `max-checks-in-flight 4`: 40 servers that accept and never answer (each check holds its
/// socket for the whole 1 s timeout) are checked at most 4 at a time; the rest wait for
/// their next grid point, counted as deferred with their own detail, and the open-file need
/// counts 4 checks.
#[test]
fn max_checks_in_flight_caps_the_sockets_held_at_once() {
    let holders: Vec<Backend> = (0..40)
        .map(|_| Backend::start(Script(vec![Action::Hold])))
        .collect();
    let mut conf =
        String::from("interval 500ms\ntimeout 1s\nconnect-timeout 1s\nmax-checks-in-flight 4\n");
    for (i, b) in holders.iter().enumerate() {
        conf.push_str(&format!(
            "virtual tcp {} {{\n  check http\n  real {}\n}}\n",
            vip(i),
            b.addr()
        ));
    }
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let l = d.wait_for(&["msg=\"open files\""], 5 * S);
    assert_eq!(field(&l, "checks"), Some("4"), "{l}");
    let maddr = d.metrics_addr();
    let t = Instant::now();
    d.collect_for(3 * S);
    let accepted: u64 = holders.iter().map(|b| b.accepted()).sum();
    let secs = t.elapsed().as_secs_f64() + 1.0;
    // 4 at a time, each for 1 s (uncapped: 40 every 500 ms, about 240).
    assert!(
        accepted >= 4 && accepted as f64 <= 4.0 * secs.ceil() + 4.0,
        "{accepted} checks in {secs:.1} s"
    );
    let w = d.wait_seen(&["result=deferred", "max-checks-in-flight reached"], 5 * S);
    assert_eq!(field(&w, "errno"), Some("0"), "{w}");
    let page = scrape(maddr, None).unwrap();
    let local = metric(&page, "lvsmon_local_errors_total").unwrap();
    assert!(local >= 100.0, "lvsmon_local_errors_total {local}");
    println!("max-checks-in-flight 4: {accepted} checks accepted in {secs:.1} s, {local} deferred");
}

/// Startup with a soft limit below what the plan needs: lvsmon raises it to exactly the need
/// (one per distinct check plus its own), says so, and runs.
#[test]
fn open_files_soft_limit_raised_to_what_the_plan_needs() {
    let (refused, _guard) = refused_addr();
    let conf = distinct_checks(300, refused, "30s");
    let mut d = Lvsmon::start_with(&conf, &[], |cmd| with_open_files(cmd, 64, None, false));
    let line = d.wait_for(&["msg=\"open files\""], 5 * S);
    let need: u64 = field(&line, "need").unwrap().parse().unwrap();
    let own: u64 = field(&line, "own").unwrap().parse().unwrap();
    let taken: u64 = field(&line, "taken").unwrap().parse().unwrap();
    assert_eq!(field(&line, "checks"), Some("300"), "{line}");
    assert_eq!(need, taken + 300 + own, "{line}");
    assert!((3..need).contains(&taken) && own >= 16 + 8, "{line}");
    assert_eq!(field(&line, "was_soft"), Some("64"), "{line}");
    assert_eq!(
        field(&line, "soft"),
        Some(need.to_string().as_str()),
        "{line}"
    );
    let (soft, hard) = open_files_limit(d.pid()).expect("/proc/PID/limits");
    assert_eq!(soft, need, "soft limit of the running daemon");
    assert_eq!(
        field(&line, "hard"),
        Some(hard.to_string().as_str()),
        "{line}"
    );
    d.wait_for(&["msg=\"starting\""], 5 * S);
    assert_eq!(d.stop().0, Some(0));

    // With CAP_SYS_RESOURCE, root raises the hard limit too.
    if has_cap_sys_resource() {
        let mut d = Lvsmon::start_with(&conf, &[], |cmd| with_open_files(cmd, 64, Some(64), false));
        let line = d.wait_for(&["msg=\"open files\""], 5 * S);
        let need = field(&line, "need").unwrap().to_owned();
        assert_eq!(field(&line, "hard"), Some(need.as_str()), "{line}");
        assert_eq!(field(&line, "was_hard"), Some("64"), "{line}");
        assert_eq!(d.stop().0, Some(0));
    } else {
        eprintln!("no CAP_SYS_RESOURCE here: the hard-limit half is covered by the refusal test");
    }
}

/// Startup with a hard limit below what the plan needs and no right to raise it: one line
/// saying how many open files are needed and what to raise, a 500 ms pause, exit 1.
/// `--check-config` tells the same need beforehand.
#[test]
fn open_files_refused_when_the_hard_limit_is_too_low() {
    let (refused, _guard) = refused_addr();
    let dir = TempDir::new("nofile");
    let conf = dir.file("lvsmon.conf", &distinct_checks(300, refused, "30s"));
    let mut cmd = Command::new(bin());
    cmd.arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("--socket")
        .arg(dir.0.join("sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    with_open_files(&mut cmd, 100, Some(100), true);
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let rest = err
        .trim_end()
        .strip_prefix("lvsmon: too few open files: ")
        .unwrap_or_else(|| panic!("{err}"));
    let (need, rest) = rest.split_once(' ').unwrap();
    let need: u64 = need.parse().unwrap();
    assert!(need > 300 + 24, "{err}");
    assert_eq!(
        rest,
        "needed for 300 checks and notify-max 8 (soft limit 100, hard limit 100); raise the hard limit \
         (ulimit -Hn, or LimitNOFILE= in the systemd unit)"
    );
    assert!(took >= Duration::from_millis(500), "exited after {took:?}");

    let out = check_config(&conf);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("open files: ")
            && l.contains(" needed for 300 checks and notify-max 8 (")),
        "{text}"
    );
}

/// Out of file descriptors while running (the director's fault, not the real servers'):
/// checks are deferred and counted, a warning is logged at most once a second, no real is
/// marked down, a control client that came meanwhile is served once descriptors are back,
/// and checks resume.
#[test]
fn out_of_file_descriptors_at_run_time_defers_and_never_marks_down() {
    let ok = Serve::Tcp(vec![
        Step::Expect(REQUEST_END.to_vec()),
        Step::Send(http_response(200, "OK")),
    ]);
    let farm = Farm::start(vec![ok; 50], None, 120 * S);
    let mut conf = String::from("interval 200ms\ntimeout 1s\nfall 1\nrise 1\n");
    for v in 0..5 {
        conf.push_str(&format!("virtual tcp {} {{\n  check http\n", vip(v)));
        for r in 0..10 {
            conf.push_str(&format!("  real {}\n", farm.addr(v * 10 + r)));
        }
        conf.push_str("}\n");
    }
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let maddr = d.metrics_addr();
    for _ in 0..50 {
        d.wait_for(&["event=up"], 5 * S);
    }
    let pid = d.pid();
    let (soft, hard) = open_files_limit(pid).unwrap();
    let before = d.seen().len();
    // Descriptor numbers from 3 up are refused now: every new socket fails with EMFILE.
    set_open_files_limit(pid, 3, hard).unwrap();
    let window = Instant::now();
    // A client that connects meanwhile waits in the listen backlog.
    let sock = d.socket();
    let client = std::thread::spawn(move || {
        let out = Command::new(bin())
            .args(["status", "--json", "--socket"])
            .arg(sock)
            .output()
            .unwrap();
        (out, Instant::now())
    });
    d.collect_for(3 * S);
    set_open_files_limit(pid, soft, hard).unwrap();
    let restored = Instant::now();
    let held = restored - window;
    let (out, answered) = client.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        answered.saturating_duration_since(restored) < 2 * S,
        "the control client was answered {:?} after descriptors came back",
        answered.saturating_duration_since(restored)
    );
    let status = parse_status_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(status.len(), 50);
    assert!(status.iter().all(|r| r.state == "up"), "{status:?}");
    let checks_then: u64 = status.iter().map(|r| r.checks).sum();
    d.collect_for(2 * S);

    let window_lines = &d.seen()[before..];
    let deferred: Vec<&String> = window_lines
        .iter()
        .filter(|l| l.contains("result=deferred") && l.contains("reason=local-error"))
        .collect();
    assert!(!deferred.is_empty(), "no deferred check logged");
    assert!(
        deferred.iter().all(|l| l.contains("detail=\"EMFILE\"")),
        "{deferred:?}"
    );
    // Rate-limited: one line a second at most, with the rest counted in held_back.
    let most = held.as_secs() as usize + 2;
    assert!(
        deferred.len() <= most,
        "{} warnings in {held:?}",
        deferred.len()
    );
    let held_back: u64 = deferred
        .iter()
        .map(|l| field(l, "held_back").unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(held_back > 0, "{deferred:?}");
    assert_eq!(
        d.count(&["event=down"]),
        0,
        "a local error marked a server down"
    );
    let page = scrape(maddr, None).unwrap();
    let local = metric(&page, "lvsmon_local_errors_total").unwrap();
    // 50 checks every 200 ms for about 3 s, each deferred once per grid point.
    assert!(
        local >= 200.0 && local >= (deferred.len() as u64 + held_back) as f64,
        "lvsmon_local_errors_total {local}, {} logged + {held_back} held back",
        deferred.len()
    );
    // Checks resumed: about 10 more verdicts per real in the 2 s since.
    let (_, text, _) = d.client(&["status", "--json"]);
    let status = parse_status_json(&text);
    let checks_now: u64 = status.iter().map(|r| r.checks).sum();
    assert!(
        checks_now >= checks_then + 50 * 6,
        "{checks_then} checks then, {checks_now} now"
    );
    assert!(
        status.iter().all(|r| r.state == "up" && r.failures == 0),
        "{status:?}"
    );
    assert_eq!(d.stop().0, Some(0));
}

/// No ephemeral ports left (EADDRNOTAVAIL from connect): checks are deferred, never failed.
/// The port range is set inside a network namespace of the test's own (it is a per-namespace
/// sysctl), to four ports, and twelve distinct checks hold a connection each for 0.8 s.
#[test]
fn no_ephemeral_ports_defers_and_never_marks_down() {
    let Some(ns) = Netns::new_or_skip() else {
        return;
    };
    let out = ns.run_output(
        &[
            "sh",
            "-c",
            "echo '40000 40003' > /proc/sys/net/ipv4/ip_local_port_range",
        ],
        5 * S,
    );
    assert!(out.status.success(), "{out:?}");
    let b = Backend::start_in(
        &ns,
        "127.0.0.1:8080".parse().unwrap(),
        Script(vec![
            Action::Sleep(Duration::from_millis(800)),
            Action::send("SSH-2.0-slow\r\n"),
            Action::Drain,
        ]),
    );
    let mut conf = String::from("interval 500ms\ntimeout 3s\nfall 1\n");
    for k in 0..12 {
        conf.push_str(&format!(
            "virtual tcp {} {{\n  check banner --expect {}\n  real {}\n}}\n",
            vip(k),
            &"SSH-2.0-slow"[..k + 1],
            b.addr()
        ));
    }
    let dir = TempDir::new("ports");
    let path = dir.file("lvsmon.conf", &conf);
    let mut d = dry_run_in_netns(&ns, &path, dir);
    let line = d.wait_for(&["result=deferred", "reason=local-error"], 5 * S);
    assert!(line.contains("EADDRNOTAVAIL"), "{line}");
    d.wait_seen(&["event=up"], 5 * S);
    d.collect_for(2 * S);
    assert_eq!(
        d.count(&["event=down"]),
        0,
        "a local error marked a server down"
    );
    assert!(d.count(&["result=pass"]) >= 4);
    assert_eq!(d.stop().0, Some(0));
}

/// lvsmon never spins: with every real refused at once (200 at a 100 ms interval) or
/// blackholed (200 whose connects are never answered), its CPU stays far below a core.
#[test]
fn never_spins_when_every_real_is_refused_or_blackholed() {
    let mut entries = vec![Serve::Refused; 200];
    entries.extend(vec![Serve::FullQueue; 200]);
    let farm = Farm::start(entries, None, 60 * S);
    let mut conf = String::from("interval 100ms\nconnect-timeout 1s\ntimeout 1s\nfall 1\n");
    for v in 0..20 {
        conf.push_str(&format!("virtual tcp {} {{\n  check tcp\n", vip(v)));
        for r in 0..20 {
            conf.push_str(&format!("  real {}\n", farm.addr(v * 20 + r)));
        }
        conf.push_str("}\n");
    }
    // Without -v: the check lines of 2,000 checks a second are not what is measured.
    let dir = TempDir::new("spin");
    let path = dir.file("lvsmon.conf", &conf);
    let mut cmd = Command::new(bin());
    cmd.arg("-n")
        .arg("-f")
        .arg(&path)
        .arg("--socket")
        .arg(dir.0.join("lvsmon.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut d = Lvsmon::spawn(cmd, dir);
    d.wait_for(&["msg=\"starting\""], 5 * S);
    // Every real down first (refused after one interval, blackholed after the 1 s timeout).
    d.collect_for(3 * S);
    let mut meter = CpuMeter::new(d.pid());
    std::thread::sleep(5 * S);
    let cpu = meter.percent();
    let (code, text, err) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let status = parse_status_json(&text);
    assert_eq!(status.len(), 400);
    let (refused, blackholed) = status.split_at(200);
    eprintln!(
        "lvsmon CPU with 200 reals refused every 100 ms and 200 blackholed: {cpu:.1}% of one core \
         (checks: refused {}..{}, blackholed {}..{})",
        refused.iter().map(|r| r.checks).min().unwrap(),
        refused.iter().map(|r| r.checks).max().unwrap(),
        blackholed.iter().map(|r| r.checks).min().unwrap(),
        blackholed.iter().map(|r| r.checks).max().unwrap(),
    );
    // The checks really ran, and failed for what they met.
    assert!(refused.iter().all(|r| r.state == "down"
        && r.last_reason.as_deref() == Some("connect-refused")
        && r.checks >= 50));
    assert!(blackholed.iter().all(|r| r.state == "down"
        && r.last_reason.as_deref() == Some("connect-timeout")
        && r.checks >= 5));
    // A spin is a whole core; the work itself is a few percent.
    assert!(cpu < 30.0, "lvsmon used {cpu:.1}% of a core");
    assert_eq!(d.stop().0, Some(0));
}

/// After a verdict the director closes with a reset: no TIME_WAIT is left behind on either
/// side for a check connection.
#[test]
fn no_time_wait_after_checks() {
    let b = Backend::start(Script::http(200, "OK"));
    let port = b.addr().port();
    let conf = format!(
        "interval 100ms\nvirtual tcp {} {{\n  check http\n  real {}\n}}\n",
        vip(0),
        b.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up"], 3 * S);
    d.collect_for(S);
    assert!(d.count(&["result=pass"]) >= 8);
    let tw = time_wait_on_port(port);
    assert_eq!(tw, 0, "{tw} TIME_WAIT sockets for port {port}");
}

/// TIME_WAIT entries (state 06) with `port` as local or remote port, from /proc/net/tcp.
fn time_wait_on_port(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[3] == "06" && (f[1].ends_with(&hex) || f[2].ends_with(&hex))
        })
        .count()
}

// ---------------------------------------------------------------------------------------------
// Command line, signals, fatal errors
// ---------------------------------------------------------------------------------------------

#[test]
fn sigterm_and_sigint_stop_cleanly() {
    let b = Backend::start(Script::http(200, "OK"));
    let conf = format!("virtual tcp {} {{\n  real {}\n}}\n", vip(0), b.addr());
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("pid");
        let pidfile = dir.0.join("lvsmon.pid");
        let mut d = Lvsmon::start(&conf, &["--pidfile", pidfile.to_str().unwrap()]);
        d.wait_for(&["event=up"], 5 * S);
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(pid, d.pid());
        d.signal(sig);
        let t = Instant::now();
        assert_eq!(d.wait_exit(3 * S), Some(0), "signal {sig}");
        assert!(t.elapsed() < S, "took {:?} to stop", t.elapsed());
        assert!(!pidfile.exists(), "pid file left behind");
        assert_eq!(d.count(&["msg=\"stopping\""]), 1);
    }
}

/// A fatal startup error: one line naming the cause, a 500 ms pause, exit 1.
#[test]
fn fatal_error_prints_one_line_waits_and_exits_1() {
    let dir = TempDir::new("fatal");
    let conf = dir.file(
        "ok.conf",
        "virtual tcp 127.1.0.1:80 {\n  real 127.0.0.1:9\n}\n",
    );
    // Without --dry-run on a kernel without IPVS (this machine's; the VM tests cover the
    // other case): lvsmon(8), IPVS message, then exit 1 after 500 ms.
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        eprintln!("IPVS is present here: the no-IPVS half of this test does not apply");
    } else {
        let t = Instant::now();
        let out = Command::new(bin()).arg("-f").arg(&conf).output().unwrap();
        let took = t.elapsed();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("IPVS is not available in this kernel"),
            "{err}"
        );
        assert!(
            err.contains("modprobe ip_vs") && err.contains("--dry-run"),
            "{err}"
        );
        assert!(took >= Duration::from_millis(500), "exited after {took:?}");
    }
    // A bad config, same rule, with file:line:col.
    let bad = dir.file(
        "bad.conf",
        "interval 10s\nvirtual tcp 127.1.0.1:80 {\n  check htpp\n}\n",
    );
    let t = Instant::now();
    let out = Command::new(bin())
        .arg("-n")
        .arg("-f")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(t.elapsed() >= Duration::from_millis(500));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:3:9: unknown plugin \"htpp\""),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// `--check-config` exits 1 on every bad input of the config tests, naming line and column,
/// and 0 (with counts) on the shipped example.
#[test]
fn check_config_rejects_every_bad_file() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(format!("{root}/tests/data/bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    entries.sort();
    for p in entries {
        let bytes = std::fs::read(&p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        // First line: `# expect: LINE:COL: part of the message`.
        let want = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap()
            .trim();
        let (place, message) = want.split_once(": ").unwrap();
        let out = check_config(&p);
        assert_eq!(out.status.code(), Some(1), "{}", p.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!(":{place}: ")) && err.contains(message),
            "{}: {err} does not say {want}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 20, "only {n} bad inputs");
    // The example's notify programs are checked where they will run: here, inside a chroot
    // that has them.
    let chroot = TempDir::new("example-chroot");
    for program in ["lvs-notify", "page-mail-team"] {
        use std::os::unix::fs::PermissionsExt;
        let dir = chroot.0.join("usr/local/sbin");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(program);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(bin())
        .args(["--check-config", "--chroot"])
        .arg(&chroot.0)
        .arg("-f")
        .arg(format!("{root}/lvsmon.conf.example"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("virtual services"));
}

#[test]
fn help_names_every_option_and_usage_errors_exit_2() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--file",
        "--interval",
        "--check-config",
        "--dry-run",
        "--log",
        "--verbose",
        "--quiet",
        "--pidfile",
        "--help",
        "--version",
    ] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
    let out = Command::new(bin()).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin()).arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    for sub in ["status", "history", "drain", "undrain", "reload"] {
        assert!(help.contains(sub), "--help lacks the {sub} command");
    }
    for opt in ["--socket", "--metrics", "--state-dir", "--state-interval"] {
        assert!(help.contains(opt), "--help lacks {opt}");
    }
}

/// `--interval` overrides the file's global interval (but not a virtual's own).
#[test]
fn interval_flag_overrides_the_global_value() {
    let a = Backend::start(Script::http(200, "OK"));
    let b = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 30s\nvirtual tcp {} {{\n  real {}\n}}\nvirtual tcp {} {{\n  interval 20s\n  real {}\n}}\n",
        vip(0),
        a.addr(),
        vip(1),
        b.addr()
    );
    let d = Lvsmon::start(&conf, &["--interval", "0.2"]);
    std::thread::sleep(S + S / 2);
    drop(d);
    let (na, nb) = (a.accepted(), b.accepted());
    assert!(na >= 5, "--interval 0.2 gave {na} checks in 1.5 s");
    assert!(
        nb <= 1,
        "a virtual's own interval was overridden: {nb} checks"
    );
}

// ---------------------------------------------------------------------------------------------
// Control socket and metrics
// ---------------------------------------------------------------------------------------------

/// `lvsmon status` prints a table and `--json` an array with the fields of lvsmon(8), CONTROL SOCKET;
/// without a daemon the client says so clearly.
#[test]
fn status_table_and_json() {
    let a = Backend::start(Script::http(200, "OK"));
    let b = Backend::start(Script::http(503, "no"));
    let conf = format!(
        "interval 200ms\nfall 1\nvirtual tcp {} {{\n  check http\n  real {} weight 7\n  real {}\n}}\n",
        vip(0),
        a.addr(),
        b.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_seen(&["event=down"], 5 * S);
    d.wait_seen(&["event=up"], 5 * S);
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("VIRTUAL"), "{out}");
    let up = lines
        .iter()
        .find(|l| l.contains(&a.addr().to_string()))
        .unwrap();
    assert!(
        up.contains(" up ") && up.contains("tcp:127.1.0.1:80"),
        "{up}"
    );
    let down = lines
        .iter()
        .find(|l| l.contains(&b.addr().to_string()))
        .unwrap();
    assert!(
        down.contains(" down ") && down.contains("http-status \"503\""),
        "{down}"
    );
    let (code, json, _) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0));
    // A real JSON parser reads it; every field of lvsmon(8), CONTROL SOCKET is there.
    let check = Command::new("python3")
        .arg("-c")
        .arg(
            "import json,sys\nrows=json.load(sys.stdin)\nfor r in rows:\n  print(r['virtual'],r['real'],r['state'],r['since']>0,r['weight'],r['last_reason'],r['last_detail'],r['last_latency_seconds']>=0,r['checks']>0,r['failures'])",
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(json.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let parsed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{json}");
    assert!(
        parsed.contains(&format!(
            "tcp:127.1.0.1:80 {} up True 7 None None True True 0",
            a.addr()
        )),
        "{parsed}"
    );
    assert!(
        parsed.contains(&format!(
            "tcp:127.1.0.1:80 {} down True 0 http-status 503 True True",
            b.addr()
        )),
        "{parsed}"
    );
    // No daemon: a clear error, exit 1.
    let (code, _, err) = {
        let out = Command::new(bin())
            .args(["status", "--socket", "/nonexistent/lvsmon.sock"])
            .output()
            .unwrap();
        (
            out.status.code(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no lvsmon is running with control socket /nonexistent/lvsmon.sock"),
        "{err}"
    );
}

/// `drain` takes a real server out of service by hand (weight 0, events), `undrain` brings
/// it back; the DRAINED mark survives a restart through the state directory.
#[test]
fn drain_undrain_and_restart_keeps_the_mark() {
    let a = Backend::start(Script::http(200, "OK"));
    let dir = TempDir::new("drain");
    let state = dir.0.join("state");
    let conf = format!(
        "interval 200ms\nvirtual tcp {} {{\n  check http\n  real {} weight 7\n}}\n",
        vip(0),
        a.addr()
    );
    let args = ["--state-dir", state.to_str().unwrap()];
    let mut d = Lvsmon::start(&conf, &args);
    d.wait_for(&["event=up"], 5 * S);
    let (code, out, _) = d.client(&["drain", &a.addr().to_string()]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ok: drained 1 of 1"), "{out}");
    d.wait_for(&["event=drained", &format!("real={}", a.addr())], S);
    d.wait_seen(&["ipvs op=edit-dest", "weight=0"], S);
    let (_, out, _) = d.client(&["status"]);
    assert!(out.contains(" drained "), "{out}");
    // Unknown real: refused, exit 1.
    let (code, _, err) = d.client(&["drain", "192.0.2.99:80"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no real server 192.0.2.99:80"), "{err}");
    // Restart: still drained, never back at weight 7 in between.
    assert_eq!(d.stop().0, Some(0));
    let mut d = Lvsmon::start(&conf, &args);
    d.wait_seen(&["check ", "result=pass"], 5 * S);
    d.collect_for(S / 2);
    let (_, out, _) = d.client(&["status"]);
    assert!(out.contains(" drained "), "after restart: {out}");
    assert_eq!(
        d.count(&["weight=7"]),
        0,
        "a drained real got its weight back on restart"
    );
    let (code, out, _) = d.client(&["undrain", &a.addr().to_string(), "tcp:127.1.0.1:80"]);
    assert_eq!(code, Some(0), "{out}");
    d.wait_for(&["event=undrained"], S);
    d.wait_seen(&["ipvs op=edit-dest", "weight=7"], S);
}

/// Clients that hang, send garbage or never read their reply never stall checking, and a
/// well-behaved client is still answered.
#[test]
fn bad_clients_never_stall_checks() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let a = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 100ms\nvirtual tcp {} {{\n  check http\n  real {}\n}}\n",
        vip(0),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    d.wait_for(&["event=up"], 5 * S);
    let maddr = d.metrics_addr();
    let mut keep = Vec::new();
    // Silent clients.
    for _ in 0..5 {
        keep.push(UnixStream::connect(d.socket()).unwrap());
    }
    // Garbage, and an over-long request.
    for junk in [&b"\x00\xff\x17garbage\n"[..], &[b'x'; 5000][..]] {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        let _ = s.write_all(junk);
        let mut reply = String::new();
        s.set_read_timeout(Some(2 * S)).unwrap();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("error: "), "{reply:?}");
    }
    // Clients that ask for a reply and never read it.
    for _ in 0..4 {
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.write_all(b"status\n").unwrap();
        keep.push(s);
        let mut m = std::net::TcpStream::connect(maddr).unwrap();
        m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        keep.push(UnixStream::pair().unwrap().0);
        std::mem::forget(m);
    }
    let before = d.count(&["result=pass"]);
    d.collect_for(2 * S);
    let checks = d.count(&["result=pass"]) - before;
    assert!(
        checks >= 17,
        "only {checks} checks in 2 s at 100 ms while clients misbehaved"
    );
    let (code, out, _) = d.client(&["status"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(" up "), "{out}");
    drop(keep);
}

/// A real scrape of /metrics, read by the Prometheus project's own parser (PyPI
/// prometheus-client), agrees with what happened.
#[test]
fn metrics_scrape_parses_and_agrees() {
    use std::io::{Read, Write};
    let a = Backend::start(Script::http(200, "OK"));
    let b = Backend::start(Script::http(503, "no"));
    let c = Backend::start_on("[::1]:0".parse().unwrap(), Script::http(200, "OK"));
    // Sync daemons (left alone under --dry-run) give a family of their own.
    let conf = format!(
        "interval 200ms\nfall 1\nsync-daemon master lo id 7 maxlen 1400\nsync-daemon backup lo id 8\nvirtual tcp {} {{\n  check http\n  real {}\n  real {}\n}}\nvirtual tcp [::1]:80 {{\n  real {}\n}}\n",
        vip(0),
        a.addr(),
        b.addr(),
        c.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let maddr = d.metrics_addr();
    d.wait_seen(&["event=down"], 5 * S);
    d.collect_for(S);
    let scrape = |path: &str| {
        let mut s = std::net::TcpStream::connect(maddr).unwrap();
        s.set_read_timeout(Some(5 * S)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: lvsmon\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    assert!(scrape("/other").starts_with("HTTP/1.1 404"));
    let reply = scrape("/metrics");
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.1 200 OK") && head.contains("text/plain; version=0.0.4"),
        "{head}"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(concat!(
            "import sys\n",
            "from prometheus_client.parser import text_string_to_metric_families\n",
            "for f in text_string_to_metric_families(sys.stdin.read()):\n",
            "  for s in f.samples:\n",
            "    print(f.type, s.name, sorted(s.labels.items()), s.value)\n",
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(body.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let parsed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the scrape: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = |prefix: &str| -> f64 {
        let l = parsed
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{parsed}"));
        l.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let checks = value("counter lvsmon_checks_total [] ");
    let logged = d.count(&["check ", "result="]) as f64;
    assert!(
        checks >= logged - 3.0 && checks <= logged + 10.0,
        "checks_total {checks}, log lines {logged}"
    );
    assert!(value("counter lvsmon_check_failures_total [('reason', 'http-status')] ") >= 1.0);
    assert_eq!(
        value("gauge lvsmon_virtual_reals_up [('virtual', 'tcp:127.1.0.1:80')] "),
        1.0
    );
    assert_eq!(
        value("gauge lvsmon_virtual_reals_up [('virtual', 'tcp:[::1]:80')] "),
        1.0
    );
    assert_eq!(
        value(&format!(
            "gauge lvsmon_real_up [('real', '{}'), ('virtual', 'tcp:127.1.0.1:80')] ",
            b.addr()
        )),
        0.0
    );
    assert_eq!(
        value(&format!(
            "gauge lvsmon_real_up [('real', '{}'), ('virtual', 'tcp:127.1.0.1:80')] ",
            a.addr()
        )),
        1.0
    );
    assert!(
        value(
            "counter lvsmon_ipvs_operations_total [('op', 'add-service'), ('result', 'dry-run')] "
        ) == 2.0
    );
    for (state, id) in [("master", 7), ("backup", 8)] {
        assert_eq!(
            value(&format!(
                "gauge lvsmon_sync_daemon_up [('id', '{id}'), ('iface', 'lo'), ('state', '{state}')] "
            )),
            0.0
        );
    }
    assert_eq!(
        parsed.matches(" lvsmon_sync_daemon_up ").count(),
        2,
        "{parsed}"
    );
    let count = value("histogram lvsmon_check_duration_seconds_count [] ");
    assert!((count - checks).abs() < 5.0, "{count} vs {checks}");
    assert!(value("histogram lvsmon_check_lateness_seconds_bucket [('le', '+Inf')] ") >= count);
    // The munin plugin reads the same endpoint, run as munin would.
    let plugin = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/munin/lvsmon_");
    let tmp = TempDir::new("munin");
    let link = tmp.0.join("lvsmon_reals");
    std::os::unix::fs::symlink(plugin, &link).unwrap();
    let out = Command::new(&link)
        .env("url", format!("http://{maddr}/metrics"))
        .output()
        .unwrap();
    let text = stdout_of_success(&out);
    assert!(
        text.contains("tcp_127_1_0_1_80.value 1") && text.contains("total.value 2"),
        "{text}"
    );
}

/// `lvsmon history` reports availability and latency per level, and history survives a
/// restart through the state directory; a corrupt state file is set aside, never fatal.
#[test]
fn history_levels_restart_and_corrupt_state() {
    let a = Backend::start(Script::http(200, "OK"));
    let b = Backend::start(Script::http(503, "no"));
    let dir = TempDir::new("hist");
    let state = dir.0.join("state");
    let conf = format!(
        "interval 100ms\nvirtual tcp {} {{\n  check http\n  real {}\n  real {}\n}}\n",
        vip(0),
        a.addr(),
        b.addr()
    );
    let args = ["--state-dir", state.to_str().unwrap()];
    let mut d = Lvsmon::start(&conf, &args);
    d.wait_seen(&["event=down"], 5 * S);
    d.collect_for(S);
    let (code, out, err) = d.client(&["history", "--since", "10m"]);
    assert_eq!(code, Some(0), "{err}");
    let director = out
        .lines()
        .find(|l| l.starts_with("director"))
        .unwrap()
        .to_owned();
    let cols: Vec<&str> = director.split_whitespace().collect();
    let (checks, failures): (u64, u64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
    assert!(
        checks >= 15 && failures * 2 >= checks - 2 && failures * 2 <= checks + 2,
        "{out}"
    );
    assert!(director.contains("raw since"), "{director}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("virtual") && l.contains("tcp:127.1.0.1:80")),
        "{out}"
    );
    // One real: its row, at 100 % availability, and its recent results.
    let (_, out, _) = d.client(&["history", "tcp:127.1.0.1:80", &a.addr().to_string()]);
    assert!(
        out.contains("100.000%") && out.contains("recent results") && out.contains(" pass"),
        "{out}"
    );
    let (_, json, _) = d.client(&["history", "tcp:127.1.0.1:80", "--json"]);
    assert!(
        json.contains("\"level\":\"virtual\"") && json.contains("\"level\":\"real\""),
        "{json}"
    );
    let (code, _, err) = d.client(&["history", "tcp:10.9.9.9:80"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no virtual service"), "{err}");
    // Restart: the history is still there.
    assert_eq!(d.stop().0, Some(0));
    assert!(d.count(&["msg=\"state saved\""]) == 1);
    let mut d = Lvsmon::start(&conf, &args);
    d.wait_seen(&["msg=\"state loaded\"", "used=2"], 5 * S);
    let (_, out, _) = d.client(&["history", "--since", "10m"]);
    let director = out
        .lines()
        .find(|l| l.starts_with("director"))
        .unwrap()
        .to_owned();
    let after: u64 = director.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(
        after >= checks,
        "history lost on restart: {checks} then {after}"
    );
    assert_eq!(d.stop().0, Some(0));
    // A damaged state file: reported, set aside, and the daemon runs.
    let file = state.join("state");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let mut d = Lvsmon::start(&conf, &args);
    let l = d.wait_seen(&["msg=\"state not loaded\""], 5 * S);
    assert!(
        l.contains("checksum mismatch") || l.contains("truncated"),
        "{l}"
    );
    d.wait_seen(&["event=up"], 5 * S);
    let aside = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("state.bad-"));
    assert!(aside, "the damaged file was not set aside");
}

// ---------------------------------------------------------------------------------------------
// UDP checks
// ---------------------------------------------------------------------------------------------

/// `check udp`: a reply that matches passes, one that does not fails `expect-mismatch`, a
/// port with no listener fails `connect-refused` (the ICMP port unreachable reaches the
/// connected socket), and a server that never answers fails `recv-timeout`.
#[test]
fn udp_checks_against_loopback_servers() {
    let echo = UdpServer::start(|d| Some(d.to_vec()));
    let silent = UdpServer::start(|_| None);
    // A UDP port with nothing bound: take one, then free it.
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let conf = format!(
        "interval 300ms\ntimeout 500ms\nfall 1\n\
         virtual udp {} {{\n  check udp --send ping --expect ping\n  real {}\n}}\n\
         virtual udp {} {{\n  check udp --send ping --expect pong\n  real {}\n}}\n\
         virtual udp {} {{\n  check udp --send ping\n  real {}\n}}\n\
         virtual udp {} {{\n  check udp --send ping\n  real {}\n}}\n",
        vip(0),
        echo.addr,
        vip(1),
        echo.addr,
        vip(2),
        free,
        vip(3),
        silent.addr
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_seen(&["event=up", "virtual=udp:127.1.0.1:80"], 5 * S);
    let ev = d.wait_seen(&["event=down", "virtual=udp:127.1.0.2:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("expect-mismatch"), "{ev}");
    let ev = d.wait_seen(&["event=down", "virtual=udp:127.1.0.3:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("connect-refused"), "{ev}");
    let ev = d.wait_seen(&["event=down", "virtual=udp:127.1.0.4:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("recv-timeout"), "{ev}");
    let line = d.wait_seen(
        &["check ", "plugin=udp", &format!("target={} ", silent.addr)],
        2 * S,
    );
    let took = secs(&line, "duration");
    assert!(
        (0.45..0.9).contains(&took),
        "recv-timeout after {took} s: {line}"
    );
}

/// `check dns` against a small responder: a matching answer passes, an unexpected rcode fails
/// `dns-rcode` with its name, and the expected address must be in the answer.
#[test]
fn dns_checks_against_a_loopback_responder() {
    let ok = UdpServer::start(|q| dns_answer(q, 0));
    let nx = UdpServer::start(|q| dns_answer(q, 3));
    let conf = format!(
        "interval 300ms\ntimeout 500ms\nfall 1\n\
         virtual udp {} {{\n  check dns --query www.example.test --expect-address 192.0.2.7\n  real {}\n}}\n\
         virtual udp {} {{\n  check dns --query www.example.test --expect-address 192.0.2.8\n  real {}\n}}\n\
         virtual udp {} {{\n  check dns --query gone.example.test\n  real {}\n}}\n\
         virtual udp {} {{\n  check dns --query gone.example.test --expect-rcode NXDOMAIN\n  real {}\n}}\n",
        vip(0),
        ok.addr,
        vip(1),
        ok.addr,
        vip(2),
        nx.addr,
        vip(3),
        nx.addr
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_seen(&["event=up", "virtual=udp:127.1.0.1:80"], 5 * S);
    let ev = d.wait_seen(&["event=down", "virtual=udp:127.1.0.2:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("expect-mismatch"), "{ev}");
    let ev = d.wait_seen(&["event=down", "virtual=udp:127.1.0.3:80"], 5 * S);
    assert_eq!(field(&ev, "reason"), Some("dns-rcode"), "{ev}");
    assert_eq!(field(&ev, "detail"), Some("NXDOMAIN"), "{ev}");
    d.wait_seen(&["event=up", "virtual=udp:127.1.0.4:80"], 5 * S);
}

// ---------------------------------------------------------------------------------------------
// Privilege drop (--user, --chroot)
// ---------------------------------------------------------------------------------------------

/// The uid and primary gid of `name` in the password database.
fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a NUL-terminated name; the fields are copied out at once (the
    // test threads do not call getpwnam elsewhere).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    (!pw.is_null()).then(|| unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// The value of `Key:` in `/proc/PID/status`, words joined by one space.
fn proc_status(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `"checks":N` of the first real in a `status --json` reply.
fn json_checks(json: &str) -> u64 {
    let at = json.find("\"checks\":").expect("checks field") + "\"checks\":".len();
    json[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// `--user nobody --chroot DIR`: the daemon runs as nobody inside DIR with CAP_NET_ADMIN alone
/// (permitted, effective and bounding sets), and keeps checking, answering on the control
/// socket and saving state through the directory it opened before the chroot. The socket
/// file it cannot remove at exit does not stop the next start.
#[test]
fn user_and_chroot_keep_only_net_admin_and_everything_works() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED user_and_chroot_keep_only_net_admin_and_everything_works: needs root");
        return;
    }
    let Some((uid, gid)) = user_ids("nobody") else {
        eprintln!(
            "SKIPPED user_and_chroot_keep_only_net_admin_and_everything_works: no user nobody"
        );
        return;
    };
    let a = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 200ms\nvirtual tcp {} {{\n  check http\n  real {} weight 4\n}}\n",
        vip(0),
        a.addr()
    );
    let jail = TempDir::new("chroot");
    let jail_s = jail.0.to_str().unwrap();
    let mut d = Lvsmon::start(
        &conf,
        &[
            "--user",
            "nobody",
            "--chroot",
            jail_s,
            "--state-interval",
            "1s",
        ],
    );
    let l = d.wait_for(&["msg=\"privileges dropped\""], 5 * S);
    assert_eq!(field(&l, "user"), Some("nobody"), "{l}");
    assert_eq!(field(&l, "uid"), Some(uid.to_string().as_str()), "{l}");
    assert_eq!(field(&l, "gid"), Some(gid.to_string().as_str()), "{l}");
    assert_eq!(field(&l, "chroot"), Some(jail_s), "{l}");
    assert_eq!(field(&l, "caps"), Some("cap_net_admin"), "{l}");
    d.wait_seen(&["event=up", &format!("real={}", a.addr())], 5 * S);

    // What the kernel says about the process (every thread, the state saver's included).
    let pid = d.pid();
    let ids = |v: u32| format!("{v} {v} {v} {v}");
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid: u32 = task.unwrap().file_name().to_str().unwrap().parse().unwrap();
        let st = |k: &str| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
            let v = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            eprintln!("task {tid} {k}: {v}");
            v
        };
        assert_eq!(st("Uid"), ids(uid));
        assert_eq!(st("Gid"), ids(gid));
        assert_eq!(st("Groups"), gid.to_string());
        assert_eq!(st("CapInh"), "0000000000000000");
        assert_eq!(st("CapPrm"), "0000000000001000");
        assert_eq!(st("CapEff"), "0000000000001000");
        assert_eq!(st("CapBnd"), "0000000000001000");
        assert_eq!(st("CapAmb"), "0000000000000000");
        assert_eq!(st("NoNewPrivs"), "1");
    }
    assert_eq!(proc_status(pid, "CapEff"), proc_status(pid, "CapPrm"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        jail.0
    );

    // Checks go on, and the control socket (opened before the drop) answers.
    let (code, first, err) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        first.contains("\"state\":\"up\"") && first.contains("\"weight\":4"),
        "{first}"
    );
    std::thread::sleep(S);
    let (_, second, _) = d.client(&["status", "--json"]);
    assert!(
        json_checks(&second) >= json_checks(&first) + 3,
        "checks stopped: {first} then {second}"
    );

    // Reload reads the file inside the chroot: not there, refused with the file's error and
    // nothing changes; copied there (readable by nobody), it loads.
    let (code, _, err) = d.client(&["reload"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("lvsmon.conf") && err.contains("running configuration is kept"),
        "{err}"
    );
    let inside = jail
        .0
        .join(d.dir.0.join("lvsmon.conf").strip_prefix("/").unwrap());
    std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
    std::fs::write(&inside, conf.replace("weight 4", "weight 6")).unwrap();
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("1 kept (1 with new settings)"), "{out}");
    let (_, after, _) = d.client(&["status", "--json"]);
    assert!(after.contains("\"weight\":6"), "{after}");

    // A periodic save lands in the state directory outside the chroot, owned by nobody.
    let state = d.dir.0.join("state");
    let file = state.join("state");
    let end = Instant::now() + 5 * S;
    while !file.exists() {
        assert!(Instant::now() < end, "no periodic state save within 5 s");
        std::thread::sleep(S / 20);
    }
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&state).unwrap().uid(), uid);
        assert_eq!(std::fs::metadata(&file).unwrap().uid(), uid);
    }
    assert_eq!(d.stop().0, Some(0));
    assert_eq!(d.count(&["msg=\"state saved\""]), 1, "{:?}", d.seen());

    // The socket file stays behind (the chrooted daemon cannot reach it); the next start
    // finds nobody answering on it, replaces it, and serves.
    let sock = d.socket();
    assert!(sock.exists(), "the socket file was removed after all");
    let args = [
        "--socket",
        sock.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let mut again = Lvsmon::start(&conf, &args);
    again.wait_for(&["msg=\"state loaded\"", "used=1"], 5 * S);
    again.wait_seen(&["event=up"], 5 * S);
    let out = Command::new(bin())
        .args(["status", "--socket", sock.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // While it runs, a third daemon on the same socket is refused.
    let t = Instant::now();
    let out = Command::new(bin())
        .args(["-n", "-f"])
        .arg(again.dir.0.join("lvsmon.conf"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use: is another lvsmon running?"),
        "{err}"
    );
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(again.stop().0, Some(0));
}

/// An unknown `--user` and a missing `--chroot` directory stop lvsmon before it opens
/// anything: one line naming the option, a 500 ms pause, exit 1.
#[test]
fn privilege_drop_errors_are_one_line_and_exit_1() {
    let dir = TempDir::new("privdrop-err");
    let conf = dir.file(
        "ok.conf",
        "virtual tcp 127.1.0.1:80 {\n  real 127.0.0.1:9\n}\n",
    );
    let sock = dir.0.join("lvsmon.sock");
    let missing = dir.0.join("no-such-dir");
    let cases: [(&[&str], String); 3] = [
        (
            &["--user", "lvsmon-no-such-user"],
            "lvsmon: --user lvsmon-no-such-user: no such user".to_string(),
        ),
        (
            &["--chroot", missing.to_str().unwrap()],
            format!(
                "lvsmon: --chroot {}: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            &["--user", "nobody", "--chroot", conf.to_str().unwrap()],
            format!(
                "lvsmon: --chroot {}: Not a directory (os error 20)",
                conf.display()
            ),
        ),
    ];
    for (args, want) in cases {
        let t = Instant::now();
        let out = Command::new(bin())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("--socket")
            .arg(&sock)
            .arg("--state-dir")
            .arg(dir.0.join("state"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end(), want, "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(t.elapsed() >= Duration::from_millis(500), "{args:?}");
        assert!(
            !sock.exists(),
            "{args:?}: the control socket was created first"
        );
        assert!(
            !dir.0.join("state").exists(),
            "{args:?}: the state directory was created first"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// systemd notifications
// ---------------------------------------------------------------------------------------------

/// A datagram socket standing in for systemd's notification socket.
struct FakeSystemd {
    sock: std::os::unix::net::UnixDatagram,
    /// The value for `NOTIFY_SOCKET`.
    name: String,
}

impl FakeSystemd {
    /// Listens on a socket file in `dir`.
    fn at_path(dir: &TempDir) -> FakeSystemd {
        let path = dir.0.join("notify");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        FakeSystemd {
            sock,
            name: path.to_str().unwrap().to_string(),
        }
    }

    /// Listens on a name in the abstract namespace, unique to this test.
    fn abstract_name(tag: &str) -> FakeSystemd {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lvsmon-it-{tag}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        FakeSystemd {
            sock,
            name: format!("@{name}"),
        }
    }

    /// The next datagram within `limit`, and when it arrived.
    fn recv(&self, limit: Duration) -> Option<(String, Instant)> {
        let limit = limit.max(Duration::from_millis(1));
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut b = [0u8; 1024];
        let n = self.sock.recv(&mut b).ok()?;
        Some((
            String::from_utf8_lossy(&b[..n]).into_owned(),
            Instant::now(),
        ))
    }

    /// Datagrams until one starts with `prefix` (within `limit`); returns it and those before.
    #[track_caller]
    fn recv_until(&self, prefix: &str, limit: Duration) -> (String, Vec<String>) {
        let end = Instant::now() + limit;
        let mut before = Vec::new();
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some((m, _)) if m.starts_with(prefix) => return (m, before),
                Some((m, _)) => before.push(m),
                None => break,
            }
        }
        panic!("no {prefix:?} within {limit:?}; got {before:?}");
    }
}

/// Starts `lvsmon --dry-run -v` as systemd would, through `/bin/sh` so that `WATCHDOG_PID`
/// can name the daemon's own pid (the shell sets it to `$$`, then execs lvsmon in its place)
/// when `watchdog_pid` is `"self"`, or any other value.
fn start_under_systemd(conf: &str, env: &[(&str, &str)], watchdog_pid: Option<&str>) -> Lvsmon {
    let dir = TempDir::new("systemd");
    let conf = dir.file("lvsmon.conf", conf);
    let mut cmd = Command::new("/bin/sh");
    let script = match watchdog_pid {
        None => r#"exec "$0" "$@""#.to_string(),
        Some("self") => r#"WATCHDOG_PID=$$ exec "$0" "$@""#.to_string(),
        Some(p) => format!(r#"WATCHDOG_PID={p} exec "$0" "$@""#),
    };
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .args(["--dry-run", "-v", "-f"])
        .arg(&conf)
        .arg("--socket")
        .arg(dir.0.join("lvsmon.sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    cmd.envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    Lvsmon::spawn(cmd, dir)
}

/// Under `Type=notify` with `WatchdogSec=`: `READY=1` (with `MAINPID=`) once the daemon has
/// started and answers, `WATCHDOG=1` every half watchdog timeout from then on, notify
/// commands without systemd's variables, and `STOPPING=1` on SIGTERM before a clean exit.
#[test]
fn systemd_ready_watchdog_notify_env_and_stopping() {
    let b = Backend::start(Script::http(200, "OK"));
    let dir = TempDir::new("sd-env");
    let envfile = dir.0.join("env.txt");
    let sd = FakeSystemd::at_path(&dir);
    let conf = format!(
        "interval 300ms\nnotify \"/bin/sh\" \"-c\" \"env > {f}.tmp && mv {f}.tmp {f}\"\n\
         virtual tcp {} {{\n  check http\n  real {}\n}}\n",
        vip(0),
        b.addr(),
        f = envfile.display()
    );
    let mut d = start_under_systemd(
        &conf,
        &[
            ("NOTIFY_SOCKET", &sd.name),
            ("WATCHDOG_USEC", "200000"),
            ("SD_TEST_MARK", "kept"),
        ],
        Some("self"),
    );

    // READY=1 is the first datagram, names the daemon's pid, and comes once it has started:
    // the `starting` and startup's `ipvs` lines are logged and the control socket answers.
    let (ready, t_ready) = sd.recv(10 * S).expect("READY=1 within 10 s");
    let fields: Vec<&str> = ready.split('\n').collect();
    assert_eq!(fields[0], "READY=1", "{ready:?}");
    assert!(
        fields.contains(&format!("MAINPID={}", d.pid()).as_str()),
        "{ready:?} (pid {})",
        d.pid()
    );
    assert!(
        fields.contains(&"STATUS=checking 1 real server behind 1 virtual service"),
        "{ready:?}"
    );
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "status right after READY=1: {err}");
    assert!(out.contains(&b.addr().to_string()), "{out}");
    d.wait_seen(&["msg=\"starting\""], 5 * S);
    d.wait_seen(&["ipvs op=add-service", "result=dry-run"], 5 * S);
    d.wait_seen(
        &["msg=\"notifying systemd\"", "watchdog_ping=0.100s"],
        5 * S,
    );

    // WATCHDOG=1 about every 100 ms: count 15 within a generous window, and never more than
    // the elapsed time allows (a ping per turn would be far more).
    let mut pings = Vec::new();
    let end = t_ready + 10 * S;
    while pings.len() < 15 {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            break;
        };
        let Some((m, t)) = sd.recv(left) else { break };
        assert_eq!(m, "WATCHDOG=1");
        pings.push(t);
    }
    assert_eq!(pings.len(), 15, "watchdog pings within 10 s of READY=1");
    let span = pings[14].duration_since(t_ready);
    assert!(
        span.as_millis() / 100 + 3 >= 15,
        "15 pings within {span:?}: more often than every 100 ms"
    );
    let mut gaps: Vec<u128> = std::iter::once(t_ready)
        .chain(pings.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).as_millis())
        .collect();
    gaps.sort_unstable();
    eprintln!(
        "watchdog ping gaps (ms): min {} median {} max {} over {span:?}",
        gaps[0],
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );

    // The notify command's environment: the daemon's, without systemd's variables.
    d.wait_seen(&["event=up"], 5 * S);
    let end = Instant::now() + 5 * S;
    while !envfile.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = std::fs::read_to_string(&envfile).expect("the notify command's environment");
    assert!(env.lines().any(|l| l == "SD_TEST_MARK=kept"), "{env}");
    assert!(env.lines().any(|l| l == "LVSMON_EVENT=up"), "{env}");
    for var in ["NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID="] {
        assert!(!env.lines().any(|l| l.starts_with(var)), "{var} in {env}");
    }

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 once the reload is done
    // (pings may come between).
    d.signal(libc::SIGHUP);
    let (reloading, _) = sd.recv_until("RELOADING=1", 5 * S);
    assert!(reloading.contains("\nMONOTONIC_USEC="), "{reloading:?}");
    let (ready, between) = sd.recv_until("READY=1", 5 * S);
    assert!(between.iter().all(|m| m == "WATCHDOG=1"), "{between:?}");
    assert!(ready.contains("STATUS=checking 1 real server"), "{ready:?}");
    d.wait_seen(&["msg=\"reloaded\"", "kept=1"], 5 * S);

    // SIGTERM: STOPPING=1 (perhaps after a last ping or two), then exit 0.
    d.signal(libc::SIGTERM);
    let (stopping, before) = sd.recv_until("STOPPING=1", 5 * S);
    assert_eq!(stopping, "STOPPING=1\nSTATUS=stopping: saving state");
    assert!(before.iter().all(|m| m == "WATCHDOG=1"), "{before:?}");
    assert_eq!(d.wait_exit(5 * S), Some(0));
    assert_eq!(d.count(&["msg=\"stopping\""]), 1);
}

/// `NOTIFY_SOCKET=@name` (the abstract namespace) works the same way; SIGINT stops too.
#[test]
fn systemd_abstract_notify_socket() {
    let b = Backend::start(Script::http(200, "OK"));
    let sd = FakeSystemd::abstract_name("sd-abstract");
    let conf = format!("virtual tcp {} {{\n  real {}\n}}\n", vip(0), b.addr());
    let mut d = start_under_systemd(
        &conf,
        &[("NOTIFY_SOCKET", &sd.name), ("WATCHDOG_USEC", "200000")],
        None,
    );
    let (ready, _) = sd.recv_until("READY=1", 10 * S);
    assert!(
        ready.contains(&format!("\nMAINPID={}", d.pid())),
        "{ready:?}"
    );
    let mut pings = 0;
    let end = Instant::now() + 5 * S;
    while pings < 3 {
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            break;
        };
        match sd.recv(left) {
            Some((m, _)) if m == "WATCHDOG=1" => pings += 1,
            Some((m, _)) => panic!("unexpected {m:?}"),
            None => break,
        }
    }
    assert_eq!(pings, 3, "watchdog pings within 5 s");
    d.signal(libc::SIGINT);
    sd.recv_until("STOPPING=1", 5 * S);
    assert_eq!(d.wait_exit(5 * S), Some(0));
}

/// No watchdog pings when `WATCHDOG_PID` names another process or `WATCHDOG_USEC` is not a
/// number (with a warning), and a `NOTIFY_SOCKET` where nothing listens only costs a warning.
#[test]
fn systemd_watchdog_not_ours_or_unusable() {
    let b = Backend::start(Script::http(200, "OK"));
    let conf = format!("virtual tcp {} {{\n  real {}\n}}\n", vip(0), b.addr());
    for (usec, pid, warning) in [
        ("200000", Some("1"), None),
        ("abc", None, Some("WATCHDOG_USEC=")),
    ] {
        let dir = TempDir::new("sd-nowd");
        let sd = FakeSystemd::at_path(&dir);
        let mut d = start_under_systemd(
            &conf,
            &[("NOTIFY_SOCKET", &sd.name), ("WATCHDOG_USEC", usec)],
            pid,
        );
        sd.recv_until("READY=1", 10 * S);
        d.wait_seen(&["msg=\"notifying systemd\"", "watchdog_ping=off"], 5 * S);
        if let Some(w) = warning {
            d.wait_seen(&[w, "no watchdog pings"], 5 * S);
        }
        // Three ping periods of silence.
        assert_eq!(sd.recv(Duration::from_millis(300)), None, "{usec} {pid:?}");
        d.signal(libc::SIGTERM);
        sd.recv_until("STOPPING=1", 5 * S);
        assert_eq!(d.wait_exit(5 * S), Some(0));
    }
    let dir = TempDir::new("sd-gone");
    let gone = dir.0.join("nobody-listens");
    let mut d = start_under_systemd(
        &conf,
        &[
            ("NOTIFY_SOCKET", gone.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        None,
    );
    d.wait_for(
        &["msg=\"systemd notify socket unusable, not notifying\""],
        5 * S,
    );
    d.wait_for(&["event=up"], 5 * S);
    assert_eq!(d.stop().0, Some(0));
}

/// A plain `check http` sends each real server its own address as `Host`: the request is
/// built once for the check line and the address written in as it goes out. Each backend
/// answers only a request naming it exactly; one that waits for another name fails.
#[test]
fn plain_http_check_names_each_real_in_host() {
    let script = |host: &str| {
        Script(vec![
            Action::expect(format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ")),
            Action::expect(REQUEST_END),
            Action::send(http_response(200, "OK")),
            Action::Close,
        ])
    };
    let a = Backend::start_on("127.0.0.1:0".parse().unwrap(), Script::default());
    a.set_script(script(&a.addr().to_string()));
    let b = Backend::start_on("127.0.0.1:0".parse().unwrap(), Script::default());
    b.set_script(script(&b.addr().to_string()));
    let six = Backend::start_on("[::1]:0".parse().unwrap(), Script::default());
    six.set_script(script(&six.addr().to_string()));
    // This one waits for a name no check sends, until the check's timeout.
    let wrong = Backend::start_on("127.0.0.1:0".parse().unwrap(), script("elsewhere:80"));
    let conf = format!(
        "interval 500ms\ntimeout 400ms\nvirtual tcp {} {{\n  check http\n  real {}\n  real {}\n  real {}\n}}\nvirtual tcp [fd00::1]:80 {{\n  check http\n  real {}\n}}\n",
        vip(0),
        a.addr(),
        b.addr(),
        wrong.addr(),
        six.addr(),
    );
    let mut d = Lvsmon::start(&conf, &[]);
    for r in [a.addr(), b.addr(), six.addr()] {
        d.wait_seen(&["event=up", &format!("real={r}")], 5 * S);
    }
    let l = d.wait_seen(&["event=down", &format!("real={}", wrong.addr())], 5 * S);
    assert_eq!(field(&l, "reason"), Some("recv-timeout"), "{l}");
    d.collect_for(Duration::from_secs(1));
    assert_eq!(d.count(&["event=down", &format!("real={}", a.addr())]), 0);
}
