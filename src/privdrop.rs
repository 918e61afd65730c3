//! The privilege drop of `--user NAME` and `--chroot DIR` (lvsmon(8), OPTIONS).
//!
//! lvsmon starts as root because it needs root to open what it uses: the IPVS netlink socket,
//! the control socket in `/run`, perhaps a metrics port below 1024, `/dev/log`, the pid file
//! and the state directory. Once all of them are open it needs only one privilege to go on:
//! CAP_NET_ADMIN, which the kernel checks on every IPVS command. Everything else is given up
//! here, so that a flaw in the code that reads bytes from real servers and clients cannot be
//! turned into root on the director.
//!
//! The sequence ([`Target::apply`]), each step fatal if it fails:
//! 1. `chroot(DIR)` and `chdir("/")` (with `--chroot`);
//! 2. the securebits `SECBIT_NOROOT` and `SECBIT_NO_CAP_AMBIENT_RAISE`, both locked, so no
//!    program started later (notify commands) gains capabilities from being root or running a
//!    set-user-ID-root file, nor through the ambient set;
//! 3. every capability but the kept ones is dropped from the bounding set;
//! 4. with `--user`: `PR_SET_KEEPCAPS`, `setgroups` to the user's primary group alone,
//!    `setgid`, `setuid`, and `PR_SET_KEEPCAPS` off again;
//! 5. `capset`: permitted and effective are the kept set, inheritable is empty; the ambient set
//!    is cleared;
//! 6. `PR_SET_NO_NEW_PRIVS`;
//! 7. the result is read back (ids, groups, the three sets, the bounding set, no_new_privs) and
//!    compared.
//!
//! The user is looked up ([`Target::resolve`]) before anything is opened and long before the
//! chroot, where the password database is usually out of reach.
//!
//! Capabilities and credentials belong to each thread, so the drop must happen while the process
//! has one thread; threads started later inherit the reduced sets. [`Target::apply`] refuses to
//! run with more than one thread.
//!
//! Why `PR_SET_NO_NEW_PRIVS` on top of the bounding set and `SECBIT_NOROOT`: those two already
//! keep every capability but CAP_NET_ADMIN from anything started after the drop, but a
//! set-user-ID-root program would still run with effective uid 0, and uid 0 owns most of the
//! system's files (`/etc/shadow`, `/etc/cron.d`) whatever its capabilities. With no_new_privs,
//! set-user-ID and set-group-ID bits and file capabilities are ignored by `execve`, so a notify
//! command (or anything a compromised daemon starts) runs exactly as the daemon's user. The
//! price: set-user-ID and set-group-ID helpers do not work from notify commands (`sudo`, and
//! Postfix's `postdrop` behind `mail`/`sendmail`). See the man page, PRIVILEGE DROP.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `CAP_NET_ADMIN` (`linux/capability.h`): every IPVS command needs it.
pub const CAP_NET_ADMIN: u32 = 12;
/// `CAP_NET_RAW` (`linux/capability.h`), for a check that would need raw sockets.
pub const CAP_NET_RAW: u32 = 13;

/// The capabilities lvsmon keeps after the drop. This is the one place that decides it: a
/// plugin that needed raw sockets (an ICMP check) would add [`CAP_NET_RAW`] here.
pub fn kept_capabilities() -> Caps {
    Caps::EMPTY.with(CAP_NET_ADMIN)
}

/// A set of capabilities, bit `n` for capability number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps(pub u64);

impl Caps {
    /// No capability.
    pub const EMPTY: Caps = Caps(0);

    /// This set plus capability `cap`.
    pub const fn with(self, cap: u32) -> Caps {
        Caps(self.0 | 1 << cap)
    }

