//! [`Semaphore`]: a fair counting semaphore with borrowed and owned permits.

use alloc::sync::Arc;
use core::fmt;

use super::batch::{AcquireFailure, BatchSemaphore, TryAcquireFailure};

/// A counting semaphore: a pool of permits that tasks acquire and give back.
///
/// Waiters are served in FIFO order, even when a later waiter asks for fewer permits than the
/// first one: `acquire_many(5)` waiting at the front is not overtaken by a stream of `acquire()`s.
/// Waiting never allocates. Works on any executor.
///
/// # Requests that could never be served
///
/// The semaphore knows how many permits exist in total (available plus held: the initial count,
/// plus [`add_permits`](Self::add_permits), minus forgotten ones). A request for more than that
/// total fails at once with an error for which [`AcquireError::is_too_many`] is true, instead
/// of waiting forever at the head of the queue, where, because service is FIFO, it would also
/// block every later waiter. (tokio's semaphore waits in that case, in case permits get added.)
/// So a semaphore used as a countdown latch must be created holding the permits it counts down
/// from, not created empty and filled with `add_permits`: a [`Barrier`](super::Barrier) or a
/// counter with a [`Notify`](super::Notify) expresses that better.
///
/// ```
/// use spindle::sync::Semaphore;
/// use std::sync::Arc;
///
/// spindle::block_on(async {
///     let sem = Arc::new(Semaphore::new(2)); // at most two jobs at a time
///     let mut jobs = Vec::new();
///     for i in 0..5u32 {
///         let permit = sem.clone().acquire_owned().await.unwrap();
///         jobs.push(spindle::spawn(async move {
///             let _permit = permit; // released when the job ends
///             i * 2
///         }));
///     }
///     let mut sum = 0;
///     for j in jobs {
///         sum += j.await.unwrap();
///     }
///     assert_eq!(sum, 20);
///     assert_eq!(sem.available_permits(), 2);
/// });
/// ```
pub struct Semaphore {
    ll: BatchSemaphore,
}

/// Permits borrowed from a [`Semaphore`]; returned to it when dropped (unless [`forget`](Self::forget)).
///
/// ```
/// let sem = spindle::sync::Semaphore::new(1);
/// let permit: spindle::sync::SemaphorePermit<'_> = sem.try_acquire().unwrap();
/// drop(permit); // released
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[must_use = "dropping the permit releases it at once"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    permits: u32,
}

/// Permits from a [`Semaphore`] held through an `Arc`, so they can move into spawned tasks;
/// returned when dropped (unless [`forget`](Self::forget)).
///
/// ```
/// use std::sync::Arc;
/// let sem = Arc::new(spindle::sync::Semaphore::new(1));
/// let permit: spindle::sync::OwnedSemaphorePermit = sem.clone().try_acquire_owned().unwrap();
/// std::thread::spawn(move || drop(permit)).join().unwrap();
/// assert_eq!(sem.available_permits(), 1);
/// ```
#[must_use = "dropping the permit releases it at once"]
pub struct OwnedSemaphorePermit {
    sem: Arc<Semaphore>,
    permits: u32,
}

