//! Notify commands: the operator's `notify` program, started for every event (lvsmon(8), NOTIFY).
//!
//! This module exists because the event loop may not allocate or block once it runs, and
//! `std::process::Command` does both. Everything a spawn needs is therefore built once, in
//! [`Notifier::new`]: every argv word as a NUL-terminated C string in one buffer with a
//! NULL-terminated pointer array per command; an environment that copies the daemon's own
//! (minus any `LVSMON_*` variables) followed by six fixed-size `LVSMON_*` slots sized for their
//! longest possible values; the `posix_spawn` attributes and file actions; a ring of waiting
//! events and a table of running children. A spawn rewrites the six slots in place and calls
//! `posix_spawn(3)` over those arrays.
//!
//! Invariants:
//! - after construction, no method allocates: the buffers, the pointer arrays, the queue and the
//!   child table are never resized, and the pointer arrays point into buffers that never move;
//! - no method blocks: children are reaped with `waitpid(pid, WNOHANG)` per child this module
//!   started (never `waitpid(-1)`, which would steal other code's children);
//! - at most `max_running` children run at once, and waiting events start in the order they
//!   were pushed, except that an event whose real server (or, for a quorum event, whose virtual
//!   service) still has a command running waits until that command has ended: events of one
//!   real, and of one virtual's quorum, reach the command in the order they happened, while
//!   events of others pass them; a full queue drops the new event and counts it;
//! - every child runs in its own process group, so a child still running after `kill_after` is
//!   killed together with anything it started (`kill(-pid, SIGKILL)`);
//! - the child starts with stdin on `/dev/null`, stdout and stderr on a pipe of its own whose
//!   non-blocking read end this module drains at every poll (at most every [`DRAIN_EVERY`]):
//!   the first [`OUTPUT_LINES`] lines, each cut at [`OUTPUT_LINE_MAX`] bytes, go to the
//!   caller's [`NotifySink`] to be logged as quoted values, the rest is counted and discarded,
//!   so what a command prints can neither fill the daemon's log pipe nor pass for one of its
//!   log lines (without a pipe, for want of descriptors, the child writes to `/dev/null`);
//! - the child has an empty signal mask and default dispositions for the signals the daemon
//!   handles or ignores.
//!
//! argv is used exactly as configured: no shell and no `PATH` search, so argv\[0\] must be a path
//! to the program (`/usr/local/bin/lvs-notify`; a relative path is taken from the daemon's working
//! directory). No signal handler is installed here: the caller calls [`Notifier::poll`] after
//! `SIGCHLD`, after [`Notifier::push`], and at [`Notifier::next_deadline`].

use std::ffi::{c_char, OsString};
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::ptr;
use std::time::Duration;

use crate::clock::{micros, Time};
use crate::monitor::event::Event;
use crate::plugins::{Reason, DETAIL_CAP};

/// The environment variables set for each event, in the order they follow the copied environment.
const VAR_NAMES: [&str; 6] = [
    "LVSMON_EVENT=",
    "LVSMON_VIRTUAL=",
    "LVSMON_REAL=",
    "LVSMON_REASON=",
    "LVSMON_DETAIL=",
    "LVSMON_FAILURES=",
];

/// Index of each variable in [`VAR_NAMES`] and [`VAR_CAPS`].
const EVENT: usize = 0;
const VIRTUAL: usize = 1;
const REAL: usize = 2;
const REASON: usize = 3;
const DETAIL: usize = 4;
const FAILURES: usize = 5;

/// Longest `SocketAddr` display: `[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535`
/// (brackets 2, address 39, scope id 11, colon 1, port 5).
const ADDR_MAX: usize = 2 + 39 + 11 + 1 + 5;

/// Value bytes each variable can hold (the NUL comes on top). Each is at least the longest value
/// that can occur, so a value is never cut; `tests::slots_fit_longest_values` checks it.
const VAR_CAPS: [usize; 6] = [
    // `quorum-restored`, the longest event name, with room for a longer one.
    24,
    // `sctp:` + an address (`fwmark:4294967295` is shorter).
    5 + ADDR_MAX,
    ADDR_MAX,
    // `response-too-large` is the longest reason today; room for longer ones.
    32,
    DETAIL_CAP,
    // u64::MAX has 20 digits.
    20,
];

/// Buckets of the table of servers with a command running (see [`Notifier::busy`]): at least
/// this many, and at least eight per running slot, so unrelated servers rarely share one.
const MIN_BUCKETS: usize = 64;
/// At most this many buckets, whatever `notify-max` is (a shared bucket only makes two
/// servers' events wait for each other, never reorders them).
const MAX_BUCKETS: usize = 1 << 16;

/// Lines of a command's output passed to [`NotifySink::output`]; the rest are counted.
pub const OUTPUT_LINES: u32 = 10;
/// Bytes of one output line passed on; the rest of the line is counted.
pub const OUTPUT_LINE_MAX: usize = 200;
/// How often the output pipes of running children are read.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Most bytes read from one child's pipe in one drain (a pipe holds 64 KiB by default).
const DRAIN_MAX: usize = 64 * 1024;

/// What [`Notifier::poll_with`] tells its caller as it happens, to be logged.
/// Each call names the command by its id and its program (argv\[0\]).
pub trait NotifySink {
    /// Command `cmd` could not be started for `ev`: `errno` from `posix_spawn`.
    fn spawn_failed(&mut self, cmd: u32, program: &[u8], ev: &Event, errno: i32);
    /// One line (without its newline, cut at [`OUTPUT_LINE_MAX`] bytes) that command `cmd`,
    /// started for `ev`, printed.
    fn output(&mut self, cmd: u32, program: &[u8], ev: &Event, line: &[u8]);
    /// Command `cmd`, started for `ev`, has ended; `lines` more lines and `bytes` bytes in
    /// all of its output were discarded (called only when some were).
    fn output_discarded(&mut self, cmd: u32, program: &[u8], ev: &Event, lines: u64, bytes: u64);
}

/// A sink that drops everything (for [`Notifier::poll`]).
struct NoSink;

impl NotifySink for NoSink {
    fn spawn_failed(&mut self, _: u32, _: &[u8], _: &Event, _: i32) {}
    fn output(&mut self, _: u32, _: &[u8], _: &Event, _: &[u8]) {}
    fn output_discarded(&mut self, _: u32, _: &[u8], _: &Event, _: u64, _: u64) {}
}

/// The program (argv\[0\]) of command `cmd`; empty for an unknown id.
fn program_of(argv: &[Box<[*mut c_char]>], cmd: u32) -> &[u8] {
    match argv.get(cmd as usize).and_then(|a| a.first()) {
        // SAFETY: argv entries point to NUL-terminated strings in the notifier's `_words`,
        // which live as long as `argv` does.
        Some(&p) if !p.is_null() => unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes(),
        _ => b"",
    }
}

/// A running child's output pipe and the line being gathered from it.
struct Output {
    /// The read end (non-blocking, close-on-exec); -1 when there is none (closed at end of
    /// file, or no pipe could be made).
    fd: libc::c_int,
    /// The command and event the child runs for, for the sink.
    cmd: u32,
    ev: Option<Event>,
    /// The line so far (its first [`OUTPUT_LINE_MAX`] bytes) and its length.
    line: [u8; OUTPUT_LINE_MAX],
    len: usize,
    /// Lines passed on so far.
    lines: u32,
    /// Lines and bytes discarded so far (bytes include those cut off passed lines).
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl Output {
    const NONE: Output = Output {
        fd: -1,
        cmd: 0,
        ev: None,
        line: [0; OUTPUT_LINE_MAX],
        len: 0,
        lines: 0,
        dropped_lines: 0,
        dropped_bytes: 0,
    };

    /// Takes `bytes` of output: complete lines are passed on or counted.
    fn take(&mut self, bytes: &[u8], program: &[u8], sink: &mut dyn NotifySink) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line(program, sink);
            } else if self.len < OUTPUT_LINE_MAX {
                self.line[self.len] = b;
                self.len += 1;
            } else {
                self.dropped_bytes += 1;
            }
        }
    }

    /// The line gathered so far is complete.
    fn end_line(&mut self, program: &[u8], sink: &mut dyn NotifySink) {
        if self.lines < OUTPUT_LINES {
            if let Some(ev) = self.ev.as_ref() {
                sink.output(self.cmd, program, ev, &self.line[..self.len]);
            }
            self.lines += 1;
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += self.len as u64 + 1;
        }
        self.len = 0;
    }

    /// Reads what the pipe holds (at most [`DRAIN_MAX`] bytes); closes it at end of file.
    fn drain(&mut self, argv: &[Box<[*mut c_char]>], sink: &mut dyn NotifySink) {
        let program = program_of(argv, self.cmd);
        let mut buf = [0u8; 16 * 1024];
        let mut total = 0;
        while self.fd >= 0 && total < DRAIN_MAX {
            // SAFETY: reads into a local buffer of the given length from our own descriptor.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let n = n as usize;
                total += n;
                self.take(&buf[..n], program, sink);
                continue;
            }
            if n < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => return,
                    _ => {}
                }
            }
            // End of file (or an error): the child and whatever it started are done with it.
            self.close(argv, sink);
        }
    }

    /// Closes the pipe, passing on a last line without a newline, and reports what was
    /// discarded.
    fn close(&mut self, argv: &[Box<[*mut c_char]>], sink: &mut dyn NotifySink) {
        let program = program_of(argv, self.cmd);
        if self.fd >= 0 {
            // SAFETY: our own descriptor, closed once.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
        if self.len > 0 {
            self.end_line(program, sink);
        }
        if let Some(ev) = self.ev.take() {
            if self.dropped_lines > 0 || self.dropped_bytes > 0 {
                sink.output_discarded(
                    self.cmd,
                    program,
                    &ev,
                    self.dropped_lines,
                    self.dropped_bytes,
                );
            }
        }
        *self = Output::NONE;
    }
}

/// How long after a kill `poll` should run again if the child has not been reaped by then, in
/// case the caller missed the `SIGCHLD`.
const REAP_RETRY: Duration = Duration::from_secs(1);

/// The signals whose dispositions the child gets back as `SIG_DFL`: the daemon handles the first
/// five, and Rust programs start with `SIGPIPE` ignored, which `exec` would pass on.
const DEFAULT_SIGNALS: [libc::c_int; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGUSR1,
];

/// What one [`Notifier::poll`] did, for the caller to log and count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NotifyReport {
    /// Children started.
    pub spawned: u32,
    /// Children reaped (including killed ones, and ones some other code reaped first).
    pub reaped: u32,
    /// Children sent `SIGKILL` for running longer than `kill_after`.
    pub killed: u32,
    /// Events dropped because `posix_spawn` failed.
    pub spawn_errors: u32,
    /// The errno of the last failed spawn (`ENOENT` for a missing program, `EAGAIN`, ...);
    /// 0 when `spawn_errors` is 0.
    pub last_errno: i32,
    /// The command id and event of the last failed spawn, for the log line that names them.
    pub last_failed: Option<(u32, Event)>,
    /// Reaped children that exited non-zero or died of a signal other than our kill.
    pub exit_failures: u32,
}

/// Totals since construction, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyCounters {
    /// Children started.
    pub spawned: u64,
    /// Children reaped.
    pub reaped: u64,
    /// Children killed after `kill_after`.
    pub killed: u64,
    /// Events dropped because the queue was full (or named no known command).
    pub dropped: u64,
    /// Events dropped because `posix_spawn` failed.
    pub spawn_errors: u64,
    /// Reaped children that exited non-zero or died of a signal other than our kill.
    pub exit_failures: u64,
}

