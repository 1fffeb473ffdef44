//! The provided-buffer ring (`IORING_REGISTER_PBUF_RING`) behind a reactor's [`BufPool`].
//!
//! One per io_uring reactor, created on first use ([`Reactor::buf_pool`]): a ring of
//! [`POOL_BUFS`](crate::driver::pool::POOL_BUFS) entries in page-aligned anonymous memory, registered
//! as buffer group [`BGID`]. Each entry names one buffer of the pool's memory. A `RECV` with
//! `IOSQE_BUFFER_SELECT` (single-shot or multishot) takes the entry at the ring's head when data
//! arrives, writes into that buffer, and reports the buffer id in its CQE
//! (`IORING_CQE_F_BUFFER`). Userspace gives a buffer back by writing an entry at the tail and
//! publishing the new tail with a release store (the kernel reads it with an acquire load).
//!
//! # Why the memory is never used by the kernel and userspace at once, nor freed under it
//!
//! - **A buffer belongs to exactly one side at a time.** It is in the ring (the kernel's) from
//!   the moment its entry is published at the tail until a CQE names it; then it is a
//!   [`PooledBuf`](crate::net::PooledBuf) (userspace's), and only that `PooledBuf`'s drop writes
//!   it back into the ring. The kernel writes a buffer only between taking its entry and posting
//!   the CQE, so userspace reads a buffer only after the kernel is done with it, and the kernel
//!   never gets a buffer userspace still reads.
//! - **At most [`POOL_BUFS`](crate::driver::pool::POOL_BUFS) entries are ever outstanding**, the
//!   ring's size: each buffer id is published once per trip, so the tail never laps the head and
//!   an entry is never overwritten while the kernel may still read it.
//! - **The buffers and the ring outlive every request that can pick from them.** Every sink op
//!   that selects from the group holds an `Arc` of the pool in its slab slot until its final CQE
//!   (a multishot recv may pick buffers until then); the reactor holds one until its teardown,
//!   and every `PooledBuf` holds one. The memory is unmapped only when the last `Arc` goes: no
//!   request can pick from the group any more (none is in flight, and a new one needs an `Arc`).
//!   If teardown cannot reap every request before its deadline, the slots' resources — these
//!   `Arc`s included — are leaked, so the memory is never freed under the kernel.
//! - **The ring is unregistered before its memory is freed.** Reactor teardown, once every
//!   request completed, unregisters the group ([`Reactor::release_buf_pool`]); when it cannot
//!   (it runs on a thread that may not touch a single-issuer ring), the ring fd is closed right
//!   after, which drops the registration with nothing in flight that could use it.

use std::sync::{Arc, Mutex};

use io_uring::types::BufRingEntry;
use spindle_core::loom::unmodelled::{AtomicBool, AtomicU16, Ordering::*};

use super::{lock, Reactor};
use crate::driver::pool::{BufPool, Region};

/// The buffer group id of a reactor's pool (one pool per ring).
pub(crate) const BGID: u16 = 0x5350;

/// The ring of provided-buffer entries (see the module docs).
pub(crate) struct BufRing {
    mem: Region,
    entries: u16,
    /// Our copy of the tail (the kernel only reads the published one). The lock serializes
    /// threads giving buffers back: any thread may drop a `PooledBuf`.
    tail: Mutex<u16>,
    /// Still registered with the ring (teardown clears it once unregistered).
    registered: AtomicBool,
}

impl BufRing {
    /// Maps a ring of `entries` (a power of two) entries.
    fn new(entries: u16) -> std::io::Result<BufRing> {
        debug_assert!(entries.is_power_of_two());
        let len = entries as usize * std::mem::size_of::<BufRingEntry>();
        // Page-aligned (mmap), as IORING_REGISTER_PBUF_RING requires.
        let mem = Region::new(len)?;
        Ok(BufRing { mem, entries, tail: Mutex::new(0), registered: AtomicBool::new(false) })
    }

    fn base(&self) -> *mut BufRingEntry {
        self.mem.ptr().cast()
    }

