//! keepalived.conf(5) in, lvsmon.conf out.
//!
//! # Reading
//!
//! keepalived's own order: each physical line is first tried as an `include` (the include
//! words, a glob relative to the including file's directory, csh braces allowed); then a
//! leading `@ID` / `@^ID` keeps the line only when the config id is (is not) `ID`; then
//! `$NAME=VALUE` defines a parameter (a value whose lines end in `\` spans several lines);
//! then `${NAME}` and `$NAME` (followed by a space or the end) are replaced, again and again,
//! and a multi-line value becomes several lines, each read as above. `${_PWD}`,
//! `${_INSTANCE}`, `${_HASH}` and `${_BANG}` are predefined (the last two are characters, not
//! comments); `${_RANDOM}` is left as written. A line starting with `~SEQ(...)`, `~SEQx(...)`
//! or `~LST(...)` is read once for each value of its variable. Words are split at spaces, a double-quoted
//! string is one word, `#` or `!` at the start of a word ends the line, and `{` `}` are words
//! of their own. A statement is a keyword and the words after it on its line, and a block when
//! `{` follows (on its line or first on the next).
//!
//! # Converting
//!
//! See lvsmon(8), MIGRATION, for the table of what becomes what. In short: every
//! `virtual_server` (and each address of a `virtual_server_group`) becomes a `virtual` block,
//! every `real_server` a `real` line, every checker a `check` line (one per `url` of HTTP_GET
//! and SSL_GET, one per `host` of SMTP_CHECK), and the timings keepalived applies (its
//! defaults included) are written out: `delay_loop` is `interval`, `retry` N is `fall` N+1,
//! `rise` is 1, `delay_before_retry` is `retry-interval`, `connect_timeout` is both
//! `connect-timeout` and `timeout`. Settings the same for every real server of a virtual
//! server are written once, in the `virtual` block.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::emit::{self, addr_port, duration, word, Feature, Item, Out, Src};
use super::ReadError;

/// Deepest include nesting followed (keepalived has no limit; a loop must end).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Most substitution rounds on one line.
const MAX_SUBSTITUTIONS: usize = 64;
/// Most addresses one `virtual_server_group` range may stand for.
const MAX_RANGE: u128 = 1024;

/// A statement: keyword, words, and a block if it has one.
#[derive(Debug, Clone)]
pub struct Node {
    /// The keyword.
    pub key: String,
    /// The words after it.
    pub args: Vec<String>,
    /// Where it stands.
    pub src: Src,
    /// Its block.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The statement as written (keyword and words), for notes.
    fn text(&self) -> String {
        let mut s = self.key.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }

    fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    fn note(&self) -> String {
        format!("{} ({})", self.text(), self.src)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// One word of a line.
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    /// `{` or `}` (not quoted).
    brace: bool,
    src: Src,
    /// First word of its line.
    first: bool,
}

struct Reader {
    id: String,
    defs: HashMap<String, String>,
    toks: Vec<Tok>,
    reading: Vec<PathBuf>,
    /// The main file's directory: notes name files relative to it.
    base: PathBuf,
}

/// Reads `path` and what it includes into statements.
///
/// # Errors
/// A file that cannot be read, an include loop, or braces that do not balance.
pub fn read(path: &Path, config_id: &str) -> Result<Vec<Node>, ReadError> {
    let mut r = Reader {
        id: config_id.to_string(),
        defs: HashMap::new(),
        toks: Vec::new(),
        reading: Vec::new(),
        base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    r.file(path, &short_name(path, &r.base))?;
    let mut at = 0;
    let nodes = parse_block(&r.toks, &mut at, None)?;
    Ok(nodes)
}

impl Reader {
    fn file(&mut self, path: &Path, shown: &str) -> Result<(), ReadError> {
        if self.reading.len() >= MAX_INCLUDE_DEPTH {
            return Err(ReadError(format!(
                "{shown}: includes nested deeper than {MAX_INCLUDE_DEPTH} (an include loop?)"
            )));
        }
        let bytes = fs::read(path).map_err(|e| ReadError(format!("{shown}: {e}")))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let file: Rc<str> = Rc::from(shown);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        self.reading.push(path.to_path_buf());
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let src = Src {
                file: file.clone(),
                line: (i + 1) as u32,
            };
            let mut line = lines[i].trim_end_matches('\r').to_string();
            i += 1;
            // A definition whose lines end in `\` goes on.
            if is_definition(&line) {
                while line.ends_with('\\') && i < lines.len() {
                    line.pop();
                    line.push('\n');
                    line.push_str(lines[i].trim_end_matches('\r'));
                    i += 1;
                }
            }
            if let Some(pattern) = include_pattern(&line) {
                self.include(&dir, &pattern, &src)?;
                continue;
            }
            self.line(&line, &src, &dir, 0)?;
        }
        self.reading.pop();
        Ok(())
    }

    fn include(&mut self, dir: &Path, pattern: &str, src: &Src) -> Result<(), ReadError> {
        let full = if pattern.starts_with('/') {
            PathBuf::from(pattern)
        } else {
            dir.join(pattern)
        };
        let paths = glob(&full.to_string_lossy())
            .map_err(|e| ReadError(format!("{src}: include {pattern}: {e}")))?;
        for p in paths {
            let p = lexical(&p);
            if self.reading.contains(&p) {
                return Err(ReadError(format!(
                    "{src}: include {} again while reading it (an include loop)",
                    p.display()
                )));
            }
            let shown = short_name(&p, &self.base);
            self.file(&p, &shown)?;
        }
        Ok(())
    }

    /// One logical line: conditional, definition, substitution, words.
    fn line(&mut self, line: &str, src: &Src, dir: &Path, depth: usize) -> Result<(), ReadError> {
        let mut rest = line.trim_start();
        if let Some(cond) = rest.strip_prefix('@') {
            let end = cond.find(char::is_whitespace).unwrap_or(cond.len());
            let (name, after) = cond.split_at(end);
            let keep = match name.strip_prefix('^') {
                Some(n) => n != self.id,
                None => name == self.id,
            };
            if !keep {
                return Ok(());
            }
            rest = after.trim_start();
        }
        if let Some(spec) = rest.strip_prefix('~') {
            let (rounds, tail) =
                repeat_block(spec).map_err(|e| ReadError(format!("{src}: {e}")))?;
            for round in rounds {
                for (name, value) in round {
                    self.defs.insert(name, value);
                }
                self.line(tail, src, dir, depth + 1)?;
            }
            return Ok(());
        }
        if is_definition(rest) {
            let body = &rest[1..];
            let eq = body.find('=').unwrap_or(body.len());
            let name = body[..eq].to_string();
            let value = body[eq + 1..].trim().to_string();
            self.defs.insert(name, value);
            return Ok(());
        }
        let substituted = self.substitute(rest, dir);
        if substituted != rest && depth < MAX_SUBSTITUTIONS {
            // A value may hold several lines, and a line may become a conditional or a
            // definition (`$IF_MAIN=@main` then `$IF_MAIN priority 240`): read each again.
            for l in substituted.split('\n') {
                self.line(l, src, dir, depth + 1)?;
            }
            return Ok(());
        }
        self.words(&substituted, src);
        Ok(())
    }

    fn substitute(&self, line: &str, dir: &Path) -> String {
        let mut s = line.to_string();
        for _ in 0..MAX_SUBSTITUTIONS {
            let Some((start, end, value)) = self.find_param(&s, dir) else {
                break;
            };
            s.replace_range(start..end, &value);
        }
        s
    }

    /// The first defined parameter reference in `s`: its span and value.
    fn find_param(&self, s: &str, dir: &Path) -> Option<(usize, usize, String)> {
        let b = s.as_bytes();
        let mut i = 0;
        while let Some(k) = s[i..].find('$') {
            let at = i + k;
            i = at + 1;
            let (name, end) = if b.get(at + 1) == Some(&b'{') {
                let close = s[at + 2..].find('}')? + at + 2;
                (&s[at + 2..close], close + 1)
            } else {
                let len = s[at + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(s.len() - at - 1);
                let end = at + 1 + len;
                if end < s.len() && !b[end].is_ascii_whitespace() {
                    continue;
                }
                (&s[at + 1..end], end)
            };
            let value = match name {
                "_PWD" => Some(dir.display().to_string()),
                "_INSTANCE" => Some(self.id.clone()),
                "_HASH" => Some(HASH.to_string()),
                "_BANG" => Some(BANG.to_string()),
                n => self.defs.get(n).cloned(),
            };
            if let Some(v) = value {
                return Some((at, end, v));
            }
        }
        None
    }

    fn words(&mut self, line: &str, src: &Src) {
        let mut first = true;
        let mut chars = line.char_indices().peekable();
        while let Some(&(_, c)) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            if c == '#' || c == '!' {
                break;
            }
            let mut text = String::new();
            let mut brace = false;
            if c == '{' || c == '}' {
                chars.next();
                text.push(c);
                brace = true;
            } else if c == '"' {
                chars.next();
                for (_, c) in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    text.push(unmask(c));
                }
            } else {
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_whitespace() || c == '{' || c == '}' {
                        break;
                    }
                    // A parameter left unreplaced (`${_RANDOM 1 5}`, an undefined name)
                    // stays one word, as written, for the note that refuses it.
                    if c == '$' && line[i + 1..].starts_with('{') {
                        if let Some(close) = line[i..].find('}') {
                            text.push_str(&line[i..=i + close]);
                            while chars.peek().is_some_and(|&(j, _)| j <= i + close) {
                                chars.next();
                            }
                            continue;
                        }
                    }
                    text.push(unmask(c));
                    chars.next();
                }
            }
            self.toks.push(Tok {
                text,
                brace,
                src: src.clone(),
                first,
            });
            first = false;
        }
    }
}

