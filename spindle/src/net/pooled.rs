//! Pooled receives (`recv_pooled`, `recv_stream`) and multishot accept: the per-socket state
//! behind them.
//!
//! # Backends
//!
//! - **io_uring with a provided-buffer ring** (the reactor's [`BufPool`]): a receive is a `RECV`
//!   with `IOSQE_BUFFER_SELECT` (`recv_pooled`) or one multishot `RECV` (`recv_stream`); the
//!   kernel picks a pool buffer when data arrives. `TcpListener::accept` keeps one multishot
//!   `ACCEPT` per listener. These are the driver's *sink ops* (`driver::uring::sink`): every
//!   completion goes to this socket's queue, whoever waits. They are submitted to the ring of
//!   the thread that polls first if it runs for the socket's runtime, else to the socket's home
//!   ring (`Registration::home_reactor`): never to another runtime's ring, which is not driven
//!   once that runtime is idle. The choice lasts as long as the socket. Two costs of it:
//!   - a socket whose first pooled receive comes from another runtime's thread before its home
//!     ring's buffer pool exists (only the ring's own thread may register it) keeps using
//!     readiness and a userspace pool: correct, but a `recv` syscall per receive;
//!   - a socket made outside any runtime keeps these requests on the fallback ring (a worker's
//!     ring would be shut down with its runtime while the socket lives on), so each completion
//!     crosses from the `spindle-io` thread to the task's: pooled ping-pong between two such
//!     sockets on a multi-thread runtime measured 39-43 us per round trip, against 14 us for
//!     sockets made in the runtime. Make sockets inside the runtime that uses them.
//! - **epoll** (or io_uring where the kernel has no buffer rings): readiness, then `recv` into a
//!   buffer taken from this thread's userspace pool; the buffer goes straight back when nothing
//!   came. Accept is the readiness accept of `net::tcp`.
//!
//! # Nothing is lost on cancellation
//!
//! On io_uring the kernel may fill a buffer for a receive whose future is gone. Design: **a
//! per-socket queue of completed-but-unclaimed results** (`St::queue`). Completions are pushed
//! there by the reactor (never to a particular future), and every pooled receive first takes
//! from the queue, in order. Consequences:
//!
//! - Dropping a `recv_pooled` future does not cancel its `RECV`: the request stays armed and what
//!   it receives waits in the queue for the next `recv_pooled` / `recv_stream` on the socket (at
//!   most one buffer: one request per socket).
//! - Dropping a `RecvStream` cancels its multishot `RECV`; buffers it had queued, and any the
//!   kernel still fills before the cancel lands, stay queued (they are not returned to the pool:
//!   that would drop data) and the next pooled receive gets them first, so the byte stream
//!   continues exactly where the dropped stream stopped.
//! - Dropping an `accept` future loses no connection: accepted fds wait in the listener's queue
//!   for the next `accept`, and are closed when the listener is dropped. The multishot accept is
//!   paused (cancelled) while [`ACCEPT_QUEUE_MAX`] connections wait unclaimed, so connections
//!   nobody accepts stay in the kernel's backlog instead of using up fds.
//! - An armed multishot accept allocates fds under the `RLIMIT_NOFILE` in force when it was
//!   armed (io_uring reads the limit when it prepares the request); a lowered limit applies
//!   from the next re-arm (after an error, a pause, or the listener's next first use).
//! - Dropping the socket cancels its request; queued buffers go back to the pool, queued
//!   connections are closed, and completions that arrive later are released the same way.
//!
//! On the readiness path the `recv` happens inside the poll that returns its result, so there is
//! nothing to lose. Mixing pooled receives with slice or owned reads on one socket is allowed,
//! but bytes queued for pooled receives (or taken by a still-armed `RECV`) are only returned by
//! pooled receives: finish with one style before switching. The other way round is covered:
//! bytes an owned read dropped in flight took (the socket's stash, `net::stash`) are returned by
//! the next receive of any style, pooled ones included (copied into a buffer of the thread's
//! userspace pool, see `poll_stashed`), before anything the socket still holds.
//!
//! # The fd the kernel uses
//!
//! Requests name a `dup` of the socket's fd made on first use (one per socket that uses these
//! operations on io_uring), owned by the requests' slab slots until their final completions. A
//! request pushed but not yet submitted when the socket is closed therefore never sees a closed
//! (or reused) fd number. When the socket is dropped on a thread that can submit at once, the
//! cancel goes to the kernel right away and the duplicate is closed then (submitted requests hold
//! their own file references); otherwise it is closed with the request's final completion.
//!
//! # Buffer exhaustion
//!
//! When every pool buffer is held, the receive that finds the pool empty (on io_uring: whose
//! `RECV` completes with `-ENOBUFS`, which also ends a multishot `RECV`) returns
//! `ErrorKind::OutOfMemory` (ENOBUFS) once; the next receive on that socket waits until a buffer
//! comes back, then re-arms. Queued buffers are delivered before the error.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types};
use socket2::{SockAddr, Socket};

