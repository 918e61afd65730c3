//! Real servers from Debian packages, for `tests/servers.rs`: each one is started from a
//! private config in a temp dir, in the foreground, in a process group of its own, listening on
//! loopback only; it is stopped by pid (and its group, for the children it forked) when its
//! guard is dropped. `.ci/install-servers` installs the packages.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::lvsmon::TempDir;

/// What to tell whoever runs the tests without the servers installed.
pub const INSTALL_HINT: &str = "run `bash .ci/install` as root (it installs the Debian \
                                packages tests/servers.rs starts)";

/// Panics, naming the package and `.ci/install-servers`, unless `path` exists.
#[track_caller]
pub fn require(path: &str, package: &str) -> PathBuf {
    let p = PathBuf::from(path);
    if !p.exists() {
        panic!("{path} not found (Debian package {package}): {INSTALL_HINT}");
    }
    p
}

/// Panics unless the tests run as root (for servers that drop privileges or need /run).
#[track_caller]
pub fn require_root(what: &str) {
    // SAFETY: geteuid(2) has no failure mode.
    if unsafe { libc::geteuid() } != 0 {
        panic!("{what} must be started as root; run the tests as root (CI does)");
    }
}

/// Prints `server NAME: VERSION` once per server name, to the real stderr (not the test's
/// captured output), so that CI logs name the versions the tests ran against.
pub fn print_version(name: &str, shell: &str) {
    static DONE: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if !done
        .get_or_insert_with(HashSet::new)
        .insert(name.to_string())
    {
        return;
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{shell} 2>&1"))
        .stdin(Stdio::null())
        .output();
    let text = match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => format!("(version unknown: {e})"),
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(version unknown)");
    let _ = writeln!(std::io::stderr(), "server {name}: {line}");
}

/// A port that is free for TCP and UDP on 127.0.0.1 and ::1 now, and that no other test of
/// this process has been handed.
pub fn free_port() -> u16 {
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().unwrap().port();
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(v6).is_ok()
            && UdpSocket::bind(v6).is_ok();
        drop(l);
        if free && TAKEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
    panic!("no free loopback port in 100 tries");
}

/// A real server process (the leader of its own process group) with its log file.
pub struct Server {
    name: String,
    child: Child,
    stop_signal: i32,
    stopped: bool,
    log: PathBuf,
    /// The server's private directory (config, pid file, data); removed after the server.
    pub dir: TempDir,
}

impl Server {
    /// Starts `cmd` in a process group of its own, stdin from /dev/null, stdout and stderr to
    /// `NAME.log` in `dir`. `stop_signal` asks it to stop (SIGTERM for most servers).
    pub fn spawn(name: &str, mut cmd: Command, dir: TempDir, stop_signal: i32) -> Server {
        let log = dir.0.join(format!("{name}.log"));
        let out = File::create(&log).expect("create server log");
        let err = out.try_clone().unwrap();
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                panic!("{name}: {:?} not found: {INSTALL_HINT}", cmd.get_program())
            }
            Err(e) => panic!("{name}: cannot start {cmd:?}: {e}"),
        };
        Server {
            name: name.to_string(),
            child,
            stop_signal,
            stopped: false,
            log,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits up to `limit` until `ready()` says yes, checking that the server still runs;
    /// panics with the server's log otherwise.
    #[track_caller]
    pub fn wait_ready(&mut self, what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.stopped = true;
                panic!(
                    "{} exited ({st}) before {what}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if ready() {
                return;
            }
            if Instant::now() >= end {
                panic!(
                    "{} not ready ({what}) within {limit:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a TCP connection to `addr` succeeds.
    #[track_caller]
    pub fn wait_tcp(&mut self, addr: SocketAddr, limit: Duration) {
        self.wait_ready(&format!("accepting on {addr}"), limit, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Waits until a connection to `addr` is greeted with a first line starting `prefix`.
    #[track_caller]
    pub fn wait_banner(&mut self, addr: SocketAddr, prefix: &str, limit: Duration) {
        self.wait_ready(&format!("greeting {prefix:?} on {addr}"), limit, || {
            first_bytes(addr, prefix.len()).is_some_and(|b| b.starts_with(prefix.as_bytes()))
        });
    }

    /// Waits until `datagram` sent to `addr` is answered by one that `ok` accepts.
    #[track_caller]
    pub fn wait_udp(
        &mut self,
        addr: SocketAddr,
        datagram: &[u8],
        limit: Duration,
        ok: impl Fn(&[u8]) -> bool,
    ) {
        self.wait_ready(&format!("answering on udp {addr}"), limit, || {
            udp_exchange(addr, datagram).is_some_and(|r| ok(&r))
        });
    }

    /// Waits until the server's log contains `text`.
    #[track_caller]
    pub fn wait_log(&mut self, text: &str, limit: Duration) {
        let log = self.log.clone();
        self.wait_ready(&format!("logging {text:?}"), limit, || {
            std::fs::read(&log).is_ok_and(|b| String::from_utf8_lossy(&b).contains(text))
        });
    }

    /// Stops the server: its stop signal to the leader, at most 5 s for it to exit, then
    /// SIGKILL to its whole process group (children it forked included), then reaps it.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which is not reaped yet, so the pid is still ours.
        unsafe { libc::kill(pid, self.stop_signal) };
        let end = Instant::now() + Duration::from_secs(5);
        while !exited_unreaped(pid) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The leader is a zombie (or still running) and not reaped, so its pid, which is also
        // the group's id, cannot have been reused: this reaches only what it started.
        // SAFETY: kill(2) on the process group our child leads.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether child `pid` has exited, without reaping it.
fn exited_unreaped(pid: libc::pid_t) -> bool {
    // SAFETY: waitid(2) with WNOWAIT on our own child; `info` is plain data it fills in.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() != 0
    }
}

/// The first `n` bytes a TCP server at `addr` sends (fewer if it closes), within a second.
pub fn first_bytes(addr: SocketAddr, n: usize) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut buf = vec![0; n.max(1)];
    let mut got = 0;
    while got < n {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    buf.truncate(got);
    (got > 0).then_some(buf)
}

/// Sends `datagram` to `addr` from a connected socket and returns the reply (within 200 ms).
pub fn udp_exchange(addr: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
    let local: SocketAddr = if addr.is_ipv6() {
        "[::1]:0".parse().unwrap()
    } else {
        "127.0.0.1:0".parse().unwrap()
    };
    let s = UdpSocket::bind(local).ok()?;
    s.connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    s.send(datagram).ok()?;
    let mut buf = [0u8; 2048];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// A DNS query for `name`, type A, class IN, recursion desired.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The response code of a DNS reply to query `id`, if it is one.
pub fn dns_rcode(reply: &[u8], id: u16) -> Option<u8> {
    (reply.len() >= 12 && reply[..2] == id.to_be_bytes() && reply[2] & 0x80 != 0)
        .then(|| reply[3] & 0x0f)
}

/// The uid and gid of a system user.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam(3) with a valid C string; the result is read before any other call.
    unsafe {
        let pw = libc::getpwnam(c.as_ptr());
        if pw.is_null() {
            None
        } else {
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    }
}

/// Hands `path` (and nothing below it) to `uid:gid`, readable by it alone.
pub fn chown_private(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// The newest installed PostgreSQL server binary (`/usr/lib/postgresql/N/bin/postgres`).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Some(v) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let bin = e.path().join("bin");
        if bin.join("postgres").exists() && best.as_ref().is_none_or(|(b, _)| v > *b) {
            best = Some((v, bin));
        }
    }
    best.map(|(_, b)| b)
}

/// A random number from the kernel (for throwaway passwords).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("read /dev/urandom");
    u64::from_ne_bytes(b)
}

/// How long a server may take to come up.
pub const READY: Duration = Duration::from_secs(10);

/// The settings of every daemon the server tests start: a check a second, one result decides.
pub const HEAD: &str = "interval 1s\nconnect-timeout 500ms\ntimeout 2s\nfall 1\nrise 1\n";

/// 127.0.0.1:PORT.
pub fn v4(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// [::1]:PORT.
pub fn v6(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::LOCALHOST, port))
}

/// vsftpd on 127.0.0.1:PORT (anonymous read-only access to an empty directory), plus `extra`
/// config lines (TLS settings, limits); returns once it greets.
pub fn vsftpd(port: u16, extra: &str) -> Server {
    let bin = require("/usr/sbin/vsftpd", "vsftpd");
    require_root("vsftpd");
    // vsftpd -v writes its version to standard input.
    print_version("vsftpd", "/usr/sbin/vsftpd -v 0>&1");
    let dir = TempDir::new("vsftpd");
    let empty = dir.0.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let conf = dir.file(
        "vsftpd.conf",
        &format!(
            "listen=YES
listen_ipv6=NO
listen_address=127.0.0.1
listen_port={port}
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={empty}
local_enable=NO
write_enable=NO
secure_chroot_dir={empty}
xferlog_enable=NO
vsftpd_log_file={log}
seccomp_sandbox=NO
{extra}",
            empty = empty.display(),
            log = dir.0.join("vsftpd-xfer.log").display()
        ),
    );
    let mut cmd = Command::new(bin);
    cmd.arg(&conf);
    let mut s = Server::spawn("vsftpd", cmd, dir, libc::SIGTERM);
    s.wait_banner(v4(port), "220 ", READY);
    s
}

/// The TLS side of [`dovecot`]: its certificate chain and key files, and the ports of POP3S
/// and IMAPS.
pub struct DovecotTls<'a> {
    pub crt: &'a Path,
    pub key: &'a Path,
    pub pop3s: u16,
    pub imaps: u16,
}

/// Dovecot with POP3 on 127.0.0.1:POP3 and IMAP on 127.0.0.1:IMAP (and, with `tls`, POP3S
/// and IMAPS, and STARTTLS on the plain ports); nobody can log in. Returns once every port
/// answers.
pub fn dovecot(pop3: u16, imap: u16, tls: Option<DovecotTls>) -> Server {
    let bin = require("/usr/sbin/dovecot", "dovecot-core");
    require("/usr/lib/dovecot/pop3", "dovecot-pop3d");
    require("/usr/lib/dovecot/imap", "dovecot-imapd");
    require_root("dovecot");
    print_version("dovecot", "/usr/sbin/dovecot --version");
    let dir = TempDir::new("dovecot");
    let d = dir.0.display();
    dir.file("no-users", "");
    let (ssl, pop3s, imaps) = match &tls {
        Some(t) => (
            format!(
                "yes\nssl_cert = <{}\nssl_key = <{}",
                t.crt.display(),
                t.key.display()
            ),
            format!("{}\n    ssl = yes", t.pop3s),
            format!("{}\n    ssl = yes", t.imaps),
        ),
        None => ("no".to_string(), "0".to_string(), "0".to_string()),
    };
    let conf = dir.file(
        "dovecot.conf",
        &format!(
            "base_dir = {d}/run
state_dir = {d}/state
log_path = /dev/stderr
protocols = pop3 imap
listen = 127.0.0.1
ssl = {ssl}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {d}/no-users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/home
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
  }}
}}
"
        ),
    );
    let mut cmd = Command::new(bin);
    cmd.arg("-F").arg("-c").arg(&conf);
    let mut s = Server::spawn("dovecot", cmd, dir, libc::SIGTERM);
    s.wait_banner(v4(pop3), "+OK", READY);
    s.wait_banner(v4(imap), "* OK", READY);
    if let Some(t) = &tls {
        s.wait_tcp(v4(t.imaps), READY);
        s.wait_tcp(v4(t.pop3s), READY);
    }
    s
}

/// nginx in the foreground with the `server` blocks `servers` (text for nginx's `http`
/// block, each line indented by two spaces); returns once each of `listening` accepts.
pub fn nginx(servers: &str, listening: &[SocketAddr]) -> Server {
    let bin = require("/usr/sbin/nginx", "nginx-light");
    print_version("nginx", "/usr/sbin/nginx -v");
    let dir = TempDir::new("nginx");
    let d = dir.0.display();
    let conf = dir.file(
        "nginx.conf",
        &format!(
            "pid {d}/nginx.pid;
error_log stderr;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  default_type text/plain;
{servers}}}
"
        ),
    );
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(&dir.0)
        .arg("-e")
        .arg("stderr")
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    let mut s = Server::spawn("nginx", cmd, dir, libc::SIGTERM);
    for &addr in listening {
        s.wait_tcp(addr, READY);
    }
    s
}
