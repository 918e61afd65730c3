//! `check dns`: the fuzz input is one reply datagram. Each spec below builds its query with a
//! nonce taken from the input's last two bytes and judges the input twice: as it is (usually
//! another ID: ignored) and with its first two bytes patched to the query's ID, so that the
//! question, section and address paths are reached.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lvsmon::plugins::{CheckSpec, CheckState, Step};

#[path = "../common/tcp.rs"]
mod tcp;

fn specs() -> &'static [CheckSpec] {
    static SPECS: OnceLock<Vec<CheckSpec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        vec![
            tcp::spec(
                "dns",
                &[
                    b"--query",
                    b"www.example.com",
                    b"--type",
                    b"A",
                    b"--expect-address",
                    b"192.0.2.1",
                    b"--expect-address",
                    b"192.0.2.2",
                ],
            ),
            tcp::spec(
                "dns",
                &[
                    b"--query",
                    b"Example.ORG.",
                    b"--type",
                    b"AAAA",
                    b"--expect-address",
                    b"2001:db8::1",
                    b"--expect-rcode",
                    b"NOERROR,NXDOMAIN",
                    b"--edns",
                    b"no",
                    b"--max-response",
                    b"512",
                ],
            ),
            tcp::spec(
                "dns",
                &[
                    b"--query",
                    b"_sip._udp.example.com",
                    b"--type",
                    b"ANY",
                    b"--class",
                    b"ANY",
                    b"--expect-address",
                    b"192.0.2.1",
                    b"--expect-address",
                    b"2001:db8::2",
                    b"--recurse",
                    b"no",
                ],
            ),
            tcp::spec(
                "dns",
                &[
                    b"--query",
                    b"version.bind",
                    b"--type",
                    b"TXT",
                    b"--class",
                    b"CH",
                ],
            ),
            tcp::spec(
                "dns",
                &[
                    b"--query",
                    b".",
                    b"--type",
                    b"SOA",
                    b"--expect-rcode",
                    b"0,3,15",
                    b"--max-response",
                    b"65535",
                ],
            ),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let nonce = match data {
        [.., a, b] => u32::from(u16::from_be_bytes([*a, *b])) | 0x5a5a_0000,
        _ => 0x5a5a_1234,
    };
    let mut patched = data.to_vec();
    for spec in specs() {
        let mut st = CheckState {
            nonce,
            ..CheckState::default()
        };
        assert_eq!(spec.begin(&mut st), Step::Send);
        let mut out = [0u8; 1024];
        let n = spec.datagram(&st, &mut out);
        assert!(n >= 12, "query of {n} bytes");
        let id = [out[0], out[1]];
        assert_eq!(
            u16::from_be_bytes(id),
            nonce as u16,
            "query ID is not the nonce"
        );
        assert_eq!(spec.sent(&mut st), Step::Recv);

        // As received: ours only if the ID happens to match.
        let mut s1 = st;
        let step = spec.on_data(&mut s1, data);
        if data.len() >= 2 && data[..2] == id {
            assert!(
                matches!(step, Step::Done(_)),
                "our ID but no verdict: {step:?}"
            );
        } else {
            assert_eq!(step, Step::Recv, "a datagram with another ID was judged");
        }
        // With our ID: always a verdict, and the same one when asked again.
        if patched.len() >= 2 {
            patched[..2].copy_from_slice(&id);
            let mut s2 = st;
            let step = spec.on_data(&mut s2, &patched);
            assert!(
                matches!(step, Step::Done(_)),
                "our ID but no verdict: {step:?}"
            );
            let mut s3 = st;
            assert_eq!(spec.on_data(&mut s3, &patched), step, "verdict not stable");
        }
    }
});
