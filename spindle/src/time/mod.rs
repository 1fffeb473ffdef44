//! Time: sleeps, timeouts, intervals, an `Instant` that follows the runtime's clock, and virtual
//! time for tests.
//!
//! # Contract
//!
//! - Every worker (and the current-thread runtime) owns a timer shard: a hierarchical wheel of
//!   64-slot levels at 1 ms resolution covering ~139 years, behind its own spin lock — no global
//!   lock. A timer registers in the shard of the worker that first polls it; it may be polled,
//!   reset or dropped on any thread afterwards (those lock the shard it lives in; a timer that
//!   already fired is dropped or reset without the lock). Registering, resetting and cancelling
//!   are O(1).
//! - Costs: `sleep(d)` reads the clock once (its deadline), and its first poll registers without
//!   a second read (a sleep first polled after its deadline fires at the next timer pass instead
//!   of at that poll; `sleep_until` and `reset` do check the clock, so a past deadline completes
//!   at the first poll). `timeout(d, f)` starts counting at the first poll that finds `f`
//!   pending, so a future that is ready at once never reads the clock nor touches a timer.
//! - Workers fire their shard's due timers when they park (the park timeout is the shard's next
//!   deadline) and every few dozen scheduler ticks while busy; a parking worker also fires due
//!   timers of other shards, so a worker stuck in a long poll does not hold its timers back.
//!   Registering a deadline earlier than the one the owner parks until unparks the owner.
//! - Outside any spindle runtime (another executor, a plain thread), timers use a process-wide
//!   fallback shard driven by one lazily started thread, so they work anywhere.
//! - Each runtime has a clock. [`pause`] freezes it; [`advance`] moves it and fires what is due;
//!   while paused, a runtime whose tasks are all idle (and no blocking job runs) jumps the clock to
//!   the next deadline instead of parking, so a test of a one-hour timeout runs in microseconds,
//!   deterministically. [`Instant::now`] reads the current runtime's clock.
//! - Deadlines round up to the next millisecond, so a timer never fires early. Durations that
//!   overflow saturate to "about 30 years from now" instead of panicking.
//!
//! ```
//! use std::time::Duration;
//! use spindle::time::{interval, sleep, timeout};
//!
//! spindle::block_on(async {
//!     sleep(Duration::from_millis(1)).await;
//!     assert!(timeout(Duration::from_millis(1), std::future::pending::<()>()).await.is_err());
//!     let mut every = interval(Duration::from_millis(1));
//!     every.tick().await; // the first tick is immediate
//!     every.tick().await;
//! });
//! ```

mod clock;
mod interval;
mod sleep;
pub(crate) mod wheel;

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub(crate) use clock::Clock;
pub use interval::{interval, interval_at, try_interval, Interval, MissedTickBehavior, ZeroPeriod};
pub use sleep::{sleep, sleep_until, timeout, timeout_at, Elapsed, Sleep, Timeout};
pub(crate) use wheel::Shard;

use crate::rt;

/// How far "forever" is: deadlines that overflow saturate to now plus this.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// A point in time on the current runtime's clock (which is real time unless paused).
///
/// Like `std::time::Instant`, but [`Instant::now`] follows virtual time in paused tests, and
/// adding a huge duration saturates instead of panicking.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::Instant;
/// let t = Instant::now();
/// let later = t + Duration::MAX; // saturates, no panic
/// assert!(later > t);
/// ```
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(std::time::Instant);

impl Instant {
    /// The current time on the current runtime's clock (real time outside a runtime).
    pub fn now() -> Instant {
        Instant(now_std())
    }

    /// Wraps a std instant.
    pub fn from_std(i: std::time::Instant) -> Instant {
        Instant(i)
    }

    /// The std instant.
    pub fn into_std(self) -> std::time::Instant {
        self.0
    }

