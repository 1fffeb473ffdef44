//! Per-branch wakers for a fixed set of branches, so a combinator holding many futures polls only
//! the ones that were woken (O(woken) per poll, not O(branches)).
//!
//! One allocation holds the parent's waker slot, a lock-free stack of ready branch indices and one
//! [`Slot`] per branch; branch `i`'s waker points at `slots[i]` and counts a reference on the whole
//! allocation.
//!
//! # Slot state
//!
//! A slot's `queued` flag is [`QUEUED`] while the index is in the ready stack (or about to be
//! pushed): a wake that finds it set does nothing, so an index is in the stack at most once. The
//! consumer clears it with a swap (acquire) before polling the branch, so a wake during the poll
//! queues the branch again and the poll sees everything that happened before that wake.
//!
//! The stack is a Treiber stack of indices that is only ever pushed to and emptied whole
//! (`swap(EMPTY)`), so it has no ABA problem.
//!
//! Only a push onto an empty stack wakes the parent: a push onto a non-empty one lands behind a
//! push since the consumer's last `swap`, whose wake (done or about to be) makes the parent poll
//! and drain both. A burst of wakes costs one parent wake, not one each.
//!
//! The consumer reverses each chain it takes into oldest-first order in place (through the
//! slots' `next` links, which nobody else writes while the flags are set) and keeps the branches
//! it has not served yet as such a chain (`backlog`), so draining copies nothing.
//!
//! Branch wakers are not stored: the consumer lends each branch a waker built on the spot that
//! owns no count (the set's own reference keeps the block alive while it lends); clones of it
//! count a reference each, as usual.

use crate::sync::Shared as Arc;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::task::{RawWaker, RawWakerVTable, Waker};

use crate::loom::{AtomicBool, AtomicU32, Ordering::*};
use crate::sync::atomic_waker::AtomicWaker;

/// The index is in (or being pushed onto) the ready stack.
const QUEUED: bool = true;
/// The stack's empty marker and the end of a chain.
const EMPTY: u32 = u32::MAX;

struct Slot {
    /// Back pointer to the shared block (the waker's reference counts on it).
    shared: *const Shared,
    index: u32,
    queued: AtomicBool,
    /// Next index in the ready stack, written by the pusher before it publishes the slot.
    next: AtomicU32,
}

struct Shared {
    parent: AtomicWaker,
    head: AtomicU32,
    slots: Vec<Slot>,
}

// SAFETY: the raw back pointers only ever point at the `Shared` that owns the slot, which is
// kept alive by the `Arc` counts the wakers hold; everything else is atomic.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// The wakers of `n` branches and the queue of woken ones.
pub(crate) struct WakeSet {
    shared: Arc<Shared>,
    /// Branches taken off the stack but not served yet (their flags stay set), oldest first: a
    /// chain through the slots' `next` links, first and last index (`EMPTY` when none).
    backlog: (u32, u32),
}

impl WakeSet {
    /// `n` branches, all initially woken (so the first poll polls each once), served starting
    /// at branch `first` and wrapping around.
    pub(crate) fn new_from(n: usize, first: usize) -> WakeSet {
        assert!(n < EMPTY as usize, "spindle: too many branches");
        let mut shared = {
            let slots = (0..n)
                .map(|i| Slot {
                    // Set below, once the block has its final address.
                    shared: core::ptr::null(),
                    index: i as u32,
                    queued: AtomicBool::new(QUEUED),
                    // Every branch starts queued. The stack is served bottom-first, so `first`
                    // sits at the bottom and each later branch on top of the one before it.
                    next: AtomicU32::new(if i == first { EMPTY } else { ((i + n - 1) % n) as u32 }),
                })
                .collect();
            let head = if n > 0 { ((first + n - 1) % n) as u32 } else { EMPTY };
            Arc::new(Shared { parent: AtomicWaker::new(), head: AtomicU32::new(head), slots })
        };
        let p = Arc::as_ptr(&shared);
        for slot in &mut Arc::get_mut(&mut shared).expect("just made: no other reference").slots {
            slot.shared = p;
        }
        WakeSet { shared, backlog: (EMPTY, EMPTY) }
    }

    /// Records the parent's waker: branch wakes wake it.
    #[inline]
    pub(crate) fn register(&self, waker: &Waker) {
        self.shared.parent.register(waker);
    }

