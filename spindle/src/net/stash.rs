//! What cancelled reads took: a per-socket [`Stash`] that every later read drains first.
//!
//! # Why
//!
//! On io_uring an owned read is a `RECV` (stream sockets) or `RECVMSG` (datagram sockets) op.
//! Dropping its future in flight orphans the op: the reactor pushes an `ASYNC_CANCEL`, but data
//! that arrives before the cancel reaches the kernel is still taken by the request. With pinned
//! rings the window is wide (a cancel pushed off the ring's owner waits until the owner submits
//! it), and without a stash those bytes went away with the op's buffer: a dropped read (a
//! `timeout`, a `select!` branch that lost) silently lost stream data.
//!
//! # How
//!
//! - The read ops here ([`RecvOp`], [`RecvMsgOp`]) own the socket (an `Arc<PollSocket>`, which
//!   also keeps the fd open until the final completion) and implement
//!   [`OpData::orphaned_completion`]: the final result of an orphaned read goes into the socket's
//!   stash — the bytes a stream read took, a whole datagram with its sender, end of stream, or an
//!   error the kernel reported (and so cleared from the socket) — and the socket's count of
//!   orphaned reads in flight goes down, waking readers waiting for it.
//! - [`StashedOp`] wraps the op future: dropped while its op is in flight, it counts the read as
//!   orphaned *before* the op itself is orphaned (the hook can run inside that very drop, when the
//!   op had completed but its result was not taken yet).
//! - Every read on the socket (owned, slice, vectored, peek, pooled; stream and datagram) first
//!   looks at the stash: while orphaned reads are in flight it waits for them (their cancel is
//!   pushed already, so their final completion comes soon), then takes stashed items before it
//!   reads the socket. A stream socket has one reader at a time (reads take `&mut`), and a reader
//!   never submits while an orphan is in flight, so a stream socket has at most one orphaned read
//!   and byte order is kept. Datagram sockets may have several receivers at once: each stashed
//!   datagram is delivered whole (to one receiver) and none is lost, but datagrams received by
//!   concurrent receivers carry no order anyway.
//! - Unused, a stash costs one atomic load per read: `busy` is set exactly while something is
//!   stashed or an orphaned read is in flight.
//!
//! On epoll there are no ops to orphan (a readiness read happens inside the poll that returns
//! it), so the stash stays empty and only its flag is ever looked at.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, types};
use socket2::{SockAddr, SockAddrStorage};
use spindle_core::loom::unmodelled::{AtomicBool, Ordering};

use super::socket::PollSocket;
use crate::driver::uring::op::{new_on, Completion, Keeper, Lent, MsgHdr, Op, OpData, OpFd};
use crate::driver::{Reactor, ReactorRef};
use crate::io::IoBufMut;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One thing an orphaned read took.
enum Item {
    /// Received bytes (stream: `pos` of them were already delivered; datagram: one whole
    /// datagram and its sender).
    Data { data: Vec<u8>, pos: usize, from: Option<SockAddr> },
    /// End of stream.
    Eof,
    /// An error the kernel reported to the read (an errno).
    Err(i32),
}

/// The per-socket stash (see the module docs).
pub(crate) struct Stash {
    /// Set while `inner` holds items or counts orphaned reads in flight; cleared (under the lock)
    /// by the reader that finds both empty. Readers look at it before taking the lock.
    busy: AtomicBool,
    /// Made by the first orphaned read: most sockets never have one, and inline it was 56 of
    /// the heap bytes of every idle connection.
    inner: OnceLock<Box<Mutex<Inner>>>,
}

#[derive(Default)]
struct Inner {
    items: VecDeque<Item>,
    /// Orphaned reads whose final completion has not been stashed yet.
    orphans: usize,
    /// Readers waiting for `orphans` to drop to zero.
    waiters: Vec<Waker>,
}

impl Inner {
    fn is_idle(&self) -> bool {
        self.items.is_empty() && self.orphans == 0
    }
}

/// Where a read delivers stashed bytes: consecutive chunks fill it in order.
pub(crate) trait Dest {
    /// Copies as much of `src` as fits after what was put so far; returns how much.
    fn put(&mut self, src: &[u8]) -> usize;
}

