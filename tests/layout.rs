//! The shape of the source tree: no import circles between modules.
//!
//! A module *names* another when one of its paths (`use crate::a::b`, `crate::a::f()`,
//! `super::x`, or a child's own name such as `plan::plan(...)`) resolves to that module's
//! file. Test modules (`#[cfg(test)] mod ...` to the end of the file) and comments are left
//! out. A submodule naming one of its ancestors does not count: the parent declares its
//! children and shares its vocabulary with them (`config::parse` uses `config::ConfigError`);
//! what must not happen is a module reaching, through other modules, back to one that names it
//! (`config` → `config::plan` → `history` → `config` was such a circle).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Circles known and being opened elsewhere, by the modules in them; each is tolerated only
/// while it stays exactly as it is. Remove an entry once its circle is gone.
const KNOWN: &[&[&str]] = &[];

/// Every module file: `config::plan` → `src/config/plan.rs`; the plugins live in `plugins/`.
fn module_files(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for (dir, prefix) in [("src", ""), ("plugins", "plugins")] {
        let base = root.join(dir);
        let mut stack = vec![base.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).expect("read_dir") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                if p.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let rel = p.strip_prefix(&base).expect("under base");
                let mut parts: Vec<String> = rel
                    .iter()
                    .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
                    .collect();
                if parts == ["main"] || (dir == "plugins" && parts == ["lib"]) {
                    continue;
                }
                if parts == ["lib"] || parts.last().is_some_and(|l| l == "mod") {
                    parts.pop();
                }
                if !prefix.is_empty() {
                    parts.insert(0, prefix.to_string());
                }
                let name = if parts.is_empty() {
                    "crate".to_string()
                } else {
                    parts.join("::")
                };
                out.insert(name, p);
            }
        }
    }
    out
}

