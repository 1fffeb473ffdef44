//! `Interval`: ticks at a fixed period, with a choice of what to do about missed ticks.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::{sleep_until, Instant, Sleep};

/// What an [`Interval`] does when a tick comes late: taken more than [`LATE`](Self::LATE) after its
/// scheduled time (the task was busy, or did not call `tick` for a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks back to back until caught up, keeping the original schedule.
    #[default]
    Burst,
    /// Restart the schedule from now: the next tick is one period after the late one.
    Delay,
    /// Skip the missed ticks: the next tick is the next one on the original schedule.
    Skip,
}

impl MissedTickBehavior {
    /// How late a tick may be taken and still count as on time (as in tokio): timers fire at
    /// millisecond resolution, and a busy worker takes a little while to get to a woken task.
    pub const LATE: Duration = Duration::from_millis(5);
}

/// The error of [`try_interval`]: a zero period would tick endlessly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZeroPeriod(());

impl fmt::Display for ZeroPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an interval's period must be greater than zero")
    }
}

impl std::error::Error for ZeroPeriod {}

/// An interval whose first tick completes at once, then every `period`.
///
/// # Panics
/// If `period` is zero (with a clear message); [`try_interval`] returns an error instead.
///
/// ```
/// use std::time::Duration;
/// spindle::block_on(async {
///     let mut iv = spindle::time::interval(Duration::from_millis(2));
///     for _ in 0..3 {
///         iv.tick().await;
///     }
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    match try_interval(period) {
        Ok(i) => i,
        Err(e) => panic!("spindle::time::interval: {e}"),
    }
}

/// Like [`interval`], but a zero period is an error instead of a panic.
///
/// ```
/// use std::time::Duration;
/// assert!(spindle::time::try_interval(Duration::ZERO).is_err());
/// ```
pub fn try_interval(period: Duration) -> Result<Interval, ZeroPeriod> {
    try_interval_at(Instant::now(), period)
}

/// An interval whose first tick completes at `start`.
///
/// # Panics
/// If `period` is zero.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::{interval_at, Instant};
/// spindle::block_on(async {
///     let mut iv = interval_at(Instant::now() + Duration::from_millis(3), Duration::from_millis(3));
///     iv.tick().await;
/// });
/// ```
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    match try_interval_at(start, period) {
        Ok(i) => i,
        Err(e) => panic!("spindle::time::interval_at: {e}"),
    }
}

fn try_interval_at(start: Instant, period: Duration) -> Result<Interval, ZeroPeriod> {
    if period.is_zero() {
        return Err(ZeroPeriod(()));
    }
    Ok(Interval { delay: Box::pin(sleep_until(start)), period, behavior: MissedTickBehavior::default() })
}

/// Ticks at a fixed period. See [`interval`].
#[derive(Debug)]
pub struct Interval {
    delay: Pin<Box<Sleep>>,
    period: Duration,
    behavior: MissedTickBehavior,
}

impl Interval {
    /// Completes at the next tick and returns its scheduled time.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping a pending `tick()` loses no tick; the next call returns it. In a
    /// cancelled scope, group or deadline, `tick()` returns the scheduled time of the next tick at
    /// once, without consuming it (as `sleep` returns early there).
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick (for hand-written futures).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.delay.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if !self.delay.is_elapsed() {
            // Cut short by the current scope's cancellation (soft cancel): return at once so the
            // caller's loop sees it, but no tick happened, so the schedule stays as it is (it
            // would otherwise race ahead one period per call).
            return Poll::Ready(self.delay.deadline());
        }
        let scheduled = self.delay.deadline();
        let now = Instant::now();
        let on_time = now <= scheduled + MissedTickBehavior::LATE;
        let next = match self.behavior {
            _ if on_time => scheduled + self.period,
            MissedTickBehavior::Burst => scheduled + self.period,
            MissedTickBehavior::Delay => now + self.period,
            MissedTickBehavior::Skip => {
                // The first tick of the original schedule after now (in 128-bit nanoseconds, so
                // a tiny period with a long stall cannot fall short).
                let behind = now.duration_since(scheduled).as_nanos();
                let period = self.period.as_nanos();
                let add = (behind / period + 1).saturating_mul(period);
                scheduled + Duration::from_nanos(u64::try_from(add).unwrap_or(u64::MAX))
            }
        };
        self.delay.as_mut().reset(next);
        Poll::Ready(scheduled)
    }

    /// Restarts the schedule: the next tick is one period from now.
    pub fn reset(&mut self) {
        self.delay.as_mut().reset(Instant::now() + self.period);
    }

    /// Makes the next tick complete at once.
    pub fn reset_immediately(&mut self) {
        self.delay.as_mut().reset(Instant::now());
    }

    /// The missed-tick behaviour.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.behavior
    }

    /// Sets the missed-tick behaviour.
    ///
    /// ```
    /// use std::time::Duration;
    /// use spindle::time::{interval, MissedTickBehavior};
    /// let mut iv = interval(Duration::from_secs(1));
    /// iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
    /// assert_eq!(iv.missed_tick_behavior(), MissedTickBehavior::Skip);
    /// ```
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.behavior = behavior;
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}
