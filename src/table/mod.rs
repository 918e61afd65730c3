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

mod fresh;
mod outbox;
mod owned;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::clock::{micros, Time};
use crate::config::{Forward, OnDown, Plan, ServiceKey, SorryMode};
use crate::ids::RealId;
use crate::ipvs::{Dest, DestExtra, IpvsEvent, Op, OpResult, Service};
use crate::monitor::event::{Event, EventKind};
use crate::monitor::health::{Change, Health, Rules, State};
use crate::plugins::agent::{AgentAdmin, AgentReply, MAX_PERCENT};
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
    /// Edits of service `key` go with the last-known attributes: the read of it before them
    /// `why` ("failed", "timed out").
    fn stale_edit(&mut self, key: ServiceKey, why: &str) {
        let _ = (key, why);
    }
    /// An UP real's weight changed (an `add-dest` or `edit-dest` with `weight` is queued):
    /// `why` says what set it (lvsmon.conf(5), WEIGHTS).
    fn weight(&mut self, key: ServiceKey, real: SocketAddr, weight: u32, why: &Why) {
        let _ = (key, real, weight, why);
    }
}

/// An operator's `lvsmon set-weight`: the last step of the weight chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hand {
    /// None set (`reset`).
    #[default]
    None,
    /// `N`: this weight, whatever the chain before said.
    Weight(u32),
    /// `P%`: the chain's weight scaled.
    Percent(u16),
}

impl Hand {
    /// `N` (0 to 65,535), `P%` (0 to 1,000) or `reset`.
    pub(crate) fn parse(w: &[u8]) -> Option<Hand> {
        if w == b"reset" {
            return Some(Hand::None);
        }
        let (digits, percent) = match w.strip_suffix(b"%") {
            Some(d) => (d, true),
            None => (w, false),
        };
        if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        match percent {
            true if n <= u32::from(MAX_PERCENT) => Some(Hand::Percent(n as u16)),
            false if n <= 65_535 => Some(Hand::Weight(n)),
            _ => None,
        }
    }

    /// `N`, `P%` or `reset`, as the state file and `status` write it.
    pub(crate) fn write(self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        match self {
            Hand::None => w.write_all(b"reset"),
            Hand::Weight(n) => write!(w, "{n}"),
            Hand::Percent(p) => write!(w, "{p}%"),
        }
    }
}

/// A real's weight chain state besides its health and drain (lvsmon.conf(5), WEIGHTS), kept
/// beside [`Real`]: 30 bytes a real (the hand-set weight in 4, each time in 6), none of them
/// in the hot part of the table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Weigh {
    /// The agent's last `NN%` ([`NO_PERCENT`]: none).
    pub(crate) agent_percent: u16,
    /// The agent said `drain`/`maint` (weight 0, not counted UP) and not yet `up`.
    pub(crate) agent_drain: bool,
    /// The agent said `down`/`fail`/`stopped` and not yet `up`: DOWN whatever the checks say.
    pub(crate) agent_down: bool,
    /// SLOW (`slow-above`).
    pub(crate) slow: bool,
    /// `set-weight` ([`Weigh::hand`]).
    hand: HandBits,
    /// The `exec --dynamic` weight ([`NO_EXEC`]: none).
    pub(crate) exec: u16,
    /// The slow-start ramp began here ([`NEVER`]: no ramp).
    ramp_since: Stamp,
    /// The last `add-dest`/`edit-dest` with a weight went at this time ([`NEVER`]: none yet).
    last_edit: Stamp,
    /// The weight is to be looked at again at this time (a ramp's step, or a change held by
    /// the one-edit-a-second limit); [`NEVER`]: not.
    due: Stamp,
}

impl Weigh {
    /// `set-weight`.
    #[inline]
    pub(crate) fn hand(&self) -> Hand {
        self.hand.get()
    }

    #[inline]
    fn set_hand(&mut self, h: Hand) {
        self.hand = HandBits::of(h);
    }

