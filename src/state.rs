//! The state directory: what lvsmon keeps across restarts (each real server's check history
//! and its DRAINED mark), written atomically and read back at start.
//!
//! The file `DIR/state` is replaced whole: a save writes `DIR/state.tmp`, fsyncs it, renames
//! it over `DIR/state` and fsyncs the directory, so a crash at any moment leaves either the
//! old file or the new one. Format (integers little-endian):
//!
//! ```text
//! "LVSMON-STATE\n"  u32 version (2; 1 is read too)  u64 unix seconds written
//! per real server:  u16 key length, key ("tcp:10.0.0.1:80 192.168.1.10:80"),
//!                   u8 flags (bit 0: drained, bit 1: set-weight N, bit 2: set-weight P%),
//!                   [u32 N or P, with bit 1 or 2], u32 history length, history bytes
//! end:              u16 0xffff, u64 FNV-1a 64 of every byte before it
//! ```
//!
//! Records are matched to the configuration by key, so a changed configuration keeps what
//! still applies. Version 2 holds history in `History::encode_real`'s format 2; a file of
//! version 1 (lvsmon before the compact history) has the same layout with history in format
//! 1, which `History::decode_real` reads and converts, so nothing is lost on upgrade. A file
//! that is corrupt (bad magic, another version, length or checksum) is never trusted: it is
//! renamed to `state.bad-UNIXTIME` and reported, and lvsmon starts fresh.
//!
//! Periodic saves run from the event loop without stalling it: records are serialised a
//! bounded number of bytes per turn into a fixed buffer and written to the temporary file,
//! and the slow part (fsync, rename, directory fsync) runs on a small helper thread. On
//! SIGTERM the save is done at once, in the loop's thread.
//!
//! An operator's `drain`/`undrain` asks for a save at once ([`Saver::request`] gives it a
//! ticket); if a save is already under way, another one follows right after it, since the
//! running one may have written that real's record already. The control connection's reply
//! waits for the first save begun after the request ([`Saver::outcome`]): `ok` only once that
//! save's fsync and renames have succeeded. The helper thread wakes the loop when a save ends.
//!
//! Failures name the step and the reason ([`SaveError`], [`errno_text`]: words from a static
//! table, nothing allocated), are counted ([`Saver::failed`]) and are reported to the loop
//! rate-limited ([`Saver::note`]): once for each new error, then a reminder at most every
//! [`REMIND`] while the same error goes on, and one line when saves succeed again.
//!
//! The directory is locked (`flock`, exclusive) for as long as the [`Saver`] lives: a second
//! lvsmon given the same `--state-dir` is refused at startup with the holder's pid.
//!
//! The [`Saver`] opens the directory once, at startup, and from then on names every file
//! relative to that descriptor (`openat`, `renameat`, `unlinkat`): saves go on working after
//! `--chroot` has made the directory's path meaningless, and after `--user` (the directory and
//! the state file are given to that user first, [`Saver::chown`]). The helper thread is
//! started apart ([`Saver::start_sync`]), after the privilege drop, because capabilities
//! belong to each thread and a thread started before the drop would keep them.

use std::ffi::CStr;
use std::fs::{self, File};
use std::io::{self, Cursor, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

const MAGIC: &[u8; 13] = b"LVSMON-STATE\n";
/// The state file and its temporary, relative to the state directory.
const STATE: &CStr = c"state";
const TMP: &CStr = c"state.tmp";
const VERSION: u32 = 2;
/// The version before, read as well (its records' history is converted when decoded).
const VERSION_1: u32 = 1;
const END: u16 = 0xffff;
/// Bytes gathered before each write(2).
const CHUNK: usize = 256 * 1024;
/// While saves keep failing with the same error, it is logged again at most this often.
pub const REMIND: Duration = Duration::from_secs(600);
/// Bits of a save ticket kept in a control connection's cursor ([`Saver::request`]).
pub const TICKET_BITS: u32 = 38;

/// The part of a save that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating `state.tmp`.
    Create = 1,
    /// Writing `state.tmp`.
    Write = 2,
    /// `fsync` of `state.tmp`.
    Sync = 3,
    /// Renaming `state.tmp` over `state`.
    Rename = 4,
    /// `fsync` of the directory after the rename.
    SyncDir = 5,
}

impl Step {
    /// The step in words, for log lines and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Create => "creating state.tmp",
            Step::Write => "writing state.tmp",
            Step::Sync => "syncing state.tmp",
            Step::Rename => "renaming state.tmp over it",
            Step::SyncDir => "syncing the directory",
        }
    }

    /// A short name, for the `step=` field of log lines.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Write => "write",
            Step::Sync => "fsync",
            Step::Rename => "rename",
            Step::SyncDir => "fsync-dir",
        }
    }

    fn from_code(c: i32) -> Step {
        match c {
            1 => Step::Create,
            2 => Step::Write,
            3 => Step::Sync,
            4 => Step::Rename,
            _ => Step::SyncDir,
        }
    }
}

