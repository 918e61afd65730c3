//! The configuration: `lvsmon.conf` text in, a validated [`Plan`] out.
//!
//! Two steps, kept apart so each can be tested on its own:
//! - [`parse`] turns text into sections of words, each word with the file, line and column it
//!   came from, and follows `include`;
//! - [`plan`] checks every setting, applies defaults and overrides (global → virtual → real),
//!   resolves addresses, builds each check's plugin, merges identical checks so a real server
//!   behind many virtual services is probed once, and computes every capacity the daemon needs;
//!   [`values`] reads each setting's words into typed values (durations, counts, addresses,
//!   ports) with the message that says what was expected, and `merge` finds what reals share
//!   (one probe per target, check and timing; one argv per notify command).
//!
//! Nothing here runs after startup; the daemon sizes all of its tables from the plan.

pub mod director;
mod merge;
pub mod parse;
pub mod plan;
pub mod values;

#[cfg(test)]
mod test_support;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plugins::CheckSpec;

/// Where a word stands in a config file: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file, as named on the command line or in the `include` that read it.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in bytes.
    pub col: u32,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// A configuration that cannot be used. Displays as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Something at a known place in a file is wrong; the message says what was expected.
    #[error("{loc}: {message}")]
    At {
        /// Where.
        loc: Loc,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A file could not be read at all.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        message: String,
    },
}

impl ConfigError {
    /// An error at `loc`.
    pub fn at(loc: &Loc, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            loc: loc.clone(),
            message: message.into(),
        }
    }
}

/// Reads, parses and plans the file at `path`.
///
/// # Errors
/// The first problem found, with its place.
pub fn load(path: &Path, interval_override: Option<Duration>) -> Result<Plan, ConfigError> {
    let doc = parse::parse_file(path)?;
    plan::plan(&doc, interval_override)
}

/// The transport protocol of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Proto {
    /// `tcp`, `udp` or `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// How a virtual service is matched by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// Protocol, address and port.
    Inet(Proto, SocketAddr),
    /// A firewall mark set by netfilter.
    Fwmark(u32),
}

impl fmt::Display for ServiceKey {
    /// The identifier of lvsmon(8), EVENTS AND LOG LINES: `tcp:10.0.0.1:80`, `udp:[2001:db8::1]:53`, `fwmark:42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceKey::Inet(p, a) => write!(f, "{}:{}", p.as_str(), a),
            ServiceKey::Fwmark(m) => write!(f, "fwmark:{m}"),
        }
    }
}

/// How packets reach a real server (ipvsadm `-m`, `-g`, `-i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT.
    Masq,
    /// Direct routing.
    Route,
    /// IP-in-IP tunnelling.
    Tunnel,
}

impl Forward {
    /// `masq`, `route` or `tunnel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Forward::Masq => "masq",
            Forward::Route => "route",
            Forward::Tunnel => "tunnel",
        }
    }
}

/// What happens to a destination whose real server goes DOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnDown {
    /// Weight 0: no new connections, existing ones drain.
    Quiesce,
    /// The destination is deleted.
    Remove,
}

/// When a real server counts as DOWN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Thresholds {
    /// Consecutive failures before DOWN; with `within`, failures inside the window.
    pub fall: u32,
    /// Consecutive successes before UP.
    pub rise: u32,
    /// `fall N within T`: the sliding window, if set.
    pub within: Option<Duration>,
    /// `down-after T`: DOWN once no success for this long, if set.
    pub down_after: Option<Duration>,
}

/// `slow-above D cancel-below D [slow-weight P%]`: a real whose checks take longer than
/// `above` is SLOW (its weight times `percent`) until one takes less than `below`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slow {
    /// A passed check slower than this makes the real SLOW.
    pub above: Duration,
    /// A passed check faster than this ends SLOW (below `above`).
    pub below: Duration,
    /// The weight while SLOW, in percent of what it would be (default 25).
    pub percent: u16,
}

