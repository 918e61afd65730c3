//! The command line (lvsmon(8), OPTIONS), as a clap derive struct.
//!
//! `main` parses it, and everything else receives plain values from it. The subcommands
//! `status`, `history`, `drain`, `undrain` and `reload` belong to the control socket and are
//! reserved: naming one says so instead of being read as a stray argument.

use std::path::PathBuf;
use std::time::Duration;

use std::net::SocketAddr;

use clap::{ArgAction, Parser, Subcommand, ValueEnum};

use crate::config::values::{MAX_INTERVAL, MIN_INTERVAL};

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
    /// file's global `interval`); fractions allowed, 0.05 to 86400.
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

    /// Write the daemon's pid to this file, locked while it runs (a symbolic link is refused;
    /// removed on a clean stop).
    #[arg(long = "pidfile", value_name = "PATH")]
    pub pidfile: Option<PathBuf>,

    /// The control socket: served by the daemon (mode 0600), used by the subcommands.
    #[arg(
        long = "socket",
        value_name = "PATH",
        default_value = "/run/lvsmon.sock",
        global = true
    )]
    pub socket: PathBuf,

    /// How long a command waits for the daemon: to take the connection in, then for each
    /// piece of its reply (seconds, fractions allowed).
    #[arg(
        long = "timeout",
        value_name = "SECS",
        default_value = "30",
        value_parser = parse_secs,
        global = true
    )]
    pub timeout: Duration,

    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (e.g. 127.0.0.1:9110), and the
    /// read-only status page at / (lvsmon(8), STATUS PAGE).
    #[arg(long = "metrics", value_name = "ADDR:PORT")]
    pub metrics: Option<SocketAddr>,

    /// Where check history and DRAINED marks are kept across restarts (locked while the daemon
    /// runs).
    #[arg(
        long = "state-dir",
        value_name = "DIR",
        default_value = "/var/lib/lvsmon"
    )]
    pub state_dir: PathBuf,

    /// How often that state is saved while running (it is also saved on SIGTERM).
    #[arg(long = "state-interval", value_name = "DUR", default_value = "5m", value_parser = parse_dur)]
    pub state_interval: Duration,

    /// A reload (SIGHUP, `lvsmon reload`) still reading and checking the file after this long
    /// is abandoned with an error; the running configuration stays.
    #[arg(long = "reload-timeout", value_name = "DUR", default_value = "60s", value_parser = parse_dur)]
    pub reload_timeout: Duration,

    /// Once every socket and file is open, run as this user (and its primary group), keeping
    /// only CAP_NET_ADMIN.
    #[arg(long = "user", value_name = "NAME")]
    pub user: Option<String>,

    /// Once every socket and file is open, chroot to this directory (before --user takes
    /// effect); capabilities are reduced to CAP_NET_ADMIN as with --user.
    #[arg(long = "chroot", value_name = "DIR")]
    pub chroot: Option<PathBuf>,

    /// A command for a running daemon (through its control socket); none: run the daemon.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The control-socket client's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every real server: state, since when, weight, checks, failures, last failure.
    Status {
        /// One JSON object per real server, in a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Availability and latency per director, virtual service and real server.
    History {
        /// A virtual service (tcp:10.0.0.1:80, fwmark:42): it and its real servers.
        #[arg(value_name = "VIRTUAL")]
        virtual_service: Option<String>,
        /// A real server behind VIRTUAL (192.168.1.10:80): it alone, with its recent results.
        #[arg(value_name = "REAL")]
        real: Option<String>,
        /// How far back: 250ms, 10s, 5m, 1h, 1d.
        #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_dur)]
        since: Duration,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Take a real server out of service by hand: weight 0, kept across restarts.
    Drain {
        /// The real server (ADDR:PORT).
        real: String,
        /// Only behind this virtual service (default: behind every one).
        #[arg(value_name = "VIRTUAL")]
        virtual_service: Option<String>,
    },
    /// Return a drained real server to service.
    Undrain {
        /// The real server (ADDR:PORT).
        real: String,
        /// Only behind this virtual service (default: behind every one).
        #[arg(value_name = "VIRTUAL")]
        virtual_service: Option<String>,
    },
    /// Set a real server's weight by hand (N, P% of what it would be, or reset), kept across
    /// restarts.
    #[command(name = "set-weight")]
    SetWeight {
        /// The real server (ADDR:PORT).
        real: String,
        /// [VIRTUAL] then N, P% or reset: only behind this virtual service (default: behind
        /// every one).
        #[arg(value_name = "[VIRTUAL] N|P%|reset", num_args = 1..=2, required = true)]
        rest: Vec<String>,
    },
    /// Reload the configuration, as SIGHUP does.
    Reload,
    /// Print an lvsmon.conf equivalent to a keepalived or ldirectord configuration (runs
    /// here, without the daemon); exit 1 if something could not be converted.
    Convert {
        /// Which configuration FILE is.
        #[arg(value_enum, value_name = "keepalived|ldirectord")]
        from: crate::convert::From,
        /// The keepalived.conf or ldirectord.cf to convert.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// keepalived's config id (its -i), for `@ID` lines; default the host name up to its
        /// first dot, as keepalived.
        #[arg(long = "config-id", value_name = "ID")]
        config_id: Option<String>,
    },
}

const AFTER_HELP: &str = "\
Signals: SIGHUP reloads the configuration (a bad file is reported and the running one
kept); SIGTERM and SIGINT save state and stop cleanly (exit 0); SIGUSR1 logs the status
table.
Exit status: 0 clean stop, 1 configuration or startup error, 2 usage error.
See lvsmon(8) and lvsmon.conf(5).";

/// Parses a duration as the config does (`250ms`, `10s`, `5m`, `1h`, `1d`, seconds).
fn parse_dur(s: &str) -> Result<Duration, String> {
    crate::config::values::parse_duration(s.as_bytes())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?}: expected a duration like 10m, 1h, 1d"))
}

/// Parses `SECS` with fractions (`10`, `0.5`, `2.25`) into a duration, within the limits of
/// the file's `interval` ([`MIN_INTERVAL`] to [`MAX_INTERVAL`]).
fn parse_secs(s: &str) -> Result<Duration, String> {
    let range = format!(
        "expected {} to {} seconds",
        MIN_INTERVAL.as_secs_f64(),
        MAX_INTERVAL.as_secs()
    );
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds ({range})"))?;
    if !v.is_finite() || v < MIN_INTERVAL.as_secs_f64() || v > MAX_INTERVAL.as_secs_f64() {
        return Err(format!("{s} is out of range ({range})"));
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

    #[test]
    fn interval_limits_are_the_files() {
        let at = |s: &str| Cli::try_parse_from(["lvsmon", "-i", s]).map(|c| c.interval);
        assert_eq!(at("0.05").unwrap(), Some(MIN_INTERVAL));
        assert_eq!(at("86400").unwrap(), Some(MAX_INTERVAL));
        for bad in ["0.049", "0.0000001", "86401", "1e9", "inf", "NaN"] {
            let e = at(bad).unwrap_err().to_string();
            assert!(e.contains("expected 0.05 to 86400 seconds"), "{bad}: {e}");
        }
    }

    /// The signals the daemon answers are in `--help` (SIGHUP was once left out).
    #[test]
    fn help_names_every_signal() {
        let help = Cli::command().render_long_help().to_string();
        for sig in ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1"] {
            assert!(help.contains(sig), "--help does not name {sig}:\n{help}");
        }
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
