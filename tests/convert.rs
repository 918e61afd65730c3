//! `lvsmon convert`: the binary on the sample configurations that Debian's keepalived and
//! ldirectord packages ship (each converted and passed through `--check-config`), its exit
//! status, and a converted HTTP_GET with a `digest` checking a real server on loopback.
//!
//! The samples come from `.ci/install-servers` (packages keepalived and ldirectord); without
//! them these tests fail, naming the package. Samples whose output uses config syntax this
//! branch's parser does not have yet (`lvsmon::convert::NEEDS`) fail `--check-config` until that
//! syntax lands; the failure names it.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::backend::{Backend, Script};
use common::lvsmon::{bin, Lvsmon, TempDir};
use common::servers::require;
use lvsmon::convert::{self, From, NEEDS};

const S: Duration = Duration::from_secs(1);
const KEEPALIVED_SAMPLES: &str = "/usr/share/doc/keepalived/samples";
const LDIRECTORD_SAMPLE: &str = "/usr/share/doc/ldirectord/examples/ldirectord.cf";

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run lvsmon")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Converts `file`, checks the exit status against the `# not converted` lines, and passes the
/// output through `--check-config`.
fn sample(from: &str, file: &Path) {
    let f = file.to_str().unwrap();
    let out = run(&["convert", from, f, "--config-id", "lvsmon-test"]);
    let conf = text(&out.stdout);
    let refusals = conf
        .lines()
        .filter(|l| l.trim_start().starts_with("# not converted ("))
        .count();
    let code = out.status.code();
    assert_eq!(
        code,
        Some(if refusals > 0 { 1 } else { 0 }),
        "{f}: exit status against {refusals} refusal(s); stderr: {}\n{conf}",
        text(&out.stderr)
    );
    if refusals > 0 {
        assert!(
            text(&out.stderr).contains(&format!("{refusals} construct(s) not converted")),
            "{}",
            text(&out.stderr)
        );
    }
    let dir = TempDir::new("convert");
    let path = dir.file("lvsmon.conf", &conf);
    let check = run(&["--check-config", "-f", path.to_str().unwrap()]);
    if !conf.contains("\nvirtual ") {
        // A VRRP-only configuration: nothing to check, which the output says, and which
        // --check-config refuses.
        assert!(
            conf.contains("no virtual_server: nothing for lvsmon to check"),
            "{conf}"
        );
        assert_eq!(check.status.code(), Some(1));
        assert!(text(&check.stderr).contains("no virtual service defined"));
        return;
    }
    if !check.status.success() {
        let which = if from == "keepalived" {
            From::Keepalived
        } else {
            From::Ldirectord
        };
        let used = convert::convert(which, file, Some("lvsmon-test"))
            .map(|o| o.used)
            .unwrap_or_default();
        let pending: Vec<_> = NEEDS
            .iter()
            .filter(|(f, _)| used.contains(f))
            .map(|(f, _)| format!("{f:?}"))
            .collect();
        panic!(
            "{f}: the converted configuration fails --check-config: {}\n(pending syntax it \
             uses, from convert::NEEDS: {pending:?})\n{conf}",
            text(&check.stderr)
        );
    }
    // Every real_server of the sample is a real line (a group's once per address).
    let reals = conf
        .lines()
        .filter(|l| l.trim_start().starts_with("real "))
        .count();
    assert!(reals > 0, "{conf}");
}

macro_rules! keepalived_samples {
    ($($name:ident => $file:literal),* $(,)?) => {$(
        #[test]
        fn $name() {
            let dir = require(KEEPALIVED_SAMPLES, "keepalived");
            sample("keepalived", &dir.join($file));
        }
    )*};
}

