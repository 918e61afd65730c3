//! The daemon: one thread, one `mio::Poll`, every check, decision, table change and
//! notification driven from [`Daemon::turn`].
//!
//! The loop wires the rooms together: [`Probes`] (the probe driver: checks, their timer
//! wheel and receive buffers) gives each check's result to the history and to [`Table`] (the
//! policy: weights, drain, quorum, sorry server, read-back reconciliation), whose events go
//! to the log, `notify-fifo` and the notifier (through [`crate::sinks`]), and whose IPVS
//! operations the loop hands to the [`Ipvs`] side at the end of the turn. The control server,
//! the state saver and systemd's notifications hang off the same turn; what the daemon says
//! in reply (control replies, the SIGUSR1 status dump, a reload's answer) is rendered by
//! [`crate::report`], read-only.
//!
//! Everything the loop will ever need is allocated in [`Daemon::new`], sized from the
//! [`Plan`]: the probes (one per distinct check) and their timer wheel, the per-real
//! decision state and `within` rings, the receive-buffer pool, the notify queue, the log line
//! buffer and the `Events` array. After that, a turn allocates nothing: no `String`, no `Vec`
//! growth, no `format!` (the counting-allocator test binary `tests/no_alloc.rs` holds us to
//! it).
//!
//! Work per turn is proportional to what happened (sockets ready, deadlines due, results
//! recorded), never to the number of real servers: a result touches only the reals its
//! probe serves, a quorum check only a counter of its virtual.
//!
//! Only this module reads the clock: the rooms get the time of the turn passed in. Tokens:
//! [`source`] is the one place they are told apart.

mod reload;

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;

use crate::clock::{micros, Clock, Time};
use crate::config::Plan;
use crate::control::{Command, Server};
use crate::history::History;
use crate::ids::{ProbeId, RealId};
use crate::ipvs::{Ipvs, IpvsEvent, Op, OpResult};
use crate::log::{Level, Log};
use crate::monitor::health::State;
use crate::monitor::phase::Probe;
use crate::monitor::probes::{self, prefetch_lines, Probes};
use crate::notify::{EventFifo, Notifier};
use crate::persist::Persist;
use crate::plugins::Verdict;
use crate::sd_notify::{SdCounters, SdNotify};
use crate::sinks::{fifo_status, NotifyLog, Sinks};
use crate::state::Saver;
pub use crate::stats::Stats;
use crate::table::Table;

/// Token of the signal pipe.
const SIGNALS: Token = Token(usize::MAX);
/// Token of the IPVS netlink socket.
const NETLINK: Token = Token(usize::MAX - 1);
/// Token of the waker a reload's helper thread uses (below the control server's listeners;
/// checked before [`Server::owns`], whose connection bit it shares).
const RELOAD: Token = Token(usize::MAX - 4);
/// The loop's timer ([`Alarm`]).
const ALARM: Token = Token(usize::MAX - 5);
/// The log's output descriptor, writable again after it was full ([`Log::on_writable`]).
/// Checked before [`Server::owns`], whose connection bit it shares.
const LOG: Token = Token(usize::MAX - 16);
/// The loop woke this much later than it asked to (it was stopped, the machine paused, or
/// it could not run): a stall. The checks it could not watch get back the time they lost,
/// and what is ready is read before any deadline is expired. Far above the loop's own
/// delays (a turn takes well under a millisecond a check; the wake is to the microsecond),
/// below the timeouts of seconds that checks usually have.
const STALL_MARGIN_US: u64 = 500_000;
/// The loop woke this long after its last wake: the readiness its poll returned may be
/// older than its clock. A SIGSTOP that reaches the loop as readiness ends its wait brings
/// no EINTR: the poll returns that readiness, the process stops on its way out, and once
/// continued the loop holds readiness without what arrived meanwhile. So it polls again
/// before it expires any deadline. Far above a busy loop's gaps between wakes (well under a
/// millisecond); an idle loop pays one poll with no wait a wake.
const READ_FIRST_US: u64 = 100_000;

/// What a readiness event is for.
enum Source {
    Signals,
    Netlink,
    Reload,
    Alarm,
    Log,
    /// The control socket or the metrics server (a listener or a connection).
    Control,
    /// A probe's socket: the probe and its socket generation.
    Probe(ProbeId, u32),
    /// The TLS helper's record socket ([`crate::tls::TOKEN`]).
    Tls,
}

/// The token map, the one place the loop's tokens are told apart: a probe's token is its
/// index with its socket generation in the high bits ([`Probe::token`]); the top of the
/// token space is the daemon's own sources. [`RELOAD`] and [`LOG`] are checked before
/// [`Server::owns`], whose connection bit they share.
#[inline]
fn source(t: Token) -> Source {
    match t {
        SIGNALS => Source::Signals,
        NETLINK => Source::Netlink,
        RELOAD => Source::Reload,
        ALARM => Source::Alarm,
        LOG => Source::Log,
        crate::tls::TOKEN => Source::Tls,
        t if Server::owns(t) => Source::Control,
        t => {
            let (id, gen) = Probe::untoken(t);
            Source::Probe(ProbeId(id), gen)
        }
    }
}

/// Settings that are not in the config file.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a notify command may run before it is killed (lvsmon(8), NOTIFY: 30 s).
    pub notify_kill_after: Duration,
    /// Receive buffers in the pool (0 = sized from the plan).
    pub buffers: usize,
    /// Install signal handlers (the binary does; test harnesses may not want to).
    pub signals: bool,
    /// The control socket's path (`--socket`), if it is to be served.
    pub socket: Option<std::path::PathBuf>,
    /// Where to serve `/metrics` (`--metrics`), if at all.
    pub metrics: Option<SocketAddr>,
    /// Where state survives restarts (`--state-dir`), if anywhere.
    pub state_dir: Option<std::path::PathBuf>,
    /// How often state is saved while running (also on SIGTERM).
    pub state_interval: Duration,
    /// The configuration file, read again on SIGHUP and `lvsmon reload` (`None`: reload is
    /// refused).
    pub file: Option<std::path::PathBuf>,
    /// `--interval`, applied again at every reload.
    pub interval: Option<Duration>,
    /// `--reload-timeout`: a reload whose reading and planning takes longer is abandoned.
    pub reload_timeout: Duration,
    /// systemd's notification socket and watchdog, from the environment
    /// ([`crate::sd_notify::take_env`]); `None`: no notifications.
    pub systemd: Option<crate::sd_notify::Config>,
    /// Descriptor numbers taken before the daemon opened its own, as startup counted them
    /// ([`crate::fdbudget::FdBudget::taken`]): a reload sizes its open-file budget with them.
    pub fd_taken: u64,
    /// The clock the loop reads (`None`: the system's monotonic clock, from
    /// [`Daemon::new`]); tests give a [`Clock::manual`] one to set the time themselves.
    pub clock: Option<Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            notify_kill_after: Duration::from_secs(30),
            buffers: 0,
            signals: true,
            socket: None,
            metrics: None,
            state_dir: None,
            state_interval: Duration::from_secs(300),
            file: None,
            interval: None,
            reload_timeout: reload::DEFAULT_RELOAD_TIMEOUT,
            systemd: None,
            fd_taken: 3,
            clock: None,
        }
    }
}

