//! The fair counting semaphore under `Mutex`, `RwLock`, `Semaphore` and bounded `mpsc`.
//!
//! # State word
//!
//! ```text
//!  usize:  [ available permits (bits 2..) | QUEUED | CLOSED ]
//! ```
//!
//! Acquiring and releasing are one compare-and-swap while nobody waits. Once a waiter is queued
//! (`QUEUED`), the available count is zero and stays zero: released permits are handed straight to
//! the waiters, oldest first, under the wait-list lock, and a newcomer queues behind them instead of
//! barging. That is what makes the locks fair and `RwLock` writer-preferring (a queued writer
//! holds back every reader that arrives after it).
//!
//! # Waiters
//!
//! A waiting [`Acquire`] owns a [`Waiter`] node, linked into the list while it waits. Its `needed`
//! word counts the permits still missing, and is the hand-over point: whoever grants the last
//! missing permit (or fails the waiter) unlinks the node, takes its waker and only then publishes
//! `needed` with `Release`. Once the future reads a final value with `Acquire` it owns the node
//! again and no other thread touches it.
//!
//! # Invariants
//! - `QUEUED` is set exactly while the list is non-empty, and only changed under the lock.
//! - While `QUEUED` is set the available count is zero.
//! - A permit is never lost: a dropped `Acquire` returns what it was granted (partially or fully)
//!   to the next waiters.

use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use super::list::{Links, List, Node};
use super::lock::{Lock, LockGuard};
use super::wake_list::WakeList;
use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};

/// Set once the semaphore is closed: acquires fail and every queued waiter was failed.
pub(crate) const CLOSED: usize = 1 << 0;
/// Set while waiters are queued: releases go through the lock and fast-path acquires fail.
pub(crate) const QUEUED: usize = 1 << 1;
/// How far the available count is shifted in the state word.
pub(crate) const PERMIT_SHIFT: u32 = 2;
/// The most permits a semaphore can hold (the count must fit above the flag bits with room to
/// detect overflow).
pub(crate) const MAX_PERMITS: usize = usize::MAX >> 3;

/// `needed` value of a waiter failed because the semaphore closed.
const FAILED_CLOSED: usize = usize::MAX;
/// `needed` value of a waiter failed because it asked for more permits than exist.
const FAILED_TOO_MANY: usize = usize::MAX - 1;

/// Why an acquire failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcquireFailure {
    /// The semaphore was closed.
    Closed,
    /// More permits were requested than the semaphore holds in total.
    TooMany,
}

/// Why a non-waiting acquire failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryAcquireFailure {
    /// The semaphore was closed.
    Closed,
    /// Not enough permits are available right now (or others are queued for them).
    NoPermits,
}

/// The waiters and nothing else: everything countable is in the atomic state word.
struct Waiters {
    list: List<Waiter>,
}

/// A fair counting semaphore. See the module docs.
pub(crate) struct BatchSemaphore {
    state: AtomicUsize,
    /// Permits that exist (available, held or handed to waiters): what `TooMany` is judged against.
    total: AtomicUsize,
    waiters: Lock<Waiters>,
}

/// A queued acquire's node. Lives inside its (pinned) [`Acquire`] future.
pub(crate) struct Waiter {
    /// Permits still missing, or `FAILED_*`. Written only under the lock; a final value (zero or
    /// failed) is published with `Release` after the node was unlinked and its waker taken.
    needed: AtomicUsize,
    /// The waiter's waker; only touched under the lock (or by the future once it owns the node).
    waker: UnsafeCell<Option<Waker>>,
    /// How many permits the waiter asked for.
    requested: usize,
    links: Links<Waiter>,
    _pin: PhantomPinned,
}

// SAFETY: `links` is the node's only `Links` and waiters are pinned inside their futures.
unsafe impl Node for Waiter {
    fn links(&self) -> &Links<Waiter> {
        &self.links
    }
}

