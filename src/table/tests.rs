//! The policy as a unit: a table built from a configuration's text, fed made-up verdicts at
//! made-up times, its IPVS operations collected as a recording IPVS would see them, and its
//! events as the loop would log them. No socket, no clock, no sleep.

use super::*;
use crate::ipvs::wire::{DestInfo, ServiceInfo};
use crate::plugins::Reason;

/// One event as recorded: kind, real, quorum counts, failures.
type Seen = (EventKind, Option<SocketAddr>, Option<(u32, u32)>, u64);

/// What the table told the loop besides IPVS operations.
#[derive(Default)]
struct Rec {
    /// (kind, real, quorum counts, failures) of each event, in order.
    events: Vec<Seen>,
    /// (virtual, real, what) of each drift repaired.
    drifts: Vec<(ServiceKey, Option<SocketAddr>, String)>,
    resyncs: u32,
    /// (real, weight, what set it) of each weight change of an UP real.
    weights: Vec<(SocketAddr, u32, String)>,
}

impl Out for Rec {
    fn event(&mut self, ev: &Event, _notify: u32, quorum: Option<(u32, u32)>) {
        self.events.push((ev.kind, ev.real, quorum, ev.failures));
    }

    fn drift(&mut self, key: ServiceKey, real: Option<SocketAddr>, what: &str) {
        self.drifts.push((key, real, what.to_string()));
    }

    fn resynced(&mut self) {
        self.resyncs += 1;
    }

    fn weight(&mut self, _key: ServiceKey, real: SocketAddr, weight: u32, why: &Why) {
        self.weights.push((real, weight, why.to_string()));
    }
}

impl Rec {
    fn kinds(&mut self) -> Vec<EventKind> {
        self.events.drain(..).map(|e| e.0).collect()
    }
}

fn plan_of(text: &str) -> Plan {
    let doc = crate::config::parse::parse_bytes(std::path::Path::new("t.conf"), text.as_bytes())
        .expect("parses");
    crate::config::plan::plan(&doc, None).expect("plans")
}

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn tcp(s: &str) -> ServiceKey {
    ServiceKey::Inet(crate::config::Proto::Tcp, a(s))
}

/// Every operation the table has queued, as the IPVS side would receive them.
fn ops(t: &mut Table) -> Vec<Op> {
    let mut v = Vec::new();
    while let Some(op) = t.next_op() {
        v.push(op);
    }
    v
}

/// A table adopted against an empty kernel table (`--dry-run`'s start), its start-up
/// operations taken.
fn started(text: &str) -> (Table, Vec<Op>) {
    let mut t = Table::new(&plan_of(text), Time::ZERO);
    t.adopt_at_start(|_| None, |_, _| None);
    let o = ops(&mut t);
    (t, o)
}

const MS: u64 = 1_000;
const S: u64 = 1_000_000;

fn fail() -> Verdict {
    Verdict::Fail(Reason::ConnectRefused, Detail::EMPTY)
}

fn dest(addr: &str, weight: u32) -> Dest {
    Dest {
        addr: a(addr),
        weight,
        forward: Forward::Route,
        extra: DestExtra::default(),
    }
}

const V: &str = "192.0.2.1:80";
const R1: &str = "198.51.100.1:80";
const R2: &str = "198.51.100.2:80";

/// Two reals behind one virtual, with `extra` lines in the virtual service.
fn conf(extra: &str) -> String {
    format!("virtual tcp {V} {{\n{extra}\n  check tcp\n  real {R1} weight 7\n  real {R2} weight 4\n}}\n")
}

#[test]
fn adoption_at_start_creates_what_is_missing_and_keeps_what_is_there() {
    // An empty table: the service is added, the reals at weight 0 until checked.
    let (t, o) = started(&conf(""));
    let svc = t.virtuals[0].service;
    assert_eq!(
        o,
        vec![
            Op::AddService(svc),
            Op::AddDest(tcp(V), dest(R1, 0)),
            Op::AddDest(tcp(V), dest(R2, 0)),
        ]
    );
    // `on-down remove`: a real not yet checked stays out.
    let (_, o) = started(&conf("  on-down remove"));
    assert_eq!(o, vec![Op::AddService(svc)]);

    // A table that has the service with another scheduler, and R1 at weight 3: the scheduler
    // is put right, R1 keeps its weight until its first check, R2 comes in at 0.
    let mut t = Table::new(&plan_of(&conf("  scheduler rr")), Time::ZERO);
    let want = t.virtuals[0].service;
    let have = Service::new(tcp(V), "wlc", None);
    t.adopt_at_start(
        |k| (k == tcp(V)).then_some(have),
        |k, d| (k == tcp(V) && d == a(R1)).then_some(3),
    );
    assert_eq!(
        ops(&mut t),
        vec![Op::EditService(want), Op::AddDest(tcp(V), dest(R2, 0))]
    );
    assert_eq!(t.reals[0].table(), Some(3));
    // Its first pass gives it its own weight.
    let mut rec = Rec::default();
    t.record(RealId(0), Verdict::Pass, 10, Time(S), &mut rec);
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 7))]);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
}

#[test]
fn fall_and_rise_are_edge_triggered() {
    let (mut t, _) = started(&format!(
        "fall 3\nrise 2\nvirtual tcp {V} {{\n  check tcp\n  real {R1} weight 7\n}}\n"
    ));
    let mut rec = Rec::default();
    let r = RealId(0);
    let mut now = 0;
    let mut step = |t: &mut Table, v: Verdict, rec: &mut Rec| {
        now += 200 * MS;
        t.record(r, v, 5, Time(now), rec);
    };
    step(&mut t, Verdict::Pass, &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 7))]);
    // Two failures: nothing; the third: DOWN, with the failures counted, weight 0.
    for _ in 0..2 {
        step(&mut t, fail(), &mut rec);
        assert!(rec.events.is_empty() && ops(&mut t).is_empty());
        assert!(
            t.failing(r),
            "a failing real is checked at the retry interval"
        );
    }
    step(&mut t, fail(), &mut rec);
    // Its only real DOWN: the default quorum of 1 is lost.
    assert_eq!(
        rec.events.drain(..).collect::<Vec<_>>(),
        vec![
            (EventKind::Down, Some(a(R1)), None, 3),
            (EventKind::QuorumLost, None, Some((0, 1)), 0),
        ]
    );
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 0))]);
    assert_eq!(t.reals[0].last_reason, Some(Reason::ConnectRefused));
    // Failing on: no second event, no operation.
    for _ in 0..5 {
        step(&mut t, fail(), &mut rec);
    }
    assert!(rec.events.is_empty() && ops(&mut t).is_empty());
    // One pass is not enough (rise 2); a failure in between starts the count again.
    step(&mut t, Verdict::Pass, &mut rec);
    step(&mut t, fail(), &mut rec);
    step(&mut t, Verdict::Pass, &mut rec);
    assert!(rec.events.is_empty());
    step(&mut t, Verdict::Pass, &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up, EventKind::QuorumRestored]);
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 7))]);
    assert!(!t.failing(r));
    let real = &t.reals[0];
    assert_eq!((real.checks, real.failures, real.transitions), (13, 9, 3));
}