/// A contiguous destination (possibly uninitialized memory; only initialized bytes are written).
pub(crate) struct Fill<'a> {
    dst: &'a mut [MaybeUninit<u8>],
    at: usize,
}

impl<'a> Fill<'a> {
    pub(crate) fn new(dst: &'a mut [MaybeUninit<u8>]) -> Fill<'a> {
        Fill { dst, at: 0 }
    }
}

impl Dest for Fill<'_> {
    fn put(&mut self, src: &[u8]) -> usize {
        let room = &mut self.dst[self.at..];
        let k = room.len().min(src.len());
        for (d, s) in room[..k].iter_mut().zip(src) {
            d.write(*s);
        }
        self.at += k;
        k
    }
}

/// A vectored destination: the slices are filled in order.
pub(crate) struct FillVectored<'a, 'b> {
    bufs: &'a mut [IoSliceMut<'b>],
    idx: usize,
    at: usize,
}

impl<'a, 'b> FillVectored<'a, 'b> {
    pub(crate) fn new(bufs: &'a mut [IoSliceMut<'b>]) -> FillVectored<'a, 'b> {
        FillVectored { bufs, idx: 0, at: 0 }
    }
}

impl Dest for FillVectored<'_, '_> {
    fn put(&mut self, mut src: &[u8]) -> usize {
        let mut n = 0;
        while !src.is_empty() && self.idx < self.bufs.len() {
            let room = &mut self.bufs[self.idx][self.at..];
            let k = room.len().min(src.len());
            room[..k].copy_from_slice(&src[..k]);
            n += k;
            src = &src[k..];
            self.at += k;
            if self.at == self.bufs[self.idx].len() {
                self.idx += 1;
                self.at = 0;
            }
        }
        n
    }
}

/// A stashed datagram's length as delivered and its sender.
pub(crate) type Datagram = (usize, Option<SockAddr>);

/// Whether a read delivers stashed items or only copies them (peek).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Take,
    Peek,
}

impl Default for Stash {
    fn default() -> Stash {
        Stash { busy: AtomicBool::new(false), inner: OnceLock::new() }
    }
}

