//! The control-socket client behind `lvsmon status`, `history`, `drain`, `undrain` and
//! `reload`: one command line to the daemon, its reply copied to standard output.
//!
//! The protocol is one line of words per connection (`status json`, `history tcp:10.0.0.1:80
//! since=3600`, `drain 192.168.1.10:80`); the daemon answers with text and closes. A reply
//! that starts with `error: ` is a refusal: the client prints it to standard error and exits 1.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::cli::Command;

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("no lvsmon is running with control socket {path} ({reason}); start the daemon, or name its socket with --socket PATH")]
    NotRunning {
        /// The socket path.
        path: String,
        /// What connecting said.
        reason: io::Error,
    },
    /// The daemon refused the command.
    #[error("{0}")]
    Refused(String),
    /// The connection failed part-way.
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

/// The request line for `cmd`.
pub fn request_line(cmd: &Command) -> String {
    match cmd {
        Command::Status { json } => {
            if *json {
                "status json".into()
            } else {
                "status".into()
            }
        }
        Command::History {
            virtual_service,
            real,
            since,
            json,
        } => {
            let mut s = String::from("history");
            if let Some(v) = virtual_service {
                s.push(' ');
                s.push_str(v);
            }
            if let Some(r) = real {
                s.push(' ');
                s.push_str(r);
            }
            s.push_str(&format!(" since={}", since.as_secs().max(1)));
            if *json {
                s.push_str(" json");
            }
            s
        }
        Command::Drain {
            real,
            virtual_service,
        }
        | Command::Undrain {
            real,
            virtual_service,
        } => {
            let verb = if matches!(cmd, Command::Drain { .. }) {
                "drain"
            } else {
                "undrain"
            };
            match virtual_service {
                Some(v) => format!("{verb} {real} {v}"),
                None => format!("{verb} {real}"),
            }
        }
        Command::Reload => "reload".into(),
    }
}

/// Sends `cmd` to the daemon at `socket` and copies the reply to `out`.
///
/// # Errors
/// No daemon, a refusal, or a broken connection.
pub fn run(socket: &Path, cmd: &Command, out: &mut impl Write) -> Result<(), ClientError> {
    let mut s = UnixStream::connect(socket).map_err(|reason| ClientError::NotRunning {
        path: socket.display().to_string(),
        reason,
    })?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut line = request_line(cmd);
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut first = [0u8; 7];
    let mut got = 0;
    // Peek at the start to tell a refusal from a reply.
    while got < first.len() {
        match s.read(&mut first[got..])? {
            0 => break,
            n => got += n,
        }
    }
    if &first[..got] == b"error: " {
        let mut rest = String::new();
        s.read_to_string(&mut rest)?;
        return Err(ClientError::Refused(format!("error: {}", rest.trim_end())));
    }
    out.write_all(&first[..got])?;
    io::copy(&mut s, out)?;
    Ok(())
}
