//! `lvsmon`: parse the command line; run the daemon, or send a command to a running one.
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lvsmon::cli::Cli;
use lvsmon::output;
use lvsmon::startup::{self, StartupError};

fn main() -> ExitCode {
    // The TLS helper (lvsmon(8), TLS HELPER): started by the daemon, never by hand.
    let mut args = std::env::args_os();
    if args.len() == 2 && args.nth(1).is_some_and(|a| a == "tls-helper") {
        return ExitCode::from(lvsmon::tls::helper::main() as u8);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to standard output, usage errors to standard error;
            // neither may panic or pass for success when it could not be written.
            let code = e.exit_code();
            if let Err(error) = e.print() {
                let what = if e.use_stderr() {
                    "standard error"
                } else {
                    "standard output"
                };
                return ExitCode::from(output::Failure { what, error }.report());
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(2));
        }
    };
    if let Some(lvsmon::cli::Command::Convert {
        from,
        file,
        config_id,
    }) = &cli.command
    {
        return ExitCode::from(lvsmon::convert::run(*from, file, config_id.as_deref()));
    }
    if let Some(cmd) = &cli.command {
        let mut out = output::Stdout::new();
        let res = lvsmon::client::run(&cli.socket, cmd, cli.timeout, &mut out);
        if let Some(f) = out.failed.take() {
            // The reply could not be copied: say so, not that the socket failed.
            return ExitCode::from(f.report());
        }
        return match res {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                output::error_line(&format!("lvsmon: {e}"));
                ExitCode::from(1)
            }
        };
    }
    match startup::run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartupError::Output(f)) => ExitCode::from(f.report()),
        Err(e) => {
            output::error_line(&format!("lvsmon: {e}"));
            // A supervisor that restarts us in a loop must not make us spin.
            if !matches!(e, StartupError::ConfigCheck(_)) {
                std::thread::sleep(Duration::from_millis(500));
            }
            ExitCode::from(1)
        }
    }
}
