//! TLS checks (`https`, `tls`) through the TLS helper process, against nginx (Debian's
//! package, with `ssl` and `http2`) serving certificates of a test CA made here: a root, an
//! intermediate, and leaf certificates that are valid (signed by the intermediate: a chain),
//! expired, not yet valid, for another name, self-signed, or expiring in a few days.
//!
//! Each test starts its own nginx on loopback on free ports, runs `lvsmon --dry-run -v`
//! against it and reads the `check` and `event` lines; every process is stopped by pid.
//! `.ci/install-servers` installs nginx.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::lvsmon::{field, Lvsmon, TempDir};
use common::servers::{
    dovecot, free_port, print_version, require, v4, v6, vsftpd, DovecotTls, Server, HEAD, READY,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const S: Duration = Duration::from_secs(1);

/// The test CA's files: `ca.pem` (the root), and for each leaf NAME `NAME.crt` (the leaf,
/// then the intermediate when it has one) and `NAME.key`.
struct Pki {
    dir: TempDir,
}

/// Today plus `days`, midnight UTC (whole days: certificate dates here are coarse).
fn day(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian).
    let z = now / 86_400 + days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y as i32, m as u8, d as u8)
}

macro_rules! days_from_now {
    ($n:expr) => {{
        let (y, m, d) = day($n);
        rcgen::date_time_ymd(y, m, d)
    }};
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("pki");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "lvsmon test root");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = days_from_now!(-3650);
        ca.not_after = days_from_now!(3650);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        dir.file("ca.pem", &ca_cert.pem());
        let root = Issuer::new(ca, ca_key);

        let mid_key = KeyPair::generate().unwrap();
        let mut mid = CertificateParams::new(Vec::<String>::new()).unwrap();
        mid.distinguished_name
            .push(DnType::CommonName, "lvsmon test intermediate");
        mid.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        mid.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        mid.not_before = days_from_now!(-3650);
        mid.not_after = days_from_now!(3650);
        let mid_cert = mid.signed_by(&mid_key, &root).unwrap();
        let mid_pem = mid_cert.pem();
        let inter = Issuer::new(mid, mid_key);

        // (file name, certificate name, valid from, valid to, signer)
        let leaves: [(&str, &str, i64, i64, u8); 7] = [
            ("a", "a.example", -1, 365, 1),
            ("b", "b.example", -1, 365, 1),
            ("expired", "expired.example", -60, -1, 1),
            ("notyet", "notyet.example", 30, 365, 1),
            ("wrong", "other.example", -1, 365, 1),
            ("self", "self.example", -1, 365, 0),
            ("soon", "soon.example", -1, 5, 1),
        ];
        for (file, name, from, to, signer) in leaves {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, name);
            p.not_before = days_from_now!(from);
            p.not_after = days_from_now!(to);
            let pem = match signer {
                1 => format!("{}{}", p.signed_by(&key, &inter).unwrap().pem(), mid_pem),
                _ => p.self_signed(&key).unwrap().pem(),
            };
            dir.file(&format!("{file}.crt"), &pem);
            dir.file(&format!("{file}.key"), &key.serialize_pem());
        }
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    fn ca(&self) -> String {
        self.path("ca.pem").display().to_string()
    }
}

