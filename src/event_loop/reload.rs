//! Reloading the configuration (SIGHUP, `lvsmon reload`) without losing what is known.
//!
//! The file is read and planned on a helper thread, so even a 100,000-real configuration
//! never holds up the checks; a bad file is reported with its `file:line:col` and changes
//! nothing. Neither does a load still running after `--reload-timeout`: the loop abandons it
//! (the thread ends when it can, its answer unread) and the next reload starts afresh. A good plan becomes a new [`Core`] into which the running one hands over:
//!
//! - a real server is the same when its virtual service and address are: it keeps its
//!   state, counters, drain, history and `within` window (the window restarts only when
//!   `fall` changed its length), and its entry in the table;
//! - a probe is the same when its target, check and timing are: it keeps its grid point
//!   and, when a check is running, its socket and the bytes read so far;
//! - only the differences reach IPVS: `edit-service` for a changed scheduler or
//!   persistence, `edit-dest` for a changed weight or forwarding method, `del-dest` for a
//!   real no longer in the file, `del-service` for a virtual service no longer in it. What
//!   the file added is adopted from a read-back of the table, as at startup (a `--dry-run`
//!   daemon assumes an empty table, as at startup).
//!
//! Building the new tables allocates, as startup does; between reloads the loop still
//! allocates nothing.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::TryRecvError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Core, Daemon, Log};
use crate::clock::Time;
use crate::config::{Plan, ServiceKey};
use crate::log::{Level, Sink};
use crate::table::Changes;

/// `--reload-timeout` when none is given: reading, planning and building even 100,000 real
/// servers takes a few seconds, so a load still running after a minute is stuck (a file on
/// a hung network file system, say) and is abandoned; the running configuration stays.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Loading threads that may be alive at once, abandoned ones included: past this, a reload is
/// refused until they end, so that a file system that hangs every read cannot make lvsmon
/// pile up threads.
const MAX_LOADERS: usize = 4;

/// Counts a loading thread as running until it ends.
struct Loader(Arc<AtomicUsize>);

impl Drop for Loader {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A configuration loaded and built on the helper thread, ready to take over.
pub(super) struct Loaded {
    core: Core,
    managed: Vec<(ServiceKey, u16)>,
    queue_cap: usize,
    summary: String,
}

impl Loaded {
    fn build(plan: Plan, opts: &super::Options, origin: Time) -> Result<Loaded, String> {
        let file = plan.files.first().map(|f| f.display().to_string());
        // A configuration whose checks could not all hold a socket at once is refused, as
        // at startup.
        crate::fdbudget::fit_fd_limit(&plan, opts.fd_taken)
            .map_err(|e| format!("{}: {e}", file.clone().unwrap_or_default()))?;
        // The daemon runs where and as whom its notify commands will: a program it could not
        // start is refused here, as at startup.
        crate::notify::check_programs(&plan, None, None).map_err(|e| e.to_string())?;
        let managed = crate::ipvs::managed_services(&plan);
        let queue_cap = 2 * plan.reals.len() + 4 * plan.virtuals.len() + 64;
        let summary = plan.summary();
        let core = Core::new(plan, opts, Log::new(Sink::Null, Level::Error), origin)
            .map_err(|e| format!("{}: {e}", file.unwrap_or_default()))?;
        Ok(Loaded {
            core,
            managed,
            queue_cap,
            summary,
        })
    }
}

impl Core {
    /// A reload was asked for. Returns the request's number: [`super::Reload::finished`]
    /// reaches it once a load that started after the request has been answered.
    pub(super) fn request_reload(&mut self) -> u64 {
        self.reload.requested += 1;
        if self.reload.rx.is_none() {
            self.start_load();
        }
        self.reload.requested
    }

