//! `scope!`: children that borrow, polled inside the scope future; `'static` tasks joined by it.
//!
//! See the module docs of [`structured`](super) for the soundness argument.
//!
//! # Where the state lives
//!
//! - The *owner side* (`Inner`: the arena children are carved from, the list of unfinished
//!   children, the list of new ones, the live count) has no lock. Only the thread inside the
//!   scope future's `poll` uses it (it marks itself in the shared block for that poll,
//!   `child::on_poller`), or the scope's constructor and destructor, which own the scope. Spawns
//!   from the body, a child or a cleanup run on that thread, inside that poll, so they carve and
//!   link their child with plain writes (no atomic operation), and the poll looks at the new list
//!   before it returns. The scope's own code never holds a reference into the owner side across
//!   user code.
//! - Spawns from anywhere else (before the first poll, from threads a child runs and joins
//!   inside its poll, from destructors) take the *remote side*: a lock, a chunk of their own for
//!   the cell, and a list the poll adopts at its next batch (waking the scope if it is not
//!   polling). Deferred cleanups live there too.
//! - A handle dropped on the polling thread before its child was first polled (the common
//!   `s.spawn(fut);`) updates the child's state word with a plain store: no waker of the child
//!   exists yet and everyone else who could touch the word is the scope, on this thread.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};

use crate::sync::Shared as LoomArc;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::panic::Location;
use core::pin::Pin;
use core::ptr::{self, NonNull};
use core::task::{Context, Poll};

use super::cancel::{CancelHook, CancelToken, Cancelled};
use super::child::{self, Chunk, Header, Panic, Polled, Release, Shared};
use super::close::AsyncClose;
use super::current;
use super::spawn::{Spawn, SpawnMeta};
use super::Lock;
use crate::loom::UnsafeCell;
use crate::task::{GroupKind, GroupRef, TaskId};

/// A boxed, sendable future borrowing for `'a`: what a scope body is.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Batches of woken children a scope polls per poll before it yields to its runtime (so a child
/// that always wakes itself cannot keep the scope's task on the CPU forever).
const BATCHES_PER_POLL: usize = 4;

/// The scope's cancel hook: a separate small block (the token keeps a `Weak` to it) holding the
/// shared block, which lives in the loom-aware `Arc` so loom models see its reference counts.
struct ScopeHook(LoomArc<Shared>);

impl CancelHook for ScopeHook {
    fn on_cancel(&self) {
        // The scope polls every child once when it next runs and sees its token cancelled.
        self.0.parent.wake();
    }
}

/// The handle of a scope: spawn children on it. Made by [`scope!`](crate::scope).
///
/// `'scope` is the life of the scope; children and their outputs may borrow anything that
/// outlives it (`'env`).
pub struct Scope<'scope, 'env: 'scope, S = super::NoSpawn> {
    shared: LoomArc<Shared>,
    /// Keeps the cancel hook alive for the scope's life.
    hook: Arc<ScopeHook>,
    /// The owner side: used without a lock, only by the thread inside the scope future's `poll`
    /// (`child::on_poller`), or by `scope_on` and the scope's destructor, which own the scope
    /// outright. The scope's own code never holds a reference into it across user code, so a
    /// spawn from a child or the body (user code on that thread) may use it.
    own: UnsafeCell<Inner>,
    /// The rest, under a lock: spawns from elsewhere (before the first poll, from threads a child
    /// runs inside its poll, from destructors) and deferred cleanups.
    remote: Lock<Remote<'scope>>,
    /// The scope's token, made at the scope future's first poll as a child of the token current
    /// there (so `with_token(t, scope!(..))` and deadlines around a scope built before they poll
    /// it still reach it). Written once, before the body first runs; only read afterwards.
    token: UnsafeCell<Option<CancelToken>>,
    id: TaskId,
    spawner: S,
    _scope: PhantomData<&'scope mut &'scope ()>,
    _env: PhantomData<&'env mut &'env ()>,
}

struct Inner {
    /// Every child not yet complete (the body included), linked through the cells'
    /// `all_prev`/`all_next`; membership holds the scope's reference to the cell.
    all: *mut Header,
    live: usize,
    /// Children spawned and not yet polled, oldest first, linked through the cells' `link`; the
    /// scope takes them at the start of each batch. They hold no reference: their membership of
    /// `all` outlives this.
    new_head: *mut Header,
    new_tail: *mut Header,
    /// Where children's cells are carved from.
    arena: child::Arena,
}

