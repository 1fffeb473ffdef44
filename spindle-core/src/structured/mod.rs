//! Structured concurrency and cancellation, runtime-neutral.
//!
//! # Contract
//!
//! What this module owns: [`scope!`](crate::scope) (children that borrow), [`TaskGroup`]
//! (`'static` tasks with fail-fast or supervisor semantics), [`CancelToken`] and the *current
//! token* ([`cancel_requested`], [`with_token`], [`shield`], [`checkpoint`], [`or_cancelled`]),
//! the deadline logic ([`with_deadline_on`]), the combinators that replace `select!`
//! ([`race`], [`join`], [`try_join`], [`merge`], [`repeat`], [`repeat_with`]) and async cleanup
//! ([`AsyncClose`], [`Scope::defer`], [`Scope::defer_static`], [`CloseGuard`]).
//!
//! # Cleanups of a scope dropped before it finished
//!
//! A scope that completes runs every deferred cleanup itself, shielded, last deferred first. A
//! scope *future dropped* before it completes cannot await, so:
//!
//! - cleanups deferred with [`Scope::defer`] / [`Scope::close_on_exit`] may borrow from outside the
//!   scope, so they cannot outlive the destructor: they are dropped unrun, and debug builds report
//!   each one as [`CloseGuard`] reports a value dropped without `close()` (stderr and
//!   [`unclosed_drops`]);
//! - cleanups deferred with [`Scope::defer_static`] / [`Scope::close_on_exit_static`] own what they
//!   touch: the destructor hands them, in the order they would have run (one already started
//!   first), to the runtime current on the dropping thread through the hook a runtime installs
//!   ([`set_detach_hook`]; spindle's runtimes install one when built). They run as one detached
//!   task, shielded from cancellation, one at a time, and are dropped if they have not finished
//!   [`DROPPED_SCOPE_CLEANUP_DEADLINE`] later. With no hook, or no runtime current on that thread
//!   (a plain `futures` executor, tokio, a thread outside any runtime), they are dropped unrun and
//!   reported like the borrowing ones; so is a cleanup dropped at its deadline or by a runtime
//!   shutting down.
//!
//! A leaked scope (`mem::forget`) runs and drops nothing: its cleanups leak with it.
//!
//! The rule everything here keeps: **a live future is always being polled, or it is dropped.**
//! Nothing is left half-done between loop iterations; losers of a race are dropped at once;
//! scopes and groups never detach their children.
//!
//! Who calls what:
//! - Runtimes implement [`Spawn`] so scopes (`spawn_task`) and groups can start `'static`
//!   tasks; `spindle` does, and re-exports these items with its runtime as the default.
//! - Leaf futures (spindle's timers, channel receives, bounded sends) call
//!   [`cancel_requested`] at the start of each poll and end early when it is `true`. Locks,
//!   semaphores, `Notify` and barriers do not: their outputs cannot express "cancelled", and
//!   other primitives wait on them in loops. They are hard-cancellation points (dropped).
//! - Scopes, groups, deadlines and `with_token` make their token current (a thread-local with
//!   `std`; see [`current`]) only while they poll their futures, and they make sure those
//!   futures are polled again when the token is cancelled (per-node hooks wake them), so the
//!   leaves see it.
//!
//! Cancellation is **soft** (a request observed at the next await) everywhere except where a
//! future is dropped: `race` losers, `try_join` after an error, [`TaskGroup::abort`] and
//! dropping a group, dropping a scope, and a deadline's grace period running out (hard). A
//! cancelled scope or group still waits for every child to finish, as Trio and Kotlin do; give
//! code that might ignore cancellation a deadline.
//!
//! # Why `scope!` is sound under `mem::forget`
//!
//! Children spawned with [`Scope::spawn`] may borrow data that outlives the scope. They are
//! polled only by the scope future itself, inside its own `poll`, on whichever thread polls the
//! scope; never by a runtime, never in parallel, never after the scope future is gone:
//!
//! - If the scope future is dropped, its destructor drops every child future (and the body, and
//!   the deferred cleanups that borrow) before returning, while the borrowed data is still alive
//!   (a future cannot outlive what it borrows). The only things that outlive it are `'static`:
//!   `spawn_task` tasks (aborted) and `defer_static` cleanups (handed to the runtime to run).
//! - If the scope future is leaked (`mem::forget` after polling it, then the borrowed data is
//!   freed), nobody polls the children again, so none of them touches the freed data. Their
//!   cells are leaked with the scope's references to them: a child's memory is freed only after
//!   the scope has dropped its future, so pinned futures are never freed without `drop` (the pin
//!   guarantee). Cells live in chunks the scope carves them from; a chunk is freed only when its
//!   last cell is gone *and* the scope gave it up (its destructor does), so a leaked scope leaks
//!   its chunks too. Wakers the children left behind (in timers, wait lists) only touch the
//!   cells' reference-counted headers, their chunks' counts and the scope's ready stack (kept
//!   alive by the chunks), never the futures.
//! - Outputs are read by the [`ScopeHandle`], which borrows the scope (`'scope`), so it cannot
//!   outlive the borrowed data either.
//! - The scope reference a body gets is higher-ranked (`for<'scope>`), so the body cannot store
//!   it anywhere that outlives the scope.
//!
//! This is why borrowing children are concurrent but not parallel: a child running on another
//! thread could keep touching borrowed data after the scope future was leaked and the data freed
//! (the "scoped task trilemma"). Parallelism goes through [`Scope::spawn_task`], whose tasks are
//! `'static`: the scope joins them (or aborts them when dropped), and leaking the scope merely
//! detaches them, which is safe.
//!
//! Why a macro: `scope(|s| async { .. })` taking an `AsyncFnOnce(&Scope)` compiles, but its future
//! is not `Send` inside other async blocks ("implementation of `AsyncFnOnce` is not general
//! enough", rust-lang/rust#110338). The macro expands to a higher-ranked
//! `FnOnce(&'scope Scope) -> Pin<Box<dyn Future + Send + 'scope>>`, which is, so scopes work
//! inside tasks spawned on the multi-thread runtime.
//!
//! # Per-child wakers
//!
//! Every scope child, and every branch of `race`/`join`/`try_join`/`merge`, has its own waker;
//! a wake queues that child on a lock-free stack and the owner polls only what was queued:
//! O(woken) per poll, not O(children).
//!
//! ```
//! use spindle_core::structured::{join, race};
//! spindle::block_on(async {
//!     let data = vec![1, 2, 3];
//!     let total = spindle::scope!(|s| async {
//!         let a = s.spawn(async { data.iter().sum::<i32>() }); // borrows `data`
//!         let b = s.spawn_task(async { 10 }); // 'static, runs in parallel
//!         a.await.unwrap() + b.await.unwrap()
//!     })
//!     .await;
//!     assert_eq!(total, 16);
//!     assert_eq!(join((async { 1 }, async { 2 })).await, (1, 2));
//!     assert_eq!(race((std::future::pending(), async { 3 })).await, 3);
//! });
//! ```