    #[inline]
    fn ramp_since(&self) -> Time {
        self.ramp_since.get()
    }

    #[inline]
    fn last_edit(&self) -> Time {
        self.last_edit.get()
    }

    #[inline]
    fn due(&self) -> Time {
        self.due.get()
    }

    #[inline]
    fn set_due(&mut self, t: Time) {
        self.due = Stamp::of(t);
    }
}

/// A [`Time`] in 48 bits: microseconds since the daemon started, exact for 8.9 years of
/// running (2^48 µs), [`NEVER`] as all ones. A later time stays at the last one it can hold
/// (the daemon would then have run for 8.9 years).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([u16; 3]);

impl Stamp {
    const ALL: u64 = (1 << 48) - 1;

    #[inline]
    fn of(t: Time) -> Stamp {
        let v = if t == NEVER {
            Self::ALL
        } else {
            t.0.min(Self::ALL - 1)
        };
        Stamp([v as u16, (v >> 16) as u16, (v >> 32) as u16])
    }

    #[inline]
    fn get(self) -> Time {
        let [a, b, c] = self.0;
        let v = u64::from(a) | u64::from(b) << 16 | u64::from(c) << 32;
        if v == Self::ALL {
            NEVER
        } else {
            Time(v)
        }
    }
}

/// A [`Hand`] in four bytes: a weight (up to 65,535) as itself, a percentage with the top
/// bit set, none as all ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HandBits([u16; 2]);

impl HandBits {
    const PERCENT: u32 = 1 << 31;

    #[inline]
    fn of(h: Hand) -> HandBits {
        let v = match h {
            Hand::None => u32::MAX,
            Hand::Weight(n) => n.min(Self::PERCENT - 1),
            Hand::Percent(p) => Self::PERCENT | u32::from(p),
        };
        HandBits([v as u16, (v >> 16) as u16])
    }

    #[inline]
    fn get(self) -> Hand {
        let v = u32::from(self.0[0]) | u32::from(self.0[1]) << 16;
        match v {
            u32::MAX => Hand::None,
            _ if v & Self::PERCENT != 0 => Hand::Percent(v as u16),
            _ => Hand::Weight(v),
        }
    }
}

/// `Weigh::agent_percent` when the agent gave none.
pub(crate) const NO_PERCENT: u16 = u16::MAX;
/// `Weigh::exec` when no `exec --dynamic` weight is set (such weights go up to 65,534).
pub(crate) const NO_EXEC: u16 = u16::MAX;
/// No time (`Weigh`'s times).
pub(crate) const NEVER: Time = Time(u64::MAX);
/// At most one weight edit per real in this span (µs).
pub(crate) const EDIT_GAP_US: u64 = 1_000_000;

impl Default for Weigh {
    fn default() -> Weigh {
        Weigh {
            agent_percent: NO_PERCENT,
            agent_drain: false,
            agent_down: false,
            slow: false,
            hand: HandBits::of(Hand::None),
            exec: NO_EXEC,
            ramp_since: Stamp::of(NEVER),
            last_edit: Stamp::of(NEVER),
            due: Stamp::of(NEVER),
        }
    }
}

/// What set an UP real's weight: each step of the chain that changed it, shown in `status`
/// and the `weight` log line as `config` or, for instance, `agent 50%,slow,ramp 3/10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Why {
    pub(crate) agent: Option<u16>,
    pub(crate) agent_drain: bool,
    pub(crate) exec: bool,
    pub(crate) slow: bool,
    /// (step, steps) of the slow-start ramp.
    pub(crate) ramp: Option<(u32, u32)>,
    pub(crate) hand: Hand,
    pub(crate) sorry: bool,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        let mut part = |f: &mut std::fmt::Formatter<'_>, a: std::fmt::Arguments| {
            let r = write!(f, "{sep}{a}");
            sep = ",";
            r
        };
        if let Some(p) = self.agent {
            part(f, format_args!("agent {p}%"))?;
        }
        if self.exec {
            part(f, format_args!("exec"))?;
        }
        if self.slow {
            part(f, format_args!("slow"))?;
        }
        if let Some((k, n)) = self.ramp {
            part(f, format_args!("ramp {k}/{n}"))?;
        }
        match self.hand {
            Hand::None => {}
            Hand::Weight(_) => part(f, format_args!("set"))?,
            Hand::Percent(p) => part(f, format_args!("set {p}%"))?,
        }
        if self.agent_drain {
            part(f, format_args!("agent drain"))?;
        }
        if self.sorry {
            part(f, format_args!("sorry"))?;
        }
        if sep.is_empty() {
            f.write_str("config")?;
        }
        Ok(())
    }
}

