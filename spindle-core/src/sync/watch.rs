//! A single-value channel where receivers watch for changes: senders replace (or modify) the
//! value, receivers see the latest one and can wait until it changes.
//!
//! # Contract
//!
//! - The value lives behind a reader-writer lock; a state word holds a version (bumped by every
//!   change, while the write lock is held) and a `CLOSED` bit (set when the last sender goes).
//! - Each receiver remembers the version it last saw. [`Receiver::changed`] completes when the
//!   version moves (marking it seen) or fails once the channel is closed with nothing unseen.
//!   [`Receiver::borrow_and_update`] reads and marks seen; [`Receiver::borrow`] only reads.
//! - Intermediate values may be skipped: a receiver sees the latest value, not every value.
//! - Receivers wait on a [`Notify`]; `changed` creates its `Notified` before checking the version,
//!   so a change between the check and the wait still wakes it.
//! - `changed` (and `wait_for`) observe the current cancellation token: in a cancelled scope,
//!   task group or deadline, a wait ends with [`RecvError`](error::RecvError) at its next poll,
//!   as `mpsc` and `oneshot` receives do.
//!
//! ```
//! use spindle::sync::watch;
//!
//! spindle::block_on(async {
//!     let (tx, mut rx) = watch::channel("starting");
//!     spindle::spawn(async move { tx.send("ready").unwrap() });
//!     rx.changed().await.unwrap();
//!     assert_eq!(*rx.borrow_and_update(), "ready");
//! });
//! ```

use core::fmt;
use core::ops::Deref;

use super::lock::{ValueLock, ValueReadGuard};
use super::notify::Notify;
use super::Shared as Arc;
use crate::loom::{AtomicUsize, Ordering::*};

/// Set once every sender is gone.
const CLOSED: usize = 1 << 0;
/// One change, in the version count held above `CLOSED`.
const VERSION_ONE: usize = 1 << 1;

/// Errors of the watch channel.
///
/// ```
/// let (tx, rx) = spindle::sync::watch::channel(0);
/// drop(tx);
/// let _err: spindle::sync::watch::error::RecvError = rx.has_changed().unwrap_err();
/// ```
pub mod error {
    use core::fmt;

    /// No receiver exists: the value comes back.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// drop(rx);
    /// let spindle::sync::watch::error::SendError(back) = tx.send(1).unwrap_err();
    /// assert_eq!(back, 1);
    /// ```
    #[derive(PartialEq, Eq, Clone, Copy)]
    pub struct SendError<T>(pub T);

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

    /// Every sender is gone (and, for `changed`, the latest value was already seen), or a
    /// waiting `changed`/`wait_for` was cancelled by the current cancellation token (scope, task
    /// group, deadline).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::watch::channel(0);
    ///     drop(tx);
    ///     let err: spindle::sync::watch::error::RecvError = rx.changed().await.unwrap_err();
    ///     assert!(err.to_string().contains("sender"));
    /// });
    /// ```
    #[derive(Debug, PartialEq, Eq, Clone, Copy)]
    pub struct RecvError(pub(super) ());

    impl fmt::Display for RecvError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("channel closed: every sender is gone (or the wait was cancelled)")
        }
    }

    #[cfg(feature = "std")]
    impl std::error::Error for RecvError {}
}

use error::{RecvError, SendError};

struct Shared<T> {
    value: ValueLock<T>,
    /// `(version << 1) | CLOSED`.
    state: AtomicUsize,
    rx_count: AtomicUsize,
    tx_count: AtomicUsize,
    /// Woken (all) on every change and on close.
    notify_rx: Notify,
    /// Woken (all) when the last receiver goes.
    notify_tx: Notify,
}

/// The sending half. Clone it for more senders; the channel closes when the last one goes.
///
/// ```
/// let (tx, rx) = spindle::sync::watch::channel(0);
/// tx.clone().send(1).unwrap();
/// assert_eq!(*rx.borrow(), 1);
/// ```
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// A receiving half. Clone it (the clone has seen what this one has) or use
/// [`Sender::subscribe`].
///
/// ```
/// let (tx, rx) = spindle::sync::watch::channel("a");
/// let rx2 = rx.clone();
/// tx.send("b").unwrap();
/// assert_eq!(*rx2.borrow(), "b");
/// ```
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// The version this receiver last saw (with the `CLOSED` bit clear).
    version: usize,
}

