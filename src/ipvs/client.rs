//! The IPVS client: a generic netlink socket on the daemon's `mio` loop, changing and reading
//! the kernel's table without ever blocking the loop or allocating in it.
//!
//! At startup (before the loop runs) [`Netlink::open`] resolves the `IPVS` family, and reads
//! the whole table once, blocking with a time limit: that snapshot is how lvsmon adopts what
//! is already there (lvsmon(8), DECISIONS initial-state rule). From then on the socket is
//! non-blocking:
//! - [`Ipvs::submit`] queues an operation in a fixed ring; up to [`WINDOW`] requests are in
//!   flight at once, each with its own sequence number, and their ACKs (or errors) come back
//!   in order through [`Ipvs::on_ready`];
//! - [`Ipvs::start_dump`] queues a read-back of the table (every service, then the
//!   destinations of each service lvsmon manages); dumps run alone, one at a time, and their
//!   entries are handed out as they arrive;
//! - [`Ipvs::start_read`] queues a read of one service (`GET_SERVICE` for it, then a
//!   `GET_DEST` dump of its destinations), which the daemon asks for before it edits that
//!   service; like a read-back it runs alone, and never while a read-back runs.
//!
//! `EEXIST` on an add and `ENOENT`/`ESRCH` on a delete mean the table already is as asked,
//! and count as success. Any other error is handed to the daemon, which logs it and repairs
//! the table at the next resync. If the kernel drops replies (`ENOBUFS` on the socket), every
//! request in flight is reported failed and the daemon resyncs.

use std::collections::HashMap;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use super::sys;
use super::wire::{self, Reply};
use super::{DestExtra, Ipvs, IpvsEvent, Op, OpResult, Service};
use crate::config::ServiceKey;

/// Requests in flight at once.
pub const WINDOW: usize = 64;
/// The most operations waiting in the send queue. The daemon keeps what does not fit in
/// its own compact outbox until there is room, so this bounds memory, not the table's size.
pub const QUEUE_MAX: usize = 4096;
/// Size of the receive buffer: large enough for any dump datagram the kernel sends.
const RECV_BUF: usize = 64 * 1024;
/// How long startup waits for each reply.
const STARTUP_WAIT: Duration = Duration::from_secs(5);

