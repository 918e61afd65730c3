//! Telling systemd how the daemon is doing: the notification protocol of `sd_notify(3)`,
//! spoken directly over a Unix datagram socket (no libsystemd).
//!
//! Under a unit with `Type=notify`, systemd puts the address of its notification socket in
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace) and, with `WatchdogSec=`,
//! the watchdog timeout in `WATCHDOG_USEC` (and our pid in `WATCHDOG_PID`). lvsmon
//! answers with one datagram per state change, each a few `KEY=VALUE` lines:
//!
//! - `READY=1` (with `STATUS=` and `MAINPID=`) once the first round of checks is scheduled
//!   and the IPVS table adopted, and again after a reload;
//! - `RELOADING=1` with `MONOTONIC_USEC=` when a reload starts (`Type=notify-reload` needs
//!   the time stamp to match the reload to the signal that asked for it);
//! - `WATCHDOG=1` every half watchdog timeout, sent by the event loop itself, so a loop that
//!   hangs stops pinging and systemd restarts the daemon;
//! - `STOPPING=1` when SIGTERM or SIGINT is handled.
//!
//! Invariants:
//! - [`take_env`] runs once at startup, before the notify commands' environment is copied
//!   (so they never see the three variables, and a notify command that is itself a
//!   systemd-aware program does not talk to lvsmon's service manager), and before any
//!   thread is started (it changes the process environment);
//! - the socket is opened and connected once, in [`SdNotify::open`]: it keeps working after
//!   a later `chroot` or privilege drop, and sending needs no address;
//! - sending never blocks (`MSG_DONTWAIT`) and never allocates (every message is composed
//!   in a fixed buffer); a failed send is counted and otherwise ignored, since systemd may be
//!   gone or busy and the daemon's work matters more than the notification;
//! - time comes from the loop's clock ([`Time`]); `MONOTONIC_USEC` is that time placed on
//!   `CLOCK_MONOTONIC` through the clock's origin, never the wall clock.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::clock::{micros, Time};
use crate::log::{Level, Log};

/// The variable that names systemd's notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";
/// The variable that holds the watchdog timeout in microseconds.
pub const WATCHDOG_USEC: &str = "WATCHDOG_USEC";
/// The variable that names the process the watchdog timeout is meant for.
pub const WATCHDOG_PID: &str = "WATCHDOG_PID";

/// Bytes of `sockaddr_un.sun_path` (108 on Linux).
const SUN_PATH: usize =
    std::mem::size_of::<libc::sockaddr_un>() - std::mem::offset_of!(libc::sockaddr_un, sun_path);

/// Longest message: `READY=1`, a status naming two 20-digit counts, and a pid fit easily.
const MSG_CAP: usize = 256;

/// Shortest ping period: below a millisecond (which `epoll_wait` cannot wait for) the loop
/// would spin; systemd never asks for anything close.
const MIN_PING_US: u64 = 1000;

/// Where systemd listens for notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketName {
    /// A socket file, such as `/run/systemd/notify` (an absolute path, without a NUL).
    Path(Vec<u8>),
    /// A name in Linux's abstract socket namespace: `NOTIFY_SOCKET=@name` gives `name`.
    Abstract(Vec<u8>),
}

impl SocketName {
    /// As written in `NOTIFY_SOCKET`.
    pub fn display(&self) -> Vec<u8> {
        match self {
            SocketName::Path(p) => p.clone(),
            SocketName::Abstract(n) => [b"@", &n[..]].concat(),
        }
    }
}

/// What the environment asks of lvsmon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// systemd's notification socket.
    pub socket: SocketName,
    /// The watchdog timeout, when a watchdog applies to this process; pings go out every
    /// half of it.
    pub watchdog: Option<Duration>,
}

/// The result of reading the environment: what to do, and what was wrong with it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FromEnv {
    /// `None` when `NOTIFY_SOCKET` is unset, empty or unusable: no notifications.
    pub config: Option<Config>,
    /// One line per value that was ignored, for the log.
    pub warnings: Vec<String>,
}

