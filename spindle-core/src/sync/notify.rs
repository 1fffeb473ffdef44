//! [`Notify`]: wake one task or all waiting tasks, with a stored permit for `notify_one`.
//!
//! # State word
//!
//! ```text
//!  usize:  [ notify_waiters() call count (bits 2..) | EMPTY / WAITING / NOTIFIED (bits 0..2) ]
//! ```
//!
//! `NOTIFIED` is the stored permit: `notify_one` with nobody waiting sets it, the next `notified()`
//! consumes it. `WAITING` is set exactly while the `waiting` list is non-empty; changes into and
//! out of it happen under the lock, while `EMPTY <-> NOTIFIED` are lock-free compare-and-swaps.
//!
//! The call count implements `notify_waiters`' promise: every [`Notified`] created before the call
//! completes. A `Notified` records the count when it is created; if the count moved by the time it
//! is polled, it is done. Those already queued are moved, in one step under the lock, to the
//! `draining` list and woken in batches from there, so a `notify_one` racing with a long
//! `notify_waiters` never picks a waiter that is already being woken.
//!
//! A waiter's `notification` word is the hand-over point: the notifier unlinks the node, takes its
//! waker, then publishes the notification with `Release`; from then on only the future touches it.

use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use super::list::{Links, List, Node};
use super::lock::{Lock, LockGuard};
use super::wake_list::WakeList;
use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};

/// No permit stored, nobody waiting.
const EMPTY: usize = 0;
/// Tasks are queued in the `waiting` list.
const WAITING: usize = 1;
/// A permit is stored for the next `notified()`.
const NOTIFIED: usize = 2;
/// Mask of the three states above.
const STATE_MASK: usize = 3;
/// One `notify_waiters` call, in the count held in the high bits.
const CALL_ONE: usize = 4;

/// Waiter not notified yet.
const NOTIFICATION_NONE: usize = 0;
/// Waiter picked by `notify_one`: if dropped unconsumed, the notification moves on to the oldest
/// waiter left.
const NOTIFICATION_ONE: usize = 1;
/// Waiter woken by `notify_waiters`: nothing to pass on.
const NOTIFICATION_ALL: usize = 2;
/// Waiter picked by `notify_last`: if dropped unconsumed, the notification moves on to the newest
/// waiter left (the pick it was made with, as in tokio).
const NOTIFICATION_LAST: usize = 3;

/// Notifies tasks: a wait/notify primitive with a single stored permit.
///
/// - [`notify_one`](Self::notify_one) wakes the oldest waiting task, or, if none waits, stores a
///   permit so the next [`notified()`](Self::notified) completes at once (at most one permit is
///   stored; further calls do nothing until it is consumed).
/// - [`notify_waiters`](Self::notify_waiters) wakes every task waiting now, and every
///   [`Notified`] future already created, polled or not; it stores no permit.
///
/// Waiting never allocates; works on any executor. The semantics are tokio's `Notify`'s.
///
/// ```
/// use spindle::sync::Notify;
/// use std::sync::Arc;
///
/// spindle::block_on(async {
///     let notify = Arc::new(Notify::new());
///     let n2 = notify.clone();
///     let waiter = spindle::spawn(async move {
///         n2.notified().await;
///         "woken"
///     });
///     notify.notify_one(); // a permit is kept even if the waiter has not started waiting yet
///     assert_eq!(waiter.await.unwrap(), "woken");
/// });
/// ```
pub struct Notify {
    state: AtomicUsize,
    waiters: Lock<Waiters>,
}

struct Waiters {
    /// Tasks waiting for a notification (FIFO).
    waiting: List<Waiter>,
    /// Tasks a `notify_waiters` call claimed and is waking in batches.
    draining: List<Waiter>,
}

struct Waiter {
    links: Links<Waiter>,
    /// Only touched under the lock (or by the future once it owns the node again).
    waker: UnsafeCell<Option<Waker>>,
    /// `NOTIFICATION_*`; written under the lock, final values published with `Release`.
    notification: AtomicUsize,
    _pin: PhantomPinned,
}

// SAFETY: `links` is the node's only `Links`, and nodes are pinned inside their futures.
unsafe impl Node for Waiter {
    fn links(&self) -> &Links<Waiter> {
        &self.links
    }
}

impl Waiter {
    fn take_waker(&self) -> Option<Waker> {
        // SAFETY: called under the lock (or by the owning future), the only access to the slot.
        self.waker.with_mut(|w| unsafe { (*w).take() })
    }
}