/// What moves a real's weight besides its health (lvsmon.conf(5), WEIGHTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct WeightRules {
    /// `slow-above ... cancel-below ...`, if set.
    pub slow: Option<Slow>,
    /// `slow-start D`: the ramp's length after the real comes UP, if set.
    pub slow_start: Option<Duration>,
}

/// `sorry ... --mode`: what the reals' weights do while the sorry server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SorryMode {
    /// Every UP real at weight 0 (the default).
    #[default]
    Replace,
    /// The reals keep their weights beside the sorry server.
    Add,
}

/// The longest ring of any history level: raw results per real server, and minute or hour
/// buckets per real server (65,535 minutes is about 45 days; 65,535 hours about 7.5 years).
///
/// A limit of the config language (the planner refuses longer minute and hour spans) as much
/// as of the rings, so it lives here, with [`HistorySpec`], where both the planner and
/// [`crate::history`] read it.
pub const MAX_RING: usize = 65_535;

/// `history raw D minute D hour D`: how much check history is kept for each real server
/// (lvsmon(8), HISTORY). The rings themselves are [`crate::history::History`].
///
/// Each span may be zero, which keeps nothing at that level. The planner refuses minute and
/// hour spans that need more than [`MAX_RING`] buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistorySpec {
    /// The raw ring keeps every result of about this span: `ceil(raw / interval)` results
    /// per real server, at most [`crate::history::RAW_CAP`].
    pub raw: Duration,
    /// The minute summaries cover this span: `ceil(minute / 60 s)` buckets per real server.
    pub minute: Duration,
    /// The hour summaries cover this span: `ceil(hour / 3600 s)` buckets per real server.
    pub hour: Duration,
}

impl Default for HistorySpec {
    /// `history raw 10m minute 2h hour 2d`.
    fn default() -> Self {
        plan::DEFAULT_HISTORY
    }
}

/// A validated configuration, with every capacity the daemon needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Every file read (the main file first, then includes in reading order).
    pub files: Vec<PathBuf>,
    /// `resync`: how often the IPVS table is read back and repaired.
    pub resync: Duration,
    /// `notify-max`: notify commands running at once.
    pub notify_max: u32,
    /// `exec-max`: `exec` check programs running at once (the rest wait their turn).
    pub exec_max: u32,
    /// `max-checks-in-flight`: the most checks that hold a socket at once (`None`: one per
    /// distinct check, all at once if their grid points meet).
    pub max_in_flight: Option<u32>,
    /// Distinct `notify` commands (argv words); reals point into this list.
    pub notifies: Vec<Vec<Vec<u8>>>,
    /// Where the program word of each entry of `notifies` stands (its first `notify` line),
    /// for the errors of [`crate::notify::check_program`].
    pub notify_at: Vec<Loc>,
    /// `notify-fifo`: the FIFO or file every event line is written to, and where it was set.
    pub notify_fifo: Option<(Vec<u8>, Loc)>,
    /// Virtual services, in file order.
    pub virtuals: Vec<VirtualPlan>,
    /// Real servers (one per real line per virtual: an IPVS destination), grouped by virtual.
    pub reals: Vec<RealPlan>,
    /// Distinct probes. Reals with the same target, check and timing share one.
    pub checks: Vec<CheckPlan>,
    /// `history`: how much check history to keep per real server.
    pub history: HistorySpec,
    /// `sync-daemon`, `track-file`, `ipvs-timeouts`.
    pub director: director::Director,
}

