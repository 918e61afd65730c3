//! `check banner` (and the `ssh` preset): the fuzz input is what the server says first (see
//! `common/tcp.rs` for the layout). The verdict, and whether the goodbye is sent, must not
//! depend on how the bytes were split.
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
            tcp::spec(
                "banner",
                &[b"--expect", b"SSH-2.0-", b"--send", b"QUIT\r\n"],
            ),
            // Multi-line SMTP greeting: the goodbye waits for the last line.
            tcp::spec(
                "banner",
                &[
                    b"--expect",
                    b"220",
                    b"--send",
                    b"QUIT\r\n",
                    b"--max-response",
                    b"256",
                ],
            ),
            // Any banner.
            tcp::spec("banner", &[]),
            tcp::spec("ssh", &[]),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let (pieces, stream) = tcp::split_input(data);
    for spec in specs() {
        tcp::check(spec, &pieces, stream, true);
    }
});
