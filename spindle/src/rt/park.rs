//! The driver interface a worker parks in: a futex parker, or the I/O reactor.
//!
//! # Contract
//!
//! A [`Driver`] belongs to one thread. `park`/`park_timeout`/`park_until` block that thread until
//! an [`Unparker`] fires (from any thread), the timeout passes, I/O readiness arrives (reactor
//! drivers dispatch it to registrations before returning), or spuriously. An `unpark` that happens
//! before the `park` is not lost: it makes the next park return at once (a one-token semaphore).
//! The unparker makes a syscall only when the thread is actually asleep. Workers park with the
//! next timer deadline as timeout (the time driver) in their I/O reactor ([`crate::driver`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use spindle_core::loom::unmodelled::{AtomicU32, Ordering::*};

use crate::driver::{Backend, Reactor};

/// What a thread contending for one of spindle's spin locks does once brief spinning did not get
/// it (the `relax` of [`SpinLock::lock`](spindle_core::spin::SpinLock::lock)): yield its OS
/// thread to the holder. Under loom it yields to the model instead, since an OS yield would never
/// let the model run the holder and the contender would spin forever.
pub(crate) fn spin_relax() {
    #[cfg(loom)]
    spindle_core::loom::spin_loop();
    #[cfg(not(loom))]
    std::thread::yield_now();
}

const EMPTY: u32 = 0;
const PARKED: u32 = 1;
const NOTIFIED: u32 = 2;

struct ParkState {
    /// The futex word: `EMPTY`, `PARKED` (a thread sleeps on it) or `NOTIFIED` (a token waits).
    word: AtomicU32,
    /// With a reactor, the thread sleeps in `epoll_wait` / `io_uring_enter` and is woken through
    /// its eventfd.
    reactor: Option<Arc<Reactor>>,
}

/// A thread's driver: a futex park, or an I/O reactor wait.
pub(crate) struct Driver {
    state: Arc<ParkState>,
}

/// Wakes the thread parked in a [`Driver`], from any thread.
#[derive(Clone)]
pub(crate) struct Unparker {
    state: Arc<ParkState>,
}

impl Driver {
    /// A futex-only driver (threads that never wait for I/O: `block_on` callers, timer thread).
    pub(crate) fn new() -> std::io::Result<Driver> {
        Ok(Driver { state: Arc::new(ParkState { word: AtomicU32::new(EMPTY), reactor: None }) })
    }

    /// A driver that parks in an I/O reactor of `backend` (workers and current-thread runtimes).
    /// Any thread may park in it, one at a time.
    pub(crate) fn with_reactor(backend: Backend) -> std::io::Result<Driver> {
        Ok(Driver::from_reactor(Arc::new(Reactor::with_backend(backend)?)))
    }

    /// Like [`Driver::with_reactor`], for a driver that one thread parks in for its whole life
    /// (a multi-thread worker, a current-thread runtime bound to its driving thread): on io_uring
    /// the ring is `SINGLE_ISSUER | DEFER_TASKRUN`, owned by the first thread that parks. Parking
    /// from another thread later is a contract violation (the park then only sleeps briefly).
    pub(crate) fn with_pinned_reactor(backend: Backend) -> std::io::Result<Driver> {
        Ok(Driver::from_reactor(Arc::new(Reactor::new_pinned(backend)?)))
    }

    fn from_reactor(reactor: Arc<Reactor>) -> Driver {
        Driver { state: Arc::new(ParkState { word: AtomicU32::new(EMPTY), reactor: Some(reactor) }) }
    }

    /// The reactor this driver parks in, if any.
    pub(crate) fn reactor(&self) -> Option<&Arc<Reactor>> {
        self.state.reactor.as_ref()
    }

    pub(crate) fn unparker(&self) -> Unparker {
        Unparker { state: self.state.clone() }
    }

    /// Blocks until unparked.
    pub(crate) fn park(&mut self) {
        self.park_until(None);
    }

    /// Blocks until unparked or `timeout` passed.
    pub(crate) fn park_timeout(&mut self, timeout: Duration) {
        self.park_until(Some(timeout));
    }

    /// Blocks until unparked or, if given, `timeout` passed. Returns whether it waited in the
    /// reactor (which then submitted, reaped and dispatched everything pending); a pending
    /// unpark token returns at once without.
    pub(crate) fn park_until(&mut self, timeout: Option<Duration>) -> bool {
        let word = &self.state.word;
        // Consume a pending token without sleeping.
        if word.compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed).is_ok() {
            return false;
        }
        if word.compare_exchange(EMPTY, PARKED, Acquire, Acquire).is_err() {
            // A token arrived between the two exchanges.
            word.store(EMPTY, Release);
            return false;
        }
        if let Some(reactor) = &self.state.reactor {
            // One wait: events, an unpark (eventfd) or the timeout all end it; spurious returns
            // are allowed by the contract.
            reactor.wait(timeout);
            word.swap(EMPTY, Acquire);
            return true;
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let remaining = match deadline {
                None => None,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => {
                        // Timed out: leave, taking a token if one raced in.
                        word.swap(EMPTY, Acquire);
                        return false;
                    }
                },
            };
            futex_wait(word, PARKED, remaining);
            if word.compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed).is_ok() {
                return false;
            }
            // Spurious wake (or EINTR): sleep again.
        }
    }
}

impl Unparker {
    /// Wakes the parked thread, or leaves a token for its next park.
    pub(crate) fn unpark(&self) {
        if self.state.word.swap(NOTIFIED, Release) == PARKED {
            match &self.state.reactor {
                Some(r) => r.wake(),
                None => futex_wake(&self.state.word),
            }
        }
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT reads the aligned u32 behind `as_ptr`, which lives as long as `word`
    // (borrowed for the call); the timeout pointer is null or points at `ts` on our stack.
    // Errors (EAGAIN when the word changed, EINTR, ETIMEDOUT) all mean "recheck", which the caller does.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG, expected, ts_ptr);
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is alive for the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpark_before_park_is_not_lost() {
        let mut d = Driver::new().unwrap();
        d.unparker().unpark();
        d.park(); // returns at once
    }

    #[test]
    fn park_timeout_returns() {
        let mut d = Driver::new().unwrap();
        let t = Instant::now();
        d.park_timeout(Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(20));
    }

    #[test]
    fn reactor_driver_parks_and_unparks() {
        let mut d = Driver::with_reactor(crate::driver::backend().unwrap()).unwrap();
        let u = d.unparker();
        u.unpark();
        d.park(); // token
        let t = Instant::now();
        d.park_timeout(Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(19));
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            u.unpark();
        });
        d.park();
        h.join().unwrap();
    }

    #[test]
    fn unpark_from_other_thread() {
        let mut d = Driver::new().unwrap();
        let u = d.unparker();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            u.unpark();
        });
        d.park();
        h.join().unwrap();
    }
}
