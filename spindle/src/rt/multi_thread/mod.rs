//! The multi-thread work-stealing runtime.
//!
//! # Contract
//!
//! - `Shared` is the runtime: one `Remote` per worker (the stealable end of its run queue, its LIFO
//!   slot, its unparker, and the inject queue and registry of its local tasks), the global inject
//!   queue, the idle bookkeeping and the registry of `Send` tasks.
//! - Each worker thread owns a `Core` (the owner end of its bounded run queue and its local-task
//!   queue) and a `Driver` it parks in. The core sits in a `RefCell` on the worker's stack; the
//!   worker borrows it only between polls, so wakes during a poll can push to it.
//! - Where tasks go: a spawn on a worker goes to the back of its queue; a wake on a worker goes to
//!   its LIFO slot (the previous occupant moves to the queue), which makes message passing between
//!   two tasks run back-to-back; a task that wakes itself (yield) goes to the back, and so does the
//!   task awaiting a `JoinHandle` when its task finishes (see `schedule_local`). Anything from
//!   another thread goes to the inject queue. Local (`!Send`) tasks never leave their worker:
//!   wakes from other threads go to that worker's local inject queue and unpark it directly.
//! - Fairness: the LIFO slot is used at most `MAX_LIFO_POLLS` times in a row and can be stolen;
//!   the inject queue is checked first every `GLOBAL_INTERVAL` ticks; local and shared tasks alternate.
//! - Idle: a worker with nothing to do first takes its own I/O's work (on io_uring: completions
//!   already posted, then, if other workers' tasks are there to take, one enter that submits its
//!   queued entries and collects what they complete), then tries to steal (as a "searcher", at most
//!   half the workers at once), then parks: at once on epoll (its own reactor's work only arrives
//!   through the park); on io_uring, with requests in flight and while spinning pays, after looking
//!   for work for up to `SPIN_BEFORE_PARK` (the kernel's flag for deferred completions is visible
//!   without a syscall, and a sleeping thread costs microseconds to wake; a spinning worker is not
//!   parked, so producers do not unpark it: it sees their work itself). Producers wake a parked
//!   worker only when nobody is searching (see `idle.rs` for the lost-wakeup argument). Tasks woken
//!   by the I/O a worker dispatches inside its own park are queued without notifying anyone; after
//!   the park, one sibling is notified if more than one task is queued.
//! - Shutdown: a flag plus an unpark of every worker; each worker drops its local tasks on its own
//!   thread and exits; then the `Send` tasks are dropped by the thread shutting down.

mod idle;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use spindle_core::loom::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*};
use spindle_core::queue::inject::Inject;
use spindle_core::queue::local::{self, Local, Stealer};
use spindle_core::task::{new_local_task, new_task, Header, JoinHandle, Notified, Schedule, Task, TaskMeta};

use self::idle::Idle;
use super::blocking::Spawner;
use super::metrics::{BusyClock, WorkerMetrics};
use super::owned::OwnedTasks;
use super::park::{Driver, Unparker};
use super::{context, Scheduler};
use crate::driver::Reactor;
use crate::time::{Clock, Shard};

/// Whether workers own pinned io_uring rings (`SINGLE_ISSUER | DEFER_TASKRUN`: only the worker
/// submits and completions are posted when it enters the ring, so they never interrupt it while
/// it runs tasks; entries from other threads are handed over and submitted when it next wakes or
/// polls its reactor). On. The cost: an entry pushed by a thread that is not the worker (a
/// `block_on` caller, a task dropped on another worker) is not in the kernel when the push
/// returns, only once the worker gets to it (the push wakes it), so code must not rely on "submitted
/// by the time the first poll returns" (tests/net_pooled.rs proves its multishot accept armed
/// with a probe connection instead), and such an op pays a cross-thread hand-over. Off: shared
/// rings, any thread submits at once.
///
/// Why the late hand-over is safe for reads: an owned read dropped in flight is orphaned, and
/// until its handed-over `ASYNC_CANCEL` reaches the kernel its `RECV` can still take bytes written
/// after the drop (this made `tests/net.rs`'s cancellation storm lose data under load, about one
/// run in 20, while pinned rings were off for it). Orphaned socket reads now give what they took
/// back to their socket (`net::stash`: bytes, whole datagrams, end of stream, errors), and every
/// later read of the socket waits for orphaned reads in flight and drains the stash first, so a
/// late cancel delays the next read a little but loses and reorders nothing
/// (`tests/net_cancel_read.rs`). The other ops a late cancel lets complete lose nothing either: a
/// dropped send or write may still be written (as with shared rings, where it can also have
/// completed before the drop), a dropped positional file read leaves its bytes in the file, and
/// accepts go through the listener's multishot accept, whose connections wait in the listener's
/// queue whoever dropped what (`net::pooled`).
pub(crate) const PINNED_RINGS: bool = true;

const MAX_LIFO_POLLS: u32 = 3;
const GLOBAL_INTERVAL: u32 = 61;
/// Virtual time on several workers: how long (real time) a worker that found nothing able to
/// run waits before it looks again and, still finding nothing, jumps the clock. Another worker
/// can have just taken events from the kernel that it has not dispatched yet, which no other
/// thread can see; it dispatches them in microseconds. Each jump pays this once, so a test
/// sleeping 1,000 times in a row on two workers takes about 0.1 s more.
const ADVANCE_GRACE: Duration = Duration::from_micros(100);

/// What a parked worker's [`WorkerCtx::auto_advance`] did.
#[must_use]
enum AutoAdvance {
    /// The clock jumped to the next timer, which fired.
    Advanced,
    /// Something can still run, or there is no timer to jump to.
    NotNow,
    /// Nothing can run: look again after [`ADVANCE_GRACE`].
    LookAgain,
}

