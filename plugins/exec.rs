//! `check exec [--dynamic] PROGRAM [ARG...]`: a program of the operator's decides.
//!
//! keepalived's `MISC_CHECK` exit codes: 0 passes, 1 fails (`exec-failed`, the first line of
//! the program's output as detail); with `--dynamic` (keepalived's `misc_dynamic`), 2..255
//! pass and set the real server's weight to the code minus 2; without it they fail. The
//! program is run without a shell (argv as written); the monitor spawns it, reads its output,
//! kills it at `timeout` and hands its exit status here. This file only parses the words and
//! judges the status.

use super::{Detail, PluginError, Reason, Verdict};

/// An `exec` check: the program's argv and whether its exit code sets the weight.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exec {
    /// argv, the program first; every word after the program is its own.
    pub argv: Vec<Vec<u8>>,
    /// `--dynamic`: exit codes 2..255 pass and set the weight to code - 2.
    pub dynamic: bool,
}

/// How an `exec` program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(u8),
    /// A signal ended it (not lvsmon's kill at `timeout`, which is the monitor's `timeout`).
    Signal(i32),
}

impl Exec {
    /// `[--dynamic] PROGRAM [ARG...]`: lvsmon's options first, then the program and its words.
    /// An absolute program path that does not name a file is refused now; a relative one is
    /// taken from the daemon's working directory when the check runs.
    ///
    /// # Errors
    /// No program, an unknown option before it, or an absolute path with no file.
    pub fn parse(args: &[&[u8]]) -> Result<Exec, PluginError> {
        let mut dynamic = false;
        let mut i = 0;
        while let Some(w) = args.get(i) {
            if !w.starts_with(b"--") {
                break;
            }
            if *w != b"--dynamic" || dynamic {
                return Err(PluginError::at(
                    i,
                    format!(
                        "{} {:?} for plugin exec (expected --dynamic, once, then the program \
                         and its arguments)",
                        if dynamic && *w == b"--dynamic" {
                            "repeated option"
                        } else {
                            "unknown option"
                        },
                        String::from_utf8_lossy(w)
                    ),
                ));
            }
            dynamic = true;
            i += 1;
        }
        let Some(prog) = args.get(i) else {
            return Err(PluginError {
                word: None,
                message: "expected a program after check exec (its path, then its arguments)"
                    .into(),
            });
        };
        if prog.is_empty() || prog.contains(&0) {
            return Err(PluginError::at(
                i,
                "expected a program path, not an empty word",
            ));
        }
        if args[i..].iter().any(|w| w.contains(&0)) {
            return Err(PluginError::at(i, "a word of the command holds a NUL byte"));
        }
        Ok(Exec {
            argv: args[i..].iter().map(|w| w.to_vec()).collect(),
            dynamic,
        })
    }

    /// The verdict for a program that ended with `exit`, having printed `first` as its first
    /// line; with `--dynamic`, the weight its code sets (`None`: exit 0, the configured weight).
    pub fn judge(&self, exit: Exit, first: &[u8]) -> (Verdict, Option<u32>) {
        let fail = |d: Detail| (Verdict::Fail(Reason::ExecFailed, d), None);
        match exit {
            Exit::Code(0) => (Verdict::Pass, None),
            Exit::Code(c) if c >= 2 && self.dynamic => (Verdict::Pass, Some(u32::from(c) - 2)),
            Exit::Code(c) => {
                if first.is_empty() {
                    let mut d = Detail::text(b"exit ");
                    d.push(Detail::number(c.into()).as_bytes());
                    fail(d)
                } else {
                    fail(Detail::text(first))
                }
            }
            Exit::Signal(s) => {
                let mut d = Detail::text(b"signal ");
                d.push(Detail::number(s as u64).as_bytes());
                fail(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(words: &[&str]) -> Result<Exec, PluginError> {
        let w: Vec<&[u8]> = words.iter().map(|s| s.as_bytes()).collect();
        Exec::parse(&w)
    }

    #[test]
    fn options_come_before_the_program() {
        let e = exec(&["--dynamic", "/bin/sh", "-c", "exit 3", "--dynamic"]).unwrap();
        assert!(e.dynamic);
        assert_eq!(e.argv.len(), 4);
        assert_eq!(e.argv[3], b"--dynamic");
        let e = exec(&["./relative", "x"]).unwrap();
        assert!(!e.dynamic);
        assert_eq!(exec(&["--bogus", "/bin/sh"]).unwrap_err().word, Some(0));
        assert_eq!(
            exec(&["--dynamic", "--dynamic", "/bin/sh"])
                .unwrap_err()
                .word,
            Some(1)
        );
        assert!(exec(&["--dynamic"])
            .unwrap_err()
            .message
            .contains("expected a program"));
        // Judging words never looks at the file system: a program that is not there yet is
        // a warning of `--check-config` (lvsmon(8)), not a refusal.
        assert!(exec(&["/nonexistent/lvsmon-check"]).is_ok());
    }

    #[test]
    fn exit_codes_as_keepalived_misc_check() {
        let plain = exec(&["/bin/sh"]).unwrap();
        let dynamic = exec(&["--dynamic", "/bin/sh"]).unwrap();
        assert_eq!(plain.judge(Exit::Code(0), b"x"), (Verdict::Pass, None));
        assert_eq!(dynamic.judge(Exit::Code(0), b""), (Verdict::Pass, None));
        assert_eq!(
            plain.judge(Exit::Code(1), b"disk full"),
            (Verdict::fail_with(Reason::ExecFailed, b"disk full"), None)
        );
        assert_eq!(
            dynamic.judge(Exit::Code(1), b""),
            (Verdict::fail_with(Reason::ExecFailed, b"exit 1"), None)
        );
        assert_eq!(dynamic.judge(Exit::Code(2), b""), (Verdict::Pass, Some(0)));
        assert_eq!(
            dynamic.judge(Exit::Code(255), b""),
            (Verdict::Pass, Some(253))
        );
        assert_eq!(
            plain.judge(Exit::Code(7), b""),
            (Verdict::fail_with(Reason::ExecFailed, b"exit 7"), None)
        );
        assert_eq!(
            dynamic.judge(Exit::Signal(9), b"x"),
            (Verdict::fail_with(Reason::ExecFailed, b"signal 9"), None)
        );
    }
}
