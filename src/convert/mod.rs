//! `lvsmon convert keepalived|ldirectord FILE`: prints an lvsmon.conf that checks what a
//! keepalived or ldirectord configuration checks (lvsmon(8), MIGRATION).
//!
//! Each converter reads its own grammar into a small tree ([`keepalived`], [`ldirectord`]) and
//! writes lines through [`emit::Out`], which keeps the source location of every line it writes
//! and counts what could not be converted. A construct without an lvsmon equivalent becomes a
//! `# not converted (FILE:LINE): ...` comment where it stood; the command prints everything and
//! then exits 1. The converter runs once, outside the event loop: it allocates freely.

pub mod emit;
pub mod keepalived;
pub mod ldirectord;

use std::fmt;
use std::path::Path;

pub use emit::{Feature, Out};

/// Constructs of the config language that the converter writes but that this lvsmon's parser
/// does not read yet (none today): output that uses one of them would fail `--check-config`.
/// A construct is listed here with a configuration that shows it while its syntax is still
/// missing; `convert::tests::needs_rows_are_still_refused` says when a row can go.
pub const NEEDS: &[(Feature, &str)] = &[];

/// Whether `feature`'s syntax is still missing from the parser (see [`NEEDS`]).
pub fn pending(feature: Feature) -> bool {
    NEEDS.iter().any(|(f, _)| *f == feature)
}

/// Which configuration to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum From {
    /// keepalived.conf(5): `virtual_server` blocks and their checkers.
    Keepalived,
    /// ldirectord.cf (ldirectord(8)): `virtual=` sections and their `real=` lines.
    Ldirectord,
}

/// A configuration that could not be read at all (a missing file, unbalanced braces): no
/// output is printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

/// Converts the file at `path`. `config_id` is keepalived's `-i` (for `@name` lines; default
/// the host name up to its first dot).
///
/// # Errors
/// The file (or an included one) cannot be read, or its blocks do not balance.
pub fn convert(from: From, path: &Path, config_id: Option<&str>) -> Result<Out, ReadError> {
    match from {
        From::Keepalived => {
            let id = match config_id {
                Some(id) => id.to_string(),
                None => host_name(),
            };
            keepalived::convert(path, &id)
        }
        From::Ldirectord => ldirectord::convert(path),
    }
}

/// The node name (uname) up to its first dot, as keepalived's default config id.
fn host_name() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let name = String::from_utf8_lossy(&bytes).into_owned();
    name.split('.').next().unwrap_or("").to_string()
}

/// Runs the subcommand: prints the configuration on standard output and returns the exit
/// status (0 everything converted, 1 something was not or the file could not be read).
pub fn run(from: From, path: &Path, config_id: Option<&str>) -> u8 {
    use std::io::Write;
    match convert(from, path, config_id) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(out.text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                crate::output::error_line(&format!("lvsmon: standard output: {e}"));
                return 1;
            }
            if out.refused > 0 {
                crate::output::error_line(&format!(
                    "lvsmon: {} construct(s) not converted; see the \"# not converted\" lines",
                    out.refused
                ));
                1
            } else {
                0
            }
        }
        Err(e) => {
            crate::output::error_line(&format!("lvsmon: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests;
