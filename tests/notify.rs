//! Notify commands and `notify-fifo` with the real binary: the order of one server's events,
//! the FIFO's reader, the notify program checked before it is needed, and children's output
//! kept out of the daemon's log.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::lvsmon::{bin, Lvsmon, TempDir};
use common::observe::{metric, scrape};
use common::{Backend, Script};

const S: Duration = Duration::from_secs(1);

/// Reads `path` until `done(text)` holds, at most `limit`; returns the last text read.
fn read_until(path: &std::path::Path, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) || Instant::now() >= end {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Flips `backends` between 200 and 503, each on its own beat, for `d`.
fn flap(backends: &[&Backend], d: Duration) {
    let end = Instant::now() + d;
    let mut tick = 0u32;
    while Instant::now() < end {
        for (i, b) in backends.iter().enumerate() {
            // Backend i changes every (i + 2) ticks: the two are out of step.
            if tick.is_multiple_of(i as u32 + 2) {
                let up = (tick / (i as u32 + 2)).is_multiple_of(2);
                b.set_script(Script::http(if up { 200 } else { 503 }, "x"));
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(110));
    }
}

/// Per key (a real's address, or `quorum`), the events of the log lines, in log order.
fn log_order(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l.contains(" event="))
        .map(|l| {
            let ev = common::lvsmon::field(l, "event").unwrap().to_string();
            let key = common::lvsmon::field(l, "real")
                .unwrap_or("quorum")
                .to_string();
            (key, ev)
        })
        .collect()
}

fn of_key<'a>(seq: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    seq.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, e)| e.as_str())
        .collect()
}

/// The loop was never held up: every check started within 0.5 s of its grid point, by the
/// loop's own lateness figures. A loop that blocked on the FIFO or on a child's output would
/// start the next check as late as it was held; a busy machine delays it far less (it may
/// still cost a grid point or two at 100 ms, which `lvsmon_missed_starts_total` counts, so
/// that count is shown, not asserted).
#[track_caller]
fn assert_never_held_up(page: &str) {
    let started = metric(page, "lvsmon_check_lateness_seconds_count").expect("lateness count");
    let within = metric(page, "lvsmon_check_lateness_seconds_bucket{le=\"0.5\"}")
        .expect("lateness bucket 0.5");
    assert!(started >= 10.0, "{page}");
    assert_eq!(
        within, started,
        "a check started over 0.5 s late: the loop was held up\n{page}"
    );
    eprintln!(
        "{started} starts, all within 0.5 s of the grid; missed starts {:?}",
        metric(page, "lvsmon_missed_starts_total")
    );
}

/// Events of one real, and of one virtual's quorum, reach the notify command in the order
/// the log has them, although several commands run at once and each event kind makes the
/// command sleep a different time (an `up` longer than the `down` after it, so that without
/// the order the `down` would finish first). The same events reach `notify-fifo`, in the
/// same order, for a reader that reads as they come.
#[test]
fn notify_events_of_one_server_keep_their_order() {
    let a = Backend::start(Script::http(200, "x"));
    let b = Backend::start(Script::http(200, "x"));
    let dir = TempDir::new("notify-order");
    let out = dir.0.join("events.txt");
    let fifo = dir.0.join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let fifo_path = fifo.clone();
    // The reader reads line by line as they come, until the daemon closes the FIFO (it
    // stops) or 40 s pass.
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let f = std::fs::File::open(&fifo_path).unwrap();
        let mut lines = Vec::new();
        let end = Instant::now() + 40 * S;
        for l in std::io::BufReader::new(f).lines() {
            let Ok(l) = l else { break };
            lines.push(l);
            if Instant::now() > end {
                break;
            }
        }
        lines
    });
    let script = format!(
        "case $LVSMON_EVENT in up) sleep 0.25;; down) sleep 0.01;; quorum-lost) sleep 0.3;; *) sleep 0.02;; esac; echo \"${{LVSMON_REAL:-quorum}} $LVSMON_EVENT\" >> {}",
        out.display()
    );
    let conf = format!(
        "interval 100ms\nfall 1\nrise 1\nnotify-max 8\nnotify-fifo \"{}\"\nnotify /bin/sh -c \"{}\"\n\
         virtual tcp 127.1.0.1:80 {{\n  quorum 2\n  check http\n  real {}\n  real {}\n}}\n",
        fifo.display(),
        script.replace('"', "\\\""),
        a.addr(),
        b.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up", &a.addr().to_string()], 5 * S);
    flap(&[&a, &b], 4 * S);
    a.set_script(Script::http(200, "x"));
    b.set_script(Script::http(200, "x"));
    d.wait_for(&["event=quorum-restored"], 5 * S);
    d.collect_for(S / 2);
    let logged = log_order(d.seen());
    assert!(logged.len() >= 20, "enough flapping: {logged:?}");
    let text = read_until(&out, 30 * S, |t| t.lines().count() >= logged.len());
    let ran: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let (k, e) = l.split_once(' ').unwrap();
            (k.to_string(), e.to_string())
        })
        .collect();
    assert_eq!(ran.len(), logged.len(), "every event ran once:\n{text}");
    for key in [a.addr().to_string(), b.addr().to_string(), "quorum".into()] {
        let want = of_key(&logged, &key);
        assert!(want.len() >= 4, "{key}: {want:?}");
        assert_eq!(
            of_key(&ran, &key),
            want,
            "{key}: the command saw another order"
        );
    }
    // The FIFO's reader got every event line in log order.
    let (code, _) = d.stop();
    assert_eq!(code, Some(0));
    let fifo_lines = reader.join().unwrap();
    let want: Vec<String> = d
        .seen()
        .iter()
        .filter(|l| l.contains(" event="))
        .map(|l| l[l.find("event=").unwrap()..].to_string())
        .collect();
    assert_eq!(fifo_lines, want);
}

