//! [`JoinSet`]: a set of spawned tasks whose results are taken in the order they finish.
//!
//! # Contract
//!
//! - The set owns a [`JoinHandle`] per task, in a slab. Each entry has a waker of its own
//!   (`EntryWaker`); polling the entry's handle leaves that waker with the task, so the task's
//!   completion (or the abort that ends it) pushes the entry's key onto the set's ready list and
//!   wakes the one task joining the set. `join_next` polls only entries on that list, so taking
//!   a result costs O(1) however many tasks are still running.
//! - A key on the list is a hint, never a promise: an entry is polled and only a `Ready` handle
//!   leaves the set. Keys carry the entry's generation, so a key left over from an entry that is
//!   gone (joined, detached) never reaches the entry that reuses its slot. An entry's `queued`
//!   flag keeps it on the list at most once between two polls.
//! - New entries start on the list: their first poll gives the task the entry's waker.
//! - Dropping the set aborts every task in it, as tokio's does; [`JoinSet::detach_all`] lets them
//!   run on instead.
//! - `join_next` spends one unit of the joining task's cooperative budget per call, not one per
//!   handle it looks at.
//!
//! ```
//! spindle::block_on(async {
//!     let mut set: spindle::task::JoinSet<_> = (0..3).map(|i| async move { i }).collect();
//!     let mut n = 0;
//!     while let Some(r) = set.join_next().await {
//!         n += r.unwrap();
//!     }
//!     assert_eq!(n, 3);
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;
use spindle_core::loom::{AtomicBool, Ordering::*};
use spindle_core::spin::{SpinGuard, SpinLock};

use super::{
    meta_here, no_runtime, spawn_here, spawn_local_here, AbortHandle, GroupKind, GroupRef, JoinError, JoinHandle,
    TaskId, TaskMeta,
};

/// A set of tasks spawned on the runtime, joined in the order they finish (tokio's `JoinSet`).
///
/// [`spawn`](Self::spawn) starts a task in the set, [`join_next`](Self::join_next) waits for the
/// next one to finish and gives its output (or a [`JoinError`] if it panicked or was aborted).
/// Dropping the set aborts the tasks still in it. For tasks that return `Result` and should cancel
/// each other on failure, see [`TaskGroup`](crate::TaskGroup).
///
/// ```
/// use spindle::task::JoinSet;
/// spindle::block_on(async {
///     let mut set = JoinSet::new();
///     for i in 0..10u64 {
///         set.spawn(async move { i * i });
///     }
///     let mut sum = 0;
///     while let Some(r) = set.join_next().await {
///         sum += r.unwrap();
///     }
///     assert_eq!(sum, 285);
/// });
/// ```
pub struct JoinSet<T> {
    entries: Slab<Entry<T>>,
    /// Keys taken from `ready` and not yet polled (moved over in one batch under one lock).
    batch: VecDeque<Key>,
    ready: Arc<ReadyList>,
    /// The generation the next entry gets.
    next_generation: u64,
    /// The set's id in dumps: the tasks it spawns hang under it (`GroupKind::JoinSet`).
    id: TaskId,
}

/// A slab key and the generation of the entry it was given to.
#[derive(Clone, Copy)]
struct Key {
    index: usize,
    generation: u64,
}

struct Entry<T> {
    handle: JoinHandle<T>,
    notify: Arc<EntryWaker>,
    /// `notify` as a `Waker`, made once.
    waker: Waker,
}

/// The keys of entries whose task woke them, and the waker of the task joining the set.
struct ReadyList(SpinLock<ReadyInner>);

impl Default for ReadyList {
    fn default() -> ReadyList {
        ReadyList(SpinLock::new(ReadyInner::default()))
    }
}

#[derive(Default)]
struct ReadyInner {
    keys: VecDeque<Key>,
    joiner: Option<Waker>,
}

impl ReadyList {
    fn lock(&self) -> SpinGuard<'_, ReadyInner> {
        self.0.lock(crate::rt::park::spin_relax)
    }
}

