//! Check plugins: one file per protocol, each judging bytes and nothing else.
//!
//! A plugin never touches a socket, a clock or the kernel. The monitor owns the socket, the
//! receive buffer and the deadlines; it asks the plugin what to send and hands it every byte
//! received so far, and the plugin answers with a [`Step`]. That keeps every protocol testable
//! with byte-string fixtures and keeps the event loop the only place that does I/O.
//!
//! A [`CheckSpec`] is built once, at startup, from the words of a `check` line; it is immutable
//! afterwards and may be shared by many checks. The little that changes during one check (which
//! step of a dialogue we are in, where the previous reply ended) lives in a [`CheckState`] that
//! the monitor owns and resets at every start: it is `Copy` and a few bytes long.

pub mod agent;
pub mod agent_check;
pub mod banner;
mod common;
pub mod dns;
pub mod exec;
pub mod http;
pub mod md5;
pub mod presets;
pub mod script;
pub mod tcp;
pub mod tls;
pub mod udp;

use std::fmt;

/// The names accepted after `check`, in the order error messages list them.
pub const PLUGIN_NAMES: &[&str] = &[
    "tcp", "http", "banner", "script", "dns", "udp", "exec", "https", "tls", // plugins
    "smtp", "pop3", "imap", "ftp", "ssh", "redis", "mysql", "pgsql", // presets
    "imaps", "pop3s", "smtps", "ldaps", // TLS presets
];

/// Why a check failed, named by the layer that failed (lvsmon(8), DECISIONS).
///
/// The set is fixed: logs, metrics labels and notify scripts depend on the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The peer refused: a RST to the SYN (TCP), or an ICMP port unreachable (UDP)
    /// (ECONNREFUSED).
    ConnectRefused,
    /// No answer to the SYN within `connect-timeout`.
    ConnectTimeout,
    /// The network said the host or net cannot be reached (EHOSTUNREACH, ENETUNREACH).
    Unreachable,
    /// The connection was reset after it was established.
    Reset,
    /// The peer closed the connection before a verdict could be made.
    Closed,
    /// The connection was established but not a single byte arrived in time.
    RecvTimeout,
    /// The whole check ran out of time with an answer still incomplete.
    Timeout,
    /// An HTTP status outside the expected codes.
    HttpStatus,
    /// Bytes that are not an HTTP response.
    HttpInvalid,
    /// The HTTP body did not contain the expected text.
    BodyMismatch,
    /// The first line did not start with the expected banner.
    BannerMismatch,
    /// A reply of a `script` dialogue did not match its `--expect`.
    ExpectMismatch,
    /// The answer did not fit in `--max-response` bytes.
    ResponseTooLarge,
    /// A DNS reply with an unexpected rcode.
    DnsRcode,
    /// Bytes that are not a DNS reply to our query.
    DnsInvalid,
    /// An `exec` program exited 1 (or, without `--dynamic`, 2..255) or died of a signal.
    ExecFailed,
    /// The real server's agent said `down`, `fail` or `stopped` (the weight chain's).
    AgentDown,
    /// The TLS handshake failed (not TLS, an alert, no protocol or cipher in common).
    TlsHandshake,
    /// `--verify`: the certificate chain or name is not valid.
    TlsVerify,
    /// The certificate expired, or expires within `--min-days`.
    TlsExpiry,
}

impl Reason {
    /// Every reason, in the order of lvsmon(8), DECISIONS (metrics render one series per entry).
    pub const ALL: [Reason; 20] = [
        Reason::ConnectRefused,
        Reason::ConnectTimeout,
        Reason::Unreachable,
        Reason::Reset,
        Reason::Closed,
        Reason::RecvTimeout,
        Reason::Timeout,
        Reason::HttpStatus,
        Reason::HttpInvalid,
        Reason::BodyMismatch,
        Reason::BannerMismatch,
        Reason::ExpectMismatch,
        Reason::ResponseTooLarge,
        Reason::DnsRcode,
        Reason::DnsInvalid,
        Reason::ExecFailed,
        Reason::AgentDown,
        Reason::TlsHandshake,
        Reason::TlsVerify,
        Reason::TlsExpiry,
    ];