/// `p` without `.` and `dir/..` components (for names and loop detection; the file read is
/// the same).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// A file as notes name it: relative to the main file's directory when inside it.
fn short_name(p: &Path, base: &Path) -> String {
    match p.strip_prefix(base) {
        Ok(rel) if !base.as_os_str().is_empty() => rel.display().to_string(),
        _ => p.display().to_string(),
    }
}

fn is_definition(line: &str) -> bool {
    let t = line.trim_start();
    let Some(body) = t.strip_prefix('$') else {
        return false;
    };
    let Some(eq) = body.find('=') else {
        return false;
    };
    let name = &body[..eq];
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What `${_HASH}` and `${_BANG}` stand for until the line is split into words: characters
/// that start no comment (private-use code points), turned back into `#` and `!` by
/// [`unmask`].
const HASH: char = '\u{E000}';
const BANG: char = '\u{E001}';

fn unmask(c: char) -> char {
    match c {
        HASH => '#',
        BANG => '!',
        c => c,
    }
}

/// Most values one sequence or list block may take.
const MAX_REPEAT: i64 = 65536;

/// The definitions of each round of a sequence or list block and the rest of its line, from
/// what follows its `~`: `SEQ(VAR, [START,] [STEP,] END)`, `SEQx(...)` (values in hexadecimal)
/// or `LST(VAR, V1, V2, ...)` / `LST({VAR1, VAR2}, {V1, V2}, ...)` (keepalived.conf(5),
/// "Sequence blocks" and "List blocks").
type Rounds = Vec<Vec<(String, String)>>;

fn repeat_block(spec: &str) -> Result<(Rounds, &str), String> {
    let (kind, body) = if let Some(b) = spec.strip_prefix("SEQx(") {
        ("SEQx", b)
    } else if let Some(b) = spec.strip_prefix("SEQ(") {
        ("SEQ", b)
    } else if let Some(b) = spec.strip_prefix("LST(") {
        ("LST", b)
    } else {
        return Err(format!(
            "~{}: not a sequence or list block (~SEQ, ~SEQx, ~LST)",
            spec.split_whitespace().next().unwrap_or("")
        ));
    };
    let close = body
        .find(')')
        .ok_or_else(|| format!("~{kind}(: no closing `)`"))?;
    let (inner, tail) = (&body[..close], body[close + 1..].trim_start());
    let shown = format!("~{kind}({inner})");
    let rounds = if kind == "LST" {
        list_rounds(inner).map_err(|e| format!("{shown}: {e}"))?
    } else {
        seq_rounds(inner, kind == "SEQx").map_err(|e| format!("{shown}: {e}"))?
    };
    Ok((rounds, tail))
}

fn seq_rounds(inner: &str, hex: bool) -> Result<Rounds, String> {
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let name = parts[0];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("expected a variable name first".into());
    }
    let num = |t: &str| -> Result<i64, String> {
        let (neg, t) = match t.strip_prefix('-') {
            Some(t) => (true, t),
            None => (false, t),
        };
        let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => i64::from_str_radix(h, 16),
            None => t.parse::<i64>(),
        }
        .map_err(|_| format!("{t:?} is not a whole number"))?;
        Ok(if neg { -v } else { v })
    };
    let nums = parts[1..]
        .iter()
        .map(|t| num(t))
        .collect::<Result<Vec<_>, _>>()?;
    let (start, step, end) = match nums[..] {
        [end] => {
            let start = if end < 0 { -1 } else { 1 };
            (start, if end < start { -1 } else { 1 }, end)
        }
        [start, end] => (start, if end < start { -1 } else { 1 }, end),
        [start, step, end] => (start, step, end),
        _ => return Err("expected VAR, [START,] [STEP,] END".into()),
    };
    if step == 0 {
        return Err("a step of 0 never ends".into());
    }
    let count = if (step > 0 && start > end) || (step < 0 && start < end) {
        0
    } else {
        (end - start) / step + 1
    };
    if count > MAX_REPEAT {
        return Err(format!("more than {MAX_REPEAT} values"));
    }
    Ok((0..count)
        .map(|k| {
            let v = start + k * step;
            let text = if hex { format!("{v:x}") } else { v.to_string() };
            vec![(name.to_string(), text)]
        })
        .collect())
}

fn list_rounds(inner: &str) -> Result<Rounds, String> {
    // Items at the top level: a plain word or a `{...}` group of words.
    let mut items: Vec<Vec<String>> = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (item, after) = if let Some(b) = rest.strip_prefix('{') {
            let end = b.find('}').ok_or("a `{` without its `}`")?;
            let words = b[..end].split(',').map(|w| w.trim().to_string()).collect();
            (words, b[end + 1..].trim_start())
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (vec![rest[..end].trim().to_string()], &rest[end..])
        };
        items.push(item);
        rest = match after.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if after.is_empty() => after,
            None => return Err(format!("unexpected {after:?}")),
        };
    }
    let Some((names, values)) = items.split_first() else {
        return Err("expected variables and values".into());
    };
    if values.is_empty() {
        return Err("no values".into());
    }
    if names
        .iter()
        .any(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err("expected variable names first".into());
    }
    values
        .iter()
        .map(|v| {
            if v.len() == names.len() {
                Ok(names.iter().cloned().zip(v.iter().cloned()).collect())
            } else {
                Err(format!(
                    "{{{}}} does not give one value to each of {}",
                    v.join(","),
                    names.join(", ")
                ))
            }
        })
        .collect()
}

/// The pattern of an `include` line (any of keepalived's include words).
fn include_pattern(line: &str) -> Option<String> {
    let mut w = line.split_whitespace();
    let first = w.next()?;
    if !matches!(
        first,
        "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
    ) {
        return None;
    }
    let pat = w.next()?;
    Some(pat.trim_matches('"').to_string())
}

/// Expands a glob with the C library, csh braces included, sorted; no match is no file.
fn glob(pattern: &str) -> Result<Vec<PathBuf>, String> {
    crate::config::parse::glob_with(pattern.as_bytes(), libc::GLOB_BRACE)
}

/// Statements until the end of the tokens or the `}` closing the block opened at `open`.
fn parse_block(toks: &[Tok], at: &mut usize, open: Option<&Src>) -> Result<Vec<Node>, ReadError> {
    let mut nodes = Vec::new();
    while *at < toks.len() {
        let t = &toks[*at];
        if t.brace && t.text == "}" {
            *at += 1;
            return match open {
                Some(_) => Ok(nodes),
                None => Err(ReadError(format!("{}: `}}` closes no block", t.src))),
            };
        }
        if t.brace {
            // A block without a keyword: read it and drop it.
            *at += 1;
            parse_block(toks, at, Some(&t.src))?;
            continue;
        }
        let key = t.text.clone();
        let src = t.src.clone();
        *at += 1;
        let mut args = Vec::new();
        while *at < toks.len() && !toks[*at].first && !toks[*at].brace {
            args.push(toks[*at].text.clone());
            *at += 1;
        }
        let mut block = None;
        if *at < toks.len() && toks[*at].brace && toks[*at].text == "{" {
            let open_src = toks[*at].src.clone();
            *at += 1;
            block = Some(parse_block(toks, at, Some(&open_src))?);
        }
        nodes.push(Node {
            key,
            args,
            src,
            block,
        });
    }
    match open {
        Some(src) => Err(ReadError(format!(
            "{src}: the block opened here is not closed (expected `}}`)"
        ))),
        None => Ok(nodes),
    }
}

