//! The channel shared by the bounded and unbounded flavours: the block queue, the receiver's
//! waker, the sender count, and a capacity semaphore (a fair [`BatchSemaphore`] for bounded
//! channels, a message counter for unbounded ones).
//!
//! # Closing
//! - The last sender dropped: it appends the close marker to the queue (after every message, since
//!   every sender finished its sends first) and wakes the receiver, which drains the messages and
//!   then sees the marker.
//! - The receiver closed (or dropped): the semaphore is closed, so new sends fail and get their
//!   value back; senders waiting for capacity wake with that error; `Sender::closed()` waiters are
//!   notified. Permits already handed out may still send; `recv` returns `None` once the queue is
//!   empty and no permit is outstanding (the semaphore is "idle").

use core::task::{Context, Poll};

use super::list::{self, Read};
use crate::cache_padded::CachePadded;
use crate::loom::{fence, AtomicBool, AtomicUsize, Ordering::*, UnsafeCell};
use crate::sync::atomic_waker::AtomicWaker;
use crate::sync::batch::BatchSemaphore;
use crate::sync::notify::Notify;

/// What the channel needs from its capacity accounting.
pub(crate) trait Semaphore {
    /// Whether no message is queued or promised (no permits out).
    fn is_idle(&self) -> bool;
    /// `n` messages left the queue.
    fn add_permits(&self, n: usize);
    /// The receiver closed the channel.
    fn close(&self);
    /// Whether [`close`](Self::close) ran.
    fn is_closed(&self) -> bool;
}

/// Capacity of a bounded channel.
pub(crate) struct Bounded {
    pub(crate) sem: BatchSemaphore,
    pub(crate) bound: usize,
}

impl Semaphore for Bounded {
    fn is_idle(&self) -> bool {
        self.sem.available_permits() == self.bound
    }
    fn add_permits(&self, n: usize) {
        self.sem.release(n);
    }
    fn close(&self) {
        self.sem.close();
    }
    fn is_closed(&self) -> bool {
        self.sem.is_closed()
    }
}

/// Message count of an unbounded channel: `(messages << 1) | closed`.
pub(crate) struct Unbounded(pub(crate) AtomicUsize);

impl Unbounded {
    /// Counts one more message, unless the channel is closed. One `fetch_add`, never a retry loop:
    /// a send that finds the channel closed takes its count back, and since the receiver may have
    /// seen the channel busy meanwhile (it waits for "closed and idle"), `Chan::unbounded_send`
    /// then wakes it.
    fn try_add_message(&self) -> Result<(), AddFailed> {
        let prev = self.0.fetch_add(2, AcqRel);
        assert!(prev < usize::MAX / 2, "spindle: unbounded channel message count overflow");
        if prev & 1 == 1 {
            self.0.fetch_sub(2, AcqRel);
            return Err(AddFailed);
        }
        Ok(())
    }
}

/// The unbounded channel was closed: the message was not counted.
struct AddFailed;

impl<T> Chan<T, Unbounded> {
    /// Sends on an unbounded channel; gives the message back if the receiver is gone.
    pub(crate) fn unbounded_send(&self, value: T) -> Result<(), T> {
        if let Err(AddFailed) = self.semaphore.try_add_message() {
            // Our count was visible for a moment: a receiver waiting for "closed and idle" may have
            // seen it and parked. It is idle again now, so let it look.
            self.rx_notify.waker.wake();
            return Err(value);
        }
        self.send(value);
        Ok(())
    }
}

impl Semaphore for Unbounded {
    fn is_idle(&self) -> bool {
        self.0.load(Acquire) >> 1 == 0
    }
    fn add_permits(&self, n: usize) {
        self.0.fetch_sub(n << 1, Release);
    }
    fn close(&self) {
        self.0.fetch_or(1, Release);
    }
    fn is_closed(&self) -> bool {
        self.0.load(Acquire) & 1 == 1
    }
}

/// Receiver-only state.
struct RxFields<T> {
    list: list::Rx<T>,
    /// The receiver called `close` (or was dropped).
    rx_closed: bool,
    /// The receiver announced itself parked in `rx_notify` and has not withdrawn it yet.
    parked: bool,
}

