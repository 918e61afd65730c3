//! The control socket, its client and the metrics endpoint against clients that misbehave or
//! are not allowed: the real `lvsmon` binary on loopback, with real sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lvsmon::{bin, Lvsmon, TempDir};
use common::{Backend, Script};

const S: Duration = Duration::from_secs(1);

/// A daemon checking one passing HTTP real every 200 ms, with metrics on a kernel-chosen port.
fn daemon(a: &Backend) -> Lvsmon {
    let conf = format!(
        "interval 200ms\nvirtual tcp 127.77.1.1:80 {{\n  check http\n  real {}\n}}\n",
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    d.wait_for(&["event=up"], 5 * S);
    d
}

/// Sends `req` on a fresh control connection and reads the reply (bounded by `limit`);
/// returns the reply and the time it took.
fn control(d: &Lvsmon, req: &[u8], limit: Duration) -> (String, Duration) {
    let t = Instant::now();
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// Sends `req` to the metrics endpoint (then half-closes if `shut`) and reads the reply.
fn http(addr: std::net::SocketAddr, req: &[u8], shut: bool, limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(req).unwrap();
    if shut {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// 24 metrics clients that send one byte every 2 s (each resetting the no-progress timer)
/// never lock the operator out: `status` on the control socket answers in under 2 s, and a
/// well-behaved scrape gets through too (the oldest idle metrics connection gives way).
#[test]
fn slow_metrics_clients_never_starve_the_control_socket() {
    let a = Backend::start(Script::http(200, "OK"));
    let mut d = daemon(&a);
    let maddr = d.metrics_addr();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drips = Vec::new();
    for _ in 0..24 {
        let stop = stop.clone();
        drips.push(std::thread::spawn(move || {
            let Ok(mut s) = TcpStream::connect(maddr) else {
                return;
            };
            // At most 6 bytes, 2 s apart: bounded in count and time.
            for &b in b"GET /m".iter() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[b]).is_err() {
                    return;
                }
                for _ in 0..20 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(S / 10);
                }
            }
        }));
    }
    // Let the drippers take every slot they can and age past the eviction grace.
    std::thread::sleep(3 * S);
    for round in 0..3 {
        let (reply, took) = control(&d, b"status\n", 5 * S);
        assert!(
            took < 2 * S && reply.contains(" up "),
            "round {round}: status took {took:?}: {reply:?}"
        );
        let t = Instant::now();
        let page = http(
            maddr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            false,
            5 * S,
        );
        assert!(
            t.elapsed() < 2 * S && page.starts_with("HTTP/1.1 200 OK"),
            "round {round}: scrape took {:?}: {:?}",
            t.elapsed(),
            &page[..page.len().min(80)]
        );
        std::thread::sleep(S);
    }
    // The client binary too.
    let t = Instant::now();
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(" up ") && t.elapsed() < 2 * S, "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in drips {
        t.join().unwrap();
    }
}

/// A request must arrive whole within 5 s of the connection's acceptance, however steadily
/// its bytes drip in: the slow client gets a timeout reply and is closed at that limit, on
/// the metrics endpoint (HTTP 408) and on the control socket.
#[test]
fn a_request_that_drips_is_cut_at_the_total_time_limit() {
    let a = Backend::start(Script::http(200, "OK"));
    let mut d = daemon(&a);
    let maddr = d.metrics_addr();
    let run = |mut s: Box<dyn ReadWrite>, text: &'static [u8]| {
        std::thread::spawn(move || {
            let t = Instant::now();
            let mut out = Vec::new();
            s.set_nonblocking(true);
            // One byte every 400 ms: 9 s for the whole request, bounded at 12 s.
            for &b in text {
                if s.write_all(&[b]).is_err() {
                    break;
                }
                let next = Instant::now() + S * 4 / 10;
                while Instant::now() < next {
                    let mut buf = [0u8; 512];
                    match s.read(&mut buf) {
                        Ok(0) => return (out, t.elapsed()),
                        Ok(n) => out.extend_from_slice(&buf[..n]),
                        Err(_) => std::thread::sleep(S / 50),
                    }
                }
                if t.elapsed() > 12 * S {
                    break;
                }
            }
            (out, t.elapsed())
        })
    };
    let m = run(
        Box::new(TcpStream::connect(maddr).unwrap()),
        b"GET /metrics HTTP/1.1\r\n",
    );
    let c = run(
        Box::new(UnixStream::connect(d.socket()).unwrap()),
        b"status json and some more words\n",
    );
    let (mout, mtook) = m.join().unwrap();
    let (cout, ctook) = c.join().unwrap();
    let mout = String::from_utf8_lossy(&mout);
    let cout = String::from_utf8_lossy(&cout);
    assert!(
        mout.starts_with("HTTP/1.1 408 Request Timeout"),
        "metrics: {mout:?} after {mtook:?}"
    );
    assert!(
        (4 * S..7 * S).contains(&mtook),
        "metrics: closed after {mtook:?}"
    );
    assert!(
        cout.starts_with("error: request not complete within 5 s"),
        "control: {cout:?} after {ctook:?}"
    );
    assert!(
        (4 * S..7 * S).contains(&ctook),
        "control: closed after {ctook:?}"
    );
}

