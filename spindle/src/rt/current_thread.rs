//! The current-thread runtime: one run queue, driven by whichever thread calls `block_on`.
//!
//! # Contract
//!
//! - Built with `bind_to_driving_thread`, only the first thread that calls `block_on` may drive
//!   it (elsewhere `block_on` panics): its reactor is then pinned to that thread (on io_uring a
//!   single-issuer ring with deferred task work), otherwise shared (any driving thread may wait
//!   on it).
//! - `Shared` is the runtime: an inject queue for wakes and spawns from other threads, the task
//!   registry, and the `Core` (local run queue + driver) which exactly one thread holds while it
//!   drives the runtime in `block_on`. Wakes on the driving thread push to the local queue (or,
//!   while it is parked in its driver dispatching I/O, to `Driving::deferred`, moved to the local
//!   queue when the park returns) and never unpark it: that thread is awake by definition and
//!   looks at its queues before it parks again, so such a wake costs no syscall. Everything else
//!   goes through the inject queue and unparks the driver. The main future's waker likewise only
//!   unparks when it fires off the driving thread.
//! - Local (`spawn_local`) tasks are bound to the first thread that drove the runtime: only that
//!   thread may drive it afterwards while local tasks live (`block_on` elsewhere panics with a
//!   message), and only that thread drops them at shutdown (elsewhere they are leaked, with a warning).
//! - Fairness: the inject queue is checked first every `GLOBAL_INTERVAL` polls, and the main future
//!   is polled as soon as its waker fires (checked after every task).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

use spindle_core::loom::{AtomicBool, AtomicUsize};
use spindle_core::queue::inject::Inject;
use spindle_core::task::{new_local_task, new_task, JoinHandle, Notified, Schedule, Task, TaskMeta};

use super::blocking::Spawner;
use super::metrics::{BusyClock, WorkerMetrics};
use super::owned::OwnedTasks;
use super::park::{Driver, Unparker};
use super::{context, Scheduler};
use crate::driver::Reactor;
use crate::time::{Clock, Shard};

const GLOBAL_INTERVAL: u32 = 31;

pub(crate) struct Shared {
    /// Long-poll detection and this thread's slot in it, if configured (`rt::watchdog`).
    poll_watch: OnceLock<(Arc<super::watchdog::PollWatch>, usize)>,
    inject: Inject<CtSched>,
    owned: OwnedTasks<CtSched>,
    core: Mutex<Option<Box<Core>>>,
    unparker: Unparker,
    /// Set by the main future's waker.
    main_woken: AtomicBool,
    /// The thread local tasks are bound to.
    local_owner: OnceLock<ThreadId>,
    /// Local tasks registered and not yet released: only while there are some is the runtime
    /// bound to `local_owner` (its `Send` tasks never are).
    local_live: AtomicUsize,
    /// Built with `bind_to_driving_thread`: the only thread that may drive the runtime, set by
    /// the first `block_on` (on io_uring, the owner of the runtime's single-issuer ring).
    driver_owner: Option<OnceLock<ThreadId>>,
    pub(crate) blocking: Spawner,
    pub(crate) clock: Arc<Clock>,
    pub(crate) timers: Arc<Shard>,
    pub(crate) reactor: Arc<Reactor>,
    /// Set when this runtime is one core of a per-core runtime: that runtime, this core's index
    /// and the number of cores.
    core_of: OnceLock<(Weak<super::per_core::Shared>, usize, usize)>,
    /// This runtime's (or core's) counters, written by the driving thread (`rt::metrics`).
    pub(crate) metrics: WorkerMetrics,
}

struct Core {
    queue: VecDeque<Notified<CtSched>>,
    driver: Driver,
    tick: u32,
}

/// The scheduler handle stored in each task.
pub(crate) struct CtSched(Arc<Shared>);

/// The state of a thread driving the runtime, reachable from its thread-local context.
pub(crate) struct Driving {
    shared: Arc<Shared>,
    /// Always `Some` while driving; taken back into `Shared::core` on drop (also on panic).
    core: RefCell<Option<Box<Core>>>,
    /// Tasks woken on this thread while `core` is borrowed (during `park_until`, which dispatches
    /// readiness and completions): moved to the local queue once the park returns.
    deferred: RefCell<VecDeque<Notified<CtSched>>>,
    prev: std::cell::Cell<*const Driving>,
    /// This thread's busy time driving the runtime (added to its metrics when it parks, at
    /// maintenance and when it stops driving).
    busy: BusyClock,
}

