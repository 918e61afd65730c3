//! Words to typed values: durations, counts, addresses and ports, marks, `fall` and `history`
//! lines, each with the error message that says what was expected (lvsmon.conf(5)), and the
//! limits those values must keep.
//!
//! Every function here looks at one setting's words alone; which setting may stand where, the
//! defaults and the override order are the walk's ([`super::plan`]). The error of each points
//! at the word at fault through the [`Document`] that holds it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::parse::{Document, Word};
use super::{ConfigError, Forward, HistorySpec, OnDown, Slow, SorryMode, MAX_RING};

/// The largest weight a real may have (ipvsadm's limit).
pub const MAX_WEIGHT: u32 = 65535;
/// The longest scheduler name: `IP_VS_SCHEDNAME_MAXLEN` (16) minus the terminating NUL.
pub const MAX_SCHEDULER_LEN: usize = 15;

/// The shortest `interval` and `retry-interval` (and `--interval`): 20 checks a second of each
/// real server is already more than any failure detection needs, and shorter intervals only
/// load the servers (`interval 0.0000001` once ran a thousand checks a second per real).
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);
/// The longest `interval` and `retry-interval` (and `--interval`): one day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);
/// The most notify commands that may run at once (`notify-max`): each is a process and an
/// open file of lvsmon's, counted in the open-file need (lvsmon(8), open files).
pub const MAX_NOTIFY_MAX: u32 = 1024;
/// The longest `persistent`, in seconds: the kernel keeps it in clock ticks in 32 bits
/// (`timeout * HZ`), which overflows beyond this with HZ 1000 (about 49 days).
pub const MAX_PERSISTENT_SECS: u32 = 4_294_967;

const DURATION_HINT: &str = "expected a duration like 250ms, 10s, 5m, 1h, 1d";

/// Parses a duration as the config language writes it: `250ms`, `10s`, `5m`, `1h`, `1d`, or a
/// bare number of seconds, with an optional fraction (`1.5s`, `0.25`). Exact to the nanosecond
/// (digits beyond are dropped); `None` for anything else or for more than `u64::MAX` seconds.
pub fn parse_duration(text: &[u8]) -> Option<Duration> {
    let digits_end = |from: usize| {
        from + text[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_end = digits_end(0);
    if int_end == 0 {
        return None;
    }
    let (frac, num_end) = match text.get(int_end) {
        Some(b'.') => {
            let end = digits_end(int_end + 1);
            if end == int_end + 1 {
                return None;
            }
            (&text[int_end + 1..end], end)
        }
        _ => (&text[..0], int_end),
    };
    let unit_ns: u128 = match &text[num_end..] {
        b"ms" => 1_000_000,
        b"" | b"s" => 1_000_000_000,
        b"m" => 60 * 1_000_000_000,
        b"h" => 3600 * 1_000_000_000,
        b"d" => 86400 * 1_000_000_000,
        _ => return None,
    };
    let mut whole: u128 = 0;
    for &d in &text[..int_end] {
        whole = whole.checked_mul(10)?.checked_add(u128::from(d - b'0'))?;
    }
    let mut ns = whole.checked_mul(unit_ns)?;
    // The fraction, scaled by the unit, to whole nanoseconds; at most 18 digits matter.
    let mut num: u128 = 0;
    let mut den: u128 = 1;
    for &d in frac.iter().take(18) {
        num = num * 10 + u128::from(d - b'0');
        den *= 10;
    }
    ns = ns.checked_add(num * unit_ns / den)?;
    let secs = u64::try_from(ns / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (ns % 1_000_000_000) as u32))
}

/// A duration as a person would write it in the config: `5s`, `250ms`, `1.5s`.
pub(super) fn show_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", d.as_secs())
    } else if ns.is_multiple_of(1_000_000) && ns < 1_000_000_000 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A whole number of days as `1d`, anything else as [`show_duration`] does.
fn show_days(d: Duration) -> String {
    if d.subsec_nanos() == 0 && d.as_secs() > 0 && d.as_secs().is_multiple_of(86_400) {
        format!("{}d", d.as_secs() / 86_400)
    } else {
        show_duration(d)
    }
}

/// The single argument of a setting.
pub(super) fn one<'w>(
    doc: &Document,
    kw: &Word,
    args: &'w [Word],
    what: &str,
) -> Result<&'w Word, ConfigError> {
    let name = kw.as_str().unwrap_or_default();
    match args {
        [] => Err(doc.error(kw.pos, format!("expected {what} after {name}"))),
        [w] => Ok(w),
        [_, extra, ..] => Err(doc.error(
            extra.pos,
            format!(
                "unexpected {} ({name} takes one value: {what})",
                extra.show()
            ),
        )),
    }
}

