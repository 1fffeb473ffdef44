//! The one small trait every workload is written against, and its tokio and smol adapters.
//!
//! A workload only ever uses `spawn` (from inside the runtime), `spawn_remote` (through a handle, from any
//! thread), `spawn_blocking`, `yield_now` and `block_on`. Join handles are futures of the task's output; a
//! task failure (panic, cancellation) panics the joiner, so a broken runtime fails loudly.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread;

use async_executor::Executor;

/// A runtime under test. Built once per process run, reused across rounds.
pub trait Rt: Sync + Sized + 'static {
    /// What `spawn` returns: resolves to the task's output.
    type Join<T: Send + 'static>: Future<Output = T> + Send + Unpin + 'static;

    /// Short label used in tables and JSON (`tokio-mt`, ...).
    fn name(&self) -> &'static str;

    /// Drives `f` to completion on the calling thread.
    fn block_on<F: Future>(&self, f: F) -> F::Output;

    /// Spawns from inside the runtime (a task of this runtime is running on the calling thread).
    fn spawn<F>(f: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// Spawns a task whose handle is not kept; it must still run to completion.
    fn spawn_detached<F>(f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(Self::spawn(f));
    }

    /// Spawns through the runtime's handle, from any thread (inside the runtime or not).
    fn spawn_remote<F>(&self, f: F) -> Self::Join<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static;

    /// Runs a blocking closure on the runtime's blocking pool (called from inside the runtime).
    fn spawn_blocking<F, T>(f: F) -> Self::Join<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;

    /// Yields once to the scheduler.
    fn yield_now() -> impl Future<Output = ()> + Send;

    /// Runs `f` as a task of the runtime (so that `spawn` inside it is a spawn from a worker, not from the
    /// `block_on` thread) and blocks until it is done.
    fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let join = self.spawn_remote(f);
        self.block_on(join)
    }
}

// ---------------------------------------------------------------------------------------------------------
// tokio

/// tokio, multi-thread (2 workers) or current-thread.
pub struct Tokio {
    rt: tokio::runtime::Runtime,
    name: &'static str,
}

impl Tokio {
    /// tokio multi-thread scheduler with `workers` workers.
    pub fn multi_thread(workers: usize) -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .build()
            .expect("build tokio multi-thread runtime");
        Tokio { rt, name: "tokio-mt" }
    }

    /// tokio current-thread scheduler.
    pub fn current_thread() -> Tokio {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("build tokio current-thread runtime");
        Tokio { rt, name: "tokio-ct" }
    }

    /// tokio multi-thread with its time driver (for the timer rows; the scheduling rows run without
    /// it, as they need no timers).
    pub fn multi_thread_timed(workers: usize) -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
            .expect("build tokio multi-thread runtime");
        Tokio { rt, name: "tokio-mt" }
    }

    /// tokio multi-thread with its I/O driver (for the TCP rows).
    pub fn multi_thread_io(workers: usize) -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .build()
            .expect("build tokio multi-thread runtime");
        Tokio { rt, name: "tokio-mt" }
    }

    /// tokio current-thread with its I/O driver.
    pub fn current_thread_io() -> Tokio {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("build tokio current-thread runtime");
        Tokio { rt, name: "tokio-ct" }
    }

    /// tokio multi-thread with its I/O and time drivers (http_hello: hyper's timers run on tokio's).
    pub fn multi_thread_io_timed(workers: usize) -> Tokio {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_io()
            .enable_time()
            .build()
            .expect("build tokio multi-thread runtime");
        Tokio { rt, name: "tokio-mt" }
    }

    /// tokio current-thread with its I/O and time drivers.
    pub fn current_thread_io_timed() -> Tokio {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("build tokio current-thread runtime");
        Tokio { rt, name: "tokio-ct" }
    }

    /// tokio current-thread with its time driver.
    pub fn current_thread_timed() -> Tokio {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("build tokio current-thread runtime");
        Tokio { rt, name: "tokio-ct" }
    }
}

/// tokio's `JoinHandle`, unwrapped.
pub struct TokioJoin<T>(tokio::task::JoinHandle<T>);

