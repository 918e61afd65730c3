//! The TLS helper process: `lvsmon tls-helper`, started by the daemon (never by hand) with
//! its end of the record socketpair on descriptor 3 and its configuration on descriptor 4.
//!
//! It runs every TLS check: connect, the plain STARTTLS dialogue if any, the handshake
//! (rustls, ring), the certificate's expiry, then the `https` exchange or the greeting,
//! judged by the plugins' own code. One thread, one mio loop, at most `max_in_flight` checks
//! at once (a request beyond that is answered at once as a local error), each reading at most
//! `max_bytes` from its server. It may allocate: it is not the daemon's loop.
//!
//! A check that ends with its handshake on TLS 1.3 is answered then, but when its target has
//! no session ticket left it keeps its connection (and slot) a little longer, for the ticket
//! the server sends after the handshake (`Stage::Ticket`).
//!
//! Privileges: it starts as the daemon's user inside the daemon's chroot (it is started after
//! the drop), gives up every capability it may still hold, sets no_new_privs, and asks the
//! kernel to kill it when the daemon dies. The roots it verifies against were read by the
//! daemon before the chroot and come in the configuration.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue, WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind,
    NamedGroup, ProtocolVersion, RootCertStore,
};

use super::wire::{self, Answer, Outcome, Request, REQUEST_LEN};
use crate::plugins::tls::{StartTls, Tls};
use crate::plugins::{target_text, CheckSpec, CheckState, Detail, Reason, Step, Target, Verdict};

/// The record socket's descriptor in the helper.
pub const RECORD_FD: RawFd = 3;
/// The configuration's descriptor in the helper.
pub const CONFIG_FD: RawFd = 4;
const CONTROL: Token = Token(usize::MAX);
/// The size of a target's session cache (rustls's in memory): any size up to 8 keeps one
/// server, which is all a target's own cache ever sees, with a TLS 1.2 session and up to
/// [`TICKETS_KEPT`] TLS 1.3 tickets.
const SESSIONS_PER_TARGET: usize = 4;
/// Targets with a session cache of their own; more share their check's.
const MAX_TARGETS: usize = 65_536;
/// TLS 1.3 tickets rustls's in-memory cache keeps for one server (the oldest goes first).
const TICKETS_KEPT: usize = 8;
/// How long a handshake-only check on TLS 1.3 keeps its connection open after its verdict,
/// for the session ticket its target's next check will resume with. The server sends it once
/// it has our Finished: one round trip on the director's network, plus the server's own
/// delay, milliseconds when it is busy. 200 ms is ample for that and far below any interval,
/// and never past the check's own timeout.
const TICKET_WAIT: Duration = Duration::from_millis(200);

/// One kind of TLS check, as the helper runs it.
struct Kind {
    tls: Tls,
    /// The configuration shared by every target of the kind (and the template of theirs).
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

/// Where a check stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    /// STARTTLS dialogue: which exchange (0: greeting, 1.. the commands' replies).
    Plain(u8),
    Handshake,
    /// After the handshake: the request is out (`https`), waiting for the answer.
    Exchange,
    /// A handshake-only check on TLS 1.3 that passed: waiting for a session ticket (see
    /// [`TICKET_WAIT`]).
    Ticket,
}

/// A target's sessions: rustls's in-memory cache, which also counts the TLS 1.3 tickets it
/// holds, so a check knows whether the next one will have one to offer.
#[derive(Debug)]
struct Sessions {
    cache: ClientSessionMemoryCache,
    /// TLS 1.3 tickets stored and not taken yet (as many as the cache keeps at most).
    tickets: AtomicUsize,
}

impl Sessions {
    fn new() -> Sessions {
        Sessions {
            cache: ClientSessionMemoryCache::new(SESSIONS_PER_TARGET),
            tickets: AtomicUsize::new(0),
        }
    }

    /// TLS 1.3 tickets the next check may resume with.
    fn tickets(&self) -> usize {
        self.tickets.load(Ordering::Relaxed)
    }

    /// Drops the TLS 1.3 tickets stored for `name`.
    fn forget_tickets(&self, name: &ServerName<'static>) {
        while self.take_tls13_ticket(name).is_some() {}
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache.set_kx_hint(server_name, group);
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.cache.set_tls12_session(server_name, value);
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.cache.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.cache.remove_tls12_session(server_name);
    }

    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.cache.insert_tls13_ticket(server_name, value);
        let _ = self
            .tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some((n + 1).min(TICKETS_KEPT))
            });
    }

    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        let t = self.cache.take_tls13_ticket(server_name);
        if t.is_some() {
            let _ = self
                .tickets
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(1))
                });
        }
        t
    }
}

struct Conn {
    req: Request,
    kind: usize,
    stream: TcpStream,
    tls: Option<ClientConnection>,
    stage: Stage,
    started: Instant,
    connect_by: Instant,
    deadline: Instant,
    /// Plain bytes of the STARTTLS dialogue, or the plaintext answer after the handshake.
    rx: Vec<u8>,
    st: CheckState,
    not_after: i64,
    /// Bytes read from the socket so far.
    read: usize,
    /// The verdict is sent (a connection kept for its session ticket).
    answered: bool,
}

/// Accepts any certificate (without `--verify`), but still checks the handshake's signatures
/// with it, so the peer proves it holds the key of the certificate it showed.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `--verify` without a single root: every certificate is of an unknown issuer.
#[derive(Debug)]
struct NoRoots(AnyCert);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The helper's configuration, as the daemon wrote it (`super::config_blob`).
struct Config {
    max_in_flight: usize,
    max_bytes: usize,
    kinds: Vec<Kind>,
}

