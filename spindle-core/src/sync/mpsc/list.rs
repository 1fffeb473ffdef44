//! The message queue under `mpsc`: a linked list of fixed-size blocks. Senders never lock.
//!
//! A sender claims a slot index with one `fetch_add` on `tail_position`, walks from `block_tail`
//! to the block holding that index (appending blocks when it runs past the end), writes the value
//! and sets the slot's own `ready` flag with a plain `Release` store (no read-modify-write: each
//! slot has one writer). The receiver reads slots in index order, each once its flag is set
//! (`Acquire`), so messages come out in the order their slots were claimed.
//!
//! Closing: when the last sender goes away it claims one more index and sets `TX_CLOSED` in that
//! block's `flags`; a receiver that finds its next slot empty, then `TX_CLOSED` set, then the slot
//! still empty, has read everything (every send happened before the close, so seeing the close
//! means seeing every earlier slot's flag).
//!
//! # Freeing and reusing blocks
//!
//! A sender that walks past a block whose slots are all written may advance `block_tail` past it;
//! it then records `observed_tail_position` (the tail index right after the advance) and sets
//! `RELEASED` in `flags`. Every sender that could still hold a pointer into that block claimed its index
//! before reading the old `block_tail`, so its index is below `observed_tail_position`. Once the
//! receiver has read past that position, all those senders have finished writing, nobody else can
//! reach the block, and the receiver owns it: it resets it and tries (three times) to append it
//! at the tail for reuse, or frees it.
//!
//! This is tokio's block-list design with per-slot flags instead of a shared ready bitmap; the
//! loom models in `tests/loom_sync_channels.rs` check it.

use alloc::boxed::Box;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};

use crate::loom::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*, UnsafeCell};

/// Slots per block.
#[cfg(not(loom))]
pub(crate) const BLOCK_CAP: usize = 32;
/// Tiny blocks under loom, so a handful of messages crosses block boundaries and exercises
/// growth, release and reuse.
#[cfg(loom)]
pub(crate) const BLOCK_CAP: usize = 2;

/// Mask of the slot offset within a block, in an index.
const SLOT_MASK: usize = BLOCK_CAP - 1;
/// Mask of a block's start index, in an index.
const BLOCK_MASK: usize = !SLOT_MASK;
/// `flags` bit: the block left the tail; `observed_tail_position` is valid.
const RELEASED: usize = 1 << 0;
/// `flags` bit: the senders are all gone; the closing index is in this block.
const TX_CLOSED: usize = 1 << 1;

/// What the receiver found at its next index.
pub(crate) enum Read<T> {
    /// A message.
    Value(T),
    /// Every sender is gone and every message was read.
    Closed,
}

struct Block<T> {
    /// The index of slot 0. Written only while the block is private (new or being reused).
    start_index: UnsafeCell<usize>,
    next: AtomicPtr<Block<T>>,
    /// `RELEASED` and `TX_CLOSED`.
    flags: AtomicUsize,
    /// Tail index observed when the block was released (valid once `RELEASED` is set).
    observed_tail_position: UnsafeCell<usize>,
    slots: [Slot<T>; BLOCK_CAP],
}

/// One message slot: the value, and the flag its single writer sets once the value is in.
struct Slot<T> {
    value: UnsafeCell<MaybeUninit<T>>,
    ready: AtomicBool,
}

impl<T> Block<T> {
    fn new(start_index: usize) -> Box<Block<T>> {
        Box::new(Block {
            start_index: UnsafeCell::new(start_index),
            next: AtomicPtr::new(ptr::null_mut()),
            flags: AtomicUsize::new(0),
            observed_tail_position: UnsafeCell::new(0),
            slots: core::array::from_fn(|_| Slot {
                value: UnsafeCell::new(MaybeUninit::uninit()),
                ready: AtomicBool::new(false),
            }),
        })
    }

    fn start_index(&self) -> usize {
        // SAFETY: written only while the block is unreachable by others; published by the
        // release/acquire that made it reachable.
        self.start_index.with(|p| unsafe { *p })
    }

