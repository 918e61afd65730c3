//! Pieces shared by the benchmark programs (`bench/farm.rs`, `bench/floor.rs`,
//! `bench/run.rs`): how endpoint `i` maps to a loopback address, where its first check falls
//! on the grid, the monotonic clock, and a tiny `--key value` argument reader.
//!
//! The mapping must be the same on every side: the farm listens on it, the floor and the
//! generated lvsmon config connect to it, and the farm computes start lateness from it.
#![allow(dead_code)]

use std::net::Ipv4Addr;

/// First endpoint address; endpoint `i` is this plus `i` (127.1.0.1, 127.1.0.2, ...), so
/// 100,000 endpoints stay inside 127.1.0.0-127.2.134.160, all on the loopback interface.
pub const BASE: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);

/// Port the lvsmon under test checks.
pub const PORT_LVSMON: u16 = 18080;
/// Port the floor checks (a separate listener per endpoint, so the farm can tell them apart).
pub const PORT_FLOOR: u16 = 18081;

/// The request both checkers send: byte for byte what `check http --url
/// http://bench/health` makes lvsmon send, so both put the same bytes on the wire.
pub const REQUEST: &[u8] =
    b"GET /health HTTP/1.1\r\nHost: bench\r\nUser-Agent: lvsmon/0.1\r\nConnection: close\r\n\r\n";

/// The farm's reply: a complete `200 OK` with a two-byte body.
pub const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK";

/// Address of endpoint `i`.
pub fn endpoint(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(BASE) + i as u32)
}

/// Offset of endpoint `i`'s first check within the first interval, µs: lvsmon spreads first
/// checks evenly (`interval * i / n`, see `Daemon::new`); the floor does the same.
pub fn first_offset_us(i: usize, n: usize, interval_us: u64) -> u64 {
    interval_us * i as u64 / n.max(1) as u64
}

/// `CLOCK_MONOTONIC` in nanoseconds (the same clock for every process on the machine).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The last OS error number.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Raises `RLIMIT_NOFILE` (soft and, as root, hard) to at least `need`.
///
/// # Errors
/// The kernel refused (not root and the hard limit is lower, or above `fs.nr_open`).
pub fn raise_nofile(need: u64) -> std::io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur >= need {
            return Ok(());
        }
        lim.rlim_cur = need;
        lim.rlim_max = lim.rlim_max.max(need);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Command-line words as `--key value` pairs (and bare `--flag`s).
pub struct Args {
    words: Vec<String>,
}

impl Args {
    /// The process's arguments after the program name (and after `skip` more words).
    pub fn from_env(skip: usize) -> Args {
        Args {
            words: std::env::args().skip(1 + skip).collect(),
        }
    }

    /// The value after `--key`, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        let flag = format!("--{key}");
        self.words
            .iter()
            .position(|w| *w == flag)
            .and_then(|i| self.words.get(i + 1))
            .map(String::as_str)
    }

    /// True when `--key` is present.
    pub fn flag(&self, key: &str) -> bool {
        let flag = format!("--{key}");
        self.words.contains(&flag)
    }

    /// `--key` parsed, or `default`; exits with a message on a malformed value.
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> T {
        match self.get(key) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("bad value for --{key}: {v:?}");
                std::process::exit(2)
            }),
        }
    }

    /// A number of seconds (fractions allowed) as µs.
    pub fn secs_us(&self, key: &str, default_s: f64) -> u64 {
        (self.num(key, default_s) * 1e6).round() as u64
    }
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank; 0 for none.
pub fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
