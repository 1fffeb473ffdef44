//! The cell of one scope child: a refcounted header and the child's future or output, in one
//! allocation, plus the lock-free ready stack the children's wakers push onto.
//!
//! # State word
//!
//! - [`QUEUED`]: the child is in the ready stack (or being pushed). A wake that finds it set
//!   does nothing, so a child is in the stack at most once; the scope clears it (acquire) just
//!   before polling the child, so a wake during the poll queues it again.
//! - [`COMPLETE`]: the scope is done with the child: the stage holds the output, or nothing if
//!   the child panicked or was dropped unfinished. Set once, by the scope, after the stage write.
//! - [`HANDLE_GONE`]: the [`ScopeHandle`](super::ScopeHandle) was dropped (or took the output).
//!
//! Whoever sets the second of `COMPLETE` and `HANDLE_GONE` owns what is left in the stage and
//! drops it; before that the scope owns the stage while the child runs, and the handle owns it
//! after `COMPLETE`.
//!
//! # References
//!
//! `refs` counts the scope's slab entry, a ready-stack entry, every waker and the handle. The
//! future (and output) are only ever dropped by the scope or the handle, never by whoever drops
//! the last reference: the last reference frees the memory only. A leaked scope leaks its slab
//! references, so its children's memory is never freed under a pinned future.
//!
//! # Ready stack
//!
//! A Treiber stack of headers that is only pushed to and emptied whole (`swap`), so it has no
//! ABA problem. Closing it swaps in [`CLOSED`]: later wakes do not push, so nothing can keep a
//! cell and the shared block alive in a cycle after the scope is gone.

use alloc::boxed::Box;
use core::any::Any;
use core::future::Future;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::loom::{fence, AtomicBool, AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};
use crate::sync::atomic_waker::AtomicWaker;

/// In the ready stack.
pub(crate) const QUEUED: usize = 1 << 0;
/// The scope is done with the child (see the module docs).
pub(crate) const COMPLETE: usize = 1 << 1;
/// The handle is gone.
pub(crate) const HANDLE_GONE: usize = 1 << 2;

/// The ready stack's "closed" marker (never a valid header address: headers are aligned).
const CLOSED: *mut Header = core::ptr::dangling_mut::<Header>();

/// A panic payload (or nothing without `std`).
pub(crate) type Panic = Box<dyn Any + Send + 'static>;

/// What polling a child did.
#[must_use]
pub(crate) enum Polled {
    Pending,
    /// It finished; the output is in the stage.
    Ready,
    /// It panicked; the future was dropped.
    Panicked(Panic),
}