    fn is_at_index(&self, index: usize) -> bool {
        self.start_index() == index & BLOCK_MASK
    }

    /// How many blocks ahead of this one the block starting at `other_index` is.
    fn distance(&self, other_index: usize) -> usize {
        (other_index & BLOCK_MASK).wrapping_sub(self.start_index()) / BLOCK_CAP
    }

    /// Whether every slot was written.
    fn is_final(&self) -> bool {
        self.slots.iter().all(|slot| slot.ready.load(Acquire))
    }

    /// Writes the value for `index` and publishes it.
    ///
    /// # Safety
    /// The caller claimed `index` (it is in this block) and writes it once.
    unsafe fn write(&self, index: usize, value: T) {
        let slot = &self.slots[index & SLOT_MASK];
        // SAFETY: the slot was claimed by us alone and the receiver reads it only after its flag.
        slot.value.with_mut(|p| unsafe { (*p).write(value) });
        slot.ready.store(true, Release);
    }

    /// Reads the value at `index` if it was written, or reports the close.
    ///
    /// # Safety
    /// Only the receiver calls this, once per written index.
    unsafe fn read(&self, index: usize) -> Option<Read<T>> {
        let slot = &self.slots[index & SLOT_MASK];
        if !slot.ready.load(Acquire) {
            if self.flags.load(Acquire) & TX_CLOSED == 0 {
                return None;
            }
            // The close happened after every send, and we synchronised with it: if the slot had
            // been written we would see it now. Still empty means this is the closing index.
            if !slot.ready.load(Acquire) {
                return Some(Read::Closed);
            }
        }
        // SAFETY: the flag (read with `Acquire`) says the value was written; we read it once.
        Some(Read::Value(slot.value.with(|p| unsafe { (*p).assume_init_read() })))
    }

    fn tx_close(&self) {
        self.flags.fetch_or(TX_CLOSED, Release);
    }

    /// Marks the block as left behind by the tail at `tail_position`.
    ///
    /// # Safety
    /// Called once per block lifetime, by the sender whose CAS moved `block_tail` past it.
    unsafe fn tx_release(&self, tail_position: usize) {
        // SAFETY: only the releasing sender writes it, before `RELEASED` publishes it.
        self.observed_tail_position.with_mut(|p| unsafe { *p = tail_position });
        self.flags.fetch_or(RELEASED, Release);
    }

    /// The tail position observed at release, if the block was released.
    fn observed_tail_position(&self) -> Option<usize> {
        if self.flags.load(Acquire) & RELEASED == 0 {
            None
        } else {
            // SAFETY: published by `RELEASED` (read with `Acquire`), never written again.
            Some(self.observed_tail_position.with(|p| unsafe { *p }))
        }
    }

    fn load_next(&self, order: crate::loom::Ordering) -> Option<NonNull<Block<T>>> {
        NonNull::new(self.next.load(order))
    }

    /// Appends `block` after `self` if `self` is the last block; otherwise returns the next one.
    ///
    /// # Safety
    /// `block` is private to the caller.
    unsafe fn try_push(&self, block: NonNull<Block<T>>) -> Result<(), NonNull<Block<T>>> {
        // SAFETY: private until the CAS below publishes it (`Release`).
        unsafe { block.as_ref() }.start_index.with_mut(|p| unsafe { *p = self.start_index().wrapping_add(BLOCK_CAP) });
        match self.next.compare_exchange(ptr::null_mut(), block.as_ptr(), AcqRel, Acquire) {
            Ok(_) => Ok(()),
            // SAFETY: a non-null `next` is a live block.
            Err(next) => Err(unsafe { NonNull::new_unchecked(next) }),
        }
    }

