//! UDP servers for tests: a thread answering each datagram on a loopback socket with what a
//! function returns for it (nothing, an echo, a DNS reply), stopped when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A UDP server on 127.0.0.1 answering with `reply(datagram)` (no answer for `None`).
pub struct UdpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    /// Starts the server; it stops when dropped (and after 5 minutes at most).
    pub fn start(reply: fn(&[u8]) -> Option<Vec<u8>>) -> UdpServer {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let end = Instant::now() + Duration::from_secs(300);
            while !s2.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if let Some(r) = reply(&buf[..n]) {
                        let _ = sock.send_to(&r, from);
                    }
                }
            }
        });
        UdpServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A minimal authoritative answer to a DNS query (RFC 1035 4.1): the query echoed with QR,
/// AA and RA set and `rcode`, plus, for NOERROR, one A record 192.0.2.7 for the question's
/// name (through a compression pointer to offset 12). `None` for anything that is not a
/// query.
pub fn dns_answer(q: &[u8], rcode: u8) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    // The question ends after the name's zero label and QTYPE/QCLASS.
    let mut i = 12;
    while i < q.len() && q[i] != 0 {
        i += 1 + q[i] as usize;
    }
    let qend = i + 5;
    if qend > q.len() {
        return None;
    }
    let mut r = q[..qend].to_vec();
    r[2] = 0x80 | 0x04 | (q[2] & 0x01); // QR, AA, RD copied
    r[3] = 0x80 | (rcode & 0x0f); // RA, RCODE
    r[6..8].copy_from_slice(&[0, (rcode == 0) as u8]); // ANCOUNT
    r[8..12].copy_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    if rcode == 0 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    }
    Some(r)
}