trait ReadWrite: Read + Write + Send {
    fn set_nonblocking(&mut self, on: bool);
}
impl ReadWrite for TcpStream {
    fn set_nonblocking(&mut self, on: bool) {
        TcpStream::set_nonblocking(self, on).unwrap();
    }
}
impl ReadWrite for UnixStream {
    fn set_nonblocking(&mut self, on: bool) {
        UnixStream::set_nonblocking(self, on).unwrap();
    }
}

/// `HEAD /metrics` gets the head of the page without its body; an absolute URI is served;
/// a request line cut short by the client's half-close gets 400, not silence.
#[test]
fn metrics_head_absolute_uri_and_unfinished_request() {
    let a = Backend::start(Script::http(200, "OK"));
    let mut d = daemon(&a);
    let maddr = d.metrics_addr();
    let head = http(
        maddr,
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        false,
        3 * S,
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head:?}");
    assert!(head.contains("Content-Type: text/plain"), "{head:?}");
    assert!(head.ends_with("\r\n\r\n"), "a body after HEAD: {head:?}");
    let abs = format!("GET http://{maddr}/metrics HTTP/1.1\r\nHost: {maddr}\r\n\r\n");
    let page = http(maddr, abs.as_bytes(), false, 3 * S);
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page:?}");
    assert!(page.contains("\nlvsmon_checks_total "), "{page:?}");
    let other = http(maddr, b"GET http://x/other HTTP/1.1\r\n\r\n", false, 3 * S);
    assert!(other.starts_with("HTTP/1.1 404 "), "{other:?}");
    let post = http(maddr, b"POST /metrics HTTP/1.1\r\n\r\n", false, 3 * S);
    assert!(
        post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET, HEAD\r\n"),
        "{post:?}"
    );
    let t = Instant::now();
    let cut = http(maddr, b"GET /metrics HTTP/1.1", true, 3 * S);
    assert!(
        cut.starts_with("HTTP/1.1 400 Bad Request") && t.elapsed() < 2 * S,
        "{cut:?} after {:?}",
        t.elapsed()
    );
    // The control socket: a line without its end, then a half-close, is refused, not run.
    let mut s = UnixStream::connect(d.socket()).unwrap();
    s.set_read_timeout(Some(3 * S)).unwrap();
    s.write_all(b"drain 127.0.0.1:1").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        out.starts_with("error: request ends without a newline"),
        "{out:?}"
    );
}

