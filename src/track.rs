//! `track-file PATH [--weight N]` (lvsmon(8), DIRECTOR PAIRS): the file keepalived's
//! `track_file` reads to lower this director's VRRP priority while it lacks real servers.
//!
//! It holds `0` while every virtual service has quorum and `-N` otherwise. It is written at
//! start and whenever that changes, atomically: the line goes to `PATH.lvsmon-tmp` in the
//! same directory, which is then renamed over `PATH`, so keepalived never reads half a line.
//! This happens on the loop itself: a few bytes to a local file (open, write, close, rename:
//! tens of microseconds on a local file system), with both paths built at startup, so nothing
//! is allocated; a failure is logged and retried at the next change, and never marks a real
//! server down.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;

use crate::config::director;

/// The track file and what it last said.
#[derive(Debug)]
pub struct TrackFile {
    path: CString,
    tmp: CString,
    weight: u32,
    /// What the file holds: `Some(true)` all virtuals have quorum; `None` unknown (not yet
    /// written, or the last write failed).
    written: Option<bool>,
}

impl TrackFile {
    /// Prepares the paths of `spec` (nothing is written yet).
    ///
    /// # Errors
    /// The path has a NUL byte.
    pub fn new(spec: &director::TrackFile) -> io::Result<TrackFile> {
        let bytes = spec.path.as_os_str().as_bytes();
        let mut tmp = bytes.to_vec();
        tmp.extend_from_slice(b".lvsmon-tmp");
        Ok(TrackFile {
            path: CString::new(bytes)?,
            tmp: CString::new(tmp)?,
            weight: spec.weight,
            written: None,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }

    /// What the file says now (`None`: not yet written).
    pub fn written(&self) -> Option<bool> {
        self.written
    }

    /// Writes `0` (`all_quorum`) or `-N` unless the file already says so. Returns what was
    /// written, `None` if nothing needed writing.
    ///
    /// # Errors
    /// The file could not be written or renamed (the next call tries again).
    pub fn update(&mut self, all_quorum: bool) -> io::Result<Option<i64>> {
        if self.written == Some(all_quorum) {
            return Ok(None);
        }
        let value: i64 = if all_quorum {
            0
        } else {
            -i64::from(self.weight)
        };
        let mut line = [0u8; 24];
        let n = {
            let mut c = io::Cursor::new(&mut line[..]);
            io::Write::write_fmt(&mut c, format_args!("{value}\n"))?;
            c.position() as usize
        };
        self.written = None;
        // SAFETY: open(2) with a NUL-terminated path we own.
        let fd = unsafe {
            libc::open(
                self.tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: writes our buffer to the fd we just opened, then closes it.
        let wrote = unsafe { libc::write(fd, line.as_ptr().cast(), n) };
        let err = io::Error::last_os_error();
        // SAFETY: closes our own fd once.
        let closed = unsafe { libc::close(fd) };
        if wrote != n as isize {
            return Err(if wrote < 0 {
                err
            } else {
                io::Error::new(io::ErrorKind::WriteZero, "short write")
            });
        }
        if closed < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: rename(2) of two NUL-terminated paths we own.
        if unsafe { libc::rename(self.tmp.as_ptr(), self.path.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.written = Some(all_quorum);
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_zero_or_minus_weight_atomically_and_only_on_change() {
        let dir = std::env::temp_dir().join(format!("lvsmon-track-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("track");
        let mut t = TrackFile::new(&director::TrackFile {
            path: path.clone(),
            weight: 30,
        })
        .unwrap();
        assert_eq!(t.update(true).unwrap(), Some(0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n");
        assert_eq!(t.update(true).unwrap(), None);
        assert_eq!(t.update(false).unwrap(), Some(-30));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "-30\n");
        // Only the file itself is left: the temporary one was renamed over it.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("track")]);
        // A directory that is gone: an error, and the next update tries again.
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(t.update(true).is_err());
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(t.update(true).unwrap(), Some(0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
