//! I/O drivers: the reactor each worker parks in, and the registrations sockets use.
//!
//! # Contract
//!
//! - Each worker (and each current-thread runtime) owns a [`Reactor`]; the worker parks in it
//!   (`epoll_wait` with the next timer as timeout, an eventfd for unparking) instead of a bare
//!   futex, and dispatches readiness to registrations when it wakes. Outside any runtime a
//!   process-wide fallback reactor runs on its own thread, so spindle's I/O types work on any
//!   executor.
//! - A [`Registration`] ties one file descriptor to the reactor of the worker that created it
//!   (edge-triggered, read and write interest). Its owner polls readiness (`poll_ready`), runs a
//!   non-blocking syscall, and on `WouldBlock` clears the readiness it observed (`clear_ready`,
//!   which keeps readiness that a newer event set meanwhile, so no edge is lost). Readiness
//!   events carry a slab index and a generation, so an event for a registration dropped in the
//!   meantime is ignored, never dereferenced.
//! - Dropping a `Registration` removes the fd from the epoll set; the owner closes the fd after.
//! - Backend selection: this build has the epoll backend. `SPINDLE_DRIVER=epoll` (or unset)
//!   selects it; `SPINDLE_DRIVER=uring` is refused with a clear error until the io_uring backend
//!   lands, rather than silently running something else. [`backend_name`] reports the choice.

pub(crate) mod epoll;

pub(crate) use epoll::Reactor;
// The socket types (spindle::net) are the users of registrations.
#[allow(unused_imports)]
pub(crate) use epoll::{Direction, Registration};

/// Which I/O backend runtimes use in this process.
pub(crate) fn backend_name() -> &'static str {
    "epoll"
}

/// Checks `SPINDLE_DRIVER` (called when a runtime is built).
pub(crate) fn check_backend_choice() -> std::io::Result<()> {
    match std::env::var("SPINDLE_DRIVER") {
        Err(_) => Ok(()),
        Ok(v) if v.is_empty() || v == "epoll" => Ok(()),
        Ok(v) if v == "uring" || v == "io_uring" => Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "spindle: SPINDLE_DRIVER=uring requested, but this build of spindle has only the epoll \
             backend (the io_uring backend is not implemented yet); unset SPINDLE_DRIVER or set it to epoll",
        )),
        Ok(v) => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("spindle: unknown SPINDLE_DRIVER value {v:?}; expected \"epoll\" or \"uring\""),
        )),
    }
}
