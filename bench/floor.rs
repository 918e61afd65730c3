//! The floor for lvsmon's load benchmark: the least a health checker can do per HTTP check,
//! with the same wire behaviour as lvsmon, so that lvsmon's cost can be read as a ratio to it.
//!
//! ```text
//! bench_floor --n N --port 18081 --interval SECS [--max-seconds 3600]
//! ```
//!
//! One thread, one epoll set, edge-triggered, non-blocking sockets, no allocation after
//! startup. Endpoint `i` (`127.1.0.1 + i`) is checked on the fixed grid
//! `T0 + interval * i / n + k * interval`, as lvsmon schedules it (lvsmon(8), DECISIONS, first checks spread evenly).
//! Because of that spread the due order is simply 0, 1, ..., n-1, 0, 1, ...: the timer is a
//! cursor, the cheapest timer there is. The loop sleeps in `epoll_wait` until the next due
//! time rounded up to a whole millisecond (lvsmon's wheel has 1 ms ticks too), then starts
//! every check that is due in one pass.
//!
//! A check: `socket` (non-blocking), `SO_LINGER` 0 (lvsmon resets check connections so that
//! no TIME_WAIT is left; the floor does the same, so both leave the same trail in the
//! kernel), `connect`, `epoll_ctl(ADD, IN|OUT|ET)`; on writable `send` the request (the same
//! bytes lvsmon sends); on readable `recv` until the status line and the blank line after the
//! headers are in; `close` (which also takes the socket out of the epoll set). A check still
//! running when its endpoint is due again fails (`overrun`): the interval is its timeout.
//! Both make the same seven system calls a check (lvsmon confirms a connect with `SO_ERROR`
//! and `getpeername` only when its readiness came with an error or a hang-up). What the floor
//! does not do, and lvsmon does: a full header parse, decisions, history, metrics, logging.
//!
//! SIGUSR1 marks a window boundary (prints `mark ...`); SIGTERM stops the loop and prints
//! `window ...` for the checks started between the first two marks (or the whole run).

#[path = "common.rs"]
mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use common::{endpoint, errno, first_offset_us, mono_ns, Args, REQUEST};

/// Lateness histogram: 10 µs buckets up to 100 ms, then one overflow bucket.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 10_000;

static STOP: AtomicBool = AtomicBool::new(false);
static MARKS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_mark(_: libc::c_int) {
    MARKS.fetch_add(1, Ordering::Relaxed);
}

const IDLE: u8 = 0;
const CONNECTING: u8 = 1;
const READING: u8 = 2;

/// Counters; a copy is kept at each mark.
#[derive(Clone)]
struct Counts {
    started: u64,
    pass: u64,
    fail: u64,
    overrun: u64,
    /// Failures by where they happened: connect refused or failed at once, an error or
    /// hang-up before the connection was up, a short or failed send, EOF or an error before
    /// the reply, a status other than 200.
    why: [u64; 5],
    late: Box<[u64]>,
    late_max_us: u64,
}

impl Counts {
    fn new() -> Counts {
        Counts {
            started: 0,
            pass: 0,
            fail: 0,
            overrun: 0,
            why: [0; 5],
            late: vec![0; BUCKETS + 1].into_boxed_slice(),
            late_max_us: 0,
        }
    }
}

/// The checker's state: per endpoint its socket and phase.
struct Floor {
    fd: Box<[i32]>,
    state: Box<[u8]>,
    addr: Box<[libc::sockaddr_in]>,
    ep: i32,
    c: Counts,
}

impl Floor {
    fn close(&mut self, i: usize, pass: bool) {
        // SAFETY: closing a descriptor we own; the kernel drops it from the epoll set.
        unsafe { libc::close(self.fd[i]) };
        self.fd[i] = -1;
        self.state[i] = IDLE;
        if pass {
            self.c.pass += 1;
        } else {
            self.c.fail += 1;
        }
    }

    fn start(&mut self, i: usize, late_us: u64) {
        if self.state[i] != IDLE {
            self.c.overrun += 1;
            self.close(i, false);
        }
        self.c.started += 1;
        self.c.late[((late_us / BUCKET_US) as usize).min(BUCKETS)] += 1;
        self.c.late_max_us = self.c.late_max_us.max(late_us);
        // SAFETY: plain socket calls on a descriptor we own; the address struct is ours.
        unsafe {
            let fd = libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            if fd < 0 {
                self.c.fail += 1;
                return;
            }
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
            let rc = libc::connect(
                fd,
                (&self.addr[i] as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            self.fd[i] = fd;
            self.state[i] = CONNECTING;
            if rc != 0 && errno() != libc::EINPROGRESS {
                self.c.why[0] += 1;
                self.close(i, false);
                return;
            }
            let mut ev = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLET) as u32,
                u64: i as u64,
            };
            if libc::epoll_ctl(self.ep, libc::EPOLL_CTL_ADD, fd, &mut ev) != 0 {
                self.close(i, false);
            }
        }
    }