impl Waiter {
    fn new(requested: usize) -> Waiter {
        Waiter {
            needed: AtomicUsize::new(requested),
            waker: UnsafeCell::new(None),
            requested,
            links: Links::new(),
            _pin: PhantomPinned,
        }
    }

    /// Takes the waker out. Caller holds the lock (or owns the node).
    fn take_waker(&self) -> Option<Waker> {
        // SAFETY: only the lock holder (caller) touches the slot.
        self.waker.with_mut(|w| unsafe { (*w).take() })
    }
}

impl BatchSemaphore {
    /// A semaphore with `permits` available. Panics above [`MAX_PERMITS`].
    #[cfg(not(loom))]
    pub(crate) const fn new(permits: usize) -> BatchSemaphore {
        assert!(permits <= MAX_PERMITS, "spindle: a semaphore holds at most usize::MAX >> 3 permits");
        BatchSemaphore {
            state: AtomicUsize::new(permits << PERMIT_SHIFT),
            total: AtomicUsize::new(permits),
            waiters: Lock::new(Waiters { list: List::new() }),
        }
    }

    /// A semaphore with `permits` available. Panics above [`MAX_PERMITS`].
    #[cfg(loom)]
    pub(crate) fn new(permits: usize) -> BatchSemaphore {
        assert!(permits <= MAX_PERMITS, "spindle: a semaphore holds at most usize::MAX >> 3 permits");
        BatchSemaphore {
            state: AtomicUsize::new(permits << PERMIT_SHIFT),
            total: AtomicUsize::new(permits),
            waiters: Lock::new(Waiters { list: List::new() }),
        }
    }

    /// Permits available right now.
    pub(crate) fn available_permits(&self) -> usize {
        self.state.load(Acquire) >> PERMIT_SHIFT
    }

    /// Permits that exist in total.
    pub(crate) fn total_permits(&self) -> usize {
        self.total.load(Acquire)
    }

