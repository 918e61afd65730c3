//! Shared by the `http`, `banner` and `script` targets: plays one TCP check against a byte
//! stream the way `src/monitor/phase.rs` drives a plugin, and compares runs.
//!
//! Input layout: byte 0 is a header `h`; `h & 7` delta bytes follow; the rest is the stream
//! the "server" sends. With no delta bytes the stream arrives in one piece; otherwise it
//! arrives in pieces of `delta + 1` bytes, cycling through the deltas.

#![allow(dead_code)]

use std::net::SocketAddr;

use lvsmon::plugins::{CheckSpec, CheckState, Detail, Reason, Step, Target, Verdict};

/// Any address: only the default `Host` header of `http` looks at it.
pub fn target() -> Target {
    Target {
        addr: SocketAddr::from(([192, 0, 2, 10], 80)),
    }
}

/// Parses a check line's words, panicking on a mistake in the harness itself.
pub fn spec(name: &str, args: &[&[u8]]) -> CheckSpec {
    CheckSpec::parse(name, args, target()).unwrap_or_else(|e| panic!("{name} {args:?}: {e:?}"))
}

/// Splits fuzz input into piece lengths and the stream.
pub fn split_input(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&h, rest)) = data.split_first() else {
        return (Vec::new(), &[]);
    };
    let n = usize::from(h & 7).min(rest.len());
    let (deltas, stream) = rest.split_at(n);
    (deltas.iter().map(|&d| usize::from(d) + 1).collect(), stream)
}

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// Decided by `on_eof` (the peer closed) rather than while bytes arrived.
    pub by_eof: bool,
    /// Every byte the plugin asked to write, in order.
    pub sent: Vec<u8>,
}

/// Plays `spec` against `stream`, delivered in pieces of the lengths in `pieces` (cycled; an
/// empty list is one piece). Mirrors the monitor: the receive buffer is `max_response()`
/// bytes, a full buffer with the plugin still waiting is `response-too-large`, EOF with
/// nothing received is `closed` without asking the plugin, and bytes are offered to the
/// plugin only when new ones arrive.
///
/// Checks on the way: `mark` never passes the bytes received, `Send` always has bytes, and a
/// `Done` is stable: asking again from the same state with the same bytes gives the same
/// answer.
pub fn play(spec: &CheckSpec, stream: &[u8], pieces: &[usize]) -> Outcome {
    let limit = spec.max_response().max(1);
    let mut st = CheckState::default();
    let mut got = 0usize;
    let mut sent = Vec::new();
    let mut piece = pieces.iter().copied().cycle();
    let mut step = spec.begin(&mut st);
    let mut sends = 0usize;
    loop {
        match step {
            Step::Done(verdict) => {
                return Outcome {
                    verdict,
                    by_eof: false,
                    sent,
                }
            }
            Step::Send => {
                let bytes = spec.send_bytes(&st);
                assert!(!bytes.is_empty(), "Step::Send with nothing to send");
                sent.extend_from_slice(bytes);
                sends += 1;
                assert!(sends <= 1 + 0x7fff, "Send without end");
                step = spec.sent(&mut st);
            }
            Step::Recv => {
                if got >= limit {
                    return Outcome {
                        verdict: Verdict::Fail(
                            Reason::ResponseTooLarge,
                            Detail::number(got as u64),
                        ),
                        by_eof: false,
                        sent,
                    };
                }
                if got == stream.len() {
                    let verdict = if got == 0 {
                        Verdict::fail(Reason::Closed)
                    } else {
                        spec.on_eof(&mut st, &stream[..got])
                    };
                    return Outcome {
                        verdict,
                        by_eof: true,
                        sent,
                    };
                }
                let want = piece.next().unwrap_or(usize::MAX);
                got += want.min(limit - got).min(stream.len() - got);
                let before = st;
                step = spec.on_data(&mut st, &stream[..got]);
                assert!(
                    st.mark as usize <= got,
                    "mark {} past the {got} bytes received",
                    st.mark
                );
                if let Step::Done(_) = step {
                    let mut again = before;
                    assert_eq!(
                        spec.on_data(&mut again, &stream[..got]),
                        step,
                        "a second look at the same bytes changed the verdict"
                    );
                }
            }
        }
    }
}

/// Asserts two outcomes of the same stream, fed in different pieces, agree: same verdict,
/// same bytes sent, decided the same way. As in the plugins' own unit tests, a
/// `banner-mismatch` or `expect-mismatch` decided on part of a line may show only the part
/// that had arrived (one detail is a prefix of the other).
pub fn assert_same(a: &Outcome, b: &Outcome, what: &str) {
    let same_verdict = a.verdict == b.verdict
        || match (a.verdict, b.verdict) {
            (Verdict::Fail(ra, da), Verdict::Fail(rb, db)) => {
                ra == rb
                    && matches!(ra, Reason::BannerMismatch | Reason::ExpectMismatch)
                    && (da.as_str().starts_with(db.as_str())
                        || db.as_str().starts_with(da.as_str()))
            }
            _ => false,
        };
    assert!(
        same_verdict && a.by_eof == b.by_eof && a.sent == b.sent,
        "{what}: outcome depends on how the bytes were split:\n  {a:?}\n  {b:?}"
    );
}

/// Plays the stream as the input's pieces say, then (when `split_free`) whole and one byte at
/// a time, and asserts all three agree.
pub fn check(spec: &CheckSpec, pieces: &[usize], stream: &[u8], split_free: bool) -> Outcome {
    let out = play(spec, stream, pieces);
    if split_free {
        let whole = play(spec, stream, &[]);
        assert_same(&out, &whole, "pieces vs whole");
        // Byte by byte costs one call per byte: keep it to streams of modest length.
        if stream.len() <= 1024 {
            let bytewise = play(spec, stream, &[1]);
            assert_same(&bytewise, &whole, "byte by byte vs whole");
        }
    }
    out
}