/// How senders wake the receiver without paying two read-modify-writes on a shared line per
/// message: the receiver announces `parked` only when it is about to wait, and one sender that sees
/// it clears it and takes the waker.
///
/// The two sides form the classic store-buffering pattern, closed with sequentially consistent
/// fences: a sender publishes its message, fences, then reads `parked`; the receiver sets
/// `parked`, fences, then looks at the queue again. The fences are totally ordered, so either the
/// sender sees `parked` (and wakes the receiver) or the receiver sees the message (and takes it).
struct RxNotify {
    parked: AtomicBool,
    waker: AtomicWaker,
}

impl RxNotify {
    /// Sender side, after publishing a message.
    #[inline]
    fn notify(&self) {
        fence(SeqCst);
        // Of the senders that see the receiver parked, the one that clears the flag wakes it; the
        // others skip the waker's read-modify-writes (the receiver will find their messages too).
        if self.parked.load(Acquire) && self.parked.swap(false, AcqRel) {
            self.waker.wake();
        }
    }

    /// Receiver side, before looking at the queue a last time and waiting.
    fn park(&self, waker: &core::task::Waker) {
        self.waker.register(waker);
        // `Release` so a sender that sees `parked` also sees the registered waker.
        self.parked.store(true, Release);
        fence(SeqCst);
    }

    /// Receiver side, once it got messages again: senders stop waking (a waking sender may have
    /// cleared the flag already).
    fn unpark(&self) {
        if self.parked.load(Relaxed) {
            self.parked.store(false, Relaxed);
        }
    }
}

/// The shared channel. The fields every message touches each get their own cache lines: the
/// senders' tail, the receiver's waker, the capacity word, and the receiver's own fields (written
/// on every receive), so no thread's writes evict what another thread is about to read.
pub(crate) struct Chan<T, S> {
    tx: CachePadded<list::Tx<T>>,
    rx_notify: CachePadded<RxNotify>,
    pub(crate) semaphore: CachePadded<S>,
    rx_fields: CachePadded<UnsafeCell<RxFields<T>>>,
    /// Notified (all waiters) when the receiver closes, for `Sender::closed()`.
    notify_rx_closed: Notify,
    tx_count: AtomicUsize,
}

// SAFETY: messages cross threads (`T: Send`); `rx_fields` is only touched by the single receiver
// (the `Receiver` handle is not `Clone`, and its methods take `&mut self` or run in its drop).
unsafe impl<T: Send, S: Send> Send for Chan<T, S> {}
// SAFETY: as above.
unsafe impl<T: Send, S: Sync> Sync for Chan<T, S> {}

impl<T, S: Semaphore> Chan<T, S> {
    pub(crate) fn new(semaphore: S) -> Chan<T, S> {
        let (tx, rx) = list::channel();
        Chan {
            tx: CachePadded(tx),
            rx_notify: CachePadded(RxNotify { parked: AtomicBool::new(false), waker: AtomicWaker::new() }),
            semaphore: CachePadded(semaphore),
            rx_fields: CachePadded(UnsafeCell::new(RxFields { list: rx, rx_closed: false, parked: false })),
            notify_rx_closed: Notify::new(),
            tx_count: AtomicUsize::new(1),
        }
    }

    // ---- sender side ----

    /// Queues a message the caller was given capacity for, and wakes the receiver.
    pub(crate) fn send(&self, value: T) {
        self.tx.push(value);
        self.rx_notify.notify();
    }

    /// A sender handle was cloned.
    pub(crate) fn add_sender(&self) {
        let prev = self.tx_count.fetch_add(1, Relaxed);
        assert!(prev < usize::MAX / 2, "spindle: too many mpsc senders");
    }

    /// A sender handle was dropped; the last one closes the queue.
    pub(crate) fn drop_sender(&self) {
        if self.tx_count.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        self.tx.close();
        self.rx_notify.waker.wake();
    }

