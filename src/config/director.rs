//! The settings of a director that lives in a pair (lvsmon.conf(5), IPVS ATTRIBUTES and
//! DIRECTOR PAIRS): the IPVS attributes the config may own (connection thresholds,
//! persistence netmask, one-packet scheduling, scheduler flags, tunnel encapsulation), the
//! kernel's connection timeouts, the connection-sync daemon and the VRRP track file.
//!
//! Each function reads one statement's words into a typed value with a message that names the
//! word at fault; [`super::plan`] decides where they may stand and how they override.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse::{Document, Word};
use super::values;
use super::ConfigError;

/// A tunnel's encapsulation: `forward tunnel [ipip|gue PORT|gre] [csum|remcsum]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tunnel {
    /// Which encapsulation.
    pub kind: TunnelKind,
    /// The GUE destination port (0 for the others).
    pub port: u16,
    /// Checksums of the outer header.
    pub csum: TunnelCsum,
}

/// IPVS's tunnel types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    /// IP in IP (the kernel's default).
    Ipip,
    /// Generic UDP encapsulation, to a port.
    Gue,
    /// GRE.
    Gre,
}

/// IPVS's tunnel checksum options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelCsum {
    /// No checksum.
    None,
    /// An outer checksum.
    Csum,
    /// Remote checksum offload (GUE only).
    Remcsum,
}

/// `sched-flags`: the scheduler flags a virtual owns, as IPVS's bits (`sh-fallback` and
/// `mh-fallback` are the same bit, as are `sh-port` and `mh-port`).
pub const SCHED_FALLBACK: u32 = 0x08;
/// See [`SCHED_FALLBACK`].
pub const SCHED_PORT: u32 = 0x10;

/// `ipvs-timeouts tcp D tcpfin D udp D`: the kernel's connection timeouts, each optional (not
/// given: left as the kernel has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpvsTimeouts {
    /// Established TCP connections.
    pub tcp: Option<Duration>,
    /// TCP after FIN.
    pub tcpfin: Option<Duration>,
    /// UDP.
    pub udp: Option<Duration>,
}

/// `sync-daemon master|backup IFACE [id N] [maxlen N] [group ADDR] [port N] [ttl N]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SyncDaemon {
    /// Backup (receives) rather than master (sends).
    pub backup: bool,
    /// The interface the sync messages travel on (at most 15 bytes).
    pub iface: String,
    /// The sync id (0..255): both directors of a pair use the same.
    pub id: u8,
    /// Largest sync message, bytes (0: the kernel's default).
    pub maxlen: u16,
    /// Multicast group (`None`: the kernel's default, 224.0.0.81).
    pub group: Option<IpAddr>,
    /// UDP port (0: the kernel's default, 8848).
    pub port: u16,
    /// Multicast TTL (0: the kernel's default, 1).
    pub ttl: u8,
}

impl SyncDaemon {
    /// A daemon with the kernel's defaults for every optional setting (tests build many).
    #[cfg(test)]
    pub(crate) fn with_defaults(backup: bool, iface: &str, id: u8) -> SyncDaemon {
        SyncDaemon {
            backup,
            iface: iface.into(),
            id,
            maxlen: 0,
            group: None,
            port: 0,
            ttl: 0,
        }
    }

    /// `master` or `backup`.
    pub fn state(&self) -> &'static str {
        if self.backup {
            "backup"
        } else {
            "master"
        }
    }
}

/// `track-file PATH [--weight N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFile {
    /// The file keepalived's `track_file` reads.
    pub path: PathBuf,
    /// Written as `-N` while some virtual lacks quorum.
    pub weight: u32,
}

/// What a director of a pair sets once for the whole daemon (all global).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Director {
    /// `sync-daemon` lines: at most one master and one backup.
    pub sync_daemons: Vec<SyncDaemon>,
    /// `track-file`.
    pub track_file: Option<TrackFile>,
    /// `ipvs-timeouts`.
    pub ipvs_timeouts: Option<IpvsTimeouts>,
}

fn name(kw: &Word) -> &str {
    kw.as_str().unwrap_or_default()
}

