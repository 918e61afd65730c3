//! What lvsmon keeps on disk, run as an operator sees it: a `drain` answered `ok` survives a
//! `kill -9`; a save that fails is answered with an error naming the file and the reason, and
//! logged once per error; a second daemon is refused by the pid file's and the state
//! directory's locks, naming the first one's pid, and leaves the first one's files alone; a
//! pid file that is a symbolic link is refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lvsmon::{bin, Lvsmon, TempDir};
use common::observe::{metric, scrape};
use common::refused_addr;

const S: Duration = Duration::from_secs(1);

/// One virtual with one real at `real`, checked every 200 ms.
fn conf(real: std::net::SocketAddr, extra: &str) -> String {
    format!("interval 200ms\n{extra}virtual tcp 127.1.9.1:80 {{\n  real {real}\n}}\n")
}

/// The STATE column of `real` in `lvsmon status`.
fn state_of(d: &Lvsmon, real: &str) -> String {
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(real))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("{real} not in status:\n{out}"))
        .to_string()
}

/// Runs `lvsmon -n -f CONF ARGS` expecting it to refuse to start: returns its exit code and
/// standard error. A daemon that starts instead is killed after 5 s (code `None`).
fn run_refused(conf: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(bin())
        .arg("-n")
        .arg("-f")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lvsmon");
    let end = Instant::now() + 5 * S;
    let code = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st.code();
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, err)
}

/// Stops the daemon with SIGKILL, as a crash would, and waits for it (bounded).
fn crash(d: &mut Lvsmon) {
    d.signal(libc::SIGKILL);
    assert_eq!(d.wait_exit(5 * S), None, "SIGKILL gives no exit code");
}

/// `ok` from `drain` means the DRAINED mark is on disk: a `kill -9` right after the reply and a
/// restart with the same state directory find the real still drained; the same for `undrain`.
/// The periodic save (5 minutes by default) never runs in between.
#[test]
fn drain_answered_ok_survives_kill_9() {
    let (real, _g) = refused_addr();
    let dir = TempDir::new("durable");
    let state = dir.0.join("state");
    let conf = conf(real, "");
    let args = ["--state-dir", state.to_str().unwrap()];
    let r = real.to_string();

    let mut d = Lvsmon::start(&conf, &args);
    d.wait_for(&["check ", &format!("target={r}")], 5 * S);
    let t = Instant::now();
    let (code, out, err) = d.client(&["drain", &r]);
    let took = t.elapsed();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok: drained 1 of 1"), "{out}");
    crash(&mut d);
    eprintln!("drain answered in {took:?}");
    assert!(took < 3 * S, "drain took {took:?}");

    let mut d = Lvsmon::start(&conf, &args);
    d.wait_for(&["msg=\"state loaded\"", "drained=1"], 5 * S);
    assert_eq!(state_of(&d, &r), "drained");
    let (code, out, err) = d.client(&["undrain", &r]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("ok: undrained 1 of 1"), "{out}");
    crash(&mut d);

    let mut d = Lvsmon::start(&conf, &args);
    d.wait_for(&["msg=\"state loaded\"", "drained=0"], 5 * S);
    assert_ne!(state_of(&d, &r), "drained");
    assert_eq!(d.stop().0, Some(0));
}