/// nginx with TLS on 127.0.0.1:`port` (one `server` per leaf, by `server_name`; `a.example`
/// is the default one, with `http2`), and plain HTTP on 127.0.0.1:`plain`. `/health` answers
/// `OK`, `/bad` 503, and `/` the server's own name.
fn nginx_tls(pki: &Pki, port: u16, plain: u16) -> Server {
    let mut servers = String::new();
    for (i, (file, name)) in [
        ("a", "a.example"),
        ("b", "b.example"),
        ("expired", "expired.example"),
        ("notyet", "notyet.example"),
        ("wrong", "wrong.example"),
        ("self", "self.example"),
        ("soon", "soon.example"),
    ]
    .into_iter()
    .enumerate()
    {
        let default = if i == 0 { " default_server" } else { "" };
        servers.push_str(&format!(
            "  server {{
    listen 127.0.0.1:{port} ssl http2{default};
    listen [::1]:{port} ssl http2{default};
    server_name {name};
    ssl_certificate {crt};
    ssl_certificate_key {key};
    location = /health {{ return 200 \"OK\\n\"; }}
    location = /bad {{ return 503; }}
    location / {{ return 200 \"{name}\\n\"; }}
  }}
",
            crt = pki.path(&format!("{file}.crt")).display(),
            key = pki.path(&format!("{file}.key")).display(),
        ));
    }
    servers.push_str(&format!(
        "  server {{
    listen 127.0.0.1:{plain};
    location / {{ return 200 \"plain\\n\"; }}
  }}
"
    ));
    common::servers::nginx(&servers, &[v4(port), v6(port), v4(plain)])
}

/// One virtual service per case.
struct Conf(String, u32);

struct Virt {
    virt: String,
    real: String,
}

impl Conf {
    fn new() -> Conf {
        Conf(HEAD.to_string(), 0)
    }

    fn add(&mut self, check: &str, real: SocketAddr) -> Virt {
        self.1 += 1;
        // Never contacted (dry-run); of the real's family.
        let vip = if real.is_ipv6() {
            format!("[fd00::3:{:x}]:443", self.1)
        } else {
            format!("127.3.{}.{}:443", self.1 / 200, self.1 % 200 + 1)
        };
        self.0.push_str(&format!(
            "virtual tcp {vip} {{\n  {check}\n  real {real}\n}}\n"
        ));
        Virt {
            virt: format!("virtual=tcp:{vip} "),
            real: format!("real={real} "),
        }
    }
}

#[track_caller]
fn up(d: &mut Lvsmon, v: &Virt) {
    d.wait_seen(&["event=up ", &v.virt, &v.real], 8 * S);
}

#[track_caller]
fn down(d: &mut Lvsmon, v: &Virt, reason: &str) -> String {
    let ev = d.wait_seen(&["event=down ", &v.virt, &v.real], 8 * S);
    assert_eq!(field(&ev, "reason"), Some(reason), "{ev}");
    field(&ev, "detail").unwrap_or("").to_string()
}

#[track_caller]
fn finish(mut d: Lvsmon) {
    let (code, _) = d.stop();
    assert_eq!(code, Some(0), "lvsmon exit");
}

/// `https` and `tls` against nginx, over IPv4 and IPv6: SNI picks the server (two names on one port, each its own
/// certificate and body); status and body judged through TLS; a chain through an
/// intermediate verifies against the root; expired, not yet valid, wrong name and
/// self-signed certificates fail `--verify` with their reasons and pass without it;
/// `--min-days` fails a certificate that expires sooner; ALPN; plain HTTP on the port checked
/// is `tls-handshake`; each check's expiry is in `status --json` and the metrics; nginx
/// stopped, the passing checks fail with `connect-refused`.
#[test]
fn nginx_https_and_tls() {
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let mut ng = nginx_tls(&pki, port, plain);
    let t = v4(port);
    let ca = pki.ca();
    let mut c = Conf::new();
    let a = c.add(
        &format!("check https --url https://a.example/health --verify --ca {ca} --match OK"),
        t,
    );
    let b = c.add(
        &format!("check https --url https://b.example/ --verify --ca {ca} --match b.example"),
        t,
    );
    let a6 = c.add(
        &format!("check https --url https://a.example/health --verify --ca {ca} --match OK"),
        v6(port),
    );
    let a_not_b = c.add("check https --url https://a.example/ --match b.example", t);
    let status = c.add("check https --url https://a.example/bad --expect 200", t);
    let expired = c.add(
        &format!("check tls --sni expired.example --verify --ca {ca}"),
        t,
    );
    let expired_ok = c.add("check tls --sni expired.example", t);
    let notyet = c.add(
        &format!("check tls --sni notyet.example --verify --ca {ca}"),
        t,
    );
    let wrong = c.add(
        &format!("check tls --sni wrong.example --verify --ca {ca}"),
        t,
    );
    let wrong_ok = c.add("check tls --sni wrong.example", t);
    let selfs = c.add(
        &format!("check tls --sni self.example --verify --ca {ca}"),
        t,
    );
    let self_ok = c.add("check tls --sni self.example", t);
    let system = c.add("check tls --sni a.example --verify", t);
    let soon = c.add("check tls --sni soon.example --min-days 10", t);
    let soon_ok = c.add("check tls --sni soon.example --min-days 3", t);
    let alpn = c.add("check tls --sni a.example --alpn h2,http/1.1", t);
    // A protocol nginx does not speak: it refuses the handshake (an ALPN the check did not
    // send would have passed).
    let alpn_none = c.add("check tls --sni a.example --alpn x-lvsmon/1", t);
    let plain_port = c.add("check tls --sni a.example", v4(plain));
    let mut d = Lvsmon::start(&c.0, &[]);

    for v in [
        &a,
        &a6,
        &b,
        &expired_ok,
        &wrong_ok,
        &self_ok,
        &soon_ok,
        &alpn,
    ] {
        up(&mut d, v);
    }
    assert_eq!(down(&mut d, &a_not_b, "body-mismatch"), "a.example?");
    assert_eq!(down(&mut d, &status, "http-status"), "503");
    assert_eq!(down(&mut d, &expired, "tls-expiry"), "expired");
    assert_eq!(down(&mut d, &notyet, "tls-verify"), "not yet valid");
    assert_eq!(down(&mut d, &wrong, "tls-verify"), "wrong name");
    assert_eq!(down(&mut d, &selfs, "tls-verify"), "unknown issuer");
    assert_eq!(down(&mut d, &system, "tls-verify"), "unknown issuer");
    let detail = down(&mut d, &soon, "tls-expiry");
    assert!(
        detail.starts_with("expires in 4 days") || detail.starts_with("expires in 5 days"),
        "{detail}"
    );
    down(&mut d, &plain_port, "tls-handshake");
    let detail = down(&mut d, &alpn_none, "tls-handshake");
    assert!(detail.starts_with("alert "), "{detail}");

    // The expiry of each TLS check: in status --json, and in the metrics.
    let (code, out, err) = d.client(&["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let row = out
        .lines()
        .find(|l| l.contains("\"virtual\":\"tcp:127.3.0.2:443\""))
        .unwrap_or_else(|| panic!("{out}"));
    let expiry: i64 = row
        .split("\"tls_cert_expiry\":")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no tls_cert_expiry: {row}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (expiry - (now + 365 * 86_400)).abs() < 3 * 86_400,
        "{expiry} vs {now}"
    );
    finish(d);

    // With metrics, and nginx stopped: refused.
    let mut c = Conf::new();
    let a = c.add("check https --url https://a.example/health --match OK", t);
    let soon = c.add("check tls --sni soon.example", t);
    let mut d = Lvsmon::start(&c.0, &["--metrics", "127.0.0.1:0"]);
    up(&mut d, &a);
    up(&mut d, &soon);
    let m = metrics(&mut d);
    let line = m
        .lines()
        .find(|l| {
            l.starts_with("lvsmon_tls_cert_expiry_timestamp_seconds{")
                && l.contains("server_name=\"soon.example\"")
        })
        .unwrap_or_else(|| panic!("{m}"));
    assert!(line.contains(&format!("target=\"{t}\"")), "{line}");
    let v: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((v - (now + 5 * 86_400)).abs() < 2 * 86_400, "{line}");
    assert!(m.contains("lvsmon_tls_helper_restarts_total 0"), "{m}");
    let mark = d.seen().len();
    ng.stop();
    stopped(&mut d, mark, &a, t);
    finish(d);
}

/// After the server behind `v` (at `target`) was stopped (at line `mark`): `v` goes down, and
/// checks of `target` fail with `connect-refused`. The down event itself may name the reason
/// of a check that raced the server's shutdown (a handshake reset, a closed connection).
#[track_caller]
fn stopped(d: &mut Lvsmon, mark: usize, v: &Virt, target: SocketAddr) {
    let parts = ["event=down ", &v.virt, &v.real];
    let ev = match d.seen()[mark..]
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)))
    {
        Some(l) => l.clone(),
        None => d.wait_for(&parts, 8 * S),
    };
    let reason = field(&ev, "reason").unwrap_or("");
    assert!(
        [
            "connect-refused",
            "tls-handshake",
            "reset",
            "closed",
            "recv-timeout"
        ]
        .contains(&reason),
        "{ev}"
    );
    let target = format!(" target={target} ");
    let refused = [
        "check ",
        target.as_str(),
        " result=fail reason=connect-refused ",
    ];
    if !d.seen()[mark..]
        .iter()
        .any(|l| refused.iter().all(|p| l.contains(p)))
    {
        d.wait_for(&refused, 8 * S);
    }
}

