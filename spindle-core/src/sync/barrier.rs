//! [`Barrier`]: lets `n` tasks wait until all of them reached the same point.

use core::future::Future;
use core::marker::PhantomPinned;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll, Waker};

use super::list::{Links, List, Node};
use super::lock::Lock;
use super::wake_list::WakeList;
use crate::loom::{AtomicBool, Ordering::*, UnsafeCell};

/// A barrier for `n` tasks: each calls [`wait`](Self::wait), and all are released once the `n`-th
/// arrives. One of them (the last to arrive) is told it is the leader. The barrier is reusable:
/// the next `n` arrivals form the next generation.
///
/// Waiting never allocates; works on any executor.
///
/// ```
/// use spindle::sync::Barrier;
/// use std::sync::Arc;
///
/// spindle::block_on(async {
///     let barrier = Arc::new(Barrier::new(3));
///     let tasks: Vec<_> = (0..3)
///         .map(|_| {
///             let b = barrier.clone();
///             spindle::spawn(async move { b.wait().await.is_leader() })
///         })
///         .collect();
///     let mut leaders = 0;
///     for t in tasks {
///         leaders += t.await.unwrap() as u32;
///     }
///     assert_eq!(leaders, 1);
/// });
/// ```
pub struct Barrier {
    n: usize,
    state: Lock<State>,
}

struct State {
    /// Tasks of the current generation waiting (or about to).
    arrived: usize,
    /// Completed generations.
    generation: usize,
    /// Waiting tasks, oldest first; all of the current generation, or of one that just completed
    /// and is still being woken in batches (those sit in front).
    waiters: List<Waiter>,
}

struct Waiter {
    links: Links<Waiter>,
    /// Only touched under the lock (or by the future once it owns the node).
    waker: UnsafeCell<Option<Waker>>,
    /// The generation this waiter belongs to (written before it is linked).
    generation: usize,
    /// Set with `Release` once the leader unlinked the node: the future owns it again.
    released: AtomicBool,
    _pin: PhantomPinned,
}

// SAFETY: `links` is the node's only `Links`, and nodes are pinned inside their futures.
unsafe impl Node for Waiter {
    fn links(&self) -> &Links<Waiter> {
        &self.links
    }
}

/// What [`Barrier::wait`] returns: whether this task was the leader of its generation.
///
/// ```
/// spindle::block_on(async {
///     let result = spindle::sync::Barrier::new(1).wait().await;
///     assert!(result.is_leader());
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this task was the last to arrive (exactly one per generation is).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let b = spindle::sync::Barrier::new(1);
    ///     assert!(b.wait().await.is_leader());
    /// });
    /// ```
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

impl Barrier {
    /// A barrier for `n` tasks (`n == 0` behaves as `n == 1`: every `wait` returns at once).
    ///
    /// ```
    /// let b = spindle::sync::Barrier::new(4);
    /// ```
    pub fn new(n: usize) -> Barrier {
        Barrier { n: n.max(1), state: Lock::new(State { arrived: 0, generation: 0, waiters: List::new() }) }
    }

    /// Waits until `n` tasks (this one included) are waiting, then all of them continue.
    ///
    /// # Cancel safety
    /// Cancel safe: dropping the future before its generation is released withdraws this task's
    /// arrival (the barrier then waits for one more). Dropping it after the release loses nothing.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let b = spindle::sync::Barrier::new(2);
    ///     let (x, y) = futures::join!(b.wait(), b.wait());
    ///     assert!(x.is_leader() ^ y.is_leader());
    /// });
    /// ```
    pub fn wait(&self) -> BarrierWait<'_> {
        BarrierWait {
            barrier: self,
            queued: false,
            node: Waiter {
                links: Links::new(),
                waker: UnsafeCell::new(None),
                generation: 0,
                released: AtomicBool::new(false),
                _pin: PhantomPinned,
            },
        }
    }
}

impl core::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Barrier").field("n", &self.n).finish()
    }
}

