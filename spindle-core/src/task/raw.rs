//! The task cell: header, scheduler, future/output stage and join waker in one allocation, and
//! the type-erased functions (the vtable) that drive it.

use alloc::boxed::Box;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::panic::Location;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, Waker};

use super::state::{State, ToIdle, ToRunning, UnsetJoinInterest};
use super::{JoinError, Notified, Schedule, Task, TaskId};
use crate::loom::{AtomicPtr, AtomicU32, Ordering::Relaxed, UnsafeCell};

/// Type-erased operations on a cell, one static table per `(future, scheduler)` type.
pub(crate) struct Vtable {
    /// Run the task: the caller passes a queue reference.
    pub(crate) poll: unsafe fn(NonNull<Header>),
    /// Hand a notified task (holding a queue reference) to its scheduler.
    pub(crate) schedule: unsafe fn(NonNull<Header>),
    /// Free the cell.
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// `JoinHandle::poll`: `dst` points at a `Poll<Result<T, JoinError>>`.
    pub(crate) try_read_output: unsafe fn(NonNull<Header>, *mut (), &Waker),
    /// `JoinHandle::drop` when the fast path failed.
    pub(crate) drop_join_handle_slow: unsafe fn(NonNull<Header>),
    /// Runtime shutdown; consumes the caller's (registry) reference.
    pub(crate) shutdown: unsafe fn(NonNull<Header>),
}

/// Links of the runtime's task registry; only touched under the registry's lock.
#[derive(Debug)]
pub(crate) struct Links {
    pub(crate) prev: Option<NonNull<Header>>,
    pub(crate) next: Option<NonNull<Header>>,
}

/// What the runtime records about a task for diagnostics.
///
/// # The task tree
///
/// `parent` and `group` together let a dump rebuild the tree *task → scope/group → task*:
///
/// - a task spawned directly (`spawn`, `spawn_local`, `spawn_blocking`, `task::Builder`) has as
///   `parent` the task that was being polled where it was spawned, and no `group`;
/// - a task started by a scope (`spawn_task`) or a task group has as `group` that scope or group
///   ([`GroupRef`]: its id and kind) and as `parent` the task that owns it: the task polling the
///   scope, or the task that created the group. So every member of a scope or group carries the
///   link from the scope/group id to its owning task, and a dump groups the members of one
///   scope/group under one node below that task.
///
/// `parent` is `None` for a task spawned outside any task (from `block_on`'s future, from
/// another executor, from a plain thread).
///
/// ```
/// spindle::block_on(async {
///     let h = spindle::spawn(async {
///         let inner = spindle::spawn(async {});
///         let meta = inner.header_ref().meta().clone();
///         (spindle::task::try_id(), meta)
///     });
///     let (outer_id, inner_meta) = h.await.unwrap();
///     assert_eq!(inner_meta.parent, outer_id);
///     assert!(inner_meta.group.is_none());
/// });
/// ```
#[derive(Debug, Clone)]
pub struct TaskMeta {
    /// The name given with `task::Builder`, if any.
    pub name: Option<Box<str>>,
    /// Where the task was spawned.
    pub location: &'static Location<'static>,
    /// The task that spawned it, or that owns the scope or group it belongs to (see above).
    pub parent: Option<TaskId>,
    /// The scope or task group the task belongs to, if any.
    pub group: Option<GroupRef>,
    /// Whether the task is pinned to the thread that spawned it (`spawn_local`, `!Send`).
    pub local: bool,
}

/// The scope or task group a task belongs to, as recorded in its [`TaskMeta`].
///
/// ```
/// use spindle_core::task::{GroupKind, GroupRef, TaskId};
/// let g = GroupRef { id: TaskId::next(), kind: GroupKind::TaskGroup };
/// assert_eq!(g.kind, GroupKind::TaskGroup);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupRef {
    /// The scope's or group's id (`Scope::id`, `TaskGroup::id`; drawn from the task-id counter,
    /// so it never equals a task's id).
    pub id: TaskId,
    /// Whether it is a scope or a task group.
    pub kind: GroupKind,
}

