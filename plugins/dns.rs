//! `check dns`: one DNS query over UDP, passed when the reply echoes the question, carries an
//! expected rcode and, if asked, the expected addresses. The query is built once, at startup,
//! as a template (header, question, EDNS(0) OPT record); every check copies it and patches the
//! two ID bytes with the check's nonce, so neither building nor judging ever allocates.
//!
//! Options:
//! - `--query NAME` (required): the name asked for, `www.example.com` (a trailing dot is
//!   optional; `.` is the root). Labels are 1 to 63 bytes of letters, digits, `-` and `_`
//!   (for `_sip._udp` names); the encoded name is at most 255 bytes (RFC 1035 §2.3.4, §3.1).
//!   Case is kept as written and compared case-insensitively.
//! - `--type T` (default `A`): `A`, `NS`, `CNAME`, `SOA`, `PTR`, `MX`, `TXT`, `AAAA`, `SRV`,
//!   `NAPTR`, `DS`, `DNSKEY`, `TLSA`, `SVCB`, `HTTPS`, `CAA`, `ANY`, or `TYPEnnn` (RFC 3597
//!   §5); case-insensitive. `OPT`, `AXFR` and `IXFR` are refused: they are not UDP questions.
//! - `--class C` (default `IN`): `IN`, `CH` (for `version.bind`-style queries), `HS`, `ANY`
//!   or `CLASSnnn`.
//! - `--expect-rcode R[,R...]` (default `NOERROR`): `NOERROR`, `FORMERR`, `SERVFAIL`,
//!   `NXDOMAIN`, `NOTIMP`, `REFUSED` (and the other named ones, `YXDOMAIN` to `DSOTYPENI`) or
//!   a number 0 to 15, case-insensitive; any of the list passes.
//! - `--expect-address ADDR` (repeatable): the answer section must hold an `A` (IPv4) or
//!   `AAAA` (IPv6) record of class IN with this address, owned by the queried name or by a
//!   name that a `CNAME` chain in the answer section leads to from it (at most 8 links).
//!   Every address given must be there. Needs `--type A` (IPv4 only), `AAAA` (IPv6 only) or
//!   `ANY`, and class `IN` or `ANY`; other combinations could never pass and are refused.
//!   Many servers answer `ANY` with one record set only (RFC 8482), so prefer `A` or `AAAA`.
//! - `--recurse yes|no` (default `yes`): the RD bit (RFC 1035 §4.1.1); `no` to check an
//!   authoritative server the way a resolver asks it.
//! - `--edns yes|no` (default `yes`): send an EDNS(0) OPT record (RFC 6891 §6.1) that
//!   advertises `--max-response` as the UDP payload size. It is never sent when
//!   `--max-response` is 512, the size every server honours without it (RFC 1035 §4.2.1).
//! - `--max-response BYTES` (default 1232, the size DNS Flag Day 2020 chose so that replies are
//!   not fragmented; 512 to 65,535): the receive buffer. The kernel cuts a longer datagram to
//!   this size; a datagram that fills it is judged like any other, so a cut reply fails as
//!   `dns-invalid` when its records run past the end.
//!
//! Judging one datagram (the socket is connected, so only the real server's datagrams arrive):
//! - a datagram whose ID (the first two bytes, RFC 1035 §4.1.1) is not this check's is
//!   ignored: it may be a late reply to an earlier check. Nothing shorter than two bytes can be
//!   told to be ours, so it is ignored too;
//! - with our ID, a datagram shorter than the 12-byte header, with QR clear (not a response) or
//!   an OPCODE other than 0 (QUERY) fails with `dns-invalid`;
//! - the question section (§4.1.2) must hold exactly our question: the name compared without
//!   regard to ASCII case (§2.3.3), the type and the class. Error replies (any rcode but
//!   NOERROR) may leave the question out, as some servers do for FORMERR; anything else fails
//!   with `dns-invalid "question mismatch"`;
//! - TC set (§4.1.1) fails with `dns-invalid "truncated (TC)"`: lvsmon does not retry over
//!   TCP. Raise `--max-response` (with EDNS) or ask for a smaller answer;
//! - every record of the answer, authority and additional sections (§4.1.3) must lie inside
//!   the datagram, names included: compression pointers (§4.1.4) are followed, at most 127 hops
//!   per name, so a pointer loop fails instead of spinning. A malformed section fails with
//!   `dns-invalid`;
//! - the rcode is the header's four bits, extended by the OPT record's upper eight bits when the
//!   reply has one (RFC 6891 §6.1.3). An rcode outside `--expect-rcode` fails with `dns-rcode`
//!   and its name as detail (`dns-rcode NXDOMAIN`). A server too old for EDNS answers FORMERR
//!   (RFC 6891 §7); lvsmon does not retry without EDNS but reports `dns-rcode` with the detail
//!   `FORMERR (try --edns no)` when we sent an OPT record and the reply has none;
//! - each `--expect-address` missing from the answer fails with `expect-mismatch` and a detail
//!   like `no A 192.0.2.1`. The address check applies to every accepted rcode;
//! - otherwise the check passes.

use std::fmt;
use std::net::IpAddr;

use super::common::{OptionDef, Options};
use super::{CheckState, Detail, PluginError, Reason, Step, Verdict};

/// Default `--max-response`: the DNS Flag Day 2020 EDNS buffer size.
const DEFAULT_MAX: usize = 1232;
/// Smallest `--max-response`: the size every server honours without EDNS (RFC 1035 §4.2.1).
const MIN_MAX: usize = 512;
/// Largest `--max-response`: the largest payload EDNS can advertise (16 bits).
const MAX_MAX: usize = 65_535;

/// Bytes in the header section (RFC 1035 §4.1.1).
const HEADER: usize = 12;
/// Longest encoded name, length bytes and root label included (RFC 1035 §2.3.4).
const MAX_NAME: usize = 255;
/// Longest label (RFC 1035 §2.3.4).
const MAX_LABEL: usize = 63;
/// Compression pointers followed while reading one name; a longer walk is a loop.
const MAX_HOPS: usize = 127;
/// CNAME links followed from the queried name in the answer section.
const MAX_CHAIN: usize = 8;

/// Header flag bits (RFC 1035 §4.1.1), as the 16-bit word after the ID.
const QR: u16 = 0x8000;
/// Truncation.
const TC: u16 = 0x0200;
/// Recursion desired.
const RD: u16 = 0x0100;

/// Record types the code itself looks at.
const TYPE_A: u16 = 1;
/// A canonical-name record.
const TYPE_CNAME: u16 = 5;
/// An IPv6 address record.
const TYPE_AAAA: u16 = 28;
/// The EDNS(0) pseudo-record (RFC 6891).
const TYPE_OPT: u16 = 41;
/// The QTYPE asking for every record.
const TYPE_ANY: u16 = 255;
/// The Internet class.
const CLASS_IN: u16 = 1;
/// The QCLASS matching every class.
const CLASS_ANY: u16 = 255;

/// Record types known by name (RFC 1035 §3.2.2 and the RFCs that added the rest).
const TYPES: &[(&str, u16)] = &[
    ("A", TYPE_A),
    ("NS", 2),
    ("CNAME", TYPE_CNAME),
    ("SOA", 6),
    ("PTR", 12),
    ("MX", 15),
    ("TXT", 16),
    ("AAAA", TYPE_AAAA),
    ("SRV", 33),
    ("NAPTR", 35),
    ("DS", 43),
    ("DNSKEY", 48),
    ("TLSA", 52),
    ("SVCB", 64),
    ("HTTPS", 65),
    ("ANY", TYPE_ANY),
    ("CAA", 257),
];

