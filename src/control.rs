//! The control socket and the metrics endpoint: small stream servers on the daemon's loop.
//!
//! Both serve a request with a reply that may be much larger than any buffer (a status table
//! of 100,000 real servers), so replies are *pulled*: each connection owns a fixed output
//! buffer from a slab, and when it has drained, the daemon renders the next piece into it
//! from a cursor ([`Render`]). A slow client therefore holds one buffer and one slot, never
//! memory in proportion to the reply, and never blocks checking.
//!
//! Invariants and limits:
//! - at most [`CONTROL_SLOTS`] control connections and [`METRICS_SLOTS`] metrics connections
//!   at once, each side with its own slots, so that no number of metrics clients can keep
//!   root from the control socket; further clients wait in the listen backlog until a slot
//!   of their side frees (the listener is accepted from again whenever a slot closes);
//! - when every metrics slot is taken and another scraper waits, the metrics connection that
//!   has waited longest for its request (open at least [`EVICT_GRACE_US`]) is closed to make
//!   room: a few clients that connect and dawdle cannot lock Prometheus out;
//! - a request is at most [`IN_CAP`] bytes (a line for the control socket, the head of an
//!   HTTP request for metrics); longer or malformed input gets an error reply and a close;
//! - a request must be whole within [`REQUEST`] of the connection's acceptance, however
//!   steadily its bytes come; then it gets a timeout reply (`408` for HTTP) and a close. A
//!   request cut short by the client's half-close gets an error reply (`400`) too;
//! - a connection that makes no progress for [`IDLE`] is closed, and none lives longer than
//!   [`LIFETIME`], so a client that hangs or reads its reply byte by byte holds its slot
//!   for a bounded time;
//! - nothing here allocates after [`Server::new`].

use std::io::{self, Cursor, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::clock::Time;

/// Control-socket connections served at once.
pub const CONTROL_SLOTS: usize = 8;
/// Metrics connections served at once.
pub const METRICS_SLOTS: usize = 8;
/// Connections served at once (control and metrics together): the control socket's slots
/// come first, then the metrics endpoint's.
pub const SLOTS: usize = CONTROL_SLOTS + METRICS_SLOTS;
/// Bytes of request a connection may send.
pub const IN_CAP: usize = 2048;
/// A cursor with this bit set, with nothing rendered and the reply not done, parks the
/// connection: the renderer is asked again at every [`Server::tick`] until it answers (or
/// the idle timeout closes the connection).
pub const PARKED: u64 = 1 << 63;

/// Bytes of reply rendered at a time.
pub const OUT_CAP: usize = 64 * 1024;
/// A connection idle this long is closed (µs).
pub const IDLE_US: u64 = 10_000_000;
/// The same, for the docs.
pub const IDLE: std::time::Duration = std::time::Duration::from_micros(IDLE_US);
/// A request must be whole this soon after its connection was accepted (µs), counted from
/// the accept, not from the last byte: a client dripping one byte at a time is cut here.
pub const REQUEST_US: u64 = 5_000_000;
/// The same, for the docs.
pub const REQUEST: std::time::Duration = std::time::Duration::from_micros(REQUEST_US);
// The timeout replies say "5 s".
const _: () = assert!(REQUEST_US == 5_000_000);
/// No connection lives longer than this (µs), reply included.
pub const LIFETIME_US: u64 = 60_000_000;
/// The same, for the docs.
pub const LIFETIME: std::time::Duration = std::time::Duration::from_micros(LIFETIME_US);
/// A metrics connection still without a whole request may be closed to make room for a new
/// client once it has been open this long (µs).
pub const EVICT_GRACE_US: u64 = 500_000;

/// After `accept(2)` failed for want of a resource (`EMFILE`, `ENFILE`, `ENOBUFS`), the
/// listeners are tried again this soon (µs): a client already in the backlog makes no new
/// readiness edge, so without a retry it would wait until the next client came.
pub const ACCEPT_RETRY_US: u64 = 200_000;

/// Token of the control socket's listener.
pub const CONTROL_LISTENER: Token = Token(usize::MAX - 2);
/// Token of the metrics listener.
pub const METRICS_LISTENER: Token = Token(usize::MAX - 3);
/// Connection tokens have the top bit set (probe tokens never do): slot in the low 16 bits,
/// generation above.
const CONN_BIT: usize = 1 << 63;

/// Which server a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The control socket: one command line in, text out.
    Control,
    /// The metrics endpoint: an HTTP GET in, Prometheus text out.
    Metrics,
}

/// A parsed request, handed to the renderer. Words borrow nothing: they are copied into
/// fixed fields so the connection's input buffer can be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Which server.
    pub kind: Kind,
    /// The request's bytes (`in_buf[..len]`, without the line end).
    pub len: usize,
    /// What it asks.
    pub cmd: Command,
}

/// Answers requests: the daemon implements it over its state.
pub trait Render {
    /// Applies what request `cmd` (whose text is `text`) changes, once, as it arrives: a
    /// drain, a reload's request. It may set `cursor` (0 before) for the reply to follow, and
    /// set [`PARKED`] in it while the reply waits for something (a save, a reload). Must
    /// never allocate.
    fn apply(&mut self, cmd: &Command, text: &[u8], cursor: &mut u64, now: Time);

