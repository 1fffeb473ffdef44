//! Per-thread runtime context: which runtime this thread belongs to, the worker it runs (if any),
//! the task being polled, the cooperative budget and a block of task ids.
//!
//! Everything here is a plain thread-local read; nothing locks.

use std::cell::{Cell, RefCell};
use std::task::{Context as TaskContext, Poll};

use spindle_core::task::{Header, TaskId};

use super::{current_thread, multi_thread, Scheduler};

/// Polls a task may make through budgeted resources before it is asked to yield.
pub(crate) const BUDGET: u8 = 128;
/// The budget outside any spindle poll: unlimited, so spindle resources used from another
/// executor (or plain threads) never yield on their own.
const UNCONSTRAINED: u8 = u8::MAX;
/// The budget after a poll's first refusal: still spent, and the refusal is counted (in the
/// runtime's metrics) only once per poll.
const REFUSED: u8 = u8::MAX - 1;
const ID_BLOCK: u64 = 256;

/// The per-poll state, in a thread-local of its own: every field is a plain `Cell` (nothing to
/// drop), so an access is a direct thread-local load with no check of whether its destructor was
/// registered or has run (the runtime handle, which has a destructor, lives in `HANDLE`). Every
/// task poll, budget check, wake and spawn reads it.
pub(crate) struct Context {
    /// Set on a multi-thread worker while it runs.
    worker: Cell<*const multi_thread::WorkerCtx>,
    /// Set while a thread drives a current-thread runtime.
    driving: Cell<*const current_thread::Driving>,
    /// Whether this thread is inside a runtime (a worker or a `block_on`), to refuse nested `block_on`.
    entered: Cell<bool>,
    /// The header of the task being polled on this thread (null between polls). Valid while
    /// set: the poller holds a reference to the task for the whole poll, and `end_poll` puts
    /// the previous value back before that reference goes.
    current_task: Cell<*const Header>,
    budget: Cell<u8>,
    /// `(next, end)` of this thread's reserved block of task ids.
    ids: Cell<(u64, u64)>,
    /// Enter guards alive on this thread, so one dropped out of order is caught.
    enter_depth: Cell<u32>,
}

thread_local! {
    /// The runtime `spawn` uses on this thread.
    static HANDLE: RefCell<Option<Scheduler>> = const { RefCell::new(None) };
    static CONTEXT: Context = const {
        Context {
            worker: Cell::new(std::ptr::null()),
            driving: Cell::new(std::ptr::null()),
            entered: Cell::new(false),
            current_task: Cell::new(std::ptr::null()),
            budget: Cell::new(UNCONSTRAINED),
            ids: Cell::new((0, 0)),
            enter_depth: Cell::new(0),
        }
    };
}

/// Runs `f` with the current runtime's scheduler, if this thread has one.
pub(crate) fn with_scheduler<R>(f: impl FnOnce(Option<&Scheduler>) -> R) -> R {
    let mut f = Some(f);
    match HANDLE.try_with(|h| {
        let h = h.borrow();
        (f.take().unwrap())(h.as_ref())
    }) {
        Ok(r) => r,
        // Thread-local already destroyed (thread exit): behave as "no runtime".
        Err(_) => (f.take().unwrap())(None),
    }
}

/// Restores the previous context when dropped. Not `Send`: it restores this thread's context,
/// and dropped on another thread it would overwrite that one's (clearing `entered` on a worker,
/// which then let a nested `block_on` run on it).
pub(crate) struct EnterGuard {
    prev_handle: Option<Scheduler>,
    prev_entered: bool,
    /// The thread's `enter_depth` with this guard alive.
    depth: u32,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let in_order = CONTEXT.try_with(|c| {
            let top = c.enter_depth.get() == self.depth;
            if top {
                c.enter_depth.set(self.depth - 1);
            }
            top
        });
        if in_order == Ok(false) {
            // Restoring now would put back a state a later guard replaced (a runtime left
            // current, or the thread marked as inside a runtime for good, after every guard is
            // gone). As in tokio, this is the caller's bug: say so, unless already unwinding.
            if !std::thread::panicking() {
                panic!(
                    "spindle: runtime enter guards dropped out of order (a guard from Handle::enter \
                     must be dropped before the guards made after it, and must not outlive the \
                     block_on it was made in)"
                );
            }
            return;
        }
        let prev = self.prev_handle.take();
        let entered = self.prev_entered;
        let _ = HANDLE.try_with(|h| *h.borrow_mut() = prev);
        let _ = CONTEXT.try_with(|c| c.entered.set(entered));
    }
}

