//! [`RwLock`]: an async reader-writer lock, fair and writer-preferring.
//!
//! Built on the fair semaphore: a reader takes one permit, a writer takes all of them
//! (`max_readers`). Because waiters are served strictly in FIFO order and newcomers never barge
//! past a queued waiter, a writer that is waiting holds back every reader that arrives after it:
//! writers cannot starve, and readers queued behind a writer are admitted together once it is done.

use alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::batch::BatchSemaphore;
use super::mutex::TryLockError;
use crate::loom::UnsafeCell;

/// The most concurrent readers a lock allows: `u32::MAX >> 3`.
const MAX_READS: u32 = u32::MAX >> 3;

/// An async reader-writer lock: many readers or one writer, guards may be held across `.await`.
///
/// Fair and writer-preferring: requests are served in arrival order, and a waiting writer blocks
/// readers that arrive after it (so writers are never starved by a stream of readers). Waiting
/// never allocates. Works on any executor.
///
/// ```
/// use spindle::sync::RwLock;
///
/// spindle::block_on(async {
///     let lock = RwLock::new(5);
///     {
///         let r1 = lock.read().await;
///         let r2 = lock.read().await; // readers share
///         assert_eq!(*r1 + *r2, 10);
///     }
///     *lock.write().await += 1; // a writer is alone
///     assert_eq!(*lock.read().await, 6);
/// });
/// ```
pub struct RwLock<T> {
    max_readers: u32,
    sem: BatchSemaphore,
    data: UnsafeCell<T>,
}

// SAFETY: writers get `&mut T` on any thread (needs `T: Send`); readers share `&T` across threads
// (needs `T: Sync`).
unsafe impl<T: Send> Send for RwLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RwLock<T> {}

/// Shared access to an [`RwLock`]'s value; releases on drop.
///
/// ```
/// spindle::block_on(async {
///     let lock = spindle::sync::RwLock::new(1);
///     let r: spindle::sync::RwLockReadGuard<'_, i32> = lock.read().await;
///     assert_eq!(*r, 1);
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct RwLockReadGuard<'a, T> {
    lock: &'a RwLock<T>,
    _not_auto: PhantomData<*const T>,
}

/// Exclusive access to an [`RwLock`]'s value; releases on drop.
///
/// ```
/// spindle::block_on(async {
///     let lock = spindle::sync::RwLock::new(1);
///     let mut w: spindle::sync::RwLockWriteGuard<'_, i32> = lock.write().await;
///     *w = 2;
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct RwLockWriteGuard<'a, T> {
    lock: &'a RwLock<T>,
    _not_auto: PhantomData<*mut T>,
}

/// Shared access through an `Arc` (from [`RwLock::read_owned`]); releases on drop.
///
/// ```
/// use std::sync::Arc;
/// spindle::block_on(async {
///     let lock = Arc::new(spindle::sync::RwLock::new(1));
///     let r: spindle::sync::OwnedRwLockReadGuard<i32> = lock.read_owned().await;
///     assert_eq!(*r, 1);
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct OwnedRwLockReadGuard<T> {
    lock: Arc<RwLock<T>>,
}

/// Exclusive access through an `Arc` (from [`RwLock::write_owned`]); releases on drop.
///
/// ```
/// use std::sync::Arc;
/// spindle::block_on(async {
///     let lock = Arc::new(spindle::sync::RwLock::new(1));
///     let mut w: spindle::sync::OwnedRwLockWriteGuard<i32> = lock.write_owned().await;
///     *w = 3;
/// });
/// ```
#[must_use = "dropping the guard releases the lock at once"]
pub struct OwnedRwLockWriteGuard<T> {
    lock: Arc<RwLock<T>>,
}

