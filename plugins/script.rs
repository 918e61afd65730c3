//! `check script`: an ordered dialogue of `--send TEXT` and `--expect TEXT` steps, for line
//! protocols that need a word from us before they prove they work (Redis `PING`/`+PONG`, an
//! SMTP `EHLO`, a POP3 `QUIT`).
//!
//! # Semantics
//!
//! - The steps run in the order of the words. At least one step is required; the script may
//!   start with either kind.
//! - A `--send TEXT` step writes TEXT, byte for byte (the config layer has already turned `\r\n`
//!   into CR LF). Consecutive sends are written one after the other.
//! - An `--expect TEXT` step is matched against the **start of the next reply line**, which
//!   begins where the previous expect's line ended (offset `mark` of the received bytes).
//!   - First, lines that look like the continuation lines of a multi-line SMTP or FTP reply
//!     (three digits, then `-`: RFC 5321 §4.2.1, RFC 959 §4.2) are skipped, each once its
//!     `\n` has arrived. So `--expect "250"` after `EHLO` is judged on the final `250 ...` line.
//!     A line of one to three digits waits for its next byte before it is judged, since it may
//!     still become a continuation line. When TEXT itself starts with three digits and `-`,
//!     nothing is skipped: the script asked for that continuation line.
//!   - The expect passes as soon as the line's first bytes equal TEXT; it does not wait for the
//!     rest of the line.
//!   - It fails **at once** with `expect-mismatch` as soon as the bytes present differ from
//!     TEXT, without waiting for the timeout. The detail is `step N: ` and the start of the
//!     line as far as it had arrived, N counting every step from 1 in the order written.
//!   - After a passed expect, the rest of its line is consumed through its `\n`. If that `\n`
//!     has not arrived yet, the next expect first waits for it and skips it. (If TEXT itself
//!     ends with `\n`, the line is already consumed.)
//! - After the last step the check passes; a script that ends with `--send` passes once those
//!   bytes are written.
//! - The peer closing before the steps are done fails the check with `closed`, detail `step N`
//!   (the step that was waiting), or with `expect-mismatch` if the partial line already can't
//!   match.
//! - Bytes that arrive while we are about to send are kept and judged by the next expect when
//!   further bytes arrive; a server that speaks out of turn and then falls silent times out.
//! - `--max-response BYTES` (default 4096, 256 to 1 MiB) bounds every byte received in the whole
//!   dialogue, not one reply.
//!
//! Examples:
//! ```text
//! check script --send "PING\r\n" --expect "+PONG"                                    # Redis
//! check script --expect "220" --send "EHLO lvsmon\r\n" --expect "250" \
//!              --send "QUIT\r\n" --expect "221"                                        # SMTP
//! check script --expect "+OK" --send "QUIT\r\n" --expect "+OK"                       # POP3
//! ```
//!
//! # State
//!
//! [`CheckState::step`] holds the index of the current step in its low 15 bits and, in bit 15
//! (`SKIP_LINE`), whether the line at `mark` must be skipped through its `\n` before the
//! current expect is judged. [`CheckState::mark`] is the offset of the first received byte not
//! yet consumed, so every byte is looked at a bounded number of times.

use super::common::{
    continuation, first_line, newline, OptionDef, Options, MAX_MAX_RESPONSE, MIN_MAX_RESPONSE,
};
use super::{CheckState, Detail, PluginError, Reason, Step, Verdict};

/// Default for `--max-response`: a few replies of a line protocol.
const DEFAULT_MAX_RESPONSE: usize = 4096;

/// Bit of [`CheckState::step`] saying the line at `mark` must be skipped through its `\n`.
const SKIP_LINE: u16 = 0x8000;
/// Bits of [`CheckState::step`] holding the index of the current step.
const INDEX: u16 = SKIP_LINE - 1;

/// The options of `check script`, in the order error messages list them.
const OPTIONS: &[OptionDef] = &[
    OptionDef::repeated("--send", "the text to send"),
    OptionDef::repeated("--expect", "the text a reply line must start with"),
    OptionDef::once("--max-response", "a number of bytes"),
];

/// One step of a dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    /// Write these bytes (never empty).
    Send(Box<[u8]>),
    /// The next reply line must start with these bytes (never empty).
    Expect(Box<[u8]>),
}

/// Options of the `script` plugin: the steps, in order, and the size limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Script {
    /// At least one and at most [`INDEX`] steps.
    steps: Box<[Action]>,
    /// Largest number of bytes received over the whole dialogue.
    max_response: usize,
}

