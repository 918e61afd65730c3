//! What the daemon tells its clients: the replies to the control socket's commands
//! (`status`, `history`, `drain`, `undrain`, `reload`) and to `/metrics` (the page itself is
//! [`crate::metrics`]'s), piece by piece into a connection's fixed buffer (see
//! [`crate::control`]). A drain is applied once as it arrives ([`change_reals`], through the
//! table); rendering ([`View::render`]) reads the daemon's state and changes nothing.
//!
//! Every reply is produced line by line from a cursor: each line is formatted into a small
//! stack buffer and copied out only if it fits whole, so a reply of any length streams
//! through a 64 KiB buffer and nothing allocates.
//!
//! SIGUSR1's status dump ([`status_dump`]) is rendered here too, read-only, into the log:
//! the loop calls it piece by piece, as the log has room.

use std::io::{Cursor, Write};

use crate::clock::Time;
use crate::control::{key_text, Command, Named, Reply, PARKED};
use crate::history::History;
use crate::log::{Level, Log};
use crate::state;
use crate::state::Saver;
use crate::stats::seconds;
use crate::stats::Stats;
use crate::table::{Changes, Table};

/// What a drain-like command did, for its reply.
#[derive(Clone, Copy)]
enum Verb {
    Drain,
    Undrain,
    SetWeight(crate::table::Hand),
}

impl Verb {
    /// `drained`, `undrained`, `set weight 5 on`, `reset the weight of`.
    fn past(self, buf: &mut [u8; 32]) -> &str {
        let mut c = Cursor::new(&mut buf[..]);
        let _ = match self {
            Verb::Drain => write!(c, "drained"),
            Verb::Undrain => write!(c, "undrained"),
            Verb::SetWeight(crate::table::Hand::None) => write!(c, "weight reset"),
            Verb::SetWeight(h) => write!(c, "weight ").and_then(|_| h.write(&mut c)),
        };
        let n = c.position() as usize;
        std::str::from_utf8(&buf[..n]).unwrap_or("")
    }
}

/// Writes a duration in seconds as `3h12m`, `4m05s`, `12s`.
fn ago(w: &mut impl Write, secs: u64) -> std::io::Result<()> {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        write!(w, "{d}d{h:02}h")
    } else if h > 0 {
        write!(w, "{h}h{m:02}m")
    } else if m > 0 {
        write!(w, "{m}m{s:02}s")
    } else {
        write!(w, "{s}s")
    }
}

/// What the replies read: the daemon's state, borrowed for one reply's piece.
pub(crate) struct View<'a> {
    /// The reals and virtual services.
    pub table: &'a Table,
    /// Every real's check history.
    pub history: &'a History,
    /// The loop's counters.
    pub stats: &'a Stats,
    /// The state saver's writer, if there is a state directory.
    pub saver: Option<&'a Saver>,
    /// Log lines dropped.
    pub log_dropped: u64,
    /// Unix time (µs) at daemon time zero.
    pub wall_origin_us: u64,
    /// The last reload request answered, and what the answer said.
    pub reload_finished: u64,
    pub reload_result: &'a str,
    /// The probes, for what only they know per check (each check's last duration).
    pub probes: Option<&'a crate::monitor::probes::Probes>,
    /// TLS checks' certificate expiry (`None`: not known here).
    pub tls: Option<&'a crate::tls::Expiry>,
}

/// The reals a `drain`/`undrain REAL [VIRTUAL]` names, or the error reply's reason:
/// `Err(None)` no real given, `Err(Some(word))` no such virtual service.
fn drain_target(
    table: &Table,
    real: Option<std::net::SocketAddr>,
    virt: Option<&Named>,
) -> Result<(std::net::SocketAddr, Option<usize>), Option<Named>> {
    let real = real.ok_or(None)?;
    match virt {
        None => Ok((real, None)),
        Some(n) => match find_virtual(table, n) {
            Some(v) => Ok((real, Some(v))),
            None => Err(Some(*n)),
        },
    }
}

/// Whether real `r` is one a drain for `real` behind virtual `vindex` (any when `None`)
/// concerns.
fn drain_matches(
    table: &Table,
    r: usize,
    real: std::net::SocketAddr,
    vindex: Option<usize>,
) -> bool {
    table.reals()[r].addr.get() == real
        && vindex.is_none_or(|v| table.reals()[r].virt as usize == v)
}

/// Finds the virtual service a request named (see [`crate::control::parse_virtual`]).
fn find_virtual(table: &Table, named: &Named) -> Option<usize> {
    let key = named.key?;
    (0..table.virtuals().len()).find(|&v| table.virtuals()[v].key == key)
}

/// What a control request changes on each real it names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RealChange {
    /// `drain` (true) or `undrain` (false).
    Drain(bool),
    /// `set-weight`: the hand weight.
    Hand(crate::table::Hand),
}

