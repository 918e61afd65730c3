//! What the config's unit tests share: a text written as `main.conf` in a fresh directory and
//! loaded, its plan or its error; short names for addresses and durations; temporary
//! directories that remove themselves.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// A fresh directory under the system's temp dir, removed with everything in it on drop.
pub(super) struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name contains `tag`, the process id and a counter.
    pub(super) fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("lvsmon-config-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name` (a relative path, directories created) and returns its path.
    pub(super) fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
