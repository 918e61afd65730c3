//! One check's phase machine and the socket work of each phase.
//!
//! ```text
//!            timer                 WRITABLE, SO_ERROR = 0          request written
//!   Wait ───────────▶ Connect ──▶ ConResult ───────────────▶ Query ──────────────▶ Recv
//!    ▲                  │             │                         │                    │
//!    │                  │ errno       │ errno / deadline        │ error / deadline   │ verdict,
//!    └──────────────────┴─────────────┴─────────────────────────┴────────────────────┘ EOF, error,
//!                                finish: verdict recorded, socket closed                deadline
//! ```
//!
//! `Connect` is momentary: the socket is created and `connect(2)` issued in the same call, so
//! the stored phase after a start is `ConResult` (or `Wait` if it failed at once). A plugin
//! may ask to send again after a reply (`script`), which takes `Recv` back to `Query`.
//!
//! Everything here works on one [`Probe`] and returns an [`Outcome`]; it never reads the
//! clock (times are arguments) and never allocates. Readiness is a hint: each step attempts
//! its I/O until `WouldBlock`, as edge-triggered notification requires.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::clock::Time;
use crate::config::SockOpts;
use crate::plugins::{
    target_text, CheckSpec, CheckState, Detail, Reason, Step, Transport, Verdict, TARGET_TEXT_MAX,
};

/// Where a check stands. See the module diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No socket; the timer holds the next start.
    Wait,
    /// `connect(2)` in flight, until start + min(connect-timeout, timeout).
    ConResult,
    /// Writing the plugin's bytes; `sent` ≤ `send_bytes().len()`.
    Query {
        /// Bytes already written.
        sent: u32,
        /// Bytes received before this send (a dialogue keeps them; the plugin sees them all).
        got: u32,
    },
    /// Reading; `got` ≤ the buffer's length. With no buffer assigned yet, the probe waits in
    /// the pool's queue and `got` is 0.
    Recv {
        /// Bytes received so far (the plugin sees `buf[..got]`).
        got: u32,
    },
    /// A TLS check running in the TLS helper process: no socket here; the helper's answer,
    /// or the check's timeout plus [`HELPER_GRACE_US`], ends it.
    Helper,
}

impl Phase {
    /// The phase's name as logs and the man page spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Wait => "wait",
            Phase::ConResult => "conresult",
            Phase::Query { .. } => "query",
            Phase::Recv { .. } => "recv",
            Phase::Helper => "helper",
        }
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Still in progress; wait for readiness or the deadline.
    Pending,
    /// Needs a receive buffer and none is free: queue for one.
    NeedBuffer,
    /// The check is decided.
    Done(Verdict),
    /// The director's own fault (errno): defer the check, never blame the real server.
    Local(i32),
}

/// How long past a TLS check's own timeout the loop waits for the TLS helper's answer before
/// it counts the check as a local error (and, if the helper has said nothing since, takes it
/// for hung).
pub const HELPER_GRACE_US: u64 = 2_000_000;

/// Marks "no buffer assigned".
pub const NO_BUF: u32 = u32::MAX;

/// One distinct check in progress or waiting. Preallocated, one per plan check; 48 bytes,
/// no buffers of its own. Its deadlines follow from its start and its check's timeouts.
#[derive(Debug)]
pub struct Probe {
    /// Current phase.
    pub(super) phase: Phase,
    /// Bumped at every socket close, and part of the mio token, so readiness from a closed
    /// socket can never be taken for the next one's. Such readiness can only wait in the
    /// batch of events being handled (closing a socket takes it out of epoll), so 16 bits
    /// are plenty.
    pub(super) gen: u16,
    /// Readiness to read seen and not yet used up.
    pub(super) rx_ready: bool,
    /// The socket while a check runs (a TCP stream, or a connected UDP socket).
    pub(super) sock: Option<OwnedFd>,
    /// The plugin's progress.
    pub(super) st: CheckState,
    /// Receive buffer index in the pool, or [`NO_BUF`].
    pub(super) buf: u32,
    /// The grid point this check was (or will be) started for.
    pub(super) scheduled: Time,
    /// When the running check actually started: µs after `scheduled` (see [`Probe::started`];
    /// the caller keeps it below [`MAX_LATE_US`]).
    started_after: u32,
}