/// The metrics page of `d`.
fn metrics(d: &mut Lvsmon) -> String {
    use std::io::{Read, Write};
    let addr = d.metrics_addr();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The helper killed with SIGKILL while 200 TLS checks run (150 against nginx, 50 against a
/// server that never answers, with a 10 s timeout, so checks are surely in flight): it is started again, the checks
/// it had count as local errors, and no real server checked through it goes down.
#[test]
fn helper_killed_under_load_is_restarted_without_marking_reals_down() {
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let _ng = nginx_tls(&pki, port, plain);
    // A server that accepts and holds every connection, saying nothing: its checks wait in
    // the handshake for their whole (long) timeout, so they are surely in flight.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    silent.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            let end = std::time::Instant::now() + 60 * S;
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && std::time::Instant::now() < end
            {
                match silent.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        })
    };
    let mut c = Conf::new();
    // The silent ones first: their first checks start in the first quarter of a second.
    for k in 0..50 {
        c.add(
            &format!("check tls --sni s{k}.example\n  timeout 10s"),
            silent_addr,
        );
    }
    let mut good = Vec::new();
    for k in 0..150 {
        good.push(c.add(
            &format!("check https --url https://a.example/health?n={k} --match OK"),
            v4(port),
        ));
    }
    let mut d = Lvsmon::start(&c.0, &["--metrics", "127.0.0.1:0"]);
    let started = d.wait_for(&["msg=\"TLS helper started\"", "starts=1"], 5 * S);
    let pid: i32 = field(&started, "pid").unwrap().parse().unwrap();
    for v in &good {
        up(&mut d, v);
    }
    // Every check has started by now (the first ones are spread over the first second).
    d.collect_for(S / 2);
    let mark = d.seen().len();
    // SAFETY: kill(2) of the helper, a child of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let lost = d.wait_for(&["msg=\"TLS helper lost\"", "why=exited"], 5 * S);
    let n: u32 = field(&lost, "checks_lost").unwrap().parse().unwrap();
    assert!(n > 0, "{lost}");
    let again = d.wait_for(&["msg=\"TLS helper started\"", "starts=2"], 5 * S);
    assert_ne!(
        field(&again, "pid"),
        Some(pid.to_string().as_str()),
        "{again}"
    );
    // Checks pass through the new helper, and none of the good reals went down.
    d.wait_for(&["check ", "plugin=https", "result=pass"], 5 * S);
    d.collect_for(2 * S);
    let downs: Vec<&String> = d.seen()[mark..]
        .iter()
        .filter(|l| l.contains("event=down ") && good.iter().any(|v| l.contains(&v.virt)))
        .collect();
    assert!(downs.is_empty(), "{downs:?}");
    let m = metrics(&mut d);
    assert!(m.contains("lvsmon_tls_helper_restarts_total 1"), "{m}");
    let local: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("lvsmon_local_errors_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(local >= u64::from(n), "local errors {local} < {n} lost");
    finish(d);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    holder.join().unwrap();
}

/// Dovecot with TLS (`ssl = required`, the test CA's `a.example` chain): `imaps` and `pop3s`
/// (the presets) on its TLS ports, `tls --starttls imap|pop3` on its plain ones, each with
/// `--verify` against the test CA; the same `--verify` against the system roots fails with
/// `tls-verify`; a TLS check on the plain port is `tls-handshake`; Dovecot stopped,
/// `connect-refused`.
#[test]
fn dovecot_imaps_pop3s_and_starttls() {
    let pki = Pki::new();
    let (pop3, imap, pop3s, imaps) = (free_port(), free_port(), free_port(), free_port());
    let (crt, key) = (pki.path("a.crt"), pki.path("a.key"));
    let tls = DovecotTls {
        crt: &crt,
        key: &key,
        pop3s,
        imaps,
    };
    let mut dv = dovecot(pop3, imap, Some(tls));

    let ca = pki.ca();
    let mut c = Conf::new();
    let cases = [
        (
            format!("check imaps --sni a.example --verify --ca {ca}"),
            imaps,
        ),
        (
            format!("check pop3s --sni a.example --verify --ca {ca}"),
            pop3s,
        ),
        (
            format!("check tls --starttls imap --sni a.example --verify --ca {ca}"),
            imap,
        ),
        (
            format!("check tls --starttls pop3 --sni a.example --verify --ca {ca}"),
            pop3,
        ),
        ("check imaps --min-days 1".to_string(), imaps),
    ];
    let good: Vec<Virt> = cases.iter().map(|(k, p)| c.add(k, v4(*p))).collect();
    let system = c.add("check pop3s --sni a.example --verify", v4(pop3s));
    let plain = c.add("check imaps", v4(imap));
    // Dovecot's handshake agrees on no ALPN protocol: a check that offers one fails.
    let alpn = c.add("check imaps --alpn imap", v4(imaps));
    let mut d = Lvsmon::start(&c.0, &[]);
    for v in &good {
        up(&mut d, v);
    }
    assert_eq!(down(&mut d, &system, "tls-verify"), "unknown issuer");
    down(&mut d, &plain, "tls-handshake");
    assert_eq!(
        down(&mut d, &alpn, "tls-handshake"),
        "no ALPN protocol agreed"
    );
    let mark = d.seen().len();
    dv.stop();
    for (v, port) in good[..2].iter().zip([imaps, pop3s]) {
        stopped(&mut d, mark, v, v4(port));
    }
    finish(d);
}

/// aiosmtpd with STARTTLS (`--tlscert`) on one port and SMTPS (`--smtpscert`) on another:
/// `tls --starttls smtp` and `smtps` pass with `--verify` and without, `smtps` on the
/// STARTTLS port (plain text where TLS is expected) is `tls-handshake`, and both servers
/// stopped, `connect-refused`.
#[test]
fn aiosmtpd_starttls_and_smtps() {
    let python = require("/usr/bin/python3", "python3");
    require(
        "/usr/lib/python3/dist-packages/aiosmtpd/__init__.py",
        "python3-aiosmtpd",
    );
    print_version("aiosmtpd", "/usr/bin/python3 -m aiosmtpd --version");
    let pki = Pki::new();
    let (starttls, smtps) = (free_port(), free_port());
    // aiosmtpd wants the chain and the key; the leaf file holds the chain already.
    let (crt, key) = (pki.path("a.crt"), pki.path("a.key"));
    let start = |name: &str, port: u16, flags: [&str; 2]| {
        let dir = TempDir::new(name);
        let mut cmd = Command::new(python.clone());
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .arg(flags[0])
            .arg(&crt)
            .arg(flags[1])
            .arg(&key)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(&dir.0);
        let mut s = Server::spawn(name, cmd, dir, libc::SIGTERM);
        s.wait_tcp(v4(port), READY);
        s
    };
    let mut st = start("aiosmtpd-starttls", starttls, ["--tlscert", "--tlskey"]);
    st.wait_banner(v4(starttls), "220 ", READY);
    let mut ss = start("aiosmtpd-smtps", smtps, ["--smtpscert", "--smtpskey"]);
    let ca = pki.ca();
    let mut c = Conf::new();
    let up1 = c.add(
        &format!("check tls --starttls smtp --sni a.example --verify --ca {ca}"),
        v4(starttls),
    );
    let up2 = c.add(
        &format!("check smtps --sni a.example --verify --ca {ca}"),
        v4(smtps),
    );
    // Without --verify: the handshake and the greeting alone.
    let up3 = c.add("check tls --starttls smtp", v4(starttls));
    let up4 = c.add("check smtps --min-days 1", v4(smtps));
    let plain = c.add("check smtps", v4(starttls));
    let mut d = Lvsmon::start(&c.0, &[]);
    for v in [&up1, &up2, &up3, &up4] {
        up(&mut d, v);
    }
    down(&mut d, &plain, "tls-handshake");
    let mark = d.seen().len();
    st.stop();
    ss.stop();
    stopped(&mut d, mark, &up1, v4(starttls));
    stopped(&mut d, mark, &up2, v4(smtps));
    finish(d);
}

/// `--user nobody --chroot DIR` (an empty directory: no dynamic loader in it): the helper runs
/// as nobody, inside the chroot, with no capability (none effective, permitted, inheritable
/// or ambient) and no_new_privs, and TLS checks
/// (with `--verify` against a `--ca` file read before the chroot) still pass.
#[test]
fn helper_runs_unprivileged_in_the_chroot() {
    common::servers::require_root("lvsmon --user nobody");
    let (uid, _) = common::servers::user_ids("nobody").expect("user nobody");
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let _ng = nginx_tls(&pki, port, plain);
    let mut c = Conf::new();
    let a = c.add(
        &format!(
            "check https --url https://a.example/health --verify --ca {} --match OK",
            pki.ca()
        ),
        v4(port),
    );
    let jail = TempDir::new("tls-chroot");
    let jail_s = jail.0.to_str().unwrap();
    let mut d = Lvsmon::start(&c.0, &["--user", "nobody", "--chroot", jail_s]);
    let started = d.wait_for(&["msg=\"TLS helper started\""], 5 * S);
    let pid: u32 = field(&started, "pid").unwrap().parse().unwrap();
    up(&mut d, &a);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let st = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("{k} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let u = uid.to_string();
    assert_eq!(st("Uid"), [u.as_str(); 4].join(" "), "{status}");
    for k in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(st(k), "0000000000000000", "{k}: {status}");
    }
    // The bounding set is the daemon's (CAP_NET_ADMIN alone; without CAP_SETPCAP nothing can
    // take it out), and with no_new_privs and an empty permitted set, out of reach.
    assert_eq!(st("CapBnd"), "0000000000001000", "{status}");
    assert_eq!(st("NoNewPrivs"), "1", "{status}");
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        jail.0
    );
    // And its parent is the daemon.
    assert_eq!(st("PPid"), d.pid().to_string(), "{status}");
    d.wait_for(&["check ", "plugin=https", "result=pass"], 5 * S);
    finish(d);
}

