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
    /// default is not compared).
    pub fn matches(&self, want: &SyncDaemon) -> bool {
        self.backup == want.backup
            && self.iface == want.iface
            && self.id == want.id
            && (want.maxlen == 0 || want.maxlen == self.maxlen)
            && (want.port == 0 || want.port == self.port)
            && (want.ttl == 0 || want.ttl == self.ttl)
            && (want.group.is_none() || want.group == self.group)
    }
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

/// Brings the kernel's sync daemons in line with `want`: a matching one is adopted, one with
/// other settings is stopped and started again, a missing one is started. Daemons the
/// config does not name any more are stopped when the previous configuration named them
/// (`old`, empty at startup: started or adopted then), never otherwise. Returns one outcome
/// per entry of `want`.
pub fn sync_daemons(c: &mut Control, want: &[SyncDaemon], old: &[SyncDaemon]) -> Vec<Outcome> {
    let running = c.daemons().unwrap_or_default();
    for o in old {
        if !want.iter().any(|w| w.backup == o.backup) {
            let _ = c.stop_daemon(o.backup);
        }
    }
    want.iter()
        .map(|w| {
            let have = running.iter().find(|r| r.backup == w.backup);
            match have {
                Some(r) if r.matches(w) => Outcome::Adopted,
                Some(_) => {
                    let _ = c.stop_daemon(w.backup);
                    match c.start_daemon(w) {
                        Ok(()) => Outcome::Started { restarted: true },
                        Err(e) => Outcome::Failed(e),
                    }
                }
                None => match c.start_daemon(w) {
                    Ok(()) => Outcome::Started { restarted: false },
                    Err(e) => Outcome::Failed(e),
                },
            }
        })
        .collect()
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
}
