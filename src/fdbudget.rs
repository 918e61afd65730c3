//! The open-file budget: how many descriptors a plan needs at once ([`FdBudget`]), and the
//! `RLIMIT_NOFILE` raised to it at startup and again at each reload, or the reason why not
//! ([`FdLimitError`]).
//!
//! Startup counts the descriptor numbers already taken ([`FdBudget::taken`]) before the
//! loop's own are opened, and hands that count to the daemon (`Options::fd_taken`): a reload
//! cannot count again, its checks' sockets being open by then. This module knows neither
//! the startup sequence nor the loop.

use std::io::{self, Write as _};

use crate::config::Plan;
use crate::log::{Level, Log};

/// Why the open-file limit cannot be what a plan needs.
#[derive(Debug, thiserror::Error)]
pub enum FdLimitError {
    /// The open-file limit is below what the plan needs and cannot be raised (see
    /// [`FdBudget`]).
    #[error(
        "too few open files: {need} needed for {checks} checks and notify-max {notify_max} (soft limit {soft}, hard limit {hard}); {}",
        fd_hint(*.need, *.nr_open)
    )]
    TooFew {
        /// Descriptors needed ([`FdBudget::need`]).
        need: u64,
        /// Distinct checks in the plan (or `max-checks-in-flight`, if lower).
        checks: u64,
        /// `notify-max`: one descriptor for each notify command running at once.
        notify_max: u64,
        /// The soft limit found.
        soft: u64,
        /// The hard limit found.
        hard: u64,
        /// `/proc/sys/fs/nr_open`, the most any hard limit can be, if it could be read.
        nr_open: Option<u64>,
    },
    /// The limits could not be read.
    #[error("getrlimit(RLIMIT_NOFILE): {0}")]
    Unreadable(io::Error),
}

/// The open files lvsmon can need at once, counted from the plan:
///
/// `need = taken + checks + own`
///
/// - `checks`: one socket per distinct check (a probe; identical checks of reals behind
///   several virtuals are one). A probe holds its socket only from its start to its verdict
///   and never runs twice at once, so this bound cannot be exceeded. On average fewer are
///   open (about `checks × timeout / interval`, with the retry interval for failing reals),
///   but that is no bound: the fixed grid does not keep starts apart for ever (a switch to
///   `retry-interval` moves a probe's grid points, intervals of different lengths line up,
///   and a turn that comes late starts every check due at once), so lvsmon sizes for the
///   worst case. An open-file limit costs nothing until descriptors are used.
/// - `own`: the daemon's own descriptors, [`FdBudget::OWN`] of them (epoll, the signal
///   pipe's two ends, netlink, syslog, the control and metrics listeners and their 16
///   client slots, the state file, its directory for `fsync` and the file read back at
///   startup, the pid file, and a margin for the C library and std), plus `notify-max`, one
///   for each notify command running at once (posix_spawn may use a pipe to report a failed
///   exec).
/// - `taken`: `RLIMIT_NOFILE` bounds descriptor *numbers* (a new descriptor gets the lowest
///   free number, which must be below the soft limit), so the numbers already in use when
///   the budget is made count too: 0, 1, 2, anything inherited, and the netlink and syslog
///   sockets opened before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// Distinct checks in the plan: at most one socket each at any moment.
    pub checks: u64,
    /// `notify-max`: the notify commands that may run at once (counted in `own` too).
    pub notify: u64,
    /// The daemon's own descriptors, notify commands included.
    pub own: u64,
    /// One more than the highest descriptor number open when the budget was made.
    pub taken: u64,
}

impl FdBudget {
    /// Descriptors of the daemon itself, apart from notify commands: epoll 1, the loop's
    /// timer 1, signal pipe 2, netlink 1, syslog 1, control listener 1, metrics listener 1,
    /// client slots ([`crate::control::SLOTS`]), state file, state directory and state
    /// read-back 3, pid file 1, margin 32.
    pub const OWN: u64 = 1 + 1 + 2 + 1 + 1 + 1 + 1 + crate::control::SLOTS as u64 + 3 + 1 + 32;

    /// The budget of `plan`, with descriptor numbers below `taken` already in use.
    pub fn for_plan(plan: &Plan, taken: u64) -> FdBudget {
        let probes = plan.checks.len() as u64;
        FdBudget {
            checks: plan
                .max_in_flight
                .map_or(probes, |m| probes.min(u64::from(m))),
            notify: u64::from(plan.notify_max.max(1)),
            own: Self::OWN + u64::from(plan.notify_max.max(1)),
            taken,
        }
    }

