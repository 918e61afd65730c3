//! The probe side of the checks' options and kinds, end to end through the real binary on
//! loopback: `--source` and `--mark` on a check's socket (and their local errors).

mod common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::lvsmon::{bin, check_config, field, Lvsmon, TempDir};
use common::{Backend, Netns, Script};

const S: Duration = Duration::from_secs(1);

/// A TCP listener on 127.0.0.1 that records the source address of every connection it
/// accepts; its thread ends with the test process.
fn recording_listener() -> (SocketAddr, Arc<Mutex<Vec<IpAddr>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().take(1000) {
            let Ok(mut c) = c else { continue };
            if let Ok(peer) = c.peer_addr() {
                s.lock().unwrap().push(peer.ip());
            }
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = c.read(&mut [0u8; 64]);
        }
    });
    (addr, seen)
}

/// `--source` binds the check's socket: the server sees the check come from that address.
#[test]
fn source_binds_the_checks_socket() {
    let (addr, seen) = recording_listener();
    let conf = format!(
        "interval 200ms\nvirtual tcp 127.1.0.1:80 {{\n  check tcp --source 127.0.0.3\n  real {addr}\n}}\n"
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up", &format!("real={addr}")], 5 * S);
    // The listener's thread accepts on its own time: a few checks' worth.
    let end = std::time::Instant::now() + 3 * S;
    while seen.lock().unwrap().len() < 2 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = seen.lock().unwrap().clone();
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|ip| *ip == "127.0.0.3".parse::<IpAddr>().unwrap()),
        "sources seen: {got:?}"
    );
    assert_eq!(d.stop().0, Some(0));
}

