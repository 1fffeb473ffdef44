//! A one-shot channel: one value, from one sender to one receiver.
//!
//! One allocation holds the value slot, both sides' wakers and a state word:
//!
//! ```text
//!  usize:  [ TX_TASK_SET | CLOSED | VALUE_SENT | RX_TASK_SET ]
//! ```
//!
//! `VALUE_SENT` is set once by the sender (by `send`, or by dropping it: then the slot stays
//! empty and the receiver gets an error). `CLOSED` is set by the receiver (`close` or drop); a
//! `send` that finds it set takes its value back. A `*_TASK_SET` bit hands that side's waker slot
//! to the other side: while it is clear, only the owner touches the slot; once set, the other side
//! may wake through it, so the owner changes it only after clearing the bit *before* the other
//! side's final transition (else it leaves it alone). Wakers are dropped with the allocation.
//!
//! ```
//! use spindle::sync::oneshot;
//!
//! spindle::block_on(async {
//!     let (tx, rx) = oneshot::channel();
//!     spindle::spawn(async move { tx.send(3).unwrap() });
//!     assert_eq!(rx.await, Ok(3));
//! });
//! ```

use crate::sync::Shared as Arc;
use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};

/// The receiver registered a waker in `rx_task`.
const RX_TASK_SET: usize = 1 << 0;
/// The sender finished: the value is in the slot (or the sender was dropped without sending).
const VALUE_SENT: usize = 1 << 1;
/// The receiver closed the channel (or was dropped).
const CLOSED: usize = 1 << 2;
/// The sender registered a waker in `tx_task` (it waits in `closed()`).
const TX_TASK_SET: usize = 1 << 3;

/// Errors of the oneshot channel.
///
/// ```
/// use spindle::sync::oneshot::{self, error::TryRecvError};
/// let (tx, mut rx) = oneshot::channel::<u8>();
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
/// ```
pub mod error {
    use core::fmt;

    /// The sender was dropped without sending a value.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::oneshot::channel::<u8>();
    ///     drop(tx);
    ///     let err: spindle::sync::oneshot::error::RecvError = rx.await.unwrap_err();
    ///     assert!(err.to_string().contains("dropped"));
    /// });
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RecvError(pub(super) ());

    impl fmt::Display for RecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("channel closed: the sender was dropped without sending")
        }
    }

    #[cfg(feature = "std")]
    impl std::error::Error for RecvError {}

    /// Why [`Receiver::try_recv`](super::Receiver::try_recv) returned no value.
    ///
    /// ```
    /// use spindle::sync::oneshot::{self, error::TryRecvError};
    /// let (_tx, mut rx) = oneshot::channel::<u8>();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum TryRecvError {
        /// Nothing was sent yet.
        Empty,
        /// The sender was dropped without sending, the receiver was closed, or the value was
        /// already taken.
        Closed,
    }

    impl fmt::Display for TryRecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                TryRecvError::Empty => f.write_str("channel empty"),
                TryRecvError::Closed => f.write_str("channel closed"),
            }
        }
    }

    #[cfg(feature = "std")]
    impl std::error::Error for TryRecvError {}
}

use error::{RecvError, TryRecvError};

struct Inner<T> {
    state: AtomicUsize,
    /// Written by the sender before `VALUE_SENT`; read by the receiver after it.
    value: UnsafeCell<Option<T>>,
    rx_task: UnsafeCell<Option<Waker>>,
    tx_task: UnsafeCell<Option<Waker>>,
}

// SAFETY: the state word hands the value and the waker slots from one side to the other (module
// docs); a `T` crosses threads, so it must be `Send`.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

/// The sending half: [`send`](Self::send) consumes it.
///
/// ```
/// let (tx, rx) = spindle::sync::oneshot::channel();
/// tx.send(1).unwrap();
/// assert_eq!(spindle::block_on(rx), Ok(1));
/// ```
pub struct Sender<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// The receiving half: a future of the value, or of [`RecvError`] if the sender is dropped.
///
/// # Cancel safety
/// Awaiting `&mut rx` is cancel safe: if the future is dropped before it completes, the value (if
/// it arrives) stays in the channel for the next poll or [`try_recv`](Self::try_recv).
///
/// ```
/// spindle::block_on(async {
///     let (tx, rx) = spindle::sync::oneshot::channel();
///     spindle::spawn(async move { tx.send("done").unwrap() });
///     assert_eq!(rx.await, Ok("done"));
/// });
/// ```
pub struct Receiver<T> {
    inner: Option<Arc<Inner<T>>>,
}

