//! Text to located words: the first half of reading `lvsmon.conf` (lvsmon.conf(5)).
//!
//! This step knows the lexical rules and nothing about settings: it splits lines into words,
//! decodes quoted strings, groups words into statements and `{ }` blocks, and replaces every
//! `include GLOB` with the statements of the files it names, so [`super::plan`] sees one tree
//! and never touches the file system. Every word keeps the file, line and column it came from,
//! so every later error can point at it.
//!
//! Invariants of a [`Document`]:
//! - every [`Statement`] has at least one word, and none is an `include`
//!   (includes are expanded in place, inside blocks too);
//! - braces balance within each file: a block never starts in one file and ends in another;
//! - a bare word ([`Word::quoted`] false) is UTF-8 text with no control character;
//! - [`Pos::file`] indexes [`Document::files`], which lists each file once, the main file first
//!   and the others in the order they were first read;
//! - no file is read while it is already being read (no include cycle), and includes nest at
//!   most [`MAX_INCLUDE_DEPTH`] deep.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{ConfigError, Loc};

/// How deep `include` may nest: the main file is depth 0, a file it includes depth 1, and so on.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// The most bytes one configuration may have, the main file and every include together
/// (64 MiB). A generated configuration of 100,000 real servers takes about 4 MB; without a
/// bound, `include /dev/zero` grew the daemon by a gigabyte and more at each reload.
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;

/// A compact place in a [`Document`]: which file, which line, which column.
///
/// Turned into a full [`Loc`] (with the file's path) by [`Document::loc`] only when needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pos {
    /// Index into [`Document::files`].
    pub file: u32,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in bytes (of a quoted string: its opening quote).
    pub col: u32,
}

/// One word of a statement, with the escapes of a quoted string already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The bytes. UTF-8 when the word is bare; any bytes when it was quoted (`\xHH`).
    pub text: Vec<u8>,
    /// True when the word was written as a double-quoted string.
    pub quoted: bool,
    /// Where the word starts.
    pub pos: Pos,
}

impl Word {
    /// True when the word's bytes are exactly `s`.
    pub fn is(&self, s: &str) -> bool {
        self.text == s.as_bytes()
    }

    /// The word as text, or `None` when it is not UTF-8 (only possible for a quoted word).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.text).ok()
    }

    /// The word quoted for an error message: `"htpp"`, with non-UTF-8 bytes replaced.
    pub fn show(&self) -> String {
        format!("{:?}", String::from_utf8_lossy(&self.text))
    }
}

/// The words of one line, and the block it opens if the line ended with `{`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// At least one word; the first is the keyword.
    pub words: Vec<Word>,
    /// The block opened by a `{` at the end of the line, if any.
    pub block: Option<Block>,
}

impl Statement {
    /// The first word.
    pub fn keyword(&self) -> &Word {
        &self.words[0]
    }
}

/// The statements between a `{` and its `}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// Where the `{` is.
    pub open: Pos,
    /// Where the `}` is (in the same file as `open`).
    pub close: Pos,
    /// The statements inside, includes expanded.
    pub statements: Vec<Statement>,
}

/// A whole configuration as statements, every include expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Document {
    /// Every file read, each once: the main file first, then the others in reading order.
    pub files: Vec<PathBuf>,
    /// The top-level statements.
    pub statements: Vec<Statement>,
}

impl Document {
    /// The full location of `pos`.
    pub fn loc(&self, pos: Pos) -> Loc {
        Loc {
            file: self.file(pos),
            line: pos.line,
            col: pos.col,
        }
    }

    /// `FILE:LINE` of `pos`, for messages that point at a second place ("already set at ...").
    pub fn place(&self, pos: Pos) -> String {
        format!("{}:{}", self.file(pos).display(), pos.line)
    }

    /// An error at `pos`.
    pub fn error(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        ConfigError::At {
            loc: self.loc(pos),
            message: message.into(),
        }
    }

    fn file(&self, pos: Pos) -> PathBuf {
        self.files
            .get(pos.file as usize)
            .cloned()
            .unwrap_or_default()
    }
}

/// Reads the file at `path` and every file it includes.
///
/// # Errors
/// [`ConfigError::File`] when the main file cannot be read; [`ConfigError::At`] for anything
/// wrong inside a file, or an include that cannot be read, pointing at the word at fault.
pub fn parse_file(path: &Path) -> Result<Document, ConfigError> {
    let text = read_config(path, MAX_CONFIG_BYTES).map_err(|message| ConfigError::File {
        path: path.to_path_buf(),
        message,
    })?;
    parse_bytes(path, &text)
}