    /// True when capability `cap` is in the set.
    pub fn has(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1 << cap) != 0
    }

    fn low(self) -> u32 {
        self.0 as u32
    }

    fn high(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Writes the set as `capsh` names it: `cap_net_admin,cap_net_raw`, or `none`.
impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("none");
        }
        let mut first = true;
        for cap in 0..64 {
            if !self.has(cap) {
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            match cap {
                CAP_NET_ADMIN => f.write_str("cap_net_admin")?,
                CAP_NET_RAW => f.write_str("cap_net_raw")?,
                n => write!(f, "cap_{n}")?,
            }
        }
        Ok(())
    }
}

/// Why the privileges could not be dropped. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    /// `--user` names no user of the password database.
    #[error("--user {name}: no such user")]
    UnknownUser {
        /// The name given.
        name: String,
    },
    /// The password database could not be read.
    #[error("--user {name}: looking the user up failed: {source}")]
    UserLookup {
        /// The name given.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// The `--chroot` directory is missing or not a directory.
    #[error("--chroot {}: {source}", path.display())]
    ChrootDir {
        /// The directory given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `--user` or `--chroot` without root to start with.
    #[error("--user and --chroot need lvsmon to start as root (it runs as uid {0})")]
    NotRoot(u32),
    /// More than one thread runs, so some would keep their privileges.
    #[error("privilege drop: {0} threads run; capabilities are per thread, so the drop must come before any thread starts")]
    Threads(usize),
    /// A step of the drop failed.
    #[error("privilege drop: {what}: {source}")]
    Step {
        /// The call that failed, with its argument.
        what: String,
        /// The operating system's reason.
        source: io::Error,
    },
    /// Read back after the drop, something is not as it should be.
    #[error("privilege drop: {what} is {got} after the drop, expected {want}")]
    Verify {
        /// What was read back.
        what: &'static str,
        /// Its value.
        got: String,
        /// The value it should have.
        want: String,
    },
}

/// The user of `--user`, as found in the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name given.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// Its primary group.
    pub gid: libc::gid_t,
}

/// What the drop leads to: the user to become and the directory to chroot to, each optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `--user`, resolved.
    pub user: Option<User>,
    /// `--chroot`.
    pub chroot: Option<PathBuf>,
}

/// What [`Target::apply`] left the process with, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// The uid now (real, effective and saved).
    pub uid: libc::uid_t,
    /// The gid now (real, effective and saved).
    pub gid: libc::gid_t,
    /// The permitted and effective capabilities now.
    pub caps: Caps,
}

fn step(what: impl Into<String>) -> impl FnOnce(io::Error) -> PrivError {
    move |source| PrivError::Step {
        what: what.into(),
        source,
    }
}