/// Classes known by name (RFC 1035 §3.2.4, §3.2.5).
const CLASSES: &[(&str, u16)] = &[("IN", CLASS_IN), ("CH", 3), ("HS", 4), ("ANY", CLASS_ANY)];

/// Names of the 4-bit rcodes (RFC 1035 §4.1.1, RFC 2136 §2.2, RFC 8490 §10.3); empty where
/// none is assigned.
const RCODES: [&str; 16] = [
    "NOERROR",
    "FORMERR",
    "SERVFAIL",
    "NXDOMAIN",
    "NOTIMP",
    "REFUSED",
    "YXDOMAIN",
    "YXRRSET",
    "NXRRSET",
    "NOTAUTH",
    "NOTZONE",
    "DSOTYPENI",
    "",
    "",
    "",
    "",
];

/// The only extended rcode a reply to a plain query can carry (RFC 6891 §9).
const BADVERS: u16 = 16;

/// The options of `check dns`, in the order error messages list them.
const OPTIONS: &[OptionDef] = &[
    OptionDef::once("--query", "NAME"),
    OptionDef::once("--type", "TYPE"),
    OptionDef::once("--class", "IN|CH|HS|ANY"),
    OptionDef::once("--expect-rcode", "RCODE[,RCODE...]"),
    OptionDef::repeated("--expect-address", "ADDR"),
    OptionDef::once("--recurse", "yes|no"),
    OptionDef::once("--edns", "yes|no"),
    OptionDef::once("--max-response", "BYTES"),
];

/// A configured `dns` check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dns {
    /// The whole query with ID 0: header, question, then the OPT record when EDNS is on.
    query: Vec<u8>,
    /// Bytes of the encoded question name, which starts at [`HEADER`] in `query`.
    qname_len: usize,
    /// The question's type.
    qtype: u16,
    /// The question's class.
    qclass: u16,
    /// Bit `r` set: rcode `r` passes.
    rcodes: u16,
    /// Addresses the answer section must hold.
    addrs: Vec<IpAddr>,
    /// Whether the query carries an OPT record.
    edns: bool,
    /// Receive buffer size.
    max_response: usize,
}

impl Dns {
    /// Parses the options and builds the query template.
    ///
    /// # Errors
    /// An unknown or repeated option, a missing `--query`, a malformed name, type, class,
    /// rcode, address, yes/no or size, or an `--expect-address` that the question can never
    /// answer.
    pub fn parse(args: &[&[u8]]) -> Result<Dns, PluginError> {
        let mut opts = Options::new(args, OPTIONS, "dns");
        let mut qname: Option<Vec<u8>> = None;
        let (mut qtype, mut qclass, mut rcodes) = (TYPE_A, CLASS_IN, 1u16);
        let mut addrs: Vec<(IpAddr, usize)> = Vec::new();
        let (mut recurse, mut edns, mut max) = (true, true, DEFAULT_MAX);
        while let Some(o) = opts.next()? {
            let at = |m: String| PluginError::at(o.word, m);
            match o.name {
                "--query" => qname = Some(encode_name(o.value).map_err(at)?),
                "--type" => qtype = parse_type(o.value).map_err(at)?,
                "--class" => qclass = parse_class(o.value).map_err(at)?,
                "--expect-rcode" => rcodes = parse_rcodes(o.value).map_err(at)?,
                "--expect-address" => {
                    let ip = std::str::from_utf8(o.value)
                        .ok()
                        .and_then(|s| s.trim().parse::<IpAddr>().ok())
                        .ok_or_else(|| {
                            at(format!(
                                "bad --expect-address {:?} (expected an IPv4 or IPv6 address)",
                                String::from_utf8_lossy(o.value)
                            ))
                        })?;
                    addrs.push((ip, o.word));
                }
                "--recurse" => recurse = yes_no(o.name, o.value).map_err(at)?,
                "--edns" => edns = yes_no(o.name, o.value).map_err(at)?,
                _ => max = o.size(MIN_MAX, MAX_MAX)?,
            }
        }
        let qname = qname.ok_or_else(|| PluginError {
            word: None,
            message: "check dns needs --query NAME (the name to ask for)".into(),
        })?;
        for &(ip, word) in &addrs {
            let family_ok = match qtype {
                TYPE_A => ip.is_ipv4(),
                TYPE_AAAA => ip.is_ipv6(),
                TYPE_ANY => true,
                _ => false,
            };
            if !family_ok {
                let need = if ip.is_ipv4() { "A" } else { "AAAA" };
                return Err(PluginError::at(
                    word,
                    format!(
                        "--expect-address {ip} can never match a --type {} query \
                         (it needs --type {need} or ANY)",
                        type_name(qtype)
                    ),
                ));
            }
            if qclass != CLASS_IN && qclass != CLASS_ANY {
                return Err(PluginError::at(
                    word,
                    "--expect-address needs --class IN (or ANY): addresses are IN records",
                ));
            }
        }
        let edns = edns && max > MIN_MAX;
        Ok(Dns {
            query: build_query(&qname, qtype, qclass, recurse, edns.then_some(max as u16)),
            qname_len: qname.len(),
            qtype,
            qclass,
            rcodes,
            addrs: {
                // Sorted, so checks that differ only in the order of addresses are one check.
                let mut ips: Vec<IpAddr> = addrs.into_iter().map(|(ip, _)| ip).collect();
                ips.sort_unstable();
                ips.dedup();
                ips
            },
            edns,
            max_response: max,
        })
    }

    /// Largest datagram accepted (the receive buffer's size).
    pub fn max_response(&self) -> usize {
        self.max_response
    }

    /// Writes the query into `out` with the ID `st.nonce as u16`; returns its length, 0 if it
    /// does not fit. Never allocates.
    pub fn datagram(&self, st: &CheckState, out: &mut [u8]) -> usize {
        let n = self.query.len();
        let Some(dst) = out.get_mut(..n) else {
            return 0;
        };
        dst.copy_from_slice(&self.query);
        dst[..2].copy_from_slice(&(st.nonce as u16).to_be_bytes());
        n
    }

    /// Judges one reply datagram: [`Step::Recv`] when it is not for this check (another ID),
    /// a verdict otherwise. Never allocates, never panics, whatever the bytes.
    pub fn on_datagram(&self, st: &mut CheckState, rx: &[u8]) -> Step {
        match rx {
            [hi, lo, ..] if u16::from_be_bytes([*hi, *lo]) == st.nonce as u16 => {
                Step::Done(self.judge(rx))
            }
            _ => Step::Recv,
        }
    }

    /// The verdict on a datagram that carries our ID.
    fn judge(&self, msg: &[u8]) -> Verdict {
        if msg.len() < HEADER {
            return invalid("short header");
        }
        let flags = be16(msg, 2);
        if flags & QR == 0 {
            return invalid("not a response");
        }
        let opcode = (flags >> 11) & 0xf;
        if opcode != 0 {
            return Verdict::Fail(Reason::DnsInvalid, detail(format_args!("opcode {opcode}")));
        }
        let rcode = flags & 0xf;
        let (qdcount, ancount) = (be16(msg, 4), be16(msg, 6));
        let (nscount, arcount) = (be16(msg, 8), be16(msg, 10));

        let mut pos = HEADER;
        match qdcount {
            1 => match self.question_matches(msg) {
                Ok(Some(end)) => pos = end,
                Ok(None) => return invalid("question mismatch"),
                Err(Bad(why)) => return invalid(why),
            },
            0 if rcode != 0 => {}
            _ => return invalid("question mismatch"),
        }
        if flags & TC != 0 {
            return invalid("truncated (TC)");
        }

        let answer = pos;
        let opt_ttl = match walk_sections(msg, pos, ancount, nscount, arcount) {
            Ok(t) => t,
            Err(Bad(why)) => return invalid(why),
        };
        let rcode = match opt_ttl {
            Some(ttl) => rcode | (((ttl >> 24) as u16) << 4),
            None => rcode,
        };
        if rcode > 15 || self.rcodes & (1 << rcode) == 0 {
            let hint = self.edns && rcode == 1 && opt_ttl.is_none();
            return Verdict::Fail(Reason::DnsRcode, rcode_detail(rcode, hint));
        }

        for &want in &self.addrs {
            match self.has_address(msg, answer, ancount, want) {
                Ok(true) => {}
                Ok(false) => {
                    let kind = if want.is_ipv4() { "A" } else { "AAAA" };
                    return Verdict::Fail(
                        Reason::ExpectMismatch,
                        detail(format_args!("no {kind} {want}")),
                    );
                }
                Err(Bad(why)) => return invalid(why),
            }
        }
        Verdict::Pass
    }

