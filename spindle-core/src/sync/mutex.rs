//! [`Mutex`]: an async mutual-exclusion lock, fair (FIFO), with borrowed, owned and mapped guards.

use alloc::sync::Arc;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::batch::BatchSemaphore;
use crate::loom::UnsafeCell;

/// An async mutex: `lock().await` waits without blocking the thread, and the guard may be held
/// across `.await` points.
///
/// Fair: waiters get the lock in the order they started waiting (FIFO), so none starves.
/// Waiting never allocates. Works on any executor.
///
/// Prefer a `std::sync::Mutex` when the lock is never held across an `.await`: it is cheaper.
///
/// ```
/// use spindle::sync::Mutex;
/// use std::sync::Arc;
///
/// spindle::block_on(async {
///     let count = Arc::new(Mutex::new(0));
///     let tasks: Vec<_> = (0..10)
///         .map(|_| {
///             let count = count.clone();
///             spindle::spawn(async move { *count.lock().await += 1 })
///         })
///         .collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
///     assert_eq!(*count.lock().await, 10);
/// });
/// ```
pub struct Mutex<T> {
    sem: BatchSemaphore,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex hands the `T` to one thread at a time: it can be shared and sent whenever the
// `T` itself may move between threads.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Mutex<T> {}

/// Exclusive access to a [`Mutex`]'s value; unlocks on drop.
///
/// ```
/// spindle::block_on(async {
///     let m = spindle::sync::Mutex::new(1);
///     let mut guard: spindle::sync::MutexGuard<'_, i32> = m.lock().await;
///     *guard += 1;
///     drop(guard);
///     assert_eq!(*m.lock().await, 2);
/// });
/// ```
#[must_use = "dropping the guard unlocks the mutex at once"]
pub struct MutexGuard<'a, T> {
    lock: &'a Mutex<T>,
    /// Opts out of the auto traits; the right ones are implemented below.
    _not_auto: PhantomData<*mut T>,
}

/// Exclusive access to a [`Mutex`] held through an `Arc` (from [`Mutex::lock_owned`]), so it can
/// move into a spawned task; unlocks on drop.
///
/// ```
/// use std::sync::Arc;
/// spindle::block_on(async {
///     let m = Arc::new(spindle::sync::Mutex::new(1));
///     let guard: spindle::sync::OwnedMutexGuard<i32> = m.clone().lock_owned().await;
///     assert_eq!(*guard, 1);
/// });
/// ```
#[must_use = "dropping the guard unlocks the mutex at once"]
pub struct OwnedMutexGuard<T> {
    lock: Arc<Mutex<T>>,
    /// Opts out of the derived `Sync` (which would only need `Mutex<T>: Sync`, that is `T: Send`,
    /// while the guard hands out `&T`); the right impl is below.
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

/// Exclusive access to part of a [`Mutex`]'s value (from [`MutexGuard::map`]); unlocks on drop.
///
/// ```
/// use spindle::sync::{MappedMutexGuard, Mutex, MutexGuard};
/// spindle::block_on(async {
///     let m = Mutex::new((0, String::new()));
///     let mut s: MappedMutexGuard<'_, String> = MutexGuard::map(m.lock().await, |p| &mut p.1);
///     s.push('x');
/// });
/// ```
#[must_use = "dropping the guard unlocks the mutex at once"]
pub struct MappedMutexGuard<'a, U: ?Sized> {
    sem: &'a BatchSemaphore,
    data: *mut U,
    _borrow: PhantomData<&'a mut U>,
}

// SAFETY: the guard is exclusive access to a `T`: sending it sends `&mut T` (needs `T: Send`).
unsafe impl<T: Send> Send for MutexGuard<'_, T> {}
// SAFETY: sharing the guard shares `&T` (needs `T: Sync`; `Send` because it came from the mutex).
unsafe impl<T: Send + Sync> Sync for MutexGuard<'_, T> {}
// SAFETY: sharing the guard shares `&T` across threads (needs `T: Sync`, and `T: Send` to be in
// the mutex at all); sending it is the derived impl (`Arc<Mutex<T>>` and `Cell<()>` are `Send`).
unsafe impl<T: Send + Sync> Sync for OwnedMutexGuard<T> {}
// SAFETY: as for `MutexGuard`.
unsafe impl<U: ?Sized + Send> Send for MappedMutexGuard<'_, U> {}
// SAFETY: as for `MutexGuard`.
unsafe impl<U: ?Sized + Send + Sync> Sync for MappedMutexGuard<'_, U> {}

/// [`Mutex::try_lock`] found the mutex locked.
///
/// ```
/// let m = spindle::sync::Mutex::new(());
/// let _g = m.try_lock().unwrap();
/// let err: spindle::sync::TryLockError = m.try_lock().unwrap_err();
/// assert_eq!(err.to_string(), "operation would block: the lock is held");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryLockError(());

