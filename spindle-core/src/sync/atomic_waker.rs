//! A single waker slot that one consumer registers in and any thread may wake through.
//!
//! The classic three-state protocol: `WAITING` (idle), `REGISTERING` (the consumer is writing the
//! slot), `WAKING` (a producer is taking the waker out). A wake that lands while the consumer
//! registers is not lost: the consumer sees `WAKING` when it finishes and wakes itself.

use core::task::Waker;

use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};

/// Idle: the slot may hold a waker; nobody touches it.
const WAITING: usize = 0;
/// The consumer is replacing the waker.
const REGISTERING: usize = 1 << 0;
/// A producer is taking the waker out (or a wake arrived during registration).
const WAKING: usize = 1 << 1;

/// A waker slot for one registering consumer and many waking producers.
pub(crate) struct AtomicWaker {
    state: AtomicUsize,
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the state word gives the slot to one party at a time (module docs); `Waker` is `Send`.
unsafe impl Send for AtomicWaker {}
// SAFETY: as above.
unsafe impl Sync for AtomicWaker {}

impl AtomicWaker {
    pub(crate) fn new() -> AtomicWaker {
        AtomicWaker { state: AtomicUsize::new(WAITING), waker: UnsafeCell::new(None) }
    }

    /// Stores `waker` to be woken by the next [`wake`](Self::wake). Only one thread may register
    /// at a time (the channel's single receiver).
    pub(crate) fn register(&self, waker: &Waker) {
        match self.state.compare_exchange(WAITING, REGISTERING, Acquire, Acquire) {
            Ok(_) => {
                self.waker.with_mut(|slot| {
                    // SAFETY: `REGISTERING` gives us the slot.
                    let slot = unsafe { &mut *slot };
                    if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
                        *slot = Some(waker.clone());
                    }
                });
                if self.state.compare_exchange(REGISTERING, WAITING, AcqRel, Acquire).is_err() {
                    // A wake arrived while we registered: it could not take the waker, so we
                    // deliver it ourselves.
                    // SAFETY: still ours: producers never touch the slot while `REGISTERING` is set.
                    let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                    self.state.swap(WAITING, AcqRel);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            }
            // A producer is waking right now: make sure the consumer polls again, and give the
            // producer a moment to finish (under loom, this lets the other thread run).
            Err(_) => {
                waker.wake_by_ref();
                crate::loom::spin_loop();
            }
        }
    }

    /// Takes the registered waker out, if any, to wake it.
    pub(crate) fn take(&self) -> Option<Waker> {
        match self.state.fetch_or(WAKING, AcqRel) {
            WAITING => {
                // SAFETY: `WAKING` set from `WAITING` gives us the slot.
                let w = self.waker.with_mut(|slot| unsafe { (*slot).take() });
                self.state.fetch_and(!WAKING, Release);
                w
            }
            // Registering (it will see `WAKING`) or another wake in progress: nothing to do.
            _ => None,
        }
    }

    /// Wakes the registered waker, if any.
    #[inline]
    pub(crate) fn wake(&self) {
        if let Some(w) = self.take() {
            w.wake();
        }
    }
}
