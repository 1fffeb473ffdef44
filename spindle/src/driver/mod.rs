//! I/O drivers: the reactor each worker parks in, the registrations sockets use, and (on
//! io_uring) completion ops with owned buffers.
//!
//! # Contract
//!
//! - Each worker (and each current-thread runtime) owns a [`Reactor`]; the worker parks in it
//!   (`epoll_wait`, or `io_uring_enter` waiting for a completion, with the next timer as timeout;
//!   an eventfd for unparking) instead of a bare futex, and dispatches readiness and completions
//!   when it wakes. Outside any runtime a process-wide fallback reactor runs on its own thread, so
//!   spindle's I/O types work on any executor.
//! - A thread that keeps finding tasks never parks, so it also polls its reactor without blocking
//!   ([`Reactor::maintain`]): on a multi-thread worker once 61 tasks ran since its reactor was
//!   last polled (on io_uring a reap that left nothing queued counts), on a current-thread
//!   runtime every 122 tasks. On io_uring a worker that runs out of local work also reaps the
//!   completions already posted before it steals (no syscall unless the kernel must be entered
//!   anyway), and submits its queued entries before it runs a stolen task; otherwise its park
//!   submits them together with its wait (one `io_uring_enter`).
//!   Without it a busy worker would never dispatch readiness or completions for its own tasks,
//!   nor submit the io_uring entries they queued (a ring's waiting thread submits its entries
//!   with its next wait). On io_uring the poll costs a few atomic loads and one uncontended lock
//!   and no syscall unless entries are queued, completions or kernel task work are pending; on
//!   epoll it is one `epoll_wait(0)`.
//! - A [`Registration`] ties one file descriptor to the reactor of the worker that created it
//!   (edge-triggered, read and write interest: epoll `EPOLLET`, or an io_uring multishot
//!   `POLL_ADD`, which is edge-triggered too). Its owner polls readiness (`poll_ready`), runs a
//!   non-blocking syscall, and on `WouldBlock` clears the readiness it observed (`clear_ready`,
//!   which keeps readiness that a newer event set meanwhile, so no edge is lost). Readiness
//!   events carry a slab index and a generation, so an event for a registration dropped in the
//!   meantime is ignored, never dereferenced. `Registration` is the same type on both backends.
//!   On io_uring the poll is armed by the first `poll_ready`, not at creation: sockets used only
//!   through completion ops never pay for a poll (a CQE per readiness change); the armed poll
//!   reports the readiness the fd has by then, so arming late misses nothing. On a multi-thread
//!   runtime, loopback connections are placed by [`placement`]: the two ends of one made and
//!   accepted in the runtime are served by one worker (on epoll both watches are armed lazily on
//!   its reactor; on io_uring both ends' ops go to its ring).
//! - Dropping a `Registration` removes the fd from the epoll set (or cancels the poll op with
//!   `ASYNC_CANCEL`: a `POLL_REMOVE` racing with the poll's own wakeup fails with `EALREADY` and
//!   leaves the poll armed, holding the file open, so a close would never reach the peer); the
//!   owner closes the fd after.
//! - Completion ops (io_uring only): [`uring::op`] — `read`, `write`, `recv`, `send`, `accept`,
//!   `connect`, `readv`, `writev`, `read_at`, `write_at`, `send_to`, `recv_from`, taking owned
//!   buffers ([`crate::io::IoBuf`] / [`crate::io::IoBufMut`]) and giving them back. Dropping an op
//!   in flight never frees what the kernel may still write: see the op lifecycle in [`uring`].
//!   The sockets' owned-buffer methods (`read_owned`, `write_owned`, `writev_owned`, `send_owned`,
//!   `recv_owned`, `send_to_owned`, `recv_from_owned`) and `fs::File`'s positional ones are ops
//!   on the current thread's ring; the op also owns the socket or file (`op::KeepAlive` for
//!   writes and files; the read ops of `net::stash`, which also hand what a cancelled read took
//!   back to its socket), so the fd stays open until the final completion even if the op and its
//!   object are dropped. On
//!   epoll, [`uring_reactor`] returns `None` and callers use readiness plus a non-blocking
//!   syscall (files: the blocking pool) instead.
//! - Shutdown: when a runtime is dropped, after its tasks, its reactors are shut down
//!   ([`Reactor::shutdown`]): registrations still alive (a socket kept past its runtime) fail with
//!   [`shut_down_error`] instead of waiting for events nobody dispatches, and on io_uring the ops
//!   its dropped tasks orphaned are cancelled and reaped, releasing their buffers and the sockets
//!   they keep open (whose registrations hold the reactor: a cycle otherwise).
//! - Backend selection, once per process: `SPINDLE_DRIVER=uring` (or `io_uring`) forces io_uring
//!   (a runtime fails to build with a clear error when the kernel refuses it), `epoll` forces
//!   epoll; unset (or `auto`) probes `io_uring_setup` with the flags the reactor uses and every
//!   opcode it submits, and falls back to epoll on ENOSYS/EPERM/`io_uring_disabled`.
//!   `Builder::io_driver` forces a backend for one runtime; `Handle::io_driver` reports a runtime's.

