//! An intrusive list of tasks, linked through `Header::links`: the runtime's task registry.
//!
//! The list is a plain single-threaded structure; a runtime shares it behind a lock. Pushing and
//! removing are O(1) and never allocate. The list holds one reference to each task in it.

use core::ptr::NonNull;

use super::raw::Header;
use super::Task;

/// A doubly linked list of tasks with scheduler type `S`.
pub struct TaskList<S: 'static> {
    head: Option<NonNull<Header>>,
    len: usize,
    _s: core::marker::PhantomData<fn() -> S>,
}

// SAFETY: the list owns references to tasks, which are `Send`; its links are only touched by
// whoever has `&mut` access to it.
unsafe impl<S> Send for TaskList<S> {}

impl<S: 'static> Default for TaskList<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: 'static> TaskList<S> {
    /// An empty list.
    pub const fn new() -> Self {
        TaskList { head: None, len: 0, _s: core::marker::PhantomData }
    }

    /// Number of tasks in the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a task, taking over its reference.
    pub fn push(&mut self, task: Task<S>) {
        let ptr = task.into_raw();
        // SAFETY: `ptr` is live (we own a reference) and not in any list: its links are ours.
        unsafe {
            ptr.as_ref().links.with_mut(|l| {
                debug_assert!((*l).prev.is_none() && self.head != Some(ptr), "a task linked twice");
                (*l).prev = None;
                (*l).next = self.head;
            });
            if let Some(head) = self.head {
                head.as_ref().links.with_mut(|l| (*l).prev = Some(ptr));
            }
        }
        self.head = Some(ptr);
        self.len += 1;
    }

    /// Removes `task` if it is in this list and returns the list's reference to it.
    ///
    /// # Safety
    /// If the task is linked, it must be linked in *this* list (a runtime keeps one list per task,
    /// chosen by a rule it can recompute, such as the id modulo the shard count).
    pub unsafe fn remove(&mut self, task: NonNull<Header>) -> Option<Task<S>> {
        // SAFETY: `task` is live (the caller holds a reference); links are guarded by our `&mut`.
        unsafe {
            let (prev, next) = task.as_ref().links.with(|l| ((*l).prev, (*l).next));
            // Linked in this list (the only one it can be in, per the contract) exactly when it
            // has a predecessor or is the head.
            if prev.is_none() && self.head != Some(task) {
                return None;
            }
            match prev {
                Some(p) => p.as_ref().links.with_mut(|l| (*l).next = next),
                None => {
                    debug_assert_eq!(self.head, Some(task));
                    self.head = next;
                }
            }
            if let Some(n) = next {
                n.as_ref().links.with_mut(|l| (*l).prev = prev);
            }
            task.as_ref().links.with_mut(|l| {
                (*l).prev = None;
                (*l).next = None;
            });
            self.len -= 1;
            Some(Task::from_raw_owned(task))
        }
    }

    /// Removes and returns the first task.
    pub fn pop(&mut self) -> Option<Task<S>> {
        let head = self.head?;
        // SAFETY: `head` is linked in this list.
        unsafe { self.remove(head) }
    }

    /// Calls `f` with each task's header, front to back.
    pub fn for_each(&self, mut f: impl FnMut(&Header)) {
        let mut cur = self.head;
        while let Some(p) = cur {
            // SAFETY: linked tasks are live (the list holds a reference).
            let h = unsafe { p.as_ref() };
            f(h);
            // SAFETY: as above.
            cur = h.links.with(|l| unsafe { (*l).next });
        }
    }
}

impl<S: 'static> Drop for TaskList<S> {
    fn drop(&mut self) {
        // A runtime shuts its tasks down before dropping the list; anything left just loses the
        // list's reference (its future, if any, was never started or is owned by a poller).
        while let Some(t) = self.pop() {
            drop(t);
        }
    }
}