fn fail(msg: &str) -> ! {
    eprintln!("lvsmon tls-helper: {msg}");
    std::process::exit(1);
}

fn load_config(blob: &[u8]) -> Result<Config, String> {
    let bad = || "bad configuration".to_string();
    let (magic, rest) = blob.split_at_checked(wire::MAGIC.len()).ok_or_else(bad)?;
    if magic != wire::MAGIC {
        return Err(bad());
    }
    let mut r = wire::Reader::new(rest);
    let max_in_flight = r.u32().ok_or_else(bad)? as usize;
    let max_bytes = r.u32().ok_or_else(bad)? as usize;
    let n_roots = r.u32().ok_or_else(bad)?;
    // ring's provider: its key exchanges are classical only (no post-quantum hybrid), which
    // is all a health check needs (it protects no secret), and it builds with a C compiler
    // alone, where aws-lc-rs needs cmake.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // X25519 first: the key share sent in every ClientHello is the first group's, and ring's
    // default list starts with P-384, whose key exchange (no assembly in ring) took 38 % of
    // the helper's CPU in bench/tls.sh. P-384 stays offered, last, for servers that want it.
    {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    let provider = Arc::new(provider);
    let mut roots = Vec::new();
    for _ in 0..n_roots {
        let pem = r.bytes().ok_or_else(bad)?;
        let mut store = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(pem).flatten() {
            let _ = store.add(c);
        }
        roots.push(Arc::new(store));
    }
    let n_kinds = r.u32().ok_or_else(bad)?;
    let mut kinds = Vec::new();
    for _ in 0..n_kinds {
        let plugin = std::str::from_utf8(r.bytes().ok_or_else(bad)?).map_err(|_| bad())?;
        let root = r.u32().ok_or_else(bad)? as usize;
        let n = r.u32().ok_or_else(bad)?;
        let mut words = Vec::new();
        for _ in 0..n {
            words.push(r.bytes().ok_or_else(bad)?);
        }
        let target = Target {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let tls = match CheckSpec::parse(plugin, &words, target) {
            Ok(CheckSpec::Tls(t)) => *t,
            Ok(_) => return Err(bad()),
            Err(e) => return Err(e.message),
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = if tls.opts.verify {
            let store = roots.get(root).cloned().ok_or_else(bad)?;
            if store.is_empty() {
                // No roots at all (no ca-certificates, an unreadable --ca): every chain is
                // of an unknown issuer, which is what each check says.
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(NoRoots(AnyCert(provider.clone()))))
                    .with_no_client_auth()
            } else {
                let v = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                    .build()
                    .map_err(|e| format!("roots: {e}"))?;
                builder.with_webpki_verifier(v).with_no_client_auth()
            }
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider.clone())))
                .with_no_client_auth()
        };
        config.alpn_protocols = tls.opts.alpn.clone();
        config.resumption = if tls.opts.no_resume {
            Resumption::disabled()
        } else {
            Resumption::in_memory_sessions(SESSIONS_PER_TARGET)
        };
        let server_name = tls
            .opts
            .sni
            .as_ref()
            .and_then(|n| ServerName::try_from(n.clone()).ok());
        kinds.push(Kind {
            tls,
            config: Arc::new(config),
            server_name,
        });
    }
    Ok(Config {
        max_in_flight: max_in_flight.max(1),
        max_bytes: max_bytes.max(1024),
        kinds,
    })
}

/// Gives up every capability, sets no_new_privs, and dies with the daemon.
fn drop_all() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() == 1 {
            // The daemon is already gone.
            std::process::exit(0);
        }
    }
    drop_capabilities()?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Empties the bounding, ambient, inheritable, permitted and effective capability sets.
fn drop_capabilities() -> io::Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments; EINVAL past the last capability is ignored,
        // and EPERM (no CAP_SETPCAP: already dropped by the daemon) too.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: as above.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut h = Header {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let d = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capset with a version 3 header and two data words.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The helper's `main`: returns the exit status.
pub fn main() -> i32 {
    // SAFETY: the daemon passes these two descriptors; nothing else owns them here.
    let control = unsafe { OwnedFd::from_raw_fd(RECORD_FD) };
    let mut blob = Vec::new();
    // SAFETY: as above.
    let mut cfg_file = unsafe { std::fs::File::from_raw_fd(CONFIG_FD) };
    if let Err(e) = cfg_file.read_to_end(&mut blob) {
        fail(&format!("reading the configuration: {e}"));
    }
    drop(cfg_file);
    if let Err(e) = drop_all() {
        fail(&format!("dropping capabilities: {e}"));
    }
    let cfg = load_config(&blob).unwrap_or_else(|e| fail(&e));
    drop(blob);
    match Helper::new(control, cfg).and_then(|mut h| h.run()) {
        Ok(()) => 0,
        Err(e) => fail(&format!("{e}")),
    }
}