/// `drain`/`undrain REAL [VIRTUAL]` and `set-weight REAL [VIRTUAL] N|P%|reset`, as they
/// arrive: makes `change` on every real the request names, and asks for a save at once; the
/// reply waits for that save ([`View::render`]). The cursor keeps the count of destinations
/// changed and, while the reply waits, [`PARKED`] and the save's ticket
/// ([`state::TICKET_BITS`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn change_reals(
    table: &mut Table,
    saver: Option<&mut Saver>,
    change: RealChange,
    real: Option<std::net::SocketAddr>,
    virt: Option<&Named>,
    cursor: &mut u64,
    now: Time,
    out: &mut impl crate::table::Out,
) {
    let Ok((real, vindex)) = drain_target(table, real, virt) else {
        return;
    };
    let (mut matched, mut changed) = (0u32, 0u32);
    for r in 0..table.reals().len() {
        if !drain_matches(table, r, real, vindex) {
            continue;
        }
        matched += 1;
        let id = crate::ids::RealId::of(r);
        let did = match change {
            RealChange::Drain(on) => table.set_drained(id, on, now, out),
            RealChange::Hand(hand) => table.set_hand(id, hand, now, out),
        };
        if did {
            changed += 1;
        }
    }
    let n = u64::from(changed.min(1 << 24));
    *cursor = n << state::TICKET_BITS;
    if matched > 0 {
        if let Some(saver) = saver {
            *cursor |= PARKED | saver.request();
        }
    }
}