    /// Whether the reply's one question is ours; `Some(end of the question)` when it is.
    fn question_matches(&self, msg: &[u8]) -> Result<Option<usize>, Bad> {
        const BAD: Bad = Bad("bad question");
        let end = skip_name(msg, HEADER).map_err(|e| e.or(BAD))?;
        let fixed = msg.get(end..end + 4).ok_or(BAD)?;
        let ours = Labels::new(&self.query, HEADER);
        let same = names_equal(Labels::new(msg, HEADER), ours).map_err(|e| e.or(BAD))?
            && be16(fixed, 0) == self.qtype
            && be16(fixed, 2) == self.qclass;
        Ok(same.then_some(end + 4))
    }

    /// Whether the answer section (`count` records from `start`) holds `want` for the queried
    /// name or a name a CNAME chain leads to from it.
    fn has_address(&self, msg: &[u8], start: usize, count: u16, want: IpAddr) -> Result<bool, Bad> {
        const BAD: Bad = Bad("bad answer section");
        // The name sought: first ours (in the template), then each CNAME target (in `msg`).
        let (mut buf, mut at) = (&self.query[..HEADER + self.qname_len], HEADER);
        for _ in 0..=MAX_CHAIN {
            let mut next = None;
            let mut pos = start;
            for _ in 0..count {
                let rr = Rr::read(msg, pos).map_err(|e| e.or(BAD))?;
                pos = rr.end;
                if !names_equal(Labels::new(msg, rr.owner), Labels::new(buf, at))
                    .map_err(|e| e.or(BAD))?
                {
                    continue;
                }
                let rdata = &msg[rr.rdata..rr.end];
                match (rr.rtype, want) {
                    (TYPE_A, IpAddr::V4(a)) if rr.class == CLASS_IN => {
                        if rdata.len() != 4 {
                            return Err(Bad("bad A record"));
                        }
                        if rdata == a.octets() {
                            return Ok(true);
                        }
                    }
                    (TYPE_AAAA, IpAddr::V6(a)) if rr.class == CLASS_IN => {
                        if rdata.len() != 16 {
                            return Err(Bad("bad AAAA record"));
                        }
                        if rdata == a.octets() {
                            return Ok(true);
                        }
                    }
                    (TYPE_CNAME, _) if next.is_none() => next = Some(rr.rdata),
                    _ => {}
                }
            }
            match next {
                Some(target) => (buf, at) = (msg, target),
                None => return Ok(false),
            }
        }
        Ok(false)
    }
}

/// Why a reply is not a DNS reply to our query: the `dns-invalid` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bad(&'static str);

/// A name whose compression pointers go round in circles.
const LOOP: Bad = Bad("compression loop");

impl Bad {
    /// `general` instead of `self`, unless `self` is the more telling [`LOOP`].
    fn or(self, general: Bad) -> Bad {
        if self == LOOP {
            self
        } else {
            general
        }
    }
}

/// A `dns-invalid` failure with `why` as detail.
fn invalid(why: &str) -> Verdict {
    Verdict::fail_with(Reason::DnsInvalid, why.as_bytes())
}

/// The big-endian 16-bit word at `at`; the caller has checked that it is there.
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Formats into a [`Detail`] without allocating (cut at [`super::DETAIL_CAP`]).
fn detail(args: fmt::Arguments<'_>) -> Detail {
    struct Sink(Detail);
    impl fmt::Write for Sink {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.push(s.as_bytes());
            Ok(())
        }
    }
    let mut sink = Sink(Detail::EMPTY);
    let _ = fmt::Write::write_fmt(&mut sink, args);
    sink.0
}

/// The `dns-rcode` detail: the rcode's name, or its number when it has none; `hint` adds the
/// EDNS advice for a FORMERR without an OPT record.
fn rcode_detail(rcode: u16, hint: bool) -> Detail {
    let name = match rcode {
        0..=15 => RCODES[rcode as usize],
        BADVERS => "BADVERS",
        _ => "",
    };
    let mut d = if name.is_empty() {
        Detail::number(rcode.into())
    } else {
        Detail::text(name.as_bytes())
    };
    if hint {
        d.push(b" (try --edns no)");
    }
    d
}

/// Reads a name label by label, following compression pointers (RFC 1035 §4.1.4).
struct Labels<'a> {
    /// The message the name lives in (pointers are offsets into it).
    msg: &'a [u8],
    /// Where the next length byte or pointer is.
    pos: usize,
    /// Pointers followed so far.
    hops: usize,
    /// Encoded length so far (length bytes included).
    len: usize,
    /// Where the name ends in place: after its root label or its first pointer.
    end: Option<usize>,
}

impl<'a> Labels<'a> {
    /// Starts at the name at `pos` of `msg`.
    fn new(msg: &'a [u8], pos: usize) -> Self {
        Labels {
            msg,
            pos,
            hops: 0,
            len: 0,
            end: None,
        }
    }

    /// The next label, or `None` at the root label that ends the name. Must not be called
    /// again after `None` or an error.
    fn next_label(&mut self) -> Result<Option<&'a [u8]>, Bad> {
        const BAD: Bad = Bad("bad name");
        loop {
            let &b = self.msg.get(self.pos).ok_or(BAD)?;
            match b & 0xc0 {
                0x00 => {
                    let n = usize::from(b);
                    self.len += n + 1;
                    if self.len > MAX_NAME {
                        return Err(BAD);
                    }
                    if n == 0 {
                        self.end.get_or_insert(self.pos + 1);
                        return Ok(None);
                    }
                    let label = self.msg.get(self.pos + 1..self.pos + 1 + n).ok_or(BAD)?;
                    self.pos += 1 + n;
                    return Ok(Some(label));
                }
                0xc0 => {
                    let &lo = self.msg.get(self.pos + 1).ok_or(BAD)?;
                    self.hops += 1;
                    if self.hops > MAX_HOPS {
                        return Err(LOOP);
                    }
                    self.end.get_or_insert(self.pos + 2);
                    self.pos = usize::from(b & 0x3f) << 8 | usize::from(lo);
                }
                // 0x40 and 0x80: extended label types (RFC 6891 §5), never in use.
                _ => return Err(BAD),
            }
        }
    }
}

/// Checks the name at `pos` whole (pointers followed) and returns where it ends in place.
fn skip_name(msg: &[u8], pos: usize) -> Result<usize, Bad> {
    let mut labels = Labels::new(msg, pos);
    while labels.next_label()?.is_some() {}
    labels.end.ok_or(Bad("bad name"))
}

