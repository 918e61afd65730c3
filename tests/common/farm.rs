//! A farm of loopback backends for tests at scale: thousands of addresses, each with its own
//! behaviour (a good server, or one of the misbehaviours behind lvsmon(8), DECISIONS failure
//! reasons), all served by one thread around one `mio` poll.
//!
//! [`crate::common::Backend`] gives every connection a thread, which is right for a handful
//! of scripted servers and wrong for 2,000: the farm must never be the bottleneck of what it
//! measures. Here a connection is a small state machine stepping through a [`Step`] list on
//! readiness, and slow behaviours (a trickle, an endless reply) are driven by a 10 ms tick,
//! so one thread serves a thousand checks a second with little CPU.
//!
//! Entry `i` gets an address of its own, `127.16.(i / 250).(i % 250 + 1)` (all of
//! 127.0.0.0/8 is local on Linux), port chosen by the kernel:
//!
//! | [`Serve`]            | what a checker sees                                        |
//! |----------------------|------------------------------------------------------------|
//! | `Tcp(steps)`         | whatever the steps do (HTTP, banner, dialogue, reset, ...) |
//! | `Refused`            | `ECONNREFUSED` (a bound socket that never listens)         |
//! | `FullQueue`          | no answer to its SYN: a connect that times out             |
//! | `Udp(reply)`         | one reply per datagram, or silence                         |
//! | `Elsewhere(addr)`    | nothing local: an address the test routes (unreachable)    |
//!
//! Invariants, so that the farm can neither hang a test nor leak:
//! - one thread; it ends when the farm is dropped or after the lifetime given to
//!   [`Farm::start`], whichever comes first; every wait in it is at most [`TICK`];
//! - a connection lives at most [`MAX_CONNECTION_LIFETIME`], and at most [`MAX_CONNECTIONS`]
//!   are open at once (one beyond that is closed at once and counted);
//! - input kept for an `Expect` is bounded ([`MAX_INPUT`]); other input is discarded;
//! - [`FarmStats`] counts what the farm did, so a test can show the farm kept up (every
//!   accept served, connections closed again) beside what it asserts on lvsmon.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

/// The longest the farm's thread waits for anything; also the period of the tick that drives
/// trickles, endless replies and connection lifetimes.
pub const TICK: Duration = Duration::from_millis(10);

/// A connection is closed after this long whatever its steps say.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

/// Connections open at once; one accepted beyond this is closed at once.
pub const MAX_CONNECTIONS: usize = 8192;

/// Bytes of input kept while an `Expect` waits for its pattern (older ones are dropped).
pub const MAX_INPUT: usize = 64 * 1024;

/// Accept queue of every listening entry but `FullQueue` (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: libc::c_int = 4096;

/// Tokens at and above this are connections (slot = token − CONN_BASE); below are entries.
const CONN_BASE: usize = 1 << 32;

/// What one entry of the farm is.
#[derive(Clone, Debug)]
pub enum Serve {
    /// A TCP listener running `steps` on every connection it accepts.
    Tcp(Vec<Step>),
    /// A TCP socket bound to the address that never listens: every connect is refused
    /// (the kernel answers the SYN with RST).
    Refused,
    /// A TCP listener with backlog 0 whose one queued connection (the farm's own "filler") is
    /// never accepted: Linux drops every further SYN while the accept queue is full
    /// (`tcp_conn_request`), so a connect neither completes nor fails. Needs
    /// `net.ipv4.tcp_abort_on_overflow` 0, the default.
    FullQueue,
    /// A UDP socket answering each datagram with `reply(datagram)`; `None` stays silent.
    Udp(fn(&[u8]) -> Option<Vec<u8>>),
    /// Nothing local: the farm only hands back this address (one the test routes, such as an
    /// `unreachable` route inside a network namespace).
    Elsewhere(SocketAddr),
}

/// One step of a TCP entry's behaviour, run in order on each connection. A connection whose
/// steps run out closes in order, as [`Step::Close`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read until these bytes have arrived (bytes after them stay for the next `Expect`), or
    /// until the peer closes its side.
    Expect(Vec<u8>),
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write `bytes` `chunk` bytes at a time, one chunk every `every` (the first at once):
    /// slowloris when the whole takes longer than the checker waits, merely slow otherwise.
    Trickle {
        /// What is sent in the end.
        bytes: Vec<u8>,
        /// Bytes per write.
        chunk: usize,
        /// Time between writes (rounded up to the farm's [`TICK`]).
        every: Duration,
    },
    /// Write this chunk again and again until the peer closes or resets.
    Endless(Vec<u8>),
    /// Abortive close: `SO_LINGER` 0, then close, so the peer sees `ECONNRESET`.
    Reset,
    /// Orderly close: FIN (`shutdown(SHUT_WR)`), then read and discard until the peer closes
    /// too, so that unread input never turns the close into a reset.
    Close,
    /// Say nothing; read and discard until the peer closes or resets.
    Hold,
}