/// Reads the configuration file at `path`, of at most `room` bytes.
///
/// Only a regular file is read: it is opened without blocking (a FIFO with no writer would
/// hang the open, and one with a writer the read, for ever), then checked with `fstat`
/// before anything is read, and at most `room + 1` bytes are read (a device such as
/// `/dev/zero` never ends, and a file may grow while it is read).
///
/// # Errors
/// The reason in words: the operating system's, `not a regular file (a FIFO)`, or the
/// size limit.
pub fn read_config(path: &Path, room: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| os_reason(&e))?;
    let meta = file.metadata().map_err(|e| os_reason(&e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        return Err(format!(
            "not a regular file ({kind}); expected a regular file"
        ));
    }
    let too_big = || {
        format!(
            "the configuration is larger than {} MiB, the main file and its includes together \
             (expected at most {MAX_CONFIG_BYTES} bytes)",
            MAX_CONFIG_BYTES >> 20
        )
    };
    if meta.len() > room {
        return Err(too_big());
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(room + 1)
        .read_to_end(&mut text)
        .map_err(|e| os_reason(&e))?;
    if text.len() as u64 > room {
        return Err(too_big());
    }
    Ok(text)
}

/// Parses `text` as if it were the contents of the file at `path`: includes are resolved
/// relative to `path`'s directory, and errors name `path`. The file itself is not read.
///
/// # Errors
/// As [`parse_file`], except that it never returns [`ConfigError::File`].
pub fn parse_bytes(path: &Path, text: &[u8]) -> Result<Document, ConfigError> {
    let mut reader = Reader {
        read: text.len() as u64,
        ..Reader::default()
    };
    let id = reader.file_id(path);
    reader.reading.push(Reading {
        canonical: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        id,
    });
    let mut top = Vec::new();
    reader.parse_text(id, text, &mut top)?;
    Ok(Document {
        files: reader.files,
        statements: top,
    })
}

/// One file on the include stack.
struct Reading {
    /// Its canonical path, to recognise it under another name.
    canonical: PathBuf,
    /// Its index in `Reader::files`.
    id: u32,
}

/// The state of one [`parse_file`] call.
#[derive(Default)]
struct Reader {
    /// Every file read so far, as named (becomes [`Document::files`]).
    files: Vec<PathBuf>,
    /// Index of each name in `files`.
    ids: HashMap<PathBuf, u32>,
    /// The files being read, outermost first: their length minus one is the include depth.
    reading: Vec<Reading>,
    /// Bytes read so far, of every file: at most [`MAX_CONFIG_BYTES`].
    read: u64,
}

/// A block whose `}` has not been seen yet.
struct Open {
    words: Vec<Word>,
    open: Pos,
    body: Vec<Statement>,
}

/// A token of one line.
enum Token {
    Word(Word),
    /// An unquoted `{`, at this column.
    Open(u32),
    /// An unquoted `}`, at this column.
    Close(u32),
}

impl Reader {
    fn file_id(&mut self, path: &Path) -> u32 {
        if let Some(&id) = self.ids.get(path) {
            return id;
        }
        let id = u32::try_from(self.files.len()).unwrap_or(u32::MAX);
        self.files.push(path.to_path_buf());
        self.ids.insert(path.to_path_buf(), id);
        id
    }

    fn err(&self, pos: Pos, message: impl Into<String>) -> ConfigError {
        let file = self
            .files
            .get(pos.file as usize)
            .cloned()
            .unwrap_or_default();
        ConfigError::At {
            loc: Loc {
                file,
                line: pos.line,
                col: pos.col,
            },
            message: message.into(),
        }
    }

    /// Splits `text` (file `id`) into statements appended to `out`, following includes.
    fn parse_text(
        &mut self,
        id: u32,
        text: &[u8],
        out: &mut Vec<Statement>,
    ) -> Result<(), ConfigError> {
        let mut open: Vec<Open> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line_no = u32::try_from(n + 1).unwrap_or(u32::MAX);
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            // A UTF-8 byte order mark, as some editors write, is not a word.
            let start = if n == 0 && line.starts_with(b"\xef\xbb\xbf") {
                3
            } else {
                0
            };
            tokens.clear();
            lex_line(line, start, id, line_no, &mut tokens).map_err(|(col, msg)| {
                self.err(
                    Pos {
                        file: id,
                        line: line_no,
                        col,
                    },
                    msg,
                )
            })?;
            let at = |col| Pos {
                file: id,
                line: line_no,
                col,
            };
            let Some(last) = tokens.last() else { continue };

            // `}`: alone on its line, closing the innermost block of this file.
            if let Some(col) = tokens.iter().find_map(|t| match t {
                Token::Close(c) => Some(*c),
                _ => None,
            }) {
                if tokens.len() != 1 {
                    return Err(self.err(
                        at(col),
                        "expected `}` alone on its line (put the statements before it on their \
                         own lines)",
                    ));
                }
                let Some(block) = open.pop() else {
                    return Err(self.err(at(col), "unmatched `}` (no block is open in this file)"));
                };
                let stmt = Statement {
                    words: block.words,
                    block: Some(Block {
                        open: block.open,
                        close: at(col),
                        statements: block.body,
                    }),
                };
                open.last_mut()
                    .map_or(&mut *out, |b| &mut b.body)
                    .push(stmt);
                continue;
            }

            // `{`: only at the end of a line that has words before it.
            let opens = match last {
                Token::Open(col) => Some(*col),
                _ => None,
            };
            let n_tokens = tokens.len();
            if let Some(col) = tokens[..n_tokens - 1].iter().find_map(|t| match t {
                Token::Open(c) => Some(*c),
                _ => None,
            }) {
                return Err(self.err(at(col), "expected `{` only at the end of a line"));
            }
            let words: Vec<Word> = tokens
                .drain(..)
                .filter_map(|t| match t {
                    Token::Word(w) => Some(w),
                    _ => None,
                })
                .collect();
            let Some(first) = words.first() else {
                return Err(self.err(
                    at(opens.unwrap_or(1)),
                    "expected a statement before `{` (a block opens at the end of the line that \
                     names it)",
                ));
            };
            if first.is("include") {
                if let Some(col) = opens {
                    return Err(self.err(at(col), "expected no `{` after include"));
                }
                let target = open.last_mut().map_or(&mut *out, |b| &mut b.body);
                self.include(id, &words, target)?;
            } else if let Some(col) = opens {
                open.push(Open {
                    words,
                    open: at(col),
                    body: Vec::new(),
                });
            } else {
                open.last_mut()
                    .map_or(&mut *out, |b| &mut b.body)
                    .push(Statement { words, block: None });
            }
        }
        if let Some(block) = open.last() {
            return Err(self.err(
                block.open,
                "unclosed `{` (expected a `}` line before the end of this file)",
            ));
        }
        Ok(())
    }

    /// `include GLOB` in file `from`: reads every file the pattern names into `out`.
    fn include(
        &mut self,
        from: u32,
        words: &[Word],
        out: &mut Vec<Statement>,
    ) -> Result<(), ConfigError> {
        let Some(pattern) = words.get(1) else {
            return Err(self.err(
                words[0].pos,
                "expected a file name or glob pattern after include",
            ));
        };
        if let Some(extra) = words.get(2) {
            return Err(self.err(
                extra.pos,
                format!(
                    "unexpected {} after the include pattern (expected one pattern; quote a \
                     name with spaces)",
                    extra.show()
                ),
            ));
        }
        if pattern.text.is_empty() || pattern.text.contains(&0) {
            return Err(self.err(
                pattern.pos,
                "expected a file name or glob pattern after include",
            ));
        }
        let base = self.files[from as usize]
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let named = Path::new(OsStr::from_bytes(&pattern.text));
        let wildcard = pattern.text.iter().any(|b| matches!(b, b'*' | b'?' | b'['));
        let paths = if wildcard {
            let mut full = Vec::new();
            if !named.is_absolute() && !base.as_os_str().is_empty() {
                // The directory is a name, not a pattern: escape what glob would expand.
                for &b in base.as_os_str().as_bytes() {
                    if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                        full.push(b'\\');
                    }
                    full.push(b);
                }
                full.push(b'/');
            }
            full.extend_from_slice(&pattern.text);
            if let Some(why) = bad_glob(&pattern.text) {
                return Err(self.err(
                    pattern.pos,
                    format!("bad include pattern {}: {why}", pattern.show()),
                ));
            }
            glob(&full).map_err(|reason| {
                self.err(
                    pattern.pos,
                    format!("cannot expand include {}: {reason}", pattern.show()),
                )
            })?
        } else {
            vec![base.join(named)]
        };
        for path in paths {
            self.read_included(&path, pattern.pos, out)?;
        }
        Ok(())
    }

    /// Reads one included file; `at` is the include's pattern word, where errors point.
    fn read_included(
        &mut self,
        path: &Path,
        at: Pos,
        out: &mut Vec<Statement>,
    ) -> Result<(), ConfigError> {
        let cannot = |e: io::Error| format!("cannot read include file {path:?}: {}", os_reason(&e));
        if self.reading.len() > MAX_INCLUDE_DEPTH {
            return Err(self.err(
                at,
                format!(
                    "includes nested more than {MAX_INCLUDE_DEPTH} deep at {path:?} (expected \
                     at most {MAX_INCLUDE_DEPTH} levels)"
                ),
            ));
        }
        let canonical = std::fs::canonicalize(path).map_err(|e| self.err(at, cannot(e)))?;
        if let Some(i) = self.reading.iter().position(|r| r.canonical == canonical) {
            let mut chain: Vec<String> = self.reading[i..]
                .iter()
                .map(|r| self.files[r.id as usize].display().to_string())
                .collect();
            chain.push(path.display().to_string());
            return Err(self.err(
                at,
                format!(
                    "include cycle: {} (a file may not include itself)",
                    chain.join(" -> ")
                ),
            ));
        }
        let text = read_config(path, MAX_CONFIG_BYTES.saturating_sub(self.read))
            .map_err(|why| self.err(at, format!("cannot read include file {path:?}: {why}")))?;
        self.read += text.len() as u64;
        let id = self.file_id(path);
        self.reading.push(Reading { canonical, id });
        let result = self.parse_text(id, &text, out);
        self.reading.pop();
        result
    }
}

