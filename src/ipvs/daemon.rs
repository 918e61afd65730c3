//! What a director of a pair sets once rather than per real (lvsmon(8), DIRECTOR PAIRS): the
//! kernel's connection-synchronisation daemons (`IPVS_CMD_NEW_DAEMON`, as
//! `ipvsadm --start-daemon`) and its connection timeouts (`IPVS_CMD_SET_CONFIG`, as
//! `ipvsadm --set`).
//!
//! These exchanges are few and happen at startup and at a reload that changes them, never in
//! the loop's steady state, so they run on a socket of their own, one request at a time, each
//! waiting a bounded time for the kernel's answer. At startup that is the main thread before
//! the loop; at a reload it is a helper thread (see [`apply_in_background`]).

use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::sys;
use super::wire::{self, Reply, Writer};
use crate::config::director::{IpvsTimeouts, SyncDaemon};

/// How long one request waits for the kernel.
const WAIT: Duration = Duration::from_secs(2);

/// A sync daemon as the kernel reports it (`GET_DAEMON`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    /// Backup rather than master.
    pub backup: bool,
    /// Interface.
    pub iface: String,
    /// Sync id.
    pub id: u8,
    /// Message size limit, multicast port and TTL, as the kernel has them.
    pub maxlen: u16,
    /// Multicast port.
    pub port: u16,
    /// Multicast TTL.
    pub ttl: u8,
    /// Multicast group.
    pub group: Option<IpAddr>,
}

impl Running {
    /// The kernel's daemon is the one `want` describes (what `want` leaves to the kernel's
    /// default is not compared; `maxlen` is compared as the kernel keeps it, see
    /// [`kernel_maxlen`]).
    pub fn matches(&self, want: &SyncDaemon) -> bool {
        self.backup == want.backup
            && self.iface == want.iface
            && self.id == want.id
            && (want.maxlen == 0 || kernel_maxlen(want) == self.maxlen)
            && (want.port == 0 || want.port == self.port)
            && (want.ttl == 0 || want.ttl == self.ttl)
            && (want.group.is_none() || want.group == self.group)
    }
}

/// The message size limit the kernel keeps, and reports, for `d` (whose `maxlen` is not 0):
/// it clamps the one asked for to at least 1024 bytes for a backup (1 for a master) and at
/// most 65535 less the IP and UDP headers of the group's family (IPv4 when no group is
/// given).
pub fn kernel_maxlen(d: &SyncDaemon) -> u16 {
    let headers = match d.group {
        Some(IpAddr::V6(_)) => 40 + 8,
        _ => 20 + 8,
    };
    let least = if d.backup { 1024 } else { 1 };
    d.maxlen.clamp(least, u16::MAX - headers)
}

/// A socket for the few director-wide requests.
pub struct Control {
    sock: OwnedFd,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl Control {
    /// Opens a netlink socket and resolves the `IPVS` family.
    ///
    /// # Errors
    /// No IPVS, no permission, or a socket failure (as text for the log).
    pub fn open() -> Result<Control, String> {
        let sock =
            super::client::generic_netlink_socket().map_err(|e| format!("netlink socket: {e}"))?;
        let mut c = Control {
            sock,
            family: 0,
            seq: 0,
            buf: vec![0u8; 64 * 1024],
        };
        let seq = c.next_seq();
        let mut out = [0u8; 128];
        let msg = wire::build_getfamily(&mut out, seq, sys::IPVS_GENL_NAME)
            .map_err(|e| e.to_string())?
            .to_vec();
        let mut family = None;
        c.exchange(&msg, seq, &mut |m| {
            if let Ok(Reply::Family { id, .. }) = wire::decode(m, 0) {
                family = Some(id);
            }
        })?;
        c.family = family.ok_or("no IPVS generic netlink family")?;
        Ok(c)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        self.seq
    }

    /// Sends `msg` and reads replies of `seq` until its ACK, error or dump end.
    /// Other messages of `seq` (a family, dump entries) go to `f`.
    fn exchange(
        &mut self,
        msg: &[u8],
        seq: u32,
        f: &mut dyn FnMut(&wire::Msg<'_>),
    ) -> Result<(), String> {
        let fd = self.sock.as_raw_fd();
        let mut sa: libc::sockaddr_nl = unsafe { mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: sends our buffer to the kernel.
        let n = unsafe {
            libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(format!("netlink send: errno={}", errno()));
        }
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("no answer from the kernel".into());
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: polls one fd we own.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32 + 1) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: reads into our own buffer.
            let n = unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR || e == libc::EAGAIN {
                    continue;
                }
                return Err(format!("netlink receive: errno={e}"));
            }
            for m in wire::messages(&self.buf[..n as usize]) {
                let m = m.map_err(|e| e.to_string())?;
                if m.seq != seq {
                    continue;
                }
                if m.ty == sys::NLMSG_ERROR || m.ty == sys::NLMSG_DONE {
                    match wire::decode(&m, self.family).map_err(|e| e.to_string())? {
                        Reply::Error { errno, .. } => return Err(format!("errno={errno}")),
                        _ => return Ok(()),
                    }
                }
                f(&m);
            }
        }
    }

    /// A buffer and a sequence number for the next request.
    fn start(&mut self) -> (Vec<u8>, u32) {
        (vec![0u8; 512], self.next_seq())
    }