    /// Appends a new block after `self` (or finds the one another sender appended) and returns
    /// the block right after `self`.
    fn grow(&self) -> NonNull<Block<T>> {
        let new = NonNull::from(Box::leak(Block::new(self.start_index().wrapping_add(BLOCK_CAP))));
        // SAFETY: `new` is private.
        let next = match unsafe { self.try_push(new) } {
            Ok(()) => return new,
            Err(next) => next,
        };
        // Someone else appended first. Keep our allocation anyway: append it further down.
        let mut curr = next;
        loop {
            // SAFETY: `curr` is a live block (reached through `next` links); `new` is private.
            match unsafe { curr.as_ref().try_push(new) } {
                Ok(()) => return next,
                Err(n) => curr = n,
            }
            crate::loom::spin_loop();
        }
    }

    /// Resets a block the receiver owns again, for reuse.
    fn reclaim(&mut self) {
        self.start_index.with_mut(|p| {
            // SAFETY: `&mut self`.
            unsafe { *p = 0 }
        });
        self.next.store(ptr::null_mut(), Relaxed);
        self.flags.store(0, Relaxed);
        for slot in &self.slots {
            slot.ready.store(false, Relaxed);
        }
    }
}

/// The senders' end.
pub(crate) struct Tx<T> {
    block_tail: AtomicPtr<Block<T>>,
    tail_position: AtomicUsize,
}

/// The receiver's end (owned by the receiver, inside the channel's receiver-only cell).
pub(crate) struct Rx<T> {
    /// The block holding `index`.
    head: NonNull<Block<T>>,
    /// The next index to read.
    index: usize,
    /// The oldest block not yet reclaimed.
    free_head: NonNull<Block<T>>,
}

// SAFETY: the queue moves `T`s between threads; its raw pointers are owned as described above.
unsafe impl<T: Send> Send for Tx<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Tx<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Rx<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Rx<T> {}

/// A new empty queue.
pub(crate) fn channel<T>() -> (Tx<T>, Rx<T>) {
    let first = NonNull::from(Box::leak(Block::<T>::new(0)));
    (
        Tx { block_tail: AtomicPtr::new(first.as_ptr()), tail_position: AtomicUsize::new(0) },
        Rx { head: first, index: 0, free_head: first },
    )
}

impl<T> Tx<T> {
    /// Appends a message.
    pub(crate) fn push(&self, value: T) {
        let index = self.tail_position.fetch_add(1, Acquire);
        let block = self.find_block(index);
        // SAFETY: `index` is ours and lies in `block`.
        unsafe { block.as_ref().write(index, value) };
    }

    /// Marks the end of the messages (the last sender is gone).
    pub(crate) fn close(&self) {
        let index = self.tail_position.fetch_add(1, Acquire);
        let block = self.find_block(index);
        // SAFETY: blocks reached through the list are live until the receiver reclaims them,
        // which it cannot do before reading past `index`.
        unsafe { block.as_ref().tx_close() };
    }

    /// Messages claimed so far (plus one if closed).
    pub(crate) fn tail_position(&self) -> usize {
        self.tail_position.load(Acquire)
    }

    fn find_block(&self, index: usize) -> NonNull<Block<T>> {
        let start_index = index & BLOCK_MASK;
        let offset = index & SLOT_MASK;
        let mut block_ptr = self.block_tail.load(Acquire);
        // SAFETY: `block_tail` always points to a live block.
        let block = unsafe { &*block_ptr };
        // Only a sender far enough ahead tries to move the tail, so a sender whose block is the
        // tail (the common case) does no extra work.
        let mut try_updating_tail = block.distance(start_index) > offset;
        loop {
            // SAFETY: reached from `block_tail` through `next` links: live (see module docs).
            let block = unsafe { &*block_ptr };
            if block.is_at_index(start_index) {
                // SAFETY: non-null.
                return unsafe { NonNull::new_unchecked(block_ptr) };
            }
            let next = block.load_next(Acquire).unwrap_or_else(|| block.grow());
            try_updating_tail &= block.is_final();
            if try_updating_tail {
                match self.block_tail.compare_exchange(block_ptr, next.as_ptr(), Release, Relaxed) {
                    Ok(_) => {
                        // `fetch_add(0)` rather than a load: it must read the latest position.
                        let tail_position = self.tail_position.fetch_add(0, Release);
                        // SAFETY: our CAS moved the tail past `block`: we release it, once.
                        unsafe { block.tx_release(tail_position) };
                    }
                    Err(_) => try_updating_tail = false,
                }
            }
            block_ptr = next.as_ptr();
            #[cfg(loom)]
            crate::loom::spin_loop();
        }
    }

