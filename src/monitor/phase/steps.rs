//! Phase tests: one [`Probe`] stepped through connect → conresult → query → recv → wait
//! against real sockets on loopback (a listener the test owns, on a port the kernel picks),
//! at times the test chooses on a manual [`Clock`].
//!
//! Each case is a table of rows `(time, action, expectation)`, run in order by a small rig
//! that does what the daemon's driver does with a probe and nothing more, by the driver's own
//! rules ([`catch_up`] for a late start, `probes::timer_fired` for what a timer means,
//! `probes::next_grid_point` for the next start): it sets the clock,
//! waits (in real time, bounded) for the readiness an action needs, calls the phase function
//! and compares the outcome, the phase after it and the phase's deadline, or the verdict and
//! its latency (from the check's start, as the driver records it). Real time only bounds the
//! waits for the kernel; every time a probe sees is the clock's, so deadlines are tested to
//! the microsecond: just before, at and just after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::*;
use crate::clock::Clock;
use crate::monitor::probes::{next_grid_point, timer_fired, Fired};
use crate::plugins::Target;

/// The probe's id (its token's low half).
const ID: u32 = 7;
/// The longest the kernel is given for a readiness the test waits for.
const REAL_WAIT: Duration = Duration::from_secs(5);
/// The first grid point, on the manual clock.
const GRID: u64 = 1_000_000;
/// The check's timing: `connect-timeout`, `timeout`, `interval`.
const CONNECT_US: u64 = 200_000;
const TIMEOUT_US: u64 = 1_000_000;
const INTERVAL_US: u64 = 5_000_000;