#[test]
fn fall_within_a_window_and_down_after() {
    let (mut t, _) = started(&format!(
        "rise 1\nvirtual tcp {V} {{\n  check tcp\n  real {R1} {{\n    fall 3 within 2s\n  }}\n  real {R2} {{\n    fall 1000\n    down-after 1s\n  }}\n}}\n"
    ));
    let mut rec = Rec::default();
    let (w, d) = (RealId(0), RealId(1));
    t.record(w, Verdict::Pass, 1, Time(0), &mut rec);
    t.record(d, Verdict::Pass, 1, Time(0), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up, EventKind::Up]);
    // Failures 1.5 s apart: never three inside 2 s, never DOWN, however many.
    for i in 1..=6 {
        t.record(w, fail(), 1, Time(i * 1_500 * MS), &mut rec);
    }
    assert!(rec.events.is_empty(), "{:?}", rec.events);
    // Three inside the window: DOWN at the third.
    let at = 20 * S;
    t.record(w, fail(), 1, Time(at), &mut rec);
    t.record(w, fail(), 1, Time(at + 500 * MS), &mut rec);
    assert!(rec.events.is_empty());
    t.record(w, fail(), 1, Time(at + S), &mut rec);
    assert_eq!(rec.events[0].0, EventKind::Down);
    assert_eq!(rec.events[0].1, Some(a(R1)));
    rec.events.clear();

    // down-after 1s: failing since the last pass for a second is enough, far below fall.
    let t0 = 40 * S;
    t.record(d, Verdict::Pass, 1, Time(t0), &mut rec);
    for i in 1..=4 {
        t.record(d, fail(), 1, Time(t0 + i * 200 * MS), &mut rec);
    }
    assert!(rec.events.is_empty(), "down-after fired early");
    t.record(d, fail(), 1, Time(t0 + S + 1), &mut rec);
    // Both reals DOWN: the default quorum of 1 is lost too.
    assert_eq!(
        rec.events.drain(..).collect::<Vec<_>>(),
        vec![
            (EventKind::Down, Some(a(R2)), None, 5),
            (EventKind::QuorumLost, None, Some((0, 1)), 0),
        ]
    );
}

#[test]
fn quorum_and_sorry_server_under_on_down_remove() {
    let sorry = "127.0.0.1:8080";
    let (mut t, o) = started(&conf(&format!(
        "  on-down remove\n  quorum 2\n  sorry {sorry}"
    )));
    assert_eq!(o.len(), 1, "only the service: {o:?}");
    let mut rec = Rec::default();
    let (r1, r2) = (RealId(0), RealId(1));
    // Nothing about quorum until every real has had a result.
    t.record(r1, Verdict::Pass, 1, Time(S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
    assert_eq!(ops(&mut t), vec![Op::AddDest(tcp(V), dest(R1, 7))]);
    t.record(r2, Verdict::Pass, 1, Time(S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
    assert_eq!(ops(&mut t), vec![Op::AddDest(tcp(V), dest(R2, 4))]);
    // R2 DOWN (fall 3): removed; quorum lost with 1 of 2; the sorry server comes in.
    for i in 0..3 {
        t.record(r2, fail(), 1, Time(2 * S + i), &mut rec);
    }
    assert_eq!(
        rec.events.drain(..).collect::<Vec<_>>(),
        vec![
            (EventKind::Down, Some(a(R2)), None, 3),
            (EventKind::QuorumLost, None, Some((1, 2)), 0),
        ]
    );
    let sorry_dest = Dest {
        addr: a(sorry),
        weight: 1,
        forward: Forward::Masq,
        extra: crate::ipvs::DestExtra::default(),
    };
    // `--mode replace` (the default): R1, still UP, goes to weight 0 while the sorry server
    // serves.
    assert_eq!(
        ops(&mut t),
        vec![
            Op::DelDest(tcp(V), a(R2)),
            Op::AddDest(tcp(V), sorry_dest),
            Op::EditDest(tcp(V), dest(R1, 0)),
        ]
    );
    // Back UP: quorum restored, the sorry server leaves.
    t.record(r2, Verdict::Pass, 1, Time(3 * S), &mut rec);
    t.record(r2, Verdict::Pass, 1, Time(3 * S + 1), &mut rec);
    assert_eq!(
        rec.events.drain(..).collect::<Vec<_>>(),
        vec![
            (EventKind::Up, Some(a(R2)), None, 0),
            (EventKind::QuorumRestored, None, Some((2, 2)), 0),
        ]
    );
    assert_eq!(
        ops(&mut t),
        vec![
            Op::AddDest(tcp(V), dest(R2, 4)),
            Op::DelDest(tcp(V), a(sorry)),
            Op::EditDest(tcp(V), dest(R1, 7)),
        ]
    );
}

#[test]
fn drain_under_on_down_remove() {
    let (mut t, _) = started(&conf("  on-down remove\n  quorum 2"));
    let mut rec = Rec::default();
    let (r1, r2) = (RealId(0), RealId(1));
    t.record(r1, Verdict::Pass, 1, Time(S), &mut rec);
    t.record(r2, Verdict::Pass, 1, Time(S), &mut rec);
    rec.events.clear();
    ops(&mut t);
    // Drained while UP: weight 0 (connections finish), no longer counted UP: quorum lost.
    assert!(t.set_drained(r1, true, Time(2 * S), &mut rec));
    assert!(
        !t.set_drained(r1, true, Time(2 * S), &mut rec),
        "drained twice"
    );
    assert_eq!(
        rec.events.drain(..).collect::<Vec<_>>(),
        vec![
            (EventKind::Drained, Some(a(R1)), None, 0),
            (EventKind::QuorumLost, None, Some((1, 2)), 0),
        ]
    );
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 0))]);
    // DOWN while drained: removed (on-down remove), no quorum change (it was not counted).
    for i in 0..3 {
        t.record(r1, fail(), 1, Time(3 * S + i), &mut rec);
    }
    assert_eq!(rec.kinds(), vec![EventKind::Down]);
    assert_eq!(ops(&mut t), vec![Op::DelDest(tcp(V), a(R1))]);
    // UP again while drained: back in the table at weight 0 only.
    t.record(r1, Verdict::Pass, 1, Time(4 * S), &mut rec);
    t.record(r1, Verdict::Pass, 1, Time(4 * S + 1), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
    assert_eq!(ops(&mut t), vec![Op::AddDest(tcp(V), dest(R1, 0))]);
    // Undrained: its weight, and the quorum back.
    assert!(t.set_drained(r1, false, Time(5 * S), &mut rec));
    assert_eq!(
        rec.kinds(),
        vec![EventKind::Undrained, EventKind::QuorumRestored]
    );
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 7))]);
}