/// Creates a oneshot channel.
///
/// ```
/// use spindle::sync::oneshot;
/// spindle::block_on(async {
///     let (tx, rx) = oneshot::channel::<u8>();
///     drop(tx);
///     assert!(rx.await.is_err()); // the sender went away without sending
/// });
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: AtomicUsize::new(0),
        value: UnsafeCell::new(None),
        rx_task: UnsafeCell::new(None),
        tx_task: UnsafeCell::new(None),
    });
    (Sender { inner: Some(inner.clone()) }, Receiver { inner: Some(inner) })
}

impl<T> Inner<T> {
    /// The sender's final transition: sets `VALUE_SENT` unless the receiver closed first, and
    /// wakes the receiver. Returns whether the value (if any) was delivered.
    fn complete(&self) -> bool {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & CLOSED != 0 {
                return false;
            }
            match self.state.compare_exchange_weak(s, s | VALUE_SENT, AcqRel, Acquire) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        if s & RX_TASK_SET != 0 {
            // SAFETY: `RX_TASK_SET` was set when we completed: the receiver left the slot to us
            // and will not touch it again (it sees `VALUE_SENT` before any change).
            self.rx_task.with(|w| unsafe { (*w).as_ref().map(Waker::wake_by_ref) });
        }
        true
    }

    /// The receiver's close: sets `CLOSED`, wakes a sender waiting in `closed()`. Returns the state
    /// before.
    fn close(&self) -> usize {
        let prev = self.state.fetch_or(CLOSED, AcqRel);
        if prev & TX_TASK_SET != 0 && prev & VALUE_SENT == 0 {
            // SAFETY: the sender left its slot to us (bit set) and has not completed, so it will
            // not change the slot before seeing `CLOSED`.
            self.tx_task.with(|w| unsafe { (*w).as_ref().map(Waker::wake_by_ref) });
        }
        prev
    }

    /// Takes the value. Caller is the receiver and saw `VALUE_SENT`.
    fn take_value(&self) -> Option<T> {
        // SAFETY: after `VALUE_SENT` (read with `Acquire`) the sender never touches the slot.
        self.value.with_mut(|v| unsafe { (*v).take() })
    }

    /// Registers `waker` in the slot guarded by `bit` (`RX_TASK_SET` or `TX_TASK_SET`). Returns
    /// the state after registering; the caller re-checks its completion condition in it.
    ///
    /// # Safety
    /// `slot` is the caller's own slot (the one `bit` guards).
    unsafe fn register(&self, slot: &UnsafeCell<Option<Waker>>, bit: usize, done: usize, waker: &Waker) -> usize {
        let s = self.state.load(Acquire);
        if s & done != 0 {
            return s;
        }
        if s & bit != 0 {
            // SAFETY: the bit is set, so the slot holds our waker; reading it is allowed (the
            // other side only reads it too).
            if self.state_slot_will_wake(slot, waker) {
                return s;
            }
            // Take the slot back before changing it. If the other side completed meanwhile, it
            // may be reading the slot: leave it and report the completion.
            let prev = self.state.fetch_and(!bit, AcqRel);
            if prev & done != 0 {
                self.state.fetch_or(bit, Release);
                return prev;
            }
        }
        // SAFETY: the bit is clear: the slot is ours alone.
        slot.with_mut(|w| unsafe { *w = Some(waker.clone()) });
        self.state.fetch_or(bit, AcqRel) | bit
    }

    fn state_slot_will_wake(&self, slot: &UnsafeCell<Option<Waker>>, waker: &Waker) -> bool {
        // SAFETY: called with the slot's bit set: both sides may only read it.
        slot.with(|w| unsafe { (*w).as_ref().is_some_and(|w| w.will_wake(waker)) })
    }
}

impl<T> Sender<T> {
    /// Sends the value, consuming the sender.
    ///
    /// # Errors
    /// If the receiver was dropped or closed, the value is returned in `Err`.
    ///
    /// ```
    /// use spindle::sync::oneshot;
    /// let (tx, rx) = oneshot::channel();
    /// drop(rx);
    /// assert_eq!(tx.send(5), Err(5)); // nobody to receive it: you get it back
    /// ```
    pub fn send(mut self, value: T) -> Result<(), T> {
        let inner = self.inner.take().expect("spindle: oneshot sender used after send");
        // SAFETY: before `VALUE_SENT` the sender alone owns the slot.
        inner.value.with_mut(|v| unsafe { *v = Some(value) });
        if inner.complete() {
            Ok(())
        } else {
            // The receiver closed first and will never look at the slot: take the value back.
            Err(inner.take_value().expect("spindle: oneshot value vanished"))
        }
    }

