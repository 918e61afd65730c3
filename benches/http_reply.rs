//! Judging an HTTP reply (`plugins/http.rs`): `CheckSpec::on_data`, which the loop calls with
//! every byte received so far (`monitor::phase::recv`). The parser state lives on the stack.

use divan::{black_box, Bencher};
use lvsmon::plugins::{CheckSpec, CheckState, Step, Target};

fn main() {
    divan::main();
}

fn spec(args: &[&[u8]]) -> CheckSpec {
    let target = Target {
        addr: "127.1.0.1:18080".parse().unwrap(),
    };
    CheckSpec::parse("http", args, target).expect("http check")
}

/// The benchmark farm's reply (`bench/common.rs`).
const FARM: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";

/// A reply with the headers a typical web server sends.
const TYPICAL: &[u8] = b"HTTP/1.1 200 OK\r\nServer: web/1.0\r\nDate: Sat, 22 Nov 2025 03:51:00 GMT\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n\r\nOK";

const UNAVAILABLE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn judge(s: &CheckSpec, rx: &[u8]) -> Step {
    let mut st = CheckState::default();
    s.on_data(&mut st, black_box(rx))
}

/// No `--match`: the verdict comes with the headers (the benchmark's own check).
#[divan::bench]
fn pass_on_headers_farm(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health"]);
    bencher.bench_local(|| judge(&s, FARM));
}

/// The same with nine header lines.
#[divan::bench]
fn pass_on_headers_typical(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health"]);
    bencher.bench_local(|| judge(&s, TYPICAL));
}

/// A status outside `--expect`.
#[divan::bench]
fn fail_on_status(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health"]);
    bencher.bench_local(|| judge(&s, UNAVAILABLE));
}

/// Headers not complete yet: parse, then wait for more.
#[divan::bench]
fn partial_headers(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health"]);
    bencher.bench_local(|| judge(&s, &TYPICAL[..120]));
}

/// `--match` over a 1 KiB Content-Length body, the text at its end.
#[divan::bench]
fn match_in_1k_body(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health", b"--match", b"status=ok"]);
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n".to_vec();
    reply.extend(std::iter::repeat_n(b'x', 1024 - 9));
    reply.extend_from_slice(b"status=ok");
    bencher.bench_local(|| judge(&s, &reply));
}

/// `--match` over a chunked body of four 256-byte chunks.
#[divan::bench]
fn match_in_chunked_body(bencher: Bencher) {
    let s = spec(&[b"--url", b"http://bench/health", b"--match", b"status=ok"]);
    let mut reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for last in [false, false, false, true] {
        reply.extend_from_slice(b"100\r\n");
        reply.extend(std::iter::repeat_n(b'x', if last { 256 - 9 } else { 256 }));
        if last {
            reply.extend_from_slice(b"status=ok");
        }
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b"0\r\n\r\n");
    bencher.bench_local(|| judge(&s, &reply));
}
