//! Tests for the test backends in `tests/common/backend.rs`: each action and special server,
//! checked with a plain blocking `std::net::TcpStream` client that has read and write timeouts.

mod common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{refused_addr, refused_addr_on, Action, Backend, FullQueue, Netns, Script};

const GET: &[u8] = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n";

/// A client with a 1 s connect timeout and 2 s read and write timeouts.
#[track_caller]
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
}

/// Reads until EOF, an error or `limit` bytes; returns what was read and how it ended.
fn read_all(stream: &mut TcpStream, limit: usize) -> (Vec<u8>, io::Result<()>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    while got.len() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return (got, Ok(())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return (got, Err(e)),
        }
    }
    (got, Ok(()))
}

/// Sends `request` and returns the whole response, which must end with EOF.
#[track_caller]
fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut client = connect(addr);
    client.write_all(request).unwrap();
    let (got, end) = read_all(&mut client, 1 << 20);
    end.unwrap_or_else(|e| panic!("reading from {addr}: {e}"));
    got
}

/// Splits a response into status code, headers and body, checking that it is well-formed
/// HTTP/1.1 with a correct Content-Length.
#[track_caller]
fn parse_http(response: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let text = String::from_utf8(response.to_vec()).expect("response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("blank line after head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status: u16 = parts.next().unwrap().parse().expect("status code");
    assert!(!parts.next().unwrap_or("").is_empty(), "reason phrase");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').expect("header has a colon");
            (name.to_ascii_lowercase(), value.trim().to_string())
        })
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap())
        .expect("Content-Length");
    assert_eq!(length, body.len(), "Content-Length matches the body");
    (status, headers, body.to_string())
}

fn ipv6_available() -> bool {
    std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

// ---- HTTP and other canned scripts ----

#[test]
fn http_200_is_well_formed() {
    let backend = Backend::start(Script::http(200, "all good\n"));
    let (status, headers, body) = parse_http(&exchange(backend.addr(), GET));
    assert_eq!(status, 200);
    assert_eq!(body, "all good\n");
    assert!(headers.contains(&("connection".into(), "close".into())));
    assert_eq!(backend.accepted(), 1);
    assert_eq!(backend.accept_times().len(), 1);
}

#[test]
fn http_503_is_well_formed() {
    let backend = Backend::start(Script::http(503, ""));
    let response = exchange(backend.addr(), GET);
    assert!(response.starts_with(b"HTTP/1.1 503 Service Unavailable\r\n"));
    let (status, _, body) = parse_http(&response);
    assert_eq!((status, body.as_str()), (503, ""));
}

#[test]
fn http_waits_for_the_whole_request_head() {
    let backend = Backend::start(Script::http(200, "ok"));
    let mut client = connect(backend.addr());
    client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(150)))
        .unwrap();
    let mut buf = [0u8; 64];
    let early = client.read(&mut buf).unwrap_err();
    assert!(matches!(
        early.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut
    ));
    client.write_all(b"\r\n").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (got, end) = read_all(&mut client, 4096);
    end.unwrap();
    assert_eq!(parse_http(&got).0, 200);
}

#[test]
fn raw_sends_bytes_as_given() {
    let backend = Backend::start(Script::raw(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]));
    assert_eq!(
        exchange(backend.addr(), GET),
        b"HTTP/1.1 200 OK\r\nContent-Le"
    );
}

#[test]
fn banner_greets_first_and_waits_for_the_peer() {
    let backend = Backend::start(Script::banner("220 mail.example ESMTP"));
    let mut client = connect(backend.addr());
    let mut buf = [0u8; 64];
    let n = client.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"220 mail.example ESMTP\r\n");
    client.write_all(b"QUIT\r\n").unwrap();
    assert!(backend.wait_accepted(1, Duration::from_secs(1)));
    assert_eq!(backend.live_connections(), 1, "still draining");
    drop(client);
    assert!(backend.wait_idle(Duration::from_secs(2)));
}

// ---- One test per action ----