/// Why an acquire failed: the semaphore was closed, or more permits were requested than it holds.
///
/// ```
/// use spindle::sync::Semaphore;
///
/// spindle::block_on(async {
///     let sem = Semaphore::new(3);
///     // Asking for more permits than exist fails at once instead of waiting forever.
///     let err = sem.acquire_many(4).await.unwrap_err();
///     assert!(err.is_too_many());
///     sem.close();
///     assert!(sem.acquire().await.unwrap_err().is_closed());
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquireError {
    kind: AcquireErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcquireErrorKind {
    Closed,
    TooMany { requested: u32, total: usize },
}

impl AcquireError {
    fn closed() -> AcquireError {
        AcquireError { kind: AcquireErrorKind::Closed }
    }

    /// Whether the semaphore was closed.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let sem = spindle::sync::Semaphore::new(1);
    ///     sem.close();
    ///     assert!(sem.acquire().await.unwrap_err().is_closed());
    /// });
    /// ```
    pub fn is_closed(&self) -> bool {
        self.kind == AcquireErrorKind::Closed
    }

    /// Whether more permits were requested than the semaphore holds in total (so waiting could
    /// never succeed).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let sem = spindle::sync::Semaphore::new(1);
    ///     assert!(sem.acquire_many(2).await.unwrap_err().is_too_many());
    /// });
    /// ```
    pub fn is_too_many(&self) -> bool {
        matches!(self.kind, AcquireErrorKind::TooMany { .. })
    }
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AcquireErrorKind::Closed => f.write_str("semaphore closed"),
            AcquireErrorKind::TooMany { requested, total } => write!(
                f,
                "cannot acquire {requested} permits from a semaphore that holds {total} in total \
                 (waiting would never end)"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AcquireError {}

/// Why [`Semaphore::try_acquire`] failed.
///
/// ```
/// use spindle::sync::{Semaphore, TryAcquireError};
/// let sem = Semaphore::new(0);
/// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryAcquireError {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits are available now (or earlier waiters are queued for them).
    NoPermits,
}

impl TryAcquireError {
    /// Whether the semaphore was closed.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(1);
    /// sem.close();
    /// assert!(sem.try_acquire().unwrap_err().is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        *self == TryAcquireError::Closed
    }

    /// Whether no permits were available.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(0);
    /// assert!(sem.try_acquire().unwrap_err().is_no_permits());
    /// ```
    pub fn is_no_permits(&self) -> bool {
        *self == TryAcquireError::NoPermits
    }
}

impl fmt::Display for TryAcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryAcquireError::Closed => f.write_str("semaphore closed"),
            TryAcquireError::NoPermits => f.write_str("no permits available"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TryAcquireError {}

impl From<TryAcquireFailure> for TryAcquireError {
    fn from(f: TryAcquireFailure) -> Self {
        match f {
            TryAcquireFailure::Closed => TryAcquireError::Closed,
            TryAcquireFailure::NoPermits => TryAcquireError::NoPermits,
        }
    }
}

impl Semaphore {
    /// The most permits a semaphore can hold: `usize::MAX >> 3`.
    ///
    /// ```
    /// assert_eq!(spindle::sync::Semaphore::MAX_PERMITS, usize::MAX >> 3);
    /// ```
    pub const MAX_PERMITS: usize = super::batch::MAX_PERMITS;

    /// A semaphore with `permits` permits.
    ///
    /// # Panics
    /// If `permits` exceeds [`MAX_PERMITS`](Self::MAX_PERMITS).
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(3);
    /// assert_eq!(sem.available_permits(), 3);
    /// ```
    pub fn new(permits: usize) -> Semaphore {
        Semaphore { ll: BatchSemaphore::new(permits) }
    }

    /// A semaphore with `permits` permits, usable in a `static`.
    ///
    /// ```
    /// use spindle::sync::Semaphore;
    /// static LIMIT: Semaphore = Semaphore::const_new(4);
    /// assert_eq!(LIMIT.available_permits(), 4);
    /// ```
    #[cfg(not(loom))]
    pub const fn const_new(permits: usize) -> Semaphore {
        Semaphore { ll: BatchSemaphore::new(permits) }
    }

    /// Permits available right now.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(2);
    /// let _p = sem.try_acquire().unwrap();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn available_permits(&self) -> usize {
        self.ll.available_permits()
    }

    /// Adds `n` new permits, waking waiters they satisfy (oldest first).
    ///
    /// # Panics
    /// If the total would exceed [`MAX_PERMITS`](Self::MAX_PERMITS).
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(0);
    /// sem.add_permits(2);
    /// assert_eq!(sem.available_permits(), 2);
    /// ```
    pub fn add_permits(&self, n: usize) {
        self.ll.add_permits(n);
    }

    /// Destroys up to `n` *available* permits, returning how many were destroyed.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(5);
    /// assert_eq!(sem.forget_permits(3), 3);
    /// assert_eq!(sem.forget_permits(9), 2);
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget_permits(&self, n: usize) -> usize {
        self.ll.forget_available(n)
    }

    fn failure(&self, f: AcquireFailure, requested: u32) -> AcquireError {
        match f {
            AcquireFailure::Closed => AcquireError::closed(),
            AcquireFailure::TooMany => {
                AcquireError { kind: AcquireErrorKind::TooMany { requested, total: self.ll.total_permits() } }
            }
        }
    }

    /// Waits for one permit.
    ///
    /// # Errors
    /// If the semaphore is closed (before or while waiting).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before it completes never loses a permit (one already
    /// granted goes to the next waiter) and gives up its place in the queue.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let sem = spindle::sync::Semaphore::new(1);
    ///     let permit = sem.acquire().await.unwrap();
    ///     assert_eq!(sem.available_permits(), 0);
    ///     drop(permit);
    ///     assert_eq!(sem.available_permits(), 1);
    /// });
    /// ```
    pub async fn acquire(&self) -> Result<SemaphorePermit<'_>, AcquireError> {
        self.acquire_many(1).await
    }

    /// Waits for `n` permits, taken together.
    ///
    /// # Errors
    /// If the semaphore is closed, or if `n` is more than the semaphore holds in total (available
    /// and held), since such a wait could never end. (Forgetting permits while a large request
    /// waits fails it the same way.)
    ///
    /// # Cancel safety
    /// Cancel safe: permits granted to a cancelled request (it may have been granted some of them)
    /// go to the next waiters; its place in the queue is given up.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let sem = spindle::sync::Semaphore::new(5);
    ///     let permits = sem.acquire_many(3).await.unwrap();
    ///     assert_eq!(permits.num_permits(), 3);
    ///     assert_eq!(sem.available_permits(), 2);
    /// });
    /// ```
    pub async fn acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, AcquireError> {
        match self.ll.acquire_fast(n as usize).await {
            Ok(()) => Ok(SemaphorePermit { sem: self, permits: n }),
            Err(f) => Err(self.failure(f, n)),
        }
    }

    /// Takes one permit if one is available now and nobody is queued for it.
    ///
    /// ```
    /// use spindle::sync::{Semaphore, TryAcquireError};
    /// let sem = Semaphore::new(1);
    /// let p = sem.try_acquire().unwrap();
    /// assert_eq!(sem.try_acquire().unwrap_err(), TryAcquireError::NoPermits);
    /// drop(p);
    /// assert!(sem.try_acquire().is_ok());
    /// ```
    pub fn try_acquire(&self) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are available now and nobody is queued for them.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(4);
    /// let p = sem.try_acquire_many(3).unwrap();
    /// assert!(sem.try_acquire_many(2).is_err());
    /// assert_eq!(p.num_permits(), 3);
    /// ```
    pub fn try_acquire_many(&self, n: u32) -> Result<SemaphorePermit<'_>, TryAcquireError> {
        self.ll.try_acquire(n as usize)?;
        Ok(SemaphorePermit { sem: self, permits: n })
    }

    /// Waits for one permit held through the `Arc`, so it can move into a spawned task.
    ///
    /// # Errors
    /// If the semaphore is closed.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire`](Self::acquire).
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let sem = Arc::new(spindle::sync::Semaphore::new(1));
    ///     let permit = sem.clone().acquire_owned().await.unwrap();
    ///     spindle::spawn(async move { drop(permit) }).await.unwrap();
    ///     assert_eq!(sem.available_permits(), 1);
    /// });
    /// ```
    pub async fn acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.acquire_many_owned(1).await
    }

    /// Waits for `n` permits held through the `Arc`.
    ///
    /// # Errors
    /// As [`acquire_many`](Self::acquire_many).
    ///
    /// # Cancel safety
    /// Cancel safe, as [`acquire_many`](Self::acquire_many).
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let sem = Arc::new(spindle::sync::Semaphore::new(3));
    ///     let p = sem.clone().acquire_many_owned(3).await.unwrap();
    ///     assert_eq!(p.num_permits(), 3);
    /// });
    /// ```
    pub async fn acquire_many_owned(self: Arc<Self>, n: u32) -> Result<OwnedSemaphorePermit, AcquireError> {
        match self.ll.acquire_fast(n as usize).await {
            Ok(()) => Ok(OwnedSemaphorePermit { sem: self, permits: n }),
            Err(f) => Err(self.failure(f, n)),
        }
    }

    /// Takes one permit, held through the `Arc`, if available now.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(1));
    /// let p = sem.clone().try_acquire_owned().unwrap();
    /// assert!(sem.clone().try_acquire_owned().is_err());
    /// drop(p);
    /// ```
    pub fn try_acquire_owned(self: Arc<Self>) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.try_acquire_many_owned(1)
    }

    /// Takes `n` permits, held through the `Arc`, if available now.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(2));
    /// assert_eq!(sem.clone().try_acquire_many_owned(2).unwrap().num_permits(), 2);
    /// ```
    pub fn try_acquire_many_owned(self: Arc<Self>, n: u32) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.ll.try_acquire(n as usize)?;
        Ok(OwnedSemaphorePermit { sem: self, permits: n })
    }

    /// Closes the semaphore: every waiting and future acquire fails with a closed error. Permits
    /// already held stay valid and can still be released.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let sem = spindle::sync::Semaphore::new(0);
    ///     sem.close();
    ///     assert!(sem.is_closed());
    ///     assert!(sem.acquire().await.is_err());
    /// });
    /// ```
    pub fn close(&self) {
        self.ll.close();
    }

    /// Whether [`close`](Self::close) was called.
    ///
    /// ```
    /// assert!(!spindle::sync::Semaphore::new(1).is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        self.ll.is_closed()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("available_permits", &self.available_permits())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<'a> SemaphorePermit<'a> {
    /// Keeps the permits taken forever: they are removed from the semaphore.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(2);
    /// sem.try_acquire().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 1);
    /// ```
    pub fn forget(mut self) {
        self.sem.ll.forget_held(self.permits as usize);
        self.permits = 0;
    }

    /// How many permits this holds.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(2);
    /// assert_eq!(sem.try_acquire_many(2).unwrap().num_permits(), 2);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }

    /// Moves the permits of `other` (from the same semaphore) into `self`.
    ///
    /// # Panics
    /// If `other` belongs to another semaphore.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(3);
    /// let mut a = sem.try_acquire().unwrap();
    /// a.merge(sem.try_acquire_many(2).unwrap());
    /// assert_eq!(a.num_permits(), 3);
    /// ```
    pub fn merge(&mut self, mut other: SemaphorePermit<'a>) {
        assert!(core::ptr::eq(self.sem, other.sem), "spindle: merging permits of different semaphores");
        self.permits += core::mem::take(&mut other.permits);
    }

    /// Splits `n` permits off into a new permit, or `None` if this holds fewer than `n`.
    ///
    /// ```
    /// let sem = spindle::sync::Semaphore::new(3);
    /// let mut a = sem.try_acquire_many(3).unwrap();
    /// let b = a.split(1).unwrap();
    /// assert_eq!((a.num_permits(), b.num_permits()), (2, 1));
    /// ```
    pub fn split(&mut self, n: usize) -> Option<SemaphorePermit<'a>> {
        let n = u32::try_from(n).ok().filter(|&n| n <= self.permits)?;
        self.permits -= n;
        Some(SemaphorePermit { sem: self.sem, permits: n })
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        self.sem.ll.release(self.permits as usize);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").field("permits", &self.permits).finish()
    }
}