impl Script {
    /// Parses `--send TEXT` / `--expect TEXT` steps in order and `--max-response BYTES`.
    ///
    /// # Errors
    /// No step at all, an empty TEXT, an unknown option, a missing value, a repeated
    /// `--max-response`, a size out of range, or an `--expect` text longer than it.
    pub fn parse(args: &[&[u8]]) -> Result<Script, PluginError> {
        let mut steps = Vec::new();
        let mut max_response = DEFAULT_MAX_RESPONSE;
        // The longest --expect text and its word.
        let mut longest = (0, 0);
        let mut opts = Options::new(args, OPTIONS, "script");
        while let Some(opt) = opts.next()? {
            match opt.name {
                "--send" | "--expect" => {
                    if opt.value.is_empty() {
                        return Err(PluginError::at(
                            opt.word,
                            format!("{} needs a non-empty text", opt.name),
                        ));
                    }
                    if steps.len() >= usize::from(INDEX) {
                        return Err(PluginError::at(
                            opt.word,
                            format!("too many steps (at most {INDEX})"),
                        ));
                    }
                    let text = Box::from(opt.value);
                    steps.push(if opt.name == "--send" {
                        Action::Send(text)
                    } else {
                        Action::Expect(text)
                    });
                }
                _ => max_response = opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)?,
            }
            if opt.name == "--expect" {
                longest = longest.max((opt.value.len(), opt.word));
            }
        }
        if longest.0 > max_response {
            return Err(PluginError::at(
                longest.1,
                format!("--expect text is longer than --max-response ({max_response} bytes)"),
            ));
        }
        if steps.is_empty() {
            return Err(PluginError {
                word: None,
                message: "plugin script needs at least one --send TEXT or --expect TEXT step"
                    .to_string(),
            });
        }
        Ok(Script {
            steps: steps.into_boxed_slice(),
            max_response,
        })
    }

    /// Largest number of bytes received over the whole dialogue.
    pub fn max_response(&self) -> usize {
        self.max_response
    }

    /// The connection is up: send first, or wait for the server to speak.
    pub fn begin(&self, st: &mut CheckState) -> Step {
        self.next_step(st)
    }

    /// The text of the current `--send` step (empty when the current step is not a send).
    pub fn send_bytes(&self, st: &CheckState) -> &[u8] {
        match self.steps.get(usize::from(st.step & INDEX)) {
            Some(Action::Send(text)) => text,
            _ => &[],
        }
    }

    /// The current `--send` step is written: go on with the next step.
    pub fn sent(&self, st: &mut CheckState) -> Step {
        st.step += 1;
        self.next_step(st)
    }

    /// Judges the received bytes from `mark` on against the expect steps, in order.
    pub fn on_data(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        self.judge(st, rx, false)
    }

    /// The peer closed: pass if the remaining expects are met by what arrived, else `closed`
    /// (or `expect-mismatch` for a partial line that cannot match).
    pub fn on_eof(&self, st: &mut CheckState, rx: &[u8]) -> Verdict {
        match self.judge(st, rx, true) {
            Step::Done(v) => v,
            // Unreachable: `judge` decides every case at EOF.
            Step::Send | Step::Recv => Verdict::fail(Reason::Closed),
        }
    }

    /// What the current step wants before any byte is looked at: write, wait, or done.
    fn next_step(&self, st: &CheckState) -> Step {
        match self.steps.get(usize::from(st.step & INDEX)) {
            None => Step::Done(Verdict::Pass),
            Some(Action::Send(_)) => Step::Send,
            Some(Action::Expect(_)) => Step::Recv,
        }
    }

    /// Runs the expect steps over `rx[mark..]` until one needs more bytes, one fails, a send
    /// comes up, or the script is done. At EOF (`eof`), every "need more" becomes a verdict.
    fn judge(&self, st: &mut CheckState, rx: &[u8], eof: bool) -> Step {
        loop {
            let idx = usize::from(st.step & INDEX);
            let text = match self.steps.get(idx) {
                None => return Step::Done(Verdict::Pass),
                Some(Action::Send(_)) if eof => return closed(idx),
                Some(Action::Send(_)) => return Step::Send,
                Some(Action::Expect(text)) => text,
            };
            let mut mark = (st.mark as usize).min(rx.len());
            // The rest of the previous expect's line (or of a continuation line).
            if st.step & SKIP_LINE != 0 {
                match newline(&rx[mark..]) {
                    Some(end) => {
                        mark += end;
                        st.step &= INDEX;
                    }
                    None => {
                        st.mark = rx.len() as u32;
                        return more(eof, idx);
                    }
                }
            }
            // Continuation lines of a multi-line reply, unless the script asked for one.
            if continuation(text, true) != Some(true) {
                loop {
                    let line = &rx[mark..];
                    match continuation(line, eof) {
                        Some(true) => match newline(line) {
                            Some(end) => mark += end,
                            None => {
                                st.step |= SKIP_LINE;
                                st.mark = rx.len() as u32;
                                return more(eof, idx);
                            }
                        },
                        Some(false) => break,
                        None => {
                            st.mark = mark as u32;
                            return more(eof, idx);
                        }
                    }
                }
            }
            st.mark = mark as u32;
            let line = &rx[mark..];
            let n = line.len().min(text.len());
            if line[..n] != text[..n] {
                let mut detail = step_detail(idx);
                detail.push(b": ").push(first_line(line));
                return Step::Done(Verdict::Fail(Reason::ExpectMismatch, detail));
            }
            if n < text.len() {
                return more(eof, idx);
            }
            // Passed: on to the next step, skipping the rest of this line first.
            st.mark = (mark + text.len()) as u32;
            st.step = (idx as u16 + 1) | if text.ends_with(b"\n") { 0 } else { SKIP_LINE };
        }
    }
}

