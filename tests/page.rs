//! The status page on the metrics address (`/`, `/virtual/ID`, `/status.json`): the real
//! `lvsmon` binary checking real servers on loopback that are up, down, drained, flapping,
//! and one hostile server whose failure detail is markup. The pages are parsed by html5lib
//! (as browsers parse) and their figures checked against `lvsmon status --json`; Debian's
//! headless Chromium renders them (a screenshot that is not blank, a DOM that holds every
//! real and the hostile detail as text, the page's own script allowed by the CSP and
//! refreshing from `/status.json`).
//!
//! Needs /usr/bin/python3 with html5lib and Pillow, and chromium (`.ci/install`): without
//! them the tests say so and pass, except under `CI=true`, where they fail.
//!
//! `LVSMON_PAGE_SHOTS=DIR` keeps Chromium's screenshots in DIR (`status-overview.png`,
//! `status-virtual.png`); README's `docs/status-overview.png` is one.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::lvsmon::{Lvsmon, TempDir};
use common::{Backend, Script};

const S: Duration = Duration::from_secs(1);
const PY: &str = "/usr/bin/python3";
/// What the hostile server greets with: a failure detail that is markup and quotes.
const HOSTILE: &str = "<script>alert(\"x\")</script>'&amp;";

/// Whether a tool the test needs is there; without it: a failure under `CI=true`, else a
/// note and a skip.
fn have(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{what} missing: run `bash .ci/install` (as root)");
    }
    eprintln!("SKIP: {what} missing (bash .ci/install installs it)");
    false
}

fn python_has(module: &str) -> bool {
    Command::new(PY)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The scene: one virtual service with reals up, down, drained and flapping, one with the
/// hostile server; the flapping server's answer changes on a thread until `stop`.
struct Scene {
    d: Lvsmon,
    maddr: SocketAddr,
    reals: Vec<String>,
    hostile: String,
    _backends: Vec<Backend>,
    _flap: Arc<Backend>,
    stop: Arc<AtomicBool>,
    flapper: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.flapper.take() {
            let _ = h.join();
        }
    }
}

const VIRT: &str = "tcp:127.77.2.1:80";