    /// Whether [`close`](Self::close) was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Acquire) & CLOSED != 0
    }

    /// Takes `n` permits if they are available and nobody is queued for them.
    #[inline]
    pub(crate) fn try_acquire(&self, n: usize) -> Result<(), TryAcquireFailure> {
        // More than any semaphore can hold is never available (and `n << PERMIT_SHIFT` would drop
        // its high bits, turning a huge request into a small one). The queued path reports it as
        // `TooMany`.
        if n > MAX_PERMITS {
            return Err(if self.is_closed() { TryAcquireFailure::Closed } else { TryAcquireFailure::NoPermits });
        }
        let need = n << PERMIT_SHIFT;
        // `Acquire` even on failure: whoever closed the semaphore may have published data first
        // (`OnceCell` publishes its value, then closes) that a failed caller goes on to read.
        let mut s = self.state.load(Acquire);
        loop {
            if s & CLOSED != 0 {
                return Err(TryAcquireFailure::Closed);
            }
            // `QUEUED` implies zero available, so this also refuses to barge past waiters
            // (except for `n == 0`, which takes nothing from anyone).
            if s & !(CLOSED | QUEUED) < need {
                return Err(TryAcquireFailure::NoPermits);
            }
            match self.state.compare_exchange_weak(s, s - need, Acquire, Acquire) {
                Ok(_) => return Ok(()),
                Err(actual) => s = actual,
            }
        }
    }

    /// A future that acquires `n` permits, waiting in FIFO order. It spends no cooperative budget:
    /// callers go through [`acquire_fast`](Self::acquire_fast), which spent it on the fast path.
    fn acquire_unbudgeted(&self, n: usize) -> Acquire<'_> {
        Acquire { sem: self, node: Waiter::new(n), queued: false }
    }

    /// Acquires `n` permits: at once if they are free (no waiter node is built, which is most of
    /// the cost of an uncontended acquire), else by queueing. The usual way to acquire.
    ///
    /// Cancel safe, as [`Acquire`].
    pub(crate) async fn acquire_fast(&self, n: usize) -> Result<(), AcquireFailure> {
        match core::future::poll_fn(|cx| self.poll_try_acquire(cx, n)).await {
            Ok(()) => Ok(()),
            Err(TryAcquireFailure::Closed) => Err(AcquireFailure::Closed),
            Err(TryAcquireFailure::NoPermits) => self.acquire_unbudgeted(n).await,
        }
    }

    /// Takes `n` permits if available now and nobody waits, spending one unit of the cooperative
    /// budget first: the fast path of an acquire, without building a waiter node.
    #[inline]
    pub(crate) fn poll_try_acquire(&self, cx: &mut Context<'_>, n: usize) -> Poll<Result<(), TryAcquireFailure>> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(self.try_acquire(n))
    }

    /// Returns `n` permits (held ones being given back), handing them to waiters first.
    #[inline]
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Only permits that were taken come back, and no more than `MAX_PERMITS` can be taken.
        debug_assert!(n <= MAX_PERMITS, "spindle: releasing more permits than a semaphore can hold");
        let add = n << PERMIT_SHIFT;
        let mut s = self.state.load(Relaxed);
        while s & QUEUED == 0 {
            match self.state.compare_exchange_weak(s, s + add, Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        self.release_locked(n, self.waiters.lock());
    }

    /// Creates `n` new permits. Panics if the total would exceed [`MAX_PERMITS`].
    pub(crate) fn add_permits(&self, n: usize) {
        let prev = self.total.fetch_add(n, AcqRel);
        if prev.checked_add(n).is_none_or(|t| t > MAX_PERMITS) {
            self.total.fetch_sub(n, AcqRel);
            panic!("spindle: adding {n} permits to a semaphore holding {prev} would exceed usize::MAX >> 3");
        }
        self.release(n);
    }

    /// Destroys up to `n` available permits; returns how many were destroyed.
    pub(crate) fn forget_available(&self, n: usize) -> usize {
        let mut s = self.state.load(Relaxed);
        loop {
            let take = (s >> PERMIT_SHIFT).min(n);
            if take == 0 {
                return 0;
            }
            match self.state.compare_exchange_weak(s, s - (take << PERMIT_SHIFT), AcqRel, Relaxed) {
                Ok(_) => {
                    self.shrink_total(take);
                    return take;
                }
                Err(actual) => s = actual,
            }
        }
    }

    /// `n` held permits will never come back (a forgotten permit).
    pub(crate) fn forget_held(&self, n: usize) {
        self.shrink_total(n);
    }

    /// Lowers the total, failing queued waiters that now ask for more than exists (they would
    /// otherwise wait forever).
    fn shrink_total(&self, n: usize) {
        if n == 0 {
            return;
        }
        // Under the lock, so a waiter deciding to queue (which checks the total under the lock)
        // either sees the new total or is already in the list we scan.
        let mut waiters = self.waiters.lock();
        let total = self.total.fetch_sub(n, AcqRel) - n;
        let mut returned = 0;
        loop {
            let mut wakers = WakeList::new();
            let mut cursor = waiters.list.front();
            while let Some(node) = cursor {
                if !wakers.can_push() {
                    break;
                }
                // SAFETY: `node` is in the list, so live; we hold the lock.
                let w = unsafe { node.as_ref() };
                // SAFETY: as above; the successor is read before `node` may be unlinked.
                cursor = unsafe { List::next(node) };
                if w.requested <= total {
                    continue;
                }
                returned += w.requested - w.needed.load(Relaxed);
                // SAFETY: `node` is in the list; we hold the lock.
                unsafe { waiters.list.remove(node) };
                if let Some(wk) = w.take_waker() {
                    wakers.push(wk);
                }
                w.needed.store(FAILED_TOO_MANY, Release);
            }
            if cursor.is_none() {
                // Scanned to the end: pass on the permits the failed waiters had been granted.
                self.release_locked(returned, waiters);
                wakers.wake_all();
                return;
            }
            // A full batch: wake it without the lock, then scan again (failed nodes are gone).
            drop(waiters);
            wakers.wake_all();
            waiters = self.waiters.lock();
        }
    }

    /// Closes the semaphore: queued and future acquires fail; held permits can still be released.
    pub(crate) fn close(&self) {
        let mut waiters = self.waiters.lock();
        self.state.fetch_or(CLOSED, Release);
        let mut returned = 0;
        loop {
            let mut wakers = WakeList::new();
            while wakers.can_push() {
                // SAFETY: we hold the lock.
                let Some(node) = (unsafe { waiters.list.pop_front() }) else { break };
                // SAFETY: it was in the list, so it is live until we publish `needed`.
                let w = unsafe { node.as_ref() };
                returned += w.requested - w.needed.load(Relaxed);
                if let Some(wk) = w.take_waker() {
                    wakers.push(wk);
                }
                w.needed.store(FAILED_CLOSED, Release);
            }
            let done = waiters.list.is_empty();
            if done {
                // Nobody is queued any more (and nobody can queue: closed). Clear the flag and
                // keep the permits partially granted to failed waiters: they exist.
                self.state.fetch_and(!QUEUED, Release);
                self.state.fetch_add(returned << PERMIT_SHIFT, Release);
            }
            drop(waiters);
            wakers.wake_all();
            if done {
                return;
            }
            waiters = self.waiters.lock();
        }
    }

    /// Hands `n` permits to the queued waiters in FIFO order; what is left (once nobody waits)
    /// becomes available. Keeps `QUEUED` equal to "the list is non-empty". Consumes the guard.
    fn release_locked<'a>(&'a self, mut n: usize, mut waiters: LockGuard<'a, Waiters>) {
        let mut wakers = WakeList::new();
        loop {
            while let Some(node) = waiters.list.front() {
                // SAFETY: `node` is in the list, so live; we hold the lock.
                let w = unsafe { node.as_ref() };
                let needed = w.needed.load(Relaxed);
                if n < needed {
                    // A partial grant (or none): the head keeps its place and what it got.
                    w.needed.store(needed - n, Relaxed);
                    n = 0;
                    break;
                }
                if !wakers.can_push() {
                    break;
                }
                n -= needed;
                // SAFETY: `node` is the head of this list; we hold the lock.
                unsafe { waiters.list.pop_front() };
                if let Some(wk) = w.take_waker() {
                    wakers.push(wk);
                }
                // Hand the node back to its future: after this store we never touch it again.
                w.needed.store(0, Release);
            }
            if waiters.list.is_empty() {
                // Nobody waits: clear `QUEUED` and make the rest available, in one step.
                let mut s = self.state.load(Relaxed);
                loop {
                    let new = (s & !QUEUED) + (n << PERMIT_SHIFT);
                    match self.state.compare_exchange_weak(s, new, AcqRel, Relaxed) {
                        Ok(_) => break,
                        Err(actual) => s = actual,
                    }
                }
                n = 0;
            }
            if n == 0 {
                break;
            }
            // Permits remain but the batch is full: wake it with the lock released, then go on
            // with whoever is first in line by then.
            drop(waiters);
            wakers.wake_all();
            waiters = self.waiters.lock();
        }
        drop(waiters);
        wakers.wake_all();
    }
}

