//! The fixed-size records between the loop and the TLS helper, over a `SOCK_SEQPACKET`
//! socketpair (one record a message, never split), and the helper's configuration blob.
//!
//! Request (loop → helper), [`REQUEST_LEN`] bytes, little-endian:
//! `probe u32 | gen u32 | kind u32 | connect_ms u32 | timeout_ms u32 | family u8 (4 or 6) |
//! pad u8 | port u16 | addr [16]`.
//!
//! Verdict (helper → loop), [`VERDICT_LEN`] bytes:
//! `probe u32 | gen u32 | status u8 (0 pass, 1 fail, 2 local error) | reason u8 (index in
//! Reason::ALL) | detail_len u8 | pad u8 | detail [40] | latency_us u64 | not_after i64 (Unix
//! seconds, 0: no certificate seen)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::plugins::{Detail, Reason, Verdict, DETAIL_CAP};

/// Bytes of a request record.
pub const REQUEST_LEN: usize = 40;
/// Bytes of a verdict record.
pub const VERDICT_LEN: usize = 12 + DETAIL_CAP + 16;

/// One check for the helper to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The loop's probe.
    pub probe: u32,
    /// The probe's socket generation when the check started (stale verdicts are told apart).
    pub gen: u32,
    /// Index of the check's kind in the helper's configuration.
    pub kind: u32,
    /// Connect timeout, ms.
    pub connect_ms: u32,
    /// Whole-check timeout, ms.
    pub timeout_ms: u32,
    /// Where to connect.
    pub target: SocketAddr,
}

impl Request {
    /// The record's bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut b = [0u8; REQUEST_LEN];
        b[0..4].copy_from_slice(&self.probe.to_le_bytes());
        b[4..8].copy_from_slice(&self.gen.to_le_bytes());
        b[8..12].copy_from_slice(&self.kind.to_le_bytes());
        b[12..16].copy_from_slice(&self.connect_ms.to_le_bytes());
        b[16..20].copy_from_slice(&self.timeout_ms.to_le_bytes());
        b[22..24].copy_from_slice(&self.target.port().to_le_bytes());
        match self.target.ip() {
            IpAddr::V4(a) => {
                b[20] = 4;
                b[24..28].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                b[20] = 6;
                b[24..40].copy_from_slice(&a.octets());
            }
        }
        b
    }

    /// A record read back; `None` when it is not one.
    pub fn decode(b: &[u8]) -> Option<Request> {
        if b.len() != REQUEST_LEN {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let port = u16::from_le_bytes([b[22], b[23]]);
        let ip = match b[20] {
            4 => IpAddr::V4(Ipv4Addr::new(b[24], b[25], b[26], b[27])),
            6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(&b[24..40]);
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        };
        Some(Request {
            probe: u(0),
            gen: u(4),
            kind: u(8),
            connect_ms: u(12),
            timeout_ms: u(16),
            target: SocketAddr::new(ip, port),
        })
    }
}

/// What the helper says of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The verdict.
    Verdict(Verdict),
    /// The helper could not run it (out of slots or descriptors): a local error, never a
    /// failure of the real server.
    Local(Detail),
}

/// One verdict record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The loop's probe.
    pub probe: u32,
    /// The generation of the request.
    pub gen: u32,
    /// The outcome.
    pub outcome: Outcome,
    /// Connect to verdict, as the helper saw it.
    pub latency_us: u64,
    /// The peer certificate's notAfter, Unix seconds; 0 when none was seen.
    pub not_after: i64,
}

impl Answer {
    /// The record's bytes.
    pub fn encode(&self) -> [u8; VERDICT_LEN] {
        let mut b = [0u8; VERDICT_LEN];
        b[0..4].copy_from_slice(&self.probe.to_le_bytes());
        b[4..8].copy_from_slice(&self.gen.to_le_bytes());
        let (status, reason, detail) = match self.outcome {
            Outcome::Verdict(Verdict::Pass) => (0, 0, Detail::EMPTY),
            Outcome::Verdict(Verdict::Fail(r, d)) => (1, r as u8, d),
            Outcome::Local(d) => (2, 0, d),
        };
        b[8] = status;
        b[9] = reason;
        let d = detail.as_bytes();
        b[10] = d.len() as u8;
        b[12..12 + d.len()].copy_from_slice(d);
        let at = 12 + DETAIL_CAP;
        b[at..at + 8].copy_from_slice(&self.latency_us.to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&self.not_after.to_le_bytes());
        b
    }

    /// A record read back; `None` when it is not one.
    pub fn decode(b: &[u8]) -> Option<Answer> {
        if b.len() != VERDICT_LEN {
            return None;
        }
        let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let n = (b[10] as usize).min(DETAIL_CAP);
        let detail = Detail::text(&b[12..12 + n]);
        let outcome = match b[8] {
            0 => Outcome::Verdict(Verdict::Pass),
            1 => Outcome::Verdict(Verdict::Fail(*Reason::ALL.get(b[9] as usize)?, detail)),
            2 => Outcome::Local(detail),
            _ => return None,
        };
        let at = 12 + DETAIL_CAP;
        let mut q = [0u8; 8];
        q.copy_from_slice(&b[at..at + 8]);
        let latency_us = u64::from_le_bytes(q);
        q.copy_from_slice(&b[at + 8..at + 16]);
        Some(Answer {
            probe: u(0),
            gen: u(4),
            outcome,
            latency_us,
            not_after: i64::from_le_bytes(q),
        })
    }
}

/// Magic at the start of the configuration blob.
pub const MAGIC: &[u8; 8] = b"LVSTLS1\n";

/// Writes a length-prefixed byte string.
pub fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a blob written with [`put`] and `u32`s.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `b`.
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b }
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        let (h, t) = self.b.split_at_checked(4)?;
        self.b = t;
        Some(u32::from_le_bytes([h[0], h[1], h[2], h[3]]))
    }

    /// A byte string written with [`put`].
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        let (h, t) = self.b.split_at_checked(n)?;
        self.b = t;
        Some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        for target in ["127.0.0.1:443", "[::1]:8443"] {
            let r = Request {
                probe: 7,
                gen: 65535,
                kind: 2,
                connect_ms: 3000,
                timeout_ms: 5000,
                target: target.parse().unwrap(),
            };
            assert_eq!(Request::decode(&r.encode()), Some(r));
        }
        for outcome in [
            Outcome::Verdict(Verdict::Pass),
            Outcome::Verdict(Verdict::Fail(
                Reason::TlsVerify,
                Detail::text(b"unknown issuer"),
            )),
            Outcome::Local(Detail::text(b"EMFILE")),
        ] {
            let a = Answer {
                probe: 1,
                gen: 2,
                outcome,
                latency_us: 1234,
                not_after: 1_900_000_000,
            };
            assert_eq!(Answer::decode(&a.encode()), Some(a));
        }
        assert_eq!(Answer::decode(&[0u8; 3]), None);
    }
}
