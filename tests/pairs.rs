//! A director in a pair (lvsmon(8), DIRECTOR PAIRS), with the real binary under `--dry-run`:
//! `track-file` follows quorum for keepalived's `track_file`, the sync-daemon lines show in
//! the log, in `lvsmon status` and on `--metrics`, and `--check-config` accepts the pair's settings. What
//! needs a kernel with IPVS (the daemons themselves, thresholds kept by edits) is proven in
//! the VM (tests/vm/scenarios.sh).

mod common;

use std::time::{Duration, Instant};

use common::backend::{Backend, Script};
use common::lvsmon::{check_config, field, stdout_of_success, Lvsmon, TempDir};

const S: Duration = Duration::from_secs(1);

/// Waits (bounded) until `path` holds `want`.
fn wait_file(path: &std::path::Path, want: &str, limit: Duration) {
    let end = Instant::now() + limit;
    let mut last = String::new();
    while Instant::now() < end {
        last = std::fs::read_to_string(path).unwrap_or_default();
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} holds {last:?}, expected {want:?}", path.display());
}

#[test]
fn track_file_follows_quorum() {
    let a = Backend::start(Script::http(200, "OK"));
    let dir = TempDir::new("track");
    let track = dir.0.join("vrrp-track");
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\ntrack-file {} --weight 30\n\
         sync-daemon master lo id 3\n\
         virtual tcp 127.1.0.1:80 {{\n  quorum 1\n  check http\n  real {}\n}}\n\
         virtual tcp 127.1.0.2:80 {{\n  quorum 0\n  real 127.0.0.1:1\n}}\n",
        track.display(),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["sync-daemon master lo id 3: dry-run"], 3 * S);
    // At start: every virtual counts as having quorum until its checks decide.
    let l = d.wait_for(&["track-file written", "value=0"], 3 * S);
    assert_eq!(field(&l, "path"), track.to_str(), "{l}");
    wait_file(&track, "0\n", S);
    a.set_script(Script::http(503, "no"));
    d.wait_for(&["event=quorum-lost virtual=tcp:127.1.0.1:80"], 3 * S);
    d.wait_for(&["track-file written", "value=-30"], S);
    wait_file(&track, "-30\n", S);
    a.set_script(Script::http(200, "OK"));
    d.wait_for(&["event=quorum-restored"], 3 * S);
    d.wait_for(&["track-file written", "value=0"], S);
    wait_file(&track, "0\n", S);
    // A virtual without quorum (quorum 0) never lowers the priority, however DOWN its reals.
    assert_eq!(d.count(&["track-file written"]), 3);
    let (_, out, _) = d.client(&["status"]);
    assert!(out.contains("sync-daemon master lo id 3: dry-run"), "{out}");
    // Only the file: the temporary one was renamed over it.
    let names: Vec<String> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["vrrp-track"]);
}

/// A track file that cannot be written is a warning, retried at the next change, and never
/// takes a real server down.
#[test]
fn track_file_failure_is_logged_not_fatal() {
    let a = Backend::start(Script::http(200, "OK"));
    let dir = TempDir::new("track-missing");
    let track = dir.0.join("no-such-dir").join("track");
    let conf = format!(
        "interval 200ms\nfall 1\nrise 1\ntrack-file {}\n\
         virtual tcp 127.1.0.1:80 {{\n  check http\n  real {}\n}}\n",
        track.display(),
        a.addr()
    );
    let mut d = Lvsmon::start(&conf, &[]);
    let l = d.wait_for(&["track-file not written", "errno=2"], 3 * S);
    assert_eq!(field(&l, "path"), track.to_str(), "{l}");
    d.wait_for(&["event=up"], 3 * S);
    std::fs::create_dir_all(track.parent().unwrap()).unwrap();
    a.set_script(Script::http(503, "no"));
    d.wait_for(&["track-file written", "value=-100"], 3 * S);
    wait_file(&track, "-100\n", S);
}

