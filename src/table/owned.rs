//! The IPVS attributes lvsmon does not decide (lvsmon(8), IPVS; lvsmon.conf(5), IPVS
//! ATTRIBUTES): connection thresholds, tunnel settings, persistence netmask, one-packet
//! scheduling and scheduler flags.
//!
//! The kernel takes a missing threshold as 0 and `SET_SERVICE` replaces the flags and the
//! netmask, so every edit sends a whole entry. For each attribute the entry carries what the
//! kernel last reported (at startup, at each read-back) unless the config owns it
//! (`u-threshold`, `persistence-netmask`, ...), in which case the config's value goes, and a
//! read-back that finds another value repairs it like a weight changed by hand.

use std::net::SocketAddr;

use super::Table;
use crate::config::director::{Tunnel, TunnelCsum, TunnelKind, SCHED_FALLBACK, SCHED_PORT};
use crate::config::{Forward, Plan, ServiceKey};
use crate::ipvs::{sys, Dest, DestExtra, Service};

const OWN_U: u8 = 1;
const OWN_L: u8 = 2;
const OWN_TUN: u8 = 4;

/// One real's thresholds and tunnel settings: what the kernel said (its 13 bytes, unpadded),
/// and which of them the config owns (its values are in the table's short list of owning
/// reals, `Owned`: most reals own none, so they pay 14 bytes, not 36).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RealAttrs {
    seen: Packed,
    /// `OWN_*` bits: which fields of the owned values the config sets.
    own: u8,
}

/// A [`DestExtra`] in its 13 bytes (machine byte order), without the padding to 16.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Packed([u8; 13]);

impl Packed {
    fn of(e: DestExtra) -> Packed {
        let mut b = [0u8; 13];
        b[0..4].copy_from_slice(&e.u_thresh.to_ne_bytes());
        b[4..8].copy_from_slice(&e.l_thresh.to_ne_bytes());
        b[8] = e.tun_type;
        b[9..11].copy_from_slice(&e.tun_port.to_ne_bytes());
        b[11..13].copy_from_slice(&e.tun_flags.to_ne_bytes());
        Packed(b)
    }

    fn get(self) -> DestExtra {
        let b = self.0;
        DestExtra {
            u_thresh: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            l_thresh: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            tun_type: b[8],
            tun_port: u16::from_ne_bytes([b[9], b[10]]),
            tun_flags: u16::from_ne_bytes([b[11], b[12]]),
        }
    }
}

/// The owning reals' own values, by real index (ascending): `(real, values)`.
pub(crate) type Owned = Box<[(u32, DestExtra)]>;

/// The values of a real that owns none.
const NONE_OWNED: DestExtra = DestExtra {
    u_thresh: 0,
    l_thresh: 0,
    tun_type: 0,
    tun_port: 0,
    tun_flags: 0,
};

impl RealAttrs {
    fn of(u: Option<u32>, l: Option<u32>, tunnel: Option<Tunnel>) -> (RealAttrs, DestExtra) {
        let mut a = RealAttrs::default();
        let mut o = NONE_OWNED;
        if let Some(u) = u {
            a.own |= OWN_U;
            o.u_thresh = u;
        }
        if let Some(l) = l {
            a.own |= OWN_L;
            o.l_thresh = l;
        }
        if let Some(t) = tunnel {
            a.own |= OWN_TUN;
            o.tun_type = match t.kind {
                TunnelKind::Ipip => sys::IP_VS_CONN_F_TUNNEL_TYPE_IPIP,
                TunnelKind::Gue => sys::IP_VS_CONN_F_TUNNEL_TYPE_GUE,
                TunnelKind::Gre => sys::IP_VS_CONN_F_TUNNEL_TYPE_GRE,
            };
            o.tun_port = t.port;
            o.tun_flags = match t.csum {
                TunnelCsum::None => sys::IP_VS_TUNNEL_ENCAP_FLAG_NOCSUM,
                TunnelCsum::Csum => sys::IP_VS_TUNNEL_ENCAP_FLAG_CSUM,
                TunnelCsum::Remcsum => sys::IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM,
            };
        }
        (a, o)
    }