    /// Marks every branch woken (used when the current token is cancelled, so that every leaf
    /// future gets polled and can observe it).
    pub(crate) fn wake_all(&self) {
        for slot in &self.shared.slots {
            wake_slot(slot);
        }
    }

    /// Takes the woken branches, calling `f(i, waker_i)` for each (earliest wake first). Each
    /// branch's flag is cleared just before `f` runs, so a wake during `f` queues it again, behind
    /// the branches already queued. Stops early when `f` returns `false`; the branches not served
    /// yet stay first in line for the next drain.
    pub(crate) fn drain(&mut self, mut f: impl FnMut(usize, &Waker) -> bool) {
        let slots = &self.shared.slots;
        let mut top = self.shared.head.swap(EMPTY, Acquire);
        if top != EMPTY {
            // The stack is newest-first: reverse it in place (its slots are flagged, so their
            // links are ours) and append it to the backlog.
            let last = top;
            let mut chain = EMPTY;
            while top != EMPTY {
                let slot = &slots[top as usize];
                let below = slot.next.load(Relaxed);
                slot.next.store(chain, Relaxed);
                chain = top;
                top = below;
            }
            match self.backlog {
                (EMPTY, _) => self.backlog = (chain, last),
                (_, tail) => {
                    slots[tail as usize].next.store(chain, Relaxed);
                    self.backlog.1 = last;
                }
            }
        }
        while self.backlog.0 != EMPTY {
            let i = self.backlog.0;
            let slot = &slots[i as usize];
            // Read the link before clearing the flag: from then on a wake may push the slot
            // again and rewrite it.
            self.backlog.0 = slot.next.load(Relaxed);
            if self.backlog.0 == EMPTY {
                self.backlog.1 = EMPTY;
            }
            slot.queued.swap(false, AcqRel);
            // SAFETY: the vtable's contract holds: `slot` lives inside `shared`, which our own
            // reference keeps alive while the waker is lent; the waker owns no count and is
            // never dropped (`ManuallyDrop`), only cloned (which counts one).
            let waker =
                ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(slot as *const Slot as *const (), &VTABLE)) });
            if !f(i as usize, &waker) {
                return;
            }
        }
    }
}

/// Pushes a slot whose `queued` flag the caller set; returns whether the stack was empty.
fn push(shared: &Shared, slot: &Slot) -> bool {
    let mut head = shared.head.load(Relaxed);
    loop {
        slot.next.store(head, Relaxed);
        match shared.head.compare_exchange_weak(head, slot.index, Release, Relaxed) {
            Ok(_) => return head == EMPTY,
            Err(h) => head = h,
        }
    }
}

fn wake_slot(slot: &Slot) {
    if slot.queued.swap(QUEUED, AcqRel) == QUEUED {
        return;
    }
    // SAFETY: the waker (or the set lending it) holds a count on `shared`.
    let shared = unsafe { &*slot.shared };
    // Onto a non-empty stack: the push that made it non-empty wakes the parent (module docs).
    if push(shared, slot) {
        shared.parent.wake();
    }
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_by_ref_raw, drop_raw);

unsafe fn clone_raw(p: *const ()) -> RawWaker {
    // SAFETY: `p` is a slot inside a live `Shared` (the caller's waker holds a count).
    let slot = unsafe { &*(p as *const Slot) };
    // SAFETY: `slot.shared` came from an `Arc<Shared>` that is alive; the new waker owns the count.
    unsafe { Arc::increment_strong_count(slot.shared) };
    RawWaker::new(p, &VTABLE)
}

unsafe fn wake_raw(p: *const ()) {
    // SAFETY: forwarded: the waker is live until we drop it just after.
    unsafe {
        wake_by_ref_raw(p);
        drop_raw(p);
    }
}

unsafe fn wake_by_ref_raw(p: *const ()) {
    // SAFETY: a live waker's slot.
    wake_slot(unsafe { &*(p as *const Slot) });
}

unsafe fn drop_raw(p: *const ()) {
    // SAFETY: a live waker's slot; we release the count this waker owned.
    unsafe {
        let slot = &*(p as *const Slot);
        Arc::decrement_strong_count(slot.shared);
    }
}
