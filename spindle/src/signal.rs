//! Unix signals as async events: [`ctrl_c`] and [`signal`] (tokio's `tokio::signal` names).
//!
//! # Contract
//!
//! - The first request for a signal number installs a process-wide handler for it (through
//!   `signal-hook-registry`, which chains any handler installed before). From then on the signal
//!   no longer has its default action (a `SIGINT` no longer ends the process): it is delivered to
//!   the [`Signal`] listeners. The handler stays installed for the life of the process.
//! - The handler only does what is async-signal-safe: it writes the signal number to a
//!   non-blocking pipe (a full pipe drops the byte: deliveries already queued stand for it). A
//!   dispatcher thread (`spindle-signal`, started with the first handler) reads the pipe, bumps
//!   the signal's delivery count and wakes its listeners. It needs no runtime, so signals work
//!   from any executor.
//! - A [`Signal`] sees the deliveries made after it was created; several deliveries before it
//!   looks are seen as one (as in tokio: signals coalesce). It holds at most one entry in the
//!   listener list (`driver::waiters`: a new wait refreshes it), left when it is dropped.
//!
//! ```no_run
//! # spindle::block_on(async {
//! // Serve until Ctrl-C, then shut down in order.
//! spindle::signal::ctrl_c().await.unwrap();
//! println!("shutting down");
//! # });
//! ```

use spindle_core::loom::unmodelled::{AtomicU64, Ordering::*};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};

use crate::driver::waiters::{WaitKey, WaitList};

/// Signal numbers a listener can be installed for (Linux's are below 65).
const MAX_SIGNAL: usize = 65;

/// A kind of signal: the common ones by name, any other by number
/// ([`from_raw`](SignalKind::from_raw)).
///
/// ```
/// use spindle::signal::SignalKind;
/// assert_eq!(SignalKind::interrupt().as_raw_value(), libc::SIGINT);
/// assert_eq!(SignalKind::from_raw(libc::SIGUSR2), SignalKind::user_defined2());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(libc::c_int);

impl SignalKind {
    /// A signal by number.
    pub const fn from_raw(signum: libc::c_int) -> SignalKind {
        SignalKind(signum)
    }
    /// The signal's number.
    pub const fn as_raw_value(self) -> libc::c_int {
        self.0
    }
    /// `SIGINT`: Ctrl-C at a terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }
    /// `SIGTERM`: a polite request to stop (what `kill` and service managers send).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }
    /// `SIGHUP`: the terminal went away; daemons often take it as "reload".
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }
    /// `SIGQUIT`.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }
    /// `SIGUSR1`.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }
    /// `SIGUSR2`.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }
    /// `SIGCHLD`: a child process changed state.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }
    /// `SIGWINCH`: the terminal was resized.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
    /// `SIGALRM`.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }
    /// `SIGPIPE`.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }
}

/// A signal's deliveries and the tasks waiting for the next one.
struct Slot {
    /// Whether the handler is installed (the first request installs it; a failure is reported
    /// to that request and the next one tries again).
    installed: Mutex<bool>,
    deliveries: AtomicU64,
    listeners: WaitList,
}

struct Globals {
    slots: Box<[Slot]>,
    /// The pipe's write end, for the handlers (a raw fd: they may only make a syscall with it).
    pipe_write: libc::c_int,
}

/// The process-wide state, with the dispatcher thread started (or why it could not be).
fn globals() -> io::Result<&'static Globals> {
    static GLOBALS: OnceLock<Result<Globals, (io::ErrorKind, String)>> = OnceLock::new();
    GLOBALS
        .get_or_init(|| start().map_err(|e| (e.kind(), format!("spindle::signal: cannot start signal delivery: {e}"))))
        .as_ref()
        .map_err(|(kind, msg)| io::Error::new(*kind, msg.clone()))
}

fn start() -> io::Result<Globals> {
    let (read, write) = crate::net::unix::pipe::os_pipe()?;
    // The dispatcher blocks in `read`: its end must block.
    crate::net::unix::pipe::set_nonblocking(read.as_raw_fd(), false, "making the signal pipe's read end blocking")?;
    let slots = (0..MAX_SIGNAL)
        .map(|_| Slot { installed: Mutex::new(false), deliveries: AtomicU64::new(0), listeners: WaitList::default() })
        .collect();
    std::thread::Builder::new().name("spindle-signal".into()).spawn(move || dispatch(read))?;
    // The write end lives as long as the process (the handlers may write to it at any time).
    let pipe_write = write.as_raw_fd();
    std::mem::forget(write);
    Ok(Globals { slots, pipe_write })
}

/// The dispatcher thread: turns the signal numbers the handlers wrote into deliveries.
fn dispatch(read: OwnedFd) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; the fd is ours.
        let n = unsafe { libc::read(read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return; // Cannot happen while the write end is open (it never closes).
        }
        let Ok(g) = globals() else { return };
        for &signum in &buf[..n as usize] {
            if let Some(slot) = g.slots.get(usize::from(signum)) {
                slot.deliveries.fetch_add(1, AcqRel);
                slot.listeners.wake_all();
            }
        }
    }
}

