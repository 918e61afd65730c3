//! Scripted TCP servers on loopback that misbehave on purpose, for lvsmon's integration tests.
//!
//! lvsmon names every failed check by layer (lvsmon(8), DECISIONS: `connect-refused`,
//! `connect-timeout`, `unreachable`, `reset`, `closed`, `recv-timeout`, `http-status`, ...).
//! The servers here produce each of those on demand, with real sockets and a real kernel:
//!
//! | server                                | what a checker sees                      |
//! |---------------------------------------|------------------------------------------|
//! | [`Backend`] + [`Script::http`]        | a well-formed HTTP/1.1 response, then FIN |
//! | [`Action::Reset`]                     | `ECONNRESET`                             |
//! | [`Action::Close`]                     | EOF (an orderly FIN, never an RST)       |
//! | [`Action::Hold`]                      | silence until its own timeout            |
//! | [`Action::Trickle`] / [`Action::Endless`] | slow or unbounded replies            |
//! | [`refused_addr`]                      | `ECONNREFUSED`                           |
//! | [`FullQueue`]                         | a connect that never completes           |
//! | [`Netns`] unreachable/prohibit routes | `EHOSTUNREACH` / `EACCES` at once        |
//!
//! Invariants every server keeps, so that no test can hang or leak:
//!
//! - Traffic stays on loopback or inside a namespace the test created.
//! - Every loop ends on a stop flag, on a deadline, or both: the accept loop polls its listener
//!   every [`POLL_SLICE`]; a connection polls its socket in slices of the same length and lives
//!   at most [`MAX_CONNECTION_LIFETIME`]; at most [`MAX_CONNECTIONS`] connection threads run at
//!   once, and a connection beyond that is closed at once.
//! - Dropping a server stops everything it started: set the stop flag, shut its sockets down,
//!   join its threads within [`STOP_WAIT`] (see [`Backend::stop`]), kill its processes by pid.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Most connection threads one [`Backend`] runs at once; a connection accepted beyond this is
/// closed at once (the checker sees EOF, or a reset if it had already sent data).
pub const MAX_CONNECTIONS: usize = 256;

/// A connection thread ends after this long whatever its script says, so that a `Hold` or an
/// `Endless` whose peer never closes cannot outlive a test binary by much.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How often blocked threads look at their stop flag: the longest a `poll(2)` waits.
pub const POLL_SLICE: Duration = Duration::from_millis(5);

/// How long [`Backend::stop`] waits for its threads before giving up on them.
pub const STOP_WAIT: Duration = Duration::from_secs(2);

/// Accept queue length of a [`Backend`]'s listener (the kernel caps it at
/// `net.core.somaxconn`).
const ACCEPT_BACKLOG: libc::c_int = 1024;

/// How long an orderly close keeps reading what the peer still sends (see [`Action::Close`]).
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// [`Action::Expect`] keeps at most this many unmatched bytes (plus the pattern length).
const EXPECT_WINDOW: usize = 1 << 20;

/// Fillers [`FullQueue`] connects at most before it gives up on filling the accept queue.
const MAX_FILLERS: usize = 64;

/// How long [`FullQueue`] waits for one filler's connect before it calls the queue full.
const FILLER_WAIT: Duration = Duration::from_millis(100);

/// How long one `ip` command may run.
const IP_TIMEOUT: Duration = Duration::from_secs(5);

/// The end of an HTTP/1.1 request head (RFC 9112 section 2.1).
pub const REQUEST_END: &[u8] = b"\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

