//! Located words to a validated [`Plan`]: the second half of reading `lvsmon.conf`.
//!
//! This is where the config language gets its meaning (lvsmon.conf(5)): which keyword may stand
//! at which level, what each setting's value looks like, the defaults, and the override order
//! real > virtual > global > default. It also resolves every address and builds every check's
//! plugin, so the daemon receives nothing it still has to interpret. What one setting's words
//! mean on their own (a duration, an address, a count in its range) is [`super::values`]';
//! which reals share one probe, and which notify lines one argv, is [`super::merge`]'s.
//!
//! It works in two passes. The first walks the [`Document`] in file order and checks each
//! statement on its own (so the first mistake in the file is the one reported); the second
//! resolves, real by real, the settings that depend on several levels at once (an address
//! family against the effective `forward`, `connect-timeout` against `timeout`, the check and
//! its target).
//!
//! Invariants of the [`Plan`] it returns:
//! - `Plan::reals` is grouped by virtual, in file order, and each `VirtualPlan::reals` is the
//!   range of its own reals; no two virtuals share a key, no virtual has a real twice;
//! - every `RealPlan::check` (and `RealPlan::more_checks`) indexes `Plan::checks`, and every
//!   real appears in the `CheckPlan::reals` (ascending) of each of its checks, once per check
//!   line; no two `CheckPlan`s have the same target, spec and timing;
//! - every `RealPlan::notify` indexes `Plan::notifies`, whose entries are distinct and non-empty;
//! - every duration that paces or bounds a check is greater than zero, and each real's
//!   `connect-timeout` is at most its `timeout`.
//!
//! Planning allocates freely (it runs once, at startup), but does nothing quadratic: 100,000
//! reals behind 1,000 virtuals plan in about 0.1 to 0.2 s in release mode, most of it spent
//! building the plugins' requests and touching fresh memory (see the `plan_100k` test).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use super::director::{self, IpvsTimeouts, SyncDaemon, TrackFile, Tunnel};
use super::merge::{self, fast_map, Checks, FastMap, Notifies, Timing};
use super::parse::{Document, Pos, Statement, Word};
use super::values::{self, show_duration, MAX_INTERVAL, MAX_NOTIFY_MAX, MAX_WEIGHT, MIN_INTERVAL};
use super::{
    ConfigError, Forward, HistorySpec, OnDown, Plan, Proto, RealPlan, ServiceKey, Slow, SockOpts,
    SorryMode, Thresholds, VirtualPlan, WeightRules,
};
use crate::plugins::{CheckSpec, PluginError, Target, PLUGIN_NAMES};

/// `interval` when none is set anywhere (and no `--interval` is given).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// `connect-timeout` when none is set.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `timeout` when none is set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// `fall` when none is set.
pub const DEFAULT_FALL: u32 = 3;
/// `rise` when none is set.
pub const DEFAULT_RISE: u32 = 2;
/// `on-down` when none is set.
pub const DEFAULT_ON_DOWN: OnDown = OnDown::Quiesce;
/// `forward` when none is set: direct routing, as ipvsadm's own default (`-g`).
pub const DEFAULT_FORWARD: Forward = Forward::Route;
/// `notify-max` when none is set.
pub const DEFAULT_NOTIFY_MAX: u32 = 8;
/// `exec-max`: `exec` check programs running at once.
pub const DEFAULT_EXEC_MAX: u32 = 32;
/// The most `exec-max` may be.
pub const MAX_EXEC_MAX: u32 = 1024;
/// `resync` when none is set.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
/// `history` when none is set: `history raw 10m minute 2h hour 2d`.
pub const DEFAULT_HISTORY: HistorySpec = HistorySpec {
    raw: Duration::from_secs(600),
    minute: Duration::from_secs(2 * 3600),
    hour: Duration::from_secs(2 * 86400),
};
/// `scheduler` when none is set.
pub const DEFAULT_SCHEDULER: &str = "wlc";
/// `quorum` when none is set.
pub const DEFAULT_QUORUM: u32 = 1;
/// A real's weight when its line gives none.
pub const DEFAULT_WEIGHT: u32 = 1;

/// Builds the plan from a parsed document. `interval_override` (from `--interval`) replaces the
/// global `interval`; intervals set inside a `virtual` or `real` still win over it.
///
/// # Errors
/// The first mistake, pointing at the word at fault and saying what was expected.
pub fn plan(doc: &Document, interval_override: Option<Duration>) -> Result<Plan, ConfigError> {
    if let Some(d) = interval_override.filter(|d| !(MIN_INTERVAL..=MAX_INTERVAL).contains(d)) {
        return Err(ConfigError::File {
            path: doc.files.first().cloned().unwrap_or_default(),
            message: format!(
                "--interval {} is out of range (expected {} to {} seconds)",
                d.as_secs_f64(),
                MIN_INTERVAL.as_secs_f64(),
                MAX_INTERVAL.as_secs()
            ),
        });
    }
    let n_reals = count_reals(doc);
    let mut p = Planner {
        doc,
        global: Layer::default(),
        virtuals: Vec::new(),
        reals: Vec::with_capacity(n_reals),
        checks: Vec::new(),
        notifies: Vec::new(),
        virtual_at: fast_map(0),
        real_at: fast_map(n_reals),
    };
    p.first_pass()?;
    p.second_pass(interval_override)
}

// ---------------------------------------------------------------------------------------------
// Keywords and levels

/// Where a statement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Global,
    Virtual,
    Real,
}

const G: u8 = 1;
const V: u8 = 2;
const R: u8 = 4;

impl Level {
    fn bit(self) -> u8 {
        match self {
            Level::Global => G,
            Level::Virtual => V,
            Level::Real => R,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Global => "at the top level",
            Level::Virtual => "in a virtual block",
            Level::Real => "in a real block",
        }
    }
}

/// Every keyword with the levels where it may stand, in the order messages list them.
const KEYWORDS: &[(&str, u8)] = &[
    ("interval", G | V | R),
    ("connect-timeout", G | V | R),
    ("timeout", G | V | R),
    ("fall", G | V | R),
    ("rise", G | V | R),
    ("down-after", G | V | R),
    ("retry-interval", G | V | R),
    ("on-down", G | V | R),
    ("forward", G | V | R),
    ("notify", G | V | R),
    ("check", G | V | R),
    ("slow-above", G | V | R),
    ("slow-start", G | V | R),
    ("agent", G | V | R),
    ("notify-max", G),
    ("exec-max", G),
    ("notify-fifo", G),
    ("max-checks-in-flight", G),
    ("resync", G),
    ("history", G),
    ("scheduler", G | V),
    ("persistent", G | V),
    ("quorum", G | V),
    ("u-threshold", G | V | R),
    ("l-threshold", G | V | R),
    ("persistence-netmask", V),
    ("one-packet", V),
    ("sched-flags", V),
    ("ipvs-timeouts", G),
    ("sync-daemon", G),
    ("track-file", G),
    ("sorry", V),
    ("virtual", G),
    ("real", V),
    ("include", G | V | R),
];

/// "at the top level or in a virtual block".
fn levels_text(bits: u8) -> String {
    let names: Vec<&str> = [Level::Global, Level::Virtual, Level::Real]
        .into_iter()
        .filter(|l| bits & l.bit() != 0)
        .map(Level::name)
        .collect();
    names.join(" or ")
}

// ---------------------------------------------------------------------------------------------
// What the first pass collects

/// A value given at one level, and where its keyword stands.
#[derive(Debug, Clone)]
struct Set<T> {
    value: T,
    pos: Pos,
}

/// The settings given at one level (the top level, one virtual or one real).
#[derive(Debug, Default)]
struct Layer {
    interval: Option<Set<Duration>>,
    connect_timeout: Option<Set<Duration>>,
    timeout: Option<Set<Duration>>,
    /// `fall N` or `fall N within D`.
    fall: Option<Set<(u32, Option<Duration>)>>,
    rise: Option<Set<u32>>,
    down_after: Option<Set<Duration>>,
    retry_interval: Option<Set<Duration>>,
    on_down: Option<Set<OnDown>>,
    forward: Option<Set<Forward>>,
    /// Index into `Planner::notifies`.
    notify: Option<Set<usize>>,
    /// Indices into `Planner::checks`: the level's `check` lines, in order (several are all
    /// run; `pos` is the first's).
    check: Option<Set<Vec<usize>>>,
    notify_max: Option<Set<u32>>,
    /// `exec-max N`.
    exec_max: Option<Set<u32>>,
    /// `agent PORT [--interval D] [--send TEXT]`: its probe's line in `Planner::checks`, and
    /// its interval when given.
    agent: Option<Set<(usize, Option<Duration>)>>,
    /// `notify-fifo PATH`, and where the path word stands.
    notify_fifo: Option<Set<(Vec<u8>, Pos)>>,
    max_in_flight: Option<Set<u32>>,
    resync: Option<Set<Duration>>,
    history: Option<Set<HistorySpec>>,
    scheduler: Option<Set<String>>,
    persistent: Option<Set<Duration>>,
    quorum: Option<Set<u32>>,
    /// The sorry server and where its address word stands, `--mode` and `--forward`.
    sorry: Option<Set<(SocketAddr, Pos, SorryMode, Forward)>>,
    /// `slow-above D cancel-below D [slow-weight P%]`.
    slow: Option<Set<Slow>>,
    slow_start: Option<Set<Duration>>,
    // Director pairs (see `director`): IPVS attributes the config owns, and global settings.
    u_threshold: Option<Set<u32>>,
    l_threshold: Option<Set<u32>>,
    /// The encapsulation given with this level's `forward tunnel`, if any.
    tunnel: Option<Tunnel>,
    netmask: Option<Set<u8>>,
    one_packet: Option<Set<bool>>,
    /// The bits and the scheduler they need.
    sched_flags: Option<Set<(u32, Option<&'static str>)>>,
    ipvs_timeouts: Option<Set<IpvsTimeouts>>,
    sync_daemons: Vec<Set<SyncDaemon>>,
    track_file: Option<Set<TrackFile>>,
}

/// A `virtual` block after the first pass.
struct VirtualRaw {
    key: ServiceKey,
    /// The `virtual` keyword.
    pos: Pos,
    layer: Layer,
    /// Indices into `Planner::reals`.
    reals: Range<usize>,
}

/// A `real` line after the first pass.
struct RealRaw {
    /// Address and port, the port defaulted from the virtual.
    addr: SocketAddr,
    weight: u32,
    /// Its block's settings; most reals have none.
    layer: Option<Box<Layer>>,
    /// The `real` keyword.
    pos: Pos,
    /// The address word.
    addr_pos: Pos,
}

/// A `check` line with `--port`, `--address`, `--source` and `--mark` taken out.
struct CheckLine<'d> {
    /// The plugin name's word.
    name: &'d Word,
    port: Option<u16>,
    address: Option<IpAddr>,
    /// `--source` and `--mark`; the `--source` value's word, for a family mismatch.
    sock: SockOpts,
    source_pos: Option<Pos>,
    /// The words handed to the plugin, in order, and where each stands.
    args: Vec<&'d [u8]>,
    arg_pos: Vec<Pos>,
    /// The virtual's address for a check in a virtual block (a stand-in target when no real
    /// uses the line, so that its mistakes still show).
    scope: Option<SocketAddr>,
    /// Whether some real's check is this line.
    used: bool,
}

/// Settings in force for one real (or one virtual), most specific first.
#[derive(Clone, Copy)]
struct Scope<'a> {
    real: Option<&'a Layer>,
    virt: Option<&'a Layer>,
    global: &'a Layer,
}