/// What the rig does at a row's time.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// The timer fired at the grid point: the check starts (socket, `connect(2)`).
    Start,
    /// The socket reported WRITABLE: the handshake's result is read (then the request
    /// written, as far as it goes).
    Writable,
    /// The server side accepts the connection and reads the request to its blank line.
    Accept,
    /// The server side accepts the connection and reads nothing.
    Take,
    /// The server side writes these bytes.
    Reply(&'static [u8]),
    /// The server side reads exactly these bytes.
    Hear(&'static [u8]),
    /// The server side closes the connection.
    Hangup,
    /// The UDP server side receives one datagram.
    Datagram,
    /// The UDP server side answers the last datagram's sender with these bytes.
    Answer(&'static [u8]),
    /// The socket reported READABLE: the probe takes its receive buffer (at the first read,
    /// as the driver hands one over only then) and reads.
    Readable,
    /// No readiness comes for this long in real time (a connect whose SYN is dropped).
    Quiet(Duration),
    /// The probe's timer fired: waiting, the check starts; running, before its phase's
    /// deadline the check goes on (the driver sets the timer again), at or after it the
    /// phase's deadline verdict.
    Deadline,
    /// The verdict is recorded: the socket is closed and the probe waits for its next grid
    /// point, one interval on.
    Finish,
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// The check goes on: the step's outcome, the phase after it and that phase's deadline.
    Going(Outcome, Phase, u64),
    /// The check is decided: the verdict and its latency in µs.
    Decided(Verdict, u64),
    /// Server side only: nothing of the probe to compare.
    Server,
    /// No socket, waiting for the next start at this time.
    Asleep(u64),
}

use Act::*;
use Want::*;

/// One probe, its check and its server, driven on a manual clock.
struct Rig {
    clock: Clock,
    poll: Poll,
    events: Events,
    p: Probe,
    spec: CheckSpec,
    target: SocketAddr,
    listener: Option<TcpListener>,
    server: Option<TcpStream>,
    /// The UDP server side, and where its last datagram came from.
    udp: Option<(UdpSocket, Option<SocketAddr>)>,
    buf: Box<[u8]>,
    /// The probe holds its buffer (from its first READABLE until the check ends).
    has_buf: bool,
    /// Readiness seen for the probe's current socket and not yet used up (edge-triggered:
    /// kept until an action uses it).
    readable: bool,
    writable: bool,
    trouble: bool,
    /// Requests the server side read, for the test to look at.
    requests: Vec<String>,
}

impl Rig {
    /// A probe with `check NAME ARGS` against `listener`, first due at [`GRID`].
    fn new(listener: TcpListener, check: &str, args: &[&str]) -> Rig {
        let mut rig = Rig::to(listener.local_addr().unwrap(), check, args);
        rig.listener = Some(listener);
        rig
    }

    /// A probe with `check NAME ARGS` against the UDP socket `server`.
    fn udp(server: UdpSocket, check: &str, args: &[&str]) -> Rig {
        let mut rig = Rig::to(server.local_addr().unwrap(), check, args);
        server.set_read_timeout(Some(REAL_WAIT)).unwrap();
        rig.udp = Some((server, None));
        rig
    }

    /// A probe with `check NAME ARGS` against `target`, first due at [`GRID`].
    fn to(target: SocketAddr, check: &str, args: &[&str]) -> Rig {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let spec = CheckSpec::parse(check, &args, Target { addr: target }).unwrap();
        Rig {
            clock: Clock::manual(Time::ZERO),
            poll: Poll::new().unwrap(),
            events: Events::with_capacity(8),
            p: Probe::new(Time(GRID)),
            spec,
            target,
            listener: None,
            server: None,
            udp: None,
            buf: vec![0u8; 4096].into_boxed_slice(),
            has_buf: false,
            readable: false,
            writable: false,
            trouble: false,
            requests: Vec::new(),
        }
    }

    /// Collects readiness for the probe's current socket, for at most `wait`; events of a
    /// closed socket (an older generation) are ignored, as the driver ignores them.
    fn pump(&mut self, wait: Duration) {
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let mine = Probe::token(ID, self.p.gen.into());
        for ev in self.events.iter().filter(|e| e.token() == mine) {
            self.readable |= ev.is_readable() || ev.is_read_closed() || ev.is_error();
            self.writable |= ev.is_writable() || ev.is_write_closed() || ev.is_error();
            self.trouble |= ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
        }
    }

    /// Waits (real time, bounded) until `ready` says the readiness has come.
    fn wait_for(&mut self, what: &str, ready: fn(&Rig) -> bool) {
        let end = Instant::now() + REAL_WAIT;
        while !ready(self) {
            assert!(Instant::now() < end, "no {what} within {REAL_WAIT:?}");
            self.pump(Duration::from_millis(20));
        }
    }

    /// What the probe stands at after a step that returned `o`.
    fn after(&self, o: Outcome, now: Time) -> Want {
        match o {
            Outcome::Done(v) => Decided(v, now.micros_since(self.p.started())),
            _ => Going(
                o,
                self.p.phase,
                self.p.phase_deadline(CONNECT_US, TIMEOUT_US).0,
            ),
        }
    }

    /// Runs one row's action at `now` and says where the probe stands.
    fn act(&mut self, act: Act, now: Time) -> Want {
        match act {
            Start => {
                // As the driver does: a start over an hour late moves the grid point on.
                self.p.scheduled = catch_up(self.p.scheduled, now, INTERVAL_US);
                let reg = self.poll.registry();
                let o = start(
                    &mut self.p,
                    ID,
                    &self.spec,
                    crate::config::SockOpts::default(),
                    &self.target,
                    reg,
                    now,
                );
                self.after(o, now)
            }
            Writable => {
                self.wait_for("WRITABLE", |r| r.writable);
                self.writable = false;
                let plain = !self.trouble;
                // The buffer as the driver passes it: empty until one is handed over.
                let buf: &mut [u8] = if self.has_buf { &mut self.buf } else { &mut [] };
                let o = conresult(&mut self.p, &self.spec, &self.target, buf, plain);
                self.after(o, now)
            }
            Accept => {
                let (mut s, _) = self.listener.as_ref().expect("listening").accept().unwrap();
                s.set_read_timeout(Some(REAL_WAIT)).unwrap();
                let mut req = Vec::new();
                let mut chunk = [0u8; 512];
                while !req.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "request cut short: {req:?}");
                    req.extend_from_slice(&chunk[..n]);
                }
                self.requests.push(String::from_utf8(req).unwrap());
                self.server = Some(s);
                Server
            }
            Take => {
                self.server = Some(
                    self.listener
                        .as_ref()
                        .expect("listening")
                        .accept()
                        .unwrap()
                        .0,
                );
                Server
            }
            Hear(want) => {
                let s = self.server.as_mut().expect("accepted");
                s.set_read_timeout(Some(REAL_WAIT)).unwrap();
                let mut got = vec![0u8; want.len()];
                s.read_exact(&mut got).unwrap();
                assert_eq!(got, want);
                Server
            }
            Hangup => {
                drop(self.server.take().expect("accepted"));
                Server
            }
            Datagram => {
                let (sock, from) = self.udp.as_mut().expect("a UDP server");
                let mut d = [0u8; 1500];
                let (n, peer) = sock.recv_from(&mut d).unwrap();
                *from = Some(peer);
                self.requests
                    .push(String::from_utf8_lossy(&d[..n]).into_owned());
                Server
            }
            Answer(bytes) => {
                let (sock, from) = self.udp.as_ref().expect("a UDP server");
                sock.send_to(bytes, from.expect("a datagram came")).unwrap();
                Server
            }
            Reply(bytes) => {
                self.server
                    .as_mut()
                    .expect("accepted")
                    .write_all(bytes)
                    .unwrap();
                Server
            }
            Readable => {
                self.wait_for("READABLE", |r| r.readable);
                self.readable = false;
                self.has_buf = true;
                let o = recv(&mut self.p, &self.spec, &self.target, &mut self.buf);
                self.after(o, now)
            }
            Quiet(d) => {
                let end = Instant::now() + d;
                while Instant::now() < end {
                    self.pump(Duration::from_millis(10));
                }
                assert!(
                    !self.readable && !self.writable,
                    "readiness came: the connect did not hang"
                );
                self.after(Outcome::Pending, now)
            }
            Deadline => {
                // What the driver makes of its timer (the rig hands a buffer over at the
                // first READABLE, so a check never waits queued for one).
                match timer_fired(&self.p, CONNECT_US, TIMEOUT_US, now, || false) {
                    Fired::Start => {
                        // Waiting, the deadline is the grid point (the wheel never fires
                        // early).
                        let d = self.p.phase_deadline(CONNECT_US, TIMEOUT_US);
                        assert!(now >= d, "the timer fired before the grid point {d:?}");
                        self.act(Start, now)
                    }
                    Fired::NotYet(_) => self.after(Outcome::Pending, now),
                    Fired::Expired => {
                        let v = deadline_verdict(&self.p);
                        self.after(Outcome::Done(v), now)
                    }
                    Fired::NoBuffer => unreachable!("the rig never queues for a buffer"),
                }
            }
            Finish => {
                close(&mut self.p, self.poll.registry());
                self.has_buf = false;
                (self.readable, self.writable, self.trouble) = (false, false, false);
                // The driver's next grid point: one interval on, past `now`.
                self.p.scheduled = next_grid_point(self.p.scheduled, now, INTERVAL_US).0;
                assert!(self.p.sock.is_none());
                Asleep(self.p.phase_deadline(CONNECT_US, TIMEOUT_US).0)
            }
        }
    }

    /// Runs `rows` in order, each at its time on the manual clock; a row's failure names it.
    fn run(&mut self, name: &str, rows: &[(u64, Act, Want)]) {
        for (k, &(at, act, want)) in rows.iter().enumerate() {
            self.clock.set(Time(at));
            let got = self.act(act, self.clock.now());
            assert_eq!(got, want, "{name}: row {k} ({act:?} at {at} µs)");
        }
    }
}