/// The daemon's state apart from the poller, so dispatch can borrow the registry and the
/// state at once.
struct Core {
    /// The probe driver: probes, their timer wheel, buffers and sockets in flight.
    probes: Probes,
    /// The policy: reals, virtuals, their decisions and the IPVS operations they need.
    table: Table,
    /// Time of the current turn.
    now: Time,
    /// Unix time (µs) at daemon time zero, for timestamps people read.
    wall_origin_us: u64,
    /// The state saver (state across restarts).
    persist: Persist,
    /// Every real's check history (lvsmon(8), HISTORY).
    history: History,
    notifier: Option<Notifier>,
    /// `notify-fifo`: every event line, in order, for another program.
    fifo: Option<EventFifo>,
    /// systemd's notification socket (readiness, reload, stop, watchdog pings).
    systemd: Option<SdNotify>,
    log: Log,
    stats: Stats,
    stop: bool,
    /// The `notify` commands and `notify-max` the notifier was built with (a reload that
    /// keeps them keeps the notifier, its queue and its children).
    notify_cmds: Vec<Vec<Vec<u8>>>,
    notify_max: u32,
    /// A notifier replaced by a reload, kept until its queued events have run and its
    /// children are reaped.
    retiring: Vec<Notifier>,
    /// Counters of notifiers that are gone (so the totals never go backwards).
    notify_retired: crate::notify::NotifyCounters,
    /// The next real of a SIGUSR1 status dump still being written: the dump goes on while
    /// the log has room, and waits for its reader otherwise (never dropped).
    status_next: Option<usize>,
    /// Reload requests and results (SIGHUP, `lvsmon reload`).
    reload: Reload,
    /// `track-file`, and the event count when it was last brought up to date.
    track: Option<crate::track::TrackFile>,
    track_events: u64,
    /// `sync-daemon` lines, compared at a reload.
    sync_daemons: Vec<crate::config::director::SyncDaemon>,
}

/// Reloading: the file is read and planned on a helper thread, so a large configuration
/// never stalls the checks; the loop applies the plan when the thread wakes it.
#[derive(Default)]
struct Reload {
    /// The configuration file and the `--interval` override it was loaded with.
    file: Option<std::path::PathBuf>,
    interval: Option<Duration>,
    /// Wakes the loop when a plan (or an error) is ready.
    waker: Option<std::sync::Arc<mio::Waker>>,
    /// Where the helper thread's answer arrives, while one runs.
    rx: Option<std::sync::mpsc::Receiver<(Result<reload::Loaded, String>, Duration)>>,
    /// What the helper thread builds the new core with.
    opts: Option<Options>,
    clock: Option<Clock>,
    /// Requests made, the request the running (or last) load answers, and the last one
    /// answered; a request made while a load runs starts another one after it.
    requested: u64,
    started: u64,
    finished: u64,
    /// What the last reload did, for `lvsmon reload` (one or two lines).
    result: String,
    /// When the running load is abandoned (`--reload-timeout`), while one runs.
    deadline: Option<Time>,
    /// Set to tell the running load, once abandoned, to stop at its next step.
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Loading threads still running, abandoned ones included.
    loaders: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// The daemon.
pub struct Daemon {
    poll: Poll,
    events: Events,
    signals: Option<Signals>,
    clock: Clock,
    ipvs: Box<dyn Ipvs>,
    server: Option<Server>,
    /// Wakes the loop at its next deadline to the microsecond (`None`: the poll's own
    /// timeout, in whole milliseconds, does).
    alarm: Option<Alarm>,
    /// When the loop last woke: a wake later than this plus the wait it asked for, by more
    /// than [`STALL_MARGIN_US`], is a stall; one over [`READ_FIRST_US`] after it polls again
    /// before any deadline is expired.
    awake: Time,
    /// Turns left that only read readiness (a zero wait, no deadline expired), after a
    /// wake long after the last one or a wait cut short by a signal, until a poll returns
    /// less than a full batch.
    catch_up: u32,
    /// The readiness in hand may be older than the clock's reading (the last wait was cut
    /// short by a signal and returned nothing, or the wake came long after the last one):
    /// poll again first.
    repoll: bool,
    core: Core,
}

/// A `timerfd` the loop sleeps on. `epoll_wait` counts its timeout in whole milliseconds,
/// rounded up, on top of the wheel's 1 ms ticks: a check due at a tick would start up to a
/// further millisecond late, about half a millisecond on average. The timer fires at the
/// tick itself.
struct Alarm {
    fd: std::os::fd::OwnedFd,
    /// The daemon's clock, whose times the timer is set to.
    clock: Clock,
    /// When it is set to fire, if it is.
    armed: Option<Time>,
}

impl Alarm {
    fn new(registry: &mio::Registry, clock: Clock) -> io::Result<Alarm> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: timerfd_create returns a new descriptor or -1; the OwnedFd owns it.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        registry.register(
            &mut mio::unix::SourceFd(&fd.as_raw_fd()),
            ALARM,
            Interest::READABLE,
        )?;
        Ok(Alarm {
            fd,
            clock,
            armed: None,
        })
    }

