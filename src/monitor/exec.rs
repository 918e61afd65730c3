//! The `exec` checks' programs: spawned like notify commands, read, reaped and killed without
//! blocking or allocating.
//!
//! [`Execs`] belongs to the probe driver. Everything a spawn needs is built once, at startup:
//! per `exec` probe its argv as C strings and its environment (the daemon's own, minus any
//! `LVSMON_*` variables, then `LVSMON_TARGET_ADDR`, `LVSMON_TARGET_PORT`, `LVSMON_VIRTUAL` and
//! `LVSMON_REAL` of the probe's first real server); the `posix_spawn` attributes and file
//! actions are [`crate::notify`]'s (own process group, empty signal mask, stdin on
//! `/dev/null`, stdout and stderr on a pipe of the child's own).
//!
//! At most `exec-max` programs run at once: a probe whose turn comes while all run waits in a
//! queue (in order) and starts when one ends; waiting is never a failure. The pipe's read end
//! is the probe's "socket": the loop reports it readable, and [`Execs::read`] reads it in
//! bounded pieces (the first line is kept, as the detail of `exec-failed`; the rest is read
//! and thrown away, at most [`READ_BOUND`] bytes per readiness, so a program that prints
//! without end neither blocks nor stalls the loop). The exit status is collected with
//! `waitpid(pid, WNOHANG)` for this module's own children only, after `SIGCHLD` or the pipe's
//! end of file. A program still running at `timeout` is killed with its process group; its
//! slot stays taken until it is reaped.

use std::ffi::c_char;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::phase::{Phase, Probe};
use crate::clock::Time;
use crate::notify::{FileActions, SpawnAttr};
use crate::plugins::exec::Exit;
use crate::plugins::DETAIL_CAP;

/// No entry.
const NONE: u32 = u32::MAX;

/// Bytes read from one program's pipe per readiness at most (then it is asked again).
pub(crate) const READ_BOUND: usize = 64 * 1024;

/// One probe's program: argv and envp, pointing into buffers that never move.
struct Prog {
    _words: Vec<u8>,
    argv: Box<[*mut c_char]>,
    _env: Vec<u8>,
    envp: Box<[*mut c_char]>,
}

/// One program running (or killed and not yet reaped).
#[derive(Debug, Clone, Copy)]
struct Running {
    /// 0: the slot is free.
    pid: libc::pid_t,
    /// The probe it runs for; [`NONE`] once killed (it only waits to be reaped).
    probe: u32,
    /// The first line of its output, as far as it fits a detail.
    first: [u8; DETAIL_CAP],
    first_len: u8,
    /// The first line has ended (or the detail is full).
    line_done: bool,
    /// The pipe said end of file: the program has ended or closed its output.
    eof: bool,
}

impl Running {
    const FREE: Running = Running {
        pid: 0,
        probe: NONE,
        first: [0; DETAIL_CAP],
        first_len: 0,
        line_done: false,
        eof: false,
    };
}

/// What [`Execs::spawn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spawned {
    /// The program runs; the probe holds its pipe in `Recv`.
    Started,
    /// `exec-max` programs run: the probe waits its turn.
    Queued,
    /// The spawn failed (errno): the director's fault or the program's absence, never the
    /// real server's.
    Local(i32),
}

/// The programs of the `exec` probes (see the module docs).
pub(crate) struct Execs {
    /// Spawn attributes and file actions, made only when there is an `exec` probe.
    spawn: Option<(SpawnAttr, FileActions)>,
    /// The daemon's environment, `KEY=VALUE\0` each; every `envp` points into it.
    _base_env: Vec<u8>,
    progs: Box<[Prog]>,
    /// Per probe: its entry in `progs`, or [`NONE`] (not an `exec` probe).
    prog_of: Box<[u32]>,
    /// Per probe: its entry in `slots` while its program runs, or [`NONE`].
    slot_of: Box<[u32]>,
    /// `exec-max` entries.
    slots: Box<[Running]>,
    running: usize,
    /// Probes waiting for a slot, oldest first (a ring of `progs.len()` entries).
    queue: Box<[u32]>,
    q_head: usize,
    q_len: usize,
    /// Per probe: waiting in `queue`.
    queued: Box<[bool]>,
    /// Where output is read to.
    scratch: Box<[u8]>,
    /// Programs started, and spawns that failed.
    pub(crate) started: u64,
    pub(crate) spawn_failed: u64,
}

// SAFETY: the raw pointers in `progs` point only into heap buffers owned by this value and
// never resized (`_words`, `_env`, `_base_env`), so they stay valid wherever the value moves;
// the spawn objects are owned, boxed C structs with no thread affinity.
unsafe impl Send for Execs {}