// ---------------------------------------------------------------------------------------------
// Converting

/// Converts the keepalived configuration at `path`, reading `@ID` lines for `config_id`.
///
/// # Errors
/// See [`read`].
pub fn convert(path: &Path, config_id: &str) -> Result<Out, ReadError> {
    let nodes = read(path, config_id)?;
    let mut out = Out::default();
    out.comment(
        0,
        &format!(
            "lvsmon.conf converted from keepalived configuration {} (config id {:?}) by lvsmon \
             convert; see lvsmon(8), MIGRATION.",
            path.display(),
            config_id
        ),
    );
    out.comment(
        0,
        "keepalived's timings are written out: delay_loop is interval, retry N is fall N+1, one \
         pass brings a real server up (rise 1), delay_before_retry is retry-interval.",
    );
    let groups: HashMap<&str, &Node> = nodes
        .iter()
        .filter(|n| n.key == "virtual_server_group" && n.block.is_some())
        .filter_map(|n| n.arg(0).map(|name| (name, n)))
        .collect();

    // VRRP and other things keepalived keeps doing: one comment.
    let vrrp: Vec<String> = nodes
        .iter()
        .filter(|n| is_vrrp(&n.key))
        .map(|n| format!("{} ({})", n.text(), n.src))
        .collect();
    if !vrrp.is_empty() {
        out.blank();
        out.comment(
            0,
            &format!(
                "VRRP stays with keepalived: {}. Run keepalived with a VRRP-only configuration \
                 next to lvsmon; see lvsmon(8), DIRECTOR PAIRS.",
                vrrp.join(", ")
            ),
        );
    }

    let virtuals = nodes.iter().filter(|n| n.key == "virtual_server").count();
    if virtuals == 0 {
        out.blank();
        out.refuse(
            0,
            &Src {
                file: Rc::from(short_name(path, path.parent().unwrap_or(Path::new(""))).as_str()),
                line: 1,
            },
            "no virtual_server: nothing for lvsmon to check (an lvsmon.conf needs at least one \
             virtual service)",
        );
    }
    for node in &nodes {
        match node.key.as_str() {
            "global_defs" => global_defs(&mut out, node),
            "virtual_server" => {
                out.blank();
                virtual_server(&mut out, node, &groups);
            }
            "virtual_server_group" => {}
            k if is_vrrp(k) => {}
            k if is_daemon_setting(k) => {
                out.comment(
                    0,
                    &format!(
                        "{}: keepalived's own process; nothing to convert",
                        node.note()
                    ),
                );
            }
            "SSL" => out.refuse(
                0,
                &node.src,
                "SSL block (client certificate for SSL_GET): lvsmon's TLS checks present no \
                 client certificate",
            ),
            _ => out.refuse(
                0,
                &node.src,
                &format!("{}: unknown to lvsmon convert", node.text()),
            ),
        }
    }
    Ok(out)
}

fn is_vrrp(key: &str) -> bool {
    key.starts_with("vrrp_")
        || matches!(
            key,
            "static_ipaddress"
                | "static_routes"
                | "static_rules"
                | "track_file"
                | "track_process"
                | "garp_group"
                | "bfd_instance"
        )
}

fn is_daemon_setting(key: &str) -> bool {
    matches!(
        key,
        "net_namespace"
            | "net_namespace_ipvs"
            | "instance"
            | "use_pid_dir"
            | "linkbeat_use_polling"
            | "child_wait_time"
            | "namespace_with_ipsets"
    )
}

/// global_defs: kernel IPVS settings convert; mail and keepalived's own process settings are
/// noted; the rest is refused.
fn global_defs(out: &mut Out, node: &Node) {
    let mut mail = Vec::new();
    let mut own = Vec::new();
    let mut lines = Vec::new();
    for n in node.children() {
        let k = n.key.as_str();
        if k.starts_with("notification_email")
            || k.starts_with("smtp_")
            || k.starts_with("email_")
            || matches!(k, "no_email_faults")
        {
            mail.push(n.note());
        } else if k.starts_with("vrrp_")
            || k.starts_with("snmp_")
            || k.starts_with("enable_")
            || k.starts_with("garp_")
            || k.ends_with("_process_name")
            || k.ends_with("_rx_bufs_policy")
            || k.ends_with("_rx_bufs_multiplier")
            || k.ends_with("_no_swap")
            || k.ends_with("_cpu_affinity")
            || k.ends_with("_process_priority")
            || matches!(
                k,
                "router_id"
                    | "dynamic_interfaces"
                    | "max_auto_priority"
                    | "min_auto_priority_delay"
                    | "script_user"
                    | "process_names"
                    | "process_name"
                    | "lvs_id"
                    | "checker_log_all_failures"
                    | "lvs_process_name"
                    | "umask"
                    | "instance"
                    | "net_namespace"
                    | "use_pid_dir"
                    | "linkbeat_use_polling"
                    | "child_wait_time"
                    | "no_checker_emails"
                    | "use_symlink_paths"
                    | "config_save_dir"
                    | "startup_script"
                    | "shutdown_script"
                    | "startup_script_timeout"
                    | "shutdown_script_timeout"
                    | "notify_fifo"
                    | "notify_fifo_script"
                    | "random_seed"
                    | "reload_check_config"
                    | "reload_time_file"
                    | "reload_repeat"
                    | "reload_file"
                    | "tmp_config_directory"
                    | "local_name"
            )
        {
            own.push(n.note());
        } else {
            lines.push(n);
        }
    }
    out.blank();
    if !mail.is_empty() {
        out.comment(
            0,
            &format!(
                "keepalived's e-mail alerts ({}): lvsmon sends no mail; a notify command can \
                 (lvsmon(8), NOTIFY).",
                mail.join("; ")
            ),
        );
    }
    if !own.is_empty() {
        out.comment(
            0,
            &format!(
                "settings of keepalived itself, nothing to convert: {}",
                own.join("; ")
            ),
        );
    }
    for n in lines {
        match n.key.as_str() {
            "lvs_timeouts" => lvs_timeouts(out, n),
            "lvs_sync_daemon" => lvs_sync_daemon(out, n),
            "lvs_flush" | "lvs_flush_onstop" => out.refuse(
                0,
                &n.src,
                &format!(
                    "{}: lvsmon never empties the IPVS table; it changes only what its \
                     configuration names",
                    n.text()
                ),
            ),
            _ => out.refuse(0, &n.src, &format!("{}: no lvsmon equivalent", n.text())),
        }
    }
}

fn lvs_timeouts(out: &mut Out, n: &Node) {
    let mut words = Vec::new();
    let mut i = 0;
    while i + 1 < n.args.len() {
        let (k, v) = (&n.args[i], &n.args[i + 1]);
        match (k.as_str(), v.parse::<f64>()) {
            ("tcp" | "tcpfin" | "udp", Ok(secs)) if secs >= 0.0 => {
                words.push(format!("{k} {}", duration(secs)));
            }
            _ => {
                out.refuse(0, &n.src, &format!("{}: unreadable", n.text()));
                return;
            }
        }
        i += 2;
    }
    if words.is_empty() || i != n.args.len() {
        out.refuse(0, &n.src, &format!("{}: unreadable", n.text()));
        return;
    }
    out.uses(Feature::IpvsTimeouts);
    out.code(0, &format!("ipvs-timeouts {}", words.join(" ")), &n.note());
}

fn lvs_sync_daemon(out: &mut Out, n: &Node) {
    let Some(iface) = n.arg(0) else {
        out.refuse(0, &n.src, &format!("{}: no interface", n.text()));
        return;
    };
    // INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group ADDR]
    let mut rest: Vec<String> = Vec::new();
    let mut i = 1;
    let mut instance = None;
    while i < n.args.len() {
        match n.args[i].as_str() {
            k @ ("id" | "maxlen" | "port" | "ttl" | "group") if i + 1 < n.args.len() => {
                rest.push(format!("{k} {}", word(&n.args[i + 1])));
                i += 2;
            }
            other if i == 1 => {
                instance = Some(other.to_string());
                i += 1;
            }
            _ => {
                out.refuse(0, &n.src, &format!("{}: unreadable", n.text()));
                return;
            }
        }
    }
    out.uses(Feature::SyncDaemon);
    out.comment(
        0,
        &format!(
            "keepalived runs the sync daemon as master or backup with VRRP instance {}; lvsmon \
             runs both (lvsmon(8), DIRECTOR PAIRS)",
            instance.as_deref().unwrap_or("(none named)")
        ),
    );
    let tail = if rest.is_empty() {
        String::new()
    } else {
        format!(" {}", rest.join(" "))
    };
    for role in ["master", "backup"] {
        out.code(
            0,
            &format!("sync-daemon {role} {}{tail}", word(iface)),
            &n.note(),
        );
    }
}

