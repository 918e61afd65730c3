//! The policy: what lvsmon decides from check results, operator commands and read-backs of
//! the IPVS table, with the time passed in. It holds the real servers and virtual services
//! (their settings, health, drain, quorum and sorry server), the IPVS operations decided and
//! not yet handed over ([`outbox`]), the reconciliation of a read-back with what was decided
//! (drift repair, adoption of what a reload added), and the hand-over of running state to
//! the tables of a reloaded configuration.
//!
//! It knows no socket, no clock and no netlink: its inputs are [`Table::record`],
//! [`Table::set_drained`], [`Table::op_done`], [`Table::read_back`] and the start-up and
//! reload hand-overs; its outputs are events (through [`Out`], which the loop implements:
//! log line, `notify-fifo`, notify command) and IPVS operations ([`Table::next_op`]).
//! Nothing here allocates after [`Table::new`], except a reload's hand-over.

mod outbox;
mod owned;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::clock::{micros, Time};
use crate::config::{Forward, OnDown, Plan, ServiceKey};
use crate::ids::RealId;
use crate::ipvs::{Dest, DestExtra, IpvsEvent, Op, OpResult, Service};
use crate::monitor::event::{Event, EventKind};
use crate::monitor::health::{Change, Health, Rules, State};
use crate::plugins::agent::AgentReply;
use crate::plugins::{Detail, Reason, Verdict};
use outbox::{Outbox, Slot, What};

/// After a failed IPVS operation, the table is read back and repaired this soon.
const RESYNC_AFTER_ERROR_US: u64 = 2_000_000;

/// `Setup::notify` and `Virtual::notify` when no notify command is set.
pub(crate) const NO_NOTIFY: u32 = u32::MAX;

/// Where the table's decisions go besides IPVS: the loop logs them, writes them to
/// `notify-fifo`, queues their notify command and counts them.
pub trait Out {
    /// An event: a real's transition (UP, DOWN, DRAINED, UNDRAINED) or a virtual's quorum
    /// event. `notify` is the index of its notify command ([`NO_NOTIFY`]: none); `quorum`
    /// is (UP reals, quorum) for the quorum events.
    fn event(&mut self, ev: &Event, notify: u32, quorum: Option<(u32, u32)>);
    /// A difference between the kernel's table and the decisions, found by a read-back and
    /// being repaired.
    fn drift(&mut self, key: ServiceKey, real: Option<SocketAddr>, what: &str);
    /// A read-back of the table completed and was reconciled.
    fn resynced(&mut self);
}

/// A notify command's argv, as the plan has it.
pub(crate) type Command = Vec<Vec<u8>>;

/// What a reload changed, for its log line and reply.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Changes {
    /// Reals kept with their state (of which `changed` had settings changed).
    pub kept: usize,
    pub changed: usize,
    /// Reals added and removed.
    pub added: usize,
    pub removed: usize,
    /// Virtual services added and removed.
    pub virtuals_added: usize,
    pub virtuals_removed: usize,
    /// Probes kept on their grid (of which `running` kept a check in flight).
    pub probes_kept: usize,
    pub running: usize,
    /// Checks in flight that could not be carried over (no receive buffer): they run
    /// again at their next grid point.
    pub restarted: usize,
    /// Operations queued for IPVS by the reload itself.
    pub ops: usize,
}

/// A real server's settings from the file, shared by every real written the same (most
/// reals of a virtual service), so each real carries an index instead of 36 bytes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Setup {
    pub(crate) weight: u32,
    pub(crate) forward: Forward,
    pub(crate) on_down: OnDown,
    pub(crate) notify: u32,
    pub(crate) rules: Rules,
}

impl Setup {
    /// Slots of its `within` window in `rings` (`fall` of them when `within` is set).
    pub(crate) fn ring_len(&self) -> u32 {
        if self.rules.within_us > 0 {
            self.rules.fall
        } else {
            0
        }
    }
}

/// A destination address as a real server keeps it: 20 bytes where `SocketAddr` takes 32.
/// It holds no IPv6 flow label or scope, which no destination has (the planner refuses
/// link-local addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) ip: [u8; 16],
    pub(crate) port: u16,
    v6: bool,
}

impl Addr {
    pub(crate) fn new(a: SocketAddr) -> Addr {
        let (ip, v6) = match a.ip() {
            std::net::IpAddr::V4(v4) => {
                let mut ip = [0u8; 16];
                ip[..4].copy_from_slice(&v4.octets());
                (ip, false)
            }
            std::net::IpAddr::V6(v6) => (v6.octets(), true),
        };
        Addr {
            ip,
            port: a.port(),
            v6,
        }
    }

