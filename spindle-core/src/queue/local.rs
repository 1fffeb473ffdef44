//! The per-worker bounded queue with half-stealing.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::mem::MaybeUninit;

use crate::loom::{AtomicU32, AtomicU64, Ordering::*, UnsafeCell};

/// Entries a local queue holds before it overflows.
pub const CAPACITY: usize = 256;
const MASK: u32 = CAPACITY as u32 - 1;

struct Inner<T> {
    /// Low 32 bits: the real head (next entry the owner pops). High 32 bits: the steal head (first
    /// entry a stealer is still copying). Equal when no steal is in progress.
    head: AtomicU64,
    /// Next free slot; written only by the owner.
    tail: AtomicU32,
    buffer: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: slots are handed between threads through the head/tail protocol; each slot is accessed
// by one party at a time (owner writes between tail and steal head, a stealer reads the range it
// claimed by CAS). Entries are `Send`, so moving them across threads is sound.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

fn pack(steal: u32, real: u32) -> u64 {
    ((steal as u64) << 32) | real as u64
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// The owner's handle: push and pop.
pub struct Local<T> {
    inner: Arc<Inner<T>>,
}

/// A handle other workers use to steal.
pub struct Stealer<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Stealer { inner: self.inner.clone() }
    }
}

/// Creates a queue: the owner's end and a stealer.
pub fn new<T>() -> (Local<T>, Stealer<T>) {
    let buffer = (0..CAPACITY).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect::<Vec<_>>().into_boxed_slice();
    let inner = Arc::new(Inner { head: AtomicU64::new(0), tail: AtomicU32::new(0), buffer });
    (Local { inner: inner.clone() }, Stealer { inner })
}

impl<T> Inner<T> {
    fn len(&self) -> u32 {
        let (_, real) = unpack(self.head.load(Acquire));
        self.tail.load(Acquire).wrapping_sub(real)
    }

    /// # Safety: the caller has exclusive access to slot `idx` and it is initialized.
    unsafe fn read(&self, idx: u32) -> T {
        // SAFETY: forwarded to the caller.
        self.buffer[(idx & MASK) as usize].with(|p| unsafe { (*p).assume_init_read() })
    }

    /// # Safety: the caller has exclusive access to slot `idx` and it holds nothing live.
    unsafe fn write(&self, idx: u32, value: T) {
        // SAFETY: forwarded to the caller.
        self.buffer[(idx & MASK) as usize].with_mut(|p| unsafe { (*p).write(value) });
    }
}

impl<T> Local<T> {
    /// Number of queued entries (racy with stealers; exact for the owner's own pushes).
    pub fn len(&self) -> usize {
        self.inner.len() as usize
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free slots right now.
    pub fn remaining(&self) -> usize {
        let (steal, _) = unpack(self.inner.head.load(Acquire));
        CAPACITY - self.inner.tail.load(Relaxed).wrapping_sub(steal) as usize
    }

    /// Appends `value`. If the queue is full, half of it plus `value` go to `overflow` in FIFO order.
    pub fn push_back(&mut self, value: T, overflow: impl FnOnce(Overflow<'_, T>)) {
        let tail = self.inner.tail.load(Relaxed);
        loop {
            let head = self.inner.head.load(Acquire);
            let (steal, real) = unpack(head);
            if tail.wrapping_sub(steal) < CAPACITY as u32 {
                // SAFETY: slot `tail` is outside [steal, tail), so no stealer reads it and it holds
                // nothing live; only the owner writes slots.
                unsafe { self.inner.write(tail, value) };
                self.inner.tail.store(tail.wrapping_add(1), Release);
                return;
            }
            if steal != real {
                // A stealer is emptying half the queue right now; don't wait for it.
                return overflow(Overflow { first: None, value: Some(value), inner: &self.inner, n: 0 });
            }
            // Full: claim the older half for the overflow queue.
            let half = CAPACITY as u32 / 2;
            let next = pack(real.wrapping_add(half), real.wrapping_add(half));
            if self.inner.head.compare_exchange(head, next, Release, Relaxed).is_ok() {
                return overflow(Overflow { first: Some(real), value: Some(value), inner: &self.inner, n: half });
            }
            // A stealer took entries meanwhile: there is room now, or a steal in progress.
        }
    }

    /// Takes the oldest entry.
    pub fn pop(&mut self) -> Option<T> {
        let mut head = self.inner.head.load(Acquire);
        let idx = loop {
            let (steal, real) = unpack(head);
            if real == self.inner.tail.load(Relaxed) {
                return None;
            }
            let next_real = real.wrapping_add(1);
            let next = if steal == real { pack(next_real, next_real) } else { pack(steal, next_real) };
            match self.inner.head.compare_exchange(head, next, AcqRel, Acquire) {
                Ok(_) => break real,
                Err(actual) => head = actual,
            }
        };
        // SAFETY: the CAS moved the real head past `idx`, so no stealer can claim it; it was
        // written by a push before `tail` was published past it.
        Some(unsafe { self.inner.read(idx) })
    }

    /// A stealer for this queue.
    pub fn stealer(&self) -> Stealer<T> {
        Stealer { inner: self.inner.clone() }
    }
}

impl<T> Drop for Local<T> {
    fn drop(&mut self) {
        // Drop whatever is left (the runtime drains first; this is a backstop against leaks).
        while let Some(v) = self.pop() {
            drop(v);
        }
    }
}

/// Entries the owner moves out of a full queue: the claimed half in FIFO order, then the new value.
pub struct Overflow<'a, T> {
    first: Option<u32>,
    value: Option<T>,
    inner: &'a Inner<T>,
    n: u32,
}

impl<T> Iterator for Overflow<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.n > 0 {
            let idx = self.first.expect("claimed range");
            self.first = Some(idx.wrapping_add(1));
            self.n -= 1;
            // SAFETY: the owner's CAS claimed [first, first+n): no stealer or pop reaches them, and
            // each is read exactly once here.
            return Some(unsafe { self.inner.read(idx) });
        }
        self.value.take()
    }
}