    /// What an edit sends: the config's (`o`, the real's owned values) where it owns, the
    /// kernel's last word elsewhere.
    pub(crate) fn effective(&self, o: &DestExtra) -> DestExtra {
        let s = &self.seen.get();
        let tun = self.own & OWN_TUN != 0;
        DestExtra {
            u_thresh: if self.own & OWN_U != 0 {
                o.u_thresh
            } else {
                s.u_thresh
            },
            l_thresh: if self.own & OWN_L != 0 {
                o.l_thresh
            } else {
                s.l_thresh
            },
            tun_type: if tun { o.tun_type } else { s.tun_type },
            tun_port: if tun { o.tun_port } else { s.tun_port },
            tun_flags: if tun { o.tun_flags } else { s.tun_flags },
        }
    }

    /// The kernel's entry differs from the config where it owns (tunnel settings matter only
    /// for a tunnelled destination).
    fn drifted(&self, o: &DestExtra, forward: Forward) -> bool {
        let e = self.effective(o);
        let s = &self.seen.get();
        e.u_thresh != s.u_thresh
            || e.l_thresh != s.l_thresh
            || (forward == Forward::Tunnel
                && (e.tun_type, e.tun_port, e.tun_flags) != (s.tun_type, s.tun_port, s.tun_flags))
    }
}

/// One virtual's flags and persistence netmask: what the kernel said, what the config owns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SvcAttrs {
    seen_flags: u32,
    seen_netmask: Option<u32>,
    /// Flag bits the config owns, and their values.
    own_mask: u32,
    own_flags: u32,
    own_netmask: Option<u32>,
}

impl SvcAttrs {
    /// Lays these attributes over `s` (scheduler and persistence are the config's already).
    pub(super) fn apply_to(&self, s: &mut Service) {
        s.flags = (self.seen_flags & !self.own_mask) | self.own_flags;
        s.netmask = self.own_netmask.or(self.seen_netmask);
    }

    /// `have` (read from the kernel) differs from the config where it owns.
    fn drifted(&self, have: &Service) -> bool {
        have.flags & self.own_mask != self.own_flags
            || self.own_netmask.is_some_and(|m| have.netmask != Some(m))
    }
}

/// The kernel's form of a persistence netmask of `prefix` bits.
fn netmask_of(prefix: u8, v6: bool) -> u32 {
    if v6 {
        prefix.into()
    } else {
        let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        u32::from_ne_bytes(m.to_be_bytes())
    }
}

/// Every real's and every virtual's attributes as `plan` owns them (nothing seen yet).
pub(crate) fn from_plan(plan: &Plan) -> (Box<[RealAttrs]>, Owned, Box<[SvcAttrs]>) {
    let mut owned = Vec::new();
    let reals = plan
        .reals
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (a, o) = RealAttrs::of(r.u_threshold, r.l_threshold, r.tunnel);
            if a.own != 0 {
                owned.push((i as u32, o));
            }
            a
        })
        .collect();
    let managed = crate::ipvs::managed_services(plan);
    let virtuals = plan
        .virtuals
        .iter()
        .zip(&managed)
        .map(|(v, (_, af))| {
            let mut a = SvcAttrs::default();
            if let Some(one) = v.one_packet {
                a.own_mask |= sys::IP_VS_SVC_F_ONEPACKET;
                if one {
                    a.own_flags |= sys::IP_VS_SVC_F_ONEPACKET;
                }
            }
            if let Some(bits) = v.sched_flags {
                a.own_mask |= SCHED_FALLBACK | SCHED_PORT | sys::IP_VS_SVC_F_SCHED3;
                a.own_flags |= bits;
            }
            a.own_netmask = v
                .netmask
                .map(|p| netmask_of(p, *af == libc::AF_INET6 as u16));
            a
        })
        .collect();
    (reals, owned.into_boxed_slice(), virtuals)
}

impl Table {
    /// Real `r`'s owned values (those of a real that owns none when it owns none).
    fn owned_of(&self, r: usize) -> &DestExtra {
        if self.real_attrs[r].own == 0 {
            return &NONE_OWNED;
        }
        match self
            .real_owned
            .binary_search_by_key(&(r as u32), |&(k, _)| k)
        {
            Ok(i) => &self.real_owned[i].1,
            Err(_) => &NONE_OWNED,
        }
    }

