//! `check http`: one HTTP/1.x request; the real server passes when the status is in the
//! expected codes and, with `--match`, the body contains a text.
//!
//! # Request
//!
//! Built once at startup, byte for byte:
//!
//! ```text
//! METHOD TARGET HTTP/1.x\r\n
//! Host: HOST\r\n
//! User-Agent: lvsmon/0.1\r\n
//! Connection: close\r\n
//! (each --header, in order)\r\n
//! \r\n
//! ```
//!
//! - `--url http://host[:port]/path?query`: its authority (host and port as written) is the
//!   `Host` header and its path and query the request target (a fragment is dropped). The
//!   connection still goes to the real server's address. Without `--url` the target is `/` and
//!   `Host` is the address checked (`10.0.0.5:80`, `[2001:db8::5]:80`), written in as the
//!   request is sent ([`Http::target_at`]), so one request serves every real server that
//!   shares the check line. `https://` is refused here:
//!   `check https` (plugins/tls.rs) takes it, and runs this plugin's request and judging over
//!   TLS in the helper process. Userinfo (`user:pw@`) is refused too: use `--header "Authorization:
//!   ..."`.
//! - `--header "Name: value"` (repeatable): a `Host`, `User-Agent` or `Connection` header given
//!   here replaces ours (`Host` stays the first header line, as RFC 9110 §7.2 asks). The name
//!   must be an RFC 9110 token, the value free of control characters other than tab.
//! - `--method GET|HEAD` (default GET), `--version 1.0|1.1` (default 1.1).
//! - `--digest MD5HEX`: instead of `--match`, the whole body (a chunked body's data, without
//!   the chunk framing) must have this MD5, as keepalived's `digest`. Judged once the body is
//!   complete, from the bytes received, with [`super::md5::Md5`] on the stack; a mismatch is
//!   `body-mismatch` with `md5 HEX` (the digest the body had) as detail.
//!
//! # Judging
//!
//! On every `on_data` the response is parsed from its first byte with `httparse`; the parser's
//! state lives on the stack, nothing is allocated.
//!
//! - Headers incomplete: wait. Bytes that are not an HTTP/1.x status line (an HTTP/0.9-style
//!   reply, an SSH banner) or malformed headers fail at once with `http-invalid`, the detail
//!   naming what was wrong. More than 64 header lines count as malformed.
//! - Interim `1xx` responses other than `101` (RFC 9110 §15.2) are skipped; the final response
//!   is judged.
//! - Status not in `--expect` (default `200-399`): `http-status` with the code as detail, as
//!   soon as the headers are complete, without reading the body.
//! - Status expected and no `--match`, or a response without a body (to HEAD, `1xx`, `204`,
//!   `304`): pass as soon as the headers are complete. The body framing is not checked then.
//! - With `--match TEXT`: the body is searched as it arrives and the check passes at the first
//!   occurrence. Once the body is complete (Content-Length bytes; or the last chunk, `0\r\n`, of
//!   a chunked body, without waiting for trailers; or EOF for a body delimited by close) and
//!   TEXT was not found: `body-mismatch`, the detail holding the body's first bytes.
//!   `Transfer-Encoding` wins over `Content-Length` (RFC 9112 §6.3); a `Content-Length` that is
//!   not a number, or several that differ, is `http-invalid`, as are bad chunk framing lines.
//!   Content codings are not undone (we send no `Accept-Encoding`).
//! - For a chunked body, each chunk's data is searched on its own, skipping the chunk-size
//!   lines: **an occurrence of TEXT split across two chunks is not found.**
//! - EOF before the headers are complete: `closed` if nothing arrived, else `http-invalid`
//!   `truncated headers`. EOF inside a Content-Length or chunked body that did not contain TEXT:
//!   `closed` `truncated body`.
//!
//! # State
//!
//! [`CheckState::mark`] is the offset into the received bytes up to which body bytes have been
//! searched: no occurrence of TEXT ends before it. The next search starts `TEXT.len() - 1` bytes
//! before it (within the same chunk), so an occurrence split across two `on_data` calls is found
//! and every body byte is searched a bounded number of times. [`CheckState::step`] is unused.

use std::mem::MaybeUninit;

use httparse::Status;

use super::common::{OptionDef, Options, MAX_MAX_RESPONSE, MIN_MAX_RESPONSE};
use super::md5::{self, Md5};
use super::{CheckState, Detail, PluginError, Reason, Step, Target, Verdict};

/// Default for `--max-response`.
const DEFAULT_MAX_RESPONSE: usize = 16 * 1024;
/// Header lines parsed per response; more is `http-invalid` (`too many headers`).
const MAX_HEADERS: usize = 64;
/// Our `User-Agent`.
const USER_AGENT: &[u8] = b"lvsmon/0.1";

/// The options of `check http`, in the order error messages list them.
const OPTIONS: &[OptionDef] = &[
    OptionDef::once("--url", "a URL like http://host[:port]/path"),
    OptionDef::once("--method", "GET or HEAD"),
    OptionDef::once("--expect", "status codes like 200-399 or 200,301,302"),
    OptionDef::once("--match", "the text the body must contain"),
    OptionDef::once("--digest", "the MD5 of the body, 32 hex digits"),
    OptionDef::repeated("--header", "a header line like \"Name: value\""),
    OptionDef::once("--version", "1.0 or 1.1"),
    OptionDef::once("--max-response", "a number of bytes"),
];

/// Options of the `http` plugin: the request, built at startup, and how to judge the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Http {
    /// The whole request, headers and final empty line; without the `Host` value when that is
    /// the address checked (see `target_at`).
    request: Box<[u8]>,
    /// Where in `request` the address checked goes, as [`crate::plugins::target_text`] writes
    /// it: set when `Host` is that address (no `--url`, no `--header Host`).
    target_at: Option<u32>,
    /// The request is `HEAD`: the response has no body.
    head: bool,
    /// Status codes that pass.
    codes: Codes,
    /// The body must contain this; empty when any body passes.
    needle: Box<[u8]>,
    /// The body's MD5 must be this (`--digest`); exclusive with `needle`.
    digest: Option<[u8; 16]>,
    /// Largest response accepted, `MIN_MAX_RESPONSE..=MAX_MAX_RESPONSE`, `> needle.len()`.
    max_response: usize,
}

impl Http {
    /// Parses the options and builds the request; `target` gives the default `Host`.
    ///
    /// # Errors
    /// An unknown option, a missing value, a repeated option (other than `--header`), an
    /// `https://` or malformed URL, a bad method, status code list, header, version or size,
    /// `--match` with `HEAD`, or a `--match` text that cannot fit in `--max-response`.
    pub fn parse(args: &[&[u8]], target: Target) -> Result<Http, PluginError> {
        Http::parse_with(args, target, false)
    }

    /// As [`Http::parse`], for `check https`: the URL is `https://...`.
    ///
    /// # Errors
    /// As [`Http::parse`], with `http://` refused instead of `https://`.
    pub fn parse_tls(args: &[&[u8]], target: Target) -> Result<Http, PluginError> {
        Http::parse_with(args, target, true)
    }

