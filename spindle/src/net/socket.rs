//! [`PollSocket`]: a non-blocking socket registered with a reactor, and the raw operations every
//! socket type is built from.
//!
//! Every read first drains the socket's [`Stash`]: what owned reads dropped in flight on
//! io_uring took (see `net::stash`), so a cancelled read never loses data.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll, Wake, Waker};

use socket2::{SockAddr, Socket};
use spindle_core::loom::{AtomicBool, Ordering};

use super::stash::{self, Dest, Fill, FillVectored, Mode, Stash};
use crate::driver::uring::files::FileInstall;
use crate::driver::uring::op::{self, KeepAlive};
use crate::driver::{placement, Direction, Reactor, Registration};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// A non-blocking socket and its reactor registration.
///
/// Field order matters: the registered-file slot is released and the registration dropped (the
/// fd leaves the epoll set) before the socket is closed, so the reactor never sees a closed (or
/// reused) fd number.
pub(crate) struct PollSocket {
    /// io_uring: how completion ops name this socket (see [`op_fd`](Self::op_fd)), decided by the
    /// first one.
    fixed: OnceLock<FixedFile>,
    reg: Registration,
    /// Waiters of `&self` methods that several tasks may call at once (one fan-out per
    /// direction); the registration keeps one waker per direction, which is this fan-out's. Made
    /// on first use: stream sockets never need them (their methods take `&mut self`), and made
    /// eagerly they were 128 of the heap bytes of every idle connection. Both directions' are
    /// made together, behind one pointer: a lazy field per direction was 16 bytes more in every
    /// socket, which moved it up an allocation size class.
    shared: OnceLock<Box<[Arc<FanOut>; 2]>>,
    /// Per direction: readiness has been observed (or a syscall said `WouldBlock`) since the
    /// registration. Until then the first operation tries its syscall eagerly instead of waiting
    /// for the reactor's first event (a fresh socket is usually writable at once).
    primed: [AtomicBool; 2],
    /// io_uring: the last `recv` op left the socket's receive queue empty (its completion lacked
    /// `IORING_CQE_F_SOCK_NONEMPTY`), so the next one most likely has to wait for data: submit it
    /// with `IORING_RECVSEND_POLL_FIRST`, which arms the wait at once instead of first trying a
    /// receive that finds nothing (about 4% of an echo round trip's kernel time). Data that did
    /// arrive meanwhile is found by the poll's own first check, so a wrong guess costs little.
    pub(crate) recv_drained: AtomicBool,
    /// TCP streams: the kernel reports, with every `recvmsg`, how many bytes stay queued
    /// (`TCP_INQ`), so a readiness read that emptied the socket drops the readiness at once
    /// instead of learning it from one more `recv` failing with `WouldBlock` (one syscall in
    /// three on an echo over epoll). Set by [`report_inq`](Self::report_inq).
    reports_inq: AtomicBool,
    /// Pooled receives and multishot accept (`net::pooled`), set up on first use.
    pub(crate) pooled: super::pooled::PerSocket,
    /// What owned reads dropped in flight took; every read drains it first (`net::stash`).
    pub(crate) stash: Stash,
    sock: Socket,
}

/// A socket's slot in one ring's registered-file table (see `driver::uring::files`); `slot` is
/// `None` when that ring had none to give. Released when the socket is dropped, which is after
/// its last op on the ring completed (an op dropped in flight keeps the socket alive).
struct FixedFile {
    reactor: Arc<Reactor>,
    slot: Option<u32>,
}

impl Drop for FixedFile {
    fn drop(&mut self) {
        if let (Some(slot), Some(u)) = (self.slot, self.reactor.as_uring()) {
            u.release_file(slot);
            if !crate::rt::drives(&self.reactor) {
                // The slot holds the socket open: if this thread queued the release for a wait
                // that may not come soon (it drives the ring, but not now), submit it so the
                // peer sees the close.
                self.reactor.flush_submissions();
            }
        }
    }
}

/// A connect to `addr` about to be issued: if that is a loopback address and this is a
/// multi-thread runtime, counted as in flight, so that the runtime's accepted end of the
/// connection waits for it (see `driver::placement`).
fn loopback_connect_started(addr: &SockAddr) -> Option<placement::ConnectInFlight> {
    addr.as_socket().filter(placement::is_loopback)?;
    crate::rt::with_loopback_pairs(|pairs| pairs.connect_started())
}

/// A socket whose connect (counted by [`loopback_connect_started`]) went through, its local port
/// bound: the placement it shares with the connection's accepted end should the runtime accept
/// it.
fn connecting_pair(sock: &Socket, in_flight: Option<placement::ConnectInFlight>) -> Option<placement::Placed> {
    let in_flight = in_flight?;
    // A socket bound to another local address is not an in-process loopback pair's end either:
    // the accepted side only looks up loopback peers.
    let local = sock.local_addr().ok()?.as_socket().filter(placement::is_loopback)?;
    Some(placement::Placed::Pair(in_flight.join(local)))
}

/// Outside the cores of a per-core runtime: the placement that lets the core that first waits on
/// a socket watch it (see `Placed::FirstUser`).
fn first_user_placement() -> Option<placement::Placed> {
    crate::rt::outside_per_core().map(|runtime| placement::Placed::FirstUser { runtime })
}

/// Wakes every task that waits on a direction through a `&self` method: a
/// [`WaitList`](crate::driver::waiters::WaitList) whose entries leave when woken or when their
/// future is dropped or finishes ([`PollSocket::leave_shared`]), so tasks that wait and give up
/// (a `timeout` around `readable()`, say) on a socket that sees no event do not pile up wakers.
///
/// Once a socket has fan-outs, its exclusive waits (`&mut` methods, split halves) go through them
/// too, each direction's one exclusive waiter in `exclusive`: the registration keeps one waker
/// per direction, so a read half's `poll_read` storing its own there would displace the fan-out's
/// (and the write half's `ready(READABLE)` waiters with it), or be displaced by it.
#[derive(Default)]
struct FanOut {
    waiters: crate::driver::waiters::WaitList,
    exclusive: std::sync::Mutex<Option<Waker>>,
}

impl FanOut {
    /// Makes `waker` the direction's exclusive waiter (there is at most one: it comes from a
    /// `&mut` method).
    fn set_exclusive(&self, waker: &Waker) {
        let mut slot = self.exclusive.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }
}

/// One waiting operation's place in a [`FanOut`] (held by its future; see
/// [`PollSocket::poll_io_shared`]).
pub(crate) type SharedWait = crate::driver::waiters::WaitKey;

impl Wake for FanOut {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.waiters.wake_all();
        let exclusive = self.exclusive.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = exclusive {
            w.wake();
        }
    }
}

/// A waiting operation's [`SharedWait`], left when the operation's future is dropped.
pub(crate) struct LeaveOnDrop<'a> {
    pub(crate) sock: &'a PollSocket,
    pub(crate) dir: Direction,
    pub(crate) wait: SharedWait,
}

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.sock.leave_shared(self.dir, &mut self.wait);
    }
}

fn dir_index(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// `TCP_INQ`, the socket option, and `TCP_CM_INQ`, the control message type carrying the bytes
/// left queued (the same number).
/// The most iovecs one `sendmsg`/`recvmsg` takes (Linux's `UIO_MAXIOV`).
pub(crate) const IOV_MAX: usize = 1024;

const TCP_CM_INQ: libc::c_int = 36;

/// Converts a `std::io::Result` wrapper's `EINTR` into a retry.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Views initialized bytes as possibly-uninitialized ones (for socket2's receive calls, which
/// write only initialized bytes).
pub(crate) fn as_uninit(buf: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; the callee (a receive system call) only
    // writes initialized bytes into it, so `buf` stays initialized.
    unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// The spare room of an owned buffer: `bytes_total()` bytes at its stable pointer.
fn spare<B: IoBufMut>(buf: &mut B) -> &mut [MaybeUninit<u8>] {
    let total = buf.bytes_total();
    // SAFETY: `IoBufMut` promises `bytes_total()` writable bytes at the stable pointer, owned by
    // `buf`, which the unique borrow keeps alive and unaliased for the returned lifetime.
    unsafe { std::slice::from_raw_parts_mut(buf.stable_mut_ptr().cast::<MaybeUninit<u8>>(), total) }
}

/// The initialized bytes of an owned buffer.
fn init<B: IoBuf>(buf: &B) -> &[u8] {
    // SAFETY: `IoBuf` promises `bytes_init()` initialized bytes at the stable pointer, kept alive
    // and unmodified by the shared borrow.
    unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) }
}

/// `send` flags: never raise SIGPIPE on a closed peer (the error is returned instead).
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

impl PollSocket {
    /// Registers `sock`, which must already be non-blocking, with the current reactor.
    pub(crate) fn new(sock: Socket) -> io::Result<PollSocket> {
        let reg = Registration::new(sock.as_raw_fd())?;
        Ok(PollSocket::with_registration(sock, reg))
    }

    /// `sock` with a registration already made for its fd.
    pub(crate) fn with_registration(sock: Socket, reg: Registration) -> PollSocket {
        PollSocket {
            fixed: OnceLock::new(),
            reg,
            shared: Default::default(),
            primed: [AtomicBool::new(false), AtomicBool::new(false)],
            recv_drained: AtomicBool::new(false),
            reports_inq: AtomicBool::new(false),
            pooled: Default::default(),
            stash: Stash::default(),
            sock,
        }
    }

