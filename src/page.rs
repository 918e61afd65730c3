//! The status page on the metrics address (lvsmon(8), STATUS PAGE): `/`, the director at a
//! glance, one row per virtual service opening to its reals; `/virtual/ID`, one virtual's
//! reals with two days of hour history drawn; `/status.json`, what `lvsmon status --json`
//! prints. Read-only: nothing here changes the daemon.
//!
//! Like every reply of the metrics server, a page streams through its connection's output
//! buffer (allocated once at startup, [`crate::control::OUT_CAP`]) piece by piece from a
//! cursor: the cursor counts pieces, each piece (the head, a virtual's row, a real's row) is
//! formatted into [`crate::control::Reply`]'s stack buffer and copied out whole. Nothing
//! allocates, and sizes are bounded whatever the configuration: the overview shows at most
//! [`VIRTUALS_PER_PAGE`] virtuals (`/?page=N` for more) and [`REALS_INLINE`] reals under
//! each; `/virtual/ID` shows [`REALS_PER_PAGE`] reals a page (`?page=N`).
//!
//! Everything that comes from the configuration or from a server (a failure's detail is a
//! server's bytes) is escaped for where it goes: HTML text and attributes here, JSON strings
//! in `/status.json`. The page's one inline script and one style sheet are allowed by hash in
//! its `Content-Security-Policy`, and nothing else is.

use std::io::{Cursor, Write};

use crate::clock::Time;
use crate::control::{key_text, parse_virtual, Reply, Route};
use crate::history::{History, Level};
use crate::monitor::health::State;
use crate::table::Table;

/// Virtual services on one page of the overview.
pub const VIRTUALS_PER_PAGE: usize = 50;
/// Reals listed under each virtual service on the overview (the rest: `/virtual/ID`).
pub const REALS_INLINE: usize = 20;
/// Reals on one page of `/virtual/ID`.
pub const REALS_PER_PAGE: usize = 100;
/// Seconds between the script's fetches of `/status.json`.
pub const REFRESH_SECS: u32 = 10;
/// Seconds between full reloads when scripts are off (`<noscript>` meta refresh).
pub const NOSCRIPT_REFRESH_SECS: u32 = 30;

/// Minute buckets a sparkline draws (the last hour).
const SPARK_SLOTS: usize = 60;
/// Hour buckets the `/virtual/ID` charts draw (two days).
const DAY2_SLOTS: usize = 48;

// ----- escaping -------------------------------------------------------------------------------

/// Writes `s` as HTML text or a quoted attribute value: `& < > " '` as character references.
pub fn html(w: &mut impl Write, s: &[u8]) -> std::io::Result<()> {
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            0..=0x08 | 0x0b | 0x0c | 0x0e..=0x1f | 0x7f => b"\xef\xbf\xbd",
            _ => continue,
        };
        w.write_all(&s[from..i])?;
        w.write_all(rep)?;
        from = i + 1;
    }
    w.write_all(&s[from..])
}

/// Writes `s` as the inside of a JSON string: `"`, `\` and control bytes escaped, and `<`,
/// `>`, `&` as `\u00XX` so the text is inert even if something treats it as HTML.
pub fn json(w: &mut impl Write, s: &[u8]) -> std::io::Result<()> {
    let mut from = 0;
    for (i, &b) in s.iter().enumerate() {
        if !(b < 0x20
            || b == b'"'
            || b == b'\\'
            || b == b'<'
            || b == b'>'
            || b == b'&'
            || b == 0x7f)
        {
            continue;
        }
        w.write_all(&s[from..i])?;
        match b {
            b'"' => w.write_all(b"\\\"")?,
            b'\\' => w.write_all(b"\\\\")?,
            b'\n' => w.write_all(b"\\n")?,
            _ => write!(w, "\\u{:04x}", b)?,
        }
        from = i + 1;
    }
    w.write_all(&s[from..])
}

/// Writes `s` percent-encoded for a URL path segment (unreserved bytes and `:` as they are).
fn url(w: &mut impl Write, s: &[u8]) -> std::io::Result<()> {
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            w.write_all(&[b])?;
        } else {
            write!(w, "%{b:02X}")?;
        }
    }
    Ok(())
}

/// Percent-decodes `s` into `buf`; `None` when it does not fit or is malformed.
fn unpercent<'a>(s: &[u8], buf: &'a mut [u8; 96]) -> Option<&'a [u8]> {
    let (mut i, mut n) = (0, 0);
    while i < s.len() {
        let b = if s[i] == b'%' {
            let h = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            i += 3;
            u8::from_str_radix(h, 16).ok()?
        } else {
            i += 1;
            s[i - 1]
        };
        *buf.get_mut(n)? = b;
        n += 1;
    }
    Some(&buf[..n])
}

// ----- the Content-Security-Policy's hashes ---------------------------------------------------

/// SHA-256 of `m`, at compile time (for the CSP hashes of the inline script and style).
const fn sha256(m: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let blocks = (m.len() + 9).div_ceil(64);
    let mut blk = 0;
    while blk < blocks {
        let mut w = [0u32; 64];
        let mut t = 0;
        while t < 16 {
            let mut word = 0u32;
            let mut k = 0;
            while k < 4 {
                let i = blk * 64 + t * 4 + k;
                let byte = if i < m.len() {
                    m[i]
                } else if i == m.len() {
                    0x80
                } else if i >= blocks * 64 - 8 {
                    ((m.len() as u64 * 8) >> ((blocks * 64 - 1 - i) * 8)) as u8
                } else {
                    0
                };
                word = (word << 8) | byte as u32;
                k += 1;
            }
            w[t] = word;
            t += 1;
        }
        while t < 64 {
            let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
            let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16]
                .wrapping_add(s0)
                .wrapping_add(w[t - 7])
                .wrapping_add(s1);
            t += 1;
        }
        let mut v = h;
        t = 0;
        while t < 64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[t])
                .wrapping_add(w[t]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
            t += 1;
        }
        let mut i = 0;
        while i < 8 {
            h[i] = h[i].wrapping_add(v[i]);
            i += 1;
        }
        blk += 1;
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (h[i / 4] >> (24 - 8 * (i % 4))) as u8;
        i += 1;
    }
    out
}

