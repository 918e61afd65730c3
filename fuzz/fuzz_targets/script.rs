//! `check script` (and the script presets): the fuzz input is everything the server sends
//! during the dialogue (see `common/tcp.rs` for the layout).
//!
//! Dialogues that only receive once they start receiving must reach the same verdict however
//! the bytes are split. Dialogues that send between replies are only checked for panics, the
//! invariants of `play` and a stable `Done`: there the split decides which bytes arrived "out
//! of turn" (before our send), which the plugin is allowed to judge differently.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lvsmon::plugins::CheckSpec;

#[path = "../common/tcp.rs"]
mod tcp;

/// A spec and whether its verdict must be independent of the splitting.
fn specs() -> &'static [(CheckSpec, bool)] {
    static SPECS: OnceLock<Vec<(CheckSpec, bool)>> = OnceLock::new();
    SPECS.get_or_init(|| {
        vec![
            // SMTP: greeting, EHLO with a multi-line reply, QUIT.
            (
                tcp::spec(
                    "script",
                    &[
                        b"--expect",
                        b"220",
                        b"--send",
                        b"EHLO lvsmon\r\n",
                        b"--expect",
                        b"250",
                        b"--send",
                        b"QUIT\r\n",
                        b"--expect",
                        b"221",
                    ],
                ),
                false,
            ),
            // Binary: a MySQL-like greeting.
            (
                tcp::spec("script", &[b"--skip", b"3", b"--expect-hex", b"00 0a"]),
                true,
            ),
            // Binary then text then binary alternatives, at the smallest buffer.
            (
                tcp::spec(
                    "script",
                    &[
                        b"--skip",
                        b"2",
                        b"--expect",
                        b"250",
                        b"--expect-hex",
                        b"2e|0d0a|41 42",
                        b"--expect",
                        b"5.7",
                        b"--max-response",
                        b"256",
                    ],
                ),
                true,
            ),
            // A continuation line asked for explicitly, then the final line.
            (
                tcp::spec("script", &[b"--expect", b"250-", b"--expect", b"250 "]),
                true,
            ),
            // Presets: send first, then receive only (split-free); and with sends between.
            (tcp::spec("redis", &[]), true),
            (tcp::spec("pgsql", &[]), true),
            (tcp::spec("mysql", &[]), true),
            (tcp::spec("imap", &[]), false),
            (tcp::spec("pop3", &[]), false),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let (pieces, stream) = tcp::split_input(data);
    for (spec, split_free) in specs() {
        tcp::check(spec, &pieces, stream, *split_free);
    }
});
