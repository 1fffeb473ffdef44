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
//! - Virtual time is refused (`start_paused` fails the build, `time::pause` panics): each core
//!   decides alone when it is idle, and a core jumping the shared clock while another one runs
//!   would fire that one's timers early.
//! - Shutdown: the stop signal wakes every core; each drops its own tasks on its own thread (so
//!   `!Send` tasks are dropped where they live) and shuts its reactor down. A runtime dropped
//!   inside one of its own tasks does not wait for that core.

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
    stopping: AtomicBool,
    /// Each core's stop-signal waker.
    stop_wakers: Box<[Mutex<Option<Waker>>]>,
    /// Cores whose thread finished shutting down.
    exited: Mutex<usize>,
    exited_cv: Condvar,
    threads: Mutex<Vec<(ThreadId, std::thread::JoinHandle<()>)>>,
    pub(crate) blocking: Spawner,
    pub(crate) clock: Arc<Clock>,
}

/// How a per-core runtime's threads are made.
pub(crate) struct ThreadConfig<'a> {
    pub(crate) name: &'a (dyn Fn() -> String + Send + Sync),
    pub(crate) stack_size: Option<usize>,
    pub(crate) pin: bool,
}

pub(crate) fn start(
    num_cores: usize,
    threads: ThreadConfig<'_>,
    blocking: Spawner,
    clock: Arc<Clock>,
    backend: crate::driver::Backend,
) -> std::io::Result<Arc<Shared>> {
    let mut cores = Vec::with_capacity(num_cores);
    for _ in 0..num_cores {
        cores.push(current_thread::Shared::new(blocking.clone(), clock.clone(), backend, true)?);
    }
    let shared = Arc::new(Shared {
        cores: cores.into_boxed_slice(),
        turn: AtomicUsize::new(0),
        stopping: AtomicBool::new(false),
        stop_wakers: (0..num_cores).map(|_| Mutex::new(None)).collect(),
        exited: Mutex::new(0),
        exited_cv: Condvar::new(),
        threads: Mutex::new(Vec::with_capacity(num_cores)),
        blocking,
        clock,
    });
    for (index, core) in shared.cores.iter().enumerate() {
        core.set_core_of(Arc::downgrade(&shared), index);
    }
    let cpus = if threads.pin { allowed_cpus() } else { Vec::new() };
    for index in 0..num_cores {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let shared2 = shared.clone();
        let mut b = std::thread::Builder::new().name((threads.name)());
        if let Some(s) = threads.stack_size {
            b = b.stack_size(s);
        }
        match b.spawn(move || run_core(shared2, index, cpu)) {
            Ok(t) => shared.threads.lock().unwrap_or_else(|e| e.into_inner()).push((t.thread().id(), t)),
            Err(e) => {
                shared.shutdown(None);
                return Err(std::io::Error::new(e.kind(), format!("spindle: cannot start a core thread: {e}")));
            }
        }
    }
    Ok(shared)
}

fn run_core(shared: Arc<Shared>, index: usize, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        // Best effort: a thread left unpinned still works, it may only be moved by the kernel.
        pin_current_thread(cpu);
    }
    let core = shared.cores[index].clone();
    core.block_on(StopSignal { shared: &shared, index });
    core.shutdown();
    *shared.exited.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    shared.exited_cv.notify_all();
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
    /// turn, as for spawns.
    pub(crate) fn next_core(&self) -> &Arc<current_thread::Shared> {
        &self.cores[self.turn.fetch_add(1, Relaxed) % self.cores.len()]
    }

    pub(crate) fn num_alive_tasks(&self) -> usize {
        self.cores.iter().map(|c| c.num_alive_tasks()).sum()
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
        // A core cannot wait for itself (the runtime dropped inside one of its own tasks): it
        // stops when that task's poll returns.
        let on_own_core = threads.iter().any(|(id, _)| *id == me);
        let expected = threads.len() - usize::from(on_own_core);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = true;
        while *exited < expected {
            match deadline {
                None => exited = self.exited_cv.wait(exited).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        all = false;
                        break;
                    }
                    exited = self.exited_cv.wait_timeout(exited, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
        drop(exited);
        if all && !on_own_core {
            for (_, t) in threads.drain(..) {
                let _ = t.join();
            }
        }
        // Threads not joined (past the timeout, or this one) finish on their own.
        all
    }
}

/// The CPUs this process may run on, in order (empty if the kernel does not say).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Vec::new();
    }
    // SAFETY: `CPU_ISSET` only reads the set, and every index is below `CPU_SETSIZE`.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Pins the calling thread to `cpu`; a refusal (a container's cpuset changed meanwhile) is
/// ignored.
fn pin_current_thread(cpu: usize) {
    // SAFETY: as in `allowed_cpus`: all-zero is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from `allowed_cpus`, so it is below `CPU_SETSIZE`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 is the calling thread.
    let _ = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}