/// A daemon with one `https` check of [`nginx_tls`] on `port`, once its TLS helper has
/// started (the first start) and the check's real is up; with its config and the helper's pid.
fn https_with_helper(port: u16) -> (Conf, Lvsmon, i32) {
    let mut c = Conf::new();
    let a = c.add(
        "check https --url https://a.example/health --match OK",
        v4(port),
    );
    let mut d = Lvsmon::start(&c.0, &[]);
    let started = d.wait_for(&["msg=\"TLS helper started\"", "starts=1"], 5 * S);
    let pid = field(&started, "pid").unwrap().parse().unwrap();
    up(&mut d, &a);
    (c, d, pid)
}

/// A reload that keeps every TLS check as it was keeps the running helper (its pid, no new
/// start) and the checks go on; one that adds a TLS check starts a new helper with the new
/// configuration, whose new check then runs.
#[test]
fn reload_keeps_or_replaces_the_helper() {
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let _ng = nginx_tls(&pki, port, plain);
    let (mut c, mut d, pid) = https_with_helper(port);
    let pid = pid.to_string();
    // The same file again: the same helper.
    d.signal(libc::SIGHUP);
    d.wait_for(&["msg=\"reloaded\""], 5 * S);
    let mark = d.seen().len();
    d.wait_for(&["check ", "plugin=https", "result=pass"], 5 * S);
    assert!(
        !d.seen()[mark..]
            .iter()
            .any(|l| l.contains("TLS helper started")),
        "a new helper for the same checks"
    );
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    // A new TLS check: a new helper, which runs it.
    let b = c.add("check tls --sni b.example --min-days 1", v4(port));
    std::fs::write(d.dir.0.join("lvsmon.conf"), &c.0).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for(&["msg=\"reloaded\""], 5 * S);
    let again = d.wait_for(&["msg=\"TLS helper started\"", "starts=2"], 5 * S);
    assert_ne!(field(&again, "pid"), Some(pid.as_str()), "{again}");
    up(&mut d, &b);
    finish(d);
}

