//! Blocking the calling thread on a future, for the `blocking_*` methods of sync code.
//!
//! The thread parks with `std::thread::park` and the future's waker unparks it. Nothing here knows
//! about runtimes: calling a `blocking_*` method from inside an async task blocks that task's
//! worker thread until the value arrives (and deadlocks a single-threaded executor if the value
//! must come from another task on it), exactly as a `std::sync::Mutex` would.

use alloc::sync::Arc;
use alloc::task::Wake;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

/// Wakes a parked thread.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread, parking between polls, until it completes.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        // A wake that arrived before we park leaves the token set, so `park` returns at once;
        // spurious returns just poll again.
        std::thread::park();
    }
}