    /// Live senders.
    pub(crate) fn sender_count(&self) -> usize {
        self.tx_count.load(Acquire)
    }

    /// Waits until the receiver closes.
    pub(crate) async fn closed(&self) {
        // Create the notification first, then check: a close between the two still completes it.
        let notified = self.notify_rx_closed.notified();
        if self.semaphore.is_closed() {
            return;
        }
        notified.await;
    }

    // ---- receiver side (only the single receiver calls these) ----

    fn with_rx<R>(&self, f: impl FnOnce(&mut RxFields<T>) -> R) -> R {
        // SAFETY: only the receiver calls this, through `&mut Receiver` (or its drop), never
        // re-entrantly.
        self.rx_fields.with_mut(|p| f(unsafe { &mut *p }))
    }

    /// Reads receiver state through `&Receiver` (which may be shared, but never alongside a
    /// `&mut Receiver`).
    fn with_rx_ref<R>(&self, f: impl FnOnce(&RxFields<T>) -> R) -> R {
        // SAFETY: only receiver handles reach this; shared reads cannot overlap a `&mut` use.
        self.rx_fields.with(|p| f(unsafe { &*p }))
    }

    /// Wakes the receiver (a permit was given back after it closed).
    pub(crate) fn wake_rx(&self) {
        self.rx_notify.waker.wake();
    }

    /// Closes the channel from the receiving side.
    pub(crate) fn close_rx(&self) {
        let first = self.with_rx(|rx| !core::mem::replace(&mut rx.rx_closed, true));
        if first {
            self.semaphore.close();
            self.notify_rx_closed.notify_waiters();
        }
    }

    /// Whether the receiver closed.
    pub(crate) fn is_rx_closed(&self) -> bool {
        self.with_rx_ref(|rx| rx.rx_closed)
    }

    /// Messages in the queue (approximate while senders are active).
    pub(crate) fn len(&self) -> usize {
        let tail = self.tx.tail_position();
        let index = self.with_rx_ref(|rx| rx.list.index());
        let n = tail.wrapping_sub(index);
        // Once all senders are gone, one index holds the close marker.
        if n > 0 && self.tx_count.load(Acquire) == 0 {
            n - 1
        } else {
            n
        }
    }

    /// Receives one message, or registers the waker. `Ready(None)`: closed and drained. (The
    /// one-message case of [`poll_recv_many`](Self::poll_recv_many), kept separate because it is
    /// the hot path.)
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.with_rx(|rx| {
            match rx.list.pop(&self.tx) {
                Some(Read::Value(v)) => {
                    self.semaphore.add_permits(1);
                    if rx.parked {
                        rx.parked = false;
                        self.rx_notify.unpark();
                    }
                    return Poll::Ready(Some(v));
                }
                Some(Read::Closed) => return Poll::Ready(None),
                None => {}
            }
            rx.parked = true;
            self.rx_notify.park(cx.waker());
            // Check again: a message published before we parked found nobody to wake.
            match rx.list.pop(&self.tx) {
                Some(Read::Value(v)) => {
                    self.semaphore.add_permits(1);
                    rx.parked = false;
                    self.rx_notify.unpark();
                    Poll::Ready(Some(v))
                }
                Some(Read::Closed) => Poll::Ready(None),
                None if rx.rx_closed && self.semaphore.is_idle() => Poll::Ready(None),
                // A cancelled scope's receive ends like a closed channel (nothing is taken).
                None if crate::structured::cancel_requested() => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
    }

    /// Receives up to `limit` messages into `out` (by calling it), or registers the waker.
    /// `Ready(0)` means the channel is closed and drained.
    pub(crate) fn poll_recv_many(&self, cx: &mut Context<'_>, limit: usize, mut out: impl FnMut(T)) -> Poll<usize> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.with_rx(|rx| {
            let mut drain = |rx: &mut RxFields<T>| -> Option<usize> {
                let mut n = 0;
                while n < limit {
                    match rx.list.pop(&self.tx) {
                        Some(Read::Value(v)) => {
                            out(v);
                            n += 1;
                        }
                        Some(Read::Closed) => {
                            self.semaphore.add_permits(n);
                            debug_assert!(self.semaphore.is_idle());
                            return Some(n);
                        }
                        None => break,
                    }
                }
                if n > 0 {
                    self.semaphore.add_permits(n);
                    return Some(n);
                }
                None
            };
            if let Some(n) = drain(rx) {
                if rx.parked {
                    rx.parked = false;
                    self.rx_notify.unpark();
                }
                return Poll::Ready(n);
            }
            rx.parked = true;
            self.rx_notify.park(cx.waker());
            // Check again: a message published before we parked found nobody to wake.
            if let Some(n) = drain(rx) {
                rx.parked = false;
                self.rx_notify.unpark();
                return Poll::Ready(n);
            }
            // A cancelled scope's receive ends like a closed channel (nothing is taken).
            if (rx.rx_closed && self.semaphore.is_idle()) || crate::structured::cancel_requested() {
                Poll::Ready(0)
            } else {
                Poll::Pending
            }
        })
    }