/// What kind of structured owner a task belongs to.
///
/// ```
/// assert_ne!(spindle_core::task::GroupKind::Scope, spindle_core::task::GroupKind::TaskGroup);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// A `scope!` (its `spawn_task` children).
    Scope,
    /// A `TaskGroup`.
    TaskGroup,
    /// A `JoinSet` (spindle's `task::JoinSet`).
    JoinSet,
}

impl TaskMeta {
    /// Metadata for a task spawned at the caller's location.
    ///
    /// ```
    /// let m = spindle_core::task::TaskMeta::here();
    /// assert!(m.parent.is_none() && m.group.is_none());
    /// ```
    #[track_caller]
    pub fn here() -> TaskMeta {
        TaskMeta { name: None, location: Location::caller(), parent: None, group: None, local: false }
    }
}

/// The first field of every cell; a `NonNull<Header>` is the task's type-erased pointer.
#[repr(C)]
pub struct Header {
    pub(crate) state: State,
    pub(crate) vtable: &'static Vtable,
    /// Next pointer for intrusive queues (the inject queue); owned by whichever queue holds the task.
    pub(crate) queue_next: AtomicPtr<Header>,
    pub(crate) links: UnsafeCell<Links>,
    pub(crate) id: TaskId,
    /// Polls so far (wrapping). Written only by the poller, which holds `RUNNING`, with a
    /// relaxed load and store; read by anyone (dumps). It sits in what was padding before
    /// `meta`, so it costs no memory.
    pub(crate) polls: AtomicU32,
    pub(crate) meta: TaskMeta,
}

// SAFETY: every field of the header is either atomic, immutable after construction, or (links)
// accessed only under the registry lock, so sharing a header between threads is sound.
unsafe impl Send for Header {}
// SAFETY: see `Send` above.
unsafe impl Sync for Header {}

impl Header {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }
    /// The task's diagnostics.
    pub fn meta(&self) -> &TaskMeta {
        &self.meta
    }
    /// How many times the task was polled (wrapping at `u32::MAX`; for dumps).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut h = spindle::spawn(async {
    ///         spindle::task::yield_now().await;
    ///     });
    ///     (&mut h).await.unwrap();
    ///     assert_eq!(h.header_ref().poll_count(), 2); // before and after the yield
    /// });
    /// ```
    pub fn poll_count(&self) -> u32 {
        self.polls.load(Relaxed)
    }
    /// A snapshot of the state word (for dumps and tests).
    pub fn state(&self) -> super::state::Snapshot {
        self.state.load()
    }
}

pub(crate) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    header: Header,
    scheduler: S,
    stage: UnsafeCell<Stage<F>>,
    /// Written by the `JoinHandle` while `JOIN_WAKER` is clear, read by the runtime while set.
    join_waker: UnsafeCell<Option<Waker>>,
}

/// Allocates a cell. The state starts at `INITIAL`: three references (registry, queue, join handle).
pub(crate) fn allocate<F, S>(future: F, scheduler: S, id: TaskId, meta: TaskMeta) -> NonNull<Header>
where
    F: Future + 'static,
    S: Schedule,
{
    let cell = Box::new(Cell {
        header: Header {
            state: State::new(),
            vtable: vtable::<F, S>(),
            queue_next: AtomicPtr::new(ptr::null_mut()),
            links: UnsafeCell::new(Links { prev: None, next: None }),
            id,
            polls: AtomicU32::new(0),
            meta,
        },
        scheduler,
        stage: UnsafeCell::new(Stage::Running(future)),
        join_waker: UnsafeCell::new(None),
    });
    // `Cell` is `repr(C)` with the header first, so the cell pointer is the header pointer.
    NonNull::from(Box::leak(cell)).cast()
}

