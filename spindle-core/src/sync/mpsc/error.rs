//! Errors of the mpsc channels.
//!
//! ```
//! use spindle::sync::mpsc::{self, error::SendError};
//! let (tx, rx) = mpsc::unbounded_channel();
//! drop(rx);
//! assert_eq!(tx.send(1), Err(SendError(1)));
//! ```

use core::fmt;

/// The receiver is gone (dropped or closed): the message comes back.
///
/// ```
/// use spindle::sync::mpsc;
/// let (tx, rx) = mpsc::unbounded_channel();
/// drop(rx);
/// let mpsc::error::SendError(back) = tx.send(5).unwrap_err();
/// assert_eq!(back, 5);
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub struct SendError<T>(pub T);

impl<T> SendError<T> {
    /// The message that could not be sent.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::unbounded_channel();
    /// drop(rx);
    /// assert_eq!(tx.send('a').unwrap_err().into_inner(), 'a');
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
        f.write_str("channel closed: the receiver is gone")
    }
}

#[cfg(feature = "std")]
impl<T> std::error::Error for SendError<T> {}

/// Why `try_send` did not send: the message comes back either way.
///
/// ```
/// use spindle::sync::mpsc::{self, error::TrySendError};
/// let (tx, _rx) = mpsc::channel(1);
/// tx.try_send(1).unwrap();
/// assert_eq!(tx.try_send(2), Err(TrySendError::Full(2)));
/// ```
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum TrySendError<T> {
    /// The channel is at capacity (or senders are queued for capacity).
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that could not be sent.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel(1);
    /// tx.try_send(1).unwrap();
    /// assert_eq!(tx.try_send(2).unwrap_err().into_inner(), 2);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(v) | TrySendError::Closed(v) => v,
        }
    }

    /// Whether the channel was full.
    ///
    /// ```
    /// let (tx, _rx) = spindle::sync::mpsc::channel(1);
    /// tx.try_send(1).unwrap();
    /// assert!(tx.try_send(2).unwrap_err().is_full());
    /// ```
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// Whether the receiver was gone.
    ///
    /// ```
    /// let (tx, rx) = spindle::sync::mpsc::channel(1);
    /// drop(rx);
    /// assert!(tx.try_send(1).unwrap_err().is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, TrySendError::Closed(_))
    }
}

impl<T> From<SendError<T>> for TrySendError<T> {
    fn from(e: SendError<T>) -> Self {
        TrySendError::Closed(e.0)
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("no available capacity"),
            TrySendError::Closed(_) => f.write_str("channel closed: the receiver is gone"),
        }
    }
}

#[cfg(feature = "std")]
impl<T> std::error::Error for TrySendError<T> {}

/// Why `try_recv` returned no message.
///
/// ```
/// use spindle::sync::mpsc::{self, error::TryRecvError};
/// let (tx, mut rx) = mpsc::channel::<u8>(1);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
/// drop(tx);
/// assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
/// ```
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
pub enum TryRecvError {
    /// Nothing is queued now, but senders remain.
    Empty,
    /// Nothing is queued and nothing will be: every sender is gone (or the receiver closed and
    /// every message sent was received).
    Disconnected,
}

impl fmt::Display for TryRecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRecvError::Empty => f.write_str("receiving on an empty channel"),
            TryRecvError::Disconnected => f.write_str("receiving on a closed channel"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TryRecvError {}
