//! The cell of one scope child: a refcounted header and the child's future or output, in one
//! allocation, plus the lock-free ready stack the children's wakers push onto.
//!
//! # State word
//!
//! One word holds three flags and, from bit [`REF_SHIFT`] up, the reference count:
//!
//! - [`QUEUED`]: the child is in the ready stack (or being pushed). A wake that finds it set
//!   does nothing, so a child is in the stack at most once; the scope clears it (acquire) just
//!   before polling a woken child, so a wake during the poll queues it again. A new child starts
//!   with it clear (it waits in the scope's list of new children, polled in the next batch; no
//!   waker of it exists before that first poll, except the scope's own cancel wake-up, which
//!   only queues it once more).
//! - [`COMPLETE`]: the scope is done with the child: the stage holds the output, or nothing if
//!   the child panicked or was dropped unfinished. Set once, by the scope, after the stage write.
//! - [`HANDLE_GONE`]: the [`ScopeHandle`](super::ScopeHandle) was dropped before `COMPLETE`. Set
//!   once, by the handle, in the same compare-and-swap that drops the handle's reference, and
//!   only while `COMPLETE` is clear.
//!
//! The stage belongs to the scope until `COMPLETE`, then to the handle. A handle dropped before
//! that sets `HANDLE_GONE` and leaves the stage alone, and the scope, seeing the flag, drops the
//! stage itself before it sets `COMPLETE` (both flags are sticky, so a flag seen once stays
//! true). A handle dropped after `COMPLETE` drops the stage (the output) itself.
//!
//! # References
//!
//! The count (in units of [`REF_ONE`]) counts the scope's slab entry, a ready-stack entry, every
//! waker and the handle (a new child waiting in the scope's list of new children needs no
//! reference of its own: its slab entry outlives that list entry). Keeping it in the state word
//! lets a transition and a reference drop share one atomic operation (`complete` when the handle
//! is gone, `drop_handle` before completion, a wake that queues). The future (and output) are
//! only ever dropped by the scope or the handle, never by whoever drops the last reference: the
//! last reference drops the (empty) cell in place and gives its memory back to the chunk. A leaked
//! scope leaks its slab references, so its children's memory is never freed under a pinned
//! future.
//!
//! # Memory: chunks
//!
//! Cells are not allocated one by one: the scope's [`Arena`] carves them, bump-pointer, from
//! chunks (4 KiB, doubling up to 64 KiB; a cell too big or too aligned for that, or spawned from
//! outside the scope's poll, where the arena is out of reach, gets a chunk of its own). A chunk counts its live cells in `live`, plus [`HOLD`] while the arena may still
//! carve from it; the arena counts what it carved without atomics and, when it moves on to a new
//! chunk (or the scope is dropped), subtracts `HOLD` minus that count in one step. A cell's last
//! reference drops the cell in place and subtracts one; whoever brings `live` to zero frees the
//! chunk, so a chunk outlives every cell in it (and the wakers that keep cells alive), wherever
//! they are dropped. Each chunk holds one count on the scope's shared block, so cells (and their
//! wakers) reach the shared block through a plain pointer, without a count of their own.
//!
//! # Ready stack
//!
//! A Treiber stack of headers that is only pushed to and emptied whole (`swap`), so it has no
//! ABA problem. Closing it swaps in [`CLOSED`]: later wakes do not push, so nothing can keep a
//! cell and the shared block alive in a cycle after the scope is gone.

use alloc::boxed::Box;
use core::alloc::Layout;
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
/// The handle was dropped before `COMPLETE`.
pub(crate) const HANDLE_GONE: usize = 1 << 2;
/// Where the reference count starts in the state word.
pub(crate) const REF_SHIFT: u32 = 3;
/// One reference, in the state word.
pub(crate) const REF_ONE: usize = 1 << REF_SHIFT;

/// How many references a state word holds.
#[inline]
const fn refs(state: usize) -> usize {
    state >> REF_SHIFT
}

/// What dropping a reference did.
#[must_use]
pub(crate) enum Release {
    /// Other references remain.
    Kept,
    /// That was the last one: the cell was dropped in place, and its count on this chunk is the
    /// caller's to give back (`Arena::give_back` or `chunk_release`).
    Freed(NonNull<Chunk>),
}

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
    /// The [`thread_token`] of the thread inside the scope future's `poll`, or 0 (see
    /// [`on_poller`]).
    poller: crate::loom::unmodelled::AtomicUsize,
}

