//! The runner of lvsmon's load benchmark: starts the backend farm, lvsmon (`--dry-run`,
//! release build) and the floor, measures them over the same window, and prints one table
//! with lvsmon's figures, the floor's, their ratios and the project's targets. See
//! `bench/README.md` for what each figure means.
//!
//! ```text
//! bench_run load --n 10000 --interval 1 --duration 30 [--warmup S] [--history off|default]
//!                [--mode together|apart] [--nice N] [--rt] [--perf FILE] [--keep]
//! bench_run rss  --sizes 10000,100000 --interval 10 [--settle S] [--history off,default]
//!                [--fill]
//! bench_run plan --n 100000 [--repeat 5]
//! ```
//!
//! Every process it starts is stopped by its pid (SIGTERM, then SIGKILL after a bounded
//! wait), also when the runner itself fails; every wait has a time limit; all traffic stays on
//! 127.0.0.0/8. Binaries default to the ones next to this one (`target/release/lvsmon`,
//! `target/release/examples/bench_{farm,floor}`); `bench/run.sh` builds them.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{endpoint, Args};

/// The farm's port for lvsmon's checks: `LVSMON_BENCH_PORT` (default
/// [`common::PORT_LVSMON`]), so two runs can share a machine; the floor's is the next one.
fn port_lvsmon() -> u16 {
    std::env::var("LVSMON_BENCH_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(common::PORT_LVSMON)
}

fn port_floor() -> u16 {
    if std::env::var_os("LVSMON_BENCH_PORT").is_some() {
        port_lvsmon() + 1
    } else {
        common::PORT_FLOOR
    }
}

/// Reals per virtual service in the generated config (as in the `plan_100k` test).
const REALS_PER_VIRTUAL: usize = 100;

// ----- processes ---------------------------------------------------------------------------

/// A child process with its stdout lines on a channel.
struct Proc {
    name: &'static str,
    child: Child,
    lines: Option<Receiver<String>>,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, stdin: bool, log: Option<&Path>) -> Proc {
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped());
        if let Some(l) = log {
            cmd.stderr(std::fs::File::create(l).expect("log file"));
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name,
            child,
            lines: Some(rx),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The next stdout line starting with `prefix`, waiting at most `limit`.
    fn expect(&mut self, prefix: &str, limit: Duration) -> String {
        let until = Instant::now() + limit;
        let rx = self.lines.as_ref().expect("stdout");
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return l,
                Ok(_) => {}
                Err(_) => panic!("{}: no {prefix:?} line within {limit:?}", self.name),
            }
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signals our own child by its pid.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM, wait up to `limit`, then SIGKILL; returns whether it exited by itself.
    fn stop(&mut self, limit: Duration) -> bool {
        if !self.alive() {
            return true;
        }
        self.signal(libc::SIGTERM);
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if !self.alive() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "run: {} did not stop within {limit:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ----- /proc --------------------------------------------------------------------------------

/// What /proc says about a process at one moment.
#[derive(Clone, Copy, Default)]
struct ProcStat {
    user_s: f64,
    sys_s: f64,
    voluntary: u64,
    involuntary: u64,
    rss_kb: u64,
}

fn proc_stat(pid: i32) -> ProcStat {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command name start at field 3 (state): utime is 14, stime 15.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut s = ProcStat {
        user_s: num(11) / hz,
        sys_s: num(12) / hz,
        ..ProcStat::default()
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in status.lines() {
        let mut w = line.split_whitespace();
        let (k, v) = (w.next(), w.next().and_then(|v| v.parse().ok()).unwrap_or(0));
        match k {
            Some("VmRSS:") => s.rss_kb = v,
            Some("voluntary_ctxt_switches:") => s.voluntary = v,
            Some("nonvoluntary_ctxt_switches:") => s.involuntary = v,
            _ => {}
        }
    }
    s
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ----- lvsmon's metrics ---------------------------------------------------------------------

/// The parts of lvsmon's `/metrics` the benchmark reads.
#[derive(Clone, Default)]
struct Scrape {
    checks: u64,
    failures: u64,
    /// Failures by reason, in the page's order.
    reasons: Vec<(String, u64)>,
    local_errors: u64,
    missed_starts: u64,
    /// Lateness histogram: (upper bound in seconds, cumulative count); +Inf last.
    late: Vec<(f64, u64)>,
    late_sum_s: f64,
    late_count: u64,
}

fn scrape(addr: &str) -> Scrape {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("metrics {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .expect("metrics request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("metrics reply");
    let mut m = Scrape::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if name == "lvsmon_checks_total" {
            m.checks = v as u64;
        } else if let Some(r) = name.strip_prefix("lvsmon_check_failures_total{reason=\"") {
            m.failures += v as u64;
            m.reasons
                .push((r.trim_end_matches("\"}").to_string(), v as u64));
        } else if name == "lvsmon_local_errors_total" {
            m.local_errors = v as u64;
        } else if name == "lvsmon_missed_starts_total" {
            m.missed_starts = v as u64;
        } else if let Some(le) = name.strip_prefix("lvsmon_check_lateness_seconds_bucket{le=\"") {
            let le = le.trim_end_matches("\"}");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            m.late.push((bound, v as u64));
        } else if name == "lvsmon_check_lateness_seconds_sum" {
            m.late_sum_s = v;
        } else if name == "lvsmon_check_lateness_seconds_count" {
            m.late_count = v as u64;
        }
    }
    assert!(
        !m.late.is_empty(),
        "no lateness histogram in lvsmon's metrics"
    );
    m
}

/// A bucket bound as text: `≤250µs`, `≤2.5ms`, `>10s`.
fn bound_text(b: f64, prev: f64) -> String {
    if b.is_infinite() {
        return format!(">{}", ms_text(prev * 1e6));
    }
    format!("≤{}", ms_text(b * 1e6))
}

fn ms_text(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 1e6 {
        format!("{}ms", trim(us / 1000.0))
    } else {
        format!("{}s", trim(us / 1e6))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// p50, p99 and max of the histogram difference `b - a`, as bucket bounds.
fn late_quantiles(a: &Scrape, b: &Scrape) -> (String, String, String, f64) {
    let cum: Vec<(f64, u64)> = b
        .late
        .iter()
        .zip(a.late.iter())
        .map(|(&(le, y), &(_, x))| (le, y - x))
        .collect();
    let total = cum.last().map_or(0, |c| c.1);
    let find = |want: u64| {
        let mut prev = 0.0;
        for &(le, c) in &cum {
            if c >= want {
                return bound_text(le, prev);
            }
            prev = le;
        }
        "-".to_string()
    };
    if total == 0 {
        return ("-".into(), "-".into(), "-".into(), 0.0);
    }
    let q = |p: f64| ((p * total as f64).ceil() as u64).max(1);
    let p99_bound = cum
        .iter()
        .find(|c| c.1 >= q(0.99))
        .map_or(f64::INFINITY, |c| c.0);
    (find(q(0.5)), find(q(0.99)), find(total), p99_bound)
}

// ----- the generated configuration --------------------------------------------------------

fn write_config(path: &Path, n: usize, interval_us: u64, history: &str, port: u16) {
    let mut t = String::with_capacity(n * 40 + 1024);
    writeln!(
        t,
        "# Generated by bench_run: {n} reals on 127.1.0.1 and up, port {port}"
    )
    .unwrap();
    writeln!(t, "interval {}ms", interval_us / 1000).unwrap();
    if history == "off" {
        t.push_str("history raw 0 minute 0 hour 0\n");
    }
    // LVSMON_BENCH_CHECK replaces the check line (a plain `check http`, say, whose `Host`
    // is each real's own address).
    let check = std::env::var("LVSMON_BENCH_CHECK")
        .unwrap_or_else(|_| "check http --url http://bench/health".into());
    writeln!(t, "forward masq\n{check}").unwrap();
    // lvsmon wants an open-file limit of one per check or refuses to start; where the hard
    // limit is lower (20,000 on the benchmark machine, which may not raise it), cap the
    // checks at once instead: at N/I checks a second of a few ms each, a few hundred run at
    // once, so the cap is never reached (the run's local-error count says so).
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    let hard = lim.rlim_max as u64;
    if (n as u64) + 1024 > hard {
        writeln!(
            t,
            "max-checks-in-flight {}",
            hard.saturating_sub(1024).max(1)
        )
        .unwrap();
    }
    for v in 0..n.div_ceil(REALS_PER_VIRTUAL) {
        writeln!(t, "virtual tcp 10.0.{}.{}:80 {{", v / 256, v % 256).unwrap();
        for i in v * REALS_PER_VIRTUAL..((v + 1) * REALS_PER_VIRTUAL).min(n) {
            writeln!(t, "    real {}:{port}", endpoint(i)).unwrap();
        }
        t.push_str("}\n");
    }
    std::fs::write(path, t).expect("write config");
}

// ----- the pieces of a run ------------------------------------------------------------------

struct Bins {
    lvsmon: PathBuf,
    farm: PathBuf,
    floor: PathBuf,
    /// Niceness for lvsmon, the floor and the farm (`--nice`, 0 = as started; all get the
    /// same, so that other work on the machine yields to the benchmark, not one side to the
    /// other).
    nice: i32,
}

impl Bins {
    fn find(args: &Args) -> Bins {
        let me = std::env::current_exe().expect("current_exe");
        let examples = me.parent().expect("examples dir").to_path_buf();
        let release = examples.parent().expect("profile dir").to_path_buf();
        let pick = |key: &str, default: PathBuf| {
            let p = args.get(key).map_or(default, PathBuf::from);
            assert!(
                p.exists(),
                "{} not found (build it, or pass --{key})",
                p.display()
            );
            p
        };
        Bins {
            lvsmon: pick("lvsmon", release.join("lvsmon")),
            farm: pick("farm", examples.join("bench_farm")),
            floor: pick("floor", examples.join("bench_floor")),
            nice: args.num("nice", 0),
        }
    }

    /// A command that starts one of the benchmark's programs at the chosen niceness; `nice`
    /// execs it, so the pid is the program's.
    fn checker(&self, path: &Path) -> Command {
        if self.nice == 0 {
            return Command::new(path);
        }
        let mut c = Command::new("nice");
        c.arg("-n").arg(self.nice.to_string()).arg(path);
        c
    }
}

fn workdir(args: &Args) -> PathBuf {
    let d = args.get("workdir").map_or_else(
        || std::env::temp_dir().join(format!("lvsmon-bench-{}", std::process::id())),
        PathBuf::from,
    );
    std::fs::create_dir_all(d.join("state")).expect("work directory");
    d
}

#[allow(clippy::too_many_arguments)]
fn start_farm(
    bins: &Bins,
    n: usize,
    ports: &[u16],
    interval_us: u64,
    seconds: f64,
    rt: bool,
    dir: &Path,
) -> (Proc, String) {
    let per_port = (n as f64 * (seconds * 1e6 / interval_us as f64 + 2.0)) as usize;
    let mut cmd = bins.checker(&bins.farm);
    cmd.args([
        "--n",
        &n.to_string(),
        "--ports",
        &ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        "--interval",
        &(interval_us as f64 / 1e6).to_string(),
        "--capacity",
        &(per_port * ports.len()).to_string(),
        "--max-seconds",
        &((seconds as u64) * 2 + 600).to_string(),
    ]);
    if rt {
        cmd.arg("--rt");
    }
    let mut farm = Proc::spawn("farm", &mut cmd, true, Some(&dir.join("farm.log")));
    let t = Instant::now();
    let ready = farm.expect("ready", Duration::from_secs(300));
    eprintln!("run: farm {ready} in {:.1}s", t.elapsed().as_secs_f64());
    let shards = kv(&ready, "shards").unwrap_or(1.0);
    (farm, format!("{shards} shard(s)"))
}

fn farm_mark(farm: &mut Proc) -> String {
    let stdin = farm.child.stdin.as_mut().expect("farm stdin");
    stdin.write_all(b"mark\n").expect("farm mark");
    stdin.flush().ok();
    farm.expect("mark", Duration::from_secs(10))
}

/// Stops the farm and returns its `window` lines keyed by (window, port index).
fn finish_farm(mut farm: Proc) -> HashMap<(usize, usize), String> {
    farm.signal(libc::SIGTERM);
    let mut out = HashMap::new();
    loop {
        let l = farm.expect("", Duration::from_secs(120));
        if l.starts_with("done") {
            break;
        }
        if l.starts_with("window") {
            let w = kv(&l, "w").unwrap_or(0.0) as usize;
            let p = kv(&l, "port").unwrap_or(0.0) as usize;
            out.insert((w, p), l);
        }
    }
    farm.stop(Duration::from_secs(10));
    out
}

fn start_lvsmon(bins: &Bins, conf: &Path, dir: &Path) -> (Proc, String) {
    let log = dir.join("lvsmon.log");
    let mut cmd = bins.checker(&bins.lvsmon);
    cmd.arg("--dry-run")
        .arg("--file")
        .arg(conf)
        .arg("--socket")
        .arg(dir.join("lvsmon.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--state-interval", "1d", "--metrics", "127.0.0.1:0"]);
    let p = Proc::spawn("lvsmon", &mut cmd, false, Some(&log));
    // Its first log line says where the metrics are served.
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(i) = text.find("metrics=http://") {
            let rest = &text[i + "metrics=http://".len()..];
            let addr = rest.split('/').next().unwrap_or("").to_string();
            return (p, addr);
        }
        assert!(
            Instant::now() < until,
            "lvsmon did not start within 120 s; see {}",
            log.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn start_floor(bins: &Bins, n: usize, interval_us: u64, dir: &Path) -> Proc {
    let mut cmd = bins.checker(&bins.floor);
    cmd.args([
        "--n",
        &n.to_string(),
        "--port",
        &port_floor().to_string(),
        "--interval",
        &(interval_us as f64 / 1e6).to_string(),
    ]);
    Proc::spawn("floor", &mut cmd, false, Some(&dir.join("floor.log")))
}

/// A `key=value` number from a line.
fn kv(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Sleeps `d` while watching that the processes stay up.
fn watch(d: Duration, procs: &mut [&mut Proc]) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for p in procs.iter_mut() {
            assert!(p.alive(), "{} exited early", p.name);
        }
        thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
}

// ----- load ---------------------------------------------------------------------------------

/// One checker's figures over the window.
#[derive(Default)]
struct Side {
    /// Checks started by the farm's count, and checks scheduled in the window (farm's grid).
    accepts: f64,
    scheduled: f64,
    /// Checks finished, passed, failed by its own count (lvsmon: metrics; floor: its output).
    finished: u64,
    failed: u64,
    local_errors: u64,
    /// lvsmon: failures by reason (`reason count, ...`) and grid points it skipped.
    reasons: String,
    missed_starts: u64,
    cpu: (ProcStat, ProcStat),
    window_s: f64,
    own_late: (String, String, String),
    own_p99_us: f64,
    farm_late: (f64, f64, f64),
    farm_jitter: (f64, f64, f64),
    /// With `--perf`: how its `perf` samples split between user and kernel mode.
    perf: Option<PerfSplit>,
}

impl Side {
    fn take_farm(&mut self, line: Option<&String>) {
        let Some(l) = line else { return };
        let g = |k| kv(l, k).unwrap_or(0.0);
        self.accepts = g("accepts");
        self.scheduled = g("scheduled");
        self.farm_late = (g("late_p50_us"), g("late_p99_us"), g("late_max_us"));
        self.farm_jitter = (g("jitter_p50_us"), g("jitter_p99_us"), g("jitter_max_us"));
    }

    fn user_s(&self) -> f64 {
        self.cpu.1.user_s - self.cpu.0.user_s
    }

    fn sys_s(&self) -> f64 {
        self.cpu.1.sys_s - self.cpu.0.sys_s
    }

    /// Per check: divided by the checks the farm saw start in the window.
    fn per(&self, v: f64) -> f64 {
        v / self.accepts.max(1.0)
    }
}

struct Load {
    n: usize,
    interval_us: u64,
    duration: Duration,
    warmup: Duration,
    history: String,
    together: bool,
    rt: bool,
    perf: Option<PathBuf>,
    nice: i32,
}

fn us(v: f64) -> String {
    format!("{:.2}", v * 1e6)
}

fn run_load(args: &Args) {
    let n: usize = args.num("n", 10_000);
    let interval_us = args.secs_us("interval", 1.0);
    let l = Load {
        n,
        interval_us,
        duration: Duration::from_micros(args.secs_us("duration", 30.0)),
        warmup: Duration::from_micros(
            args.secs_us("warmup", (2.0 * interval_us as f64 / 1e6 + 3.0).max(5.0)),
        ),
        history: args.get("history").unwrap_or("off").to_string(),
        together: args.get("mode").unwrap_or("together") == "together",
        rt: args.flag("rt"),
        perf: args.get("perf").map(PathBuf::from),
        nice: args.num("nice", 0),
    };
    let bins = Bins::find(args);
    let dir = workdir(args);
    let conf = dir.join("lvsmon.conf");
    write_config(&conf, n, interval_us, &l.history, port_lvsmon());
    let load_at_start = loadavg();
    let span = l.warmup.as_secs_f64() + l.duration.as_secs_f64() + 30.0;
    let (mut farm, farm_shape) = start_farm(
        &bins,
        n,
        &[port_lvsmon(), port_floor()],
        interval_us,
        if l.together { span } else { 2.0 * span },
        l.rt,
        &dir,
    );
    // The farm's CPU over the window(s): (seconds of CPU, seconds of wall time).
    let mut farm_cpu = (0.0, 0.0);
    // The farm's own CPU and its shards'.
    let cpu_of = |p: &Proc| {
        let pid = p.pid();
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        std::iter::once(pid)
            .chain(kids.split_whitespace().filter_map(|k| k.parse().ok()))
            .map(|p| {
                let s = proc_stat(p);
                s.user_s + s.sys_s
            })
            .sum::<f64>()
    };
    let (mut lv, mut fl) = (Side::default(), Side::default());
    let (lv_rss, fl_rss);
    let mut perf_child: Option<Proc> = None;
    let mut floor_perf: Option<Proc> = None;
    if l.together {
        let (mut lvsmon, maddr) = start_lvsmon(&bins, &conf, &dir);
        let mut floor = start_floor(&bins, n, interval_us, &dir);
        watch(l.warmup, &mut [&mut lvsmon, &mut floor, &mut farm]);
        let a = scrape(&maddr);
        floor.signal(libc::SIGUSR1);
        farm_mark(&mut farm);
        let t0 = Instant::now();
        let f0 = cpu_of(&farm);
        lv.cpu.0 = proc_stat(lvsmon.pid());
        fl.cpu.0 = proc_stat(floor.pid());
        floor.expect("mark", Duration::from_secs(10));
        if let Some(p) = &l.perf {
            perf_child = Some(start_perf(p, lvsmon.pid(), l.duration, &dir));
            floor_perf = Some(start_perf(
                &floor_perf_file(p),
                floor.pid(),
                l.duration,
                &dir,
            ));
        }
        watch(l.duration, &mut [&mut lvsmon, &mut floor, &mut farm]);
        lv.cpu.1 = proc_stat(lvsmon.pid());
        fl.cpu.1 = proc_stat(floor.pid());
        farm_cpu.0 += cpu_of(&farm) - f0;
        floor.signal(libc::SIGUSR1);
        farm_mark(&mut farm);
        lv.window_s = t0.elapsed().as_secs_f64();
        farm_cpu.1 += lv.window_s;
        fl.window_s = lv.window_s;
        floor.expect("mark", Duration::from_secs(10));
        let b = scrape(&maddr);
        lvsmon_side(&mut lv, &a, &b);
        lv_rss = lv.cpu.1.rss_kb;
        fl_rss = fl.cpu.1.rss_kb;
        floor.signal(libc::SIGTERM);
        let w = floor.expect("window", Duration::from_secs(20));
        floor_side(&mut fl, &w);
        floor.stop(Duration::from_secs(10));
        lvsmon.stop(Duration::from_secs(60));
    } else {
        let (mut lvsmon, maddr) = start_lvsmon(&bins, &conf, &dir);
        watch(l.warmup, &mut [&mut lvsmon, &mut farm]);
        let a = scrape(&maddr);
        farm_mark(&mut farm);
        let t0 = Instant::now();
        let f0 = cpu_of(&farm);
        lv.cpu.0 = proc_stat(lvsmon.pid());
        if let Some(p) = &l.perf {
            perf_child = Some(start_perf(p, lvsmon.pid(), l.duration, &dir));
        }
        watch(l.duration, &mut [&mut lvsmon, &mut farm]);
        lv.cpu.1 = proc_stat(lvsmon.pid());
        farm_cpu.0 += cpu_of(&farm) - f0;
        farm_mark(&mut farm);
        lv.window_s = t0.elapsed().as_secs_f64();
        farm_cpu.1 += lv.window_s;
        let b = scrape(&maddr);
        lvsmon_side(&mut lv, &a, &b);
        lv_rss = lv.cpu.1.rss_kb;
        lvsmon.stop(Duration::from_secs(60));

        let mut floor = start_floor(&bins, n, interval_us, &dir);
        watch(l.warmup, &mut [&mut floor, &mut farm]);
        floor.signal(libc::SIGUSR1);
        farm_mark(&mut farm);
        let t0 = Instant::now();
        let f0 = cpu_of(&farm);
        fl.cpu.0 = proc_stat(floor.pid());
        floor.expect("mark", Duration::from_secs(10));
        if let Some(p) = &l.perf {
            floor_perf = Some(start_perf(
                &floor_perf_file(p),
                floor.pid(),
                l.duration,
                &dir,
            ));
        }
        watch(l.duration, &mut [&mut floor, &mut farm]);
        fl.cpu.1 = proc_stat(floor.pid());
        farm_cpu.0 += cpu_of(&farm) - f0;
        floor.signal(libc::SIGUSR1);
        farm_mark(&mut farm);
        fl.window_s = t0.elapsed().as_secs_f64();
        farm_cpu.1 += fl.window_s;
        floor.expect("mark", Duration::from_secs(10));
        fl_rss = fl.cpu.1.rss_kb;
        floor.signal(libc::SIGTERM);
        let w = floor.expect("window", Duration::from_secs(20));
        floor_side(&mut fl, &w);
        floor.stop(Duration::from_secs(10));
    }
    // perf ends by itself after the window (`-- sleep D`); give it time to write.
    for p in [&mut perf_child, &mut floor_perf].into_iter().flatten() {
        let until = Instant::now() + Duration::from_secs(60);
        while p.alive() && Instant::now() < until {
            thread::sleep(Duration::from_millis(100));
        }
        p.stop(Duration::from_secs(10));
    }
    if let Some(p) = &l.perf {
        lv.perf = perf_split(p);
        fl.perf = perf_split(&floor_perf_file(p));
    }
    let windows = finish_farm(farm);
    lv.take_farm(windows.get(&(0, 0)));
    fl.take_farm(windows.get(&(if l.together { 0 } else { 1 }, 1)));
    print_load(
        &l,
        &lv,
        &fl,
        (lv_rss, fl_rss),
        farm_cpu,
        &load_at_start,
        &farm_shape,
    );
    if !args.flag("keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn start_perf(out: &Path, pid: i32, d: Duration, dir: &Path) -> Proc {
    let mut cmd = Command::new("perf");
    cmd.args(["record", "-F", "997", "-g", "-p", &pid.to_string(), "-o"])
        .arg(out)
        .args(["--", "sleep", &d.as_secs().to_string()]);
    Proc::spawn("perf", &mut cmd, false, Some(&dir.join("perf.log")))
}

/// Where the floor's profile goes: beside lvsmon's, `.floor` added.
fn floor_perf_file(lvsmon: &Path) -> PathBuf {
    let mut f = lvsmon.as_os_str().to_owned();
    f.push(".floor");
    PathBuf::from(f)
}

/// A profile's samples by where they were taken: in user mode, and in user mode at the
/// instruction right after a `syscall` (a return address from the kernel).
#[derive(Debug, Default, Clone, Copy)]
struct PerfSplit {
    all: u64,
    user: u64,
    user_at_return: u64,
}

impl PerfSplit {
    /// Share of samples in user mode, all of them.
    fn user_share(&self) -> f64 {
        self.user as f64 / self.all.max(1) as f64
    }

    /// The same without the samples at a system call's return address.
    fn user_share_net(&self) -> f64 {
        (self.user - self.user_at_return) as f64 / self.all.max(1) as f64
    }
}

/// How a profile's samples split between kernel and user mode (`perf script`, with the
/// mappings to find each user sample's instruction in its file).
///
/// perf's timer samples at a prime 997 Hz, out of step with both checkers' millisecond wakes,
/// so unlike the clock tick's user/system split it does not alias. It has a bias of its own:
/// the kernel returns to user mode with interrupts masked until the last instruction, so a
/// sample due during that stretch is taken at the first user instruction after the `syscall`
/// (skid). Those samples are kernel time; `user_at_return` counts them (the two bytes before
/// the sampled instruction are `0f 05`), for lvsmon and the floor alike.
fn perf_split(file: &Path) -> Option<PerfSplit> {
    let out = Command::new("perf")
        .args(["script", "-F", "ip,dso", "-G", "--show-mmap-events", "-i"])
        .arg(file)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // Executable mappings: (start, length, file offset, path).
    let mut maps: Vec<(u64, u64, u64, String)> = Vec::new();
    let mut files: HashMap<String, Option<Vec<u8>>> = HashMap::new();
    let mut s = PerfSplit::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let line = line.trim();
        if line.starts_with("PERF_RECORD_MMAP") {
            // PERF_RECORD_MMAP2 5256/5256: [0x55cf42ea7000(0x14b000) @ 0x5d000 fe:00 ...]: r-xp /path
            let (Some(a), Some(path)) = (line.find('['), line.rsplit(' ').next()) else {
                continue;
            };
            let rest = &line[a + 1..];
            let hex = |t: &str| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok();
            let Some((start, rest)) = rest.split_once('(') else {
                continue;
            };
            let Some((len, rest)) = rest.split_once(')') else {
                continue;
            };
            let off = rest
                .trim_start_matches(" @ ")
                .split(' ')
                .next()
                .unwrap_or("");
            if let (Some(start), Some(len), Some(off)) = (hex(start), hex(len), hex(off)) {
                if path.starts_with('/') {
                    maps.push((start, len, off, path.to_string()));
                }
            }
            continue;
        }
        let Some((ip, dso)) = line.split_once(' ') else {
            continue;
        };
        let Ok(ip) = u64::from_str_radix(ip, 16) else {
            continue;
        };
        s.all += 1;
        if dso.contains("[kernel") || ip >= 0xffff_8000_0000_0000 {
            continue;
        }
        s.user += 1;
        let Some((start, _, off, path)) = maps
            .iter()
            .rev()
            .find(|(start, len, _, _)| ip >= *start && ip < start + len)
        else {
            continue;
        };
        let at = (ip - start + off) as usize;
        let bytes = files
            .entry(path.clone())
            .or_insert_with(|| std::fs::read(path).ok());
        if let Some(b) = bytes {
            if at >= 2 && at <= b.len() && b[at - 2..at] == [0x0f, 0x05] {
                s.user_at_return += 1;
            }
        }
    }
    (s.all > 0).then_some(s)
}

fn lvsmon_side(s: &mut Side, a: &Scrape, b: &Scrape) {
    s.finished = b.checks - a.checks;
    s.failed = b.failures - a.failures;
    s.local_errors = b.local_errors - a.local_errors;
    s.missed_starts = b.missed_starts - a.missed_starts;
    s.reasons = b
        .reasons
        .iter()
        .zip(&a.reasons)
        .filter(|((_, y), (_, x))| y > x)
        .map(|((r, y), (_, x))| format!("{r} {}", y - x))
        .collect::<Vec<_>>()
        .join(", ");
    let (p50, p99, max, p99_bound) = late_quantiles(a, b);
    s.own_late = (p50, p99, max);
    s.own_p99_us = p99_bound * 1e6;
}

fn floor_side(s: &mut Side, w: &str) {
    let g = |k| kv(w, k).unwrap_or(0.0);
    s.finished = (g("pass") + g("fail")) as u64;
    s.failed = g("fail") as u64;
    s.reasons = [
        "fail_connect",
        "fail_before_up",
        "fail_send",
        "fail_before_reply",
        "fail_status",
        "overrun",
    ]
    .iter()
    .filter(|k| g(k) > 0.0)
    .map(|k| format!("{} {}", k.trim_start_matches("fail_"), g(k)))
    .collect::<Vec<_>>()
    .join(", ");
    // The floor's histogram has 10 µs buckets up to 100 ms; beyond, it says 0.
    let b = |k| match g(k) {
        0.0 => ">100ms".to_string(),
        v => format!("≤{}", ms_text(v)),
    };
    s.own_late = (
        b("late_p50_us"),
        b("late_p99_us"),
        ms_text(g("late_max_us")),
    );
    s.own_p99_us = match g("late_p99_us") {
        0.0 => f64::INFINITY,
        v => v,
    };
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

fn print_load(
    l: &Load,
    lv: &Side,
    fl: &Side,
    rss: (u64, u64),
    farm_cpu: (f64, f64),
    load0: &str,
    farm_shape: &str,
) {
    let i_s = l.interval_us as f64 / 1e6;
    let mut o = String::new();
    let nprocs = thread::available_parallelism().map_or(0, |n| n.get());
    writeln!(o).unwrap();
    writeln!(
        o,
        "== lvsmon load: N={} reals, I={}s, window {:.1}s after {:.0}s warm-up, history {}, lvsmon and floor {}",
        l.n,
        trim(i_s),
        lv.window_s,
        l.warmup.as_secs_f64(),
        l.history,
        if l.together { "together (same window)" } else { "one after the other" }
    )
    .unwrap();
    writeln!(
        o,
        "   machine: {nprocs} CPUs, load average {load0} at start, {} at end; lvsmon, floor and farm at nice {}; farm: {farm_shape}{}",
        loadavg(),
        l.nice,
        if l.rt { ", SCHED_FIFO" } else { "" }
    )
    .unwrap();
    let row = |o: &mut String, name: &str, a: String, b: String, r: String, t: &str| {
        writeln!(o, "   {name:<36} {a:>18} {b:>18} {r:>12}   {t}").unwrap();
    };
    row(
        &mut o,
        "",
        "lvsmon".into(),
        "floor".into(),
        "lvsmon/floor".into(),
        "target",
    );
    let sched = l.n as f64 / i_s;
    row(
        &mut o,
        "checks scheduled (farm's grid)",
        format!("{:.0}", lv.scheduled),
        format!("{:.0}", fl.scheduled),
        String::new(),
        &format!("N/I = {sched:.0}/s"),
    );
    let pct = |s: &Side| 100.0 * s.accepts / s.scheduled.max(1.0);
    row(
        &mut o,
        "checks started (requests at farm)",
        format!("{:.0} {:.2}%", lv.accepts, pct(lv)),
        format!("{:.0} {:.2}%", fl.accepts, pct(fl)),
        String::new(),
        &format!("100% {}", verdict(pct(lv) >= 99.95)),
    );
    row(
        &mut o,
        "checks per second (made / scheduled)",
        format!("{:.1}", lv.accepts / lv.window_s),
        format!("{:.1}", fl.accepts / fl.window_s),
        String::new(),
        &format!("N/I = {sched:.1}"),
    );
    row(
        &mut o,
        "checks finished / failed / local-err",
        format!("{} / {} / {}", lv.finished, lv.failed, lv.local_errors),
        format!("{} / {} / -", fl.finished, fl.failed),
        String::new(),
        "",
    );
    if !lv.reasons.is_empty() || lv.missed_starts > 0 {
        writeln!(
            o,
            "   {:<36} {}; grid points skipped (missed starts) {}",
            "lvsmon failures by reason",
            if lv.reasons.is_empty() {
                "none"
            } else {
                &lv.reasons
            },
            lv.missed_starts
        )
        .unwrap();
    }
    if !fl.reasons.is_empty() {
        writeln!(o, "   {:<36} {}", "floor failures by step", fl.reasons).unwrap();
    }
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}", a / b)
        } else {
            "-".into()
        }
    };
    let (lu, fu) = (lv.per(lv.user_s()), fl.per(fl.user_s()));
    let (ls, fs) = (lv.per(lv.sys_s()), fl.per(fl.sys_s()));
    row(
        &mut o,
        "CPU user µs/check",
        us(lu),
        us(fu),
        ratio(lu, fu),
        // The clock tick's split aliases with the checkers' millisecond wakes (README,
        // "Measuring user time"): the target is read on the perf rows.
        if l.perf.is_some() {
            "tick-sampled, aliases: see perf rows"
        } else {
            "tick-sampled, aliases: run with --perf"
        },
    );
    row(
        &mut o,
        "CPU sys µs/check",
        us(ls),
        us(fs),
        ratio(ls, fs),
        "",
    );
    let (lt, ft) = (lu + ls, fu + fs);
    row(
        &mut o,
        "CPU user+sys µs/check",
        us(lt),
        us(ft),
        ratio(lt, ft),
        &format!("ratio ≤ 1.10 {}", verdict(ft > 0.0 && lt / ft <= 1.10)),
    );
    if let (Some(a), Some(b)) = (lv.perf, fl.perf) {
        let (pu, pf) = (a.user_share() * lt, b.user_share() * ft);
        row(
            &mut o,
            "CPU user µs/check, perf samples",
            format!("{} {:.1}%", us(pu), 100.0 * a.user_share()),
            format!("{} {:.1}%", us(pf), 100.0 * b.user_share()),
            ratio(pu, pf),
            "",
        );
        let (nu, nf) = (a.user_share_net() * lt, b.user_share_net() * ft);
        row(
            &mut o,
            "  without system call returns",
            format!("{} {:.1}%", us(nu), 100.0 * a.user_share_net()),
            format!("{} {:.1}%", us(nf), 100.0 * b.user_share_net()),
            ratio(nu, nf),
            &format!("lvsmon ≤ 2 µs {}", verdict(nu * 1e6 <= 2.0)),
        );
    }
    row(
        &mut o,
        "CPU share of one core",
        format!("{:.1}%", 100.0 * (lv.user_s() + lv.sys_s()) / lv.window_s),
        format!("{:.1}%", 100.0 * (fl.user_s() + fl.sys_s()) / fl.window_s),
        String::new(),
        "",
    );
    let cs = |s: &Side, f: fn(&ProcStat) -> u64| {
        format!("{:.3}", s.per((f(&s.cpu.1) - f(&s.cpu.0)) as f64))
    };
    row(
        &mut o,
        "sleeps (voluntary switches)/check",
        cs(lv, |p| p.voluntary),
        cs(fl, |p| p.voluntary),
        String::new(),
        "",
    );
    row(
        &mut o,
        "preemptions (involuntary)/check",
        cs(lv, |p| p.involuntary),
        cs(fl, |p| p.involuntary),
        String::new(),
        "",
    );
    row(
        &mut o,
        "lateness p50 (own count)",
        lv.own_late.0.clone(),
        fl.own_late.0.clone(),
        String::new(),
        "",
    );
    row(
        &mut o,
        "lateness p99 (own count)",
        lv.own_late.1.clone(),
        fl.own_late.1.clone(),
        String::new(),
        &format!("≤ 5 ms {}", verdict(lv.own_p99_us <= 5000.0)),
    );
    row(
        &mut o,
        "lateness max (own count)",
        lv.own_late.2.clone(),
        fl.own_late.2.clone(),
        String::new(),
        "",
    );
    let f3 = |t: (f64, f64, f64)| format!("{}/{}/{}", ms_text(t.0), ms_text(t.1), ms_text(t.2));
    row(
        &mut o,
        "lateness p50/p99/max (farm)",
        f3(lv.farm_late),
        f3(fl.farm_late),
        String::new(),
        &format!("p99 ≤ 5 ms {}", verdict(lv.farm_late.1 <= 5000.0)),
    );
    row(
        &mut o,
        "interval jitter p50/p99/max (farm)",
        f3(lv.farm_jitter),
        f3(fl.farm_jitter),
        String::new(),
        "",
    );
    row(
        &mut o,
        "RSS (VmRSS at end of window)",
        format!("{:.1} MiB", rss.0 as f64 / 1024.0),
        format!("{:.1} MiB", rss.1 as f64 / 1024.0),
        ratio(rss.0 as f64, rss.1 as f64),
        "",
    );
    row(
        &mut o,
        "RSS / real (incl. fixed part)",
        format!("{:.0} B", rss.0 as f64 * 1024.0 / l.n as f64),
        format!("{:.0} B", rss.1 as f64 * 1024.0 / l.n as f64),
        String::new(),
        "slope: bench_run rss",
    );
    let farm_checks = lv.accepts + fl.accepts;
    writeln!(
        o,
        "   farm: {:.1}% of one core, {:.2} µs per accepted connection",
        100.0 * farm_cpu.0 / farm_cpu.1.max(1e-9),
        1e6 * farm_cpu.0 / farm_checks.max(1.0)
    )
    .unwrap();
    if let Some(p) = &l.perf {
        writeln!(
            o,
            "   perf profiles over the window: lvsmon {}, floor {}",
            p.display(),
            floor_perf_file(p).display()
        )
        .unwrap();
    }
    print!("{o}");
}

// ----- rss ----------------------------------------------------------------------------------

fn run_rss(args: &Args) {
    let sizes: Vec<usize> = args
        .get("sizes")
        .unwrap_or("10000,100000")
        .split(',')
        .map(|s| s.parse().expect("--sizes"))
        .collect();
    let interval_us = args.secs_us("interval", 10.0);
    // --fill: every real's history starts full from a state file, so RSS is the filled
    // state's as soon as it is loaded; no farm and no floor (checks fail fast, and their
    // buffers are allocated at startup whatever they meet).
    let fill = args.flag("fill");
    let settle = Duration::from_micros(args.secs_us(
        "settle",
        if fill {
            5.0
        } else {
            2.0 * interval_us as f64 / 1e6 + 3.0
        },
    ));
    let histories: Vec<String> = args
        .get("history")
        .unwrap_or("off,default")
        .split(',')
        .map(str::to_string)
        .collect();
    let bins = Bins::find(args);
    let dir = workdir(args);
    let mut o = String::new();
    writeln!(
        o,
        "\n== lvsmon memory: I={}s, VmRSS after {:.0}s ({}), load average {}",
        trim(interval_us as f64 / 1e6),
        settle.as_secs_f64(),
        if fill {
            "from a state file holding every real's full history, after it is loaded; no farm, no floor"
        } else {
            "every real checked at least twice"
        },
        loadavg()
    )
    .unwrap();
    writeln!(
        o,
        "   {:<10} {:>9} {:>12} {:>12} {:>14}   history allocated (--check-config)",
        "history", "reals", "lvsmon RSS", "floor RSS", "lvsmon RSS/N"
    )
    .unwrap();
    let mut slopes = Vec::new();
    for h in &histories {
        let mut pts = Vec::new();
        for &n in &sizes {
            let conf = dir.join(format!("rss-{h}-{n}.conf"));
            write_config(&conf, n, interval_us, h, port_lvsmon());
            let hist = Command::new(&bins.lvsmon)
                .arg("--check-config")
                .arg("--file")
                .arg(&conf)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let hist = hist
                .lines()
                .find(|l| l.starts_with("history:"))
                .unwrap_or("")
                .trim_start_matches("history: ")
                .to_string();
            if fill {
                write_full_state(&dir, n, interval_us, port_lvsmon());
                let (mut lvsmon, _) = start_lvsmon(&bins, &conf, &dir);
                let loaded = wait_log(&dir.join("lvsmon.log"), "msg=\"state loaded\"");
                assert!(
                    loaded.contains(&format!(" used={n} ")) && loaded.contains("damaged_history=0"),
                    "{loaded}"
                );
                watch(settle, &mut [&mut lvsmon]);
                let lr = proc_stat(lvsmon.pid()).rss_kb;
                lvsmon.stop(Duration::from_secs(60));
                writeln!(
                    o,
                    "   {h:<10} {n:>9} {:>9.1} MiB {:>12} {:>12.0} B   {hist}",
                    lr as f64 / 1024.0,
                    "-",
                    lr as f64 * 1024.0 / n as f64
                )
                .unwrap();
                pts.push((n, lr, 0));
                continue;
            }
            let (mut farm, _) = start_farm(
                &bins,
                n,
                &[port_lvsmon(), port_floor()],
                interval_us,
                settle.as_secs_f64() + 30.0,
                false,
                &dir,
            );
            let (mut lvsmon, _) = start_lvsmon(&bins, &conf, &dir);
            let mut floor = start_floor(&bins, n, interval_us, &dir);
            watch(settle, &mut [&mut lvsmon, &mut floor, &mut farm]);
            let (lr, fr) = (
                proc_stat(lvsmon.pid()).rss_kb,
                proc_stat(floor.pid()).rss_kb,
            );
            lvsmon.stop(Duration::from_secs(60));
            floor.stop(Duration::from_secs(10));
            let _ = finish_farm(farm);
            writeln!(
                o,
                "   {h:<10} {n:>9} {:>9.1} MiB {:>8.1} MiB {:>12.0} B   {hist}",
                lr as f64 / 1024.0,
                fr as f64 / 1024.0,
                lr as f64 * 1024.0 / n as f64
            )
            .unwrap();
            pts.push((n, lr, fr));
        }
        if let (Some(a), Some(b)) = (pts.first(), pts.last()) {
            if b.0 > a.0 {
                let dn = (b.0 - a.0) as f64;
                slopes.push((
                    h.clone(),
                    a.0,
                    b.0,
                    (b.1 as f64 - a.1 as f64) * 1024.0 / dn,
                    (b.2 as f64 - a.2 as f64) * 1024.0 / dn,
                ));
            }
        }
    }
    for (h, a, b, ls, fs) in slopes {
        // The targets: history off ≤ 256 B a real from 10,000 to 100,000 reals; the defaults
        // ≤ 2 KB a real from 1,000 to 10,000.
        let target = match (h.as_str(), a, b) {
            ("off", 10_000, 100_000) => format!("target ≤ 256 B {}", verdict(ls <= 256.0)),
            ("default", 1_000, 10_000) => format!("target ≤ 2048 B {}", verdict(ls <= 2048.0)),
            _ => "reported only".to_string(),
        };
        let floor = if fill {
            "-".to_string()
        } else {
            format!("{fs:.0} B/real")
        };
        writeln!(
            o,
            "   slope {a}→{b} reals, history {h}: lvsmon {ls:.0} B/real, floor {floor}   {target}"
        )
        .unwrap();
    }
    print!("{o}");
    if !args.flag("keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `--fill`: `dir/state/state` with a full history for each of the `n` reals of the config
/// `write_config` makes (the same keys): one result a minute for the default `hour` span up
/// to now, so that every minute and hour bucket and every raw slot of a real checked every
/// `interval_us` holds a result. One real's record, made by lvsmon's own `History` and saved
/// by its own `state::Saver`, written for every key. The file's records, read at startup,
/// are freed after the load; history off loads the same file, so the slopes compare alike.
fn write_full_state(dir: &Path, n: usize, interval_us: u64, port: u16) {
    use lvsmon::config::HistorySpec;
    use lvsmon::history::History;
    let spec = HistorySpec::default();
    let mut h = History::new(&spec, &[Duration::from_micros(interval_us)]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut t = now - spec.hour.as_secs();
    let mut k = 0u64;
    while t <= now {
        let reason = k
            .is_multiple_of(50)
            .then_some(lvsmon::plugins::Reason::Timeout);
        h.record(0, t, 200 + k * 37 % 5000, reason);
        t += 60;
        k += 1;
    }
    let mut rec = Vec::new();
    h.encode_real(0, &mut rec).expect("encode");
    let sd = dir.join("state");
    let _ = std::fs::remove_file(sd.join("state"));
    let mut s = lvsmon::state::Saver::new(&sd, rec.len()).expect("state directory");
    s.begin(now).expect("state.tmp");
    for v in 0..n.div_ceil(REALS_PER_VIRTUAL) {
        for i in v * REALS_PER_VIRTUAL..((v + 1) * REALS_PER_VIRTUAL).min(n) {
            let key = format!("tcp:10.0.{}.{}:80 {}:{port}", v / 256, v % 256, endpoint(i));
            s.record(key.as_bytes(), false, lvsmon::table::Hand::None, &mut |c| {
                c.write_all(&rec)
            })
            .expect("record");
        }
    }
    s.finish(true).expect("state file");
}

/// The first line of `log` that contains `what` (120 s at most).
fn wait_log(log: &Path, what: &str) -> String {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(what)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < until,
            "no {what} within 120 s; see {}",
            log.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

// ----- plan ---------------------------------------------------------------------------------

fn run_plan(args: &Args) {
    let n: usize = args.num("n", 100_000);
    let repeat: usize = args.num::<usize>("repeat", 5).max(1);
    let bins = Bins::find(args);
    let dir = workdir(args);
    let conf = dir.join("plan.conf");
    write_config(&conf, n, 10_000_000, "default", port_lvsmon());
    let bytes = std::fs::metadata(&conf).map_or(0, |m| m.len());
    let (mut parse, mut plan, mut build, mut wall) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeat {
        let t = Instant::now();
        let doc = lvsmon::config::parse::parse_file(&conf).expect("parse");
        let t1 = Instant::now();
        let p = lvsmon::config::plan::plan(&doc, None).expect("plan");
        let t2 = Instant::now();
        drop(doc);
        let opts = lvsmon::event_loop::Options {
            signals: false,
            ..Default::default()
        };
        let log = lvsmon::log::Log::new(lvsmon::log::Sink::Null, lvsmon::log::Level::Error);
        let d = lvsmon::event_loop::Daemon::new(
            p,
            Box::new(lvsmon::ipvs::DryRun::default()),
            log,
            &opts,
        )
        .expect("daemon");
        let t3 = Instant::now();
        drop(d);
        parse.push(t1 - t);
        plan.push(t2 - t1);
        build.push(t3 - t2);
        let t = Instant::now();
        let out = Command::new(&bins.lvsmon)
            .arg("--check-config")
            .arg("--file")
            .arg(&conf)
            .output()
            .expect("lvsmon --check-config");
        assert!(out.status.success(), "--check-config failed");
        wall.push(t.elapsed());
    }
    let show = |v: &mut Vec<Duration>| {
        v.sort();
        format!(
            "best {:>7.1} ms  median {:>7.1} ms",
            v[0].as_secs_f64() * 1e3,
            v[v.len() / 2].as_secs_f64() * 1e3
        )
    };
    let mut pp: Vec<Duration> = parse.iter().zip(&plan).map(|(a, b)| *a + *b).collect();
    pp.sort();
    let median_pp = pp[pp.len() / 2];
    println!(
        "\n== lvsmon config: {n} reals in {} virtuals, {bytes} bytes, {repeat} runs, load average {}",
        n.div_ceil(REALS_PER_VIRTUAL),
        loadavg()
    );
    println!("   parse (text to statements)        {}", show(&mut parse));
    println!("   plan (statements to Plan)         {}", show(&mut plan));
    println!(
        "   parse + plan                      {}   target ≤ 300 ms {}",
        show(&mut pp),
        verdict(median_pp.as_millis() <= 300)
    );
    println!("   Daemon::new (tables from the Plan) {}", show(&mut build));
    println!("   lvsmon --check-config, wall       {}   (process start, parse, plan, history sizing, exit)", show(&mut wall));
    if !args.flag("keep") {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    let args = Args::from_env(1);
    match cmd.as_str() {
        "load" => run_load(&args),
        "rss" => run_rss(&args),
        "plan" => run_plan(&args),
        // The user/kernel split of a profile recorded by `load --perf`.
        "split" => {
            let file = args.get("perf").expect("split --perf FILE");
            match perf_split(Path::new(file)) {
                Some(s) => println!(
                    "{file}: {} samples, user {:.2}%, of which at system call returns {:.2}%, user without them {:.2}%",
                    s.all,
                    100.0 * s.user_share(),
                    100.0 * s.user_at_return as f64 / s.all.max(1) as f64,
                    100.0 * s.user_share_net()
                ),
                None => println!("{file}: no samples"),
            }
        }
        _ => {
            eprintln!(
                "usage: bench_run load|rss|plan|split [--key value ...]; see bench/README.md"
            );
            std::process::exit(2);
        }
    }
}