    /// Writes the next piece of the reply to `cmd` into `out`, advancing `cursor`. Returns
    /// the bytes written and whether the reply is complete. Changes nothing. Must write at
    /// least one byte per call unless complete or parked, and must never allocate.
    fn render(
        &self,
        cmd: &Command,
        text: &[u8],
        cursor: &mut u64,
        out: &mut [u8],
        now: Time,
    ) -> (usize, bool);
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

struct Conn {
    stream: Option<Stream>,
    kind: Kind,
    gen: u32,
    in_len: usize,
    /// The request, once a whole one has arrived.
    req: Option<Request>,
    cursor: u64,
    out_start: usize,
    out_end: usize,
    done: bool,
    /// Close once the output drains (errors, complete replies).
    last_progress: Time,
    /// When the connection was accepted.
    opened: Time,
    /// The loop turn (its `now`) in which a page's reply last rendered.
    page_turn: Option<Time>,
    /// A page's reply has more to render, left for the next loop turn.
    more: bool,
}

impl Kind {
    /// The slots of this side.
    fn slots(self) -> std::ops::Range<usize> {
        match self {
            Kind::Control => 0..CONTROL_SLOTS,
            Kind::Metrics => CONTROL_SLOTS..SLOTS,
        }
    }
}

/// Counters of the servers.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Requests answered in full.
    pub answered: u64,
    /// Connections closed for idling, errors or oversized requests.
    pub dropped: u64,
}

/// The servers: listeners, connection slots and their buffers.
pub struct Server {
    control: Option<UnixListener>,
    /// The control socket's file while startup may still fail: removed if the server is
    /// dropped before [`Server::keep_socket_file`].
    bound: Option<BoundFile>,
    metrics: Option<TcpListener>,
    conns: Box<[Conn]>,
    in_slab: Box<[u8]>,
    out_slab: Box<[u8]>,
    /// Counters.
    pub stats: ServerStats,
    /// A slot freed since the last accept: try the listeners again.
    accept_pending: bool,
    /// An accept failed for a reason of our own: try the listeners again at this time.
    accept_retry: Option<Time>,
    /// Slots holding a connection: with none, a turn skips the scans of the slots.
    open: usize,
    /// The metrics side was full when a client may have been waiting: until an accept finds
    /// the backlog empty, each turn sees whether a dawdling connection can give way.
    metrics_waiting: bool,
}

impl Server {
    /// Binds the control socket at `socket` (mode 0600; a stale socket file is replaced
    /// only if nobody answers on it) and the metrics listener at `metrics`, and registers
    /// them.
    ///
    /// # Errors
    /// A socket could not be created, bound or registered; another lvsmon answers on
    /// `socket`.
    pub fn new(
        socket: Option<&Path>,
        metrics: Option<std::net::SocketAddr>,
        registry: &Registry,
    ) -> io::Result<Server> {
        let (control, bound) = match socket {
            Some(p) => {
                let l = bind_unix(p)?;
                (Some(l), BoundFile::of(p))
            }
            None => (None, None),
        };
        // From here on, an error drops `bound`: the file just created goes with it.
        let metrics = match metrics {
            Some(a) => Some(TcpListener::bind(a)?),
            None => None,
        };
        let mut s = Server {
            control,
            bound,
            metrics,
            conns: (0..SLOTS)
                .map(|_| Conn {
                    stream: None,
                    kind: Kind::Control,
                    gen: 0,
                    in_len: 0,
                    req: None,
                    cursor: 0,
                    out_start: 0,
                    out_end: 0,
                    done: false,
                    last_progress: Time::ZERO,
                    opened: Time::ZERO,
                    page_turn: None,
                    more: false,
                })
                .collect(),
            in_slab: vec![0u8; SLOTS * IN_CAP].into_boxed_slice(),
            out_slab: vec![0u8; SLOTS * OUT_CAP].into_boxed_slice(),
            stats: ServerStats::default(),
            accept_pending: false,
            accept_retry: None,
            open: 0,
            metrics_waiting: false,
        };
        if let Some(l) = s.control.as_mut() {
            registry.register(l, CONTROL_LISTENER, Interest::READABLE)?;
        }
        if let Some(l) = s.metrics.as_mut() {
            registry.register(l, METRICS_LISTENER, Interest::READABLE)?;
        }
        Ok(s)
    }

    /// Startup is done: the control socket's file stays when the server is dropped (the
    /// daemon removes it at a clean stop, where the path still names it). Until this is
    /// called, dropping the server removes the file it bound, if the path still names it.
    pub fn keep_socket_file(&mut self) {
        if let Some(b) = self.bound.as_mut() {
            b.armed = false;
        }
    }

    /// The metrics listener's address (with the port the kernel chose for port 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// True when `t` belongs to these servers.
    pub fn owns(t: Token) -> bool {
        t == CONTROL_LISTENER || t == METRICS_LISTENER || t.0 & CONN_BIT != 0
    }

    fn token(slot: usize, gen: u32) -> Token {
        Token(CONN_BIT | ((gen as usize & 0xffff_ffff) << 16) | slot)
    }

    /// Handles readiness of `t`.
    pub fn on_ready(&mut self, t: Token, registry: &Registry, r: &mut dyn Render, now: Time) {
        if t == CONTROL_LISTENER {
            self.accept_kind(Kind::Control, false, registry, now);
            return;
        }
        if t == METRICS_LISTENER {
            // A scraper knocks: it may take the place of a client that dawdles.
            self.accept_kind(Kind::Metrics, true, registry, now);
            return;
        }
        let slot = t.0 & 0xffff;
        let gen = ((t.0 & !CONN_BIT) >> 16) as u32;
        if slot >= SLOTS || self.conns[slot].gen != gen || self.conns[slot].stream.is_none() {
            return;
        }
        self.serve(slot, registry, r, now);
    }

    /// Accepts on both listeners while their sides have free slots.
    fn accept(&mut self, registry: &Registry, now: Time) {
        self.accept_kind(Kind::Control, false, registry, now);
        self.accept_kind(Kind::Metrics, false, registry, now);
    }

