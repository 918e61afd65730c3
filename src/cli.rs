//! The command line (SPEC section 1), as a clap derive struct.
//!
//! `main` parses it, and everything else receives plain values from it. The subcommands
//! `status`, `history`, `drain`, `undrain` and `reload` belong to the control socket and are
//! reserved: naming one says so instead of being read as a stray argument.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, ValueEnum};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    /// Standard error, one logfmt line per event, stamped with UTC time.
    Stderr,
    /// The local syslog socket (/dev/log), facility daemon.
    Syslog,
}

/// lvsmon checks every real server behind every IPVS virtual service, decides when each is up
/// or down, keeps the kernel's IPVS table in step, and tells operators about each change once.
#[derive(Debug, Parser)]
#[command(name = "lvsmon", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        default_value = "/etc/lvsmon.conf"
    )]
    pub file: PathBuf,

    /// Check interval in seconds for every check that does not set its own (overrides the
    /// file's global `interval`); fractions allowed.
    #[arg(short = 'i', long = "interval", value_name = "SECS", value_parser = parse_secs)]
    pub interval: Option<Duration>,

    /// Parse and validate the configuration, print counts of virtuals, reals and checks, exit
    /// 0 if it is usable and 1 if not.
    #[arg(short = 't', long = "check-config")]
    pub check_config: bool,

    /// Never touch IPVS: assume an empty table and log every change that would be made.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,

    /// Where log lines go.
    #[arg(
        long = "log",
        value_enum,
        value_name = "stderr|syslog",
        default_value = "stderr"
    )]
    pub log: LogTarget,

    /// More log lines: -v adds every check result, -vv debugging detail.
    #[arg(short = 'v', long = "verbose", action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Fewer log lines: errors only.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// Write the daemon's pid to this file (removed on a clean stop).
    #[arg(long = "pidfile", value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// Reserved for the control-socket client (status, history, drain, undrain, reload).
    #[arg(value_name = "COMMAND", hide = true)]
    pub command: Vec<String>,
}

const AFTER_HELP: &str = "\
Signals: SIGTERM and SIGINT stop cleanly (exit 0); SIGUSR1 logs the status table.
Exit status: 0 clean stop, 1 configuration or startup error, 2 usage error.
See lvsmon(8) and lvsmon.conf(5).";

/// The subcommands that belong to the control socket.
pub const RESERVED_COMMANDS: &[&str] = &["status", "history", "drain", "undrain", "reload"];

/// Parses `SECS` with fractions (`10`, `0.5`, `2.25`) into a duration.
fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 86_400.0 * 365.0 {
        return Err(format!("{s:?}: expected a number of seconds above 0"));
    }
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_sound() {
        Cli::command().debug_assert();
    }

    #[test]
    fn fractions_of_seconds() {
        let c = Cli::try_parse_from(["lvsmon", "-i", "0.25", "-n"]).unwrap();
        assert_eq!(c.interval, Some(Duration::from_millis(250)));
        assert!(Cli::try_parse_from(["lvsmon", "-i", "0"]).is_err());
        assert!(Cli::try_parse_from(["lvsmon", "-i", "ten"]).is_err());
    }

    /// Every long option must be in the man page (kept in step by hand, checked here).
    #[test]
    fn man_page_names_every_option() {
        let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/man/lvsmon.8"))
            .expect("man/lvsmon.8");
        for arg in Cli::command().get_arguments() {
            if arg.is_hide_set() {
                continue;
            }
            if let Some(long) = arg.get_long() {
                let roff = format!("\\-\\-{}", long.replace('-', "\\-"));
                assert!(
                    man.contains(&roff),
                    "man/lvsmon.8 does not document --{long}"
                );
            }
        }
    }
}
