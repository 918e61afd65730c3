//! The weight chain as an operator sees it, through the binary with `--dry-run` (lvsmon.conf(5),
//! WEIGHTS): a real that comes UP climbs its slow-start ramp in `edit-dest` steps, a slow check
//! makes it SLOW and a fast one brings its weight back, and `lvsmon set-weight` sets, scales
//! and resets its weight, durably across a restart.

mod common;

use std::time::Duration;

use common::lvsmon::{field, Lvsmon, TempDir};
use common::observe::{metric, scrape};
use common::{Action, Backend, Script};

const S: Duration = Duration::from_secs(1);

/// A banner server that answers at once, or after `delay`.
fn banner(delay: Duration) -> Script {
    let mut a = Vec::new();
    if !delay.is_zero() {
        a.push(Action::Sleep(delay));
    }
    a.push(Action::send(b"+OK ready\r\n".to_vec()));
    a.push(Action::Drain);
    Script(a)
}

/// The weights of the `edit-dest` lines for `real` seen so far.
fn edit_weights(d: &Lvsmon, real: &str) -> Vec<u32> {
    d.seen()
        .iter()
        .filter(|l| l.contains("ipvs op=edit-dest") && l.contains(real))
        .filter_map(|l| field(l, "weight").and_then(|w| w.parse().ok()))
        .collect()
}

fn conf(real: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "interval 200ms\nrise 1\nvirtual tcp 127.1.20.1:80 {{\n  check banner --expect +OK\n{extra}  real {real} weight 9\n}}\n"
    )
}

