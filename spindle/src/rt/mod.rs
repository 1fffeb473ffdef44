//! Runtimes: current-thread, multi-thread work-stealing, per-core (one current-thread runtime per
//! pinned thread, [`per_core`]), the blocking pool, and the per-thread context.
//!
//! # Contract
//!
//! - A [`Runtime`] owns its workers (or its single-thread core), its blocking pool and every task
//!   spawned on it. [`Handle`] is a cheap clone that spawns onto it from anywhere.
//! - `spawn` finds the runtime through the thread-local context ([`context`]), set on worker threads
//!   and inside `block_on`. Outside a runtime it panics with the fix in the message; `Handle::try_current`
//!   reports the same condition as an error.
//! - `block_on` refuses to run on a thread that is already inside a runtime (it would stall it).
//! - Workers park through one driver interface ([`park`]); the time and I/O drivers plug in there.
//! - Every worker counts its polls, parks, steals, budget-forced yields and busy time in its own
//!   [`metrics::WorkerMetrics`], written only by its thread (read through [`RuntimeMetrics`]).
//! - Dropping a runtime drops every task (destructors run, with the runtime as the current context,
//!   local tasks on their own thread), waits for blocking jobs (bounded by `shutdown_timeout`) and
//!   joins its threads. A task's panic is caught in the task cell and never reaches a worker.
//!
//! ```
//! let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
//! let answer = rt.block_on(async { spindle::spawn(async { 6 * 7 }).await.unwrap() });
//! assert_eq!(answer, 42);
//! ```

pub(crate) mod blocking;
pub use dump::{Dump, TaskInfo, TaskState};
pub use watchdog::LongPoll;
pub(crate) mod context;
pub(crate) mod current_thread;
mod dump;
pub(crate) mod metrics;
pub(crate) mod multi_thread;
pub(crate) mod owned;
pub(crate) mod park;
pub(crate) mod per_core;
mod watchdog;

use spindle_core::loom::AtomicUsize;
use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use spindle_core::task::{JoinHandle, TaskMeta};

/// Which runtime a handle points at.
#[derive(Clone)]
pub(crate) enum Scheduler {
    CurrentThread(Arc<current_thread::Shared>),
    MultiThread(Arc<multi_thread::Shared>),
    /// A per-core runtime seen from outside its cores (on a core's thread, the current
    /// scheduler is that core's `CurrentThread`).
    PerCore(Arc<per_core::Shared>),
}

impl Scheduler {
    #[track_caller]
    pub(crate) fn spawn<F>(&self, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Scheduler::CurrentThread(s) => s.spawn(future, meta),
            Scheduler::MultiThread(s) => s.spawn(future, meta),
            Scheduler::PerCore(s) => s.spawn(future, meta),
        }
    }

    #[track_caller]
    pub(crate) fn spawn_local<F>(&self, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        match self {
            Scheduler::CurrentThread(s) => s.spawn_local(future, meta),
            Scheduler::MultiThread(s) => s.spawn_local(future, meta),
            Scheduler::PerCore(_) => panic!(
                "spindle::spawn_local on a per-core runtime must be called from a task running on one of \
                 its cores (the task stays on that core); from `Runtime::block_on` use `spindle::spawn`, \
                 or `Handle::spawn_on` to pick the core"
            ),
        }
    }

    pub(crate) fn clock(&self) -> &Arc<crate::time::Clock> {
        match self {
            Scheduler::CurrentThread(s) => &s.clock,
            Scheduler::MultiThread(s) => &s.clock,
            Scheduler::PerCore(s) => &s.clock,
        }
    }

    pub(crate) fn blocking(&self) -> &blocking::Spawner {
        match self {
            Scheduler::CurrentThread(s) => &s.blocking,
            Scheduler::MultiThread(s) => &s.blocking,
            Scheduler::PerCore(s) => &s.blocking,
        }
    }

    /// Every live task of the runtime (of every core, for a core of a per-core runtime).
    pub(crate) fn for_each_task(&self, f: &mut dyn FnMut(&spindle_core::task::Header)) {
        match self {
            Scheduler::CurrentThread(s) => match s.per_core() {
                Some(of) => of.for_each_task(f),
                None => s.for_each_task(f),
            },
            Scheduler::MultiThread(s) => s.for_each_task(f),
            Scheduler::PerCore(s) => s.for_each_task(f),
        }
    }

    /// The runtime's poll timing, if it times polls (one for all cores of a per-core runtime).
    fn poll_watch(&self) -> Option<Arc<watchdog::PollWatch>> {
        match self {
            Scheduler::CurrentThread(s) => match s.per_core() {
                Some(of) => of.cores.first().and_then(|c| c.poll_watch()),
                None => s.poll_watch(),
            },
            Scheduler::MultiThread(s) => s.poll_watch(),
            Scheduler::PerCore(s) => s.cores.first().and_then(|c| c.poll_watch()),
        }
    }
}

/// The flavour of a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuntimeFlavor {
    /// All tasks run on the thread that calls `block_on`.
    CurrentThread,
    /// Tasks run on a pool of work-stealing worker threads.
    MultiThread,
    /// One current-thread runtime per core, each on a thread of its own; a task stays on the
    /// core it was spawned on (see [`Builder::new_per_core`]).
    PerCore,
}

/// Which I/O driver a runtime's workers park in (see [`Builder::io_driver`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IoDriver {
    /// The process's choice: `SPINDLE_DRIVER` if set, else io_uring when the kernel allows it
    /// (probed once per process), else epoll.
    #[default]
    Auto,
    /// io_uring; building the runtime fails with a clear error where the kernel refuses it.
    Uring,
    /// epoll (readiness), whatever the kernel supports.
    Epoll,
}

/// Builds a [`Runtime`] with custom settings, with the names tokio users know.
///
/// ```
/// use spindle::runtime::Builder;
/// let rt = Builder::new_multi_thread()
///     .worker_threads(2)
///     .thread_name("my-worker")
///     .build()
///     .expect("runtime");
/// assert_eq!(rt.block_on(async { 1 }), 1);
/// ```
pub struct Builder {
    flavor: RuntimeFlavor,
    worker_threads: Option<usize>,
    thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    thread_stack_size: Option<usize>,
    max_blocking_threads: usize,
    keep_alive: Duration,
    start_paused: bool,
    io_driver: IoDriver,
    bind_to_driving_thread: bool,
    long_poll: Option<(Duration, watchdog::ReportFn)>,
    task_busy_time: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("flavor", &self.flavor)
            .field("worker_threads", &self.worker_threads)
            .field("thread_stack_size", &self.thread_stack_size)
            .field("max_blocking_threads", &self.max_blocking_threads)
            .field("keep_alive", &self.keep_alive)
            .field("start_paused", &self.start_paused)
            .field("io_driver", &self.io_driver)
            .field("bind_to_driving_thread", &self.bind_to_driving_thread)
            .field("long_poll_threshold", &self.long_poll.as_ref().map(|(t, _)| *t))
            .finish_non_exhaustive()
    }
}

impl Builder {
    fn new(flavor: RuntimeFlavor) -> Builder {
        Builder {
            flavor,
            worker_threads: None,
            thread_name: Arc::new(|| "spindle-worker".to_string()),
            thread_stack_size: None,
            max_blocking_threads: 512,
            keep_alive: Duration::from_secs(10),
            start_paused: false,
            io_driver: IoDriver::Auto,
            bind_to_driving_thread: false,
            long_poll: None,
            task_busy_time: false,
        }
    }

    /// A builder for the multi-thread work-stealing runtime (the default `Runtime`).
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().build().unwrap();
    /// # drop(rt);
    /// ```
    pub fn new_multi_thread() -> Builder {
        Builder::new(RuntimeFlavor::MultiThread)
    }