impl<'a> Scope<'a> {
    /// The nearest value of one setting and its rank (0 real, 1 virtual, 2 global).
    fn ranked<T>(&self, f: impl Fn(&'a Layer) -> &'a Option<Set<T>>) -> Option<(&'a Set<T>, u8)> {
        if let Some(s) = self.real.and_then(|l| f(l).as_ref()) {
            return Some((s, 0));
        }
        if let Some(s) = self.virt.and_then(|l| f(l).as_ref()) {
            return Some((s, 1));
        }
        f(self.global).as_ref().map(|s| (s, 2))
    }

    /// The nearest value of one setting.
    fn find<T>(&self, f: impl Fn(&'a Layer) -> &'a Option<Set<T>>) -> Option<&'a Set<T>> {
        self.ranked(f).map(|(s, _)| s)
    }

    fn forward(&self) -> Forward {
        self.find(|l| &l.forward)
            .map_or(DEFAULT_FORWARD, |s| s.value)
    }

    /// The encapsulation of the nearest `forward tunnel ...`: it goes with the `forward` that
    /// wins, so a real's own `forward tunnel` without a type owns none.
    fn tunnel(&self) -> Option<Tunnel> {
        match self.ranked(|l| &l.forward) {
            Some((s, rank)) if s.value == Forward::Tunnel => match rank {
                0 => self.real.and_then(|l| l.tunnel),
                1 => self.virt.and_then(|l| l.tunnel),
                _ => self.global.tunnel,
            },
            _ => None,
        }
    }
}

struct Planner<'d> {
    doc: &'d Document,
    global: Layer,
    virtuals: Vec<VirtualRaw>,
    reals: Vec<RealRaw>,
    checks: Vec<CheckLine<'d>>,
    /// `notify` lines: their argv words.
    notifies: Vec<&'d [Word]>,
    /// Where each virtual key was first defined.
    virtual_at: FastMap<ServiceKey, Pos>,
    /// Where each (virtual, real address) was first defined.
    real_at: FastMap<(usize, SocketAddr), Pos>,
}

// ---------------------------------------------------------------------------------------------
// The first pass: every statement on its own, in file order