/// A listener on 127.0.0.1, port from the kernel.
fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// A listener whose accept queue is full, so that a connect to it neither completes nor
/// fails: backlog 0, never accepting, filled by connections that completed (Linux queues
/// one more than the backlog, then drops SYNs while the queue is full). Returns the fillers,
/// to be kept open.
fn full_listener() -> (TcpListener, Vec<TcpStream>) {
    let l = listener();
    // SAFETY: listen(2) on a socket we own; on a listening socket it only sets the backlog.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let addr = l.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (l, fillers),
            Err(e) => panic!("filler: {e}"),
        }
    }
    panic!("the accept queue of {addr} is not full after 16 connections");
}

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
const PART: &[u8] = b"HTTP/1.1 200 OK\r\nConte";

/// A whole check and the next: started 250 µs after its grid point, connected, the request
/// sent at once, the reply read in two pieces, the verdict, the next grid point one interval
/// on from the last (not from the late start), and the next check run on it on a fresh
/// socket generation. Every deadline counts from the actual start: the connect bound while
/// connecting, the whole check's timeout after.
#[test]
fn a_check_steps_from_connect_to_the_next_grid_point() {
    let mut rig = Rig::new(listener(), "http", &["--match", "ok"]);
    let s = GRID + 250;
    let n = GRID + INTERVAL_US;
    let rows = [
        (
            s,
            Start,
            Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
        ),
        // Connected: the request goes out at once; nothing to read yet, so no buffer.
        (
            s + 100,
            Writable,
            Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, s + TIMEOUT_US),
        ),
        (s + 150, Accept, Server),
        // Before the connect bound and after it: the check's own deadline stands.
        (
            s + CONNECT_US,
            Deadline,
            Going(Outcome::Pending, Phase::Recv { got: 0 }, s + TIMEOUT_US),
        ),
        (s + 300_000, Reply(PART), Server),
        (
            s + 300_010,
            Readable,
            Going(
                Outcome::Pending,
                Phase::Recv {
                    got: PART.len() as u32,
                },
                s + TIMEOUT_US,
            ),
        ),
        (s + 400_000, Reply(&HEAD[PART.len()..]), Server),
        (
            s + 400_020,
            Readable,
            Going(
                Outcome::Pending,
                Phase::Recv {
                    got: HEAD.len() as u32,
                },
                s + TIMEOUT_US,
            ),
        ),
        (s + 450_000, Reply(b"ok"), Server),
        (s + 450_030, Readable, Decided(Verdict::Pass, 450_030)),
        (s + 450_030, Finish, Asleep(n)),
        // On the grid, not on the late start: the timer set for it starts the next check.
        (
            n,
            Deadline,
            Going(Outcome::Pending, Phase::ConResult, n + CONNECT_US),
        ),
        (
            n + 40,
            Writable,
            Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, n + TIMEOUT_US),
        ),
        (n + 50, Accept, Server),
        (
            n + 60,
            Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
            Server,
        ),
        (n + 70, Readable, Decided(Verdict::Pass, 70)),
        (n + 70, Finish, Asleep(n + INTERVAL_US)),
    ];
    rig.run("two checks", &rows);
    // The request names the target in `Host`, written in as it was sent.
    let host = format!("GET / HTTP/1.1\r\nHost: {}\r\n", rig.target);
    assert_eq!(rig.requests.len(), 2);
    assert!(
        rig.requests.iter().all(|r| r.starts_with(&host)),
        "{:?}",
        rig.requests
    );
    // Two sockets, two generations: readiness of the first can never pass for the second's.
    assert_eq!(rig.p.gen, 2);
}

