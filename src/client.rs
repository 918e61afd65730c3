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
    /// The socket exists, but this user may not connect to it.
    #[error("permission denied on control socket {path}: only {who} may connect (the socket has mode 0600); run the command as that user, for instance with sudo")]
    Denied {
        /// The socket path.
        path: String,
        /// Who may connect: the socket's owner (`root (uid 0)`), or the daemon's user.
        who: String,
    },
    /// The daemon did not take the connection in time: its listen backlog stayed full.
    #[error("control socket {path} is busy: the daemon took no new connection within {secs} s (is it stopped or hung?)")]
    Busy {
        /// The socket path.
        path: String,
        /// The time waited, as given with --timeout.
        secs: String,
    },
    /// The daemon took the request but did not answer in time.
    #[error("no reply from the daemon within {secs} s on control socket {path} (it may be hung, or busy with other clients; --timeout SECS waits longer)")]
    Timeout {
        /// The socket path.
        path: String,
        /// The time waited, as given with --timeout.
        secs: String,
    },
    /// The daemon refused the command.
    #[error("{0}")]
    Refused(String),
    /// Standard output could not take the reply (a closed pipe, a full disk).
    #[error("standard output: {0}")]
    Output(io::Error),
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
        Command::SetWeight { real, rest } => format!("set-weight {real} {}", rest.join(" ")),
        Command::Reload => "reload".into(),
        // Runs in main, without the daemon; never sent.
        Command::Convert { .. } => String::new(),
    }
}

/// Sends `cmd` to the daemon at `socket` and copies the reply to `out`, waiting at most
/// `timeout` to be taken in and then for each piece of the reply.
///
/// # Errors
/// No daemon, no permission, a daemon that does not answer in time, a refusal, a broken
/// connection, or an output that does not take the reply.
pub fn run(
    socket: &Path,
    cmd: &Command,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    let path = socket.display().to_string();
    let secs = format!("{}", timeout.as_secs_f64());
    let mut s = connect(socket, timeout).map_err(|reason| match reason.kind() {
        io::ErrorKind::PermissionDenied => ClientError::Denied {
            who: owner(socket),
            path: path.clone(),
        },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Busy {
            path: path.clone(),
            secs: secs.clone(),
        },
        _ => ClientError::NotRunning {
            path: path.clone(),
            reason,
        },
    })?;
    let timed_out = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
            path: path.clone(),
            secs: secs.clone(),
        },
        _ => ClientError::Io(e),
    };
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut line = request_line(cmd);
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(timed_out)?;
    let mut first = [0u8; 7];
    let mut got = 0;
    // Peek at the start to tell a refusal from a reply.
    while got < first.len() {
        match s.read(&mut first[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    if &first[..got] == b"error: " {
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).map_err(timed_out)?;
        let rest = String::from_utf8_lossy(&rest);
        return Err(ClientError::Refused(format!("error: {}", rest.trim_end())));
    }
    // Errors of the output are the output's, not the socket's.
    out.write_all(&first[..got]).map_err(ClientError::Output)?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.write_all(&buf[..n]).map_err(ClientError::Output)?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(timed_out(e)),
        }
    }
    out.flush().map_err(ClientError::Output)
}

/// Connects to the unix socket at `path`. Unlike `UnixStream::connect`, a daemon whose
/// listen backlog is full (stopped, hung, or every control slot taken for long) makes this
/// wait at most `timeout` (`SO_SNDTIMEO` bounds the kernel's wait for room), then fail with
/// `WouldBlock`.
fn connect(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path is too long for a unix socket",
        ));
    }
    for (d, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *d = b as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let s = unsafe { UnixStream::from_raw_fd(fd) };
    s.set_write_timeout(Some(timeout))?;
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    loop {
        // SAFETY: `addr` is a valid sockaddr_un of at least `len` bytes.
        let r = unsafe {
            libc::connect(
                s.as_raw_fd(),
                std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
                len as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(s);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Who may connect to the socket at `path`: its owner, by name and uid.
fn owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return "the user the daemon runs as".into();
    };
    let uid = meta.uid();
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The name of user `uid` from the password database, if it has one.
fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data; getpwuid_r fills it, with its strings in `buf`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut res: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call, `buf` for `buf.len()` bytes.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() || pw.pw_name.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    Some(name.to_string_lossy().into_owned())
}
