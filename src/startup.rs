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
use crate::config::{self, ConfigError};
use crate::event_loop::{Daemon, Options};
use crate::fdbudget::{self, FdBudget, FdLimitError};
use crate::ipvs::client::{Netlink, OpenError};
use crate::ipvs::{managed_services, DryRun, Ipvs};
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
    /// The open-file limit is below what the plan needs and cannot be raised, or could not
    /// be read ([`crate::fdbudget`]).
    #[error("{0}")]
    FdLimit(#[from] FdLimitError),
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
            "history: {:.1} MiB ({} bytes per real server on average; raw {}s at most {} results, minute {}s, hour {}s)",
            bytes as f64 / 1048576.0,
            bytes / plan.reals.len().max(1),
            h.raw.as_secs(),
            crate::history::RAW_CAP,
            h.minute.as_secs(),
            h.hour.as_secs()
        );
        let fds = FdBudget::for_plan(&plan, fdbudget::fd_numbers_in_use());
        let (soft, hard) = fdbudget::nofile().unwrap_or((0, 0));
        let _ = writeln!(
            report,
            "open files: {} needed for {} checks and notify-max {} (soft limit {}, hard limit {})",
            fds.need(),
            fds.checks,
            fds.notify,
            fdbudget::limit_text(soft),
            fdbudget::limit_text(hard)
        );
        for w in missing_program_warnings(&plan, root, user) {
            let _ = writeln!(report, "{w}");
        }
        for w in crate::ipvs::daemon::quiescent_template_warnings(
            &plan,
            std::path::Path::new(crate::ipvs::daemon::EXPIRE_QUIESCENT_TEMPLATE),
        ) {
            let _ = writeln!(report, "{w}");
        }
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
    // Director pairs: the kernel's timeouts and sync daemons, once, before the loop.
    for line in crate::ipvs::daemon::apply_at_start(&plan.director, cli.dry_run) {
        let level = if line.contains("failed") || line.contains("errno") {
            Level::Warn
        } else {
            Level::Notice
        };
        if let Some(mut l) = log.line(level) {
            l.quoted("msg", line.as_bytes());
        }
    }
    let fds = fdbudget::raise_fd_limit(&plan, &mut log)?;
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
        fd_taken: fds.taken,
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

/// `--check-config` warnings for `exec` checks whose program (an absolute path) is not an
/// executable file where the daemon will run it (inside `root`, the `--chroot` directory, for
/// `user`, the `--user` uid and gid): the file is accepted (a converted configuration may name
/// a script that is installed later), but until the program is there its checks cannot run:
/// each is a local error, which never marks a real server down, so the real keeps its state.
pub(crate) fn missing_program_warnings(
    plan: &crate::config::Plan,
    root: Option<&std::path::Path>,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Vec<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for c in &plan.checks {
        let crate::plugins::CheckSpec::Exec(e) = &c.spec else {
            continue;
        };
        let Some(prog) = e.argv.first().filter(|p| p.starts_with(b"/")) else {
            continue;
        };
        let shown = std::path::Path::new(std::ffi::OsStr::from_bytes(prog));
        let path = match root {
            Some(r) => r.join(shown.strip_prefix("/").unwrap_or(shown)),
            None => shown.to_path_buf(),
        };
        let ok = std::fs::metadata(&path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        let meanwhile = "its checks are local errors and never mark the real server down or up";
        if !ok {
            out.push(format!(
                "warning: check exec for {}: no executable program at {}{}: until it is there, \
                 {meanwhile}",
                c.target,
                shown.display(),
                match root {
                    Some(r) => format!(" inside --chroot {}", r.display()),
                    None => String::new(),
                },
            ));
        } else if let Some((uid, gid)) = user {
            if let Err(err) = crate::privdrop::executable_as(prog, root, uid, gid) {
                out.push(format!(
                    "warning: check exec for {}: program {} is not executable by uid {uid} gid \
                     {gid} ({err}): until it is, {meanwhile}",
                    c.target,
                    shown.display(),
                ));
            }
        }
    }
    out
}
