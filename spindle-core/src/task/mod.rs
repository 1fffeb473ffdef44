//! Tasks: the cell, its state machine, wakers and join handles. Runtime-neutral, no OS calls.
//!
//! # Contract
//!
//! A task is one heap allocation (`raw::Cell`): a [`Header`] (state word, vtable, id, registry
//! links, diagnostics), the scheduler handle `S`, the future or its output, and the join waker.
//! A `NonNull<Header>` is the type-erased pointer to it; [`Task`], [`Notified`], [`JoinHandle`] and
//! wakers are reference-counting handles on that pointer (see [`state`] for who holds what).
//!
//! Who calls what:
//! - A scheduler creates tasks with [`new_task`] (or [`new_local_task`]), keeps the returned
//!   [`Task`] in its registry, queues the [`Notified`] and gives the [`JoinHandle`] to the spawner.
//! - A scheduler runs a queued task with [`Notified::run`], on a thread it chooses. For local
//!   (`!Send`) tasks that thread must always be the owner thread.
//! - Wakers and `JoinHandle::abort` hand woken tasks back through [`Schedule::schedule`], from any thread.
//! - When the task completes, [`Schedule::release`] removes it from the registry.
//! - At shutdown the scheduler calls [`Task::shutdown`] on every registered task, which drops the
//!   future in place (if nobody is polling it) and completes the task as cancelled.
//!
//! Invariants:
//! - Only the holder of the `RUNNING` bit touches the future; only the `JoinHandle` takes the output,
//!   and only after `COMPLETE`.
//! - The registry holds a reference from spawn to completion, so an idle task is never freed while
//!   its future lives: the future is always dropped by a poller or by `shutdown`, on the thread the
//!   scheduler chose, never by whoever drops the last waker.
//! - A panic in `poll` or in a destructor of the future or output is caught (with feature `std`)
//!   and becomes [`JoinError`]; it never unwinds into the scheduler.

mod join;
pub mod list;
mod raw;
pub mod state;
mod waker;

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::num::NonZeroU64;
use core::ptr::NonNull;

pub use join::{AbortHandle, JoinError, JoinHandle};
pub use raw::{GroupKind, GroupRef, Header, TaskMeta};

use crate::loom::unmodelled::AtomicU64;

/// The scheduler side of a task: where woken tasks go and how completed ones leave the registry.
///
/// Implementations are cheap handles (an `Arc` to the runtime, usually); one is stored in every task.
pub trait Schedule: Sized + 'static {
    /// Queue a task that was woken. May be called from any thread.
    fn schedule(&self, task: Notified<Self>);

    /// Queue a task that woke itself during its own poll (a yield): it should run after the
    /// tasks already waiting. Called on the thread that polled it.
    fn yield_now(&self, task: Notified<Self>) {
        self.schedule(task)
    }

    /// The task completed: remove it from the registry and return the registry's reference, or
    /// `None` if it is not there (already removed by shutdown).
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>>;
}

/// A process-unique task id.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(NonZeroU64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TaskId {
    /// A fresh id from the process-wide counter.
    pub fn next() -> TaskId {
        let n = NEXT_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        TaskId(NonZeroU64::new(n).expect("spindle: task id counter wrapped"))
    }

    /// Reserves `n` consecutive ids and returns the first, so a thread can hand them out without
    /// touching the shared counter for each spawn.
    pub fn reserve(n: u64) -> u64 {
        NEXT_ID.fetch_add(n, core::sync::atomic::Ordering::Relaxed)
    }

    /// An id from a raw value obtained through [`reserve`](Self::reserve).
    pub fn from_u64(n: u64) -> Option<TaskId> {
        NonZeroU64::new(n).map(TaskId)
    }

    /// The raw value.
    pub fn as_u64(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0)
    }
}

/// A counted reference to a task, as held by a registry.
pub struct Task<S: 'static> {
    raw: NonNull<Header>,
    _s: raw::Phantom<S>,
}

// SAFETY: a `Task` only moves a reference count across threads. Touching the future goes through
// `run`/`shutdown`, whose thread rules `new_task`/`new_local_task` put on the scheduler.
unsafe impl<S> Send for Task<S> {}
// SAFETY: `&Task` only exposes the header (atomics and immutable data).
unsafe impl<S> Sync for Task<S> {}