pub(crate) mod epoll;
pub(crate) mod placement;
pub(crate) mod pool;
pub(crate) mod registration;
pub(crate) mod uring;
pub(crate) mod waiters;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use spindle_core::loom::unmodelled::{AtomicBool, Ordering::Relaxed};

// The socket types (spindle::net) are the users of registrations.
#[allow(unused_imports)]
pub(crate) use registration::{Direction, ReadyEvent, Registration};

use registration::ScheduledIo;

/// The I/O backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Readiness through epoll.
    Epoll,
    /// Completions through io_uring.
    Uring,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "io_uring",
        }
    }
}

/// The backend chosen for this process (from `SPINDLE_DRIVER` and the probe), decided once.
pub(crate) fn backend() -> io::Result<Backend> {
    static CHOICE: OnceLock<Result<Backend, (io::ErrorKind, String)>> = OnceLock::new();
    CHOICE
        .get_or_init(|| {
            let var = std::env::var("SPINDLE_DRIVER").unwrap_or_default();
            match var.as_str() {
                "" | "auto" => Ok(if uring::probe().is_ok() { Backend::Uring } else { Backend::Epoll }),
                "epoll" => Ok(Backend::Epoll),
                "uring" | "io_uring" => uring::probe().map(|()| Backend::Uring).map_err(|e| {
                    (
                        e.kind(),
                        format!(
                            "spindle: SPINDLE_DRIVER={var} requested, but io_uring is not usable here: {e}; \
                             unset SPINDLE_DRIVER (auto-detect) or set it to epoll"
                        ),
                    )
                }),
                v => Err((
                    io::ErrorKind::InvalidInput,
                    format!("spindle: unknown SPINDLE_DRIVER value {v:?}; expected \"uring\", \"epoll\" or \"auto\""),
                )),
            }
        })
        .clone()
        .map_err(|(kind, msg)| io::Error::new(kind, msg))
}

/// Which I/O backend this process chose (`"io_uring"` or `"epoll"`); runtimes report their own
/// (a builder may force one) through `Handle::io_driver`.
#[cfg(test)]
pub(crate) fn backend_name() -> &'static str {
    backend().map(Backend::name).unwrap_or("epoll")
}

/// A worker's reactor: one epoll instance or one io_uring, chosen at runtime start.
// Always behind an `Arc`, one per worker: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reactor {
    /// The epoll backend.
    Epoll(epoll::Reactor),
    /// The io_uring backend.
    Uring(uring::Reactor),
}

impl Reactor {
    /// A reactor of the process's backend.
    pub(crate) fn new() -> io::Result<Reactor> {
        Reactor::with_backend(backend()?)
    }

    /// A reactor of `backend` that one thread drives for its whole life (on io_uring a
    /// `SINGLE_ISSUER | DEFER_TASKRUN` ring; on epoll the same as [`Reactor::with_backend`]).
    pub(crate) fn new_pinned(backend: Backend) -> io::Result<Reactor> {
        Ok(match backend {
            Backend::Epoll => Reactor::Epoll(epoll::Reactor::new()?),
            Backend::Uring => Reactor::Uring(uring::Reactor::new_pinned()?),
        })
    }

    /// A reactor of a given backend.
    pub(crate) fn with_backend(b: Backend) -> io::Result<Reactor> {
        Ok(match b {
            Backend::Epoll => Reactor::Epoll(epoll::Reactor::new()?),
            Backend::Uring => Reactor::Uring(uring::Reactor::new()?),
        })
    }