/// Installs the handler for `kind` if it is not yet, and returns its slot.
fn slot(kind: SignalKind) -> io::Result<&'static Slot> {
    let signum = kind.0;
    let forbidden = signal_hook_registry::FORBIDDEN.contains(&signum);
    if signum <= 0 || signum as usize >= MAX_SIGNAL || forbidden {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "spindle::signal: cannot listen for signal {signum}: {}",
                if forbidden { "its default action cannot be replaced" } else { "no such signal" }
            ),
        ));
    }
    let g = globals()?;
    let slot = &g.slots[signum as usize];
    let mut installed = slot.installed.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        let fd = g.pipe_write;
        let byte = signum as u8;
        // SAFETY: the action only calls `write(2)`, which is async-signal-safe, on an fd that is
        // never closed, and does not panic or allocate. `errno` is saved and restored around it,
        // as a handler must.
        let r = unsafe {
            signal_hook_registry::register(signum, move || {
                let errno = *libc::__errno_location();
                let _ = libc::write(fd, (&byte as *const u8).cast(), 1);
                *libc::__errno_location() = errno;
            })
        };
        r.map_err(|e| {
            io::Error::new(e.kind(), format!("spindle::signal: cannot install a handler for signal {signum}: {e}"))
        })?;
        *installed = true;
    }
    Ok(slot)
}

/// Listens for `kind`: the returned [`Signal`] sees every delivery from now on (coalesced: a
/// burst before a `recv` is one). The first listener for a signal replaces its default action
/// for the rest of the process (see the [module docs](self)).
///
/// ```
/// use spindle::signal::{signal, SignalKind};
///
/// spindle::block_on(async {
///     let mut usr1 = signal(SignalKind::user_defined1()).unwrap();
///     // SAFETY: `raise` just sends a signal to this thread.
///     unsafe { libc::raise(libc::SIGUSR1) };
///     assert_eq!(usr1.recv().await, Some(()));
///
///     // SIGKILL cannot be caught: a clear error, not a panic.
///     let err = signal(SignalKind::from_raw(libc::SIGKILL)).unwrap_err();
///     assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// });
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let slot = slot(kind)?;
    Ok(Signal { slot, seen: slot.deliveries.load(Acquire), wait: WaitKey::default() })
}

/// Completes at the next `SIGINT` (Ctrl-C) delivered after its first poll, which installs the
/// handler (from then on Ctrl-C no longer ends the process; see the [module docs](self)).
///
/// ```no_run
/// # spindle::block_on(async {
/// spindle::signal::ctrl_c().await.expect("cannot listen for Ctrl-C");
/// # });
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    let mut s = signal(SignalKind::interrupt())?;
    s.recv().await;
    Ok(())
}

/// A listener for one kind of signal (see [`signal`]).
pub struct Signal {
    slot: &'static Slot,
    /// Deliveries seen so far.
    seen: u64,
    wait: WaitKey,
}

impl std::fmt::Debug for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signal").field("seen", &self.seen).finish()
    }
}

impl Signal {
    /// Waits for the next delivery (after the last one this listener saw). Always `Some(())`:
    /// the handler is never removed (the `Option` is tokio's signature). Cancel-safe: a delivery
    /// is not consumed by a `recv` dropped before it completes.
    pub async fn recv(&mut self) -> Option<()> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery (see [`recv`](Self::recv)); a `Pending` registers `cx`'s
    /// waker, which stays registered until a delivery or the listener is dropped.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let now = self.slot.deliveries.load(Acquire);
        if now != self.seen {
            self.seen = now;
            return Poll::Ready(Some(()));
        }
        self.slot.listeners.join(&mut self.wait, cx.waker());
        // A delivery between the look and the join woke a list without us: look again.
        let now = self.slot.deliveries.load(Acquire);
        if now != self.seen {
            self.seen = now;
            return Poll::Ready(Some(()));
        }
        Poll::Pending
    }
}

impl Drop for Signal {
    fn drop(&mut self) {
        self.slot.listeners.leave(&mut self.wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listeners that wait and give up leave no waker in the signal's list (each would keep its
    /// task's allocation alive until the next delivery).
    #[test]
    fn abandoned_listeners_leave_the_list() {
        let rt = crate::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        rt.block_on(async {
            for _ in 0..100 {
                crate::spawn(async {
                    let mut s = signal(SignalKind::user_defined2()).unwrap();
                    let r = crate::time::timeout(std::time::Duration::from_micros(100), s.recv()).await;
                    assert!(r.is_err(), "nothing was sent");
                })
                .await
                .unwrap();
            }
        });
        assert_eq!(slot(SignalKind::user_defined2()).unwrap().listeners.len(), 0);
    }
}