/// Whether two names are the same, ASCII case ignored (RFC 1035 §2.3.3).
fn names_equal(mut a: Labels<'_>, mut b: Labels<'_>) -> Result<bool, Bad> {
    loop {
        match (a.next_label()?, b.next_label()?) {
            (None, None) => return Ok(true),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
            _ => return Ok(false),
        }
    }
}

/// One resource record's fixed fields and where its parts are (RFC 1035 §4.1.3).
struct Rr {
    /// Where the owner name starts.
    owner: usize,
    /// TYPE.
    rtype: u16,
    /// CLASS.
    class: u16,
    /// TTL (for OPT: extended rcode, version, flags).
    ttl: u32,
    /// Where RDATA starts.
    rdata: usize,
    /// Where the record ends (`rdata + RDLENGTH`, within the message).
    end: usize,
}

impl Rr {
    /// Reads the record at `pos`, checking that all of it lies inside `msg`.
    fn read(msg: &[u8], pos: usize) -> Result<Rr, Bad> {
        const BAD: Bad = Bad("bad record");
        let p = skip_name(msg, pos).map_err(|e| e.or(BAD))?;
        let fixed = msg.get(p..p + 10).ok_or(BAD)?;
        let rdata = p + 10;
        let end = rdata + usize::from(be16(fixed, 8));
        if end > msg.len() {
            return Err(BAD);
        }
        Ok(Rr {
            owner: pos,
            rtype: be16(fixed, 0),
            class: be16(fixed, 2),
            ttl: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            rdata,
            end,
        })
    }
}

/// Walks the answer, authority and additional sections from `pos`; returns the TTL field of
/// the OPT record when the additional section has one.
fn walk_sections(
    msg: &[u8],
    mut pos: usize,
    ancount: u16,
    nscount: u16,
    arcount: u16,
) -> Result<Option<u32>, Bad> {
    for (count, bad) in [
        (ancount, Bad("bad answer section")),
        (nscount, Bad("bad authority section")),
    ] {
        for _ in 0..count {
            pos = Rr::read(msg, pos).map_err(|e| e.or(bad))?.end;
        }
    }
    let mut opt = None;
    for _ in 0..arcount {
        let rr = Rr::read(msg, pos).map_err(|e| e.or(Bad("bad additional section")))?;
        if rr.rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: one OPT record at most, owned by the root.
            let root = Labels::new(msg, rr.owner).next_label()?.is_none();
            if opt.is_some() || !root {
                return Err(Bad("bad OPT record"));
            }
            opt = Some(rr.ttl);
        }
        pos = rr.end;
    }
    Ok(opt)
}

/// Encodes `--query`'s value as a wire-format name (RFC 1035 §3.1).
fn encode_name(text: &[u8]) -> Result<Vec<u8>, String> {
    let shown = String::from_utf8_lossy(text);
    if text == b"." {
        return Ok(vec![0]);
    }
    let body = text.strip_suffix(b".").unwrap_or(text);
    if body.is_empty() {
        return Err("--query needs a name (`.` for the root)".into());
    }
    let mut out = Vec::with_capacity(body.len() + 2);
    for label in body.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(format!(
                "bad --query {shown:?}: empty label (a leading dot or two dots in a row)"
            ));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "bad --query {shown:?}: label {:?} is {} bytes (at most {MAX_LABEL})",
                String::from_utf8_lossy(label),
                label.len()
            ));
        }
        if let Some(&c) = label
            .iter()
            .find(|&&c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_'))
        {
            return Err(format!(
                "bad --query {shown:?}: character {:?} (expected letters, digits, - and _)",
                char::from(c)
            ));
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
    if out.len() > MAX_NAME {
        return Err(format!(
            "bad --query {shown:?}: {} bytes encoded (at most {MAX_NAME})",
            out.len()
        ));
    }
    Ok(out)
}

/// A mnemonic from `table`, or `PREFIXnnn` (RFC 3597 §5), case-insensitively.
fn lookup(text: &[u8], table: &[(&str, u16)], prefix: &str) -> Option<u16> {
    if let Some(&(_, v)) = table
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(text))
    {
        return Some(v);
    }
    let digits = text
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
        .map(|_| &text[prefix.len()..])?;
    number(digits)
}

/// A plain decimal `u16`.
fn number(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Parses `--type`.
fn parse_type(text: &[u8]) -> Result<u16, String> {
    let shown = String::from_utf8_lossy(text);
    match lookup(text, TYPES, "TYPE") {
        Some(0) => Err(format!("bad --type {shown:?}: type 0 is reserved")),
        Some(TYPE_OPT) => Err(format!("bad --type {shown:?}: OPT is not a question type")),
        Some(251 | 252) => Err(format!(
            "bad --type {shown:?}: zone transfers (IXFR, AXFR) need TCP"
        )),
        Some(t) => Ok(t),
        None => {
            let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
            Err(format!(
                "bad --type {shown:?} (expected one of {} or TYPEnnn)",
                names.join(", ")
            ))
        }
    }
}

/// The name of a type for messages.
fn type_name(t: u16) -> String {
    match TYPES.iter().find(|&&(_, v)| v == t) {
        Some((name, _)) => (*name).to_string(),
        None => format!("TYPE{t}"),
    }
}

/// Parses `--class`.
fn parse_class(text: &[u8]) -> Result<u16, String> {
    match lookup(text, CLASSES, "CLASS") {
        Some(c) if c != 0 => Ok(c),
        _ => Err(format!(
            "bad --class {:?} (expected IN, CH, HS, ANY or CLASSnnn)",
            String::from_utf8_lossy(text)
        )),
    }
}

/// Parses `--expect-rcode`: comma-separated names or numbers 0 to 15, as a bit set.
fn parse_rcodes(text: &[u8]) -> Result<u16, String> {
    let mut set = 0u16;
    for item in text.split(|&b| b == b',') {
        let item = item.trim_ascii();
        let code = RCODES
            .iter()
            .position(|name| !name.is_empty() && name.as_bytes().eq_ignore_ascii_case(item))
            .or_else(|| number(item).map(usize::from).filter(|&n| n < 16));
        match code {
            Some(c) => set |= 1 << c,
            None => {
                return Err(format!(
                    "bad --expect-rcode {:?} in {:?} (expected NOERROR, FORMERR, SERVFAIL, \
                     NXDOMAIN, NOTIMP, REFUSED, another RFC name or a number 0 to 15, \
                     comma-separated)",
                    String::from_utf8_lossy(item),
                    String::from_utf8_lossy(text)
                ))
            }
        }
    }
    Ok(set)
}

/// Parses a `yes`/`no` value.
fn yes_no(name: &str, value: &[u8]) -> Result<bool, String> {
    if value.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err(format!(
            "bad {name} {:?} (expected yes or no)",
            String::from_utf8_lossy(value)
        ))
    }
}

