//! The daemon on a manual clock (`Options::clock`): its checks start and time out when the
//! test's clock says so, to the microsecond, whatever real time does meanwhile.

use std::net::TcpListener;
use std::time::Duration;

use lvsmon::clock::{Clock, Time};
use lvsmon::event_loop::{Daemon, Options};
use lvsmon::ipvs::DryRun;
use lvsmon::log::{Level, Log, Sink};
use lvsmon::monitor::health::State;
use lvsmon::plugins::Reason;

/// Moves the clock on to `to` in steps of at most 100 ms (a loop that keeps up: no stall),
/// one turn at each, then turns at `to` until the sockets have had their say (the kernel's
/// handshakes take real time, however little).
fn step_to(d: &mut Daemon, clock: &Clock, to: u64) {
    while clock.now().0 < to {
        clock.set(Time((clock.now().0 + 100_000).min(to)));
        d.turn(Some(Duration::ZERO)).unwrap();
    }
    for _ in 0..5 {
        d.turn(Some(Duration::from_millis(10))).unwrap();
    }
}

/// Turns until `l` has the check's connection (bounded by 5 s of real time), and accepts it
/// (a banner check waits for bytes all the same), then a few turns more so the loop reads
/// the handshake's end: the check waits for its reply from then on.
fn connected(d: &mut Daemon, l: &TcpListener) -> std::net::TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < end, "no connection");
                d.turn(Some(Duration::from_millis(10))).unwrap();
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    for _ in 0..3 {
        d.turn(Some(Duration::from_millis(10))).unwrap();
    }
    s
}

/// Two checks 2.5 s apart on their 5 s grid, against listeners that never accept (the
/// kernel completes the handshakes; no banner ever comes): the first starts at 0 and fails
/// with `recv-timeout` at exactly 1 s on the manual clock, not a microsecond before; the
/// second starts at exactly 2.5 s. The test takes a fraction of a second of real time: on
/// the real clock neither would have happened yet (a daemon that kept to its own clock fails
/// at 1 s: no verdict yet).
#[test]
fn the_loop_starts_and_times_out_checks_on_the_clock_it_is_given() {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = std::env::temp_dir().join(format!("lvsmon-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lvsmon.conf");
    std::fs::write(
        &path,
        format!(
            "interval 5s\ntimeout 1s\nfall 1\n\
             virtual tcp 127.1.0.1:80 {{\n  check banner --expect x\n  real {}\n}}\n\
             virtual tcp 127.1.0.2:80 {{\n  check banner --expect x\n  real {}\n}}\n",
            a.local_addr().unwrap(),
            b.local_addr().unwrap()
        ),
    )
    .unwrap();
    let plan = lvsmon::config::load(&path, None).unwrap();
    let clock = Clock::manual(Time::ZERO);
    let opts = Options {
        signals: false,
        clock: Some(clock),
        ..Options::default()
    };
    let log = Log::new(Sink::Null, Level::Error);
    let mut d = Daemon::new(plan, Box::new(DryRun::default()), log, &opts).unwrap();
    d.startup();
    step_to(&mut d, &clock, 0);
    assert_eq!((d.stats().started, d.stats().checks), (1, 0));
    let _server = connected(&mut d, &a);

    step_to(&mut d, &clock, 999_999);
    assert_eq!((d.stats().started, d.stats().checks), (1, 0));
    assert_eq!(d.real_state(0).0, State::Unknown);

    step_to(&mut d, &clock, 1_000_000);
    let st = d.stats();
    assert_eq!((st.started, st.checks), (1, 1));
    assert_eq!(st.failures[Reason::RecvTimeout as usize], 1);
    assert_eq!(d.real_state(0), (State::Down, 1, 1));

    step_to(&mut d, &clock, 2_499_999);
    assert_eq!(d.stats().started, 1);
    step_to(&mut d, &clock, 2_500_000);
    assert_eq!(d.stats().started, 2);
    // No stall was seen in the steps, nor a check missed or deferred.
    let st = d.stats();
    assert_eq!(
        (st.missed_starts, st.local_errors, st.loop_stalls),
        (0, 0, 0)
    );
    assert_eq!(
        st.max_lateness_us, 0,
        "every check started at its grid point"
    );
    let _ = std::fs::remove_dir_all(dir);
}
