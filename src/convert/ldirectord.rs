//! ldirectord.cf (ldirectord(8)) in, lvsmon.conf out.
//!
//! The file is `key = value` lines; `#` starts a comment line. Lines before the first
//! `virtual=` are global; an indented line belongs to the `virtual=` above it. Globals that
//! have an lvsmon equivalent are written at the top (`checkinterval` is `interval`,
//! `failurecount` is `fall`, `quiescent` is `on-down`); the ones that depend on a virtual
//! service's check (`checktimeout`, `negotiatetimeout`, `fallback`) are written into each
//! `virtual` block.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::rc::Rc;

use super::emit::{self, addr_port, duration, word, Feature, Item, Out, Src};
use super::ReadError;

/// One `key = value` line.
#[derive(Debug, Clone)]
struct Setting {
    key: String,
    value: String,
    src: Src,
}

impl Setting {
    fn note(&self) -> String {
        format!("{}={} ({})", self.key, self.value, self.src)
    }
}

/// A `virtual=` section.
struct Section {
    head: Setting,
    lines: Vec<Setting>,
}

/// Converts the ldirectord configuration at `path`.
///
/// # Errors
/// The file cannot be read.
pub fn convert(path: &Path) -> Result<Out, ReadError> {
    let shown = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let bytes = fs::read(path).map_err(|e| ReadError(format!("{shown}: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let file: Rc<str> = Rc::from(shown.as_str());
    let mut out = Out::default();
    let mut globals: Vec<Setting> = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let src = Src {
            file: file.clone(),
            line: (i + 1) as u32,
        };
        let line = raw.trim_end_matches('\r');
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        let Some((k, v)) = t.split_once('=') else {
            out.refuse(0, &src, &format!("{t}: expected KEY=VALUE"));
            continue;
        };
        let s = Setting {
            key: k.trim().to_ascii_lowercase(),
            value: unquote(v.trim()).to_string(),
            src,
        };
        if s.key == "virtual" || s.key == "virtual6" {
            sections.push(Section {
                head: s,
                lines: Vec::new(),
            });
        } else if indented && !sections.is_empty() {
            if let Some(sec) = sections.last_mut() {
                sec.lines.push(s);
            }
        } else {
            globals.push(s);
        }
    }

    out.comment(
        0,
        &format!(
            "lvsmon.conf converted from ldirectord configuration {} by lvsmon convert; see \
             lvsmon(8), MIGRATION.",
            path.display()
        ),
    );
    out.comment(
        0,
        "ldirectord's defaults are written out: one pass brings a real server up (rise 1).",
    );
    out.blank();
    let mut g: HashMap<&str, &Setting> = HashMap::new();
    let mut interval = (10.0, "ldirectord's default checkinterval 10".to_string());
    let mut fall = (1u64, "ldirectord's default failurecount 1".to_string());
    let mut quiescent = (true, "ldirectord's default quiescent yes".to_string());
    for s in &globals {
        match s.key.as_str() {
            "checkinterval" => match s.value.parse::<f64>() {
                Ok(v) if v > 0.0 => interval = (v, s.note()),
                _ => out.refuse(0, &s.src, &format!("{}: unreadable", s.note())),
            },
            "failurecount" => match s.value.parse::<u64>() {
                Ok(v) if v > 0 => fall = (v, s.note()),
                _ => out.refuse(0, &s.src, &format!("{}: unreadable", s.note())),
            },
            "quiescent" => match yes_no(&s.value) {
                Some(q) => quiescent = (q, s.note()),
                None => out.refuse(0, &s.src, &format!("{}: expected yes or no", s.note())),
            },
            "checktimeout" | "negotiatetimeout" | "fallback" => {
                g.insert(key_name(&s.key), s);
            }
            k if k.starts_with("emailalert") || k == "smtp" => out.comment(
                0,
                &format!(
                    "{}: lvsmon sends no mail; a notify command can (lvsmon(8), NOTIFY)",
                    s.note()
                ),
            ),
            "autoreload" => out.comment(
                0,
                &format!(
                    "{}: lvsmon reads its file again on SIGHUP or lvsmon reload, and keeps the \
                     running configuration when the new one is bad",
                    s.note()
                ),
            ),
            "logfile" => out.comment(
                0,
                &format!(
                    "{}: lvsmon logs to standard error or syslog (--log)",
                    s.note()
                ),
            ),
            "supervised" | "fork" => out.comment(0, &format!("{}: nothing to convert", s.note())),
            "cleanstop" if yes_no(&s.value) == Some(false) => out.comment(
                0,
                &format!(
                    "{}: lvsmon too leaves the table as it is when it stops",
                    s.note()
                ),
            ),
            "cleanstop" => out.refuse(
                0,
                &s.src,
                &format!(
                    "{}: lvsmon leaves the IPVS table as it is when it stops",
                    s.note()
                ),
            ),
            "maintenancedir" => out.refuse(
                0,
                &s.src,
                &format!(
                    "{}: use lvsmon drain REAL (kept across restarts) instead",
                    s.note()
                ),
            ),
            _ => out.refuse(0, &s.src, &format!("{}: no lvsmon equivalent", s.note())),
        }
    }
    out.code(
        0,
        &format!("interval {}", duration(interval.0)),
        &interval.1,
    );
    out.code(0, &format!("fall {}", fall.0), &fall.1);
    out.code(0, "rise 1", "ldirectord: one pass brings a real server up");
    out.code(
        0,
        if quiescent.0 {
            "on-down quiesce"
        } else {
            "on-down remove"
        },
        &quiescent.1,
    );
    if sections.is_empty() {
        out.blank();
        out.refuse(
            0,
            &Src {
                file: file.clone(),
                line: 1,
            },
            "no virtual= section: nothing for lvsmon to check (an lvsmon.conf needs at least \
             one virtual service)",
        );
    }
    for sec in &sections {
        out.blank();
        section(&mut out, sec, &g);
    }
    Ok(out)
}

fn key_name(k: &str) -> &'static str {
    match k {
        "checktimeout" => "checktimeout",
        "negotiatetimeout" => "negotiatetimeout",
        _ => "fallback",
    }
}

fn unquote(v: &str) -> &str {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// A port number or a name from /etc/services.
fn port(p: &str, proto: &str) -> Option<u16> {
    if let Ok(n) = p.parse::<u16>() {
        return Some(n);
    }
    let services = fs::read_to_string("/etc/services").ok()?;
    for line in services.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut w = line.split_whitespace();
        let (Some(name), Some(pp)) = (w.next(), w.next()) else {
            continue;
        };
        let Some((num, pr)) = pp.split_once('/') else {
            continue;
        };
        if pr == proto && (name == p || w.any(|alias| alias == p)) {
            return num.parse().ok();
        }
    }
    None
}

/// `ADDR:PORT`, `[V6]:PORT`, `ADDR`.
fn host_port(text: &str, proto: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (a, tail) = rest.split_once(']')?;
        let ip = a.parse().ok()?;
        return match tail.strip_prefix(':') {
            Some(p) => Some((ip, Some(port(p, proto)?))),
            None if tail.is_empty() => Some((ip, None)),
            None => None,
        };
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let (a, p) = text.rsplit_once(':')?;
    Some((a.parse().ok()?, Some(port(p, proto)?)))
}

/// The words of a value, a double-quoted string being one word.
fn words(v: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() || c == ',' {
            chars.next();
            continue;
        }
        let mut w = String::new();
        if c == '"' {
            chars.next();
            for c in chars.by_ref() {
                if c == '"' {
                    break;
                }
                w.push(c);
            }
            out.push((w, true));
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
            out.push((w, false));
        }
    }
    out
}