/// `w` scaled to `percent`, rounded, at least 1 when neither is 0 (a scaled real keeps
/// serving a little), at most [`MAX_WEIGHT`](crate::config::values::MAX_WEIGHT).
pub(crate) fn scale(w: u32, percent: u16) -> u32 {
    if w == 0 || percent == 0 {
        return 0;
    }
    ((u64::from(w) * u64::from(percent) + 50) / 100).clamp(1, 65_535) as u32
}

/// A slow-start ramp of `d_us`: the step period (at least 1 s, `d/20` for long ramps) and
/// the number of steps.
pub(crate) fn ramp_steps(d_us: u64) -> (u64, u64) {
    let p = (d_us / 20).max(1_000_000);
    (p, d_us.div_ceil(p).max(1))
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
    /// `slow-above`, `cancel-below` (µs; 0: no SLOW state) and `slow-weight`.
    pub(crate) slow_above_us: u64,
    pub(crate) cancel_below_us: u64,
    pub(crate) slow_percent: u16,
    /// `slow-start` (µs; 0: none).
    pub(crate) slow_start_us: u64,
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

/// A destination address as a real server keeps it: 19 bytes where `SocketAddr` takes 32
/// (bytes only, so that it packs with [`Real`]'s other byte fields: `Real` takes 136 bytes,
/// not 144). It holds no IPv6 flow label or scope, which no destination has (the planner
/// refuses link-local addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) ip: [u8; 16],
    /// The port, in the machine's byte order.
    port: [u8; 2],
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
            port: a.port().to_ne_bytes(),
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
        SocketAddr::new(ip, u16::from_ne_bytes(self.port))
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
    pub(crate) sorry_mode: SorryMode,
    pub(crate) sorry_forward: Forward,
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
    /// Each real's weight chain state (see [`Weigh`]).
    weighs: Box<[Weigh]>,
    /// The earliest [`Weigh::due`] ([`NEVER`]: none).
    wake: Time,
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
    /// The values of the reals whose config owns thresholds or tunnel settings.
    real_owned: owned::Owned,
    svc_attrs: Box<[owned::SvcAttrs]>,
    /// Per virtual: when its attributes were last read (or a read of them was given up).
    read_at: Box<[Time]>,
    /// Edits waiting for a read of their service (see `fresh`).
    hold: Option<fresh::Hold>,
    /// A read of one service is running; when the running read-back began.
    reading: bool,
    resync_began: Time,
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
                sorry_mode: v.sorry_mode,
                sorry_forward: v.sorry_forward,
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
                slow_above_us: r.weights.slow.map_or(0, |s| micros(s.above)),
                cancel_below_us: r.weights.slow.map_or(0, |s| micros(s.below)),
                slow_percent: r.weights.slow.map_or(25, |s| s.percent),
                slow_start_us: r.weights.slow_start.map_or(0, micros),
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
        let (real_attrs, real_owned, svc_attrs) = owned::from_plan(plan);
        for (v, a) in virtuals.iter_mut().zip(svc_attrs.iter()) {
            a.apply_to(&mut v.service);
        }
        Table {
            reals: reals.into_boxed_slice(),
            setups: setups.into_boxed_slice(),
            rings: vec![0u64; rings_len as usize].into_boxed_slice(),
            weighs: vec![Weigh::default(); n_reals].into_boxed_slice(),
            wake: NEVER,
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
            real_owned,
            svc_attrs,
            read_at: vec![Time::ZERO; n_virtuals].into_boxed_slice(),
            hold: None,
            reading: false,
            resync_began: Time::ZERO,
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
        self.now = now;
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
        let mut change = real.health.record(pass, now, &setup.rules, ring);
        if change == Change::Up && self.weighs[r.ix()].agent_down {
            // The agent said down: passing checks do not bring it back before it says up.
            real.health.state = State::Down;
            change = Change::None;
        }
        let slow_rule = pass && setup.slow_above_us > 0;
        if change != Change::None {
            self.transition(r, before, change, out);
        }
        if slow_rule {
            self.judge_speed(r, latency_us, out);
        }
    }

    /// `slow-above D cancel-below D`: a passed check of `latency_us` makes real `r` SLOW, or
    /// ends it (events `slow`, `fast`).
    fn judge_speed(&mut self, r: RealId, latency_us: u64, out: &mut impl Out) {
        let setup = &self.setups[self.reals[r.ix()].setup as usize];
        let w8 = &mut self.weighs[r.ix()];
        let kind = if !w8.slow && latency_us > setup.slow_above_us {
            EventKind::Slow
        } else if w8.slow && latency_us < setup.cancel_below_us {
            EventKind::Fast
        } else {
            return;
        };
        w8.slow = kind == EventKind::Slow;
        self.speed_event(r.ix(), kind, latency_us, out);
        self.sync_dest(r.ix(), out);
    }

    /// The `slow` or `fast` event of real `r`, its detail the check's duration.
    #[cold]
    fn speed_event(&mut self, r: usize, kind: EventKind, latency_us: u64, out: &mut impl Out) {
        let real = &self.reals[r];
        let mut detail = Detail::number(latency_us / 1000);
        detail.push(b"ms");
        let ev = Event {
            kind,
            service: self.virtuals[real.virt as usize].key,
            real: Some(real.addr.get()),
            reason: None,
            detail,
            failures: real.health.fails as u64,
        };
        out.event(&ev, self.setups[real.setup as usize].notify, None);
    }

    /// Input of the weight chain (lvsmon.conf(5), WEIGHTS): the agent of real `r` answered
    /// `reply` (`line` is the line it sent, for the detail of `agent-down`), or could not be
    /// reached (`None`, which changes nothing).
    pub(crate) fn agent_said(
        &mut self,
        r: RealId,
        reply: Option<AgentReply>,
        line: &[u8],
        now: Time,
        out: &mut impl Out,
    ) {
        self.now = now;
        let Some(reply) = reply else { return };
        let r = r.ix();
        let was_serving = self.serving(r);
        let drain_before = self.weighs[r].agent_drain;
        let w8 = &mut self.weighs[r];
        if let Some(p) = reply.percent {
            w8.agent_percent = p.min(MAX_PERCENT);
        }
        let (mut down, mut up) = (false, false);
        match reply.admin {
            Some(AgentAdmin::Up) => {
                up = w8.agent_down;
                w8.agent_drain = false;
                w8.agent_down = false;
            }
            Some(AgentAdmin::Drain) => w8.agent_drain = true,
            Some(AgentAdmin::Down) => {
                down = !w8.agent_down;
                w8.agent_down = true;
            }
            None => {}
        }
        let virt = self.reals[r].virt as usize;
        let state = self.reals[r].health.state;
        if down && state != State::Down {
            let real = &mut self.reals[r];
            let rest = line.get(reply.detail_at..).unwrap_or_default();
            real.last_reason = Some(Reason::AgentDown);
            real.last_detail = Detail::text(rest.trim_ascii());
            real.health.state = State::Down;
            real.health.since = now;
            // The transition counts UP reals as they were before this reply.
            let drain_now = std::mem::replace(&mut self.weighs[r].agent_drain, drain_before);
            self.transition(RealId::of(r), state, Change::Down, out);
            self.weighs[r].agent_drain = drain_now;
            return;
        }
        if up && state == State::Down {
            let h = &self.reals[r].health;
            if h.fails == 0 && h.last_ok().is_some() {
                // Its checks pass: UP again at once.
                self.reals[r].health.state = State::Up;
                self.reals[r].health.since = now;
                // `up` cleared the agent's drain too: the transition counts it UP.
                self.transition(RealId::of(r), State::Down, Change::Up, out);
                return;
            }
        }
        let serving = self.serving(r);
        if serving != was_serving {
            if serving {
                self.virtuals[virt].up += 1;
            } else {
                self.virtuals[virt].up -= 1;
            }
        }
        self.sync_dest(r, out);
        if serving != was_serving {
            self.check_quorum(virt, out);
        }
    }

    /// Real `r` counts as UP for its virtual's quorum: UP and drained neither by an operator
    /// nor by its agent.
    fn serving(&self, r: usize) -> bool {
        let real = &self.reals[r];
        real.health.state == State::Up && !real.drained && !self.weighs[r].agent_drain
    }

    /// Input of the weight chain: an `exec --dynamic` check of real `r` passed with an exit
    /// code that sets weight `w` (`None`: it exited 0, the configured weight stands).
    pub(crate) fn exec_weight(&mut self, r: RealId, w: Option<u32>, now: Time, out: &mut impl Out) {
        self.now = now;
        let w = w.map_or(NO_EXEC, |w| w.min(u32::from(NO_EXEC) - 1) as u16);
        if self.weighs[r.ix()].exec != w {
            self.weighs[r.ix()].exec = w;
            self.sync_dest(r.ix(), out);
        }
    }

    /// `lvsmon set-weight`: sets (or with [`Hand::None`] clears) real `r`'s hand-set weight.
    /// Returns false if it already had it.
    pub(crate) fn set_hand(
        &mut self,
        r: RealId,
        hand: Hand,
        now: Time,
        out: &mut impl Out,
    ) -> bool {
        self.now = now;
        if self.weighs[r.ix()].hand() == hand {
            return false;
        }
        self.weighs[r.ix()].set_hand(hand);
        self.sync_dest(r.ix(), out);
        true
    }

    /// Restores real `r`'s hand-set weight from the state file at startup, before anything
    /// was decided (no table change).
    pub(crate) fn restore_hand(&mut self, r: RealId, hand: Hand) {
        self.weighs[r.ix()].set_hand(hand);
    }

    /// Real `r`'s weight chain state.
    #[inline]
    pub(crate) fn weigh(&self, r: usize) -> &Weigh {
        &self.weighs[r]
    }

    /// What sets real `r`'s weight now (for `status`).
    pub(crate) fn why(&self, r: usize) -> Why {
        self.chain(r).1
    }

    /// When a weight is next to be looked at (a ramp's step, a held change).
    #[inline]
    pub(crate) fn next_weigh(&self) -> Option<Time> {
        (self.wake != NEVER).then_some(self.wake)
    }

    /// Sends what is due of the weights: a slow-start ramp's next step, a change held by the
    /// one-edit-a-second limit. Cheap when nothing is due.
    #[inline]
    pub(crate) fn poll_weights(&mut self, now: Time, out: &mut impl Out) {
        if now < self.wake {
            return;
        }
        self.weigh_due(now, out);
    }

    #[cold]
    fn weigh_due(&mut self, now: Time, out: &mut impl Out) {
        self.now = now;
        self.wake = NEVER;
        for r in 0..self.reals.len() {
            if self.weighs[r].due() <= now {
                self.weighs[r].set_due(NEVER);
                self.sync_dest(r, out);
            }
        }
        self.wake = self.weighs.iter().map(Weigh::due).min().unwrap_or(NEVER);
    }

    /// Looks at real `r`'s weight again at `t` at the latest.
    fn due_at(&mut self, r: usize, t: Time) {
        let w8 = &mut self.weighs[r];
        w8.set_due(w8.due().min(t));
        self.wake = self.wake.min(t);
    }

    /// The weight chain (lvsmon.conf(5), WEIGHTS) of real `r` while UP and in service:
    /// configured weight → agent → exec → slow → slow start → set-weight, then an agent's
    /// drain and a `replace` sorry server. Always from the configured weight. Also says what
    /// set it, and when the ramp's next step is due (`Some(NEVER)`: the ramp is over).
    fn chain(&self, r: usize) -> (u32, Why, Option<Time>) {
        let real = &self.reals[r];
        let setup = &self.setups[real.setup as usize];
        let w8 = &self.weighs[r];
        let mut why = Why::default();
        let mut w = setup.weight;
        if w8.agent_percent != NO_PERCENT {
            w = scale(w, w8.agent_percent);
            why.agent = Some(w8.agent_percent);
        }
        if w8.exec != NO_EXEC {
            w = w8.exec.into();
            why.exec = true;
        }
        if w8.slow && setup.slow_above_us > 0 {
            w = scale(w, setup.slow_percent);
            why.slow = true;
        }
        let mut next = None;
        let ramp_since = w8.ramp_since();
        if ramp_since != NEVER {
            let (p, n) = ramp_steps(setup.slow_start_us);
            let k = self.now.micros_since(ramp_since) / p;
            if setup.slow_start_us > 0 && k < n {
                if w > 1 {
                    w = 1 + ((u64::from(w) - 1) * k / n) as u32;
                }
                why.ramp = Some((k as u32, n as u32));
                next = Some(ramp_since.add_micros((k + 1) * p));
            } else {
                next = Some(NEVER);
            }
        }
        let hand = w8.hand();
        match hand {
            Hand::None => {}
            Hand::Weight(n) => w = n,
            Hand::Percent(p) => w = scale(w, p),
        }
        why.hand = hand;
        if w8.agent_drain {
            w = 0;
            why.agent_drain = true;
        }
        let v = &self.virtuals[real.virt as usize];
        // While the sorry server serves (quorum lost, counted live so that a real coming UP
        // that restores quorum goes straight to its weight).
        if v.sorry.is_some()
            && v.sorry_mode == SorryMode::Replace
            && v.quorum > 0
            && v.unknown == 0
            && v.up < v.quorum
        {
            w = 0;
            why.sorry = true;
        }
        (w, why, next)
    }

    /// Real `r` changed from `before` (`change`): the event, its destination, the quorum.
    #[cold]
    fn transition(&mut self, r: RealId, before: State, change: Change, out: &mut impl Out) {
        let real = &mut self.reals[r.ix()];
        real.transitions += 1;
        let virt = real.virt as usize;
        let drained = real.drained || self.weighs[r.ix()].agent_drain;
        let setup = &self.setups[real.setup as usize];
        let w8 = &mut self.weighs[r.ix()];
        // Slow start: after DOWN, or at the first check of a real that was not serving (not
        // one adopted from the table with a weight).
        w8.ramp_since = Stamp::of(
            if change == Change::Up
                && setup.slow_start_us > 0
                && (before == State::Down || real.table().is_none_or(|w| w == 0))
            {
                self.now
            } else {
                NEVER
            },
        );
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
        self.sync_dest(r.ix(), out);
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
        if self.reals[r].health.state == State::Up && !self.weighs[r].agent_drain {
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
        self.sync_dest(r, out);
        self.check_quorum(virt, out);
        true
    }

    /// Marks real `r` drained without an event or a table change: the state file's DRAINED
    /// marks, read at startup before anything was decided.
    pub(crate) fn restore_drained(&mut self, r: RealId) {
        self.reals[r.ix()].drained = true;
    }

    /// Brings real `r`'s destination in line with its state and its weight chain. A change
    /// between two weights above 0 waits until a second has passed since the last one
    /// (then the weight wanted at that time goes); others go at once.
    fn sync_dest(&mut self, r: usize, out: &mut impl Out) {
        let real = &self.reals[r];
        let setup = &self.setups[real.setup as usize];
        if !real.adopted {
            // Added by a reload, not yet seen in the table: the read-back decides first.
            return;
        }
        let mut why = None;
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
            State::Up => {
                let (w, y, next) = self.chain(r);
                match next {
                    Some(NEVER) => self.weighs[r].ramp_since = Stamp::of(NEVER),
                    Some(t) => self.due_at(r, t),
                    None => {}
                }
                why = Some(y);
                Some(w)
            }
            State::Down => match setup.on_down {
                OnDown::Quiesce => Some(0),
                OnDown::Remove => None,
            },
        };
        let real = &self.reals[r];
        let setup = &self.setups[real.setup as usize];
        if want == real.table() {
            return;
        }
        let last = self.weighs[r].last_edit();
        if let (Some(have), Some(w)) = (real.table(), want) {
            if have > 0 && w > 0 && last != NEVER && self.now.micros_since(last) < EDIT_GAP_US {
                self.due_at(r, last.add_micros(EDIT_GAP_US));
                return;
            }
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
        if let Some(w) = want {
            self.weighs[r].last_edit = Stamp::of(self.now);
            if let Some(why) = why {
                out.weight(key, addr, w, &why);
            }
        }
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
        self.sync_sorry(v, out);
    }

    /// Puts virtual `v`'s sorry server in the table while quorum is lost, and takes it out
    /// otherwise. Until every real has had a first result, the table keeps what it has.
    /// With `--mode replace` (the default), the UP reals go to weight 0 while it serves.
    fn sync_sorry(&mut self, v: usize, out: &mut impl Out) {
        let virt = &self.virtuals[v];
        let Some(addr) = virt.sorry else { return };
        if virt.unknown > 0 || !virt.adopted {
            return;
        }
        let want = virt.quorum > 0 && virt.quorum_lost;
        let (key, forward) = (virt.key, virt.sorry_forward);
        if want && !virt.sorry_in_table {
            self.virtuals[v].sorry_in_table = true;
            self.submit(Op::AddDest(
                key,
                Dest {
                    addr,
                    weight: 1,
                    forward,
                    extra: DestExtra::default(),
                },
            ));
        } else if !want && virt.sorry_in_table {
            self.virtuals[v].sorry_in_table = false;
            self.submit(Op::DelDest(key, addr));
        } else {
            return;
        }
        if self.virtuals[v].sorry_mode == SorryMode::Replace {
            let (a, b) = self.virtuals[v].reals;
            for r in a as usize..b as usize {
                self.sync_dest(r, out);
            }
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
                    && d.forward == self.virtuals[v].sorry_forward =>
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
                            forward: v.sorry_forward,
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
        if self.resync_waits(now) {
            return;
        }
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
        self.resync_began = self.now;
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
            IpvsEvent::ReadDone { ok } => self.read_done(ok, out),
            IpvsEvent::DumpDone { ok } => {
                self.resyncing = false;
                let stale = self.dump_stale;
                self.resync_done(ok && !stale, self.resync_began);
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
                self.sync_dest(r, out);
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
            self.sync_dest(r, out);
        }
        for v in 0..self.virtuals.len() {
            if !self.touched_virt[v] {
                self.sync_sorry(v, out);
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
        // The startup snapshot is a read of every service.
        self.read_at.fill(self.now);
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
        self.reading = old.reading;
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
            self.weighs[r] = old.weighs[or];
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
            for r in a as usize..b as usize {
                if self.serving(r) {
                    up += 1;
                } else if self.reals[r].health.state == State::Unknown {
                    unknown += 1;
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
        self.wake = self.weighs.iter().map(Weigh::due).min().unwrap_or(NEVER);
        for r in 0..self.reals.len() {
            self.sync_dest(r, out);
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