/// A nonzero token for the calling thread (the address of a thread-local), or 0 where threads
/// cannot be told apart (without `std`, under loom, during thread teardown).
#[inline]
pub(crate) fn thread_token() -> usize {
    #[cfg(all(feature = "std", not(loom)))]
    {
        std::thread_local! {
            static TOKEN: u8 = const { 0 };
        }
        TOKEN.try_with(|t| t as *const u8 as usize).unwrap_or(0)
    }
    #[cfg(any(not(feature = "std"), loom))]
    0
}

/// Whether the calling thread is inside the `poll` of the scope that owns `shared` (so it may
/// use the scope's owner-side state without a lock: the scope's code is on this very thread,
/// between two of its own steps, running a child, the body or a cleanup).
///
/// Sound with relaxed accesses: a thread reads its own token back only if it stored it, and
/// the scope clears the token (on this thread) before its `poll` returns or unwinds. Tokens of
/// live threads differ, so another thread never reads its own token there.
#[inline]
pub(crate) fn on_poller(shared: &Shared) -> bool {
    let t = thread_token();
    t != 0 && shared.poller.load(crate::loom::unmodelled::Ordering::Relaxed) == t
}

/// Marks the calling thread as the one polling the scope until dropped.
#[must_use = "the thread is the poller only while the guard lives"]
pub(crate) struct PollerGuard<'a>(&'a Shared);

impl<'a> PollerGuard<'a> {
    pub(crate) fn enter(shared: &'a Shared) -> PollerGuard<'a> {
        shared.poller.store(thread_token(), crate::loom::unmodelled::Ordering::Relaxed);
        PollerGuard(shared)
    }
}

impl Drop for PollerGuard<'_> {
    fn drop(&mut self) {
        self.0.poller.store(0, crate::loom::unmodelled::Ordering::Relaxed);
    }
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            head: AtomicPtr::new(ptr::null_mut()),
            parent: AtomicWaker::new(),
            polling: AtomicBool::new(false),
            poller: crate::loom::unmodelled::AtomicUsize::new(0),
        }
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
    /// Drops the cell in place (the stage is already empty); the memory stays in the chunk.
    drop_cell: unsafe fn(NonNull<Header>),
}

/// Where a cell sits in its scope's lists. Only the scope's side touches these: its owner side
/// (the thread inside the scope's poll, or the scope's constructor and destructor), and, for
/// `link` of a child spawned from elsewhere and not yet adopted, the scope's lock.
pub(crate) struct Links {
    /// The scope's list of unfinished children (doubly linked).
    pub(crate) all_prev: *mut Header,
    pub(crate) all_next: *mut Header,
    /// The next child spawned from elsewhere (under the lock) or the next new child, then, once
    /// polled and finished, the next child finished in the same batch.
    pub(crate) link: *mut Header,
    /// The scope polled the child to its end; it is completed at the end of the batch.
    pub(crate) finished: bool,
    /// The scope has polled the child (so wakers of it may exist).
    pub(crate) polled: bool,
}

/// The cell's links.
///
/// # Safety
/// The caller is the scope's owner side, or holds the scope's lock for `link` of a child not
/// yet adopted (see [`Links`]), holds no other reference to these links, and the cell is alive
/// (the scope's reference).
#[allow(clippy::mut_from_ref)]
pub(crate) unsafe fn links<'a>(h: NonNull<Header>) -> &'a mut Links {
    // SAFETY: forwarded: one side at a time uses each field.
    unsafe { &mut *h.as_ref().links.with_mut(|p| p) }
}