    #[inline]
    pub(crate) fn get(self) -> SocketAddr {
        let ip = if self.v6 {
            std::net::IpAddr::from(self.ip)
        } else {
            std::net::IpAddr::from([self.ip[0], self.ip[1], self.ip[2], self.ip[3]])
        };
        SocketAddr::new(ip, self.port)
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// `Real::table` when the destination is not in the table (no weight is `u32::MAX`:
/// the kernel's weights are non-negative `i32`s).
pub(crate) const ABSENT: u32 = u32::MAX;

/// One real server behind one virtual service: static settings and decision state.
#[derive(Debug)]
pub(crate) struct Real {
    pub(crate) addr: Addr,
    pub(crate) virt: u32,
    /// Index in `setups`.
    pub(crate) setup: u32,
    /// Where its `within` window starts in `rings` ([`Setup::ring_len`] slots).
    pub(crate) ring: u32,
    pub(crate) health: Health,
    /// The weight IPVS has for this destination, [`ABSENT`] when absent (see
    /// [`Real::table`]).
    pub(crate) table: u32,
    pub(crate) checks: u64,
    pub(crate) failures: u64,
    pub(crate) transitions: u32,
    pub(crate) last_reason: Option<Reason>,
    pub(crate) last_detail: Detail,
    pub(crate) last_latency_us: u32,
    /// Taken out of service by an operator (`lvsmon drain`): weight 0 whatever its checks say.
    pub(crate) drained: bool,
    /// `table` is known: read at startup, or from the first read-back after a reload added
    /// this real. Until then no operation is sent for it.
    pub(crate) adopted: bool,
}

impl Real {
    /// The weight IPVS has for this destination, `None` when it is not in the table.
    pub(crate) fn table(&self) -> Option<u32> {
        (self.table != ABSENT).then_some(self.table)
    }

    pub(crate) fn set_table(&mut self, w: Option<u32>) {
        self.table = w.unwrap_or(ABSENT);
    }
}

/// Each virtual's reals (indices, within the virtual's range) sorted by destination.
fn sorted_by_dest(reals: &[Real], virtuals: &[Virtual]) -> Box<[u32]> {
    let mut by_dest: Box<[u32]> = (0..reals.len() as u32).collect();
    for v in virtuals {
        by_dest[v.reals.0 as usize..v.reals.1 as usize]
            .sort_unstable_by_key(|&x| reals[x as usize].addr.get());
    }
    by_dest
}

/// A virtual service's identity and quorum bookkeeping.
#[derive(Debug)]
pub(crate) struct Virtual {
    pub(crate) key: ServiceKey,
    pub(crate) service: Service,
    pub(crate) quorum: u32,
    pub(crate) sorry: Option<SocketAddr>,
    pub(crate) notify: u32,
    /// Its reals: a range of real indices.
    pub(crate) reals: (u32, u32),
    /// Reals UP, and reals not yet decided.
    pub(crate) up: u32,
    pub(crate) unknown: u32,
    pub(crate) quorum_lost: bool,
    pub(crate) sorry_in_table: bool,
    /// The table's view of this service is known (see [`Real::adopted`]).
    pub(crate) adopted: bool,
}

/// The policy layer: every real server and virtual service, what IPVS is to be told, and
/// what a read-back of the kernel's table found.
pub struct Table {
    reals: Box<[Real]>,
    /// Settings shared by reals (see [`Setup`]).
    setups: Box<[Setup]>,
    /// The `within` windows of the reals that have one.
    rings: Box<[u64]>,
    virtuals: Box<[Virtual]>,
    /// IPVS operations decided, handed to the IPVS side by the loop ([`Table::next_op`]).
    outbox: Outbox,
    /// Each virtual's reals sorted by destination (indices into `reals`, in each virtual's
    /// range of them), so a read-back or a result finds its real by binary search: 4 bytes
    /// a real, where a hash map of (virtual, destination) took about 47.
    by_dest: Box<[u32]>,
    /// service → virtual index.
    virt_index: HashMap<ServiceKey, u32>,
    /// What the running read-back found: per real its weight ([`ABSENT`]: not there), per
    /// virtual its service and whether its sorry server is there.
    seen: Box<[u32]>,
    svc_seen: Box<[Option<Service>]>,
    sorry_seen: Box<[bool]>,
    /// Reals and virtuals lvsmon itself changed while the read-back ran: what it saw of them
    /// may predate the change, so they wait for the next one.
    touched_real: Box<[bool]>,
    touched_virt: Box<[bool]>,
    /// Resync period (0 = never), next resync, and whether a read-back is running.
    resync_us: u64,
    next_resync: Time,
    resyncing: bool,
    /// Reals or virtuals a reload added wait for a read-back of the table.
    adopt_pending: bool,
    /// The read-back in flight was started before a reload: its result is not used.
    dump_stale: bool,
    /// The time of the latest input.
    now: Time,
    /// Per real and per virtual: the attributes lvsmon does not decide (see `owned`).
    real_attrs: Box<[owned::RealAttrs]>,
    svc_attrs: Box<[owned::SvcAttrs]>,
}

impl Table {
    /// The reals and virtual services of `plan`, all undecided since `origin`, none adopted
    /// yet ([`Table::adopt_at_start`] or a read-back adopts them).
    pub(crate) fn new(plan: &Plan, origin: Time) -> Table {
        let mut virtuals = Vec::with_capacity(plan.virtuals.len());
        for v in &plan.virtuals {
            let notify = v.notify.map_or(NO_NOTIFY, |i| i as u32);
            virtuals.push(Virtual {
                key: v.key,
                service: Service::new(v.key, &v.scheduler, v.persistent),
                quorum: v.quorum,
                sorry: v.sorry,
                notify,
                reals: (v.reals.start as u32, v.reals.end as u32),
                up: 0,
                unknown: v.reals.len() as u32,
                quorum_lost: false,
                sorry_in_table: false,
                adopted: false,
            });
        }

        let mut rings_len = 0u32;
        let mut reals = Vec::with_capacity(plan.reals.len());
        let mut setups: Vec<Setup> = Vec::new();
        let mut setup_ids: HashMap<Setup, u32> = HashMap::new();
        for r in &plan.reals {
            let t = &r.thresholds;
            let setup = Setup {
                weight: r.weight,
                forward: r.forward,
                on_down: r.on_down,
                notify: r.notify.map_or(NO_NOTIFY, |i| i as u32),
                rules: Rules {
                    fall: t.fall.max(1),
                    rise: t.rise.max(1),
                    within_us: t.within.map_or(0, micros),
                    down_after_us: t.down_after.map_or(0, micros),
                },
            };
            let ring_len = setup.ring_len();
            let id = *setup_ids.entry(setup).or_insert_with_key(|s| {
                setups.push(Setup { ..*s });
                (setups.len() - 1) as u32
            });
            debug_assert_eq!(Addr::new(r.addr).get(), r.addr);
            reals.push(Real {
                addr: Addr::new(r.addr),
                virt: r.virtual_idx as u32,
                setup: id,
                ring: rings_len,
                health: Health::new(origin),
                table: ABSENT,
                checks: 0,
                failures: 0,
                transitions: 0,
                last_reason: None,
                last_detail: Detail::EMPTY,
                last_latency_us: 0,
                drained: false,
                adopted: false,
            });
            rings_len += ring_len;
        }
        drop(setup_ids);

        let by_dest = sorted_by_dest(&reals, &virtuals);
        let virt_index: HashMap<ServiceKey, u32> = plan
            .virtuals
            .iter()
            .enumerate()
            .map(|(i, v)| (v.key, i as u32))
            .collect();
        let n_reals = plan.reals.len();
        let n_virtuals = plan.virtuals.len();
        let resync_us = micros(plan.resync);
        let (real_attrs, svc_attrs) = owned::from_plan(plan);
        for (v, a) in virtuals.iter_mut().zip(svc_attrs.iter()) {
            a.apply_to(&mut v.service);
        }
        Table {
            reals: reals.into_boxed_slice(),
            setups: setups.into_boxed_slice(),
            rings: vec![0u64; rings_len as usize].into_boxed_slice(),
            virtuals: virtuals.into_boxed_slice(),
            outbox: Outbox::new(n_reals + 2 * n_virtuals + 64, 64),
            by_dest,
            virt_index,
            seen: vec![ABSENT; n_reals].into_boxed_slice(),
            svc_seen: vec![None; n_virtuals].into_boxed_slice(),
            sorry_seen: vec![false; n_virtuals].into_boxed_slice(),
            touched_real: vec![false; n_reals].into_boxed_slice(),
            touched_virt: vec![false; n_virtuals].into_boxed_slice(),
            resync_us,
            next_resync: Time(resync_us),
            resyncing: false,
            adopt_pending: false,
            dump_stale: false,
            now: Time::ZERO,
            real_attrs,
            svc_attrs,
        }
    }

    // ----- what the loop reads -------------------------------------------------------------

    /// Every real server, for status replies, metrics and state records (read-only: what
    /// changes them goes through the table's inputs).
    #[inline]
    pub(crate) fn reals(&self) -> &[Real] {
        &self.reals
    }

    /// Every virtual service.
    #[inline]
    pub(crate) fn virtuals(&self) -> &[Virtual] {
        &self.virtuals
    }

    /// The settings reals share ([`Real::setup`] indexes them).
    #[inline]
    pub(crate) fn setups(&self) -> &[Setup] {
        &self.setups
    }

    /// Real `r`'s destination address.
    #[inline]
    pub(crate) fn addr(&self, r: RealId) -> SocketAddr {
        self.reals[r.ix()].addr.get()
    }

    /// Real `r` is failing (its probe checks it at the retry interval).
    #[inline]
    pub(crate) fn failing(&self, r: RealId) -> bool {
        self.reals[r.ix()].health.failing()
    }

    /// Real `r`'s entry, if there is one (a hint for prefetching).
    #[inline]
    pub(crate) fn real(&self, r: RealId) -> Option<&Real> {
        self.reals.get(r.ix())
    }

    /// Operations decided and not yet handed over.
    #[inline]
    pub(crate) fn pending_ops(&self) -> usize {
        self.outbox.len()
    }

    /// What a reload added waits for a read-back of the table.
    #[inline]
    pub(crate) fn adopt_pending(&self) -> bool {
        self.adopt_pending
    }

    /// When the next periodic read-back is due (`None`: never, or `--dry-run`).
    #[inline]
    pub(crate) fn next_resync(&self, dry: bool) -> Option<Time> {
        (!dry && self.resync_us > 0).then_some(self.next_resync)
    }

    /// The real behind virtual service `key` with destination `addr`.
    pub(crate) fn real_of(&self, key: ServiceKey, addr: SocketAddr) -> Option<RealId> {
        let &v = self.virt_index.get(&key)?;
        let (a, b) = self.virtuals[v as usize].reals;
        let range = &self.by_dest[a as usize..b as usize];
        range
            .binary_search_by(|&r| self.reals[r as usize].addr.get().cmp(&addr))
            .ok()
            .map(|i| RealId(range[i]))
    }

    // ----- decisions ----------------------------------------------------------------------

    /// Records one result for real `r`; emits the transition if a threshold was crossed.
    #[inline]
    pub(crate) fn record(
        &mut self,
        r: RealId,
        v: Verdict,
        latency_us: u64,
        now: Time,
        out: &mut impl Out,
    ) {
        let real = &mut self.reals[r.ix()];
        real.checks += 1;
        real.last_latency_us = latency_us.min(u32::MAX as u64) as u32;
        let pass = match v {
            Verdict::Pass => true,
            Verdict::Fail(reason, detail) => {
                real.failures += 1;
                real.last_reason = Some(reason);
                real.last_detail = detail;
                false
            }
        };
        let before = real.health.state;
        let setup = &self.setups[real.setup as usize];
        let ring = &mut self.rings[real.ring as usize..(real.ring + setup.ring_len()) as usize];
        let change = real.health.record(pass, now, &setup.rules, ring);
        if change == Change::None {
            return;
        }
        self.now = now;
        self.transition(r, before, change, out);
    }

    /// Input of the weight chain (lvsmon.conf(5), WEIGHTS): the agent of real `r` answered
    /// `reply` (`line` is the line it sent, for the detail of `agent-down`), or could not be
    /// reached (`None`, which changes nothing).
    #[allow(dead_code)] // called once the agent probe lands
    pub(crate) fn agent_said(
        &mut self,
        r: RealId,
        reply: Option<AgentReply>,
        line: &[u8],
        now: Time,
        out: &mut impl Out,
    ) {
        let _ = (r, reply, line, now, out);
    }

    /// Input of the weight chain: an `exec --dynamic` check of real `r` passed with an exit
    /// code that sets weight `w` (`None`: it exited 0, the configured weight stands).
    #[allow(dead_code)] // called once the exec check lands
    pub(crate) fn exec_weight(&mut self, r: RealId, w: Option<u32>, now: Time, out: &mut impl Out) {
        let _ = (r, w, now, out);
    }

    /// Real `r` changed from `before` (`change`): the event, its destination, the quorum.
    #[cold]
    fn transition(&mut self, r: RealId, before: State, change: Change, out: &mut impl Out) {
        let real = &mut self.reals[r.ix()];
        real.transitions += 1;
        let virt = real.virt as usize;
        let drained = real.drained;
        let v = &mut self.virtuals[virt];
        if before == State::Unknown {
            v.unknown -= 1;
        }
        // A drained real serves nothing whatever its health: it never counts as UP.
        match change {
            Change::Up if !drained => v.up += 1,
            Change::Down if before == State::Up && !drained => v.up -= 1,
            _ => {}
        }
        let real = &self.reals[r.ix()];
        let ev = Event {
            kind: if change == Change::Up {
                EventKind::Up
            } else {
                EventKind::Down
            },
            service: self.virtuals[virt].key,
            real: Some(real.addr.get()),
            reason: if change == Change::Down {
                real.last_reason
            } else {
                None
            },
            detail: if change == Change::Down {
                real.last_detail
            } else {
                Detail::EMPTY
            },
            failures: real.health.fails as u64,
        };
        let notify = self.setups[real.setup as usize].notify;
        out.event(&ev, notify, None);
        self.sync_dest(r.ix());
        self.check_quorum(virt, out);
    }

    /// Drains (`on` true) or undrains real `r`: emits the event, moves the weight, and
    /// updates the quorum. Returns false if it already was in that state.
    pub(crate) fn set_drained(
        &mut self,
        r: RealId,
        on: bool,
        now: Time,
        out: &mut impl Out,
    ) -> bool {
        self.now = now;
        let r = r.ix();
        if self.reals[r].drained == on {
            return false;
        }
        self.reals[r].drained = on;
        let virt = self.reals[r].virt as usize;
        if self.reals[r].health.state == State::Up {
            if on {
                self.virtuals[virt].up -= 1;
            } else {
                self.virtuals[virt].up += 1;
            }
        }
        let ev = Event {
            kind: if on {
                EventKind::Drained
            } else {
                EventKind::Undrained
            },
            service: self.virtuals[virt].key,
            real: Some(self.reals[r].addr.get()),
            reason: None,
            detail: Detail::EMPTY,
            failures: self.reals[r].health.fails as u64,
        };
        let notify = self.setups[self.reals[r].setup as usize].notify;
        self.reals[r].transitions += 1;
        out.event(&ev, notify, None);
        self.sync_dest(r);
        self.check_quorum(virt, out);
        true
    }

    /// Marks real `r` drained without an event or a table change: the state file's DRAINED
    /// marks, read at startup before anything was decided.
    pub(crate) fn restore_drained(&mut self, r: RealId) {
        self.reals[r.ix()].drained = true;
    }

    /// Brings real `r`'s destination in line with its state.
    fn sync_dest(&mut self, r: usize) {
        let real = &self.reals[r];
        let setup = &self.setups[real.setup as usize];
        if !real.adopted {
            // Added by a reload, not yet seen in the table: the read-back decides first.
            return;
        }
        let want = match real.health.state {
            State::Unknown if !real.drained => return,
            // DRAINED: weight 0, established connections finish (a removed DOWN real stays
            // out of the table).
            _ if real.drained
                && !(real.health.state == State::Down && setup.on_down == OnDown::Remove) =>
            {
                Some(0)
            }
            State::Unknown => return,
            State::Up => Some(setup.weight),
            State::Down => match setup.on_down {
                OnDown::Quiesce => Some(0),
                OnDown::Remove => None,
            },
        };
        if want == real.table() {
            return;
        }
        let key = self.virtuals[real.virt as usize].key;
        let (addr, forward) = (real.addr.get(), setup.forward);
        let op = match (real.table(), want) {
            (None, Some(w)) => Op::AddDest(key, self.dest_for(r, w, forward)),
            (Some(_), Some(w)) => Op::EditDest(key, self.dest_for(r, w, forward)),
            (Some(_), None) => Op::DelDest(key, addr),
            (None, None) => return,
        };
        self.reals[r].set_table(want);
        self.submit(op);
    }

    /// Emits quorum events when virtual `v`'s count of UP reals crosses its quorum, and
    /// brings its sorry server in or out. Silent until every real has had its first result.
    fn check_quorum(&mut self, v: usize, out: &mut impl Out) {
        let virt = &self.virtuals[v];
        if virt.unknown > 0 || virt.quorum == 0 {
            return;
        }
        let lost = virt.up < virt.quorum;
        if lost != virt.quorum_lost {
            let ev = Event {
                kind: if lost {
                    EventKind::QuorumLost
                } else {
                    EventKind::QuorumRestored
                },
                service: virt.key,
                real: None,
                reason: None,
                detail: Detail::EMPTY,
                failures: 0,
            };
            let (notify, counts) = (virt.notify, (virt.up, virt.quorum));
            self.virtuals[v].quorum_lost = lost;
            out.event(&ev, notify, Some(counts));
        }
        self.sync_sorry(v);
    }

    /// Puts virtual `v`'s sorry server in the table while quorum is lost, and takes it out
    /// otherwise. Until every real has had a first result, the table keeps what it has.
    fn sync_sorry(&mut self, v: usize) {
        let virt = &self.virtuals[v];
        let Some(addr) = virt.sorry else { return };
        if virt.unknown > 0 || !virt.adopted {
            return;
        }
        let want = virt.quorum > 0 && virt.quorum_lost;
        let key = virt.key;
        if want && !virt.sorry_in_table {
            self.virtuals[v].sorry_in_table = true;
            self.submit(Op::AddDest(
                key,
                Dest {
                    addr,
                    weight: 1,
                    forward: Forward::Masq,
                    extra: DestExtra::default(),
                },
            ));
        } else if !want && virt.sorry_in_table {
            self.virtuals[v].sorry_in_table = false;
            self.submit(Op::DelDest(key, addr));
        }
    }

    // ----- the operation queue -----------------------------------------------------------

    /// Queues `op` for the IPVS side (handed over at the end of the turn, or later when it
    /// has no room): compact when it concerns one of this table's reals or virtuals as they
    /// are, whole otherwise.
    fn submit(&mut self, op: Op) {
        let real = match op {
            Op::AddDest(k, d) | Op::EditDest(k, d) => self.real_of(k, d.addr).map(RealId::ix),
            Op::DelDest(k, a) => self.real_of(k, a).map(RealId::ix),
            _ => None,
        };
        let virt = self.virt_index.get(&op.service()).map(|&v| v as usize);
        if self.resyncing {
            match (real, virt) {
                (Some(r), _) => self.touched_real[r] = true,
                (None, Some(v)) => self.touched_virt[v] = true,
                (None, None) => {}
            }
        }
        let slot = |what, idx: usize, weight: u16| Slot {
            what,
            idx: idx as u32,
            weight,
        };
        // The file's weights fit in 16 bits; one read from the table may not: it goes whole.
        let w16 = |w: u32| u16::try_from(w).ok();
        let compact = match (op, real, virt) {
            (Op::AddDest(_, d), Some(r), _) if d.forward == self.forward_of(r) => {
                w16(d.weight).map(|w| slot(What::AddDest, r, w))
            }
            (Op::EditDest(_, d), Some(r), _) if d.forward == self.forward_of(r) => {
                w16(d.weight).map(|w| slot(What::EditDest, r, w))
            }
            (Op::DelDest(..), Some(r), _) => Some(slot(What::DelDest, r, 0)),
            (Op::AddDest(_, d), None, Some(v))
                if self.virtuals[v].sorry == Some(d.addr)
                    && d.weight == 1
                    && d.forward == Forward::Masq =>
            {
                Some(slot(What::AddSorry, v, 1))
            }
            (Op::DelDest(_, a), None, Some(v)) if self.virtuals[v].sorry == Some(a) => {
                Some(slot(What::DelSorry, v, 0))
            }
            (Op::AddService(s), _, Some(v)) if s == self.virtuals[v].service => {
                Some(slot(What::AddService, v, 0))
            }
            (Op::EditService(s), _, Some(v)) if s == self.virtuals[v].service => {
                Some(slot(What::EditService, v, 0))
            }
            (Op::DelService(_), _, Some(v)) => Some(slot(What::DelService, v, 0)),
            _ => None,
        };
        let queued = match compact {
            Some(s) => self.outbox.push(s),
            None => self.outbox.push_whole(op),
        };
        if !queued {
            // Full: the next resync sees the difference and repairs it.
            self.resync_soon();
        }
    }

    /// A failure or a lost operation: the table is read back and repaired soon.
    fn resync_soon(&mut self) {
        self.next_resync = self
            .next_resync
            .min(self.now.add_micros(RESYNC_AFTER_ERROR_US));
    }

    /// Real `r`'s forwarding method.
    fn forward_of(&self, r: usize) -> Forward {
        self.setups[self.reals[r].setup as usize].forward
    }

    /// The next operation for the IPVS side, whole operations first.
    pub(crate) fn next_op(&mut self) -> Option<Op> {
        if let Some(op) = self.outbox.pop_whole() {
            return Some(op);
        }
        let s = self.outbox.pop()?;
        let i = s.idx as usize;
        let dest =
            |r: &Real| self.dest_for(i, s.weight.into(), self.setups[r.setup as usize].forward);
        Some(match s.what {
            What::AddDest | What::EditDest | What::DelDest => {
                let r = &self.reals[i];
                let key = self.virtuals[r.virt as usize].key;
                match s.what {
                    What::AddDest => Op::AddDest(key, dest(r)),
                    What::EditDest => Op::EditDest(key, dest(r)),
                    _ => Op::DelDest(key, r.addr.get()),
                }
            }
            What::AddSorry | What::DelSorry => {
                let v = &self.virtuals[i];
                // A sorry server is only ever queued while it is configured.
                let addr = v.sorry.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                if s.what == What::AddSorry {
                    Op::AddDest(
                        v.key,
                        Dest {
                            addr,
                            weight: 1,
                            forward: Forward::Masq,
                            extra: DestExtra::default(),
                        },
                    )
                } else {
                    Op::DelDest(v.key, addr)
                }
            }
            What::AddService => Op::AddService(self.virtuals[i].service),
            What::EditService => Op::EditService(self.virtuals[i].service),
            What::DelService => Op::DelService(self.virtuals[i].key),
        })
    }

    /// An operation finished (the loop logged and counted it). A destination edited by
    /// lvsmon but deleted by hand is added again at once; any other failure is repaired by an
    /// early resync.
    pub(crate) fn op_done(&mut self, op: Op, res: OpResult, now: Time) {
        self.now = now;
        match (op, res) {
            (_, OpResult::Ok | OpResult::DryRun) => {}
            (Op::EditDest(key, d), OpResult::Error(libc::ENOENT)) => {
                self.submit(Op::AddDest(key, d))
            }
            _ => self.resync_soon(),
        }
    }

    // ----- read-backs ---------------------------------------------------------------------

    /// Starts a read-back when one is due: what a reload added is adopted from it, and the
    /// periodic resync (`resync`) repairs drift. `start_dump` asks the IPVS side for one and
    /// says whether it started.
    pub(crate) fn poll_read_back(
        &mut self,
        now: Time,
        dry: bool,
        mut start_dump: impl FnMut() -> bool,
    ) {
        self.now = now;
        if self.adopt_pending && !dry && start_dump() {
            // What a reload added is adopted from this read-back.
            self.adopt_pending = false;
            self.next_resync = now.add_micros(self.resync_us);
            self.begin_resync();
        } else if self.resync_us > 0 && now >= self.next_resync {
            self.next_resync = now.add_micros(self.resync_us);
            if start_dump() {
                self.begin_resync();
            }
        }
    }

    /// A read-back starts: forget what the last one saw.
    fn begin_resync(&mut self) {
        self.resyncing = true;
        self.seen.fill(ABSENT);
        self.svc_seen.iter_mut().for_each(|s| *s = None);
        self.sorry_seen.iter_mut().for_each(|s| *s = false);
        self.touched_real.iter_mut().for_each(|s| *s = false);
        self.touched_virt.iter_mut().for_each(|s| *s = false);
    }

    /// What a read-back reports: the entries of the table, then its end. An operation's
    /// result ([`IpvsEvent::Done`]) goes to [`Table::op_done`] instead.
    pub(crate) fn read_back(&mut self, ev: IpvsEvent, now: Time, out: &mut impl Out) {
        self.now = now;
        match ev {
            IpvsEvent::Done(op, res) => self.op_done(op, res, now),
            IpvsEvent::Service(info) => {
                if let Some(&v) = self.virt_index.get(&info.key) {
                    self.svc_seen[v as usize] = Some(info.service);
                    self.saw_service(v as usize, &info.service);
                }
            }
            IpvsEvent::Dest(key, info) => {
                if let Some(r) = self.real_of(key, info.addr) {
                    self.seen[r.ix()] = info.weight.min(ABSENT - 1);
                    self.saw_dest(r.ix(), info.extra);
                } else if let Some(&v) = self.virt_index.get(&key) {
                    if self.virtuals[v as usize].sorry == Some(info.addr) {
                        self.sorry_seen[v as usize] = true;
                    }
                }
            }
            IpvsEvent::DumpDone { ok } => {
                self.resyncing = false;
                if std::mem::take(&mut self.dump_stale) {
                    // Begun before a reload, so its entries follow the old numbering: read
                    // the table again now rather than at the next period.
                    self.next_resync = self.now;
                } else if ok {
                    out.resynced();
                    self.reconcile(out);
                } else {
                    self.resync_soon();
                }
            }
        }
    }

    /// A read-back is complete: repair every difference between the table and what lvsmon
    /// decided (a service flushed or edited by hand, a destination deleted or re-weighted).
    fn reconcile(&mut self, out: &mut impl Out) {
        for v in 0..self.virtuals.len() {
            if self.touched_virt[v] {
                continue;
            }
            let want = self.virtuals[v].service;
            if !self.virtuals[v].adopted {
                // Added by a reload: created if missing and adopted if present, as at startup.
                self.adopt_virtual(v, self.svc_seen[v]);
                self.virtuals[v].sorry_in_table = self.sorry_seen[v];
                continue;
            }
            match self.svc_seen[v] {
                None => {
                    out.drift(want.key, None, "service missing");
                    self.submit(Op::AddService(want));
                }
                Some(have)
                    if have.scheduler() != want.scheduler()
                        || have.persistent != want.persistent
                        || self.service_drifted(v, &have) =>
                {
                    out.drift(want.key, None, "service settings changed");
                    self.submit(Op::EditService(want));
                }
                Some(_) => {}
            }
            self.virtuals[v].sorry_in_table = self.sorry_seen[v];
        }
        for r in 0..self.reals.len() {
            let virt = self.reals[r].virt as usize;
            if self.touched_real[r] || self.touched_virt[virt] || !self.virtuals[virt].adopted {
                continue;
            }
            let seen = (self.seen[r] != ABSENT).then_some(self.seen[r]);
            if !self.reals[r].adopted {
                // Added by a reload: its entry (or none) is what the table has.
                self.adopt_real(r, seen);
                self.sync_dest(r);
                continue;
            }
            if seen != self.reals[r].table() {
                let key = self.virtuals[self.reals[r].virt as usize].key;
                let addr = self.reals[r].addr.get();
                out.drift(
                    key,
                    Some(addr),
                    if seen.is_none() {
                        "destination missing"
                    } else {
                        "weight changed"
                    },
                );
                self.reals[r].set_table(seen);
            } else if seen.is_some() && self.dest_drifted(r) {
                // Thresholds or tunnel settings the config owns were changed by hand.
                let key = self.virtuals[self.reals[r].virt as usize].key;
                out.drift(key, Some(self.reals[r].addr.get()), "attributes changed");
                let forward = self.forward_of(r);
                let d = self.dest_for(r, self.seen[r], forward);
                self.submit(Op::EditDest(key, d));
            }
            let setup = &self.setups[self.reals[r].setup as usize];
            if self.reals[r].health.state == State::Unknown
                && seen.is_none()
                && setup.on_down == OnDown::Quiesce
            {
                // Not checked yet and gone from the table: back at weight 0, as at startup.
                let key = self.virtuals[self.reals[r].virt as usize].key;
                let d = self.dest_for(r, 0, setup.forward);
                self.reals[r].set_table(Some(0));
                self.submit(Op::AddDest(key, d));
            }
            self.sync_dest(r);
        }
        for v in 0..self.virtuals.len() {
            if !self.touched_virt[v] {
                self.sync_sorry(v);
            }
        }
        // Anything a reload added that this read-back could not settle waits for the next.
        self.adopt_pending =
            self.virtuals.iter().any(|v| !v.adopted) || self.reals.iter().any(|r| !r.adopted);
    }

    // ----- adoption -----------------------------------------------------------------------

    /// Startup: puts the configured services and destinations in the table (lvsmon(8), IPVS:
    /// create what is missing, adopt what is there; destinations not yet checked keep the
    /// weight they have, and new ones come in at weight 0 until their first check decides).
    /// `service` and `weight` say what the table has.
    pub(crate) fn adopt_at_start(
        &mut self,
        service: impl Fn(ServiceKey) -> Option<Service>,
        weight: impl Fn(ServiceKey, SocketAddr) -> Option<u32>,
    ) {
        for v in 0..self.virtuals.len() {
            let want = self.virtuals[v].service;
            self.adopt_virtual(v, service(want.key));
            if let Some(sorry) = self.virtuals[v].sorry {
                self.virtuals[v].sorry_in_table = weight(want.key, sorry).is_some();
            }
        }
        for r in 0..self.reals.len() {
            let (key, addr) = (
                self.virtuals[self.reals[r].virt as usize].key,
                self.reals[r].addr.get(),
            );
            // lvsmon(8), DECISIONS: a destination already in the table keeps its weight until
            // its first check decides.
            self.adopt_real(r, weight(key, addr));
        }
    }

    /// `--dry-run`: what a reload added is adopted at once against an empty table, as at
    /// startup.
    fn adopt_assuming_empty(&mut self) {
        for v in 0..self.virtuals.len() {
            if !self.virtuals[v].adopted {
                self.adopt_virtual(v, None);
            }
        }
        for r in 0..self.reals.len() {
            if !self.reals[r].adopted {
                self.adopt_real(r, None);
            }
        }
    }

    /// Virtual `v`'s service in the table is now known to be `seen` (lvsmon(8), IPVS: created
    /// if missing, adopted if present, its scheduler and persistence put right).
    fn adopt_virtual(&mut self, v: usize, seen: Option<Service>) {
        self.virtuals[v].adopted = true;
        if let Some(have) = &seen {
            self.saw_service(v, have);
        }
        let want = self.virtuals[v].service;
        match seen {
            None => self.submit(Op::AddService(want)),
            Some(have)
                if have.scheduler() != want.scheduler()
                    || have.persistent != want.persistent
                    || self.service_drifted(v, &have) =>
            {
                self.submit(Op::EditService(want))
            }
            Some(_) => {}
        }
    }

    /// Real `r`'s entry in the table is now known to be `seen` (lvsmon(8), DECISIONS: an entry
    /// already there keeps its weight until the first check decides; a missing one comes in
    /// at weight 0 unless the real is removed when DOWN).
    fn adopt_real(&mut self, r: usize, seen: Option<u32>) {
        let real = &mut self.reals[r];
        let setup = &self.setups[real.setup as usize];
        real.adopted = true;
        real.set_table(seen);
        if seen.is_none() && setup.on_down == OnDown::Quiesce {
            let key = self.virtuals[real.virt as usize].key;
            let forward = setup.forward;
            real.set_table(Some(0));
            let d = self.dest_for(r, 0, forward);
            self.submit(Op::AddDest(key, d));
        }
    }

    // ----- reload -------------------------------------------------------------------------

    /// Takes over from `old`, the table of the configuration being replaced (lvsmon(8),
    /// RELOAD): a real server is the same when its virtual service and address are, and keeps
    /// its state, counters, drain, `within` window and its entry in the table; only the
    /// differences reach IPVS; what the file added is adopted from the next read-back
    /// (`dry`: at once, against an empty table). `cmds` are the old and the new notify
    /// commands (a real whose command changed counts as changed); `kept` is told each real
    /// kept, as (new index, old index), for what the loop keeps per real (its history).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn take_over(
        &mut self,
        old: &mut Table,
        now: Time,
        dry: bool,
        cmds: (&[Command], &[Command]),
        ch: &mut Changes,
        mut kept: impl FnMut(usize, usize),
        out: &mut impl Out,
    ) {
        self.now = now;
        self.dump_stale = old.resyncing || old.dump_stale;
        self.next_resync = old.next_resync;
        // Operations the old core had not handed over yet, whole (they name its tables), then
        // this reload's; the whole queue may grow while it runs.
        self.outbox.growable = true;
        while let Some(op) = old.next_op() {
            self.outbox.push_whole(op);
        }
        let ops_before = self.outbox.len();

        // Virtual services.
        let mut old_virt_kept = vec![false; old.virtuals.len()];
        for v in 0..self.virtuals.len() {
            let key = self.virtuals[v].key;
            let Some(&ov) = old.virt_index.get(&key) else {
                ch.virtuals_added += 1;
                continue;
            };
            let ov = ov as usize;
            old_virt_kept[ov] = true;
            let o = &old.virtuals[ov];
            let (adopted, lost, sorry, sorry_in) =
                (o.adopted, o.quorum_lost, o.sorry, o.sorry_in_table);
            let (sched, pers) = (o.service.scheduler, o.service.persistent);
            let nv = &mut self.virtuals[v];
            nv.adopted = adopted;
            nv.quorum_lost = lost;
            if sorry == nv.sorry {
                nv.sorry_in_table = sorry_in;
            } else if let (true, Some(addr)) = (sorry_in, sorry) {
                // The sorry server changed: the old one leaves now, the new one comes in
                // when quorum says so.
                self.submit(Op::DelDest(key, addr));
            }
            let attrs_changed = self.carry_service_attrs(v, old, ov);
            let nv = &self.virtuals[v];
            if adopted
                && (nv.service.scheduler != sched || nv.service.persistent != pers || attrs_changed)
            {
                let s = nv.service;
                self.submit(Op::EditService(s));
            }
        }
        for (ov, kept) in old_virt_kept.iter().enumerate() {
            if !kept {
                ch.virtuals_removed += 1;
                if old.virtuals[ov].adopted {
                    // Gone from the file: gone from the table, with its destinations.
                    self.submit(Op::DelService(old.virtuals[ov].key));
                }
            }
        }

        // Real servers.
        let mut old_real_kept = vec![false; old.reals.len()];
        for r in 0..self.reals.len() {
            let key = self.virtuals[self.reals[r].virt as usize].key;
            let addr = self.reals[r].addr.get();
            let Some(or) = old.real_of(key, addr).map(RealId::ix) else {
                ch.added += 1;
                continue;
            };
            old_real_kept[or] = true;
            ch.kept += 1;
            let o = &old.reals[or];
            let nr = &mut self.reals[r];
            let (os, ns) = (
                &old.setups[o.setup as usize],
                &self.setups[nr.setup as usize],
            );
            if os.weight != ns.weight
                || os.forward != ns.forward
                || os.on_down != ns.on_down
                || os.rules != ns.rules
                || os.notify_cmd_changed(ns, cmds.0, cmds.1)
            {
                ch.changed += 1;
            }
            nr.health = o.health;
            nr.table = o.table;
            nr.checks = o.checks;
            nr.failures = o.failures;
            nr.transitions = o.transitions;
            nr.last_reason = o.last_reason;
            nr.last_detail = o.last_detail;
            nr.last_latency_us = o.last_latency_us;
            nr.drained = o.drained;
            nr.adopted = o.adopted;
            let (a, b) = (nr.ring as usize, (nr.ring + ns.ring_len()) as usize);
            let (oa, ob) = (o.ring as usize, (o.ring + os.ring_len()) as usize);
            if b - a == ob - oa {
                self.rings[a..b].copy_from_slice(&old.rings[oa..ob]);
            } else {
                // `fall` changed the window's length: it starts afresh.
                nr.health.restart_window();
            }
            let forward_changed = os.forward != ns.forward;
            let forward = ns.forward;
            kept(r, or);
            let (adopted, table) = (nr.adopted, nr.table());
            let attrs_changed = self.carry_dest_attrs(r, old, or);
            if let (true, true, Some(w)) = (forward_changed || attrs_changed, adopted, table) {
                let d = self.dest_for(r, w, forward);
                self.submit(Op::EditDest(key, d));
            }
        }
        for (or, kept) in old_real_kept.iter().enumerate() {
            if *kept {
                continue;
            }
            ch.removed += 1;
            let o = &old.reals[or];
            let ov = o.virt as usize;
            // Under a removed virtual service the del-service takes it along.
            if old_virt_kept[ov] && o.adopted && o.table().is_some() {
                self.submit(Op::DelDest(old.virtuals[ov].key, o.addr.get()));
            }
        }

        // Quorum bookkeeping from the carried states.
        for v in 0..self.virtuals.len() {
            let (a, b) = self.virtuals[v].reals;
            let (mut up, mut unknown) = (0, 0);
            for r in &self.reals[a as usize..b as usize] {
                match r.health.state {
                    State::Up if !r.drained => up += 1,
                    State::Unknown => unknown += 1,
                    _ => {}
                }
            }
            self.virtuals[v].up = up;
            self.virtuals[v].unknown = unknown;
        }

        // The table follows the new settings of the reals kept; what was added waits to be
        // adopted.
        if dry {
            self.adopt_assuming_empty();
        } else if ch.added > 0 || ch.virtuals_added > 0 {
            self.adopt_pending = true;
        }
        for r in 0..self.reals.len() {
            self.sync_dest(r);
        }
        for v in 0..self.virtuals.len() {
            if self.virtuals[v].adopted {
                self.check_quorum(v, out);
            }
        }
        ch.ops = self.outbox.len() - ops_before;
        self.outbox.growable = false;
    }
}

impl Setup {
    /// True when the notify command of these settings differs from `new`'s (compared by
    /// argv, as command numbers change between plans).
    fn notify_cmd_changed(
        &self,
        new: &Setup,
        old_cmds: &[Vec<Vec<u8>>],
        new_cmds: &[Vec<Vec<u8>>],
    ) -> bool {
        old_cmds.get(self.notify as usize) != new_cmds.get(new.notify as usize)
    }
}
