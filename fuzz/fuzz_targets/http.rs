//! `check http`: the fuzz input is the server's response (see `common/tcp.rs` for the layout:
//! byte 0 and up to 7 more choose where the bytes are split). Every spec below judges it; the
//! verdict must not depend on the splitting.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lvsmon::plugins::CheckSpec;

#[path = "../common/tcp.rs"]
mod tcp;

fn specs() -> &'static [CheckSpec] {
    static SPECS: OnceLock<Vec<CheckSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        vec![
            // Status only (default 200-399): decided once the headers are complete.
            tcp::spec("http", &[]),
            // Body search, Content-Length or chunked or close-delimited.
            tcp::spec("http", &[b"--match", b"OK"]),
            // A longer needle that can straddle pieces, other codes, HTTP/1.0.
            tcp::spec(
                "http",
                &[
                    b"--url",
                    b"http://www.example.com/health?x=1",
                    b"--expect",
                    b"200,204,301-302",
                    b"--match",
                    b"I am healthy",
                    b"--version",
                    b"1.0",
                ],
            ),
            // HEAD: no body, whatever the headers say.
            tcp::spec("http", &[b"--method", b"HEAD", b"--expect", b"200-299"]),
            // The smallest buffer: response-too-large is reachable.
            tcp::spec("http", &[b"--match", b"ready", b"--max-response", b"256"]),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let (pieces, stream) = tcp::split_input(data);
    for spec in specs() {
        tcp::check(spec, &pieces, stream, true);
    }
});
