//! TLS checks (`https`, `tls` and their presets) through one helper process.
//!
//! The loop never speaks TLS and never parses a certificate. When the configuration has a TLS
//! check, the daemon starts `lvsmon tls-helper` ([`helper`]): the same binary, executed from
//! a descriptor opened before any chroot, with a `SOCK_SEQPACKET` socketpair on its descriptor
//! 3 and its configuration (each TLS check's plugin and option words, and the root
//! certificates, read before the chroot) in a memfd on descriptor 4. A check is one fixed-size
//! [`wire::Request`] out and one fixed-size [`wire::Answer`] back, sent and read without
//! blocking and without allocating ([`Helper`], owned by the probe driver).
//!
//! Inside a `--chroot` that holds no dynamic loader the binary cannot be executed again: the
//! helper then runs in the forked copy of the daemon instead, with every other descriptor
//! closed (it drops its capabilities and reads its configuration the same way).
//!
//! A helper that exits, is killed, or stops answering (a check overdue by 2 s past its
//! timeout, `HELPER_GRACE_US` in the phase machine, with no answer from the helper since it
//! was sent) is killed and started again;
//! the checks it had count as local errors, never as failures. Restarts within 10 s of the
//! last start wait 1 s, then twice as long each time, up to 30 s.

pub mod cert;
pub mod helper;
pub mod wire;

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::clock::Time;
use crate::plugins::tls::Tls;

/// The helper socket's token in the loop.
pub const TOKEN: Token = Token(usize::MAX - 40);
/// Checks the helper runs at once; more are answered at once as local errors.
pub const MAX_IN_FLIGHT: u32 = 4096;
/// Bytes the helper reads from one server in one check, handshake included, on top of the
/// check's `--max-response`.
pub const HANDSHAKE_BYTES: u32 = 64 * 1024;
/// Where the system's roots are looked for (Debian's `ca-certificates` first).
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// The binary, opened before any chroot, so the helper can be started from inside one.
static EXE: OnceLock<Option<OwnedFd>> = OnceLock::new();
/// Root files as read last: inside a chroot a reload finds them where they were at startup.
static ROOTS: OnceLock<Mutex<HashMap<String, Vec<u8>>>> = OnceLock::new();