    /// Connects `sock` (non-blocking, not yet connected) to `addr` and registers it: an io_uring
    /// `connect` op on the io_uring backend, else a non-blocking `connect` and write readiness.
    ///
    /// On io_uring this arms no readiness poll. A stream then used only through completion ops
    /// (the owned-buffer methods) never gets one, where waiting for connect readiness would
    /// leave a multishot poll posting a CQE for every segment the socket receives.
    pub(crate) async fn connect(sock: Socket, addr: &SockAddr) -> io::Result<Arc<PollSocket>> {
        // The runtime the socket belongs to: as for any socket made here (`Registration::new`),
        // the worker's, else the entered handle's (which may not be the runtime this thread
        // drives: `Handle::enter` is how code makes sockets for another runtime).
        let own = crate::rt::current_reactor().unwrap_or_else(crate::driver::global_reactor);
        if own.as_uring().is_some() {
            if own.is_shut_down() {
                return Err(crate::driver::shut_down_error());
            }
            // Registered with `own`, lazily: nothing armed.
            let reg = Registration::with_reactor(own.clone(), sock.as_raw_fd())?;
            let io = Arc::new(PollSocket::with_registration(sock, reg));
            let in_flight = loopback_connect_started(addr);
            let ring = crate::driver::uring_reactor_near(&own).unwrap_or(crate::driver::ReactorRef::Borrowed(&own));
            // The op keeps the socket (so its fd number) alive if this future is dropped in flight.
            match op::connect(&ring, io.fd(), addr.clone(), io.clone()).await {
                Ok(()) => {
                    // Before anything else uses the socket.
                    if let Some(pair) = connecting_pair(&io.sock, in_flight).or_else(first_user_placement) {
                        io.reg.set_placement(pair);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EISCONN) => {}
                // Nobody here cancels a connect op (a dropped future sees no result): the kernel
                // did, because the thread that submitted it exited, after starting the connect
                // (or an older kernel handed back the non-blocking connect's progress). Finish
                // it through readiness, as on epoll.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINPROGRESS | libc::EALREADY)) => {
                    io.wait_connected().await?
                }
                Err(e) => return Err(e),
            }
            return Ok(io);
        }
        // Epoll: connect first. An edge-triggered registration of a socket that is not yet
        // connecting reports it hung up, and a closed direction stays closed.
        let in_flight = loopback_connect_started(addr);
        match sock.connect(addr) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        // Its local port is bound by now.
        let pair = connecting_pair(&sock, in_flight).or_else(first_user_placement);
        let mut io = PollSocket::new(sock)?;
        io.wait_connected().await?;
        if let Some(pair) = pair {
            // Connected: from now on watched where the pair is placed, decided when either end
            // first waits, or (outside a per-core runtime's cores) by the core that first waits
            // (this drops the registration the connect waited on). Both directions try their
            // first syscall eagerly again, as on a fresh registration.
            let reactor = io.reg.reactor().clone();
            io.reg = Registration::placed(reactor, io.sock.as_raw_fd(), pair);
            io.primed = [AtomicBool::new(false), AtomicBool::new(false)];
        }
        Ok(Arc::new(io))
    }