impl Step {
    /// `Step::Expect` from anything byte-like.
    pub fn expect(b: impl Into<Vec<u8>>) -> Step {
        Step::Expect(b.into())
    }

    /// `Step::Send` from anything byte-like.
    pub fn send(b: impl Into<Vec<u8>>) -> Step {
        Step::Send(b.into())
    }
}

/// What the farm has done so far (updated by its thread).
#[derive(Debug, Default)]
pub struct FarmStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections closed (by either side, or by the farm's own limits).
    pub closed: AtomicU64,
    /// Connections open now.
    pub live: AtomicUsize,
    /// The most connections open at once.
    pub max_live: AtomicUsize,
    /// Connections closed at once because [`MAX_CONNECTIONS`] were open.
    pub refused_over_limit: AtomicU64,
    /// Connections closed for outliving [`MAX_CONNECTION_LIFETIME`].
    pub expired: AtomicU64,
    /// `accept(2)` failures other than `WouldBlock` (the test process short of something).
    pub accept_errors: AtomicU64,
    /// Datagrams received by UDP entries.
    pub datagrams: AtomicU64,
    /// Passes of the farm's loop.
    pub turns: AtomicU64,
    /// The longest time between two passes, µs: a farm that stalls would make lvsmon's
    /// checks fail for its own sake, so a test can show it did not.
    pub max_gap_us: AtomicU64,
}

/// A running farm. Dropping it stops its thread (within a few [`TICK`]s) and closes every
/// socket it made.
pub struct Farm {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    /// Its counters.
    pub stats: Arc<FarmStats>,
    thread: Option<JoinHandle<()>>,
}