fn forward(kind: &str) -> Option<&'static str> {
    match kind {
        "gate" => Some("route"),
        "masq" => Some("masq"),
        "ipip" => Some("tunnel"),
        _ => None,
    }
}

/// The service ldirectord assumes from the virtual port.
fn default_service(port: Option<u16>) -> &'static str {
    match port {
        Some(21) => "ftp",
        Some(25) => "smtp",
        Some(53) => "dns",
        Some(80) => "http",
        Some(110) => "pop",
        Some(119) => "nntp",
        Some(143) => "imap",
        Some(389) => "ldap",
        Some(443) => "https",
        Some(587) => "submission",
        Some(636) => "ldaps",
        Some(993) => "imaps",
        Some(995) => "pops",
        Some(1521) => "oracle",
        Some(1812) => "radius",
        Some(3128) => "http_proxy",
        Some(3306) => "mysql",
        Some(5432) => "pgsql",
        Some(5060) => "sip",
        _ => "none",
    }
}

struct RealLine {
    ips: Vec<IpAddr>,
    port: Option<u16>,
    fwd: &'static str,
    weight: u32,
    request: Option<String>,
    receive: Option<String>,
    src: Src,
    text: String,
}

fn section(out: &mut Out, sec: &Section, g: &HashMap<&str, &Setting>) {
    let h = &sec.head;
    let get = |k: &str| sec.lines.iter().rev().find(|s| s.key == k);
    let proto_set = get("protocol");
    // The service.
    let (vip, vport, mark) = if let Ok(m) = h.value.parse::<u32>() {
        (None, None, Some(m))
    } else {
        let p = proto_set.map(|s| s.value.to_ascii_lowercase());
        let pname = if p.as_deref() == Some("udp") {
            "udp"
        } else {
            "tcp"
        };
        match host_port(&h.value, pname) {
            Some((ip, Some(port))) => (Some(ip), Some(port), None),
            _ => {
                out.refuse(
                    0,
                    &h.src,
                    &format!(
                        "{}: expected ADDR:PORT or a firewall mark (host and service names other \
                         than /etc/services ports are not resolved)",
                        h.note()
                    ),
                );
                return;
            }
        }
    };
    let mut items: Vec<Item> = Vec::new();
    let proto = match proto_set.map(|s| s.value.to_ascii_lowercase()).as_deref() {
        Some(p @ ("tcp" | "udp")) if mark.is_none() => p.to_string(),
        Some("fwm") if mark.is_some() => "fwm".into(),
        None if mark.is_some() => "fwm".into(),
        None if vport == Some(53) => "udp".into(),
        None => "tcp".into(),
        Some(_) => {
            let s = proto_set.map(Setting::note).unwrap_or_default();
            out.refuse(0, &h.src, &format!("{s}: does not fit {}", h.note()));
            return;
        }
    };
    let mut reals: Vec<RealLine> = Vec::new();
    let mut service: Option<&Setting> = None;
    let mut checktype: Option<&Setting> = None;
    let mut checkport: Option<u16> = None;
    let mut request: Option<String> = None;
    let mut receive: Option<String> = None;
    let mut vhost: Option<String> = None;
    let mut method: Option<String> = None;
    let mut command: Option<&Setting> = None;
    let mut scheduler = (
        "wrr".to_string(),
        "ldirectord's default scheduler wrr".to_string(),
    );
    let mut timeouts: HashMap<&str, &Setting> = g
        .iter()
        .filter(|(k, _)| **k != "fallback")
        .map(|(k, v)| (*k, *v))
        .collect();
    let mut fallback: Option<&Setting> = g.get("fallback").copied();
    for s in &sec.lines {
        match s.key.as_str() {
            "real" | "real6" => match real_line(s, &proto, vport) {
                Ok(r) => reals.push(r),
                Err(why) => items.push(Item::refused(&s.src, format!("{}: {why}", s.note()))),
            },
            "service" => service = Some(s),
            "checktype" => checktype = Some(s),
            "checkport" => match s.value.parse::<u16>() {
                Ok(p) => checkport = Some(p),
                Err(_) => items.push(Item::refused(&s.src, format!("{}: unreadable", s.note()))),
            },
            "request" => request = Some(s.value.clone()),
            "receive" => receive = Some(s.value.clone()),
            "virtualhost" => vhost = Some(s.value.clone()),
            "httpmethod" => method = Some(s.value.to_ascii_uppercase()),
            "checkcommand" => command = Some(s),
            "scheduler" => scheduler = (s.value.clone(), s.note()),
            "persistent" => match s.value.parse::<u64>() {
                Ok(p) => items.push(Item::set(format!("persistent {p}s"), s.note())),
                Err(_) => items.push(Item::refused(&s.src, format!("{}: unreadable", s.note()))),
            },
            "netmask" => match emit::prefix_len(&s.value) {
                Some(len) => {
                    out.uses(Feature::PersistenceNetmask);
                    items.push(Item::set(format!("persistence-netmask {len}"), s.note()));
                }
                None => items.push(Item::refused(&s.src, format!("{}: unreadable", s.note()))),
            },
            "protocol" => {}
            "checktimeout" | "negotiatetimeout" => {
                timeouts.insert(key_name(&s.key), s);
            }
            "fallback" | "fallback6" => fallback = Some(s),
            "checkinterval" => match s.value.parse::<f64>() {
                Ok(v) if v > 0.0 => items.push(Item::set(
                    format!("interval {}", duration(v)),
                    format!("{} (ldirectord honours it with fork=yes)", s.note()),
                )),
                _ => items.push(Item::refused(&s.src, format!("{}: unreadable", s.note()))),
            },
            "failurecount" => match s.value.parse::<u64>() {
                Ok(v) if v > 0 => items.push(Item::set(format!("fall {v}"), s.note())),
                _ => items.push(Item::refused(&s.src, format!("{}: unreadable", s.note()))),
            },
            "quiescent" => match yes_no(&s.value) {
                Some(q) => items.push(Item::set(
                    if q {
                        "on-down quiesce"
                    } else {
                        "on-down remove"
                    },
                    s.note(),
                )),
                None => items.push(Item::refused(
                    &s.src,
                    format!("{}: expected yes or no", s.note()),
                )),
            },
            "ops" if yes_no(&s.value) == Some(true) => {
                out.uses(Feature::OnePacket);
                items.push(Item::set("one-packet yes", s.note()));
            }
            "ops" => {}
            "servicename" | "comment" => items.push(Item::Comment(s.note())),
            k if k.starts_with("emailalert") || k == "smtp" => items.push(Item::Comment(format!(
                "{}: lvsmon sends no mail; a notify command can",
                s.note()
            ))),
            "login" | "passwd" | "database" | "secret" => items.push(Item::refused(
                &s.src,
                format!("{}=...: lvsmon's checks never log in", s.key),
            )),
            _ => items.push(Item::refused(
                &s.src,
                format!("{}: no lvsmon equivalent", s.note()),
            )),
        }
    }
    items.insert(
        0,
        Item::set(format!("scheduler {}", word(&scheduler.0)), scheduler.1),
    );

    // The check.
    let ctype = checktype
        .map(|s| s.value.to_ascii_lowercase())
        .unwrap_or_else(|| "negotiate".into());
    let ctnote = checktype
        .map(Setting::note)
        .unwrap_or_else(|| "ldirectord's default checktype negotiate".into());
    let svc = service
        .map(|s| s.value.to_ascii_lowercase())
        .unwrap_or_else(|| default_service(vport).to_string());
    let negotiate = ctype == "negotiate" || ctype.parse::<u32>().is_ok();
    let (t, tnote) = {
        let (first, second, default) = if negotiate {
            ("negotiatetimeout", "checktimeout", 30.0)
        } else {
            ("checktimeout", "negotiatetimeout", 5.0)
        };
        match timeouts.get(first).or_else(|| timeouts.get(second)) {
            Some(s) => match s.value.parse::<f64>() {
                Ok(v) if v > 0.0 => (v, s.note()),
                _ => {
                    items.push(Item::refused(&s.src, format!("{}: unreadable", s.note())));
                    (default, String::new())
                }
            },
            None => (default, format!("ldirectord's default {first} {default}")),
        }
    };
    items.push(Item::set(
        format!("connect-timeout {}", duration(t)),
        tnote.clone(),
    ));
    items.push(Item::set(format!("timeout {}", duration(t)), tnote));
    if let Ok(n) = ctype.parse::<u32>() {
        items.push(Item::Comment(format!(
            "{ctnote}: ldirectord negotiates every {n}th check and only connects in between; \
             lvsmon negotiates at every check"
        )));
    }

    if let Some(f) = fallback {
        let mut w = words(&f.value).into_iter().map(|(w, _)| w);
        let addr = w.next().unwrap_or_default();
        let kind = w.next();
        match host_port(&addr, if proto == "udp" { "udp" } else { "tcp" }) {
            Some((ip, p)) => {
                let p = p.or(vport);
                let fwd = kind.as_deref().map(forward);
                match (p, fwd) {
                    (Some(p), None | Some(Some("masq"))) => items.push(Item::set(
                        format!("sorry {}", addr_port(ip, Some(p))),
                        f.note(),
                    )),
                    (Some(p), Some(Some(m))) => {
                        out.uses(Feature::SorryForward);
                        items.push(Item::set(
                            format!("sorry {} --forward {m}", addr_port(ip, Some(p))),
                            f.note(),
                        ));
                    }
                    _ => items.push(Item::refused(&f.src, format!("{}: unreadable", f.note()))),
                }
            }
            None => items.push(Item::refused(&f.src, format!("{}: unreadable", f.note()))),
        }
    }

    // Forwarding: in the virtual block when every real server has the same.
    let fwds: Vec<&str> = reals.iter().map(|r| r.fwd).collect();
    let shared_fwd = fwds
        .first()
        .filter(|f| fwds.iter().all(|x| x == *f))
        .copied();
    if let Some(f) = shared_fwd {
        items.insert(
            1,
            Item::set(
                format!("forward {f}"),
                format!("the real= lines ({})", reals[0].src),
            ),
        );
    }

    let head = match (vip, mark) {
        (_, Some(m)) => format!("virtual fwmark {m} {{"),
        (Some(ip), _) => format!("virtual {proto} {} {{", addr_port(ip, vport)),
        _ => unreachable_head(),
    };
    out.comment(0, &h.note());
    out.code(0, &head, "");
    let mut shared_check: Option<Vec<Item>> = None;
    let mut per_real: Vec<Vec<Item>> = Vec::new();
    let ck = CheckCtx {
        ctype: &ctype,
        ctnote: &ctnote,
        svc: &svc,
        checkport,
        vhost: vhost.as_deref(),
        method: method.as_deref(),
        command,
        vip,
        vport,
        mark,
        proto: &proto,
    };
    for r in &reals {
        for ip in &r.ips {
            let req = r.request.as_deref().or(request.as_deref());
            let rec = r.receive.as_deref().or(receive.as_deref());
            per_real.push(check(out, &ck, *ip, r.port, req, rec, &r.src));
        }
    }
    if let Some(first) = per_real.first() {
        if per_real.iter().all(|c| c == first) {
            shared_check = Some(first.clone());
        }
    }
    out.items(1, &items);
    if let Some(c) = &shared_check {
        out.items(1, c);
    }
    let mut k = 0;
    for r in &reals {
        out.comment(1, &format!("{} ({})", r.text, r.src));
        for ip in &r.ips {
            let mut own: Vec<Item> = Vec::new();
            if shared_fwd.is_none() {
                own.push(Item::set(format!("forward {}", r.fwd), r.src.to_string()));
            }
            if shared_check.is_none() {
                own.extend(per_real[k].iter().cloned());
            }
            k += 1;
            let line = format!("real {} weight {}", addr_port(*ip, r.port), r.weight);
            if own.is_empty() {
                out.code(1, &line, "");
            } else {
                out.code(1, &format!("{line} {{"), "");
                out.items(2, &own);
                out.code(1, "}", "");
            }
        }
    }
    out.code(0, "}", "");
}

