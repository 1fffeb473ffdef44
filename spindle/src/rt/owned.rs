//! The task registry: every live task of a runtime, so shutdown can drop them all.
//!
//! Sharded by task id, one small mutex per shard: spawning and completing lock one shard briefly
//! and workers rarely meet on the same one. Closing marks every shard so late spawns are refused
//! (the caller then cancels the task at once).

use std::ptr::NonNull;
use std::sync::Mutex;

use spindle_core::task::list::TaskList;
use spindle_core::task::{Header, Schedule, Task};

struct Shard<S: 'static> {
    list: TaskList<S>,
    closed: bool,
}

pub(crate) struct OwnedTasks<S: 'static> {
    shards: Box<[Mutex<Shard<S>>]>,
    mask: usize,
}

impl<S: Schedule> OwnedTasks<S> {
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        OwnedTasks {
            shards: (0..n).map(|_| Mutex::new(Shard { list: TaskList::new(), closed: false })).collect(),
            mask: n - 1,
        }
    }

    fn shard(&self, h: &Header) -> std::sync::MutexGuard<'_, Shard<S>> {
        let i = h.id().as_u64() as usize & self.mask;
        // A panic while holding a shard lock cannot leave the list inconsistent (list operations
        // do not call user code), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a task; refuses (giving it back) once the registry is closed.
    pub(crate) fn bind(&self, task: Task<S>) -> Result<(), Task<S>> {
        let mut shard = self.shard(task.header());
        if shard.closed {
            return Err(task);
        }
        shard.list.push(task);
        Ok(())
    }

    /// Removes a completed task, returning the registry's reference if it was still registered.
    pub(crate) fn release(&self, task: &Task<S>) -> Option<Task<S>> {
        let ptr: NonNull<Header> = task.as_raw();
        let mut shard = self.shard(task.header());
        // SAFETY: a task of this registry is only ever linked into the shard its id selects.
        unsafe { shard.list.remove(ptr) }
    }

    /// Closes the registry and shuts every task down (dropping futures nobody is polling).
    /// Must run where the tasks may be dropped (the owner thread, for local tasks).
    pub(crate) fn close_and_shutdown_all(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        }
        for s in self.shards.iter() {
            loop {
                // Pop under the lock, shut down outside it: a task's destructor may spawn or
                // complete other tasks, which lock shards again.
                let task = s.lock().unwrap_or_else(|e| e.into_inner()).list.pop();
                match task {
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
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            shard.closed = true;
            while let Some(t) = shard.list.pop() {
                std::mem::forget(t);
                n += 1;
            }
        }
        n
    }

    /// Number of registered tasks.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).list.len()).sum()
    }
}
