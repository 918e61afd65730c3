//! The backend farm for lvsmon's load benchmark: N loopback HTTP endpoints that answer
//! `200 OK` at once, each a listening socket of its own, served by single-threaded epoll
//! loops (not a thread per endpoint), recording when every connection was accepted so that
//! start lateness can be measured from the servers' side.
//!
//! ```text
//! bench_farm --n N --ports 18080,18081 --interval SECS [--rt] [--capacity C]
//!            [--max-seconds 3600]
//! ```
//!
//! Endpoint `i` listens on `127.1.0.1 + i` at every port given: one port per checker, so
//! lvsmon and the floor can run at the same time against the same addresses and still be
//! told apart.
//!
//! # Shards
//!
//! Every listener is a file descriptor, and a process may hold only `RLIMIT_NOFILE` of them.
//! Raising the hard limit needs `CAP_SYS_RESOURCE`, which the benchmark's machines do not
//! grant even to root (hard limit 20,000). So the farm is a coordinator that starts shards,
//! copies of itself (`--shard FIRST,COUNT`), each owning as many endpoints as its limit
//! allows (100,000 endpoints on two ports are 200,000 sockets: 11 shards of 9,500
//! endpoints), each serving them from one epoll loop in its main thread. A shard dies with
//! the coordinator (`PR_SET_PDEATHSIG`).
//!
//! # Protocol with the runner
//!
//! One line each, on stdout unless said otherwise:
//! - `ready listeners=L shards=S` once every socket of every shard listens;
//! - a line `mark` on stdin records a window boundary and answers `mark t_ns=T`;
//! - SIGTERM (or stdin closed, or `--max-seconds`) stops the shards, which hand their records
//!   over in files; the coordinator then prints one `window w=K port=P ...` line per port for
//!   each pair of marks (K = 0 for marks 0 and 1, 1 for marks 2 and 3, ...), and `done`, and
//!   exits 0.
//!
//! # Lateness from the farm's side
//!
//! Every request is stamped with the kernel's receive timestamp (`SO_TIMESTAMPNS`, set on
//! the listeners and inherited by accepted sockets), not with the time the farm got round to
//! it: on loopback the segment is received inside the checker's `send`, so the stamp does
//! not depend on how busy the farm is. It is the check's start as the server sees it: the
//! checker's connect plus one loop turn to send.
//!
//! Endpoint `i`'s checks are due at `T0 + interval * i / n + k * interval` (the grid of
//! lvsmon(8), DECISIONS, on which lvsmon and the floor both start). The farm does not know a checker's
//! `T0`, so it takes the earliest first request over all endpoints (`min_i(first_i -
//! offset_i)`): lateness is then measured against the checker's own best start, never
//! negative in the first round. Each request is matched to its nearest grid point. `jitter`
//! is the other view, free of any `T0`: the gap between an endpoint's consecutive requests
//! minus the interval.
//!
//! `--rt` runs the shards `SCHED_FIFO` (root only). Off by default: at 10,000 connections a
//! second a real-time farm preempts the checkers at every connection and starves them.

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{endpoint, errno, first_offset_us, mono_ns, quantile, Args, REPLY};

/// High bit of an epoll token: an accepted connection, not a listener. Either way the token
/// holds the listener's key in the high half (below this bit) and the fd in the low half.
const CONN: u64 = 1 << 63;
/// Descriptors a shard keeps free of listeners, for the connections it is serving (a busy
/// moment can hold hundreds).
const SPARE_FDS: u64 = 2000;
/// Most ports (checkers) one farm serves.
const MAX_PORTS: usize = 4;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// What one shard recorded: for every request, the listener's key (port index in the top
/// byte, endpoint below) and when the request arrived.
struct Record {
    keys: Vec<u32>,
    ns: Vec<u64>,
}

fn listen_on(addr: std::net::Ipv4Addr, port: u16) -> std::io::Result<i32> {
    // SAFETY: plain socket calls on a descriptor this function owns until it returns it.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            4,
        );
        // Receive timestamps; accepted sockets inherit the option.
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            4,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(addr).to_be(),
            },
            sin_zero: [0; 8],
        };
        if libc::bind(
            fd,
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
            || libc::listen(fd, 64) != 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

fn epoll_add(ep: i32, fd: i32, events: u32, data: u64) -> bool {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: valid epoll and socket descriptors, event struct we own.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0 }
}