/// `-1` from a libc call as the errno, `Ok` otherwise.
fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Target {
    /// Looks up `user` (and its primary group) and checks that `chroot` is a directory;
    /// `None` when neither is given. Call it before anything is opened, so a mistake stops
    /// lvsmon before it binds a socket.
    ///
    /// # Errors
    /// An unknown user, an unreadable password database, a missing chroot directory, or a
    /// process that is not root.
    pub fn resolve(user: Option<&str>, chroot: Option<&Path>) -> Result<Option<Target>, PrivError> {
        if user.is_none() && chroot.is_none() {
            return Ok(None);
        }
        let user = user.map(lookup).transpose()?;
        if let Some(dir) = chroot {
            let meta = std::fs::metadata(dir).map_err(|source| PrivError::ChrootDir {
                path: dir.to_path_buf(),
                source,
            })?;
            if !meta.is_dir() {
                return Err(PrivError::ChrootDir {
                    path: dir.to_path_buf(),
                    source: io::Error::from_raw_os_error(libc::ENOTDIR),
                });
            }
        }
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(PrivError::NotRoot(euid));
        }
        Ok(Some(Target {
            user,
            chroot: chroot.map(Path::to_path_buf),
        }))
    }

    /// Drops the privileges as the module docs describe. `chrooted` is called as soon as the
    /// chroot has been entered: paths the caller meant to remove at exit no longer name the
    /// same files from then on.
    ///
    /// # Errors
    /// Any step failed, or the result read back is not what was asked for. The process may
    /// then be half-way; the caller must exit.
    pub fn apply(&self, chrooted: impl FnOnce()) -> Result<Dropped, PrivError> {
        // Before the chroot, while /proc is still in reach.
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            let n = tasks.count();
            if n > 1 {
                return Err(PrivError::Threads(n));
            }
        }
        let keep = kept_capabilities();

        if let Some(dir) = &self.chroot {
            let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| PrivError::ChrootDir {
                path: dir.clone(),
                source: io::ErrorKind::InvalidInput.into(),
            })?;
            // SAFETY: chroot and chdir with NUL-terminated paths.
            cvt(unsafe { libc::chroot(c.as_ptr()) })
                .map_err(step(format!("chroot({})", dir.display())))?;
            cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(step("chdir(/) in the chroot"))?;
            chrooted();
        }

        // No later execve grants capabilities for uid 0 or a set-user-ID-root file, and the
        // ambient set cannot be raised; locked, so it cannot be undone.
        let bits = libc::SECBIT_NOROOT
            | libc::SECBIT_NOROOT_LOCKED
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        prctl(libc::PR_SET_SECUREBITS, bits as libc::c_ulong, 0)
            .map_err(step("prctl(PR_SET_SECUREBITS)"))?;

        // The bounding set: needs CAP_SETPCAP, so before the uid changes.
        let last = last_cap();
        for cap in 0..=last {
            if !keep.has(cap) {
                prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0)
                    .map_err(step(format!("prctl(PR_CAPBSET_DROP, {cap})")))?;
            }
        }

        if let Some(u) = &self.user {
            // Keep the permitted set across setuid; effective is cleared and set below.
            prctl(libc::PR_SET_KEEPCAPS, 1, 0).map_err(step("prctl(PR_SET_KEEPCAPS, 1)"))?;
            // SAFETY: plain system calls over a local array and integers. glibc applies
            // setgroups, setgid and setuid to every thread (there is one).
            cvt(unsafe { libc::setgroups(1, &u.gid) })
                .map_err(step(format!("setgroups([{}])", u.gid)))?;
            cvt(unsafe { libc::setgid(u.gid) }).map_err(step(format!("setgid({})", u.gid)))?;
            cvt(unsafe { libc::setuid(u.uid) }).map_err(step(format!("setuid({})", u.uid)))?;
            prctl(libc::PR_SET_KEEPCAPS, 0, 0).map_err(step("prctl(PR_SET_KEEPCAPS, 0)"))?;
        }

        capset(keep, keep, Caps::EMPTY).map_err(step("capset"))?;
        // Kernels before 4.3 have no ambient set (EINVAL): nothing to clear there.
        match prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        ) {
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                return Err(step("prctl(PR_CAP_AMBIENT_CLEAR_ALL)")(e));
            }
            _ => {}
        }
        // Nothing started from now on gains privileges through set-user-ID, set-group-ID or
        // file capabilities (see the module docs for why).
        prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map_err(step("prctl(PR_SET_NO_NEW_PRIVS)"))?;

        self.verify(keep, last)
    }

    /// Reads back ids, groups and capabilities and compares them with what was asked.
    fn verify(&self, keep: Caps, last: u32) -> Result<Dropped, PrivError> {
        let bad = |what, got: String, want: String| PrivError::Verify { what, got, want };
        let (mut r, mut e, mut s) = (0, 0, 0);
        // SAFETY: getresuid/getresgid write three integers we own.
        cvt(unsafe { libc::getresuid(&mut r, &mut e, &mut s) }).map_err(step("getresuid"))?;
        let uid = e;
        if let Some(u) = &self.user {
            if (r, e, s) != (u.uid, u.uid, u.uid) {
                return Err(bad("uid", format!("{r}/{e}/{s}"), u.uid.to_string()));
            }
        }
        cvt(unsafe { libc::getresgid(&mut r, &mut e, &mut s) }).map_err(step("getresgid"))?;
        let gid = e;
        if let Some(u) = &self.user {
            if (r, e, s) != (u.gid, u.gid, u.gid) {
                return Err(bad("gid", format!("{r}/{e}/{s}"), u.gid.to_string()));
            }
            let mut groups = [0 as libc::gid_t; 4];
            // SAFETY: getgroups writes at most groups.len() entries.
            let n =
                cvt(unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) })
                    .map_err(step("getgroups"))?;
            if groups[..n as usize] != [u.gid] {
                return Err(bad(
                    "the group list",
                    format!("{:?}", &groups[..n as usize]),
                    format!("[{}]", u.gid),
                ));
            }
        }
        let (eff, perm, inh) = capget().map_err(step("capget"))?;
        for (what, got, want) in [
            ("the effective set", eff, keep),
            ("the permitted set", perm, keep),
            ("the inheritable set", inh, Caps::EMPTY),
        ] {
            if got != want {
                return Err(bad(what, got.to_string(), want.to_string()));
            }
        }
        let mut bounding = Caps::EMPTY;
        for cap in 0..=last {
            if prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0).unwrap_or(0) == 1 {
                bounding = bounding.with(cap);
            }
        }
        if bounding != keep {
            return Err(bad(
                "the bounding set",
                bounding.to_string(),
                keep.to_string(),
            ));
        }
        if prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0).ok() != Some(1) {
            return Err(bad("no_new_privs", "off".into(), "on".into()));
        }
        Ok(Dropped {
            uid,
            gid,
            caps: keep,
        })
    }
}