/// The number of identifiers it is given: the branch count of a tuple impl generated by the
/// combinator and merge macros.
macro_rules! count {
    () => { 0 };
    ($head:ident $($tail:ident)*) => { 1 + count!($($tail)*) };
}

mod cancel;
mod child;
mod close;
mod combinators;
pub mod current;
mod deadline;
mod detach;
mod group;
mod merge;
mod remote;
mod scope;
mod spawn;
mod wake_set;

/// The lock of scopes and groups (a scope's spawns from outside its poll and deferred cleanups; a
/// group's result queue and waiting tasks' wakers): a spin lock, one compare-and-swap to take and
/// one store to release, where a futex mutex takes two read-modify-writes and, when contended,
/// sleeps and wakes through syscalls. Critical sections are a few pointer writes and never run
/// user code, so contenders spin only briefly (then yield the thread, so a preempted holder can
/// run). Under loom it is loom's mutex ([`crate::sync::lock::Lock`]): a contended spin lock makes
/// loom explore every spin.
struct Lock<T> {
    #[cfg(not(loom))]
    inner: crate::spin::SpinLock<T>,
    #[cfg(loom)]
    inner: crate::sync::lock::Lock<T>,
}

impl<T> Lock<T> {
    fn new(value: T) -> Lock<T> {
        #[cfg(not(loom))]
        return Lock { inner: crate::spin::SpinLock::new(value) };
        #[cfg(loom)]
        return Lock { inner: crate::sync::lock::Lock::new(value) };
    }

