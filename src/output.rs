//! What the command prints on standard output and standard error, written so that no output
//! error can panic it.
//!
//! `println!` and `eprintln!` panic when the write fails: `lvsmon -t > /dev/full` (ENOSPC) or
//! a reader that went away (EPIPE; Rust ignores SIGPIPE, so the write returns the error)
//! ended in a backtrace and exit status 101. Here every write returns its error, and
//! [`Failure::report`] turns it into what lvsmon(8) documents: a reader that closed the pipe
//! ends the command quietly with status 1 (it reads nothing more, so nothing is said); any
//! other failure is one line on standard error and status 1.

use std::io::{self, Write};

/// An output that could not be written.
#[derive(Debug)]
pub struct Failure {
    /// `standard output` or `standard error` (the words of the message).
    pub what: &'static str,
    /// Why, as the operating system said.
    pub error: io::Error,
}

impl Failure {
    /// True when the reader of the output is gone (EPIPE).
    pub fn reader_gone(&self) -> bool {
        self.error.kind() == io::ErrorKind::BrokenPipe
    }

    /// Says why the output failed on standard error (unless the reader is gone, or standard
    /// error itself is what failed), and returns the exit status: 1.
    pub fn report(&self) -> u8 {
        if !self.reader_gone() && self.what != STDERR {
            error_line(&format!("lvsmon: {self}"));
        }
        1
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot write to {}: {}",
            self.what,
            os_reason(&self.error)
        )
    }
}

const STDOUT: &str = "standard output";
const STDERR: &str = "standard error";

/// Writes `text` to standard output and flushes it.
///
/// # Errors
/// The write or flush failed.
pub fn stdout(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| Failure {
            what: STDOUT,
            error,
        })
}

/// Writes `line` and a newline to standard error; a failure is ignored (there is nowhere
/// left to say it).
pub fn error_line(line: &str) {
    let mut err = io::stderr().lock();
    let _ = err
        .write_all(line.as_bytes())
        .and_then(|()| err.write_all(b"\n"));
}

/// A writer over standard output that remembers the first error, so that a caller which
/// only sees "the copy failed" can tell the output's failure from its input's.
pub struct Stdout {
    inner: io::StdoutLock<'static>,
    /// The first write or flush error, if any.
    pub failed: Option<Failure>,
}

impl Stdout {
    /// Standard output, locked for this writer.
    pub fn new() -> Stdout {
        Stdout {
            inner: io::stdout().lock(),
            failed: None,
        }
    }

    fn remember(&mut self, e: &io::Error) {
        if self.failed.is_none() {
            self.failed = Some(Failure {
                what: STDOUT,
                error: copy(e),
            });
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.remember(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().inspect_err(|e| self.remember(e))
    }
}

/// The same error again (`io::Error` is not `Clone`).
fn copy(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// The operating system's reason without Rust's ` (os error N)` suffix.
fn os_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_is_quiet_and_other_errors_are_not() {
        let gone = Failure {
            what: STDOUT,
            error: io::Error::from_raw_os_error(libc::EPIPE),
        };
        assert!(gone.reader_gone());
        let full = Failure {
            what: STDOUT,
            error: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert!(!full.reader_gone());
        assert_eq!(
            full.to_string(),
            "cannot write to standard output: No space left on device"
        );
    }
}