    /// This reactor's backend.
    #[allow(dead_code)]
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Reactor::Epoll(_) => Backend::Epoll,
            Reactor::Uring(_) => Backend::Uring,
        }
    }

    /// From any thread, without consuming anything: whether events wait in the kernel that this
    /// reactor's waiting thread has not dispatched yet (epoll: its ready list is not empty; a
    /// pinned io_uring: the kernel deferred completions for its owner, or its CQ overflowed).
    /// For virtual time: a runtime must not jump the clock while another worker is about to
    /// wake tasks. `true` when it cannot tell (erring towards not jumping yet).
    pub(crate) fn has_undispatched_events(&self) -> bool {
        match self {
            Reactor::Epoll(r) => r.has_undispatched_events(),
            Reactor::Uring(r) => r.has_undispatched_events(),
        }
    }

    /// Makes a blocked (or the next) `wait` return. Callable from any thread.
    pub(crate) fn wake(&self) {
        match self {
            Reactor::Epoll(r) => r.wake(),
            Reactor::Uring(r) => r.wake(),
        }
    }

    /// Waits for events, a wake or the timeout, and dispatches them. Returns whether a wake
    /// was seen. Called by the thread that owns the reactor (one at a time).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        match self {
            Reactor::Epoll(r) => r.wait(timeout),
            Reactor::Uring(r) => r.wait(timeout),
        }
    }

    /// A non-blocking poll for a thread that is busy running tasks (called every few polls and
    /// before it looks for work elsewhere): dispatches whatever readiness or completions are
    /// there and, on io_uring, submits entries queued since the last wait. On io_uring it makes
    /// no syscall when nothing is queued, due or pending; on epoll it is one `epoll_wait(0)`.
    /// Called by the thread that parks in this reactor.
    pub(crate) fn maintain(&self) {
        match self {
            Reactor::Epoll(r) => {
                r.wait(Some(Duration::ZERO));
            }
            Reactor::Uring(r) => {
                r.maintain();
            }
        }
    }

    /// The thread that drove this reactor stops driving it (a current-thread runtime's
    /// `block_on` returns): submits what it queued for its next wait, so that I/O (and a
    /// released socket's close) proceeds until some thread drives the runtime again. No
    /// completions are dispatched. Nothing to do on epoll.
    pub(crate) fn flush_submissions(&self) {
        if let Reactor::Uring(r) = self {
            r.flush_submissions();
        }
    }

    /// The runtime that owns this reactor is gone: see [`Reactor::is_shut_down`]. On io_uring
    /// also cancels and reaps the ops still in flight.
    pub(crate) fn shutdown(&self) {
        match self {
            Reactor::Epoll(r) => r.shutdown(),
            Reactor::Uring(r) => r.shutdown(),
        }
    }

    /// Whether the runtime owning this reactor was shut down: nothing dispatches its events any
    /// more, so registrations and ops on it fail with [`shut_down_error`] instead of waiting
    /// forever.
    #[inline]
    pub(crate) fn is_shut_down(&self) -> bool {
        match self {
            Reactor::Epoll(r) => r.is_shut_down(),
            Reactor::Uring(r) => r.is_shut_down(),
        }
    }

    /// The id of the runtime that owns this reactor (one id for all the reactors of a runtime:
    /// its workers', or its cores'), or 0 for the fallback reactor, which no runtime owns.
    #[inline]
    pub(crate) fn owner(&self) -> usize {
        match self {
            Reactor::Epoll(r) => r.owner.load(Relaxed),
            Reactor::Uring(r) => r.owner.load(Relaxed),
        }
    }

    /// Records the runtime owning this reactor: called once, by the runtime's builder, before the
    /// reactor is shared.
    pub(crate) fn set_owner(&self, runtime: usize) {
        match self {
            Reactor::Epoll(r) => r.owner.store(runtime, Relaxed),
            Reactor::Uring(r) => r.owner.store(runtime, Relaxed),
        }
    }

    /// The io_uring reactor, if this is one.
    pub(crate) fn as_uring(&self) -> Option<&uring::Reactor> {
        match self {
            Reactor::Uring(r) => Some(r),
            Reactor::Epoll(_) => None,
        }
    }

    fn register(&self, fd: RawFd, io: &Arc<ScheduledIo>) -> io::Result<u64> {
        match self {
            Reactor::Epoll(r) => r.register(fd, io),
            Reactor::Uring(r) => r.register(fd, io),
        }
    }

    fn deregister(&self, fd: RawFd, key: u64) {
        match self {
            Reactor::Epoll(r) => r.deregister(fd, key),
            Reactor::Uring(r) => r.deregister(key),
        }
    }
}