    /// Publishes buffer `bid` (at `addr`, `len` bytes) for the kernel to pick.
    ///
    /// # Safety
    ///
    /// `addr..addr+len` is memory the kernel may write until a CQE names `bid`, and nobody else
    /// uses it until then; `bid` is not in the ring already (see the module docs).
    pub(crate) unsafe fn push(&self, bid: u16, addr: *mut u8, len: u32) {
        let mut tail = lock(&self.tail);
        let slot = (*tail & (self.entries - 1)) as usize;
        // SAFETY: `slot < entries`, inside the mapping. The kernel does not read this entry now:
        // at most `entries` buffers are outstanding, so the slot at the tail is not between the
        // kernel's head and the published tail. Each field is written on its own because entry
        // 0's last field is the shared tail, which only the atomic store below writes.
        unsafe {
            let e = self.base().add(slot);
            (*e).set_addr(addr as u64);
            (*e).set_len(len);
            (*e).set_bid(bid);
        }
        *tail = tail.wrapping_add(1);
        // SAFETY: the tail is a naturally aligned u16 inside the mapping (entry 0's `resv`), which
        // the kernel reads atomically; we only ever access it through this atomic view.
        let published = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(self.base()).cast_mut()) };
        // Release: the entry written above is visible before the kernel sees the new tail.
        published.store(*tail, Release);
    }
}

/// A reactor's pool slot: not created yet, created, or unavailable on this kernel.
#[derive(Default)]
pub(crate) struct PoolSlot(Mutex<SlotState>);

#[derive(Default)]
enum SlotState {
    #[default]
    Untried,
    Ready(Arc<BufPool>),
    Unsupported,
}

impl Reactor {
    /// This ring's buffer pool, registered on first use; `None` when the kernel cannot provide
    /// buffers from a ring (before 5.19) or the caller may not register on this ring now (a
    /// single-issuer ring driven by another thread): callers then use readiness and a userspace
    /// pool.
    pub(crate) fn buf_pool(&self) -> Option<Arc<BufPool>> {
        let mut slot = lock(&self.bufs.0);
        match &*slot {
            SlotState::Ready(p) => return Some(p.clone()),
            SlotState::Unsupported => return None,
            SlotState::Untried => {}
        }
        // A single-issuer ring accepts registrations only from its owner (EEXIST otherwise), and
        // one not enabled yet has no owner: register from the owner thread only, and let other
        // threads use readiness meanwhile (nothing is cached, so the owner registers later).
        if self.pinned && !self.on_waiter_thread() {
            return None;
        }
        match self.register_pool() {
            Ok(p) => {
                *slot = SlotState::Ready(p.clone());
                Some(p)
            }
            Err(e) => {
                if std::env::var_os("SPINDLE_DRIVER_DEBUG").is_some() {
                    eprintln!("spindle: no provided-buffer ring ({e}); pooled receives use readiness");
                }
                if e.raw_os_error() != Some(libc::EEXIST) {
                    *slot = SlotState::Unsupported;
                }
                None
            }
        }
    }

    fn register_pool(&self) -> std::io::Result<Arc<BufPool>> {
        let ring = BufRing::new(crate::driver::pool::POOL_BUFS)?;
        let addr = ring.base() as u64;
        let entries = ring.entries;
        // Fills the ring with every buffer before the kernel can see it.
        let pool = BufPool::with_ring(ring)?;
        let ring = pool.ring().expect("a ring-backed pool");
        // SAFETY: the ring memory is a live, page-aligned mapping of `entries` entries, owned by
        // `pool`, which stays alive (reactor slot, in-flight ops, PooledBufs) until after this
        // group is unregistered or the ring is closed (see the module docs).
        unsafe { self.ring.submitter().register_buf_ring_with_flags(addr, entries, BGID, 0) }?;
        ring.registered.store(true, Release);
        Ok(pool)
    }

    /// Teardown: unregisters the pool's ring once nothing is in flight (`clean`), and drops the
    /// reactor's reference. When requests are still in flight their slots (and so the pool) are
    /// leaked by the caller, so the memory stays valid.
    pub(super) fn release_buf_pool(&self, clean: bool) {
        let state = std::mem::take(&mut *lock(&self.bufs.0));
        if let SlotState::Ready(pool) = state {
            if clean {
                if let Some(ring) = pool.ring() {
                    if ring.registered.swap(false, AcqRel) {
                        // Failure (another thread than a single issuer's owner) is harmless here:
                        // nothing is in flight, and the ring fd closes right after.
                        let _ = self.ring.submitter().unregister_buf_ring(BGID);
                    }
                }
            } else {
                std::mem::forget(pool);
            }
        }
    }
}
