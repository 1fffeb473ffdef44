//! The task registry: every live task of a runtime, so shutdown can drop them all.
//!
//! Sharded by task id. Each shard is guarded by a tiny spin lock (one compare-and-swap to take,
//! one release store to give back; it yields the thread if held long): the critical sections are
//! a few pointer writes, so this is half the atomic traffic of a general mutex on the spawn and
//! completion paths. Closing marks every shard so late spawns are refused (the caller then
//! cancels the task at once).

use std::ptr::NonNull;

use spindle_core::loom::{AtomicBool, Ordering::*, UnsafeCell};
use spindle_core::task::list::TaskList;
use spindle_core::task::{Header, Schedule, Task};

struct Shard<S: 'static> {
    locked: AtomicBool,
    /// Guarded by `locked`.
    inner: UnsafeCell<ShardInner<S>>,
}

struct ShardInner<S: 'static> {
    list: TaskList<S>,
    closed: bool,
}

// SAFETY: `inner` is only reached through `Guard`, which holds `locked`; the list holds `Send`
// task references.
unsafe impl<S> Sync for Shard<S> {}
// SAFETY: as above.
unsafe impl<S> Send for Shard<S> {}

struct Guard<'a, S: 'static> {
    shard: &'a Shard<S>,
}

impl<S> Shard<S> {
    fn lock(&self) -> Guard<'_, S> {
        let mut spins = 0u32;
        while self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                spindle_core::loom::spin_loop();
            } else {
                // The holder may have been preempted: let it run.
                std::thread::yield_now();
            }
        }
        Guard { shard: self }
    }
}

impl<S> Guard<'_, S> {
    fn with<R>(&mut self, f: impl FnOnce(&mut ShardInner<S>) -> R) -> R {
        // SAFETY: we hold the shard's lock, so nobody else touches `inner`.
        self.shard.inner.with_mut(|p| f(unsafe { &mut *p }))
    }
}

impl<S> Drop for Guard<'_, S> {
    fn drop(&mut self) {
        self.shard.locked.store(false, Release);
    }
}

pub(crate) struct OwnedTasks<S: 'static> {
    shards: Box<[Shard<S>]>,
    mask: usize,
}

impl<S: Schedule> OwnedTasks<S> {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        OwnedTasks {
            shards: (0..n)
                .map(|_| Shard {
                    locked: AtomicBool::new(false),
                    inner: UnsafeCell::new(ShardInner { list: TaskList::new(), closed: false }),
                })
                .collect(),
            mask: n - 1,
        }
    }

    fn shard(&self, h: &Header) -> Guard<'_, S> {
        self.shards[h.id().as_u64() as usize & self.mask].lock()
    }

    /// Registers a task; refuses (giving it back) once the registry is closed.
    pub(crate) fn bind(&self, task: Task<S>) -> Result<(), Task<S>> {
        self.shard(task.header()).with(|s| {
            if s.closed {
                return Err(task);
            }
            s.list.push(task);
            Ok(())
        })
    }

    /// Removes a completed task, returning the registry's reference if it was still registered.
    pub(crate) fn release(&self, task: &Task<S>) -> Option<Task<S>> {
        let ptr: NonNull<Header> = task.as_raw();
        // SAFETY: a task of this registry is only ever linked into the shard its id selects.
        self.shard(task.header()).with(|s| unsafe { s.list.remove(ptr) })
    }

    /// Closes the registry and shuts every task down (dropping futures nobody is polling).
    /// Must run where the tasks may be dropped (the owner thread, for local tasks).
    pub(crate) fn close_and_shutdown_all(&self) {
        for s in self.shards.iter() {
            s.lock().with(|s| s.closed = true);
        }
        for s in self.shards.iter() {
            // Pop under the lock, shut down outside it: a task's destructor may spawn or
            // complete other tasks, which lock shards again.
            loop {
                // A separate statement, so the guard is dropped before `shutdown` runs (in a
                // `while let` scrutinee it would live through the body and deadlock `release`).
                let next = s.lock().with(|s| s.list.pop());
                match next {
                    Some(t) => t.shutdown(),
                    None => break,
                }
            }
        }
    }

    /// Closes the registry and gives up the tasks still in it without touching their futures
    /// (used when they may not be dropped on this thread).
    pub(crate) fn close_and_leak_all(&self) -> usize {
        let mut n = 0;
        for s in self.shards.iter() {
            s.lock().with(|s| {
                s.closed = true;
                while let Some(t) = s.list.pop() {
                    std::mem::forget(t);
                    n += 1;
                }
            });
        }
        n
    }

    /// Number of registered tasks.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().with(|s| s.list.len())).sum()
    }
}