impl View<'_> {
    /// Writes the next piece of the reply to `cmd` (see [`crate::control::Render::render`]).
    pub(crate) fn render(
        &self,
        cmd: &Command,
        text: &[u8],
        cursor: &mut u64,
        out: &mut [u8],
        now: Time,
    ) -> (usize, bool) {
        let mut o = Reply::new(out);
        let done = match *cmd {
            Command::Metrics { head: true } => {
                o.line(|w| w.write_all(crate::metrics::HEAD));
                true
            }
            Command::Metrics { head: false } => crate::metrics::render(
                &crate::metrics::Sources {
                    stats: self.stats,
                    table: self.table,
                    log_dropped: self.log_dropped,
                    saves_failed: self.saver.map_or(0, |s| s.failed),
                    tls: self.tls,
                },
                cursor,
                &mut o,
            ),
            Command::Page { route, head } => crate::page::render(
                &crate::page::Sources {
                    table: self.table,
                    history: self.history,
                    wall_origin_us: self.wall_origin_us,
                    work: std::cell::Cell::new(0),
                },
                route,
                head,
                text,
                cursor,
                &mut o,
                now,
                |c, o| self.status(true, c, o, now),
            ),
            Command::BadMethod => {
                o.line(|w| write!(w, "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nonly GET and HEAD: the status page and /metrics are read-only\n"));
                true
            }
            Command::NotFound => {
                o.line(|w| write!(w, "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nlvsmon serves /metrics and the status page: /, /virtual/ID, /status.json\n"));
                true
            }
            Command::Status { json } => self.status(json, cursor, &mut o, now),
            Command::Drain { on, real, virt } => {
                self.drain_reply(on, real, virt.as_ref(), text, cursor, &mut o)
            }
            Command::SetWeight { real, virt, hand } => match hand {
                None => {
                    o.line(|w| {
                        writeln!(
                            w,
                            "error: expected set-weight REAL [VIRTUAL] N|P%|reset (N 0..65535, P 0..1000)"
                        )
                    });
                    true
                }
                Some(h) => self.drain_reply_as(
                    Verb::SetWeight(h),
                    real,
                    virt.as_ref(),
                    text,
                    cursor,
                    &mut o,
                ),
            },
            Command::Reload => {
                let want = *cursor & !PARKED;
                if self.reload_finished >= want {
                    let text = self.reload_result.as_bytes();
                    o.line(|w| w.write_all(text));
                    true
                } else {
                    false
                }
            }
            Command::History {
                virt,
                real,
                since_secs,
                json,
            } => self.history_cmd(
                virt.as_ref(),
                real,
                since_secs,
                json,
                text,
                cursor,
                &mut o,
                now,
            ),
            Command::Unknown => {
                o.line(|wr| {
                    write!(wr, "error: unknown command \"")?;
                    let cmd = &text[..text.len().min(40)];
                    for &b in cmd {
                        wr.write_all(&[if (0x20..0x7f).contains(&b) && b != b'"' {
                            b
                        } else {
                            b'?'
                        }])?;
                    }
                    writeln!(
                        wr,
                        "\" (expected status, history, drain, undrain, set-weight or reload)"
                    )
                });
                true
            }
        };
        (o.len(), done)
    }

    /// The state name a client sees.
    fn state_name(&self, r: usize) -> &'static str {
        let real = &self.table.reals()[r];
        if real.drained {
            "drained"
        } else {
            real.health.state.as_str()
        }
    }

    /// Unix time in seconds of daemon time `t`.
    fn unix_secs(&self, t: Time) -> u64 {
        (self.wall_origin_us + t.0) / 1_000_000
    }

    /// The reply to a `drain`/`undrain` ([`change_reals`]): `ok` only once the state
    /// file holds the change, an error naming the file and the reason otherwise. Returns true
    /// when the reply is complete (false: the save has not ended yet).
    fn drain_reply(
        &self,
        on: bool,
        real: Option<std::net::SocketAddr>,
        virt: Option<&Named>,
        text: &[u8],
        cursor: &mut u64,
        out: &mut Reply<'_>,
    ) -> bool {
        let verb = if on { Verb::Drain } else { Verb::Undrain };
        self.drain_reply_as(verb, real, virt, text, cursor, out)
    }

    /// The reply to a `drain`, `undrain` or `set-weight` (see [`View::drain_reply`]).
    fn drain_reply_as(
        &self,
        verb: Verb,
        real: Option<std::net::SocketAddr>,
        virt: Option<&Named>,
        text: &[u8],
        cursor: &mut u64,
        out: &mut Reply<'_>,
    ) -> bool {
        let (real, vindex) = match drain_target(self.table, real, virt) {
            Ok(t) => t,
            Err(None) => {
                out.line(|w| {
                    writeln!(
                        w,
                        "error: expected a real server as ADDR:PORT ([ADDR]:PORT for IPv6)"
                    )
                });
                return true;
            }
            Err(Some(n)) => {
                let w = n.word.bytes(text);
                out.line(|o| {
                    write!(o, "error: no virtual service ")?;
                    o.write_all(&w[..w.len().min(80)])?;
                    writeln!(o, " in the configuration (write it as in the logs: tcp:10.0.0.1:80, fwmark:42)")
                });
                return true;
            }
        };
        // The virtual service in any form the configuration takes, normalised.
        let mut vbuf = [0u8; 80];
        let virt = vindex.map(|v| key_text(self.table.virtuals()[v].key, &mut vbuf));
        let matched = (0..self.table.reals().len())
            .filter(|&r| drain_matches(self.table, r, real, vindex))
            .count() as u32;
        let changed = ((*cursor & !PARKED) >> state::TICKET_BITS) as u32;
        let is_set = matches!(verb, Verb::SetWeight(_));
        let mut vb = [0u8; 32];
        let verb = verb.past(&mut vb);
        let mut failed = None;
        if *cursor & PARKED != 0 {
            if let Some(saver) = self.saver {
                match saver.outcome(*cursor & ((1 << state::TICKET_BITS) - 1)) {
                    None => return false,
                    Some(r) => failed = r.err(),
                }
            }
        }
        if let Some(e) = failed {
            let dir = self.saver.map(|s| s.dir());
            out.line(|w| {
                let already = matched - changed;
                if is_set {
                    write!(w, "error: set-{verb} on {changed} of {matched} destinations of {real} ")?;
                    write!(w, "({already} already had it) in the running daemon, but the state file ")?;
                } else {
                    write!(w, "error: {verb} {changed} of {matched} destinations of {real} ")?;
                    write!(w, "({already} already {verb}) in the running daemon, but the state file ")?;
                }
                if let Some(d) = dir {
                    write!(w, "{}/", d.display())?;
                }
                writeln!(
                    w,
                    "state was not saved ({}: {}): a restart forgets this unless a later save succeeds",
                    e.step.as_str(),
                    e.reason()
                )
            });
        } else if matched == 0 {
            out.line(|w| {
                write!(w, "error: no real server {real}")?;
                if let Some(v) = virt {
                    write!(w, " behind virtual {v}")?;
                }
                writeln!(w, " in the configuration")
            });
        } else {
            out.line(|w| {
                if is_set {
                    // ok: set-weight 50% on 1 of 1 destinations of ... (0 already had it)
                    writeln!(
                        w,
                        "ok: set-{verb} on {changed} of {matched} destinations of {real} ({} already had it)",
                        matched - changed
                    )
                } else {
                    writeln!(
                        w,
                        "ok: {verb} {changed} of {matched} destinations of {real} ({} already {verb})",
                        matched - changed
                    )
                }
            });
        }
        true
    }

    fn status_line(
        &self,
        r: usize,
        json: bool,
        now: Time,
        w: &mut Cursor<&mut [u8]>,
    ) -> std::io::Result<()> {
        let real = &self.table.reals()[r];
        let key = self.table.virtuals()[real.virt as usize].key;
        let since = now.micros_since(real.health.since) / 1_000_000;
        let lat = real.last_latency_us as u64;
        if json {
            write!(w, "{{\"virtual\":\"{key}\",\"real\":\"{}\",\"state\":\"{}\",\"since\":{},\"since_seconds\":{since},\"weight\":", real.addr, self.state_name(r), self.unix_secs(real.health.since))?;
            match real.table() {
                Some(wt) => write!(w, "{wt}")?,
                None => write!(w, "null")?,
            }
            let weight = self.table.setups()[real.setup as usize].weight;
            write!(w, ",\"configured_weight\":{weight},\"last_reason\":")?;
            match real.last_reason {
                Some(reason) => {
                    // A server's bytes: escaped as a JSON string (`/status.json` too).
                    write!(w, "\"{}\",\"last_detail\":\"", reason.as_str())?;
                    crate::page::json(w, real.last_detail.as_bytes())?;
                    write!(w, "\"")?
                }
                None => write!(w, "null,\"last_detail\":null")?,
            }
            // Which of the real's several checks failed last (absent when it has one).
            if real.last_reason.is_some() && real.last_detail.check() > 0 {
                write!(w, ",\"last_check\":{}", real.last_detail.check())?;
            }
            write!(w, ",\"last_latency_seconds\":")?;
            seconds(w, lat)?;
            // A real with several checks: each one's last duration, in check-line order.
            if let Some(p) = self.probes {
                let rid = crate::ids::RealId::of(r);
                if p.check_durations(rid).nth(1).is_some() {
                    write!(w, ",\"check_seconds\":[")?;
                    for (k, d) in p.check_durations(rid).enumerate() {
                        if k > 0 {
                            write!(w, ",")?;
                        }
                        match d {
                            Some(us) => seconds(w, us)?,
                            None => write!(w, "null")?,
                        }
                    }
                    write!(w, "]")?;
                }
            }
            write!(
                w,
                ",\"checks\":{},\"failures\":{},\"consecutive_failures\":{},\"transitions\":{}",
                real.checks, real.failures, real.health.fails, real.transitions
            )?;
            let w8 = self.table.weigh(r);
            write!(
                w,
                ",\"weight_from\":\"{}\",\"slow\":{},\"set_weight\":",
                self.table.why(r),
                w8.slow
            )?;
            match w8.hand() {
                crate::table::Hand::None => write!(w, "null")?,
                h => {
                    write!(w, "\"")?;
                    h.write(w)?;
                    write!(w, "\"")?;
                }
            }
            // TLS checks: the earliest expiry of the peer certificates they saw.
            if let Some(t) = self.tls.and_then(|e| e.of_real(r as u32)) {
                write!(w, ",\"tls_cert_expiry\":{t}")?;
            }
            write!(w, "}}")
        } else {
            let mut tmp = [0u8; 16];
            let mut c = Cursor::new(&mut tmp[..]);
            let _ = ago(&mut c, since);
            let n = c.position() as usize;
            let for_ = std::str::from_utf8(&tmp[..n]).unwrap_or("?");
            // ServiceKey's Display does not pad: format it first.
            let mut id = [0u8; 80];
            let key = key_text(key, &mut id);
            write!(
                w,
                "{:<26} {:<26} {:<8} {:>7} ",
                key,
                real.addr,
                self.state_name(r),
                for_
            )?;
            match real.table() {
                Some(wt) => write!(w, "{wt:>6} ")?,
                None => write!(w, "{:>6} ", "-")?,
            }
            write!(
                w,
                "{:>9} {:>8} {:>6}.{}ms",
                real.checks,
                real.failures,
                lat / 1000,
                (lat % 1000) / 100
            )?;
            if let Some(reason) = real.last_reason {
                write!(w, "  {} \"{}\"", reason.as_str(), real.last_detail.as_str())?;
                if real.last_detail.check() > 0 {
                    write!(w, " check={}", real.last_detail.check())?;
                }
            }
            // SLOW, and what set the weight when more than the file did.
            let why = self.table.why(r);
            if self.table.weigh(r).slow {
                write!(w, "  SLOW")?;
            }
            if why != crate::table::Why::default() {
                write!(w, "  (weight: {why})")?;
            }
            writeln!(w)
        }
    }

    fn status(&self, json: bool, cursor: &mut u64, out: &mut Reply<'_>, now: Time) -> bool {
        let n = self.table.reals().len() as u64;
        if *cursor == 0 {
            let ok = if json {
                out.line(|w| write!(w, "["))
            } else {
                out.line(|w| {
                    writeln!(
                        w,
                        "{:<26} {:<26} {:<8} {:>7} {:>6} {:>9} {:>8} {:>10}  LAST FAILURE",
                        "VIRTUAL",
                        "REAL",
                        "STATE",
                        "FOR",
                        "WEIGHT",
                        "CHECKS",
                        "FAILURES",
                        "LATENCY"
                    )
                })
            };
            if !ok {
                return false;
            }
            *cursor = 1;
        }
        while *cursor <= n {
            let r = (*cursor - 1) as usize;
            let ok = out.line(|w| {
                if json && r > 0 {
                    writeln!(w, ",")?;
                } else if json {
                    writeln!(w)?;
                }
                self.status_line(r, json, now, w)
            });
            if !ok {
                return false;
            }
            *cursor += 1;
        }
        if !json && *cursor == n + 1 {
            // Director pairs: the kernel's sync daemons, as lvsmon left them.
            let ok = out.line(|w| {
                crate::ipvs::daemon::status(|list| {
                    for d in list {
                        d.write_line(w)?;
                        writeln!(w)?;
                    }
                    Ok(())
                })
            });
            if !ok {
                return false;
            }
            *cursor += 1;
        }
        !json || out.line(|w| writeln!(w, "\n]"))
    }
}