    /// Sets the timer to fire at `at` (no system call if it already is). False if the
    /// kernel refused: the poll's timeout is then all there is.
    fn set(&mut self, at: Time) -> bool {
        use std::os::fd::AsRawFd;
        if self.armed == Some(at) {
            return true;
        }
        let abs = self.clock.monotonic_ns_at(at);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (abs / 1_000_000_000) as libc::time_t,
                tv_nsec: (abs % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: settime reads the itimerspec we own; no old value is asked for.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        self.armed = (rc == 0).then_some(at);
        rc == 0
    }

    /// The timer fired. Its count is left unread: every `timerfd_settime` clears it, and the
    /// kernel wakes the descriptor's waiters at every expiry, so with edge-triggered epoll
    /// each expiry of the next setting is a new event all the same (one `read` a turn fewer).
    fn fired(&mut self) {
        self.armed = None;
    }
}

/// The loop woke `gap` µs after its last wake (over [`READ_FIRST_US`]: it may have stood
/// still after its poll returned), or a signal cut its wait short (`interrupted`: the poll
/// returned nothing): it polls again, and from then on reads what is ready, a batch a turn,
/// before it expires any deadline (see [`caught_up`]). The turns that may take are bounded:
/// as many as full batches of every check's readiness, and four.
#[cold]
#[inline(never)]
fn woke_late(core: &Core, state: (&mut u32, &mut bool), cap: usize, gap: u64, interrupted: bool) {
    let (catch_up, repoll) = state;
    if gap > READ_FIRST_US || interrupted {
        if *catch_up == 0 {
            *catch_up = (core.probes.len() / cap.max(1)) as u32 + 4;
        }
        *repoll = true;
    }
}

/// A turn while catching up, after its readiness was handled: true when the deadlines may
/// be expired now, that is once a poll, not cut short, returned less than a full batch
/// (nothing that was ready is left unread), or the turns allowed are used up.
#[cold]
#[inline(never)]
fn caught_up(catch_up: &mut u32, repoll: &mut bool, events: &Events) -> bool {
    let full = events.iter().count() >= events.capacity();
    *catch_up = if std::mem::take(repoll) || full {
        *catch_up - 1
    } else {
        0
    };
    *catch_up == 0
}

/// Rounds a wait up to whole milliseconds, as `epoll_wait` counts.
fn wait_for(now: Time, until: Time) -> Duration {
    let us = until.micros_since(now);
    Duration::from_millis(us.div_ceil(1000))
}

impl Daemon {
    /// Builds every table the loop needs from `plan`. The plan is consumed: afterwards the
    /// daemon keeps only compact copies of what it uses.
    ///
    /// # Errors
    /// The poller, the signal pipe or the notify setup could not be created.
    pub fn new(
        plan: Plan,
        mut ipvs: Box<dyn Ipvs>,
        log: Log,
        opts: &Options,
    ) -> io::Result<Daemon> {
        let poll = Poll::new()?;
        ipvs.register(poll.registry(), NETLINK)?;
        let clock = opts.clock.unwrap_or_default();
        let signals = if opts.signals {
            let mut s = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1])?;
            poll.registry()
                .register(&mut s, SIGNALS, Interest::READABLE)?;
            Some(s)
        } else {
            None
        };
        let mut log = log;
        // Without the registration the log still never blocks: it tries again at each line.
        let _ = log.register(poll.registry(), LOG);
        let systemd = opts
            .systemd
            .as_ref()
            .and_then(|c| SdNotify::open_logged(c, clock.monotonic_origin_us(), &mut log));
        let mut core = Core::new(plan, opts, log, Time::ZERO)?;
        core.systemd = systemd;
        core.reload.waker = Some(std::sync::Arc::new(mio::Waker::new(
            poll.registry(),
            RELOAD,
        )?));
        core.reload.file = opts.file.clone();
        core.reload.interval = opts.interval;
        core.reload.opts = Some(opts.clone());
        core.reload.clock = Some(clock);
        // Until `new` returns, an error drops the server, and with it the control socket's
        // file it created.
        let mut server = if opts.socket.is_some() || opts.metrics.is_some() {
            Some(Server::new(
                opts.socket.as_deref(),
                opts.metrics,
                poll.registry(),
            )?)
        } else {
            None
        };
        // After the control socket is ours (a second lvsmon stops there), the state: the
        // saver locks the directory (a second lvsmon given only the same --state-dir stops
        // here), then the file is read.
        if let Some(dir) = &opts.state_dir {
            let saver = Saver::new(dir, core.history.max_encoded_len())?;
            core.persist.open(saver, dir, &mut core.log);
            core.persist
                .load(dir, &mut core.table, &mut core.history, &mut core.log);
        }
        // Without a timer (no timerfd) the loop still runs, waking in whole milliseconds.
        let alarm = Alarm::new(poll.registry(), clock).ok();
        if let Some(s) = server.as_mut() {
            s.keep_socket_file();
        }
        Ok(Daemon {
            poll,
            // At most 128 readiness events a turn, so due checks start between batches
            // (1024 a turn doubled the p99 start lateness at 100,000 reals).
            events: Events::with_capacity(128),
            signals,
            alarm,
            awake: clock.now(),
            catch_up: 0,
            repoll: false,
            clock,
            ipvs,
            server,
            core,
        })
    }

    /// Puts the configured services and destinations in the table (lvsmon(8), IPVS: create
    /// what is missing, adopt what is there; destinations not yet checked keep the weight
    /// they have, and new ones come in at weight 0 until their first check decides), then
    /// tells systemd the daemon is ready: the first round of checks is on the timer wheel.
    pub fn startup(&mut self) {
        // The state saver's helper thread starts here, not in `new`: after a privilege drop
        // (`--user`, `--chroot`), which must find the process with one thread. It wakes the
        // loop through the reload's waker when a save ends (a parked `drain` waits for it;
        // the reload side ignores a wake with no answer for it).
        let wake = self.core.reload.waker.clone();
        self.core.persist.start_sync(wake, &mut self.core.log);
        let dry = self.ipvs.is_dry_run();
        let metrics = self.server.as_ref().and_then(|s| s.metrics_addr());
        let ipvs = &mut self.ipvs;
        let c = &mut self.core;
        if let Some(mut l) = c.log.line(Level::Notice) {
            let _ = write!(
                l,
                "msg=\"starting\" virtuals={} reals={} checks={} buffers={}x{} ipvs={}",
                c.table.virtuals().len(),
                c.table.reals().len(),
                c.probes.len(),
                c.probes.buffers().0,
                c.probes.buffers().1,
                if dry { "dry-run" } else { "netlink" }
            );
            if let Some(m) = metrics {
                let _ = write!(l, " metrics=http://{m}/metrics");
            }
        }
        c.table
            .seed_dest_extras(|key, addr| ipvs.existing_dest(key, addr));
        c.table.adopt_at_start(
            |key| ipvs.existing_service(key),
            |key, addr| ipvs.existing_weight(key, addr),
        );
        ipvs.forget_snapshot();
        self.drain_outbox();
        // From here on a line that finds the log full is dropped rather than waited for.
        self.core.log.loop_started();
        let now = self.clock.now();
        self.awake = now;
        self.core.ready(now);
    }

    /// Hands the operations decided so far to the IPVS side, and whatever it reports at
    /// once back to the core (which may decide more: bounded rounds).
    /// What the IPVS side has no room for yet stays in the outbox for a later turn, and an
    /// edit of a service not read for a while waits for a read of it (`table::fresh`).
    fn drain_outbox(&mut self) {
        let now = self.clock.now();
        for _ in 0..4 {
            while self.ipvs.room() > 0 {
                let ipvs = &mut self.ipvs;
                let (table, mut out) = self.core.split();
                let Some(op) = table.next_fresh_op(now, &mut out, |key| ipvs.start_read(key))
                else {
                    break;
                };
                if let Some(res) = self.ipvs.submit(op) {
                    self.core.op_done(op, res);
                }
            }
            let core = &mut self.core;
            self.ipvs.flush(&mut |ev| core.on_ipvs(ev));
            let table = &self.core.table;
            if table.pending_ops() == 0 || self.ipvs.room() == 0 || table.read_deadline().is_some()
            {
                break;
            }
        }
    }

    /// Runs until SIGTERM or SIGINT.
    ///
    /// # Errors
    /// The poller failed (never for a real server's misbehaviour).
    pub fn run(&mut self) -> io::Result<()> {
        self.startup();
        while !self.core.stop {
            self.turn(None)?;
        }
        // No `exec` program outlives the daemon.
        self.core.probes.stop_execs();
        if let Some(s) = self.core.systemd.as_mut() {
            s.stopping();
        }
        let c = &mut self.core;
        c.persist
            .save_now(c.now, c.wall_origin_us, &c.table, &c.history, &mut c.log);
        // The last lines reach a reader that is slow (the ring is written out first, so the
        // stopping line finds room in it), but a reader that is gone does not hold up the
        // exit for long.
        let end = std::time::Instant::now() + crate::log::EXIT_FLUSH;
        self.core.log.drain_until(end);
        if let Some(mut l) = self.core.log.line(Level::Notice) {
            let _ = write!(
                l,
                "msg=\"stopping\" checks={} transitions={}",
                self.core.stats.checks, self.core.stats.transitions
            );
        }
        self.core.log.drain_until(end);
        Ok(())
    }

    /// True once a stop was asked for (SIGTERM, SIGINT).
    pub fn stopping(&self) -> bool {
        self.core.stop
    }

    /// Asks the loop to stop after the current turn.
    pub fn request_stop(&mut self) {
        self.core.stop = true;
    }

    /// Tells systemd the daemon is ready (`READY=1`, with a status line and `MAINPID=`):
    /// sent by [`Daemon::startup`], and to be sent when a reload has finished, whether or not
    /// the new configuration was taken. Does nothing without `NOTIFY_SOCKET`.
    pub fn ready(&mut self) {
        let now = self.clock.now();
        self.core.ready(now);
    }

    /// Tells systemd a reload has started (`RELOADING=1` with `MONOTONIC_USEC=`);
    /// [`Daemon::ready`] must follow. Does nothing without `NOTIFY_SOCKET`.
    pub fn reloading(&mut self) {
        let now = self.clock.now();
        self.core.reloading(now);
    }

    /// What was sent to systemd, if it is being notified.
    pub fn systemd_counters(&self) -> Option<SdCounters> {
        self.core.systemd.as_ref().map(SdNotify::counters)
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.core.stats
    }

    /// The notify counters (all zero without a `notify` command).
    pub fn notify_counters(&self) -> crate::notify::NotifyCounters {
        let mut c = self.core.notify_retired;
        let live = self.core.notifier.iter().chain(self.core.retiring.iter());
        for n in live {
            c.add(&n.counters());
        }
        c
    }

    /// The metrics endpoint's address, if served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.metrics_addr())
    }

    /// Counters of the control and metrics servers.
    pub fn server_stats(&self) -> crate::control::ServerStats {
        self.server.as_ref().map(|s| s.stats).unwrap_or_default()
    }

    /// The state saver, if there is a state directory (startup uses it around the privilege
    /// drop).
    pub fn saver(&self) -> Option<&Saver> {
        self.core.persist.saver()
    }

    /// The log, for lines startup writes between [`Daemon::new`] and [`Daemon::run`].
    pub fn log(&mut self) -> &mut Log {
        &mut self.core.log
    }

    /// Renders the next piece of the `/metrics` reply (HTTP head included) into `out`, as
    /// the metrics server does for a connection: start with `cursor` 0 and call again until
    /// it returns true. Returns the bytes written and whether the page is complete. For
    /// measuring the page without a socket (`benches/metrics.rs`).
    pub fn render_metrics(&mut self, cursor: &mut u64, out: &mut [u8]) -> (usize, bool) {
        use crate::control::{Command, Render};
        let now = self.core.now;
        self.core
            .render(&Command::Metrics { head: false }, b"", cursor, out, now)
    }

    /// Renders the next piece of the reply to `GET target` on the metrics address (the
    /// status page: `/`, `/virtual/ID`, `/status.json`), as [`Daemon::render_metrics`] does
    /// for `/metrics`. For measuring the page without a socket (`bench/page.rs`).
    pub fn render_page(&mut self, target: &str, cursor: &mut u64, out: &mut [u8]) -> (usize, bool) {
        use crate::control::{Command, Kind, Render};
        let mut line = [0u8; 256];
        let n = {
            let mut c = std::io::Cursor::new(&mut line[..]);
            let _ = write!(c, "GET {target} HTTP/1.1");
            c.position() as usize
        };
        let cmd = Command::parse(Kind::Metrics, &line[..n]);
        let now = self.core.now;
        self.core.render(&cmd, &line[..n], cursor, out, now)
    }

    /// The check history, to fill with results in a benchmark (`bench/page.rs`) and the
    /// daemon's Unix time now (seconds).
    pub fn history_mut(&mut self) -> (&mut History, u64) {
        let unix = (self.core.wall_origin_us + self.core.now.0) / 1_000_000;
        (&mut self.core.history, unix)
    }

    /// State saves completed (all kinds).
    pub fn state_saves(&self) -> u64 {
        self.core.persist.saver().map_or(0, |s| s.saved)
    }

    /// The TLS helper's pid (0: none running) and how many times it was started.
    pub fn tls_helper(&self) -> (i32, u64) {
        self.core.probes.tls_helper()
    }

    /// How often a check had to queue for a receive buffer.
    pub fn buffer_waits(&self) -> u64 {
        self.core.probes.buffer_waits()
    }

    /// The last duration of each of real `i`'s checks, in µs, in check-line order (`None`
    /// before its first verdict).
    pub fn check_durations(&self, i: usize) -> Vec<Option<u64>> {
        self.core.probes.check_durations(RealId::of(i)).collect()
    }

    /// `exec` programs started and spawns that failed, and agent replies and silences.
    pub fn exec_agent_counts(&self) -> (u64, u64, u64, u64) {
        self.core.probes.exec_agent_counts()
    }

    /// Real `i`'s state, consecutive failures and checks, for tests and status output.
    pub fn real_state(&self, i: usize) -> (State, u32, u64) {
        let r = &self.core.table.reals()[i];
        (r.health.state, r.health.fails, r.checks)
    }

    /// The weight real `i` has in the IPVS table as the loop knows it (`None`: not in it),
    /// for tests.
    pub fn real_weight(&self, i: usize) -> Option<u32> {
        self.core.table.reals()[i].table()
    }

    /// One turn: wait for readiness or the next deadline (at most `max_wait`), then handle
    /// everything that is due.
    ///
    /// # Errors
    /// `epoll_wait` failed for a reason other than a signal.
    pub fn turn(&mut self, max_wait: Option<Duration>) -> io::Result<()> {
        let now = self.clock.now();
        let mut next = self.core.probes.next_expiry();
        let notifiers = self.core.notifier.iter().chain(self.core.retiring.iter());
        for n in notifiers.filter_map(|n| n.next_deadline()) {
            next = Some(next.map_or(n, |w| w.min(n)));
        }
        if let Some(f) = self.core.fifo.as_ref().and_then(|f| f.next_deadline()) {
            next = Some(next.map_or(f, |w| w.min(f)));
        }
        if let Some(r) = self.core.table.next_resync(self.ipvs.is_dry_run()) {
            next = Some(next.map_or(r, |w| w.min(r)));
        }
        // Edits waiting for a read of their service go when it ends or at this time.
        if let Some(r) = self.core.table.read_deadline() {
            next = Some(next.map_or(r, |w| w.min(r)));
        }
        // A slow-start ramp's next step, a weight held by the one-edit-a-second limit.
        if let Some(r) = self.core.table.next_weigh() {
            next = Some(next.map_or(r, |w| w.min(r)));
        }
        if let Some(d) = self.server.as_ref().and_then(|s| s.next_deadline()) {
            next = Some(next.map_or(d, |w| w.min(d)));
        }
        if let Some(d) = self.core.reload.deadline {
            next = Some(next.map_or(d, |w| w.min(d)));
        }
        // An idle loop still wakes to ping systemd's watchdog.
        if let Some(p) = self.core.systemd.as_ref().and_then(|s| s.next_ping()) {
            next = Some(next.map_or(p, |w| w.min(p)));
        }
        let mut timeout = next.map(|t| wait_for(now, t));
        if let (Some(a), Some(t)) = (self.alarm.as_mut(), next) {
            if t > now && a.set(t) {
                // The alarm wakes the loop at `t`; the poll's timeout only backs it up.
                timeout = Some(wait_for(now, t) + Duration::from_millis(1));
            }
        }
        if self.ipvs.pending()
            || self.core.table.adopt_pending()
            || self.core.table.pending_ops() > 0
        {
            // Requests wait for room in the socket: come back soon.
            timeout = Some(timeout.map_or(Duration::from_millis(5), |t| {
                t.min(Duration::from_millis(5))
            }));
        }
        if let Some(m) = max_wait {
            timeout = Some(timeout.map_or(m, |t| t.min(m)));
        }
        if self.catch_up > 0 {
            // Catching up: what is ready first, deadlines after.
            timeout = Some(Duration::ZERO);
        }
        let interrupted = match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => false,
            // A signal, or SIGCONT after a stop: the wait ends with no readiness returned.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) => return Err(e),
        };
        let now = self.clock.now();
        let core = &mut self.core;
        core.now = now;
        core.stats.turns += 1;
        let registry = self.poll.registry();
        // Long after the last wake: poll again before expiring anything (see READ_FIRST_US);
        // a stall if later than the wait asked for by over the margin. A busy loop wakes well
        // within READ_FIRST_US of its last wake: one comparison a turn.
        let gap = now.micros_since(self.awake);
        self.awake = now;
        if gap > READ_FIRST_US || interrupted {
            let cap = self.events.capacity();
            let late = gap.saturating_sub(timeout.map_or(u64::MAX, micros));
            woke_late(
                core,
                (&mut self.catch_up, &mut self.repoll),
                cap,
                gap,
                interrupted,
            );
            if late > STALL_MARGIN_US {
                core.stalled(late, registry, now);
            }
        }
        let mut signalled = false;
        let mut reload_ready = false;
        let mut events = self.events.iter().peekable();
        while let Some(ev) = events.next() {
            // The next event's check is most likely a probe's: have its data on the way.
            if let Some(next) = events.peek() {
                core.prefetch(ProbeId(Probe::untoken(next.token()).0));
            }
            match source(ev.token()) {
                Source::Signals => signalled = true,
                Source::Netlink => self.ipvs.on_ready(&mut |e| core.on_ipvs(e)),
                Source::Reload => reload_ready = true,
                Source::Alarm => {
                    if let Some(a) = self.alarm.as_mut() {
                        a.fired();
                    }
                }
                Source::Log => core.log.on_writable(),
                Source::Control => {
                    if let Some(s) = self.server.as_mut() {
                        s.on_ready(ev.token(), registry, core, now);
                    }
                }
                Source::Tls => core.on_tls(registry, now),
                Source::Probe(id, gen) => {
                    let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                    let writable = ev.is_writable() || ev.is_write_closed() || ev.is_error();
                    let trouble = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
                    core.on_ready(id, gen, readable, writable, trouble, registry, now);
                }
            }
        }
        if signalled {
            if let Some(s) = self.signals.as_mut() {
                let mut child = false;
                for sig in s.pending() {
                    child |= sig == SIGCHLD;
                    core.on_signal(sig, now);
                }
                if child {
                    core.reap_execs(registry, now);
                }
            }
        }
        if core.status_next.is_some() {
            core.dump_status_more(now);
        }
        core.run_handed(registry, now);
        let expire =
            self.catch_up == 0 || caught_up(&mut self.catch_up, &mut self.repoll, &self.events);
        if expire {
            core.expire(registry, now);
        }
        if let Some(s) = self.server.as_mut() {
            s.tick(registry, core, now);
        }
        core.poll_notify(now);
        core.poll_track();
        let save_ended = core.persist.step(
            now,
            core.wall_origin_us,
            &core.table,
            &core.history,
            &mut core.log,
        );
        core.poll_weights(now);
        let ipvs = &mut self.ipvs;
        let dry = ipvs.is_dry_run();
        core.table.poll_read_back(now, dry, || ipvs.start_dump());
        // The ping comes from the loop itself, after the turn's work: a loop that hangs
        // stops pinging, and systemd restarts it.
        if let Some(s) = core.systemd.as_mut() {
            s.tick(now);
        }
        self.drain_outbox();
        // A load that overran `--reload-timeout` is answered (abandoned) without its wake.
        if reload_ready || self.core.reload.deadline.is_some_and(|d| now >= d) {
            self.finish_reload();
            // The answer is ready: parked `lvsmon reload` connections get it now, not at the
            // next turn.
            if let Some(s) = self.server.as_mut() {
                s.tick(self.poll.registry(), &mut self.core, now);
            }
        } else if save_ended {
            // A save ended (synced in this thread, without a wake): parked `drain` replies.
            if let Some(s) = self.server.as_mut() {
                s.tick(self.poll.registry(), &mut self.core, now);
            }
        }
        Ok(())
    }
}