/// Reads what the client sent; once the request's blank line has arrived, records when it
/// arrived (the kernel's receive timestamp), answers and closes. Returns true when the
/// connection is finished (answered or failed).
fn serve(fd: i32, key: u32, rec: &mut Record, real_minus_mono: i64) -> bool {
    let mut buf = [0u8; 2048];
    // Room for one cmsg of a timespec, aligned as cmsghdr wants.
    let mut cbuf = [0u64; 8];
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: a zeroed msghdr is valid; we point it at our iovec and control buffer.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        // SAFETY: reads into buffers we own, described by msg.
        let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
        if n > 0 {
            let got = &buf[..n as usize];
            if got.ends_with(b"\r\n\r\n") {
                rec.keys.push(key);
                rec.ns
                    .push(arrival(&msg, real_minus_mono).unwrap_or_else(mono_ns));
                // SAFETY: writes from a constant; MSG_NOSIGNAL: a reset peer is EPIPE.
                unsafe {
                    libc::send(fd, REPLY.as_ptr().cast(), REPLY.len(), libc::MSG_NOSIGNAL);
                    libc::close(fd);
                }
                return true;
            }
            continue;
        }
        if n < 0 && errno() == libc::EAGAIN {
            return false;
        }
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        // EOF or an error before a whole request.
        // SAFETY: closing a descriptor we own.
        unsafe { libc::close(fd) };
        return true;
    }
}