/// The most a check may start after its grid point ([`Probe::started_after`] holds it): past
/// that the loop stood still for over an hour, and the caller moves the grid point on.
pub const MAX_LATE_US: u64 = u32::MAX as u64;

/// The grid point a check starting at `now` counts from. Normally `scheduled` itself; when
/// the loop stood still for longer than [`MAX_LATE_US`] (a stopped process, a suspended
/// machine), the point moves on by whole intervals, keeping the grid's phase, so the start
/// fits in [`Probe`]'s 32 bits.
pub fn catch_up(scheduled: Time, now: Time, interval_us: u64) -> Time {
    let late = now.micros_since(scheduled);
    if late <= MAX_LATE_US {
        return scheduled;
    }
    let moved = scheduled.add_micros(late - late % interval_us.max(1));
    if now.micros_since(moved) > MAX_LATE_US {
        // An interval longer than the limit: start the grid afresh.
        return now;
    }
    moved
}

impl Probe {
    /// A probe waiting for its first start at `first`.
    pub fn new(first: Time) -> Probe {
        Probe {
            phase: Phase::Wait,
            gen: 0,
            rx_ready: false,
            sock: None,
            st: CheckState::default(),
            buf: NO_BUF,
            scheduled: first,
            started_after: 0,
        }
    }

    /// The current phase.
    #[inline(always)]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// A check is running: the probe holds a socket.
    #[inline(always)]
    pub fn has_socket(&self) -> bool {
        self.sock.is_some()
    }

    /// Every phase change goes through here, where its rules are asserted (in debug builds,
    /// which the tests run): a running phase holds a socket; a check starts from WAIT,
    /// connects before it sends, and only closing brings it back to WAIT.
    #[inline(always)]
    pub(super) fn set_phase(&mut self, to: Phase) {
        debug_assert!(
            to == Phase::Wait || to == Phase::Helper || self.sock.is_some(),
            "{to:?} without a socket"
        );
        debug_assert!(
            matches!(
                (self.phase, to),
                (_, Phase::Wait)
                    | (Phase::Wait, _)
                    | (Phase::ConResult, Phase::Query { .. } | Phase::Recv { .. })
                    | (
                        Phase::Query { .. } | Phase::Recv { .. },
                        Phase::Query { .. } | Phase::Recv { .. }
                    )
            ),
            "phase {:?} -> {to:?}",
            self.phase
        );
        self.phase = to;
    }

    /// A check starts at `now` (the `exec` checks' start; [`start`] does the same for
    /// sockets): its start is recorded against its grid point.
    pub(super) fn mark_started(&mut self, now: Time) {
        self.started_after = now.micros_since(self.scheduled).min(MAX_LATE_US) as u32;
    }

    /// When the running (or last) check started.
    pub fn started(&self) -> Time {
        self.scheduled.add_micros(self.started_after.into())
    }

    /// The loop stood still for `us` while this check ran: its start, and so its deadlines
    /// and its duration, move on by that much, so it gets the time it had left. False (and
    /// nothing moved) when the start would fall more than [`MAX_LATE_US`] after its grid
    /// point: the caller starts the check afresh instead.
    pub fn hold(&mut self, us: u64) -> bool {
        let after = u64::from(self.started_after).saturating_add(us);
        if after > MAX_LATE_US {
            return false;
        }
        self.started_after = after as u32;
        true
    }

    /// The earliest deadline of the running phase, for a check with these timeouts.
    pub fn phase_deadline(&self, connect_timeout_us: u64, timeout_us: u64) -> Time {
        match self.phase {
            Phase::Wait => self.scheduled,
            Phase::ConResult => self
                .started()
                .add_micros(connect_timeout_us.min(timeout_us)),
            Phase::Query { .. } | Phase::Recv { .. } => self.started().add_micros(timeout_us),
            Phase::Helper => self.started().add_micros(timeout_us + HELPER_GRACE_US),
        }
    }

    /// The mio token for the current socket generation of probe `id`.
    pub fn token(id: u32, gen: u32) -> Token {
        Token((id as usize) | ((gen as usize & 0x7fff_ffff) << 32))
    }

