//! A fixed-size batch of wakers collected under a lock and woken after it is released.
//!
//! Waking runs foreign code (the executor's scheduling, or a user waker), which must never run
//! while we hold a wait-list lock: it could re-enter the primitive and deadlock, or stall other
//! threads behind the lock. Callers that find more than [`WakeList::CAPACITY`] waiters to wake
//! release the lock, wake the batch, and take the lock again.

use core::mem::MaybeUninit;
use core::task::Waker;

/// Up to [`CAPACITY`](Self::CAPACITY) wakers, woken (or dropped) in insertion order.
pub(crate) struct WakeList {
    wakers: [MaybeUninit<Waker>; WakeList::CAPACITY],
    len: usize,
}

impl WakeList {
    /// How many wakers one batch holds.
    pub(crate) const CAPACITY: usize = 32;

    /// An empty batch.
    #[inline]
    pub(crate) fn new() -> WakeList {
        WakeList { wakers: [const { MaybeUninit::uninit() }; WakeList::CAPACITY], len: 0 }
    }

    /// Whether another waker fits.
    #[inline]
    pub(crate) fn can_push(&self) -> bool {
        self.len < Self::CAPACITY
    }

    /// Adds a waker. Panics if the batch is full (callers check [`can_push`](Self::can_push)).
    #[inline]
    pub(crate) fn push(&mut self, waker: Waker) {
        assert!(self.can_push(), "spindle: WakeList overflow");
        self.wakers[self.len].write(waker);
        self.len += 1;
    }

    /// Wakes every waker in the batch, leaving it empty.
    pub(crate) fn wake_all(&mut self) {
        let n = core::mem::replace(&mut self.len, 0);
        for slot in &mut self.wakers[..n] {
            // SAFETY: slots `..n` were written by `push` and are read exactly once here (`len` was
            // reset first, so a panicking waker cannot make `drop` read them again; the rest leak).
            unsafe { slot.assume_init_read() }.wake();
        }
    }
}

impl Drop for WakeList {
    fn drop(&mut self) {
        self.wake_all();
    }
}
