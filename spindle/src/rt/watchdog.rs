//! Long-poll detection ([`Builder::on_long_poll`](super::Builder::on_long_poll)): a task whose
//! single poll runs longer than a threshold (it blocks its thread, or computes too long without
//! yielding) is reported with its id, name and spawn location.
//!
//! # Contract
//!
//! - Off unless configured: then a poll costs one load and branch more. On: two clock reads, a
//!   task reference taken and dropped, and a few stores per poll.
//! - Each thread that polls the runtime's tasks has a [`PollSlot`] (a multi-thread runtime's
//!   worker `i` slot `i`, a per-core runtime's core `i` slot `i`, a current-thread runtime slot
//!   0). The poller writes the task's id and spawn location, then the poll's start time, before
//!   the poll, and clears the start time after it.
//! - A watchdog thread (one per runtime, started with it, gone soon after the runtime is
//!   dropped) looks at every slot each quarter of the threshold and reports a poll that is still
//!   running past the threshold: the only way to hear of a poll that never returns. A poll that
//!   returns past the threshold before the watchdog saw it is reported by its poller, right
//!   after it returns. Each long poll is reported exactly once, by whichever sees it first.
//! - The watchdog reads a slot without a lock (see [`PollSlot`]); the task's name is then looked
//!   up in the runtime's task registry (it may have finished meanwhile: no name then).
//! - The same timing serves [`Builder::record_task_busy_time`](super::Builder::record_task_busy_time)
//!   (with it alone there is no threshold and no watchdog thread): each slot's poller adds each
//!   poll's length to its [`BusyTable`] under the task's id; a dump sums the slots' tables.
//!   Entries of finished tasks are pruned as a table grows.

use std::fmt;
use std::panic::Location;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use spindle_core::loom::{fence, AtomicPtr, AtomicU64, Ordering::*};
use spindle_core::task::{Header, Notified, TaskId};

use super::Scheduler;

/// The user's report callback.
pub(crate) type ReportFn = Arc<dyn Fn(&LongPoll) + Send + Sync>;

/// A poll that ran longer than the threshold given to
/// [`Builder::on_long_poll`](super::Builder::on_long_poll).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let s = seen.clone();
/// let rt = spindle::runtime::Builder::new_current_thread()
///     .on_long_poll(Duration::from_millis(20), move |p| s.lock().unwrap().push((p.name().map(str::to_owned), p.elapsed())))
///     .build()
///     .unwrap();
/// // The task blocks its thread until it is reported: a poll that merely takes long can be
/// // reported by the watchdog thread once the task has finished (after the join, and without
/// // the name, which is looked up among the live tasks).
/// let reported = seen.clone();
/// let h = spindle::task::Builder::new()
///     .name("stuck")
///     .spawn_on(
///         async move {
///             let deadline = std::time::Instant::now() + Duration::from_secs(10);
///             while reported.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
///                 std::thread::sleep(Duration::from_millis(1));
///             }
///         },
///         rt.handle(),
///     )
///     .unwrap();
/// rt.block_on(h).unwrap();
/// let seen = seen.lock().unwrap();
/// assert_eq!(seen.len(), 1);
/// assert_eq!(seen[0].0.as_deref(), Some("stuck"));
/// assert!(seen[0].1 >= Duration::from_millis(20));
/// ```
#[derive(Debug, Clone)]
pub struct LongPoll {
    task: TaskId,
    name: Option<String>,
    location: &'static Location<'static>,
    elapsed: Duration,
    finished: bool,
    worker: usize,
}

impl LongPoll {
    /// The task's id.
    pub fn task_id(&self) -> TaskId {
        self.task
    }

    /// The task's name (from [`task::Builder`](crate::task::Builder)), if it has one. `None`
    /// also when the task finished before the watchdog could look its name up.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Where the task was spawned.
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }

    /// How long the poll had run when it was reported: its whole length if
    /// [`is_finished`](Self::is_finished), else how long it had run so far.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Whether the poll had returned when it was reported (`false`: it was still running; the
    /// task is blocking its thread right now).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Which worker (or core) polled it: the index of the runtime's polling thread, 0 on a
    /// current-thread runtime.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl fmt::Display for LongPoll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {}", self.task.as_u64())?;
        if let Some(n) = &self.name {
            write!(f, " {n:?}")?;
        }
        let verb = if self.finished { "took" } else { "has been running for" };
        write!(f, " (spawned at {}) {verb} {:?} in one poll on worker {}", self.location, self.elapsed, self.worker)
    }
}