struct Helper {
    poll: Poll,
    control: OwnedFd,
    cfg: Config,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    /// The slots in use (deadlines are looked for among these alone).
    active: Vec<usize>,
    /// Verdicts the daemon had no room for yet.
    out: std::collections::VecDeque<[u8; wire::VERDICT_LEN]>,
    /// Targets with sessions of their own: their configuration, and its sessions.
    targets: HashMap<(usize, SocketAddr), (Arc<ClientConfig>, Arc<Sessions>)>,
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on our own descriptor.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn io_reason(e: &io::Error, connecting: bool) -> Verdict {
    let errno = e.raw_os_error().unwrap_or(libc::EIO);
    crate::monitor::phase::errno_verdict(errno, connecting)
}

/// A TLS error's reason and detail.
fn tls_verdict(e: &rustls::Error) -> Verdict {
    use rustls::Error as E;
    let (reason, text): (Reason, &str) = match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                (Reason::TlsExpiry, "expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                (Reason::TlsVerify, "not yet valid")
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (Reason::TlsVerify, "wrong name")
            }
            CertificateError::UnknownIssuer => (Reason::TlsVerify, "unknown issuer"),
            CertificateError::BadSignature => (Reason::TlsVerify, "bad signature"),
            CertificateError::BadEncoding => (Reason::TlsVerify, "bad encoding"),
            CertificateError::Revoked => (Reason::TlsVerify, "revoked"),
            other => return Verdict::fail_with(Reason::TlsVerify, format!("{other:?}").as_bytes()),
        },
        E::AlertReceived(a) => {
            let mut d = Detail::text(b"alert ");
            d.push(format!("{a:?}").as_bytes());
            return Verdict::Fail(Reason::TlsHandshake, d);
        }
        E::InvalidMessage(_) => (Reason::TlsHandshake, "not TLS"),
        E::PeerIncompatible(_) => (Reason::TlsHandshake, "incompatible peer"),
        E::NoApplicationProtocol => (Reason::TlsHandshake, "no ALPN protocol agreed"),
        _ => (Reason::TlsHandshake, "handshake failed"),
    };
    Verdict::fail_with(reason, text.as_bytes())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Helper {
    fn new(control: OwnedFd, cfg: Config) -> io::Result<Helper> {
        let poll = Poll::new()?;
        set_nonblocking(control.as_raw_fd());
        poll.registry().register(
            &mut SourceFd(&control.as_raw_fd()),
            CONTROL,
            Interest::READABLE,
        )?;
        let n = cfg.max_in_flight;
        Ok(Helper {
            poll,
            control,
            cfg,
            conns: (0..n).map(|_| None).collect(),
            free: (0..n).rev().collect(),
            active: Vec::with_capacity(n),
            out: Default::default(),
            targets: HashMap::new(),
        })
    }

    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(256);
        loop {
            let now = Instant::now();
            let next = self
                .active
                .iter()
                .filter_map(|&k| self.conns[k].as_ref())
                .map(|c| {
                    if c.stage == Stage::Connecting {
                        c.connect_by.min(c.deadline)
                    } else {
                        c.deadline
                    }
                })
                .min();
            let timeout = next.map(|t| t.saturating_duration_since(now) + Duration::from_millis(1));
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                if ev.token() == CONTROL {
                    if ev.is_writable() {
                        self.flush()?;
                    }
                    if (ev.is_readable() || ev.is_read_closed()) && !self.requests()? {
                        return Ok(());
                    }
                    continue;
                }
                let slot = ev.token().0;
                if let Some(v) = self.step(slot) {
                    self.finish(slot, v)?;
                }
            }
            self.expire()?;
        }
    }

    /// Reads requests until the socket is empty; false when the daemon is gone.
    fn requests(&mut self) -> io::Result<bool> {
        let mut rec = [0u8; REQUEST_LEN + 1];
        loop {
            // SAFETY: reads into our buffer.
            let n = unsafe {
                libc::recv(
                    self.control.as_raw_fd(),
                    rec.as_mut_ptr().cast(),
                    rec.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => Ok(false),
                };
            }
            if n == 0 {
                return Ok(false);
            }
            let Some(req) = Request::decode(&rec[..n as usize]) else {
                continue;
            };
            self.start(req)?;
        }
    }

    fn answer(&mut self, a: Answer) -> io::Result<()> {
        self.out.push_back(a.encode());
        self.flush()
    }

    /// Sends queued verdicts while the daemon's side has room.
    fn flush(&mut self) -> io::Result<()> {
        while let Some(rec) = self.out.front() {
            // SAFETY: sends from our buffer.
            let n = unsafe {
                libc::send(
                    self.control.as_raw_fd(),
                    rec.as_ptr().cast(),
                    rec.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => break,
                    _ => return Err(e),
                }
            }
            self.out.pop_front();
        }
        let interest = if self.out.is_empty() {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        self.poll
            .registry()
            .reregister(&mut SourceFd(&self.control.as_raw_fd()), CONTROL, interest)
    }

    fn start(&mut self, req: Request) -> io::Result<()> {
        let local = |text: &[u8]| Answer {
            probe: req.probe,
            gen: req.gen,
            outcome: Outcome::Local(Detail::text(text)),
            latency_us: 0,
            not_after: 0,
        };
        let kind = req.kind as usize;
        if kind >= self.cfg.kinds.len() {
            return self.answer(local(b"unknown check kind"));
        }
        if self.free.is_empty() {
            // A connection kept for a session ticket gives way to a check.
            let waiting = self
                .active
                .iter()
                .copied()
                .find(|&k| self.conns[k].as_ref().is_some_and(|c| c.answered));
            if let Some(k) = waiting {
                self.finish(k, Verdict::Pass)?;
            }
        }
        let Some(slot) = self.free.pop() else {
            return self.answer(local(b"helper: checks in flight at the limit"));
        };
        let started = Instant::now();
        let fail_now = |v: Verdict| Answer {
            probe: req.probe,
            gen: req.gen,
            outcome: Outcome::Verdict(v),
            latency_us: 0,
            not_after: 0,
        };
        let mut stream = match TcpStream::connect(req.target) {
            Ok(s) => s,
            Err(e) => {
                self.free.push(slot);
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                if crate::monitor::phase::is_local_errno(errno) {
                    return self.answer(local(crate::monitor::phase::errno_name(errno).as_bytes()));
                }
                return self.answer(fail_now(io_reason(&e, true)));
            }
        };
        // A reset on close: no TIME_WAIT left on the director.
        let l = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid option on our socket.
        unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&l as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
        self.poll.registry().register(
            &mut stream,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let connect = Duration::from_millis(req.connect_ms.min(req.timeout_ms).into());
        self.active.push(slot);
        self.conns[slot] = Some(Conn {
            req,
            kind,
            stream,
            tls: None,
            stage: Stage::Connecting,
            started,
            connect_by: started + connect,
            deadline: started + Duration::from_millis(req.timeout_ms.into()),
            rx: Vec::new(),
            st: CheckState::default(),
            not_after: 0,
            read: 0,
            answered: false,
        });
        Ok(())
    }

    /// Check `slot` is decided: its verdict goes to the daemon, and its connection is closed
    /// (one kept for a session ticket, [`Stage::Ticket`], is closed later, quietly).
    fn finish(&mut self, slot: usize, v: Verdict) -> io::Result<()> {
        let Some(c) = self.conns[slot].as_mut() else {
            return Ok(());
        };
        let a = Answer {
            probe: c.req.probe,
            gen: c.req.gen,
            outcome: Outcome::Verdict(v),
            latency_us: c.started.elapsed().as_micros() as u64,
            not_after: c.not_after,
        };
        if c.stage == Stage::Ticket && !c.answered {
            // The verdict now (its duration the handshake's); the connection a little longer.
            c.answered = true;
            c.deadline = c.deadline.min(Instant::now() + TICKET_WAIT);
            self.answer(a)?;
            return match self.step(slot) {
                Some(v) => self.finish(slot, v),
                None => Ok(()),
            };
        }
        let Some(mut c) = self.conns[slot].take() else {
            return Ok(());
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.free.push(slot);
        if let Some(k) = self.active.iter().position(|&a| a == slot) {
            self.active.swap_remove(k);
        }
        if c.answered {
            if let Some(tls) = c.tls.as_mut() {
                tls.send_close_notify();
                let _ = tls.write_tls(&mut c.stream);
            }
            return Ok(());
        }
        drop(c);
        self.answer(a)
    }

    fn expire(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let mut k = 0;
        while k < self.active.len() {
            let slot = self.active[k];
            k += 1;
            let Some(c) = &self.conns[slot] else {
                continue;
            };
            let v = if c.stage == Stage::Connecting && now >= c.connect_by {
                Verdict::fail(Reason::ConnectTimeout)
            } else if now >= c.deadline {
                match c.stage {
                    Stage::Connecting => Verdict::fail(Reason::ConnectTimeout),
                    Stage::Handshake => Verdict::fail_with(Reason::Timeout, b"tls handshake"),
                    // Answered: no ticket came in time, and that is all.
                    Stage::Ticket => Verdict::Pass,
                    _ if c.rx.is_empty() => Verdict::fail(Reason::RecvTimeout),
                    _ => Verdict::Fail(Reason::Timeout, Detail::number(c.rx.len() as u64)),
                }
            } else {
                continue;
            };
            // `finish` takes the slot out of `active` (the last one moves into its place).
            self.finish(slot, v)?;
            k -= 1;
        }
        Ok(())
    }

    /// Moves check `slot` on as far as its socket allows; a verdict when it is decided.
    fn step(&mut self, slot: usize) -> Option<Verdict> {
        let max_bytes = self.cfg.max_bytes;
        let c = self.conns.get_mut(slot)?.as_mut()?;
        let kind = &self.cfg.kinds[c.kind];
        if c.stage == Stage::Connecting {
            match c.stream.take_error() {
                Ok(Some(e)) | Err(e) => return Some(io_reason(&e, true)),
                Ok(None) => {}
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => return None,
                Err(e) => return Some(io_reason(&e, true)),
            }
            c.stage = match kind.tls.opts.starttls {
                Some(_) => Stage::Plain(0),
                None => Stage::Handshake,
            };
        }
        if let Stage::Plain(_) = c.stage {
            match plain(c, kind.tls.opts.starttls?, max_bytes) {
                Ok(true) => {
                    c.stage = Stage::Handshake;
                    c.rx.clear();
                }
                Ok(false) => return None,
                Err(v) => return Some(v),
            }
        }
        if c.tls.is_none() {
            let config = match self.targets.get(&(c.kind, c.req.target)) {
                Some((cfg, _)) => cfg.clone(),
                None if kind.tls.opts.no_resume || self.targets.len() >= MAX_TARGETS => {
                    kind.config.clone()
                }
                None => {
                    // A session cache of its own: a session is only ever offered back to the
                    // server that issued it.
                    let sessions = Arc::new(Sessions::new());
                    let mut own = (*kind.config).clone();
                    own.resumption = Resumption::store(sessions.clone());
                    let own = Arc::new(own);
                    self.targets
                        .insert((c.kind, c.req.target), (own.clone(), sessions));
                    own
                }
            };
            match ClientConnection::new(config, server_name(kind, c.req.target)) {
                Ok(t) => c.tls = Some(t),
                Err(e) => return Some(tls_verdict(&e)),
            }
        }
        let sessions = self.targets.get(&(c.kind, c.req.target)).map(|(_, s)| &**s);
        tls_step(c, kind, sessions, max_bytes)
    }
}

/// The name a check of `kind` gives the server at `target` (and its sessions are kept by).
fn server_name(kind: &Kind, target: SocketAddr) -> ServerName<'static> {
    kind.server_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(target.ip().into()))
}