fn unreachable_head() -> String {
    // A section is either a mark or an address with a port (checked above).
    "virtual fwmark 0 {".to_string()
}

/// `real=ADDR[->ADDR][:PORT] gate|masq|ipip [WEIGHT] ["REQUEST", "RECEIVE"]`.
fn real_line(s: &Setting, proto: &str, vport: Option<u16>) -> Result<RealLine, String> {
    let w = words(&s.value);
    let Some((spec, _)) = w.first() else {
        return Err("empty".into());
    };
    let pname = if proto == "udp" { "udp" } else { "tcp" };
    let (ips, port) = if let Some((a, b)) = spec.split_once("->") {
        let (hi, port) = match host_port(b, pname) {
            Some((ip, p)) => (ip, p),
            None => return Err("unreadable address range".into()),
        };
        let lo: IpAddr = a
            .parse()
            .map_err(|_| "unreadable address range".to_string())?;
        let (IpAddr::V4(lo4), IpAddr::V4(hi4)) = (lo, hi) else {
            return Err("ranges are IPv4 only".into());
        };
        let (l, h) = (u32::from(lo4), u32::from(hi4));
        if h < l || h - l > 1023 {
            return Err("the range ends before it starts or is over 1024 addresses".into());
        }
        (
            (l..=h)
                .map(|n| IpAddr::from(std::net::Ipv4Addr::from(n)))
                .collect(),
            port,
        )
    } else {
        match host_port(spec, pname) {
            Some((ip, p)) => (vec![ip], p),
            None => return Err("expected an IP address (host names are not resolved)".to_string()),
        }
    };
    let Some(fwd) = w.get(1).and_then(|(k, _)| forward(k)) else {
        return Err("expected gate, masq or ipip after the address".into());
    };
    let mut weight = 1;
    let mut i = 2;
    if let Some((n, false)) = w.get(i) {
        weight = n
            .parse::<u32>()
            .map_err(|_| format!("unreadable weight {n:?}"))?;
        if weight > 65535 {
            return Err(format!("weight {weight} above 65535"));
        }
        i += 1;
    }
    let mut request = None;
    let mut receive = None;
    if let (Some((q, true)), Some((r, true))) = (w.get(i), w.get(i + 1)) {
        request = Some(q.clone());
        receive = Some(r.clone());
        i += 2;
    }
    if i < w.len() {
        return Err(format!("{:?}: no lvsmon equivalent", w[i].0));
    }
    // Only masquerading maps ports: with gate or ipip the real server gets the virtual port.
    let port = if fwd == "masq" {
        port.or(vport)
    } else {
        vport.or(port)
    };
    Ok(RealLine {
        ips,
        port,
        fwd,
        weight,
        request,
        receive,
        src: s.src.clone(),
        text: format!("real={}", s.value),
    })
}

