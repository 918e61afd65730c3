//! The probe driver: every distinct check's state machine, its timing and its buffers.
//!
//! [`Probes`] owns the probes (one per distinct check, see [`super::phase`]), what each
//! runs ([`Kind`]) and for which reals, the timer wheel their deadlines wait on, the pool
//! of receive buffers and the count of checks holding a socket. The loop gives it
//! readiness ([`Probes::on_ready`]) and the deadlines that are due ([`Probes::expire`]);
//! it gives back each check's result, for every real the probe serves, through
//! [`Host::results`]. A probe that needs a receive buffer gets one here, or waits in the
//! pool's queue and is read when one is given back ([`Probes::run_handed`]): the loop never
//! sees the hand-off.
//!
//! [`Host`] is what the driver asks of the rest of the daemon: a real's address (a probe's
//! target follows from its first real's), whether a real is failing (it is then checked at
//! the retry interval), the log and the counters. It is a generic parameter, so the calls
//! are direct and inlined: no dynamic dispatch on the way of a check.

use std::io::Write;
use std::net::SocketAddr;

use mio::Registry;

use super::exec::{Execs, ProgEnv, Spawned};
use super::phase::{self, errno_name, Outcome, Phase, Probe, NO_BUF};
use super::rounds::{Round, NO_ROUND};
use crate::clock::{micros, Time};
use crate::config::{Plan, SockOpts};
use crate::ids::{ProbeId, RealId};
use crate::log::{Level, Log};
use crate::plugins::agent::{self, AgentAdmin, AgentReply};
use crate::plugins::agent_check::{self, AGENT_LINE_MAX};
use crate::plugins::{CheckSpec, Reason, Transport, Verdict};
use crate::pool::BufPool;
use crate::stats::Stats;
use crate::timer::Wheel;

/// How often a program whose output has ended is asked for its exit, when no SIGCHLD
/// tells (µs).
const EXEC_REPOLL_US: u64 = 10_000;

/// "No duration yet" in [`Probes::check_durations`]' table.
const NO_DURATION: u32 = u32::MAX;

/// What a reload's hand-over kept of the running probes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Carried {
    /// Probes kept on their grid (of which `running` kept a check in flight).
    pub kept: usize,
    pub running: usize,
    /// Checks in flight that could not be carried over (no receive buffer): they run again
    /// at their next grid point.
    pub restarted: usize,
}

/// What the probe driver asks of the daemon around it.
pub trait Host {
    /// Real `r`'s destination address.
    fn addr(&self, r: RealId) -> SocketAddr;
    /// Real `r` is failing: its probe's next check comes at the retry interval.
    fn failing(&self, r: RealId) -> bool;
    /// Starts loading real `r`'s entry into the cache (a hint).
    fn prefetch(&self, r: RealId);
    /// A check ended with `v` after `latency_us`: its result for each of `reals`.
    fn results(&mut self, reals: &[RealId], v: Verdict, latency_us: u64, now: Time);
    /// An `exec --dynamic` check of `reals` passed: the weight its exit code sets (`None`:
    /// it exited 0, the configured weight stands).
    fn exec_weight(&mut self, reals: &[RealId], w: Option<u32>, now: Time);
    /// The agent of `reals` answered `reply` (its line: `line`), or could not be reached or
    /// said nothing (`None`).
    fn agent_said(&mut self, reals: &[RealId], reply: Option<AgentReply>, line: &[u8], now: Time);
    /// The log (check lines, local errors, stalls).
    fn log(&mut self) -> &mut Log;
    /// The counters (checks started and finished, lateness, durations, local errors).
    fn stats(&mut self) -> &mut Stats;
}

/// What a probe needs to run, fixed at startup: 8 bytes. Its target follows from its first
/// real server and its kind's [`Aim`].
#[derive(Debug)]
pub(crate) struct ProbeCfg {
    /// Index in `kinds`: the plugin and timing, shared by probes that differ only in target.
    kind: u32,
    /// Where its reals start in `probe_reals`; they end where the next probe's start.
    reals: u32,
}

/// Where a probe's checks connect, relative to the address of its first real server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Aim {
    /// The real server's address.
    Real,
    /// The real server's IP address on another port (`--port`).
    Port(u16),
    /// An address of its own (`--address`).
    Fixed(SocketAddr),
}

impl Aim {
    /// How `target` is reached from `first`, the address of the probe's first real.
    pub(crate) fn of(target: SocketAddr, first: SocketAddr) -> Aim {
        if target == first {
            Aim::Real
        } else if target.ip() == first.ip() {
            Aim::Port(target.port())
        } else {
            Aim::Fixed(target)
        }
    }

    pub(crate) fn target(self, first: SocketAddr) -> SocketAddr {
        match self {
            Aim::Real => first,
            Aim::Port(p) => SocketAddr::new(first.ip(), p),
            Aim::Fixed(a) => a,
        }
    }
}

/// A check's plugin with its options, and its timing: one for every probe whose check is
/// written the same (most probes of a virtual service), so the per-probe part stays small.
#[derive(Debug, PartialEq)]
pub(crate) struct Kind {
    spec: CheckSpec,
    aim: Aim,
    interval_us: u64,
    retry_us: u64,
    connect_us: u64,
    timeout_us: u64,
    /// `--source` and `--mark`.
    sock: SockOpts,
}

impl Kind {
    /// The same plugin, options and timing (the target is compared apart).
    fn same_check(&self, other: &Kind) -> bool {
        self.spec == other.spec
            && self.sock == other.sock
            && (
                self.interval_us,
                self.retry_us,
                self.connect_us,
                self.timeout_us,
            ) == (
                other.interval_us,
                other.retry_us,
                other.connect_us,
                other.timeout_us,
            )
    }
}