impl<S: 'static> Task<S> {
    /// # Safety
    /// `raw` is a live task with scheduler type `S`; the caller passes one reference.
    pub(crate) unsafe fn from_raw(raw: NonNull<Header>) -> Task<S> {
        Task { raw, _s: PhantomData }
    }

    /// The header (id, diagnostics, state).
    pub fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the header is live.
        unsafe { self.raw.as_ref() }
    }

    /// The type-erased pointer, for intrusive lists.
    pub fn as_raw(&self) -> NonNull<Header> {
        self.raw
    }

    /// Gives up the reference as a raw pointer (see [`from_raw_owned`](Self::from_raw_owned)).
    pub fn into_raw(self) -> NonNull<Header> {
        ManuallyDrop::new(self).raw
    }

    /// Takes back a reference given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `raw` came from `into_raw` on a `Task<S>` (same `S`) and is used once.
    pub unsafe fn from_raw_owned(raw: NonNull<Header>) -> Task<S> {
        Task { raw, _s: PhantomData }
    }

    /// Cancels the task at runtime shutdown: drops the future here if nobody is polling it.
    /// Must run on the thread allowed to drop the future (the owner thread for local tasks).
    pub fn shutdown(self) {
        let raw = self.into_raw();
        // SAFETY: we pass our reference; `raw` is live.
        unsafe { (raw.as_ref().vtable.shutdown)(raw) }
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.header().id
    }
}

impl<S: 'static> Drop for Task<S> {
    fn drop(&mut self) {
        let h = self.header();
        if h.state.ref_dec() {
            // SAFETY: last reference.
            unsafe { (h.vtable.dealloc)(self.raw) };
        }
    }
}

impl<S> fmt::Debug for Task<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task").field("id", &self.header().id).finish()
    }
}

/// A task in a run queue (it holds the queue's reference). Run it with [`run`](Self::run).
pub struct Notified<S: 'static>(Task<S>);

impl<S: 'static> Notified<S> {
    /// # Safety
    /// As [`Task::from_raw`], and the reference is a queue reference (`NOTIFIED` was set for it).
    pub(crate) unsafe fn from_raw(raw: NonNull<Header>) -> Notified<S> {
        // SAFETY: forwarded to the caller.
        Notified(unsafe { Task::from_raw(raw) })
    }

    /// Gives up the queue reference as a raw pointer, for intrusive queues.
    pub fn into_raw(self) -> NonNull<Header> {
        self.0.into_raw()
    }

    /// Takes back a queue reference given up with [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    /// `raw` came from `Notified::<S>::into_raw` (same `S`) and is used once.
    pub unsafe fn from_raw_owned(raw: NonNull<Header>) -> Notified<S> {
        Notified(Task { raw, _s: PhantomData })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        self.0.header()
    }

    /// Turns the queue reference into a plain task reference, e.g. to [`shutdown`](Task::shutdown)
    /// a task that will never be run (a scheduler without a registry, such as a blocking pool).
    pub fn into_task(self) -> Task<S> {
        self.0
    }

    /// A new plain reference to the task, for a poller that reads the header after
    /// [`run`](Self::run) (which consumes the queue reference, possibly the last one).
    pub fn new_ref(&self) -> Task<S> {
        self.header().state.ref_inc();
        // SAFETY: the increment above is the reference passed.
        unsafe { Task::from_raw(self.0.raw) }
    }

    /// Polls the task once (or drops its future if it was cancelled). Consumes the queue reference.
    /// For local tasks this must run on the owner thread.
    pub fn run(self) {
        let raw = self.into_raw();
        // SAFETY: we pass the queue reference to the vtable's poll, which consumes it.
        unsafe { (raw.as_ref().vtable.poll)(raw) }
    }
}

impl<S> fmt::Debug for Notified<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Notified").field(&self.0.header().id).finish()
    }
}

/// Creates a task for a `Send` future. Returns the registry's reference, the first queue entry
/// and the join handle.
pub fn new_task<F, S>(
    future: F,
    scheduler: S,
    id: TaskId,
    meta: TaskMeta,
) -> (Task<S>, Notified<S>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    // SAFETY: a `Send` future and output may be polled and dropped on any thread.
    unsafe { new_local_task(future, scheduler, id, meta) }
}

/// Creates a task for a future that may be `!Send`.
///
/// # Safety
/// The scheduler must poll ([`Notified::run`]) and shut down ([`Task::shutdown`]) the task only on
/// the thread that called this function, and the output may then be read on another thread only
/// if it is `Send` (which `JoinHandle`'s own `Send` bound ensures).
pub unsafe fn new_local_task<F, S>(
    future: F,
    scheduler: S,
    id: TaskId,
    meta: TaskMeta,
) -> (Task<S>, Notified<S>, JoinHandle<F::Output>)
where
    F: Future + 'static,
    S: Schedule,
{
    let raw = raw::allocate(future, scheduler, id, meta);
    // SAFETY: `allocate` starts the count at three references: one for each handle made here.
    unsafe { (Task::from_raw(raw), Notified::from_raw(raw), JoinHandle::from_raw(raw)) }
}