impl<'d> Planner<'d> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        self.doc.error(pos, message)
    }

    fn first_pass(&mut self) -> Result<(), ConfigError> {
        let doc = self.doc;
        let mut global = Layer::default();
        for st in &doc.statements {
            match self.keyword(st, Level::Global)? {
                "virtual" => self.virtual_block(st)?,
                _ => self.setting(st, Level::Global, &mut global, None)?,
            }
        }
        self.global = global;
        Ok(())
    }

    /// The statement's keyword if it may stand at `level`.
    fn keyword(&self, st: &Statement, level: Level) -> Result<&'static str, ConfigError> {
        let kw = st.keyword();
        match KEYWORDS.iter().find(|(name, _)| kw.is(name)) {
            Some(&(name, bits)) if bits & level.bit() != 0 => Ok(name),
            Some(&(name, bits)) => Err(self.err(
                kw.pos,
                format!(
                    "{name} is not allowed {} (only {})",
                    level.name(),
                    levels_text(bits)
                ),
            )),
            None => {
                let allowed: Vec<&str> = KEYWORDS
                    .iter()
                    .filter(|(_, bits)| bits & level.bit() != 0)
                    .map(|(name, _)| *name)
                    .collect();
                Err(self.err(
                    kw.pos,
                    format!(
                        "unknown setting {} {} (expected one of: {})",
                        kw.show(),
                        level.name(),
                        allowed.join(", ")
                    ),
                ))
            }
        }
    }

    /// `virtual tcp|udp|sctp ADDR:PORT {` or `virtual fwmark N {`, and its block.
    fn virtual_block(&mut self, st: &'d Statement) -> Result<(), ConfigError> {
        let w = &st.words;
        let Some(kind) = w.get(1) else {
            return Err(self.err(
                w[0].pos,
                "expected a service after virtual (virtual tcp|udp|sctp ADDR:PORT { or \
                 virtual fwmark N {)",
            ));
        };
        let proto = match kind.as_str() {
            Some("tcp") => Some(Proto::Tcp),
            Some("udp") => Some(Proto::Udp),
            Some("sctp") => Some(Proto::Sctp),
            Some("fwmark") => None,
            _ => {
                return Err(self.err(
                    kind.pos,
                    format!(
                        "unknown virtual service type {} (expected one of: tcp, udp, sctp, \
                         fwmark)",
                        kind.show()
                    ),
                ))
            }
        };
        let Some(value) = w.get(2) else {
            let what = if proto.is_some() {
                "ADDR:PORT"
            } else {
                "a mark number"
            };
            return Err(self.err(
                kind.pos,
                format!(
                    "expected {what} after virtual {}",
                    kind.show().trim_matches('"')
                ),
            ));
        };
        let key = match proto {
            Some(proto) => {
                let (ip, port) = values::endpoint(self.doc, value, true)?;
                values::usable(self.doc, value, ip, "a virtual service")?;
                ServiceKey::Inet(proto, SocketAddr::new(ip, port.unwrap_or(0)))
            }
            None => ServiceKey::Fwmark(values::fwmark(self.doc, value)?),
        };
        if let Some(extra) = w.get(3) {
            return Err(self.err(
                extra.pos,
                format!(
                    "unexpected {} after the virtual's address (expected `{{`)",
                    extra.show()
                ),
            ));
        }
        let Some(block) = &st.block else {
            return Err(self.err(
                value.pos,
                "expected `{` at the end of the virtual line (a virtual service is a block)",
            ));
        };
        if let Some(first) = self.virtual_at.get(&key) {
            return Err(self.err(
                w[0].pos,
                format!(
                    "virtual {key} already defined at {}",
                    self.doc.place(*first)
                ),
            ));
        }
        self.virtual_at.insert(key, w[0].pos);

        let index = self.virtuals.len();
        let scope = match key {
            ServiceKey::Inet(_, a) => Some(a),
            ServiceKey::Fwmark(_) => None,
        };
        let start = self.reals.len();
        let mut layer = Layer::default();
        for inner in &block.statements {
            match self.keyword(inner, Level::Virtual)? {
                "real" => self.real(inner, index, key)?,
                _ => self.setting(inner, Level::Virtual, &mut layer, scope)?,
            }
        }
        self.virtuals.push(VirtualRaw {
            key,
            pos: w[0].pos,
            layer,
            reals: start..self.reals.len(),
        });
        Ok(())
    }

    /// `real ADDR[:PORT] [weight N]`, maybe with a block.
    fn real(
        &mut self,
        st: &'d Statement,
        virtual_idx: usize,
        key: ServiceKey,
    ) -> Result<(), ConfigError> {
        let w = &st.words;
        let Some(addr_word) = w.get(1) else {
            return Err(self.err(
                w[0].pos,
                "expected an address after real (real ADDR[:PORT] [weight N])",
            ));
        };
        let (ip, port) = values::endpoint(self.doc, addr_word, false)?;
        values::usable(self.doc, addr_word, ip, "a real server")?;
        let port = port.unwrap_or(match key {
            ServiceKey::Inet(_, a) => a.port(),
            ServiceKey::Fwmark(_) => 0,
        });
        let addr = SocketAddr::new(ip, port);
        let mut weight = DEFAULT_WEIGHT;
        match &w[2..] {
            [] => {}
            [kw] if kw.is("weight") => {
                return Err(self.err(
                    kw.pos,
                    format!("expected a number 0..{MAX_WEIGHT} after weight"),
                ))
            }
            [kw, n, rest @ ..] if kw.is("weight") => {
                weight = values::number(self.doc, n, 0, MAX_WEIGHT.into(), "weight")? as u32;
                if let Some(extra) = rest.first() {
                    return Err(self.err(
                        extra.pos,
                        format!(
                            "unexpected {} (expected the end of the real line)",
                            extra.show()
                        ),
                    ));
                }
            }
            [other, ..] => {
                return Err(self.err(
                    other.pos,
                    format!(
                        "unexpected {} after the real's address (expected `weight N`, `{{` or \
                         the end of the line)",
                        other.show()
                    ),
                ))
            }
        }
        if let Some(first) = self.real_at.get(&(virtual_idx, addr)) {
            return Err(self.err(
                w[0].pos,
                format!(
                    "real {addr} already defined in this virtual at {}",
                    self.doc.place(*first)
                ),
            ));
        }
        self.real_at.insert((virtual_idx, addr), w[0].pos);
        let layer = match &st.block {
            None => None,
            Some(block) => {
                let mut layer = Layer::default();
                for inner in &block.statements {
                    self.keyword(inner, Level::Real)?;
                    self.setting(inner, Level::Real, &mut layer, Some(addr))?;
                }
                Some(Box::new(layer))
            }
        };
        self.reals.push(RealRaw {
            addr,
            weight,
            layer,
            pos: w[0].pos,
            addr_pos: addr_word.pos,
        });
        Ok(())
    }

    /// One setting (its keyword already allowed at `level`) into `layer`.
    fn setting(
        &mut self,
        st: &'d Statement,
        level: Level,
        layer: &mut Layer,
        scope: Option<SocketAddr>,
    ) -> Result<(), ConfigError> {
        let kw = st.keyword();
        let args = &st.words[1..];
        let name = kw.as_str().unwrap_or_default();
        if let Some(block) = &st.block {
            return Err(self.err(
                block.open,
                format!("expected no `{{` after {name} (only virtual and real open a block)"),
            ));
        }
        match name {
            "interval" => self.put(&mut layer.interval, kw, || {
                values::interval(self.doc, kw, args)
            }),
            "connect-timeout" => self.put(&mut layer.connect_timeout, kw, || {
                values::positive(self.doc, kw, args)
            }),
            "timeout" => self.put(&mut layer.timeout, kw, || {
                values::positive(self.doc, kw, args)
            }),
            "down-after" => self.put(&mut layer.down_after, kw, || {
                values::positive(self.doc, kw, args)
            }),
            "retry-interval" => self.put(&mut layer.retry_interval, kw, || {
                values::interval(self.doc, kw, args)
            }),
            "resync" => self.put(&mut layer.resync, kw, || {
                values::positive(self.doc, kw, args)
            }),
            "history" => self.put(&mut layer.history, kw, || {
                values::history(self.doc, kw, args)
            }),
            "fall" => self.put(&mut layer.fall, kw, || values::fall(self.doc, kw, args)),
            "rise" => self.put(&mut layer.rise, kw, || {
                values::count(self.doc, kw, args, u32::MAX)
            }),
            "max-checks-in-flight" => self.put(&mut layer.max_in_flight, kw, || {
                values::count(self.doc, kw, args, u32::MAX)
            }),
            "exec-max" => self.put(&mut layer.exec_max, kw, || {
                values::count(self.doc, kw, args, MAX_EXEC_MAX)
            }),
            "notify-max" => self.put(&mut layer.notify_max, kw, || {
                values::count(self.doc, kw, args, MAX_NOTIFY_MAX)
            }),
            "notify-fifo" => self.put(&mut layer.notify_fifo, kw, || {
                let w = values::one(self.doc, kw, args, "a path (notify-fifo PATH)")?;
                if w.text.is_empty() || w.text.contains(&0) {
                    return Err(self.err(
                        w.pos,
                        "expected a path after notify-fifo (not empty, no NUL byte)",
                    ));
                }
                Ok((w.text.clone(), w.pos))
            }),
            "quorum" => self.put(&mut layer.quorum, kw, || {
                let w = values::one(self.doc, kw, args, "a number of reals")?;
                Ok(values::number(self.doc, w, 0, u32::MAX.into(), "quorum")? as u32)
            }),
            "on-down" => self.put(&mut layer.on_down, kw, || {
                values::on_down(self.doc, kw, args)
            }),
            "forward" if args.len() > 1 && args[0].is("tunnel") => {
                self.put(&mut layer.forward, kw, || Ok(Forward::Tunnel))?;
                layer.tunnel = director::tunnel(self.doc, &args[1..])?;
                Ok(())
            }
            "forward" => self.put(&mut layer.forward, kw, || {
                values::forward(self.doc, kw, args)
            }),
            "u-threshold" => self.put(&mut layer.u_threshold, kw, || {
                director::threshold(self.doc, kw, args)
            }),
            "l-threshold" => self.put(&mut layer.l_threshold, kw, || {
                director::threshold(self.doc, kw, args)
            }),
            "persistence-netmask" => self.put(&mut layer.netmask, kw, || {
                director::netmask(self.doc, kw, args, scope.is_some_and(|a| a.is_ipv6()))
            }),
            "one-packet" => self.put(&mut layer.one_packet, kw, || {
                director::yes_no(self.doc, kw, args)
            }),
            "sched-flags" => self.put(&mut layer.sched_flags, kw, || {
                director::sched_flags(self.doc, kw, args)
            }),
            "ipvs-timeouts" => self.put(&mut layer.ipvs_timeouts, kw, || {
                director::ipvs_timeouts(self.doc, kw, args)
            }),
            "track-file" => self.put(&mut layer.track_file, kw, || {
                director::track_file(self.doc, kw, args)
            }),
            "sync-daemon" => {
                let d = director::sync_daemon(self.doc, kw, args)?;
                if let Some(first) = layer
                    .sync_daemons
                    .iter()
                    .find(|s| s.value.backup == d.backup)
                {
                    return Err(self.err(
                        kw.pos,
                        format!(
                            "sync-daemon {} already set at {} (one master and one backup at most)",
                            d.state(),
                            self.doc.place(first.pos)
                        ),
                    ));
                }
                layer.sync_daemons.push(Set {
                    value: d,
                    pos: kw.pos,
                });
                Ok(())
            }
            "scheduler" => self.put(&mut layer.scheduler, kw, || {
                values::scheduler(self.doc, kw, args)
            }),
            "persistent" => self.put(&mut layer.persistent, kw, || {
                values::persistent(self.doc, kw, args)
            }),
            "sorry" => self.put(&mut layer.sorry, kw, || {
                let Some((w, opts)) = args.split_first() else {
                    return Err(self.err(kw.pos, "expected ADDR:PORT after sorry"));
                };
                let (ip, port) = values::endpoint(self.doc, w, true)?;
                values::usable(self.doc, w, ip, "a sorry server")?;
                let (mode, forward) = values::sorry_options(self.doc, opts)?;
                Ok((SocketAddr::new(ip, port.unwrap_or(0)), w.pos, mode, forward))
            }),
            "slow-above" => self.put(&mut layer.slow, kw, || values::slow(self.doc, kw, args)),
            "slow-start" => self.put(&mut layer.slow_start, kw, || {
                values::positive(self.doc, kw, args)
            }),
            "notify" => {
                self.free(&layer.notify, kw)?;
                if args.is_empty() || args[0].text.is_empty() {
                    return Err(self.err(
                        args.first().map_or(kw.pos, |w| w.pos),
                        "expected a command after notify (notify PROGRAM [ARG...])",
                    ));
                }
                if let Some(w) = args.iter().find(|w| w.text.contains(&0)) {
                    return Err(self.err(
                        w.pos,
                        "expected no NUL byte (\\x00) in a notify word: argv words are C \
                         strings",
                    ));
                }
                if !args[0].text.contains(&b'/') {
                    return Err(self.err(
                        args[0].pos,
                        "expected a path to the notify program (such as /usr/local/sbin/lvs-notify): \
                         it is started without a shell or a PATH search",
                    ));
                }
                layer.notify = Some(Set {
                    value: self.notifies.len(),
                    pos: kw.pos,
                });
                self.notifies.push(args);
                Ok(())
            }
            "agent" => {
                self.free(&layer.agent, kw)?;
                let (line, interval) = self.agent_line(kw, args, scope)?;
                layer.agent = Some(Set {
                    value: (self.checks.len(), interval),
                    pos: kw.pos,
                });
                self.checks.push(line);
                Ok(())
            }
            "check" => {
                let line = self.check_line(kw, args, scope)?;
                let i = self.checks.len();
                self.checks.push(line);
                match &mut layer.check {
                    // Several check lines at one level: all of them run.
                    Some(s) if s.value.len() >= MAX_CHECKS_PER_REAL => Err(self.err(
                        kw.pos,
                        format!(
                            "more than {MAX_CHECKS_PER_REAL} check lines in one block \
                             (expected at most {MAX_CHECKS_PER_REAL})"
                        ),
                    )),
                    Some(s) => {
                        s.value.push(i);
                        Ok(())
                    }
                    None => {
                        layer.check = Some(Set {
                            value: vec![i],
                            pos: kw.pos,
                        });
                        Ok(())
                    }
                }
            }
            "include" => Err(self.err(kw.pos, "include was not expanded by the parser")),
            other => Err(self.err(
                kw.pos,
                format!(
                    "{other} is not allowed {} (it opens a block of its own)",
                    level.name()
                ),
            )),
        }
    }

    /// Stores a setting's value unless the level already has one.
    fn put<T>(
        &self,
        slot: &mut Option<Set<T>>,
        kw: &Word,
        value: impl FnOnce() -> Result<T, ConfigError>,
    ) -> Result<(), ConfigError> {
        self.free(slot, kw)?;
        *slot = Some(Set {
            value: value()?,
            pos: kw.pos,
        });
        Ok(())
    }

    /// The director-pair settings of virtual `v` that depend on others: `one-packet` only
    /// on UDP, `sched-flags` only with their scheduler.
    fn director_virtual(&self, v: &VirtualRaw, vs: &Scope<'_>) -> Result<(), ConfigError> {
        if let (Some(s), ServiceKey::Inet(p, _)) = (&v.layer.one_packet, v.key) {
            if s.value && p != Proto::Udp {
                return Err(self.err(
                    s.pos,
                    format!(
                        "one-packet yes applies to UDP only, and virtual {} is {}",
                        v.key,
                        p.as_str()
                    ),
                ));
            }
        }
        if let Some(s) = &v.layer.sched_flags {
            let sched = vs
                .find(|l| &l.scheduler)
                .map_or(DEFAULT_SCHEDULER, |s| s.value.as_str());
            if let Some(need) = s.value.1.filter(|n| *n != sched) {
                return Err(self.err(
                    s.pos,
                    format!(
                        "sched-flags {need}-... apply to scheduler {need}, and virtual {} uses                          {sched}",
                        v.key
                    ),
                ));
            }
        }
        Ok(())
    }

    /// An error if the level already set this setting.
    fn free<T>(&self, slot: &Option<Set<T>>, kw: &Word) -> Result<(), ConfigError> {
        match slot {
            None => Ok(()),
            Some(first) => Err(self.err(
                kw.pos,
                format!(
                    "{} already set at {} (a setting may be given once per level)",
                    kw.as_str().unwrap_or_default(),
                    self.doc.place(first.pos)
                ),
            )),
        }
    }

    /// `agent PORT [--interval D] [--send TEXT]`: a check line of the agent's own (its probe
    /// connects to the real's address on PORT) and the interval, when given.
    fn agent_line(
        &self,
        kw: &'d Word,
        args: &'d [Word],
        scope: Option<SocketAddr>,
    ) -> Result<(CheckLine<'d>, Option<Duration>), ConfigError> {
        const USAGE: &str = "agent PORT [--interval D] [--send TEXT]";
        let Some(port_word) = args.first() else {
            return Err(self.err(kw.pos, format!("expected a port after agent ({USAGE})")));
        };
        let port = values::port(self.doc, port_word, port_word.as_str().unwrap_or_default())?;
        let mut line = CheckLine {
            name: kw,
            port: Some(port),
            address: None,
            sock: SockOpts::default(),
            source_pos: None,
            args: Vec::new(),
            arg_pos: Vec::new(),
            scope,
            used: false,
        };
        let mut interval = None;
        let mut i = 1;
        while i < args.len() {
            let w = &args[i];
            let Some(value) = args.get(i + 1) else {
                return Err(self.err(
                    w.pos,
                    format!(
                        "expected a value after {} ({USAGE})",
                        String::from_utf8_lossy(&w.text)
                    ),
                ));
            };
            if w.is("--interval") && interval.is_none() {
                interval = Some(values::interval(self.doc, w, std::slice::from_ref(value))?);
            } else if w.is("--send") && line.args.is_empty() {
                line.args = vec![&w.text, &value.text];
                line.arg_pos = vec![w.pos, value.pos];
            } else {
                return Err(self.err(
                    w.pos,
                    format!(
                        "unexpected {} (expected {USAGE}, each option once)",
                        String::from_utf8_lossy(&w.text)
                    ),
                ));
            }
            i += 2;
        }
        Ok((line, interval))
    }

    /// `check PLUGIN OPTION...`: the plugin name checked, `--port`/`--address` taken out.
    fn check_line(
        &self,
        kw: &Word,
        args: &'d [Word],
        scope: Option<SocketAddr>,
    ) -> Result<CheckLine<'d>, ConfigError> {
        let expected = PLUGIN_NAMES.join(", ");
        let Some(name) = args.first() else {
            return Err(self.err(
                kw.pos,
                format!("expected a plugin name after check (expected one of: {expected})"),
            ));
        };
        if !PLUGIN_NAMES.iter().any(|p| name.is(p)) {
            return Err(self.err(
                name.pos,
                format!(
                    "unknown plugin {} (expected one of: {expected})",
                    name.show()
                ),
            ));
        }
        let mut line = CheckLine {
            name,
            port: None,
            address: None,
            sock: SockOpts::default(),
            source_pos: None,
            args: Vec::new(),
            arg_pos: Vec::new(),
            scope,
            used: false,
        };
        const OURS: [&str; 4] = ["--port", "--address", "--source", "--mark"];
        let mut i = 1;
        while i < args.len() {
            let w = &args[i];
            let found = OURS.iter().copied().find(|o| {
                w.text.starts_with(o.as_bytes())
                    && (w.text.len() == o.len() || w.text.get(o.len()) == Some(&b'='))
            });
            let Some(option) = found else {
                if name.is("exec") && !w.text.starts_with(b"--") {
                    // The program: it and every word after it are the program's own.
                    for w in &args[i..] {
                        line.args.push(&w.text);
                        line.arg_pos.push(w.pos);
                    }
                    break;
                }
                line.args.push(&w.text);
                line.arg_pos.push(w.pos);
                i += 1;
                continue;
            };
            let inline = w
                .text
                .get(option.len() + 1..)
                .filter(|_| w.text.len() > option.len());
            let what = match option {
                "--port" => "a port 1..65535",
                "--mark" => "a firewall mark 1..4294967295",
                _ => "an IP address",
            };
            // `--port N` or `--port=N`: the value's word is this one or the next.
            let (value, value_word): (&[u8], &Word) = match inline {
                Some(v) => (v, w),
                None => match args.get(i + 1) {
                    Some(next) => (&next.text, next),
                    None => {
                        return Err(self.err(w.pos, format!("expected {what} after {option}")));
                    }
                },
            };
            i += if inline.is_some() { 1 } else { 2 };
            let text = std::str::from_utf8(value).unwrap_or_default();
            let twice = match option {
                "--port" => line.port.is_some(),
                "--address" => line.address.is_some(),
                "--source" => line.sock.source.is_some(),
                _ => line.sock.mark.is_some(),
            };
            if twice {
                return Err(self.err(w.pos, format!("{option} given twice in one check")));
            }
            if option == "--port" {
                line.port = Some(values::port(self.doc, value_word, text)?);
                continue;
            }
            if option == "--mark" {
                let mark = parse_mark(text).ok_or_else(|| {
                    self.err(
                        value_word.pos,
                        format!("expected {what} (decimal or 0x hex) after --mark, not {text:?}"),
                    )
                })?;
                line.sock.mark = Some(mark);
                continue;
            }
            let bare = text
                .strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .unwrap_or(text);
            values::no_scope_id(self.doc, value_word, bare)?;
            let ip: IpAddr = bare.parse().map_err(|_| {
                self.err(
                    value_word.pos,
                    format!("expected an IP address after {option}, not {text:?}"),
                )
            })?;
            if let IpAddr::V6(v6) = ip {
                if v6.segments()[0] & 0xffc0 == 0xfe80 {
                    return Err(self.err(
                        value_word.pos,
                        format!(
                            "link-local address {v6} cannot be a check {}: it needs an \
                             interface (scope id) lvsmon does not carry; use a global or ULA \
                             address",
                            if option == "--source" {
                                "source"
                            } else {
                                "target"
                            }
                        ),
                    ));
                }
            }
            if option == "--source" {
                values::usable(self.doc, value_word, ip, "a check's source")?;
                line.sock.source = Some(ip);
                line.source_pos = Some(value_word.pos);
            } else {
                values::usable(self.doc, value_word, ip, "a check target")?;
                line.address = Some(ip);
            }
        }
        Ok(line)
    }
}