/// Reads the three variables from the process environment, then removes them from it, so
/// that notify commands started later do not inherit them.
///
/// Call it once, early at startup, while the process has a single thread (changing the
/// environment while another thread reads it is undefined behaviour in C).
pub fn take_env() -> FromEnv {
    let socket = std::env::var_os(NOTIFY_SOCKET);
    let usec = std::env::var_os(WATCHDOG_USEC);
    let pid = std::env::var_os(WATCHDOG_PID);
    let parsed = parse(
        socket.as_deref(),
        usec.as_deref(),
        pid.as_deref(),
        std::process::id(),
    );
    for name in [NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID] {
        std::env::remove_var(name);
    }
    parsed
}

/// Interprets the values of `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` for the
/// process `pid`.
///
/// The watchdog applies only with a socket to ping, a `WATCHDOG_USEC` above 0, and a
/// `WATCHDOG_PID` that is unset or equal to `pid` (another pid means the variables were
/// inherited from a parent the watchdog is meant for). Values that cannot be read are
/// ignored with a warning.
pub fn parse(
    notify_socket: Option<&OsStr>,
    watchdog_usec: Option<&OsStr>,
    watchdog_pid: Option<&OsStr>,
    pid: u32,
) -> FromEnv {
    let mut out = FromEnv::default();
    let Some(raw) = notify_socket.map(OsStr::as_bytes).filter(|s| !s.is_empty()) else {
        return out;
    };
    let shown = String::from_utf8_lossy(raw);
    let socket = if let Some(name) = raw.strip_prefix(b"@") {
        if name.is_empty() || name.len() > SUN_PATH - 1 {
            out.warnings.push(format!(
                "{NOTIFY_SOCKET}={shown:?}: an abstract socket name must have 1 to {} bytes; not notifying systemd",
                SUN_PATH - 1
            ));
            return out;
        }
        SocketName::Abstract(name.to_vec())
    } else if raw.starts_with(b"/") && !raw.contains(&0) {
        if raw.len() > SUN_PATH - 1 {
            out.warnings.push(format!(
                "{NOTIFY_SOCKET}={shown:?}: longer than a socket path may be ({} bytes); not notifying systemd",
                SUN_PATH - 1
            ));
            return out;
        }
        SocketName::Path(raw.to_vec())
    } else {
        out.warnings.push(format!(
            "{NOTIFY_SOCKET}={shown:?}: not an absolute path or an @abstract name; not notifying systemd"
        ));
        return out;
    };
    let watchdog = match watchdog_usec.map(|v| v.to_string_lossy()) {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(0) => None,
            Ok(us) => Some(Duration::from_micros(us)),
            Err(_) => {
                out.warnings.push(format!(
                    "{WATCHDOG_USEC}={v:?}: not a number of microseconds; no watchdog pings"
                ));
                None
            }
        },
    };
    let watchdog = match (watchdog, watchdog_pid.map(|v| v.to_string_lossy())) {
        (None, _) => None,
        (Some(w), None) => Some(w),
        (Some(w), Some(p)) => match p.parse::<u32>() {
            Ok(p) if p == pid => Some(w),
            // Meant for another process (a parent that started lvsmon): not ours to ping.
            Ok(_) => None,
            Err(_) => {
                out.warnings.push(format!(
                    "{WATCHDOG_PID}={p:?}: not a process id; no watchdog pings"
                ));
                None
            }
        },
    };
    out.config = Some(Config { socket, watchdog });
    out
}

/// Counters of what was sent (64-bit, never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdCounters {
    /// Datagrams systemd accepted.
    pub sent: u64,
    /// Of those, watchdog pings.
    pub pings: u64,
    /// Datagrams that could not be sent (systemd gone, its queue full).
    pub errors: u64,
    /// The errno of the last failed send; 0 if none failed.
    pub last_errno: i32,
}

/// The connected notification socket and the watchdog schedule.
#[derive(Debug)]
pub struct SdNotify {
    /// `AF_UNIX`, `SOCK_DGRAM`, close-on-exec, connected to systemd's socket.
    fd: OwnedFd,
    /// Ping period in µs (half the watchdog timeout, at least [`MIN_PING_US`]); 0 without a
    /// watchdog.
    ping_us: u64,
    /// When the next ping is due: `None` until the first `READY=1` (systemd starts the
    /// watchdog then) and always without a watchdog.
    next_ping: Option<Time>,
    /// `CLOCK_MONOTONIC` in µs at the daemon's [`Time::ZERO`].
    monotonic_origin_us: u64,
    /// Our pid, for `MAINPID=`.
    pid: u32,
    /// Where a message is composed.
    buf: [u8; MSG_CAP],
    counters: SdCounters,
}

