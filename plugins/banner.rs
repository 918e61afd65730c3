//! `check banner`: the real server passes when the first line it sends starts with a prefix
//! (`SSH-2.0-`, `220`, `+OK`, `* OK`), optionally after which we say goodbye in its protocol.
//!
//! # Semantics
//!
//! - `--expect PREFIX` (default empty: any banner passes, as soon as one byte arrives). The
//!   received bytes are compared with PREFIX as they arrive: once the first
//!   `min(received, PREFIX length)` bytes differ, the check fails at once with
//!   `banner-mismatch` and the first line as detail (its first 40 bytes, as far as they had
//!   arrived: a line split by the network shows its first part). Once all of PREFIX has
//!   arrived and matched, the check passes without waiting for the end of the line.
//! - `--send TEXT` (for example `"QUIT\r\n"`): after PREFIX matched, wait for the end of the
//!   banner, write TEXT, then pass; the monitor then closes with a FIN ([`Banner::polite_close`])
//!   so the server logs an orderly goodbye rather than a reset. The end of the banner is the
//!   first complete line (`\n`) that is not a continuation line of a multi-line SMTP or FTP
//!   reply (three digits then `-`, RFC 5321 §4.2.1): an SMTP server behind `postscreen` treats a
//!   client that speaks before the greeting is over as a spammer (`PREGREET`).
//! - EOF: nothing received fails with `closed`; a banner that matched PREFIX passes, even
//!   without its `\n` (and nothing is sent); anything else fails with `banner-mismatch`.
//! - `--max-response BYTES` (default 1024, 256 to 1 MiB) bounds the banner; PREFIX must fit.
//!
//! # State
//!
//! [`CheckState::mark`] is the offset of the first banner line not yet known to be a
//! continuation line, so waiting for the end of a long multi-line banner scans each byte once.
//! [`CheckState::step`] is unused.

use super::common::{continuation, first_line, newline, OptionDef, Options};
use super::common::{MAX_MAX_RESPONSE, MIN_MAX_RESPONSE};
use super::{CheckState, PluginError, Reason, Step, Verdict};

/// Default for `--max-response`: a banner is one line.
const DEFAULT_MAX_RESPONSE: usize = 1024;

/// The options of `check banner`, in the order error messages list them.
const OPTIONS: &[OptionDef] = &[
    OptionDef::once("--expect", "the text the first line must start with"),
    OptionDef::once("--send", "the text to send after the banner"),
    OptionDef::once("--max-response", "a number of bytes"),
];

/// Options of the `banner` plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Banner {
    /// The banner must start with these bytes; empty accepts any banner.
    prefix: Box<[u8]>,
    /// Written after the banner matched; empty when there is nothing to send.
    send: Box<[u8]>,
    /// Largest banner accepted; `>= prefix.len()`.
    max_response: usize,
}