    /// The name used in logs, metrics and `LVSMON_REASON`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ConnectRefused => "connect-refused",
            Reason::ConnectTimeout => "connect-timeout",
            Reason::Unreachable => "unreachable",
            Reason::Reset => "reset",
            Reason::Closed => "closed",
            Reason::RecvTimeout => "recv-timeout",
            Reason::Timeout => "timeout",
            Reason::HttpStatus => "http-status",
            Reason::HttpInvalid => "http-invalid",
            Reason::BodyMismatch => "body-mismatch",
            Reason::BannerMismatch => "banner-mismatch",
            Reason::ExpectMismatch => "expect-mismatch",
            Reason::ResponseTooLarge => "response-too-large",
            Reason::DnsRcode => "dns-rcode",
            Reason::DnsInvalid => "dns-invalid",
            Reason::ExecFailed => "exec-failed",
            Reason::AgentDown => "agent-down",
            Reason::TlsHandshake => "tls-handshake",
            Reason::TlsVerify => "tls-verify",
            Reason::TlsExpiry => "tls-expiry",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A short, fixed-size explanation that goes with a [`Reason`] (`http-status 503`,
/// `banner-mismatch "220 mail"`). It lives inline, so making one never allocates.
///
/// Invariant: `len as usize <= DETAIL_CAP` and `buf[..len]` is printable ASCII: every other
/// byte is stored as `?` so the detail can go into a logfmt line and an environment variable
/// unchanged (after quoting).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Detail {
    buf: [u8; DETAIL_CAP],
    len: u8,
    /// Which of a real server's several checks failed (1-based), 0 when it has one: the
    /// `check=N` of the event and status lines. Set by the probe driver, never by a plugin.
    check: u8,
}

/// Bytes a [`Detail`] keeps; longer text is cut.
pub const DETAIL_CAP: usize = 40;

impl Detail {
    /// No detail.
    pub const EMPTY: Detail = Detail {
        buf: [0; DETAIL_CAP],
        len: 0,
        check: 0,
    };

    /// A detail holding `text`, cut to [`DETAIL_CAP`] bytes, with non-printable bytes as `?`
    /// and `"`/`\` as `'`/`/` so the detail never needs escaping.
    pub fn text(text: &[u8]) -> Detail {
        let mut d = Detail::EMPTY;
        d.push(text);
        d
    }

