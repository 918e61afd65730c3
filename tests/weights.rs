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

/// The weight the chain (lvsmon.conf(5), WEIGHTS) gives `configured` by the steps the log's
/// `from` names: `agent P%` and `slow` (at `slow_percent`) scale it, rounded and at least 1;
/// step K of N of the ramp makes it 1 + (w - 1) × K / N.
fn chain_rule(configured: u32, from: &str, slow_percent: u32) -> u32 {
    let scale = |w: u32, p: u32| {
        if w == 0 || p == 0 {
            0
        } else {
            ((w * p + 50) / 100).max(1)
        }
    };
    let mut w = configured;
    for part in from.split(',') {
        if let Some(p) = part
            .strip_prefix("agent ")
            .and_then(|p| p.strip_suffix('%'))
        {
            w = scale(w, p.parse().unwrap());
        } else if part == "slow" {
            w = scale(w, slow_percent);
        } else if let Some(kn) = part.strip_prefix("ramp ") {
            let (k, n) = kn.split_once('/').unwrap();
            let (k, n): (u32, u32) = (k.parse().unwrap(), n.parse().unwrap());
            if w > 1 {
                w = 1 + (w - 1) * k / n;
            }
        } else {
            assert_eq!(part, "config", "unexpected step in from={from:?}");
        }
    }
    w
}

/// The whole chain at once, through the binary: one real of weight 20 with a 4 s slow start,
/// its agent on loopback answering `50%`, and slow-above 300 ms: it climbs to 10 (the agent's
/// half) in ramp steps, drops to 5 while SLOW, goes back to 10 when fast, and to 20 when the
/// agent says `100%`. Every `weight` line's weight is the chain's rule applied to the
/// configured weight by the steps it names, and each is one `edit-dest` of that weight.
#[test]
fn agent_slow_start_and_slow_together() {
    let b = Backend::start(banner(Duration::ZERO));
    let agent = Backend::start(Script::banner("50%"));
    let real = b.addr().to_string();
    let mut d = Lvsmon::start(
        &format!(
            "interval 200ms\nrise 1\nvirtual tcp 127.1.20.1:80 {{\n  check banner --expect +OK\n  \
             slow-start 4s\n  slow-above 300ms cancel-below 100ms slow-weight 50%\n  \
             real {real} weight 20 {{\n    agent {} --interval 200ms\n  }}\n}}\n",
            agent.addr().port()
        ),
        &[],
    );
    d.wait_for(&["event=up", &real], 5 * S);
    // The ramp ends at the agent's half of 20.
    let l = d.wait_for(&["msg=\"weight\"", &real, "weight=10 "], 8 * S);
    assert_eq!(field(&l, "from"), Some("agent 50%"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=10 "], 3 * S);
    let ramp = edit_weights(&d, &real);
    assert!(
        ramp.len() >= 3
            && ramp.first() == Some(&1)
            && ramp.last() == Some(&10)
            && ramp.windows(2).all(|w| w[0] < w[1]),
        "{ramp:?}"
    );
    // SLOW: 20 × 50 % × 50 %.
    b.set_script(banner(Duration::from_millis(400)));
    d.wait_for(&["event=slow", &real], 5 * S);
    let l = d.wait_for(&["msg=\"weight\"", &real, "weight=5 "], 3 * S);
    assert_eq!(field(&l, "from"), Some("agent 50%,slow"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=5 "], 3 * S);
    // Fast again: the agent's half.
    b.set_script(banner(Duration::ZERO));
    d.wait_for(&["event=fast", &real], 5 * S);
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=10 "], 3 * S);
    // The agent asks for all of it: 20, from the configured weight, not from 10.
    agent.set_script(Script::banner("100%"));
    let l = d.wait_for(&["msg=\"weight\"", &real, "weight=20 "], 3 * S);
    assert_eq!(field(&l, "from"), Some("agent 100%"), "{l}");
    d.wait_for(&["ipvs op=edit-dest", &real, "weight=20 "], 3 * S);

    // The run, for the reader (`cargo test -- --nocapture`).
    let lines: Vec<&String> = d
        .seen()
        .iter()
        .filter(|l| {
            l.contains(&real)
                && (l.contains("event=")
                    || l.contains("msg=\"weight\"")
                    || l.contains("op=edit-dest"))
        })
        .collect();
    for l in &lines {
        eprintln!("{l}");
    }
    // Each weight line follows the rule, and its edit-dest is the same weight.
    let said: Vec<u32> = lines
        .iter()
        .filter(|l| l.contains("msg=\"weight\""))
        .map(|l| {
            let w: u32 = field(l, "weight").unwrap().parse().unwrap();
            let from = field(l, "from").unwrap();
            assert_eq!(w, chain_rule(20, from, 50), "{l}");
            w
        })
        .collect();
    assert_eq!(said, edit_weights(&d, &real));
    assert!(said.ends_with(&[10, 5, 10, 20]), "{said:?}");
    assert_eq!(d.count(&["event=down"]), 0);
    d.stop();
}