    /// A builder for the current-thread runtime: tasks run on the thread calling `block_on`.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.block_on(async { 5 }), 5);
    /// ```
    pub fn new_current_thread() -> Builder {
        Builder::new(RuntimeFlavor::CurrentThread)
    }

    /// A builder for the per-core runtime: [`worker_threads`](Self::worker_threads) cores
    /// (default: one per CPU), each a current-thread runtime on a thread of its own, pinned to
    /// one of the CPUs this process may use (in turn), with its own run queue, timers and I/O
    /// driver (on io_uring a single-issuer ring). A task runs on one core for its whole life:
    /// `spindle::spawn` and `spawn_local` inside a task spawn onto the same core, `spawn` from
    /// outside the cores (in `block_on`, or through a [`Handle`]) hands tasks to the cores in turn,
    /// and [`Handle::spawn_on`] to a chosen one. There is no work stealing: each core's share of
    /// the work should be independent of the others' (a server with a
    /// [`TcpSocket`](crate::net::TcpSocket) listener per core on one port, with `SO_REUSEPORT`),
    /// and then no task switch pays for synchronization between cores. Inside a core,
    /// [`Handle::current`] is that core's handle: spawns through it, from any thread, go to that
    /// core.
    ///
    /// I/O objects belong to the core they are created on, and a task's io_uring ops go to the
    /// ring of the core it runs on: create a connection on the core that serves it (accept or
    /// connect in a task of that core). Objects created outside the cores (in `block_on`) are
    /// watched by the core whose task first waits on them; they work from anywhere, at the cost
    /// of a wake-up crossing cores on each event seen by a task of another core.
    ///
    /// Virtual time is not available on it: [`start_paused`](Self::start_paused) fails the
    /// build, [`crate::time::pause`] panics.
    ///
    /// ```
    /// use spindle::runtime::Builder;
    /// let rt = Builder::new_per_core().worker_threads(2).build().unwrap();
    /// // One task per core, each with its own share of the work.
    /// let joins: Vec<_> = (0..2)
    ///     .map(|core| {
    ///         rt.handle().spawn_on(core, async move {
    ///             // Spawned from a core: runs on this core too.
    ///             let part = spindle::spawn(async move { core * 10 }).await.unwrap();
    ///             (spindle::runtime::current_core(), part)
    ///         })
    ///     })
    ///     .collect();
    /// let results = rt.block_on(async {
    ///     let mut v = Vec::new();
    ///     for j in joins {
    ///         v.push(j.await.unwrap());
    ///     }
    ///     v
    /// });
    /// assert_eq!(results, [(Some(0), 0), (Some(1), 10)]);
    /// ```
    pub fn new_per_core() -> Builder {
        Builder::new(RuntimeFlavor::PerCore)
    }

    /// Number of worker threads of a multi-thread runtime, or of cores of a per-core runtime
    /// (default: the number of CPUs). Ignored by the current-thread runtime.
    ///
    /// # Panics
    /// If `n` is zero.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    /// # drop(rt);
    /// ```
    #[track_caller]
    pub fn worker_threads(&mut self, n: usize) -> &mut Builder {
        assert!(n > 0, "spindle: worker_threads must be at least 1");
        self.worker_threads = Some(n);
        self
    }

    /// Name of the runtime's threads (workers and blocking pool).
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().thread_name("db").build().unwrap();
    /// let name = rt.block_on(async {
    ///     spindle::spawn(async { std::thread::current().name().map(String::from) }).await.unwrap()
    /// });
    /// assert_eq!(name.as_deref(), Some("db"));
    /// ```
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Builder {
        let name: String = name.into();
        self.thread_name = Arc::new(move || name.clone());
        self
    }

    /// A function giving each new thread its name.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let n = Arc::new(AtomicUsize::new(0));
    /// let rt = spindle::runtime::Builder::new_multi_thread()
    ///     .thread_name_fn(move || format!("w-{}", n.fetch_add(1, Ordering::Relaxed)))
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn thread_name_fn(&mut self, f: impl Fn() -> String + Send + Sync + 'static) -> &mut Builder {
        self.thread_name = Arc::new(f);
        self
    }

    /// Stack size of the runtime's threads, in bytes.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().thread_stack_size(4 << 20).build().unwrap();
    /// # drop(rt);
    /// ```
    pub fn thread_stack_size(&mut self, bytes: usize) -> &mut Builder {
        self.thread_stack_size = Some(bytes);
        self
    }

