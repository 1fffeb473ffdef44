//! The bounded channel: capacity is a fair semaphore, so senders wait (in FIFO order) when the
//! channel is full, and capacity is reserved before a message is built.

use crate::sync::Shared as Arc;
use alloc::vec::Vec;
use core::fmt;
use core::task::{Context, Poll};

use super::chan::{Bounded, Chan, Semaphore as _, TryRecv};
use super::error::{SendError, TryRecvError, TrySendError};
use crate::sync::batch::{BatchSemaphore, TryAcquireFailure};

/// The sending half of a bounded channel. Clone it for more senders.
///
/// ```
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::sync::mpsc::channel(2);
///     let tx2 = tx.clone();
///     tx.send(1).await.unwrap();
///     tx2.send(2).await.unwrap();
///     assert_eq!(rx.recv().await, Some(1));
/// });
/// ```
pub struct Sender<T> {
    chan: Arc<Chan<T, Bounded>>,
}

/// The receiving half of a bounded channel.
///
/// ```
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::sync::mpsc::channel(2);
///     tx.send("m").await.unwrap();
///     assert_eq!(rx.recv().await, Some("m"));
/// });
/// ```
pub struct Receiver<T> {
    chan: Arc<Chan<T, Bounded>>,
}

/// Capacity for one message, reserved with [`Sender::reserve`]: sending on it cannot fail or wait.
/// Dropping it unused gives the capacity back.
///
/// ```
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::sync::mpsc::channel(1);
///     let permit: spindle::sync::mpsc::Permit<'_, u8> = tx.reserve().await.unwrap();
///     permit.send(1);
///     assert_eq!(rx.recv().await, Some(1));
/// });
/// ```
#[must_use = "dropping the permit gives the capacity back at once"]
pub struct Permit<'a, T> {
    chan: &'a Chan<T, Bounded>,
}

/// Capacity for one message held with a sender ([`Sender::reserve_owned`]), so it can move into
/// a task. Dropping it unused gives the capacity back.
///
/// ```
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::sync::mpsc::channel(1);
///     let permit: spindle::sync::mpsc::OwnedPermit<u8> = tx.reserve_owned().await.unwrap();
///     let _tx = permit.send(2);
///     assert_eq!(rx.recv().await, Some(2));
/// });
/// ```
#[must_use = "dropping the permit gives the capacity back at once"]
pub struct OwnedPermit<T> {
    sender: Option<Sender<T>>,
}

/// Capacity for several messages ([`Sender::reserve_many`]), handed out one [`Permit`] at a time.
/// Capacity not taken is given back when it is dropped.
///
/// ```
/// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(3);
/// let permits = tx.try_reserve_many(3).unwrap();
/// assert_eq!(permits.count(), 3);
/// ```
#[must_use = "dropping the permits gives the capacity back at once"]
pub struct PermitIterator<'a, T> {
    chan: &'a Chan<T, Bounded>,
    left: usize,
}

/// Creates a bounded channel holding at most `buffer` messages.
///
/// # Panics
/// If `buffer` is zero or above `usize::MAX >> 3`.
///
/// ```
/// use spindle::sync::mpsc;
///
/// spindle::block_on(async {
///     let (tx, mut rx) = mpsc::channel(8);
///     for i in 0..3 {
///         let tx = tx.clone();
///         spindle::spawn(async move { tx.send(i).await.unwrap() });
///     }
///     drop(tx); // the channel ends once every sender is gone
///     let mut sum = 0;
///     while let Some(i) = rx.recv().await {
///         sum += i;
///     }
///     assert_eq!(sum, 3);
/// });
/// ```
pub fn channel<T>(buffer: usize) -> (Sender<T>, Receiver<T>) {
    assert!(buffer > 0, "spindle: mpsc bounded channel requires buffer > 0");
    assert!(buffer <= crate::sync::batch::MAX_PERMITS, "spindle: mpsc channel buffer above usize::MAX >> 3");
    let chan = Arc::new(Chan::new(Bounded { sem: BatchSemaphore::new(buffer), bound: buffer }));
    (Sender { chan: chan.clone() }, Receiver { chan })
}

