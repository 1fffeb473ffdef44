//! `Sleep`, `Timeout` and their constructors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use spindle_core::loom::Ordering::*;

use super::wheel::{Entry, Registered, Shard, FIRED, IDLE, WAITING};
use super::Instant;

/// Waits until `duration` has passed (at millisecond resolution, never less).
///
/// Durations too large to represent sleep "forever" (until about 30 years ahead, which the wheel
/// still tracks) instead of panicking.
///
/// ```
/// use std::time::Duration;
/// spindle::block_on(async {
///     let start = spindle::time::Instant::now();
///     spindle::time::sleep(Duration::from_millis(10)).await;
///     assert!(start.elapsed() >= Duration::from_millis(10));
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now().saturating_add(duration))
}

/// Waits until `deadline`. A deadline in the past completes at the first poll.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::{sleep_until, Instant};
/// spindle::block_on(async {
///     let deadline = Instant::now() + Duration::from_millis(5);
///     sleep_until(deadline).await;
///     assert!(Instant::now() >= deadline);
/// });
/// ```
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, entry: Entry::new(), shard: None }
}

/// The future of [`sleep`] and [`sleep_until`]. Registers its timer on the worker that first
/// polls it; it can be polled, reset and dropped on any thread.
///
/// # Cancel safety
/// Dropping it cancels the timer; nothing is lost.
pub struct Sleep {
    deadline: Instant,
    entry: Entry,
    /// The shard the entry is registered in (set at first registration).
    shard: Option<Arc<Shard>>,
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep").field("deadline", &self.deadline).field("elapsed", &self.is_elapsed()).finish()
    }
}

impl Sleep {
    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the timer fired (the sleep is complete).
    pub fn is_elapsed(&self) -> bool {
        self.entry.state.load(Acquire) == FIRED
    }

    /// Moves the deadline (earlier or later), re-arming a sleep that already completed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::time::{sleep, Instant};
    /// spindle::block_on(async {
    ///     let mut s = Box::pin(sleep(Duration::from_secs(3600)));
    ///     s.as_mut().reset(Instant::now() + Duration::from_millis(1));
    ///     s.await;
    /// });
    /// ```
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        // SAFETY: we only deregister the pinned entry and overwrite plain fields; nothing moves.
        let this = unsafe { self.get_unchecked_mut() };
        this.deregister();
        this.deadline = deadline;
    }

    fn entry_ptr(&self) -> NonNull<Entry> {
        NonNull::from(&self.entry)
    }

    fn deregister(&mut self) {
        if self.entry.state.load(Acquire) != IDLE {
            if let Some(shard) = &self.shard {
                // SAFETY: the entry was registered in `shard` and is pinned inside us.
                unsafe { shard.deregister(self.entry_ptr()) };
            } else {
                self.entry.state.store(IDLE, Release);
            }
        }
    }

    fn poll_elapsed(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Soft cancellation: a sleep (or timeout) in a cancelled scope, group or deadline ends now.
        if spindle_core::structured::cancel_requested() {
            return Poll::Ready(());
        }
        match self.entry.state.load(Acquire) {
            FIRED => return Poll::Ready(()),
            WAITING => {
                let shard = self.shard.as_ref().expect("a waiting entry has a shard");
                // SAFETY: registered in `shard`; the entry is pinned.
                if unsafe { shard.update_waker(self.entry_ptr(), cx.waker()) } {
                    return Poll::Pending;
                }
                return Poll::Ready(());
            }
            _ => {}
        }
        // SAFETY: we set fields and register the pinned entry; nothing is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        let shard = super::current_shard();
        let tick = shard.clock.deadline_tick(this.deadline.into_std());
        let ptr = this.entry_ptr();
        // A previous registration (before a reset) may have been in another shard; it was
        // deregistered, so the entry is idle and can join the current one.
        this.shard = Some(shard);
        let shard = this.shard.as_ref().expect("just set");
        // SAFETY: the entry is idle and pinned; `Drop`/`reset` deregister it from this shard.
        match unsafe { shard.register(ptr, tick, cx.waker()) } {
            Registered::Fired => Poll::Ready(()),
            Registered::Waiting => Poll::Pending,
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.poll_elapsed(cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// The error of [`timeout`]: the deadline passed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(_: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "spindle: deadline has elapsed")
    }
}

/// Runs `future` with a time limit: `Ok(output)` if it finishes within `duration`, else
/// `Err(Elapsed)` (the future is dropped).
///
/// The future is polled first, so a ready future wins even with a zero duration. The deadline is
/// also checked when the future keeps itself busy (wakes itself every poll) and the worker never
/// gets to park.
///
/// # Cancel safety
/// As cancel-safe as `future`: on timeout it is dropped.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::timeout;
/// spindle::block_on(async {
///     assert_eq!(timeout(Duration::from_secs(1), async { 5 }).await, Ok(5));
///     let slow = std::future::pending::<()>();
///     assert!(timeout(Duration::from_millis(5), slow).await.is_err());
/// });
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep(duration) }
}

/// Like [`timeout`], with a deadline.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::{timeout_at, Instant};
/// spindle::block_on(async {
///     let r = timeout_at(Instant::now() + Duration::from_millis(5), std::future::pending::<()>()).await;
///     assert!(r.is_err());
/// });
/// ```
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout { future, sleep: sleep_until(deadline) }
}

/// The future of [`timeout`].
#[derive(Debug)]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// Unwraps the future.
    pub fn into_inner(self) -> F {
        // `Sleep` has a destructor, so destructure by hand.
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: we read each field exactly once and never use `this` again; the sleep is
        // dropped normally (deregistering its entry) and the future is returned.
        unsafe {
            drop(std::ptr::read(&this.sleep));
            std::ptr::read(&this.future)
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of both fields; neither is moved.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: `future` is pinned because `self` is.
        let future = unsafe { Pin::new_unchecked(&mut this.future) };
        if let Poll::Ready(v) = future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // SAFETY: `sleep` is pinned because `self` is.
        let sleep = unsafe { Pin::new_unchecked(&mut this.sleep) };
        // Not budgeted: the inner future may have spent the budget, and the deadline must still
        // be seen.
        if sleep.poll_elapsed(cx).is_ready() {
            return Poll::Ready(Err(Elapsed(())));
        }
        // A future that wakes itself on every poll keeps its worker from parking (where timers
        // fire); check the clock directly so the deadline still wins.
        if super::now_std() >= this.sleep.deadline.into_std() {
            return Poll::Ready(Err(Elapsed(())));
        }
        Poll::Pending
    }
}
