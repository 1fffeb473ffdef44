//! A multi-producer, multi-consumer broadcast channel: every receiver sees every value.
//!
//! # Contract
//!
//! - The channel keeps the last `capacity` values (rounded up to a power of two) in a ring of
//!   slots. A send writes the next slot, under the tail lock, and wakes every waiting receiver.
//! - Each receiver has its own position. A receiver that falls more than `capacity` values behind
//!   finds its next value overwritten: its next `recv` returns [`RecvError::Lagged(n)`] with the
//!   number of values it missed and moves it to the oldest value still kept, so it can go on.
//! - Values are cloned out to each receiver. A value stays in its slot until the slot is reused
//!   (`capacity` sends later) or the channel is dropped.
//! - When every sender is gone, receivers get the values still kept for them, then
//!   [`RecvError::Closed`]. A send with no receiver fails and returns the value.
//! - Receivers wait on a [`Notify`]: they create their `Notified` before checking for a value, so a
//!   send between the check and the wait still wakes them (`notify_waiters` completes every
//!   `Notified` created before it).
//! - `recv` observes the current cancellation token: in a cancelled scope, task group or deadline,
//!   a wait ends with [`RecvError::Closed`] at its next poll, as `mpsc` and `oneshot` receives do.
//!
//! Lock order: the tail lock, then a slot lock. Receivers read a slot without the tail lock when it
//! holds their value (the common case).
//!
//! ```
//! use spindle::sync::broadcast;
//!
//! spindle::block_on(async {
//!     let (tx, _) = broadcast::channel(8);
//!     let listeners: Vec<_> = (0..3)
//!         .map(|_| {
//!             let mut rx = tx.subscribe();
//!             spindle::spawn(async move { rx.recv().await.unwrap() })
//!         })
//!         .collect();
//!     tx.send("shutdown").unwrap();
//!     for l in listeners {
//!         assert_eq!(l.await.unwrap(), "shutdown");
//!     }
//! });
//! ```
//!
//! [`RecvError::Lagged(n)`]: error::RecvError::Lagged

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;

use super::lock::{Lock, ValueLock};
use super::notify::Notify;
use super::Shared as Arc;
use crate::loom::{AtomicUsize, Ordering::*};

/// Errors of the broadcast channel.
///
/// ```
/// use spindle::sync::broadcast::{self, error::TryRecvError};
/// let (tx, mut rx) = broadcast::channel::<u8>(1);
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
/// ```
pub mod error {
    use core::fmt;

    /// No receiver exists: the value comes back.
    ///
    /// ```
    /// use spindle::sync::broadcast;
    /// let (tx, rx) = broadcast::channel(1);
    /// drop(rx);
    /// let err: broadcast::error::SendError<u8> = tx.send(3).unwrap_err();
    /// assert_eq!(err.0, 3);
    /// ```
    #[derive(PartialEq, Eq, Clone, Copy)]
    pub struct SendError<T>(pub T);

    impl<T> SendError<T> {
        /// The value that could not be sent.
        ///
        /// ```
        /// let (tx, rx) = spindle::sync::broadcast::channel(1);
        /// drop(rx);
        /// assert_eq!(tx.send("x").unwrap_err().into_inner(), "x");
        /// ```
        pub fn into_inner(self) -> T {
            self.0
        }
    }

    impl<T> fmt::Debug for SendError<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SendError").finish_non_exhaustive()
        }
    }

    impl<T> fmt::Display for SendError<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("channel closed: no receiver")
        }
    }

    #[cfg(feature = "std")]
    impl<T> std::error::Error for SendError<T> {}

    /// Why `recv` returned no value.
    ///
    /// ```
    /// use spindle::sync::broadcast::{self, error::RecvError};
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = broadcast::channel::<u8>(1);
    ///     drop(tx);
    ///     assert_eq!(rx.recv().await, Err(RecvError::Closed));
    /// });
    /// ```
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    pub enum RecvError {
        /// Every sender is gone and every value kept for this receiver was received; also what
        /// a waiting `recv` returns when the current cancellation token (scope, task group,
        /// deadline) is cancelled.
        Closed,
        /// This receiver fell behind and missed this many values; the next `recv` returns the
        /// oldest value still kept.
        Lagged(u64),
    }

    impl fmt::Display for RecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                RecvError::Closed => f.write_str("channel closed"),
                RecvError::Lagged(n) => write!(f, "receiver lagged behind and missed {n} values"),
            }
        }
    }

    #[cfg(feature = "std")]
    impl std::error::Error for RecvError {}

    /// Why `try_recv` returned no value.
    ///
    /// ```
    /// use spindle::sync::broadcast::{self, error::TryRecvError};
    /// let (_tx, mut rx) = broadcast::channel::<u8>(1);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// ```
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    pub enum TryRecvError {
        /// No new value now.
        Empty,
        /// Every sender is gone and every value kept for this receiver was received.
        Closed,
        /// This receiver fell behind and missed this many values.
        Lagged(u64),
    }

    impl fmt::Display for TryRecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TryRecvError::Empty => f.write_str("channel empty"),
                TryRecvError::Closed => f.write_str("channel closed"),
                TryRecvError::Lagged(n) => write!(f, "receiver lagged behind and missed {n} values"),
            }
        }
    }

    #[cfg(feature = "std")]
    impl std::error::Error for TryRecvError {}
}

