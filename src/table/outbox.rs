//! IPVS operations decided but not yet handed to the IPVS side.
//!
//! Most operations concern one of the daemon's own real servers or virtual services, and
//! are kept in 8 bytes: what to do, to which one, and the weight decided. They become an
//! [`Op`] only when handed over, from the tables as they are then (a real server's address
//! and forwarding method, its virtual service's key and scheduler). The queue is sized for
//! every real server and virtual service at once (a read-back that finds the whole table
//! flushed), which at 8 bytes each costs far less than whole operations would. A weight
//! above 65,535 (one read from the table, never one from the file) goes whole.
//!
//! Operations on what the tables do not hold (the `del-dest` and `del-service` of a reload
//! that removed them) wait whole in a second queue, which only a reload may grow; in
//! between, a full second queue drops the operation and the caller has the next read-back
//! repair the difference.

use crate::ipvs::Op;

/// What a compact operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    AddDest,
    EditDest,
    DelDest,
    /// The virtual service's sorry server, in (weight 1) or out.
    AddSorry,
    DelSorry,
    AddService,
    EditService,
    DelService,
}

/// One compact operation: `idx` is a real server's index for the `*Dest` kinds, a virtual
/// service's otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub idx: u32,
    pub weight: u16,
    pub what: What,
}

/// Both queues, first in first out; whole operations go first.
#[derive(Debug)]
pub(crate) struct Outbox {
    ring: Box<[Slot]>,
    head: usize,
    len: usize,
    whole: std::collections::VecDeque<Op>,
    /// A reload is filling the queues: the whole queue may grow.
    pub growable: bool,
    /// Operations dropped because a queue was full (the next read-back repairs them).
    pub dropped: u64,
}

impl Outbox {
    /// Room for `compact` compact operations and `whole` whole ones.
    pub fn new(compact: usize, whole: usize) -> Outbox {
        Outbox {
            ring: vec![
                Slot {
                    what: What::AddDest,
                    idx: 0,
                    weight: 0
                };
                compact.max(16)
            ]
            .into_boxed_slice(),
            head: 0,
            len: 0,
            whole: std::collections::VecDeque::with_capacity(whole),
            growable: false,
            dropped: 0,
        }
    }

    /// Operations waiting.
    pub fn len(&self) -> usize {
        self.len + self.whole.len()
    }

    /// Queues a compact operation; false (and counted) when the queue is full.
    pub fn push(&mut self, s: Slot) -> bool {
        if self.len == self.ring.len() {
            self.dropped += 1;
            return false;
        }
        let i = (self.head + self.len) % self.ring.len();
        self.ring[i] = s;
        self.len += 1;
        true
    }

    /// Queues a whole operation; false (and counted) when the queue is full and no reload
    /// is filling it.
    pub fn push_whole(&mut self, op: Op) -> bool {
        if self.whole.len() == self.whole.capacity() && !self.growable {
            self.dropped += 1;
            return false;
        }
        self.whole.push_back(op);
        true
    }

    /// The next whole operation, if any.
    pub fn pop_whole(&mut self) -> Option<Op> {
        self.whole.pop_front()
    }

    /// Whether whole operations wait.
    pub fn has_whole(&self) -> bool {
        !self.whole.is_empty()
    }

    /// The next compact operation, left in the queue.
    pub fn peek(&self) -> Option<Slot> {
        (self.len > 0).then(|| self.ring[self.head])
    }

    /// The next compact operation, if any.
    pub fn pop(&mut self) -> Option<Slot> {
        if self.len == 0 {
            return None;
        }
        let s = self.ring[self.head];
        self.head = (self.head + 1) % self.ring.len();
        self.len -= 1;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceKey;

    fn slot(idx: u32) -> Slot {
        Slot {
            what: What::EditDest,
            idx,
            weight: (idx * 10) as u16,
        }
    }

    #[test]
    fn a_slot_is_8_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 8);
    }

    #[test]
    fn compact_ring_is_fifo_bounded_and_wraps() {
        let mut o = Outbox::new(16, 0);
        for round in 0..3u32 {
            for i in 0..16 {
                assert!(o.push(slot(round * 100 + i)));
            }
            assert!(!o.push(slot(999)), "a 17th fits in 16");
            for i in 0..16 {
                let s = o.pop().unwrap();
                let i = round * 100 + i;
                assert_eq!((s.idx, s.weight), (i, (i * 10) as u16));
            }
            assert!(o.pop().is_none());
        }
        assert_eq!(o.dropped, 3);
    }

    #[test]
    fn whole_queue_grows_only_while_growable() {
        let mut o = Outbox::new(16, 2);
        let op = |m| Op::DelService(ServiceKey::Fwmark(m));
        let cap = o.whole.capacity();
        for m in 0..cap as u32 {
            assert!(o.push_whole(op(m)));
        }
        assert!(!o.push_whole(op(100)), "grew outside a reload");
        o.growable = true;
        assert!(o.push_whole(op(101)));
        assert_eq!(o.len(), cap + 1);
        assert_eq!(o.pop_whole(), Some(op(0)));
        assert_eq!(o.dropped, 1);
    }
}
