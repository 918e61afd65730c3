//! What the daemon tells its clients: the control socket's commands (`status`, `history`,
//! `drain`, `undrain`, `reload`) and the Prometheus `/metrics` page, rendered piece by piece
//! into a connection's fixed buffer (see [`crate::control`]).
//!
//! Every reply is produced line by line from a cursor: each line is formatted into a small
//! stack buffer and copied out only if it fits whole, so a reply of any length streams
//! through a 64 KiB buffer and nothing allocates.

use std::io::{Cursor, Write};

use super::{Core, State};
use crate::clock::Time;
use crate::control::{Command, Named, Render, PARKED};
use crate::ipvs::OpKind;
use crate::log::Level;
use crate::plugins::Reason;
use crate::state;
use crate::stats::{self, label_value, seconds};

/// Largest piece (a line, or a metric family of a few dozen lines) a reply renders at once.
const LINE: usize = 8192;

/// The head of a `/metrics` reply (also the whole reply to `HEAD`).
const METRICS_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nConnection: close\r\n\r\n";

/// Copies lines into the reply buffer while they fit.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    /// Formats one line with `f`; returns false (writing nothing) when it does not fit.
    fn line(&mut self, f: impl FnOnce(&mut Cursor<&mut [u8]>) -> std::io::Result<()>) -> bool {
        let mut tmp = [0u8; LINE];
        let mut c = Cursor::new(&mut tmp[..]);
        if f(&mut c).is_err() {
            // Longer than LINE: cut, but keep the line end.
            c.set_position((LINE - 1) as u64);
            let _ = c.write_all(b"\n");
        }
        let n = c.position() as usize;
        if self.len + n > self.buf.len() {
            return false;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&tmp[..n]);
        self.len += n;
        true
    }
}

/// A service identifier (`tcp:10.0.0.1:80`) as text in a stack buffer: `ServiceKey`'s
/// Display neither pads nor compares, and formatting it into a `String` would allocate.
fn key_text(key: crate::config::ServiceKey, buf: &mut [u8; 80]) -> &str {
    let mut c = Cursor::new(&mut buf[..]);
    let _ = write!(c, "{key}");
    let n = c.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("?")
}

