//! Table tests of every keyword the converters know and of each refusal with its place; the
//! grammar of keepalived.conf (includes, conditionals, parameters). Output that uses no syntax
//! pending in [`super::NEEDS`] must also be a configuration lvsmon accepts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{convert, pending, Feature, From, Out, NEEDS};
use crate::config;

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "lvsmon-convert-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Converts `text` as `k.conf` (config id `main`), and checks that the output is accepted by
/// lvsmon's own parser unless it uses pending syntax.
#[track_caller]
fn keep(text: &str) -> Out {
    let d = Dir::new();
    let p = d.write("k.conf", text);
    let out = convert(From::Keepalived, &p, Some("main")).unwrap();
    accepted(&d, &out);
    out
}

#[track_caller]
fn ldir(text: &str) -> Out {
    let d = Dir::new();
    let p = d.write("l.cf", text);
    let out = convert(From::Ldirectord, &p, None).unwrap();
    accepted(&d, &out);
    out
}

#[track_caller]
fn accepted(d: &Dir, out: &Out) {
    if out.used.iter().any(|f| pending(*f)) || !out.text.contains("\nvirtual ") {
        return;
    }
    let p = d.write("out.conf", &out.text);
    if let Err(e) = config::load(&p, None) {
        panic!("converted output refused: {e}\n{}", out.text);
    }
}

/// The code of each line, without trailing notes and indentation.
fn codes(out: &Out) -> Vec<String> {
    out.text
        .lines()
        .map(|l| {
            let t = l.trim();
            if t.starts_with('#') {
                return t.to_string();
            }
            match code_end(t) {
                Some(i) => t[..i].trim_end().to_string(),
                None => t.to_string(),
            }
        })
        .collect()
}