    /// Real `r`'s destination with `weight` and `forward`, and the thresholds and tunnel
    /// settings an edit must carry.
    pub(super) fn dest_for(&self, r: usize, weight: u32, forward: Forward) -> Dest {
        Dest {
            addr: self.reals[r].addr.get(),
            weight,
            forward,
            extra: self.real_attrs[r].effective(self.owned_of(r)),
        }
    }

    /// The kernel reported real `r`'s entry with `extra`.
    pub(super) fn saw_dest(&mut self, r: usize, extra: DestExtra) {
        self.real_attrs[r].seen = Packed::of(extra);
    }

    /// The kernel reported virtual `v`'s service as `have`: its flags and netmask are what
    /// later edits keep.
    pub(super) fn saw_service(&mut self, v: usize, have: &Service) {
        let a = &mut self.svc_attrs[v];
        a.seen_flags = have.flags;
        a.seen_netmask = have.netmask;
        let a = *a;
        a.apply_to(&mut self.virtuals[v].service);
    }

    /// Virtual `v`'s service in the table (`have`) differs from what the config owns.
    pub(super) fn service_drifted(&self, v: usize, have: &Service) -> bool {
        self.svc_attrs[v].drifted(have)
    }

    /// Real `r`'s entry in the table differs from what the config owns.
    pub(super) fn dest_drifted(&self, r: usize) -> bool {
        let forward = self.setups[self.reals[r].setup as usize].forward;
        self.real_attrs[r].drifted(self.owned_of(r), forward)
    }

    /// Startup: the thresholds and tunnel settings the table had (`extra` of a service and
    /// destination), before anything is adopted.
    pub(crate) fn seed_dest_extras(
        &mut self,
        extra: impl Fn(ServiceKey, SocketAddr) -> Option<DestExtra>,
    ) {
        for r in 0..self.reals.len() {
            let key = self.virtuals[self.reals[r].virt as usize].key;
            if let Some(e) = extra(key, self.reals[r].addr.get()) {
                self.real_attrs[r].seen = Packed::of(e);
            }
        }
    }

    /// A reload: what the kernel last said of the services and destinations kept (new index,
    /// old index) carries over. Returns whether the config's own values changed.
    pub(super) fn carry_service_attrs(&mut self, v: usize, old: &Table, ov: usize) -> bool {
        let o = old.svc_attrs[ov];
        let a = &mut self.svc_attrs[v];
        a.seen_flags = o.seen_flags;
        a.seen_netmask = o.seen_netmask;
        let changed =
            (a.own_mask, a.own_flags, a.own_netmask) != (o.own_mask, o.own_flags, o.own_netmask);
        let a = *a;
        a.apply_to(&mut self.virtuals[v].service);
        changed
    }