    /// The sync daemons running in the kernel.
    ///
    /// # Errors
    /// The kernel refused or did not answer.
    pub fn daemons(&mut self) -> Result<Vec<Running>, String> {
        let (mut out, seq) = self.start();
        let w = Writer::new(
            &mut out,
            self.family,
            sys::NLM_F_REQUEST | sys::NLM_F_DUMP | sys::NLM_F_ACK,
            seq,
            sys::IPVS_CMD_GET_DAEMON,
            sys::IPVS_GENL_VERSION,
        );
        let msg = w.finish().map_err(|e| e.to_string())?.to_vec();
        let mut found = Vec::new();
        self.exchange(&msg, seq, &mut |m| found.extend(decode_daemon(m)))?;
        Ok(found)
    }

    /// Starts `d` (`NEW_DAEMON`).
    ///
    /// # Errors
    /// The kernel refused (`errno=N`) or did not answer.
    pub fn start_daemon(&mut self, d: &SyncDaemon) -> Result<(), String> {
        let (mut out, seq) = self.start();
        let msg = build_new_daemon(&mut out, self.family, seq, d)?;
        self.exchange(&msg, seq, &mut |_| {})
    }

    /// Stops the master (`backup` false) or backup daemon (`DEL_DAEMON`).
    ///
    /// # Errors
    /// The kernel refused or did not answer.
    pub fn stop_daemon(&mut self, backup: bool) -> Result<(), String> {
        let (mut out, seq) = self.start();
        let mut w = request(&mut out, self.family, seq, sys::IPVS_CMD_DEL_DAEMON);
        let n = w.nest(sys::IPVS_CMD_ATTR_DAEMON);
        w.u32(DAEMON_STATE, state_of(backup));
        w.end_nest(n);
        let msg = w.finish().map_err(|e| e.to_string())?.to_vec();
        self.exchange(&msg, seq, &mut |_| {})
    }

    /// Sets the connection timeouts given (`SET_CONFIG`; the others stay as they are).
    ///
    /// # Errors
    /// The kernel refused or did not answer.
    pub fn set_timeouts(&mut self, t: &IpvsTimeouts) -> Result<(), String> {
        let (mut out, seq) = self.start();
        let msg = build_set_config(&mut out, self.family, seq, t)?;
        self.exchange(&msg, seq, &mut |_| {})
    }
}

const DAEMON_STATE: u16 = 1;
const DAEMON_MCAST_IFN: u16 = 2;
const DAEMON_SYNC_ID: u16 = 3;
const DAEMON_SYNC_MAXLEN: u16 = 4;
const DAEMON_MCAST_GROUP: u16 = 5;
const DAEMON_MCAST_GROUP6: u16 = 6;
const DAEMON_MCAST_PORT: u16 = 7;
const DAEMON_MCAST_TTL: u16 = 8;

fn state_of(backup: bool) -> u32 {
    if backup {
        2 // IP_VS_STATE_BACKUP
    } else {
        1 // IP_VS_STATE_MASTER
    }
}

/// An IPVS request `cmd` that asks for an ACK, written into `out`.
fn request(out: &mut [u8], family: u16, seq: u32, cmd: u8) -> Writer<'_> {
    Writer::new(
        out,
        family,
        sys::NLM_F_REQUEST | sys::NLM_F_ACK,
        seq,
        cmd,
        sys::IPVS_GENL_VERSION,
    )
}

/// Builds `NEW_DAEMON` for `d`.
///
/// # Errors
/// `out` too small.
pub fn build_new_daemon(
    out: &mut [u8],
    family: u16,
    seq: u32,
    d: &SyncDaemon,
) -> Result<Vec<u8>, String> {
    let mut w = request(out, family, seq, sys::IPVS_CMD_NEW_DAEMON);
    let n = w.nest(sys::IPVS_CMD_ATTR_DAEMON);
    w.u32(DAEMON_STATE, state_of(d.backup));
    let mut ifn = d.iface.as_bytes().to_vec();
    ifn.push(0);
    w.attr(DAEMON_MCAST_IFN, &ifn);
    w.u32(DAEMON_SYNC_ID, d.id.into());
    if d.maxlen != 0 {
        w.u16(DAEMON_SYNC_MAXLEN, d.maxlen);
    }
    match d.group {
        Some(IpAddr::V4(a)) => w.attr(DAEMON_MCAST_GROUP, &a.octets()),
        Some(IpAddr::V6(a)) => w.attr(DAEMON_MCAST_GROUP6, &a.octets()),
        None => {}
    }
    if d.port != 0 {
        // Host order: the kernel converts it itself.
        w.u16(DAEMON_MCAST_PORT, d.port);
    }
    if d.ttl != 0 {
        w.attr(DAEMON_MCAST_TTL, &[d.ttl]);
    }
    w.end_nest(n);
    Ok(w.finish().map_err(|e| e.to_string())?.to_vec())
}

/// Builds `SET_CONFIG` with the timeouts `t` gives.
///
/// # Errors
/// `out` too small.
pub fn build_set_config(
    out: &mut [u8],
    family: u16,
    seq: u32,
    t: &IpvsTimeouts,
) -> Result<Vec<u8>, String> {
    let mut w = request(out, family, seq, sys::IPVS_CMD_SET_CONFIG);
    let secs = |d: Duration| d.as_secs().min(u32::MAX.into()) as u32;
    if let Some(d) = t.tcp {
        w.u32(sys::IPVS_CMD_ATTR_TIMEOUT_TCP, secs(d));
    }
    if let Some(d) = t.tcpfin {
        w.u32(sys::IPVS_CMD_ATTR_TIMEOUT_TCP_FIN, secs(d));
    }
    if let Some(d) = t.udp {
        w.u32(sys::IPVS_CMD_ATTR_TIMEOUT_UDP, secs(d));
    }
    Ok(w.finish().map_err(|e| e.to_string())?.to_vec())
}