// SAFETY: a read guard shares `&T`: sending or sharing it needs `T: Sync`.
unsafe impl<T: Sync> Send for RwLockReadGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for RwLockReadGuard<'_, T> {}
// SAFETY: a write guard is `&mut T`: sending it needs `T: Send`, sharing it needs `T: Sync`.
unsafe impl<T: Send + Sync> Send for RwLockWriteGuard<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    ///
    /// ```
    /// let lock = spindle::sync::RwLock::new(1);
    /// assert_eq!(lock.into_inner(), 1);
    /// ```
    pub fn new(value: T) -> RwLock<T> {
        Self::with_max_readers(value, MAX_READS)
    }

    /// A new lock that admits at most `max_readers` readers at once.
    ///
    /// # Panics
    /// If `max_readers` is zero or above `u32::MAX >> 3`.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let lock = spindle::sync::RwLock::with_max_readers(0, 2);
    ///     let _a = lock.read().await;
    ///     let _b = lock.read().await;
    ///     assert!(lock.try_read().is_err()); // a third reader waits
    /// });
    /// ```
    pub fn with_max_readers(value: T, max_readers: u32) -> RwLock<T> {
        assert!(
            max_readers > 0 && max_readers <= MAX_READS,
            "spindle: RwLock max_readers must be in 1..={MAX_READS}, got {max_readers}"
        );
        RwLock { max_readers, sem: BatchSemaphore::new(max_readers as usize), data: UnsafeCell::new(value) }
    }

    /// A new unlocked lock, usable in a `static`.
    ///
    /// ```
    /// use spindle::sync::RwLock;
    /// static CONFIG: RwLock<u32> = RwLock::const_new(3);
    /// spindle::block_on(async { assert_eq!(*CONFIG.read().await, 3) });
    /// ```
    #[cfg(not(loom))]
    pub const fn const_new(value: T) -> RwLock<T> {
        RwLock { max_readers: MAX_READS, sem: BatchSemaphore::new(MAX_READS as usize), data: UnsafeCell::new(value) }
    }

    fn read_guard(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard { lock: self, _not_auto: PhantomData }
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard { lock: self, _not_auto: PhantomData }
    }

    /// Waits for shared access.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future gives up its place in the queue and passes on anything
    /// already granted to it; no wakeup is lost.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let lock = spindle::sync::RwLock::new(String::from("hi"));
    ///     assert_eq!(lock.read().await.len(), 2);
    /// });
    /// ```
    pub async fn read(&self) -> RwLockReadGuard<'_, T> {
        // Never closed, and one permit is at most `max_readers`: cannot fail.
        let _ = self.sem.acquire_fast(1).await;
        self.read_guard()
    }

    /// Waits for exclusive access.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future gives up its place in the queue and passes on the reader
    /// slots already granted to it (readers queued behind it proceed); no wakeup is lost.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let lock = spindle::sync::RwLock::new(vec![1]);
    ///     lock.write().await.push(2);
    ///     assert_eq!(*lock.read().await, vec![1, 2]);
    /// });
    /// ```
    pub async fn write(&self) -> RwLockWriteGuard<'_, T> {
        let _ = self.sem.acquire_fast(self.max_readers as usize).await;
        self.write_guard()
    }

    /// Takes shared access if it is available now and no writer is queued.
    ///
    /// # Errors
    /// [`TryLockError`] if a writer holds or waits for the lock (or `max_readers` are in).
    ///
    /// ```
    /// let lock = spindle::sync::RwLock::new(1);
    /// let r = lock.try_read().unwrap();
    /// assert!(lock.try_write().is_err());
    /// drop(r);
    /// ```
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>, TryLockError> {
        self.sem.try_acquire(1).map(|()| self.read_guard()).map_err(|_| try_lock_error())
    }

    /// Takes exclusive access if the lock is free now.
    ///
    /// # Errors
    /// [`TryLockError`] if anyone holds or waits for the lock.
    ///
    /// ```
    /// let lock = spindle::sync::RwLock::new(1);
    /// *lock.try_write().unwrap() = 2;
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>, TryLockError> {
        self.sem.try_acquire(self.max_readers as usize).map(|()| self.write_guard()).map_err(|_| try_lock_error())
    }

    /// Waits for shared access through the `Arc`.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`read`](Self::read).
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let lock = Arc::new(spindle::sync::RwLock::new(1));
    ///     let r = lock.clone().read_owned().await;
    ///     assert_eq!(spindle::spawn(async move { *r }).await.unwrap(), 1);
    /// });
    /// ```
    pub async fn read_owned(self: Arc<Self>) -> OwnedRwLockReadGuard<T> {
        let _ = self.sem.acquire_fast(1).await;
        OwnedRwLockReadGuard { lock: self }
    }

    /// Waits for exclusive access through the `Arc`.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`write`](Self::write).
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let lock = Arc::new(spindle::sync::RwLock::new(1));
    ///     let mut w = lock.clone().write_owned().await;
    ///     spindle::spawn(async move { *w = 2 }).await.unwrap();
    ///     assert_eq!(*lock.read().await, 2);
    /// });
    /// ```
    pub async fn write_owned(self: Arc<Self>) -> OwnedRwLockWriteGuard<T> {
        let _ = self.sem.acquire_fast(self.max_readers as usize).await;
        OwnedRwLockWriteGuard { lock: self }
    }

    /// Takes shared access through the `Arc` if available now.
    ///
    /// # Errors
    /// As [`try_read`](Self::try_read).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let lock = Arc::new(spindle::sync::RwLock::new(1));
    /// assert_eq!(*lock.try_read_owned().unwrap(), 1);
    /// ```
    pub fn try_read_owned(self: Arc<Self>) -> Result<OwnedRwLockReadGuard<T>, TryLockError> {
        self.sem.try_acquire(1).map_err(|_| try_lock_error())?;
        Ok(OwnedRwLockReadGuard { lock: self })
    }

    /// Takes exclusive access through the `Arc` if the lock is free now.
    ///
    /// # Errors
    /// As [`try_write`](Self::try_write).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let lock = Arc::new(spindle::sync::RwLock::new(1));
    /// *lock.clone().try_write_owned().unwrap() = 3;
    /// assert_eq!(*lock.try_read_owned().unwrap(), 3);
    /// ```
    pub fn try_write_owned(self: Arc<Self>) -> Result<OwnedRwLockWriteGuard<T>, TryLockError> {
        self.sem.try_acquire(self.max_readers as usize).map_err(|_| try_lock_error())?;
        Ok(OwnedRwLockWriteGuard { lock: self })
    }

    /// Blocks the thread until shared access is granted (for synchronous code).
    ///
    /// ```
    /// let lock = spindle::sync::RwLock::new(1);
    /// assert_eq!(*lock.blocking_read(), 1);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_read(&self) -> RwLockReadGuard<'_, T> {
        super::park::block_on(self.read())
    }

    /// Blocks the thread until exclusive access is granted (for synchronous code).
    ///
    /// ```
    /// let lock = spindle::sync::RwLock::new(1);
    /// *lock.blocking_write() = 2;
    /// assert_eq!(*lock.blocking_read(), 2);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_write(&self) -> RwLockWriteGuard<'_, T> {
        super::park::block_on(self.write())
    }

    /// The value, through exclusive access (no locking needed).
    ///
    /// ```
    /// let mut lock = spindle::sync::RwLock::new(1);
    /// *lock.get_mut() = 2;
    /// assert_eq!(lock.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves no guard exists.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    /// Consumes the lock, returning the value.
    ///
    /// ```
    /// assert_eq!(spindle::sync::RwLock::new(4).into_inner(), 4);
    /// ```
    pub fn into_inner(self) -> T {
        let mut this = core::mem::ManuallyDrop::new(self);
        // SAFETY: we own the lock, so no guard exists; the value is moved out exactly once and
        // the cell is never used again (the `ManuallyDrop` keeps it from being dropped).
        let value = unsafe { core::ptr::read(this.data_ptr()) };
        // SAFETY: the semaphore is dropped exactly once, here, and never used again.
        unsafe { core::ptr::drop_in_place(&mut this.sem) };
        value
    }

    fn data_ptr(&self) -> *mut T {
        self.data.with_mut(|p| p)
    }
}