/// Whether `uid`/`gid` may execute `program` where the daemon will start it: inside `root`
/// (the `--chroot` directory) if given, with the credentials [`Target::apply`] leaves (the
/// primary group alone as supplementary groups) and without root's capabilities for a uid
/// other than 0. Asked of the kernel by a child process that enters the chroot, takes those
/// ids and calls `access(X_OK)`, so every rule counts as it will when the program runs: mode
/// bits, ACLs, and search permission on each directory of the path. Needs root.
///
/// # Errors
/// The `access(2)` errno (`EACCES`, `ENOENT`...), or why the child could not be run or could
/// not take the ids (then the answer is unknown).
pub fn executable_as(
    program: &[u8],
    root: Option<&Path>,
    uid: libc::uid_t,
    gid: libc::gid_t,
) -> io::Result<()> {
    /// Exit status of a child that could not take the ids: no errno is that large.
    const SETUP_FAILED: libc::c_int = 255;
    let invalid = || io::Error::from_raw_os_error(libc::EINVAL);
    let prog = CString::new(program).map_err(|_| invalid())?;
    let root = root
        .map(|r| CString::new(r.as_os_str().as_bytes()))
        .transpose()
        .map_err(|_| invalid())?;
    let groups = [gid];
    // SAFETY: the child calls only async-signal-safe system calls and `_exit` (the ids are set
    // with raw system calls, for the child's one thread), on data prepared before the fork.
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: as above; every pointer is to data that outlives the calls.
        unsafe {
            let ok = root
                .as_ref()
                .is_none_or(|r| libc::chroot(r.as_ptr()) == 0 && libc::chdir(c"/".as_ptr()) == 0)
                && libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()) == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0;
            if !ok {
                libc::_exit(SETUP_FAILED);
            }
            if libc::access(prog.as_ptr(), libc::X_OK) == 0 {
                libc::_exit(0);
            }
            let e = *libc::__errno_location();
            libc::_exit(if e > 0 && e < SETUP_FAILED {
                e
            } else {
                libc::EACCES
            });
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child; `status` is a live local.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    match libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)) {
        Some(0) => Ok(()),
        Some(SETUP_FAILED) => Err(io::Error::other(format!(
            "could not take uid {uid} gid {gid} to ask"
        ))),
        Some(e) => Err(io::Error::from_raw_os_error(e)),
        None => Err(io::Error::other("the child that asked was killed")),
    }
}