/// One daemon of a `GET_DAEMON` reply, if `m` is one.
fn decode_daemon(m: &wire::Msg<'_>) -> Option<Running> {
    if m.payload.first() != Some(&sys::IPVS_CMD_NEW_DAEMON) {
        return None;
    }
    let body = m.payload.get(4..)?;
    let nest = wire::attrs(body)
        .filter_map(Result::ok)
        .find(|(t, _)| *t == sys::IPVS_CMD_ATTR_DAEMON)?
        .1;
    let mut d = Running {
        backup: false,
        iface: String::new(),
        id: 0,
        maxlen: 0,
        port: 0,
        ttl: 0,
        group: None,
    };
    let u32_of = |p: &[u8]| {
        p.get(..4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u16_of = |p: &[u8]| p.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    for (t, p) in wire::attrs(nest).filter_map(Result::ok) {
        match t {
            DAEMON_STATE => d.backup = u32_of(p)? & 2 != 0,
            DAEMON_MCAST_IFN => {
                let n = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                d.iface = String::from_utf8_lossy(&p[..n]).into_owned();
            }
            DAEMON_SYNC_ID => d.id = u32_of(p)? as u8,
            DAEMON_SYNC_MAXLEN => d.maxlen = u16_of(p)?,
            DAEMON_MCAST_PORT => d.port = u16_of(p)?,
            DAEMON_MCAST_TTL => d.ttl = *p.first()?,
            DAEMON_MCAST_GROUP => {
                let b: [u8; 4] = p.get(..4)?.try_into().ok()?;
                d.group = Some(IpAddr::from(b));
            }
            DAEMON_MCAST_GROUP6 => {
                let b: [u8; 16] = p.get(..16)?.try_into().ok()?;
                d.group = Some(IpAddr::from(b));
            }
            _ => {}
        }
    }
    Some(d)
}

/// What became of each configured sync daemon, for the log, `lvsmon status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A matching daemon was running: adopted.
    Adopted,
    /// Started (after stopping a different one, if `restarted`).
    Started {
        /// A daemon with other settings was stopped first.
        restarted: bool,
    },
    /// The kernel refused, or could not be asked (the reason).
    Failed(String),
    /// `--dry-run`: left alone.
    DryRun,
}

impl Outcome {
    /// `adopted`, `started`, `restarted`, `failed` or `dry-run`.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Adopted => "adopted",
            Outcome::Started { restarted: false } => "started",
            Outcome::Started { restarted: true } => "restarted",
            Outcome::Failed(_) => "failed",
            Outcome::DryRun => "dry-run",
        }
    }

    /// lvsmon saw to it that a daemon with these settings runs (adopted, started or
    /// restarted); not when the kernel refused, nor under `--dry-run`, which leaves the
    /// daemons alone and does not ask the kernel.
    pub fn running(&self) -> bool {
        matches!(self, Outcome::Adopted | Outcome::Started { .. })
    }
}

/// `adopted`, `started`, `restarted`, `failed (...)` or `dry-run`.
impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Failed(e) => write!(f, "failed ({e})"),
            o => f.write_str(o.word()),
        }
    }
}

/// A configured sync daemon and what became of it, as `lvsmon status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The daemon as configured.
    pub daemon: SyncDaemon,
    /// What lvsmon did about it.
    pub outcome: Outcome,
}

impl Status {
    /// Each of `want` with its outcome.
    pub fn of(want: &[SyncDaemon], outcomes: &[Outcome]) -> Vec<Status> {
        want.iter()
            .zip(outcomes)
            .map(|(d, o)| Status {
                daemon: d.clone(),
                outcome: o.clone(),
            })
            .collect()
    }

    /// Each of `want` with the same outcome.
    fn all(want: &[SyncDaemon], outcome: &Outcome) -> Vec<Status> {
        want.iter()
            .map(|d| Status {
                daemon: d.clone(),
                outcome: outcome.clone(),
            })
            .collect()
    }

    /// The line of the log and of `lvsmon status`: `sync-daemon master eth1 id 1: started`
    /// (no line end; writes into `w` without allocating).
    pub fn write_line(&self, w: &mut impl std::io::Write) -> io::Result<()> {
        let d = &self.daemon;
        write!(
            w,
            "sync-daemon {} {} id {}: {}",
            d.state(),
            d.iface,
            d.id,
            self.outcome
        )
    }
}

/// One step of bringing the kernel's sync daemons in line with the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the master (`backup` false) or the backup daemon. A refusal is not reported:
    /// there may be none running.
    Stop {
        /// The backup daemon rather than the master.
        backup: bool,
    },
    /// The entry `want[i]` runs as configured: adopted.
    Adopt(usize),
    /// Start the entry `want[i]` of the configuration.
    Start {
        /// Its index in `want`.
        want: usize,
        /// A daemon with other settings is stopped just before (the step before this one).
        restarted: bool,
    },
}