/// drain/undrain take the virtual service in every form the configuration takes and
/// normalise it; a virtual service that does not exist is named as such.
#[test]
fn drain_normalises_the_virtual_and_names_an_unknown_one() {
    let a = Backend::start(Script::http(200, "OK"));
    let conf = format!(
        "interval 200ms\n\
         virtual tcp 127.77.1.1:80 {{\n  check http\n  real {a}\n}}\n\
         virtual fwmark 42 {{\n  check http\n  real {a}\n}}\n\
         virtual tcp [::1]:80 {{\n  forward tunnel\n  check http\n  real {a}\n}}\n",
        a = a.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up"], 5 * S);
    let real = a.addr().to_string();
    for (virt, n) in [
        ("127.77.1.1:80", "1 of 1"),
        ("tcp:127.77.1.1:80", "0 of 1"),
        ("fwmark:42", "1 of 1"),
        ("fwmark:0x2a", "0 of 1"),
        ("[::1]:80", "1 of 1"),
        ("tcp:[::1]:80", "0 of 1"),
    ] {
        let (code, out, err) = d.client(&["drain", &real, virt]);
        assert_eq!(code, Some(0), "{virt}: {err}");
        assert!(
            out.starts_with(&format!("ok: drained {n}")),
            "{virt}: {out}"
        );
    }
    let (code, out, _) = d.client(&["undrain", &real, "TCP:127.77.1.1:80"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("ok: undrained 1 of 1"), "{out}");
    // A virtual service that is not configured, in any form.
    for virt in ["127.77.1.2:80", "udp:127.77.1.1:80", "fwmark:43"] {
        let (code, _, err) = d.client(&["drain", &real, virt]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains(&format!(
                "error: no virtual service {virt} in the configuration"
            )),
            "{virt}: {err}"
        );
    }
    let (code, _, err) = d.client(&["drain", &real, "tcp:nonsense"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no virtual service tcp:nonsense"), "{err}");
    // A configured virtual without that real.
    let (code, _, err) = d.client(&["drain", "127.0.0.9:9", "127.77.1.1:80"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no real server 127.0.0.9:9 behind virtual tcp:127.77.1.1:80"),
        "{err}"
    );
}

/// A user other than the daemon's is told that permission was denied and who may connect,
/// not that no lvsmon runs.
#[test]
fn client_as_another_user_is_told_permission_denied() {
    if Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("skipped: setpriv (util-linux) is not installed");
        return;
    }
    let a = Backend::start(Script::http(200, "OK"));
    let d = daemon(&a);
    // The temp dir must be traversable by nobody for the socket's own mode to decide.
    let mut p = d.socket();
    while p.pop() {
        if p.starts_with(std::env::temp_dir()) && p != std::env::temp_dir() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755));
        }
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
        .args(["status", "--socket"])
        .arg(d.socket())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("no lvsmon is running"), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("only root (uid 0) may connect"), "{err}");
}

/// A daemon that accepts and never answers: the client says it timed out after the time it
/// waited (`--timeout`), not "Resource temporarily unavailable".
#[test]
fn client_timeout_is_named_as_such() {
    let dir = TempDir::new("mute");
    let path = dir.0.join("mute.sock");
    let l = UnixListener::bind(&path).unwrap();
    let t = Instant::now();
    let out = Command::new(bin())
        .args(["status", "--timeout", "1", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    let took = t.elapsed();
    drop(l);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no reply from the daemon within 1 s"), "{err}");
    assert!(!err.contains("temporarily unavailable"), "{err}");
    assert!((S..4 * S).contains(&took), "{took:?}");
}

/// The client's own standard output closed by its reader: no "control socket" error; the
/// command ends quietly with status 1. Other output errors are named
/// as output errors.
#[test]
fn client_stdout_closed_is_not_a_control_socket_error() {
    let a = Backend::start(Script::http(200, "OK"));
    let d = daemon(&a);
    // A pipe whose read end is closed before the reply comes.
    let mut child = Command::new(bin())
        .args(["status", "--socket"])
        .arg(d.socket())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let st = child.wait().unwrap();
    assert!(!err.contains("control socket"), "{err}");
    assert_eq!(err, "", "a message for a closed pipe");
    assert_eq!(st.code(), Some(1), "{st:?}");
    // A full device: named as standard output.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(bin())
        .args(["status", "--socket"])
        .arg(d.socket())
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("standard output"), "{err}");
    assert!(!err.contains("control socket"), "{err}");
}

/// A daemon whose listen backlog is full (stopped, hung): the client does not hang in
/// connect; it says the socket is busy after its timeout.
#[test]
fn client_gives_up_on_a_full_backlog() {
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = TempDir::new("full");
    let path = dir.0.join("full.sock");
    let l = UnixListener::bind(&path).unwrap();
    // A backlog of 0 holds one connection (the kernel lets it exceed the limit once).
    // SAFETY: listen(2) on our own socket.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let mut held = Vec::new();
    for _ in 0..4 {
        // SAFETY: a fresh socket, connected without blocking.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        let s = unsafe { UnixStream::from_raw_fd(fd) };
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let p = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        for (d, &b) in addr.sun_path.iter_mut().zip(p) {
            *d = b as libc::c_char;
        }
        let r = unsafe {
            libc::connect(
                fd,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
            )
        };
        if r != 0 {
            break;
        }
        held.push(s);
    }
    assert!(
        !held.is_empty() && held.len() < 4,
        "the backlog never filled"
    );
    let t = Instant::now();
    let out = Command::new(bin())
        .args(["status", "--timeout", "1", "--socket"])
        .arg(&path)
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is busy: the daemon took no new connection within 1 s"),
        "{err}"
    );
    assert!((S..4 * S).contains(&took), "{took:?}");
    drop(held);
    drop(l);
}

/// With every control slot held by clients that say nothing, a command waits in the backlog
/// and is answered once the first of them is cut at the 5 s request limit.
#[test]
fn full_control_slots_make_a_command_wait_not_fail() {
    let a = Backend::start(Script::http(200, "OK"));
    let d = daemon(&a);
    let t = Instant::now();
    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(d.socket()).unwrap())
        .collect();
    let (code, out, err) = d.client(&["status", "--timeout", "10"]);
    let took = t.elapsed();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(" up "), "{out}");
    assert!((4 * S..8 * S).contains(&took), "answered after {took:?}");
    drop(silent);
}