    /// A detail holding a decimal number.
    pub fn number(n: u64) -> Detail {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut n = n;
        loop {
            i -= 1;
            tmp[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Detail::text(&tmp[i..])
    }

    /// Appends `text` (sanitised as in [`Detail::text`]) while room remains.
    pub fn push(&mut self, text: &[u8]) -> &mut Detail {
        for &b in text {
            if self.len as usize == DETAIL_CAP {
                break;
            }
            self.buf[self.len as usize] = match b {
                b'"' => b'\'',
                b'\\' => b'/',
                0x20..=0x7e => b,
                _ => b'?',
            };
            self.len += 1;
        }
        self
    }

    /// The detail's bytes (printable ASCII, no `"` or `\`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The detail as text.
    pub fn as_str(&self) -> &str {
        // Invariant: only printable ASCII is ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// True when there is no detail.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The same detail, naming check `n` (1-based) of a real server's several checks as the
    /// one that failed.
    pub fn of_check(mut self, n: u8) -> Detail {
        self.check = n;
        self
    }

    /// The failing check's number among a real server's several checks (1-based); 0 when the
    /// real server has one check.
    pub fn check(&self) -> u8 {
        self.check
    }
}

impl Default for Detail {
    fn default() -> Self {
        Detail::EMPTY
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The real server answered as expected.
    Pass,
    /// The real server failed, with the reason and a short detail.
    Fail(Reason, Detail),
}

impl Verdict {
    /// A failure with no detail.
    pub fn fail(reason: Reason) -> Verdict {
        Verdict::Fail(reason, Detail::EMPTY)
    }

    /// A failure whose detail is `text` (cut and sanitised, see [`Detail::text`]).
    pub fn fail_with(reason: Reason, text: &[u8]) -> Verdict {
        Verdict::Fail(reason, Detail::text(text))
    }
}

/// What the plugin wants next; returned by every call the monitor makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write [`CheckSpec::send_bytes`] in full, then call [`CheckSpec::sent`].
    Send,
    /// Wait for more bytes, then call [`CheckSpec::on_data`] with everything received so far.
    Recv,
    /// The check is decided.
    Done(Verdict),
}

/// What a plugin remembers during one check. Reset to `default()` at every check start.
///
/// The meaning of the fields belongs to the plugin (`script` keeps its step index in `step`
/// and the offset where the next reply starts in `mark`); the monitor only stores them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckState {
    /// Plugin-defined progress counter.
    pub step: u16,
    /// Plugin-defined offset into the received bytes; always `<=` the bytes received.
    pub mark: u32,
    /// A fresh pseudo-random value the monitor sets at every check start (DNS query IDs).
    pub nonce: u32,
}

/// Which transport a check uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A TCP connection: the phases connect, conresult, query, recv.
    Tcp,
    /// UDP datagrams: the phases query and recv.
    Udp,
    /// A program of the operator's (`exec`): spawned, its output read from a pipe, judged by
    /// its exit status.
    Exec,
}

/// A `check` line that could not be understood. `word` indexes the argument words handed to
/// [`CheckSpec::parse`] (the word the message is about), so the config layer can name its
/// line and column; `None` points at the plugin name itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// Index of the offending word in the argument slice, or `None` for the plugin name.
    pub word: Option<usize>,
    /// What was wrong and what was expected.
    pub message: String,
}

impl PluginError {
    /// An error about argument `word`.
    pub fn at(word: usize, message: impl Into<String>) -> PluginError {
        PluginError {
            word: Some(word),
            message: message.into(),
        }
    }
}

/// The longest text [`target_text`] writes (`[` 39 `]:65535`).
pub const TARGET_TEXT_MAX: usize = 48;

/// Writes `addr` as a `Host` header names it, into `out`; returns the length. IPv6 goes in
/// brackets, without a scope id (which has no place in a `Host` header). Allocates nothing.
pub fn target_text(addr: std::net::SocketAddr, out: &mut [u8; TARGET_TEXT_MAX]) -> usize {
    /// Writes `n` in decimal at `out[at..]`; returns the new end.
    fn decimal(out: &mut [u8], at: usize, n: u16) -> usize {
        let mut digits = [0u8; 5];
        let (mut n, mut k) = (n, 0);
        loop {
            digits[k] = b'0' + (n % 10) as u8;
            k += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (j, d) in digits[..k].iter().rev().enumerate() {
            out[at + j] = *d;
        }
        at + k
    }
    match addr {
        // Every HTTP check of an IPv4 real writes this: digits by hand, not `fmt`.
        std::net::SocketAddr::V4(a) => {
            let mut at = 0;
            for (i, o) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out[at] = b'.';
                    at += 1;
                }
                at = decimal(out, at, o.into());
            }
            out[at] = b':';
            decimal(out, at + 1, a.port())
        }
        std::net::SocketAddr::V6(a) => {
            use std::io::Write;
            let mut c = std::io::Cursor::new(&mut out[..]);
            let _ = write!(c, "[{}]:{}", a.ip(), a.port());
            c.position() as usize
        }
    }
}

/// Context a plugin may need to build its request, given by the config layer.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The address the check connects to, as text for a default `Host` header.
    pub addr: std::net::SocketAddr,
}

/// A configured check: the plugin and its options, ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CheckSpec {
    /// Connect only.
    Tcp(tcp::Tcp),
    /// One HTTP request, status and body judged.
    Http(http::Http),
    /// The first line the server sends.
    Banner(banner::Banner),
    /// An ordered send/expect dialogue.
    Script(script::Script),
    /// One DNS query over UDP.
    Dns(dns::Dns),
    /// One datagram out, one expected back.
    Udp(udp::Udp),
    /// A program, judged by its exit status.
    Exec(exec::Exec),
    /// The real server's agent (`agent PORT`): one line, for the weight chain.
    Agent(agent_check::AgentCheck),
    /// A check over TLS (`https`, `tls`): run by the TLS helper process, not the loop.
    Tls(Box<tls::Tls>),
}