impl Stash {
    /// The stashed items and orphan count, locked (made on first use).
    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        lock(self.inner.get_or_init(Default::default))
    }

    /// Whether anything is stashed or an orphaned read is in flight (the reads' fast check).
    #[inline]
    pub(crate) fn is_busy(&self) -> bool {
        // Acquire: a reader that sees the flag set by another thread's hook sees its items too
        // (they are read under the lock anyway; this keeps the fast path's answer current).
        self.busy.load(Ordering::Acquire)
    }

    /// A read's op was orphaned in flight: its completion will be stashed.
    fn orphan_started(&self) {
        let mut inner = self.lock_inner();
        inner.orphans += 1;
        self.busy.store(true, Ordering::Release);
    }

    /// An orphaned read's final completion: stash what it took (if anything) and wake the
    /// readers waiting for it.
    fn orphan_finished(&self, item: Option<Item>) {
        let waiters = {
            let mut inner = self.lock_inner();
            if let Some(it) = item {
                inner.items.push_back(it);
            }
            inner.orphans = inner.orphans.saturating_sub(1);
            self.settle(&inner);
            std::mem::take(&mut inner.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Locks the stash for a read: `Ready(None)` when nothing is stashed and nothing in flight
    /// (the reader goes to the socket), `Pending` while orphaned reads are in flight with nothing
    /// stashed yet (or the shut-down error if nothing will complete them any more), else the
    /// locked stash, whose items are not empty.
    fn poll_items(
        &self,
        cx: &mut Context<'_>,
        shut_down: impl FnOnce() -> bool,
    ) -> Poll<Option<io::Result<MutexGuard<'_, Inner>>>> {
        if !self.is_busy() {
            return Poll::Ready(None);
        }
        let shut_down = shut_down();
        let mut inner = self.lock_inner();
        if !inner.items.is_empty() {
            // Stashed items come first: they were received before anything the socket holds
            // now (and before anything an orphan still in flight may take).
            return Poll::Ready(Some(Ok(inner)));
        }
        if inner.orphans == 0 {
            self.busy.store(false, Ordering::Release);
            return Poll::Ready(None);
        }
        if shut_down {
            return Poll::Ready(Some(Err(crate::driver::shut_down_error())));
        }
        if !inner.waiters.iter().any(|w| w.will_wake(cx.waker())) {
            inner.waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Clears `busy` when nothing is stashed or in flight (the caller holds the lock).
    fn settle(&self, inner: &Inner) {
        if inner.is_idle() {
            self.busy.store(false, Ordering::Release);
        }
    }

    /// A stream read's look at the stash: `Ready(None)` to read the socket, `Pending` while an
    /// orphaned read is in flight, else what was stashed: as many bytes as `dst` takes (over
    /// several chunks), or the end of stream or error that follows them.
    pub(crate) fn poll_stream(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn Dest,
        mode: Mode,
        shut_down: impl FnOnce() -> bool,
    ) -> Poll<Option<io::Result<usize>>> {
        let mut inner = match std::task::ready!(self.poll_items(cx, shut_down)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            Some(Ok(inner)) => inner,
        };
        let mut n = 0;
        let mut done = 0;
        let mut res = None;
        for item in inner.items.iter_mut() {
            match item {
                Item::Data { data, pos, .. } => {
                    let rest = &data[*pos..];
                    let k = dst.put(rest);
                    n += k;
                    if k < rest.len() {
                        if mode == Mode::Take {
                            *pos += k;
                        }
                        break;
                    }
                    done += 1;
                }
                // The bytes before it first; the end or error is the next read's.
                Item::Eof | Item::Err(_) if n > 0 => break,
                Item::Eof => {
                    done += 1;
                    break;
                }
                Item::Err(e) => {
                    res = Some(io::Error::from_raw_os_error(*e));
                    done += 1;
                    break;
                }
            }
        }
        if mode == Mode::Take {
            inner.items.drain(..done);
            self.settle(&inner);
        }
        Poll::Ready(Some(match res {
            Some(e) => Err(e),
            None => Ok(n),
        }))
    }

    /// A datagram read's look at the stash (as [`poll_stream`](Self::poll_stream)): one whole
    /// datagram (truncated to `dst`, as a receive would) and its sender, or an error.
    pub(crate) fn poll_datagram(
        &self,
        cx: &mut Context<'_>,
        dst: &mut dyn Dest,
        mode: Mode,
        shut_down: impl FnOnce() -> bool,
    ) -> Poll<Option<io::Result<Datagram>>> {
        let mut inner = match std::task::ready!(self.poll_items(cx, shut_down)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e))),
            Some(Ok(inner)) => inner,
        };
        let res = match inner.items.front() {
            // Not empty (`poll_items`); read the socket if it ever were.
            None => return Poll::Ready(None),
            Some(Item::Data { data, pos, from }) => Ok((dst.put(&data[*pos..]), from.clone())),
            Some(Item::Eof) => Ok((0, None)),
            Some(Item::Err(e)) => Err(io::Error::from_raw_os_error(*e)),
        };
        if mode == Mode::Take {
            inner.items.pop_front();
            self.settle(&inner);
        }
        Poll::Ready(Some(res))
    }
}

/// What an orphaned read's errno leaves for the next reader: nothing when the read took nothing
/// (cancelled, or interrupted / would block, which a retry reports again by itself), else the
/// error, which the kernel cleared from the socket when it reported it.
fn errno_item(errno: i32) -> Option<Item> {
    match errno {
        libc::ECANCELED | libc::EINTR | libc::EAGAIN => None,
        e => Some(Item::Err(e)),
    }
}

/// The first `n` bytes of an owned buffer the kernel filled, copied out.
///
/// # Safety
///
/// The kernel wrote the first `n` bytes (`n <= bytes_total`) and no longer writes the buffer.
unsafe fn taken<B: IoBufMut>(buf: &mut B, n: usize) -> Vec<u8> {
    let n = n.min(buf.bytes_total());
    // SAFETY: the caller guarantees the first `n` bytes are initialized and no longer written;
    // `IoBufMut` guarantees `bytes_total` bytes at the stable pointer, kept alive by the borrow.
    unsafe { std::slice::from_raw_parts(buf.stable_mut_ptr(), n) }.to_vec()
}