impl OwnedSemaphorePermit {
    /// Keeps the permits taken forever: they are removed from the semaphore.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(1));
    /// sem.clone().try_acquire_owned().unwrap().forget();
    /// assert_eq!(sem.available_permits(), 0);
    /// ```
    pub fn forget(mut self) {
        self.sem.ll.forget_held(self.permits as usize);
        self.permits = 0;
    }

    /// How many permits this holds.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(1));
    /// assert_eq!(sem.try_acquire_owned().unwrap().num_permits(), 1);
    /// ```
    pub fn num_permits(&self) -> usize {
        self.permits as usize
    }

    /// Moves the permits of `other` (from the same semaphore) into `self`.
    ///
    /// # Panics
    /// If `other` belongs to another semaphore.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(2));
    /// let mut a = sem.clone().try_acquire_owned().unwrap();
    /// a.merge(sem.clone().try_acquire_owned().unwrap());
    /// assert_eq!(a.num_permits(), 2);
    /// ```
    pub fn merge(&mut self, mut other: OwnedSemaphorePermit) {
        assert!(Arc::ptr_eq(&self.sem, &other.sem), "spindle: merging permits of different semaphores");
        self.permits += core::mem::take(&mut other.permits);
    }

    /// Splits `n` permits off into a new permit, or `None` if this holds fewer than `n`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(2));
    /// let mut a = sem.clone().try_acquire_many_owned(2).unwrap();
    /// assert_eq!(a.split(1).unwrap().num_permits(), 1);
    /// ```
    pub fn split(&mut self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok().filter(|&n| n <= self.permits)?;
        self.permits -= n;
        Some(OwnedSemaphorePermit { sem: self.sem.clone(), permits: n })
    }

    /// The semaphore these permits belong to.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let sem = Arc::new(spindle::sync::Semaphore::new(1));
    /// let p = sem.clone().try_acquire_owned().unwrap();
    /// assert!(Arc::ptr_eq(p.semaphore(), &sem));
    /// ```
    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }
}

impl Drop for OwnedSemaphorePermit {
    fn drop(&mut self) {
        self.sem.ll.release(self.permits as usize);
    }
}

impl fmt::Debug for OwnedSemaphorePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedSemaphorePermit").field("permits", &self.permits).finish()
    }
}
