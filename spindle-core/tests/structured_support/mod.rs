//! Helpers for the `structured_*` tests: run one body on every runtime (spindle multi-thread and
//! current-thread, tokio multi-thread and current-thread), a spawner for each, drop counters, and
//! a watchdog that turns a hang into a loud failure (nothing asserts on timing).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use spindle_core::structured::{Spawn, SpawnMeta};

/// The runtime a test body runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
    SpindleMulti,
    SpindleCurrent,
    TokioMulti,
    TokioCurrent,
}

impl Rt {
    pub const ALL: [Rt; 4] = [Rt::SpindleMulti, Rt::SpindleCurrent, Rt::TokioMulti, Rt::TokioCurrent];

    pub fn is_spindle(self) -> bool {
        matches!(self, Rt::SpindleMulti | Rt::SpindleCurrent)
    }

    /// Sleeps on this runtime's timer.
    pub async fn sleep(self, d: Duration) {
        if self.is_spindle() {
            spindle::time::sleep(d).await
        } else {
            tokio::time::sleep(d).await
        }
    }

    pub async fn yield_now(self) {
        if self.is_spindle() {
            spindle::task::yield_now().await
        } else {
            tokio::task::yield_now().await
        }
    }

    /// Runs `f` as a task on a fresh runtime of this flavour.
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
                let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("tokio task failed")
            }
            Rt::TokioCurrent => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
                let h = rt.spawn(f);
                rt.block_on(h).expect("tokio task failed")
            }
        }
    }
}

/// Spawns on whichever runtime the test runs on.
#[derive(Clone, Copy, Debug)]
pub struct AnySpawn(pub Rt);

impl Spawn for AnySpawn {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F, meta: SpawnMeta) {
        if self.0.is_spindle() {
            spindle::structured::Runtime.spawn(future, meta)
        } else {
            drop(tokio::spawn(future));
        }
    }
}

/// Runs `body(rt)` on every runtime flavour, each under a watchdog.
pub fn on_every_runtime<F, Fut>(name: &str, body: F)
where
    F: Fn(Rt) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for rt in Rt::ALL {
        within(&format!("{name} on {rt:?}"), Duration::from_secs(60), || rt.block_on(body(rt)));
    }
}

/// Runs `f`, aborting the process if it has not returned after `limit`.
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

/// Counts drops.
#[derive(Clone, Default)]
pub struct Drops(pub Arc<AtomicUsize>);

impl Drops {
    pub fn count(&self) -> usize {
        self.0.load(SeqCst)
    }
    pub fn guard(&self) -> DropGuard {
        DropGuard(self.0.clone())
    }
}

pub struct DropGuard(Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// A future that counts its polls and completes once `ready` is set (waking through `waker`).
pub struct Gate {
    pub polls: Arc<AtomicUsize>,
    pub open: Arc<AtomicBool>,
    pub waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate { polls: Arc::default(), open: Arc::default(), waker: Arc::default() }
    }
    pub fn opener(&self) -> GateOpener {
        GateOpener { open: self.open.clone(), waker: self.waker.clone() }
    }
}

#[derive(Clone)]
pub struct GateOpener {
    open: Arc<AtomicBool>,
    waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
}

impl GateOpener {
    pub fn open(&self) {
        self.open.store(true, SeqCst);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }
}

impl Future for Gate {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, SeqCst);
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.open.load(SeqCst) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
