//! `Sleep`, `Timeout` and their constructors.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use spindle_core::loom::Ordering::*;

use super::wheel::{Entry, Registered, Shard, Updated, FIRED, IDLE, WAITING};
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
    // The deadline is at least a tick past a fresh clock read, so registering it needs no second
    // read: were the first poll so late that the deadline passed meanwhile, the timer fires at the
    // worker's next timer pass instead of at that poll (never early).
    let check_clock = duration < Duration::from_millis(1);
    Sleep { deadline: Instant::now().saturating_add(duration), entry: Entry::new(), shard: None, check_clock }
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
    Sleep { deadline, entry: Entry::new(), shard: None, check_clock: true }
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
    /// Whether registering must read the clock to see if the deadline already passed (false when
    /// `sleep` just computed it from the clock, at least a tick ahead).
    check_clock: bool,
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
        this.check_clock = true;
    }

    fn entry_ptr(&self) -> NonNull<Entry> {
        NonNull::from(&self.entry)
    }

    fn deregister(&mut self) {
        match self.entry.state.load(Acquire) {
            IDLE => {}
            // The firer's last access to a fired entry is its `FIRED` store (it took the waker
            // before), so the entry is in no wheel and ours alone: no lock needed.
            FIRED => {
                #[cfg(loom)]
                self.entry.assert_fired_and_owned();
                self.entry.state.store(IDLE, Relaxed);
            }
            _ => {
                let shard = self.shard.as_ref().expect("a waiting entry has a shard");
                // SAFETY: the entry was registered in `shard` and is pinned inside us.
                unsafe { shard.deregister(self.entry_ptr()) };
            }
        }
    }

    fn poll_elapsed(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Soft cancellation: a sleep (or timeout) in a cancelled scope, group or deadline ends now.
        if spindle_core::structured::cancel_requested() {
            return Poll::Ready(());
        }
        match self.entry.state.load(Acquire) {
            FIRED => return Poll::Ready(()),
            WAITING => {
                let shard = self.shard.as_ref().expect("a waiting entry has a shard");
                // SAFETY: registered in `shard`; the entry is pinned.
                match unsafe { shard.update_waker(self.entry_ptr(), cx.waker()) } {
                    Updated::Waiting => return Poll::Pending,
                    Updated::Fired => return Poll::Ready(()),
                    Updated::Closed => {}
                }
                // The runtime whose shard this is has gone: nothing fires it any more. Leave it
                // and register where this poll runs, checking the clock (a fire that raced
                // with leaving is then not lost: the deadline has passed).
                // SAFETY: we only deregister the pinned entry and set a plain field.
                let this = unsafe { self.as_mut().get_unchecked_mut() };
                this.deregister();
                this.check_clock = true;
            }
            _ => {}
        }
        // SAFETY: we set fields and register the pinned entry; nothing is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        let ptr = this.entry_ptr();
        let mut shard = super::current_shard();
        loop {
            let tick = shard.clock.deadline_tick(this.deadline.into_std());
            // A previous registration (before a reset) may have been in another shard; it was
            // deregistered, so the entry is idle and can join this one.
            let current = this.shard.insert(shard);
            // SAFETY: the entry is idle and pinned; `Drop`/`reset` deregister it from this shard.
            match unsafe { current.register(ptr, tick, cx.waker(), this.check_clock) } {
                Registered::Fired => return Poll::Ready(()),
                Registered::Waiting => return Poll::Pending,
                // The shard closed since it was picked (its runtime shut down meanwhile); the
                // fallback shard never closes.
                Registered::Closed => shard = super::global_shard(),
            }
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
/// The future is polled first, so a ready future wins even with a zero duration. The time limit
/// starts at the first poll that finds the future pending (futures are lazy: a `Timeout` built now
/// and awaited later still gives its future the whole `duration`); a future that is ready at once
/// never reads the clock nor touches a timer. The deadline is also checked when the future keeps
/// itself busy (wakes itself every poll) and the worker never gets to park.
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
    Timeout { future, sleep: None, duration }
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
    Timeout { future, sleep: Some(sleep_until(deadline)), duration: Duration::ZERO }
}

/// The future of [`timeout`] and [`timeout_at`].
#[derive(Debug)]
pub struct Timeout<F> {
    future: F,
    /// The timer; for `timeout`, created at the first poll that finds the future pending.
    sleep: Option<Sleep>,
    /// `timeout`'s time limit, counted from that poll.
    duration: Duration,
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
        let fresh = this.sleep.is_none();
        let duration = this.duration;
        // Writing into the empty option moves no pinned value.
        let timer = this.sleep.get_or_insert_with(|| sleep(duration));
        // SAFETY: `timer` is pinned because `self` is (structural pinning of the option's content).
        let pinned = unsafe { Pin::new_unchecked(&mut *timer) };
        // Not budgeted: the inner future may have spent the budget, and the deadline must still
        // be seen.
        if pinned.poll_elapsed(cx).is_ready() {
            return Poll::Ready(Err(Elapsed(())));
        }
        // A future that wakes itself on every poll keeps its worker from parking (where timers
        // fire); check the clock directly so the deadline still wins. (Not when the timer was
        // created just now: its registration already compared the deadline with the clock, or
        // the deadline is a tick past a fresh clock read.)
        if !fresh && super::now_std() >= timer.deadline.into_std() {
            return Poll::Ready(Err(Elapsed(())));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::advance;

    fn paused_runtime() -> crate::runtime::Runtime {
        crate::runtime::Builder::new_current_thread().start_paused(true).build().unwrap()
    }

    #[test]
    fn timeout_counts_from_its_first_pending_poll() {
        paused_runtime().block_on(async {
            let t = timeout(Duration::from_millis(10), std::future::pending::<()>());
            // Built long before it is awaited: the time in between does not count.
            advance(Duration::from_millis(50)).await;
            let start = Instant::now();
            assert!(t.await.is_err());
            assert_eq!(start.elapsed(), Duration::from_millis(10));
            // `timeout_at` keeps its absolute deadline.
            let t = timeout_at(Instant::now() + Duration::from_millis(10), std::future::pending::<()>());
            advance(Duration::from_millis(50)).await;
            let start = Instant::now();
            assert!(t.await.is_err());
            assert_eq!(start.elapsed(), Duration::ZERO);
        });
    }

    #[test]
    fn sleep_polled_after_its_deadline_still_completes() {
        paused_runtime().block_on(async {
            // `sleep` skips the clock read at registration; a first poll after the deadline must
            // still complete (at the next timer pass).
            let s = sleep(Duration::from_millis(5));
            advance(Duration::from_millis(20)).await;
            s.await;
            let s = sleep_until(Instant::now() - Duration::from_millis(1));
            assert!(futures_poll_once(s).is_ready(), "sleep_until a past deadline completes at its first poll");
        });
    }

    #[test]
    fn fired_sleeps_drop_and_reset_without_the_lock() {
        paused_runtime().block_on(async {
            let mut s = Box::pin(sleep(Duration::from_millis(1)));
            s.as_mut().await;
            assert!(s.is_elapsed());
            s.as_mut().reset(Instant::now() + Duration::from_millis(3));
            assert!(!s.is_elapsed());
            let start = Instant::now();
            s.as_mut().await;
            assert_eq!(start.elapsed(), Duration::from_millis(3));
        });
    }

    fn futures_poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        f.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()))
    }
}
