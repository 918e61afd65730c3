//! Log output: logfmt lines built in a fixed buffer, so that logging never allocates, and
//! sent so that logging never blocks the loop and lines never interleave or get cut.
//!
//! A line is begun with [`Log::line`], filled with `write!` (which writes into the fixed
//! buffer: integers, addresses and `&str` format without touching the heap) and sent by
//! [`Line`]'s `Drop`. A line longer than the buffer is cut and ends in `...`.
//!
//! On stderr each line starts with `ts=` and the UTC wall-clock time in RFC 3339 form, so
//! the whole line is logfmt. The wall clock is used only for this stamp; every decision the
//! daemon makes runs on the monotonic clock (`crate::clock`). With `--log syslog` lines go
//! as datagrams to `/dev/log` with a `<PRI>lvsmon[PID]: ` prefix and no stamp (syslog adds
//! its own).
//!
//! # A reader that stops reading
//!
//! Whoever reads stderr (a pipe to a logger, a terminal, systemd's journal stream) may stop
//! reading for a while. The daemon must go on checking meanwhile, so a line is never written
//! with a blocking `write(2)`:
//!
//! - Each line goes into a ring of [`RING_CAP`] bytes, allocated once at startup, and is
//!   written from there at once when the descriptor takes it. Writes are whole lines, at most
//!   [`CHUNK`] (`PIPE_BUF`) bytes at a time, so a write to a pipe is atomic: a line is never
//!   cut, nor interleaved with another writer's. Where a descriptor takes part of a write (a
//!   terminal, a stream socket), the rest follows exactly where it stopped.
//! - The descriptor is made non-blocking without touching the one the daemon inherited: the
//!   `O_NONBLOCK` flag lives on the open file description, which the shell, systemd or other
//!   processes share. So, by the type of fd 2 at startup:
//!   a pipe, FIFO or terminal is reopened through `/proc/self/fd/2`, which on Linux gives an
//!   open file description of our own, opened non-blocking; a socket (the journal) is written
//!   with `send(MSG_DONTWAIT)`, non-blocking per call; a regular file or another device is
//!   written as it is (it does not fill up and wait for a reader); a pipe that cannot be
//!   reopened (no `/proc`) is written only when `poll` says there is room, which for whole
//!   lines of at most `PIPE_BUF` bytes means the write does not block.
//! - When the descriptor is full, the lines wait in the ring, and the loop writes them when
//!   epoll says the descriptor is writable again ([`Log::register`], [`Log::on_writable`]).
//!   When the ring is full too, each new line is dropped and counted ([`Log::dropped`],
//!   `lvsmon_log_dropped_total`); dropping goes on until the ring has emptied to half, and
//!   then one line `msg="log lines dropped" count=N` stands in for the N lines lost, in the
//!   place where they were.
//! - At exit, and before a fatal startup error is printed, what is in the ring is written
//!   with a bounded wait ([`EXIT_FLUSH`], [`Log::drain`]). Before the loop runs
//!   ([`Log::loop_started`]), a line that finds the ring full waits for the reader too (once
//!   at most [`EXIT_FLUSH`]). Output that can wait, the SIGUSR1 status dump, goes on only
//!   while [`Log::has_room`], so none of it is dropped.
//!
//! With syslog each line is one datagram, sent on a non-blocking socket of our own: a line
//! the syslog daemon has no room for is dropped and counted the same way, and the next line
//! that can be sent is preceded by the `log lines dropped` line. A syslog daemon that
//! restarts binds a new socket at the path: the socket is connected to it again, at most
//! once a [`SYSLOG_RETRY`], and lines sent while it was away are dropped and told the same
//! way (see `Redial`). The socket is a datagram one, as `/dev/log` is with journald,
//! rsyslog and syslog-ng: a stream socket there refuses the connect at startup
//! (`EPROTOTYPE`), and the daemon does not start.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::clock::{Clock, Time};

/// How important a line is. `-q` shows errors only, the default adds notices (events, IPVS
/// changes, start and stop), `-v` adds every check result, `-vv` adds debugging detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something an operator should look at.
    Warn = 1,
    /// Events, IPVS changes, start and stop.
    Notice = 2,
    /// Every check result.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
}

impl Level {
    fn syslog_priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Notice => 5,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// Where lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard error.
    Stderr,
    /// Another descriptor, handled as stderr is (by its type): tests give a pipe they stop
    /// reading.
    Fd(OwnedFd),
    /// The local syslog socket, connected at startup (facility daemon).
    Syslog(UnixDatagram),
    /// Nowhere (tests and benchmarks).
    Null,
}

/// The local syslog socket.
pub const SYSLOG_PATH: &str = "/dev/log";

/// Size of the line buffer.
pub const LINE_CAP: usize = 2048;

/// Bytes of lines kept while the reader of stderr does not read, allocated once at startup:
/// about 1,500 lines of checks, 7 s of `-v` at 200 checks a second.
pub const RING_CAP: usize = 256 * 1024;

/// The most written at once: whole lines up to `PIPE_BUF`, so that a write to a pipe is
/// atomic (all of it or nothing).
pub const CHUNK: usize = libc::PIPE_BUF;