/// A helper that stops answering (SIGSTOP) is taken for hung once a check is 2 s past its
/// timeout with no answer since: killed, started again, its checks local errors, and the
/// real server never goes down.
#[test]
fn a_hung_helper_is_killed_and_restarted() {
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let _ng = nginx_tls(&pki, port, plain);
    let (_, mut d, pid) = https_with_helper(port);
    let mark = d.seen().len();
    // SAFETY: kill(2) of the helper, a child of the daemon this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let lost = d.wait_for(&["msg=\"TLS helper lost\"", "why=hung"], 10 * S);
    assert_eq!(
        field(&lost, "pid"),
        Some(pid.to_string().as_str()),
        "{lost}"
    );
    d.wait_for(&["msg=\"TLS helper started\"", "starts=2"], 5 * S);
    d.wait_for(&["check ", "plugin=https", "result=pass"], 5 * S);
    let deferred = d.seen()[mark..]
        .iter()
        .any(|l| l.contains("result=deferred reason=local-error"));
    assert!(deferred, "no deferred check while the helper hung");
    assert!(
        !d.seen()[mark..].iter().any(|l| l.contains("event=down ")),
        "a real went down"
    );
    finish(d);
}

/// A helper that dies young again and again (killed as soon as it has started) is started
/// again ever more slowly, each loss logged with its delay (twice the one before, from 1 s)
/// and the next start no sooner; meanwhile the TLS checks are deferred as local errors
/// (`TLS helper not running`), never failures, and the real server stays up.
#[test]
fn a_helper_that_keeps_dying_is_restarted_ever_more_slowly() {
    let pki = Pki::new();
    let (port, plain) = (free_port(), free_port());
    let _ng = nginx_tls(&pki, port, plain);
    let (_, mut d, mut pid) = https_with_helper(port);
    let mark = d.seen().len();
    let mut delays = Vec::new();
    for starts in 2..=4 {
        let killed = std::time::Instant::now();
        // SAFETY: kill(2) of the helper, a child of the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let lost = d.wait_for(
            &[
                "msg=\"TLS helper lost\"",
                "why=exited",
                &format!("pid={pid} "),
            ],
            5 * S,
        );
        let delay: f64 = field(&lost, "restart_in").unwrap().parse().unwrap();
        let started = d.wait_for(
            &["msg=\"TLS helper started\"", &format!("starts={starts}")],
            Duration::from_secs_f64(delay) + 5 * S,
        );
        assert!(
            killed.elapsed() >= Duration::from_secs_f64(delay),
            "started again {:?} after the kill, before its delay {delay}: {started}",
            killed.elapsed()
        );
        pid = field(&started, "pid").unwrap().parse().unwrap();
        delays.push(delay);
    }
    // The first helper may have lived 10 s on a slow machine (then no delay at first); every
    // later one died young.
    assert!(delays[0] == 0.0 || delays[0] == 1.0, "{delays:?}");
    assert_eq!(delays[1], (2.0 * delays[0]).max(1.0), "{delays:?}");
    assert_eq!(delays[2], 2.0 * delays[1], "{delays:?}");
    d.wait_for(&["check ", "plugin=https", "result=pass"], 5 * S);
    let after = &d.seen()[mark..];
    assert!(
        after
            .iter()
            .any(|l| l.contains("result=deferred reason=local-error")
                && l.contains("TLS helper not running")),
        "no check deferred while no helper ran"
    );
    let bad: Vec<&String> = after
        .iter()
        .filter(|l| l.contains("event=down ") || l.contains("result=fail"))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
    finish(d);
}