    /// Splits a token into (probe id, generation).
    pub fn untoken(t: Token) -> (u32, u32) {
        (
            (t.0 & 0xffff_ffff) as u32,
            ((t.0 >> 32) & 0x7fff_ffff) as u32,
        )
    }
}

/// Errors that are the director's own fault (lvsmon(8), DECISIONS: never mark a real down).
pub fn is_local_errno(e: i32) -> bool {
    matches!(
        e,
        libc::EMFILE
            | libc::ENFILE
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EADDRNOTAVAIL
            | libc::EADDRINUSE
            | libc::EAGAIN
            | libc::EAFNOSUPPORT
    )
}

/// Maps a socket errno during or after connect to a verdict's reason.
fn errno_reason(e: i32, connecting: bool) -> Reason {
    match e {
        libc::ECONNREFUSED => Reason::ConnectRefused,
        libc::ETIMEDOUT if connecting => Reason::ConnectTimeout,
        libc::ETIMEDOUT => Reason::Timeout,
        libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN | libc::ENETDOWN => {
            Reason::Unreachable
        }
        libc::EACCES | libc::EPERM | libc::ENONET | libc::EPROTO => Reason::Unreachable,
        libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => {
            if connecting {
                Reason::ConnectRefused
            } else {
                Reason::Reset
            }
        }
        _ if connecting => Reason::Unreachable,
        _ => Reason::Reset,
    }
}

/// A failure verdict carrying the errno's symbolic name as detail.
pub(crate) fn errno_verdict(e: i32, connecting: bool) -> Verdict {
    Verdict::Fail(
        errno_reason(e, connecting),
        Detail::text(errno_name(e).as_bytes()),
    )
}

/// The symbolic name of the errnos a check meets (`ECONNREFUSED`), or `errno`.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTDOWN => "EHOSTDOWN",
        libc::ENETDOWN => "ENETDOWN",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ECONNRESET => "ECONNRESET",
        libc::EPIPE => "EPIPE",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOBUFS => "ENOBUFS",
        libc::ENOMEM => "ENOMEM",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::EAGAIN => "EAGAIN",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINVAL => "EINVAL",
        libc::EMSGSIZE => "EMSGSIZE",
        libc::ENOENT => "ENOENT",
        libc::ENOEXEC => "ENOEXEC",
        libc::ENOTDIR => "ENOTDIR",
        _ => "errno",
    }
}

/// `getsockopt(SO_ERROR)`: the pending error of a socket, if any.
fn so_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut e: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reads an int option into a correctly sized int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut e as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((e != 0).then(|| io::Error::from_raw_os_error(e)))
}