    /// Appends a block the receiver reclaimed, or frees it.
    ///
    /// # Safety
    /// `block` was unlinked and is owned by the caller (the receiver).
    unsafe fn reclaim_block(&self, mut block: NonNull<Block<T>>) {
        // SAFETY: owned by the caller.
        unsafe { block.as_mut() }.reclaim();
        // SAFETY: `block_tail` is never reclaimed (it is not released), so it is live.
        let mut curr = unsafe { NonNull::new_unchecked(self.block_tail.load(Acquire)) };
        for _ in 0..3 {
            // SAFETY: `curr` is live (the tail or reached from it); `block` is private.
            match unsafe { curr.as_ref().try_push(block) } {
                Ok(()) => return,
                Err(next) => curr = next,
            }
        }
        // SAFETY: allocated by `Block::new` through `Box`; nobody else can reach it.
        drop(unsafe { Box::from_raw(block.as_ptr()) });
    }
}

impl<T> Rx<T> {
    /// Pops the next message, or reports the close, or `None` if the next message is not there
    /// (yet).
    pub(crate) fn pop(&mut self, tx: &Tx<T>) -> Option<Read<T>> {
        if !self.try_advancing_head() {
            return None;
        }
        self.reclaim_blocks(tx);
        // SAFETY: `head` is live (owned by the list) and holds `index`; only we read it.
        let read = unsafe { self.head.as_ref().read(self.index) };
        if let Some(Read::Value(_)) = read {
            self.index = self.index.wrapping_add(1);
        }
        read
    }

    /// Whether a sender has claimed the next index to read: its message (or the close) is on its
    /// way even when [`pop`](Self::pop) found nothing, because that sender is between claiming
    /// the index and setting the slot's flag.
    pub(crate) fn next_is_claimed(&self, tx: &Tx<T>) -> bool {
        tx.tail_position() != self.index
    }

    /// The next index to read.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    fn try_advancing_head(&mut self) -> bool {
        let start_index = self.index & BLOCK_MASK;
        loop {
            // SAFETY: `head` is live.
            let head = unsafe { self.head.as_ref() };
            if head.is_at_index(start_index) {
                return true;
            }
            match head.load_next(Acquire) {
                Some(next) => self.head = next,
                None => return false,
            }
            #[cfg(loom)]
            crate::loom::spin_loop();
        }
    }

    fn reclaim_blocks(&mut self, tx: &Tx<T>) {
        while self.free_head != self.head {
            // SAFETY: blocks between `free_head` and `head` are live and fully read.
            let block = unsafe { self.free_head.as_ref() };
            let Some(observed) = block.observed_tail_position() else { return };
            if observed > self.index {
                return;
            }
            // A released block has a successor (the tail moved past it).
            let next = block.load_next(Relaxed).expect("spindle: released mpsc block without a successor");
            let reclaimed = self.free_head;
            self.free_head = next;
            // SAFETY: every sender that could reach the block has finished (module docs).
            unsafe { tx.reclaim_block(reclaimed) };
        }
    }

    /// Frees every block (values must have been popped already). Called once, when the channel
    /// is dropped.
    ///
    /// # Safety
    /// No sender or receiver uses the queue any more.
    pub(crate) unsafe fn free_blocks(&mut self) {
        let mut cur = Some(self.free_head);
        while let Some(b) = cur {
            // SAFETY: we own every block now; each was allocated with `Box`.
            let block = unsafe { Box::from_raw(b.as_ptr()) };
            cur = block.load_next(Relaxed);
            drop(block);
        }
    }
}
