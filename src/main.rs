//! `lvsmon`: parse the command line; run the daemon, or send a command to a running one.
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lvsmon::cli::Cli;
use lvsmon::startup::{self, StartupError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(cmd) = &cli.command {
        let out = &mut std::io::stdout().lock();
        return match lvsmon::client::run(&cli.socket, cmd, cli.timeout, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(lvsmon::client::ClientError::Output(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                // The reader of our output has gone (`lvsmon status | head -1`): end as a
                // filter does, by SIGPIPE, without a message.
                // SAFETY: restoring the default action of SIGPIPE and raising it.
                unsafe {
                    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                    libc::raise(libc::SIGPIPE);
                }
                ExitCode::from(141)
            }
            Err(e) => {
                // Standard error may be closed too: never panic over a message.
                let _ = writeln!(std::io::stderr(), "lvsmon: {e}");
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
