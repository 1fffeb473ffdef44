//! `JoinHandle` and `JoinError`.

use alloc::boxed::Box;
use core::any::Any;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use super::raw::Header;
use super::state::ToNotified;
use super::TaskId;

/// An owned permission to await a task's result.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] if the task panicked or was aborted.
/// Dropping it *detaches* the task: it keeps running, its output is dropped when it finishes.
///
/// ```
/// spindle::block_on(async {
///     let handle = spindle::spawn(async { 1 + 1 });
///     assert_eq!(handle.await.unwrap(), 2);
/// });
/// ```
pub struct JoinHandle<T> {
    raw: NonNull<Header>,
    /// Set once the output was taken: the task is complete, so dropping needs no state handshake.
    consumed: bool,
    _output: PhantomData<T>,
}

// SAFETY: the handle only moves the output (`T`) across threads; the task itself is driven by its
// scheduler. Sending it is sound exactly when sending `T` is.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` allows `id`, `is_finished` and `abort`, which only touch atomics.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    /// # Safety
    /// `raw` is a live task whose output type is `T`, and the caller passes its join reference.
    pub(crate) unsafe fn from_raw(raw: NonNull<Header>) -> JoinHandle<T> {
        JoinHandle { raw, consumed: false, _output: PhantomData }
    }

    fn header(&self) -> &Header {
        // SAFETY: the handle owns a reference, so the header is live.
        unsafe { self.raw.as_ref() }
    }

    /// Requests cancellation. The task's future is dropped at its next scheduling point, on the
    /// thread that runs it; awaiting the handle then gives a `JoinError` for which
    /// [`is_cancelled`](JoinError::is_cancelled) is true (unless the task had already finished).
    pub fn abort(&self) {
        request_abort(self.raw);
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.header().state.load().is_complete()
    }

    /// The task's id, unique for the life of the process.
    pub fn id(&self) -> TaskId {
        self.header().id
    }

    /// The header, for diagnostics.
    pub fn header_ref(&self) -> &Header {
        self.header()
    }

    /// A handle that can abort this task (and ask whether it finished) without owning its
    /// output: cloneable, and usable after this `JoinHandle` was awaited or dropped.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let handle = spindle::spawn(std::future::pending::<()>());
    ///     let abort = handle.abort_handle();
    ///     abort.abort();
    ///     assert!(handle.await.unwrap_err().is_cancelled());
    ///     assert!(abort.is_finished());
    /// });
    /// ```
    pub fn abort_handle(&self) -> AbortHandle {
        self.header().state.ref_inc();
        AbortHandle { raw: self.raw }
    }
}

/// Aborts a task without owning its output (from [`JoinHandle::abort_handle`]).
///
/// Unlike the `JoinHandle` it is `Clone`, and dropping it does nothing to the task. It keeps the
/// task's allocation (not its future or output) alive until it is dropped.
///
/// ```
/// spindle::block_on(async {
///     let abort = spindle::spawn(std::future::pending::<()>()).abort_handle(); // task detached
///     let other = abort.clone();
///     other.abort();
///     while !abort.is_finished() {
///         spindle::task::yield_now().await;
///     }
/// });
/// ```
pub struct AbortHandle {
    raw: NonNull<Header>,
}

// SAFETY: an `AbortHandle` only touches the header's atomics and immutable fields, and holds a
// reference to the cell. It never touches the output or the future: by the time it may hold the
// last reference, the task finished or was shut down on its own thread, and its output was
// dropped by its `JoinHandle` or, without one, when the task finished, so freeing the cell from
// any thread drops nothing of the task's.
unsafe impl Send for AbortHandle {}
// SAFETY: see `Send`: `&AbortHandle` allows only `abort`, `is_finished` and `id`.
unsafe impl Sync for AbortHandle {}

impl AbortHandle {
    fn header(&self) -> &Header {
        // SAFETY: the handle owns a reference, so the header is live.
        unsafe { self.raw.as_ref() }
    }

    /// Requests cancellation, as [`JoinHandle::abort`] does; nothing happens if the task
    /// already finished.
    pub fn abort(&self) {
        request_abort(self.raw);
    }

    /// Whether the task has finished (completed, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.header().state.load().is_complete()
    }

    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.header().id
    }
}

