//! [`TaskGroup`]: `'static` tasks with Kotlin/Trio failure semantics.
//!
//! # Group state
//!
//! One word of flags, [`ABORTED`] (hard cancel: every task drops its future at its next poll)
//! and [`FAILED`] (a fail-fast group's first failure, which cancels the token before its result
//! is queued), plus the group's token (soft cancel). Everything else lives under one short spin lock
//! ([`Lock`](super::Lock)): the wakers of tasks that are waiting (so a cancel or abort can wake
//! them), the queue of finished tasks' results (so `join_next` is O(1) per completion), how many
//! tasks finished, and the joiner's waker.
//!
//! A task takes the lock only when it first returns `Pending` (to leave its waker; again only
//! if its waker changes) and when it finishes (to queue its result and count itself); a task
//! that finishes in its first poll takes it once, and touches no other shared word that is
//! written. `spawn` counts the tasks spawned in an atomic word of its own (`spawned`), so the
//! spawning thread and the finishing workers never write the same cache line: the tasks still
//! running are `spawned - finished`, and since a task counts itself finished under the lock
//! together with queueing its result, `join_next` (which looks at both under the lock) never
//! sees "no task left" while a result is on its way. `join_next` moves the whole queue to the
//! joiner's side at once and serves from there, taking the lock only when that side is empty.
//! A joiner that finds nothing yields once (per batch it takes) before it registers its waker,
//! so that it wakes to a batch rather than to each result (`JoinNext::poll`).
//! The read-mostly words (flags, token), the spawn count and the lock sit on separate cache lines.

use alloc::collections::VecDeque;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::panic::Location;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

use super::cancel::{CancelHook, CancelToken};
use super::child::{catch, Panic};
use super::current;
use super::spawn::{Spawn, SpawnMeta};
use super::Lock;
use crate::loom::{AtomicUsize, Ordering::*};
use crate::task::{GroupKind, GroupRef, TaskId};

/// A value on cache lines of its own (128 bytes: adjacent-line prefetching pairs 64-byte lines),
/// so that writes to it do not slow down threads using its neighbours.
#[repr(align(128))]
struct CachePadded<T>(T);

/// Every task must drop its future at its next poll.
const ABORTED: usize = 1 << 0;
/// A task of a fail-fast group failed (the first to set it cancels the group).
const FAILED: usize = 1 << 1;

/// How a group reacts to a failed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The first error or panic cancels the other tasks and the group's body (Kotlin's
    /// `coroutineScope`, Trio's nursery).
    FailFast,
    /// Failures are reported but cancel nothing (Kotlin's `supervisorScope`).
    Supervisor,
}

/// Why a task of a group did not produce a value.
pub enum TaskError<E> {
    /// It returned `Err`.
    Failed(E),
    /// It panicked (the payload, to re-raise with `std::panic::resume_unwind`).
    Panicked(Panic),
    /// It was aborted before it finished (the group was aborted or dropped).
    Aborted,
}

impl<E> TaskError<E> {
    /// The error the task returned, if that is why it failed.
    ///
    /// ```
    /// let e = spindle_core::structured::TaskError::Failed("no");
    /// assert_eq!(e.into_failed(), Some("no"));
    /// ```
    pub fn into_failed(self) -> Option<E> {
        match self {
            TaskError::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the task panicked.
    ///
    /// ```
    /// let e = spindle_core::structured::TaskError::<()>::Aborted;
    /// assert!(!e.is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }
}

impl<E: fmt::Debug> fmt::Debug for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
            TaskError::Panicked(_) => f.write_str("Panicked(..)"),
            TaskError::Aborted => f.write_str("Aborted"),
        }
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Failed(e) => write!(f, "task failed: {e}"),
            TaskError::Panicked(_) => f.write_str("task panicked"),
            TaskError::Aborted => f.write_str("task aborted"),
        }
    }
}

/// Every failure of a group's tasks, in the order they finished.
pub struct GroupError<E> {
    /// One entry per failed task.
    pub errors: Vec<TaskError<E>>,
}

impl<E: fmt::Debug> fmt::Debug for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupError").field("errors", &self.errors).finish()
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} task(s) of the group failed", self.errors.len())?;
        if let Some(e) = self.errors.first() {
            write!(f, "; first: {e}")?;
        }
        Ok(())
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for GroupError<E> {}

type Outcome<T, E> = Result<T, TaskError<E>>;