/// A read guard on the current value. Holding it blocks senders: keep it short, and never across
/// an `.await`.
///
/// ```
/// let (_tx, rx) = spindle::sync::watch::channel(vec![1, 2]);
/// let r: spindle::sync::watch::Ref<'_, Vec<i32>> = rx.borrow();
/// assert_eq!(r.len(), 2);
/// ```
pub struct Ref<'a, T> {
    guard: ValueReadGuard<'a, T>,
    has_changed: bool,
}

/// Creates a watch channel holding `init`. The receiver starts with `init` marked as seen.
///
/// ```
/// let (tx, rx) = spindle::sync::watch::channel(1);
/// assert_eq!(*rx.borrow(), 1);
/// tx.send(2).unwrap();
/// assert_eq!(*rx.borrow(), 2);
/// ```
pub fn channel<T>(init: T) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        value: ValueLock::new(init),
        state: AtomicUsize::new(0),
        rx_count: AtomicUsize::new(1),
        tx_count: AtomicUsize::new(1),
        notify_rx: Notify::new(),
        notify_tx: Notify::new(),
    });
    (Sender { shared: shared.clone() }, Receiver { shared, version: 0 })
}

impl<T> Receiver<T> {
    /// The current value, without marking it seen.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// tx.send(1).unwrap();
    /// let r = rx.borrow();
    /// assert_eq!(*r, 1);
    /// assert!(r.has_changed());
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        let guard = self.shared.value.read();
        // Read under the lock: versions change only under the write lock.
        let version = self.shared.state.load(Acquire) & !CLOSED;
        Ref { guard, has_changed: version != self.version }
    }

    /// The current value, marking it seen.
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::watch::channel(0);
    /// tx.send(1).unwrap();
    /// assert!(rx.borrow_and_update().has_changed());
    /// assert!(!rx.has_changed().unwrap());
    /// ```
    pub fn borrow_and_update(&mut self) -> Ref<'_, T> {
        let guard = self.shared.value.read();
        let version = self.shared.state.load(Acquire) & !CLOSED;
        let has_changed = version != self.version;
        self.version = version;
        Ref { guard, has_changed }
    }

    /// Whether a value this receiver has not seen was sent.
    ///
    /// # Errors
    /// [`RecvError`] if every sender is gone.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// assert_eq!(rx.has_changed(), Ok(false));
    /// tx.send(1).unwrap();
    /// assert_eq!(rx.has_changed(), Ok(true));
    /// drop(tx);
    /// assert!(rx.has_changed().is_err());
    /// ```
    pub fn has_changed(&self) -> Result<bool, RecvError> {
        let s = self.shared.state.load(Acquire);
        if s & CLOSED != 0 {
            return Err(RecvError(()));
        }
        Ok(s & !CLOSED != self.version)
    }

    /// Marks the current value as not seen, so the next [`changed`](Self::changed) completes at once.
    ///
    /// ```
    /// let (_tx, mut rx) = spindle::sync::watch::channel(0);
    /// rx.mark_changed();
    /// assert_eq!(rx.has_changed(), Ok(true));
    /// ```
    pub fn mark_changed(&mut self) {
        self.version = self.version.wrapping_sub(VERSION_ONE);
    }

    /// Marks the current value as seen.
    ///
    /// ```
    /// let (tx, mut rx) = spindle::sync::watch::channel(0);
    /// tx.send(1).unwrap();
    /// rx.mark_unchanged();
    /// assert_eq!(rx.has_changed(), Ok(false));
    /// ```
    pub fn mark_unchanged(&mut self) {
        self.version = self.shared.state.load(Acquire) & !CLOSED;
    }

    /// Waits until a value this receiver has not seen is sent, and marks it seen.
    ///
    /// # Errors
    /// [`RecvError`] if every sender is gone and the latest value was already seen, or when the
    /// wait is cancelled (below).
    ///
    /// # Cancellation
    /// `changed` observes the current cancellation token (the one the enclosing `scope!`,
    /// `TaskGroup`, deadline or `with_token` makes current while it polls): when it is
    /// cancelled, a `changed` that would wait returns [`RecvError`] at its next poll instead, as
    /// `mpsc` receives (`None`) and `oneshot` receives (`RecvError`) do. A change already there is
    /// still reported, nothing is marked seen by the cancelled wait, and the receiver stays
    /// usable. [`wait_for`](Self::wait_for) ends the same way.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped before it completes, nothing was marked seen.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::watch::channel(0);
    ///     spindle::spawn(async move {
    ///         tx.send(5).unwrap();
    ///     });
    ///     rx.changed().await.unwrap();
    ///     assert_eq!(*rx.borrow(), 5);
    ///     assert!(rx.changed().await.is_err()); // the sender is gone
    /// });
    /// ```
    pub async fn changed(&mut self) -> Result<(), RecvError> {
        changed(&self.shared, &mut self.version).await
    }

    /// Waits until the value satisfies `f` (checking the current value first), marks it seen and
    /// returns a read guard on it.
    ///
    /// # Errors
    /// [`RecvError`] if every sender is gone before a value satisfying `f` appears, or the wait
    /// is cancelled (see [`changed`](Self::changed)).
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, mut rx) = spindle::sync::watch::channel(0);
    ///     spindle::spawn(async move {
    ///         for i in 1..=10 {
    ///             tx.send(i).unwrap();
    ///         }
    ///     });
    ///     let v = rx.wait_for(|v| *v >= 10).await.unwrap();
    ///     assert_eq!(*v, 10);
    /// });
    /// ```
    pub async fn wait_for(&mut self, mut f: impl FnMut(&T) -> bool) -> Result<Ref<'_, T>, RecvError> {
        let Receiver { shared, version } = self;
        let mut closed = false;
        loop {
            {
                let guard = shared.value.read();
                let current = shared.state.load(Acquire) & !CLOSED;
                let has_changed = current != *version;
                *version = current;
                if (!closed || has_changed) && f(&guard) {
                    return Ok(Ref { guard, has_changed });
                }
            }
            if closed {
                return Err(RecvError(()));
            }
            closed = changed(shared, version).await.is_err();
        }
    }

    /// Whether both receivers belong to the same channel.
    ///
    /// ```
    /// let (_tx, rx) = spindle::sync::watch::channel(0);
    /// assert!(rx.same_channel(&rx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// Waits for the version to move past `*version` (then records it), or for the close.
