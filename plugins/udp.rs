//! `check udp`: one datagram out, one expected back.
//!
//! For services that answer a datagram with a datagram (an echo service, a game server's
//! status query, a syslog relay that acknowledges). The socket is connected, so the kernel
//! drops datagrams from any other source and reports an ICMP port unreachable as
//! `ECONNREFUSED`: the monitor turns that into `connect-refused`. A server that says nothing
//! fails with `recv-timeout` when the check's `timeout` runs out.
//!
//! Options:
//! - `--send TEXT` (required): the datagram;
//! - `--expect TEXT`: the reply must contain TEXT (anywhere);
//! - `--expect-prefix TEXT`: the reply must start with TEXT;
//! - `--max-response BYTES` (default 2048, 256 to 65,507): a longer reply fails with
//!   `response-too-large` (the monitor reads each datagram's real length with `MSG_TRUNC`).
//!
//! Without `--expect`/`--expect-prefix`, any reply passes.

use super::common::{OptionDef, Options};
use super::{CheckState, PluginError, Reason, Step, Verdict};

/// Default `--max-response`.
const DEFAULT_MAX: usize = 2048;

/// The options of `check udp`, in the order error messages list them.
const OPTIONS: &[OptionDef] = &[
    OptionDef::once("--send", "TEXT"),
    OptionDef::once("--expect", "TEXT"),
    OptionDef::once("--expect-prefix", "TEXT"),
    OptionDef::once("--max-response", "BYTES"),
];

/// A configured `udp` check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Udp {
    send: Vec<u8>,
    expect: Option<Vec<u8>>,
    prefix: bool,
    max_response: usize,
}

impl Udp {
    /// Parses `--send`, `--expect`/`--expect-prefix` and `--max-response`.
    ///
    /// # Errors
    /// An unknown or repeated option, a missing `--send`, both expect forms, a bad size.
    pub fn parse(args: &[&[u8]]) -> Result<Udp, PluginError> {
        let mut opts = Options::new(args, OPTIONS, "udp");
        let (mut send, mut expect, mut prefix, mut max) = (None, None, false, DEFAULT_MAX);
        while let Some(o) = opts.next()? {
            match o.name {
                "--send" => {
                    if o.value.is_empty() || o.value.len() > 1500 {
                        return Err(PluginError::at(
                            o.word,
                            "--send needs a datagram of 1 to 1500 bytes",
                        ));
                    }
                    send = Some(o.value.to_vec());
                }
                "--expect" | "--expect-prefix" => {
                    if expect.is_some() {
                        return Err(PluginError::at(
                            o.word,
                            "give --expect or --expect-prefix, not both",
                        ));
                    }
                    if o.value.is_empty() {
                        return Err(PluginError::at(
                            o.word,
                            format!("{} needs a non-empty text", o.name),
                        ));
                    }
                    prefix = o.name == "--expect-prefix";
                    expect = Some(o.value.to_vec());
                }
                _ => max = o.size(256, 65_507)?,
            }
        }
        if let Some(e) = &expect {
            if e.len() > max {
                return Err(PluginError {
                    word: None,
                    message: format!(
                        "the expected text ({} bytes) is longer than --max-response ({max})",
                        e.len()
                    ),
                });
            }
        }
        let send = send.ok_or_else(|| PluginError {
            word: None,
            message: "check udp needs --send TEXT (the datagram to send)".into(),
        })?;
        Ok(Udp {
            send,
            expect,
            prefix,
            max_response: max,
        })
    }

    /// Largest datagram accepted.
    pub fn max_response(&self) -> usize {
        self.max_response
    }

    /// Writes the datagram into `out`; 0 if it does not fit.
    pub fn datagram(&self, _st: &CheckState, out: &mut [u8]) -> usize {
        if self.send.len() > out.len() {
            return 0;
        }
        out[..self.send.len()].copy_from_slice(&self.send);
        self.send.len()
    }

    /// Judges one reply datagram.
    pub fn on_datagram(&self, _st: &mut CheckState, rx: &[u8]) -> Step {
        let ok = match &self.expect {
            None => true,
            Some(e) if self.prefix => rx.starts_with(e),
            Some(e) => rx.windows(e.len()).any(|w| w == e.as_slice()),
        };
        if ok {
            Step::Done(Verdict::Pass)
        } else {
            Step::Done(Verdict::fail_with(Reason::ExpectMismatch, rx))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(args: &[&[u8]]) -> Udp {
        Udp::parse(args).unwrap()
    }

    #[test]
    fn judges_replies() {
        let st = &mut CheckState::default();
        let u = udp(&[b"--send", b"ping", b"--expect", b"pong"]);
        let mut out = [0u8; 64];
        let n = u.datagram(st, &mut out);
        assert_eq!(&out[..n], b"ping");
        assert_eq!(u.on_datagram(st, b"...pong..."), Step::Done(Verdict::Pass));
        assert!(matches!(
            u.on_datagram(st, b"nope"),
            Step::Done(Verdict::Fail(Reason::ExpectMismatch, _))
        ));
        let p = udp(&[b"--send", b"x", b"--expect-prefix", b"OK"]);
        assert_eq!(p.on_datagram(st, b"OK fine"), Step::Done(Verdict::Pass));
        assert!(matches!(
            p.on_datagram(st, b"not OK"),
            Step::Done(Verdict::Fail(Reason::ExpectMismatch, _))
        ));
        let any = udp(&[b"--send", b"x"]);
        assert_eq!(any.on_datagram(st, b""), Step::Done(Verdict::Pass));
        // A datagram of exactly --max-response bytes is a whole reply (longer ones are
        // caught by the monitor, which reads their real length).
        let small = udp(&[b"--send", b"x", b"--max-response", b"256"]);
        assert_eq!(
            small.on_datagram(st, &[0u8; 256]),
            Step::Done(Verdict::Pass)
        );
        assert!(Udp::parse(&[
            b"--send",
            b"x",
            b"--max-response",
            b"256",
            b"--expect",
            &[b'a'; 300]
        ])
        .is_err());
    }

    #[test]
    fn option_errors() {
        assert!(Udp::parse(&[])
            .unwrap_err()
            .message
            .contains("needs --send"));
        let e = Udp::parse(&[b"--send", b"x", b"--expect", b"a", b"--expect-prefix", b"b"])
            .unwrap_err();
        assert_eq!(e.word, Some(5));
        assert_eq!(Udp::parse(&[b"--bogus", b"x"]).unwrap_err().word, Some(0));
        assert_eq!(Udp::parse(&[b"--send", b""]).unwrap_err().word, Some(1));
    }
}