/// How long an io_uring worker with I/O in flight looks for work before parking (see
/// `WorkerCtx::spin_for_work`).
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(20);
/// A park shorter than this makes the next idle spell spin (see `WorkerCtx::spin_for_work`).
const SHORT_PARK: Duration = Duration::from_micros(50);
/// Work checks between two clock reads while spinning.
const SPIN_CHECKS_PER_CLOCK_READ: u32 = 16;

pub(crate) struct Shared {
    /// Long-poll detection, if configured (`rt::watchdog`); worker `i` uses slot `i`.
    poll_watch: std::sync::OnceLock<Arc<super::watchdog::PollWatch>>,
    remotes: Box<[Remote]>,
    /// Turns for [`next_reactor`](Shared::next_reactor).
    reactor_turn: AtomicUsize,
    /// In-process loopback connections to place on one worker (see `driver::placement`).
    pub(crate) loopback_pairs: crate::driver::placement::Pairs,
    inject: Inject<Sched>,
    idle: Idle,
    owned: OwnedTasks<Sched>,
    shutdown: AtomicBool,
    exited: Mutex<usize>,
    exited_cv: Condvar,
    /// Set (under `exited`, signalled through `exited_cv`) once the thread shutting the runtime
    /// down has dropped the `Send` tasks: a worker waits for it before its last act, shutting
    /// down its reactor (only the owner of a pinned ring may cancel and reap the ops those
    /// tasks orphaned).
    tasks_dropped: AtomicBool,
    pub(crate) blocking: Spawner,
    pub(crate) clock: Arc<Clock>,
    /// `block_on` threads currently awake (polling their future): virtual time must not jump
    /// while one of them may still act on the present.
    pub(crate) block_on_awake: Arc<spindle_core::loom::AtomicUsize>,
}

struct Remote {
    stealer: Stealer<Notified<Sched>>,
    /// The worker's LIFO slot: a raw `Notified<Sched>` or null. Stealable by swapping in null.
    lifo: AtomicPtr<Header>,
    unparker: Unparker,
    local_inject: Inject<LocalSched>,
    local_owned: OwnedTasks<LocalSched>,
    /// The worker's timers (registered by tasks it polls; fired when it parks or maintains).
    pub(crate) timers: Arc<Shard>,
    /// The worker's I/O reactor (fds registered by tasks it polls; dispatched when it parks).
    pub(crate) reactor: Arc<Reactor>,
    /// The worker's counters (`rt::metrics`: written by the worker thread only).
    pub(crate) metrics: WorkerMetrics,
}

struct Core {
    index: usize,
    run_queue: Local<Notified<Sched>>,
    local_queue: VecDeque<Notified<LocalSched>>,
    tick: u32,
    /// Tasks taken since this worker's reactor last had everything submitted and was reaped
    /// (an io_uring reap or maintenance poll that left nothing queued; on epoll only the
    /// maintenance itself). The periodic reactor maintenance waits for this to reach
    /// `GLOBAL_INTERVAL`: an io_uring worker whose queue drains often (and reaps then) makes no
    /// extra `io_uring_enter` every `GLOBAL_INTERVAL` tasks (measured: a third of the entries of
    /// a 64-connection echo on two workers were these), while any worker still polls its
    /// reactor at least that often.
    polls_since_io: u32,
    lifo_polls: u32,
    is_searching: bool,
    rand: u32,
}

/// A worker thread's state, on its stack, reachable through the thread-local context.
pub(crate) struct WorkerCtx {
    shared: Arc<Shared>,
    index: usize,
    core: RefCell<Core>,
    driver: RefCell<Driver>,
    /// Set while this worker is inside its driver's park (dispatching the readiness and
    /// completions that end it): wakes of our tasks then only queue them, and the notification
    /// of a sibling they would make is left to after the park (`notify_deferred`), when we know
    /// whether there is more than we take ourselves.
    in_driver: std::cell::Cell<bool>,
    notify_deferred: std::cell::Cell<bool>,
    /// Whether the next idle spell spins before parking (io_uring; see `spin_for_work`).
    spin_next: std::cell::Cell<bool>,
    /// Virtual time: the last look found nothing able to run (see `auto_advance`), so the next
    /// one, after [`ADVANCE_GRACE`], may jump the clock.
    advance_looked: std::cell::Cell<bool>,
    /// This worker's busy time, added to its metrics when it parks and at maintenance.
    busy: BusyClock,
}

/// Scheduler handle of `Send` tasks.
pub(crate) struct Sched(Arc<Shared>);

/// Scheduler handle of local tasks: bound to one worker.
pub(crate) struct LocalSched {
    shared: Arc<Shared>,
    worker: usize,
}

enum Runnable {
    Shared(Notified<Sched>),
    Local(Notified<LocalSched>),
}