async fn changed<T>(shared: &Shared<T>, version: &mut usize) -> Result<(), RecvError> {
    loop {
        // Created before the check, so a change between the check and the wait still wakes us.
        let notified = shared.notify_rx.notified();
        let s = shared.state.load(Acquire);
        if s & !CLOSED != *version {
            *version = s & !CLOSED;
            return Ok(());
        }
        if s & CLOSED != 0 {
            return Err(RecvError(()));
        }
        // A wait in a cancelled scope (or group, deadline, `with_token`) ends like a closed
        // channel; nothing was marked seen.
        if crate::structured::or_cancelled(notified).await.is_err() {
            return Err(RecvError(()));
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.shared.rx_count.fetch_add(1, Relaxed);
        Receiver { shared: self.shared.clone(), version: self.version }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        if self.shared.rx_count.fetch_sub(1, AcqRel) == 1 {
            self.shared.notify_tx.notify_waiters();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Receiver").field("value", &*self.borrow()).finish()
    }
}

impl<T> Sender<T> {
    /// Replaces the value and notifies the receivers.
    ///
    /// # Errors
    /// If there is no receiver, the value comes back in [`SendError`] (and the stored value is
    /// unchanged).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// tx.send(1).unwrap();
    /// drop(rx);
    /// assert_eq!(tx.send(2).unwrap_err().0, 2);
    /// ```
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        if self.shared.rx_count.load(Acquire) == 0 {
            return Err(SendError(value));
        }
        self.send_replace(value);
        Ok(())
    }

    /// Replaces the value (even with no receiver) and returns the old one.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::watch::channel(1);
    /// assert_eq!(tx.send_replace(2), 1);
    /// ```
    pub fn send_replace(&self, value: T) -> T {
        let mut value = Some(value);
        let mut old = None;
        self.send_if_modified(|v| {
            old = Some(core::mem::replace(v, value.take().expect("called once")));
            true
        });
        old.expect("called once")
    }

    /// Modifies the value in place and notifies the receivers (even with no receiver).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(vec![1]);
    /// tx.send_modify(|v| v.push(2));
    /// assert_eq!(*rx.borrow(), [1, 2]);
    /// ```
    pub fn send_modify(&self, modify: impl FnOnce(&mut T)) {
        self.send_if_modified(|v| {
            modify(v);
            true
        });
    }

    /// Modifies the value in place; notifies the receivers only if `modify` returns `true`.
    /// Returns what `modify` returned.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// assert!(!tx.send_if_modified(|_| false));
    /// assert_eq!(rx.has_changed(), Ok(false));
    /// assert!(tx.send_if_modified(|v| { *v = 3; true }));
    /// assert_eq!(rx.has_changed(), Ok(true));
    /// ```
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut T) -> bool) -> bool {
        {
            let mut guard = self.shared.value.write();
            if !modify(&mut guard) {
                return false;
            }
            // Bumped while the write lock is held, so a reader sees the value and its version
            // together.
            self.shared.state.fetch_add(VERSION_ONE, Release);
        }
        self.shared.notify_rx.notify_waiters();
        true
    }

    /// The current value.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::watch::channel(3);
    /// assert_eq!(*tx.borrow(), 3);
    /// ```
    pub fn borrow(&self) -> Ref<'_, T> {
        Ref { guard: self.shared.value.read(), has_changed: false }
    }

    /// Whether every receiver is gone.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// drop(rx);
    /// assert!(tx.is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.rx_count.load(Acquire) == 0
    }

    /// Waits until every receiver is gone.
    ///
    /// # Cancel safety
    /// Cancel safe.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::watch::channel(0);
    ///     spindle::spawn(async move { drop(rx) });
    ///     tx.closed().await;
    /// });
    /// ```
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.notify_tx.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// A new receiver, with the current value marked seen.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::watch::channel(0);
    /// let rx2 = tx.subscribe();
    /// assert_eq!(rx2.has_changed(), Ok(false));
    /// ```
    pub fn subscribe(&self) -> Receiver<T> {
        self.shared.rx_count.fetch_add(1, Relaxed);
        let version = self.shared.state.load(Acquire) & !CLOSED;
        Receiver { shared: self.shared.clone(), version }
    }

    /// How many receivers exist.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// let _rx2 = rx.clone();
    /// assert_eq!(tx.receiver_count(), 2);
    /// ```
    pub fn receiver_count(&self) -> usize {
        self.shared.rx_count.load(Acquire)
    }

    /// How many senders exist.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::watch::channel(0);
    /// let _tx2 = tx.clone();
    /// assert_eq!(tx.sender_count(), 2);
    /// ```
    pub fn sender_count(&self) -> usize {
        self.shared.tx_count.load(Acquire)
    }

    /// Whether both senders belong to the same channel.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::watch::channel(0);
    /// assert!(tx.same_channel(&tx.clone()));
    /// ```
    pub fn same_channel(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.tx_count.fetch_add(1, Relaxed);
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.tx_count.fetch_sub(1, AcqRel) == 1 {
            self.shared.state.fetch_or(CLOSED, Release);
            self.shared.notify_rx.notify_waiters();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("watch::Sender").field("value", &*self.borrow()).finish()
    }
}

impl<T> Ref<'_, T> {
    /// Whether this value was not seen by the receiver when it was borrowed (always `false` for a
    /// sender's borrow).
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::watch::channel(0);
    /// assert!(!rx.borrow().has_changed());
    /// tx.send(1).unwrap();
    /// assert!(rx.borrow().has_changed());
    /// ```
    pub fn has_changed(&self) -> bool {
        self.has_changed
    }
}

impl<T> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