    /// As [`Table::carry_service_attrs`], for real `r` (old index `or`).
    pub(super) fn carry_dest_attrs(&mut self, r: usize, old: &Table, or: usize) -> bool {
        self.real_attrs[r].seen = old.real_attrs[or].seen;
        self.real_attrs[r].effective(self.owned_of(r))
            != old.real_attrs[or].effective(old.owned_of(or))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Time;
    use crate::ids::RealId;
    use crate::ipvs::wire::{DestInfo, ServiceInfo};
    use crate::ipvs::{IpvsEvent, Op};
    use crate::monitor::event::Event;
    use crate::plugins::{Detail, Reason, Verdict};
    use crate::table::Out;

    #[derive(Default)]
    struct Drifts(Vec<String>);

    impl Out for Drifts {
        fn event(&mut self, _: &Event, _: u32, _: Option<(u32, u32)>) {}
        fn drift(&mut self, _: ServiceKey, _: Option<SocketAddr>, what: &str) {
            self.0.push(what.to_string());
        }
        fn resynced(&mut self) {}
    }

    const V: &str = "192.0.2.1:80";
    const R1: &str = "198.51.100.1:80";
    const S: u64 = 1_000_000;

    fn key() -> ServiceKey {
        ServiceKey::Inet(crate::config::Proto::Tcp, V.parse().unwrap())
    }

    fn table(settings: &str, real: &str) -> Table {
        let text = format!(
            "resync 1s\nfall 1\nrise 1\nvirtual tcp {V} {{\n{settings}\n real {R1} weight 5 {{\n{real}\n }}\n}}\n"
        );
        let doc =
            crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
                .unwrap();
        Table::new(&crate::config::plan::plan(&doc, None).unwrap(), Time::ZERO)
    }

    fn ops(t: &mut Table) -> Vec<Op> {
        std::iter::from_fn(|| t.next_op()).collect()
    }

    fn by_hand() -> DestExtra {
        // `ipvsadm -e ... -x 100 -y 50`, on a GUE tunnel.
        DestExtra {
            u_thresh: 100,
            l_thresh: 50,
            tun_type: 1,
            tun_port: 6080,
            tun_flags: 1,
        }
    }

    /// A read-back finding the service as `svc` and R1 at `weight` with `extra`.
    fn read_back(t: &mut Table, now: u64, svc: Service, weight: u32, extra: DestExtra) -> Drifts {
        let mut out = Drifts::default();
        t.poll_read_back(Time(now), false, || true);
        let info = ServiceInfo {
            key: svc.key,
            af: libc::AF_INET as u16,
            service: svc,
            flags: 0,
        };
        t.read_back(IpvsEvent::Service(info), Time(now), &mut out);
        let d = DestInfo {
            addr: R1.parse().unwrap(),
            weight,
            fwd: sys::IP_VS_CONN_F_TUNNEL,
            extra,
        };
        t.read_back(IpvsEvent::Dest(svc.key, d), Time(now), &mut out);
        t.read_back(IpvsEvent::DumpDone { ok: true }, Time(now), &mut out);
        out
    }

    /// Every destination edit (quiesce, restore) carries the thresholds and tunnel settings
    /// the kernel last reported: they used to go as zeros, wiping what was set by hand.
    #[test]
    fn edits_keep_what_the_config_does_not_own() {
        let mut t = table("", "  forward tunnel");
        t.seed_dest_extras(|_, _| Some(by_hand()));
        t.adopt_at_start(|_| None, |_, _| Some(5));
        let _ = ops(&mut t);
        let mut out = Drifts::default();
        let fail = Verdict::Fail(Reason::ConnectRefused, Detail::EMPTY);
        t.record(RealId(0), fail, 10, Time(S / 2), &mut out);
        let quiesce = ops(&mut t);
        assert!(
            matches!(quiesce[..], [Op::EditDest(_, d)] if d.weight == 0 && d.extra == by_hand()),
            "{quiesce:?}"
        );
        // Changed by hand again; the next read-back learns it, the restore keeps it.
        let later = DestExtra {
            u_thresh: 200,
            ..by_hand()
        };
        let svc = t.virtuals[0].service;
        let out = read_back(&mut t, 2 * S, svc, 0, later);
        assert!(out.0.is_empty(), "{:?}", out.0);
        assert!(ops(&mut t).is_empty());
        t.record(
            RealId(0),
            Verdict::Pass,
            10,
            Time(3 * S),
            &mut Drifts::default(),
        );
        let restore = ops(&mut t);
        assert!(
            matches!(restore[..], [Op::EditDest(_, d)] if d.weight == 5 && d.extra == later),
            "{restore:?}"
        );
    }

    /// What the config owns wins, at the first edit and when a read-back finds it changed.
    #[test]
    fn the_config_wins_where_it_owns() {
        let mut t = table("", "  u-threshold 10\n  forward tunnel gre csum");
        t.seed_dest_extras(|_, _| Some(by_hand()));
        t.adopt_at_start(|_| None, |_, _| Some(5));
        let _ = ops(&mut t);
        let want = DestExtra {
            u_thresh: 10,
            l_thresh: 50,
            tun_type: 2,
            tun_port: 0,
            tun_flags: 1,
        };
        let svc = t.virtuals[0].service;
        let out = read_back(&mut t, S, svc, 5, by_hand());
        assert_eq!(out.0, ["attributes changed"]);
        let repair = ops(&mut t);
        assert!(
            matches!(repair[..], [Op::EditDest(_, d)] if d.weight == 5 && d.extra == want),
            "{repair:?}"
        );
        // Once the kernel agrees, nothing more.
        let out = read_back(&mut t, 2 * S, svc, 5, want);
        assert!(out.0.is_empty() && ops(&mut t).is_empty());
    }

    /// A service edit keeps the kernel's flags and netmask (`sh-port`, `-M`, one-packet)
    /// unless the config owns them.
    #[test]
    fn service_edits_keep_flags_and_netmask() {
        let mut t = table("  scheduler sh\n  persistent 60", "");
        let mut have = Service::new(key(), "rr", Some(std::time::Duration::from_secs(60)));
        have.flags = sys::IP_VS_SVC_F_SCHED_SH_PORT | sys::IP_VS_SVC_F_ONEPACKET;
        have.netmask = Some(netmask_of(24, false));
        t.adopt_at_start(|_| Some(have), |_, _| Some(5));
        let o = ops(&mut t);
        assert!(
            matches!(o[..], [Op::EditService(s)] if s.scheduler() == "sh"
                && s.flags == have.flags && s.netmask == have.netmask),
            "{o:?}"
        );

        let mut t = table(
            "  scheduler sh\n  persistent 60\n  sched-flags sh-fallback\n  persistence-netmask 16",
            "",
        );
        have.scheduler = Service::new(key(), "sh", None).scheduler;
        t.adopt_at_start(|_| Some(have), |_, _| Some(5));
        let o = ops(&mut t);
        let flags = sys::IP_VS_SVC_F_SCHED_SH_FALLBACK | sys::IP_VS_SVC_F_ONEPACKET;
        assert!(
            matches!(o[..], [Op::EditService(s)] if s.flags == flags
                && s.netmask == Some(netmask_of(16, false))),
            "{o:?}"
        );
    }

    /// A reload keeps what the kernel said; an owned value the reload changes is sent.
    #[test]
    fn reload_carries_what_the_kernel_said() {
        let mut old = table("", "");
        old.seed_dest_extras(|_, _| Some(by_hand()));
        old.adopt_at_start(|_| None, |_, _| Some(5));
        let _ = ops(&mut old);
        let mut new = table("", "  l-threshold 7");
        let mut ch = crate::table::Changes::default();
        new.take_over(
            &mut old,
            Time(S),
            false,
            (&[], &[]),
            &mut ch,
            |_, _| {},
            &mut Drifts::default(),
        );
        let o = ops(&mut new);
        let want = DestExtra {
            l_thresh: 7,
            ..by_hand()
        };
        assert!(
            matches!(o[..], [Op::EditDest(_, d)] if d.weight == 5 && d.extra == want),
            "{o:?}"
        );
    }

    #[test]
    fn netmasks_in_the_kernels_form() {
        assert_eq!(netmask_of(32, false), u32::MAX);
        assert_eq!(netmask_of(24, false).to_ne_bytes(), [255, 255, 255, 0]);
        assert_eq!(netmask_of(0, false), 0);
        assert_eq!(netmask_of(64, true), 64);
    }

    /// A real that owns nothing pays for what the kernel said only (14 bytes, not 36);
    /// only the owning ones are in the table's list, found by index.
    #[test]
    fn only_owning_reals_hold_owned_values() {
        assert!(std::mem::size_of::<RealAttrs>() <= 14);
        let (a, o) = RealAttrs::of(None, None, None);
        assert_eq!((a.own, o), (0, NONE_OWNED));
        let (a, o) = RealAttrs::of(None, Some(7), None);
        assert_eq!((a.own, o.l_thresh), (OWN_L, 7));
        let e = DestExtra {
            u_thresh: u32::MAX - 1,
            l_thresh: 0x0102_0304,
            tun_type: 2,
            tun_port: 65_535,
            tun_flags: 0x0203,
        };
        assert_eq!(Packed::of(e).get(), e);
    }

    #[test]
    fn owned_fields_win_the_others_are_the_kernels() {
        let (mut a, o) = RealAttrs::of(Some(10), None, None);
        let seen = DestExtra {
            u_thresh: 100,
            l_thresh: 50,
            tun_type: 1,
            tun_port: 6080,
            tun_flags: 1,
        };
        a.seen = Packed::of(seen);
        assert_eq!(a.seen.get(), seen);
        assert_eq!(
            a.effective(&o),
            DestExtra {
                u_thresh: 10,
                ..seen
            }
        );
        assert!(a.drifted(&o, Forward::Route));
        a.seen = Packed::of(DestExtra {
            u_thresh: 10,
            ..seen
        });
        assert!(!a.drifted(&o, Forward::Tunnel));
    }
}