/// Opens the running binary (once; before the privilege drop).
pub fn open_exe() {
    EXE.get_or_init(|| {
        // SAFETY: open(2) of a constant path.
        let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        // SAFETY: a fresh descriptor of ours.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    });
}

/// Starts helpers from the binary at `path` rather than the running one (a program that runs
/// the daemon in-process, such as a test, is not `lvsmon`). Only before the first
/// configuration is loaded.
///
/// # Errors
/// The file cannot be opened.
pub fn use_exe(path: &std::path::Path) -> io::Result<()> {
    let f = std::fs::File::open(path)?;
    let _ = EXE.set(Some(OwnedFd::from(f)));
    Ok(())
}

/// The PEM bytes of a roots file (`None`: the system's), read now or, when that fails (a
/// chroot), as read before.
fn roots(path: Option<&str>) -> Vec<u8> {
    let cache = ROOTS.get_or_init(Default::default);
    let key = path.unwrap_or("").to_string();
    let read = match path {
        Some(p) => std::fs::read(p).ok(),
        None => SYSTEM_ROOTS.iter().find_map(|p| std::fs::read(p).ok()),
    };
    let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
    match read {
        Some(b) => {
            c.insert(key, b.clone());
            b
        }
        None => c.get(&key).cloned().unwrap_or_default(),
    }
}

/// The helper's configuration for `kinds` (in the order of their index in requests).
pub fn config_blob(kinds: &[&Tls]) -> Vec<u8> {
    let mut out = wire::MAGIC.to_vec();
    let max_resp = kinds.iter().map(|k| k.max_response()).max().unwrap_or(0) as u32;
    out.extend_from_slice(&MAX_IN_FLIGHT.to_le_bytes());
    out.extend_from_slice(&(HANDSHAKE_BYTES + max_resp).to_le_bytes());
    // Root sets: the system's first, then each --ca file once.
    let mut files: Vec<Option<&str>> = vec![None];
    for k in kinds {
        if k.opts.verify && !files.contains(&k.opts.ca.as_deref()) {
            files.push(k.opts.ca.as_deref());
        }
    }
    out.extend_from_slice(&(files.len() as u32).to_le_bytes());
    for f in &files {
        wire::put(&mut out, &roots(*f));
    }
    out.extend_from_slice(&(kinds.len() as u32).to_le_bytes());
    for k in kinds {
        wire::put(&mut out, k.plugin.as_bytes());
        let root = files
            .iter()
            .position(|f| *f == k.opts.ca.as_deref())
            .unwrap_or(0) as u32;
        out.extend_from_slice(&root.to_le_bytes());
        out.extend_from_slice(&(k.words.len() as u32).to_le_bytes());
        for w in k.words.iter() {
            wire::put(&mut out, w);
        }
    }
    out
}

/// The helper's socket closed or failed: it exited or was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// Why the helper is being restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// Its socket closed: it exited or was killed.
    Exited,
    /// A check went unanswered past its timeout and the grace, with no answer since.
    Hung,
}

/// The loop's side of the helper: its process, its socket, its restarts.
#[derive(Debug)]
pub struct Helper {
    /// The configuration, in a memfd (read again by each new helper).
    config: OwnedFd,
    /// Blob length, to compare configurations at a reload.
    blob: Vec<u8>,
    sock: Option<OwnedFd>,
    pid: libc::pid_t,
    /// A helper killed and not yet reaped.
    zombie: libc::pid_t,
    argv0: CString,
    argv1: CString,
    started_at: Time,
    /// When the next start is due (no helper running).
    pub restart_at: Option<Time>,
    backoff_us: u64,
    /// Helpers started, the first included.
    pub starts: u64,
    /// The last time the helper answered.
    pub last_answer: Time,
    /// Bumped at every start: the high half of a request's generation, so an answer from an
    /// earlier helper (or for a probe renumbered by a reload) is never taken for a new one.
    pub epoch: u16,
}

impl Helper {
    /// A helper for `blob`, to be started at the first [`Helper::tick`].
    pub fn new(blob: Vec<u8>) -> io::Result<Helper> {
        // SAFETY: memfd_create with a constant name.
        let fd = unsafe { libc::memfd_create(c"lvsmon-tls".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor of ours.
        let config = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut f = std::fs::File::from(config.try_clone()?);
        io::Write::write_all(&mut f, &blob)?;
        Ok(Helper {
            config,
            blob,
            sock: None,
            pid: 0,
            zombie: 0,
            argv0: c"lvsmon".into(),
            argv1: c"tls-helper".into(),
            started_at: Time::ZERO,
            restart_at: Some(Time::ZERO),
            backoff_us: 0,
            starts: 0,
            last_answer: Time::ZERO,
            epoch: 0,
        })
    }

    /// The helper process's id (0: none running).
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// True when a helper runs.
    pub fn running(&self) -> bool {
        self.sock.is_some()
    }

    /// Same configuration as `other` (a reload may keep the running helper).
    pub fn same_config(&self, other: &Helper) -> bool {
        self.blob == other.blob
    }

    /// Takes `old`'s running process (same configuration).
    pub fn take_process(&mut self, old: &mut Helper) {
        self.sock = old.sock.take();
        self.pid = std::mem::take(&mut old.pid);
        self.zombie = std::mem::take(&mut old.zombie);
        self.started_at = old.started_at;
        self.restart_at = if self.sock.is_some() {
            None
        } else {
            old.restart_at
        };
        self.backoff_us = old.backoff_us;
        self.starts = old.starts;
        self.last_answer = old.last_answer;
        self.epoch = old.epoch.wrapping_add(1);
    }

    /// Sends one request; the errno when it could not go (no helper, no room).
    #[inline]
    pub fn send(&mut self, req: &wire::Request) -> Result<(), i32> {
        let Some(s) = self.sock.as_ref() else {
            return Err(libc::ECHILD);
        };
        let rec = req.encode();
        // SAFETY: sends from a live buffer on our socket.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                rec.as_ptr().cast(),
                rec.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        Ok(())
    }

    /// Reads one answer: `Ok(None)` when none waits, `Err(Gone)` when the helper is gone.
    #[inline]
    pub fn recv(&mut self) -> Result<Option<wire::Answer>, Gone> {
        let Some(s) = self.sock.as_ref() else {
            return Ok(None);
        };
        let mut rec = [0u8; wire::VERDICT_LEN + 1];
        loop {
            // SAFETY: reads into our buffer.
            let n = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    rec.as_mut_ptr().cast(),
                    rec.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e == libc::EINTR {
                    continue;
                }
                return if e == libc::EAGAIN {
                    Ok(None)
                } else {
                    Err(Gone)
                };
            }
            if n == 0 {
                return Err(Gone);
            }
            // A record of another size is not one of ours: skip it.
            if let Some(a) = wire::Answer::decode(&rec[..n as usize]) {
                return Ok(Some(a));
            }
        }
    }

    /// The helper is gone or hung: kill it, close its socket, and set the next start.
    /// Returns the delay before it.
    pub fn lost(&mut self, reg: &Registry, now: Time) -> u64 {
        if let Some(s) = self.sock.take() {
            let _ = reg.deregister(&mut SourceFd(&s.as_raw_fd()));
        }
        if self.pid > 0 {
            // SAFETY: our own child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            self.zombie = std::mem::take(&mut self.pid);
            self.reap();
        }
        // A helper that lived less than 10 s: back off.
        self.backoff_us = if now.micros_since(self.started_at) < 10_000_000 {
            (self.backoff_us * 2).clamp(1_000_000, 30_000_000)
        } else {
            0
        };
        self.restart_at = Some(now.add_micros(self.backoff_us));
        self.backoff_us
    }

    fn reap(&mut self) {
        if self.zombie > 0 {
            let mut status = 0;
            // SAFETY: waits only for our own child, without blocking.
            let r = unsafe { libc::waitpid(self.zombie, &mut status, libc::WNOHANG) };
            if r != 0 {
                self.zombie = 0;
            }
        }
    }

    /// Starts the helper when a start is due; true when one was started.
    ///
    /// # Errors
    /// The socketpair, the fork or the registration failed (tried again after the backoff).
    pub fn tick(&mut self, reg: &Registry, now: Time) -> io::Result<bool> {
        self.reap();
        if self.restart_at.is_none_or(|t| now < t) {
            return Ok(false);
        }
        self.restart_at = None;
        match self.spawn(reg, now) {
            Ok(()) => Ok(true),
            Err(e) => {
                self.backoff_us = (self.backoff_us * 2).clamp(1_000_000, 30_000_000);
                self.restart_at = Some(now.add_micros(self.backoff_us));
                Err(e)
            }
        }
    }

    fn spawn(&mut self, reg: &Registry, now: Time) -> io::Result<()> {
        let Some(Some(exe)) = EXE.get() else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the lvsmon binary could not be opened at startup",
            ));
        };
        let mut fds = [0; 2];
        // SAFETY: socketpair into a two-int array.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors of ours.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Room for a burst of records both ways (SO_SNDBUFFORCE needs CAP_NET_ADMIN, which
        // the daemon keeps; without it the system's maximum).
        for fd in [ours.as_raw_fd(), theirs.as_raw_fd()] {
            let size: libc::c_int = 4 << 20;
            for opt in [
                libc::SO_SNDBUFFORCE,
                libc::SO_SNDBUF,
                libc::SO_RCVBUFFORCE,
                libc::SO_RCVBUF,
            ] {
                // SAFETY: an int option on our socket.
                unsafe {
                    libc::setsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        opt,
                        (&size as *const libc::c_int).cast(),
                        std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                    )
                };
            }
        }
        let argv = [self.argv0.as_ptr(), self.argv1.as_ptr(), std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        let (exe, cfg, sock) = (exe.as_raw_fd(), self.config.as_raw_fd(), theirs.as_raw_fd());
        // SAFETY: fork(2); the child only makes async-signal-safe system calls before exec.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the child, between fork and exec: system calls only.
            unsafe {
                let a = libc::fcntl(sock, libc::F_DUPFD, 10);
                let b = libc::fcntl(cfg, libc::F_DUPFD, 10);
                libc::dup2(a, helper::RECORD_FD);
                libc::dup2(b, helper::CONFIG_FD);
                libc::lseek(helper::CONFIG_FD, 0, libc::SEEK_SET);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
                libc::syscall(
                    libc::SYS_execveat,
                    exe,
                    c"".as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                );
                // No exec: inside a --chroot without the dynamic loader the binary cannot be
                // started again. The helper then runs in this copy of the daemon, with every
                // descriptor but its two closed and the daemon's signal handlers undone.
                libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
                for sig in [
                    libc::SIGTERM,
                    libc::SIGINT,
                    libc::SIGHUP,
                    libc::SIGCHLD,
                    libc::SIGUSR1,
                ] {
                    libc::signal(sig, libc::SIG_DFL);
                }
                libc::_exit(helper::main());
            }
        }
        drop(theirs);
        // SAFETY: fcntl on our descriptor.
        unsafe {
            let fl = libc::fcntl(ours.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(ours.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        reg.register(&mut SourceFd(&ours.as_raw_fd()), TOKEN, Interest::READABLE)?;
        self.sock = Some(ours);
        self.pid = pid;
        self.started_at = now;
        self.last_answer = now;
        self.starts += 1;
        self.epoch = self.epoch.wrapping_add(1);
        Ok(())
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.pid > 0 {
            // SAFETY: our own child: killed and reaped.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
        self.reap();
    }
}

/// Each TLS check's certificate expiry, for `status --json` and the metrics.
#[derive(Debug, Default)]
pub struct Expiry {
    /// Per TLS probe: its target.
    pub targets: Box<[SocketAddr]>,
    /// Per TLS probe: the last peer certificate's notAfter (Unix seconds; 0: none yet).
    pub not_after: Box<[i64]>,
    /// (real, TLS probe) pairs, sorted by real.
    pub by_real: Box<[(u32, u32)]>,
    /// Per TLS probe: the server name it sends (empty: none).
    pub names: Box<[Box<str>]>,
    /// Per TLS probe: the first of its (target, name) pair, the one the metrics show.
    pub shown: Box<[bool]>,
    /// Times the helper was started (the first included).
    pub helper_starts: u64,
    /// The helper's pid now (0: none running).
    pub helper_pid: i32,
}

impl Expiry {
    /// The earliest expiry among real `r`'s TLS checks, if any has reported one.
    pub fn of_real(&self, r: u32) -> Option<i64> {
        let from = self.by_real.partition_point(|&(x, _)| x < r);
        self.by_real[from..]
            .iter()
            .take_while(|&&(x, _)| x == r)
            .map(|&(_, k)| self.not_after[k as usize])
            .filter(|&t| t != 0)
            .min()
    }
}
