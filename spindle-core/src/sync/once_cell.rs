//! [`OnceCell`]: a value initialised at most once, by an async initialiser.
//!
//! The value slot is guarded by a one-permit semaphore: whoever holds the permit initialises.
//! Once the value is written and published (`value_set`, `Release`), the semaphore is closed, so
//! every task still waiting for the permit wakes with "closed" and reads the value instead. An
//! initialiser that is cancelled (or panics) drops its permit, and the next waiter tries.

use core::fmt;
use core::future::Future;
use core::mem::MaybeUninit;

use super::batch::{BatchSemaphore, TryAcquireFailure};
use crate::loom::{AtomicBool, Ordering::*, UnsafeCell};

/// A cell written at most once, whose initialiser may be async.
///
/// Concurrent [`get_or_init`](Self::get_or_init) calls run exactly one initialiser at a time; the
/// others wait and then see its value. Works on any executor.
///
/// ```
/// use spindle::sync::OnceCell;
///
/// static CONFIG: OnceCell<u32> = OnceCell::const_new();
///
/// spindle::block_on(async {
///     let v = CONFIG.get_or_init(|| async { 42 }).await;
///     assert_eq!(*v, 42);
///     let again = CONFIG.get_or_init(|| async { unreachable!() }).await;
///     assert_eq!(*again, 42);
/// });
/// ```
pub struct OnceCell<T> {
    value_set: AtomicBool,
    value: UnsafeCell<MaybeUninit<T>>,
    semaphore: BatchSemaphore,
}

// SAFETY: the value is written once by the permit holder and then only shared: sharing the cell
// shares `&T` (needs `Sync`) and a `T` may be written on one thread and dropped on another (`Send`).
unsafe impl<T: Send + Sync> Sync for OnceCell<T> {}
// SAFETY: moving the cell moves the `T`.
unsafe impl<T: Send> Send for OnceCell<T> {}

/// Why [`OnceCell::set`] failed; gives the value back.
///
/// ```
/// use spindle::sync::{OnceCell, SetError};
/// let cell = OnceCell::new_with(Some(1));
/// assert_eq!(cell.set(2), Err(SetError::AlreadyInitializedError(2)));
/// ```
#[derive(Debug, PartialEq, Eq)]
pub enum SetError<T> {
    /// The cell already holds a value.
    AlreadyInitializedError(T),
    /// Another task is initialising the cell right now.
    InitializingError(T),
}

impl<T> SetError<T> {
    /// Whether the cell already held a value.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new_with(Some(1));
    /// assert!(cell.set(2).unwrap_err().is_already_init_err());
    /// ```
    pub fn is_already_init_err(&self) -> bool {
        matches!(self, SetError::AlreadyInitializedError(_))
    }

    /// Whether an initialiser was running.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::<u8>::new();
    /// let mut init = Box::pin(cell.get_or_init(std::future::pending));
    /// let _ = futures::FutureExt::now_or_never(init.as_mut()); // an initialiser is running
    /// assert!(cell.set(1).unwrap_err().is_initializing_err());
    /// ```
    pub fn is_initializing_err(&self) -> bool {
        matches!(self, SetError::InitializingError(_))
    }

    /// The value that could not be stored.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new_with(Some(1));
    /// assert_eq!(cell.set(7).unwrap_err().into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            SetError::AlreadyInitializedError(v) | SetError::InitializingError(v) => v,
        }
    }
}

impl<T> fmt::Display for SetError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetError::AlreadyInitializedError(_) => f.write_str("the cell is already initialized"),
            SetError::InitializingError(_) => f.write_str("the cell is being initialized"),
        }
    }
}

#[cfg(feature = "std")]
impl<T: fmt::Debug> std::error::Error for SetError<T> {}

impl<T> OnceCell<T> {
    /// An empty cell.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::<u8>::new();
    /// assert!(cell.get().is_none());
    /// ```
    pub fn new() -> OnceCell<T> {
        OnceCell {
            value_set: AtomicBool::new(false),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            semaphore: BatchSemaphore::new(1),
        }
    }