/// `IORING_RECVSEND_POLL_FIRST` (a recv's `ioprio`): wait for data before trying to receive.
const RECVSEND_POLL_FIRST: u16 = 1;

/// A stream socket's `recv` into an owned buffer; an orphaned one stashes what it took.
pub(crate) struct RecvOp<B> {
    /// The socket: keeps the fd open until the final completion, and receives the stash.
    sock: Lent<PollSocket>,
    /// The socket's fd, or its slot in the ring's registered-file table.
    fd: OpFd,
    buf: B,
}

// SAFETY: the SQE points at `buf`'s stable pointer, valid for `bytes_total` bytes (IoBufMut),
// owned by the op value until its final completion. It points nowhere into the value itself
// (the buffer's storage does not move with it: the `IoBuf` contract), so the value is movable.
unsafe impl<B: IoBufMut> OpData for RecvOp<B> {
    const MOVABLE: bool = true;
    const HAS_ORPHAN_HOOK: bool = true;

    fn detach(&self) -> Option<Keeper> {
        Some(self.sock.keeper())
    }

    fn fall_back_to_fd(&mut self) -> bool {
        self.fd.fall_back()
    }

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(u32::MAX as usize) as u32;
        let ioprio = if self.sock.recv_drained.load(Ordering::Relaxed) { RECVSEND_POLL_FIRST } else { 0 };
        new_on!(Recv, self.fd, self.buf.stable_mut_ptr(), len).ioprio(ioprio).build()
    }

    fn orphaned_completion(&mut self, result: i32) {
        let item = match result {
            // SAFETY: the final completion says the kernel wrote `n` bytes, and it is done.
            n if n > 0 => Some(Item::Data { data: unsafe { taken(&mut self.buf, n as usize) }, pos: 0, from: None }),
            // An empty buffer reads 0 without meaning anything.
            0 if self.buf.bytes_total() == 0 => None,
            0 => Some(Item::Eof),
            e => errno_item(-e),
        };
        self.sock.stash.orphan_finished(item);
    }
}

/// A datagram socket's `recvmsg` into an owned buffer, with the sender's address; an orphaned one
/// stashes the datagram it took, whole.
pub(crate) struct RecvMsgOp<B> {
    sock: Arc<PollSocket>,
    buf: B,
    addr: SockAddrStorage,
    hdr: MsgHdr,
}

impl<B: IoBufMut> RecvMsgOp<B> {
    fn new(sock: Arc<PollSocket>, buf: B) -> RecvMsgOp<B> {
        RecvMsgOp { sock, buf, addr: SockAddrStorage::zeroed(), hdr: MsgHdr::new() }
    }

    /// The sender's address the kernel wrote (once the op completed).
    fn from(&mut self) -> SockAddr {
        let len = self.hdr.name_len().min(self.addr.size_of());
        let storage = std::mem::replace(&mut self.addr, SockAddrStorage::zeroed());
        // SAFETY: the kernel wrote the sender's address into the storage and its length (capped
        // at the storage's size above) into `msg_namelen`.
        unsafe { SockAddr::new(storage, len) }
    }
}

// SAFETY: the SQE points at `self.hdr.msg`, whose iovec points at `buf`'s stable pointer for
// `bytes_total` writable bytes and whose name points at `self.addr` (its size given): all inside
// the boxed op value (never moved until the final completion) or the buffer's stable storage.
unsafe impl<B: IoBufMut> OpData for RecvMsgOp<B> {
    const HAS_ORPHAN_HOOK: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        let (len, size) = (self.buf.bytes_total(), self.addr.size_of());
        self.hdr.set(self.buf.stable_mut_ptr(), len, &mut self.addr, size);
        opcode::RecvMsg::new(types::Fd(self.sock.fd()), self.hdr.msg_mut()).build()
    }

    fn orphaned_completion(&mut self, result: i32) {
        let item = if result >= 0 {
            // A datagram (possibly empty, possibly truncated to the buffer as any receive of it).
            // SAFETY: the final completion says the kernel wrote `result` bytes, and it is done.
            let data = unsafe { taken(&mut self.buf, result as usize) };
            Some(Item::Data { data, pos: 0, from: Some(self.from()) })
        } else {
            errno_item(-result)
        };
        self.sock.stash.orphan_finished(item);
    }
}