fn vtable<F: Future + 'static, S: Schedule>() -> &'static Vtable {
    &Vtable {
        poll: poll::<F, S>,
        schedule: schedule::<F, S>,
        dealloc: dealloc::<F, S>,
        try_read_output: try_read_output::<F, S>,
        drop_join_handle_slow: drop_join_handle_slow::<F, S>,
        shutdown: shutdown::<F, S>,
    }
}

/// Reinterprets a header pointer as its cell.
///
/// # Safety
/// `ptr` must come from `allocate::<F, S>` and the cell must not be freed yet.
unsafe fn cell<'a, F: Future, S>(ptr: NonNull<Header>) -> &'a Cell<F, S> {
    // SAFETY: the caller guarantees the pointer is a live `Cell<F, S>` (header is its first field).
    unsafe { ptr.cast::<Cell<F, S>>().as_ref() }
}

/// Runs `f`, turning a panic into its payload (with `std`; without it panics are not caught,
/// which on `no_std` targets means abort or the user's panic handler).
#[cfg(feature = "std")]
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn core::any::Any + Send>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

#[cfg(not(feature = "std"))]
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn core::any::Any + Send>> {
    Ok(f())
}

/// Drops whatever the stage holds **in place**, containing any panic from a user destructor, then
/// writes `new` there.
///
/// A running future is pinned in its cell, and `Pin` promises it is dropped where it lies: moving
/// it out to drop it (`ptr::replace`) would let intrusive futures (a `Sleep` linked in a timer
/// wheel, a waiter in a wait list) unlink a stack copy whose links went stale, while the list
/// kept pointing into the cell, which the stage's next value then overwrites.
fn set_stage<F: Future>(stage: &UnsafeCell<Stage<F>>, new: Stage<F>) -> Result<(), JoinError> {
    stage.with_mut(|p| {
        // SAFETY: callers own the stage (they hold `RUNNING`, or the task is complete and they are
        // the only party allowed to touch the output), so no other access is concurrent; the value
        // is dropped where it lies, never moved.
        let dropped = catch(|| unsafe { ptr::drop_in_place(p) });
        // SAFETY: the old value is dropped (a panicking destructor still had the drop glue drop
        // the remaining fields while unwinding), so this overwrites it without a second drop.
        unsafe { ptr::write(p, new) };
        dropped.map_err(JoinError::panic)
    })
}

unsafe fn poll<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the vtable is only reached through a live task of this type.
    let cell = unsafe { cell::<F, S>(ptr) };
    match cell.header.state.transition_to_running() {
        ToRunning::Poll => {
            // Only the holder of `RUNNING` writes the count.
            let polls = &cell.header.polls;
            polls.store(polls.load(Relaxed).wrapping_add(1), Relaxed);
        }
        ToRunning::Cancel => return cancel_and_complete(cell, ptr),
        ToRunning::Failed => return,
        // SAFETY: the transition consumed the last reference.
        ToRunning::Dealloc => return unsafe { dealloc::<F, S>(ptr) },
    }
    // The runner's reference keeps the cell alive, so a borrowed waker needs no reference of its own.
    // SAFETY: `ptr` is a live task header; `ManuallyDrop` skips the reference drop.
    let waker = ManuallyDrop::new(unsafe { super::waker::waker_ref(ptr) });
    let mut cx = Context::from_waker(&waker);
    let polled = catch(|| {
        cell.stage.with_mut(|p| {
            // SAFETY: we hold `RUNNING`, so we own the stage; the cell never moves (boxed).
            match unsafe { &mut *p } {
                // SAFETY: the future lives in the boxed cell and is only dropped in place (by
                // `set_stage`), never moved out, so pinning it here is sound.
                Stage::Running(fut) => unsafe { Pin::new_unchecked(fut) }.poll(&mut cx),
                _ => unreachable!("spindle: a task was polled after it completed"),
            }
        })
    });
    match polled {
        Ok(Poll::Pending) => match cell.header.state.transition_to_idle() {
            ToIdle::Idle => {}
            ToIdle::Notified => {
                // SAFETY: the transition moved the runner's reference into this queue entry.
                let task = unsafe { Notified::<S>::from_raw(ptr) };
                cell.scheduler.yield_now(task);
            }
            ToIdle::Cancelled => cancel_and_complete(cell, ptr),
        },
        Ok(Poll::Ready(out)) => {
            let result = match set_stage(&cell.stage, Stage::Consumed) {
                Ok(()) => Ok(out),
                Err(panic) => {
                    drop_output_caught(out);
                    Err(panic)
                }
            };
            complete(cell, ptr, result);
        }
        Err(payload) => {
            let _ = set_stage(&cell.stage, Stage::Consumed);
            complete(cell, ptr, Err(JoinError::panic(payload)));
        }
    }
}

