//! The per-core runtime: one current-thread runtime per core, each on a thread of its own pinned
//! to a CPU, with no work stealing (the thread-per-core model of glommio and monoio).
//!
//! # Why
//!
//! Work stealing balances load, and it costs on every task switch: shared run queues, a LIFO slot
//! that others may steal from, notifications of idle siblings, and tasks' state moving between
//! cores' caches. A server whose connections are independent of each other loses nothing by
//! giving each core its own share of them and never moving a task. Measured on echo (64
//! connections, two threads): two independent current-thread runtimes in one process served a
//! round trip in ~1380 ns where the two-worker work-stealing runtime took ~1600-1700.
//!
//! # Contract
//!
//! - `Shared` owns `cores`: one [`current_thread::Shared`] each, bound to its thread (on io_uring
//!   a single-issuer ring with deferred task work), driven by that thread from start to shutdown
//!   with `block_on` on the runtime's stop signal. Each core has its own run queue, reactor and
//!   timer shard; the clock and the blocking pool are the runtime's.
//! - On a core's thread the current runtime *is* that core: `spindle::spawn` and `spawn_local`
//!   run the task on this core, and I/O objects created there use its reactor. A task never
//!   moves to another core.
//! - From any other thread (`Runtime::block_on`, `Handle::spawn`, a plain thread after
//!   `Runtime::enter`), `spawn` hands the task to the cores in turn, and [`Shared::spawn_on`] to
//!   a chosen one, through that core's inject queue (the cross-core hand-over: a lock-free push
//!   and, if the core is parked, one wake-up). `spawn_local` there panics: no core runs there.
//!   Sockets created there are watched by the core whose task first waits on them
//!   (`driver::placement::Placed::FirstUser`); their io_uring ops, as any task's, go to the
//!   ring of the core the task runs on.
//! - Virtual time is refused (`start_paused` fails the build, `time::pause` panics): each core
//!   decides alone when it is idle, and a core jumping the shared clock while another one runs
//!   would fire that one's timers early.
//! - Shutdown, in two phases: the stop signal wakes every core; each drops its own tasks on its
//!   own thread (so `!Send` tasks are dropped where they live), then waits until every core has
//!   (bounded by `SIBLING_WAIT`) before it shuts its reactor down on its own thread. A task on
//!   one core may use objects registered with another core's reactor (made outside the cores,
//!   or moved between them), and a shut-down reactor fails their I/O at once: no core's reactor
//!   shuts down while another core may still run such a task. `Runtime` drop waits for the first phase of every core (but not for the core it runs
//!   on, when dropped inside one of its own tasks: that core's first phase comes when the task's
//!   poll returns), then for the threads to exit. A core thread that unwinds still counts as done
//!   for both phases, so a drop never waits forever for it.
//! - Threads are pinned to the CPUs this process may use, each runtime starting one CPU further
//!   than the previous one in the process, so several per-core runtimes (tests) spread out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use spindle_core::loom::{AtomicBool, AtomicUsize};
use spindle_core::task::{JoinHandle, TaskMeta};

use super::blocking::Spawner;
use super::current_thread;
use crate::time::Clock;

pub(crate) struct Shared {
    pub(crate) cores: Box<[Arc<current_thread::Shared>]>,
    /// The next core `spawn` from outside the cores hands a task to.
    turn: AtomicUsize,
    /// The next core an I/O object or timer made outside the cores is placed on (a counter of
    /// its own, so that where tasks go does not depend on how much I/O happened in between).
    place: AtomicUsize,
    stopping: AtomicBool,
    /// Each core's stop-signal waker.
    stop_wakers: Box<[Mutex<Option<Waker>>]>,
    /// How many cores dropped their tasks, and how many threads finished (see the contract).
    progress: Mutex<Progress>,
    progress_cv: Condvar,
    threads: Mutex<Vec<(ThreadId, std::thread::JoinHandle<()>)>>,
    pub(crate) blocking: Spawner,
    pub(crate) clock: Arc<Clock>,
}