    fn parse_with(args: &[&[u8]], target: Target, tls: bool) -> Result<Http, PluginError> {
        let mut url: Option<Url> = None;
        let mut head = false;
        let mut method_word = 0;
        let mut codes = Codes::range(200, 399);
        let mut needle: (usize, &[u8]) = (0, b"");
        let mut digest: Option<(usize, [u8; 16])> = None;
        let mut headers: Vec<(usize, &[u8])> = Vec::new();
        let mut minor = b'1';
        let mut max_response = DEFAULT_MAX_RESPONSE;

        let mut opts = Options::new(args, OPTIONS, "http");
        while let Some(opt) = opts.next()? {
            let at = |message: String| PluginError::at(opt.word, message);
            let shown = String::from_utf8_lossy(opt.value);
            match opt.name {
                "--url" => url = Some(Url::parse(opt.value, tls).map_err(at)?),
                "--method" => {
                    method_word = opt.word;
                    head = if opt.value.eq_ignore_ascii_case(b"GET") {
                        false
                    } else if opt.value.eq_ignore_ascii_case(b"HEAD") {
                        true
                    } else {
                        return Err(at(format!("bad --method {shown:?} (expected GET or HEAD)")));
                    };
                }
                "--expect" => codes = Codes::parse(opt.value).map_err(at)?,
                "--match" if opt.value.is_empty() => {
                    return Err(at("--match needs a non-empty text".to_string()))
                }
                "--match" => needle = (opt.word, opt.value),
                "--digest" => match md5::parse_hex(opt.value) {
                    Some(d) => digest = Some((opt.word, d)),
                    None => {
                        return Err(at(format!(
                            "bad --digest {shown:?} (expected an MD5 digest: 32 hex digits)"
                        )))
                    }
                },
                "--header" => {
                    check_header(opt.value).map_err(at)?;
                    headers.push((opt.word, opt.value));
                }
                "--version" => {
                    minor = match opt.value {
                        b"1.0" => b'0',
                        b"1.1" => b'1',
                        _ => {
                            return Err(at(format!(
                                "bad --version {shown:?} (expected 1.0 or 1.1)"
                            )))
                        }
                    }
                }
                _ => max_response = opt.size(MIN_MAX_RESPONSE, MAX_MAX_RESPONSE)?,
            }
        }
        if head && !needle.1.is_empty() {
            return Err(PluginError::at(
                method_word,
                "--method HEAD cannot go with --match: a response to HEAD has no body",
            ));
        }
        if let Some((word, _)) = digest {
            if head {
                return Err(PluginError::at(
                    method_word,
                    "--method HEAD cannot go with --digest: a response to HEAD has no body",
                ));
            }
            if !needle.1.is_empty() {
                return Err(PluginError::at(
                    word,
                    "--digest cannot go with --match: the digest already fixes the whole body",
                ));
            }
        }
        if needle.1.len() >= max_response {
            return Err(PluginError::at(
                needle.0,
                format!("--match text is longer than --max-response ({max_response} bytes)"),
            ));
        }

        let _ = target;
        let host = url.as_ref().map(|u| &u.authority[..]);
        let path: &[u8] = match &url {
            Some(url) => &url.target,
            None => b"/",
        };
        let (request, target_at) = build_request(head, path, minor, host, &headers)?;
        Ok(Http {
            request: request.into_boxed_slice(),
            target_at: target_at.map(|at| at as u32),
            head,
            codes,
            needle: Box::from(needle.1),
            digest: digest.map(|(_, d)| d),
            max_response,
        })
    }

    /// Largest response accepted.
    pub fn max_response(&self) -> usize {
        self.max_response
    }

    /// The connection is up: send the request.
    pub fn begin(&self, _st: &mut CheckState) -> Step {
        Step::Send
    }

    /// The request, built at startup (without the address checked: see
    /// [`Http::target_at`]).
    pub fn send_bytes(&self, _st: &CheckState) -> &[u8] {
        &self.request
    }

    /// Where in [`Http::send_bytes`] the address checked goes as text (the default `Host`),
    /// if it does.
    pub fn target_at(&self) -> Option<usize> {
        self.target_at.map(|at| at as usize)
    }

    /// The request is written: wait for the response.
    pub fn sent(&self, _st: &mut CheckState) -> Step {
        Step::Recv
    }

    /// Judges the response received so far; see the module docs.
    pub fn on_data(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        self.judge(st, rx, false)
    }

    /// The peer closed: judge what arrived as the whole response.
    pub fn on_eof(&self, st: &mut CheckState, rx: &[u8]) -> Verdict {
        match self.judge(st, rx, true) {
            Step::Done(v) => v,
            // Unreachable: `judge` decides every case at EOF.
            Step::Send | Step::Recv => Verdict::fail(Reason::Closed),
        }
    }