/// What a `history` request asks for.
#[derive(Clone, Copy)]
enum Scope {
    /// The director and every virtual service.
    All,
    /// One virtual service and its reals.
    Virtual(usize),
    /// One real server behind one virtual service.
    Real(usize),
}

impl View<'_> {
    /// One row of a history reply.
    #[allow(clippy::too_many_arguments)]
    fn history_row(
        &self,
        level: &str,
        v: Option<usize>,
        r: Option<usize>,
        since: u64,
        now: u64,
        json: bool,
        first: bool,
        w: &mut Cursor<&mut [u8]>,
    ) -> std::io::Result<()> {
        let sum = match (v, r) {
            (_, Some(r)) => self.history.summary(r..r + 1, since, now),
            (Some(v), None) => {
                let (a, b) = self.table.virtuals()[v].reals;
                self.history.summary(a as usize..b as usize, since, now)
            }
            (None, None) => self
                .history
                .summary(0..self.table.reals().len(), since, now),
        };
        let mut vbuf = [0u8; 80];
        let vid = match v {
            Some(v) => key_text(self.table.virtuals()[v].key, &mut vbuf),
            None => "",
        };
        let avail = sum.availability();
        if json {
            if !first {
                write!(w, ",")?;
            }
            write!(w, "\n{{\"level\":\"{level}\",\"virtual\":")?;
            if v.is_some() {
                write!(w, "\"{vid}\"")?
            } else {
                write!(w, "null")?
            }
            write!(w, ",\"real\":")?;
            match r {
                Some(r) => write!(w, "\"{}\"", self.table.reals()[r].addr)?,
                None => write!(w, "null")?,
            }
            write!(
                w,
                ",\"checks\":{},\"failures\":{},\"availability\":",
                sum.checks, sum.failures
            )?;
            match avail {
                Some(a) => write!(w, "{a:.6}")?,
                None => write!(w, "null")?,
            }
            write!(w, ",\"latency_min_seconds\":")?;
            seconds(w, sum.min_us as u64)?;
            write!(w, ",\"latency_mean_seconds\":")?;
            seconds(w, sum.mean_us as u64)?;
            write!(w, ",\"latency_max_seconds\":")?;
            seconds(w, sum.max_us as u64)?;
            write!(
                w,
                ",\"data\":\"{}\",\"covered_from\":{}}}",
                sum.level.as_str(),
                sum.covered_from
            )
        } else {
            let real = r.map(|r| self.table.reals()[r].addr);
            let mut rb = [0u8; 64];
            let mut c = Cursor::new(&mut rb[..]);
            match real {
                Some(a) => write!(c, "{a}")?,
                None => write!(c, "-")?,
            }
            let rn = c.position() as usize;
            let rs = std::str::from_utf8(&rb[..rn]).unwrap_or("?");
            write!(
                w,
                "{level:<9} {:<26} {:<26} {:>9} {:>9} ",
                if v.is_some() { vid } else { "-" },
                rs,
                sum.checks,
                sum.failures
            )?;
            match avail {
                Some(a) => write!(w, "{:>11.3}% ", a * 100.0)?,
                None => write!(w, "{:>12} ", "-")?,
            }
            for us in [sum.min_us, sum.mean_us, sum.max_us] {
                write!(w, "{:>6}.{}ms ", us / 1000, (us % 1000) / 100)?;
            }
            write!(w, " {} since ", sum.level.as_str())?;
            crate::log::write_rfc3339(w, sum.covered_from)?;
            writeln!(w)
        }
    }

    /// `history [VIRTUAL [REAL]] [since=SECS] [json]`: availability and latency per level
    /// (director, virtual, real). Cursor: the next row.
    #[allow(clippy::too_many_arguments)]
    fn history_cmd(
        &self,
        virt: Option<&Named>,
        real: Option<Option<std::net::SocketAddr>>,
        since_secs: u64,
        json: bool,
        text: &[u8],
        cursor: &mut u64,
        out: &mut Reply<'_>,
        now: Time,
    ) -> bool {
        let scope = match virt {
            None => Scope::All,
            Some(named) => match find_virtual(self.table, named) {
                None => {
                    let w = named.word.bytes(text);
                    out.line(|o| {
                        write!(o, "error: no virtual service ")?;
                        o.write_all(&w[..w.len().min(80)])?;
                        writeln!(o, " in the configuration (write it as in the logs: tcp:10.0.0.1:80, fwmark:42)")
                    });
                    return true;
                }
                Some(v) => match real {
                    None => Scope::Virtual(v),
                    Some(addr) => {
                        let (a, b) = self.table.virtuals()[v].reals;
                        match (a as usize..b as usize)
                            .find(|&r| Some(self.table.reals()[r].addr.get()) == addr)
                        {
                            Some(r) => Scope::Real(r),
                            None => {
                                out.line(|w| {
                                    writeln!(
                                        w,
                                        "error: no such real server behind that virtual service"
                                    )
                                });
                                return true;
                            }
                        }
                    }
                },
            },
        };
        let now_s = self.unix_secs(now);
        let since = now_s.saturating_sub(since_secs);
        if *cursor == 0 {
            let ok = if json {
                out.line(|w| write!(w, "{{\"since\":{since},\"now\":{now_s},\"rows\":["))
            } else {
                out.line(|w| {
                    writeln!(
                        w,
                        "{:<9} {:<26} {:<26} {:>9} {:>9} {:>12} {:>10} {:>10} {:>10}  DATA",
                        "LEVEL",
                        "VIRTUAL",
                        "REAL",
                        "CHECKS",
                        "FAILURES",
                        "AVAILABLE",
                        "MIN",
                        "MEAN",
                        "MAX"
                    )
                })
            };
            if !ok {
                return false;
            }
            *cursor = 1;
        }
        loop {
            let k = *cursor as usize - 1;
            let first = k == 0;
            let row: Option<(&str, Option<usize>, Option<usize>)> = match scope {
                Scope::All if k == 0 => Some(("director", None, None)),
                Scope::All => {
                    (k - 1 < self.table.virtuals().len()).then_some(("virtual", Some(k - 1), None))
                }
                Scope::Virtual(v) if k == 0 => Some(("virtual", Some(v), None)),
                Scope::Virtual(v) => {
                    let (a, b) = self.table.virtuals()[v].reals;
                    let r = a as usize + k - 1;
                    (r < b as usize).then_some(("real", Some(v), Some(r)))
                }
                Scope::Real(r) if k == 0 => {
                    Some(("real", Some(self.table.reals()[r].virt as usize), Some(r)))
                }
                Scope::Real(_) => None,
            };
            let Some((level, v, r)) = row else { break };
            if !out.line(|w| self.history_row(level, v, r, since, now_s, json, first, w)) {
                return false;
            }
            *cursor += 1;
        }
        if let (Scope::Real(r), false) = (scope, json) {
            // The latest raw results of that one real.
            let mut ok = out.line(|w| writeln!(w, "\nrecent results (newest first):"));
            self.history.recent(r, 20, &mut |e| {
                ok = ok
                    && out.line(|w| {
                        write!(w, "  ")?;
                        crate::log::write_rfc3339(w, e.time)?;
                        write!(
                            w,
                            "  {:>6}.{}ms  ",
                            e.latency_us / 1000,
                            (e.latency_us % 1000) / 100
                        )?;
                        match e.reason {
                            None => writeln!(w, "pass"),
                            Some(reason) => writeln!(w, "fail {}", reason.as_str()),
                        }
                    });
            });
            return ok;
        }
        !json || out.line(|w| writeln!(w, "\n]}}"))
    }
}