/// How a per-core runtime's threads are made.
pub(crate) struct ThreadConfig<'a> {
    pub(crate) name: &'a (dyn Fn() -> String + Send + Sync),
    pub(crate) stack_size: Option<usize>,
}

pub(crate) fn start(
    num_cores: usize,
    threads: ThreadConfig<'_>,
    blocking: Spawner,
    clock: Arc<Clock>,
    backend: crate::driver::Backend,
) -> std::io::Result<Arc<Shared>> {
    let mut cores = Vec::with_capacity(num_cores);
    let runtime_id = super::next_runtime_id();
    for _ in 0..num_cores {
        let core = current_thread::Shared::new(blocking.clone(), clock.clone(), backend, true)?;
        core.reactor.set_owner(runtime_id);
        cores.push(core);
    }
    let shared = Arc::new(Shared {
        cores: cores.into_boxed_slice(),
        turn: AtomicUsize::new(0),
        place: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        stop_wakers: (0..num_cores).map(|_| Mutex::new(None)).collect(),
        progress: Mutex::new(Progress::default()),
        progress_cv: Condvar::new(),
        threads: Mutex::new(Vec::with_capacity(num_cores)),
        blocking,
        clock,
    });
    for (index, core) in shared.cores.iter().enumerate() {
        core.set_core_of(Arc::downgrade(&shared), index, num_cores);
    }
    let cpus = allowed_cpus();
    // Process-wide, outside any model (a static needs a const constructor, loom's has none).
    static FIRST_CPU: spindle_core::loom::unmodelled::AtomicUsize = spindle_core::loom::unmodelled::AtomicUsize::new(0);
    let first = FIRST_CPU.fetch_add(1, Relaxed);
    for index in 0..num_cores {
        let cpu = (!cpus.is_empty()).then(|| cpus[(first + index) % cpus.len()]);
        let shared2 = shared.clone();
        let mut b = std::thread::Builder::new().name((threads.name)());
        if let Some(s) = threads.stack_size {
            b = b.stack_size(s);
        }
        match b.spawn(move || run_core(shared2, index, cpu)) {
            Ok(t) => shared.threads.lock().unwrap_or_else(|e| e.into_inner()).push((t.thread().id(), t)),
            Err(e) => {
                // The cores never started have no tasks: the started ones need not wait for them.
                shared.progress.lock().unwrap_or_else(|e| e.into_inner()).tasks_dropped += num_cores - index;
                shared.shutdown(None);
                return Err(std::io::Error::new(e.kind(), format!("spindle: cannot start a core thread: {e}")));
            }
        }
    }
    Ok(shared)
}

/// How long a core that dropped its tasks waits for the others to drop theirs before it shuts
/// its reactor down anyway (a core stuck in a task that never returns must not keep every
/// other thread alive; ops orphaned on this core's ring after that are leaked, never freed
/// under the kernel).
const SIBLING_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Progress {
    tasks_dropped: usize,
    exited: usize,
}

/// Counts a core's phases as done when its thread leaves `run_core`, also by unwinding.
struct CoreExit<'a> {
    shared: &'a Shared,
    tasks_dropped: bool,
}

impl CoreExit<'_> {
    fn tasks_dropped(&mut self) {
        self.tasks_dropped = true;
        self.shared.progress.lock().unwrap_or_else(|e| e.into_inner()).tasks_dropped += 1;
        self.shared.progress_cv.notify_all();
    }
}

impl Drop for CoreExit<'_> {
    fn drop(&mut self) {
        let mut p = self.shared.progress.lock().unwrap_or_else(|e| e.into_inner());
        if !self.tasks_dropped {
            p.tasks_dropped += 1;
        }
        p.exited += 1;
        drop(p);
        self.shared.progress_cv.notify_all();
    }
}

fn run_core(shared: Arc<Shared>, index: usize, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        // Best effort: a thread left unpinned still works, it may only be moved by the kernel.
        pin_current_thread(cpu);
    }
    let mut exit = CoreExit { shared: &shared, tasks_dropped: false };
    let core = shared.cores[index].clone();
    core.block_on(StopSignal { shared: &shared, index });
    core.drop_tasks();
    exit.tasks_dropped();
    shared.wait_for(|p| p.tasks_dropped >= shared.cores.len(), Some(Instant::now() + SIBLING_WAIT));
    core.reactor.shutdown();
}