/// A state file path that is a directory: the drain holds in the running daemon, but the reply
/// is an error naming the file and the reason in words (exit 1); the log says the same once
/// for repeated failures of the same kind, the failures are counted in the metrics, and once
/// the path is usable again the next drain is answered `ok` and the log says saves work.
#[test]
fn a_failed_save_is_answered_logged_once_and_counted() {
    let (real, _g) = refused_addr();
    let dir = TempDir::new("savefail");
    let state = dir.0.join("state");
    std::fs::create_dir_all(state.join("state").join("x")).unwrap();
    let r = real.to_string();
    let mut d = Lvsmon::start(
        &conf(real, ""),
        &[
            "--state-dir",
            state.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let maddr = d.metrics_addr();
    d.wait_for(&["check ", &format!("target={r}")], 5 * S);
    let file = format!("{}/state", state.display());

    let (code, out, err) = d.client(&["drain", &r]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains(&file), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
    assert!(err.contains("drained 1 of 1"), "{err}");
    assert_eq!(state_of(&d, &r), "drained", "the drain holds in memory");
    let line = d.wait_for(&["msg=\"state save failed\""], S);
    assert!(line.contains(&format!("path={file} ")), "{line}");
    assert!(line.contains("error=\"Is a directory\""), "{line}");
    assert!(line.contains("errno=21"), "{line}");

    // The same failure again: answered, counted, not logged again.
    let (code, _, err) = d.client(&["undrain", &r]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Is a directory"), "{err}");
    let page = scrape(maddr, None).expect("scrape");
    assert_eq!(metric(&page, "lvsmon_state_save_failures_total"), Some(2.0));
    d.collect_for(S / 4);
    assert_eq!(d.count(&["msg=\"state save failed\""]), 1, "logged again");

    // Repaired: saves work again and say so.
    std::fs::remove_dir_all(state.join("state")).unwrap();
    let (code, out, err) = d.client(&["drain", &r]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.wait_for(&["msg=\"state saved again\"", "failed_before=2"], S);
    assert_eq!(d.stop().0, Some(0));
}

/// An `undrain` while the state directory's file system is full is answered with
/// "No space left on device" and the file's name, not `ok`. The directory is a 256 KiB tmpfs
/// mounted in a mount namespace of the daemon's own (`unshare -m`), filled through
/// `/proc/PID/root`. Skipped (with a message) where mounting is not allowed.
#[test]
fn a_save_on_a_full_file_system_is_answered_with_the_reason() {
    let (real, _g) = refused_addr();
    let dir = TempDir::new("enospc");
    let state = dir.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mount = "d=$1; shift; mount -t tmpfs -o size=256k tmpfs \"$d\" && exec \"$@\"";
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", mount, "sh"])
        .arg(&state)
        .arg("true")
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: cannot mount a tmpfs in a new mount namespace here");
        return;
    }
    let conf_path = dir.file("lvsmon.conf", &conf(real, ""));
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", mount, "sh"])
        .arg(&state)
        .arg(bin())
        .args(["--dry-run", "-v", "-f"])
        .arg(&conf_path)
        .arg("--socket")
        .arg(dir.0.join("lvsmon.sock"))
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut d = Lvsmon::spawn(cmd, dir);
    let r = real.to_string();
    d.wait_for(&["check ", &format!("target={r}")], 5 * S);
    let (code, out, err) = d.client(&["drain", &r]);
    assert_eq!(code, Some(0), "{out}{err}");
    // Fill the daemon's tmpfs.
    let fill = format!("/proc/{}/root{}/fill", d.pid(), state.display());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&fill).expect("create the filler");
        let block = [0u8; 4096];
        let mut full = false;
        for _ in 0..1024 {
            if let Err(e) = f.write_all(&block).and_then(|_| f.flush()) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                full = true;
                break;
            }
        }
        assert!(full, "the tmpfs never filled");
    }
    let (code, out, err) = d.client(&["undrain", &r]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&format!("{}/state", state.display())), "{err}");
    let line = d.wait_for(&["msg=\"state save failed\""], S);
    assert!(line.contains("error=\"No space left on device\""), "{line}");
    assert!(line.contains("errno=28"), "{line}");
}

/// The pid file and the state directory are locked for the daemon's life. A second daemon with
/// the same `--pidfile` and `--state-dir` (another socket), or with only the same
/// `--state-dir`, exits 1 naming the first one's pid, and the first one's pid file stays, with
/// its pid. Notify commands inherit neither lock. A clean stop removes the pid file.
#[test]
fn a_second_daemon_is_refused_naming_the_first_ones_pid() {
    let (real, _g) = refused_addr();
    let dir = TempDir::new("locks");
    let pidfile = dir.0.join("lvsmon.pid");
    let state = dir.0.join("state");
    let fds = dir.0.join("notify.fds");
    let script = dir.file(
        "notify.sh",
        &format!(
            "#!/bin/sh\nls -l /proc/$$/fd/ > {0}.tmp 2>&1; mv {0}.tmp {0}\n",
            fds.display()
        ),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = conf(real, &format!("notify \"{}\"\n", script.display()));
    let conf_path = dir.file("lvsmon.conf", &text);
    let (p, s) = (pidfile.to_str().unwrap(), state.to_str().unwrap());
    let mut d = Lvsmon::start(&text, &["--pidfile", p, "--state-dir", s]);
    d.wait_for(&["msg=\"starting\""], 5 * S);
    let first = d.pid();
    let read_pid = || std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(read_pid(), format!("{first}\n"));

    let other_sock = dir.0.join("second.sock");
    let (code, err) = run_refused(
        &conf_path,
        &[
            "--pidfile",
            p,
            "--state-dir",
            s,
            "--socket",
            other_sock.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("pid file {p} is locked")), "{err}");
    assert!(err.contains(&format!("pid {first}")), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.starts_with("lvsmon: ")).count(),
        1,
        "{err}"
    );
    assert_eq!(read_pid(), format!("{first}\n"), "the first one's pid file");

    let other_pid = dir.0.join("second.pid");
    let (code, err) = run_refused(
        &conf_path,
        &[
            "--pidfile",
            other_pid.to_str().unwrap(),
            "--state-dir",
            s,
            "--socket",
            other_sock.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("state directory {s} is in use")),
        "{err}"
    );
    assert!(err.contains(&format!("pid {first}")), "{err}");
    assert!(
        !other_pid.exists(),
        "the refused daemon's own pid file stays"
    );
    // Its control socket, bound before the state directory was found locked, is gone too;
    // the first one's still answers.
    assert!(
        std::fs::symlink_metadata(&other_sock).is_err(),
        "the refused daemon's socket file stays"
    );
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(read_pid(), format!("{first}\n"));

    // The notify command's descriptors: neither the pid file nor the state directory.
    d.wait_for(&["event=down"], 5 * S);
    let end = Instant::now() + 5 * S;
    while !fds.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let listing = std::fs::read_to_string(&fds).expect("the notify command ran");
    assert!(!listing.contains(p), "{listing}");
    assert!(!listing.contains(&format!("{s}\n")), "{listing}");
    assert!(!listing.contains("state\n"), "{listing}");

    assert_eq!(d.stop().0, Some(0));
    assert!(!pidfile.exists(), "pid file left behind");
}