impl<T> Future for TokioJoin<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(e)) => panic!("tokio task failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Rt for Tokio {
    type Join<T: Send + 'static> = TokioJoin<T>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn spawn<F>(f: F) -> TokioJoin<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        TokioJoin(tokio::spawn(f))
    }

    fn spawn_remote<F>(&self, f: F) -> TokioJoin<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        TokioJoin(self.rt.spawn(f))
    }

    fn spawn_blocking<F, T>(f: F) -> TokioJoin<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioJoin(tokio::task::spawn_blocking(f))
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        tokio::task::yield_now()
    }
}

// ---------------------------------------------------------------------------------------------------------
// smol (async-executor; blocking work on the `blocking` crate's pool, which is what `smol::unblock` is)

thread_local! {
    /// The executor whose tasks run on this thread (set on smol worker threads and during `block_on`).
    static SMOL_EX: RefCell<Option<Arc<Executor<'static>>>> = const { RefCell::new(None) };
}

fn smol_spawn<F>(f: F) -> async_executor::Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    SMOL_EX.with(|ex| ex.borrow().as_ref().expect("smol spawn outside an executor thread").spawn(f))
}

/// Sets the thread-local executor for the lifetime of the guard.
struct ExGuard(Option<Arc<Executor<'static>>>);

impl ExGuard {
    fn enter(ex: &Arc<Executor<'static>>) -> ExGuard {
        ExGuard(SMOL_EX.with(|c| c.borrow_mut().replace(ex.clone())))
    }
}

impl Drop for ExGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        SMOL_EX.with(|c| *c.borrow_mut() = prev);
    }
}

/// smol: `async-executor` on `n` dedicated threads (`block_on` only waits), or (`n == 0`) on the caller's
/// thread, driven by `block_on(ex.run(..))`. With `io`, every `block_on` is `async_io::block_on` (what
/// `smol::block_on` is): an idle thread drives async-io's reactor and timers itself.
pub struct Smol {
    ex: Arc<Executor<'static>>,
    stops: Vec<futures::channel::oneshot::Sender<()>>,
    threads: Vec<thread::JoinHandle<()>>,
    name: &'static str,
    io: bool,
}

fn smol_block_on<F: Future>(io: bool, f: F) -> F::Output {
    if io {
        async_io::block_on(f)
    } else {
        futures_lite::future::block_on(f)
    }
}

impl Smol {
    /// Executor run by `threads` dedicated threads.
    pub fn multi_thread(threads: usize) -> Smol {
        Smol::multi_thread_with(threads, false)
    }

    /// Executor run by `threads` dedicated threads that drive async-io when idle (the timer rows).
    pub fn multi_thread_io(threads: usize) -> Smol {
        Smol::multi_thread_with(threads, true)
    }

    fn multi_thread_with(threads: usize, io: bool) -> Smol {
        let ex = Arc::new(Executor::new());
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        for i in 0..threads {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let ex = ex.clone();
            stops.push(tx);
            handles.push(
                thread::Builder::new()
                    .name(format!("smol-{i}"))
                    .spawn(move || {
                        let _g = ExGuard::enter(&ex);
                        let _ = smol_block_on(io, ex.run(rx));
                    })
                    .expect("spawn smol thread"),
            );
        }
        Smol { ex, stops, threads: handles, name: "smol-mt", io }
    }

    /// Executor driven by the thread calling `block_on`.
    pub fn single_thread() -> Smol {
        Smol { ex: Arc::new(Executor::new()), stops: Vec::new(), threads: Vec::new(), name: "smol-1t", io: false }
    }

    /// Executor driven by the thread calling `block_on`, which drives async-io when idle.
    pub fn single_thread_io() -> Smol {
        Smol { ex: Arc::new(Executor::new()), stops: Vec::new(), threads: Vec::new(), name: "smol-1t", io: true }
    }
}

impl Drop for Smol {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Rt for Smol {
    type Join<T: Send + 'static> = async_executor::Task<T>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        let _g = ExGuard::enter(&self.ex);
        if self.threads.is_empty() {
            smol_block_on(self.io, self.ex.run(f))
        } else {
            smol_block_on(self.io, f)
        }
    }

    fn spawn<F>(f: F) -> async_executor::Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        smol_spawn(f)
    }

    fn spawn_detached<F>(f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol_spawn(f).detach();
    }

    fn spawn_remote<F>(&self, f: F) -> async_executor::Task<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.ex.spawn(f)
    }

    fn spawn_blocking<F, T>(f: F) -> async_executor::Task<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        blocking::unblock(f)
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        futures_lite::future::yield_now()
    }
}