/// Looks `name` up with `getpwnam_r` (the password database through NSS).
fn lookup(name: &str) -> Result<User, PrivError> {
    let unknown = || PrivError::UnknownUser {
        name: name.to_owned(),
    };
    let cname = CString::new(name).map_err(|_| unknown())?;
    // SAFETY: sysconf has no preconditions.
    let hint = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    let mut size = if hint > 0 { hint as usize } else { 16 * 1024 };
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: passwd is plain data; getpwnam_r fills it, with its strings in `buf`.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is to a live local of the right size.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        match rc {
            libc::ERANGE if size < 1 << 20 => size *= 2,
            // Some NSS modules say "not found" with an errno rather than a null result.
            0 | libc::ENOENT | libc::ESRCH if found.is_null() => return Err(unknown()),
            0 => {
                return Ok(User {
                    name: name.to_owned(),
                    uid: pw.pw_uid,
                    gid: pw.pw_gid,
                })
            }
            e => {
                return Err(PrivError::UserLookup {
                    name: name.to_owned(),
                    source: io::Error::from_raw_os_error(e),
                })
            }
        }
    }
}

fn prctl(op: libc::c_int, arg: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the prctl operations used here take integers only.
    cvt(unsafe { libc::prctl(op, arg, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) })
}

/// The highest capability number this kernel knows: `PR_CAPBSET_READ` fails past it.
fn last_cap() -> u32 {
    let mut last = 0;
    for cap in 0..64 {
        if prctl(libc::PR_CAPBSET_READ, cap, 0).is_err() {
            break;
        }
        last = cap as u32;
    }
    last
}

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

/// `struct __user_cap_header_struct` (`linux/capability.h`).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct` (`linux/capability.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Sets this thread's effective, permitted and inheritable sets.
fn capset(eff: Caps, perm: Caps, inh: Caps) -> io::Result<()> {
    let mut head = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: eff.low(),
            permitted: perm.low(),
            inheritable: inh.low(),
        },
        CapData {
            effective: eff.high(),
            permitted: perm.high(),
            inheritable: inh.high(),
        },
    ];
    // SAFETY: capset reads a version-3 header and two data words, which is what we pass.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut head, data.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This thread's effective, permitted and inheritable sets.
fn capget() -> io::Result<(Caps, Caps, Caps)> {
    let mut head = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes a version-3 header's two data words, which we provide.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut head, data.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let join = |lo: u32, hi: u32| Caps(lo as u64 | (hi as u64) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_set_is_net_admin_alone() {
        let k = kept_capabilities();
        assert_eq!(k.0, 0x1000, "CAP_NET_ADMIN is bit 12");
        assert_eq!(k.to_string(), "cap_net_admin");
        assert_eq!(Caps::EMPTY.to_string(), "none");
        assert_eq!(
            k.with(CAP_NET_RAW).with(40).to_string(),
            "cap_net_admin,cap_net_raw,cap_40"
        );
    }

    #[test]
    fn nothing_asked_nothing_done() {
        assert_eq!(Target::resolve(None, None).unwrap(), None);
    }

    #[test]
    fn unknown_user_and_missing_directory_are_one_line_errors() {
        let e = Target::resolve(Some("lvsmon-no-such-user-x"), None).unwrap_err();
        assert_eq!(e.to_string(), "--user lvsmon-no-such-user-x: no such user");
        let e = Target::resolve(None, Some(Path::new("/nonexistent/lvsmon-chroot"))).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--chroot /nonexistent/lvsmon-chroot: No such file"),
            "{e}"
        );
        let e = Target::resolve(None, Some(Path::new("/etc/passwd"))).unwrap_err();
        assert!(e.to_string().contains("Not a directory"), "{e}");
    }

    #[test]
    fn root_resolves() {
        let u = lookup("root").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn capget_reads_this_thread() {
        let (eff, perm, _) = capget().unwrap();
        // Effective is always within permitted.
        assert_eq!(eff.0 & !perm.0, 0);
        assert!(last_cap() >= CAP_NET_RAW);
    }
}
