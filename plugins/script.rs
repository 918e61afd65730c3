//! `check script`: an ordered dialogue of steps, for protocols that need a word from us before
//! they prove they work. Line steps (`--send TEXT`, `--expect TEXT`) serve line protocols (Redis
//! `PING`/`+PONG`, an SMTP `EHLO`, a POP3 `QUIT`); binary steps (`--send-hex`, `--expect-hex`,
//! `--skip`) serve protocols with length-prefixed packets (a MySQL greeting, a PostgreSQL
//! `SSLRequest`).
//!
//! # Semantics
//!
//! - The steps run in the order of the words. At least one step is required; the script may
//!   start with either kind.
//! - A `--send TEXT` step writes TEXT, byte for byte (the config layer has already turned `\r\n`
//!   into CR LF). Consecutive sends are written one after the other.
//! - A `--send-hex HEX` step writes the bytes HEX spells: pairs of hex digits, in either case,
//!   with spaces or tabs allowed between pairs (`"0000 0008 04d2 162f"`; every run of digits
//!   between spaces has an even length). It is the same step as a `--send` of those bytes.
//! - An `--expect TEXT` step is matched against the **start of the next reply line**, which
//!   begins where the previous step stopped (offset `mark` of the received bytes).
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
//!     has not arrived yet, the next receiving step (of either kind) first waits for it and
//!     skips it. (If TEXT itself ends with `\n`, the line is already consumed.)
//! - An `--expect-hex HEX` step has no notion of lines: the next raw bytes, exactly at `mark`,
//!   must equal the bytes HEX spells. `|` separates alternatives (`"53|4e"`: an `S` or an `N`).
//!   - It passes as soon as one alternative has arrived in full and matched, and consumes
//!     exactly those bytes: the next step starts right after them. Since the bytes are compared
//!     as they arrive, the shortest matching alternative wins (`"01|0102"` is `"01"`), and
//!     the order of the alternatives does not matter.
//!   - It fails **at once** with `expect-mismatch` as soon as every alternative differs from the
//!     bytes present. The detail is `step N: ` and the bytes from `mark` on in hex (`45 00 00`),
//!     as many as had arrived and fit.
//!   - Nothing is skipped first: no continuation lines, no line ends (other than the rest of a
//!     line left by a previous `--expect`, see above).
//! - A `--skip N` step consumes the next N raw bytes, whatever they are, waiting until they
//!   have all arrived (1 to `--max-response`).
//! - How the two kinds meet: a binary step after a passed `--expect` starts after that expect's
//!   line (its `\n` included); an `--expect` after a binary step starts exactly where the
//!   binary step stopped, and treats that position as the start of a line (continuation lines
//!   are skipped from there, and the rest of its line is consumed after it passes). So a text
//!   that follows a binary header can be matched with `--skip 4 --expect "5.7"`.
//! - After the last step the check passes; a script that ends with `--send` passes once those
//!   bytes are written.
//! - The peer closing before the steps are done fails the check with `closed`, detail `step N`
//!   (the step that was waiting), or with `expect-mismatch` if the bytes present already can't
//!   match.
//! - Bytes that arrive while we are about to send are kept and judged by the next expect when
//!   further bytes arrive; a server that speaks out of turn and then falls silent times out.
//! - `--max-response BYTES` (default 4096, 256 to 1 MiB) bounds every byte received in the whole
//!   dialogue, not one reply. Every `--expect` text, `--expect-hex` alternative and `--skip`
//!   count must fit in it.
//!
//! Examples:
//! ```text
//! check script --send "PING\r\n" --expect "+PONG"                                    # Redis
//! check script --expect "220" --send "EHLO lvsmon\r\n" --expect "250" \
//!              --send "QUIT\r\n" --expect "221"                                        # SMTP
//! check script --expect "+OK" --send "QUIT\r\n" --expect "+OK"                       # POP3
//! check script --skip 3 --expect-hex "00 0a"                                         # MySQL
//! check script --send-hex "0000 0008 04d2 162f" --expect-hex "53|4e"                 # PostgreSQL
//! ```
//! (`check redis`, `smtp`, `mysql`, `pgsql`... name ready-made scripts: see [`super::presets`].)
//!
//! # State
//!
//! [`CheckState::step`] holds the index of the current step in its low 15 bits and, in bit 15
//! (`SKIP_LINE`), whether the line at `mark` must be skipped through its `\n` before the
//! current receiving step is judged. [`CheckState::mark`] is the offset of the first received
//! byte not yet consumed, so every byte is looked at a bounded number of times: a waiting
//! `--skip` compares lengths only, and a waiting `--expect-hex` compares at most the length of
//! its alternatives.

