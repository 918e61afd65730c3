//! Edits from fresh attributes (lvsmon(8), IPVS): before an `edit-dest` or `edit-service`
//! goes out for a service whose attributes were last read more than [`FRESH_US`] ago, that
//! service is read back alone (the service, then its destinations), so what an operator set
//! with `ipvsadm` since the last resync is learned, as a resync learns it, and carried by the
//! edit instead of being overwritten with older values.
//!
//! One read at a time; every edit of the service waiting in the queue when it ends shares
//! it. The queue's compact operations wait behind it (the read is two netlink round trips);
//! a read that fails or takes longer than [`READ_WAIT_US`] lets the edits go with the
//! last-known values, logged once. A resync running when an edit comes is that read. Whole
//! operations (a weight above 65,535, what a reload hands over from the old tables) are
//! built when queued and go unread.

use super::outbox::{Slot, What};
use super::{Out, Table};
use crate::clock::Time;
use crate::config::ServiceKey;
use crate::ipvs::Op;

/// Attributes read this recently are fresh: an edit sends them without a read. At most one
/// read per service per second, however often its weights step (slow start, agents); the
/// operator's window shrinks from the resync period (a minute by default) to a second, which
/// is less than a hand change and a reaction to it take.
pub(crate) const FRESH_US: u64 = 1_000_000;
/// How long edits wait for a read before going with the last-known values. A read takes two
/// round trips to the kernel (well under a millisecond); a kernel that has not answered in a
/// second is stuck, and the edit (a quiesce, say) must not wait on it.
pub(crate) const READ_WAIT_US: u64 = 1_000_000;
/// While a read is running a due resync is tried again this soon.
const RESYNC_RETRY_US: u64 = 50_000;

/// Edits of one service waiting for a read of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    /// The virtual's index.
    v: u32,
    /// When the read began (what it reads is at least this fresh).
    began: Time,
    /// When the edits stop waiting.
    until: Time,
    /// The read is a resync already running, not a read of this service.
    resync: bool,
}

impl Table {
    /// The virtual whose attributes slot `s` edits, if it is an edit.
    fn edits(&self, s: Slot) -> Option<usize> {
        match s.what {
            What::EditDest => Some(self.reals[s.idx as usize].virt as usize),
            What::EditService => Some(s.idx as usize),
            _ => None,
        }
    }

    /// The next operation for the IPVS side, as [`Table::next_op`], but an edit of a service
    /// read more than [`FRESH_US`] ago waits for a read of it: `start_read` starts one (false:
    /// it cannot, and the edit goes with the last-known values). `None` while edits wait.
    pub(crate) fn next_fresh_op(
        &mut self,
        now: Time,
        out: &mut impl Out,
        mut start_read: impl FnMut(ServiceKey) -> bool,
    ) -> Option<Op> {
        self.now = now;
        if self.outbox.has_whole() {
            return self.next_op();
        }
        if let Some(h) = self.hold {
            if now < h.until {
                return None;
            }
            self.hold = None;
            self.read_at[h.v as usize] = now;
            out.stale_edit(self.virtuals[h.v as usize].key, "timed out");
        }
        let v = self.outbox.peek().and_then(|s| self.edits(s));
        if let Some(v) = v {
            if now.micros_since(self.read_at[v]) > FRESH_US {
                let key = self.virtuals[v].key;
                let hold = |resync| Hold {
                    v: v as u32,
                    began: now,
                    until: now.add_micros(READ_WAIT_US),
                    resync,
                };
                if self.resyncing {
                    // The running read-back reads it.
                    self.hold = Some(hold(true));
                    return None;
                }
                if !self.reading && start_read(key) {
                    self.reading = true;
                    self.hold = Some(hold(false));
                    return None;
                }
                // No read to be had (`--dry-run`, or one still running after timing out).
                self.read_at[v] = now;
            }
        }
        self.next_op()
    }

    /// Edits wait for a read until this time, if they do.
    #[inline]
    pub(crate) fn read_deadline(&self) -> Option<Time> {
        self.hold.map(|h| h.until)
    }