    /// Most threads the blocking pool may run at once (default 512); more jobs wait in a queue.
    ///
    /// # Panics
    /// If `n` is zero.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().max_blocking_threads(4).build().unwrap();
    /// # drop(rt);
    /// ```
    #[track_caller]
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Builder {
        assert!(n > 0, "spindle: max_blocking_threads must be at least 1");
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking-pool thread waits for work before it exits (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = spindle::runtime::Builder::new_current_thread()
    ///     .thread_keep_alive(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn thread_keep_alive(&mut self, d: Duration) -> &mut Builder {
        self.keep_alive = d;
        self
    }

    /// Starts the runtime with its clock paused (virtual time; see [`crate::time::pause`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = spindle::runtime::Builder::new_current_thread().start_paused(true).build().unwrap();
    /// rt.block_on(async {
    ///     let t = spindle::time::Instant::now();
    ///     spindle::time::sleep(Duration::from_secs(86_400)).await; // instant
    ///     assert_eq!(t.elapsed(), Duration::from_secs(86_400));
    /// });
    /// ```
    pub fn start_paused(&mut self, paused: bool) -> &mut Builder {
        self.start_paused = paused;
        self
    }

    /// Forces the I/O driver of this runtime, overriding `SPINDLE_DRIVER` (default
    /// [`IoDriver::Auto`]: the process's choice). With [`IoDriver::Uring`], [`build`](Self::build)
    /// fails with a clear error where the kernel refuses io_uring (containers often do). I/O
    /// objects created outside any runtime use the process's choice.
    ///
    /// ```
    /// use spindle::runtime::{Builder, IoDriver};
    /// let rt = Builder::new_current_thread().io_driver(IoDriver::Epoll).build().unwrap();
    /// assert_eq!(rt.handle().io_driver(), "epoll");
    /// ```
    pub fn io_driver(&mut self, driver: IoDriver) -> &mut Builder {
        self.io_driver = driver;
        self
    }

    /// Current-thread runtimes: only the first thread that drives the runtime (calls
    /// `block_on`) may ever drive it (default `false`: any thread may, one at a time, as in
    /// tokio). On io_uring the runtime's ring is then single-issuer with deferred task work, which
    /// the kernel completes with less work: a completion caused by another process (a client's
    /// request) no longer interrupts the thread to be posted, it waits for the thread's next
    /// `io_uring_enter`. Measured, hyper HTTP/1.1 under wrk: server CPU per request 5.2 us -> 4.2
    /// us. `#[spindle::main(flavor = "current_thread")]` and `#[spindle::test]` set it (their
    /// runtime is only ever driven by the thread they run on). Ignored by multi-thread and
    /// per-core runtimes, whose workers and cores always own their rings.
    ///
    /// # Panics
    /// With it set, [`Runtime::block_on`] panics on a thread other than the first that drove the
    /// runtime, on every I/O driver (so a program behaves the same wherever it runs). Dropping
    /// the runtime on another thread is allowed: io_uring operations still in flight are then
    /// left to the kernel until the ring closes, and their buffers are leaked, never freed under
    /// the kernel.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().bind_to_driving_thread(true).build().unwrap();
    /// assert_eq!(rt.block_on(async { 7 }), 7);
    /// let elsewhere = std::thread::scope(|s| {
    ///     s.spawn(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(async {}))).is_err())
    ///         .join()
    ///         .unwrap()
    /// });
    /// assert!(elsewhere, "another thread may not drive it");
    /// ```
    pub fn bind_to_driving_thread(&mut self, bind: bool) -> &mut Builder {
        self.bind_to_driving_thread = bind;
        self
    }

    /// Accepted so tokio code compiles unchanged: every spindle driver is always enabled.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// # drop(rt);
    /// ```
    pub fn enable_all(&mut self) -> &mut Builder {
        self
    }

    /// Reports every task poll that runs longer than `threshold` to `report`: a task that blocks
    /// its thread (a blocking call, a lock held long) or computes without yielding, which stalls
    /// every other task of its worker meanwhile. The report ([`LongPoll`]) names the task (id,
    /// name, spawn location), the worker and how long the poll ran.
    ///
    /// A watchdog thread reports a poll that is still running once it passes the threshold
    /// (checking every quarter of it), so a poll that never returns is reported too; a poll that
    /// returns past the threshold before the watchdog saw it is reported by its worker right
    /// after it returns. Each long poll is reported once. `report` runs on the watchdog thread
    /// or on the worker, so it should be quick (log, count, send on a channel); a panic in it is
    /// caught. Off by default; when on, each poll costs two clock reads and a task reference
    /// taken and dropped more.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// let long = Arc::new(AtomicUsize::new(0));
    /// let l = long.clone();
    /// let rt = spindle::runtime::Builder::new_multi_thread()
    ///     .worker_threads(2)
    ///     .on_long_poll(Duration::from_millis(50), move |p| {
    ///         eprintln!("spindle: {p}");
    ///         l.fetch_add(1, Ordering::Relaxed);
    ///     })
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(200)) })).unwrap();
    /// // The report can come after the `JoinHandle` returned: from the worker just after the
    /// // poll, or from the watchdog thread, which saw it running: wait for it.
    /// let deadline = std::time::Instant::now() + Duration::from_secs(10);
    /// while long.load(Ordering::Relaxed) == 0 && std::time::Instant::now() < deadline {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(long.load(Ordering::Relaxed), 1);
    /// ```
    pub fn on_long_poll(
        &mut self,
        threshold: Duration,
        report: impl Fn(&LongPoll) + Send + Sync + 'static,
    ) -> &mut Builder {
        self.long_poll = Some((threshold, Arc::new(report)));
        self
    }

    /// Times every task poll and adds it up per task: [`TaskInfo::busy`] in a
    /// [`dump`](Runtime::dump) (and the dump's text) then says how much of the runtime's time
    /// each task took, the question "which task is eating the CPU?". Off by default; when on,
    /// each poll costs two clock reads (shared with [`on_long_poll`](Self::on_long_poll)'s
    /// timing), a task reference taken and dropped, and an uncontended lock and a hash-table
    /// update more. The times are kept beside the tasks, not in them: off, it costs nothing.
    /// A poll's time is added as soon as the poll returns; a dump taken meanwhile (the task
    /// may already be running again on another worker) does not count that poll yet.
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).record_task_busy_time(true).build().unwrap();
    /// let busy = spindle::task::Builder::new().name("busy").spawn_on(async {
    ///     for _ in 0..3 {
    ///         std::thread::sleep(Duration::from_millis(2)); // stands in for real work
    ///         spindle::task::yield_now().await;
    ///     }
    ///     std::future::pending::<()>().await
    /// }, rt.handle()).unwrap();
    /// // A poll's time is added just after it returns, so on a multi-thread runtime the task may
    /// // already be polled again elsewhere before its last poll's time shows: wait for the sum.
    /// let deadline = std::time::Instant::now() + Duration::from_secs(10);
    /// let busy_time = || rt.dump().task(busy.id()).map_or(Duration::ZERO, |t| t.busy());
    /// while busy_time() < Duration::from_millis(6) && std::time::Instant::now() < deadline {
    ///     std::thread::yield_now();
    /// }
    /// assert!(busy_time() >= Duration::from_millis(6), "{:?}", busy_time());
    /// assert!(rt.dump().to_string().contains(", busy "));
    /// ```
    pub fn record_task_busy_time(&mut self, on: bool) -> &mut Builder {
        self.task_busy_time = on;
        self
    }

    /// Builds the runtime (starting its worker threads, for the multi-thread flavour).
    ///
    /// Errors if a thread or a driver cannot be created (resource limits), with the cause.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build(&mut self) -> io::Result<Runtime> {
        let backend = match self.io_driver {
            IoDriver::Auto => crate::driver::backend()?,
            IoDriver::Epoll => crate::driver::Backend::Epoll,
            IoDriver::Uring => crate::driver::uring::probe().map(|()| crate::driver::Backend::Uring).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "spindle: Builder::io_driver(IoDriver::Uring) requested, but io_uring is not usable here: {e}"
                    ),
                )
            })?,
        };
        if self.flavor == RuntimeFlavor::PerCore && self.start_paused {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spindle: start_paused is not available on a per-core runtime (each core decides alone \
                 when it is idle, so none may jump the shared clock); use a current-thread or \
                 multi-thread runtime for virtual time",
            ));
        }
        spindle_core::coop::set_hook(context::coop_hook);
        spindle_core::structured::set_detach_hook(crate::structured::detach_hook);
        let name = self.thread_name.clone();
        let pool = blocking::BlockingPool::new(
            self.max_blocking_threads,
            self.keep_alive,
            name.clone(),
            self.thread_stack_size,
        );
        let clock = Arc::new(crate::time::Clock::new(self.start_paused));
        let (scheduler, workers) = match self.flavor {
            RuntimeFlavor::CurrentThread => (
                Scheduler::CurrentThread(current_thread::Shared::new(
                    pool.spawner(),
                    clock,
                    backend,
                    self.bind_to_driving_thread,
                )?),
                None,
            ),
            RuntimeFlavor::MultiThread => {
                let n = self
                    .worker_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
                let (shared, workers) =
                    multi_thread::start(n, &*name, self.thread_stack_size, pool.spawner(), clock, backend)?;
                (Scheduler::MultiThread(shared), Some(workers))
            }
            RuntimeFlavor::PerCore => {
                let n = self
                    .worker_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
                let threads = per_core::ThreadConfig { name: &*name, stack_size: self.thread_stack_size };
                (Scheduler::PerCore(per_core::start(n, threads, pool.spawner(), clock, backend)?), None)
            }
        };
        // The runtime, from the pool's side: a weak reference (the runtime owns the pool).
        let runtime: Arc<dyn Fn() -> Option<Scheduler> + Send + Sync> = match &scheduler {
            Scheduler::CurrentThread(s) => {
                let w = Arc::downgrade(s);
                Arc::new(move || w.upgrade().map(Scheduler::CurrentThread))
            }
            Scheduler::MultiThread(s) => {
                let w = Arc::downgrade(s);
                Arc::new(move || w.upgrade().map(Scheduler::MultiThread))
            }
            Scheduler::PerCore(s) => {
                let w = Arc::downgrade(s);
                Arc::new(move || w.upgrade().map(Scheduler::PerCore))
            }
        };
        // When the last blocking job finishes, a paused clock may be free to jump: let the
        // runtime re-check (a per-core runtime has no virtual time).
        let upgrade = runtime.clone();
        pool.spawner().set_on_idle(Box::new(move || match upgrade() {
            Some(Scheduler::CurrentThread(s)) => s.nudge_if_paused(),
            Some(Scheduler::MultiThread(s)) => s.nudge_if_paused(),
            Some(Scheduler::PerCore(_)) | None => {}
        }));
        let timing = self.long_poll.clone().or_else(|| {
            // Timing without reports (see `record_task_busy_time`).
            self.task_busy_time.then(|| (Duration::MAX, Arc::new(|_: &LongPoll| {}) as watchdog::ReportFn))
        });
        if let Some((threshold, report)) = &timing {
            let slots = match &scheduler {
                Scheduler::CurrentThread(_) => 1,
                Scheduler::MultiThread(s) => s.num_workers(),
                Scheduler::PerCore(s) => s.cores.len(),
            };
            let watch =
                watchdog::PollWatch::start(*threshold, report.clone(), slots, runtime.clone(), self.task_busy_time)?;
            match &scheduler {
                Scheduler::CurrentThread(s) => s.set_poll_watch(watch, 0),
                Scheduler::MultiThread(s) => s.set_poll_watch(watch),
                Scheduler::PerCore(s) => {
                    for (i, core) in s.cores.iter().enumerate() {
                        core.set_poll_watch(watch.clone(), i);
                    }
                }
            }
        }
        // Jobs run with their runtime current.
        pool.spawner().set_runtime(Box::new(move || runtime()));
        Ok(Runtime { handle: Handle { inner: scheduler }, workers, blocking: pool, shut_down: false })
    }
}

