//! Helpers for the `loom_sync_*` models: a bounded model runner and poll-once helpers.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Runs `f` under loom with `bound` preemptions (unless `LOOM_MAX_PREEMPTIONS` is set) and prints
/// how many interleavings were explored and how long it took.
pub fn model(bound: usize, f: impl Fn() + Sync + Send + 'static) {
    model_with(bound, 1000, f)
}

/// As [`model`], with a larger budget of branch points per execution (loom's default is 1000) for
/// models whose executions are long (many messages), not unbounded.
pub fn model_with(bound: usize, max_branches: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = max_branches;
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(bound);
    }
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    let start = std::time::Instant::now();
    b.check(move || {
        n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    eprintln!(
        "loom: {} interleavings explored in {:.2?}",
        n.load(std::sync::atomic::Ordering::Relaxed),
        start.elapsed()
    );
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Polls `f` once with a no-op waker.
pub fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = Waker::from(Arc::new(Noop));
    f.poll(&mut Context::from_waker(&waker))
}

/// Wakes a thread blocked in [`block_on`] through loom's `Notify`.
struct Unpark(loom::sync::Notify);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.notify();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify();
    }
}

/// Blocks the loom thread on `f`. A lost wakeup leaves the thread waiting forever, which loom
/// reports as a deadlock.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let unpark = Arc::new(Unpark(loom::sync::Notify::new()));
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        unpark.0.wait();
    }
}