use super::socket::{PollSocket, SharedWait};
use super::stash::{Fill, Mode};
use crate::driver::pool::{self, BufPool, PooledBuf, POOL_BUF_SIZE};
use crate::driver::uring::bufring::BGID;
use crate::driver::uring::sink::CqeSink;
use crate::driver::waiters::{WaitKey, WaitList};
use crate::driver::{Direction, Reactor};

/// Accepted connections a listener queues before it pauses its multishot accept.
pub(crate) const ACCEPT_QUEUE_MAX: usize = 64;

/// Back-off after an accept failed for lack of resources (as the readiness accept in `tcp`).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The pooled-I/O state of one socket, created on first use (a field of `PollSocket`).
#[derive(Default)]
pub(crate) struct PerSocket(OnceLock<Arc<Shared>>);

/// What the socket's pooled operations share with the sink ops in flight (which hold it weakly).
struct Shared {
    /// The pool receives use (`None` for a listener).
    pool: Option<Arc<BufPool>>,
    /// Present when requests go to an io_uring; absent on the readiness path.
    uring: Option<UringSide>,
    st: Mutex<St>,
    /// Callers waiting for the next result (io_uring). Joined under `st`'s lock and woken after
    /// a completion released it, so a result queued after a caller looked wakes it.
    items: WaitList,
}

struct UringSide {
    reactor: Arc<Reactor>,
    /// The socket's duplicate fd (see the module docs), shared with the requests' slots.
    fd: Arc<DupFd>,
    /// Its number, for SQEs (valid while the socket lives).
    raw: RawFd,
}

/// A duplicate fd that the socket can close early (once its requests are in the kernel).
struct DupFd(Mutex<Option<OwnedFd>>);

#[derive(Default)]
struct St {
    /// Completed, unclaimed results, in order.
    queue: VecDeque<Item>,
    /// The request in flight: its key and kind.
    op: Option<(u64, Kind)>,
    /// A cancel of `op` was requested (queue full, or the stream was dropped).
    cancelling: bool,
    /// The last request ended with ENOBUFS; re-arm only once a buffer is free.
    enobufs: bool,
    /// That ENOBUFS was reported to a caller already.
    enobufs_reported: bool,
    /// The socket is gone: completions are released at once.
    closed: bool,
    /// Accept back-off after resource exhaustion.
    backoff_until: Option<crate::time::Instant>,
    backoff_delay: Duration,
}

enum Item {
    Data(PooledBuf),
    Eof,
    Err(io::Error),
    Conn(OwnedFd),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Recv,
    RecvMulti,
    AcceptMulti,
}

/// The sink of one request: decodes its CQEs into the socket's queue.
struct OpSink {
    shared: Weak<Shared>,
    kind: Kind,
    pool: Option<Arc<BufPool>>,
}

enum Outcome {
    Item(Item),
    NoBufs,
    Nothing,
}

fn errno_item(res: i32) -> Outcome {
    match -res {
        libc::ECANCELED => Outcome::Nothing,
        libc::ENOBUFS => Outcome::NoBufs,
        e => Outcome::Item(Item::Err(io::Error::from_raw_os_error(e))),
    }
}

