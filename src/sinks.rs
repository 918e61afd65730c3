//! Where the daemon's news goes: the table's events (the `event=` log line, `notify-fifo`,
//! the notify command's queue, the counters) and its drift notes, the `notify-fifo` writer's
//! state changes, what a notify command reports (failed spawns, its output, kills), and each
//! finished IPVS operation's line and counters. The loop hands these sinks to the table and
//! the notifier; they write lines and queue, and decide nothing.

use std::io::Write;
use std::net::SocketAddr;

use crate::clock::Time;
use crate::config::ServiceKey;
use crate::ipvs::{Op, OpKind, OpResult};
use crate::log::{Level, Log};
use crate::monitor::event::{Event, EventKind};
use crate::notify::{EventFifo, FifoStatus, Notifier};
use crate::stats::Stats;
use crate::table;

/// Where the table's events and notes go: the log, `notify-fifo`, the notify commands and
/// the counters.
pub(crate) struct Sinks<'a> {
    pub(crate) log: &'a mut Log,
    pub(crate) stats: &'a mut Stats,
    pub(crate) fifo: &'a mut Option<EventFifo>,
    pub(crate) notifier: &'a mut Option<Notifier>,
    pub(crate) now: Time,
}

impl table::Out for Sinks<'_> {
    /// Logs an event and queues its notify command. `quorum` is (UP reals, quorum) for the
    /// quorum events, which print those instead of a failure count.
    fn event(&mut self, ev: &Event, notify: u32, quorum: Option<(u32, u32)>) {
        self.stats.events += 1;
        match ev.kind {
            EventKind::QuorumLost | EventKind::QuorumRestored => {}
            EventKind::Slow => self.stats.slow_events += 1,
            EventKind::Fast => self.stats.fast_events += 1,
            _ => self.stats.transitions += 1,
        }
        if let Some(mut l) = self.log.line(Level::Notice) {
            let _ = write!(l, "event={} virtual={}", ev.kind.as_str(), ev.service);
            if let Some(a) = ev.real {
                let _ = write!(l, " real={a}");
            }
            if let Some(r) = ev.reason {
                let _ = write!(l, " reason={} ", r.as_str());
                l.quoted("detail", ev.detail.as_bytes());
                // Which of the real's several checks failed.
                if ev.detail.check() > 0 {
                    let _ = write!(l, " check={}", ev.detail.check());
                }
            } else if matches!(ev.kind, EventKind::Slow | EventKind::Fast) {
                // The check's duration.
                let _ = write!(l, " ");
                l.quoted("detail", ev.detail.as_bytes());
            }
            match quorum {
                Some((up, q)) => {
                    let _ = write!(l, " up={up} quorum={q}");
                }
                None => {
                    let _ = write!(l, " failures={}", ev.failures);
                }
            }
        }
        if let Some(f) = self.fifo.as_mut() {
            let (kept, status) = f.push(ev, quorum, self.now);
            if !kept {
                self.stats.fifo_dropped += 1;
            }
            fifo_status(self.log, self.stats, f, status);
        }
        if notify != table::NO_NOTIFY {
            if let Some(n) = self.notifier.as_mut() {
                if !n.push(notify as usize, ev) {
                    self.stats.notify_dropped += 1;
                    if let Some(mut l) = self.log.line(Level::Warn) {
                        let _ = write!(
                            l,
                            "msg=\"notify queue full, event dropped\" event={}",
                            ev.kind.as_str()
                        );
                    }
                }
            }
        }
    }

    /// Logs one difference found by a resync.
    fn drift(&mut self, key: ServiceKey, real: Option<SocketAddr>, what: &str) {
        self.stats.drift_repaired += 1;
        if let Some(mut l) = self.log.line(Level::Warn) {
            let _ = write!(l, "msg=\"resync: {what}, repairing\" virtual={key}");
            if let Some(a) = real {
                let _ = write!(l, " real={a}");
            }
        }
    }

    fn resynced(&mut self) {
        self.stats.resyncs += 1;
    }

    /// Logs edits going with the last-known attributes: the read before them failed.
    fn stale_edit(&mut self, key: ServiceKey, why: &str) {
        if let Some(mut l) = self.log.line(Level::Warn) {
            let _ = write!(
                l,
                "msg=\"read before edit {why}, editing with the last-known attributes\" virtual={key}"
            );
        }
    }

    /// Logs and counts an UP real's weight change, with what set it.
    fn weight(&mut self, key: ServiceKey, real: SocketAddr, weight: u32, why: &table::Why) {
        self.stats.weight_changes += 1;
        if let Some(mut l) = self.log.line(Level::Notice) {
            let _ = write!(
                l,
                "msg=\"weight\" virtual={key} real={real} weight={weight} from=\"{why}\""
            );
        }
    }
}

