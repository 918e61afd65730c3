//! The configuration as the binary reads it: `--check-config` and the client write their
//! output without panicking whatever becomes of it, `--interval` keeps the file's limits,
//! and a reload reads only regular files and is abandoned when it takes too long, keeping
//! the running configuration in every case.

mod common;

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::lvsmon::{bin, Lvsmon, TempDir};
use common::refused_addr;

const S: Duration = Duration::from_secs(1);

/// A pipe whose reading end is already closed: every write to the other end fails with EPIPE.
fn widowed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success; each is owned exactly once below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh descriptors from pipe2, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    write
}

/// Runs `lvsmon ARGS` with standard output going to `out`; kills it (by pid) if it has not
/// ended within 10 s, and fails.
#[track_caller]
fn run_to(args: &[&str], out: Stdio) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lvsmon");
    let end = Instant::now() + 10 * S;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lvsmon {args:?} did not end within 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

#[track_caller]
fn no_panic(what: &str, out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), Some(101), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

const GOOD: &str = "virtual tcp 127.1.0.1:80 {\n  real 127.0.0.1:9\n}\n";

/// `--check-config`, `--help` and a client command whose standard output is closed (EPIPE)
/// or full (ENOSPC): exit status 1, never a panic (it was exit 101 with a backtrace). A
/// closed pipe is quiet, a full disk is one line on standard error.
#[test]
fn output_errors_never_panic() {
    let dir = TempDir::new("cfg-out");
    let conf = dir.file("lvsmon.conf", GOOD);
    let conf = conf.to_str().unwrap();

    let out = run_to(&["-t", "-f", conf], Stdio::from(widowed_pipe()));
    let err = no_panic("-t into a closed pipe", &out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err, "", "a reader that left is not told anything");

    let full = || Stdio::from(File::create("/dev/full").expect("/dev/full"));
    let out = run_to(&["-t", "-f", conf], full());
    let err = no_panic("-t into /dev/full", &out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "lvsmon: cannot write to standard output: No space left on device\n"
    );

    for args in [&["--help"][..], &["--version"]] {
        let out = run_to(args, full());
        let err = no_panic("--help into /dev/full", &out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        let out = run_to(args, Stdio::from(widowed_pipe()));
        no_panic("--help into a closed pipe", &out);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }

    // The client: the reply cannot be copied, which is not the control socket's fault.
    let (refused, _guard) = refused_addr();
    let d = Lvsmon::start(
        &format!("virtual tcp 127.1.0.1:80 {{\n  real {refused}\n}}\n"),
        &[],
    );
    let sock = d.socket();
    let sock = sock.to_str().unwrap();
    let end = Instant::now() + 5 * S;
    while !d.socket().exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = run_to(&["status", "--socket", sock], Stdio::from(widowed_pipe()));
    let err = no_panic("status into a closed pipe", &out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("control socket"), "{err}");
    let out = run_to(&["status", "--socket", sock], full());
    let err = no_panic("status into /dev/full", &out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "lvsmon: cannot write to standard output: No space left on device\n"
    );
}

/// `--interval` has the limits of the file's `interval` (50 ms to 1 day), and says so.
#[test]
fn interval_limits_on_the_command_line_and_in_the_file() {
    let dir = TempDir::new("cfg-interval");
    let conf = dir.file("lvsmon.conf", GOOD);
    let conf = conf.to_str().unwrap();
    for bad in ["0.01", "0.0000001", "86401"] {
        let out = run_to(&["-t", "-f", conf, "-i", bad], Stdio::null());
        let err = no_panic("-i", &out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(&format!(
                "{bad} is out of range (expected 0.05 to 86400 seconds)"
            )),
            "{err}"
        );
    }
    for good in ["0.05", "86400"] {
        let out = run_to(&["-t", "-f", conf, "-i", good], Stdio::null());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{good}: {}",
            no_panic("-i", &out)
        );
    }
    let short = dir.file("short.conf", &format!("interval 0.0000001\n{GOOD}"));
    let out = run_to(&["-t", "-f", short.to_str().unwrap()], Stdio::null());
    let err = no_panic("interval", &out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("short.conf:1:10: interval 0.0000001 is too short (expected 50ms to 1d)"),
        "{err}"
    );
}