impl NotifyCounters {
    /// Adds `c`'s totals to these (a retired notifier's to the daemon's).
    pub fn add(&mut self, c: &NotifyCounters) {
        self.spawned += c.spawned;
        self.reaped += c.reaped;
        self.killed += c.killed;
        self.dropped += c.dropped;
        self.spawn_errors += c.spawn_errors;
        self.exit_failures += c.exit_failures;
    }
}

/// One entry of the running table. `pid == 0` marks a free entry.
#[derive(Debug, Clone, Copy)]
struct Child {
    /// The child's pid, which is also its process group id; 0 when the entry is free.
    pid: libc::pid_t,
    /// When `poll` must look at this child again: `started + kill_after` until it is killed,
    /// then the time to re-check a killed child that is still unreaped.
    deadline: Time,
    /// `SIGKILL` has been sent.
    killed: bool,
    /// The bucket of its event's server in [`Notifier::busy`].
    bucket: u32,
}

impl Child {
    const FREE: Child = Child {
        pid: 0,
        deadline: Time::ZERO,
        killed: false,
        bucket: 0,
    };
}

/// An event waiting in the queue, with its command and the bucket of its server.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    cmd: u32,
    bucket: u32,
    ev: Event,
}

/// Where a variable's value starts in the environment buffer.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Offset of the first value byte in `env_buf`.
    at: usize,
    /// Value bytes available; `env_buf[at + cap]` is always room for the NUL.
    cap: usize,
}

/// `posix_spawnattr_t`, boxed so its address never changes, destroyed on drop. Shared with
/// the `exec` checks ([`crate::monitor::exec`]), whose programs are spawned the same way.
pub(crate) struct SpawnAttr(pub(crate) Box<libc::posix_spawnattr_t>);

impl SpawnAttr {
    /// Empty signal mask, default dispositions for [`DEFAULT_SIGNALS`], a new process group.
    pub(crate) fn new() -> io::Result<SpawnAttr> {
        // SAFETY: posix_spawnattr_t is plain data; all zeroes is a valid value to hand to
        // posix_spawnattr_init, which overwrites it.
        let mut attr = Box::new(unsafe { std::mem::zeroed::<libc::posix_spawnattr_t>() });
        // SAFETY: `attr` points to writable memory of the right type.
        check(unsafe { libc::posix_spawnattr_init(&mut *attr) })?;
        let mut this = SpawnAttr(attr);
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; every pointer
        // is to a live local or to the initialised attribute object.
        unsafe {
            let mut mask: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut mask);
            let mut dfl: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut dfl);
            for sig in DEFAULT_SIGNALS {
                libc::sigaddset(&mut dfl, sig);
            }
            let flags = libc::POSIX_SPAWN_SETSIGMASK
                | libc::POSIX_SPAWN_SETSIGDEF
                | libc::POSIX_SPAWN_SETPGROUP;
            check(libc::posix_spawnattr_setsigmask(&mut *this.0, &mask))?;
            check(libc::posix_spawnattr_setsigdefault(&mut *this.0, &dfl))?;
            // Process group 0: the child's own pid becomes its group id.
            check(libc::posix_spawnattr_setpgroup(&mut *this.0, 0))?;
            check(libc::posix_spawnattr_setflags(
                &mut *this.0,
                flags as libc::c_short,
            ))?;
        }
        Ok(this)
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: initialised by posix_spawnattr_init in `new`, destroyed once.
        unsafe { libc::posix_spawnattr_destroy(&mut *self.0) };
    }
}

/// `posix_spawn_file_actions_t`, boxed so its address never changes, destroyed on drop; the
/// `/dev/null` descriptor it hands to children; and the descriptor that becomes their stdout
/// and stderr (`/dev/null` too, except during a spawn, when it is the write end of the
/// child's output pipe).
pub(crate) struct FileActions(
    pub(crate) Box<libc::posix_spawn_file_actions_t>,
    OwnedFd,
    OwnedFd,
);

impl FileActions {
    /// Makes `/dev/null`, opened now for reading and writing, the child's fd 0, and the
    /// output slot its fds 1 and 2. Opened here rather than by path in each child, so
    /// children still get it after a `--chroot` to a directory without `/dev/null`.
    pub(crate) fn new() -> io::Result<FileActions> {
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        // At 3 or above (close-on-exec), so that the dup2 below always makes a new fd 0 that
        // survives exec, even if this process was started with fd 0 closed.
        // SAFETY: fcntl on a descriptor we own; the result is a new descriptor we then own.
        let fd = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just created and is owned by nobody else.
        let null = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: as above.
        let out = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if out < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: out was just created and is owned by nobody else.
        let out = unsafe { OwnedFd::from_raw_fd(out) };
        // SAFETY: as for SpawnAttr::new: plain data, overwritten by the init call.
        let mut fa = Box::new(unsafe { std::mem::zeroed::<libc::posix_spawn_file_actions_t>() });
        // SAFETY: `fa` points to writable memory of the right type.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut *fa) })?;
        let mut this = FileActions(fa, null, out);
        for (fd, target) in [
            (this.1.as_raw_fd(), 0),
            (this.2.as_raw_fd(), 1),
            (this.2.as_raw_fd(), 2),
        ] {
            // SAFETY: initialised above; the descriptors live as long as the file actions.
            check(unsafe { libc::posix_spawn_file_actions_adddup2(&mut *this.0, fd, target) })?;
        }
        Ok(this)
    }
}

impl FileActions {
    /// Makes a pipe for a child's output: the read end non-blocking, the write end put in
    /// the output slot the child's stdout and stderr come from. Returns the read end, or -1
    /// (the slot keeps `/dev/null`) if no pipe could be made.
    pub(crate) fn output_pipe(&self) -> libc::c_int {
        let mut fds = [-1 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return -1;
        }
        let [r, w] = fds;
        let slot = self.2.as_raw_fd();
        // SAFETY: plain calls on descriptors we own; dup3 replaces the slot atomically.
        unsafe {
            let ok = libc::fcntl(r, libc::F_SETFL, libc::O_NONBLOCK) == 0
                && libc::dup3(w, slot, libc::O_CLOEXEC) == slot;
            libc::close(w);
            if !ok {
                libc::close(r);
                self.reset_output_slot();
                return -1;
            }
        }
        r
    }

    /// Points the output slot at `/dev/null` again, so the daemon holds no write end of a
    /// child's pipe (the reader sees end of file when the child is done).
    pub(crate) fn reset_output_slot(&self) {
        // SAFETY: dup3 of our own descriptors.
        unsafe { libc::dup3(self.1.as_raw_fd(), self.2.as_raw_fd(), libc::O_CLOEXEC) };
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: initialised by posix_spawn_file_actions_init in `new`, destroyed once.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut *self.0) };
    }
}

/// A posix_spawn-family return code (an errno, 0 for success) as a result.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Starts the `notify` commands for queued events, at most `max_running` at a time, reaps them
/// without blocking and kills those that overstay. See the module docs for the invariants.
///
/// Dropping it leaves children that still run alone (a notify command may outlive the daemon);
/// they are not killed, and not reaped by this process.
pub struct Notifier {
    /// Every argv word of every command, each followed by a NUL. Never read or resized: it only
    /// owns the bytes `argv` points into.
    _words: Vec<u8>,
    /// Per command id: pointers into `_words`, then a null pointer. `argv[i][0]` is the program.
    argv: Box<[Box<[*mut c_char]>]>,
    /// `KEY=VALUE\0` for each copied variable, then the six `LVSMON_*` slots. Never resized:
    /// `envp` points into it.
    env_buf: Vec<u8>,
    /// Pointers to each variable in `env_buf`, then a null pointer.
    envp: Box<[*mut c_char]>,
    /// Where the values of [`VAR_NAMES`] live in `env_buf`.
    slots: [Slot; 6],
    /// Spawn attributes: signal mask, signal defaults, process group.
    attr: SpawnAttr,
    /// Spawn file actions: stdin, stdout and stderr on `/dev/null`.
    actions: FileActions,
    /// The waiting events, oldest first: a ring; `queue[(head + i) % cap]` for `i < span`
    /// are the waiting events (`Some`) and the holes left by events that started before
    /// older ones (`None`); the rest are `None`.
    queue: Box<[Option<Waiting>]>,
    /// Index of the oldest entry (never a hole while `span > 0`).
    head: usize,
    /// Entries from `head` to the newest, holes included; `len <= span <= queue.len()`.
    span: usize,
    /// Number of waiting events.
    len: usize,
    /// Per bucket of servers (a hash of the event's virtual service and real server, the
    /// real being none for quorum events), the children running for it. An event whose
    /// bucket is not zero waits: that is what keeps one server's events in order.
    busy: Box<[u32]>,
    /// Something changed that may let a waiting event start (a push, a reap, a spawn).
    dirty: bool,
    /// Nothing starts while set (see [`Notifier::hold`]).
    held: bool,
    /// The running table, `max_running` entries.
    children: Box<[Child]>,
    /// Per entry of `children`, its output pipe.
    outputs: Box<[Output]>,
    /// When the output pipes are read next.
    next_drain: Time,
    /// Entries of `children` in use; `running <= children.len()`.
    running: usize,
    /// `kill_after` in microseconds.
    kill_after_us: u64,
    /// Totals since construction.
    counters: NotifyCounters,
}

impl Drop for Notifier {
    /// Closes the output pipes of children still running (their further output is lost).
    fn drop(&mut self) {
        for o in self.outputs.iter_mut().filter(|o| o.fd >= 0) {
            // SAFETY: our own descriptor, closed once.
            unsafe { libc::close(o.fd) };
            o.fd = -1;
        }
    }
}