/// An async runtime: executor threads (or the calling thread), a blocking pool and the tasks
/// spawned on it.
///
/// Dropping it cancels every task (their destructors run) and waits for blocking jobs; use
/// [`shutdown_timeout`](Self::shutdown_timeout) to bound that wait.
///
/// ```
/// let rt = spindle::runtime::Runtime::new().unwrap();
/// let h = rt.spawn(async { "hi" });
/// assert_eq!(rt.block_on(h).unwrap(), "hi");
/// ```
pub struct Runtime {
    handle: Handle,
    workers: Option<multi_thread::Workers>,
    blocking: blocking::BlockingPool,
    shut_down: bool,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("flavor", &self.handle.runtime_flavor()).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A multi-thread runtime with one worker per CPU.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Runtime> {
        Builder::new_multi_thread().build()
    }

    /// Runs `future` to completion on the current thread, with this runtime as the context
    /// (so `spindle::spawn` works inside). On a current-thread runtime this thread also runs the
    /// spawned tasks meanwhile.
    ///
    /// # Panics
    /// If called from inside a runtime (a task, or another `block_on`): that would stall it. On a
    /// current-thread runtime built with [`Builder::bind_to_driving_thread`], if this thread
    /// would drive it and is not the first thread that did.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// let v = rt.block_on(async { spindle::spawn(async { 2 }).await.unwrap() + 1 });
    /// assert_eq!(v, 3);
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a task onto this runtime from any thread.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let h = rt.spawn(async { 1 });
    /// assert_eq!(rt.block_on(h).unwrap(), 1);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs a blocking closure on this runtime's blocking pool.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let h = rt.spawn_blocking(|| std::fs::metadata("/").is_ok());
    /// assert!(rt.block_on(h).unwrap());
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// A handle to spawn onto this runtime from elsewhere.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let handle = rt.handle().clone();
    /// let t = std::thread::spawn(move || handle.spawn(async { 7 }));
    /// let join = t.join().unwrap();
    /// assert_eq!(rt.block_on(join).unwrap(), 7);
    /// ```
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// A snapshot of the runtime's live tasks (as [`Handle::dump`]).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// assert!(rt.dump().is_empty());
    /// ```
    pub fn dump(&self) -> Dump {
        self.handle.dump()
    }

    /// Runtime metrics (as [`Handle::metrics`]).
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    /// assert_eq!(rt.metrics().num_workers(), 2);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        self.handle.metrics()
    }

    /// Makes this runtime the current one on this thread until the guard drops, so
    /// `spindle::spawn` works from plain code (see [`Handle::enter`] for what else follows it).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let _guard = rt.enter();
    /// let h = spindle::spawn(async { 3 });
    /// assert_eq!(rt.block_on(h).unwrap(), 3);
    /// ```
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// Shuts down, waiting at most `timeout` for worker threads and blocking jobs to finish.
    /// Tasks are dropped; blocking jobs still running after `timeout` are left to finish on
    /// their own threads (the runtime does not wait for them).
    ///
    /// ```
    /// use std::time::Duration;
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// rt.spawn_blocking(|| std::thread::sleep(Duration::from_secs(5)));
    /// rt.shutdown_timeout(Duration::from_millis(10)); // returns after ~10 ms, not 5 s
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(timeout));
    }

    /// Shuts down without waiting for blocking jobs.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// rt.shutdown_background();
    /// ```
    pub fn shutdown_background(self) {
        self.shutdown_timeout(Duration::ZERO)
    }

    fn shutdown(&mut self, timeout: Option<Duration>) {
        if std::mem::replace(&mut self.shut_down, true) {
            return;
        }
        let start = std::time::Instant::now();
        match &self.handle.inner {
            Scheduler::CurrentThread(s) => s.shutdown(),
            Scheduler::MultiThread(_) => {
                if let Some(w) = &self.workers {
                    w.shutdown(timeout);
                }
            }
            Scheduler::PerCore(s) => {
                s.shutdown(timeout);
            }
        }
        let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
        self.blocking.shutdown(left);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown(None);
    }
}

/// A cheap, cloneable reference to a runtime, to spawn onto it from any thread.
///
/// ```
/// let rt = spindle::runtime::Runtime::new().unwrap();
/// let h = rt.block_on(async { spindle::runtime::Handle::current() });
/// let join = h.spawn(async { 5 });
/// assert_eq!(rt.block_on(join).unwrap(), 5);
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Scheduler,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("flavor", &self.runtime_flavor()).finish()
    }
}

/// The error of [`Handle::try_current`]: this thread is not inside a spindle runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryCurrentError(());

impl fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "no spindle runtime is running on this thread (call from inside `Runtime::block_on`, a \
             spawned task, `#[spindle::main]`, or after `Runtime::enter`)",
        )
    }
}

impl std::error::Error for TryCurrentError {}

/// Restores the previous runtime context when dropped (see [`Runtime::enter`]).
pub struct EnterGuard<'a> {
    _guard: context::EnterGuard,
    _handle: std::marker::PhantomData<&'a Handle>,
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnterGuard")
    }
}

impl Handle {
    /// The runtime of the current thread.
    ///
    /// # Panics
    /// Outside a runtime; see [`try_current`](Self::try_current).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let h = spindle::runtime::Handle::current();
    ///     h.spawn(async {}).await.unwrap();
    /// });
    /// ```
    #[track_caller]
    pub fn current() -> Handle {
        match Handle::try_current() {
            Ok(h) => h,
            Err(e) => panic!("spindle: {e}"),
        }
    }