/// A source address the director does not have is its own fault: each check is deferred as
/// a local error, and the real server is never marked DOWN.
#[test]
fn a_source_the_director_lacks_is_a_local_error() {
    let (addr, seen) = recording_listener();
    let conf = format!(
        "interval 200ms\nfall 1\nvirtual tcp 127.1.0.1:80 {{\n  check tcp --source=192.0.2.77\n  real {addr}\n}}\n"
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let l = d.wait_for(&["result=deferred", "reason=local-error"], 5 * S);
    assert_eq!(field(&l, "detail"), Some("EADDRNOTAVAIL"), "{l}");
    d.collect_for(S + S / 2);
    assert_eq!(d.count(&["event=down"]), 0, "{:?}", d.seen());
    assert_eq!(d.count(&["result=fail"]), 0, "{:?}", d.seen());
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(d.stop().0, Some(0));
}

/// `--mark` sets SO_MARK: inside a network namespace whose policy routing sends marked
/// packets to an `unreachable` table, the marked check of a real fails (`unreachable`) while
/// the unmarked check of the same real passes.
#[test]
fn mark_routes_the_check_by_policy() {
    let Some(ns) = Netns::new_or_skip() else {
        return;
    };
    ns.add_addr("198.51.100.7/32");
    // The local table after the mark's rule, so the mark decides even for a local address.
    for args in [
        &["rule", "add", "pref", "100", "lookup", "local"][..],
        &["rule", "del", "pref", "0"],
        &[
            "rule", "add", "pref", "50", "fwmark", "0x42", "lookup", "142",
        ],
        &["route", "add", "unreachable", "default", "table", "142"],
    ] {
        ns.ip(args).unwrap();
    }
    let real: SocketAddr = "198.51.100.7:8080".parse().unwrap();
    let _b = Backend::start_in(&ns, real, Script::raw(Vec::new()));
    let dir = TempDir::new("mark");
    let conf = dir.file(
        "lvsmon.conf",
        &format!(
            "interval 200ms\nfall 1\nrise 1\n\
             virtual tcp 127.1.0.1:80 {{\n  check tcp --mark 0x42\n  real {real}\n}}\n\
             virtual tcp 127.1.0.2:80 {{\n  check tcp\n  real {real}\n}}\n"
        ),
    );
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", ns.name(), bin(), "-n", "-v", "-f"])
        .arg(&conf)
        .arg("--socket")
        .arg(dir.0.join("sock"))
        .arg("--state-dir")
        .arg(dir.0.join("state"));
    cmd.stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut d = Lvsmon::spawn(cmd, dir);
    let down = d.wait_for(&["event=down", "virtual=tcp:127.1.0.1:80"], 5 * S);
    assert_eq!(field(&down, "reason"), Some("unreachable"), "{down}");
    d.wait_seen(&["event=up", "virtual=tcp:127.1.0.2:80"], 5 * S);
    assert_eq!(d.count(&["event=up", "virtual=tcp:127.1.0.1:80"]), 0);
    assert_eq!(d.stop().0, Some(0));
}

/// Several `check` lines in a block all run: the real passes only when all pass, and the one
/// that failed is named (`check=2`) in its check line, the event and `status`. A real whose
/// own block has a `check` line is decided by that line alone; the same real behind a
/// second virtual with the same lines shares their probes.
#[test]
fn several_checks_all_must_pass_and_the_failing_one_is_named() {
    let b = Backend::start(Script::http(500, "oops"));
    let inner = Backend::start(Script::http(500, "oops"));
    let conf = format!(
        "interval 200ms\nfall 2\nrise 1\n\
         virtual tcp 127.1.0.1:80 {{\n  check tcp\n  check http --expect 200\n  real {b}\n  real {i} {{\n    check tcp\n  }}\n}}\n\
         virtual tcp 127.1.0.2:80 {{\n  check tcp\n  check http --expect 200\n  real {b}\n}}\n",
        b = b.addr(),
        i = inner.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let down = d.wait_for(&["event=down", &format!("real={}", b.addr())], 5 * S);
    assert_eq!(field(&down, "reason"), Some("http-status"), "{down}");
    assert_eq!(field(&down, "detail"), Some("500"), "{down}");
    assert_eq!(field(&down, "check"), Some("2"), "{down}");
    d.wait_seen(
        &[
            "event=down",
            "virtual=tcp:127.1.0.2:80",
            &format!("real={}", b.addr()),
        ],
        5 * S,
    );
    // The real with its own check line never saw the outer http check.
    d.wait_seen(&["event=up", &format!("real={}", inner.addr())], 5 * S);
    let failed = d.wait_seen(&["check target=", &b.addr().to_string(), "result=fail"], S);
    assert_eq!(field(&failed, "check"), Some("2"), "{failed}");
    assert_eq!(field(&failed, "plugin"), Some("http"), "{failed}");
    let (code, out, _) = d.client(&["status"]);
    assert_eq!(code, Some(0));
    let line = out
        .lines()
        .find(|l| l.contains("127.1.0.1:80") && l.contains(&b.addr().to_string()))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("http-status \"500\" check=2"), "{line}");
    let (code, json, _) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0));
    let entry = json
        .lines()
        .find(|l| l.contains("127.1.0.1:80") && l.contains(&b.addr().to_string()))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(entry.contains("\"last_check\":2"), "{entry}");
    let each = entry
        .split("\"check_seconds\":[")
        .nth(1)
        .and_then(|t| t.split(']').next())
        .unwrap_or_else(|| panic!("no check_seconds in {entry}"));
    assert_eq!(each.split(',').count(), 2, "{entry}");
    assert!(!each.contains("null"), "{entry}");
    let single = json
        .lines()
        .find(|l| l.contains(&inner.addr().to_string()))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(!single.contains("check_seconds"), "{single}");
    // One probe per distinct check: the two virtuals' http checks of b are one.
    d.collect_for(S);
    let since = d.seen().len();
    d.collect_for(S);
    let http = d.seen()[since..]
        .iter()
        .filter(|l| l.contains("plugin=http") && l.contains(&b.addr().to_string()))
        .count();
    assert!(
        (3..=7).contains(&http),
        "{http} http checks of b in 1 s at 200 ms"
    );
    assert_eq!(
        d.count(&["event=down", &format!("real={}", inner.addr())]),
        0
    );
    // Both pass: UP again, with one event per virtual.
    b.set_script(Script::http(200, "OK"));
    d.wait_for(
        &[
            "event=up",
            "virtual=tcp:127.1.0.1:80",
            &format!("real={}", b.addr()),
        ],
        5 * S,
    );
    assert_eq!(d.stop().0, Some(0));
}

