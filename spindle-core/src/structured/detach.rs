//! Where the `'static` cleanups of a scope dropped before it finished go: a process-wide hook a
//! runtime installs ([`set_detach_hook`]; `spindle` installs one when a runtime is built), which
//! starts them as a detached task if a runtime is current on the dropping thread.
//!
//! A destructor cannot await, so a scope dropped early can only run its pending cleanups by
//! handing them to somebody who can. Only cleanups deferred with
//! [`Scope::defer_static`](super::Scope::defer_static) (or
//! [`close_on_exit_static`](super::Scope::close_on_exit_static)) can go: they own everything they
//! touch, so they may outlive the scope. Cleanups that borrow ([`Scope::defer`](super::Scope::defer))
//! cannot outlive the dropped scope (what they borrow may be freed right after the drop) and are
//! dropped unrun, with the debug-mode warning of [`CloseGuard`](super::CloseGuard).

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use alloc::vec::Vec;

use super::child::{self};
use super::close;
use super::current;
use super::scope::BoxFuture;
use crate::loom::unmodelled::{AtomicPtr, Ordering};
use crate::task::GroupRef;

/// How long the cleanups handed off by one dropped scope may run, together, before the runtime
/// drops them (and the debug-mode warning reports each one that did not finish).
pub const DROPPED_SCOPE_CLEANUP_DEADLINE: Duration = Duration::from_secs(10);

/// A detach hook: start `cleanup` as a detached task on the runtime current on this thread, and
/// drop it if it has not finished after `deadline`; or give it back (`Err`) when no runtime is
/// current here (the scope then drops it, with the warning). `scope` is the dropped scope, to
/// record as the task's group (`TaskMeta::group`).
///
/// The hook must not poll `cleanup` on the calling thread before returning: it runs inside a
/// destructor.
pub type DetachHook =
    fn(cleanup: BoxFuture<'static, ()>, deadline: Duration, scope: GroupRef) -> Result<(), BoxFuture<'static, ()>>;

static HOOK: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Installs the detach hook (a runtime does this when it is built; `spindle` does). Later calls
/// replace it; every hook must tolerate being called where its runtime is not current (and give
/// the cleanup back).
///
/// ```
/// use core::time::Duration;
/// use spindle_core::structured::{set_detach_hook, BoxFuture};
/// use spindle_core::task::GroupRef;
/// // An executor-less program: nothing can run a cleanup after its scope is gone.
/// fn nowhere(
///     cleanup: BoxFuture<'static, ()>,
///     _deadline: Duration,
///     _scope: GroupRef,
/// ) -> Result<(), BoxFuture<'static, ()>> {
///     Err(cleanup)
/// }
/// set_detach_hook(nowhere);
/// ```
pub fn set_detach_hook(hook: DetachHook) {
    HOOK.store(hook as *mut (), Ordering::Release);
}

/// Hands `cleanup` to the installed hook, or gives it back if there is none or it declines.
fn detach(cleanup: BoxFuture<'static, ()>, deadline: Duration, scope: GroupRef) -> Result<(), BoxFuture<'static, ()>> {
    let p = HOOK.load(Ordering::Acquire);
    if p.is_null() {
        return Err(cleanup);
    }
    // SAFETY: the only non-null values ever stored are `DetachHook` function pointers.
    let hook: DetachHook = unsafe { core::mem::transmute::<*mut (), DetachHook>(p) };
    hook(cleanup, deadline, scope)
}

/// Hands the cleanups of a dropped scope (in the order they must run) to the runtime, or drops
/// them with the warning if no runtime takes them.
pub(crate) fn hand_off(cleanups: Vec<BoxFuture<'static, ()>>, scope: GroupRef) {
    if cleanups.is_empty() {
        return;
    }
    let run = RunCleanups { left: cleanups.into_iter().rev().collect(), current: None };
    if let Err(back) = detach(alloc::boxed::Box::pin(run), DROPPED_SCOPE_CLEANUP_DEADLINE, scope) {
        // Dropping `RunCleanups` reports every cleanup it still holds.
        drop(back);
    }
}

/// Runs the handed-off cleanups one at a time, shielded, each panic contained. Dropping it before
/// it finished (deadline, runtime shutdown, no runtime) reports each cleanup that did not finish.
struct RunCleanups {
    /// Still to start, the next one last.
    left: Vec<BoxFuture<'static, ()>>,
    current: Option<BoxFuture<'static, ()>>,
}

impl Future for RunCleanups {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            if this.current.is_none() {
                this.current = this.left.pop();
            }
            let Some(c) = &mut this.current else { return Poll::Ready(()) };
            let r = {
                // Shielded: no cancellation token is current while a cleanup runs.
                let _shield = current::enter(core::ptr::null());
                child::catch(|| c.as_mut().poll(cx))
            };
            match r {
                Ok(Poll::Pending) => return Poll::Pending,
                // A panicking cleanup was reported by the panic hook; go on with the others.
                Ok(Poll::Ready(())) | Err(_) => this.current = None,
            }
        }
    }
}

impl Drop for RunCleanups {
    fn drop(&mut self) {
        let n = self.left.len() + usize::from(self.current.is_some());
        for _ in 0..n {
            close::report_unrun_cleanup();
        }
    }
}