/// Logs and counts a finished IPVS operation (`ipvs op=... result=...`).
pub(crate) fn ipvs_done(log: &mut Log, stats: &mut Stats, op: Op, res: OpResult) {
    let k = OpKind::ALL
        .iter()
        .position(|k| *k == op.kind())
        .unwrap_or(0);
    let level = if let OpResult::Error(_) = res {
        stats.ipvs_errors[k] += 1;
        Level::Error
    } else {
        stats.ipvs_ok[k] += 1;
        if res == OpResult::DryRun {
            stats.ipvs_dry_run[k] += 1;
        }
        Level::Notice
    };
    if let Some(mut l) = log.line(level) {
        let _ = op.describe(&mut l);
        let _ = l.write_all(b" ");
        let _ = res.describe(&mut l);
    }
}

/// Logs what the `notify-fifo` writer reported, if anything changed, and counts the lines it
/// lost in the pipe of a reader that went away.
pub(crate) fn fifo_status(log: &mut Log, stats: &mut Stats, f: &mut EventFifo, status: FifoStatus) {
    let lost = f.take_lost();
    stats.fifo_dropped += lost;
    match status {
        FifoStatus::Same => {}
        FifoStatus::Opened => {
            if let Some(mut l) = log.line(Level::Info) {
                let _ = write!(l, "msg=\"notify-fifo open\" ");
                l.quoted("path", f.path());
            }
        }
        FifoStatus::Failed(errno) => {
            if let Some(mut l) = log.line(Level::Warn) {
                let _ = write!(l, "msg=\"notify-fifo not writable, lines wait\" ");
                l.quoted("path", f.path());
                let _ = write!(l, " errno={errno} ");
                l.quoted("error", crate::notify::errno_text(errno).as_bytes());
                let _ = write!(l, " pending_bytes={} lost_lines={lost}", f.pending());
            }
        }
    }
}

/// Logs what a notifier reports as it happens: each failed spawn and each line of a
/// command's output, naming the program and the event.
pub(crate) struct NotifyLog<'a> {
    pub(crate) log: &'a mut Log,
}

impl NotifyLog<'_> {
    /// `program="..." event=... virtual=... real=...` after `msg`, on a line at `level`.
    fn line(
        &mut self,
        level: Level,
        msg: &str,
        program: &[u8],
        ev: &Event,
    ) -> Option<crate::log::Line<'_>> {
        let mut l = self.log.line(level)?;
        let _ = write!(l, "msg=\"{msg}\" ");
        l.quoted("program", program);
        let _ = write!(l, " event={} virtual={}", ev.kind.as_str(), ev.service);
        if let Some(a) = ev.real {
            let _ = write!(l, " real={a}");
        }
        Some(l)
    }
}

impl NotifyLog<'_> {
    /// Commands killed after their timeout in one poll, if any: one line for them all.
    pub(crate) fn killed(&mut self, killed: u32) {
        if killed > 0 {
            if let Some(mut l) = self.log.line(Level::Warn) {
                let _ = write!(
                    l,
                    "msg=\"notify command killed after timeout\" killed={killed}"
                );
            }
        }
    }
}

impl crate::notify::NotifySink for NotifyLog<'_> {
    fn spawn_failed(&mut self, _: u32, program: &[u8], ev: &Event, errno: i32) {
        // One line per event lost.
        if let Some(mut l) = self.line(Level::Error, "notify spawn failed", program, ev) {
            let _ = write!(l, " errno={errno} ");
            l.quoted("error", crate::notify::errno_text(errno).as_bytes());
        }
    }

    fn output(&mut self, _: u32, program: &[u8], ev: &Event, line: &[u8]) {
        if let Some(mut l) = self.line(Level::Notice, "notify output", program, ev) {
            let _ = write!(l, " ");
            l.quoted("line", line);
        }
    }

    fn output_discarded(&mut self, _: u32, program: &[u8], ev: &Event, lines: u64, bytes: u64) {
        if let Some(mut l) = self.line(Level::Notice, "notify output discarded", program, ev) {
            let _ = write!(l, " lines={lines} bytes={bytes}");
        }
    }
}
