//! The short-held locks that guard wait lists and channel bookkeeping.
//!
//! [`Lock`] is std's `Mutex` when feature `std` is on (it spins briefly, then sleeps on a futex,
//! so a preempted holder never burns the other core), and [`crate::spin::SpinLock`] without
//! `std`. Under loom it is loom's model-checked `Mutex`: loom threads cannot block on a real
//! mutex, and a spin lock's spinning multiplies the interleavings loom must explore (a lock is
//! not an atomic or a cell, so this is the one direct use of loom outside `crate::loom`).
//! Critical sections never run user code: wakers are collected under the lock and woken after it
//! is released, so poisoning cannot happen through us and is ignored.

use core::ops::{Deref, DerefMut};

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