impl std::fmt::Debug for Execs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execs")
            .field("programs", &self.progs.len())
            .field("running", &self.running)
            .field("max", &self.slots.len())
            .field("queued", &self.q_len)
            .finish()
    }
}

/// The values of one `exec` probe's `LVSMON_*` variables.
pub(crate) struct ProgEnv {
    pub(crate) target: SocketAddr,
    pub(crate) virtual_key: String,
    pub(crate) real: SocketAddr,
}

impl Execs {
    /// Bytes held per probe for the programs' lookup (none without `exec` checks).
    #[cfg(test)]
    pub(crate) fn per_probe_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.prog_of)
    }

    /// None at all (no `exec` check): nothing allocated per probe.
    pub(crate) fn none() -> Execs {
        Execs {
            spawn: None,
            _base_env: Vec::new(),
            progs: Box::new([]),
            prog_of: Box::new([]),
            slot_of: Box::new([]),
            slots: Box::new([]),
            running: 0,
            queue: Box::new([]),
            q_head: 0,
            q_len: 0,
            queued: Box::new([]),
            scratch: Box::new([]),
            started: 0,
            spawn_failed: 0,
        }
    }

    /// The programs of `progs` (probe id, argv, environment values) among `probes` probes, at
    /// most `max` running at once.
    ///
    /// # Errors
    /// The spawn attributes or `/dev/null` could not be set up.
    pub(crate) fn new(
        probes: usize,
        max: u32,
        list: Vec<(u32, &[Vec<u8>], ProgEnv)>,
    ) -> io::Result<Execs> {
        let mut e = Execs::none();
        if list.is_empty() {
            return Ok(e);
        }
        e.spawn = Some((SpawnAttr::new()?, FileActions::new()?));
        // Each probe's program: allocated only when some check runs one.
        e.prog_of = vec![NONE; probes].into_boxed_slice();
        let mut base = Vec::new();
        let mut base_at = Vec::new();
        for (k, v) in std::env::vars_os() {
            let k = k.as_bytes();
            if k.starts_with(b"LVSMON_") || k.contains(&0) || v.as_bytes().contains(&0) {
                continue;
            }
            base_at.push(base.len());
            base.extend_from_slice(k);
            base.push(b'=');
            base.extend_from_slice(v.as_bytes());
            base.push(0);
        }
        let base_ptrs: Vec<*mut c_char> = base_at
            .iter()
            .map(|&at| base[at..].as_ptr() as *mut c_char)
            .collect();
        let mut progs = Vec::with_capacity(list.len());
        for (id, argv, env) in list {
            e.prog_of[id as usize] = progs.len() as u32;
            let mut words = Vec::new();
            let mut at = Vec::new();
            for w in argv {
                at.push(words.len());
                words.extend_from_slice(w);
                words.push(0);
            }
            let mut argv_p: Vec<*mut c_char> = at
                .iter()
                .map(|&a| words[a..].as_ptr() as *mut c_char)
                .collect();
            argv_p.push(ptr::null_mut());
            let mut own = Vec::new();
            let mut own_at = Vec::new();
            for (k, v) in [
                ("LVSMON_TARGET_ADDR", env.target.ip().to_string()),
                ("LVSMON_TARGET_PORT", env.target.port().to_string()),
                ("LVSMON_VIRTUAL", env.virtual_key),
                ("LVSMON_REAL", env.real.to_string()),
            ] {
                own_at.push(own.len());
                let _ = write!(own, "{k}={v}");
                own.push(0);
            }
            let mut envp = base_ptrs.clone();
            envp.extend(own_at.iter().map(|&a| own[a..].as_ptr() as *mut c_char));
            envp.push(ptr::null_mut());
            progs.push(Prog {
                _words: words,
                argv: argv_p.into_boxed_slice(),
                _env: own,
                envp: envp.into_boxed_slice(),
            });
        }
        e._base_env = base;
        let max = (max.max(1) as usize).min(progs.len());
        e.slots = vec![Running::FREE; max].into_boxed_slice();
        e.slot_of = vec![NONE; probes].into_boxed_slice();
        e.queue = vec![NONE; progs.len()].into_boxed_slice();
        e.queued = vec![false; probes].into_boxed_slice();
        e.scratch = vec![0u8; 4096].into_boxed_slice();
        e.progs = progs.into_boxed_slice();
        Ok(e)
    }

    /// Programs running now (killed ones not yet reaped included).
    pub(crate) fn running(&self) -> usize {
        self.running
    }

    /// Probes waiting for a slot.
    pub(crate) fn queued(&self) -> usize {
        self.q_len
    }

    /// A slot is free and a probe waits for one: the probe, taken out of the queue.
    pub(crate) fn next_queued(&mut self) -> Option<u32> {
        if self.q_len == 0 || self.running >= self.slots.len() {
            return None;
        }
        let id = self.queue[self.q_head];
        self.q_head = (self.q_head + 1) % self.queue.len();
        self.q_len -= 1;
        self.queued[id as usize] = false;
        Some(id)
    }

    /// Starts probe `id`'s program at `now`, its pipe registered under the probe's token.
    pub(crate) fn spawn(&mut self, id: u32, p: &mut Probe, reg: &Registry, now: Time) -> Spawned {
        let i = id as usize;
        let Some(prog) = self.prog_of.get(i).copied().filter(|&x| x != NONE) else {
            return Spawned::Local(libc::EINVAL);
        };
        if self.running >= self.slots.len() {
            self.reap_killed();
        }
        if self.running >= self.slots.len() {
            if !self.queued[i] {
                self.queued[i] = true;
                let at = (self.q_head + self.q_len) % self.queue.len();
                self.queue[at] = id;
                self.q_len += 1;
            }
            return Spawned::Queued;
        }
        let Some((attr, actions)) = self.spawn.as_ref() else {
            return Spawned::Local(libc::EINVAL);
        };
        let fd = actions.output_pipe();
        if fd < 0 {
            return Spawned::Local(libc::EMFILE);
        }
        // SAFETY: fd is the pipe's read end, ours alone; OwnedFd closes it.
        let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
        let prog = &self.progs[prog as usize];
        let mut pid: libc::pid_t = 0;
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated
        // strings in buffers this value owns, unchanged during the call; the attribute and
        // file-action objects were initialised at construction.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                prog.argv[0],
                &*actions.0,
                &*attr.0,
                prog.argv.as_ptr(),
                prog.envp.as_ptr(),
            )
        };
        // The daemon keeps no write end: the reader sees end of file when the child is done.
        actions.reset_output_slot();
        if rc != 0 {
            self.spawn_failed += 1;
            return Spawned::Local(rc);
        }
        self.started += 1;
        let Some(s) = self.slots.iter().position(|r| r.pid == 0) else {
            // Cannot happen: `running` counts the taken slots.
            return Spawned::Local(libc::EAGAIN);
        };
        self.slots[s] = Running {
            pid,
            probe: id,
            ..Running::FREE
        };
        self.slot_of[i] = s as u32;
        self.running += 1;
        if reg
            .register(
                &mut SourceFd(&fd),
                Probe::token(id, p.gen.into()),
                Interest::READABLE,
            )
            .is_err()
        {
            // Without readiness the program is still reaped at SIGCHLD or its deadline.
        }
        p.sock = Some(pipe);
        p.mark_started(now);
        p.set_phase(Phase::Recv { got: 0 });
        Spawned::Started
    }

    /// Reads what probe `id`'s program printed, at most [`READ_BOUND`] bytes; keeps the first
    /// line. True once the pipe said end of file.
    pub(crate) fn read(&mut self, id: u32, p: &Probe, reg: &Registry) -> bool {
        let Some(s) = self.slot(id) else {
            return false;
        };
        let Some(sock) = p.sock.as_ref() else {
            return self.slots[s].eof;
        };
        let fd = sock.as_raw_fd();
        let mut total = 0usize;
        loop {
            if total >= READ_BOUND {
                // More waits: ask for the readiness again (a modification re-arms the edge),
                // so other checks get their turn first.
                let _ = reg.reregister(
                    &mut SourceFd(&fd),
                    Probe::token(id, p.gen.into()),
                    Interest::READABLE,
                );
                break;
            }
            // SAFETY: reads into our own scratch buffer.
            let n = unsafe {
                libc::read(
                    fd,
                    self.scratch.as_mut_ptr().cast(),
                    self.scratch.len().min(READ_BOUND - total),
                )
            };
            if n == 0 {
                self.slots[s].eof = true;
                break;
            }
            if n < 0 {
                let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if e == libc::EINTR {
                    continue;
                }
                if e != libc::EAGAIN {
                    self.slots[s].eof = true;
                }
                break;
            }
            let n = n as usize;
            total += n;
            let r = &mut self.slots[s];
            if !r.line_done {
                for &b in &self.scratch[..n] {
                    if b == b'\n' || r.first_len as usize == DETAIL_CAP {
                        r.line_done = true;
                        break;
                    }
                    if b == b'\r' {
                        continue;
                    }
                    r.first[r.first_len as usize] = b;
                    r.first_len += 1;
                }
            }
        }
        self.slots[s].eof
    }

    /// Probe `id`'s pipe said end of file.
    pub(crate) fn eof(&self, id: u32) -> bool {
        self.slot(id).is_some_and(|s| self.slots[s].eof)
    }

    /// Whether probe `id`'s program has ended: its exit and the first line it printed; its
    /// slot is then free.
    pub(crate) fn try_reap(&mut self, id: u32) -> Option<(Exit, [u8; DETAIL_CAP], usize)> {
        let s = self.slot(id)?;
        let exit = wait_nohang(self.slots[s].pid)?;
        let r = self.slots[s];
        self.free(s);
        self.slot_of[id as usize] = NONE;
        Some((exit, r.first, r.first_len as usize))
    }

    /// Kills probe `id`'s program with its process group (its `timeout`); the slot stays
    /// taken until the child is reaped.
    pub(crate) fn kill(&mut self, id: u32) {
        let Some(s) = self.slot(id) else {
            return;
        };
        let pid = self.slots[s].pid;
        // SAFETY: kill(2) of the process group of a child this value started and has not
        // reaped (so the pid, and the group it leads, cannot have been reused).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        self.slots[s].probe = NONE;
        self.slot_of[id as usize] = NONE;
        if wait_nohang(pid).is_some() {
            self.free(s);
        }
    }

    /// Reaps the killed programs that have ended.
    pub(crate) fn reap_killed(&mut self) {
        for s in 0..self.slots.len() {
            let r = self.slots[s];
            if r.pid != 0 && r.probe == NONE && wait_nohang(r.pid).is_some() {
                self.free(s);
            }
        }
    }

    /// The probes whose programs run, one at a time by slot: `Some(probe)` for a running one
    /// at slot `s`, `None` for a free or killed slot.
    pub(crate) fn probe_at(&self, s: usize) -> Option<u32> {
        self.slots
            .get(s)
            .filter(|r| r.pid != 0 && r.probe != NONE)
            .map(|r| r.probe)
    }

    /// Slots (`exec-max`, at most one per `exec` probe).
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Hands the programs still running over to `new` (a reload): each is killed, and waits
    /// to be reaped in a slot of `new`, or here and now when `new` has none left.
    pub(crate) fn hand_over(&mut self, new: &mut Execs) {
        for s in 0..self.slots.len() {
            let r = self.slots[s];
            if r.pid == 0 {
                continue;
            }
            // SAFETY: as in `kill`.
            unsafe { libc::kill(-r.pid, libc::SIGKILL) };
            self.free(s);
            match new.slots.iter().position(|x| x.pid == 0) {
                Some(t) => {
                    new.slots[t] = Running {
                        pid: r.pid,
                        ..Running::FREE
                    };
                    new.running += 1;
                }
                None => {
                    // A killed child ends at once; its wait is short.
                    let mut st = 0;
                    // SAFETY: waitpid on our own child.
                    unsafe { libc::waitpid(r.pid, &mut st, 0) };
                }
            }
        }
        self.q_len = 0;
    }

    /// The daemon stops: every program still running is killed with its process group and
    /// reaped when it has ended (a killed child ends at once; the rest go to init).
    pub(crate) fn kill_all(&mut self) {
        for s in 0..self.slots.len() {
            let pid = self.slots[s].pid;
            if pid == 0 {
                continue;
            }
            // SAFETY: as in `kill`.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            for _ in 0..50 {
                if wait_nohang(pid).is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            self.free(s);
        }
        self.q_len = 0;
    }

    fn slot(&self, id: u32) -> Option<usize> {
        self.slot_of
            .get(id as usize)
            .copied()
            .filter(|&s| s != NONE)
            .map(|s| s as usize)
    }

    fn free(&mut self, s: usize) {
        self.slots[s] = Running::FREE;
        self.running -= 1;
    }
}

impl Drop for Execs {
    /// Programs still running are killed with their process groups (the daemon stops).
    fn drop(&mut self) {
        for r in self.slots.iter().filter(|r| r.pid != 0) {
            // SAFETY: as in `kill`.
            unsafe { libc::kill(-r.pid, libc::SIGKILL) };
        }
    }
}

/// `waitpid(pid, WNOHANG)`: how the child ended, or `None` while it runs.
fn wait_nohang(pid: libc::pid_t) -> Option<Exit> {
    let mut st: libc::c_int = 0;
    // SAFETY: waitpid on a child this module started; never blocks.
    let rc = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if rc == pid {
        if libc::WIFEXITED(st) {
            return Some(Exit::Code(libc::WEXITSTATUS(st) as u8));
        }
        return Some(Exit::Signal(libc::WTERMSIG(st)));
    }
    if rc < 0 {
        // ECHILD: not ours to wait for any more (cannot happen); count it as ended.
        return Some(Exit::Signal(0));
    }
    None
}