/// A read-back: the table's entries as the IPVS side would report them.
fn read_back(t: &mut Table, now: u64, rec: &mut Rec, svc: Option<Service>, dests: &[(&str, u32)]) {
    let mut started = false;
    t.poll_read_back(Time(now), false, || {
        started = true;
        true
    });
    assert!(started, "a read-back is due");
    if let Some(service) = svc {
        let info = ServiceInfo {
            key: service.key,
            af: libc::AF_INET as u16,
            service,
            flags: 0,
        };
        t.read_back(IpvsEvent::Service(info), Time(now), rec);
        for &(d, w) in dests {
            let info = DestInfo {
                addr: a(d),
                weight: w,
                fwd: 0,
                extra: Default::default(),
            };
            t.read_back(IpvsEvent::Dest(service.key, info), Time(now), rec);
        }
    }
    t.read_back(IpvsEvent::DumpDone { ok: true }, Time(now), rec);
}

#[test]
fn a_resync_repairs_drift() {
    let (mut t, _) = started(&format!("resync 10s\n{}", conf("")));
    let svc = t.virtuals[0].service;
    let mut rec = Rec::default();
    t.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    ops(&mut t);
    assert_eq!(t.next_resync(false), Some(Time(10 * S)));
    assert_eq!(t.next_resync(true), None, "--dry-run never reads back");
    // Not due yet: no read-back.
    t.poll_read_back(Time(5 * S), false, || panic!("read-back before it is due"));
    // In step: nothing to repair.
    read_back(&mut t, 10 * S, &mut rec, Some(svc), &[(R1, 7), (R2, 0)]);
    assert_eq!(rec.resyncs, 1);
    assert!(rec.drifts.is_empty() && ops(&mut t).is_empty());
    assert_eq!(t.next_resync(false), Some(Time(20 * S)));
    // R1 re-weighted by hand, R2 deleted by hand: both put back.
    read_back(&mut t, 20 * S, &mut rec, Some(svc), &[(R1, 2)]);
    let what: Vec<_> = rec.drifts.drain(..).map(|d| (d.1, d.2)).collect();
    assert_eq!(
        what,
        vec![
            (Some(a(R1)), "weight changed".to_string()),
            (Some(a(R2)), "destination missing".to_string()),
        ]
    );
    assert_eq!(
        ops(&mut t),
        vec![
            Op::EditDest(tcp(V), dest(R1, 7)),
            Op::AddDest(tcp(V), dest(R2, 0)),
        ]
    );
    // The service flushed: added again, and its destinations as decided.
    read_back(&mut t, 30 * S, &mut rec, None, &[]);
    assert_eq!(rec.drifts[0].2, "service missing");
    assert_eq!(
        ops(&mut t),
        vec![
            Op::AddService(svc),
            Op::AddDest(tcp(V), dest(R1, 7)),
            Op::AddDest(tcp(V), dest(R2, 0)),
        ]
    );
    // A failed operation brings the next read-back forward.
    t.op_done(
        Op::AddService(svc),
        OpResult::Error(libc::EINVAL),
        Time(31 * S),
    );
    assert_eq!(t.next_resync(false), Some(Time(33 * S)));
    // An edited destination deleted by hand meanwhile is added again at once.
    t.op_done(
        Op::EditDest(tcp(V), dest(R1, 7)),
        OpResult::Error(libc::ENOENT),
        Time(32 * S),
    );
    assert_eq!(ops(&mut t), vec![Op::AddDest(tcp(V), dest(R1, 7))]);
}

#[test]
fn a_reload_keeps_adds_and_removes_reals() {
    const R3: &str = "198.51.100.3:80";
    const V2: &str = "192.0.2.2:80";
    let (mut old, _) = started(&format!(
        "virtual tcp {V} {{\n  check tcp\n  real {R1} weight 7\n  real {R2} weight 4\n}}\nvirtual tcp {V2} {{\n  check tcp\n  real {R1}\n}}\n"
    ));
    let mut rec = Rec::default();
    old.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    for i in 0..3 {
        old.record(RealId(1), fail(), 1, Time(S + i), &mut rec);
    }
    old.set_drained(RealId(0), true, Time(2 * S), &mut rec);
    ops(&mut old);
    rec.events.clear();

    // The new file: R1 kept with a new weight, R2 gone, R3 new, V2 gone.
    let plan = plan_of(&format!(
        "virtual tcp {V} {{\n  check tcp\n  real {R3} weight 2\n  real {R1} weight 9\n}}\n"
    ));
    let mut new = Table::new(&plan, Time(3 * S));
    let mut ch = Changes::default();
    let mut kept = Vec::new();
    let cmds: &[Command] = &[];
    new.take_over(
        &mut old,
        Time(3 * S),
        false,
        (cmds, cmds),
        &mut ch,
        |r, or| kept.push((r, or)),
        &mut rec,
    );
    assert_eq!(
        (ch.kept, ch.changed, ch.added, ch.removed),
        (1, 1, 1, 2),
        "{ch:?}"
    );
    assert_eq!((ch.virtuals_added, ch.virtuals_removed), (0, 1));
    // R1 is the new table's second real, the old one's first: its state came along.
    assert_eq!(kept, vec![(1, 0)]);
    let r1 = &new.reals[1];
    assert_eq!(r1.health.state, State::Up);
    assert!(r1.drained && r1.adopted);
    assert_eq!(r1.table(), Some(0), "still drained: weight 0");
    // Its counters go on from where they were (one check; UP, then drained).
    assert_eq!((r1.checks, r1.failures, r1.transitions), (1, 0, 2));
    // Only the differences: R2 and V2 leave; R3 waits for a read-back to be adopted.
    assert_eq!(
        ops(&mut new),
        vec![Op::DelService(tcp(V2)), Op::DelDest(tcp(V), a(R2)),]
    );
    assert_eq!(ch.ops, 2);
    assert!(new.adopt_pending());
    assert!(!new.reals[0].adopted);
    assert!(rec.events.is_empty());
    // The read-back finds R3 absent: it comes in at weight 0, as at startup.
    let svc = new.virtuals[0].service;
    read_back(&mut new, 4 * S, &mut rec, Some(svc), &[(R1, 0)]);
    assert!(!new.adopt_pending());
    assert!(rec.drifts.is_empty(), "{:?}", rec.drifts);
    assert_eq!(ops(&mut new), vec![Op::AddDest(tcp(V), dest(R3, 0))]);
    // Undrained: R1's new weight.
    new.set_drained(RealId(1), false, Time(5 * S), &mut rec);
    assert_eq!(ops(&mut new), vec![Op::EditDest(tcp(V), dest(R1, 9))]);
}