/// A connect whose SYN is dropped (full accept queue) times out at the connect bound: the
/// timer firing a microsecond before it leaves the check running; at the bound, or any time
/// after it, the verdict is `connect-timeout` with the latency of the time it fired. With a
/// connect bound longer than the timeout, the timeout bounds the connect.
#[test]
fn a_connect_times_out_at_its_bound_not_a_microsecond_before() {
    let (l, _fillers) = full_listener();
    let mut rig = Rig::new(l, "tcp", &[]);
    let s = GRID;
    let d = s + CONNECT_US;
    let mut rows = vec![
        (s, Start, Going(Outcome::Pending, Phase::ConResult, d)),
        (
            s + 10,
            Quiet(Duration::from_millis(100)),
            Going(Outcome::Pending, Phase::ConResult, d),
        ),
        (
            d - 1,
            Deadline,
            Going(Outcome::Pending, Phase::ConResult, d),
        ),
        (
            d,
            Deadline,
            Decided(Verdict::fail(Reason::ConnectTimeout), CONNECT_US),
        ),
        (d, Finish, Asleep(GRID + INTERVAL_US)),
    ];
    // The next check, its timer late by 1 µs: the same verdict, 1 µs more latency.
    let s2 = GRID + INTERVAL_US;
    rows.extend([
        (
            s2,
            Start,
            Going(Outcome::Pending, Phase::ConResult, s2 + CONNECT_US),
        ),
        (
            s2 + CONNECT_US + 1,
            Deadline,
            Decided(Verdict::fail(Reason::ConnectTimeout), CONNECT_US + 1),
        ),
        (s2 + CONNECT_US + 1, Finish, Asleep(s2 + INTERVAL_US)),
    ]);
    rig.run("connect timeout", &rows);

    // A timer that fires an interval late (the loop was busy): no grid point is run twice.
    let s3 = s2 + INTERVAL_US;
    let late = s3 + 2 * INTERVAL_US + 5;
    rig.run(
        "connect timeout, late",
        &[
            (
                late,
                Start,
                Going(Outcome::Pending, Phase::ConResult, late + CONNECT_US),
            ),
            (
                late + CONNECT_US,
                Deadline,
                Decided(Verdict::fail(Reason::ConnectTimeout), CONNECT_US),
            ),
            (late + CONNECT_US, Finish, Asleep(s3 + 3 * INTERVAL_US)),
        ],
    );
}

