//! What a test can observe of a running lvsmon from outside: what `/proc` says (resident
//! memory, open descriptors, CPU time, resource limits), its `status --json` reply, and its
//! `/metrics` page (also from inside a network namespace). Used to show that lvsmon neither
//! stalls, leaks nor spins.

use std::time::Instant;

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmData`...), 0 if it cannot be read.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `VmRSS` of `pid` in KiB: memory resident now.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// `VmData` of `pid` in KiB: private writable memory mapped, resident or not. A process
/// that allocates everything at startup keeps this constant; its resident size may still
/// grow into it as preallocated pages are first written, which is no leak.
pub fn data_kib(pid: u32) -> u64 {
    status_kib(pid, "VmData")
}

/// Open descriptors of `pid` (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// User plus system CPU time of `pid`, in seconds (`utime + stime` of `/proc/PID/stat`).
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// A CPU meter over a process: share of one core used between two readings.
pub struct CpuMeter {
    pid: u32,
    at: Instant,
    secs: f64,
}

impl CpuMeter {
    /// Starts measuring `pid` now.
    pub fn new(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            at: Instant::now(),
            secs: cpu_secs(pid),
        }
    }

    /// CPU used since the last reading as a percentage of one core, and restarts the meter.
    pub fn percent(&mut self) -> f64 {
        let (now, secs) = (Instant::now(), cpu_secs(self.pid));
        let wall = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let p = 100.0 * (secs - self.secs) / wall;
        self.at = now;
        self.secs = secs;
        p
    }
}

/// The soft and hard "Max open files" of `pid` from `/proc/PID/limits` ("unlimited" as
/// `u64::MAX`).
pub fn open_files_limit(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut nums = line["Max open files".len()..].split_whitespace().map(|w| {
        if w == "unlimited" {
            Some(u64::MAX)
        } else {
            w.parse().ok()
        }
    });
    Some((nums.next()??, nums.next()??))
}

/// Sets the soft and hard `RLIMIT_NOFILE` of a running process `pid` (`prlimit(2)`).
pub fn set_open_files_limit(pid: u32, soft: u64, hard: u64) -> std::io::Result<()> {
    let new = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: prlimit reads `new`; the old value is not asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One real server of a `status --json` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealStatus {
    /// `tcp:127.1.0.1:80`.
    pub virtual_service: String,
    /// `127.16.0.1:41234`.
    pub real: String,
    /// `up`, `down`, `unknown` or `drained`.
    pub state: String,
    /// The reason of the last failure, if any.
    pub last_reason: Option<String>,
    /// Its detail.
    pub last_detail: Option<String>,
    /// Checks with a verdict.
    pub checks: u64,
    /// Of which failed.
    pub failures: u64,
}

/// The string value of `"key":"..."` in one JSON object on one line (`None` for null).
fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The number value of `"key":N` in one JSON object on one line.
fn json_u64(line: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &line[line.find(&pat)? + pat.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Parses lvsmon's `status --json` reply (one object per line, as the daemon writes it).
///
/// # Panics
///
/// On an object without the fields every entry has.
#[track_caller]
pub fn parse_status_json(text: &str) -> Vec<RealStatus> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .map(|l| RealStatus {
            virtual_service: json_str(l, "virtual").expect(l).to_owned(),
            real: json_str(l, "real").expect(l).to_owned(),
            state: json_str(l, "state").expect(l).to_owned(),
            last_reason: json_str(l, "last_reason").map(str::to_owned),
            last_detail: json_str(l, "last_detail").map(str::to_owned),
            checks: json_u64(l, "checks").expect(l),
            failures: json_u64(l, "failures").expect(l),
        })
        .collect()
}

/// `GET /metrics` from `addr`, from inside the network namespace at `netns` if given (a
/// short-lived thread joins it); returns the body.
pub fn scrape(
    addr: std::net::SocketAddr,
    netns: Option<&std::path::Path>,
) -> std::io::Result<String> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    std::thread::scope(|s| {
        s.spawn(|| -> std::io::Result<String> {
            if let Some(p) = netns {
                let ns = std::fs::File::open(p)?;
                // SAFETY: an open namespace file; setns moves only this thread.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            let mut c =
                std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
            c.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
            write!(c, "GET /metrics HTTP/1.1\r\nHost: lvsmon\r\n\r\n")?;
            let mut r = String::new();
            c.read_to_string(&mut r)?;
            Ok(r.split_once("\r\n\r\n")
                .map_or(r.clone(), |(_, b)| b.to_owned()))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("scrape thread panicked")))
    })
}

/// The value of an unlabelled sample (`name 42`) or of a labelled one given whole
/// (`name{reason="reset"}`) in a metrics page.
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The bound of the first bucket of `lvsmon_check_lateness_seconds` on a `/metrics` page that
/// holds every start: the loop started no check later than that after its grid point.
pub fn max_lateness(page: &str) -> f64 {
    let count = metric(page, "lvsmon_check_lateness_seconds_count").expect("lateness count");
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("lvsmon_check_lateness_seconds_bucket{le=\"")?;
            let (le, n) = rest.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, n.trim().parse::<f64>().ok()?))
        })
        .find(|&(_, n)| n >= count)
        .map_or(f64::INFINITY, |(le, _)| le)
}
