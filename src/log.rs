//! Log output: one logfmt line per `write(2)` (or one datagram to syslog), built in a fixed
//! buffer, so logging never allocates and lines from the daemon never interleave.
//!
//! A line is begun with [`Log::line`], filled with `write!` (which writes into the fixed
//! buffer: integers, addresses and `&str` format without touching the heap) and sent by
//! [`Line`]'s `Drop`. A line longer than the buffer is cut and ends in `...`.
//!
//! On stderr each line starts with `ts=` and the UTC wall-clock time in RFC 3339 form, so
//! the whole line is logfmt. The wall clock is used only for this stamp; every decision the
//! daemon makes runs on the monotonic clock (`crate::clock`). With `--log syslog` lines go
//! as datagrams to `/dev/log` with a `<PRI>lvsmon[PID]: ` prefix and no stamp (syslog adds
//! its own).

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;

/// How important a line is. `-q` shows errors only, the default adds notices (events, IPVS
/// changes, start and stop), `-v` adds every check result, `-vv` adds debugging detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed.
    Error = 0,
    /// Something an operator should look at.
    Warn = 1,
    /// Events, IPVS changes, start and stop.
    Notice = 2,
    /// Every check result.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
}

impl Level {
    fn syslog_priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Notice => 5,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// Where lines go.
#[derive(Debug)]
pub enum Sink {
    /// Standard error.
    Stderr,
    /// The local syslog socket, connected at startup (facility daemon).
    Syslog(UnixDatagram),
    /// Nowhere (tests and benchmarks).
    Null,
}

/// Size of the line buffer.
pub const LINE_CAP: usize = 2048;

/// The logger. Owned by the daemon; passed by `&mut` to whatever logs.
#[derive(Debug)]
pub struct Log {
    buf: Box<[u8; LINE_CAP]>,
    len: usize,
    truncated: bool,
    max: Level,
    sink: Sink,
    pid: u32,
    /// Lines that could not be written (full pipe, closed syslog).
    pub lost: u64,
}

impl Log {
    /// A logger that shows lines up to `max` and writes them to `sink`.
    pub fn new(sink: Sink, max: Level) -> Log {
        Log {
            buf: Box::new([0; LINE_CAP]),
            len: 0,
            truncated: false,
            max,
            sink,
            pid: std::process::id(),
            lost: 0,
        }
    }

    /// Connects to `/dev/log` for `--log syslog`.
    ///
    /// # Errors
    /// The syslog socket is missing or refuses us.
    pub fn syslog(max: Level) -> io::Result<Log> {
        let s = UnixDatagram::unbound()?;
        s.connect("/dev/log")?;
        s.set_nonblocking(true)?;
        Ok(Log::new(Sink::Syslog(s), max))
    }

    /// True when lines of `level` are shown.
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.max
    }

    /// Begins a line of `level`. Returns `None` when that level is not shown, so callers skip
    /// the formatting too: `if let Some(mut l) = log.line(Level::Info) { write!(l, ...) }`.
    pub fn line(&mut self, level: Level) -> Option<Line<'_>> {
        if !self.enabled(level) {
            return None;
        }
        self.len = 0;
        self.truncated = false;
        let mut line = Line { log: self, level };
        match line.log.sink {
            Sink::Syslog(_) => {
                let pid = line.log.pid;
                let pri = 24 + level.syslog_priority(); // facility daemon (3) * 8
                let _ = write!(line, "<{pri}>lvsmon[{pid}]: ");
            }
            Sink::Stderr | Sink::Null => {
                line.timestamp();
            }
        }
        Some(line)
    }

    fn push(&mut self, bytes: &[u8]) {
        // Keep room for the "..." marker and the newline.
        let room = LINE_CAP - 4 - self.len;
        if bytes.len() > room {
            self.buf[self.len..self.len + room].copy_from_slice(&bytes[..room]);
            self.len += room;
            self.truncated = true;
        } else {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn finish(&mut self) {
        if self.truncated {
            self.buf[self.len..self.len + 3].copy_from_slice(b"...");
            self.len += 3;
        }
        let ok = match &self.sink {
            Sink::Stderr => {
                self.buf[self.len] = b'\n';
                let line = &self.buf[..self.len + 1];
                // SAFETY: writes a valid buffer to fd 2; no Rust object owns fd 2's state.
                let n = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                n == line.len() as isize
            }
            Sink::Syslog(s) => s.send(&self.buf[..self.len]).is_ok(),
            Sink::Null => true,
        };
        if !ok {
            self.lost += 1;
        }
        self.len = 0;
    }
}

/// A line being written; sent when dropped.
pub struct Line<'a> {
    log: &'a mut Log,
    #[allow(dead_code)]
    level: Level,
}

impl Line<'_> {
    /// Writes `ts=YYYY-MM-DDTHH:MM:SS.mmmZ ` from the wall clock.
    fn timestamp(&mut self) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        let secs = ts.tv_sec.max(0) as u64;
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        let s = secs % 86_400;
        let ms = ts.tv_nsec / 1_000_000;
        let _ = write!(
            self,
            "ts={y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z ",
            s / 3600,
            s / 60 % 60,
            s % 60
        );
    }

    /// Writes `key="value"` with `"` and `\` escaped and control bytes dropped, for values
    /// that may hold spaces.
    pub fn quoted(&mut self, key: &str, value: &[u8]) {
        self.log.push(key.as_bytes());
        self.log.push(b"=\"");
        for &b in value {
            match b {
                b'"' | b'\\' => self.log.push(&[b'\\', b]),
                0x20..=0x7e => self.log.push(&[b]),
                _ => self.log.push(b"?"),
            }
        }
        self.log.push(b"\"");
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.log.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        self.log.finish();
    }
}

/// Writes `unix_secs` as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
///
/// # Errors
/// The output is full.
pub fn write_rfc3339(w: &mut impl Write, unix_secs: u64) -> io::Result<()> {
    let (y, mo, d) = civil_from_days((unix_secs / 86_400) as i64);
    let s = unix_secs % 86_400;
    write!(
        w,
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_779), (2026, 11, 22));
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let mut log = Log::new(Sink::Null, Level::Info);
        {
            let mut l = log.line(Level::Notice).unwrap();
            for _ in 0..1000 {
                let _ = write!(l, "abcdef");
            }
            assert!(l.log.truncated);
        }
        assert_eq!(log.len, 0);
        assert!(log.line(Level::Debug).is_none());
    }

    #[test]
    fn quoting_escapes() {
        let mut log = Log::new(Sink::Null, Level::Info);
        let mut l = log.line(Level::Notice).unwrap();
        l.log.len = 0;
        l.quoted("detail", b"a \"b\" \\c\n");
        let got = std::str::from_utf8(&l.log.buf[..l.log.len])
            .unwrap()
            .to_string();
        assert_eq!(got, r#"detail="a \"b\" \\c?""#);
    }
}