/// A connect bound longer than the check's timeout: the timeout ends the connect, with the
/// same reason.
#[test]
fn the_timeout_bounds_a_longer_connect_timeout() {
    let (l, _fillers) = full_listener();
    let mut rig = Rig::new(l, "tcp", &[]);
    let s = GRID;
    // As if `connect-timeout` were 2 s under a 1 s timeout: the phase deadline is the lower.
    rig.run(
        "start",
        &[(
            s,
            Start,
            Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
        )],
    );
    assert_eq!(
        rig.p.phase_deadline(2 * TIMEOUT_US, TIMEOUT_US),
        Time(s + TIMEOUT_US)
    );
    assert_eq!(
        rig.p.phase_deadline(TIMEOUT_US, TIMEOUT_US),
        Time(s + TIMEOUT_US)
    );
    assert_eq!(
        deadline_verdict(&rig.p),
        Verdict::fail(Reason::ConnectTimeout)
    );
}

/// A reply that stops part-way: the check runs to its whole timeout from its start (not from
/// the last byte), a microsecond before it it goes on, and at it the verdict is `timeout`
/// with the bytes received as detail. With nothing received it is `recv-timeout`. Just after
/// the deadline, the same verdict with the later latency.
#[test]
fn a_reply_cut_short_times_out_with_the_bytes_received() {
    for (late, name) in [(0, "at the deadline"), (1, "just after it")] {
        let mut rig = Rig::new(listener(), "http", &[]);
        let s = GRID;
        let d = s + TIMEOUT_US;
        rig.run(
            name,
            &[
                (
                    s,
                    Start,
                    Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
                ),
                (
                    s + 80,
                    Writable,
                    Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, d),
                ),
                (s + 90, Accept, Server),
                (s + 900_000, Reply(PART), Server),
                (
                    s + 900_001,
                    Readable,
                    Going(
                        Outcome::Pending,
                        Phase::Recv {
                            got: PART.len() as u32,
                        },
                        d,
                    ),
                ),
                (
                    d - 1,
                    Deadline,
                    Going(
                        Outcome::Pending,
                        Phase::Recv {
                            got: PART.len() as u32,
                        },
                        d,
                    ),
                ),
                (
                    d + late,
                    Deadline,
                    Decided(
                        Verdict::Fail(Reason::Timeout, Detail::number(PART.len() as u64)),
                        TIMEOUT_US + late,
                    ),
                ),
                (d + late, Finish, Asleep(GRID + INTERVAL_US)),
            ],
        );
    }
    // Connected, the request read by the server, no byte back.
    let mut rig = Rig::new(listener(), "http", &[]);
    let s = GRID;
    let d = s + TIMEOUT_US;
    rig.run(
        "no reply",
        &[
            (
                s,
                Start,
                Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
            ),
            (
                s + 80,
                Writable,
                Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, d),
            ),
            (s + 90, Accept, Server),
            (
                d - 1,
                Deadline,
                Going(Outcome::Pending, Phase::Recv { got: 0 }, d),
            ),
            (
                d,
                Deadline,
                Decided(Verdict::fail(Reason::RecvTimeout), TIMEOUT_US),
            ),
        ],
    );
}

/// A server that closes without a word: the verdict comes with the close, long before any
/// deadline, with the latency of the moment the close was read.
#[test]
fn a_server_that_closes_is_judged_when_the_close_is_read() {
    let mut rig = Rig::new(listener(), "banner", &["--expect", "SSH-"]);
    let s = GRID + 7;
    rig.run(
        "close",
        &[
            (
                s,
                Start,
                Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
            ),
            // The banner check sends nothing: straight to reading, no buffer yet.
            (
                s + 30,
                Writable,
                Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, s + TIMEOUT_US),
            ),
            (s + 31, Take, Server),
            (s + 40, Hangup, Server),
            (s + 55, Readable, Decided(Verdict::fail(Reason::Closed), 55)),
            (s + 55, Finish, Asleep(GRID + INTERVAL_US)),
        ],
    );
}

