//! Receive buffers for the checks that are reading, from one fixed slab.
//!
//! Most checks sit in `wait` and most of the rest wait for a handshake or a first byte, so a
//! buffer is taken only when bytes are ready to be read, and given back when the check ends.
//! Memory per real server stays a few dozen bytes of state; buffer memory is
//! `count × size`, fixed at startup.
//!
//! When every buffer is taken, a check with bytes to read queues (FIFO, intrusive, O(1)) and
//! gets the next buffer given back. A check still queued at its deadline was failed by the
//! director, not by the real server: the caller defers it as a local error.

const NIL: u32 = u32::MAX;
/// `prev` of a probe that is not queued.
const OUT: u32 = u32::MAX - 1;

/// The slab, its free list and the queue of checks waiting for a buffer.
#[derive(Debug)]
pub struct BufPool {
    mem: Box<[u8]>,
    size: usize,
    free: Box<[u32]>,
    nfree: usize,
    /// Waiting queue over probe ids: `next`/`prev` links; `prev` is [`OUT`] for a probe
    /// that is not queued.
    next: Box<[u32]>,
    prev: Box<[u32]>,
    head: u32,
    tail: u32,
    /// Times a check had to queue.
    pub waits: u64,
}

impl BufPool {
    /// `count` buffers of `size` bytes, for probes `0..probes`.
    pub fn new(count: usize, size: usize, probes: usize) -> BufPool {
        BufPool {
            mem: vec![0u8; count * size].into_boxed_slice(),
            size,
            free: (0..count as u32)
                .rev()
                .collect::<Vec<_>>()
                .into_boxed_slice(),
            nfree: count,
            next: vec![NIL; probes].into_boxed_slice(),
            prev: vec![OUT; probes].into_boxed_slice(),
            head: NIL,
            tail: NIL,
            waits: 0,
        }
    }

    /// Buffers in all.
    pub fn count(&self) -> usize {
        self.free.len()
    }

    /// Bytes per buffer.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Buffers not in use.
    pub fn available(&self) -> usize {
        self.nfree
    }

    /// Takes a free buffer.
    pub fn take(&mut self) -> Option<u32> {
        if self.nfree == 0 {
            return None;
        }
        self.nfree -= 1;
        Some(self.free[self.nfree])
    }

    /// The bytes of buffer `b`; empty for `u32::MAX` (no buffer).
    pub fn slice(&mut self, b: u32) -> &mut [u8] {
        if b == NIL {
            return &mut [];
        }
        let start = b as usize * self.size;
        &mut self.mem[start..start + self.size]
    }

    /// Gives `b` back. If a probe is queued, it gets the buffer instead: returns its id.
    pub fn give_back(&mut self, b: u32) -> Option<(u32, u32)> {
        if self.head != NIL {
            let id = self.head;
            self.dequeue(id);
            return Some((id, b));
        }
        self.free[self.nfree] = b;
        self.nfree += 1;
        None
    }

    /// Queues probe `id` for the next buffer given back.
    pub fn enqueue(&mut self, id: u32) {
        let i = id as usize;
        if self.prev[i] != OUT {
            return;
        }
        self.waits += 1;
        self.next[i] = NIL;
        self.prev[i] = self.tail;
        if self.tail == NIL {
            self.head = id;
        } else {
            self.next[self.tail as usize] = id;
        }
        self.tail = id;
    }

    /// True when `id` is queued.
    pub fn is_queued(&self, id: u32) -> bool {
        self.prev[id as usize] != OUT
    }

    /// Takes `id` out of the queue, if it is there.
    pub fn dequeue(&mut self, id: u32) {
        let i = id as usize;
        if self.prev[i] == OUT {
            return;
        }
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[i] = OUT;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_give_and_queue_in_order() {
        let mut p = BufPool::new(2, 8, 5);
        let a = p.take().unwrap();
        let b = p.take().unwrap();
        assert_ne!(a, b);
        assert!(p.take().is_none());
        p.slice(a)[0] = 7;
        p.enqueue(3);
        p.enqueue(1);
        p.enqueue(4);
        p.enqueue(4);
        p.dequeue(1);
        assert!(!p.is_queued(1) && p.is_queued(3) && p.is_queued(4) && !p.is_queued(0));
        p.dequeue(1);
        assert_eq!(p.give_back(a), Some((3, a)));
        assert!(!p.is_queued(3));
        p.enqueue(1);
        assert_eq!(p.give_back(b), Some((4, b)));
        assert_eq!(p.give_back(b), Some((1, b)));
        assert_eq!(p.give_back(a), None);
        assert_eq!(p.available(), 1);
        assert!(p.slice(u32::MAX).is_empty());
    }
}