    /// The runtime of the current thread, or an error outside one.
    ///
    /// ```
    /// assert!(spindle::runtime::Handle::try_current().is_err());
    /// ```
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::with_scheduler(|s| s.cloned()).map(|inner| Handle { inner }).ok_or(TryCurrentError(()))
    }

    /// Spawns a task onto the runtime.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let join = rt.handle().spawn(async { 1 });
    /// assert_eq!(rt.block_on(join).unwrap(), 1);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.spawn(future, crate::task::meta_here(None))
    }

    /// Runs a blocking closure on the runtime's blocking pool.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let join = rt.handle().spawn_blocking(|| 2 + 2);
    /// assert_eq!(rt.block_on(join).unwrap(), 4);
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.inner.blocking().spawn(f, None)
    }

    /// Runs `future` to completion on this thread with the runtime as context (see
    /// [`Runtime::block_on`]).
    ///
    /// # Panics
    /// If called from inside a runtime, or as [`Runtime::block_on`] says for a runtime bound to
    /// its driving thread.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let h = rt.handle().clone();
    /// assert_eq!(h.block_on(async { 9 }), 9);
    /// ```
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self.inner {
            Scheduler::CurrentThread(s) => s.block_on(future),
            Scheduler::MultiThread(s) => {
                let _enter = context::enter_runtime(self.inner.clone());
                park_on(future, Some((&s.block_on_awake, &|| s.nudge_if_paused())))
            }
            Scheduler::PerCore(_) => {
                let _enter = context::enter_runtime(self.inner.clone());
                park_on(future, None)
            }
        }
    }

    /// Spawns a task onto core `core` of a per-core runtime (see [`Builder::new_per_core`]),
    /// from any thread; the task and everything it spawns stay on that core. On the other
    /// flavours there is one scheduler, and this is [`spawn`](Self::spawn).
    ///
    /// # Panics
    /// If `core` is not below [`RuntimeMetrics::num_workers`].
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_per_core().worker_threads(2).build().unwrap();
    /// let join = rt.handle().spawn_on(1, async { spindle::runtime::current_core() });
    /// assert_eq!(rt.block_on(join).unwrap(), Some(1));
    /// ```
    #[track_caller]
    pub fn spawn_on<F>(&self, core: usize, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let meta = crate::task::meta_here(None);
        match &self.inner {
            Scheduler::PerCore(s) => s.spawn_on(core, future, meta),
            Scheduler::CurrentThread(s) => match s.per_core() {
                Some(of) => of.spawn_on(core, future, meta),
                None => {
                    // Not a core, or its per-core runtime is gone (the spawn then completes as
                    // cancelled, as any spawn onto a shut-down runtime).
                    let n = s.num_cores();
                    assert!(core < n, "spindle: spawn_on({core}) on a runtime with {n} core(s)");
                    s.spawn(future, meta)
                }
            },
            Scheduler::MultiThread(s) => {
                let n = s.num_workers();
                assert!(core < n, "spindle: spawn_on({core}) on a multi-thread runtime with {n} workers");
                s.spawn(future, meta)
            }
        }
    }

    /// Makes this runtime current on this thread until the guard drops: `spawn` goes to it, and
    /// sockets made here register with it (except on a worker of a multi-thread runtime, where
    /// they register with that worker's reactor, which is always driven). Timers (registered
    /// where they are first polled) follow the runtime whose worker this thread is, or which it
    /// drives in `block_on`, if any: its parks are the ones that fire them. I/O ops on io_uring go
    /// to that runtime's ring too when it is the socket's runtime; a socket of another runtime
    /// keeps its ops on its own runtime's ring, which that runtime drives even when this one is
    /// idle. On a thread that only entered a current-thread runtime (not in its `block_on`),
    /// file ops and the ops of sockets made outside any runtime go to the always-driven
    /// fallback ring, not to that runtime's. The guard is not `Send`: it restores this thread's
    /// context.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let _g = rt.handle().enter();
    /// assert!(spindle::runtime::Handle::try_current().is_ok());
    /// ```
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard { _guard: context::set_scheduler(self.inner.clone()), _handle: std::marker::PhantomData }
    }

    /// The runtime's flavour.
    ///
    /// ```
    /// use spindle::runtime::{Builder, RuntimeFlavor};
    /// let rt = Builder::new_current_thread().build().unwrap();
    /// assert_eq!(rt.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
    /// ```
    pub fn runtime_flavor(&self) -> RuntimeFlavor {
        match &self.inner {
            Scheduler::CurrentThread(s) if s.is_core() => RuntimeFlavor::PerCore,
            Scheduler::CurrentThread(_) => RuntimeFlavor::CurrentThread,
            Scheduler::MultiThread(_) => RuntimeFlavor::MultiThread,
            Scheduler::PerCore(_) => RuntimeFlavor::PerCore,
        }
    }

    /// The I/O backend this runtime's workers park in: `"io_uring"` or `"epoll"` (the process's
    /// choice — `SPINDLE_DRIVER=uring|epoll`, else io_uring when the kernel allows it — unless
    /// [`Builder::io_driver`] forced one).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// assert!(["io_uring", "epoll"].contains(&rt.handle().io_driver()));
    /// ```
    pub fn io_driver(&self) -> &'static str {
        match &self.inner {
            Scheduler::CurrentThread(s) => s.reactor.backend().name(),
            Scheduler::MultiThread(s) => s.reactor().backend().name(),
            Scheduler::PerCore(s) => s.cores[0].reactor.backend().name(),
        }
    }

    /// A snapshot of the runtime's live tasks, printed with `{}` as the task tree: each task's
    /// id, name, state and spawn location, under the task (or scope or task group) it belongs
    /// to. The workers keep running while it is taken (see [`Dump`]).
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// let h = spindle::task::Builder::new().name("idle").spawn_on(std::future::pending::<()>(), rt.handle()).unwrap();
    /// rt.block_on(spindle::task::yield_now()); // let it run once
    /// let dump = rt.handle().dump();
    /// assert_eq!(dump.len(), 1);
    /// assert_eq!(dump.task(h.id()).unwrap().state(), spindle::runtime::TaskState::Idle);
    /// println!("{dump}");
    /// ```
    pub fn dump(&self) -> Dump {
        let mut dump = Dump::collect(|f| self.inner.for_each_task(f));
        if let Some(watch) = self.inner.poll_watch() {
            dump.set_busy(&watch.busy_times());
        }
        dump
    }

    /// Runtime metrics.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    /// assert_eq!(rt.handle().metrics().num_workers(), 2);
    /// ```
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics { handle: self.clone() }
    }
}

/// Counters and gauges of a runtime, read while it runs (DESIGN §8), with the names tokio's
/// `RuntimeMetrics` uses.
///
/// Workers are numbered from 0 to [`num_workers`](RuntimeMetrics::num_workers)` - 1`: the
/// multi-thread runtime's worker threads, the per-core runtime's cores, and, for a
/// current-thread runtime, worker 0 is whichever thread drives it (its `block_on`).
///
/// The counters are always on: each worker keeps its own, written only by its thread, so counting
/// costs a plain store on a cache line nobody else writes. Each value is exact for what happened
/// before it was read and never decreases, but two values read one after the other are not one
/// snapshot. Counters start at zero when the runtime is built and wrap around at `u64::MAX`.
///
/// ```
/// use spindle::runtime::Builder;
///
/// let rt = Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// rt.block_on(async {
///     let tasks: Vec<_> = (0..10).map(|_| spindle::spawn(spindle::task::yield_now())).collect();
///     for t in tasks {
///         t.await.unwrap();
///     }
/// });
/// let m = rt.metrics();
/// let polls: u64 = (0..m.num_workers()).map(|w| m.worker_poll_count(w)).sum();
/// assert!(polls >= 20); // each task was polled twice: before and after its yield
/// // A task leaves the count on its worker just after its `JoinHandle` can see it finished (a
/// // handle first polled then returns at once), so the last one may still count for a moment.
/// let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
/// while m.num_alive_tasks() != 0 && std::time::Instant::now() < deadline {
///     std::thread::yield_now();
/// }
/// assert_eq!(m.num_alive_tasks(), 0);
/// ```
#[derive(Debug, Clone)]
pub struct RuntimeMetrics {
    handle: Handle,
}

impl RuntimeMetrics {
    /// Number of worker threads (1 for the current-thread runtime, the number of cores for a
    /// per-core runtime).
    pub fn num_workers(&self) -> usize {
        match &self.handle.inner {
            Scheduler::CurrentThread(s) => s.num_cores(),
            Scheduler::MultiThread(s) => s.num_workers(),
            Scheduler::PerCore(s) => s.cores.len(),
        }
    }

    /// Number of tasks spawned and not yet finished. A task leaves the count just after its
    /// output is published: a `JoinHandle` polled in that moment (on another thread) already
    /// returns while the count still includes the task. A joiner woken by the task's completion
    /// sees it gone.
    pub fn num_alive_tasks(&self) -> usize {
        match &self.handle.inner {
            Scheduler::CurrentThread(s) => s.per_core().map_or_else(|| s.num_alive_tasks(), |of| of.num_alive_tasks()),
            Scheduler::MultiThread(s) => s.num_alive_tasks(),
            Scheduler::PerCore(s) => s.num_alive_tasks(),
        }
    }

