//! The task state word: lifecycle bits and the reference count, in one atomic.
//!
//! ```text
//!  usize:  [ ref count (bits 6..) | CANCELLED | JOIN_WAKER | JOIN_INTEREST | NOTIFIED | COMPLETE | RUNNING ]
//! ```
//!
//! Who holds a reference: the `JoinHandle` (while it lives), every `Waker`, the run queue entry
//! (a `Notified` task holds one), and the runtime's task registry (from spawn until the task is
//! released at completion or shutdown). The cell is freed when the count reaches zero.
//!
//! Every transition is one compare-and-swap (or fetch-op) and returns a `#[must_use]` enum telling
//! the caller what it now owns and must do.

use crate::loom::{AtomicUsize, Ordering::*};

/// Set while a thread polls the future (or drops it). Owning this bit is owning the future.
pub const RUNNING: usize = 1 << 0;
/// Set once the future finished (or was cancelled) and the output slot holds the result.
pub const COMPLETE: usize = 1 << 1;
/// Set while the task is in a run queue, or while it runs and was woken meanwhile.
pub const NOTIFIED: usize = 1 << 2;
/// Set while a `JoinHandle` exists; without it the output is dropped at completion.
pub const JOIN_INTEREST: usize = 1 << 3;
/// Set when the join waker slot holds a waker the runtime may take. The `JoinHandle` writes the
/// slot only while this bit is clear; the runtime reads it only while it is set.
pub const JOIN_WAKER: usize = 1 << 4;
/// Set by `abort()` or runtime shutdown: the next owner of `RUNNING` drops the future instead of polling.
pub const CANCELLED: usize = 1 << 5;
/// Mask of the lifecycle bits.
pub const LIFECYCLE_MASK: usize = REF_ONE - 1;
/// One reference, in the count held in the high bits.
pub const REF_ONE: usize = 1 << 6;
/// The count a freshly spawned task starts with: registry, run queue entry, `JoinHandle`.
pub const INITIAL: usize = (3 * REF_ONE) | JOIN_INTEREST | NOTIFIED;

/// A copy of the state word with named accessors.
#[derive(Copy, Clone, PartialEq, Eq)]
pub struct Snapshot(pub usize);

impl Snapshot {
    /// Whether a thread owns the future right now.
    pub fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }
    /// Whether the output slot holds the result.
    pub fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    /// Whether the task is queued, or will be re-queued after its current poll.
    pub fn is_notified(self) -> bool {
        self.0 & NOTIFIED != 0
    }
    /// Whether a `JoinHandle` exists.
    pub fn has_join_interest(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }
    /// Whether the join waker slot is handed to the runtime.
    pub fn has_join_waker(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    /// The number of references.
    pub fn ref_count(self) -> usize {
        self.0 / REF_ONE
    }
}

impl core::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("State")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("join_interest", &self.has_join_interest())
            .field("join_waker", &self.has_join_waker())
            .field("cancelled", &self.is_cancelled())
            .field("refs", &self.ref_count())
            .finish()
    }
}

/// Outcome of [`State::transition_to_running`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum ToRunning {
    /// The caller owns the future and must poll it.
    Poll,
    /// The caller owns the future and must drop it (cancel) and complete the task.
    Cancel,
    /// Someone else owns it or it is done; the caller must drop its (queue) reference.
    Failed,
    /// As `Failed`, and the caller held the last reference: it must free the cell.
    Dealloc,
}

/// Outcome of [`State::transition_to_idle`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum ToIdle {
    /// The task waits for a waker; the runner's reference was dropped.
    Idle,
    /// It was woken during the poll: the runner's reference now belongs to a new queue entry.
    Notified,
    /// Cancellation arrived during the poll: the caller still owns the future and must cancel it.
    Cancelled,
}

/// Outcome of a wake.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum ToNotified {
    /// The caller now holds a queue reference and must submit the task to its scheduler.
    Submit,
    /// Nothing to do (already queued, running or complete).
    DoNothing,
    /// Nothing to do and the caller dropped the last reference: it must free the cell.
    Dealloc,
}