/// One step of a [`Script`], run in order on each accepted connection.
///
/// A step that fails (the peer reset, the backend is stopping, the connection is older than
/// [`MAX_CONNECTION_LIFETIME`]) ends the connection at once and skips the rest of the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read until these bytes have been seen, or the peer closes its side. Bytes after the match
    /// stay buffered for the next `Expect`; an empty pattern matches at once. If the peer has
    /// closed, the script goes on (so a reply can still reach a half-closed peer).
    Expect(Vec<u8>),
    /// Write all of these bytes.
    Send(Vec<u8>),
    /// Write one byte, wait the period, write the next, ...: the first byte goes out at once and
    /// the last is not followed by a wait. `TCP_NODELAY` is set, so each byte is its own segment.
    Trickle(Vec<u8>, Duration),
    /// Do nothing for this long (the connection stays open, unread input piles up).
    Sleep(Duration),
    /// Orderly close: `shutdown(SHUT_WR)` sends FIN, then whatever the peer still sends is read
    /// and discarded until it closes too (at most [`CLOSE_LINGER`]), then the socket is closed.
    /// The reading matters: `close()` with unread input sends RST instead of FIN (RFC 1122
    /// 4.2.2.13; Linux `tcp_close`), and a checker would see `reset` where `closed` was meant.
    /// Ends the script. A script that runs out of actions closes this way too.
    Close,
    /// Abortive close: `SO_LINGER {l_onoff: 1, l_linger: 0}`, then `close()`: the kernel discards
    /// unsent data and sends RST, so the peer's next read fails with `ECONNRESET`. Ends the script.
    Reset,
    /// Stay silent and read nothing until the peer closes or resets, or the backend stops. Input
    /// piles up unread, so a peer that writes a lot eventually blocks, as with a hung server.
    Hold,
    /// Write this chunk again and again until the peer closes or resets (`EPIPE`/`ECONNRESET`)
    /// or the backend stops. An empty chunk behaves as [`Action::Hold`].
    Endless(Vec<u8>),
    /// Read and discard until the peer closes its side.
    Drain,
}

impl Action {
    /// `Action::Expect` from anything byte-like (`"GET "`, `b"\r\n\r\n"`).
    pub fn expect(bytes: impl Into<Vec<u8>>) -> Action {
        Action::Expect(bytes.into())
    }

    /// `Action::Send` from anything byte-like.
    pub fn send(bytes: impl Into<Vec<u8>>) -> Action {
        Action::Send(bytes.into())
    }
}

/// What a [`Backend`] does with each connection it accepts: its actions, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script(pub Vec<Action>);

impl Script {
    /// An HTTP/1.1 server: read the request head, answer with `status` and `body` (see
    /// [`http_response`]), close.
    pub fn http(status: u16, body: &str) -> Script {
        Script::raw(http_response(status, body))
    }

    /// Read the request head (up to the blank line), send `bytes` as they are, close. For
    /// malformed, truncated or oversized replies.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Script {
        Script(vec![
            Action::Expect(REQUEST_END.to_vec()),
            Action::Send(bytes.into()),
            Action::Close,
        ])
    }

    /// Greet with `line` at once (CRLF is appended unless `line` already ends with `\n`), then
    /// read and discard until the peer closes, like an SMTP or FTP server waiting for commands.
    pub fn banner(line: &str) -> Script {
        let mut bytes = line.as_bytes().to_vec();
        if !line.ends_with('\n') {
            bytes.extend_from_slice(b"\r\n");
        }
        Script(vec![Action::Send(bytes), Action::Drain])
    }
}

impl From<Vec<Action>> for Script {
    fn from(actions: Vec<Action>) -> Script {
        Script(actions)
    }
}

/// A complete HTTP/1.1 response (RFC 9112): status line with the usual reason phrase,
/// `Content-Type: text/plain`, `Content-Length` equal to the body's length in bytes,
/// `Connection: close`, blank line, body.
pub fn http_response(status: u16, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------------------------

/// A listening TCP server on loopback, port chosen by the kernel, running a [`Script`] on every
/// connection it accepts, each connection in its own thread.
///
/// Dropping it stops the accept loop, closes the listener (so the port then refuses), shuts
/// down every open connection and joins every thread within [`STOP_WAIT`].
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// `Some` until [`Backend::stop`] has joined (or given up on) the accept thread.
    acceptor: Option<JoinHandle<()>>,
}

