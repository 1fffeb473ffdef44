//! Sink ops: io_uring requests whose completions go to a long-lived receiver instead of a
//! future.
//!
//! An [`super::op::Op`] belongs to one future and completes once. A *sink op* belongs to a
//! [`CqeSink`] (a per-socket queue, in `net::pooled`): every CQE it posts — one for a single-shot
//! request, many for a multishot one (`RecvMulti`, `AcceptMulti`) — is handed to the sink, in
//! order, on the thread that dispatches completions, whether or not anybody waits. The slot keeps
//! the request's resources (`data`: the fd it reads, the buffer pool it picks from) until the
//! final CQE (the one without `IORING_CQE_F_MORE`); only then is it freed. Dropping the waiter
//! therefore never loses a completion: what the kernel produced stays in the sink for the next
//! waiter. [`Reactor::cancel_sink`] asks the kernel to end the request; its final CQE still comes
//! (usually `-ECANCELED`), and completions posted before it still reach the sink.

use std::any::Any;
use std::sync::Arc;

use io_uring::squeue;
use spindle_core::loom::unmodelled::Ordering::Acquire;

use super::{slot_key, Reactor, State};

/// Receives every CQE of a sink op. Called on the dispatching thread, outside the slab lock, in
/// CQ order; must not block (a short mutex is fine).
pub(crate) trait CqeSink: Send + Sync + 'static {
    /// One completion of the sink op keyed `key` (as returned by [`Reactor::submit_sink`]).
    fn complete(&self, key: u64, result: i32, flags: u32);
}

/// The slab state of a sink op.
pub(super) struct SinkSlot {
    pub(super) sink: Arc<dyn CqeSink>,
    /// What the kernel may use until the final CQE (dropped, outside the slab lock, after it).
    pub(super) data: Option<Box<dyn Any + Send>>,
}

impl Reactor {
    /// Queues a sink op: `data` moves into a new slot, `sqe` is pushed with the slot's key, and
    /// every CQE of the request goes to `sink`. Returns the key (index and generation).
    ///
    /// # Safety
    ///
    /// Every pointer in the SQE must point into `data`'s heap allocation (kept at a fixed address
    /// by the slot until the final CQE) or to memory that outlives the request; an fd in the SQE
    /// must stay open until the final CQE (own it in `data`).
    pub(crate) unsafe fn submit_sink(
        &self,
        data: Box<dyn Any + Send>,
        sqe: squeue::Entry,
        sink: Arc<dyn CqeSink>,
    ) -> u64 {
        let (index, generation) = self.lock_slab().alloc(State::Sink(SinkSlot { sink, data: Some(data) }));
        let key = slot_key(index, generation);
        self.push(&[sqe.user_data(key)]);
        key
    }

    /// Asks the kernel to end a sink op; its final CQE still reaches the sink. Harmless when the
    /// op already completed (the cancel finds nothing).
    pub(crate) fn cancel_sink(&self, key: u64) {
        self.cancel_op(key as u32, (key >> 32) as u32);
    }

    /// Submits what is queued now, when this thread may submit on the ring (any thread on a
    /// shared ring, the owner on a pinned one). Returns whether every entry pushed so far is
    /// known to be in the kernel (the SQ and the hand-over list are empty): from then on the
    /// requests hold their own references to the files they name, so the fd numbers in them may
    /// be closed.
    pub(crate) fn flush_now(&self) -> bool {
        if self.pinned && !self.on_waiter_thread() {
            return false;
        }
        let _ = self.ring.submit();
        let _g = self.lock_slab();
        // SAFETY: we hold the slab lock: the only SubmissionQueue view.
        let sq_empty = unsafe { self.ring.submission_shared() }.is_empty();
        sq_empty && !self.has_pending.load(Acquire)
    }
}