#[test]
fn a_read_back_does_not_undo_what_changed_while_it_ran() {
    let (mut t, _) = started(&format!("resync 10s\n{}", conf("")));
    let svc = t.virtuals[0].service;
    let mut rec = Rec::default();
    // The read-back starts, and sees R1 at weight 0, as it was.
    t.poll_read_back(Time(10 * S), false, || true);
    let info = ServiceInfo {
        key: svc.key,
        af: libc::AF_INET as u16,
        service: svc,
        flags: 0,
    };
    t.read_back(IpvsEvent::Service(info), Time(10 * S), &mut rec);
    for (d, w) in [(R1, 0), (R2, 0)] {
        let info = DestInfo {
            addr: a(d),
            weight: w,
            fwd: 0,
            extra: Default::default(),
        };
        t.read_back(IpvsEvent::Dest(tcp(V), info), Time(10 * S), &mut rec);
    }
    // Meanwhile R1 comes UP: weight 7 is sent.
    t.record(RealId(0), Verdict::Pass, 1, Time(10 * S + 1), &mut rec);
    assert_eq!(ops(&mut t), vec![Op::EditDest(tcp(V), dest(R1, 7))]);
    // What the read-back saw of R1 predates that: no drift, nothing sent again.
    t.read_back(IpvsEvent::DumpDone { ok: true }, Time(10 * S + 2), &mut rec);
    assert!(rec.drifts.is_empty(), "{:?}", rec.drifts);
    assert!(ops(&mut t).is_empty());
    assert_eq!(t.reals[0].table(), Some(7));
    // A failed read-back says nothing: it is tried again soon, nothing repaired.
    t.poll_read_back(Time(20 * S), false, || true);
    t.read_back(IpvsEvent::DumpDone { ok: false }, Time(20 * S), &mut rec);
    assert_eq!(rec.resyncs, 1);
    assert_eq!(t.next_resync(false), Some(Time(22 * S)));
}

#[test]
fn a_reload_under_dry_run_adopts_at_once_and_moves_weights() {
    const R3: &str = "198.51.100.3:80";
    let (mut old, _) = started(&format!("resync 10s\n{}", conf("")));
    let mut rec = Rec::default();
    old.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    old.record(RealId(1), Verdict::Pass, 1, Time(S), &mut rec);
    ops(&mut old);
    // A read-back is running when the reload comes: its answer follows the old numbering.
    old.poll_read_back(Time(10 * S), false, || true);

    let plan = plan_of(&format!(
        "resync 10s\nvirtual tcp {V} {{\n  scheduler rr\n  check tcp\n  real {R1} weight 9\n  real {R2} weight 4\n  real {R3}\n}}\n"
    ));
    let mut new = Table::new(&plan, Time(11 * S));
    let mut ch = Changes::default();
    let cmds: &[Command] = &[];
    new.take_over(
        &mut old,
        Time(11 * S),
        true,
        (cmds, cmds),
        &mut ch,
        |_, _| {},
        &mut rec,
    );
    assert_eq!((ch.kept, ch.changed, ch.added, ch.removed), (2, 1, 1, 0));
    let svc = new.virtuals[0].service;
    // The scheduler changed: edited; R1's weight changed while UP: edited; R3 (dry-run)
    // adopted at once against an empty table, at weight 0 until checked.
    assert_eq!(
        ops(&mut new),
        vec![
            Op::EditService(svc),
            Op::AddDest(tcp(V), dest(R3, 0)),
            Op::EditDest(tcp(V), dest(R1, 9)),
        ]
    );
    assert!(!new.adopt_pending());
    // The stale read-back's end is not reconciled; the table is read again at once.
    new.read_back(IpvsEvent::DumpDone { ok: true }, Time(12 * S), &mut rec);
    assert_eq!(rec.resyncs, 0);
    assert_eq!(new.next_resync(false), Some(Time(12 * S)));
}

#[test]
fn compact_addresses_round_trip() {
    for a in [
        "192.0.2.1:80",
        "[2001:db8::1]:443",
        "0.0.0.0:0",
        "[::ffff:192.0.2.1]:8080",
    ] {
        let s: SocketAddr = a.parse().unwrap();
        assert_eq!(Addr::new(s).get(), s, "{a}");
        assert_eq!(Addr::new(s).to_string(), s.to_string());
    }
    // v4 and its v4-mapped v6 form stay apart.
    let v4: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:192.0.2.1]:80".parse().unwrap();
    assert_ne!(Addr::new(v4), Addr::new(mapped));
}

/// A small seeded generator (xorshift), so that a failing case can be run again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the IPVS side holds after replaying operations: service → destination → weight.
type Model = HashMap<ServiceKey, HashMap<SocketAddr, u32>>;

/// Replays the queued operations into `model` (as `--dry-run` answers them), refusing any
/// that does not fit what is there: an add of what exists, an edit or delete of what does not.
fn replay(t: &mut Table, model: &mut Model, now: Time, seed: u64) {
    while let Some(op) = t.next_op() {
        match op {
            Op::AddService(s) => assert!(
                model.insert(s.key, HashMap::new()).is_none(),
                "seed {seed:#x}: adds a service that is there: {op:?}"
            ),
            Op::EditService(s) => assert!(model.contains_key(&s.key), "seed {seed:#x}: {op:?}"),
            Op::DelService(k) => assert!(model.remove(&k).is_some(), "seed {seed:#x}: {op:?}"),
            Op::AddDest(k, d) | Op::EditDest(k, d) => {
                let dests = model
                    .get_mut(&k)
                    .unwrap_or_else(|| panic!("seed {seed:#x}: no service for {op:?}"));
                let was = dests.insert(d.addr, d.weight);
                if matches!(op, Op::AddDest(..)) {
                    assert!(
                        was.is_none(),
                        "seed {seed:#x}: adds a destination that is there: {op:?}"
                    );
                } else {
                    assert!(
                        was.is_some(),
                        "seed {seed:#x}: edits a destination that is not there: {op:?}"
                    );
                }
            }
            Op::DelDest(k, addr) => {
                let dests = model
                    .get_mut(&k)
                    .unwrap_or_else(|| panic!("seed {seed:#x}: no service for {op:?}"));
                assert!(
                    dests.remove(&addr).is_some(),
                    "seed {seed:#x}: deletes a destination that is not there: {op:?}"
                );
            }
        }
        t.op_done(op, OpResult::DryRun, now);
    }
}