impl Driving {
    /// The reactor of the runtime this thread drives.
    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.shared.reactor
    }

    /// The runtime this thread drives.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn core(&self) -> std::cell::RefMut<'_, Core> {
        std::cell::RefMut::map(self.core.borrow_mut(), |c| &mut **c.as_mut().expect("core present while driving"))
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        context::set_driving(self.prev.get());
        self.busy.pause(&self.shared.metrics);
        let mut core = self.core.borrow_mut().take();
        if let Some(core) = core.as_mut() {
            core.queue.append(&mut self.deferred.borrow_mut());
            // What waits for the next driver (tasks spawned by the main future, say).
            self.shared.metrics.set_queue_depth(core.queue.len());
        }
        *self.shared.core.lock().unwrap_or_else(|e| e.into_inner()) = core;
        // Ops and closes queued for this thread's next wait go to the kernel now, not whenever
        // the runtime is driven again.
        self.shared.reactor.flush_submissions();
    }
}

impl Shared {
    pub(crate) fn new(
        blocking: Spawner,
        clock: Arc<Clock>,
        backend: crate::driver::Backend,
        bind_to_driving_thread: bool,
    ) -> std::io::Result<Arc<Shared>> {
        let driver =
            if bind_to_driving_thread { Driver::with_pinned_reactor(backend)? } else { Driver::with_reactor(backend)? };
        // (A per-core runtime gives its cores' reactors its own id afterwards.)
        driver.reactor().expect("a reactor driver").set_owner(super::next_runtime_id());
        let timers = Arc::new(Shard::new(clock.clone(), driver.unparker()));
        Ok(Arc::new(Shared {
            reactor: driver.reactor().expect("a reactor driver").clone(),
            clock,
            timers,
            inject: Inject::new(),
            owned: OwnedTasks::new(1),
            unparker: driver.unparker(),
            core: Mutex::new(Some(Box::new(Core { queue: VecDeque::with_capacity(256), driver, tick: 0 }))),
            main_woken: AtomicBool::new(false),
            local_owner: OnceLock::new(),
            local_live: AtomicUsize::new(0),
            driver_owner: bind_to_driving_thread.then(OnceLock::new),
            blocking,
            core_of: OnceLock::new(),
            metrics: WorkerMetrics::new(),
            poll_watch: OnceLock::new(),
        }))
    }

    /// Makes this runtime core `index` of the `cores` of the per-core runtime `of` (once, at its
    /// start).
    pub(crate) fn set_core_of(&self, of: Weak<super::per_core::Shared>, index: usize, cores: usize) {
        let _ = self.core_of.set((of, index, cores));
    }

    /// The per-core runtime this runtime is a core of (while it lives).
    pub(crate) fn per_core(&self) -> Option<Arc<super::per_core::Shared>> {
        self.core_of.get()?.0.upgrade()
    }

    /// The number of cores of the per-core runtime this runtime is a core of (1 if it is not).
    pub(crate) fn num_cores(&self) -> usize {
        self.core_of.get().map_or(1, |c| c.2)
    }

    /// Whether this runtime is a core of a per-core runtime.
    pub(crate) fn is_core(&self) -> bool {
        self.core_of.get().is_some()
    }

    /// The address of the per-core runtime this runtime is a core of (an identity only).
    pub(crate) fn per_core_id(&self) -> Option<usize> {
        self.core_of.get().map(|c| c.0.as_ptr() as usize)
    }

    /// This runtime's index among the cores of its per-core runtime, if it is one.
    pub(crate) fn core_index(&self) -> Option<usize> {
        self.core_of.get().map(|c| c.1)
    }

    fn schedule(self: &Arc<Self>, task: Notified<CtSched>) {
        let d = context::driving();
        if !d.is_null() {
            // SAFETY: `driving()` is only non-null while the `Driving` it points to lives on this
            // thread's stack inside `block_on`.
            let d = unsafe { &*d };
            if Arc::ptr_eq(&d.shared, self) {
                if let Ok(mut core) = d.core.try_borrow_mut() {
                    if let Some(core) = core.as_mut() {
                        core.queue.push_back(task);
                        return;
                    }
                }
                // The core is borrowed: we are inside the driver's park, dispatching. This thread
                // runs its queues again before it can park: no unpark (it would cost an eventfd
                // write now and a wasted trip through the poller to read it back).
                if let Ok(mut deferred) = d.deferred.try_borrow_mut() {
                    deferred.push_back(task);
                    return;
                }
            }
        }
        self.inject.push(task);
        self.unparker.unpark();
    }