fn drop_output_caught<T>(out: T) {
    let _ = catch(move || drop(out));
}

/// Drops the future (the caller owns `RUNNING`) and completes with `Cancelled` (or the panic the
/// destructor raised).
fn cancel_and_complete<F: Future + 'static, S: Schedule>(cell: &Cell<F, S>, ptr: NonNull<Header>) {
    let result = match set_stage(&cell.stage, Stage::Consumed) {
        Ok(()) => Err(JoinError::cancelled(cell.header.id)),
        Err(panic) => Err(panic.with_id(cell.header.id)),
    };
    complete(cell, ptr, result);
}

/// Stores the result, publishes `COMPLETE`, wakes the joiner, releases the task from its registry
/// and drops the runner's reference.
fn complete<F: Future + 'static, S: Schedule>(
    cell: &Cell<F, S>,
    ptr: NonNull<Header>,
    result: Result<F::Output, JoinError>,
) {
    let result = result.map_err(|e| e.with_id(cell.header.id));
    // SAFETY: we own `RUNNING`, hence the stage; it is `Consumed` now, so nothing is dropped here.
    cell.stage.with_mut(|p| unsafe { ptr::write(p, Stage::Finished(result)) });
    let prev = cell.header.state.transition_to_complete();
    if !prev.has_join_interest() {
        // Nobody will read the output: drop it here, on the task's own thread, before the task
        // leaves the registry (so a shutdown that finds the registry empty finds no destructor
        // still running).
        let _ = set_stage(&cell.stage, Stage::Consumed);
    }
    // Leave the registry before waking the joiner, so a runtime's live-task count is already
    // down when the joiner runs.
    // SAFETY: `ptr` is live: we still hold the runner's reference.
    let me = ManuallyDrop::new(unsafe { Task::<S>::from_raw(ptr) });
    let released = cell.scheduler.release(&me);
    if prev.has_join_interest() && prev.has_join_waker() {
        // SAFETY: `JOIN_WAKER` was set when we completed, so the handle gave us the slot and will
        // never write it again (its unset fails on `COMPLETE`). We only read it.
        cell.join_waker.with(|w| match unsafe { &*w } {
            // A waker is user code (any executor's): a panic in it must not unwind into the
            // scheduler, which would leave this task's references held and kill the worker.
            Some(w) => drop(catch(|| w.wake_by_ref())),
            None => unreachable!("spindle: JOIN_WAKER set with an empty slot"),
        });
    }
    let last = match released {
        Some(task) => {
            core::mem::forget(task);
            cell.header.state.ref_dec_twice()
        }
        None => cell.header.state.ref_dec(),
    };
    if last {
        // SAFETY: that was the last reference.
        unsafe { dealloc::<F, S>(ptr) };
    }
}

unsafe fn schedule<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the caller holds a queue reference to this live task, which we hand over.
    let cell = unsafe { cell::<F, S>(ptr) };
    // SAFETY: as above.
    let task = unsafe { Notified::<S>::from_raw(ptr) };
    cell.scheduler.schedule(task);
}