    /// An empty cell, usable in a `static`.
    ///
    /// ```
    /// static CELL: spindle::sync::OnceCell<String> = spindle::sync::OnceCell::const_new();
    /// assert!(CELL.get().is_none());
    /// ```
    #[cfg(not(loom))]
    pub const fn const_new() -> OnceCell<T> {
        OnceCell {
            value_set: AtomicBool::new(false),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            semaphore: BatchSemaphore::new(1),
        }
    }

    /// A cell holding `value` if it is `Some`, else empty.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new_with(Some(3));
    /// assert_eq!(cell.get(), Some(&3));
    /// ```
    pub fn new_with(value: Option<T>) -> OnceCell<T> {
        let cell = OnceCell::new();
        if let Some(v) = value {
            // SAFETY: nobody else can see the new cell.
            unsafe { cell.publish(v) };
        }
        cell
    }

    /// Whether the cell holds a value.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new();
    /// cell.set(1).unwrap();
    /// assert!(cell.initialized());
    /// ```
    pub fn initialized(&self) -> bool {
        self.value_set.load(Acquire)
    }

    /// The value, if set.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new();
    /// assert_eq!(cell.get(), None);
    /// cell.set(5).unwrap();
    /// assert_eq!(cell.get(), Some(&5));
    /// ```
    pub fn get(&self) -> Option<&T> {
        if self.initialized() {
            // SAFETY: `value_set` (read with `Acquire`) is published after the value was written,
            // and the value is never written again while shared.
            Some(unsafe { &*self.value.with(|p| p).cast::<T>() })
        } else {
            None
        }
    }

    /// The value, through exclusive access.
    ///
    /// ```
    /// let mut cell = spindle::sync::OnceCell::new_with(Some(1));
    /// *cell.get_mut().unwrap() += 1;
    /// assert_eq!(cell.get(), Some(&2));
    /// ```
    pub fn get_mut(&mut self) -> Option<&mut T> {
        if self.initialized() {
            // SAFETY: set, and `&mut self` proves exclusive access.
            Some(unsafe { &mut *self.value.with_mut(|p| p).cast::<T>() })
        } else {
            None
        }
    }

    /// Stores `value` if the cell is empty and no initialiser is running.
    ///
    /// # Errors
    /// [`SetError`] with the value if the cell is already set or being initialised.
    ///
    /// ```
    /// let cell = spindle::sync::OnceCell::new();
    /// assert!(cell.set(1).is_ok());
    /// assert_eq!(cell.set(2).unwrap_err().into_inner(), 2);
    /// ```
    pub fn set(&self, value: T) -> Result<(), SetError<T>> {
        if self.initialized() {
            return Err(SetError::AlreadyInitializedError(value));
        }
        match self.semaphore.try_acquire(1) {
            Ok(()) => {
                // SAFETY: we hold the only permit and the value is not set (set values close the
                // semaphore, so the permit could not have been taken after one was stored).
                unsafe { self.publish(value) };
                Ok(())
            }
            Err(TryAcquireFailure::Closed) => Err(SetError::AlreadyInitializedError(value)),
            Err(TryAcquireFailure::NoPermits) => Err(SetError::InitializingError(value)),
        }
    }

    /// Writes the value, publishes it and closes the semaphore so waiters read it.
    ///
    /// # Safety
    /// The caller holds the permit (or has exclusive access) and the value is not set.
    unsafe fn publish(&self, value: T) {
        // SAFETY: the caller has the only write access.
        self.value.with_mut(|p| unsafe { (*p).write(value) });
        self.value_set.store(true, Release);
        // Wakes every waiting initialiser with "closed": they read the value instead. The permit
        // we hold is simply never returned.
        self.semaphore.close();
    }