    #[inline]
    fn lock(&self) -> impl core::ops::DerefMut<Target = T> + '_ {
        #[cfg(not(loom))]
        return self.inner.lock(relax);
        #[cfg(loom)]
        return self.inner.lock();
    }
}

/// What a thread waiting for a [`Lock`] does after brief spinning.
#[cfg(not(loom))]
fn relax() {
    #[cfg(feature = "std")]
    std::thread::yield_now();
    #[cfg(not(feature = "std"))]
    crate::loom::spin_loop();
}

pub use cancel::{
    checkpoint, or_cancelled, shield, with_token, CancelToken, Cancelled, Checkpoint, OrCancelled, Shield, WithToken,
};
pub use close::{unclosed_drops, AsyncClose, CloseGuard};
pub use combinators::{
    join, race, try_join, FromVec, IntoJoin, IntoRace, IntoResult, IntoTryJoin, Join, JoinBranches, MaybeDone, Race,
    RaceBranches, SliceJoin, SliceRace, SliceTryJoin, TryJoin, TryJoinBranches, VecJoin, VecTryJoin,
};
pub use current::cancel_requested;
pub use deadline::{with_deadline_on, DeadlineExceeded, WithDeadline};
pub use detach::{set_detach_hook, DetachHook, DROPPED_SCOPE_CLEANUP_DEADLINE};
pub use group::{GroupError, JoinNext, Mode, TaskError, TaskGroup};
pub use merge::{merge, repeat, repeat_with, IntoMerge, Merge, MergeBranches, Next, Repeat, RepeatWith, SliceMerge};
#[doc(hidden)]
pub use scope::__box;
pub use scope::{scope_on, BoxFuture, Scope, ScopeFuture, ScopeHandle};
pub use spawn::{NoSpawn, Spawn, SpawnMeta};

/// Opens a scope: `scope!(|s| async { .. })` is a future that polls the body and every child
/// spawned with `s.spawn(..)` (children may borrow from outside the scope), and completes with
/// the body's output once the body, every child and every deferred cleanup have finished.
///
/// `scope!(on spawner, |s| async { .. })` also offers `s.spawn_task(..)` (`'static` tasks in
/// parallel on the spawner's runtime). `spindle::scope!` is the same macro with spindle's
/// runtime as the spawner.
///
/// See the [module docs](crate::structured) for the semantics and the soundness argument.
///
/// ```
/// spindle::block_on(async {
///     let mut results = vec![0; 3];
///     spindle_core::scope!(|s| async {
///         for (i, r) in results.iter_mut().enumerate() {
///             s.spawn(async move { *r = i * i });
///         }
///     })
///     .await;
///     assert_eq!(results, [0, 1, 4]);
/// });
/// ```
#[macro_export]
macro_rules! scope {
    (on $spawner:expr, |$s:ident| $body:expr) => {
        $crate::structured::scope_on($spawner, |$s| $crate::structured::__box($body))
    };
    (|$s:ident| $body:expr) => {
        $crate::structured::scope_on($crate::structured::NoSpawn, |$s| $crate::structured::__box($body))
    };
}