/// The checker timings keepalived inherits from virtual to real server to checker.
#[derive(Debug, Clone, Default)]
struct Timing {
    delay_loop: Option<(f64, String)>,
    connect_timeout: Option<(f64, String)>,
    retry: Option<(u64, String)>,
    delay_before_retry: Option<(f64, String)>,
}

impl Timing {
    /// The values set, without where they were set.
    fn values(&self) -> (Option<f64>, Option<f64>, Option<u64>, Option<f64>) {
        (
            self.delay_loop.as_ref().map(|v| v.0),
            self.connect_timeout.as_ref().map(|v| v.0),
            self.retry.as_ref().map(|v| v.0),
            self.delay_before_retry.as_ref().map(|v| v.0),
        )
    }

    /// Takes `n` if it is a timing; a bad value is refused into `items`.
    fn take(&mut self, n: &Node, items: &mut Vec<Item>) -> bool {
        let secs = || {
            n.arg(0)
                .and_then(|a| a.parse::<f64>().ok())
                .filter(|s| *s >= 0.0)
        };
        let slot = match n.key.as_str() {
            "delay_loop" => &mut self.delay_loop,
            "connect_timeout" => &mut self.connect_timeout,
            "delay_before_retry" => &mut self.delay_before_retry,
            "retry" | "nb_get_retry" => {
                match n.arg(0).and_then(|a| a.parse::<u64>().ok()) {
                    Some(v) => self.retry = Some((v, n.note())),
                    None => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
                }
                return true;
            }
            _ => return false,
        };
        match secs() {
            Some(v) => *slot = Some((v, n.note())),
            None => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
        }
        true
    }
}

/// Which checker, for its defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Misc,
    Dns,
    Other,
}

/// A real server converted: its `real` line and the lines of its block.
struct Real {
    comment: String,
    line: String,
    /// Timings and `on-down`: may move up to the virtual block.
    settings: Vec<Item>,
    /// `check` lines: may move up too.
    checks: Vec<Item>,
    /// Lines that stay with the real server.
    own: Vec<Item>,
    weight: u64,
}

/// What a virtual server says about its real servers.
struct Ctx<'a> {
    vport: Option<u16>,
    fwmark: bool,
    virtualhost: Option<&'a str>,
    timing: Timing,
    inhibit: Option<(bool, String)>,
}