/// State shared by a backend's handle, its accept thread and its connection threads.
struct Shared {
    stop: AtomicBool,
    script: Mutex<Arc<Script>>,
    accepted: AtomicU64,
    accept_times: Mutex<Vec<Instant>>,
    /// Connection threads running now; ≤ [`MAX_CONNECTIONS`].
    live: AtomicUsize,
    next_id: AtomicU64,
    /// A clone of each open connection, so that `stop` can shut it down. A connection removes
    /// its entry before closing its own descriptor, so that descriptor is the last one and its
    /// close really sends FIN or RST.
    conns: Mutex<HashMap<u64, TcpStream>>,
    /// Connection threads not yet joined; finished ones are pruned on every accept.
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Backend {
    /// Starts a backend on `127.0.0.1`, on a port the kernel picks.
    #[track_caller]
    pub fn start(script: Script) -> Backend {
        Backend::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), script)
    }

    /// Starts a backend on `addr`, e.g. `"[::1]:0".parse()?` or `"127.0.0.5:0"` (all of
    /// 127.0.0.0/8 is local on Linux).
    ///
    /// # Panics
    ///
    /// If `addr` cannot be bound.
    #[track_caller]
    pub fn start_on(addr: SocketAddr, script: Script) -> Backend {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        Backend::serve(listener, script)
    }

    /// Starts a backend listening on `addr` inside `netns`, for an lvsmon started there with
    /// [`Netns::run`]. Only the socket lives in the namespace: a short-lived thread joins it
    /// with `setns(2)` (which moves only the calling thread), binds, and exits; the accepted
    /// connections belong to the listener's namespace whatever thread serves them.
    ///
    /// # Panics
    ///
    /// If the namespace cannot be entered or `addr` cannot be bound in it.
    #[track_caller]
    pub fn start_in(netns: &Netns, addr: SocketAddr, script: Script) -> Backend {
        let path = netns.path();
        let bound = thread::scope(|s| {
            s.spawn(|| -> io::Result<TcpListener> {
                let ns = File::open(&path)?;
                // SAFETY: `ns` is an open namespace file; setns affects only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpListener::bind(addr)
            })
            .join()
        });
        match bound {
            Ok(Ok(listener)) => Backend::serve(listener, script),
            Ok(Err(e)) => panic!("bind {addr} in {}: {e}", netns.name()),
            Err(_) => panic!("bind {addr} in {}: thread panicked", netns.name()),
        }
    }

    fn serve(listener: TcpListener, script: Script) -> Backend {
        // std listens with a backlog of 128. A client that opens connections faster than a
        // starved accept thread takes them would see its SYNs dropped (see `FullQueue`) and
        // report a connect timeout that is the test's fault, so deepen the queue: a second
        // listen(2) on a listening socket just sets the new backlog (Linux `inet_listen`).
        // SAFETY: a valid listening socket.
        if unsafe { libc::listen(listener.as_raw_fd(), ACCEPT_BACKLOG) } != 0 {
            panic!("listen: {}", io::Error::last_os_error());
        }
        listener
            .set_nonblocking(true)
            .expect("set listener non-blocking");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            script: Mutex::new(Arc::new(script)),
            accepted: AtomicU64::new(0),
            accept_times: Mutex::new(Vec::new()),
            live: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("backend {addr}"))
            .spawn(move || accept_loop(listener, &for_thread))
            .expect("spawn accept thread");
        Backend {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The address the backend listens on, with its real port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, including those closed at once for being over
    /// [`MAX_CONNECTIONS`].
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// When each connection was accepted, in order (taken right after `accept` returned).
    pub fn accept_times(&self) -> Vec<Instant> {
        lock(&self.shared.accept_times).clone()
    }

    /// Connection threads running now.
    pub fn live_connections(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// Replaces the script for connections accepted from now on; connections already open
    /// finish the script they started with.
    pub fn set_script(&self, script: Script) {
        *lock(&self.shared.script) = Arc::new(script);
    }

    /// Waits until at least `n` connections have been accepted, at most `timeout`; returns
    /// whether they were.
    pub fn wait_accepted(&self, n: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.accepted() >= n)
    }

    /// Waits until no connection thread runs, at most `timeout`; returns whether none does.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.live_connections() == 0)
    }

    /// Stops the backend: sets the stop flag, joins the accept thread (which closes the
    /// listener, so connects to [`Backend::addr`] are refused from then on), shuts down every
    /// open connection and joins every connection thread, all within [`STOP_WAIT`]. Returns
    /// whether every thread finished in time and without a panic. Calling it again does
    /// nothing and returns `true`; `drop` calls it.
    pub fn stop(&mut self) -> bool {
        self.shared.stop.store(true, Ordering::SeqCst);
        let Some(acceptor) = self.acceptor.take() else {
            return true;
        };
        let deadline = Instant::now() + STOP_WAIT;
        let mut clean = join_by(acceptor, deadline);
        for stream in lock(&self.shared.conns).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let workers = mem::take(&mut *lock(&self.shared.workers));
        for worker in workers {
            clean &= join_by(worker, deadline);
        }
        clean
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if !self.stop() {
            eprintln!(
                "test backend {}: a thread panicked or outlived {STOP_WAIT:?}",
                self.addr
            );
        }
    }
}