    /// Waits for a non-blocking `connect` to finish: its error, or `Ok` once connected.
    async fn wait_connected(&self) -> io::Result<()> {
        self.io(Direction::Write, || {
            if let Some(e) = self.sock.take_error()? {
                return Err(e);
            }
            match self.sock.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet (a spurious readiness): wait for the next event.
                Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Registers `sock`, an accepted connection (non-blocking) from `peer` (TCP), with the
    /// reactor `Registration::new_spread` picks; on a multi-thread runtime, a loopback one is
    /// placed instead (lazily, beside its connecting end if that is in this runtime: see
    /// `driver::placement`).
    pub(crate) fn accepted(sock: Socket, peer: Option<std::net::SocketAddr>) -> io::Result<PollSocket> {
        let pair = peer
            .filter(placement::is_loopback)
            .and_then(|peer| crate::rt::with_loopback_pairs(|pairs| pairs.join_accepted(peer)).flatten())
            .map(placement::Placed::Pair);
        if let Some(pair) = pair {
            let reactor = crate::rt::current_reactor().unwrap_or_else(crate::driver::global_reactor);
            let reg = Registration::placed(reactor, sock.as_raw_fd(), pair);
            return Ok(PollSocket::with_registration(sock, reg));
        }
        let reg = Registration::new_spread(sock.as_raw_fd())?;
        Ok(PollSocket::with_registration(sock, reg))
    }

    /// Makes `sock` non-blocking and registers it.
    pub(crate) fn from_blocking(sock: Socket) -> io::Result<PollSocket> {
        sock.set_nonblocking(true)?;
        PollSocket::new(sock)
    }

    /// The reactor of the socket's long-lived requests (see `Registration::home_reactor`).
    pub(crate) fn home_reactor(&self) -> Arc<Reactor> {
        self.reg.home_reactor()
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.sock
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// How an io_uring op on ring `r` names this socket: by its slot in `r`'s registered-file
    /// table when it has one there, else by its fd. The first op that *can* decide decides for
    /// the socket's life: it gets a slot in at most one ring (on a multi-thread runtime, that of
    /// the worker whose thread first submits one of its ops to that worker's own ring; elsewhere
    /// its ops name the fd), and none if that ring could not give one then (table full, see
    /// `driver::uring::files`). An op submitted to a worker's ring from another thread (a task
    /// polled elsewhere, whose socket's ops go to the ring its connection is placed on) cannot
    /// install and does not decide: measured, on echo over two workers every connection's
    /// first op was such an op, so no socket ever got a slot and every op paid the kernel's
    /// `fget`/`fput` (2% of the round trip's CPU).
    pub(crate) fn op_fd(&self, r: &Arc<Reactor>) -> op::OpFd {
        let f = match self.fixed.get() {
            Some(f) => f,
            None => match self.install_fixed(r) {
                Some(f) => f,
                None => return op::OpFd::Raw(self.fd()),
            },
        };
        match f.slot {
            Some(slot) if Arc::ptr_eq(&f.reactor, r) => op::OpFd::Fixed { slot, fd: self.fd() },
            _ => op::OpFd::Raw(self.fd()),
        }
    }

    /// The decision of [`op_fd`](Self::op_fd), or `None` if this op cannot make it.
    #[cold]
    fn install_fixed(&self, r: &Arc<Reactor>) -> Option<&FixedFile> {
        let slot = match r.as_uring().map(|u| u.install_file(self.fd())) {
            Some(FileInstall::NotNow) => return None,
            Some(got) => got.slot(),
            None => None,
        };
        let mut mine = Some(FixedFile { reactor: r.clone(), slot });
        let f = self.fixed.get_or_init(|| mine.take().expect("taken once"));
        // Another op of this socket (its other half, on another thread) decided first: dropping
        // ours releases the slot it got.
        drop(mine);
        Some(f)
    }

    /// `recv(2)` as a plain system call. Not through libc's `recv`, which is a thread
    /// cancellation point and brackets the call with enabling and disabling asynchronous
    /// cancellation (a measurable share of a readiness round trip; a Rust runtime never uses
    /// pthread cancellation).
    fn sys_recv(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call (the kernel writes
        // only initialized bytes into it); the null address arguments ask for no sender address.
        let n = unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                self.fd(),
                buf.as_mut_ptr(),
                buf.len(),
                0,
                std::ptr::null_mut::<libc::sockaddr>(),
                std::ptr::null_mut::<libc::socklen_t>(),
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Asks the kernel to report the bytes left queued after each receive (`TCP_INQ`, TCP
    /// streams, Linux 4.18+; without it reads work as before, see `reports_inq`). Called once,
    /// before the socket is shared.
    pub(crate) fn report_inq(&self) {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid `int` for the call; the kernel only reads it.
        let r = unsafe {
            libc::setsockopt(
                self.fd(),
                libc::IPPROTO_TCP,
                TCP_CM_INQ,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            self.reports_inq.store(true, Ordering::Relaxed);
        }
    }

    /// A stream read: [`sys_recv`](Self::sys_recv), also saying whether it left the socket's
    /// receive queue empty (known only with `TCP_INQ` on: `recvmsg` then carries the count; else
    /// always `false`). End of stream is never "drained": it stays readable.
    fn sys_recv_stream(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<(usize, bool)> {
        if !self.reports_inq.load(Ordering::Relaxed) {
            return self.sys_recv(buf).map(|n| (n, false));
        }
        let mut iov = [libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() }];
        self.sys_recvmsg_inq(&mut iov)
    }

    /// [`sys_recv_stream`](Self::sys_recv_stream) into several buffers (one `recvmsg`; a plain
    /// syscall, where libc's `readv` would be a cancellation point).
    fn sys_recv_stream_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<(usize, bool)> {
        // `IoSliceMut` is ABI-compatible with `iovec` (std guarantees it on Unix).
        // SAFETY: the slice of `IoSliceMut`s is viewed as as many `iovec`s, each pointing to a
        // live `&mut [u8]` for as long as `bufs` is borrowed.
        // At most `IOV_MAX` of them: the kernel refuses more (EMSGSIZE) where std reads into a prefix.
        let iov =
            unsafe { std::slice::from_raw_parts_mut(bufs.as_mut_ptr().cast::<libc::iovec>(), bufs.len().min(IOV_MAX)) };
        self.sys_recvmsg_inq(iov)
    }

    /// `recvmsg(2)` into `iov` as a plain syscall: the count, and whether the receive queue is now
    /// empty (from the `TCP_CM_INQ` control message, when `TCP_INQ` is on; else `false`). Only
    /// then is there room for control messages: a Unix stream's peer may send file descriptors,
    /// which the kernel would install here if there were room (and nobody would close them).
    fn sys_recvmsg_inq(&self, iov: &mut [libc::iovec]) -> io::Result<(usize, bool)> {
        // Room for one `int` control message (CMSG_SPACE(4) = 24 on 64-bit), 8-byte aligned.
        let mut control = [0u64; 4];
        // SAFETY: `msghdr` is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len() as _;
        if self.reports_inq.load(Ordering::Relaxed) {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
        }
        // SAFETY: `msg` points at `iov` (each entry valid for writes of its length; the kernel
        // writes only initialized bytes) and at `control` (valid for `msg_controllen` bytes), all
        // alive for the call. A plain syscall for the reason given at `sys_recv`.
        let n = unsafe { libc::syscall(libc::SYS_recvmsg, self.fd(), &mut msg as *mut libc::msghdr, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut drained = false;
        // SAFETY: `msg` is the header the kernel just filled; CMSG_FIRSTHDR only reads it and
        // returns null or a pointer into `control` to a complete header.
        let c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        if !c.is_null() {
            // SAFETY: non-null: a control message header the kernel wrote inside `control`.
            let h = unsafe { &*c };
            if h.cmsg_level == libc::IPPROTO_TCP && h.cmsg_type == TCP_CM_INQ {
                // SAFETY: a `TCP_CM_INQ` message carries one `int` right after its header, inside
                // `control`; read unaligned to assume nothing about its placement.
                let left = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>()) };
                drained = n > 0 && left == 0;
            }
        }
        Ok((n as usize, drained))
    }

    /// `sendmsg(2)` of `bufs` with [`SEND_FLAGS`] as a plain system call (see
    /// [`sys_recv`](Self::sys_recv); libc's `sendmsg` is a cancellation point too: a hyper
    /// response is one gathering write).
    fn sys_send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: `msghdr` is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // `IoSlice` is ABI-compatible with `iovec` (std guarantees it on Unix); the kernel only
        // reads through the pointer.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        // At most `IOV_MAX` slices (a partial write, as std's `write_vectored`): the kernel
        // refuses more with EMSGSIZE.
        msg.msg_iovlen = bufs.len().min(IOV_MAX) as _;
        // SAFETY: `msg` points at `bufs`, each valid for reads of its length, for the call.
        let n = unsafe { libc::syscall(libc::SYS_sendmsg, self.fd(), &msg as *const libc::msghdr, SEND_FLAGS) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// `send(2)` with `flags` as a plain system call (see [`sys_recv`](Self::sys_recv)).
    fn sys_send(&self, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call; no address given.
        let n = unsafe {
            libc::syscall(
                libc::SYS_sendto,
                self.fd(),
                buf.as_ptr(),
                buf.len(),
                flags,
                std::ptr::null::<libc::sockaddr>(),
                0,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Runs `f` when `dir` is ready, for a caller with exclusive use of the direction (`&mut`
    /// methods, split halves). Spends cooperative budget first.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_clearing(cx, dir, f, |_| false)
    }

    /// [`poll_io`](Self::poll_io) for a syscall that can tell it emptied the source (`emptied`
    /// says so of its result): the readiness it used is dropped then (see
    /// `Registration::poll_io_clearing`).
    fn poll_io_clearing<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        f: impl FnMut() -> io::Result<R>,
        emptied: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let mut f = f;
        let r = match self.shared.get() {
            None => self.reg.poll_io_clearing(cx, dir, || retry(&mut f), emptied),
            // Shared with `&self` waiters (see `FanOut`): wait through the fan-out.
            Some(fans) => {
                let fan = &fans[dir_index(dir)];
                fan.set_exclusive(cx.waker());
                let fan_waker = Waker::from(fan.clone());
                self.reg.poll_io_clearing(&mut Context::from_waker(&fan_waker), dir, || retry(&mut f), emptied)
            }
        };
        self.eager_if_unprimed(r, dir, f)
    }

    /// Makes the fan-outs now, before the socket is split into halves that may wait at once
    /// (see `FanOut`): made later, by a half's first `&self` wait, they would displace the waker
    /// the other half's exclusive wait already stored in the registration.
    pub(crate) fn prepare_for_split(&self) {
        self.shared.get_or_init(Default::default);
    }

    /// [`poll_io`](Self::poll_io) for a stream read: `f` also says whether the read emptied the
    /// socket (see [`sys_recv_stream`](Self::sys_recv_stream)), and then the readiness it used is
    /// dropped, so the next read waits for the next event instead of trying a `recv` first.
    fn poll_read_draining(
        &self,
        cx: &mut Context<'_>,
        f: impl FnMut() -> io::Result<(usize, bool)>,
    ) -> Poll<io::Result<usize>> {
        self.poll_io_clearing(cx, Direction::Read, f, |&(_, drained)| drained).map(|r| r.map(|(n, _)| n))
    }

    /// After the reactor said "not ready" for a direction that has not seen an event yet, tries
    /// the syscall once (the waker is registered already, so a later event still wakes the task).
    fn eager_if_unprimed<R>(
        &self,
        r: Poll<io::Result<R>>,
        dir: Direction,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        let primed = &self.primed[dir_index(dir)];
        if primed.load(Ordering::Relaxed) {
            return r;
        }
        primed.store(true, Ordering::Relaxed);
        match r {
            Poll::Pending => match retry(&mut f) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                r => Poll::Ready(r),
            },
            r => r,
        }
    }

    /// Like [`poll_io`](Self::poll_io), for `&self` methods several tasks may wait in at once:
    /// every waiter is woken by the next readiness event (each then retries). `wait` is the
    /// calling future's place among the waiters; the future must call
    /// [`leave_shared`](Self::leave_shared) with it when dropped ([`io_shared`](Self::io_shared)
    /// does both).
    pub(crate) fn poll_io_shared<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        wait: &mut SharedWait,
        f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let fan = &self.shared.get_or_init(Default::default)[dir_index(dir)];
        let fan_waker = Waker::from(fan.clone());
        let mut fan_cx = Context::from_waker(&fan_waker);
        let mut f = f;
        if let Poll::Ready(r) = self.reg.poll_io(&mut fan_cx, dir, || retry(&mut f)) {
            self.leave_shared(dir, wait);
            return Poll::Ready(r);
        }
        // Not ready: join the waiters (or refresh our entry), then look again, so an event that
        // fired between the first look and the join (and woke a list without us) is not missed.
        fan.waiters.join(wait, cx.waker());
        let r = self.reg.poll_io(&mut fan_cx, dir, || retry(&mut f));
        let r = self.eager_if_unprimed(r, dir, f);
        if r.is_ready() {
            self.leave_shared(dir, wait);
        }
        r
    }

    /// Waits for readiness in `dir` and returns the event itself, for `&self` waiters that clear
    /// it themselves (`io::unix::AsyncFd`'s guards): several tasks may wait at once, every one
    /// woken by the next event. `wait` as for [`poll_io_shared`](Self::poll_io_shared).
    pub(crate) fn poll_event_shared(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        wait: &mut SharedWait,
    ) -> Poll<io::Result<crate::driver::ReadyEvent>> {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let fan = &self.shared.get_or_init(Default::default)[dir_index(dir)];
        let fan_waker = Waker::from(fan.clone());
        let mut fan_cx = Context::from_waker(&fan_waker);
        let mut r = self.poll_event_now(&mut fan_cx, dir);
        if r.is_pending() {
            // Join, then look again (see `poll_io_shared`).
            fan.waiters.join(wait, cx.waker());
            r = self.poll_event_now(&mut fan_cx, dir);
        }
        if r.is_ready() {
            self.leave_shared(dir, wait);
        }
        r
    }

    /// [`poll_event_shared`](Self::poll_event_shared) for the direction's one exclusive waiter
    /// (tokio's `AsyncFd::poll_read_ready`: a later caller's waker replaces an earlier one's).
    pub(crate) fn poll_event(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<crate::driver::ReadyEvent>> {
        if spindle_core::coop::poll_proceed(cx).is_pending() {
            return Poll::Pending;
        }
        let fan = &self.shared.get_or_init(Default::default)[dir_index(dir)];
        fan.set_exclusive(cx.waker());
        let fan_waker = Waker::from(fan.clone());
        self.poll_event_now(&mut Context::from_waker(&fan_waker), dir)
    }

    /// The registration's readiness in `dir`, `cx` left to be woken by the next event; an error
    /// once the runtime driving it shut down.
    fn poll_event_now(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<io::Result<crate::driver::ReadyEvent>> {
        if self.reg.is_shut_down() {
            return Poll::Ready(Err(crate::driver::shut_down_error()));
        }
        self.reg.poll_ready(cx, dir)
    }

    /// The readiness recorded in `dir` now (see `Registration::current_event`).
    pub(crate) fn current_event(&self, dir: Direction) -> crate::driver::ReadyEvent {
        self.reg.current_event(dir)
    }

    /// Clears the bits of `ev` in `bits` (see `Registration::clear_matching`).
    pub(crate) fn clear_matching(&self, ev: crate::driver::ReadyEvent, bits: crate::io::Ready) {
        self.reg.clear_matching(ev, bits)
    }

    /// Takes a waiting operation's entry (if it still has one) out of the direction's waiters:
    /// its future finished or was dropped.
    pub(crate) fn leave_shared(&self, dir: Direction, wait: &mut SharedWait) {
        if let Some(fans) = self.shared.get() {
            fans[dir_index(dir)].waiters.leave(wait);
        }
    }

    pub(crate) async fn io<R>(&self, dir: Direction, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        poll_fn(|cx| self.poll_io(cx, dir, &mut f)).await
    }

    pub(crate) async fn io_shared<R>(&self, dir: Direction, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        let mut waiting = LeaveOnDrop { sock: self, dir, wait: SharedWait::default() };
        poll_fn(|cx| self.poll_io_shared(cx, dir, &mut waiting.wait, &mut f)).await
    }

    // ----- the stash (`net::stash`) -----

    /// A stream read's look at the stash: `Ready(None)` to go on to the socket, `Pending` while
    /// an orphaned read is in flight, else the stashed bytes, end of stream or error. Callers
    /// check [`Stash::is_busy`] first (the whole cost when nothing was ever stashed).
    pub(crate) fn poll_stashed(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn Dest,
        mode: Mode,
    ) -> Poll<Option<io::Result<usize>>> {
        self.stash.poll_stream(cx, dst, mode, || self.reg.is_shut_down())
    }

    /// A datagram read's look at the stash (see [`poll_stashed`](Self::poll_stashed)): a whole
    /// stashed datagram and its sender.
    fn poll_stashed_datagram(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn Dest,
        mode: Mode,
    ) -> Poll<Option<io::Result<(usize, SockAddr)>>> {
        let r = ready!(self.stash.poll_datagram(cx, dst, mode, || self.reg.is_shut_down()));
        // Stashed datagrams carry their sender (they come from `recvmsg`); without one (nothing
        // stashes such a datagram today) the connected peer is the sender.
        Poll::Ready(r.map(|r| r.and_then(|(n, from)| Ok((n, from.map_or_else(|| self.sock.peer_addr(), Ok)?)))))
    }

    // ----- stream operations (exclusive per direction) -----

    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.stash.is_busy() {
            if let Some(r) = ready!(self.poll_stashed(cx, &mut Fill::new(as_uninit(buf)), Mode::Take)) {
                return Poll::Ready(r);
            }
        }
        self.poll_read_draining(cx, || self.sys_recv_stream(as_uninit(buf)))
    }

    /// Receives into possibly-uninitialized memory (the unfilled part of a tokio `ReadBuf`).
    #[cfg_attr(not(any(feature = "tokio-io", feature = "hyper")), allow(dead_code))]
    pub(crate) fn poll_recv_uninit(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        if self.stash.is_busy() {
            if let Some(r) = ready!(self.poll_stashed(cx, &mut Fill::new(buf), Mode::Take)) {
                return Poll::Ready(r);
            }
        }
        self.poll_read_draining(cx, || self.sys_recv_stream(buf))
    }

    pub(crate) fn poll_recv_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.stash.is_busy() {
            if let Some(r) = ready!(self.poll_stashed(cx, &mut FillVectored::new(bufs), Mode::Take)) {
                return Poll::Ready(r);
            }
        }
        self.poll_read_draining(cx, || self.sys_recv_stream_vectored(bufs))
    }

    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Direction::Write, || self.sys_send(buf, SEND_FLAGS))
    }

    pub(crate) fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        self.poll_io(cx, Direction::Write, || self.sys_send_vectored(bufs))
    }

    /// Waits until `dir` may be ready (`readable`/`writable`: several tasks may wait at once).
    /// Stashed bytes count as readable. May return when an operation would still block; the
    /// `try_*` call that then fails with `WouldBlock` clears the readiness.
    pub(crate) async fn ready(&self, dir: Direction) -> io::Result<()> {
        self.wait_ready(dir, false, (), || Ok(())).await
    }

    /// Waits until `dir` is ready, for the readiness methods of both socket kinds (`datagram`:
    /// its reads take whole datagrams, so its stash is the datagram one). For reads, an orphaned
    /// read in flight is waited for (its bytes, if any, come before the socket's), and something
    /// stashed makes the socket readable at once (`if_stashed`). Otherwise each readiness event
    /// runs `check`: `WouldBlock` means the event was stale, which is cleared and waited past.
    async fn wait_ready<R>(
        &self,
        dir: Direction,
        datagram: bool,
        if_stashed: R,
        check: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        if dir == Direction::Read && self.stash.is_busy() {
            let stashed = if datagram {
                self.datagram_stashed(&mut [], Mode::Peek).await.is_some()
            } else {
                poll_fn(|cx| self.poll_stashed(cx, &mut Fill::new(&mut []), Mode::Peek)).await.is_some()
            };
            if stashed {
                return Ok(if_stashed);
            }
        }
        self.io_shared(dir, check).await
    }

    /// Waits until the socket is ready for any of `interest` (`datagram`: as for
    /// [`wait_ready`](Self::wait_ready)) and reports what it is ready for. Each readiness event
    /// is checked with a zero-timeout `poll(2)`: a stale event is cleared and waited past, as
    /// after `WouldBlock`. Once a direction is ready, one more `poll(2)` over the whole interest
    /// makes the answer (so it also names the other direction, and closed sides). A read that a
    /// cancelled owned read left in the stash makes the socket readable.
    pub(crate) async fn ready_for(
        &self,
        interest: crate::io::Interest,
        datagram: bool,
    ) -> io::Result<crate::io::Ready> {
        use crate::io::{Interest, Ready};
        let wait = |dir, i: Interest, if_stashed| self.wait_ready(dir, datagram, if_stashed, move || self.ready_now(i));
        let mut read =
            std::pin::pin!(interest.is_readable().then(|| wait(Direction::Read, Interest::READABLE, Ready::READABLE)));
        let mut write =
            std::pin::pin!(interest.is_writable().then(|| wait(Direction::Write, Interest::WRITABLE, Ready::WRITABLE)));
        let fired = poll_fn(|cx| {
            let mut ready = Ready::EMPTY;
            for f in [read.as_mut().as_pin_mut(), write.as_mut().as_pin_mut()].into_iter().flatten() {
                if let Poll::Ready(r) = f.poll(cx) {
                    ready |= r?;
                }
            }
            if ready.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(Ok::<_, io::Error>(ready))
            }
        })
        .await?;
        if interest.is_readable() && interest.is_writable() {
            return Ok(fired | self.readiness_now(interest)?);
        }
        Ok(fired)
    }

    /// tokio's `poll_read_ready`/`poll_write_ready`: `Ready` once `dir` is ready (checked with a
    /// zero-timeout `poll(2)`, so a stale event is waited past), else `Pending` with the
    /// caller's waker kept as the direction's one exclusive waiter (a later call's replaces it).
    pub(crate) fn poll_ready_checked(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<io::Result<()>> {
        let interest = match dir {
            Direction::Read => crate::io::Interest::READABLE,
            Direction::Write => crate::io::Interest::WRITABLE,
        };
        self.poll_io(cx, dir, || self.ready_now(interest)).map(|r| r.map(drop))
    }

    /// The socket's readiness for `interest`'s one direction right now, or `WouldBlock` when it
    /// has none (the check [`ready_for`](Self::ready_for) runs at each readiness event).
    fn ready_now(&self, interest: crate::io::Interest) -> io::Result<crate::io::Ready> {
        let r = self.readiness_now(interest)?;
        if r.is_empty() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(r)
        }
    }

    /// The socket's readiness for `interest` right now (`poll(2)` with a zero timeout).
    fn readiness_now(&self, interest: crate::io::Interest) -> io::Result<crate::io::Ready> {
        let mut events = 0;
        if interest.is_readable() {
            events |= libc::POLLIN | libc::POLLRDHUP;
        }
        if interest.is_writable() {
            events |= libc::POLLOUT;
        }
        let mut p = libc::pollfd { fd: self.fd(), events, revents: 0 };
        loop {
            // SAFETY: `p` is one valid `pollfd` for the duration of the call; the fd is ours.
            if unsafe { libc::poll(&mut p, 1, 0) } >= 0 {
                return Ok(crate::io::Ready::from_revents(p.revents, interest));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::new(e.kind(), format!("ready: poll: {e}")));
            }
        }
    }

    /// A stream receive now, without waiting (tokio's `try_read`): stashed bytes first; while an
    /// orphaned read is still in flight, `WouldBlock` (its bytes come first once it completes).
    pub(crate) fn try_recv_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stash.is_busy() {
            let mut cx = Context::from_waker(Waker::noop());
            match self.poll_stashed(&mut cx, &mut Fill::new(as_uninit(buf)), Mode::Take) {
                Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                Poll::Ready(Some(r)) => return r,
                Poll::Ready(None) => {}
            }
        }
        self.reg
            .try_io(Direction::Read, || retry(|| self.sys_recv_stream(as_uninit(buf))), |&(_, drained)| drained)
            .map(|(n, _)| n)
    }

    /// Runs the non-blocking syscall `f` now in direction `dir`, without waiting (the `try_`
    /// methods of fds that are not sockets, such as pipes: no stash, no `recv`/`send`).
    pub(crate) fn try_io_now<R>(&self, dir: Direction, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        self.reg.try_io(dir, || retry(&mut f), |_| false)
    }

    /// Makes operations in `dir` wait for the reactor's first event instead of trying their
    /// syscall at once: for fds whose first syscall can mislead (a FIFO with no writer yet reads
    /// as end of stream, though nothing hung up; `poll` reports nothing for it, so waiting is
    /// right).
    pub(crate) fn wait_for_first_event(&self, dir: Direction) {
        self.primed[dir_index(dir)].store(true, Ordering::Relaxed);
    }

    /// The fd, no longer registered (the registration is dropped first, so the reactor stops
    /// watching it before anyone else may use it).
    pub(crate) fn into_socket(self) -> Socket {
        let PollSocket { fixed, reg, sock, .. } = self;
        drop(fixed);
        drop(reg);
        sock
    }

    /// The fd number, no longer registered and not closed (`io::unix::AsyncFd`, whose caller owns
    /// the fd). It leaves its closing owner before the registration is dropped, so nothing that
    /// unwinds there can close it.
    pub(crate) fn into_raw_fd_deregistered(self) -> RawFd {
        let PollSocket { fixed, reg, sock, .. } = self;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(sock);
        drop(fixed);
        drop(reg);
        fd
    }

    /// Whether the runtime driving the registration shut down.
    pub(crate) fn is_shut_down(&self) -> bool {
        self.reg.is_shut_down()
    }

    /// A send now, without waiting (tokio's `try_write`).
    pub(crate) fn try_send_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_io_now(Direction::Write, || self.sys_send(buf, SEND_FLAGS))
    }

    /// Peeks: stashed bytes (left stashed) come first, as a read would return them.
    pub(crate) fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if self.stash.is_busy() {
            if let Some(r) = ready!(self.poll_stashed(cx, &mut Fill::new(as_uninit(buf)), Mode::Peek)) {
                return Poll::Ready(r);
            }
        }
        self.poll_io(cx, Direction::Read, || self.sock.peek(as_uninit(buf)))
    }

    /// The io_uring reactor this socket's owned-buffer ops go to from this thread (its pair's
    /// ring, else `driver::uring_reactor_near`), or `None` on epoll (and the shut-down error if
    /// this socket's runtime is gone, which readiness reports by itself).
    fn uring(&self) -> Option<io::Result<crate::driver::ReactorRef<'_>>> {
        let r = match self.reg.placed_ops_reactor() {
            Some(r) => crate::driver::ReactorRef::Borrowed(r),
            None => crate::driver::uring_reactor_near(self.reg.reactor())?,
        };
        Some(if self.reg.is_shut_down() { Err(crate::driver::shut_down_error()) } else { Ok(r) })
    }

