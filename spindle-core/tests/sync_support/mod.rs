//! Shared helpers for the `sync_*` integration tests: run one test body on every runtime
//! (spindle multi-thread and current-thread, tokio multi-thread and current-thread), poll futures
//! by hand with counting wakers, and bound every test in time with a watchdog (a hang aborts with
//! a message; nothing asserts on timing).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A boxed, sendable future.
pub type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The runtime a test body runs on, so it can spawn tasks there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    SpindleMulti,
    SpindleCurrent,
    TokioMulti,
    TokioCurrent,
}

impl Rt {
    /// Every runtime flavour.
    pub const ALL: [Rt; 4] = [Rt::SpindleMulti, Rt::SpindleCurrent, Rt::TokioMulti, Rt::TokioCurrent];

    /// Spawns `f` on this runtime (call from inside it); the returned future yields its output.
    pub fn spawn<F>(self, f: F) -> BoxFut<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Rt::SpindleMulti | Rt::SpindleCurrent => {
                let h = spindle::spawn(f);
                Box::pin(async move { h.await.expect("spindle task failed") })
            }
            Rt::TokioMulti | Rt::TokioCurrent => {
                let h = tokio::spawn(f);
                Box::pin(async move { h.await.expect("tokio task failed") })
            }
        }
    }

    /// Yields to the runtime once.
    pub async fn yield_now(self) {
        match self {
            Rt::SpindleMulti | Rt::SpindleCurrent => spindle::task::yield_now().await,
            Rt::TokioMulti | Rt::TokioCurrent => tokio::task::yield_now().await,
        }
    }

    /// Runs `f` (as a task, so spawns come from a worker) to completion on a fresh runtime.
    pub fn block_on<F>(self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Rt::SpindleMulti => {
                let rt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("spindle task failed")
            }
            Rt::SpindleCurrent => {
                let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("spindle task failed")
            }
            Rt::TokioMulti => {
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("tokio task failed")
            }
            Rt::TokioCurrent => {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("tokio task failed")
            }
        }
    }
}

/// Runs `body(rt)` on every runtime flavour, each under a watchdog of `limit`.
pub fn on_every_runtime<F, Fut>(name: &str, limit: Duration, body: F)
where
    F: Fn(Rt) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for rt in Rt::ALL {
        within(&format!("{name} on {rt:?}"), limit, || rt.block_on(body(rt)));
    }
}

/// Runs `f`, aborting the process with a message if it has not returned after `limit` (a hang
/// detector: a deadlock fails the test run loudly instead of stalling it).
pub fn within<R>(what: &str, limit: Duration, f: impl FnOnce() -> R) -> R {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let what = what.to_string();
    let watchdog = std::thread::spawn(move || {
        let start = Instant::now();
        while !d.load(SeqCst) {
            if start.elapsed() > limit {
                eprintln!("HANG: {what} did not finish within {limit:?}; aborting");
                std::process::abort();
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    });
    let out = f();
    done.store(true, SeqCst);
    watchdog.thread().unpark();
    watchdog.join().unwrap();
    out
}

/// A waker that counts how often it was woken.
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// A counting waker and its counter.
pub fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker { wakes: AtomicUsize::new(0) });
    (c.clone(), Waker::from(c))
}

impl CountingWaker {
    /// How many times it was woken.
    pub fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

/// Polls `f` once with `waker`.
pub fn poll_with<F: Future + ?Sized>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// A future pinned on the heap, with its own counting waker, for polling by hand.
pub struct Probe<F: Future> {
    pub fut: Pin<Box<F>>,
    pub counter: Arc<CountingWaker>,
    waker: Waker,
}

impl<F: Future> Probe<F> {
    pub fn new(f: F) -> Self {
        let (counter, waker) = counting_waker();
        Probe { fut: Box::pin(f), counter, waker }
    }

    /// Polls once.
    pub fn poll(&mut self) -> Poll<F::Output> {
        poll_with(self.fut.as_mut(), &self.waker)
    }

    /// Polls once and expects `Pending`.
    #[track_caller]
    pub fn pending(&mut self) {
        assert!(self.poll().is_pending(), "expected Pending");
    }

    /// Polls once and expects `Ready`.
    #[track_caller]
    pub fn ready(&mut self) -> F::Output {
        match self.poll() {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("expected Ready"),
        }
    }

    /// Times woken so far.
    pub fn wakes(&self) -> usize {
        self.counter.wakes()
    }
}