    /// Whether the current thread drives this runtime (inside its `block_on`).
    pub(crate) fn is_driving_thread(self: &Arc<Self>) -> bool {
        let d = context::driving();
        // SAFETY: as in `schedule`: a non-null `driving()` points at a live `Driving` on this
        // thread's stack.
        !d.is_null() && Arc::ptr_eq(&unsafe { &*d }.shared, self)
    }

    #[track_caller]
    pub(crate) fn spawn<F>(self: &Arc<Self>, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, notified, join) = new_task(future, CtSched(self.clone()), context::next_task_id(), meta);
        self.bind_and_schedule(task, notified);
        join
    }

    /// Spawns a `!Send` task bound to this thread.
    ///
    /// # Panics
    /// If local tasks of this runtime are bound to another thread, or another thread drives the
    /// runtime right now (it would poll the task: a per-core runtime's cores are always driven
    /// by their own threads).
    #[track_caller]
    pub(crate) fn spawn_local<F>(self: &Arc<Self>, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        let me = std::thread::current().id();
        // On the driving thread (the usual case: a task spawning) no other thread can start
        // driving meanwhile, so no lock. Elsewhere the core's lock is held until the task is
        // registered: a `block_on` starting on another thread takes the core under this lock,
        // then sees the registered task and its owner, and refuses.
        let idle_core = if self.is_driving_thread() {
            None
        } else {
            let core = self.core.lock().unwrap_or_else(|e| e.into_inner());
            if core.is_none() {
                drop(core);
                panic!(
                    "spindle::spawn_local must be called on the thread that drives this runtime (from one of \
                     its tasks, or its block_on); another thread drives it now{}",
                    if self.is_core() { " (each core of a per-core runtime is driven by its own thread)" } else { "" }
                );
            }
            Some(core)
        };
        let owner = *self.local_owner.get_or_init(|| me);
        if owner != me {
            drop(idle_core);
            panic!("spindle: spawn_local on a current-thread runtime whose local tasks belong to another thread");
        }
        // SAFETY: local tasks are only polled by the thread driving the runtime, and that is
        // `local_owner` (this thread): either this thread drives it now, or nobody does and any
        // later `block_on` on another thread refuses to drive it while a task is registered (it
        // takes the core under the lock held here, so it sees this task); they are only shut
        // down on this thread (elsewhere they are leaked).
        let (task, notified, join) = unsafe {
            new_local_task(future, CtSched(self.clone()), context::next_task_id(), TaskMeta { local: true, ..meta })
        };
        let bound = self.owned.bind(task);
        if bound.is_ok() {
            // Counted before it can run (it is scheduled below), so its release comes after.
            self.local_live.fetch_add(1, Relaxed);
        }
        drop(idle_core);
        self.schedule_bound(bound, notified);
        join
    }

    fn bind_and_schedule(self: &Arc<Self>, task: Task<CtSched>, notified: Notified<CtSched>) {
        self.schedule_bound(self.owned.bind(task), notified)
    }

    /// Schedules a task `OwnedTasks::bind` registered, or cancels it if the runtime refused it.
    fn schedule_bound(self: &Arc<Self>, bound: Result<(), Task<CtSched>>, notified: Notified<CtSched>) {
        match bound {
            Ok(()) => self.schedule(notified),
            Err(task) => {
                // The runtime is shutting down: the task completes as cancelled right away.
                drop(notified);
                task.shutdown();
            }
        }
    }

    #[track_caller]
    pub(crate) fn block_on<F: Future>(self: &Arc<Self>, future: F) -> F::Output {
        let _enter = context::enter_runtime(Scheduler::CurrentThread(self.clone()));
        let core = self.core.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(core) = core else {
            // Another thread drives the runtime: wait for the future alone; tasks run over there.
            return super::park_on(future, None);
        };
        let me = std::thread::current().id();
        if let Some(owner) = self.driver_owner.as_ref().map(|o| *o.get_or_init(|| me)) {
            if owner != me {
                *self.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
                panic!(
                    "spindle: this current-thread runtime was built with `bind_to_driving_thread(true)` and \
                     belongs to thread {owner:?}; block_on cannot drive it from another thread"
                );
            }
        }
        if let Some(owner) = self.local_owner.get() {
            if *owner != me && self.local_live.load(Acquire) > 0 {
                *self.core.lock().unwrap_or_else(|e| e.into_inner()) = Some(core);
                panic!(
                    "spindle: this current-thread runtime has spawn_local tasks bound to thread {owner:?}; \
                     block_on from another thread cannot run them"
                );
            }
        }
        let driving = Driving {
            shared: self.clone(),
            core: RefCell::new(Some(core)),
            deferred: RefCell::new(VecDeque::new()),
            prev: std::cell::Cell::new(std::ptr::null()),
            busy: BusyClock::stopped(),
        };
        driving.busy.resume();
        driving.prev.set(context::set_driving(&driving));
        let waker = Waker::from(Arc::new(MainWaker(self.clone())));
        let mut cx = Context::from_waker(&waker);
        let mut future = pin!(future);
        self.main_woken.store(true, Relaxed);
        loop {
            if self.main_woken.swap(false, Acquire) {
                let scope = context::start_poll(None);
                let polled = future.as_mut().poll(&mut cx);
                context::end_poll(scope);
                if let Poll::Ready(v) = polled {
                    return v;
                }
            }
            self.run_tasks(&driving);
        }
    }

    /// Runs queued tasks until the main future is woken or there is nothing to do (then parks).
    fn run_tasks(&self, driving: &Driving) {
        // Set once at build, before any task exists: read once per batch, not per poll.
        let watch = self.poll_watch.get();
        loop {
            let task = {
                let mut core = driving.core();
                core.tick = core.tick.wrapping_add(1);
                if core.tick % GLOBAL_INTERVAL == 0 {
                    // Maintenance: a busy runtime still fires its timers and, every other time,
                    // polls its reactor without blocking (dispatching readiness and completions,
                    // and submitting the io_uring entries its tasks queued, which otherwise wait
                    // for the next park). The core is not borrowed meanwhile: dispatching wakes
                    // tasks.
                    let poll_io = core.tick % (2 * GLOBAL_INTERVAL) == 0;
                    self.metrics.set_queue_depth(core.queue.len());
                    drop(core);
                    driving.busy.lap(&self.metrics);
                    if self.timers.has_due() {
                        self.timers.process();
                    }
                    if poll_io {
                        self.reactor.maintain();
                    }
                    core = driving.core();
                    self.inject.pop().or_else(|| core.queue.pop_front())
                } else {
                    core.queue.pop_front().or_else(|| self.inject.pop())
                }
            };
            match task {
                Some(task) => {
                    self.metrics.polled();
                    let prev = context::start_poll(Some(task.header()));
                    match watch {
                        None => task.run(),
                        Some((watch, slot)) => watch.run(*slot, task),
                    }
                    context::end_poll(prev);
                    if self.main_woken.load(Relaxed) {
                        return;
                    }
                }
                None => {
                    if self.main_woken.load(Acquire) || self.timers.process() > 0 || !self.inject.is_empty() {
                        return;
                    }
                    if let Some(t) =
                        self.timers.next_expiration().filter(|_| self.clock.is_paused() && self.blocking.is_idle())
                    {
                        // Virtual time and nothing queued: first take the I/O that is ready
                        // (a reply already in the kernel, entries our tasks queued), as tokio
                        // does with a zero-timeout poll of its driver. Jumping at once fired
                        // every timeout around in-process I/O. (On io_uring that poll collects
                        // only the completions deferred before it; any its own submissions
                        // caused are taken by the park below.)
                        self.reactor.maintain();
                        if self.has_work_after_poll(driving) {
                            return;
                        }
                        // Still nothing can run: jump to the next timer instead of sleeping (a
                        // paused clock never reaches it by waiting), unless completions wait for
                        // the park. (A timer past the furthest the clock goes never fires: park
                        // instead of trying again and again.)
                        if !self.reactor.has_undispatched_events() && self.clock.advance_to_tick(t) {
                            self.timers.process();
                            return;
                        }
                    }
                    // Park until woken or the next timer; wakes from other threads push to
                    // `inject` and unpark us first.
                    let next = self.timers.prepare_park();
                    let timeout = next.and_then(|t| self.clock.until_tick(t));
                    {
                        let mut core = driving.core();
                        self.metrics.parked();
                        self.metrics.set_queue_depth(0);
                        driving.busy.pause(&self.metrics);
                        core.driver.park_until(timeout);
                        driving.busy.resume();
                        let mut deferred = driving.deferred.borrow_mut();
                        core.queue.append(&mut deferred);
                    }
                    self.timers.unparked();
                    self.timers.process();
                    return;
                }
            }
        }
    }

    /// After a non-blocking poll of the reactor by the driving thread: whether it made anything
    /// runnable (a queued task or the main future).
    fn has_work_after_poll(&self, driving: &Driving) -> bool {
        self.main_woken.load(Acquire) || !self.inject.is_empty() || !driving.core().queue.is_empty()
    }

    /// With a paused clock, wakes the driving thread to re-check whether virtual time may jump
    /// (called when the blocking pool goes idle).
    pub(crate) fn nudge_if_paused(&self) {
        if self.clock.is_paused() {
            self.unparker.unpark();
        }
    }

    /// Counts a poll refused by an exhausted cooperative budget (called on the driving thread, by
    /// `context::coop_hook`).
    pub(crate) fn count_forced_yield(&self) {
        self.metrics.forced_yield();
    }

    /// Tasks in the inject queue (racy).
    pub(crate) fn global_queue_depth(&self) -> usize {
        self.inject.len()
    }

    pub(crate) fn num_alive_tasks(&self) -> usize {
        self.owned.len()
    }

    /// Turns on long-poll detection, this runtime's polls going to slot `slot` (once, at the
    /// start).
    pub(crate) fn poll_watch(&self) -> Option<Arc<super::watchdog::PollWatch>> {
        self.poll_watch.get().map(|(w, _)| w.clone())
    }

    pub(crate) fn set_poll_watch(&self, watch: Arc<super::watchdog::PollWatch>, slot: usize) {
        let _ = self.poll_watch.set((watch, slot));
    }

    /// Calls `f` with every live task's header (see `OwnedTasks::for_each`).
    pub(crate) fn for_each_task(&self, f: &mut dyn FnMut(&spindle_core::task::Header)) {
        self.owned.for_each(f)
    }

    /// Drops every task and shuts the reactor down; called when the runtime is dropped.
    pub(crate) fn shutdown(self: &Arc<Self>) {
        self.drop_tasks();
        // Nobody drives the reactor any more: I/O objects still registered with it fail from now
        // on instead of waiting forever, and ops orphaned by the tasks just dropped are reaped.
        self.reactor.shutdown();
    }

    /// Drops every task (the first half of [`shutdown`](Self::shutdown); a per-core runtime's
    /// cores shut their reactors down once every core dropped its tasks).
    pub(crate) fn drop_tasks(self: &Arc<Self>) {
        let _enter = context::set_scheduler(Scheduler::CurrentThread(self.clone()));
        let core = self.core.lock().unwrap_or_else(|e| e.into_inner()).take();
        let here = std::thread::current().id();
        match self.local_owner.get() {
            Some(owner) if *owner != here => {
                // `Send` tasks are dropped here; local ones may only be dropped on their thread.
                let n = self.owned.close_and_shutdown_all_but(|h| h.meta().local);
                if n > 0 {
                    eprintln!(
                        "spindle: runtime dropped on a thread other than the one its spawn_local tasks \
                         belong to; leaking {n} local task(s) instead of dropping them on the wrong thread"
                    );
                }
            }
            _ => self.owned.close_and_shutdown_all(),
        }
        // Queue entries hold references only; drop them.
        if let Some(mut core) = core {
            core.queue.clear();
        }
        while self.inject.pop().is_some() {}
        // Nobody fires this runtime's timers any more: sleeps still waiting in them move to the
        // shard of whoever polls them next.
        self.timers.close();
    }
}

struct MainWaker(Arc<Shared>);

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.main_woken.store(true, Release);
        // On the driving thread (a task or an I/O dispatch woke the main future) the flag is
        // seen before the next park: no unpark, which would cost a syscall.
        if !self.0.is_driving_thread() {
            self.0.unparker.unpark();
        }
    }
}

impl Schedule for CtSched {
    fn schedule(&self, task: Notified<Self>) {
        self.0.schedule(task)
    }
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        let released = self.0.owned.release(task);
        if released.is_some() && task.header().meta().local {
            // Release: a `block_on` elsewhere that sees no local task left also sees it gone.
            self.0.local_live.fetch_sub(1, Release);
        }
        released
    }
}