impl CqeSink for OpSink {
    fn complete(&self, key: u64, res: i32, flags: u32) {
        let more = cqueue::more(flags);
        // Decode first: a buffer or fd the CQE carries must be owned (and so released) even if
        // the socket is gone.
        let outcome = match self.kind {
            Kind::AcceptMulti if res >= 0 => {
                // SAFETY: the kernel installed a new fd for us; nothing else knows of it.
                Outcome::Item(Item::Conn(unsafe { OwnedFd::from_raw_fd(res) }))
            }
            Kind::AcceptMulti => errno_item(res),
            Kind::Recv | Kind::RecvMulti => {
                let buf = match (cqueue::buffer_select(flags), &self.pool) {
                    (Some(bid), Some(pool)) => Some(pool.from_kernel(bid, res.max(0) as usize)),
                    _ => None,
                };
                match buf {
                    Some(Err(e)) => Outcome::Item(Item::Err(e)),
                    Some(Ok(b)) if res > 0 => Outcome::Item(Item::Data(b)),
                    // End of stream (a buffer picked for it goes back when `_b` drops).
                    Some(Ok(_b)) => Outcome::Item(Item::Eof),
                    None if res == 0 => Outcome::Item(Item::Eof),
                    None if res > 0 => Outcome::Item(Item::Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "spindle: a buffer-select receive completed without a buffer",
                    ))),
                    None => errno_item(res),
                }
            }
        };
        let Some(shared) = self.shared.upgrade() else { return };
        let mut release = None;
        let mut cancel = false;
        {
            let mut st = lock(&shared.st);
            if !more && st.op.map(|(k, _)| k) == Some(key) {
                st.op = None;
                st.cancelling = false;
            }
            match outcome {
                Outcome::Item(it) if st.closed => release = Some(it),
                Outcome::Item(it) => st.queue.push_back(it),
                Outcome::NoBufs => st.enobufs = true,
                Outcome::Nothing => {}
            }
            if self.kind == Kind::AcceptMulti
                && more
                && !st.cancelling
                && st.op.is_some()
                && st.queue.len() >= ACCEPT_QUEUE_MAX
            {
                st.cancelling = true;
                cancel = true;
            }
        }
        if cancel {
            if let Some(u) = &shared.uring {
                u.uring().cancel_sink(key);
            }
        }
        drop(release);
        shared.items.wake_all();
    }
}

impl UringSide {
    fn uring(&self) -> &crate::driver::uring::Reactor {
        self.reactor.as_uring().expect("an io_uring reactor")
    }
}

