#!/usr/bin/env python3
"""Writes every seed of fuzz/corpus/TARGET/seed-*: hand-made ones for http, banner, script,
dns, state and history; for config, copies of lvsmon.conf.example, tests/data/good (with
includes.d) and tests/data/bad; for netlink, copies of tests/data/netlink/*.bin.

Run from anywhere (python3 fuzz/seeds.py), e.g. after `cargo fuzz cmin`, which renames them.
"""

import glob
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def copy(target, name, path):
    with open(path, "rb") as f:
        write(target, name, f.read())


# --- config and netlink: the test fixtures ------------------------------------------------
copy("config", "lvsmon.conf.example", os.path.join(ROOT, "lvsmon.conf.example"))
for p in sorted(glob.glob(os.path.join(ROOT, "tests/data/good/*.conf"))):
    copy("config", "good-" + os.path.basename(p), p)
for p in sorted(glob.glob(os.path.join(ROOT, "tests/data/good/includes.d/*"))):
    copy("config", "good-includes.d-" + os.path.basename(p), p)
for p in sorted(glob.glob(os.path.join(ROOT, "tests/data/bad/*.conf"))):
    copy("config", "bad-" + os.path.basename(p), p)
for p in sorted(glob.glob(os.path.join(ROOT, "tests/data/netlink/*.bin"))):
    copy("netlink", os.path.basename(p), p)


# TCP targets: byte 0 is the header (low 3 bits: how many split-length bytes follow), then
# those bytes (each piece is byte + 1 long, cycled), then the stream. 0x00: in one piece.
def tcp(target, name, stream, pieces=()):
    assert len(pieces) <= 7
    write(target, name, bytes([len(pieces)]) + bytes(p - 1 for p in pieces) + stream)


