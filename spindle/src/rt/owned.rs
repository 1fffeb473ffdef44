//! The task registry: every live task of a runtime, so shutdown can drop them all.
//!
//! Sharded by task id, each shard behind a [`SpinLock`]: the critical sections are a few pointer
//! writes, so this halves the atomic traffic of a futex mutex on the spawn and completion paths.
//! Closing marks every shard so late spawns are refused (the caller then cancels the task at once).

use std::ptr::NonNull;

use spindle_core::spin::{SpinGuard, SpinLock};
use spindle_core::task::list::TaskList;
use spindle_core::task::{Header, Schedule, Task};

struct Shard<S: 'static> {
    list: TaskList<S>,
    closed: bool,
}

pub(crate) struct OwnedTasks<S: 'static> {
    shards: Box<[SpinLock<Shard<S>>]>,
    mask: usize,
}

fn lock<T>(l: &SpinLock<T>) -> SpinGuard<'_, T> {
    l.lock(crate::rt::park::spin_relax)
}

impl<S: Schedule> OwnedTasks<S> {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        OwnedTasks {
            shards: (0..n).map(|_| SpinLock::new(Shard { list: TaskList::new(), closed: false })).collect(),
            mask: n - 1,
        }
    }

    fn shard(&self, h: &Header) -> SpinGuard<'_, Shard<S>> {
        lock(&self.shards[h.id().as_u64() as usize & self.mask])
    }

    /// Registers a task; refuses (giving it back) once the registry is closed.
    pub(crate) fn bind(&self, task: Task<S>) -> Result<(), Task<S>> {
        let mut s = self.shard(task.header());
        if s.closed {
            return Err(task);
        }
        s.list.push(task);
        Ok(())
    }

    /// Removes a completed task, returning the registry's reference if it was still registered.
    pub(crate) fn release(&self, task: &Task<S>) -> Option<Task<S>> {
        let ptr: NonNull<Header> = task.as_raw();
        // SAFETY: a task of this registry is only ever linked into the shard its id selects.
        unsafe { self.shard(task.header()).list.remove(ptr) }
    }

    /// Calls `f` with every registered task's header, one shard at a time. Each shard's lock is
    /// held while `f` runs over its tasks (spawns and completions hashed to it wait), so `f`
    /// must be short and must not spawn or complete tasks.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Header)) {
        for s in self.shards.iter() {
            lock(s).list.for_each(&mut f);
        }
    }

    /// Closes the registry and shuts every task down (dropping futures nobody is polling).
    /// Must run where the tasks may be dropped (the owner thread, for local tasks).
    pub(crate) fn close_and_shutdown_all(&self) {
        self.close_and_shutdown_all_but(|_| false);
    }

    /// Closes the registry and shuts down every task, except those `keep_away` picks (tasks that
    /// may not be dropped on this thread): those are given up without touching their futures.
    /// Returns how many were given up.
    pub(crate) fn close_and_shutdown_all_but(&self, keep_away: impl Fn(&Header) -> bool) -> usize {
        for s in self.shards.iter() {
            lock(s).closed = true;
        }
        let mut given_up = 0;
        for s in self.shards.iter() {
            loop {
                // A separate statement, so the guard is dropped before `shutdown` runs: a task's
                // destructor may spawn or complete tasks, which lock shards again (in a `while let`
                // scrutinee the guard would live through the body and deadlock).
                let next = lock(s).list.pop();
                match next {
                    Some(t) if keep_away(t.header()) => {
                        std::mem::forget(t);
                        given_up += 1;
                    }
                    Some(t) => t.shutdown(),
                    None => break,
                }
            }
        }
        given_up
    }

    /// Number of registered tasks.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).list.len()).sum()
    }
}
