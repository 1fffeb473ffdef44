//! A multi-producer, multi-consumer queue of notified tasks, linked through `Header::queue_next`.
//!
//! Producers push onto an atomic LIFO stack with one CAS (never blocking, never allocating).
//! A consumer holds a try-lock, moves the whole stack into a private FIFO (reversing it) and pops
//! from there; a consumer that finds the lock taken gets `None` and goes on with other work.
//! `len` counts every queued task, so "is there work?" stays exact for parking decisions.

use core::marker::PhantomData;
use core::ptr::{self, NonNull};

use crate::loom::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};
use crate::task::{Header, Notified};

/// The inject queue for tasks with scheduler type `S`.
pub struct Inject<S: 'static> {
    /// LIFO stack of pushed tasks (newest first).
    incoming: AtomicPtr<Header>,
    /// Consumer try-lock guarding `fifo`.
    consuming: AtomicBool,
    /// Oldest-first list drained from `incoming`; only touched with `consuming` held.
    fifo: UnsafeCell<Option<NonNull<Header>>>,
    len: AtomicUsize,
    _s: PhantomData<fn() -> S>,
}

// SAFETY: the queue moves `Notified` references (which are `Send`) between threads; `fifo` is only
// touched under the `consuming` lock.
unsafe impl<S> Send for Inject<S> {}
// SAFETY: as above.
unsafe impl<S> Sync for Inject<S> {}

impl<S: 'static> Default for Inject<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: 'static> Inject<S> {
    /// An empty queue.
    pub fn new() -> Self {
        Inject {
            incoming: AtomicPtr::new(ptr::null_mut()),
            consuming: AtomicBool::new(false),
            fifo: UnsafeCell::new(None),
            len: AtomicUsize::new(0),
            _s: PhantomData,
        }
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.len.load(Acquire)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes one task.
    pub fn push(&self, task: Notified<S>) {
        let p = task.into_raw();
        self.push_chain(p, p, 1);
    }

    /// Pushes tasks in order (the first comes out first).
    pub fn push_batch(&self, tasks: impl Iterator<Item = Notified<S>>) {
        // Link them newest-first so the consumer's reversal yields the given order.
        let mut newest: Option<NonNull<Header>> = None;
        let mut oldest: Option<NonNull<Header>> = None;
        let mut n = 0;
        for t in tasks {
            let p = t.into_raw();
            let next = newest.map_or(ptr::null_mut(), |q| q.as_ptr());
            // SAFETY: we own the queue reference of `p`, so its `queue_next` is ours to set.
            unsafe { p.as_ref() }.queue_next.store(next, Relaxed);
            newest = Some(p);
            oldest.get_or_insert(p);
            n += 1;
        }
        if let (Some(newest), Some(oldest)) = (newest, oldest) {
            self.push_chain(newest, oldest, n);
        }
    }

    /// `newest ..= oldest` are linked through `queue_next` (newest first); attach `oldest` to the stack.
    fn push_chain(&self, newest: NonNull<Header>, oldest: NonNull<Header>, n: usize) {
        // Count first so `len` never under-reports a task a consumer could already see.
        self.len.fetch_add(n, Release);
        // SAFETY: we own the queue references of the chain until the CAS publishes it.
        let oldest_ref = unsafe { oldest.as_ref() };
        let mut head = self.incoming.load(Relaxed);
        loop {
            oldest_ref.queue_next.store(head, Relaxed);
            match self.incoming.compare_exchange_weak(head, newest.as_ptr(), Release, Relaxed) {
                Ok(_) => return,
                Err(actual) => head = actual,
            }
        }
    }

    /// Pops the oldest task, or `None` if empty or another consumer holds the lock.
    pub fn pop(&self) -> Option<Notified<S>> {
        let mut out = None;
        self.pop_n(1, |t| out = Some(t));
        out
    }

    /// Pops up to `n` tasks, oldest first, into `f`. Returns how many were popped.
    pub fn pop_n(&self, n: usize, mut f: impl FnMut(Notified<S>)) -> usize {
        if n == 0 || self.is_empty() {
            return 0;
        }
        if self.consuming.compare_exchange(false, true, Acquire, Relaxed).is_err() {
            return 0;
        }
        // Release the consumer lock and fix `len` even if `f` panics (it would otherwise stay held).
        struct Unlock<'a, S: 'static> {
            queue: &'a Inject<S>,
            popped: usize,
        }
        impl<S: 'static> Drop for Unlock<'_, S> {
            fn drop(&mut self) {
                self.queue.len.fetch_sub(self.popped, Release);
                self.queue.consuming.store(false, Release);
            }
        }
        let mut guard = Unlock { queue: self, popped: 0 };
        let popped = &mut guard.popped;
        self.fifo.with_mut(|fifo| {
            // SAFETY: we hold the consumer lock, so `fifo` is ours.
            let fifo = unsafe { &mut *fifo };
            while *popped < n {
                if fifo.is_none() {
                    *fifo = self.take_incoming();
                }
                let Some(p) = *fifo else { break };
                // SAFETY: `p` is queued (we own its queue reference through the list).
                let next = unsafe { p.as_ref() }.queue_next.load(Relaxed);
                *fifo = NonNull::new(next);
                *popped += 1;
                // SAFETY: it was pushed as a `Notified<S>` and leaves the queue exactly once.
                f(unsafe { Notified::from_raw_owned(p) });
            }
        });
        guard.popped
    }

    /// Takes the producers' stack and reverses it into oldest-first order.
    fn take_incoming(&self) -> Option<NonNull<Header>> {
        let mut cur = NonNull::new(self.incoming.swap(ptr::null_mut(), Acquire));
        let mut reversed: *mut Header = ptr::null_mut();
        while let Some(p) = cur {
            // SAFETY: the swap made us the only owner of this chain.
            let h = unsafe { p.as_ref() };
            let next = h.queue_next.load(Relaxed);
            h.queue_next.store(reversed, Relaxed);
            reversed = p.as_ptr();
            cur = NonNull::new(next);
        }
        NonNull::new(reversed)
    }
}

impl<S: 'static> Drop for Inject<S> {
    fn drop(&mut self) {
        // Release the queue references of anything left (runtimes drain before dropping).
        while self.pop().is_some() {}
    }
}