struct Remote<'scope> {
    /// Children spawned from outside the scope's poll (each in a chunk of its own), oldest
    /// first, linked through their cells' `link`; the scope adopts them at its next batch.
    head: *mut Header,
    tail: *mut Header,
    /// Whether the scope is running a batch and will look here again before it returns (a
    /// spawn then need not wake the scope's task).
    polling: bool,
    /// Deferred cleanups, run last-in first-out when the scope ends.
    defers: Vec<Deferred<'scope>>,
}

// SAFETY: the raw headers are children the scope owns (`Send` futures), moved to its owner side.
unsafe impl Send for Remote<'_> {}

impl Remote<'_> {
    /// Takes the children spawned from elsewhere (linked through `link`, ending in null).
    fn take(&mut self) -> *mut Header {
        let head = self.head;
        self.head = ptr::null_mut();
        self.tail = ptr::null_mut();
        head
    }
}

/// A deferred cleanup: one that borrows (dropped unrun if the scope is dropped early) or one that
/// owns what it touches (handed to the runtime if the scope is dropped early).
enum Deferred<'scope> {
    Borrowed(BoxFuture<'scope, ()>),
    Owned(BoxFuture<'static, ()>),
}

impl<'scope> Deferred<'scope> {
    fn future(&mut self) -> Pin<&mut (dyn Future<Output = ()> + Send + 'scope)> {
        match self {
            Deferred::Borrowed(f) => f.as_mut(),
            Deferred::Owned(f) => f.as_mut(),
        }
    }
}

// SAFETY: the raw headers in `Inner` are children the scope owns; they are `Send` futures (every
// spawn requires it) and are only polled and dropped by the scope future.
unsafe impl Send for Inner {}

impl Inner {
    /// Adopts children spawned from elsewhere (a `link`-linked list, as `Remote::take` gives).
    fn adopt(&mut self, mut p: *mut Header) {
        while let Some(h) = NonNull::new(p) {
            // SAFETY: a child spawned and not yet adopted is alive (the scope's reference).
            p = unsafe { child::links(h) }.link;
            // SAFETY: as above.
            unsafe { child::links(h) }.link = ptr::null_mut();
            self.insert(h);
        }
    }

    /// Adds a new child to `all` and to the new list.
    fn insert(&mut self, h: NonNull<Header>) {
        // SAFETY: we hold the scope's lock, and the cell is alive (just made).
        let l = unsafe { child::links(h) };
        l.all_next = self.all;
        if !self.all.is_null() {
            // SAFETY: as above: a member of `all` is alive (the scope's reference).
            unsafe { child::links(NonNull::new_unchecked(self.all)) }.all_prev = h.as_ptr();
        }
        self.all = h.as_ptr();
        self.live += 1;
        if self.new_tail.is_null() {
            self.new_head = h.as_ptr();
        } else {
            // SAFETY: as above: the tail of the new list is a member of `all`.
            unsafe { child::links(NonNull::new_unchecked(self.new_tail)) }.link = h.as_ptr();
        }
        self.new_tail = h.as_ptr();
    }

    /// Removes a finished child from `all` (the caller then drops the scope's reference).
    fn remove(&mut self, h: NonNull<Header>) {
        // SAFETY: we hold the scope's lock, and `h` is a member of `all` (alive).
        let l = unsafe { child::links(h) };
        let (prev, next) = (l.all_prev, l.all_next);
        if prev.is_null() {
            self.all = next;
        } else {
            // SAFETY: as above: neighbours in `all` are alive.
            unsafe { child::links(NonNull::new_unchecked(prev)) }.all_next = next;
        }
        if !next.is_null() {
            // SAFETY: as above.
            unsafe { child::links(NonNull::new_unchecked(next)) }.all_prev = prev;
        }
        self.live -= 1;
    }

    /// Takes the new list (oldest first, linked through `link`, ending in null).
    fn take_new(&mut self) -> *mut Header {
        let head = self.new_head;
        self.new_head = ptr::null_mut();
        self.new_tail = ptr::null_mut();
        head
    }

    /// Takes every unfinished child out of `all` (for the scope's destructor).
    fn take_all(&mut self) -> Vec<NonNull<Header>> {
        let mut v = Vec::new();
        let mut p = self.all;
        while let Some(h) = NonNull::new(p) {
            v.push(h);
            // SAFETY: we hold the lock; members of `all` are alive.
            p = unsafe { child::links(h) }.all_next;
        }
        self.all = ptr::null_mut();
        self.live = 0;
        self.take_new();
        v
    }
}

// SAFETY: the fields that are not `Sync` by themselves are the token cell, written once by the
// scope future's first poll before the body (the only holder of `&Scope`) first runs, and only
// read after that, and the owner side, used only by the thread inside the scope's poll (see the
// field); the rest is `Sync` (a lock, atomics, the `Sync` spawner).
unsafe impl<S: Send + Sync> Sync for Scope<'_, '_, S> {}

impl<'scope, 'env, S> Scope<'scope, 'env, S> {
    /// The owner side.
    ///
    /// # Safety
    /// The caller is the thread inside the scope's poll (`child::on_poller`), or owns the scope
    /// outright (`scope_on`, the destructor), and drops the reference before running user code.
    #[allow(clippy::mut_from_ref)]
    unsafe fn own(&self) -> &mut Inner {
        // SAFETY: forwarded: one user at a time (the field's docs).
        unsafe { &mut *self.own.with_mut(|p| p) }
    }

    /// The token; made by the first poll, before anything that can reach `&Scope` runs.
    fn tok(&self) -> &CancelToken {
        // SAFETY: written only by `init_token`, before the body first ran (see the field).
        self.token
            .with(|p| unsafe { (*p).as_ref() })
            .expect("spindle: a scope's token is made at its first poll, before its body runs")
    }

    /// Makes the token under the current one, at the first poll (scope future only).
    fn init_token(&self) {
        // SAFETY: called by the scope future's poll before it polls the body for the first
        // time: nothing else can read the cell yet.
        if self.token.with(|p| unsafe { (*p).is_none() }) {
            let hook: Weak<dyn CancelHook> = Arc::downgrade(&self.hook) as Weak<dyn CancelHook>;
            let token = CancelToken::with_hook(None, hook);
            // SAFETY: as above.
            self.token.with_mut(|p| unsafe { *p = Some(token) });
        }
    }

    /// Spawns a child that may borrow from outside the scope. It runs concurrently with the body
    /// and the other children, polled by the scope future with its own waker (only woken children
    /// are polled), and the scope completes only after it does.
    ///
    /// A panic in a child cancels the scope's token and is re-raised by the scope once every
    /// child has finished.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let mut counts = [0u32; 4];
    ///     let total = spindle::scope!(|s| async {
    ///         for (i, c) in counts.iter_mut().enumerate() {
    ///             s.spawn(async move { *c = i as u32 * 10 });
    ///         }
    ///         7
    ///     })
    ///     .await;
    ///     assert_eq!(total, 7);
    ///     assert_eq!(counts, [0, 10, 20, 30]);
    /// });
    /// ```
    pub fn spawn<F>(&'scope self, future: F) -> ScopeHandle<'scope, F::Output>
    where
        F: Future + Send + 'scope,
        F::Output: Send + 'scope,
    {
        let h = if child::on_poller(&self.shared) {
            // From a child, the body or a cleanup, inside the scope's poll: the owner side is
            // ours, and the scope looks at its new children before its poll returns.
            // SAFETY: on the polling thread, and the reference is dropped at once.
            let own = unsafe { self.own() };
            let h = child::allocate(future, &mut own.arena);
            own.insert(h);
            h
        } else {
            self.spawn_remote(future)
        };
        ScopeHandle { h, take: child::poll_output::<F>, _scope: PhantomData }
    }

    /// A spawn from outside the scope's poll: the cell gets a chunk of its own and waits under
    /// the lock for the scope to adopt it.
    #[cold]
    fn spawn_remote<F: Future + Send + 'scope>(&self, future: F) -> NonNull<Header> {
        let h = child::allocate_alone(future, &self.shared);
        let mut remote = self.remote.lock();
        if remote.tail.is_null() {
            remote.head = h.as_ptr();
        } else {
            // SAFETY: we hold the lock; the tail is a child waiting here (alive).
            unsafe { child::links(NonNull::new_unchecked(remote.tail)) }.link = h.as_ptr();
        }
        remote.tail = h.as_ptr();
        let wake = !remote.polling;
        drop(remote);
        if wake {
            self.shared.parent.wake();
        }
        h
    }

    /// Runs `cleanup` when the scope ends (after the body and every child), shielded from the
    /// scope's cancellation; deferred futures run one at a time, last deferred first.
    ///
    /// `cleanup` may borrow from outside the scope, so it cannot outlive the scope future: if
    /// that future is dropped before it completes, a borrowing cleanup that has not finished is
    /// dropped unrun (nothing async can run in a destructor), and debug builds report it like a
    /// value dropped without `close()` (see [`CloseGuard`](super::CloseGuard)). Use
    /// [`defer_static`](Self::defer_static) for a cleanup that must run even then.
    ///
    /// ```
    /// use std::sync::Mutex;
    /// spindle::block_on(async {
    ///     let log = Mutex::new(Vec::new());
    ///     spindle::scope!(|s| async {
    ///         s.defer(async { log.lock().unwrap().push("first deferred") });
    ///         s.defer(async { log.lock().unwrap().push("second deferred") });
    ///         log.lock().unwrap().push("body");
    ///     })
    ///     .await;
    ///     assert_eq!(*log.lock().unwrap(), ["body", "second deferred", "first deferred"]);
    /// });
    /// ```
    pub fn defer<F>(&'scope self, cleanup: F)
    where
        F: Future<Output = ()> + Send + 'scope,
    {
        let cleanup = Deferred::Borrowed(Box::pin(cleanup));
        self.remote.lock().defers.push(cleanup);
    }

    /// As [`defer`](Self::defer), for a cleanup that owns everything it touches (`'static`), which
    /// therefore still runs when the scope future is dropped before it completes: the scope's
    /// destructor hands the pending `'static` cleanups (in their order, last deferred first, the
    /// one already started first of all) to the runtime current on the dropping thread, as one
    /// detached task that runs them shielded from cancellation, one at a time, within
    /// [`DROPPED_SCOPE_CLEANUP_DEADLINE`](super::DROPPED_SCOPE_CLEANUP_DEADLINE) in total.
    ///
    /// That needs a runtime that installed a detach hook ([`set_detach_hook`](super::set_detach_hook);
    /// spindle's runtimes do) and is current where the scope future is dropped. Otherwise (another
    /// executor, no runtime, a runtime shutting down) the cleanup is dropped unrun and debug builds
    /// report it, as for `defer`. A cleanup that misses the deadline is dropped and reported too.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// spindle::block_on(async {
    ///     let flushed = Arc::new(AtomicBool::new(false));
    ///     let f = flushed.clone();
    ///     let scope = spindle::scope!(|s| async move {
    ///         s.defer_static(async move { f.store(true, SeqCst) });
    ///         std::future::pending::<()>().await
    ///     });
    ///     // The scope is dropped at the timeout; its cleanup still runs, on the runtime.
    ///     assert!(spindle::time::timeout(Duration::from_millis(5), scope).await.is_err());
    ///     while !flushed.load(SeqCst) {
    ///         spindle::task::yield_now().await;
    ///     }
    /// });
    /// ```
    pub fn defer_static<F>(&'scope self, cleanup: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cleanup = Deferred::Owned(Box::pin(cleanup));
        self.remote.lock().defers.push(cleanup);
    }

    /// Closes `value` with [`AsyncClose::close`] when the scope ends (see [`defer`](Self::defer));
    /// the close's error, if any, is dropped.
    ///
    /// ```
    /// use spindle_core::structured::AsyncClose;
    /// struct Conn;
    /// impl AsyncClose for Conn {
    ///     type Error = ();
    ///     async fn close(self) -> Result<(), ()> { Ok(()) }
    /// }
    /// spindle::block_on(spindle::scope!(|s| async { s.close_on_exit(Conn) }));
    /// ```
    pub fn close_on_exit<C>(&'scope self, value: C)
    where
        C: AsyncClose + Send + 'scope,
    {
        self.defer(async move {
            let _ = value.close().await;
        });
    }

    /// Closes `value` when the scope ends, also if the scope future is dropped before it
    /// completes (see [`defer_static`](Self::defer_static)); the close's error, if any, is
    /// dropped.
    ///
    /// ```
    /// use spindle_core::structured::AsyncClose;
    /// struct Conn;
    /// impl AsyncClose for Conn {
    ///     type Error = ();
    ///     async fn close(self) -> Result<(), ()> { Ok(()) }
    /// }
    /// spindle::block_on(spindle::scope!(|s| async { s.close_on_exit_static(Conn) }));
    /// ```
    pub fn close_on_exit_static<C>(&'scope self, value: C)
    where
        C: AsyncClose + Send + 'static,
    {
        self.defer_static(async move {
            let _ = value.close().await;
        });
    }

    /// Requests cancellation of the scope: its token is cancelled, every child and the body are
    /// polled, and spindle's leaf futures inside them see it at their next await. The scope still
    /// waits for every child to finish.
    ///
    /// ```
    /// use std::time::Duration;
    /// spindle::block_on(async {
    ///     spindle::scope!(|s| async {
    ///         s.spawn(spindle::time::sleep(Duration::from_secs(3600))); // returns early
    ///         s.cancel();
    ///     })
    ///     .await;
    /// });
    /// ```
    pub fn cancel(&self) {
        self.tok().cancel();
    }

    /// Whether the scope was cancelled (by [`cancel`](Self::cancel), a panicking child or an
    /// enclosing scope, group or deadline).
    ///
    /// ```
    /// spindle::block_on(spindle::scope!(|s| async { assert!(!s.is_cancelled()) }));
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.tok().is_cancelled()
    }

    /// The scope's token: a child of the token current where the scope future is first polled
    /// (so `with_token(t, scope!(..))` and a deadline around a scope reach it, even though the
    /// scope was built before they polled it).
    ///
    /// ```
    /// spindle::block_on(spindle::scope!(|s| async {
    ///     let t = s.token().clone();
    ///     s.spawn(async move { t.cancelled().await });
    ///     s.cancel();
    /// }));
    /// ```
    pub fn token(&self) -> &CancelToken {
        self.tok()
    }

    /// The scope's id: the group recorded for the tasks it spawns (`spawn_task`), whose parent is
    /// the task polling the scope (see [`TaskMeta`](crate::task::TaskMeta)).
    /// It is drawn from the task-id counter, so it never equals a task's id.
    ///
    /// ```
    /// spindle::block_on(spindle::scope!(|s| async { let _ = s.id(); }));
    /// ```
    pub fn id(&self) -> TaskId {
        self.id
    }

    /// The spawner this scope starts `'static` tasks with.
    pub fn spawner(&self) -> &S {
        &self.spawner
    }
}

impl<'scope, 'env, S: Spawn> Scope<'scope, 'env, S> {
    /// Spawns a `'static` task that runs in parallel on the runtime, with the scope's token
    /// current, and is joined by the scope (the scope completes only after it does; dropping the
    /// scope aborts it). In task dumps it belongs to the scope (`TaskMeta::group`), under the task
    /// polling the scope (`TaskMeta::parent`).
    ///
    /// A panic in the task is re-raised by the scope, as for [`spawn`](Self::spawn).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let n = spindle::scope!(|s| async {
    ///         let a = s.spawn_task(async { (1..=10u64).sum::<u64>() });
    ///         a.await.unwrap()
    ///     })
    ///     .await;
    ///     assert_eq!(n, 55);
    /// });
    /// ```
    #[track_caller]
    pub fn spawn_task<F>(&'scope self, future: F) -> ScopeHandle<'scope, F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (task, joiner) = super::remote::split(future, self.tok().clone());
        // The body (and so this call) runs inside the scope's poll: the current task owns the scope.
        let meta = SpawnMeta {
            parent: self.spawner.current_task(),
            group: GroupRef { id: self.id, kind: GroupKind::Scope },
            location: Location::caller(),
        };
        self.spawner.spawn(task, meta);
        self.spawn(joiner)
    }
}

impl<S> fmt::Debug for Scope<'_, '_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("id", &self.id).field("cancelled", &self.is_cancelled()).finish()
    }
}

/// Awaits a scope child's output: `Err(Cancelled)` if the child never finished (it panicked —
/// the scope re-raises that panic — or the scope was dropped). Dropping the handle does not
/// stop the child.
pub struct ScopeHandle<'scope, T> {
    h: NonNull<Header>,
    take: unsafe fn(NonNull<Header>, &mut Context<'_>) -> Poll<Option<T>>,
    _scope: PhantomData<(&'scope (), T)>,
}

// SAFETY: the handle only moves the output `T` between threads; the cell is shared through
// atomics (see `child`).
unsafe impl<T: Send> Send for ScopeHandle<'_, T> {}
// SAFETY: `&ScopeHandle` exposes nothing.
unsafe impl<T> Sync for ScopeHandle<'_, T> {}

impl<T> Unpin for ScopeHandle<'_, T> {}

impl<T> ScopeHandle<'_, T> {
    /// Whether the child has finished.
    ///
    /// ```
    /// spindle::block_on(spindle::scope!(|s| async {
    ///     let h = s.spawn(async { 1 });
    ///     let _ = h.is_finished();
    /// }));
    /// ```
    pub fn is_finished(&self) -> bool {
        // SAFETY: the handle holds a reference.
        unsafe { self.h.as_ref() }.state.load(crate::loom::Ordering::Acquire) & child::COMPLETE != 0
    }
}

impl<T> Future for ScopeHandle<'_, T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `take` is `poll_output::<F>` for this cell's `F`, whose output is `T`.
        unsafe { (self.take)(self.h, cx) }.map(|o| o.ok_or(Cancelled))
    }
}