use std::ops::ControlFlow;

use super::common::{
    continuation, first_line, newline, OptionDef, Options, MAX_MAX_RESPONSE, MIN_MAX_RESPONSE,
};
use super::{CheckState, Detail, PluginError, Reason, Step, Verdict, DETAIL_CAP};

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
    OptionDef::repeated("--send-hex", "the bytes to send, in hex"),
    OptionDef::repeated(
        "--expect-hex",
        "the bytes expected next, in hex; alternatives separated by |",
    ),
    OptionDef::repeated("--skip", "a number of bytes to consume"),
];

/// One step of a dialogue.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Action {
    /// Write these bytes (never empty); from `--send` or `--send-hex`.
    Send(Box<[u8]>),
    /// The next reply line must start with these bytes (never empty).
    Expect(Box<[u8]>),
    /// The next raw bytes must equal one of these. At least one; none empty; sorted, and none
    /// is a prefix of another (so that equal meanings compare equal).
    ExpectHex(Box<[Box<[u8]>]>),
    /// Consume this many raw bytes (at least 1).
    Skip(u32),
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
    /// Parses the steps (`--send TEXT`, `--expect TEXT`, `--send-hex HEX`, `--expect-hex HEX`,
    /// `--skip N`) in order and `--max-response BYTES`.
    ///
    /// # Errors
    /// No step at all, an empty TEXT, malformed HEX, a bad count, an unknown option, a missing
    /// value, a repeated `--max-response`, a size out of range, or an `--expect` text,
    /// `--expect-hex` alternative or `--skip` count larger than it.
    pub fn parse(args: &[&[u8]]) -> Result<Script, PluginError> {
        let mut steps = Vec::new();
        let mut max_response = DEFAULT_MAX_RESPONSE;
        // The most bytes one receiving step needs, with its word and its option.
        let mut longest = (0, 0, "");
        let mut opts = Options::new(args, OPTIONS, "script");
        while let Some(opt) = opts.next()? {
            if opt.name == "--max-response" {
                max_response = opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)?;
                continue;
            }
            if steps.len() >= usize::from(INDEX) {
                return Err(PluginError::at(
                    opt.word,
                    format!("too many steps (at most {INDEX})"),
                ));
            }
            let (step, needs) = match opt.name {
                "--send" | "--expect" if opt.value.is_empty() => {
                    return Err(PluginError::at(
                        opt.word,
                        format!("{} needs a non-empty text", opt.name),
                    ))
                }
                "--send" => (Action::Send(Box::from(opt.value)), 0),
                "--expect" => (Action::Expect(Box::from(opt.value)), opt.value.len()),
                "--send-hex" => {
                    let bytes = hex(opt.value)
                        .map_err(|why| bad_hex(opt.name, opt.value, opt.word, &why))?;
                    (Action::Send(bytes.into()), 0)
                }
                "--expect-hex" => {
                    let alternatives = alternatives(opt.value, opt.word)?;
                    let needs = alternatives.iter().map(|a| a.len()).max().unwrap_or(0);
                    (Action::ExpectHex(alternatives), needs)
                }
                _ => {
                    let n = opt.size(1, MAX_MAX_RESPONSE)?;
                    (Action::Skip(n as u32), n)
                }
            };
            if needs > longest.0 {
                longest = (needs, opt.word, opt.name);
            }
            steps.push(step);
        }
        if longest.0 > max_response {
            let (_, word, name) = longest;
            let what = match name {
                "--expect" => "--expect text is longer than",
                "--expect-hex" => "--expect-hex bytes are more than",
                _ => "--skip count is more than",
            };
            return Err(PluginError::at(
                word,
                format!("{what} --max-response ({max_response} bytes)"),
            ));
        }
        if steps.is_empty() {
            return Err(PluginError {
                word: None,
                message: "plugin script needs at least one step (--send, --expect, --send-hex, \
                          --expect-hex or --skip)"
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

    /// Judges the received bytes from `mark` on against the receiving steps, in order.
    pub fn on_data(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        self.judge(st, rx, false)
    }

    /// The peer closed: pass if the remaining steps are met by what arrived, else `closed`
    /// (or `expect-mismatch` for bytes that cannot match).
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
            Some(_) => Step::Recv,
        }
    }

    /// Runs the receiving steps over `rx[mark..]` until one needs more bytes, one fails, a send
    /// comes up, or the script is done. At EOF (`eof`), every "need more" becomes a verdict.
    fn judge(&self, st: &mut CheckState, rx: &[u8], eof: bool) -> Step {
        loop {
            let idx = usize::from(st.step & INDEX);
            let action = match self.steps.get(idx) {
                None => return Step::Done(Verdict::Pass),
                Some(Action::Send(_)) if eof => return closed(idx),
                Some(Action::Send(_)) => return Step::Send,
                Some(action) => action,
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
            let flow = match action {
                Action::Expect(text) => expect_line(text, st, rx, mark, eof),
                Action::ExpectHex(alternatives) => expect_hex(alternatives, st, rx, mark, eof),
                Action::Skip(n) => skip(*n as usize, st, rx, mark, eof),
                // Handled above.
                Action::Send(_) => ControlFlow::Break(Step::Send),
            };
            if let ControlFlow::Break(step) = flow {
                return step;
            }
        }
    }
}

/// Judges `--expect TEXT` (step `st.step`) on the line at `mark`. On a pass, moves `st` to the
/// next step and continues; otherwise breaks with what to return.
fn expect_line(
    text: &[u8],
    st: &mut CheckState,
    rx: &[u8],
    mut mark: usize,
    eof: bool,
) -> ControlFlow<Step> {
    let idx = usize::from(st.step & INDEX);
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
                        return ControlFlow::Break(more(eof, idx));
                    }
                },
                Some(false) => break,
                None => {
                    st.mark = mark as u32;
                    return ControlFlow::Break(more(eof, idx));
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
        return ControlFlow::Break(Step::Done(Verdict::Fail(Reason::ExpectMismatch, detail)));
    }
    if n < text.len() {
        return ControlFlow::Break(more(eof, idx));
    }
    // Passed: on to the next step, skipping the rest of this line first.
    st.mark = (mark + text.len()) as u32;
    st.step = (idx as u16 + 1) | if text.ends_with(b"\n") { 0 } else { SKIP_LINE };
    ControlFlow::Continue(())
}