    /// The soft limit on open files that lets every check run at once.
    pub fn need(&self) -> u64 {
        self.taken + self.checks + self.own
    }
}

/// One more than the highest descriptor number this process has open (3 if that cannot be
/// read: standard input, output and error). Holes below it count as taken too: new
/// descriptors may fill them, so this over-counts a little, never under.
pub fn fd_numbers_in_use() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 3;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .map(|fd| fd + 1)
        .max()
        .unwrap_or(0)
        .max(3)
}

/// `RLIM_INFINITY` as a `u64` (`rlim_t` is not a `u64` on every target).
#[allow(clippy::unnecessary_cast)]
const UNLIMITED: u64 = libc::RLIM_INFINITY as u64;

/// The soft and hard `RLIMIT_NOFILE`.
#[allow(clippy::unnecessary_cast)]
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
}

fn set_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A limit as `ulimit` prints it.
pub fn limit_text(v: u64) -> String {
    if v == UNLIMITED {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// What the limits must become for `need` open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raise {
    /// The soft limit is high enough already (it is never lowered).
    Nothing,
    /// The soft limit goes up to `need`, within the hard limit.
    Soft,
    /// Both limits go up to `need`: allowed only with `CAP_SYS_RESOURCE`, and only up to
    /// `fs.nr_open`.
    Both,
}

fn raise_for(need: u64, soft: u64, hard: u64) -> Raise {
    if soft >= need {
        Raise::Nothing
    } else if hard >= need {
        Raise::Soft
    } else {
        Raise::Both
    }
}

/// The advice of a [`FdLimitError::TooFew`].
fn fd_hint(need: u64, nr_open: Option<u64>) -> String {
    match nr_open {
        Some(max) if need > max => format!(
            "that is above fs.nr_open ({max}): raise it (sysctl fs.nr_open), then the hard limit (ulimit -Hn, or LimitNOFILE= in the systemd unit)"
        ),
        _ => "raise the hard limit (ulimit -Hn, or LimitNOFILE= in the systemd unit)".into(),
    }
}

/// Makes sure every check can hold its socket at once (see [`FdBudget`]): raises the soft
/// limit on open files to what the plan needs, and the hard limit too when that is above it
/// and lvsmon may (`CAP_SYS_RESOURCE`, up to `fs.nr_open`). Logs the figures.
///
/// # Errors
/// [`FdLimitError`] when the limit cannot be had: lvsmon refuses to start rather than run
/// short, since every check beyond the limit would be deferred for ever.
pub fn raise_fd_limit(plan: &Plan, log: &mut Log) -> Result<FdBudget, FdLimitError> {
    let budget = FdBudget::for_plan(plan, fd_numbers_in_use());
    let (soft, hard) = fit(&budget)?;
    let (now_soft, now_hard) = nofile().unwrap_or((soft, hard));
    if let Some(mut l) = log.line(Level::Notice) {
        let _ = write!(
            l,
            "msg=\"open files\" need={} checks={} own={} taken={} soft={} hard={} was_soft={} was_hard={}",
            budget.need(),
            budget.checks,
            budget.own,
            budget.taken,
            limit_text(now_soft),
            limit_text(now_hard),
            limit_text(soft),
            limit_text(hard)
        );
    }
    Ok(budget)
}

/// Raises the limits to `budget`'s need where needed and allowed; returns the soft and hard
/// limits found before.
///
/// # Errors
/// [`FdLimitError`] when the need cannot be had.
fn fit(budget: &FdBudget) -> Result<(u64, u64), FdLimitError> {
    let need = budget.need();
    let (soft, hard) = nofile().map_err(FdLimitError::Unreadable)?;
    let ok = match raise_for(need, soft, hard) {
        Raise::Nothing => true,
        Raise::Soft => set_nofile(need, hard).is_ok(),
        Raise::Both => set_nofile(need, need).is_ok(),
    };
    if ok {
        return Ok((soft, hard));
    }
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse().ok());
    Err(FdLimitError::TooFew {
        need,
        checks: budget.checks,
        notify_max: budget.notify,
        soft,
        hard,
        nr_open,
    })
}

