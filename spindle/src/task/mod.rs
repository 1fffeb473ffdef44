//! Tasks: spawning, joining, yielding, naming.
//!
//! A task is a future the runtime polls to completion. [`spawn`] runs it on the current runtime
//! (in parallel on the multi-thread runtime), [`spawn_local`] keeps a `!Send` future on the current
//! worker, [`spawn_blocking`] runs a closure on the blocking pool. Each returns a [`JoinHandle`];
//! awaiting it gives the output or a [`JoinError`] (panic or cancellation). Dropping it detaches.
//!
//! Every task's header records its [`TaskMeta`] (read it with
//! `handle.header_ref().meta()`): its name, spawn location, and its place in the task tree —
//! `parent`, the task that spawned it or owns the scope/group it belongs to, and `group`, that
//! scope or [`TaskGroup`](crate::TaskGroup) ([`GroupRef`]). [`try_id`] is the id of the task being
//! polled, [`parent_id`] its parent.
//!
//! ```
//! spindle::block_on(async {
//!     let a = spindle::spawn(async { 1 });
//!     let b = spindle::task::Builder::new().name("b").spawn(async { 2 }).unwrap();
//!     assert_eq!(a.await.unwrap() + b.await.unwrap(), 3);
//! });
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use spindle_core::task::{AbortHandle, GroupKind, GroupRef, JoinError, JoinHandle, TaskId, TaskMeta};

pub mod join_set;
pub use join_set::JoinSet;

use crate::rt::context;

#[track_caller]
pub(crate) fn meta_here(name: Option<Box<str>>) -> TaskMeta {
    TaskMeta { name, parent: context::current_task(), ..TaskMeta::here() }
}

const NO_RUNTIME: &str = "there is no spindle runtime on this thread. Call it from inside \
`Runtime::block_on`, `spindle::block_on`, a spawned task or `#[spindle::main]`, or spawn with a \
`runtime::Handle` from other threads";

/// Spawns `future` with `meta` on the current runtime; `None` outside one (every spawn function
/// then reports it its own way: [`no_runtime`] or an `io::Error`).
pub(crate) fn spawn_here<F>(future: F, meta: TaskMeta) -> Option<JoinHandle<F::Output>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    context::with_scheduler(|s| s.map(|s| s.spawn(future, meta)))
}

/// [`spawn_here`] for a `!Send` task on the current thread (`meta` is marked local here).
pub(crate) fn spawn_local_here<F>(future: F, meta: TaskMeta) -> Option<JoinHandle<F::Output>>
where
    F: Future + 'static,
{
    let meta = TaskMeta { local: true, ..meta };
    context::with_scheduler(|s| s.map(|s| s.spawn_local(future, meta)))
}

/// The panic of a spawn outside any runtime, naming the function called.
#[track_caller]
pub(crate) fn no_runtime(what: &str) -> ! {
    panic!("{what}: {NO_RUNTIME}")
}

/// Spawns a task on the current runtime and returns its [`JoinHandle`].
///
/// # Panics
/// Outside a runtime, with a message naming the fix. [`Builder::spawn`] returns an error instead.
///
/// ```
/// spindle::block_on(async {
///     let h = spindle::spawn(async { 40 + 2 });
///     assert_eq!(h.await.unwrap(), 42);
/// });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_here(future, meta_here(None)).unwrap_or_else(|| no_runtime("spindle::spawn"))
}

/// Spawns a `!Send` task that stays on the current thread (the current worker of a multi-thread
/// runtime, or the thread driving a current-thread runtime).
///
/// # Panics
/// Outside a runtime, or on a multi-thread runtime from a thread that is not one of its workers.
///
/// ```
/// use std::rc::Rc;
/// spindle::block_on(async {
///     let shared = Rc::new(5);
///     let s2 = shared.clone();
///     let h = spindle::spawn_local(async move { *s2 + 1 });
///     assert_eq!(h.await.unwrap(), 6);
/// });
/// ```
#[track_caller]
pub fn spawn_local<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    spawn_local_here(future, meta_here(None)).unwrap_or_else(|| no_runtime("spindle::spawn_local"))
}

/// Runs a blocking closure on the runtime's blocking pool, so it does not stall async tasks.
///
/// # Panics
/// Outside a runtime.
///
/// ```
/// spindle::block_on(async {
///     let n = spindle::spawn_blocking(|| (1..=10).sum::<u32>()).await.unwrap();
///     assert_eq!(n, 55);
/// });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    // Spawned outside the closure, so `#[track_caller]` records the caller's location.
    match context::with_scheduler(|s| s.map(|s| s.blocking().clone())) {
        Some(pool) => pool.spawn(f, None),
        None => panic!("spindle::spawn_blocking: {NO_RUNTIME}"),
    }
}

