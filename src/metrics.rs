//! The Prometheus `/metrics` page (metric names and meanings: lvsmon(8), METRICS), rendered
//! section by section from a cursor into a connection's fixed buffer. It reads the
//! counters and the table and changes nothing.

use std::io::Write;

use crate::control::{key_text, Reply};
use crate::ipvs::OpKind;
use crate::monitor::health::State;
use crate::plugins::Reason;
use crate::stats::{self, label_value, Stats};
use crate::table::Table;

/// The head of a `/metrics` reply (also the whole reply to `HEAD`).
pub(crate) const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nConnection: close\r\n\r\n";

/// What the page shows.
pub(crate) struct Sources<'a> {
    /// The loop's counters.
    pub stats: &'a Stats,
    /// The reals and virtual services.
    pub table: &'a Table,
    /// Log lines dropped.
    pub log_dropped: u64,
    /// State saves that failed.
    pub saves_failed: u64,
    /// TLS checks' certificate expiry and the helper's restarts.
    pub tls: Option<&'a crate::tls::Expiry>,
}

/// The per-real families after `lvsmon_real_up`: name, type, help.
const PER_REAL: [(&str, &str, &str); 4] = [
    (
        "lvsmon_real_weight",
        "gauge",
        "The weight IPVS has for the real server (0 when it is not in the table).",
    ),
    (
        "lvsmon_real_checks_total",
        "counter",
        "Checks of the real server finished with a verdict.",
    ),
    (
        "lvsmon_real_failures_total",
        "counter",
        "Failed checks of the real server.",
    ),
    (
        "lvsmon_real_check_duration_seconds",
        "gauge",
        "Duration of the real server's last check.",
    ),
];

/// Writes a service identifier as an escaped label value.
fn service_label(w: &mut impl Write, key: crate::config::ServiceKey) -> std::io::Result<()> {
    label_value(w, key_text(key, &mut [0u8; 80]).as_bytes())
}

/// `lvsmon_sync_daemon_up`: each `sync-daemon` line of the configuration, in its order, 1
/// when lvsmon adopted, started or restarted the daemon, 0 when that failed or under
/// `--dry-run`; nothing at all without such lines (lvsmon(8), METRICS).
fn sync_daemons(w: &mut impl Write, list: &[crate::ipvs::daemon::Status]) -> std::io::Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    stats::family(
        w,
        "lvsmon_sync_daemon_up",
        "gauge",
        "1 if lvsmon adopted, started or restarted the connection-sync daemon, 0 if that failed or under --dry-run.",
    )?;
    for s in list {
        let d = &s.daemon;
        write!(w, "lvsmon_sync_daemon_up{{state=\"{}\",iface=\"", d.state())?;
        label_value(w, d.iface.as_bytes())?;
        writeln!(w, "\",id=\"{}\"}} {}", d.id, u8::from(s.outcome.running()))?;
    }
    Ok(())
}