/// What the table believes is exactly what its operations made: each real at the weight it
/// says (or absent), each virtual's sorry server in or out as it says, nothing else left.
fn agrees(t: &Table, model: &Model, seed: u64, step: usize) {
    let mut left = model.clone();
    for v in t.virtuals() {
        let dests = left
            .get_mut(&v.key)
            .unwrap_or_else(|| panic!("seed {seed:#x}, step {step}: {:?} not in IPVS", v.key));
        if let Some(s) = v.sorry {
            assert_eq!(
                dests.remove(&s).is_some(),
                v.sorry_in_table,
                "seed {seed:#x}, step {step}: sorry server of {:?}",
                v.key
            );
        }
    }
    for r in t.reals() {
        let key = t.virtuals()[r.virt as usize].key;
        let have = left.get_mut(&key).unwrap().remove(&r.addr.get());
        assert_eq!(
            have,
            r.table(),
            "seed {seed:#x}, step {step}: {key:?} {}",
            r.addr
        );
    }
    for (key, rest) in left {
        assert!(
            rest.is_empty() && t.virtuals().iter().any(|v| v.key == key),
            "seed {seed:#x}, step {step}: {key:?} {rest:?} left in IPVS"
        );
    }
}

/// Forty reloads of random files (virtuals, schedulers, quorum and sorry servers, `on-down
/// remove`, reals and weights come and go) while one real flaps: every operation fits what
/// IPVS holds, and after every reload and every round of checks the table believes what the
/// operations made. `RELOAD_SEED` tries other cases.
#[test]
fn random_reloads_keep_the_table_in_step() {
    let seed = std::env::var("RELOAD_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng(seed);
    // Three that pass, one that fails, one that flaps.
    let addrs = [
        "198.51.100.1:80",
        "198.51.100.2:80",
        "198.51.100.3:80",
        "198.51.100.4:80",
        "198.51.100.5:80",
    ];
    let sorry = ["127.0.0.9:8080", "127.0.0.10:8080"];
    let gen = |rng: &mut Rng| {
        let mut c = String::from("fall 1\nrise 1\n");
        let mut virtuals = 0;
        for v in 0..5 {
            if rng.below(3) == 0 && !(v == 4 && virtuals == 0) {
                continue;
            }
            virtuals += 1;
            c.push_str(&format!(
                "virtual tcp 192.0.2.{}:80 {{\n  check tcp\n",
                v + 1
            ));
            c.push_str(if rng.below(2) == 0 {
                "  scheduler rr\n"
            } else {
                "  scheduler wlc\n"
            });
            if rng.below(2) == 0 {
                let s = sorry[rng.below(2) as usize];
                c.push_str(&format!("  quorum {}\n  sorry {s}\n", 1 + rng.below(3)));
            }
            if rng.below(2) == 0 {
                c.push_str("  on-down remove\n");
            }
            let mut any = false;
            for (k, a) in addrs.iter().enumerate() {
                if rng.below(2) == 0 || (k == addrs.len() - 1 && !any) {
                    any = true;
                    c.push_str(&format!("  real {a} weight {}\n", 1 + rng.below(5)));
                }
            }
            c.push_str("}\n");
        }
        c
    };
    let mut model = Model::new();
    let mut rec = Rec::default();
    let mut now = 0;
    let mut t = Table::new(&plan_of(&gen(&mut rng)), Time(now));
    t.adopt_at_start(|_| None, |_, _| None);
    replay(&mut t, &mut model, Time(now), seed);
    let cmds: &[Command] = &[];
    let mut flap = true;
    for step in 0..40 {
        // A few rounds of checks between reloads.
        for _ in 0..rng.below(4) {
            now += 100 * MS;
            if rng.below(2) == 0 {
                flap = !flap;
            }
            for r in 0..t.reals().len() {
                let addr = t.reals()[r].addr.get();
                let pass = match addrs.iter().position(|&x| a(x) == addr) {
                    Some(3) => false,
                    Some(4) => flap,
                    _ => true,
                };
                let v = if pass { Verdict::Pass } else { fail() };
                t.record(RealId(r as u32), v, 1, Time(now), &mut rec);
            }
            replay(&mut t, &mut model, Time(now), seed);
            agrees(&t, &model, seed, step);
        }
        now += 50 * MS;
        let mut new = Table::new(&plan_of(&gen(&mut rng)), Time(now));
        let mut ch = Changes::default();
        new.take_over(
            &mut t,
            Time(now),
            true,
            (cmds, cmds),
            &mut ch,
            |_, _| {},
            &mut rec,
        );
        t = new;
        replay(&mut t, &mut model, Time(now), seed);
        agrees(&t, &model, seed, step);
    }
    // Not a vacuous walk: quorum was lost and restored, reals went both ways.
    for k in [
        EventKind::Up,
        EventKind::Down,
        EventKind::QuorumLost,
        EventKind::QuorumRestored,
    ] {
        assert!(
            rec.events.iter().any(|e| e.0 == k),
            "seed {seed:#x}: no {k:?}"
        );
    }
}

/// A `--dry-run` reload end to end at the table: one real re-weighted, one kept as it is, a
/// failing one and a whole virtual service dropped, a real and a virtual service added. Only
/// the differences go out (the added ones at weight 0 until checked, as at startup); the kept
/// reals keep their state and counters, and their next passes change nothing.
#[test]
fn a_dry_run_reload_sends_only_the_differences() {
    const R3: &str = "198.51.100.3:80";
    const RB: &str = "198.51.100.9:80";
    const V1: &str = "192.0.2.2:80";
    const V2: &str = "192.0.2.3:80";
    let (mut old, _) = started(&format!(
        "fall 2\nrise 2\nvirtual tcp {V} {{\n  check tcp\n  real {R1} weight 10\n  real {R2} weight 10\n  real {RB}\n}}\nvirtual tcp {V1} {{\n  check tcp\n  real {R1}\n}}\n"
    ));
    let mut rec = Rec::default();
    let mut now = 0;
    for _ in 0..5 {
        now += 200 * MS;
        for r in [0, 1, 3] {
            old.record(RealId(r), Verdict::Pass, 1, Time(now), &mut rec);
        }
        old.record(RealId(2), fail(), 1, Time(now), &mut rec);
    }
    ops(&mut old);
    let checks: Vec<u64> = old.reals().iter().map(|r| r.checks).collect();
    assert_eq!(checks, vec![5, 5, 5, 5]);
    rec.events.clear();

    let plan = plan_of(&format!(
        "fall 2\nrise 2\nvirtual tcp {V} {{\n  check tcp\n  real {R1} weight 20\n  real {R2} weight 10\n  real {R3} weight 5\n}}\nvirtual tcp {V2} {{\n  check tcp\n  real {R2}\n}}\n"
    ));
    // A second after R1's last weight edit, so that its new weight goes at once.
    now += S;
    let mut new = Table::new(&plan, Time(now));
    let mut ch = Changes::default();
    let cmds: &[Command] = &[];
    new.take_over(
        &mut old,
        Time(now),
        true,
        (cmds, cmds),
        &mut ch,
        |_, _| {},
        &mut rec,
    );
    assert_eq!((ch.kept, ch.changed, ch.added, ch.removed), (2, 1, 2, 2));
    assert_eq!((ch.virtuals_added, ch.virtuals_removed), (1, 1));
    let v2 = new.virtuals[1].service;
    let mut got = ops(&mut new);
    assert_eq!(ch.ops, got.len());
    let want = vec![
        Op::AddService(v2),
        Op::AddDest(tcp(V), dest(R3, 0)),
        Op::AddDest(tcp(V2), dest(R2, 0)),
        Op::DelDest(tcp(V), a(RB)),
        Op::DelService(tcp(V1)),
        Op::EditDest(tcp(V), dest(R1, 20)),
    ];
    let key = |o: &Op| format!("{o:?}");
    got.sort_by_key(key);
    let mut want = want;
    want.sort_by_key(key);
    assert_eq!(got, want);
    assert!(rec.events.is_empty(), "{:?}", rec.events);
    // The kept reals: UP, their counters where they were; passing on changes nothing.
    for (r, addr) in [(0, R1), (1, R2)] {
        let real = &new.reals[r];
        assert_eq!(real.addr.get(), a(addr));
        assert_eq!((real.health.state, real.checks), (State::Up, 5));
    }
    for _ in 0..3 {
        now += 200 * MS;
        for r in [0, 1] {
            new.record(RealId(r), Verdict::Pass, 1, Time(now), &mut rec);
        }
    }
    assert!(rec.events.is_empty(), "{:?}", rec.events);
    assert!(ops(&mut new).is_empty());
    assert_eq!(new.reals[0].table(), Some(20));
    // The added ones come UP on their own checks.
    for _ in 0..2 {
        now += 200 * MS;
        for r in [2, 3] {
            new.record(RealId(r), Verdict::Pass, 1, Time(now), &mut rec);
        }
    }
    let ups: Vec<_> = rec.events.drain(..).map(|e| (e.0, e.1)).collect();
    assert_eq!(
        ups,
        vec![(EventKind::Up, Some(a(R3))), (EventKind::Up, Some(a(R2)))]
    );
}

// ----- the weight chain (lvsmon.conf(5), WEIGHTS) ------------------------------------------------

/// The weights of the `edit-dest`/`add-dest` operations queued for `real`.
fn weights_of(t: &mut Table, real: &str) -> Vec<u32> {
    ops(t)
        .into_iter()
        .filter_map(|o| match o {
            Op::AddDest(_, d) | Op::EditDest(_, d) if d.addr == a(real) => Some(d.weight),
            _ => None,
        })
        .collect()
}

/// One real of configured weight `w` behind `V`, with `extra` settings in its virtual.
fn one_real(w: u32, extra: &str) -> String {
    format!("rise 1\nvirtual tcp {V} {{\n{extra}\n  check tcp\n  real {R1} weight {w}\n}}\n")
}

/// Steps the table's clock to `t` µs (ramps and held changes fall due).
fn tick(t: &mut Table, at: u64, rec: &mut Rec) {
    t.poll_weights(Time(at), rec);
}

fn agent(line: &str) -> Option<AgentReply> {
    Some(crate::plugins::agent::parse(line.as_bytes()))
}

#[test]
fn slow_start_climbs_from_1_in_even_steps_after_up_but_not_after_adoption() {
    // 10 s over weight 11: ten steps of 1 s, 1 more each.
    let (mut t, _) = started(&one_real(11, "  slow-start 10s"));
    let mut rec = Rec::default();
    t.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up]);
    assert_eq!(weights_of(&mut t, R1), vec![1]);
    assert_eq!(t.next_weigh(), Some(Time(2 * S)));
    assert_eq!(t.why(0).to_string(), "ramp 0/10");
    let mut seen = Vec::new();
    for i in 1..=12u64 {
        tick(&mut t, S + i * S, &mut rec);
        seen.extend(weights_of(&mut t, R1));
    }
    assert_eq!(seen, (2..=11).collect::<Vec<u32>>());
    assert_eq!(t.next_weigh(), None, "the ramp is over");
    assert_eq!(t.why(0).to_string(), "config");
    // Half a step later: nothing more.
    tick(&mut t, 20 * S, &mut rec);
    assert!(ops(&mut t).is_empty());

    // DOWN and back: the ramp again; a 100 s ramp takes 20 steps of 5 s.
    let (mut t, _) = started(&one_real(41, "  slow-start 100s\n  fall 1"));
    t.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    t.record(RealId(0), fail(), 1, Time(2 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![1, 0]);
    t.record(RealId(0), Verdict::Pass, 1, Time(3 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![1]);
    tick(&mut t, 7 * S, &mut rec);
    assert!(ops(&mut t).is_empty(), "steps of 5 s");
    tick(&mut t, 8 * S, &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![3]);
    assert_eq!(t.why(0).to_string(), "ramp 1/20");

    // Adopted from the table with a weight: its first pass gives it the full weight.
    let mut t = Table::new(&plan_of(&one_real(11, "  slow-start 10s")), Time::ZERO);
    t.adopt_at_start(|_| None, |_, _| Some(5));
    ops(&mut t);
    t.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![11]);
    assert_eq!(t.next_weigh(), None);
}