/// Yields to the scheduler once: the task goes to the back of its worker's queue.
///
/// ```
/// spindle::block_on(async {
///     spindle::task::yield_now().await;
/// });
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // A task waking itself during its poll is re-queued behind the others (`Schedule::yield_now`).
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The id of the task being polled on this thread (tokio's `task::id`).
///
/// # Panics
/// Outside a task (from `block_on`'s own future, or a thread that runs no task); see [`try_id`].
///
/// ```
/// spindle::block_on(async {
///     let h = spindle::spawn(async { spindle::task::id() });
///     let id = h.id();
///     assert_eq!(h.await.unwrap(), id);
/// });
/// ```
#[track_caller]
pub fn id() -> TaskId {
    try_id().expect("spindle::task::id: called outside a task (use task::try_id to ask without panicking)")
}

/// Runs `future` without the cooperative budget (tokio's `task::unconstrained`): the runtime no
/// longer makes its spindle operations return `Pending` to let other tasks run, so it runs until
/// it really waits. For a future that must not be interrupted (a tight loop over a channel that
/// is always ready, measured against a deadline); everything else on its worker waits meanwhile.
///
/// ```
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::sync::mpsc::unbounded_channel();
///     for i in 0..10_000u32 {
///         tx.send(i).unwrap();
///     }
///     drop(tx);
///     // Ten thousand ready receives in one poll (with the budget, 128 at a time).
///     let sum = spindle::task::unconstrained(async move {
///         let mut sum = 0u64;
///         while let Some(i) = rx.recv().await {
///             sum += u64::from(i);
///         }
///         sum
///     })
///     .await;
///     assert_eq!(sum, 49_995_000);
/// });
/// ```
pub fn unconstrained<F: Future>(future: F) -> Unconstrained<F> {
    Unconstrained { future }
}

pin_project_lite::pin_project! {
    /// The future of [`unconstrained`].
    #[derive(Debug)]
    #[must_use = "futures do nothing unless awaited"]
    pub struct Unconstrained<F> {
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for Unconstrained<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let future = self.project().future;
        context::unconstrained(|| future.poll(cx))
    }
}

/// The id of the task being polled on this thread, if any.
///
/// ```
/// spindle::block_on(async {
///     let h = spindle::spawn(async { spindle::task::try_id() });
///     let id = h.id();
///     assert_eq!(h.await.unwrap(), Some(id));
/// });
/// ```
pub fn try_id() -> Option<TaskId> {
    context::current_task()
}

/// The parent of the task being polled on this thread: the task that spawned it, or for a child
/// of a `scope!` or `TaskGroup`, the task that owns the scope or group (its
/// [`TaskMeta::parent`](spindle_core::task::TaskMeta::parent)). `None` outside a task, or for a
/// task spawned from outside any task (from `block_on`'s future, or another thread).
///
/// ```
/// spindle::block_on(async {
///     let outer = spindle::spawn(async {
///         let me = spindle::task::try_id();
///         spindle::spawn(async { spindle::task::parent_id() }).await.unwrap() == me
///     });
///     assert!(outer.await.unwrap());
/// });
/// ```
pub fn parent_id() -> Option<TaskId> {
    context::current_parent()
}

/// Spends one unit of the task's cooperative budget, yielding if it is used up. Call it in long
/// loops that never wait on anything, so other tasks on the worker get their turn.
///
/// ```
/// spindle::block_on(async {
///     for _ in 0..1000 {
///         spindle::task::consume_budget().await;
///     }
/// });
/// ```
pub async fn consume_budget() {
    std::future::poll_fn(spindle_core::coop::poll_proceed).await
}

/// Configures a task before spawning it (its name, for diagnostics).
///
/// ```
/// spindle::block_on(async {
///     let h = spindle::task::Builder::new().name("fetcher").spawn(async { 1 }).unwrap();
///     assert_eq!(h.header_ref().meta().name.as_deref(), Some("fetcher"));
///     h.await.unwrap();
/// });
/// ```
#[derive(Debug, Default)]
pub struct Builder<'a> {
    name: Option<&'a str>,
    /// The join set the task is spawned into (`JoinSet::build_task`), recorded for dumps.
    group: Option<GroupRef>,
}

impl<'a> Builder<'a> {
    /// A builder with no name.
    pub fn new() -> Builder<'a> {
        Builder { name: None, group: None }
    }

    /// Names the task (shown in diagnostics and dumps).
    pub fn name(self, name: &'a str) -> Builder<'a> {
        Builder { name: Some(name), ..self }
    }

    /// Records the task as a member of `group` (its `TaskMeta::group`).
    pub(crate) fn in_group(self, group: GroupRef) -> Builder<'a> {
        Builder { group: Some(group), ..self }
    }

    #[track_caller]
    fn meta(&self) -> TaskMeta {
        TaskMeta { group: self.group, ..meta_here(self.name.map(Box::from)) }
    }

    /// Spawns on the current runtime; errors (instead of panicking) outside one.
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_here(future, self.meta())
            .ok_or_else(|| io::Error::other(format!("spindle::task::Builder::spawn: {NO_RUNTIME}")))
    }

    /// Spawns on the given runtime.
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &crate::runtime::Handle) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(handle.inner.spawn(future, self.meta()))
    }

    /// Spawns a `!Send` task on the current thread (see [`spawn_local`]).
    #[track_caller]
    pub fn spawn_local<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + 'static,
    {
        spawn_local_here(future, self.meta())
            .ok_or_else(|| io::Error::other(format!("spindle::task::Builder::spawn_local: {NO_RUNTIME}")))
    }

    /// Runs a blocking closure on the blocking pool of `handle`'s runtime (from any thread).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let h = spindle::task::Builder::new().name("digest").spawn_blocking_on(|| 9, rt.handle()).unwrap();
    /// assert_eq!(h.header_ref().meta().name.as_deref(), Some("digest"));
    /// assert_eq!(rt.block_on(h).unwrap(), 9);
    /// ```
    #[track_caller]
    pub fn spawn_blocking_on<F, R>(self, f: F, handle: &crate::runtime::Handle) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        Ok(handle.inner.blocking().spawn(f, self.name.map(Box::from)))
    }

    /// Runs a blocking closure on the current runtime's blocking pool.
    #[track_caller]
    pub fn spawn_blocking<F, R>(self, f: F) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let name = self.name.map(Box::from);
        // Spawned outside the closure, so `#[track_caller]` records the caller's location.
        match context::with_scheduler(|s| s.map(|s| s.blocking().clone())) {
            Some(pool) => Ok(pool.spawn(f, name)),
            None => Err(io::Error::other(format!("spindle::task::Builder::spawn_blocking: {NO_RUNTIME}"))),
        }
    }
}
