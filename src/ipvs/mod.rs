//! The IPVS side: the operations lvsmon makes on the kernel's table, the interface the daemon
//! drives them through, and its two implementations: `--dry-run` ([`DryRun`]) and the generic
//! netlink client ([`client::Netlink`]).
//!
//! Three layers, as in keepalived's libipvs → ipvswrapper → ipwrapper: [`sys`] holds the
//! kernel's definitions (bindgen over `linux/ip_vs.h`), [`wire`] builds and parses messages in
//! caller-owned buffers, [`client`] runs them on the event loop; the daemon above sees only
//! [`Op`]s and [`IpvsEvent`]s. Operations are small `Copy` values, so queuing, logging and
//! retrying them never allocates. An implementation answers each [`Ipvs::submit`] either at
//! once (dry-run) or later as an [`IpvsEvent::Done`] (netlink, when the kernel's ACK
//! arrives). Either way the daemon logs one `ipvs op=...` line per operation (lvsmon(8), IPVS)
//! when the result is known.

pub mod client;
pub mod daemon;
pub mod sys;
pub mod wire;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::{Registry, Token};

use crate::config::{Forward, ServiceKey};

/// Which operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Create a virtual service.
    AddService,
    /// Change a virtual service's scheduler, persistence or flags.
    EditService,
    /// Delete a virtual service.
    DelService,
    /// Add a destination (real server) to a service.
    AddDest,
    /// Change a destination's weight or forwarding.
    EditDest,
    /// Delete a destination.
    DelDest,
}

impl OpKind {
    /// Every kind, in the order lvsmon(8) lists them (metrics render one series per entry).
    pub const ALL: [OpKind; 6] = [
        OpKind::AddService,
        OpKind::EditService,
        OpKind::DelService,
        OpKind::AddDest,
        OpKind::EditDest,
        OpKind::DelDest,
    ];

    /// The name in `op=`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::AddService => "add-service",
            OpKind::EditService => "edit-service",
            OpKind::DelService => "del-service",
            OpKind::AddDest => "add-dest",
            OpKind::EditDest => "edit-dest",
            OpKind::DelDest => "del-dest",
        }
    }
}

/// A virtual service as IPVS holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Protocol/address/port or firewall mark.
    pub key: ServiceKey,
    /// Scheduler name, NUL-padded (IPVS allows 15 bytes).
    pub scheduler: [u8; 16],
    /// Persistence timeout, if any.
    pub persistent: Option<Duration>,
    /// The kernel's service flags other than persistence (`IP_VS_SVC_F_ONEPACKET`, the
    /// scheduler flags): what the last read said, with what the config owns laid over it.
    pub flags: u32,
    /// The persistence netmask in the kernel's form (IPv4: the mask's bytes in network order;
    /// IPv6: a prefix length). `None`: never read and not owned (sent as /32 or /128).
    pub netmask: Option<u32>,
}

impl Service {
    /// The scheduler name as text.
    pub fn scheduler(&self) -> &str {
        let n = self.scheduler.iter().position(|&b| b == 0).unwrap_or(16);
        std::str::from_utf8(&self.scheduler[..n]).unwrap_or("?")
    }

    /// A service with `scheduler` (cut to 15 bytes).
    pub fn new(key: ServiceKey, scheduler: &str, persistent: Option<Duration>) -> Service {
        let mut s = [0u8; 16];
        let b = scheduler.as_bytes();
        let n = b.len().min(15);
        s[..n].copy_from_slice(&b[..n]);
        Service {
            key,
            scheduler: s,
            persistent,
            flags: 0,
            netmask: None,
        }
    }
}

/// A destination as IPVS holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// The real server's address and port.
    pub addr: SocketAddr,
    /// Weight (0 = quiesced).
    pub weight: u32,
    /// Forwarding method.
    pub forward: Forward,
    /// Thresholds and tunnel settings.
    pub extra: DestExtra,
}

/// A destination's attributes other than weight and forwarding, in the kernel's numbers:
/// what the last read said, with what the config owns laid over it. Every `edit-dest` sends
/// them, since the kernel takes a missing one as 0 (lvsmon(8), IPVS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DestExtra {
    /// Upper connection threshold (0: none).
    pub u_thresh: u32,
    /// Lower connection threshold.
    pub l_thresh: u32,
    /// Tunnel type (`IP_VS_CONN_F_TUNNEL_TYPE_*`: 0 ipip, 1 gue, 2 gre).
    pub tun_type: u8,
    /// GUE port.
    pub tun_port: u16,
    /// Tunnel checksum flags (`IP_VS_TUNNEL_ENCAP_FLAG_*`).
    pub tun_flags: u16,
}