/// The address of entry `i`.
pub fn entry_ip(i: usize) -> IpAddr {
    assert!(i < 250 * 250 * 200, "farm entry {i} out of range");
    IpAddr::V4(Ipv4Addr::new(
        127,
        16 + (i / 62_500) as u8,
        (i / 250 % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

impl Farm {
    /// Starts a farm of `entries` (entry `i` at [`entry_ip`]`(i)`), inside the network
    /// namespace at `netns` (a file under `/var/run/netns`) if given, running at most `life`.
    /// Also raises this process's soft limit on open files to its hard limit, since a farm
    /// holds a descriptor per entry and per connection.
    ///
    /// # Panics
    ///
    /// If a socket cannot be made, bound or filled (the message names the entry).
    #[track_caller]
    pub fn start(entries: Vec<Serve>, netns: Option<PathBuf>, life: Duration) -> Farm {
        raise_own_fd_limit();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(FarmStats::default());
        let (tx, rx) = channel::<Result<Vec<SocketAddr>, String>>();
        let (stop2, stats2) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("farm".into())
            .spawn(move || {
                let built = netns
                    .as_ref()
                    .map_or(Ok(()), |p| {
                        enter_netns(p).map_err(|e| format!("setns: {e}"))
                    })
                    .and_then(|()| Built::new(&entries));
                match built {
                    Ok(b) => {
                        let _ = tx.send(Ok(b.addrs.clone()));
                        run(b, entries, &stop2, &stats2, life);
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            })
            .expect("spawn farm thread");
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(addrs)) => Farm {
                addrs,
                stop,
                stats,
                thread: Some(thread),
            },
            Ok(Err(e)) => panic!("farm: {e}"),
            Err(e) => panic!("farm: no addresses from its thread: {e}"),
        }
    }

    /// The address of entry `i`, with its real port.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.addrs[i]
    }

    /// Every entry's address, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.stats.live.load(Ordering::Relaxed)
    }

    /// A one-line summary of the counters.
    pub fn summary(&self) -> String {
        let s = &self.stats;
        format!(
            "farm: accepted={} closed={} live={} max_live={} over_limit={} expired={} \
             accept_errors={} datagrams={} turns={} max_gap={}ms",
            s.accepted.load(Ordering::Relaxed),
            s.closed.load(Ordering::Relaxed),
            s.live.load(Ordering::Relaxed),
            s.max_live.load(Ordering::Relaxed),
            s.refused_over_limit.load(Ordering::Relaxed),
            s.expired.load(Ordering::Relaxed),
            s.accept_errors.load(Ordering::Relaxed),
            s.datagrams.load(Ordering::Relaxed),
            s.turns.load(Ordering::Relaxed),
            s.max_gap_us.load(Ordering::Relaxed) / 1000,
        )
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let end = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(2));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                eprintln!("farm thread did not stop within 5 s");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building the sockets
// ---------------------------------------------------------------------------------------------

/// The sockets of every entry, made in the farm's thread (and so in its namespace).
struct Built {
    addrs: Vec<SocketAddr>,
    listeners: Vec<Option<TcpListener>>,
    udp: Vec<Option<UdpSocket>>,
    /// Sockets kept only so they stay: refused ports, full queues and their fillers.
    _held: Vec<OwnedFd>,
}

impl Built {
    fn new(entries: &[Serve]) -> Result<Built, String> {
        let n = entries.len();
        let mut b = Built {
            addrs: Vec::with_capacity(n),
            listeners: (0..n).map(|_| None).collect(),
            udp: (0..n).map(|_| None).collect(),
            _held: Vec::new(),
        };
        let mut fillers = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let want = SocketAddr::new(entry_ip(i), 0);
            let err =
                |what: &str, e: io::Error| format!("entry {i} ({e:?}) at {want}: {what}: {e}");
            let addr = match e {
                Serve::Tcp(_) => {
                    let l = std::net::TcpListener::bind(want).map_err(|e| err("bind", e))?;
                    // A deeper queue than std's 128: a second listen(2) only sets the backlog.
                    // SAFETY: a valid listening socket.
                    unsafe { libc::listen(l.as_raw_fd(), BACKLOG) };
                    l.set_nonblocking(true).map_err(|e| err("nonblocking", e))?;
                    let a = l.local_addr().map_err(|e| err("address", e))?;
                    b.listeners[i] = Some(TcpListener::from_std(l));
                    a
                }
                Serve::Refused => {
                    let s = tcp_socket(0).map_err(|e| err("socket", e))?;
                    bind(s.as_raw_fd(), &want).map_err(|e| err("bind", e))?;
                    let a = local_addr(s.as_raw_fd()).map_err(|e| err("address", e))?;
                    b._held.push(s);
                    a
                }
                Serve::FullQueue => {
                    let s = tcp_socket(0).map_err(|e| err("socket", e))?;
                    bind(s.as_raw_fd(), &want).map_err(|e| err("bind", e))?;
                    // SAFETY: a valid bound socket.
                    if unsafe { libc::listen(s.as_raw_fd(), 0) } != 0 {
                        return Err(err("listen", io::Error::last_os_error()));
                    }
                    let a = local_addr(s.as_raw_fd()).map_err(|e| err("address", e))?;
                    // With backlog 0 the queue holds one connection: this filler.
                    let f = tcp_socket(libc::SOCK_NONBLOCK).map_err(|e| err("socket", e))?;
                    connect(f.as_raw_fd(), &a).map_err(|e| err("filler connect", e))?;
                    fillers.push((i, f.as_raw_fd()));
                    b._held.push(s);
                    b._held.push(f);
                    a
                }
                Serve::Udp(_) => {
                    let s = std::net::UdpSocket::bind(want).map_err(|e| err("bind", e))?;
                    s.set_nonblocking(true).map_err(|e| err("nonblocking", e))?;
                    let a = s.local_addr().map_err(|e| err("address", e))?;
                    b.udp[i] = Some(UdpSocket::from_std(s));
                    a
                }
                Serve::Elsewhere(a) => *a,
            };
            b.addrs.push(addr);
        }
        // Every filler must be established (and so sit in its accept queue) before any checker
        // connects; on loopback the handshake is done within the connect call, so this is quick.
        let end = Instant::now() + Duration::from_secs(5);
        for (i, fd) in fillers {
            loop {
                let mut p = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut p, 1, 10) };
                if n > 0 {
                    match so_error(fd) {
                        0 => break,
                        e => return Err(format!("entry {i}: filler connect: errno {e}")),
                    }
                }
                if Instant::now() >= end {
                    return Err(format!("entry {i}: filler connect did not complete in 5 s"));
                }
            }
        }
        Ok(b)
    }
}