/// The first field of every cell.
#[repr(C)]
pub(crate) struct Header {
    /// Flags and reference count (module docs).
    pub(crate) state: AtomicUsize,
    next: AtomicPtr<Header>,
    /// The scope's shared block (kept alive by the cell's chunk).
    shared: *const Shared,
    /// The chunk the cell was carved from.
    chunk: NonNull<Chunk>,
    vtable: &'static Vtable,
    /// The scope's links (see [`Links`]).
    links: UnsafeCell<Links>,
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

/// Carves a cell for `future` from `arena` with two references (the scope's slab and the
/// handle), not queued: the caller puts it in the scope's list of new children, which the scope
/// polls in its next batch.
pub(crate) fn allocate<F: Future>(future: F, arena: &mut Arena) -> NonNull<Header> {
    let (mem, chunk) = arena.carve(Layout::new::<Cell<F>>());
    write_cell(future, mem, chunk)
}

/// As [`allocate`], in a chunk of its own (for spawns from outside the scope's poll, which have
/// no access to the arena).
pub(crate) fn allocate_alone<F: Future>(future: F, shared: &crate::sync::Shared<Shared>) -> NonNull<Header> {
    let (mem, chunk) = alone(shared, Layout::new::<Cell<F>>());
    write_cell(future, mem, chunk)
}

fn write_cell<F: Future>(future: F, mem: NonNull<u8>, chunk: NonNull<Chunk>) -> NonNull<Header> {
    let cell = mem.cast::<Cell<F>>();
    // SAFETY: `carve` returned memory of `Cell<F>`'s layout that nothing else uses; the chunk
    // stays alive until this cell is dropped and returned to it (module docs).
    unsafe {
        cell.as_ptr().write(Cell {
            header: Header {
                state: AtomicUsize::new(2 * REF_ONE),
                next: AtomicPtr::new(ptr::null_mut()),
                shared: chunk.as_ref().shared,
                chunk,
                vtable: vtable::<F>(),
                links: UnsafeCell::new(Links {
                    all_prev: ptr::null_mut(),
                    all_next: ptr::null_mut(),
                    link: ptr::null_mut(),
                    finished: false,
                    polled: false,
                }),
                join: AtomicWaker::new(),
            },
            stage: UnsafeCell::new(Stage::Running(future)),
        })
    };
    cell.cast()
}

/// A chunk's `live` count while its arena may still carve from it (module docs).
const HOLD: usize = 1 << (usize::BITS - 2);
/// The first chunk's size; each next one doubles, up to [`MAX_CHUNK`].
const MIN_CHUNK: usize = 4 << 10;
/// The largest shared chunk; a bigger cell gets a chunk of its own.
const MAX_CHUNK: usize = 64 << 10;
/// The alignment chunks are allocated with; a cell that needs more gets a chunk of its own.
const CHUNK_ALIGN: usize = 16;

/// The head of a chunk of cells (module docs).
pub(crate) struct Chunk {
    /// Live cells, plus [`HOLD`] while the arena may carve from the chunk.
    live: AtomicUsize,
    /// The scope's shared block: one count, dropped with the chunk.
    shared: *const Shared,
    /// The chunk's allocation.
    layout: Layout,
}

/// Where in a chunk the first cell may go.
const fn data_offset(align: usize) -> usize {
    let h = core::mem::size_of::<Chunk>();
    (h + align - 1) & !(align - 1)
}

/// A scope's cell allocator (module docs). Used under the scope's lock.
pub(crate) struct Arena {
    shared: crate::sync::Shared<Shared>,
    /// The chunk being carved (its `HOLD` is still in), or none.
    chunk: Option<NonNull<Chunk>>,
    /// Next free byte and end of the current chunk, as addresses.
    cursor: usize,
    end: usize,
    /// Cells carved from the current chunk.
    carved: usize,
    /// Size of the next shared chunk.
    next_size: usize,
}

impl Arena {
    pub(crate) fn new(shared: crate::sync::Shared<Shared>) -> Arena {
        Arena { shared, chunk: None, cursor: 0, end: 0, carved: 0, next_size: MIN_CHUNK }
    }

    /// Memory for one cell of `layout`, and its chunk (which counts the cell as live).
    #[inline]
    fn carve(&mut self, layout: Layout) -> (NonNull<u8>, NonNull<Chunk>) {
        if let Some(chunk) = self.chunk {
            if layout.align() <= CHUNK_ALIGN {
                let start = (self.cursor + layout.align() - 1) & !(layout.align() - 1);
                if start + layout.size() <= self.end {
                    self.cursor = start + layout.size();
                    self.carved += 1;
                    // SAFETY: inside the current chunk's data area, which nothing else uses.
                    return (unsafe { NonNull::new_unchecked(start as *mut u8) }, chunk);
                }
            }
        }
        self.carve_slow(layout)
    }