use error::{RecvError, SendError, TryRecvError};

struct Slot<T> {
    /// Receivers that have not read this value yet (for `Sender::len`).
    rem: AtomicUsize,
    /// The position written here last.
    pos: u64,
    val: Option<T>,
}

struct Tail {
    /// The position the next send writes.
    pos: u64,
    rx_cnt: usize,
    closed: bool,
}

struct Shared<T> {
    buffer: Box<[ValueLock<Slot<T>>]>,
    mask: usize,
    tail: Lock<Tail>,
    num_tx: AtomicUsize,
    /// Woken (all) on every send and on close.
    notify_rx: Notify,
    /// Woken (all) when the last receiver goes, for `Sender::closed`.
    notify_no_rx: Notify,
}

/// The sending half. Clone it for more senders.
///
/// ```
/// let (tx, _rx) = spindle::sync::broadcast::channel(4);
/// let tx2 = tx.clone();
/// tx2.send(1).unwrap();
/// assert_eq!(tx.len(), 1);
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half. Get more with [`Sender::subscribe`] or [`Receiver::resubscribe`].
///
/// ```
/// let (tx, mut rx) = spindle::sync::broadcast::channel(4);
/// tx.send("hi").unwrap();
/// assert_eq!(rx.try_recv(), Ok("hi"));
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    next: u64,
}

/// Creates a broadcast channel keeping the last `capacity` values (rounded up to a power of two).
///
/// # Panics
/// If `capacity` is zero or above `usize::MAX / 2`.
///
/// ```
/// use spindle::sync::broadcast;
///
/// spindle::block_on(async {
///     let (tx, mut rx1) = broadcast::channel(16);
///     let mut rx2 = tx.subscribe();
///     tx.send(10).unwrap();
///     assert_eq!(rx1.recv().await, Ok(10));
///     assert_eq!(rx2.recv().await, Ok(10)); // every receiver gets every value
/// });
/// ```
pub fn channel<T: Clone>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    assert!(capacity > 0, "spindle: broadcast channel capacity must be greater than 0");
    assert!(capacity <= usize::MAX >> 1, "spindle: broadcast channel capacity above usize::MAX / 2");
    let cap = capacity.next_power_of_two();
    let buffer: Vec<_> = (0..cap)
        .map(|i| {
            // Marked as written one lap ago, so no receiver mistakes it for a value.
            ValueLock::new(Slot { rem: AtomicUsize::new(0), pos: (i as u64).wrapping_sub(cap as u64), val: None })
        })
        .collect();
    let shared = Arc::new(Shared {
        buffer: buffer.into_boxed_slice(),
        mask: cap - 1,
        tail: Lock::new(Tail { pos: 0, rx_cnt: 1, closed: false }),
        num_tx: AtomicUsize::new(1),
        notify_rx: Notify::new(),
        notify_no_rx: Notify::new(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared, next: 0 })
}

impl<T> Shared<T> {
    fn slot(&self, pos: u64) -> &ValueLock<Slot<T>> {
        &self.buffer[(pos as usize) & self.mask]
    }

    fn capacity(&self) -> usize {
        self.mask + 1
    }
}