/// For a reload: raises the open-file limit to what `plan` needs, as startup does (the
/// soft limit up to the hard one; the hard one too where lvsmon may), or says why not, in
/// the words of the startup error. Never lowers it. `taken`: the descriptor numbers taken
/// before the loop's own were opened, as startup counted them ([`FdBudget::taken`]).
///
/// # Errors
/// As at startup: [`FdLimitError`].
pub fn fit_fd_limit(plan: &Plan, taken: u64) -> Result<(), FdLimitError> {
    fit(&FdBudget::for_plan(plan, taken)).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Plan {
        use crate::config;
        let doc = config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
            .expect("parses");
        config::plan::plan(&doc, None).expect("plans")
    }

    // ----- Tests for the budget ---------------------------------------------------------------

    #[test]
    fn budget_counts_distinct_checks_notify_max_and_taken_numbers() {
        // Three reals, two of them the same address and check behind two virtuals: two probes.
        let plan = plan_of(
            "notify-max 5\n\
             virtual tcp 192.0.2.1:80 {\n  real 198.51.100.1:80\n  real 198.51.100.2:80\n}\n\
             virtual tcp 192.0.2.2:80 {\n  real 198.51.100.1:80\n}\n",
        );
        assert_eq!(plan.checks.len(), 2);
        let b = FdBudget::for_plan(&plan, 7);
        assert_eq!(
            b,
            FdBudget {
                checks: 2,
                notify: 5,
                own: FdBudget::OWN + 5,
                taken: 7
            }
        );
        assert_eq!(b.need(), 7 + 2 + FdBudget::OWN + 5);
        // The daemon's own: at least every client slot and listener, at most a small margin.
        assert!((crate::control::SLOTS as u64 + 8..=128).contains(&FdBudget::OWN));
    }

    #[test]
    fn numbers_in_use_reach_above_every_open_descriptor() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        use std::os::fd::AsRawFd;
        let n = fd_numbers_in_use();
        assert!(n > f.as_raw_fd() as u64, "{n} <= {}", f.as_raw_fd());
        assert!(n >= 3);
    }

    /// A reload's budget counts the descriptor numbers startup found taken, as given to it
    /// (no global): a count that no limit can hold is refused with the need it made, and
    /// the limits are left as they were.
    #[test]
    fn a_reload_counts_the_numbers_taken_that_it_is_given() {
        let plan = plan_of("virtual tcp 192.0.2.1:80 {\n  real 198.51.100.1:80\n}\n");
        let before = nofile().unwrap();
        // Above any fs.nr_open (at most 2^30 on Linux): no hard limit can reach it.
        let taken = 1u64 << 40;
        match fit_fd_limit(&plan, taken) {
            Err(FdLimitError::TooFew { need, checks, .. }) => {
                assert_eq!(need, FdBudget::for_plan(&plan, taken).need());
                assert!(need > taken, "{need}");
                assert_eq!(checks, 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(nofile().unwrap(), before);
        // What a one-check plan needs on top of the numbers taken here fits.
        fit_fd_limit(&plan, fd_numbers_in_use()).unwrap();
    }

    // ----- Tests for the decision --------------------------------------------------------------

    #[test]
    fn raise_only_what_is_short() {
        let inf = UNLIMITED;
        for (need, soft, hard, want) in [
            (100, 1024, 4096, Raise::Nothing),
            (1024, 1024, 4096, Raise::Nothing),
            (1025, 1024, 4096, Raise::Soft),
            (4096, 1024, 4096, Raise::Soft),
            (4097, 1024, 4096, Raise::Both),
            (120_064, 1024, 20_000, Raise::Both),
            (120_064, 1024, inf, Raise::Soft),
            (10, inf, inf, Raise::Nothing),
        ] {
            assert_eq!(raise_for(need, soft, hard), want, "{need} {soft} {hard}");
        }
    }

    #[test]
    fn refusal_is_one_line_that_says_what_to_raise() {
        let e = FdLimitError::TooFew {
            need: 120_064,
            checks: 120_000,
            notify_max: 8,
            soft: 1024,
            hard: 20_000,
            nr_open: Some(1_048_576),
        };
        assert_eq!(
            e.to_string(),
            "too few open files: 120064 needed for 120000 checks and notify-max 8 (soft limit \
             1024, hard limit 20000); raise the hard limit (ulimit -Hn, or LimitNOFILE= in the systemd unit)"
        );
        let e = FdLimitError::TooFew {
            need: 2_000_064,
            checks: 2_000_000,
            notify_max: 8,
            soft: 1024,
            hard: 1_048_576,
            nr_open: Some(1_048_576),
        };
        let t = e.to_string();
        assert!(t.contains("above fs.nr_open (1048576)"), "{t}");
        assert!(t.contains("sysctl fs.nr_open"), "{t}");
        assert!(!t.contains('\n'));
    }

    #[test]
    fn limits_print_as_ulimit_does() {
        assert_eq!(limit_text(UNLIMITED), "unlimited");
        assert_eq!(limit_text(20_000), "20000");
    }
}