impl<T> Drop for Overflow<'_, T> {
    fn drop(&mut self) {
        // Never leave claimed slots unread: that would leak (or, later, double-free) entries.
        for v in self.by_ref() {
            drop(v);
        }
    }
}

impl<T> Stealer<T> {
    /// Whether the queue looks empty.
    pub fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Number of entries (racy).
    pub fn len(&self) -> usize {
        self.inner.len() as usize
    }

    /// Moves about half of this queue into `dst` and returns one of the moved entries to run now.
    pub fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        self.steal_into_counted(dst).map(|(t, _)| t)
    }

    /// [`steal_into`](Stealer::steal_into), also returning how many entries the steal took
    /// (the one returned included): counted here, since other stealers may take some of them
    /// from `dst` as soon as they are published there.
    pub fn steal_into_counted(&self, dst: &mut Local<T>) -> Option<(T, usize)> {
        let dst_tail = dst.inner.tail.load(Relaxed);
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        if dst_tail.wrapping_sub(dst_steal) > CAPACITY as u32 / 2 {
            // Plenty to do already; this also guarantees room for what we would copy.
            return None;
        }
        let n = self.steal_half(dst, dst_tail);
        if n == 0 {
            return None;
        }
        let last = dst_tail.wrapping_add(n - 1);
        // SAFETY: `steal_half` wrote [dst_tail, dst_tail + n) in dst, unpublished, so only we see them.
        let ret = unsafe { dst.inner.read(last) };
        if n > 1 {
            dst.inner.tail.store(last, Release);
        }
        Some((ret, n as usize))
    }

    fn steal_half(&self, dst: &mut Local<T>, dst_tail: u32) -> u32 {
        let src = &*self.inner;
        let mut prev = src.head.load(Acquire);
        let (first, n, mut claimed) = loop {
            let (steal, real) = unpack(prev);
            if steal != real {
                return 0; // another stealer is at work
            }
            let tail = src.tail.load(Acquire);
            let avail = tail.wrapping_sub(real);
            let n = avail - avail / 2;
            if n == 0 {
                return 0;
            }
            let next = pack(steal, real.wrapping_add(n));
            match src.head.compare_exchange(prev, next, AcqRel, Acquire) {
                Ok(_) => break (real, n, next),
                Err(actual) => prev = actual,
            }
        };
        for i in 0..n {
            // SAFETY: our CAS claimed [first, first + n) in src (the owner won't pop or overwrite
            // them while the steal head trails), and dst slots past its tail are free and ours.
            unsafe {
                let v = src.read(first.wrapping_add(i));
                dst.inner.write(dst_tail.wrapping_add(i), v);
            }
        }
        // Release the claimed range: move the steal head up to the real head.
        loop {
            let (_, real) = unpack(claimed);
            match src.head.compare_exchange(claimed, pack(real, real), AcqRel, Acquire) {
                Ok(_) => return n,
                Err(actual) => claimed = actual,
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Sequential tests of paths too long for loom (the capacity is 256); the concurrent
    //! protocol is model-checked in `tests/loom_local_queue.rs`.
    use super::*;
    use alloc::vec;
    use std::sync::Arc as StdArc;

    fn push(q: &mut Local<usize>, v: usize) {
        q.push_back(v, |_| panic!("unexpected overflow at {v}"));
    }

    #[test]
    fn overflow_moves_oldest_half_in_fifo_order() {
        let (mut q, _stealer) = new::<usize>();
        for v in 0..CAPACITY {
            push(&mut q, v);
        }
        assert_eq!(q.len(), CAPACITY);
        assert_eq!(q.remaining(), 0);

        let mut overflow = Vec::new();
        q.push_back(CAPACITY, |o| overflow.extend(o));
        let expected: Vec<usize> = (0..CAPACITY / 2).chain([CAPACITY]).collect();
        assert_eq!(overflow, expected, "overflow must be the oldest half, then the new value");
        assert_eq!(q.len(), CAPACITY / 2);
        assert_eq!(q.remaining(), CAPACITY / 2);

        // Fill again and overflow a second time: the next-oldest half goes out.
        for v in CAPACITY + 1..CAPACITY + 1 + CAPACITY / 2 {
            push(&mut q, v);
        }
        let mut overflow2 = Vec::new();
        q.push_back(10_000, |o| overflow2.extend(o));
        let expected2: Vec<usize> = (CAPACITY / 2..CAPACITY).chain([10_000]).collect();
        assert_eq!(overflow2, expected2);

        // What stays is still FIFO, with nothing lost or duplicated.
        let mut rest = Vec::new();
        while let Some(v) = q.pop() {
            rest.push(v);
        }
        let expected_rest: Vec<usize> = (CAPACITY + 1..CAPACITY + 1 + CAPACITY / 2).collect();
        assert_eq!(rest, expected_rest);
        assert!(q.is_empty());
    }

    #[test]
    fn overflow_many_rounds_no_loss() {
        let (mut q, _stealer) = new::<usize>();
        let mut popped = Vec::new();
        let mut overflowed = Vec::new();
        let n = 10 * CAPACITY + 7;
        for v in 0..n {
            q.push_back(v, |o| {
                let batch: Vec<usize> = o.collect();
                // The claimed half is the oldest entries, in order, then the new value.
                assert_eq!(batch.len(), CAPACITY / 2 + 1);
                assert!(batch.windows(2).all(|w| w[0] < w[1]));
                assert_eq!(*batch.last().unwrap(), v);
                overflowed.extend(batch);
            });
            if v % 3 == 0 {
                popped.extend(q.pop());
            }
        }
        while let Some(v) = q.pop() {
            popped.push(v);
        }
        // The owner's own pops stay in push order.
        assert!(popped.windows(2).all(|w| w[0] < w[1]));
        assert!(!overflowed.is_empty());
        let mut all = popped;
        all.extend(overflowed);
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "lost or duplicated entries");
    }

    #[test]
    fn unconsumed_overflow_drops_its_entries() {
        let token = StdArc::new(());
        let (mut q, _stealer) = new::<StdArc<()>>();
        for _ in 0..CAPACITY {
            q.push_back(token.clone(), |_| panic!("unexpected overflow"));
        }
        // The closure ignores the iterator: its `Drop` must still release the claimed half.
        q.push_back(token.clone(), |_| {});
        assert_eq!(StdArc::strong_count(&token), 1 + CAPACITY / 2);
        drop(q);
        assert_eq!(StdArc::strong_count(&token), 1, "dropping the queue releases what is left");
    }

    #[test]
    fn steal_moves_half_in_order() {
        let (mut src, stealer) = new::<usize>();
        for v in 0..10 {
            push(&mut src, v);
        }
        let (mut dst, _) = new::<usize>();
        // Half (rounded up) moves; the newest of them is returned, the others are queued in order.
        assert_eq!(stealer.steal_into(&mut dst), Some(4));
        let mut moved = Vec::new();
        while let Some(v) = dst.pop() {
            moved.push(v);
        }
        assert_eq!(moved, vec![0, 1, 2, 3]);
        let mut left = Vec::new();
        while let Some(v) = src.pop() {
            left.push(v);
        }
        assert_eq!(left, vec![5, 6, 7, 8, 9]);
        assert_eq!(stealer.steal_into(&mut dst), None);
    }

    #[test]
    fn steal_refuses_when_destination_is_busy() {
        let (mut src, stealer) = new::<usize>();
        let (mut dst, _) = new::<usize>();
        for v in 0..4 {
            push(&mut src, v);
        }
        for v in 0..=CAPACITY / 2 {
            push(&mut dst, 100 + v);
        }
        assert_eq!(stealer.steal_into(&mut dst), None);
        assert_eq!(src.len(), 4);
    }
}
