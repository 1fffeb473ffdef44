//! The blocking pool: threads for `spawn_blocking`.
//!
//! # Contract
//!
//! A blocking job is a task cell whose future runs the closure on its first poll, so it gets the
//! same `JoinHandle` (panics caught, `is_finished`, `abort` before it starts). Jobs wait in one
//! FIFO; a job that finds no idle thread starts one, up to `max_threads`; idle threads exit after
//! `keep_alive`.
//!
//! Waking idle threads is chained: at most one wakeup is in flight at a time. A queued job wakes
//! an idle thread only when none is already on its way; a thread that takes a job and leaves more
//! queued wakes the next one (or starts one, when none is idle) before it runs its own. A burst
//! of short jobs is then drained by the few threads that are awake instead of waking one thread
//! per job (each a futex wake and a context switch, which on a small machine cost more than the
//! jobs: measured, spindle-bench's `spawn_blocking` row, 16 trivial jobs per batch, went from
//! about 2.5–3.0 µs to about 0.45–0.55 µs per job), while long jobs still fan out to a thread
//! each, one wakeup latency apart. At shutdown, queued jobs that never started are cancelled, and running ones are
//! waited for up to the given timeout (then their threads are left to finish on their own).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use spindle_core::task::{new_task, JoinHandle, Notified, Schedule, Task, TaskMeta};

use super::context;

pub(crate) struct BlockingPool {
    inner: Arc<Inner>,
}

/// What a runtime handle keeps to spawn blocking jobs.
#[derive(Clone)]
pub(crate) struct Spawner {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Signalled when a job is queued or at shutdown.
    job_ready: Condvar,
    /// Signalled when a thread exits.
    thread_done: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: Arc<dyn Fn() -> String + Send + Sync>,
    stack_size: Option<usize>,
    /// Jobs queued or running (virtual time does not auto-advance while any exists: they may be
    /// about to wake a task).
    active: spindle_core::loom::AtomicUsize,
    /// Called when `active` drops to zero (the runtime re-checks virtual time).
    on_idle: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The runtime whose pool this is, while it lives: current on the pool's threads while a job
    /// runs, so `spawn`, `spawn_blocking` and `Handle::current` work inside a blocking closure
    /// (as in tokio). A weak reference: the runtime owns the pool.
    runtime: std::sync::OnceLock<Box<dyn Fn() -> Option<super::Scheduler> + Send + Sync>>,
}

struct State {
    queue: VecDeque<Notified<NoSchedule>>,
    threads: usize,
    idle: usize,
    /// Wakeups sent to idle threads not yet consumed (so a burst does not over-spawn).
    pending_wakeups: usize,
    shutdown: bool,
}

/// Who takes a queued job (see [`State::runner_for_queued`]).
enum Runner {
    /// A woken thread is on its way (it chains the next wakeup), or every thread is busy at the
    /// limit.
    Coming,
    /// Wake an idle thread (counted in `pending_wakeups`).
    Wake,
    /// Start a thread (counted in `threads`).
    Start,
}

impl State {
    /// Decides who takes a job just queued, or still queued behind one a thread took (the
    /// chained wakeups of the module docs), and counts the wakeup or thread it asks for.
    fn runner_for_queued(&mut self, max_threads: usize) -> Runner {
        if self.idle > self.pending_wakeups {
            if self.pending_wakeups == 0 {
                self.pending_wakeups += 1;
                Runner::Wake
            } else {
                Runner::Coming
            }
        } else if self.threads < max_threads {
            self.threads += 1;
            Runner::Start
        } else {
            Runner::Coming
        }
    }
}

/// Blocking jobs are never re-scheduled (they finish on their first poll) and have no registry.
pub(crate) struct NoSchedule;

impl Schedule for NoSchedule {
    fn schedule(&self, _task: Notified<Self>) {
        // Only reachable through `abort()` racing a job's single poll, which it then skips (the
        // job either already ran or is still queued, where shutdown or the worker handles it).
        drop(_task);
    }
    fn release(&self, _task: &Task<Self>) -> Option<Task<Self>> {
        None
    }
}

struct BlockingJob<F>(Option<F>);

impl<F> Unpin for BlockingJob<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingJob<F> {
    type Output = R;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self.0.take().expect("spindle: blocking job polled twice");
        Poll::Ready(f())
    }
}