/// What to do to bring the daemons the kernel runs (`running`, as `GET_DAEMON` reports
/// them) in line with `want`, the previous configuration having been `old` (empty at
/// startup). First the daemons `old` named in a state (master, backup) that `want` no longer
/// names are stopped, whether or not one runs; then each entry of `want`, in order, is
/// adopted when the kernel's daemon in its state matches it ([`Running::matches`]), stopped
/// and started again when that one has other settings, started when none runs. A daemon
/// neither `old` nor `want` names is left alone. Each entry of `want` gets exactly one
/// [`Action::Adopt`] or [`Action::Start`].
pub fn plan(running: &[Running], want: &[SyncDaemon], old: &[SyncDaemon]) -> Vec<Action> {
    let mut steps = Vec::new();
    for o in old {
        if !want.iter().any(|w| w.backup == o.backup) {
            steps.push(Action::Stop { backup: o.backup });
        }
    }
    for (i, w) in want.iter().enumerate() {
        match running.iter().find(|r| r.backup == w.backup) {
            Some(r) if r.matches(w) => steps.push(Action::Adopt(i)),
            Some(_) => {
                steps.push(Action::Stop { backup: w.backup });
                steps.push(Action::Start {
                    want: i,
                    restarted: true,
                });
            }
            None => steps.push(Action::Start {
                want: i,
                restarted: false,
            }),
        }
    }
    steps
}

/// The requests [`sync_daemons`] makes of the kernel.
pub trait Daemons {
    /// The sync daemons running (`GET_DAEMON`).
    ///
    /// # Errors
    /// The kernel refused or did not answer.
    fn running(&mut self) -> Result<Vec<Running>, String>;

    /// Stops the master (`backup` false) or backup daemon.
    ///
    /// # Errors
    /// The kernel refused or did not answer.
    fn stop(&mut self, backup: bool) -> Result<(), String>;

    /// Starts `d`.
    ///
    /// # Errors
    /// The kernel refused (`errno=N`) or did not answer.
    fn start(&mut self, d: &SyncDaemon) -> Result<(), String>;
}

impl Daemons for Control {
    fn running(&mut self) -> Result<Vec<Running>, String> {
        self.daemons()
    }

    fn stop(&mut self, backup: bool) -> Result<(), String> {
        self.stop_daemon(backup)
    }

    fn start(&mut self, d: &SyncDaemon) -> Result<(), String> {
        self.start_daemon(d)
    }
}

/// Carries out `steps` (a [`plan`] for `want`) on `k`: returns one outcome per entry of
/// `want`. A stop's refusal is ignored (a start that then finds the daemon still running
/// fails, and says so); a start's refusal is that entry's [`Outcome::Failed`].
pub fn execute(k: &mut impl Daemons, steps: &[Action], want: &[SyncDaemon]) -> Vec<Outcome> {
    let mut out: Vec<Option<Outcome>> = vec![None; want.len()];
    for step in steps {
        match *step {
            Action::Stop { backup } => {
                let _ = k.stop(backup);
            }
            Action::Adopt(i) => out[i] = Some(Outcome::Adopted),
            Action::Start { want: i, restarted } => {
                out[i] = Some(match k.start(&want[i]) {
                    Ok(()) => Outcome::Started { restarted },
                    Err(e) => Outcome::Failed(e),
                });
            }
        }
    }
    out.into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not planned".into())))
        .collect()
}

/// Brings the kernel's sync daemons in line with `want` ([`plan`], then [`execute`]); when
/// the kernel does not say which run, none is taken to. Returns one outcome per entry of
/// `want`.
pub fn sync_daemons(k: &mut impl Daemons, want: &[SyncDaemon], old: &[SyncDaemon]) -> Vec<Outcome> {
    let running = k.running().unwrap_or_default();
    let steps = plan(&running, want, old);
    execute(k, &steps, want)
}

/// One line per daemon for the log: `sync-daemon master eth1 id 1: started`.
pub fn describe(status: &[Status]) -> Vec<String> {
    status
        .iter()
        .map(|s| {
            let mut line = Vec::new();
            let _ = s.write_line(&mut line);
            String::from_utf8_lossy(&line).into_owned()
        })
        .collect()
}

/// A reload changed the sync daemons from `old` to `new`: a helper thread stops and starts
/// them so the loop never waits on the kernel; its lines reach the log through
/// [`take_news`] and `lvsmon status` through [`status`].
pub fn apply_in_background(old: Vec<SyncDaemon>, new: Vec<SyncDaemon>) {
    let _ = std::thread::Builder::new()
        .name("lvsmon-syncd".into())
        .spawn(move || {
            let (status, lines) = match Control::open() {
                Ok(mut c) => {
                    let o = sync_daemons(&mut c, &new, &old);
                    let status = Status::of(&new, &o);
                    let lines = describe(&status);
                    (status, lines)
                }
                Err(e) => (
                    Status::all(&new, &Outcome::Failed(e.clone())),
                    vec![format!("sync-daemon: {e}")],
                ),
            };
            record(status, lines);
        });
}

/// A reload under `--dry-run` changed the sync daemons to `new`: shown as left alone, in
/// `lvsmon status` and (through [`take_news`]) in the log, as at startup.
pub fn dry_run(new: &[SyncDaemon]) {
    let status = Status::all(new, &Outcome::DryRun);
    let lines = describe(&status);
    record(status, lines);
}

/// The startup line for `ipvs-timeouts` under `--dry-run`: the timeouts that would be set,
/// as the configuration gives them (`ipvs-timeouts tcp 900s udp 300s: dry-run`).
fn timeouts_dry_run(t: &IpvsTimeouts) -> String {
    let mut line = String::from("ipvs-timeouts");
    for (name, d) in [("tcp", t.tcp), ("tcpfin", t.tcpfin), ("udp", t.udp)] {
        if let Some(d) = d {
            line += &format!(" {name} {}s", d.as_secs());
        }
    }
    line + ": dry-run"
}

