//! The configuration language: the fuzz input is the text of the main file. It is parsed as
//! if it were `/nonexistent-lvsmon-fuzz/lvsmon.conf` and, when that succeeds, planned.
//!
//! Includes are resolved relative to that directory, which does not exist, so relative
//! includes fail (or, with a wildcard, match nothing) as they should. An include of an
//! *absolute* pattern would read the fuzzing machine's own files (`/dev/zero`, `/dev/stdin`,
//! `/proc/...`): such inputs are skipped, by a copy of the lexer's rules (`may_read_outside`).
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lvsmon::config::{parse, plan};
use lvsmon::history::History;

const FAKE: &str = "/nonexistent-lvsmon-fuzz/lvsmon.conf";

/// True when some line of `text` is `include` followed by a pattern that starts with `/`,
/// following `parse.rs`: lines split at `\n` with one `\r` dropped, a BOM skipped on the first
/// line, words separated by spaces and tabs and ended by `#`, `{` and `}`, `#` starting a
/// comment outside quotes, quoted words decoded (`\xHH`, `\r`, `\n`, `\t`, `\\`, `\"`). A line
/// the lexer would refuse is still looked at as far as it goes (erring towards skipping).
fn may_read_outside(text: &[u8]) -> bool {
    for (n, raw) in text.split(|&b| b == b'\n').enumerate() {
        let mut line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if n == 0 {
            line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
        }
        let mut words: Vec<Vec<u8>> = Vec::new();
        let mut i = 0;
        while i < line.len() && words.len() < 2 {
            match line[i] {
                b' ' | b'\t' | b'{' | b'}' => i += 1,
                b'#' => break,
                b'"' => {
                    let mut w = Vec::new();
                    i += 1;
                    while i < line.len() && line[i] != b'"' {
                        if line[i] == b'\\' && i + 1 < line.len() {
                            let hex =
                                |k: usize| line.get(k).and_then(|&h| (h as char).to_digit(16));
                            match line[i + 1] {
                                b'x' => match (hex(i + 2), hex(i + 3)) {
                                    (Some(h), Some(l)) => {
                                        w.push((h * 16 + l) as u8);
                                        i += 4;
                                        continue;
                                    }
                                    _ => w.push(b'?'),
                                },
                                b'r' => w.push(b'\r'),
                                b'n' => w.push(b'\n'),
                                b't' => w.push(b'\t'),
                                c => w.push(c),
                            }
                            i += 2;
                        } else {
                            w.push(line[i]);
                            i += 1;
                        }
                    }
                    i += 1;
                    words.push(w);
                }
                _ => {
                    let begin = i;
                    while i < line.len() && !matches!(line[i], b' ' | b'\t' | b'#' | b'{' | b'}') {
                        i += 1;
                    }
                    words.push(line[begin..i].to_vec());
                }
            }
        }
        if words.len() == 2 && words[0] == b"include" && words[1].first() == Some(&b'/') {
            return true;
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    if may_read_outside(data) {
        return;
    }
    let path = Path::new(FAKE);
    let Ok(doc) = parse::parse_bytes(path, data) else {
        return;
    };
    assert!(!doc.files.is_empty() && doc.files[0] == path);
    for s in &doc.statements {
        assert!(!s.words.is_empty(), "a statement without words");
        assert!(
            !s.keyword().is("include"),
            "an include left in the document"
        );
    }
    if let Ok(p) = plan::plan(&doc, None) {
        // What --check-config reports; must not overflow however many reals there are.
        let _ = History::bytes_for(&p.history, &History::intervals(&p));
        let _ = plan::plan(&doc, Some(Duration::from_secs(1)));
    }
});