    /// Time since `earlier` (zero if `earlier` is later).
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// Time since `earlier`, or `None` if `earlier` is later.
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.0.checked_duration_since(earlier.0)
    }

    /// Time since `earlier`, zero if `earlier` is later.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }

    /// Time elapsed since this instant, on the current runtime's clock.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + d`, or `None` on overflow.
    pub fn checked_add(&self, d: Duration) -> Option<Instant> {
        self.0.checked_add(d).map(Instant)
    }

    /// `self - d`, or `None` on underflow.
    pub fn checked_sub(&self, d: Duration) -> Option<Instant> {
        self.0.checked_sub(d).map(Instant)
    }

    /// `self - d` for the largest `d' <= d` that does not underflow: the earliest representable
    /// instant (std has no constant for it). A binary search over `d'`, only on underflow.
    fn earliest_before(self, d: Duration) -> Instant {
        let (mut ok, mut too_far) = (0u128, d.as_nanos());
        while too_far - ok > 1 {
            let mid = ok + (too_far - ok) / 2;
            let mid_d = Duration::new((mid / 1_000_000_000) as u64, (mid % 1_000_000_000) as u32);
            if self.0.checked_sub(mid_d).is_some() {
                ok = mid;
            } else {
                too_far = mid;
            }
        }
        let ok_d = Duration::new((ok / 1_000_000_000) as u64, (ok % 1_000_000_000) as u32);
        self.checked_sub(ok_d).expect("checked above")
    }

    /// `self + d`, saturating at about 30 years from now (a timer that far out never fires in
    /// practice).
    pub fn saturating_add(&self, d: Duration) -> Instant {
        match self.0.checked_add(d.min(FAR_FUTURE)) {
            Some(i) => Instant(i),
            None => *self,
        }
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(i: std::time::Instant) -> Instant {
        Instant(i)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(i: Instant) -> std::time::Instant {
        i.0
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    /// Saturating (see [`Instant::saturating_add`]).
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating at the earliest representable instant.
    fn sub(self, d: Duration) -> Instant {
        match self.checked_sub(d) {
            Some(t) => t,
            None => self.earliest_before(d),
        }
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, d: Duration) {
        *self = *self - d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating at zero.
    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}

/// Now, on the current runtime's clock (or real time outside a runtime).
pub(crate) fn now_std() -> std::time::Instant {
    rt::with_current_clock(|c| c.map(|c| c.now())).unwrap_or_else(std::time::Instant::now)
}

/// The shard a timer first polled on this thread registers in.
pub(crate) fn current_shard() -> Arc<Shard> {
    #[cfg(loom)]
    if let Some(s) = __loom::current() {
        return s;
    }
    // (A shut-down runtime's shard, reached through a handle that outlived it, refuses the
    // registration, which then goes to the fallback shard: see `Sleep::poll_elapsed`.)
    rt::current_timer_shard().unwrap_or_else(global_shard)
}

/// The fallback shard for timers polled outside any spindle runtime, driven by its own thread.
pub(crate) fn global_shard() -> Arc<Shard> {
    static GLOBAL: OnceLock<Arc<Shard>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let mut driver = rt::park::Driver::new().expect("spindle: cannot create the timer thread's parker");
            let shard = Arc::new(Shard::new(Arc::new(Clock::new(false)), driver.unparker()));
            let s = shard.clone();
            std::thread::Builder::new()
                .name("spindle-timer".into())
                .spawn(move || loop {
                    s.process();
                    let next = s.prepare_park();
                    match next.and_then(|t| s.clock.until_tick(t)) {
                        Some(d) => driver.park_timeout(d),
                        None => driver.park(),
                    }
                    s.unparked();
                })
                .expect("spindle: cannot start the timer thread");
            shard
        })
        .clone()
}

/// Freezes the current runtime's clock: time then moves only through [`advance`] or, when every
/// task is idle, by jumping to the next timer (auto-advance).
///
/// Before it jumps, the runtime polls its I/O without blocking, as tokio does: a timeout around
/// an exchange with a server in the same runtime, whose reply is already in the kernel, does not
/// fire. That is exact on the current-thread runtime and on a multi-thread runtime with one
/// worker. With several workers, a worker sees the others' undispatched events only while they
/// wait in the kernel; one that took events and was descheduled before dispatching them is
/// invisible, so the jump waits for a second look 100 µs later, which covers it in practice but
/// not always on an overloaded machine. Tests that time I/O exactly belong on the current-thread
/// runtime (tokio allows virtual time there only).
///
/// # Panics
/// Outside a spindle runtime, and on a per-core runtime (see
/// [`Builder::new_per_core`](crate::runtime::Builder::new_per_core)).
///
/// ```
/// use std::time::Duration;
/// spindle::block_on(async {
///     spindle::time::pause();
///     let start = spindle::time::Instant::now();
///     spindle::time::sleep(Duration::from_secs(3600)).await; // returns at once
///     assert_eq!(start.elapsed(), Duration::from_secs(3600));
/// });
/// ```
#[track_caller]
pub fn pause() {
    if !rt::virtual_time_allowed() {
        panic!(
            "spindle::time::pause is not available on a per-core runtime (each core decides alone when \
             it is idle, so none may jump the shared clock); use a current-thread or multi-thread runtime"
        );
    }
    match rt::with_current_clock(|c| c.map(|c| c.pause())) {
        Some(()) => {}
        None => panic!("spindle::time::pause must be called from inside a spindle runtime"),
    }
}

/// Lets the current runtime's clock follow real time again, from where it stands.
///
/// # Panics
/// Outside a spindle runtime.
///
/// ```
/// spindle::block_on(async {
///     spindle::time::pause();
///     spindle::time::resume();
/// });
/// ```
#[track_caller]
pub fn resume() {
    match rt::with_current_clock(|c| c.map(|c| c.resume())) {
        Some(()) => {}
        None => panic!("spindle::time::resume must be called from inside a spindle runtime"),
    }
}

/// Moves the paused clock forward by `duration`, fires every timer that came due, and yields so
/// the woken tasks run.
///
/// # Panics
/// Outside a spindle runtime, or if the clock is not paused.
///
/// ```
/// use std::time::Duration;
/// use spindle::time::{advance, pause, sleep, timeout};
/// spindle::block_on(async {
///     pause();
///     let waiter = spindle::spawn(timeout(Duration::from_secs(60), std::future::pending::<()>()));
///     advance(Duration::from_secs(61)).await;
///     assert!(waiter.await.unwrap().is_err());
/// });
/// ```
pub async fn advance(duration: Duration) {
    let advanced = rt::with_current_clock(|c| c.map(|c| c.advance(duration)));
    match advanced {
        None => panic!("spindle::time::advance must be called from inside a spindle runtime"),
        Some(false) => panic!("spindle::time::advance requires a paused clock: call time::pause() first"),
        Some(true) => {}
    }
    rt::process_all_timers();
    crate::task::yield_now().await;
}

/// Test-only access to a timer shard for the loom models (`tests/loom_timer.rs`); only built with
/// `--cfg loom`, so the public API is unchanged.
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    use std::cell::RefCell;
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Clock, Instant, Shard};

    std::thread_local! {
        // Loom runs all threads of a model as coroutines on the OS thread of its `#[test]`, so a
        // std thread-local is shared by every thread of one model and private to that model.
        static CURRENT: RefCell<Option<Arc<Shard>>> = const { RefCell::new(None) };
    }

    pub(super) fn current() -> Option<Arc<Shard>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// One timer shard with a paused clock; sleeps first polled while it is entered register in
    /// it, whichever model thread polls them.
    pub struct Timers {
        shard: Arc<Shard>,
        clock: Arc<Clock>,
        _driver: crate::rt::park::Driver,
    }

    impl Timers {
        /// A shard on a paused clock, entered (until dropped) for the model's threads.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Timers {
            let driver = crate::rt::park::Driver::new().expect("parker");
            let clock = Arc::new(Clock::new(true));
            let shard = Arc::new(Shard::new(clock.clone(), driver.unparker()));
            CURRENT.with(|c| *c.borrow_mut() = Some(shard.clone()));
            Timers { shard, clock, _driver: driver }
        }

        /// The paused clock's time.
        pub fn now(&self) -> Instant {
            Instant(self.clock.now())
        }

        /// Moves the paused clock forward (does not fire anything).
        pub fn advance(&self, d: Duration) {
            assert!(self.clock.advance(d));
        }

        /// Fires every due timer, as a worker does; returns how many fired.
        pub fn process(&self) -> usize {
            self.shard.process()
        }

        /// What a worker does before it parks: records and returns the tick it will sleep until
        /// (`None`: until unparked).
        pub fn prepare_park(&self) -> Option<u64> {
            self.shard.prepare_park()
        }

        /// What a worker does when it wakes up.
        pub fn unparked(&self) {
            self.shard.unparked()
        }

        /// How many times a registration asked to unpark the shard's owner.
        pub fn unparks(&self) -> usize {
            self.shard.unparks.load(spindle_core::loom::Ordering::Relaxed)
        }

        /// The tick a sleep until `deadline` registers for.
        pub fn deadline_tick(&self, deadline: Instant) -> u64 {
            self.clock.deadline_tick(deadline.into_std())
        }

        /// Timers still linked in the wheel.
        pub fn len(&self) -> usize {
            self.shard.len()
        }

        /// Whether no timer is linked.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    }

    impl Drop for Timers {
        fn drop(&mut self) {
            CURRENT.with(|c| c.borrow_mut().take());
        }
    }
}