unsafe fn dealloc<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the reference count reached zero; nobody else can reach the cell, and it was
    // allocated as a `Box<Cell<F, S>>` by `allocate`.
    let cell = unsafe { Box::from_raw(ptr.cast::<Cell<F, S>>().as_ptr()) };
    // A leftover future or output belongs to a task never run nor shut down; contain its panics.
    drop_output_caught(cell);
}

unsafe fn try_read_output<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>, dst: *mut (), waker: &Waker) {
    // SAFETY: called by the live `JoinHandle<F::Output>` of this task.
    let cell = unsafe { cell::<F, S>(ptr) };
    if !can_read_output(&cell.header, &cell.join_waker, waker) {
        return;
    }
    // SAFETY: `COMPLETE` is set and we are the join handle: the output is ours to take.
    let stage = cell.stage.with_mut(|p| unsafe { ptr::replace(p, Stage::Consumed) });
    let out = match stage {
        Stage::Finished(out) => out,
        _ => panic!("spindle: JoinHandle polled after it returned Ready"),
    };
    // SAFETY: `dst` is the caller's `Poll<Result<F::Output, JoinError>>`.
    unsafe { *(dst as *mut Poll<Result<F::Output, JoinError>>) = Poll::Ready(out) };
}

/// The join handle's side of the waker protocol. Returns true when the output can be read.
fn can_read_output(header: &Header, slot: &UnsafeCell<Option<Waker>>, waker: &Waker) -> bool {
    let snap = header.state.load();
    if snap.is_complete() {
        return true;
    }
    if snap.has_join_waker() {
        // SAFETY: while `JOIN_WAKER` is set the runtime only reads the slot; so do we.
        let same = slot.with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)));
        if same {
            return false;
        }
        if header.state.unset_join_waker().is_err() {
            return true;
        }
    }
    // SAFETY: `JOIN_WAKER` is clear, so the slot is ours to write.
    slot.with_mut(|w| unsafe { *w = Some(waker.clone()) });
    match header.state.set_join_waker() {
        Ok(_) => false,
        Err(_) => {
            // Completed meanwhile; the slot is still ours. Drop the clone now.
            // SAFETY: as above, `JOIN_WAKER` stayed clear.
            let w = slot.with_mut(|w| unsafe { (*w).take() });
            drop(w);
            true
        }
    }
}

unsafe fn drop_join_handle_slow<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: called by the live `JoinHandle` of this task, which holds a reference.
    let cell = unsafe { cell::<F, S>(ptr) };
    match cell.header.state.unset_join_interest() {
        // Complete: the runtime saw our interest and left the output for us; drop it here.
        UnsetJoinInterest::Complete => {
            let _ = set_stage(&cell.stage, Stage::Consumed);
        }
        UnsetJoinInterest::Unset => {
            // `JOIN_WAKER` is now clear, so the slot is ours: release the waker early.
            // SAFETY: as said.
            let w = cell.join_waker.with_mut(|w| unsafe { (*w).take() });
            drop(w);
        }
    }
    if cell.header.state.ref_dec() {
        // SAFETY: last reference.
        unsafe { dealloc::<F, S>(ptr) };
    }
}

unsafe fn shutdown<F: Future + 'static, S: Schedule>(ptr: NonNull<Header>) {
    // SAFETY: the caller passes its (registry) reference to this live task.
    let cell = unsafe { cell::<F, S>(ptr) };
    if cell.header.state.transition_to_shutdown() {
        // We own the future now; `complete` consumes the reference we were given.
        cancel_and_complete(cell, ptr);
    } else if cell.header.state.ref_dec() {
        // SAFETY: last reference.
        unsafe { dealloc::<F, S>(ptr) };
    }
}

/// Marker to keep `S` in signatures without storing it.
pub(crate) type Phantom<S> = PhantomData<fn() -> S>;