#[test]
fn slow_and_fast_follow_the_check_duration_with_cancel() {
    let (mut t, _) = started(&one_real(
        40,
        "  slow-above 200ms cancel-below 50ms slow-weight 10%",
    ));
    let mut rec = Rec::default();
    let r = RealId(0);
    t.record(r, Verdict::Pass, 10 * MS, Time(S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![40]);
    rec.kinds();
    // Slower than 200 ms: SLOW, weight 4.
    t.record(r, Verdict::Pass, 250 * MS, Time(3 * S), &mut rec);
    assert_eq!(
        rec.events.drain(..).map(|e| (e.0, e.1)).collect::<Vec<_>>(),
        vec![(EventKind::Slow, Some(a(R1)))]
    );
    assert_eq!(weights_of(&mut t, R1), vec![4]);
    assert_eq!(rec.weights.last().unwrap().2, "slow");
    // Between the two levels: still SLOW; a failure's duration does not count.
    t.record(r, Verdict::Pass, 100 * MS, Time(5 * S), &mut rec);
    t.record(
        r,
        Verdict::Fail(Reason::Timeout, Detail::EMPTY),
        10,
        Time(6 * S),
        &mut rec,
    );
    assert!(rec.events.is_empty() && ops(&mut t).is_empty());
    // Faster than 50 ms: FAST, the configured weight again.
    t.record(r, Verdict::Pass, 40 * MS, Time(7 * S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Fast]);
    assert_eq!(weights_of(&mut t, R1), vec![40]);
    assert_eq!(t.why(0).to_string(), "config");
}

#[test]
fn an_agent_at_50_percent_during_slow_start_while_slow() {
    // 41 → agent 50 % → 21 (rounded) → SLOW 50 % → 11 (rounded) → ramp over 10 s.
    let (mut t, _) = started(&one_real(
        41,
        "  slow-above 200ms cancel-below 50ms slow-weight 50%\n  slow-start 10s",
    ));
    let mut rec = Rec::default();
    let r = RealId(0);
    t.agent_said(r, agent("50%"), b"50%", Time(S / 2), &mut rec);
    assert!(
        ops(&mut t).is_empty(),
        "nothing decided before the first check"
    );
    t.record(r, Verdict::Pass, 300 * MS, Time(S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up, EventKind::Slow]);
    assert_eq!(weights_of(&mut t, R1), vec![1]);
    assert_eq!(t.why(0).to_string(), "agent 50%,slow,ramp 0/10");
    // Step 5 of 10: 1 + (11 - 1) * 5 / 10 = 6.
    tick(&mut t, 6 * S, &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![6]);
    assert_eq!(t.why(0).to_string(), "agent 50%,slow,ramp 5/10");
    // FAST mid-ramp: the target is 21 now, from the configured weight, not from 6.
    t.record(r, Verdict::Pass, 10 * MS, Time(7 * S + 500 * MS), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Fast]);
    assert_eq!(weights_of(&mut t, R1), vec![1 + 20 * 6 / 10]);
    // The agent says 100 % at the end of the ramp: the configured weight, never a product
    // of what was sent before.
    t.agent_said(r, agent("100%"), b"100%", Time(12 * S), &mut rec);
    tick(&mut t, 12 * S, &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![41]);
    assert_eq!(t.why(0).to_string(), "agent 100%");
    // Unreachable: nothing changes.
    t.agent_said(r, None, b"", Time(20 * S), &mut rec);
    assert!(ops(&mut t).is_empty() && rec.events.is_empty());
    assert_eq!(t.weigh(0).agent_percent, 100);
}