impl<T> Sender<T> {
    /// Sends a message, waiting for capacity if the channel is full.
    ///
    /// # Errors
    /// If the receiver is gone (dropped or closed), the message comes back in [`SendError`].
    ///
    /// # Cancel safety
    /// If the future is dropped before it completes, the message was not sent (it is dropped with
    /// the future) and no capacity is lost: capacity handed to a cancelled send goes to the next
    /// waiting sender. To keep the message across a cancellation, [`reserve`](Self::reserve)
    /// first and send on the permit.
    ///
    /// ```
    /// use spindle::sync::mpsc;
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = mpsc::channel(1);
    ///     tx.send("a").await.unwrap();
    ///     drop(rx);
    ///     assert_eq!(tx.send("b").await.unwrap_err().0, "b"); // the message comes back
    /// });
    /// ```
    pub async fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.acquire_one().await {
            Ok(()) => {
                self.chan.send(value);
                Ok(())
            }
            Err(()) => Err(SendError(value)),
        }
    }

    /// Takes capacity for one message. `Err` if the receiver is gone.
    async fn acquire_one(&self) -> Result<(), ()> {
        let _exit = WakeClosedRxOnExit(&self.chan);
        // The wait for capacity ends (the message comes back) if the current scope is cancelled.
        crate::structured::or_cancelled(self.chan.semaphore.sem.acquire_fast(1)).await.map_err(|_| ())?.map_err(|_| ())
    }

    /// Sends a message if there is capacity now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] if the channel is full (or senders are waiting for capacity);
    /// [`TrySendError::Closed`] if the receiver is gone. The message comes back in both.
    ///
    /// ```
    /// use spindle::sync::mpsc::{self, error::TrySendError};
    /// let (tx, _rx) = mpsc::channel(1);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.chan.semaphore.sem.try_acquire(1) {
            Ok(()) => {
                self.chan.send(value);
                Ok(())
            }
            Err(TryAcquireFailure::NoPermits) => Err(TrySendError::Full(value)),
            Err(TryAcquireFailure::Closed) => Err(TrySendError::Closed(value)),
        }
    }

    /// Blocks the thread until the message is sent (for synchronous code; do not call it inside an
    /// async task: it would block that task's worker).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    /// std::thread::spawn(move || {
    ///     tx.blocking_send(1).unwrap();
    ///     tx.blocking_send(2).unwrap(); // waits until the receiver made room
    /// });
    /// assert_eq!(rx.blocking_recv(), Some(1));
    /// assert_eq!(rx.blocking_recv(), Some(2));
    /// assert_eq!(rx.blocking_recv(), None);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_send(&self, value: T) -> Result<(), SendError<T>> {
        crate::sync::park::block_on(self.send(value))
    }

    /// Waits for capacity for one message and reserves it.
    ///
    /// # Errors
    /// [`SendError`] if the receiver is gone.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled reservation gives up its place in the queue, and capacity already
    /// handed to it goes to the next waiting sender.
    ///
    /// ```
    /// use spindle::sync::mpsc;
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = mpsc::channel(1);
    ///     let permit = tx.reserve().await.unwrap();
    ///     assert!(tx.try_send(0).is_err()); // the capacity is taken
    ///     permit.send(1);
    ///     assert_eq!(rx.recv().await, Some(1));
    /// });
    /// ```
    pub async fn reserve(&self) -> Result<Permit<'_, T>, SendError<()>> {
        match self.acquire_one().await {
            Ok(()) => Ok(Permit { chan: &self.chan }),
            Err(()) => Err(SendError(())),
        }
    }

    /// Waits for capacity for `n` messages and reserves it all at once.
    ///
    /// # Errors
    /// [`SendError`] if the receiver is gone, or if `n` exceeds the channel's capacity (such a
    /// reservation could never succeed).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`reserve`](Self::reserve).
    ///
    /// ```
    /// use spindle::sync::mpsc;
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = mpsc::channel(4);
    ///     for (i, permit) in tx.reserve_many(3).await.unwrap().enumerate() {
    ///         permit.send(i);
    ///     }
    ///     assert_eq!(rx.recv().await, Some(0));
    ///     assert!(tx.reserve_many(5).await.is_err()); // more than the capacity
    /// });
    /// ```
    pub async fn reserve_many(&self, n: usize) -> Result<PermitIterator<'_, T>, SendError<()>> {
        let _exit = WakeClosedRxOnExit(&self.chan);
        match self.chan.semaphore.sem.acquire_fast(n).await {
            Ok(()) => Ok(PermitIterator { chan: &self.chan, left: n }),
            Err(_) => Err(SendError(())),
        }
    }

    /// Waits for capacity for one message and reserves it, keeping this sender inside the permit
    /// so it can move into a task. [`OwnedPermit::send`] gives the sender back.
    ///
    /// # Errors
    /// [`SendError`] with the sender if the receiver is gone.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`reserve`](Self::reserve) (the sender is dropped with the future).
    ///
    /// ```
    /// use spindle::sync::mpsc;
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = mpsc::channel(1);
    ///     let permit = tx.reserve_owned().await.unwrap();
    ///     spindle::spawn(async move { permit.send(5) });
    ///     assert_eq!(rx.recv().await, Some(5));
    /// });
    /// ```
    pub async fn reserve_owned(self) -> Result<OwnedPermit<T>, SendError<Self>> {
        match self.acquire_one().await {
            Ok(()) => Ok(OwnedPermit { sender: Some(self) }),
            Err(()) => Err(SendError(self)),
        }
    }

    /// Reserves capacity for one message if available now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Closed`].
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// let p = tx.try_reserve().unwrap();
    /// assert!(tx.try_reserve().unwrap_err().is_full());
    /// drop(p);
    /// assert!(tx.try_reserve().is_ok());
    /// ```
    pub fn try_reserve(&self) -> Result<Permit<'_, T>, TrySendError<()>> {
        match self.chan.semaphore.sem.try_acquire(1) {
            Ok(()) => Ok(Permit { chan: &self.chan }),
            Err(TryAcquireFailure::NoPermits) => Err(TrySendError::Full(())),
            Err(TryAcquireFailure::Closed) => Err(TrySendError::Closed(())),
        }
    }

    /// Reserves capacity for `n` messages if available now.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Closed`].
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(2);
    /// assert_eq!(tx.try_reserve_many(2).unwrap().len(), 2);
    /// ```
    pub fn try_reserve_many(&self, n: usize) -> Result<PermitIterator<'_, T>, TrySendError<()>> {
        match self.chan.semaphore.sem.try_acquire(n) {
            Ok(()) => Ok(PermitIterator { chan: &self.chan, left: n }),
            Err(TryAcquireFailure::NoPermits) => Err(TrySendError::Full(())),
            Err(TryAcquireFailure::Closed) => Err(TrySendError::Closed(())),
        }
    }

    /// Reserves capacity for one message if available now, keeping this sender in the permit.
    ///
    /// # Errors
    /// [`TrySendError::Full`] or [`TrySendError::Closed`], with the sender.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// let permit = tx.try_reserve_owned().unwrap();
    /// let tx = permit.release();
    /// assert_eq!(tx.capacity(), 1);
    /// ```
    pub fn try_reserve_owned(self) -> Result<OwnedPermit<T>, TrySendError<Self>> {
        match self.chan.semaphore.sem.try_acquire(1) {
            Ok(()) => Ok(OwnedPermit { sender: Some(self) }),
            Err(TryAcquireFailure::NoPermits) => Err(TrySendError::Full(self)),
            Err(TryAcquireFailure::Closed) => Err(TrySendError::Closed(self)),
        }
    }

    /// Waits until the receiver is dropped or closed.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::mpsc::channel::<u8>(1);
    ///     spindle::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    ///     assert!(tx.is_closed());
    /// });
    /// ```
    pub async fn closed(&self) {
        self.chan.closed().await
    }

    /// Whether the receiver is gone (sends would fail).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.semaphore.is_closed()
    }

    /// Free capacity right now.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel(3);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(tx.capacity(), 2);
    /// ```
    pub fn capacity(&self) -> usize {
        self.chan.semaphore.sem.available_permits()
    }

    /// The capacity the channel was created with.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(3);
    /// assert_eq!(tx.max_capacity(), 3);
    /// ```
    pub fn max_capacity(&self) -> usize {
        self.chan.semaphore.bound
    }

    /// Whether both senders belong to the same channel.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// assert!(tx.same_channel(&tx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender { chan: self.chan.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Sender").field("capacity", &self.capacity()).field("closed", &self.is_closed()).finish()
    }
}