/// The waker an entry's task holds: queues the entry and wakes the joiner.
struct EntryWaker {
    key: Key,
    /// On the ready list (or in the joiner's batch) and not polled since.
    queued: AtomicBool,
    ready: Arc<ReadyList>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, AcqRel) {
            return;
        }
        let joiner = {
            let mut list = self.ready.lock();
            list.keys.push_back(self.key);
            list.joiner.take()
        };
        // Woken outside the lock: the joiner may run at once on another worker and take it.
        if let Some(w) = joiner {
            w.wake();
        }
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    ///
    /// ```
    /// let set = spindle::task::JoinSet::<()>::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> JoinSet<T> {
        JoinSet {
            entries: Slab::new(),
            batch: VecDeque::new(),
            ready: Arc::default(),
            next_generation: 0,
            id: TaskId::next(),
        }
    }

    /// The set's id: in [`Runtime::dump`](crate::runtime::Runtime::dump)s the tasks it spawned
    /// hang under a "join set" node with this id, under the task that spawned them.
    ///
    /// ```
    /// let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    /// let mut set = spindle::task::JoinSet::new();
    /// let abort = set.spawn_on(std::future::pending::<()>(), rt.handle());
    /// let dump = rt.handle().dump();
    /// assert_eq!(dump.task(abort.id()).unwrap().group().unwrap().id, set.id());
    /// assert!(dump.to_string().contains(&format!("join set {}", set.id().as_u64())));
    /// ```
    pub fn id(&self) -> TaskId {
        self.id
    }

    fn group(&self) -> GroupRef {
        GroupRef { id: self.id, kind: GroupKind::JoinSet }
    }

    /// The metadata of a task spawned here: the caller's location, the current task as its
    /// parent, this set as its group.
    #[track_caller]
    fn meta(&self) -> TaskMeta {
        TaskMeta { group: Some(self.group()), ..meta_here(None) }
    }

    /// The tasks in the set: running, or finished and not yet joined.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn(async { 1 });
    ///     assert_eq!(set.len(), 1);
    ///     set.join_next().await;
    ///     assert_eq!(set.len(), 0);
    /// });
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set holds no task.
    ///
    /// ```
    /// assert!(spindle::task::JoinSet::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a task the caller already spawned (for instance with a name, through
    /// [`task::Builder`](super::Builder)); returns a handle that aborts it.
    ///
    /// # Panics
    /// If the handle was already awaited to completion (its output is gone).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let h = spindle::task::Builder::new().name("worker").spawn(async { 7 }).unwrap();
    ///     set.insert(h);
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 7);
    /// });
    /// ```
    #[track_caller]
    pub fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        assert!(
            !handle.is_consumed(),
            "spindle::task::JoinSet::insert: this JoinHandle was already awaited to completion"
        );
        let abort = handle.abort_handle();
        let entry = self.entries.vacant_entry();
        let key = Key { index: entry.key(), generation: self.next_generation };
        self.next_generation += 1;
        // Queued from the start: the first poll hands the task this entry's waker.
        let notify = Arc::new(EntryWaker { key, queued: AtomicBool::new(true), ready: self.ready.clone() });
        let waker = Waker::from(notify.clone());
        entry.insert(Entry { handle, notify, waker });
        self.ready.lock().keys.push_back(key);
        abort
    }

    /// Spawns a task on the current runtime into the set.
    ///
    /// # Panics
    /// Outside a runtime, like [`spawn`](crate::spawn).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let abort = set.spawn(std::future::pending::<()>());
    ///     abort.abort();
    ///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let handle = spawn_here(future, self.meta()).unwrap_or_else(|| no_runtime("spindle::task::JoinSet::spawn"));
        self.insert(handle)
    }

    /// Spawns a task on the runtime of `handle` into the set (from any thread).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let mut set = spindle::task::JoinSet::new();
    /// set.spawn_on(async { 3 }, rt.handle());
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 3);
    /// ```
    #[track_caller]
    pub fn spawn_on<F>(&mut self, future: F, handle: &crate::runtime::Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let meta = self.meta();
        self.insert(handle.inner.spawn(future, meta))
    }

    /// Spawns a `!Send` task on the current thread into the set (see
    /// [`spawn_local`](crate::spawn_local)).
    ///
    /// # Panics
    /// Where [`spawn_local`](crate::spawn_local) does.
    ///
    /// ```
    /// use std::rc::Rc;
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let local = Rc::new(2);
    ///     set.spawn_local(async move { *local * 21 });
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 42);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_local<F>(&mut self, future: F) -> AbortHandle
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        let handle =
            spawn_local_here(future, self.meta()).unwrap_or_else(|| no_runtime("spindle::task::JoinSet::spawn_local"));
        self.insert(handle)
    }

    /// Runs a blocking closure on the runtime's blocking pool, its result joined with the set's
    /// other tasks. Aborting it only has an effect before it starts.
    ///
    /// # Panics
    /// Outside a runtime, like [`spawn_blocking`](crate::spawn_blocking).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn_blocking(|| std::thread::current().name().map(str::to_owned));
    ///     assert!(set.join_next().await.unwrap().is_ok());
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(crate::spawn_blocking(f))
    }

    /// [`spawn_blocking`](Self::spawn_blocking) on the blocking pool of `handle`'s runtime (from
    /// any thread).
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let mut set = spindle::task::JoinSet::new();
    /// set.spawn_blocking_on(|| 6 * 7, rt.handle());
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn spawn_blocking_on<F>(&mut self, f: F, handle: &crate::runtime::Handle) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(handle.spawn_blocking(f))
    }

    /// Waits for the next task of the set to finish and gives its output, or `None` when the
    /// set is empty. Tasks come out in the order they finished.
    ///
    /// Cancel-safe: dropping the future before it finishes loses no result (the task stays in the
    /// set, finished, for the next call).
    ///
    /// ```
    /// use std::time::Duration;
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn(async { spindle::time::sleep(Duration::from_millis(20)).await; "slow" });
    ///     set.spawn(async { "fast" });
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "fast");
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), "slow");
    ///     assert!(set.join_next().await.is_none());
    /// });
    /// ```
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// [`join_next`](Self::join_next), with the id of the task each output came from (for a
    /// cancelled or panicked task, [`JoinError::id`] names it).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let id = set.spawn(async { 5 }).id();
    ///     assert_eq!(set.join_next_with_id().await.unwrap().unwrap(), (id, 5));
    /// });
    /// ```
    pub async fn join_next_with_id(&mut self) -> Option<Result<(TaskId, T), JoinError>> {
        poll_fn(|cx| self.poll_join_next_with_id(cx)).await
    }

    /// The output of a task of the set that already finished, without waiting: `None` when none
    /// has (or the set is empty).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     assert!(set.try_join_next().is_none());
    ///     let abort = set.spawn(async { 1 });
    ///     while !abort.is_finished() {
    ///         spindle::task::yield_now().await;
    ///     }
    ///     assert_eq!(set.try_join_next().unwrap().unwrap(), 1);
    /// });
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.try_join_next_with_id().map(|r| r.map(|(_, v)| v))
    }

    /// [`try_join_next`](Self::try_join_next), with the task's id.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let abort = set.spawn(async { 1 });
    ///     while !abort.is_finished() {
    ///         spindle::task::yield_now().await;
    ///     }
    ///     assert_eq!(set.try_join_next_with_id().unwrap().unwrap(), (abort.id(), 1));
    /// });
    /// ```
    pub fn try_join_next_with_id(&mut self) -> Option<Result<(TaskId, T), JoinError>> {
        match self.take_ready(None) {
            Poll::Ready(r) => r,
            Poll::Pending => None,
        }
    }

    /// The poll behind [`join_next`](Self::join_next), for hand-written futures: `Ready(None)`
    /// when the set is empty, `Pending` (with `cx` woken when a task finishes) when no task has
    /// finished.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn(async { 9 });
    ///     let r = poll_fn(|cx| set.poll_join_next(cx)).await;
    ///     assert_eq!(r.unwrap().unwrap(), 9);
    /// });
    /// ```
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        self.poll_join_next_with_id(cx).map(|r| r.map(|r| r.map(|(_, v)| v)))
    }

    /// [`poll_join_next`](Self::poll_join_next), with the task's id.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let id = set.spawn(async { 9 }).id();
    ///     let r = poll_fn(|cx| set.poll_join_next_with_id(cx)).await;
    ///     assert_eq!(r.unwrap().unwrap(), (id, 9));
    /// });
    /// ```
    pub fn poll_join_next_with_id(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<(TaskId, T), JoinError>>> {
        if self.entries.is_empty() {
            return Poll::Ready(None);
        }
        // One unit of budget per result, whatever the number of handles looked at.
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        self.take_ready(Some(cx.waker()))
    }

    /// Polls the entries on the ready list until one is finished. `joiner` is left to be woken by
    /// the next entry that gets queued when none is finished (`None`: a try, which leaves none).
    fn take_ready(&mut self, joiner: Option<&Waker>) -> Poll<Option<Result<(TaskId, T), JoinError>>> {
        loop {
            if self.entries.is_empty() {
                return Poll::Ready(None);
            }
            if self.batch.is_empty() {
                let mut list = self.ready.lock();
                if list.keys.is_empty() {
                    let mut replaced = None;
                    if let Some(joiner) = joiner {
                        match &list.joiner {
                            Some(w) if w.will_wake(joiner) => {}
                            _ => replaced = list.joiner.replace(joiner.clone()),
                        }
                    }
                    drop(list);
                    // Dropped outside the lock: a waker's drop may free a task, and finishing
                    // tasks spin on the lock meanwhile.
                    drop(replaced);
                    return Poll::Pending;
                }
                std::mem::swap(&mut list.keys, &mut self.batch);
            }
            while let Some(key) = self.batch.pop_front() {
                let Some(entry) = self.entries.get_mut(key.index) else { continue };
                if entry.notify.key.generation != key.generation {
                    continue; // a key of a joined or detached entry whose slot was reused
                }
                // Cleared before the poll: a wake from here on queues the entry again.
                entry.notify.queued.store(false, Release);
                let id = entry.handle.id();
                let mut ecx = Context::from_waker(&entry.waker);
                if let Poll::Ready(r) = entry.handle.poll_unbudgeted(&mut ecx) {
                    self.entries.remove(key.index);
                    return Poll::Ready(Some(r.map(|v| (id, v))));
                }
            }
        }
    }

    /// Aborts every task in the set. They stay in it: joining them gives their outputs if they
    /// had already finished, else a cancelled [`JoinError`].
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     for _ in 0..3 {
    ///         set.spawn(std::future::pending::<()>());
    ///     }
    ///     set.abort_all();
    ///     while let Some(r) = set.join_next().await {
    ///         assert!(r.unwrap_err().is_cancelled());
    ///     }
    /// });
    /// ```
    pub fn abort_all(&mut self) {
        for (_, entry) in &self.entries {
            entry.handle.abort();
        }
    }

    /// Removes every task from the set without aborting it: they run on, detached.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (tx, rx) = spindle::sync::oneshot::channel();
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn(async move { tx.send(1).unwrap() });
    ///     set.detach_all();
    ///     drop(set);
    ///     assert_eq!(rx.await.unwrap(), 1);
    /// });
    /// ```
    pub fn detach_all(&mut self) {
        self.entries.clear();
        self.batch.clear();
        self.ready.lock().keys.clear();
    }

    /// Aborts every task and waits until all have ended (their outputs and errors are dropped).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.spawn(std::future::pending::<()>());
    ///     set.shutdown().await;
    ///     assert!(set.is_empty());
    /// });
    /// ```
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }

    /// Waits for every task and gives their outputs in the order they finished.
    ///
    /// # Panics
    /// If a task panicked (with its panic, resumed here) or was aborted; the tasks still running
    /// are then aborted. Loop over [`join_next`](Self::join_next) to handle failures instead.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     for i in 0..3 {
    ///         set.spawn(async move { i });
    ///     }
    ///     let mut v = set.join_all().await;
    ///     v.sort();
    ///     assert_eq!(v, [0, 1, 2]);
    /// });
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        while let Some(r) = self.join_next().await {
            match r {
                Ok(v) => out.push(v),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("spindle::task::JoinSet::join_all: {e}"),
            }
        }
        out
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> Drop for JoinSet<T> {
    fn drop(&mut self) {
        self.abort_all();
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}

/// Spawns each future into a new set, on the current runtime (panicking outside one).
///
/// ```
/// use spindle::task::JoinSet;
/// spindle::block_on(async {
///     let set: JoinSet<u32> = (1..=3).map(|i| async move { i * 10 }).collect();
///     let mut v = set.join_all().await;
///     v.sort();
///     assert_eq!(v, [10, 20, 30]);
/// });
/// ```
impl<T, F> FromIterator<F> for JoinSet<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    #[track_caller]
    fn from_iter<I: IntoIterator<Item = F>>(iter: I) -> JoinSet<T> {
        let mut set = JoinSet::new();
        set.extend(iter);
        set
    }
}

/// Spawns each future into the set, on the current runtime (panicking outside one).
///
/// ```
/// spindle::block_on(async {
///     let mut set = spindle::task::JoinSet::new();
///     set.extend((0..4).map(|i| async move { i }));
///     assert_eq!(set.len(), 4);
/// });
/// ```
impl<T, F> Extend<F> for JoinSet<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    #[track_caller]
    fn extend<I: IntoIterator<Item = F>>(&mut self, iter: I) {
        for future in iter {
            self.spawn(future);
        }
    }
}