    /// Reads into the start of an owned buffer (see `AsyncReadOwned::read_owned`): stashed bytes
    /// first, else an io_uring `recv` op on the io_uring backend (which stashes what it takes if
    /// it is dropped in flight), else readiness and `recv`.
    pub(crate) fn recv_owned<B: IoBufMut>(self: &Arc<Self>, buf: B) -> RecvOwned<'_, B> {
        RecvOwned { sock: self, state: RecvState::Start(buf) }
    }

    /// Sends from an owned buffer's initialized bytes: an io_uring `send` op on the io_uring
    /// backend, else readiness and `send`.
    pub(crate) fn send_owned<B: IoBuf>(self: &Arc<Self>, buf: B) -> SendOwned<'_, B> {
        SendOwned { sock: self, state: SendState::Start(buf) }
    }

    /// Sends from several owned buffers in one gathering call (a `sendmsg` op with
    /// `MSG_NOSIGNAL` on io_uring).
    pub(crate) async fn send_vectored_owned<B: IoBuf>(self: &Arc<Self>, mut bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        match self.uring() {
            Some(Ok(r)) => {
                let wrapped: Vec<_> = bufs.into_iter().map(|b| KeepAlive::new(b, self.clone())).collect();
                let (res, wrapped) = op::send_vectored(&r, self.fd(), wrapped).await;
                return (res, wrapped.into_iter().map(|w| w.buf).collect());
            }
            Some(Err(e)) => return (Err(e), bufs),
            None => {}
        }
        let b = &mut bufs;
        let res = self
            .io(Direction::Write, move || {
                let bufs = &*b;
                let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(init(b))).collect();
                self.sys_send_vectored(&slices)
            })
            .await;
        (res, bufs)
    }

    /// Readiness and `send` of an owned buffer, several tasks maybe waiting at once (datagram
    /// sockets; a stream's owned send is [`SendOwned`]).
    async fn send_owned_shared_ready<B: IoBuf>(&self, mut buf: B) -> BufResult<usize, B> {
        // Held as `&mut` (Send for any `B: Send`), not `&` (which would need `B: Sync`).
        let b = &mut buf;
        let res = self.io_shared(Direction::Write, move || self.sys_send(init(&*b), SEND_FLAGS)).await;
        (res, buf)
    }

    // ----- datagram operations (`&self`, shared) -----

    pub(crate) async fn send_shared(&self, buf: &[u8]) -> io::Result<usize> {
        self.io_shared(Direction::Write, || self.sys_send(buf, SEND_FLAGS)).await
    }

    /// A stashed datagram (see [`poll_stashed_datagram`](Self::poll_stashed_datagram)), waiting
    /// for orphaned receives in flight first: `None` when nothing is stashed.
    async fn datagram_stashed(&self, dst: &mut [MaybeUninit<u8>], mode: Mode) -> Option<io::Result<(usize, SockAddr)>> {
        poll_fn(|cx| self.poll_stashed_datagram(cx, &mut Fill::new(dst), mode)).await
    }

    pub(crate) async fn recv_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stash.is_busy() {
            if let Some(r) = self.datagram_stashed(as_uninit(buf), Mode::Take).await {
                return r.map(|(n, _)| n);
            }
        }
        self.io_shared(Direction::Read, || self.sys_recv(as_uninit(buf))).await
    }

    pub(crate) async fn send_to_shared(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.io_shared(Direction::Write, || self.sock.send_to_with_flags(buf, addr, SEND_FLAGS)).await
    }

    pub(crate) async fn recv_from_shared(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        if self.stash.is_busy() {
            if let Some(r) = self.datagram_stashed(as_uninit(buf), Mode::Take).await {
                return r;
            }
        }
        self.io_shared(Direction::Read, || self.sock.recv_from(as_uninit(buf))).await
    }

    pub(crate) async fn peek_from_shared(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        if self.stash.is_busy() {
            if let Some(r) = self.datagram_stashed(as_uninit(buf), Mode::Peek).await {
                return r;
            }
        }
        self.io_shared(Direction::Read, || self.sock.peek_from(as_uninit(buf))).await
    }

    /// Waits until a datagram socket may be readable (a stashed datagram counts; an orphaned
    /// receive in flight is waited for) or writable. See [`ready`](Self::ready).
    pub(crate) async fn datagram_ready(&self, dir: Direction) -> io::Result<()> {
        self.wait_ready(dir, true, (), || Ok(())).await
    }

    /// The datagram stash without waiting: `None` when nothing is stashed, `WouldBlock` while an
    /// orphaned receive is in flight (its datagram is delivered first once it completes).
    fn try_datagram_stashed(&self, buf: &mut [u8]) -> Option<io::Result<(usize, SockAddr)>> {
        if !self.stash.is_busy() {
            return None;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_stashed_datagram(&mut cx, &mut Fill::new(as_uninit(buf)), Mode::Take) {
            Poll::Pending => Some(Err(io::ErrorKind::WouldBlock.into())),
            Poll::Ready(r) => r,
        }
    }

    /// A datagram receive now, without waiting (tokio's `UdpSocket::try_recv`).
    pub(crate) fn try_recv_datagram_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(r) = self.try_datagram_stashed(buf) {
            return r.map(|(n, _)| n);
        }
        self.reg.try_io(Direction::Read, || retry(|| self.sys_recv(as_uninit(buf))), |_| false)
    }

    /// A datagram receive with its sender now, without waiting (tokio's `try_recv_from`).
    pub(crate) fn try_recv_from_now(&self, buf: &mut [u8]) -> io::Result<(usize, SockAddr)> {
        if let Some(r) = self.try_datagram_stashed(buf) {
            return r;
        }
        self.reg.try_io(Direction::Read, || retry(|| self.sock.recv_from(as_uninit(buf))), |_| false)
    }

    /// A datagram send to `addr` now, without waiting (tokio's `try_send_to`).
    pub(crate) fn try_send_to_now(&self, buf: &[u8], addr: &SockAddr) -> io::Result<usize> {
        self.reg.try_io(Direction::Write, || retry(|| self.sock.send_to_with_flags(buf, addr, SEND_FLAGS)), |_| false)
    }

    /// Sends one datagram from an owned buffer (connected sockets): an io_uring `send` op on the
    /// io_uring backend (several may be in flight at once), else readiness shared by waiters.
    pub(crate) async fn send_owned_shared<B: IoBuf>(self: &Arc<Self>, buf: B) -> BufResult<usize, B> {
        match self.uring() {
            Some(_) => self.send_owned(buf).await,
            None => self.send_owned_shared_ready(buf).await,
        }
    }

    /// Receives one datagram into an owned buffer (connected sockets), as
    /// [`recv_from_owned_shared`](Self::recv_from_owned_shared) without the sender.
    pub(crate) async fn recv_owned_shared<B: IoBufMut>(self: &Arc<Self>, buf: B) -> BufResult<usize, B> {
        let (res, buf) = self.recv_from_owned_shared(buf).await;
        (res.map(|(n, _)| n), buf)
    }

    /// Sends one datagram to `addr` from an owned buffer: an io_uring `sendmsg` op on the
    /// io_uring backend, else readiness and `sendto`.
    pub(crate) async fn send_to_owned_shared<B: IoBuf>(
        self: &Arc<Self>,
        mut buf: B,
        addr: &SockAddr,
    ) -> BufResult<usize, B> {
        match self.uring() {
            Some(Ok(r)) => {
                let (res, b) = op::send_to(&r, self.fd(), KeepAlive::new(buf, self.clone()), addr).await;
                return (res, b.buf);
            }
            Some(Err(e)) => return (Err(e), buf),
            None => {}
        }
        let b = &mut buf;
        let res =
            self.io_shared(Direction::Write, move || self.sock.send_to_with_flags(init(&*b), addr, SEND_FLAGS)).await;
        (res, buf)
    }

    /// Receives one datagram and its sender into an owned buffer: a stashed one first (a
    /// datagram a dropped receive took), else an io_uring `recvmsg` op on the io_uring backend
    /// (which stashes the datagram it takes if it is dropped in flight), else readiness and
    /// `recvfrom`.
    pub(crate) async fn recv_from_owned_shared<B: IoBufMut>(
        self: &Arc<Self>,
        mut buf: B,
    ) -> BufResult<(usize, SockAddr), B> {
        if self.stash.is_busy() {
            if let Some(r) = self.datagram_stashed(spare(&mut buf), Mode::Take).await {
                if let Ok((n, _)) = &r {
                    // SAFETY: the stash initialized the first `n <= bytes_total()` bytes.
                    unsafe { buf.set_init(*n) };
                }
                return (r, buf);
            }
        }
        match self.uring() {
            Some(Ok(r)) => return stash::recv_msg(&r, self, buf).await,
            Some(Err(e)) => return (Err(e), buf),
            None => {}
        }
        let res = self.io_shared(Direction::Read, || self.sock.recv_from(spare(&mut buf))).await;
        if let Ok((n, _)) = &res {
            // SAFETY: the kernel initialized the first `n <= bytes_total()` bytes.
            unsafe { buf.set_init(*n) };
        }
        (res, buf)
    }
}

