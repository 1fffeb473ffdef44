//! Cooperative scheduling budget, runtime-neutral.
//!
//! A runtime gives every task poll a budget; leaf futures (join handles, channels, timers, I/O)
//! call [`poll_proceed`] before doing work, and once the budget is spent it returns `Pending`
//! after waking the task, so one busy task cannot starve the others on its worker.
//!
//! The budget itself lives with the runtime (a thread-local in `spindle`); this module holds a
//! process-wide hook to it so `no_std` code reaches it without knowing which runtime runs it.
//! With no hook installed (another executor, or embedded), `poll_proceed` always proceeds.
//!
//! ```
//! use core::task::{Context, Poll};
//! fn never_stop(_: &mut Context<'_>) -> Poll<()> { Poll::Ready(()) }
//! spindle_core::coop::set_hook(never_stop);
//! ```

use core::task::{Context, Poll};

use crate::loom::unmodelled::{AtomicPtr, Ordering};

static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// The signature of a budget hook: `Ready` to proceed, or `Pending` (after waking the task).
pub type Hook = fn(&mut Context<'_>) -> Poll<()>;

/// Installs the budget hook (the runtime does this when it is built). Later calls replace it;
/// every hook must tolerate being called outside its own runtime (and then proceed).
pub fn set_hook(hook: Hook) {
    HOOK.store(hook as *mut (), Ordering::Release);
}

/// Spends one unit of the current task's budget, or returns `Pending` (having woken the task)
/// when it is used up.
#[inline]
pub fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let p = HOOK.load(Ordering::Acquire);
    if p.is_null() {
        return Poll::Ready(());
    }
    // SAFETY: the only non-null values ever stored are `Hook` function pointers (`set_hook`).
    let hook: Hook = unsafe { core::mem::transmute::<*mut (), Hook>(p) };
    hook(cx)
}