/// Accepts until the stop flag is set, polling the listener every [`POLL_SLICE`]. The listener
/// is dropped (closed) when this returns.
fn accept_loop(listener: TcpListener, shared: &Arc<Shared>) {
    let fd = listener.as_raw_fd();
    while !shared.stop.load(Ordering::SeqCst) {
        if poll_fd(fd, libc::POLLIN, POLL_SLICE).is_err() {
            thread::sleep(POLL_SLICE);
            continue;
        }
        // Take what is queued now, a bounded burst at a time.
        for _ in 0..64 {
            match listener.accept() {
                Ok((stream, _)) => admit(shared, stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                // EMFILE, ENOBUFS, ...: the test process is short of something; retry later.
                Err(_) => break,
            }
        }
    }
}

/// Counts a freshly accepted connection and hands it to a thread of its own, or closes it
/// at once if the backend is stopping or already runs [`MAX_CONNECTIONS`] threads.
fn admit(shared: &Arc<Shared>, stream: TcpStream) {
    lock(&shared.accept_times).push(Instant::now());
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    if shared.stop.load(Ordering::SeqCst) || shared.live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
        return;
    }
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
    if let Ok(clone) = stream.try_clone() {
        lock(&shared.conns).insert(id, clone);
    }
    shared.live.fetch_add(1, Ordering::SeqCst);
    let script = Arc::clone(&lock(&shared.script));
    let conn = Conn {
        id,
        shared: Arc::clone(shared),
        stream,
        expires: Instant::now() + MAX_CONNECTION_LIFETIME,
        pending: Vec::new(),
        peer_closed: false,
    };
    // If the spawn fails, the closure and with it `conn` are dropped: the entry is removed,
    // `live` goes back down and the stream is closed.
    let spawned = thread::Builder::new()
        .name(format!("backend conn {id}"))
        .stack_size(256 * 1024)
        .spawn(move || conn.run(&script));
    if let Ok(handle) = spawned {
        let mut workers = lock(&shared.workers);
        workers.retain(|w| !w.is_finished());
        workers.push(handle);
    }
}

/// Why a connection ended early. Only for reading in a debugger; every variant ends the
/// connection the same way.
#[derive(Debug)]
enum End {
    /// The backend is stopping.
    Stopped,
    /// The connection is older than [`MAX_CONNECTION_LIFETIME`] (or [`CLOSE_LINGER`] passed).
    Expired,
    /// A socket call failed: the peer reset, or wrote after we shut down, ...
    Io(io::ErrorKind),
}

/// How a script ends when it does not fail.
enum Finish {
    Continue,
    Close,
    Reset,
}

/// One accepted connection running its script. The socket is non-blocking; every wait is a
/// `poll(2)` of at most [`POLL_SLICE`] followed by a look at the stop flag and `expires`.
struct Conn {
    id: u64,
    shared: Arc<Shared>,
    stream: TcpStream,
    /// No wait goes past this instant.
    expires: Instant,
    /// Read but not yet consumed by an `Expect`.
    pending: Vec<u8>,
    /// The peer has shut down its side (a read returned 0, or poll said `POLLRDHUP`).
    peer_closed: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The registry's clone goes first, so that dropping `stream` (after this body) closes
        // the last descriptor of the socket and the kernel sends FIN or RST now.
        lock(&self.shared.conns).remove(&self.id);
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    fn run(mut self, script: &Script) {
        for action in &script.0 {
            match self.step(action) {
                Ok(Finish::Continue) => {}
                Ok(Finish::Close) => break,
                Ok(Finish::Reset) => return self.reset(),
                Err(_) => return,
            }
        }
        self.close();
    }

    fn step(&mut self, action: &Action) -> Result<Finish, End> {
        match action {
            Action::Expect(pattern) => self.expect(pattern)?,
            Action::Send(bytes) => self.write_all(bytes)?,
            Action::Trickle(bytes, period) => {
                for (i, byte) in bytes.iter().enumerate() {
                    if i > 0 {
                        self.sleep(*period)?;
                    }
                    self.write_all(std::slice::from_ref(byte))?;
                }
            }
            Action::Sleep(duration) => self.sleep(*duration)?,
            Action::Close => return Ok(Finish::Close),
            Action::Reset => return Ok(Finish::Reset),
            Action::Hold => self.hold()?,
            Action::Endless(chunk) if chunk.is_empty() => self.hold()?,
            Action::Endless(chunk) => loop {
                // A fast reader never makes write_all wait, so look at the flags here too.
                self.check()?;
                self.write_all(chunk)?;
            },
            Action::Drain => self.drain()?,
        }
        Ok(Finish::Continue)
    }