fn dup_cloexec(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an fd we borrow creates a new fd; the result is checked and
    // owned at once.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd that only we know of.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

impl PerSocket {
    /// The socket's state, created on first use. `listener` selects what it needs (no pool).
    fn get(&self, sock: &PollSocket, listener: bool) -> io::Result<&Arc<Shared>> {
        if let Some(s) = self.0.get() {
            return Ok(s);
        }
        let shared = Shared::new(sock, listener)?;
        // Two first uses racing: one state wins, the other is dropped (nothing in flight yet).
        let _ = self.0.set(Arc::new(shared));
        Ok(self.0.get().expect("set above"))
    }
}

impl Shared {
    fn new(sock: &PollSocket, listener: bool) -> io::Result<Shared> {
        let mut pool = None;
        let mut uring = None;
        // On a thread of the socket's own runtime (`rt::may_submit_here`), this thread's ring: a
        // task follows the ring its completions come from, and only a ring's own thread can
        // register its buffer pool. Elsewhere the socket's home ring (see
        // `Registration::home_reactor`), not this thread's, which may go undriven (or be shut
        // down with its runtime) while the socket is still used: this choice lasts as long as
        // the socket. For the same reason a socket made outside any runtime keeps these requests
        // on the fallback ring, even where its single ops may use a worker's. On an epoll
        // runtime: readiness.
        let home = sock.home_reactor();
        let reactor = if home.as_uring().is_none() {
            None
        } else if home.owner() != 0 && crate::rt::may_submit_here(&home) {
            crate::driver::uring_reactor()
        } else {
            Some(home)
        };
        if let Some(reactor) = reactor {
            let ring_pool = if listener { None } else { reactor.as_uring().and_then(|r| r.buf_pool()) };
            if listener || ring_pool.is_some() {
                let fd = dup_cloexec(sock.fd())
                    .map_err(|e| io::Error::new(e.kind(), format!("spindle: cannot duplicate a socket fd: {e}")))?;
                let raw = fd.as_raw_fd();
                pool = ring_pool;
                uring = Some(UringSide { reactor, fd: Arc::new(DupFd(Mutex::new(Some(fd)))), raw });
            }
        }
        if uring.is_none() && !listener {
            pool = Some(pool::local_pool()?);
        }
        Ok(Shared { pool, uring, st: Mutex::new(St::default()), items: WaitList::default() })
    }

    /// Submits a request of `kind` (caller holds `st` and records the key).
    fn arm(self: &Arc<Self>, u: &UringSide, kind: Kind) -> u64 {
        let fd = types::Fd(u.raw);
        let sqe = match kind {
            Kind::Recv => opcode::Recv::new(fd, std::ptr::null_mut(), POOL_BUF_SIZE as u32)
                .buf_group(BGID)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT),
            Kind::RecvMulti => opcode::RecvMulti::new(fd, BGID).build(),
            Kind::AcceptMulti => opcode::AcceptMulti::new(fd).flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC).build(),
        };
        // The slot keeps the duplicate fd open and the pool's memory mapped until the final CQE.
        let data: Box<dyn Any + Send> = Box::new((u.fd.clone(), self.pool.clone()));
        let sink = Arc::new(OpSink { shared: Arc::downgrade(self), kind, pool: self.pool.clone() });
        // SAFETY: the SQE points at no memory (the kernel picks buffers from the pool, whose
        // mapping `data` keeps alive until the final CQE; accept has no address out-pointer); its
        // fd is the duplicate that `data` keeps open until the final CQE — or that the socket
        // closes only after every pushed entry is in the kernel (`PerSocket::drop`).
        unsafe { u.uring().submit_sink(data, sqe, sink) }
    }

    /// The next result for a caller of `kind` on io_uring: from the queue, else arming a request
    /// when none is in flight.
    fn poll_item(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        kind: Kind,
        item: &mut WaitKey,
        buffer: &mut BufferWait,
    ) -> Poll<Item> {
        let u = self.uring.as_ref().expect("io_uring path");
        let mut st = lock(&self.st);
        if let Some(it) = st.queue.pop_front() {
            return Poll::Ready(it);
        }
        if u.reactor.is_shut_down() {
            // Nothing dispatches this reactor's completions any more.
            return Poll::Ready(Item::Err(crate::driver::shut_down_error()));
        }
        if st.op.is_none() {
            if st.enobufs {
                if let Some(pool) = &self.pool {
                    if pool.available() == 0 {
                        if !st.enobufs_reported {
                            st.enobufs_reported = true;
                            return Poll::Ready(Item::Err(pool.exhausted_error()));
                        }
                        if buffer.poll(pool, cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                }
                st.enobufs = false;
                st.enobufs_reported = false;
            }
            let key = self.arm(u, kind);
            st.op = Some((key, kind));
        }
        // Under `st`'s lock: a completion queues its result under it and wakes after.
        self.items.join(item, cx.waker());
        Poll::Pending
    }

    /// A `RecvStream` goes away: cancel its multishot receive (what it still delivers is queued).
    fn stop_stream(&self) {
        let Some(u) = &self.uring else { return };
        let key = {
            let mut st = lock(&self.st);
            match st.op {
                Some((key, Kind::RecvMulti)) if !st.cancelling => {
                    st.cancelling = true;
                    key
                }
                _ => return,
            }
        };
        u.uring().cancel_sink(key);
    }
}

impl Drop for PerSocket {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else { return };
        let (queue, op) = {
            let mut st = lock(&shared.st);
            st.closed = true;
            (std::mem::take(&mut st.queue), st.op)
        };
        // Queued buffers go back to the pool, queued connections are closed.
        drop(queue);
        if let Some(u) = &shared.uring {
            if let Some((key, _)) = op {
                u.uring().cancel_sink(key);
            }
            // Every entry naming the duplicate is in the kernel (which holds its own file
            // reference): close it now, so the socket is really closed promptly.
            if u.uring().flush_now() {
                drop(lock(&u.fd.0).take());
            }
        }
    }
}

impl Item {
    fn into_recv(self) -> io::Result<PooledBuf> {
        match self {
            Item::Data(b) => Ok(b),
            Item::Eof => Ok(PooledBuf::empty()),
            Item::Err(e) => Err(e),
            Item::Conn(_) => Err(io::Error::new(io::ErrorKind::InvalidInput, "spindle: recv on a listening socket")),
        }
    }
}