    fn ready(&mut self, i: usize, events: u32) {
        if self.state[i] == CONNECTING {
            if events & libc::EPOLLOUT as u32 == 0 {
                // An error or hang-up before the connection was up.
                self.c.why[1] += 1;
                self.close(i, false);
                return;
            }
            // SAFETY: writes a constant; MSG_NOSIGNAL turns a dead peer into EPIPE.
            let n = unsafe {
                libc::send(
                    self.fd[i],
                    REQUEST.as_ptr().cast(),
                    REQUEST.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n != REQUEST.len() as isize {
                self.c.why[2] += 1;
                self.close(i, false);
                return;
            }
            self.state[i] = READING;
        }
        if self.state[i] != READING {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a stack buffer we own.
            let n = unsafe { libc::recv(self.fd[i], buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 && errno() == libc::EAGAIN {
                return;
            }
            if n <= 0 {
                self.c.why[3] += 1;
                self.close(i, false);
                return;
            }
            let got = &buf[..n as usize];
            if got.len() >= 12 && got.starts_with(b"HTTP/1.") {
                let ok = &got[9..12] == b"200";
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    if !ok {
                        self.c.why[4] += 1;
                    }
                    self.close(i, ok);
                    return;
                }
            }
        }
    }
}

/// The upper bound of the bucket holding the `q`-quantile, µs; 0 when it is beyond the last
/// bucket (over 100 ms) or there is nothing.
fn quantile_us(late: &[u64], q: f64) -> u64 {
    let total: u64 = late.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = ((q * total as f64).ceil() as u64).max(1);
    let mut cum = 0;
    for (b, &c) in late[..BUCKETS].iter().enumerate() {
        cum += c;
        if cum >= want {
            // The bucket's upper bound.
            return (b as u64 + 1) * BUCKET_US;
        }
    }
    // In the overflow bucket: beyond 100 ms.
    0
}

fn main() {
    let args = Args::from_env(0);
    let n: usize = args.num("n", 1000);
    let port: u16 = args.num("port", common::PORT_FLOOR);
    let interval_us = args.secs_us("interval", 1.0);
    let max_s: u64 = args.num("max-seconds", 3600);
    common::raise_nofile(n as u64 + 64).ok();
    // SAFETY: handlers that only touch atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as *const () as usize;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        sa.sa_sigaction = on_mark as *const () as usize;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    let addr: Box<[libc::sockaddr_in]> = (0..n)
        .map(|i| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(endpoint(i)).to_be(),
            },
            sin_zero: [0; 8],
        })
        .collect();
    let offsets: Box<[u64]> = (0..n)
        .map(|i| first_offset_us(i, n, interval_us) * 1000)
        .collect();
    // SAFETY: creates an epoll instance we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0);
    let mut f = Floor {
        fd: vec![-1; n].into_boxed_slice(),
        state: vec![IDLE; n].into_boxed_slice(),
        addr,
        ep,
        c: Counts::new(),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut snaps: Vec<(u64, Counts)> = Vec::with_capacity(4);
    let mut marks_seen = 0;
    let interval_ns = interval_us * 1000;
    let t0 = mono_ns();
    // The next check due: endpoint `cur` of round `round`.
    let (mut cur, mut round) = (0usize, 0u64);
    let out = std::io::stdout();
    while !STOP.load(Ordering::Relaxed) {
        let now = mono_ns();
        if now - t0 > max_s * 1_000_000_000 {
            break;
        }
        loop {
            let due = t0 + round * interval_ns + offsets[cur];
            if due > now {
                break;
            }
            f.start(cur, (now - due) / 1000);
            cur += 1;
            if cur == n {
                cur = 0;
                round += 1;
            }
        }
        let m = MARKS.load(Ordering::Relaxed);
        if m != marks_seen {
            marks_seen = m;
            if snaps.len() < snaps.capacity() {
                snaps.push((now, f.c.clone()));
            }
            let c = &f.c;
            writeln!(
                out.lock(),
                "mark t_ns={now} started={} pass={} fail={} overrun={}",
                c.started,
                c.pass,
                c.fail,
                c.overrun
            )
            .ok();
            // The window's max starts afresh.
            f.c.late_max_us = 0;
        }
        let due = t0 + round * interval_ns + offsets[cur];
        let wait_ms = (due.saturating_sub(mono_ns())).div_ceil(1_000_000).min(100) as i32;
        // SAFETY: the events buffer is ours and its length is passed.
        let k = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, wait_ms) };
        for ev in &events[..k.max(0) as usize] {
            let (i, e) = (ev.u64 as usize, ev.events);
            f.ready(i, e);
        }
    }
    let end = mono_ns();
    let (from_t, from, to_t, to) = match (snaps.first(), snaps.get(1)) {
        (Some(a), Some(b)) => (a.0, a.1.clone(), b.0, b.1.clone()),
        _ => (t0, Counts::new(), end, f.c.clone()),
    };
    let late: Vec<u64> = to
        .late
        .iter()
        .zip(from.late.iter())
        .map(|(b, a)| b - a)
        .collect();
    writeln!(
        out.lock(),
        "window seconds={:.3} started={} pass={} fail={} overrun={} late_p50_us={} late_p99_us={} late_max_us={} fail_connect={} fail_before_up={} fail_send={} fail_before_reply={} fail_status={}",
        (to_t - from_t) as f64 / 1e9,
        to.started - from.started,
        to.pass - from.pass,
        to.fail - from.fail,
        to.overrun - from.overrun,
        quantile_us(&late, 0.5),
        quantile_us(&late, 0.99),
        to.late_max_us,
        to.why[0] - from.why[0],
        to.why[1] - from.why[1],
        to.why[2] - from.why[2],
        to.why[3] - from.why[3],
        to.why[4] - from.why[4],
    )
    .ok();
}