    /// Starts reading the file on a helper thread.
    fn start_load(&mut self) {
        // systemd learns that a reload runs (READY=1 follows when it is answered).
        let now = self.now;
        self.reloading(now);
        let r = &mut self.reload;
        r.started = r.requested;
        let Some(file) = r.file.clone() else {
            r.finished = r.started;
            r.result =
                "error: lvsmon was started without a configuration file; nothing to reload\n"
                    .into();
            return;
        };
        let running = r.loaders.load(Ordering::Relaxed);
        if running >= MAX_LOADERS {
            r.finished = r.started;
            r.result = format!(
                "error: {}: {running} earlier reloads are still reading past --reload-timeout \
                 (a file that cannot be read?); nothing was reloaded (the running \
                 configuration is kept)\n",
                file.display()
            );
            if let Some(mut l) = self.log.line(Level::Error) {
                let _ = write!(
                    l,
                    "msg=\"reload refused; the running configuration is kept\" loading={running}"
                );
            }
            // Answered at once: systemd hears that the reload is over.
            self.ready(now);
            return;
        }
        if let Some(mut l) = self.log.line(Level::Notice) {
            let _ = write!(l, "msg=\"reloading\" file={}", file.display());
        }
        let limit = r
            .opts
            .as_ref()
            .map_or(DEFAULT_RELOAD_TIMEOUT, |o| o.reload_timeout);
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::clone(&cancel);
        let loader = Loader(Arc::clone(&r.loaders));
        r.loaders.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        let waker = r.waker.clone();
        let interval = r.interval;
        let (opts, clock) = (
            r.opts.clone().unwrap_or_default(),
            r.clock.unwrap_or_default(),
        );
        let spawned = std::thread::Builder::new()
            .name("lvsmon-reload".into())
            .spawn(move || {
                let _loader = loader;
                let t = Instant::now();
                let res = crate::config::load(&file, interval)
                    .map_err(|e| e.to_string())
                    .and_then(|plan| {
                        // Abandoned meanwhile: building the tables would be for nothing.
                        if cancelled.load(Ordering::Relaxed) {
                            return Err("abandoned".to_string());
                        }
                        Loaded::build(plan, &opts, clock.now())
                    });
                let _ = tx.send((res, t.elapsed()));
                if let Some(w) = waker {
                    let _ = w.wake();
                }
            });
        match spawned {
            Ok(_) => {
                r.rx = Some(rx);
                r.deadline = Some(now.add_micros(limit.as_micros().min(u64::MAX.into()) as u64));
                r.cancel = Some(cancel);
            }
            Err(e) => {
                r.finished = r.started;
                r.result = format!("error: reload: cannot start the loading thread: {e}\n");
            }
        }
    }

    /// Folds the counters of a notifier that is going away into the retired totals.
    fn retire_notifier(&mut self, n: crate::notify::Notifier) {
        if n.running() == 0 && n.queued() == 0 {
            self.notify_retired.add(&n.counters());
        } else {
            self.retiring.push(n);
        }
    }

    /// Polls notifiers a reload replaced; drops those with nothing left to do.
    pub(super) fn poll_retiring(&mut self, now: Time) {
        let mut i = 0;
        while i < self.retiring.len() {
            // Their commands' failures and output are logged as the running notifier's are.
            let mut sink = crate::sinks::NotifyLog { log: &mut self.log };
            let _ = self.retiring[i].poll_with(now, &mut sink);
            if self.retiring[i].running() == 0 && self.retiring[i].queued() == 0 {
                let n = self.retiring.swap_remove(i);
                self.notify_retired.add(&n.counters());
            } else {
                i += 1;
            }
        }
    }

    /// Takes over from `old`, the core of the configuration being replaced: see the module
    /// docs for what is kept. Queues the IPVS operations the differences need.
    fn take_over(&mut self, old: &mut Core, reg: &mio::Registry, now: Time, dry: bool) -> Changes {
        let mut ch = Changes::default();
        self.stats = std::mem::take(&mut old.stats);
        self.wall_origin_us = old.wall_origin_us;
        self.now = now;
        self.stop = old.stop;
        self.retiring = std::mem::take(&mut old.retiring);
        self.notify_retired = old.notify_retired;
        self.reload = std::mem::take(&mut old.reload);
        self.systemd = old.systemd.take();
        // Records of a save under way follow the old numbering: a fresh save starts.
        self.persist
            .take_over(&mut old.persist, now, self.history.max_encoded_len());
        // The table: reals and virtual services kept, added and removed, and the operations
        // the differences need.
        {
            let mut out = crate::sinks::Sinks {
                log: &mut self.log,
                stats: &mut self.stats,
                fifo: &mut self.fifo,
                notifier: &mut self.notifier,
                now,
            };
            let history = &mut self.history;
            let old_history = &old.history;
            self.table.take_over(
                &mut old.table,
                now,
                dry,
                (&old.notify_cmds, &self.notify_cmds),
                &mut ch,
                |r, or| history.copy_real(r, old_history, or),
                &mut out,
            );
        }

        // Probes: the same check keeps its grid point and whatever it is doing.
        let old_table = &old.table;
        let (probes, mut host) = self.around();
        let carried = probes.take_over(&mut old.probes, reg, now, |r| old_table.addr(r), &mut host);
        ch.probes_kept = carried.kept;
        ch.running = carried.running;
        ch.restarted = carried.restarted;
        ch
    }
}

impl Daemon {
    /// Asks for a reload, as SIGHUP does.
    pub fn request_reload(&mut self) -> u64 {
        self.core.request_reload()
    }

    /// Reload requests answered, and what the last one said.
    pub fn reload_status(&self) -> (u64, &str) {
        (self.core.reload.finished, &self.core.reload.result)
    }