impl<T> Permit<'_, T> {
    /// Sends a message on the reserved capacity. Never waits; if the receiver is gone, the message
    /// is dropped with the channel.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    ///     tx.reserve().await.unwrap().send(1);
    ///     assert_eq!(rx.recv().await, Some(1));
    /// });
    /// ```
    pub fn send(self, value: T) {
        let chan = self.chan;
        core::mem::forget(self);
        chan.send(value);
    }
}

/// Gives capacity back, waking the receiver if that was the last thing it waited for.
fn release_capacity<T>(chan: &Chan<T, Bounded>, n: usize) {
    chan.semaphore.sem.release(n);
    wake_rx_if_closed_and_idle(chan);
}

fn wake_rx_if_closed_and_idle<T>(chan: &Chan<T, Bounded>) {
    if chan.semaphore.is_closed() && chan.semaphore.is_idle() {
        // The receiver closed and waits for outstanding permits before reporting the end.
        chan.wake_rx();
    }
}

/// Lives across a wait for capacity, declared before the wait's future so it is dropped after
/// it. A wait cancelled after capacity was handed to it gives that capacity back in the
/// semaphore's own drop, which knows nothing of the channel: a closed receiver waiting for the
/// last permits to come back would never hear of it. On the way out (done or cancelled) this
/// wakes the receiver if the channel is now closed and idle.
struct WakeClosedRxOnExit<'a, T>(&'a Chan<T, Bounded>);