/// `getpeername(2)`: Ok when the socket is connected (ENOTCONN while a connect is pending).
fn peer_addr(fd: RawFd) -> io::Result<()> {
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: writes into our sockaddr_storage.
    let rc = unsafe {
        libc::getpeername(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The system calls every check makes, issued with `syscall(2)` rather than through the C
/// library's functions of the same names. Those are cancellation points: in a process with a
/// second thread (the state writer's) each of them switches asynchronous thread cancellation
/// on and off around the system call, two atomic updates each time, and lvsmon never cancels
/// a thread. Same system calls (`send` and `recv` are `sendto` and `recvfrom` without an
/// address, as in the C library), same results: -1 with `errno` set on failure.
mod raw {
    use std::os::fd::RawFd;

    /// `connect(2)`.
    ///
    /// # Safety
    /// `addr` points to `len` readable bytes of a socket address.
    pub unsafe fn connect(
        fd: RawFd,
        addr: *const libc::sockaddr,
        len: libc::socklen_t,
    ) -> libc::c_long {
        libc::syscall(libc::SYS_connect, fd, addr, len as libc::c_long)
    }

    /// `send(2)`.
    ///
    /// # Safety
    /// `buf` points to `len` readable bytes.
    pub unsafe fn send(fd: RawFd, buf: *const u8, len: usize, flags: libc::c_int) -> isize {
        let null = std::ptr::null::<libc::sockaddr>();
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf,
            len,
            flags,
            null,
            0 as libc::c_long,
        ) as isize
    }

    /// `sendmsg(2)`.
    ///
    /// # Safety
    /// `msg` and the iovecs it points to describe readable memory.
    pub unsafe fn sendmsg(fd: RawFd, msg: *const libc::msghdr, flags: libc::c_int) -> isize {
        libc::syscall(libc::SYS_sendmsg, fd, msg, flags) as isize
    }

    /// `recv(2)`.
    ///
    /// # Safety
    /// `buf` points to `len` writable bytes.
    pub unsafe fn recv(fd: RawFd, buf: *mut u8, len: usize, flags: libc::c_int) -> isize {
        let null = std::ptr::null_mut::<libc::sockaddr>();
        let no_len = std::ptr::null_mut::<libc::socklen_t>();
        libc::syscall(libc::SYS_recvfrom, fd, buf, len, flags, null, no_len) as isize
    }

    /// `close(2)` of a descriptor we own; like dropping an `OwnedFd`, errors are ignored.
    pub fn close(fd: std::os::fd::OwnedFd) {
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: the descriptor was ours alone and is not used again.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// Fills a `sockaddr_storage` for `addr`; returns its length.
fn sockaddr(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    // SAFETY: sockaddr_storage is large and aligned enough for both sockaddr_in and _in6.
    unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let sin = &mut *(ss as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = &mut *(ss as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_scope_id = a.scope_id();
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }
}

fn set_linger(fd: RawFd, on: bool) {
    let l = libc::linger {
        l_onoff: on as libc::c_int,
        l_linger: 0,
    };
    // SAFETY: valid fd and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// Connect phase: creates a non-blocking socket, issues `connect(2)` and registers it.
/// Sets the phase to `ConResult` (or decides at once). `polite` keeps the default close
/// (FIN); otherwise the socket is set to reset on close (`SO_LINGER` 0), which leaves no
/// TIME_WAIT on the director.
#[allow(clippy::too_many_arguments)]
pub fn start(
    p: &mut Probe,
    id: u32,
    spec: &CheckSpec,
    opts: SockOpts,
    target: &SocketAddr,
    registry: &Registry,
    now: Time,
) -> Outcome {
    p.st = CheckState {
        nonce: nonce(now, id, p.gen.into()),
        ..CheckState::default()
    };
    p.started_after = now.micros_since(p.scheduled).min(MAX_LATE_US) as u32;
    let udp = spec.transport() == Transport::Udp;
    let domain = if target.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let kind = if udp {
        libc::SOCK_DGRAM
    } else {
        libc::SOCK_STREAM
    };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Outcome::Local(last_errno());
    }
    // SAFETY: fd is a fresh socket we own; OwnedFd closes it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    if !udp && !spec.polite_close() {
        set_linger(fd, true);
    }
    if let Err(e) = sock_opts(fd, opts, target) {
        // A mark or a source address the director cannot use is its own fault: EPERM
        // without CAP_NET_ADMIN, EADDRNOTAVAIL for an address it does not have.
        drop(sock);
        return Outcome::Local(e);
    }
    let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = sockaddr(target, &mut ss);
    // SAFETY: ss holds a valid address of length len. For UDP this only fixes the peer:
    // the kernel then drops datagrams from anyone else and reports ICMP errors to us.
    let rc = unsafe { raw::connect(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
    let e = if rc == 0 { 0 } else { last_errno() };
    if rc != 0 && e != libc::EINPROGRESS {
        drop(sock);
        return if is_local_errno(e) {
            Outcome::Local(e)
        } else {
            Outcome::Done(errno_verdict(e, true))
        };
    }
    let interest = if udp {
        Interest::READABLE
    } else {
        Interest::READABLE | Interest::WRITABLE
    };
    if let Err(err) =
        registry.register(&mut SourceFd(&fd), Probe::token(id, p.gen.into()), interest)
    {
        return Outcome::Local(err.raw_os_error().unwrap_or(libc::ENOMEM));
    }
    p.sock = Some(sock);
    if udp {
        // No handshake: straight to the query.
        p.set_phase(Phase::Query { sent: 0, got: 0 });
        return send_datagram(p, spec);
    }
    p.set_phase(Phase::ConResult);
    Outcome::Pending
}

/// `--mark` (`SO_MARK`) and `--source` (`bind(2)` to the address, any port) on a fresh
/// socket, before its `connect(2)`; the errno of the first that fails.
fn sock_opts(fd: RawFd, opts: SockOpts, target: &SocketAddr) -> Result<(), i32> {
    if let Some(mark) = opts.mark {
        // SAFETY: valid fd and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_MARK,
                (&mark as *const u32).cast(),
                mem::size_of::<u32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_errno());
        }
    }
    if let Some(ip) = opts.source {
        // The port is left to connect(2), which picks one that is free for this peer:
        // thousands of checks from one source address do not run out of ports at bind time.
        let one: libc::c_int = 1;
        // SAFETY: valid fd and a correctly sized option value; failure is harmless.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        let src = SocketAddr::new(ip, 0);
        debug_assert_eq!(src.is_ipv4(), target.is_ipv4());
        let len = sockaddr(&src, &mut ss);
        // SAFETY: ss holds a valid address of length len.
        let rc = unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
        if rc < 0 {
            return Err(last_errno());
        }
    }
    Ok(())
}

/// Starts a check that runs in the TLS helper: the probe holds no socket, only its start.
pub fn start_helper(p: &mut Probe, now: Time) {
    p.st = CheckState::default();
    p.started_after = now.micros_since(p.scheduled).min(MAX_LATE_US) as u32;
    p.set_phase(Phase::Helper);
}

/// A per-check pseudo-random value (DNS query IDs): splitmix64 over the time, the probe and
/// its socket generation. Not a secret; just different from one check to the next.
fn nonce(now: Time, id: u32, gen: u32) -> u32 {
    let mut z = now.0 ^ ((id as u64) << 32) ^ (gen as u64).rotate_left(17);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

/// Largest datagram a UDP plugin sends.
pub const MAX_DATAGRAM: usize = 1500;

/// Query phase of a UDP check: sends the plugin's datagram in one `send(2)`.
fn send_datagram(p: &mut Probe, spec: &CheckSpec) -> Outcome {
    let Some(sock) = p.sock.as_ref() else {
        return Outcome::Pending;
    };
    let mut out = [0u8; MAX_DATAGRAM];
    let n = spec.datagram(&p.st, &mut out);
    if n == 0 {
        return Outcome::Local(libc::EMSGSIZE);
    }
    // SAFETY: sends from a valid buffer on our socket.
    let rc = unsafe { raw::send(sock.as_raw_fd(), out.as_ptr(), n, libc::MSG_NOSIGNAL) };
    if rc < 0 {
        let e = last_errno();
        return if is_local_errno(e) {
            Outcome::Local(e)
        } else {
            Outcome::Done(errno_verdict(e, true))
        };
    }
    let step = spec.sent(&mut p.st);
    match step {
        Step::Done(v) => Outcome::Done(v),
        _ => {
            p.set_phase(Phase::Recv { got: 0 });
            Outcome::NeedBuffer
        }
    }
}

/// Recv phase of a UDP check: reads datagrams until one decides or the socket is empty.
fn recv_datagram(p: &mut Probe, spec: &CheckSpec, buf: &mut [u8]) -> Outcome {
    if buf.is_empty() {
        return Outcome::NeedBuffer;
    }
    let Some(sock) = p.sock.as_ref() else {
        return Outcome::Pending;
    };
    let limit = spec.max_response().min(buf.len()).max(1);
    loop {
        // SAFETY: reads into a valid, writable slice. MSG_TRUNC makes recv return the
        // datagram's real length, so a reply longer than the buffer is told apart.
        let n = unsafe { raw::recv(sock.as_raw_fd(), buf.as_mut_ptr(), limit, libc::MSG_TRUNC) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
                return Outcome::Pending;
            }
            if e == libc::EINTR {
                continue;
            }
            // ICMP port unreachable arrives here as ECONNREFUSED.
            return Outcome::Done(errno_verdict(e, true));
        }
        if n as usize > limit {
            return Outcome::Done(Verdict::Fail(
                Reason::ResponseTooLarge,
                Detail::number(n as u64),
            ));
        }
        match spec.on_data(&mut p.st, &buf[..n as usize]) {
            Step::Done(v) => return Outcome::Done(v),
            // Not a reply to this check (a late one to an earlier check): keep waiting.
            _ => continue,
        }
    }
}

/// ConResult phase: the socket became writable (or errored). `plain` says the readiness was
/// WRITABLE alone, with no error or hang-up: on Linux a TCP socket reports that only once its
/// handshake is complete (`tcp_poll` gives nothing while `SYN_SENT`, and a failed handshake
/// raises `EPOLLERR`), so the check goes straight on with the request, two system calls
/// fewer a check. Anything else is confirmed first: `SO_ERROR` for the handshake's error, then
/// `getpeername(2)` for "connected" (mio's advice for portable code). Should an unconfirmed
/// connection still be pending after all, the first `send` says `EAGAIN` and the check waits
/// for the next readiness, under the same deadline.
pub fn conresult(
    p: &mut Probe,
    spec: &CheckSpec,
    target: &SocketAddr,
    buf: &mut [u8],
    plain: bool,
) -> Outcome {
    let Some(sock) = p.sock.as_ref() else {
        return Outcome::Pending;
    };
    if !plain {
        match so_error(sock.as_raw_fd()) {
            Ok(None) => {}
            Ok(Some(e)) => {
                let e = e.raw_os_error().unwrap_or(libc::EIO);
                return if is_local_errno(e) && e != libc::EAGAIN {
                    Outcome::Local(e)
                } else {
                    Outcome::Done(errno_verdict(e, true))
                };
            }
            Err(e) => return Outcome::Local(e.raw_os_error().unwrap_or(libc::EIO)),
        }
        match peer_addr(sock.as_raw_fd()) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return Outcome::Pending,
            Err(e) => {
                return Outcome::Done(errno_verdict(e.raw_os_error().unwrap_or(libc::EIO), true))
            }
        }
    }
    let step = spec.begin(&mut p.st);
    follow(p, spec, target, step, 0, buf)
}

/// Moves to the phase a plugin step asks for and attempts its I/O at once. `got` is the
/// number of bytes received so far in this check.
fn follow(
    p: &mut Probe,
    spec: &CheckSpec,
    target: &SocketAddr,
    step: Step,
    got: u32,
    buf: &mut [u8],
) -> Outcome {
    match step {
        Step::Done(v) => Outcome::Done(v),
        Step::Send => {
            p.set_phase(Phase::Query { sent: 0, got });
            send(p, spec, target, buf)
        }
        Step::Recv => {
            p.set_phase(Phase::Recv { got });
            recv(p, spec, target, buf)
        }
    }
}

/// What is left of `parts` (sent one after the other) once `sent` bytes are out: the
/// pieces, non-empty ones first, and how many there are.
fn unsent(parts: [&[u8]; 3], sent: usize) -> ([&[u8]; 3], usize) {
    let mut rest: [&[u8]; 3] = [&[]; 3];
    let (mut k, mut skip) = (0, sent);
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        rest[k] = &part[skip..];
        skip = 0;
        k += 1;
    }
    (rest, k)
}

/// Query phase: writes the plugin's bytes until done or `WouldBlock`, with `target` written
/// in where the plugin asks ([`CheckSpec::target_at`]).
pub fn send(p: &mut Probe, spec: &CheckSpec, target: &SocketAddr, buf: &mut [u8]) -> Outcome {
    let Phase::Query { mut sent, got } = p.phase else {
        return Outcome::Pending;
    };
    let Some(sock) = p.sock.as_ref() else {
        return Outcome::Pending;
    };
    let bytes = spec.send_bytes(&p.st);
    let mut text = [0u8; TARGET_TEXT_MAX];
    // Most requests go as they are; only one naming its target is sent in three pieces.
    let at = spec.target_at();
    let parts: [&[u8]; 3] = match at {
        Some(at) => {
            let n = target_text(*target, &mut text);
            [&bytes[..at], &text[..n], &bytes[at..]]
        }
        None => [bytes, &[], &[]],
    };
    let total = parts[0].len() + parts[1].len() + parts[2].len();
    while (sent as usize) < total {
        // SAFETY: the pointers and lengths describe live slices that are only read;
        // MSG_NOSIGNAL turns a closed peer into EPIPE.
        let n = unsafe {
            if at.is_none() {
                let rest = &bytes[sent as usize..];
                raw::send(
                    sock.as_raw_fd(),
                    rest.as_ptr(),
                    rest.len(),
                    libc::MSG_NOSIGNAL,
                )
            } else {
                let (rest, k) = unsent(parts, sent as usize);
                let mut iov = rest.map(|r| libc::iovec {
                    iov_base: r.as_ptr() as *mut libc::c_void,
                    iov_len: r.len(),
                });
                let mut msg: libc::msghdr = mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = k as _;
                raw::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
            }
        };
        if n < 0 {
            let e = last_errno();
            if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
                p.set_phase(Phase::Query { sent, got });
                return Outcome::Pending;
            }
            if e == libc::EINTR {
                continue;
            }
            return Outcome::Done(errno_verdict(e, false));
        }
        sent += n as u32;
    }
    p.set_phase(Phase::Query { sent, got });
    let step = spec.sent(&mut p.st);
    follow(p, spec, target, step, got, buf)
}

/// Recv phase: reads into the assigned buffer until `WouldBlock`, EOF or a verdict, handing
/// the plugin every byte so far. `buf` is the probe's buffer from the pool, or empty when
/// none is assigned yet.
pub fn recv(p: &mut Probe, spec: &CheckSpec, target: &SocketAddr, buf: &mut [u8]) -> Outcome {
    if spec.transport() == Transport::Udp {
        return recv_datagram(p, spec, buf);
    }
    let Phase::Recv { mut got } = p.phase else {
        return Outcome::Pending;
    };
    if buf.is_empty() {
        p.set_phase(Phase::Recv { got });
        return Outcome::NeedBuffer;
    }
    let Some(sock) = p.sock.as_ref() else {
        return Outcome::Pending;
    };
    let limit = spec.max_response().min(buf.len()).max(1);
    loop {
        if got as usize >= limit {
            p.set_phase(Phase::Recv { got });
            return Outcome::Done(Verdict::Fail(
                Reason::ResponseTooLarge,
                Detail::number(got as u64),
            ));
        }
        let space = &mut buf[got as usize..limit];
        // SAFETY: reads into a valid, writable slice.
        let n = unsafe { raw::recv(sock.as_raw_fd(), space.as_mut_ptr(), space.len(), 0) };
        if n < 0 {
            let e = last_errno();
            if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
                p.set_phase(Phase::Recv { got });
                return Outcome::Pending;
            }
            if e == libc::EINTR {
                continue;
            }
            p.set_phase(Phase::Recv { got });
            return Outcome::Done(errno_verdict(e, false));
        }
        if n == 0 {
            p.set_phase(Phase::Recv { got });
            if got == 0 {
                return Outcome::Done(Verdict::fail(Reason::Closed));
            }
            return Outcome::Done(spec.on_eof(&mut p.st, &buf[..got as usize]));
        }
        got += n as u32;
        match spec.on_data(&mut p.st, &buf[..got as usize]) {
            Step::Recv => {}
            Step::Done(v) => {
                p.set_phase(Phase::Recv { got });
                return Outcome::Done(v);
            }
            Step::Send => {
                // A dialogue step: send, then come back to reading with `got` kept.
                p.set_phase(Phase::Query { sent: 0, got });
                return send(p, spec, target, buf);
            }
        }
    }
}