/// The joiner's side of the result queue. Results (panic payloads among them) are `Send` but not
/// `Sync`, and a group is shared by reference (`spawn` takes `&self`), so the queue is reachable
/// only through `&mut` ([`TaskGroup::join_next`]), except for its length.
struct Ready<T, E>(VecDeque<Outcome<T, E>>);

// SAFETY: through `&Ready` only the length is readable (no result); the results themselves move
// between threads only with `&mut`/ownership, for which `Send` suffices.
unsafe impl<T: Send, E: Send> Sync for Ready<T, E> {}

impl<T, E> Ready<T, E> {
    fn len(&self) -> usize {
        self.0.len()
    }
}

struct Inner<T, E> {
    /// Wakers of tasks that returned `Pending`, by key.
    waiting: Vec<Option<Waker>>,
    free: Vec<usize>,
    done: VecDeque<Outcome<T, E>>,
    /// Tasks that finished (their results queued in `done`, or taken from it).
    finished: usize,
    joiner: Option<Waker>,
    /// The joiner found no result and yielded once since it last took results (see
    /// `JoinNext::poll`).
    yielded: bool,
}

struct Shared<T, E> {
    /// Read by every poll of every task; written only by cancels and aborts.
    flags: AtomicUsize,
    token: CancelToken,
    mode: Mode,
    /// Tasks spawned: raised by `spawn` only (module docs).
    spawned: CachePadded<AtomicUsize>,
    inner: CachePadded<Lock<Inner<T, E>>>,
}

impl<T: Send + 'static, E: Send + 'static> CancelHook for Shared<T, E> {
    fn on_cancel(&self) {
        self.wake_waiting();
    }
}

impl<T, E> Shared<T, E> {
    /// Tasks spawned and not finished, given the lock's `finished` count.
    fn running(&self, finished: usize) -> usize {
        // Acquire: a task counted in `finished` was spawned, so its spawn is seen too.
        self.spawned.0.load(Acquire) - finished
    }

    fn wake_waiting(&self) {
        let wakers: Vec<Waker> = self.inner.0.lock().waiting.iter().flatten().cloned().collect();
        for w in wakers {
            w.wake();
        }
    }

    fn finish(&self, key: Option<usize>, out: Outcome<T, E>) {
        // The first failure of a fail-fast group cancels it before the failure is queued, so a
        // joiner that sees the failure sees the group cancelled.
        if out.is_err() && self.mode == Mode::FailFast && self.flags.fetch_or(FAILED, AcqRel) & FAILED == 0 {
            self.token.cancel();
        }
        let mut inner = self.inner.0.lock();
        if let Some(k) = key {
            inner.waiting[k] = None;
            inner.free.push(k);
        }
        inner.done.push_back(out);
        inner.finished += 1;
        let joiner = inner.joiner.take();
        drop(inner);
        if let Some(j) = joiner {
            j.wake();
        }
    }
}

/// A group of `'static` tasks that run in parallel on a runtime, with structured failure
/// handling:
///
/// - **fail-fast** ([`new`](Self::new)): the first task that returns `Err` or panics cancels the
///   group's token — the other tasks and the body run by [`run`](Self::run) see the cancellation
///   at their next await — and the group still joins every task and reports every error;
/// - **supervisor** ([`supervisor`](Self::supervisor)): failures cancel nothing.
///
/// [`join_next`](Self::join_next) takes results in completion order, O(1) each. Dropping the
/// group aborts every task still running (their futures are dropped at their next poll): tasks
/// are never silently detached. In task dumps each task belongs to the group
/// (`TaskMeta::group`), under the task that created the group (`TaskMeta::parent`).
///
/// The spawner `S` is the runtime (`spindle::TaskGroup` is this type with spindle's runtime).
///
/// ```
/// use spindle::TaskGroup;
/// spindle::block_on(async {
///     let mut group = TaskGroup::<u32, &str>::new();
///     for i in 0..10 {
///         group.spawn(async move { Ok(i) });
///     }
///     let mut sum = 0;
///     while let Some(r) = group.join_next().await {
///         sum += r.unwrap();
///     }
///     assert_eq!(sum, 45);
/// });
/// ```
pub struct TaskGroup<T, E, S> {
    shared: Arc<Shared<T, E>>,
    /// Results taken from the shared queue and not yet returned by `join_next`.
    ready: Ready<T, E>,
    spawner: S,
    id: TaskId,
    /// The task that created the group (the parent recorded for its tasks).
    owner: Option<TaskId>,
    _t: PhantomData<fn() -> (T, E)>,
}