impl CheckSpec {
    /// Builds a check from a plugin name and its option words (`--port`/`--address` already
    /// taken out by the config layer).
    ///
    /// # Errors
    /// An unknown plugin, an unknown option, a missing or malformed value; the error names the
    /// word at fault and what was expected.
    pub fn parse(name: &str, args: &[&[u8]], target: Target) -> Result<CheckSpec, PluginError> {
        match name {
            "tcp" => tcp::Tcp::parse(args).map(CheckSpec::Tcp),
            "http" => http::Http::parse(args, target).map(CheckSpec::Http),
            "banner" => banner::Banner::parse(args).map(CheckSpec::Banner),
            "script" => script::Script::parse(args).map(CheckSpec::Script),
            "dns" => dns::Dns::parse(args).map(CheckSpec::Dns),
            "udp" => udp::Udp::parse(args).map(CheckSpec::Udp),
            "exec" => exec::Exec::parse(args).map(CheckSpec::Exec),
            // Not a `check` plugin: the `agent` setting's probe.
            "agent" => agent_check::AgentCheck::parse(args).map(CheckSpec::Agent),
            "https" | "tls" => {
                tls::Tls::parse(name == "https", args, target).map(|t| CheckSpec::Tls(Box::new(t)))
            }
            _ if presets::find(name).is_some() => presets::parse(name, args, target),
            _ => Err(PluginError {
                word: None,
                message: format!(
                    "unknown plugin {name:?} (expected one of: {})",
                    PLUGIN_NAMES.join(", ")
                ),
            }),
        }
    }