pub(super) fn duration(doc: &Document, w: &Word) -> Result<Duration, ConfigError> {
    parse_duration(&w.text).ok_or_else(|| {
        doc.error(
            w.pos,
            format!("bad duration {} ({DURATION_HINT})", w.show()),
        )
    })
}

/// A setting whose one argument is a count from 1 to `max`.
pub(super) fn count(
    doc: &Document,
    kw: &Word,
    args: &[Word],
    max: u32,
) -> Result<u32, ConfigError> {
    let w = one(doc, kw, args, "a count of at least 1")?;
    let name = kw.as_str().unwrap_or_default();
    Ok(number(doc, w, 1, max.into(), name)? as u32)
}

/// A setting whose one argument is a duration greater than zero.
pub(super) fn positive(doc: &Document, kw: &Word, args: &[Word]) -> Result<Duration, ConfigError> {
    let w = one(doc, kw, args, "a duration like 250ms, 10s, 5m, 1h, 1d")?;
    let d = duration(doc, w)?;
    if d.is_zero() {
        return Err(doc.error(
            w.pos,
            format!("{} must be greater than 0", kw.as_str().unwrap_or_default()),
        ));
    }
    Ok(d)
}

/// `interval` or `retry-interval`: a duration from [`MIN_INTERVAL`] to [`MAX_INTERVAL`].
pub(super) fn interval(doc: &Document, kw: &Word, args: &[Word]) -> Result<Duration, ConfigError> {
    let d = positive(doc, kw, args)?;
    if (MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Ok(d);
    }
    let name = kw.as_str().unwrap_or_default();
    let what = if d < MIN_INTERVAL {
        "too short"
    } else {
        "too long"
    };
    Err(doc.error(
        args[0].pos,
        format!(
            "{name} {} is {what} (expected {} to {})",
            args[0].show().trim_matches('"'),
            show_duration(MIN_INTERVAL),
            show_days(MAX_INTERVAL)
        ),
    ))
}

/// `on-down quiesce|remove`.
pub(super) fn on_down(doc: &Document, kw: &Word, args: &[Word]) -> Result<OnDown, ConfigError> {
    let w = one(doc, kw, args, "quiesce or remove")?;
    match w.as_str() {
        Some("quiesce") => Ok(OnDown::Quiesce),
        Some("remove") => Ok(OnDown::Remove),
        _ => Err(doc.error(
            w.pos,
            format!(
                "unknown on-down value {} (expected one of: quiesce, remove)",
                w.show()
            ),
        )),
    }
}

/// `forward masq|route|tunnel`.
pub(super) fn forward(doc: &Document, kw: &Word, args: &[Word]) -> Result<Forward, ConfigError> {
    let w = one(doc, kw, args, "masq, route or tunnel")?;
    match w.as_str() {
        Some("masq") => Ok(Forward::Masq),
        Some("route") => Ok(Forward::Route),
        Some("tunnel") => Ok(Forward::Tunnel),
        _ => Err(doc.error(
            w.pos,
            format!(
                "unknown forward method {} (expected one of: masq, route, tunnel)",
                w.show()
            ),
        )),
    }
}

/// `scheduler NAME`: 1 to [`MAX_SCHEDULER_LEN`] of `a-z`, `0-9`, `_`, `-` (the kernel knows which exist).
pub(super) fn scheduler(doc: &Document, kw: &Word, args: &[Word]) -> Result<String, ConfigError> {
    let w = one(doc, kw, args, "a scheduler name")?;
    let ok = !w.text.is_empty()
        && w.text.len() <= MAX_SCHEDULER_LEN
        && w.text
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    match w.as_str() {
        Some(s) if ok => Ok(s.to_string()),
        _ => Err(doc.error(
            w.pos,
            format!(
                "bad scheduler name {} (expected 1 to {MAX_SCHEDULER_LEN} of a-z, \
                 0-9, `_`, `-`, like wlc, rr, sh)",
                w.show()
            ),
        )),
    }
}

