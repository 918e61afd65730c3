//! A daemon built in-process for the rendering benchmarks (`bench/page.rs`,
//! `benches/metrics.rs`): `--dry-run`'s IPVS, no socket, a null log.

use std::path::Path;

use lvsmon::event_loop::{Daemon, Options};
use lvsmon::ipvs::DryRun;
use lvsmon::log::{Level, Log, Sink};

/// A daemon of `n` reals at 127.1.0.1, 127.1.0.2, ... (port 18080), `per` to a virtual
/// service, each checked by `http`; `head` comes first in its config.
pub fn daemon(head: &str, n: usize, per: usize) -> Daemon {
    let mut text = format!("{head}forward masq\ncheck http --url http://bench/health\n");
    for v in 0..n.div_ceil(per) {
        text.push_str(&format!("virtual tcp 10.0.{}.{}:80 {{\n", v / 256, v % 256));
        for i in v * per..((v + 1) * per).min(n) {
            let a = std::net::Ipv4Addr::from(
                u32::from(std::net::Ipv4Addr::new(127, 1, 0, 1)) + i as u32,
            );
            text.push_str(&format!("    real {a}:18080\n"));
        }
        text.push_str("}\n");
    }
    let doc = lvsmon::config::parse::parse_bytes(Path::new("bench.conf"), text.as_bytes())
        .expect("parse");
    let plan = lvsmon::config::plan::plan(&doc, None).expect("plan");
    let opts = Options {
        signals: false,
        ..Options::default()
    };
    Daemon::new(
        plan,
        Box::new(DryRun::default()),
        Log::new(Sink::Null, Level::Error),
        &opts,
    )
    .expect("daemon")
}