    /// The plugin's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            CheckSpec::Tcp(_) => "tcp",
            CheckSpec::Http(_) => "http",
            CheckSpec::Banner(_) => "banner",
            CheckSpec::Script(_) => "script",
            CheckSpec::Dns(_) => "dns",
            CheckSpec::Udp(_) => "udp",
            CheckSpec::Exec(_) => "exec",
            CheckSpec::Agent(_) => "agent",
            CheckSpec::Tls(t) => t.plugin,
        }
    }

    /// The check runs in the TLS helper process.
    #[inline]
    pub fn is_tls(&self) -> bool {
        matches!(self, CheckSpec::Tls(_))
    }

    /// The transport the check runs over.
    pub fn transport(&self) -> Transport {
        match self {
            CheckSpec::Dns(_) | CheckSpec::Udp(_) => Transport::Udp,
            CheckSpec::Exec(_) => Transport::Exec,
            _ => Transport::Tcp,
        }
    }

    /// Largest answer the plugin accepts, in bytes; 0 when it reads nothing.
    pub fn max_response(&self) -> usize {
        match self {
            CheckSpec::Tcp(c) => c.max_response(),
            CheckSpec::Http(c) => c.max_response(),
            CheckSpec::Banner(c) => c.max_response(),
            CheckSpec::Script(c) => c.max_response(),
            CheckSpec::Dns(c) => c.max_response(),
            CheckSpec::Udp(c) => c.max_response(),
            CheckSpec::Exec(_) => 0,
            CheckSpec::Agent(c) => c.max_response(),
            // The helper reads the answer, in its own buffers.
            CheckSpec::Tls(_) => 0,
        }
    }

    /// True when the check should end with an orderly close (FIN) rather than a reset: the
    /// plugin said goodbye in its own protocol (`banner --send "QUIT\r\n"`).
    pub fn polite_close(&self) -> bool {
        match self {
            CheckSpec::Banner(c) => c.polite_close(),
            _ => false,
        }
    }

    /// The connection is up (TCP) or the socket is ready (UDP): what first?
    pub fn begin(&self, st: &mut CheckState) -> Step {
        match self {
            CheckSpec::Tcp(c) => c.begin(st),
            CheckSpec::Http(c) => c.begin(st),
            CheckSpec::Banner(c) => c.begin(st),
            CheckSpec::Script(c) => c.begin(st),
            CheckSpec::Dns(_) | CheckSpec::Udp(_) => Step::Send,
            CheckSpec::Exec(_) => Step::Recv,
            CheckSpec::Agent(c) => c.begin(st),
            CheckSpec::Tls(_) => Step::Done(Verdict::Pass),
        }
    }

    /// The bytes to write after a [`Step::Send`] (TCP plugins). Built at startup; never
    /// empty after `Send`.
    pub fn send_bytes(&self, st: &CheckState) -> &[u8] {
        match self {
            CheckSpec::Tcp(_)
            | CheckSpec::Dns(_)
            | CheckSpec::Udp(_)
            | CheckSpec::Exec(_)
            | CheckSpec::Tls(_) => &[],
            CheckSpec::Http(c) => c.send_bytes(st),
            CheckSpec::Banner(c) => c.send_bytes(st),
            CheckSpec::Script(c) => c.send_bytes(st),
            CheckSpec::Agent(c) => c.send_bytes(),
        }
    }

    /// Where in [`CheckSpec::send_bytes`] the address checked goes, as [`target_text`] writes
    /// it (the default `Host` of `http`): the bytes sent are `send_bytes[..at]`, the address,
    /// then `send_bytes[at..]`. So one spec serves every target of a check line.
    pub fn target_at(&self) -> Option<usize> {
        match self {
            CheckSpec::Http(c) => c.target_at(),
            _ => None,
        }
    }

    /// The datagram to send after a [`Step::Send`] (UDP plugins), written into `out`;
    /// returns its length (0 if it does not fit). May depend on `st.nonce` (a DNS query ID).
    pub fn datagram(&self, st: &CheckState, out: &mut [u8]) -> usize {
        match self {
            CheckSpec::Dns(c) => c.datagram(st, out),
            CheckSpec::Udp(c) => c.datagram(st, out),
            _ => 0,
        }
    }

    /// Every byte of the request was written (or the datagram sent): what next?
    pub fn sent(&self, st: &mut CheckState) -> Step {
        match self {
            CheckSpec::Tcp(_) | CheckSpec::Tls(_) => Step::Done(Verdict::Pass),
            CheckSpec::Http(c) => c.sent(st),
            CheckSpec::Banner(c) => c.sent(st),
            CheckSpec::Script(c) => c.sent(st),
            CheckSpec::Dns(_) | CheckSpec::Udp(_) | CheckSpec::Exec(_) | CheckSpec::Agent(_) => {
                Step::Recv
            }
        }
    }

    /// New bytes arrived. TCP: `rx` holds every byte received since the check began. UDP:
    /// `rx` is one whole datagram (from the real server: the socket is connected); a
    /// datagram that is not a reply to this check (a stale DNS ID) returns [`Step::Recv`]
    /// and is ignored.
    ///
    /// Returning [`Step::Recv`] while `rx.len() >= max_response()` makes the monitor fail the
    /// check with `response-too-large` (TCP).
    pub fn on_data(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        match self {
            CheckSpec::Tcp(_) | CheckSpec::Tls(_) => Step::Done(Verdict::Pass),
            CheckSpec::Http(c) => c.on_data(st, rx),
            CheckSpec::Banner(c) => c.on_data(st, rx),
            CheckSpec::Script(c) => c.on_data(st, rx),
            CheckSpec::Dns(c) => c.on_datagram(st, rx),
            CheckSpec::Udp(c) => c.on_datagram(st, rx),
            CheckSpec::Exec(_) => Step::Recv,
            CheckSpec::Agent(c) => c.on_data(rx),
        }
    }

    /// The peer closed its side; decide with what arrived (`rx`, every byte so far). TCP
    /// only.
    pub fn on_eof(&self, st: &mut CheckState, rx: &[u8]) -> Verdict {
        match self {
            CheckSpec::Tcp(_)
            | CheckSpec::Dns(_)
            | CheckSpec::Udp(_)
            | CheckSpec::Exec(_)
            | CheckSpec::Tls(_) => Verdict::Pass,
            CheckSpec::Http(c) => c.on_eof(st, rx),
            CheckSpec::Banner(c) => c.on_eof(st, rx),
            CheckSpec::Script(c) => c.on_eof(st, rx),
            CheckSpec::Agent(c) => c.on_eof(rx),
        }
    }
}