impl<T, E, S> TaskGroup<T, E, S>
where
    T: Send + 'static,
    E: Send + 'static,
    S: Spawn,
{
    /// A fail-fast group on `spawner`.
    ///
    /// ```
    /// use spindle_core::structured::TaskGroup;
    /// let g = TaskGroup::<(), (), _>::with_spawner(spindle::structured::Runtime);
    /// assert!(g.is_empty());
    /// ```
    pub fn with_spawner(spawner: S) -> Self {
        Self::build(spawner, Mode::FailFast)
    }

    /// A supervisor group on `spawner`.
    ///
    /// ```
    /// use spindle_core::structured::{Mode, TaskGroup};
    /// let g = TaskGroup::<(), (), _>::supervisor_with_spawner(spindle::structured::Runtime);
    /// assert_eq!(g.mode(), Mode::Supervisor);
    /// ```
    pub fn supervisor_with_spawner(spawner: S) -> Self {
        Self::build(spawner, Mode::Supervisor)
    }

    fn build(spawner: S, mode: Mode) -> Self {
        let shared = Arc::new_cyclic(|weak: &Weak<Shared<T, E>>| {
            let hook: Weak<dyn CancelHook> = weak.clone() as Weak<dyn CancelHook>;
            Shared {
                flags: AtomicUsize::new(0),
                token: CancelToken::with_hook(None, hook),
                mode,
                spawned: CachePadded(AtomicUsize::new(0)),
                inner: CachePadded(Lock::new(Inner {
                    waiting: Vec::new(),
                    free: Vec::new(),
                    done: VecDeque::new(),
                    finished: 0,
                    joiner: None,
                    yielded: false,
                })),
            }
        });
        let owner = spawner.current_task();
        TaskGroup { shared, ready: Ready(VecDeque::new()), spawner, id: TaskId::next(), owner, _t: PhantomData }
    }

    /// A fail-fast group on the default spawner (the current runtime, for spindle's).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), ()>::new();
    ///     assert_eq!(g.mode(), spindle_core::structured::Mode::FailFast);
    /// });
    /// ```
    pub fn new() -> Self
    where
        S: Default,
    {
        Self::with_spawner(S::default())
    }

    /// A supervisor group on the default spawner.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut g = spindle::TaskGroup::<u8, &str>::supervisor();
    ///     g.spawn(async { Err("one fails") });
    ///     g.spawn(async { Ok(2) });
    ///     let r = g.join_all().await;
    ///     assert_eq!(r.unwrap_err().errors.len(), 1);
    /// });
    /// ```
    pub fn supervisor() -> Self
    where
        S: Default,
    {
        Self::supervisor_with_spawner(S::default())
    }

    /// Spawns a task in the group. It runs with the group's token current.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut g = spindle::TaskGroup::<u8, ()>::new();
    ///     g.spawn(async { Ok(1) });
    ///     assert_eq!(g.join_next().await.unwrap().unwrap(), 1);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, future: F)
    where
        F: Future<Output = Result<T, E>> + Send + 'static,
    {
        // Release: pairs with `running`'s acquire (the count never runs behind a finished task).
        self.shared.spawned.0.fetch_add(1, Release);
        let task = GroupTask { future: Some(future), shared: self.shared.clone(), key: None, waker: None };
        let meta = SpawnMeta {
            parent: self.owner,
            group: GroupRef { id: self.id, kind: GroupKind::TaskGroup },
            location: Location::caller(),
        };
        self.spawner.spawn(task, meta);
    }

    /// The next result, in completion order, or `None` when no task is left. O(1) per result.
    ///
    /// # Cancel safety
    /// Cancel safe: a result is only taken out when it is returned.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut g = spindle::TaskGroup::<u8, ()>::new();
    ///     assert!(g.join_next().await.is_none());
    /// });
    /// ```
    pub fn join_next(&mut self) -> JoinNext<'_, T, E> {
        JoinNext { shared: &self.shared, ready: &mut self.ready.0 }
    }

    /// Waits for every task: all values (in completion order), or every failure.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<u8, &str>::new();
    ///     g.spawn(async { Ok(1) });
    ///     g.spawn(async { Err("bad") });
    ///     let err = g.join_all().await.unwrap_err();
    ///     assert_eq!(err.errors.len(), 1);
    /// });
    /// ```
    pub async fn join_all(self) -> Result<Vec<T>, GroupError<E>> {
        collect(&self.shared).await
    }

    /// Runs `body` with the group's token current (so a fail-fast failure cancels it too: its
    /// spindle leaf futures return early), then joins every task: the body's output and every
    /// value, or every failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), &str>::new();
    ///     let r = g
    ///         .run(async {
    ///             g.spawn(async { Err("failed") });
    ///             // Cut short by the failure (soft cancel): the sleep returns early.
    ///             spindle::time::sleep(Duration::from_secs(3600)).await;
    ///             "body done"
    ///         })
    ///         .await;
    ///     assert_eq!(r.unwrap_err().errors.len(), 1);
    /// });
    /// ```
    pub async fn run<B: Future>(&self, body: B) -> Result<(B::Output, Vec<T>), GroupError<E>> {
        let out = super::with_token(self.shared.token.clone(), body).await;
        collect(&self.shared).await.map(|v| (out, v))
    }

    /// Soft-cancels the group: its token is cancelled and every waiting task is woken to see it.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), ()>::new();
    ///     g.cancel();
    ///     assert!(g.token().is_cancelled());
    /// });
    /// ```
    pub fn cancel(&self) {
        self.shared.token.cancel();
    }

    /// Hard-cancels the group: every task drops its future at its next poll (and its result is
    /// [`TaskError::Aborted`]); the token is cancelled too.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), ()>::new();
    ///     g.spawn(std::future::pending());
    ///     g.abort();
    ///     assert!(matches!(g.join_all().await.unwrap_err().errors[0], spindle_core::structured::TaskError::Aborted));
    /// });
    /// ```
    pub fn abort(&self) {
        self.shared.flags.fetch_or(ABORTED, AcqRel);
        self.shared.token.cancel();
        self.shared.wake_waiting();
    }

    /// The group's token (a child of the token current where the group was created).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), ()>::new();
    ///     assert!(!g.token().is_cancelled());
    /// });
    /// ```
    pub fn token(&self) -> &CancelToken {
        &self.shared.token
    }

    /// Tasks not yet joined (running, or finished with a result waiting in `join_next`).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let g = spindle::TaskGroup::<(), ()>::new();
    ///     g.spawn(async { Ok(()) });
    ///     assert_eq!(g.len(), 1);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        let inner = self.shared.inner.0.lock();
        self.shared.running(inner.finished) + inner.done.len() + self.ready.len()
    }

    /// Whether [`len`](Self::len) is zero.
    ///
    /// ```
    /// spindle::block_on(async { assert!(spindle::TaskGroup::<(), ()>::new().is_empty()) });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The group's mode.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     assert_eq!(spindle::TaskGroup::<(), ()>::new().mode(), spindle_core::structured::Mode::FailFast);
    /// });
    /// ```
    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    /// The group's id: the group recorded for its tasks (`TaskMeta::group`), whose parent is the
    /// task that created the group ([`owner`](Self::owner)). Drawn from the task-id counter, so it
    /// never equals a task's id.
    ///
    /// ```
    /// spindle::block_on(async { let _ = spindle::TaskGroup::<(), ()>::new().id(); });
    /// ```
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The task that created the group, if the spawner knows it: the parent recorded for every
    /// task of the group, which links the group to its place in the task tree.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (owner, me) = spindle::spawn(async {
    ///         (spindle::TaskGroup::<(), ()>::new().owner(), spindle::task::try_id())
    ///     })
    ///     .await
    ///     .unwrap();
    ///     assert_eq!(owner, me);
    /// });
    /// ```
    pub fn owner(&self) -> Option<TaskId> {
        self.owner
    }
}