/// Why a save failed: the step and the operating system's error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaveError {
    /// What the save was doing.
    pub step: Step,
    /// `errno`.
    pub errno: i32,
}

impl SaveError {
    fn of(step: Step, e: &io::Error) -> SaveError {
        SaveError {
            step,
            errno: e.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// The reason in words ([`errno_text`]).
    pub fn reason(self) -> &'static str {
        errno_text(self.errno)
    }

    /// As the sync thread hands it over: negative, step above the errno's 16 bits.
    fn code(self) -> i32 {
        -(((self.step as i32) << 16) | (self.errno & 0xffff))
    }

    fn from_code(c: i32) -> SaveError {
        let c = -c;
        SaveError {
            step: Step::from_code(c >> 16),
            errno: c & 0xffff,
        }
    }
}

/// What the loop should log about saves that ended since it last asked ([`Saver::note`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveNote {
    /// Saves fail: `failures` of them since the last line about it.
    Failed {
        /// The latest failure.
        err: SaveError,
        /// Failures since the last line.
        failures: u64,
    },
    /// A save succeeded after `failures` failed in a row.
    Recovered {
        /// Failures in a row before it.
        failures: u64,
    },
}

/// The text of an error number, as the C library words it, from a static table (no
/// allocation, no locale): the errors a save can meet, and `unknown error` for the rest
/// (log lines carry the number too).
pub fn errno_text(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "Operation not permitted",
        libc::ENOENT => "No such file or directory",
        libc::EINTR => "Interrupted system call",
        libc::EIO => "Input/output error",
        libc::ENXIO => "No such device or address",
        libc::EBADF => "Bad file descriptor",
        libc::EAGAIN => "Resource temporarily unavailable",
        libc::ENOMEM => "Cannot allocate memory",
        libc::EACCES => "Permission denied",
        libc::EBUSY => "Device or resource busy",
        libc::EEXIST => "File exists",
        libc::EXDEV => "Invalid cross-device link",
        libc::ENODEV => "No such device",
        libc::ENOTDIR => "Not a directory",
        libc::EISDIR => "Is a directory",
        libc::EINVAL => "Invalid argument",
        libc::ENFILE => "Too many open files in system",
        libc::EMFILE => "Too many open files",
        libc::ETXTBSY => "Text file busy",
        libc::EFBIG => "File too large",
        libc::ENOSPC => "No space left on device",
        libc::ESPIPE => "Illegal seek",
        libc::EROFS => "Read-only file system",
        libc::EMLINK => "Too many links",
        libc::EPIPE => "Broken pipe",
        libc::ENAMETOOLONG => "File name too long",
        libc::ENOTEMPTY => "Directory not empty",
        libc::ELOOP => "Too many levels of symbolic links",
        libc::EOVERFLOW => "Value too large for defined data type",
        libc::ENOTSUP => "Operation not supported",
        libc::ESTALE => "Stale file handle",
        libc::EDQUOT => "Disk quota exceeded",
        libc::EUCLEAN => "Structure needs cleaning",
        libc::EREMOTEIO => "Remote I/O error",
        libc::ETIMEDOUT => "Connection timed out",
        libc::ENOTCONN => "Transport endpoint is not connected",
        _ => "unknown error",
    }
}

/// FNV-1a 64-bit, incrementally.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// One real server's saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `VIRTUAL REAL`, as in the log lines.
    pub key: String,
    /// Drained by an operator.
    pub drained: bool,
    /// An operator's `set-weight`.
    pub hand: crate::table::Hand,
    /// The history rings, as `History::encode_real` wrote them.
    pub history: Vec<u8>,
}

/// Why a state file was not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not a state file of this version, or is damaged; it was set aside.
    #[error("{path}: {what}; set aside as {aside}, starting without saved state")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: &'static str,
        /// Where it went.
        aside: PathBuf,
    },
}