/// Counts one more guard on this thread and returns the depth it holds.
fn push_guard(c: &Context) -> u32 {
    let depth = c.enter_depth.get() + 1;
    c.enter_depth.set(depth);
    depth
}

/// Makes `handle` the runtime `spawn` uses on this thread (does not mark the thread as driving).
pub(crate) fn set_scheduler(handle: Scheduler) -> EnterGuard {
    let prev_handle = HANDLE.with(|h| h.borrow_mut().replace(handle));
    CONTEXT.with(|c| EnterGuard {
        prev_handle,
        prev_entered: c.entered.get(),
        depth: push_guard(c),
        _this_thread: std::marker::PhantomData,
    })
}

/// Marks the thread as inside a runtime (a worker or `block_on`), with `handle` current.
///
/// # Panics
/// If the thread is already inside a runtime: blocking there would stall that runtime's tasks.
#[track_caller]
pub(crate) fn enter_runtime(handle: Scheduler) -> EnterGuard {
    CONTEXT.with(|c| {
        if c.entered.get() {
            panic!(
                "spindle: cannot block_on inside a runtime: this thread is already driving \
                 asynchronous tasks, and blocking it would stall them. Use `.await` instead, or \
                 move the blocking work to `spindle::spawn_blocking`."
            );
        }
        let prev_handle = HANDLE.with(|h| h.borrow_mut().replace(handle));
        c.entered.set(true);
        EnterGuard { prev_handle, prev_entered: false, depth: push_guard(c), _this_thread: std::marker::PhantomData }
    })
}

pub(crate) fn set_worker(w: *const multi_thread::WorkerCtx) -> *const multi_thread::WorkerCtx {
    CONTEXT.with(|c| c.worker.replace(w))
}

/// The multi-thread worker running on this thread, if any.
pub(crate) fn worker() -> *const multi_thread::WorkerCtx {
    CONTEXT.try_with(|c| c.worker.get()).unwrap_or(std::ptr::null())
}

pub(crate) fn set_driving(d: *const current_thread::Driving) -> *const current_thread::Driving {
    CONTEXT.with(|c| c.driving.replace(d))
}

/// The current-thread runtime this thread drives right now, if any.
pub(crate) fn driving() -> *const current_thread::Driving {
    CONTEXT.try_with(|c| c.driving.get()).unwrap_or(std::ptr::null())
}

/// [`worker`] and [`driving`] in one thread-local access. Normally at most one is non-null: a
/// worker or a thread driving a current-thread runtime is inside a runtime, where `block_on`
/// refuses to start another. (Enter guards dropped out of order on one thread could clear
/// `entered` and let a nested `block_on` run; both pointees are then live, in nested frames, and
/// callers take the worker's runtime.)
pub(crate) fn worker_or_driving() -> (*const multi_thread::WorkerCtx, *const current_thread::Driving) {
    CONTEXT.try_with(|c| (c.worker.get(), c.driving.get())).unwrap_or((std::ptr::null(), std::ptr::null()))
}

/// What a poll replaced in the context, restored by [`end_poll`].
#[must_use]
pub(crate) struct PollScope {
    task: *const Header,
    budget: u8,
}

/// Prepares the context for one task poll: sets the current task and refills the budget.
#[inline]
pub(crate) fn start_poll(task: Option<&Header>) -> PollScope {
    let task = task.map_or(std::ptr::null(), |h| h as *const Header);
    CONTEXT.with(|c| PollScope { task: c.current_task.replace(task), budget: c.budget.replace(BUDGET) })
}