    /// Judges `rx`, every byte received; at EOF (`eof`) every case gets a verdict.
    fn judge(&self, st: &mut CheckState, rx: &[u8], eof: bool) -> Step {
        // The status line and headers of the final response.
        let mut start = 0;
        let (code, body, framing) = loop {
            // Most heads are plain (see `plain_head`): when the body does not matter either,
            // the code and the length are all that is needed, without a header list.
            if let Some((code, len)) = plain_head(&rx[start..]) {
                if (100..200).contains(&code) && code != 101 {
                    start += len;
                    continue;
                }
                if self.head || code < 200 || code == 204 || code == 304 || !self.reads_body() {
                    break (code, start + len, Ok(Framing::Empty));
                }
            }
            // Left uninitialised: the parser writes the headers it finds (64 empty ones would
            // be 2 KiB of stores for every call).
            let mut headers =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut []);
            let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut response,
                &rx[start..],
                &mut headers,
            );
            match parsed {
                Err(e) => return invalid(parse_error(e)),
                Ok(Status::Partial) if !eof => return Step::Recv,
                Ok(Status::Partial) if rx.is_empty() => {
                    return Step::Done(Verdict::fail(Reason::Closed))
                }
                Ok(Status::Partial) => return invalid(b"truncated headers"),
                Ok(Status::Complete(len)) => {
                    let code = response.code.unwrap_or(0);
                    if (100..200).contains(&code) && code != 101 {
                        start += len;
                        continue;
                    }
                    let bodiless = self.head || code < 200 || code == 204 || code == 304;
                    let framing = if bodiless || !self.reads_body() {
                        Ok(Framing::Empty)
                    } else {
                        framing(response.headers)
                    };
                    break (code, start + len, framing);
                }
            }
        };
        if !self.codes.contains(code) {
            return Step::Done(Verdict::Fail(
                Reason::HttpStatus,
                Detail::number(code.into()),
            ));
        }
        match framing {
            Err(what) => invalid(what),
            Ok(Framing::Empty) => Step::Done(Verdict::Pass),
            Ok(Framing::Length(length)) => {
                let end = (body as u64).saturating_add(length);
                let have = end.min(rx.len() as u64) as usize;
                if let Some(want) = &self.digest {
                    if have as u64 == end {
                        digest_verdict(want, Md5::digest(&rx[body..have]))
                    } else if eof {
                        Step::Done(Verdict::fail_with(Reason::Closed, b"truncated body"))
                    } else {
                        Step::Recv
                    }
                } else if self.search(st, rx, body, have) {
                    Step::Done(Verdict::Pass)
                } else if have as u64 == end {
                    mismatch(&rx[body..have])
                } else if eof {
                    Step::Done(Verdict::fail_with(Reason::Closed, b"truncated body"))
                } else {
                    Step::Recv
                }
            }
            Ok(Framing::Close) => {
                if let Some(want) = &self.digest {
                    if eof {
                        digest_verdict(want, Md5::digest(&rx[body..]))
                    } else {
                        Step::Recv
                    }
                } else if self.search(st, rx, body, rx.len()) {
                    Step::Done(Verdict::Pass)
                } else if eof {
                    mismatch(&rx[body..])
                } else {
                    Step::Recv
                }
            }
            Ok(Framing::Chunked) => self.chunked(st, rx, body, eof),
        }
    }

    /// Walks a chunked body from `body`, searching each chunk's data; see the module docs.
    fn chunked(&self, st: &mut CheckState, rx: &[u8], body: usize, eof: bool) -> Step {
        let mut at = body;
        let mut first: &[u8] = b"";
        // The digest of the chunks' data, recomputed from the first chunk at every call: the
        // check keeps no state but `mark`, and the body is in `rx` anyway.
        let mut md5 = Md5::new();
        loop {
            let (line, size) = match httparse::parse_chunk_size(&rx[at..]) {
                Err(_) => return invalid(b"invalid chunk size"),
                Ok(Status::Partial) => break,
                Ok(Status::Complete(found)) => found,
            };
            let data = at + line;
            if size == 0 {
                return match &self.digest {
                    Some(want) => digest_verdict(want, md5.finish()),
                    None => mismatch(first),
                };
            }
            let end = (data as u64).saturating_add(size);
            let have = end.min(rx.len() as u64) as usize;
            if first.is_empty() {
                first = &rx[data..have];
            }
            if self.digest.is_some() {
                md5.update(&rx[data..have]);
            } else if self.search(st, rx, data, have) {
                return Step::Done(Verdict::Pass);
            }
            if have as u64 != end || rx.len() - have < 2 {
                break;
            }
            if &rx[have..have + 2] != b"\r\n" {
                return invalid(b"invalid chunk end");
            }
            at = have + 2;
        }
        if eof {
            Step::Done(Verdict::fail_with(Reason::Closed, b"truncated body"))
        } else {
            Step::Recv
        }
    }

    /// The body is read: there is a `--match` or a `--digest`.
    fn reads_body(&self) -> bool {
        !self.needle.is_empty() || self.digest.is_some()
    }

    /// Searches `rx[from..to]`, a stretch of body bytes, for the needle, skipping what earlier
    /// calls searched (`st.mark`), and moves `st.mark` to `to`.
    fn search(&self, st: &mut CheckState, rx: &[u8], from: usize, to: usize) -> bool {
        let mark = st.mark as usize;
        if to <= mark || to <= from {
            return false;
        }
        let start = from.max(mark.saturating_sub(self.needle.len() - 1));
        st.mark = to as u32;
        rx[start..to]
            .windows(self.needle.len())
            .any(|w| *w == *self.needle)
    }
}

/// A complete response head in the plainest form: `HTTP/1.0` or `HTTP/1.1`, one space, three
/// digits, an optional space and reason of printable ASCII, CRLF; at most [`MAX_HEADERS`]
/// lines of a token, a colon, spaces and a value of printable ASCII starting with a visible
/// character, each ending in CRLF; and the empty line. Returns the status code and the head's
/// length, or `None` for anything else, incomplete heads included: httparse (default
/// configuration) then decides. Every head accepted here is one httparse accepts as complete
/// with the same code and length (the test `plain_heads_agree_with_httparse` checks it); it
/// only costs less on the small heads health checks get.
fn plain_head(b: &[u8]) -> Option<(u16, usize)> {
    if b.len() < 12 || !(b.starts_with(b"HTTP/1.1 ") || b.starts_with(b"HTTP/1.0 ")) {
        return None;
    }
    let mut code = 0u16;
    for &d in &b[9..12] {
        if !d.is_ascii_digit() {
            return None;
        }
        code = code * 10 + u16::from(d - b'0');
    }
    let mut i = 12;
    if *b.get(i)? == b' ' {
        i = skip(b, i + 1, PRINT)?;
    }
    let mut lines = 0;
    loop {
        if b[i] != b'\r' || *b.get(i + 1)? != b'\n' {
            return None;
        }
        i += 2;
        let first = *b.get(i)?;
        if first == b'\r' {
            return (*b.get(i + 1)? == b'\n').then_some((code, i + 2));
        }
        lines += 1;
        if lines > MAX_HEADERS || CLASS[usize::from(first)] & TCHAR == 0 {
            return None;
        }
        i = skip(b, i + 1, TCHAR)?;
        if b[i] != b':' {
            return None;
        }
        i = skip(b, i + 1, SPACE)?;
        if CLASS[usize::from(b[i])] & VISIBLE == 0 {
            return None;
        }
        i = skip(b, i + 1, PRINT)?;
    }
}

/// Byte classes of [`plain_head`]: an RFC 9110 `tchar` (header names), printable ASCII
/// (`0x20..=0x7e`), visible ASCII (`0x21..=0x7e`), the space.
const TCHAR: u8 = 1;
const PRINT: u8 = 2;
const VISIBLE: u8 = 4;
const SPACE: u8 = 8;

/// The classes of every byte value.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0x20;
    while c <= 0x7e {
        t[c] = PRINT | if c == 0x20 { SPACE } else { VISIBLE };
        if (c as u8).is_ascii_alphanumeric() {
            t[c] |= TCHAR;
        }
        c += 1;
    }
    let punct = b"!#$%&'*+-.^_`|~";
    let mut k = 0;
    while k < punct.len() {
        t[punct[k] as usize] |= TCHAR;
        k += 1;
    }
    t
};

/// The index of the first byte from `i` on outside `class`; `None` when every byte to the
/// end is in it (the head is incomplete).
fn skip(b: &[u8], i: usize, class: u8) -> Option<usize> {
    let n = b
        .get(i..)?
        .iter()
        .position(|&c| CLASS[usize::from(c)] & class == 0)?;
    Some(i + n)
}

/// A failed check for bytes that are not an HTTP response.
fn invalid(what: &[u8]) -> Step {
    Step::Done(Verdict::fail_with(Reason::HttpInvalid, what))
}

