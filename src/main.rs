//! `lvsmon`: parse the command line, load the configuration, run the daemon.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lvsmon::cli::{Cli, RESERVED_COMMANDS};
use lvsmon::startup::{self, StartupError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cmd) = cli.command.first() {
        if RESERVED_COMMANDS.contains(&cmd.as_str()) {
            eprintln!(
                "lvsmon: `{cmd}` talks to the control socket, which this version does not have yet"
            );
        } else {
            eprintln!("lvsmon: unexpected argument {cmd:?} (see lvsmon --help)");
        }
        return ExitCode::from(2);
    }
    match startup::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsmon: {e}");
            // A supervisor that restarts us in a loop must not make us spin.
            if !matches!(e, StartupError::ConfigCheck(_)) {
                std::thread::sleep(Duration::from_millis(500));
            }
            ExitCode::from(1)
        }
    }
}
