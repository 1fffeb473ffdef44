//! [`Interest`] and [`Ready`]: what a socket's `ready()` waits for and what it found (tokio's
//! `tokio::io::{Interest, Ready}`, with the same names).

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

const READABLE: u8 = 0b0001;
const WRITABLE: u8 = 0b0010;
const READ_CLOSED: u8 = 0b0100;
const WRITE_CLOSED: u8 = 0b1000;
const ERROR: u8 = 0b1_0000;

/// The readiness a `ready()` call waits for: [`READABLE`](Interest::READABLE),
/// [`WRITABLE`](Interest::WRITABLE), or both (`|`).
///
/// ```
/// use spindle::io::Interest;
///
/// let both = Interest::READABLE | Interest::WRITABLE;
/// assert!(both.is_readable() && both.is_writable());
/// assert!(!Interest::READABLE.is_writable());
/// assert_eq!(both.remove(Interest::WRITABLE), Some(Interest::READABLE));
/// assert_eq!(Interest::READABLE.remove(Interest::READABLE), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(u8);

impl Interest {
    /// Data to read (or end of stream, or an error to report).
    pub const READABLE: Interest = Interest(READABLE);
    /// Room to write (or an error to report).
    pub const WRITABLE: Interest = Interest(WRITABLE);

    /// Whether it includes [`READABLE`](Interest::READABLE).
    pub const fn is_readable(self) -> bool {
        self.0 & READABLE != 0
    }

    /// Whether it includes [`WRITABLE`](Interest::WRITABLE).
    pub const fn is_writable(self) -> bool {
        self.0 & WRITABLE != 0
    }

    /// Both interests (as `|`, usable in `const`).
    pub const fn add(self, other: Interest) -> Interest {
        Interest(self.0 | other.0)
    }

    /// This interest without `other`'s; `None` when nothing is left.
    pub const fn remove(self, other: Interest) -> Option<Interest> {
        let left = self.0 & !other.0;
        if left == 0 {
            None
        } else {
            Some(Interest(left))
        }
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        self.add(other)
    }
}

impl BitOrAssign for Interest {
    fn bitor_assign(&mut self, other: Interest) {
        *self = self.add(other);
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.is_readable(), self.is_writable()) {
            (true, true) => f.write_str("READABLE | WRITABLE"),
            (true, false) => f.write_str("READABLE"),
            (false, true) => f.write_str("WRITABLE"),
            (false, false) => f.write_str("(none)"),
        }
    }
}

/// What a socket's `ready()` found: readable, writable, and whether the peer closed its side
/// ([`is_read_closed`](Ready::is_read_closed): reads will see end of stream) or the socket can
/// no longer send ([`is_write_closed`](Ready::is_write_closed)). Like every readiness report it
/// can be stale by the time it is used: the `try_` call that follows may still get `WouldBlock`.
///
/// ```
/// use spindle::io::Ready;
///
/// let r = Ready::READABLE | Ready::READ_CLOSED;
/// assert!(r.is_readable() && r.is_read_closed() && !r.is_writable());
/// assert!(Ready::EMPTY.is_empty());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Ready(u8);

impl Ready {
    /// Nothing ready.
    pub const EMPTY: Ready = Ready(0);
    /// Readable.
    pub const READABLE: Ready = Ready(READABLE);
    /// Writable.
    pub const WRITABLE: Ready = Ready(WRITABLE);
    /// The peer will send nothing more (end of stream, or a reset).
    pub const READ_CLOSED: Ready = Ready(READ_CLOSED);
    /// Nothing more can be sent: the connection was reset or both sides are closed (`POLLHUP`).
    /// A local `shutdown(Write)` alone does not show here (Linux still reports the socket
    /// writable); the write then fails with `BrokenPipe`.
    pub const WRITE_CLOSED: Ready = Ready(WRITE_CLOSED);
    /// An error is pending (a UDP socket's ICMP error, say): reported with readable and/or
    /// writable, so the `try_` call that follows returns (and consumes) it.
    pub const ERROR: Ready = Ready(ERROR);
    /// Every readiness.
    pub const ALL: Ready = Ready(READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR);

    /// Whether nothing is ready.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether it is readable (or read-closed: a read returns at once).
    pub const fn is_readable(self) -> bool {
        self.0 & (READABLE | READ_CLOSED) != 0
    }

    /// Whether it is writable (or write-closed: a write fails at once).
    pub const fn is_writable(self) -> bool {
        self.0 & (WRITABLE | WRITE_CLOSED) != 0
    }

    /// Whether the peer's side is closed.
    pub const fn is_read_closed(self) -> bool {
        self.0 & READ_CLOSED != 0
    }

    /// Whether this side can no longer send.
    pub const fn is_write_closed(self) -> bool {
        self.0 & WRITE_CLOSED != 0
    }

    /// Whether an error is pending (see [`ERROR`](Ready::ERROR)).
    pub const fn is_error(self) -> bool {
        self.0 & ERROR != 0
    }

    /// The readiness with these bits (the readiness registration's encoding:
    /// `driver::registration`); unknown bits are dropped.
    pub(crate) const fn from_bits(bits: u8) -> Ready {
        Ready(bits & (READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | ERROR))
    }

    /// The bits (the readiness registration's encoding: `driver::registration`).
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    /// The readiness `poll(2)` reported in `revents` for `interest`'s directions. A pending
    /// error (`POLLERR`) is not a closed side: it is reported as readable and/or writable (with
    /// [`ERROR`](Ready::ERROR)), so the caller's next call returns it.
    pub(crate) fn from_revents(revents: i16, interest: Interest) -> Ready {
        let error = revents & libc::POLLERR != 0;
        let mut r = if error { ERROR } else { 0 };
        if interest.is_readable() {
            if revents & libc::POLLIN != 0 || error {
                r |= READABLE;
            }
            if revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 {
                r |= READ_CLOSED;
            }
        }
        if interest.is_writable() {
            if revents & libc::POLLOUT != 0 || error {
                r |= WRITABLE;
            }
            if revents & libc::POLLHUP != 0 {
                r |= WRITE_CLOSED;
            }
        }
        Ready(r)
    }
}

impl BitOr for Ready {
    type Output = Ready;
    fn bitor(self, other: Ready) -> Ready {
        Ready(self.0 | other.0)
    }
}

impl BitOrAssign for Ready {
    fn bitor_assign(&mut self, other: Ready) {
        self.0 |= other.0;
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ready")
            .field("readable", &(self.0 & READABLE != 0))
            .field("writable", &(self.0 & WRITABLE != 0))
            .field("read_closed", &self.is_read_closed())
            .field("write_closed", &self.is_write_closed())
            .field("error", &self.is_error())
            .finish()
    }
}

impl From<Interest> for Ready {
    fn from(i: Interest) -> Ready {
        Ready(i.0)
    }
}
