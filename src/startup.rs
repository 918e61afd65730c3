//! From command line to running daemon: load the plan, prepare the process (log, pid file,
//! file-descriptor limit), pick the IPVS side, build the [`Daemon`], drop privileges
//! (`--user`, `--chroot`: [`crate::privdrop`]) and run it.
//!
//! Every failure here is fatal and reported as one [`StartupError`] line by `main`, which
//! then waits 500 ms before exiting 1 (SPEC section 1).

use std::io;
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
    /// `--user` or `--chroot` could not be carried out.
    #[error("{0}")]
    Privileges(#[from] PrivError),
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
        println!("{}: OK: {}", cli.file.display(), plan.summary());
        let bytes = crate::history::History::bytes_for(
            &plan.history,
            &crate::history::History::intervals(&plan),
        );
        let h = &plan.history;
        println!(
            "history: {:.1} MiB ({} bytes per real server on average; raw {}s, minute {}s, hour {}s)",
            bytes as f64 / 1048576.0,
            bytes / plan.reals.len().max(1),
            h.raw.as_secs(),
            h.minute.as_secs(),
            h.hour.as_secs()
        );
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
    raise_fd_limit(&plan);
    let mut pid = match &cli.pidfile {
        Some(p) => Some(PidFile::create(p.clone())?),
        None => None,
    };
    let opts = Options {
        socket: Some(cli.socket.clone()),
        metrics: cli.metrics,
        state_dir: Some(cli.state_dir.clone()),
        state_interval: cli.state_interval,
        file: Some(cli.file.clone()),
        interval: cli.interval,
        systemd: systemd.config,
        ..Options::default()
    };
    let mut daemon = Daemon::new(plan, ipvs, log, &opts).map_err(io_err(format!(
        "startup (control socket {}, state directory {}{})",
        cli.socket.display(),
        cli.state_dir.display(),
        cli.metrics
            .map(|m| format!(", metrics {m}"))
            .unwrap_or_default()
    )))?;
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
            // stale socket is replaced at the next start, a stale pid file overwritten).
            socket.0 = None;
            if let Some(p) = pid.as_mut() {
                p.0 = None;
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

/// Raises the soft limit on open files towards what the plan needs (one socket per check
/// in flight, plus a margin for the daemon's own files and notify pipes). What cannot be
/// had shows up later as deferred checks (`local-error`), never as DOWN real servers.
fn raise_fd_limit(plan: &Plan) {
    let need = plan.checks.len() as u64 + 64;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < need {
            lim.rlim_cur = need.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
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

/// The `--pidfile`, removed when dropped (`None`: left in place).
struct PidFile(Option<PathBuf>);

impl PidFile {
    fn create(path: PathBuf) -> Result<PidFile, StartupError> {
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .map_err(io_err(format!("pid file {}", path.display())))?;
        Ok(PidFile(Some(path)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