/// Writes a service identifier as an escaped label value.
fn service_label(w: &mut impl Write, key: crate::config::ServiceKey) -> std::io::Result<()> {
    label_value(w, key_text(key, &mut [0u8; 80]).as_bytes())
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

impl Core {
    /// The state name a client sees.
    fn state_name(&self, r: usize) -> &'static str {
        let real = &self.table.reals[r];
        if real.drained {
            "drained"
        } else {
            real.health.state.as_str()
        }
    }

    /// Unix time in seconds of daemon time `t`.
    pub(super) fn unix_secs(&self, t: Time) -> u64 {
        (self.wall_origin_us + t.0) / 1_000_000
    }

    /// The reals a `drain`/`undrain REAL [VIRTUAL]` names, or the error reply's reason:
    /// `Err(None)` no real given, `Err(Some(word))` no such virtual service.
    fn drain_target(
        &self,
        real: Option<std::net::SocketAddr>,
        virt: Option<&Named>,
    ) -> Result<(std::net::SocketAddr, Option<usize>), Option<Named>> {
        let real = real.ok_or(None)?;
        match virt {
            None => Ok((real, None)),
            Some(n) => match self.find_virtual(n) {
                Some(v) => Ok((real, Some(v))),
                None => Err(Some(*n)),
            },
        }
    }

    /// Whether real `r` is one a drain for `real` behind virtual `vindex` (any when `None`)
    /// concerns.
    fn drain_matches(&self, r: usize, real: std::net::SocketAddr, vindex: Option<usize>) -> bool {
        self.table.reals[r].addr.get() == real
            && vindex.is_none_or(|v| self.table.reals[r].virt as usize == v)
    }

    /// `drain`/`undrain REAL [VIRTUAL]`, as it arrives: drains every real it names, and asks
    /// for a save at once; the reply waits for that save ([`Core::drain_reply`]). The cursor
    /// keeps the count of destinations changed and, while the reply waits, [`PARKED`] and the
    /// save's ticket ([`state::TICKET_BITS`]).
    fn drain_apply(
        &mut self,
        on: bool,
        real: Option<std::net::SocketAddr>,
        virt: Option<&Named>,
        cursor: &mut u64,
    ) {
        let Ok((real, vindex)) = self.drain_target(real, virt) else {
            return;
        };
        let (mut matched, mut changed) = (0u32, 0u32);
        for r in 0..self.table.reals.len() {
            if !self.drain_matches(r, real, vindex) {
                continue;
            }
            matched += 1;
            let now = self.now;
            let (table, mut out) = self.split();
            if table.set_drained(crate::ids::RealId::of(r), on, now, &mut out) {
                changed += 1;
            }
        }
        let n = u64::from(changed.min(1 << 24));
        *cursor = n << state::TICKET_BITS;
        if matched > 0 {
            if let Some(saver) = self.saver.as_mut() {
                *cursor |= PARKED | saver.request();
            }
        }
    }

    /// The reply to a `drain`/`undrain` ([`Core::drain_apply`]): `ok` only once the state
    /// file holds the change, an error naming the file and the reason otherwise. Returns true
    /// when the reply is complete (false: the save has not ended yet).
    fn drain_reply(
        &self,
        on: bool,
        real: Option<std::net::SocketAddr>,
        virt: Option<&Named>,
        text: &[u8],
        cursor: &mut u64,
        out: &mut Out<'_>,
    ) -> bool {
        let (real, vindex) = match self.drain_target(real, virt) {
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
        let virt = vindex.map(|v| key_text(self.table.virtuals[v].key, &mut vbuf));
        let matched = (0..self.table.reals.len())
            .filter(|&r| self.drain_matches(r, real, vindex))
            .count() as u32;
        let changed = ((*cursor & !PARKED) >> state::TICKET_BITS) as u32;
        let verb = if on { "drained" } else { "undrained" };
        let mut failed = None;
        if *cursor & PARKED != 0 {
            if let Some(saver) = self.saver.as_ref() {
                match saver.outcome(*cursor & ((1 << state::TICKET_BITS) - 1)) {
                    None => return false,
                    Some(r) => failed = r.err(),
                }
            }
        }
        if let Some(e) = failed {
            let dir = self.saver.as_ref().map(|s| s.dir());
            out.line(|w| {
                let already = matched - changed;
                write!(w, "error: {verb} {changed} of {matched} destinations of {real} ")?;
                write!(w, "({already} already {verb}) in the running daemon, but the state file ")?;
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
                writeln!(
                    w,
                    "ok: {verb} {changed} of {matched} destinations of {real} ({} already {verb})",
                    matched - changed
                )
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
        let real = &self.table.reals[r];
        let key = self.table.virtuals[real.virt as usize].key;
        let since = now.micros_since(real.health.since) / 1_000_000;
        let lat = real.last_latency_us as u64;
        if json {
            write!(w, "{{\"virtual\":\"{key}\",\"real\":\"{}\",\"state\":\"{}\",\"since\":{},\"since_seconds\":{since},\"weight\":", real.addr, self.state_name(r), self.unix_secs(real.health.since))?;
            match real.table() {
                Some(wt) => write!(w, "{wt}")?,
                None => write!(w, "null")?,
            }
            let weight = self.table.setups[real.setup as usize].weight;
            write!(w, ",\"configured_weight\":{weight},\"last_reason\":")?;
            match real.last_reason {
                Some(reason) => write!(
                    w,
                    "\"{}\",\"last_detail\":\"{}\"",
                    reason.as_str(),
                    real.last_detail.as_str()
                )?,
                None => write!(w, "null,\"last_detail\":null")?,
            }
            write!(w, ",\"last_latency_seconds\":")?;
            seconds(w, lat)?;
            write!(
                w,
                ",\"checks\":{},\"failures\":{},\"consecutive_failures\":{},\"transitions\":{}}}",
                real.checks, real.failures, real.health.fails, real.transitions
            )
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
            }
            writeln!(w)
        }
    }

    fn status(&self, json: bool, cursor: &mut u64, out: &mut Out<'_>, now: Time) -> bool {
        let n = self.table.reals.len() as u64;
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
        !json || out.line(|w| writeln!(w, "\n]"))
    }

    /// The `/metrics` page. Cursor: section in the top byte, item below.
    fn metrics(&self, cursor: &mut u64, out: &mut Out<'_>) -> bool {
        loop {
            let (sec, item) = (*cursor >> 56, *cursor & ((1 << 56) - 1));
            match sec {
                0 => {
                    let ok = out.line(|w| w.write_all(METRICS_HEAD))
                        && out.line(|w| {
                            let st = &self.stats;
                            stats::family(w, "lvsmon_checks_total", "counter", "Checks finished with a verdict.")?;
                            writeln!(w, "lvsmon_checks_total {}", st.checks)?;
                            stats::family(w, "lvsmon_transitions_total", "counter", "UP/DOWN transitions and drains of real servers.")?;
                            writeln!(w, "lvsmon_transitions_total {}", st.transitions)?;
                            stats::family(w, "lvsmon_local_errors_total", "counter", "Checks deferred for the director's own errors (no file descriptors, ports or buffers).")?;
                            writeln!(w, "lvsmon_local_errors_total {}", st.local_errors)?;
                            stats::family(w, "lvsmon_missed_starts_total", "counter", "Grid points skipped because the previous check still ran.")?;
                            writeln!(w, "lvsmon_missed_starts_total {}", st.missed_starts)?;
                            stats::family(w, "lvsmon_loop_stalls_total", "counter", "Times the loop woke over 0.5 s later than it asked to (stopped, paused or starved); its running checks got the time back.")?;
                            writeln!(w, "lvsmon_loop_stalls_total {}", st.loop_stalls)?;
                            stats::family(w, "lvsmon_ipvs_resyncs_total", "counter", "Read-backs of the IPVS table.")?;
                            writeln!(w, "lvsmon_ipvs_resyncs_total {}", st.resyncs)?;
                            stats::family(w, "lvsmon_ipvs_drift_repaired_total", "counter", "Differences between the IPVS table and lvsmon's decisions found by resyncs.")?;
                            writeln!(w, "lvsmon_ipvs_drift_repaired_total {}", st.drift_repaired)
                        })
                        && out.line(|w| {
                            stats::family(w, "lvsmon_log_dropped_total", "counter", "Log lines dropped because the log's reader did not keep up (or had gone).")?;
                            writeln!(w, "lvsmon_log_dropped_total {}", self.log.dropped())
                        })
                        && out.line(|w| {
                            let st = &self.stats;
                            stats::family(w, "lvsmon_notify_dropped_total", "counter", "Events not passed on: to the notify command (queue full) or to notify-fifo (its reader slow or absent).")?;
                            writeln!(w, "lvsmon_notify_dropped_total{{to=\"command\"}} {}", st.notify_dropped)?;
                            writeln!(w, "lvsmon_notify_dropped_total{{to=\"fifo\"}} {}", st.fifo_dropped)
                        })
                        && out.line(|w| {
                            stats::family(w, "lvsmon_check_failures_total", "counter", "Failed checks by reason.")?;
                            for r in Reason::ALL {
                                writeln!(w, "lvsmon_check_failures_total{{reason=\"{}\"}} {}", r.as_str(), self.stats.failures[r as usize])?;
                            }
                            Ok(())
                        })
                        && out.line(|w| {
                            stats::family(w, "lvsmon_ipvs_operations_total", "counter", "IPVS table changes by operation and result.")?;
                            for (k, op) in OpKind::ALL.iter().enumerate() {
                                let st = &self.stats;
                                let dry = st.ipvs_dry_run[k];
                                for (res, n) in [("ok", st.ipvs_ok[k] - dry), ("dry-run", dry), ("error", st.ipvs_errors[k])] {
                                    writeln!(w, "lvsmon_ipvs_operations_total{{op=\"{}\",result=\"{res}\"}} {n}", op.as_str())?;
                                }
                            }
                            Ok(())
                        })
                        && out.line(|w| {
                            stats::family(w, "lvsmon_check_duration_seconds", "histogram", "Time from the start of a check to its verdict.")?;
                            self.stats.duration.render("lvsmon_check_duration_seconds", w)
                        })
                        && out.line(|w| {
                            stats::family(w, "lvsmon_check_lateness_seconds", "histogram", "Start time of a check minus its scheduled time.")?;
                            self.stats.lateness.render("lvsmon_check_lateness_seconds", w)
                        })
                        && out.line(|w| {
                            let failed = self.saver.as_ref().map_or(0, |s| s.failed);
                            stats::family(w, "lvsmon_state_save_failures_total", "counter", "Saves of the state directory that failed (the log names the path and the reason).")?;
                            writeln!(w, "lvsmon_state_save_failures_total {failed}")
                        });
                    if !ok {
                        // The fixed part always fits an empty buffer; a partly filled one
                        // is sent first and this section starts over next time.
                        return false;
                    }
                    *cursor = 1 << 56;
                }
                // Item 0: the family's HELP/TYPE lines not yet written; item k: k-1 entries
                // written.
                1 => {
                    let mut item = item;
                    if item == 0 {
                        if !out.line(|w| {
                            stats::family(
                                w,
                                "lvsmon_virtual_reals_up",
                                "gauge",
                                "Real servers UP (and not drained) behind each virtual service.",
                            )
                        }) {
                            return false;
                        }
                        item = 1;
                    }
                    while let Some(v) = self.table.virtuals.get(item as usize - 1) {
                        if !out.line(|w| {
                            write!(w, "lvsmon_virtual_reals_up{{virtual=\"")?;
                            service_label(w, v.key)?;
                            writeln!(w, "\"}} {}", v.up)
                        }) {
                            *cursor = (1 << 56) | item;
                            return false;
                        }
                        item += 1;
                    }
                    *cursor = 2 << 56;
                }
                2 => {
                    let mut item = item;
                    if item == 0 {
                        if !out.line(|w| stats::family(w, "lvsmon_real_up", "gauge", "1 if the real server is UP (and not drained) behind the virtual service, else 0.")) {
                            return false;
                        }
                        item = 1;
                    }
                    while let Some(real) = self.table.reals.get(item as usize - 1) {
                        let up = (real.health.state == State::Up && !real.drained) as u8;
                        let key = self.table.virtuals[real.virt as usize].key;
                        if !out.line(|w| {
                            write!(w, "lvsmon_real_up{{virtual=\"")?;
                            service_label(w, key)?;
                            writeln!(w, "\",real=\"{}\"}} {up}", real.addr)
                        }) {
                            *cursor = (2 << 56) | item;
                            return false;
                        }
                        item += 1;
                    }
                    return true;
                }
                _ => return true,
            }
        }
    }
}

impl Render for Core {
    fn apply(&mut self, cmd: &Command, _text: &[u8], cursor: &mut u64, _now: Time) {
        match *cmd {
            Command::Drain { on, real, virt } => self.drain_apply(on, real, virt.as_ref(), cursor),
            // The load runs on a helper thread; the connection waits parked until a load
            // that started after this request has been answered.
            Command::Reload => *cursor = PARKED | self.request_reload(),
            _ => {}
        }
    }

    fn render(
        &self,
        cmd: &Command,
        text: &[u8],
        cursor: &mut u64,
        out: &mut [u8],
        now: Time,
    ) -> (usize, bool) {
        let mut o = Out { buf: out, len: 0 };
        let done = match *cmd {
            Command::Metrics { head: true } => {
                o.line(|w| w.write_all(METRICS_HEAD));
                true
            }
            Command::Metrics { head: false } => self.metrics(cursor, &mut o),
            Command::BadMethod => {
                o.line(|w| write!(w, "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\nonly GET /metrics\n"));
                true
            }
            Command::NotFound => {
                o.line(|w| write!(w, "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nlvsmon serves /metrics\n"));
                true
            }
            Command::Status { json } => self.status(json, cursor, &mut o, now),
            Command::Drain { on, real, virt } => {
                self.drain_reply(on, real, virt.as_ref(), text, cursor, &mut o)
            }
            Command::Reload => {
                let want = *cursor & !PARKED;
                if self.reload.finished >= want {
                    let text = self.reload.result.as_bytes();
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
                        "\" (expected status, history, drain, undrain or reload)"
                    )
                });
                true
            }
        };
        (o.len, done)
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

impl Core {
    /// Finds the virtual service a request named (see [`crate::control::parse_virtual`]).
    fn find_virtual(&self, named: &Named) -> Option<usize> {
        let key = named.key?;
        (0..self.table.virtuals.len()).find(|&v| self.table.virtuals[v].key == key)
    }

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
                let (a, b) = self.table.virtuals[v].reals;
                self.history.summary(a as usize..b as usize, since, now)
            }
            (None, None) => self.history.summary(0..self.table.reals.len(), since, now),
        };
        let mut vbuf = [0u8; 80];
        let vid = match v {
            Some(v) => key_text(self.table.virtuals[v].key, &mut vbuf),
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
                Some(r) => write!(w, "\"{}\"", self.table.reals[r].addr)?,
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
            let real = r.map(|r| self.table.reals[r].addr);
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
        out: &mut Out<'_>,
        now: Time,
    ) -> bool {
        let scope = match virt {
            None => Scope::All,
            Some(named) => match self.find_virtual(named) {
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
                        let (a, b) = self.table.virtuals[v].reals;
                        match (a as usize..b as usize)
                            .find(|&r| Some(self.table.reals[r].addr.get()) == addr)
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
                    (k - 1 < self.table.virtuals.len()).then_some(("virtual", Some(k - 1), None))
                }
                Scope::Virtual(v) if k == 0 => Some(("virtual", Some(v), None)),
                Scope::Virtual(v) => {
                    let (a, b) = self.table.virtuals[v].reals;
                    let r = a as usize + k - 1;
                    (r < b as usize).then_some(("real", Some(v), Some(r)))
                }
                Scope::Real(r) if k == 0 => {
                    Some(("real", Some(self.table.reals[r].virt as usize), Some(r)))
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

// ----- state across restarts --------------------------------------------------------------

/// Records written per loop turn while a periodic save runs: bounds the turn's extra work.
const SAVE_RECORDS_PER_TURN: usize = 2_000;

impl Core {
    /// Writes `VIRTUAL REAL` of real `r` into `buf`; returns its length.
    fn state_key(&self, r: usize, buf: &mut [u8]) -> usize {
        let mut c = Cursor::new(buf);
        let real = &self.table.reals[r];
        let _ = write!(
            c,
            "{} {}",
            self.table.virtuals[real.virt as usize].key, real.addr
        );
        c.position() as usize
    }

    /// Loads `dir/state` (startup only): DRAINED marks and history of the reals still
    /// configured. A corrupt file is set aside and reported, never trusted.
    pub(super) fn load_state(&mut self, dir: &std::path::Path) {
        match state::load(dir) {
            Ok(None) => {}
            Ok(Some(records)) => {
                let by_key: std::collections::HashMap<&str, &state::Record> =
                    records.iter().map(|r| (r.key.as_str(), r)).collect();
                let (mut used, mut drained, mut damaged) = (0usize, 0usize, 0usize);
                for r in 0..self.table.reals.len() {
                    let mut k = [0u8; 160];
                    let n = self.state_key(r, &mut k);
                    let Some(rec) = std::str::from_utf8(&k[..n])
                        .ok()
                        .and_then(|k| by_key.get(k))
                    else {
                        continue;
                    };
                    used += 1;
                    if rec.drained {
                        self.table.restore_drained(crate::ids::RealId::of(r));
                        drained += 1;
                    }
                    if !self.load_history(r, &rec.history) {
                        damaged += 1;
                    }
                }
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state loaded\" dir={} records={} used={used} drained={drained} damaged_history={damaged}",
                        dir.display(),
                        records.len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = self.log.line(Level::Warn) {
                    let _ = write!(l, "msg=\"state not loaded\" ");
                    let mut t = [0u8; 400];
                    let mut c = Cursor::new(&mut t[..]);
                    let _ = write!(c, "{e}");
                    let n = c.position() as usize;
                    l.quoted("error", &t[..n]);
                }
            }
        }
    }

    /// One turn's share of a save: starts one when the period is up or an operator's drain
    /// asked for one (right after the save under way, if any), writes a bounded number of
    /// records, and hands the file to the sync thread when all are written. Logs failures
    /// (rate-limited, [`state::Saver::note`]).
    ///
    /// Returns true when a save ended this turn (parked `drain` replies can be given).
    pub(super) fn save_step(&mut self, now: Time) -> bool {
        let Some(saver) = self.saver.as_mut() else {
            return false;
        };
        let ended = saver.saved + saver.failed;
        self.save_turn(now);
        self.saver
            .as_ref()
            .is_some_and(|s| s.saved + s.failed != ended)
    }

    fn save_turn(&mut self, now: Time) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        saver.poll();
        if self.save_cursor.is_none() {
            if (now < self.next_save && !saver.wanted()) || saver.busy() {
                self.log_save_note(now);
                return;
            }
            self.next_save = now.add_micros(self.save_every_us);
            let unix = (self.wall_origin_us + now.0) / 1_000_000;
            if saver.begin(unix).is_err() {
                self.log_save_note(now);
                return;
            }
            self.save_cursor = Some(0);
        }
        let Some(mut r) = self.save_cursor else {
            return;
        };
        let end = (r + SAVE_RECORDS_PER_TURN).min(self.table.reals.len());
        while r < end {
            if self.save_record(r).is_err() {
                self.save_cursor = None;
                self.log_save_note(now);
                return;
            }
            r += 1;
        }
        if r < self.table.reals.len() {
            self.save_cursor = Some(r);
            return;
        }
        self.save_cursor = None;
        if let Some(s) = self.saver.as_mut() {
            // A failure is recorded by the saver and logged below.
            let _ = s.finish(false);
        }
        self.log_save_note(now);
    }

    /// Logs what the saver has to say about saves that ended: a failure (path, step, reason
    /// in words, errno, failures since the last such line), or that saves work again.
    fn log_save_note(&mut self, now: Time) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        let Some(note) = saver.note(now.0) else {
            return;
        };
        let dir = saver.dir();
        match note {
            state::SaveNote::Failed { err, failures } => {
                if let Some(mut l) = self.log.line(Level::Error) {
                    let _ = write!(l, "msg=\"state save failed\" ");
                    write_save_error(&mut l, dir, err);
                    let _ = write!(
                        l,
                        " failures={failures} remind_after={}s",
                        state::REMIND.as_secs()
                    );
                }
            }
            state::SaveNote::Recovered { failures } => {
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved again\" path={}/state failed_before={failures}",
                        dir.display()
                    );
                }
            }
        }
    }

    fn save_record(&mut self, r: usize) -> std::io::Result<()> {
        let mut k = [0u8; 160];
        let n = self.state_key(r, &mut k);
        let drained = self.table.reals[r].drained;
        let mut saver = self.saver.take().expect("saving");
        let res = saver.record(&k[..n], drained, &mut |c| self.encode_history(r, c));
        self.saver = Some(saver);
        res
    }

    /// The full save at shutdown (SIGTERM, SIGINT), in this thread: write, fsync, rename.
    pub(super) fn save_now(&mut self) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        // A periodic save under way is abandoned for this complete one; one whose fsync and
        // rename run on the helper thread is waited for (5 s at most), so the two never
        // write the same temporary file.
        self.save_cursor = None;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while saver.busy() && saver.syncing() && std::time::Instant::now() < end {
            if saver.poll().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let unix = (self.wall_origin_us + self.now.0) / 1_000_000;
        let mut ok = saver.begin(unix).is_ok();
        for r in 0..self.table.reals.len() {
            if !ok {
                break;
            }
            ok = self.save_record(r).is_ok();
        }
        let saver = self.saver.as_mut().expect("saving");
        let res = if ok {
            saver.finish(true)
        } else {
            Err(std::io::Error::other("write failed"))
        };
        let dir = saver.dir().to_path_buf();
        let err = saver.last_error();
        match res {
            Ok(()) => {
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved\" dir={} reals={}",
                        dir.display(),
                        self.table.reals.len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = self.log.line(Level::Error) {
                    let _ = write!(l, "msg=\"state save failed\" ");
                    let err = err.unwrap_or(state::SaveError {
                        step: state::Step::Write,
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                    });
                    write_save_error(&mut l, &dir, err);
                }
            }
        }
    }

    /// Writes real `r`'s history for the state file.
    fn encode_history(&self, r: usize, c: &mut Cursor<&mut [u8]>) -> std::io::Result<()> {
        self.history.encode_real(r, c)
    }

    /// Restores real `r`'s history from the state file; a damaged record is skipped (and
    /// counted in the `state loaded` line).
    fn load_history(&mut self, r: usize, bytes: &[u8]) -> bool {
        bytes.is_empty() || self.history.decode_real(r, bytes).is_ok()
    }
}

/// `path=DIR/state step=STEP error="REASON" errno=N` of a failed save.
fn write_save_error(w: &mut impl Write, dir: &std::path::Path, e: state::SaveError) {
    let _ = write!(
        w,
        "path={}/state step={} error=\"{}\" errno={}",
        dir.display(),
        e.step.name(),
        e.reason(),
        e.errno
    );
}