/// The `SCM_TIMESTAMPNS` of a received message (the kernel's `CLOCK_REALTIME` when the
/// request's segment arrived, which on loopback is inside the client's `send`), as
/// `CLOCK_MONOTONIC` nanoseconds.
fn arrival(msg: &libc::msghdr, real_minus_mono: i64) -> Option<u64> {
    // SAFETY: walks the control buffer the kernel filled, with the libc helpers.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let real = ts.tv_sec as i64 * 1_000_000_000 + ts.tv_nsec as i64;
                return Some((real - real_minus_mono) as u64);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

/// `CLOCK_REALTIME` minus `CLOCK_MONOTONIC`, ns (the best of a few reads).
fn real_minus_mono() -> i64 {
    let mut best = (i64::MAX, 0i64);
    for _ in 0..16 {
        let a = mono_ns() as i64;
        let r = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let b = mono_ns() as i64;
        if b - a < best.0 {
            best = (b - a, r - (a + b) / 2);
        }
    }
    best.1
}

/// A shard's loop: one epoll over its listeners, until SIGTERM.
fn worker(listeners: Vec<(i32, u32)>, rt: bool, capacity: usize) -> Record {
    if rt {
        let p = libc::sched_param { sched_priority: 10 };
        // SAFETY: sets this thread's own scheduling policy.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) } != 0 {
            eprintln!(
                "farm: SCHED_FIFO refused (errno {}); running as normal",
                errno()
            );
        }
    }
    // SAFETY: creates an epoll instance we own.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1: errno {}", errno());
    for &(fd, key) in &listeners {
        assert!(
            epoll_add(
                ep,
                fd,
                (libc::EPOLLIN | libc::EPOLLET) as u32,
                (key as u64) << 32 | fd as u32 as u64
            ),
            "epoll_ctl: errno {}",
            errno()
        );
    }
    let mut rec = Record {
        keys: Vec::with_capacity(capacity),
        ns: Vec::with_capacity(capacity),
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let offset = real_minus_mono();
    let (mut accept_errors, mut last_error) = (0u64, 0);
    while !STOP.load(Ordering::Relaxed) {
        // SAFETY: the events buffer is ours and its length is passed.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
        for ev in &events[..n.max(0) as usize] {
            let data = ev.u64;
            if data & CONN != 0 {
                let (key, fd) = (((data & !CONN) >> 32) as u32, data as u32 as i32);
                serve(fd, key, &mut rec, offset);
                continue;
            }
            let (key, lfd) = ((data >> 32) as u32, data as u32 as i32);
            loop {
                // SAFETY: accept on our listener; no peer address wanted.
                let c = unsafe {
                    libc::accept4(
                        lfd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                    )
                };
                if c < 0 {
                    let e = errno();
                    if e != libc::EAGAIN {
                        // Anything else (EMFILE above all) leaves connections queued
                        // until the listener's next connection: count it, and say so.
                        accept_errors += 1;
                        last_error = e;
                    }
                    break;
                }
                if !serve(c, key, &mut rec, offset) {
                    let evs = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                    if !epoll_add(ep, c, evs, CONN | (key as u64) << 32 | c as u32 as u64) {
                        // SAFETY: closing a descriptor we own.
                        unsafe { libc::close(c) };
                    }
                }
            }
        }
    }
    if accept_errors > 0 {
        eprintln!("farm shard: {accept_errors} accept errors (last errno {last_error})");
    }
    // SAFETY: closing descriptors we own.
    unsafe {
        for &(fd, _) in &listeners {
            libc::close(fd);
        }
        libc::close(ep);
    }
    rec
}

/// Lateness and jitter of one port's accepts within `[from, to)`.
fn window(
    recs: &[(u32, u64)],
    port: usize,
    n: usize,
    interval_ns: u64,
    from: u64,
    to: u64,
) -> String {
    let interval_us = interval_ns / 1000;
    let off = |i: usize| first_offset_us(i, n, interval_us) * 1000;
    // The checker's time zero: its earliest first start over all endpoints.
    let mut first = vec![u64::MAX; n];
    for &(key, t) in recs {
        if (key >> 24) as usize == port {
            let i = (key & 0xff_ffff) as usize;
            first[i] = first[i].min(t);
        }
    }
    let base = first
        .iter()
        .enumerate()
        .filter(|(_, &t)| t != u64::MAX)
        .map(|(i, &t)| t as i128 - off(i) as i128)
        .min();
    let Some(base) = base else {
        return format!("port={port} accepts=0");
    };
    let (mut late, mut jitter) = (Vec::new(), Vec::new());
    let mut last = vec![0u64; n];
    let mut seen = 0usize;
    for &(key, t) in recs {
        if (key >> 24) as usize != port {
            continue;
        }
        let i = (key & 0xff_ffff) as usize;
        if t >= from && t < to {
            let x = t as i128 - base - off(i) as i128;
            let k = (x + interval_ns as i128 / 2).div_euclid(interval_ns as i128);
            late.push(((x - k * interval_ns as i128) / 1000) as i64);
            if last[i] >= from {
                let gap = (t - last[i]) as i64 - interval_ns as i64;
                jitter.push(gap.abs() / 1000);
            }
            seen += 1;
        }
        last[i] = t;
    }
    // Grid points inside the window, per endpoint, from the same time zero.
    let mut scheduled = 0u64;
    for i in 0..n {
        let g0 = base + off(i) as i128;
        let count_before = |t: u64| -> i128 {
            // Grid points g0 + k*I < t, k >= 0.
            let d = t as i128 - g0;
            if d <= 0 {
                0
            } else {
                (d + interval_ns as i128 - 1) / interval_ns as i128
            }
        };
        scheduled += (count_before(to) - count_before(from)).max(0) as u64;
    }
    late.sort_unstable();
    jitter.sort_unstable();
    format!(
        "port={port} accepts={seen} scheduled={scheduled} late_p50_us={} late_p99_us={} late_max_us={} jitter_p50_us={} jitter_p99_us={} jitter_max_us={}",
        quantile(&late, 0.5),
        quantile(&late, 0.99),
        late.last().copied().unwrap_or(0),
        quantile(&jitter, 0.5),
        quantile(&jitter, 0.99),
        jitter.last().copied().unwrap_or(0),
    )
}

/// A shard: listens for endpoints `first..first + count` on every port, serves them until
/// SIGTERM, then writes its records (12 bytes each: key, time) to `records`.
fn shard(args: &Args, ports: &[u16], first: usize, count: usize) {
    // SAFETY: asks for SIGTERM when the coordinator dies, so no shard outlives it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let records = PathBuf::from(args.get("records").expect("--records"));
    let capacity: usize = args.num("capacity", count * ports.len() * 8);
    // Listeners, plus room for the connections being served.
    let need = (count * ports.len()) as u64 + SPARE_FDS / 2;
    if let Err(e) = common::raise_nofile(need) {
        eprintln!("farm shard: cannot raise RLIMIT_NOFILE to {need}: {e}");
        std::process::exit(1);
    }
    let mut listeners = Vec::with_capacity(count * ports.len());
    for (p, &port) in ports.iter().enumerate() {
        for i in first..first + count {
            let fd = listen_on(endpoint(i), port).unwrap_or_else(|e| {
                eprintln!("farm shard: listen {}:{port}: {e}", endpoint(i));
                std::process::exit(1)
            });
            listeners.push((fd, ((p as u32) << 24) | i as u32));
        }
    }
    println!("ready listeners={}", listeners.len());
    let rec = worker(listeners, args.flag("rt"), capacity);
    let mut out = Vec::with_capacity(rec.keys.len() * 12);
    for (k, t) in rec.keys.iter().zip(&rec.ns) {
        out.extend_from_slice(&k.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
    }
    std::fs::write(&records, out).expect("write records");
}

/// Reads a shard's records file.
fn read_records(path: &Path, into: &mut Vec<(u32, u64)>) {
    let b = std::fs::read(path).unwrap_or_default();
    for c in b.chunks_exact(12) {
        let k = u32::from_le_bytes(c[..4].try_into().unwrap());
        let t = u64::from_le_bytes(c[4..].try_into().unwrap());
        into.push((k, t));
    }
}

/// Endpoints one shard may own: what its descriptor limit allows for `ports` listeners each.
fn per_shard(ports: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit on a struct we own.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    let fds = (lim.rlim_max.min(1 << 20) as usize)
        .saturating_sub(SPARE_FDS as usize)
        .max(1000);
    fds / ports
}

fn main() {
    let args = Args::from_env(0);
    let n: usize = args.num("n", 1000);
    let ports: Vec<u16> = args
        .get("ports")
        .unwrap_or("18080")
        .split(',')
        .map(|p| p.parse().expect("--ports: comma-separated port numbers"))
        .collect();
    assert!(
        !ports.is_empty() && ports.len() <= MAX_PORTS,
        "1 to {MAX_PORTS} ports"
    );
    assert!(n < 1 << 24, "--n must be below 16M");
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as *const () as usize;
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
    }
    if let Some(range) = args.get("shard") {
        let (a, c) = range.split_once(',').expect("--shard FIRST,COUNT");
        shard(&args, &ports, a.parse().unwrap(), c.parse().unwrap());
        return;
    }

    let interval_ns = args.secs_us("interval", 1.0) * 1000;
    let max_s: u64 = args.num("max-seconds", 3600);
    let capacity: usize = args.num("capacity", n * ports.len() * 8);
    let per = per_shard(ports.len()).min(n.max(1));
    let shards = n.div_ceil(per);
    let dir = std::env::temp_dir().join(format!("lvsmon-farm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("records directory");
    let me = std::env::current_exe().expect("current_exe");
    let mut children: Vec<(Child, PathBuf)> = Vec::new();
    let stop_all = |children: &mut Vec<(Child, PathBuf)>| {
        for (c, _) in children.iter() {
            // SAFETY: signals our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let until = std::time::Instant::now() + Duration::from_secs(60);
        for (c, _) in children.iter_mut() {
            while matches!(c.try_wait(), Ok(None)) && std::time::Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    };
    for s in 0..shards {
        let (first, count) = (s * per, per.min(n - s * per));
        let records = dir.join(format!("shard-{s}.bin"));
        let mut cmd = Command::new(&me);
        cmd.arg("--shard")
            .arg(format!("{first},{count}"))
            .arg("--ports")
            .arg(args.get("ports").unwrap_or("18080"))
            .arg("--records")
            .arg(&records)
            .arg("--capacity")
            .arg((capacity / shards + 1024).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if args.flag("rt") {
            cmd.arg("--rt");
        }
        let mut child = cmd.spawn().expect("start a farm shard");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().expect("shard stdout"));
        // The shard's one line; its stdout then stays open and silent.
        if out.read_line(&mut line).is_err() || !line.starts_with("ready") {
            eprintln!("farm: shard {s} did not start");
            children.push((child, records));
            stop_all(&mut children);
            let _ = std::fs::remove_dir_all(&dir);
            std::process::exit(1);
        }
        thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        children.push((child, records));
    }
    let out = std::io::stdout();
    writeln!(
        out.lock(),
        "ready listeners={} shards={shards}",
        n * ports.len()
    )
    .unwrap();

    // Marks from stdin until told to stop; the reading thread is left blocked in read(2)
    // when the farm exits, which ends it.
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) if l.trim() == "mark" => {
                    if tx.send(mono_ns()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // stdin closed: stop.
        STOP.store(true, Ordering::Relaxed);
    });
    let started = mono_ns();
    let mut marks = Vec::new();
    while !STOP.load(Ordering::Relaxed) {
        if let Ok(t) = rx.recv_timeout(Duration::from_millis(50)) {
            marks.push(t);
            writeln!(out.lock(), "mark t_ns={t}").unwrap();
        }
        if mono_ns() - started > max_s * 1_000_000_000 {
            eprintln!("farm: --max-seconds {max_s} reached, stopping");
            STOP.store(true, Ordering::Relaxed);
        }
        for (c, _) in children.iter_mut() {
            if !matches!(c.try_wait(), Ok(None)) {
                eprintln!("farm: a shard exited early");
                STOP.store(true, Ordering::Relaxed);
            }
        }
    }
    let end = mono_ns();
    stop_all(&mut children);
    let mut recs: Vec<(u32, u64)> = Vec::with_capacity(capacity);
    for (_, path) in &children {
        read_records(path, &mut recs);
    }
    let _ = std::fs::remove_dir_all(&dir);
    recs.sort_unstable_by_key(|&(_, t)| t);
    let pairs: Vec<(u64, u64)> = if marks.len() >= 2 {
        marks.chunks_exact(2).map(|c| (c[0], c[1])).collect()
    } else {
        vec![(0, end)]
    };
    let mut o = out.lock();
    for (w, &(from, to)) in pairs.iter().enumerate() {
        for p in 0..ports.len() {
            writeln!(
                o,
                "window w={w} seconds={:.3} {}",
                (to - from) as f64 / 1e9,
                window(&recs, p, n, interval_ns, from, to)
            )
            .unwrap();
        }
    }
    writeln!(o, "done accepts={}", recs.len()).unwrap();
}