    /// Takes one message without waiting for a send.
    ///
    /// A sender that claimed the next slot but has not written it yet is waited for (with
    /// `std`; see [`BUSY_SLOT_WAITS`]): a later send may already have returned, and saying
    /// `Empty` then would contradict it (send 2 finished, then `try_recv` says nothing was sent).
    /// The writer is a few instructions from done, unless its thread was preempted, so the wait
    /// spins briefly and then yields the thread. tokio's `try_recv` waits in the same case.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecv> {
        let mut spins = 0u32;
        loop {
            let found = self.with_rx(|rx| match rx.list.pop(&self.tx) {
                Some(Read::Value(v)) => {
                    self.semaphore.add_permits(1);
                    Some(Ok(v))
                }
                Some(Read::Closed) => Some(Err(TryRecv::Disconnected)),
                None if BUSY_SLOT_WAITS && rx.list.next_is_claimed(&self.tx) => None,
                None if rx.rx_closed && self.semaphore.is_idle() => Some(Err(TryRecv::Disconnected)),
                None => Some(Err(TryRecv::Empty)),
            });
            if let Some(result) = found {
                return result;
            }
            spins = spins.saturating_add(1);
            relax_for_busy_slot(spins);
        }
    }

    /// The receiver is going away: close, and drop every queued message now.
    pub(crate) fn drop_rx(&self) {
        self.close_rx();
        self.with_rx(|rx| {
            while let Some(Read::Value(v)) = rx.list.pop(&self.tx) {
                self.semaphore.add_permits(1);
                drop(v);
            }
        });
    }
}

/// Whether `try_recv` waits for a sender that claimed the next slot and is still writing it.
/// With `std` it does (the wait ends when the writer's thread runs). Without `std` it does not:
/// on bare metal a receiver in an interrupt handler that preempted a sender mid-send would spin
/// forever, so there a send still being written counts as not sent yet.
const BUSY_SLOT_WAITS: bool = cfg!(any(feature = "std", loom));

/// One pause of `try_recv`'s wait for a busy slot: spin first, then let the writer's thread run.
fn relax_for_busy_slot(spins: u32) {
    #[cfg(all(feature = "std", not(loom)))]
    if spins > 64 {
        std::thread::yield_now();
        return;
    }
    let _ = spins;
    crate::loom::spin_loop();
}

/// Why `try_recv` returned nothing (mapped to the public error by each flavour).
pub(crate) enum TryRecv {
    Empty,
    Disconnected,
}

impl<T, S> Drop for Chan<T, S> {
    fn drop(&mut self) {
        let tx = &self.tx;
        self.rx_fields.0.with_mut(|p| {
            // SAFETY: we are the last owner.
            let rx = unsafe { &mut *p };
            // Messages sent with permits after the receiver was dropped are still queued.
            while let Some(Read::Value(v)) = rx.list.pop(tx) {
                drop(v);
            }
            // SAFETY: nobody uses the queue any more.
            unsafe { rx.list.free_blocks() };
        });
    }
}
