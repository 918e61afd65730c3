//! State across restarts (lvsmon(8), STATE): the DRAINED marks and check history of every
//! real, read at startup and saved periodically, a bounded number of records a turn, and
//! in full at a stop. The file's format, checksum and atomic write are [`crate::state`]'s.

use std::io::{Cursor, Write};

use super::Core;
use crate::clock::Time;
use crate::log::Level;
use crate::state;

/// Records written per loop turn while a periodic save runs: bounds the turn's extra work.
const SAVE_RECORDS_PER_TURN: usize = 2_000;

impl Core {
    /// Writes `VIRTUAL REAL` of real `r` into `buf`; returns its length.
    fn state_key(&self, r: usize, buf: &mut [u8]) -> usize {
        let mut c = Cursor::new(buf);
        let real = &self.table.reals()[r];
        let _ = write!(
            c,
            "{} {}",
            self.table.virtuals()[real.virt as usize].key,
            real.addr
        );
        c.position() as usize
    }

    /// Loads `dir/state` (startup only): DRAINED marks and history of the reals still
    /// configured. A corrupt file is set aside and reported, never trusted.
    pub(super) fn load_state(&mut self, dir: &std::path::Path) {
        match state::load(dir) {
            Ok(None) => {}
            Ok(Some(records)) => {
                let by_key: std::collections::HashMap<&str, &state::Record> =
                    records.iter().map(|r| (r.key.as_str(), r)).collect();
                let (mut used, mut drained, mut damaged) = (0usize, 0usize, 0usize);
                for r in 0..self.table.reals().len() {
                    let mut k = [0u8; 160];
                    let n = self.state_key(r, &mut k);
                    let Some(rec) = std::str::from_utf8(&k[..n])
                        .ok()
                        .and_then(|k| by_key.get(k))
                    else {
                        continue;
                    };
                    used += 1;
                    if rec.drained {
                        self.table.restore_drained(crate::ids::RealId::of(r));
                        drained += 1;
                    }
                    if !self.load_history(r, &rec.history) {
                        damaged += 1;
                    }
                }
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state loaded\" dir={} records={} used={used} drained={drained} damaged_history={damaged}",
                        dir.display(),
                        records.len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = self.log.line(Level::Warn) {
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
    pub(super) fn save_step(&mut self, now: Time) -> bool {
        let Some(saver) = self.saver.as_mut() else {
            return false;
        };
        let ended = saver.saved + saver.failed;
        self.save_turn(now);
        self.saver
            .as_ref()
            .is_some_and(|s| s.saved + s.failed != ended)
    }

    fn save_turn(&mut self, now: Time) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        saver.poll();
        if self.save_cursor.is_none() {
            if (now < self.next_save && !saver.wanted()) || saver.busy() {
                self.log_save_note(now);
                return;
            }
            self.next_save = now.add_micros(self.save_every_us);
            let unix = (self.wall_origin_us + now.0) / 1_000_000;
            if saver.begin(unix).is_err() {
                self.log_save_note(now);
                return;
            }
            self.save_cursor = Some(0);
        }
        let Some(mut r) = self.save_cursor else {
            return;
        };
        let end = (r + SAVE_RECORDS_PER_TURN).min(self.table.reals().len());
        while r < end {
            if self.save_record(r).is_err() {
                self.save_cursor = None;
                self.log_save_note(now);
                return;
            }
            r += 1;
        }
        if r < self.table.reals().len() {
            self.save_cursor = Some(r);
            return;
        }
        self.save_cursor = None;
        if let Some(s) = self.saver.as_mut() {
            // A failure is recorded by the saver and logged below.
            let _ = s.finish(false);
        }
        self.log_save_note(now);
    }

    /// Logs what the saver has to say about saves that ended: a failure (path, step, reason
    /// in words, errno, failures since the last such line), or that saves work again.
    fn log_save_note(&mut self, now: Time) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        let Some(note) = saver.note(now.0) else {
            return;
        };
        let dir = saver.dir();
        match note {
            state::SaveNote::Failed { err, failures } => {
                if let Some(mut l) = self.log.line(Level::Error) {
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
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved again\" path={}/state failed_before={failures}",
                        dir.display()
                    );
                }
            }
        }
    }

    fn save_record(&mut self, r: usize) -> std::io::Result<()> {
        let mut k = [0u8; 160];
        let n = self.state_key(r, &mut k);
        let drained = self.table.reals()[r].drained;
        let mut saver = self.saver.take().expect("saving");
        let res = saver.record(&k[..n], drained, &mut |c| self.encode_history(r, c));
        self.saver = Some(saver);
        res
    }

    /// The full save at shutdown (SIGTERM, SIGINT), in this thread: write, fsync, rename.
    pub(super) fn save_now(&mut self) {
        let Some(saver) = self.saver.as_mut() else {
            return;
        };
        // A periodic save under way is abandoned for this complete one; one whose fsync and
        // rename run on the helper thread is waited for (5 s at most), so the two never
        // write the same temporary file.
        self.save_cursor = None;
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while saver.busy() && saver.syncing() && std::time::Instant::now() < end {
            if saver.poll().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let unix = (self.wall_origin_us + self.now.0) / 1_000_000;
        let mut ok = saver.begin(unix).is_ok();
        for r in 0..self.table.reals().len() {
            if !ok {
                break;
            }
            ok = self.save_record(r).is_ok();
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
                if let Some(mut l) = self.log.line(Level::Notice) {
                    let _ = write!(
                        l,
                        "msg=\"state saved\" dir={} reals={}",
                        dir.display(),
                        self.table.reals().len()
                    );
                }
            }
            Err(e) => {
                if let Some(mut l) = self.log.line(Level::Error) {
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

    /// Writes real `r`'s history for the state file.
    fn encode_history(&self, r: usize, c: &mut Cursor<&mut [u8]>) -> std::io::Result<()> {
        self.history.encode_real(r, c)
    }

    /// Restores real `r`'s history from the state file; a damaged record is skipped (and
    /// counted in the `state loaded` line).
    fn load_history(&mut self, r: usize, bytes: &[u8]) -> bool {
        bytes.is_empty() || self.history.decode_real(r, bytes).is_ok()
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