/// An op future that counts its op as an orphaned read of `stash` when dropped in flight.
pub(crate) struct StashedOp<'a, T: OpData> {
    op: Op<'a, T>,
    stash: &'a Stash,
    /// Submitted (a poll returned `Pending`) and its result not taken.
    in_flight: bool,
}

impl<'a, T: OpData> StashedOp<'a, T> {
    fn new(reactor: ReactorRef<'a>, stash: &'a Stash, data: T) -> StashedOp<'a, T> {
        StashedOp { op: Op::on(reactor, data), stash, in_flight: false }
    }
}

impl<'a, B: IoBufMut> StashedOp<'a, RecvOp<B>> {
    /// A `recv` op on stream socket `sock` into `buf`, on `reactor` (what it takes if dropped in
    /// flight is stashed); [`recv_done`] turns its completion into the read's result.
    pub(super) fn recv(reactor: ReactorRef<'a>, sock: &'a Arc<PollSocket>, buf: B) -> StashedOp<'a, RecvOp<B>> {
        let fd = sock.op_fd(&reactor);
        // SAFETY: the op borrows `sock` for its whole life ('a), and `RecvOp` is movable.
        let sock_ref = unsafe { Lent::new(sock) };
        StashedOp::new(reactor, &sock.stash, RecvOp { sock: sock_ref, fd, buf })
    }
}

impl<T: OpData> Future for StashedOp<'_, T> {
    type Output = Completion<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let this = self.get_mut();
        // An op future is pending exactly while its op is submitted and its result not taken
        // (the first poll either submits or, on a shut-down reactor, completes at once).
        match Pin::new(&mut this.op).poll(cx) {
            Poll::Ready(c) => {
                this.in_flight = false;
                Poll::Ready(c)
            }
            Poll::Pending => {
                this.in_flight = true;
                Poll::Pending
            }
        }
    }
}

impl<T: OpData> Drop for StashedOp<'_, T> {
    fn drop(&mut self) {
        if self.in_flight {
            // Counted before `op` is dropped (after this body): dropping it orphans the op,
            // and when the op already completed its hook runs inside that drop.
            self.stash.orphan_started();
        }
    }
}

/// What a stream `recv` op's completion gives its caller: the byte count (or error) and the
/// buffer with those bytes initialized; notes whether the socket was left drained.
pub(super) fn recv_done<B: IoBufMut>(sock: &PollSocket, c: Completion<RecvOp<B>>) -> (io::Result<usize>, B) {
    let mut buf = c.data.buf;
    let res = c.result.map(|n| n as usize);
    // Data received and none left behind: the next receive will probably wait (see the field).
    let drained = matches!(res, Ok(n) if n > 0) && !io_uring::cqueue::sock_nonempty(c.flags);
    if sock.recv_drained.load(Ordering::Relaxed) != drained {
        sock.recv_drained.store(drained, Ordering::Relaxed);
    }
    if let Ok(n) = res {
        // SAFETY: the kernel initialized the first `n <= bytes_total` bytes.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// `recvmsg` of one datagram and its sender into an owned buffer as an io_uring op (a datagram a
/// dropped one took is stashed whole).
pub(crate) async fn recv_msg<B: IoBufMut>(
    r: &Arc<Reactor>,
    sock: &Arc<PollSocket>,
    buf: B,
) -> (io::Result<(usize, SockAddr)>, B) {
    let mut c = StashedOp::new(ReactorRef::Borrowed(r), &sock.stash, RecvMsgOp::new(sock.clone(), buf)).await;
    let res = match c.result {
        Ok(n) => {
            let from = c.data.from();
            // SAFETY: the kernel initialized the first `n <= bytes_total` bytes.
            unsafe { c.data.buf.set_init(n as usize) };
            Ok((n as usize, from))
        }
        Err(e) => Err(e),
    };
    (res, c.data.buf)
}