    /// [`carve`](Self::carve) when the current chunk has no room: a new chunk.
    #[cold]
    fn carve_slow(&mut self, layout: Layout) -> (NonNull<u8>, NonNull<Chunk>) {
        let align = layout.align().max(CHUNK_ALIGN);
        let need = data_offset(align) + layout.size();
        if align > CHUNK_ALIGN || need > MAX_CHUNK / 4 {
            return alone(&self.shared, layout);
        }
        self.retire();
        let size = self.next_size.max(need);
        self.next_size = (self.next_size * 2).min(MAX_CHUNK);
        let chunk = self.new_chunk(size, CHUNK_ALIGN);
        let base = chunk.as_ptr() as usize;
        self.chunk = Some(chunk);
        self.end = base + size;
        let start = base + data_offset(CHUNK_ALIGN);
        let start = (start + layout.align() - 1) & !(layout.align() - 1);
        self.cursor = start + layout.size();
        self.carved = 1;
        // SAFETY: as above, in the fresh chunk.
        (unsafe { NonNull::new_unchecked(start as *mut u8) }, chunk)
    }

    fn new_chunk(&self, size: usize, align: usize) -> NonNull<Chunk> {
        new_chunk(&self.shared, size, align)
    }

    /// Takes back `n` cells of `chunk` that the scope freed itself: without an atomic operation
    /// if it is the chunk being carved (they are simply no longer counted as carved).
    pub(crate) fn give_back(&mut self, chunk: NonNull<Chunk>, n: usize) {
        if self.chunk == Some(chunk) {
            self.carved -= n;
        } else {
            // SAFETY: the caller owns `n` counts of the chunk (cells it freed).
            unsafe { chunk_release(chunk, n) };
        }
    }

    /// Gives up the current chunk: its hold goes, so the last of its cells frees it.
    pub(crate) fn retire(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            // SAFETY: the hold keeps the chunk alive until this subtraction.
            unsafe { chunk_release(chunk, HOLD - self.carved) };
        }
    }
}

/// Allocates a chunk of `size` bytes (head included) with its hold in, holding one count on the
/// shared block.
fn new_chunk(shared: &crate::sync::Shared<Shared>, size: usize, align: usize) -> NonNull<Chunk> {
    let layout = Layout::from_size_align(size, align).expect("spindle: scope child too large");
    // SAFETY: `layout` has a non-zero size (it includes the chunk head).
    let p = unsafe { alloc::alloc::alloc(layout) } as *mut Chunk;
    let Some(p) = NonNull::new(p) else { alloc::alloc::handle_alloc_error(layout) };
    let shared = crate::sync::Shared::into_raw(shared.clone());
    // SAFETY: fresh memory of at least `size_of::<Chunk>()` bytes, aligned for `Chunk`.
    unsafe { p.as_ptr().write(Chunk { live: AtomicUsize::new(HOLD), shared, layout }) };
    p
}

/// Memory for one cell of `layout` in a chunk of its own, never carved again (its hold goes at
/// once, so the cell's own count is the chunk's only one).
fn alone(shared: &crate::sync::Shared<Shared>, layout: Layout) -> (NonNull<u8>, NonNull<Chunk>) {
    let align = layout.align().max(CHUNK_ALIGN);
    let chunk = new_chunk(shared, data_offset(align) + layout.size(), align);
    // SAFETY: the chunk was just made with its hold; we give the hold up, keeping one live cell
    // (this one).
    unsafe { chunk.as_ref() }.live.fetch_sub(HOLD - 1, Relaxed);
    // SAFETY: the data area starts `data_offset(align)` bytes in, inside the chunk.
    let mem = unsafe { NonNull::new_unchecked(chunk.as_ptr().cast::<u8>().add(data_offset(align))) };
    (mem, chunk)
}

// SAFETY: the arena's raw chunk pointer is only used by the scope's owner side;
// chunks themselves are shared through their atomic `live` count.
unsafe impl Send for Arena {}

/// Subtracts `n` from a chunk's `live` count, freeing the chunk (and its count on the shared
/// block) if that was the rest.
///
/// # Safety
/// The caller owns `n` of the chunk's counts (cells or the hold).
pub(crate) unsafe fn chunk_release(chunk: NonNull<Chunk>, n: usize) {
    // SAFETY: our counts keep the chunk alive until the subtraction.
    let c = unsafe { chunk.as_ref() };
    if c.live.fetch_sub(n, AcqRel) != n {
        return;
    }
    let (shared, layout) = (c.shared, c.layout);
    // SAFETY: nothing else refers to the chunk any more; it was written by `new_chunk`.
    unsafe {
        ptr::drop_in_place(chunk.as_ptr());
        alloc::alloc::dealloc(chunk.as_ptr().cast(), layout);
        drop(crate::sync::Shared::from_raw(shared));
    }
}