    /// Tasks waiting in the runtime's shared queue: spawned or woken from outside its threads
    /// and not yet taken by a worker (for a per-core runtime, the sum over its cores' queues).
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// // Nothing drives a current-thread runtime outside `block_on`: the tasks wait.
    /// let tasks: Vec<_> = (0..3).map(|_| rt.spawn(async {})).collect();
    /// assert_eq!(rt.metrics().global_queue_depth(), 3);
    /// rt.block_on(async {
    ///     for t in tasks {
    ///         t.await.unwrap();
    ///     }
    /// });
    /// assert_eq!(rt.metrics().global_queue_depth(), 0);
    /// ```
    pub fn global_queue_depth(&self) -> usize {
        match &self.handle.inner {
            Scheduler::CurrentThread(s) => match s.per_core() {
                Some(of) => of.cores.iter().map(|c| c.global_queue_depth()).sum(),
                None => s.global_queue_depth(),
            },
            Scheduler::MultiThread(s) => s.global_queue_depth(),
            Scheduler::PerCore(s) => s.cores.iter().map(|c| c.global_queue_depth()).sum(),
        }
    }

    /// Runs `f` on the counters of worker `worker`; the zero value when they are gone (the
    /// handle of one core of a per-core runtime that was dropped answers for that core only).
    #[track_caller]
    fn with_worker<R: Default>(&self, worker: usize, f: impl FnOnce(&metrics::WorkerMetrics) -> R) -> R {
        let n = self.num_workers();
        assert!(worker < n, "spindle: worker index {worker} out of range: the runtime has {n} workers");
        match &self.handle.inner {
            Scheduler::CurrentThread(s) => match s.per_core() {
                Some(of) => f(&of.cores[worker].metrics),
                None if !s.is_core() || s.core_index() == Some(worker) => f(&s.metrics),
                None => R::default(),
            },
            Scheduler::MultiThread(s) => f(s.worker_metrics(worker)),
            Scheduler::PerCore(s) => f(&s.cores[worker].metrics),
        }
    }

    /// Task polls worker `worker` has made.
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_poll_count(&self, worker: usize) -> u64 {
        self.with_worker(worker, |m| m.polls())
    }

    /// Times worker `worker` went to sleep waiting for work (in its I/O driver, with a timeout
    /// for its next timer). A worker that spins briefly and finds work did not park.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = spindle::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// rt.block_on(spindle::time::sleep(Duration::from_millis(5)));
    /// assert!(rt.metrics().worker_park_count(0) >= 1);
    /// ```
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_park_count(&self, worker: usize) -> u64 {
        self.with_worker(worker, |m| m.parks())
    }

    /// Tasks worker `worker` took from other workers' queues (multi-thread runtime; 0 elsewhere,
    /// where nothing is stolen). One steal takes about half of the other worker's queue.
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_steal_count(&self, worker: usize) -> u64 {
        self.with_worker(worker, |m| m.steals())
    }

    /// Steals worker `worker` made (each moving one or more tasks; see
    /// [`worker_steal_count`](RuntimeMetrics::worker_steal_count)).
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_steal_operations(&self, worker: usize) -> u64 {
        self.with_worker(worker, |m| m.steal_operations())
    }

    /// Polls on worker `worker` that a task's exhausted cooperative budget cut short: a spindle
    /// resource (a channel, a socket, a timer...) answered "not yet" though it was ready, so that
    /// a task always finding work ready yields to the others. Counted once per poll, however
    /// many resources refused in it. On a current-thread runtime the main future's polls (in
    /// `block_on`) count too; on the multi-thread runtime, whose `block_on` runs on the caller's
    /// thread and not a worker, they do not.
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_budget_forced_yield_count(&self, worker: usize) -> u64 {
        self.with_worker(worker, |m| m.forced_yields())
    }

    /// [`worker_budget_forced_yield_count`](RuntimeMetrics::worker_budget_forced_yield_count)
    /// summed over the workers.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(async {
    ///     let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
    ///     for i in 0..1000 {
    ///         tx.send(i).unwrap();
    ///     }
    ///     // Every `recv` finds a message ready; the budget makes the task yield now and then.
    ///     spindle::spawn(async move {
    ///         for _ in 0..1000 {
    ///             rx.recv().await.unwrap();
    ///         }
    ///     })
    ///     .await
    ///     .unwrap();
    /// });
    /// assert!(rt.metrics().budget_forced_yield_count() >= 1);
    /// ```
    pub fn budget_forced_yield_count(&self) -> u64 {
        (0..self.num_workers()).map(|w| self.worker_budget_forced_yield_count(w)).sum()
    }

    /// Time worker `worker` spent busy (running tasks and its driver, not parked), up to its
    /// last park or periodic maintenance (every few dozen polls): a worker busy right now is
    /// counted up to that point. For a current-thread runtime, the time threads spent driving it.
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_total_busy_duration(&self, worker: usize) -> Duration {
        self.with_worker(worker, |m| m.busy())
    }

    /// Tasks queued on worker `worker`, ready to run. On the multi-thread runtime this is read
    /// live (its run queue and the slot for the task it runs next); on the current-thread and
    /// per-core runtimes, as of the worker's last park or periodic maintenance (every 31 polls),
    /// or, for a current-thread runtime nobody drives now, as its last `block_on` left it.
    ///
    /// # Panics
    /// If `worker` is not below [`num_workers`](RuntimeMetrics::num_workers).
    #[track_caller]
    pub fn worker_local_queue_depth(&self, worker: usize) -> usize {
        match &self.handle.inner {
            Scheduler::MultiThread(s) if worker < s.num_workers() => s.local_queue_depth(worker),
            _ => self.with_worker(worker, |m| m.queue_depth()),
        }
    }

    /// Threads of the runtime's blocking pool (running a job or idle, waiting for one).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// rt.block_on(rt.spawn_blocking(|| ())).unwrap();
    /// let m = rt.metrics();
    /// assert!(m.num_blocking_threads() >= 1);
    /// assert!(m.num_idle_blocking_threads() <= m.num_blocking_threads());
    /// ```
    pub fn num_blocking_threads(&self) -> usize {
        self.handle.inner.blocking().num_threads().0
    }

    /// Threads of the blocking pool waiting for a job.
    pub fn num_idle_blocking_threads(&self) -> usize {
        self.handle.inner.blocking().num_threads().1
    }

    /// Blocking jobs waiting for a thread of the pool (all its threads are busy and it has
    /// [`max_blocking_threads`](Builder::max_blocking_threads) of them).
    pub fn blocking_queue_depth(&self) -> usize {
        self.handle.inner.blocking().queue_depth()
    }
}

/// The index of the core this thread runs, when it is a core of a per-core runtime (see
/// [`Builder::new_per_core`]); `None` anywhere else (other runtimes' threads, `block_on`, plain
/// threads).
///
/// ```
/// let rt = spindle::runtime::Builder::new_per_core().worker_threads(2).build().unwrap();
/// assert_eq!(rt.block_on(async { spindle::runtime::current_core() }), None);
/// let on_core = rt.block_on(rt.handle().spawn_on(0, async { spindle::runtime::current_core() }));
/// assert_eq!(on_core.unwrap(), Some(0));
/// ```
pub fn current_core() -> Option<usize> {
    // The core this thread drives, whatever handle it entered (a core's handle entered on another
    // thread does not make that thread a core either).
    with_runner(|r| match r {
        Some(Runner::Driving(d)) => d.shared().core_index(),
        _ => None,
    })
}

