//! The real `lvsmon` binary against real servers from Debian's packages: nginx, OpenSSH,
//! Redis, dnsmasq, aiosmtpd, socat, vsftpd, Dovecot, MariaDB and PostgreSQL.
//!
//! Each test starts its own server(s) from a private minimal config in a temp dir, in the
//! foreground, listening on 127.0.0.1 (and ::1 where it says so) on a free port, waits for it
//! with a bounded loop, runs `lvsmon --dry-run -v` against it and reads the `check` and
//! `event` lines; the server is stopped by pid (and its process group) when its guard drops.
//! The virtual addresses (`127.2.T.N:80`, `[::1]:PORT`) are never contacted in dry-run.
//!
//! `.ci/install-servers` installs the packages; without them every test here fails, naming it.
//! The first use of each server prints its version (`server NAME: ...`) to stderr.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::lvsmon::{field, Lvsmon, TempDir};
use common::servers::{
    chown_private, dns_query, dns_rcode, dovecot, first_bytes, free_port, postgres_bin_dir,
    print_version, random_u64, require, require_root, user_ids, v4, v6, vsftpd, Server, HEAD,
    INSTALL_HINT, READY,
};

const S: Duration = Duration::from_secs(1);

/// A daemon config under construction: one virtual service per case.
struct Conf(String);

impl Conf {
    fn new() -> Conf {
        Conf(HEAD.to_string())
    }

    /// Adds `virtual PROTO VIP { CHECK; real REAL }` and returns the virtual's log name.
    fn add(&mut self, proto: &str, vip: &str, check: &str, real: SocketAddr) -> Virt {
        self.0.push_str(&format!(
            "virtual {proto} {vip} {{\n  {check}\n  real {real}\n}}\n"
        ));
        Virt {
            virt: format!("virtual={proto}:{vip} "),
            real: format!("real={real} "),
        }
    }
}

/// How the events of one virtual service and its real server are found.
struct Virt {
    virt: String,
    real: String,
}

/// Waits for the `event=up` of `v`.
#[track_caller]
fn up(d: &mut Lvsmon, v: &Virt) -> String {
    d.wait_seen(&["event=up ", &v.virt, &v.real], 8 * S)
}

/// Waits for the `event=down` of `v`, checks its reason and returns its detail.
#[track_caller]
fn down(d: &mut Lvsmon, v: &Virt, reason: &str) -> String {
    let ev = d.wait_seen(&["event=down ", &v.virt, &v.real], 8 * S);
    assert_eq!(field(&ev, "reason"), Some(reason), "{ev}");
    field(&ev, "detail").unwrap_or("").to_string()
}

/// Where the daemon's lines from now on begin (for [`wait_after`]).
fn mark(d: &mut Lvsmon) -> usize {
    d.collect_for(Duration::ZERO);
    d.seen().len()
}

/// Stops `server` and returns where the daemon's lines from then on begin.
fn stop(d: &mut Lvsmon, server: &mut Server) -> usize {
    let mark = mark(d);
    server.stop();
    mark
}

/// Waits for a line with every one of `parts` that came at or after `mark`.
#[track_caller]
fn wait_after(d: &mut Lvsmon, mark: usize, parts: &[&str]) -> String {
    let old = d.seen()[mark..]
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)));
    match old {
        Some(l) => l.clone(),
        None => d.wait_for(parts, 8 * S),
    }
}

/// After the server behind `v` (at `target`) was stopped (at line `mark`): `v` goes down, and
/// checks of `target` fail with `connect-refused`. The down event itself may name another
/// reason when its check raced the server's shutdown: `reset` (a connection the kernel had
/// queued when the last listener closed), `closed`, or `recv-timeout` (a datagram taken but
/// not answered).
#[track_caller]
fn stopped(d: &mut Lvsmon, mark: usize, v: &Virt, target: SocketAddr) {
    let ev = wait_after(d, mark, &["event=down ", &v.virt, &v.real]);
    let reason = field(&ev, "reason").unwrap_or("");
    assert!(
        ["connect-refused", "reset", "closed", "recv-timeout"].contains(&reason),
        "{ev}"
    );
    let target = format!(" target={target} ");
    wait_after(
        d,
        mark,
        &["check ", &target, " result=fail reason=connect-refused "],
    );
}