/// The readiness path: `recv` into a buffer of the pool (given back at once if nothing came).
fn poll_recv_ready(
    sock: &PollSocket,
    shared: &Shared,
    cx: &mut Context<'_>,
    wait: &mut PooledWait<'_>,
) -> Poll<io::Result<PooledBuf>> {
    let pool = shared.pool.as_ref().expect("a receiving socket has a pool");
    {
        let mut st = lock(&shared.st);
        if let Some(it) = st.queue.pop_front() {
            return Poll::Ready(it.into_recv());
        }
        if pool.available() == 0 {
            if !st.enobufs_reported {
                st.enobufs_reported = true;
                return Poll::Ready(Err(pool.exhausted_error()));
            }
            if wait.buffer.poll(pool, cx).is_pending() {
                return Poll::Pending;
            }
        }
        st.enobufs_reported = false;
    }
    let r = sock.poll_io_shared(cx, Direction::Read, &mut wait.ready, || {
        // Another receiver may have taken the last buffer since the check above.
        let mut b = pool.try_take().ok_or_else(|| io::Error::from_raw_os_error(libc::ENOBUFS))?;
        let n = sock.socket().recv(b.spare_mut())?;
        // SAFETY: the kernel initialized the first `n <= POOL_BUF_SIZE` bytes.
        unsafe { b.set_len(n) };
        Ok(b)
    });
    match r {
        Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
            // Lost a race for the last buffer: wait for one to come back, then retry.
            match wait.buffer.poll(pool, cx) {
                Poll::Ready(()) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        }
        Poll::Ready(Ok(b)) if b.is_empty() => Poll::Ready(Ok(PooledBuf::empty())),
        r => r,
    }
}

/// Bytes that owned reads dropped in flight took (the socket's stash, `net::stash`), copied into
/// a buffer of this thread's userspace pool: `Ready(None)` when nothing is stashed, `Pending`
/// while an orphaned read is in flight (or no buffer is free).
///
/// Copied, not queued with the pooled results: a `PooledBuf` is a pool buffer, and on io_uring
/// the receive pool's buffers are the kernel's to pick (none can be taken to copy into). The
/// userspace pool is a pool like any other to the caller (the buffer goes back to it on drop, from
/// any thread), and stashed bytes are rare (only a cancelled owned read leaves any), so one copy
/// keeps the pooled path's queue and its sink ops unaware of the stash.
fn poll_stashed(sock: &PollSocket, cx: &mut Context<'_>, wait: &mut BufferWait) -> Poll<Option<io::Result<PooledBuf>>> {
    // Wait for orphaned reads and see whether anything is stashed before taking a buffer.
    let mut probe = Fill::new(&mut []);
    if std::task::ready!(sock.poll_stashed(cx, &mut probe, Mode::Peek)).is_none() {
        return Poll::Ready(None);
    }
    let pool = match pool::local_pool() {
        Ok(p) => p,
        Err(e) => return Poll::Ready(Some(Err(e))),
    };
    let Some(mut b) = pool.try_take() else {
        // Every buffer of this thread's pool is held: wait for one (then look again).
        if wait.poll(&pool, cx).is_ready() {
            cx.waker().wake_by_ref();
        }
        return Poll::Pending;
    };
    match std::task::ready!(sock.poll_stashed(cx, &mut Fill::new(b.spare_mut()), Mode::Take)) {
        // Taken meanwhile by another pooled receive on the socket: go on to the socket.
        None => Poll::Ready(None),
        // End of stream (the buffer goes back at once).
        Some(Ok(0)) => Poll::Ready(Some(Ok(PooledBuf::empty()))),
        Some(Ok(n)) => {
            // SAFETY: the stash initialized the first `n <= POOL_BUF_SIZE` bytes.
            unsafe { b.set_len(n) };
            Poll::Ready(Some(Ok(b)))
        }
        Some(Err(e)) => Poll::Ready(Some(Err(e))),
    }
}