/// Signals a reactor's wake eventfd. Both backends watch it edge-triggered (a multishot poll on
/// io_uring, `EPOLLET` on epoll): every write is one wakeup, whatever the counter holds, so the
/// counter is never read back (a `read` per wake saved). Only a counter at its maximum refuses a
/// write (`EAGAIN`, after some 2^64 wakes): then it is reset and written again.
pub(crate) fn signal_eventfd(fd: &OwnedFd) {
    let one: u64 = 1;
    for _ in 0..2 {
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let n = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n == 8 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            return;
        }
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a live u64 (resets the counter).
        unsafe { libc::read(fd.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }
}

/// The error of I/O on an object whose runtime was dropped.
pub(crate) fn shut_down_error() -> io::Error {
    io::Error::other("spindle: the runtime driving this I/O object was shut down")
}

/// The io_uring reactor completion ops on this thread go to (the current worker's, or the
/// fallback reactor outside runtimes), or `None` when the process runs on epoll.
#[allow(dead_code)] // used by the socket and file types
pub(crate) fn uring_reactor() -> Option<Arc<Reactor>> {
    // Called by every owned-buffer socket op: on an epoll runtime it must not cost a reference
    // count round trip just to say no.
    match crate::rt::with_current_reactor(None, |r| r.as_uring().is_some().then(|| r.clone())) {
        Some(r) => r,
        None => {
            let r = global_reactor();
            r.as_uring().is_some().then_some(r)
        }
    }
}

/// A reactor an op runs on: borrowed when it is the I/O object's own (no reference count round
/// trip per op), else a reference of its own.
pub(crate) enum ReactorRef<'a> {
    Borrowed(&'a Arc<Reactor>),
    Owned(Arc<Reactor>),
}

impl std::ops::Deref for ReactorRef<'_> {
    type Target = Arc<Reactor>;
    fn deref(&self) -> &Arc<Reactor> {
        match self {
            ReactorRef::Borrowed(r) => r,
            ReactorRef::Owned(r) => r,
        }
    }
}

/// Set once an io_uring reactor was built (a runtime's or the fallback one).
static URING_BUILT: AtomicBool = AtomicBool::new(false);

/// Records that an io_uring reactor exists (see [`uring_possible`]).
pub(crate) fn note_uring_built() {
    URING_BUILT.store(true, Relaxed);
}

/// Whether some thread may find an io_uring reactor: one was built, or the process backend is
/// io_uring (the fallback reactor would be one). When not, an epoll-registered object's ops need
/// no look at the thread's runtime ([`uring_reactor_near`]'s fast path: on epoll that look was a
/// measurable share of a readiness round trip).
fn uring_possible() -> bool {
    URING_BUILT.load(Relaxed) || !matches!(backend(), Ok(Backend::Epoll))
}

/// [`uring_reactor`] for an object registered with `own`: `own` itself, borrowed, when it is the
/// reactor ops on this thread go to (on the current-thread runtime that made the object; on a
/// worker that registered it); else the current one if [`crate::rt::may_submit_here`] (this
/// thread runs for `own`'s runtime; a task follows the ring its op completes on); else `own`
/// again. Never a ring that may go undriven while the object is used: an op dropped in flight
/// there completes only when that ring is driven again, and the object's next op waits for it
/// (`net::stash`). A thread with no ring of its own (it runs no runtime and entered none, or
/// only an io_uring current-thread one) uses the fallback ring, which is always driven.
#[allow(dead_code)] // used by the socket types
pub(crate) fn uring_reactor_near(own: &Arc<Reactor>) -> Option<ReactorRef<'_>> {
    if own.as_uring().is_none() && !uring_possible() {
        return None;
    }
    let current = crate::rt::with_current_reactor(Some(own), |r| {
        if Arc::ptr_eq(r, own) {
            None
        } else {
            Some(r.as_uring().is_some().then(|| r.clone()))
        }
    });
    match current {
        Some(Some(other)) if crate::rt::may_submit_here(own) => other.map(ReactorRef::Owned),
        Some(_) => own.as_uring().is_some().then_some(ReactorRef::Borrowed(own)),
        None => uring_reactor().map(ReactorRef::Owned),
    }
}

/// The process-wide reactor for I/O objects created outside any spindle runtime.
pub(crate) fn global_reactor() -> Arc<Reactor> {
    static GLOBAL: OnceLock<Arc<Reactor>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let r = Arc::new(
                Reactor::new()
                    .or_else(|_| Reactor::with_backend(Backend::Epoll))
                    .expect("spindle: cannot create the fallback I/O reactor"),
            );
            let r2 = r.clone();
            std::thread::Builder::new()
                .name("spindle-io".into())
                .spawn(move || loop {
                    r2.wait(None);
                })
                .expect("spindle: cannot start the fallback I/O thread");
            r
        })
        .clone()
}