/// The query with ID 0: header (RFC 1035 §4.1.1), question (§4.1.2), and the OPT record
/// (RFC 6891 §6.1.2) advertising `edns` bytes when given.
fn build_query(qname: &[u8], qtype: u16, qclass: u16, recurse: bool, edns: Option<u16>) -> Vec<u8> {
    let flags = if recurse { RD } else { 0 };
    let arcount = u16::from(edns.is_some());
    let mut q = Vec::with_capacity(HEADER + qname.len() + 4 + 11);
    for word in [0, flags, 1, 0, 0, arcount] {
        q.extend_from_slice(&u16::to_be_bytes(word));
    }
    q.extend_from_slice(qname);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    if let Some(size) = edns {
        // Root owner, TYPE OPT, CLASS = payload size, TTL = ext. rcode 0, version 0, DO clear,
        // no options.
        q.push(0);
        q.extend_from_slice(&TYPE_OPT.to_be_bytes());
        q.extend_from_slice(&size.to_be_bytes());
        q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::base::iana::{Class, Opcode, OptRcode, Rcode, Rtype};
    use domain::base::message_builder::{AnswerBuilder, MessageBuilder, StaticCompressor};
    use domain::base::{Message, Name};
    use domain::rdata::{Aaaa, Cname, A};
    use std::net::Ipv6Addr;

    /// The nonce the tests use; only its low 16 bits become the ID.
    const NONCE: u32 = 0xabcd_1234;
    /// The query ID that goes with [`NONCE`].
    const ID: u16 = 0x1234;

    type Target = StaticCompressor<Vec<u8>>;

    fn dns(args: &[&str]) -> Dns {
        let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        Dns::parse(&words).unwrap()
    }

    fn err(args: &[&str]) -> PluginError {
        let words: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        Dns::parse(&words).unwrap_err()
    }

    fn st() -> CheckState {
        CheckState {
            nonce: NONCE,
            ..CheckState::default()
        }
    }

    fn query(d: &Dns) -> Vec<u8> {
        let mut out = [0u8; 1500];
        let n = d.datagram(&st(), &mut out);
        assert!(n > 0);
        out[..n].to_vec()
    }

    fn name(s: &str) -> Name<Vec<u8>> {
        Name::vec_from_str(s).unwrap()
    }

    /// A reply header and question, compressing names, ready for an answer section.
    fn reply(id: u16, rcode: Rcode, qname: &str, qtype: Rtype) -> AnswerBuilder<Target> {
        let mut b = MessageBuilder::from_target(StaticCompressor::new(Vec::new())).unwrap();
        let h = b.header_mut();
        h.set_id(id);
        h.set_qr(true);
        h.set_rd(true);
        h.set_ra(true);
        h.set_rcode(rcode);
        let mut q = b.question();
        q.push((name(qname), qtype)).unwrap();
        q.answer()
    }

    fn finish(a: AnswerBuilder<Target>) -> Vec<u8> {
        a.finish().into_target()
    }

    /// A NOERROR reply for `www.example.com A` holding 192.0.2.1 and 192.0.2.2.
    fn a_reply() -> Vec<u8> {
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        a.push((name("www.example.com"), 300, A::from_octets(192, 0, 2, 1)))
            .unwrap();
        a.push((name("www.example.com"), 300, A::from_octets(192, 0, 2, 2)))
            .unwrap();
        finish(a)
    }

    /// A chain `www.example.com` → `edge.example.net` → `pool.example.org` → 192.0.2.7, with
    /// an authority record and an OPT record after it.
    fn chain_reply() -> Vec<u8> {
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        a.push((
            name("www.example.com"),
            300,
            Cname::new(name("edge.example.net")),
        ))
        .unwrap();
        a.push((
            name("edge.example.net"),
            300,
            Cname::new(name("pool.example.org")),
        ))
        .unwrap();
        a.push((name("pool.example.org"), 60, A::from_octets(192, 0, 2, 7)))
            .unwrap();
        let mut auth = a.authority();
        auth.push((
            name("example.org"),
            300,
            domain::rdata::Ns::new(name("ns1.example.org")),
        ))
        .unwrap();
        let mut add = auth.additional();
        add.opt(|o| {
            o.set_udp_payload_size(1232);
            Ok(())
        })
        .unwrap();
        add.finish().into_target()
    }

    fn fail(reason: Reason, text: &str) -> Step {
        Step::Done(Verdict::fail_with(reason, text.as_bytes()))
    }

    fn judge(d: &Dns, rx: &[u8]) -> Step {
        d.on_datagram(&mut st(), rx)
    }

    #[test]
    fn query_bytes_by_hand() {
        let d = dns(&["--query", "www.example.com"]);
        let want: &[u8] = &[
            0x12, 0x34, // ID
            0x01, 0x00, // RD
            0, 1, 0, 0, 0, 0, 0, 1, // QD 1, AN 0, NS 0, AR 1
            3, b'w', b'w', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o', b'm',
            0, // name
            0, 1, 0, 1, // A IN
            0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0, // OPT: 1232 bytes, version 0, no options
        ];
        assert_eq!(query(&d), want);
        let plain = dns(&[
            "--query",
            "WwW.Example.COM.",
            "--edns",
            "no",
            "--recurse=no",
        ]);
        let q = query(&plain);
        assert_eq!(&q[..12], &[0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..17], b"\x03WwW\x07", "case is kept");
        assert_eq!(q.len(), 12 + 17 + 4);
        assert_eq!(
            dns(&["--query", "."]).query[12..],
            [0, 0, 1, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]
        );
        // The datagram does not fit: nothing is written.
        assert_eq!(d.datagram(&st(), &mut [0u8; 20]), 0);
    }

    /// (options, name, type, class, RD, OPT payload size)
    type Case = (
        &'static [&'static str],
        &'static str,
        u16,
        u16,
        bool,
        Option<u16>,
    );

    #[test]
    fn query_bytes_parsed_by_domain() {
        let cases: &[Case] = &[
            (
                &["--query", "www.example.com"],
                "www.example.com",
                1,
                1,
                true,
                Some(1232),
            ),
            (
                &[
                    "--query",
                    "version.bind",
                    "--type",
                    "txt",
                    "--class",
                    "CH",
                    "--recurse",
                    "no",
                ],
                "version.bind",
                16,
                3,
                false,
                Some(1232),
            ),
            (
                &["--query", ".", "--type", "NS", "--max-response", "512"],
                ".",
                2,
                1,
                true,
                None,
            ),
            (
                &[
                    "--query",
                    "_sip._udp.Example.COM.",
                    "--type",
                    "SRV",
                    "--edns",
                    "no",
                ],
                "_sip._udp.Example.COM",
                33,
                1,
                true,
                None,
            ),
            (
                &[
                    "--query",
                    "a.b",
                    "--type",
                    "type65280",
                    "--class",
                    "ANY",
                    "--max-response",
                    "65535",
                ],
                "a.b",
                65280,
                255,
                true,
                Some(65535),
            ),
            (
                &[
                    "--query",
                    "x.example",
                    "--type",
                    "AAAA",
                    "--max-response=4096",
                    "--expect-rcode",
                    "NXDOMAIN",
                ],
                "x.example",
                28,
                1,
                true,
                Some(4096),
            ),
        ];
        for &(args, qname, qtype, qclass, rd, edns) in cases {
            let d = dns(args);
            let bytes = query(&d);
            let msg = Message::from_octets(bytes.as_slice()).unwrap();
            let h = msg.header();
            assert_eq!(h.id(), ID, "{args:?}");
            assert!(!h.qr());
            assert_eq!(h.opcode(), Opcode::QUERY);
            assert_eq!(h.rd(), rd, "{args:?}");
            assert_eq!(h.rcode(), Rcode::NOERROR);
            let counts = msg.header_counts();
            assert_eq!(counts.qdcount(), 1);
            assert_eq!(counts.ancount(), 0);
            assert_eq!(counts.nscount(), 0);
            assert_eq!(counts.arcount(), u16::from(edns.is_some()), "{args:?}");
            let q = msg.sole_question().unwrap();
            // domain shows a parsed root name as "" (a built one as ".").
            let shown = q.qname().to_string();
            let shown = if shown.is_empty() { ".".into() } else { shown };
            assert_eq!(shown, qname, "{args:?}");
            assert_eq!(q.qtype(), Rtype::from_int(qtype));
            assert_eq!(q.qclass(), Class::from_int(qclass));
            match (msg.opt(), edns) {
                (None, None) => {}
                (Some(opt), Some(size)) => {
                    assert_eq!(opt.udp_payload_size(), size);
                    assert_eq!(opt.version(), 0);
                    assert!(!opt.dnssec_ok());
                    assert_eq!(opt.rcode(h), OptRcode::NOERROR);
                    assert_eq!(
                        opt.opt()
                            .iter::<domain::base::opt::AllOptData<_, _>>()
                            .count(),
                        0
                    );
                }
                (got, want) => panic!("{args:?}: OPT {:?}, want {want:?}", got.is_some()),
            }
            // Nothing after the records domain knows of.
            let end = msg.additional().unwrap().next_section().unwrap();
            assert!(end.is_none());
        }
    }

    #[test]
    fn addresses_in_the_answer() {
        let rx = a_reply();
        let st = &mut st();
        assert_eq!(
            dns(&["--query", "www.example.com"]).on_datagram(st, &rx),
            Step::Done(Verdict::Pass)
        );
        let both = dns(&[
            "--query",
            "www.example.com",
            "--expect-address",
            "192.0.2.2",
            "--expect-address",
            "192.0.2.1",
        ]);
        assert_eq!(judge(&both, &rx), Step::Done(Verdict::Pass));
        let other = dns(&[
            "--query",
            "WWW.EXAMPLE.COM",
            "--expect-address",
            "192.0.2.1",
            "--expect-address",
            "192.0.2.9",
        ]);
        assert_eq!(
            judge(&other, &rx),
            fail(Reason::ExpectMismatch, "no A 192.0.2.9")
        );
        // An ANY query may look for either family.
        let any = dns(&[
            "--query",
            "www.example.com",
            "--type",
            "ANY",
            "--expect-address",
            "2001:db8::1",
        ]);
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::ANY);
        a.push((name("www.example.com"), 300, A::from_octets(192, 0, 2, 1)))
            .unwrap();
        a.push((
            name("www.example.com"),
            300,
            Aaaa::new("2001:db8::1".parse().unwrap()),
        ))
        .unwrap();
        assert_eq!(judge(&any, &finish(a)), Step::Done(Verdict::Pass));
    }

    #[test]
    fn aaaa_records() {
        let d = dns(&[
            "--query",
            "v6.example.com",
            "--type",
            "aaaa",
            "--expect-address",
            "2001:db8::1",
        ]);
        let mut a = reply(ID, Rcode::NOERROR, "v6.example.com", Rtype::AAAA);
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        a.push((name("v6.example.com"), 300, Aaaa::new(ip)))
            .unwrap();
        let rx = finish(a);
        assert_eq!(judge(&d, &rx), Step::Done(Verdict::Pass));
        let miss = dns(&[
            "--query",
            "v6.example.com",
            "--type",
            "AAAA",
            "--expect-address",
            "2001:db8::2",
        ]);
        assert_eq!(
            judge(&miss, &rx),
            fail(Reason::ExpectMismatch, "no AAAA 2001:db8::2")
        );
        // An A query is not answered by the AAAA record's bytes (wrong question, too).
        let a4 = dns(&["--query", "v6.example.com", "--expect-address", "192.0.2.1"]);
        assert_eq!(
            judge(&a4, &rx),
            fail(Reason::DnsInvalid, "question mismatch")
        );
    }

    #[test]
    fn cname_chains() {
        let rx = chain_reply();
        let d = dns(&[
            "--query",
            "www.example.com",
            "--expect-address",
            "192.0.2.7",
        ]);
        assert_eq!(judge(&d, &rx), Step::Done(Verdict::Pass));
        // Every truncation of it: ignored (no ID yet) or invalid, never a pass or a panic.
        for n in 0..rx.len() {
            let got = judge(&d, &rx[..n]);
            if n < 2 {
                assert_eq!(got, Step::Recv, "cut at {n}");
            } else {
                assert!(
                    matches!(got, Step::Done(Verdict::Fail(Reason::DnsInvalid, _))),
                    "cut at {n}: {got:?}"
                );
            }
        }

        // An address owned by a name the chain does not reach does not count.
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        a.push((
            name("www.example.com"),
            300,
            Cname::new(name("edge.example.net")),
        ))
        .unwrap();
        a.push((
            name("elsewhere.example.net"),
            300,
            A::from_octets(192, 0, 2, 7),
        ))
        .unwrap();
        assert_eq!(
            judge(&d, &finish(a)),
            fail(Reason::ExpectMismatch, "no A 192.0.2.7")
        );

        // A CNAME loop ends after MAX_CHAIN links.
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        a.push((
            name("www.example.com"),
            300,
            Cname::new(name("a.example.net")),
        ))
        .unwrap();
        a.push((
            name("a.example.net"),
            300,
            Cname::new(name("www.example.com")),
        ))
        .unwrap();
        assert_eq!(
            judge(&d, &finish(a)),
            fail(Reason::ExpectMismatch, "no A 192.0.2.7")
        );

        // A chain longer than MAX_CHAIN links is not followed to its end.
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        let hop = |i: usize| {
            if i == 0 {
                name("www.example.com")
            } else {
                name(&format!("h{i}.example"))
            }
        };
        for i in 0..=MAX_CHAIN {
            a.push((hop(i), 300, Cname::new(hop(i + 1)))).unwrap();
        }
        a.push((hop(MAX_CHAIN + 1), 300, A::from_octets(192, 0, 2, 7)))
            .unwrap();
        assert_eq!(
            judge(&d, &finish(a)),
            fail(Reason::ExpectMismatch, "no A 192.0.2.7")
        );
    }

    #[test]
    fn rcodes() {
        let d = dns(&["--query", "gone.example.com"]);
        let nx = finish(reply(ID, Rcode::NXDOMAIN, "gone.example.com", Rtype::A));
        assert_eq!(judge(&d, &nx), fail(Reason::DnsRcode, "NXDOMAIN"));
        let either = dns(&[
            "--query",
            "gone.example.com",
            "--expect-rcode",
            "noerror, NXDOMAIN",
        ]);
        assert_eq!(judge(&either, &nx), Step::Done(Verdict::Pass));
        let by_number = dns(&["--query", "gone.example.com", "--expect-rcode", "3"]);
        assert_eq!(judge(&by_number, &nx), Step::Done(Verdict::Pass));
        let sf = finish(reply(ID, Rcode::SERVFAIL, "gone.example.com", Rtype::A));
        assert_eq!(judge(&d, &sf), fail(Reason::DnsRcode, "SERVFAIL"));
        let refused = finish(reply(ID, Rcode::REFUSED, "gone.example.com", Rtype::A));
        assert_eq!(judge(&d, &refused), fail(Reason::DnsRcode, "REFUSED"));
        // An unnamed rcode is shown as a number.
        let mut r13 = finish(reply(ID, Rcode::NOERROR, "gone.example.com", Rtype::A));
        r13[3] |= 13;
        assert_eq!(judge(&d, &r13), fail(Reason::DnsRcode, "13"));

        // An old server answering FORMERR to the OPT record, with no question echoed.
        let formerr = [0x12, 0x34, 0x81, 0x81, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            judge(&d, &formerr),
            fail(Reason::DnsRcode, "FORMERR (try --edns no)")
        );
        let plain = dns(&["--query", "gone.example.com", "--edns", "no"]);
        assert_eq!(judge(&plain, &formerr), fail(Reason::DnsRcode, "FORMERR"));
        // An error reply without the question passes when its rcode is expected.
        let expect = dns(&["--query", "gone.example.com", "--expect-rcode", "FORMERR"]);
        assert_eq!(judge(&expect, &formerr), Step::Done(Verdict::Pass));

        // The OPT record extends the rcode: BADVERS is 16, whatever the header says.
        let mut add = reply(ID, Rcode::NOERROR, "gone.example.com", Rtype::A).additional();
        add.opt(|o| {
            o.set_rcode(OptRcode::BADVERS);
            Ok(())
        })
        .unwrap();
        let badvers = add.finish().into_target();
        assert_eq!(judge(&d, &badvers), fail(Reason::DnsRcode, "BADVERS"));
    }

    #[test]
    fn not_ours_or_not_a_reply() {
        let d = dns(&["--query", "www.example.com"]);
        let mut rx = a_reply();
        // Another ID: a late reply to an earlier check, ignored.
        rx[1] ^= 1;
        assert_eq!(judge(&d, &rx), Step::Recv);
        assert_eq!(judge(&d, &[]), Step::Recv);
        assert_eq!(judge(&d, &[0x12]), Step::Recv);
        assert_eq!(judge(&d, &[0x12, 0x35, 0x81]), Step::Recv);
        // Our ID, but not a reply.
        assert_eq!(
            judge(&d, &[0x12, 0x34, 0x81]),
            fail(Reason::DnsInvalid, "short header")
        );
        let q = query(&d);
        assert_eq!(judge(&d, &q), fail(Reason::DnsInvalid, "not a response"));
        let mut op = a_reply();
        op[2] |= 2 << 3; // OPCODE 2 (STATUS)
        assert_eq!(judge(&d, &op), fail(Reason::DnsInvalid, "opcode 2"));
    }

    #[test]
    fn question_must_echo_ours() {
        let d = dns(&["--query", "www.example.com"]);
        let mismatch = fail(Reason::DnsInvalid, "question mismatch");
        let other_name = finish(reply(ID, Rcode::NOERROR, "www.example.net", Rtype::A));
        assert_eq!(judge(&d, &other_name), mismatch);
        let longer = finish(reply(ID, Rcode::NOERROR, "www.example.com.au", Rtype::A));
        assert_eq!(judge(&d, &longer), mismatch);
        let other_type = finish(reply(ID, Rcode::NOERROR, "www.example.com", Rtype::AAAA));
        assert_eq!(judge(&d, &other_type), mismatch);
        let ch = dns(&["--query", "www.example.com", "--class", "CH"]);
        assert_eq!(judge(&ch, &a_reply()), mismatch);
        let upper = finish(reply(ID, Rcode::NOERROR, "WWW.EXAMPLE.COM", Rtype::A));
        assert_eq!(judge(&d, &upper), Step::Done(Verdict::Pass));
        // NOERROR without a question, or two questions.
        let mut none = [0u8; 12];
        none[..4].copy_from_slice(&[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(judge(&d, &none), mismatch);
        let mut b = MessageBuilder::new_vec();
        b.header_mut().set_id(ID);
        b.header_mut().set_qr(true);
        let mut q = b.question();
        q.push((name("www.example.com"), Rtype::A)).unwrap();
        q.push((name("www.example.com"), Rtype::A)).unwrap();
        assert_eq!(judge(&d, &q.finish()), mismatch);
        // The root.
        let root = dns(&["--query", ".", "--type", "NS"]);
        let rx = finish(reply(ID, Rcode::NOERROR, ".", Rtype::NS));
        assert_eq!(judge(&root, &rx), Step::Done(Verdict::Pass));
        assert_eq!(judge(&d, &rx), mismatch);
    }

    #[test]
    fn truncated_reply() {
        let d = dns(&["--query", "www.example.com"]);
        let mut rx = a_reply();
        rx[2] |= 0x02; // TC
        assert_eq!(judge(&d, &rx), fail(Reason::DnsInvalid, "truncated (TC)"));
    }

    #[test]
    fn compression_loops() {
        let d = dns(&[
            "--query",
            "www.example.com",
            "--expect-address",
            "192.0.2.1",
        ]);
        let looped = fail(Reason::DnsInvalid, "compression loop");
        // The question's name points at itself.
        let own = [
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert_eq!(judge(&d, &own), looped);
        // An answer's owner points at a pointer that points back at it.
        let mut rx = a_reply();
        rx[7] = 3; // ANCOUNT 3: a third record follows
        let here = rx.len() as u16;
        let [hi, lo] = (here + 2).to_be_bytes();
        rx.extend_from_slice(&[0xc0 | hi, lo]);
        let [hi, lo] = here.to_be_bytes();
        rx.extend_from_slice(&[0xc0 | hi, lo]);
        assert_eq!(judge(&d, &rx), looped);
        // A pointer past the end, and an extended label type.
        let past = [
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc1, 0, 0, 1, 0, 1,
        ];
        assert_eq!(judge(&d, &past), fail(Reason::DnsInvalid, "bad question"));
        let ext = [
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x41, 0, 0, 1, 0, 1,
        ];
        assert_eq!(judge(&d, &ext), fail(Reason::DnsInvalid, "bad question"));
        // A chain of pointers that ends in a name is fine while it stays short: a third
        // record whose owner points past itself, at trailing bytes that point at the
        // question's name.
        let mut ok = a_reply();
        let [hi, lo] = (ok.len() as u16 + 16).to_be_bytes();
        ok.extend_from_slice(&[0xc0 | hi, lo, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        ok.extend_from_slice(&[0xc0, 12]);
        ok[7] = 3;
        assert_eq!(judge(&d, &ok), Step::Done(Verdict::Pass));
    }

    #[test]
    fn malformed_sections() {
        let d = dns(&[
            "--query",
            "www.example.com",
            "--expect-address",
            "192.0.2.1",
        ]);
        // A record claimed but absent.
        let mut rx = a_reply();
        rx[7] = 3;
        assert_eq!(
            judge(&d, &rx),
            fail(Reason::DnsInvalid, "bad answer section")
        );
        let mut rx = a_reply();
        rx[9] = 1;
        assert_eq!(
            judge(&d, &rx),
            fail(Reason::DnsInvalid, "bad authority section")
        );
        let mut rx = a_reply();
        rx[11] = 1;
        assert_eq!(
            judge(&d, &rx),
            fail(Reason::DnsInvalid, "bad additional section")
        );
        // RDLENGTH past the end.
        let mut rx = a_reply();
        let n = rx.len();
        rx[n - 5] = 5;
        assert_eq!(
            judge(&d, &rx),
            fail(Reason::DnsInvalid, "bad answer section")
        );
        // An A record of 5 bytes: each record is 16 bytes (owner pointer, fixed fields,
        // address), so the first one's RDLENGTH ends 4 bytes before the second one.
        let mut fb = a_reply();
        let second = fb.len() - 16;
        fb[second - 5] = 5;
        fb.insert(second, 0);
        assert_eq!(judge(&d, &fb), fail(Reason::DnsInvalid, "bad A record"));
        // Two OPT records, and an OPT record not owned by the root.
        let mut two = a_reply();
        two[11] = 2;
        let opt = [0u8, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0];
        two.extend_from_slice(&opt);
        two.extend_from_slice(&opt);
        assert_eq!(judge(&d, &two), fail(Reason::DnsInvalid, "bad OPT record"));
        let mut owned = a_reply();
        owned[11] = 1;
        owned.extend_from_slice(&[0xc0, 12]);
        owned.extend_from_slice(&opt[1..]);
        assert_eq!(
            judge(&d, &owned),
            fail(Reason::DnsInvalid, "bad OPT record")
        );
        let mut fine = a_reply();
        fine[11] = 1;
        fine.extend_from_slice(&opt);
        assert_eq!(judge(&d, &fine), Step::Done(Verdict::Pass));
    }

    #[test]
    fn a_full_buffer_is_judged() {
        let d = dns(&["--query", "www.example.com", "--max-response", "512"]);
        assert_eq!(d.max_response(), 512);
        // Trailing bytes after the last record are ignored.
        let mut rx = a_reply();
        rx.resize(512, 0);
        assert_eq!(judge(&d, &rx), Step::Done(Verdict::Pass));
        // A reply the kernel cut at the buffer's size has records that run past the end.
        let mut a = reply(ID, Rcode::NOERROR, "www.example.com", Rtype::A);
        for i in 0..40 {
            a.push((name("www.example.com"), 300, A::from_octets(192, 0, 2, i)))
                .unwrap();
        }
        let long = finish(a);
        assert!(long.len() > 512);
        assert_eq!(
            judge(&d, &long[..512]),
            fail(Reason::DnsInvalid, "bad answer section")
        );
    }

    /// xorshift64*: a fixed, repeatable stream of test bytes.
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    #[test]
    fn byte_flips_never_panic() {
        let checks = [
            dns(&[
                "--query",
                "www.example.com",
                "--expect-address",
                "192.0.2.7",
            ]),
            dns(&[
                "--query",
                "www.example.com",
                "--expect-address",
                "192.0.2.1",
                "--edns",
                "no",
            ]),
            dns(&[
                "--query",
                "www.example.com",
                "--type",
                "ANY",
                "--expect-address",
                "::1",
                "--expect-rcode",
                "0,1,2,3,4,5",
            ]),
        ];
        let samples = [a_reply(), chain_reply()];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut outcomes = [0usize; 3];
        for round in 0..30_000 {
            let mut rx = samples[round % samples.len()].clone();
            for _ in 0..1 + rng(&mut seed) % 4 {
                let i = (rng(&mut seed) % rx.len() as u64) as usize;
                rx[i] ^= 1 << (rng(&mut seed) % 8);
            }
            if round % 7 == 0 {
                // Keep the ID ours so the whole judge runs.
                rx[..2].copy_from_slice(&ID.to_be_bytes());
            }
            for d in &checks {
                match judge(d, &rx) {
                    Step::Recv => outcomes[0] += 1,
                    Step::Done(Verdict::Pass) => outcomes[1] += 1,
                    Step::Done(Verdict::Fail(..)) => outcomes[2] += 1,
                    Step::Send => panic!("a datagram never asks to send"),
                }
            }
        }
        // Random datagrams that start with our ID.
        for _ in 0..30_000 {
            let len = (rng(&mut seed) % 96) as usize;
            let mut rx: Vec<u8> = (0..len).map(|_| rng(&mut seed) as u8).collect();
            if len >= 2 {
                rx[..2].copy_from_slice(&ID.to_be_bytes());
            }
            if len >= 4 {
                rx[2] = 0x80 | (rx[2] & 0x07);
            }
            for d in &checks {
                let _ = judge(d, &rx);
            }
        }
        assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
    }

    #[test]
    fn option_errors() {
        let e = err(&[]);
        assert_eq!(e.word, None);
        assert!(e.message.contains("needs --query"), "{}", e.message);
        assert_eq!(err(&["--type", "A"]).word, None);
        assert_eq!(err(&["--query", "x", "--type", "BOGUS"]).word, Some(3));
        assert!(err(&["--query", "x", "--type", "BOGUS"])
            .message
            .contains("TYPEnnn"));
        for t in [
            "TYPE0",
            "OPT",
            "AXFR",
            "type252",
            "TYPE65536",
            "TYPE",
            "TYPEx1",
        ] {
            assert_eq!(err(&["--query", "x", "--type", t]).word, Some(3), "{t}");
        }
        assert_eq!(err(&["--query", "x", "--class", "XX"]).word, Some(3));
        assert_eq!(
            err(&["--query", "x", "--expect-rcode", "NOERROR,BOGUS"]).word,
            Some(3)
        );
        assert_eq!(err(&["--query", "x", "--expect-rcode", "16"]).word, Some(3));
        assert_eq!(
            err(&["--query", "x", "--expect-rcode", "NOERROR,"]).word,
            Some(3)
        );
        assert_eq!(
            err(&["--query", "x", "--expect-address", "192.0.2"]).word,
            Some(3)
        );
        assert_eq!(err(&["--query", "x", "--expect-address=::g"]).word, Some(2));
        // An address the question can never return.
        let e = err(&[
            "--query",
            "x",
            "--type",
            "AAAA",
            "--expect-address",
            "192.0.2.1",
        ]);
        assert_eq!(e.word, Some(5));
        assert!(e.message.contains("--type A or ANY"), "{}", e.message);
        assert_eq!(
            err(&[
                "--query",
                "x",
                "--expect-address",
                "192.0.2.1",
                "--type",
                "MX"
            ])
            .word,
            Some(3)
        );
        assert_eq!(
            err(&[
                "--query",
                "x",
                "--class",
                "CH",
                "--expect-address",
                "192.0.2.1"
            ])
            .word,
            Some(5)
        );
        assert_eq!(err(&["--query", "x", "--recurse", "maybe"]).word, Some(3));
        assert_eq!(err(&["--query", "x", "--edns", "1"]).word, Some(3));
        assert_eq!(
            err(&["--query", "x", "--max-response", "511"]).word,
            Some(3)
        );
        assert_eq!(
            err(&["--query", "x", "--max-response", "65536"]).word,
            Some(3)
        );
        assert_eq!(err(&["--query", "x", "--bogus", "1"]).word, Some(2));
        assert_eq!(err(&["--query", "x", "--query", "y"]).word, Some(2));

        // Names.
        let l63 = "a".repeat(63);
        let l64 = "a".repeat(64);
        assert_eq!(dns(&["--query", &l63]).qname_len, 65);
        let e = err(&[
            "--max-response",
            "600",
            "--query",
            &format!("www.{l64}.com"),
        ]);
        assert_eq!(e.word, Some(3));
        assert!(e.message.contains("64 bytes"), "{}", e.message);
        let (l61, l62) = ("b".repeat(61), "b".repeat(62));
        let max = format!("{l63}.{l63}.{l63}.{l61}");
        assert_eq!(dns(&["--query", &max]).qname_len, 255);
        assert_eq!(dns(&["--query", &format!("{max}.")]).qname_len, 255);
        let e = err(&["--query", &format!("{l63}.{l63}.{l63}.{l62}")]);
        assert_eq!(e.word, Some(1));
        assert!(e.message.contains("256 bytes encoded"), "{}", e.message);
        for bad in [
            "",
            "..",
            "a..b",
            ".a",
            "a b",
            "ex*mple.com",
            "caf\u{e9}.example",
            "a.b..",
        ] {
            assert_eq!(err(&["--query", bad]).word, Some(1), "{bad:?}");
        }
        assert_eq!(err(&["--type", "A", "--query=a..b"]).word, Some(2));
    }

    #[test]
    fn options_as_built() {
        let d = dns(&["--query", "www.example.com"]);
        assert_eq!(d.max_response(), DEFAULT_MAX);
        assert!(d.edns);
        assert_eq!((d.qtype, d.qclass, d.rcodes), (TYPE_A, CLASS_IN, 1));
        let d = dns(&["--query", "x", "--max-response", "512"]);
        assert!(!d.edns, "no OPT record for 512 bytes");
        let d = dns(&[
            "--query",
            "x",
            "--expect-rcode",
            "NOERROR,NXDOMAIN,REFUSED,15",
        ]);
        assert_eq!(d.rcodes, 1 | 1 << 3 | 1 << 5 | 1 << 15);
        let d = dns(&["--query", "x", "--type", "caa", "--class", "class42"]);
        assert_eq!((d.qtype, d.qclass), (257, 42));
    }
}