/// Judges `--expect-hex` (step `st.step`) on the raw bytes at `mark`: passes on the first
/// alternative present in full, fails once none can match any more.
fn expect_hex(
    alternatives: &[Box<[u8]>],
    st: &mut CheckState,
    rx: &[u8],
    mark: usize,
    eof: bool,
) -> ControlFlow<Step> {
    let idx = usize::from(st.step & INDEX);
    st.mark = mark as u32;
    let got = &rx[mark..];
    let mut waiting = false;
    for alternative in alternatives {
        let n = got.len().min(alternative.len());
        if got[..n] != alternative[..n] {
            continue;
        }
        if n == alternative.len() {
            // No other alternative is a prefix of this one, so none could have passed sooner.
            st.mark = (mark + n) as u32;
            st.step = idx as u16 + 1;
            return ControlFlow::Continue(());
        }
        waiting = true;
    }
    if waiting {
        return ControlFlow::Break(more(eof, idx));
    }
    ControlFlow::Break(Step::Done(Verdict::Fail(
        Reason::ExpectMismatch,
        hex_detail(idx, got),
    )))
}

/// Judges `--skip n` (step `st.step`): passes once `n` bytes follow `mark`.
fn skip(n: usize, st: &mut CheckState, rx: &[u8], mark: usize, eof: bool) -> ControlFlow<Step> {
    let idx = usize::from(st.step & INDEX);
    st.mark = mark as u32;
    if rx.len() - mark < n {
        return ControlFlow::Break(more(eof, idx));
    }
    st.mark = (mark + n) as u32;
    st.step = idx as u16 + 1;
    ControlFlow::Continue(())
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

/// `step N: ` and `bytes` in hex, pairs separated by spaces, as many whole pairs as fit.
fn hex_detail(idx: usize, bytes: &[u8]) -> Detail {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut d = step_detail(idx);
    d.push(b":");
    for &b in bytes {
        if d.as_bytes().len() + 3 > DETAIL_CAP {
            break;
        }
        d.push(&[
            b' ',
            DIGITS[usize::from(b >> 4)],
            DIGITS[usize::from(b & 15)],
        ]);
    }
    d
}

/// The bytes `text` spells in hex (`--send-hex`, one alternative of `--expect-hex`): pairs of
/// hex digits, spaces and tabs allowed between pairs. The error says what is wrong.
fn hex(text: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for group in text
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|g| !g.is_empty())
    {
        if let Some(&c) = group.iter().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("{:?} is not a hex digit", char::from(c)));
        }
        if group.len() % 2 != 0 {
            return Err(format!(
                "{:?} has an odd number of digits",
                String::from_utf8_lossy(group)
            ));
        }
        for pair in group.chunks(2) {
            bytes.push((nibble(pair[0]) << 4) | nibble(pair[1]));
        }
    }
    if bytes.is_empty() {
        return Err("no bytes".to_string());
    }
    Ok(bytes)
}