#[test]
fn check_config_accepts_a_director_of_a_pair() {
    let dir = TempDir::new("pair-check");
    let conf = dir.file(
        "lvsmon.conf",
        "sync-daemon master eth1 id 1\nsync-daemon backup eth1 id 1\n\
         track-file /run/lvsmon-track --weight 50\nipvs-timeouts tcp 900 tcpfin 120 udp 300\n\
         virtual udp 192.0.2.1:53 {\n  scheduler sh\n  sched-flags sh-port\n  one-packet yes\n  \
         persistent 60\n  persistence-netmask 24\n  u-threshold 100\n  l-threshold 50\n  \
         real 10.0.0.1 {\n    forward tunnel gue 6080 csum\n  }\n}\n",
    );
    let text = stdout_of_success(&check_config(&conf));
    assert!(
        text.contains(": OK: 1 virtual services, 1 real servers"),
        "{text}"
    );
}

/// The `lvsmon_sync_daemon_up` lines of a scrape of `d`'s metrics endpoint, HELP and TYPE
/// included.
fn sync_daemon_metrics(addr: std::net::SocketAddr) -> String {
    let page = common::observe::scrape(addr, None).expect("scrape");
    assert!(page.contains("\nlvsmon_checks_total "), "{page}");
    page.lines()
        .filter(|l| l.contains("lvsmon_sync_daemon_up"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Under `--dry-run` the kernel's timeouts are not set, but the startup log says which would
/// be, next to the sync daemons' lines: a dry run shows every kernel setting it would touch.
#[test]
fn ipvs_timeouts_are_logged_under_dry_run() {
    let conf =
        |lines: &str| format!("{lines}virtual tcp 127.1.0.1:80 {{\n  real 127.0.0.1:9\n}}\n");
    let mut d = Lvsmon::start(
        &conf("ipvs-timeouts tcp 900 tcpfin 2m udp 300\nsync-daemon master lo id 5\n"),
        &[],
    );
    let l = d.wait_for(&["ipvs-timeouts"], 3 * S);
    assert_eq!(
        field(&l, "msg"),
        Some("ipvs-timeouts tcp 900s tcpfin 120s udp 300s: dry-run"),
        "{l}"
    );
    d.wait_for(&["sync-daemon master lo id 5: dry-run"], 3 * S);
    // Alone, and only the timeouts given.
    let mut d = Lvsmon::start(&conf("ipvs-timeouts udp 30\n"), &[]);
    let l = d.wait_for(&["ipvs-timeouts"], 3 * S);
    assert_eq!(
        field(&l, "msg"),
        Some("ipvs-timeouts udp 30s: dry-run"),
        "{l}"
    );
    d.wait_for(&["msg=\"starting\""], 3 * S);
}

/// Under `--dry-run` the sync daemons are left alone but listed by `lvsmon status` and by
/// `lvsmon_sync_daemon_up` on `--metrics` (0: not brought up); a reload that changes them
/// shows the new ones (and logs them), one that removes them shows none, and `status --json`
/// stays the array of real servers throughout.
#[test]
fn sync_daemons_in_status_and_metrics_follow_a_reload() {
    let a = Backend::start(Script::http(200, "OK"));
    let conf = |daemons: &str| {
        format!(
            "interval 200ms\n{daemons}virtual tcp 127.1.0.1:80 {{\n  check http\n  real {}\n}}\n",
            a.addr()
        )
    };
    let mut d = Lvsmon::start(
        &conf(
            "sync-daemon master lo id 7 maxlen 1400 group 239.1.1.1 port 9000 ttl 2\n\
             sync-daemon backup lo id 7\n",
        ),
        &["--metrics", "127.0.0.1:0"],
    );
    d.wait_for(&["sync-daemon backup lo id 7: dry-run"], 3 * S);
    d.wait_for(&["event=up"], 3 * S);
    let maddr = d.metrics_addr();
    let (_, text, _) = d.client(&["status"]);
    assert!(
        text.ends_with(
            "sync-daemon master lo id 7: dry-run\nsync-daemon backup lo id 7: dry-run\n"
        ),
        "{text}"
    );
    let family = "# HELP lvsmon_sync_daemon_up 1 if lvsmon adopted, started or restarted the \
                  connection-sync daemon, 0 if that failed or under --dry-run.\n\
                  # TYPE lvsmon_sync_daemon_up gauge\n";
    assert_eq!(
        sync_daemon_metrics(maddr),
        format!(
            "{family}\
             lvsmon_sync_daemon_up{{state=\"master\",iface=\"lo\",id=\"7\"}} 0\n\
             lvsmon_sync_daemon_up{{state=\"backup\",iface=\"lo\",id=\"7\"}} 0\n"
        )
    );
    let json_is_the_array_of_reals = |d: &Lvsmon| {
        let (code, json, err) = d.client(&["status", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        assert!(
            json.starts_with('[') && json.trim_end().ends_with(']'),
            "{json}"
        );
        assert!(!json.contains("sync"), "{json}");
        let reals = common::observe::parse_status_json(&json);
        assert_eq!(reals.len(), 1, "{json}");
        assert_eq!(reals[0].real, a.addr().to_string(), "{json}");
    };
    json_is_the_array_of_reals(&d);

    // A reload to another id: the new daemon, in the log, in status and in the metrics.
    d.dir
        .file("lvsmon.conf", &conf("sync-daemon master lo id 8\n"));
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.wait_for(&["sync-daemon master lo id 8: dry-run"], 3 * S);
    let (_, text, _) = d.client(&["status"]);
    assert!(!text.contains("id 7"), "{text}");
    assert!(
        text.ends_with("sync-daemon master lo id 8: dry-run\n"),
        "{text}"
    );
    assert_eq!(
        sync_daemon_metrics(maddr),
        format!("{family}lvsmon_sync_daemon_up{{state=\"master\",iface=\"lo\",id=\"8\"}} 0\n")
    );
    json_is_the_array_of_reals(&d);

    // None left: none listed, no family on the metrics page.
    d.dir.file("lvsmon.conf", &conf(""));
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (_, text, _) = d.client(&["status"]);
    assert!(!text.contains("sync-daemon"), "{text}");
    assert_eq!(sync_daemon_metrics(maddr), "");
    json_is_the_array_of_reals(&d);
    assert_eq!(d.stop().0, Some(0));
}

/// Under `--dry-run` a reload that changes the sync daemon is logged and `lvsmon status`
/// shows the new line, not the one from startup (nothing reaches the kernel either way); the
/// track file is written at its new path.
#[test]
fn a_reload_that_changes_the_sync_daemon_shows_in_status() {
    let files = TempDir::new("track-reload");
    let conf = |id: u32| {
        format!(
            "interval 200ms\nsync-daemon master lo id {id}\ntrack-file {}\n\
             virtual tcp 127.1.0.1:80 {{\n  real 127.0.0.1:1\n}}\n",
            files.0.join(format!("track{id}")).display()
        )
    };
    let mut d = Lvsmon::start(&conf(3), &[]);
    d.wait_for(&["sync-daemon master lo id 3: dry-run"], 3 * S);
    d.wait_for(&["msg=\"starting\""], 3 * S);
    d.collect_for(S / 2);
    // Once at startup.
    assert_eq!(
        d.count(&["sync-daemon master lo id 3"]),
        1,
        "{:#?}",
        d.seen()
    );
    // Its only real is refused: quorum lost, -100 before the reload and after it.
    d.wait_seen(&["track-file written", "track3", "value=-100"], 5 * S);
    d.dir.file("lvsmon.conf", &conf(4));
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.wait_for(&["sync-daemon master lo id 4: dry-run"], 3 * S);
    let l = d.wait_seen(&["track-file written", "track4"], 3 * S);
    assert_eq!(field(&l, "value"), Some("-100"), "{l}");
    wait_file(&files.0.join("track4"), "-100\n", S);
    let (_, out, _) = d.client(&["status"]);
    assert!(out.contains("sync-daemon master lo id 4: dry-run"), "{out}");
    assert!(!out.contains("id 3"), "{out}");
    // A reload that leaves it as it is says nothing more about it.
    let (code, out, err) = d.client(&["reload"]);
    assert_eq!(code, Some(0), "{out}{err}");
    d.collect_for(S / 2);
    assert_eq!(
        d.count(&["sync-daemon master lo id 4"]),
        1,
        "{:#?}",
        d.seen()
    );
    assert_eq!(d.stop().0, Some(0));
}