fn enter_netns(path: &PathBuf) -> io::Result<()> {
    let ns = File::open(path)?;
    // SAFETY: `ns` is an open namespace file; setns moves only the calling thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit.
pub fn raise_own_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------------------------

/// One accepted connection.
struct Conn {
    stream: TcpStream,
    entry: usize,
    /// Index of the running step; past the end: closing in order (FIN sent, draining).
    step: usize,
    /// Bytes of the running `Send` or `Trickle` already written.
    off: usize,
    /// Input kept for `Expect` (≤ [`MAX_INPUT`]).
    input: Vec<u8>,
    /// The peer closed its side.
    eof: bool,
    /// FIN sent.
    fin: bool,
    /// The running `Trickle` or `Endless` waits until then.
    wake: Option<Instant>,
    born: Instant,
}

/// What a connection wants after a step.
enum Next {
    Keep,
    Close,
}

fn run(mut b: Built, entries: Vec<Serve>, stop: &AtomicBool, stats: &FarmStats, life: Duration) {
    let Ok(mut poll) = Poll::new() else {
        eprintln!("farm: no poll");
        return;
    };
    for (i, l) in b.listeners.iter_mut().enumerate() {
        if let Some(l) = l {
            let _ = poll.registry().register(l, Token(i), Interest::READABLE);
        }
    }
    for (i, s) in b.udp.iter_mut().enumerate() {
        if let Some(s) = s {
            let _ = poll.registry().register(s, Token(i), Interest::READABLE);
        }
    }
    let mut events = Events::with_capacity(4096);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    // Slots freed in this pass are reused only in the next, so a readiness event already
    // fetched for a closed connection can never reach the one that takes its slot.
    let mut freed: Vec<usize> = Vec::new();
    let end = Instant::now() + life;
    let mut next_tick = Instant::now();
    let mut dgram = vec![0u8; 65_536];
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        stats.turns.fetch_add(1, Ordering::Relaxed);
        // Each pass waits at most a tick, so a longer gap is the thread held up.
        let top = Instant::now();
        let gap = top.duration_since(last).as_micros() as u64;
        last = top;
        stats.max_gap_us.fetch_max(gap, Ordering::Relaxed);
        free.append(&mut freed);
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(TICK);
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("farm: poll: {e}");
                return;
            }
        }
        let now = Instant::now();
        for ev in events.iter() {
            let t = ev.token().0;
            if t >= CONN_BASE {
                let slot = t - CONN_BASE;
                step_conn(&mut conns, slot, &entries, now, stats, &mut freed, &poll);
                continue;
            }
            if let Some(l) = b.listeners[t].as_ref() {
                // Edge-triggered: take everything queued now.
                for _ in 0..MAX_CONNECTIONS {
                    match l.accept() {
                        Ok((mut stream, _)) => {
                            stats.accepted.fetch_add(1, Ordering::Relaxed);
                            let live = stats.live.load(Ordering::Relaxed);
                            if live >= MAX_CONNECTIONS {
                                stats.refused_over_limit.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            let slot = match free.pop() {
                                Some(s) => s,
                                None => {
                                    conns.push(None);
                                    conns.len() - 1
                                }
                            };
                            if poll
                                .registry()
                                .register(
                                    &mut stream,
                                    Token(CONN_BASE + slot),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_err()
                            {
                                freed.push(slot);
                                continue;
                            }
                            conns[slot] = Some(Conn {
                                stream,
                                entry: t,
                                step: 0,
                                off: 0,
                                input: Vec::new(),
                                eof: false,
                                fin: false,
                                wake: None,
                                born: now,
                            });
                            stats.live.fetch_add(1, Ordering::Relaxed);
                            stats.max_live.fetch_max(live + 1, Ordering::Relaxed);
                            // A banner goes out at once, before any readiness.
                            step_conn(&mut conns, slot, &entries, now, stats, &mut freed, &poll);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            } else if let (Some(s), Serve::Udp(reply)) = (b.udp[t].as_ref(), &entries[t]) {
                for _ in 0..4096 {
                    match s.recv_from(&mut dgram) {
                        Ok((n, from)) => {
                            stats.datagrams.fetch_add(1, Ordering::Relaxed);
                            if let Some(r) = reply(&dgram[..n]) {
                                let _ = s.send_to(&r, from);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // WouldBlock, or an ICMP error queued by a reply: done for now.
                        Err(_) => break,
                    }
                }
            }
        }
        if now >= next_tick {
            next_tick = now + TICK;
            for slot in 0..conns.len() {
                let Some(c) = conns[slot].as_ref() else {
                    continue;
                };
                if now.duration_since(c.born) > MAX_CONNECTION_LIFETIME {
                    stats.expired.fetch_add(1, Ordering::Relaxed);
                    close_conn(&mut conns, slot, stats, &mut freed, &poll);
                } else if c.wake.is_some_and(|w| now >= w) {
                    step_conn(&mut conns, slot, &entries, now, stats, &mut freed, &poll);
                }
            }
        }
    }
    for slot in 0..conns.len() {
        if conns[slot].is_some() {
            close_conn(&mut conns, slot, stats, &mut freed, &poll);
        }
    }
}

fn close_conn(
    conns: &mut [Option<Conn>],
    slot: usize,
    stats: &FarmStats,
    freed: &mut Vec<usize>,
    poll: &Poll,
) {
    if let Some(mut c) = conns[slot].take() {
        let _ = poll.registry().deregister(&mut c.stream);
        stats.live.fetch_sub(1, Ordering::Relaxed);
        stats.closed.fetch_add(1, Ordering::Relaxed);
        freed.push(slot);
    }
}

fn step_conn(
    conns: &mut [Option<Conn>],
    slot: usize,
    entries: &[Serve],
    now: Instant,
    stats: &FarmStats,
    freed: &mut Vec<usize>,
    poll: &Poll,
) {
    let Some(c) = conns.get_mut(slot).and_then(|c| c.as_mut()) else {
        return;
    };
    let Serve::Tcp(steps) = &entries[c.entry] else {
        return;
    };
    if let Next::Close = advance(c, steps, now) {
        close_conn(conns, slot, stats, freed, poll);
    }
}

/// Reads what has arrived, then runs steps until one has to wait.
fn advance(c: &mut Conn, steps: &[Step], now: Instant) -> Next {
    // Edge-triggered readiness: read until WouldBlock every time.
    let mut buf = [0u8; 16 * 1024];
    while !c.eof {
        match c.stream.read(&mut buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                if matches!(steps.get(c.step), Some(Step::Expect(_))) {
                    c.input.extend_from_slice(&buf[..n]);
                    if c.input.len() > MAX_INPUT {
                        let cut = c.input.len() - MAX_INPUT / 2;
                        c.input.drain(..cut);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Reset by the peer (a checker done with us): nothing more to do.
            Err(_) => return Next::Close,
        }
    }
    loop {
        let Some(step) = steps.get(c.step) else {
            // Out of steps: FIN once, then wait for the peer's close.
            if !c.fin {
                c.fin = true;
                let _ = c.stream.shutdown(Shutdown::Write);
            }
            return if c.eof { Next::Close } else { Next::Keep };
        };
        match step {
            Step::Expect(p) => {
                if let Some(i) = find(&c.input, p) {
                    c.input.drain(..i + p.len());
                } else if !c.eof {
                    return Next::Keep;
                }
            }
            Step::Send(bytes) => {
                while c.off < bytes.len() {
                    match c.stream.write(&bytes[c.off..]) {
                        Ok(n) => c.off += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
            }
            Step::Trickle {
                bytes,
                chunk,
                every,
            } => {
                if c.off < bytes.len() {
                    if c.wake.is_some_and(|w| now < w) {
                        return Next::Keep;
                    }
                    let end = (c.off + (*chunk).max(1)).min(bytes.len());
                    match c.stream.write(&bytes[c.off..end]) {
                        Ok(n) => c.off += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                    c.wake = Some(now + *every);
                    if c.off < bytes.len() {
                        return Next::Keep;
                    }
                }
            }
            Step::Endless(chunk) => {
                // Until the socket is full; the tick comes back for more.
                for _ in 0..256 {
                    match c.stream.write(chunk) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
                c.wake = Some(now + TICK);
                return Next::Keep;
            }
            Step::Reset => {
                set_linger_zero(c.stream.as_raw_fd());
                return Next::Close;
            }
            Step::Close => {
                c.step = steps.len();
                continue;
            }
            Step::Hold => {
                c.input.clear();
                return if c.eof { Next::Close } else { Next::Keep };
            }
        }
        c.step += 1;
        c.off = 0;
        c.wake = None;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Small helpers over libc
// ---------------------------------------------------------------------------------------------

fn tcp_socket(flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sockaddr_in(addr: &SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = addr else {
        panic!("farm entries are IPv4: {addr}");
    };
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_port = a.port().to_be();
    sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
    sin
}

fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let sin = sockaddr_in(addr);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a sockaddr_in of `len` bytes.
    if unsafe { libc::bind(fd, (&sin as *const libc::sockaddr_in).cast(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts a connect on a non-blocking socket (done, or in progress).
fn connect(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let sin = sockaddr_in(addr);
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` is a sockaddr_in of `len` bytes.
    if unsafe { libc::connect(fd, (&sin as *const libc::sockaddr_in).cast(), len) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(())
}

fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_in.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `sin` has room for `len` bytes.
    if unsafe { libc::getsockname(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes())),
        u16::from_be(sin.sin_port),
    ))
}

fn so_error(fd: RawFd) -> i32 {
    let mut e: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option into an int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut e as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
    }
    e
}

fn set_linger_zero(fd: RawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