/// Waits for a `check` line of `plugin` against `target` with `result`.
#[track_caller]
fn check_line(d: &mut Lvsmon, target: SocketAddr, plugin: &str, result: &str) -> String {
    d.wait_seen(
        &[
            "check ",
            &format!(" target={target} "),
            &format!(" plugin={plugin} "),
            &format!(" result={result}"),
        ],
        8 * S,
    )
}

/// Stops the daemon and checks that it exits cleanly.
#[track_caller]
fn finish(mut d: Lvsmon) {
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "lvsmon exit; last lines:\n{}", tail(&d));
}

fn tail(d: &Lvsmon) -> String {
    let s = d.seen();
    s[s.len().saturating_sub(30)..].join("\n")
}

/// Opens a connection to `addr` whose greeting starts with `prefix`, and keeps it open until
/// the stream is dropped. Tries for up to 5 s: a server that admits one connection at a time
/// may be busy with a check of lvsmon's, or not have counted the last one out yet.
#[track_caller]
fn hold_connection(addr: SocketAddr, prefix: &str) -> TcpStream {
    let end = Instant::now() + 5 * S;
    loop {
        let mut s = TcpStream::connect_timeout(&addr, 2 * S).expect("connect");
        s.set_read_timeout(Some(2 * S)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < prefix.len() {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        if got.starts_with(prefix.as_bytes()) {
            return s;
        }
        assert!(
            Instant::now() < end,
            "no greeting {prefix:?} from {addr} within 5 s; last: {:?}",
            String::from_utf8_lossy(&got)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------------

/// nginx on 127.0.0.1:PORT and [::1]:PORT. The default server answers `/health` with `OK`,
/// `/bad` with 503, `/degraded` with a body without `OK`, anything else with 404; the server
/// named `only.example` answers everything with 200 `only`.
fn nginx(port: u16) -> Server {
    common::servers::nginx(
        &format!(
            "  server {{
    listen 127.0.0.1:{port} default_server;
    listen [::1]:{port} default_server;
    location = /health {{ return 200 \"OK\\n\"; }}
    location = /bad {{ return 503; }}
    location = /degraded {{ return 200 \"degraded\\n\"; }}
    location / {{ return 404; }}
  }}
  server {{
    listen 127.0.0.1:{port};
    listen [::1]:{port};
    server_name only.example;
    location / {{ return 200 \"only\\n\"; }}
  }}
"
        ),
        &[v4(port), v6(port)],
    )
}

/// OpenSSH's sshd on 127.0.0.1:PORT with a host key made for the test, plus `extra` config
/// lines; nobody can log in.
fn sshd(port: u16, extra: &str) -> Server {
    let bin = require("/usr/sbin/sshd", "openssh-server");
    let keygen = require("/usr/bin/ssh-keygen", "openssh-client");
    require_root("sshd");
    print_version("sshd", "/usr/sbin/sshd -V");
    // Privilege separation needs this directory (the package's service would create it).
    std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
    let dir = TempDir::new("sshd");
    let key = dir.0.join("host_ed25519");
    let st = Command::new(keygen)
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen: {st}");
    let conf = dir.file(
        "sshd_config",
        &format!(
            "ListenAddress 127.0.0.1:{port}
HostKey {key}
PidFile {pid}
UsePAM no
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication no
AuthorizedKeysFile none
{extra}",
            key = key.display(),
            pid = dir.0.join("sshd.pid").display()
        ),
    );
    let mut cmd = Command::new(bin);
    cmd.arg("-D").arg("-e").arg("-f").arg(&conf);
    let mut s = Server::spawn("sshd", cmd, dir, libc::SIGTERM);
    s.wait_banner(v4(port), "SSH-2.0-", READY);
    s
}

/// redis-server on 127.0.0.1:PORT, nothing saved, plus `extra` arguments.
fn redis(port: u16, extra: &[&str]) -> Server {
    let bin = require("/usr/bin/redis-server", "redis-server");
    print_version("redis", "/usr/bin/redis-server --version");
    let dir = TempDir::new("redis");
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(&dir.0)
        .args(extra);
    let mut s = Server::spawn("redis-server", cmd, dir, libc::SIGTERM);
    s.wait_log("Ready to accept connections", READY);
    s.wait_tcp(v4(port), READY);
    s
}

/// dnsmasq on 127.0.0.1:PORT and [::1]:PORT (UDP, and TCP as it always does), no upstream:
/// `ok.test` is 192.0.2.7 and 2001:db8::7, every other name under `test` is NXDOMAIN.
fn dnsmasq(port: u16) -> Server {
    let bin = require("/usr/sbin/dnsmasq", "dnsmasq-base");
    print_version("dnsmasq", "/usr/sbin/dnsmasq --version");
    let dir = TempDir::new("dnsmasq");
    let mut cmd = Command::new(bin);
    cmd.args(["--no-daemon", "--conf-file=/dev/null", "--log-facility=-"])
        .arg(format!("--port={port}"))
        .args(["--listen-address=127.0.0.1,::1", "--bind-interfaces"])
        .args(["--no-resolv", "--no-hosts", "--no-poll", "--local=/test/"])
        .args([
            "--address=/ok.test/192.0.2.7",
            "--address=/ok.test/2001:db8::7",
        ]);
    let mut s = Server::spawn("dnsmasq", cmd, dir, libc::SIGTERM);
    for addr in [v4(port), v6(port)] {
        s.wait_udp(addr, &dns_query(0x4c56, "ok.test"), READY, |r| {
            dns_rcode(r, 0x4c56) == Some(0)
        });
    }
    s
}

/// Python's aiosmtpd (Debian's python3-aiosmtpd) on 127.0.0.1:PORT.
fn aiosmtpd(port: u16) -> Server {
    let python = require("/usr/bin/python3", "python3");
    require(
        "/usr/lib/python3/dist-packages/aiosmtpd/__init__.py",
        "python3-aiosmtpd",
    );
    print_version("aiosmtpd", "/usr/bin/python3 -m aiosmtpd --version");
    let dir = TempDir::new("aiosmtpd");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&dir.0);
    let mut s = Server::spawn("aiosmtpd", cmd, dir, libc::SIGTERM);
    s.wait_banner(v4(port), "220 ", READY);
    s
}

/// socat echoing every UDP datagram sent to 127.0.0.1:PORT (one child per datagram, gone
/// after a second of silence).
fn udp_echo(port: u16) -> Server {
    let bin = require("/usr/bin/socat", "socat");
    print_version("socat", "/usr/bin/socat -V | grep 'socat version'");
    let dir = TempDir::new("socat");
    let mut cmd = Command::new(bin);
    cmd.args(["-T", "1"])
        .arg(format!("UDP4-RECVFROM:{port},bind=127.0.0.1,fork"))
        .arg("EXEC:cat");
    let mut s = Server::spawn("socat", cmd, dir, libc::SIGTERM);
    s.wait_udp(v4(port), b"ready?", READY, |r| r == b"ready?");
    s
}

/// socat taking every UDP datagram sent to 127.0.0.1:PORT and answering none.
fn udp_sink(port: u16) -> Server {
    let bin = require("/usr/bin/socat", "socat");
    let dir = TempDir::new("socat-sink");
    let mut cmd = Command::new(bin);
    cmd.args(["-d", "-d", "-u"])
        .arg(format!("UDP4-RECV:{port},bind=127.0.0.1"))
        .arg("OPEN:/dev/null");
    let mut s = Server::spawn("socat-sink", cmd, dir, libc::SIGTERM);
    s.wait_log("starting data transfer loop", READY);
    s
}

/// MariaDB's InnoDB files kept small: the default redo log alone is 96 MiB.
const MARIADB_SMALL: [&str; 2] = ["--innodb-log-file-size=4M", "--innodb-buffer-pool-size=8M"];

/// A MariaDB data directory made by `mariadb-install-db` (in `DIR/data`).
fn mariadb_data() -> TempDir {
    let install = require("/usr/bin/mariadb-install-db", "mariadb-server");
    require_root("mariadbd --user=root");
    print_version("mariadb", "/usr/sbin/mariadbd --version");
    let dir = TempDir::new("mariadb");
    let out = Command::new(install)
        .args(["--no-defaults", "--user=root", "--skip-test-db"])
        .arg(format!("--datadir={}", dir.0.join("data").display()))
        .args(MARIADB_SMALL)
        .output()
        .expect("run mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// mariadbd on 127.0.0.1:PORT over the data directory `data`, plus `extra` arguments.
fn mariadbd(data: &TempDir, port: u16, extra: &[&str]) -> Server {
    let bin = require("/usr/sbin/mariadbd", "mariadb-server");
    let dir = TempDir::new("mariadbd");
    let mut cmd = Command::new(bin);
    cmd.args(["--no-defaults", "--user=root", "--bind-address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--datadir={}", data.0.join("data").display()))
        .arg(format!("--socket={}", dir.0.join("mysqld.sock").display()))
        .arg(format!("--pid-file={}", dir.0.join("mysqld.pid").display()))
        .arg("--skip-log-bin")
        .args(MARIADB_SMALL)
        .args(extra);
    let mut s = Server::spawn("mariadbd", cmd, dir, libc::SIGTERM);
    // The server speaks first: a packet of 3-byte length, sequence 0, then the handshake
    // (protocol 10) or, for a client it refuses, an ERR packet (0xff).
    s.wait_ready("sending its first packet", READY, || {
        first_bytes(v4(port), 5).is_some_and(|b| b.len() == 5 && b[3] == 0)
    });
    s
}

/// PostgreSQL on 127.0.0.1 (TCP only), run as the `postgres` user with a cluster made for the
/// test whose only user has a random password; returns it and its port.
fn postgres() -> (Server, u16) {
    let bindir = postgres_bin_dir()
        .unwrap_or_else(|| panic!("no /usr/lib/postgresql/N/bin/postgres: {INSTALL_HINT}"));
    require_root("postgres (run as the postgres user)");
    let (uid, gid) = user_ids("postgres")
        .unwrap_or_else(|| panic!("no user postgres (package postgresql): {INSTALL_HINT}"));
    print_version(
        "postgres",
        &format!("{} --version", bindir.join("postgres").display()),
    );
    let dir = TempDir::new("pgsql");
    let data = dir.0.join("data");
    std::fs::create_dir(&data).unwrap();
    chown_private(&data, uid, gid);
    let pwfile = dir.file("pw", &format!("{:x}\n", random_u64()));
    chown_private(&pwfile, uid, gid);
    use std::os::unix::process::CommandExt;
    let out = Command::new(bindir.join("initdb"))
        .args(["-N", "-A", "scram-sha-256", "-U", "postgres", "--no-locale"])
        .args(["-E", "UTF8"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .arg("-D")
        .arg(&data)
        .current_dir(&dir.0)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run initdb");
    assert!(
        out.status.success(),
        "initdb: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut cmd = Command::new(bindir.join("postgres"));
    cmd.arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "unix_socket_directories=", "-c", "fsync=off"])
        .args(["-c", "shared_buffers=8MB", "-c", "max_connections=10"])
        .current_dir(&dir.0)
        .uid(uid)
        .gid(gid);
    // SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for clients to leave).
    let mut s = Server::spawn("postgres", cmd, dir, libc::SIGINT);
    s.wait_log("ready to accept connections", READY);
    s.wait_tcp(v4(port), READY);
    (s, port)
}

// ---------------------------------------------------------------------------------------------
// nginx: http
// ---------------------------------------------------------------------------------------------

/// `check http` against nginx over IPv4 and IPv6: status and body pass, a 503 and a body
/// without the text fail, the `Host` from `--url` picks nginx's virtual server, HEAD and
/// HTTP/1.0 work; nginx stopped, the passing ones go down with `connect-refused`.
#[test]
fn nginx_http_over_ipv4_and_ipv6() {
    let port = free_port();
    let mut ng = nginx(port);
    let mut c = Conf::new();
    let health = "check http --url http://x/health --expect 200 --match OK";
    let ok4 = c.add("tcp", "127.2.1.1:80", health, v4(port));
    let ok6 = c.add("tcp", "[::1]:10801", health, v6(port));
    let bad = c.add(
        "tcp",
        "127.2.1.2:80",
        "check http --url http://x/bad --expect 200",
        v4(port),
    );
    let nope = c.add(
        "tcp",
        "127.2.1.3:80",
        "check http --url http://x/health --expect 200 --match NOPE",
        v4(port),
    );
    let degraded = c.add(
        "tcp",
        "[::1]:10803",
        "check http --url http://x/degraded --match OK",
        v6(port),
    );
    let named = c.add(
        "tcp",
        "127.2.1.4:80",
        "check http --url http://only.example/ --match only",
        v4(port),
    );
    let unnamed = c.add(
        "tcp",
        "127.2.1.5:80",
        "check http --url http://x/",
        v4(port),
    );
    let head = c.add(
        "tcp",
        "127.2.1.6:80",
        "check http --url http://x/health --method HEAD --version 1.0 --expect 200",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    for v in [&ok4, &ok6, &named, &head] {
        up(&mut d, v);
    }
    assert_eq!(down(&mut d, &bad, "http-status"), "503");
    down(&mut d, &nope, "body-mismatch");
    down(&mut d, &degraded, "body-mismatch");
    assert_eq!(down(&mut d, &unnamed, "http-status"), "404");
    check_line(&mut d, v4(port), "http", "pass");
    check_line(&mut d, v6(port), "http", "pass");
    let l = check_line(&mut d, v4(port), "http", "fail reason=http-status");
    assert!(l.contains("duration="), "{l}");

    let mark = stop(&mut d, &mut ng);
    for v in [&ok4, &ok6, &named, &head] {
        let target = if v.real.contains('[') {
            v6(port)
        } else {
            v4(port)
        };
        stopped(&mut d, mark, v, target);
    }
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// OpenSSH: banner and the ssh preset
// ---------------------------------------------------------------------------------------------

/// `check banner` against sshd: `SSH-2.0-` passes, `SSH-1.99` fails with the real banner as
/// detail.
#[test]
fn sshd_banner() {
    let port = free_port();
    let _sshd = sshd(port, "");
    let mut c = Conf::new();
    let good = c.add(
        "tcp",
        "127.2.2.1:22",
        "check banner --expect SSH-2.0-",
        v4(port),
    );
    let old = c.add(
        "tcp",
        "127.2.2.2:22",
        "check banner --expect SSH-1.99",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &good);
    let detail = down(&mut d, &old, "banner-mismatch");
    assert!(detail.starts_with("SSH-2.0-OpenSSH_"), "detail {detail:?}");
    check_line(&mut d, v4(port), "banner", "pass");
    finish(d);
}

/// `check ssh` against an sshd that takes one unauthenticated connection at a time
/// (`MaxStartups 1`): while the test holds one, sshd turns the check away with `Exceeded
/// MaxStartups` instead of its banner, which fails with `banner-mismatch`; released, the real
/// comes back.
#[test]
fn sshd_max_startups() {
    let port = free_port();
    let _sshd = sshd(port, "MaxStartups 1\n");
    let mut c = Conf::new();
    let ssh = c.add("tcp", "127.2.16.1:22", "check ssh", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &ssh);
    let held = mark(&mut d);
    let hold = hold_connection(v4(port), "SSH-2.0-");
    let ev = wait_after(&mut d, held, &["event=down ", &ssh.virt, &ssh.real]);
    assert_eq!(field(&ev, "reason"), Some("banner-mismatch"), "{ev}");
    assert_eq!(field(&ev, "detail"), Some("Exceeded MaxStartups"), "{ev}");
    drop(hold);
    d.wait_for(&["event=up ", &ssh.virt, &ssh.real], 8 * S);
    finish(d);
}

/// `check ssh` (the preset) against sshd passes; sshd stopped, `connect-refused`.
#[test]
fn sshd_ssh_preset() {
    let port = free_port();
    let mut sshd = sshd(port, "");
    let mut c = Conf::new();
    let ssh = c.add("tcp", "127.2.3.1:22", "check ssh", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &ssh);
    let mark = stop(&mut d, &mut sshd);
    stopped(&mut d, mark, &ssh, v4(port));
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// Redis: script and the redis preset
// ---------------------------------------------------------------------------------------------

/// `check script --send PING --expect +PONG` against redis-server passes, and fails with
/// `expect-mismatch` (NOAUTH) against one that wants a password.
#[test]
fn redis_script_ping() {
    let (open_port, locked_port) = (free_port(), free_port());
    let _open = redis(open_port, &[]);
    let _locked = redis(locked_port, &["--requirepass", "x"]);
    let ping = "check script --send \"PING\\r\\n\" --expect +PONG";
    let mut c = Conf::new();
    let open = c.add("tcp", "127.2.4.1:6379", ping, v4(open_port));
    let locked = c.add("tcp", "127.2.4.2:6379", ping, v4(locked_port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &open);
    let detail = down(&mut d, &locked, "expect-mismatch");
    assert!(detail.contains("NOAUTH"), "detail {detail:?}");
    finish(d);
}

/// `check redis` (the preset) passes against redis-server, fails with `expect-mismatch`
/// (NOAUTH) when it wants a password, and with `connect-refused` once it is stopped.
#[test]
fn redis_preset() {
    let (open_port, locked_port) = (free_port(), free_port());
    let mut open_srv = redis(open_port, &[]);
    let _locked = redis(locked_port, &["--requirepass", "x"]);
    let mut c = Conf::new();
    let open = c.add("tcp", "127.2.5.1:6379", "check redis", v4(open_port));
    let locked = c.add("tcp", "127.2.5.2:6379", "check redis", v4(locked_port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &open);
    let detail = down(&mut d, &locked, "expect-mismatch");
    assert!(detail.contains("NOAUTH"), "detail {detail:?}");
    let mark = stop(&mut d, &mut open_srv);
    stopped(&mut d, mark, &open, v4(open_port));
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// dnsmasq: dns
// ---------------------------------------------------------------------------------------------

/// `check dns` against dnsmasq over IPv4 and IPv6: the right address passes (A and AAAA),
/// NXDOMAIN fails with `dns-rcode` unless it is expected; dnsmasq stopped, the kernel's ICMP
/// port unreachable gives `connect-refused`.
#[test]
fn dnsmasq_dns() {
    let port = free_port();
    let mut dns = dnsmasq(port);
    let mut c = Conf::new();
    let a = c.add(
        "udp",
        "127.2.6.1:53",
        "check dns --query ok.test --expect-address 192.0.2.7",
        v4(port),
    );
    let aaaa = c.add(
        "udp",
        "[::1]:10601",
        "check dns --query ok.test --type AAAA --expect-address 2001:db8::7",
        v6(port),
    );
    let missing = c.add(
        "udp",
        "127.2.6.2:53",
        "check dns --query missing.test",
        v4(port),
    );
    let nx = c.add(
        "udp",
        "127.2.6.3:53",
        "check dns --query missing.test --expect-rcode NXDOMAIN",
        v4(port),
    );
    let either = c.add(
        "udp",
        "127.2.6.4:53",
        "check dns --query missing.test --type A --expect-rcode NOERROR,NXDOMAIN",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    for v in [&a, &aaaa, &nx, &either] {
        up(&mut d, v);
    }
    assert_eq!(down(&mut d, &missing, "dns-rcode"), "NXDOMAIN");
    check_line(&mut d, v4(port), "dns", "pass");
    check_line(&mut d, v6(port), "dns", "pass");

    let mark = stop(&mut d, &mut dns);
    stopped(&mut d, mark, &a, v4(port));
    stopped(&mut d, mark, &aaaa, v6(port));
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// aiosmtpd: banner, script and the smtp preset
// ---------------------------------------------------------------------------------------------

/// `check banner` and an SMTP `check script` dialogue (multi-line EHLO reply) against
/// aiosmtpd pass; a HELO without a name fails with the server's 501 as detail.
#[test]
fn smtp_banner_and_script() {
    let port = free_port();
    let _smtp = aiosmtpd(port);
    let mut c = Conf::new();
    let banner = c.add(
        "tcp",
        "127.2.7.1:25",
        "check banner --expect \"220 \" --send \"QUIT\\r\\n\"",
        v4(port),
    );
    let ehlo = c.add(
        "tcp",
        "127.2.7.2:25",
        "check script --expect 220 --send \"EHLO lvsmon.test\\r\\n\" --expect 250 \
         --send \"QUIT\\r\\n\" --expect 221",
        v4(port),
    );
    let helo = c.add(
        "tcp",
        "127.2.7.3:25",
        "check script --expect 220 --send \"HELO\\r\\n\" --expect 250",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &banner);
    up(&mut d, &ehlo);
    let detail = down(&mut d, &helo, "expect-mismatch");
    assert!(detail.starts_with("step 3: 501"), "detail {detail:?}");
    finish(d);
}

/// `check smtp` (the preset) against aiosmtpd passes; the server stopped, `connect-refused`.
#[test]
fn smtp_preset() {
    let port = free_port();
    let mut smtp = aiosmtpd(port);
    let mut c = Conf::new();
    let v = c.add("tcp", "127.2.8.1:25", "check smtp", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &v);
    let mark = stop(&mut d, &mut smtp);
    stopped(&mut d, mark, &v, v4(port));
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// socat: udp
// ---------------------------------------------------------------------------------------------

/// `check udp` against a socat echo server: the echo passes (`--expect`, `--expect-prefix`),
/// another text fails with `expect-mismatch`, a port where nothing listens and the echo server
/// once stopped give `connect-refused`, and a socat that takes datagrams without answering
/// gives `recv-timeout`.
#[test]
fn udp_echo_socat() {
    let (port, nobody, silent_port) = (free_port(), free_port(), free_port());
    let mut echo = udp_echo(port);
    let _sink = udp_sink(silent_port);
    let mut c = Conf::new();
    let ping = c.add(
        "udp",
        "127.2.9.1:7",
        "check udp --send ping --expect ping",
        v4(port),
    );
    let prefix = c.add(
        "udp",
        "127.2.9.2:7",
        "check udp --send \"ping 42\" --expect-prefix \"ping \"",
        v4(port),
    );
    let pong = c.add(
        "udp",
        "127.2.9.3:7",
        "check udp --send ping --expect pong",
        v4(port),
    );
    let none = c.add(
        "udp",
        "127.2.9.4:7",
        "check udp --send ping --expect ping",
        v4(nobody),
    );
    let silent = c.add(
        "udp",
        "127.2.9.5:7",
        "check udp --send ping --expect ping",
        v4(silent_port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &ping);
    up(&mut d, &prefix);
    down(&mut d, &pong, "expect-mismatch");
    down(&mut d, &none, "connect-refused");
    down(&mut d, &silent, "recv-timeout");
    check_line(&mut d, v4(port), "udp", "pass");
    let mark = stop(&mut d, &mut echo);
    stopped(&mut d, mark, &ping, v4(port));
    finish(d);
}

// ---------------------------------------------------------------------------------------------
// vsftpd, Dovecot, MariaDB, PostgreSQL: the presets
// ---------------------------------------------------------------------------------------------

/// An FTP `check script` dialogue against vsftpd passes (no preset needed); one that expects
/// the wrong greeting fails with vsftpd's as detail.
#[test]
fn vsftpd_ftp_script() {
    let port = free_port();
    let _ftp = vsftpd(port, "");
    let mut c = Conf::new();
    let script = c.add(
        "tcp",
        "127.2.10.1:21",
        "check script --expect \"220 \" --send \"QUIT\\r\\n\" --expect 221",
        v4(port),
    );
    let wrong = c.add(
        "tcp",
        "127.2.10.2:21",
        "check script --expect \"220 \" --send \"QUIT\\r\\n\" --expect 250",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &script);
    let detail = down(&mut d, &wrong, "expect-mismatch");
    assert!(detail.starts_with("step 3: 221"), "detail {detail:?}");
    finish(d);
}

/// `check ftp` (the preset) against vsftpd passes; while the test holds the one connection
/// vsftpd allows from 127.0.0.1 (`max_per_ip=1`) its `421` fails the check with
/// `expect-mismatch`, and the real comes back once that connection is closed; vsftpd stopped,
/// `connect-refused`.
#[test]
fn vsftpd_ftp_preset() {
    let port = free_port();
    let mut ftp = vsftpd(port, "max_per_ip=1\n");
    let mut c = Conf::new();
    let preset = c.add("tcp", "127.2.15.1:21", "check ftp", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &preset);

    let held = mark(&mut d);
    let hold = hold_connection(v4(port), "220 ");
    let ev = wait_after(&mut d, held, &["event=down ", &preset.virt, &preset.real]);
    assert_eq!(field(&ev, "reason"), Some("expect-mismatch"), "{ev}");
    assert!(
        field(&ev, "detail")
            .unwrap_or("")
            .starts_with("step 1: 421"),
        "{ev}"
    );
    drop(hold);
    d.wait_for(&["event=up ", &preset.virt, &preset.real], 8 * S);

    let mark = stop(&mut d, &mut ftp);
    stopped(&mut d, mark, &preset, v4(port));
    finish(d);
}

/// POP3 and IMAP `check script` dialogues against Dovecot pass (no preset needed).
#[test]
fn dovecot_pop3_imap_scripts() {
    let (pop3, imap) = (free_port(), free_port());
    let _dovecot = dovecot(pop3, imap, None);
    let mut c = Conf::new();
    let p = c.add(
        "tcp",
        "127.2.11.1:110",
        "check script --expect +OK --send \"QUIT\\r\\n\" --expect +OK",
        v4(pop3),
    );
    let i = c.add(
        "tcp",
        "127.2.11.2:143",
        "check script --expect \"* OK\" --send \"a1 LOGOUT\\r\\n\" --expect \"* BYE\" \
         --expect \"a1 OK\"",
        v4(imap),
    );
    let wrong = c.add(
        "tcp",
        "127.2.11.3:143",
        "check banner --expect +OK",
        v4(imap),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &p);
    up(&mut d, &i);
    let detail = down(&mut d, &wrong, "banner-mismatch");
    assert!(detail.starts_with("* OK"), "detail {detail:?}");
    finish(d);
}

/// `check pop3` and `check imap` (the presets) against Dovecot pass; Dovecot stopped,
/// `connect-refused`.
#[test]
fn dovecot_pop3_imap_presets() {
    let (pop3, imap) = (free_port(), free_port());
    let mut dovecot = dovecot(pop3, imap, None);
    let mut c = Conf::new();
    let p = c.add("tcp", "127.2.12.1:110", "check pop3", v4(pop3));
    let i = c.add("tcp", "127.2.12.2:143", "check imap", v4(imap));
    // The presets are the right way round: POP3's against IMAP fails.
    let crossed = c.add("tcp", "127.2.12.3:143", "check pop3", v4(imap));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &p);
    up(&mut d, &i);
    let detail = down(&mut d, &crossed, "expect-mismatch");
    assert!(detail.starts_with("step 1: * OK"), "detail {detail:?}");
    let mark = stop(&mut d, &mut dovecot);
    stopped(&mut d, mark, &p, v4(pop3));
    stopped(&mut d, mark, &i, v4(imap));
    finish(d);
}

/// `check mysql` (the preset) against MariaDB passes; MariaDB stopped, `connect-refused`;
/// restarted with `--skip-name-resolve`, under which 127.0.0.1 matches no account, it answers
/// with an ERR packet (1130, host not allowed) and the check fails with `expect-mismatch`.
#[test]
fn mariadb_mysql_preset() {
    let data = mariadb_data();
    let port = free_port();
    let mut db = mariadbd(&data, port, &[]);
    let mut c = Conf::new();
    let v = c.add("tcp", "127.2.13.1:3306", "check mysql", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &v);
    let mark = stop(&mut d, &mut db);
    stopped(&mut d, mark, &v, v4(port));

    let _refusing = mariadbd(&data, port, &["--skip-name-resolve"]);
    let l = d.wait_for(
        &[
            "check ",
            &format!(" target={} ", v4(port)),
            " reason=expect-mismatch ",
        ],
        8 * S,
    );
    let detail = field(&l, "detail").unwrap_or("");
    assert!(detail.starts_with("step 2: 00 ff 6a 04"), "{l}");
    finish(d);
}

/// `check pgsql` (the preset) against PostgreSQL passes; PostgreSQL stopped,
/// `connect-refused`.
#[test]
fn postgres_pgsql_preset() {
    let (mut db, port) = postgres();
    let mut c = Conf::new();
    let v = c.add("tcp", "127.2.14.1:5432", "check pgsql", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &v);
    let mark = stop(&mut d, &mut db);
    stopped(&mut d, mark, &v, v4(port));
    finish(d);
}