impl Core {
    /// Builds every table the loop needs from `plan`, with the first checks spread evenly
    /// over each probe's first interval after `start`. The plan is consumed: afterwards the
    /// core keeps only compact copies of what it uses.
    ///
    /// # Errors
    /// The notify setup could not be created.
    fn new(mut plan: Plan, opts: &Options, log: Log, origin: Time) -> io::Result<Core> {
        let table = Table::new(&plan, origin);

        let history = History::new(&plan.history, &History::intervals(&plan));
        let probes = Probes::new(&mut plan, opts.buffers, origin);

        let notifier = if plan.notifies.is_empty() {
            None
        } else {
            let cap = (4 * plan.reals.len() + 64).min(1 << 20);
            Some(Notifier::new(
                &plan.notifies,
                plan.notify_max.max(1) as usize,
                cap,
                opts.notify_kill_after,
            )?)
        };
        let fifo = match &plan.notify_fifo {
            Some((path, _)) => Some(EventFifo::new(path)?),
            None => None,
        };
        let track = match &plan.director.track_file {
            Some(t) => Some(crate::track::TrackFile::new(t)?),
            None => None,
        };

        Ok(Core {
            probes,
            table,
            now: Time::ZERO,
            wall_origin_us: crate::clock::wall_now_us(),
            persist: Persist::new(opts.state_interval),
            history,
            notifier,
            fifo,
            log,
            stats: Stats::default(),
            stop: false,
            notify_cmds: plan.notifies,
            notify_max: plan.notify_max,
            retiring: Vec::new(),
            notify_retired: crate::notify::NotifyCounters::default(),
            status_next: None,
            reload: Reload::default(),
            systemd: None,
            track,
            track_events: 0,
            sync_daemons: std::mem::take(&mut plan.director.sync_daemons),
        })
    }
}

