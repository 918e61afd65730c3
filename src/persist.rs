//! State across restarts (lvsmon(8), STATE): the DRAINED marks and check history of every
//! real, read at startup, saved periodically (a bounded number of records a turn, so a save
//! never holds up the checks) and in full at a stop. [`Persist`] is the state saver the
//! loop wires in: it reads the table and the history, and only loading at startup changes
//! them. The file's format, checksum and atomic write are [`crate::state`]'s.

use std::io::{Cursor, Write};

use crate::clock::{micros, Time};
use crate::history::History;
use crate::log::{Level, Log};
use crate::state::{self, Saver};
use crate::table::Table;

/// Records written per loop turn while a periodic save runs: bounds the turn's extra work.
const SAVE_RECORDS_PER_TURN: usize = 2_000;

/// The state saver: the writer (when there is a state directory), the period, the next
/// save, and the next real to write while a save is under way.
pub struct Persist {
    saver: Option<Saver>,
    every_us: u64,
    next: Time,
    cursor: Option<usize>,
}

impl Persist {
    /// Saves every `interval` (at least a second), to no directory yet ([`Persist::open`]).
    pub(crate) fn new(interval: std::time::Duration) -> Persist {
        let every_us = micros(interval).max(1_000_000);
        Persist {
            saver: None,
            every_us,
            next: Time(every_us),
            cursor: None,
        }
    }

    /// Saves go to `saver`'s directory.
    /// Takes the writer of state directory `dir`; a directory it could not lock is logged.
    pub(crate) fn open(&mut self, saver: Saver, dir: &std::path::Path, log: &mut Log) {
        if let Some(errno) = saver.lock_error {
            if let Some(mut l) = log.line(Level::Warn) {
                let _ = write!(
                    l,
                    "msg=\"state directory not locked\" dir={} error=\"{}\" errno={errno}",
                    dir.display(),
                    state::errno_text(errno)
                );
            }
        }
        self.saver = Some(saver);
    }

    /// Starts the writer's sync thread (`wake` wakes the loop when a save ends); without it,
    /// saves sync in the loop, and the log says so.
    pub(crate) fn start_sync(&mut self, wake: Option<std::sync::Arc<mio::Waker>>, log: &mut Log) {
        if let Some(Err(e)) = self.saver.as_mut().map(|s| s.start_sync(wake)) {
            if let Some(mut l) = log.line(Level::Warn) {
                let _ = write!(
                    l,
                    "msg=\"state sync thread not started; saves sync in the loop\" errno={}",
                    e.raw_os_error().unwrap_or(0)
                );
            }
        }
    }

    /// The writer, if there is a state directory.
    pub(crate) fn saver(&self) -> Option<&Saver> {
        self.saver.as_ref()
    }

    /// The writer, to start its sync thread or ask for a save.
    pub(crate) fn saver_mut(&mut self) -> Option<&mut Saver> {
        self.saver.as_mut()
    }

    /// A reload: the writer of `old` carries on; a save under way (whose records follow the
    /// old numbering) is cancelled, and a fresh one starts at once. `max_encoded` is the new
    /// history's largest record.
    pub(crate) fn take_over(&mut self, old: &mut Persist, now: Time, max_encoded: usize) {
        self.saver = old.saver.take();
        if let Some(s) = self.saver.as_mut() {
            if old.cursor.is_some() {
                s.cancel();
            }
            s.reserve(max_encoded);
        }
        self.next = if old.cursor.is_some() { now } else { old.next };
    }

    /// Writes `VIRTUAL REAL` of real `r` into `buf`; returns its length.
    fn state_key(table: &Table, r: usize, buf: &mut [u8]) -> usize {
        let mut c = Cursor::new(buf);
        let real = &table.reals()[r];
        let _ = write!(
            c,
            "{} {}",
            table.virtuals()[real.virt as usize].key,
            real.addr
        );
        c.position() as usize
    }

    /// Loads `dir/state` (startup only): DRAINED marks and history of the reals still
    /// configured. A corrupt file is set aside and reported, never trusted.
    pub(crate) fn load(
        &mut self,
        dir: &std::path::Path,
        table: &mut Table,
        history: &mut History,
        log: &mut Log,
    ) {
        match state::load(dir) {
            Ok(None) => {}
            Ok(Some(records)) => {
                let by_key: std::collections::HashMap<&str, &state::Record> =
                    records.iter().map(|r| (r.key.as_str(), r)).collect();
                let (mut used, mut drained, mut damaged, mut weights) =
                    (0usize, 0usize, 0usize, 0usize);
                for r in 0..table.reals().len() {
                    let mut k = [0u8; 160];
                    let n = Self::state_key(table, r, &mut k);
                    let Some(rec) = std::str::from_utf8(&k[..n])
                        .ok()
                        .and_then(|k| by_key.get(k))
                    else {
                        continue;
                    };
                    used += 1;
                    if rec.drained {
                        table.restore_drained(crate::ids::RealId::of(r));
                        drained += 1;
                    }
                    if rec.hand != crate::table::Hand::None {
                        table.restore_hand(crate::ids::RealId::of(r), rec.hand);
                        weights += 1;
                    }
                    if !(rec.history.is_empty() || history.decode_real(r, &rec.history).is_ok()) {
                        damaged += 1;
                    }
                }
                if let Some(mut l) = log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state loaded\" dir={} records={} used={used} drained={drained} set_weights={weights} damaged_history={damaged}",
                        dir.display(),
                        records.len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = log.line(Level::Warn) {
                    let _ = write!(l, "msg=\"state not loaded\" ");
                    let mut t = [0u8; 400];
                    let mut c = Cursor::new(&mut t[..]);
                    let _ = write!(c, "{e}");
                    let n = c.position() as usize;
                    l.quoted("error", &t[..n]);
                }
            }
        }
    }

