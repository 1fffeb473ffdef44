//! A minimal spin lock for tiny critical sections (a few pointer writes).
//!
//! Taking it is one compare-and-swap and releasing it one release store, half the atomic traffic
//! of a futex mutex; contenders spin briefly and then yield their thread through the `relax`
//! function they pass (so a preempted holder can run). Never hold it across user code.
//!
//! ```
//! use spindle_core::spin::SpinLock;
//! let lock = SpinLock::new(0);
//! *lock.lock(|| {}) += 1;
//! assert_eq!(*lock.lock(|| {}), 1);
//! ```

use core::ops::{Deref, DerefMut};

use crate::loom::{AtomicBool, Ordering::*, UnsafeCell};

/// A spin lock around a `T`.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above; `T: Send` suffices because only one thread accesses it at a time.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Access to the value while the lock is held.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    value: *mut T,
}

impl<T> SpinLock<T> {
    /// Wraps `value`.
    #[cfg(not(loom))]
    pub const fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Wraps `value`.
    #[cfg(loom)]
    pub fn new(value: T) -> Self {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Takes the lock, calling `relax` between attempts once brief spinning did not get it
    /// (pass `std::thread::yield_now`, or `|| {}` on bare metal).
    #[inline]
    pub fn lock(&self, relax: impl Fn()) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        while self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            spins = spins.wrapping_add(1);
            if spins < 64 {
                crate::loom::spin_loop();
            } else {
                relax();
            }
        }
        SpinGuard { lock: self, value: self.value.with_mut(|p| p) }
    }

    /// Takes the lock if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinGuard<'_, T>> {
        self.locked
            .compare_exchange(false, true, Acquire, Relaxed)
            .ok()
            .map(|_| SpinGuard { lock: self, value: self.value.with_mut(|p| p) })
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no other thread accesses the value.
        unsafe { &*self.value }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access through the guard.
        unsafe { &mut *self.value }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Release);
    }
}