    /// Whether the receiver was dropped or closed (a `send` would fail).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::oneshot::channel::<()>();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.state.load(Acquire) & CLOSED != 0)
    }

    /// Waits until the receiver is dropped or closed (to stop computing an unwanted answer).
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// use spindle::sync::oneshot;
    /// spindle::block_on(async {
    ///     let (mut tx, rx) = oneshot::channel::<u8>();
    ///     spindle::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    ///     assert!(tx.is_closed());
    /// });
    /// ```
    pub async fn closed(&mut self) {
        core::future::poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// Polls whether the receiver was dropped or closed, registering `cx`'s waker if not.
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// let (mut tx, rx) = spindle::sync::oneshot::channel::<u8>();
    /// let waker = std::task::Waker::noop();
    /// assert!(tx.poll_closed(&mut Context::from_waker(&waker)).is_pending());
    /// drop(rx);
    /// assert!(tx.poll_closed(&mut Context::from_waker(&waker)).is_ready());
    /// ```
    pub fn poll_closed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let inner = self.inner.as_ref().expect("spindle: oneshot sender used after send");
        // SAFETY: `tx_task` is the sender's slot.
        let s = unsafe { inner.register(&inner.tx_task, TX_TASK_SET, CLOSED, cx.waker()) };
        if s & CLOSED != 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // Dropped without sending: complete with an empty slot, so the receiver gets an error.
            inner.complete();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Sender").field("closed", &self.is_closed()).finish()
    }
}

impl<T> Receiver<T> {
    /// Closes the channel without dropping the receiver: a later `send` fails (and gets its value
    /// back); a value sent before is still received.
    ///
    /// ```
    /// use spindle::sync::oneshot::{self, error::TryRecvError};
    /// let (tx, mut rx) = oneshot::channel::<u8>();
    /// rx.close();
    /// assert_eq!(tx.send(1), Err(1));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// ```
    pub fn close(&mut self) {
        if let Some(inner) = &self.inner {
            inner.close();
        }
    }

    /// Takes the value if it was sent.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if nothing was sent yet; [`TryRecvError::Closed`] if the sender was
    /// dropped without sending, the receiver was closed first, or the value was already taken.
    ///
    /// ```
    /// use spindle::sync::oneshot::{self, error::TryRecvError};
    /// let (tx, mut rx) = oneshot::channel();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.send("hi").unwrap();
    /// assert_eq!(rx.try_recv(), Ok("hi"));
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let Some(inner) = &self.inner else { return Err(TryRecvError::Closed) };
        let s = inner.state.load(Acquire);
        if s & VALUE_SENT != 0 {
            let v = inner.take_value();
            self.inner = None;
            v.ok_or(TryRecvError::Closed)
        } else if s & CLOSED != 0 {
            Err(TryRecvError::Closed)
        } else {
            Err(TryRecvError::Empty)
        }
    }

    /// Blocks the thread until the value arrives (for synchronous code; do not call it inside an
    /// async task: it would block that task's worker).
    ///
    /// # Errors
    /// [`RecvError`] if the sender was dropped without sending.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::oneshot::channel();
    /// std::thread::spawn(move || tx.send(9).unwrap());
    /// assert_eq!(rx.blocking_recv(), Ok(9));
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv(self) -> Result<T, RecvError> {
        super::park::block_on(self)
    }

    /// Whether the value was sent or the channel closed (so receiving would not wait).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::oneshot::channel();
    /// assert!(rx.is_empty());
    /// tx.send(1).unwrap();
    /// assert!(!rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.state.load(Acquire) & VALUE_SENT == 0,
            None => true,
        }
    }

    /// Whether this receiver already produced its value or error (polling it again panics).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::oneshot::channel();
    ///     tx.send(1).unwrap();
    ///     assert_eq!((&mut rx).await, Ok(1));
    ///     assert!(rx.is_terminated());
    /// });
    /// ```
    pub fn is_terminated(&self) -> bool {
        self.inner.is_none()
    }
}

impl<T> Future for Receiver<T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_ref().expect("spindle: oneshot Receiver polled after it completed");
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        // SAFETY: `rx_task` is the receiver's slot.
        let s = unsafe { inner.register(&inner.rx_task, RX_TASK_SET, VALUE_SENT | CLOSED, cx.waker()) };
        if s & VALUE_SENT != 0 {
            let v = inner.take_value();
            self.inner = None;
            Poll::Ready(v.ok_or(RecvError(())))
        } else if s & CLOSED != 0 {
            self.inner = None;
            Poll::Ready(Err(RecvError(())))
        } else if crate::structured::cancel_requested() {
            // A cancelled scope's wait ends; the receiver stays usable (`&mut rx` can wait again).
            Poll::Ready(Err(RecvError(())))
        } else {
            Poll::Pending
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            if inner.close() & VALUE_SENT != 0 {
                // Drop an unreceived value now rather than with the last handle.
                drop(inner.take_value());
            }
        }
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("oneshot::Receiver").field("terminated", &self.is_terminated()).finish()
    }
}
