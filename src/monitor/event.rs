//! Events: the transitions operators are told about (lvsmon(8), EVENTS AND LOG LINES).

use std::net::SocketAddr;

use crate::config::ServiceKey;
use crate::plugins::{Detail, Reason};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A real server became UP.
    Up,
    /// A real server became DOWN.
    Down,
    /// An operator drained a real server.
    Drained,
    /// An operator returned a drained real server to service.
    Undrained,
    /// A virtual service has fewer UP reals than its quorum.
    QuorumLost,
    /// A virtual service has its quorum again.
    QuorumRestored,
    /// A real server's passed check took longer than `slow-above` (lvsmon.conf(5), WEIGHTS).
    Slow,
    /// A SLOW real server's passed check took less than `cancel-below`.
    Fast,
}

impl EventKind {
    /// The name in `event=` and `LVSMON_EVENT`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Up => "up",
            EventKind::Down => "down",
            EventKind::Drained => "drained",
            EventKind::Undrained => "undrained",
            EventKind::QuorumLost => "quorum-lost",
            EventKind::QuorumRestored => "quorum-restored",
            EventKind::Slow => "slow",
            EventKind::Fast => "fast",
        }
    }
}

/// One transition, with everything the log line and the notify environment need.
/// `Copy` and fixed-size, so it can sit in a preallocated queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The virtual service concerned.
    pub service: ServiceKey,
    /// The real server concerned (`None` for quorum events).
    pub real: Option<SocketAddr>,
    /// The last failure's reason, for `down` (and `None` when there is none to tell).
    pub reason: Option<Reason>,
    /// The last failure's detail.
    pub detail: Detail,
    /// Consecutive failures at that moment.
    pub failures: u64,
}