/// vsftpd with `ssl_enable`: `tls --starttls ftp` (220, `AUTH TLS`, 234, the handshake)
/// passes with `--verify` against the test CA; `--starttls smtp` on it fails with
/// `expect-mismatch` (vsftpd answers `EHLO` with a 530, not a 250).
#[test]
fn vsftpd_starttls_ftp() {
    let pki = Pki::new();
    let port = free_port();
    let _ftp = vsftpd(
        port,
        &format!(
            "ssl_enable=YES\nallow_anon_ssl=YES\nrsa_cert_file={}\nrsa_private_key_file={}\n",
            pki.path("a.crt").display(),
            pki.path("a.key").display()
        ),
    );
    let mut c = Conf::new();
    let ok = c.add(
        &format!(
            "check tls --starttls ftp --sni a.example --verify --ca {}",
            pki.ca()
        ),
        v4(port),
    );
    let smtp = c.add("check tls --starttls smtp", v4(port));
    let mut d = Lvsmon::start(&c.0, &[]);
    up(&mut d, &ok);
    let detail = down(&mut d, &smtp, "expect-mismatch");
    assert!(detail.starts_with("starttls: "), "{detail}");
    finish(d);
}

/// nginx with the `a.example` chain on 127.0.0.1:`port13`, TLS 1.3 only, and on
/// 127.0.0.1:`port12`, TLS 1.2 only, each logging its connections at debug level in `log`
/// (`tls13.log`, `tls12.log`): one `SSL: TLSv1.x` line a handshake, followed by
/// `SSL reused session` when the handshake resumed a session.
fn nginx_versions(pki: &Pki, port13: u16, port12: u16, log: &TempDir) -> Server {
    let mut servers = String::new();
    for (port, proto, file) in [(port13, "TLSv1.3", "tls13"), (port12, "TLSv1.2", "tls12")] {
        servers.push_str(&format!(
            "  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_protocols {proto};
    ssl_certificate {crt};
    ssl_certificate_key {key};
    error_log {log}/{file}.log debug;
    location / {{ return 200 \"OK\\n\"; }}
  }}
",
            crt = pki.path("a.crt").display(),
            key = pki.path("a.key").display(),
            log = log.0.display(),
        ));
    }
    common::servers::nginx(&servers, &[v4(port13), v4(port12)])
}

