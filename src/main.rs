//! `lvsmon`: parse the command line; run the daemon, or send a command to a running one.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lvsmon::cli::Cli;
use lvsmon::startup::{self, StartupError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cmd) = &cli.command {
        return match lvsmon::client::run(&cli.socket, cmd, &mut std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lvsmon: {e}");
                ExitCode::from(1)
            }
        };
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