/// The running workers of a multi-thread runtime.
pub(crate) struct Workers {
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

pub(crate) fn start(
    num_workers: usize,
    thread_name: &(dyn Fn() -> String + Send + Sync),
    stack_size: Option<usize>,
    blocking: Spawner,
    clock: Arc<Clock>,
    backend: crate::driver::Backend,
) -> std::io::Result<(Arc<Shared>, Workers)> {
    let mut cores = Vec::with_capacity(num_workers);
    let mut remotes = Vec::with_capacity(num_workers);
    let mut drivers = Vec::with_capacity(num_workers);
    let runtime_id = super::next_runtime_id();
    for index in 0..num_workers {
        let (run_queue, stealer) = local::new();
        let driver = if PINNED_RINGS { Driver::with_pinned_reactor(backend)? } else { Driver::with_reactor(backend)? };
        driver.reactor().expect("worker drivers have a reactor").set_owner(runtime_id);
        remotes.push(Remote {
            stealer,
            lifo: AtomicPtr::new(ptr::null_mut()),
            unparker: driver.unparker(),
            local_inject: Inject::new(),
            local_owned: OwnedTasks::new(1),
            timers: Arc::new(Shard::new(clock.clone(), driver.unparker())),
            reactor: driver.reactor().expect("worker drivers have a reactor").clone(),
            metrics: WorkerMetrics::new(),
        });
        cores.push(Core {
            index,
            run_queue,
            local_queue: VecDeque::new(),
            tick: 0,
            polls_since_io: 0,
            lifo_polls: 0,
            is_searching: false,
            rand: 0x9E37_79B9 ^ (index as u32 + 1).wrapping_mul(0x85EB_CA6B),
        });
        drivers.push(driver);
    }
    let shared = Arc::new(Shared {
        poll_watch: std::sync::OnceLock::new(),
        remotes: remotes.into_boxed_slice(),
        reactor_turn: AtomicUsize::new(0),
        loopback_pairs: Default::default(),
        inject: Inject::new(),
        idle: Idle::new(num_workers),
        owned: OwnedTasks::new(4 * num_workers),
        shutdown: AtomicBool::new(false),
        exited: Mutex::new(0),
        exited_cv: Condvar::new(),
        tasks_dropped: AtomicBool::new(false),
        blocking,
        clock,
        block_on_awake: Arc::new(spindle_core::loom::AtomicUsize::new(0)),
    });
    let mut threads = Vec::with_capacity(num_workers);
    for (core, driver) in cores.into_iter().zip(drivers) {
        let shared2 = shared.clone();
        let mut b = std::thread::Builder::new().name(thread_name());
        if let Some(s) = stack_size {
            b = b.stack_size(s);
        }
        match b.spawn(move || run_worker(shared2, core, driver)) {
            Ok(t) => threads.push(t),
            Err(e) => {
                let workers = Workers { shared: shared.clone(), threads: Mutex::new(threads) };
                workers.shutdown(None);
                return Err(std::io::Error::new(e.kind(), format!("spindle: cannot start a worker thread: {e}")));
            }
        }
    }
    Ok((shared.clone(), Workers { shared, threads: Mutex::new(threads) }))
}

fn run_worker(shared: Arc<Shared>, core: Core, driver: Driver) {
    let _enter = context::enter_runtime(Scheduler::MultiThread(shared.clone()));
    let index = core.index;
    let w = WorkerCtx {
        shared: shared.clone(),
        index,
        core: RefCell::new(core),
        driver: RefCell::new(driver),
        in_driver: std::cell::Cell::new(false),
        notify_deferred: std::cell::Cell::new(false),
        spin_next: std::cell::Cell::new(false),
        advance_looked: std::cell::Cell::new(false),
        busy: BusyClock::stopped(),
    };
    let prev = context::set_worker(&w);
    w.busy.resume();
    w.run();
    w.busy.pause(&shared.remotes[index].metrics);
    // Local tasks may only be dropped here, on their own thread.
    shared.remotes[index].local_owned.close_and_shutdown_all();
    context::set_worker(prev);
    // From here on, wakes go to the inject queue (drained by whoever shuts the runtime down).
    {
        let mut core = w.core.borrow_mut();
        core.local_queue.clear();
        while core.run_queue.pop().is_some() {}
    }
    while shared.remotes[index].local_inject.pop().is_some() {}
    drop(w);
    let mut exited = shared.exited.lock().unwrap_or_else(|e| e.into_inner());
    *exited += 1;
    shared.exited_cv.notify_all();
    // Wait for the `Send` tasks to be dropped (they may hold ops on our ring), then cancel and
    // reap what they left in flight, on this thread: a pinned ring cannot be entered by any
    // other. Bounded, in case the shutting-down thread is stuck dropping a task.
    let deadline = Instant::now() + SHUTDOWN_HANDOFF;
    while !shared.tasks_dropped.load(Acquire) {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        exited = shared.exited_cv.wait_timeout(exited, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
    }
    drop(exited);
    shared.remotes[index].reactor.shutdown();
}

/// How long an exiting worker waits for the runtime's `Send` tasks to be dropped before it shuts
/// its reactor down anyway.
const SHUTDOWN_HANDOFF: Duration = Duration::from_secs(5);

impl WorkerCtx {
    /// Counts a poll refused by an exhausted cooperative budget (called on this worker's thread,
    /// by `context::coop_hook`).
    pub(crate) fn count_forced_yield(&self) {
        self.remote().metrics.forced_yield();
    }

    fn run(&self) {
        let shared = &*self.shared;
        loop {
            if shared.shutdown.load(Acquire) {
                return;
            }
            if let Some(t) = self.next_task() {
                self.run_task(t);
                continue;
            }
            // Out of local work: take the completions already posted for our own tasks before
            // taking other workers' tasks (on io_uring no syscall unless the kernel must be
            // entered anyway; on epoll the periodic maintenance in `next_task` and the park
            // cover it).
            let uring = self.remote().reactor.as_uring();
            if let Some(r) = uring {
                self.poll_reactor_as_driver(|| r.reap_completions());
                if !r.has_unsubmitted() {
                    self.reactor_polled();
                }
                if self.has_local_work() {
                    continue;
                }
                // Before taking another worker's task, submit what our tasks queued and collect
                // what that completes (one enter): over loopback (and for anything already
                // ready) the submission itself completes requests, and a task taken meanwhile
                // would run away from the ring its I/O is on (a connection's ops go to the ring
                // its two ends are placed on: `driver::placement`). Measured on echo over two
                // workers: stealing here moved ~35k tasks per 192k round trips, each handing an
                // op back to its ring (an eventfd write and an extra enter of the owner): 0.15
                // syscalls per round trip; 0.07-0.08 submitting and collecting first, and no
                // slower. With nothing to take, the entries stay queued for the park's wait (one
                // enter for both).
                if r.has_unsubmitted() && shared.has_visible_work() {
                    self.poll_reactor_as_driver(|| r.maintain());
                    self.reactor_polled();
                    if self.has_local_work() {
                        continue;
                    }
                }
            }
            if let Some(t) = self.search() {
                // Going to run another worker's task: our queued entries are submitted first,
                // so their I/O does not wait for that task (and what it brings) to finish.
                if let Some(r) = uring.filter(|r| r.has_unsubmitted()) {
                    self.poll_reactor_as_driver(|| r.maintain());
                    self.reactor_polled();
                }
                self.run_task(t);
                continue;
            }
            // An io_uring worker may spin briefly first (see `spin_for_work`): the kernel's flag
            // for its deferred completions is visible without a syscall. An epoll worker parks at
            // once: the work its own reactor brings arrives only through its park (which a spin
            // would delay: measured, a spin of 256 PAUSEs made a one-connection echo on epoll 2x
            // slower and cost ping_pong and chained_spawn too; an adaptive spin that polled epoll
            // every 16 checks halved the one-connection echo's round trip on two workers but
            // raised its syscalls 2.5x and the CPU per hyper request by 3%), and work from other
            // workers wakes it through `notify_parked`.
            if let Some(r) = uring {
                if self.spin_for_work(r) {
                    continue;
                }
            }
            // A park resets `polls_since_io` only if it waited in the reactor: it may return
            // without (an unpark token, a virtual-time jump, work found), and on epoll nothing
            // else polls the reactor.
            let polled = if uring.is_some() && !self.shared.clock.is_paused() {
                // A short park means a spin would have caught the wakeup: spin next time.
                let start = Instant::now();
                let polled = self.park();
                self.spin_next.set(start.elapsed() < SHORT_PARK);
                polled
            } else {
                self.park()
            };
            if polled {
                self.reactor_polled();
            }
        }
    }

    /// Polls this worker's own reactor (`poll`: its park, or a non-blocking poll): the tasks the
    /// dispatch wakes are queued without notifying anyone, and then one parked sibling (if
    /// nobody searches) is notified if more than the next task is queued, to take some. (Each
    /// wake notifying on its own made the two ends of a conversation, woken by one collecting
    /// enter, pull a sibling in to steal one of them; and a batch of completions paid a
    /// `SeqCst` fence and a look at the shared idle state per woken task.) Every poll a worker
    /// makes of its own reactor goes through here: the park, the periodic maintenance, the reap
    /// before looking elsewhere, the submission before running a stolen task.
    fn poll_reactor_as_driver<R>(&self, poll: impl FnOnce() -> R) -> R {
        self.in_driver.set(true);
        let r = poll();
        self.in_driver.set(false);
        if self.notify_deferred.replace(false) && self.has_surplus_work() {
            self.shared.notify_parked();
        }
        r
    }

    /// The reactor was just fully polled (see `polls_since_io`): the periodic maintenance
    /// counts from here.
    fn reactor_polled(&self) {
        self.core.borrow_mut().polls_since_io = 0;
    }

    /// Before parking, a worker whose (pinned) io_uring has requests in flight may look for work
    /// for up to [`SPIN_BEFORE_PARK`]: completions the kernel deferred for it (the
    /// `IORING_SQ_TASKRUN` flag, visible without a syscall; reaping them then takes one enter),
    /// its own queues, and work other workers published. Returns whether it found some.
    ///
    /// Why: a completion for a parked worker's ring wakes its thread, and waking a sleeping
    /// thread (an idle core; in a VM, an exit to the hypervisor) costs several microseconds,
    /// more than a whole loopback round trip. With the two ends of a conversation on two
    /// workers that was paid twice per exchange (echo_1conn on two workers: 10-15 us per round
    /// trip; spinning, the idle worker also steals the other end and both settle on one worker:
    /// 3.9 us). The spin is adaptive, so a worker that is woken rarely does not pay for it on
    /// every idle spell: it spins only while spinning pays (the last spin found work) or its last
    /// park was short enough that a spin would have caught its wakeup. Never under a paused
    /// clock (virtual time jumps at the park). The entries this worker queued are submitted
    /// first (the park would have submitted them with its wait). Epoll workers never spin: their
    /// events are only seen through a syscall, and measured, a spin made their one-connection
    /// echo 2x slower.
    fn spin_for_work(&self, r: &crate::driver::uring::Reactor) -> bool {
        let shared = &*self.shared;
        if !self.spin_next.get() || shared.clock.is_paused() || !r.is_pinned() || r.in_flight() == 0 {
            return false;
        }
        if r.has_unsubmitted() {
            r.submit_queued();
            self.reactor_polled();
        }
        let deadline = Instant::now() + SPIN_BEFORE_PARK;
        loop {
            for _ in 0..SPIN_CHECKS_PER_CLOCK_READ {
                if self.has_local_work() || shared.has_visible_work() || r.has_deferred_completions() {
                    return true;
                }
                std::hint::spin_loop();
            }
            if shared.shutdown.load(Acquire) || Instant::now() >= deadline {
                self.spin_next.set(false);
                return false;
            }
        }
    }

    fn run_task(&self, task: Runnable) {
        let was_searching = std::mem::replace(&mut self.core.borrow_mut().is_searching, false);
        if was_searching && self.shared.idle.transition_from_searching() && self.shared.has_visible_work() {
            // We were the last searcher and more work is waiting: wake another worker to take it.
            // (With no work visible, nobody needs waking: a producer that publishes work after our
            // SeqCst decrement sees no searcher and wakes a worker itself.)
            self.shared.notify_parked();
        }
        self.remote().metrics.polled();
        let watch = self.shared.poll_watch.get();
        match task {
            Runnable::Shared(t) => {
                let prev = context::start_poll(Some(t.header()));
                match watch {
                    None => t.run(),
                    Some(w) => w.run(self.index, t),
                }
                context::end_poll(prev);
            }
            Runnable::Local(t) => {
                let prev = context::start_poll(Some(t.header()));
                match watch {
                    None => t.run(),
                    Some(w) => w.run(self.index, t),
                }
                context::end_poll(prev);
            }
        }
    }

    pub(crate) fn clock(&self) -> &Arc<Clock> {
        &self.shared.clock
    }

    pub(crate) fn timers(&self) -> &Arc<Shard> {
        &self.remote().timers
    }

    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.remote().reactor
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn remote(&self) -> &Remote {
        &self.shared.remotes[self.index]
    }

    /// The next task from this worker's own queues (and the inject queue, for fairness or refill).
    fn next_task(&self) -> Option<Runnable> {
        let shared = &*self.shared;
        let mut core = self.core.borrow_mut();
        core.tick = core.tick.wrapping_add(1);
        core.polls_since_io += 1;
        if core.polls_since_io >= GLOBAL_INTERVAL {
            // Maintenance: a busy worker still polls its reactor without blocking. Otherwise a
            // worker that always finds a task never dispatches readiness or completions, and
            // never submits the io_uring entries its own tasks queued (the waiting thread's
            // entries are submitted by its next wait): I/O of tasks on this worker would stall
            // for as long as any other task keeps it busy. (The core is not borrowed meanwhile:
            // dispatching wakes tasks, which queue on this worker.)
            core.polls_since_io = 0;
            drop(core);
            self.poll_reactor_as_driver(|| self.remote().reactor.maintain());
            core = self.core.borrow_mut();
        }
        if core.tick % GLOBAL_INTERVAL == 0 {
            // A busy worker still fires its timers and looks at the inject queue.
            drop(core);
            self.busy.lap(&self.remote().metrics);
            if self.remote().timers.has_due() {
                self.remote().timers.process();
            }
            core = self.core.borrow_mut();
            if let Some(t) = shared.inject.pop() {
                return Some(Runnable::Shared(t));
            }
        }
        let remote = self.remote();
        if !remote.lifo.load(Relaxed).is_null() {
            let p = remote.lifo.swap(ptr::null_mut(), Acquire);
            if let Some(p) = NonNull::new(p) {
                // SAFETY: the slot only ever holds pointers from `Notified<Sched>::into_raw`, and
                // the swap made us its only owner.
                let t = unsafe { Notified::<Sched>::from_raw_owned(p) };
                if core.lifo_polls < MAX_LIFO_POLLS {
                    core.lifo_polls += 1;
                    return Some(Runnable::Shared(t));
                }
                // Two tasks waking each other could monopolize the slot: send this one to the back.
                core.run_queue.push_back(t, |batch| shared.inject.push_batch(batch));
            }
        }
        core.lifo_polls = 0;
        let local_first = core.tick & 1 == 0;
        if local_first {
            if let Some(t) = self.pop_local(&mut core) {
                return Some(Runnable::Local(t));
            }
        }
        if let Some(t) = core.run_queue.pop() {
            return Some(Runnable::Shared(t));
        }
        if !local_first {
            if let Some(t) = self.pop_local(&mut core) {
                return Some(Runnable::Local(t));
            }
        }
        self.refill_from_inject(&mut core)
    }

    fn pop_local(&self, core: &mut Core) -> Option<Notified<LocalSched>> {
        if let Some(t) = core.local_queue.pop_front() {
            return Some(t);
        }
        let inject = &self.remote().local_inject;
        if inject.is_empty() {
            return None;
        }
        inject.pop_n(64, |t| core.local_queue.push_back(t));
        core.local_queue.pop_front()
    }

    /// Moves a fair share of the inject queue into the local queue and returns the first task.
    fn refill_from_inject(&self, core: &mut Core) -> Option<Runnable> {
        let inject = &self.shared.inject;
        let len = inject.len();
        if len == 0 {
            return None;
        }
        let share = (len / self.shared.remotes.len() + 1).min(core.run_queue.remaining() / 2).clamp(1, 64);
        let mut first = None;
        inject.pop_n(share, |t| match first {
            None => first = Some(t),
            Some(_) => core.run_queue.push_back(t, |batch| inject.push_batch(batch)),
        });
        first.map(Runnable::Shared)
    }

    /// Steals from other workers (as a searcher) or takes from the inject queue.
    fn search(&self) -> Option<Runnable> {
        let shared = &*self.shared;
        let mut core = self.core.borrow_mut();
        if !core.is_searching && shared.idle.transition_to_searching() {
            core.is_searching = true;
        }
        if core.is_searching {
            let n = shared.remotes.len();
            core.rand ^= core.rand << 13;
            core.rand ^= core.rand >> 17;
            core.rand ^= core.rand << 5;
            let start = core.rand as usize % n;
            for i in 0..n {
                let j = (start + i) % n;
                if j == self.index {
                    continue;
                }
                let victim = &shared.remotes[j];
                if let Some((t, n)) = victim.stealer.steal_into_counted(&mut core.run_queue) {
                    self.remote().metrics.stole(n);
                    return Some(Runnable::Shared(t));
                }
                if !victim.lifo.load(Relaxed).is_null() {
                    if let Some(p) = NonNull::new(victim.lifo.swap(ptr::null_mut(), Acquire)) {
                        self.remote().metrics.stole(1);
                        // SAFETY: as in `next_task`: the swap made us the owner of this entry.
                        return Some(Runnable::Shared(unsafe { Notified::from_raw_owned(p) }));
                    }
                }
            }
        }
        self.refill_from_inject(&mut core)
    }

    fn has_local_work(&self) -> bool {
        let remote = self.remote();
        !remote.local_inject.is_empty()
            || !remote.lifo.load(Relaxed).is_null()
            || self.core.try_borrow().map(|c| !c.local_queue.is_empty() || !c.run_queue.is_empty()).unwrap_or(true)
    }

    /// Parks until there is work; returns whether it waited in the reactor (see
    /// `Driver::park_until`).
    fn park(&self) -> bool {
        let shared = &*self.shared;
        let mut polled = false;
        if self.has_local_work() {
            return polled;
        }
        let was_searching = std::mem::replace(&mut self.core.borrow_mut().is_searching, false);
        let parked = shared.idle.transition_to_parked(self.index, was_searching);
        if parked.last_searcher && shared.has_visible_work() {
            // Work arrived while we were the only one looking; make sure somebody takes it
            // (possibly ourselves: the unpark token makes our park return at once).
            shared.notify_parked();
        }
        let timers = &self.remote().timers;
        loop {
            // Virtual time with nothing able to run (every worker parked, no `block_on` thread
            // awake, no blocking job): jump to the next timer instead of sleeping, since a paused
            // clock never reaches it by waiting.
            let verdict = if shared.clock.is_paused() { self.auto_advance() } else { AutoAdvance::NotNow };
            if !matches!(verdict, AutoAdvance::Advanced) && !shared.shutdown.load(Acquire) && !self.has_local_work() {
                let next = timers.prepare_park();
                let timeout = match verdict {
                    AutoAdvance::LookAgain => Some(ADVANCE_GRACE),
                    _ => next.and_then(|t| shared.clock.until_tick(t)),
                };
                let metrics = &self.remote().metrics;
                metrics.parked();
                self.busy.pause(metrics);
                polled |= self.poll_reactor_as_driver(|| self.driver.borrow_mut().park_until(timeout));
                self.busy.resume();
                timers.unparked();
            }
            // Fire what is due here, and help workers too busy to fire theirs.
            timers.process();
            for r in shared.remotes.iter() {
                if r.timers.has_due() {
                    r.timers.process();
                }
            }
            if shared.shutdown.load(Acquire) {
                shared.idle.unpark_self(self.index);
                return polled;
            }
            if !shared.idle.is_parked(self.index) {
                // Picked by `notify_parked`: we count as searching.
                self.core.borrow_mut().is_searching = true;
                return polled;
            }
            if self.has_local_work() {
                if !shared.idle.unpark_self(self.index) {
                    self.core.borrow_mut().is_searching = true;
                }
                return polled;
            }
            // Otherwise a spurious wakeup (or an auto-advance that woke only other threads).
        }
    }

    /// Virtual time may jump: every worker is parked, no `block_on` thread is awake, no blocking
    /// job runs and no task is queued anywhere.
    fn nothing_can_run(&self) -> bool {
        let shared = &*self.shared;
        shared.idle.all_parked()
            && shared.block_on_awake.load(SeqCst) == 0
            && shared.blocking.is_idle()
            && !shared.has_visible_work()
            && !self.has_local_work()
    }

    /// Advances a paused clock to the earliest timer of any worker and fires it, if nothing else
    /// can make progress, and did so at the previous look too (see `ADVANCE_GRACE`).
    fn auto_advance(&self) -> AutoAdvance {
        let looked = self.advance_looked.replace(false);
        let shared = &*self.shared;
        if !self.nothing_can_run() {
            return AutoAdvance::NotNow;
        }
        let Some(t) = shared.remotes.iter().filter_map(|r| r.timers.next_expiration()).min() else {
            return AutoAdvance::NotNow;
        };
        // First take the I/O that is ready (a reply already in the kernel, entries our tasks
        // queued), as tokio does with a zero-timeout poll of its driver: jumping at once fired
        // every timeout around in-process I/O. Our own reactor we poll (what it wakes queues
        // here, or wakes a `block_on` thread); another worker's is not ours to poll, but we can
        // see whether events wait in it, and then leave the jump to that worker: woken by them,
        // it runs what they wake and, parking again, decides itself. (Ours too can still hold
        // some: on io_uring a non-blocking poll collects only the completions the kernel had
        // deferred before it, not those its own submissions just caused; our wait takes them.)
        // What this cannot see: a worker whose wait already returned with events it has not
        // dispatched yet. With several workers we therefore jump only if a second look,
        // `ADVANCE_GRACE` later, still finds nothing able to run. (tokio, whose one driver is
        // polled by whoever jumps, allows virtual time on its current-thread runtime only.)
        self.poll_reactor_as_driver(|| self.remote().reactor.maintain());
        if !self.nothing_can_run() || shared.remotes.iter().any(|r| r.reactor.has_undispatched_events()) {
            return AutoAdvance::NotNow;
        }
        if !looked && shared.remotes.len() > 1 {
            self.advance_looked.set(true);
            return AutoAdvance::LookAgain;
        }
        if !shared.clock.advance_to_tick(t) {
            // Past the furthest the clock goes: it never fires, so there is nothing to advance to.
            return AutoAdvance::NotNow;
        }
        for r in shared.remotes.iter() {
            r.timers.process();
        }
        AutoAdvance::Advanced
    }

    /// Queues a task woken (or spawned) on this worker.
    fn schedule_local(&self, core: &mut Core, task: Notified<Sched>, kind: Push) {
        let shared = &*self.shared;
        // A wake made by a finished task is its joiner's (or comes from dropping a detached
        // task's output: `context::polled_task_has_completed`). The LIFO slot pays off when the
        // woken task consumes what the waker just produced and the two go back and forth; a joiner
        // mostly goes on to await its next child (a fan-in), so running it first only finds that
        // child unfinished: one wasted poll, waker registration and wake per child (360 of the
        // 1,660 instructions of a spawn + join on one worker). At the back it runs once the
        // children queued before it have run, as on the current-thread runtime.
        let kind = match kind {
            Push::Lifo if context::polled_task_has_completed() => Push::Back,
            kind => kind,
        };
        let notify = match kind {
            Push::Back => {
                core.run_queue.push_back(task, |batch| shared.inject.push_batch(batch));
                true
            }
            Push::Lifo => {
                let prev = self.remote().lifo.swap(task.into_raw().as_ptr(), AcqRel);
                match NonNull::new(prev) {
                    Some(p) => {
                        // SAFETY: the slot held a `Notified<Sched>` raw pointer, now ours.
                        let prev = unsafe { Notified::<Sched>::from_raw_owned(p) };
                        core.run_queue.push_back(prev, |batch| shared.inject.push_batch(batch));
                        true
                    }
                    None => false,
                }
            }
        };
        if notify {
            if self.in_driver.get() {
                // We are awake (dispatching inside our park) and run our queue next; whether a
                // sibling is needed is decided once the park returns.
                self.notify_deferred.set(true);
            } else {
                shared.notify_parked();
            }
        }
    }

    /// Whether this worker has more queued than the next task it runs itself.
    fn has_surplus_work(&self) -> bool {
        self.core.try_borrow().map(|c| !c.run_queue.is_empty()).unwrap_or(false)
    }
}

#[derive(Copy, Clone)]
enum Push {
    Back,
    Lifo,
}

impl Shared {
    fn notify_parked(&self) {
        if let Some(w) = self.idle.worker_to_notify() {
            self.remotes[w].unparker.unpark();
        }
    }

    fn has_visible_work(&self) -> bool {
        !self.inject.is_empty() || self.remotes.iter().any(|r| !r.stealer.is_empty() || !r.lifo.load(Relaxed).is_null())
    }

    /// The worker of this runtime running on the current thread, if any.
    fn current_worker(self: &Arc<Self>) -> Option<&WorkerCtx> {
        let w = context::worker();
        if w.is_null() {
            return None;
        }
        // SAFETY: a non-null worker pointer refers to the `WorkerCtx` on this thread's stack,
        // alive for the whole time it is registered in the context (see `run_worker`).
        let w = unsafe { &*w };
        Arc::ptr_eq(&w.shared, self).then_some(w)
    }

    fn schedule(self: &Arc<Self>, task: Notified<Sched>, kind: Push) {
        if let Some(w) = self.current_worker() {
            if let Ok(mut core) = w.core.try_borrow_mut() {
                return w.schedule_local(&mut core, task, kind);
            }
        }
        self.inject.push(task);
        self.notify_parked();
    }

    #[track_caller]
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join) = new_task(future, Sched(self.clone()), context::next_task_id(), meta);
        match self.owned.bind(task) {
            Ok(()) => self.schedule(notified, Push::Back),
            Err(task) => {
                drop(notified);
                task.shutdown();
            }
        }
        join
    }