/// The most `check` lines one block may have (a real's checks are numbered in a bit mask).
pub const MAX_CHECKS_PER_REAL: usize = 32;

/// A `--mark` value: 1..2³²-1, decimal or `0x` hex (0 would mean no mark at all).
fn parse_mark(text: &str) -> Option<u32> {
    let n = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => text.parse().ok()?,
    };
    (n != 0).then_some(n)
}

// ---------------------------------------------------------------------------------------------
// The second pass: effective values, real by real

/// How many `real` lines the document has, to size the tables once.
fn count_reals(doc: &Document) -> usize {
    doc.statements
        .iter()
        .filter(|s| s.keyword().is("virtual"))
        .filter_map(|s| s.block.as_ref())
        .map(|b| {
            b.statements
                .iter()
                .filter(|s| s.keyword().is("real"))
                .count()
        })
        .sum()
}

impl<'d> Planner<'d> {
    fn second_pass(mut self, interval_override: Option<Duration>) -> Result<Plan, ConfigError> {
        let doc = self.doc;
        if self.virtuals.is_empty() {
            return Err(doc.error(
                Pos {
                    file: 0,
                    line: 1,
                    col: 1,
                },
                "no virtual service defined (expected at least one `virtual ... {` block)",
            ));
        }
        let global = std::mem::take(&mut self.global);
        let virtuals = std::mem::take(&mut self.virtuals);
        let reals = std::mem::take(&mut self.reals);
        let top = Scope {
            real: None,
            virt: None,
            global: &global,
        };
        self.timeouts(top)?;

        let mut checks = Checks::with_capacity(reals.len());
        let mut notifies = Notifies::new(self.notifies.len());
        let mut plan_virtuals = Vec::with_capacity(virtuals.len());
        let mut plan_reals = Vec::with_capacity(reals.len());

        for (vi, v) in virtuals.iter().enumerate() {
            let vs = Scope {
                real: None,
                virt: Some(&v.layer),
                global: &global,
            };
            self.timeouts(vs)?;
            let sorry = v.layer.sorry.as_ref().map(|s| s.value);
            if let Some((addr, pos, _, sorry_forward)) = sorry {
                // Its own --forward: only tunnel crosses address families.
                self.family(v.key, addr.ip(), sorry_forward, pos, "sorry server")?;
                // IPVS knows one destination per address and port: the sorry server's
                // removal when quorum returns would delete that real's destination.
                if let Some(r) = reals[v.reals.clone()].iter().find(|r| r.addr == addr) {
                    return Err(doc.error(
                        pos,
                        format!(
                            "sorry server {addr} is also a real server of virtual {} (at {}); \
                             expected a server that is not one of its reals (IPVS has one \
                             destination for both, and taking the sorry server out would \
                             delete the real's)",
                            v.key,
                            doc.place(r.pos)
                        ),
                    ));
                }
            }
            for r in &reals[v.reals.clone()] {
                let rs = Scope {
                    real: r.layer.as_deref(),
                    virt: Some(&v.layer),
                    global: &global,
                };
                if r.layer.is_some() {
                    self.timeouts(rs)?;
                }
                let forward = rs.forward();
                self.family(v.key, r.addr.ip(), forward, r.addr_pos, "real")?;

                let interval = match rs.ranked(|l| &l.interval) {
                    Some((s, rank)) if rank < 2 => s.value,
                    found => interval_override
                        .or(found.map(|(s, _)| s.value))
                        .unwrap_or(DEFAULT_INTERVAL),
                };
                let timeout = rs.find(|l| &l.timeout).map_or(DEFAULT_TIMEOUT, |s| s.value);
                let timing = Timing {
                    interval,
                    retry: rs.find(|l| &l.retry_interval).map_or(interval, |s| s.value),
                    // Left at its default, the connect bound shrinks to fit a short timeout;
                    // only an explicit connect-timeout above timeout is an error.
                    connect: rs
                        .find(|l| &l.connect_timeout)
                        .map_or(DEFAULT_CONNECT_TIMEOUT.min(timeout), |s| s.value),
                    timeout,
                    sock: SockOpts::default(),
                };
                let (fall, within) = rs
                    .find(|l| &l.fall)
                    .map_or((DEFAULT_FALL, None), |s| s.value);
                let thresholds = Thresholds {
                    fall,
                    rise: rs.find(|l| &l.rise).map_or(DEFAULT_RISE, |s| s.value),
                    within,
                    down_after: rs.find(|l| &l.down_after).map(|s| s.value),
                };

                // Each notify line is turned into argv once; equal argvs share one entry.
                let notify = rs
                    .find(|l| &l.notify)
                    .map(|s| notifies.intern(doc, self.notifies[s.value], s.value));

                // Several check lines: all run, the real passes when all pass; an inner
                // level's lines replace the outer ones, all of them.
                let lines: &[usize] = rs.find(|l| &l.check).map_or(&[], |s| &s.value[..]);
                let real_idx = plan_reals.len();
                let mut ids = Vec::with_capacity(lines.len().max(1));
                for k in 0..lines.len().max(1) {
                    let line = lines.get(k).copied();
                    let check = self.real_check(r, v.key, line, timing, real_idx, &mut checks)?;
                    ids.push(check);
                }
                let check = ids[0];
                ids.remove(0);
                let more_checks = ids;
                // The agent's probe: the real's address on the agent's port, on its own grid
                // (its interval, else the check's; the same while failing).
                let agent = match rs.find(|l| &l.agent) {
                    None => None,
                    Some(a) => {
                        let (line, every) = a.value;
                        let every = every.unwrap_or(timing.interval);
                        let t = Timing {
                            interval: every,
                            retry: every,
                            ..timing
                        };
                        Some(self.real_check(r, v.key, Some(line), t, real_idx, &mut checks)?)
                    }
                };

                // IPVS refuses a destination whose lower threshold is above its upper one
                // (ERANGE; an upper 0, no limit, included) when the file owns both.
                let u_threshold = rs.find(|l| &l.u_threshold);
                let l_threshold = rs.find(|l| &l.l_threshold);
                if let (Some(u), Some(l)) = (u_threshold, l_threshold) {
                    if l.value > u.value {
                        return Err(self.err(
                            l.pos,
                            format!(
                                "l-threshold {} is above the u-threshold {} (at {}) of real {}: \
                                 IPVS refuses a lower threshold above the upper one, 0 (no \
                                 limit) included",
                                l.value,
                                u.value,
                                doc.loc(u.pos),
                                r.addr,
                            ),
                        ));
                    }
                }
                plan_reals.push(RealPlan {
                    virtual_idx: vi,
                    addr: r.addr,
                    weight: r.weight,
                    forward,
                    on_down: rs.find(|l| &l.on_down).map_or(DEFAULT_ON_DOWN, |s| s.value),
                    thresholds,
                    weights: WeightRules {
                        slow: rs.find(|l| &l.slow).map(|s| s.value),
                        slow_start: rs.find(|l| &l.slow_start).map(|s| s.value),
                    },
                    check,
                    more_checks,
                    agent,
                    notify,
                    loc: doc.loc(r.pos),
                    u_threshold: u_threshold.map(|s| s.value),
                    l_threshold: l_threshold.map(|s| s.value),
                    tunnel: rs.tunnel(),
                });
            }
            plan_virtuals.push(VirtualPlan {
                key: v.key,
                scheduler: vs
                    .find(|l| &l.scheduler)
                    .map_or_else(|| DEFAULT_SCHEDULER.to_string(), |s| s.value.clone()),
                persistent: vs.find(|l| &l.persistent).map(|s| s.value),
                quorum: vs.find(|l| &l.quorum).map_or(DEFAULT_QUORUM, |s| s.value),
                sorry: sorry.map(|(a, ..)| a),
                sorry_mode: sorry.map_or(SorryMode::Replace, |s| s.2),
                sorry_forward: sorry.map_or(Forward::Masq, |s| s.3),
                reals: v.reals.clone(),
                // Quorum events go to the notify command set for the virtual (or globally).
                notify: vs
                    .find(|l| &l.notify)
                    .map(|s| notifies.intern(doc, self.notifies[s.value], s.value)),
                loc: doc.loc(v.pos),
                netmask: v.layer.netmask.as_ref().map(|s| s.value),
                one_packet: v.layer.one_packet.as_ref().map(|s| s.value),
                sched_flags: v.layer.sched_flags.as_ref().map(|s| s.value.0),
            });
            self.director_virtual(v, &vs)?;
        }

        // A check line no real uses is still parsed, against a stand-in target, so that its
        // mistakes show now rather than when a real starts to use it.
        for i in 0..self.checks.len() {
            let c = &self.checks[i];
            if c.used {
                continue;
            }
            let scope = c
                .scope
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
            let target = merge::target(scope, c.address, c.port);
            self.parse_spec(Some(i), target)?;
        }

        Ok(Plan {
            director: director::Director {
                sync_daemons: global
                    .sync_daemons
                    .iter()
                    .map(|s| s.value.clone())
                    .collect(),
                track_file: global.track_file.as_ref().map(|s| s.value.clone()),
                ipvs_timeouts: global.ipvs_timeouts.as_ref().map(|s| s.value),
            },
            files: doc.files.clone(),
            resync: global.resync.as_ref().map_or(DEFAULT_RESYNC, |s| s.value),
            history: global.history.as_ref().map_or(DEFAULT_HISTORY, |s| s.value),
            exec_max: global
                .exec_max
                .as_ref()
                .map_or(DEFAULT_EXEC_MAX, |s| s.value),
            notify_max: global
                .notify_max
                .as_ref()
                .map_or(DEFAULT_NOTIFY_MAX, |s| s.value),
            max_in_flight: global.max_in_flight.as_ref().map(|s| s.value),
            notifies: notifies.argvs,
            notify_at: notifies.at,
            notify_fifo: global
                .notify_fifo
                .as_ref()
                .map(|s| (s.value.0.clone(), doc.loc(s.value.1))),
            virtuals: plan_virtuals,
            reals: plan_reals,
            checks: checks.into_checks(),
        })
    }