/// The one value of [`TryLockError`], for the other locks of this module.
pub(crate) const TRY_LOCK_ERROR: TryLockError = TryLockError(());

impl fmt::Display for TryLockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("operation would block: the lock is held")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TryLockError {}

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    ///
    /// ```
    /// let m = spindle::sync::Mutex::new(5);
    /// assert_eq!(m.into_inner(), 5);
    /// ```
    pub fn new(value: T) -> Mutex<T> {
        Mutex { sem: BatchSemaphore::new(1), data: UnsafeCell::new(value) }
    }

    /// A new unlocked mutex, usable in a `static`.
    ///
    /// ```
    /// use spindle::sync::Mutex;
    /// static LOG: Mutex<Vec<u32>> = Mutex::const_new(Vec::new());
    /// spindle::block_on(async { LOG.lock().await.push(1) });
    /// ```
    #[cfg(not(loom))]
    pub const fn const_new(value: T) -> Mutex<T> {
        Mutex { sem: BatchSemaphore::new(1), data: UnsafeCell::new(value) }
    }

    /// Waits for the lock.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future gives up its place in the queue; if the lock had already
    /// been handed to it, the lock passes on to the next waiter (or is unlocked). No wakeup is lost.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let m = spindle::sync::Mutex::new(1);
    ///     *m.lock().await += 1;
    ///     assert_eq!(*m.lock().await, 2);
    /// });
    /// ```
    pub async fn lock(&self) -> MutexGuard<'_, T> {
        // A mutex is never closed and holds exactly one permit, so acquiring one cannot fail.
        let _ = self.sem.acquire_fast(1).await;
        MutexGuard { lock: self, _not_auto: PhantomData }
    }

    /// Takes the lock if it is free now (and nobody is queued for it).
    ///
    /// # Errors
    /// [`TryLockError`] if the lock is held or waited for.
    ///
    /// ```
    /// let m = spindle::sync::Mutex::new(1);
    /// let g = m.try_lock().unwrap();
    /// assert!(m.try_lock().is_err());
    /// drop(g);
    /// assert!(m.try_lock().is_ok());
    /// ```
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, TryLockError> {
        match self.sem.try_acquire(1) {
            Ok(()) => Ok(MutexGuard { lock: self, _not_auto: PhantomData }),
            Err(_) => Err(TRY_LOCK_ERROR),
        }
    }

    /// Waits for the lock, holding the mutex through the `Arc` so the guard is `'static`.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`lock`](Self::lock).
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let m = Arc::new(spindle::sync::Mutex::new(0));
    ///     let mut guard = m.clone().lock_owned().await;
    ///     spindle::spawn(async move { *guard = 7 }).await.unwrap();
    ///     assert_eq!(*m.lock().await, 7);
    /// });
    /// ```
    pub async fn lock_owned(self: Arc<Self>) -> OwnedMutexGuard<T> {
        let _ = self.sem.acquire_fast(1).await;
        OwnedMutexGuard { lock: self, _not_sync: PhantomData }
    }

    /// Takes the lock through the `Arc` if it is free now.
    ///
    /// # Errors
    /// [`TryLockError`] if the lock is held or waited for.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(spindle::sync::Mutex::new(0));
    /// let g = m.clone().try_lock_owned().unwrap();
    /// assert!(m.clone().try_lock_owned().is_err());
    /// drop(g);
    /// ```
    pub fn try_lock_owned(self: Arc<Self>) -> Result<OwnedMutexGuard<T>, TryLockError> {
        match self.sem.try_acquire(1) {
            Ok(()) => Ok(OwnedMutexGuard { lock: self, _not_sync: PhantomData }),
            Err(_) => Err(TRY_LOCK_ERROR),
        }
    }

    /// Blocks the thread until the lock is taken: for synchronous code sharing the mutex with
    /// async code. Calling it inside an async task blocks that task's worker thread.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(spindle::sync::Mutex::new(0));
    /// let m2 = m.clone();
    /// std::thread::spawn(move || *m2.blocking_lock() += 1).join().unwrap();
    /// assert_eq!(*m.blocking_lock(), 1);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_lock(&self) -> MutexGuard<'_, T> {
        super::park::block_on(self.lock())
    }

    /// Blocks the thread until the lock is taken, through the `Arc`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let m = Arc::new(spindle::sync::Mutex::new(1));
    /// assert_eq!(*m.clone().blocking_lock_owned(), 1);
    /// ```
    #[cfg(all(feature = "std", not(loom)))]
    pub fn blocking_lock_owned(self: Arc<Self>) -> OwnedMutexGuard<T> {
        super::park::block_on(self.lock_owned())
    }

    /// The value, through exclusive access (no locking needed).
    ///
    /// ```
    /// let mut m = spindle::sync::Mutex::new(1);
    /// *m.get_mut() = 2;
    /// assert_eq!(m.into_inner(), 2);
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        // SAFETY: `&mut self` proves no guard exists.
        self.data.with_mut(|p| unsafe { &mut *p })
    }

    /// Consumes the mutex, returning the value.
    ///
    /// ```
    /// assert_eq!(spindle::sync::Mutex::new("x").into_inner(), "x");
    /// ```
    pub fn into_inner(self) -> T {
        let mut this = core::mem::ManuallyDrop::new(self);
        // SAFETY: we own the mutex, so no guard exists; the value is moved out exactly once and
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

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Mutex::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Ok(guard) => d.field("data", &&*guard),
            Err(_) => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<'a, T> MutexGuard<'a, T> {
    /// The mutex this guard locks.
    ///
    /// ```
    /// use spindle::sync::{Mutex, MutexGuard};
    /// spindle::block_on(async {
    ///     let m = Mutex::new(1);
    ///     let g = m.lock().await;
    ///     assert!(std::ptr::eq(MutexGuard::mutex(&g), &m));
    /// });
    /// ```
    pub fn mutex(this: &Self) -> &'a Mutex<T> {
        this.lock
    }

    /// Narrows the guard to a part of the value, keeping the mutex locked.
    ///
    /// ```
    /// use spindle::sync::{Mutex, MutexGuard};
    /// spindle::block_on(async {
    ///     let m = Mutex::new((1, 2));
    ///     let mut second = MutexGuard::map(m.lock().await, |pair| &mut pair.1);
    ///     *second = 5;
    ///     drop(second);
    ///     assert_eq!(*m.lock().await, (1, 5));
    /// });
    /// ```
    pub fn map<U: ?Sized, F: FnOnce(&mut T) -> &mut U>(this: Self, f: F) -> MappedMutexGuard<'a, U> {
        let lock = this.lock;
        // SAFETY: the guard holds the lock, so the value is ours exclusively. `f` runs while the
        // guard still lives, so a panic in it unlocks the mutex as the guard unwinds.
        let data = f(unsafe { &mut *lock.data_ptr() }) as *mut U;
        core::mem::forget(this);
        MappedMutexGuard { sem: &lock.sem, data, _borrow: PhantomData }
    }

    /// Like [`map`](Self::map), but `f` may decline (returning the original guard).
    ///
    /// ```
    /// use spindle::sync::{Mutex, MutexGuard};
    /// spindle::block_on(async {
    ///     let m = Mutex::new(vec![1]);
    ///     let g = m.lock().await;
    ///     let g = MutexGuard::try_map(g, |v| v.get_mut(5)).unwrap_err();
    ///     assert_eq!(g.len(), 1);
    /// });
    /// ```
    #[allow(clippy::result_large_err)]
    pub fn try_map<U: ?Sized, F: FnOnce(&mut T) -> Option<&mut U>>(
        this: Self,
        f: F,
    ) -> Result<MappedMutexGuard<'a, U>, Self> {
        let lock = this.lock;
        // SAFETY: the guard holds the lock, so the value is ours exclusively.
        match f(unsafe { &mut *lock.data_ptr() }) {
            Some(data) => {
                let data = data as *mut U;
                core::mem::forget(this);
                Ok(MappedMutexGuard { sem: &lock.sem, data, _borrow: PhantomData })
            }
            None => Err(this),
        }
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.data_ptr() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T> OwnedMutexGuard<T> {
    /// The mutex this guard locks.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use spindle::sync::{Mutex, OwnedMutexGuard};
    /// spindle::block_on(async {
    ///     let m = Arc::new(Mutex::new(1));
    ///     let g = m.clone().lock_owned().await;
    ///     assert!(Arc::ptr_eq(OwnedMutexGuard::mutex(&g), &m));
    /// });
    /// ```
    pub fn mutex(this: &Self) -> &Arc<Mutex<T>> {
        &this.lock
    }
}

impl<T> Deref for OwnedMutexGuard<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.data_ptr() }
    }
}

impl<T> DerefMut for OwnedMutexGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock.
        unsafe { &mut *self.lock.data_ptr() }
    }
}

impl<T> Drop for OwnedMutexGuard<T> {
    fn drop(&mut self) {
        self.lock.sem.release(1);
    }
}

impl<T: fmt::Debug> fmt::Debug for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: fmt::Display> fmt::Display for OwnedMutexGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<U: ?Sized> Deref for MappedMutexGuard<'_, U> {
    type Target = U;
    fn deref(&self) -> &U {
        // SAFETY: the guard holds the lock and `data` points into the locked value.
        unsafe { &*self.data }
    }
}

impl<U: ?Sized> DerefMut for MappedMutexGuard<'_, U> {
    fn deref_mut(&mut self) -> &mut U {
        // SAFETY: the guard holds the lock and `data` points into the locked value.
        unsafe { &mut *self.data }
    }
}

impl<U: ?Sized> Drop for MappedMutexGuard<'_, U> {
    fn drop(&mut self) {
        self.sem.release(1);
    }
}

impl<U: ?Sized + fmt::Debug> fmt::Debug for MappedMutexGuard<'_, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