/// Which waiter `notify_one`-style calls pick.
#[derive(Clone, Copy)]
enum Pick {
    Oldest,
    Newest,
}

impl Notify {
    /// A `Notify` with no permit stored.
    ///
    /// ```
    /// let notify = spindle::sync::Notify::new();
    /// notify.notify_one();
    /// ```
    pub fn new() -> Notify {
        Notify { state: AtomicUsize::new(EMPTY), waiters: Lock::new(Waiters::new()) }
    }

    /// A `Notify` usable in a `static`.
    ///
    /// ```
    /// use spindle::sync::Notify;
    /// static READY: Notify = Notify::const_new();
    /// READY.notify_one();
    /// spindle::block_on(READY.notified());
    /// ```
    #[cfg(not(loom))]
    pub const fn const_new() -> Notify {
        Notify { state: AtomicUsize::new(EMPTY), waiters: Lock::new(Waiters::new()) }
    }

    /// A future that completes when this `Notify` is notified.
    ///
    /// It counts as waiting for [`notify_waiters`](Self::notify_waiters) from the moment it is
    /// created; for [`notify_one`](Self::notify_one) from the moment it is first polled (or
    /// [`enable`](Notified::enable)d).
    ///
    /// # Cancel safety
    /// Cancel safe: dropping a `Notified` that was picked by `notify_one` but had not yet
    /// returned `Ready` passes the notification on (to the next waiter, or as the stored permit),
    /// so no wakeup is lost.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let notify = spindle::sync::Notify::new();
    ///     notify.notify_one();
    ///     notify.notified().await; // consumes the stored permit
    /// });
    /// ```
    pub fn notified(&self) -> Notified<'_> {
        let calls = self.state.load(SeqCst) & !STATE_MASK;
        Notified {
            notify: self,
            stage: Stage::Init,
            calls,
            node: Waiter {
                links: Links::new(),
                waker: UnsafeCell::new(None),
                notification: AtomicUsize::new(NOTIFICATION_NONE),
                _pin: PhantomPinned,
            },
        }
    }

    /// Wakes the task that has waited longest, or stores a permit if none waits.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let notify = spindle::sync::Notify::new();
    ///     notify.notify_one();
    ///     notify.notify_one(); // at most one permit is stored
    ///     notify.notified().await;
    /// });
    /// ```
    pub fn notify_one(&self) {
        self.notify(Pick::Oldest);
    }

    /// Wakes the task that started waiting most recently, or stores a permit if none waits.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let notify = spindle::sync::Notify::new();
    ///     notify.notify_last();
    ///     notify.notified().await;
    /// });
    /// ```
    pub fn notify_last(&self) {
        self.notify(Pick::Newest);
    }

    fn notify(&self, pick: Pick) {
        let mut s = self.state.load(SeqCst);
        // Lock-free while nobody waits: store the permit.
        while s & STATE_MASK != WAITING {
            match self.state.compare_exchange(s, (s & !STATE_MASK) | NOTIFIED, SeqCst, SeqCst) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        let mut waiters = self.waiters.lock();
        let waker = self.notify_locked(&mut waiters, pick);
        drop(waiters);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Notifies one waiter (or stores the permit) with the lock held; returns the waker to wake
    /// once the lock is released.
    fn notify_locked(&self, waiters: &mut LockGuard<'_, Waiters>, pick: Pick) -> Option<Waker> {
        let mut s = self.state.load(SeqCst);
        loop {
            if s & STATE_MASK == WAITING {
                break;
            }
            // Nobody waits: store the permit (racing only with lock-free `EMPTY <-> NOTIFIED`).
            match self.state.compare_exchange(s, (s & !STATE_MASK) | NOTIFIED, SeqCst, SeqCst) {
                Ok(_) => return None,
                Err(actual) => s = actual,
            }
        }
        // SAFETY: we hold the lock.
        let node = unsafe {
            match pick {
                Pick::Oldest => waiters.waiting.pop_front(),
                Pick::Newest => waiters.waiting.pop_back(),
            }
        }
        .expect("spindle: Notify state says WAITING but no task waits");
        if waiters.waiting.is_empty() {
            // `WAITING` only changes under the lock, so nothing raced with this store.
            self.state.store(s & !STATE_MASK, SeqCst);
        }
        // SAFETY: the node was in the list, so it is live until we publish its notification.
        let w = unsafe { node.as_ref() };
        let waker = w.take_waker();
        let notification = match pick {
            Pick::Oldest => NOTIFICATION_ONE,
            Pick::Newest => NOTIFICATION_LAST,
        };
        w.notification.store(notification, Release);
        waker
    }

    /// Wakes every task waiting now and completes every [`Notified`] created before this call.
    /// Stores no permit.
    ///
    /// ```
    /// use std::sync::Arc;
    /// spindle::block_on(async {
    ///     let notify = Arc::new(spindle::sync::Notify::new());
    ///     let a = notify.notified();
    ///     let b = notify.notified();
    ///     notify.notify_waiters(); // a and b were created before: both complete
    ///     a.await;
    ///     b.await;
    /// });
    /// ```
    pub fn notify_waiters(&self) {
        // Nobody queued: bumping the call count completes every `Notified` created so far, and a
        // registration racing with us re-reads the state under the lock and sees the new count.
        let mut s = self.state.load(SeqCst);
        while s & STATE_MASK != WAITING {
            match self.state.compare_exchange(s, s.wrapping_add(CALL_ONE), SeqCst, SeqCst) {
                Ok(_) => return,
                Err(actual) => s = actual,
            }
        }
        let mut waiters = self.waiters.lock();
        // Bump the call count and leave `WAITING` (the waiters move to `draining`); a stored
        // permit stays stored. Lock-free `EMPTY <-> NOTIFIED` flips may race, hence the loop.
        let mut s = self.state.load(SeqCst);
        loop {
            let state = if s & STATE_MASK == WAITING { EMPTY } else { s & STATE_MASK };
            let new = ((s & !STATE_MASK).wrapping_add(CALL_ONE)) | state;
            match self.state.compare_exchange(s, new, SeqCst, SeqCst) {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let Waiters { waiting, draining } = &mut *waiters;
        // SAFETY: we hold the lock both lists live under.
        unsafe { draining.append(waiting) };
        loop {
            let mut wakers = WakeList::new();
            while wakers.can_push() {
                // SAFETY: we hold the lock.
                let Some(node) = (unsafe { waiters.draining.pop_front() }) else { break };
                // SAFETY: it was in the list, so it is live until we publish its notification.
                let w = unsafe { node.as_ref() };
                if let Some(wk) = w.take_waker() {
                    wakers.push(wk);
                }
                w.notification.store(NOTIFICATION_ALL, Release);
            }
            let done = waiters.draining.is_empty();
            drop(waiters);
            wakers.wake_all();
            if done {
                return;
            }
            waiters = self.waiters.lock();
        }
    }
}

impl Waiters {
    const fn new() -> Waiters {
        Waiters { waiting: List::new(), draining: List::new() }
    }
}

impl Default for Notify {
    fn default() -> Self {
        Notify::new()
    }
}

impl core::fmt::Debug for Notify {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let s = self.state.load(SeqCst) & STATE_MASK;
        f.debug_struct("Notify").field("permit_stored", &(s == NOTIFIED)).field("waiting", &(s == WAITING)).finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Not registered yet.
    Init,
    /// Linked into the `waiting` (or `draining`) list.
    Waiting,
    /// Completed.
    Done,
}

/// Future returned by [`Notify::notified`]. See there for when it completes.
///
/// ```
/// spindle::block_on(async {
///     let notify = spindle::sync::Notify::new();
///     let waiting: spindle::sync::Notified<'_> = notify.notified();
///     notify.notify_waiters();
///     waiting.await;
/// });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Notified<'a> {
    notify: &'a Notify,
    stage: Stage,
    /// The `notify_waiters` call count (as stored in the state word) when this was created.
    calls: usize,
    node: Waiter,
}

// SAFETY: the node is only touched under the `Notify`'s lock or after the hand-over (module
// docs); the rest is a shared reference to a `Sync` value and plain data.
unsafe impl Send for Notified<'_> {}
// SAFETY: `&Notified` exposes nothing.
unsafe impl Sync for Notified<'_> {}

impl Notified<'_> {
    /// Registers this future as waiting without polling it, so a `notify_one` from now on may
    /// pick it. Returns `true` if it is already notified (a later poll completes at once).
    ///
    /// ```
    /// use std::pin::pin;
    /// spindle::block_on(async {
    ///     let notify = spindle::sync::Notify::new();
    ///     let mut waiting = pin!(notify.notified());
    ///     assert!(!waiting.as_mut().enable()); // now in line
    ///     notify.notify_one(); // picks it
    ///     waiting.await;
    /// });
    /// ```
    pub fn enable(self: Pin<&mut Self>) -> bool {
        self.poll_notified(None).is_ready()
    }

    fn poll_notified(self: Pin<&mut Self>, waker: Option<&Waker>) -> Poll<()> {
        // SAFETY: nothing is moved out of `self`; the node stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        let notify = this.notify;
        match this.stage {
            Stage::Done => Poll::Ready(()),
            Stage::Init => {
                // Consume a stored permit, or see that `notify_waiters` ran since we were created.
                let mut s = notify.state.load(SeqCst);
                loop {
                    if s & !STATE_MASK != this.calls {
                        this.stage = Stage::Done;
                        return Poll::Ready(());
                    }
                    if s & STATE_MASK != NOTIFIED {
                        break;
                    }
                    match notify.state.compare_exchange(s, s & !STATE_MASK, SeqCst, SeqCst) {
                        Ok(_) => {
                            this.stage = Stage::Done;
                            return Poll::Ready(());
                        }
                        Err(actual) => s = actual,
                    }
                }
                let mut waiters = notify.waiters.lock();
                let mut s = notify.state.load(SeqCst);
                loop {
                    if s & !STATE_MASK != this.calls {
                        this.stage = Stage::Done;
                        return Poll::Ready(());
                    }
                    let new = match s & STATE_MASK {
                        NOTIFIED => s & !STATE_MASK,
                        WAITING => break,
                        _ => (s & !STATE_MASK) | WAITING,
                    };
                    match notify.state.compare_exchange(s, new, SeqCst, SeqCst) {
                        Ok(_) if new & STATE_MASK == WAITING => break,
                        Ok(_) => {
                            this.stage = Stage::Done;
                            return Poll::Ready(());
                        }
                        Err(actual) => s = actual,
                    }
                }
                if let Some(w) = waker {
                    // SAFETY: nobody else can see the node yet.
                    this.node.waker.with_mut(|slot| unsafe { *slot = Some(w.clone()) });
                }
                // SAFETY: the node is pinned in this future (whose `Drop` unlinks it), in no list,
                // and we hold the lock.
                unsafe { waiters.waiting.push_back(NonNull::from(&this.node)) };
                this.stage = Stage::Waiting;
                Poll::Pending
            }
            Stage::Waiting => {
                if this.node.notification.load(Acquire) != NOTIFICATION_NONE {
                    this.stage = Stage::Done;
                    return Poll::Ready(());
                }
                let _waiters = notify.waiters.lock();
                if this.node.notification.load(Acquire) != NOTIFICATION_NONE {
                    this.stage = Stage::Done;
                    return Poll::Ready(());
                }
                if let Some(w) = waker {
                    this.node.waker.with_mut(|slot| {
                        // SAFETY: we hold the lock, the only other party touching the slot.
                        let slot = unsafe { &mut *slot };
                        if !slot.as_ref().is_some_and(|old| old.will_wake(w)) {
                            *slot = Some(w.clone());
                        }
                    });
                }
                Poll::Pending
            }
        }
    }
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stage != Stage::Done && crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.poll_notified(Some(cx.waker()))
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        if self.stage != Stage::Waiting {
            return;
        }
        let notify = self.notify;
        let mut waiters = notify.waiters.lock();
        let node = NonNull::from(&self.node);
        match self.node.notification.load(Acquire) {
            NOTIFICATION_NONE => {
                // Still linked. A `notify_waiters` since we queued moved us to `draining`.
                let s = notify.state.load(SeqCst);
                if s & !STATE_MASK == self.calls {
                    // SAFETY: the node is in `waiting`; we hold the lock.
                    unsafe { waiters.waiting.remove(node) };
                    if waiters.waiting.is_empty() {
                        // Under the lock nobody else leaves `WAITING`.
                        notify.state.store(s & !STATE_MASK, SeqCst);
                    }
                } else {
                    // SAFETY: the node is in `draining`; we hold the lock.
                    unsafe { waiters.draining.remove(node) };
                }
            }
            picked @ (NOTIFICATION_ONE | NOTIFICATION_LAST) => {
                // Picked by `notify_one` or `notify_last` but never observed: pass it on, picking
                // the next waiter the same way.
                let pick = if picked == NOTIFICATION_ONE { Pick::Oldest } else { Pick::Newest };
                let waker = notify.notify_locked(&mut waiters, pick);
                drop(waiters);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            _ => {}
        }
    }
}

impl core::fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Notified").field("stage", &self.stage).finish()
    }
}
