//! Runs the real `lvsmon` binary for a test: writes its config to a private temp dir, starts
//! it with `--dry-run -v`, collects its stderr lines, and stops it by pid when dropped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A private temp directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("lvsmon-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lvsmon")
}

/// Runs `lvsmon --check-config -f CONF` to the end and returns what it did.
pub fn check_config(conf: &std::path::Path) -> std::process::Output {
    Command::new(bin())
        .arg("--check-config")
        .arg("-f")
        .arg(conf)
        .output()
        .expect("run lvsmon --check-config")
}

/// Panics, with both its outputs, unless `out` is a successful exit; returns its stdout.
#[track_caller]
pub fn stdout_of_success(out: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}: {text}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// A running lvsmon.
pub struct Lvsmon {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    reader: Option<JoinHandle<()>>,
    pub dir: TempDir,
}

impl Lvsmon {
    /// Starts `lvsmon --dry-run -v -f CONFIG` plus `args`.
    pub fn start(config: &str, args: &[&str]) -> Lvsmon {
        Self::start_with(config, args, |_| {})
    }

    /// As [`Lvsmon::start`], letting the caller adjust the command (limits, namespace).
    pub fn start_with(config: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Lvsmon {
        let dir = TempDir::new("daemon");
        let conf = dir.file("lvsmon.conf", config);
        let mut cmd = Command::new(bin());
        // A private control socket and state directory unless the test names its own.
        let named = |o: &str| args.contains(&o);
        cmd.arg("--dry-run").arg("-v").arg("-f").arg(&conf);
        if !named("--socket") {
            cmd.arg("--socket").arg(dir.0.join("lvsmon.sock"));
        }
        if !named("--state-dir") {
            cmd.arg("--state-dir").arg(dir.0.join("state"));
        }
        cmd.args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        Self::spawn(cmd, dir)
    }

    /// Starts a prepared command whose stderr is piped.
    pub fn spawn(mut cmd: Command, dir: TempDir) -> Lvsmon {
        let mut child = cmd.spawn().expect("start lvsmon");
        let err = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("LVSMON_TEST_ECHO").is_some() {
                    eprintln!("| {line}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lvsmon {
            child,
            lines: rx,
            seen: Vec::new(),
            reader: Some(reader),
            dir,
        }
    }

    /// The daemon's control socket (the private one, unless the test named another).
    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.0.join("lvsmon.sock")
    }

    /// Runs `lvsmon ARGS --socket SOCKET` (a client command) and returns (exit code, stdout,
    /// stderr).
    pub fn client(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(bin())
            .args(args)
            .arg("--socket")
            .arg(self.socket())
            .output()
            .expect("run lvsmon client");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The metrics address from the `starting` line (the daemon must run with --metrics).
    #[track_caller]
    pub fn metrics_addr(&mut self) -> std::net::SocketAddr {
        let l = self.wait_seen(
            &["msg=\"starting\"", "metrics=http://"],
            Duration::from_secs(5),
        );
        let url = l.split("metrics=http://").nth(1).unwrap();
        url.split('/').next().unwrap().parse().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for a line containing every one of `parts`; returns it.
    #[track_caller]
    pub fn wait_for(&mut self, parts: &[&str], limit: Duration) -> String {
        match self.try_wait_for(parts, limit) {
            Some(l) => l,
            None => panic!(
                "no line with {parts:?} within {limit:?}; last lines:\n{}",
                self.seen
                    .iter()
                    .rev()
                    .take(30)
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// Like [`Lvsmon::wait_for`], but a line already read by an earlier wait counts too (for
    /// lines whose order among themselves does not matter).
    #[track_caller]
    pub fn wait_seen(&mut self, parts: &[&str], limit: Duration) -> String {
        if let Some(l) = self
            .seen
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return l.clone();
        }
        self.wait_for(parts, limit)
    }

    /// Like [`Lvsmon::wait_for`] but returns `None` on time-out.
    pub fn try_wait_for(&mut self, parts: &[&str], limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if parts.iter().all(|p| line.contains(p)) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    // The daemon is gone; nothing more will come.
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                    if Instant::now() >= end {
                        return None;
                    }
                    return None;
                }
            }
        }
    }

    /// Collects lines for `d`.
    pub fn collect_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
    }

    /// Every line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Lines read so far that contain every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.seen
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Sends SIGTERM and waits (bounded) for the exit; returns the exit code and the time it
    /// took. Kills with SIGKILL after 5 s.
    pub fn stop(&mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let code = self.wait_exit(Duration::from_secs(5));
        (code, t.elapsed())
    }

    /// Waits for the daemon to exit by itself (bounded); SIGKILL after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.drain();
                return st.code();
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.drain();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn drain(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }
}

impl Drop for Lvsmon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of `key=` in a logfmt line (unquoted).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let i = line.find(&pat)? + pat.len();
    let rest = &line[i..];
    if let Some(q) = rest.strip_prefix('"') {
        let end = q.find('"')?;
        return Some(&q[..end]);
    }
    Some(rest.split(' ').next().unwrap_or(""))
}

/// When the checks of real `target` (`IP:PORT`) started, in seconds, by the loop's own
/// figures: each check line's time stamp (to the millisecond) less the duration it logs, in
/// the order of `lines`. The times a backend of the test sees (its accepts) would add how
/// late the test's own threads ran to how late the loop did.
pub fn check_starts(lines: &[String], target: &str) -> Vec<f64> {
    let mut day = 0.0;
    let mut last = 0.0;
    lines
        .iter()
        .filter(|l| l.contains(" check ") && field(l, "target") == Some(target))
        .map(|l| {
            let ts = l.strip_prefix("ts=").expect("ts=");
            let hms = &ts[11..ts.len().min(23)];
            let h: f64 = hms[0..2].parse().unwrap();
            let m: f64 = hms[3..5].parse().unwrap();
            let sec: f64 = hms[6..].parse().unwrap();
            let mut t = h * 3600.0 + m * 60.0 + sec + day;
            // Past midnight (UTC) the stamps start again.
            if t < last - 43_200.0 {
                day += 86_400.0;
                t += 86_400.0;
            }
            last = t;
            let dur: f64 = field(l, "duration").expect("duration").parse().unwrap();
            t - dur
        })
        .collect()
}