/// Completes when the runtime shuts down (the future each core's thread drives its core with).
struct StopSignal<'a> {
    shared: &'a Shared,
    index: usize,
}

impl Future for StopSignal<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.stopping.load(Acquire) {
            return Poll::Ready(());
        }
        *self.shared.stop_wakers[self.index].lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // Checked again after the waker is stored: a stop between the two checks took (or will
        // take) the waker and wake it.
        if self.shared.stopping.load(Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Shared {
    /// Spawns onto the cores in turn (called from outside the cores: on a core's thread the
    /// current runtime is that core).
    #[track_caller]
    pub(crate) fn spawn<F>(&self, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let core = self.turn.fetch_add(1, Relaxed) % self.cores.len();
        self.cores[core].spawn(future, meta)
    }

    /// Spawns onto core `core`.
    ///
    /// # Panics
    /// If there is no such core.
    #[track_caller]
    pub(crate) fn spawn_on<F>(&self, core: usize, future: F, meta: TaskMeta) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.cores.get(core) {
            Some(c) => c.spawn(future, meta),
            None => panic!("spindle: spawn_on({core}) on a per-core runtime with {} cores", self.cores.len()),
        }
    }

    /// The core whose reactor and timers an object created outside the cores uses: the next in
    /// turn (its own turn, not the spawns').
    pub(crate) fn next_core(&self) -> &Arc<current_thread::Shared> {
        &self.cores[self.place.fetch_add(1, Relaxed) % self.cores.len()]
    }

    pub(crate) fn num_alive_tasks(&self) -> usize {
        self.cores.iter().map(|c| c.num_alive_tasks()).sum()
    }

    /// Calls `f` with every live task's header, core by core.
    pub(crate) fn for_each_task(&self, f: &mut dyn FnMut(&spindle_core::task::Header)) {
        for c in self.cores.iter() {
            c.for_each_task(f);
        }
    }

    /// Stops the cores (each drops its tasks on its own thread). Waits for them up to `timeout`
    /// (forever if `None`); returns whether they all stopped. Safe to call more than once.
    pub(crate) fn shutdown(&self, timeout: Option<Duration>) -> bool {
        self.stopping.store(true, Release);
        for w in self.stop_wakers.iter() {
            if let Some(w) = w.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.wake();
            }
        }
        let me = std::thread::current().id();
        let mut threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let started = threads.len();
        let deadline = timeout.map(|t| Instant::now() + t);
        // A core cannot wait for itself (the runtime dropped inside one of its own tasks): it
        // drops its tasks when that task's poll returns, after this returns; the others wait
        // for it before they shut their reactors down, so they are not waited for here either.
        if threads.iter().any(|(id, _)| *id == me) {
            return self.wait_for(|p| p.tasks_dropped >= started - 1, deadline);
        }
        let all = self.wait_for(|p| p.exited >= started, deadline);
        if all {
            for (_, t) in threads.drain(..) {
                let _ = t.join();
            }
        }
        // Threads not joined (past the timeout) finish on their own.
        all
    }

    /// Waits until `done` holds for the cores' progress, or past `deadline`; returns whether it
    /// holds.
    fn wait_for(&self, done: impl Fn(&Progress) -> bool, deadline: Option<Instant>) -> bool {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        while !done(&p) {
            match deadline {
                None => p = self.progress_cv.wait(p).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    p = self.progress_cv.wait_timeout(p, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        true
    }
}

/// The CPUs this process may run on, in order (empty if the kernel does not say).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    // SAFETY: `CPU_ISSET` only reads the set, and every index is below `CPU_SETSIZE`.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pins the calling thread to `cpu` (one of [`allowed_cpus`]); a refusal (a container's cpuset
/// changed meanwhile) is ignored.
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: as in `allowed_cpus`: all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 is the calling thread.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}