/// `persistent D`: whole seconds, more than 0, at most [`MAX_PERSISTENT_SECS`].
pub(super) fn persistent(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<Duration, ConfigError> {
    let d = positive(doc, kw, args)?;
    if d > Duration::from_secs(MAX_PERSISTENT_SECS.into()) {
        return Err(doc.error(
            args[0].pos,
            format!(
                "persistent {} is too long (expected at most {MAX_PERSISTENT_SECS}s, \
                 about 49 days: the kernel counts it in clock ticks in 32 bits)",
                args[0].show().trim_matches('"')
            ),
        ));
    }
    if d.subsec_nanos() != 0 {
        return Err(doc.error(
            args[0].pos,
            "expected a whole number of seconds after persistent (IPVS counts \
             persistence in seconds)",
        ));
    }
    Ok(d)
}

/// Addresses that can never be a server: the unspecified address (`0.0.0.0`, `::`; a
/// check of it reaches the director itself), the rest of `0.0.0.0/8`, the broadcast
/// address `255.255.255.255` and multicast groups (`224.0.0.0/4`, `ff00::/8`), the IPv4
/// ones also when written as IPv4-mapped IPv6 (`::ffff:0.0.0.0`).
pub(super) fn usable(doc: &Document, w: &Word, ip: IpAddr, role: &str) -> Result<(), ConfigError> {
    let v4 = match ip {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) => a.to_ipv4_mapped(),
    };
    let why = match (ip, v4) {
        (_, Some(a)) if a.is_unspecified() => Some("the unspecified address"),
        (_, Some(a)) if a.octets()[0] == 0 => Some("in 0.0.0.0/8, which names no host"),
        (_, Some(a)) if a.is_broadcast() => Some("the broadcast address"),
        (_, Some(a)) if a.is_multicast() => Some("a multicast group"),
        (IpAddr::V6(a), None) if a.is_unspecified() => Some("the unspecified address"),
        (IpAddr::V6(a), None) if a.is_multicast() => Some("a multicast group"),
        _ => None,
    };
    match why {
        None => Ok(()),
        Some(why) => Err(doc.error(
            w.pos,
            format!("{ip} cannot be {role}: it is {why} (expected the address of one host)"),
        )),
    }
}