/// The plain dialogue before STARTTLS; Ok(true) once the server agreed to start TLS.
fn plain(c: &mut Conn, how: StartTls, max_bytes: usize) -> Result<bool, Verdict> {
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                return Err(if c.rx.is_empty() {
                    Verdict::fail(Reason::Closed)
                } else {
                    Verdict::fail_with(Reason::ExpectMismatch, &c.rx)
                })
            }
            Ok(n) => {
                c.read += n;
                if c.read > max_bytes {
                    return Err(Verdict::Fail(
                        Reason::ResponseTooLarge,
                        Detail::number(c.read as u64),
                    ));
                }
                c.rx.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason(&e, false)),
        }
    }
    // The dialogue: (expected reply, command to send after it).
    let script: &[(&[u8], &[u8])] = match how {
        StartTls::Smtp => &[
            (b"220", b"EHLO lvsmon\r\n"),
            (b"250", b"STARTTLS\r\n"),
            (b"220", b""),
        ],
        StartTls::Imap => &[(b"* OK", b"a1 STARTTLS\r\n"), (b"a1 OK", b"")],
        StartTls::Pop3 => &[(b"+OK", b"STLS\r\n"), (b"+OK", b"")],
        StartTls::Ftp => &[(b"220", b"AUTH TLS\r\n"), (b"234", b"")],
    };
    loop {
        let Stage::Plain(k) = c.stage else {
            return Ok(false);
        };
        let (expect, send) = script[k as usize];
        // A whole final reply line: skip SMTP/FTP continuation lines (`250-`) and IMAP's
        // untagged lines before a tagged reply.
        let mut line_start = 0;
        let mut final_line = None;
        while let Some(nl) = c.rx[line_start..].iter().position(|&b| b == b'\n') {
            let line = &c.rx[line_start..line_start + nl + 1];
            line_start += nl + 1;
            let cont =
                line.len() > 3 && line[3] == b'-' && line[..3].iter().all(u8::is_ascii_digit);
            let untagged = expect.starts_with(b"a1") && line.starts_with(b"* ");
            if !cont && !untagged {
                final_line = Some(line.to_vec());
                break;
            }
        }
        let Some(line) = final_line else {
            return Ok(false);
        };
        if !line.starts_with(expect) {
            let mut d = Detail::text(b"starttls: ");
            let end = line.iter().position(|&b| b == b'\r' || b == b'\n');
            d.push(&line[..end.unwrap_or(line.len())]);
            return Err(Verdict::Fail(Reason::ExpectMismatch, d));
        }
        c.rx.drain(..line_start);
        if send.is_empty() {
            return Ok(true);
        }
        if let Err(e) = c.stream.write_all(send) {
            return Err(io_reason(&e, false));
        }
        c.stage = Stage::Plain(k + 1);
    }
}