impl<T> Drop for ScopeHandle<'_, T> {
    fn drop(&mut self) {
        child::drop_handle(self.h);
    }
}

impl<T> fmt::Debug for ScopeHandle<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopeHandle").field("finished", &self.is_finished()).finish()
    }
}

/// Builds a scope (use the [`scope!`](crate::scope) macro, which writes the closure for you).
///
/// `f` gets the scope and returns the body as a boxed future; the body and every child are
/// polled inside the returned future.
pub fn scope_on<'env, S, T, F>(spawner: S, f: F) -> ScopeFuture<'env, S, T>
where
    S: Send + Sync + 'env,
    T: Send + 'env,
    F: for<'scope> FnOnce(&'scope Scope<'scope, 'env, S>) -> BoxFuture<'scope, T>,
{
    let shared = LoomArc::new(Shared::new());
    let scope = Box::new(Scope {
        hook: Arc::new(ScopeHook(shared.clone())),
        own: UnsafeCell::new(Inner {
            all: ptr::null_mut(),
            live: 0,
            new_head: ptr::null_mut(),
            new_tail: ptr::null_mut(),
            arena: child::Arena::new(shared.clone()),
        }),
        remote: Lock::new(Remote { head: ptr::null_mut(), tail: ptr::null_mut(), polling: false, defers: Vec::new() }),
        shared,
        token: UnsafeCell::new(None),
        id: TaskId::next(),
        spawner,
        _scope: PhantomData,
        _env: PhantomData,
    });
    let scope = NonNull::from(Box::leak(scope));
    // SAFETY: the scope lives on the heap until `ScopeFuture::drop`, which first drops the body
    // and every child (the only holders of this reference: `f` is higher-ranked over 'scope, so
    // the body cannot keep it anywhere that outlives the scope).
    let sref: &'env Scope<'env, 'env, S> = unsafe { scope.as_ref() };
    let body = sref.spawn(f(sref));
    ScopeFuture {
        scope,
        body: Some(body),
        output: None,
        panic: None,
        cancel_seen: false,
        defer: None,
        scratch: Vec::new(),
        finished: ptr::null_mut(),
        freed: None,
        done: false,
    }
}