    /// The probe of real `r` (index `real_idx` in the plan) for its check line `line`
    /// (`None`: the default `tcp`): the line's target and socket options checked, then an
    /// equal probe shared or a new one built.
    fn real_check(
        &mut self,
        r: &RealRaw,
        vkey: ServiceKey,
        line: Option<usize>,
        timing: Timing,
        real_idx: usize,
        checks: &mut Checks,
    ) -> Result<usize, ConfigError> {
        let doc = self.doc;
        let target = match line {
            None => r.addr,
            Some(i) => merge::target(r.addr, self.checks[i].address, self.checks[i].port),
        };
        let mut timing = timing;
        if let Some(c) = line.map(|i| &self.checks[i]) {
            timing.sock = c.sock;
            if let (Some(src), Some(pos)) = (c.sock.source, c.source_pos) {
                if src.is_ipv4() != target.is_ipv4() {
                    return Err(doc.error(
                        pos,
                        format!(
                            "--source {src} cannot reach check target {target} of real {} \
                             (expected an address of the target's family)",
                            r.addr
                        ),
                    ));
                }
            }
        }
        // A program needs no port: it gets the real's address (and port 0) in its environment.
        let is_exec = line.is_some_and(|i| self.checks[i].name.text == b"exec");
        if target.port() == 0 && !is_exec {
            return Err(doc.error(
                r.addr_pos,
                format!(
                    "real {} behind virtual {} has no port to check (expected a port \
                     on the real line or --port on its check)",
                    r.addr.ip(),
                    vkey
                ),
            ));
        }
        checks.share(real_idx, line, target, timing, |l, t| self.parse_spec(l, t))
    }

    /// Builds the spec of check line `line` (`None`: the default `tcp`) against `target`.
    fn parse_spec(
        &mut self,
        line: Option<usize>,
        target: SocketAddr,
    ) -> Result<CheckSpec, ConfigError> {
        match line {
            None => CheckSpec::parse("tcp", &[], Target { addr: target }).map_err(|e| {
                self.doc.error(
                    Pos {
                        file: 0,
                        line: 1,
                        col: 1,
                    },
                    e.message,
                )
            }),
            Some(i) => {
                let c = &mut self.checks[i];
                c.used = true;
                let name = c.name.as_str().unwrap_or_default();
                CheckSpec::parse(name, &c.args, Target { addr: target })
                    .map_err(|e| self.plugin_error(i, e))
            }
        }
    }

    /// A plugin's complaint about check line `i`, at the word it names.
    fn plugin_error(&self, i: usize, e: PluginError) -> ConfigError {
        let c = &self.checks[i];
        let pos = e
            .word
            .and_then(|w| c.arg_pos.get(w).copied())
            .unwrap_or(c.name.pos);
        self.doc.error(pos, e.message)
    }

    /// `connect-timeout` must not exceed `timeout` in `scope`. The error points at the more
    /// specific of the two settings (the one that made the conflict).
    fn timeouts(&self, scope: Scope<'_>) -> Result<(), ConfigError> {
        let ct = scope.ranked(|l| &l.connect_timeout);
        if ct.is_none() {
            // The default connect-timeout shrinks to fit (see the timing above).
            return Ok(());
        }
        let to = scope.ranked(|l| &l.timeout);
        let ct_value = ct.map_or(DEFAULT_CONNECT_TIMEOUT, |(s, _)| s.value);
        let to_value = to.map_or(DEFAULT_TIMEOUT, |(s, _)| s.value);
        if ct_value <= to_value {
            return Ok(());
        }
        let source = |s: Option<(&Set<Duration>, u8)>| match s {
            Some((s, _)) => format!("set at {}", self.doc.place(s.pos)),
            None => "the default".to_string(),
        };
        let pos = match (ct, to) {
            (Some((c, cr)), Some((t, tr))) => {
                if tr < cr {
                    t.pos
                } else {
                    c.pos
                }
            }
            (Some((c, _)), None) => c.pos,
            (None, Some((t, _))) => t.pos,
            (None, None) => return Ok(()),
        };
        Err(self.doc.error(
            pos,
            format!(
                "connect-timeout {} ({}) is longer than timeout {} ({}); expected \
                 connect-timeout <= timeout",
                show_duration(ct_value),
                source(ct),
                show_duration(to_value),
                source(to)
            ),
        ))
    }

