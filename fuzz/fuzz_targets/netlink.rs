//! The netlink codec: the fuzz input is one received datagram. Every message is decoded as
//! the client would (IPVS family id 0x20, as in the fixtures), and every payload is also
//! walked as attributes, nested ones included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lvsmon::ipvs::wire;

/// Walks `data` as attributes and each attribute's payload as attributes in turn, to `depth`
/// levels; returns the number seen (bounded by the input's size).
fn walk(data: &[u8], depth: u32) -> usize {
    let mut seen = 0;
    for a in wire::attrs(data) {
        let Ok((_ty, payload)) = a else { break };
        assert!(
            payload.len() <= data.len(),
            "attribute longer than its container"
        );
        seen += 1;
        if depth > 0 {
            seen += walk(payload, depth - 1);
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let mut total = 0usize;
    for m in wire::messages(data) {
        let Ok(msg) = m else { break };
        total += msg.payload.len() + 16;
        assert!(
            total <= data.len(),
            "messages cover more bytes than received"
        );
        let _ = wire::decode(&msg, 0x20);
        // A family id of 0 means "not resolved yet": the IPVS branch must stay unreachable.
        let _ = wire::decode(&msg, 0);
        // Generic netlink payload: 4-byte genlmsghdr, then attributes.
        if let Some(body) = msg.payload.get(4..) {
            walk(body, 4);
        }
        // NLMSG_ERROR payload: errno, then the request's header and attributes.
        if let Some(body) = msg.payload.get(20..) {
            walk(body, 2);
        }
    }
    walk(data, 4);
});