fn vtable<F: Future>() -> &'static Vtable {
    &Vtable { poll: poll::<F>, drop_stage: drop_stage::<F>, drop_cell: drop_cell::<F> }
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
            // SAFETY: as above; the finished future is dropped in place.
            match catch(|| cell.stage.with_mut(|p| unsafe { replace_in_place(p, Stage::Done(v)) })) {
                Ok(()) => Polled::Ready,
                // Its destructor panicked: the output is gone with it.
                Err(panic) => Polled::Panicked(panic),
            }
        }
        Err(panic) => {
            // The future is dropped in place; a panic from its destructor is contained too.
            let _ = catch(|| {
                // SAFETY: as above.
                cell.stage.with_mut(|p| unsafe { replace_in_place(p, Stage::Empty) })
            });
            Polled::Panicked(panic)
        }
    }
}

/// Drops the stage **in place** and writes `next` there. A running future is pinned in its cell:
/// moving it out to drop it (`ptr::replace`) would break the pin guarantee that intrusive
/// futures (timer entries, wait-list nodes linked into a driver) rely on to unlink themselves.
/// If the drop panics, the stage is left `Empty` (and `next` is dropped), so nothing is dropped
/// twice.
///
/// # Safety
/// `p` is the stage of a live cell, owned by the caller (module docs).
unsafe fn replace_in_place<F: Future>(p: *mut Stage<F>, next: Stage<F>) {
    struct LeaveEmpty<F: Future>(*mut Stage<F>);
    impl<F: Future> Drop for LeaveEmpty<F> {
        fn drop(&mut self) {
            // SAFETY: runs only while unwinding from the drop below, which left the stage
            // dropped: overwrite it without dropping it again.
            unsafe { ptr::write(self.0, Stage::Empty) };
        }
    }
    let guard = LeaveEmpty(p);
    // SAFETY: forwarded; the value is dropped where it lies, never moved.
    unsafe { ptr::drop_in_place(p) };
    core::mem::forget(guard);
    // SAFETY: the old value was dropped; this writes without dropping it again.
    unsafe { ptr::write(p, next) };
}

unsafe fn drop_stage<F: Future>(h: NonNull<Header>) {
    // SAFETY: the caller owns the stage (module docs).
    let cell = unsafe { cell::<F>(h) };
    // SAFETY: as above; a running future is dropped in place (pinned).
    cell.stage.with_mut(|p| unsafe { replace_in_place(p, Stage::Empty) });
}

unsafe fn drop_cell<F: Future>(h: NonNull<Header>) {
    // SAFETY: the last reference is gone and the cell came from `allocate::<F>`. The stage is
    // `Empty` (module docs), so this drops the header's fields (a handle waker left in `join`)
    // and nothing of the child.
    unsafe { ptr::drop_in_place(h.cast::<Cell<F>>().as_ptr()) };
}

/// After the last reference: drops the cell in place and returns its chunk.
fn free_cell(h: NonNull<Header>) -> NonNull<Chunk> {
    // SAFETY: the caller dropped the last reference; nothing else touches the cell.
    let header = unsafe { h.as_ref() };
    let chunk = header.chunk;
    // SAFETY: as above.
    unsafe { (header.vtable.drop_cell)(h) };
    chunk
}

/// Drops one reference, freeing the cell (and returning it to its chunk) after the last.
pub(crate) fn release(h: NonNull<Header>) {
    if let Release::Freed(chunk) = release_local(h) {
        // SAFETY: the freed cell's count on the chunk is ours.
        unsafe { chunk_release(chunk, 1) };
    }
}