/// `notify-fifo` with no reader at all, then a reader that opens and never reads: the loop
/// goes on checking, never held up at a grid point, nothing blocks, and a reader that comes later gets
/// the waiting lines from the start of one.
#[test]
fn notify_fifo_without_reader_never_blocks() {
    let a = Backend::start(Script::http(200, "x"));
    let dir = TempDir::new("notify-fifo");
    let fifo = dir.0.join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let conf = format!(
        "interval 100ms\nfall 1\nrise 1\nnotify-fifo \"{}\"\n\
         virtual tcp 127.1.0.2:80 {{\n  check http\n  real {}\n}}\n",
        fifo.display(),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let m = d.metrics_addr();
    d.wait_for(
        &["msg=\"notify-fifo not writable, lines wait\"", "errno=6"],
        5 * S,
    );
    // A reader that opens the FIFO and never reads.
    // SAFETY: open with a NUL-terminated path.
    let stalled = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
    assert!(stalled >= 0);
    flap(&[&a], 2 * S);
    a.set_script(Script::http(200, "x"));
    let page = scrape(m, None).unwrap();
    assert_never_held_up(&page);
    // About 20 grid points in the 2 s; a loop blocked on the FIFO would check none.
    assert!(
        metric(&page, "lvsmon_checks_total").unwrap() >= 10.0,
        "{page}"
    );
    assert_eq!(
        metric(&page, "lvsmon_notify_dropped_total{to=\"fifo\"}"),
        Some(0.0)
    );
    // Now read: every event so far, in order, from the beginning.
    // SAFETY: our own descriptor.
    let mut f = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(stalled) };
    d.collect_for(S);
    let want: Vec<String> = d
        .seen()
        .iter()
        .filter(|l| l.contains(" event="))
        .map(|l| l[l.find("event=").unwrap()..].to_string())
        .collect();
    assert!(want.len() >= 4, "{want:?}");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    let end = Instant::now() + 5 * S;
    while got.len() < want.len() && Instant::now() < end {
        use std::io::Read;
        match f.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.lines().count() >= want.len() {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines[..want.len().min(lines.len())], want[..], "{text}");
}

/// What a notify command prints reaches the log only as a few bounded lines of the daemon's
/// own: a command that writes a line, then 4 MB to its stdout and 4 MB to its stderr for
/// every event, leaves the log small (its first lines logged as `msg="notify output"`, the
/// rest counted), and the loop is never held up at a grid point.
/// A reader that leaves the FIFO with lines in it unread: the next event line meets `EPIPE`,
/// and every line left in the pipe is counted as dropped, in the warning (`lost_lines=`) and
/// in `lvsmon_notify_dropped_total{to="fifo"}`.
#[test]
fn notify_fifo_lines_left_unread_are_counted() {
    let a = Backend::start(Script::http(200, "x"));
    let dir = TempDir::new("notify-fifo-lost");
    let fifo = dir.0.join("events.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // The reader is there before the daemon, so every line goes into the pipe at once; it
    // never reads (and the daemon does not inherit it).
    // SAFETY: open with a NUL-terminated path.
    let rd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    assert!(rd >= 0);
    let conf = format!(
        "interval 100ms\nfall 1\nrise 1\nnotify-fifo \"{}\"\n\
         virtual tcp 127.1.0.3:80 {{\n  check http\n  real {}\n}}\n",
        fifo.display(),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let m = d.metrics_addr();
    d.wait_for(&["event=up", &a.addr().to_string()], 5 * S);
    flap(&[&a], S);
    a.set_script(Script::http(200, "x"));
    // The real is up again (the lines of the flapping are read first).
    let end = Instant::now() + 10 * S;
    loop {
        d.collect_for(S / 2);
        let last = d.seen().iter().rev().find(|l| l.contains(" event="));
        if last.is_some_and(|l| l.contains("event=quorum-restored")) {
            break;
        }
        assert!(Instant::now() < end, "not up again: {:?}", d.seen());
    }
    // The reader goes away; the next event's line meets EPIPE.
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(rd) };
    a.set_script(Script::http(503, "x"));
    let warn = d
        .try_wait_for(
            &["msg=\"notify-fifo not writable, lines wait\"", "errno=32"],
            5 * S,
        )
        .unwrap_or_else(|| {
            let ours: Vec<&String> = d
                .seen()
                .iter()
                .filter(|l| !l.contains(" check target="))
                .collect();
            panic!("no EPIPE warning: {ours:#?}")
        });
    // Every event line before the one that met EPIPE (logged before it was written) was in
    // the pipe.
    let at = d.seen().iter().position(|l| *l == warn).unwrap();
    let events = d.seen()[..at]
        .iter()
        .filter(|l| l.contains(" event="))
        .count();
    assert!(events >= 3, "{:?}", d.seen());
    let in_pipe = events - 1;
    assert_eq!(
        common::lvsmon::field(&warn, "lost_lines"),
        Some(in_pipe.to_string().as_str()),
        "{warn}"
    );
    let page = scrape(m, None).unwrap();
    assert_eq!(
        metric(&page, "lvsmon_notify_dropped_total{to=\"fifo\"}"),
        Some(in_pipe as f64),
        "{page}"
    );
}

#[test]
fn notify_output_stays_out_of_the_log() {
    let a = Backend::start(Script::http(200, "x"));
    let conf = format!(
        "interval 100ms\nfall 1\nrise 1\nnotify-max 4\n\
         notify /bin/sh -c \"echo hello from $LVSMON_EVENT >&2; head -c 4000000 /dev/zero | tr '\\\\0' o; head -c 4000000 /dev/zero | tr '\\\\0' e >&2; echo notify-output-end >&2\"\n\
         virtual tcp 127.1.0.3:80 {{\n  check http\n  real {}\n}}\n",
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let m = d.metrics_addr();
    d.wait_for(&["event=up"], 5 * S);
    flap(&[&a], 3 * S);
    a.set_script(Script::http(200, "x"));
    d.collect_for(2 * S);
    let events = d.count(&[" event="]);
    assert!(events >= 4, "{events} events");
    let bytes: usize = d.seen().iter().map(|l| l.len() + 1).sum();
    assert_eq!(
        d.count(&["notify-output-end"]),
        0,
        "a command's output reached the log"
    );
    assert!(
        bytes < 200 * events + 200_000,
        "log grew to {bytes} bytes for {events} events"
    );
    // Each command's first line, and then its count of what was discarded.
    let ups = d.count(&[" event=up"]);
    let said = d.count(&[
        "msg=\"notify output\" program=\"/bin/sh\" event=up",
        "line=\"hello from up\"",
    ]);
    assert!(said >= 1 && said <= ups, "{said} of {ups}");
    let l = d.wait_seen(&["msg=\"notify output discarded\"", "event=down"], 10 * S);
    let dropped: u64 = common::lvsmon::field(&l, "bytes").unwrap().parse().unwrap();
    assert!(dropped >= 7_999_000, "{l}");
    let page = scrape(m, None).unwrap();
    assert_never_held_up(&page);
}

/// A notify program that does not exist, or cannot be run, is an error of `--check-config`
/// and of startup, at the `file:line:col` of its notify line, naming the program; a reload
/// to such a file is refused and the running configuration stays.
#[test]
fn notify_program_is_checked_before_it_is_needed() {
    let dir = TempDir::new("notify-check");
    let noexec = dir.file("noexec.sh", "#!/bin/sh\n");
    let confs = [
        ("/x/nonexist.sh".to_string(), "No such file"),
        (noexec.display().to_string(), "not executable"),
        (dir.0.display().to_string(), "not a regular file"),
    ];
    for (program, why) in &confs {
        let conf = dir.file(
            "bad.conf",
            &format!(
                "interval 1s\nvirtual tcp 127.1.0.4:80 {{\n  notify {program} arg\n  real 127.0.0.1:9\n}}\n"
            ),
        );
        let out = Command::new(bin())
            .args(["-t", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "-t accepted {program}: {err}");
        assert!(
            err.contains(&format!("{}:3:10:", conf.display()))
                && err.contains(program.as_str())
                && err.contains(why),
            "{err}"
        );
        let mut d = Lvsmon::start(&std::fs::read_to_string(&conf).unwrap(), &[]);
        assert_eq!(d.wait_exit(5 * S), Some(1), "started with {program}");
        assert!(
            d.seen()
                .iter()
                .any(|l| l.contains(":3:10:") && l.contains(program.as_str()) && l.contains(why)),
            "{:?}",
            d.seen()
        );
    }

    // With --chroot, the program is looked up inside the chroot.
    let root = TempDir::new("notify-chroot");
    let conf = dir.file(
        "chroot.conf",
        "virtual tcp 127.1.0.4:80 {\n  notify /bin/true\n  real 127.0.0.1:9\n}\n",
    );
    let out = Command::new(bin())
        .args(["-t", "--chroot"])
        .arg(&root.0)
        .arg("-f")
        .arg(&conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(":2:10:") && err.contains("--chroot") && err.contains("/bin/true"),
        "{err}"
    );

    // Reload: a bad program is refused; the old configuration goes on.
    let good = dir.file("good.sh", "#!/bin/sh\necho \"$LVSMON_EVENT\" >> \"$1\"\n");
    let mut perm = std::fs::metadata(&good).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&good, perm).unwrap();
    let a = Backend::start(Script::http(200, "x"));
    let events = dir.0.join("events.txt");
    let text = |program: &str| {
        format!(
            "interval 100ms\nfall 1\nvirtual tcp 127.1.0.4:80 {{\n  check http\n  notify {program} {}\n  real {}\n}}\n",
            events.display(),
            a.addr()
        )
    };
    let mut d = Lvsmon::start(&text(good.to_str().unwrap()), &[]);
    d.wait_for(&["event=up"], 5 * S);
    let conf = d.dir.file("lvsmon.conf", &text("/x/nonexist.sh"));
    let (code, _, err) = d.client(&["reload"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!("{}:5:10:", conf.display())) && err.contains("/x/nonexist.sh"),
        "{err}"
    );
    d.wait_for(
        &[
            "msg=\"reload failed; the running configuration is kept\"",
            "/x/nonexist.sh",
        ],
        5 * S,
    );
    // The old notify command still runs.
    a.set_script(Script::http(503, "x"));
    d.wait_for(&["event=down"], 5 * S);
    // The real's events in order; its virtual's quorum-lost is another server's, which may
    // come before or after them.
    let t = read_until(&events, 5 * S, |t| {
        t.contains("down") && t.contains("quorum-lost")
    });
    let real: Vec<&str> = t.lines().filter(|l| !l.starts_with("quorum")).collect();
    assert_eq!(real, ["up", "down"], "{t}");

    // A program that goes away after the start: the failure names it and the event.
    std::fs::remove_file(&good).unwrap();
    a.set_script(Script::http(200, "x"));
    let l = d.wait_for(&["msg=\"notify spawn failed\""], 5 * S);
    assert!(
        l.contains(&format!("program=\"{}\"", good.display()))
            && l.contains("event=up")
            && l.contains("virtual=tcp:127.1.0.4:80")
            && l.contains(&format!("real={}", a.addr()))
            && l.contains("errno=2"),
        "{l}"
    );
}

/// With `--user`, `--check-config` asks whether that user may run the notify program (and
/// each `exec` check's program), not whether root may: a root-only program (mode 0700), or
/// one in a directory the user cannot search, is an error at its notify line (a warning for
/// an exec check); mode 0755 in a searchable directory is fine. With `--chroot` the program
/// is looked up inside the chroot, as that user too.
#[test]
fn programs_are_checked_as_the_user_they_run_as() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED programs_are_checked_as_the_user_they_run_as: needs root");
        return;
    }
    // SAFETY: getpwnam with a NUL-terminated name; only the null test is used.
    if unsafe { libc::getpwnam(c"nobody".as_ptr()) }.is_null() {
        eprintln!("SKIPPED programs_are_checked_as_the_user_they_run_as: no user nobody");
        return;
    }
    let dir = TempDir::new("notify-user");
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(m)).unwrap();
    };
    mode(&dir.0, 0o755);
    let prog = dir.file("prog.sh", "#!/bin/sh\nexit 0\n");
    let closed = dir.0.join("closed");
    std::fs::create_dir(&closed).unwrap();
    let inner = closed.join("prog.sh");
    std::fs::write(&inner, "#!/bin/sh\nexit 0\n").unwrap();
    mode(&inner, 0o755);
    let check = |program: &std::path::Path, args: &[&str]| {
        let conf = dir.file(
            "user.conf",
            &format!(
                "virtual tcp 127.1.0.4:80 {{\n  notify {}\n  real 127.0.0.1:9 {{\n    check exec {} x\n  }}\n}}\n",
                program.display(),
                program.display()
            ),
        );
        let out = Command::new(bin())
            .args(["-t", "--user", "nobody"])
            .args(args)
            .arg("-f")
            .arg(&conf)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), conf, err, text)
    };

    // Root may run all of these; nobody may not.
    mode(&prog, 0o700);
    mode(&closed, 0o700);
    for p in [&prog, &inner] {
        let (code, conf, err, _) = check(p, &[]);
        assert_eq!(code, Some(1), "-t accepted {}: {err}", p.display());
        assert!(
            err.contains(&format!("{}:2:10:", conf.display()))
                && err.contains(&format!("notify program {} ", p.display()))
                && err.contains("not executable by uid ")
                && err.contains("Permission denied"),
            "{err}"
        );
    }
    // The notify program may be run, the exec check's may not: a warning.
    mode(&closed, 0o755);
    mode(&prog, 0o700);
    let conf = dir.file(
        "exec.conf",
        &format!(
            "virtual tcp 127.1.0.4:80 {{\n  notify {}\n  real 127.0.0.1:9 {{\n    check exec {} x\n  }}\n}}\n",
            inner.display(),
            prog.display()
        ),
    );
    let out = Command::new(bin())
        .args(["-t", "--user", "nobody", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "warning: check exec for 127.0.0.1:9: program {} is not executable by uid ",
            prog.display()
        )) && text.contains("Permission denied"),
        "{text}"
    );
    // Everything open: no error, no warning.
    mode(&prog, 0o755);
    for p in [&prog, &inner] {
        let (code, _, err, text) = check(p, &[]);
        assert_eq!(code, Some(0), "{}: {err}", p.display());
        assert!(!text.contains("warning"), "{text}");
    }

    // Inside a chroot: /bin/x there, root-only and then open to all.
    let root = TempDir::new("notify-user-root");
    mode(&root.0, 0o755);
    std::fs::create_dir(root.0.join("bin")).unwrap();
    let x = root.0.join("bin/x");
    std::fs::write(&x, "#!/bin/sh\nexit 0\n").unwrap();
    mode(&x, 0o700);
    let chroot = ["--chroot", root.0.to_str().unwrap()];
    let (code, conf, err, _) = check(std::path::Path::new("/bin/x"), &chroot);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("{}:2:10:", conf.display()))
            && err.contains("--chroot")
            && err.contains("not executable by uid "),
        "{err}"
    );
    mode(&x, 0o755);
    let (code, _, err, text) = check(std::path::Path::new("/bin/x"), &chroot);
    assert_eq!(code, Some(0), "{err}");
    assert!(!text.contains("warning"), "{text}");
}