/// One polling thread's current poll. Written only by that thread; read by the watchdog.
///
/// The poller stores `task` and `location` (`Release`), then `started`; after the poll it stores
/// `started = 0`. The watchdog reads `started`, then `task` and `location`, then (after an
/// `Acquire` fence) `started` again, and trusts what it read only if both `started` reads agree:
/// had it read the id or location of a later poll (stored with `Release` after that `started =
/// 0`), the fence would make its second read see 0 or the later start, not the first.
#[derive(Default)]
struct PollSlot {
    /// Nanoseconds since [`PollWatch::epoch`], plus one, at the poll's start; 0 between polls.
    started: AtomicU64,
    task: AtomicU64,
    location: AtomicPtr<Location<'static>>,
    /// The `started` of the last poll reported (by either side): each poll is reported once.
    reported: AtomicU64,
}

/// A runtime's long-poll detection state (see the module docs).
pub(crate) struct PollWatch {
    threshold: Duration,
    report: ReportFn,
    epoch: Instant,
    slots: Box<[PollSlot]>,
    /// The runtime, for task names (weak: the runtime owns this).
    runtime: Arc<dyn Fn() -> Option<Scheduler> + Send + Sync>,
    /// Per slot, each task's time in polls ([`Builder::record_task_busy_time`]); `None` when not
    /// asked for.
    ///
    /// [`Builder::record_task_busy_time`]: super::Builder::record_task_busy_time
    busy: Option<Box<[BusyTable]>>,
}

/// One polling thread's per-task poll time: written by that thread after each poll, read by
/// dumps. Kept beside the tasks rather than in their headers, so that a runtime that does not
/// ask for it pays nothing, not even memory. A lock per poll (uncontended but for a dump).
#[derive(Default)]
struct BusyTable(std::sync::Mutex<BusyInner>);

#[derive(Default)]
struct BusyInner {
    /// Task id to nanoseconds.
    ns: std::collections::HashMap<u64, u64>,
    /// Prune finished tasks' entries when the table reaches this size (twice the live entries
    /// at the last prune, at least 256): amortized O(1) per task.
    prune_at: usize,
}

impl BusyTable {
    fn add(&self, task: TaskId, elapsed: Duration, runtime: &Arc<dyn Fn() -> Option<Scheduler> + Send + Sync>) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t.ns.entry(task.as_u64()).or_insert(0) += elapsed.as_nanos() as u64;
        if t.ns.len() >= t.prune_at.max(256) {
            let mut alive = std::collections::HashSet::new();
            if let Some(rt) = runtime() {
                rt.for_each_task(&mut |h: &Header| {
                    alive.insert(h.id().as_u64());
                });
            }
            t.ns.retain(|id, _| alive.contains(id));
            t.prune_at = 2 * t.ns.len();
        }
    }
}

impl PollWatch {
    /// Detection for `slots` polling threads; starts the watchdog thread.
    pub(crate) fn start(
        threshold: Duration,
        report: ReportFn,
        slots: usize,
        runtime: Arc<dyn Fn() -> Option<Scheduler> + Send + Sync>,
        record_busy: bool,
    ) -> std::io::Result<Arc<PollWatch>> {
        let watch = Arc::new(PollWatch {
            threshold,
            report,
            epoch: Instant::now(),
            slots: (0..slots).map(|_| PollSlot::default()).collect(),
            runtime,
            busy: record_busy.then(|| (0..slots).map(|_| BusyTable::default()).collect()),
        });
        if threshold == Duration::MAX {
            // Timing only (`Builder::record_task_busy_time`): nothing to report, no watchdog.
            return Ok(watch);
        }
        let weak = Arc::downgrade(&watch);
        let period = (threshold / 4).clamp(Duration::from_micros(500), Duration::from_secs(1));
        std::thread::Builder::new().name("spindle-watchdog".to_string()).spawn(move || watchdog(weak, period))?;
        Ok(watch)
    }