/// The handshake and what follows it. `sessions`: the target's own, if it has them.
fn tls_step(
    c: &mut Conn,
    kind: &Kind,
    sessions: Option<&Sessions>,
    max_bytes: usize,
) -> Option<Verdict> {
    loop {
        let tls = c.tls.as_mut()?;
        while tls.wants_write() {
            match tls.write_tls(&mut c.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(io_reason(&e, false)),
            }
        }
        let mut eof = false;
        let mut progressed = false;
        if tls.wants_read() {
            match tls.read_tls(&mut c.stream) {
                Ok(0) => eof = true,
                Ok(n) => {
                    c.read += n;
                    progressed = true;
                    if c.read > max_bytes {
                        return Some(Verdict::Fail(
                            Reason::ResponseTooLarge,
                            Detail::number(c.read as u64),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if c.stage == Stage::Handshake => {
                    let mut v = io_reason(&e, false);
                    if let Verdict::Fail(Reason::Reset, _) = v {
                        v = Verdict::fail_with(Reason::TlsHandshake, b"reset");
                    }
                    return Some(v);
                }
                Err(e) => return Some(io_reason(&e, false)),
            }
            if let Err(e) = tls.process_new_packets() {
                // Say what went wrong (an alert) before closing.
                let _ = tls.write_tls(&mut c.stream);
                return Some(tls_verdict(&e));
            }
        }
        if c.stage == Stage::Handshake && !tls.is_handshaking() {
            c.stage = Stage::Exchange;
            if let Some(v) = handshake_done(c.tls.as_ref()?, kind, &mut c.not_after) {
                return Some(v);
            }
            let tls = c.tls.as_mut()?;
            match &kind.tls.http {
                Some(h) => {
                    let spec_bytes = h.send_bytes(&c.st);
                    let mut w = tls.writer();
                    let ok = match h.target_at() {
                        Some(at) => {
                            let mut text = [0u8; crate::plugins::TARGET_TEXT_MAX];
                            let n = target_text(c.req.target, &mut text);
                            w.write_all(&spec_bytes[..at])
                                .and_then(|_| w.write_all(&text[..n]))
                                .and_then(|_| w.write_all(&spec_bytes[at..]))
                        }
                        None => w.write_all(spec_bytes),
                    };
                    if ok.is_err() {
                        return Some(Verdict::fail_with(Reason::TlsHandshake, b"write"));
                    }
                    let _ = h.sent(&mut c.st);
                }
                None if kind.tls.greeting.is_none() => {
                    // TLS 1.3 tickets come after the handshake, once the server has our
                    // Finished: without one in store, keep the connection for the next
                    // check's (the verdict goes now all the same, see `Helper::finish`).
                    let tls13 = tls.protocol_version() == Some(ProtocolVersion::TLSv1_3);
                    if let Some(s) = sessions.filter(|_| tls13) {
                        if tls.handshake_kind() != Some(HandshakeKind::Resumed) {
                            // Not resumed although a ticket may have been offered: it had
                            // expired or the server refused it (restarted, new keys), and
                            // those stored before it are no better.
                            s.forget_tickets(&server_name(kind, c.req.target));
                        }
                    }
                    if tls13 && sessions.is_some_and(|s| s.tickets() == 0) {
                        c.stage = Stage::Ticket;
                        while tls.wants_write() {
                            if tls.write_tls(&mut c.stream).is_err() {
                                break;
                            }
                        }
                        return Some(Verdict::Pass);
                    }
                    tls.send_close_notify();
                    let _ = tls.write_tls(&mut c.stream);
                    return Some(Verdict::Pass);
                }
                None => {}
            }
            return tls_step(c, kind, sessions, max_bytes);
        }
        if c.stage == Stage::Ticket {
            // Whatever the server says now is not judged: its plaintext is dropped, and a
            // ticket stored, its close or an error ends the wait (any verdict returned here
            // only closes the connection: it was answered).
            let tls = c.tls.as_mut()?;
            let mut buf = [0u8; 4096];
            let closed = loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break eof,
                    Err(_) => break true,
                }
            };
            if closed || sessions.is_none_or(|s| s.tickets() > 0) {
                return Some(Verdict::Pass);
            }
            if !progressed {
                return None;
            }
            continue;
        }
        if c.stage == Stage::Exchange {
            let tls = c.tls.as_mut()?;
            let mut buf = [0u8; 4096];
            let mut closed = eof;
            loop {
                match tls.reader().read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        let limit = kind.tls.max_response().max(1);
                        let room = limit.saturating_sub(c.rx.len());
                        c.rx.extend_from_slice(&buf[..n.min(room)]);
                        if n > room {
                            return Some(Verdict::Fail(
                                Reason::ResponseTooLarge,
                                Detail::number(c.rx.len() as u64),
                            ));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // Closed without close_notify: the answer ends there.
                        closed = true;
                        break;
                    }
                }
            }
            if !c.rx.is_empty() || closed {
                let v = judge(c, kind, closed);
                if v.is_some() {
                    return v;
                }
            }
            if closed {
                return Some(Verdict::fail(Reason::Closed));
            }
            if !progressed {
                return None;
            }
            continue;
        }
        if eof {
            return Some(Verdict::fail_with(
                Reason::TlsHandshake,
                b"closed during the handshake",
            ));
        }
        if !progressed {
            return None;
        }
    }
}

/// Judges the plaintext answer so far; `None`: wait for more.
fn judge(c: &mut Conn, kind: &Kind, closed: bool) -> Option<Verdict> {
    let step = match (&kind.tls.http, &kind.tls.greeting) {
        (Some(h), _) if closed => return Some(on_eof_or_closed(h.on_eof(&mut c.st, &c.rx), &c.rx)),
        (Some(h), _) => h.on_data(&mut c.st, &c.rx),
        (None, Some(b)) if closed => {
            return Some(on_eof_or_closed(b.on_eof(&mut c.st, &c.rx), &c.rx))
        }
        (None, Some(b)) => b.on_data(&mut c.st, &c.rx),
        _ => return Some(Verdict::Pass),
    };
    match step {
        Step::Done(v) => Some(v),
        _ => None,
    }
}

fn on_eof_or_closed(v: Verdict, rx: &[u8]) -> Verdict {
    if rx.is_empty() {
        Verdict::fail(Reason::Closed)
    } else {
        v
    }
}

/// The handshake is done: the certificate's expiry, `--min-days`, ALPN.
fn handshake_done(tls: &ClientConnection, kind: &Kind, not_after: &mut i64) -> Option<Verdict> {
    if let Some(cert) = tls.peer_certificates().and_then(|c| c.first()) {
        *not_after = super::cert::not_after(cert).unwrap_or(0);
    }
    let opts = &kind.tls.opts;
    if !opts.alpn.is_empty() && tls.alpn_protocol().is_none() {
        return Some(Verdict::fail_with(
            Reason::TlsHandshake,
            b"no ALPN protocol agreed",
        ));
    }
    if let Some(days) = opts.min_days {
        let left = *not_after - now_unix();
        if *not_after == 0 || left < i64::from(days) * 86_400 {
            let mut d = if left < 0 {
                Detail::text(b"expired ")
            } else {
                Detail::text(b"expires in ")
            };
            d.push(Detail::number((left.unsigned_abs()) / 86_400).as_bytes());
            d.push(if left < 0 { b" days ago" } else { b" days" });
            return Some(Verdict::Fail(Reason::TlsExpiry, d));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration as the daemon writes it: `roots` PEM sets, then `tls` checks of `words`
    /// each verified against roots 0.
    fn blob(roots: &[&[u8]], checks: &[&[&[u8]]]) -> Vec<u8> {
        let mut b = wire::MAGIC.to_vec();
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&65536u32.to_le_bytes());
        b.extend_from_slice(&(roots.len() as u32).to_le_bytes());
        for r in roots {
            wire::put(&mut b, r);
        }
        b.extend_from_slice(&(checks.len() as u32).to_le_bytes());
        for words in checks {
            wire::put(&mut b, b"tls");
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&(words.len() as u32).to_le_bytes());
            for w in *words {
                wire::put(&mut b, w);
            }
        }
        b
    }

    /// `--verify` with no root at all (no ca-certificates installed) still makes a helper:
    /// its checks fail with `tls-verify` rather than the helper refusing to start (and being
    /// started again and again).
    #[test]
    fn verify_without_roots_is_a_helper_whose_checks_fail() {
        let cfg = load_config(&blob(&[b""], &[&[b"--verify"], &[]])).expect("configuration");
        assert_eq!(cfg.kinds.len(), 2);
        assert_eq!(cfg.max_in_flight, 16);
        assert!(load_config(b"LVSTLS0\n").is_err());
        assert!(load_config(&blob(&[b""], &[&[b"--bogus"]])).is_err());
    }

    /// A TLS 1.3 server on loopback (rustls, a self-signed certificate) sending `tickets`
    /// session tickets after each handshake, which keeps each connection until the client
    /// closes it (or 10 s); it serves for 10 s at most.
    struct Server {
        addr: SocketAddr,
        tickets: usize,
        /// The configuration of the next connections (replaced: a restarted server, which
        /// knows none of the tickets it gave before).
        cfg: Arc<std::sync::Mutex<Arc<rustls::ServerConfig>>>,
        /// Per connection, once the client has closed it: its handshake's kind.
        done: std::sync::mpsc::Receiver<Option<rustls::HandshakeKind>>,
    }

    impl Server {
        fn config(tickets: usize) -> Arc<rustls::ServerConfig> {
            use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
            let ck = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![ck.cert.der().clone()], key)
                .unwrap();
            cfg.send_tls13_tickets = tickets;
            Arc::new(cfg)
        }

        fn start(tickets: usize) -> Server {
            let cfg = Arc::new(std::sync::Mutex::new(Server::config(tickets)));
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            l.set_nonblocking(true).unwrap();
            let (tx, done) = std::sync::mpsc::channel();
            let shared = cfg.clone();
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end {
                    let Ok((mut s, _)) = l.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let cfg = shared.lock().unwrap().clone();
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                        while conn.complete_io(&mut s).is_ok_and(|(r, w)| r + w > 0) {}
                        let _ = tx.send(conn.handshake_kind());
                    });
                }
            });
            Server {
                addr,
                tickets,
                cfg,
                done,
            }
        }

        /// The next connection's handshake kind, once the client closed it.
        fn next(&self) -> Option<rustls::HandshakeKind> {
            self.done
                .recv_timeout(Duration::from_secs(5))
                .expect("a connection")
        }

        fn restart(&self) {
            *self.cfg.lock().unwrap() = Server::config(self.tickets);
        }
    }

    /// The helper, in a thread, with `slots` checks at once, and one `tls` check of `words`
    /// (kind 0): `check(probe, target)` runs one and returns its answer.
    struct InProcess {
        ours: Option<OwnedFd>,
        thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    }

    impl InProcess {
        fn start(slots: u32, words: &[&[u8]]) -> InProcess {
            let mut b = blob(&[b""], &[words]);
            b[8..12].copy_from_slice(&slots.to_le_bytes());
            let cfg = load_config(&b).expect("configuration");
            let mut fds = [0; 2];
            // SAFETY: socketpair into a two-int array.
            let rc = unsafe {
                libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr())
            };
            assert_eq!(rc, 0);
            // SAFETY: fresh descriptors of ours.
            let (ours, theirs) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let thread =
                std::thread::spawn(move || Helper::new(theirs, cfg).and_then(|mut h| h.run()));
            InProcess {
                ours: Some(ours),
                thread: Some(thread),
            }
        }

        fn check(&self, probe: u32, target: SocketAddr) -> Answer {
            self.send(probe, target);
            let a = self.recv();
            assert_eq!(a.probe, probe);
            a
        }

        /// Sends one check's request without waiting for its answer.
        fn send(&self, probe: u32, target: SocketAddr) {
            let fd = self.ours.as_ref().unwrap().as_raw_fd();
            let req = Request {
                probe,
                gen: 0,
                kind: 0,
                connect_ms: 2000,
                timeout_ms: 5000,
                target,
            }
            .encode();
            // SAFETY: sends from a live buffer on our socket.
            let n = unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) };
            assert_eq!(n, req.len() as isize);
        }

        /// The next answer (within 5 s).
        fn recv(&self) -> Answer {
            let fd = self.ours.as_ref().unwrap().as_raw_fd();
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one pollfd of ours.
            assert_eq!(unsafe { libc::poll(&mut pfd, 1, 5000) }, 1, "no answer");
            let mut rec = [0u8; wire::VERDICT_LEN];
            // SAFETY: reads into our buffer.
            let n = unsafe { libc::recv(fd, rec.as_mut_ptr().cast(), rec.len(), 0) };
            assert_eq!(n, rec.len() as isize);
            Answer::decode(&rec).expect("an answer")
        }
    }

    impl Drop for InProcess {
        fn drop(&mut self) {
            // Its socket closed, the helper returns.
            drop(self.ours.take());
            if let Some(t) = self.thread.take() {
                let r = t.join().expect("the helper's thread");
                if !std::thread::panicking() {
                    r.expect("the helper ends with its socket");
                }
            }
        }
    }

    const PASS: Outcome = Outcome::Verdict(Verdict::Pass);

    /// With every slot taken by a connection kept for its session ticket, a new check takes
    /// that slot (the connection is closed) rather than being refused as a local error.
    #[test]
    fn a_connection_kept_for_a_ticket_gives_way_to_a_check() {
        let server = Server::start(0);
        let helper = InProcess::start(1, &[]);
        assert_eq!(helper.check(1, server.addr).outcome, PASS);
        // The first check's connection waits (200 ms) for the ticket that never comes.
        assert_eq!(helper.check(2, server.addr).outcome, PASS);
    }

    /// TLS 1.3 resumption of handshake-only checks, from the server's side: the first check
    /// is a full handshake and waits for the tickets, the next resume. After the server was
    /// restarted (it knows none of the tickets still stored), the check that offered one makes
    /// a full handshake, forgets the others and waits for new ones: the next check resumes.
    /// With `--no-resume`, none does.
    #[test]
    fn tls13_tickets_after_the_handshake_are_kept_for_the_next_check() {
        use rustls::HandshakeKind::{Full, Resumed};
        let server = Server::start(2);
        let want = [Full, Resumed, Resumed, Full, Resumed, Resumed].map(Some);
        // The wait for a ticket is bounded (200 ms): a server thread starved that long on a
        // busy machine would make one check full. A fault in the helper shows on every try,
        // such a miss hardly twice: the sequence must come out exactly in one of three tries.
        let mut tries = Vec::new();
        for _ in 0..3 {
            server.restart();
            let helper = InProcess::start(16, &[]);
            let mut kinds = Vec::new();
            // The server sends 2 tickets a handshake, and the helper waits for them when it
            // has none left: after the third check it holds 2 (the one the restart makes
            // stale leaves 1 that is no better).
            for probe in 0..3 {
                assert_eq!(helper.check(probe, server.addr).outcome, PASS);
                kinds.push(server.next());
            }
            server.restart();
            for probe in 3..6 {
                assert_eq!(helper.check(probe, server.addr).outcome, PASS);
                kinds.push(server.next());
            }
            let done = kinds == want;
            tries.push(kinds);
            if done {
                break;
            }
        }
        assert_eq!(tries.last(), Some(&want.to_vec()), "tries: {tries:?}");

        let helper = InProcess::start(16, &[b"--no-resume"]);
        for probe in 0..3 {
            assert_eq!(helper.check(probe, server.addr).outcome, PASS);
            assert_eq!(server.next(), Some(Full));
        }
    }

    /// A server on loopback that accepts connections and, on each, does `what` with it (in a
    /// thread of its own); it accepts for 10 s at most.
    fn plain_server(what: fn(std::net::TcpStream)) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                match l.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || what(s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        addr
    }

    /// With every slot taken by a check still in its handshake, one more is answered at once
    /// as a local error (never a failure of its server), and the slot serves again once the
    /// first check has ended.
    #[test]
    fn a_check_beyond_the_slots_is_a_local_error() {
        // Holds each connection, silent, for 1.5 s, then closes it.
        let silent = plain_server(|s| {
            std::thread::sleep(Duration::from_millis(1500));
            drop(s);
        });
        let helper = InProcess::start(1, &[]);
        helper.send(1, silent);
        let t = Instant::now();
        let a = helper.check(2, silent);
        assert_eq!(
            a.outcome,
            Outcome::Local(Detail::text(b"helper: checks in flight at the limit"))
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // The first check ends (its server closed during the handshake): a failure of its own.
        let first = helper.recv();
        assert_eq!(first.probe, 1);
        assert!(
            matches!(first.outcome, Outcome::Verdict(Verdict::Fail(..))),
            "{first:?}"
        );
        let server = Server::start(0);
        assert_eq!(helper.check(3, server.addr).outcome, PASS);
    }

    /// A server that talks without end is read up to the helper's bound of bytes per check
    /// (64 KiB here) and fails with `response-too-large`: the helper's memory stays bounded.
    #[test]
    fn a_server_that_talks_without_end_is_cut_at_the_bound() {
        let chatty = plain_server(|mut s| {
            use std::io::Write;
            let chunk = [b'x'; 4096];
            // No line end, ever: 4 MiB at most, until the client goes.
            for _ in 0..1024 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let helper = InProcess::start(1, &[b"--starttls", b"smtp"]);
        let a = helper.check(1, chatty);
        let Outcome::Verdict(Verdict::Fail(Reason::ResponseTooLarge, d)) = a.outcome else {
            panic!("{a:?}")
        };
        let read: usize = d.as_str().parse().unwrap();
        assert!(
            (65_537..=65_536 + 4096).contains(&read),
            "{read} bytes read"
        );
    }

    #[test]
    fn tls_errors_name_their_reason() {
        let v = tls_verdict(&rustls::Error::InvalidCertificate(
            CertificateError::Expired,
        ));
        assert_eq!(v, Verdict::fail_with(Reason::TlsExpiry, b"expired"));
        let v = tls_verdict(&rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ));
        assert_eq!(v, Verdict::fail_with(Reason::TlsVerify, b"wrong name"));
        let v = tls_verdict(&rustls::Error::NoApplicationProtocol);
        assert!(matches!(v, Verdict::Fail(Reason::TlsHandshake, _)));
    }
}