    /// The value, initialising it with `f` first if the cell is empty.
    ///
    /// If several tasks call this at once, one runs its initialiser and the others wait for it.
    ///
    /// # Cancel safety
    /// Cancel safe: a cancelled caller that was running its initialiser leaves the cell empty and
    /// lets the next waiting caller run its own initialiser; a cancelled waiter gives up its place.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let cell = spindle::sync::OnceCell::new();
    ///     assert_eq!(*cell.get_or_init(|| async { 7 }).await, 7);
    /// });
    /// ```
    pub async fn get_or_init<F, Fut>(&self, f: F) -> &T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        match self.get_or_try_init(|| async { Ok::<T, core::convert::Infallible>(f().await) }).await {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// The value, initialising it with `f` first if the cell is empty; an `Err` from `f` leaves
    /// the cell empty (the next caller tries) and is returned.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`get_or_init`](Self::get_or_init).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let cell = spindle::sync::OnceCell::new();
    ///     assert_eq!(cell.get_or_try_init(|| async { Err::<u8, _>("no") }).await, Err("no"));
    ///     assert_eq!(cell.get_or_try_init(|| async { Ok::<u8, &str>(1) }).await, Ok(&1));
    /// });
    /// ```
    pub async fn get_or_try_init<E, F, Fut>(&self, f: F) -> Result<&T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(v) = self.get() {
            return Ok(v);
        }
        match self.semaphore.acquire_fast(1).await {
            Ok(()) => {
                // Give the permit back if `f` fails, panics or we are cancelled.
                struct Permit<'a>(&'a BatchSemaphore);
                impl Drop for Permit<'_> {
                    fn drop(&mut self) {
                        self.0.release(1);
                    }
                }
                let permit = Permit(&self.semaphore);
                let value = f().await?;
                core::mem::forget(permit);
                // SAFETY: we hold the permit; the value is not set (else the semaphore would be
                // closed and our acquire would have failed).
                unsafe { self.publish(value) };
                // SAFETY: just published.
                Ok(self.get().expect("spindle: OnceCell value just set"))
            }
            // Closed: someone published the value.
            Err(_) => Ok(self.get().expect("spindle: OnceCell closed without a value")),
        }
    }

    /// Takes the value out, leaving the cell empty.
    ///
    /// ```
    /// let mut cell = spindle::sync::OnceCell::new_with(Some(1));
    /// assert_eq!(cell.take(), Some(1));
    /// assert!(cell.get().is_none());
    /// ```
    pub fn take(&mut self) -> Option<T> {
        core::mem::take(self).into_inner()
    }

    /// Consumes the cell, returning the value if set.
    ///
    /// ```
    /// assert_eq!(spindle::sync::OnceCell::new_with(Some(1)).into_inner(), Some(1));
    /// ```
    pub fn into_inner(self) -> Option<T> {
        if self.initialized() {
            self.value_set.store(false, Relaxed);
            // SAFETY: set, owned, and `value_set` is cleared so `Drop` will not drop it again.
            Some(unsafe { self.value.with_mut(|p| (*p).assume_init_read()) })
        } else {
            None
        }
    }
}

impl<T> Drop for OnceCell<T> {
    fn drop(&mut self) {
        if self.initialized() {
            // SAFETY: set, and we are the last owner.
            self.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
        }
    }
}

impl<T> Default for OnceCell<T> {
    fn default() -> Self {
        OnceCell::new()
    }
}

impl<T> From<T> for OnceCell<T> {
    fn from(value: T) -> Self {
        OnceCell::new_with(Some(value))
    }
}

impl<T: Clone> Clone for OnceCell<T> {
    fn clone(&self) -> Self {
        OnceCell::new_with(self.get().cloned())
    }
}

impl<T: PartialEq> PartialEq for OnceCell<T> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl<T: Eq> Eq for OnceCell<T> {}

impl<T: fmt::Debug> fmt::Debug for OnceCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnceCell").field("value", &self.get()).finish()
    }
}
