//! The IPVS netlink codec (`src/ipvs/wire.rs`): building the request for one table change
//! into the client's fixed send buffer, and reading the kernel's acknowledgement.

use divan::{black_box, Bencher};
use lvsmon::config::{Forward, Proto, ServiceKey};
use lvsmon::ipvs::wire::{build_op, decode, messages, Reply};
use lvsmon::ipvs::{Dest, Op, Service};

fn main() {
    divan::main();
}

/// A generic netlink family id as the kernel might assign to IPVS.
const FAMILY: u16 = 32;

fn key4() -> ServiceKey {
    ServiceKey::Inet(Proto::Tcp, "10.0.0.1:80".parse().unwrap())
}

fn dest4(weight: u32) -> Dest {
    Dest {
        addr: "192.168.1.10:80".parse().unwrap(),
        weight,
        forward: Forward::Masq,
        extra: Default::default(),
    }
}

fn build(bencher: Bencher, op: Op) {
    let mut buf = [0u8; 512];
    let mut seq = 0u32;
    bencher.bench_local(|| {
        seq = seq.wrapping_add(1);
        build_op(&mut buf, FAMILY, seq, black_box(&op), libc::AF_INET as u16).map(|m| m.len())
    });
}

/// `edit-dest`: a real goes DOWN (weight 0) or UP; the change lvsmon makes most.
#[divan::bench]
fn edit_dest_v4(bencher: Bencher) {
    build(bencher, Op::EditDest(key4(), dest4(0)));
}

/// `edit-dest` behind an IPv6 service.
#[divan::bench]
fn edit_dest_v6(bencher: Bencher) {
    let key = ServiceKey::Inet(Proto::Tcp, "[2001:db8::1]:80".parse().unwrap());
    let d = Dest {
        addr: "[2001:db8::10]:80".parse().unwrap(),
        weight: 5,
        forward: Forward::Route,
        extra: Default::default(),
    };
    build(bencher, Op::EditDest(key, d));
}

/// `add-dest` (startup, and `on-down remove` coming back).
#[divan::bench]
fn add_dest_v4(bencher: Bencher) {
    build(bencher, Op::AddDest(key4(), dest4(1)));
}

/// `del-dest`.
#[divan::bench]
fn del_dest_v4(bencher: Bencher) {
    build(
        bencher,
        Op::DelDest(key4(), "192.168.1.10:80".parse().unwrap()),
    );
}

/// `add-service` with a scheduler and persistence.
#[divan::bench]
fn add_service(bencher: Bencher) {
    let s = Service::new(key4(), "wlc", Some(std::time::Duration::from_secs(300)));
    build(bencher, Op::AddService(s));
}

/// The kernel's ACK (`NLMSG_ERROR` with error 0 and the request's header), split into
/// messages and decoded.
#[divan::bench]
fn decode_ack(bencher: Bencher) {
    let mut ack = Vec::new();
    ack.extend_from_slice(&36u32.to_ne_bytes());
    ack.extend_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    ack.extend_from_slice(&0x100u16.to_ne_bytes()); // NLM_F_CAPPED
    ack.extend_from_slice(&7u32.to_ne_bytes()); // seq
    ack.extend_from_slice(&0u32.to_ne_bytes()); // pid
    ack.extend_from_slice(&0i32.to_ne_bytes()); // error 0
    ack.extend_from_slice(&[0u8; 16]); // the request's nlmsghdr
    assert!(matches!(
        decode(&messages(&ack).next().unwrap().unwrap(), FAMILY),
        Ok(Reply::Ack { seq: 7 })
    ));
    bencher.bench_local(|| {
        let mut n = 0;
        for m in messages(black_box(&ack)).flatten() {
            if matches!(decode(&m, FAMILY), Ok(Reply::Ack { .. })) {
                n += 1;
            }
        }
        n
    });
}