/// [`PollSocket::recv_owned`]'s future. Written by hand rather than as nested `async fn`s over
/// the op's future, each of which kept its own copy of the buffer and the result in its state:
/// `read_owned`'s future went from 248 bytes to 104 (a `Vec` buffer), which every task waiting
/// in a read carries; echo speed was unchanged (measured). The op is polled where it lies.
pub(crate) struct RecvOwned<'a, B: IoBufMut> {
    sock: &'a Arc<PollSocket>,
    state: RecvState<'a, B>,
}

enum RecvState<'a, B: IoBufMut> {
    /// Not polled yet.
    Start(B),
    /// Waiting for orphaned reads to finish, or taking stashed bytes.
    Stash(B),
    /// The io_uring `recv` op.
    Op(stash::StashedOp<'a, stash::RecvOp<B>>),
    /// Readiness and `recv` (epoll), stashed bytes first.
    Ready(B),
    Done,
}

impl<'a, B: IoBufMut> RecvState<'a, B> {
    /// Where a read goes once the stash has nothing: the io_uring op, or readiness (`Err`: done
    /// with that error).
    fn on_socket(sock: &'a Arc<PollSocket>, buf: B) -> Result<RecvState<'a, B>, BufResult<usize, B>> {
        Ok(match sock.uring() {
            Some(Ok(r)) => RecvState::Op(stash::StashedOp::recv(r, sock, buf)),
            Some(Err(e)) => return Err((Err(e), buf)),
            None => RecvState::Ready(buf),
        })
    }
}

impl<B: IoBufMut> Future for RecvOwned<'_, B> {
    type Output = BufResult<usize, B>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BufResult<usize, B>> {
        let this = self.get_mut();
        let sock = this.sock;
        loop {
            match &mut this.state {
                RecvState::Op(op) => {
                    let c = ready!(Pin::new(op).poll(cx));
                    this.state = RecvState::Done;
                    return Poll::Ready(stash::recv_done(sock, c));
                }
                RecvState::Ready(buf) => {
                    let res = ready!(sock.poll_recv_uninit(cx, spare(buf)));
                    let RecvState::Ready(mut buf) = std::mem::replace(&mut this.state, RecvState::Done) else {
                        unreachable!()
                    };
                    if let Ok(n) = res {
                        // SAFETY: the kernel initialized the first `n <= bytes_total()` bytes.
                        unsafe { buf.set_init(n) };
                    }
                    return Poll::Ready((res, buf));
                }
                RecvState::Stash(buf) => {
                    let res = ready!(sock.poll_stashed(cx, &mut Fill::new(spare(buf)), Mode::Take));
                    let RecvState::Stash(mut buf) = std::mem::replace(&mut this.state, RecvState::Done) else {
                        unreachable!()
                    };
                    match res {
                        Some(res) => {
                            if let Ok(n) = res {
                                // SAFETY: the stash initialized the first `n <= bytes_total()` bytes.
                                unsafe { buf.set_init(n) };
                            }
                            return Poll::Ready((res, buf));
                        }
                        None => match RecvState::on_socket(sock, buf) {
                            Ok(next) => this.state = next,
                            Err(done) => return Poll::Ready(done),
                        },
                    }
                }
                RecvState::Start(_) => {
                    let RecvState::Start(buf) = std::mem::replace(&mut this.state, RecvState::Done) else {
                        unreachable!()
                    };
                    if sock.stash.is_busy() {
                        this.state = RecvState::Stash(buf);
                    } else {
                        match RecvState::on_socket(sock, buf) {
                            Ok(next) => this.state = next,
                            Err(done) => return Poll::Ready(done),
                        }
                    }
                }
                RecvState::Done => panic!("spindle: read_owned polled after completion"),
            }
        }
    }
}