/// Prepares the context for running a blocking job: sets the current task, with no budget limit
/// (a blocking closure may use spindle resources through `blocking_recv` and the like as often as
/// it wants: nothing on its thread would refill a budget, so the 129th budgeted poll would spin).
#[inline]
pub(crate) fn start_blocking_job(task: Option<&Header>) -> PollScope {
    let task = task.map_or(std::ptr::null(), |h| h as *const Header);
    CONTEXT.with(|c| PollScope { task: c.current_task.replace(task), budget: c.budget.replace(UNCONSTRAINED) })
}

/// Restores what [`start_poll`] replaced.
#[inline]
pub(crate) fn end_poll(prev: PollScope) {
    let _ = CONTEXT.try_with(|c| {
        c.current_task.set(prev.task);
        c.budget.set(prev.budget);
    });
}

/// Runs `f` with no cooperative budget limit on this thread (`task::unconstrained`); the budget
/// is then put back as it was (an unconstrained poll spends none), on unwinding too.
pub(crate) fn unconstrained<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(b) = self.0 {
                let _ = CONTEXT.try_with(|c| c.budget.set(b));
            }
        }
    }
    let _restore = Restore(CONTEXT.try_with(|c| c.budget.replace(UNCONSTRAINED)).ok());
    f()
}

/// Runs `f` on the header of the task being polled on this thread, if any.
fn with_current_header<R>(f: impl FnOnce(&Header) -> R) -> Option<R> {
    CONTEXT
        .try_with(|c| {
            let p = c.current_task.get();
            // SAFETY: non-null only between `start_poll` and `end_poll` of a poll on this thread,
            // while the poller holds a reference to the task (see the field).
            (!p.is_null()).then(|| f(unsafe { &*p }))
        })
        .ok()
        .flatten()
}

/// Whether the task being polled on this thread has already finished (its `COMPLETE` bit is
/// set): a wake made now is one of its last acts, not a message it passes on: the wake of the
/// task awaiting its `JoinHandle`, or one made by dropping the output of a detached task (a
/// `oneshot::Sender` or a permit in it). The multi-thread scheduler sends such a wake to the
/// back of the queue.
#[inline]
pub(crate) fn polled_task_has_completed() -> bool {
    with_current_header(|h| h.state().is_complete()).unwrap_or(false)
}

/// The task being polled on this thread.
pub(crate) fn current_task() -> Option<TaskId> {
    with_current_header(Header::id)
}

/// The parent recorded for the task being polled on this thread (see `TaskMeta::parent`).
pub(crate) fn current_parent() -> Option<TaskId> {
    with_current_header(|h| h.meta().parent).flatten()
}

/// The budget hook installed in `spindle_core::coop`.
pub(crate) fn coop_hook(cx: &mut TaskContext<'_>) -> Poll<()> {
    let spent = CONTEXT
        .try_with(|c| {
            let b = c.budget.get();
            if b == UNCONSTRAINED {
                false
            } else if b == REFUSED {
                true
            } else if b == 0 {
                c.budget.set(REFUSED);
                super::count_forced_yield();
                true
            } else {
                c.budget.set(b - 1);
                false
            }
        })
        .unwrap_or(false);
    if spent {
        cx.waker().wake_by_ref();
        Poll::Pending
    } else {
        Poll::Ready(())
    }
}

/// A fresh task id, from this thread's reserved block (one shared atomic add per `ID_BLOCK` spawns).
#[inline]
pub(crate) fn next_task_id() -> TaskId {
    CONTEXT
        .try_with(|c| {
            let (mut next, mut end) = c.ids.get();
            if next == end {
                next = TaskId::reserve(ID_BLOCK);
                end = next + ID_BLOCK;
            }
            c.ids.set((next + 1, end));
            TaskId::from_u64(next).expect("task id block starts above zero")
        })
        .unwrap_or_else(|_| TaskId::next())
}