/// What is wrong with an include pattern that the C library would read as a literal name
/// instead (and so silently match nothing): an unclosed `[` or a trailing backslash.
fn bad_glob(pattern: &[u8]) -> Option<&'static str> {
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' if i + 1 == pattern.len() => {
                return Some("it ends in a backslash (expected a character after it)")
            }
            b'\\' => i += 2,
            b'[' => {
                // `[!...]`, `[^...]`, and a `]` first in the set is a member, not the end.
                let mut j = i + 1;
                if matches!(pattern.get(j), Some(b'!' | b'^')) {
                    j += 1;
                }
                if pattern.get(j) == Some(&b']') {
                    j += 1;
                }
                match pattern[j.min(pattern.len())..]
                    .iter()
                    .position(|&b| b == b']')
                {
                    Some(k) => i = j + k + 1,
                    None => {
                        return Some(
                            "`[` without a closing `]` (expected a set such as [0-9]; write \\[ \
                             for a literal bracket)",
                        )
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Expands a glob pattern with the C library, matches sorted; no match is an empty list.
fn glob(pattern: &[u8]) -> Result<Vec<PathBuf>, String> {
    glob_with(pattern, 0)
}

/// [`glob`] with the C library's `flags` (`GLOB_BRACE` for keepalived's csh braces).
pub(crate) fn glob_with(pattern: &[u8], flags: libc::c_int) -> Result<Vec<PathBuf>, String> {
    let c = CString::new(pattern).map_err(|_| "the pattern contains a NUL byte".to_string())?;
    // SAFETY: glob_t is a plain C struct for which all-zero is the documented initial state.
    let mut g: libc::glob_t = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `g` a valid glob_t; no error callback.
    let rc = unsafe { libc::glob(c.as_ptr(), flags, None, &mut g) };
    let result = match rc {
        0 => {
            let mut paths = Vec::with_capacity(g.gl_pathc);
            for i in 0..g.gl_pathc {
                // SAFETY: on success gl_pathv holds gl_pathc valid C strings.
                let p = unsafe { CStr::from_ptr(*g.gl_pathv.add(i)) };
                paths.push(PathBuf::from(OsStr::from_bytes(p.to_bytes())));
            }
            Ok(paths)
        }
        libc::GLOB_NOMATCH => Ok(Vec::new()),
        libc::GLOB_NOSPACE => Err("out of memory".to_string()),
        _ => Err("a directory could not be read".to_string()),
    };
    // SAFETY: `g` was filled by glob (or left zeroed, which globfree accepts).
    unsafe { libc::globfree(&mut g) };
    result
}

/// The operating system's reason without Rust's ` (os error N)` suffix.
fn os_reason(e: &io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Splits one line (no line ending) into tokens, starting at byte `start`.
///
/// # Errors
/// The 1-based column and the message of the first lexical mistake.
fn lex_line(
    line: &[u8],
    start: usize,
    file: u32,
    line_no: u32,
    out: &mut Vec<Token>,
) -> Result<(), (u32, String)> {
    let col = |i: usize| u32::try_from(i + 1).unwrap_or(u32::MAX);
    let mut i = start;
    while i < line.len() {
        let b = line[i];
        match b {
            b' ' | b'\t' => i += 1,
            b'#' => break,
            b'{' => {
                out.push(Token::Open(col(i)));
                i += 1;
            }
            b'}' => {
                out.push(Token::Close(col(i)));
                i += 1;
            }
            b'"' => {
                let (text, next) = lex_quoted(line, i)?;
                if let Some(&c) = line.get(next) {
                    if !matches!(c, b' ' | b'\t' | b'#' | b'{' | b'}') {
                        return Err((
                            col(next),
                            "expected a space after the closing quote".to_string(),
                        ));
                    }
                }
                out.push(Token::Word(Word {
                    text,
                    quoted: true,
                    pos: Pos {
                        file,
                        line: line_no,
                        col: col(i),
                    },
                }));
                i = next;
            }
            _ => {
                let begin = i;
                while i < line.len() && !matches!(line[i], b' ' | b'\t' | b'#' | b'{' | b'}') {
                    let c = line[i];
                    if c == b'"' {
                        return Err((
                            col(i),
                            "unexpected `\"` inside a word (expected a space before a quoted \
                             string)"
                                .to_string(),
                        ));
                    }
                    if c < 0x20 || c == 0x7f {
                        return Err((
                            col(i),
                            format!("unexpected control character 0x{c:02x} (write it as \"\\x{c:02x}\")"),
                        ));
                    }
                    i += 1;
                }
                let text = &line[begin..i];
                if std::str::from_utf8(text).is_err() {
                    return Err((
                        col(begin),
                        "expected UTF-8 text (write other bytes in a quoted string as \\xHH)"
                            .to_string(),
                    ));
                }
                out.push(Token::Word(Word {
                    text: text.to_vec(),
                    quoted: false,
                    pos: Pos {
                        file,
                        line: line_no,
                        col: col(begin),
                    },
                }));
            }
        }
    }
    Ok(())
}

/// Decodes the quoted string whose opening quote is at `open`; returns its bytes and the
/// index just past the closing quote.
fn lex_quoted(line: &[u8], open: usize) -> Result<(Vec<u8>, usize), (u32, String)> {
    let col = |i: usize| u32::try_from(i + 1).unwrap_or(u32::MAX);
    let unterminated = || {
        (
            col(open),
            "unterminated string (expected a closing `\"` on the same line)".to_string(),
        )
    };
    let mut text = Vec::new();
    let mut i = open + 1;
    loop {
        let Some(&b) = line.get(i) else {
            return Err(unterminated());
        };
        match b {
            b'"' => return Ok((text, i + 1)),
            b'\\' => {
                let Some(&e) = line.get(i + 1) else {
                    return Err(unterminated());
                };
                let decoded = match e {
                    b'r' => b'\r',
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'\\' => b'\\',
                    b'"' => b'"',
                    b'x' => {
                        let hex = |k: usize| line.get(k).and_then(|&h| (h as char).to_digit(16));
                        match (hex(i + 2), hex(i + 3)) {
                            (Some(hi), Some(lo)) => {
                                i += 2;
                                (hi * 16 + lo) as u8
                            }
                            _ => {
                                return Err((
                                    col(i),
                                    "bad escape: expected two hex digits after \\x".to_string(),
                                ))
                            }
                        }
                    }
                    _ => {
                        return Err((
                            col(i),
                            format!(
                                "bad escape \\{} (expected one of: \\r \\n \\t \\\\ \\\" \\xHH)",
                                String::from_utf8_lossy(&line[i + 1..])
                                    .chars()
                                    .next()
                                    .unwrap_or('?')
                            ),
                        ))
                    }
                };
                text.push(decoded);
                i += 2;
            }
            b'\t' => {
                text.push(b);
                i += 1;
            }
            _ if b < 0x20 || b == 0x7f => {
                return Err((
                    col(i),
                    format!("unexpected control character 0x{b:02x} in a string (write it as \\x{b:02x})"),
                ));
            }
            _ => {
                text.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::TempDir;
    use super::*;

    /// Parses `text` as the file `main.conf` in a fresh directory.
    #[track_caller]
    fn parse(text: &str) -> Document {
        let dir = TempDir::new("parse");
        let path = dir.write("main.conf", text);
        parse_file(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error for `text`, as (line, col, message).
    #[track_caller]
    fn error(text: impl AsRef<[u8]>) -> (u32, u32, String) {
        let dir = TempDir::new("parse-err");
        let path = dir.write("main.conf", text);
        match parse_file(&path) {
            Err(ConfigError::At { loc, message }) => (loc.line, loc.col, message),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// The words of each top-level statement, as text.
    fn words(doc: &Document) -> Vec<Vec<String>> {
        doc.statements
            .iter()
            .map(|s| {
                s.words
                    .iter()
                    .map(|w| String::from_utf8_lossy(&w.text).into_owned())
                    .collect()
            })
            .collect()
    }

    // Tests for words and quoting

    #[test]
    fn splits_words_and_skips_comments() {
        let doc = parse("# a comment\n\n  interval\t10s   # trailing\nnotify a \"b # c\" d#e\n");
        assert_eq!(
            words(&doc),
            [vec!["interval", "10s"], vec!["notify", "a", "b # c", "d"]]
        );
        let w = &doc.statements[0].words[1];
        assert_eq!((w.pos.line, w.pos.col, w.quoted), (3, 12, false));
        let q = &doc.statements[1].words[2];
        assert_eq!((q.pos.line, q.pos.col, q.quoted), (4, 10, true));
    }

    #[test]
    fn decodes_every_escape() {
        let doc = parse(r#"x "a\r\n\t\\\"b" "\x41\xff\x00" "" "{ } #""#);
        let w = &doc.statements[0].words;
        assert_eq!(w[1].text, b"a\r\n\t\\\"b");
        assert_eq!(w[2].text, b"A\xff\x00");
        assert!(w[2].as_str().is_none(), "\\xff makes non-UTF-8 bytes");
        assert_eq!(w[3].text, b"");
        assert_eq!(w[4].text, b"{ } #");
        assert!(doc.statements[0].block.is_none());
    }

    #[test]
    fn backslash_is_literal_in_bare_words() {
        let doc = parse(r"x a\nb");
        assert_eq!(doc.statements[0].words[1].text, br"a\nb");
    }

    #[test]
    fn bad_escape_points_at_the_backslash() {
        assert_eq!(error("x \"ab\\qc\"\n").0, 1);
        let (line, col, msg) = error("x\ny \"ab\\qc\"\n");
        assert_eq!((line, col), (2, 6));
        assert!(msg.contains("bad escape \\q"), "{msg}");
        let (_, col, msg) = error("y \"\\x4\"\n");
        assert_eq!(col, 4);
        assert!(msg.contains("two hex digits"), "{msg}");
        let (_, col, _) = error("y \"\\xg0\"\n");
        assert_eq!(col, 4);
    }

    #[test]
    fn unterminated_string_points_at_the_opening_quote() {
        let (line, col, msg) = error("a\n  notify \"abc\n\"\n");
        assert_eq!((line, col), (2, 10));
        assert!(msg.contains("unterminated string"), "{msg}");
        // A backslash at the end of the line does not escape the line break.
        assert_eq!(error("x \"abc\\\n").1, 3);
    }

    #[test]
    fn rejects_odd_characters() {
        let (_, col, msg) = error("check http --match=\"OK\"\n");
        assert_eq!(col, 20);
        assert!(msg.contains("inside a word"), "{msg}");
        let (_, col, msg) = error("notify \"a\"b\n");
        assert_eq!(col, 11);
        assert!(msg.contains("space after the closing quote"), "{msg}");
        let (_, col, msg) = error("x a\x01b\n");
        assert_eq!(col, 4);
        assert!(msg.contains("control character"), "{msg}");
        let (_, col, msg) = error(b"x \"a\x02\"\n");
        assert_eq!(col, 5);
        assert!(msg.contains("control character"), "{msg}");
        let (_, col, msg) = error(b"x ab\xffc\n");
        assert_eq!(col, 3);
        assert!(msg.contains("UTF-8"), "{msg}");
    }

    #[test]
    fn accepts_crlf_and_a_byte_order_mark() {
        let doc = parse("\u{feff}a 1\r\nb \"2\"\r\nv {\r\n  c 3\r\n}\r\n");
        assert_eq!(words(&doc), [vec!["a", "1"], vec!["b", "2"], vec!["v"]]);
        assert_eq!(doc.statements[0].words[0].pos.col, 4);
        let block = doc.statements[2].block.as_ref().unwrap();
        assert_eq!(block.statements[0].words[1].text, b"3");
        assert_eq!((block.close.line, block.close.col), (5, 1));
    }

    // Tests for blocks

    #[test]
    fn braces_are_tokens_even_when_attached() {
        let doc = parse("virtual tcp 192.0.2.1:80{\n real 198.51.100.1{\n  interval 5s\n }\n}\n");
        let v = &doc.statements[0];
        assert_eq!(v.words.len(), 3);
        let vb = v.block.as_ref().unwrap();
        assert_eq!((vb.open.line, vb.open.col), (1, 25));
        let r = &vb.statements[0];
        assert_eq!(r.words[1].text, b"198.51.100.1");
        let rb = r.block.as_ref().unwrap();
        assert_eq!(rb.statements[0].words[0].text, b"interval");
        assert_eq!((rb.close.line, rb.close.col), (4, 2));
    }

    #[test]
    fn quoted_braces_are_words() {
        let doc = parse("x \"{\"\ny \"}\"\n");
        assert_eq!(words(&doc), [vec!["x", "{"], vec!["y", "}"]]);
    }

    #[test]
    fn brace_errors() {
        let (line, col, msg) = error("a {\n  b {\n  }\n");
        assert_eq!((line, col), (1, 3));
        assert!(msg.contains("unclosed"), "{msg}");
        let (line, col, msg) = error("a {\n}\n}\n");
        assert_eq!((line, col), (3, 1));
        assert!(msg.contains("unmatched"), "{msg}");
        let (line, col, msg) = error("a {\n  b }\n");
        assert_eq!((line, col), (2, 5));
        assert!(msg.contains("alone on its line"), "{msg}");
        let (line, col, msg) = error("a {\n} # done\n}  x\n");
        assert_eq!((line, col), (3, 1));
        assert!(msg.contains("alone on its line"), "{msg}");
        let (_, col, msg) = error("a { b\n}\n");
        assert_eq!(col, 3);
        assert!(msg.contains("only at the end of a line"), "{msg}");
        let (line, col, msg) = error("a\n  {\n}\n");
        assert_eq!((line, col), (2, 3));
        assert!(msg.contains("statement before"), "{msg}");
    }

    #[test]
    fn a_comment_may_follow_braces() {
        let doc = parse("a { # open\n} # close\n");
        assert!(doc.statements[0]
            .block
            .as_ref()
            .unwrap()
            .statements
            .is_empty());
    }

    // Tests for include

    #[test]
    fn include_reads_in_place_at_top_level_and_in_blocks() {
        let dir = TempDir::new("include");
        dir.write("top.inc", "b 2\n");
        dir.write("sub/inner.inc", "inner 1\ndeeper {\n  x\n}\n");
        let main = dir.write(
            "main.conf",
            "a 1\ninclude top.inc\nv {\n  include sub/inner.inc\n  c 3\n}\nd 4\n",
        );
        let doc = parse_file(&main).unwrap();
        assert_eq!(
            words(&doc),
            [vec!["a", "1"], vec!["b", "2"], vec!["v"], vec!["d", "4"]]
        );
        let inner = &doc.statements[2].block.as_ref().unwrap().statements;
        let inner_words: Vec<&[u8]> = inner.iter().map(|s| &s.words[0].text[..]).collect();
        assert_eq!(inner_words, [&b"inner"[..], b"deeper", b"c"]);
        assert_eq!(
            doc.files,
            [
                main.clone(),
                dir.path().join("top.inc"),
                dir.path().join("sub/inner.inc")
            ]
        );
        // Positions name the file they come from.
        let b = &doc.statements[1].words[0];
        assert_eq!(doc.loc(b.pos).file, dir.path().join("top.inc"));
        assert_eq!((b.pos.line, b.pos.col), (1, 1));
    }

    #[test]
    fn include_glob_is_sorted_and_relative_to_the_including_file() {
        let dir = TempDir::new("glob");
        dir.write("conf.d/20-b.conf", "second\n");
        dir.write("conf.d/10-a.conf", "first\ninclude ../more/*.inc\n");
        dir.write("conf.d/ignored.txt", "never\n");
        dir.write("more/x.inc", "third\n");
        let main = dir.write(
            "main.conf",
            "include \"conf.d/*.conf\"\ninclude nothing/*.conf\nlast\n",
        );
        let doc = parse_file(&main).unwrap();
        let got: Vec<&[u8]> = doc
            .statements
            .iter()
            .map(|s| &s.words[0].text[..])
            .collect();
        assert_eq!(got, [&b"first"[..], b"third", b"second", b"last"]);
        assert_eq!(doc.files.len(), 4);
        assert_eq!(doc.files[0], main);
    }

    #[test]
    fn include_escapes_the_directory_of_the_including_file() {
        let dir = TempDir::new("meta");
        dir.write("odd[1]*/a.inc", "found\n");
        let main = dir.write("odd[1]*/main.conf", "include *.inc\n");
        let doc = parse_file(&main).unwrap();
        assert_eq!(words(&doc), [vec!["found"]]);
    }

    #[test]
    fn include_errors() {
        let dir = TempDir::new("include-err");
        let main = dir.write("main.conf", "a\ninclude   missing.conf\n");
        let e = parse_file(&main).unwrap_err();
        let ConfigError::At { loc, message } = e else {
            panic!()
        };
        assert_eq!((loc.line, loc.col), (2, 11));
        assert!(
            message.contains("cannot read include file") && message.contains("No such file"),
            "{message}"
        );

        let main = dir.write("extra.conf", "include a b\n");
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(e.ends_with(":1:11: unexpected \"b\" after the include pattern (expected one pattern; quote a name with spaces)"), "{e}");
        let e = parse_file(&dir.write("bare.conf", "include\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:1: expected a file name"), "{e}");
        let e = parse_file(&dir.write("block.conf", "include x {\n}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:11: expected no `{` after include"), "{e}");
        let e = parse_file(&dir.write("dir.conf", "include sub\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(":1:9: cannot read include file"), "{e}");
    }

    #[test]
    fn a_bad_include_pattern_is_an_error() {
        let (line, col, msg) = error("a\ninclude [\n");
        assert_eq!((line, col), (2, 9));
        assert!(
            msg.starts_with("bad include pattern \"[\": `[` without a closing `]`"),
            "{msg}"
        );
        let (_, col, msg) = error("include \"conf.d/[0-9*.conf\"\n");
        assert_eq!(col, 9);
        assert!(msg.contains("without a closing `]`"), "{msg}");
        let (_, _, msg) = error("include \"x*\\\\\"\n");
        assert!(msg.contains("ends in a backslash"), "{msg}");
        // Sets that close are fine, `]` first in a set included; no match is no file.
        parse("include [0-9]*.inc\ninclude [!]a]*.inc\ninclude []]*.inc\ninclude \\[*.inc\n");
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = TempDir::new("special");
        let fifo = dir.path().join("pipe.conf");
        let c = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (target, kind) in [
            (fifo.display().to_string(), "a FIFO"),
            ("/dev/zero".to_string(), "a character device"),
            (dir.path().display().to_string(), "a directory"),
        ] {
            // As an include: an error at the pattern, at once (no hang, no endless read).
            let main = dir.write("main.conf", format!("include \"{target}\"\n"));
            let e = parse_file(&main).unwrap_err().to_string();
            assert!(
                e.contains(":1:9: cannot read include file")
                    && e.ends_with(&format!(
                        "not a regular file ({kind}); expected a regular file"
                    )),
                "{e}"
            );
            // As the main file.
            let e = parse_file(Path::new(&target)).unwrap_err();
            assert!(matches!(e, ConfigError::File { .. }), "{e:?}");
            assert!(
                e.to_string()
                    .contains(&format!("not a regular file ({kind})")),
                "{e}"
            );
        }
    }

    #[test]
    fn reading_stops_at_the_size_limit() {
        let dir = TempDir::new("size");
        let path = dir.write("ten.conf", "0123456789");
        assert_eq!(read_config(&path, 10).unwrap(), b"0123456789");
        let e = read_config(&path, 9).unwrap_err();
        assert!(
            e.starts_with("the configuration is larger than 64 MiB"),
            "{e}"
        );
        // The limit counts every file: what the main file took is not left for includes.
        let mut r = Reader {
            read: MAX_CONFIG_BYTES - 5,
            ..Reader::default()
        };
        let id = r.file_id(&dir.path().join("main.conf"));
        r.reading.push(Reading {
            canonical: dir.path().join("main.conf"),
            id,
        });
        let mut out = Vec::new();
        let e = r
            .read_included(
                &path,
                Pos {
                    file: id,
                    line: 1,
                    col: 9,
                },
                &mut out,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read include file") && e.contains("larger than 64 MiB"),
            "{e}"
        );
    }

    #[test]
    fn include_cycles_are_errors() {
        let dir = TempDir::new("cycle");
        dir.write("a.inc", "x\ninclude b.inc\n");
        dir.write("b.inc", "y\n\ninclude ./a.inc\n");
        let main = dir.write("main.conf", "include a.inc\n");
        let ConfigError::At { loc, message } = parse_file(&main).unwrap_err() else {
            panic!()
        };
        assert_eq!(loc.file, dir.path().join("b.inc"));
        assert_eq!((loc.line, loc.col), (3, 9));
        assert!(message.starts_with("include cycle: "), "{message}");
        assert!(
            message.contains("a.inc -> ") && message.contains("b.inc -> "),
            "{message}"
        );

        // A glob that matches the including file itself.
        let main = dir.write("self.conf", "include *.conf\n");
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(e.contains("include cycle"), "{e}");
    }

    #[test]
    fn include_depth_is_limited() {
        // main.conf is depth 0; 0.inc depth 1; the last allowed is depth 16.
        let dir = TempDir::new("depth");
        let last = MAX_INCLUDE_DEPTH - 1;
        for i in 0..last {
            dir.write(
                &format!("{i}.inc"),
                format!("at{i}\ninclude {}.inc\n", i + 1),
            );
        }
        dir.write(&format!("{last}.inc"), "bottom\n");
        let main = dir.write("main.conf", "include 0.inc\n");
        let doc = parse_file(&main).unwrap();
        assert_eq!(doc.statements.len(), MAX_INCLUDE_DEPTH);
        assert_eq!(doc.files.len(), MAX_INCLUDE_DEPTH + 1);

        dir.write(
            &format!("{last}.inc"),
            format!("include {MAX_INCLUDE_DEPTH}.inc\n"),
        );
        dir.write(&format!("{MAX_INCLUDE_DEPTH}.inc"), "too deep\n");
        let e = parse_file(&main).unwrap_err().to_string();
        assert!(
            e.contains("15.inc:1:9: includes nested more than 16 deep"),
            "{e}"
        );
    }

    #[test]
    fn braces_must_balance_within_each_file() {
        let dir = TempDir::new("balance");
        dir.write("open.inc", "v {\n");
        let main = dir.write("main.conf", "include open.inc\n}\n");
        let ConfigError::At { loc, message } = parse_file(&main).unwrap_err() else {
            panic!()
        };
        assert_eq!(loc.file, dir.path().join("open.inc"));
        assert_eq!((loc.line, loc.col), (1, 3));
        assert!(message.contains("unclosed"), "{message}");

        dir.write("close.inc", "}\n");
        let main = dir.write("main2.conf", "v {\n  include close.inc\n");
        let ConfigError::At { loc, message } = parse_file(&main).unwrap_err() else {
            panic!()
        };
        assert_eq!(loc.file, dir.path().join("close.inc"));
        assert!(message.contains("unmatched"), "{message}");
    }

    #[test]
    fn a_file_included_twice_is_listed_once() {
        let dir = TempDir::new("twice");
        dir.write("x.inc", "x\n");
        let main = dir.write("main.conf", "include x.inc\ninclude x.inc\n");
        let doc = parse_file(&main).unwrap();
        assert_eq!(doc.statements.len(), 2);
        assert_eq!(doc.files.len(), 2);
    }

    #[test]
    fn missing_main_file_is_a_file_error() {
        let dir = TempDir::new("missing");
        let e = parse_file(&dir.path().join("nope.conf")).unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e:?}");
        assert!(
            e.to_string()
                .ends_with("nope.conf: No such file or directory"),
            "{e}"
        );
    }

    #[test]
    fn error_display_is_file_line_col_message() {
        let dir = TempDir::new("display");
        let path = dir.write("lvsmon.conf", "a\n  \"\\z\"\n");
        let e = parse_file(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2:4: bad escape \\z (expected one of: \\r \\n \\t \\\\ \\\" \\xHH)",
                path.display()
            )
        );
    }
}