impl BlockingPool {
    pub(crate) fn new(
        max_threads: usize,
        keep_alive: Duration,
        thread_name: Arc<dyn Fn() -> String + Send + Sync>,
        stack_size: Option<usize>,
    ) -> BlockingPool {
        BlockingPool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    pending_wakeups: 0,
                    shutdown: false,
                }),
                job_ready: Condvar::new(),
                thread_done: Condvar::new(),
                max_threads: max_threads.max(1),
                keep_alive,
                thread_name,
                stack_size,
                active: spindle_core::loom::AtomicUsize::new(0),
                on_idle: std::sync::OnceLock::new(),
                runtime: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn spawner(&self) -> Spawner {
        Spawner { inner: self.inner.clone() }
    }

    /// Cancels queued jobs and waits up to `timeout` for running ones. Returns whether all threads
    /// exited in time.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> bool {
        let queued: Vec<_> = {
            let mut st = self.inner.lock();
            st.shutdown = true;
            st.queue.drain(..).collect()
        };
        self.inner.job_ready.notify_all();
        for job in queued {
            // Never started: complete it as cancelled so its JoinHandle resolves.
            job.into_task().shutdown();
            self.inner.active.fetch_sub(1, spindle_core::loom::Ordering::SeqCst);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        // A pool thread shutting its own pool down (the runtime dropped inside a blocking
        // closure) cannot wait for itself: it leaves once its job returns.
        let own = OWN_POOL.with(|p| p.get() == Arc::as_ptr(&self.inner)) as usize;
        let mut st = self.inner.lock();
        while st.threads > own {
            match deadline {
                None => st = self.inner.thread_done.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    st = self.inner.thread_done.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Jobs run outside the lock, so a poisoned lock only means a thread died mid-bookkeeping
        // on an allocation failure; the state is still consistent enough to shut down.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Spawner {
    /// Sets how a job's thread finds the runtime to make current while the job runs.
    pub(crate) fn set_runtime(&self, f: Box<dyn Fn() -> Option<super::Scheduler> + Send + Sync>) {
        let _ = self.inner.runtime.set(f);
    }

    /// Sets the callback run when the last active job finishes.
    pub(crate) fn set_on_idle(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.inner.on_idle.set(f);
    }

    /// Threads of the pool, busy or idle, and how many of them are idle.
    pub(crate) fn num_threads(&self) -> (usize, usize) {
        let st = self.inner.lock();
        (st.threads, st.idle)
    }

    /// Jobs waiting for a thread.
    pub(crate) fn queue_depth(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Whether no blocking job is queued or running.
    pub(crate) fn is_idle(&self) -> bool {
        self.inner.active.load(spindle_core::loom::Ordering::SeqCst) == 0
    }

    #[track_caller]
    pub(crate) fn spawn<F, R>(&self, f: F, name: Option<Box<str>>) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let meta = TaskMeta { name, parent: context::current_task(), ..TaskMeta::here() };
        let (task, notified, join) = new_task(BlockingJob(Some(f)), NoSchedule, context::next_task_id(), meta);
        // No registry: the queue reference is the only one besides the handle's.
        drop(task);
        self.inner.active.fetch_add(1, spindle_core::loom::Ordering::SeqCst);
        let mut st = self.inner.lock();
        if st.shutdown {
            drop(st);
            notified.into_task().shutdown();
            self.inner.active.fetch_sub(1, spindle_core::loom::Ordering::SeqCst);
            return join;
        }
        st.queue.push_back(notified);
        match st.runner_for_queued(self.inner.max_threads) {
            // A wakeup is on its way, or every thread is busy at the limit: the job waits its turn.
            Runner::Coming => {}
            Runner::Wake => {
                drop(st);
                self.inner.job_ready.notify_one();
            }
            Runner::Start => {
                drop(st);
                if let Err(e) = start_thread(&self.inner) {
                    // Could not start a thread (resource limits): the job stays queued and runs
                    // when an existing thread frees up; if there is none, it fails loudly below.
                    let mut st = self.inner.lock();
                    st.threads -= 1;
                    if st.threads == 0 {
                        let jobs: Vec<_> = st.queue.drain(..).collect();
                        drop(st);
                        eprintln!(
                            "spindle: cannot start a blocking-pool thread ({e}); cancelling queued blocking jobs"
                        );
                        for j in jobs {
                            j.into_task().shutdown();
                            self.inner.active.fetch_sub(1, spindle_core::loom::Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        join
    }
}

fn start_thread(inner: &Arc<Inner>) -> std::io::Result<()> {
    let pool = inner.clone();
    let mut b = std::thread::Builder::new().name((inner.thread_name)());
    if let Some(s) = inner.stack_size {
        b = b.stack_size(s);
    }
    b.spawn(move || run_thread(&pool)).map(drop)
}

thread_local! {
    /// The pool whose thread this is (null elsewhere).
    static OWN_POOL: std::cell::Cell<*const Inner> = const { std::cell::Cell::new(std::ptr::null()) };
}

fn run_thread(inner: &Arc<Inner>) {
    OWN_POOL.with(|p| p.set(Arc::as_ptr(inner)));
    let mut st = inner.lock();
    loop {
        if let Some(job) = st.queue.pop_front() {
            // More jobs left: pass the wakeup on (see the module docs) before running this one,
            // which may take long.
            let mut wake = false;
            if !st.queue.is_empty() {
                match st.runner_for_queued(inner.max_threads) {
                    Runner::Coming => {}
                    Runner::Wake => wake = true,
                    Runner::Start => {
                        if start_thread(inner).is_err() {
                            // This thread takes the rest after its job.
                            st.threads -= 1;
                        }
                    }
                }
            }
            drop(st);
            if wake {
                inner.job_ready.notify_one();
            }
            let runtime = inner.runtime.get().and_then(|f| f());
            let entered = runtime.map(context::set_scheduler);
            let prev = context::start_blocking_job(Some(job.header()));
            job.run(); // panics are caught inside the task cell
            context::end_poll(prev);
            drop(entered);
            if inner.active.fetch_sub(1, spindle_core::loom::Ordering::SeqCst) == 1 {
                if let Some(f) = inner.on_idle.get() {
                    f();
                }
            }
            st = inner.lock();
            continue;
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        let (guard, timeout) = inner.job_ready.wait_timeout(st, inner.keep_alive).unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if st.pending_wakeups > 0 {
            st.pending_wakeups -= 1;
        } else if timeout.timed_out() && st.queue.is_empty() && !st.shutdown {
            break; // idle for keep_alive: shrink the pool
        }
    }
    st.threads -= 1;
    drop(st);
    inner.thread_done.notify_all();
}