fn try_lock_error() -> TryLockError {
    super::mutex::TRY_LOCK_ERROR
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> Self {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> Self {
        RwLock::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T> RwLockWriteGuard<'a, T> {
    /// Turns exclusive access into shared access without letting a queued writer in between;
    /// readers queued behind this writer are admitted at once.
    ///
    /// ```
    /// use spindle::sync::{RwLock, RwLockWriteGuard};
    /// spindle::block_on(async {
    ///     let lock = RwLock::new(1);
    ///     let mut w = lock.write().await;
    ///     *w = 2;
    ///     let r = RwLockWriteGuard::downgrade(w);
    ///     assert_eq!(*r, 2);
    ///     assert_eq!(*lock.try_read().unwrap(), 2);
    /// });
    /// ```
    pub fn downgrade(this: Self) -> RwLockReadGuard<'a, T> {
        let lock = this.lock;
        core::mem::forget(this);
        lock.sem.release(lock.max_readers as usize - 1);
        lock.read_guard()
    }
}

impl<T> OwnedRwLockWriteGuard<T> {
    /// Turns exclusive access into shared access, as [`RwLockWriteGuard::downgrade`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use spindle::sync::{OwnedRwLockWriteGuard, RwLock};
    /// spindle::block_on(async {
    ///     let lock = Arc::new(RwLock::new(1));
    ///     let w = lock.clone().write_owned().await;
    ///     let r = OwnedRwLockWriteGuard::downgrade(w);
    ///     assert_eq!(*r, 1);
    /// });
    /// ```
    pub fn downgrade(this: Self) -> OwnedRwLockReadGuard<T> {
        let this = core::mem::ManuallyDrop::new(this);
        // SAFETY: `this` is never dropped, so the `Arc` is moved out exactly once.
        let lock = unsafe { core::ptr::read(&this.lock) };
        lock.sem.release(lock.max_readers as usize - 1);
        OwnedRwLockReadGuard { lock }
    }
}

impl<T> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard excludes writers.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> Drop for RwLockReadGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard is the only access.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a write guard is the only access.
        unsafe { &mut *self.lock.data_ptr() }
    }
}

impl<T> Drop for RwLockWriteGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(self.lock.max_readers as usize);
    }
}

impl<T> Deref for OwnedRwLockReadGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a read guard excludes writers.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> Drop for OwnedRwLockReadGuard<T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T> Deref for OwnedRwLockWriteGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: a write guard is the only access.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> DerefMut for OwnedRwLockWriteGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: a write guard is the only access.
        unsafe { &mut *self.lock.data_ptr() }
    }
}

impl<T> Drop for OwnedRwLockWriteGuard<T> {
    fn drop(&mut self) {
        self.lock.sem.release(self.lock.max_readers as usize);
    }
}

macro_rules! fmt_guard {
    ($($guard:ident $(<$lt:lifetime>)?),*) => {$(
        impl<T: fmt::Debug> fmt::Debug for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&**self, f)
            }
        }
        impl<T: fmt::Display> fmt::Display for $guard<$($lt,)? T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&**self, f)
            }
        }
    )*};
}

fmt_guard!(RwLockReadGuard<'_>, RwLockWriteGuard<'_>, OwnedRwLockReadGuard, OwnedRwLockWriteGuard);