// SAFETY: the raw pointers in `argv` and `envp` point only into `words` and `env_buf`, heap
// buffers owned by this value and never resized, so they stay valid wherever the value moves.
// The spawn attribute objects are owned, boxed C structs with no thread affinity.
unsafe impl Send for Notifier {}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("commands", &self.argv.len())
            .field("running", &self.running)
            .field("max_running", &self.children.len())
            .field("queued", &self.len)
            .field("span", &self.span)
            .field("queue_cap", &self.queue.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Notifier {
    /// Builds everything a spawn needs.
    ///
    /// `commands` are the distinct argv lists (words are bytes); the index is the command id
    /// that [`Notifier::push`] takes. argv\[0\] must be a path to the program (it contains a
    /// `/`): there is no shell and no `PATH` search. `max_running` is `notify-max`; `queue_cap`
    /// is how many events may wait; `kill_after` is how long a child may run before its process
    /// group is killed (30 s in production).
    ///
    /// The children's environment is the daemon's environment as it is now (minus `LVSMON_*`
    /// variables), plus the six `LVSMON_*` variables of lvsmon(8), NOTIFY.
    ///
    /// # Errors
    /// `InvalidInput` if a command is empty, a word contains a NUL byte, argv\[0\] has no `/`,
    /// or `max_running` is 0 while there are commands; the OS error if the spawn attributes
    /// cannot be set up.
    pub fn new(
        commands: &[Vec<Vec<u8>>],
        max_running: usize,
        queue_cap: usize,
        kill_after: Duration,
    ) -> io::Result<Notifier> {
        Notifier::with_env(
            commands,
            max_running,
            queue_cap,
            kill_after,
            std::env::vars_os(),
        )
    }

    /// [`Notifier::new`] with the environment to copy given, so tests need not touch the
    /// process environment.
    fn with_env(
        commands: &[Vec<Vec<u8>>],
        max_running: usize,
        queue_cap: usize,
        kill_after: Duration,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> io::Result<Notifier> {
        let invalid = |msg: &'static str| io::Error::new(io::ErrorKind::InvalidInput, msg);
        if max_running == 0 && !commands.is_empty() {
            return Err(invalid("notify-max must be at least 1"));
        }
        if u32::try_from(commands.len()).is_err() {
            return Err(invalid("too many notify commands"));
        }

        // argv: all words into one buffer first, pointers once it is complete.
        let mut words = Vec::new();
        let mut offsets: Vec<Vec<usize>> = Vec::with_capacity(commands.len());
        for argv in commands {
            let Some(program) = argv.first() else {
                return Err(invalid("notify command is empty"));
            };
            if !program.contains(&b'/') {
                return Err(invalid(
                    "notify program must be a path (no PATH search is done)",
                ));
            }
            let mut offs = Vec::with_capacity(argv.len());
            for word in argv {
                if word.contains(&0) {
                    return Err(invalid("notify command word contains a NUL byte"));
                }
                offs.push(words.len());
                words.extend_from_slice(word);
                words.push(0);
            }
            offsets.push(offs);
        }
        words.shrink_to_fit();
        let base = words.as_mut_ptr();
        let argv = offsets
            .iter()
            .map(|offs| {
                offs.iter()
                    // SAFETY (pointer arithmetic): every offset is < words.len().
                    .map(|&o| unsafe { base.add(o) }.cast::<c_char>())
                    .chain([ptr::null_mut()])
                    .collect::<Box<[_]>>()
            })
            .collect::<Box<[_]>>();

        // Environment: the copy, then the slots.
        let mut env_buf = Vec::new();
        let mut env_offs = Vec::new();
        for (key, value) in env {
            let (key, value) = (key.as_bytes(), value.as_bytes());
            if key.starts_with(b"LVSMON_") || key.contains(&0) || value.contains(&0) {
                continue;
            }
            env_offs.push(env_buf.len());
            env_buf.extend_from_slice(key);
            env_buf.push(b'=');
            env_buf.extend_from_slice(value);
            env_buf.push(0);
        }
        let mut slots = [Slot { at: 0, cap: 0 }; 6];
        for (i, name) in VAR_NAMES.iter().enumerate() {
            env_offs.push(env_buf.len());
            env_buf.extend_from_slice(name.as_bytes());
            slots[i] = Slot {
                at: env_buf.len(),
                cap: VAR_CAPS[i],
            };
            // Value bytes plus the NUL; all zero, so every value starts empty.
            env_buf.resize(env_buf.len() + VAR_CAPS[i] + 1, 0);
        }
        env_buf.shrink_to_fit();
        let base = env_buf.as_mut_ptr();
        let envp = env_offs
            .iter()
            // SAFETY (pointer arithmetic): every offset is < env_buf.len().
            .map(|&o| unsafe { base.add(o) }.cast::<c_char>())
            .chain([ptr::null_mut()])
            .collect::<Box<[_]>>();

        Ok(Notifier {
            _words: words,
            argv,
            env_buf,
            envp,
            slots,
            attr: SpawnAttr::new()?,
            actions: FileActions::new()?,
            queue: vec![None; queue_cap].into_boxed_slice(),
            head: 0,
            span: 0,
            len: 0,
            busy: vec![
                0;
                (max_running.saturating_mul(8))
                    .clamp(MIN_BUCKETS, MAX_BUCKETS)
                    .next_power_of_two()
            ]
            .into_boxed_slice(),
            dirty: false,
            held: false,
            children: vec![Child::FREE; max_running].into_boxed_slice(),
            outputs: (0..max_running).map(|_| Output::NONE).collect(),
            next_drain: Time::ZERO,
            running: 0,
            kill_after_us: micros(kill_after),
            counters: NotifyCounters::default(),
        })
    }

    /// Queues `ev` for command `cmd`; it starts at a later [`Notifier::poll`], after every
    /// event of the same server queued before it has ended, and after every event queued
    /// before it has started.
    ///
    /// Returns false, and counts the event as dropped, if the queue is full (or `cmd` is not a
    /// command id, which is a bug in the caller).
    pub fn push(&mut self, cmd: usize, ev: &Event) -> bool {
        if cmd >= self.argv.len() || self.len == self.queue.len() {
            self.counters.dropped += 1;
            return false;
        }
        if self.span == self.queue.len() {
            self.compact();
        }
        let tail = (self.head + self.span) % self.queue.len();
        // `cmd < argv.len() <= u32::MAX`, checked in `new`.
        self.queue[tail] = Some(Waiting {
            cmd: cmd as u32,
            bucket: self.bucket(ev),
            ev: *ev,
        });
        self.span += 1;
        self.len += 1;
        self.dirty = true;
        true
    }

    /// While `held`, waiting events do not start (they are still queued, and running children
    /// are still reaped and killed). The daemon holds a new notifier while the one a reload
    /// replaced still has commands to run, so that one server's events stay in order across
    /// the reload.
    pub fn hold(&mut self, held: bool) {
        if self.held && !held {
            self.dirty = true;
        }
        self.held = held;
    }

    /// The bucket of `ev`'s server: its virtual service and real server (none for quorum
    /// events), hashed. `DefaultHasher::new` has fixed keys and allocates nothing.
    fn bucket(&self, ev: &Event) -> u32 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        ev.service.hash(&mut h);
        ev.real.hash(&mut h);
        // `busy.len()` is a power of two no larger than MAX_BUCKETS.
        (h.finish() as usize & (self.busy.len() - 1)) as u32
    }

    /// Closes the holes of the queue, keeping the order: the waiting events move to the
    /// front of the span. Runs only when the span reaches the end of the ring with holes in
    /// it, so at most once per `queue.len()` pushes.
    fn compact(&mut self) {
        let cap = self.queue.len();
        let mut w = 0;
        for r in 0..self.span {
            let from = (self.head + r) % cap;
            if let Some(e) = self.queue[from].take() {
                self.queue[(self.head + w) % cap] = Some(e);
                w += 1;
            }
        }
        self.span = w;
    }

    /// Reaps exited children, kills children running longer than `kill_after`, then starts
    /// waiting events in order while fewer than `max_running` run, skipping those whose
    /// server still has a command running. Never blocks.
    ///
    /// A spawn failure drops that event and is counted; the report carries the errno of the
    /// last one so the caller can log `notify spawn failed errno=N`.
    pub fn poll(&mut self, now: Time) -> NotifyReport {
        self.poll_with(now, &mut NoSink)
    }

    /// [`Notifier::poll`], telling `sink` of every failed spawn and of the children's output
    /// (read here, at most every [`DRAIN_EVERY`], and always before a child is reaped).
    pub fn poll_with(&mut self, now: Time, sink: &mut dyn NotifySink) -> NotifyReport {
        let mut report = NotifyReport::default();
        if now >= self.next_drain {
            self.next_drain = now.plus(DRAIN_EVERY);
            for o in self.outputs.iter_mut().filter(|o| o.fd >= 0) {
                o.drain(&self.argv, sink);
            }
        }
        self.reap(&mut report, sink);
        self.kill_overdue(now, &mut report);
        self.start_waiting(now, &mut report, sink);
        report
    }

    /// The earliest time [`Notifier::poll`] must run again to kill an overdue child (or to
    /// re-check a killed one not yet reaped); `None` when nothing runs. Exits and new events
    /// are the caller's to notice (`SIGCHLD`, [`Notifier::push`]).
    pub fn next_deadline(&self) -> Option<Time> {
        let kill = self
            .children
            .iter()
            .filter(|c| c.pid != 0)
            .map(|c| c.deadline)
            .min();
        let drain = self
            .outputs
            .iter()
            .any(|o| o.fd >= 0)
            .then_some(self.next_drain);
        match (kill, drain) {
            (Some(k), Some(d)) => Some(k.min(d)),
            (k, d) => k.or(d),
        }
    }

    /// Children running now (including killed ones not yet reaped).
    pub fn running(&self) -> usize {
        self.running
    }

    /// Events waiting for a free slot.
    pub fn queued(&self) -> usize {
        self.len
    }

    /// Totals since construction.
    pub fn counters(&self) -> NotifyCounters {
        self.counters
    }

    /// `waitpid(pid, WNOHANG)` for every running child.
    fn reap(&mut self, report: &mut NotifyReport, sink: &mut dyn NotifySink) {
        for (c, o) in self
            .children
            .iter_mut()
            .zip(self.outputs.iter_mut())
            .filter(|(c, _)| c.pid != 0)
        {
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a live local; WNOHANG keeps this from blocking.
            let r = unsafe { libc::waitpid(c.pid, &mut status, libc::WNOHANG) };
            let gone = if r == c.pid {
                let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
                if !clean && !c.killed {
                    report.exit_failures += 1;
                    self.counters.exit_failures += 1;
                }
                true
            } else {
                // 0: still running. ECHILD: someone else reaped it; the slot is free all the
                // same. Anything else (EINTR) is tried again at the next poll.
                r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD)
            };
            if gone {
                // What it printed last; a pipe still held open by something it started is
                // closed all the same.
                o.drain(&self.argv, sink);
                o.close(&self.argv, sink);
                self.busy[c.bucket as usize] -= 1;
                self.dirty = true;
                *c = Child::FREE;
                self.running -= 1;
                report.reaped += 1;
                self.counters.reaped += 1;
            }
        }
    }

    /// `SIGKILL` to the process group of every child past its deadline.
    fn kill_overdue(&mut self, now: Time, report: &mut NotifyReport) {
        for c in self
            .children
            .iter_mut()
            .filter(|c| c.pid != 0 && now >= c.deadline)
        {
            if !c.killed {
                // SAFETY: plain syscalls. The pid is our unreaped child, so neither it nor the
                // group id (equal to it) can have been reused. The second call covers a child
                // that left its group.
                unsafe {
                    libc::kill(-c.pid, libc::SIGKILL);
                    libc::kill(c.pid, libc::SIGKILL);
                }
                c.killed = true;
                report.killed += 1;
                self.counters.killed += 1;
            }
            c.deadline = now.plus(REAP_RETRY);
        }
    }

    /// Starts waiting events, oldest first, while a slot is free; an event whose server has
    /// a command running stays, and so do the later events of that server (the bucket stays
    /// busy). Scans only when something changed since the last scan.
    fn start_waiting(&mut self, now: Time, report: &mut NotifyReport, sink: &mut dyn NotifySink) {
        if !self.dirty || self.held {
            return;
        }
        self.dirty = false;
        let cap = self.queue.len();
        let mut i = 0;
        while i < self.span && self.running < self.children.len() && self.len > 0 {
            let at = (self.head + i) % cap;
            let Some(w) = self.queue[at] else {
                i += 1;
                continue;
            };
            if self.busy[w.bucket as usize] > 0 {
                i += 1;
                continue;
            }
            self.queue[at] = None;
            self.len -= 1;
            i += 1;
            match self.spawn(w.cmd as usize, &w.ev) {
                Ok((pid, out)) => {
                    let deadline = now.add_micros(self.kill_after_us);
                    if let Some(i) = self.children.iter().position(|c| c.pid == 0) {
                        self.children[i] = Child {
                            pid,
                            deadline,
                            killed: false,
                            bucket: w.bucket,
                        };
                        let o = &mut self.outputs[i];
                        o.fd = out;
                        o.cmd = w.cmd;
                        o.ev = Some(w.ev);
                    } else if out >= 0 {
                        // SAFETY: our own descriptor (cannot happen: a slot is free).
                        unsafe { libc::close(out) };
                    }
                    self.busy[w.bucket as usize] += 1;
                    self.running += 1;
                    report.spawned += 1;
                    self.counters.spawned += 1;
                }
                Err(errno) => {
                    report.spawn_errors += 1;
                    report.last_errno = errno;
                    report.last_failed = Some((w.cmd, w.ev));
                    sink.spawn_failed(w.cmd, program_of(&self.argv, w.cmd), &w.ev, errno);
                    self.counters.spawn_errors += 1;
                }
            }
        }
        // The head moves past the holes it now has.
        while self.span > 0 && self.queue[self.head].is_none() {
            self.head = (self.head + 1) % cap;
            self.span -= 1;
        }
        if self.span == 0 {
            self.head = 0;
        }
    }

    /// Makes a pipe for a child's output (see [`FileActions::output_pipe`]).
    fn output_pipe(&mut self) -> libc::c_int {
        self.actions.output_pipe()
    }

    /// Points the output slot at `/dev/null` again (see [`FileActions::reset_output_slot`]).
    fn reset_output_slot(&mut self) {
        self.actions.reset_output_slot();
    }

    /// Fills the `LVSMON_*` slots from `ev` and spawns command `cmd` with an output pipe of
    /// its own. Returns the pid and the pipe's read end (-1 if none), or the errno
    /// posix_spawn returned (it reports exec failures such as `ENOENT` too).
    fn spawn(&mut self, cmd: usize, ev: &Event) -> Result<(libc::pid_t, libc::c_int), i32> {
        let out = self.output_pipe();
        let res = self.spawn_with_slot(cmd, ev);
        if out >= 0 {
            self.reset_output_slot();
            if res.is_err() {
                // SAFETY: our own descriptor, closed once.
                unsafe { libc::close(out) };
            }
        }
        res.map(|pid| (pid, out))
    }

    /// `posix_spawn` of command `cmd` for `ev` with the file actions as they are.
    fn spawn_with_slot(&mut self, cmd: usize, ev: &Event) -> Result<libc::pid_t, i32> {
        self.fill_env(ev);
        let argv = &self.argv[cmd];
        let mut pid: libc::pid_t = 0;
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to NUL-terminated
        // strings in `words` and `env_buf`, alive and unchanged for the whole call (glibc's
        // posix_spawn returns only after the child has exec'd or failed, so the parent's
        // buffers need to outlive the call only). The attribute and file-action objects were
        // initialised in `new`.
        let rc = unsafe {
            libc::posix_spawn(
                &mut pid,
                argv[0],
                &*self.actions.0,
                &*self.attr.0,
                argv.as_ptr(),
                self.envp.as_ptr(),
            )
        };
        if rc == 0 {
            Ok(pid)
        } else {
            Err(rc)
        }
    }

    /// Rewrites the six `LVSMON_*` values for `ev`. Writes go through `io::Write` on byte
    /// slices, which never allocates.
    fn fill_env(&mut self, ev: &Event) {
        self.set_var(EVENT, |w| w.write_all(ev.kind.as_str().as_bytes()));
        self.set_var(VIRTUAL, |w| write!(w, "{}", ev.service));
        self.set_var(REAL, |w| match ev.real {
            Some(addr) => write!(w, "{addr}"),
            None => Ok(()),
        });
        self.set_var(REASON, |w| {
            w.write_all(ev.reason.map_or("", Reason::as_str).as_bytes())
        });
        self.set_var(DETAIL, |w| w.write_all(ev.detail.as_bytes()));
        self.set_var(FAILURES, |w| write!(w, "{}", ev.failures));
    }

    /// Writes one value with `write` into its slot and NUL-terminates it.
    fn set_var(&mut self, var: usize, write: impl FnOnce(&mut &mut [u8]) -> io::Result<()>) {
        let Slot { at, cap } = self.slots[var];
        let slot = &mut self.env_buf[at..=at + cap];
        let mut rest = &mut slot[..cap];
        // Cannot fail: each slot holds its longest value. Were a value ever too long, the
        // bytes that fit are kept (a `WriteZero` error here is a constant, not an allocation).
        let _ = write(&mut rest);
        let n = cap - rest.len();
        slot[n] = 0;
    }
}