/// The verdict for a deadline in the current phase.
pub fn deadline_verdict(p: &Probe) -> Verdict {
    match p.phase {
        Phase::ConResult => Verdict::fail(Reason::ConnectTimeout),
        Phase::Query { got: 0, .. } => Verdict::fail(Reason::Timeout),
        Phase::Query { got, .. } => Verdict::Fail(Reason::Timeout, Detail::number(got as u64)),
        Phase::Recv { got: 0 } => Verdict::fail(Reason::RecvTimeout),
        Phase::Recv { got } => Verdict::Fail(Reason::Timeout, Detail::number(got as u64)),
        Phase::Wait | Phase::Helper => Verdict::fail(Reason::Timeout),
    }
}

/// Registers a running check's socket again under probe `id`'s token (a reload renumbered
/// the probes). The registration reports the socket's current readiness again, so no edge
/// is lost.
///
/// # Errors
/// The registration failed; the caller closes the socket.
pub fn rebind(p: &mut Probe, id: u32, spec: &CheckSpec, registry: &Registry) -> io::Result<()> {
    let Some(s) = p.sock.as_ref() else {
        return Ok(());
    };
    let interest = if spec.transport() == Transport::Udp {
        Interest::READABLE
    } else {
        Interest::READABLE | Interest::WRITABLE
    };
    registry.reregister(
        &mut SourceFd(&s.as_raw_fd()),
        Probe::token(id, p.gen.into()),
        interest,
    )
}