/// Boxes a scope body (used by the `scope!` macro).
#[doc(hidden)]
pub fn __box<'a, T, F: Future<Output = T> + Send + 'a>(f: F) -> BoxFuture<'a, T> {
    Box::pin(f)
}

/// The future of a scope: polls the body and the children; completes with the body's output
/// once the body, every child and every deferred cleanup have finished.
#[must_use = "a scope does nothing unless awaited"]
pub struct ScopeFuture<'env, S, T> {
    scope: NonNull<Scope<'env, 'env, S>>,
    body: Option<ScopeHandle<'env, T>>,
    output: Option<T>,
    panic: Option<Panic>,
    cancel_seen: bool,
    defer: Option<Deferred<'env>>,
    /// Reused buffer: woken children, each with a ready-stack reference.
    scratch: Vec<NonNull<Header>>,
    /// Children finished in the current batch (linked through their cells' `link`), completed
    /// at the end of the batch, once out of `all`.
    finished: *mut Header,
    /// Cells of one chunk the scope freed in the current batch (see `freed`).
    freed: Option<(NonNull<Chunk>, usize)>,
    done: bool,
}

// SAFETY: everything the future owns is `Send`: the scope (its children are `Send` futures, the
// spawner is `Send + Sync`), the body handle and output (`T: Send`), the panic payload and the
// deferred futures. The raw pointers are owned, not shared.
unsafe impl<S: Send + Sync, T: Send> Send for ScopeFuture<'_, S, T> {}
// SAFETY: `&ScopeFuture` exposes nothing.
unsafe impl<S, T> Sync for ScopeFuture<'_, S, T> {}

