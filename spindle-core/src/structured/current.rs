//! The "current" cancellation token: the one the innermost scope, group, deadline or
//! [`with_token`](super::with_token) made current while it polls its futures.
//!
//! Leaf futures (spindle's timers, channel receives, bounded sends) call [`cancel_requested`] at
//! the start of each poll and complete early (or with an error) when it returns `true`, so a
//! cancelled scope's code stops at its next await without a token passed by hand.
//!
//! Where the pointer lives:
//! - with feature `std`: a thread-local (one `Cell` read per check);
//! - without `std` (bare metal): a slot the executor installs with [`set_slot`]; with no slot
//!   installed nothing is ever current, and only explicit tokens (`token.cancelled().await`,
//!   `checkpoint`) and hard cancellation (dropping) work.
//!
//! The stored pointer borrows a token node that the setter keeps alive for exactly as long as it
//! is stored: [`enter`] returns a guard that restores the previous pointer on drop (also when the
//! poll unwinds), and setters only call it around a synchronous `poll`.

use super::cancel::Node;

#[cfg(feature = "std")]
std::thread_local! {
    static CURRENT: crate::loom::unmodelled::Cell<*const Node> = const { crate::loom::unmodelled::Cell::new(core::ptr::null()) };
}

/// Where a bare-metal executor keeps the current-token pointer: a per-thread (or, on a
/// single-threaded executor, global) cell.
#[cfg(not(feature = "std"))]
#[derive(Debug)]
pub struct Slot {
    /// Reads the stored pointer (null when nothing is current).
    pub get: fn() -> *const (),
    /// Replaces the stored pointer.
    pub set: fn(*const ()),
}

#[cfg(not(feature = "std"))]
static SLOT: crate::loom::unmodelled::AtomicPtr<Slot> = crate::loom::unmodelled::AtomicPtr::new(core::ptr::null_mut());

/// Installs the slot that holds the current-token pointer (without feature `std` only).
///
/// # Safety
/// `get` must return what the last `set` *on the same thread of execution* stored (a value per
/// thread, or one global value if only one thread ever polls futures). Sharing one value between
/// threads that poll concurrently would let one thread read a token another thread is freeing.
///
/// ```
/// # #[cfg(not(feature = "std"))] {
/// use core::cell::Cell;
/// // A single-threaded executor can use a plain static.
/// struct One(Cell<*const ()>);
/// unsafe impl Sync for One {}
/// static CUR: One = One(Cell::new(core::ptr::null()));
/// static SLOT: spindle_core::structured::current::Slot =
///     spindle_core::structured::current::Slot { get: || CUR.0.get(), set: |p| CUR.0.set(p) };
/// unsafe { spindle_core::structured::current::set_slot(&SLOT) };
/// # }
/// ```
#[cfg(not(feature = "std"))]
pub unsafe fn set_slot(slot: &'static Slot) {
    SLOT.store(slot as *const Slot as *mut Slot, crate::loom::unmodelled::Ordering::Release);
}

#[inline]
pub(crate) fn get() -> *const Node {
    #[cfg(feature = "std")]
    return CURRENT.try_with(|c| c.get()).unwrap_or(core::ptr::null());
    #[cfg(not(feature = "std"))]
    {
        let s = SLOT.load(crate::loom::unmodelled::Ordering::Acquire);
        if s.is_null() {
            return core::ptr::null();
        }
        // SAFETY: only `&'static Slot`s are stored.
        (unsafe { &*s }.get)() as *const Node
    }
}

#[inline]
fn set(p: *const Node) -> *const Node {
    #[cfg(feature = "std")]
    return CURRENT.try_with(|c| c.replace(p)).unwrap_or(core::ptr::null());
    #[cfg(not(feature = "std"))]
    {
        let s = SLOT.load(crate::loom::unmodelled::Ordering::Acquire);
        if s.is_null() {
            return core::ptr::null();
        }
        // SAFETY: only `&'static Slot`s are stored.
        let s = unsafe { &*s };
        let prev = (s.get)();
        (s.set)(p as *const ());
        prev as *const Node
    }
}

/// Restores the previous current token when dropped.
#[must_use = "the token stays current only while the guard lives"]
pub(crate) struct Enter {
    prev: *const Node,
}

/// Makes `node` (or nothing, for null) current until the guard drops.
///
/// The caller keeps `node` alive while the guard lives and drops the guard before returning
/// from the synchronous section it entered in (the guard is `!Send`, so it cannot be held
/// across an await of a `Send` future).
#[inline]
pub(crate) fn enter(node: *const Node) -> Enter {
    Enter { prev: set(node) }
}

impl Drop for Enter {
    #[inline]
    fn drop(&mut self) {
        set(self.prev);
    }
}

/// Whether the current token (made current by the innermost scope, group, deadline or
/// `with_token` being polled on this thread) has been cancelled.
///
/// Leaf futures call this at the start of each poll; `false` when no token is current.
///
/// ```
/// use spindle_core::structured::{cancel_requested, with_token, CancelToken};
/// assert!(!cancel_requested());
/// let token = CancelToken::new();
/// token.cancel();
/// let seen = spindle::block_on(with_token(token, async { cancel_requested() }));
/// assert!(seen);
/// ```
#[inline]
pub fn cancel_requested() -> bool {
    let p = get();
    // SAFETY: a non-null pointer was stored by `enter`, whose caller keeps the node alive while
    // it is stored on this thread.
    !p.is_null() && unsafe { &*p }.is_cancelled()
}