/// SIGUSR1's status dump, from real `next` on: one `status ...` line per real server into the
/// log, as far as the log has room now (a dump is never dropped: it waits for the log's
/// reader). Returns the real to go on from in a later turn, or `None` once every real has its
/// line. Reads the table, changes nothing.
pub(crate) fn status_dump(log: &mut Log, table: &Table, next: usize, now: Time) -> Option<usize> {
    let mut r = next;
    while r < table.reals().len() && log.has_room() {
        let real = &table.reals()[r];
        r += 1;
        let key = table.virtuals()[real.virt as usize].key;
        if let Some(mut l) = log.line(Level::Notice) {
            let _ = write!(
                l,
                "status virtual={key} real={} state={} for={}s weight={} checks={} failures={} transitions={}",
                real.addr.get(),
                if real.drained { "drained" } else { real.health.state.as_str() },
                now.micros_since(real.health.since) / 1_000_000,
                real.table().map_or(-1, |w| w as i64),
                real.checks,
                real.failures,
                real.transitions
            );
            if let Some(reason) = real.last_reason {
                let _ = write!(l, " last_reason={} ", reason.as_str());
                l.quoted("last_detail", real.last_detail.as_bytes());
                if real.last_detail.check() > 0 {
                    let _ = write!(l, " last_check={}", real.last_detail.check());
                }
            }
        }
    }
    (r < table.reals().len()).then_some(r)
}