/// Startup: the timeouts and the sync daemons of `d`, on a socket of lvsmon's own (the loop
/// has not started). Returns the lines for the log; [`status`] shows the daemons' lines.
pub fn apply_at_start(d: &crate::config::director::Director, dry_run: bool) -> Vec<String> {
    if d.sync_daemons.is_empty() && d.ipvs_timeouts.is_none() {
        return Vec::new();
    }
    if dry_run {
        let status = Status::all(&d.sync_daemons, &Outcome::DryRun);
        let mut lines: Vec<String> = d.ipvs_timeouts.iter().map(timeouts_dry_run).collect();
        lines.extend(describe(&status));
        set_status(status);
        return lines;
    }
    let mut c = match Control::open() {
        Ok(c) => c,
        Err(e) => {
            set_status(Status::all(&d.sync_daemons, &Outcome::Failed(e.clone())));
            return vec![format!("sync-daemon and ipvs-timeouts: {e}")];
        }
    };
    let mut lines = Vec::new();
    if let Some(t) = &d.ipvs_timeouts {
        lines.push(match c.set_timeouts(t) {
            Ok(()) => "ipvs-timeouts: set".to_string(),
            Err(e) => format!("ipvs-timeouts: failed ({e})"),
        });
    }
    let o = sync_daemons(&mut c, &d.sync_daemons, &[]);
    let status = Status::of(&d.sync_daemons, &o);
    lines.extend(describe(&status));
    set_status(status);
    lines
}

static STATUS: std::sync::Mutex<Vec<Status>> = std::sync::Mutex::new(Vec::new());
static NEWS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static NEWS_WAITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What [`status`] shows from now on. Built beforehand and swapped in: the lock is held for
/// no more than the swap (the old list is freed after), so the loop's reader finds it free.
fn set_status(mut status: Vec<Status>) {
    if let Ok(mut s) = STATUS.lock() {
        std::mem::swap(&mut *s, &mut status);
    }
    drop(status);
}