fn virtual_server(out: &mut Out, node: &Node, groups: &HashMap<&str, &Node>) {
    let head = format!("{} ({})", node.text(), node.src);
    // The services this block stands for.
    enum Svc {
        Addr(IpAddr, u16),
        Mark(u32),
    }
    let mut svcs: Vec<(Svc, String)> = Vec::new();
    match (node.arg(0), node.arg(1)) {
        (Some("fwmark"), Some(m)) => match parse_u32(m) {
            Some(m) => svcs.push((Svc::Mark(m), head.clone())),
            None => {
                out.refuse(
                    0,
                    &node.src,
                    &format!("{}: unreadable firewall mark", node.text()),
                );
                return;
            }
        },
        (Some("group"), Some(name)) => {
            let Some(g) = groups.get(name) else {
                out.refuse(
                    0,
                    &node.src,
                    &format!("{}: no virtual_server_group {name}", node.text()),
                );
                return;
            };
            for e in g.children() {
                let what = format!("{head}, group {name} entry {} ({})", e.text(), e.src);
                if e.key == "fwmark" {
                    match e.arg(0).and_then(parse_u32) {
                        Some(m) => svcs.push((Svc::Mark(m), what)),
                        None => out.refuse(0, &e.src, &format!("{}: unreadable", e.text())),
                    }
                    continue;
                }
                let port = match e.arg(0).map(|p| p.parse::<u16>()) {
                    Some(Ok(p)) => p,
                    _ => {
                        out.refuse(
                            0,
                            &e.src,
                            &format!(
                                "{}: a virtual address without a port (all ports) has no lvsmon \
                                 equivalent",
                                e.text()
                            ),
                        );
                        continue;
                    }
                };
                match expand_range(&e.key) {
                    Ok(addrs) => {
                        for a in addrs {
                            svcs.push((Svc::Addr(a, port), what.clone()));
                        }
                    }
                    Err(why) => out.refuse(0, &e.src, &format!("{}: {why}", e.text())),
                }
            }
        }
        (Some(a), Some(p)) => match (a.parse::<IpAddr>(), p.parse::<u16>()) {
            (Ok(ip), Ok(port)) => svcs.push((Svc::Addr(ip, port), head.clone())),
            _ => {
                out.refuse(
                    0,
                    &node.src,
                    &format!("{}: expected an IP address and a port", node.text()),
                );
                return;
            }
        },
        _ => {
            out.refuse(
                0,
                &node.src,
                &format!(
                    "{}: a virtual server without a port (all ports) has no lvsmon equivalent",
                    node.text()
                ),
            );
            return;
        }
    }

    // The virtual server's own settings.
    let mut vitems: Vec<Item> = Vec::new();
    let mut proto = (
        "tcp".to_string(),
        String::from("keepalived's default protocol TCP"),
    );
    let mut forward = (
        "masq".to_string(),
        String::from("keepalived's default lvs_method NAT"),
    );
    let mut quorum: Option<(u64, &Node)> = None;
    let mut sorry: Option<&Node> = None;
    let mut sorry_method: Option<(String, &Node)> = None;
    let mut ctx = Ctx {
        vport: None,
        fwmark: false,
        virtualhost: None,
        timing: Timing::default(),
        inhibit: None,
    };
    let mut reals: Vec<&Node> = Vec::new();
    for n in node.children() {
        if ctx.timing.take(n, &mut vitems) {
            continue;
        }
        match n.key.as_str() {
            "real_server" => reals.push(n),
            "lb_algo" | "lvs_sched" => match n.arg(0) {
                Some(s) => vitems.push(Item::set(format!("scheduler {}", word(s)), n.note())),
                None => vitems.push(Item::refused(&n.src, "lvs_sched without a scheduler")),
            },
            "lb_kind" | "lvs_method" => match method(n, out) {
                Ok(m) => forward = (m, n.note()),
                Err(why) => vitems.push(Item::refused(&n.src, why)),
            },
            "protocol" => match n.arg(0).map(str::to_ascii_lowercase).as_deref() {
                Some(p @ ("tcp" | "udp" | "sctp")) => proto = (p.to_string(), n.note()),
                _ => vitems.push(Item::refused(
                    &n.src,
                    format!("{}: unknown protocol", n.text()),
                )),
            },
            "persistence_timeout" => {
                let secs = match n.arg(0) {
                    None => Some(360),
                    Some(a) => a.parse::<u64>().ok(),
                };
                match secs {
                    Some(s) => vitems.push(Item::set(format!("persistent {s}s"), n.note())),
                    None => vitems.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
                }
            }
            "persistence_granularity" => match n.arg(0).and_then(emit::prefix_len) {
                Some(len) => {
                    out.uses(Feature::PersistenceNetmask);
                    vitems.push(Item::set(format!("persistence-netmask {len}"), n.note()));
                }
                None => vitems.push(Item::refused(
                    &n.src,
                    format!("{}: unreadable mask", n.text()),
                )),
            },
            "quorum" => match n.arg(0).and_then(|a| a.parse::<u64>().ok()) {
                Some(q) => quorum = Some((q, n)),
                None => vitems.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "hysteresis" if n.arg(0) == Some("0") => {
                vitems.push(Item::Comment(format!("{}: the default", n.note())));
            }
            "sorry_server" => sorry = Some(n),
            "sorry_server_lvs_method" => match method(n, out) {
                Ok(m) => sorry_method = Some((m, n)),
                Err(why) => vitems.push(Item::refused(&n.src, why)),
            },
            "virtualhost" => ctx.virtualhost = n.arg(0),
            "inhibit_on_failure" => ctx.inhibit = Some((bool_arg(n), n.note())),
            "alpha" => vitems.push(Item::Comment(format!(
                "{}: lvsmon decides each real server on its first result, as alpha does",
                n.note()
            ))),
            "ops" => {
                out.uses(Feature::OnePacket);
                vitems.push(Item::set("one-packet yes", n.note()));
            }
            f @ ("sh-port" | "sh-fallback" | "mh-port" | "mh-fallback") => {
                out.uses(Feature::SchedFlags);
                vitems.push(Item::set(format!("sched-flags {f}"), n.note()));
            }
            "ip_family" | "snmp_name" => {
                vitems.push(Item::Comment(format!("{}: nothing to convert", n.note())))
            }
            "smtp_alert" => vitems.push(Item::Comment(format!(
                "{}: lvsmon sends no mail; a notify command can",
                n.note()
            ))),
            "quorum_up" | "quorum_down" => vitems.push(Item::refused(
                &n.src,
                format!(
                    "{}: lvsmon runs its notify command for quorum events too \
                     (LVSMON_EVENT=quorum-lost|quorum-restored); one command for every event",
                    n.text()
                ),
            )),
            _ => vitems.push(Item::refused(
                &n.src,
                format!("{}: no lvsmon equivalent", n.text()),
            )),
        }
    }
    vitems.insert(
        0,
        Item::set(format!("forward {}", forward.0), forward.1.clone()),
    );
    if forward.0.starts_with("tunnel ") {
        out.uses(Feature::TunnelType);
    }

    // Real servers.
    let mut rs: Vec<Real> = Vec::new();
    let first_port = svcs.first().and_then(|(s, _)| match s {
        Svc::Addr(_, p) => Some(*p),
        Svc::Mark(_) => None,
    });
    ctx.vport = first_port;
    ctx.fwmark = first_port.is_none();
    for r in &reals {
        match real_server(out, r, &ctx) {
            Ok(real) => rs.push(real),
            // Written in the virtual block, where the real server stood.
            Err(refused) => vitems.push(refused),
        }
    }

    // Quorum: keepalived's is a total weight, lvsmon's a count of real servers.
    if let Some((q, n)) = quorum {
        let weights: Vec<u64> = rs.iter().map(|r| r.weight).collect();
        match weights.first() {
            Some(&w) if w > 0 && weights.iter().all(|&x| x == w) => {
                let count = q.div_ceil(w);
                vitems.push(Item::set(
                    format!("quorum {count}"),
                    format!(
                        "{} (a total weight; every real_server weighs {w})",
                        n.note()
                    ),
                ));
            }
            _ if q <= 1 => vitems.push(Item::set(format!("quorum {q}"), n.note())),
            _ => vitems.push(Item::refused(
                &n.src,
                format!(
                    "{}: keepalived counts the weight of the live real servers and lvsmon counts \
                     real servers; with unequal weights there is no equivalent count",
                    n.text()
                ),
            )),
        }
    }
    if let Some(n) = sorry {
        let port = n.arg(1).map(|p| p.parse::<u16>());
        match (n.arg(0).map(str::parse::<IpAddr>), port) {
            (Some(Ok(ip)), Some(Ok(p))) => {
                let m = sorry_method
                    .as_ref()
                    .map(|(m, _)| m.clone())
                    .unwrap_or_else(|| forward.0.clone());
                let mut code = format!("sorry {}", addr_port(ip, Some(p)));
                let mut note = n.note();
                if m != "masq" {
                    out.uses(Feature::SorryForward);
                    code.push_str(&format!(" --forward {m}"));
                    if let Some((_, mn)) = &sorry_method {
                        note = format!("{note}, {}", mn.note());
                    }
                }
                vitems.push(Item::set(code, note));
            }
            (Some(Ok(ip)), None) if ctx.vport.is_some() => vitems.push(Item::set(
                format!("sorry {}", addr_port(ip, ctx.vport)),
                n.note(),
            )),
            _ => vitems.push(Item::refused(
                &n.src,
                format!("{}: expected an IP address and a port", n.text()),
            )),
        }
    }

    // Lines every real server has alike go to the virtual block.
    let alike = |f: &dyn Fn(&Real) -> &Vec<Item>| -> bool {
        !rs.is_empty() && rs.iter().all(|r| codes(f(r)) == codes(f(&rs[0])))
    };
    let hoist_checks = alike(&|r| &r.checks) && !rs[0].checks.is_empty();
    // Each setting every real server has (each is one keyword, once per real server).
    let common: Vec<Item> = match rs.first() {
        Some(first) => first
            .settings
            .iter()
            .filter(|i| {
                rs.iter()
                    .all(|r| r.settings.iter().any(|x| code_of(x) == code_of(i)))
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let common_codes: Vec<String> = codes(&common).into_iter().map(String::from).collect();
    let mut shared: Vec<Item> = common.clone();
    if hoist_checks {
        shared.extend(rs[0].checks.iter().cloned());
    }

    for (svc, what) in &svcs {
        out.blank();
        out.comment(0, what);
        let head = match svc {
            Svc::Mark(m) => format!("virtual fwmark {m} {{"),
            Svc::Addr(ip, port) => {
                format!("virtual {} {} {{", proto.0, addr_port(*ip, Some(*port)))
            }
        };
        let pnote = match svc {
            Svc::Addr(..) => proto.1.clone(),
            Svc::Mark(_) => String::new(),
        };
        out.code(0, &head, &pnote);
        out.items(1, &vitems);
        out.items(1, &shared);
        for r in &rs {
            out.comment(1, &r.comment);
            let mut own: Vec<Item> = Vec::new();
            own.extend(
                r.settings
                    .iter()
                    .filter(|i| !common_codes.iter().any(|c| code_of(i) == c))
                    .cloned(),
            );
            if !hoist_checks {
                own.extend(r.checks.iter().cloned());
            }
            own.extend(r.own.iter().cloned());
            if own.is_empty() {
                out.code(1, &r.line, "");
            } else {
                out.code(1, &format!("{} {{", r.line), "");
                out.items(2, &own);
                out.code(1, "}", "");
            }
        }
        out.code(0, "}", "");
    }
}

fn codes(items: &[Item]) -> Vec<&str> {
    items.iter().map(code_of).collect()
}

/// What a line says, without its note: how lines are compared.
fn code_of(i: &Item) -> &str {
    match i {
        Item::Set { code, .. } => code.as_str(),
        Item::Comment(c) => c.as_str(),
        Item::Refused { text, .. } => text.as_str(),
    }
}

fn bool_arg(n: &Node) -> bool {
    !matches!(
        n.arg(0).map(str::to_ascii_lowercase).as_deref(),
        Some("off" | "false" | "no" | "0")
    )
}

fn parse_u32(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
    .filter(|&m| m > 0)
}

/// `lb_kind`/`lvs_method`: NAT, DR, TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum].
fn method(n: &Node, out: &mut Out) -> Result<String, String> {
    let kind = n.arg(0).map(str::to_ascii_uppercase);
    match kind.as_deref() {
        Some("NAT") if n.args.len() == 1 => Ok("masq".into()),
        Some("DR") if n.args.len() == 1 => Ok("route".into()),
        Some("TUN") => {
            let rest: Vec<&str> = n.args[1..].iter().map(String::as_str).collect();
            let words = match rest.as_slice() {
                [] | ["type", "ipip"] | ["nocsum"] | ["type", "ipip", "nocsum"] => String::new(),
                ["type", "gue", "port", p] => format!(" gue {p}"),
                ["type", "gue", "port", p, c @ ("csum" | "remcsum")] => format!(" gue {p} {c}"),
                ["type", "gue", "port", p, "nocsum"] => format!(" gue {p}"),
                ["type", "gre"] | ["type", "gre", "nocsum"] => " gre".into(),
                ["type", "gre", "csum"] => " gre csum".into(),
                _ => return Err(format!("{}: unknown tunnel type", n.text())),
            };
            if !words.is_empty() {
                out.uses(Feature::TunnelType);
            }
            Ok(format!("tunnel{words}"))
        }
        _ => Err(format!("{}: expected NAT, DR or TUN", n.text())),
    }
}

/// A `virtual_server_group` address: one address, `A-N` (the last part ranging to N),
/// `A-B` (two whole addresses) or `A/LEN`.
fn expand_range(text: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let (lo, hi): (IpAddr, IpAddr) = if let Some((a, len)) = text.split_once('/') {
        let ip: IpAddr = a.parse().map_err(|_| "unreadable address".to_string())?;
        let len: u32 = len
            .parse()
            .map_err(|_| "unreadable prefix length".to_string())?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        if len > bits {
            return Err("prefix length too long".into());
        }
        let n = to_u128(ip);
        let host = if len == bits {
            0
        } else {
            (1u128 << (bits - len)) - 1
        };
        (
            from_u128(n & !host, ip.is_ipv4()),
            from_u128(n | host, ip.is_ipv4()),
        )
    } else if let Some((a, b)) = text.rsplit_once('-') {
        let lo: IpAddr = a
            .parse()
            .map_err(|_| "unreadable address range".to_string())?;
        let hi = match b.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => match lo {
                IpAddr::V4(v4) => {
                    let last: u8 = b
                        .parse()
                        .map_err(|_| "unreadable address range".to_string())?;
                    let mut o = v4.octets();
                    o[3] = last;
                    IpAddr::from(o)
                }
                IpAddr::V6(v6) => {
                    let last = u16::from_str_radix(b, 16)
                        .map_err(|_| "unreadable address range".to_string())?;
                    let mut s = v6.segments();
                    s[7] = last;
                    IpAddr::from(s)
                }
            },
        };
        (lo, hi)
    } else {
        return Err("unreadable address".into());
    };
    if lo.is_ipv4() != hi.is_ipv4() || to_u128(hi) < to_u128(lo) {
        return Err("the range ends before it starts".into());
    }
    let count = to_u128(hi) - to_u128(lo) + 1;
    if count > MAX_RANGE {
        return Err(format!(
            "a range of {count} addresses (lvsmon convert writes at most {MAX_RANGE} per range)"
        ));
    }
    Ok((to_u128(lo)..=to_u128(hi))
        .map(|n| from_u128(n, lo.is_ipv4()))
        .collect())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a).into(),
        IpAddr::V6(a) => a.into(),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::from(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::from(std::net::Ipv6Addr::from(n))
    }
}

/// A real server, or the refusal of one whose address or port cannot be read.
fn real_server(out: &mut Out, n: &Node, ctx: &Ctx<'_>) -> Result<Real, Item> {
    let ip = match n.arg(0).map(str::parse::<IpAddr>) {
        Some(Ok(ip)) => ip,
        _ => {
            return Err(Item::refused(
                &n.src,
                format!("{}: expected an IP address", n.text()),
            ));
        }
    };
    let port = match n.arg(1).map(str::parse::<u16>) {
        None => {
            if ctx.fwmark {
                None
            } else {
                ctx.vport
            }
        }
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            return Err(Item::refused(
                &n.src,
                format!("{}: unreadable port", n.text()),
            ));
        }
    };
    let mut own: Vec<Item> = Vec::new();
    let mut timing = ctx.timing.clone();
    let mut inhibit = ctx.inhibit.clone();
    let mut weight: (u64, String) = (1, String::new());
    let mut virtualhost = ctx.virtualhost;
    let mut notify_up: Option<&Node> = None;
    let mut notify_down: Option<&Node> = None;
    let mut checkers: Vec<&Node> = Vec::new();
    for c in n.children() {
        if timing.take(c, &mut own) {
            continue;
        }
        match c.key.as_str() {
            "weight" => match c.arg(0).and_then(|a| a.parse::<u64>().ok()) {
                Some(w) if w <= 65535 => weight = (w, c.note()),
                _ => own.push(Item::refused(
                    &c.src,
                    format!("{}: unreadable weight", c.text()),
                )),
            },
            "inhibit_on_failure" => inhibit = Some((bool_arg(c), c.note())),
            "lb_kind" | "lvs_method" => match method(c, out) {
                Ok(m) => own.push(Item::set(format!("forward {m}"), c.note())),
                Err(why) => own.push(Item::refused(&c.src, why)),
            },
            "virtualhost" => virtualhost = c.arg(0),
            "notify_up" => notify_up = Some(c),
            "notify_down" => notify_down = Some(c),
            k @ ("uthreshold" | "lthreshold") => match c.arg(0).and_then(|a| a.parse::<u32>().ok())
            {
                Some(v) => {
                    out.uses(Feature::Thresholds);
                    let name = if k == "uthreshold" {
                        "u-threshold"
                    } else {
                        "l-threshold"
                    };
                    own.push(Item::set(format!("{name} {v}"), c.note()));
                }
                None => own.push(Item::refused(&c.src, format!("{}: unreadable", c.text()))),
            },
            "alpha" => own.push(Item::Comment(format!(
                "{}: lvsmon decides each real server on its first result, as alpha does",
                c.note()
            ))),
            "smtp_alert" => own.push(Item::Comment(format!(
                "{}: lvsmon sends no mail; a notify command can",
                c.note()
            ))),
            "snmp_name" => own.push(Item::Comment(format!("{}: nothing to convert", c.note()))),
            k if is_checker(k) => checkers.push(c),
            _ => own.push(Item::refused(
                &c.src,
                format!("{}: no lvsmon equivalent", c.text()),
            )),
        }
    }
    notify(&mut own, notify_up, notify_down);

    let mut settings: Vec<Item> = Vec::new();
    match &inhibit {
        Some((true, note)) => settings.push(Item::set("on-down quiesce", note.clone())),
        Some((false, note)) => settings.push(Item::set("on-down remove", note.clone())),
        None => settings.push(Item::set(
            "on-down remove",
            "keepalived removes a failed real_server unless inhibit_on_failure",
        )),
    }
    let mut checks: Vec<Item> = Vec::new();
    let rctx = RealCtx {
        ip,
        port,
        virtualhost,
    };
    let mut first_timing: Option<(Timing, Kind)> = None;
    for c in &checkers {
        let before = checks.iter().filter(|i| i.is_check()).count();
        let (kind, t) = checker(out, c, &rctx, &timing, &mut checks);
        if checks.iter().filter(|i| i.is_check()).count() == before {
            // Refused: its timings do not matter.
            continue;
        }
        match &first_timing {
            None => first_timing = Some((t, kind)),
            Some((ft, _)) => {
                // Only what the files set counts; each checker's own defaults are not
                // differences the operator chose.
                if ft.values() != t.values() {
                    checks.push(Item::refused(
                        &c.src,
                        format!(
                            "{}: its timings differ from the first checker's; lvsmon times \
                             every check of a real server alike (the first checker's are used)",
                            c.key
                        ),
                    ));
                }
            }
        }
    }
    let (t, kind) = first_timing.unwrap_or_else(|| (timing.clone(), Kind::Other));
    if kind != Kind::Misc {
        // A MISC_CHECK after another checker: the real server's timeout is that checker's
        // connect_timeout; lvsmon has one timeout per real server.
        for item in &mut checks {
            if let Item::Set { code, note } = item {
                if code.starts_with("timeout ") {
                    *item = Item::Comment(format!(
                        "{note}: not used; the first checker's connect_timeout is the real \
                         server's timeout"
                    ));
                }
            }
        }
    }
    if checkers.is_empty() {
        own.push(Item::refused(
            &n.src,
            "real_server without a checker: keepalived keeps it up whatever happens; lvsmon has \
             no such check and checks it with check tcp",
        ));
    }
    for (code, note) in timing_lines(&t, kind) {
        settings.push(Item::set(code, note));
    }
    let wnote = if weight.1.is_empty() {
        "keepalived's default weight 1".to_string()
    } else {
        weight.1.clone()
    };
    Ok(Real {
        comment: format!("{} ({}); {}", n.text(), n.src, wnote),
        line: format!("real {} weight {}", addr_port(ip, port), weight.0),
        settings,
        checks,
        own,
        weight: weight.0,
    })
}

/// notify_up and notify_down: one `notify` when they name the same command.
fn notify(own: &mut Vec<Item>, up: Option<&Node>, down: Option<&Node>) {
    let cmd = |n: &Node| n.arg(0).unwrap_or("").to_string();
    match (up, down) {
        (None, None) => {}
        (Some(u), Some(d)) if cmd(u) == cmd(d) && u.args.len() == 1 && d.args.len() == 1 => {
            let words: Vec<String> = cmd(u).split_whitespace().map(word).collect();
            own.push(Item::Comment(
                "lvsmon runs the command for every event of the real server, with \
                 LVSMON_EVENT=up|down|drained|undrained in its environment"
                    .to_string(),
            ));
            own.push(Item::set(
                format!("notify {}", words.join(" ")),
                format!("{}, {}", u.note(), d.note()),
            ));
        }
        _ => {
            for n in [up, down].into_iter().flatten() {
                own.push(Item::refused(
                    &n.src,
                    format!(
                        "{}: lvsmon runs one notify command for every event (LVSMON_EVENT tells \
                         up from down) as the daemon's user; give notify_up and notify_down the \
                         same command, without a user",
                        n.text()
                    ),
                ));
            }
        }
    }
}

fn is_checker(k: &str) -> bool {
    matches!(
        k,
        "TCP_CHECK"
            | "HTTP_GET"
            | "SSL_GET"
            | "SMTP_CHECK"
            | "DNS_CHECK"
            | "MISC_CHECK"
            | "UDP_CHECK"
            | "PING_CHECK"
            | "BFD_CHECK"
            | "FILE_CHECK"
    )
}

/// The timing lines of a real server from the checker's timings and keepalived's defaults.
fn timing_lines(t: &Timing, kind: Kind) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let delay = t
        .delay_loop
        .clone()
        .unwrap_or((60.0, "keepalived's default delay_loop 60".into()));
    v.push((format!("interval {}", duration(delay.0)), delay.1.clone()));
    let default_retry = match kind {
        Kind::Dns => 3,
        Kind::Misc => 0,
        _ => 1,
    };
    let retry = t.retry.clone().unwrap_or((
        default_retry,
        format!("keepalived's default retry {default_retry}"),
    ));
    v.push((
        format!("fall {}", retry.0.saturating_add(1)),
        format!(
            "{}: down after {} failures",
            retry.1,
            retry.0.saturating_add(1)
        ),
    ));
    v.push(("rise 1".into(), "keepalived: one pass brings it up".into()));
    let dbr = t.delay_before_retry.clone().unwrap_or_else(|| match kind {
        Kind::Dns => (
            delay.0,
            "keepalived's default delay_before_retry for DNS_CHECK (delay_loop)".into(),
        ),
        Kind::Http => (3.0, "keepalived's default delay_before_retry 3".into()),
        _ => (1.0, "keepalived's default delay_before_retry 1".into()),
    });
    v.push((format!("retry-interval {}", duration(dbr.0)), dbr.1));
    if kind != Kind::Misc {
        let ct = t
            .connect_timeout
            .clone()
            .unwrap_or((5.0, "keepalived's default connect_timeout 5".into()));
        v.push((format!("connect-timeout {}", duration(ct.0)), ct.1.clone()));
        v.push((format!("timeout {}", duration(ct.0)), ct.1));
    }
    v
}