/// A daemon refused after it bound its control socket (its metrics port is taken) removes the
/// socket file it created; a stale socket file it replaced is gone with it, but a file that is
/// not its own is never removed.
#[test]
fn a_daemon_refused_after_binding_leaves_no_socket_file() {
    let dir = TempDir::new("refused-sock");
    let (real, _g) = refused_addr();
    let conf_path = dir.file("lvsmon.conf", &conf(real, ""));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let sock = dir.0.join("lvsmon.sock");
    let state = dir.0.join("state");
    let args = [
        "--state-dir",
        state.to_str().unwrap(),
        "--socket",
        sock.to_str().unwrap(),
        "--metrics",
        &port,
    ];
    let (code, err) = run_refused(&conf_path, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("metrics {port}")), "{err}");
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "socket file left"
    );
    // A stale socket file (nobody listens) is replaced by the bind, then removed.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let (code, err) = run_refused(&conf_path, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "socket file left"
    );
    // A path that is not a socket: refused before the bind, the file stays.
    std::fs::write(&sock, "mine\n").unwrap();
    let (code, err) = run_refused(&conf_path, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&sock).unwrap(), "mine\n");
}

/// `--pidfile` naming a symbolic link is refused, and the file it points to is left as it was.
#[test]
fn a_pid_file_that_is_a_symbolic_link_is_refused() {
    let dir = TempDir::new("pidlink");
    let victim = dir.file("victim", "precious\n");
    let link = dir.0.join("lvsmon.pid");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let (real, _g) = refused_addr();
    let conf_path = dir.file("lvsmon.conf", &conf(real, ""));
    let (code, err) = run_refused(
        &conf_path,
        &[
            "--pidfile",
            link.to_str().unwrap(),
            "--state-dir",
            dir.0.join("state").to_str().unwrap(),
            "--socket",
            dir.0.join("lvsmon.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is a symbolic link"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

/// After `--user nobody --chroot DIR` the locks still hold (their descriptors survive the
/// drop): a second daemon on the same state directory is refused naming the first one's pid;
/// a drain is still saved before `ok`; at the stop the pid file, which the daemon can no
/// longer reach by its path, is emptied so that it names no process.
#[test]
fn locks_and_saves_survive_the_privilege_drop() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED locks_and_saves_survive_the_privilege_drop: needs root");
        return;
    }
    let (real, _g) = refused_addr();
    let dir = TempDir::new("droplocks");
    let jail = TempDir::new("droplocks-jail");
    let pidfile = dir.0.join("lvsmon.pid");
    let state = dir.0.join("state");
    let text = conf(real, "");
    let conf_path = dir.file("lvsmon.conf", &text);
    let (p, s) = (pidfile.to_str().unwrap(), state.to_str().unwrap());
    let mut d = Lvsmon::start(
        &text,
        &[
            "--pidfile",
            p,
            "--state-dir",
            s,
            "--user",
            "nobody",
            "--chroot",
            jail.0.to_str().unwrap(),
        ],
    );
    d.wait_for(&["msg=\"privileges dropped\""], 5 * S);
    let first = d.pid();
    let (code, err) = run_refused(
        &conf_path,
        &[
            "--state-dir",
            s,
            "--socket",
            dir.0.join("second.sock").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("pid {first}")), "{err}");
    let r = real.to_string();
    let (code, out, err) = d.client(&["drain", &r]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(d.stop().0, Some(0));
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), "");
    let mut d = Lvsmon::start(&text, &["--pidfile", p, "--state-dir", s]);
    d.wait_for(&["msg=\"state loaded\"", "drained=1"], 5 * S);
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", d.pid())
    );
    assert_eq!(d.stop().0, Some(0));
}