impl<S, T> Unpin for ScopeFuture<'_, S, T> {}

impl<'env, S, T> ScopeFuture<'env, S, T> {
    /// Polls one child taken from the new list (`stack_ref` false) or the ready stack (true, and
    /// that reference is dropped here). A child that finishes goes on the batch's finished list.
    fn run_child(&mut self, scope: &Scope<'env, 'env, S>, h: NonNull<Header>, stack_ref: bool) {
        // SAFETY: the scope's reference (membership of `all`) keeps the cell alive until the end
        // of the batch; `finished` is the scope's own field.
        let finished = unsafe { child::links(h) }.finished;
        if (stack_ref && child::unqueue(h)) || finished {
            if stack_ref {
                let r = child::release_local(h);
                self.freed(r);
            }
            return;
        }
        // SAFETY: as above; from now on wakers of the child may exist (`drop_handle` needs to
        // know).
        unsafe { child::links(h) }.polled = true;
        let waker = child::waker_ref(h);
        // SAFETY: we are the scope and the child is not complete.
        let polled = unsafe { child::poll_child(h, &mut Context::from_waker(&waker)) };
        let done = match polled {
            Polled::Pending => false,
            Polled::Ready => true,
            Polled::Panicked(p) => {
                if self.panic.is_none() {
                    self.panic = Some(p);
                }
                scope.tok().cancel();
                true
            }
        };
        if done {
            // SAFETY: as above; the child left the new list before it was run.
            let l = unsafe { child::links(h) };
            l.finished = true;
            l.link = self.finished;
            self.finished = h.as_ptr();
        }
        if stack_ref {
            let r = child::release_local(h);
            self.freed(r);
        }
    }