impl Clone for AbortHandle {
    fn clone(&self) -> AbortHandle {
        self.header().state.ref_inc();
        AbortHandle { raw: self.raw }
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        let h = self.header();
        if h.state.ref_dec() {
            // SAFETY: that was the last reference.
            unsafe { (h.vtable.dealloc)(self.raw) };
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle").field("id", &self.id()).finish()
    }
}

/// Marks the task `raw` (to which the caller holds a reference) cancelled and schedules it, so
/// its next poll drops its future; nothing if it finished.
fn request_abort(raw: NonNull<Header>) {
    // SAFETY: the caller's reference keeps the header live.
    let h = unsafe { raw.as_ref() };
    if h.state.transition_to_notified_and_cancel() == ToNotified::Submit {
        // SAFETY: the transition added the queue reference that `schedule` takes over.
        unsafe { (h.vtable.schedule)(raw) };
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.get_mut().poll_unbudgeted(cx)
    }
}

impl<T> JoinHandle<T> {
    /// Whether the output was already taken (the handle returned `Ready`): polling it again
    /// panics.
    #[doc(hidden)]
    pub fn is_consumed(&self) -> bool {
        self.consumed
    }

    /// The output if the task finished, else `Pending` with `cx`'s waker kept to be woken when
    /// it does: [`poll`](Future::poll) without spending the task's cooperative budget, for a
    /// container of handles that spends one unit per result it returns (`JoinSet`), not one per
    /// handle it looks at.
    #[doc(hidden)]
    pub fn poll_unbudgeted(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, JoinError>> {
        assert!(!self.consumed, "spindle: JoinHandle polled after it returned Ready");
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        let h = self.header();
        // SAFETY: `out` has the type the vtable's `try_read_output` writes for this task.
        unsafe { (h.vtable.try_read_output)(self.raw, &mut out as *mut _ as *mut (), cx.waker()) };
        if out.is_ready() {
            self.consumed = true;
        }
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let h = self.header();
        if self.consumed {
            // Complete and output taken: only our reference is left to drop.
            if h.state.ref_dec() {
                // SAFETY: that was the last reference.
                unsafe { (h.vtable.dealloc)(self.raw) };
            }
            return;
        }
        if h.state.drop_join_handle_fast() {
            return;
        }
        // SAFETY: we pass the handle's reference; `self` is not used afterwards.
        unsafe { (h.vtable.drop_join_handle_slow)(self.raw) };
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id()).finish()
    }
}

enum Repr {
    Cancelled,
    Panic(Box<dyn Any + Send + 'static>),
}

/// Why a task did not produce its output: it was cancelled, or it panicked.
pub struct JoinError {
    repr: Repr,
    id: Option<TaskId>,
}

impl JoinError {
    pub(crate) fn cancelled(id: TaskId) -> JoinError {
        JoinError { repr: Repr::Cancelled, id: Some(id) }
    }

    pub(crate) fn panic(payload: Box<dyn Any + Send + 'static>) -> JoinError {
        JoinError { repr: Repr::Panic(payload), id: None }
    }

    pub(crate) fn with_id(mut self, id: TaskId) -> JoinError {
        self.id = Some(id);
        self
    }

    /// Whether the task was cancelled (aborted, or dropped at runtime shutdown).
    pub fn is_cancelled(&self) -> bool {
        matches!(self.repr, Repr::Cancelled)
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.repr, Repr::Panic(_))
    }

    /// The id of the task that failed.
    pub fn id(&self) -> Option<TaskId> {
        self.id
    }

    /// The panic payload, to resume the panic with `std::panic::resume_unwind`.
    ///
    /// # Panics
    /// If the task was cancelled rather than panicking; see [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        self.try_into_panic().expect("`JoinError::into_panic` called on a cancelled task's error")
    }

    /// The panic payload, or the error back if the task was cancelled.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.repr {
            Repr::Panic(p) => Ok(p),
            Repr::Cancelled => Err(self),
        }
    }

    fn panic_message(&self) -> Option<&str> {
        match &self.repr {
            Repr::Panic(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<alloc::string::String>().map(|s| s.as_str())),
            Repr::Cancelled => None,
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = |f: &mut fmt::Formatter<'_>| match self.id {
            Some(id) => write!(f, "task {id}"),
            None => write!(f, "task"),
        };
        match (&self.repr, self.panic_message()) {
            (Repr::Cancelled, _) => {
                id(f)?;
                write!(f, " was cancelled")
            }
            (Repr::Panic(_), Some(msg)) => {
                id(f)?;
                write!(f, " panicked with message {msg:?}")
            }
            (Repr::Panic(_), None) => {
                id(f)?;
                write!(f, " panicked")
            }
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Cancelled => write!(f, "JoinError::Cancelled({:?})", self.id),
            Repr::Panic(_) => write!(f, "JoinError::Panic({:?}, {:?}, ..)", self.id, self.panic_message()),
        }
    }
}

impl core::error::Error for JoinError {}