/// Asks the CPU to load every cache line of `*v` (a hint; nothing on other machines).
#[inline(always)]
pub(crate) fn prefetch_lines<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = (v as *const T).cast::<i8>();
        let mut off = 0;
        while off < std::mem::size_of::<T>() {
            // SAFETY: a prefetch never faults and reads nothing into the program; the
            // addresses lie within `*v` anyway.
            unsafe { _mm_prefetch(p.add(off), _MM_HINT_T0) };
            off += 64;
        }
        // The last line, when `*v` does not start on one.
        // SAFETY: as above.
        unsafe { _mm_prefetch(p.add(std::mem::size_of::<T>() - 1), _MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// What a probe's timer firing means (see [`timer_fired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// Waiting, and due: the next check starts.
    Start,
    /// An earlier phase's deadline (the check has moved on): the timer is set again for
    /// the phase's own, this one.
    NotYet(Time),
    /// Still queued for a receive buffer with bytes waiting: the director's fault, not the
    /// server's (deferred, no verdict).
    NoBuffer,
    /// The phase ran out of time: its deadline fails the check at that phase's layer.
    Expired,
}

/// The driver's rule for probe `p`'s timer firing at `now`, with the check's connect bound
/// and timeout; `queued` says whether it waits for a receive buffer (asked only in `Recv`
/// past the deadline).
#[inline]
pub(crate) fn timer_fired(
    p: &Probe,
    connect_us: u64,
    timeout_us: u64,
    now: Time,
    queued: impl FnOnce() -> bool,
) -> Fired {
    let d = p.phase_deadline(connect_us, timeout_us);
    match p.phase {
        Phase::Wait => Fired::Start,
        _ if now < d => Fired::NotYet(d),
        Phase::Recv { .. } if queued() => Fired::NoBuffer,
        _ => Fired::Expired,
    }
}

/// A check starts `late` µs after its grid point: counted.
#[inline]
fn count_start(host: &mut impl Host, late: u64) {
    let st = host.stats();
    st.started += 1;
    st.sum_lateness_us += late;
    st.max_lateness_us = st.max_lateness_us.max(late);
    st.lateness.observe(late);
}

/// The driver's next grid point after `scheduled`, a `period` on, skipping those already
/// past at `now`; with the number skipped (missed starts).
#[inline]
pub(crate) fn next_grid_point(scheduled: Time, now: Time, period: u64) -> (Time, u64) {
    let next = scheduled.add_micros(period);
    if next > now {
        return (next, 0);
    }
    let behind = now.micros_since(scheduled) / period;
    (scheduled.add_micros((behind + 1) * period), behind)
}

/// The probe driver (see the module docs).
pub struct Probes {
    probes: Box<[Probe]>,
    cfg: Box<[ProbeCfg]>,
    kinds: Box<[Kind]>,
    /// Each probe's reals, probe after probe (see [`ProbeCfg::reals`]).
    probe_reals: Box<[RealId]>,
    /// Beside each entry of `probe_reals`: for a real with several checks, which of them
    /// this probe is (1-based) and the real's round in `rounds`; 0 and [`NO_ROUND`] for a
    /// real with one check. Both empty when no real has several checks.
    probe_slots: Box<[u8]>,
    probe_rounds: Box<[u32]>,
    /// The rounds of the reals with several checks (see [`super::rounds`]).
    rounds: Box<[Round]>,
    /// The `exec` probes' programs.
    execs: Execs,
    /// Agent replies, and agents unreachable or silent, since startup.
    agent_replies: u64,
    agent_silent: u64,
    /// Each probe's last check duration in µs ([`NO_DURATION`] before its first verdict).
    last_us: Box<[u32]>,
    /// Each real's checks (probe ids, in check-line order): real `r`'s are
    /// `real_checks[real_checks_at[r]..real_checks_at[r + 1]]`. Both empty when no real has
    /// several checks: then no real has per-check durations to show.
    real_checks: Box<[u32]>,
    real_checks_at: Box<[u32]>,
    wheel: Wheel,
    pool: BufPool,
    /// Probes just handed a buffer, to read at the end of the turn (a ring of probe ids).
    handed: Box<[u32]>,
    handed_len: usize,
    /// Checks holding a socket now, and the most that may (`max-checks-in-flight`; the
    /// number of probes when unset).
    in_flight: u32,
    max_in_flight: u32,
    /// Rate limit for local-error warnings: next time one may be logged, and how many were
    /// held back since the last.
    local_warn_at: Time,
    local_held: u64,
    /// TLS checks (`crate::tls`): the helper process when any kind is a TLS check, each
    /// kind's index in the helper's configuration (`u32::MAX`: not TLS), each probe's TLS
    /// slot (empty without TLS checks), and each TLS check's certificate expiry.
    tls: Option<crate::tls::Helper>,
    tls_kind: Box<[u32]>,
    tls_slot: Box<[u32]>,
    expiry: crate::tls::Expiry,
}

/// `gen` of a TLS request: the helper's epoch above the probe's socket generation.
#[inline]
fn tls_gen(epoch: u16, gen: u16) -> u32 {
    u32::from(epoch) << 16 | u32::from(gen)
}

impl Probes {
    /// The probes of `plan`'s checks (taken out of it), with the first checks spread evenly
    /// over each probe's first interval after `origin`; `buffers` receive buffers (0: sized
    /// from the plan).
    pub(crate) fn new(plan: &mut Plan, buffers: usize, origin: Time) -> Probes {
        let checks = std::mem::take(&mut plan.checks);
        let n = checks.len();
        // Each real's checks, in order, for their last durations.
        let mut real_checks = Vec::with_capacity(plan.reals.len());
        let mut real_checks_at = Vec::with_capacity(plan.reals.len() + 1);
        for r in &plan.reals {
            real_checks_at.push(real_checks.len() as u32);
            real_checks.push(r.check as u32);
            real_checks.extend(r.more_checks.iter().map(|&c| c as u32));
        }
        real_checks_at.push(real_checks.len() as u32);
        if real_checks.len() == plan.reals.len() {
            // One check a real: no per-check durations to show (`check_durations`).
            real_checks = Vec::new();
            real_checks_at = Vec::new();
        }
        // Reals with several checks: a round each, and which check each of their probes is.
        let mut round_of = vec![NO_ROUND; plan.reals.len()];
        let mut rounds = Vec::new();
        for (ri, r) in plan.reals.iter().enumerate() {
            if !r.more_checks.is_empty() {
                round_of[ri] = rounds.len() as u32;
                rounds.push(Round::new(1 + r.more_checks.len()));
            }
        }
        let mut slots_taken = vec![0u32; rounds.len()];
        let mut probe_reals = Vec::with_capacity(plan.reals.len());
        let mut probe_slots = Vec::with_capacity(plan.reals.len());
        let mut probe_rounds = Vec::with_capacity(plan.reals.len());
        let mut cfg = Vec::with_capacity(n);
        let mut max_response = 0usize;
        let mut readers = 0usize;
        let mut kinds: Vec<Kind> = Vec::new();
        let mut recent = [u32::MAX; 8];
        let mut next_recent = 0usize;
        // TLS probes: (probe, target, server name), for their expiry.
        let mut tls_probes: Vec<(u32, SocketAddr, Box<str>)> = Vec::new();
        for (ci, c) in checks.into_iter().enumerate() {
            if let CheckSpec::Tls(t) = &c.spec {
                let name = t.opts.sni.as_deref().unwrap_or("");
                tls_probes.push((cfg.len() as u32, c.target, name.into()));
            }
            let start = probe_reals.len() as u32;
            probe_reals.extend(c.reals.iter().map(|&r| RealId::of(r)));
            let is_agent = matches!(c.spec, CheckSpec::Agent(_));
            for &r in &c.reals {
                // An agent's replies are not one of the real's checks.
                let round = if is_agent { NO_ROUND } else { round_of[r] };
                let mut slot = 0u8;
                if round != NO_ROUND {
                    // The first of the real's check lines that is this probe and not yet
                    // counted (a block may repeat a line).
                    let rp = &plan.reals[r];
                    let taken = &mut slots_taken[round as usize];
                    let k = std::iter::once(rp.check)
                        .chain(rp.more_checks.iter().copied())
                        .enumerate()
                        .position(|(k, x)| x == ci && *taken & (1 << k) == 0)
                        .unwrap_or(0);
                    *taken |= 1 << k;
                    slot = k as u8 + 1;
                }
                probe_slots.push(slot);
                probe_rounds.push(round);
            }
            // Every probe decides at least one real (the planner makes probes for reals).
            let first = plan.reals[c.reals[0]].addr;
            let mr = c.spec.max_response();
            if mr > 0 {
                readers += 1;
            }
            max_response = max_response.max(mr);
            let k = Kind {
                spec: c.spec,
                aim: Aim::of(c.target, first),
                interval_us: micros(c.interval).max(1000),
                retry_us: micros(c.retry_interval).max(1000),
                connect_us: micros(c.connect_timeout),
                timeout_us: micros(c.timeout),
                sock: c.sock,
            };
            // Probes of one virtual service come together: the last few kinds are where an
            // equal one is found.
            let kind = match recent
                .iter()
                .find(|&&i| i != u32::MAX && kinds[i as usize] == k)
            {
                Some(&i) => i,
                None => {
                    kinds.push(k);
                    let i = (kinds.len() - 1) as u32;
                    recent[next_recent % recent.len()] = i;
                    next_recent += 1;
                    i
                }
            };
            cfg.push(ProbeCfg { kind, reals: start });
        }
        kinds.shrink_to_fit();
        // Before any privilege drop: the helper is started from this descriptor.
        crate::tls::open_exe();
        let mut tls_kind = vec![u32::MAX; kinds.len()];
        let mut tls_specs = Vec::new();
        for (k, kind) in kinds.iter().enumerate() {
            if let CheckSpec::Tls(t) = &kind.spec {
                tls_kind[k] = tls_specs.len() as u32;
                tls_specs.push(&**t);
            }
        }
        let tls = if tls_specs.is_empty() {
            None
        } else {
            crate::tls::Helper::new(crate::tls::config_blob(&tls_specs)).ok()
        };
        let mut tls_slot = Vec::new();
        let mut expiry = crate::tls::Expiry::default();
        if !tls_probes.is_empty() {
            tls_slot = vec![u32::MAX; n];
            let mut by_real = Vec::new();
            for (slot, &(p, _, _)) in tls_probes.iter().enumerate() {
                tls_slot[p as usize] = slot as u32;
                let from = cfg[p as usize].reals as usize;
                let to = cfg
                    .get(p as usize + 1)
                    .map_or(probe_reals.len(), |c| c.reals as usize);
                for r in &probe_reals[from..to] {
                    by_real.push((r.0, slot as u32));
                }
            }
            by_real.sort_unstable();
            let mut seen = std::collections::HashSet::new();
            expiry = crate::tls::Expiry {
                targets: tls_probes.iter().map(|(_, t, _)| *t).collect(),
                not_after: vec![0; tls_probes.len()].into_boxed_slice(),
                by_real: by_real.into_boxed_slice(),
                shown: tls_probes
                    .iter()
                    .map(|(_, t, n)| seen.insert((*t, n.clone())))
                    .collect(),
                names: tls_probes.into_iter().map(|(_, _, n)| n).collect(),
                helper_starts: 0,
                helper_pid: 0,
            };
        }

        // The `exec` probes' programs, with the environment of each one's first real.
        let mut progs = Vec::new();
        for (i, c) in cfg.iter().enumerate() {
            let k = &kinds[c.kind as usize];
            if let CheckSpec::Exec(e) = &k.spec {
                let first = &plan.reals[probe_reals[c.reals as usize].ix()];
                let env = ProgEnv {
                    target: k.aim.target(first.addr),
                    virtual_key: plan.virtuals[first.virtual_idx].key.to_string(),
                    real: first.addr,
                };
                progs.push((i as u32, &e.argv[..], env));
            }
        }
        if rounds.is_empty() {
            // No real with several checks: no slot or round to look up (see `finish`).
            probe_slots = Vec::new();
            probe_rounds = Vec::new();
        }
        let execs = Execs::new(n, plan.exec_max, progs).unwrap_or_else(|_| Execs::none());

        // First checks spread evenly over each probe's first interval.
        let probes: Vec<Probe> = cfg
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let iv = kinds[c.kind as usize].interval_us;
                Probe::new(origin.add_micros(iv * i as u64 / n.max(1) as u64))
            })
            .collect();
        // One turn of the wheel spans the longest interval (up to 65 s), so a slot holds
        // only the checks due at its tick, not also those of later turns, which each pass
        // over it would walk past (4,096 slots at 10 s intervals: 2.4 entries walked per
        // check due).
        let longest_ms = kinds
            .iter()
            .map(|k| k.interval_us.max(k.retry_us) / 1000 + 1)
            .max()
            .unwrap_or(0);
        let slots = (longest_ms as usize).clamp(4096, 65536);
        let mut wheel = Wheel::starting_at(n, slots, origin);
        for (i, p) in probes.iter().enumerate() {
            wheel.set(i as u32, p.scheduled);
        }

        let buffers = if buffers > 0 {
            buffers
        } else {
            readers.clamp(1, 1024)
        };
        let pool = BufPool::new(buffers, max_response.max(64), n);

        Probes {
            probes: probes.into_boxed_slice(),
            cfg: cfg.into_boxed_slice(),
            kinds: kinds.into_boxed_slice(),
            probe_reals: probe_reals.into_boxed_slice(),
            probe_slots: probe_slots.into_boxed_slice(),
            probe_rounds: probe_rounds.into_boxed_slice(),
            rounds: rounds.into_boxed_slice(),
            execs,
            agent_replies: 0,
            agent_silent: 0,
            last_us: vec![NO_DURATION; n].into_boxed_slice(),
            real_checks: real_checks.into_boxed_slice(),
            real_checks_at: real_checks_at.into_boxed_slice(),
            wheel,
            pool,
            handed: vec![0u32; n].into_boxed_slice(),
            handed_len: 0,
            in_flight: 0,
            max_in_flight: plan.max_in_flight.unwrap_or(u32::MAX),
            local_warn_at: Time::ZERO,
            local_held: 0,
            tls,
            tls_kind: tls_kind.into_boxed_slice(),
            tls_slot: tls_slot.into_boxed_slice(),
            expiry,
        }
    }

    /// Starts loading what a step of probe `id` reads into the cache: its probe and its
    /// first real (the address to connect to, the counters and health a verdict updates).
    /// A check's memory was last touched an interval ago, and since then the kernel's work
    /// for thousands of other checks has gone through the caches: without this, each of
    /// those loads waits for memory in turn. A hint only: an id that is not a probe's (the
    /// loop's own tokens) loads nothing.
    #[inline]
    pub fn prefetch(&self, id: ProbeId, real: impl FnOnce(RealId)) {
        let i = id.ix();
        let Some(c) = self.cfg.get(i) else {
            return;
        };
        prefetch_lines(&self.probes[i]);
        if let Some(&r) = self.probe_reals.get(c.reals as usize) {
            real(r);
        }
    }

    /// Readiness for probe `id`'s socket of generation `gen`; `trouble`: it came with an
    /// error or a hang-up.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn on_ready(
        &mut self,
        id: ProbeId,
        gen: u32,
        readable: bool,
        writable: bool,
        trouble: bool,
        reg: &Registry,
        now: Time,
        host: &mut impl Host,
    ) {
        let id = id.0;
        let i = id as usize;
        if i >= self.probes.len() {
            return;
        }
        let p = &mut self.probes[i];
        // Readiness from a socket already closed (an older generation) is ignored.
        if u32::from(p.gen) != gen || p.sock.is_none() {
            return;
        }
        if readable {
            p.rx_ready = true;
        }
        if self.kinds[self.cfg[i].kind as usize].spec.transport() == Transport::Exec {
            if readable && matches!(p.phase, Phase::Recv { .. }) {
                self.exec_output(id, reg, now, host);
            }
            return;
        }
        let go = match p.phase {
            // Idle: nothing to do (mio may report a closed socket's last readiness).
            Phase::Wait | Phase::Helper => false,
            Phase::ConResult | Phase::Query { .. } => writable,
            Phase::Recv { .. } => readable,
        };
        if !go {
            return;
        }
        let target = self.target_to_send(i, &*host);
        let spec = &self.kinds[self.cfg[i].kind as usize].spec;
        let p = &mut self.probes[i];
        let buf = self.pool.slice(p.buf);
        let outcome = match p.phase {
            // WRITABLE while connecting: the handshake ended one way or the other.
            Phase::ConResult => phase::conresult(p, spec, &target, buf, !trouble),
            // Room to write the rest of the request.
            Phase::Query { .. } => phase::send(p, spec, &target, buf),
            // Bytes (or EOF, or an error) to read.
            _ => phase::recv(p, spec, &target, buf),
        };
        self.after(id, outcome, reg, now, host);
    }

    /// The timer fired for probe `id`.
    fn on_deadline(&mut self, id: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let k = &self.kinds[self.cfg[i].kind as usize];
        if k.spec.transport() == Transport::Exec && self.probes[i].phase != Phase::Wait {
            self.exec_deadline(id, reg, now, host);
            return;
        }
        let (p, pool) = (&self.probes[i], &self.pool);
        match timer_fired(p, k.connect_us, k.timeout_us, now, || pool.is_queued(id)) {
            Fired::Start => self.start(id, reg, now, host),
            Fired::NotYet(d) => self.wheel.set(id, d),
            Fired::NoBuffer => self.defer(id, libc::ENOBUFS, reg, now, host),
            Fired::Expired if self.probes[i].phase == Phase::Helper => {
                self.tls_overdue(id, reg, now, host)
            }
            Fired::Expired => {
                let v = phase::deadline_verdict(&self.probes[i]);
                self.finish(id, v, reg, now, host);
            }
        }
    }

    /// The loop stood still for `late` µs beyond the wait it asked for (SIGSTOP, a paused
    /// machine, a loop that could not run): no check may be judged on that time. Every
    /// running check gets back the time it lost (its start and deadlines move on by the
    /// stall; what arrived meanwhile is read before any deadline); one whose start cannot
    /// move that far (a stall of over an hour) is closed without a verdict and starts again
    /// at once. Checks due meanwhile start at once, as after any late start. Logged and
    /// counted once per stall; the slow path, taken only then, walks every probe.
    #[cold]
    pub fn stalled(&mut self, late: u64, reg: &Registry, now: Time, host: &mut impl Host) {
        host.stats().loop_stalls += 1;
        let (mut held, mut restarted) = (0u32, 0u32);
        for i in 0..self.probes.len() {
            if self.probes[i].phase == Phase::Wait {
                continue;
            }
            if self.probes[i].hold(late) {
                held += 1;
            } else {
                // Not a failure of the server, nor a local error: a fresh check, due now (an
                // `exec` program is killed; its slot frees when it is reaped).
                self.execs.kill(i as u32);
                self.release(i as u32, reg);
                self.wheel.set(i as u32, now);
                restarted += 1;
            }
        }
        if let Some(mut l) = host.log().line(Level::Warn) {
            let _ = write!(
                l,
                "msg=\"loop stalled\" seconds={}.{:06} running={held} restarted={restarted}",
                late / 1_000_000,
                late % 1_000_000
            );
        }
    }

    /// Starts probe `id`'s check (the connect phase).
    fn start(&mut self, id: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let tk = self.tls_kind[self.cfg[i].kind as usize];
        if tk != u32::MAX {
            // A TLS check holds no socket of the loop's: the helper bounds its own.
            self.start_tls(id, tk, reg, now, host);
            return;
        }
        if self.in_flight >= self.max_in_flight {
            // `max-checks-in-flight`: no socket for it now; the next grid point may have one.
            self.defer(id, 0, reg, now, host);
            return;
        }
        let late = now.micros_since(self.probes[i].scheduled);
        let k = &self.kinds[self.cfg[i].kind as usize];
        if k.spec.transport() == Transport::Exec {
            let p = &mut self.probes[i];
            p.rx_ready = false;
            p.scheduled = phase::catch_up(p.scheduled, now, k.interval_us);
            let spawned = self.execs.spawn(id, p, reg, now);
            if spawned == Spawned::Queued {
                // Its turn comes when a program ends (no timer meanwhile); it starts then,
                // and counts as started then.
                return;
            }
            count_start(host, late);
            match spawned {
                Spawned::Started => {
                    self.in_flight += 1;
                    let d = self.probes[i].phase_deadline(k.connect_us, k.timeout_us);
                    self.wheel.set(id, d);
                }
                Spawned::Local(e) => self.defer(id, e, reg, now, host),
                Spawned::Queued => {}
            }
            return;
        }
        count_start(host, late);
        let target = self.target(i, &*host);
        let p = &mut self.probes[i];
        p.scheduled = phase::catch_up(p.scheduled, now, k.interval_us);
        p.rx_ready = false;
        let outcome = phase::start(p, id, &k.spec, k.sock, &target, reg, now);
        if self.probes[i].sock.is_some() {
            self.in_flight += 1;
        }
        self.after(id, outcome, reg, now, host);
    }

    /// Starts probe `id`'s TLS check: one request record to the helper.
    fn start_tls(&mut self, id: u32, tk: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let late = now.micros_since(self.probes[i].scheduled);
        let st = host.stats();
        st.started += 1;
        st.sum_lateness_us += late;
        st.max_lateness_us = st.max_lateness_us.max(late);
        st.lateness.observe(late);
        let target = self.target(i, &*host);
        let k = &self.kinds[self.cfg[i].kind as usize];
        let p = &mut self.probes[i];
        p.scheduled = phase::catch_up(p.scheduled, now, k.interval_us);
        p.rx_ready = false;
        phase::start_helper(p, now);
        let Some(h) = self.tls.as_mut() else {
            self.defer(id, libc::ECHILD, reg, now, host);
            return;
        };
        let req = crate::tls::wire::Request {
            probe: id,
            gen: tls_gen(h.epoch, p.gen),
            kind: tk,
            connect_ms: (k.connect_us / 1000).min(u32::MAX as u64) as u32,
            timeout_ms: (k.timeout_us / 1000).min(u32::MAX as u64) as u32,
            target,
        };
        match h.send(&req) {
            Ok(()) => {
                let d = p.phase_deadline(k.connect_us, k.timeout_us);
                self.wheel.set(id, d);
            }
            Err(e) => self.defer(id, e, reg, now, host),
        }
    }

    /// The helper's answers (readiness of its socket): each decides its probe's check, if
    /// it is still the check it was asked about.
    pub fn on_tls(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        loop {
            let Some(h) = self.tls.as_mut() else {
                return;
            };
            let a = match h.recv() {
                Ok(Some(a)) => a,
                Ok(None) => return,
                Err(crate::tls::Gone) => {
                    self.tls_lost(crate::tls::Lost::Exited, reg, now, host);
                    return;
                }
            };
            h.last_answer = now;
            let i = a.probe as usize;
            let Some(p) = self.probes.get(i) else {
                continue;
            };
            if p.phase != Phase::Helper || a.gen != tls_gen(h.epoch, p.gen) {
                continue;
            }
            if let Some(&slot) = self.tls_slot.get(i) {
                if a.not_after != 0 && slot != u32::MAX {
                    self.expiry.not_after[slot as usize] = a.not_after;
                }
            }
            match a.outcome {
                crate::tls::wire::Outcome::Verdict(v) => self.finish(a.probe, v, reg, now, host),
                crate::tls::wire::Outcome::Local(_) => {
                    self.defer(a.probe, libc::ENOBUFS, reg, now, host)
                }
            }
        }
    }

    /// A TLS check went unanswered past its timeout and the grace: a local error; and if the
    /// helper has said nothing since the check was sent, it is hung: restarted.
    #[cold]
    fn tls_overdue(&mut self, id: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let started = self.probes[id as usize].started();
        self.defer(id, libc::ETIME, reg, now, host);
        if self
            .tls
            .as_ref()
            .is_some_and(|h| h.running() && h.last_answer <= started)
        {
            self.tls_lost(crate::tls::Lost::Hung, reg, now, host);
        }
    }

    /// The helper exited or hung: killed; its checks in flight are local errors; its next
    /// start is set (rate-limited).
    #[cold]
    fn tls_lost(&mut self, why: crate::tls::Lost, reg: &Registry, now: Time, host: &mut impl Host) {
        let Some(h) = self.tls.as_mut() else {
            return;
        };
        let pid = h.pid();
        let delay = h.lost(reg, now);
        self.note_helper();
        let mut lost = 0u32;
        for i in 0..self.probes.len() {
            if self.probes[i].phase == Phase::Helper {
                self.defer(i as u32, libc::EPIPE, reg, now, host);
                lost += 1;
            }
        }
        host.stats().tls_helper_restarts += 1;
        if let Some(mut l) = host.log().line(Level::Warn) {
            let why = match why {
                crate::tls::Lost::Exited => "exited",
                crate::tls::Lost::Hung => "hung",
            };
            let _ = write!(
                l,
                "msg=\"TLS helper lost\" why={why} pid={pid} checks_lost={lost} restart_in={}.{:03}",
                delay / 1_000_000,
                delay % 1_000_000 / 1000
            );
        }
    }

    /// Starts the TLS helper when its start is due.
    #[cold]
    fn tls_tick(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        let Some(h) = self.tls.as_mut() else {
            return;
        };
        match h.tick(reg, now) {
            Ok(false) => {}
            Ok(true) => {
                let (pid, starts) = (h.pid(), h.starts);
                self.note_helper();
                if let Some(mut l) = host.log().line(Level::Notice) {
                    let _ = write!(l, "msg=\"TLS helper started\" pid={pid} starts={starts}");
                }
            }
            Err(e) => {
                if let Some(mut l) = host.log().line(Level::Error) {
                    let _ = write!(l, "msg=\"TLS helper could not start\" error=\"{e}\"");
                }
            }
        }
    }

    /// Each TLS check's certificate expiry (and the helper's starts and pid).
    pub fn expiry(&self) -> &crate::tls::Expiry {
        &self.expiry
    }

    /// Copies the helper's starts and pid where [`Probes::expiry`] shows them.
    fn note_helper(&mut self) {
        if let Some(h) = self.tls.as_ref() {
            self.expiry.helper_starts = h.starts;
            self.expiry.helper_pid = h.pid();
        }
    }

    /// The TLS helper's process id, and how many times it was started (0, 0: none).
    pub fn tls_helper(&self) -> (i32, u64) {
        self.tls.as_ref().map_or((0, 0), |h| (h.pid(), h.starts))
    }

    /// Acts on the outcome of a step of probe `id`.
    fn after(
        &mut self,
        id: u32,
        mut outcome: Outcome,
        reg: &Registry,
        now: Time,
        host: &mut impl Host,
    ) {
        let i = id as usize;
        if outcome == Outcome::NeedBuffer {
            outcome = if !self.probes[i].rx_ready {
                // Nothing to read yet: no buffer needed until READABLE.
                Outcome::Pending
            } else if let Some(b) = self.pool.take() {
                self.probes[i].buf = b;
                let target = self.target_to_send(i, &*host);
                let buf = self.pool.slice(b);
                let spec = &self.kinds[self.cfg[i].kind as usize].spec;
                phase::recv(&mut self.probes[i], spec, &target, buf)
            } else {
                self.pool.enqueue(id);
                Outcome::Pending
            };
        }
        match outcome {
            Outcome::Pending | Outcome::NeedBuffer => {
                let p = &mut self.probes[i];
                if matches!(p.phase, Phase::Recv { .. }) && p.buf != NO_BUF {
                    // recv() stopped at WouldBlock: the readiness is used up.
                    p.rx_ready = false;
                }
                // A running check's phase deadlines only move later (the connect bound, then
                // the whole check's), so a deadline already set for it is never late:
                // on_deadline sets the later one if it comes first. Checks that end before
                // their connect bound, nearly all, are spared moving it.
                if !self.wheel.is_scheduled(id) {
                    let k = &self.kinds[self.cfg[i].kind as usize];
                    self.wheel
                        .set(id, p.phase_deadline(k.connect_us, k.timeout_us));
                }
            }
            Outcome::Done(v) => self.finish(id, v, reg, now, host),
            Outcome::Local(e) => self.defer(id, e, reg, now, host),
        }
    }

    /// Reads for the probes that were just handed a buffer.
    pub fn run_handed(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        while self.handed_len > 0 {
            self.handed_len -= 1;
            let id = self.handed[self.handed_len];
            let i = id as usize;
            let target = self.target_to_send(i, &*host);
            let buf = self.pool.slice(self.probes[i].buf);
            let spec = &self.kinds[self.cfg[i].kind as usize].spec;
            let o = phase::recv(&mut self.probes[i], spec, &target, buf);
            self.after(id, o, reg, now, host);
        }
    }

    /// Closes probe `id`'s socket and gives its buffer back (to a queued probe if any).
    fn release(&mut self, id: u32, reg: &Registry) {
        let i = id as usize;
        if self.probes[i].sock.is_some() {
            self.in_flight -= 1;
        }
        // Only a reading check without a buffer can be queued for one (the pool's links are
        // not touched otherwise).
        let queued =
            matches!(self.probes[i].phase, Phase::Recv { .. }) && self.probes[i].buf == NO_BUF;
        phase::close(&mut self.probes[i], reg);
        if queued {
            self.pool.dequeue(id);
        }
        // The tests run with this on: a probe queued in any other phase would be handed a
        // buffer after its check ended.
        debug_assert!(
            !self.pool.is_queued(id),
            "probe {id} still queued for a buffer"
        );
        self.probes[i].rx_ready = false;
        let b = std::mem::replace(&mut self.probes[i].buf, NO_BUF);
        if b != NO_BUF {
            if let Some((w, b)) = self.pool.give_back(b) {
                self.probes[w as usize].buf = b;
                self.handed[self.handed_len] = w;
                self.handed_len += 1;
            }
        }
    }

    /// The check of probe `id` is decided: record it for every real it serves.
    fn finish(&mut self, id: u32, v: Verdict, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        if matches!(
            self.kinds[self.cfg[i].kind as usize].spec,
            CheckSpec::Agent(_)
        ) {
            self.agent_done(id, v, reg, now, host);
            return;
        }
        self.release(id, reg);
        let latency = now.micros_since(self.probes[i].started());
        self.last_us[i] = latency.min(u64::from(NO_DURATION - 1)) as u32;
        let st = host.stats();
        st.checks += 1;
        st.duration.observe(latency);
        match v {
            Verdict::Pass => st.passes += 1,
            Verdict::Fail(r, _) => st.failures[r as usize] += 1,
        }
        if host.log().enabled(Level::Info) {
            let c = &self.cfg[i];
            let target = self.target(i, &*host);
            if let Some(mut l) = host.log().line(Level::Info) {
                let name = self.kinds[c.kind as usize].spec.name();
                let _ = write!(l, "check target={target} plugin={name} ");
                // One of a real's several checks: which (for the probe's first real).
                match self.probe_slots.get(c.reals as usize) {
                    Some(&n) if n > 0 => {
                        let _ = write!(l, "check={n} ");
                    }
                    _ => {}
                }
                match v {
                    Verdict::Pass => {
                        let _ = write!(l, "result=pass");
                    }
                    Verdict::Fail(r, d) => {
                        let _ = write!(l, "result=fail reason={} ", r.as_str());
                        l.quoted("detail", d.as_bytes());
                    }
                }
                let _ = write!(
                    l,
                    " duration={}.{:06}",
                    latency / 1_000_000,
                    latency % 1_000_000
                );
            }
        }
        let (a, b) = self.reals_of(i);
        let (a, b) = (a as usize, b as usize);
        if self.rounds.is_empty() || self.probe_rounds[a..b].iter().all(|&x| x == NO_ROUND) {
            host.results(&self.probe_reals[a..b], v, latency, now);
        } else {
            // Some of its reals have several checks: theirs count when their round is whole.
            for k in a..b {
                let r = self.probe_reals[k];
                match self.probe_rounds[k] {
                    NO_ROUND => host.results(&[r], v, latency, now),
                    x => {
                        let round = &mut self.rounds[x as usize];
                        if let Some((v, latency)) = round.add(self.probe_slots[k], v, latency) {
                            host.results(&[r], v, latency, now);
                        }
                    }
                }
            }
        }
        self.schedule_next(id, now, host);
    }

    /// Probe `id`, a real's agent, is done: its line goes to the weight chain (`None` when it
    /// could not be reached or said nothing), never to the real's checks.
    fn agent_done(&mut self, id: u32, v: Verdict, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let mut text = [0u8; AGENT_LINE_MAX];
        let mut n = 0;
        let p = &self.probes[i];
        if v == Verdict::Pass && p.buf != NO_BUF {
            let got = match p.phase {
                Phase::Recv { got } | Phase::Query { got, .. } => got as usize,
                _ => 0,
            };
            let buf = self.pool.slice(p.buf);
            let l = agent_check::line(&buf[..got.min(buf.len())]);
            n = l.len().min(text.len());
            text[..n].copy_from_slice(&l[..n]);
        }
        self.release(id, reg);
        let line = &text[..n];
        let reply = (v == Verdict::Pass).then(|| agent::parse(line));
        if reply.is_some() {
            self.agent_replies += 1;
        } else {
            self.agent_silent += 1;
        }
        if host.log().enabled(Level::Info) {
            let target = self.target(i, &*host);
            if let Some(mut l) = host.log().line(Level::Info) {
                let _ = write!(l, "agent target={target} ");
                match (reply, v) {
                    (Some(r), _) => {
                        let _ = write!(l, "result=reply");
                        if let Some(pc) = r.percent {
                            let _ = write!(l, " percent={pc}");
                        }
                        match r.admin {
                            Some(AgentAdmin::Up) => {
                                let _ = write!(l, " admin=up");
                            }
                            Some(AgentAdmin::Drain) => {
                                let _ = write!(l, " admin=drain");
                            }
                            Some(AgentAdmin::Down) => {
                                let _ = write!(l, " admin=down ");
                                l.quoted("detail", line.get(r.detail_at..).unwrap_or_default());
                            }
                            None => {}
                        }
                        let _ = write!(l, " ");
                        l.quoted("line", line);
                    }
                    (None, Verdict::Fail(r, d)) => {
                        let _ = write!(l, "result=none reason={} ", r.as_str());
                        l.quoted("detail", d.as_bytes());
                    }
                    (None, Verdict::Pass) => {}
                }
            }
        }
        let (a, b) = self.reals_of(i);
        host.agent_said(&self.probe_reals[a as usize..b as usize], reply, line, now);
        self.schedule_next(id, now, host);
    }

    /// The check of probe `id` could not run for a reason of the director's own (EMFILE,
    /// EADDRNOTAVAIL, no buffer): no result is recorded and the next grid point is kept.
    fn defer(&mut self, id: u32, errno: i32, reg: &Registry, now: Time, host: &mut impl Host) {
        self.release(id, reg);
        host.stats().local_errors += 1;
        if now >= self.local_warn_at {
            let held = std::mem::take(&mut self.local_held);
            let target = self.target(id as usize, &*host);
            // errno 0: the configured limit, not the system's.
            let detail = match errno {
                0 => "max-checks-in-flight reached",
                libc::ECHILD => "TLS helper not running",
                libc::ETIME => "TLS helper did not answer in time",
                libc::EPIPE => "TLS helper lost",
                _ => errno_name(errno),
            };
            if let Some(mut l) = host.log().line(Level::Warn) {
                let _ = write!(
                    l,
                    "check target={target} result=deferred reason=local-error errno={errno} detail=\"{detail}\" held_back={held}"
                );
            }
            self.local_warn_at = now.add_micros(1_000_000);
        } else {
            self.local_held += 1;
        }
        self.schedule_next(id, now, host);
    }

    /// Probe `id`'s program printed something (or closed its output): read it; if it has
    /// ended, judge it, else look again soon after an end of file (SIGCHLD may not come).
    fn exec_output(&mut self, id: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let eof = self.execs.read(id, &self.probes[id as usize], reg);
        if eof && !self.exec_try_finish(id, reg, now, host) {
            self.exec_rearm(id, now);
        }
    }

    /// Sets probe `id`'s timer while its program runs: its deadline, or sooner (every
    /// [`EXEC_REPOLL_US`]) once its output has ended, to collect its exit.
    fn exec_rearm(&mut self, id: u32, now: Time) {
        let i = id as usize;
        let k = &self.kinds[self.cfg[i].kind as usize];
        let d = self.probes[i].phase_deadline(k.connect_us, k.timeout_us);
        let at = if self.execs.eof(id) {
            d.min(now.add_micros(EXEC_REPOLL_US))
        } else {
            d
        };
        self.wheel.set(id, at);
    }

    /// Probe `id`'s timer fired while its program runs: judge it if it has ended, kill it
    /// at its deadline (`timeout`), else wait on.
    fn exec_deadline(&mut self, id: u32, reg: &Registry, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let _ = self.execs.read(id, &self.probes[i], reg);
        if self.exec_try_finish(id, reg, now, host) {
            return;
        }
        let k = &self.kinds[self.cfg[i].kind as usize];
        if now < self.probes[i].phase_deadline(k.connect_us, k.timeout_us) {
            self.exec_rearm(id, now);
            return;
        }
        self.execs.kill(id);
        self.finish(id, Verdict::fail(Reason::Timeout), reg, now, host);
        self.exec_start_queued(reg, now, host);
    }

    /// If probe `id`'s program has ended: its verdict recorded (and with `--dynamic`, its
    /// weight), the next waiting program started; true then.
    fn exec_try_finish(
        &mut self,
        id: u32,
        reg: &Registry,
        now: Time,
        host: &mut impl Host,
    ) -> bool {
        let Some((exit, first, n)) = self.execs.try_reap(id) else {
            return false;
        };
        let i = id as usize;
        let CheckSpec::Exec(e) = &self.kinds[self.cfg[i].kind as usize].spec else {
            return false;
        };
        let (v, w) = e.judge(exit, &first[..n]);
        // The weight first: a real that this pass brings UP starts at the program's weight,
        // not at the configured one for a second.
        if e.dynamic && v == Verdict::Pass {
            let (a, b) = self.reals_of(i);
            host.exec_weight(&self.probe_reals[a as usize..b as usize], w, now);
        }
        self.finish(id, v, reg, now, host);
        self.exec_start_queued(reg, now, host);
        true
    }

    /// Starts the waiting `exec` probes while programs may run.
    fn exec_start_queued(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        while let Some(id) = self.execs.next_queued() {
            self.start(id, reg, now, host);
        }
    }

    /// A child ended (SIGCHLD): every `exec` program that has ended is judged, killed ones
    /// are reaped, and waiting probes start in their place.
    pub fn reap_execs(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        if self.execs.running() == 0 {
            return;
        }
        self.execs.reap_killed();
        for s in 0..self.execs.capacity() {
            if let Some(id) = self.execs.probe_at(s) {
                let _ = self.execs.read(id, &self.probes[id as usize], reg);
                self.exec_try_finish(id, reg, now, host);
            }
        }
        self.exec_start_queued(reg, now, host);
    }

    /// The last duration of each of real `r`'s checks (µs, in check-line order; `None`
    /// before its first verdict): what `lvsmon_real_check_duration_seconds` and `status`
    /// may show per check, beside the real's own last latency (its round's, the longest).
    pub fn check_durations(&self, r: RealId) -> impl Iterator<Item = Option<u64>> + '_ {
        let (a, b) = match (
            self.real_checks_at.get(r.ix()),
            self.real_checks_at.get(r.ix() + 1),
        ) {
            (Some(&a), Some(&b)) => (a as usize, b as usize),
            _ => (0, 0),
        };
        self.real_checks[a..b].iter().map(|&p| {
            let us = self.last_us[p as usize];
            (us != NO_DURATION).then_some(u64::from(us))
        })
    }

    /// Bytes held for features no check of the plan may use: the several-checks slots,
    /// rounds and per-real index, and `exec`'s program lookup (0 with one plain check a real).
    #[cfg(test)]
    pub(crate) fn feature_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.probe_slots)
            + std::mem::size_of_val(&*self.probe_rounds)
            + std::mem::size_of_val(&*self.rounds)
            + std::mem::size_of_val(&*self.real_checks_at)
            + std::mem::size_of_val(&*self.real_checks)
            + self.execs.per_probe_bytes()
    }

    /// The daemon stops: the `exec` programs still running are killed.
    pub fn stop_execs(&mut self) {
        self.execs.kill_all();
    }

    /// `exec` programs running now, and probes waiting for one to end.
    pub fn execs(&self) -> (usize, usize) {
        (self.execs.running(), self.execs.queued())
    }

    /// `exec` programs started and spawns that failed; agent replies, and agents that could
    /// not be reached or said nothing.
    pub fn exec_agent_counts(&self) -> (u64, u64, u64, u64) {
        (
            self.execs.started,
            self.execs.spawn_failed,
            self.agent_replies,
            self.agent_silent,
        )
    }

    /// Sets probe `id`'s next start on its grid: the previous grid point plus the interval
    /// (or the retry interval while any of its reals is failing), skipping grid points
    /// already past.
    fn schedule_next(&mut self, id: u32, now: Time, host: &mut impl Host) {
        let i = id as usize;
        let (a, b) = self.reals_of(i);
        let failing = (a..b).any(|k| host.failing(self.probe_reals[k as usize]));
        let k = &self.kinds[self.cfg[i].kind as usize];
        let period = if failing { k.retry_us } else { k.interval_us };
        let p = &mut self.probes[i];
        let (next, behind) = next_grid_point(p.scheduled, now, period);
        if behind > 0 {
            host.stats().missed_starts += behind;
        }
        p.scheduled = next;
        self.wheel.set(id, next);
    }

    /// Probe `i`'s reals: a range in `probe_reals`.
    fn reals_of(&self, i: usize) -> (u32, u32) {
        let end = self
            .cfg
            .get(i + 1)
            .map_or(self.probe_reals.len() as u32, |c| c.reals);
        (self.cfg[i].reals, end)
    }

    /// Probe `i`'s target for the bytes it sends: looked up only where they name it (a plain
    /// `check http`), so other readiness touches no real server's entry.
    fn target_to_send(&self, i: usize, host: &impl Host) -> SocketAddr {
        if self.kinds[self.cfg[i].kind as usize]
            .spec
            .target_at()
            .is_some()
        {
            self.target(i, host)
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    }

    /// Where probe `i`'s checks connect.
    #[inline]
    fn target(&self, i: usize, host: &impl Host) -> SocketAddr {
        self.target_from(i, |r| host.addr(r))
    }

    /// Where probe `i`'s checks connect, `addr` giving its first real's address.
    #[inline]
    fn target_from(&self, i: usize, addr: impl Fn(RealId) -> SocketAddr) -> SocketAddr {
        let c = &self.cfg[i];
        self.kinds[c.kind as usize]
            .aim
            .target(addr(self.probe_reals[c.reals as usize]))
    }

    /// Every deadline due at `now`: a check to start, or a phase that ran out of time.
    #[inline]
    pub fn expire(&mut self, reg: &Registry, now: Time, host: &mut impl Host) {
        if self
            .tls
            .as_ref()
            .is_some_and(|h| h.restart_at.is_some_and(|t| now >= t))
        {
            self.tls_tick(reg, now, host);
        }
        while let Some(id) = self.wheel.pop_expired(now) {
            if let Some(next) = self.wheel.next_due() {
                self.prefetch(ProbeId(next), |r| host.prefetch(r));
            }
            self.on_deadline(id, reg, now, host);
            self.run_handed(reg, now, host);
        }
    }

    /// The earliest deadline on the wheel.
    #[inline]
    pub fn next_expiry(&self) -> Option<Time> {
        let w = self.wheel.next_expiry();
        match self.tls.as_ref().and_then(|h| h.restart_at) {
            Some(t) => Some(w.map_or(t, |w| w.min(t))),
            None => w,
        }
    }

    /// How many probes (distinct checks) there are.
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    /// No probe at all (a configuration without checks).
    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Receive buffers: how many, and their size.
    pub fn buffers(&self) -> (usize, usize) {
        (self.pool.count(), self.pool.size())
    }

    /// Times a reading check waited for a receive buffer.
    pub fn buffer_waits(&self) -> u64 {
        self.pool.waits
    }

    /// Checks holding a socket now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Probe `id`'s phase.
    pub fn phase(&self, id: ProbeId) -> Phase {
        self.probes[id.ix()].phase()
    }

    /// Probe `id` holds a socket (a check is running).
    pub fn running(&self, id: ProbeId) -> bool {
        self.probes[id.ix()].has_socket()
    }

    /// When probe `id`'s current phase runs out of time.
    pub fn phase_deadline(&self, id: ProbeId) -> Time {
        let k = &self.kinds[self.cfg[id.ix()].kind as usize];
        self.probes[id.ix()].phase_deadline(k.connect_us, k.timeout_us)
    }

    /// Takes over from `old`, the probes of the configuration being replaced (lvsmon(8),
    /// RELOAD): a probe is the same when its target, check and timing are, and keeps its grid
    /// point and, when a check is running, its socket and the bytes read so far. New probes
    /// start somewhere in their first interval from `now`; old ones not kept are closed.
    /// `old_addr` gives the old configuration's real addresses (`host` the new one's).
    pub(crate) fn take_over(
        &mut self,
        old: &mut Probes,
        reg: &Registry,
        now: Time,
        old_addr: impl Fn(RealId) -> SocketAddr,
        host: &mut impl Host,
    ) -> Carried {
        self.local_warn_at = old.local_warn_at;
        self.local_held = old.local_held;
        // Programs of the old `exec` checks are killed; their checks run again (below).
        old.execs.hand_over(&mut self.execs);
        // Old probes by target: the first of each target, then a chain through `next`.
        const END: u32 = u32::MAX;
        let mut first: std::collections::HashMap<std::net::SocketAddr, u32> =
            std::collections::HashMap::with_capacity(old.cfg.len());
        let mut next = vec![END; old.cfg.len()];
        for j in (0..old.cfg.len()).rev() {
            if let Some(f) = first.insert(old.target_from(j, &old_addr), j as u32) {
                next[j] = f;
            }
        }
        let mut carried = vec![false; old.probes.len()];
        let mut carried_n = Carried::default();
        let n = self.cfg.len().max(1) as u64;
        for i in 0..self.cfg.len() {
            let c = &self.cfg[i];
            let mut j = first.get(&self.target(i, &*host)).copied().unwrap_or(END);
            while j != END {
                let o = &old.cfg[j as usize];
                // Same target: the same check if plugin and timing are (however the target
                // follows from the first real).
                if !carried[j as usize]
                    && old.kinds[o.kind as usize].same_check(&self.kinds[c.kind as usize])
                {
                    break;
                }
                j = next[j as usize];
            }
            if j == END {
                // A new probe: its first check somewhere in its first interval from now.
                let at = now.add_micros(self.kinds[c.kind as usize].interval_us * i as u64 / n);
                self.probes[i].scheduled = at;
                self.wheel.set(i as u32, at);
                continue;
            }
            carried[j as usize] = true;
            carried_n.kept += 1;
            self.carry_probe(i as u32, old, j as usize, reg, now, &mut carried_n, host);
        }
        for (j, was) in carried.iter().enumerate() {
            if !was && old.probes[j].sock.is_some() {
                phase::close(&mut old.probes[j], reg);
            }
        }
        // The running TLS helper is kept when its configuration is the same (its epoch moves
        // on: answers about old checks are ignored); otherwise the old one is killed with
        // the old probes and a new one starts at the next turn.
        if let (Some(new), Some(old_h)) = (self.tls.as_mut(), old.tls.as_mut()) {
            if new.same_config(old_h) {
                new.take_process(old_h);
            } else {
                new.starts = old_h.starts;
            }
        }
        self.note_helper();

        self.in_flight = self.probes.iter().filter(|p| p.sock.is_some()).count() as u32;
        carried_n
    }

    /// Moves old probe `j` into slot `id`.
    #[allow(clippy::too_many_arguments)]
    fn carry_probe(
        &mut self,
        id: u32,
        old: &mut Probes,
        j: usize,
        reg: &mio::Registry,
        now: Time,
        ch: &mut Carried,
        host: &mut impl Host,
    ) {
        let i = id as usize;
        self.last_us[i] = old.last_us[j];
        let mut p = std::mem::replace(&mut old.probes[j], Probe::new(Time::ZERO));
        if let (Some(&a), Some(&b)) = (old.tls_slot.get(j), self.tls_slot.get(i)) {
            if a != u32::MAX && b != u32::MAX {
                self.expiry.not_after[b as usize] = old.expiry.not_after[a as usize];
            }
        }
        if p.phase == Phase::Helper {
            // A TLS check in the helper is not carried: it runs again at its next grid point.
            phase::close(&mut p, reg);
            self.probes[i] = p;
            ch.restarted += 1;
            self.schedule_next(id, now, host);
            return;
        }
        // A program's pipe is not carried: its program was killed (`Execs::hand_over`).
        let exec = self.kinds[self.cfg[i].kind as usize].spec.transport() == Transport::Exec;
        let mut keep = p.sock.is_some() && !exec;
        if keep && p.buf != NO_BUF {
            // Bytes already read move to a buffer of the new pool, if one is free and big
            // enough.
            let got = match p.phase {
                Phase::Recv { got } | Phase::Query { got, .. } => got as usize,
                _ => 0,
            };
            let from = old.pool.slice(p.buf);
            match self.pool.take() {
                Some(b) if self.pool.size() >= got && from.len() >= got => {
                    let n = self.pool.size().min(from.len());
                    let bytes = &from[..n];
                    self.pool.slice(b)[..n].copy_from_slice(bytes);
                    p.buf = b;
                }
                Some(b) => {
                    let _ = self.pool.give_back(b);
                    keep = false;
                }
                None => keep = false,
            }
        } else if keep && old.pool.is_queued(j as u32) {
            self.pool.enqueue(id);
        }
        let spec = &self.kinds[self.cfg[i].kind as usize].spec;
        if keep && phase::rebind(&mut p, id, spec, reg).is_err() {
            keep = false;
        }
        if p.sock.is_some() && !keep {
            p.buf = NO_BUF;
            phase::close(&mut p, reg);
            self.probes[i] = p;
            ch.restarted += 1;
            // The check never finished: its next grid point comes as if deferred.
            self.schedule_next(id, now, host);
            return;
        }
        if p.sock.is_some() {
            ch.running += 1;
        } else {
            p.rx_ready = false;
        }
        let k = &self.kinds[self.cfg[i].kind as usize];
        let at = p.phase_deadline(k.connect_us, k.timeout_us);
        self.probes[i] = p;
        self.wheel.set(id, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_target_follows_from_its_first_real() {
        let real: SocketAddr = "192.0.2.1:80".parse().unwrap();
        for (target, aim) in [
            ("192.0.2.1:80", Aim::Real),
            ("192.0.2.1:8080", Aim::Port(8080)),
            (
                "198.51.100.7:80",
                Aim::Fixed("198.51.100.7:80".parse().unwrap()),
            ),
            (
                "[2001:db8::1]:80",
                Aim::Fixed("[2001:db8::1]:80".parse().unwrap()),
            ),
        ] {
            let t: SocketAddr = target.parse().unwrap();
            assert_eq!(Aim::of(t, real), aim, "{target}");
            assert_eq!(aim.target(real), t, "{target}");
        }
        // Another real behind the same kind gets its own address, or its own on the port.
        let other: SocketAddr = "192.0.2.2:80".parse().unwrap();
        assert_eq!(Aim::Real.target(other), other);
        assert_eq!(
            Aim::Port(8080).target(other),
            "192.0.2.2:8080".parse().unwrap()
        );
    }

    /// Phase changes go through `set_phase`, which refuses (in debug builds, as the tests
    /// run) a running phase without a socket.
    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without a socket")]
    fn a_running_phase_needs_a_socket() {
        let mut p = Probe::new(Time::ZERO);
        p.set_phase(Phase::Recv { got: 0 });
    }

    /// The next grid point is one period after the last, whatever the check took; grid
    /// points already past are skipped and counted, never crowded in.
    #[test]
    fn the_next_grid_point_skips_what_is_past() {
        let (at, p) = (Time(1_000_000), 500_000);
        // On time, or late by less than a period: the next point, nothing missed.
        assert_eq!(
            next_grid_point(at, Time(1_000_250), p),
            (Time(1_500_000), 0)
        );
        assert_eq!(
            next_grid_point(at, Time(1_499_999), p),
            (Time(1_500_000), 0)
        );
        // At the next point itself: that one is past.
        assert_eq!(
            next_grid_point(at, Time(1_500_000), p),
            (Time(2_000_000), 1)
        );
        // Two and a half periods on: two skipped, the third ahead.
        assert_eq!(
            next_grid_point(at, Time(2_250_000), p),
            (Time(2_500_000), 2)
        );
    }

    /// A waiting probe's timer starts its check; whether it waits for a buffer is asked only
    /// of a receiving check past its deadline.
    #[test]
    fn a_waiting_probe_starts_when_its_timer_fires() {
        let p = Probe::new(Time(1_000_000));
        let fired = timer_fired(&p, 200_000, 1_000_000, Time(1_000_000), || {
            panic!("asked about a buffer")
        });
        assert_eq!(fired, Fired::Start);
    }

    /// Closing is the one way back to WAIT, from any phase; WAIT to WAIT is a close of a
    /// probe that held nothing.
    #[test]
    fn wait_follows_any_phase() {
        let mut p = Probe::new(Time::ZERO);
        p.set_phase(Phase::Wait);
        assert_eq!(p.phase(), Phase::Wait);
    }
}