    /// Counts a cell the scope freed, to give back to its chunk in one step at the next lock
    /// (without an atomic operation if it is the chunk being carved).
    fn freed(&mut self, r: Release) {
        let Release::Freed(chunk) = r else { return };
        match &mut self.freed {
            Some((c, n)) if *c == chunk => *n += 1,
            other => {
                if let Some((c, n)) = other.replace((chunk, 1)) {
                    // SAFETY: we own the counts of the cells we freed.
                    unsafe { child::chunk_release(c, n) };
                }
            }
        }
    }

    /// Polls one batch: the children spawned since the last batch, then the woken ones, then
    /// completes the finished ones. Returns whether children were spawned meanwhile (they need
    /// another batch).
    fn poll_batch(&mut self) -> bool {
        let scope = self.scope;
        // SAFETY: the scope lives until `drop`; children only hold shared references too.
        let scope = unsafe { scope.as_ref() };
        let adopted = {
            let mut remote = scope.remote.lock();
            remote.polling = true;
            remote.take()
        };
        let mut new = {
            // SAFETY: we are the scope's poll; the reference ends before any child runs.
            let own = unsafe { scope.own() };
            own.adopt(adopted);
            if let Some((chunk, n)) = self.freed.take() {
                own.arena.give_back(chunk, n);
            }
            own.take_new()
        };
        let mut scratch = core::mem::take(&mut self.scratch);
        scope.shared.drain(&mut scratch);
        while let Some(h) = NonNull::new(new) {
            // SAFETY: members of the new list are alive (in `all`); read before the run reuses
            // the field.
            new = unsafe { child::links(h) }.link;
            self.run_child(scope, h, false);
        }
        for h in scratch.drain(..) {
            self.run_child(scope, h, true);
        }
        self.scratch = scratch;
        let finished = core::mem::replace(&mut self.finished, ptr::null_mut());
        let more = {
            // SAFETY: we are the scope's poll; no child runs while the reference lives.
            let own = unsafe { scope.own() };
            let mut p = finished;
            while let Some(h) = NonNull::new(p) {
                // SAFETY: finished children are still in `all` (alive).
                p = unsafe { child::links(h) }.link;
                own.remove(h);
            }
            let more_own = !own.new_head.is_null();
            let mut remote = scope.remote.lock();
            let more = more_own || !remote.head.is_null();
            if !more {
                remote.polling = false;
            }
            more
        };
        // Out of `all` now: complete them (dropping the scope's references), outside the lock,
        // since dropping an output whose handle is gone runs user code.
        let mut p = finished;
        while let Some(h) = NonNull::new(p) {
            // SAFETY: the scope's reference keeps the cell alive until `complete` drops it.
            p = unsafe { child::links(h) }.link;
            let r = child::complete(h);
            self.freed(r);
        }
        more
    }
}