/// `tests/data/state-v1/state` (two reals' history and a DRAINED mark, written by lvsmon's
/// state file version 1) moved forward by whole hours so that its newest result is within the
/// last hour: its times, minute and hour numbers, and checksum rewritten, nothing else.
fn state_v1_of_the_last_hour() -> (Vec<u8>, u64) {
    let mut b = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/state-v1/state"
    ))
    .unwrap();
    let rd = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(rd(&b, 13), 1, "a version 1 state file");
    let mut at = 13 + 4 + 8;
    let mut shift = None;
    while u16::from_le_bytes([b[at], b[at + 1]]) != 0xffff {
        let klen = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
        at += 2 + klen + 1;
        let hlen = rd(&b, at) as usize;
        at += 4;
        let (h, end) = (at, at + hlen);
        assert_eq!(&b[h..h + 5], b"LVSH\x01");
        let newest = u64::from(rd(&b, h + 5));
        let d = *shift.get_or_insert((now - newest) / 3600 * 3600) as u32;
        let add = |b: &mut Vec<u8>, at: usize, by: u32| {
            let v = rd(b, at);
            if v != 0 {
                b[at..at + 4].copy_from_slice(&(v + by).to_le_bytes());
            }
        };
        add(&mut b, h + 5, d);
        add(&mut b, h + 9, d);
        let mut p = h + 13;
        for (size, by) in [(8, d), (16, d / 60), (16, d / 3600)] {
            let n = usize::from(u16::from_le_bytes([b[p], b[p + 1]]));
            p += 2;
            for _ in 0..n {
                add(&mut b, p, by);
                p += size;
            }
        }
        assert_eq!(p, end);
        at = end;
    }
    let body = at + 2;
    let mut sum = 0xcbf2_9ce4_8422_2325u64;
    for &x in &b[..body] {
        sum ^= u64::from(x);
        sum = sum.wrapping_mul(0x0100_0000_01b3);
    }
    b[body..body + 8].copy_from_slice(&sum.to_le_bytes());
    (b, shift.unwrap())
}

/// An upgrade keeps the history: a state file of version 1 (written by lvsmon before the
/// compact history) is loaded with every record's history read, `lvsmon history` counts every
/// check it held and lists its raw results, the DRAINED mark holds, and the next save writes
/// version 2, which the next start reads in turn.
#[test]
fn a_version_1_state_file_is_converted_on_upgrade() {
    let dir = TempDir::new("upgrade");
    let state = dir.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (v1, _) = state_v1_of_the_last_hour();
    std::fs::write(state.join("state"), &v1).unwrap();
    // The fixture's two reals (refused ports: a few failures more), checked every 10 s.
    let conf =
        "interval 10s\nvirtual tcp 127.1.0.1:80 {\n  real 127.0.0.1:1\n  real 127.0.0.1:2\n}\n";
    let args = ["--state-dir", state.to_str().unwrap()];
    // What lvsmon of version 1 answered from it: 12,342 checks, 1,376 failed.
    let (checks, failures) = (12_342u64, 1_376u64);
    let director = |d: &Lvsmon| {
        let (code, out, err) = d.client(&["history", "--since", "2d"]);
        assert_eq!(code, Some(0), "{err}");
        let row = out.lines().find(|l| l.starts_with("director")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (c, f): (u64, u64) = (cols[3].parse().unwrap(), cols[4].parse().unwrap());
        assert!(
            (checks..checks + 10).contains(&c) && c - checks == f - failures,
            "{checks} checks and {failures} failures then, now:\n{out}"
        );
        assert!(row.contains(" hour since "), "{row}");
    };
    for round in 0..2 {
        let mut d = Lvsmon::start(conf, &args);
        let l = d.wait_seen(&["msg=\"state loaded\""], 5 * S);
        assert!(
            l.contains("records=2 used=2 drained=1 set_weights=0 damaged_history=0"),
            "round {round}: {l}"
        );
        director(&d);
        assert_eq!(state_of(&d, "127.0.0.1:2"), "drained");
        // Real 1's raw results: the 20 newest listed, most of them from the file.
        let (_, out, _) = d.client(&["history", "tcp:127.1.0.1:80", "127.0.0.1:2"]);
        let (_, recent) = out.split_once("recent results").expect(&out);
        assert_eq!(
            recent.lines().filter(|l| l.contains("ms ")).count(),
            20,
            "{out}"
        );
        assert_eq!(d.stop().0, Some(0));
        let saved = std::fs::read(state.join("state")).unwrap();
        assert_eq!(saved[13..17], 2u32.to_le_bytes(), "saved as version 2");
    }
}
