//! One real server's encoded history (what `History::encode_real` writes into the state
//! file): the fuzz input is the record. After `decode_real` accepts it, the history must be
//! usable: summaries, series and recent results keep their invariants, new results can be
//! recorded, and encoding is a fixed point (decode, encode, decode, encode gives the same
//! bytes twice). After `decode_real` refuses it, the history must be as it was.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lvsmon::config::HistorySpec;
use lvsmon::history::{History, Level, MAX_LATENCY_US};
use lvsmon::plugins::Reason;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Two shapes: the default spans with two reals at different intervals, and small rings (a
/// raw ring of 5, no minute buckets, 3 hour buckets) so that decoding must drop and fold.
fn histories() -> [History; 2] {
    [
        History::new(
            &HistorySpec {
                raw: secs(600),
                minute: secs(2 * 3600),
                hour: secs(2 * 86400),
            },
            &[secs(10), secs(1)],
        ),
        History::new(
            &HistorySpec {
                raw: secs(30),
                minute: secs(0),
                hour: secs(3 * 3600),
            },
            &[secs(7)],
        ),
    ]
}

fn encode(h: &History, real: usize) -> Vec<u8> {
    let mut out = Vec::new();
    h.encode_real(real, &mut out).expect("writing to a Vec");
    assert!(
        out.len() <= h.max_encoded_len(),
        "encoding longer than max_encoded_len"
    );
    out
}

fn check_usable(h: &History, newest: u64) {
    let all = 0..h.reals();
    // Recent results: newest first, within the ring.
    let mut prev = u64::MAX;
    let mut n = 0;
    h.recent(0, usize::MAX, &mut |e| {
        assert!(e.time <= prev, "recent results out of order");
        assert!(e.time <= newest, "a result newer than the newest time");
        assert!(e.latency_us <= MAX_LATENCY_US);
        prev = e.time;
        n += 1;
    });
    assert!(n <= h.raw_capacity(0));

    for now in [newest, newest + 59, newest + 7200, newest + 3 * 86400] {
        for since in [
            0,
            now.saturating_sub(600),
            now.saturating_sub(7200),
            now.saturating_sub(2 * 86400),
            now,
        ] {
            for reals in [0..1, all.clone()] {
                let s = h.summary(reals.clone(), since, now);
                assert!(s.failures <= s.checks, "{s:?}");
                let _ = s.passes();
                if let Some(a) = s.availability() {
                    assert!((0.0..=1.0).contains(&a), "{s:?}");
                }
                // A mean is kept within its min and max, even from a hand-made record whose
                // open sum does not fit its codes.
                if s.checks > 0 {
                    assert!(s.min_us <= s.max_us && s.max_us <= MAX_LATENCY_US, "{s:?}");
                    assert!(s.min_us <= s.mean_us && s.mean_us <= s.max_us, "{s:?}");
                }
                assert!(s.covered_from <= now, "{s:?} now {now}");

                let mut last: Option<u64> = None;
                let level = h.series(reals, since, now, &mut |b| {
                    assert!(b.checks > 0 && b.failures <= b.checks, "{b:?}");
                    assert!(
                        b.level != Level::Raw && b.start % b.level.width() == 0,
                        "{b:?}"
                    );
                    assert!(b.start <= now, "{b:?} now {now}");
                    assert!(last.is_none_or(|l| b.start > l), "series out of order");
                    assert!(b.min_us <= b.max_us && b.max_us <= MAX_LATENCY_US, "{b:?}");
                    assert!(b.min_us <= b.mean_us && b.mean_us <= b.max_us, "{b:?}");
                    last = Some(b.start);
                });
                assert!(level != Some(Level::Raw));
            }
        }
    }
}

/// The input read as results instead (6 bytes each: a time step in seconds, i16 LE, so the
/// clock may step back; a latency, u24 LE, times 4 so it can pass the cap; a reason code, 0 a
/// pass) recorded into fresh histories: the same invariants, plus min <= mean <= max, which
/// holds for what lvsmon recorded itself.
fn record_all(data: &[u8]) {
    for mut h in histories() {
        let mut t: u64 = 1_700_000_000;
        let mut newest = 0;
        for c in data.chunks_exact(6) {
            let step = i64::from(i16::from_le_bytes([c[0], c[1]]));
            t = t.saturating_add_signed(step);
            newest = newest.max(t);
            let latency = u64::from(u32::from_le_bytes([c[2], c[3], c[4], 0])) * 4;
            let reason = usize::from(c[5] % 16)
                .checked_sub(1)
                .map(|i| Reason::ALL[i]);
            h.record(c[5] as usize % h.reals(), t, latency, reason);
        }
        if newest == 0 {
            continue;
        }
        check_usable(&h, newest);
        // Latencies are on the scale (within 1/128), a mean never outside its min and max.
        let within = |min: u32, mean: u32, max: u32| min <= mean && mean <= max;
        for now in [newest, newest + 3600] {
            for since in [0, now.saturating_sub(600)] {
                let s = h.summary(0..h.reals(), since, now);
                if s.checks > 0 {
                    assert!(within(s.min_us, s.mean_us, s.max_us), "{s:?}");
                }
            }
            h.series(0..h.reals(), now.saturating_sub(86400), now, &mut |b| {
                assert!(within(b.min_us, b.mean_us, b.max_us), "{b:?}");
            });
        }
        for real in 0..h.reals() {
            let once = encode(&h, real);
            let mut fresh = histories()
                .into_iter()
                .nth(if h.reals() == 2 { 0 } else { 1 })
                .unwrap();
            fresh
                .decode_real(real, &once)
                .expect("our own encoding refused");
            assert_eq!(
                encode(&fresh, real),
                once,
                "decode(encode(x)) changed the history"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    record_all(data);
    for mut h in histories() {
        let empty = encode(&h, 0);
        if h.decode_real(0, data).is_err() {
            assert_eq!(encode(&h, 0), empty, "a refused record changed the history");
            continue;
        }
        // Accepted: the header holds the newest time (u32 LE at byte 5).
        let newest = u64::from(u32::from_le_bytes(data[5..9].try_into().unwrap()));
        check_usable(&h, newest);

        // Encoding is a fixed point after one round.
        let once = encode(&h, 0);
        let mut fresh = histories()
            .into_iter()
            .nth(if h.reals() == 2 { 0 } else { 1 })
            .unwrap();
        fresh
            .decode_real(0, &once)
            .expect("our own encoding refused");
        assert_eq!(
            encode(&fresh, 0),
            once,
            "decode(encode(x)) changed the history"
        );

        // New results after the loaded ones, including one stamped in the past.
        h.record(0, newest + 1, 1500, None);
        h.record(0, newest + 61, 20_000_000, Some(Reason::Timeout));
        h.record(0, newest, 10, Some(Reason::ConnectRefused));
        check_usable(&h, newest + 61);
        let after = encode(&h, 0);
        fresh
            .decode_real(0, &after)
            .expect("encoding after new results refused");
    }
});
