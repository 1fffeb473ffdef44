//! The unbounded channel: sends never wait; a counter tracks queued messages (so the receiver
//! knows when a closed channel is drained).

use crate::sync::Shared as Arc;
use alloc::vec::Vec;
use core::fmt;
use core::task::{Context, Poll};

use super::chan::{Chan, Semaphore as _, TryRecv, Unbounded};
use super::error::{SendError, TryRecvError};
use crate::loom::AtomicUsize;

/// The sending half of an unbounded channel. Clone it for more senders.
///
/// ```
/// let (tx, _rx) = spindle::sync::mpsc::unbounded_channel();
/// let tx2 = tx.clone();
/// tx2.send(1).unwrap();
/// assert!(tx.same_channel(&tx2));
/// ```
pub struct UnboundedSender<T> {
    chan: Arc<Chan<T, Unbounded>>,
}

/// The receiving half of an unbounded channel.
///
/// ```
/// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
/// tx.send(1).unwrap();
/// assert_eq!(rx.try_recv(), Ok(1));
/// ```
pub struct UnboundedReceiver<T> {
    chan: Arc<Chan<T, Unbounded>>,
}

/// Creates an unbounded channel: sends never wait, so memory grows if the receiver falls behind.
///
/// ```
/// use spindle::sync::mpsc;
///
/// spindle::block_on(async {
///     let (tx, mut rx) = mpsc::unbounded_channel();
///     tx.send("hello").unwrap(); // not async: never waits
///     assert_eq!(rx.recv().await, Some("hello"));
/// });
/// ```
pub fn unbounded_channel<T>() -> (UnboundedSender<T>, UnboundedReceiver<T>) {
    let chan = Arc::new(Chan::new(Unbounded(AtomicUsize::new(0))));
    (UnboundedSender { chan: chan.clone() }, UnboundedReceiver { chan })
}

impl<T> UnboundedSender<T> {
    /// Sends a message without waiting.
    ///
    /// # Errors
    /// If the receiver is gone, the message comes back in [`SendError`].
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel();
    /// drop(rx);
    /// assert_eq!(tx.send(1).unwrap_err().0, 1);
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.chan.unbounded_send(value).map_err(SendError)
    }

    /// Waits until the receiver is dropped or closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    ///     drop(rx);
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        self.chan.closed().await
    }

    /// Whether the receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    /// assert!(!tx.is_closed());
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.semaphore.is_closed()
    }

    /// Whether both senders belong to the same channel.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    /// assert!(tx.same_channel(&tx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for UnboundedSender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        UnboundedSender { chan: self.chan.clone() }
    }
}

impl<T> Drop for UnboundedSender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for UnboundedSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::UnboundedSender").field("closed", &self.is_closed()).finish()
    }
}

impl<T> UnboundedReceiver<T> {
    /// Receives the next message, waiting if none is queued. `None` once every sender is gone (or
    /// the receiver closed) and every message was received.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no message was taken.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    ///     tx.send(1).unwrap();
    ///     drop(tx);
    ///     assert_eq!(rx.recv().await, Some(1));
    ///     assert_eq!(rx.recv().await, None);
    /// });
    /// ```
    pub async fn recv(&mut self) -> Option<T> {
        core::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives up to `limit` messages into `buffer` (appending), waiting if none is queued.
    /// Returns how many: `0` only if `limit` is `0` or the channel is closed and drained.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no message was taken.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    ///     for i in 0..4 {
    ///         tx.send(i).unwrap();
    ///     }
    ///     let mut buf = Vec::new();
    ///     assert_eq!(rx.recv_many(&mut buf, 10).await, 4);
    /// });
    /// ```
    pub async fn recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        core::future::poll_fn(|cx| self.poll_recv_many(cx, buffer, limit)).await
    }

    /// Takes a message if one is queued now.
    ///
    /// A message whose `send` returned before this call is always found. If another sender
    /// claimed an earlier place in the queue and is still writing its message, this waits for
    /// that write (a few instructions, unless the sender's thread was preempted; then it yields
    /// its thread until the sender runs), as tokio's `try_recv` does. Without the `std` feature
    /// it does not wait (it could spin forever in an interrupt handler that preempted the
    /// sender) and says `Empty` in that case.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if none is queued; [`TryRecvError::Disconnected`] if none will come.
    ///
    /// ```
    /// use spindle::sync::mpsc::{self, error::TryRecvError};
    /// let (tx, mut rx) = mpsc::unbounded_channel::<u8>();
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    /// ```
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.chan.try_recv().map_err(|e| match e {
            TryRecv::Empty => TryRecvError::Empty,
            TryRecv::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Blocks the thread until a message arrives (for synchronous code; do not call it inside an
    /// async task: it would block that task's worker).
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    /// std::thread::spawn(move || tx.send(3).unwrap());
    /// assert_eq!(rx.blocking_recv(), Some(3));
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv(&mut self) -> Option<T> {
        crate::sync::park::block_on(self.recv())
    }

    /// Blocks the thread until messages arrive, receiving up to `limit`.
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    /// tx.send(1).unwrap();
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.blocking_recv_many(&mut buf, 8), 1);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        crate::sync::park::block_on(self.recv_many(buffer, limit))
    }

    /// Closes the channel without dropping the receiver: sends fail from now on; messages already
    /// sent can still be received.
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    /// tx.send(1).unwrap();
    /// rx.close();
    /// assert!(tx.send(2).is_err());
    /// assert_eq!(rx.try_recv(), Ok(1));
    /// ```
    pub fn close(&mut self) {
        self.chan.close_rx();
    }

    /// Whether the channel is closed: every sender is gone, or [`close`](Self::close) was called.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_rx_closed() || self.chan.sender_count() == 0
    }

    /// Messages queued now.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel();
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no message is queued now.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live senders.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel::<u8>();
    /// assert_eq!(rx.sender_strong_count(), 1);
    /// drop(tx);
    /// assert_eq!(rx.sender_strong_count(), 0);
    /// ```
    pub fn sender_strong_count(&self) -> usize {
        self.chan.sender_count()
    }

    /// Polls for the next message (`Ready(None)` once closed and drained).
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    /// let waker = std::task::Waker::noop();
    /// tx.send(2).unwrap();
    /// assert_eq!(rx.poll_recv(&mut Context::from_waker(&waker)), Poll::Ready(Some(2)));
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.poll_recv(cx)
    }

    /// Polls for up to `limit` messages, appending them to `buffer`.
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    /// tx.send(2).unwrap();
    /// let waker = std::task::Waker::noop();
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.poll_recv_many(&mut Context::from_waker(&waker), &mut buf, 5), Poll::Ready(1));
    /// ```
    pub fn poll_recv_many(&mut self, cx: &mut Context<'_>, buffer: &mut Vec<T>, limit: usize) -> Poll<usize> {
        if limit == 0 {
            return Poll::Ready(0);
        }
        self.chan.poll_recv_many(cx, limit, |v| buffer.push(v))
    }
}

impl<T> Drop for UnboundedReceiver<T> {
    fn drop(&mut self) {
        self.chan.drop_rx();
    }
}

impl<T> fmt::Debug for UnboundedReceiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::UnboundedReceiver").field("len", &self.len()).finish()
    }
}