/// Outcome of [`State::unset_join_interest`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum UnsetJoinInterest {
    /// Interest cleared (and the join waker slot handed back to the handle, which may drop it);
    /// the runtime will drop the output at completion.
    Unset,
    /// The task already completed: the handle must drop the output itself.
    Complete,
}

/// The atomic state word of a task.
pub struct State(AtomicUsize);

impl State {
    /// State of a task at spawn (see [`INITIAL`]).
    pub fn new() -> State {
        State(AtomicUsize::new(INITIAL))
    }

    /// Reads the state.
    pub fn load(&self) -> Snapshot {
        Snapshot(self.0.load(Acquire))
    }

    fn fetch_update<R>(&self, mut f: impl FnMut(Snapshot) -> (Option<Snapshot>, R)) -> R {
        let mut cur = self.0.load(Acquire);
        loop {
            let (next, r) = f(Snapshot(cur));
            let Some(next) = next else { return r };
            match self.0.compare_exchange_weak(cur, next.0, AcqRel, Acquire) {
                Ok(_) => return r,
                Err(actual) => cur = actual,
            }
        }
    }

    /// A scheduler took a notified task off a queue and wants to run it. Consumes the queue's
    /// reference on `Failed`/`Dealloc`; on `Poll`/`Cancel` the reference stays with the runner.
    pub fn transition_to_running(&self) -> ToRunning {
        self.fetch_update(|s| {
            debug_assert!(s.is_notified());
            if s.is_running() || s.is_complete() {
                let next = Snapshot(s.0 - REF_ONE);
                let r = if next.ref_count() == 0 { ToRunning::Dealloc } else { ToRunning::Failed };
                return (Some(next), r);
            }
            let next = Snapshot((s.0 | RUNNING) & !NOTIFIED);
            let r = if s.is_cancelled() { ToRunning::Cancel } else { ToRunning::Poll };
            (Some(next), r)
        })
    }

    /// The poll returned `Pending`. The runner's reference either moves to a new run queue entry
    /// (`Notified`) or is dropped (`Idle`; never the last one, the registry still holds one).
    pub fn transition_to_idle(&self) -> ToIdle {
        self.fetch_update(|s| {
            debug_assert!(s.is_running());
            if s.is_cancelled() {
                return (None, ToIdle::Cancelled);
            }
            let next = s.0 & !RUNNING;
            if s.is_notified() {
                (Some(Snapshot(next)), ToIdle::Notified)
            } else {
                debug_assert!(s.ref_count() >= 2, "an idle task must stay referenced by its registry");
                (Some(Snapshot(next - REF_ONE)), ToIdle::Idle)
            }
        })
    }

    /// The output has been stored: clear `RUNNING`, set `COMPLETE`. Returns the state before.
    pub fn transition_to_complete(&self) -> Snapshot {
        let prev = Snapshot(self.0.fetch_xor(RUNNING | COMPLETE, AcqRel));
        debug_assert!(prev.is_running() && !prev.is_complete());
        prev
    }

    /// A waker consumed by value fires: its reference goes to the queue or is dropped.
    pub fn transition_to_notified_by_val(&self) -> ToNotified {
        self.fetch_update(|s| {
            if s.is_running() {
                // The runner re-queues it after the poll; our reference is not needed.
                debug_assert!(s.ref_count() > 1);
                (Some(Snapshot((s.0 | NOTIFIED) - REF_ONE)), ToNotified::DoNothing)
            } else if s.is_complete() || s.is_notified() {
                let next = Snapshot(s.0 - REF_ONE);
                let r = if next.ref_count() == 0 { ToNotified::Dealloc } else { ToNotified::DoNothing };
                (Some(next), r)
            } else {
                (Some(Snapshot(s.0 | NOTIFIED)), ToNotified::Submit)
            }
        })
    }

