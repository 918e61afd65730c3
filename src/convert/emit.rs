//! Writing lvsmon.conf text: words quoted as the config language wants them, durations and
//! addresses in its forms, and the comments that carry each line's source location.

use std::collections::BTreeSet;
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::rc::Rc;

/// Config syntax the converter may write, for the syntax not yet on every branch (see
/// [`super::NEEDS`]); recorded per output so tests can tell which output needs what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// `check exec [--dynamic] PROGRAM ARGS` (MISC_CHECK, ldirectord `external`).
    Exec,
    /// `check https` (SSL_GET, ldirectord `https`).
    Https,
    /// The TLS presets `imaps`, `pop3s`, `smtps`, `ldaps`.
    TlsPreset,
    /// `u-threshold N` / `l-threshold N`.
    Thresholds,
    /// `persistence-netmask N`.
    PersistenceNetmask,
    /// `forward tunnel gue PORT|gre [csum|remcsum]`.
    TunnelType,
    /// `sorry ADDR:PORT --forward KIND`.
    SorryForward,
    /// `--source ADDR` on a check (keepalived `bindto`).
    Source,
    /// `--mark N` on a check (keepalived checker `fwmark`).
    Mark,
    /// Several `check` lines in one block.
    MultiCheck,
    /// `one-packet yes`.
    OnePacket,
    /// `sched-flags WORD,...`.
    SchedFlags,
    /// `ipvs-timeouts tcp D tcpfin D udp D`.
    IpvsTimeouts,
    /// `sync-daemon master|backup IFACE ...`.
    SyncDaemon,
    /// `check http --digest MD5HEX`.
    Digest,
}

/// Where a source line stands: the file as it was named, and its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Src {
    /// The file, as given on the command line or found by an include.
    pub file: Rc<str>,
    /// 1-based line.
    pub line: u32,
}

impl fmt::Display for Src {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One line of a block being built, before it is written (a block's lines may move up to the
/// enclosing block when every real server has the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A setting or `check` line, with the note that says where it came from.
    Set {
        /// The lvsmon.conf text.
        code: String,
        /// Its origin, written as a trailing comment.
        note: String,
    },
    /// A comment line.
    Comment(String),
    /// Something that was not converted: `# not converted (SRC): TEXT`.
    Refused {
        /// Where it stood.
        src: Src,
        /// What it was and why it has no equivalent.
        text: String,
    },
}

impl Item {
    /// A setting line.
    pub fn set(code: impl Into<String>, note: impl Into<String>) -> Item {
        Item::Set {
            code: code.into(),
            note: note.into(),
        }
    }

    /// A refusal at `src`.
    pub fn refused(src: &Src, text: impl Into<String>) -> Item {
        Item::Refused {
            src: src.clone(),
            text: text.into(),
        }
    }

    /// Whether this is a `check` line.
    pub fn is_check(&self) -> bool {
        matches!(self, Item::Set { code, .. } if code.starts_with("check "))
    }
}

/// The converted configuration.
#[derive(Debug, Default)]
pub struct Out {
    /// The lvsmon.conf text.
    pub text: String,
    /// How many constructs were not converted (`# not converted` lines).
    pub refused: usize,
    /// The syntax the text uses from [`Feature`].
    pub used: BTreeSet<Feature>,
}

/// Column at which trailing notes start.
const NOTE_COLUMN: usize = 40;

impl Out {
    /// Records that the text uses `f`.
    pub fn uses(&mut self, f: Feature) {
        self.used.insert(f);
    }

    /// A line of code at `depth` (4 spaces each), with an optional trailing note.
    pub fn code(&mut self, depth: usize, code: &str, note: &str) {
        let indent = "    ".repeat(depth);
        let start = self.text.len();
        self.text.push_str(&indent);
        self.text.push_str(code);
        if !note.is_empty() {
            let width = self.text.len() - start;
            let pad = NOTE_COLUMN.saturating_sub(width).max(1);
            self.text.push_str(&" ".repeat(pad));
            self.text.push_str("# ");
            self.text.push_str(&one_line(note));
        }
        self.text.push('\n');
    }