/// `fall N` or `fall N within D`.
pub(super) fn fall(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<(u32, Option<Duration>), ConfigError> {
    let Some(n) = args.first() else {
        return Err(doc.error(
            kw.pos,
            "expected a count after fall (fall N, or fall N within DURATION)",
        ));
    };
    let n = number(doc, n, 1, u32::MAX.into(), "fall")? as u32;
    match &args[1..] {
        [] => Ok((n, None)),
        [within] if within.is("within") => Err(doc.error(
            within.pos,
            "expected a duration after within, like 250ms, 10s, 5m, 1h, 1d",
        )),
        [within, d, rest @ ..] if within.is("within") => {
            let d = duration(doc, d)?;
            if d.is_zero() {
                return Err(doc.error(args[2].pos, "the fall window must be greater than 0"));
            }
            match rest.first() {
                None => Ok((n, Some(d))),
                Some(extra) => Err(doc.error(
                    extra.pos,
                    format!(
                        "unexpected {} (expected the end of the fall line)",
                        extra.show()
                    ),
                )),
            }
        }
        [other, ..] => Err(doc.error(
            other.pos,
            format!(
                "unexpected {} after fall N (expected `within DURATION` or the end of the \
                 line)",
                other.show()
            ),
        )),
    }
}

/// `history raw D minute D hour D`: all three, in that order, each span 0 or more.
pub(super) fn history(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<HistorySpec, ConfigError> {
    const FORM: &str = "history raw DURATION minute DURATION hour DURATION";
    let mut spans = [Duration::ZERO; 3];
    // The word after which the next one is missing, to point at when the line stops early.
    let mut last = kw;
    for (i, level) in ["raw", "minute", "hour"].into_iter().enumerate() {
        let Some(name) = args.get(2 * i) else {
            return Err(doc.error(
                last.pos,
                format!(
                    "expected {level} DURATION after {} ({FORM})",
                    last.show().trim_matches('"')
                ),
            ));
        };
        if !name.is(level) {
            return Err(doc.error(
                name.pos,
                format!("expected {level} here, not {} ({FORM})", name.show()),
            ));
        }
        let Some(value) = args.get(2 * i + 1) else {
            return Err(doc.error(
                name.pos,
                format!("expected a duration after {level}, like 10m, 2h, 2d or 0 ({FORM})"),
            ));
        };
        let d = duration(doc, value)?;
        // The raw ring's length depends on each real's interval and is capped there; a
        // bucket ring's length depends on the span alone, so an oversized one is refused
        // here rather than silently cut.
        let width = match level {
            "minute" => 60,
            "hour" => 3600,
            _ => 0,
        };
        if width != 0 && d.as_nanos().div_ceil(width * 1_000_000_000) > MAX_RING as u128 {
            return Err(doc.error(
                value.pos,
                format!(
                    "history {level} {} is too long (expected at most {MAX_RING} \
                     {level}s, about {} days)",
                    value.show().trim_matches('"'),
                    width * MAX_RING as u128 / 86400
                ),
            ));
        }
        spans[i] = d;
        last = value;
    }
    if let Some(extra) = args.get(6) {
        return Err(doc.error(
            extra.pos,
            format!(
                "unexpected {} (expected the end of the history line)",
                extra.show()
            ),
        ));
    }
    Ok(HistorySpec {
        raw: spans[0],
        minute: spans[1],
        hour: spans[2],
    })
}

/// A decimal number in `min..=max`; `what` names it in messages.
pub(super) fn number(
    doc: &Document,
    w: &Word,
    min: u64,
    max: u64,
    what: &str,
) -> Result<u64, ConfigError> {
    let digits = !w.text.is_empty() && w.text.len() <= 20 && w.text.iter().all(u8::is_ascii_digit);
    let value = if digits {
        w.as_str().and_then(|s| s.parse::<u64>().ok())
    } else {
        None
    };
    if let Some(v) = value.filter(|v| (min..=max).contains(v)) {
        return Ok(v);
    }
    let range = format!("a number {min}..{max}");
    let message = if digits {
        // In range of u64 or not: all digits, so the value is what is wrong.
        format!(
            "{what} {} is out of range (expected {range})",
            w.show().trim_matches('"')
        )
    } else {
        format!("expected {range} for {what}, not {}", w.show())
    };
    Err(doc.error(w.pos, message))
}

/// `virtual fwmark N`: 1..=u32::MAX, decimal or `0x` hexadecimal.
pub(super) fn fwmark(doc: &Document, w: &Word) -> Result<u32, ConfigError> {
    let hex = w
        .as_str()
        .and_then(|s| s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")));
    let value = match hex {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(h, 16).ok()
        }
        Some(_) => None,
        None if !w.text.is_empty() && w.text.iter().all(u8::is_ascii_digit) => w
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .or(Some(u64::MAX)),
        None => None,
    };
    match value {
        Some(v) if (1..=u64::from(u32::MAX)).contains(&v) => Ok(v as u32),
        Some(_) => Err(doc.error(
            w.pos,
            format!(
                "fwmark {} is out of range (expected 1..4294967295)",
                w.show().trim_matches('"')
            ),
        )),
        None => Err(doc.error(
            w.pos,
            format!(
                "expected a mark number 1..4294967295 after fwmark, not {}",
                w.show()
            ),
        )),
    }
}

/// `a.b.c.d[:PORT]`, `[v6][:PORT]` or a bare IPv6 address (no port). Link-local IPv6
/// addresses are refused: neither an IPVS destination nor a check target carries the
/// interface (scope id) such an address needs.
pub(super) fn endpoint(
    doc: &Document,
    w: &Word,
    need_port: bool,
) -> Result<(IpAddr, Option<u16>), ConfigError> {
    let (ip, port) = endpoint_any(doc, w, need_port)?;
    if let IpAddr::V6(v6) = ip {
        if v6.segments()[0] & 0xffc0 == 0xfe80 {
            return Err(doc.error(
                w.pos,
                format!(
                    "link-local address {v6} cannot be used: IPVS destinations and checks \
                     carry no interface (scope id); use a global or ULA (fd00::/8) address"
                ),
            ));
        }
    }
    Ok((ip, port))
}

/// [`endpoint`] without the link-local rule.
pub(super) fn endpoint_any(
    doc: &Document,
    w: &Word,
    need_port: bool,
) -> Result<(IpAddr, Option<u16>), ConfigError> {
    let form = if need_port {
        "ADDR:PORT, like 192.0.2.1:80 or [2001:db8::1]:80"
    } else {
        "ADDR[:PORT], like 192.0.2.1:80 or [2001:db8::1]:80"
    };
    let Some(s) = w.as_str() else {
        return Err(doc.error(w.pos, format!("expected an IP address ({form})")));
    };
    let (ip, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return Err(doc.error(
                w.pos,
                format!(
                    "expected `]` after the IPv6 address in {} ({form})",
                    w.show()
                ),
            ));
        };
        no_scope_id(doc, w, &rest[..end])?;
        let ip: Ipv6Addr = rest[..end].parse().map_err(|_| {
            doc.error(
                w.pos,
                format!(
                    "expected an IPv6 address inside [ ], not {:?}",
                    &rest[..end]
                ),
            )
        })?;
        let after = &rest[end + 1..];
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(port(doc, w, p)?)
        } else {
            return Err(doc.error(
                w.pos,
                format!("expected `:PORT` or nothing after `]`, not {after:?} ({form})"),
            ));
        };
        (IpAddr::V6(ip), port)
    } else if s.bytes().filter(|&b| b == b':').count() >= 2 {
        no_scope_id(doc, w, s)?;
        let ip: Ipv6Addr = s.parse().map_err(|_| {
            doc.error(
                w.pos,
                format!("expected an IP address, not {} ({form})", w.show()),
            )
        })?;
        if need_port {
            return Err(doc.error(
                w.pos,
                format!(
                    "missing port (expected {form}; an IPv6 address with a port is \
                     written [ADDR]:PORT)"
                ),
            ));
        }
        (IpAddr::V6(ip), None)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        let ip: Ipv4Addr = host.parse().map_err(|_| {
            if host.bytes().any(|b| b.is_ascii_alphabetic()) {
                doc.error(
                    w.pos,
                    format!(
                        "expected an IP address, not the host name {host:?} (lvsmon \
                         resolves no names)"
                    ),
                )
            } else {
                doc.error(
                    w.pos,
                    format!("expected an IP address like 192.0.2.1, not {host:?} ({form})"),
                )
            }
        })?;
        let port = match port {
            Some(p) => Some(self::port(doc, w, p)?),
            None => None,
        };
        (IpAddr::V4(ip), port)
    };
    if need_port && port.is_none() {
        return Err(doc.error(w.pos, format!("missing port (expected {form})")));
    }
    Ok((ip, port))
}