/// Where a trailing `#` note starts (outside quoted strings).
fn code_end(t: &str) -> Option<usize> {
    let mut quoted = false;
    let mut esc = false;
    for (i, c) in t.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' if quoted => esc = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[track_caller]
fn has(out: &Out, line: &str) {
    assert!(
        codes(out).iter().any(|c| c == line),
        "no line {line:?} in:\n{}",
        out.text
    );
}

#[track_caller]
fn refused(out: &Out, place: &str, part: &str) {
    let want = format!("# not converted ({place}): ");
    assert!(
        out.text
            .lines()
            .any(|l| l.trim().starts_with(&want) && l.contains(part)),
        "no refusal at {place} with {part:?} in:\n{}",
        out.text
    );
    assert!(out.refused > 0);
}

/// A virtual server of one real server around `real` (the real_server's block) and `vs`
/// (more virtual server lines).
fn vs(vs: &str, real: &str) -> String {
    format!(
        "virtual_server 10.0.0.1 80 {{\n    delay_loop 6\n{vs}\n    real_server 192.168.1.10 80 {{\n{real}\n    }}\n}}\n"
    )
}

// --- keepalived: virtual servers ----------------------------------------------------------

#[test]
fn keepalived_virtual_server_settings() {
    let out = keep(&vs(
        "    lb_algo wrr\n    lb_kind DR\n    persistence_timeout 300\n    protocol TCP",
        "        weight 3\n        TCP_CHECK {\n            connect_timeout 2\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual tcp 10.0.0.1:80 {");
    has(&out, "scheduler wrr");
    has(&out, "forward route");
    has(&out, "persistent 300s");
    has(&out, "interval 6s");
    has(&out, "real 192.168.1.10:80 weight 3");
    has(&out, "check tcp");
    has(&out, "connect-timeout 2s");
    has(&out, "timeout 2s");
    // keepalived's defaults, written out.
    has(&out, "fall 2");
    has(&out, "rise 1");
    has(&out, "retry-interval 1s");
    has(&out, "on-down remove");
}

#[test]
fn keepalived_new_keyword_names_and_defaults() {
    let out = keep(
        "virtual_server 10.0.0.1 53 {\n lvs_sched sh\n lvs_method NAT\n protocol UDP\n persistence_timeout\n \
         real_server 10.0.1.1 53 {\n DNS_CHECK {\n name example.com\n type A\n }\n }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual udp 10.0.0.1:53 {");
    has(&out, "scheduler sh");
    has(&out, "forward masq");
    has(&out, "persistent 360s");
    has(&out, "interval 60s");
    has(&out, "check dns --query example.com --type A");
    // DNS_CHECK: retry 3, delay_before_retry = delay_loop.
    has(&out, "fall 4");
    has(&out, "retry-interval 60s");
}

#[test]
fn keepalived_fwmark_and_ipv6() {
    let out = keep(
        "virtual_server fwmark 7 {\n lb_kind TUN\n real_server 192.168.1.10 {\n TCP_CHECK {\n connect_port 80\n }\n }\n}\n\
         virtual_server 2001:db8::1 443 {\n real_server 2001:db8::10 443 {\n weight 2\n TCP_CHECK {\n }\n }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual fwmark 7 {");
    has(&out, "forward tunnel");
    has(&out, "real 192.168.1.10 weight 1");
    has(&out, "check tcp --port 80");
    has(&out, "virtual tcp [2001:db8::1]:443 {");
    has(&out, "real [2001:db8::10]:443 weight 2");
}

#[test]
fn keepalived_virtual_server_group_ranges() {
    let out = keep(
        "virtual_server_group G {\n 10.0.0.1-3 80\n 10.0.1.9 8080\n fwmark 5\n}\n\
         virtual_server group G {\n real_server 192.168.1.10 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    for v in [
        "virtual tcp 10.0.0.1:80 {",
        "virtual tcp 10.0.0.2:80 {",
        "virtual tcp 10.0.0.3:80 {",
        "virtual tcp 10.0.1.9:8080 {",
        "virtual fwmark 5 {",
    ] {
        has(&out, v);
    }
    assert_eq!(out.text.matches("real 192.168.1.10:80 weight 1").count(), 5);
    let r = super::keepalived::range;
    let v6: Vec<String> = r("2001:db8::8-a")
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(v6, ["2001:db8::8", "2001:db8::9", "2001:db8::a"]);
    assert_eq!(r("10.0.0.0/30").unwrap().len(), 4);
    assert_eq!(r("10.0.0.250-10.0.1.2").unwrap().len(), 9);
    assert!(r("10.0.0.5-3").is_err());
    assert!(r("10.0.0.0/8").is_err(), "too many addresses");
}

#[test]
fn keepalived_quorum_sorry_and_weights() {
    let out = keep(&vs(
        "    quorum 4\n    sorry_server 127.0.0.1 8080\n    lb_kind NAT",
        "        weight 2\n        inhibit_on_failure\n        TCP_CHECK {\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    // A total weight of 4 at 2 each is 2 real servers.
    has(&out, "quorum 2");
    has(&out, "sorry 127.0.0.1:8080");
    has(&out, "on-down quiesce");
    // Unequal weights: no count says the same.
    let out = keep(
        "virtual_server 10.0.0.1 80 {\n quorum 3\n real_server 10.0.1.1 80 {\n weight 1\n TCP_CHECK {\n }\n }\n \
         real_server 10.0.1.2 80 {\n weight 5\n TCP_CHECK {\n }\n }\n}\n",
    );
    refused(&out, "k.conf:2", "quorum 3");
}

#[test]
fn keepalived_sorry_server_forwarding_follows_the_virtual_server() {
    let out = keep(&vs(
        "    lb_kind DR\n    sorry_server 10.0.0.9 80",
        "        TCP_CHECK {\n        }",
    ));
    has(&out, "sorry 10.0.0.9:80 --forward route");
    assert!(out.used.contains(&Feature::SorryForward));
}

#[test]
fn keepalived_thresholds_notify_and_granularity() {
    let out = keep(&vs(
        "    persistence_timeout 60\n    persistence_granularity 255.255.255.0",
        "        uthreshold 100\n        lthreshold 10\n        notify_up /usr/local/bin/n.sh\n        \
         notify_down /usr/local/bin/n.sh\n        TCP_CHECK {\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "persistence-netmask 24");
    has(&out, "u-threshold 100");
    has(&out, "l-threshold 10");
    has(&out, "notify /usr/local/bin/n.sh");
    // Different commands for up and down: refused, each at its line.
    let out = keep(&vs(
        "",
        "        notify_up /a.sh\n        notify_down /b.sh\n        TCP_CHECK {\n        }",
    ));
    refused(&out, "k.conf:5", "notify_up /a.sh");
    refused(&out, "k.conf:6", "notify_down /b.sh");
}

// --- keepalived: checkers -------------------------------------------------------------------

#[test]
fn keepalived_http_get_urls_become_check_lines() {
    let out = keep(&vs(
        "    virtualhost www.example.com",
        "        HTTP_GET {\n            url {\n                path /health\n                status_code 200-299 301 503\n            }\n            \
         url {\n                path /index.html\n                digest 640205b7b0fc66c1ea91c463fac6334d\n                \
         virtualhost other.example.com\n            }\n            connect_timeout 4\n            retry 2\n            \
         delay_before_retry 2\n            connect_ip 192.168.1.99\n            connect_port 8080\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check http --url http://www.example.com:8080/health --expect 200-299,301,503 --version 1.0 --address 192.168.1.99 --port 8080",
    );
    has(
        &out,
        "check http --url http://other.example.com:8080/index.html --expect 200-299 --digest 640205b7b0fc66c1ea91c463fac6334d --version 1.0 --address 192.168.1.99 --port 8080",
    );
    has(&out, "fall 3");
    has(&out, "retry-interval 2s");
    has(&out, "connect-timeout 4s");
    assert!(out.used.contains(&Feature::MultiCheck));
    assert!(out.used.contains(&Feature::Digest));
}

#[test]
fn keepalived_http_get_defaults_and_regex() {
    let out = keep(&vs(
        "",
        "        HTTP_GET {\n            url {\n                path /\n                regex \"All good\"\n            }\n            \
         http_protocol 1.1\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check http --url http://192.168.1.10/ --expect 200-299 --match \"All good\"",
    );
    has(&out, "retry-interval 3s");
    let out = keep(&vs(
        "",
        "        HTTP_GET {\n            url {\n                path /\n                regex \"^ok.*\"\n            }\n        }",
    ));
    refused(&out, "k.conf:8", "regular expressions");
}

#[test]
fn keepalived_ssl_get() {
    let out = keep(
        "virtual_server 10.0.0.1 443 {\n real_server 10.0.1.1 443 {\n SSL_GET {\n url {\n path /x\n digest 9b3a0c85a887a256d6939da88aabd8cd\n }\n }\n }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check https --url https://10.0.1.1/x --expect 200-299 --digest 9b3a0c85a887a256d6939da88aabd8cd --version 1.0",
    );
    assert!(out.used.contains(&Feature::Https));
}

#[test]
fn keepalived_smtp_check_hosts() {
    let out = keep(&vs(
        "",
        "        SMTP_CHECK {\n            helo_name mx.example.com\n            host {\n                connect_ip 10.9.9.9\n                \
         connect_port 587\n                bindto 10.0.0.2\n            }\n            host {\n                connect_ip 10.9.9.10\n            }\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check script --expect 220 --send \"HELO mx.example.com\\r\\n\" --expect 250 --send \"QUIT\\r\\n\" --expect 221 --address 10.9.9.9 --port 587 --source 10.0.0.2",
    );
    has(
        &out,
        "check script --expect 220 --send \"HELO mx.example.com\\r\\n\" --expect 250 --send \"QUIT\\r\\n\" --expect 221 --address 10.9.9.10",
    );
    assert!(out.used.contains(&Feature::Source));
    let out = keep(&vs("", "        SMTP_CHECK {\n        }"));
    has(&out, "check smtp");
}

#[test]
fn keepalived_misc_check() {
    let out = keep(&vs(
        "",
        "        MISC_CHECK {\n            misc_path \"/usr/local/bin/check.sh arg1 arg2\"\n            misc_timeout 7\n            misc_dynamic\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check exec --dynamic /usr/local/bin/check.sh arg1 arg2",
    );
    has(&out, "timeout 7s");
    // MISC_CHECK: retry 0.
    has(&out, "fall 1");
    assert!(out.used.contains(&Feature::Exec));
    let out = keep(&vs(
        "",
        "        MISC_CHECK {\n            misc_path /bin/true\n            user nobody\n        }",
    ));
    refused(&out, "k.conf:7", "user nobody");
    // After another checker, the real server keeps that checker's timeout (and only one).
    let out = keep(&vs(
        "",
        "        TCP_CHECK {\n            connect_timeout 2\n        }\n        MISC_CHECK {\n            \
         misc_path /bin/true\n            misc_timeout 9\n        }",
    ));
    has(&out, "timeout 2s");
    assert_eq!(
        codes(&out)
            .iter()
            .filter(|c| c.starts_with("timeout "))
            .count(),
        1,
        "{}",
        out.text
    );
}

#[test]
fn keepalived_udp_check_and_fwmark() {
    let out = keep(
        "virtual_server 10.0.0.1 53 {\n protocol UDP\n real_server 10.0.1.1 53 {\n UDP_CHECK {\n payload 0102 3\n \
         require_reply 0a0b\n fwmark 9\n }\n }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(
        &out,
        "check udp --send \"\\x01\\x02\\x03\" --expect-prefix \"\\n\\x0b\" --mark 9",
    );
    assert!(out.used.contains(&Feature::Mark));
    let out = keep(
        "virtual_server 10.0.0.1 53 {\n protocol UDP\n real_server 10.0.1.1 53 {\n UDP_CHECK {\n }\n }\n}\n",
    );
    refused(&out, "k.conf:4", "require_reply");
}

#[test]
fn keepalived_refusals_name_their_place() {
    let out = keep(&vs(
        "    hysteresis 1\n    ha_suspend",
        "        PING_CHECK {\n        }\n        TCP_CHECK {\n            bind_port 999\n            warmup 5\n        }",
    ));
    refused(&out, "k.conf:3", "hysteresis 1");
    refused(&out, "k.conf:4", "ha_suspend");
    refused(&out, "k.conf:6", "PING_CHECK");
    refused(&out, "k.conf:9", "bind_port 999");
    refused(&out, "k.conf:10", "warmup 5");
    assert_eq!(out.refused, 5, "{}", out.text);
    // A real server without a checker is always up under keepalived.
    let out = keep(&vs("", "        weight 1"));
    refused(&out, "k.conf:4", "without a checker");
}

#[test]
fn keepalived_several_checkers_share_one_timing() {
    // Checker defaults differ (delay_before_retry 3 for HTTP_GET, 1 for TCP_CHECK) but
    // nothing was set: the first checker's timing, no refusal.
    let out = keep(&vs(
        "",
        "        HTTP_GET {\n            url {\n                path /\n            }\n        }\n        \
         TCP_CHECK {\n            connect_port 22\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "retry-interval 3s");
    has(&out, "check tcp --port 22");
    // A second checker that sets another timing is refused where it stands.
    let out = keep(&vs(
        "",
        "        TCP_CHECK {\n            retry 2\n        }\n        TCP_CHECK {\n            \
         connect_port 22\n            retry 5\n        }",
    ));
    refused(&out, "k.conf:8", "timings differ");
    has(&out, "fall 3");
}

#[test]
fn keepalived_global_defs_and_vrrp() {
    let out = keep(&format!(
        "global_defs {{\n router_id X\n notification_email {{\n a@b\n }}\n lvs_timeouts tcp 900 tcpfin 120 udp 300\n \
         lvs_sync_daemon eth1 VI_1 id 5\n lvs_flush\n}}\nvrrp_instance VI_1 {{\n state MASTER\n virtual_ipaddress {{\n 10.0.0.1\n }}\n}}\n{}",
        ONE_VIRTUAL
    ));
    has(&out, "ipvs-timeouts tcp 900s tcpfin 120s udp 300s");
    has(&out, "sync-daemon master eth1 id 5");
    has(&out, "sync-daemon backup eth1 id 5");
    refused(&out, "k.conf:8", "lvs_flush");
    assert_eq!(out.refused, 1, "{}", out.text);
    assert!(out
        .text
        .contains("VRRP stays with keepalived: vrrp_instance VI_1 (k.conf:10)"));
    assert!(out.text.contains("DIRECTOR PAIRS"));
    assert!(out.text.contains("lvsmon sends no mail"));
}

const ONE_VIRTUAL: &str =
    "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n";

// --- keepalived: grammar ----------------------------------------------------------------------

#[test]
fn keepalived_comments_quotes_and_braces() {
    let out = keep(
        "! a comment\n# another\nvirtual_server 10.0.0.1 80\n{   ! brace on the next line\n \
         real_server 10.0.1.1 80 { weight 4 # trailing\n TCP_CHECK { connect_port 81 } }\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "real 10.0.1.1:80 weight 4");
    has(&out, "check tcp --port 81");
}

#[test]
fn keepalived_include_glob_relative_to_the_including_file() {
    let d = Dir::new();
    d.write("k.conf", "include conf.d/*.conf\n");
    d.write("conf.d/a.conf", "include ../more/{x,y}.inc\n");
    d.write(
        "more/x.inc",
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    d.write(
        "more/y.inc",
        "virtual_server 10.0.0.2 80 {\n real_server 10.0.1.2 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    let out = convert(From::Keepalived, &d.0.join("k.conf"), Some("x")).unwrap();
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual tcp 10.0.0.1:80 {");
    has(&out, "virtual tcp 10.0.0.2:80 {");
    // Notes name the included file where the statement stood.
    assert!(out.text.contains("(more/y.inc:1)"), "{}", out.text);
    // An include loop is an error, not a hang.
    d.write("loop.conf", "include loop.conf\n");
    let e = convert(From::Keepalived, &d.0.join("loop.conf"), Some("x")).unwrap_err();
    assert!(e.0.contains("include loop"), "{e}");
}

#[test]
fn keepalived_conditional_lines_follow_the_config_id() {
    let text = "virtual_server 10.0.0.1 80 {\n@main lb_algo rr\n@backup lb_algo wlc\n@^main persistence_timeout 9\n \
                real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n";
    let d = Dir::new();
    let p = d.write("k.conf", text);
    let main = convert(From::Keepalived, &p, Some("main")).unwrap();
    has(&main, "scheduler rr");
    assert!(!main.text.contains("scheduler wlc") && !main.text.contains("persistent"));
    let backup = convert(From::Keepalived, &p, Some("backup")).unwrap();
    has(&backup, "scheduler wlc");
    has(&backup, "persistent 9s");
    assert!(!backup.text.contains("scheduler rr"));
    // A parameter may carry the condition.
    let p = d.write(
        "k2.conf",
        "$IF_MAIN=@main\nvirtual_server 10.0.0.1 80 {\n$IF_MAIN lb_algo sh\n \
         real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    has(
        &convert(From::Keepalived, &p, Some("main")).unwrap(),
        "scheduler sh",
    );
    let other = convert(From::Keepalived, &p, Some("other")).unwrap();
    assert!(!other.text.contains("scheduler"), "{}", other.text);
}

#[test]
fn keepalived_parameters_are_substituted() {
    let out = keep(
        "$BASE=10.0.${SUB}\n$SUB=7\n$W=5\n$RS= \\\nreal_server ${BASE}.${N} 80 { \\\n weight $W \\\n TCP_CHECK { \\\n } \\\n}\n\
         virtual_server ${BASE}.1 80 {\n$N=10\n$RS\n$N=11\n$RS\n}\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual tcp 10.0.7.1:80 {");
    has(&out, "real 10.0.7.10:80 weight 5");
    has(&out, "real 10.0.7.11:80 weight 5");
}

#[test]
fn keepalived_unbalanced_braces_are_errors_with_a_place() {
    let d = Dir::new();
    let p = d.write(
        "k.conf",
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n}\n",
    );
    let e = convert(From::Keepalived, &p, Some("x")).unwrap_err();
    assert!(
        e.0.ends_with("k.conf:2: the block opened here is not closed (expected `}`)")
            || e.0.contains("k.conf:1: the block opened here"),
        "{e}"
    );
    let p = d.write("k2.conf", "}\n");
    let e = convert(From::Keepalived, &p, Some("x")).unwrap_err();
    assert!(e.0.contains("k2.conf:1: `}` closes no block"), "{e}");
}

#[test]
fn keepalived_vrrp_only_has_nothing_to_check() {
    let out = keep("vrrp_instance VI_1 {\n state MASTER\n}\n");
    refused(&out, "k.conf:1", "no virtual_server");
}

// --- ldirectord ---------------------------------------------------------------------------------

#[test]
fn ldirectord_globals_and_a_negotiate_http_check() {
    let out = ldir(
        "checktimeout=4\nnegotiatetimeout=6\ncheckinterval=2\nfailurecount=3\nquiescent=yes\nemailalert=\"ops@example.com\"\n\
         virtual=10.0.0.1:80\n\treal=192.168.1.10:80 masq 5\n\treal=192.168.1.11:8080 masq\n\tservice=http\n\t\
         checktype=negotiate\n\trequest=\"health\"\n\treceive=\"OK\"\n\tvirtualhost=www.example.com\n\tscheduler=wlc\n\t\
         persistent=120\n\tprotocol=tcp\n\tfallback=127.0.0.1:80 masq\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "interval 2s");
    has(&out, "fall 3");
    has(&out, "rise 1");
    has(&out, "on-down quiesce");
    assert!(out.text.contains("emailalert=ops@example.com"));
    has(&out, "virtual tcp 10.0.0.1:80 {");
    has(&out, "scheduler wlc");
    has(&out, "forward masq");
    has(&out, "persistent 120s");
    has(&out, "sorry 127.0.0.1:80");
    // negotiate: negotiatetimeout.
    has(&out, "timeout 6s");
    has(&out, "real 192.168.1.10:80 weight 5 {");
    has(&out, "real 192.168.1.11:8080 weight 1 {");
    has(
        &out,
        "check http --url http://www.example.com/health --expect 200-299 --match OK",
    );
    has(
        &out,
        "check http --url http://www.example.com:8080/health --expect 200-299 --match OK",
    );
}

#[test]
fn ldirectord_forwarding_connect_checks_and_defaults() {
    let out = ldir(
        "checktimeout=4\nvirtual=10.0.0.1:25\n\treal=192.168.1.10:25 gate 2\n\treal=192.168.1.11:25 ipip\n\t\
         checktype=connect\n\nvirtual=10.0.0.2:110\n\treal=192.168.1.12:110 gate\n\tquiescent=no\n\
         virtual=10.0.0.3:53\n\treal=192.168.1.13:53 gate\n\tservice=dns\n\trequest=\"www.example.com\"\n\treceive=\"192.0.2.1\"\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "forward route");
    has(&out, "forward tunnel");
    has(&out, "check tcp");
    has(&out, "timeout 4s");
    // ldirectord's defaults: wrr, quiescent, a POP3 check from the port.
    has(&out, "scheduler wrr");
    has(&out, "on-down quiesce");
    has(&out, "on-down remove");
    has(&out, "check pop3");
    has(&out, "virtual udp 10.0.0.3:53 {");
    has(
        &out,
        "check dns --query www.example.com --type A --expect-address 192.0.2.1",
    );
}

#[test]
fn ldirectord_fwmark_external_and_per_real_requests() {
    let out = ldir(
        "virtual=42\n\treal=192.168.1.10 gate\n\tchecktype=external\n\tcheckcommand=\"/usr/local/bin/chk\"\n\
         virtual=10.0.0.1:80\n\treal=192.168.1.10:80 gate 1 \"/a\", \"A\"\n\treal=192.168.1.11:80 gate\n\trequest=\"/b\"\n\treceive=\"B\"\n\
         \tnetmask=255.255.0.0\n\tpersistent=10\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual fwmark 42 {");
    has(&out, "check exec /usr/local/bin/chk 42 0 192.168.1.10 0");
    has(
        &out,
        "check http --url http://192.168.1.10/a --expect 200-299 --match A",
    );
    has(
        &out,
        "check http --url http://192.168.1.11/b --expect 200-299 --match B",
    );
    has(&out, "persistence-netmask 16");
}

#[test]
fn ldirectord_refusals_name_their_place() {
    let out = ldir(
        "maintenancedir=/etc/ha.d/maint\nvirtual=10.0.0.1:80\n\treal=192.168.1.10:80 gate\n\treceive=\"^OK$\"\n\
         virtual=10.0.0.2:80\n\treal=web1:80 gate\n\treal=192.168.1.11:80 gate\n\tchecktype=ping\n\tfallbackcommand=\"/x\"\n",
    );
    refused(&out, "l.cf:1", "maintenancedir");
    refused(&out, "l.cf:3", "regular expressions");
    refused(&out, "l.cf:6", "host names are not resolved");
    refused(&out, "l.cf:7", "checktype=ping");
    refused(&out, "l.cf:9", "fallbackcommand");
}

// --- output -------------------------------------------------------------------------------------

#[test]
fn words_are_quoted_when_they_must_be() {
    use super::emit::{duration, prefix_len, word};
    assert_eq!(word("plain"), "plain");
    assert_eq!(word("two words"), "\"two words\"");
    assert_eq!(word("a#b"), "\"a#b\"");
    assert_eq!(word(""), "\"\"");
    assert_eq!(word("q\"\\"), "\"q\\\"\\\\\"");
    assert_eq!(super::emit::url_path("/a b/é"), "/a%20b/%C3%A9");
    assert_eq!(duration(6.0), "6s");
    assert_eq!(duration(1.5), "1500ms");
    assert_eq!(prefix_len("255.255.255.0"), Some(24));
    assert_eq!(prefix_len("255.0.255.0"), None);
    assert_eq!(prefix_len("64"), Some(64));
}

/// Each row of NEEDS is syntax this branch's parser still refuses; when one is accepted (the
/// branch that adds it is merged), remove the row.
#[test]
fn needs_rows_are_still_refused() {
    let d = Dir::new();
    for (i, (feature, text)) in NEEDS.iter().enumerate() {
        let p = d.write(&format!("n{i}.conf"), text);
        assert!(
            config::load(&p, None).is_err(),
            "{feature:?} is accepted now: remove its row from convert::NEEDS\n{text}"
        );
    }
    // And the syntax not listed is accepted.
    assert!(!pending(Feature::Digest));
}

// --- keepalived: sequence and list blocks, predefined parameters ---------------------------

#[test]
fn keepalived_sequence_and_list_blocks_repeat_their_line() {
    // keepalived.conf(5), "Sequence blocks" and "List blocks".
    let out = keep(
        "virtual_server 10.0.0.1 80 {\n\
         ~SEQ(P, 3, 5) real_server 10.0.1.1 $P { TCP_CHECK { } }\n\
         ~SEQ(M, 10, 5, 20) real_server 10.0.2.${M} 80 { TCP_CHECK { } }\n\
         ~LST({A, B}, {7,1},{8,2}) ~LST(C, 1) real_server 10.${A}.${C}.${B} 80 { TCP_CHECK { } }\n\
         ~SEQ(D, 9, 8) real_server 10.0.3.${D} 80 { TCP_CHECK { } }\n\
         }\n\
         virtual_server 2001:db8::1 80 {\n\
         ~SEQx(H, 0x0e, 0x0f) ~SEQ(L, 2) real_server 2001:db8:${L}::${H} 80 { TCP_CHECK { } }\n\
         }\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    for r in [
        "real 10.0.1.1:3 weight 1",
        "real 10.0.1.1:4 weight 1",
        "real 10.0.1.1:5 weight 1",
        "real 10.0.2.10:80 weight 1",
        "real 10.0.2.15:80 weight 1",
        "real 10.0.2.20:80 weight 1",
        "real 10.7.1.1:80 weight 1",
        "real 10.8.1.2:80 weight 1",
        "real 10.0.3.9:80 weight 1",
        "real 10.0.3.8:80 weight 1",
        // ~SEQx writes hexadecimal; two blocks on one line nest.
        "real [2001:db8:1::e]:80 weight 1",
        "real [2001:db8:2::e]:80 weight 1",
        "real [2001:db8:1::f]:80 weight 1",
        "real [2001:db8:2::f]:80 weight 1",
    ] {
        has(&out, r);
    }
    let reals = codes(&out)
        .iter()
        .filter(|c| c.starts_with("real "))
        .count();
    assert_eq!(reals, 3 + 3 + 4 + 2 + 2, "{}", out.text);
    // Malformed: an error naming the line.
    let d = Dir::new();
    for bad in [
        "~SEQ(N, 1, 0, 5) x\n",
        "~SEQ(N) x\n",
        "~SEQ(N, 1, 5 x\n",
        "~LST({A,B},{1}) x\n",
    ] {
        let p = d.write("bad.conf", bad);
        let e = convert(From::Keepalived, &p, Some("x")).unwrap_err();
        assert!(e.0.contains("bad.conf:1: "), "{bad}: {e}");
    }
}

#[test]
fn keepalived_predefined_parameters() {
    let out = keep(&vs(
        "",
        "        HTTP_GET {\n            url {\n                path /${_INSTANCE}\n                \
         regex ${_HASH}tag${_BANG}\n            }\n        }",
    ));
    assert_eq!(out.refused, 0, "{}", out.text);
    // `#` and `!` from ${_HASH} and ${_BANG} are characters, not comments.
    has(
        &out,
        "check http --url http://192.168.1.10/main --expect 200-299 --match \"#tag!\" --version 1.0",
    );
    // ${_RANDOM} has no value lvsmon could repeat: the statement is refused as written.
    let out = keep(&vs(
        "",
        "        weight ${_RANDOM 1 5}\n        TCP_CHECK {\n        }",
    ));
    refused(&out, "k.conf:5", "weight ${_RANDOM 1 5}");
    // A real server whose address or port cannot be read is refused inside its virtual block.
    let out = keep(
        "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.2 ${_RANDOM 1 5} {\n TCP_CHECK {\n }\n }\n          real_server 10.0.1.3 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    refused(
        &out,
        "k.conf:2",
        "real_server 10.0.1.2 ${_RANDOM 1 5}: unreadable port",
    );
    let lines: Vec<&str> = out.text.lines().collect();
    let at = |p: &str| lines.iter().position(|l| l.contains(p)).unwrap();
    assert!(
        at("virtual tcp 10.0.0.1:80 {") < at("# not converted (k.conf:2)"),
        "{}",
        out.text
    );
}

// --- refusals, one table ----------------------------------------------------------------------

/// Every construct lvsmon(8) MIGRATION lists as not converted, each at its line.
#[test]
fn every_documented_refusal_names_its_line() {
    let out = keep(
        "SSL {\n password x\n}\nvirtual_server 10.0.0.1 80 {\n quorum_up /bin/up.sh\n quorum_down /bin/down.sh\n omega\n \
         real_server 10.0.1.1 80 {\n BFD_CHECK {\n }\n FILE_CHECK {\n }\n TCP_CHECK {\n }\n }\n}\n",
    );
    for (place, what) in [
        ("k.conf:1", "SSL block"),
        ("k.conf:5", "quorum_up /bin/up.sh"),
        ("k.conf:6", "quorum_down /bin/down.sh"),
        ("k.conf:7", "omega"),
        ("k.conf:9", "BFD_CHECK"),
        ("k.conf:11", "FILE_CHECK"),
    ] {
        refused(&out, place, what);
    }
    assert_eq!(out.refused, 6, "{}", out.text);
    has(&out, "check tcp");

    let out = ldir(
        "cleanstop=yes\nvirtual=10.0.0.1:21\n\treal=10.0.1.1:21 masq\n\tservice=ftp\n\tlogin=\"anonymous\"\n\tpasswd=\"x\"\n\
         virtual=10.0.0.2:3306\n\treal=10.0.1.1:3306 gate\n\tservice=mysql\n\tdatabase=\"db\"\n\
         virtual=10.0.0.3:25\n\treal=10.0.1.1:25 gate\n\tchecktype=off\n\
         virtual=10.0.0.4:80\n\treal=10.0.1.1:80 gate\n\tchecktype=on\n\
         virtual=10.0.0.5:119\n\treal=10.0.1.1:119 gate\n\tservice=simpletcp\n\
         virtual=10.0.0.6:389\n\treal=10.0.1.1:389 gate\n\tservice=ldap\n\
         virtual=10.0.0.7:119\n\treal=10.0.1.1:119 gate\n\tservice=nntp\n\
         virtual=10.0.0.8:5060\n\treal=10.0.1.1:5060 gate\n\tservice=sip\n\
         virtual=10.0.0.9:1812\n\treal=10.0.1.1:1812 gate\n\tservice=radius\n\
         virtual=10.0.0.10:1521\n\treal=10.0.1.1:1521 gate\n\tservice=oracle\n\
         virtual=10.0.0.11:3128\n\treal=10.0.1.1:3128 gate\n\tservice=http_proxy\n\
         virtual=10.0.0.12:80\n\treal=10.0.1.1:80 gate\n\tservice=none\n",
    );
    for (place, what) in [
        ("l.cf:1", "cleanstop=yes"),
        ("l.cf:5", "login="),
        ("l.cf:6", "passwd="),
        ("l.cf:10", "database="),
        ("l.cf:12", "checktype=off"),
        ("l.cf:15", "checktype=on"),
        ("l.cf:18", "service=simpletcp"),
        ("l.cf:21", "service=ldap"),
        ("l.cf:24", "service=nntp"),
        ("l.cf:27", "service=sip"),
        ("l.cf:30", "service=radius"),
        ("l.cf:33", "service=oracle"),
        ("l.cf:36", "service=http_proxy"),
        ("l.cf:39", "service=none"),
    ] {
        refused(&out, place, what);
    }
    assert_eq!(out.refused, 14, "{}", out.text);
}

/// The checktypes without an lvsmon equivalent are refused with what they mean in ldirectord
/// (on: no check, always in service; off: no check, never in service; ping: ICMP) and what
/// the converted reals get instead; on and off are not about ping.
#[test]
fn ldirectord_checktypes_without_equivalent_say_what_they_mean() {
    for (ctype, says, never) in [
        (
            "on",
            &[
                "runs no check",
                "keeps every real server in service",
                "default check tcp",
            ][..],
            "ping",
        ),
        (
            "off",
            &[
                "runs no check",
                "out of service",
                "fallback",
                "default check tcp",
                "lvsmon drain",
            ][..],
            "ping",
        ),
        ("ping", &["ICMP echo", "no ping check"][..], "drain"),
        ("On", &["keeps every real server in service"][..], "ping"),
        ("bogus", &["checktype=bogus: not a checktype"][..], "ping"),
    ] {
        let out = ldir(&format!(
            "virtual=10.0.0.4:80\n\treal=10.0.1.1:80 gate\n\tchecktype={ctype}\n"
        ));
        let line = out
            .text
            .lines()
            .find(|l| l.trim().starts_with("# not converted (l.cf:2): "))
            .unwrap_or_else(|| panic!("checktype={ctype} not refused:\n{}", out.text));
        for part in says {
            assert!(
                line.contains(part),
                "checktype={ctype}: {part:?} not in {line}"
            );
        }
        assert!(
            !line.contains(never),
            "checktype={ctype}: {never:?} in {line}"
        );
        assert_eq!(out.refused, 1, "{}", out.text);
        // No check line: the converted reals get lvsmon's default check, as the line says.
        assert!(!out.text.contains("\n    check "), "{}", out.text);
    }
}

// --- keywords the tables above leave out --------------------------------------------------------

#[test]
fn keepalived_includer_sctp_and_sorry_forwarding_of_its_own() {
    let d = Dir::new();
    d.write("k.conf", "includer inc/*.conf\n");
    d.write(
        "inc/a.conf",
        "virtual_server 10.0.0.2 80 {\n protocol SCTP\n lb_kind DR\n sorry_server 10.0.0.9 80\n \
         sorry_server_lvs_method NAT\n real_server 10.0.1.1 80 {\n TCP_CHECK {\n }\n }\n}\n",
    );
    let out = convert(From::Keepalived, &d.0.join("k.conf"), Some("x")).unwrap();
    accepted(&d, &out);
    assert_eq!(out.refused, 0, "{}", out.text);
    has(&out, "virtual sctp 10.0.0.2:80 {");
    has(&out, "forward route");
    // The sorry server's own forwarding (NAT) wins over the virtual server's.
    has(&out, "sorry 10.0.0.9:80");
}

#[test]
fn ldirectord_global_fallback_protocols_ranges_and_presets() {
    let out = ldir(
        "fallback=127.0.0.1:80 gate\nautoreload=yes\nlogfile=\"/var/log/ldirectord.log\"\n\
         virtual=10.0.0.1:5353\n\treal=10.0.1.1:5353 masq\n\tprotocol=udp\n\tservice=dns\n\trequest=\"example.com\"\n\
         virtual=7\n\treal=10.0.1.1->10.0.1.3 gate 4\n\tprotocol=fwm\n\tchecktype=connect\n\tcheckport=22\n\
         virtual=10.0.0.2:80\n\treal=10.0.1.1:8080 masq\n\tservice=http\n\thttpmethod=HEAD\n\tcheckport=8081\n\trequest=\"/h\"\n\
         virtual=10.0.0.3:993\n\treal=10.0.1.1:993 gate\n\tservice=imaps\n\
         virtual=10.0.0.4:21\n\treal=10.0.1.1:21 gate\n\tservice=ftp\n",
    );
    assert_eq!(out.refused, 0, "{}", out.text);
    // A global fallback is every virtual's sorry server.
    assert_eq!(
        codes(&out)
            .iter()
            .filter(|c| *c == "sorry 127.0.0.1:80 --forward route")
            .count(),
        5,
        "{}",
        out.text
    );
    assert!(
        out.text.contains("# autoreload=yes (l.cf:2)"),
        "{}",
        out.text
    );
    assert!(out
        .text
        .contains("# logfile=/var/log/ldirectord.log (l.cf:3)"));
    has(&out, "virtual udp 10.0.0.1:5353 {");
    // Without a receive= any answer passes, as in ldirectord.
    has(&out, "check dns --query example.com");
    has(&out, "virtual fwmark 7 {");
    has(&out, "check tcp --port 22");
    for r in [
        "real 10.0.1.1 weight 4",
        "real 10.0.1.2 weight 4",
        "real 10.0.1.3 weight 4",
    ] {
        has(&out, r);
    }
    has(
        &out,
        "check http --url http://10.0.1.1:8081/h --expect 200-299 --method HEAD --port 8081",
    );
    has(&out, "check imaps");
    has(&out, "check ftp");
}