/// What the probe driver asks of the rest of the daemon: the reals' addresses and health
/// (from the table), where results go (the history, then the table, whose events go to the
/// [`Sinks`]), the log and the counters.
struct Around<'a> {
    table: &'a mut Table,
    history: &'a mut History,
    log: &'a mut Log,
    stats: &'a mut Stats,
    fifo: &'a mut Option<EventFifo>,
    notifier: &'a mut Option<Notifier>,
    wall_origin_us: u64,
    now: Time,
}

impl Around<'_> {
    /// The table, the history, and where the table's events go.
    #[inline]
    fn split(&mut self) -> (&mut Table, &mut History, Sinks<'_>) {
        let out = Sinks {
            log: self.log,
            stats: self.stats,
            fifo: self.fifo,
            notifier: self.notifier,
            now: self.now,
        };
        (self.table, self.history, out)
    }
}

impl probes::Host for Around<'_> {
    #[inline]
    fn addr(&self, r: RealId) -> SocketAddr {
        self.table.addr(r)
    }

    #[inline]
    fn failing(&self, r: RealId) -> bool {
        self.table.failing(r)
    }

    #[inline]
    fn prefetch(&self, r: RealId) {
        if let Some(real) = self.table.real(r) {
            prefetch_lines(real);
        }
    }

    #[inline]
    fn results(&mut self, reals: &[RealId], v: Verdict, latency_us: u64, now: Time) {
        let unix = (self.wall_origin_us + now.0) / 1_000_000;
        let reason = match v {
            Verdict::Pass => None,
            Verdict::Fail(reason, _) => Some(reason),
        };
        let (table, history, mut out) = self.split();
        for &r in reals {
            history.record(r.ix(), unix, latency_us, reason);
            table.record(r, v, latency_us, now, &mut out);
        }
    }

    fn exec_weight(&mut self, reals: &[RealId], w: Option<u32>, now: Time) {
        let (table, _, mut out) = self.split();
        for &r in reals {
            table.exec_weight(r, w, now, &mut out);
        }
    }

    fn agent_said(
        &mut self,
        reals: &[RealId],
        reply: Option<crate::plugins::agent::AgentReply>,
        line: &[u8],
        now: Time,
    ) {
        let (table, _, mut out) = self.split();
        for &r in reals {
            table.agent_said(r, reply, line, now, &mut out);
        }
    }

    #[inline]
    fn log(&mut self) -> &mut Log {
        self.log
    }

    #[inline]
    fn stats(&mut self) -> &mut Stats {
        self.stats
    }
}