/// `u-threshold N` / `l-threshold N`: a connection count (0 = no limit).
pub(super) fn threshold(doc: &Document, kw: &Word, args: &[Word]) -> Result<u32, ConfigError> {
    let w = values::one(doc, kw, args, "a number of connections (0: no limit)")?;
    Ok(values::number(doc, w, 0, i32::MAX as u64, name(kw))? as u32)
}

/// `persistence-netmask N`: a prefix length, or for IPv4 a dotted mask (`255.255.255.0`).
/// `v6` says the virtual's family. Returns the prefix length.
pub(super) fn netmask(
    doc: &Document,
    kw: &Word,
    args: &[Word],
    v6: bool,
) -> Result<u8, ConfigError> {
    let w = values::one(doc, kw, args, "a prefix length (or an IPv4 mask)")?;
    if let Some(Ok(std::net::IpAddr::V4(m))) = w.as_str().map(str::parse::<IpAddr>) {
        let bits = u32::from(m);
        if v6 || bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(doc.error(
                w.pos,
                format!(
                    "bad persistence-netmask {} (expected a prefix length{}, or a contiguous \
                     IPv4 mask such as 255.255.255.0)",
                    w.show(),
                    if v6 {
                        " 1..128 for an IPv6 virtual"
                    } else {
                        ""
                    }
                ),
            ));
        }
        return Ok(bits.leading_ones() as u8);
    }
    let (min, max) = if v6 { (1, 128) } else { (0, 32) };
    Ok(values::number(doc, w, min, max, "persistence-netmask")? as u8)
}

/// `one-packet yes|no`.
pub(super) fn yes_no(doc: &Document, kw: &Word, args: &[Word]) -> Result<bool, ConfigError> {
    let w = values::one(doc, kw, args, "yes or no")?;
    match w.as_str() {
        Some("yes") => Ok(true),
        Some("no") => Ok(false),
        _ => Err(doc.error(
            w.pos,
            format!(
                "unknown {} value {} (expected yes or no)",
                name(kw),
                w.show()
            ),
        )),
    }
}