    /// The helper thread has an answer: apply it (or report it), then start the load a
    /// request made meanwhile asked for.
    pub(super) fn finish_reload(&mut self) {
        let Some(rx) = self.core.reload.rx.as_ref() else {
            return;
        };
        let (res, parse) = match rx.try_recv() {
            Ok(v) => v,
            Err(TryRecvError::Empty) => {
                let now = self.clock.now();
                if self.core.reload.deadline.is_none_or(|d| now < d) {
                    return;
                }
                // Overran --reload-timeout: give up on it (the thread ends by itself, if
                // ever; its answer goes nowhere) and keep the running configuration.
                if let Some(c) = self.core.reload.cancel.as_ref() {
                    c.store(true, Ordering::Relaxed);
                }
                let limit = self
                    .core
                    .reload
                    .opts
                    .as_ref()
                    .map_or(DEFAULT_RELOAD_TIMEOUT, |o| o.reload_timeout);
                (
                    Err(format!(
                        "{}: reading and checking the configuration took longer than {} s \
                         (--reload-timeout); the reload was abandoned",
                        self.core
                            .reload
                            .file
                            .as_ref()
                            .map(|f| f.display().to_string())
                            .unwrap_or_default(),
                        limit.as_secs_f64()
                    )),
                    limit,
                )
            }
            Err(TryRecvError::Disconnected) => (
                Err("the loading thread stopped without an answer".to_string()),
                Duration::ZERO,
            ),
        };
        self.core.reload.rx = None;
        self.core.reload.deadline = None;
        self.core.reload.cancel = None;
        let file = self
            .core
            .reload
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        let result = match res {
            Err(msg) => Err(msg),
            Ok(loaded) => {
                let summary = loaded.summary.clone();
                let t = Instant::now();
                let ch = self.apply(loaded);
                Ok((summary, ch, t.elapsed()))
            }
        };
        let mut text = String::new();
        match result {
            Err(msg) => crate::report::reload_failed(&mut self.core.log, &mut text, &msg),
            Ok((summary, ch, apply)) => {
                let c = &self.core;
                let sizes = (
                    c.table.virtuals().len(),
                    c.table.reals().len(),
                    c.probes.len(),
                );
                let took = (parse, apply);
                crate::report::reloaded(
                    &mut self.core.log,
                    &mut text,
                    &file,
                    &summary,
                    sizes,
                    &ch,
                    took,
                );
            }
        }
        self.core.reload.result = text;
        self.core.reload.finished = self.core.reload.started;
        let now = self.clock.now();
        self.core.ready(now);
        if self.core.reload.requested > self.core.reload.started {
            self.core.start_load();
        }
        self.drain_outbox();
    }

    /// Hands the running core over to the one the helper thread built.
    fn apply(&mut self, loaded: Loaded) -> Changes {
        let now = self.clock.now();
        let Loaded {
            core: mut new,
            managed,
            queue_cap,
            ..
        } = loaded;
        let same_notify =
            new.notify_cmds == self.core.notify_cmds && new.notify_max == self.core.notify_max;
        std::mem::swap(&mut new.log, &mut self.core.log);
        let old_notifier = self.core.notifier.take();
        let retire = if same_notify {
            new.notifier = old_notifier;
            None
        } else {
            old_notifier
        };
        // The same notify-fifo keeps its writer: its open descriptor and the lines waiting
        // for the reader. Another path (or none) starts afresh; lines still waiting for the
        // old one are dropped and counted.
        let same_fifo = match (&new.fifo, &self.core.fifo) {
            (Some(n), Some(o)) => n.path() == o.path(),
            _ => false,
        };
        if same_fifo {
            new.fifo = self.core.fifo.take();
        } else if let Some(old) = self.core.fifo.take() {
            self.core.stats.fifo_dropped += old.pending_lines();
        }
        self.ipvs.reconfigure(&managed, queue_cap);
        let dry = self.ipvs.is_dry_run();
        if new.sync_daemons != self.core.sync_daemons {
            if dry {
                // Nothing to start: the new lines for the log and `lvsmon status`.
                crate::ipvs::daemon::dry_run_reload(&new.sync_daemons);
            } else {
                // Stopped and started on a helper thread: the loop never waits on the kernel.
                crate::ipvs::daemon::apply_in_background(
                    self.core.sync_daemons.clone(),
                    new.sync_daemons.clone(),
                );
            }
        }
        let registry = self.poll.registry();
        let mut old = std::mem::replace(&mut self.core, new);
        let ch = self.core.take_over(&mut old, registry, now, dry);
        if let Some(n) = retire {
            self.core.retire_notifier(n);
        }
        // Freeing a large configuration's tables takes a while: not on the loop's time.
        // Then the freed pages go back to the system, so memory after a reload is what
        // the new configuration needs (with one malloc arena, see `startup::run`).
        let _ = std::thread::Builder::new()
            .name("lvsmon-reload".into())
            .spawn(move || {
                drop(old);
                #[cfg(target_env = "gnu")]
                // SAFETY: malloc_trim only releases free memory of the allocator.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        ch
    }
}