/// The handshakes in nginx's debug log `path`: (all, resumed).
fn handshakes(path: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all = text.matches(" SSL: TLSv1.").count();
    let resumed = text.matches("SSL reused session").count();
    (all, resumed)
}

/// Runs `check` against `target` until `n` checks have passed (none may fail), then stops
/// the daemon; returns the handshakes the server logged in `log` meanwhile (all, resumed).
fn handshakes_of(
    check: &str,
    target: SocketAddr,
    log: &std::path::Path,
    n: usize,
) -> (usize, usize) {
    let before = handshakes(log);
    let mut c = Conf::new();
    c.add(&format!("{check}\n  interval 200ms"), target);
    let mut d = Lvsmon::start(&c.0, &[]);
    let pass = ["check ", "plugin=tls ", "result=pass"];
    let end = std::time::Instant::now() + 20 * S;
    while d.count(&pass) < n && std::time::Instant::now() < end {
        d.try_wait_for(&pass, S);
    }
    let passed = d.count(&pass);
    let failed: Vec<&String> = d
        .seen()
        .iter()
        .filter(|l| l.contains("result=fail"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(passed >= n, "{passed} checks passed of {n}");
    finish(d);
    // Each check's handshake is logged by the time the server has our Finished, as the
    // check passes; the last one may be written a moment after.
    let end = std::time::Instant::now() + 5 * S;
    let mut now = handshakes(log);
    while now.0 - before.0 < passed && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        now = handshakes(log);
    }
    (now.0 - before.0, now.1 - before.1)
}

/// A `tls` check that ends with its handshake resumes its session on TLS 1.3 too, where the
/// server sends its tickets after the handshake: nginx logs most of 10 checks as resumed (the
/// first is a full handshake). With `--no-resume` none is. Against a TLS 1.2 server, where
/// the session comes within the handshake, the checks pass and resume as they always did.
#[test]
fn handshake_only_tls_checks_resume_on_tls13() {
    let pki = Pki::new();
    let (port13, port12) = (free_port(), free_port());
    let log = TempDir::new("nginx-handshakes");
    let _ng = nginx_versions(&pki, port13, port12, &log);
    let (log13, log12) = (log.0.join("tls13.log"), log.0.join("tls12.log"));
    let n = 10;

    let (all, resumed) = handshakes_of("check tls --sni a.example", v4(port13), &log13, n);
    println!("TLS 1.3: {resumed} resumed of {all} handshakes");
    assert!(
        all >= n,
        "{all} handshakes logged (debug logs need nginx --with-debug, as Debian builds it)"
    );
    assert!(
        resumed * 10 >= all * 7,
        "TLS 1.3: {resumed} resumed of {all}"
    );

    let (all, resumed) = handshakes_of(
        "check tls --sni a.example --no-resume",
        v4(port13),
        &log13,
        n,
    );
    println!("TLS 1.3 --no-resume: {resumed} resumed of {all} handshakes");
    assert!(
        all >= n,
        "{all} handshakes logged (debug logs need nginx --with-debug, as Debian builds it)"
    );
    assert_eq!(
        resumed, 0,
        "TLS 1.3 --no-resume: {resumed} resumed of {all}"
    );

    let (all, resumed) = handshakes_of("check tls --sni a.example", v4(port12), &log12, n);
    println!("TLS 1.2: {resumed} resumed of {all} handshakes");
    assert!(
        all >= n,
        "{all} handshakes logged (debug logs need nginx --with-debug, as Debian builds it)"
    );
    assert!(
        resumed * 10 >= all * 7,
        "TLS 1.2: {resumed} resumed of {all}"
    );
}

/// A TLS 1.3 server (rustls) that sends no session ticket and, after each handshake, waits
/// for the client to close: a handshake-only check passes at once, its duration the
/// handshake's (not the wait for a ticket that never comes), and the helper keeps the
/// connection about 200 ms for the ticket, then closes it (well within the check's timeout).
#[test]
fn tls13_check_without_a_ticket_passes_at_the_handshake() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Instant;

    let pki = Pki::new();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(pki.path("a.crt"))
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(pki.path("a.key")).unwrap();
    // ring, as the helper's (its provider without post-quantum groups).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.send_tls13_tickets = 0;
    let cfg = std::sync::Arc::new(cfg);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    // Per connection: how long the client kept it open after the server's handshake ended.
    let (tx, held) = mpsc::channel::<Duration>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acceptor = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let end = Instant::now() + 60 * S;
            let mut handlers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && Instant::now() < end
                && handlers.len() < 50
            {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let (cfg, tx) = (cfg.clone(), tx.clone());
                handlers.push(std::thread::spawn(move || {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(5 * S)).unwrap();
                    let mut conn = rustls::ServerConnection::new(cfg).unwrap();
                    while conn.is_handshaking() {
                        if conn.complete_io(&mut s).is_err() {
                            return;
                        }
                    }
                    let done = Instant::now();
                    let mut tls = rustls::StreamOwned::new(conn, s);
                    let mut b = [0u8; 64];
                    // Until close_notify, the reset, or the read timeout.
                    while let Ok(n) = tls.read(&mut b) {
                        if n == 0 {
                            break;
                        }
                    }
                    let _ = tx.send(done.elapsed());
                }));
            }
            for h in handlers {
                let _ = h.join();
            }
        })
    };

    let mut c = Conf::new();
    c.add("check tls --sni a.example\n  interval 300ms", addr);
    let mut d = Lvsmon::start(&c.0, &[]);
    let pass = ["check ", "plugin=tls ", "result=pass"];
    let n = 5;
    let end = Instant::now() + 20 * S;
    while d.count(&pass) < n && Instant::now() < end {
        d.try_wait_for(&pass, S);
    }
    let durations: Vec<f64> = d
        .seen()
        .iter()
        .filter(|l| pass.iter().all(|p| l.contains(p)))
        .map(|l| field(l, "duration").unwrap().parse().unwrap())
        .collect();
    let failed: Vec<&String> = d
        .seen()
        .iter()
        .filter(|l| l.contains("result=fail"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(durations.len() >= n, "{durations:?}");
    finish(d);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    acceptor.join().unwrap();
    let held: Vec<Duration> = held.try_iter().collect();
    println!("durations {durations:?}, connections held {held:?}");
    // Had the answer waited for the ticket, every check would take 200 ms at least.
    let fastest = durations.iter().copied().fold(f64::MAX, f64::min);
    assert!(fastest < 0.15, "{durations:?}");
    // Each connection held for the ticket (the last may be cut short by the daemon's stop),
    // and none past the check's 2 s timeout.
    assert!(held.len() >= n, "{held:?}");
    let waited = held
        .iter()
        .filter(|h| **h >= Duration::from_millis(150))
        .count();
    assert!(waited + 1 >= held.len(), "{held:?}");
    assert!(held.iter().all(|h| *h < 2 * S), "{held:?}");
}