/// The error for a malformed hex value of `option` (word `word`), saying `why`.
fn bad_hex(option: &str, value: &[u8], word: usize, why: &str) -> PluginError {
    let also = if option == "--expect-hex" {
        "; | between alternatives"
    } else {
        ""
    };
    PluginError::at(
        word,
        format!(
            "bad {option} {:?}: {why} (expected pairs of hex digits, spaces allowed between \
             pairs{also}, such as \"0000 0008 04d2 162f\")",
            String::from_utf8_lossy(value)
        ),
    )
}

/// The value of one hex digit (checked by the caller).
fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// The alternatives of an `--expect-hex` value (`"53|4e"`), in the canonical form of
/// [`Action::ExpectHex`]: sorted, and without any alternative that another is a prefix of
/// (it could never be the one that passes).
fn alternatives(value: &[u8], word: usize) -> Result<Box<[Box<[u8]>]>, PluginError> {
    let mut all = Vec::new();
    for alternative in value.split(|&b| b == b'|') {
        all.push(hex(alternative).map_err(|why| bad_hex("--expect-hex", value, word, &why))?);
    }
    all.sort();
    let mut kept: Vec<Box<[u8]>> = Vec::with_capacity(all.len());
    for alternative in all {
        // Sorted, so whatever starts with a kept alternative comes right after it.
        if kept.last().is_some_and(|k| alternative.starts_with(k)) {
            continue;
        }
        kept.push(alternative.into());
    }
    Ok(kept.into_boxed_slice())
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

    // Tests for binary steps.

    dialogue!(pgsql_ssl_request,
        [b"--send-hex", b"0000 0008 04d2 162f", b"--expect-hex", b"53|4e"],
        server [b"N"], sends b"\x00\x00\x00\x08\x04\xd2\x16\x2f", Verdict::Pass);

    dialogue!(expect_hex_other_alternative, [b"--expect-hex", b"53|4e"], server [b"S"],
        sends b"", Verdict::Pass);

    dialogue!(expect_hex_mismatch_in_hex,
        [b"--send-hex", b"00000008\t04D2162F", b"--expect-hex", b"53|4e"],
        server [b"E\x00\x00\x00\x58SFATAL\x00C0A000\x00"],
        sends b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
        mismatch(b"step 2: 45 00 00 00 58 53 46 41 54 41 4c"));

    dialogue!(expect_hex_consumes_exactly, [b"--expect-hex", b"0102", b"--expect-hex", b"03"],
        server [b"\x01\x02\x03"], sends b"", Verdict::Pass);

    dialogue!(expect_hex_next_bytes_differ, [b"--expect-hex", b"0102", b"--expect-hex", b"03"],
        server [b"\x01\x02\x04\x05"], sends b"", mismatch(b"step 2: 04 05"));

    dialogue!(expect_hex_shortest_alternative_wins,
        [b"--expect-hex", b"0102|01", b"--expect-hex", b"02"],
        server [b"\x01\x02"], sends b"", Verdict::Pass);

    dialogue!(expect_hex_no_line_skipping, [b"--expect-hex", b"32 35 30"],
        server [b"250-a\r\n250 b\r\n"], sends b"", Verdict::Pass);

    dialogue!(skip_then_expect_hex, [b"--skip", b"3", b"--expect-hex", b"00 0a"],
        server [b"\x4a\x00\x00\x00\x0a8.0.36\x00"], sends b"", Verdict::Pass);

    dialogue!(binary_then_line, [b"--skip", b"4", b"--expect", b"+OK"],
        server [b"\x00\x01\x02\x03+OK hi\r\n"], sends b"", Verdict::Pass);

    dialogue!(binary_then_line_skips_continuations, [b"--expect-hex", b"00", b"--expect", b"250"],
        server [b"\x00250-a\r\n250 b\r\n"], sends b"", Verdict::Pass);

    dialogue!(binary_then_line_mismatch, [b"--skip", b"2", b"--expect", b"OK"],
        server [b"\x00\x00NO\r\n"], sends b"", mismatch(b"step 2: NO"));

    dialogue!(line_then_binary_starts_after_the_line, [b"--expect", b"+OK", b"--expect-hex", b"00ff"],
        server [b"+OK hello\r\n\x00\xff"], sends b"", Verdict::Pass);

    dialogue!(line_then_binary_mismatch, [b"--expect", b"+OK", b"--expect-hex", b"00"],
        server [b"+OK hello\r\nx"], sends b"", mismatch(b"step 2: 78"));

    dialogue!(line_then_skip_waits_for_the_line_end,
        [b"--expect", b"A", b"--skip", b"2", b"--expect-hex", b"ff"],
        server [b"A rest\r\n\x01\x02\xff"], sends b"", Verdict::Pass);

    dialogue!(binary_send_between_expects,
        [b"--expect-hex", b"01", b"--send-hex", b"02", b"--expect-hex", b"03"],
        server [b"\x01", b"\x03"], sends b"\x02", Verdict::Pass);

    dialogue!(skip_short_at_eof, [b"--skip", b"4"], server [b"abc"], sends b"", closed(b"step 1"));

    dialogue!(skip_exact_at_eof, [b"--skip", b"4"], server [b"abcd"], sends b"", Verdict::Pass);

    dialogue!(expect_hex_partial_at_eof, [b"--expect-hex", b"0102"], server [b"\x01"], sends b"",
        closed(b"step 1"));

    dialogue!(expect_hex_closed_before_anything,
        [b"--send-hex", b"00", b"--expect-hex", b"53|4e"], server [], sends b"\x00",
        closed(b"step 2"));

    #[test]
    fn skip_waits_then_expect_hex_fails_at_once() {
        let s = script(&[b"--skip", b"3", b"--expect-hex", b"000a"]);
        let mut st = CheckState::default();
        assert_eq!(s.begin(&mut st), Step::Recv);
        assert_eq!(s.on_data(&mut st, b"\x4a"), Step::Recv);
        assert_eq!((st.step, st.mark), (0, 0));
        assert_eq!(s.on_data(&mut st, b"\x4a\x00\x00"), Step::Recv);
        assert_eq!((st.step, st.mark), (1, 3));
        assert_eq!(s.on_data(&mut st, b"\x4a\x00\x00\x00"), Step::Recv);
        assert_eq!(
            s.on_data(&mut st, b"\x4a\x00\x00\x00\xff"),
            Step::Done(mismatch(b"step 2: 00 ff"))
        );
        let mut st = CheckState::default();
        assert_eq!(
            s.on_data(&mut st, b"\x4a\x00\x00\x00\x0a"),
            Step::Done(Verdict::Pass)
        );
        assert_eq!(st.mark, 5);
    }

    #[test]
    fn hex_detail_shows_whole_pairs_only() {
        let s = script(&[b"--expect-hex", b"00"]);
        let mut st = CheckState::default();
        let Step::Done(Verdict::Fail(Reason::ExpectMismatch, d)) = s.on_data(&mut st, &[0xab; 64])
        else {
            panic!("no mismatch")
        };
        assert_eq!(d.as_str(), "step 1: ab ab ab ab ab ab ab ab ab ab ab");
        // Nine sends, then the expect: step 10 leaves room for one pair less.
        let mut args: Vec<&[u8]> = [&b"--send"[..], b"x"].repeat(9);
        args.extend([&b"--expect-hex"[..], b"00"]);
        let s = script(&args);
        let mut st = CheckState {
            step: 9,
            ..CheckState::default()
        };
        let Step::Done(Verdict::Fail(_, d)) = s.on_data(&mut st, &[0xab; 64]) else {
            panic!("no mismatch")
        };
        assert_eq!(d.as_str(), "step 10: ab ab ab ab ab ab ab ab ab ab");
    }

    #[test]
    fn steps_compare_by_meaning() {
        assert_eq!(
            script(&[b"--expect-hex", b"0102|01"]),
            script(&[b"--expect-hex", b"01"])
        );
        assert_eq!(
            script(&[b"--expect-hex", b"4e|53|4E"]),
            script(&[b"--expect-hex", b"53 | 4e"])
        );
        assert_eq!(
            script(&[b"--send-hex", b"5049 4e47 0d0a"]),
            script(&[b"--send", b"PING\r\n"])
        );
        assert_ne!(
            script(&[b"--expect-hex", b"41"]),
            script(&[b"--expect", b"A"])
        );
        assert_ne!(
            script(&[b"--expect-hex", b"0102"]),
            script(&[b"--expect-hex", b"01", b"--expect-hex", b"02"])
        );
    }

    #[test]
    fn binary_option_errors() {
        parse_err(
            &[b"PING"],
            Some(0),
            "--send, --expect, --max-response, --send-hex, --expect-hex, --skip",
        );
        parse_err(&[b"--send-hex", b""], Some(1), "no bytes");
        parse_err(&[b"--send-hex", b"  "], Some(1), "no bytes");
        parse_err(
            &[b"--send-hex", b"000"],
            Some(1),
            "\"000\" has an odd number",
        );
        parse_err(&[b"--send-hex", b"0 0"], Some(1), "\"0\" has an odd number");
        parse_err(&[b"--send-hex", b"0g"], Some(1), "'g' is not a hex digit");
        parse_err(&[b"--send-hex", b"0x00"], Some(1), "'x' is not a hex digit");
        parse_err(&[b"--send-hex"], Some(0), "--send-hex needs a value");
        parse_err(
            &[b"--expect-hex=53|"],
            Some(0),
            "bad --expect-hex \"53|\": no bytes",
        );
        parse_err(&[b"--expect-hex", b"|"], Some(1), "bad --expect-hex \"|\"");
        parse_err(&[b"--skip", b"0"], Some(1), "from 1 to 1048576");
        parse_err(&[b"--skip", b"-1"], Some(1), "bad --skip");
        parse_err(
            &[b"--skip", b"300", b"--max-response", b"256"],
            Some(1),
            "--skip count is more than --max-response (256 bytes)",
        );
        let long = [b'0'; 600];
        parse_err(
            &[b"--max-response", b"256", b"--expect-hex", &long],
            Some(3),
            "--expect-hex bytes are more than --max-response",
        );
        let s = script(&[b"--skip", b"256", b"--max-response", b"256"]);
        assert_eq!(s.max_response(), 256);
        let s = script(&[b"--skip=4096"]);
        assert_eq!(s.max_response(), 4096);
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