// ---------------------------------------------------------------------------------------------
// exec
// ---------------------------------------------------------------------------------------------

/// One real server per `exec` check (exec programs connect nowhere: the reals' addresses are
/// only names), in virtual 127.1.0.1:80; `extra` goes before the virtual.
fn exec_conf(extra: &str, checks: &[&str]) -> String {
    let mut c = format!("interval 200ms\nfall 1\nrise 1\n{extra}virtual tcp 127.1.0.1:80 {{\n");
    for (n, check) in checks.iter().enumerate() {
        c += &format!(
            "  real 127.0.0.1:{} {{\n    check exec {check}\n  }}\n",
            n + 1
        );
    }
    c + "}\n"
}

/// keepalived's MISC_CHECK exit codes: 0 passes, 1 fails with the first line printed as
/// detail, 2..255 fail without `--dynamic` and pass with it (255: weight 253), a program
/// killed by a signal fails; the environment names the target, the virtual and the real.
#[test]
fn exec_exit_codes_and_environment() {
    let conf = exec_conf(
        "",
        &[
            r#"/bin/sh -c "exit 0""#,
            r#"/bin/sh -c "echo 'disk full'; echo more; exit 1""#,
            r#"/bin/sh -c "exit 5""#,
            r#"--dynamic /bin/sh -c "exit 5""#,
            r#"--dynamic /bin/sh -c "exit 1""#,
            r#"/bin/sh -c "test \"$LVSMON_REAL\" = 127.0.0.1:6 && test \"$LVSMON_TARGET_ADDR\" = 127.0.0.1 && test \"$LVSMON_TARGET_PORT\" = 6 && test \"$LVSMON_VIRTUAL\" = tcp:127.1.0.1:80""#,
            r#"/bin/sh -c "kill -TERM $$""#,
            r#"/bin/sh -c "exit 255""#,
            r#"--dynamic /bin/sh -c "exit 255""#,
        ],
    );
    let mut d = Lvsmon::start(&conf, &[]);
    for (port, up) in [
        (1, true),
        (2, false),
        (3, false),
        (4, true),
        (5, false),
        (6, true),
        (7, false),
        (8, false),
        (9, true),
    ] {
        let ev = if up { "event=up" } else { "event=down" };
        let l = d.wait_seen(&[ev, &format!("real=127.0.0.1:{port} ")], 5 * S);
        if !up {
            assert_eq!(field(&l, "reason"), Some("exec-failed"), "{l}");
        }
        let detail = field(&l, "detail").map(str::to_owned);
        match port {
            2 => assert_eq!(detail.as_deref(), Some("disk full"), "{l}"),
            3 => assert_eq!(detail.as_deref(), Some("exit 5"), "{l}"),
            5 => assert_eq!(detail.as_deref(), Some("exit 1"), "{l}"),
            7 => assert_eq!(detail.as_deref(), Some("signal 15"), "{l}"),
            8 => assert_eq!(detail.as_deref(), Some("exit 255"), "{l}"),
            _ => {}
        }
    }
    // `--dynamic` and 255: the highest weight a program can set, 253.
    let l = d.wait_seen(&["ipvs op=edit-dest", "real=127.0.0.1:9 "], 5 * S);
    assert_eq!(field(&l, "weight"), Some("253"), "{l}");
    let l = d.wait_seen(&["check target=127.0.0.1:4 ", "plugin=exec"], S);
    assert_eq!(field(&l, "result"), Some("pass"), "{l}");
    assert_eq!(d.stop().0, Some(0));
}