/// [`PollSocket::send_owned`]'s future, written by hand for the reason given at [`RecvOwned`].
pub(crate) struct SendOwned<'a, B: IoBuf> {
    sock: &'a Arc<PollSocket>,
    state: SendState<'a, B>,
}

enum SendState<'a, B: IoBuf> {
    /// Not polled yet.
    Start(B),
    /// The io_uring `send` op.
    Op(op::Op<'a, op::SendOp<B, op::Lent<PollSocket>>>),
    /// Readiness and `send` (epoll).
    Ready(B),
    Done,
}

impl<B: IoBuf> Future for SendOwned<'_, B> {
    type Output = BufResult<usize, B>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<BufResult<usize, B>> {
        let this = self.get_mut();
        let sock = this.sock;
        loop {
            match &mut this.state {
                SendState::Op(op) => {
                    let c = ready!(Pin::new(op).poll(cx));
                    this.state = SendState::Done;
                    return Poll::Ready((c.result.map(|n| n as usize), c.data.into_buf()));
                }
                SendState::Ready(buf) => {
                    let res = ready!(sock.poll_send(cx, init(&*buf)));
                    let SendState::Ready(buf) = std::mem::replace(&mut this.state, SendState::Done) else {
                        unreachable!()
                    };
                    return Poll::Ready((res, buf));
                }
                SendState::Start(_) => {
                    let SendState::Start(buf) = std::mem::replace(&mut this.state, SendState::Done) else {
                        unreachable!()
                    };
                    this.state = match sock.uring() {
                        Some(Ok(r)) => {
                            let fd = sock.op_fd(&r);
                            // SAFETY: the op lives in this future, which borrows `sock` for its
                            // whole life ('a), and a send op is movable.
                            let keep = unsafe { op::Lent::new(sock) };
                            SendState::Op(op::Op::send(r, fd, buf, keep))
                        }
                        Some(Err(e)) => return Poll::Ready((Err(e), buf)),
                        None => SendState::Ready(buf),
                    };
                }
                SendState::Done => panic!("spindle: write_owned polled after completion"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::Direction;
    use crate::io::{AsyncReadOwned, AsyncWriteOwned};
    use crate::net::{TcpListener, TcpStream};
    use crate::rt::{Builder, IoDriver};
    use spindle_core::loom::Ordering;

    /// Accepted connections are watched by the workers' reactors in turn on a multi-thread
    /// runtime (the acceptor's worker would otherwise dispatch every connection's events), and
    /// by the runtime's one reactor on a current-thread runtime.
    #[test]
    fn accepted_connections_spread_over_the_workers_reactors() {
        for (workers, multi) in [(2, true), (1, false)] {
            let rt = if multi {
                Builder::new_multi_thread().worker_threads(workers).build().unwrap()
            } else {
                Builder::new_current_thread().build().unwrap()
            };
            let reactors = rt.block_on(async {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap();
                let clients: Vec<_> = (0..4)
                    .map(|_| {
                        let mut c = std::net::TcpStream::connect(addr).unwrap();
                        std::io::Write::write_all(&mut c, b"x").unwrap();
                        c
                    })
                    .collect();
                let accepted = crate::spawn(async move {
                    let mut v = Vec::new();
                    for _ in 0..4 {
                        let s = l.accept().await.unwrap().0;
                        // Waiting for readiness arms the watch (lazily, for loopback peers).
                        std::future::poll_fn(|cx| s.io.reg.poll_ready(cx, Direction::Read)).await.unwrap();
                        v.push(s);
                    }
                    v
                })
                .await
                .unwrap();
                drop(clients);
                accepted.iter().map(|s| s.io.reg.watched_by().unwrap()).collect::<Vec<_>>()
            });
            let mut distinct = reactors.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), workers, "multi={multi}: {reactors:?}");
        }
    }

    /// Waits on a `&self` readiness method that give up (dropped before any event) leave the
    /// socket's waiter list: 200 tasks that each wait once on an idle socket and time out leave
    /// no waker behind (the list used to keep one per task until the next event, each keeping
    /// its task's allocation alive); a wait that ends with the event leaves nothing either.
    #[test]
    fn abandoned_shared_waits_leave_the_waiter_list() {
        for driver in [IoDriver::Epoll, IoDriver::Uring] {
            let Some(rt) = build_on(driver, Builder::new_multi_thread().worker_threads(2)) else { continue };
            rt.block_on(async {
                let u = std::sync::Arc::new(crate::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                let waiting = |u: &crate::net::UdpSocket| u.io.shared.get().map_or(0, |f| f[0].waiters.len());
                // The first wait on a fresh socket may end at once (it tries eagerly, and
                // readiness may be reported spuriously, as in tokio).
                let _ = crate::time::timeout(std::time::Duration::from_micros(50), u.readable()).await;
                for _ in 0..200 {
                    let u = u.clone();
                    crate::spawn(async move {
                        let r = crate::time::timeout(std::time::Duration::from_micros(50), u.readable()).await;
                        assert!(r.is_err(), "nothing was sent");
                    })
                    .await
                    .unwrap();
                }
                assert_eq!(waiting(&u), 0, "{driver:?}: abandoned waits left their wakers");
                // Two tasks wait at once; a datagram wakes both, and neither stays listed.
                let waiters: Vec<_> = (0..2)
                    .map(|_| {
                        let u = u.clone();
                        crate::spawn(async move { u.readable().await.unwrap() })
                    })
                    .collect();
                while waiting(&u) < 2 {
                    crate::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                tx.send_to(b"x", u.local_addr().unwrap()).unwrap();
                for w in waiters {
                    w.await.unwrap();
                }
                assert_eq!(waiting(&u), 0, "{driver:?}");
            });
        }
    }

    /// On a per-core runtime, a socket created outside the cores (here: both ends of 4
    /// connections, made in `block_on`, dealt to the cores in turn at creation) is watched by the
    /// core that first waits on it, whichever that is.
    #[test]
    fn sockets_made_outside_a_per_core_runtimes_cores_are_watched_by_their_first_user() {
        for driver in [IoDriver::Epoll, IoDriver::Uring] {
            let Some(rt) = build_on(driver, Builder::new_per_core().worker_threads(2)) else { continue };
            let ends = rt.block_on(async {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                pairs_through(&l, 4).await.into_iter().flat_map(|(c, s)| [c, s]).collect::<Vec<_>>()
            });
            for (i, end) in ends.into_iter().enumerate() {
                // Every other end waits on the core it was not dealt to (the deal alternates).
                let core = (i / 2 + i) % 2;
                let (watched, here) = rt
                    .block_on(rt.handle().spawn_on(core, async move {
                        std::future::poll_fn(|cx| end.io.reg.poll_ready(cx, Direction::Write)).await.unwrap();
                        let here = crate::rt::current_reactor().unwrap();
                        (end.io.reg.watched_by().unwrap(), std::sync::Arc::as_ptr(&here) as usize)
                    }))
                    .unwrap();
                assert_eq!(watched, here, "{driver:?}: end {i} is watched by another core than its user's");
            }
        }
    }

    /// On a multi-thread runtime, the two ends of a loopback connection made and accepted in the
    /// runtime are served by one worker (on epoll its reactor watches both; on io_uring both
    /// ends' ops go to its ring), whichever end's task runs first and wherever the ends were
    /// created (here: all connected by one task, each end then used by a task of its own); the
    /// connections are spread over the workers. A connection from outside the runtime is placed
    /// as before (epoll: spread; io_uring: ops on the ring of the thread that runs them).
    #[test]
    fn loopback_connection_ends_in_one_runtime_share_a_worker() {
        const PAIRS: usize = 8;
        for driver in [IoDriver::Epoll, IoDriver::Uring] {
            let Some(rt) = build_on(driver, Builder::new_multi_thread().worker_threads(2)) else { continue };
            // Where a stream's I/O is served: its watch's reactor on epoll, its ops' on io_uring.
            let served_by = move |s: &TcpStream| match driver {
                IoDriver::Epoll => s.io.reg.watched_by(),
                _ => s.io.reg.placed_ops_reactor().map(|r| std::sync::Arc::as_ptr(r) as usize),
            };
            let (pairs, waiting) = rt.block_on(async move {
                crate::spawn(async move {
                    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let addr = l.local_addr().unwrap();
                    let tasks: Vec<_> = pairs_through(&l, PAIRS)
                        .await
                        .into_iter()
                        .map(|(mut c, mut s)| {
                            let server = crate::spawn(async move {
                                let (res, buf) = s.read_exact_owned(vec![0u8; 4]).await;
                                res.unwrap();
                                s.write_all_owned(buf).await.0.unwrap();
                                s
                            });
                            crate::spawn(async move {
                                c.write_all_owned(b"ping".to_vec()).await.0.unwrap();
                                let (res, buf) = c.read_exact_owned(vec![0u8; 4]).await;
                                res.unwrap();
                                assert_eq!(buf, b"ping");
                                (c, server.await.unwrap())
                            })
                        })
                        .collect();
                    let mut pairs = Vec::new();
                    for t in tasks {
                        let (c, s) = t.await.unwrap();
                        pairs.push((served_by(&c), served_by(&s)));
                    }
                    // A peer outside the runtime.
                    let mut outside = std::net::TcpStream::connect(addr).unwrap();
                    let (mut s, _) = l.accept().await.unwrap();
                    std::io::Write::write_all(&mut outside, b"hi").unwrap();
                    assert_eq!(s.read_exact_owned(vec![0u8; 2]).await.1, b"hi");
                    match driver {
                        IoDriver::Epoll => assert!(s.io.reg.watched_by().is_some()),
                        _ => assert!(s.io.reg.placed_ops_reactor().is_none(), "an outside peer is never matched"),
                    }
                    drop(outside);
                    let waiting = crate::rt::with_loopback_pairs(|p| p.len()).unwrap();
                    (pairs, waiting)
                })
                .await
                .unwrap()
            });
            for (c, s) in &pairs {
                assert!(c.is_some(), "{driver:?}: not placed: {pairs:?}");
                assert_eq!(c, s, "{driver:?}: the ends of a connection are served by different workers: {pairs:?}");
            }
            let mut used: Vec<_> = pairs.iter().map(|p| p.0).collect();
            used.sort();
            used.dedup();
            assert_eq!(used.len(), 2, "{driver:?}: every connection on one worker: {pairs:?}");
            // Matched connections leave no entry, and the outside connection's accepted end,
            // accepted with no connect of the runtime in flight, made none.
            assert_eq!(waiting, 0, "{driver:?}: entries left behind");
        }
    }

    /// A stream connected and used only through owned-buffer ops arms no readiness poll on
    /// io_uring (its CQE per received segment would be work for nothing), on both ends; on epoll
    /// both ends are registered from the start.
    #[test]
    fn owned_ops_on_io_uring_arm_no_readiness_poll() {
        on_each_driver(|driver, rt| {
            rt.block_on(async {
                let (mut c, mut s) = connected_pair().await;
                let (res, _) = c.write_all_owned(b"ping".to_vec()).await;
                res.unwrap();
                let (res, buf) = s.read_exact_owned(vec![0u8; 4]).await;
                res.unwrap();
                assert_eq!(buf, b"ping");
                let armed = driver == IoDriver::Epoll;
                assert_eq!(c.io.reg.is_armed(), armed, "connected end on {driver:?}");
                assert_eq!(s.io.reg.is_armed(), armed, "accepted end on {driver:?}");
            });
        });
    }

    /// Both ends of loopback connections inside a multi-thread runtime get a registered-file slot
    /// on the ring their ops go to, also when a task's first op is submitted from another
    /// worker's thread (which cannot install a slot on that ring, and must not decide that the
    /// socket gets none: its later ops, from the ring's own thread, do).
    #[test]
    fn placed_connections_get_a_registered_slot_on_their_ring() {
        const PAIRS: usize = 8;
        const EXCHANGES: usize = 20;
        let rt = match Builder::new_multi_thread().worker_threads(2).io_driver(IoDriver::Uring).build() {
            Ok(rt) => rt,
            Err(e) => return eprintln!("io_uring unavailable, skipped: {e}"),
        };
        if !crate::driver::uring::files::supported() {
            return eprintln!("kernel older than 6.13: registered files are not used, test skipped");
        }
        rt.block_on(async move {
            crate::spawn(async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let tasks: Vec<_> = pairs_through(&l, PAIRS)
                    .await
                    .into_iter()
                    .map(|(mut c, mut s)| {
                        let server = crate::spawn(async move {
                            let mut buf = vec![0u8; 4];
                            for _ in 0..EXCHANGES {
                                let (res, b) = s.read_exact_owned(buf).await;
                                res.unwrap();
                                let (res, b) = s.write_all_owned(b).await;
                                res.unwrap();
                                buf = b;
                            }
                            s
                        });
                        crate::spawn(async move {
                            let mut buf = vec![0u8; 4];
                            for i in 0..EXCHANGES {
                                c.write_all_owned(vec![i as u8; 4]).await.0.unwrap();
                                let (res, b) = c.read_exact_owned(buf).await;
                                res.unwrap();
                                assert_eq!(b, [i as u8; 4]);
                                buf = b;
                            }
                            (c, server.await.unwrap())
                        })
                    })
                    .collect();
                for t in tasks {
                    let (c, s) = t.await.unwrap();
                    for (end, name) in [(&c, "connecting"), (&s, "accepted")] {
                        let ring = end.io.reg.placed_ops_reactor().expect("a pair in the runtime is matched");
                        let f = end.io.fixed.get().expect("decided by an op on the ring's own thread");
                        assert!(std::sync::Arc::ptr_eq(&f.reactor, ring), "the {name} end's slot is on another ring");
                        assert!(f.slot.is_some(), "the {name} end got no slot");
                    }
                }
            })
            .await
            .unwrap()
        });
    }

    /// On io_uring, a stream's owned-buffer ops name it by a slot of the ring's registered-file
    /// table (current-thread and multi-thread runtimes); dropping the stream releases the slot,
    /// so the peer sees the close: dropped in a task, on the thread that drove a current-thread
    /// runtime after its `block_on` returned, or after the runtime was dropped.
    #[test]
    fn owned_ops_on_io_uring_use_a_registered_slot_released_with_the_stream() {
        use std::io::Read as _;
        use std::time::{Duration, Instant};
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum DropStream {
            InTask,
            OutsideBlockOn,
            AfterRuntime,
        }
        for multi in [false, true] {
            for when in [DropStream::InTask, DropStream::OutsideBlockOn, DropStream::AfterRuntime] {
                let rt = if multi {
                    Builder::new_multi_thread().worker_threads(2).io_driver(IoDriver::Uring).build()
                } else {
                    Builder::new_current_thread().io_driver(IoDriver::Uring).build()
                };
                let Ok(rt) = rt else {
                    eprintln!("io_uring unavailable, test skipped");
                    return;
                };
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                let (stream, ring) = rt.block_on(async move {
                    crate::spawn(async move {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        let (res, _) = s.write_all_owned(b"ping".to_vec()).await;
                        res.unwrap();
                        let f = s.io.fixed.get().expect("decided by the first op");
                        let ring = f.reactor.clone();
                        if crate::driver::uring::files::supported() {
                            assert!(f.slot.is_some(), "multi={multi}: the op got no slot");
                            assert_eq!(ring.as_uring().unwrap().files_in_use(), 1);
                        }
                        (s, ring)
                    })
                    .await
                    .unwrap()
                });
                let (mut peer, _) = l.accept().unwrap();
                peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut got = [0u8; 4];
                peer.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"ping");
                match when {
                    DropStream::InTask => rt.block_on(async move {
                        crate::spawn(async move { drop(stream) }).await.unwrap();
                        let deadline = Instant::now() + Duration::from_secs(5);
                        while ring.as_uring().unwrap().files_in_use() > 0 {
                            assert!(Instant::now() < deadline, "multi={multi}: the slot was never released");
                            crate::time::sleep(Duration::from_millis(1)).await;
                        }
                    }),
                    DropStream::OutsideBlockOn => drop(stream),
                    DropStream::AfterRuntime => {
                        drop(rt);
                        drop(stream);
                        assert_eq!(read_retrying(&mut peer, &mut got), 0, "multi={multi} {when:?}: no close seen");
                        continue;
                    }
                }
                assert_eq!(read_retrying(&mut peer, &mut got), 0, "multi={multi} {when:?}: no close seen");
                drop(rt);
            }
        }
    }

    /// A blocking read that retries when a signal interrupts it.
    fn read_retrying(s: &mut std::net::TcpStream, buf: &mut [u8]) -> usize {
        use std::io::Read as _;
        loop {
            match s.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.unwrap(),
            }
        }
    }

    /// Runs `body` on a current-thread runtime of each backend (the io_uring half is skipped,
    /// with a note, where io_uring is unavailable).
    fn on_each_driver(body: impl Fn(IoDriver, &crate::rt::Runtime)) {
        for driver in [IoDriver::Uring, IoDriver::Epoll] {
            if let Some(rt) = build_on(driver, &mut Builder::new_current_thread()) {
                body(driver, &rt);
            }
        }
    }

    /// Pooled receives and multishot accepts that give up leave no waker behind: on an idle
    /// connection and an idle listener (waiting for a result, or for readiness on epoll), and on
    /// a socket whose buffer pool is exhausted (waiting for a buffer). Those lists used to keep a
    /// waker per task that gave up until the next result or returned buffer, each keeping its
    /// task's allocation alive.
    #[test]
    fn abandoned_pooled_waits_leave_their_lists() {
        use crate::time::timeout;
        use futures::StreamExt;
        use std::io::Write;
        use std::sync::Arc;
        use std::time::Duration;
        for driver in [IoDriver::Epoll, IoDriver::Uring] {
            let Some(rt) = build_on(driver, Builder::new_multi_thread().worker_threads(2)) else { continue };
            rt.block_on(async {
                let l = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
                let addr = l.local_addr().unwrap();
                let writer = std::thread::spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    // More than a pool holds (256 x 4 KiB); fails once the reader is gone.
                    let _ = c.write_all(&vec![7u8; 2 << 20]);
                });
                let (s, _) = l.accept().await.unwrap();
                let s = Arc::new(s);
                let give_up = Duration::from_millis(1);
                // Run the pool dry: hold every buffer the stream yields until it reports ENOBUFS.
                let mut held = Vec::new();
                {
                    let mut bufs = s.recv_stream();
                    loop {
                        match bufs.next().await.expect("early end of stream") {
                            Ok(b) => held.push(b),
                            Err(e) if e.kind() == std::io::ErrorKind::OutOfMemory => break,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                // Receives now wait for a buffer (the first may report ENOBUFS once more).
                let _ = timeout(give_up, s.recv_pooled()).await;
                for _ in 0..100 {
                    let s = s.clone();
                    crate::spawn(async move { assert!(timeout(give_up, s.recv_pooled()).await.is_err()) })
                        .await
                        .unwrap();
                }
                assert_eq!(super::super::pooled::waiting(&s.io), (0, 0), "{driver:?}: exhausted pool");
                // Buffers back, the data drained: an idle connection.
                drop(held);
                loop {
                    match timeout(Duration::from_millis(50), s.recv_pooled()).await {
                        Ok(Ok(b)) if !b.is_empty() => continue,
                        _ => break,
                    }
                }
                for _ in 0..100 {
                    let s = s.clone();
                    crate::spawn(async move {
                        let _ = timeout(give_up, s.recv_pooled()).await;
                    })
                    .await
                    .unwrap();
                }
                assert_eq!(super::super::pooled::waiting(&s.io), (0, 0), "{driver:?}: idle connection");
                assert_eq!(s.io.shared.get().map_or(0, |f| f[0].waiters.len()), 0, "{driver:?}: readiness");
                // An idle listener.
                for _ in 0..100 {
                    let l = l.clone();
                    crate::spawn(async move { assert!(timeout(give_up, l.accept()).await.is_err()) }).await.unwrap();
                }
                assert_eq!(super::super::pooled::waiting(&l.io).0, 0, "{driver:?}: idle listener");
                drop(s);
                writer.join().unwrap();
            });
        }
    }

    /// `builder`'s runtime on `driver`; `None`, with a note, where io_uring is unavailable (the
    /// caller skips that half).
    fn build_on(driver: IoDriver, builder: &mut Builder) -> Option<crate::rt::Runtime> {
        match builder.io_driver(driver).build() {
            Ok(rt) => Some(rt),
            Err(e) => {
                assert_eq!(driver, IoDriver::Uring, "{e}");
                eprintln!("io_uring unavailable, that half skipped: {e}");
                None
            }
        }
    }

    /// `n` connections to `l` made in this runtime: (connecting end, accepted end).
    async fn pairs_through(l: &TcpListener, n: usize) -> Vec<(TcpStream, TcpStream)> {
        let addr = l.local_addr().unwrap();
        let mut ends = Vec::new();
        for _ in 0..n {
            let c = TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            ends.push((c, s));
        }
        ends
    }

    async fn connected_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accept = crate::spawn(async move { l.accept().await.unwrap().0 });
        let c = TcpStream::connect(addr).await.unwrap();
        (c, accept.await.unwrap())
    }

    /// The io_uring receive hint: a receive that drained the socket makes the next one wait for
    /// data first (`POLL_FIRST`), one that left data behind does not; either way every byte
    /// arrives, whether it was queued before the receive was submitted or came after.
    #[test]
    fn recv_drained_hint_follows_the_socket_and_loses_nothing() {
        let rt = match Builder::new_current_thread().io_driver(IoDriver::Uring).build() {
            Ok(rt) => rt,
            Err(e) => return eprintln!("io_uring unavailable, skipped: {e}"),
        };
        rt.block_on(async {
            let (mut c, mut s) = connected_pair().await;
            let drained = |s: &TcpStream| s.io.recv_drained.load(Ordering::Relaxed);
            assert!(!drained(&s), "no receive yet: no hint");
            // 8 bytes queued, a 4-byte receive: data is left behind.
            c.write_all_owned(b"abcdefgh".to_vec()).await.0.unwrap();
            crate::time::sleep(std::time::Duration::from_millis(20)).await;
            let (res, buf) = s.read_owned(vec![0u8; 4]).await;
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"abcd"[..]));
            assert!(!drained(&s), "data was left behind");
            let (res, buf) = s.read_owned(vec![0u8; 16]).await;
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"efgh"[..]));
            assert!(drained(&s), "the socket was emptied");
            // Hint set, data already queued before the receive is submitted: found at once.
            c.write_all_owned(b"ij".to_vec()).await.0.unwrap();
            crate::time::sleep(std::time::Duration::from_millis(20)).await;
            let (res, buf) = s.read_owned(vec![0u8; 16]).await;
            assert_eq!((res.unwrap(), &buf[..]), (2, &b"ij"[..]));
            // Hint set, data comes later: the receive waits for it.
            let late = crate::spawn(async move {
                crate::time::sleep(std::time::Duration::from_millis(20)).await;
                c.write_all_owned(b"kl".to_vec()).await.0.unwrap();
                c
            });
            let (res, buf) = s.read_owned(vec![0u8; 16]).await;
            assert_eq!((res.unwrap(), &buf[..]), (2, &b"kl"[..]));
            drop(late.await.unwrap());
            // End of stream clears it (a closed socket never waits).
            let (res, _) = s.read_owned(vec![0u8; 16]).await;
            assert_eq!(res.unwrap(), 0);
            assert!(!drained(&s));
        });
    }

    /// A readiness read that empties a TCP socket drops its read readiness (the kernel says so
    /// through `TCP_INQ`): the next read waits for an event instead of first trying a `recv`
    /// that finds nothing. A read that leaves bytes keeps it. Nothing is lost either way, on
    /// both backends (io_uring serves these reads through readiness too).
    #[test]
    fn readiness_read_that_empties_the_socket_drops_readiness() {
        use futures::{AsyncReadExt, AsyncWriteExt};
        on_each_driver(|driver, rt| {
            rt.block_on(async {
                let (c, mut s) = connected_pair().await;
                let settle = || crate::time::sleep(std::time::Duration::from_millis(20));
                // First a read that waits for its data: the readiness watch is armed (io_uring
                // arms it on the first wait) and event-driven from here on.
                let first = crate::spawn(async move {
                    let mut c = c;
                    crate::time::sleep(std::time::Duration::from_millis(20)).await;
                    c.write_all(b"x").await.unwrap();
                    c
                });
                let mut one = [0u8; 1];
                assert_eq!(s.read(&mut one).await.unwrap(), 1);
                let mut c = first.await.unwrap();
                c.write_all(b"abcdefgh").await.unwrap();
                settle().await;
                let mut buf = [0u8; 4];
                assert_eq!(s.read(&mut buf).await.unwrap(), 4);
                assert_eq!(&buf, b"abcd");
                assert!(s.io.reg.is_readable(), "bytes left: still readable ({driver:?})");
                let mut buf = [0u8; 16];
                assert_eq!(s.read(&mut buf).await.unwrap(), 4);
                assert_eq!(&buf[..4], b"efgh");
                assert!(!s.io.reg.is_readable(), "emptied: readiness dropped ({driver:?})");
                // Data that comes later is read: the readiness comes back with its event.
                let late = crate::spawn(async move {
                    crate::time::sleep(std::time::Duration::from_millis(20)).await;
                    c.write_all(b"ij").await.unwrap();
                    c
                });
                assert_eq!(s.read(&mut buf).await.unwrap(), 2);
                assert_eq!(&buf[..2], b"ij");
                // A vectored read empties it the same way.
                let mut c = late.await.unwrap();
                c.write_all(b"klmn").await.unwrap();
                settle().await;
                let (mut a, mut b) = ([0u8; 1], [0u8; 16]);
                let n =
                    s.readv(&mut [std::io::IoSliceMut::new(&mut a), std::io::IoSliceMut::new(&mut b)]).await.unwrap();
                assert_eq!((n, a[0], &b[..3]), (4, b'k', &b"lmn"[..]));
                assert!(!s.io.reg.is_readable(), "emptied by a vectored read ({driver:?})");
                // And end of stream after an emptying read.
                drop(c);
                assert_eq!(s.read(&mut buf).await.unwrap(), 0);
            });
        });
    }
}

/// The socket's memory layout, which is per-connection memory.
#[cfg(test)]
mod layout {
    use std::alloc::Layout;

    /// Every connection's socket is one `Arc` allocation: its size class is per-connection memory
    /// (the bench's `memory` row). 16 more bytes would take it from glibc's 192-byte chunk to
    /// the 208-byte one, as a second lazy fan-out field once did.
    #[test]
    fn a_socket_stays_in_its_allocation_size_class() {
        // An `Arc`'s allocation: two counts, then the value.
        let (inner, _) = Layout::new::<[usize; 2]>().extend(Layout::new::<super::PollSocket>()).unwrap();
        let bytes = inner.pad_to_align().size();
        assert!(bytes <= 184, "Arc<PollSocket> allocates {bytes} bytes (at most 184 fit a 192-byte chunk)");
    }
}