    /// Fails if the backend is stopping or the connection has expired.
    fn check(&self) -> Result<(), End> {
        if self.shared.stop.load(Ordering::SeqCst) {
            Err(End::Stopped)
        } else if Instant::now() >= self.expires {
            Err(End::Expired)
        } else {
            Ok(())
        }
    }

    /// Waits until the socket reports one of `events` (or an error or hangup, which `poll`
    /// always reports); returns the reported events.
    fn wait(&self, events: libc::c_short) -> Result<libc::c_short, End> {
        loop {
            self.check()?;
            let slice = POLL_SLICE.min(self.expires.saturating_duration_since(Instant::now()));
            match poll_fd(self.stream.as_raw_fd(), events, slice) {
                Ok(0) => {}
                Ok(revents) => return Ok(revents),
                Err(e) => return Err(End::Io(e.kind())),
            }
        }
    }

    fn sleep(&self, duration: Duration) -> Result<(), End> {
        let until = Instant::now() + duration;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            thread::sleep(POLL_SLICE.min(until - now));
        }
    }

    /// Reads what is there (waiting if nothing is); 0 means the peer closed its side.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, End> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLIN)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Io(e.kind())),
            }
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), End> {
        while !bytes.is_empty() {
            // std sends with MSG_NOSIGNAL: a closed peer gives EPIPE, not SIGPIPE.
            match self.stream.write(bytes) {
                Ok(0) => return Err(End::Io(io::ErrorKind::WriteZero)),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait(libc::POLLOUT)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::Io(e.kind())),
            }
        }
        Ok(())
    }

    fn expect(&mut self, pattern: &[u8]) -> Result<(), End> {
        if pattern.is_empty() {
            return Ok(());
        }
        let mut buf = [0u8; 4096];
        // Everything before `searched` has been searched already (a match may still start
        // in its last `pattern.len() - 1` bytes).
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(pattern.len() - 1);
            if let Some(at) = find(&self.pending[from..], pattern) {
                self.pending.drain(..from + at + pattern.len());
                return Ok(());
            }
            if self.peer_closed {
                self.pending.clear();
                return Ok(());
            }
            if self.pending.len() > EXPECT_WINDOW {
                let cut = self.pending.len() - (pattern.len() - 1);
                self.pending.drain(..cut);
            }
            searched = self.pending.len();
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                self.peer_closed = true;
            } else {
                self.pending.extend_from_slice(&buf[..n]);
            }
        }
    }

    /// Waits, reading nothing, until the peer closes or resets.
    fn hold(&mut self) -> Result<(), End> {
        while !self.peer_closed {
            // POLLRDHUP, not POLLIN: report the peer's FIN even with unread input queued, and
            // do not wake for that input. POLLHUP/POLLERR (a reset) are always reported.
            let revents = self.wait(libc::POLLRDHUP)?;
            let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
            if revents & gone != 0 {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    /// Reads and discards until the peer closes its side.
    fn drain(&mut self) -> Result<(), End> {
        self.pending.clear();
        let mut buf = [0u8; 16 * 1024];
        while !self.peer_closed {
            if self.read_some(&mut buf)? == 0 {
                self.peer_closed = true;
            }
        }
        Ok(())
    }

    /// See [`Action::Close`].
    fn close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        self.expires = self.expires.min(Instant::now() + CLOSE_LINGER);
        let _ = self.drain();
    }

    /// See [`Action::Reset`].
    fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a correctly sized `linger`.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        // Dropping `self` closes the socket: RST.
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Refused connects
// ---------------------------------------------------------------------------------------------

/// Keeps a port taken; dropping it closes the socket and frees the port.
pub struct Guard {
    _socket: OwnedFd,
}

/// An address on `127.0.0.1` where every connect is refused (`ECONNREFUSED`).
///
/// See [`refused_addr_on`].
#[track_caller]
pub fn refused_addr() -> (SocketAddr, Guard) {
    refused_addr_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// An address on `ip` (a loopback address) where every connect is refused: a TCP socket bound
/// to a kernel-chosen port that never listens. A SYN to a port with no listener is answered
/// with RST, which the connecting side reports as `ECONNREFUSED`.
///
/// The socket sits in the returned [`Guard`], so the port stays taken: `SO_REUSEADDR` is off,
/// so nobody else can bind it (sharing a port needs the option on both sockets), and the kernel
/// skips it when picking ephemeral source ports for connects.
///
/// # Panics
///
/// If the socket cannot be created or bound.
#[track_caller]
pub fn refused_addr_on(ip: IpAddr) -> (SocketAddr, Guard) {
    let want = SocketAddr::new(ip, 0);
    let bound = new_socket(&want, 0).and_then(|socket| {
        bind_fd(socket.as_raw_fd(), &want)?;
        Ok((local_addr_of(socket.as_raw_fd())?, socket))
    });
    let (addr, socket) = bound.unwrap_or_else(|e| panic!("refused address on {ip}: {e}"));
    (addr, Guard { _socket: socket })
}

// ---------------------------------------------------------------------------------------------
// A full accept queue
// ---------------------------------------------------------------------------------------------

/// A listener whose accept queue is full, so that a connect to it neither completes nor fails:
/// the checker's connect times out (`connect-timeout`).
///
/// How: a socket listens with backlog 0 and never accepts; then [`FullQueue::new`] itself
/// connects non-blocking "filler" sockets to it, one at a time, until a connect does not
/// complete within 100 ms (at most 64 fillers; with backlog 0, Linux queues one connection,
/// since it calls the queue full only when it holds *more* than the backlog).
///
/// Kernel behaviour relied on (Linux `tcp_conn_request`, `tcp_check_req`):
///
/// - While the accept queue is full, an incoming SYN is dropped without an answer (counted as
///   `TcpExtListenOverflows` in `nstat`). The client retransmits after its initial RTO (1 s),
///   then 3 s, 7 s, ..., and each retransmission is dropped again while the queue stays full.
/// - SYN cookies do not help: they stand in for a full *SYN* (request) queue; the accept-queue
///   check comes after and drops the SYN whatever `net.ipv4.tcp_syncookies` says.
/// - `net.ipv4.tcp_abort_on_overflow` must be 0 (the default). With 1, a handshake completing
///   into a full queue is answered with RST, which a checker would see as a reset.
///
/// Dropping it closes the fillers and the listener.
pub struct FullQueue {
    addr: SocketAddr,
    _listener: OwnedFd,
    fillers: Vec<OwnedFd>,
}

impl FullQueue {
    /// A full queue on `127.0.0.1`.
    #[track_caller]
    pub fn new() -> FullQueue {
        FullQueue::new_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// A full queue on `ip` (a loopback address).
    ///
    /// # Panics
    ///
    /// If a socket call fails, if a filler's connect fails outright, or if the queue is not
    /// full after 64 fillers.
    #[track_caller]
    pub fn new_on(ip: IpAddr) -> FullQueue {
        FullQueue::try_new_on(ip).unwrap_or_else(|e| panic!("full accept queue on {ip}: {e}"))
    }

    fn try_new_on(ip: IpAddr) -> io::Result<FullQueue> {
        let want = SocketAddr::new(ip, 0);
        let listener = new_socket(&want, 0)?;
        bind_fd(listener.as_raw_fd(), &want)?;
        // SAFETY: a valid socket.
        if unsafe { libc::listen(listener.as_raw_fd(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let addr = local_addr_of(listener.as_raw_fd())?;
        let mut fillers = Vec::new();
        for _ in 0..MAX_FILLERS {
            let filler = new_socket(&addr, libc::SOCK_NONBLOCK)?;
            if connect_started(filler.as_raw_fd(), &addr)? {
                let revents = poll_fd(filler.as_raw_fd(), libc::POLLOUT, FILLER_WAIT)?;
                if revents == 0 {
                    // This SYN was dropped: the queue is full. The pending filler is closed.
                    if fillers.is_empty() {
                        return Err(io::Error::other(
                            "the first connect did not complete in 100 ms",
                        ));
                    }
                    return Ok(FullQueue {
                        addr,
                        _listener: listener,
                        fillers,
                    });
                }
                let err = so_error(filler.as_raw_fd())?;
                if err != 0 {
                    return Err(io::Error::from_raw_os_error(err));
                }
            }
            fillers.push(filler);
        }
        Err(io::Error::other(format!(
            "accept queue not full after {MAX_FILLERS} connections"
        )))
    }

    /// The address whose connects time out.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections fill the queue.
    pub fn fillers(&self) -> usize {
        self.fillers.len()
    }
}

// ---------------------------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------------------------

static NETNS_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace of its own (`ip netns add lvsmon-test-<pid>-<n>`) with `lo` up, for
/// failures that need routing changes: [`Netns::add_unreachable_route`] makes connects fail
/// at once with `EHOSTUNREACH` (lvsmon's `unreachable`), which loopback alone cannot produce.
///
/// Routes apply only inside the namespace, so lvsmon has to run there: start it with
/// [`Netns::run`], and give it backends with [`Backend::start_in`].
///
/// Needs root and `ip` from iproute2: call [`Netns::available`] first and skip with a notice
/// when it says no. Dropping it kills (SIGKILL, by pid) each process started with `run` that is
/// still in the namespace, then deletes the namespace.
pub struct Netns {
    name: String,
    /// Pids of processes started by [`Netns::run`] and not known to be reaped.
    children: Mutex<Vec<u32>>,
}

impl Netns {
    /// Whether namespaces can be made here: running as root, and creating and deleting one
    /// really works (it is tried once per process).
    pub fn available() -> bool {
        static PROBE: OnceLock<bool> = OnceLock::new();
        // SAFETY: geteuid cannot fail.
        *PROBE.get_or_init(|| unsafe { libc::geteuid() } == 0 && Netns::create().is_ok())
    }

    /// A new namespace (as [`Netns::new`]) where they can be made; elsewhere `None`, saying
    /// that the test is skipped.
    #[track_caller]
    pub fn new_or_skip() -> Option<Netns> {
        if Netns::available() {
            Some(Netns::new())
        } else {
            eprintln!("skipped: network namespaces need root and `ip` (iproute2)");
            None
        }
    }

    /// Creates a namespace with `lo` up.
    ///
    /// # Panics
    ///
    /// If `ip` fails; check [`Netns::available`] first.
    #[track_caller]
    pub fn new() -> Netns {
        Netns::create().unwrap_or_else(|e| panic!("network namespace: {e}"))
    }

    fn create() -> io::Result<Netns> {
        let name = format!(
            "lvsmon-test-{}-{}",
            std::process::id(),
            NETNS_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name])?;
        // From here on, dropping `netns` deletes the namespace.
        let netns = Netns {
            name,
            children: Mutex::new(Vec::new()),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file `ip netns` keeps, for `setns(2)`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <name> <args>` (at most 5 s).
    ///
    /// # Errors
    ///
    /// If `ip` cannot be run, times out or exits non-zero (the error carries its stderr).
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    #[track_caller]
    fn ip_or_panic(&self, args: &[&str]) {
        if let Err(e) = self.ip(args) {
            panic!("{e}");
        }
    }

    /// Adds an address to `lo`, e.g. `"10.0.0.1/32"` or `"fd00::1/128"`.
    #[track_caller]
    pub fn add_addr(&self, cidr: &str) {
        self.ip_or_panic(&["addr", "add", cidr, "dev", "lo"]);
    }

    /// `ip route add unreachable <cidr>`: connects to it fail at once with `EHOSTUNREACH`
    /// ("No route to host"). IPv4 or IPv6.
    #[track_caller]
    pub fn add_unreachable_route(&self, cidr: &str) {
        self.ip_or_panic(&["route", "add", "unreachable", cidr]);
    }

    /// `ip route add prohibit <cidr>`: connects to it fail at once with `EACCES`
    /// ("Permission denied"), as when a router answers ICMP "administratively prohibited".
    #[track_caller]
    pub fn add_prohibit_route(&self, cidr: &str) {
        self.ip_or_panic(&["route", "add", "prohibit", cidr]);
    }

    /// `ip route add blackhole <cidr>`: connects to it fail at once with `EINVAL` (they do not
    /// time out, whatever the name suggests).
    #[track_caller]
    pub fn add_blackhole_route(&self, cidr: &str) {
        self.ip_or_panic(&["route", "add", "blackhole", cidr]);
    }

    /// Starts `argv` inside the namespace (`ip netns exec <name> argv...`; `ip` execs the
    /// program, so the child's pid is the program's), stdin from `/dev/null`, stdout and stderr
    /// inherited. Drop kills it if it is still there.
    ///
    /// # Panics
    ///
    /// If `argv` is empty or `ip` cannot be started.
    #[track_caller]
    pub fn run(&self, argv: &[&str]) -> Child {
        assert!(!argv.is_empty(), "Netns::run needs a program");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} {argv:?}: {e}", self.name));
        lock(&self.children).push(child.id());
        child
    }

    /// Runs `argv` inside the namespace to completion and returns its status and output; a
    /// program still running after `timeout` is killed.
    ///
    /// # Panics
    ///
    /// If `argv` is empty or `ip` cannot be started.
    #[track_caller]
    pub fn run_output(&self, argv: &[&str], timeout: Duration) -> Output {
        assert!(!argv.is_empty(), "Netns::run_output needs a program");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).args(argv);
        run_bounded(&mut cmd, timeout)
            .unwrap_or_else(|e| panic!("ip netns exec {} {argv:?}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let children = mem::take(&mut *lock(&self.children));
        if !children.is_empty() {
            // Kill only pids that are still in this namespace: a child the test has already
            // reaped may have had its pid reused by an unrelated process.
            let mut pids = Command::new("ip");
            pids.args(["netns", "pids", &self.name]);
            if let Ok(out) = run_bounded(&mut pids, IP_TIMEOUT) {
                let inside = String::from_utf8_lossy(&out.stdout);
                for pid in inside.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                    if children.contains(&pid) {
                        // SAFETY: plain kill(2) of a process this value started.
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    }
                }
            }
        }
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("deleting network namespace {}: {e}", self.name);
        }
    }
}

/// Runs `ip args...` (at most [`IP_TIMEOUT`]).
fn ip(args: &[&str]) -> io::Result<()> {
    let out = run_bounded(Command::new("ip").args(args), IP_TIMEOUT)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        )))
    }
}

/// Runs `cmd` with stdin from `/dev/null` and stdout and stderr captured, killing it after
/// `timeout`.
fn run_bounded(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    // A program that fills a pipe blocks until killed at the deadline; that is still bounded.
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    child.wait_with_output()
}

// ---------------------------------------------------------------------------------------------
// Small helpers over libc and std
// ---------------------------------------------------------------------------------------------

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the backend's own bookkeeping.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Polls every millisecond until `done` or `timeout`; returns `done()`.
fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Joins `handle` if it finishes by `deadline`; otherwise leaves it running (detached).
/// Returns whether it finished without panicking.
fn join_by(handle: JoinHandle<()>, deadline: Instant) -> bool {
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    handle.join().is_ok()
}

/// `poll(2)` on one descriptor for at most `timeout` (rounded up to whole milliseconds);
/// returns the reported events, 0 on timeout. Retries on `EINTR` within the same deadline.
fn poll_fd(fd: RawFd, events: libc::c_short, timeout: Duration) -> io::Result<libc::c_short> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n >= 0 {
            return Ok(if n == 0 { 0 } else { pfd.revents });
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted || Instant::now() >= deadline {
            return Err(err);
        }
    }
}

/// A TCP socket of `addr`'s family, close-on-exec, plus `flags` (e.g. `SOCK_NONBLOCK`).
fn new_socket(addr: &SocketAddr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | flags, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_fd(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let rc = unsafe { libc::bind(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Starts a connect on a non-blocking socket; `Ok(true)` if it is in progress, `Ok(false)` if
/// it completed at once.
fn connect_started(fd: RawFd, addr: &SocketAddr) -> io::Result<bool> {
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: `storage` holds a sockaddr of `len` bytes.
    let rc = unsafe { libc::connect(fd, (&storage as *const libc::sockaddr_storage).cast(), len) };
    if rc == 0 {
        return Ok(false);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINPROGRESS) {
        Ok(true)
    } else {
        Err(err)
    }
}

/// The pending error of a socket (`SO_ERROR`), 0 if none.
fn so_error(fd: RawFd) -> io::Result<libc::c_int> {
    let mut err: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` describe a c_int buffer.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(err)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn local_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` has room for `len` bytes.
    let rc = unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    from_sockaddr(&storage)
}

fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage, sockaddr_in and sockaddr_in6.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_scope_id = v6.scope_id();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe {
                (&mut storage as *mut libc::sockaddr_storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6)
            };
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    let ptr = storage as *const libc::sockaddr_storage;
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*ptr.cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe { &*ptr.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        family => Err(io::Error::other(format!("address family {family}"))),
    }
}