/// Closes the socket and bumps the generation. With `polite` false the socket was set to
/// reset on close, so no TIME_WAIT remains.
///
/// No `EPOLL_CTL_DEL` first: the socket is never duplicated (it is close-on-exec, and a
/// notify command's spawn holds the loop until the exec), so closing it takes it out of the
/// epoll set, and a readiness already queued for it carries the old generation, which
/// [`Probe::untoken`] callers ignore. One system call fewer per check.
pub fn close(p: &mut Probe, registry: &Registry) {
    let _ = registry;
    if let Some(sock) = p.sock.take() {
        raw::close(sock);
    }
    p.gen = p.gen.wrapping_add(1);
    p.set_phase(Phase::Wait);
}

#[cfg(test)]
mod steps;

#[cfg(test)]
mod tests {
    use super::*;

    /// A start more than an hour late (the machine was suspended) keeps the grid's phase
    /// and still fits the probe's 32-bit start; an ordinary late start changes nothing.
    #[test]
    fn a_start_after_a_long_stop_keeps_the_grid() {
        let iv = 10_000_000;
        let at = Time(5_000_000);
        assert_eq!(catch_up(at, Time(5_030_000), iv), at);
        let now = Time(5_000_000 + 3 * 3_600_000_000 + 2_500_000);
        let moved = catch_up(at, now, iv);
        assert_eq!(moved.micros_since(at) % iv, 0, "off the grid");
        assert_eq!(now.micros_since(moved), 2_500_000);
        // An interval longer than the limit: the grid starts again at `now`.
        assert_eq!(catch_up(at, now, 5 * 3_600_000_000), now);
        let mut p = Probe::new(moved);
        p.started_after = now.micros_since(moved) as u32;
        assert_eq!(p.started(), now);
    }