    /// Every task's time in polls so far, by task id (empty unless recorded).
    pub(crate) fn busy_times(&self) -> std::collections::HashMap<u64, u64> {
        let mut all = std::collections::HashMap::new();
        for table in self.busy.iter().flatten() {
            let t = table.0.lock().unwrap_or_else(|p| p.into_inner());
            for (id, ns) in &t.ns {
                *all.entry(*id).or_insert(0) += ns;
            }
        }
        all
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Polls `task` on slot `slot`'s thread, watched.
    pub(crate) fn run<S: 'static>(&self, slot: usize, task: Notified<S>) {
        // `run` may drop the last reference; keep one to read the header after it.
        let keep = task.new_ref();
        self.start_poll(slot, keep.header());
        task.run();
        let elapsed = self.end_poll(slot, keep.header());
        if let Some(busy) = &self.busy {
            busy[slot].add(keep.header().id(), elapsed, &self.runtime);
        }
    }

    /// Before polling `task` on slot `slot`'s thread.
    #[inline]
    fn start_poll(&self, slot: usize, task: &Header) {
        let s = &self.slots[slot];
        s.task.store(task.id().as_u64(), Release);
        s.location.store(task.meta().location as *const Location<'static> as *mut Location<'static>, Release);
        s.started.store(self.now(), Release);
    }

    /// After the poll [`start_poll`](Self::start_poll) began; reports it if it was long and the
    /// watchdog has not.
    #[inline]
    fn end_poll(&self, slot: usize, task: &Header) -> Duration {
        let s = &self.slots[slot];
        let started = s.started.load(Relaxed);
        s.started.store(0, Release);
        let elapsed = Duration::from_nanos(self.now().saturating_sub(started));
        if elapsed >= self.threshold && s.reported.swap(started, AcqRel) != started {
            let name = task.meta().name.as_deref().map(str::to_owned);
            self.emit(LongPoll {
                task: task.id(),
                name,
                location: task.meta().location,
                elapsed,
                finished: true,
                worker: slot,
            });
        }
        elapsed
    }

    /// The watchdog's look at every slot.
    fn check(&self) {
        for (worker, s) in self.slots.iter().enumerate() {
            let started = s.started.load(Acquire);
            if started == 0 {
                continue;
            }
            let elapsed = Duration::from_nanos(self.now().saturating_sub(started));
            if elapsed < self.threshold || s.reported.load(Relaxed) == started {
                continue;
            }
            let task = s.task.load(Relaxed);
            let location = s.location.load(Relaxed);
            fence(Acquire);
            if s.started.load(Relaxed) != started || location.is_null() {
                continue; // that poll ended meanwhile: its poller decides
            }
            let Some(task) = TaskId::from_u64(task) else { continue };
            if s.reported.swap(started, AcqRel) == started {
                continue;
            }
            // SAFETY: only `&'static Location`s are stored in the slot.
            let location: &'static Location<'static> = unsafe { &*location };
            let name = self.name_of(task);
            self.emit(LongPoll { task, name, location, elapsed, finished: false, worker });
        }
    }

    /// A task's name, looked up in the runtime's registry.
    fn name_of(&self, task: TaskId) -> Option<String> {
        let mut name = None;
        (self.runtime)()?.for_each_task(&mut |h: &Header| {
            if h.id() == task {
                name = h.meta().name.as_deref().map(str::to_owned);
            }
        });
        name
    }

    /// Calls the user's callback, containing a panic in it (it must not take a worker down).
    fn emit(&self, p: LongPoll) {
        let report = &self.report;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| report(&p)));
    }
}

/// The watchdog thread: checks every `period` until the runtime is gone.
fn watchdog(watch: Weak<PollWatch>, period: Duration) {
    loop {
        std::thread::sleep(period);
        match watch.upgrade() {
            Some(w) => w.check(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The per-task time table forgets finished tasks: thousands of short tasks leave at most a
    /// few hundred entries (pruned at 256, and at twice the live ones after).
    #[test]
    fn busy_times_of_finished_tasks_are_pruned() {
        for rt in [
            crate::runtime::Builder::new_current_thread().record_task_busy_time(true).build().unwrap(),
            crate::runtime::Builder::new_multi_thread().worker_threads(2).record_task_busy_time(true).build().unwrap(),
        ] {
            rt.block_on(async {
                for _ in 0..3000 {
                    crate::spawn(async {}).await.unwrap();
                }
            });
            let watch = rt.handle().inner.poll_watch().expect("timing is on");
            let kept = watch.busy_times().len();
            assert!(kept < 600, "{kept} entries kept for 3000 finished tasks");
        }
    }
}