impl<T, E, S> Default for TaskGroup<T, E, S>
where
    T: Send + 'static,
    E: Send + 'static,
    S: Spawn + Default,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E, S> Drop for TaskGroup<T, E, S> {
    fn drop(&mut self) {
        // Never detach: abort whatever still runs.
        let finished = self.shared.inner.0.lock().finished;
        if self.shared.running(finished) > 0 {
            self.shared.flags.fetch_or(ABORTED, AcqRel);
            self.shared.token.cancel();
            self.shared.wake_waiting();
        }
    }
}

impl<T, E, S> fmt::Debug for TaskGroup<T, E, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup").field("id", &self.id).field("mode", &self.shared.mode).finish()
    }
}

async fn collect<T, E>(shared: &Arc<Shared<T, E>>) -> Result<Vec<T>, GroupError<E>> {
    let mut values = Vec::new();
    let mut errors = Vec::new();
    let mut ready = VecDeque::new();
    while let Some(r) = (JoinNext { shared, ready: &mut ready }).await {
        match r {
            Ok(v) => values.push(v),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(GroupError { errors })
    }
}

/// The future of [`TaskGroup::join_next`].
#[must_use = "futures do nothing unless polled"]
pub struct JoinNext<'a, T, E> {
    shared: &'a Arc<Shared<T, E>>,
    /// The joiner's side of the result queue: results are moved here a batch at a time, so
    /// taking one takes the lock only when this is empty.
    ready: &'a mut VecDeque<Outcome<T, E>>,
}

