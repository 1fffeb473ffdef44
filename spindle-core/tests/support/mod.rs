//! Shared helpers for the loom models in `tests/loom_*.rs` (compiled only into those crates).
//!
//! A tiny executor ([`Rt`]): a run queue behind a loom `Mutex`, a registry [`TaskList`] behind
//! another, and a [`Sched`] handle stored in every task that counts how many task cells were
//! freed (the cell drops its scheduler exactly when it is deallocated). Futures are wrapped in
//! [`Tracked`], which counts polls, future drops and output drops with loom atomics and asserts
//! that no two threads ever poll the same future at once.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use spindle_core::task::list::TaskList;
use spindle_core::task::{self, JoinError, JoinHandle, Notified, Schedule, Task, TaskId, TaskMeta};

/// Runs `f` under loom with a preemption bound of 3 (unless `LOOM_MAX_PREEMPTIONS` says otherwise).
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    model_with(3, None, f)
}

/// Runs `f` under loom with the given preemption bound (unless `LOOM_MAX_PREEMPTIONS` is set)
/// and, if given, a larger budget of branch points per execution (loom's default is 1000), and
/// prints how many interleavings were explored.
pub fn model_with(bound: usize, max_branches: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    if let Some(m) = max_branches {
        b.max_branches = m;
    }
    let iterations = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let it = iterations.clone();
    let start = std::time::Instant::now();
    b.check(move || {
        it.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    std::eprintln!(
        "loom: {} interleavings explored in {:.2?}",
        iterations.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// The test executor.

/// State shared by the test runtime and every task's scheduler handle.
pub struct Shared {
    queue: Mutex<VecDeque<Notified<Sched>>>,
    registry: Mutex<TaskList<Sched>>,
    /// Task cells created.
    spawned: AtomicUsize,
    /// Task cells freed (a cell drops its `Sched` exactly when it is deallocated).
    freed: AtomicUsize,
}

/// The scheduler handle stored in each task cell.
pub struct Sched {
    shared: Arc<Shared>,
}

impl Drop for Sched {
    fn drop(&mut self) {
        self.shared.freed.fetch_add(1, SeqCst);
    }
}

impl Schedule for Sched {
    fn schedule(&self, task: Notified<Self>) {
        self.shared.queue.lock().unwrap().push_back(task);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        let mut reg = self.shared.registry.lock().unwrap();
        // SAFETY: this runtime has a single registry list, so a linked task is linked in it.
        unsafe { reg.remove(task.as_raw()) }
    }
}

/// The test runtime: spawn, run the queue, shut down, and check nothing leaked.
#[derive(Clone)]
pub struct Rt {
    shared: Arc<Shared>,
}

impl Rt {
    /// An empty runtime.
    pub fn new() -> Rt {
        Rt {
            shared: Arc::new(Shared {
                queue: Mutex::new(VecDeque::new()),
                registry: Mutex::new(TaskList::new()),
                spawned: AtomicUsize::new(0),
                freed: AtomicUsize::new(0),
            }),
        }
    }

    /// Spawns `fut`: registers it and queues its first run.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.shared.spawned.fetch_add(1, SeqCst);
        let sched = Sched { shared: self.shared.clone() };
        let (task, notified, join) = task::new_task(fut, sched, TaskId::next(), TaskMeta::here());
        self.shared.registry.lock().unwrap().push(task);
        self.shared.queue.lock().unwrap().push_back(notified);
        join
    }

    /// Runs queued tasks until the queue is empty (a worker's loop). Returns how many it ran.
    pub fn run_all(&self) -> usize {
        let mut n = 0;
        loop {
            // The guard is a temporary: the lock is released before the task runs.
            let next = self.shared.queue.lock().unwrap().pop_front();
            match next {
                Some(t) => {
                    t.run();
                    n += 1;
                }
                None => return n,
            }
        }
    }

    /// Runtime shutdown: cancels every registered task (as a real runtime does at shutdown).
    pub fn shutdown(&self) {
        loop {
            let next = self.shared.registry.lock().unwrap().pop();
            match next {
                Some(t) => t.shutdown(),
                None => return,
            }
        }
    }

    /// Number of queued entries.
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().unwrap().len()
    }

    /// Number of registered (not yet completed) tasks.
    pub fn registered(&self) -> usize {
        self.shared.registry.lock().unwrap().len()
    }

    /// Number of task cells freed so far.
    pub fn freed(&self) -> usize {
        self.shared.freed.load(SeqCst)
    }

    /// Final checks once every handle is gone: queue and registry empty, every cell freed once.
    pub fn assert_quiescent(&self) {
        assert_eq!(self.queued(), 0, "run queue not drained");
        assert_eq!(self.registered(), 0, "a task is still registered");
        assert_eq!(
            self.freed(),
            self.shared.spawned.load(SeqCst),
            "every task cell must be freed exactly once (reference count reached zero)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Tracked futures and outputs.

/// Counters shared between a test and the future it spawned.
pub struct Counters {
    pub polls: AtomicUsize,
    pub fut_drops: AtomicUsize,
    pub out_drops: AtomicUsize,
    in_poll: AtomicBool,
}

impl Counters {
    pub fn new() -> Arc<Counters> {
        Arc::new(Counters {
            polls: AtomicUsize::new(0),
            fut_drops: AtomicUsize::new(0),
            out_drops: AtomicUsize::new(0),
            in_poll: AtomicBool::new(false),
        })
    }
    pub fn polls(&self) -> usize {
        self.polls.load(SeqCst)
    }
    pub fn fut_drops(&self) -> usize {
        self.fut_drops.load(SeqCst)
    }
    pub fn out_drops(&self) -> usize {
        self.out_drops.load(SeqCst)
    }
}

/// Wraps a future: counts polls, detects concurrent polls, counts its own drop and wraps the
/// output in an [`Output`] that counts its drop.
pub struct Tracked<F> {
    inner: F,
    counters: Arc<Counters>,
    done: bool,
}

impl<F> Tracked<F> {
    pub fn new(inner: F, counters: &Arc<Counters>) -> Self {
        Tracked { inner, counters: counters.clone(), done: false }
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        self.counters.fut_drops.fetch_add(1, SeqCst);
    }
}

/// An output whose drop is counted.
pub struct Output {
    pub value: usize,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Output").field(&self.value).finish()
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.counters.out_drops.fetch_add(1, SeqCst);
    }
}

impl<F: Future<Output = usize> + Unpin> Future for Tracked<F> {
    type Output = Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output> {
        let this = &mut *self;
        assert!(!this.done, "future polled after it returned Ready");
        assert!(!this.counters.in_poll.swap(true, SeqCst), "two threads polled the same future at once");
        this.counters.polls.fetch_add(1, SeqCst);
        let r = Pin::new(&mut this.inner).poll(cx);
        this.counters.in_poll.store(false, SeqCst);
        match r {
            Poll::Ready(value) => {
                this.done = true;
                Poll::Ready(Output { value, counters: this.counters.clone() })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ready on the first poll.
pub struct Ready(pub usize);

impl Future for Ready {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
        Poll::Ready(self.0)
    }
}

/// Wakes itself and returns `Pending` on the first poll (a yield), then is ready.
pub struct YieldOnce(pub usize, pub bool);

impl YieldOnce {
    pub fn new(v: usize) -> Self {
        YieldOnce(v, false)
    }
}

impl Future for YieldOnce {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        if self.1 {
            return Poll::Ready(self.0);
        }
        self.1 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Never ready.
pub struct Forever;

impl Future for Forever {
    type Output = usize;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<usize> {
        Poll::Pending
    }
}

/// A one-shot event another thread fires, waking the waiting task (by value or by reference).
pub struct Signal {
    /// (fired, waker of the waiting task)
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    pub fn new() -> Arc<Signal> {
        Arc::new(Signal { state: Mutex::new((false, None)) })
    }

    /// Fires the event and wakes the waiter, if one registered.
    pub fn fire(&self, by_ref: bool) {
        let waker = {
            let mut st = self.state.lock().unwrap();
            st.0 = true;
            st.1.take()
        };
        if let Some(w) = waker {
            if by_ref {
                w.wake_by_ref();
                drop(w);
            } else {
                w.wake();
            }
        }
    }
}

/// Waits for a [`Signal`]. Always returns `Pending` on its first poll (waking itself if the
/// signal already fired), so the task goes through one `Pending` and then one `Ready`.
pub struct WaitSignal {
    signal: Arc<Signal>,
    polled: bool,
    value: usize,
}

impl WaitSignal {
    pub fn new(signal: &Arc<Signal>, value: usize) -> Self {
        WaitSignal { signal: signal.clone(), polled: false, value }
    }
}

impl Future for WaitSignal {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let first = !self.polled;
        self.polled = true;
        let mut st = self.signal.state.lock().unwrap();
        if st.0 {
            if first {
                drop(st);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            return Poll::Ready(self.value);
        }
        st.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

// ---------------------------------------------------------------------------------------------
// A counting waker (for polling `JoinHandle`s), reference-counted with loom's `Arc` so a leaked
// clone is reported by loom.

pub struct WakeCounter {
    wakes: AtomicUsize,
}

impl WakeCounter {
    pub fn new() -> Arc<WakeCounter> {
        Arc::new(WakeCounter { wakes: AtomicUsize::new(0) })
    }
    pub fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

static COUNTING_VTABLE: RawWakerVTable = RawWakerVTable::new(cw_clone, cw_wake, cw_wake_by_ref, cw_drop);

/// A waker that counts its wakes in `c`; it owns one reference to `c`.
pub fn counting_waker(c: &Arc<WakeCounter>) -> Waker {
    let p = Arc::into_raw(c.clone()) as *const ();
    // SAFETY: the vtable functions treat `p` as an `Arc<WakeCounter>` reference, which it is.
    unsafe { Waker::from_raw(RawWaker::new(p, &COUNTING_VTABLE)) }
}

unsafe fn cw_clone(p: *const ()) -> RawWaker {
    // SAFETY: `p` came from `Arc::into_raw` and the waker being cloned keeps it alive.
    unsafe { Arc::increment_strong_count(p as *const WakeCounter) };
    RawWaker::new(p, &COUNTING_VTABLE)
}

unsafe fn cw_wake(p: *const ()) {
    // SAFETY: the waker owns this reference and is consumed.
    let a = unsafe { Arc::from_raw(p as *const WakeCounter) };
    a.wakes.fetch_add(1, SeqCst);
}

unsafe fn cw_wake_by_ref(p: *const ()) {
    // SAFETY: the waker keeps the `Arc` alive during this call.
    let c = unsafe { &*(p as *const WakeCounter) };
    c.wakes.fetch_add(1, SeqCst);
}

unsafe fn cw_drop(p: *const ()) {
    // SAFETY: the waker owns this reference and is dropped.
    drop(unsafe { Arc::from_raw(p as *const WakeCounter) });
}

/// Polls a join handle once with `waker`.
pub fn poll_join<T>(jh: &mut JoinHandle<T>, waker: &Waker) -> Poll<Result<T, JoinError>> {
    let mut cx = Context::from_waker(waker);
    Pin::new(jh).poll(&mut cx)
}