fn scene() -> Scene {
    let up = Backend::start(Script::http(200, "OK"));
    let down = Backend::start(Script::http(503, "no"));
    let drained = Backend::start(Script::http(200, "OK"));
    let flap = Arc::new(Backend::start(Script::http(200, "OK")));
    let hostile = Backend::start(Script::banner(HOSTILE));
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\nvirtual tcp 127.77.2.1:80 {{\n  check http\n  quorum 2\n  sorry 127.0.0.1:9\n  real {} weight 3\n  real {}\n  real {} weight 2\n  real {}\n}}\nvirtual tcp 127.77.2.2:25 {{\n  check banner --expect \"220 \"\n  real {}\n}}\n",
        up.addr(),
        down.addr(),
        drained.addr(),
        flap.addr(),
        hostile.addr()
    );
    let mut d = Lvsmon::start(&conf, &["--metrics", "127.0.0.1:0"]);
    let maddr = d.metrics_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let stop = stop.clone();
        let flap = flap.clone();
        std::thread::spawn(move || {
            let scripts = [Script::http(503, "no"), Script::http(200, "OK")];
            let end = Instant::now() + 60 * S;
            let mut k = 0;
            while !stop.load(Relaxed) && Instant::now() < end {
                flap.set_script(scripts[k % 2].clone());
                k += 1;
                std::thread::sleep(Duration::from_millis(450));
            }
        })
    };
    let drained_addr = drained.addr().to_string();
    d.wait_seen(&["event=up", &format!("real={drained_addr}")], 5 * S);
    let (code, out, err) = d.client(&["drain", &drained_addr]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.wait_seen(&["event=down", &format!("real={}", down.addr())], 5 * S);
    d.wait_seen(&["event=down", &format!("real={}", hostile.addr())], 5 * S);
    // The flapping server has gone down and up again.
    let flap_real = format!("real={}", flap.addr());
    let t = Instant::now();
    while d.count(&["event=up", &flap_real]) < 2 && t.elapsed() < 10 * S {
        d.collect_for(Duration::from_millis(200));
    }
    assert!(
        d.count(&["event=down", &flap_real]) >= 1,
        "the flapping server never went down"
    );
    Scene {
        reals: [&up, &down, &drained, &*flap]
            .iter()
            .map(|b| b.addr().to_string())
            .collect(),
        hostile: hostile.addr().to_string(),
        maddr,
        d,
        _backends: vec![up, down, drained, hostile],
        _flap: flap,
        stop,
        flapper: Some(flapper),
    }
}

/// `GET path` on the metrics address: (head, body).
fn get(maddr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(maddr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: lvsmon\r\n\r\n").unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    let r = String::from_utf8(r).expect("the page is UTF-8");
    let (h, b) = r.split_once("\r\n\r\n").expect("a head");
    (h.to_string(), b.to_string())
}

/// Runs Python `code` with `args`; returns its standard output, asserting success.
fn python(code: &str, args: &[&Path]) -> String {
    let out = Command::new(PY)
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Parses the pages with html5lib (strict: any parse error fails) and checks their figures
/// against `lvsmon status --json` taken before and after (a figure that moves must lie
/// between the two), and `/status.json` against the same.
const CHECK: &str = r#"
import html5lib, json, sys
before, after, served = (json.load(open(p)) for p in sys.argv[1:4])
pages = sys.argv[4:]
key = lambda r: r["virtual"] + " " + r["real"]
B = {key(r): r for r in before}; A = {key(r): r for r in after}
fail = []
# /status.json is what `status --json` prints: the same rows, the same fields.
if [key(r) for r in served] != [key(r) for r in before]:
    fail.append("status.json rows differ: %s" % [key(r) for r in served])
for r in served:
    b, a = B[key(r)], A[key(r)]
    if set(r) != set(b): fail.append("status.json fields %s" % sorted(r))
    if not b["checks"] <= r["checks"] <= a["checks"]: fail.append("status.json checks %s" % key(r))
    if b["transitions"] == a["transitions"] and r["state"] != b["state"]: fail.append("status.json state %s" % key(r))
    if b["last_detail"] == a["last_detail"] and r["last_detail"] != b["last_detail"]: fail.append("status.json detail %s" % key(r))
seen = set()
for path in pages:
    p = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    doc = p.parse(open(path, "rb").read())
    text = lambda e: "".join(e.itertext()).strip()
    scripts = doc.findall(".//script")
    if len(scripts) != 1: fail.append("%s: %d script elements" % (path, len(scripts)))
    for tr in doc.iter("tr"):
        k = tr.get("data-r")
        if k is None: continue
        seen.add(k)
        cell = {c: text(td) for td in tr.findall("td") for c in td.get("class", "").split() if c in ("w", "ck", "fl", "rs", "dt")}
        st = text(tr.find(".//span"))
        b, a = B[k], A[k]
        stable = b["transitions"] == a["transitions"] and b["state"] == a["state"]
        if stable and st != b["state"]: fail.append("%s %s: state %s, status says %s" % (path, k, st, b["state"]))
        if st not in (b["state"], a["state"], "up", "down"): fail.append("%s %s: state %s" % (path, k, st))
        w = cell["w"]
        if stable and w != (str(b["weight"]) if b["weight"] is not None else "\u2014"): fail.append("%s %s: weight %s, status says %s" % (path, k, w, b["weight"]))
        for c, f in (("ck", "checks"), ("fl", "failures")):
            if not b[f] <= int(cell[c]) <= a[f]: fail.append("%s %s: %s %s not within %s..%s" % (path, k, f, cell[c], b[f], a[f]))
        if stable and cell["rs"] != (b["last_reason"] or ""): fail.append("%s %s: reason %r, status says %r" % (path, k, cell["rs"], b["last_reason"]))
        if stable and cell["dt"] != (b["last_detail"] or "") and b["last_reason"]: fail.append("%s %s: detail %r, status says %r" % (path, k, cell["dt"], b["last_detail"]))
        if len(tr.findall(".//{http://www.w3.org/2000/svg}svg")) != 2: fail.append("%s %s: sparklines" % (path, k))
    for tr in doc.iter("tr"):
        v = tr.get("data-v")
        if v is None: continue
        n = {s: int(text(tr.find(".//span[@class='n-%s']" % s))) for s in ("up", "down", "drained", "unknown")}
        rows = [r for r in before if r["virtual"] == v]
        if sum(n.values()) != len(rows): fail.append("%s %s: counts %s for %d reals" % (path, v, n, len(rows)))
        drained = sum(r["state"] == "drained" for r in rows)
        if n["drained"] != drained: fail.append("%s %s: %d drained, status says %d" % (path, v, n["drained"], drained))
if seen != set(B): fail.append("reals on the pages: %s, in status: %s" % (sorted(seen), sorted(B)))
print("\n".join(fail) or "ok")
"#;

#[test]
fn pages_parse_and_agree_with_status_json() {
    if !have(
        "/usr/bin/python3 with html5lib (python3-html5lib)",
        python_has("html5lib"),
    ) {
        return;
    }
    let mut sc = scene();
    let dir = TempDir::new("page");
    let status = |sc: &Lvsmon| {
        let (code, out, err) = sc.client(&["status", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        out
    };
    let before = dir.file("before.json", &status(&sc.d));
    let (head, overview) = get(sc.maddr, "/");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'; script-src 'sha256-"),
        "{head}"
    );
    let (vhead, virt) = get(sc.maddr, &format!("/virtual/{VIRT}"));
    assert!(vhead.starts_with("HTTP/1.1 200 OK"), "{vhead}");
    // Percent-encoded as a browser may send it: the same virtual.
    let (h2, _) = get(sc.maddr, "/virtual/tcp%3A127.77.2.1%3A80?page=1");
    assert!(h2.starts_with("HTTP/1.1 200 OK"), "{h2}");
    let (jhead, json) = get(sc.maddr, "/status.json");
    assert!(jhead.contains("Content-Type: application/json"), "{jhead}");
    let (hhead, hostile_page) = get(sc.maddr, "/virtual/tcp:127.77.2.2:25");
    assert!(hhead.starts_with("HTTP/1.1 200 OK"), "{hhead}");
    let after = dir.file("after.json", &status(&sc.d));
    let served = dir.file("served.json", &json);
    let pages: Vec<_> = [
        ("o.html", &overview),
        ("v.html", &virt),
        ("h.html", &hostile_page),
    ]
    .iter()
    .map(|(n, t)| dir.file(n, t))
    .collect();
    let mut args = vec![before.as_path(), after.as_path(), served.as_path()];
    args.extend(pages.iter().map(|p| p.as_path()));
    let verdict = python(CHECK, &args);
    assert_eq!(verdict.trim(), "ok", "{verdict}\n{overview}");

    // The hostile detail is text, escaped; no markup of the server's reaches the page.
    for page in [&overview, &hostile_page] {
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#39;&amp;amp;"),
            "{page}"
        );
        assert!(!page.contains("<script>alert"), "{page}");
        assert_eq!(page.matches("<script").count(), 1, "{page}");
    }
    assert!(
        json.contains("\\u003cscript\\u003ealert('x')\\u003c/script\\u003e'\\u0026amp;"),
        "{json}"
    );
    // Every real on the overview and on its virtual's page.
    for r in sc.reals.iter().chain([&sc.hostile]) {
        assert!(overview.contains(&format!(">{r}</td>")), "{r} not on /");
    }
    for r in &sc.reals {
        assert!(
            virt.contains(&format!(">{r}</td>")),
            "{r} not on /virtual/{VIRT}"
        );
    }
    // With scripts off the pages are whole as served (what html5lib read above) and reload
    // themselves.
    for page in [&overview, &virt] {
        assert!(
            page.contains("<noscript><meta http-equiv=\"refresh\" content=\"30\"></noscript>"),
            "no reload without script: {page}"
        );
    }
    // Read-only and bounded: no form, no method but GET and HEAD; pages that do not exist.
    assert!(!overview.contains("<form") && !virt.contains("<form"));
    let (h, _) = get(sc.maddr, "/?page=2");
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (h, _) = get(sc.maddr, "/virtual/tcp:127.77.2.1:80?page=2");
    assert!(h.starts_with("HTTP/1.1 404"), "{h}");
    let (h, b) = get(sc.maddr, "/virtual/%3Cscript%3E");
    assert!(
        h.starts_with("HTTP/1.1 404") && !b.contains("<script"),
        "{h}{b}"
    );
    let mut s = TcpStream::connect(sc.maddr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    let mut s = TcpStream::connect(sc.maddr).unwrap();
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(b"HEAD / HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    let _ = s.read_to_string(&mut r);
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    sc.d.stop();
}

/// Runs chromium headless with `args` and `url`, bounded in time, killed by its process
/// group; returns its standard output.
fn chromium(profile: &Path, args: &[&str], url: &str) -> String {
    let out_path = profile.join("stdout");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1400,900",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start chromium");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed() > 90 * S {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its helpers share its process group: end them all, by that group's id.
    // SAFETY: kill(2) on the process group this test started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    assert!(
        status.is_some_and(|s| s.success()),
        "chromium {args:?} {url}: {status:?} after {:?}",
        t.elapsed()
    );
    std::fs::read_to_string(out_path).unwrap()
}

/// Distinct colours in a PNG, and the share of its commonest colour.
const COLOURS: &str = r#"
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("RGB")
cs = im.getcolors(1 << 24)
print(len(cs), max(c for c, _ in cs) / (im.width * im.height), im.width, im.height)
"#;

#[test]
fn chromium_renders_the_pages() {
    let chromium_there = Command::new("chromium")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have("chromium", chromium_there)
        || !have(
            "/usr/bin/python3 with Pillow (python3-pil)",
            python_has("PIL"),
        )
    {
        return;
    }
    let mut sc = scene();
    let dir = TempDir::new("chromium");
    let keep = std::env::var_os("LVSMON_PAGE_SHOTS");
    for (name, path) in [
        ("overview", "/".to_string()),
        ("virtual", format!("/virtual/{VIRT}")),
    ] {
        let url = format!("http://{}{path}", sc.maddr);
        let shot = dir.0.join(format!("{name}.png"));
        chromium(&dir.0, &[&format!("--screenshot={}", shot.display())], &url);
        let c = python(COLOURS, &[&shot]);
        let f: Vec<f64> = c.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!((f[2], f[3]), (1400.0, 900.0), "{name}: {c}");
        // A blank page is one colour; this one has text, coloured states and bars.
        assert!(f[0] >= 50.0 && f[1] < 0.97, "{name} looks blank: {c}");
        if let Some(k) = &keep {
            std::fs::copy(&shot, Path::new(k).join(format!("status-{name}.png"))).unwrap();
        }
        // The DOM as the browser built it from the page, and again once the script has
        // refreshed it from /status.json (virtual time runs its timer at once): each holds
        // every real, the hostile detail as text, and only the page's own script.
        let first = chromium(&dir.0, &["--dump-dom"], &url);
        let later = chromium(&dir.0, &["--dump-dom", "--virtual-time-budget=15000"], &url);
        assert!(
            first.contains("data-script=\"on\""),
            "{name}: the page's script did not run (CSP?):\n{first}"
        );
        // The "as of" line says "updated" once a refresh went through (the script's own
        // text has the word too: look for it in the element).
        assert!(
            later.contains("class=\"asof dim\">updated "),
            "{name}: the script did not refresh from /status.json:\n{later}"
        );
        for dom in [&first, &later] {
            assert_eq!(dom.matches("<script").count(), 1, "{name}: {dom}");
            for r in &sc.reals {
                assert!(dom.contains(&format!(">{r}</td>")), "{name}: {r} missing");
            }
            for st in ["up", "down", "drained"] {
                assert!(
                    dom.contains(&format!(">{st}</span>")),
                    "{name}: no {st} real"
                );
            }
            if name == "overview" {
                assert!(dom.contains(&format!(">{}</td>", sc.hostile)));
                assert!(
                    dom.contains("&lt;script&gt;alert('x')&lt;/script&gt;'&amp;amp;"),
                    "the hostile detail is not text: {dom}"
                );
                assert!(!dom.contains("<script>alert"), "{dom}");
            }
        }
    }
    sc.d.stop();
}