/// One change to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Create a service.
    AddService(Service),
    /// Change a service.
    EditService(Service),
    /// Delete a service.
    DelService(ServiceKey),
    /// Add a destination.
    AddDest(ServiceKey, Dest),
    /// Change a destination.
    EditDest(ServiceKey, Dest),
    /// Delete a destination.
    DelDest(ServiceKey, SocketAddr),
}

impl Op {
    /// Which kind of operation.
    pub fn kind(&self) -> OpKind {
        match self {
            Op::AddService(_) => OpKind::AddService,
            Op::EditService(_) => OpKind::EditService,
            Op::DelService(_) => OpKind::DelService,
            Op::AddDest(..) => OpKind::AddDest,
            Op::EditDest(..) => OpKind::EditDest,
            Op::DelDest(..) => OpKind::DelDest,
        }
    }

    /// The service concerned.
    pub fn service(&self) -> ServiceKey {
        match self {
            Op::AddService(s) | Op::EditService(s) => s.key,
            Op::DelService(k) | Op::AddDest(k, _) | Op::EditDest(k, _) | Op::DelDest(k, _) => *k,
        }
    }

    /// Writes the `ipvs op=... result=...` line body (without the result) into `w`.
    pub fn describe(&self, w: &mut impl io::Write) -> io::Result<()> {
        write!(
            w,
            "ipvs op={} virtual={}",
            self.kind().as_str(),
            self.service()
        )?;
        match self {
            Op::AddService(s) | Op::EditService(s) => {
                write!(w, " scheduler={}", s.scheduler())?;
                if let Some(p) = s.persistent {
                    write!(w, " persistent={}", p.as_secs())?;
                }
            }
            Op::DelService(_) => {}
            Op::AddDest(_, d) | Op::EditDest(_, d) => write!(
                w,
                " real={} weight={} forward={}",
                d.addr,
                d.weight,
                d.forward.as_str()
            )?,
            Op::DelDest(_, a) => write!(w, " real={a}")?,
        }
        Ok(())
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpResult {
    /// The kernel accepted it (or it was already so: EEXIST on add, ENOENT on delete).
    Ok,
    /// `--dry-run`: nothing was changed.
    DryRun,
    /// The kernel refused it with this errno.
    Error(i32),
}

impl OpResult {
    /// Writes `result=ok`, `result=dry-run` or `result=error errno=N`.
    pub fn describe(&self, w: &mut impl io::Write) -> io::Result<()> {
        match self {
            OpResult::Ok => write!(w, "result=ok"),
            OpResult::DryRun => write!(w, "result=dry-run"),
            OpResult::Error(e) => write!(w, "result=error errno={e}"),
        }
    }

    /// The `result` label value for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            OpResult::Ok => "ok",
            OpResult::DryRun => "dry-run",
            OpResult::Error(_) => "error",
        }
    }
}

/// What the IPVS side reports back to the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpvsEvent {
    /// An operation finished.
    Done(Op, OpResult),
    /// A read-back found this service in the table.
    Service(wire::ServiceInfo),
    /// A read-back found this destination in the table, under this service.
    Dest(ServiceKey, wire::DestInfo),
    /// A read-back ended (`ok` false: it failed part-way and says nothing reliable).
    DumpDone {
        /// Whether every part of the read-back arrived.
        ok: bool,
    },
    /// A read of one service ([`Ipvs::start_read`]) ended; its entries came as
    /// [`IpvsEvent::Service`] and [`IpvsEvent::Dest`] (`ok` false: it failed part-way).
    ReadDone {
        /// Whether the service and its destinations were read.
        ok: bool,
    },
}

/// A way to change the IPVS table. Implementations must not allocate or block in any method
/// the event loop calls (everything but construction).
pub trait Ipvs {
    /// Starts `op`. Returns its result if it is known at once; `None` means the result will
    /// come as an [`IpvsEvent::Done`] from [`Ipvs::on_ready`] or [`Ipvs::flush`].
    fn submit(&mut self, op: Op) -> Option<OpResult>;