/// The address of the per-core runtime current on this thread when this thread is not one of
/// its cores (`block_on`, `Runtime::enter`): objects created here get a
/// [`Placed::FirstUser`](crate::driver::placement::Placed::FirstUser).
pub(crate) fn outside_per_core() -> Option<usize> {
    context::with_scheduler(|s| match s {
        Some(Scheduler::PerCore(s)) => Some(Arc::as_ptr(s) as usize),
        _ => None,
    })
}

/// The reactor of the core this thread runs, when it is a core of the per-core runtime whose
/// address is `runtime`.
pub(crate) fn core_reactor_of(runtime: usize) -> Option<Arc<crate::driver::Reactor>> {
    // Chosen where the socket is first waited on: the core this thread drives, whatever handle
    // it entered.
    with_runner(|r| match r {
        Some(Runner::Driving(d)) if d.shared().per_core_id() == Some(runtime) => Some(d.reactor().clone()),
        _ => None,
    })
}

/// A fresh runtime id (never 0, which stands for "no runtime": see `Reactor::owner`).
pub(crate) fn next_runtime_id() -> usize {
    // A process-wide counter, not a synchronization point: loom has no model of statics.
    static NEXT: spindle_core::loom::unmodelled::AtomicUsize = spindle_core::loom::unmodelled::AtomicUsize::new(1);
    NEXT.fetch_add(1, spindle_core::loom::unmodelled::Ordering::Relaxed)
}

/// Whether an io_uring op (or a long-lived request) on an object registered with `own` may go
/// to this thread's ring: this thread runs for `own`'s runtime (a worker of its multi-thread
/// runtime, a thread driving its current-thread runtime, a core of its per-core runtime), or
/// `own` is the fallback reactor (an object made outside any runtime) and this thread's ring is
/// driven for as long as its runtime lives (a multi-thread worker's or a per-core core's). Not a
/// current-thread runtime's ring for another runtime's object, nor for a fallback one: nothing
/// drives it once its `block_on` returns, while the object's users may still need the op's
/// completion.
pub(crate) fn may_submit_here(own: &crate::driver::Reactor) -> bool {
    let owner = own.owner();
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => owner == 0 || w.reactor().owner() == owner,
        Some(Runner::Driving(d)) => {
            if owner == 0 {
                d.shared().is_core()
            } else {
                d.reactor().owner() == owner
            }
        }
        None => false,
    })
}

/// The runtime a thread runs for: the multi-thread runtime it is a worker of, or the
/// current-thread runtime (or per-core core) it drives in `block_on`.
enum Runner<'a> {
    Worker(&'a multi_thread::WorkerCtx),
    Driving(&'a current_thread::Driving),
}

/// Runs `f` with the runtime this thread runs for, if any. What is chosen where it is polled
/// (a timer's shard, the clock it is measured on, the ring an op on one of its sockets goes to)
/// follows it before the entered handle: its parks are the ones that fire and reap them (see
/// `Handle::enter`; a socket of another runtime keeps its ops on its own ring:
/// [`may_submit_here`]). Two
/// plain thread-local reads, where the entered handle costs a `RefCell` borrow and a match (a
/// tenth of a `sleep`'s instructions on the current-thread runtime, which had only that path).
fn with_runner<R>(f: impl FnOnce(Option<Runner<'_>>) -> R) -> R {
    let (w, d) = context::worker_or_driving();
    if !w.is_null() {
        // SAFETY: a non-null worker pointer is the live `WorkerCtx` of this thread, registered
        // for as long as it lives (see `run_worker`).
        return f(Some(Runner::Worker(unsafe { &*w })));
    }
    if !d.is_null() {
        // SAFETY: a non-null driving pointer is the `Driving` of a `block_on` on this thread's
        // stack, which restores the previous pointer before it is dropped.
        return f(Some(Runner::Driving(unsafe { &*d })));
    }
    f(None)
}

/// Counts a poll refused by its exhausted cooperative budget in the metrics of the worker (or
/// current-thread runtime) this thread runs; polls elsewhere (a multi-thread runtime's
/// `block_on`, other executors) are not counted. Cold: only a refusal gets here.
#[cold]
pub(crate) fn count_forced_yield() {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => w.count_forced_yield(),
        Some(Runner::Driving(d)) => d.shared().count_forced_yield(),
        None => {}
    });
}

/// Whether the runtime whose clock `time::pause` would stop ([`with_current_clock`]'s) may pause
/// it (all but the per-core one).
pub(crate) fn virtual_time_allowed() -> bool {
    with_runner(|r| match r {
        Some(Runner::Worker(_)) => true,
        Some(Runner::Driving(d)) => !d.shared().is_core(),
        None => context::with_scheduler(|s| match s {
            Some(Scheduler::CurrentThread(s)) => !s.is_core(),
            Some(Scheduler::PerCore(_)) => false,
            _ => true,
        }),
    })
}

/// Runs `f` with the clock of the runtime current on this thread, if any: the runtime whose
/// worker this thread is or which it drives (a current-thread `block_on`, a per-core core),
/// else the runtime entered here.
pub(crate) fn with_current_clock<R>(f: impl FnOnce(Option<&Arc<crate::time::Clock>>) -> R) -> R {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => f(Some(w.clock())),
        Some(Runner::Driving(d)) => f(Some(&d.shared().clock)),
        None => context::with_scheduler(|s| f(s.map(|s| s.clock()))),
    })
}

/// The timer shard for a timer first polled on this thread, if it is inside a runtime: that of
/// the worker this thread is or the runtime it drives (whose parks fire it), else one of the
/// runtime entered here.
pub(crate) fn current_timer_shard() -> Option<Arc<crate::time::Shard>> {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Some(w.timers().clone()),
        Some(Runner::Driving(d)) => Some(d.shared().timers.clone()),
        None => context::with_scheduler(|s| {
            s.map(|s| match s {
                Scheduler::CurrentThread(s) => s.timers.clone(),
                Scheduler::MultiThread(s) => s.timer_shard(),
                Scheduler::PerCore(s) => s.next_core().timers.clone(),
            })
        }),
    })
}

/// The reactor an fd created on this thread registers with, if it is inside a runtime: the
/// worker's, else one of the runtime entered here. Unlike a timer's shard (chosen where it is
/// polled), this is chosen when the object is made, so an entered handle wins over
/// the runtime this thread drives: `Handle::enter` is how code makes sockets for another runtime,
/// whose tasks then use them (a current-thread `block_on` that entered a multi-thread handle and
/// bound a listener its tasks accept on must not tie it to a reactor nobody drives once the
/// `block_on` returns).
pub(crate) fn current_reactor() -> Option<Arc<crate::driver::Reactor>> {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Some(w.reactor().clone()),
        _ => context::with_scheduler(|s| {
            s.map(|s| match s {
                Scheduler::CurrentThread(s) => s.reactor.clone(),
                Scheduler::MultiThread(s) => s.reactor(),
                Scheduler::PerCore(s) => s.next_core().reactor.clone(),
            })
        }),
    })
}

/// The reactor a connection accepted on this thread registers with: on a multi-thread runtime
/// the workers' reactors in turn (see `multi_thread::Shared::next_reactor`), else
/// [`current_reactor`]'s.
pub(crate) fn spread_reactor() -> Option<Arc<crate::driver::Reactor>> {
    // As for `current_reactor` (chosen when the object is made): this worker's runtime, spreading
    // over its workers, else the entered handle's.
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Some(w.shared().next_reactor()),
        _ => context::with_scheduler(|s| match s {
            Some(Scheduler::MultiThread(s)) => Some(s.next_reactor()),
            Some(Scheduler::CurrentThread(s)) => Some(s.reactor.clone()),
            Some(Scheduler::PerCore(s)) => Some(s.next_core().reactor.clone()),
            None => None,
        }),
    })
}