#[test]
fn expect_matches_across_reads_and_keeps_pipelined_input() {
    let backend = Backend::start(Script(vec![
        Action::expect("HELO"),
        Action::send("250 hello\r\n"),
        Action::expect("QUIT\r\n"),
        Action::send("221 bye\r\n"),
        Action::Close,
    ]));
    let mut client = connect(backend.addr());
    client.write_all(b"HE").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // The rest of HELO and all of QUIT in one segment.
    client.write_all(b"LO x\r\nQUIT\r\n").unwrap();
    let (got, end) = read_all(&mut client, 4096);
    end.unwrap();
    assert_eq!(got, b"250 hello\r\n221 bye\r\n");
}

#[test]
fn expect_gives_up_when_the_peer_closes() {
    let backend = Backend::start(Script(vec![
        Action::expect("never sent"),
        Action::send("after eof"),
        Action::Close,
    ]));
    let mut client = connect(backend.addr());
    client.write_all(b"something else").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (got, end) = read_all(&mut client, 4096);
    end.unwrap();
    assert_eq!(got, b"after eof");
}

#[test]
fn close_gives_eof() {
    let backend = Backend::start(Script(vec![Action::Close]));
    let mut client = connect(backend.addr());
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
}

#[test]
fn close_with_unread_input_is_still_a_fin() {
    // The request is never read by the script: a bare close() would send RST.
    let backend = Backend::start(Script(vec![
        Action::Sleep(Duration::from_millis(50)),
        Action::send("bye"),
        Action::Close,
    ]));
    let mut client = connect(backend.addr());
    client.write_all(GET).unwrap();
    let (got, end) = read_all(&mut client, 4096);
    end.expect("EOF");
    assert_eq!(got, b"bye");
    // An RST after our FIN would not show on the read (EOF comes first) but here: the write
    // would fail with EPIPE. More data after the FIN is read and discarded too.
    client.write_all(b"late").unwrap();
    drop(client);
    assert!(backend.wait_idle(Duration::from_secs(3)));
}