impl<S, T> Future for ScopeFuture<'_, S, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = &mut *self;
        assert!(!this.done, "spindle: scope polled after it completed");
        // SAFETY: the scope lives until `drop`.
        let scope = unsafe { this.scope.as_ref() };
        scope.shared.parent.register(cx.waker());
        scope.init_token();
        // While a deferred cleanup runs, the only live children are ones it spawned (cleanups
        // start once every other child finished): they are part of the cleanup's work, shielded
        // from the scope's cancellation like the cleanup itself.
        let _cur = current::enter(if this.defer.is_some() { core::ptr::null() } else { scope.tok().as_ptr() });
        // Spawns and handle drops on this thread until we return may use the owner side.
        let _poller = child::PollerGuard::enter(&scope.shared);
        scope.shared.set_polling(true);
        if !this.cancel_seen && scope.tok().is_cancelled() {
            // Poll everything once so the leaf futures inside see the cancellation.
            this.cancel_seen = true;
            // SAFETY: we are the scope's poll; `wake` runs no user code.
            let own = unsafe { scope.own() };
            let mut p = own.all;
            while let Some(h) = NonNull::new(p) {
                // SAFETY: we hold the lock; members of `all` are alive (the scope's reference).
                p = unsafe { child::links(h) }.all_next;
                child::wake(h);
            }
        }
        let mut batches = 0;
        let mut more = true;
        while more && batches < BATCHES_PER_POLL {
            let spawned = this.poll_batch();
            batches += 1;
            more = scope.shared.set_polling(false) || spawned;
            if more {
                scope.shared.set_polling(true);
            }
        }
        if more {
            // Children keep waking themselves: let the runtime run other tasks, then continue.
            scope.shared.set_polling(false);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if let Some(body) = &mut this.body {
            if body.is_finished() {
                let mut body = this.body.take().expect("checked");
                match Pin::new(&mut body).poll(cx) {
                    Poll::Ready(Ok(v)) => this.output = Some(v),
                    Poll::Ready(Err(_)) => {}
                    Poll::Pending => unreachable!("a finished child's handle is ready"),
                }
            } else {
                return Poll::Pending;
            }
        }
        // The body is done: wait for the children, then run the deferred cleanups.
        loop {
            // SAFETY: we are the scope's poll.
            let own = unsafe { scope.own() };
            if own.live != 0 {
                if !own.new_head.is_null() {
                    // A cleanup spawned children (they were not in this poll's batches).
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            if this.defer.is_none() {
                this.defer = scope.remote.lock().defers.pop();
            }
            let Some(d) = &mut this.defer else { break };
            // Shielded: cleanups run to the end even when the scope was cancelled.
            let ready = {
                let _shield = current::enter(core::ptr::null());
                child::catch(|| d.future().poll(cx))
            };
            match ready {
                Ok(Poll::Pending) => {
                    // SAFETY: we are the scope's poll; the cleanup is not running.
                    if !unsafe { scope.own() }.new_head.is_null() {
                        // The cleanup spawned children: poll them.
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
                Ok(Poll::Ready(())) => this.defer = None,
                Err(p) => {
                    this.defer = None;
                    this.panic.get_or_insert(p);
                }
            }
        }
        this.done = true;
        if let Some(p) = this.panic.take() {
            child::resume(p);
        }
        Poll::Ready(this.output.take().expect("spindle: a scope body finished without an output"))
    }
}

impl<S, T> Drop for ScopeFuture<'_, S, T> {
    fn drop(&mut self) {
        let scope = self.scope;
        // SAFETY: the scope lives until the end of this function.
        let scope_ref = unsafe { scope.as_ref() };
        // Close the ready stack first: from now on wakes push nothing.
        let mut queued = Vec::new();
        scope_ref.shared.close(&mut queued);
        for h in queued {
            child::release(h);
        }
        // Until nothing new appears: hard-cancel every child still running, drop the body (first
        // round only), then the cleanups that did not run (the one already started first, then
        // the rest, last deferred first). Every one of these runs user destructors, which may
        // spawn children or defer cleanups on this very scope: those are taken by the next round,
        // so nothing user-provided is left to drop once the scope's memory is freed below.
        // Borrowing cleanups cannot outlive this destructor: drop them (reported); owned ones go
        // to the runtime (see `defer_static`).
        let mut owned = Vec::new();
        let mut body_dropped = false;
        loop {
            let mut cancelled_any = false;
            loop {
                let adopted = scope_ref.remote.lock().take();
                // SAFETY: the destructor owns the scope; child destructors (run below, after the
                // reference is gone) spawn through the remote side.
                let own = unsafe { scope_ref.own() };
                own.adopt(adopted);
                let live: Vec<NonNull<Header>> = own.take_all();
                if live.is_empty() {
                    break;
                }
                cancelled_any = true;
                for h in live {
                    // SAFETY: the scope owns the running stage of a child still in the slab.
                    unsafe { child::cancel_child(h) };
                }
            }
            if !body_dropped {
                body_dropped = true;
                self.body = None;
                continue;
            }
            let pending: Vec<Deferred> = self
                .defer
                .take()
                .into_iter()
                .chain(core::mem::take(&mut scope_ref.remote.lock().defers).into_iter().rev())
                .collect();
            if pending.is_empty() && !cancelled_any {
                break;
            }
            for d in pending {
                match d {
                    Deferred::Owned(f) => owned.push(f),
                    Deferred::Borrowed(f) => {
                        let _ = child::catch(move || drop(f));
                        super::close::report_unrun_cleanup();
                    }
                }
            }
        }
        super::detach::hand_off(owned, GroupRef { id: scope_ref.id, kind: GroupKind::Scope });
        // The arena carves no more: the last cell of its chunk (maybe held by a waker elsewhere)
        // frees it.
        {
            // SAFETY: the destructor owns the scope.
            let own = unsafe { scope_ref.own() };
            if let Some((chunk, n)) = self.freed.take() {
                own.arena.give_back(chunk, n);
            }
            own.arena.retire();
        }
        // SAFETY: nothing borrows the scope any more: the body, the children and the deferred
        // futures are gone. It was allocated by `scope_on` with `Box`.
        drop(unsafe { Box::from_raw(scope.as_ptr()) });
    }
}