    /// A comment line at `depth`.
    pub fn comment(&mut self, depth: usize, text: &str) {
        let _ = writeln!(self.text, "{}# {}", "    ".repeat(depth), one_line(text));
    }

    /// An empty line.
    pub fn blank(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push('\n');
        }
    }

    /// A `# not converted` line at `depth`, counted.
    pub fn refuse(&mut self, depth: usize, src: &Src, text: &str) {
        self.refused += 1;
        self.comment(depth, &format!("not converted ({src}): {text}"));
    }

    /// Writes `items` at `depth`; several `check` lines record [`Feature::MultiCheck`].
    pub fn items(&mut self, depth: usize, items: &[Item]) {
        if items.iter().filter(|i| i.is_check()).count() > 1 {
            self.uses(Feature::MultiCheck);
        }
        for item in items {
            match item {
                Item::Set { code, note } => self.code(depth, code, note),
                Item::Comment(text) => self.comment(depth, text),
                Item::Refused { src, text } => self.refuse(depth, src, text),
            }
        }
    }
}

/// Control characters in a note or comment would end it early: they become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` as one word of lvsmon.conf: bare when it can be, else a quoted string.
pub fn word(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() && !matches!(c, ' ' | '\t' | '#' | '{' | '}' | '"' | '\\'));
    if bare {
        text.to_string()
    } else {
        quoted(text.as_bytes())
    }
}

/// Any bytes as a quoted string of lvsmon.conf, with escapes for what is not printable.
pub fn quoted(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    let text = std::str::from_utf8(bytes).ok();
    match text {
        Some(t) => {
            for c in t.chars() {
                push_char(&mut s, c);
            }
        }
        None => {
            for &b in bytes {
                if b.is_ascii() {
                    push_char(&mut s, b as char);
                } else {
                    let _ = write!(s, "\\x{b:02x}");
                }
            }
        }
    }
    s.push('"');
    s
}

fn push_char(s: &mut String, c: char) {
    match c {
        '"' => s.push_str("\\\""),
        '\\' => s.push_str("\\\\"),
        '\r' => s.push_str("\\r"),
        '\n' => s.push_str("\\n"),
        '\t' => s.push_str("\\t"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            let _ = write!(s, "\\x{:02x}", c as u32);
        }
        c => s.push(c),
    }
}

/// A number of seconds (fractions allowed) as a duration: `6s`, `1500ms`.
pub fn duration(secs: f64) -> String {
    let ms = (secs * 1000.0).round() as u64;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// An address and optional port as lvsmon writes them: `10.0.0.1:80`, `[2001:db8::1]:80`,
/// `10.0.0.1`, `2001:db8::1`.
pub fn addr_port(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (ip, None) => ip.to_string(),
    }
}

/// An address as the host of a URL: `10.0.0.1`, `[2001:db8::1]`.
pub fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// A URL path as lvsmon's `--url` takes it: spaces, control and non-ASCII bytes
/// percent-encoded (keepalived and ldirectord send such paths as written).
pub fn url_path(path: &str) -> String {
    let mut out = String::new();
    for &b in path.as_bytes() {
        if b.is_ascii_graphic() {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A regular expression that matches only its own text (no metacharacters): that text, which
/// a plain "contains" search (`--match`) finds exactly where the expression matches.
pub fn literal_regex(re: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() || e == ' ' => out.push(e),
                _ => return None,
            },
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => {
                return None
            }
            c => out.push(c),
        }
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// A dotted IPv4 netmask as a prefix length (`255.255.255.0` is 24); a bare prefix length is
/// returned as is.
pub fn prefix_len(mask: &str) -> Option<u8> {
    if let Ok(n) = mask.parse::<u8>() {
        return (n <= 128).then_some(n);
    }
    let m: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}