    /// Spawns a `!Send` task on the current worker.
    ///
    /// # Panics
    /// If the current thread is not a worker of this runtime.
    #[track_caller]
    pub(crate) fn spawn_local<F>(self: &Arc<Self>, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let Some(w) = self.current_worker() else {
            panic!(
                "spindle::spawn_local must be called from a task running on the runtime's worker \
                 threads (a !Send task stays on the worker that spawned it); from `Runtime::block_on` \
                 on a multi-thread runtime use `spindle::spawn`, or a current-thread runtime"
            );
        };
        let sched = LocalSched { shared: self.clone(), worker: w.index };
        // SAFETY: local tasks are polled only by worker `w.index` (its local queue is never stolen,
        // and remote wakes go to its own local inject queue) and shut down only by that worker
        // before it exits.
        let (task, notified, join) =
            unsafe { new_local_task(future, sched, context::next_task_id(), TaskMeta { local: true, ..meta }) };
        match self.remotes[w.index].local_owned.bind(task) {
            Ok(()) => match w.core.try_borrow_mut() {
                Ok(mut core) => core.local_queue.push_back(notified),
                Err(_) => self.remotes[w.index].local_inject.push(notified),
            },
            Err(task) => {
                drop(notified);
                task.shutdown();
            }
        }
        join
    }