    /// Accepts clients of `kind` while its side has a free slot. With `evict`, a full side
    /// makes room by closing its connection that has waited longest for a whole request (if
    /// open for [`EVICT_GRACE_US`] at least): a new client knocked.
    fn accept_kind(&mut self, kind: Kind, evict: bool, registry: &Registry, now: Time) {
        loop {
            let free = kind.slots().find(|&i| self.conns[i].stream.is_none());
            // With the side full, the connection that would give way (if any); it is
            // closed only once a new client has really been accepted.
            let victim = match free {
                Some(_) => None,
                None if evict => {
                    let v = kind
                        .slots()
                        .filter(|&i| {
                            let c = &self.conns[i];
                            c.req.is_none() && now.micros_since(c.opened) >= EVICT_GRACE_US
                        })
                        .min_by_key(|&i| self.conns[i].opened);
                    if v.is_none() {
                        self.metrics_waiting = true;
                        return;
                    }
                    v
                }
                None => {
                    self.metrics_waiting |= kind == Kind::Metrics;
                    return;
                }
            };
            let mut failed = false;
            let accepted = match kind {
                Kind::Control => self
                    .control
                    .as_ref()
                    .and_then(|l| accept_result(l.accept(), &mut failed))
                    .map(|(s, _)| Stream::Unix(s)),
                Kind::Metrics => self
                    .metrics
                    .as_ref()
                    .and_then(|l| accept_result(l.accept(), &mut failed))
                    .map(|(s, _)| Stream::Tcp(s)),
            };
            if failed && self.accept_retry.is_none() {
                self.accept_retry = Some(now.add_micros(ACCEPT_RETRY_US));
            }
            let Some(mut stream) = accepted else {
                // Nobody waits (or the accept failed, and is retried): nothing to make room for.
                if kind == Kind::Metrics {
                    self.metrics_waiting = false;
                }
                return;
            };
            let slot = match (free, victim) {
                (Some(slot), _) => slot,
                (None, Some(v)) => {
                    self.stats.dropped += 1;
                    self.close(v, registry);
                    v
                }
                (None, None) => return,
            };
            let c = &mut self.conns[slot];
            c.gen = c.gen.wrapping_add(1);
            if registry
                .register(
                    stream.source(),
                    Self::token(slot, c.gen),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            c.stream = Some(stream);
            self.open += 1;
            c.kind = kind;
            c.in_len = 0;
            c.req = None;
            c.cursor = 0;
            c.out_start = 0;
            c.out_end = 0;
            c.done = false;
            c.last_progress = now;
            c.opened = now;
            c.page_turn = None;
            c.more = false;
            self.stats.accepted += 1;
        }
    }

    /// Reads the request (if not yet whole), renders and writes what the socket takes.
    fn serve(&mut self, slot: usize, registry: &Registry, r: &mut dyn Render, now: Time) {
        if self.step(slot, r, now) {
            self.close(slot, registry);
        }
    }

    /// The work of [`Server::serve`]; returns true when the connection should close.
    fn step(&mut self, slot: usize, r: &mut dyn Render, now: Time) -> bool {
        let inb = &mut self.in_slab[slot * IN_CAP..(slot + 1) * IN_CAP];
        let outb = &mut self.out_slab[slot * OUT_CAP..(slot + 1) * OUT_CAP];
        let stats = &mut self.stats;
        let c = &mut self.conns[slot];
        if c.stream.is_none() {
            return false;
        }
        // Read until the request is whole.
        while c.req.is_none() {
            if c.in_len == IN_CAP {
                let msg: &[u8] = match c.kind {
                    Kind::Control => b"error: request too long\n",
                    Kind::Metrics => {
                        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n"
                    }
                };
                refuse(c, outb, msg);
                stats.dropped += 1;
                break;
            }
            let Some(stream) = c.stream.as_mut() else {
                return true;
            };
            match stream.read(&mut inb[c.in_len..]) {
                // The peer closed before sending anything: nothing to answer.
                Ok(0) if c.in_len == 0 => return true,
                // It half-closed part-way through a request: say so rather than guess at
                // the rest (a cut `drain` line could name another real server).
                Ok(0) => {
                    let msg: &[u8] = match c.kind {
                        Kind::Control => b"error: request ends without a newline\n",
                        Kind::Metrics => b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\nthe request head ended before its blank line\n",
                    };
                    refuse(c, outb, msg);
                    stats.dropped += 1;
                    break;
                }
                Ok(n) => {
                    c.in_len += n;
                    c.last_progress = now;
                    if let Some(len) = request_end(c.kind, &inb[..c.in_len]) {
                        let cmd = Command::parse(c.kind, &inb[..len]);
                        r.apply(&cmd, &inb[..len], &mut c.cursor, now);
                        c.req = Some(Request {
                            kind: c.kind,
                            len,
                            cmd,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        // Write, rendering more whenever the buffer has drained.
        loop {
            if c.out_start == c.out_end {
                if c.done {
                    stats.answered += 1;
                    return true;
                }
                let Some(req) = c.req else { return false };
                if let Command::Page { .. } = req.cmd {
                    // A page renders once a loop turn: its pieces read the history of up to
                    // thousands of reals per call (crate::page::WORK_PER_CALL), and a client
                    // that reads as fast would otherwise have all of it in this turn.
                    // [`Server::tick`] serves it again in the next.
                    if c.page_turn == Some(now) {
                        c.more = true;
                        return false;
                    }
                    c.page_turn = Some(now);
                }
                c.more = false;
                let (n, done) = r.render(&req.cmd, &inb[..req.len], &mut c.cursor, outb, now);
                if n == 0 && !done && c.cursor & PARKED != 0 {
                    // The answer is not ready (a reload is loading): ask again next turn.
                    return false;
                }
                c.out_start = 0;
                c.out_end = n.min(OUT_CAP);
                // A renderer that writes nothing and is not done would spin: end the reply.
                c.done = done || n == 0;
                continue;
            }
            let Some(stream) = c.stream.as_mut() else {
                return true;
            };
            match stream.write(&outb[c.out_start..c.out_end]) {
                Ok(0) => return true,
                Ok(n) => {
                    c.out_start += n;
                    c.last_progress = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    stats.dropped += 1;
                    return true;
                }
            }
        }
    }

    /// A request that did not arrive whole within [`REQUEST_US`]: a timeout reply, then
    /// the close.
    fn time_out(&mut self, slot: usize) {
        let outb = &mut self.out_slab[slot * OUT_CAP..(slot + 1) * OUT_CAP];
        let c = &mut self.conns[slot];
        let msg: &[u8] = match c.kind {
            Kind::Control => b"error: request not complete within 5 s of connecting\n",
            Kind::Metrics => b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\nthe request head did not arrive within 5 s\n",
        };
        refuse(c, outb, msg);
        self.stats.dropped += 1;
    }

    fn close(&mut self, slot: usize, registry: &Registry) {
        let c = &mut self.conns[slot];
        if let Some(s) = c.stream.as_mut() {
            // Unread input would turn the close into a reset and could destroy the reply
            // still in flight (an over-long request): discard what is there (bounded).
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                match s.read(&mut sink) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
        if let Some(mut s) = c.stream.take() {
            let _ = registry.deregister(s.source());
            self.open -= 1;
        }
        c.gen = c.gen.wrapping_add(1);
        // A slot is free: clients waiting in the backlog may come in now.
        self.accept_pending = true;
    }

    /// Closes idle connections and accepts clients that waited for a slot. Call once per
    /// loop turn; O(SLOTS) while a connection is open, O(1) otherwise.
    pub fn tick(&mut self, registry: &Registry, r: &mut dyn Render, now: Time) {
        if self.open > 0 {
            for slot in 0..SLOTS {
                let c = &self.conns[slot];
                if c.stream.is_none() {
                    continue;
                }
                if c.req.is_none() && now.micros_since(c.opened) >= REQUEST_US {
                    self.time_out(slot);
                    self.serve(slot, registry, r, now);
                } else if now.micros_since(c.last_progress) >= IDLE_US
                    || now.micros_since(c.opened) >= LIFETIME_US
                {
                    self.stats.dropped += 1;
                    self.close(slot, registry);
                }
            }
            // Replies waiting for something, and pages left for this turn.
            for slot in 0..SLOTS {
                let c = &self.conns[slot];
                if c.stream.is_some()
                    && (c.cursor & PARKED != 0 || c.more)
                    && c.out_start == c.out_end
                {
                    self.serve(slot, registry, r, now);
                }
            }
        }
        if self.metrics_waiting {
            self.accept_kind(Kind::Metrics, true, registry, now);
            for slot in Kind::Metrics.slots() {
                if self.conns[slot].stream.is_some() && self.conns[slot].opened == now {
                    self.serve(slot, registry, r, now);
                }
            }
        }
        if self.accept_retry.is_some_and(|t| now >= t) {
            self.accept_retry = None;
            self.accept_pending = true;
        }
        if std::mem::take(&mut self.accept_pending) {
            self.accept(registry, now);
            // Newly accepted clients may have sent their request already.
            for slot in 0..SLOTS {
                if self.conns[slot].stream.is_some() && self.conns[slot].last_progress == now {
                    self.serve(slot, registry, r, now);
                }
            }
        }
    }

    /// While a metrics client may wait for a slot: when the oldest connection still without
    /// a whole request may give way.
    fn evict_deadline(&self) -> Option<Time> {
        if !self.metrics_waiting {
            return None;
        }
        Kind::Metrics
            .slots()
            .map(|i| &self.conns[i])
            .filter(|c| c.stream.is_some() && c.req.is_none())
            .map(|c| c.opened.add_micros(EVICT_GRACE_US))
            .min()
    }

    /// The earliest idle deadline, for the loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Time> {
        if self.open == 0 {
            return self.accept_retry;
        }
        if self.conns.iter().any(|c| c.stream.is_some() && c.more) {
            // A page goes on in the next turn, at once.
            return Some(Time::ZERO);
        }
        self.conns
            .iter()
            .filter(|c| c.stream.is_some())
            .map(|c| {
                let idle = c.last_progress.add_micros(IDLE_US);
                let end = c.opened.add_micros(if c.req.is_none() {
                    REQUEST_US
                } else {
                    LIFETIME_US
                });
                idle.min(end)
            })
            .chain(self.accept_retry)
            .chain(self.evict_deadline())
            .min()
    }
}

/// Ends `c`'s request with the fixed reply `msg` (an error), to be written before the close.
fn refuse(c: &mut Conn, outb: &mut [u8], msg: &[u8]) {
    outb[..msg.len()].copy_from_slice(msg);
    c.out_start = 0;
    c.out_end = msg.len();
    c.done = true;
    c.req = Some(Request {
        kind: c.kind,
        len: 0,
        cmd: Command::Unknown,
    });
}

/// The connection `accept(2)` gave, if any. `WouldBlock` means nobody waits; any other error
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ECONNABORTED`) sets `failed`, for a retry soon: the
/// readiness edge is spent, and a client left in the backlog would otherwise wait for the
/// next one to connect.
fn accept_result<T>(r: io::Result<T>, failed: &mut bool) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            *failed |= e.kind() != io::ErrorKind::WouldBlock;
            None
        }
    }
}

/// Where a whole request ends, if it has arrived: the first line for the control socket,
/// the blank line ending the head for HTTP.
fn request_end(kind: Kind, b: &[u8]) -> Option<usize> {
    match kind {
        Kind::Control => b.iter().position(|&c| c == b'\n').map(|i| {
            if i > 0 && b[i - 1] == b'\r' {
                i - 1
            } else {
                i
            }
        }),
        Kind::Metrics => b
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .or_else(|| b.windows(2).position(|w| w == b"\n\n")),
    }
}

/// A socket file this process created, by path and identity: [`Drop`] removes it while the
/// path still names that file (never one that replaced it meanwhile).
struct BoundFile {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
    /// False once startup is done: the file stays.
    armed: bool,
}

impl BoundFile {
    /// The file at `p`, just bound; `None` if it cannot be read back (then it is left alone).
    fn of(p: &Path) -> Option<BoundFile> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(p).ok()?;
        Some(BoundFile {
            path: p.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            armed: true,
        })
    }
}

impl Drop for BoundFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        if self.armed
            && std::fs::symlink_metadata(&self.path)
                .is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a unix socket with mode 0600. An existing socket file is removed only when
/// connecting to it is refused: a stale file from a crash, or from a daemon that ran under
/// `--chroot`/`--user` and could not remove it at exit. One that accepts means another lvsmon
/// runs; any other answer is reported rather than guessed at.
fn bind_unix(p: &Path) -> io::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(p) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket: remove it or choose another --socket",
                    p.display()
                ),
            ));
        }
        match std::os::unix::net::UnixStream::connect(p) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use: is another lvsmon running?", p.display()),
                ))
            }
            // Nobody listens: stale. (Gone meanwhile: nothing to remove.)
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(p)
                .or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{} exists and connecting to it failed ({e}): remove it if no lvsmon runs",
                        p.display()
                    ),
                ))
            }
        }
    }
    // Create it with no permissions for group and others from the start.
    // SAFETY: umask only affects this thread's process-wide mask briefly, before the loop runs.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(p);
    unsafe { libc::umask(old) };
    let l = l?;
    let _ = l.as_raw_fd();
    Ok(l)
}

// ----- replies -------------------------------------------------------------------------------

/// Largest piece (a line, or a metric family of a few dozen lines) a reply renders at once.
pub(crate) const LINE: usize = 8192;

/// A reply being written into a connection's buffer: lines are copied in while they fit
/// whole.
pub struct Reply<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Reply<'a> {
    /// A reply written into `buf`.
    pub fn new(buf: &'a mut [u8]) -> Reply<'a> {
        Reply { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Formats one line with `f`; returns false (writing nothing) when it does not fit.
    pub fn line(&mut self, f: impl FnOnce(&mut Cursor<&mut [u8]>) -> std::io::Result<()>) -> bool {
        let mut tmp = [0u8; LINE];
        let mut c = Cursor::new(&mut tmp[..]);
        if f(&mut c).is_err() {
            // Longer than LINE: cut, but keep the line end.
            c.set_position((LINE - 1) as u64);
            let _ = c.write_all(b"\n");
        }
        let n = c.position() as usize;
        if self.len + n > self.buf.len() {
            return false;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&tmp[..n]);
        self.len += n;
        true
    }
}

/// A service identifier (`tcp:10.0.0.1:80`) as text in a stack buffer: `ServiceKey`'s
/// Display neither pads nor compares, and formatting it into a `String` would allocate.
pub fn key_text(key: crate::config::ServiceKey, buf: &mut [u8; 80]) -> &str {
    let mut c = Cursor::new(&mut buf[..]);
    let _ = write!(c, "{key}");
    let n = c.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("?")
}

// ----- commands -------------------------------------------------------------------------------

/// Where a word of a request's text is (replies that quote what the client wrote take it
/// from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Word {
    at: u16,
    len: u16,
}

impl Word {
    /// Word `w`, a slice of `text`.
    fn of(text: &[u8], w: &[u8]) -> Word {
        let at = (w.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        Word {
            at: at.min(u16::MAX.into()) as u16,
            len: w.len().min(u16::MAX.into()) as u16,
        }
    }

    /// The word's bytes in `text`, the request it was parsed from.
    pub fn bytes<'a>(&self, text: &'a [u8]) -> &'a [u8] {
        let a = usize::from(self.at).min(text.len());
        let b = (a + usize::from(self.len)).min(text.len());
        &text[a..b]
    }
}

/// A virtual service as a request names it: the key it parses to (`None`: no virtual
/// service is written that way), and the word as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Named {
    /// The virtual service, in any form the configuration takes ([`parse_virtual`]).
    pub key: Option<crate::config::ServiceKey>,
    /// The word as the client wrote it.
    pub word: Word,
}

impl Named {
    fn of(text: &[u8], w: &[u8]) -> Named {
        Named {
            key: parse_virtual(w),
            word: Word::of(text, w),
        }
    }
}

/// A request, parsed: what the control socket or the metrics server is asked. Parsing is
/// pure and allocates nothing; the daemon applies what a command changes once, when it
/// arrives ([`Render::apply`]), and renders its reply without changing anything
/// ([`Render::render`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `status [json]`.
    Status {
        /// `json` was among the words.
        json: bool,
    },
    /// `drain REAL [VIRTUAL]` (`on`) or `undrain REAL [VIRTUAL]`.
    Drain {
        /// `drain` rather than `undrain`.
        on: bool,
        /// The real server (`None`: missing, or not `ADDR:PORT`).
        real: Option<std::net::SocketAddr>,
        /// The virtual service, when one is named.
        virt: Option<Named>,
    },
    /// `set-weight REAL [VIRTUAL] N|P%|reset`.
    SetWeight {
        /// The real server (`None`: missing, or not `ADDR:PORT`).
        real: Option<std::net::SocketAddr>,
        /// The virtual service, when one is named.
        virt: Option<Named>,
        /// The weight asked for (`None`: missing or not `N` (0..65535), `P%` (0..1000) or
        /// `reset`).
        hand: Option<crate::table::Hand>,
    },
    /// `reload`, alone on its line.
    Reload,
    /// `history [VIRTUAL [REAL]] [since=SECS] [json]`.
    History {
        /// The virtual service, when one is named.
        virt: Option<Named>,
        /// A real server was named after the virtual service, and what it parses to.
        real: Option<Option<std::net::SocketAddr>>,
        /// `since=SECS` (3,600 when absent or not a number).
        since_secs: u64,
        /// `json` was among the words.
        json: bool,
    },
    /// Anything else on the control socket (the reply quotes it).
    Unknown,
    /// `GET /metrics` (`head`: `HEAD /metrics`).
    Metrics {
        /// Only the head is wanted.
        head: bool,
    },
    /// `GET` (`head`: `HEAD`) of the status page: `/`, `/virtual/ID`, `/status.json`.
    Page {
        /// Which page.
        route: Route,
        /// Only the head is wanted.
        head: bool,
    },
    /// A method other than `GET` or `HEAD`.
    BadMethod,
    /// A path other than `/metrics`.
    NotFound,
}

impl Command {
    /// Parses the request `text` (without its line end) sent to server `kind`.
    pub fn parse(kind: Kind, text: &[u8]) -> Command {
        let (w, n) = words(text);
        match kind {
            Kind::Metrics => {
                let path = request_path(if n >= 2 { w[1] } else { b"" });
                let ours = path == b"/metrics" || path.starts_with(b"/metrics?");
                let page = route(text, path);
                if n >= 2 && (w[0] == b"HEAD" || w[0] == b"GET") && ours {
                    Command::Metrics {
                        head: w[0] == b"HEAD",
                    }
                } else if let (true, Some(route)) =
                    (n >= 2 && (w[0] == b"HEAD" || w[0] == b"GET"), page)
                {
                    Command::Page {
                        route,
                        head: w[0] == b"HEAD",
                    }
                } else if n >= 2 && w[0] != b"GET" && w[0] != b"HEAD" {
                    Command::BadMethod
                } else {
                    Command::NotFound
                }
            }
            Kind::Control => {
                let args = &w[1..n.max(1)];
                match (w[0], n) {
                    (b"status", _) => Command::Status {
                        json: args.contains(&&b"json"[..]),
                    },
                    (b"drain", _) | (b"undrain", _) => Command::Drain {
                        on: w[0] == b"drain",
                        real: args
                            .first()
                            .and_then(|a| std::str::from_utf8(a).ok().and_then(|s| s.parse().ok())),
                        virt: args.get(1).map(|a| Named::of(text, a)),
                    },
                    (b"set-weight", _) => {
                        let (virt, value) = match args.len() {
                            2 => (None, args.get(1)),
                            3 => (args.get(1), args.get(2)),
                            _ => (None, None),
                        };
                        Command::SetWeight {
                            real: args.first().and_then(|a| {
                                std::str::from_utf8(a).ok().and_then(|s| s.parse().ok())
                            }),
                            virt: virt.map(|a| Named::of(text, a)),
                            hand: value.and_then(|v| crate::table::Hand::parse(v)),
                        }
                    }
                    (b"reload", 1) => Command::Reload,
                    (b"history", _) => {
                        let mut since_secs = 3600u64;
                        let mut json = false;
                        let mut names: [&[u8]; 2] = [&[], &[]];
                        let mut k = 0;
                        for a in args {
                            if let Some(v) = a.strip_prefix(b"since=") {
                                since_secs = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|v| v.parse().ok())
                                    .unwrap_or(3600);
                            } else if *a == b"json" {
                                json = true;
                            } else if k < 2 {
                                names[k] = a;
                                k += 1;
                            }
                        }
                        Command::History {
                            virt: (k >= 1).then(|| Named::of(text, names[0])),
                            real: (k == 2).then(|| {
                                std::str::from_utf8(names[1])
                                    .ok()
                                    .and_then(|s| s.parse().ok())
                            }),
                            since_secs,
                            json,
                        }
                    }
                    _ => Command::Unknown,
                }
            }
        }
    }
}

/// What a request on the metrics address asks of the status page ([`crate::page`] renders
/// it; lvsmon(8), STATUS PAGE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/` (`/?page=N`, pages from 1).
    Overview {
        /// The page asked for (1 when absent or not a number).
        page: u32,
    },
    /// `/virtual/ID` (`?page=N`): ID is a virtual service as the logs write it, perhaps
    /// percent-encoded.
    Virtual {
        /// The ID in the request's text.
        id: Word,
        /// The page asked for.
        page: u32,
    },
    /// `/status.json`.
    Json,
}

/// The route of request target `path` (a slice of the request's `text`), if it is one of
/// the page's.
pub fn route(text: &[u8], path: &[u8]) -> Option<Route> {
    let (p, query) = match path.iter().position(|&b| b == b'?') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, &b""[..]),
    };
    let page = query
        .split(|&b| b == b'&')
        .find_map(|kv| kv.strip_prefix(b"page="))
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    if p == b"/" || p == b"/index.html" {
        Some(Route::Overview { page })
    } else if p == b"/status.json" {
        Some(Route::Json)
    } else {
        let id = p.strip_prefix(b"/virtual/")?;
        Some(Route::Virtual {
            id: Word::of(text, id),
            page,
        })
    }
}

/// The path of an HTTP request target: `/metrics` of `/metrics`, and of an absolute URI
/// (`http://host:port/metrics`); the query string is left on.
fn request_path(target: &[u8]) -> &[u8] {
    let scheme = target.iter().position(|&b| b == b':');
    match scheme {
        Some(i)
            if target[..i].eq_ignore_ascii_case(b"http")
                || target[..i].eq_ignore_ascii_case(b"https") =>
        {
            let rest = &target[i + 1..];
            let Some(auth) = rest.strip_prefix(b"//") else {
                return rest;
            };
            match auth.iter().position(|&b| b == b'/' || b == b'?') {
                Some(j) => &auth[j..],
                None => b"/",
            }
        }
        _ => target,
    }
}

/// The words of a command line (at most 8).
fn words(text: &[u8]) -> ([&[u8]; 8], usize) {
    let mut out: [&[u8]; 8] = [&[]; 8];
    let mut n = 0;
    for w in text
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty())
    {
        if n == out.len() {
            break;
        }
        out[n] = w;
        n += 1;
    }
    (out, n)
}

/// A virtual service as a client writes it: `tcp:10.0.0.1:80`, `udp:[2001:db8::1]:53`,
/// `sctp:...`, a bare `10.0.0.1:80` or `[2001:db8::1]:80` (TCP, as in the configuration's
/// `virtual tcp`), `fwmark:42` or `fwmark:0x2a`. The protocol is case-blind. Never allocates.
pub fn parse_virtual(id: &[u8]) -> Option<crate::config::ServiceKey> {
    use crate::config::{Proto, ServiceKey};
    let s = std::str::from_utf8(id).ok()?;
    let prefixed = |p: &str| {
        s.get(..p.len())
            .filter(|h| h.eq_ignore_ascii_case(p))
            .map(|_| &s[p.len()..])
    };
    if let Some(m) = prefixed("fwmark:") {
        let v = match m.strip_prefix("0x").or_else(|| m.strip_prefix("0X")) {
            Some(h) if h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(h, 16).ok()?
            }
            None if m.bytes().all(|b| b.is_ascii_digit()) => m.parse::<u32>().ok()?,
            _ => return None,
        };
        return (v > 0).then_some(ServiceKey::Fwmark(v));
    }
    let (proto, rest) = [
        ("tcp:", Proto::Tcp),
        ("udp:", Proto::Udp),
        ("sctp:", Proto::Sctp),
    ]
    .into_iter()
    .find_map(|(p, proto)| prefixed(p).map(|rest| (proto, rest)))
    .unwrap_or((Proto::Tcp, s));
    rest.parse::<std::net::SocketAddr>()
        .ok()
        .map(|a| ServiceKey::Inet(proto, a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Proto, ServiceKey};

    /// A reply of `calls` pieces of 1,000 bytes; notes the turn (`now`) of each call.
    struct Pieces {
        calls: u64,
        turns: std::cell::RefCell<Vec<Time>>,
    }

    impl Render for Pieces {
        fn apply(&mut self, _: &Command, _: &[u8], _: &mut u64, _: Time) {}
        fn render(
            &self,
            _: &Command,
            _: &[u8],
            c: &mut u64,
            out: &mut [u8],
            now: Time,
        ) -> (usize, bool) {
            self.turns.borrow_mut().push(now);
            out[..1000].fill(b'x');
            *c += 1;
            (1000, *c == self.calls)
        }
    }

    /// Runs loop turns (poll, events, tick) until the client has `want` bytes or the
    /// connection closed; the turns' `now` count up. Returns the bytes and the turns.
    fn turns(target: &str, r: &mut Pieces, want: usize) -> (usize, u64) {
        let mut poll = mio::Poll::new().unwrap();
        let mut server =
            Server::new(None, Some("127.0.0.1:0".parse().unwrap()), poll.registry()).unwrap();
        let mut client = std::net::TcpStream::connect(server.metrics_addr().unwrap()).unwrap();
        write!(client, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        client.set_nonblocking(true).unwrap();
        let mut events = mio::Events::with_capacity(16);
        let (mut got, mut buf) = (0, [0u8; 65536]);
        let start = std::time::Instant::now();
        for turn in 1..=2000u64 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "no end"
            );
            let now = Time(turn * 1000);
            // As the loop does: no wait when the server has work now, else until an event.
            let wait = match server.next_deadline() {
                Some(t) if t <= now => std::time::Duration::ZERO,
                _ => std::time::Duration::from_millis(50),
            };
            poll.poll(&mut events, Some(wait)).unwrap();
            for ev in &events {
                server.on_ready(ev.token(), poll.registry(), r, now);
            }
            server.tick(poll.registry(), r, now);
            loop {
                match client.read(&mut buf) {
                    Ok(0) => return (got, turn),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
            if got >= want {
                return (got, turn);
            }
        }
        panic!("no end");
    }

    /// A page renders once a loop turn, whatever the client takes, and goes on in the next
    /// turn without waiting for an event; `/metrics` renders as long as the socket takes it.
    #[test]
    fn a_page_renders_once_a_turn() {
        let mut r = Pieces {
            calls: 12,
            turns: Default::default(),
        };
        let (got, _) = turns("/virtual/tcp:10.0.0.1:80", &mut r, usize::MAX);
        assert_eq!(got, 12_000);
        let t = r.turns.borrow();
        assert_eq!(t.len(), 12);
        for w in t.windows(2) {
            assert!(w[0] < w[1], "two calls in one turn: {t:?}");
        }
        let mut r = Pieces {
            calls: 12,
            turns: Default::default(),
        };
        let (got, _) = turns("/metrics", &mut r, usize::MAX);
        assert_eq!(got, 12_000);
        let t = r.turns.borrow();
        assert_eq!(t.len(), 12);
        assert!(t.windows(2).any(|w| w[0] == w[1]), "{t:?}");
    }

    #[test]
    fn virtual_services_in_every_form_of_the_configuration() {
        let tcp = |a: &str| Some(ServiceKey::Inet(Proto::Tcp, a.parse().unwrap()));
        assert_eq!(parse_virtual(b"tcp:10.0.0.1:80"), tcp("10.0.0.1:80"));
        assert_eq!(parse_virtual(b"10.0.0.1:80"), tcp("10.0.0.1:80"));
        assert_eq!(parse_virtual(b"TCP:10.0.0.1:80"), tcp("10.0.0.1:80"));
        assert_eq!(parse_virtual(b"[2001:db8::1]:80"), tcp("[2001:db8::1]:80"));
        assert_eq!(
            parse_virtual(b"udp:[2001:db8::1]:53"),
            Some(ServiceKey::Inet(
                Proto::Udp,
                "[2001:db8::1]:53".parse().unwrap()
            ))
        );
        assert_eq!(
            parse_virtual(b"sctp:192.0.2.3:3868"),
            Some(ServiceKey::Inet(
                Proto::Sctp,
                "192.0.2.3:3868".parse().unwrap()
            ))
        );
        assert_eq!(parse_virtual(b"fwmark:42"), Some(ServiceKey::Fwmark(42)));
        assert_eq!(parse_virtual(b"fwmark:0x2a"), Some(ServiceKey::Fwmark(42)));
        for bad in [
            &b"fwmark:0"[..],
            b"fwmark:+4",
            b"fwmark:0x+4",
            b"fwmark:4294967296",
            b"fwmark:",
            b"tcp:10.0.0.1",
            b"10.0.0.1",
            b"2001:db8::1:80",
            b"icmp:10.0.0.1:80",
            b"\xff",
        ] {
            assert_eq!(
                parse_virtual(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn request_targets() {
        assert_eq!(request_path(b"/metrics"), b"/metrics");
        assert_eq!(request_path(b"http://h:9/metrics"), b"/metrics");
        assert_eq!(request_path(b"HTTP://h/metrics?x=1"), b"/metrics?x=1");
        assert_eq!(request_path(b"http://h:9?x"), b"?x");
        assert_eq!(request_path(b"http://h:9"), b"/");
        assert_eq!(request_path(b"ftp://h/metrics"), b"ftp://h/metrics");
    }

    fn sa(s: &str) -> std::net::SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn set_weight_parses() {
        use crate::table::Hand;
        let c = |t: &[u8]| Command::parse(Kind::Control, t);
        let hand = |t: &[u8]| match c(t) {
            Command::SetWeight { hand, .. } => hand,
            other => panic!("{other:?}"),
        };
        assert_eq!(hand(b"set-weight 10.0.0.5:80 7"), Some(Hand::Weight(7)));
        assert_eq!(hand(b"set-weight 10.0.0.5:80 0"), Some(Hand::Weight(0)));
        assert_eq!(
            hand(b"set-weight 10.0.0.5:80 65535"),
            Some(Hand::Weight(65_535))
        );
        assert_eq!(
            hand(b"set-weight 10.0.0.5:80 250%"),
            Some(Hand::Percent(250))
        );
        assert_eq!(hand(b"set-weight 10.0.0.5:80 reset"), Some(Hand::None));
        for bad in [
            &b"set-weight 10.0.0.5:80"[..],
            b"set-weight 10.0.0.5:80 65536",
            b"set-weight 10.0.0.5:80 1001%",
            b"set-weight 10.0.0.5:80 -1",
            b"set-weight 10.0.0.5:80 %",
            b"set-weight 10.0.0.5:80 5x",
            b"set-weight 10.0.0.5:80 tcp:10.0.0.1:80 1 2",
        ] {
            assert_eq!(hand(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let text = b"set-weight 10.0.0.5:80 tcp:10.0.0.1:80 50%";
        let Command::SetWeight { real, virt, hand } = c(text) else {
            panic!("{:?}", c(text))
        };
        assert_eq!(real, Some(sa("10.0.0.5:80")));
        assert_eq!(
            virt.unwrap().key,
            Some(ServiceKey::Inet(Proto::Tcp, sa("10.0.0.1:80")))
        );
        assert_eq!(hand, Some(Hand::Percent(50)));
    }

    #[test]
    fn control_commands_parse() {
        let c = |t: &[u8]| Command::parse(Kind::Control, t);
        assert_eq!(c(b"status"), Command::Status { json: false });
        assert_eq!(c(b"status  json"), Command::Status { json: true });
        assert_eq!(c(b"reload"), Command::Reload);
        // `reload` takes no argument: anything after it is not a reload.
        assert_eq!(c(b"reload now"), Command::Unknown);
        assert_eq!(c(b"frobnicate"), Command::Unknown);
        assert_eq!(c(b""), Command::Unknown);

        let text = b"drain 10.0.0.5:80 tcp:10.0.0.1:80";
        let Command::Drain { on, real, virt } = c(text) else {
            panic!("{:?}", c(text))
        };
        assert!(on);
        assert_eq!(real, Some(sa("10.0.0.5:80")));
        let v = virt.unwrap();
        assert_eq!(v.key, Some(ServiceKey::Inet(Proto::Tcp, sa("10.0.0.1:80"))));
        assert_eq!(v.word.bytes(text), b"tcp:10.0.0.1:80");
        // What does not parse is kept as written, for the error reply.
        let text = b"undrain\t[2001:db8::1]:443 bogus";
        let Command::Drain { on, real, virt } = c(text) else {
            panic!()
        };
        assert!(!on);
        assert_eq!(real, Some(sa("[2001:db8::1]:443")));
        let v = virt.unwrap();
        assert_eq!((v.key, v.word.bytes(text)), (None, &b"bogus"[..]));
        assert_eq!(
            c(b"drain nonsense"),
            Command::Drain {
                on: true,
                real: None,
                virt: None
            }
        );

        let text = b"history fwmark:42 10.0.0.5:80 since=60 json";
        let Command::History {
            virt,
            real,
            since_secs,
            json,
        } = c(text)
        else {
            panic!()
        };
        assert_eq!(virt.unwrap().key, Some(ServiceKey::Fwmark(42)));
        assert_eq!(real, Some(Some(sa("10.0.0.5:80"))));
        assert_eq!((since_secs, json), (60, true));
        assert_eq!(
            c(b"history since=x"),
            Command::History {
                virt: None,
                real: None,
                since_secs: 3600,
                json: false
            }
        );
        let Command::History { real, .. } = c(b"history tcp:10.0.0.1:80 nope") else {
            panic!()
        };
        assert_eq!(real, Some(None));
    }

    #[test]
    fn metrics_requests_parse() {
        let m = |t: &[u8]| Command::parse(Kind::Metrics, t);
        assert_eq!(
            m(b"GET /metrics HTTP/1.1"),
            Command::Metrics { head: false }
        );
        assert_eq!(
            m(b"HEAD /metrics?x=1 HTTP/1.0"),
            Command::Metrics { head: true }
        );
        assert_eq!(
            m(b"GET http://h:9/metrics HTTP/1.1"),
            Command::Metrics { head: false }
        );
        assert_eq!(m(b"POST /metrics HTTP/1.1"), Command::BadMethod);
        assert_eq!(m(b"GET /other HTTP/1.1"), Command::NotFound);
        assert_eq!(m(b"GET"), Command::NotFound);
    }
}