#[test]
fn a_reload_that_changes_the_weight_mid_ramp_ramps_to_the_new_target() {
    let (mut old, _) = started(&one_real(11, "  slow-start 10s"));
    let mut rec = Rec::default();
    old.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    tick(&mut old, 5 * S, &mut rec);
    assert_eq!(weights_of(&mut old, R1), vec![1, 5]);
    let mut new = Table::new(
        &plan_of(&one_real(101, "  slow-start 10s")),
        Time(5 * S + 500 * MS),
    );
    let cmds: &[Command] = &[];
    new.take_over(
        &mut old,
        Time(5 * S + 500 * MS),
        false,
        (cmds, cmds),
        &mut Changes::default(),
        |_, _| {},
        &mut rec,
    );
    // Step 4 of 10 towards 101 is 41; held until a second after the last edit (at 5 s).
    assert!(ops(&mut new).is_empty());
    assert_eq!(new.next_weigh(), Some(Time(6 * S)));
    tick(&mut new, 6 * S, &mut rec);
    assert_eq!(weights_of(&mut new, R1), vec![1 + 100 * 5 / 10]);
    for i in 7..=12 {
        tick(&mut new, i * S, &mut rec);
    }
    assert_eq!(weights_of(&mut new, R1), vec![61, 71, 81, 91, 101]);
    assert_eq!(new.next_weigh(), None);
}

