//! The short-held locks that guard wait lists and channel bookkeeping.
//!
//! [`Lock`] is std's `Mutex` when feature `std` is on (it spins briefly, then sleeps on a futex,
//! so a preempted holder never burns the other core), and [`crate::spin::SpinLock`] without
//! `std`. Under loom it is loom's model-checked `Mutex`: loom threads cannot block on a real
//! mutex, and a spin lock's spinning multiplies the interleavings loom must explore (a lock is
//! not an atomic or a cell, so this is the one direct use of loom outside `crate::loom`).
//! Critical sections never run user code: wakers are collected under the lock and woken after it
//! is released, so poisoning cannot happen through us and is ignored.
//!
//! [`ValueLock`] is the reader-writer counterpart for `watch`'s value and `broadcast`'s slots:
//! std's `RwLock`, a small writer-preferring spin reader-writer lock without `std`, loom's under
//! loom. A user's closure may run under it (`watch::Sender::send_modify`); a panic there poisons
//! nothing (poisoning is ignored), matching tokio.

use core::ops::{Deref, DerefMut};

#[cfg(all(not(feature = "std"), not(loom)))]
use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};
#[cfg(all(not(feature = "std"), not(loom)))]
use crate::spin::{SpinGuard, SpinLock};

/// A mutual-exclusion lock for short critical sections that never await.
pub(crate) struct Lock<T> {
    #[cfg(all(feature = "std", not(loom)))]
    inner: std::sync::Mutex<T>,
    #[cfg(all(not(feature = "std"), not(loom)))]
    inner: SpinLock<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// Proof that the [`Lock`] is held; releases it on drop.
pub(crate) struct LockGuard<'a, T> {
    #[cfg(all(feature = "std", not(loom)))]
    inner: std::sync::MutexGuard<'a, T>,
    #[cfg(all(not(feature = "std"), not(loom)))]
    inner: SpinGuard<'a, T>,
    #[cfg(loom)]
    inner: loom::sync::MutexGuard<'a, T>,
}

impl<T> Lock<T> {
    /// A new unlocked lock.
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Lock<T> {
        #[cfg(feature = "std")]
        return Lock { inner: std::sync::Mutex::new(value) };
        #[cfg(not(feature = "std"))]
        return Lock { inner: SpinLock::new(value) };
    }

    /// A new unlocked lock.
    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Lock<T> {
        Lock { inner: loom::sync::Mutex::new(value) }
    }

    /// Takes the lock, waiting for the current holder if there is one.
    #[inline]
    pub(crate) fn lock(&self) -> LockGuard<'_, T> {
        #[cfg(any(feature = "std", loom))]
        return LockGuard { inner: self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner) };
        // Bare metal has no thread to yield to: keep spinning.
        #[cfg(all(not(feature = "std"), not(loom)))]
        return LockGuard { inner: self.inner.lock(|| {}) };
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

/// A reader-writer lock for a value that is read far more than written (`watch`).
pub(crate) struct ValueLock<T> {
    #[cfg(all(feature = "std", not(loom)))]
    inner: std::sync::RwLock<T>,
    #[cfg(all(not(feature = "std"), not(loom)))]
    inner: SpinRwLock<T>,
    #[cfg(loom)]
    inner: loom::sync::RwLock<T>,
}

/// Shared access to a [`ValueLock`]'s value.
pub(crate) struct ValueReadGuard<'a, T> {
    #[cfg(all(feature = "std", not(loom)))]
    inner: std::sync::RwLockReadGuard<'a, T>,
    #[cfg(all(not(feature = "std"), not(loom)))]
    inner: SpinReadGuard<'a, T>,
    #[cfg(loom)]
    inner: loom::sync::RwLockReadGuard<'a, T>,
}

/// Exclusive access to a [`ValueLock`]'s value.
pub(crate) struct ValueWriteGuard<'a, T> {
    #[cfg(all(feature = "std", not(loom)))]
    inner: std::sync::RwLockWriteGuard<'a, T>,
    #[cfg(all(not(feature = "std"), not(loom)))]
    inner: SpinWriteGuard<'a, T>,
    #[cfg(loom)]
    inner: loom::sync::RwLockWriteGuard<'a, T>,
}