    /// A check held over a stall of the loop keeps the time it had left: its deadlines move
    /// on by the stall, its grid point does not; a stall too long for the 32-bit start
    /// moves nothing and says so.
    #[test]
    fn a_check_held_over_a_stall_keeps_its_time_left() {
        let mut p = Probe::new(Time(1_000_000));
        p.started_after = 200;
        p.phase = Phase::Recv { got: 0 };
        let (connect, timeout) = (500_000, 1_000_000);
        assert_eq!(p.phase_deadline(connect, timeout), Time(2_000_200));
        assert!(p.hold(10_000_000));
        assert_eq!(p.scheduled, Time(1_000_000));
        assert_eq!(p.started(), Time(11_000_200));
        assert_eq!(p.phase_deadline(connect, timeout), Time(12_000_200));
        p.phase = Phase::ConResult;
        assert_eq!(p.phase_deadline(connect, timeout), Time(11_500_200));
        // Over an hour: left as it was.
        assert!(!p.hold(MAX_LATE_US));
        assert_eq!(p.started(), Time(11_000_200));
        assert!(p.hold(MAX_LATE_US - 10_000_200));
        assert_eq!(p.started_after as u64, MAX_LATE_US);
    }

    /// A request sent in pieces (head, address, tail) resumes at any byte: what is left is
    /// always the rest of the whole, whatever the piece lengths, empty ones included.
    #[test]
    fn unsent_is_the_rest_of_the_whole_at_every_offset() {
        let cases: [[&[u8]; 3]; 4] = [
            [b"GET / HTTP/1.1\r\nHost: ", b"10.0.0.5:80", b"\r\n\r\n"],
            [b"whole request", b"", b""],
            [b"", b"x", b""],
            [b"ab", b"", b"cd"],
        ];
        for parts in cases {
            let whole = parts.concat();
            for sent in 0..=whole.len() {
                let (rest, k) = unsent(parts, sent);
                assert!(rest[..k].iter().all(|r| !r.is_empty()));
                assert!(rest[k..].iter().all(|r| r.is_empty()));
                assert_eq!(rest.concat(), &whole[sent..], "{parts:?} at {sent}");
            }
        }
    }
}