/// Future returned by [`Barrier::wait`].
///
/// ```
/// use spindle::sync::{Barrier, BarrierWait};
/// spindle::block_on(async {
///     let b = Barrier::new(1);
///     let wait: BarrierWait<'_> = b.wait();
///     wait.await;
/// });
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct BarrierWait<'a> {
    barrier: &'a Barrier,
    /// Set once the node was linked (this task counted as arrived).
    queued: bool,
    node: Waiter,
}

// SAFETY: the node is only touched under the barrier's lock or after the hand-over; the rest is a
// shared reference to a `Sync` value.
unsafe impl Send for BarrierWait<'_> {}
// SAFETY: `&BarrierWait` exposes nothing.
unsafe impl Sync for BarrierWait<'_> {}

impl Future for BarrierWait<'_> {
    type Output = BarrierWaitResult;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BarrierWaitResult> {
        // SAFETY: nothing is moved out of `self`; the node stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        if this.queued {
            if this.node.released.load(Acquire) {
                this.queued = false;
                return Poll::Ready(BarrierWaitResult(false));
            }
            let mut state = this.barrier.state.lock();
            if this.node.released.load(Acquire) {
                this.queued = false;
                return Poll::Ready(BarrierWaitResult(false));
            }
            if this.node.generation != state.generation {
                // Our generation completed; its leader has not reached us yet. Leave on our own.
                // SAFETY: the node is still linked (not released); we hold the lock.
                unsafe { state.waiters.remove(NonNull::from(&this.node)) };
                this.queued = false;
                return Poll::Ready(BarrierWaitResult(false));
            }
            this.node.waker.with_mut(|slot| {
                // SAFETY: we hold the lock, the only other party touching the slot.
                let slot = unsafe { &mut *slot };
                if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *slot = Some(cx.waker().clone());
                }
            });
            return Poll::Pending;
        }

        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let mut state = this.barrier.state.lock();
        state.arrived += 1;
        if state.arrived < this.barrier.n {
            this.node.generation = state.generation;
            // SAFETY: nobody else can see the node yet.
            this.node.waker.with_mut(|slot| unsafe { *slot = Some(cx.waker().clone()) });
            // SAFETY: the node is pinned in this future (whose `Drop` unlinks it), in no list, and
            // we hold the lock.
            unsafe { state.waiters.push_back(NonNull::from(&this.node)) };
            this.queued = true;
            return Poll::Pending;
        }

        // We are the leader: complete the generation and release its waiters, in batches.
        let released = state.generation;
        state.arrived = 0;
        state.generation = state.generation.wrapping_add(1);
        loop {
            let mut wakers = WakeList::new();
            let mut more = false;
            while let Some(node) = state.waiters.front() {
                // SAFETY: `node` is in the list, so live; we hold the lock.
                let w = unsafe { node.as_ref() };
                if w.generation != released {
                    break;
                }
                if !wakers.can_push() {
                    more = true;
                    break;
                }
                // SAFETY: `node` is the head; we hold the lock.
                unsafe { state.waiters.pop_front() };
                // SAFETY: we hold the lock and the node is ours until `released` is published.
                if let Some(wk) = w.waker.with_mut(|slot| unsafe { (*slot).take() }) {
                    wakers.push(wk);
                }
                w.released.store(true, Release);
            }
            drop(state);
            wakers.wake_all();
            if !more {
                return Poll::Ready(BarrierWaitResult(true));
            }
            state = this.barrier.state.lock();
        }
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        if !self.queued || self.node.released.load(Acquire) {
            return;
        }
        let mut state = self.barrier.state.lock();
        if self.node.released.load(Acquire) {
            return;
        }
        // SAFETY: not released, so still linked; we hold the lock.
        unsafe { state.waiters.remove(NonNull::from(&self.node)) };
        if self.node.generation == state.generation {
            // Our generation is still gathering: withdraw our arrival.
            state.arrived -= 1;
        }
    }
}

impl core::fmt::Debug for BarrierWait<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BarrierWait").field("queued", &self.queued).finish()
    }
}