impl<T> ValueLock<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(all(feature = "std", not(loom)))]
        return ValueLock { inner: std::sync::RwLock::new(value) };
        #[cfg(all(not(feature = "std"), not(loom)))]
        return ValueLock { inner: SpinRwLock::new(value) };
        #[cfg(loom)]
        return ValueLock { inner: loom::sync::RwLock::new(value) };
    }

    pub(crate) fn read(&self) -> ValueReadGuard<'_, T> {
        #[cfg(any(feature = "std", loom))]
        return ValueReadGuard { inner: self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner) };
        #[cfg(all(not(feature = "std"), not(loom)))]
        return ValueReadGuard { inner: self.inner.read() };
    }

    pub(crate) fn write(&self) -> ValueWriteGuard<'_, T> {
        #[cfg(any(feature = "std", loom))]
        return ValueWriteGuard { inner: self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) };
        #[cfg(all(not(feature = "std"), not(loom)))]
        return ValueWriteGuard { inner: self.inner.write() };
    }
}

impl<T> Deref for ValueReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> Deref for ValueWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for ValueWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

/// A writer-preferring spin reader-writer lock: one word, `WRITER` bit plus a reader count.
#[cfg(all(not(feature = "std"), not(loom)))]
struct SpinRwLock<T> {
    state: AtomicUsize,
    value: UnsafeCell<T>,
}

/// Set while a writer holds the lock (the reader count is then zero).
#[cfg(all(not(feature = "std"), not(loom)))]
const RW_WRITER: usize = 1 << 0;
/// Set while a writer waits: new readers hold back so writers are not starved.
#[cfg(all(not(feature = "std"), not(loom)))]
const RW_WRITER_WAITING: usize = 1 << 1;
/// One reader, in the count held in the high bits.
#[cfg(all(not(feature = "std"), not(loom)))]
const RW_READER: usize = 1 << 2;

// SAFETY: like `std::sync::RwLock`: readers share `&T` across threads (needs `Sync`), a writer gets
// `&mut T` on whatever thread it runs (needs `Send`).
#[cfg(all(not(feature = "std"), not(loom)))]
unsafe impl<T: Send + Sync> Sync for SpinRwLock<T> {}
// SAFETY: moving the lock moves the `T`.
#[cfg(all(not(feature = "std"), not(loom)))]
unsafe impl<T: Send> Send for SpinRwLock<T> {}

#[cfg(all(not(feature = "std"), not(loom)))]
struct SpinReadGuard<'a, T> {
    lock: &'a SpinRwLock<T>,
    value: *const T,
}

#[cfg(all(not(feature = "std"), not(loom)))]
struct SpinWriteGuard<'a, T> {
    lock: &'a SpinRwLock<T>,
    value: *mut T,
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> SpinRwLock<T> {
    fn new(value: T) -> Self {
        SpinRwLock { state: AtomicUsize::new(0), value: UnsafeCell::new(value) }
    }

    fn read(&self) -> SpinReadGuard<'_, T> {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & (RW_WRITER | RW_WRITER_WAITING) != 0 {
                crate::loom::spin_loop();
                s = self.state.load(Relaxed);
                continue;
            }
            match self.state.compare_exchange_weak(s, s + RW_READER, Acquire, Relaxed) {
                Ok(_) => return SpinReadGuard { lock: self, value: self.value.with(|p| p) },
                Err(actual) => s = actual,
            }
        }
    }

    fn write(&self) -> SpinWriteGuard<'_, T> {
        let mut s = self.state.load(Relaxed);
        loop {
            if s & RW_WRITER == 0 && s < RW_READER {
                // Free (perhaps with our own or another writer's waiting bit): take it.
                match self.state.compare_exchange_weak(s, RW_WRITER, Acquire, Relaxed) {
                    Ok(_) => return SpinWriteGuard { lock: self, value: self.value.with_mut(|p| p) },
                    Err(actual) => s = actual,
                }
            } else if s & RW_WRITER_WAITING == 0 {
                s = self.state.fetch_or(RW_WRITER_WAITING, Relaxed) | RW_WRITER_WAITING;
            } else {
                crate::loom::spin_loop();
                s = self.state.load(Relaxed);
            }
        }
    }
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> Deref for SpinReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard excludes writers, so the value is not mutated while we share it.
        unsafe { &*self.value }
    }
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> Drop for SpinReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.fetch_sub(RW_READER, Release);
    }
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> Deref for SpinWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the write guard is the only access to the value.
        unsafe { &*self.value }
    }
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> DerefMut for SpinWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the write guard is the only access to the value.
        unsafe { &mut *self.value }
    }
}

#[cfg(all(not(feature = "std"), not(loom)))]
impl<T> Drop for SpinWriteGuard<'_, T> {
    fn drop(&mut self) {
        // Clears `RW_WRITER` and any `RW_WRITER_WAITING`: a writer still waiting sets its bit again
        // on its next turn, so the preference for writers survives.
        self.lock.state.store(0, Release);
    }
}