#[test]
fn at_most_one_weight_edit_a_second_the_last_wanted_goes() {
    let (mut t, _) = started(&one_real(100, ""));
    let mut rec = Rec::default();
    let r = RealId(0);
    t.record(r, Verdict::Pass, 1, Time(S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![100]);
    for (i, p) in ["50%", "20%", "70%"].iter().enumerate() {
        t.agent_said(
            r,
            agent(p),
            p.as_bytes(),
            Time(S + (i as u64 + 1) * 200 * MS),
            &mut rec,
        );
        tick(&mut t, S + (i as u64 + 1) * 200 * MS, &mut rec);
    }
    assert!(
        ops(&mut t).is_empty(),
        "held: the last edit was under a second ago"
    );
    assert_eq!(t.next_weigh(), Some(Time(2 * S)));
    tick(&mut t, 2 * S - 1, &mut rec);
    assert!(ops(&mut t).is_empty());
    tick(&mut t, 2 * S, &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![70]);
    // Back to the weight IPVS has before the second is up: nothing goes.
    t.agent_said(r, agent("90%"), b"90%", Time(2 * S + 100 * MS), &mut rec);
    t.agent_said(r, agent("70%"), b"70%", Time(2 * S + 200 * MS), &mut rec);
    tick(&mut t, 3 * S, &mut rec);
    assert!(ops(&mut t).is_empty());
    // Going to 0 (DOWN, drain) is never held.
    t.agent_said(
        r,
        agent("drain"),
        b"drain",
        Time(3 * S + 100 * MS),
        &mut rec,
    );
    assert_eq!(weights_of(&mut t, R1), vec![0]);
}

#[test]
fn a_weight_change_of_a_down_or_drained_real_is_remembered() {
    let (mut t, _) = started(&one_real(10, "  fall 1"));
    let mut rec = Rec::default();
    let r = RealId(0);
    t.record(r, Verdict::Pass, 1, Time(S), &mut rec);
    t.record(r, fail(), 1, Time(2 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![10, 0]);
    // DOWN: the hand weight and the agent's percentage wait.
    assert!(t.set_hand(r, Hand::Percent(50), Time(3 * S), &mut rec));
    t.agent_said(r, agent("60%"), b"60%", Time(3 * S), &mut rec);
    assert!(ops(&mut t).is_empty());
    t.record(r, Verdict::Pass, 1, Time(4 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![3]);
    assert_eq!(t.why(0).to_string(), "agent 60%,set 50%");
    // Drained by hand: a hand weight waits too, and comes with the undrain.
    t.set_drained(r, true, Time(6 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![0]);
    assert!(t.set_hand(r, Hand::Weight(8), Time(6 * S), &mut rec));
    assert!(!t.set_hand(r, Hand::Weight(8), Time(6 * S), &mut rec));
    assert!(ops(&mut t).is_empty());
    t.set_drained(r, false, Time(7 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![8]);
    assert_eq!(t.why(0).to_string(), "agent 60%,set");
    // reset: the chain's weight again.
    t.set_hand(r, Hand::None, Time(9 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![6]);
    // set-weight 0: stays 0, UP.
    t.set_hand(r, Hand::Weight(0), Time(11 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![0]);
    assert_eq!(t.reals[0].health.state, State::Up);
}

#[test]
fn agent_drain_down_and_up() {
    let (mut t, _) = started(&conf("  quorum 2\n  rise 1"));
    let mut rec = Rec::default();
    let (r1, r2) = (RealId(0), RealId(1));
    t.record(r1, Verdict::Pass, 1, Time(S), &mut rec);
    t.record(r2, Verdict::Pass, 1, Time(S), &mut rec);
    ops(&mut t);
    rec.kinds();
    // drain: weight 0 and not counted UP (quorum lost), but no DRAINED event: not a hand drain.
    t.agent_said(r1, agent("maint"), b"maint", Time(2 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![0]);
    assert_eq!(rec.kinds(), vec![EventKind::QuorumLost]);
    assert!(!t.reals[0].drained);
    t.agent_said(r1, agent("ready"), b"ready", Time(3 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![7]);
    assert_eq!(rec.kinds(), vec![EventKind::QuorumRestored]);
    // down: DOWN with reason agent-down and the rest of the line as detail.
    let line = b"down  disk full";
    t.agent_said(r1, agent("down  disk full"), line, Time(4 * S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Down, EventKind::QuorumLost]);
    assert_eq!(t.reals[0].last_reason, Some(Reason::AgentDown));
    assert_eq!(t.reals[0].last_detail.as_bytes(), b"disk full");
    assert_eq!(weights_of(&mut t, R1), vec![0]);
    // Passing checks do not bring it back while the agent says down.
    for i in 0..3 {
        t.record(r1, Verdict::Pass, 1, Time(5 * S + i), &mut rec);
    }
    assert!(rec.events.is_empty() && ops(&mut t).is_empty());
    // up: its checks pass, so UP at once.
    t.agent_said(r1, agent("up 80%"), b"up 80%", Time(6 * S), &mut rec);
    assert_eq!(rec.kinds(), vec![EventKind::Up, EventKind::QuorumRestored]);
    assert_eq!(weights_of(&mut t, R1), vec![6]);
}

#[test]
fn exec_dynamic_weight_follows_the_agent_in_the_chain() {
    let (mut t, _) = started(&one_real(10, ""));
    let mut rec = Rec::default();
    let r = RealId(0);
    t.record(r, Verdict::Pass, 1, Time(S), &mut rec);
    t.agent_said(r, agent("50%"), b"50%", Time(3 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![10, 5]);
    t.exec_weight(r, Some(3), Time(5 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![3]);
    assert_eq!(t.why(0).to_string(), "agent 50%,exec");
    t.exec_weight(r, None, Time(7 * S), &mut rec);
    assert_eq!(weights_of(&mut t, R1), vec![5]);
}

#[test]
fn sorry_mode_add_keeps_the_weights_and_forward_is_used() {
    let (mut t, _) = started(&conf(
        "  quorum 2\n  fall 1\n  sorry 127.0.0.1:8080 --mode add --forward route",
    ));
    let mut rec = Rec::default();
    t.record(RealId(0), Verdict::Pass, 1, Time(S), &mut rec);
    t.record(RealId(1), Verdict::Pass, 1, Time(S), &mut rec);
    ops(&mut t);
    t.record(RealId(1), fail(), 1, Time(2 * S), &mut rec);
    let sorry = Dest {
        addr: a("127.0.0.1:8080"),
        weight: 1,
        forward: Forward::Route,
        extra: DestExtra::default(),
    };
    assert_eq!(
        ops(&mut t),
        vec![
            Op::EditDest(tcp(V), dest(R2, 0)),
            Op::AddDest(tcp(V), sorry)
        ]
    );
}

#[test]
fn the_weight_chain_state_costs_30_bytes_a_real() {
    // Beside `Real`: what every real pays for the chain (its three times in 48 bits each,
    // the hand-set weight in four bytes; 40 before they were packed).
    assert_eq!(std::mem::size_of::<Weigh>(), 30);
}

#[test]
fn a_hand_weight_and_slow_are_kept_across_a_reload() {
    let text = one_real(10, "  slow-above 1s cancel-below 10ms");
    let (mut old, _) = started(&text);
    let mut rec = Rec::default();
    let r = RealId(0);
    old.record(r, Verdict::Pass, 1, Time(S), &mut rec);
    old.set_hand(r, Hand::Weight(4), Time(3 * S), &mut rec);
    old.record(r, Verdict::Pass, 2 * S, Time(5 * S), &mut rec);
    assert_eq!(weights_of(&mut old, R1), vec![10, 4]);
    // The file now says weight 30: the hand weight still wins, SLOW is still on.
    let mut new = Table::new(
        &plan_of(&one_real(30, "  slow-above 1s cancel-below 10ms")),
        Time(7 * S),
    );
    let cmds: &[Command] = &[];
    new.take_over(
        &mut old,
        Time(7 * S),
        false,
        (cmds, cmds),
        &mut Changes::default(),
        |_, _| {},
        &mut rec,
    );
    assert!(ops(&mut new).is_empty());
    assert_eq!(
        (new.weigh(0).hand(), new.weigh(0).slow),
        (Hand::Weight(4), true)
    );
    // reset: the new configured weight through SLOW (25 %).
    new.set_hand(r, Hand::None, Time(9 * S), &mut rec);
    assert_eq!(weights_of(&mut new, R1), vec![8]);
}

/// The weight chain's packed times and hand-set weight give back exactly what was stored:
/// every µs up to 8.9 years of running, `NEVER`, and every hand `set-weight` accepts.
#[test]
fn weigh_packs_its_times_and_hand_exactly() {
    for t in [
        Time::ZERO,
        Time(1),
        Time(999_999),
        Time(1_000_001),
        Time(49 * 86_400 * S + 7),
        Time(u64::from(u32::MAX) * 1000 + 3),
        Time((1 << 48) - 2),
        NEVER,
    ] {
        assert_eq!(Stamp::of(t).get(), t, "{t:?}");
    }
    // Past 2^48 µs a time stays at the last one held (never NEVER).
    assert_eq!(Stamp::of(Time(1 << 50)).get(), Time((1 << 48) - 2));
    let mut hands = vec![Hand::None];
    hands.extend((0..=65_535).step_by(257).map(Hand::Weight));
    hands.push(Hand::Weight(65_535));
    hands.extend((0..=MAX_PERCENT).map(Hand::Percent));
    for h in hands {
        assert_eq!(HandBits::of(h).get(), h, "{h:?}");
        let mut w = Weigh::default();
        w.set_hand(h);
        assert_eq!(w.hand(), h);
    }
    let w = Weigh::default();
    assert_eq!(
        (w.ramp_since(), w.last_edit(), w.due()),
        (NEVER, NEVER, NEVER)
    );
}