impl SdNotify {
    /// Opens a datagram socket and connects it to `cfg.socket`. `monotonic_origin_us` is
    /// `CLOCK_MONOTONIC` at the loop clock's [`Time::ZERO`] (see
    /// [`crate::clock::Clock::monotonic_origin_us`]).
    ///
    /// # Errors
    /// The socket cannot be created, or nothing listens at that address.
    pub fn open(cfg: &Config, monotonic_origin_us: u64) -> io::Result<SdNotify> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_un is plain data; all zeroes is a valid (empty) address.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let (name, skip) = match &cfg.socket {
            // A path is NUL-terminated (the zeroed byte after it).
            SocketName::Path(p) => (&p[..], 0),
            // An abstract name starts after a NUL in sun_path[0]; its length is the address
            // length, without a terminator.
            SocketName::Abstract(n) => (&n[..], 1),
        };
        // Either way one byte of sun_path is taken by a NUL.
        if name.len() > SUN_PATH - 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "notify socket address too long",
            ));
        }
        for (d, &s) in addr.sun_path[skip..].iter_mut().zip(name) {
            *d = s as libc::c_char;
        }
        // The family, then the name and its one NUL (before an abstract name, after a path).
        let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + name.len();
        // SAFETY: `addr` is an initialised sockaddr_un and `len` is within its size.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let ping_us = cfg.watchdog.map_or(0, |w| (micros(w) / 2).max(MIN_PING_US));
        Ok(SdNotify {
            fd,
            ping_us,
            next_ping: None,
            monotonic_origin_us,
            pid: std::process::id(),
            buf: [0; MSG_CAP],
            counters: SdCounters::default(),
        })
    }

    /// [`SdNotify::open`] for the daemon's startup: logs one line saying what systemd will
    /// hear, or why it will hear nothing (the daemon runs on either way).
    pub fn open_logged(cfg: &Config, monotonic_origin_us: u64, log: &mut Log) -> Option<SdNotify> {
        let shown = cfg.socket.display();
        match SdNotify::open(cfg, monotonic_origin_us) {
            Ok(s) => {
                if let Some(mut l) = log.line(Level::Notice) {
                    let _ = write!(l, "msg=\"notifying systemd\" ");
                    l.quoted("socket", &shown);
                    match cfg.watchdog {
                        Some(_) => {
                            let _ = write!(
                                l,
                                " watchdog_ping={}.{:03}s",
                                s.ping_us / 1_000_000,
                                s.ping_us % 1_000_000 / 1000
                            );
                        }
                        None => {
                            let _ = write!(l, " watchdog_ping=off");
                        }
                    }
                }
                Some(s)
            }
            Err(e) => {
                if let Some(mut l) = log.line(Level::Warn) {
                    let _ = write!(l, "msg=\"systemd notify socket unusable, not notifying\" ");
                    l.quoted("socket", &shown);
                    let _ = write!(l, " ");
                    l.quoted("error", e.to_string().as_bytes());
                }
                None
            }
        }
    }

    /// `READY=1`, with a status line naming what is checked and `MAINPID=`. The first one
    /// starts the watchdog pings (systemd arms its watchdog on it); later ones (after a
    /// reload) keep the schedule. Returns whether systemd took the message.
    pub fn ready(&mut self, now: Time, reals: usize, virtuals: usize) -> bool {
        if self.ping_us > 0 && self.next_ping.is_none() {
            self.next_ping = Some(now.add_micros(self.ping_us));
        }
        let pid = self.pid;
        self.send_with(|w| write_ready(w, reals, virtuals, pid))
    }

    /// `RELOADING=1` with `MONOTONIC_USEC=` for `now`: a reload has started; [`SdNotify::ready`]
    /// must follow when it is done (whether or not the new configuration was taken).
    pub fn reloading(&mut self, now: Time) -> bool {
        let mono = self.monotonic_origin_us.saturating_add(now.0);
        self.send_with(|w| write_reloading(w, mono))
    }

    /// `STOPPING=1`: the daemon is shutting down.
    pub fn stopping(&mut self) -> bool {
        self.send_with(write_stopping)
    }

    /// When the loop must wake for the next watchdog ping; `None` without a watchdog or
    /// before the first `READY=1`.
    pub fn next_ping(&self) -> Option<Time> {
        self.next_ping
    }

    /// Sends `WATCHDOG=1` if a ping is due at `now`, and schedules the next one half a
    /// watchdog timeout later. Call it from the loop, after the turn's work.
    pub fn tick(&mut self, now: Time) {
        let Some(due) = self.next_ping else { return };
        if now < due {
            return;
        }
        self.next_ping = Some(now.add_micros(self.ping_us));
        if self.send_with(|w| w.write_all(b"WATCHDOG=1")) {
            self.counters.pings += 1;
        }
    }

    /// The ping period (half the watchdog timeout); `None` without a watchdog.
    pub fn ping_period(&self) -> Option<Duration> {
        (self.ping_us > 0).then(|| Duration::from_micros(self.ping_us))
    }

    /// What was sent so far.
    pub fn counters(&self) -> SdCounters {
        self.counters
    }

    /// Composes a message with `f` in the fixed buffer and sends it without blocking.
    fn send_with(&mut self, f: impl FnOnce(&mut &mut [u8]) -> io::Result<()>) -> bool {
        let mut rest: &mut [u8] = &mut self.buf;
        if f(&mut rest).is_err() {
            // Longer than the buffer: cannot happen with the messages above.
            self.counters.errors += 1;
            return false;
        }
        let len = MSG_CAP - rest.len();
        // SAFETY: send(2) on our socket, reading `len` initialised bytes of `buf`.
        let rc = unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                self.buf.as_ptr().cast(),
                len,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc < 0 {
            self.counters.errors += 1;
            self.counters.last_errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            false
        } else {
            self.counters.sent += 1;
            true
        }
    }
}