/// The source without its test module and without comments.
fn code(text: &str) -> String {
    let mut end = text.len();
    for (i, _) in text.match_indices("#[cfg(test)]") {
        let rest = text[i + "#[cfg(test)]".len()..].trim_start();
        let rest = rest.strip_prefix("pub ").unwrap_or(rest);
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        let rest = rest.strip_prefix("pub(super) ").unwrap_or(rest);
        // `mod tests {` (a body here), not `mod test_support;` (a file of its own).
        let body = rest.strip_prefix("mod ").is_some_and(|r| {
            r.trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                .trim_start()
                .starts_with('{')
        });
        if body {
            end = i;
            break;
        }
    }
    text[..end]
        .lines()
        .map(|l| match l.find("//") {
            Some(c) => &l[..c],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every path that starts at `head` (`crate::` or `super::`), with one level of `{a, b::c}`
/// expanded: `crate::config::{Plan, plan::plan}` → `config::Plan`, `config::plan::plan`.
fn paths_from(code: &str, head: &str) -> Vec<(usize, Vec<String>)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for (i, _) in code.match_indices(head) {
        if i > 0 && (is_ident(bytes[i - 1]) || bytes[i - 1] == b':') {
            continue;
        }
        // How many `super::` in a row (0 for `crate::`).
        let mut at = i + head.len();
        let mut ups = usize::from(head == "super::");
        while code[at..].starts_with("super::") {
            ups += 1;
            at += "super::".len();
        }
        let mut stem = Vec::new();
        loop {
            let len = code[at..].bytes().take_while(|&b| is_ident(b)).count();
            if len > 0 && code[at + len..].starts_with("::") {
                stem.push(code[at..at + len].to_string());
                at += len + 2;
                continue;
            }
            if len > 0 {
                let mut p = stem.clone();
                p.push(code[at..at + len].to_string());
                out.push((ups, p));
            } else if code[at..].starts_with('{') {
                let close = code[at..].find('}').map_or(code.len(), |c| at + c);
                for item in code[at + 1..close].split(',') {
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    if item.is_empty() {
                        continue;
                    }
                    let mut p = stem.clone();
                    p.extend(item.split("::").map(|s| s.trim().to_string()));
                    out.push((ups, p));
                }
            } else if !stem.is_empty() {
                out.push((ups, stem.clone()));
            }
            break;
        }
    }
    out
}

/// The module each module names (ancestors left out).
fn edges(files: &BTreeMap<String, PathBuf>) -> BTreeMap<String, BTreeSet<String>> {
    let split = |m: &str| -> Vec<String> {
        if m == "crate" {
            Vec::new()
        } else {
            m.split("::").map(str::to_string).collect()
        }
    };
    let resolve = |path: Vec<String>| -> Option<String> {
        let path: Vec<String> = path
            .into_iter()
            .filter(|p| p != "self" && p != "*")
            .collect();
        (0..=path.len()).rev().find_map(|n| {
            let name = if n == 0 {
                "crate".to_string()
            } else {
                path[..n].join("::")
            };
            files.contains_key(&name).then_some(name)
        })
    };
    let mut out = BTreeMap::new();
    for (module, file) in files {
        let code = code(&fs::read_to_string(file).expect("read source"));
        let here = split(module);
        let mut named = BTreeSet::new();
        for (_, p) in paths_from(&code, "crate::") {
            named.extend(resolve(p));
        }
        for (ups, p) in paths_from(&code, "super::") {
            let mut base = here.clone();
            base.truncate(here.len().saturating_sub(ups));
            base.extend(p);
            named.extend(resolve(base));
        }
        // A child named by its own name from its parent: `plan::plan(...)` in config.
        for child in files.keys() {
            let c = split(child);
            if c.len() != here.len() + 1 || c[..here.len()] != here[..] {
                continue;
            }
            let pat = format!("{}::", c[here.len()]);
            let bytes = code.as_bytes();
            let found = code
                .match_indices(&pat)
                .any(|(i, _)| i == 0 || !(is_ident(bytes[i - 1]) || bytes[i - 1] == b':'));
            if found {
                named.insert(child.clone());
            }
        }
        // Itself and its ancestors do not count.
        named.retain(|n| {
            let n = split(n);
            n.len() > here.len() || n[..] != here[..n.len()]
        });
        out.insert(module.clone(), named);
    }
    out
}

/// The strongly connected groups of more than one module (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        for w in t.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.stack.contains(&w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut group = Vec::new();
            while let Some(w) = t.stack.pop() {
                group.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                t.out.push(group);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

#[test]
fn no_module_names_one_that_names_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = module_files(root);
    assert!(files.contains_key("config::plan") && files.contains_key("plugins::http"));
    let edges = edges(&files);
    // The reader sees what it must: a parent's child, a `super::` path, a braced `use`.
    assert!(
        edges["config"].contains("config::plan"),
        "{:?}",
        edges["config"]
    );
    assert!(
        edges["history"].contains("config"),
        "{:?}",
        edges["history"]
    );
    let found = circles(&edges);
    let unexpected: Vec<String> = found
        .iter()
        .filter(|c| {
            !KNOWN
                .iter()
                .any(|k| c.iter().map(String::as_str).eq(k.iter().copied()))
        })
        .map(|c| {
            c.iter()
                .map(|m| {
                    format!(
                        "{m} -> {:?}",
                        edges[m]
                            .intersection(&c.iter().cloned().collect())
                            .collect::<Vec<_>>()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "import circles:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn the_reader_finds_a_circle() {
    // The test above can fail: a made-up tree with one circle through three modules.
    let dir = std::env::temp_dir().join(format!("lvsmon-layout-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for (path, text) in [
        ("src/lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        (
            "src/a/mod.rs",
            "#[cfg(test)]\nmod t;\npub mod inner;\nuse crate::b::X;\n",
        ),
        ("src/a/inner.rs", "use super::super::c::{Y, Z};\n"),
        (
            "src/b.rs",
            "pub struct X;\nfn f() { crate::a::inner::g(); }\n",
        ),
        (
            "src/c.rs",
            "// use crate::a::nothing;\nuse crate::a::Thing;\n",
        ),
        ("plugins/mod.rs", ""),
    ] {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, text).expect("write");
    }
    let edges = edges(&module_files(&dir));
    let _ = fs::remove_dir_all(&dir);
    assert_eq!(circles(&edges), [vec!["a", "a::inner", "b", "c"]]);
    // A child naming its parent alone is no circle.
    assert!(!edges["a::inner"].contains("a"));
}