/// The waiting part of [`BatchSemaphore::acquire_fast`]: resolves once all requested permits are
/// held.
///
/// Dropping it while queued gives back whatever was already granted (to the next waiters), so
/// cancelling never loses a permit; dropping it after it was granted but before it returned
/// `Ready` gives back everything.
pub(crate) struct Acquire<'a> {
    sem: &'a BatchSemaphore,
    node: Waiter,
    /// Set once the node was linked into the list; from then on `node.needed` tells its fate.
    queued: bool,
}

// SAFETY: the node is only touched under the semaphore's lock or after the hand-over (see the
// module docs); the future holds a shared reference to a `Sync` semaphore and an owned waker.
unsafe impl Send for Acquire<'_> {}
// SAFETY: `&Acquire` exposes nothing.
unsafe impl Sync for Acquire<'_> {}

impl Acquire<'_> {
    /// The outcome recorded in `needed` once the node is ours again, or `None` while waiting.
    fn outcome(needed: usize) -> Option<Result<(), AcquireFailure>> {
        match needed {
            0 => Some(Ok(())),
            FAILED_CLOSED => Some(Err(AcquireFailure::Closed)),
            FAILED_TOO_MANY => Some(Err(AcquireFailure::TooMany)),
            _ => None,
        }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<(), AcquireFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: we never move out of `self`; the node stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        let sem = this.sem;
        let n = this.node.requested;

        if this.queued {
            if let Some(out) = Self::outcome(this.node.needed.load(Acquire)) {
                this.queued = false;
                return Poll::Ready(out);
            }
            // Still queued: refresh the waker under the lock, unless it was granted meanwhile.
            let _guard = sem.waiters.lock();
            if let Some(out) = Self::outcome(this.node.needed.load(Acquire)) {
                this.queued = false;
                return Poll::Ready(out);
            }
            this.node.waker.with_mut(|w| {
                // SAFETY: we hold the lock, the only other party touching the slot.
                let w = unsafe { &mut *w };
                if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
            });
            return Poll::Pending;
        }

        match sem.try_acquire(n) {
            Ok(()) => return Poll::Ready(Ok(())),
            Err(TryAcquireFailure::Closed) => return Poll::Ready(Err(AcquireFailure::Closed)),
            Err(TryAcquireFailure::NoPermits) => {}
        }

        let mut waiters = sem.waiters.lock();
        if n > sem.total.load(Acquire) {
            return Poll::Ready(Err(AcquireFailure::TooMany));
        }
        let need = n << PERMIT_SHIFT;
        let mut s = sem.state.load(Acquire);
        let taken = loop {
            if s & CLOSED != 0 {
                return Poll::Ready(Err(AcquireFailure::Closed));
            }
            let available = s >> PERMIT_SHIFT;
            let new;
            let taken;
            if s & QUEUED == 0 && available >= n {
                new = s - need;
                taken = n;
            } else {
                // Take what is there (zero when others are queued) and queue for the rest.
                new = (s & (CLOSED | QUEUED)) | QUEUED;
                taken = available;
            }
            match sem.state.compare_exchange_weak(s, new, AcqRel, Acquire) {
                Ok(_) => break taken,
                Err(actual) => s = actual,
            }
        };
        if taken == n {
            return Poll::Ready(Ok(()));
        }
        this.node.needed.store(n - taken, Relaxed);
        // SAFETY: nobody else can see the node yet.
        this.node.waker.with_mut(|w| unsafe { *w = Some(cx.waker().clone()) });
        // SAFETY: the node is pinned inside this future (which unlinks it in `drop`), it is in no
        // list, and we hold the lock.
        unsafe { waiters.list.push_back(NonNull::from(&this.node)) };
        this.queued = true;
        Poll::Pending
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let sem = self.sem;
        let n = self.node.requested;
        match Self::outcome(self.node.needed.load(Acquire)) {
            // Granted but never observed: give everything back.
            Some(Ok(())) => return sem.release(n),
            Some(Err(_)) => return,
            None => {}
        }
        let mut waiters = sem.waiters.lock();
        match Self::outcome(self.node.needed.load(Acquire)) {
            Some(Ok(())) => sem.release_locked(n, waiters),
            Some(Err(_)) => {}
            None => {
                // Still queued: unlink and pass on what was partially granted. Even with nothing
                // to pass on, `release_locked` clears `QUEUED` if we were the last waiter.
                let granted = n - self.node.needed.load(Relaxed);
                // SAFETY: the node is in this list (its fate is not final); we hold the lock.
                unsafe { waiters.list.remove(NonNull::from(&self.node)) };
                sem.release_locked(granted, waiters);
            }
        }
    }
}
