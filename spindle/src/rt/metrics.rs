//! Per-worker counters behind [`RuntimeMetrics`](super::RuntimeMetrics) (DESIGN §8: polls, parks,
//! steals, budget yields, busy time, queue depths).
//!
//! # Contract
//!
//! - Each worker of a runtime has one [`WorkerMetrics`]: a multi-thread worker in its `Remote`, a
//!   current-thread runtime (or a per-core runtime's core) in its `Shared`.
//! - **One writer.** Only the thread running the worker changes its counters: the worker thread,
//!   or, on a current-thread runtime, the thread driving it, which holds the runtime's core (the
//!   core's mutex orders one driver's writes before the next driver's). So an increment is a
//!   relaxed load and store, not a read-modify-write: on the writer's own cache line it costs
//!   what a plain field would, which is why the counters are always on.
//! - Any thread reads them with relaxed loads: each value is exact for what was counted before
//!   the read and never goes backwards, but values read one after the other are not a consistent
//!   snapshot of one instant.
//! - The struct is cache-line aligned so no other data shares its lines: writes to scheduler
//!   state that other workers read do not land on them, and its writer's stores do not take
//!   lines other threads use. (A reader does pull the line, but only when metrics are read.)
//! - Busy time is added when the worker parks and at its periodic maintenance (every few dozen
//!   polls), so a worker busy right now lags by at most one such stretch.

use std::cell::Cell;
use std::time::{Duration, Instant};

// Plain counters, in no loom model: the unmodelled atomics.
use spindle_core::loom::unmodelled::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The counters of one worker (see the module docs for who writes them).
#[repr(align(128))]
pub(crate) struct WorkerMetrics {
    polls: AtomicU64,
    parks: AtomicU64,
    steals: AtomicU64,
    steal_operations: AtomicU64,
    forced_yields: AtomicU64,
    busy_ns: AtomicU64,
    /// The local queue's length as of the worker's last maintenance or park, for schedulers
    /// whose queue other threads cannot read (the current-thread one's is a plain `VecDeque`).
    queue_depth: AtomicUsize,
}

/// Adds `n` to a counter only the calling thread writes.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

impl WorkerMetrics {
    pub(crate) fn new() -> WorkerMetrics {
        WorkerMetrics {
            polls: AtomicU64::new(0),
            parks: AtomicU64::new(0),
            steals: AtomicU64::new(0),
            steal_operations: AtomicU64::new(0),
            forced_yields: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            queue_depth: AtomicUsize::new(0),
        }
    }

    /// One task poll.
    #[inline]
    pub(crate) fn polled(&self) {
        add(&self.polls, 1);
    }

    /// The worker is about to wait for work in its driver.
    pub(crate) fn parked(&self) {
        add(&self.parks, 1);
    }

    /// One steal that took `tasks` tasks from another worker.
    pub(crate) fn stole(&self, tasks: usize) {
        add(&self.steal_operations, 1);
        add(&self.steals, tasks as u64);
    }

    /// A task's poll was refused by its exhausted cooperative budget.
    pub(crate) fn forced_yield(&self) {
        add(&self.forced_yields, 1);
    }

    /// Publishes the local queue's length (current-thread schedulers).
    pub(crate) fn set_queue_depth(&self, n: usize) {
        self.queue_depth.store(n, Relaxed);
    }

    pub(crate) fn polls(&self) -> u64 {
        self.polls.load(Relaxed)
    }

    pub(crate) fn parks(&self) -> u64 {
        self.parks.load(Relaxed)
    }

    pub(crate) fn steals(&self) -> u64 {
        self.steals.load(Relaxed)
    }

    pub(crate) fn steal_operations(&self) -> u64 {
        self.steal_operations.load(Relaxed)
    }

    pub(crate) fn forced_yields(&self) -> u64 {
        self.forced_yields.load(Relaxed)
    }

    pub(crate) fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_ns.load(Relaxed))
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.queue_depth.load(Relaxed)
    }
}

/// When the worker's current busy stretch began: kept by the thread running the worker, and
/// added to [`WorkerMetrics`]' busy time at each [`BusyClock::lap`].
pub(crate) struct BusyClock {
    since: Cell<Option<Instant>>,
}

impl BusyClock {
    /// A clock for a worker that is not busy yet (the first [`resume`](BusyClock::resume) starts it).
    pub(crate) const fn stopped() -> BusyClock {
        BusyClock { since: Cell::new(None) }
    }

    /// The worker is busy from now on (it starts, or its park returned).
    pub(crate) fn resume(&self) {
        self.since.set(Some(Instant::now()));
    }

    /// Adds the busy time since the last `resume` or `lap` to `m`; the worker stays busy.
    pub(crate) fn lap(&self, m: &WorkerMetrics) {
        if let Some(since) = self.since.get() {
            let now = Instant::now();
            add(&m.busy_ns, now.saturating_duration_since(since).as_nanos() as u64);
            self.since.set(Some(now));
        }
    }

    /// Adds the busy time so far to `m` and stops: the worker parks or stops driving.
    pub(crate) fn pause(&self, m: &WorkerMetrics) {
        self.lap(m);
        self.since.set(None);
    }
}