/// At exit, how long the ring may wait for the reader.
pub const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// How lines reach a descriptor, chosen by its type at startup (see the module notes).
#[derive(Debug)]
enum Out {
    /// No ring: nowhere, or syslog.
    None,
    /// A pipe, FIFO or terminal reopened non-blocking: an open file description of our own.
    Own(OwnedFd),
    /// A socket: `send(MSG_DONTWAIT)`.
    Socket(RawFd),
    /// A pipe that could not be reopened: written when `poll` says there is room.
    Polled(RawFd),
    /// A regular file or another device: written as it is.
    Plain(RawFd),
}

impl Out {
    fn for_fd(fd: RawFd) -> Out {
        // SAFETY: fstat writes into the stat we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Out::Plain(fd);
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFSOCK {
            return Out::Socket(fd);
        }
        // SAFETY: isatty only inspects the descriptor.
        let tty = kind == libc::S_IFCHR && unsafe { libc::isatty(fd) } == 1;
        if kind != libc::S_IFIFO && !tty {
            return Out::Plain(fd);
        }
        match reopen(fd, &st) {
            Some(own) => Out::Own(own),
            None if kind == libc::S_IFIFO => Out::Polled(fd),
            None => Out::Plain(fd),
        }
    }

    /// The descriptor to wait on, if writes to it can find it full.
    fn pollable(&self) -> Option<RawFd> {
        match self {
            Out::Own(f) => Some(f.as_raw_fd()),
            Out::Socket(fd) | Out::Polled(fd) => Some(*fd),
            Out::None | Out::Plain(_) => None,
        }
    }

    /// Writes `a` then `b` without blocking; returns how much was taken.
    fn write(&self, a: &[u8], b: &[u8]) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: a.as_ptr() as *mut libc::c_void,
                iov_len: a.len(),
            },
            libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            },
        ];
        let cnt = if b.is_empty() { 1 } else { 2 };
        let n = match self {
            Out::None => return Ok(a.len() + b.len()),
            // SAFETY: the iovecs point into live slices.
            Out::Own(f) => unsafe { libc::writev(f.as_raw_fd(), iov.as_ptr(), cnt) },
            Out::Plain(fd) => unsafe { libc::writev(*fd, iov.as_ptr(), cnt) },
            Out::Polled(fd) => {
                let mut p = libc::pollfd {
                    fd: *fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one pollfd we own; zero timeout.
                if unsafe { libc::poll(&mut p, 1, 0) } <= 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                // SAFETY: as above.
                unsafe { libc::writev(*fd, iov.as_ptr(), cnt) }
            }
            Out::Socket(fd) => {
                // SAFETY: a zeroed msghdr is valid; it points at our iovecs.
                let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
                m.msg_iov = iov.as_ptr() as *mut libc::iovec;
                m.msg_iovlen = cnt as _;
                // SAFETY: as above.
                unsafe { libc::sendmsg(*fd, &m, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) }
            }
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Opens `/proc/self/fd/FD` for writing, non-blocking: for a pipe, FIFO or terminal a new
/// open file description of the same object. `None` when that fails (no `/proc`, a FIFO
/// without a reader, no permission) or gives another object.
fn reopen(fd: RawFd, st: &libc::stat) -> Option<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))
        .ok()?;
    // SAFETY: fstat writes into the stat we own.
    let mut again: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(f.as_raw_fd(), &mut again) } != 0
        || (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
    {
        return None;
    }
    Some(f.into())
}

/// Bytes waiting to be written, oldest first, always whole lines (but for the rest of one
/// that a descriptor took in part).
#[derive(Debug)]
struct Ring {
    data: Box<[u8]>,
    head: usize,
    len: usize,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            data: vec![0; cap].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    fn cap(&self) -> usize {
        self.data.len()
    }

    fn free(&self) -> usize {
        self.cap() - self.len
    }

    /// Appends all of `b`, or nothing when it does not fit.
    fn push(&mut self, b: &[u8]) -> bool {
        if b.len() > self.free() || b.is_empty() {
            return b.is_empty();
        }
        let cap = self.cap();
        let tail = (self.head + self.len) % cap;
        let first = b.len().min(cap - tail);
        self.data[tail..tail + first].copy_from_slice(&b[..first]);
        self.data[..b.len() - first].copy_from_slice(&b[first..]);
        self.len += b.len();
        true
    }

    /// The oldest bytes, at most `max`, in one or two pieces (the ring wraps), ending after a
    /// newline when one is among them.
    fn front(&self, max: usize) -> (&[u8], &[u8]) {
        let n = self.len.min(max);
        let first = n.min(self.cap() - self.head);
        let a = &self.data[self.head..self.head + first];
        let b = &self.data[..n - first];
        let keep = if let Some(i) = b.iter().rposition(|&c| c == b'\n') {
            first + i + 1
        } else if let Some(i) = a.iter().rposition(|&c| c == b'\n') {
            i + 1
        } else {
            n
        };
        if keep <= first {
            (&a[..keep], &[])
        } else {
            (a, &b[..keep - first])
        }
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.cap()
        };
    }
}