/// Runs `f` on the current runtime if it is a multi-thread one (this worker's, or that of the
/// `block_on` this thread is in), with this thread's worker context if it is one of its workers.
fn with_multi_thread<R>(f: impl FnOnce(&multi_thread::Shared, Option<&multi_thread::WorkerCtx>) -> R) -> Option<R> {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Some(f(w.shared(), Some(w))),
        _ => context::with_scheduler(|s| match s {
            Some(Scheduler::MultiThread(s)) => Some(f(s, None)),
            _ => None,
        }),
    })
}

/// Runs `f` on the current runtime's [`Pairs`](crate::driver::placement::Pairs), if it is a
/// multi-thread runtime (the only kind with more than one reactor to choose from).
pub(crate) fn with_loopback_pairs<R>(f: impl FnOnce(&crate::driver::placement::Pairs) -> R) -> Option<R> {
    with_multi_thread(|s, _| f(&s.loopback_pairs))
}

/// For [`Placement`](crate::driver::placement::Placement): on the multi-thread runtime whose
/// [`Pairs`](crate::driver::placement::Pairs) have the [`id`](crate::driver::placement::Pairs::id) `pairs`, when this thread is one
/// of its workers or inside its `block_on`, the next of its reactors in turn (`spread`) or the
/// current worker's; else `None`.
pub(crate) fn placement_reactor(pairs: usize, spread: bool) -> Option<Arc<crate::driver::Reactor>> {
    with_multi_thread(|s, worker| {
        if s.loopback_pairs.id() != pairs {
            return None;
        }
        if spread {
            Some(s.next_reactor())
        } else {
            worker.map(|w| w.reactor().clone())
        }
    })
    .flatten()
}

/// Runs `f` on this thread's reactor, without cloning the `Arc` (for callers that only look at
/// it, or clone it only when it suits them): the current worker's, else the one of the
/// current-thread runtime this thread drives, else the entered runtime's (not a current-thread
/// one: only its `block_on` drives it). An op on a socket goes
/// there only if [`may_submit_here`] allows (see `driver::uring_reactor_near`). Off the cores of
/// a per-core runtime there is no reactor of this thread's own: `prefer` (the reactor of the
/// object the op is on), else the cores' in turn.
pub(crate) fn with_current_reactor<R>(
    prefer: Option<&Arc<crate::driver::Reactor>>,
    f: impl FnOnce(&Arc<crate::driver::Reactor>) -> R,
) -> Option<R> {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Some(f(w.reactor())),
        Some(Runner::Driving(d)) => Some(f(d.reactor())),
        None => context::with_scheduler(|s| match s? {
            // An io_uring current-thread runtime entered here but driven only in its `block_on`,
            // which this thread is not in: an op on its ring could wait forever. No reactor of
            // this thread's own (callers use the object's own ring or the fallback one, which is
            // always driven). An epoll one stays: its objects use readiness, its files the
            // blocking pool, as the user chose.
            Scheduler::CurrentThread(s) if !s.is_core() && s.reactor.as_uring().is_some() => None,
            Scheduler::CurrentThread(s) => Some(f(&s.reactor)),
            Scheduler::MultiThread(s) => Some(f(&s.reactor())),
            Scheduler::PerCore(s) => Some(f(prefer.unwrap_or_else(|| &s.next_core().reactor))),
        }),
    })
}

/// Whether this thread drives `reactor` right now: it is the multi-thread worker the reactor
/// belongs to, or it is inside `block_on` of the current-thread runtime the reactor belongs to.
/// What such a thread queues for its next wait is submitted soon; otherwise it may wait until
/// the runtime is driven again (see `Reactor::flush_submissions`).
pub(crate) fn drives(reactor: &Arc<crate::driver::Reactor>) -> bool {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => Arc::ptr_eq(w.reactor(), reactor),
        Some(Runner::Driving(d)) => Arc::ptr_eq(d.reactor(), reactor),
        None => false,
    })
}

/// Fires due timers of the runtime whose clock `time::advance` moved ([`with_current_clock`]'s:
/// this worker's or driven runtime's first, else the entered one's).
pub(crate) fn process_all_timers() {
    with_runner(|r| match r {
        Some(Runner::Worker(w)) => w.shared().process_timers(),
        Some(Runner::Driving(d)) => {
            d.shared().timers.process();
        }
        None => context::with_scheduler(|s| match s {
            Some(Scheduler::CurrentThread(s)) => {
                s.timers.process();
            }
            Some(Scheduler::MultiThread(s)) => s.process_timers(),
            Some(Scheduler::PerCore(s)) => {
                for core in s.cores.iter() {
                    core.timers.process();
                }
            }
            None => {}
        }),
    })
}

/// Blocks the current thread on `future`, parking between polls (no tasks run here).
///
/// With `awake`, the thread counts itself in that counter while it is runnable (from the wake
/// that makes it runnable until it finds nothing to do and parks), so a paused clock does not jump
/// ahead of it. The per-call lock makes "no wake pending, so stop counting" atomic with respect to
/// wakes.
pub(crate) fn park_on<F: Future>(future: F, awake: Option<(&Arc<AtomicUsize>, &dyn Fn())>) -> F::Output {
    use spindle_core::loom::Ordering::SeqCst;
    use std::sync::Mutex;

    #[derive(Default)]
    struct State {
        runnable: bool,
        notified: bool,
    }
    struct ThreadWaker {
        unparker: park::Unparker,
        state: Mutex<State>,
        counter: Option<Arc<AtomicUsize>>,
    }
    impl ThreadWaker {
        fn lock(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }
        /// Counts the thread as runnable (if it is not yet).
        fn set_runnable(&self, st: &mut State) {
            if !st.runnable {
                st.runnable = true;
                if let Some(c) = &self.counter {
                    c.fetch_add(1, SeqCst);
                }
            }
        }
        /// Stops counting the thread, unless a wake is pending. Returns whether it may park.
        fn try_park(&self) -> bool {
            let mut st = self.lock();
            if std::mem::take(&mut st.notified) {
                return false;
            }
            if st.runnable {
                st.runnable = false;
                if let Some(c) = &self.counter {
                    c.fetch_sub(1, SeqCst);
                }
            }
            true
        }
    }
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref()
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let mut st = self.lock();
            st.notified = true;
            self.set_runnable(&mut st);
            drop(st);
            self.unparker.unpark()
        }
    }
    // Balances the count however we leave (including a panicking future).
    struct Leave(Arc<ThreadWaker>);
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut st = self.0.lock();
            if st.runnable {
                st.runnable = false;
                if let Some(c) = &self.0.counter {
                    c.fetch_sub(1, SeqCst);
                }
            }
            // Later wakes must not count a thread that left: pretend it is runnable forever.
            st.runnable = true;
        }
    }
    let mut driver = park::Driver::new().expect("spindle: cannot create a thread parker");
    let tw = Arc::new(ThreadWaker {
        unparker: driver.unparker(),
        state: Mutex::default(),
        counter: awake.map(|(c, _)| c.clone()),
    });
    tw.set_runnable(&mut tw.lock());
    let leave = Leave(tw.clone());
    let waker = Waker::from(tw);
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        let scope = context::start_poll(None);
        let polled = future.as_mut().poll(&mut cx);
        context::end_poll(scope);
        if let Poll::Ready(v) = polled {
            drop(leave);
            return v;
        }
        if leave.0.try_park() {
            if let Some((_, idle)) = awake {
                // We stopped counting as awake: let the runtime re-check whether virtual time
                // may jump now.
                idle();
            }
            driver.park();
            let tw = &leave.0;
            tw.set_runnable(&mut tw.lock());
        }
    }
}