struct CheckCtx<'a> {
    ctype: &'a str,
    ctnote: &'a str,
    svc: &'a str,
    checkport: Option<u16>,
    vhost: Option<&'a str>,
    method: Option<&'a str>,
    command: Option<&'a Setting>,
    vip: Option<IpAddr>,
    vport: Option<u16>,
    mark: Option<u32>,
    proto: &'a str,
}

/// The check lines of one real server.
fn check(
    out: &mut Out,
    c: &CheckCtx<'_>,
    ip: IpAddr,
    rport: Option<u16>,
    request: Option<&str>,
    receive: Option<&str>,
    src: &Src,
) -> Vec<Item> {
    let mut v = Vec::new();
    let port_opt = c
        .checkport
        .map(|p| format!(" --port {p}"))
        .unwrap_or_default();
    let note = format!("{}, service={}", c.ctnote, c.svc);
    let cport = c.checkport.or(rport);
    match c.ctype {
        "connect" if c.proto == "udp" => v.push(Item::refused(
            src,
            "checktype=connect on UDP pings the real server; lvsmon has no ping check",
        )),
        "connect" => v.push(Item::set(format!("check tcp{port_opt}"), c.ctnote)),
        "external" | "external-perl" => {
            let cmd = c
                .command
                .map(|s| s.value.clone())
                .unwrap_or_else(|| "/bin/true".into());
            out.uses(Feature::Exec);
            let vaddr = match (c.vip, c.mark) {
                (Some(ip), _) => ip.to_string(),
                (_, Some(m)) => m.to_string(),
                _ => String::new(),
            };
            let mut words: Vec<String> = cmd.split_whitespace().map(word).collect();
            words.push(word(&vaddr));
            words.push(c.vport.unwrap_or(0).to_string());
            words.push(ip.to_string());
            words.push(cport.unwrap_or(0).to_string());
            v.push(Item::set(
                format!("check exec {}", words.join(" ")),
                format!(
                    "{note}; the four arguments ldirectord passes; {}",
                    c.command.map(Setting::note).unwrap_or_default()
                ),
            ));
        }
        t if t == "negotiate" || t.parse::<u32>().is_ok() => {
            let lit = receive.map(|r| (r, emit::literal_regex(r)));
            let need_match = |v: &mut Vec<Item>| -> Option<Option<String>> {
                match &lit {
                    None => Some(None),
                    Some((_, Some(l))) => Some(Some(l.clone())),
                    Some((r, None)) => {
                        v.push(Item::refused(
                            src,
                            format!(
                                "receive=\"{r}\": lvsmon matches plain text (--match), not \
                                 regular expressions"
                            ),
                        ));
                        None
                    }
                }
            };
            match c.svc {
                "http" | "https" => {
                    let tls = c.svc == "https";
                    let Some(m) = need_match(&mut v) else {
                        return v;
                    };
                    let scheme = if tls { "https" } else { "http" };
                    let default_port = if tls { 443 } else { 80 };
                    let req = request.unwrap_or("/");
                    let mut extra = String::new();
                    let url = if req.starts_with("http://") || req.starts_with("https://") {
                        // ldirectord then connects to the URL's host and port.
                        match url_target(req) {
                            Some((aip, ap)) => {
                                extra.push_str(&format!(" --address {aip}"));
                                if let Some(p) = ap {
                                    extra.push_str(&format!(" --port {p}"));
                                }
                                req.to_string()
                            }
                            None => {
                                v.push(Item::refused(
                                    src,
                                    format!(
                                        "request=\"{req}\": ldirectord connects to the URL's host; \
                                         lvsmon takes an IP address"
                                    ),
                                ));
                                return v;
                            }
                        }
                    } else {
                        let path = emit::url_path(&if req.starts_with('/') {
                            req.to_string()
                        } else {
                            format!("/{req}")
                        });
                        let host = match (c.vhost, cport) {
                            (Some(h), Some(p)) if p != default_port => format!("{h}:{p}"),
                            (Some(h), _) => h.to_string(),
                            (None, Some(p)) if p != default_port => {
                                format!("{}:{p}", emit::url_host(ip))
                            }
                            (None, _) => emit::url_host(ip),
                        };
                        extra.push_str(&port_opt);
                        format!("{scheme}://{host}{path}")
                    };
                    if tls {
                        out.uses(Feature::Https);
                    }
                    let mut code = format!("check {scheme} --url {} --expect 200-299", word(&url));
                    if let Some(meth) = c.method {
                        code.push_str(&format!(" --method {}", word(meth)));
                    }
                    if let Some(m) = m {
                        code.push_str(&format!(" --match {}", word(&m)));
                    }
                    code.push_str(&extra);
                    v.push(Item::set(code, note));
                }
                "ftp" | "smtp" | "submission" | "pop" | "imap" | "imaps" | "pops" | "ldaps"
                | "mysql" | "pgsql" => {
                    let preset = match c.svc {
                        "pop" => "pop3",
                        "pops" => "pop3s",
                        "submission" => "smtp",
                        s => s,
                    };
                    if matches!(preset, "imaps" | "pop3s" | "ldaps") {
                        out.uses(Feature::TlsPreset);
                    }
                    if matches!(preset, "mysql" | "pgsql") && request.is_some() {
                        v.push(Item::refused(
                            src,
                            format!(
                                "service={}: lvsmon's {preset} check stops at the server's \
                                 handshake; it runs no query",
                                c.svc
                            ),
                        ));
                    }
                    v.push(Item::set(format!("check {preset}{port_opt}"), note));
                }
                "dns" => {
                    let Some(q) = request else {
                        v.push(Item::refused(src, "service=dns without request"));
                        return v;
                    };
                    let mut code = format!("check dns --query {}", word(q));
                    match receive.map(|r| r.parse::<IpAddr>()) {
                        None => {}
                        Some(Ok(a)) => {
                            let ty = if a.is_ipv4() { "A" } else { "AAAA" };
                            code.push_str(&format!(" --type {ty} --expect-address {a}"));
                        }
                        Some(Err(_)) => {
                            v.push(Item::refused(
                                src,
                                format!(
                                    "receive=\"{}\": lvsmon's dns check expects addresses",
                                    receive.unwrap_or("")
                                ),
                            ));
                            return v;
                        }
                    }
                    code.push_str(&port_opt);
                    v.push(Item::set(code, note));
                }
                other => v.push(Item::refused(
                    src,
                    format!("service={other}: lvsmon has no such check"),
                )),
            }
        }
        // ldirectord(8): "on" runs no check and always activates the real servers; "off"
        // runs no check and activates neither the real servers nor the fallback. lvsmon
        // checks every real server (check tcp when no check is given), so neither has an
        // equivalent: the converted reals get the default check, and the refusal says so.
        "on" => v.push(Item::refused(
            src,
            "checktype=on: ldirectord runs no check and keeps every real server in service; \
             lvsmon checks every real server, so these get its default check tcp and leave \
             service when it fails",
        )),
        "off" => v.push(Item::refused(
            src,
            "checktype=off: ldirectord runs no check and keeps every real server (and the \
             fallback) out of service; lvsmon checks every real server, so these get its \
             default check tcp and enter service when it passes: keep them out with lvsmon \
             drain",
        )),
        "ping" => v.push(Item::refused(
            src,
            "checktype=ping: ldirectord checks with ICMP echo requests; lvsmon has no ping check",
        )),
        other => v.push(Item::refused(
            src,
            format!("checktype={other}: not a checktype lvsmon knows how to convert"),
        )),
    }
    v
}

/// The IP address and port of an `http://ADDR[:PORT]/...` request.
fn url_target(url: &str) -> Option<(IpAddr, Option<u16>)> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split('/').next()?;
    host_port(auth, "tcp")
}