/// Drops one reference; after the last, drops the cell and hands its chunk count to the caller.
pub(crate) fn release_local(h: NonNull<Header>) -> Release {
    // SAFETY: the caller owns a reference.
    let header = unsafe { h.as_ref() };
    if refs(header.state.fetch_sub(REF_ONE, AcqRel)) == 1 {
        Release::Freed(free_cell(h))
    } else {
        Release::Kept
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

/// Marks the child complete (the scope is done with it), drops the stage if the handle is gone
/// or wakes the handle, and drops the scope's reference (a handle gone before this: one atomic
/// operation).
pub(crate) fn complete(h: NonNull<Header>) -> Release {
    // SAFETY: the scope holds its slab reference until the release below.
    let header = unsafe { h.as_ref() };
    let cur = header.state.load(Acquire);
    if cur & HANDLE_GONE != 0 {
        // The handle left before `COMPLETE` and never comes back: the stage is ours.
        // SAFETY: as above; a panic in the output's destructor is contained.
        let _ = catch(|| unsafe { (header.vtable.drop_stage)(h) });
        if refs(cur) == 1 {
            // Ours is the only reference (no waker, no stack entry, no handle), and only a
            // holder of a reference can make another: nobody else can reach the cell, so it
            // is freed without another atomic operation.
            return Release::Freed(free_cell(h));
        }
        // Sets `COMPLETE` (clear until now) and drops our reference.
        let prev = header.state.fetch_sub(REF_ONE - COMPLETE, AcqRel);
        return if refs(prev) == 1 { Release::Freed(free_cell(h)) } else { Release::Kept };
    }
    // The handle may want the output: publish `COMPLETE`, keeping our reference while we wake it.
    let prev = header.state.fetch_or(COMPLETE, AcqRel);
    if prev & HANDLE_GONE != 0 {
        // It left in between, seeing no `COMPLETE`: the stage is ours after all.
        // SAFETY: as above.
        let _ = catch(|| unsafe { (header.vtable.drop_stage)(h) });
    } else {
        header.join.wake();
    }
    release_local(h)
}

/// Drops an unfinished child's future (a hard cancel), then completes it.
///
/// # Safety
/// As [`poll_child`]: the scope owns the running stage.
pub(crate) unsafe fn cancel_child(h: NonNull<Header>) {
    // SAFETY: forwarded: the stage is ours while the child is not complete.
    let _ = catch(|| unsafe { (h.as_ref().vtable.drop_stage)(h) });
    if let Release::Freed(chunk) = complete(h) {
        // SAFETY: the freed cell's count on the chunk is ours.
        unsafe { chunk_release(chunk, 1) };
    }
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

/// The handle is dropped (or took the output). Before `COMPLETE`: sets `HANDLE_GONE` and drops
/// the handle's reference in one compare-and-swap (the scope drops the output). After: drops the
/// output, then the reference.
pub(crate) fn drop_handle(h: NonNull<Header>) {
    // SAFETY: the handle holds a reference.
    let header = unsafe { h.as_ref() };
    // SAFETY: the cell's chunk keeps the shared block alive.
    if on_poller(unsafe { &*header.shared }) {
        // SAFETY: inside the scope's poll, on its thread: `polled` is the scope's field, and the
        // scope's code is not using it (it is running user code that dropped this handle).
        if !unsafe { links(h) }.polled {
            // Never polled: no waker of it exists, and every other party that can change the
            // state word (the scope: completion, its cancel wake-up) runs on this thread and is
            // not running now. Nothing can race: plain load and store.
            let cur = header.state.load(Relaxed);
            debug_assert!(cur & COMPLETE == 0 && refs(cur) >= 2);
            header.state.store(cur - REF_ONE + HANDLE_GONE, Relaxed);
            return;
        }
    }
    let mut cur = header.state.load(Acquire);
    while cur & COMPLETE == 0 {
        // The slab's reference outlives this one until `COMPLETE`, so ours is not the last.
        debug_assert!(refs(cur) >= 2);
        match header.state.compare_exchange_weak(cur, cur - REF_ONE + HANDLE_GONE, AcqRel, Acquire) {
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
    // SAFETY: complete and we are the handle: the stage is ours.
    let _ = catch(|| unsafe { (header.vtable.drop_stage)(h) });
    release(h);
}

/// Takes the `QUEUED` bit off before a poll; returns whether the child is already complete.
pub(crate) fn unqueue(h: NonNull<Header>) -> bool {
    // SAFETY: the caller holds the stack's reference.
    let prev = unsafe { h.as_ref() }.state.fetch_and(!QUEUED, AcqRel);
    prev & COMPLETE != 0
}

/// Wakes a child as its waker would: unless it is queued or complete, queues it, taking a
/// reference for the stack in the same atomic operation.
pub(crate) fn wake(h: NonNull<Header>) {
    // SAFETY: the caller holds a reference.
    let header = unsafe { h.as_ref() };
    let mut cur = header.state.load(Acquire);
    loop {
        if cur & (QUEUED | COMPLETE) != 0 {
            return;
        }
        match header.state.compare_exchange_weak(cur, (cur | QUEUED) + REF_ONE, AcqRel, Acquire) {
            Ok(_) => break,
            Err(actual) => cur = actual,
        }
    }
    // SAFETY: the cell's chunk keeps the shared block alive.
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
    unsafe { &*(p as *const Header) }.state.fetch_add(REF_ONE, Relaxed);
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