/// Slow start (4 s over weight 9: steps of 1 s, 1 3 5 7 9), then SLOW (weight × 50 %) while
/// the checks take 400 ms, then back to 9 once one takes under 100 ms.
#[test]
fn slow_start_then_slow_and_fast_in_edit_dest_lines() {
    let b = Backend::start(banner(Duration::ZERO));
    let real = b.addr().to_string();
    let mut d = Lvsmon::start(
        &conf(
            b.addr(),
            "  slow-start 4s\n  slow-above 300ms cancel-below 100ms slow-weight 50%\n",
        ),
        &["--metrics", "127.0.0.1:0"],
    );
    let maddr = d.metrics_addr();
    d.wait_for(&["event=up", &real], 5 * S);
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=9"], 8 * S);
    // A step a second, from the configured weight: 1 3 5 7 9 (a loop held up for over a
    // second may skip one, never repeat or go back).
    let ramp = edit_weights(&d, &real);
    assert!(
        ramp.len() >= 4
            && ramp.first() == Some(&1)
            && ramp.last() == Some(&9)
            && ramp.windows(2).all(|w| w[0] < w[1])
            && ramp.iter().all(|w| [1, 3, 5, 7, 9].contains(w)),
        "{ramp:?}"
    );
    let steps = ramp.len();
    // Each change logged with what set it: `ramp K/4`, then `config`.
    let from: Vec<String> = d
        .seen()
        .iter()
        .filter(|l| l.contains("msg=\"weight\""))
        .filter_map(|l| field(l, "from").map(str::to_string))
        .collect();
    let want: Vec<String> = ramp
        .iter()
        .map(|&w| match w {
            9 => "config".to_string(),
            w => format!("ramp {}/4", (w - 1) / 2),
        })
        .collect();
    assert_eq!(from, want);

    // Slow answers: SLOW, weight 5 (9 × 50 %, rounded); status says so.
    b.set_script(banner(Duration::from_millis(400)));
    let slow = d.wait_for(&["event=slow", &real], 5 * S);
    assert!(field(&slow, "detail").is_some(), "{slow}");
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=5"], 3 * S);
    let (code, out, err) = d.client(&["status"]);
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().find(|l| l.contains(&real)).unwrap();
    assert!(
        line.contains("SLOW") && line.contains("(weight: slow)"),
        "{line}"
    );
    // The per-real series and the counters say the same.
    let page = scrape(maddr, None).unwrap();
    let labels = format!("{{virtual=\"tcp:127.1.20.1:80\",real=\"{real}\"}}");
    let of = |name: &str| metric(&page, &format!("{name}{labels}"));
    assert_eq!(of("lvsmon_real_weight"), Some(5.0), "{page}");
    assert!(of("lvsmon_real_checks_total").unwrap() >= 5.0, "{page}");
    assert_eq!(of("lvsmon_real_failures_total"), Some(0.0), "{page}");
    assert!(
        of("lvsmon_real_check_duration_seconds").unwrap() >= 0.3,
        "{page}"
    );
    assert_eq!(
        metric(&page, "lvsmon_slow_events_total{event=\"slow\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&page, "lvsmon_weight_changes_total"),
        Some(steps as f64 + 1.0),
        "{page}"
    );

    // Fast again: the configured weight, from the file, not from 5.
    b.set_script(banner(Duration::ZERO));
    d.wait_for(&["event=fast", &real], 5 * S);
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=9"], 3 * S);
    assert_eq!(edit_weights(&d, &real)[steps..], [5, 9]);
    d.stop();
}

/// `set-weight N`, `P%` and `reset` through the client, each answered `ok` and sent as one
/// `edit-dest`; a hand weight of 0 survives a restart and keeps the UP real at 0.
#[test]
fn set_weight_sets_scales_resets_and_survives_a_restart() {
    let b = Backend::start(banner(Duration::ZERO));
    let real = b.addr().to_string();
    let state = TempDir::new("setw");
    let state_dir = state.0.join("state");
    let state_arg = state_dir.to_str().unwrap();
    let text = conf(b.addr(), "");
    let mut d = Lvsmon::start(&text, &["--state-dir", state_arg]);
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=9"], 5 * S);

    for (arg, weight, from) in [
        ("3", "weight=3", "set"),
        ("50%", "weight=5", "set 50%"),
        ("reset", "weight=9", "config"),
    ] {
        let (code, out, err) = d.client(&["set-weight", &real, arg]);
        assert_eq!(code, Some(0), "{out}{err}");
        assert!(out.starts_with("ok: set-weight"), "{out}");
        d.wait_for(
            &["msg=\"weight\"", &real, weight, &format!("from=\"{from}\"")],
            3 * S,
        );
        d.wait_for(&["ipvs op=edit-dest", &real, weight], 3 * S);
    }
    // Named with its virtual service; bad values and unknown reals are refused.
    let (code, out, _) = d.client(&["set-weight", &real, "tcp:127.1.20.1:80", "0"]);
    assert_eq!(code, Some(0), "{out}");
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=0"], 3 * S);
    let (code, out, _) = d.client(&["set-weight", &real, "70000"]);
    assert_ne!(code, Some(0), "{out}");
    let (code, _, err) = d.client(&["set-weight", "127.9.9.9:1", "4"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("no real server") || err.contains("error"),
        "{err}"
    );
    let (_, json, _) = d.client(&["status", "--json"]);
    assert!(json.contains("\"set_weight\":\"0\""), "{json}");
    d.stop();

    // Restarted on the same state: UP, and still at weight 0 by hand.
    let mut d = Lvsmon::start(&text, &["--state-dir", state_arg]);
    d.wait_for(&["msg=\"state loaded\"", "set_weights=1"], 5 * S);
    d.wait_for(&["event=up", &real], 5 * S);
    d.collect_for(S);
    assert!(
        !d.seen()
            .iter()
            .any(|l| l.contains("ipvs op=") && l.contains(&real) && !l.contains("weight=0")),
        "{:#?}",
        d.seen()
    );
    let (_, json, _) = d.client(&["status", "--json"]);
    assert!(json.contains("\"set_weight\":\"0\""), "{json}");
    d.stop();
}