/// `"s"` unless `n` is 1.
fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The `READY=1` message.
fn write_ready(w: &mut &mut [u8], reals: usize, virtuals: usize, pid: u32) -> io::Result<()> {
    write!(
        w,
        "READY=1\nSTATUS=checking {reals} real server{} behind {virtuals} virtual service{}\nMAINPID={pid}",
        plural(reals),
        plural(virtuals)
    )
}

/// The `RELOADING=1` message, stamped with `CLOCK_MONOTONIC` µs.
fn write_reloading(w: &mut &mut [u8], monotonic_us: u64) -> io::Result<()> {
    write!(
        w,
        "RELOADING=1\nMONOTONIC_USEC={monotonic_us}\nSTATUS=reloading the configuration"
    )
}

/// The `STOPPING=1` message.
fn write_stopping(w: &mut &mut [u8]) -> io::Result<()> {
    w.write_all(b"STOPPING=1\nSTATUS=stopping: saving state")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::os::unix::net::UnixDatagram;
    use std::path::PathBuf;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    /// Parses the three values (None = unset) for pid 1000.
    fn env(sock: Option<&str>, usec: Option<&str>, pid: Option<&str>) -> FromEnv {
        let (s, u, p) = (sock.map(os), usec.map(os), pid.map(os));
        parse(s.as_deref(), u.as_deref(), p.as_deref(), 1000)
    }

    fn composed(f: impl FnOnce(&mut &mut [u8]) -> io::Result<()>) -> String {
        let mut buf = [0u8; MSG_CAP];
        let mut rest: &mut [u8] = &mut buf;
        f(&mut rest).unwrap();
        let len = MSG_CAP - rest.len();
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    /// A datagram socket bound in a fresh temp directory, removed on drop.
    struct Listener {
        sock: UnixDatagram,
        dir: PathBuf,
    }

    impl Listener {
        fn new(tag: &str) -> Listener {
            let dir = std::env::temp_dir().join(format!("lvsmon-sd-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let sock = UnixDatagram::bind(dir.join("notify")).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            Listener { sock, dir }
        }

        fn config(&self, watchdog: Option<Duration>) -> Config {
            Config {
                socket: SocketName::Path(self.dir.join("notify").as_os_str().as_bytes().to_vec()),
                watchdog,
            }
        }

        #[track_caller]
        fn recv(&self) -> String {
            let mut b = [0u8; 1024];
            let n = self.sock.recv(&mut b).expect("a datagram within 5 s");
            String::from_utf8(b[..n].to_vec()).unwrap()
        }
    }

    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Tests for reading the environment
    // ---------------------------------------------------------------------------------------

    #[test]
    fn no_socket_no_notifications() {
        assert_eq!(env(None, None, None), FromEnv::default());
        assert_eq!(env(Some(""), Some("1000000"), None), FromEnv::default());
    }

    #[test]
    fn path_and_abstract_socket() {
        let e = env(Some("/run/systemd/notify"), None, None);
        assert_eq!(
            e.config,
            Some(Config {
                socket: SocketName::Path(b"/run/systemd/notify".to_vec()),
                watchdog: None
            })
        );
        assert!(e.warnings.is_empty());
        let e = env(Some("@/org/freedesktop/systemd1/notify/42"), None, None);
        assert_eq!(
            e.config.unwrap().socket,
            SocketName::Abstract(b"/org/freedesktop/systemd1/notify/42".to_vec())
        );
    }

    #[test]
    fn unusable_socket_names_are_ignored_with_a_warning() {
        let long = format!("/{}", "x".repeat(SUN_PATH));
        let long_abstract = format!("@{}", "x".repeat(SUN_PATH));
        for bad in ["run/notify", "@", "vsock:2:1234", &long, &long_abstract] {
            let e = env(Some(bad), Some("1000000"), None);
            assert_eq!(e.config, None, "{bad}");
            assert_eq!(e.warnings.len(), 1, "{bad}");
            assert!(
                e.warnings[0].starts_with("NOTIFY_SOCKET="),
                "{:?}",
                e.warnings
            );
        }
        // The longest path that fits.
        let fits = format!("/{}", "x".repeat(SUN_PATH - 2));
        assert!(env(Some(&fits), None, None).config.is_some());
    }

    #[test]
    fn watchdog_usec() {
        let wd = |usec, pid| env(Some("/run/n"), usec, pid);
        assert_eq!(
            wd(Some("30000000"), None).config.unwrap().watchdog,
            Some(Duration::from_secs(30))
        );
        // Unset or 0: no watchdog, nothing to warn about.
        for e in [wd(None, None), wd(Some("0"), None)] {
            assert_eq!(e.config.unwrap().watchdog, None);
            assert!(e.warnings.is_empty());
        }
        // Not a number: no watchdog, a warning, notifications still go out.
        for bad in ["", "-5", "30s", "1e6", " 100", "18446744073709551616"] {
            let e = wd(Some(bad), None);
            let c = e.config.expect("still notifies");
            assert_eq!(c.watchdog, None, "{bad:?}");
            assert_eq!(e.warnings.len(), 1, "{bad:?}");
            assert!(
                e.warnings[0].starts_with("WATCHDOG_USEC="),
                "{:?}",
                e.warnings
            );
        }
    }

    #[test]
    fn watchdog_pid() {
        let wd = |pid| {
            env(Some("/run/n"), Some("200000"), pid)
                .config
                .unwrap()
                .watchdog
        };
        assert_eq!(wd(Some("1000")), Some(Duration::from_millis(200)));
        // Another process's watchdog: not ours to ping.
        assert_eq!(wd(Some("999")), None);
        assert_eq!(wd(Some("1")), None);
        let e = env(Some("/run/n"), Some("200000"), Some("self"));
        assert_eq!(e.config.unwrap().watchdog, None);
        assert!(e.warnings[0].starts_with("WATCHDOG_PID="));
    }

    // ---------------------------------------------------------------------------------------
    // Tests for the messages
    // ---------------------------------------------------------------------------------------

    #[test]
    fn message_texts() {
        assert_eq!(
            composed(|w| write_ready(w, 120, 4, 4242)),
            "READY=1\nSTATUS=checking 120 real servers behind 4 virtual services\nMAINPID=4242"
        );
        assert_eq!(
            composed(|w| write_ready(w, 1, 1, 7)),
            "READY=1\nSTATUS=checking 1 real server behind 1 virtual service\nMAINPID=7"
        );
        assert_eq!(
            composed(|w| write_reloading(w, 197_340_680_966)),
            "RELOADING=1\nMONOTONIC_USEC=197340680966\nSTATUS=reloading the configuration"
        );
        assert_eq!(
            composed(write_stopping),
            "STOPPING=1\nSTATUS=stopping: saving state"
        );
        // The longest READY=1 fits the buffer.
        let longest = composed(|w| write_ready(w, usize::MAX, usize::MAX, u32::MAX));
        assert!(longest.len() < MSG_CAP, "{}", longest.len());
    }

    // ---------------------------------------------------------------------------------------
    // Tests over a real socket
    // ---------------------------------------------------------------------------------------

    #[test]
    fn messages_reach_a_path_socket_and_pings_follow_ready() {
        let l = Listener::new("path");
        let mut s = SdNotify::open(&l.config(Some(Duration::from_millis(200))), 5_000_000).unwrap();
        assert_eq!(s.ping_period(), Some(Duration::from_millis(100)));
        // No pings before READY=1.
        assert_eq!(s.next_ping(), None);
        s.tick(Time(1_000_000));
        assert!(s.ready(Time(1_000), 3, 2));
        let pid = std::process::id();
        assert_eq!(
            l.recv(),
            format!(
                "READY=1\nSTATUS=checking 3 real servers behind 2 virtual services\nMAINPID={pid}"
            )
        );
        assert_eq!(s.next_ping(), Some(Time(101_000)));
        // Not due yet: nothing sent.
        s.tick(Time(100_999));
        assert_eq!(s.counters().pings, 0);
        s.tick(Time(101_500));
        assert_eq!(l.recv(), "WATCHDOG=1");
        assert_eq!(s.next_ping(), Some(Time(201_500)));
        // A later READY=1 (after a reload) keeps the schedule.
        assert!(s.reloading(Time(150_000)));
        assert_eq!(
            l.recv(),
            "RELOADING=1\nMONOTONIC_USEC=5150000\nSTATUS=reloading the configuration"
        );
        assert!(s.ready(Time(160_000), 3, 2));
        assert!(l.recv().starts_with("READY=1\n"));
        assert_eq!(s.next_ping(), Some(Time(201_500)));
        assert!(s.stopping());
        assert_eq!(l.recv(), "STOPPING=1\nSTATUS=stopping: saving state");
        let c = s.counters();
        assert_eq!((c.sent, c.pings, c.errors), (5, 1, 0));
    }

    #[test]
    fn abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lvsmon-sd-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let l = UnixDatagram::bind_addr(&addr).unwrap();
        l.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let cfg = parse(Some(OsStr::new(&format!("@{name}"))), None, None, 1)
            .config
            .unwrap();
        let mut s = SdNotify::open(&cfg, 0).unwrap();
        assert_eq!(s.ping_period(), None);
        assert!(s.ready(Time::ZERO, 1, 1));
        assert_eq!(s.next_ping(), None);
        let mut b = [0u8; 256];
        let n = l.recv(&mut b).unwrap();
        assert!(b[..n].starts_with(b"READY=1\n"));
    }

    #[test]
    fn nobody_listening() {
        let l = Listener::new("gone");
        let cfg = l.config(Some(Duration::from_millis(10)));
        // Nothing at the address: open fails (the daemon then runs without notifying).
        let missing = Config {
            socket: SocketName::Path(l.dir.join("nothing").as_os_str().as_bytes().to_vec()),
            watchdog: None,
        };
        assert!(SdNotify::open(&missing, 0).is_err());
        // systemd gone after the connect: sends fail, are counted, and never block.
        let mut s = SdNotify::open(&cfg, 0).unwrap();
        drop(l);
        assert!(!s.ready(Time::ZERO, 1, 1));
        s.tick(Time(5_000));
        assert!(!s.stopping());
        let c = s.counters();
        assert_eq!((c.sent, c.pings, c.errors), (0, 0, 3));
        assert_ne!(c.last_errno, 0);
    }

    #[test]
    fn tiny_watchdog_does_not_spin() {
        let l = Listener::new("tiny");
        let s = SdNotify::open(&l.config(Some(Duration::from_micros(1))), 0).unwrap();
        assert_eq!(s.ping_period(), Some(Duration::from_micros(MIN_PING_US)));
    }
}