    /// The timer shard a timer polled on this thread joins: the current worker's, or worker 0's
    /// for threads that are not workers (such as `block_on` callers).
    pub(crate) fn timer_shard(self: &Arc<Self>) -> Arc<Shard> {
        match self.current_worker() {
            Some(w) => w.remote().timers.clone(),
            None => self.remotes[0].timers.clone(),
        }
    }

    /// With a paused clock, wakes worker 0 to re-check whether virtual time may jump (called when
    /// a `block_on` thread or the blocking pool goes idle).
    pub(crate) fn nudge_if_paused(&self) {
        if self.clock.is_paused() {
            self.remotes[0].unparker.unpark();
        }
    }

    /// The reactor an fd created on this thread registers with: the current worker's, or, for
    /// threads that are not workers, the workers' in turn ([`next_reactor`](Self::next_reactor)).
    pub(crate) fn reactor(self: &Arc<Self>) -> Arc<Reactor> {
        match self.current_worker() {
            Some(w) => w.remote().reactor.clone(),
            None => self.next_reactor(),
        }
    }

    /// The workers' reactors in turn: for fds whose creator says nothing about where they will
    /// be used (accepted connections, usually handed to a task of their own; fds created off
    /// the workers). A registration's events are dispatched by its reactor's worker, which
    /// wakes the waiting task onto its own queue, so tasks follow their sockets: registered all
    /// with the acceptor's worker, every connection's readiness was dispatched by that one
    /// worker and the others only got work by stealing it (measured, echo on two epoll workers:
    /// 3.6 us per round trip, spread 3.2 us or better).
    pub(crate) fn next_reactor(&self) -> Arc<Reactor> {
        let i = self.reactor_turn.fetch_add(1, Relaxed) % self.remotes.len();
        self.remotes[i].reactor.clone()
    }

