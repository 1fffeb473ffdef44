//! Running blocking system calls off the async threads: on the current runtime's blocking pool,
//! or on a fresh thread outside any runtime.
//!
//! The job owns what it works on (an owned buffer, say) for as long as it runs, even if the
//! future awaiting it is dropped: the completion-style contract io_uring operations keep too, so
//! the file API does not change when an io_uring backend serves it. The buffer always comes back:
//! a job dropped before it ran (runtime shutdown, no thread available) returns it with an error.

use std::io;

use spindle_core::sync::oneshot;

use super::BufResult;
use crate::rt::context;

/// Carries the buffer and the reply channel; replies with an error if dropped before the job ran.
struct Carrier<B, T> {
    what: &'static str,
    buf: Option<B>,
    tx: Option<oneshot::Sender<BufResult<T, B>>>,
}

impl<B, T> Carrier<B, T> {
    fn reply(&mut self, res: io::Result<T>, buf: B) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((res, buf)); // the awaiting future may be gone: then the buffer is dropped here
        }
    }
}

impl<B, T> Drop for Carrier<B, T> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            let e = io::Error::other(format!(
                "spindle: {}: the blocking job did not run (its runtime is shutting down, or no thread could be started)",
                self.what
            ));
            self.reply(Err(e), buf);
        }
    }
}

/// Runs `f(&mut buf)` on the blocking pool (outside a runtime: on a new thread) and gives the
/// buffer back with the result. A panic in `f` becomes an error (the buffer still comes back).
pub(crate) async fn run_buf<B, T, F>(what: &'static str, buf: B, f: F) -> BufResult<T, B>
where
    B: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut B) -> io::Result<T> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let mut carrier = Carrier { what, buf: Some(buf), tx: Some(tx) };
    let job = move || {
        let mut buf = carrier.buf.take().expect("spindle: blocking job ran twice");
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut buf))).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(io::Error::other(format!("spindle: {what}: the blocking job panicked: {msg}")))
        });
        carrier.reply(res, buf);
    };
    submit(what, job);
    match rx.await {
        Ok(r) => r,
        // The carrier always replies (by running or by being dropped); only leaking the job (never
        // running and never dropping it) could get here, which the runtime does not do.
        Err(_) => unreachable!("spindle: {what}: blocking job vanished without replying"),
    }
}

/// Like [`run_buf`] without a buffer.
pub(crate) async fn run<T, F>(what: &'static str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    run_buf(what, (), move |_| f()).await.0
}

/// Starts `job` on the current runtime's blocking pool, or on a new thread. If neither is possible
/// the job is dropped (its carrier then replies with an error).
fn submit(what: &'static str, job: impl FnOnce() + Send + 'static) {
    let mut job = Some(job);
    let spawned = context::with_scheduler(|s| match s {
        Some(s) => {
            // Detached: the reply comes through the carrier's channel.
            drop(s.blocking().spawn(job.take().expect("present"), None));
            true
        }
        None => false,
    });
    if !spawned {
        let job = job.take().expect("present");
        // On failure the closure (and the carrier in it) is dropped, which replies with an error.
        let _ = std::thread::Builder::new().name(format!("spindle-blocking ({what})")).spawn(job);
    }
}