/// An IPv6 address with a zone (`fe80::1%eth0`) is refused with its reason: neither an
/// IPVS destination nor lvsmon's checks carry a scope id, so the interface would be lost.
pub(super) fn no_scope_id(doc: &Document, w: &Word, addr: &str) -> Result<(), ConfigError> {
    let Some((ip, zone)) = addr.split_once('%') else {
        return Ok(());
    };
    Err(doc.error(
        w.pos,
        format!(
            "IPv6 scope id %{zone} in {ip}%{zone} cannot be used: IPVS destinations and \
             lvsmon's checks carry no interface (expected a global or ULA address, without \
             %ZONE)"
        ),
    ))
}

/// A port number 1..=65535 written as `p` inside word `w`.
pub(super) fn port(doc: &Document, w: &Word, p: &str) -> Result<u16, ConfigError> {
    if p.is_empty() || p.len() > 10 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(doc.error(
            w.pos,
            format!("expected a port number 1..65535, not {p:?} in {}", w.show()),
        ));
    }
    match p.parse::<u64>() {
        Ok(n @ 1..=65535) => Ok(n as u16),
        _ => Err(doc.error(
            w.pos,
            format!("port {p} is out of range (expected 1..65535)"),
        )),
    }
}

/// `sorry ADDR:PORT`'s options after the address: `--mode replace|add`, `--forward
/// masq|route|tunnel` (defaults `replace`, `masq`).
pub(super) fn sorry_options(
    doc: &Document,
    opts: &[Word],
) -> Result<(SorryMode, Forward), ConfigError> {
    let (mut mode, mut forward) = (None, None);
    let mut i = 0;
    while i < opts.len() {
        let o = &opts[i];
        let Some(v) = opts.get(i + 1) else {
            return Err(doc.error(
                o.pos,
                format!("expected a value after {} (sorry ADDR:PORT [--mode replace|add] [--forward masq|route|tunnel])", o.show()),
            ));
        };
        match (o.as_str(), v.as_str()) {
            (Some("--mode"), _) if mode.is_some() => {
                return Err(doc.error(o.pos, "--mode given twice"))
            }
            (Some("--forward"), _) if forward.is_some() => {
                return Err(doc.error(o.pos, "--forward given twice"))
            }
            (Some("--mode"), Some("replace")) => mode = Some(SorryMode::Replace),
            (Some("--mode"), Some("add")) => mode = Some(SorryMode::Add),
            (Some("--mode"), _) => {
                return Err(doc.error(
                    v.pos,
                    format!("unknown sorry mode {} (expected replace or add)", v.show()),
                ))
            }
            (Some("--forward"), Some("masq")) => forward = Some(Forward::Masq),
            (Some("--forward"), Some("route")) => forward = Some(Forward::Route),
            (Some("--forward"), Some("tunnel")) => forward = Some(Forward::Tunnel),
            (Some("--forward"), _) => {
                return Err(doc.error(
                    v.pos,
                    format!(
                        "unknown forward method {} (expected one of: masq, route, tunnel)",
                        v.show()
                    ),
                ))
            }
            _ => {
                return Err(doc.error(
                    o.pos,
                    format!(
                        "unexpected {} after the sorry server (expected --mode or --forward)",
                        o.show()
                    ),
                ))
            }
        }
        i += 2;
    }
    Ok((
        mode.unwrap_or(SorryMode::Replace),
        forward.unwrap_or(Forward::Masq),
    ))
}

