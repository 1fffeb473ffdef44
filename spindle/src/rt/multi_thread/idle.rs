//! Bookkeeping of parked and searching workers, so wakeups are rationed.
//!
//! One atomic word counts unparked workers and searching workers (workers looking for work to
//! steal). A task producer wakes a parked worker only if nobody is searching: the woken worker
//! counts as searching until it finds work, so a burst of spawns wakes one worker, not all, and
//! each worker that finds work wakes the next only if it was the last searcher.
//!
//! Lost-wakeup argument: a producer publishes the task, then (SeqCst) reads the word. A worker
//! about to park decrements the word (SeqCst RMW) and, if it was the last searcher, rechecks every
//! queue afterwards. Either the producer sees a searcher (who will see the task, or, being the last
//! to park, recheck), or the worker's recheck sees the task.

use std::sync::Mutex;

use spindle_core::loom::{fence, AtomicUsize, Ordering::*};

const SEARCH_MASK: usize = 0xFFFF;
const UNPARK_SHIFT: usize = 16;
const UNPARK_ONE: usize = 1 << UNPARK_SHIFT;

/// Outcome of [`Idle::transition_to_parked`].
#[must_use]
pub(crate) struct Parked {
    /// The worker was the last searcher: it must recheck every queue before sleeping.
    pub(crate) last_searcher: bool,
}

pub(crate) struct Idle {
    state: AtomicUsize,
    num_workers: usize,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            state: AtomicUsize::new(num_workers << UNPARK_SHIFT),
            num_workers,
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.sleepers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Picks a parked worker to wake, if one should be: nobody searching and someone parked.
    /// The chosen worker is counted as unparked and searching before it runs.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        fence(SeqCst);
        if !self.notify_should_wake() {
            return None;
        }
        let mut sleepers = self.lock();
        if !self.notify_should_wake() {
            return None;
        }
        let w = sleepers.pop()?;
        self.state.fetch_add(UNPARK_ONE | 1, SeqCst);
        Some(w)
    }

    fn notify_should_wake(&self) -> bool {
        let s = self.state.load(SeqCst);
        s & SEARCH_MASK == 0 && (s >> UNPARK_SHIFT) < self.num_workers
    }

    /// A worker wants to search; refused when half the unparked workers already do.
    pub(crate) fn transition_to_searching(&self) -> bool {
        let s = self.state.load(SeqCst);
        if 2 * (s & SEARCH_MASK) >= (s >> UNPARK_SHIFT) {
            return false;
        }
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// A searching worker found work. Returns true if it was the last searcher (then it should
    /// wake another worker, to keep someone looking).
    pub(crate) fn transition_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        prev & SEARCH_MASK == 1
    }

    /// A worker parks. `last_searcher` tells it to recheck all queues.
    pub(crate) fn transition_to_parked(&self, worker: usize, is_searching: bool) -> Parked {
        let mut sleepers = self.lock();
        let dec = UNPARK_ONE + usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(worker);
        Parked { last_searcher: is_searching && prev & SEARCH_MASK == 1 }
    }

    /// Whether every worker is parked (for virtual-time auto-advance).
    pub(crate) fn all_parked(&self) -> bool {
        self.state.load(SeqCst) >> UNPARK_SHIFT == 0
    }

    /// After waking: true if the worker is still registered as parked (a spurious or targeted
    /// wakeup, not a `worker_to_notify` pick).
    pub(crate) fn is_parked(&self, worker: usize) -> bool {
        self.lock().contains(&worker)
    }

    /// A parked worker woke for its own reasons (local work, shutdown): count it unparked again.
    /// Returns false if it had already been picked by `worker_to_notify` (and counted searching).
    pub(crate) fn unpark_self(&self, worker: usize) -> bool {
        let mut sleepers = self.lock();
        if let Some(i) = sleepers.iter().position(|&w| w == worker) {
            sleepers.swap_remove(i);
            self.state.fetch_add(UNPARK_ONE, SeqCst);
            true
        } else {
            false
        }
    }

    /// Number of searching workers (for metrics and tests).
    #[allow(dead_code)]
    pub(crate) fn num_searching(&self) -> usize {
        self.state.load(SeqCst) & SEARCH_MASK
    }
}
