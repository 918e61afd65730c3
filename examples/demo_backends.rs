//! Loopback backends for the README's demo (`examples/demo.sh`): a few tiny servers that
//! behave like real servers behind a director, healthy and not.
//!
//! - 127.77.0.1:8080 answers `200 OK` with body `OK`;
//! - 127.77.0.2:8080 answers `503 Service Unavailable` (always down);
//! - 127.77.0.3:8080 is healthy for 8 s, then fails for 8 s, and so on (down and up events);
//! - 127.77.0.4:2222 greets like an SSH server.
//!
//! Runs until killed, or for `DEMO_SECONDS` + 5 seconds (default 25) at most.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

fn http(mut s: TcpStream, status: &str, body: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = [0u8; 2048];
    let mut got = 0;
    while got < req.len() {
        match s.read(&mut req[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if req[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(reply.as_bytes());
}

fn serve(addr: &'static str, handler: fn(TcpStream, Instant), start: Instant) {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("demo backend {addr}: {e}"));
    thread::spawn(move || {
        for s in l.incoming().flatten() {
            thread::spawn(move || handler(s, start));
        }
    });
}

fn main() {
    let start = Instant::now();
    serve("127.77.0.1:8080", |s, _| http(s, "200 OK", "OK\n"), start);
    serve(
        "127.77.0.2:8080",
        |s, _| http(s, "503 Service Unavailable", "maintenance\n"),
        start,
    );
    serve(
        "127.77.0.3:8080",
        |s, t0| {
            if (t0.elapsed().as_secs() / 8) % 2 == 0 {
                http(s, "200 OK", "OK\n")
            } else {
                http(s, "500 Internal Server Error", "database gone\n")
            }
        },
        start,
    );
    serve(
        "127.77.0.4:2222",
        |mut s, _| {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n");
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut [0u8; 64]);
        },
        start,
    );
    eprintln!("demo backends: 127.77.0.1:8080 (200 OK), 127.77.0.2:8080 (503), 127.77.0.3:8080 (flaps every 8 s), 127.77.0.4:2222 (SSH banner)");
    let secs: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    thread::sleep(Duration::from_secs(secs + 5));
}
