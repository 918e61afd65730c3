//! From command line to running daemon: load the plan, prepare the process (log, pid file,
//! file-descriptor limit), pick the IPVS side, build the [`Daemon`], drop privileges
//! (`--user`, `--chroot`: [`crate::privdrop`]) and run it.
//!
//! Every failure here is fatal and reported as one [`StartupError`] line by `main`, which
//! then waits 500 ms before exiting 1 (lvsmon(8), OPTIONS).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::PathBuf;

use crate::cli::{Cli, LogTarget};
use crate::config::{self, ConfigError, Plan, ServiceKey};
use crate::event_loop::{Daemon, Options};
use crate::ipvs::client::{Netlink, OpenError};
use crate::ipvs::{DryRun, Ipvs};
use crate::log::{Level, Log, Sink};
use crate::privdrop::{PrivError, Target};

/// Why lvsmon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The configuration file is unusable.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// `--check-config` found the configuration unusable.
    #[error("{0}")]
    ConfigCheck(ConfigError),
    /// A system resource could not be set up.
    #[error("{what}: {source}")]
    Io {
        /// What was being set up.
        what: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The IPVS side could not start (no IPVS in the kernel, no permission).
    #[error("{0}")]
    Ipvs(#[from] OpenError),
    /// Another process holds the pid file or the state directory, or the pid file is a
    /// symbolic link: the message says which, and names the holder's pid when known.
    #[error("{0}")]
    Refused(String),
    /// `--user` or `--chroot` could not be carried out.
    #[error("{0}")]
    Privileges(#[from] PrivError),
    /// `--check-config` could not write its report.
    #[error("{0}")]
    Output(crate::output::Failure),
    /// The open-file limit is below what the plan needs and cannot be raised (see
    /// [`FdBudget`]).
    #[error(
        "too few open files: {need} needed for {checks} checks and notify-max {notify_max} (soft limit {soft}, hard limit {hard}); {}",
        fd_hint(*.need, *.nr_open)
    )]
    FdLimit {
        /// Descriptors needed ([`FdBudget::need`]).
        need: u64,
        /// Distinct checks in the plan (or `max-checks-in-flight`, if lower).
        checks: u64,
        /// `notify-max`: one descriptor for each notify command running at once.
        notify_max: u64,
        /// The soft limit found at startup.
        soft: u64,
        /// The hard limit found at startup.
        hard: u64,
        /// `/proc/sys/fs/nr_open`, the most any hard limit can be, if it could be read.
        nr_open: Option<u64>,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StartupError {
    move |source| StartupError::Io {
        what: what.into(),
        source,
    }
}

/// Runs lvsmon as the command line says; returns when the daemon stops.
///
/// # Errors
/// Any startup failure; the daemon's own run never fails for a real server's behaviour.
pub fn run(cli: &Cli) -> Result<(), StartupError> {
    if cli.check_config {
        let plan = config::load(&cli.file, cli.interval).map_err(StartupError::ConfigCheck)?;
        // The notify programs as the daemon would find them: inside the chroot, for the user.
        // (Without root, `--user` cannot be looked up here: then the daemon's own user.)
        let target = Target::resolve(cli.user.as_deref(), cli.chroot.as_deref())
            .ok()
            .flatten();
        let root = target
            .as_ref()
            .and_then(|t| t.chroot.as_deref())
            .or(cli.chroot.as_deref());
        let user = target
            .as_ref()
            .and_then(|t| t.user.as_ref())
            .map(|u| (u.uid, u.gid));
        crate::notify::check_programs(&plan, root, user).map_err(StartupError::ConfigCheck)?;
        let mut report = format!("{}: OK: {}\n", cli.file.display(), plan.summary());
        let bytes = crate::history::History::bytes_for(
            &plan.history,
            &crate::history::History::intervals(&plan),
        );
        let h = &plan.history;
        let _ = writeln!(
            report,
            "history: {:.1} MiB ({} bytes per real server on average; raw {}s, minute {}s, hour {}s)",
            bytes as f64 / 1048576.0,
            bytes / plan.reals.len().max(1),
            h.raw.as_secs(),
            h.minute.as_secs(),
            h.hour.as_secs()
        );
        let fds = FdBudget::for_plan(&plan, fd_numbers_in_use());
        let (soft, hard) = nofile().unwrap_or((0, 0));
        let _ = writeln!(
            report,
            "open files: {} needed for {} checks and notify-max {} (soft limit {}, hard limit {})",
            fds.need(),
            fds.checks,
            fds.notify,
            limit_text(soft),
            limit_text(hard)
        );
        crate::output::stdout(&report).map_err(StartupError::Output)?;
        return Ok(());
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt before any other thread exists. One arena for every thread: a reload
    // builds the new tables on a helper thread and frees the old ones on another, and with
    // per-thread arenas each of them would keep its own copy of a large configuration's
    // worth of freed memory (100,000 reals: 97 MB grew to 370 MB over a few reloads).
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // Before anything else, and before the notify commands copy the environment: systemd's
    // variables are for lvsmon alone (crate::sd_notify).
    let systemd = crate::sd_notify::take_env();
    let plan = config::load(&cli.file, cli.interval)?;
    // Before anything is opened: an unknown user or a missing directory stops us here.
    let target = Target::resolve(cli.user.as_deref(), cli.chroot.as_deref())?;
    // The notify programs must start where and as whom they will run: inside the chroot,
    // as the user.
    crate::notify::check_programs(
        &plan,
        target.as_ref().and_then(|t| t.chroot.as_deref()),
        target
            .as_ref()
            .and_then(|t| t.user.as_ref())
            .map(|u| (u.uid, u.gid)),
    )?;
    let level = if cli.quiet {
        Level::Error
    } else {
        match cli.verbose {
            0 => Level::Notice,
            1 => Level::Info,
            _ => Level::Debug,
        }
    };
    let mut log = match cli.log {
        LogTarget::Stderr => Log::new(Sink::Stderr, level),
        LogTarget::Syslog => Log::syslog(level).map_err(io_err("syslog socket /dev/log"))?,
    };
    for w in &systemd.warnings {
        if let Some(mut l) = log.line(Level::Warn) {
            l.quoted("msg", w.as_bytes());
        }
    }
    let ipvs: Box<dyn Ipvs> = if cli.dry_run {
        Box::new(DryRun::default())
    } else {
        let managed = managed_services(&plan);
        let cap = 2 * plan.reals.len() + 4 * plan.virtuals.len() + 64;
        Box::new(Netlink::open(&managed, cap)?)
    };
    raise_fd_limit(&plan, &mut log)?;
    let mut pid = match &cli.pidfile {
        Some(p) => Some(PidFile::create(p.clone(), &mut log)?),
        None => None,
    };
    let opts = Options {
        socket: Some(cli.socket.clone()),
        metrics: cli.metrics,
        state_dir: Some(cli.state_dir.clone()),
        state_interval: cli.state_interval,
        file: Some(cli.file.clone()),
        interval: cli.interval,
        reload_timeout: cli.reload_timeout,
        systemd: systemd.config,
        ..Options::default()
    };
    let mut daemon = Daemon::new(plan, ipvs, log, &opts).map_err(|e| match e.kind() {
        // The state directory is locked by another lvsmon: its message says it all.
        io::ErrorKind::WouldBlock if e.get_ref().is_some() => StartupError::Refused(e.to_string()),
        _ => io_err(format!(
            "startup (control socket {}, state directory {}{})",
            cli.socket.display(),
            cli.state_dir.display(),
            cli.metrics
                .map(|m| format!(", metrics {m}"))
                .unwrap_or_default()
        ))(e),
    })?;
    // The plan is gone: what it took goes back to the system rather than staying in the
    // allocator's free lists for the daemon's whole life.
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
    let mut socket = SocketFile(Some(cli.socket.clone()));
    if let Some(target) = &target {
        drop_privileges(&mut daemon, target, cli, &mut || {
            // Inside the chroot these paths name other files, if any: leave ours behind (a
            // stale socket is replaced at the next start; the pid file is emptied at exit
            // through its descriptor, and locked and overwritten at the next start).
            socket.0 = None;
            if let Some(p) = pid.as_mut() {
                p.path = None;
            }
        })?;
    }
    daemon.run().map_err(io_err("event loop"))
}

/// Everything is open: gives the state directory to the user, drops the privileges, proves
/// that saves still work, and logs what the daemon runs with. `chrooted` runs once the chroot
/// has been entered.
fn drop_privileges(
    daemon: &mut Daemon,
    target: &Target,
    cli: &Cli,
    chrooted: &mut dyn FnMut(),
) -> Result<(), StartupError> {
    let state = format!("state directory {}", cli.state_dir.display());
    if let Some(saver) = daemon.saver() {
        // To the user the daemon runs as from now on: without CAP_DAC_OVERRIDE even root
        // writes only where the permission bits let it.
        // SAFETY: geteuid and getegid have no preconditions.
        let (uid, gid) = match &target.user {
            Some(u) => (u.uid, u.gid),
            None => unsafe { (libc::geteuid(), libc::getegid()) },
        };
        saver
            .chown(uid, gid)
            .map_err(io_err(format!("{state}: giving it to uid {uid} gid {gid}")))?;
    }
    let done = target.apply(chrooted)?;
    if let Some(saver) = daemon.saver() {
        saver.probe().map_err(io_err(format!(
            "{state}: cannot create files in it after the privilege drop"
        )))?;
    }
    if let Some(mut l) = daemon.log().line(Level::Notice) {
        use std::io::Write;
        let _ = write!(l, "msg=\"privileges dropped\"");
        if let Some(u) = &target.user {
            let _ = write!(l, " user={}", u.name);
        }
        let _ = write!(l, " uid={} gid={}", done.uid, done.gid);
        if let Some(dir) = &target.chroot {
            let _ = write!(l, " chroot={}", dir.display());
        }
        let _ = write!(l, " caps={}", done.caps);
    }
    Ok(())
}

/// The services lvsmon manages, each with its address family: a fwmark service is IPv6 when
/// all of its reals are, IPv4 otherwise.
pub fn managed_services(plan: &Plan) -> Vec<(ServiceKey, u16)> {
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
fn fd_numbers_in_use() -> u64 {
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
fn nofile() -> io::Result<(u64, u64)> {
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
fn limit_text(v: u64) -> String {
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

/// The advice of a [`StartupError::FdLimit`].
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
/// [`StartupError::FdLimit`] when the limit cannot be had: lvsmon refuses to start rather
/// than run short, since every check beyond the limit would be deferred for ever.
fn raise_fd_limit(plan: &Plan, log: &mut Log) -> Result<FdBudget, StartupError> {
    let budget = FdBudget::for_plan(plan, fd_numbers_in_use());
    STARTUP_TAKEN.store(budget.taken, std::sync::atomic::Ordering::Relaxed);
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
/// [`StartupError::FdLimit`] when the need cannot be had.
fn fit(budget: &FdBudget) -> Result<(u64, u64), StartupError> {
    let need = budget.need();
    let (soft, hard) = nofile().map_err(io_err("getrlimit(RLIMIT_NOFILE)"))?;
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
    Err(StartupError::FdLimit {
        need,
        checks: budget.checks,
        notify_max: budget.notify,
        soft,
        hard,
        nr_open,
    })
}

/// The descriptor numbers taken before the loop's own were opened, as startup counted them
/// (a reload cannot count again: its checks' sockets are open by then).
static STARTUP_TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(3);

/// For a reload: raises the open-file limit to what `plan` needs, as startup does (the
/// soft limit up to the hard one; the hard one too where lvsmon may), or says why not, in
/// the words of the startup error. Never lowers it.
///
/// # Errors
/// The message of [`StartupError::FdLimit`].
pub fn fit_fd_limit(plan: &Plan) -> Result<(), String> {
    let taken = STARTUP_TAKEN.load(std::sync::atomic::Ordering::Relaxed);
    fit(&FdBudget::for_plan(plan, taken))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The control socket's file, removed when the daemon stops (`None`: left in place).
struct SocketFile(Option<PathBuf>);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The `--pidfile`: opened without following a symbolic link, locked (`flock`, exclusive)
/// for the daemon's whole life, and holding its pid. The descriptor is close-on-exec (notify
/// commands do not inherit the lock) and survives the privilege drop. At a clean stop the
/// file is removed if the path still names it (`path` is `None` once the path means
/// something else: after `--chroot`), else emptied through the descriptor, so that a pid
/// file left behind never names a process.
struct PidFile {
    file: std::fs::File,
    path: Option<PathBuf>,
}

impl PidFile {
    /// Opens, locks and fills the pid file.
    ///
    /// # Errors
    /// The path is a symbolic link or not a regular file, another process holds the lock
    /// (named by its pid), or the file cannot be written.
    fn create(path: PathBuf, log: &mut Log) -> Result<PidFile, StartupError> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let what = || format!("pid file {}", path.display());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => StartupError::Refused(format!(
                    "{} is a symbolic link: refusing to follow it (remove it, or name the pid file itself)",
                    what()
                )),
                _ => io_err(what())(e),
            })?;
        let meta = file.metadata().map_err(io_err(what()))?;
        if !meta.file_type().is_file() {
            return Err(StartupError::Refused(format!(
                "{} is not a regular file: name a file (or a path where one may be created)",
                what()
            )));
        }
        match crate::state::lock(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Whoever holds the lock wrote its pid into the file.
                let mut text = [0u8; 32];
                let n = file.read_at(&mut text, 0).unwrap_or(0);
                let written = std::str::from_utf8(&text[..n])
                    .ok()
                    .and_then(|t| t.trim().parse().ok());
                let holder = crate::state::holder_text(crate::state::lock_holder(&file), written);
                return Err(StartupError::Refused(format!(
                    "{} is locked by {holder}: it is running; stop it first, or give this one \
                     another --pidfile, --socket and --state-dir",
                    what()
                )));
            }
            Err(e) => {
                // A file system without locks: the pid is still written.
                if let Some(mut l) = log.line(Level::Warn) {
                    let errno = e.raw_os_error().unwrap_or(0);
                    let _ = write!(
                        l,
                        "msg=\"pid file not locked\" path={} error=\"{}\" errno={errno}",
                        path.display(),
                        crate::state::errno_text(errno)
                    );
                }
            }
        }
        let pid = format!("{}\n", std::process::id());
        file.set_len(0)
            .and_then(|_| file.write_all_at(pid.as_bytes(), 0))
            .map_err(io_err(what()))?;
        Ok(PidFile {
            file,
            path: Some(path),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // Removed only while the path still leads to the file we locked.
        let ours = |p: &PathBuf| match (std::fs::symlink_metadata(p), self.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        let removed = match &self.path {
            Some(p) if ours(p) => std::fs::remove_file(p).is_ok(),
            _ => false,
        };
        if !removed {
            let _ = self.file.set_len(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str) -> Plan {
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
        let e = StartupError::FdLimit {
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
        let e = StartupError::FdLimit {
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