impl Banner {
    /// Parses `--expect PREFIX`, `--send TEXT` and `--max-response BYTES`, each at most once.
    ///
    /// # Errors
    /// An unknown option, a missing value, a repeated option, an empty `--send`, a size out of
    /// range, or a PREFIX longer than `--max-response`.
    pub fn parse(args: &[&[u8]]) -> Result<Banner, PluginError> {
        let mut prefix: (usize, &[u8]) = (0, b"");
        let mut send: &[u8] = b"";
        let mut max_response = DEFAULT_MAX_RESPONSE;
        let mut opts = Options::new(args, OPTIONS, "banner");
        while let Some(opt) = opts.next()? {
            match opt.name {
                "--expect" => prefix = (opt.word, opt.value),
                "--send" if opt.value.is_empty() => {
                    return Err(PluginError::at(opt.word, "--send needs a non-empty text"))
                }
                "--send" => send = opt.value,
                _ => max_response = opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)?,
            }
        }
        if prefix.1.len() > max_response {
            return Err(PluginError::at(
                prefix.0,
                format!("--expect text is longer than --max-response ({max_response} bytes)"),
            ));
        }
        Ok(Banner {
            prefix: Box::from(prefix.1),
            send: Box::from(send),
            max_response,
        })
    }

    /// Largest banner accepted.
    pub fn max_response(&self) -> usize {
        self.max_response
    }

    /// True with `--send`: the check ends with our goodbye, so close with a FIN.
    pub fn polite_close(&self) -> bool {
        !self.send.is_empty()
    }

    /// The server speaks first: wait for its banner.
    pub fn begin(&self, _st: &mut CheckState) -> Step {
        Step::Recv
    }

    /// The `--send` text.
    pub fn send_bytes(&self, _st: &CheckState) -> &[u8] {
        &self.send
    }

    /// The goodbye is written: the check passed.
    pub fn sent(&self, _st: &mut CheckState) -> Step {
        Step::Done(Verdict::Pass)
    }

    /// Compares the banner so far with the prefix; see the module docs.
    pub fn on_data(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        self.judge(st, rx, false)
    }

    /// The peer closed: pass if what arrived starts with the prefix.
    pub fn on_eof(&self, st: &mut CheckState, rx: &[u8]) -> Verdict {
        match self.judge(st, rx, true) {
            Step::Done(v) => v,
            // Unreachable: `judge` decides every case at EOF.
            Step::Send | Step::Recv => Verdict::fail(Reason::Closed),
        }
    }

    /// Judges the banner received so far; at EOF (`eof`) every case gets a verdict.
    fn judge(&self, st: &mut CheckState, rx: &[u8], eof: bool) -> Step {
        if rx.is_empty() {
            return if eof {
                Step::Done(Verdict::fail(Reason::Closed))
            } else {
                Step::Recv
            };
        }
        let n = rx.len().min(self.prefix.len());
        if rx[..n] != self.prefix[..n] || (eof && n < self.prefix.len()) {
            return Step::Done(Verdict::fail_with(Reason::BannerMismatch, first_line(rx)));
        }
        if n < self.prefix.len() {
            return Step::Recv;
        }
        if self.send.is_empty() || eof {
            return Step::Done(Verdict::Pass);
        }
        // Wait for the last line of the banner before we speak.
        let mut mark = (st.mark as usize).min(rx.len());
        while let Some(end) = newline(&rx[mark..]) {
            if continuation(&rx[mark..], true) != Some(true) {
                return Step::Send;
            }
            mark += end;
        }
        st.mark = mark as u32;
        Step::Recv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args`, panicking with the error.
    #[track_caller]
    fn banner(args: &[&[u8]]) -> Banner {
        Banner::parse(args).unwrap_or_else(|e| panic!("parse {args:?}: {e:?}"))
    }

    /// Runs one check: `rx` arrives in growing prefixes ending at each of `cuts` and then whole,
    /// then the peer closes if the plugin still waits. Returns the verdict and whether the
    /// plugin asked to send (the send is then played and must end the check).
    fn run(b: &Banner, rx: &[u8], cuts: &[usize]) -> (Verdict, bool) {
        let mut st = CheckState::default();
        assert_eq!(b.begin(&mut st), Step::Recv);
        for &end in cuts.iter().chain([rx.len()].iter()) {
            match b.on_data(&mut st, &rx[..end]) {
                Step::Recv => assert!(st.mark as usize <= end),
                Step::Done(v) => return (v, false),
                Step::Send => {
                    assert_eq!(b.send_bytes(&st), &b.send[..]);
                    return match b.sent(&mut st) {
                        Step::Done(v) => (v, true),
                        other => panic!("after sent: {other:?}"),
                    };
                }
            }
        }
        (b.on_eof(&mut st, rx), false)
    }

    /// Checks `rx` whole, split at every byte, and fed byte by byte: the same verdict every
    /// way, except that a mismatch decided on a partial line shows only the part that had
    /// arrived.
    #[track_caller]
    fn check(args: &[&[u8]], rx: &[u8], want: Verdict, sends: bool) {
        let b = banner(args);
        assert_eq!(run(&b, rx, &[]), (want, sends), "whole");
        for cut in 1..rx.len() {
            let (v, s) = run(&b, rx, &[cut]);
            assert_same(v, want, &format!("split at {cut}"));
            assert_eq!(s, sends, "split at {cut}");
        }
        let every: Vec<usize> = (1..rx.len()).collect();
        let (v, s) = run(&b, rx, &every);
        assert_same(v, want, "byte by byte");
        assert_eq!(s, sends, "byte by byte");
    }

    /// `got` equals `want`, or both are `banner-mismatch` and `got`'s detail is the start of
    /// `want`'s (it was decided before the whole line had arrived).
    #[track_caller]
    fn assert_same(got: Verdict, want: Verdict, context: &str) {
        if let (Verdict::Fail(r, d), Verdict::Fail(wr, wd)) = (got, want) {
            if r == Reason::BannerMismatch && wr == r && wd.as_str().starts_with(d.as_str()) {
                return;
            }
        }
        assert_eq!(got, want, "{context}");
    }

    macro_rules! banner {
        ($name:ident, [$($arg:expr),* $(,)?], $rx:expr, $want:expr $(, sends $sends:expr)?) => {
            #[test]
            fn $name() {
                #[allow(unused_mut, unused_assignments)]
                let mut sends = false;
                $(sends = $sends;)?
                check(&[$(&$arg[..]),*], $rx, $want, sends);
            }
        };
    }

    fn mismatch(detail: &[u8]) -> Verdict {
        Verdict::fail_with(Reason::BannerMismatch, detail)
    }

    const PASS: Verdict = Verdict::Pass;

    // Tests for passing banners.

    banner!(
        ssh,
        [b"--expect", b"SSH-2.0-"],
        b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
        PASS
    );
    banner!(
        ssh_without_newline_then_eof,
        [b"--expect", b"SSH-2.0-"],
        b"SSH-2.0-Open",
        PASS
    );
    banner!(any_banner, [], b"220 hello\r\n", PASS);
    banner!(empty_expect_is_any, [b"--expect", b""], b"x", PASS);
    banner!(
        imap,
        [b"--expect", b"* OK"],
        b"* OK [CAPABILITY IMAP4rev1] ready\r\n",
        PASS
    );
    banner!(smtp_quit, [b"--expect", b"220", b"--send", b"QUIT\r\n"],
        b"220 mail.example.com ESMTP\r\n", PASS, sends true);
    banner!(smtp_multiline_quit, [b"--expect", b"220", b"--send", b"QUIT\r\n"],
        b"220-mail.example.com ESMTP\r\n220-no UCE\r\n220 ready\r\n", PASS, sends true);
    banner!(
        send_but_eof_mid_line,
        [b"--expect", b"+OK", b"--send", b"QUIT\r\n"],
        b"+OK POP3 rea",
        PASS
    );
    banner!(prefix_with_line_end, [b"--expect", b"+OK\r\n", b"--send", b"QUIT\r\n"],
        b"+OK\r\n", PASS, sends true);

    // Tests for failing banners.

    banner!(
        wrong_protocol,
        [b"--expect", b"SSH-2.0-"],
        b"220 mail ESMTP\r\n",
        mismatch(b"220 mail ESMTP")
    );
    banner!(
        mismatch_late,
        [b"--expect", b"SSH-2.0-"],
        b"SSH-1.99-old\r\n",
        mismatch(b"SSH-1.99-old")
    );
    banner!(
        truncated_prefix_at_eof,
        [b"--expect", b"SSH-2.0-"],
        b"SSH-2",
        mismatch(b"SSH-2")
    );
    banner!(
        short_line,
        [b"--expect", b"SSH-2.0-"],
        b"SSH\r\n",
        mismatch(b"SSH")
    );
    banner!(
        smtp_refused,
        [b"--expect", b"220", b"--send", b"QUIT\r\n"],
        b"554 no service\r\n",
        mismatch(b"554 no service")
    );
    banner!(
        detail_cut_to_40,
        [b"--expect", b"+OK"],
        b"-ERR this is a very long line that goes on and on and on\r\n",
        mismatch(b"-ERR this is a very long line that goes ")
    );

    #[test]
    fn closed_without_bytes() {
        let b = banner(&[b"--expect", b"220"]);
        let mut st = CheckState::default();
        assert_eq!(b.on_eof(&mut st, b""), Verdict::fail(Reason::Closed));
    }

    #[test]
    fn mismatch_is_immediate() {
        let b = banner(&[b"--expect", b"SSH-2.0-"]);
        let mut st = CheckState::default();
        assert_eq!(b.on_data(&mut st, b"SS"), Step::Recv);
        assert_eq!(b.on_data(&mut st, b"SSX"), Step::Done(mismatch(b"SSX")));
    }

    #[test]
    fn passes_before_line_end() {
        let b = banner(&[b"--expect", b"SSH-2.0-"]);
        let mut st = CheckState::default();
        assert_eq!(b.on_data(&mut st, b"SSH-2.0-"), Step::Done(PASS));
    }

    #[test]
    fn send_waits_for_last_line() {
        let b = banner(&[b"--expect", b"220", b"--send", b"QUIT\r\n"]);
        assert!(b.polite_close());
        let mut st = CheckState::default();
        assert_eq!(b.on_data(&mut st, b"220-a\r\n"), Step::Recv);
        assert_eq!(st.mark, 7);
        assert_eq!(b.on_data(&mut st, b"220-a\r\n220 b"), Step::Recv);
        assert_eq!(b.on_data(&mut st, b"220-a\r\n220 b\r\n"), Step::Send);
        assert_eq!(b.send_bytes(&st), b"QUIT\r\n");
        assert_eq!(b.sent(&mut st), Step::Done(PASS));
    }

    #[test]
    fn defaults() {
        let b = banner(&[]);
        assert_eq!(b.max_response(), 1024);
        assert!(!b.polite_close());
        assert_eq!(banner(&[b"--max-response", b"4096"]).max_response(), 4096);
    }

    // Tests for option errors.

    #[track_caller]
    fn parse_err(args: &[&[u8]], word: usize, text: &str) {
        let e = Banner::parse(args).unwrap_err();
        assert_eq!(e.word, Some(word), "{e:?}");
        assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message);
    }

    #[test]
    fn option_errors() {
        parse_err(&[b"--prefix", b"SSH"], 0, "unknown option \"--prefix\"");
        parse_err(
            &[b"--prefix", b"SSH"],
            0,
            "--expect, --send, --max-response",
        );
        parse_err(&[b"--expect", b"SSH", b"--send"], 2, "--send needs a value");
        parse_err(
            &[b"--expect", b"a", b"--expect", b"b"],
            2,
            "--expect given twice",
        );
        parse_err(&[b"--send", b""], 1, "non-empty");
        parse_err(&[b"--max-response", b"0"], 1, "256 to 1048576");
        parse_err(&[b"--max-response", b"2000000"], 1, "256 to 1048576");
        let long = [b'x'; 300];
        parse_err(
            &[b"--max-response", b"256", b"--expect", &long],
            3,
            "longer than",
        );
    }
}