impl<T> JoinSet<T> {
    /// A builder for a task of the set with a name (tokio's `JoinSet::build_task`), whose spawns
    /// return an error instead of panicking outside a runtime.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.build_task().name("fetch").spawn(async { 1 }).unwrap();
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 1);
    /// });
    /// ```
    pub fn build_task(&mut self) -> Builder<'_, T> {
        let group = self.group();
        Builder { set: self, task: super::Builder::new().in_group(group) }
    }
}

/// Configures a task before spawning it into a [`JoinSet`] (from [`JoinSet::build_task`]).
///
/// ```
/// spindle::block_on(async {
///     let mut set = spindle::task::JoinSet::new();
///     let abort = set.build_task().name("ticker").spawn(std::future::pending::<()>()).unwrap();
///     abort.abort();
///     assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
/// });
/// ```
#[must_use = "a builder spawns nothing until one of its spawn methods is called"]
pub struct Builder<'a, T> {
    set: &'a mut JoinSet<T>,
    task: super::Builder<'a>,
}

impl<'a, T> Builder<'a, T> {
    /// Names the task (shown in diagnostics and dumps).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.build_task().name("named").spawn(async { spindle::task::try_id() }).unwrap();
    ///     assert!(set.join_next().await.unwrap().unwrap().is_some());
    /// });
    /// ```
    pub fn name(self, name: &'a str) -> Builder<'a, T> {
        Builder { set: self.set, task: self.task.name(name) }
    }

    /// Spawns on the current runtime; errors outside one.
    ///
    /// ```
    /// let mut set = spindle::task::JoinSet::new();
    /// // No runtime on this thread: an error, not a panic.
    /// assert!(set.build_task().spawn(async { 1 }).is_err());
    /// ```
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<AbortHandle>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.set.insert(self.task.spawn(future)?))
    }

    /// Spawns on the runtime of `handle`.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let mut set = spindle::task::JoinSet::new();
    /// set.build_task().name("remote").spawn_on(async { 2 }, rt.handle()).unwrap();
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 2);
    /// ```
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &crate::runtime::Handle) -> io::Result<AbortHandle>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.set.insert(self.task.spawn_on(future, handle)?))
    }

    /// Spawns a `!Send` task on the current thread; errors outside a runtime.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     let local = std::rc::Rc::new(3);
    ///     set.build_task().name("local").spawn_local(async move { *local }).unwrap();
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 3);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_local<F>(self, future: F) -> io::Result<AbortHandle>
    where
        F: Future<Output = T> + 'static,
        T: 'static,
    {
        Ok(self.set.insert(self.task.spawn_local(future)?))
    }

    /// Runs a blocking closure on the current runtime's blocking pool; errors outside a runtime.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut set = spindle::task::JoinSet::new();
    ///     set.build_task().name("hash").spawn_blocking(|| 4).unwrap();
    ///     assert_eq!(set.join_next().await.unwrap().unwrap(), 4);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F>(self, f: F) -> io::Result<AbortHandle>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.set.insert(self.task.spawn_blocking(f)?))
    }
}

impl<T> Builder<'_, T> {
    /// Runs a blocking closure on the blocking pool of `handle`'s runtime.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let mut set = spindle::task::JoinSet::new();
    /// set.build_task().name("digest").spawn_blocking_on(|| 5, rt.handle()).unwrap();
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 5);
    /// ```
    #[track_caller]
    pub fn spawn_blocking_on<F>(self, f: F, handle: &crate::runtime::Handle) -> io::Result<AbortHandle>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Ok(self.set.insert(self.task.spawn_blocking_on(f, handle)?))
    }
}

impl<T> fmt::Debug for Builder<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder").field("task", &self.task).finish_non_exhaustive()
    }
}