impl<T> Drop for WakeClosedRxOnExit<'_, T> {
    fn drop(&mut self) {
        wake_rx_if_closed_and_idle(self.0);
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        release_capacity(self.chan, 1);
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Permit").finish()
    }
}

impl<T> OwnedPermit<T> {
    /// Sends a message on the reserved capacity and gives the sender back.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    ///     let tx = tx.reserve_owned().await.unwrap().send(1);
    ///     assert_eq!(rx.recv().await, Some(1));
    ///     drop(tx);
    /// });
    /// ```
    pub fn send(mut self, value: T) -> Sender<T> {
        let sender = self.sender.take().expect("spindle: OwnedPermit without sender");
        sender.chan.send(value);
        sender
    }

    /// Gives the capacity back without sending, returning the sender.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// let tx = tx.try_reserve_owned().unwrap().release();
    /// assert_eq!(tx.capacity(), 1);
    /// ```
    pub fn release(mut self) -> Sender<T> {
        let sender = self.sender.take().expect("spindle: OwnedPermit without sender");
        release_capacity(&sender.chan, 1);
        sender
    }
}

impl<T> Drop for OwnedPermit<T> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            release_capacity(&sender.chan, 1);
        }
    }
}

impl<T> fmt::Debug for OwnedPermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::OwnedPermit").finish()
    }
}

impl<'a, T> Iterator for PermitIterator<'a, T> {
    type Item = Permit<'a, T>;

    fn next(&mut self) -> Option<Permit<'a, T>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(Permit { chan: self.chan })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for PermitIterator<'_, T> {}

impl<T> Drop for PermitIterator<'_, T> {
    fn drop(&mut self) {
        if self.left > 0 {
            release_capacity(self.chan, self.left);
        }
    }
}

impl<T> fmt::Debug for PermitIterator<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::PermitIterator").field("left", &self.left).finish()
    }
}