impl<T> Sender<T> {
    /// Sends a value to every current receiver. Returns how many receivers it was sent to.
    ///
    /// # Errors
    /// If there is no receiver, the value comes back in [`SendError`].
    ///
    /// ```
    /// use spindle::sync::broadcast;
    /// let (tx, rx) = broadcast::channel(4);
    /// assert_eq!(tx.send(1), Ok(1));
    /// drop(rx);
    /// assert_eq!(tx.send(2).unwrap_err().0, 2);
    /// ```
    pub fn send(&self, value: T) -> Result<usize, SendError<T>> {
        let shared = &*self.shared;
        let mut tail = shared.tail.lock();
        if tail.rx_cnt == 0 {
            return Err(SendError(value));
        }
        let pos = tail.pos;
        let receivers = tail.rx_cnt;
        tail.pos = tail.pos.wrapping_add(1);
        let old = {
            let mut slot = shared.slot(pos).write();
            slot.pos = pos;
            slot.rem.store(receivers, Release);
            slot.val.replace(value)
        };
        drop(tail);
        shared.notify_rx.notify_waiters();
        // The overwritten value is dropped outside every lock.
        drop(old);
        Ok(receivers)
    }

    /// A new receiver that will see every value sent from now on.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// let mut rx2 = tx.subscribe();
    /// tx.send(3).unwrap();
    /// assert_eq!(rx2.try_recv(), Ok(3));
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        new_receiver(&self.shared)
    }

    /// How many receivers exist.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// assert_eq!(tx.receiver_count(), 1);
    /// drop(rx);
    /// assert_eq!(tx.receiver_count(), 0);
    /// ```
    pub fn receiver_count(&self) -> usize {
        self.shared.tail.lock().rx_cnt
    }

    /// Values kept that some receiver alive when they were sent has not read yet.
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// assert_eq!(tx.len(), 2);
    /// rx.try_recv().unwrap();
    /// assert_eq!(tx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let tail = self.shared.tail.lock();
        let cap = self.shared.capacity() as u64;
        let oldest = tail.pos.saturating_sub(cap);
        (oldest..tail.pos)
            .filter(|&p| {
                let slot = self.shared.slot(p).read();
                slot.pos == p && slot.rem.load(Acquire) > 0
            })
            .count()
    }

    /// Whether no value is waiting for any receiver.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// assert!(tx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every receiver is gone.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    ///     drop(rx);
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.notify_no_rx.notified();
            if self.shared.tail.lock().rx_cnt == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Whether both senders belong to the same channel.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// assert!(tx.same_channel(&tx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

fn new_receiver<T>(shared: &Arc<Shared<T>>) -> Receiver<T> {
    let mut tail = shared.tail.lock();
    tail.rx_cnt = tail.rx_cnt.checked_add(1).expect("spindle: too many broadcast receivers");
    let next = tail.pos;
    drop(tail);
    Receiver { shared: shared.clone(), next }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.num_tx.fetch_add(1, Relaxed);
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.num_tx.fetch_sub(1, AcqRel) == 1 {
            self.shared.tail.lock().closed = true;
            self.shared.notify_rx.notify_waiters();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Sender").finish_non_exhaustive()
    }
}

/// What a receiver found at its position.
enum Found<T> {
    Value(T),
    Empty,
}

/// Reads the value at `*next` (advancing it), or reports that none is there yet, or that it was
/// overwritten (moving `*next` to the oldest value kept).
fn try_recv_at<T: Clone>(shared: &Shared<T>, next: &mut u64) -> Result<Found<T>, RecvError> {
    {
        let slot = shared.slot(*next).read();
        if slot.pos == *next {
            return Ok(Found::Value(take(&slot, next)));
        }
    }
    // Not there: nothing new yet, or overwritten (we lagged). Decide under the tail lock, where the
    // slot and the tail position agree.
    let tail = shared.tail.lock();
    let slot = shared.slot(*next).read();
    if slot.pos == *next {
        drop(tail);
        return Ok(Found::Value(take(&slot, next)));
    }
    if tail.pos == *next {
        return if tail.closed { Err(RecvError::Closed) } else { Ok(Found::Empty) };
    }
    // The slot holds a newer value: skip to the oldest value still kept.
    let oldest = tail.pos.wrapping_sub(shared.capacity() as u64);
    let missed = oldest.wrapping_sub(*next);
    *next = oldest;
    Err(RecvError::Lagged(missed))
}

fn take<T: Clone>(slot: &Slot<T>, next: &mut u64) -> T {
    *next = next.wrapping_add(1);
    slot.rem.fetch_sub(1, AcqRel);
    slot.val.clone().expect("spindle: broadcast slot written without a value")
}

