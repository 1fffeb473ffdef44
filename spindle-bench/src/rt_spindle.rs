//! The spindle adapter (DESIGN.md section 9 API).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use spindle::runtime::IoDriver;

use crate::rt::Rt;

/// spindle, multi-thread (2 workers), current-thread or per-core (2 cores).
pub struct Spindle {
    rt: spindle::runtime::Runtime,
    name: &'static str,
}

impl Spindle {
    /// Work-stealing runtime with `workers` workers.
    pub fn multi_thread(workers: usize) -> Spindle {
        Spindle::multi_thread_on(workers, IoDriver::Auto)
    }

    /// [`multi_thread`](Self::multi_thread) on the given I/O driver.
    pub fn multi_thread_on(workers: usize, driver: IoDriver) -> Spindle {
        let rt = spindle::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .io_driver(driver)
            .build()
            .expect("build spindle multi-thread runtime");
        Spindle { rt, name: "spindle-mt" }
    }

    /// Current-thread runtime.
    pub fn current_thread() -> Spindle {
        Spindle::current_thread_on(IoDriver::Auto)
    }

    /// [`current_thread`](Self::current_thread) on the given I/O driver.
    pub fn current_thread_on(driver: IoDriver) -> Spindle {
        // As `#[spindle::main(flavor = "current_thread")]` builds it: bound to the thread driving it.
        let rt = spindle::runtime::Builder::new_current_thread()
            .bind_to_driving_thread(true)
            .io_driver(driver)
            .build()
            .expect("build spindle current-thread runtime");
        Spindle { rt, name: "spindle-ct" }
    }

    /// Per-core runtime with `cores` cores (each a current-thread runtime on its own pinned
    /// thread; no work stealing).
    pub fn per_core(cores: usize) -> Spindle {
        Spindle::per_core_on(cores, IoDriver::Auto)
    }

    /// [`per_core`](Self::per_core) on the given I/O driver.
    pub fn per_core_on(cores: usize, driver: IoDriver) -> Spindle {
        let rt = spindle::runtime::Builder::new_per_core()
            .worker_threads(cores)
            .io_driver(driver)
            .build()
            .expect("build spindle per-core runtime");
        Spindle { rt, name: "spindle-pc" }
    }

    /// The runtime.
    pub fn runtime(&self) -> &spindle::runtime::Runtime {
        &self.rt
    }

    /// The I/O backend of this process's runtimes (`"io_uring"` or `"epoll"`).
    pub fn io_driver(&self) -> &'static str {
        self.rt.handle().io_driver()
    }
}

/// spindle's `JoinHandle`, unwrapped.
pub struct SpindleJoin<T>(spindle::task::JoinHandle<T>);

impl<T> Future for SpindleJoin<T> {
    type Output = T;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(v)) => Poll::Ready(v),
            Poll::Ready(Err(e)) => panic!("spindle task failed: {e}"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Rt for Spindle {
    type Join<T: Send + 'static> = SpindleJoin<T>;

    fn name(&self) -> &'static str {
        self.name
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn spawn<F>(f: F) -> SpindleJoin<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        SpindleJoin(spindle::spawn(f))
    }

    fn spawn_remote<F>(&self, f: F) -> SpindleJoin<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        SpindleJoin(self.rt.handle().spawn(f))
    }

    fn spawn_blocking<F, T>(f: F) -> SpindleJoin<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        SpindleJoin(spindle::spawn_blocking(f))
    }

    fn yield_now() -> impl Future<Output = ()> + Send {
        spindle::task::yield_now()
    }
}