    /// An address behind virtual `key` must be of its family, unless tunnelled.
    fn family(
        &self,
        key: ServiceKey,
        ip: IpAddr,
        forward: Forward,
        pos: Pos,
        what: &str,
    ) -> Result<(), ConfigError> {
        let ServiceKey::Inet(_, vaddr) = key else {
            return Ok(());
        };
        if vaddr.is_ipv4() == ip.is_ipv4() || forward == Forward::Tunnel {
            return Ok(());
        }
        let fam = |v4: bool| if v4 { "IPv4" } else { "IPv6" };
        Err(self.doc.error(
            pos,
            format!(
                "{what} {ip} is {} but virtual {key} is {} (expected the same address family; \
                 only forward tunnel may mix them, and forward here is {})",
                fam(ip.is_ipv4()),
                fam(vaddr.is_ipv4()),
                forward.as_str()
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{load, parse};
    use super::*;
    use std::path::PathBuf;

    // Tests for the example of lvsmon.conf(5) and the shipped files

    #[test]
    fn spec_example() {
        let p = load(&data("tests/data/good/spec-example.conf"), None).unwrap();
        assert_eq!(p.files.len(), 1);
        assert_eq!(
            (p.resync, p.notify_max),
            (DEFAULT_RESYNC, DEFAULT_NOTIFY_MAX)
        );
        assert_eq!(p.notifies, [vec![b"/usr/local/sbin/lvs-notify".to_vec()]]);
        assert_eq!(p.virtuals.len(), 1);
        let v = &p.virtuals[0];
        assert_eq!(v.key, ServiceKey::Inet(Proto::Tcp, sa("10.0.0.1:80")));
        assert_eq!(v.key.to_string(), "tcp:10.0.0.1:80");
        assert_eq!(
            (v.scheduler.as_str(), v.persistent, v.quorum),
            ("wlc", Some(secs(300)), 2)
        );
        assert_eq!(v.sorry, Some(sa("127.0.0.1:8080")));
        assert_eq!(v.reals, 0..3);
        assert_eq!((v.loc.line, v.loc.col), (13, 1));

        let addrs: Vec<SocketAddr> = p.reals.iter().map(|r| r.addr).collect();
        assert_eq!(
            addrs,
            [
                sa("192.168.1.10:80"),
                sa("192.168.1.11:80"),
                sa("192.168.1.12:80")
            ]
        );
        let weights: Vec<u32> = p.reals.iter().map(|r| r.weight).collect();
        assert_eq!(weights, [10, 5, 1]);
        for r in &p.reals {
            assert_eq!(
                (r.forward, r.on_down, r.notify, r.virtual_idx),
                (Forward::Masq, OnDown::Quiesce, Some(0), 0)
            );
            assert_eq!(
                r.thresholds,
                Thresholds {
                    fall: 3,
                    rise: 2,
                    within: None,
                    down_after: Some(secs(300))
                }
            );
        }
        assert_eq!((p.reals[1].loc.line, p.reals[1].loc.col), (21, 5));

        assert_eq!(p.checks.len(), 3);
        let names: Vec<&str> = p
            .reals
            .iter()
            .map(|r| p.checks[r.check].spec.name())
            .collect();
        assert_eq!(names, ["http", "banner", "http"]);
        let banner = &p.checks[p.reals[1].check];
        assert_eq!(
            (banner.target, banner.interval, banner.retry_interval),
            (sa("192.168.1.11:80"), secs(5), secs(2))
        );
        let http = &p.checks[p.reals[0].check];
        assert_eq!(
            (
                http.interval,
                http.retry_interval,
                http.connect_timeout,
                http.timeout
            ),
            (secs(10), secs(2), secs(3), secs(5))
        );
        assert_eq!(http.reals, [0]);
        assert_eq!(
            p.summary(),
            "1 virtual services, 3 real servers, 3 checks (1 files)"
        );
    }

    #[test]
    fn every_good_file_plans() {
        let mut n = 0;
        for entry in std::fs::read_dir(data("tests/data/good")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "conf") {
                load(&path, None).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn good_includes_in_place() {
        let p = load(&data("tests/data/good/includes.conf"), None).unwrap();
        let names: Vec<String> = p
            .files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["includes.conf", "10-web.conf", "pool.inc", "20-mail.conf"]
        );
        let keys: Vec<String> = p.virtuals.iter().map(|v| v.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "tcp:192.0.2.20:80",
                "tcp:192.0.2.25:25",
                "tcp:192.0.2.20:443"
            ]
        );
        let counts: Vec<usize> = p.virtuals.iter().map(|v| v.reals.len()).collect();
        assert_eq!(counts, [2, 1, 2]);
        assert_eq!(p.reals[4].addr, sa("198.51.100.21:443"));
        assert_eq!(p.reals[4].weight, 2);
        assert!(
            p.reals[0].loc.file.ends_with("includes.d/pool.inc"),
            "{:?}",
            p.reals[0].loc
        );
        assert!(p.checks.iter().all(|c| c.interval == secs(5)));
        assert_eq!(p.checks.len(), 5);
    }

    #[test]
    fn example_file_plans_and_uses_every_keyword() {
        let path = data("lvsmon.conf.example");
        let p = load(&path, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(p.virtuals.len() >= 6, "{}", p.summary());
        let doc = parse::parse_file(&path).unwrap();
        fn walk(sts: &[Statement], seen: &mut Vec<(String, Level)>, level: Level) {
            for s in sts {
                let kw = String::from_utf8_lossy(&s.words[0].text).into_owned();
                seen.push((kw.clone(), level));
                if let Some(b) = &s.block {
                    let inner = if kw == "virtual" {
                        Level::Virtual
                    } else {
                        Level::Real
                    };
                    walk(&b.statements, seen, inner);
                }
            }
        }
        let mut seen = Vec::new();
        walk(&doc.statements, &mut seen, Level::Global);
        for &(name, _) in KEYWORDS {
            if name != "include" {
                // `include` is expanded by the parser; it is checked on the text below.
                assert!(
                    seen.iter().any(|(k, _)| k == name),
                    "lvsmon.conf.example never sets {name}"
                );
            }
        }
        // Overrides are shown at every level where at least the timing settings may stand.
        for name in [
            "interval",
            "retry-interval",
            "connect-timeout",
            "timeout",
            "fall",
            "rise",
            "down-after",
            "on-down",
            "forward",
            "notify",
            "check",
        ] {
            for level in [Level::Global, Level::Virtual, Level::Real] {
                assert!(
                    seen.iter().any(|(k, l)| k == name && *l == level),
                    "lvsmon.conf.example never sets {name} {}",
                    level.name()
                );
            }
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.lines().any(|l| l.starts_with("include ")));
        let kinds: Vec<String> = p.virtuals.iter().map(|v| v.key.to_string()).collect();
        for kind in ["tcp:", "udp:", "sctp:", "fwmark:", "tcp:["] {
            assert!(
                kinds.iter().any(|k| k.starts_with(kind)),
                "no {kind} virtual in {kinds:?}"
            );
        }
        // Every plugin is shown at work (a preset's check is its plugin's), and the TLS
        // presets by name.
        for &plugin in PLUGIN_NAMES {
            if crate::plugins::presets::find(plugin).is_none() {
                assert!(
                    p.checks.iter().any(|c| c.spec.name() == plugin),
                    "lvsmon.conf.example has no {plugin} check"
                );
            }
        }
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with("check imaps ")),
            "lvsmon.conf.example shows no TLS preset"
        );
    }

    // Tests for the bad inputs of tests/data/bad

    #[test]
    fn every_bad_file_fails_where_it_says() {
        let mut failures = Vec::new();
        let mut n = 0;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(data("tests/data/bad"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        entries.sort();
        for path in entries {
            n += 1;
            let text = std::fs::read(&path).unwrap();
            let first = text.split(|&b| b == b'\n').next().unwrap();
            let first = std::str::from_utf8(first).unwrap();
            let spec = first
                .strip_prefix("# expect: ")
                .unwrap_or_else(|| panic!("{path:?}: no expect line"));
            let mut parts = spec.splitn(3, ':');
            let line: u32 = parts.next().unwrap().parse().unwrap();
            let col: u32 = parts.next().unwrap().parse().unwrap();
            let part = parts.next().unwrap().trim_start();
            match load(&path, None) {
                Err(ConfigError::At { loc, message }) => {
                    if (loc.line, loc.col) != (line, col) || !message.contains(part) {
                        failures.push(format!(
                            "{}: got {}:{}: {message}\n    expected {line}:{col}: ...{part}...",
                            path.display(),
                            loc.line,
                            loc.col
                        ));
                    }
                }
                other => failures.push(format!(
                    "{}: expected an error, got {other:?}",
                    path.display()
                )),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(n >= 25, "only {n} bad inputs");
    }

    // Tests for levels and overrides

    const LEVELS: &str = "
interval 20s
connect-timeout 1s
timeout 2s
fall 4
rise 5
down-after 1m
retry-interval 3s
on-down remove
forward tunnel
notify /bin/g
notify-max 3
resync 90s
scheduler rr
persistent 100
quorum 0
check tcp --port 81
virtual tcp 192.0.2.1:80 {
    real 198.51.100.1
}
virtual tcp 192.0.2.2:80 {
    interval 21s
    connect-timeout 1500ms
    timeout 2500ms
    fall 6 within 1m
    rise 7
    down-after 2m
    retry-interval 4s
    on-down quiesce
    forward masq
    notify /bin/v \"arg one\"
    scheduler sh
    persistent 200s
    quorum 2
    sorry 192.0.2.200:80
    check http --url http://www.example.com/
    real 198.51.100.1
    real 198.51.100.2:8080 weight 0 {
        interval 22s
        connect-timeout 500ms
        timeout 1s
        fall 8
        rise 9
        down-after 3m
        retry-interval 5s
        on-down remove
        forward route
        notify /bin/r
        check banner --expect \"220\" --port 25
    }
}
";

    #[test]
    fn every_setting_at_every_level_overrides_in_order() {
        let p = plan_text(LEVELS);
        assert_eq!((p.resync, p.notify_max), (secs(90), 3));
        let (v1, v2) = (&p.virtuals[0], &p.virtuals[1]);
        assert_eq!(
            (v1.scheduler.as_str(), v1.persistent, v1.quorum, v1.sorry),
            ("rr", Some(secs(100)), 0, None)
        );
        assert_eq!(
            (v2.scheduler.as_str(), v2.persistent, v2.quorum, v2.sorry),
            ("sh", Some(secs(200)), 2, Some(sa("192.0.2.200:80")))
        );
        assert_eq!((v1.reals.clone(), v2.reals.clone()), (0..1, 1..3));
        assert_eq!(
            p.notifies,
            [
                vec![b"/bin/g".to_vec()],
                vec![b"/bin/v".to_vec(), b"arg one".to_vec()],
                vec![b"/bin/r".to_vec()]
            ]
        );

        // Global values only.
        let (r, c) = (&p.reals[0], &p.checks[p.reals[0].check]);
        assert_eq!(
            (r.weight, r.forward, r.on_down, r.notify),
            (1, Forward::Tunnel, OnDown::Remove, Some(0))
        );
        assert_eq!(
            r.thresholds,
            Thresholds {
                fall: 4,
                rise: 5,
                within: None,
                down_after: Some(secs(60))
            }
        );
        assert_eq!((c.target, c.spec.name()), (sa("198.51.100.1:81"), "tcp"));
        assert_eq!(
            (c.interval, c.retry_interval, c.connect_timeout, c.timeout),
            (secs(20), secs(3), secs(1), secs(2))
        );

        // Virtual values.
        let (r, c) = (&p.reals[1], &p.checks[p.reals[1].check]);
        assert_eq!(
            (r.weight, r.forward, r.on_down, r.notify),
            (1, Forward::Masq, OnDown::Quiesce, Some(1))
        );
        assert_eq!(
            r.thresholds,
            Thresholds {
                fall: 6,
                rise: 7,
                within: Some(secs(60)),
                down_after: Some(secs(120))
            }
        );
        assert_eq!((c.target, c.spec.name()), (sa("198.51.100.1:80"), "http"));
        assert_eq!(
            (c.interval, c.retry_interval, c.connect_timeout, c.timeout),
            (secs(21), secs(4), ms(1500), ms(2500))
        );

        // Real values.
        let (r, c) = (&p.reals[2], &p.checks[p.reals[2].check]);
        assert_eq!(
            (r.addr, r.weight, r.forward, r.on_down, r.notify),
            (
                sa("198.51.100.2:8080"),
                0,
                Forward::Route,
                OnDown::Remove,
                Some(2)
            )
        );
        assert_eq!(
            r.thresholds,
            Thresholds {
                fall: 8,
                rise: 9,
                within: None,
                down_after: Some(secs(180))
            }
        );
        assert_eq!((c.target, c.spec.name()), (sa("198.51.100.2:25"), "banner"));
        assert_eq!(
            (c.interval, c.retry_interval, c.connect_timeout, c.timeout),
            (secs(22), secs(5), ms(500), secs(1))
        );
        assert_eq!(p.checks.len(), 3);
    }

    #[test]
    fn defaults() {
        let p = plan_text("virtual tcp 192.0.2.1:80 {\n  real 198.51.100.1\n}\n");
        let (v, r, c) = (&p.virtuals[0], &p.reals[0], &p.checks[0]);
        assert_eq!(
            (v.scheduler.as_str(), v.persistent, v.quorum, v.sorry),
            ("wlc", None, 1, None)
        );
        assert_eq!(
            (r.weight, r.forward, r.on_down, r.notify),
            (1, Forward::Route, OnDown::Quiesce, None)
        );
        assert_eq!(
            r.thresholds,
            Thresholds {
                fall: 3,
                rise: 2,
                within: None,
                down_after: None
            }
        );
        assert_eq!((c.target, c.spec.name()), (sa("198.51.100.1:80"), "tcp"));
        assert_eq!(
            (c.interval, c.retry_interval, c.connect_timeout, c.timeout),
            (secs(10), secs(10), secs(3), secs(5))
        );
        assert_eq!((p.resync, p.notify_max, p.notifies.len()), (secs(60), 8, 0));
    }

    // Tests for history

    #[test]
    fn history_parses_and_defaults() {
        let v = "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n}\n";
        assert_eq!(plan_text(v).history, DEFAULT_HISTORY);
        assert_eq!(
            DEFAULT_HISTORY,
            HistorySpec {
                raw: secs(600),
                minute: secs(7200),
                hour: secs(2 * 86400)
            }
        );
        assert_eq!(HistorySpec::default(), DEFAULT_HISTORY);
        let cases: &[(&str, [Duration; 3])] = &[
            (
                "history raw 1h minute 1d hour 30d",
                [secs(3600), secs(86400), secs(30 * 86400)],
            ),
            ("history raw 0 minute 0 hour 0", [Duration::ZERO; 3]),
            (
                "history raw 90s minute 1.5h hour 2d",
                [secs(90), secs(5400), secs(172800)],
            ),
            (
                "history raw 500ms minute 45d hour 2730d",
                [ms(500), secs(45 * 86400), secs(2730 * 86400)],
            ),
        ];
        for &(line, [raw, minute, hour]) in cases {
            let p = plan_text(&format!("{line}\n{v}"));
            assert_eq!(p.history, HistorySpec { raw, minute, hour }, "{line}");
            // Settings after the virtual count the same: the level, not the order, decides.
            assert_eq!(plan_text(&format!("{v}{line}\n")).history, p.history);
        }
    }

    #[test]
    fn retry_interval_follows_the_effective_interval() {
        let p = plan_text(
            "virtual tcp 192.0.2.1:80 {\n interval 4s\n real 198.51.100.1\n real 198.51.100.2 {\n  interval 1s\n }\n}\n\
             retry-interval 2s\nvirtual tcp 192.0.2.2:80 {\n real 198.51.100.3 {\n  interval 1s\n }\n}\n",
        );
        // A retry-interval given anywhere wins over the interval; settings after the virtual
        // apply to it too (levels, not order, decide).
        let retries: Vec<Duration> = p
            .reals
            .iter()
            .map(|r| p.checks[r.check].retry_interval)
            .collect();
        assert_eq!(retries, [secs(2), secs(2), secs(2)]);
        let p = plan_text("virtual tcp 192.0.2.1:80 {\n interval 4s\n real 198.51.100.1\n real 198.51.100.2 {\n  interval 1s\n }\n}\n");
        let retries: Vec<Duration> = p
            .reals
            .iter()
            .map(|r| p.checks[r.check].retry_interval)
            .collect();
        assert_eq!(retries, [secs(4), secs(1)]);
    }

    #[test]
    fn interval_override_replaces_only_the_global_value() {
        let text = "interval 20s\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n real 198.51.100.2 {\n  interval 3s\n }\n}\n\
                    virtual tcp 192.0.2.2:80 {\n interval 7s\n real 198.51.100.3\n}\n";
        let intervals = |p: &Plan| -> Vec<(Duration, Duration)> {
            p.reals
                .iter()
                .map(|r| (p.checks[r.check].interval, p.checks[r.check].retry_interval))
                .collect()
        };
        assert_eq!(
            intervals(&plan_with(text, None)),
            [(secs(20), secs(20)), (secs(3), secs(3)), (secs(7), secs(7))]
        );
        assert_eq!(
            intervals(&plan_with(text, Some(ms(1500)))),
            [(ms(1500), ms(1500)), (secs(3), secs(3)), (secs(7), secs(7))]
        );
        // Without a global interval the override still replaces the default.
        let p = plan_with(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n}\n",
            Some(secs(2)),
        );
        assert_eq!(intervals(&p), [(secs(2), secs(2))]);
        // A zero override is refused.
        let dir = TempDir::new("override");
        let path = dir.write("main.conf", text);
        let e = load(&path, Some(Duration::ZERO)).unwrap_err();
        assert!(
            e.to_string()
                .contains("--interval 0 is out of range (expected 0.05 to 86400 seconds)"),
            "{e}"
        );
    }

    #[test]
    fn settings_given_twice_at_one_level() {
        expect_error(
            "interval 5s\ninterval 6s\n",
            2,
            1,
            "interval already set at ",
        );
        let (_, _, m) = error("fall 3\nvirtual tcp 192.0.2.1:80 {\n}\nfall 2 within 1m\n");
        assert!(
            m.contains("fall already set at ") && m.contains("main.conf:1 "),
            "{m}"
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n sorry 192.0.2.9:80\n sorry 192.0.2.9:80\n}\n",
            3,
            2,
            "sorry already set",
        );
        // The same setting at different levels is an override, not a repeat.
        plan_text("notify /a\nvirtual tcp 192.0.2.1:80 {\n notify /b\n real 198.51.100.1 {\n  notify /c\n }\n}\n");
    }

    #[test]
    fn settings_in_the_wrong_place() {
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n virtual tcp 192.0.2.2:80 {\n }\n}\n",
            2,
            2,
            "virtual is not allowed in a virtual block (only at the top level)",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 {\n  real 198.51.100.2\n }\n}\n",
            3,
            3,
            "real is not allowed in a real block",
        );
        expect_error("virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 {\n  scheduler rr\n }\n}\n", 3, 3, "scheduler is not allowed in a real block (only at the top level or in a virtual block)");
        expect_error(
            "interval 5s {\n}\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            13,
            "expected no `{` after interval",
        );
        let (_, _, m) = error("virtual tcp 192.0.2.1:80 {\n rise-up 2\n}\n");
        assert!(
            m.contains(
                "unknown setting \"rise-up\" in a virtual block (expected one of: interval, "
            ) && m.contains("sorry, real, include)"),
            "{m}"
        );
        assert!(!m.contains("resync"), "{m}");
    }

    #[test]
    fn missing_and_extra_arguments() {
        let v = "\nvirtual tcp 192.0.2.1:80 {\n}\n";
        expect_error(
            &format!("interval{v}"),
            1,
            1,
            "expected a duration like 250ms, 10s, 5m, 1h, 1d after interval",
        );
        expect_error(
            &format!("rise{v}"),
            1,
            1,
            "expected a count of at least 1 after rise",
        );
        expect_error(&format!("rise 2 3{v}"), 1, 8, "unexpected \"3\"");
        expect_error(&format!("fall{v}"), 1, 1, "expected a count after fall");
        expect_error(
            &format!("fall 2 over 1m{v}"),
            1,
            8,
            "expected `within DURATION`",
        );
        expect_error(&format!("fall 2 within 1m 2{v}"), 1, 18, "unexpected \"2\"");
        expect_error(
            &format!("rise two{v}"),
            1,
            6,
            "expected a number 1..4294967295 for rise, not \"two\"",
        );
        expect_error(&format!("quorum -1{v}"), 1, 8, "for quorum");
        expect_error(
            &format!("scheduler{v}"),
            1,
            1,
            "expected a scheduler name after scheduler",
        );
        expect_error(&format!("scheduler Wlc{v}"), 1, 11, "bad scheduler name");
        expect_error(
            &format!("check{v}"),
            1,
            1,
            "expected a plugin name after check",
        );
        expect_error(
            &format!("notify \"\"{v}"),
            1,
            8,
            "expected a command after notify",
        );
        expect_error("virtual\n", 1, 1, "expected a service after virtual");
        expect_error(
            "virtual tcp {\n}\n",
            1,
            9,
            "expected ADDR:PORT after virtual tcp",
        );
        expect_error(
            "virtual fwmark {\n}\n",
            1,
            9,
            "expected a mark number after virtual fwmark",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 x {\n}\n",
            1,
            26,
            "unexpected \"x\" after the virtual's address",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real\n}\n",
            2,
            2,
            "expected an address after real",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 heavy 3\n}\n",
            2,
            20,
            "expected `weight N`",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 weight 3 x\n}\n",
            2,
            29,
            "unexpected \"x\"",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 weight 3.5\n}\n",
            2,
            27,
            "expected a number 0..65535 for weight",
        );
    }

    // Tests for addresses and services

    #[test]
    fn ipv6_virtual_and_reals() {
        let p = plan_text(
            "virtual tcp [2001:db8::1]:443 {\n real [2001:db8:1::10]:8443 weight 3\n real 2001:db8:1::11\n\
             real [2001:db8:1::12]\n real 198.51.100.1 {\n  forward tunnel\n }\n}\n",
        );
        assert_eq!(p.virtuals[0].key.to_string(), "tcp:[2001:db8::1]:443");
        let addrs: Vec<String> = p.reals.iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "[2001:db8:1::10]:8443",
                "[2001:db8:1::11]:443",
                "[2001:db8:1::12]:443",
                "198.51.100.1:443"
            ]
        );
        assert_eq!(p.checks[0].target, sa("[2001:db8:1::10]:8443"));
        // An IPv4 real behind an IPv6 virtual needs tunnel; so does the reverse.
        expect_error(
            "virtual tcp [2001:db8::1]:443 {\n real 198.51.100.1\n}\n",
            2,
            7,
            "real 198.51.100.1 is IPv4 but virtual tcp:[2001:db8::1]:443 is IPv6",
        );
        plan_text("forward tunnel\nvirtual tcp 192.0.2.1:80 {\n real 2001:db8::10\n}\n");
        // A real's own forward decides, not the virtual's.
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n forward tunnel\n real 2001:db8::10 {\n  forward masq\n }\n}\n",
            3,
            7,
            "forward here is masq",
        );
    }

    #[test]
    fn a_sorry_server_may_not_be_one_of_the_reals() {
        // The real's port comes from the virtual: still the same destination.
        let (l, c, m) = error(
            "virtual tcp 127.88.0.10:9001 {\n  quorum 2\n  sorry 127.88.0.1:9001\n  real 127.88.0.1\n}\n",
        );
        assert_eq!((l, c), (3, 9), "{m}");
        assert!(
            m.starts_with(
                "sorry server 127.88.0.1:9001 is also a real server of virtual \
                 tcp:127.88.0.10:9001 (at "
            ) && m.contains("main.conf:4)"),
            "{m}"
        );
        // Another port, or the same server behind another virtual, is another destination.
        let p = plan_text(
            "virtual tcp 127.88.0.10:80 {\n  sorry 127.88.0.1:9002\n  real 127.88.0.1:9001\n}\n\
             virtual tcp 127.88.0.11:80 {\n  sorry 127.88.0.1:9001\n  real 127.88.0.2:9001\n}\n",
        );
        assert_eq!(p.virtuals[1].sorry, Some(sa("127.88.0.1:9001")));
    }

    #[test]
    fn fwmark_udp_and_sctp_virtuals() {
        let p = plan_text(
            "virtual fwmark 42 {\n check tcp --port 443\n real 198.51.100.1\n real 198.51.100.2:8443\n real 2001:db8::5\n}\n\
             virtual fwmark 0x2b {\n real 198.51.100.1:80\n}\n\
             virtual udp 192.0.2.53:53 {\n check tcp --port 8053\n real 198.51.100.53\n}\n\
             virtual sctp 192.0.2.3:3868 {\n real 198.51.100.3\n}\n\
             virtual fwmark 4294967295 {\n}\n",
        );
        let keys: Vec<String> = p.virtuals.iter().map(|v| v.key.to_string()).collect();
        assert_eq!(
            keys,
            [
                "fwmark:42",
                "fwmark:43",
                "udp:192.0.2.53:53",
                "sctp:192.0.2.3:3868",
                "fwmark:4294967295"
            ]
        );
        let addrs: Vec<String> = p.reals.iter().map(|r| r.addr.to_string()).collect();
        assert_eq!(
            addrs,
            [
                "198.51.100.1:0",
                "198.51.100.2:8443",
                "[2001:db8::5]:0",
                "198.51.100.1:80",
                "198.51.100.53:53",
                "198.51.100.3:3868"
            ]
        );
        let targets: Vec<String> = p
            .reals
            .iter()
            .map(|r| p.checks[r.check].target.to_string())
            .collect();
        assert_eq!(
            targets,
            [
                "198.51.100.1:443",
                "198.51.100.2:443",
                "[2001:db8::5]:443",
                "198.51.100.1:80",
                "198.51.100.53:8053",
                "198.51.100.3:3868"
            ]
        );
        assert_eq!(p.virtuals[4].reals, 6..6);
        assert!(p.checks.iter().all(|c| c.spec.name() == "tcp"));
    }

    #[test]
    fn an_empty_virtual_is_fine() {
        let p = plan_text("virtual tcp 192.0.2.1:80 {\n}\n");
        assert_eq!((p.virtuals.len(), p.reals.len(), p.checks.len()), (1, 0, 0));
        assert_eq!(p.virtuals[0].reals, 0..0);
    }

    #[test]
    fn weights_and_quorum_bounds() {
        let p = plan_text("quorum 0\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1 weight 0\n real 198.51.100.2 weight 65535\n}\n");
        assert_eq!(
            (p.reals[0].weight, p.reals[1].weight, p.virtuals[0].quorum),
            (0, 65535, 0)
        );
    }

    #[test]
    fn duplicates_point_at_the_first_definition() {
        let (_, _, m) = error("virtual tcp 192.0.2.1:80 {\n}\n\nvirtual tcp 192.0.2.1:80 {\n}\n");
        assert!(
            m.starts_with("virtual tcp:192.0.2.1:80 already defined at ")
                && m.ends_with("main.conf:1"),
            "{m}"
        );
        // The same address in two virtuals, or on two ports, is no duplicate.
        plan_text("virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n real 198.51.100.1:81\n}\nvirtual udp 192.0.2.1:80 {\n real 198.51.100.1\n}\n");
        expect_error(
            "virtual fwmark 1 {\n real 198.51.100.1\n real 198.51.100.1\n}\n",
            3,
            2,
            "real 198.51.100.1:0 already defined",
        );
        expect_error(
            "virtual fwmark 1 {\n}\nvirtual fwmark 0x1 {\n}\n",
            3,
            1,
            "virtual fwmark:1 already defined",
        );
    }

    // Tests for timeouts

    #[test]
    fn connect_timeout_longer_than_timeout() {
        // A short timeout with the default connect-timeout: the connect bound shrinks to fit.
        let p =
            plan_text("virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 {\n  timeout 2s\n }\n}\n");
        assert_eq!(p.checks[0].connect_timeout, Duration::from_secs(2));
        assert_eq!(p.checks[0].timeout, Duration::from_secs(2));
        // Both at one level: at the connect-timeout.
        expect_error(
            "connect-timeout 4s\ntimeout 3s\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            1,
            "connect-timeout 4s (set at ",
        );
        // The more specific setting made the conflict.
        expect_error(
            "connect-timeout 4s\nvirtual tcp 192.0.2.1:80 {\n timeout 3500ms\n}\n",
            3,
            2,
            "is longer than timeout 3.5s (set at ",
        );
        expect_error(
            "timeout 4s\nvirtual tcp 192.0.2.1:80 {\n connect-timeout 4.5s\n}\n",
            3,
            2,
            "connect-timeout 4.5s",
        );
        // Equal is fine, and a real may repair what its virtual would break.
        plan_text("connect-timeout 5s\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n}\n");
        plan_text("timeout 10s\nvirtual tcp 192.0.2.1:80 {\n connect-timeout 8s\n real 198.51.100.1 {\n  timeout 9s\n }\n}\n");
    }

    // Tests for checks

    #[test]
    fn port_and_address_are_taken_out_anywhere() {
        let p = plan_text(
            "virtual tcp 192.0.2.1:80 {\n check http --url http://www.example.com/ --port=8080 --address 203.0.113.5 --expect 200\n\
             real 198.51.100.1\n real 198.51.100.2 {\n  check tcp --address=[2001:db8::7]\n }\n\
             real 198.51.100.3 {\n  check tcp --address 2001:db8::8 --port 99\n }\n}\n",
        );
        let targets: Vec<String> = p
            .reals
            .iter()
            .map(|r| p.checks[r.check].target.to_string())
            .collect();
        assert_eq!(
            targets,
            ["203.0.113.5:8080", "[2001:db8::7]:80", "[2001:db8::8]:99"]
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --port\n}\n",
            2,
            12,
            "expected a port 1..65535 after --port",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --port 0\n}\n",
            2,
            19,
            "port 0 is out of range",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --port=70000\n}\n",
            2,
            12,
            "port 70000 is out of range",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --address\n}\n",
            2,
            12,
            "expected an IP address after --address",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --address ::1 --address ::2\n}\n",
            2,
            26,
            "--address given twice",
        );
    }

    #[test]
    fn plugin_errors_point_at_the_remaining_word() {
        // `--port 81` is taken out, so the plugin sees `--bogus` as word 0.
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --port 81 --bogus\n real 198.51.100.1\n}\n",
            2,
            22,
            "unknown option \"--bogus\" for plugin tcp",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 {\n  check    tcp x\n }\n}\n",
            3,
            16,
            "for plugin tcp",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n check \"htp\"\n}\n",
            3,
            8,
            "unknown plugin \"htp\"",
        );
    }

    #[test]
    fn unused_checks_are_still_validated() {
        // The global check is overridden everywhere; its mistake still shows.
        expect_error(
            "check tcp --bogus\nvirtual tcp 192.0.2.1:80 {\n check tcp\n real 198.51.100.1\n}\n",
            1,
            11,
            "unknown option",
        );
        // A check in a virtual with no reals.
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --bogus\n}\n",
            2,
            12,
            "unknown option",
        );
    }

    #[test]
    fn fwmark_reals_need_a_port_to_check() {
        expect_error(
            "virtual fwmark 5 {\n real 198.51.100.1\n}\n",
            2,
            7,
            "has no port to check",
        );
        plan_text("virtual fwmark 5 {\n real 198.51.100.1 {\n  check tcp --port 22\n }\n}\n");
    }

    #[test]
    fn quoted_words_reach_the_plan() {
        let p = plan_text("notify \"/opt/my tools/notify\" \"\\x01\\xfe\" \"tab\\there\"\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n}\n");
        assert_eq!(
            p.notifies[0],
            [
                b"/opt/my tools/notify".to_vec(),
                b"\x01\xfe".to_vec(),
                b"tab\there".to_vec()
            ]
        );
        expect_error(
            "notify /bin/x \"a\\x00b\"\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            15,
            "expected no NUL byte",
        );
    }

    #[test]
    fn crlf_config_plans() {
        let p = plan_text(
            "interval 5s\r\nvirtual tcp 192.0.2.1:80 {\r\n    real 198.51.100.1 weight 3\r\n}\r\n",
        );
        assert_eq!((p.reals[0].weight, p.checks[0].interval), (3, secs(5)));
    }

    #[test]
    fn no_virtual() {
        expect_error("", 1, 1, "no virtual service defined");
        expect_error(
            "# only a comment\ninterval 5s\n",
            1,
            1,
            "no virtual service defined",
        );
    }

    /// `cargo test --release --lib config::plan::tests::plan_100k -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release mode"]
    fn plan_100k() {
        use std::fmt::Write as _;
        use std::time::Instant;
        let mut text = String::from(
            "check http --url http://www.example.com/health --expect 200\ninterval 2s\n",
        );
        // 1,000 virtuals of 100 reals; every real sits behind two virtuals (two VIPs, one pool).
        for v in 0..1000u32 {
            let pool = v / 2;
            writeln!(text, "virtual tcp 10.0.{}.{}:80 {{", v / 256, v % 256).unwrap();
            for r in 0..100u32 {
                let n = pool * 100 + r;
                writeln!(
                    text,
                    "    real 10.{}.{}.{} weight {}",
                    1 + n / 65536,
                    (n / 256) % 256,
                    n % 256,
                    1 + r % 5
                )
                .unwrap();
            }
            text.push_str("}\n");
        }
        let dir = TempDir::new("perf");
        let path = dir.write("big.conf", &text);
        let t0 = Instant::now();
        let doc = parse::parse_file(&path).unwrap();
        let t1 = Instant::now();
        let p = plan(&doc, None).unwrap();
        let t2 = Instant::now();
        eprintln!(
            "{} bytes; parse {:?}, plan {:?}: {}",
            text.len(),
            t1 - t0,
            t2 - t1,
            p.summary()
        );
        assert_eq!(p.reals.len(), 100_000);
        assert_eq!(p.checks.len(), 50_000);
    }

    #[test]
    fn slow_and_slow_start_and_sorry_options() {
        let p = plan_text(
            "slow-above 800ms cancel-below 200ms\nvirtual tcp 192.0.2.1:80 {\n  quorum 2\n  sorry 192.0.2.9:80 --forward route --mode add\n  real 198.51.100.1 {\n    slow-above 1s cancel-below 100ms slow-weight 10%\n    slow-start 30s\n  }\n  real 198.51.100.2\n}\n",
        );
        let (a, b) = (&p.reals[0].weights, &p.reals[1].weights);
        assert_eq!(
            a.slow,
            Some(Slow {
                above: secs(1),
                below: Duration::from_millis(100),
                percent: 10
            })
        );
        assert_eq!(a.slow_start, Some(secs(30)));
        assert_eq!(
            b.slow,
            Some(Slow {
                above: Duration::from_millis(800),
                below: Duration::from_millis(200),
                percent: 25
            })
        );
        assert_eq!(b.slow_start, None);
        let v = &p.virtuals[0];
        assert_eq!(
            (v.sorry_mode, v.sorry_forward),
            (SorryMode::Add, Forward::Route)
        );
        let p =
            plan_text("virtual tcp 192.0.2.1:80 {\n  sorry 192.0.2.9:80\n  real 198.51.100.1\n}\n");
        assert_eq!(
            (p.virtuals[0].sorry_mode, p.virtuals[0].sorry_forward),
            (SorryMode::Replace, Forward::Masq)
        );

        // The sorry server's own --forward decides whether it may be of the other family.
        let p = plan_text("virtual tcp 192.0.2.1:80 {\n  sorry [2001:db8::9]:80 --forward tunnel\n  real 198.51.100.1\n}\n");
        assert_eq!(p.virtuals[0].sorry_forward, Forward::Tunnel);
        expect_error("forward tunnel\nvirtual tcp 192.0.2.1:80 {\n  sorry [2001:db8::9]:80\n  real 198.51.100.1\n}\n", 3, 9, "sorry server 2001:db8::9 is IPv6 but virtual");

        // cancel-below must be below slow-above: the error points at its value.
        expect_error(
            "slow-above 200ms cancel-below 200ms\n",
            1,
            31,
            "cancel-below 200ms must be below slow-above 200ms",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  slow-above 1s cancel-below 2s\n}\n",
            2,
            30,
            "must be below slow-above",
        );
        expect_error("slow-above 1s\n", 1, 12, "expected cancel-below D");
        expect_error("slow-above 1s below 2s\n", 1, 15, "expected cancel-below");
        expect_error(
            "slow-above 1s cancel-below 1ms slow-weight 150%\n",
            1,
            44,
            "expected a percentage 0%..100%",
        );
        expect_error(
            "slow-above 0 cancel-below 0\n",
            1,
            12,
            "slow-above must be greater than 0",
        );
        expect_error("slow-start 0\n", 1, 12, "slow-start must be greater than 0");
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  sorry 192.0.2.9:80 --mode swap\n}\n",
            2,
            29,
            "unknown sorry mode",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  sorry 192.0.2.9:80 --forward nat\n}\n",
            2,
            32,
            "unknown forward method",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  sorry 192.0.2.9:80 --weight 3\n}\n",
            2,
            22,
            "expected --mode or --forward",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  sorry 192.0.2.9:80 --mode\n}\n",
            2,
            22,
            "expected a value after",
        );
    }

    /// `--source` and `--mark` are taken out of a check line for its socket (any plugin);
    /// checks that differ only in them are different probes, equal ones still merge.
    #[test]
    fn source_and_mark_belong_to_the_probe() {
        let p = plan_text(
            "virtual tcp 192.0.2.1:80 {\n check http --mark 0x2a --source 192.0.2.1 --expect 200\n real 198.51.100.1\n}\n\
             virtual tcp 192.0.2.2:80 {\n check http --source=192.0.2.1 --expect 200 --mark=42\n real 198.51.100.1\n}\n\
             virtual tcp 192.0.2.3:80 {\n check http --expect 200\n real 198.51.100.1\n}\n",
        );
        assert_eq!(p.checks.len(), 2);
        assert_eq!(p.reals[0].check, p.reals[1].check);
        assert_ne!(p.reals[0].check, p.reals[2].check);
        let c = &p.checks[p.reals[0].check];
        assert_eq!(c.sock.mark, Some(42));
        assert_eq!(c.sock.source, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(p.checks[p.reals[2].check].sock, SockOpts::default());
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --mark 0\n}\n",
            2,
            19,
            "expected a firewall mark 1..4294967295",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --mark\n}\n",
            2,
            12,
            "expected a firewall mark",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --source 0.0.0.0\n}\n",
            2,
            21,
            "cannot be a check's source",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --source ::1 --source ::2\n}\n",
            2,
            25,
            "--source given twice",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check tcp --source 2001:db8::1\n real 198.51.100.1\n}\n",
            2,
            21,
            "--source 2001:db8::1 cannot reach check target 198.51.100.1:80",
        );
    }

    /// Several check lines at one level are all the real's checks, in order; an inner
    /// block's lines replace all the outer ones; equal lines of two virtuals share probes.
    #[test]
    fn several_check_lines_are_all_the_reals_checks() {
        let p = plan_text(
            "check tcp\ncheck tcp --port 22\n\
             virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n real 198.51.100.2 {\n  check tcp --port 81\n }\n}\n\
             virtual tcp 192.0.2.2:80 {\n real 198.51.100.1\n}\n",
        );
        let targets = |r: &RealPlan| -> Vec<String> {
            std::iter::once(r.check)
                .chain(r.more_checks.iter().copied())
                .map(|c| p.checks[c].target.to_string())
                .collect()
        };
        assert_eq!(targets(&p.reals[0]), ["198.51.100.1:80", "198.51.100.1:22"]);
        assert_eq!(targets(&p.reals[1]), ["198.51.100.2:81"]);
        assert!(p.reals[1].more_checks.is_empty());
        assert_eq!(p.reals[2].check, p.reals[0].check);
        assert_eq!(p.reals[2].more_checks, p.reals[0].more_checks);
        assert_eq!(p.checks.len(), 3);
        assert_eq!(p.checks[p.reals[0].more_checks[0]].reals, [0, 2]);
    }

    /// `agent PORT`: a probe of its own on the real's address, on its own grid (its
    /// `--interval`, else the check interval), apart from the real's checks; shared like any.
    #[test]
    fn agent_is_a_probe_of_its_own() {
        let p = plan_text(
            "interval 4s\nagent 8099\n\
             virtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n real 198.51.100.2 {\n  agent 7000 --interval 1s --send \"hi\\n\"\n }\n}\n\
             virtual tcp 192.0.2.2:80 {\n real 198.51.100.1\n}\n",
        );
        let a0 = &p.checks[p.reals[0].agent.unwrap()];
        assert_eq!(a0.target, sa("198.51.100.1:8099"));
        assert_eq!((a0.interval, a0.retry_interval), (secs(4), secs(4)));
        assert_eq!(a0.spec.name(), "agent");
        assert_eq!(a0.reals, [0, 2]);
        assert_eq!(p.reals[2].agent, p.reals[0].agent);
        let a1 = &p.checks[p.reals[1].agent.unwrap()];
        assert_eq!((a1.target, a1.interval), (sa("198.51.100.2:7000"), secs(1)));
        assert_ne!(p.reals[0].check, p.reals[0].agent.unwrap());
        assert!(p.reals[0].more_checks.is_empty());
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n agent\n}\n",
            2,
            2,
            "expected a port after agent",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n agent 80 --send\n}\n",
            2,
            11,
            "expected a value after --send",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n agent 80 --wait 1s\n}\n",
            2,
            11,
            "unexpected --wait",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n agent 80\n agent 81\n}\n",
            3,
            2,
            "agent already set",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n check agent\n}\n",
            2,
            8,
            "unknown plugin",
        );
    }
}