# --- http --------------------------------------------------------------------------------
ok_cl = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 16\r\n\r\nI am healthy, OK"
chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nI am \r\nb\r\nhealthy, OK\r\n0\r\n\r\n")
tcp("http", "200-content-length", ok_cl)
tcp("http", "200-content-length-split", ok_cl, (1, 17, 3))
tcp("http", "200-chunked", chunked)
tcp("http", "200-chunked-bytewise", chunked, (1,))
tcp("http", "200-chunk-ext-trailer",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"4;name=value\r\nread\r\n2\r\ny!\r\n0\r\nX-Trailer: 1\r\n\r\n")
tcp("http", "200-close-delimited", b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nready and OK\n")
tcp("http", "100-continue-then-200",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
tcp("http", "204-no-content", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n")
tcp("http", "301-redirect",
    b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://www.example.com/\r\n"
    b"Content-Length: 0\r\n\r\n")
tcp("http", "503", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
tcp("http", "200-body-mismatch",
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nall is bad\n")
tcp("http", "content-length-conflict",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nOK!!")
tcp("http", "bad-chunk-size",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nOK\r\n0\r\n\r\n")
tcp("http", "ssh-banner-instead", b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
tcp("http", "truncated-headers", b"HTTP/1.1 200 OK\r\nContent-Le")

# --- banner ------------------------------------------------------------------------------
tcp("banner", "ssh", b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
tcp("banner", "ssh-split", b"SSH-2.0-OpenSSH_9.2p1\r\n", (3, 5))
tcp("banner", "smtp-multiline",
    b"220-mail.example.com ESMTP\r\n220-no UCE\r\n220 ready\r\n", (7,))
tcp("banner", "smtp", b"220 mail.example.com ESMTP Postfix\r\n")
tcp("banner", "ssh1", b"SSH-1.99-old\r\n")
tcp("banner", "no-newline", b"SSH-2.0-x")
tcp("banner", "http-instead", b"HTTP/1.1 400 Bad Request\r\n\r\n")

# --- script ------------------------------------------------------------------------------
tcp("script", "smtp-dialogue",
    b"220 mail.example.com ESMTP\r\n"
    b"250-mail.example.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
    b"221 2.0.0 Bye\r\n", (28, 52, 16))
tcp("script", "smtp-dialogue-whole",
    b"220 mail ESMTP\r\n250-a\r\n250 b\r\n221 bye\r\n")
tcp("script", "mysql-greeting",
    b"\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00abcdefgh\x00", (4,))
tcp("script", "mysql-error",
    b"\x45\x00\x00\x00\xffj\x04Host '10.0.0.1' is not allowed to connect")
tcp("script", "pgsql-S", b"S")
tcp("script", "pgsql-N", b"N")
tcp("script", "binary-text-binary", b"\x00\x01250 ok\r\n\r\n5.7.1 denied\r\n", (2, 4))
tcp("script", "redis-pong", b"+PONG\r\n")
tcp("script", "imap",
    b"* OK IMAP4rev1 ready\r\n* BYE logging out\r\na1 OK LOGOUT done\r\n", (22, 19))
tcp("script", "pop3", b"+OK Dovecot ready.\r\n+OK Logging out.\r\n", (20,))
tcp("script", "continuation", b"250-first\r\n250-second\r\n250 last\r\n")


# --- dns ---------------------------------------------------------------------------------
def name(n):
    out = b""
    for label in n.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def header(id_, flags, qd, an, ns, ar):
    return struct.pack(">HHHHHH", id_, flags, qd, an, ns, ar)


def question(n, qtype, qclass=1):
    return name(n) + struct.pack(">HH", qtype, qclass)


def rr(owner, rtype, rclass, ttl, rdata):
    return owner + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def opt(size=1232, ext_rcode=0):
    return b"\x00" + struct.pack(">HHIH", 41, size, ext_rcode << 24, 0)


PTR_Q = b"\xc0\x0c"  # compression pointer to the question name
# www.example.com A: two addresses, EDNS.
write("dns", "a-two-addresses",
      header(0x1234, 0x8180, 1, 2, 0, 1) + question("www.example.com", 1)
      + rr(PTR_Q, 1, 1, 300, bytes([192, 0, 2, 1])) + rr(PTR_Q, 1, 1, 300, bytes([192, 0, 2, 2]))
      + opt())
# CNAME chain: www.example.com -> web.example.net -> 192.0.2.1, 192.0.2.2
target = name("web.example.net")
write("dns", "a-cname-chain",
      header(0x1234, 0x8180, 1, 3, 0, 0) + question("www.example.com", 1)
      + rr(PTR_Q, 5, 1, 60, target)
      + rr(b"\xc0\x2d", 1, 1, 60, bytes([192, 0, 2, 1]))
      + rr(b"\xc0\x2d", 1, 1, 60, bytes([192, 0, 2, 2])))
# Example.ORG AAAA, no EDNS (spec 2), mixed case.
write("dns", "aaaa-mixed-case",
      header(0x1234, 0x8580, 1, 1, 0, 0) + question("eXample.org", 28)
      + rr(PTR_Q, 28, 1, 60, bytes.fromhex("20010db8000000000000000000000001")))
# NXDOMAIN with an SOA in the authority section.
soa = name("ns.example.org") + name("hostmaster.example.org") + struct.pack(">IIIII", 1, 2, 3, 4, 5)
write("dns", "nxdomain-soa",
      header(0x1234, 0x8183, 1, 0, 1, 0) + question("example.org", 28)
      + rr(name("example.org"), 6, 1, 300, soa))
# FORMERR without a question and without OPT.
write("dns", "formerr-no-question", header(0x1234, 0x8001, 0, 0, 0, 0))
# version.bind CH TXT.
write("dns", "chaos-txt",
      header(0x1234, 0x8400, 1, 1, 0, 0) + question("version.bind", 16, 3)
      + rr(PTR_Q, 16, 3, 0, b"\x069.18.0"))
# Root SOA with an extended rcode in OPT (BADVERS).
write("dns", "root-soa-badvers",
      header(0x1234, 0x8100, 1, 0, 0, 1) + question(".", 6) + opt(4096, 1))
# ANY for _sip._udp.example.com, both families.
write("dns", "any-both-families",
      header(0x1234, 0x8400, 1, 2, 0, 0) + question("_sip._udp.example.com", 255, 255)
      + rr(PTR_Q, 1, 1, 60, bytes([192, 0, 2, 1]))
      + rr(PTR_Q, 28, 1, 60, bytes.fromhex("20010db8000000000000000000000002")))
# Truncated (TC) and a pointer loop.
write("dns", "tc-set", header(0x1234, 0x8380, 1, 0, 0, 0) + question("www.example.com", 1))
write("dns", "pointer-loop",
      header(0x1234, 0x8180, 1, 1, 0, 0) + question("www.example.com", 1)
      + rr(b"\xc0\x21", 1, 1, 60, bytes([192, 0, 2, 1])))


# --- history and state -------------------------------------------------------------------
def history(newest, lost, raw, minutes, hours):
    out = b"LVSH" + bytes([1]) + struct.pack("<II", newest, lost)
    out += struct.pack("<H", len(raw))
    for t, lat, code in raw:
        out += struct.pack("<II", t, (lat << 8) | code)
    for cells in (minutes, hours):
        out += struct.pack("<H", len(cells))
        for start, checks, failures, sum_us, lo, hi in cells:
            out += struct.pack("<IHHIHH", start, checks, failures, sum_us, lo, hi)
    return out


T0 = 1_700_000_000 // 3600 * 3600  # an hour boundary
raw = [(T0 + 10 * i, 300 + i, 0 if i % 7 else 7) for i in range(12)]
h1 = history(T0 + 110, 0, raw,
             [(T0 // 60, 6, 1, 2000, 300, 306), (T0 // 60 + 1, 6, 0, 1900, 306, 311)],
             [(T0 // 3600, 12, 1, 3900, 300, 311)])
h2 = history(T0 + 7200, T0 - 5, [(T0 + 7200, 20_000_000 & 0xFFFFFF, 7)],
             [(T0 // 60 + 120, 1, 1, 8191, 8191, 8191)],
             [(T0 // 3600 - 30, 100, 3, 50_000, 1, 9000), (T0 // 3600 + 2, 1, 1, 10, 10, 10)])
h_empty = history(0, 0, [], [], [])
write("history", "twelve-results", h1)
write("history", "lost-and-slow", h2)
write("history", "empty", h_empty)


def fnv1a64(b):
    h = 0xCBF29CE484222325
    for x in b:
        h ^= x
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def state(records, when=1_700_000_000):
    out = b"LVSMON-STATE\n" + struct.pack("<IQ", 1, when)
    for key, drained, hist in records:
        k = key.encode()
        out += struct.pack("<H", len(k)) + k + bytes([1 if drained else 0])
        out += struct.pack("<I", len(hist)) + hist
    out += struct.pack("<H", 0xFFFF)
    return out + struct.pack("<Q", fnv1a64(out))


write("state", "two-reals", state([("tcp:10.0.0.1:80 192.168.1.10:80", False, h1),
                                    ("tcp:10.0.0.1:80 192.168.1.11:80", True, h2)]))
write("state", "empty", state([]))
write("state", "drained-no-history", state([("fwmark:42 [2001:db8::5]:443", True, b"")]))