/// The logger. Owned by the daemon; passed by `&mut` to whatever logs.
#[derive(Debug)]
pub struct Log {
    buf: Box<[u8; LINE_CAP]>,
    len: usize,
    truncated: bool,
    max: Level,
    sink: Sink,
    pid: u32,
    out: Out,
    ring: Ring,
    /// Registered with the loop's poll for writability.
    registered: bool,
    /// The descriptor was full: nothing is tried until the loop says it is writable.
    waiting: bool,
    /// Lines dropped since startup.
    dropped: u64,
    /// Lines dropped since the last `log lines dropped` line; new lines are dropped while
    /// this is not 0, until the ring has room again for that line.
    gap: u64,
    /// Before the loop runs: a line that finds the ring full waits for room (at most
    /// [`EXIT_FLUSH`]) rather than being dropped; off for good after [`Log::loop_started`]
    /// or after one such wait in vain.
    wait_when_full: bool,
    /// With syslog: connecting again to a syslog daemon that went away.
    redial: Redial,
}

impl Log {
    /// A logger that shows lines up to `max` and writes them to `sink`.
    pub fn new(sink: Sink, max: Level) -> Log {
        Log::with_ring(sink, max, RING_CAP)
    }

    /// As [`Log::new`], with a ring of `cap` bytes (at least [`LINE_CAP`]) instead of
    /// [`RING_CAP`]: tests that fill it quickly.
    pub fn with_ring(sink: Sink, max: Level, cap: usize) -> Log {
        let out = match &sink {
            Sink::Stderr => Out::for_fd(2),
            Sink::Fd(fd) => Out::for_fd(fd.as_raw_fd()),
            Sink::Syslog(_) | Sink::Null => Out::None,
        };
        let cap = if matches!(out, Out::None) {
            0
        } else {
            cap.max(LINE_CAP)
        };
        Log {
            buf: Box::new([0; LINE_CAP]),
            len: 0,
            truncated: false,
            max,
            sink,
            pid: std::process::id(),
            out,
            ring: Ring::new(cap),
            registered: false,
            waiting: false,
            dropped: 0,
            gap: 0,
            wait_when_full: true,
            redial: Redial {
                addr: None,
                down: false,
                next_try: Time::ZERO,
                tries: 0,
                clock: Clock::new(),
            },
        }
    }

    /// Connects to `/dev/log` for `--log syslog`.
    ///
    /// # Errors
    /// The syslog socket is missing or refuses us.
    pub fn syslog(max: Level) -> io::Result<Log> {
        Log::syslog_at(Path::new(SYSLOG_PATH), max)
    }

    /// As [`Log::syslog`], with the syslog socket at `path` (tests).
    ///
    /// # Errors
    /// The path is too long for a socket address, or no datagram socket there takes us.
    pub fn syslog_at(path: &Path, max: Level) -> io::Result<Log> {
        let addr = UnixAddr::new(path)?;
        let s = UnixDatagram::unbound()?;
        addr.connect(s.as_raw_fd())?;
        // Our own socket: the flag makes every send non-blocking.
        s.set_nonblocking(true)?;
        let mut log = Log::new(Sink::Syslog(s), max);
        log.redial.addr = Some(addr);
        Ok(log)
    }

    /// True when lines of `level` are shown.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }

    /// Lines dropped since startup: no room in the ring or in the syslog socket, or a
    /// descriptor that refuses them (a reader that closed its end, a syslog daemon that is
    /// not there).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Times the syslog socket was connected again since startup, whether that worked or
    /// not (at most one a [`SYSLOG_RETRY`]).
    pub fn syslog_reconnects(&self) -> u64 {
        self.redial.tries
    }

    /// Bytes of whole lines waiting in the ring.
    pub fn pending(&self) -> usize {
        self.ring.len
    }

    /// True when the ring is at most half full (always without a ring): output that the
    /// caller can hold back, such as the SIGUSR1 status lines, goes on while this holds and
    /// waits for the reader otherwise, rather than being dropped.
    pub fn has_room(&self) -> bool {
        self.ring.free() >= self.ring.cap() / 2
    }

    /// The loop runs from now on: a line that finds the ring full is dropped and counted.
    /// Before, lines of the startup (and of a fatal error in it) wait for the reader as a
    /// blocking write did, but at most [`EXIT_FLUSH`] in all.
    pub fn loop_started(&mut self) {
        self.wait_when_full = false;
    }