impl crate::control::Render for Core {
    fn apply(&mut self, cmd: &Command, _text: &[u8], cursor: &mut u64, _now: Time) {
        match *cmd {
            Command::Drain { on, real, virt } => {
                self.change_reals(
                    crate::report::RealChange::Drain(on),
                    real,
                    virt.as_ref(),
                    cursor,
                );
            }
            Command::SetWeight {
                real,
                virt,
                hand: Some(hand),
            } => self.change_reals(
                crate::report::RealChange::Hand(hand),
                real,
                virt.as_ref(),
                cursor,
            ),
            // The load runs on a helper thread; the connection waits parked until a load
            // that started after this request has been answered.
            Command::Reload => *cursor = crate::control::PARKED | self.request_reload(),
            _ => {}
        }
    }

    fn render(
        &self,
        cmd: &Command,
        text: &[u8],
        cursor: &mut u64,
        out: &mut [u8],
        now: Time,
    ) -> (usize, bool) {
        let view = crate::report::View {
            table: &self.table,
            history: &self.history,
            stats: &self.stats,
            saver: self.persist.saver(),
            log_dropped: self.log.dropped(),
            wall_origin_us: self.wall_origin_us,
            reload_finished: self.reload.finished,
            reload_result: &self.reload.result,
            probes: Some(&self.probes),
            tls: Some(self.probes.expiry()),
        };
        view.render(cmd, text, cursor, out, now)
    }
}

impl Core {
    /// A `drain`/`undrain` or `set-weight` request, as it arrives ([`crate::report::change_reals`]).
    fn change_reals(
        &mut self,
        change: crate::report::RealChange,
        real: Option<std::net::SocketAddr>,
        virt: Option<&crate::control::Named>,
        cursor: &mut u64,
    ) {
        let mut out = Sinks {
            log: &mut self.log,
            stats: &mut self.stats,
            fifo: &mut self.fifo,
            notifier: &mut self.notifier,
            now: self.now,
        };
        crate::report::change_reals(
            &mut self.table,
            self.persist.saver_mut(),
            change,
            real,
            virt,
            cursor,
            self.now,
            &mut out,
        );
    }

    /// The weights due now: slow-start steps, changes held a second (lvsmon.conf(5), WEIGHTS).
    #[inline]
    fn poll_weights(&mut self, now: Time) {
        let mut out = Sinks {
            log: &mut self.log,
            stats: &mut self.stats,
            fifo: &mut self.fifo,
            notifier: &mut self.notifier,
            now,
        };
        self.table.poll_weights(now, &mut out);
    }

    // ----- systemd ------------------------------------------------------------------------

    /// `READY=1` to systemd, naming what is checked (see [`Daemon::ready`]).
    fn ready(&mut self, now: Time) {
        let (reals, virtuals) = (self.table.reals().len(), self.table.virtuals().len());
        if let Some(s) = self.systemd.as_mut() {
            s.ready(now, reals, virtuals);
        }
    }

    /// `RELOADING=1` to systemd (see [`Daemon::reloading`]).
    fn reloading(&mut self, now: Time) {
        if let Some(s) = self.systemd.as_mut() {
            s.reloading(now);
        }
    }

    // ----- readiness and deadlines -------------------------------------------------------

    /// The probe driver, and what it asks of the rest of the daemon.
    #[inline]
    fn around(&mut self) -> (&mut Probes, Around<'_>) {
        (
            &mut self.probes,
            Around {
                table: &mut self.table,
                history: &mut self.history,
                log: &mut self.log,
                stats: &mut self.stats,
                fifo: &mut self.fifo,
                notifier: &mut self.notifier,
                wall_origin_us: self.wall_origin_us,
                now: self.now,
            },
        )
    }