/// A reload that failed: the log's error line and the answer to `lvsmon reload` (`text`).
pub(crate) fn reload_failed(log: &mut Log, text: &mut String, msg: &str) {
    use std::fmt::Write as _;
    if let Some(mut l) = log.line(Level::Error) {
        let _ = write!(
            l,
            "msg=\"reload failed; the running configuration is kept\" "
        );
        l.quoted("error", msg.as_bytes());
    }
    let _ = writeln!(text, "error: {msg} (the running configuration is kept)");
}

/// A reload applied: the log's `reloaded` line and the answer to `lvsmon reload` (`text`).
/// `sizes` are the new configuration's (virtuals, reals, checks), `took` the load's and the
/// hand-over's durations.
pub(crate) fn reloaded(
    log: &mut Log,
    text: &mut String,
    file: &str,
    summary: &str,
    sizes: (usize, usize, usize),
    ch: &Changes,
    took: (std::time::Duration, std::time::Duration),
) {
    use std::fmt::Write as _;
    let (parse, apply) = took;
    if let Some(mut l) = log.line(Level::Notice) {
        let _ = write!(
            l,
            "msg=\"reloaded\" file={file} virtuals={} reals={} checks={} kept={} changed={} added={} removed={} virtuals_added={} virtuals_removed={} probes_kept={} running_kept={} restarted={} ipvs_ops={} load_ms={} apply_ms={}",
            sizes.0,
            sizes.1,
            sizes.2,
            ch.kept,
            ch.changed,
            ch.added,
            ch.removed,
            ch.virtuals_added,
            ch.virtuals_removed,
            ch.probes_kept,
            ch.running,
            ch.restarted,
            ch.ops,
            parse.as_millis(),
            apply.as_millis()
        );
    }
    let _ = writeln!(
        text,
        "reloaded {file}: {summary}\nreal servers: {} kept ({} with new settings), {} added, {} removed; virtual services: {} added, {} removed; {} IPVS operations; load {} ms, apply {} ms",
        ch.kept,
        ch.changed,
        ch.added,
        ch.removed,
        ch.virtuals_added,
        ch.virtuals_removed,
        ch.ops,
        parse.as_millis(),
        apply.as_millis()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Kind;
    use crate::ipvs::{Dest, Op};
    use crate::monitor::event::{Event, EventKind};
    use crate::plugins::Verdict;

    /// The events a drain emits.
    #[derive(Default)]
    struct Rec(Vec<EventKind>);

    impl crate::table::Out for Rec {
        fn event(&mut self, ev: &Event, _: u32, _: Option<(u32, u32)>) {
            self.0.push(ev.kind);
        }
        fn drift(
            &mut self,
            _: crate::config::ServiceKey,
            _: Option<std::net::SocketAddr>,
            _: &str,
        ) {
        }
        fn resynced(&mut self) {}
    }

    /// A request's whole reply, rendered piece by piece as the control server does.
    fn reply(view: &View<'_>, text: &str, cursor: &mut u64, now: Time) -> (String, bool) {
        let cmd = Command::parse(Kind::Control, text.as_bytes());
        let mut buf = vec![0u8; 4096];
        let (n, done) = view.render(&cmd, text.as_bytes(), cursor, &mut buf, now);
        (String::from_utf8_lossy(&buf[..n]).into_owned(), done)
    }

    /// A drain is applied once, through the table (its event, its weight 0); rendering the
    /// reply, as often as the control server asks, changes nothing.
    #[test]
    fn a_drain_is_applied_once_and_its_reply_only_reads() {
        let text = "virtual tcp 192.0.2.1:80 {\n  check tcp\n  real 198.51.100.1:80 weight 7\n  real 198.51.100.2:80\n}\n";
        let doc =
            crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
                .unwrap();
        let plan = crate::config::plan::plan(&doc, None).unwrap();
        let history = History::new(&plan.history, &History::intervals(&plan));
        let mut table = Table::new(&plan, Time::ZERO);
        table.adopt_at_start(|_| None, |_, _| None);
        let mut rec = Rec::default();
        let r1 = crate::ids::RealId(0);
        let now = Time(1_000_000);
        table.record(r1, Verdict::Pass, 10, now, &mut rec);
        while table.next_op().is_some() {}
        rec.0.clear();
        let stats = Stats::default();
        fn view<'a>(table: &'a Table, history: &'a History, stats: &'a Stats) -> View<'a> {
            View {
                table,
                history,
                stats,
                saver: None,
                log_dropped: 0,
                wall_origin_us: 0,
                reload_finished: 0,
                reload_result: "",
                probes: None,
                tls: None,
            }
        }

        let cmd = Command::parse(Kind::Control, b"drain 198.51.100.1:80");
        let Command::Drain { on, real, virt } = cmd else {
            panic!("{cmd:?}")
        };
        let mut cursor = 0;
        change_reals(
            &mut table,
            None,
            RealChange::Drain(on),
            real,
            virt.as_ref(),
            &mut cursor,
            now,
            &mut rec,
        );
        assert_eq!(rec.0, vec![EventKind::Drained]);
        let key = crate::config::ServiceKey::Inet(
            crate::config::Proto::Tcp,
            "192.0.2.1:80".parse().unwrap(),
        );
        let dest = Dest {
            addr: "198.51.100.1:80".parse().unwrap(),
            weight: 0,
            forward: crate::config::Forward::Route,
            extra: crate::ipvs::DestExtra::default(),
        };
        assert_eq!(table.next_op(), Some(Op::EditDest(key, dest)));
        // No state directory: nothing to wait for.
        assert_eq!(cursor & PARKED, 0);
        let v = view(&table, &history, &stats);
        for _ in 0..2 {
            let mut c = cursor;
            let (text, done) = reply(&v, "drain 198.51.100.1:80", &mut c, now);
            assert!(done);
            assert_eq!(
                text,
                "ok: drained 1 of 1 destinations of 198.51.100.1:80 (0 already drained)\n"
            );
        }
        assert_eq!(table.next_op(), None, "rendering queued nothing");
        let (status, done) = reply(&view(&table, &history, &stats), "status", &mut 0, now);
        assert!(done);
        assert!(
            status.lines().nth(1).unwrap().contains("drained"),
            "{status}"
        );
        // Errors quote what the client wrote.
        let (text, _) = reply(
            &view(&table, &history, &stats),
            "drain 198.51.100.1:80 udp:bogus",
            &mut 0,
            now,
        );
        assert!(
            text.starts_with("error: no virtual service udp:bogus in the configuration"),
            "{text}"
        );
        let (text, _) = reply(
            &view(&table, &history, &stats),
            "drain 198.51.100.9:80",
            &mut 0,
            now,
        );
        assert_eq!(
            text,
            "error: no real server 198.51.100.9:80 in the configuration\n"
        );
    }

    /// SIGUSR1's status lines go out as far as the log has room and go on from where they
    /// stopped once its reader has taken some: every real once, in order, none dropped.
    #[test]
    fn the_status_dump_waits_for_the_log_and_drops_nothing() {
        use std::io::Read;
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let n = 60;
        let mut text = String::from("virtual tcp 192.0.2.1:80 {\n  check tcp\n");
        for k in 0..n {
            text.push_str(&format!("  real 198.51.100.{}:80 weight 7\n", k + 1));
        }
        text.push_str("}\n");
        let doc =
            crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
                .unwrap();
        let plan = crate::config::plan::plan(&doc, None).unwrap();
        let mut table = Table::new(&plan, Time::ZERO);
        table.adopt_at_start(|_| None, |_, _| None);
        let mut rec = Rec::default();
        let fail = Verdict::Fail(crate::plugins::Reason::ConnectRefused, Default::default());
        table.record(
            crate::ids::RealId(0),
            Verdict::Pass,
            10,
            Time(1_000_000),
            &mut rec,
        );
        table.record(crate::ids::RealId(1), fail, 10, Time(1_000_000), &mut rec);

        // A pipe of one page, a ring of one line's size: the dump outgrows both.
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two descriptors we own from here on.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both were just created and are owned by nothing else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on descriptors we own.
        unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
            libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        }
        let mut reader = std::fs::File::from(r);
        let mut log = Log::with_ring(crate::log::Sink::Fd(w), Level::Info, crate::log::LINE_CAP);
        log.loop_started();
        let mut out = Vec::new();
        let mut read = |out: &mut Vec<u8>| {
            let mut chunk = [0u8; 8192];
            while let Ok(k) = reader.read(&mut chunk) {
                if k == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..k]);
            }
        };
        let now = Time(3_500_000);
        let mut next = Some(0);
        let mut rounds = 0;
        while let Some(from) = next {
            next = status_dump(&mut log, &table, from, now);
            rounds += 1;
            assert!(rounds < 1_000, "the dump does not move on");
            read(&mut out);
            log.on_writable();
        }
        read(&mut out);
        assert!(rounds > 1, "the dump never waited for the log's reader");
        assert_eq!(log.dropped(), 0);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().filter(|l| l.contains(" status ")).collect();
        assert_eq!(lines.len(), n, "{out}");
        for (k, l) in lines.iter().enumerate() {
            let want = format!(
                "status virtual=tcp:192.0.2.1:80 real=198.51.100.{}:80 ",
                k + 1
            );
            assert!(l.contains(&want), "line {k}: {l}");
        }
        assert!(
            lines[0].contains("state=up for=2s weight=7 checks=1 failures=0 transitions=1"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains(
                "state=down for=2s weight=0 checks=1 failures=1 transitions=1 last_reason=connect-refused "
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("weight=0 checks=0"), "{}", lines[2]);
    }
}