    /// Registers the output descriptor with the loop's poll, for [`Log::on_writable`] when
    /// it can take lines again after it was full. Without it, each new line tries again.
    ///
    /// # Errors
    /// epoll refused the descriptor.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        if let Some(fd) = self.out.pollable() {
            registry.register(&mut SourceFd(&fd), token, Interest::WRITABLE)?;
            self.registered = true;
        }
        Ok(())
    }

    /// The output descriptor is writable again: writes what waits.
    pub fn on_writable(&mut self) {
        self.waiting = false;
        self.flush();
    }

    /// Writes what waits in the ring, waiting up to `limit` for a reader that does not take
    /// it (at exit).
    pub fn drain(&mut self, limit: Duration) {
        self.drain_until(Instant::now() + limit);
    }

    /// As [`Log::drain`], waiting until `end` at the latest: at exit, before and after the
    /// last line, so that the ring has room for it (lines dropped before are then told
    /// first) without waiting twice as long for a reader that has gone.
    pub fn drain_until(&mut self, end: Instant) {
        loop {
            self.waiting = false;
            self.flush();
            let Some(fd) = self.out.pollable() else {
                return;
            };
            let left = end.saturating_duration_since(Instant::now());
            if self.ring.len == 0 || left.is_zero() {
                return;
            }
            wait_writable(fd, left);
        }
    }

    /// Begins a line of `level`. Returns `None` when that level is not shown, so callers skip
    /// the formatting too: `if let Some(mut l) = log.line(Level::Info) { write!(l, ...) }`.
    pub fn line(&mut self, level: Level) -> Option<Line<'_>> {
        if !self.enabled(level) {
            return None;
        }
        self.len = 0;
        self.truncated = false;
        let mut line = Line { log: self, level };
        match line.log.sink {
            Sink::Syslog(_) => {
                let pid = line.log.pid;
                let pri = 24 + level.syslog_priority(); // facility daemon (3) * 8
                let _ = write!(line, "<{pri}>lvsmon[{pid}]: ");
            }
            Sink::Stderr | Sink::Fd(_) | Sink::Null => {
                let _ = write_stamp(&mut line);
            }
        }
        Some(line)
    }

    fn push(&mut self, bytes: &[u8]) {
        // Keep room for the "..." marker and the newline.
        let room = LINE_CAP - 4 - self.len;
        if bytes.len() > room {
            self.buf[self.len..self.len + room].copy_from_slice(&bytes[..room]);
            self.len += room;
            self.truncated = true;
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn finish(&mut self) {
        if self.truncated {
            self.buf[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        }
        match &self.sink {
            Sink::Null => {}
            Sink::Syslog(s) => {
                if self.gap > 0 {
                    let mut note = [0u8; 96];
                    let mut c = io::Cursor::new(&mut note[..]);
                    let pri = 24 + Level::Warn.syslog_priority();
                    let _ = write!(
                        c,
                        "<{pri}>lvsmon[{}]: msg=\"log lines dropped\" count={}",
                        self.pid, self.gap
                    );
                    let n = c.position() as usize;
                    if self.redial.send(s, &note[..n]) {
                        self.gap = 0;
                    }
                }
                // After a gap that is not yet told, lines keep dropping: nothing arrives
                // before the line that says what was lost.
                if self.gap > 0 || !self.redial.send(s, &self.buf[..self.len]) {
                    self.dropped += 1;
                    self.gap += 1;
                }
            }
            Sink::Stderr | Sink::Fd(_) => {
                self.buf[self.len] = b'\n';
                self.len += 1;
                if self.wait_when_full && (self.gap > 0 || self.ring.free() < self.len) {
                    self.wait_for_room(self.len);
                }
                self.resume();
                if self.gap > 0 || !self.ring.push(&self.buf[..self.len]) {
                    self.dropped += 1;
                    self.gap += 1;
                }
                if !self.waiting {
                    self.flush();
                }
            }
        }
        self.len = 0;
    }

    /// Before the loop runs: waits for the reader until `n` bytes fit in the ring, at most
    /// [`EXIT_FLUSH`]; after a wait in vain, lines are dropped from then on.
    fn wait_for_room(&mut self, n: usize) {
        let end = Instant::now() + EXIT_FLUSH;
        loop {
            self.waiting = false;
            self.flush();
            if self.ring.free() >= n.max(self.ring.cap() / 2)
                || self.gap == 0 && self.ring.free() >= n
            {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            let Some(fd) = self.out.pollable().filter(|_| !left.is_zero()) else {
                self.wait_when_full = false;
                return;
            };
            wait_writable(fd, left);
        }
    }

    /// After lines were dropped, once the ring has emptied to half: puts the line that says
    /// how many, and lets lines in again. True when it did.
    fn resume(&mut self) -> bool {
        if self.gap == 0 || self.ring.free() < self.ring.cap() / 2 {
            return false;
        }
        let mut note = [0u8; 128];
        let mut c = io::Cursor::new(&mut note[..]);
        let _ = write_stamp(&mut c);
        let _ = writeln!(c, "msg=\"log lines dropped\" count={}", self.gap);
        let n = c.position() as usize;
        if self.ring.push(&note[..n]) {
            self.gap = 0;
            return true;
        }
        false
    }

    /// Writes from the ring until it is empty or the descriptor is full.
    fn flush(&mut self) {
        loop {
            while self.ring.len > 0 {
                let (a, b) = self.ring.front(CHUNK);
                let n = a.len() + b.len();
                match self.out.write(a, b) {
                    Ok(0) => {
                        self.waiting = self.registered;
                        return;
                    }
                    Ok(w) => self.ring.consume(w),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.waiting = self.registered;
                        return;
                    }
                    Err(_) => {
                        // The reader closed its end, or the file refuses (full disk): these
                        // lines are lost and counted; nobody would read a line saying so.
                        let lines = a.iter().chain(b).filter(|&&c| c == b'\n').count();
                        self.ring.consume(n);
                        self.dropped += lines as u64;
                    }
                }
            }
            if !self.resume() {
                return;
            }
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.drain(EXIT_FLUSH);
    }
}

/// How often, at most, the syslog socket is connected again while the syslog daemon is away.
pub const SYSLOG_RETRY: Duration = Duration::from_secs(1);

/// A syslog socket's address, built once at startup so that connecting again takes no
/// allocation (a `sockaddr_un` by value, passed straight to `connect(2)`).
#[derive(Clone, Copy)]
struct UnixAddr {
    sa: libc::sockaddr_un,
    len: libc::socklen_t,
}

impl std::fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The path, without the NUL after it.
        let n = self.len as usize - std::mem::size_of::<libc::sa_family_t>() - 1;
        let path: Vec<u8> = self.sa.sun_path[..n].iter().map(|&c| c as u8).collect();
        write!(f, "UnixAddr({:?})", String::from_utf8_lossy(&path))
    }
}

impl UnixAddr {
    fn new(path: &Path) -> io::Result<UnixAddr> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: an all-zero sockaddr_un is valid (and NUL-terminates any shorter path).
        let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_os_str().as_bytes();
        if bytes.is_empty() || bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a path a socket can have (empty, too long or holding NUL)",
            ));
        }
        for (d, &b) in sa.sun_path.iter_mut().zip(bytes) {
            *d = b as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
        Ok(UnixAddr {
            sa,
            len: len as libc::socklen_t,
        })
    }

    /// Connects `fd` (a datagram socket: again, to whatever is bound at the path now).
    fn connect(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a valid sockaddr_un of `len` bytes, for the length of the call.
        let r = unsafe {
            libc::connect(
                fd,
                (&self.sa as *const libc::sockaddr_un).cast::<libc::sockaddr>(),
                self.len,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Sends to the syslog socket, and connects it again when the syslog daemon has gone away.
///
/// A syslog daemon that restarts (rsyslog, syslog-ng) removes its socket and binds a new
/// one at the same path: the socket we connected at startup then refuses every datagram
/// (`ECONNREFUSED`, then `ENOTCONN`). Such an error makes the socket *down*: a line is
/// dropped at once, without a system call, but for one `connect(2)` to the path at most
/// once a [`SYSLOG_RETRY`] (a socket there again, the line goes). An error that says the
/// receiver is full (`EAGAIN`, `ENOBUFS`) only drops the line. Under `--chroot` the path
/// is looked up inside the chroot: without a syslog socket there, each retry fails, and
/// lines are dropped and counted as long as the daemon runs.
#[derive(Debug)]
struct Redial {
    /// Where to connect again; `None`: a socket given connected (tests), never connected
    /// again.
    addr: Option<UnixAddr>,
    /// The syslog daemon went away and the socket has not been connected again since.
    down: bool,
    /// No connect before this.
    next_try: Time,
    /// Connects tried since startup.
    tries: u64,
    /// The monotonic clock of the retries (a manual one in tests).
    clock: Clock,
}

impl Redial {
    /// Sends `b` as one datagram; true when it went.
    fn send(&mut self, s: &UnixDatagram, b: &[u8]) -> bool {
        if !self.down {
            match s.send(b) {
                Ok(_) => return true,
                Err(e) if is_full(&e) || self.addr.is_none() => return false,
                Err(_) => self.down = true,
            }
        }
        if !self.reconnect(s) {
            return false;
        }
        match s.send(b) {
            Ok(_) => true,
            Err(e) => {
                self.down = !is_full(&e);
                false
            }
        }
    }

    /// Connects again to the path, if the last try was a [`SYSLOG_RETRY`] ago; true when
    /// that worked.
    fn reconnect(&mut self, s: &UnixDatagram) -> bool {
        let Some(addr) = &self.addr else {
            return false;
        };
        let now = self.clock.now();
        if now < self.next_try {
            return false;
        }
        self.next_try = now.plus(SYSLOG_RETRY);
        self.tries += 1;
        if addr.connect(s.as_raw_fd()).is_err() {
            return false;
        }
        self.down = false;
        true
    }
}

/// True for a send error that means the receiver has no room now (the line is dropped, the
/// socket stays), rather than that it has gone.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
        || matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EINTR))
}