/// A few words for the errors a spawn or an open of the event FIFO gives, for log lines
/// (`io::Error`'s own text would be allocated).
pub fn errno_text(errno: i32) -> &'static str {
    match errno {
        libc::ENOENT => "no such file or directory",
        libc::EACCES => "permission denied",
        libc::ENOEXEC => "not an executable format",
        libc::ENOTDIR => "a path component is not a directory",
        libc::ELOOP => "too many symbolic links",
        libc::ETXTBSY => "text file busy",
        libc::EISDIR => "is a directory",
        libc::E2BIG => "argument list too long",
        libc::ENOMEM => "out of memory",
        libc::EAGAIN => "resource temporarily unavailable (process limit?)",
        libc::EMFILE | libc::ENFILE => "too many open files",
        libc::ENXIO => "no process has the FIFO open for reading",
        libc::EPIPE => "the reader closed the FIFO",
        libc::ENOSPC => "no space left on device",
        libc::EROFS => "read-only file system",
        _ => "error",
    }
}

/// Checks that a notify program can be started: `program` (argv\[0\], a path with a `/`) names
/// a regular file, through symbolic links, that the user it will run as may execute.
///
/// `root` is the `--chroot` directory when the daemon has not entered it yet (startup and
/// `--check-config`): the program is looked up inside it, as the spawn will, an absolute path
/// from the chroot's root and a relative one from it too (the daemon works in `/` there).
/// `user` is the `--user` uid and gid the commands will run as, asked of the kernel as that
/// user ([`crate::privdrop::executable_as`]: ACLs and directories on the way count);
/// `None`: the daemon's own (checked with `access(2)`).
///
/// # Errors
/// A sentence saying what is wrong and where the program was looked for.
pub fn check_program(
    program: &[u8],
    root: Option<&std::path::Path>,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    let shown = String::from_utf8_lossy(program);
    let path: PathBuf = match root {
        Some(r) => {
            let rel = Path::new(std::ffi::OsStr::from_bytes(program));
            let rel = rel.strip_prefix("/").unwrap_or(rel);
            r.join(rel)
        }
        None => PathBuf::from(std::ffi::OsStr::from_bytes(program)),
    };
    let where_ = match root {
        Some(r) => format!(
            " (looked up as {} inside --chroot {})",
            path.display(),
            r.display()
        ),
        None => String::new(),
    };
    let meta = std::fs::metadata(&path)
        .map_err(|e| format!("notify program {shown}{where_} cannot be used: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "notify program {shown}{where_} is not a regular file"
        ));
    }
    let mode = meta.permissions().mode();
    let runnable = match user {
        // Asked as the user, inside the chroot: directories on the way and ACLs count too.
        Some((uid, gid)) => crate::privdrop::executable_as(program, root, uid, gid),
        None => {
            let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                .map_err(|_| format!("notify program {shown} holds a NUL byte"))?;
            // SAFETY: access reads the NUL-terminated path only.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        }
    };
    if let Err(e) = runnable {
        let who = match user {
            Some((uid, gid)) => format!("uid {uid} gid {gid}"),
            None => "the daemon's user".to_string(),
        };
        return Err(format!(
            "notify program {shown}{where_} is not executable by {who} (mode {:o}; {e})",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// [`check_program`] for every notify command of `plan`; an error points at the program word
/// of the command's first `notify` line.
///
/// # Errors
/// The first program that cannot be started, at its `file:line:col`.
pub fn check_programs(
    plan: &crate::config::Plan,
    root: Option<&std::path::Path>,
    user: Option<(libc::uid_t, libc::gid_t)>,
) -> Result<(), crate::config::ConfigError> {
    for (i, argv) in plan.notifies.iter().enumerate() {
        let Some(program) = argv.first() else {
            continue;
        };
        if let Err(msg) = check_program(program, root, user) {
            let loc = plan
                .notify_at
                .get(i)
                .cloned()
                .unwrap_or_else(|| crate::config::Loc {
                    file: plan.files.first().cloned().unwrap_or_default(),
                    line: 0,
                    col: 0,
                });
            return Err(crate::config::ConfigError::at(&loc, msg));
        }
    }
    Ok(())
}

/// Bytes of event lines [`EventFifo`] holds while its reader is slow or absent.
pub const FIFO_BUFFER: usize = 64 * 1024;
/// How soon [`EventFifo`] tries again after a FIFO with no reader, a full pipe or an error.
const FIFO_RETRY: Duration = Duration::from_secs(1);
/// The longest event line (a detail of [`DETAIL_CAP`] bytes, each escaped, and the widest
/// addresses fit well within it).
const LINE_MAX: usize = 512;
/// How many of the last lines written whole [`EventFifo`] remembers the lengths of, to tell
/// how many lines the bytes left unread in a pipe whose reader went away hold. The pipe holds
/// 64 KiB unless its reader enlarges it (lvsmon does not), and the shortest event line is
/// over 32 bytes.
const FIFO_RING: usize = 2048;

/// What [`EventFifo::flush`] found, for the caller to log (only when it changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FifoStatus {
    /// Nothing new.
    Same,
    /// The path is open (again).
    Opened,
    /// The path could not be opened or written: the errno. Lines wait in the buffer.
    Failed(i32),
}

/// `notify-fifo PATH`: every event line, in order, written to a FIFO or a file that another
/// program reads, without ever blocking the loop.
///
/// Lines go to a buffer of [`FIFO_BUFFER`] bytes allocated at construction, and from there to
/// the path, opened `O_WRONLY | O_NONBLOCK | O_APPEND` (and created as a regular file, mode
/// 0600, if missing). A FIFO without a reader (`ENXIO`), a full pipe (`EAGAIN`) or a reader
/// that went away (`EPIPE`) leaves the lines in the buffer and the path is tried again
/// [`FIFO_RETRY`] later; a line that does not fit in the buffer is dropped and counted. A
/// line is written whole to the next reader: after `EPIPE` the rest of a line cut short is
/// discarded, so a new reader starts at the beginning of a line.
///
/// Lines already in the pipe when its reader goes away are lost with it: at `EPIPE`, before
/// the descriptor is closed, `FIONREAD` on it tells how many bytes were left unread, and the
/// lines those bytes belong to (a line read in part among them) are counted as dropped, with
/// the line cut short, from the lengths of the last lines written kept in a ring.
pub struct EventFifo {
    path: std::ffi::CString,
    fd: Option<OwnedFd>,
    buf: Box<[u8]>,
    /// Bytes waiting at the front of `buf`.
    len: usize,
    /// Bytes of the line at the front of `buf` already written (0: the last byte written
    /// ended a line).
    head_sent: usize,
    /// Lengths of the last lines written whole to the open descriptor, oldest overwritten.
    ring: Box<[u16]>,
    /// Where the next length goes in `ring`.
    ring_next: usize,
    /// Lengths held in `ring` (at most its size).
    ring_len: usize,
    /// Not before this time is the path opened or written again (after a failure).
    retry_at: Time,
    /// The errno of the last failure, 0 once open: a failure is reported once, not at every
    /// retry.
    failing: i32,
    /// Lines dropped because the buffer was full (or longer than [`LINE_MAX`]), or lost in the
    /// pipe (or cut short) when the reader went away.
    dropped: u64,
    /// Of `dropped`, the lines lost at `EPIPE` not yet taken by [`EventFifo::take_lost`].
    lost: u64,
    /// Lines written whole.
    written: u64,
}

impl fmt::Debug for EventFifo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventFifo")
            .field("path", &self.path)
            .field("open", &self.fd.is_some())
            .field("pending", &self.len)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl EventFifo {
    /// A writer for `path`, not opened yet (the first line opens it, inside the chroot and as
    /// the daemon's user if those apply).
    ///
    /// # Errors
    /// `InvalidInput` if the path holds a NUL byte.
    pub fn new(path: &[u8]) -> io::Result<EventFifo> {
        let path = std::ffi::CString::new(path)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in notify-fifo"))?;
        Ok(EventFifo {
            path,
            fd: None,
            buf: vec![0; FIFO_BUFFER].into_boxed_slice(),
            len: 0,
            head_sent: 0,
            ring: vec![0; FIFO_RING].into_boxed_slice(),
            ring_next: 0,
            ring_len: 0,
            retry_at: Time::ZERO,
            failing: 0,
            dropped: 0,
            lost: 0,
            written: 0,
        })
    }

    /// The path, as configured.
    pub fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lines lost in the pipe (or cut short) when its reader went away since the last call:
    /// already in [`EventFifo::dropped`], for the caller's counters and log.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Bytes waiting for the reader.
    pub fn pending(&self) -> usize {
        self.len
    }

    /// Lines waiting for the reader (a line cut short by a write counts).
    pub fn pending_lines(&self) -> u64 {
        self.buf[..self.len].iter().filter(|&&b| b == b'\n').count() as u64
    }

    /// When [`EventFifo::flush`] should run again: lines wait and the last try failed.
    pub fn next_deadline(&self) -> Option<Time> {
        (self.len > 0).then_some(self.retry_at)
    }

    /// Adds the line of `ev` (as the log writes it, without the time stamp, then a newline)
    /// and writes what it can. Returns false if the line was dropped (no room).
    pub fn push(
        &mut self,
        ev: &Event,
        quorum: Option<(u32, u32)>,
        now: Time,
    ) -> (bool, FifoStatus) {
        let mut line = [0u8; LINE_MAX];
        let mut w = &mut line[..];
        let ok = write_event_line(&mut w, ev, quorum).is_ok();
        let n = LINE_MAX - w.len();
        let kept = ok && self.len + n <= self.buf.len();
        if kept {
            self.buf[self.len..self.len + n].copy_from_slice(&line[..n]);
            self.len += n;
        } else {
            self.dropped += 1;
        }
        let status = if now >= self.retry_at {
            self.flush(now)
        } else {
            FifoStatus::Same
        };
        (kept, status)
    }

    /// Opens the path if needed and writes what waits, without blocking.
    pub fn flush(&mut self, now: Time) -> FifoStatus {
        let mut status = FifoStatus::Same;
        if self.len == 0 {
            return status;
        }
        if self.fd.is_none() {
            // SAFETY: open with a NUL-terminated path; the result is a new descriptor or -1.
            let fd = unsafe {
                libc::open(
                    self.path.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_NONBLOCK
                        | libc::O_APPEND
                        | libc::O_CREAT
                        | libc::O_CLOEXEC
                        | libc::O_NOCTTY,
                    0o600 as libc::c_uint,
                )
            };
            if fd < 0 {
                return self.failed(now, io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
            // SAFETY: just opened, owned by nobody else.
            self.fd = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            self.ring_len = 0;
            if self.failing != 0 || self.written == 0 {
                status = FifoStatus::Opened;
            }
            self.failing = 0;
        }
        let Some(fd) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return status;
        };
        while self.len > 0 {
            // SAFETY: writes from our own buffer, `len` bytes of which are initialised.
            let n = unsafe { libc::write(fd, self.buf.as_ptr().cast(), self.len) };
            if n < 0 {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                match errno {
                    libc::EINTR => continue,
                    libc::EAGAIN => {
                        // The pipe is full: the reader is slow. Not a failure to report.
                        self.retry_at = now.plus(FIFO_RETRY);
                        return status;
                    }
                    _ => {
                        if errno == libc::EPIPE {
                            self.count_unread(fd);
                        }
                        self.fd = None;
                        if self.head_sent > 0 {
                            self.discard_partial_line();
                        }
                        return self.failed(now, errno);
                    }
                }
            }
            let n = n as usize;
            if n == 0 {
                // Nothing taken and no error: try again later rather than at once.
                self.retry_at = now.plus(FIFO_RETRY);
                break;
            }
            self.sent(n);
            self.buf.copy_within(n..self.len, 0);
            self.len -= n;
        }
        status
    }

    /// Notes the first `n` bytes of `buf` as written: the lengths of the lines they end go to
    /// the ring.
    fn sent(&mut self, n: usize) {
        let mut start = 0;
        for i in 0..n {
            if self.buf[i] == b'\n' {
                let len = self.head_sent + i + 1 - start;
                self.ring[self.ring_next] = len.min(u16::MAX as usize) as u16;
                self.ring_next = (self.ring_next + 1) % self.ring.len();
                self.ring_len = (self.ring_len + 1).min(self.ring.len());
                self.head_sent = 0;
                self.written += 1;
                start = i + 1;
            }
        }
        self.head_sent += n - start;
    }

    /// The reader of `fd` went away (`EPIPE`): counts as dropped the line cut short (if any)
    /// and the lines left unread in the pipe, a line read in part among them. The unread
    /// bytes come from `FIONREAD` on the write end (the pipe keeps them while the write end
    /// is open); if it fails, only the cut line is counted. Bytes beyond the lines the ring
    /// remembers (a pipe its reader enlarged) count at the ring's mean line length.
    fn count_unread(&mut self, fd: libc::c_int) {
        let mut lost = u64::from(self.head_sent > 0);
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer, to our local.
        let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread as *mut libc::c_int) };
        if rc == 0 && unread > 0 {
            // The newest bytes in the pipe are the cut line's beginning.
            let mut left = (unread as usize).saturating_sub(self.head_sent);
            let mut seen = 0;
            let mut bytes = 0usize;
            while left > 0 && seen < self.ring_len {
                let i = (self.ring_next + self.ring.len() - 1 - seen) % self.ring.len();
                let len = usize::from(self.ring[i]).max(1);
                left = left.saturating_sub(len);
                bytes += len;
                seen += 1;
                lost += 1;
            }
            if left > 0 && self.ring_len == self.ring.len() {
                let mean = (bytes / seen).max(1);
                lost += left.div_ceil(mean) as u64;
            }
        }
        self.dropped += lost;
        self.lost += lost;
    }

    /// Drops the bytes up to and including the first newline: the rest of a line whose
    /// beginning went to a reader that is gone.
    fn discard_partial_line(&mut self) {
        let cut = self.buf[..self.len]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.len, |i| i + 1);
        self.buf.copy_within(cut..self.len, 0);
        self.len -= cut;
        self.head_sent = 0;
    }

    fn failed(&mut self, now: Time, errno: i32) -> FifoStatus {
        self.retry_at = now.plus(FIFO_RETRY);
        if self.failing == errno {
            return FifoStatus::Same;
        }
        self.failing = errno;
        FifoStatus::Failed(errno)
    }
}

/// Writes the line of an event as the log does after its time stamp and level:
/// `event=down virtual=tcp:10.0.0.1:80 real=192.168.1.10:80 reason=http-status
/// detail="503" failures=3` (`up=N quorum=Q` instead of `failures=` for quorum events), then
/// a newline. Allocates nothing.
///
/// # Errors
/// `w` is full.
pub fn write_event_line(
    w: &mut impl Write,
    ev: &Event,
    quorum: Option<(u32, u32)>,
) -> io::Result<()> {
    write!(w, "event={} virtual={}", ev.kind.as_str(), ev.service)?;
    if let Some(a) = ev.real {
        write!(w, " real={a}")?;
    }
    if let Some(r) = ev.reason {
        write!(w, " reason={} detail=\"", r.as_str())?;
        for &b in ev.detail.as_bytes() {
            match b {
                b'"' | b'\\' => w.write_all(&[b'\\', b])?,
                0x20..=0x7e => w.write_all(&[b])?,
                _ => w.write_all(b"?")?,
            }
        }
        w.write_all(b"\"")?;
    }
    match quorum {
        Some((up, q)) => write!(w, " up={up} quorum={q}")?,
        None => write!(w, " failures={}", ev.failures)?,
    }
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::{Proto, ServiceKey};
    use crate::monitor::event::EventKind;
    use crate::plugins::Detail;
    use std::ffi::CStr;
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
    use std::ops::{Deref, DerefMut};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    // ---------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------

    /// How long any wait loop may take before the test fails.
    const WAIT_MAX: Duration = Duration::from_secs(5);
    /// How often wait loops poll.
    const TICK: Duration = Duration::from_millis(10);

    /// A temp file path, unique per test and process, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let name = format!("lvsmon-notify-{}-{tag}-{n}", std::process::id());
            let path = std::env::temp_dir().join(name);
            let _ = std::fs::remove_file(&path);
            TempFile(path)
        }

        fn arg(&self) -> Vec<u8> {
            self.0.as_os_str().as_bytes().to_vec()
        }

        fn read(&self) -> String {
            std::fs::read_to_string(&self.0).unwrap_or_default()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A notifier that, when dropped (even by a failing test), kills every child still
    /// running and waits for it, so no test leaves a process behind.
    struct Guard(Notifier);

    impl Deref for Guard {
        type Target = Notifier;
        fn deref(&self) -> &Notifier {
            &self.0
        }
    }

    impl DerefMut for Guard {
        fn deref_mut(&mut self) -> &mut Notifier {
            &mut self.0
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            for c in self.0.children.iter_mut().filter(|c| c.pid != 0) {
                // SAFETY: our own unreaped child and its group; the blocking wait is bounded
                // because SIGKILL cannot be caught.
                unsafe {
                    libc::kill(-c.pid, libc::SIGKILL);
                    libc::kill(c.pid, libc::SIGKILL);
                    libc::waitpid(c.pid, ptr::null_mut(), 0);
                }
                *c = Child::FREE;
            }
        }
    }

    fn notifier(commands: &[Vec<Vec<u8>>], max: usize, cap: usize, kill: Duration) -> Guard {
        Guard(Notifier::new(commands, max, cap, kill).expect("notifier"))
    }

    /// `/bin/sh -c SCRIPT sh FILE`: the script sees the file as `$1`.
    fn sh(script: &str, file: &TempFile) -> Vec<Vec<u8>> {
        vec![
            b"/bin/sh".to_vec(),
            b"-c".to_vec(),
            script.into(),
            b"sh".to_vec(),
            file.arg(),
        ]
    }

    /// A script appending the six variables, `|`-separated, to `$1`.
    const PRINT_ENV: &str = r#"printf '%s|%s|%s|%s|%s|%s\n' "$LVSMON_EVENT" "$LVSMON_VIRTUAL" "$LVSMON_REAL" "$LVSMON_REASON" "$LVSMON_DETAIL" "$LVSMON_FAILURES" >> "$1""#;

    fn event(kind: EventKind, real: Option<&str>) -> Event {
        Event {
            kind,
            service: ServiceKey::Inet(Proto::Tcp, "10.0.0.1:80".parse().unwrap()),
            real: real.map(|r| r.parse().unwrap()),
            reason: None,
            detail: Detail::EMPTY,
            failures: 0,
        }
    }

    /// Adds up reports.
    fn add(total: &mut NotifyReport, r: NotifyReport) {
        total.spawned += r.spawned;
        total.reaped += r.reaped;
        total.killed += r.killed;
        total.spawn_errors += r.spawn_errors;
        total.exit_failures += r.exit_failures;
        if r.spawn_errors > 0 {
            total.last_errno = r.last_errno;
        }
    }

    /// Polls on the real clock every [`TICK`] until `done`, at most [`WAIT_MAX`]; `each` sees
    /// the notifier after every poll. Returns the summed reports.
    #[track_caller]
    fn drive(
        n: &mut Notifier,
        clock: &Clock,
        mut each: impl FnMut(&Notifier),
        done: impl Fn(&Notifier) -> bool,
    ) -> NotifyReport {
        let start = Instant::now();
        let mut total = NotifyReport::default();
        loop {
            add(&mut total, n.poll(clock.now()));
            each(n);
            if done(n) {
                return total;
            }
            assert!(
                start.elapsed() < WAIT_MAX,
                "gave up waiting: {n:?}, {total:?}"
            );
            std::thread::sleep(TICK);
        }
    }

    /// Runs until nothing waits or runs.
    #[track_caller]
    fn drain(n: &mut Notifier) -> NotifyReport {
        drive(
            n,
            &Clock::new(),
            |_| {},
            |n| n.queued() == 0 && n.running() == 0,
        )
    }

    /// Waits (bounded) until `cond` holds.
    #[track_caller]
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < WAIT_MAX, "gave up waiting for {what}");
            std::thread::sleep(TICK);
        }
    }

    /// True when `pid` no longer exists, or is a zombie waiting for its (non-us) parent.
    fn process_gone(pid: libc::pid_t) -> bool {
        // SAFETY: signal 0 only checks for existence.
        if unsafe { libc::kill(pid, 0) } == -1 {
            return io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        }
        // The state follows the `)` that closes the command name in /proc/PID/stat.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// The earliest kill (or re-check) deadline of the running children.
    fn kill_deadline(n: &Notifier) -> Option<Time> {
        n.children
            .iter()
            .filter(|c| c.pid != 0)
            .map(|c| c.deadline)
            .min()
    }

    /// The pids of the running children.
    fn pids(n: &Notifier) -> Vec<libc::pid_t> {
        n.children
            .iter()
            .filter(|c| c.pid != 0)
            .map(|c| c.pid)
            .collect()
    }

    /// The environment a spawn would pass, as strings.
    fn env_strings(n: &Notifier) -> Vec<String> {
        n.envp
            .iter()
            .take_while(|p| !p.is_null())
            // SAFETY: envp entries point to NUL-terminated strings in env_buf.
            .map(|&p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
            .collect()
    }

    // ---------------------------------------------------------------------------------------
    // Tests for construction
    // ---------------------------------------------------------------------------------------

    #[test]
    fn new_rejects_bad_commands() {
        let k = Duration::from_secs(30);
        let bad = |cmds: Vec<Vec<Vec<u8>>>, max| {
            Notifier::new(&cmds, max, 4, k)
                .map(|_| ())
                .unwrap_err()
                .kind()
        };
        assert_eq!(bad(vec![vec![]], 1), io::ErrorKind::InvalidInput);
        assert_eq!(
            bad(vec![vec![b"notify.sh".to_vec()]], 1),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(vec![vec![b"/bin/true".to_vec(), b"a\0b".to_vec()]], 1),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            bad(vec![vec![b"/bin/true".to_vec()]], 0),
            io::ErrorKind::InvalidInput
        );
        // No commands at all is fine, whatever the sizes.
        assert!(Notifier::new(&[], 0, 0, k).is_ok());
    }

    #[test]
    fn argv_is_built_as_configured() {
        let cmds = vec![
            vec![b"/bin/echo".to_vec(), b"a b".to_vec(), Vec::new()],
            vec![b"./x".to_vec()],
        ];
        let n = Notifier::new(&cmds, 1, 1, Duration::from_secs(1)).unwrap();
        let words = |i: usize| -> Vec<Vec<u8>> {
            let argv = &n.argv[i];
            assert!(argv.last().unwrap().is_null());
            argv[..argv.len() - 1]
                .iter()
                // SAFETY: argv entries point to NUL-terminated strings in `words`.
                .map(|&p| unsafe { CStr::from_ptr(p) }.to_bytes().to_vec())
                .collect()
        };
        assert_eq!(words(0), cmds[0]);
        assert_eq!(words(1), cmds[1]);
    }

    #[test]
    fn env_copies_daemon_env_without_lvsmon_vars() {
        let env = [
            ("FOO", "bar"),
            ("LVSMON_EVENT", "stale"),
            ("LVSMON_OTHER", "x"),
            ("E", ""),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let cmds = vec![vec![b"/bin/true".to_vec()]];
        let n = Notifier::with_env(&cmds, 1, 1, Duration::from_secs(1), env).unwrap();
        let vars = env_strings(&n);
        assert!(n.envp.last().unwrap().is_null());
        assert_eq!(
            vars,
            [
                "FOO=bar",
                "E=",
                "LVSMON_EVENT=",
                "LVSMON_VIRTUAL=",
                "LVSMON_REAL=",
                "LVSMON_REASON=",
                "LVSMON_DETAIL=",
                "LVSMON_FAILURES=",
            ]
        );
    }

    #[test]
    fn slots_fit_longest_values() {
        let widest = SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            ),
            65535,
            u32::MAX,
            u32::MAX,
        ));
        let mut n = Notifier::with_env(&[], 0, 0, Duration::from_secs(1), []).unwrap();
        let longest_reason = Reason::ALL.iter().max_by_key(|r| r.as_str().len()).copied();
        let ev = Event {
            kind: EventKind::QuorumRestored,
            service: ServiceKey::Inet(Proto::Sctp, widest),
            real: Some(widest),
            reason: longest_reason,
            detail: Detail::text(&[b'~'; DETAIL_CAP]),
            failures: u64::MAX,
        };
        n.fill_env(&ev);
        let expect = [
            "LVSMON_EVENT=quorum-restored".to_string(),
            format!("LVSMON_VIRTUAL=sctp:{widest}"),
            format!("LVSMON_REAL={widest}"),
            format!("LVSMON_REASON={}", longest_reason.unwrap().as_str()),
            format!("LVSMON_DETAIL={}", "~".repeat(DETAIL_CAP)),
            format!("LVSMON_FAILURES={}", u64::MAX),
        ];
        assert_eq!(env_strings(&n), expect);
        assert_eq!(format!("{widest}").len(), ADDR_MAX);
        for kind in [
            EventKind::Up,
            EventKind::Down,
            EventKind::Drained,
            EventKind::Undrained,
        ] {
            assert!(kind.as_str().len() <= VAR_CAPS[EVENT]);
        }
        for r in Reason::ALL {
            assert!(r.as_str().len() <= VAR_CAPS[REASON]);
        }

        // A shorter value after a longer one leaves no trace of the old one.
        n.fill_env(&event(EventKind::Up, None));
        assert_eq!(
            env_strings(&n),
            [
                "LVSMON_EVENT=up",
                "LVSMON_VIRTUAL=tcp:10.0.0.1:80",
                "LVSMON_REAL=",
                "LVSMON_REASON=",
                "LVSMON_DETAIL=",
                "LVSMON_FAILURES=0",
            ]
        );
    }

    // ---------------------------------------------------------------------------------------
    // Tests for the child's environment (real processes)
    // ---------------------------------------------------------------------------------------

    /// Runs one event through PRINT_ENV and returns the line it wrote.
    #[track_caller]
    fn env_line(ev: &Event) -> String {
        let file = TempFile::new("env");
        let mut n = notifier(&[sh(PRINT_ENV, &file)], 1, 4, Duration::from_secs(30));
        assert!(n.push(0, ev));
        let total = drain(&mut n);
        assert_eq!(
            (total.spawned, total.reaped, total.exit_failures),
            (1, 1, 0),
            "{total:?}"
        );
        file.read()
    }

    #[test]
    fn env_up_event() {
        let ev = event(EventKind::Up, Some("192.168.1.10:80"));
        assert_eq!(env_line(&ev), "up|tcp:10.0.0.1:80|192.168.1.10:80|||0\n");
    }

    #[test]
    fn env_down_event_with_reason_and_detail() {
        let mut ev = event(EventKind::Down, Some("192.168.1.10:80"));
        ev.reason = Some(Reason::HttpStatus);
        ev.detail = Detail::text(b"503 Service Unavailable");
        ev.failures = 3;
        assert_eq!(
            env_line(&ev),
            "down|tcp:10.0.0.1:80|192.168.1.10:80|http-status|503 Service Unavailable|3\n"
        );
    }

    #[test]
    fn env_quorum_event_has_empty_real() {
        let mut ev = event(EventKind::QuorumLost, None);
        ev.service = ServiceKey::Inet(Proto::Udp, "[2001:db8::1]:53".parse().unwrap());
        assert_eq!(env_line(&ev), "quorum-lost|udp:[2001:db8::1]:53||||0\n");
    }

    #[test]
    fn child_gets_default_signals_and_dev_null_stdin() {
        // `cp` copies its own /proc status, so the masks read are the ones it got at exec (a
        // shell's own would vary: dash blocks signals while it waits for a command).
        let status = TempFile::new("status");
        let stdin = TempFile::new("stdin");
        let cmds = [
            vec![
                b"/bin/cp".to_vec(),
                b"/proc/self/status".to_vec(),
                status.arg(),
            ],
            sh(r#"readlink /proc/$$/fd/0 > "$1""#, &stdin),
        ];
        let mut n = notifier(&cmds, 2, 2, Duration::from_secs(30));
        assert!(n.push(0, &event(EventKind::Up, None)));
        assert!(n.push(1, &event(EventKind::Up, Some("192.168.1.10:80"))));
        // Block SIGUSR1 in this thread while spawning: the child must not inherit the mask.
        // (SIGPIPE is already ignored in every Rust test binary.)
        // SAFETY: plain sigset manipulation on locals; the old mask is restored below.
        let old = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            old
        };
        let spawned = n.poll(Time::ZERO).spawned;
        // SAFETY: restores the mask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
        assert_eq!(spawned, 2);
        let total = drain(&mut n);
        assert_eq!(total.exit_failures, 0);
        let out = status.read();
        let mask = |name: &str| -> u64 {
            let line = out.lines().find(|l| l.starts_with(name)).expect(name);
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        let bit = |sig: libc::c_int| 1u64 << (sig - 1);
        assert_eq!(mask("SigBlk:"), 0, "{out}");
        for sig in DEFAULT_SIGNALS {
            assert_eq!(mask("SigIgn:") & bit(sig), 0, "signal {sig} ignored: {out}");
        }
        assert_eq!(stdin.read(), "/dev/null\n");
    }

    // ---------------------------------------------------------------------------------------
    // Tests for the queue and the running table
    // ---------------------------------------------------------------------------------------

    #[test]
    fn one_runner_keeps_order() {
        let file = TempFile::new("order");
        let script = r#"printf '%s\n' "$LVSMON_FAILURES" >> "$1""#;
        let mut n = notifier(&[sh(script, &file)], 1, 8, Duration::from_secs(30));
        for i in 1..=5 {
            let mut ev = event(EventKind::Down, Some("192.168.1.10:80"));
            ev.failures = i;
            assert!(n.push(0, &ev));
        }
        assert_eq!(n.queued(), 5);
        let total = drive(
            &mut n,
            &Clock::new(),
            |n| assert!(n.running() <= 1),
            |n| n.queued() == 0 && n.running() == 0,
        );
        assert_eq!((total.spawned, total.reaped), (5, 5));
        assert_eq!(file.read(), "1\n2\n3\n4\n5\n");
        let c = n.counters();
        assert_eq!(
            (c.spawned, c.reaped, c.dropped, c.spawn_errors),
            (5, 5, 0, 0)
        );
    }

    #[test]
    fn at_most_max_running() {
        let file = TempFile::new("cap");
        let mut n = notifier(&[sh("sleep 0.3", &file)], 2, 8, Duration::from_secs(30));
        // Six different reals: nothing but the cap holds them back.
        for i in 0..6 {
            let real = format!("192.168.1.{i}:80");
            assert!(n.push(0, &event(EventKind::Up, Some(&real))));
        }
        let mut most = 0;
        let total = drive(
            &mut n,
            &Clock::new(),
            |n| {
                assert!(n.running() <= 2, "{n:?}");
                assert_eq!(pids(n).len(), n.running());
                most = most.max(n.running());
            },
            |n| n.queued() == 0 && n.running() == 0,
        );
        assert_eq!(most, 2);
        assert_eq!((total.spawned, total.reaped, total.killed), (6, 6, 0));
    }

    #[test]
    fn full_queue_drops() {
        let cmds = vec![vec![b"/bin/true".to_vec()]];
        let mut n = notifier(&cmds, 1, 2, Duration::from_secs(30));
        let ev = event(EventKind::Up, None);
        assert!(n.push(0, &ev));
        assert!(n.push(0, &ev));
        assert!(!n.push(0, &ev));
        assert_eq!((n.queued(), n.counters().dropped), (2, 1));
        // An unknown command id is refused the same way.
        assert!(!n.push(1, &ev));
        assert_eq!(n.counters().dropped, 2);
        // The ring wraps: drain, then fill again.
        drain(&mut n);
        assert!(n.push(0, &ev));
        assert!(n.push(0, &ev));
        assert!(!n.push(0, &ev));
        let total = drain(&mut n);
        assert_eq!(total.spawned, 2);
        assert_eq!(n.counters().spawned, 4);
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let cmds = vec![vec![b"/nonexistent/lvsmon-notify-test".to_vec()]];
        let mut n = notifier(&cmds, 2, 4, Duration::from_secs(30));
        assert!(n.push(0, &event(EventKind::Up, None)));
        assert!(n.push(0, &event(EventKind::Down, None)));
        let r = n.poll(Time::ZERO);
        assert_eq!(
            (r.spawned, r.spawn_errors, r.last_errno),
            (0, 2, libc::ENOENT)
        );
        assert_eq!(
            (n.running(), n.queued(), n.counters().spawn_errors),
            (0, 0, 2)
        );
        assert_eq!(n.next_deadline(), None);
    }

    #[test]
    fn failing_command_is_counted() {
        let file = TempFile::new("fail");
        let mut n = notifier(&[sh("exit 3", &file)], 1, 1, Duration::from_secs(30));
        assert!(n.push(0, &event(EventKind::Up, None)));
        let total = drain(&mut n);
        assert_eq!((total.reaped, total.exit_failures), (1, 1));
        assert_eq!(n.counters().exit_failures, 1);
    }

    // ---------------------------------------------------------------------------------------
    // Tests for kill_after
    // ---------------------------------------------------------------------------------------

    #[test]
    fn overdue_child_is_killed_and_reaped() {
        let file = TempFile::new("kill");
        let mut n = notifier(&[sh("sleep 30", &file)], 1, 1, Duration::from_millis(200));
        assert_eq!(n.next_deadline(), None);
        assert!(n.push(0, &event(EventKind::Up, None)));
        let clock = Clock::new();
        let t0 = clock.now();
        assert_eq!(n.poll(t0).spawned, 1);
        assert_eq!(kill_deadline(&n), Some(t0.plus(Duration::from_millis(200))));
        // Until then the loop comes back to read the child's output.
        assert_eq!(n.next_deadline(), Some(t0.plus(DRAIN_EVERY)));
        let pid = pids(&n)[0];
        // SAFETY: getpgid only reads.
        assert_eq!(
            unsafe { libc::getpgid(pid) },
            pid,
            "child leads its own process group"
        );
        let total = drive(&mut n, &clock, |_| {}, |n| n.running() == 0);
        assert_eq!((total.killed, total.reaped, total.exit_failures), (1, 1, 0));
        assert!(clock.now().since(t0) >= Duration::from_millis(200));
        assert!(process_gone(pid));
        assert_eq!(n.next_deadline(), None);
        assert_eq!(n.counters().killed, 1);
    }

    #[test]
    fn kill_reaches_grandchildren() {
        let file = TempFile::new("grandchild");
        let script = r#"sleep 30 & echo $! > "$1"; sleep 30"#;
        let kill_after = Duration::from_millis(200);
        let mut n = notifier(&[sh(script, &file)], 1, 1, kill_after);
        assert!(n.push(0, &event(EventKind::Up, None)));
        // Manual times: the kill happens only once the grandchild's pid is known.
        assert_eq!(n.poll(Time::ZERO).spawned, 1);
        let pid = pids(&n)[0];
        wait_for("the grandchild's pid", || file.read().ends_with('\n'));
        let grandchild: libc::pid_t = file.read().trim().parse().unwrap();
        assert!(!process_gone(grandchild));
        let just_before = Time(Time::ZERO.plus(kill_after).0 - 1);
        assert_eq!(n.poll(just_before).killed, 0);
        let at = Time::ZERO.plus(kill_after);
        assert_eq!(n.poll(at).killed, 1);
        // A killed child is re-checked a little later in case SIGCHLD goes missing.
        assert_eq!(kill_deadline(&n), Some(at.plus(REAP_RETRY)));
        let start = Instant::now();
        while n.running() > 0 {
            assert!(start.elapsed() < WAIT_MAX, "killed child not reaped");
            std::thread::sleep(TICK);
            assert_eq!(n.poll(at).killed, 0, "killed twice");
        }
        assert!(process_gone(pid));
        wait_for("the grandchild to die", || process_gone(grandchild));
    }

    // ---------------------------------------------------------------------------------------
    // Tests for the order of one server's events
    // ---------------------------------------------------------------------------------------

    /// Events of one real, and of one virtual's quorum, reach the command in the order they
    /// were pushed although up to four commands run at once and each sleeps a different time;
    /// events of different servers run side by side.
    #[test]
    fn one_servers_events_keep_their_order() {
        let file = TempFile::new("per-key-order");
        // Sleeps a time that depends on the event number (0 to 90 ms, out of step with the
        // order), then appends "KEY NUMBER".
        let script = r#"sleep "0.0$(( ($LVSMON_FAILURES * 7) % 10 ))"; printf '%s %s\n' "${LVSMON_REAL:-quorum}" "$LVSMON_FAILURES" >> "$1""#;
        let mut n = notifier(&[sh(script, &file)], 4, 64, Duration::from_secs(30));
        let keys = [Some("192.168.1.1:80"), Some("192.168.1.2:80"), None];
        let mut pushed = 0;
        for round in 0..6 {
            for (k, real) in keys.iter().enumerate() {
                let kind = if real.is_none() {
                    EventKind::QuorumLost
                } else {
                    EventKind::Down
                };
                let mut ev = event(kind, *real);
                ev.failures = (round * 3 + k) as u64;
                assert!(n.push(0, &ev));
                pushed += 1;
            }
        }
        let mut most = 0;
        let total = drive(
            &mut n,
            &Clock::new(),
            |n| most = most.max(n.running()),
            |n| n.queued() == 0 && n.running() == 0,
        );
        assert_eq!((total.spawned, total.reaped), (pushed, pushed));
        assert!(most >= 2, "different servers ran side by side: most {most}");
        let text = file.read();
        for key in ["192.168.1.1:80", "192.168.1.2:80", "quorum"] {
            let got: Vec<u64> = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.parse().unwrap())
                .collect();
            let mut want = got.clone();
            want.sort_unstable();
            assert_eq!(got.len(), 6, "{key}: {text}");
            assert_eq!(got, want, "{key} out of order:\n{text}");
        }
    }

    /// A queue whose oldest event waits for its server while later ones start keeps room:
    /// the holes are closed when the ring wraps.
    #[test]
    fn holes_are_reused() {
        let file = TempFile::new("holes");
        let mut n = notifier(&[sh("sleep 0.2", &file)], 8, 4, Duration::from_secs(30));
        let a = event(EventKind::Down, Some("192.168.1.1:80"));
        assert!(n.push(0, &a));
        assert!(n.push(0, &a)); // waits for the first
        assert_eq!(n.poll(Time::ZERO).spawned, 1);
        for i in 2..5 {
            let real = format!("192.168.1.{i}:80");
            assert!(n.push(0, &event(EventKind::Up, Some(&real))));
            assert_eq!(n.poll(Time::ZERO).spawned, 1, "{:?}", n.0);
        }
        // One waits; three holes behind it, and the ring is at its end: room for three more.
        assert_eq!(n.queued(), 1);
        for i in 5..8 {
            let real = format!("192.168.1.{i}:80");
            assert!(n.push(0, &event(EventKind::Up, Some(&real))), "{:?}", n.0);
        }
        assert!(!n.push(0, &a), "full");
        let total = drain(&mut n);
        assert_eq!(total.spawned, 4);
        assert_eq!(n.counters().spawned, 8);
    }

    /// A failed spawn names its command and event.
    #[test]
    fn spawn_failure_names_command_and_event() {
        let cmds = vec![
            vec![b"/bin/true".to_vec()],
            vec![b"/nonexistent/lvsmon-notify-test".to_vec()],
        ];
        let mut n = notifier(&cmds, 2, 4, Duration::from_secs(30));
        let ev = event(EventKind::Drained, Some("192.168.1.9:80"));
        assert!(n.push(1, &ev));
        let r = n.poll(Time::ZERO);
        assert_eq!(r.last_failed, Some((1, ev)));
        assert_eq!(r.last_errno, libc::ENOENT);
    }

    // ---------------------------------------------------------------------------------------
    // Tests for check_program
    // ---------------------------------------------------------------------------------------

    #[test]
    fn check_program_finds_what_cannot_run() {
        assert_eq!(check_program(b"/bin/sh", None, None), Ok(()));
        let missing = check_program(b"/nonexistent/x.sh", None, None).unwrap_err();
        assert!(
            missing.contains("/nonexistent/x.sh") && missing.contains("No such file"),
            "{missing}"
        );
        let dir = check_program(b"/tmp", None, None).unwrap_err();
        assert!(dir.contains("not a regular file"), "{dir}");
        let plain = TempFile::new("noexec");
        std::fs::write(&plain.0, "#!/bin/sh\n").unwrap();
        let p = plain.arg();
        let e = check_program(&p, None, Some((12345, 12345))).unwrap_err();
        assert!(e.contains("not executable by uid 12345"), "{e}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plain.0, std::fs::Permissions::from_mode(0o701)).unwrap();
        // Asking as another user takes root (as `--user` does).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(check_program(&p, None, Some((12345, 12345))), Ok(()));
        }
        // Inside a chroot: /bin/sh is looked up under the directory.
        let root = std::path::Path::new("/nonexistent-root");
        let e = check_program(b"/bin/sh", Some(root), None).unwrap_err();
        assert!(
            e.contains("/nonexistent-root/bin/sh") && e.contains("--chroot"),
            "{e}"
        );
        assert_eq!(
            check_program(b"/sh", Some(std::path::Path::new("/bin")), None),
            Ok(())
        );
    }

    // ---------------------------------------------------------------------------------------
    // Tests for EventFifo
    // ---------------------------------------------------------------------------------------

    fn mkfifo(f: &TempFile) {
        let c = std::ffi::CString::new(f.arg()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn down(i: u64) -> Event {
        let mut ev = event(EventKind::Down, Some("192.168.1.10:80"));
        ev.reason = Some(Reason::HttpStatus);
        ev.detail = Detail::text(b"503 Service Unavailable");
        ev.failures = i;
        ev
    }

    #[test]
    fn fifo_line_is_the_log_line() {
        let mut buf = Vec::new();
        write_event_line(&mut buf, &down(3), None).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "event=down virtual=tcp:10.0.0.1:80 real=192.168.1.10:80 reason=http-status detail=\"503 Service Unavailable\" failures=3\n"
        );
        let mut buf = Vec::new();
        write_event_line(&mut buf, &event(EventKind::QuorumLost, None), Some((1, 2))).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "event=quorum-lost virtual=tcp:10.0.0.1:80 up=1 quorum=2\n"
        );
    }

    /// A regular file gets every line, appended, in order.
    #[test]
    fn fifo_to_a_regular_file() {
        let file = TempFile::new("fifo-file");
        let mut f = EventFifo::new(&file.arg()).unwrap();
        for i in 0..100 {
            assert!(f.push(&down(i), None, Time::ZERO).0);
        }
        assert_eq!((f.pending(), f.dropped()), (0, 0));
        let text = file.read();
        let got: Vec<&str> = text
            .lines()
            .map(|l| l.rsplit('=').next().unwrap())
            .collect();
        let want: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
    }

    /// No reader: nothing blocks, lines wait up to the buffer's size and the rest are dropped
    /// and counted; a reader that comes later gets the waiting lines, whole and in order.
    #[test]
    fn fifo_without_reader_then_with_one() {
        let file = TempFile::new("fifo");
        mkfifo(&file);
        let mut f = EventFifo::new(&file.arg()).unwrap();
        let t = Instant::now();
        let (kept, status) = f.push(&down(0), None, Time::ZERO);
        assert!(kept);
        assert_eq!(status, FifoStatus::Failed(libc::ENXIO));
        assert_eq!(f.next_deadline(), Some(Time::ZERO.plus(FIFO_RETRY)));
        let mut i = 1;
        while f.dropped() == 0 {
            f.push(&down(i), None, Time::ZERO);
            i += 1;
            assert!(i < 10_000);
        }
        assert!(t.elapsed() < Duration::from_secs(1), "never blocks");
        let kept_lines = f.pending_lines();
        assert!(kept_lines > 100, "{kept_lines}");
        // A reader arrives; at the retry time the lines go out.
        let path = file.0.clone();
        let reader = std::thread::spawn(move || std::fs::read_to_string(path).unwrap());
        let later = Time::ZERO.plus(FIFO_RETRY);
        let start = Instant::now();
        loop {
            let st = f.flush(later);
            if f.pending() == 0 {
                break;
            }
            assert!(start.elapsed() < WAIT_MAX, "{st:?} {f:?}");
            std::thread::sleep(TICK);
        }
        drop(f); // EOF for the reader
        let text = reader.join().unwrap();
        let got: Vec<u64> = text
            .lines()
            .map(|l| l.rsplit('=').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(got, (0..kept_lines).collect::<Vec<_>>());
    }

    /// A reader that stops reading fills the pipe: the writer never blocks, lines wait, then
    /// are dropped; a reader that closes is replaced by the next one, which starts at a line.
    #[test]
    fn fifo_with_stalled_then_gone_reader() {
        let file = TempFile::new("fifo-stall");
        mkfifo(&file);
        // A reader that opens and never reads.
        let c = std::ffi::CString::new(file.arg()).unwrap();
        // SAFETY: open with a NUL-terminated path.
        let rd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        assert!(rd >= 0);
        let mut f = EventFifo::new(&file.arg()).unwrap();
        assert_eq!(f.push(&down(0), None, Time::ZERO).1, FifoStatus::Opened);
        let t = Instant::now();
        let mut i = 1;
        while f.dropped() == 0 {
            f.push(&down(i), None, Time::ZERO);
            i += 1;
            assert!(i < 100_000);
        }
        assert!(t.elapsed() < Duration::from_secs(1), "never blocks");
        assert!(f.pending() > FIFO_BUFFER - LINE_MAX);
        // The reader goes away: EPIPE; the rest of a cut line is discarded. It read nothing:
        // every line in the pipe is lost, and the line cut short.
        let in_pipe = f.written + u64::from(f.head_sent > 0);
        let dropped = f.dropped();
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(rd) };
        let later = Time::ZERO.plus(FIFO_RETRY);
        let st = f.flush(later);
        assert_eq!(st, FifoStatus::Failed(libc::EPIPE));
        assert!(in_pipe > 100, "{in_pipe}");
        assert_eq!(f.take_lost(), in_pipe);
        assert_eq!(f.dropped(), dropped + in_pipe);
        assert!(
            f.pending() == 0 || f.buf[..f.pending()].starts_with(b"event="),
            "starts at a line"
        );
    }

    /// Opens `file` (a FIFO) for reading without blocking.
    fn fifo_reader(file: &TempFile) -> OwnedFd {
        let c = std::ffi::CString::new(file.arg()).unwrap();
        // SAFETY: open with a NUL-terminated path.
        let rd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
        assert!(rd >= 0);
        // SAFETY: just opened, ours.
        unsafe { OwnedFd::from_raw_fd(rd) }
    }

    /// Reads exactly `n` bytes from the pipe (they are there already).
    fn read_exactly(rd: &OwnedFd, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        // SAFETY: reads into our own buffer of `n` bytes.
        let r = unsafe { libc::read(rd.as_raw_fd(), got.as_mut_ptr().cast(), n) };
        assert_eq!(r, n as isize);
        got
    }

    /// A reader that reads `read` bytes of 7 lines of `len` bytes, then closes: the next write
    /// gets EPIPE and the lines left in the pipe (a line read in part among them) are dropped.
    fn lost_after(read: usize) -> (u64, u64, usize) {
        let file = TempFile::new("fifo-lost");
        mkfifo(&file);
        let rd = fifo_reader(&file);
        let mut f = EventFifo::new(&file.arg()).unwrap();
        for i in 0..7 {
            let want = if i == 0 {
                FifoStatus::Opened
            } else {
                FifoStatus::Same
            };
            assert_eq!(f.push(&down(i), None, Time::ZERO), (true, want));
        }
        assert_eq!((f.pending(), f.written), (0, 7));
        let got = read_exactly(&rd, read);
        assert!(String::from_utf8(got).unwrap().starts_with("event=down"));
        drop(rd);
        let (kept, st) = f.push(&down(7), None, Time::ZERO);
        assert!(kept, "the new line waits for the next reader");
        assert_eq!(st, FifoStatus::Failed(libc::EPIPE));
        assert_eq!(f.pending_lines(), 1);
        (f.take_lost(), f.dropped(), f.pending())
    }

    /// Lines in the pipe when its reader goes away are counted as dropped, a line it read in
    /// part too.
    #[test]
    fn fifo_lines_left_in_the_pipe_are_counted() {
        let mut one = Vec::new();
        write_event_line(&mut one, &down(0), None).unwrap();
        let len = one.len();
        // Two lines read, five left.
        let (lost, dropped, pending) = lost_after(2 * len);
        assert_eq!((lost, dropped, pending), (5, 5, len));
        // A line and a half read: the half-read line is lost too.
        let (lost, dropped, _) = lost_after(len + len / 2);
        assert_eq!((lost, dropped), (6, 6));
    }

    /// After more lines than the ring holds went through, the lengths of the newest lines
    /// still tell the lines left in the pipe.
    #[test]
    fn fifo_lines_left_after_the_ring_wrapped() {
        let file = TempFile::new("fifo-wrap");
        mkfifo(&file);
        let rd = fifo_reader(&file);
        let mut f = EventFifo::new(&file.arg()).unwrap();
        let mut one = Vec::new();
        write_event_line(&mut one, &down(0), None).unwrap();
        let len = one.len();
        let mut total = 0;
        let n = FIFO_RING as u64 + 720;
        for i in 0..n {
            // Lines of the same length (one-digit failure counts).
            assert!(f.push(&down(i % 10), None, Time::ZERO).0);
            assert_eq!(f.pending(), 0);
            total += len;
            // Every 50 lines, the reader reads what is there.
            if i % 50 == 49 {
                read_exactly(&rd, total);
                total = 0;
            }
        }
        // The lines since the last read are left: n % 50 of them.
        let left = n % 50;
        assert!(left > 0);
        assert_eq!(total, left as usize * len);
        drop(rd);
        let (_, st) = f.push(&down(0), None, Time::ZERO);
        assert_eq!(st, FifoStatus::Failed(libc::EPIPE));
        assert_eq!(f.take_lost(), left);
    }

    // ---------------------------------------------------------------------------------------
    // Tests for the children's output
    // ---------------------------------------------------------------------------------------

    #[derive(Default)]
    struct Record {
        lines: Vec<(u32, EventKind, String)>,
        discarded: Vec<(u32, u64, u64)>,
        failed: Vec<(u32, i32)>,
    }

    impl NotifySink for Record {
        fn spawn_failed(&mut self, cmd: u32, program: &[u8], _: &Event, errno: i32) {
            assert!(!program.is_empty());
            self.failed.push((cmd, errno));
        }
        fn output(&mut self, cmd: u32, program: &[u8], ev: &Event, line: &[u8]) {
            assert_eq!(program, b"/bin/sh");
            self.lines
                .push((cmd, ev.kind, String::from_utf8_lossy(line).into_owned()));
        }
        fn output_discarded(
            &mut self,
            cmd: u32,
            program: &[u8],
            _: &Event,
            lines: u64,
            bytes: u64,
        ) {
            assert_eq!(program, b"/bin/sh");
            self.discarded.push((cmd, lines, bytes));
        }
    }

    /// Polls with `rec` until nothing waits or runs.
    fn drain_into(n: &mut Notifier, rec: &mut Record) {
        let clock = Clock::new();
        let start = Instant::now();
        loop {
            n.poll_with(clock.now(), rec);
            if n.queued() == 0 && n.running() == 0 {
                return;
            }
            assert!(start.elapsed() < WAIT_MAX, "gave up: {n:?}");
            std::thread::sleep(TICK);
        }
    }

    /// stdout and stderr reach the sink line by line, named by command and event; past the
    /// first lines, and past the length of a line, output is counted and discarded, and a
    /// command that prints megabytes runs to its end.
    #[test]
    fn output_is_passed_on_in_bounded_lines() {
        let file = TempFile::new("output");
        let cmds = [
            sh(r#"echo "out $LVSMON_EVENT"; echo err >&2; printf 'no newline'"#, &file),
            sh(
                "i=0; while [ $i -lt 15 ]; do echo line$i; i=$((i+1)); done; head -c 3000000 /dev/zero | tr '\\0' x; echo; echo done > \"$1\"",
                &file,
            ),
        ];
        let mut n = notifier(&cmds, 2, 4, Duration::from_secs(30));
        assert!(n.push(0, &event(EventKind::Up, Some("192.168.1.1:80"))));
        assert!(n.push(1, &event(EventKind::Down, Some("192.168.1.2:80"))));
        let mut rec = Record::default();
        drain_into(&mut n, &mut rec);
        let of = |cmd: u32| -> Vec<String> {
            rec.lines
                .iter()
                .filter(|(c, _, _)| *c == cmd)
                .map(|(_, _, l)| l.clone())
                .collect()
        };
        assert_eq!(of(0), ["out up", "err", "no newline"]);
        assert!(rec
            .lines
            .iter()
            .all(|(c, k, _)| (*c == 0) == (*k == EventKind::Up)));
        let want: Vec<String> = (0..10).map(|i| format!("line{i}")).collect();
        assert_eq!(of(1), want);
        assert_eq!(file.read(), "done\n", "the command ran to its end");
        // Lines 10 to 14 (7 bytes each with the newline), the 3,000,000 x and its newline.
        assert_eq!(rec.discarded, [(1, 6, 5 * 7 + 3_000_001)]);
        assert!(rec.failed.is_empty());
        assert!(n.outputs.iter().all(|o| o.fd == -1));
    }

    /// A held notifier queues but starts nothing until released.
    #[test]
    fn held_notifier_starts_nothing() {
        let cmds = vec![vec![b"/bin/true".to_vec()]];
        let mut n = notifier(&cmds, 2, 4, Duration::from_secs(30));
        n.hold(true);
        assert!(n.push(0, &event(EventKind::Up, None)));
        assert_eq!(n.poll(Time::ZERO).spawned, 0);
        assert_eq!(n.queued(), 1);
        n.hold(false);
        assert_eq!(n.poll(Time::ZERO).spawned, 1);
        drain(&mut n);
    }
}