    /// One turn's share of a save: starts one when the period is up or an operator's drain
    /// asked for one (right after the save under way, if any), writes a bounded number of
    /// records, and hands the file to the sync thread when all are written. Logs failures
    /// (rate-limited, [`state::Saver::note`]).
    ///
    /// Returns true when a save ended this turn (parked `drain` replies can be given).
    pub(crate) fn step(
        &mut self,
        now: Time,
        wall_origin_us: u64,
        table: &Table,
        history: &History,
        log: &mut Log,
    ) -> bool {
        let Some(saver) = self.saver.as_mut() else {
            return false;
        };
        let ended = saver.saved + saver.failed;
        self.turn(now, wall_origin_us, table, history, log);
        self.saver
            .as_ref()
            .is_some_and(|s| s.saved + s.failed != ended)
    }

    fn turn(
        &mut self,
        now: Time,
        wall_origin_us: u64,
        table: &Table,
        history: &History,
        log: &mut Log,
    ) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        saver.poll();
        if self.cursor.is_none() {
            if (now < self.next && !saver.wanted()) || saver.busy() {
                self.note(now, log);
                return;
            }
            self.next = now.add_micros(self.every_us);
            let unix = (wall_origin_us + now.0) / 1_000_000;
            if saver.begin(unix).is_err() {
                self.note(now, log);
                return;
            }
            self.cursor = Some(0);
        }
        let Some(mut r) = self.cursor else {
            return;
        };
        let end = (r + SAVE_RECORDS_PER_TURN).min(table.reals().len());
        while r < end {
            if self.record(r, table, history).is_err() {
                self.cursor = None;
                self.note(now, log);
                return;
            }
            r += 1;
        }
        if r < table.reals().len() {
            self.cursor = Some(r);
            return;
        }
        self.cursor = None;
        if let Some(s) = self.saver.as_mut() {
            // A failure is recorded by the saver and logged below.
            let _ = s.finish(false);
        }
        self.note(now, log);
    }

    /// Logs what the saver has to say about saves that ended: a failure (path, step, reason
    /// in words, errno, failures since the last such line), or that saves work again.
    fn note(&mut self, now: Time, log: &mut Log) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        let Some(note) = saver.note(now.0) else {
            return;
        };
        let dir = saver.dir();
        match note {
            state::SaveNote::Failed { err, failures } => {
                if let Some(mut l) = log.line(Level::Error) {
                    let _ = write!(l, "msg=\"state save failed\" ");
                    write_save_error(&mut l, dir, err);
                    let _ = write!(
                        l,
                        " failures={failures} remind_after={}s",
                        state::REMIND.as_secs()
                    );
                }
            }
            state::SaveNote::Recovered { failures } => {
                if let Some(mut l) = log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved again\" path={}/state failed_before={failures}",
                        dir.display()
                    );
                }
            }
        }
    }

    fn record(&mut self, r: usize, table: &Table, history: &History) -> std::io::Result<()> {
        let mut k = [0u8; 160];
        let n = Self::state_key(table, r, &mut k);
        let drained = table.reals()[r].drained;
        let hand = table.weigh(r).hand();
        let Some(saver) = self.saver.as_mut() else {
            return Ok(());
        };
        saver.record(&k[..n], drained, hand, &mut |c| history.encode_real(r, c))
    }

    /// The full save at shutdown (SIGTERM, SIGINT), in this thread: write, fsync, rename.
    pub(crate) fn save_now(
        &mut self,
        now: Time,
        wall_origin_us: u64,
        table: &Table,
        history: &History,
        log: &mut Log,
    ) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        // A periodic save under way is abandoned for this complete one; one whose fsync and
        // rename run on the helper thread is waited for (5 s at most), so the two never
        // write the same temporary file.
        self.cursor = None;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while saver.busy() && saver.syncing() && std::time::Instant::now() < end {
            if saver.poll().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let unix = (wall_origin_us + now.0) / 1_000_000;
        let mut ok = saver.begin(unix).is_ok();
        for r in 0..table.reals().len() {
            if !ok {
                break;
            }
            ok = self.record(r, table, history).is_ok();
        }
        let saver = self.saver.as_mut().expect("saving");
        let res = if ok {
            saver.finish(true)
        } else {
            Err(std::io::Error::other("write failed"))
        };
        let dir = saver.dir().to_path_buf();
        let err = saver.last_error();
        match res {
            Ok(()) => {
                if let Some(mut l) = log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved\" dir={} reals={}",
                        dir.display(),
                        table.reals().len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = log.line(Level::Error) {
                    let _ = write!(l, "msg=\"state save failed\" ");
                    let err = err.unwrap_or(state::SaveError {
                        step: state::Step::Write,
                        errno: e.raw_os_error().unwrap_or(libc::EIO),
                    });
                    write_save_error(&mut l, &dir, err);
                }
            }
        }
    }
}

/// `path=DIR/state step=STEP error="REASON" errno=N` of a failed save.
fn write_save_error(w: &mut impl Write, dir: &std::path::Path, e: state::SaveError) {
    let _ = write!(
        w,
        "path={}/state step={} error=\"{}\" errno={}",
        dir.display(),
        e.step.name(),
        e.reason(),
        e.errno
    );
}