impl<T: Clone> Receiver<T> {
    /// Receives the next value, waiting if there is none.
    ///
    /// # Errors
    /// [`RecvError::Lagged`] if this receiver fell behind (the next call goes on from the oldest
    /// value kept); [`RecvError::Closed`] once every sender is gone and everything was received,
    /// or when the wait is cancelled (below).
    ///
    /// # Cancellation
    /// `recv` observes the current cancellation token (the one the enclosing `scope!`,
    /// `TaskGroup`, deadline or `with_token` makes current while it polls): when it is
    /// cancelled, a `recv` that would wait returns [`RecvError::Closed`] at its next poll instead,
    /// as `mpsc` receives (`None`) and `oneshot` receives (`RecvError`) do. A value already
    /// there is still returned, nothing is taken by the cancelled wait, and the receiver stays
    /// usable ([`is_closed`](Self::is_closed) tells a real close apart).
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no value was taken.
    ///
    /// ```
    /// use spindle::sync::broadcast::{self, error::RecvError};
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = broadcast::channel(2);
    ///     for i in 0..5 {
    ///         tx.send(i).unwrap();
    ///     }
    ///     assert_eq!(rx.recv().await, Err(RecvError::Lagged(3))); // only the last 2 are kept
    ///     assert_eq!(rx.recv().await, Ok(3));
    ///     assert_eq!(rx.recv().await, Ok(4));
    ///     drop(tx);
    ///     assert_eq!(rx.recv().await, Err(RecvError::Closed));
    /// });
    /// ```
    pub async fn recv(&mut self) -> Result<T, RecvError> {
        let Receiver { shared, next } = self;
        loop {
            // Created before the check, so a send between the check and the wait still wakes us.
            let notified = shared.notify_rx.notified();
            match try_recv_at(shared, next)? {
                Found::Value(v) => return Ok(v),
                // A wait in a cancelled scope (or group, deadline, `with_token`) ends like a
                // closed channel; nothing was taken, so the receiver can `recv` again later.
                Found::Empty => {
                    if crate::structured::or_cancelled(notified).await.is_err() {
                        return Err(RecvError::Closed);
                    }
                }
            }
        }
    }

    /// Takes the next value if there is one now.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`], [`TryRecvError::Lagged`] or [`TryRecvError::Closed`].
    ///
    /// ```
    /// use spindle::sync::broadcast::{self, error::TryRecvError};
    /// let (tx, mut rx) = broadcast::channel(4);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        match try_recv_at(&self.shared, &mut self.next) {
            Ok(Found::Value(v)) => Ok(v),
            Ok(Found::Empty) => Err(TryRecvError::Empty),
            Err(RecvError::Closed) => Err(TryRecvError::Closed),
            Err(RecvError::Lagged(n)) => Err(TryRecvError::Lagged(n)),
        }
    }

    /// Blocks the thread until a value arrives (for synchronous code; do not call it inside an
    /// async task: it would block that task's worker).
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::broadcast::channel(4);
    /// std::thread::spawn(move || tx.send(8).unwrap());
    /// assert_eq!(rx.blocking_recv(), Ok(8));
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv(&mut self) -> Result<T, RecvError> {
        super::park::block_on(self.recv())
    }

    /// A new receiver starting at the current end (it sees values sent from now on).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// tx.send(1).unwrap();
    /// let mut rx2 = rx.resubscribe();
    /// assert!(rx2.try_recv().is_err()); // starts after the 1
    /// ```
    pub fn resubscribe(&self) -> Receiver<T> {
        new_receiver(&self.shared)
    }
}

impl<T> Receiver<T> {
    /// Values kept that this receiver has not read yet.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::broadcast::channel(4);
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let tail = self.shared.tail.lock();
        let behind = tail.pos.wrapping_sub(self.next);
        behind.min(self.shared.capacity() as u64) as usize
    }

    /// Whether this receiver has read every value kept.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every sender is gone (values may still be kept for this receiver).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.tail.lock().closed
    }

    /// Whether both receivers belong to the same channel.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::broadcast::channel::<u8>(4);
    /// assert!(rx.same_channel(&tx.subscribe()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let shared = &*self.shared;
        let mut tail = shared.tail.lock();
        tail.rx_cnt -= 1;
        let last = tail.rx_cnt == 0;
        // Values kept for us will never be read by us: stop counting us in their `rem`.
        let cap = shared.capacity() as u64;
        let start = if tail.pos.wrapping_sub(self.next) > cap { tail.pos.wrapping_sub(cap) } else { self.next };
        let mut p = start;
        while p != tail.pos {
            let slot = shared.slot(p).read();
            if slot.pos == p {
                slot.rem.fetch_sub(1, AcqRel);
            }
            p = p.wrapping_add(1);
        }
        drop(tail);
        if last {
            shared.notify_no_rx.notify_waiters();
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("broadcast::Receiver").field("next", &self.next).finish()
    }
}