/// Base64 (standard alphabet, padded) of a SHA-256 digest: 44 characters.
const fn base64_32(d: [u8; 32]) -> [u8; 44] {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = [b'='; 44];
    let mut i = 0;
    let mut o = 0;
    while i < 33 {
        let b0 = d[i] as u32;
        let b1 = if i + 1 < 32 { d[i + 1] as u32 } else { 0 };
        let b2 = if i + 2 < 32 { d[i + 2] as u32 } else { 0 };
        let n = (b0 << 16) | (b1 << 8) | b2;
        out[o] = A[(n >> 18) as usize & 63];
        out[o + 1] = A[(n >> 12) as usize & 63];
        if i + 1 < 32 {
            out[o + 2] = A[(n >> 6) as usize & 63];
        }
        if i + 2 < 32 {
            out[o + 3] = A[n as usize & 63];
        }
        i += 3;
        o += 4;
    }
    out
}

/// The page's style sheet (allowed by its hash).
const STYLE: &str = "body{font:14px/1.35 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1em 0 .3em}\
table{border-collapse:collapse;margin:.3em 0}th,td{padding:.2em .5em;text-align:left;vertical-align:middle}\
th{background:#e8e8e8;font-weight:600}tr.v>td{border-top:1px solid #ccc}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
.st{font-weight:600;border-radius:3px;padding:.1em .4em}\
.st-up{background:#d4f4d4;color:#0a5a0a}.st-down{background:#fbd3d3;color:#8a0d0d}\
.st-drained{background:#fde9c0;color:#7a4a00}.st-unknown{background:#e4e4e4;color:#444}\
.bad{color:#8a0d0d;font-weight:600}.dim{color:#777}details>summary{cursor:pointer;color:#225}\
table.reals{margin-left:1.5em;font-size:.95em}table.reals td{border-top:1px solid #eee}\
code,.mono{font-family:ui-monospace,monospace}nav a{margin-right:1em}\
svg{vertical-align:middle}td.sp{white-space:nowrap}";

/// The page's script: every [`REFRESH_SECS`] it fetches `/status.json` and updates the
/// cells it finds (text only, never markup), without reloading the page.
const SCRIPT: &str = "document.documentElement.dataset.script='on';\
const R=new Map([...document.querySelectorAll('tr[data-r]')].map(t=>[t.dataset.r,t]));\
const put=(t,c,s)=>{const e=t.querySelector('.'+c);if(e)e.textContent=s};\
const age=s=>s>=86400?Math.floor(s/86400)+'d':s>=3600?Math.floor(s/3600)+'h':s>=60?Math.floor(s/60)+'m':s+'s';\
async function tick(){try{const rs=await(await fetch('/status.json',{cache:'no-store'})).json();const n=new Map();\
for(const x of rs){const c=n.get(x.virtual)||{up:0,down:0,drained:0,unknown:0};c[x.state]++;n.set(x.virtual,c);\
const t=R.get(x.virtual+' '+x.real);if(!t)continue;const s=t.querySelector('.st');\
if(s){s.textContent=x.state;s.className='st st-'+x.state}put(t,'for',age(x.since_seconds));\
put(t,'w',x.weight===null?'\\u2014':String(x.weight));put(t,'rs',x.last_reason||'');put(t,'dt',x.last_detail||'');\
put(t,'lat',(x.last_latency_seconds*1000).toFixed(1)+' ms');put(t,'ck',String(x.checks));put(t,'fl',String(x.failures))}\
for(const v of document.querySelectorAll('tr[data-v]')){const c=n.get(v.dataset.v);if(!c)continue;\
for(const k of ['up','down','drained','unknown'])put(v,'n-'+k,String(c[k]))}\
put(document,'asof','updated '+new Date().toLocaleTimeString())}catch(e){}setTimeout(tick,REFRESH)}\
setTimeout(tick,REFRESH);";

/// [`SCRIPT`] with its refresh period in place of `REFRESH` (ms), built at compile time.
const SCRIPT_TEXT: &str = {
    const fn patched() -> [u8; SCRIPT.len() + 2 * 5 - 2 * 7] {
        // "REFRESH" (7 bytes) → "10000" (5 bytes), twice.
        let s = SCRIPT.as_bytes();
        let mut out = [0u8; SCRIPT.len() + 2 * 5 - 2 * 7];
        let ms = REFRESH_SECS * 1000;
        let digits = [
            b'0' + (ms / 10000 % 10) as u8,
            b'0' + (ms / 1000 % 10) as u8,
            b'0' + (ms / 100 % 10) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ];
        let (mut i, mut o) = (0, 0);
        while i < s.len() {
            if i + 7 <= s.len()
                && s[i] == b'R'
                && s[i + 1] == b'E'
                && s[i + 2] == b'F'
                && s[i + 3] == b'R'
                && s[i + 4] == b'E'
                && s[i + 5] == b'S'
                && s[i + 6] == b'H'
            {
                let mut k = 0;
                while k < 5 {
                    out[o + k] = digits[k];
                    k += 1;
                }
                i += 7;
                o += 5;
            } else {
                out[o] = s[i];
                i += 1;
                o += 1;
            }
        }
        out
    }
    const B: [u8; SCRIPT.len() + 2 * 5 - 2 * 7] = patched();
    match std::str::from_utf8(&B) {
        Ok(s) => s,
        Err(_) => panic!("script is not UTF-8"),
    }
};
// Five digits of milliseconds.
const _: () = assert!(REFRESH_SECS * 1000 >= 10_000 && REFRESH_SECS * 1000 < 100_000);

const SCRIPT_HASH: [u8; 44] = base64_32(sha256(SCRIPT_TEXT.as_bytes()));
const STYLE_HASH: [u8; 44] = base64_32(sha256(STYLE.as_bytes()));

/// Writes the head of a page's reply: status, type, and the security headers.
fn http_head(w: &mut impl Write, status: &str, html_page: bool) -> std::io::Result<()> {
    write!(w, "HTTP/1.1 {status}\r\n")?;
    if html_page {
        w.write_all(b"Content-Type: text/html; charset=utf-8\r\nContent-Security-Policy: default-src 'none'; script-src 'sha256-")?;
        w.write_all(&SCRIPT_HASH)?;
        w.write_all(b"'; style-src 'sha256-")?;
        w.write_all(&STYLE_HASH)?;
        w.write_all(b"'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n")?;
    } else {
        w.write_all(b"Content-Type: application/json\r\nContent-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n")?;
    }
    w.write_all(b"X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n")
}

/// Writes the document's start: doctype, head with title, style and the no-script refresh.
fn doc_start(w: &mut impl Write, title: &[u8]) -> std::io::Result<()> {
    write!(w, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>")?;
    html(w, title)?;
    write!(w, "</title><noscript><meta http-equiv=\"refresh\" content=\"{NOSCRIPT_REFRESH_SECS}\"></noscript><style>{STYLE}</style></head>\n<body>")
}

/// Writes the document's end: the script and the closing tags.
fn doc_end(w: &mut impl Write) -> std::io::Result<()> {
    write!(w, "<p class=\"dim\">Read-only. Drain and undrain are on the control socket (<code>lvsmon drain</code>). Also: <a href=\"/status.json\">/status.json</a>, <a href=\"/metrics\">/metrics</a>.</p>\n<script>{SCRIPT_TEXT}</script>\n</body></html>\n")
}

// ----- drawing --------------------------------------------------------------------------------

/// One slot of a chart: results folded over a group of reals.
#[derive(Clone, Copy, Default)]
struct Slot {
    checks: u64,
    failures: u64,
    lat_sum: u64,
}

/// Buckets of `reals` over `n` slots of `width` seconds ending with the one holding `now`,
/// from minute or hour history (finer buckets fold into their slot; coarser ones are not
/// drawn). Stack only.
fn slots<const N: usize>(
    history: &History,
    reals: std::ops::Range<usize>,
    width: u64,
    now: u64,
) -> [Slot; N] {
    let mut out = [Slot::default(); N];
    let first = (now / width + 1).saturating_sub(N as u64);
    let since = first * width;
    history.series(reals, since, now, &mut |b| {
        if b.level == Level::Raw || b.level.width() > width {
            return;
        }
        let k = (b.start / width).saturating_sub(first) as usize;
        if let Some(s) = out.get_mut(k) {
            s.checks += b.checks;
            s.failures += b.failures;
            s.lat_sum += u64::from(b.mean_us) * b.checks;
        }
    });
    out
}

/// Writes an availability sparkline and a latency sparkline for `slots`, `px` pixels per
/// slot, `h` high.
fn sparks(
    w: &mut impl Write,
    slots: &[Slot],
    px: usize,
    h: u32,
    what: &str,
) -> std::io::Result<()> {
    let width = slots.len() * px;
    let max_lat = slots
        .iter()
        .filter(|s| s.checks > 0)
        .map(|s| s.lat_sum / s.checks)
        .max()
        .unwrap_or(0)
        .max(1);
    let inner = h - 2;
    for kind in 0..2 {
        let (stroke, label) = if kind == 0 {
            ("#1a7f37", "availability")
        } else {
            ("#2457c5", "mean latency")
        };
        write!(w, "<svg width=\"{width}\" height=\"{h}\" viewBox=\"0 0 {width} {h}\" role=\"img\" aria-label=\"{label}, {what}\"><rect width=\"{width}\" height=\"{h}\" fill=\"#f0f0f0\"/>")?;
        if kind == 1 {
            // The scale's top, as a tooltip.
            write!(
                w,
                "<title>{label}, {what}; top {:.1} ms</title>",
                max_lat as f64 / 1000.0
            )?;
        } else {
            write!(w, "<title>{label}, {what}</title>")?;
        }
        let mut started = false;
        write!(
            w,
            "<path fill=\"none\" stroke=\"{stroke}\" stroke-width=\"1.5\" d=\""
        )?;
        let mut fails = false;
        for (i, s) in slots.iter().enumerate() {
            if s.checks == 0 {
                started = false;
                continue;
            }
            fails |= s.failures > 0;
            let frac = if kind == 0 {
                (s.checks - s.failures) as f64 / s.checks as f64
            } else {
                1.0 - (s.lat_sum / s.checks) as f64 / max_lat as f64
            };
            let y = 1 + ((1.0 - frac) * f64::from(inner)).round() as u32;
            write!(w, "{}{},{y}h{px}", if started { "L" } else { "M" }, i * px)?;
            started = true;
        }
        w.write_all(b"\"/>")?;
        if kind == 0 && fails {
            // Slots with failures, marked along the bottom.
            write!(w, "<path stroke=\"#c62828\" stroke-width=\"2\" d=\"")?;
            for (i, s) in slots.iter().enumerate() {
                if s.failures > 0 {
                    write!(w, "M{},{h}h{px}", i * px)?;
                }
            }
            w.write_all(b"\"/>")?;
        }
        w.write_all(b"</svg> ")?;
    }
    Ok(())
}

/// The bar of a virtual's reals by state.
fn bar(w: &mut impl Write, c: &Counts) -> std::io::Result<()> {
    let total = c.total().max(1);
    let width = 120u32;
    write!(w, "<svg width=\"{width}\" height=\"12\" viewBox=\"0 0 {width} 12\" role=\"img\" aria-label=\"reals by state\"><rect width=\"{width}\" height=\"12\" fill=\"#e4e4e4\"/>")?;
    let mut x = 0u32;
    for (n, fill) in [
        (c.up, "#2e9e44"),
        (c.drained, "#e0a020"),
        (c.down, "#d32f2f"),
    ] {
        let wpx = (u64::from(n) * u64::from(width) / u64::from(total)) as u32;
        if wpx > 0 {
            write!(
                w,
                "<rect x=\"{x}\" width=\"{wpx}\" height=\"12\" fill=\"{fill}\"/>"
            )?;
        }
        x += wpx;
    }
    w.write_all(b"</svg>")
}

// ----- figures --------------------------------------------------------------------------------

/// A virtual's reals by state (a drained real counts as drained whatever its checks say).
#[derive(Default)]
struct Counts {
    up: u32,
    down: u32,
    drained: u32,
    unknown: u32,
}

impl Counts {
    fn total(&self) -> u32 {
        self.up + self.down + self.drained + self.unknown
    }
}

/// Writes an availability (0.0..=1.0) as a percentage, or a dash without results.
fn percent(w: &mut impl Write, a: Option<f64>) -> std::io::Result<()> {
    match a {
        Some(a) if (0.99..0.999_995).contains(&a) => write!(w, "{:.2} %", a * 100.0),
        Some(a) => write!(w, "{:.1} %", a * 100.0),
        None => w.write_all("\u{2014}".as_bytes()),
    }
}

/// Writes a duration in seconds as `3d`, `4h`, `12m`, `5s` (as the script does).
fn age(w: &mut impl Write, s: u64) -> std::io::Result<()> {
    match s {
        86_400.. => write!(w, "{}d", s / 86_400),
        3600.. => write!(w, "{}h", s / 3600),
        60.. => write!(w, "{}m", s / 60),
        _ => write!(w, "{s}s"),
    }
}

/// What the pages show: the daemon's state, borrowed for one reply's piece.
pub(crate) struct Sources<'a> {
    /// The reals and virtual services.
    pub table: &'a Table,
    /// Every real's check history.
    pub history: &'a History,
    /// Unix time (µs) at daemon time zero.
    pub wall_origin_us: u64,
}

impl Sources<'_> {
    fn counts(&self, v: usize) -> Counts {
        let (a, b) = self.table.virtuals()[v].reals;
        let mut c = Counts::default();
        for r in &self.table.reals()[a as usize..b as usize] {
            match (r.drained, r.health.state) {
                (true, _) => c.drained += 1,
                (false, State::Up) => c.up += 1,
                (false, State::Down) => c.down += 1,
                (false, State::Unknown) => c.unknown += 1,
            }
        }
        c
    }

    fn now_unix(&self, now: Time) -> u64 {
        (self.wall_origin_us + now.0) / 1_000_000
    }

    /// A virtual's ID as the logs write it, HTML-escaped.
    fn vid(&self, w: &mut impl Write, v: usize) -> std::io::Result<()> {
        let mut b = [0u8; 80];
        html(w, key_text(self.table.virtuals()[v].key, &mut b).as_bytes())
    }

    /// `/virtual/ID` for virtual `v`, page `page` (1 for the first).
    fn vlink(&self, w: &mut impl Write, v: usize, page: usize) -> std::io::Result<()> {
        let mut b = [0u8; 80];
        w.write_all(b"/virtual/")?;
        url(w, key_text(self.table.virtuals()[v].key, &mut b).as_bytes())?;
        if page > 1 {
            write!(w, "?page={page}")?;
        }
        Ok(())
    }

    /// The header of a reals table.
    fn reals_head(&self, w: &mut impl Write, history_what: &str) -> std::io::Result<()> {
        write!(w, "<table class=\"reals\"><thead><tr><th>Real</th><th>State</th><th>For</th><th class=\"n\">Weight</th><th>Weight from</th><th>Last failure</th><th>Detail</th><th class=\"n\">Latency</th><th class=\"n\">Checks</th><th class=\"n\">Failures</th><th class=\"n\">Transitions</th><th>{history_what}</th></tr></thead><tbody>")
    }

    /// One real's row; `day2` draws two days of hour history instead of an hour of minutes.
    fn real_row(&self, w: &mut impl Write, r: usize, now: Time, day2: bool) -> std::io::Result<()> {
        let real = &self.table.reals()[r];
        let v = real.virt as usize;
        let state = if real.drained {
            "drained"
        } else {
            real.health.state.as_str()
        };
        write!(w, "<tr data-r=\"")?;
        self.vid(w, v)?;
        write!(w, " {}\"><td class=\"mono\">", real.addr)?;
        let mut ab = [0u8; 64];
        let mut c = Cursor::new(&mut ab[..]);
        let _ = write!(c, "{}", real.addr);
        let n = c.position() as usize;
        html(w, &ab[..n])?;
        write!(
            w,
            "</td><td><span class=\"st st-{state}\">{state}</span></td><td class=\"for\">"
        )?;
        age(w, now.micros_since(real.health.since) / 1_000_000)?;
        w.write_all(b"</td><td class=\"n w\">")?;
        match real.table() {
            Some(wt) => write!(w, "{wt}")?,
            None => w.write_all("\u{2014}".as_bytes())?,
        }
        let configured = self.table.setups()[real.setup as usize].weight;
        let from = match (real.drained, real.health.state, real.table()) {
            (true, _, _) => "drained (0)",
            (_, _, None) => "not in the IPVS table",
            (_, State::Down, _) => "check failing (0)",
            (_, State::Unknown, _) => "kept until the first check",
            (_, State::Up, Some(t)) if t == configured => "configuration",
            (_, State::Up, Some(_)) => "IPVS table (differs from the configuration)",
        };
        write!(
            w,
            "</td><td class=\"dim\">{from}; configured {configured}</td><td class=\"rs bad\">"
        )?;
        if let Some(reason) = real.last_reason {
            html(w, reason.as_str().as_bytes())?;
        }
        w.write_all(b"</td><td class=\"dt mono\">")?;
        if real.last_reason.is_some() {
            html(w, real.last_detail.as_bytes())?;
        }
        let lat = u64::from(real.last_latency_us);
        write!(
            w,
            "</td><td class=\"n lat\">{}.{} ms</td><td class=\"n ck\">{}</td><td class=\"n fl\">{}</td><td class=\"n\">{}</td>",
            lat / 1000,
            lat % 1000 / 100,
            real.checks,
            real.failures,
            real.transitions
        )?;
        w.write_all(b"<td class=\"sp\">")?;
        let now_s = self.now_unix(now);
        if day2 {
            let s = slots::<DAY2_SLOTS>(self.history, r..r + 1, 3600, now_s);
            sparks(w, &s, 3, 20, "last 48 hours")?;
        } else {
            let s = slots::<SPARK_SLOTS>(self.history, r..r + 1, 60, now_s);
            sparks(w, &s, 2, 20, "last 60 minutes")?;
        }
        w.write_all(b"</td></tr>\n")
    }

    /// A virtual's row on the overview (and its heading on `/virtual/ID`, `link` false).
    fn virtual_row(
        &self,
        w: &mut impl Write,
        v: usize,
        now: Time,
        link: bool,
    ) -> std::io::Result<()> {
        let virt = &self.table.virtuals()[v];
        let (a, b) = (virt.reals.0 as usize, virt.reals.1 as usize);
        let c = self.counts(v);
        let now_s = self.now_unix(now);
        write!(w, "<tr class=\"v\" data-v=\"")?;
        self.vid(w, v)?;
        w.write_all(b"\"><td class=\"mono\">")?;
        if link {
            w.write_all(b"<a href=\"")?;
            self.vlink(w, v, 1)?;
            w.write_all(b"\">")?;
            self.vid(w, v)?;
            w.write_all(b"</a>")?;
        } else {
            self.vid(w, v)?;
        }
        write!(w, "</td><td>")?;
        bar(w, &c)?;
        write!(w, " <span class=\"n-up\">{}</span> up, <span class=\"n-down\">{}</span> down, <span class=\"n-drained\">{}</span> drained, <span class=\"n-unknown\">{}</span> unknown</td>", c.up, c.down, c.drained, c.unknown)?;
        let lost = virt.quorum_lost;
        write!(
            w,
            "<td>{} of {}{}</td><td>",
            virt.quorum,
            b - a,
            if lost {
                " <span class=\"bad\">lost</span>"
            } else {
                ""
            }
        )?;
        match virt.sorry {
            Some(s) if virt.sorry_in_table => {
                let mut sb = [0u8; 64];
                let mut cur = Cursor::new(&mut sb[..]);
                let _ = write!(cur, "{s}");
                let n = cur.position() as usize;
                w.write_all(b"<span class=\"bad\">in use: ")?;
                html(w, &sb[..n])?;
                w.write_all(b"</span>")?;
            }
            Some(_) => w.write_all(b"standing by")?,
            None => w.write_all(b"<span class=\"dim\">none</span>")?,
        }
        w.write_all(b"</td><td class=\"n\">")?;
        percent(
            w,
            self.history
                .summary(a..b, now_s.saturating_sub(3600), now_s)
                .availability(),
        )?;
        w.write_all(b"</td><td class=\"n\">")?;
        percent(
            w,
            self.history
                .summary(a..b, now_s.saturating_sub(86_400), now_s)
                .availability(),
        )?;
        w.write_all(b"</td><td class=\"sp\">")?;
        let s = slots::<SPARK_SLOTS>(self.history, a..b, 60, now_s);
        sparks(w, &s, 2, 20, "last 60 minutes")?;
        w.write_all(b"</td></tr>\n")
    }

    /// The director's line: reals by state, and when.
    fn summary_line(&self, w: &mut impl Write, now: Time) -> std::io::Result<()> {
        let mut c = Counts::default();
        for v in 0..self.table.virtuals().len() {
            let k = self.counts(v);
            c.up += k.up;
            c.down += k.down;
            c.drained += k.drained;
            c.unknown += k.unknown;
        }
        write!(w, "<p>{} virtual services, {} real servers: {} up, {} down, {} drained, {} unknown. <span class=\"asof dim\">as of ", self.table.virtuals().len(), c.total(), c.up, c.down, c.drained, c.unknown)?;
        crate::log::write_rfc3339(w, self.now_unix(now))?;
        w.write_all(b"</span></p>\n")
    }

    /// Writes `<nav>` links to pages 1..=pages of `base` (current `page`).
    fn pager(
        &self,
        w: &mut impl Write,
        v: Option<usize>,
        page: usize,
        pages: usize,
        what: &str,
    ) -> std::io::Result<()> {
        if pages <= 1 {
            return Ok(());
        }
        write!(w, "<nav>{what}: page {page} of {pages} ")?;
        for (label, p) in [
            ("first", 1),
            ("previous", page.saturating_sub(1)),
            ("next", page + 1),
            ("last", pages),
        ] {
            if p == 0 || p > pages || p == page {
                continue;
            }
            w.write_all(b"<a href=\"")?;
            match v {
                Some(v) => {
                    self.vlink(w, v, p)?;
                    if p == 1 {
                        w.write_all(b"?page=1")?;
                    }
                }
                None => write!(w, "/?page={p}")?,
            }
            write!(w, "\">{label}</a>")?;
        }
        w.write_all(b"</nav>\n")
    }

    /// The overview, piece `k`: 0 the head; then per virtual on the page its row, its
    /// listed reals and the close; then the end.
    fn overview_piece(
        &self,
        w: &mut Cursor<&mut [u8]>,
        k: u64,
        page: usize,
        now: Time,
    ) -> Option<std::io::Result<()>> {
        let nv = self.table.virtuals().len();
        let pages = nv.div_ceil(VIRTUALS_PER_PAGE).max(1);
        let first = (page - 1) * VIRTUALS_PER_PAGE;
        let on_page = nv.saturating_sub(first).min(VIRTUALS_PER_PAGE);
        let per = REALS_INLINE as u64 + 2;
        if k == 0 {
            return Some((|| {
                http_head(w, "200 OK", true)?;
                doc_start(w, b"lvsmon: director status")?;
                w.write_all(b"<header><h1>lvsmon</h1>")?;
                self.summary_line(w, now)?;
                w.write_all(b"</header>\n")?;
                self.pager(w, None, page, pages, "virtual services")?;
                writeln!(w, "<table id=\"virtuals\"><thead><tr><th>Virtual service</th><th>Real servers</th><th>Quorum</th><th>Sorry server</th><th class=\"n\">Available 1 h</th><th class=\"n\">24 h</th><th>Last hour</th></tr></thead>")
            })());
        }
        let k = k - 1;
        let (i, j) = ((k / per) as usize, k % per);
        if i >= on_page {
            return match k - on_page as u64 * per {
                0 => Some((|| {
                    w.write_all(b"</table>\n")?;
                    self.pager(w, None, page, pages, "virtual services")?;
                    doc_end(w)
                })()),
                _ => None,
            };
        }
        let v = first + i;
        let (a, b) = self.table.virtuals()[v].reals;
        let (a, n) = (a as usize, (b - a) as usize);
        Some(match j {
            0 => (|| {
                w.write_all(b"<tbody>")?;
                self.virtual_row(w, v, now, true)?;
                let c = self.counts(v);
                let open = if c.down > 0 || c.drained > 0 {
                    " open"
                } else {
                    ""
                };
                write!(
                    w,
                    "<tr><td colspan=\"7\"><details{open}><summary>{n} real servers</summary>"
                )?;
                self.reals_head(w, "Last hour")
            })(),
            j if j as usize <= REALS_INLINE => {
                let r = j as usize - 1;
                if r < n {
                    self.real_row(w, a + r, now, false)
                } else {
                    Ok(())
                }
            }
            _ => (|| {
                w.write_all(b"</tbody></table>")?;
                if n > REALS_INLINE {
                    write!(w, "<p>{} of {n} listed: <a href=\"", REALS_INLINE)?;
                    self.vlink(w, v, 1)?;
                    w.write_all(b"\">all of them</a></p>")?;
                }
                w.write_all(b"</details></td></tr></tbody>\n")
            })(),
        })
    }

    /// `/virtual/ID`, piece `k`: 0 the head and the virtual's row, 1 its 48-hour chart and
    /// the reals' table head; then its reals on the page; then the end.
    fn virtual_piece(
        &self,
        w: &mut Cursor<&mut [u8]>,
        k: u64,
        v: usize,
        page: usize,
        now: Time,
    ) -> Option<std::io::Result<()>> {
        let (a, b) = self.table.virtuals()[v].reals;
        let (a, n) = (a as usize, (b - a) as usize);
        let pages = n.div_ceil(REALS_PER_PAGE).max(1);
        let first = (page - 1) * REALS_PER_PAGE;
        let on_page = n.saturating_sub(first).min(REALS_PER_PAGE);
        let now_s = self.now_unix(now);
        if k == 0 {
            return Some((|| {
                http_head(w, "200 OK", true)?;
                let mut tb = [0u8; 80];
                let key = key_text(self.table.virtuals()[v].key, &mut tb);
                doc_start(w, key.as_bytes())?;
                w.write_all(
                    b"<header><nav><a href=\"/\">all virtual services</a></nav><h1 class=\"mono\">",
                )?;
                self.vid(w, v)?;
                w.write_all(b"</h1>")?;
                self.summary_line(w, now)?;
                write!(w, "</header>\n<table id=\"virtuals\"><thead><tr><th>Virtual service</th><th>Real servers</th><th>Quorum</th><th>Sorry server</th><th class=\"n\">Available 1 h</th><th class=\"n\">24 h</th><th>Last hour</th></tr></thead><tbody>")?;
                self.virtual_row(w, v, now, false)?;
                w.write_all(b"</tbody></table>\n")
            })());
        }
        if k == 1 {
            return Some((|| {
                w.write_all(b"<h2>The last 48 hours, hour by hour</h2><p>")?;
                let s = slots::<DAY2_SLOTS>(self.history, a..a + n, 3600, now_s);
                sparks(w, &s, 10, 60, "last 48 hours")?;
                write!(w, "</p>\n<h2>Real servers</h2>\n")?;
                self.pager(w, Some(v), page, pages, "real servers")?;
                self.reals_head(w, "Last 48 hours")
            })());
        }
        let r = (k - 2) as usize;
        if r < on_page {
            return Some(self.real_row(w, a + first + r, now, true));
        }
        (r == on_page).then(|| {
            w.write_all(b"</tbody></table>\n")?;
            self.pager(w, Some(v), page, pages, "real servers")?;
            doc_end(w)
        })
    }
}

/// Writes the next piece of the reply to a page request into `out`, advancing `cursor`
/// (pieces written). Returns whether the reply is complete. `/status.json`'s body is
/// `status_json`'s, the `status --json` reply, which takes the cursor less one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render(
    src: &Sources<'_>,
    route: Route,
    head: bool,
    text: &[u8],
    cursor: &mut u64,
    out: &mut Reply<'_>,
    now: Time,
    status_json: impl FnOnce(&mut u64, &mut Reply<'_>) -> bool,
) -> bool {
    match route {
        Route::Json => {
            if *cursor == 0 {
                if !out.line(|w| http_head(w, "200 OK", false)) {
                    return false;
                }
                if head {
                    return true;
                }
                *cursor = 1;
            }
            let mut c = *cursor - 1;
            let done = status_json(&mut c, out);
            *cursor = c + 1;
            done
        }
        Route::Overview { page } => {
            let nv = src.table.virtuals().len();
            let pages = nv.div_ceil(VIRTUALS_PER_PAGE).max(1);
            if page as usize > pages {
                return not_found(out, "no such page");
            }
            if head {
                return out.line(|w| http_head(w, "200 OK", true));
            }
            pieces(cursor, out, |w, k| {
                src.overview_piece(w, k, page as usize, now)
            })
        }
        Route::Virtual { id, page } => {
            let mut buf = [0u8; 96];
            let key = unpercent(id.bytes(text), &mut buf).and_then(parse_virtual);
            let Some(v) = key.and_then(|k| src.table.virtuals().iter().position(|x| x.key == k))
            else {
                return not_found(
                    out,
                    "no such virtual service (write it as in the logs: tcp:10.0.0.1:80, fwmark:42)",
                );
            };
            let (a, b) = src.table.virtuals()[v].reals;
            let pages = ((b - a) as usize).div_ceil(REALS_PER_PAGE).max(1);
            if page as usize > pages {
                return not_found(out, "no such page");
            }
            if head {
                return out.line(|w| http_head(w, "200 OK", true));
            }
            pieces(cursor, out, |w, k| {
                src.virtual_piece(w, k, v, page as usize, now)
            })
        }
    }
}

/// Writes pieces from `*cursor` on while they fit; `piece(w, k)` writes piece `k` (`None`:
/// there is none, the page is complete).
fn pieces(
    cursor: &mut u64,
    out: &mut Reply<'_>,
    mut piece: impl FnMut(&mut Cursor<&mut [u8]>, u64) -> Option<std::io::Result<()>>,
) -> bool {
    loop {
        let mut end = false;
        let ok = out.line(|w| match piece(w, *cursor) {
            Some(r) => r,
            None => {
                end = true;
                Ok(())
            }
        });
        if !ok {
            return false;
        }
        if end {
            return true;
        }
        *cursor += 1;
    }
}

/// A 404 with a short HTML body (`why` is ours, never the request's).
fn not_found(out: &mut Reply<'_>, why: &str) -> bool {
    out.line(|w| {
        w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nContent-Security-Policy: default-src 'none'\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Not found</title></head><body><p>")?;
        html(w, why.as_bytes())?;
        w.write_all(b". <a href=\"/\">The status page</a>.</p></body></html>\n")
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_and_base64_of_known_inputs() {
        assert_eq!(
            &base64_32(sha256(b"")),
            b"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            &base64_32(sha256(b"abc")),
            b"ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
        // Two blocks, and a length just short of a block boundary.
        let long = [b'a'; 119];
        let mut h = [0u8; 32];
        h.copy_from_slice(&sha256(&long));
        assert_eq!(
            &base64_32(h),
            b"MeulHDE6XAgiat8Y1KNZz9/Y0ugWsT9K+VL36mWE3Ps="
        );
    }

    #[test]
    fn escaping_for_html_json_and_urls() {
        let mut b = Vec::new();
        html(&mut b, b"<script>alert(\"x\")</script> & 'q'").unwrap();
        assert_eq!(
            b,
            b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;"
        );
        let mut b = Vec::new();
        json(&mut b, b"a\"b\\c\n<x>&\x01").unwrap();
        assert_eq!(b, b"a\\\"b\\\\c\\n\\u003cx\\u003e\\u0026\\u0001");
        let mut b = Vec::new();
        url(&mut b, b"udp:[2001:db8::1]:53").unwrap();
        assert_eq!(b, b"udp:%5B2001:db8::1%5D:53");
        let mut d = [0u8; 96];
        assert_eq!(
            unpercent(b"udp:%5B2001:db8::1%5D:53", &mut d),
            Some(&b"udp:[2001:db8::1]:53"[..])
        );
        assert_eq!(unpercent(b"%5", &mut d), None);
        assert_eq!(unpercent(b"%zz", &mut d), None);
    }

    #[test]
    fn routes() {
        use crate::control::route;
        let r = |p: &[u8]| route(p, p);
        assert_eq!(r(b"/"), Some(Route::Overview { page: 1 }));
        assert_eq!(r(b"/?page=3"), Some(Route::Overview { page: 3 }));
        assert_eq!(r(b"/?page=0"), Some(Route::Overview { page: 1 }));
        assert_eq!(r(b"/?x=1&page=x"), Some(Route::Overview { page: 1 }));
        assert_eq!(r(b"/status.json"), Some(Route::Json));
        let t = b"/virtual/tcp:10.0.0.1:80?page=2";
        let Some(Route::Virtual { id, page }) = route(t, t) else {
            panic!()
        };
        assert_eq!((id.bytes(t), page), (&b"tcp:10.0.0.1:80"[..], 2));
        assert_eq!(r(b"/other"), None);
    }

    #[test]
    fn page_requests_parse() {
        use crate::control::{Command, Kind};
        let m = |t: &[u8]| Command::parse(Kind::Metrics, t);
        assert_eq!(
            m(b"GET / HTTP/1.1"),
            Command::Page {
                route: Route::Overview { page: 1 },
                head: false
            }
        );
        assert_eq!(
            m(b"HEAD /status.json HTTP/1.0"),
            Command::Page {
                route: Route::Json,
                head: true
            }
        );
        let t = b"GET http://h:9/virtual/fwmark:42?page=3 HTTP/1.1";
        let Command::Page {
            route: Route::Virtual { id, page },
            head: false,
        } = m(t)
        else {
            panic!("{:?}", m(t))
        };
        assert_eq!((id.bytes(t), page), (&b"fwmark:42"[..], 3));
        assert_eq!(
            m(b"GET /metrics HTTP/1.1"),
            Command::Metrics { head: false }
        );
        assert_eq!(m(b"POST / HTTP/1.1"), Command::BadMethod);
        assert_eq!(m(b"GET /virtualx HTTP/1.1"), Command::NotFound);
    }

    type Piece = Option<std::io::Result<()>>;

    struct NoOut;
    impl crate::table::Out for NoOut {
        fn event(&mut self, _: &crate::monitor::event::Event, _: u32, _: Option<(u32, u32)>) {}
        fn drift(
            &mut self,
            _: crate::config::ServiceKey,
            _: Option<std::net::SocketAddr>,
            _: &str,
        ) {
        }
        fn resynced(&mut self) {}
    }

    /// The largest pieces a page has (IPv6 addresses of the longest form, a detail whose
    /// every byte needs escaping, every minute and hour of history filled, failures in
    /// every slot) each fit [`crate::control::LINE`], the most a reply copies at once: a
    /// longer one would be cut and break the page.
    #[test]
    fn every_piece_fits_a_reply_line() {
        use crate::plugins::{Detail, Reason, Verdict};
        let a = |k: u32| format!("[2001:db8:ffff:ffff:ffff:ffff:ffff:{k:x}]:65535");
        let mut text = format!(
            "virtual tcp {} {{\n  check tcp\n  sorry {}\n",
            a(0xffff),
            a(0xfffe)
        );
        for k in 0..30 {
            text.push_str(&format!("  real {} weight 65535\n", a(0xa000 + k)));
        }
        text.push_str("}\n");
        let doc =
            crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
                .unwrap();
        let plan = crate::config::plan::plan(&doc, None).unwrap();
        let mut history = History::new(&plan.history, &History::intervals(&plan));
        let mut table = crate::table::Table::new(&plan, Time::ZERO);
        table.adopt_at_start(|_| None, |_, _| None);
        let origin = 1_800_000_000u64;
        let now = Time(3 * 86_400 * 1_000_000);
        let now_s = origin + 3 * 86_400;
        let hostile = Detail::text(&[b'&'; 64]);
        for r in 0..30 {
            for (i, t) in (now_s - 2 * 86_400..=now_s).step_by(30).enumerate() {
                let fail = i % 2 == 0;
                history.record(
                    r,
                    t,
                    1_000_000 + (i as u64 % 7) * 123_457,
                    fail.then_some(Reason::BannerMismatch),
                );
            }
            let v = Verdict::Fail(Reason::BannerMismatch, hostile);
            table.record(crate::ids::RealId::of(r), v, 9_999_999, now, &mut NoOut);
        }
        let view = Sources {
            table: &table,
            history: &history,
            wall_origin_us: origin * 1_000_000,
        };
        let mut buf = vec![0u8; 1 << 16];
        let mut largest = 0;
        let mut check = |f: &mut dyn FnMut(&mut Cursor<&mut [u8]>, u64) -> Piece| {
            for k in 0..10_000 {
                let mut c = Cursor::new(&mut buf[..]);
                match f(&mut c, k) {
                    None => return,
                    Some(r) => r.unwrap(),
                }
                let n = c.position() as usize;
                largest = largest.max(n);
                assert!(n < crate::control::LINE, "piece {k}: {n} bytes");
            }
            panic!("no end");
        };
        check(&mut |w, k| view.overview_piece(w, k, 1, now));
        check(&mut |w, k| view.virtual_piece(w, k, 0, 1, now));
        assert!(largest > 3000, "the worst case was not reached: {largest}");
    }

    #[test]
    fn the_script_has_its_period_in_place() {
        assert!(SCRIPT_TEXT.contains("setTimeout(tick,10000);"));
        assert!(!SCRIPT_TEXT.contains("REFRESH"));
        assert!(!SCRIPT_TEXT.contains("</"));
    }
}