/// Parses a state file's bytes.
///
/// # Errors
/// A description of what is wrong with it.
pub fn parse(b: &[u8]) -> Result<Vec<Record>, &'static str> {
    if b.len() < MAGIC.len() + 12 + 10 || &b[..MAGIC.len()] != MAGIC {
        return Err("not an lvsmon state file");
    }
    let mut at = MAGIC.len();
    let rd = |at: &mut usize, n: usize| -> Result<&[u8], &'static str> {
        let s = b.get(*at..*at + n).ok_or("truncated")?;
        *at += n;
        Ok(s)
    };
    let version = u32::from_le_bytes(rd(&mut at, 4)?.try_into().map_err(|_| "truncated")?);
    if version != VERSION && version != VERSION_1 {
        return Err("state file of another version (this lvsmon reads versions 1 and 2)");
    }
    rd(&mut at, 8)?;
    let mut out = Vec::new();
    loop {
        let klen = u16::from_le_bytes(rd(&mut at, 2)?.try_into().map_err(|_| "truncated")?);
        if klen == END {
            let body = at;
            let sum = u64::from_le_bytes(rd(&mut at, 8)?.try_into().map_err(|_| "truncated")?);
            let mut h = Fnv::new();
            h.update(&b[..body]);
            if h.0 != sum {
                return Err("checksum mismatch");
            }
            if at != b.len() {
                return Err("bytes after the end");
            }
            return Ok(out);
        }
        let key = std::str::from_utf8(rd(&mut at, klen as usize)?)
            .map_err(|_| "bad key")?
            .to_owned();
        let flags = rd(&mut at, 1)?[0];
        let mut hand = crate::table::Hand::None;
        if flags & 6 != 0 {
            let v = u32::from_le_bytes(rd(&mut at, 4)?.try_into().map_err(|_| "truncated")?);
            hand = if flags & 2 != 0 {
                crate::table::Hand::Weight(v.min(65_535))
            } else {
                crate::table::Hand::Percent(v.min(1000) as u16)
            };
        }
        let hlen = u32::from_le_bytes(rd(&mut at, 4)?.try_into().map_err(|_| "truncated")?);
        let history = rd(&mut at, hlen as usize)?.to_vec();
        out.push(Record {
            key,
            drained: flags & 1 != 0,
            hand,
            history,
        });
    }
}

/// Reads `dir/state`. A missing file is `Ok(None)`; a corrupt one is set aside and
/// reported.
///
/// # Errors
/// The file could not be read, or was corrupt (and has been renamed).
pub fn load(dir: &Path) -> Result<Option<Vec<Record>>, LoadError> {
    let path = dir.join("state");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LoadError::Io { path, source }),
    };
    match parse(&bytes) {
        Ok(r) => Ok(Some(r)),
        Err(what) => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside = dir.join(format!("state.bad-{secs}"));
            fs::rename(&path, &aside).map_err(|source| LoadError::Io {
                path: path.clone(),
                source,
            })?;
            Err(LoadError::Corrupt { path, what, aside })
        }
    }
}

/// Writes state files. Everything it needs is allocated in [`Saver::new`] and
/// [`Saver::start_sync`].
pub struct Saver {
    /// The directory's path, for log lines only: files are named relative to `dir_fd`.
    dir: PathBuf,
    /// The state directory, opened at startup and locked (`flock`) while this lives.
    dir_fd: OwnedFd,
    file: Option<File>,
    buf: Box<[u8]>,
    len: usize,
    sum: Fnv,
    /// Record scratch: one record is built here, then framed into `buf`.
    scratch: Box<[u8]>,
    /// The helper thread's queue, once [`Saver::start_sync`] has started it; without it,
    /// saves sync and rename in the caller's thread.
    sync: Option<SyncSender<RawFd>>,
    /// 0: idle or running, 1: last sync done, negative: [`SaveError::code`] of a failed one.
    result: Arc<AtomicI32>,
    syncing: bool,
    /// Saves completed and failed.
    pub saved: u64,
    /// Saves that failed.
    pub failed: u64,
    /// Tickets handed out by [`Saver::request`]; the last ticket the save under way (or the
    /// last one) covers; the last covered by a finished save, and by a successful one.
    requested: u64,
    covering: u64,
    done: u64,
    done_ok: u64,
    /// The latest failure, failures in a row, failures not yet in a log line, and what the
    /// last line said and when (µs of the loop's clock).
    last_error: Option<SaveError>,
    streak: u64,
    unlogged: u64,
    logged: Option<SaveError>,
    logged_at_us: u64,
    recovered: Option<u64>,
    /// The errno of a `flock` of the directory that failed for a reason other than another
    /// holder (a file system without locks): the directory is not locked.
    pub lock_error: Option<i32>,
}

