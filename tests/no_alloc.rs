//! Proves the promise users rely on: once started, the event loop makes no heap allocation.
//!
//! A counting global allocator counts the allocations of the thread that runs the loop (the
//! backends run on other threads and are not counted). The daemon is built from a real
//! config, warmed up, and then driven through at least 2,000 check cycles against loopback
//! backends that pass, fail in every way a backend can fail, flap (transitions, IPVS
//! changes, events, notify commands spawned and reaped), and compete for a deliberately tiny
//! buffer pool (queueing and local-error deferrals), while it pings a stand-in for systemd's
//! notification socket every 20 ms and announces a reload. The count must be zero.
//!
//! `harness = false`: this file is its own `main`, so no test-harness thread allocates
//! behind our back.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::backend::REQUEST_END;
use common::lvsmon::TempDir;
use common::udp::{dns_answer, UdpServer};
use common::{http_response, refused_addr, Action, Backend, FullQueue, Script};
use lvsmon::event_loop::{Daemon, Options};
use lvsmon::ipvs::client::Netlink;
use lvsmon::ipvs::{DryRun, Ipvs};
use lvsmon::log::{Level, Log, Sink};
use lvsmon::monitor::health::State;
use lvsmon::plugins::Reason;

thread_local! {
    static ON: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(l.size(), Relaxed);
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(l.size(), Relaxed);
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if ON.with(Cell::get) {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(n, Relaxed);
        }
        System.realloc(p, l, n)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static A: Counting = Counting;

const MIN_CYCLES: u64 = 2_000;

fn main() {
    let syslog = syslog_restart_counted();
    let req = || Action::Expect(REQUEST_END.to_vec());
    let (refused, _guard) = refused_addr();
    let full = FullQueue::new();
    let backends = vec![
        (
            "pass-http",
            Backend::start(Script::http(200, "status: OK")),
            "check http --match \"status: OK\"",
        ),
        (
            "pass-banner",
            Backend::start(Script::banner("SSH-2.0-x")),
            "check banner --expect SSH-2.0- --send \"bye\\r\\n\"",
        ),
        (
            "pass-script",
            Backend::start(Script(vec![
                Action::expect("PING\r\n"),
                Action::send("+PONG\r\n"),
                Action::Drain,
            ])),
            "check script --send \"PING\\r\\n\" --expect +PONG",
        ),
        (
            "pass-tcp",
            Backend::start(Script(vec![Action::Hold])),
            "check tcp",
        ),
        (
            "reset",
            Backend::start(Script(vec![req(), Action::Reset])),
            "check http",
        ),
        (
            "closed",
            Backend::start(Script(vec![req(), Action::Close])),
            "check http",
        ),
        (
            "recv-timeout",
            Backend::start(Script(vec![Action::Hold])),
            "check http",
        ),
        (
            "trickle",
            Backend::start(Script(vec![
                req(),
                Action::Trickle(http_response(200, "OK"), Duration::from_millis(50)),
            ])),
            "check http",
        ),
        (
            "http-status",
            Backend::start(Script::http(503, "no")),
            "check http",
        ),
        (
            "http-invalid",
            Backend::start(Script::raw(&b"SSH-2.0-x\r\n"[..])),
            "check http",
        ),
        (
            "body-mismatch",
            Backend::start(Script::http(200, "nope")),
            "check http --match \"status: OK\"",
        ),
        (
            "banner-mismatch",
            Backend::start(Script::banner("220 smtp")),
            "check banner --expect SSH-2.0-",
        ),
        (
            "expect-mismatch",
            Backend::start(Script(vec![
                Action::expect("PING\r\n"),
                Action::send("-ERR\r\n"),
                Action::Drain,
            ])),
            "check script --send \"PING\\r\\n\" --expect +PONG",
        ),
        (
            "too-large",
            Backend::start(Script(vec![
                req(),
                Action::send("HTTP/1.1 200 OK\r\n"),
                Action::Endless(b"X-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".to_vec()),
            ])),
            "check http --max-response 512",
        ),
        // The body's MD5 (md5 of "status: OK"), hashed on the stack: a pass and a mismatch.
        (
            "pass-digest",
            Backend::start(Script::http(200, "status: OK")),
            "check http --digest ac2e430f646157c5c906fca59a4c2304",
        ),
        (
            "digest-mismatch",
            Backend::start(Script::http(200, "nope")),
            "check http --digest ac2e430f646157c5c906fca59a4c2304",
        ),
        (
            "flap",
            Backend::start(Script::http(200, "status: OK")),
            "check http --match \"status: OK\"",
        ),
    ];
    let dir = TempDir::new("noalloc");
    let mut conf = String::from(
        "interval 60ms\nconnect-timeout 150ms\ntimeout 250ms\nfall 1\nrise 1\nquorum 1\nresync 1s\nnotify \"/bin/echo\" \"event\"\nnotify-max 2\n",
    );
    // Every event line also goes to a FIFO (notify-fifo), written from the loop, whose reader
    // (below) comes, reads a little and goes away with lines left in the pipe; the notify
    // command prints a line, read from its pipe and logged by the loop.
    let fifo_path = dir.0.join("events.fifo");
    {
        let c = std::ffi::CString::new(fifo_path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    }
    conf.push_str(&format!("notify-fifo \"{}\"\n", fifo_path.display()));
    // Quorum lost and restored rewrite the track file (temporary file, rename) from the loop.
    conf.push_str(&format!(
        "track-file \"{}\"\n",
        dir.0.join("vrrp-track").display()
    ));
    // A sync daemon (recorded as dry-run below, never started): `status` lists it, and
    // `/metrics` has its `lvsmon_sync_daemon_up`.
    conf.push_str("sync-daemon master lo id 3 maxlen 1400 group 239.1.1.1 port 9000 ttl 2\n");
    let mut add = |n: usize, addr: std::net::SocketAddr, check: &str| {
        conf.push_str(&format!(
            "virtual tcp 127.1.0.{}:80 {{\n  sorry 127.0.0.1:8080\n  {check}\n  real {addr} weight 2\n}}\n",
            n + 1
        ));
    };
    for (i, (_, b, check)) in backends.iter().enumerate() {
        add(i, b.addr(), check);
    }
    add(backends.len(), refused, "check tcp");
    add(backends.len() + 1, full.addr(), "check tcp");
    // The weight chain (lvsmon.conf(5), WEIGHTS): a banner server that cycles fast, slow
    // (SLOW and FAST events) and closed (DOWN, then UP again with a slow-start ramp of 1 s
    // steps), and set-weight requests below. Its own timeout and wide levels: in the VM's
    // emulated CPU a loop turn takes tens of milliseconds, and a fast check as long.
    let weigh = Backend::start(Script::banner("+OK"));
    conf.push_str(&format!(
        "virtual tcp 127.3.0.1:80 {{\n  check banner --expect +OK\n  timeout 1s\n  slow-above 300ms cancel-below 150ms slow-weight 50%\n  slow-start 2s\n  real {} weight 20\n}}\n",
        weigh.addr()
    ));
    // UDP: an echo server, a DNS responder answering NOERROR, one answering NXDOMAIN, one
    // answering with a mangled question, and a port where nothing listens.
    let echo = UdpServer::start(|d| Some(d.to_vec()));
    let dns_ok = UdpServer::start(|q| dns_answer(q, 0));
    let dns_nx = UdpServer::start(|q| dns_answer(q, 3));
    let dns_bad = UdpServer::start(|q| {
        let mut r = dns_answer(q, 0)?;
        r[13] ^= 0x03; // the question's first name byte no longer matches
        Some(r)
    });
    let udp_free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let udp_checks = [
        (echo.addr, "check udp --send ping --expect ping"),
        (echo.addr, "check udp --send ping --expect pong"),
        (
            dns_ok.addr,
            "check dns --query www.example.test --expect-address 192.0.2.7",
        ),
        (dns_nx.addr, "check dns --query gone.example.test"),
        (dns_bad.addr, "check dns --query www.example.test"),
        (udp_free, "check udp --send ping"),
    ];
    for (k, (addr, check)) in udp_checks.iter().enumerate() {
        conf.push_str(&format!(
            "virtual udp 127.2.0.{}:53 {{\n  {check}\n  real {addr}\n}}\n",
            k + 1
        ));
    }
    // exec programs (passing, failing with a line, --dynamic with an exit code that a thread
    // below changes: the configured 10, then 1, then 4; one that hangs and is killed at the
    // 250 ms timeout; the others have 2 s, as a shell takes longer to start in the VM's
    // emulated CPU), two at most at once so the others queue; agents answering a weight, drain and down, one that cannot be reached,
    // and one whose words change while counting (50%, drain, down, up 100%: weights 5, 0, DOWN
    // and 10). Their reals have names only (exec) or a tcp check on the agent's own listener.
    conf.push_str("exec-max 2\n");
    let exec_code = dir.0.join("exec-code");
    std::fs::write(&exec_code, "0\n").unwrap();
    let execs = [
        concat!("timeout 2s\n  ", r#"check exec /bin/sh -c "exit 0""#).to_string(),
        concat!(
            "timeout 2s\n  ",
            r#"check exec /bin/sh -c "echo no; exit 1""#
        )
        .to_string(),
        format!(
            concat!(
                "timeout 2s\n  ",
                r#"check exec --dynamic /bin/sh -c "read c < {}; exit $c""#
            ),
            exec_code.display()
        ),
        r#"check exec /bin/sleep 5"#.to_string(),
    ];
    for (k, check) in execs.iter().enumerate() {
        conf.push_str(&format!(
            "virtual tcp 127.5.0.{}:80 {{\n  {check}\n  real 127.0.0.1:{} weight 10\n}}\n",
            k + 1,
            k + 1
        ));
    }
    let agents: Vec<Backend> = ["50%", "drain", "down disk full"]
        .iter()
        .map(|l| Backend::start(Script::banner(l)))
        .collect();
    for (k, a) in agents.iter().enumerate() {
        conf.push_str(&format!(
            "virtual tcp 127.4.0.{}:80 {{\n  agent {} --send \"x\\n\"\n  real {}\n}}\n",
            k + 1,
            a.addr().port(),
            a.addr()
        ));
    }
    conf.push_str(&format!(
        "virtual tcp 127.4.0.9:80 {{\n  check tcp --port {}\n  agent {}\n  real {refused}\n}}\n",
        agents[0].addr().port(),
        refused.port()
    ));
    // TLS, through the helper process (the real binary: this one is not lvsmon): https
    // passing, a self-signed certificate under --verify, --min-days beyond its expiry, and
    // an SSH banner on the port checked.
    // LVSMON_BIN: where the binary is when this test runs elsewhere (the IPVS VM's guest).
    let exe = std::env::var_os("LVSMON_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_lvsmon").into());
    lvsmon::tls::use_exe(&exe).expect("the lvsmon binary");
    let tls = tls_backend();
    let plain = &backends[1].1;
    let tls_checks = [
        (
            tls,
            "check https --url https://a.example/ --match \"status: OK\"",
        ),
        (tls, "check tls --sni a.example --verify"),
        (tls, "check tls --sni a.example --min-days 3000"),
        (plain.addr(), "check tls"),
    ];
    for (k, (addr, check)) in tls_checks.iter().enumerate() {
        conf.push_str(&format!(
            "virtual tcp 127.3.0.{}:443 {{\n  {check}\n  real {addr}\n}}\n",
            k + 1
        ));
    }
    let words = Backend::start(Script::banner("50%"));
    conf.push_str(&format!(
        "virtual tcp 127.4.0.5:80 {{\n  check tcp\n  agent {} --interval 50ms\n  real {} weight 10\n}}\n",
        words.addr().port(),
        words.addr()
    ));
    let path = dir.file("lvsmon.conf", &conf);
    let plan = lvsmon::config::load(&path, None).expect("config");
    // As startup under --dry-run does: the sync daemon's outcome, for `status` and `/metrics`.
    lvsmon::ipvs::daemon::apply_at_start(&plan.director, true);
    let real_at = |virt: &str, addr: String| {
        plan.reals
            .iter()
            .position(|r| {
                r.addr.to_string() == addr && plan.virtuals[r.virtual_idx].key.to_string() == virt
            })
            .expect("real in the plan")
    };
    let mut watch = Watch {
        agent: real_at("tcp:127.4.0.5:80", words.addr().to_string()),
        exec: real_at("tcp:127.5.0.3:80", "127.0.0.1:3".into()),
        ..Watch::default()
    };

    // A stand-in for systemd's notification socket, read on another thread (not counted) so
    // its queue never fills: a 40 ms watchdog timeout makes the loop ping every 20 ms.
    let sd_path = dir.0.join("notify");
    let sd_sock = std::os::unix::net::UnixDatagram::bind(&sd_path).expect("notify socket");
    sd_sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let sd_reader = std::thread::spawn(move || {
        let mut got = SdSeen::default();
        let end = Instant::now() + Duration::from_secs(300);
        let mut b = [0u8; 512];
        while !SD_STOP.load(Relaxed) && Instant::now() < end {
            if let Ok(n) = sd_sock.recv(&mut b) {
                let m = &b[..n];
                if m == b"WATCHDOG=1" {
                    got.pings += 1;
                } else if m.starts_with(b"READY=1\n") {
                    got.ready += 1;
                } else if m.starts_with(b"RELOADING=1\n") {
                    got.reloading += 1;
                }
            }
        }
        got
    });

    // A one-buffer pool so checks queue for buffers and some are deferred.
    let opts = Options {
        buffers: 1,
        socket: Some(dir.0.join("lvsmon.sock")),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        state_dir: Some(dir.0.join("state")),
        state_interval: Duration::from_secs(1),
        file: Some(path.clone()),
        systemd: Some(lvsmon::sd_notify::Config {
            socket: lvsmon::sd_notify::SocketName::Path(
                sd_path.to_str().unwrap().as_bytes().to_vec(),
            ),
            watchdog: Some(Duration::from_millis(40)),
        }),
        ..Options::default()
    };
    // With IPVS in the kernel (the VM tests run this binary there) the loop drives the real
    // netlink client, resyncs included; elsewhere the dry-run side.
    let netlink = std::path::Path::new("/proc/net/ip_vs").exists();
    let ipvs: Box<dyn Ipvs> = if netlink {
        let managed = lvsmon::ipvs::managed_services(&plan);
        Box::new(Netlink::open(&managed, 4096).expect("netlink IPVS client"))
    } else {
        Box::new(DryRun::default())
    };
    println!(
        "no_alloc: IPVS side: {}",
        if netlink {
            "netlink (real kernel)"
        } else {
            "dry-run"
        }
    );
    // Every line goes to a pipe whose reader stalls and catches up in turns, so the log's
    // ring fills, drops lines, says so, and is written out on writability events.
    let (log_sink, log_reader) = stalling_log_reader();
    let mut d = Daemon::new(
        plan,
        ipvs,
        Log::with_ring(log_sink, Level::Debug, 16 * 1024),
        &opts,
    )
    .expect("daemon");
    d.startup();
    let warm_end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < warm_end {
        d.turn(Some(Duration::from_millis(20))).unwrap();
    }
    // A reload (of the same file) before counting: building the new tables allocates, the
    // loop that runs on them must not.
    let asked = d.request_reload();
    let reload_end = Instant::now() + Duration::from_secs(10);
    while d.reload_status().0 < asked && Instant::now() < reload_end {
        d.turn(Some(Duration::from_millis(20))).unwrap();
    }
    let (done, said) = d.reload_status();
    assert!(
        done >= asked && said.starts_with("reloaded "),
        "reload: {said}"
    );
    print!("no_alloc: before counting: {said}");
    let warm_end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < warm_end {
        d.turn(Some(Duration::from_millis(20))).unwrap();
    }

    // Flap one backend every 150 ms from another thread: transitions, IPVS edits, quorum
    // events, the sorry server in and out, notify commands.
    let stop = AtomicBool::new(false);
    let flapper = &backends.last().unwrap().1;
    let sock = dir.0.join("lvsmon.sock");
    let maddr = d.metrics_addr().expect("metrics served");
    let flap_real = backends.last().unwrap().1.addr().to_string();
    let weigh_real = weigh.addr().to_string();
    let flap_virtual = backends.len();
    let log_dropped0 = d.log().dropped();
    // The last `status` reply and `GET /metrics` page, to see the sync daemon was rendered
    // while counting.
    let replies = std::sync::Mutex::new((Vec::new(), Vec::new()));
    let run = std::thread::scope(|scope| {
        // Clients of the control socket and the metrics endpoint, on another thread (not
        // counted): every kind of request, served by the loop while it checks.
        scope.spawn(|| {
            use std::io::{Read, Write};
            let reqs = [
                "status".to_string(),
                "status json".to_string(),
                "history since=3600".to_string(),
                "history json".to_string(),
                "history tcp:127.1.0.1:80".to_string(),
                format!("history tcp:127.1.0.{flap_virtual}:80 {flap_real}"),
                format!("drain {flap_real}"),
                format!("undrain {flap_real}"),
                format!("drain {flap_real} 127.1.0.{flap_virtual}:80"),
                format!("undrain {flap_real} TCP:127.1.0.{flap_virtual}:80"),
                "drain 127.0.0.1:1 fwmark:0x2a".to_string(),
                format!("set-weight {weigh_real} 50%"),
                format!("set-weight {weigh_real} tcp:127.3.0.1:80 7"),
                format!("set-weight {weigh_real} reset"),
                format!("set-weight {weigh_real} bogus"),
                "garbage \u{1}".to_string(),
            ];
            let heads: [&[u8]; 11] = [
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                b"HEAD /metrics HTTP/1.1\r\n\r\n",
                b"GET http://x/metrics?a=1 HTTP/1.1\r\n\r\n",
                // Cut short by a half-close: answered 400.
                b"GET /metrics HTTP/1.1\r\n",
                // The status page: overview, one virtual (as written and percent-encoded),
                // status.json, a head, and pages that do not exist (404).
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /virtual/tcp:127.1.0.1:80 HTTP/1.1\r\n\r\n",
                b"GET /virtual/tcp%3A127.1.0.1%3A80?page=1 HTTP/1.1\r\n\r\n",
                b"GET /status.json HTTP/1.1\r\n\r\n",
                b"HEAD / HTTP/1.1\r\n\r\n",
                b"GET /?page=9 HTTP/1.1\r\n\r\n",
                b"GET /virtual/udp:%5B::1%5D:53 HTTP/1.1\r\n\r\n",
            ];
            let end = Instant::now() + Duration::from_secs(120);
            let mut k = 0;
            while !stop.load(Relaxed) && Instant::now() < end {
                if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = writeln!(s, "{}", reqs[k % reqs.len()]);
                    let mut reply = Vec::new();
                    let _ = s.read_to_end(&mut reply);
                    if k % reqs.len() == 0 {
                        replies.lock().unwrap().0 = reply;
                    }
                }
                if let Ok(mut s) = std::net::TcpStream::connect(maddr) {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.write_all(heads[k % heads.len()]);
                    let _ = s.shutdown(std::net::Shutdown::Write);
                    let mut reply = Vec::new();
                    let _ = s.read_to_end(&mut reply);
                    if k % heads.len() == 0 {
                        replies.lock().unwrap().1 = reply;
                    }
                }
                k += 1;
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        scope.spawn(|| {
            let scripts = [Script::http(500, "down"), Script::http(200, "status: OK")];
            let end = Instant::now() + Duration::from_secs(120);
            let mut k = 0;
            while !stop.load(Relaxed) && Instant::now() < end {
                flapper.set_script(scripts[k % 2].clone());
                k += 1;
                // Irregular, so the flapping never locks onto the checks' grid (which would
                // show only one of its two faces).
                std::thread::sleep(Duration::from_millis(90 + (k as u64 * 37) % 120));
            }
        });
        scope.spawn(|| {
            let slow = Script(vec![
                Action::Sleep(Duration::from_millis(400)),
                Action::send("+OK\r\n"),
                Action::Drain,
            ]);
            let cycle = [
                (Script::banner("+OK"), 2200),
                (slow, 1500),
                (Script(vec![Action::Close]), 300),
            ];
            let end = Instant::now() + Duration::from_secs(120);
            let mut k = 0;
            while !stop.load(Relaxed) && Instant::now() < end {
                let (script, ms) = &cycle[k % cycle.len()];
                weigh.set_script(script.clone());
                k += 1;
                let until = Instant::now() + Duration::from_millis(*ms);
                while !stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // The exec --dynamic program's exit code (0, 3, 6: weights 10, 1, 4), changed every
        // 700 ms by a rename, so that it never reads a half-written file.
        scope.spawn(|| {
            let codes = ["0\n", "3\n", "6\n"];
            let tmp = exec_code.with_extension("new");
            let end = Instant::now() + Duration::from_secs(120);
            let mut k = 1;
            while !stop.load(Relaxed) && Instant::now() < end {
                std::fs::write(&tmp, codes[k % codes.len()]).unwrap();
                std::fs::rename(&tmp, &exec_code).unwrap();
                k += 1;
                let until = Instant::now() + Duration::from_millis(700);
                while !stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        // The notify-fifo's reader: opens the FIFO, reads part of a line, leaves the rest
        // waiting a while, then closes it with lines unread (the loop's next write gets EPIPE
        // and counts them), and comes back later.
        scope.spawn(|| {
            let c = std::ffi::CString::new(fifo_path.to_str().unwrap()).unwrap();
            let end = Instant::now() + Duration::from_secs(120);
            let mut b = [0u8; 60];
            while !stop.load(Relaxed) && Instant::now() < end {
                // SAFETY: open with a NUL-terminated path.
                let rd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_NONBLOCK) };
                assert!(rd >= 0, "FIFO reader");
                // Wait (at most 3 s) until the loop has opened its end again and written a
                // few lines: on a slow machine (the VM guest's emulated CPU) that takes longer
                // than any fixed pause would allow for.
                let until = Instant::now() + Duration::from_secs(3);
                while !stop.load(Relaxed) && Instant::now() < until {
                    let mut n: libc::c_int = 0;
                    // SAFETY: FIONREAD into a live int, on our own descriptor.
                    if unsafe { libc::ioctl(rd, libc::FIONREAD, &mut n) } == 0 && n >= 120 {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // SAFETY: reads into our own buffer.
                let _ = unsafe { libc::read(rd, b.as_mut_ptr().cast(), b.len()) };
                // SAFETY: closing our own descriptor.
                unsafe { libc::close(rd) };
                // Away long enough for the loop's next line to meet EPIPE.
                let until = Instant::now() + Duration::from_secs(1);
                while !stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        // The agent's words, changed every 300 ms.
        scope.spawn(|| {
            let said = ["50%", "drain", "down,disk full", "up 100%"];
            let end = Instant::now() + Duration::from_secs(120);
            let mut k = 0;
            while !stop.load(Relaxed) && Instant::now() < end {
                words.set_script(Script::banner(said[k % said.len()]));
                k += 1;
                let until = Instant::now() + Duration::from_millis(300);
                while !stop.load(Relaxed) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        run_counted(&mut d, &stop, &mut watch)
    });
    SD_STOP.store(true, Relaxed);
    let sd_seen = sd_reader.join().expect("notify socket reader");
    report(
        d,
        backends,
        run,
        sd_seen,
        (log_dropped0, log_reader),
        &watch,
        (syslog, &replies.into_inner().unwrap()),
    );
}

/// What [`syslog_restart_counted`] saw: allocations, lines dropped, connects tried, and
/// whether the lines came back after the restart with the note first.
struct SyslogRun {
    allocs: usize,
    dropped: u64,
    reconnects: u64,
    came_back: bool,
}

/// With `--log syslog` the log connects again, from the loop, to a syslog daemon that
/// restarted. Counted on this thread, as the loop is: lines to a syslog socket that works,
/// then is removed (lines dropped; one failed connect), then bound again (connected again
/// within the second: the `log lines dropped` line, then the lines), then removed for good
/// (a failed connect a second for 1.5 s).
fn syslog_restart_counted() -> SyslogRun {
    use std::io::Write;
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("noalloc-syslog");
    let path = dir.0.join("log");
    let bind = || {
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        rx
    };
    let mut rx = bind();
    let mut log = Log::syslog_at(&path, Level::Info).expect("syslog socket");
    let mut buf = vec![0u8; 4096];
    let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    let say = |log: &mut Log, i: u64| {
        ON.with(|c| c.set(true));
        if let Some(mut l) = log.line(Level::Notice) {
            let _ = write!(l, "msg=\"syslog line\" n={i}");
        }
        ON.with(|c| c.set(false));
    };
    for i in 0..10 {
        say(&mut log, i);
    }
    let mut got = 0;
    while rx.recv(&mut buf).is_ok() {
        got += 1;
    }
    assert_eq!(got, 10, "syslog lines before the restart");
    // The syslog daemon restarts.
    drop(rx);
    std::fs::remove_file(&path).unwrap();
    for i in 10..110 {
        say(&mut log, i);
    }
    rx = bind();
    let end = Instant::now() + Duration::from_secs(3);
    let mut first = String::new();
    let mut i = 110;
    while first.is_empty() && Instant::now() < end {
        say(&mut log, i);
        i += 1;
        if let Ok(n) = rx.recv(&mut buf) {
            first = String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let dropped = log.dropped();
    let came_back = first.ends_with(&format!("msg=\"log lines dropped\" count={dropped}"))
        && rx
            .recv(&mut buf)
            .is_ok_and(|n| buf[..n].ends_with(format!("n={}", i - 1).as_bytes()));
    // Gone for good.
    drop(rx);
    std::fs::remove_file(&path).unwrap();
    let end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < end {
        say(&mut log, i);
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let allocs = ALLOCS.load(Relaxed) - a0;
    // Reported on their own: the loop's count starts from where it was.
    ALLOCS.store(a0, Relaxed);
    BYTES.store(b0, Relaxed);
    let r = SyslogRun {
        allocs,
        dropped: log.dropped(),
        reconnects: log.syslog_reconnects(),
        came_back,
    };
    println!(
        "no_alloc: syslog: {i} lines, {} dropped, {} connects tried again, back after the restart: {}, allocations {}",
        r.dropped, r.reconnects, r.came_back, r.allocs
    );
    r
}

/// What the weight chain's inputs did while counting, sampled after each turn (without
/// allocating): the changing agent's real (weight 10) at 5 (`50%`), at 0 while UP
/// (`drain`), DOWN (`down`) and at 10 again (`up 100%`); the `exec --dynamic` real at 10
/// (exit 0), 1 (exit 3) and 4 (exit 6).
#[derive(Default)]
struct Watch {
    agent: usize,
    exec: usize,
    agent_seen: [bool; 4],
    exec_seen: [bool; 3],
}

impl Watch {
    fn sample(&mut self, d: &Daemon) {
        let (state, _, _) = d.real_state(self.agent);
        let w = d.real_weight(self.agent);
        let up = state == State::Up;
        let a = &mut self.agent_seen;
        a[0] |= up && w == Some(5);
        a[1] |= up && w == Some(0);
        a[2] |= state == State::Down;
        a[3] |= a[2] && up && w == Some(10);
        let w = d.real_weight(self.exec);
        for (k, want) in [10, 1, 4].into_iter().enumerate() {
            self.exec_seen[k] |= w == Some(want);
        }
    }
}

/// A pipe for the daemon's log and a thread reading it: 2 s of nothing, then 0.5 s of
/// reading all there is, and again, until the write end closes (or 300 s). The pipe is one
/// page and the ring 16 KiB, so that both fill within the stall. The thread returns how many
/// `log lines dropped` lines it read.
fn stalling_log_reader() -> (Sink, std::thread::JoinHandle<u64>) {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors, which we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on descriptors we own.
    unsafe {
        libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 4096);
        libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK);
    }
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut r = std::fs::File::from(r);
        let start = Instant::now();
        let pat = b"msg=\"log lines dropped\" count=";
        let mut buf = vec![0u8; 65536 + pat.len()];
        let mut carry = 0;
        let mut notes = 0u64;
        while start.elapsed() < Duration::from_secs(300) {
            if start.elapsed().as_millis() % 2500 < 2000 {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            match r.read(&mut buf[carry..]) {
                Ok(0) => break,
                Ok(n) => {
                    let end = carry + n;
                    notes += buf[..end].windows(pat.len()).filter(|w| *w == pat).count() as u64;
                    // Keep a tail shorter than the pattern, so a match split between two
                    // reads is found once.
                    carry = (pat.len() - 1).min(end);
                    buf.copy_within(end - carry..end, 0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => break,
            }
        }
        notes
    });
    (Sink::Fd(w), reader)
}

/// Tells the notify socket reader to finish.
static SD_STOP: AtomicBool = AtomicBool::new(false);

/// What the stand-in for systemd received.
#[derive(Debug, Default)]
struct SdSeen {
    ready: u64,
    reloading: u64,
    pings: u64,
}

/// Counters before the counted run, when it started, how many turns it took, and the
/// servers' and state saver's counters before it.
struct Run(
    lvsmon::event_loop::Stats,
    lvsmon::notify::NotifyCounters,
    Instant,
    u64,
    lvsmon::control::ServerStats,
    u64,
    lvsmon::sd_notify::SdCounters,
    (u64, u64, u64, u64),
);

fn run_counted(d: &mut Daemon, stop: &AtomicBool, watch: &mut Watch) -> Run {
    let before = d.stats().clone();
    let nb = d.notify_counters();
    let sb = d.server_stats();
    let saves = d.state_saves();
    let sd = d
        .systemd_counters()
        .expect("notifying the stand-in systemd");
    let ea = d.exec_agent_counts();
    let t0 = Instant::now();
    let limit = Duration::from_secs(90);
    ON.with(|c| c.set(true));
    let mut turns = 0u64;
    let (mut reloaded, mut stalled, mut helper_killed) = (false, false, false);
    while d.stats().checks - before.checks < MIN_CYCLES && t0.elapsed() < limit {
        d.turn(Some(Duration::from_millis(20))).unwrap();
        watch.sample(d);
        turns += 1;
        // At the 100th and 200th turn, or after 1 s and 2 s where turns are slow (the VM's
        // emulated CPU on a busy host), each once.
        if !reloaded && (turns >= 100 || t0.elapsed() >= Duration::from_secs(1)) {
            reloaded = true;
            // What a reload sends around its work (a real one ran before counting).
            d.reloading();
            d.ready();
        }
        if !helper_killed && (turns >= 300 || t0.elapsed() >= Duration::from_secs(3)) {
            helper_killed = true;
            // The TLS helper killed: its checks in flight are local errors, and it is
            // started again, all without an allocation of the loop's.
            let (pid, _) = d.tls_helper();
            assert!(pid > 0, "no TLS helper running");
            // SAFETY: kill(2) of the daemon's child, which it has not reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if !stalled && (turns >= 200 || t0.elapsed() >= Duration::from_secs(2)) {
            stalled = true;
            // The loop stands still (a stall): the slow path that gives the running checks
            // their time back runs once, counted.
            std::thread::sleep(Duration::from_millis(600));
        }
    }
    // Let queued notify children finish and be reaped, still counting.
    let tail = Instant::now() + Duration::from_millis(300);
    while Instant::now() < tail {
        d.turn(Some(Duration::from_millis(20))).unwrap();
        turns += 1;
    }
    ON.with(|c| c.set(false));
    stop.store(true, Relaxed);
    Run(before, nb, t0, turns, sb, saves, sd, ea)
}

fn report(
    mut d: Daemon,
    backends: Vec<(&str, Backend, &str)>,
    run: Run,
    sd_seen: SdSeen,
    (log_dropped0, log_reader): (u64, std::thread::JoinHandle<u64>),
    watch: &Watch,
    (syslog, (status, metrics)): (SyslogRun, &(Vec<u8>, Vec<u8>)),
) {
    let allocs = ALLOCS.load(Relaxed);
    let bytes = BYTES.load(Relaxed);
    let Run(before, nb, t0, turns, sb, saves0, sd0, ea0) = run;
    let sa = d.server_stats();
    let saves = d.state_saves() - saves0;
    let after = d.stats().clone();
    let na = d.notify_counters();
    let checks = after.checks - before.checks;
    println!(
        "no_alloc: {turns} loop turns, {checks} check results in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    println!(
        "  passes {}, transitions {}, events {}, local errors (deferred) {}, buffer waits {}",
        after.passes - before.passes,
        after.transitions - before.transitions,
        after.events - before.events,
        after.local_errors - before.local_errors,
        d.buffer_waits(),
    );
    println!(
        "  notify spawned {}, reaped {}; ipvs ops {} ok, {} failed; table drift repaired {}",
        na.spawned - nb.spawned,
        na.reaped - nb.reaped,
        after.ipvs_ok.iter().sum::<u64>() - before.ipvs_ok.iter().sum::<u64>(),
        after.ipvs_errors.iter().sum::<u64>() - before.ipvs_errors.iter().sum::<u64>(),
        after.drift_repaired - before.drift_repaired,
    );
    let mut missing = Vec::new();
    for r in Reason::ALL {
        let n = after.failures[r as usize] - before.failures[r as usize];
        println!("  {:<20} {n}", r.as_str());
        // agent-down is the weight chain's (the table's), never a check's verdict.
        if n == 0 && !matches!(r, Reason::Unreachable | Reason::AgentDown) {
            missing.push(r.as_str());
        }
    }
    let (slow, fast, weights) = (
        after.slow_events - before.slow_events,
        after.fast_events - before.fast_events,
        after.weight_changes - before.weight_changes,
    );
    println!("  weights: {weights} changes of UP reals, {slow} slow and {fast} fast events");
    if slow == 0 || fast == 0 || weights < 4 {
        missing.push("weight chain (slow, fast, slow start, set-weight)");
    }
    let (e1, f1, r1, s1) = d.exec_agent_counts();
    let (e0, f0, r0, s0) = ea0;
    println!(
        "  exec programs started {}, spawn failures {}; agent replies {}, silent {}",
        e1 - e0,
        f1 - f0,
        r1 - r0,
        s1 - s0
    );
    if e1 == e0 || r1 == r0 || s1 == s0 {
        missing.push("exec and agent traffic");
    }
    let (pid, starts) = d.tls_helper();
    let restarts = after.tls_helper_restarts - before.tls_helper_restarts;
    println!("  TLS helper: pid {pid}, {starts} starts, {restarts} restarts while counting");
    if restarts == 0 || pid <= 0 || starts < 2 {
        missing.push("TLS helper restart");
    }
    println!(
        "  while counting: agent at 50% / drain / down / up 100%: {:?}; exec --dynamic at 10 / 1 / 4: {:?}",
        watch.agent_seen, watch.exec_seen
    );
    if watch.agent_seen.contains(&false) || watch.exec_seen.contains(&false) {
        missing.push("agent and exec --dynamic weights");
    }
    let status = String::from_utf8_lossy(status);
    let metrics = String::from_utf8_lossy(metrics);
    let listed = status.ends_with("sync-daemon master lo id 3: dry-run\n");
    let scraped =
        metrics.contains("\nlvsmon_sync_daemon_up{state=\"master\",iface=\"lo\",id=\"3\"} 0\n");
    println!("  sync daemon in status: {listed}, in /metrics: {scraped}");
    if !listed || !scraped {
        missing.push("sync daemon in status and /metrics");
    }
    let fifo_lost = after.fifo_dropped - before.fifo_dropped;
    println!("  notify-fifo lines dropped (left unread by a reader that left) {fifo_lost}");
    if fifo_lost == 0 {
        missing.push("notify-fifo lines lost with its reader");
    }
    let stalls = after.loop_stalls - before.loop_stalls;
    println!("  loop stalls {stalls}");
    if stalls == 0 {
        missing.push("loop stall");
    }
    println!("  allocations after warm-up: {allocs} ({bytes} bytes)");
    let mut ok = true;
    if allocs != 0 {
        println!("FAIL: the loop allocated {allocs} times after warm-up");
        ok = false;
    }
    if checks < MIN_CYCLES {
        println!("FAIL: only {checks} check cycles (want {MIN_CYCLES})");
        ok = false;
    }
    if !missing.is_empty() {
        println!("FAIL: paths not covered: {missing:?}");
        ok = false;
    }
    let ops_ok = after.ipvs_ok.iter().sum::<u64>() - before.ipvs_ok.iter().sum::<u64>();
    let ops_failed = after.ipvs_errors.iter().sum::<u64>() - before.ipvs_errors.iter().sum::<u64>();
    let resyncs = after.resyncs - before.resyncs;
    println!("  resyncs (table read back) {resyncs}");
    let answered = sa.answered - sb.answered;
    println!(
        "  control/metrics requests answered {answered} (accepted {}), state saves {saves}",
        sa.accepted - sb.accepted
    );
    if answered < 20 || saves == 0 {
        println!("FAIL: requests answered {answered}, state saves {saves} while counting");
        ok = false;
    }
    if std::path::Path::new("/proc/net/ip_vs").exists()
        && (ops_ok == 0 || ops_failed > 0 || resyncs == 0)
    {
        println!("FAIL: netlink traffic not covered: {ops_ok} ops ok, {ops_failed} failed, {resyncs} resyncs");
        ok = false;
    }
    let sd = d.systemd_counters().unwrap_or_default();
    let pings = sd.pings - sd0.pings;
    println!(
        "  systemd: {pings} watchdog pings while counting ({} sent in all, {} send errors); the stand-in got {} READY=1, {} RELOADING=1, {} pings",
        sd.sent, sd.errors, sd_seen.ready, sd_seen.reloading, sd_seen.pings
    );
    let elapsed_ms = t0.elapsed().as_millis() as u64;
    // A quarter of the 20 ms periods, or of the turns where a turn takes longer (the VM).
    if pings < (elapsed_ms / 20 / 4).min(turns / 4)
        || sd.errors > 0
        // READY=1 at startup, after the reload before counting and once while counting;
        // RELOADING=1 for that reload and once while counting.
        || sd_seen.ready != 3
        || sd_seen.reloading != 2
        || sd_seen.pings == 0
    {
        println!("FAIL: systemd notifications not covered while counting");
        ok = false;
    }
    if after.transitions == before.transitions || na.spawned == nb.spawned {
        println!("FAIL: no transitions or no notify spawned while counting");
        ok = false;
    }
    let log_dropped = d.log().dropped() - log_dropped0;
    let log_pending = d.log().pending();
    drop(d);
    drop(backends);
    let notes = log_reader.join().expect("log reader");
    println!(
        "  log: {log_dropped} lines dropped while counting, {log_pending} bytes waiting at the end, {notes} `log lines dropped` lines read"
    );
    if log_dropped == 0 || notes == 0 {
        println!("FAIL: the log's full-pipe path (drops and the line saying so) not covered");
        ok = false;
    }
    // One failed connect when the socket went, one that worked when it was back, and at
    // least one more (of 1 or 2) in the 1.5 s it stayed away.
    if syslog.allocs != 0
        || !syslog.came_back
        || syslog.dropped < 101
        || !(3..=4).contains(&syslog.reconnects)
    {
        println!("FAIL: the syslog reconnect path not covered or allocating");
        ok = false;
    }
    if ok {
        println!("1 passed, 0 failed");
    } else {
        println!("0 passed, 1 failed");
        std::process::exit(1);
    }
}

/// A TLS server on loopback (its threads are not counted): a self-signed certificate for
/// `a.example`, and `200 status: OK` to whatever request comes.
fn tls_backend() -> std::net::SocketAddr {
    use std::sync::Arc;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.example".to_string()]).unwrap();
    // Valid until the start of next year: within `--min-days 3000`.
    let year = 1970
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952;
    params.not_after = rcgen::date_time_ymd(year as i32 + 1, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der.into())
        .unwrap();
    let config = Arc::new(config);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                let (mut buf, mut got) = ([0u8; 2048], Vec::new());
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nstatus: OK",
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    addr
}
