//! Async cleanup: [`AsyncClose`] and the debug-mode [`CloseGuard`] that reports values dropped
//! without being closed.

use core::future::Future;

use crate::loom::unmodelled::{AtomicUsize, Ordering::Relaxed};

/// A value whose cleanup is asynchronous (flushing a buffer, a protocol goodbye, returning a
/// connection to its pool). Rust has no async `Drop`; call `close` yourself, or hand the value to
/// a scope with `Scope::close_on_exit` (or `Scope::defer`) so the scope closes it, shielded from
/// cancellation, when it ends.
///
/// ```
/// use spindle_core::structured::AsyncClose;
/// struct Log(Vec<u8>);
/// impl AsyncClose for Log {
///     type Error = std::io::Error;
///     async fn close(self) -> Result<(), std::io::Error> {
///         // e.g. write the buffer out
///         Ok(())
///     }
/// }
/// spindle::block_on(async { Log(Vec::new()).close().await.unwrap() });
/// ```
pub trait AsyncClose {
    /// What a failed close reports.
    type Error;

    /// Cleans up, consuming the value.
    fn close(self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

static UNCLOSED: AtomicUsize = AtomicUsize::new(0);

/// A field for types that must be closed: in debug builds, dropping it without
/// [`disarm`](Self::disarm) reports the leak (on stderr with feature `std`, and in the count
/// [`unclosed_drops`]). In release builds it does nothing.
///
/// ```
/// use spindle_core::structured::{unclosed_drops, AsyncClose, CloseGuard};
/// struct Conn { guard: CloseGuard }
/// impl AsyncClose for Conn {
///     type Error = ();
///     async fn close(mut self) -> Result<(), ()> {
///         self.guard.disarm();
///         Ok(())
///     }
/// }
/// let before = unclosed_drops();
/// spindle::block_on(Conn { guard: CloseGuard::new("Conn") }.close()).unwrap();
/// assert_eq!(unclosed_drops(), before);
/// drop(Conn { guard: CloseGuard::new("Conn") }); // warns in debug builds
/// # #[cfg(debug_assertions)]
/// assert_eq!(unclosed_drops(), before + 1);
/// ```
#[derive(Debug)]
pub struct CloseGuard {
    what: &'static str,
    armed: bool,
}

impl CloseGuard {
    /// An armed guard for a value described by `what` (shown in the warning).
    ///
    /// ```
    /// let mut g = spindle_core::structured::CloseGuard::new("File");
    /// g.disarm();
    /// ```
    pub fn new(what: &'static str) -> CloseGuard {
        CloseGuard { what, armed: true }
    }

    /// The value was closed: dropping the guard is silent from now on.
    ///
    /// ```
    /// let mut g = spindle_core::structured::CloseGuard::new("File");
    /// g.disarm();
    /// drop(g);
    /// ```
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && self.armed {
            UNCLOSED.fetch_add(1, Relaxed);
            #[cfg(not(feature = "std"))]
            let _ = self.what;
            #[cfg(feature = "std")]
            std::eprintln!(
                "spindle: a {} was dropped without being closed (call `.close().await`, or \
                 `scope.close_on_exit(value)`); its async cleanup did not run",
                self.what
            );
        }
    }
}

/// The same debug-mode report as a dropped armed [`CloseGuard`], for a scope's deferred cleanup
/// that never ran (its scope was dropped early and no runtime took the cleanup, or the runtime
/// dropped it at its deadline or at shutdown).
pub(crate) fn report_unrun_cleanup() {
    if cfg!(debug_assertions) {
        UNCLOSED.fetch_add(1, Relaxed);
        #[cfg(feature = "std")]
        std::eprintln!(
            "spindle: a scope's deferred cleanup was dropped without running (the scope future was \
             dropped before it finished, and the cleanup borrowed from outside the scope, or no \
             runtime was current to run it, or it missed its deadline)"
        );
    }
}

/// How many armed [`CloseGuard`]s were dropped in this process, plus scope cleanups dropped
/// without running (see [`Scope::defer`](super::Scope::defer)); debug builds, always 0 in release
/// builds.
///
/// ```
/// let _ = spindle_core::structured::unclosed_drops();
/// ```
pub fn unclosed_drops() -> usize {
    UNCLOSED.load(Relaxed)
}
