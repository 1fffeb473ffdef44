//! A scope's `'static` task (`spawn_task`), split into the task that runs on the runtime and the
//! borrowed child that joins it.
//!
//! The task runs the future with the scope's token current (woken when it is cancelled), catches
//! a panic, and sends the outcome over a [`oneshot`]. The joiner awaits it (shielded: the scope
//! joins its tasks even when cancelled; the task itself sees the cancellation) and re-raises a
//! panic inside the scope. Dropping the joiner (the scope was dropped) aborts the task: it drops
//! its future at its next poll, on its own thread.

use alloc::sync::Arc;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

use super::cancel::{shield, with_token, CancelToken, WithToken};
use super::child::{catch, resume, Panic};
use crate::loom::{AtomicBool, Ordering::*};
use crate::sync::atomic_waker::AtomicWaker;
use crate::sync::oneshot;

struct Abort {
    aborted: AtomicBool,
    task: AtomicWaker,
}

pin_project_lite::pin_project! {
    /// The task side.
    pub(crate) struct Task<F: Future> {
        #[pin]
        inner: WithToken<Catch<F>>,
        tx: Option<oneshot::Sender<Result<F::Output, Panic>>>,
        abort: Arc<Abort>,
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct Catch<F> {
        #[pin]
        future: Option<F>,
    }
}

impl<F: Future> Future for Catch<F> {
    type Output = Result<F::Output, Panic>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let r = catch(|| match this.future.as_mut().as_pin_mut() {
            Some(f) => f.poll(cx),
            None => unreachable!("polled after completion"),
        });
        match r {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => {
                this.future.set(None);
                Poll::Ready(Ok(v))
            }
            Err(p) => {
                let _ = catch(|| this.future.set(None));
                Poll::Ready(Err(p))
            }
        }
    }
}

impl<F: Future> Future for Task<F> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if this.abort.aborted.load(Acquire) {
            // Dropping `self` drops the future; the joiner is gone, nobody waits for the outcome.
            return Poll::Ready(());
        }
        this.abort.task.register(cx.waker());
        match this.inner.poll(cx) {
            Poll::Ready(out) => {
                if let Some(tx) = this.tx.take() {
                    let _ = tx.send(out);
                }
                Poll::Ready(())
            }
            Poll::Pending => {
                if this.abort.aborted.load(Acquire) {
                    return Poll::Ready(());
                }
                Poll::Pending
            }
        }
    }
}

struct AbortOnDrop(Option<Arc<Abort>>);

impl AbortOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.aborted.store(true, Release);
            a.task.wake();
        }
    }
}

/// Splits `future` into the task to spawn and the child that joins it.
pub(crate) fn split<F>(future: F, token: CancelToken) -> (Task<F>, impl Future<Output = F::Output> + Send + 'static)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let abort = Arc::new(Abort { aborted: AtomicBool::new(false), task: AtomicWaker::new() });
    let task = Task { inner: with_token(token, Catch { future: Some(future) }), tx: Some(tx), abort: abort.clone() };
    // Made here, not inside the async block: a joiner dropped before its first poll (its scope
    // dropped meanwhile) must abort the task too, and the block's locals only exist once polled.
    let mut guard = AbortOnDrop(Some(abort));
    let joiner = async move {
        let out = shield(rx).await;
        // Finished: nothing left to abort.
        guard.disarm();
        match out {
            Ok(Ok(v)) => v,
            Ok(Err(p)) => resume(p),
            Err(_) => panic!("spindle: a scope's spawn_task task was dropped by its runtime (shutdown?)"),
        }
    };
    (task, joiner)
}