/// `--check-config` of a main file that is a device or a FIFO ends at once with the reason.
#[test]
fn check_config_reads_only_regular_files() {
    let dir = TempDir::new("cfg-special");
    let fifo = dir.0.join("fifo.conf");
    mkfifo(&fifo);
    for (path, kind) in [
        ("/dev/zero", "a character device"),
        (fifo.to_str().unwrap(), "a FIFO"),
    ] {
        let t = Instant::now();
        let out = run_to(&["-t", "-f", path], Stdio::null());
        let err = no_panic(path, &out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(
            err,
            format!("lvsmon: {path}: not a regular file ({kind}); expected a regular file\n")
        );
        assert!(t.elapsed() < 5 * S, "{path}: {:?}", t.elapsed());
    }
}

fn mkfifo(path: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// True when `lvsmon status` lists `real`.
fn lists(d: &Lvsmon, real: &str) -> bool {
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    out.lines()
        .any(|l| l.split_whitespace().nth(1) == Some(real))
}

/// A reload whose file includes `/dev/zero` or a FIFO, or whose main file became a FIFO, is
/// refused at once with the reason (it once read `/dev/zero` without end and hung on a FIFO
/// for ever, and every later reload with it); the daemon keeps running its configuration,
/// and a later good reload works.
#[test]
fn reload_refuses_devices_and_fifos() {
    let (a, _ga) = refused_addr();
    let (b, _gb) = refused_addr();
    let conf = |extra: &str, reals: &str| {
        format!("interval 200ms\n{extra}virtual tcp 127.1.0.1:80 {{\n{reals}}}\n")
    };
    let mut d = Lvsmon::start(&conf("", &format!("  real {a}\n")), &[]);
    d.wait_seen(&["msg=\"starting\""], 5 * S);
    let fifo = d.dir.0.join("pipe.conf");
    mkfifo(&fifo);
    let path = d.dir.0.join("lvsmon.conf");

    for (include, kind) in [
        ("/dev/zero".to_string(), "a character device"),
        (fifo.display().to_string(), "a FIFO"),
    ] {
        d.dir.file(
            "lvsmon.conf",
            &conf(
                &format!("include \"{include}\"\n"),
                &format!("  real {a}\n  real {b}\n"),
            ),
        );
        let t = Instant::now();
        let (code, out, err) = d.client(&["reload"]);
        assert_eq!(code, Some(1), "{out}{err}");
        assert!(
            err.contains("lvsmon.conf:2:9: cannot read include file")
                && err.contains(&format!("not a regular file ({kind})"))
                && err.contains("the running configuration is kept"),
            "{err}"
        );
        assert!(t.elapsed() < 5 * S, "{include}: {:?}", t.elapsed());
    }
    // The main file itself.
    std::fs::remove_file(&path).unwrap();
    mkfifo(&path);
    let (code, _, err) = d.client(&["reload"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a regular file (a FIFO)"), "{err}");
    // SIGHUP: the same, in the log.
    d.signal(libc::SIGHUP);
    d.wait_for(
        &[
            "msg=\"reload failed; the running configuration is kept\"",
            "not a regular file (a FIFO)",
        ],
        5 * S,
    );
    assert!(lists(&d, &a.to_string()) && !lists(&d, &b.to_string()));

    // A good file again: it is read.
    std::fs::remove_file(&path).unwrap();
    d.dir.file(
        "lvsmon.conf",
        &conf("", &format!("  real {a}\n  real {b}\n")),
    );
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("reloaded "), "{out}");
    assert!(lists(&d, &b.to_string()));
    assert_eq!(d.stop().0, Some(0));
}

/// A reload still loading after `--reload-timeout` is abandoned with an error and the running
/// configuration stays; the next reload is not held up by it.
#[test]
fn a_reload_that_overruns_its_time_limit_is_abandoned() {
    let (a, _ga) = refused_addr();
    let (b, _gb) = refused_addr();
    let small = |reals: &str| format!("virtual tcp 127.1.0.1:80 {{\n{reals}}}\n");
    let mut d = Lvsmon::start(
        &small(&format!("  real {a}\n")),
        &["--reload-timeout", "100ms"],
    );
    d.wait_seen(&["msg=\"starting\""], 5 * S);

    // 100,000 real servers: several hundred milliseconds to read and plan in a debug build
    // (about 115 ms for 20,000 measured), far above the limit.
    let mut big =
        String::from("interval 10s\nmax-checks-in-flight 100\nhistory raw 0 minute 0 hour 0\n");
    for v in 0..1000 {
        big.push_str(&format!(
            "virtual tcp 127.3.{}.{}:80 {{\n",
            v / 250,
            v % 250 + 1
        ));
        for r in 0..100 {
            big.push_str(&format!(
                "  real 127.4.{}.{}:{}\n",
                v / 250,
                v % 250 + 1,
                1000 + r
            ));
        }
        big.push_str("}\n");
    }
    d.dir.file("lvsmon.conf", &big);
    let t = Instant::now();
    let (code, out, err) = d.client(&["reload"]);
    let took = t.elapsed();
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains(
            "took longer than 0.1 s (--reload-timeout); the reload was abandoned (the running \
             configuration is kept)"
        ),
        "{err}"
    );
    assert!(took < 5 * S, "{took:?}");
    d.wait_seen(
        &[
            "msg=\"reload failed; the running configuration is kept\"",
            "abandoned",
        ],
        5 * S,
    );
    assert!(lists(&d, &a.to_string()));

    // A small file loads well within the limit.
    d.dir
        .file("lvsmon.conf", &small(&format!("  real {a}\n  real {b}\n")));
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(lists(&d, &b.to_string()));
    assert_eq!(d.stop().0, Some(0));
}

/// The raw ring is capped by count as well as by time: at the default `history`, the memory
/// `--check-config` forecasts per real server is the same at 100 ms, 250 ms and 1 s (the
/// last 64 results), and the line says the cap; at 10 s the 10 minutes need only 60. With
/// 4-byte raw results and 7- and 8-byte buckets, history at the defaults stays under 1,550
/// bytes per real server at any interval, so that with the rest (250 to 400 bytes) a real
/// costs at most 2 KB.
#[test]
fn check_config_forecasts_history_capped_by_count() {
    let dir = TempDir::new("histcap");
    let per_real = |interval: &str| {
        let mut c = format!("interval {interval}\nmax-checks-in-flight 100\n");
        c.push_str("virtual tcp 127.1.0.1:80 {\n");
        for r in 0..100 {
            c.push_str(&format!("  real 127.0.0.1:{}\n", 1000 + r));
        }
        c.push_str("}\n");
        let conf = dir.file(&format!("h{interval}.conf"), &c);
        let out = run_to(
            &["--check-config", "-f", conf.to_str().unwrap()],
            Stdio::piped(),
        );
        let err = no_panic("--check-config", &out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("history: "))
            .unwrap_or_else(|| panic!("{text}"))
            .to_string();
        assert!(line.contains("raw 600s at most 64 results"), "{line}");
        let bytes: u64 = line
            .split_once('(')
            .and_then(|(_, r)| r.split_once(' '))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        bytes
    };
    let fast = per_real("100ms");
    assert_eq!(per_real("250ms"), fast);
    assert_eq!(per_real("1s"), fast);
    // 64 raw results of 4 bytes at most, where 10 minutes at 1 s used to be 600.
    assert!(fast <= 1550, "{fast} bytes per real at 100 ms");
    assert_eq!(fast - per_real("10s"), (64 - 60) * 4);
    assert!(per_real("1h") <= fast);
}

/// The man pages' example blocks (`.EX`/`.EE` and `.nf`/`.fi`) with groff's escapes undone and
/// folded lines (a line that starts with an option, `--...`) joined to the line before.
fn man_examples(page: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(format!("{}/man/{page}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("man/{page}: {e}"));
    let mut blocks = Vec::new();
    let mut open: Option<(usize, &str, Vec<String>)> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut open {
            None if line.starts_with(".EX") => open = Some((n + 1, ".EE", Vec::new())),
            None if line.starts_with(".nf") => open = Some((n + 1, ".fi", Vec::new())),
            None => {}
            Some((start, end, lines)) => {
                if line.starts_with(*end) {
                    blocks.push((*start, lines.join("\n") + "\n"));
                    open = None;
                    continue;
                }
                let line = line
                    .replace("\\-", "-")
                    .replace("\\(aq", "'")
                    .replace("\\(dq", "\"")
                    .replace("\\&", "")
                    .replace("\\e", "\\");
                match lines.last_mut() {
                    Some(last) if line.trim_start().starts_with("--") => {
                        last.push(' ');
                        last.push_str(line.trim_start());
                    }
                    _ => lines.push(line),
                }
            }
        }
    }
    blocks
}

/// Every configuration example in lvsmon.conf(5) and lvsmon(8) passes `--check-config`: a
/// whole file (it has a `virtual ... {` block) as it stands, and a block of global lines
/// (check lines, the director-pair settings, `exec-max`) with one virtual service added.
/// Notify programs named by absolute path are stand-ins in a `--chroot`.
#[test]
fn man_page_configuration_examples_pass_check_config() {
    const GLOBAL: [&str; 8] = [
        "check",
        "agent",
        "exec-max",
        "sync-daemon",
        "track-file",
        "ipvs-timeouts",
        "slow-above",
        "slow-start",
    ];
    let dir = TempDir::new("man-examples");
    let mut tried = 0;
    for page in ["lvsmon.conf.5", "lvsmon.8"] {
        for (line, text) in man_examples(page) {
            let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
            let lines: Vec<Vec<String>> = text
                .lines()
                .map(words)
                .filter(|w| !w.is_empty() && !w[0].starts_with('#'))
                .collect();
            let whole = lines.iter().any(|w| {
                w.len() >= 4
                    && w[0] == "virtual"
                    && ["tcp", "udp", "sctp", "fwmark"].contains(&w[1].as_str())
                    && w.last().is_some_and(|l| l == "{")
            });
            let global = !lines.is_empty()
                && lines
                    .iter()
                    .all(|w| GLOBAL.contains(&w[0].as_str()) && w.len() >= 2);
            if !whole && !global {
                continue;
            }
            let conf = if whole {
                text.clone()
            } else {
                text.clone() + "virtual tcp 192.0.2.1:80 {\n  real 192.0.2.2\n}\n"
            };
            let root = dir.0.join(format!("root-{page}-{line}"));
            for w in &lines {
                if w[0] == "notify" && w[1].starts_with('/') {
                    use std::os::unix::fs::PermissionsExt;
                    let p = root.join(&w[1][1..]);
                    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                    std::fs::write(&p, "#!/bin/sh\n").unwrap();
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
                }
            }
            std::fs::create_dir_all(&root).unwrap();
            let file = dir.file(&format!("{page}-{line}.conf"), &conf);
            let out = run_to(
                &[
                    "--check-config",
                    "--chroot",
                    root.to_str().unwrap(),
                    "-f",
                    file.to_str().unwrap(),
                ],
                Stdio::piped(),
            );
            let err = no_panic("--check-config", &out);
            assert_eq!(
                out.status.code(),
                Some(0),
                "man/{page}:{line}: the example does not pass --check-config:\n{conf}\n{err}"
            );
            tried += 1;
        }
    }
    // The pages' examples of several checks, --mark, exec, agent, weights, the full example,
    // the director pair's lines, exec-max and the check lines of each plugin.
    assert!(tried >= 20, "{tried} examples found");
}
