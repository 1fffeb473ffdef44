//! A runtime's clock: real time, or virtual time that only moves when told to (tests).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use spindle_core::loom::{AtomicBool, AtomicU64, Ordering::*};

/// Milliseconds since the clock's origin: the unit of the timer wheels.
pub(crate) type Tick = u64;

pub(crate) struct Clock {
    origin: Instant,
    paused: AtomicBool,
    /// While paused: nanoseconds since `origin` that the clock shows.
    frozen_ns: AtomicU64,
    /// While running: nanoseconds added to real time since `origin`, as a two's complement
    /// (wrapping) number: positive when `advance` moved the clock ahead, negative when it was
    /// paused longer than it was advanced (resuming continues from the frozen time).
    offset_ns: AtomicU64,
    /// Serializes pause/resume/advance.
    change: Mutex<()>,
}

impl Clock {
    pub(crate) fn new(start_paused: bool) -> Clock {
        let c = Clock {
            origin: Instant::now(),
            paused: AtomicBool::new(false),
            frozen_ns: AtomicU64::new(0),
            offset_ns: AtomicU64::new(0),
            change: Mutex::new(()),
        };
        if start_paused {
            c.pause();
        }
        c
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.change.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn elapsed_ns(&self) -> u64 {
        if self.paused.load(Acquire) {
            self.frozen_ns.load(Acquire)
        } else {
            // Never below the frozen time the clock resumed from (see `resume`), so no wrap.
            duration_ns(self.origin.elapsed()).wrapping_add(self.offset_ns.load(Acquire))
        }
    }

    /// The current time on this clock.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        if self.paused.load(Acquire) {
            return self.origin + Duration::from_nanos(self.frozen_ns.load(Acquire));
        }
        // Real time: one clock read, no round trip through nanoseconds since the origin (this is
        // every `sleep`'s cost).
        match self.offset_ns.load(Acquire) {
            0 => Instant::now(),
            _ => self.origin + Duration::from_nanos(self.elapsed_ns()),
        }
    }

    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Acquire)
    }

    pub(crate) fn pause(&self) {
        let _g = self.lock();
        if !self.paused.load(Acquire) {
            // Freeze on a millisecond boundary (rounding up, so time never goes back): timers
            // have millisecond ticks, so virtual durations then come out exact.
            self.frozen_ns.store(self.elapsed_ns().div_ceil(1_000_000).saturating_mul(1_000_000), Release);
            self.paused.store(true, Release);
        }
    }

    pub(crate) fn resume(&self) {
        let _g = self.lock();
        if self.paused.load(Acquire) {
            // Continue from the frozen time: it neither jumps ahead by the real time spent
            // paused (timers registered while paused would fire early) nor goes back.
            let real = duration_ns(self.origin.elapsed());
            let frozen = self.frozen_ns.load(Acquire);
            self.offset_ns.store(frozen.wrapping_sub(real), Release);
            self.paused.store(false, Release);
        }
    }

    /// Moves a paused clock forward. Returns false if the clock is not paused.
    pub(crate) fn advance(&self, d: Duration) -> bool {
        let _g = self.lock();
        if !self.paused.load(Acquire) {
            return false;
        }
        let add = duration_ns(d);
        self.frozen_ns.store(self.frozen_ns.load(Acquire).saturating_add(add).min(MAX_CLOCK_NS), Release);
        true
    }

    /// Moves a paused clock forward to `tick` if it is behind it. Returns whether the clock now
    /// shows `tick` or later (false for a tick past the u64 nanosecond range, which it never
    /// reaches; see [`MAX_CLOCK_NS`] for why sleeps do not ask for one).
    #[must_use]
    pub(crate) fn advance_to_tick(&self, tick: Tick) -> bool {
        let _g = self.lock();
        let Some(target) = tick.checked_mul(1_000_000) else {
            return false;
        };
        if self.paused.load(Acquire) && target > self.frozen_ns.load(Acquire) {
            self.frozen_ns.store(target, Release);
        }
        true
    }

    /// The current tick (rounded down: a timer never fires early).
    pub(crate) fn now_tick(&self) -> Tick {
        self.elapsed_ns() / 1_000_000
    }

    /// The tick at which a timer for `deadline` fires (rounded up). Deadlines before the origin
    /// map to 0 (already due); far-future ones saturate (never fire).
    #[inline]
    pub(crate) fn deadline_tick(&self, deadline: Instant) -> Tick {
        match deadline.checked_duration_since(self.origin) {
            None => 0,
            // Whole seconds are whole milliseconds, so only the sub-second part rounds (and this
            // stays in u64 arithmetic, no 128-bit division).
            Some(d) => d.as_secs().saturating_mul(1000).saturating_add(d.subsec_nanos().div_ceil(1_000_000) as u64),
        }
    }

    /// How long until `tick` in real time. Paused: zero if the clock has reached `tick` (a timer
    /// is due that its shard has not fired yet: do not park waiting for it), else `None` (virtual
    /// time does not pass by waiting; auto-advance moves it).
    pub(crate) fn until_tick(&self, tick: Tick) -> Option<Duration> {
        if self.is_paused() {
            return (tick <= self.now_tick()).then_some(Duration::ZERO);
        }
        let target_ns = tick.saturating_mul(1_000_000);
        Some(Duration::from_nanos(target_ns.saturating_sub(self.elapsed_ns())))
    }
}

/// The furthest a paused clock moves from its origin (about 520 years): far enough below the u64
/// nanosecond limit (584 years) that every deadline a sleep can ask for from there (at most
/// `FAR_FUTURE`, 30 years, ahead) is still a tick the clock can reach. `advance` stops here
/// instead of saturating at the limit, where every later timer would be out of reach.
pub(crate) const MAX_CLOCK_NS: u64 = u64::MAX - 2 * (super::FAR_FUTURE.as_secs() * 1_000_000_000);

/// `d` in nanoseconds, saturating (u64 nanoseconds span 584 years).
#[inline]
fn duration_ns(d: Duration) -> u64 {
    d.as_secs().saturating_mul(1_000_000_000).saturating_add(d.subsec_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paused_clock_only_moves_when_advanced() {
        let c = Clock::new(true);
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), t0);
        assert!(c.advance(Duration::from_secs(3600)));
        assert_eq!(c.now() - t0, Duration::from_secs(3600));
        c.resume();
        assert!(c.now() - t0 >= Duration::from_secs(3600));
        assert!(!c.advance(Duration::from_secs(1)));
    }

    #[test]
    fn ticks_round_so_timers_never_fire_early() {
        let c = Clock::new(true);
        let d = c.now() + Duration::from_micros(1500);
        assert_eq!(c.deadline_tick(d), c.now_tick() + 2);
        let far = c.now() + Duration::from_secs(u64::MAX / 4);
        assert!(c.deadline_tick(far) > 1 << 50);
        let exact = c.now() + Duration::from_millis(3);
        assert_eq!(c.deadline_tick(exact), c.now_tick() + 3);
        let sub = c.now() + Duration::new(2, 1);
        assert_eq!(c.deadline_tick(sub), c.now_tick() + 2001);
    }

    #[test]
    fn running_clock_now_follows_real_time_and_advances() {
        let c = Clock::new(false);
        let before = Instant::now();
        let n = c.now();
        assert!(n >= before && n <= Instant::now());
        c.pause();
        assert!(c.advance(Duration::from_secs(5)));
        c.resume();
        // Resumed 5 s ahead of real time, and never behind the frozen time.
        assert!(c.now() >= Instant::now() + Duration::from_secs(4));
        assert!(c.now_tick() >= 5000);
    }
}