/// A background restart's (or a dry-run reload's) outcome: kept for `lvsmon status`, and
/// its lines for the loop to log.
fn record(status: Vec<Status>, lines: Vec<String>) {
    set_status(status);
    if let Ok(mut n) = NEWS.lock() {
        n.extend(lines);
        NEWS_WAITING.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Hands the lines a background restart left to `f` (one atomic load when there are none).
pub fn take_news(mut f: impl FnMut(&str)) {
    if !NEWS_WAITING.swap(false, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    if let Ok(mut n) = NEWS.try_lock() {
        for l in n.iter() {
            f(l);
        }
        n.clear();
    } else {
        NEWS_WAITING.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The configured sync daemons and their outcomes, for `lvsmon status` and `/metrics`:
/// `f` reads them in the order of the configuration, without copying, and its result is
/// returned. The loop never waits on the lock: taken only for a swap ([`set_status`]), it is
/// tried a bounded number of times, and `f` sees an empty list if it stays taken.
pub fn status<R>(f: impl FnOnce(&[Status]) -> R) -> R {
    for _ in 0..1000 {
        match STATUS.try_lock() {
            Ok(s) => return f(&s),
            Err(std::sync::TryLockError::Poisoned(p)) => return f(&p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => std::hint::spin_loop(),
        }
    }
    f(&[])
}

/// The sysctl that makes a persistence template to a quiesced real expire.
pub const EXPIRE_QUIESCENT_TEMPLATE: &str = "/proc/sys/net/ipv4/vs/expire_quiescent_template";

/// `--check-config`: a warning per persistent virtual service whose reals are quiesced when
/// DOWN while the sysctl at `sysctl` says 0: its persistent clients keep being sent to a
/// DOWN real until their template expires. Nothing when the sysctl cannot be read (no IPVS).
pub fn quiescent_template_warnings(
    plan: &crate::config::Plan,
    sysctl: &std::path::Path,
) -> Vec<String> {
    let Ok(v) = std::fs::read_to_string(sysctl) else {
        return Vec::new();
    };
    if v.trim() != "0" {
        return Vec::new();
    }
    plan.virtuals
        .iter()
        .filter(|v| {
            v.persistent.is_some()
                && plan.reals[v.reals.clone()]
                    .iter()
                    .any(|r| r.on_down == crate::config::OnDown::Quiesce)
        })
        .map(|v| {
            format!(
                "warning: {}: virtual {} is persistent and its reals are quiesced when DOWN \
                 (on-down quiesce), but net.ipv4.vs.expire_quiescent_template is 0: persistent \
                 clients keep reaching a DOWN real until their template expires (set it to 1, \
                 or use on-down remove)",
                v.loc, v.key
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::slice::from_ref;

    #[test]
    fn check_config_warns_of_persistent_quiesce_without_template_expiry() {
        let dir = std::env::temp_dir().join(format!("lvsmon-eqt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("lvsmon.conf");
        std::fs::write(
            &conf,
            "virtual tcp 192.0.2.1:443 {\n persistent 300\n real 10.0.0.1\n}\n\
             virtual tcp 192.0.2.1:80 {\n real 10.0.0.1\n}\n\
             virtual tcp 192.0.2.2:443 {\n persistent 300\n on-down remove\n real 10.0.0.1\n}\n",
        )
        .unwrap();
        let plan = crate::config::load(&conf, None).unwrap();
        let sysctl = dir.join("expire_quiescent_template");
        std::fs::write(&sysctl, "0\n").unwrap();
        let w = quiescent_template_warnings(&plan, &sysctl);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("lvsmon.conf:1:1: virtual tcp:192.0.2.1:443 is persistent"),
            "{}",
            w[0]
        );
        std::fs::write(&sysctl, "1\n").unwrap();
        assert!(quiescent_template_warnings(&plan, &sysctl).is_empty());
        assert!(quiescent_template_warnings(&plan, &dir.join("missing")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn attrs_of(msg: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let m = wire::messages(msg).next().unwrap().unwrap();
        let nest = wire::attrs(&m.payload[4..]).next().unwrap().unwrap().1;
        wire::attrs(nest)
            .map(|a| {
                let (t, p) = a.unwrap();
                (t, p.to_vec())
            })
            .collect()
    }

    #[test]
    fn new_daemon_carries_what_ipvsadm_sends() {
        let d = SyncDaemon {
            backup: true,
            iface: "eth1".into(),
            id: 7,
            maxlen: 1400,
            group: Some("239.1.1.1".parse().unwrap()),
            port: 9000,
            ttl: 2,
        };
        let mut buf = [0u8; 256];
        let msg = build_new_daemon(&mut buf, 0x20, 1, &d).unwrap();
        let m = wire::messages(&msg).next().unwrap().unwrap();
        assert_eq!(m.payload[0], sys::IPVS_CMD_NEW_DAEMON);
        assert_eq!(
            attrs_of(&msg),
            vec![
                (DAEMON_STATE, 2u32.to_ne_bytes().to_vec()),
                (DAEMON_MCAST_IFN, b"eth1\0".to_vec()),
                (DAEMON_SYNC_ID, 7u32.to_ne_bytes().to_vec()),
                (DAEMON_SYNC_MAXLEN, 1400u16.to_ne_bytes().to_vec()),
                (DAEMON_MCAST_GROUP, vec![239, 1, 1, 1]),
                (DAEMON_MCAST_PORT, 9000u16.to_ne_bytes().to_vec()),
                (DAEMON_MCAST_TTL, vec![2]),
            ]
        );
        // The kernel's answer to GET_DAEMON has the same layout (command NEW_DAEMON).
        let r = decode_daemon(&wire::messages(&msg).next().unwrap().unwrap()).unwrap();
        assert!(r.matches(&d));
        let other = SyncDaemon { id: 8, ..d.clone() };
        assert!(!r.matches(&other));
        // Left to the kernel's defaults: not compared.
        let plain = SyncDaemon {
            maxlen: 0,
            group: None,
            port: 0,
            ttl: 0,
            ..d
        };
        assert!(r.matches(&plain));
    }

    #[test]
    fn set_config_sends_only_what_is_given() {
        let t = IpvsTimeouts {
            tcp: Some(Duration::from_secs(900)),
            tcpfin: None,
            udp: Some(Duration::from_secs(30)),
        };
        let mut buf = [0u8; 128];
        let msg = build_set_config(&mut buf, 0x20, 1, &t).unwrap();
        let m = wire::messages(&msg).next().unwrap().unwrap();
        let got: Vec<(u16, Vec<u8>)> = wire::attrs(&m.payload[4..])
            .map(|a| {
                let (t, p) = a.unwrap();
                (t, p.to_vec())
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    sys::IPVS_CMD_ATTR_TIMEOUT_TCP,
                    900u32.to_ne_bytes().to_vec()
                ),
                (sys::IPVS_CMD_ATTR_TIMEOUT_UDP, 30u32.to_ne_bytes().to_vec()),
            ]
        );
    }

    fn daemon(backup: bool, iface: &str, id: u8) -> SyncDaemon {
        SyncDaemon::with_defaults(backup, iface, id)
    }

    /// `d` as a kernel with a 1500-byte MTU reports it once started: what `d` leaves out
    /// filled with the kernel's defaults.
    fn as_kernel_runs(d: &SyncDaemon) -> Running {
        Running {
            backup: d.backup,
            iface: d.iface.clone(),
            id: d.id,
            maxlen: if d.maxlen == 0 { 1500 - 28 } else { d.maxlen },
            port: if d.port == 0 { 8848 } else { d.port },
            ttl: if d.ttl == 0 { 1 } else { d.ttl },
            group: d.group.or(Some("224.0.0.81".parse().unwrap())),
        }
    }

    /// [`plan`], checking that each entry of `want` gets exactly one adopt or start.
    fn planned(running: &[Running], want: &[SyncDaemon], old: &[SyncDaemon]) -> Vec<Action> {
        let steps = plan(running, want, old);
        for i in 0..want.len() {
            let n = steps
                .iter()
                .filter(
                    |s| matches!(s, Action::Adopt(j) | Action::Start { want: j, .. } if *j == i),
                )
                .count();
            assert_eq!(n, 1, "want[{i}] in {steps:?}");
        }
        steps
    }

    const STOP_MASTER: Action = Action::Stop { backup: false };
    const STOP_BACKUP: Action = Action::Stop { backup: true };
    fn start(i: usize) -> Action {
        Action::Start {
            want: i,
            restarted: false,
        }
    }
    fn restart(i: usize) -> Action {
        Action::Start {
            want: i,
            restarted: true,
        }
    }

    #[test]
    fn plan_starts_what_does_not_run() {
        let m = daemon(false, "eth1", 1);
        assert_eq!(planned(&[], from_ref(&m), &[]), vec![start(0)]);
        // A reload that keeps it while it no longer runs: started, not restarted.
        assert_eq!(planned(&[], from_ref(&m), from_ref(&m)), vec![start(0)]);
        assert_eq!(planned(&[], &[], &[]), vec![]);
    }

    #[test]
    fn plan_adopts_the_same_daemon() {
        let m = SyncDaemon {
            maxlen: 1400,
            group: Some("239.1.1.1".parse().unwrap()),
            port: 9000,
            ttl: 2,
            ..daemon(false, "eth1", 7)
        };
        let running = [as_kernel_runs(&m)];
        assert_eq!(planned(&running, from_ref(&m), &[]), vec![Action::Adopt(0)]);
        // Also at a reload that keeps it.
        assert_eq!(
            planned(&running, from_ref(&m), from_ref(&m)),
            vec![Action::Adopt(0)]
        );
    }

    #[test]
    fn plan_adopts_a_daemon_the_kernel_reports_with_its_defaults() {
        let b = daemon(true, "eth0", 51);
        let running = [as_kernel_runs(&b)];
        assert_eq!(running[0].port, 8848);
        assert_eq!(planned(&running, from_ref(&b), &[]), vec![Action::Adopt(0)]);
        // The defaults written out compare equal too.
        let spelt = SyncDaemon {
            group: Some("224.0.0.81".parse().unwrap()),
            port: 8848,
            ttl: 1,
            maxlen: 1472,
            ..b.clone()
        };
        assert_eq!(planned(&running, &[spelt], &[]), vec![Action::Adopt(0)]);
        // A kernel that reports none of them (before Linux 4.3) matches as well.
        let bare = [Running {
            maxlen: 0,
            port: 0,
            ttl: 0,
            group: None,
            ..running[0].clone()
        }];
        assert_eq!(planned(&bare, from_ref(&b), &[]), vec![Action::Adopt(0)]);
        // But a setting given that differs from the default is not the default.
        let other_port = SyncDaemon { port: 9000, ..b };
        assert_eq!(
            planned(&running, &[other_port], &[]),
            vec![STOP_BACKUP, restart(0)]
        );
    }

    #[test]
    fn plan_adopts_a_maxlen_as_the_kernel_clamped_it() {
        // Linux keeps a backup's maxlen at 1024 bytes or more, and anyone's at 65535 less
        // the IP and UDP headers of the group's family, and reports what it keeps.
        let adopted = |want: SyncDaemon, reported: u16| {
            let running = [Running {
                maxlen: reported,
                ..as_kernel_runs(&want)
            }];
            planned(&running, from_ref(&want), from_ref(&want)) == vec![Action::Adopt(0)]
        };
        let b = daemon(true, "eth0", 1);
        let m = daemon(false, "eth0", 1);
        let m6 = SyncDaemon {
            group: Some("ff02::1:8848".parse().unwrap()),
            ..m.clone()
        };
        let with = |d: &SyncDaemon, maxlen: u16| SyncDaemon {
            maxlen,
            ..d.clone()
        };
        assert!(adopted(with(&b, 500), 1024));
        assert!(adopted(with(&b, 65535), 65507));
        assert!(adopted(with(&m, 65535), 65507));
        assert!(adopted(with(&m6, 65535), 65487));
        // Within the bounds it is compared as given.
        assert!(adopted(with(&m, 500), 500));
        assert!(adopted(with(&b, 1024), 1024));
        assert!(!adopted(with(&m, 500), 1024));
        assert!(!adopted(with(&b, 2000), 1472));
        assert!(!adopted(with(&m6, 65535), 65507));
    }

    #[test]
    fn plan_restarts_a_daemon_with_other_settings() {
        let m = daemon(false, "eth1", 1);
        for running in [
            daemon(false, "eth2", 1),
            daemon(false, "eth1", 2),
            SyncDaemon {
                ttl: 5,
                ..m.clone()
            },
            SyncDaemon {
                group: Some("239.9.9.9".parse().unwrap()),
                ..m.clone()
            },
        ] {
            let want = SyncDaemon {
                ttl: 1,
                group: Some("224.0.0.81".parse().unwrap()),
                ..m.clone()
            };
            assert_eq!(
                planned(&[as_kernel_runs(&running)], &[want], from_ref(&m)),
                vec![STOP_MASTER, restart(0)],
                "{running:?}"
            );
        }
    }

    #[test]
    fn plan_with_master_and_backup_and_one_running() {
        let m = daemon(false, "eth1", 3);
        let b = daemon(true, "eth1", 3);
        let want = [m.clone(), b.clone()];
        assert_eq!(
            planned(&[as_kernel_runs(&m)], &want, &[]),
            vec![Action::Adopt(0), start(1)]
        );
        assert_eq!(
            planned(&[as_kernel_runs(&b)], &want, &[]),
            vec![start(0), Action::Adopt(1)]
        );
        // The one running has other settings: only it is restarted.
        let b9 = SyncDaemon { id: 9, ..b.clone() };
        assert_eq!(
            planned(&[as_kernel_runs(&b9)], &want, &[]),
            vec![start(0), STOP_BACKUP, restart(1)]
        );
        // Both running: the kernel's order does not matter.
        let both = [as_kernel_runs(&b), as_kernel_runs(&m)];
        assert_eq!(
            planned(&both, &want, &[]),
            vec![Action::Adopt(0), Action::Adopt(1)]
        );
    }

    #[test]
    fn plan_stops_what_a_reload_drops() {
        let m = daemon(false, "eth1", 3);
        let b = daemon(true, "eth1", 3);
        let running = [as_kernel_runs(&m), as_kernel_runs(&b)];
        assert_eq!(
            planned(&running, from_ref(&m), &[m.clone(), b.clone()]),
            vec![STOP_BACKUP, Action::Adopt(0)]
        );
        assert_eq!(
            planned(&running, &[], &[m.clone(), b.clone()]),
            vec![STOP_MASTER, STOP_BACKUP]
        );
        // Stopped even when the kernel does not list it (or could not say).
        assert_eq!(planned(&[], &[], &[b]), vec![STOP_BACKUP]);
    }

    #[test]
    fn plan_leaves_alone_what_no_configuration_named() {
        let m = daemon(false, "eth1", 3);
        let theirs = as_kernel_runs(&daemon(true, "eth9", 200));
        // At startup with nothing configured, and at startup with only a master.
        assert_eq!(planned(from_ref(&theirs), &[], &[]), vec![]);
        assert_eq!(
            planned(&[theirs.clone(), as_kernel_runs(&m)], from_ref(&m), &[]),
            vec![Action::Adopt(0)]
        );
        // At a reload that drops the master: the backup nobody configured stays.
        assert_eq!(
            planned(&[theirs, as_kernel_runs(&m)], &[], &[m]),
            vec![STOP_MASTER]
        );
    }

    #[test]
    fn plan_turns_a_master_into_a_backup() {
        let m = daemon(false, "eth1", 3);
        let b = daemon(true, "eth1", 3);
        assert_eq!(
            planned(&[as_kernel_runs(&m)], from_ref(&b), from_ref(&m)),
            vec![STOP_MASTER, start(0)]
        );
        // And back.
        assert_eq!(
            planned(&[as_kernel_runs(&b)], &[m], &[b]),
            vec![STOP_BACKUP, start(0)]
        );
    }

    /// A kernel that keeps what it is asked in memory, refusing as the real one does: a
    /// daemon already running in that state (EEXIST), none to stop (ESRCH), and the
    /// interfaces named in `no_iface` (ENODEV).
    #[derive(Default)]
    struct FakeKernel {
        daemons: Vec<Running>,
        no_answer: bool,
        no_iface: Vec<&'static str>,
        calls: Vec<String>,
    }

    impl Daemons for FakeKernel {
        fn running(&mut self) -> Result<Vec<Running>, String> {
            self.calls.push("get".into());
            if self.no_answer {
                return Err("no answer from the kernel".into());
            }
            Ok(self.daemons.clone())
        }

        fn stop(&mut self, backup: bool) -> Result<(), String> {
            self.calls.push(format!("stop {backup}"));
            let n = self.daemons.len();
            self.daemons.retain(|d| d.backup != backup);
            if self.daemons.len() == n {
                return Err("errno=3".into());
            }
            Ok(())
        }

        fn start(&mut self, d: &SyncDaemon) -> Result<(), String> {
            self.calls.push(format!("start {} {}", d.state(), d.iface));
            if self.no_iface.contains(&d.iface.as_str()) {
                return Err("errno=19".into());
            }
            if self.daemons.iter().any(|r| r.backup == d.backup) {
                return Err("errno=17".into());
            }
            self.daemons.push(as_kernel_runs(d));
            Ok(())
        }
    }

    #[test]
    fn sync_daemons_maps_the_kernels_answers_to_outcomes() {
        let m = daemon(false, "eth1", 3);
        let b = daemon(true, "eth1", 3);
        let mut k = FakeKernel::default();
        let want = [m.clone(), b.clone()];
        assert_eq!(
            sync_daemons(&mut k, &want, &[]),
            vec![
                Outcome::Started { restarted: false },
                Outcome::Started { restarted: false }
            ]
        );
        assert_eq!(
            sync_daemons(&mut k, &want, &want),
            vec![Outcome::Adopted, Outcome::Adopted]
        );
        // A changed backup is restarted; a dropped master is stopped.
        let b2 = SyncDaemon { id: 4, ..b.clone() };
        k.calls.clear();
        assert_eq!(
            sync_daemons(&mut k, from_ref(&b2), &want),
            vec![Outcome::Started { restarted: true }]
        );
        assert_eq!(
            k.calls,
            ["get", "stop false", "stop true", "start backup eth1"]
        );
        assert_eq!(k.daemons, vec![as_kernel_runs(&b2)]);
        // The kernel refuses a start: that entry failed with its reason, the others go on.
        k.no_iface.push("eth7");
        let m7 = daemon(false, "eth7", 3);
        assert_eq!(
            sync_daemons(&mut k, &[m7, b2.clone()], from_ref(&b2)),
            vec![Outcome::Failed("errno=19".into()), Outcome::Adopted]
        );
    }

    #[test]
    fn sync_daemons_without_the_kernels_list_starts_each() {
        // GET_DAEMON unanswered: nothing is taken to run, so each is started, and the
        // kernel's refusal of one already running is that entry's outcome.
        let m = daemon(false, "eth1", 3);
        let b = daemon(true, "eth1", 3);
        let mut k = FakeKernel {
            daemons: vec![as_kernel_runs(&m)],
            no_answer: true,
            ..FakeKernel::default()
        };
        assert_eq!(
            sync_daemons(&mut k, &[m, b], &[]),
            vec![
                Outcome::Failed("errno=17".into()),
                Outcome::Started { restarted: false }
            ]
        );
        assert_eq!(k.calls, ["get", "start master eth1", "start backup eth1"]);
    }
}