/// Wait for more bytes, or at EOF fail step `idx` with `closed`.
fn more(eof: bool, idx: usize) -> Step {
    if eof {
        closed(idx)
    } else {
        Step::Recv
    }
}

/// Step `idx` could not finish because the peer closed.
fn closed(idx: usize) -> Step {
    Step::Done(Verdict::Fail(Reason::Closed, step_detail(idx)))
}

/// `step N`, N counting from 1.
fn step_detail(idx: usize) -> Detail {
    let mut d = Detail::text(b"step ");
    d.push(Detail::number(idx as u64 + 1).as_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `args` as a script, panicking with the error.
    #[track_caller]
    fn script(args: &[&[u8]]) -> Script {
        Script::parse(args).unwrap_or_else(|e| panic!("parse {args:?}: {e:?}"))
    }

    /// How the server's replies are cut into `on_data` calls.
    #[derive(Debug, Clone, Copy)]
    enum Feed {
        /// Each reply in one piece.
        Whole,
        /// Each reply's first `n` bytes, then the rest.
        Cut(usize),
        /// One byte per call.
        Bytewise,
    }

    /// Plays a whole dialogue. `server` holds the server's replies, in order; a reply is
    /// delivered (in pieces, per `feed`) whenever the plugin waits for bytes, and EOF once they
    /// are all delivered. Returns the bytes the plugin sent and the verdict.
    fn play(s: &Script, server: &[&[u8]], feed: Feed) -> (Vec<u8>, Verdict) {
        let mut st = CheckState::default();
        let mut sent = Vec::new();
        let mut rx: Vec<u8> = Vec::new();
        let mut replies = server.iter().filter(|r| !r.is_empty());
        let mut pending: &[u8] = &[];
        let mut first = false;
        let mut step = s.begin(&mut st);
        loop {
            match step {
                Step::Done(v) => return (sent, v),
                Step::Send => {
                    let bytes = s.send_bytes(&st);
                    assert!(!bytes.is_empty(), "Send with nothing to send");
                    sent.extend_from_slice(bytes);
                    step = s.sent(&mut st);
                }
                Step::Recv => {
                    if pending.is_empty() {
                        let Some(reply) = replies.next() else {
                            return (sent, s.on_eof(&mut st, &rx));
                        };
                        pending = reply;
                        first = true;
                    }
                    let take = match feed {
                        Feed::Whole => pending.len(),
                        Feed::Cut(n) if first => n.min(pending.len()),
                        Feed::Cut(_) => pending.len(),
                        Feed::Bytewise => 1,
                    };
                    first = false;
                    rx.extend_from_slice(&pending[..take]);
                    pending = &pending[take..];
                    step = s.on_data(&mut st, &rx);
                    assert!(st.mark as usize <= rx.len(), "mark past the bytes");
                }
            }
        }
    }

    /// Checks a dialogue whole, split at every byte of every reply, and fed one byte at a time:
    /// the verdict and the bytes sent must be the same every way, except that an
    /// `expect-mismatch` decided on a partial line shows only the part that had arrived.
    #[track_caller]
    fn check(args: &[&[u8]], server: &[&[u8]], sends: &[u8], want: Verdict) {
        let s = script(args);
        let shown: Vec<_> = args.iter().map(|a| String::from_utf8_lossy(a)).collect();
        let longest = server.iter().map(|r| r.len()).max().unwrap_or(0);
        let feeds = [Feed::Whole, Feed::Bytewise]
            .into_iter()
            .chain((1..longest).map(Feed::Cut));
        for feed in feeds {
            let (sent, v) = play(&s, server, feed);
            if matches!(feed, Feed::Whole) {
                assert_eq!(v, want, "{feed:?}: {shown:?}");
            } else {
                assert_same(v, want, &format!("{feed:?}: {shown:?}"));
            }
            assert_eq!(
                String::from_utf8_lossy(&sent),
                String::from_utf8_lossy(sends),
                "sent bytes, {feed:?}"
            );
        }
    }

    /// `got` equals `want`, or both are the same immediate mismatch and `got`'s detail is the
    /// start of `want`'s (it was decided before the whole line had arrived).
    #[track_caller]
    fn assert_same(got: Verdict, want: Verdict, context: &str) {
        if let (Verdict::Fail(r, d), Verdict::Fail(wr, wd)) = (got, want) {
            if r == wr && r == Reason::ExpectMismatch && wd.as_str().starts_with(d.as_str()) {
                return;
            }
        }
        assert_eq!(got, want, "{context}");
    }

    macro_rules! dialogue {
        ($name:ident, [$($arg:expr),* $(,)?], server [$($reply:expr),* $(,)?],
         sends $sends:expr, $want:expr) => {
            #[test]
            fn $name() {
                check(&[$(&$arg[..]),*], &[$(&$reply[..]),*], $sends, $want);
            }
        };
    }

    fn mismatch(detail: &[u8]) -> Verdict {
        Verdict::fail_with(Reason::ExpectMismatch, detail)
    }

    fn closed(detail: &[u8]) -> Verdict {
        Verdict::fail_with(Reason::Closed, detail)
    }

    // Tests for passing dialogues.

    dialogue!(redis_ping, [b"--send", b"PING\r\n", b"--expect", b"+PONG"],
        server [b"+PONG\r\n"], sends b"PING\r\n", Verdict::Pass);

    dialogue!(smtp_multiline_ehlo,
        [b"--expect", b"220", b"--send", b"EHLO lvsmon\r\n", b"--expect", b"250",
         b"--send", b"QUIT\r\n", b"--expect", b"221"],
        server [
            b"220 mail.example.com ESMTP Postfix\r\n",
            b"250-mail.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n",
            b"221 2.0.0 Bye\r\n",
        ],
        sends b"EHLO lvsmon\r\nQUIT\r\n", Verdict::Pass);

    dialogue!(smtp_multiline_greeting,
        [b"--expect", b"220 ", b"--send", b"QUIT\r\n", b"--expect", b"221"],
        server [b"220-mail.example.com ESMTP\r\n220-no UCE\r\n220 ready\r\n", b"221 bye\r\n"],
        sends b"QUIT\r\n", Verdict::Pass);

    dialogue!(pop3_quit, [b"--expect", b"+OK", b"--send", b"QUIT\r\n", b"--expect", b"+OK"],
        server [b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n",
                b"+OK dewey signing off\r\n"],
        sends b"QUIT\r\n", Verdict::Pass);

    dialogue!(ftp_multiline_welcome,
        [b"--expect", b"220", b"--send", b"QUIT\r\n", b"--expect", b"221"],
        server [b"220-Welcome\r\n220-Be nice\r\n220 FTP ready\r\n", b"221 Goodbye.\r\n"],
        sends b"QUIT\r\n", Verdict::Pass);

    dialogue!(expect_asks_for_continuation_line,
        [b"--send", b"EHLO x\r\n", b"--expect", b"250-", b"--expect", b"250 "],
        server [b"250-first\r\n250 last\r\n"], sends b"EHLO x\r\n", Verdict::Pass);

    dialogue!(two_expects_in_one_reply, [b"--expect", b"a", b"--expect", b"b"],
        server [b"a1\r\nb2\r\n"], sends b"", Verdict::Pass);

    dialogue!(expect_with_line_ending, [b"--expect", b"+OK\r\n", b"--expect", b"+OK"],
        server [b"+OK\r\n+OK again\r\n"], sends b"", Verdict::Pass);

    dialogue!(ends_with_send, [b"--expect", b"+OK", b"--send", b"QUIT\r\n"],
        server [b"+OK hi\r\n"], sends b"QUIT\r\n", Verdict::Pass);

    dialogue!(send_only, [b"--send", b"hello\n"], server [], sends b"hello\n", Verdict::Pass);

    dialogue!(two_sends, [b"--send", b"a\n", b"--send", b"b\n", b"--expect", b"ok"],
        server [b"ok\n"], sends b"a\nb\n", Verdict::Pass);

    dialogue!(bare_lf_lines, [b"--expect", b"220", b"--send", b"QUIT\n", b"--expect", b"221"],
        server [b"220-a\n220 b\n", b"221 c\n"], sends b"QUIT\n", Verdict::Pass);

    dialogue!(short_digit_line_at_eof, [b"--expect", b"22"], server [b"22"], sends b"",
        Verdict::Pass);

    dialogue!(inline_option_value, [b"--send=PING\r\n", b"--expect=+PONG"],
        server [b"+PONG\r\n"], sends b"PING\r\n", Verdict::Pass);

    // Tests for failing dialogues.

    dialogue!(redis_error, [b"--send", b"PING\r\n", b"--expect", b"+PONG"],
        server [b"-NOAUTH Authentication required.\r\n"], sends b"PING\r\n",
        mismatch(b"step 2: -NOAUTH Authentication required."));

    dialogue!(smtp_greeting_refused, [b"--expect", b"220", b"--send", b"QUIT\r\n"],
        server [b"554 5.3.2 go away\r\n"], sends b"", mismatch(b"step 1: 554 5.3.2 go away"));

    dialogue!(smtp_ehlo_refused,
        [b"--expect", b"220", b"--send", b"EHLO lvsmon\r\n", b"--expect", b"250"],
        server [b"220 hi\r\n", b"502-not today\r\n502 really\r\n"], sends b"EHLO lvsmon\r\n",
        mismatch(b"step 3: 502 really"));

    dialogue!(mismatch_late_in_line, [b"--expect", b"+OK ready"],
        server [b"+OK busy\r\n"], sends b"", mismatch(b"step 1: +OK busy"));

    dialogue!(closed_before_anything, [b"--expect", b"+OK"], server [], sends b"",
        closed(b"step 1"));

    dialogue!(closed_mid_line, [b"--expect", b"+OK ready"], server [b"+OK re"], sends b"",
        closed(b"step 1"));

    dialogue!(closed_partial_line_at_eof, [b"--expect", b"250"], server [b"25"], sends b"",
        closed(b"step 1"));

    dialogue!(closed_in_continuation, [b"--expect", b"250"], server [b"250-a\r\n250-b"],
        sends b"", closed(b"step 1"));

    dialogue!(closed_before_second_expect,
        [b"--expect", b"220", b"--send", b"QUIT\r\n", b"--expect", b"221"],
        server [b"220 hi\r\n"], sends b"QUIT\r\n", closed(b"step 3"));

    #[test]
    fn eof_judges_bytes_not_seen_yet() {
        // `on_eof` may bring bytes `on_data` never saw: an expect they meet, then a send that
        // can no longer happen.
        let s = script(&[b"--expect", b"a", b"--send", b"x\n", b"--expect", b"b"]);
        let mut st = CheckState::default();
        assert_eq!(s.begin(&mut st), Step::Recv);
        assert_eq!(s.on_eof(&mut st, b"a\r\n"), closed(b"step 2"));
        let s = script(&[b"--expect", b"+OK"]);
        let mut st = CheckState::default();
        assert_eq!(s.on_eof(&mut st, b"-E"), mismatch(b"step 1: -E"));
        let mut st = CheckState::default();
        assert_eq!(s.on_eof(&mut st, b"+OK"), Verdict::Pass);
    }

    dialogue!(second_line_mismatch, [b"--expect", b"a", b"--expect", b"b"],
        server [b"a\r\nc\r\n"], sends b"", mismatch(b"step 2: c"));

    #[test]
    fn mismatch_is_immediate() {
        let s = script(&[b"--expect", b"+PONG"]);
        let mut st = CheckState::default();
        assert_eq!(s.begin(&mut st), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"+PO"), Step::Recv);
        assert_eq!(
            s.on_data(&mut st, b"+POX"),
            Step::Done(mismatch(b"step 1: +POX"))
        );
    }

    #[test]
    fn digits_wait_for_the_fourth_byte() {
        let s = script(&[b"--expect", b"221"]);
        let mut st = CheckState::default();
        assert_eq!(s.begin(&mut st), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"221"), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"221-a\r\n221"), Step::Recv);
        assert_eq!(
            s.on_data(&mut st, b"221-a\r\n221 "),
            Step::Done(Verdict::Pass)
        );
    }

    #[test]
    fn mark_skips_consumed_bytes() {
        let s = script(&[b"--expect", b"a", b"--send", b"x\n", b"--expect", b"b"]);
        let mut st = CheckState::default();
        assert_eq!(s.begin(&mut st), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"a-long-line"), Step::Send);
        assert_eq!(st.step, 1 | SKIP_LINE);
        assert_eq!(st.mark, 1);
        assert_eq!(s.send_bytes(&st), b"x\n");
        assert_eq!(s.sent(&mut st), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"a-long-line-still"), Step::Recv);
        assert_eq!(st.mark, 17);
        assert_eq!(
            s.on_data(&mut st, b"a-long-line-still\r\nb"),
            Step::Done(Verdict::Pass)
        );
    }

    #[test]
    fn large_reply_keeps_waiting() {
        // The monitor fails `response-too-large` when Recv comes back at the limit.
        let s = script(&[b"--expect", b"250", b"--max-response", b"256"]);
        assert_eq!(s.max_response(), 256);
        let mut rx = Vec::new();
        let mut st = CheckState::default();
        while rx.len() < 300 {
            rx.extend_from_slice(b"250-xxxxxxxx\r\n");
            assert_eq!(s.on_data(&mut st, &rx), Step::Recv);
        }
    }

    // Tests for option errors.

    #[track_caller]
    fn parse_err(args: &[&[u8]], word: Option<usize>, text: &str) {
        let e = Script::parse(args).unwrap_err();
        assert_eq!(e.word, word, "{e:?}");
        assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message);
    }

    #[test]
    fn option_errors() {
        parse_err(&[], None, "at least one");
        parse_err(&[b"--max-response", b"1000"], None, "at least one");
        parse_err(
            &[b"--expect", b"+OK", b"--recv", b"x"],
            Some(2),
            "unknown option \"--recv\"",
        );
        parse_err(
            &[b"--expect", b"+OK", b"--recv", b"x"],
            Some(2),
            "--send, --expect, --max-response",
        );
        parse_err(&[b"--expect"], Some(0), "--expect needs a value");
        parse_err(
            &[b"--expect", b"--send", b"x"],
            Some(0),
            "--expect needs a value",
        );
        parse_err(&[b"--send", b""], Some(1), "non-empty");
        parse_err(&[b"--expect="], Some(0), "non-empty");
        parse_err(
            &[b"--send", b"x", b"--max-response", b"100"],
            Some(3),
            "256 to 1048576",
        );
        parse_err(
            &[b"--send", b"x", b"--max-response", b"4k"],
            Some(3),
            "number of bytes",
        );
        parse_err(
            &[
                b"--max-response",
                b"300",
                b"--send",
                b"x",
                b"--max-response",
                b"400",
            ],
            Some(4),
            "--max-response given twice",
        );
        parse_err(&[b"PING"], Some(0), "unknown option \"PING\"");
        let long = [b'x'; 300];
        parse_err(
            &[
                b"--expect",
                b"a",
                b"--expect",
                &long,
                b"--max-response",
                b"256",
            ],
            Some(3),
            "longer than --max-response",
        );
    }

    #[test]
    fn defaults() {
        let s = script(&[b"--send", b"PING\r\n"]);
        assert_eq!(s.max_response(), 4096);
    }

    // Tests for the shared helpers.

    #[test]
    fn continuation_lines() {
        assert_eq!(continuation(b"250-x", false), Some(true));
        assert_eq!(continuation(b"250-", false), Some(true));
        assert_eq!(continuation(b"250 x", false), Some(false));
        assert_eq!(continuation(b"+OK", false), Some(false));
        assert_eq!(continuation(b"25", false), None);
        assert_eq!(continuation(b"25", true), Some(false));
        assert_eq!(continuation(b"", false), None);
        assert_eq!(continuation(b"2x", false), Some(false));
        assert_eq!(continuation(b"25\r\n", false), Some(false));
    }

    #[test]
    fn first_lines() {
        assert_eq!(first_line(b"220 hi\r\nmore"), b"220 hi");
        assert_eq!(first_line(b"220 hi\nmore"), b"220 hi");
        assert_eq!(first_line(b"220 h"), b"220 h");
        assert_eq!(newline(b"ab\ncd"), Some(3));
        assert_eq!(newline(b"ab"), None);
    }
}