    /// Fires due timers of every worker.
    pub(crate) fn process_timers(&self) {
        for r in self.remotes.iter() {
            r.timers.process();
        }
    }

    /// Worker `index`'s counters.
    ///
    /// # Panics
    /// If `index` is not below the number of workers.
    pub(crate) fn worker_metrics(&self, index: usize) -> &WorkerMetrics {
        &self.remotes[index].metrics
    }

    /// Tasks queued on worker `index` (its run queue and LIFO slot; racy).
    ///
    /// # Panics
    /// If `index` is not below the number of workers.
    pub(crate) fn local_queue_depth(&self, index: usize) -> usize {
        let r = &self.remotes[index];
        r.stealer.len() + usize::from(!r.lifo.load(Relaxed).is_null())
    }

    /// Tasks in the inject queue (racy).
    pub(crate) fn global_queue_depth(&self) -> usize {
        self.inject.len()
    }

    pub(crate) fn num_workers(&self) -> usize {
        self.remotes.len()
    }

    pub(crate) fn num_alive_tasks(&self) -> usize {
        self.owned.len() + self.remotes.iter().map(|r| r.local_owned.len()).sum::<usize>()
    }

    /// Turns on long-poll detection (once, at the start).
    pub(crate) fn poll_watch(&self) -> Option<Arc<super::watchdog::PollWatch>> {
        self.poll_watch.get().cloned()
    }