    /// Registers the implementation's socket, if it has one, with the loop.
    ///
    /// # Errors
    /// The registration failed.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let _ = (registry, token);
        Ok(())
    }

    /// The socket is readable: hand every reply that arrived to `out`, then send what waits.
    fn on_ready(&mut self, out: &mut dyn FnMut(IpvsEvent)) {
        let _ = out;
    }

    /// Sends what waits (called once per loop turn after new submissions).
    fn flush(&mut self, out: &mut dyn FnMut(IpvsEvent)) {
        let _ = out;
    }

    /// How many more operations [`Ipvs::submit`] takes now (the loop keeps the rest for a
    /// later turn).
    fn room(&self) -> usize {
        usize::MAX
    }

    /// True when requests wait for room to be sent (the loop should come back soon).
    fn pending(&self) -> bool {
        false
    }

    /// Starts reading the table back (services, then the managed services' destinations),
    /// reported as [`IpvsEvent::Service`], [`IpvsEvent::Dest`] and [`IpvsEvent::DumpDone`].
    /// Returns false if a read-back is already running or the implementation has no table.
    fn start_dump(&mut self) -> bool {
        false
    }

    /// Starts reading the one service `key` and its destinations back (`GET_SERVICE` for it,
    /// `GET_DEST` for its destinations), reported as [`IpvsEvent::Service`],
    /// [`IpvsEvent::Dest`] and [`IpvsEvent::ReadDone`]. Returns false if a read-back or
    /// another read is running or the implementation has no table.
    fn start_read(&mut self, key: ServiceKey) -> bool {
        let _ = key;
        false
    }

    /// The weight of `dest` under `service` in the table as it was at startup, for the
    /// initial-state rule of lvsmon(8), DECISIONS.
    fn existing_weight(&self, service: ServiceKey, dest: SocketAddr) -> Option<u32> {
        let _ = (service, dest);
        None
    }

    /// The thresholds and tunnel settings of `dest` under `service` in the table as it was at
    /// startup.
    fn existing_dest(&self, service: ServiceKey, dest: SocketAddr) -> Option<DestExtra> {
        let _ = (service, dest);
        None
    }

    /// `service` as it was in the table at startup.
    fn existing_service(&self, key: ServiceKey) -> Option<Service> {
        let _ = key;
        None
    }

    /// Drops the startup snapshot once the daemon has adopted it.
    fn forget_snapshot(&mut self) {}

    /// A reload changed the managed services (with their address families); `queue_cap`
    /// is the new bound on waiting operations. Read-backs from now on list these services.
    fn reconfigure(&mut self, managed: &[(ServiceKey, u16)], queue_cap: usize) {
        let _ = (managed, queue_cap);
    }

    /// True when the implementation changes nothing (`--dry-run`).
    fn is_dry_run(&self) -> bool {
        false
    }
}

/// `--dry-run`: assumes an empty table at startup and changes nothing; every operation is
/// answered at once with [`OpResult::DryRun`] and logged by the daemon.
#[derive(Debug, Default)]
pub struct DryRun {
    /// Operations seen, per kind (index as in [`OpKind::ALL`]).
    pub counts: [u64; 6],
}

impl Ipvs for DryRun {
    fn submit(&mut self, op: Op) -> Option<OpResult> {
        let i = OpKind::ALL
            .iter()
            .position(|k| *k == op.kind())
            .unwrap_or(0);
        self.counts[i] += 1;
        Some(OpResult::DryRun)
    }

    fn is_dry_run(&self) -> bool {
        true
    }
}

/// The services lvsmon manages, each with its address family: a fwmark service is IPv6 when
/// all of its reals are, IPv4 otherwise. What [`client::Netlink::open`] is given, at startup
/// and at each reload.
pub fn managed_services(plan: &crate::config::Plan) -> Vec<(ServiceKey, u16)> {
    plan.virtuals
        .iter()
        .map(|v| {
            let af = match v.key {
                ServiceKey::Inet(_, a) if a.is_ipv6() => libc::AF_INET6,
                ServiceKey::Inet(..) => libc::AF_INET,
                ServiceKey::Fwmark(_) => {
                    let reals = &plan.reals[v.reals.clone()];
                    if !reals.is_empty() && reals.iter().all(|r| r.addr.is_ipv6()) {
                        libc::AF_INET6
                    } else {
                        libc::AF_INET
                    }
                }
            };
            (v.key, af as u16)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Proto;

    fn line(op: &Op, r: OpResult) -> String {
        let mut v = Vec::new();
        op.describe(&mut v).unwrap();
        v.push(b' ');
        r.describe(&mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn lines_match_the_documented_form() {
        let svc = ServiceKey::Inet(Proto::Tcp, "10.0.0.1:80".parse().unwrap());
        let d = Dest {
            addr: "192.168.1.10:80".parse().unwrap(),
            weight: 0,
            forward: Forward::Masq,
            extra: DestExtra::default(),
        };
        assert_eq!(
            line(&Op::EditDest(svc, d), OpResult::Ok),
            "ipvs op=edit-dest virtual=tcp:10.0.0.1:80 real=192.168.1.10:80 weight=0 forward=masq result=ok"
        );
        assert_eq!(
            line(
                &Op::DelDest(ServiceKey::Fwmark(42), d.addr),
                OpResult::Error(22)
            ),
            "ipvs op=del-dest virtual=fwmark:42 real=192.168.1.10:80 result=error errno=22"
        );
        let s = Service::new(
            ServiceKey::Inet(Proto::Udp, "[2001:db8::1]:53".parse().unwrap()),
            "wlc",
            Some(Duration::from_secs(300)),
        );
        assert_eq!(
            line(&Op::AddService(s), OpResult::DryRun),
            "ipvs op=add-service virtual=udp:[2001:db8::1]:53 scheduler=wlc persistent=300 result=dry-run"
        );
    }
}