/// `slow-above D cancel-below D [slow-weight P%]`: `cancel-below` below `slow-above`, `P` from
/// 0 to 100 (default 25).
pub(super) fn slow(doc: &Document, kw: &Word, args: &[Word]) -> Result<Slow, ConfigError> {
    const FORM: &str = "slow-above D cancel-below D [slow-weight P%]";
    let above_w = args.first().ok_or_else(|| {
        doc.error(
            kw.pos,
            format!("expected a duration after slow-above ({FORM})"),
        )
    })?;
    let above = duration(doc, above_w)?;
    if above.is_zero() {
        return Err(doc.error(above_w.pos, "slow-above must be greater than 0"));
    }
    let (below_w, below) = match (args.get(1), args.get(2)) {
        (Some(k), Some(w)) if k.as_str() == Some("cancel-below") => (w, duration(doc, w)?),
        (Some(k), None) if k.as_str() == Some("cancel-below") => {
            return Err(doc.error(
                k.pos,
                format!("expected a duration after cancel-below ({FORM})"),
            ))
        }
        (Some(k), _) => {
            return Err(doc.error(
                k.pos,
                format!(
                    "expected cancel-below after slow-above's duration, not {} ({FORM})",
                    k.show()
                ),
            ))
        }
        (None, _) => {
            return Err(doc.error(
                above_w.pos,
                format!("expected cancel-below D after slow-above's duration ({FORM})"),
            ))
        }
    };
    if below >= above {
        return Err(doc.error(
            below_w.pos,
            format!(
                "cancel-below {} must be below slow-above {} (a real is SLOW above the first and \
                 back below the second)",
                show_duration(below),
                show_duration(above)
            ),
        ));
    }
    let mut percent = 25u16;
    match (args.get(3), args.get(4)) {
        (None, _) => {}
        (Some(k), Some(w)) if k.as_str() == Some("slow-weight") => {
            let t = w.text.strip_suffix(b"%").unwrap_or(&[]);
            let p = std::str::from_utf8(t)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && t.len() <= 3)
                .and_then(|t| t.parse::<u16>().ok())
                .filter(|&p| p <= 100);
            percent = p.ok_or_else(|| {
                doc.error(
                    w.pos,
                    format!(
                        "expected a percentage 0%..100% after slow-weight, not {}",
                        w.show()
                    ),
                )
            })?;
        }
        (Some(k), None) if k.as_str() == Some("slow-weight") => {
            return Err(doc.error(
                k.pos,
                format!("expected a percentage after slow-weight ({FORM})"),
            ))
        }
        (Some(k), _) => {
            return Err(doc.error(k.pos, format!("unexpected {} ({FORM})", k.show())));
        }
    }
    if let Some(extra) = args.get(5) {
        return Err(doc.error(extra.pos, format!("unexpected {} ({FORM})", extra.show())));
    }
    Ok(Slow {
        above,
        below,
        percent,
    })
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::super::test_support::*;
    use super::*;

    // Durations

    #[test]
    fn durations_of_every_form() {
        let cases: &[(&str, Duration)] = &[
            ("250ms", ms(250)),
            ("10s", secs(10)),
            ("5m", secs(300)),
            ("1h", secs(3600)),
            ("1d", secs(86400)),
            ("10", secs(10)),
            ("1.5s", ms(1500)),
            ("0.25", ms(250)),
            ("0.5ms", Duration::from_micros(500)),
            ("1.25m", secs(75)),
            ("0.1h", secs(360)),
            ("0", Duration::ZERO),
            ("007s", secs(7)),
            ("0.000000001", Duration::from_nanos(1)),
            ("0.0000000019", Duration::from_nanos(1)),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_duration(text.as_bytes()), Some(want), "{text}");
        }
        for bad in [
            "",
            "s",
            "1.s",
            ".5",
            "5x",
            "1 s",
            "-1",
            "+1",
            "1e3",
            "5sec",
            "1ms5",
            "1.5.5",
            "5S",
            "99999999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_in_the_config() {
        let p = plan_text(
            "interval 0.25\nretry-interval 250ms\ntimeout 1.5s\nconnect-timeout 1\n\
             down-after 1d\nfall 2 within 5m\nresync 1h\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n}\n",
        );
        let c = &p.checks[0];
        assert_eq!(
            (c.interval, c.retry_interval, c.timeout, c.connect_timeout),
            (ms(250), ms(250), ms(1500), secs(1))
        );
        let t = p.reals[0].thresholds;
        assert_eq!(
            (t.fall, t.within, t.down_after),
            (2, Some(secs(300)), Some(secs(86400)))
        );
        assert_eq!(p.resync, secs(3600));
        expect_error(
            "timeout 5 s\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            11,
            "unexpected \"s\"",
        );
        expect_error(
            "down-after soon\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            12,
            DURATION_HINT,
        );
        expect_error(
            "fall 2 within 0s\nvirtual tcp 192.0.2.1:80 {\n}\n",
            1,
            15,
            "greater than 0",
        );
    }

    // History spans

    #[test]
    fn history_errors_point_at_the_word() {
        let v = "\nvirtual tcp 192.0.2.1:80 {\n}\n";
        let cases: &[(&str, u32, &str)] = &[
            (
                "history",
                1,
                "expected raw DURATION after history (history raw DURATION",
            ),
            ("history raw", 9, "expected a duration after raw"),
            ("history raw 10m", 13, "expected minute DURATION after 10m"),
            (
                "history raw 10m minute",
                17,
                "expected a duration after minute",
            ),
            (
                "history raw 10m minute 2h",
                24,
                "expected hour DURATION after 2h",
            ),
            (
                "history raw 10m minute 2h hour",
                27,
                "expected a duration after hour",
            ),
            (
                "history minute 2h raw 10m hour 2d",
                9,
                "expected raw here, not \"minute\"",
            ),
            (
                "history raw 10m hour 2d minute 2h",
                17,
                "expected minute here, not \"hour\"",
            ),
            (
                "history raw 10m minute 2h day 2d",
                27,
                "expected hour here, not \"day\"",
            ),
            (
                "history raw ten minute 2h hour 2d",
                13,
                "bad duration \"ten\"",
            ),
            (
                "history raw -1s minute 2h hour 2d",
                13,
                "bad duration \"-1s\"",
            ),
            (
                "history raw 10m minute 2h hour 2x",
                32,
                "bad duration \"2x\"",
            ),
            (
                "history raw 10m minute 2h hour 2d 1d",
                35,
                "unexpected \"1d\" (expected the end",
            ),
            (
                "history raw 10m minute 46d hour 2d",
                24,
                "history minute 46d is too long (expected at most 65535 minutes, about 45 days)",
            ),
            (
                "history raw 10m minute 2h hour 2731d",
                32,
                "history hour 2731d is too long",
            ),
            ("history 10m 2h 2d", 9, "expected raw here, not \"10m\""),
        ];
        for &(line, col, part) in cases {
            expect_error(&format!("{line}{v}"), 1, col, part);
        }
        expect_error(
            "history raw 1m minute 1h hour 1d\nhistory raw 1m minute 1h hour 1d\n",
            2,
            1,
            "history already set at ",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n history raw 1m minute 1h hour 1d\n}\n",
            2,
            2,
            "history is not allowed in a virtual block (only at the top level)",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n real 198.51.100.1 {\n  history raw 0 minute 0 hour 0\n }\n}\n",
            3,
            3,
            "history is not allowed in a real block",
        );
    }

    // Addresses, ports and marks

    #[test]
    fn address_errors() {
        let v = |a: &str| format!("virtual tcp {a} {{\n}}\n");
        expect_error(&v("[2001:db8::1]"), 1, 13, "missing port");
        expect_error(&v("2001:db8::1"), 1, 13, "written [ADDR]:PORT");
        expect_error(
            &v("[2001:db8::x]:80"),
            1,
            13,
            "expected an IPv6 address inside [ ]",
        );
        expect_error(
            &v("[2001:db8::1]80"),
            1,
            13,
            "expected `:PORT` or nothing after `]`",
        );
        expect_error(
            &v("192.0.2.1:http"),
            1,
            13,
            "expected a port number 1..65535, not \"http\"",
        );
        expect_error(&v("192.0.2.1:"), 1, 13, "expected a port number");
        expect_error(
            &v("192.0.2:80"),
            1,
            13,
            "expected an IP address like 192.0.2.1",
        );
        expect_error(&v("localhost:80"), 1, 13, "not the host name \"localhost\"");
        expect_error(
            &v("[www.example.com]:80"),
            1,
            13,
            "expected an IPv6 address inside [ ]",
        );
        expect_error(
            &v("192.0.2.1:99999999999999"),
            1,
            13,
            "expected a port number",
        );
        expect_error(
            "virtual fwmark 4294967296 {\n}\n",
            1,
            16,
            "fwmark 4294967296 is out of range",
        );
        expect_error("virtual fwmark x2 {\n}\n", 1, 16, "expected a mark number");
    }

    #[test]
    fn addresses_that_are_never_servers() {
        let real = |a: &str| format!("virtual udp 192.0.2.1:53 {{\n  real {a}\n}}\n");
        for (addr, why) in [
            (
                "0.0.0.0:9500",
                "0.0.0.0 cannot be a real server: it is the unspecified address",
            ),
            (
                "0.1.2.3",
                "0.1.2.3 cannot be a real server: it is in 0.0.0.0/8",
            ),
            ("255.255.255.255", "it is the broadcast address"),
            (
                "224.0.0.1",
                "224.0.0.1 cannot be a real server: it is a multicast group",
            ),
            (
                "[::ffff:0.0.0.0]:53",
                "::ffff:0.0.0.0 cannot be a real server: it is the unspecified",
            ),
            ("[::ffff:239.0.0.1]:53", "it is a multicast group"),
        ] {
            expect_error(&real(addr), 2, 8, why);
        }
        let real6 = |a: &str| format!("virtual udp [2001:db8::1]:53 {{\n  real {a}\n}}\n");
        expect_error(&real6("[::]:53"), 2, 8, ":: cannot be a real server");
        expect_error(
            &real6("ff05::1:3"),
            2,
            8,
            "ff05::1:3 cannot be a real server: it is a multicast",
        );
        expect_error(
            "virtual tcp 0.0.0.0:80 {\n}\n",
            1,
            13,
            "0.0.0.0 cannot be a virtual service: it is the unspecified address",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  check tcp --address=224.1.1.1\n  real 192.0.2.9\n}\n",
            2,
            13,
            "224.1.1.1 cannot be a check target: it is a multicast group",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  sorry 0.0.0.0:80\n  real 192.0.2.9\n}\n",
            2,
            9,
            "0.0.0.0 cannot be a sorry server",
        );
        // Loopback and private addresses are servers like any other.
        plan_text("virtual tcp 127.0.0.1:80 {\n  real 127.0.0.2\n  real 10.0.0.1\n}\n");
    }

    #[test]
    fn scope_ids_are_refused_with_their_reason() {
        for (line, col, text) in [
            (2, 8, "virtual tcp [2001:db8::1]:80 {\n  real [fe80::1%eth0]:80\n}\n"),
            (2, 8, "virtual tcp [2001:db8::1]:80 {\n  real fe80::1%2\n}\n"),
            (2, 23, "virtual tcp [2001:db8::1]:80 {\n  check tcp --address [fe80::1%eth0]\n  real 2001:db8::2\n}\n"),
        ] {
            let (l, c, m) = error(text);
            assert_eq!((l, c), (line, col), "{m}");
            assert!(m.starts_with("IPv6 scope id %") && m.contains("carry no interface"), "{m}");
        }
    }

    // Ranges

    #[test]
    fn intervals_have_a_minimum_and_a_maximum() {
        let p = plan_text(
            "interval 50ms\nretry-interval 1d\nvirtual tcp 192.0.2.1:80 {\n  real 192.0.2.9\n}\n",
        );
        assert_eq!(p.checks[0].interval, MIN_INTERVAL);
        assert_eq!(p.checks[0].retry_interval, MAX_INTERVAL);
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  interval 49ms\n  real 192.0.2.9\n}\n",
            2,
            12,
            "interval 49ms is too short (expected 50ms to 1d)",
        );
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  real 192.0.2.9 {\n    retry-interval 86401\n  }\n}\n",
            3,
            20,
            "retry-interval 86401 is too long (expected 50ms to 1d)",
        );
        // --interval: the same limits.
        let dir = TempDir::new("override");
        let path = dir.write(
            "main.conf",
            "virtual tcp 192.0.2.1:80 {\n  real 192.0.2.9\n}\n",
        );
        for bad in [Duration::from_millis(10), Duration::ZERO, secs(86_401)] {
            let e = load(&path, Some(bad)).unwrap_err().to_string();
            assert!(
                e.contains("is out of range (expected 0.05 to 86400 seconds)"),
                "{e}"
            );
        }
    }

    #[test]
    fn numbers_out_of_range_name_the_range() {
        expect_error(
            "rise 4294967296\nvirtual tcp 192.0.2.1:80 {\n  real 192.0.2.9\n}\n",
            1,
            6,
            "rise 4294967296 is out of range (expected a number 1..4294967295)",
        );
        expect_error(
            "notify-max 1025\nvirtual tcp 192.0.2.1:80 {\n  real 192.0.2.9\n}\n",
            1,
            12,
            "notify-max 1025 is out of range (expected a number 1..1024)",
        );
        let p = plan_text("notify-max 1024\nvirtual tcp 192.0.2.1:80 {\n  persistent 4294967\n  real 192.0.2.9\n}\n");
        assert_eq!(p.notify_max, MAX_NOTIFY_MAX);
        assert_eq!(p.virtuals[0].persistent, Some(secs(4_294_967)));
        expect_error(
            "virtual tcp 192.0.2.1:80 {\n  persistent 4294968\n  real 192.0.2.9\n}\n",
            2,
            14,
            "persistent 4294968 is too long (expected at most 4294967s, about 49 days",
        );
    }
}