/// `exec --dynamic` through the weight chain (dry-run `ipvs` lines; weight 10): an exit
/// code of 2+N sets weight N while the real stays UP, 0 gives the configured weight back,
/// 1 fails the check (DOWN, weight 0), and the weight a program gives as the real comes
/// back is its first weight (never the configured one first).
#[test]
fn exec_dynamic_sets_the_weight() {
    let dir = TempDir::new("exec-dynamic");
    let code = dir.file("code", "7\n");
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {{\n  real 127.0.0.1:1 weight 10 {{\n    \
         check exec --dynamic /bin/sh -c \"exit $(cat {})\"\n  }}\n}}\n",
        code.display()
    );
    let real = "real=127.0.0.1:1 ";
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up", real], 5 * S);
    let l = d.wait_for(&["msg=\"weight\"", real, "weight=5"], 5 * S);
    assert_eq!(field(&l, "from"), Some("exec"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", real, "weight=5"], 3 * S);
    let e = status_entry(&d, "127.0.0.1:1");
    assert!(e.contains("\"weight\":5,"), "{e}");
    assert!(e.contains("\"weight_from\":\"exec\""), "{e}");
    // Exit 2: weight 0, and still UP.
    std::fs::write(&code, "2\n").unwrap();
    d.wait_for(&["ipvs op=edit-dest", real, "weight=0"], 3 * S);
    // Exit 0: the configured weight.
    std::fs::write(&code, "0\n").unwrap();
    let l = d.wait_for(&["msg=\"weight\"", real, "weight=10"], 3 * S);
    assert_eq!(field(&l, "from"), Some("config"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", real, "weight=10"], 3 * S);
    assert_eq!(d.count(&["event=down"]), 0, "{:#?}", d.seen());
    // Exit 1: a failed check.
    std::fs::write(&code, "1\n").unwrap();
    let l = d.wait_for(&["event=down", real], 3 * S);
    assert_eq!(field(&l, "reason"), Some("exec-failed"), "{l}");
    assert_eq!(field(&l, "detail"), Some("exit 1"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", real, "weight=0"], 3 * S);
    // Exit 4 as it comes back: UP at weight 2 straight away.
    std::fs::write(&code, "4\n").unwrap();
    let since = d.seen().len();
    d.wait_for(&["event=up", real], 3 * S);
    d.wait_for(&["ipvs op=edit-dest", real, "weight=2"], 3 * S);
    let after: Vec<u32> = d.seen()[since..]
        .iter()
        .filter(|l| l.contains("ipvs op=edit-dest") && l.contains(real))
        .filter_map(|l| field(l, "weight").and_then(|w| w.parse().ok()))
        .collect();
    assert_eq!(after, [2], "{:#?}", &d.seen()[since..]);
    assert_eq!(d.stop().0, Some(0));
}

/// A program that does not end is killed with its process group at `timeout` (reason
/// `timeout`), and the next check runs.
#[test]
fn exec_that_hangs_is_killed_at_timeout() {
    let dir = TempDir::new("exec-hang");
    let pids = dir.0.join("pids");
    let conf = exec_conf(
        "timeout 300ms\n",
        &[&format!(
            r#"/bin/sh -c "echo $$ >> {}; exec sleep 30""#,
            pids.display()
        )],
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let l = d.wait_for(&["check target=127.0.0.1:1 ", "result=fail"], 5 * S);
    assert_eq!(field(&l, "reason"), Some("timeout"), "{l}");
    let dur: f64 = field(&l, "duration").unwrap().parse().unwrap();
    assert!((0.25..1.5).contains(&dur), "{l}");
    d.wait_for(&["check target=127.0.0.1:1 ", "result=fail"], 5 * S);
    // Every program but perhaps the one running now is gone (killed and reaped).
    let text = std::fs::read_to_string(&pids).unwrap();
    let list: Vec<i32> = text.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(list.len() >= 2, "{text}");
    for pid in &list[..list.len() - 1] {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(gone, "program {pid} still there");
    }
    assert_eq!(d.stop().0, Some(0));
    // No program outlives the daemon.
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.lines().filter_map(|l| l.parse::<i32>().ok()) {
        let gone = !std::path::Path::new(&format!("/proc/{pid}")).exists();
        assert!(gone, "program {pid} outlived the daemon");
    }
}

/// A program that prints a megabyte without a newline: its output is read in bounded pieces
/// and thrown away (the detail keeps its first 40 bytes), and a tcp check beside it keeps its
/// grid.
#[test]
fn exec_that_prints_a_megabyte_is_read_and_bounded() {
    let (addr, _seen) = recording_listener();
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\ntimeout 5s\nvirtual tcp 127.1.0.1:80 {{\n  \
         real 127.0.0.1:1 {{\n    check exec /bin/sh -c \"head -c 1048576 /dev/zero | tr '\\\\0' x; exit 1\"\n  }}\n  \
         real {addr}\n}}\n"
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let l = d.wait_for(&["event=down", "real=127.0.0.1:1 "], 10 * S);
    assert_eq!(field(&l, "detail"), Some("x".repeat(40).as_str()), "{l}");
    d.collect_for(S);
    let tcp = d.count(&["check target=", &addr.to_string(), "result=pass"]);
    assert!(tcp >= 4, "{tcp} tcp checks");
    assert_eq!(d.count(&[&addr.to_string(), "result=fail"]), 0);
    assert_eq!(d.stop().0, Some(0));
}

/// A program that does not exist: `--check-config` accepts the file (a converted
/// configuration may name a script installed later) and warns, naming the program; when it
/// runs, a missing program is the director's problem (`local-error`), never a failure of the
/// real server.
#[test]
fn exec_of_a_missing_program() {
    let dir = TempDir::new("exec-missing");
    let conf = dir.file(
        "bad.conf",
        &exec_conf("", &["--dynamic /nonexistent/lvsmon-probe arg"]),
    );
    let out = check_config(&conf);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning: check exec for ")
            && text.contains("no executable program at /nonexistent/lvsmon-probe"),
        "{text}"
    );
    let mut d = Lvsmon::start(&exec_conf("", &["./no-such-program-here"]), &[]);
    let l = d.wait_for(&["result=deferred", "reason=local-error"], 5 * S);
    assert_eq!(field(&l, "detail"), Some("ENOENT"), "{l}");
    d.collect_for(S);
    assert_eq!(d.count(&["event=down"]), 0);
    assert_eq!(d.count(&["result=fail"]), 0);
    assert_eq!(d.stop().0, Some(0));
}

/// `exec-max 1`: programs wait for each other instead of running together, and waiting is
/// never a failure. Each program fails if another holds the lock directory it takes.
#[test]
fn exec_max_queues_programs() {
    let dir = TempDir::new("exec-max");
    let lock = dir.0.join("lock");
    let prog = format!(
        r#"/bin/sh -c "mkdir {l} || exit 1; sleep 0.15; rmdir {l}; exit 0""#,
        l = lock.display()
    );
    let conf = exec_conf("exec-max 1\ntimeout 2s\n", &[&prog, &prog, &prog]);
    let mut d = Lvsmon::start(&conf, &[]);
    for port in 1..=3 {
        d.wait_seen(&["event=up", &format!("real=127.0.0.1:{port} ")], 5 * S);
    }
    d.collect_for(S);
    assert_eq!(d.count(&["result=fail"]), 0, "{:?}", d.seen());
    assert_eq!(d.count(&["event=down"]), 0);
    assert!(d.count(&["plugin=exec", "result=pass"]) >= 6);
    assert_eq!(d.stop().0, Some(0));
}

// ---------------------------------------------------------------------------------------------
// agent
// ---------------------------------------------------------------------------------------------

/// The `edit-dest` weights of `real` in the dry-run `ipvs` lines seen so far.
fn edit_weights(d: &Lvsmon, real: &str) -> Vec<u32> {
    d.seen()
        .iter()
        .filter(|l| l.contains("ipvs op=edit-dest") && l.contains(&format!("real={real} ")))
        .filter_map(|l| field(l, "weight").and_then(|w| w.parse().ok()))
        .collect()
}

/// `status --json`'s entry of `real`.
fn status_entry(d: &Lvsmon, real: &str) -> String {
    let (code, json, err) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    json.lines()
        .find(|l| l.contains(&format!("\"real\":\"{real}\"")))
        .unwrap_or_else(|| panic!("no {real} in {json}"))
        .to_string()
}

/// Agents on loopback, each read on its own grid, and what their words do to the weight
/// chain (lvsmon.conf(5), WEIGHTS; reals of weight 10, dry-run `ipvs` lines): `50%` halves
/// the weight, `drain` sets it to 0 (the agent's drain, not an operator's), `down,disk full`
/// takes the real DOWN (`agent-down`, the rest of the line as detail) whatever its checks
/// say until the agent says `up`; garbage, an agent that closes and one that cannot be
/// reached change nothing.
#[test]
fn agents_say_weights_and_states_on_their_own_grid() {
    let said = [
        Script::banner("50%"),
        Script::banner("drain"),
        Script::banner("down,disk full"),
        Script::banner("#!?* garbage"),
        Script(vec![common::Action::Close]),
    ];
    let agents: Vec<Backend> = said.into_iter().map(Backend::start).collect();
    let (refused, _guard) = common::refused_addr();
    let mut conf = String::from("interval 1s\nfall 1\nrise 1\nvirtual tcp 127.1.0.1:80 {\n");
    // Each real is its agent's address on a port nothing checks (tcp checks pass on the
    // agent's own listener: the real's checks and its agent are apart).
    for a in &agents {
        conf += &format!(
            "  real {a} weight 10 {{\n    agent {} --interval 200ms --send \"status\\n\"\n  }}\n",
            a.addr().port(),
            a = a.addr()
        );
    }
    conf += &format!(
        "  real {} weight 10 {{\n    check tcp --port {}\n    agent {}\n  }}\n}}\n",
        refused,
        agents[0].addr().port(),
        refused.port()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let target = |a: &Backend| format!("agent target={} ", a.addr());
    let name = |a: &Backend| a.addr().to_string();
    let l = d.wait_seen(&[&target(&agents[0]), "result=reply"], 5 * S);
    assert_eq!(field(&l, "percent"), Some("50"), "{l}");
    let l = d.wait_seen(&[&target(&agents[1]), "result=reply"], 5 * S);
    assert_eq!(field(&l, "admin"), Some("drain"), "{l}");
    let l = d.wait_seen(&[&target(&agents[2]), "result=reply"], 5 * S);
    assert_eq!(field(&l, "admin"), Some("down"), "{l}");
    assert_eq!(field(&l, "detail"), Some("disk full"), "{l}");
    let l = d.wait_seen(&[&target(&agents[3]), "result=reply"], 5 * S);
    assert_eq!(field(&l, "admin"), None, "{l}");
    assert_eq!(field(&l, "percent"), None, "{l}");
    assert_eq!(field(&l, "line"), Some("#!?* garbage"), "{l}");
    let l = d.wait_seen(&[&target(&agents[4]), "result=none"], 5 * S);
    assert_eq!(field(&l, "reason"), Some("closed"), "{l}");
    let l = d.wait_seen(&[&format!("agent target={refused} "), "result=none"], 5 * S);
    assert_eq!(field(&l, "reason"), Some("connect-refused"), "{l}");
    // On the agents' grid (200 ms), not the checks' (1 s); the agent got its --send text.
    d.collect_for(S);
    let n = d.count(&[&target(&agents[0]), "result=reply"]);
    assert!(n >= 4, "{n} agent replies in about a second");
    assert!(agents[0].accepted() as usize >= n);

    // 50%: UP at half its weight, from the agent.
    d.wait_seen(&["event=up", &format!("real={} ", name(&agents[0]))], 2 * S);
    d.wait_seen(
        &[
            "ipvs op=edit-dest",
            &format!("real={} ", name(&agents[0])),
            "weight=5",
        ],
        2 * S,
    );
    let e = status_entry(&d, &name(&agents[0]));
    assert!(e.contains("\"weight\":5,"), "{e}");
    assert!(e.contains("\"weight_from\":\"agent 50%\""), "{e}");
    // drain: UP, weight 0 from the agent; not an operator's drain (state UP, no event).
    d.wait_seen(&["event=up", &format!("real={} ", name(&agents[1]))], 2 * S);
    let e = status_entry(&d, &name(&agents[1]));
    assert!(e.contains("\"state\":\"up\""), "{e}");
    assert!(e.contains("\"weight\":0,"), "{e}");
    assert!(e.contains("\"weight_from\":\"agent drain\""), "{e}");
    assert!(
        edit_weights(&d, &name(&agents[1])).iter().all(|&w| w == 0),
        "{:#?}",
        d.seen()
    );
    assert_eq!(d.count(&["event=drained"]), 0);
    // down,disk full: DOWN for the agent, whatever the passing checks say.
    let down = d.wait_seen(
        &["event=down", &format!("real={} ", name(&agents[2]))],
        2 * S,
    );
    assert_eq!(field(&down, "reason"), Some("agent-down"), "{down}");
    assert_eq!(field(&down, "detail"), Some("disk full"), "{down}");
    // Garbage, a closed agent and an unreachable one: UP at the configured weight, and
    // nothing else.
    for real in [name(&agents[3]), name(&agents[4]), refused.to_string()] {
        d.wait_seen(&["event=up", &format!("real={real} ")], 2 * S);
        assert_eq!(edit_weights(&d, &real), [10], "{real}");
        let e = status_entry(&d, &real);
        assert!(e.contains("\"weight\":10,"), "{e}");
        assert!(e.contains("\"weight_from\":\"config\""), "{e}");
    }
    d.collect_for(S);
    assert_eq!(d.count(&["event=down"]), 1, "{:#?}", d.seen());
    assert_eq!(
        d.count(&["event=up", &format!("real={} ", name(&agents[2]))]),
        0
    );
    let e = status_entry(&d, &name(&agents[2]));
    assert!(e.contains("\"state\":\"down\""), "{e}");

    // `up` after `down`: UP again at once (its checks pass), at the configured weight.
    agents[2].set_script(Script::banner("up"));
    d.wait_for(&["event=up", &format!("real={} ", name(&agents[2]))], 3 * S);
    let e = status_entry(&d, &name(&agents[2]));
    assert!(e.contains("\"state\":\"up\""), "{e}");
    assert!(e.contains("\"weight\":10,"), "{e}");
    // `up` after `drain` and a new percentage: weight 10 × 75 %, rounded.
    agents[1].set_script(Script::banner("up 75%"));
    d.wait_for(
        &[
            "ipvs op=edit-dest",
            &format!("real={} ", name(&agents[1])),
            "weight=8",
        ],
        3 * S,
    );
    assert_eq!(d.count(&["event=down"]), 1);
    assert_eq!(d.stop().0, Some(0));
}

/// A reload kills the `exec` programs still running (their checks run again on their grid)
/// and reaps them: none is left behind, and the check goes on with a new program.
#[test]
fn a_reload_kills_and_reaps_running_programs() {
    let dir = TempDir::new("exec-reload");
    let pids = dir.0.join("pids");
    let conf = exec_conf(
        "timeout 20s\n",
        &[&format!(
            r#"/bin/sh -c "echo $$ >> {}; exec sleep 30""#,
            pids.display()
        )],
    );
    let read = || -> Vec<i32> {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect()
    };
    let wait_for_pids = |n: usize| {
        let end = std::time::Instant::now() + 5 * S;
        while read().len() < n && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        read()
    };
    let mut d = Lvsmon::start(&conf, &[]);
    let first = wait_for_pids(1);
    assert_eq!(first.len(), 1);
    d.signal(libc::SIGHUP);
    d.wait_for(&["msg=\"reloaded\""], 5 * S);
    let both = wait_for_pids(2);
    assert_eq!(both.len(), 2, "no new program after the reload");
    let end = std::time::Instant::now() + 3 * S;
    let gone = || !std::path::Path::new(&format!("/proc/{}", first[0])).exists();
    while !gone() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        gone(),
        "program {} still there (running or unreaped)",
        first[0]
    );
    assert_eq!(d.count(&["result=fail"]), 0);
    assert_eq!(d.stop().0, Some(0));
}