/// The scope's side shared with every child waker: the ready stack and the scope future's waker.
pub(crate) struct Shared {
    head: AtomicPtr<Header>,
    /// The waker of the task polling the scope.
    pub(crate) parent: AtomicWaker,
    /// Set while the scope drains the stack: wakes then skip waking the parent (the scope looks
    /// at the stack again before it returns).
    polling: AtomicBool,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared { head: AtomicPtr::new(ptr::null_mut()), parent: AtomicWaker::new(), polling: AtomicBool::new(false) }
    }

    /// Takes every queued child, oldest wake first, calling `f` with each (`f` owns the stack's
    /// reference). Returns whether anything was taken.
    pub(crate) fn drain(&self, scratch: &mut alloc::vec::Vec<NonNull<Header>>) -> bool {
        // Only the scope drains and closes, so a stack seen open here stays open.
        let seen = self.head.load(Relaxed);
        if seen.is_null() || seen == CLOSED {
            return false;
        }
        let mut p = self.head.swap(ptr::null_mut(), Acquire);
        let start = scratch.len();
        while !p.is_null() {
            // SAFETY: the stack holds a reference to every header in it.
            let h = unsafe { NonNull::new_unchecked(p) };
            scratch.push(h);
            // SAFETY: as above; `next` was written before the push that published it.
            p = unsafe { h.as_ref() }.next.load(Relaxed);
        }
        scratch[start..].reverse();
        true
    }

    /// Marks the start (`true`) or end of a drain; at the end, whether anything was queued since.
    ///
    /// With [`Shared::after_push`] this is the store-buffering pattern, closed with sequentially
    /// consistent fences: the scope clears `polling`, fences, then looks at the stack; a waker
    /// pushes, fences, then reads `polling`. The fences are totally ordered, so either the scope
    /// sees the push (and polls the child) or the waker sees `polling` clear (and wakes the
    /// scope's task). A waker that reads `polling` set read a drain that checks the stack again
    /// when it ends. (Plain `SeqCst` loads and stores would not do: the push is an `AcqRel`
    /// read-modify-write, outside the `SeqCst` order.)
    pub(crate) fn set_polling(&self, on: bool) -> bool {
        self.polling.store(on, Relaxed);
        !on && {
            fence(SeqCst);
            let h = self.head.load(Acquire);
            !h.is_null() && h != CLOSED
        }
    }

    /// After a successful push: wakes the scope's task unless the scope is draining (see
    /// [`set_polling`](Self::set_polling)).
    #[inline]
    fn after_push(&self) {
        fence(SeqCst);
        if !self.polling.load(Relaxed) {
            self.parent.wake();
        }
    }

    /// Closes the stack and returns what was in it (each with the stack's reference).
    pub(crate) fn close(&self, scratch: &mut alloc::vec::Vec<NonNull<Header>>) {
        let mut p = self.head.swap(CLOSED, Acquire);
        while !p.is_null() && p != CLOSED {
            // SAFETY: as in `drain`.
            let h = unsafe { NonNull::new_unchecked(p) };
            scratch.push(h);
            // SAFETY: as in `drain`.
            p = unsafe { h.as_ref() }.next.load(Relaxed);
        }
    }

    /// Pushes a header whose `QUEUED` bit the caller set, passing one reference to the stack.
    /// Returns `false` (keeping the reference with the caller) if the stack is closed.
    fn push(&self, h: NonNull<Header>) -> bool {
        let mut head = self.head.load(Relaxed);
        loop {
            if head == CLOSED {
                return false;
            }
            // SAFETY: the caller holds a reference to `h`.
            unsafe { h.as_ref() }.next.store(head, Relaxed);
            match self.head.compare_exchange_weak(head, h.as_ptr(), AcqRel, Relaxed) {
                Ok(_) => return true,
                Err(actual) => head = actual,
            }
        }
    }
}

/// The type-erased operations on a cell.
pub(crate) struct Vtable {
    /// Polls the future (the scope's exclusive right), catching panics.
    poll: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Polled,
    /// Drops whatever the stage holds.
    drop_stage: unsafe fn(NonNull<Header>),
    /// Frees the allocation (the stage is already empty).
    dealloc: unsafe fn(NonNull<Header>),
}

/// The first field of every cell.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: AtomicUsize,
    refs: AtomicUsize,
    next: AtomicPtr<Header>,
    /// The scope's shared block; every cell owns one `Arc` count on it.
    shared: *const Shared,
    vtable: &'static Vtable,
    /// The slab key (fixed before the child is published).
    pub(crate) key: usize,
    /// The handle's waker.
    pub(crate) join: AtomicWaker,
}

pub(crate) enum Stage<F: Future> {
    Running(F),
    Done(F::Output),
    Empty,
}

#[repr(C)]
struct Cell<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
}

/// Allocates a cell for `future` with two references (the scope's slab and the handle) plus one
/// for the ready stack, queued. The caller pushes it with [`publish`].
pub(crate) fn allocate<F: Future>(future: F, shared: &crate::sync::Shared<Shared>, key: usize) -> NonNull<Header> {
    let raw = crate::sync::Shared::into_raw(shared.clone());
    let cell = Box::new(Cell {
        header: Header {
            state: AtomicUsize::new(QUEUED),
            refs: AtomicUsize::new(3),
            next: AtomicPtr::new(ptr::null_mut()),
            shared: raw,
            vtable: vtable::<F>(),
            key,
            join: AtomicWaker::new(),
        },
        stage: UnsafeCell::new(Stage::Running(future)),
    });
    NonNull::from(Box::leak(cell)).cast()
}

/// Queues a freshly allocated cell (its `QUEUED` bit and stack reference are already set).
pub(crate) fn publish(h: NonNull<Header>) {
    // SAFETY: the caller holds references.
    let header = unsafe { h.as_ref() };
    // SAFETY: every cell holds a count on its shared block.
    let shared = unsafe { &*header.shared };
    if !shared.push(h) {
        // Closed (cannot happen while the scope is alive to spawn): drop the stack's reference.
        release(h);
        return;
    }
    shared.after_push();
}

fn vtable<F: Future>() -> &'static Vtable {
    &Vtable { poll: poll::<F>, drop_stage: drop_stage::<F>, dealloc: dealloc::<F> }
}