    /// A waker fires by reference: on `Submit` a new reference was added for the queue.
    pub fn transition_to_notified_by_ref(&self) -> ToNotified {
        self.fetch_update(|s| {
            if s.is_complete() || s.is_notified() {
                (None, ToNotified::DoNothing)
            } else if s.is_running() {
                (Some(Snapshot(s.0 | NOTIFIED)), ToNotified::DoNothing)
            } else {
                (Some(Snapshot((s.0 | NOTIFIED) + REF_ONE)), ToNotified::Submit)
            }
        })
    }

    /// `abort()`: mark cancelled; if the task is idle, queue it (adding a reference) so a worker
    /// drops the future on its own thread.
    pub fn transition_to_notified_and_cancel(&self) -> ToNotified {
        self.fetch_update(|s| {
            if s.is_cancelled() || s.is_complete() {
                (None, ToNotified::DoNothing)
            } else if s.is_running() || s.is_notified() {
                // The runner (or the queue entry) will see CANCELLED.
                (Some(Snapshot(s.0 | CANCELLED | NOTIFIED)), ToNotified::DoNothing)
            } else {
                (Some(Snapshot((s.0 | CANCELLED | NOTIFIED) + REF_ONE)), ToNotified::Submit)
            }
        })
    }

    /// Runtime shutdown: mark cancelled and, if nobody runs the task, take `RUNNING` so the
    /// caller can drop the future. Returns whether the caller now owns the future.
    pub fn transition_to_shutdown(&self) -> bool {
        self.fetch_update(|s| {
            if s.is_running() || s.is_complete() {
                (Some(Snapshot(s.0 | CANCELLED)), false)
            } else {
                (Some(Snapshot(s.0 | CANCELLED | RUNNING)), true)
            }
        })
    }

    /// Adds a reference.
    pub fn ref_inc(&self) {
        let prev = self.0.fetch_add(REF_ONE, Relaxed);
        // Guard against overflow into nonsense (as `Arc` does); unreachable in practice.
        if prev > usize::MAX / 2 {
            panic!("spindle: task reference count overflow");
        }
    }

    /// Drops a reference; returns true if it was the last one (the caller must free the cell).
    pub fn ref_dec(&self) -> bool {
        let prev = Snapshot(self.0.fetch_sub(REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= 1);
        prev.ref_count() == 1
    }

    /// Drops two references at once (a completed task releasing its own and the registry's).
    pub fn ref_dec_twice(&self) -> bool {
        let prev = Snapshot(self.0.fetch_sub(2 * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= 2);
        prev.ref_count() == 2
    }

    /// Fast path of dropping a `JoinHandle` right after spawn, before anything else happened.
    pub fn drop_join_handle_fast(&self) -> bool {
        self.0.compare_exchange(INITIAL, (INITIAL - REF_ONE) & !JOIN_INTEREST, Release, Relaxed).is_ok()
    }

    /// The `JoinHandle` goes away.
    pub fn unset_join_interest(&self) -> UnsetJoinInterest {
        self.fetch_update(|s| {
            debug_assert!(s.has_join_interest());
            if s.is_complete() {
                return (None, UnsetJoinInterest::Complete);
            }
            (Some(Snapshot(s.0 & !(JOIN_INTEREST | JOIN_WAKER))), UnsetJoinInterest::Unset)
        })
    }

    /// The `JoinHandle` stored a waker in the slot and hands it to the runtime. Fails with the
    /// current state if the task completed meanwhile (the handle keeps the slot).
    pub fn set_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|s| {
            debug_assert!(s.has_join_interest() && !s.has_join_waker());
            if s.is_complete() {
                return (None, Err(s));
            }
            let next = Snapshot(s.0 | JOIN_WAKER);
            (Some(next), Ok(next))
        })
    }

    /// The `JoinHandle` takes the slot back to replace the waker. Fails if the task completed.
    pub fn unset_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|s| {
            debug_assert!(s.has_join_interest() && s.has_join_waker());
            if s.is_complete() {
                return (None, Err(s));
            }
            let next = Snapshot(s.0 & !JOIN_WAKER);
            (Some(next), Ok(next))
        })
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}