    /// Starts loading what a step of probe `id` reads into the cache: its probe and its
    /// first real (see [`Probes::prefetch`]).
    #[inline]
    fn prefetch(&self, id: ProbeId) {
        self.probes.prefetch(id, |r| {
            if let Some(real) = self.table.real(r) {
                prefetch_lines(real);
            }
        });
    }

    /// Readiness for probe `id`'s socket of generation `gen`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn on_ready(
        &mut self,
        id: ProbeId,
        gen: u32,
        readable: bool,
        writable: bool,
        trouble: bool,
        reg: &Registry,
        now: Time,
    ) {
        let (probes, mut host) = self.around();
        probes.on_ready(id, gen, readable, writable, trouble, reg, now, &mut host);
    }

    /// The TLS helper's answers.
    fn on_tls(&mut self, reg: &Registry, now: Time) {
        let (probes, mut host) = self.around();
        probes.on_tls(reg, now, &mut host);
    }

    /// Probes handed a buffer this turn read what waits for them.
    #[inline]
    fn run_handed(&mut self, reg: &Registry, now: Time) {
        let (probes, mut host) = self.around();
        probes.run_handed(reg, now, &mut host);
    }

    /// Every deadline due at `now`.
    #[inline]
    fn expire(&mut self, reg: &Registry, now: Time) {
        let (probes, mut host) = self.around();
        probes.expire(reg, now, &mut host);
    }

    /// A child ended (SIGCHLD): the `exec` checks' programs that have ended are judged.
    fn reap_execs(&mut self, reg: &Registry, now: Time) {
        let (probes, mut host) = self.around();
        probes.reap_execs(reg, now, &mut host);
    }

    /// The loop stood still for `late` µs beyond the wait it asked for.
    #[cold]
    fn stalled(&mut self, late: u64, reg: &Registry, now: Time) {
        let (probes, mut host) = self.around();
        probes.stalled(late, reg, now, &mut host);
    }

    /// Logs and counts a finished IPVS operation; the table reacts to a failure.
    fn op_done(&mut self, op: Op, res: OpResult) {
        crate::sinks::ipvs_done(&mut self.log, &mut self.stats, op, res);
        self.table.op_done(op, res, self.now);
    }

    /// What the IPVS side reports: results, and the entries of a read-back.
    fn on_ipvs(&mut self, ev: IpvsEvent) {
        match ev {
            IpvsEvent::Done(op, res) => self.op_done(op, res),
            ev => {
                let now = self.now;
                let (table, mut out) = self.split();
                table.read_back(ev, now, &mut out);
            }
        }
    }

    /// The table, and where its events go.
    #[inline]
    fn split(&mut self) -> (&mut Table, Sinks<'_>) {
        (
            &mut self.table,
            Sinks {
                log: &mut self.log,
                stats: &mut self.stats,
                fifo: &mut self.fifo,
                notifier: &mut self.notifier,
                now: self.now,
            },
        )
    }

    /// Brings `track-file` up to date: at start, after a reload, and when a turn had events
    /// (a quorum may have been lost or restored).
    fn poll_track(&mut self) {
        let log = &mut self.log;
        crate::ipvs::daemon::take_news(|line| {
            if let Some(mut l) = log.line(Level::Notice) {
                l.quoted("msg", line.as_bytes());
            }
        });
        let Some(t) = self.track.as_mut() else { return };
        if t.written().is_some() && self.stats.events == self.track_events {
            return;
        }
        self.track_events = self.stats.events;
        // A virtual counts as having quorum until its checks decide otherwise.
        let all = !self.table.virtuals().iter().any(|v| v.quorum_lost);
        match t.update(all) {
            Ok(None) => {}
            Ok(Some(v)) => {
                if let Some(mut l) = self.log.line(Level::Notice) {
                    l.quoted("msg", b"track-file written");
                    let _ = write!(l, " ");
                    l.quoted("path", t.path());
                    let _ = write!(l, " value={v}");
                }
            }
            Err(e) => {
                if let Some(mut l) = self.log.line(Level::Warn) {
                    l.quoted("msg", b"track-file not written");
                    let _ = write!(l, " ");
                    l.quoted("path", t.path());
                    let _ = write!(l, " errno={}", e.raw_os_error().unwrap_or(0));
                }
            }
        }
    }

    fn poll_notify(&mut self, now: Time) {
        if !self.retiring.is_empty() {
            self.poll_retiring(now);
        }
        if let Some(f) = self.fifo.as_mut() {
            if f.next_deadline().is_some_and(|t| now >= t) {
                let status = f.flush(now);
                fifo_status(&mut self.log, &mut self.stats, f, status);
            }
        }
        let Some(n) = self.notifier.as_mut() else {
            return;
        };
        // Commands of the notifier a reload replaced run to their end first: one server's
        // events stay in order across the reload.
        n.hold(!self.retiring.is_empty());
        let mut sink = NotifyLog { log: &mut self.log };
        let rep = n.poll_with(now, &mut sink);
        sink.killed(rep.killed);
    }

    // ----- signals ------------------------------------------------------------------------

    fn on_signal(&mut self, sig: i32, now: Time) {
        match sig {
            SIGTERM | SIGINT => self.stop = true,
            SIGCHLD => self.poll_notify(now),
            SIGUSR1 => self.dump_status(now),
            SIGHUP => {
                self.request_reload();
            }
            _ => {}
        }
    }

    /// SIGUSR1: one line per real server, as far as the log has room now; the rest
    /// follows in later turns, as the log's reader takes it.
    fn dump_status(&mut self, now: Time) {
        self.status_next = Some(0);
        self.dump_status_more(now);
    }

    /// Goes on with the status dump while the log has room (rendered by
    /// [`crate::report::status_dump`]).
    fn dump_status_more(&mut self, now: Time) {
        if let Some(r) = self.status_next {
            self.status_next = crate::report::status_dump(&mut self.log, &self.table, r, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::health::Health;
    use crate::monitor::phase::{self, Phase};
    use crate::monitor::probes::{Kind, ProbeCfg};
    use crate::table::{Addr, Real, Setup};
    use std::mem::size_of;

    /// What each real server and each distinct check cost in the loop's tables (bench/README.md
    /// adds them up against the 256 bytes a real the benchmark aims for).
    #[test]
    fn per_real_sizes() {
        println!(
            "Real {} Setup {} Addr {} Health {} Probe {} ProbeCfg {} Kind {}",
            size_of::<Real>(),
            size_of::<Setup>(),
            size_of::<Addr>(),
            size_of::<Health>(),
            size_of::<Probe>(),
            size_of::<ProbeCfg>(),
            size_of::<Kind>()
        );
        // 19 and 136: the address in bytes only, so that it packs with the real's other
        // byte fields (the last failure's detail naming which of several checks failed took
        // `Real` to 144 while the address was 20 bytes aligned on two).
        assert!(size_of::<Addr>() <= 19);
        assert!(size_of::<Real>() <= 136);
        assert!(size_of::<ProbeCfg>() <= 8);
        assert!(size_of::<Probe>() <= 48);
        // 30: the weight chain's times in 48 bits of µs, the hand-set weight in 4 bytes.
        assert!(size_of::<crate::table::Weigh>() <= 30);
    }

    /// A daemon (dry-run IPVS, no log, no signals) with one `check tcp` against a loopback
    /// listener that never accepts (the kernel completes the handshakes): a check runs until
    /// its 1 s timeout.
    fn holding_daemon(tag: &str) -> (Daemon, std::net::TcpListener, std::path::PathBuf) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (d, dir) = dry_daemon(
            tag,
            &format!(
                "interval 5s\ntimeout 1s\nfall 1\nvirtual tcp 127.1.0.1:80 {{\n  check banner --expect x\n  real {}\n}}\n",
                l.local_addr().unwrap()
            ),
        );
        (d, l, dir)
    }

    /// A daemon (dry-run IPVS, no log, no signals) of `config`, written in a temp directory
    /// of its own (named after `tag`, returned for removal).
    fn dry_daemon(tag: &str, config: &str) -> (Daemon, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("lvsmon-unit-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lvsmon.conf");
        std::fs::write(&path, config).unwrap();
        let plan = crate::config::load(&path, None).unwrap();
        let opts = Options {
            signals: false,
            ..Options::default()
        };
        let log = Log::new(crate::log::Sink::Null, Level::Debug);
        let d = Daemon::new(plan, Box::new(crate::ipvs::DryRun::default()), log, &opts).unwrap();
        (d, dir)
    }

    /// A stall of the loop while a check waits for its reply: a short one moves the check's
    /// deadline on by the stall; one too long for the check's 32-bit start (over an hour)
    /// closes it without a verdict and starts it again at once, once, with a deadline of its
    /// own. Neither counts a failure or a local error; each is one stall.
    #[test]
    fn a_stall_holds_or_restarts_the_running_checks() {
        let (mut d, _l, dir) = holding_daemon("stall");
        d.startup();
        let end = std::time::Instant::now() + Duration::from_secs(3);
        while d.core.stats.started == 0 && std::time::Instant::now() < end {
            d.turn(Some(Duration::from_millis(20))).unwrap();
        }
        // A turn or two more: connected, waiting for the banner.
        d.turn(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(d.core.stats.started, 1);
        assert!(matches!(
            d.core.probes.phase(ProbeId(0)),
            Phase::Recv { .. }
        ));
        let before = d.core.probes.phase_deadline(ProbeId(0));
        let now = d.clock.now();

        d.core.stalled(10_000_000, d.poll.registry(), now);
        assert_eq!(d.core.stats.loop_stalls, 1);
        assert_eq!(
            d.core.probes.phase_deadline(ProbeId(0)),
            before.add_micros(10_000_000)
        );
        assert_eq!(d.core.probes.in_flight(), 1);

        d.core.stalled(phase::MAX_LATE_US, d.poll.registry(), now);
        assert_eq!(d.core.stats.loop_stalls, 2);
        assert!(
            d.core.probes.phase(ProbeId(0)) == Phase::Wait && !d.core.probes.running(ProbeId(0))
        );
        assert_eq!(d.core.probes.in_flight(), 0);
        // Due now: the next turn starts it again.
        assert!(d.core.probes.next_expiry().unwrap() <= now.add_micros(crate::timer::TICK_US));
        d.turn(Some(Duration::from_millis(20))).unwrap();
        let st = &d.core.stats;
        assert_eq!(st.started, 2);
        assert_eq!((st.checks, st.local_errors), (0, 0));
        assert!(d.core.probes.running(ProbeId(0)));
        assert!(d.core.probes.phase_deadline(ProbeId(0)) > now);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Each of a real's several checks keeps its own last duration, in check-line order: the
    /// one against a listener that accepts is short, the one that waits for a banner that
    /// never comes lasts its timeout.
    #[test]
    fn each_check_of_a_real_keeps_its_last_duration() {
        let quick = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (mut d, dir) = dry_daemon(
            "durations",
            &format!(
                "interval 5s\ntimeout 300ms\nvirtual tcp 127.1.0.1:80 {{\n  check tcp --port {}\n  check banner --expect x --port {}\n  real 127.0.0.1:1\n}}\n",
                quick.local_addr().unwrap().port(),
                silent.local_addr().unwrap().port()
            ),
        );
        assert_eq!(d.check_durations(0), [None, None]);
        d.startup();
        let end = std::time::Instant::now() + Duration::from_secs(8);
        while d.check_durations(0).iter().any(Option::is_none) && std::time::Instant::now() < end {
            d.turn(Some(Duration::from_millis(20))).unwrap();
        }
        let got = d.check_durations(0);
        let (tcp, banner) = (got[0].unwrap(), got[1].unwrap());
        assert!(tcp < 200_000, "{got:?}");
        assert!((300_000..1_000_000).contains(&banner), "{got:?}");
        let _ = std::fs::remove_dir_all(dir);
        // Several checks on a real: their slots, rounds and per-real index are kept.
        assert!(d.core.probes.feature_bytes() > 0);
    }

    /// With one check a real and no `exec` check, no per-probe or per-real array of those
    /// features is allocated (no real has per-check durations to show), and the checks
    /// still decide each real with its own latency.
    #[test]
    fn one_check_a_real_holds_no_several_checks_or_exec_arrays() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = std::env::temp_dir().join(format!("lvsmon-unit-one-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lvsmon.conf");
        let port = l.local_addr().unwrap().port();
        std::fs::write(
            &path,
            format!(
                "interval 5s\ntimeout 300ms\nvirtual tcp 127.1.0.1:80 {{\n  check tcp --port {port}\n  real 127.0.0.1:1\n}}\nvirtual tcp 127.1.0.2:80 {{\n  check banner --expect x --port {port}\n  real 127.0.0.1:2\n}}\n"
            ),
        )
        .unwrap();
        let plan = crate::config::load(&path, None).unwrap();
        let opts = Options {
            signals: false,
            ..Options::default()
        };
        let log = Log::new(crate::log::Sink::Null, Level::Debug);
        let mut d =
            Daemon::new(plan, Box::new(crate::ipvs::DryRun::default()), log, &opts).unwrap();
        assert_eq!(d.core.probes.feature_bytes(), 0);
        assert!(d.check_durations(0).is_empty() && d.check_durations(1).is_empty());
        d.startup();
        let end = std::time::Instant::now() + Duration::from_secs(8);
        let decided = |d: &Daemon| d.core.table.reals().iter().all(|r| r.checks > 0);
        while !decided(&d) && std::time::Instant::now() < end {
            d.turn(Some(Duration::from_millis(20))).unwrap();
        }
        let reals = d.core.table.reals();
        let (tcp, banner) = (reals[0].last_latency_us, reals[1].last_latency_us);
        assert!(decided(&d) && tcp < 200_000, "{tcp}");
        assert!((300_000..1_000_000).contains(&banner), "{banner}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