/// A socket bound to a loopback port the kernel picked, never listening: a SYN to it is
/// answered with a reset. Kept open so that the port stays unused.
fn refusing() -> (OwnedFd, SocketAddr) {
    // SAFETY: plain socket(2); the OwnedFd owns the result.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = sockaddr(&"127.0.0.1:0".parse().unwrap(), &mut ss);
    // SAFETY: `ss` holds a valid address of length `len`.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into `ss`.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0);
    // SAFETY: an AF_INET address was written.
    let sin = unsafe { &*(&ss as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
    let port = u16::from_be(sin.sin_port);
    (fd, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A connect answered with a reset: the readiness comes with an error, so the handshake's
/// result is read from `SO_ERROR` (not taken as a connection), and the verdict is
/// `connect-refused` naming the errno, with the latency of the moment it was read.
#[test]
fn a_refused_connect_is_judged_on_its_error_readiness() {
    let (_closed, addr) = refusing();
    let mut rig = Rig::new(listener(), "tcp", &[]);
    rig.target = addr;
    let s = GRID;
    rig.run(
        "refused",
        &[
            (
                s,
                Start,
                Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
            ),
            (
                s + 120,
                Writable,
                Decided(
                    Verdict::fail_with(Reason::ConnectRefused, b"ECONNREFUSED"),
                    120,
                ),
            ),
        ],
    );
    assert!(rig.trouble, "the readiness came without an error");
}

/// A UDP check: the datagram goes out as the check starts (no handshake), the probe waits
/// to read, and the reply decides; with no reply, `recv-timeout` at the check's timeout
/// from its start, not a microsecond before.
#[test]
fn a_datagram_check_steps_from_send_to_reply_or_timeout() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rig = Rig::udp(server, "udp", &["--send", "ping", "--expect", "pong"]);
    let s = GRID + 3;
    let d = s + TIMEOUT_US;
    rig.run(
        "answered",
        &[
            (
                s,
                Start,
                Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, d),
            ),
            (s + 20, Datagram, Server),
            (s + 500_000, Answer(b"pong"), Server),
            (s + 500_040, Readable, Decided(Verdict::Pass, 500_040)),
            (s + 500_040, Finish, Asleep(GRID + INTERVAL_US)),
        ],
    );
    assert_eq!(rig.requests, ["ping"]);
    let s = GRID + INTERVAL_US;
    let d = s + TIMEOUT_US;
    rig.run(
        "unanswered",
        &[
            (
                s,
                Deadline,
                Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, d),
            ),
            (s + 20, Datagram, Server),
            (
                d - 1,
                Deadline,
                Going(Outcome::Pending, Phase::Recv { got: 0 }, d),
            ),
            (
                d,
                Deadline,
                Decided(Verdict::fail(Reason::RecvTimeout), TIMEOUT_US),
            ),
        ],
    );
}

/// A dialogue (`script`): the greeting read, the plugin's answer sent from the reading
/// phase (recv → query → recv, the bytes so far kept), then the server's reply decides. A
/// server that goes quiet after the answer fails at the check's timeout from its start with
/// `timeout` and the bytes received as detail (not `recv-timeout`: bytes came).
#[test]
fn a_dialogue_sends_from_its_reading_phase_and_keeps_the_bytes() {
    for last in [Some(&b"250 ok\r\n"[..]), None] {
        let mut rig = Rig::new(
            listener(),
            "script",
            &["--expect", "220", "--send", "HELO x\r\n", "--expect", "250"],
        );
        let s = GRID;
        let d = s + TIMEOUT_US;
        let mut rows = vec![
            (
                s,
                Start,
                Going(Outcome::Pending, Phase::ConResult, s + CONNECT_US),
            ),
            (
                s + 10,
                Writable,
                Going(Outcome::NeedBuffer, Phase::Recv { got: 0 }, d),
            ),
            (s + 11, Take, Server),
            (s + 100_000, Reply(b"220 hi\r\n"), Server),
            // The greeting passes; the answer goes out at once; reading again, 8 bytes kept.
            (
                s + 100_010,
                Readable,
                Going(Outcome::Pending, Phase::Recv { got: 8 }, d),
            ),
            (s + 100_020, Hear(b"HELO x\r\n"), Server),
        ];
        match last {
            Some(reply) => rows.extend([
                (s + 300_000, Reply(reply), Server),
                (s + 300_005, Readable, Decided(Verdict::Pass, 300_005)),
            ]),
            None => rows.extend([
                (
                    d - 1,
                    Deadline,
                    Going(Outcome::Pending, Phase::Recv { got: 8 }, d),
                ),
                (
                    d,
                    Deadline,
                    Decided(
                        Verdict::Fail(Reason::Timeout, Detail::number(8)),
                        TIMEOUT_US,
                    ),
                ),
            ]),
        }
        rig.run(if last.is_some() { "answered" } else { "quiet" }, &rows);
    }
}