    /// A read of one service ended (its entries came as a read-back's do and were learned).
    pub(super) fn read_done(&mut self, ok: bool, out: &mut impl Out) {
        self.reading = false;
        let Some(h) = self.hold.filter(|h| !h.resync) else {
            // Timed out already, or begun by the tables a reload replaced.
            return;
        };
        self.hold = None;
        if ok {
            self.read_at[h.v as usize] = h.began;
        } else {
            self.read_at[h.v as usize] = self.now;
            out.stale_edit(self.virtuals[h.v as usize].key, "failed");
        }
    }

    /// A read-back begun at `began` ended: every service is as fresh as that (`ok`), and the
    /// edits waiting on it go (or ask for their own read, if it failed).
    pub(super) fn resync_done(&mut self, ok: bool, began: Time) {
        if ok {
            self.read_at.fill(began);
        }
        if self.hold.is_some_and(|h| h.resync) {
            self.hold = None;
        }
    }

    /// Whether a due resync must wait for a read still running (and when to try again).
    pub(super) fn resync_waits(&mut self, now: Time) -> bool {
        if self.reading {
            if self.resync_us > 0 && now >= self.next_resync {
                self.next_resync = now.add_micros(RESYNC_RETRY_US);
            }
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::ids::RealId;
    use crate::ipvs::wire::{DestInfo, ServiceInfo};
    use crate::ipvs::{sys, DestExtra, IpvsEvent, Service};
    use crate::monitor::event::Event;
    use crate::plugins::{Detail, Reason, Verdict};

    #[derive(Default)]
    struct Rec {
        stale: Vec<(ServiceKey, String)>,
    }

    impl Out for Rec {
        fn event(&mut self, _: &Event, _: u32, _: Option<(u32, u32)>) {}
        fn drift(&mut self, _: ServiceKey, _: Option<SocketAddr>, _: &str) {}
        fn resynced(&mut self) {}
        fn stale_edit(&mut self, key: ServiceKey, why: &str) {
            self.stale.push((key, why.to_string()));
        }
    }

    const V: &str = "192.0.2.1:80";
    const R1: &str = "198.51.100.1:80";
    const R2: &str = "198.51.100.2:80";
    const S: u64 = 1_000_000;

    fn key() -> ServiceKey {
        ServiceKey::Inet(crate::config::Proto::Tcp, V.parse().unwrap())
    }

    /// A table with a long resync (no read-back before the edits), adopted at time 0 with
    /// R1 and R2 at weight 5 and no thresholds.
    fn table(r1: &str) -> Table {
        let text = format!(
            "resync 10m\nfall 1\nrise 1\nvirtual tcp {V} {{\n  scheduler sh\n real {R1} weight 5 {{\n{r1}\n }}\n real {R2} weight 5\n}}\n"
        );
        let doc =
            crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
                .unwrap();
        let mut t = Table::new(&crate::config::plan::plan(&doc, None).unwrap(), Time::ZERO);
        let svc = t.virtuals[0].service;
        t.adopt_at_start(|_| Some(svc), |_, _| Some(5));
        assert!(t.next_op().is_none());
        t
    }

    /// `ipvsadm -e -t V -r R -m -w 5 -x 100 -y 50`.
    fn by_hand() -> DestExtra {
        DestExtra {
            u_thresh: 100,
            l_thresh: 50,
            ..DestExtra::default()
        }
    }

    fn fail(t: &mut Table, r: u32, at: u64) {
        let v = Verdict::Fail(Reason::ConnectRefused, Detail::EMPTY);
        t.record(RealId(r), v, 10, Time(at), &mut Rec::default());
    }

    /// The operations handed over at `now`, and the keys of the reads asked for.
    fn drain(t: &mut Table, now: u64, rec: &mut Rec) -> (Vec<Op>, Vec<ServiceKey>) {
        let (mut ops, mut reads) = (Vec::new(), Vec::new());
        for _ in 0..100 {
            let op = t.next_fresh_op(Time(now), rec, |k| {
                reads.push(k);
                true
            });
            match op {
                Some(op) => ops.push(op),
                None => break,
            }
        }
        (ops, reads)
    }

    /// The kernel's answer to a read of the service: `svc`, R1 and R2 with `extra`, then the
    /// end (`ok`).
    fn answer(t: &mut Table, now: u64, svc: Service, extra: DestExtra, ok: bool, rec: &mut Rec) {
        let info = ServiceInfo {
            key: svc.key,
            af: libc::AF_INET as u16,
            service: svc,
            flags: 0,
        };
        t.read_back(IpvsEvent::Service(info), Time(now), rec);
        for r in [R1, R2] {
            let d = DestInfo {
                addr: r.parse().unwrap(),
                weight: 5,
                fwd: sys::IP_VS_CONN_F_MASQ,
                extra,
            };
            t.read_back(IpvsEvent::Dest(svc.key, d), Time(now), rec);
        }
        t.read_back(IpvsEvent::ReadDone { ok }, Time(now), rec);
    }

    fn weights_and_extras(ops: &[Op]) -> Vec<(u32, DestExtra)> {
        ops.iter()
            .map(|op| match op {
                Op::EditDest(_, d) => (d.weight, d.extra),
                op => panic!("not an edit-dest: {op:?}"),
            })
            .collect()
    }

    /// Thresholds set by hand after the last read, then a quiesce before any resync: the
    /// edit waits for a read of the service and carries them (it used to send the values
    /// of the startup snapshot, wiping the operator's).
    #[test]
    fn an_edit_after_a_hand_change_is_sent_with_the_hand_values() {
        let mut t = table("");
        let mut rec = Rec::default();
        fail(&mut t, 0, 30 * S);
        let (ops, reads) = drain(&mut t, 30 * S, &mut rec);
        assert_eq!((ops, reads), (vec![], vec![key()]), "held for a read");
        // Still waiting: no second read.
        let (ops, reads) = drain(&mut t, 30 * S + 1000, &mut rec);
        assert!(ops.is_empty() && reads.is_empty());
        let svc = t.virtuals[0].service;
        answer(&mut t, 30 * S + 2000, svc, by_hand(), true, &mut rec);
        let (ops, reads) = drain(&mut t, 30 * S + 2000, &mut rec);
        assert_eq!(weights_and_extras(&ops), [(0, by_hand())]);
        assert!(reads.is_empty() && rec.stale.is_empty());
        // Within a second of the read, the restore needs none.
        t.record(
            RealId(0),
            Verdict::Pass,
            10,
            Time(30 * S + 500_000),
            &mut rec,
        );
        let (ops, reads) = drain(&mut t, 30 * S + 500_000, &mut rec);
        assert_eq!(weights_and_extras(&ops), [(5, by_hand())]);
        assert!(reads.is_empty());
    }

    /// A threshold the config owns is still the config's; the one it does not own is
    /// learned from the read.
    #[test]
    fn the_config_still_wins_where_it_owns() {
        let mut t = table("  u-threshold 10");
        let mut rec = Rec::default();
        fail(&mut t, 0, 30 * S);
        let (ops, _) = drain(&mut t, 30 * S, &mut rec);
        assert!(ops.is_empty());
        let svc = t.virtuals[0].service;
        answer(&mut t, 30 * S, svc, by_hand(), true, &mut rec);
        let (ops, _) = drain(&mut t, 30 * S, &mut rec);
        let want = DestExtra {
            u_thresh: 10,
            ..by_hand()
        };
        assert_eq!(weights_and_extras(&ops), [(0, want)]);
    }

    /// A read that fails, or does not end within a second, lets the edits go with the
    /// last-known values, logged once.
    #[test]
    fn a_failed_or_slow_read_lets_the_edits_go() {
        let mut t = table("");
        let mut rec = Rec::default();
        fail(&mut t, 0, 30 * S);
        fail(&mut t, 1, 30 * S);
        assert_eq!(drain(&mut t, 30 * S, &mut rec).1, [key()]);
        let svc = t.virtuals[0].service;
        t.read_back(IpvsEvent::ReadDone { ok: false }, Time(30 * S), &mut rec);
        let (ops, reads) = drain(&mut t, 30 * S, &mut rec);
        let zero = DestExtra::default();
        assert_eq!(weights_and_extras(&ops), [(0, zero), (0, zero)]);
        assert!(reads.is_empty());
        assert_eq!(rec.stale, [(key(), "failed".to_string())]);

        let mut t = table("");
        let mut rec = Rec::default();
        fail(&mut t, 0, 30 * S);
        fail(&mut t, 1, 30 * S);
        assert_eq!(drain(&mut t, 30 * S, &mut rec).1, [key()]);
        assert_eq!(t.read_deadline(), Some(Time(30 * S + READ_WAIT_US)));
        assert!(drain(&mut t, 30 * S + READ_WAIT_US - 1, &mut rec)
            .0
            .is_empty());
        let (ops, reads) = drain(&mut t, 30 * S + READ_WAIT_US, &mut rec);
        assert_eq!(weights_and_extras(&ops), [(0, zero), (0, zero)]);
        assert!(reads.is_empty() && t.read_deadline().is_none());
        assert_eq!(rec.stale, [(key(), "timed out".to_string())]);
        // The late answer is still learned; the read that was given up is not asked again.
        answer(&mut t, 31 * S + 1, svc, by_hand(), true, &mut rec);
        t.record(RealId(0), Verdict::Pass, 10, Time(31 * S + 2), &mut rec);
        let (ops, reads) = drain(&mut t, 31 * S + 2, &mut rec);
        assert_eq!(weights_and_extras(&ops), [(5, by_hand())]);
        assert!(reads.is_empty() && rec.stale.len() == 1);
    }

    /// Several edits of one service in a turn share one read; a service edit also waits.
    #[test]
    fn edits_of_one_service_share_one_read() {
        let mut t = table("");
        let mut rec = Rec::default();
        fail(&mut t, 0, 30 * S);
        fail(&mut t, 1, 30 * S);
        t.submit(Op::EditService(t.virtuals[0].service));
        assert_eq!(drain(&mut t, 30 * S, &mut rec), (vec![], vec![key()]));
        let mut svc = t.virtuals[0].service;
        svc.flags = sys::IP_VS_SVC_F_SCHED_SH_PORT;
        answer(&mut t, 30 * S, svc, by_hand(), true, &mut rec);
        let (ops, reads) = drain(&mut t, 30 * S, &mut rec);
        assert!(reads.is_empty(), "{reads:?}");
        assert_eq!(
            weights_and_extras(&ops[..2]),
            [(0, by_hand()), (0, by_hand())]
        );
        assert!(
            matches!(ops[2..], [Op::EditService(s)] if s.flags == sys::IP_VS_SVC_F_SCHED_SH_PORT),
            "{ops:?}"
        );
    }

    /// An edit while a resync runs waits for it rather than reading again; `--dry-run`
    /// (no read to be had) sends at once.
    #[test]
    fn a_running_resync_is_the_read_and_dry_run_sends_at_once() {
        let mut t = table("");
        let mut rec = Rec::default();
        t.resync_us = 10 * S;
        t.next_resync = Time(30 * S);
        t.poll_read_back(Time(30 * S), false, || true);
        fail(&mut t, 0, 30 * S);
        assert_eq!(drain(&mut t, 30 * S, &mut rec), (vec![], vec![]));
        let svc = t.virtuals[0].service;
        let info = ServiceInfo {
            key: svc.key,
            af: libc::AF_INET as u16,
            service: svc,
            flags: 0,
        };
        t.read_back(IpvsEvent::Service(info), Time(30 * S), &mut rec);
        for r in [R1, R2] {
            let d = DestInfo {
                addr: r.parse().unwrap(),
                weight: 5,
                fwd: sys::IP_VS_CONN_F_MASQ,
                extra: by_hand(),
            };
            t.read_back(IpvsEvent::Dest(svc.key, d), Time(30 * S), &mut rec);
        }
        t.read_back(IpvsEvent::DumpDone { ok: true }, Time(30 * S), &mut rec);
        let (ops, reads) = drain(&mut t, 30 * S, &mut rec);
        assert_eq!(weights_and_extras(&ops), [(0, by_hand())]);
        assert!(reads.is_empty());

        let mut t = table("");
        fail(&mut t, 0, 30 * S);
        let op = t.next_fresh_op(Time(30 * S), &mut rec, |_| false);
        assert!(
            matches!(op, Some(Op::EditDest(_, d)) if d.weight == 0),
            "{op:?}"
        );
    }
}
