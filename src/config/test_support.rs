//! What the config's unit tests share: a text written as `main.conf` in a fresh directory and
//! loaded, its plan or its error; short names for addresses and durations.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) use super::parse::test_support::TempDir;
use super::{load, ConfigError, Plan};

/// Plans `text` written as `main.conf` in a fresh directory.
#[track_caller]
pub(super) fn plan_with(text: &str, interval: Option<Duration>) -> Plan {
    let dir = TempDir::new("plan");
    let path = dir.write("main.conf", text);
    load(&path, interval).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
pub(super) fn plan_text(text: &str) -> Plan {
    plan_with(text, None)
}

/// The error for `text`, as (line, col, message).
#[track_caller]
pub(super) fn error(text: &str) -> (u32, u32, String) {
    let dir = TempDir::new("plan-err");
    let path = dir.write("main.conf", text);
    match load(&path, None) {
        Err(ConfigError::At { loc, message }) => (loc.line, loc.col, message),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[track_caller]
pub(super) fn expect_error(text: &str, line: u32, col: u32, part: &str) {
    let (l, c, m) = error(text);
    assert!(
        (l, c) == (line, col) && m.contains(part),
        "got {l}:{c}: {m}\nexpected {line}:{col}: ...{part}..."
    );
}

pub(super) fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

pub(super) fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