/// Why the client could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The kernel has no `IPVS` generic netlink family.
    #[error(
        "IPVS is not available in this kernel (no generic netlink family \"IPVS\"): load it with `modprobe ip_vs`, or run lvsmon with --dry-run"
    )]
    NoIpvs,
    /// The kernel refused us (no CAP_NET_ADMIN).
    #[error("the kernel refused IPVS access ({0}): lvsmon needs CAP_NET_ADMIN (run it as root)")]
    Denied(&'static str),
    /// The netlink socket failed.
    #[error("netlink: {0}")]
    Io(#[from] io::Error),
    /// The kernel sent something that does not decode.
    #[error("netlink: {0}")]
    Wire(#[from] wire::WireError),
}

/// A queued request.
#[derive(Debug, Clone, Copy)]
enum Request {
    Op(Op),
    DumpServices,
    DumpDests(u32),
    /// A read of one service: the service, then its destinations.
    GetService(ServiceKey),
    ReadDests(ServiceKey),
}

/// A fixed-capacity FIFO.
#[derive(Debug)]
struct Ring<T: Copy> {
    buf: Box<[Option<T>]>,
    head: usize,
    len: usize,
}

impl<T: Copy> Ring<T> {
    fn new(cap: usize) -> Ring<T> {
        Ring {
            buf: vec![None; cap.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, v: T) -> bool {
        if self.len == self.buf.len() {
            return false;
        }
        let i = (self.head + self.len) % self.buf.len();
        self.buf[i] = Some(v);
        self.len += 1;
        true
    }
    /// Grows to `cap` entries, keeping what waits in order.
    fn grow(&mut self, cap: usize) {
        if cap <= self.buf.len() {
            return;
        }
        let mut bigger = Ring::new(cap);
        while let Some(v) = self.pop() {
            bigger.push(v);
        }
        *self = bigger;
    }
    fn front(&self) -> Option<T> {
        if self.len == 0 {
            None
        } else {
            self.buf[self.head]
        }
    }
    fn pop(&mut self) -> Option<T> {
        let v = self.front()?;
        self.buf[self.head] = None;
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(v)
    }
}

/// The netlink IPVS client. See the module docs.
pub struct Netlink {
    sock: OwnedFd,
    family: u16,
    seq: u32,
    /// Services lvsmon manages, with the address family of each (for fwmark services).
    managed: Box<[(ServiceKey, u16)]>,
    fwmark_af: HashMap<u32, u16>,
    queue: Ring<Request>,
    inflight: Ring<(u32, Request)>,
    /// A dump in flight: its sequence number.
    dump_seq: Option<u32>,
    /// A read-back in progress (services, then each managed service's destinations).
    dumping: bool,
    sendbuf: Box<[u8; 1024]>,
    recvbuf: Box<[u8]>,
    snapshot_services: HashMap<ServiceKey, Service>,
    snapshot_dests: HashMap<(ServiceKey, SocketAddr), (u32, DestExtra)>,
    /// The service a running dest dump is for.
    dump_service: Option<ServiceKey>,
    /// A read of one service is queued or running ([`Ipvs::start_read`]).
    reading: bool,
    /// The request in flight as `dump_seq` belongs to that read.
    dump_read: bool,
    /// Managed services a reload set while a read-back ran (which indexes `managed`):
    /// they take effect when the next one starts.
    next_managed: Option<Box<[(ServiceKey, u16)]>>,
}

/// A new generic netlink socket (close-on-exec, blocking).
pub(crate) fn generic_netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_GENERIC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl Netlink {
    /// Opens the socket, resolves the `IPVS` family and reads the current table of the
    /// `managed` services (with their address families). `queue_cap` bounds the operations
    /// waiting to be sent.
    ///
    /// # Errors
    /// No IPVS in the kernel, no permission, or a socket failure.
    pub fn open(managed: &[(ServiceKey, u16)], queue_cap: usize) -> Result<Netlink, OpenError> {
        let sock = generic_netlink_socket().map_err(OpenError::Io)?;
        let fd = sock.as_raw_fd();
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: binds to a kernel-chosen port id.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(OpenError::Io(io::Error::last_os_error()));
        }
        // Room for bursts of ACKs and dump replies.
        let size: libc::c_int = 1 << 20;
        // SAFETY: setsockopt with a correctly sized int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                4,
            );
        }
        let fwmark_af = managed
            .iter()
            .filter_map(|(k, af)| match k {
                ServiceKey::Fwmark(m) => Some((*m, *af)),
                _ => None,
            })
            .collect();
        let mut nl = Netlink {
            sock,
            family: 0,
            seq: 1,
            managed: managed.to_vec().into_boxed_slice(),
            fwmark_af,
            // Operations, plus a place for each managed service's destination dump.
            queue: Ring::new(queue_cap.clamp(WINDOW, QUEUE_MAX) + managed.len() + 1),
            inflight: Ring::new(WINDOW),
            dump_seq: None,
            dumping: false,
            sendbuf: Box::new([0u8; 1024]),
            recvbuf: vec![0u8; RECV_BUF].into_boxed_slice(),
            snapshot_services: HashMap::new(),
            snapshot_dests: HashMap::new(),
            dump_service: None,
            reading: false,
            dump_read: false,
            next_managed: None,
        };
        nl.resolve()?;
        nl.read_snapshot()?;
        // From now on the loop never blocks on this socket.
        // SAFETY: fcntl on our own fd.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        Ok(nl)
    }

    /// The `IPVS` family id.
    pub fn family(&self) -> u16 {
        self.family
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    fn send_raw(&self, msg: &[u8]) -> Result<(), i32> {
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sends a valid buffer to the kernel's address.
        let n = unsafe {
            libc::sendto(
                self.fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(())
        }
    }

    /// Receives one datagram into `recvbuf`; returns its length.
    fn recv_raw(&mut self) -> Result<usize, i32> {
        // SAFETY: reads into our own buffer.
        let n = unsafe {
            libc::recv(
                self.sock.as_raw_fd(),
                self.recvbuf.as_mut_ptr().cast(),
                self.recvbuf.len(),
                0,
            )
        };
        if n < 0 {
            Err(last_errno())
        } else {
            Ok(n as usize)
        }
    }

    /// Waits (startup only) until a datagram arrives or the time runs out.
    fn recv_blocking(&mut self, until: Instant) -> Result<usize, OpenError> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(OpenError::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the kernel",
                )));
            }
            let mut pfd = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one fd we own.
            let rc =
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if rc < 0 && last_errno() != libc::EINTR {
                return Err(OpenError::Io(io::Error::last_os_error()));
            }
            if rc > 0 {
                match self.recv_raw() {
                    Ok(n) => return Ok(n),
                    Err(e) if e == libc::EINTR || e == libc::EAGAIN => continue,
                    Err(e) => return Err(OpenError::Io(io::Error::from_raw_os_error(e))),
                }
            }
        }
    }

    fn resolve(&mut self) -> Result<(), OpenError> {
        let seq = self.next_seq();
        let msg = wire::build_getfamily(&mut self.sendbuf[..], seq, sys::IPVS_GENL_NAME)?.len();
        self.send_raw(&self.sendbuf[..msg])
            .map_err(|e| OpenError::Io(io::Error::from_raw_os_error(e)))?;
        let until = Instant::now() + STARTUP_WAIT;
        loop {
            let n = self.recv_blocking(until)?;
            let mut found = None;
            for m in wire::messages(&self.recvbuf[..n]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                match wire::decode(&m, 0)? {
                    Reply::Family { id, .. } => found = Some(Ok(id)),
                    Reply::Error { errno, .. } if errno == libc::ENOENT => {
                        found = Some(Err(OpenError::NoIpvs))
                    }
                    Reply::Error { errno, .. } => {
                        found = Some(Err(OpenError::Io(io::Error::from_raw_os_error(errno))))
                    }
                    _ => {}
                }
            }
            match found {
                Some(Ok(id)) => {
                    self.family = id;
                    return Ok(());
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
    }

    /// Runs one dump to its end (startup only), handing each reply to `f`.
    fn dump_blocking(&mut self, req: Request, f: &mut dyn FnMut(Reply)) -> Result<(), OpenError> {
        let seq = self.next_seq();
        let len = self.build(req, seq)?;
        self.send_raw(&self.sendbuf[..len])
            .map_err(|e| OpenError::Io(io::Error::from_raw_os_error(e)))?;
        let until = Instant::now() + STARTUP_WAIT;
        loop {
            let n = self.recv_blocking(until)?;
            let mut done = false;
            let mut err = None;
            for m in wire::messages(&self.recvbuf[..n]) {
                let m = m?;
                if m.seq != seq {
                    continue;
                }
                match wire::decode(&m, self.family)? {
                    Reply::Done { .. } | Reply::Ack { .. } => done = true,
                    Reply::Error { errno, .. } => {
                        done = true;
                        err = Some(errno);
                    }
                    r => f(r),
                }
            }
            match err {
                Some(libc::EPERM) | Some(libc::EACCES) => return Err(OpenError::Denied("EPERM")),
                // A managed service that does not exist has no destinations.
                Some(libc::ESRCH) | Some(libc::ENOENT) | None => {}
                Some(e) => return Err(OpenError::Io(io::Error::from_raw_os_error(e))),
            }
            if done {
                return Ok(());
            }
        }
    }

    fn read_snapshot(&mut self) -> Result<(), OpenError> {
        let mut services = HashMap::new();
        self.dump_blocking(Request::DumpServices, &mut |r| {
            if let Reply::Service { info, .. } = r {
                services.insert(info.key, info.service);
            }
        })?;
        let mut dests = HashMap::new();
        for i in 0..self.managed.len() {
            let key = self.managed[i].0;
            if !services.contains_key(&key) {
                continue;
            }
            self.dump_blocking(Request::DumpDests(i as u32), &mut |r| {
                if let Reply::Dest { info, .. } = r {
                    dests.insert((key, info.addr), (info.weight, info.extra));
                }
            })?;
        }
        self.snapshot_services = services;
        self.snapshot_dests = dests;
        Ok(())
    }

    fn fwmark_af(&self, key: &ServiceKey) -> u16 {
        match key {
            ServiceKey::Fwmark(m) => self
                .fwmark_af
                .get(m)
                .copied()
                .unwrap_or(libc::AF_INET as u16),
            ServiceKey::Inet(..) => 0,
        }
    }

    /// Builds `req` into `sendbuf`; returns its length.
    fn build(&mut self, req: Request, seq: u32) -> Result<usize, wire::WireError> {
        let fam = self.family;
        match req {
            Request::Op(op) => {
                let key = op.service();
                let af = self.fwmark_af(&key);
                Ok(wire::build_op(&mut self.sendbuf[..], fam, seq, &op, af)?.len())
            }
            Request::DumpServices => {
                Ok(wire::build_dump_services(&mut self.sendbuf[..], fam, seq)?.len())
            }
            Request::DumpDests(i) => {
                let key = self.managed[i as usize].0;
                let af = self.fwmark_af(&key);
                Ok(wire::build_dump_dests(&mut self.sendbuf[..], fam, seq, &key, af)?.len())
            }
            Request::GetService(key) => {
                let af = self.fwmark_af(&key);
                Ok(wire::build_get_service(&mut self.sendbuf[..], fam, seq, &key, af)?.len())
            }
            Request::ReadDests(key) => {
                let af = self.fwmark_af(&key);
                Ok(wire::build_dump_dests(&mut self.sendbuf[..], fam, seq, &key, af)?.len())
            }
        }
    }

    /// Sends queued requests while the window has room. A dump goes out alone.
    fn pump(&mut self, out: &mut dyn FnMut(IpvsEvent)) {
        while self.dump_seq.is_none() && self.inflight.len < WINDOW {
            let Some(req) = self.queue.front() else {
                return;
            };
            let is_dump = !matches!(req, Request::Op(_));
            if is_dump && self.inflight.len > 0 {
                return;
            }
            let seq = self.next_seq();
            let len = match self.build(req, seq) {
                Ok(n) => n,
                Err(_) => {
                    self.queue.pop();
                    if let Request::Op(op) = req {
                        out(IpvsEvent::Done(op, OpResult::Error(libc::EMSGSIZE)));
                    }
                    continue;
                }
            };
            match self.send_raw(&self.sendbuf[..len]) {
                Ok(()) => {
                    self.queue.pop();
                    if is_dump {
                        self.dump_seq = Some(seq);
                        self.dump_service = match req {
                            Request::DumpDests(i) => Some(self.managed[i as usize].0),
                            Request::ReadDests(k) => Some(k),
                            _ => None,
                        };
                        self.dump_read =
                            matches!(req, Request::GetService(_) | Request::ReadDests(_));
                    } else {
                        self.inflight.push((seq, req));
                    }
                }
                // The socket's send side is full: try again at the next turn.
                Err(e) if e == libc::EAGAIN || e == libc::EINTR || e == libc::ENOBUFS => return,
                Err(e) => {
                    self.queue.pop();
                    match req {
                        Request::Op(op) => out(IpvsEvent::Done(op, OpResult::Error(e))),
                        Request::GetService(_) | Request::ReadDests(_) => {
                            self.end_read(false, false, out)
                        }
                        _ => self.end_dump(false, out),
                    }
                }
            }
        }
    }

    fn end_dump(&mut self, ok: bool, out: &mut dyn FnMut(IpvsEvent)) {
        self.dump_seq = None;
        self.dump_service = None;
        // Drop the rest of this read-back's queued dumps on failure.
        if !ok {
            let n = self.queue.len;
            for _ in 0..n {
                if let Some(r) = self.queue.pop() {
                    if let Request::Op(_) = r {
                        self.queue.push(r);
                    }
                }
            }
        }
        let more = self
            .queue
            .buf
            .iter()
            .flatten()
            .any(|r| !matches!(r, Request::Op(_)));
        if !more || !ok {
            self.dumping = false;
            out(IpvsEvent::DumpDone { ok });
        }
    }

    /// A part of a read of one service ended (`last`: its destinations, the last part).
    fn end_read(&mut self, ok: bool, last: bool, out: &mut dyn FnMut(IpvsEvent)) {
        self.dump_seq = None;
        self.dump_service = None;
        self.dump_read = false;
        if !ok {
            // Drop the rest of the read.
            let n = self.queue.len;
            for _ in 0..n {
                if let Some(r) = self.queue.pop() {
                    if !matches!(r, Request::ReadDests(_)) {
                        self.queue.push(r);
                    }
                }
            }
        }
        if !ok || last {
            self.reading = false;
            out(IpvsEvent::ReadDone { ok });
        }
    }

    /// The result of op `op` given an errno from the kernel (0 = success).
    fn result_of(op: &Op, errno: i32) -> OpResult {
        match (op, errno) {
            (_, 0) => OpResult::Ok,
            (Op::AddService(_) | Op::AddDest(..), libc::EEXIST) => OpResult::Ok,
            (Op::DelService(_) | Op::DelDest(..), libc::ENOENT | libc::ESRCH) => OpResult::Ok,
            (_, e) => OpResult::Error(e),
        }
    }

    fn handle(&mut self, r: Reply, out: &mut dyn FnMut(IpvsEvent)) {
        let seq = match r {
            Reply::Ack { seq }
            | Reply::Error { seq, .. }
            | Reply::Done { seq }
            | Reply::Other { seq } => seq,
            Reply::Family { seq, .. } | Reply::Service { seq, .. } | Reply::Dest { seq, .. } => seq,
        };
        if Some(seq) == self.dump_seq && self.dump_read {
            // The destinations are the read's last part.
            let last = self.dump_service.is_some();
            match r {
                Reply::Service { info, .. } => out(IpvsEvent::Service(info)),
                Reply::Dest { info, .. } => {
                    if let Some(k) = self.dump_service {
                        out(IpvsEvent::Dest(k, info));
                    }
                }
                Reply::Done { .. } | Reply::Ack { .. } => self.end_read(true, last, out),
                // The service is not there: it has no destinations either.
                Reply::Error { errno, .. } if errno == libc::ESRCH || errno == libc::ENOENT => {
                    self.end_read(true, last, out)
                }
                Reply::Error { .. } => self.end_read(false, last, out),
                _ => {}
            }
            return;
        }
        if Some(seq) == self.dump_seq {
            match r {
                Reply::Service { info, .. } => out(IpvsEvent::Service(info)),
                Reply::Dest { info, .. } => {
                    if let Some(k) = self.dump_service {
                        out(IpvsEvent::Dest(k, info));
                    }
                }
                Reply::Done { .. } | Reply::Ack { .. } => {
                    if self.dump_service.is_none() {
                        // The service list is in: now each managed service's destinations.
                        for i in 0..self.managed.len() {
                            self.queue.push(Request::DumpDests(i as u32));
                        }
                    }
                    self.end_dump(true, out);
                }
                // A managed service that is missing has no destinations to list.
                Reply::Error { errno, .. } if errno == libc::ESRCH || errno == libc::ENOENT => {
                    self.end_dump(true, out)
                }
                Reply::Error { .. } => self.end_dump(false, out),
                _ => {}
            }
            return;
        }
        match r {
            Reply::Ack { seq } | Reply::Error { seq, .. } => {
                let errno = if let Reply::Error { errno, .. } = r {
                    errno
                } else {
                    0
                };
                // Replies come in request order; anything older than `seq` was lost.
                while let Some((s, req)) = self.inflight.front() {
                    if s.wrapping_sub(seq) as i32 > 0 {
                        break;
                    }
                    self.inflight.pop();
                    if let Request::Op(op) = req {
                        let res = if s == seq {
                            Self::result_of(&op, errno)
                        } else {
                            OpResult::Error(libc::EIO)
                        };
                        out(IpvsEvent::Done(op, res));
                    }
                    if s == seq {
                        break;
                    }
                }
            }
            _ => {}
        }
    }

    /// Every request in flight is lost (the socket overran): report them failed.
    fn fail_inflight(&mut self, errno: i32, out: &mut dyn FnMut(IpvsEvent)) {
        while let Some((_, req)) = self.inflight.pop() {
            if let Request::Op(op) = req {
                out(IpvsEvent::Done(op, OpResult::Error(errno)));
            }
        }
        if self.dump_seq.is_some() {
            if self.dump_read {
                self.end_read(false, false, out);
            } else {
                self.end_dump(false, out);
            }
        }
    }
}

impl Ipvs for Netlink {
    fn submit(&mut self, op: Op) -> Option<OpResult> {
        if !self.queue.push(Request::Op(op)) {
            return Some(OpResult::Error(libc::ENOBUFS));
        }
        None
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.sock.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    fn on_ready(&mut self, out: &mut dyn FnMut(IpvsEvent)) {
        loop {
            let n = match self.recv_raw() {
                Ok(n) => n,
                Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => break,
                Err(e) if e == libc::EINTR => continue,
                Err(e) => {
                    // ENOBUFS: the kernel dropped replies for us.
                    self.fail_inflight(e, out);
                    break;
                }
            };
            let mut k = 0;
            while k < n {
                // Decode one message at a time so `handle` may borrow self mutably.
                let (reply, next) = {
                    let mut it = wire::messages(&self.recvbuf[k..n]);
                    match it.next() {
                        Some(Ok(m)) => {
                            let adv = (m.payload.len() + 16 + 3) & !3;
                            (wire::decode(&m, self.family).ok(), adv)
                        }
                        _ => (None, n - k),
                    }
                };
                k += next.max(1);
                if let Some(r) = reply {
                    self.handle(r, out);
                }
            }
        }
        self.pump(out);
    }

    fn flush(&mut self, out: &mut dyn FnMut(IpvsEvent)) {
        self.pump(out);
    }

    fn room(&self) -> usize {
        // The read-back's requests (one, then one per managed service) always find a place.
        let dumps = 1 + self
            .managed
            .len()
            .max(self.next_managed.as_ref().map_or(0, |m| m.len()));
        (self.queue.buf.len() - self.queue.len).saturating_sub(dumps)
    }

    fn pending(&self) -> bool {
        self.queue.len > 0 && self.dump_seq.is_none() && self.inflight.len < WINDOW
    }

    fn start_read(&mut self, key: ServiceKey) -> bool {
        if self.dumping || self.reading {
            return false;
        }
        // `room` keeps a place for a read-back's requests, more than these two.
        if self.queue.len + 2 > self.queue.buf.len() {
            return false;
        }
        self.queue.push(Request::GetService(key));
        self.queue.push(Request::ReadDests(key));
        self.reading = true;
        true
    }

    fn start_dump(&mut self) -> bool {
        if self.dumping || self.reading {
            return false;
        }
        if let Some(m) = self.next_managed.take() {
            self.managed = m;
        }
        if !self.queue.push(Request::DumpServices) {
            return false;
        }
        self.dumping = true;
        true
    }

    fn existing_weight(&self, service: ServiceKey, dest: SocketAddr) -> Option<u32> {
        self.snapshot_dests.get(&(service, dest)).map(|d| d.0)
    }

    fn existing_dest(&self, service: ServiceKey, dest: SocketAddr) -> Option<DestExtra> {
        self.snapshot_dests.get(&(service, dest)).map(|d| d.1)
    }

    fn existing_service(&self, key: ServiceKey) -> Option<Service> {
        self.snapshot_services.get(&key).copied()
    }

    fn forget_snapshot(&mut self) {
        self.snapshot_dests = HashMap::new();
        self.snapshot_services = HashMap::new();
    }

    fn reconfigure(&mut self, managed: &[(ServiceKey, u16)], queue_cap: usize) {
        // Entries of removed services stay: their del-service may still be queued.
        self.fwmark_af
            .extend(managed.iter().filter_map(|(k, af)| match k {
                ServiceKey::Fwmark(m) => Some((*m, *af)),
                _ => None,
            }));
        self.queue
            .grow(queue_cap.clamp(WINDOW, QUEUE_MAX) + managed.len() + 1);
        let m: Box<[(ServiceKey, u16)]> = managed.into();
        if self.dumping {
            self.next_managed = Some(m);
        } else {
            self.managed = m;
            self.next_managed = None;
        }
    }
}