/// Writes `ts=YYYY-MM-DDTHH:MM:SS.mmmZ ` from the wall clock.
fn write_stamp(w: &mut impl Write) -> io::Result<()> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let secs = ts.tv_sec.max(0) as u64;
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let ms = ts.tv_nsec / 1_000_000;
    write!(
        w,
        "ts={y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z ",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A line being written; sent when dropped.
pub struct Line<'a> {
    log: &'a mut Log,
    #[allow(dead_code)]
    level: Level,
}

impl Line<'_> {
    /// Writes `key="value"` with `"` and `\` escaped and control bytes dropped, for values
    /// that may hold spaces.
    pub fn quoted(&mut self, key: &str, value: &[u8]) {
        self.log.push(key.as_bytes());
        self.log.push(b"=\"");
        for &b in value {
            match b {
                b'"' | b'\\' => self.log.push(&[b'\\', b]),
                0x20..=0x7e => self.log.push(&[b]),
                _ => self.log.push(b"?"),
            }
        }
        self.log.push(b"\"");
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        self.log.finish();
    }
}

/// Writes `unix_secs` as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
///
/// # Errors
/// The output is full.
pub fn write_rfc3339(w: &mut impl Write, unix_secs: u64) -> io::Result<()> {
    let (y, mo, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    write!(
        w,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Waits until `fd` takes output, or `left` has passed (at least 1 ms). Only outside the
/// loop: before it runs and at exit.
fn wait_writable(fd: std::os::fd::RawFd, left: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: one pollfd we own, for the length of the call.
    unsafe { libc::poll(&mut p, 1, ms) };
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let mut log = Log::new(Sink::Null, Level::Info);
        {
            let mut l = log.line(Level::Notice).unwrap();
            for _ in 0..1000 {
                let _ = write!(l, "abcdef");
            }
            assert!(l.log.truncated);
        }
        assert_eq!(log.len, 0);
        assert!(log.line(Level::Debug).is_none());
    }

    /// A pipe: (read end, write end), the read end non-blocking.
    fn pipe() -> (std::fs::File, OwnedFd) {
        use std::os::fd::FromRawFd;
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors, which we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe {
            libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
            (
                std::fs::File::from_raw_fd(fds[0]),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn read_all(r: &mut std::fs::File) -> String {
        use std::io::Read;
        let mut got = Vec::new();
        let mut b = [0u8; 65536];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8(got).unwrap()
    }

    /// A reader that stops: nothing blocks, whole lines wait in the ring, then new ones are
    /// dropped and counted; when it reads again the lines come whole, in order, with one line
    /// in place of the lost ones.
    #[test]
    fn a_full_pipe_fills_the_ring_then_drops_and_says_so() {
        let (mut r, w) = pipe();
        let mut log = Log::new(Sink::Fd(w), Level::Info);
        log.loop_started();
        assert!(matches!(log.out, Out::Own(_)), "{:?}", log.out);
        let t = std::time::Instant::now();
        let mut i = 0u64;
        while log.dropped() < 100 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "n={i} pad={}", "x".repeat(150));
            drop(l);
            i += 1;
            assert!(i < 100_000);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "writes blocked");
        assert!(log.pending() > RING_CAP - LINE_CAP);
        // The reader reads everything now, and keeps up from here on.
        let mut text = String::new();
        for _ in 0..100 {
            text.push_str(&read_all(&mut r));
            log.on_writable();
            if log.pending() == 0 {
                break;
            }
        }
        for j in 0..10 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "after={j}");
        }
        text.push_str(&read_all(&mut r));
        let lines: Vec<&str> = text.lines().collect();
        let notes: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("msg=\"log lines dropped\""))
            .collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].split("count=").nth(1), Some("100"));
        let mut next = 0;
        for l in &lines {
            assert!(l.starts_with("ts=") && l.matches("ts=").count() == 1, "{l}");
            if let Some(n) = l.split("n=").nth(1) {
                let n: u64 = n.split(' ').next().unwrap().parse().unwrap();
                assert_eq!(n, next, "lines out of order or missing before the gap");
                next += 1;
            }
        }
        assert_eq!(next + 100, i, "every line but the dropped ones arrived");
        assert!(lines.last().unwrap().ends_with("after=9"));
        assert_eq!(log.dropped(), 100);
    }

    /// Where the pipe cannot be reopened, its own blocking descriptor is written only when
    /// poll says there is room: whole lines of at most PIPE_BUF bytes then never block.
    #[test]
    fn a_pipe_that_cannot_be_reopened_is_polled() {
        let (mut r, w) = pipe();
        let raw = w.as_raw_fd();
        let mut log = Log::new(Sink::Fd(w), Level::Info);
        log.loop_started();
        log.out = Out::Polled(raw);
        let t = std::time::Instant::now();
        let mut i = 0;
        while log.dropped() == 0 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "n={i} pad={}", "z".repeat(300));
            drop(l);
            i += 1;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "writes blocked");
        let mut text = String::new();
        for _ in 0..1000 {
            text.push_str(&read_all(&mut r));
            log.drain(Duration::from_millis(1));
            if log.pending() == 0 {
                break;
            }
        }
        text.push_str(&read_all(&mut r));
        let (lines, notes): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.ends_with('z'));
        assert!(lines.iter().all(|l| l.starts_with("ts=")));
        assert_eq!(lines.len() as u64 + 1, i);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].ends_with("msg=\"log lines dropped\" count=1"));
    }

    /// Before the loop runs, a full ring waits for the reader instead of dropping, as a
    /// blocking write did; a reader that never comes back costs one wait of EXIT_FLUSH, and
    /// lines are dropped from then on.
    #[test]
    fn before_the_loop_a_full_ring_waits_for_the_reader() {
        let (mut r, w) = pipe();
        let mut log = Log::new(Sink::Fd(w), Level::Info);
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut text = String::new();
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while !text.contains("last") && std::time::Instant::now() < end {
                text.push_str(&read_all(&mut r));
                std::thread::sleep(Duration::from_millis(1));
            }
            (text, r)
        });
        for i in 0..4000 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "n={i} pad={}", "w".repeat(150));
        }
        {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "last");
        }
        log.drain(Duration::from_secs(5));
        let (text, _r) = reader.join().unwrap();
        assert_eq!(log.dropped(), 0);
        assert_eq!(text.lines().filter(|l| l.contains(" n=")).count(), 4000);

        // A reader that never reads: one wait, then drops.
        let (r, w) = pipe();
        let mut log = Log::new(Sink::Fd(w), Level::Info);
        let t = std::time::Instant::now();
        while log.dropped() < 10 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "pad={}", "v".repeat(150));
        }
        let took = t.elapsed();
        assert!(took >= EXIT_FLUSH && took < EXIT_FLUSH * 2, "{took:?}");
        // The reader goes: what waits is dropped at once, and the exit does not wait.
        drop(r);
        let t = std::time::Instant::now();
        drop(log);
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    /// A stream socket (systemd's journal) is written with MSG_DONTWAIT, as a pipe is.
    #[test]
    fn a_full_socket_does_not_block() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut log = Log::new(Sink::Fd(b.into()), Level::Info);
        log.loop_started();
        assert!(matches!(log.out, Out::Socket(_)), "{:?}", log.out);
        let t = std::time::Instant::now();
        while log.dropped() == 0 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "pad={}", "y".repeat(500));
        }
        assert!(t.elapsed() < Duration::from_secs(2), "writes blocked");
        drop(a);
        log.on_writable();
        // The reader is gone: what waited is dropped and counted, and exit does not wait.
        assert_eq!(log.pending(), 0);
        let t = std::time::Instant::now();
        drop(log);
        assert!(t.elapsed() < Duration::from_millis(500));
    }

    /// Syslog datagrams that find the socket full are dropped and counted; the next one that
    /// goes says how many, before itself.
    #[test]
    fn a_full_syslog_socket_drops_and_says_so() {
        let (rx, tx) = UnixDatagram::pair().unwrap();
        tx.set_nonblocking(true).unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut log = Log::new(Sink::Syslog(tx), Level::Info);
        let t = std::time::Instant::now();
        let mut i = 0;
        while log.dropped() < 5 {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "n={i}");
            drop(l);
            i += 1;
            assert!(i < 1_000_000);
        }
        assert!(t.elapsed() < Duration::from_secs(2), "sends blocked");
        let mut b = [0u8; 256];
        let mut got = 0;
        while rx.recv(&mut b).is_ok() {
            got += 1;
        }
        assert_eq!(got + 5, i);
        {
            let mut l = log.line(Level::Info).unwrap();
            let _ = write!(l, "after");
        }
        let n = rx.recv(&mut b).unwrap();
        let note = std::str::from_utf8(&b[..n]).unwrap();
        assert!(note.starts_with("<28>lvsmon["), "{note}");
        assert!(
            note.ends_with("]: msg=\"log lines dropped\" count=5"),
            "{note}"
        );
        let n = rx.recv(&mut b).unwrap();
        assert!(std::str::from_utf8(&b[..n]).unwrap().ends_with("]: after"));
        assert_eq!(log.dropped(), 5);
    }

    /// A directory of its own for a test's syslog socket, removed at the end.
    struct SockDir(std::path::PathBuf);

    impl SockDir {
        fn new(tag: &str) -> SockDir {
            let d = std::env::temp_dir().join(format!("lvsmon-log-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            SockDir(d)
        }

        fn sock(&self) -> std::path::PathBuf {
            self.0.join("log")
        }

        /// A syslog daemon's socket at the path, read without waiting.
        fn bind(&self) -> UnixDatagram {
            let rx = UnixDatagram::bind(self.sock()).unwrap();
            rx.set_nonblocking(true).unwrap();
            rx
        }
    }

    impl Drop for SockDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The next datagram waiting, without its `<PRI>lvsmon[PID]: ` prefix; None if none.
    fn recv_line(rx: &UnixDatagram) -> Option<String> {
        let mut b = [0u8; LINE_CAP];
        let n = rx.recv(&mut b).ok()?;
        let s = std::str::from_utf8(&b[..n]).unwrap();
        Some(s.split_once("]: ").unwrap().1.to_string())
    }

    fn say(log: &mut Log, what: &str) {
        let mut l = log.line(Level::Notice).unwrap();
        let _ = write!(l, "{what}");
    }

    /// The syslog daemon restarts (its socket is removed and bound again at the same path):
    /// lines sent meanwhile are dropped and counted, and once the socket is back and a
    /// second has passed since the last try, the log connects again, says how many lines
    /// were lost, and goes on.
    #[test]
    fn syslog_lines_come_back_after_the_daemon_restarts() {
        let dir = SockDir::new("restart");
        let rx = dir.bind();
        let mut log = Log::syslog_at(&dir.sock(), Level::Info).unwrap();
        let clock = Clock::manual(Time(5_000_000));
        log.redial.clock = clock;
        say(&mut log, "n=0");
        assert_eq!(recv_line(&rx).as_deref(), Some("n=0"));

        // The daemon stops: its socket goes.
        drop(rx);
        std::fs::remove_file(dir.sock()).unwrap();
        for i in 1..=3 {
            say(&mut log, &format!("n={i}"));
        }
        assert_eq!(log.dropped(), 3);
        assert_eq!(log.syslog_reconnects(), 1);
        // It is back, but the log tried at the first lost line: not again within the second.
        let rx = dir.bind();
        clock.advance(999_999);
        say(&mut log, "n=4");
        assert_eq!(recv_line(&rx), None);
        assert_eq!(log.dropped(), 4);
        assert_eq!(log.syslog_reconnects(), 1);
        // A second later the next line connects, and the lost ones are told first.
        clock.advance(1);
        say(&mut log, "n=5");
        assert_eq!(
            recv_line(&rx).as_deref(),
            Some("msg=\"log lines dropped\" count=4")
        );
        assert_eq!(recv_line(&rx).as_deref(), Some("n=5"));
        say(&mut log, "n=6");
        assert_eq!(recv_line(&rx).as_deref(), Some("n=6"));
        assert_eq!(recv_line(&rx), None);
        assert_eq!(log.dropped(), 4);
        assert_eq!(log.syslog_reconnects(), 2);
        assert_eq!(
            format!("{:?}", log.redial.addr.unwrap()),
            format!("UnixAddr({:?})", dir.sock())
        );
    }

    /// A syslog daemon that does not come back (or a path not reachable under --chroot):
    /// lines are dropped and counted without a fuss, with one connect a second at most,
    /// whether the path is gone (ENOENT) or left behind with nobody bound (ECONNREFUSED).
    #[test]
    fn syslog_gone_for_good_drops_and_retries_once_a_second() {
        for stale in [false, true] {
            let dir = SockDir::new(if stale { "stale" } else { "gone" });
            let rx = dir.bind();
            let mut log = Log::syslog_at(&dir.sock(), Level::Info).unwrap();
            let clock = Clock::manual(Time::ZERO);
            log.redial.clock = clock;
            drop(rx);
            if !stale {
                std::fs::remove_file(dir.sock()).unwrap();
            }
            let t = std::time::Instant::now();
            for i in 0..10_000 {
                say(&mut log, &format!("n={i}"));
            }
            assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
            assert_eq!(log.dropped(), 10_000);
            assert_eq!(log.syslog_reconnects(), 1);
            for k in 2..=5 {
                clock.advance(SYSLOG_RETRY.as_micros() as u64);
                for _ in 0..100 {
                    say(&mut log, "again");
                }
                assert_eq!(log.syslog_reconnects(), k);
            }
            assert_eq!(log.dropped(), 10_400);
            assert!(log.redial.down);
        }
    }

    /// A syslog daemon that is there but full is not connected again: the line is dropped,
    /// and the next one that goes says how many were.
    #[test]
    fn a_full_syslog_receiver_is_not_connected_again() {
        let dir = SockDir::new("full");
        let rx = dir.bind();
        let mut log = Log::syslog_at(&dir.sock(), Level::Info).unwrap();
        let mut i = 0;
        while log.dropped() < 3 {
            say(&mut log, &format!("n={i}"));
            i += 1;
            assert!(i < 1_000_000);
        }
        assert_eq!(log.syslog_reconnects(), 0);
        let mut got = 0;
        while recv_line(&rx).is_some() {
            got += 1;
        }
        assert_eq!(got + 3, i);
        say(&mut log, "after");
        assert_eq!(
            recv_line(&rx).as_deref(),
            Some("msg=\"log lines dropped\" count=3")
        );
        assert_eq!(recv_line(&rx).as_deref(), Some("after"));
        assert_eq!(log.syslog_reconnects(), 0);
    }

    #[test]
    fn syslog_paths_a_socket_cannot_have() {
        assert!(UnixAddr::new(Path::new("")).is_err());
        assert!(UnixAddr::new(Path::new(&"x".repeat(108))).is_err());
        assert!(UnixAddr::new(Path::new(&"x".repeat(107))).is_ok());
        let e = Log::syslog_at(Path::new("/nonexistent/lvsmon/log"), Level::Info).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn quoting_escapes() {
        let mut log = Log::new(Sink::Null, Level::Info);
        let mut l = log.line(Level::Notice).unwrap();
        l.log.len = 0;
        l.quoted("detail", b"a \"b\" \\c\n");
        let got = std::str::from_utf8(&l.log.buf[..l.log.len])
            .unwrap()
            .to_string();
        assert_eq!(got, r#"detail="a \"b\" \\c?""#);
    }
}