/// `sched-flags WORD,...` (or `none`): the bits and the scheduler they need (`sh`, `mh`, or
/// `None` for `none`).
pub(super) fn sched_flags(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<(u32, Option<&'static str>), ConfigError> {
    let w = values::one(
        doc,
        kw,
        args,
        "flags separated by commas: sh-fallback, sh-port, mh-fallback, mh-port, or none",
    )?;
    let text = w.as_str().unwrap_or_default();
    if text == "none" {
        return Ok((0, None));
    }
    let (mut bits, mut sched) = (0u32, None);
    for part in text.split(',') {
        let (s, bit) = match part {
            "sh-fallback" => ("sh", SCHED_FALLBACK),
            "sh-port" => ("sh", SCHED_PORT),
            "mh-fallback" => ("mh", SCHED_FALLBACK),
            "mh-port" => ("mh", SCHED_PORT),
            _ => {
                return Err(doc.error(
                    w.pos,
                    format!(
                        "unknown scheduler flag {part:?} in {} (expected sh-fallback, sh-port, \
                         mh-fallback, mh-port, or none)",
                        w.show()
                    ),
                ))
            }
        };
        if sched.is_some_and(|x| x != s) {
            return Err(doc.error(
                w.pos,
                format!(
                    "sched-flags {} mixes sh- and mh- flags (expected the flags of one scheduler)",
                    w.show()
                ),
            ));
        }
        sched = Some(s);
        bits |= bit;
    }
    Ok((bits, sched))
}

/// `forward tunnel [ipip|gue PORT|gre] [csum|remcsum]`: the words after `tunnel`.
pub(super) fn tunnel(doc: &Document, args: &[Word]) -> Result<Option<Tunnel>, ConfigError> {
    let Some(first) = args.first() else {
        return Ok(None);
    };
    let mut rest = &args[1..];
    let (kind, port) = match first.as_str() {
        Some("ipip") => (TunnelKind::Ipip, 0),
        Some("gre") => (TunnelKind::Gre, 0),
        Some("gue") => {
            let Some(p) = rest.first() else {
                return Err(doc.error(first.pos, "expected a port after gue (gue PORT)"));
            };
            rest = &rest[1..];
            (
                TunnelKind::Gue,
                values::port(doc, p, p.as_str().unwrap_or_default())?,
            )
        }
        _ => {
            return Err(doc.error(
                first.pos,
                format!(
                    "unknown tunnel type {} (expected ipip, gue PORT or gre)",
                    first.show()
                ),
            ))
        }
    };
    let csum = match rest {
        [] => TunnelCsum::None,
        [w, ..] if w.is("csum") || w.is("remcsum") => {
            if kind == TunnelKind::Ipip || (w.is("remcsum") && kind != TunnelKind::Gue) {
                return Err(doc.error(
                    w.pos,
                    format!(
                        "{} does not apply to this tunnel (csum: gue or gre; remcsum: gue)",
                        w.show()
                    ),
                ));
            }
            if w.is("csum") {
                TunnelCsum::Csum
            } else {
                TunnelCsum::Remcsum
            }
        }
        [w, ..] => {
            return Err(doc.error(
                w.pos,
                format!("unexpected {} (expected csum or remcsum)", w.show()),
            ))
        }
    };
    if let Some(extra) = rest.get(1) {
        return Err(doc.error(
            extra.pos,
            format!("unexpected {} at the end of forward tunnel", extra.show()),
        ));
    }
    Ok(Some(Tunnel { kind, port, csum }))
}

/// `ipvs-timeouts tcp D tcpfin D udp D` (any of the three, each once, whole seconds).
pub(super) fn ipvs_timeouts(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<IpvsTimeouts, ConfigError> {
    if args.is_empty() {
        return Err(doc.error(
            kw.pos,
            "expected timeouts after ipvs-timeouts (ipvs-timeouts tcp D tcpfin D udp D)",
        ));
    }
    let mut t = IpvsTimeouts::default();
    let mut i = 0;
    while i < args.len() {
        let w = &args[i];
        let slot = match w.as_str() {
            Some("tcp") => &mut t.tcp,
            Some("tcpfin") => &mut t.tcpfin,
            Some("udp") => &mut t.udp,
            _ => {
                return Err(doc.error(
                    w.pos,
                    format!("unknown timeout {} (expected tcp, tcpfin or udp)", w.show()),
                ))
            }
        };
        if slot.is_some() {
            return Err(doc.error(w.pos, format!("{} given twice", w.show())));
        }
        let Some(v) = args.get(i + 1) else {
            return Err(doc.error(w.pos, format!("expected a duration after {}", w.show())));
        };
        let d = values::duration(doc, v)?;
        if d.is_zero() || d.subsec_nanos() != 0 || d.as_secs() > u32::MAX as u64 {
            return Err(doc.error(
                v.pos,
                format!(
                    "bad timeout {} (expected a whole number of seconds, at least 1s)",
                    v.show()
                ),
            ));
        }
        *slot = Some(d);
        i += 2;
    }
    Ok(t)
}

/// `sync-daemon master|backup IFACE [id N] [maxlen N] [group ADDR] [port N] [ttl N]`.
pub(super) fn sync_daemon(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<SyncDaemon, ConfigError> {
    const USAGE: &str =
        "sync-daemon master|backup IFACE [id N] [maxlen N] [group ADDR] [port N] [ttl N]";
    let Some(state) = args.first() else {
        return Err(doc.error(kw.pos, format!("expected master or backup ({USAGE})")));
    };
    let backup = match state.as_str() {
        Some("master") => false,
        Some("backup") => true,
        _ => {
            return Err(doc.error(
                state.pos,
                format!(
                    "unknown sync-daemon state {} (expected master or backup)",
                    state.show()
                ),
            ))
        }
    };
    let Some(iface) = args.get(1) else {
        return Err(doc.error(state.pos, format!("expected an interface name ({USAGE})")));
    };
    let ifname = iface.as_str().unwrap_or_default();
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        return Err(doc.error(
            iface.pos,
            format!(
                "bad interface name {} (expected 1 to 15 printable bytes, no / or :)",
                iface.show()
            ),
        ));
    }
    let mut d = SyncDaemon {
        backup,
        iface: ifname.to_string(),
        id: 0,
        maxlen: 0,
        group: None,
        port: 0,
        ttl: 0,
    };
    let mut seen: Vec<&str> = Vec::new();
    let mut i = 2;
    while i < args.len() {
        let w = &args[i];
        let opt = w.as_str().unwrap_or_default();
        if !["id", "maxlen", "group", "port", "ttl"].contains(&opt) {
            return Err(doc.error(
                w.pos,
                format!(
                    "unknown sync-daemon option {} (expected id, maxlen, group, port or ttl)",
                    w.show()
                ),
            ));
        }
        if seen.contains(&opt) {
            return Err(doc.error(w.pos, format!("{opt} given twice")));
        }
        seen.push(opt);
        let Some(v) = args.get(i + 1) else {
            return Err(doc.error(w.pos, format!("expected a value after {opt}")));
        };
        match opt {
            "id" => d.id = values::number(doc, v, 0, 255, "sync-daemon id")? as u8,
            "maxlen" => d.maxlen = values::number(doc, v, 1, 65535, "sync-daemon maxlen")? as u16,
            "port" => d.port = values::number(doc, v, 1, 65535, "sync-daemon port")? as u16,
            "ttl" => d.ttl = values::number(doc, v, 1, 255, "sync-daemon ttl")? as u8,
            _ => match v.as_str().map(str::parse::<IpAddr>) {
                Some(Ok(ip)) if ip.is_multicast() => d.group = Some(ip),
                _ => {
                    return Err(doc.error(
                        v.pos,
                        format!(
                            "bad sync-daemon group {} (expected a multicast address such as \
                             224.0.0.81)",
                            v.show()
                        ),
                    ))
                }
            },
        }
        i += 2;
    }
    Ok(d)
}

/// `track-file PATH [--weight N]`.
pub(super) fn track_file(
    doc: &Document,
    kw: &Word,
    args: &[Word],
) -> Result<TrackFile, ConfigError> {
    let Some(p) = args.first() else {
        return Err(doc.error(
            kw.pos,
            "expected a path after track-file (track-file PATH [--weight N])",
        ));
    };
    let text = p.as_str().unwrap_or_default();
    if !text.starts_with('/') || text.ends_with('/') {
        return Err(doc.error(
            p.pos,
            format!(
                "expected an absolute path to a file after track-file, not {}",
                p.show()
            ),
        ));
    }
    let weight = match &args[1..] {
        [] => 100,
        [o, n] if o.is("--weight") => values::number(doc, n, 1, 254, "track-file --weight")? as u32,
        [o] if o.is("--weight") => {
            return Err(doc.error(o.pos, "expected a number after --weight (1..254)"))
        }
        [w, ..] => {
            return Err(doc.error(
                w.pos,
                format!("unexpected {} (track-file PATH [--weight N])", w.show()),
            ))
        }
    };
    Ok(TrackFile {
        path: PathBuf::from(text),
        weight,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn owned_ipvs_attributes_override_like_the_others() {
        let p = plan_text(
            "u-threshold 100\nforward tunnel gue 6080 csum\n\
             virtual udp 192.0.2.1:53 {\n l-threshold 50\n persistence-netmask 255.255.255.0\n \
             persistent 300\n one-packet yes\n scheduler sh\n sched-flags sh-port,sh-fallback\n \
             real 10.0.0.1\n real 10.0.0.2 {\n  u-threshold 50\n  forward tunnel\n }\n \
             real 10.0.0.3 {\n  forward route\n }\n}\n\
             virtual tcp 192.0.2.1:80 {\n real 10.0.0.1\n}\n",
        );
        let (v, w) = (&p.virtuals[0], &p.virtuals[1]);
        assert_eq!(
            (v.netmask, v.one_packet, v.sched_flags),
            (Some(24), Some(true), Some(0x18))
        );
        assert_eq!((w.netmask, w.one_packet, w.sched_flags), (None, None, None));
        let gue = Tunnel {
            kind: TunnelKind::Gue,
            port: 6080,
            csum: TunnelCsum::Csum,
        };
        let r: Vec<_> = p
            .reals
            .iter()
            .map(|r| (r.u_threshold, r.l_threshold, r.tunnel))
            .collect();
        assert_eq!(
            r,
            [
                (Some(100), Some(50), Some(gue)),
                // Its own `forward tunnel` names no type: the kernel's is kept.
                (Some(50), Some(50), None),
                (Some(100), Some(50), None),
                (Some(100), None, Some(gue)),
            ]
        );
        assert_eq!(p.director, Director::default());
    }

    #[test]
    fn global_director_settings() {
        let p = plan_text(
            "sync-daemon master eth1 id 7 maxlen 1400 group 239.1.1.1 port 9000 ttl 2\n\
             sync-daemon backup eth1 id 7\ntrack-file /run/lvsmon/track\n\
             ipvs-timeouts tcp 900 udp 30s\nvirtual tcp 192.0.2.1:80 {\n real 10.0.0.1\n}\n",
        );
        let d = &p.director;
        assert_eq!(
            d.sync_daemons[0],
            SyncDaemon {
                backup: false,
                iface: "eth1".into(),
                id: 7,
                maxlen: 1400,
                group: Some("239.1.1.1".parse().unwrap()),
                port: 9000,
                ttl: 2
            }
        );
        assert_eq!((d.sync_daemons[1].backup, d.sync_daemons[1].id), (true, 7));
        assert_eq!(
            d.track_file,
            Some(TrackFile {
                path: "/run/lvsmon/track".into(),
                weight: 100
            })
        );
        assert_eq!(
            d.ipvs_timeouts,
            Some(IpvsTimeouts {
                tcp: Some(secs(900)),
                tcpfin: None,
                udp: Some(secs(30))
            })
        );
        let p =
            plan_text("track-file /x --weight 30\nvirtual tcp 192.0.2.1:80 {\n real 10.0.0.1\n}\n");
        assert_eq!(p.director.track_file.unwrap().weight, 30);
    }

    #[test]
    fn mistakes_point_at_their_word() {
        let v = |body: &str| format!("virtual tcp 192.0.2.1:80 {{\n{body}\n real 10.0.0.1\n}}\n");
        expect_error(&v("one-packet yes"), 2, 1, "UDP only");
        expect_error(&v("sched-flags sh-port"), 2, 1, "apply to scheduler sh");
        expect_error(
            &v("scheduler mh\nsched-flags mh-port,sh-port"),
            3,
            13,
            "mixes",
        );
        expect_error(&v("sched-flags bogus"), 2, 13, "unknown scheduler flag");
        expect_error(&v("persistence-netmask 255.0.255.0"), 2, 21, "contiguous");
        expect_error(&v("persistence-netmask 33"), 2, 21, "out of range");
        expect_error(&v("forward tunnel gue"), 2, 16, "expected a port after gue");
        expect_error(&v("forward tunnel gre remcsum"), 2, 20, "does not apply");
        expect_error(&v("u-threshold -1"), 2, 13, "u-threshold");
        // IPVS refuses l > u (ERANGE), u = 0 (no limit) included, when the file owns both.
        expect_error(
            &v("u-threshold 10\nl-threshold 50"),
            3,
            1,
            "u-threshold 10 (at ",
        );
        expect_error(
            &v("u-threshold 0\nl-threshold 1"),
            3,
            1,
            "0 (no limit) included",
        );
        expect_error(
            "u-threshold 100\nl-threshold 50\nvirtual tcp 192.0.2.1:80 {\n real 10.0.0.1 {\n  \
             u-threshold 20\n }\n}\n",
            2,
            1,
            "of real 10.0.0.1:80",
        );
        expect_error(
            &v("sync-daemon master eth0"),
            2,
            1,
            "not allowed in a virtual block",
        );
        expect_error(
            "sync-daemon master eth0\nsync-daemon master eth1\n",
            2,
            1,
            "already set at",
        );
        expect_error(
            "sync-daemon primary eth0\n",
            1,
            13,
            "expected master or backup",
        );
        expect_error(
            "sync-daemon master eth0 group 10.0.0.1\n",
            1,
            31,
            "multicast",
        );
        expect_error(
            "sync-daemon backup eth0 ttl\n",
            1,
            25,
            "expected a value after ttl",
        );
        expect_error("track-file relative\n", 1, 12, "absolute path");
        expect_error("track-file /x --weight 0\n", 1, 24, "out of range");
        expect_error("ipvs-timeouts tcp 1.5s\n", 1, 19, "whole number of seconds");
        expect_error("ipvs-timeouts tcp 10 tcp 10\n", 1, 22, "given twice");
        expect_error("ipvs-timeouts icmp 10\n", 1, 15, "unknown timeout");
    }
}