/// A failed check for a complete body without the `--match` text; the detail is its start.
/// `--digest`: the body's MD5 `got` against `want`; a mismatch names the MD5 the body had.
fn digest_verdict(want: &[u8; 16], got: [u8; 16]) -> Step {
    if got == *want {
        return Step::Done(Verdict::Pass);
    }
    let mut detail = Detail::text(b"md5 ");
    detail.push(&md5::hex(&got));
    Step::Done(Verdict::Fail(Reason::BodyMismatch, detail))
}

fn mismatch(body: &[u8]) -> Step {
    Step::Done(Verdict::fail_with(Reason::BodyMismatch, body))
}

/// What was wrong, for an `http-invalid` detail, without formatting (which would allocate).
fn parse_error(e: httparse::Error) -> &'static [u8] {
    match e {
        httparse::Error::HeaderName => b"invalid header name",
        httparse::Error::HeaderValue => b"invalid header value",
        httparse::Error::NewLine => b"invalid new line",
        httparse::Error::Status => b"invalid status line",
        httparse::Error::Token => b"invalid token",
        httparse::Error::TooManyHeaders => b"too many headers",
        httparse::Error::Version => b"not an HTTP/1.x response",
    }
}

/// How the end of a response body is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body, or the body does not matter.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the server closes.
    Close,
}

/// The framing the response headers announce, or what is wrong with them.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, &'static [u8]> {
    let mut length = None;
    let mut chunked = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last header decides.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for part in h.value.split(|&b| b == b',') {
                let n = decimal(part.trim_ascii()).ok_or(&b"invalid content-length"[..])?;
                if length.is_some_and(|l| l != n) {
                    return Err(b"conflicting content-length");
                }
                length = Some(n);
            }
        }
    }
    Ok(match (chunked, length) {
        (Some(true), _) => Framing::Chunked,
        (Some(false), _) | (None, None) => Framing::Close,
        (None, Some(n)) => Framing::Length(n),
    })
}

/// A non-empty string of decimal digits as a number (`None` when not, or too large).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A set of status codes from 100 to 599; bit `code - 100`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Codes([u64; 8]);

impl Codes {
    /// Codes `lo..=hi`, both within `100..=599`.
    fn range(lo: u16, hi: u16) -> Codes {
        let mut codes = Codes([0; 8]);
        codes.add(lo, hi);
        codes
    }