/// # Safety
/// `h` is a live `Cell<F>` header.
unsafe fn cell<'a, F: Future>(h: NonNull<Header>) -> &'a Cell<F> {
    // SAFETY: forwarded; the header is the first field of the `repr(C)` cell.
    unsafe { h.cast::<Cell<F>>().as_ref() }
}

#[cfg(feature = "std")]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

#[cfg(not(feature = "std"))]
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Panic> {
    Ok(f())
}

/// Re-raises a panic caught by [`catch`].
#[cfg(feature = "std")]
pub(crate) fn resume(p: Panic) -> ! {
    std::panic::resume_unwind(p)
}

#[cfg(not(feature = "std"))]
pub(crate) fn resume(_p: Panic) -> ! {
    panic!("spindle: a scope child panicked")
}

unsafe fn poll<F: Future>(h: NonNull<Header>, cx: &mut Context<'_>) -> Polled {
    // SAFETY: the scope polls only live cells of the right type.
    let cell = unsafe { cell::<F>(h) };
    let r = catch(|| {
        cell.stage.with_mut(|p| {
            // SAFETY: only the scope touches the stage while the child runs, and it polls one
            // child at a time; the future never moves out of the boxed cell.
            match unsafe { &mut *p } {
                // SAFETY: as above: pinned in place in the cell.
                Stage::Running(f) => unsafe { Pin::new_unchecked(f) }.poll(cx),
                _ => unreachable!("spindle: a finished scope child was polled"),
            }
        })
    });
    match r {
        Ok(Poll::Pending) => Polled::Pending,
        Ok(Poll::Ready(v)) => {
            // SAFETY: as above; dropping the finished future in place.
            cell.stage.with_mut(|p| unsafe { *p = Stage::Done(v) });
            Polled::Ready
        }
        Err(panic) => {
            // The future is dropped in place; a panic from its destructor is contained too.
            let _ = catch(|| {
                // SAFETY: as above.
                cell.stage.with_mut(|p| unsafe { *p = Stage::Empty })
            });
            Polled::Panicked(panic)
        }
    }
}

unsafe fn drop_stage<F: Future>(h: NonNull<Header>) {
    // SAFETY: the caller owns the stage (module docs).
    let cell = unsafe { cell::<F>(h) };
    // SAFETY: as above.
    let old = cell.stage.with_mut(|p| unsafe { ptr::replace(p, Stage::Empty) });
    drop(old);
}

unsafe fn dealloc<F: Future>(h: NonNull<Header>) {
    // SAFETY: the last reference is gone and the cell came from `allocate::<F>`.
    let cell = unsafe { Box::from_raw(h.cast::<Cell<F>>().as_ptr()) };
    let shared = cell.header.shared;
    // The stage is `Empty` (module docs), so this frees memory only.
    drop(cell);
    // SAFETY: the cell owned one count on the shared block.
    unsafe { drop(crate::sync::Shared::from_raw(shared)) };
}

/// Drops one reference, freeing the cell after the last.
pub(crate) fn release(h: NonNull<Header>) {
    // SAFETY: the caller owns a reference.
    let header = unsafe { h.as_ref() };
    if header.refs.fetch_sub(1, AcqRel) == 1 {
        // SAFETY: that was the last reference.
        unsafe { (header.vtable.dealloc)(h) };
    }
}

/// Polls the child (scope only).
///
/// # Safety
/// The caller is the scope, polling this child from one thread at a time, and the child is
/// still running.
pub(crate) unsafe fn poll_child(h: NonNull<Header>, cx: &mut Context<'_>) -> Polled {
    // SAFETY: forwarded.
    unsafe { (h.as_ref().vtable.poll)(h, cx) }
}

/// Marks the child complete (the scope is done with it), drops the stage if the handle is gone,
/// wakes the handle, and drops the scope's reference.
pub(crate) fn complete(h: NonNull<Header>) {
    // SAFETY: the scope holds its slab reference until the end of this function.
    let header = unsafe { h.as_ref() };
    let prev = header.state.fetch_or(COMPLETE, AcqRel);
    if prev & HANDLE_GONE != 0 {
        // SAFETY: the handle is gone, so the stage is ours (module docs).
        unsafe { (header.vtable.drop_stage)(h) };
    } else {
        header.join.wake();
    }
    release(h);
}