    pub(crate) fn set_poll_watch(&self, watch: Arc<super::watchdog::PollWatch>) {
        let _ = self.poll_watch.set(watch);
    }

    /// Calls `f` with every live task's header, `spawn_local` ones included (see
    /// `OwnedTasks::for_each`).
    pub(crate) fn for_each_task(&self, f: &mut dyn FnMut(&spindle_core::task::Header)) {
        self.owned.for_each(&mut *f);
        for r in self.remotes.iter() {
            r.local_owned.for_each(&mut *f);
        }
    }
}

impl Workers {
    /// Stops the workers and drops every task. Waits for workers up to `timeout` (forever if
    /// `None`); returns whether they all stopped. Safe to call more than once.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let shared = &*self.shared;
        shared.shutdown.store(true, Release);
        for r in shared.remotes.iter() {
            r.unparker.unpark();
        }
        // A worker cannot wait for itself (the runtime dropped inside one of its own tasks).
        let on_own_worker = self.shared.current_worker_is_ours();
        let expected = self.threads.lock().unwrap_or_else(|e| e.into_inner()).len() - usize::from(on_own_worker);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut exited = shared.exited.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = true;
        while *exited < expected {
            match deadline {
                None => exited = shared.exited_cv.wait(exited).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        all = false;
                        break;
                    }
                    exited = shared.exited_cv.wait_timeout(exited, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        drop(exited);
        // Drop the `Send` tasks here. A task still being polled by a stuck worker is only marked
        // cancelled; that worker drops it when its poll returns.
        let _enter = context::set_scheduler(Scheduler::MultiThread(self.shared.clone()));
        shared.owned.close_and_shutdown_all();
        while shared.inject.pop().is_some() {}
        // Nobody fires this runtime's timers any more: sleeps still waiting in them move to the
        // shard of whoever polls them next.
        for r in shared.remotes.iter() {
            r.timers.close();
        }
        for r in shared.remotes.iter() {
            if let Some(p) = NonNull::new(r.lifo.swap(ptr::null_mut(), Acquire)) {
                // SAFETY: the slot holds `Notified<Sched>` raw pointers; the swap made it ours.
                drop(unsafe { Notified::<Sched>::from_raw_owned(p) });
            }
        }
        {
            // Exited workers now shut their reactors down (see `run_worker`).
            let _g = shared.exited.lock().unwrap_or_else(|e| e.into_inner());
            shared.tasks_dropped.store(true, Release);
            shared.exited_cv.notify_all();
        }
        if on_own_worker {
            // This worker's own reactor: it is still running (this task), so shut it down here.
            if let Some(w) = self.shared.current_worker() {
                w.remote().reactor.shutdown();
            }
        }
        if all && !on_own_worker {
            for t in self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let _ = t.join();
            }
        }
        all
    }
}

impl Shared {
    fn current_worker_is_ours(self: &Arc<Self>) -> bool {
        self.current_worker().is_some()
    }
}

impl Schedule for Sched {
    fn schedule(&self, task: Notified<Self>) {
        self.0.schedule(task, Push::Lifo)
    }
    fn yield_now(&self, task: Notified<Self>) {
        self.0.schedule(task, Push::Back)
    }
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.0.owned.release(task)
    }
}

impl Schedule for LocalSched {
    fn schedule(&self, task: Notified<Self>) {
        if let Some(w) = self.shared.current_worker() {
            if w.index == self.worker {
                if let Ok(mut core) = w.core.try_borrow_mut() {
                    core.local_queue.push_back(task);
                    return;
                }
            }
        }
        let remote = &self.shared.remotes[self.worker];
        remote.local_inject.push(task);
        remote.unparker.unpark();
    }
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.shared.remotes[self.worker].local_owned.release(task)
    }
}