impl<T, E> Future for JoinNext<'_, T, E> {
    type Output = Option<Outcome<T, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if crate::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let this = self.get_mut();
        if let Some(r) = this.ready.pop_front() {
            return Poll::Ready(Some(r));
        }
        let mut inner = this.shared.inner.0.lock();
        if !inner.done.is_empty() {
            // Take the whole batch (the two queues swap buffers, so neither reallocates).
            core::mem::swap(&mut inner.done, this.ready);
            inner.yielded = false;
            drop(inner);
            return Poll::Ready(this.ready.pop_front());
        }
        if this.shared.running(inner.finished) == 0 {
            return Poll::Ready(None);
        }
        if !inner.yielded {
            // Nothing yet: yield once before sleeping. A task that wakes itself while being
            // polled goes to the back of its worker's queue (spindle's runtimes), behind the
            // tasks it spawned there, so the next poll usually finds a whole batch of results;
            // waiting for a wake instead would have the first task to finish wake us (into the
            // worker's LIFO slot, right after it) for one result at a time: a poll and a wake
            // per result. If the yield finds nothing, we register and sleep as usual. The flag
            // lives in the group, not in this future, so a caller that makes a new `JoinNext`
            // for every poll does not spin: one yield per batch of results taken.
            inner.yielded = true;
            drop(inner);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match &mut inner.joiner {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

pin_project_lite::pin_project! {
    /// A group's task as spawned: runs the future with the group's token current, catches a
    /// panic, and queues the outcome.
    struct GroupTask<F, T, E> {
        #[pin]
        future: Option<F>,
        shared: Arc<Shared<T, E>>,
        key: Option<usize>,
        waker: Option<Waker>,
    }

    // A task dropped before it finished (its runtime shut down, or the spawner panicked and
    // dropped it) still counts as finished, as `Aborted`: the joiner waits for exactly as many
    // outcomes as tasks were spawned.
    impl<F, T, E> PinnedDrop for GroupTask<F, T, E> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                let _ = catch(|| this.future.set(None));
                this.shared.finish(this.key.take(), Err(TaskError::Aborted));
            }
        }
    }
}

impl<F, T, E> Future for GroupTask<F, T, E>
where
    F: Future<Output = Result<T, E>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let shared = &**this.shared;
        if shared.flags.load(Acquire) & ABORTED != 0 {
            let _ = catch(|| this.future.set(None));
            shared.finish(this.key.take(), Err(TaskError::Aborted));
            return Poll::Ready(());
        }
        let was_cancelled = shared.token.is_cancelled();
        let polled = {
            let _cur = current::enter(shared.token.as_ptr());
            let fut = this.future.as_mut();
            let cx2 = &mut *cx;
            catch(move || match fut.as_pin_mut() {
                Some(f) => f.poll(cx2),
                None => unreachable!("a group task was polled after it finished"),
            })
        };
        let out = match polled {
            Ok(Poll::Pending) => {
                if !this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    let w = cx.waker().clone();
                    *this.waker = Some(w.clone());
                    let mut inner = shared.inner.0.lock();
                    let key = match *this.key {
                        Some(k) => k,
                        None => {
                            let k = inner.free.pop().unwrap_or(inner.waiting.len());
                            if k == inner.waiting.len() {
                                inner.waiting.push(None);
                            }
                            *this.key = Some(k);
                            k
                        }
                    };
                    inner.waiting[key] = Some(w);
                }
                // A cancel or abort that ran before our waker was in place could not wake us.
                if (shared.token.is_cancelled() && !was_cancelled) || shared.flags.load(Acquire) & ABORTED != 0 {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            Ok(Poll::Ready(Ok(v))) => Ok(v),
            Ok(Poll::Ready(Err(e))) => Err(TaskError::Failed(e)),
            Err(p) => Err(TaskError::Panicked(p)),
        };
        let _ = catch(|| this.future.set(None));
        shared.finish(this.key.take(), out);
        Poll::Ready(())
    }
}