/// The `/metrics` page. Cursor: section in the top byte, item below.
pub(crate) fn render(src: &Sources<'_>, cursor: &mut u64, out: &mut Reply<'_>) -> bool {
    loop {
        let (sec, item) = (*cursor >> 56, *cursor & ((1 << 56) - 1));
        match sec {
            0 => {
                let ok = out.line(|w| w.write_all(HEAD))
                    && out.line(|w| {
                        let st = &src.stats;
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
                        let st = &src.stats;
                        stats::family(w, "lvsmon_weight_changes_total", "counter", "Weight changes of UP real servers sent to IPVS (agent, exec, slow, slow start, set-weight).")?;
                        writeln!(w, "lvsmon_weight_changes_total {}", st.weight_changes)?;
                        stats::family(w, "lvsmon_slow_events_total", "counter", "Real servers that became SLOW (event slow) or FAST again (event fast).")?;
                        writeln!(w, "lvsmon_slow_events_total{{event=\"slow\"}} {}", st.slow_events)?;
                        writeln!(w, "lvsmon_slow_events_total{{event=\"fast\"}} {}", st.fast_events)
                    })
                    && out.line(|w| {
                        stats::family(w, "lvsmon_log_dropped_total", "counter", "Log lines dropped because the log's reader did not keep up (or had gone).")?;
                        writeln!(w, "lvsmon_log_dropped_total {}", src.log_dropped)
                    })
                    && out.line(|w| {
                        let st = &src.stats;
                        stats::family(w, "lvsmon_notify_dropped_total", "counter", "Events not passed on: to the notify command (queue full) or to notify-fifo (its reader slow or absent).")?;
                        writeln!(w, "lvsmon_notify_dropped_total{{to=\"command\"}} {}", st.notify_dropped)?;
                        writeln!(w, "lvsmon_notify_dropped_total{{to=\"fifo\"}} {}", st.fifo_dropped)
                    })
                    && out.line(|w| {
                        stats::family(w, "lvsmon_check_failures_total", "counter", "Failed checks by reason.")?;
                        for r in Reason::ALL {
                            writeln!(w, "lvsmon_check_failures_total{{reason=\"{}\"}} {}", r.as_str(), src.stats.failures[r as usize])?;
                        }
                        Ok(())
                    })
                    && out.line(|w| {
                        stats::family(w, "lvsmon_ipvs_operations_total", "counter", "IPVS table changes by operation and result.")?;
                        for (k, op) in OpKind::ALL.iter().enumerate() {
                            let st = &src.stats;
                            let dry = st.ipvs_dry_run[k];
                            for (res, n) in [("ok", st.ipvs_ok[k] - dry), ("dry-run", dry), ("error", st.ipvs_errors[k])] {
                                writeln!(w, "lvsmon_ipvs_operations_total{{op=\"{}\",result=\"{res}\"}} {n}", op.as_str())?;
                            }
                        }
                        Ok(())
                    })
                    && out.line(|w| {
                        stats::family(w, "lvsmon_check_duration_seconds", "histogram", "Time from the start of a check to its verdict.")?;
                        src.stats.duration.render("lvsmon_check_duration_seconds", w)
                    })
                    && out.line(|w| {
                        stats::family(w, "lvsmon_check_lateness_seconds", "histogram", "Start time of a check minus its scheduled time.")?;
                        src.stats.lateness.render("lvsmon_check_lateness_seconds", w)
                    })
                    && out.line(|w| {
                        let failed = src.saves_failed;
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
                while let Some(v) = src.table.virtuals().get(item as usize - 1) {
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
                while let Some(real) = src.table.reals().get(item as usize - 1) {
                    // Drained by hand or by its agent: not serving.
                    let up = (real.health.state == State::Up
                        && !real.drained
                        && !src.table.weigh(item as usize - 1).agent_drain)
                        as u8;
                    let key = src.table.virtuals()[real.virt as usize].key;
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
                *cursor = 3 << 56;
            }
            // The per-real series of lvsmon.conf(5), WEIGHTS and lvsmon(8), METRICS: one
            // section per family, every real in it.
            3..=6 => {
                let (name, kind, help) = PER_REAL[(sec - 3) as usize];
                let mut item = item;
                if item == 0 {
                    if !out.line(|w| stats::family(w, name, kind, help)) {
                        return false;
                    }
                    item = 1;
                }
                while let Some(real) = src.table.reals().get(item as usize - 1) {
                    let key = src.table.virtuals()[real.virt as usize].key;
                    if !out.line(|w| {
                        write!(w, "{name}{{virtual=\"")?;
                        service_label(w, key)?;
                        write!(w, "\",real=\"{}\"}} ", real.addr)?;
                        match sec {
                            3 => writeln!(w, "{}", real.table().unwrap_or(0)),
                            4 => writeln!(w, "{}", real.checks),
                            5 => writeln!(w, "{}", real.failures),
                            _ => {
                                stats::seconds(w, u64::from(real.last_latency_us))?;
                                writeln!(w)
                            }
                        }
                    }) {
                        *cursor = (sec << 56) | item;
                        return false;
                    }
                    item += 1;
                }
                *cursor = (sec + 1) << 56;
            }
            // The director's sync daemons (at most a master and a backup: one line).
            7 => {
                if !out.line(|w| crate::ipvs::daemon::status(|list| sync_daemons(w, list))) {
                    return false;
                }
                *cursor = 40 << 56;
            }
            40 => {
                let Some(e) = src.tls.filter(|e| !e.targets.is_empty()) else {
                    return true;
                };
                let mut item = item;
                if item == 0 {
                    if !out.line(|w| {
                        stats::family(w, "lvsmon_tls_helper_restarts_total", "counter", "Times the TLS helper was lost (exited, killed or hung) and started again; its checks in flight counted as local errors.")?;
                        writeln!(w, "lvsmon_tls_helper_restarts_total {}", src.stats.tls_helper_restarts)?;
                        stats::family(w, "lvsmon_tls_cert_expiry_timestamp_seconds", "gauge", "notAfter of the certificate each TLS check last saw, in Unix seconds (0: none seen yet).")
                    }) {
                        return false;
                    }
                    item = 1;
                }
                while let Some(&t) = e.targets.get(item as usize - 1) {
                    let k = item as usize - 1;
                    if e.shown[k]
                        && !out.line(|w| {
                            write!(w, "lvsmon_tls_cert_expiry_timestamp_seconds{{target=\"{t}\",server_name=\"")?;
                            label_value(w, e.names[k].as_bytes())?;
                            writeln!(w, "\"}} {}", e.not_after[k])
                        })
                    {
                        *cursor = (40 << 56) | item;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::director::SyncDaemon;
    use crate::ipvs::daemon::{Outcome, Status};

    fn daemon(backup: bool, iface: &str, id: u8) -> SyncDaemon {
        SyncDaemon::with_defaults(backup, iface, id)
    }

    fn render(list: &[Status]) -> String {
        let mut out = Vec::new();
        sync_daemons(&mut out, list).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// `lvsmon_sync_daemon_up`: one series per configured daemon, in the order of the
    /// configuration, 1 only when lvsmon saw to it that it runs; an interface's quote
    /// escaped; no family at all without daemons.
    #[test]
    fn sync_daemons_are_a_gauge_of_what_became_of_them() {
        assert_eq!(render(&[]), "");
        let list = Status::of(
            &[daemon(false, "eth0", 7), daemon(true, "bond\"0", 0)],
            &[
                Outcome::Started { restarted: true },
                Outcome::Failed("errno=19".into()),
            ],
        );
        assert_eq!(
            render(&list),
            "# HELP lvsmon_sync_daemon_up 1 if lvsmon adopted, started or restarted the \
             connection-sync daemon, 0 if that failed or under --dry-run.\n\
             # TYPE lvsmon_sync_daemon_up gauge\n\
             lvsmon_sync_daemon_up{state=\"master\",iface=\"eth0\",id=\"7\"} 1\n\
             lvsmon_sync_daemon_up{state=\"backup\",iface=\"bond\\\"0\",id=\"0\"} 0\n"
        );
        for (o, up) in [
            (Outcome::Adopted, 1),
            (Outcome::Started { restarted: false }, 1),
            (Outcome::Started { restarted: true }, 1),
            (Outcome::Failed(String::new()), 0),
            (Outcome::DryRun, 0),
        ] {
            let one = render(&Status::of(
                &[daemon(false, "lo", 1)],
                std::slice::from_ref(&o),
            ));
            assert!(
                one.ends_with(&format!(
                    "\nlvsmon_sync_daemon_up{{state=\"master\",iface=\"lo\",id=\"1\"}} {up}\n"
                )),
                "{o:?}: {one}"
            );
        }
    }
}