/// One virtual service.
#[derive(Debug, Clone)]
pub struct VirtualPlan {
    /// How the kernel knows it.
    pub key: ServiceKey,
    /// IPVS scheduler name (`wlc`, `rr`, ...).
    pub scheduler: String,
    /// Persistence timeout, if any.
    pub persistent: Option<Duration>,
    /// Fewer UP reals than this brings in the sorry server.
    pub quorum: u32,
    /// The sorry server, if any.
    pub sorry: Option<SocketAddr>,
    /// `sorry ... --mode`.
    pub sorry_mode: SorryMode,
    /// `sorry ... --forward` (default `masq`).
    pub sorry_forward: Forward,
    /// Indices into [`Plan::reals`]: this virtual's reals.
    pub reals: std::ops::Range<usize>,
    /// Index into [`Plan::notifies`] for this virtual's quorum events, if a notify command
    /// applies at the virtual's level.
    pub notify: Option<usize>,
    /// Where the `virtual` line is.
    pub loc: Loc,
    /// `persistence-netmask`: a prefix length the config owns (`None`: the kernel's is kept).
    pub netmask: Option<u8>,
    /// `one-packet`, when the config owns it.
    pub one_packet: Option<bool>,
    /// `sched-flags`: the scheduler flag bits, when the config owns them.
    pub sched_flags: Option<u32>,
}

/// One real server behind one virtual service: an IPVS destination.
#[derive(Debug, Clone)]
pub struct RealPlan {
    /// Index into [`Plan::virtuals`].
    pub virtual_idx: usize,
    /// The destination address and port (port 0 behind a fwmark virtual when none was given).
    pub addr: SocketAddr,
    /// Weight when UP.
    pub weight: u32,
    /// Forwarding method.
    pub forward: Forward,
    /// Quiesce or remove when DOWN.
    pub on_down: OnDown,
    /// When it counts as UP or DOWN.
    pub thresholds: Thresholds,
    /// `slow-above`, `slow-start`.
    pub weights: WeightRules,
    /// Index into [`Plan::checks`]: the probe that decides this real (its first check).
    pub check: usize,
    /// Its other checks, when its block has several `check` lines (check 2, 3, ...): the real
    /// passes only when every one of its checks passes.
    pub more_checks: Vec<usize>,
    /// Index into [`Plan::checks`]: the probe of its `agent`, if one is set. Its replies go to
    /// the weight chain, never to the real's checks.
    pub agent: Option<usize>,
    /// Index into [`Plan::notifies`], if a notify command applies.
    pub notify: Option<usize>,
    /// Where the `real` line is.
    pub loc: Loc,
    /// `u-threshold`, when the config owns it (`None`: the kernel's is kept).
    pub u_threshold: Option<u32>,
    /// `l-threshold`, when the config owns it.
    pub l_threshold: Option<u32>,
    /// `forward tunnel TYPE ...`: the encapsulation, when the config owns it.
    pub tunnel: Option<director::Tunnel>,
}

/// One distinct probe: what to connect to, which plugin, how often.
#[derive(Debug, Clone)]
pub struct CheckPlan {
    /// Where the check connects (the real's address unless `--address`/`--port` said otherwise).
    pub target: SocketAddr,
    /// The plugin with its options.
    pub spec: CheckSpec,
    /// Time between check starts while UP.
    pub interval: Duration,
    /// Time between check starts while failing or DOWN.
    pub retry_interval: Duration,
    /// Longest wait for the TCP handshake.
    pub connect_timeout: Duration,
    /// Longest whole check, connect to verdict.
    pub timeout: Duration,
    /// Indices into [`Plan::reals`] decided by this probe.
    pub reals: Vec<usize>,
    /// `--source` and `--mark`: how the check's socket is set up before it connects.
    pub sock: SockOpts,
}

/// A check line's `--source ADDR` and `--mark N` (lvsmon.conf(5), CHECKS): the address the
/// check's socket is bound to before it connects, and the `SO_MARK` it carries, so that a
/// check can be routed by policy (through the VIP on a direct-routing real, say). Part of what
/// makes two reals share a probe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SockOpts {
    /// Bind the socket to this address (any port) before `connect(2)`.
    pub source: Option<IpAddr>,
    /// Set `SO_MARK` to this value (needs `CAP_NET_ADMIN`).
    pub mark: Option<u32>,
}

impl Plan {
    /// One line for `--check-config` and the startup log.
    pub fn summary(&self) -> String {
        format!(
            "{} virtual services, {} real servers, {} checks ({} files)",
            self.virtuals.len(),
            self.reals.len(),
            self.checks.len(),
            self.files.len()
        )
    }
}