impl<T> Receiver<T> {
    /// Receives the next message, waiting if none is queued. `None` once every sender is gone
    /// (or the receiver closed) and every message was received.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no message was taken.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    ///     spindle::spawn(async move { tx.send(1).await.unwrap() });
    ///     assert_eq!(rx.recv().await, Some(1));
    ///     assert_eq!(rx.recv().await, None);
    /// });
    /// ```
    pub async fn recv(&mut self) -> Option<T> {
        core::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives up to `limit` messages into `buffer` (appending), waiting if none is queued.
    /// Returns how many were received: `0` only if `limit` is `0` or the channel is closed and
    /// drained.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, no message was taken.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::channel(8);
    ///     for i in 0..5 {
    ///         tx.send(i).await.unwrap();
    ///     }
    ///     let mut buf = Vec::new();
    ///     assert_eq!(rx.recv_many(&mut buf, 3).await, 3);
    ///     assert_eq!(buf, [0, 1, 2]);
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
    /// let (tx, mut rx) = mpsc::channel(1);
    /// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    /// tx.try_send(1).unwrap();
    /// drop(tx);
    /// assert_eq!(rx.try_recv(), Ok(1));
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
    /// let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    /// std::thread::spawn(move || tx.blocking_send(7).unwrap());
    /// assert_eq!(rx.blocking_recv(), Some(7));
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv(&mut self) -> Option<T> {
        crate::sync::park::block_on(self.recv())
    }

    /// Blocks the thread until messages arrive, receiving up to `limit` (see
    /// [`recv_many`](Self::recv_many)).
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::mpsc::channel(4);
    /// tx.try_send(1).unwrap();
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.blocking_recv_many(&mut buf, 4), 1);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_recv_many(&mut self, buffer: &mut Vec<T>, limit: usize) -> usize {
        crate::sync::park::block_on(self.recv_many(buffer, limit))
    }

    /// Closes the channel without dropping the receiver: sends fail from now on (waiting senders
    /// wake with an error), while messages already sent (or with capacity reserved) can still be
    /// received.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::channel(2);
    ///     tx.send(1).await.unwrap();
    ///     rx.close();
    ///     assert!(tx.send(2).await.is_err());
    ///     assert_eq!(rx.recv().await, Some(1));
    ///     assert_eq!(rx.recv().await, None);
    /// });
    /// ```
    pub fn close(&mut self) {
        self.chan.close_rx();
    }

    /// Whether the channel is closed: every sender is gone, or [`close`](Self::close) was called.
    /// Messages may still be queued.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel::<u8>(1);
    /// drop(tx);
    /// assert!(rx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.chan.is_rx_closed() || self.chan.sender_count() == 0
    }

    /// Messages queued now.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel(4);
    /// tx.try_send(1).unwrap();
    /// tx.try_send(2).unwrap();
    /// assert_eq!(rx.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether no message is queued now.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::mpsc::channel::<u8>(4);
    /// assert!(rx.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free capacity right now.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel(4);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(rx.capacity(), 3);
    /// ```
    pub fn capacity(&self) -> usize {
        self.chan.semaphore.sem.available_permits()
    }

    /// The capacity the channel was created with.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::mpsc::channel::<u8>(4);
    /// assert_eq!(rx.max_capacity(), 4);
    /// ```
    pub fn max_capacity(&self) -> usize {
        self.chan.semaphore.bound
    }

    /// Live senders.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel::<u8>(4);
    /// let _tx2 = tx.clone();
    /// assert_eq!(rx.sender_strong_count(), 2);
    /// ```
    pub fn sender_strong_count(&self) -> usize {
        self.chan.sender_count()
    }

    /// Polls for the next message (`Ready(None)` once closed and drained), registering `cx`'s
    /// waker if none is queued.
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// let (tx, mut rx) = spindle::sync::mpsc::channel(1);
    /// let waker = std::task::Waker::noop();
    /// let mut cx = Context::from_waker(&waker);
    /// assert!(rx.poll_recv(&mut cx).is_pending());
    /// tx.try_send(1).unwrap();
    /// assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(1)));
    /// ```
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.chan.poll_recv(cx)
    }

    /// Polls for up to `limit` messages, appending them to `buffer` (see
    /// [`recv_many`](Self::recv_many)).
    ///
    /// ```
    /// use std::task::{Context, Poll};
    /// let (tx, mut rx) = spindle::sync::mpsc::channel(2);
    /// tx.try_send(1).unwrap();
    /// let waker = std::task::Waker::noop();
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.poll_recv_many(&mut Context::from_waker(&waker), &mut buf, 2), Poll::Ready(1));
    /// ```
    pub fn poll_recv_many(&mut self, cx: &mut Context<'_>, buffer: &mut Vec<T>, limit: usize) -> Poll<usize> {
        if limit == 0 {
            return Poll::Ready(0);
        }
        self.chan.poll_recv_many(cx, limit, |v| buffer.push(v))
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.chan.drop_rx();
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpsc::Receiver").field("len", &self.len()).finish()
    }
}