struct RealCtx<'a> {
    ip: IpAddr,
    port: Option<u16>,
    virtualhost: Option<&'a str>,
}

/// The options every checker may have: where to connect, from where, with which mark.
#[derive(Default, Clone)]
struct Conn {
    address: Option<IpAddr>,
    port: Option<u16>,
    words: Vec<String>,
}

impl Conn {
    fn take(&mut self, n: &Node, out: &mut Out, items: &mut Vec<Item>) -> bool {
        match n.key.as_str() {
            "connect_ip" => match n.arg(0).map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => self.address = Some(ip),
                _ => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "connect_port" => match n.arg(0).map(str::parse::<u16>) {
                Some(Ok(p)) => self.port = Some(p),
                _ => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "bindto" | "bind_to" => match n.arg(0).map(str::parse::<IpAddr>) {
                Some(Ok(ip)) => {
                    out.uses(Feature::Source);
                    self.words.push(format!("--source {ip}"));
                }
                _ => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "fwmark" => match n.arg(0).and_then(parse_u32) {
                Some(m) => {
                    out.uses(Feature::Mark);
                    self.words.push(format!("--mark {m}"));
                }
                None => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "bind_port" | "bind_if" => items.push(Item::refused(
                &n.src,
                format!(
                    "{}: lvsmon picks the source port and interface itself",
                    n.text()
                ),
            )),
            "log_all_failures" => items.push(Item::Comment(format!(
                "{}: lvsmon logs every check result with -v",
                n.note()
            ))),
            "warmup" => items.push(Item::refused(
                &n.src,
                format!(
                    "{}: lvsmon has no random delay before the first check",
                    n.text()
                ),
            )),
            "alpha" => items.push(Item::Comment(format!(
                "{}: lvsmon decides each real server on its first result",
                n.note()
            ))),
            _ => return false,
        }
        true
    }

    /// `--address`/`--port` and the rest, as words after the plugin's own.
    fn options(&self) -> String {
        let mut s = String::new();
        if let Some(a) = self.address {
            s.push_str(&format!(" --address {a}"));
        }
        if let Some(p) = self.port {
            s.push_str(&format!(" --port {p}"));
        }
        for w in &self.words {
            s.push(' ');
            s.push_str(w);
        }
        s
    }
}

/// Converts one checker into `check` lines (pushed onto `checks`); returns its kind and timing.
fn checker(
    out: &mut Out,
    c: &Node,
    r: &RealCtx<'_>,
    inherited: &Timing,
    checks: &mut Vec<Item>,
) -> (Kind, Timing) {
    let mut timing = inherited.clone();
    let mut conn = Conn::default();
    let mut items: Vec<Item> = Vec::new();
    let kind = match c.key.as_str() {
        "HTTP_GET" | "SSL_GET" => Kind::Http,
        "MISC_CHECK" => Kind::Misc,
        "DNS_CHECK" => Kind::Dns,
        _ => Kind::Other,
    };
    // Options particular to each checker, read after the common ones.
    let mut rest: Vec<&Node> = Vec::new();
    for n in c.children() {
        if timing.take(n, &mut items) || conn.take(n, out, &mut items) {
            continue;
        }
        rest.push(n);
    }
    let need_port = |conn: &Conn, items: &mut Vec<Item>| -> bool {
        if conn.port.is_none() && r.port.is_none() {
            items.push(Item::refused(
                &c.src,
                format!(
                    "{}: a real server without a port needs connect_port for this checker",
                    c.key
                ),
            ));
            return false;
        }
        true
    };
    let unknown = |n: &Node| Item::refused(&n.src, format!("{}: no lvsmon equivalent", n.text()));
    match c.key.as_str() {
        "TCP_CHECK" => {
            items.extend(rest.iter().map(|n| unknown(n)));
            if need_port(&conn, &mut items) {
                items.push(Item::set(format!("check tcp{}", conn.options()), c.note()));
            }
        }
        "HTTP_GET" | "SSL_GET" => http_get(out, c, &rest, r, &conn, &mut items),
        "SMTP_CHECK" => {
            let mut helo: Option<&str> = None;
            let mut hosts: Vec<(&Node, Conn)> = Vec::new();
            for n in &rest {
                match n.key.as_str() {
                    "helo_name" => helo = n.arg(0),
                    "host" => {
                        let mut h = conn.clone();
                        for hn in n.children() {
                            if !h.take(hn, out, &mut items) {
                                items.push(unknown(hn));
                            }
                        }
                        hosts.push((n, h));
                    }
                    _ => items.push(unknown(n)),
                }
            }
            let plugin = match helo {
                Some(name) => format!(
                    "check script --expect 220 --send {} --expect 250 --send \"QUIT\\r\\n\" \
                     --expect 221",
                    emit::quoted(format!("HELO {name}\r\n").as_bytes())
                ),
                None => "check smtp".to_string(),
            };
            if hosts.is_empty() {
                if need_port(&conn, &mut items) {
                    items.push(Item::set(format!("{plugin}{}", conn.options()), c.note()));
                }
            } else {
                for (h, hc) in &hosts {
                    if need_port(hc, &mut items) {
                        items.push(Item::set(
                            format!("{plugin}{}", hc.options()),
                            format!("{}, {}", c.note(), h.note()),
                        ));
                    }
                }
            }
        }
        "DNS_CHECK" => {
            let mut qtype = "SOA".to_string();
            let mut name = ".".to_string();
            for n in &rest {
                match (n.key.as_str(), n.arg(0)) {
                    ("type", Some(t)) => qtype = t.to_ascii_uppercase(),
                    ("name", Some(q)) => name = q.to_string(),
                    _ => items.push(unknown(n)),
                }
            }
            if need_port(&conn, &mut items) {
                items.push(Item::set(
                    format!(
                        "check dns --query {} --type {}{}",
                        word(&name),
                        word(&qtype),
                        conn.options()
                    ),
                    c.note(),
                ));
            }
        }
        "MISC_CHECK" => {
            let mut path: Option<&Node> = None;
            let mut dynamic = false;
            for n in &rest {
                match n.key.as_str() {
                    "misc_path" => path = Some(n),
                    "misc_timeout" => match n.arg(0).and_then(|a| a.parse::<f64>().ok()) {
                        Some(s) => {
                            items.push(Item::set(format!("timeout {}", duration(s)), n.note()))
                        }
                        None => {
                            items.push(Item::refused(&n.src, format!("{}: unreadable", n.text())))
                        }
                    },
                    "misc_dynamic" => dynamic = true,
                    "user" => items.push(Item::refused(
                        &n.src,
                        format!(
                            "{}: lvsmon runs check programs as its own user (see --user)",
                            n.text()
                        ),
                    )),
                    _ => items.push(unknown(n)),
                }
            }
            if !conn.words.is_empty() || conn.address.is_some() || conn.port.is_some() {
                items.push(Item::refused(
                    &c.src,
                    "MISC_CHECK connection options: the program connects where it likes",
                ));
            }
            match path.and_then(|p| p.arg(0).map(|a| (p, a))) {
                Some((p, cmd)) => {
                    out.uses(Feature::Exec);
                    let words: Vec<String> = cmd.split_whitespace().map(word).collect();
                    let dyn_word = if dynamic { "--dynamic " } else { "" };
                    if !items.iter().any(
                        |i| matches!(i, Item::Set { code, .. } if code.starts_with("timeout ")),
                    ) {
                        let d = timing.delay_loop.clone().unwrap_or((60.0, String::new()));
                        items.push(Item::set(
                            format!("timeout {}", duration(d.0)),
                            "keepalived's default misc_timeout: delay_loop",
                        ));
                    }
                    items.push(Item::set(
                        format!("check exec {dyn_word}{}", words.join(" ")),
                        p.note(),
                    ));
                }
                None => items.push(Item::refused(&c.src, "MISC_CHECK without misc_path")),
            }
        }
        "UDP_CHECK" => udp_check(c, &rest, &conn, &mut items),
        _ => items.push(Item::refused(
            &c.src,
            format!("{}: lvsmon has no such check", c.key),
        )),
    }
    // A MISC_CHECK's timeout is a setting of the real server; keep it with the checks.
    checks.extend(items);
    (kind, timing)
}

fn http_get(
    out: &mut Out,
    c: &Node,
    rest: &[&Node],
    r: &RealCtx<'_>,
    conn: &Conn,
    items: &mut Vec<Item>,
) {
    let tls = c.key == "SSL_GET";
    let mut version = "1.0";
    let mut vhost = r.virtualhost;
    let mut urls: Vec<&Node> = Vec::new();
    for n in rest {
        match n.key.as_str() {
            "url" => urls.push(n),
            "virtualhost" => vhost = n.arg(0),
            "http_protocol" => match n.arg(0) {
                Some("1.1") => version = "1.1",
                Some("1.0" | "1.0C") => version = "1.0",
                _ => items.push(Item::refused(&n.src, format!("{}: unknown", n.text()))),
            },
            "fast_recovery" => items.push(Item::Comment(format!(
                "{}: lvsmon runs every check line at each interval",
                n.note()
            ))),
            "enable_sni" => items.push(Item::Comment(format!(
                "{}: lvsmon sends the URL's host name as SNI",
                n.note()
            ))),
            _ => items.push(Item::refused(
                &n.src,
                format!("{}: no lvsmon equivalent", n.text()),
            )),
        }
    }
    if urls.is_empty() {
        items.push(Item::refused(&c.src, format!("{} without a url", c.key)));
        return;
    }
    let port = conn.port.or(r.port);
    let Some(port) = port else {
        items.push(Item::refused(
            &c.src,
            format!("{}: a real server without a port needs connect_port", c.key),
        ));
        return;
    };
    if tls {
        out.uses(Feature::Https);
    }
    for u in urls {
        let mut path = "/".to_string();
        let mut codes: Option<String> = None;
        let mut digest: Option<String> = None;
        let mut uhost = vhost;
        let mut matches: Option<String> = None;
        let mut ok = true;
        for n in u.children() {
            match (n.key.as_str(), n.arg(0)) {
                ("path", Some(p)) => {
                    path = emit::url_path(&if p.starts_with('/') {
                        p.to_string()
                    } else {
                        format!("/{p}")
                    })
                }
                ("digest", Some(d))
                    if d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    digest = Some(d.to_ascii_lowercase())
                }
                ("status_code", Some(_)) => match status_codes(&n.args) {
                    Some(s) => codes = Some(s),
                    None => {
                        items.push(Item::refused(&n.src, format!("{}: unreadable", n.text())));
                        ok = false;
                    }
                },
                ("virtualhost", Some(h)) => uhost = Some(h),
                ("regex", Some(re)) => match emit::literal_regex(re) {
                    Some(lit) => matches = Some(lit),
                    None => {
                        items.push(Item::refused(
                            &n.src,
                            format!(
                                "{}: lvsmon matches plain text (--match), not regular expressions",
                                n.text()
                            ),
                        ));
                        ok = false;
                    }
                },
                _ => {
                    items.push(Item::refused(
                        &n.src,
                        format!("{}: no lvsmon equivalent", n.text()),
                    ));
                    ok = false;
                }
            }
        }
        if !ok {
            continue;
        }
        if digest.is_some() && matches.is_some() {
            items.push(Item::refused(
                &u.src,
                "url with both digest and regex: lvsmon's --digest cannot go with --match",
            ));
            continue;
        }
        let default_port = if tls { 443 } else { 80 };
        let host = match uhost {
            Some(h) if port == default_port => h.to_string(),
            Some(h) => format!("{h}:{port}"),
            None => {
                let a = conn.address.unwrap_or(r.ip);
                if port == default_port {
                    emit::url_host(a)
                } else {
                    format!("{}:{port}", emit::url_host(a))
                }
            }
        };
        let scheme = if tls { "https" } else { "http" };
        let mut code = format!(
            "check {scheme} --url {} --expect {}",
            word(&format!("{scheme}://{host}{path}")),
            codes.as_deref().unwrap_or("200-299")
        );
        if let Some(d) = digest {
            out.uses(Feature::Digest);
            code.push_str(&format!(" --digest {d}"));
        }
        if let Some(m) = matches {
            code.push_str(&format!(" --match {}", word(&m)));
        }
        if version == "1.0" {
            code.push_str(" --version 1.0");
        }
        code.push_str(&conn.options());
        items.push(Item::set(code, format!("{} url ({})", c.key, u.src)));
    }
}

/// `status_code 200-299 400-499 503` as `--expect 200-299,400-499,503`.
fn status_codes(args: &[String]) -> Option<String> {
    let ok = |s: &str| s.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
    for a in args {
        let good = match a.split_once('-') {
            Some((lo, hi)) => ok(lo) && ok(hi),
            None => ok(a),
        };
        if !good {
            return None;
        }
    }
    Some(args.join(","))
}

fn udp_check(c: &Node, rest: &[&Node], conn: &Conn, items: &mut Vec<Item>) {
    let mut payload: Option<Vec<u8>> = None;
    let mut require: Option<Option<&Node>> = None;
    for n in rest {
        match n.key.as_str() {
            "payload" => match hex_words(&n.args) {
                Some(b) if !b.is_empty() => payload = Some(b),
                _ => items.push(Item::refused(&n.src, format!("{}: unreadable", n.text()))),
            },
            "require_reply" => require = Some(if n.args.is_empty() { None } else { Some(n) }),
            "min_reply_length" if n.arg(0) == Some("0") => {}
            "max_reply_length" if n.arg(0) == Some("255") => {}
            _ => items.push(Item::refused(
                &n.src,
                format!("{}: no lvsmon equivalent", n.text()),
            )),
        }
    }
    let Some(require) = require else {
        items.push(Item::refused(
            &c.src,
            "UDP_CHECK without require_reply passes while no ICMP error comes back; lvsmon's udp \
             check needs a reply",
        ));
        return;
    };
    let send = payload.unwrap_or_else(|| b"lvsmon".to_vec());
    let mut code = format!("check udp --send {}", emit::quoted(&send));
    if let Some(n) = require {
        if n.args.iter().any(|a| a.contains(['x', 'X'])) {
            items.push(Item::refused(
                &n.src,
                format!("{}: lvsmon matches no wildcard nibbles", n.text()),
            ));
            return;
        }
        match hex_words(&n.args) {
            Some(b) if !b.is_empty() => {
                code.push_str(&format!(" --expect-prefix {}", emit::quoted(&b)))
            }
            _ => {
                items.push(Item::refused(&n.src, format!("{}: unreadable", n.text())));
                return;
            }
        }
    }
    code.push_str(&conn.options());
    items.push(Item::set(code, c.note()));
}

/// keepalived's free-form hex: words of hex digits, each an odd digit count padded in front
/// (`Ab12f 3` is AB 12 0F 03).
fn hex_words(words: &[String]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for w in words {
        let digits: Vec<u8> = w
            .chars()
            .map(|c| c.to_digit(16).map(|d| d as u8))
            .collect::<Option<_>>()?;
        let mut i = 0;
        while i + 1 < digits.len() {
            out.push(digits[i] * 16 + digits[i + 1]);
            i += 2;
        }
        if i < digits.len() {
            out.push(digits[i]);
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) fn range(text: &str) -> Result<Vec<IpAddr>, String> {
    expand_range(text)
}