/// Drops an unfinished child's future (a hard cancel), then completes it.
///
/// # Safety
/// As [`poll_child`]: the scope owns the running stage.
pub(crate) unsafe fn cancel_child(h: NonNull<Header>) {
    // SAFETY: forwarded: the stage is ours while the child is not complete.
    let _ = catch(|| unsafe { (h.as_ref().vtable.drop_stage)(h) });
    complete(h);
}

/// The handle's side: take the output once complete.
///
/// # Safety
/// `h` is a `Cell<F>` whose handle the caller is, with `F::Output == T`.
pub(crate) unsafe fn poll_output<F: Future>(h: NonNull<Header>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
    // SAFETY: the handle holds a reference.
    let header = unsafe { h.as_ref() };
    if header.state.load(Acquire) & COMPLETE == 0 {
        header.join.register(cx.waker());
        if header.state.load(Acquire) & COMPLETE == 0 {
            return Poll::Pending;
        }
    }
    // SAFETY: `COMPLETE` and our handle not gone: the stage is ours.
    let cell = unsafe { cell::<F>(h) };
    // SAFETY: as above.
    let stage = cell.stage.with_mut(|p| unsafe { ptr::replace(p, Stage::Empty) });
    Poll::Ready(match stage {
        Stage::Done(v) => Some(v),
        _ => None,
    })
}

/// The handle is dropped (or took the output): drops the output if the scope is done, and the
/// handle's reference.
pub(crate) fn drop_handle(h: NonNull<Header>) {
    // SAFETY: the handle holds a reference.
    let header = unsafe { h.as_ref() };
    let prev = header.state.fetch_or(HANDLE_GONE, AcqRel);
    if prev & COMPLETE != 0 {
        // SAFETY: complete and we were the handle: the stage is ours.
        let _ = catch(|| unsafe { (header.vtable.drop_stage)(h) });
    }
    release(h);
}

/// Takes the `QUEUED` bit off before a poll; returns whether the child is already complete.
pub(crate) fn unqueue(h: NonNull<Header>) -> bool {
    // SAFETY: the caller holds the stack's reference.
    let prev = unsafe { h.as_ref() }.state.fetch_and(!QUEUED, AcqRel);
    prev & COMPLETE != 0
}

/// Wakes a child as its waker would.
pub(crate) fn wake(h: NonNull<Header>) {
    // SAFETY: the caller holds a reference.
    let header = unsafe { h.as_ref() };
    if header.state.fetch_or(QUEUED, AcqRel) & (QUEUED | COMPLETE) != 0 {
        return;
    }
    header.refs.fetch_add(1, Relaxed);
    // SAFETY: every cell holds a count on its shared block.
    let shared = unsafe { &*header.shared };
    if !shared.push(h) {
        release(h);
        return;
    }
    shared.after_push();
}

/// A waker for the child that borrows the caller's reference (no count taken until cloned).
pub(crate) fn waker_ref(h: NonNull<Header>) -> core::mem::ManuallyDrop<Waker> {
    // SAFETY: the vtable's functions uphold the `RawWaker` contract for cell headers.
    core::mem::ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(h.as_ptr() as *const (), &WAKER_VTABLE)) })
}

static WAKER_VTABLE: RawWakerVTable = RawWakerVTable::new(w_clone, w_wake, w_wake_by_ref, w_drop);

unsafe fn w_clone(p: *const ()) -> RawWaker {
    // SAFETY: a live waker's header.
    unsafe { &*(p as *const Header) }.refs.fetch_add(1, Relaxed);
    RawWaker::new(p, &WAKER_VTABLE)
}

unsafe fn w_wake(p: *const ()) {
    // SAFETY: a live waker's header; then we drop the waker's reference.
    let h = unsafe { NonNull::new_unchecked(p as *mut Header) };
    wake(h);
    release(h);
}

unsafe fn w_wake_by_ref(p: *const ()) {
    // SAFETY: a live waker's header.
    wake(unsafe { NonNull::new_unchecked(p as *mut Header) });
}

unsafe fn w_drop(p: *const ()) {
    // SAFETY: a live waker's header; we drop its reference.
    release(unsafe { NonNull::new_unchecked(p as *mut Header) });
}

// SAFETY: a header is shared between the scope, wakers and the handle; its mutable parts are
// atomics, and the stage behind it is handed from one owner to another by the state word.
unsafe impl Send for Header {}
// SAFETY: as above.
unsafe impl Sync for Header {}