/// A pooled receive (`wait`: the calling future's places among the lists it may wait in).
fn poll_recv(
    sock: &PollSocket,
    cx: &mut Context<'_>,
    kind: Kind,
    wait: &mut PooledWait<'_>,
) -> Poll<io::Result<PooledBuf>> {
    if sock.stash.is_busy() {
        if let Some(r) = std::task::ready!(poll_stashed(sock, cx, &mut wait.buffer)) {
            return Poll::Ready(r);
        }
    }
    let shared = match sock.pooled.get(sock, false) {
        Ok(s) => s,
        Err(e) => return Poll::Ready(Err(e)),
    };
    if shared.uring.is_some() {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        shared.poll_item(cx, kind, &mut wait.item, &mut wait.buffer).map(Item::into_recv)
    } else {
        poll_recv_ready(sock, shared, cx, wait)
    }
}

/// `recv_pooled` for a stream socket (see `TcpStream::recv_pooled`).
pub(crate) async fn recv_pooled(sock: &PollSocket) -> io::Result<PooledBuf> {
    let mut waiting = PooledWait::new(sock);
    poll_fn(|cx| poll_recv(sock, cx, Kind::Recv, &mut waiting)).await
}

/// A pooled receive's places in the lists it may wait in, left when its future is dropped (so a
/// receive given up leaves no waker behind: `driver::waiters`): the socket's readiness waiters
/// (epoll), its pooled results (io_uring), and a buffer pool's free-buffer waiters.
struct PooledWait<'a> {
    sock: &'a PollSocket,
    ready: SharedWait,
    item: WaitKey,
    buffer: BufferWait,
}

impl<'a> PooledWait<'a> {
    fn new(sock: &'a PollSocket) -> PooledWait<'a> {
        PooledWait { sock, ready: SharedWait::default(), item: WaitKey::default(), buffer: BufferWait::default() }
    }
}

impl Drop for PooledWait<'_> {
    fn drop(&mut self) {
        self.sock.leave_shared(Direction::Read, &mut self.ready);
        if let Some(shared) = self.sock.pooled.0.get() {
            shared.items.leave(&mut self.item);
        }
    }
}

/// A caller's place among a pool's waiters for a free buffer, left on drop.
#[derive(Default)]
struct BufferWait(Option<(Arc<BufPool>, WaitKey)>);

impl BufferWait {
    /// Ready once `pool` has a free buffer (see `BufPool::poll_available`).
    fn poll(&mut self, pool: &Arc<BufPool>, cx: &mut Context<'_>) -> Poll<()> {
        if !matches!(&self.0, Some((p, _)) if Arc::ptr_eq(p, pool)) {
            self.leave();
            self.0 = Some((pool.clone(), WaitKey::default()));
        }
        let (p, key) = self.0.as_mut().expect("set above");
        p.poll_available(cx, key)
    }

    fn leave(&mut self) {
        if let Some((p, mut key)) = self.0.take() {
            p.leave_wait(&mut key);
        }
    }
}

impl Drop for BufferWait {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A stream of received buffers from [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream)
/// or [`UnixStream::recv_stream`](crate::net::UnixStream::recv_stream): one multishot receive on
/// io_uring, readiness and `recv` on epoll.
///
/// Yields `Ok(buf)` for each chunk received, in order, and ends (`None`) at end of stream or
/// after yielding an error — except the pool-exhaustion error (`ErrorKind::OutOfMemory`), after
/// which it goes on once buffers come back. Dropping it cancels the multishot receive; data
/// already received but not yielded is kept for the socket's next pooled receive.
///
/// ```
/// use futures::{AsyncWriteExt, StreamExt};
/// use spindle::net::{TcpListener, TcpStream};
/// spindle::block_on(async {
///     let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
///     let (s, _) = l.accept().await.unwrap();
///     c.write_all(b"one stream").await.unwrap();
///     drop(c); // end of stream
///     let mut got = Vec::new();
///     let mut bufs = s.recv_stream();
///     while let Some(buf) = bufs.next().await {
///         got.extend_from_slice(&buf.unwrap());
///     }
///     assert_eq!(got, b"one stream");
/// });
/// ```
pub struct RecvStream<'a> {
    sock: &'a PollSocket,
    done: bool,
    /// Its places among the lists it may wait in (left when it is dropped).
    wait: PooledWait<'a>,
}

impl fmt::Debug for RecvStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvStream").field("fd", &self.sock.fd()).field("done", &self.done).finish()
    }
}