keepalived_samples! {
    keepalived_sample => "keepalived.conf.sample",
    keepalived_sample_http_get_port => "keepalived.conf.HTTP_GET.port",
    keepalived_sample_ipv6 => "keepalived.conf.IPv6",
    keepalived_sample_ping_check => "keepalived.conf.PING_CHECK",
    keepalived_sample_smtp_check => "keepalived.conf.SMTP_CHECK",
    keepalived_sample_ssl_get => "keepalived.conf.SSL_GET",
    keepalived_sample_udp_check => "keepalived.conf.UDP_CHECK",
    keepalived_sample_conditional_conf => "keepalived.conf.conditional_conf",
    keepalived_sample_fwmark => "keepalived.conf.fwmark",
    keepalived_sample_inhibit => "keepalived.conf.inhibit",
    keepalived_sample_misc_check => "keepalived.conf.misc_check",
    keepalived_sample_misc_check_arg => "keepalived.conf.misc_check_arg",
    keepalived_sample_quorum => "keepalived.conf.quorum",
    keepalived_sample_status_code => "keepalived.conf.status_code",
    keepalived_sample_track_interface => "keepalived.conf.track_interface",
    keepalived_sample_virtual_server_group => "keepalived.conf.virtual_server_group",
    keepalived_sample_virtualhost => "keepalived.conf.virtualhost",
    keepalived_sample_vrrp => "keepalived.conf.vrrp",
    keepalived_sample_vrrp_localcheck => "keepalived.conf.vrrp.localcheck",
    keepalived_sample_vrrp_lvs_syncd => "keepalived.conf.vrrp.lvs_syncd",
    keepalived_sample_vrrp_routes => "keepalived.conf.vrrp.routes",
    keepalived_sample_vrrp_rules => "keepalived.conf.vrrp.rules",
    keepalived_sample_vrrp_scripts => "keepalived.conf.vrrp.scripts",
    keepalived_sample_vrrp_static_ipaddress => "keepalived.conf.vrrp.static_ipaddress",
    keepalived_sample_vrrp_sync => "keepalived.conf.vrrp.sync",
}

/// Every keepalived.conf.* sample Debian ships has its test above (a new one in a newer
/// package shows up here).
#[test]
fn every_keepalived_sample_is_listed() {
    let dir = require(KEEPALIVED_SAMPLES, "keepalived");
    let listed = include_str!("convert.rs");
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with("keepalived.conf.") && !name.ends_with(".gz") {
            assert!(
                listed.contains(&format!("=> \"{name}\"")),
                "sample {name} has no test in tests/convert.rs"
            );
        }
    }
}

#[test]
fn ldirectord_sample() {
    let f = require(LDIRECTORD_SAMPLE, "ldirectord");
    sample("ldirectord", &f);
}

#[test]
fn exit_status_and_errors() {
    let dir = TempDir::new("convert-cli");
    let clean = dir.file(
        "clean.conf",
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    let out = run(&["convert", "keepalived", clean.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("virtual tcp 10.0.0.1:80 {"));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));

    let refused = dir.file(
        "refused.conf",
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n PING_CHECK {\n }\n }\n}\n",
    );
    let out = run(&["convert", "keepalived", refused.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    // Everything is printed, the refusal where it stood.
    assert!(text(&out.stdout).contains("# not converted (refused.conf:3): PING_CHECK"));
    assert!(text(&out.stdout).contains("real 10.0.1.1:80 weight 1"));

    let out = run(&[
        "convert",
        "keepalived",
        dir.0.join("missing").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("missing: No such file"),
        "{}",
        text(&out.stderr)
    );

    let broken = dir.file("broken.conf", "virtual_server 10.0.0.1 80 {\n");
    let out = run(&["convert", "keepalived", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("broken.conf:1: the block opened here is not closed"),
        "{}",
        text(&out.stderr)
    );

    let out = run(&["convert", "haproxy", clean.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

/// A keepalived HTTP_GET with a digest, converted by the binary, checks a real server on
/// loopback: up while the page has that MD5, down with body-mismatch when it changes.
#[test]
fn converted_digest_check_follows_the_page() {
    let page = "healthy page\n";
    // md5("healthy page\n"), computed independently (Python's hashlib).
    let digest = "04ddf0afe9bf2212a7725c0ce2335745";
    let b = Backend::start(Script::http(200, page));
    let a = b.addr();
    let dir = TempDir::new("convert-digest");
    let k = dir.file(
        "k.conf",
        &format!(
            "virtual_server 127.1.9.1 80 {{\n delay_loop 0.2\n lb_kind NAT\n inhibit_on_failure\n \
             real_server {} {} {{\n weight 4\n HTTP_GET {{\n url {{\n path /health\n digest {digest}\n }}\n \
             connect_timeout 1\n retry 0\n delay_before_retry 0.2\n }}\n }}\n}}\n",
            a.ip(),
            a.port()
        ),
    );
    let out = run(&["convert", "keepalived", k.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let conf = text(&out.stdout);
    assert!(conf.contains(&format!("--digest {digest}")), "{conf}");
    let mut d = Lvsmon::start(&conf, &[]);
    d.wait_for(&["event=up"], 5 * S);
    d.wait_for(&["ipvs op=", "weight=4"], S);
    b.set_script(Script::http(200, "changed page\n"));
    let down = d.wait_for(&["event=down"], 5 * S);
    assert!(down.contains("reason=body-mismatch"), "{down}");
    assert!(down.contains("md5 "), "{down}");
}