    /// Adds `lo..=hi`, both within `100..=599`.
    fn add(&mut self, lo: u16, hi: u16) {
        for code in lo..=hi {
            let bit = usize::from(code - 100);
            self.0[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// True when `code` is in the set.
    fn contains(&self, code: u16) -> bool {
        match code.checked_sub(100).map(usize::from) {
            Some(bit) if bit < 500 => self.0[bit / 64] & (1 << (bit % 64)) != 0,
            _ => false,
        }
    }

    /// Parses `200`, `200-399`, `200,301,302` or a mixture like `200-299,301`.
    fn parse(text: &[u8]) -> Result<Codes, String> {
        let shown = String::from_utf8_lossy(text);
        let code = |part: &[u8]| -> Result<u16, String> {
            match decimal(part) {
                Some(n) if (100..=599).contains(&n) => Ok(n as u16),
                _ => Err(format!(
                    "bad status code {:?} in --expect {shown:?} (expected codes from 100 to 599, \
                     like 200, 200-399 or 200,301,302)",
                    String::from_utf8_lossy(part)
                )),
            }
        };
        let mut codes = Codes([0; 8]);
        for item in text.split(|&b| b == b',') {
            let (lo, hi) = match item.iter().position(|&b| b == b'-') {
                Some(dash) => (code(&item[..dash])?, code(&item[dash + 1..])?),
                None => (code(item)?, code(item)?),
            };
            if lo > hi {
                return Err(format!(
                    "bad range {:?} in --expect (the first code must not exceed the second)",
                    String::from_utf8_lossy(item)
                ));
            }
            codes.add(lo, hi);
        }
        Ok(codes)
    }
}

/// The parts of a `--url` the request needs.
#[derive(Debug)]
struct Url {
    /// `host[:port]` as written: the `Host` header.
    authority: Vec<u8>,
    /// Path and query, starting with `/`: the request target.
    target: Vec<u8>,
}

impl Url {
    /// Parses `http://host[:port][/path][?query][#fragment]`.
    fn parse(url: &[u8], tls: bool) -> Result<Url, String> {
        let shown = String::from_utf8_lossy(url);
        let scheme_is = |s: &[u8]| url.len() >= s.len() && url[..s.len()].eq_ignore_ascii_case(s);
        if tls {
            if !scheme_is(b"https://") {
                return Err(format!(
                    "bad --url {shown:?} (expected https://host[:port]/path)"
                ));
            }
            // The same rules from here on, on the same URL with the plain scheme's length.
            let mut plain = b"http://".to_vec();
            plain.extend_from_slice(&url[b"https://".len()..]);
            return Url::parse(&plain, false);
        }
        if scheme_is(b"https://") {
            return Err(format!(
                "https URL {shown:?} needs `check https` (check http speaks plain HTTP)"
            ));
        }
        if !scheme_is(b"http://") {
            return Err(format!(
                "bad --url {shown:?} (expected http://host[:port]/path)"
            ));
        }
        if let Some(&b) = url.iter().find(|&&b| !(0x21..0x7f).contains(&b)) {
            return Err(format!(
                "bad --url {shown:?}: byte 0x{b:02x} is not allowed (percent-encode it)"
            ));
        }
        let rest = &url[b"http://".len()..];
        let split = rest
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        let tail = &tail[..tail.iter().position(|&b| b == b'#').unwrap_or(tail.len())];
        if authority.contains(&b'@') {
            return Err(format!(
                "bad --url {shown:?}: user:password@ is not supported (send credentials with \
                 --header \"Authorization: ...\")"
            ));
        }
        let (host, port) = if authority.first() == Some(&b'[') {
            let close = authority.iter().position(|&b| b == b']');
            let Some(close) = close else {
                return Err(format!(
                    "bad --url {shown:?}: missing ']' after the IPv6 address"
                ));
            };
            let ip = std::str::from_utf8(&authority[1..close]).ok();
            if ip
                .and_then(|ip| ip.parse::<std::net::Ipv6Addr>().ok())
                .is_none()
            {
                return Err(format!("bad --url {shown:?}: bad IPv6 address in brackets"));
            }
            (&authority[..=close], &authority[close + 1..])
        } else {
            let colon = authority
                .iter()
                .position(|&b| b == b':')
                .unwrap_or(authority.len());
            let (host, port) = authority.split_at(colon);
            let name_byte = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
            if host.is_empty() || !host.iter().all(name_byte) {
                return Err(format!(
                    "bad --url {shown:?}: expected a host name or address after http://"
                ));
            }
            (host, port)
        };
        debug_assert!(!host.is_empty());
        if !port.is_empty() {
            let number = port
                .strip_prefix(b":")
                .filter(|p| p.len() <= 5)
                .and_then(decimal);
            if !number.is_some_and(|n| (1..=65535).contains(&n)) {
                return Err(format!(
                    "bad --url {shown:?}: expected a port from 1 to 65535 after the host"
                ));
            }
        }
        let mut target = Vec::new();
        if !tail.starts_with(b"/") {
            target.push(b'/');
        }
        target.extend_from_slice(tail);
        Ok(Url {
            authority: authority.to_vec(),
            target,
        })
    }
}

/// Checks a `--header` value: `Name: value`, the name a token, no control characters.
fn check_header(line: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(line);
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(format!(
            "bad --header {shown:?} (expected \"Name: value\", with a colon)"
        ));
    };
    // RFC 9110 §5.6.2 tchar.
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if colon == 0 || !line[..colon].iter().all(tchar) {
        return Err(format!(
            "bad --header {shown:?}: the name before ':' must be a token (letters, digits, \
             -, _, ...; no spaces)"
        ));
    }
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(format!(
            "bad --header {shown:?}: no CR, LF or other control character allowed"
        ));
    }
    Ok(())
}

/// The name of a checked `--header` line.
fn header_name(line: &[u8]) -> &[u8] {
    &line[..line.iter().position(|&b| b == b':').unwrap_or(0)]
}

/// Builds the request bytes; `headers` are checked `--header` values with their word index.
/// Without `host` (and no `Host` among `headers`) the `Host` value is left out, and its
/// offset returned: the address checked goes there when the request is sent.
fn build_request(
    head: bool,
    target: &[u8],
    minor: u8,
    host: Option<&[u8]>,
    headers: &[(usize, &[u8])],
) -> Result<(Vec<u8>, Option<usize>), PluginError> {
    let named = |name: &'static [u8]| {
        headers
            .iter()
            .filter(move |h| header_name(h.1).eq_ignore_ascii_case(name))
    };
    if let Some(second) = named(b"host").nth(1) {
        return Err(PluginError::at(
            second.0,
            "a second Host header (give at most one)",
        ));
    }
    let mut r = Vec::with_capacity(128);
    r.extend_from_slice(if head { b"HEAD " } else { b"GET " });
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.");
    r.push(minor);
    r.extend_from_slice(b"\r\n");
    let mut target_at = None;
    match named(b"host").next() {
        Some(h) => r.extend_from_slice(h.1),
        None => {
            r.extend_from_slice(b"Host: ");
            match host {
                Some(host) => r.extend_from_slice(host),
                None => target_at = Some(r.len()),
            }
        }
    }
    r.extend_from_slice(b"\r\n");
    if named(b"user-agent").next().is_none() {
        r.extend_from_slice(b"User-Agent: ");
        r.extend_from_slice(USER_AGENT);
        r.extend_from_slice(b"\r\n");
    }
    if named(b"connection").next().is_none() {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    for (_, line) in headers {
        if !header_name(line).eq_ignore_ascii_case(b"host") {
            r.extend_from_slice(line);
            r.extend_from_slice(b"\r\n");
        }
    }
    r.extend_from_slice(b"\r\n");
    Ok((r, target_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// The address checked in every test.
    fn target() -> Target {
        Target {
            addr: "10.0.0.5:80".parse().unwrap(),
        }
    }

    /// Parses `args`, panicking with the error.
    #[track_caller]
    fn http(args: &[&[u8]]) -> Http {
        Http::parse(args, target()).unwrap_or_else(|e| panic!("parse {args:?}: {e:?}"))
    }

    /// Runs one check: the request is sent, then `rx` arrives in growing prefixes ending at
    /// each of `cuts` and then whole; the peer closes if the plugin still waits. Returns the
    /// verdict and whether it was reached before EOF.
    fn run(h: &Http, rx: &[u8], cuts: &[usize]) -> (Verdict, bool) {
        let mut st = CheckState::default();
        assert_eq!(h.begin(&mut st), Step::Send);
        assert!(!h.send_bytes(&st).is_empty());
        assert_eq!(h.sent(&mut st), Step::Recv);
        for &end in cuts.iter().chain([rx.len()].iter()) {
            match h.on_data(&mut st, &rx[..end]) {
                Step::Recv => assert!(st.mark as usize <= end, "mark past the bytes"),
                Step::Done(v) => return (v, true),
                Step::Send => panic!("Send while receiving"),
            }
        }
        (h.on_eof(&mut st, rx), false)
    }

    /// Checks `rx` whole, split at every byte, and fed byte by byte: same verdict, reached
    /// before EOF (`by_data`) or at EOF.
    #[track_caller]
    fn check(args: &[&[u8]], rx: &[u8], want: Verdict, by_data: bool) {
        let h = http(args);
        assert_eq!(run(&h, rx, &[]), (want, by_data), "whole");
        for cut in 1..rx.len() {
            assert_eq!(run(&h, rx, &[cut]), (want, by_data), "split at {cut}");
        }
        let every: Vec<usize> = (1..rx.len()).collect();
        assert_eq!(run(&h, rx, &every), (want, by_data), "byte by byte");
    }

    /// `resp!(name, [options], response, data => verdict)` for a verdict reached while bytes
    /// arrive, `eof => verdict` for one reached when the peer closes after `response`.
    macro_rules! resp {
        ($name:ident, [$($arg:expr),* $(,)?], $rx:expr, data => $want:expr) => {
            #[test]
            fn $name() {
                check(&[$(&$arg[..]),*], $rx, $want, true);
            }
        };
        ($name:ident, [$($arg:expr),* $(,)?], $rx:expr, eof => $want:expr) => {
            #[test]
            fn $name() {
                check(&[$(&$arg[..]),*], $rx, $want, false);
            }
        };
    }

    const PASS: Verdict = Verdict::Pass;

    fn status(code: u64) -> Verdict {
        Verdict::Fail(Reason::HttpStatus, Detail::number(code))
    }

    fn invalid(what: &[u8]) -> Verdict {
        Verdict::fail_with(Reason::HttpInvalid, what)
    }

    fn body_mismatch(start: &[u8]) -> Verdict {
        Verdict::fail_with(Reason::BodyMismatch, start)
    }

    fn truncated_body() -> Verdict {
        Verdict::fail_with(Reason::Closed, b"truncated body")
    }

    // Tests for the status.

    resp!(ok, [], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", data => PASS);
    resp!(ok_http10, [], b"HTTP/1.0 200 OK\r\n\r\n", data => PASS);
    resp!(redirect_in_default, [], b"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", data => PASS);
    resp!(no_reason_phrase, [], b"HTTP/1.1 200\r\n\r\n", data => PASS);
    resp!(bare_lf, [], b"HTTP/1.1 200 OK\nServer: x\n\n", data => PASS);
    resp!(unavailable, [], b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\nbusy",
        data => status(503));
    resp!(not_found_list, [b"--expect", b"200,301,302"], b"HTTP/1.1 404 Not Found\r\n\r\n",
        data => status(404));
    resp!(mixture, [b"--expect", b"200-299,301"], b"HTTP/1.1 301 Moved\r\n\r\n", data => PASS);
    resp!(mixture_miss, [b"--expect", b"200-299,301"], b"HTTP/1.1 302 Found\r\n\r\n",
        data => status(302));
    resp!(status_600, [], b"HTTP/1.1 600 Odd\r\n\r\n", data => status(600));
    resp!(interim_skipped, [b"--expect", b"200"],
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        data => PASS);
    resp!(interim_then_error, [],
        b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.1 500 Oops\r\n\r\n", data => status(500));
    resp!(switching_protocols_is_final, [], b"HTTP/1.1 101 Switching\r\n\r\n",
        data => status(101));
    resp!(status_before_body_match, [b"--match", b"OK"],
        b"HTTP/1.1 500 Error\r\nContent-Length: 2\r\n\r\nOK", data => status(500));

    // Tests for bytes that are not HTTP.

    resp!(ssh_banner, [], b"SSH-2.0-OpenSSH_9.2\r\n", data => invalid(b"not an HTTP/1.x response"));
    resp!(http09, [], b"<html><body>hello</body></html>",
        data => invalid(b"not an HTTP/1.x response"));
    resp!(http2, [], b"HTTP/2 200\r\n\r\n", data => invalid(b"not an HTTP/1.x response"));
    resp!(bad_status, [], b"HTTP/1.1 2x0 OK\r\n\r\n", data => invalid(b"invalid status line"));
    resp!(bad_header, [], b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        data => invalid(b"invalid header name"));
    resp!(too_many_headers, [],
        &[&b"HTTP/1.1 200 OK\r\n"[..], &b"X: y\r\n".repeat(65), b"\r\n"].concat(),
        data => invalid(b"too many headers"));
    resp!(truncated_headers, [], b"HTTP/1.1 200 OK\r\nServer: x\r\n",
        eof => invalid(b"truncated headers"));
    resp!(truncated_status_line, [], b"HTTP/1.1 20", eof => invalid(b"truncated headers"));
    resp!(bad_content_length, [b"--match", b"x"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\nx",
        data => invalid(b"invalid content-length"));
    resp!(conflicting_content_length, [b"--match", b"x"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        data => invalid(b"conflicting content-length"));
    resp!(bad_content_length_ignored_without_match, [],
        b"HTTP/1.1 200 OK\r\nContent-Length: 12a\r\n\r\nx", data => PASS);

    #[test]
    fn closed_without_bytes() {
        let h = http(&[]);
        let mut st = CheckState::default();
        assert_eq!(h.on_eof(&mut st, b""), Verdict::fail(Reason::Closed));
    }

    // Tests for bodies without framing problems.

    resp!(match_content_length, [b"--match", b"healthy"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nstatus: healthy\r\n", data => PASS);
    resp!(match_at_body_start, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK", data => PASS);
    resp!(match_not_in_headers, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nX-OK: OK\r\nContent-Length: 4\r\n\r\nfail",
        data => body_mismatch(b"fail"));
    resp!(mismatch_content_length, [b"--match", b"healthy"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nmaintenance",
        data => body_mismatch(b"maintenance"));
    resp!(bytes_past_content_length_ignored, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nnotOK", data => body_mismatch(b"not"));
    resp!(empty_body, [b"--match", b"OK"], b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        data => body_mismatch(b""));
    resp!(match_close_delimited, [b"--match", b"OK"],
        b"HTTP/1.0 200 OK\r\n\r\nall OK here", data => PASS);
    resp!(mismatch_close_delimited, [b"--match", b"OK"],
        b"HTTP/1.0 200 OK\r\n\r\nall bad here", eof => body_mismatch(b"all bad here"));
    resp!(truncated_content_length, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nnot yet", eof => truncated_body());
    resp!(match_in_truncated_body, [b"--match", b"yet"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nnot yet", data => PASS);
    resp!(head_passes_at_headers, [b"--method", b"HEAD"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", data => PASS);
    resp!(no_content_with_match, [b"--match", b"OK", b"--expect", b"200-299"],
        b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", data => PASS);
    resp!(not_modified_with_match, [b"--match", b"OK"],
        b"HTTP/1.1 304 Not Modified\r\n\r\n", data => PASS);
    resp!(match_long_needle, [b"--match", b"<title>All systems operational</title>"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 60\r\n\r\n\
          <html><title>All systems operational</title></html>\n\n\n\n\n\n\n\n\n",
        data => PASS);
    resp!(body_detail_cut, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 48\r\n\r\n\
          <html>\r\n<body>Service temporarily unavailable</b",
        data => body_mismatch(b"<html>??<body>Service temporarily unavail"));

    // Tests for chunked bodies.

    // --digest: the MD5 of the whole body (decoded from chunks), as keepalived's `digest`.
    resp!(digest_content_length, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall OKextra", data => PASS);
    resp!(digest_upper_case_hex, [b"--digest", b"90B0D23788F413081B0F2544FD227406"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall OK", data => PASS);
    resp!(digest_mismatch_names_the_md5, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall KO",
        data => Verdict::fail_with(Reason::BodyMismatch, b"md5 efd5d7a3583b8ffc8dd580719d88e424"));
    resp!(digest_waits_for_the_whole_body, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nall", eof => truncated_body());
    resp!(digest_close_delimited, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.0 200 OK\r\n\r\nall OK", eof => PASS);
    resp!(digest_chunked_is_over_the_data, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n2\r\nOK\r\n0\r\n\r\n",
        data => PASS);
    resp!(digest_chunked_mismatch, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n2\r\nKO\r\n0\r\n\r\n",
        data => Verdict::fail_with(Reason::BodyMismatch, b"md5 efd5d7a3583b8ffc8dd580719d88e424"));
    resp!(digest_status_first, [b"--digest", b"90b0d23788f413081b0f2544fd227406"],
        b"HTTP/1.1 500 Oops\r\nContent-Length: 6\r\n\r\nall OK", data => status(500));
    resp!(digest_of_empty_body, [b"--digest", b"d41d8cd98f00b204e9800998ecf8427e"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", data => PASS);

    #[test]
    fn digest_option_errors() {
        parse_err(&[b"--digest", b"abc"], 1, "32 hex digits");
        parse_err(
            &[b"--digest", b"90b0d23788f413081b0f2544fd22740g"],
            1,
            "bad --digest",
        );
        parse_err(
            &[
                b"--method",
                b"HEAD",
                b"--digest",
                b"90b0d23788f413081b0f2544fd227406",
            ],
            1,
            "no body",
        );
        parse_err(
            &[
                b"--digest",
                b"90b0d23788f413081b0f2544fd227406",
                b"--match",
                b"OK",
            ],
            1,
            "cannot go with --match",
        );
    }

    resp!(chunked_match, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n2\r\nOK\r\n0\r\n\r\n",
        data => PASS);
    resp!(chunked_mismatch, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n3\r\nbad\r\n0\r\n\r\n",
        data => body_mismatch(b"all "));
    resp!(chunked_size_line_not_searched, [b"--match", b"a\r\nxy"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          1\r\nx\r\na\r\nxyxyxyxyxy\r\n0\r\n\r\n",
        data => body_mismatch(b"x"));
    resp!(chunked_split_match_missed, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nO\r\n1\r\nK\r\n0\r\n\r\n",
        data => body_mismatch(b"O"));
    resp!(chunked_with_extension_and_trailer, [b"--match", b"up"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          2;name=v\r\nup\r\n0\r\nX-T: 1\r\n\r\n",
        data => PASS);
    resp!(chunked_wins_over_length, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
          3\r\nabc\r\n2\r\nOK\r\n0\r\n\r\n",
        data => PASS);
    resp!(chunked_uppercase_hex, [b"--match", b"z"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
          A\r\n0123456789\r\n1\r\nz\r\n0\r\n\r\n",
        data => PASS);
    resp!(chunked_bad_size, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nOK\r\n0\r\n\r\n",
        data => invalid(b"invalid chunk size"));
    resp!(chunked_bad_end, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX1\r\nOK\r\n0\r\n\r\n",
        data => invalid(b"invalid chunk end"));
    resp!(chunked_truncated, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n10\r\nbad",
        eof => truncated_body());
    resp!(chunked_match_in_truncated, [b"--match", b"bad"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nall \r\n10\r\nbad",
        data => PASS);
    resp!(transfer_encoding_not_chunked_is_close, [b"--match", b"OK"],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nxOK",
        data => PASS);

    // Tests for the search mark.

    #[test]
    fn match_spanning_two_reads() {
        let h = http(&[b"--match", b"healthy"]);
        let rx = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nI am healthy, thanks";
        let split = rx.len() - 13; // "I am heal" | "thy, thanks"
        let mut st = CheckState::default();
        assert_eq!(h.on_data(&mut st, &rx[..split]), Step::Recv);
        assert_eq!(st.mark as usize, split);
        assert_eq!(h.on_data(&mut st, rx), Step::Done(PASS));
    }

    #[test]
    fn mark_never_goes_back() {
        let h = http(&[b"--match", b"zz"]);
        let rx = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabcdefgh";
        let mut st = CheckState::default();
        assert_eq!(h.on_data(&mut st, &rx[..rx.len() - 4]), Step::Recv);
        let first = st.mark;
        assert_eq!(h.on_data(&mut st, rx), Step::Recv);
        assert!(st.mark > first);
        assert_eq!(st.mark as usize, rx.len());
    }

    #[test]
    fn large_body_keeps_waiting() {
        // The monitor fails `response-too-large` once Recv comes back at the limit.
        let h = http(&[b"--match", b"never", b"--max-response", b"256"]);
        assert_eq!(h.max_response(), 256);
        let mut rx = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        rx.extend_from_slice(&[b'x'; 300]);
        let mut st = CheckState::default();
        assert_eq!(h.on_data(&mut st, &rx), Step::Recv);
    }

    // Tests for the request.

    /// The request as it goes out to `addr`: the address written in where `target_at` says.
    fn on_wire(h: &Http, addr: SocketAddr) -> Vec<u8> {
        let mut r = h.send_bytes(&CheckState::default()).to_vec();
        if let Some(at) = h.target_at() {
            let mut text = [0u8; crate::plugins::TARGET_TEXT_MAX];
            let n = crate::plugins::target_text(addr, &mut text);
            r.splice(at..at, text[..n].iter().copied());
        }
        r
    }

    #[track_caller]
    fn request(args: &[&[u8]], want: &str) {
        let h = http(args);
        assert_eq!(String::from_utf8_lossy(&on_wire(&h, target().addr)), want);
    }

    #[test]
    fn target_text_is_the_address_as_host_names_it() {
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "1.20.100.9:8080",
            "10.0.0.5:80",
            "[::1]:443",
            "[2001:db8::5]:8080",
        ] {
            let addr: SocketAddr = a.parse().unwrap();
            let mut out = [0u8; crate::plugins::TARGET_TEXT_MAX];
            let n = crate::plugins::target_text(addr, &mut out);
            assert_eq!(std::str::from_utf8(&out[..n]), Ok(a));
        }
    }

    #[test]
    fn request_default() {
        request(
            &[],
            "GET / HTTP/1.1\r\nHost: 10.0.0.5:80\r\nUser-Agent: lvsmon/0.1\r\n\
             Connection: close\r\n\r\n",
        );
    }

    #[test]
    fn request_ipv6_target() {
        let t = Target {
            addr: "[2001:db8::5]:8080".parse().unwrap(),
        };
        let h = Http::parse(&[], t).unwrap();
        assert!(on_wire(&h, t.addr).starts_with(b"GET / HTTP/1.1\r\nHost: [2001:db8::5]:8080\r\n"));
        // One request for every target: the same spec checks another address.
        assert_eq!(h, http(&[]));
        let longest: SocketAddr = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        assert!(on_wire(&h, longest).starts_with(
            b"GET / HTTP/1.1\r\nHost: [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535\r\n"
        ));
        // An explicit Host (by --url or --header) leaves nothing to write in.
        assert_eq!(http(&[b"--url", b"http://h/"]).target_at(), None);
        assert_eq!(http(&[b"--header", b"Host: h"]).target_at(), None);
    }

    #[test]
    fn request_url_head_version() {
        request(
            &[
                b"--url",
                b"http://www.example.com/health?full=1#top",
                b"--method",
                b"HEAD",
                b"--version",
                b"1.0",
            ],
            "HEAD /health?full=1 HTTP/1.0\r\nHost: www.example.com\r\nUser-Agent: lvsmon/0.1\r\n\
             Connection: close\r\n\r\n",
        );
    }

    #[test]
    fn request_url_port_and_headers() {
        request(
            &[
                b"--header",
                b"X-Check: lvs",
                b"--url",
                b"HTTP://api.example.com:8080?probe",
                b"--header",
                b"user-agent: probe/2",
                b"--header",
                b"Host: override.example",
                b"--header",
                b"Accept: */*",
            ],
            "GET /?probe HTTP/1.1\r\nHost: override.example\r\nConnection: close\r\n\
             X-Check: lvs\r\nuser-agent: probe/2\r\nAccept: */*\r\n\r\n",
        );
    }

    #[test]
    fn request_url_ipv6_no_path() {
        request(
            &[b"--url", b"http://[::1]:81"],
            "GET / HTTP/1.1\r\nHost: [::1]:81\r\nUser-Agent: lvsmon/0.1\r\n\
             Connection: close\r\n\r\n",
        );
    }

    #[test]
    fn request_inline_values() {
        request(
            &[b"--url=http://h/x", b"--method=get"],
            "GET /x HTTP/1.1\r\nHost: h\r\nUser-Agent: lvsmon/0.1\r\nConnection: close\r\n\r\n",
        );
    }

    #[test]
    fn same_options_same_spec() {
        assert_eq!(
            http(&[b"--expect", b"200"]),
            http(&[b"--expect", b"200-200"])
        );
        assert_ne!(http(&[b"--expect", b"200"]), http(&[b"--expect", b"201"]));
    }

    // Tests for option errors.

    #[track_caller]
    fn parse_err(args: &[&[u8]], word: usize, text: &str) {
        let e = Http::parse(args, target()).unwrap_err();
        assert_eq!(e.word, Some(word), "{e:?}");
        assert!(e.message.contains(text), "{:?} lacks {text:?}", e.message);
    }

    #[test]
    fn option_errors() {
        parse_err(&[b"--uri", b"http://x/"], 0, "unknown option \"--uri\"");
        parse_err(
            &[b"--uri", b"http://x/"],
            0,
            "--url, --method, --expect, --match, --digest, --header, --version, --max-response",
        );
        parse_err(&[b"--match", b"x", b"--url"], 2, "--url needs a value");
        parse_err(&[b"--url", b"--match", b"x"], 0, "--url needs a value");
        parse_err(
            &[b"--url", b"http://a/", b"--url", b"http://b/"],
            2,
            "--url given twice",
        );
        parse_err(&[b"--expect", b"99"], 1, "bad status code \"99\"");
        parse_err(&[b"--expect", b"600"], 1, "bad status code \"600\"");
        parse_err(&[b"--expect", b"300-200"], 1, "bad range \"300-200\"");
        parse_err(&[b"--expect", b"200,"], 1, "bad status code \"\"");
        parse_err(&[b"--expect", b"2xx"], 1, "bad status code \"2xx\"");
        parse_err(&[b"--expect", b"200-"], 1, "bad status code \"\"");
        parse_err(
            &[b"--method", b"GET", b"--url", b"https://x/"],
            3,
            "needs `check https`",
        );
        parse_err(&[b"--url", b"www.example.com/"], 1, "expected http://host");
        parse_err(&[b"--url", b"ftp://x/"], 1, "expected http://host");
        parse_err(&[b"--url", b"http:///path"], 1, "expected a host");
        parse_err(&[b"--url", b"http://a b/"], 1, "0x20");
        parse_err(&[b"--url", b"http://u:p@x/"], 1, "Authorization");
        parse_err(&[b"--url", b"http://x:0/"], 1, "port from 1 to 65535");
        parse_err(&[b"--url", b"http://x:/"], 1, "port from 1 to 65535");
        parse_err(&[b"--url", b"http://x:99999/"], 1, "port from 1 to 65535");
        parse_err(&[b"--url", b"http://[::1/"], 1, "missing ']'");
        parse_err(&[b"--url", b"http://[zz]/"], 1, "IPv6");
        parse_err(
            &[b"--header", b"X-A: 1", b"--header", b"NoColon"],
            3,
            "with a colon",
        );
        parse_err(&[b"--header", b": v"], 1, "token");
        parse_err(&[b"--header", b"X A: v"], 1, "token");
        parse_err(&[b"--header", b"X: a\r\nEvil: 1"], 1, "control character");
        parse_err(
            &[b"--header", b"Host: a", b"--header", b"host: b"],
            3,
            "second Host",
        );
        parse_err(&[b"--method", b"POST"], 1, "GET or HEAD");
        parse_err(&[b"--version", b"2"], 1, "1.0 or 1.1");
        parse_err(&[b"--match", b""], 1, "non-empty");
        parse_err(&[b"--max-response", b"255"], 1, "256 to 1048576");
        parse_err(&[b"--max-response", b"1048577"], 1, "256 to 1048576");
        parse_err(&[b"--match", b"OK", b"--method", b"HEAD"], 3, "no body");
        let long = [b'x'; 300];
        parse_err(
            &[b"--max-response", b"256", b"--match", &long],
            3,
            "longer than",
        );
    }

    #[test]
    fn codes() {
        let c = Codes::parse(b"200-299,301,404").unwrap();
        assert!(c.contains(200) && c.contains(250) && c.contains(299) && c.contains(301));
        assert!(c.contains(404));
        assert!(!c.contains(300) && !c.contains(302) && !c.contains(199) && !c.contains(0));
        assert!(!c.contains(999));
        let all = Codes::parse(b"100-599").unwrap();
        assert!(all.contains(100) && all.contains(599) && !all.contains(600) && !all.contains(99));
        let default = http(&[]).codes;
        assert!(default.contains(200) && default.contains(399) && !default.contains(400));
    }

    /// httparse's view of a head: the code and length when complete.
    fn httparse_head(b: &[u8]) -> Option<(u16, usize)> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut r = httparse::Response::new(&mut h);
        match r.parse(b) {
            Ok(Status::Complete(n)) => Some((r.code.unwrap(), n)),
            _ => None,
        }
    }

    /// Checks that `plain_head` accepts only what httparse accepts, with the same result.
    #[track_caller]
    fn agree(b: &[u8]) -> Option<(u16, usize)> {
        let plain = plain_head(b);
        if plain.is_some() {
            assert_eq!(plain, httparse_head(b), "{:?}", String::from_utf8_lossy(b));
        }
        plain
    }

    #[test]
    fn plain_heads_agree_with_httparse() {
        let heads: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
            b"HTTP/1.0 404 Not Found\r\nServer: x\r\nX-A:b\r\nX-B:  c d  \r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 200\r\nA!#$%&'*+-.^_`|~z9: ~\r\n\r\n",
            b"HTTP/1.1 301 \r\nLocation: /x?y=1\r\n\r\n",
            b"HTTP/1.1 599 a  b\r\n\r\n",
        ];
        let mut accepted = 0;
        for head in heads {
            assert!(agree(head).is_some(), "{:?}", String::from_utf8_lossy(head));
            let mut m = head.to_vec();
            for i in 0..head.len() {
                // Every prefix, and every byte value at every position.
                if agree(&head[..i]).is_some() {
                    accepted += 1;
                }
                for c in 0..=255u8 {
                    m[i] = c;
                    if agree(&m).is_some() {
                        accepted += 1;
                    }
                }
                m[i] = head[i];
                // A byte inserted or removed.
                let mut ins = head.to_vec();
                ins.insert(i, head[i]);
                agree(&ins);
                let mut del = head.to_vec();
                del.remove(i);
                agree(&del);
            }
        }
        assert!(accepted > 1000, "{accepted}");
        // Up to MAX_HEADERS lines; one more is httparse's `too many headers`.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        let mut more = many.clone();
        many.extend_from_slice(b"\r\n");
        assert_eq!(agree(&many), Some((200, many.len())));
        more.extend_from_slice(b"A: b\r\n\r\n");
        assert_eq!(plain_head(&more), None);
        assert!(httparse_head(&more).is_none());
    }

    proptest::proptest! {
        #[test]
        fn plain_heads_agree_with_httparse_on_noise(
            code in 0u16..1000,
            tail in proptest::collection::vec(
                proptest::sample::select(
                    b"\r\n\r\n\r\n:: \t\x00\x7f\x80\xffaZ9-_!~\"(),/;<=>?@[]{}".to_vec(),
                ),
                0..48,
            ),
        ) {
            let mut b = format!("HTTP/1.1 {code:03}").into_bytes();
            b.extend_from_slice(&tail);
            agree(&b);
        }
    }
}