#[test]
fn reset_gives_econnreset() {
    let backend = Backend::start(Script(vec![
        Action::Expect(b"\r\n\r\n".to_vec()),
        Action::Reset,
    ]));
    let mut client = connect(backend.addr());
    client.write_all(GET).unwrap();
    let mut buf = [0u8; 16];
    let err = client.read(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

#[test]
fn hold_gives_a_read_timeout_and_ends_when_the_peer_closes() {
    let backend = Backend::start(Script(vec![Action::Hold]));
    let mut client = connect(backend.addr());
    client.write_all(GET).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let err = client.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(backend.live_connections(), 1);
    drop(client);
    assert!(backend.wait_idle(Duration::from_secs(1)));
}

#[test]
fn hold_reads_nothing() {
    // Unlike Drain, Hold leaves input unread: the receive window fills and the writer blocks.
    let backend = Backend::start(Script(vec![Action::Hold]));
    let mut client = connect(backend.addr());
    // The connection's thread holds it before the first write: a connection still in the
    // accept queue would fill up just the same, whatever the script does.
    assert!(
        wait(Duration::from_secs(5), || backend.live_connections() == 1),
        "the backend never took the connection"
    );
    client
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let chunk = vec![b'h'; 64 * 1024];
    let blocked = (0..1024).find_map(|_| client.write(&chunk).err());
    let err = blocked.expect("a write blocks before 64 MiB");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(backend.live_connections(), 1);
}

#[test]
fn trickle_sends_one_byte_per_period() {
    let period = Duration::from_millis(50);
    let payload = b"abcdef";
    let backend = Backend::start(Script(vec![
        Action::Trickle(payload.to_vec(), period),
        Action::Close,
    ]));
    let started = Instant::now();
    let mut client = connect(backend.addr());
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 16];
    loop {
        let n = client.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        let at = started.elapsed();
        arrivals.extend(buf[..n].iter().map(|&b| (b, at)));
    }
    let bytes: Vec<u8> = arrivals.iter().map(|&(b, _)| b).collect();
    assert_eq!(bytes, payload);
    // Byte i is sent at accept + i * period at the earliest, and accept follows our connect.
    for (i, &(_, at)) in arrivals.iter().enumerate() {
        assert!(at >= period * i as u32, "byte {i} arrived at {at:?}");
    }
    let last = arrivals.last().unwrap().1;
    assert!(last < period * 5 + Duration::from_secs(1), "{last:?}");
}

#[test]
fn sleep_delays_the_next_action() {
    let backend = Backend::start(Script(vec![
        Action::Sleep(Duration::from_millis(200)),
        Action::send("x"),
    ]));
    let started = Instant::now();
    let mut client = connect(backend.addr());
    let (got, end) = read_all(&mut client, 16);
    end.unwrap();
    assert_eq!(got, b"x");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[test]
fn endless_delivers_more_than_a_megabyte() {
    let backend = Backend::start(Script(vec![Action::Endless(
        b"0123456789abcdef".repeat(256),
    )]));
    let mut client = connect(backend.addr());
    let started = Instant::now();
    let (got, end) = read_all(&mut client, 1_500_000);
    end.unwrap();
    assert!(got.len() >= 1_500_000);
    assert!(got.starts_with(b"0123456789abcdef0123"));
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(client);
    // The writer sees EPIPE or ECONNRESET and ends.
    assert!(backend.wait_idle(Duration::from_secs(2)));
}

#[test]
fn drain_reads_until_the_peer_closes() {
    let backend = Backend::start(Script(vec![Action::Drain, Action::send("drained")]));
    let mut client = connect(backend.addr());
    client.write_all(&vec![b'z'; 300_000]).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let (got, end) = read_all(&mut client, 4096);
    end.unwrap();
    assert_eq!(got, b"drained");
}

// ---- Special servers ----

#[test]
fn refused_addr_refuses() {
    let (addr, _guard) = refused_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn refused_addr_on_ipv6_refuses() {
    if !ipv6_available() {
        eprintln!("skipped: no IPv6 on loopback");
        return;
    }
    let (addr, _guard) = refused_addr_on(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn full_queue_connect_times_out() {
    let queue = FullQueue::new();
    assert!(queue.fillers() >= 1);
    let started = Instant::now();
    let err = TcpStream::connect_timeout(&queue.addr(), Duration::from_millis(500)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() >= Duration::from_millis(450));
}

// ---- Backend lifecycle ----

#[test]
fn set_script_switches_behaviour_for_new_connections() {
    let backend = Backend::start(Script::http(200, "up"));
    assert_eq!(parse_http(&exchange(backend.addr(), GET)).0, 200);

    backend.set_script(Script::http(503, "down"));
    assert_eq!(parse_http(&exchange(backend.addr(), GET)).0, 503);

    backend.set_script(Script(vec![Action::expect("\r\n\r\n"), Action::Reset]));
    let mut client = connect(backend.addr());
    client.write_all(GET).unwrap();
    let err = client.read(&mut [0u8; 16]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);

    backend.set_script(Script::http(200, "back"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(parse_http(&exchange(backend.addr(), GET)).2, "back");

    assert_eq!(backend.accepted(), 4);
    let times = backend.accept_times();
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert!(times[3] - times[2] >= Duration::from_millis(100));
}

#[test]
fn set_script_leaves_open_connections_alone() {
    let backend = Backend::start(Script(vec![
        Action::Sleep(Duration::from_millis(100)),
        Action::send("old"),
    ]));
    let mut client = connect(backend.addr());
    assert!(backend.wait_accepted(1, Duration::from_secs(1)));
    backend.set_script(Script(vec![Action::send("new")]));
    let (got, end) = read_all(&mut client, 16);
    end.unwrap();
    assert_eq!(got, b"old");
}

#[test]
fn stop_ends_threads_and_the_port_refuses() {
    let mut backend = Backend::start(Script(vec![Action::Hold]));
    let addr = backend.addr();
    let mut held = connect(addr);
    assert!(backend.wait_accepted(1, Duration::from_secs(1)));
    backend.set_script(Script(vec![Action::Endless(vec![b'e'; 1024])]));
    let mut endless = connect(addr);
    assert!(backend.wait_accepted(2, Duration::from_secs(1)));
    assert!(!backend.wait_idle(Duration::from_millis(20)));

    let started = Instant::now();
    assert!(backend.stop(), "every thread joined");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(backend.live_connections(), 0);

    // Both connections were shut down: EOF (or a reset), not a read timeout.
    let (_, end) = read_all(&mut held, 1024);
    if let Err(e) = end {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }
    let (_, end) = read_all(&mut endless, usize::MAX);
    if let Err(e) = end {
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    }

    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
    assert!(backend.stop(), "a second stop is a no-op");
}

#[test]
fn drop_closes_the_port() {
    let backend = Backend::start(Script(vec![Action::Hold]));
    let addr = backend.addr();
    let _client = connect(addr);
    assert!(backend.wait_accepted(1, Duration::from_secs(1)));
    let started = Instant::now();
    drop(backend);
    assert!(started.elapsed() < Duration::from_secs(1));
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once() {
    let backend = Backend::start(Script(vec![Action::Hold]));
    let cap = common::backend::MAX_CONNECTIONS;
    let clients: Vec<TcpStream> = (0..cap).map(|_| connect(backend.addr())).collect();
    assert!(backend.wait_accepted(cap as u64, Duration::from_secs(3)));
    assert!(wait(Duration::from_secs(3), || backend.live_connections() == cap));

    let mut extra = connect(backend.addr());
    let (got, end) = read_all(&mut extra, 16);
    end.expect("EOF");
    assert!(got.is_empty());
    assert_eq!(backend.live_connections(), cap);
    drop(clients);
    assert!(backend.wait_idle(Duration::from_secs(3)));
}

fn wait(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[test]
fn ipv6_loopback_works() {
    if !ipv6_available() {
        eprintln!("skipped: no IPv6 on loopback");
        return;
    }
    let backend = Backend::start_on("[::1]:0".parse().unwrap(), Script::http(200, "v6"));
    assert!(backend.addr().is_ipv6() && backend.addr().port() != 0);
    assert_eq!(parse_http(&exchange(backend.addr(), GET)).2, "v6");
}

#[test]
fn other_loopback_addresses_work() {
    let backend = Backend::start_on("127.0.0.5:0".parse().unwrap(), Script::http(200, "five"));
    assert_eq!(backend.addr().ip(), "127.0.0.5".parse::<IpAddr>().unwrap());
    assert_eq!(parse_http(&exchange(backend.addr(), GET)).2, "five");
}

// ---- Network namespaces ----

/// bash opens a TCP connection to `host:port` inside the namespace; returns its stderr.
fn bash_connect(netns: &Netns, host: &str) -> (bool, String) {
    let script = format!("exec 3<>/dev/tcp/{host}/80");
    let out = netns.run_output(&["bash", "-c", &script], Duration::from_secs(3));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn netns_unreachable_route_gives_no_route_to_host() {
    let Some(netns) = Netns::new_or_skip() else {
        return;
    };
    netns.add_unreachable_route("198.51.100.0/24");
    let started = Instant::now();
    let (ok, stderr) = bash_connect(&netns, "198.51.100.1");
    assert!(!ok);
    assert!(stderr.contains("No route to host"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(2), "fails at once");
}

#[test]
fn netns_prohibit_route_gives_permission_denied() {
    let Some(netns) = Netns::new_or_skip() else {
        return;
    };
    netns.add_prohibit_route("203.0.113.0/24");
    let (ok, stderr) = bash_connect(&netns, "203.0.113.7");
    assert!(!ok);
    assert!(stderr.contains("Permission denied"), "{stderr}");
}

#[test]
fn netns_backend_inside_is_reachable_from_inside() {
    let Some(netns) = Netns::new_or_skip() else {
        return;
    };
    netns.add_addr("10.11.12.13/32");
    let backend = Backend::start_in(
        &netns,
        "10.11.12.13:0".parse().unwrap(),
        Script::http(200, "inside"),
    );
    let script = format!(
        "exec 3<>/dev/tcp/10.11.12.13/{}; printf 'GET / HTTP/1.1\\r\\n\\r\\n' >&3; cat <&3",
        backend.addr().port()
    );
    let out = netns.run_output(&["bash", "-c", &script], Duration::from_secs(3));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(parse_http(&out.stdout).2, "inside");
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn netns_drop_kills_children_and_deletes_the_namespace() {
    let Some(netns) = Netns::new_or_skip() else {
        return;
    };
    let name = netns.name().to_string();
    let mut child = netns.run(&["sleep", "30"]);
    std::thread::sleep(Duration::from_millis(50));
    assert!(child.try_wait().unwrap().is_none(), "sleep is running");
    drop(netns);
    assert!(wait(Duration::from_secs(2), || child
        .try_wait()
        .unwrap()
        .is_some()));
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&*name)),
        "{list}"
    );
}