impl Saver {
    /// Prepares saving into `dir` (created if missing), with room for records of up to
    /// `max_record` bytes of history: opens the directory, locks it against a second lvsmon,
    /// and proves that a file can be created in it. The helper thread is not started yet
    /// ([`Saver::start_sync`]).
    ///
    /// # Errors
    /// The directory cannot be created, opened, locked or written; when another process holds
    /// the lock the error says which (`WouldBlock`).
    pub fn new(dir: &Path, max_record: usize) -> io::Result<Saver> {
        fs::create_dir_all(dir)?;
        let dir_fd: OwnedFd = File::open(dir)?.into();
        // Held by another process: refused. A file system without locks (ENOLCK,
        // EOPNOTSUPP): saves still work, and the daemon warns (`lock_error`).
        let lock_error = match lock(&dir_fd) {
            Ok(()) => None,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "state directory {} is in use by {}: give each lvsmon its own --state-dir",
                        dir.display(),
                        holder_text(lock_holder(&dir_fd), None)
                    ),
                ))
            }
            Err(e) => Some(e.raw_os_error().unwrap_or(libc::EIO)),
        };
        let s = Saver {
            dir: dir.to_path_buf(),
            dir_fd,
            file: None,
            buf: vec![0u8; CHUNK + max_record + 256].into_boxed_slice(),
            len: 0,
            sum: Fnv::new(),
            scratch: vec![0u8; max_record + 64].into_boxed_slice(),
            sync: None,
            result: Arc::new(AtomicI32::new(0)),
            syncing: false,
            saved: 0,
            failed: 0,
            requested: 0,
            covering: 0,
            done: 0,
            done_ok: 0,
            last_error: None,
            streak: 0,
            unlogged: 0,
            logged: None,
            logged_at_us: 0,
            recovered: None,
            lock_error,
        };
        // Prove now that the directory is writable, rather than at the first save.
        s.probe()?;
        Ok(s)
    }

    /// Creates and removes the temporary file: proves that saves can create files in the
    /// directory with the process's credentials as they are now (again after a privilege
    /// drop).
    ///
    /// # Errors
    /// The file cannot be created or removed.
    pub fn probe(&self) -> io::Result<()> {
        drop(self.open_tmp()?);
        self.unlink_tmp()
    }

    /// Gives the directory and an existing state file to `uid`:`gid` (for `--user`), so that
    /// saves still work once the daemon runs as that user.
    ///
    /// # Errors
    /// `fchown` failed (not root).
    pub fn chown(&self, uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
        // SAFETY: fchown/fchownat on our own directory descriptor and a NUL-terminated name.
        cvt(unsafe { libc::fchown(self.dir_fd.as_raw_fd(), uid, gid) })?;
        let r = cvt(unsafe {
            libc::fchownat(
                self.dir_fd.as_raw_fd(),
                STATE.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map(drop),
        }
    }

    /// Starts the helper thread that syncs and renames periodic saves, and wakes the loop
    /// through `wake` when one ends. Call it after the privilege drop (the thread inherits
    /// the caller's credentials); until then, and if it is never called, [`Saver::finish`]
    /// does that work in the caller's thread. Calling it again does nothing.
    ///
    /// # Errors
    /// The directory cannot be opened again or the thread cannot be started.
    pub fn start_sync(&mut self, wake: Option<Arc<mio::Waker>>) -> io::Result<()> {
        if self.sync.is_some() {
            return Ok(());
        }
        let (tx, rx) = sync_channel::<RawFd>(1);
        // The thread's own descriptor of the directory: a new open file, not a duplicate of
        // `dir_fd`, which holds the lock (a duplicate would hold it too, until the thread
        // ends).
        // SAFETY: openat relative to our directory descriptor with a NUL-terminated name.
        let fd = cvt(unsafe {
            libc::openat(
                self.dir_fd.as_raw_fd(),
                c".".as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        let d2 = unsafe { OwnedFd::from_raw_fd(fd) };
        let r2 = self.result.clone();
        std::thread::Builder::new()
            .name("lvsmon-state-sync".into())
            .spawn(move || {
                // The slow half of a save, off the event loop: fsync, rename, fsync the directory.
                while let Ok(fd) = rx.recv() {
                    // SAFETY: the loop handed us this open file and no longer uses it.
                    let f = unsafe { File::from_raw_fd(fd) };
                    let r = f
                        .sync_all()
                        .map_err(|e| SaveError::of(Step::Sync, &e))
                        .and_then(|_| commit(&d2));
                    drop(f);
                    r2.store(
                        match r {
                            Ok(()) => 1,
                            Err(e) => e.code(),
                        },
                        Ordering::Release,
                    );
                    if let Some(w) = &wake {
                        let _ = w.wake();
                    }
                }
            })?;
        self.sync = Some(tx);
        Ok(())
    }

    /// Opens `state.tmp` afresh for writing.
    fn open_tmp(&self) -> io::Result<File> {
        // SAFETY: openat relative to our directory descriptor with a NUL-terminated name; the
        // descriptor returned is owned by the File.
        let fd = cvt(unsafe {
            libc::openat(
                self.dir_fd.as_raw_fd(),
                TMP.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o666 as libc::c_uint,
            )
        })?;
        // SAFETY: fd was just opened and is owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn unlink_tmp(&self) -> io::Result<()> {
        // SAFETY: unlinkat relative to our directory descriptor with a NUL-terminated name.
        cvt(unsafe { libc::unlinkat(self.dir_fd.as_raw_fd(), TMP.as_ptr(), 0) }).map(drop)
    }

    /// Makes room for records of up to `max_record` bytes of history (a reload may keep
    /// more history per real). Only between saves.
    pub fn reserve(&mut self, max_record: usize) {
        if self.scratch.len() < max_record + 64 {
            self.buf = vec![0u8; CHUNK + max_record + 256].into_boxed_slice();
            self.scratch = vec![0u8; max_record + 64].into_boxed_slice();
        }
    }

    /// Gives up the save whose records are being written (a reload renumbered the reals);
    /// the previous state file stays. Not counted as a failure; requests it covered are
    /// still waiting, so [`Saver::wanted`] starts another save.
    pub fn cancel(&mut self) {
        if self.file.take().is_some() {
            self.len = 0;
            let _ = self.unlink_tmp();
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// True while the helper thread is syncing and renaming a save.
    pub fn syncing(&self) -> bool {
        self.syncing
    }

    /// True while a save is under way (records being written, or the sync running).
    pub fn busy(&self) -> bool {
        self.file.is_some() || self.syncing
    }

    /// Asks for a save that includes everything changed so far (an operator's drain):
    /// returns its ticket, for [`Saver::outcome`]. The ticket fits [`TICKET_BITS`].
    pub fn request(&mut self) -> u64 {
        self.requested += 1;
        self.requested & ((1 << TICKET_BITS) - 1)
    }

    /// True when a request waits for a save that has not finished (asked between saves: a
    /// save may begin for it once none is [`Saver::busy`]).
    pub fn wanted(&self) -> bool {
        self.requested > self.done
    }

    /// The outcome of request `ticket`: `None` while no save begun after it has finished;
    /// `Some(Ok)` once one has been written, synced and renamed; `Some(Err)` when the saves
    /// that covered it failed (the latest failure).
    pub fn outcome(&self, ticket: u64) -> Option<Result<(), SaveError>> {
        if self.done_ok >= ticket {
            Some(Ok(()))
        } else if self.done >= ticket {
            Some(Err(self.last_error.unwrap_or(SaveError {
                step: Step::Write,
                errno: libc::EIO,
            })))
        } else {
            None
        }
    }

    /// The latest failure of a save, if any ever failed.
    pub fn last_error(&self) -> Option<SaveError> {
        self.last_error
    }

    /// Records how the save covering [`Saver::covering`] ended.
    fn complete(&mut self, r: Result<(), SaveError>) {
        self.done = self.done.max(self.covering);
        match r {
            Ok(()) => {
                self.saved += 1;
                self.done_ok = self.done_ok.max(self.covering);
                if self.streak > 0 {
                    self.recovered = Some(self.streak);
                }
                self.streak = 0;
                self.unlogged = 0;
            }
            Err(e) => {
                self.failed += 1;
                self.streak += 1;
                self.unlogged += 1;
                self.last_error = Some(e);
            }
        }
    }

    /// What to log about saves that ended since the last call, at loop time `now_us` (µs):
    /// a failure when the error differs from the one last logged or [`REMIND`] has passed
    /// since, and once when saves succeed again after failing.
    pub fn note(&mut self, now_us: u64) -> Option<SaveNote> {
        if let Some(failures) = self.recovered.take() {
            self.logged = None;
            return Some(SaveNote::Recovered { failures });
        }
        let err = self.last_error?;
        if self.unlogged == 0 {
            return None;
        }
        let remind = REMIND.as_micros() as u64;
        if self.logged == Some(err) && now_us < self.logged_at_us.saturating_add(remind) {
            return None;
        }
        let failures = std::mem::take(&mut self.unlogged);
        self.logged = Some(err);
        self.logged_at_us = now_us;
        Some(SaveNote::Failed { err, failures })
    }

    /// Starts a save: opens the temporary file and writes the header. The save covers every
    /// request made so far.
    ///
    /// # Errors
    /// The file cannot be created (the failure is recorded).
    pub fn begin(&mut self, unix_secs: u64) -> io::Result<()> {
        self.covering = self.requested;
        let f = self.open_tmp().inspect_err(|e| {
            self.complete(Err(SaveError::of(Step::Create, e)));
        })?;
        self.file = Some(f);
        self.len = 0;
        self.sum = Fnv::new();
        self.put(MAGIC);
        self.put(&VERSION.to_le_bytes());
        self.put(&unix_secs.to_le_bytes());
        Ok(())
    }

    fn put(&mut self, b: &[u8]) {
        self.sum.update(b);
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.write_all(&self.buf[..self.len])?;
        }
        self.len = 0;
        Ok(())
    }

    /// Adds one record: `key` and `drained`, and the history that `history` writes into the
    /// scratch buffer it is given. Writes to the file whenever a chunk is full.
    ///
    /// # Errors
    /// The write failed (the save is abandoned and the failure recorded).
    pub fn record(
        &mut self,
        key: &[u8],
        drained: bool,
        hand: crate::table::Hand,
        history: &mut dyn FnMut(&mut Cursor<&mut [u8]>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut c = Cursor::new(&mut self.scratch[..]);
        if let Err(e) = history(&mut c) {
            self.abandon(SaveError::of(Step::Write, &e));
            return Err(e);
        }
        let n = c.position() as usize;
        let key = &key[..key.len().min(1024)];
        let mut head = [0u8; 2];
        head.copy_from_slice(&(key.len() as u16).to_le_bytes());
        self.put(&head);
        self.put(key);
        let (flag, value) = match hand {
            crate::table::Hand::None => (0, None),
            crate::table::Hand::Weight(n) => (2, Some(n)),
            crate::table::Hand::Percent(p) => (4, Some(u32::from(p))),
        };
        self.put(&[drained as u8 | flag]);
        if let Some(v) = value {
            self.put(&v.to_le_bytes());
        }
        self.put(&(n as u32).to_le_bytes());
        // `put` borrows self mutably; copy through the buffer in place.
        let (buf, scratch) = (&mut self.buf, &self.scratch);
        buf[self.len..self.len + n].copy_from_slice(&scratch[..n]);
        self.sum.update(&scratch[..n]);
        self.len += n;
        if self.len >= CHUNK {
            self.flush()
                .inspect_err(|e| self.abandon(SaveError::of(Step::Write, e)))?;
        }
        Ok(())
    }

    fn abandon(&mut self, e: SaveError) {
        self.file = None;
        self.len = 0;
        self.complete(Err(e));
        let _ = self.unlink_tmp();
    }

    /// Ends the records and hands the file to the sync thread (`blocking` false), or syncs
    /// and renames at once (`blocking` true: at shutdown; also when no sync thread runs).
    ///
    /// # Errors
    /// The write, sync or rename failed (the failure is recorded).
    pub fn finish(&mut self, blocking: bool) -> io::Result<()> {
        self.put(&END.to_le_bytes());
        let sum = self.sum.0.to_le_bytes();
        self.buf[self.len..self.len + 8].copy_from_slice(&sum);
        self.len += 8;
        if let Err(e) = self.flush() {
            self.abandon(SaveError::of(Step::Write, &e));
            return Err(e);
        }
        let Some(f) = self.file.take() else {
            return Ok(());
        };
        let Some(sync) = self.sync.as_ref().filter(|_| !blocking) else {
            let r = f
                .sync_all()
                .map_err(|e| SaveError::of(Step::Sync, &e))
                .and_then(|_| commit(&self.dir_fd));
            self.complete(r);
            return r.map_err(|e| io::Error::from_raw_os_error(e.errno));
        };
        self.result.store(0, Ordering::Release);
        self.syncing = true;
        let fd = f.into_raw_fd();
        if sync.try_send(fd).is_err() {
            // SAFETY: the thread did not take it; we still own the descriptor.
            drop(unsafe { File::from_raw_fd(fd) });
            self.syncing = false;
            self.complete(Err(SaveError {
                step: Step::Sync,
                errno: libc::EAGAIN,
            }));
        }
        Ok(())
    }

    /// Checks whether the sync thread finished: `Some(Ok)` once per completed save,
    /// `Some(Err)` once per failed one (both also recorded for [`Saver::outcome`]).
    pub fn poll(&mut self) -> Option<Result<(), SaveError>> {
        if !self.syncing {
            return None;
        }
        let r = match self.result.load(Ordering::Acquire) {
            0 => return None,
            1 => Ok(()),
            e => Err(SaveError::from_code(e)),
        };
        self.syncing = false;
        self.complete(r);
        Some(r)
    }

    /// The file descriptor of the save in progress (for tests).
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }
}

/// Takes an exclusive `flock` on `fd` without waiting.
///
/// # Errors
/// `WouldBlock` when another open file holds it.
pub fn lock(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: flock on a descriptor the caller owns.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }).map(drop)
}

/// The pid holding a `flock` on the file open as `fd`, as `/proc/locks` shows it (`None`
/// when it cannot be read or names no holder).
pub fn lock_holder(fd: &impl AsRawFd) -> Option<u32> {
    // SAFETY: fstat into a struct we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let want = format!("{major:02x}:{minor:02x}:{}", st.st_ino);
    let text = fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF"
    text.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let at = w.iter().position(|&x| x == "FLOCK")?;
        (w.get(at + 4) == Some(&want.as_str()))
            .then(|| w.get(at + 3)?.parse().ok())
            .flatten()
    })
}

/// "pid N" (from `/proc/locks`, else `fallback`), or "another process" when neither is
/// known.
pub fn holder_text(pid: Option<u32>, fallback: Option<u32>) -> String {
    match pid.or(fallback) {
        Some(p) => format!("another lvsmon (pid {p})"),
        None => "another process (its pid is not known)".into(),
    }
}

/// Renames `state.tmp` over `state` in `dir` and flushes the directory.
fn commit(dir: &OwnedFd) -> Result<(), SaveError> {
    let d = dir.as_raw_fd();
    // SAFETY: renameat and fsync on a directory descriptor we own, NUL-terminated names.
    cvt(unsafe { libc::renameat(d, TMP.as_ptr(), d, STATE.as_ptr()) })
        .map_err(|e| SaveError::of(Step::Rename, &e))?;
    cvt(unsafe { libc::fsync(d) })
        .map(drop)
        .map_err(|e| SaveError::of(Step::SyncDir, &e))
}

/// `-1` from a libc call as the errno.
fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lvsmon-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn save(d: &Path, records: &[(&str, bool, &[u8])], blocking: bool) -> Saver {
        let mut s = Saver::new(d, 4096).unwrap();
        s.start_sync(None).unwrap();
        s.begin(1_700_000_000).unwrap();
        for (k, dr, h) in records {
            s.record(k.as_bytes(), *dr, crate::table::Hand::None, &mut |c| {
                c.write_all(h)
            })
            .unwrap();
        }
        s.finish(blocking).unwrap();
        s
    }

    /// A `set-weight` is kept with its record; a file of format 1 (no such field) still
    /// loads.
    #[test]
    fn set_weights_round_trip_and_format_1_loads() {
        use crate::table::Hand;
        let d = dir("hand");
        let mut s = Saver::new(&d, 4096).unwrap();
        s.start_sync(None).unwrap();
        s.begin(1_700_000_000).unwrap();
        let hands = [
            Hand::Weight(5),
            Hand::Percent(250),
            Hand::None,
            Hand::Weight(0),
        ];
        for (i, h) in hands.iter().enumerate() {
            let k = format!("tcp:10.0.0.1:80 192.0.2.{i}:80");
            s.record(k.as_bytes(), i == 1, *h, &mut |c| c.write_all(b"xyz"))
                .unwrap();
        }
        s.finish(true).unwrap();
        let got = load(&d).unwrap().unwrap();
        let seen: Vec<(Hand, bool, &[u8])> = got
            .iter()
            .map(|r| (r.hand, r.drained, &r.history[..]))
            .collect();
        assert_eq!(
            seen,
            vec![
                (Hand::Weight(5), false, &b"xyz"[..]),
                (Hand::Percent(250), true, &b"xyz"[..]),
                (Hand::None, false, &b"xyz"[..]),
                (Hand::Weight(0), false, &b"xyz"[..]),
            ]
        );
        // Format 1, written by hand: magic, version 1, time, one drained record, end, sum.
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&1_700_000_000u64.to_le_bytes());
        b.extend_from_slice(&3u16.to_le_bytes());
        b.extend_from_slice(b"k 1");
        b.push(1);
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&END.to_le_bytes());
        let mut h = Fnv::new();
        h.update(&b);
        b.extend_from_slice(&h.0.to_le_bytes());
        let got = parse(&b).unwrap();
        assert_eq!((got[0].drained, got[0].hand), (true, Hand::None));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn round_trip_blocking_and_threaded() {
        let d = dir("rt");
        let recs: &[(&str, bool, &[u8])] = &[
            ("tcp:10.0.0.1:80 192.0.2.1:80", true, b"abc"),
            ("fwmark:42 192.0.2.2:80", false, b""),
        ];
        save(&d, recs, true);
        let got = load(&d).unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Record {
                key: "tcp:10.0.0.1:80 192.0.2.1:80".into(),
                drained: true,
                hand: crate::table::Hand::None,
                history: b"abc".to_vec()
            }
        );
        // Through the sync thread.
        let mut s = save(&d, &recs[1..], false);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let r = loop {
            if let Some(r) = s.poll() {
                break r;
            }
            assert!(
                std::time::Instant::now() < end,
                "sync thread never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(r, Ok(()));
        assert_eq!(load(&d).unwrap().unwrap().len(), 1);
        assert!(!d.join("state.tmp").exists());
        let _ = fs::remove_dir_all(&d);
    }

    /// Saves name files relative to the directory opened at startup, so they go on after its
    /// path stops leading there (as after `--chroot`); with no sync thread started, a periodic
    /// save completes in the caller's thread.
    #[test]
    fn saves_follow_the_directory_not_its_path() {
        let d = dir("fd");
        let moved = dir("fd-moved");
        let mut s = Saver::new(&d, 4096).unwrap();
        fs::rename(&d, &moved).unwrap();
        s.begin(1_700_000_000).unwrap();
        s.record(b"k", true, crate::table::Hand::None, &mut |c| {
            c.write_all(b"h")
        })
        .unwrap();
        s.finish(false).unwrap();
        assert!(!s.busy());
        assert_eq!(s.saved, 1);
        assert!(!d.exists());
        let got = load(&moved).unwrap().unwrap();
        assert_eq!(got[0].key, "k");
        assert!(got[0].drained);
        assert!(!moved.join("state.tmp").exists());
        // Given to another owner (root only), the directory and the file change hands.
        if unsafe { libc::geteuid() } == 0 {
            use std::os::unix::fs::MetadataExt;
            s.chown(65534, 65534).unwrap();
            assert_eq!(fs::metadata(&moved).unwrap().uid(), 65534);
            assert_eq!(fs::metadata(moved.join("state")).unwrap().gid(), 65534);
        }
        let _ = fs::remove_dir_all(&moved);
    }

    /// A request made while a save is being written waits for the save after it (the running
    /// one may have written that record already); a failure answers every request it covered,
    /// with the step and the reason; a later success answers `ok`.
    #[test]
    fn requests_wait_for_a_save_begun_after_them() {
        let d = dir("tickets");
        let mut s = Saver::new(&d, 4096).unwrap();
        let t1 = s.request();
        assert!(s.wanted());
        s.begin(1).unwrap();
        s.record(b"k", true, crate::table::Hand::None, &mut |c| {
            c.write_all(b"h")
        })
        .unwrap();
        // Asked while the records are being written: not covered by this save.
        let t2 = s.request();
        s.finish(false).unwrap();
        assert_eq!(s.outcome(t1), Some(Ok(())));
        assert_eq!(s.outcome(t2), None);
        assert!(s.wanted());
        // The next save fails: the state file is a directory, so the rename does.
        fs::create_dir(d.join("state.keep")).unwrap();
        fs::rename(d.join("state"), d.join("state.keep/state")).unwrap();
        fs::create_dir_all(d.join("state/x")).unwrap();
        s.begin(2).unwrap();
        assert!(s.finish(false).is_err());
        let e = s.outcome(t2).unwrap().unwrap_err();
        assert_eq!(
            (e.step, e.errno, e.reason()),
            (Step::Rename, libc::EISDIR, "Is a directory")
        );
        assert!(!s.wanted());
        assert_eq!(s.failed, 1);
        assert_eq!(
            s.note(0),
            Some(SaveNote::Failed {
                err: e,
                failures: 1
            })
        );
        // The same failure again: counted, logged only after REMIND.
        let t3 = s.request();
        s.begin(3).unwrap();
        assert!(s.finish(false).is_err());
        assert!(s.outcome(t3).unwrap().is_err());
        assert_eq!(s.note(1), None);
        let later = REMIND.as_micros() as u64;
        assert_eq!(
            s.note(later),
            Some(SaveNote::Failed {
                err: e,
                failures: 1
            })
        );
        // Repaired: the next save answers ok and saves are said to work again.
        fs::remove_dir_all(d.join("state")).unwrap();
        let t4 = s.request();
        s.begin(4).unwrap();
        s.finish(false).unwrap();
        assert_eq!(s.outcome(t4), Some(Ok(())));
        assert_eq!(s.note(later + 1), Some(SaveNote::Recovered { failures: 2 }));
        assert_eq!(s.note(later + 2), None);
        let _ = fs::remove_dir_all(&d);
    }

    /// A second saver on the same directory is refused while the first lives.
    #[test]
    fn the_directory_is_locked_while_a_saver_lives() {
        let d = dir("lock");
        let s = Saver::new(&d, 64).unwrap();
        let e = Saver::new(&d, 64).err().expect("a second saver is refused");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        let text = e.to_string();
        assert!(text.contains("is in use by"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(s);
        Saver::new(&d, 64).expect("free again");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn corrupt_files_are_set_aside_never_trusted() {
        let d = dir("bad");
        save(&d, &[("k", false, b"hist")], true);
        let good = fs::read(d.join("state")).unwrap();
        // Every truncation and a flipped byte anywhere: refused.
        for n in 0..good.len() {
            assert!(parse(&good[..n]).is_err(), "prefix {n} accepted");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x40;
            assert!(parse(&b).is_err(), "flip at {i} accepted");
        }
        fs::write(d.join("state"), b"foreign file").unwrap();
        match load(&d) {
            Err(LoadError::Corrupt { aside, .. }) => assert!(aside.exists()),
            other => panic!("{other:?}"),
        }
        assert!(!d.join("state").exists());
        assert!(load(&d).unwrap().is_none());
        let _ = fs::remove_dir_all(&d);
    }

    /// A save writes version 2; a file of version 1 (the fixture, written by lvsmon before
    /// the compact history) is read; any other version is set aside, saying which it reads.
    #[test]
    fn version_2_is_written_version_1_read_others_set_aside() {
        let d = dir("ver");
        save(&d, &[("k", false, b"hist")], true);
        let good = fs::read(d.join("state")).unwrap();
        assert_eq!(good[13..17], 2u32.to_le_bytes());
        let v1 = include_bytes!("../tests/data/state-v1/state");
        assert_eq!(v1[13..17], 1u32.to_le_bytes());
        let recs = parse(v1).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(recs[1].drained && recs[0].history.starts_with(b"LVSH\x01"));
        // Version 3, its checksum right: refused.
        let mut v3 = v1.to_vec();
        v3[13..17].copy_from_slice(&3u32.to_le_bytes());
        let end = v3.len() - 8;
        let mut h = Fnv::new();
        h.update(&v3[..end]);
        v3[end..].copy_from_slice(&h.0.to_le_bytes());
        assert_eq!(
            parse(&v3).unwrap_err(),
            "state file of another version (this lvsmon reads versions 1 and 2)"
        );
        fs::write(d.join("state"), &v3).unwrap();
        match load(&d) {
            Err(e @ LoadError::Corrupt { .. }) => {
                assert!(
                    e.to_string()
                        .contains("reads versions 1 and 2); set aside as"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        let _ = fs::remove_dir_all(&d);
    }
}