impl<'a> RecvStream<'a> {
    pub(crate) fn new(sock: &'a PollSocket) -> RecvStream<'a> {
        RecvStream { sock, done: false, wait: PooledWait::new(sock) }
    }
}

impl futures_core::Stream for RecvStream<'_> {
    type Item = io::Result<PooledBuf>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<PooledBuf>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match poll_recv(this.sock, cx, Kind::RecvMulti, &mut this.wait) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(b)) if b.is_empty() => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(b)) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Err(e)) => {
                if e.kind() != io::ErrorKind::OutOfMemory {
                    this.done = true;
                }
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

impl futures_core::FusedStream for RecvStream<'_> {
    fn is_terminated(&self) -> bool {
        self.done
    }
}

impl Drop for RecvStream<'_> {
    fn drop(&mut self) {
        // (`wait` leaves its lists after this.)
        if let Some(s) = self.sock.pooled.0.get() {
            s.stop_stream();
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// `accept` for a listener: the multishot accept on io_uring, else `None` (the caller uses its
/// readiness accept). Also `None` when the listener's state cannot be created now (no fd for its
/// duplicate under EMFILE: the readiness accept reports and backs off instead).
pub(crate) async fn accept_multishot(sock: &PollSocket) -> Option<io::Result<(Socket, SockAddr)>> {
    let shared = match sock.pooled.get(sock, true) {
        Ok(s) if s.uring.is_some() => s.clone(),
        _ => return None,
    };
    let until = lock(&shared.st).backoff_until;
    if let Some(until) = until {
        crate::time::sleep_until(until).await;
    }
    let mut waiting = AcceptWait { shared: &shared, item: WaitKey::default() };
    loop {
        let item = poll_fn(|cx| {
            if spindle_core::coop::poll_proceed(cx).is_pending() {
                return Poll::Pending;
            }
            // A listener has no buffer pool: nothing ever waits for a buffer here.
            shared.poll_item(cx, Kind::AcceptMulti, &mut waiting.item, &mut BufferWait::default())
        })
        .await;
        match item {
            Item::Conn(fd) => {
                let sock = Socket::from(fd);
                match sock.peer_addr() {
                    Ok(addr) => {
                        let mut st = lock(&shared.st);
                        st.backoff_until = None;
                        st.backoff_delay = Duration::ZERO;
                        return Some(Ok((sock, addr)));
                    }
                    // Reset before we asked: skipped, as an aborted connection.
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => continue,
                    Err(e) => return Some(Err(io::Error::new(e.kind(), format!("accept: getpeername: {e}")))),
                }
            }
            Item::Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
            Item::Err(e) if is_resource_exhaustion(&e) => {
                let mut st = lock(&shared.st);
                let delay = (st.backoff_delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                st.backoff_delay = delay;
                st.backoff_until = Some(crate::time::Instant::now() + delay);
                return Some(Err(io::Error::new(
                    e.kind(),
                    format!("accept: {e}; this listener waits {delay:?} before the next accept"),
                )));
            }
            Item::Err(e) => return Some(Err(io::Error::new(e.kind(), format!("accept: {e}")))),
            Item::Data(_) | Item::Eof => {
                return Some(Err(io::Error::new(io::ErrorKind::InvalidInput, "spindle: accept on a stream socket")))
            }
        }
    }
}

/// A multishot accept's place among its listener's waiters for connections, left on drop.
struct AcceptWait<'a> {
    shared: &'a Shared,
    item: WaitKey,
}

impl Drop for AcceptWait<'_> {
    fn drop(&mut self) {
        self.shared.items.leave(&mut self.item);
    }
}

/// Callers waiting for the socket's next pooled result, and for a buffer of its pool (tests).
#[cfg(test)]
pub(crate) fn waiting(sock: &PollSocket) -> (usize, usize) {
    sock.pooled.0.get().map_or((0, 0), |s| (s.items.len(), s.pool.as_ref().map_or(0, |p| p.waiters_len())))
}

/// The counters of the pool a socket's pooled receives use (`None` before the first one).
pub(crate) fn pool_stats(sock: &PollSocket) -> Option<pool::PoolStats> {
    sock.pooled.0.get().and_then(|s| s.pool.as_ref()).map(|p| p.stats())
}
