//! Completion ops on io_uring with owned resources (crate-internal API for net/fs).
//!
//! Every op is an [`Op<T>`] future over an [`OpData`] value holding the fd, the buffer and
//! whatever else the kernel reads or writes (iovecs, a socket address). The first poll moves the
//! data into a slab slot of the reactor it is created on and pushes the SQE; completion moves it
//! back. Dropping the future in flight orphans the slot (see the lifecycle in [`super`]).
//!
//! Convenience functions return what std-like callers want: [`read`], [`read_at`], [`write`],
//! [`write_at`], [`recv`], [`send`], [`readv`], [`writev`], [`send_to`] give
//! `BufResult<usize, B>`, [`recv_from`] also the sender's address; [`accept`] gives the new
//! (non-blocking, close-on-exec) fd and the peer address; [`connect`] gives `()`.
//!
//! The fd is a plain number: the caller keeps it open until the op's final completion, also when
//! the op is dropped (orphaned) — wrap the buffer in a [`KeepAlive`] holding the fd's owner, so
//! the slot that owns the buffer owns the fd too.
//! Each takes `&Arc<driver::Reactor>`, which must be an io_uring reactor: get it from
//! [`crate::driver::uring_reactor`] (`None` on epoll: use readiness instead).

// The users are the socket and file types, switching to completion I/O on io_uring.
#![allow(dead_code)]

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use io_uring::{opcode, squeue, types};
use socket2::{SockAddr, SockAddrStorage};

use crate::driver::Reactor;
use crate::io::{BufResult, IoBuf, IoBufMut};

/// The resources of one op and how to build its SQE.
///
/// # Safety
///
/// `sqe` may only put pointers into the SQE that point into `self`'s own heap-stable storage
/// (a buffer's stable pointer, a `Vec`'s heap, or `self` itself: unless the type says it is
/// [`MOVABLE`](Self::MOVABLE), the value is boxed before the call and never moved until the
/// final CQE) or into memory that outlives the op. A type may say `MOVABLE` only if its SQE
/// never points into the value itself, only into heap storage the value owns (which moving the
/// value does not move: the `IoBuf` contract) or memory outliving the op.
pub(crate) unsafe trait OpData: Send + 'static {
    /// Builds the SQE (its `user_data` is set by the reactor).
    fn sqe(&mut self) -> squeue::Entry;
    /// Whether an op the kernel cancelled without being asked may simply be submitted again
    /// (`ECANCELED` means it did nothing). The kernel cancels the requests a thread submitted
    /// when that thread exits, and a current-thread runtime may be driven by a thread that is
    /// gone by the time the op completes. True for reads, writes, sends, receives and accepts;
    /// not for `connect`, whose retry would find the connection attempt already under way.
    const RESUBMIT_IF_KERNEL_CANCELLED: bool = true;
    /// Whether the value may move while the op is in flight (see the safety contract). A movable
    /// op's data stays in its future while in flight (no allocation per op) and is boxed into
    /// the reactor's slot only if the future is dropped before the final completion; other ops
    /// are boxed at submission.
    const MOVABLE: bool = false;
    /// Whether a successful result is a new fd (closed by the reactor if the op is orphaned).
    const RETURNS_FD: bool = false;
    /// Whether [`orphaned_completion`](Self::orphaned_completion) does anything (ops without
    /// one skip the call).
    const HAS_ORPHAN_HOOK: bool = false;
    /// The op's future was dropped and its final completion `result` (a byte count or `-errno`)
    /// came in: the last chance to keep what the kernel did, e.g. give bytes a cancelled read
    /// took back to their socket. Called once, on whichever thread saw the completion (the
    /// ring's waiter, or the thread dropping a future whose op had already completed), before
    /// the data is dropped; never under a reactor lock.
    fn orphaned_completion(&mut self, result: i32) {
        let _ = result;
    }
    /// A movable op's future is dropped while the op is in flight, and the reactor's slot takes
    /// the data over until the final completion: a strong reference to what the data only
    /// borrowed from the future's owner (see [`Lent`]), which the slot keeps, and drops after the
    /// data. Called once, while the borrow still holds.
    fn detach(&self) -> Option<Keeper> {
        None
    }
    /// The op failed with `EBADF` naming a registered-file slot: name the fd instead and say so
    /// (the op is then submitted again), else `false` (see [`OpFd::fall_back`]).
    fn fall_back_to_fd(&mut self) -> bool {
        false
    }
}

/// The type-erased [`OpData::orphaned_completion`] a slot calls.
pub(crate) type OrphanHook = fn(&mut (dyn Any + Send), i32);

fn orphan_hook<T: OpData>(data: &mut (dyn Any + Send), result: i32) {
    if let Some(d) = data.downcast_mut::<T>() {
        d.orphaned_completion(result);
    }
}

/// What an op completed with: the CQE's result (`Ok(res)` or the errno), its flags, and the
/// resources given back.
pub(crate) struct Completion<T> {
    pub(crate) result: io::Result<u32>,
    pub(crate) flags: u32,
    pub(crate) data: T,
}

/// Where an op is in its life (its data is in [`Op::data`]: a movable op's stays there, unmoved,
/// while in flight; any other op's is boxed into the slot at submission).
#[derive(Clone, Copy)]
enum Phase {
    /// Nothing submitted: `data` holds the op's resources.
    Idle,
    /// Queued or in flight in slot (index, generation): the slot owns the data, or (movable ops)
    /// `data` still holds it, untouched until the final completion.
    Submitted {
        index: u32,
        generation: u32,
    },
    Done,
}

/// A completion op. See the module docs.
///
/// It usually borrows its reactor (the caller keeps the `Arc` for the op's life): no reference
/// count traffic per op; [`Op::on`] also takes an owned reference, for ops on a reactor other
/// than their object's. Dropping it in flight still orphans the slot on that reactor.
///
/// A movable op's data stays in one field from creation to completion, where the poll finds it:
/// no move into and out of a state enum on every poll. (Ops that are not movable are boxed into
/// their slot at submission and moved back at completion, as before.)
pub(crate) struct Op<'r, T: OpData> {
    reactor: &'r super::Reactor,
    phase: Phase,
    /// [`cancel`](Op::cancel) asked for the cancellation: an `ECANCELED` is the answer, not a
    /// reason to submit again (see `poll`).
    cancel_requested: bool,
    data: Option<T>,
    /// The reactor's `Arc` when the op holds one of its own ([`Op::on`] with an owned
    /// reference): `reactor` points into it. Dropped after `Drop::drop`, which still uses it.
    _owner: Option<Arc<Reactor>>,
}

impl<'r, T: OpData> Op<'r, T> {
    /// An op on `reactor` (which must be an io_uring reactor); nothing happens until polled.
    pub(crate) fn new(reactor: &'r Arc<Reactor>, data: T) -> Op<'r, T> {
        let reactor = reactor.as_uring().expect("spindle: completion op on a non-io_uring reactor");
        Op { reactor, phase: Phase::Idle, cancel_requested: false, data: Some(data), _owner: None }
    }

    /// An op on a borrowed or owned reactor (which must be an io_uring reactor).
    pub(crate) fn on(reactor: crate::driver::ReactorRef<'r>, data: T) -> Op<'r, T> {
        match reactor {
            crate::driver::ReactorRef::Borrowed(r) => Op::new(r, data),
            crate::driver::ReactorRef::Owned(arc) => {
                let uring: *const super::Reactor =
                    arc.as_uring().expect("spindle: completion op on a non-io_uring reactor");
                // SAFETY: the reference points into `arc`'s allocation, which `_owner` keeps alive
                // and unmoved as long as this op exists (it is dropped after `Drop::drop`, the
                // last use); it is never handed out beyond a borrow of the op (see `uring`).
                let reactor = unsafe { &*uring };
                Op { reactor, phase: Phase::Idle, cancel_requested: false, data: Some(data), _owner: Some(arc) }
            }
        }
    }

    /// The reactor, for as long as this op is borrowed (see `on`: it may point into `_owner`).
    fn uring(&self) -> &super::Reactor {
        self.reactor
    }

    /// Requests cancellation and waits for the op's final completion: returns the resources and
    /// the result (`ECANCELED`, or whatever completed or was transferred before the cancel).
    pub(crate) async fn cancel(mut self) -> Completion<T> {
        match self.phase {
            Phase::Idle => {
                self.phase = Phase::Done;
                let data = self.data.take().expect("spindle: an idle op holds its data");
                Completion { result: Err(io::Error::from_raw_os_error(libc::ECANCELED)), flags: 0, data }
            }
            Phase::Submitted { index, generation } => {
                self.cancel_requested = true;
                self.uring().cancel_op(index, generation);
                (&mut self).await
            }
            Phase::Done => panic!("spindle: op cancelled after completion"),
        }
    }
}

// Not structurally pinned: nothing ever pins the data (the kernel sees a movable op's heap
// storage, or a boxed value), so moving an `Op` is fine.
impl<T: OpData> Unpin for Op<'_, T> {}

impl<T: OpData> Future for Op<'_, T> {
    type Output = Completion<T>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        let this = self.get_mut();
        match this.phase {
            Phase::Idle => this.submit(cx),
            Phase::Submitted { index, generation } => {
                let (res, flags, boxed) = match this.uring().poll_op(index, generation, cx.waker()) {
                    Some(done) => done,
                    None => return Poll::Pending,
                };
                if let Some(b) = boxed {
                    this.data = Some(*b.downcast::<T>().expect("spindle: op slot holds another op's data"));
                }
                this.phase = Phase::Idle;
                if res == -libc::ECANCELED && !this.cancel_requested && T::RESUBMIT_IF_KERNEL_CANCELLED {
                    // Nobody here cancelled it: the thread that submitted it exited (see
                    // `RESUBMIT_IF_KERNEL_CANCELLED`). It did nothing; submit it again.
                    return this.submit(cx);
                }
                if res == -libc::EBADF && this.data.as_mut().is_some_and(|d| d.fall_back_to_fd()) {
                    // Its registered-file slot is empty (the install failed): it did
                    // nothing; submit it again naming the fd.
                    return this.submit(cx);
                }
                this.phase = Phase::Done;
                let data = this.data.take().expect("spindle: a completed op's data is nowhere");
                let result = if res < 0 { Err(io::Error::from_raw_os_error(-res)) } else { Ok(res as u32) };
                Poll::Ready(Completion { result, flags, data })
            }
            Phase::Done => panic!("spindle: op polled after completion"),
        }
    }
}

impl<T: OpData> Op<'_, T> {
    /// Pushes the SQE of the idle op's data: a movable op's data stays where it is, any other's
    /// moves (boxed) into the new slot.
    fn submit(&mut self, cx: &mut Context<'_>) -> Poll<Completion<T>> {
        if self.uring().is_shut_down() {
            // Nothing would ever reap it.
            self.phase = Phase::Done;
            let data = self.data.take().expect("spindle: an idle op holds its data");
            return Poll::Ready(Completion { result: Err(super::super::shut_down_error()), flags: 0, data });
        }
        let (sqe, boxed) = if T::MOVABLE {
            (self.data.as_mut().expect("spindle: an idle op holds its data").sqe(), None)
        } else {
            // Boxed first: the SQE may point into the value itself.
            let mut b = Box::new(self.data.take().expect("spindle: an idle op holds its data"));
            let sqe = b.sqe();
            (sqe, Some(b as Box<dyn Any + Send>))
        };
        // SAFETY: `OpData` promises the SQE points only into heap storage that stays put until
        // the final CQE: the boxed value, which the reactor's slot owns without moving it until
        // then (also if this future is dropped), or, for a movable op, heap storage the value
        // owns, which this future keeps untouched in `data` until the final CQE and hands to the
        // slot if dropped before it (see `Drop`).
        let (index, generation) = unsafe { self.uring().submit_op(boxed, sqe, cx.waker().clone()) };
        self.phase = Phase::Submitted { index, generation };
        Poll::Pending
    }
}

impl<T: OpData> Drop for Op<'_, T> {
    fn drop(&mut self) {
        if let Phase::Submitted { index, generation } = self.phase {
            self.phase = Phase::Done;
            // A movable op's data goes to the slot, which keeps it until the final completion,
            // with a strong reference to what it borrowed so far.
            let kept = if T::MOVABLE { self.data.take() } else { None };
            let keeper = kept.as_ref().and_then(T::detach);
            let kept = kept.map(|d| Box::new(d) as Box<dyn Any + Send>);
            let hook = if T::HAS_ORPHAN_HOOK { Some(orphan_hook::<T> as OrphanHook) } else { None };
            self.uring().orphan_op(index, generation, kept, keeper, T::RETURNS_FD, hook);
        }
    }
}

/// An owned buffer carrying a value the op must keep alive as long as it owns the buffer: the
/// owner of the op's fd (a socket, a file), so that an orphaned op keeps the fd open (and its
/// number from being reused) until its final completion. The buffer methods delegate to `buf`.
pub(crate) struct KeepAlive<B, K> {
    pub(crate) buf: B,
    _keep: K,
}

impl<B, K> KeepAlive<B, K> {
    pub(crate) fn new(buf: B, keep: K) -> KeepAlive<B, K> {
        KeepAlive { buf, _keep: keep }
    }
}

// SAFETY: every method delegates to `buf`, whose own `IoBuf` contract holds; `K` is only kept
// (it is `Send + Unpin + 'static`, as `IoBuf` requires) and changes nothing about the memory.
unsafe impl<B: IoBuf, K: Send + Unpin + 'static> IoBuf for KeepAlive<B, K> {
    fn stable_ptr(&self) -> *const u8 {
        self.buf.stable_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init()
    }
    fn bytes_total(&self) -> usize {
        self.buf.bytes_total()
    }
}

// SAFETY: delegates to `buf`'s own `IoBufMut` contract.
unsafe impl<B: IoBufMut, K: Send + Unpin + 'static> IoBufMut for KeepAlive<B, K> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.buf.stable_mut_ptr()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: the caller's guarantee is passed on unchanged.
        unsafe { self.buf.set_init(n) }
    }
}

/// A strong reference the reactor's slot keeps while it owns an orphaned op's data (see
/// [`OpData::detach`]); dropped after the data.
pub(crate) type Keeper = Arc<dyn Any + Send + Sync>;

/// What an op keeps alive besides its buffer (the owner of its fd), and what the slot must keep
/// when the op outlives its future ([`OpData::detach`]).
pub(crate) trait Keep: Send + 'static {
    /// See [`OpData::detach`].
    fn detach(&self) -> Option<Keeper> {
        None
    }
}

impl Keep for () {}

impl<T: Send + Sync + 'static> Keep for Lent<T> {
    fn detach(&self) -> Option<Keeper> {
        Some(self.keeper())
    }
}

/// A reference to an `Arc`'s value, for the data of a movable op: free while the op's future
/// lives; if the future is dropped with the op in flight, [`OpData::detach`] gives the reactor's
/// slot a strong reference ([`keeper`](Self::keeper)) to keep with the data until the final
/// completion. Owned-buffer reads and writes on sockets used to hold an `Arc` clone per op only
/// for that case; measured on echo over io_uring, the clone and, mostly, the drop glue it gave
/// the op's data cost about 150 ns of a 2.9 us round trip. Deliberately no `Drop`: the slot's
/// keeper, not this, holds the count.
pub(crate) struct Lent<T: Send + Sync + 'static>(std::ptr::NonNull<T>);

impl<T: Send + Sync + 'static> Lent<T> {
    /// Lends `arc`'s value to an op.
    ///
    /// # Safety
    ///
    /// `arc`'s value must stay alive as long as this `Lent` is used: put it only in the data of
    /// a [movable](OpData::MOVABLE) op whose future borrows `arc` for its whole life (an `async
    /// fn` on `&Arc<..>`, or a future holding `&'a Arc<..>` for the `'a` of the op, as
    /// `net::socket`'s `SendOwned` and `RecvOwned` do), and have the op's [`detach`](OpData::detach) return
    /// [`keeper`](Self::keeper). Such an op's data lives in its future (which the borrow
    /// outlives) until it completes; if the future is dropped in flight, its `Drop` takes the
    /// keeper while the borrow still holds, and the slot keeps it as long as the data.
    pub(crate) unsafe fn new(arc: &Arc<T>) -> Lent<T> {
        Lent(std::ptr::NonNull::from(&**arc))
    }

    /// A strong reference of the lent value's `Arc`.
    pub(crate) fn keeper(&self) -> Arc<T> {
        // SAFETY: the value is alive (the contract of `new`), so its `Arc`'s strong count is at
        // least one: raising it and making an `Arc` of that count is sound.
        unsafe {
            Arc::increment_strong_count(self.0.as_ptr());
            Arc::from_raw(self.0.as_ptr())
        }
    }
}

impl<T: Send + Sync + 'static> std::ops::Deref for Lent<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the value is alive: kept by the lender while the op's future lives, then by
        // the keeper the slot holds beside this data (the contract of `new`).
        unsafe { self.0.as_ref() }
    }
}

// SAFETY: a `Lent<T>` is a shared reference to a `T` (kept alive as `new` requires); `&T` is
// `Send` for `T: Sync`, and only `&T` is given out.
unsafe impl<T: Send + Sync + 'static> Send for Lent<T> {}
// SAFETY: as above, for `Sync`.
unsafe impl<T: Send + Sync + 'static> Sync for Lent<T> {}

/// The file an op names: an fd, or a slot of its ring's registered-file table, which spares the
/// kernel the fd lookup per op (see [`super::files`]); a slot comes with its fd, to fall back to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpFd {
    Raw(RawFd),
    Fixed { slot: u32, fd: RawFd },
}

impl OpFd {
    /// Names the fd instead of a slot: the op got `EBADF`, so the slot's install failed (see
    /// [`super::files`]); says whether anything changed (an op naming an fd has nothing to try).
    pub(crate) fn fall_back(&mut self) -> bool {
        match *self {
            OpFd::Fixed { fd, .. } => {
                *self = OpFd::Raw(fd);
                true
            }
            OpFd::Raw(_) => false,
        }
    }
}

impl From<RawFd> for OpFd {
    fn from(fd: RawFd) -> OpFd {
        OpFd::Raw(fd)
    }
}

/// `opcode::$op::new(file, args..)` for an [`OpFd`] (the crate's two file types are distinct
/// types behind a sealed trait, so each gets its own call).
macro_rules! new_on {
    ($op:ident, $fd:expr, $($arg:expr),*) => {
        match $fd {
            OpFd::Raw(fd) => opcode::$op::new(types::Fd(fd), $($arg),*),
            OpFd::Fixed { slot, .. } => opcode::$op::new(types::Fixed(slot), $($arg),*),
        }
    };
}
pub(crate) use new_on;

/// Offset meaning "the file position" (streams, pipes, sockets).
const CURRENT_POS: u64 = u64::MAX;

/// `read` / `pread` into an owned buffer (from its start, up to `bytes_total`).
pub(crate) struct Read<B> {
    fd: RawFd,
    buf: B,
    offset: u64,
}

impl<B> Read<B> {
    /// The buffer.
    pub(crate) fn buf(&self) -> &B {
        &self.buf
    }
}

// SAFETY: the SQE points at `buf`'s stable pointer, valid for `bytes_total` bytes (IoBufMut).
unsafe impl<B: IoBufMut> OpData for Read<B> {
    const MOVABLE: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(u32::MAX as usize) as u32;
        opcode::Read::new(types::Fd(self.fd), self.buf.stable_mut_ptr(), len).offset(self.offset).build()
    }
}

/// `write` / `pwrite` of an owned buffer's initialized bytes.
pub(crate) struct Write<B> {
    fd: RawFd,
    buf: B,
    offset: u64,
}

// SAFETY: the SQE points at `buf`'s stable pointer, valid for `bytes_init` bytes (IoBuf).
unsafe impl<B: IoBuf> OpData for Write<B> {
    const MOVABLE: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(u32::MAX as usize) as u32;
        opcode::Write::new(types::Fd(self.fd), self.buf.stable_ptr(), len).offset(self.offset).build()
    }
}

/// `recv` into an owned buffer.
pub(crate) struct Recv<B> {
    fd: RawFd,
    buf: B,
}

// SAFETY: as for `Read`.
unsafe impl<B: IoBufMut> OpData for Recv<B> {
    const MOVABLE: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total().min(u32::MAX as usize) as u32;
        opcode::Recv::new(types::Fd(self.fd), self.buf.stable_mut_ptr(), len).build()
    }
}

/// `send` of an owned buffer (`MSG_NOSIGNAL`: a closed peer gives `EPIPE`, not SIGPIPE).
pub(crate) struct SendOp<B, K> {
    fd: OpFd,
    buf: B,
    /// The fd's owner.
    keep: K,
}

// SAFETY: as for `Write`.
unsafe impl<B: IoBuf, K: Keep> OpData for SendOp<B, K> {
    const MOVABLE: bool = true;

    fn detach(&self) -> Option<Keeper> {
        self.keep.detach()
    }

    fn fall_back_to_fd(&mut self) -> bool {
        self.fd.fall_back()
    }

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init().min(u32::MAX as usize) as u32;
        new_on!(Send, self.fd, self.buf.stable_ptr(), len).flags(libc::MSG_NOSIGNAL).build()
    }
}

/// The iovec array of a vectored op (pointers into the op's own buffers).
#[derive(Default)]
pub(crate) struct IoVecs(Vec<libc::iovec>);

// SAFETY: the iovecs point into buffers owned by the same op value (which is `Send`); moving
// them to another thread together with those buffers is as sound as moving the buffers.
unsafe impl std::marker::Send for IoVecs {}

/// `readv` / `preadv` into several owned buffers.
pub(crate) struct Readv<B> {
    fd: RawFd,
    bufs: Vec<B>,
    iovecs: IoVecs,
    offset: u64,
}

// SAFETY: the SQE points at `iovecs`' heap (not resized until the final CQE), whose entries
// point at each buffer's stable pointer for `bytes_total` bytes.
unsafe impl<B: IoBufMut> OpData for Readv<B> {
    const MOVABLE: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        self.iovecs.0 = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.stable_mut_ptr().cast(), iov_len: b.bytes_total() })
            .collect();
        opcode::Readv::new(types::Fd(self.fd), self.iovecs.0.as_ptr(), self.iovecs.0.len() as u32)
            .offset(self.offset)
            .build()
    }
}

/// `sendmsg` of several owned buffers on a connected socket, with `MSG_NOSIGNAL`: a `writev` op
/// cannot carry that flag, so on a socket whose peer is gone it raised `SIGPIPE`, killing a
/// program that restored the default action.
pub(crate) struct SendVectored<B> {
    fd: RawFd,
    bufs: Vec<B>,
    iovecs: IoVecs,
    hdr: MsgHdr,
}

// SAFETY: the SQE points at `self.hdr.msg` (inside the op value, boxed at submission since the
// type is not `MOVABLE`), whose iovec array is `iovecs`' heap (not resized until the final CQE),
// whose entries point at each buffer's stable pointer for `bytes_init` bytes, only read.
unsafe impl<B: IoBuf> OpData for SendVectored<B> {
    fn sqe(&mut self) -> squeue::Entry {
        // At most 1024 (`UIO_MAXIOV`): the kernel refuses more; the rest is a partial write.
        self.iovecs.0 = self
            .bufs
            .iter()
            .take(1024)
            .map(|b| libc::iovec { iov_base: b.stable_ptr() as *mut libc::c_void, iov_len: b.bytes_init() })
            .collect();
        let msg = self.hdr.msg_mut();
        msg.msg_name = std::ptr::null_mut();
        msg.msg_namelen = 0;
        msg.msg_iov = self.iovecs.0.as_mut_ptr();
        msg.msg_iovlen = self.iovecs.0.len() as _;
        msg.msg_control = std::ptr::null_mut();
        msg.msg_controllen = 0;
        msg.msg_flags = 0;
        opcode::SendMsg::new(types::Fd(self.fd), &self.hdr.msg).flags(libc::MSG_NOSIGNAL as u32).build()
    }
}

/// The message header of a `sendmsg`/`recvmsg` op with its one iovec (pointers into the op's
/// own buffer and address).
pub(crate) struct MsgHdr {
    msg: libc::msghdr,
    iov: libc::iovec,
}

// SAFETY: the pointers inside point into the same op value (its buffer and address), which is
// `Send`; moving them to another thread together is as sound as moving the buffer.
unsafe impl std::marker::Send for MsgHdr {}

impl MsgHdr {
    pub(crate) fn new() -> MsgHdr {
        // SAFETY: msghdr and iovec are plain C data; all-zero (null pointers, zero lengths) is
        // a valid value of both.
        unsafe { std::mem::zeroed() }
    }

    /// Points the header at `len` bytes at `ptr` and at the address storage (`addr_len` bytes).
    /// The header, for the SQE (it points at the iovec inside `self`).
    pub(crate) fn msg_mut(&mut self) -> &mut libc::msghdr {
        &mut self.msg
    }

    /// The address length in the header (after a receive: what the kernel wrote).
    pub(crate) fn name_len(&self) -> libc::socklen_t {
        self.msg.msg_namelen
    }

    pub(crate) fn set(&mut self, ptr: *mut u8, len: usize, addr: *mut SockAddrStorage, addr_len: libc::socklen_t) {
        self.iov = libc::iovec { iov_base: ptr.cast(), iov_len: len };
        self.msg.msg_name = addr.cast();
        self.msg.msg_namelen = addr_len;
        self.msg.msg_iov = &mut self.iov;
        self.msg.msg_iovlen = 1;
        self.msg.msg_control = std::ptr::null_mut();
        self.msg.msg_controllen = 0;
        self.msg.msg_flags = 0;
    }
}

/// `sendmsg` of an owned buffer's initialized bytes to an address (`MSG_NOSIGNAL`).
pub(crate) struct SendTo<B> {
    fd: RawFd,
    buf: B,
    addr: SockAddrStorage,
    addr_len: libc::socklen_t,
    hdr: MsgHdr,
}

// SAFETY: the SQE points at `self.hdr.msg`, whose iovec points at `buf`'s stable pointer for
// `bytes_init` bytes and whose name points at `self.addr`: all inside the boxed value or the
// buffer's stable storage.
unsafe impl<B: IoBuf> OpData for SendTo<B> {
    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_init();
        self.hdr.set(self.buf.stable_ptr() as *mut u8, len, &mut self.addr, self.addr_len);
        opcode::SendMsg::new(types::Fd(self.fd), &self.hdr.msg).flags(libc::MSG_NOSIGNAL as u32).build()
    }
}

/// `recvmsg` into an owned buffer, with the sender's address.
pub(crate) struct RecvFrom<B> {
    fd: RawFd,
    buf: B,
    addr: SockAddrStorage,
    hdr: MsgHdr,
}

// SAFETY: as for `SendTo`, with `bytes_total` writable bytes; the kernel writes the address
// into `self.addr` (up to its size) and its length into `self.hdr.msg`.
unsafe impl<B: IoBufMut> OpData for RecvFrom<B> {
    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.bytes_total();
        let size = self.addr.size_of();
        self.hdr.set(self.buf.stable_mut_ptr(), len, &mut self.addr, size);
        opcode::RecvMsg::new(types::Fd(self.fd), &mut self.hdr.msg).build()
    }
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`; the kernel writes the peer address into `addr`.
pub(crate) struct Accept {
    fd: RawFd,
    addr: libc::sockaddr_storage,
    len: libc::socklen_t,
}

// SAFETY: the SQE points at `self.addr` and `self.len`, inside the boxed value.
unsafe impl OpData for Accept {
    const RETURNS_FD: bool = true;

    fn sqe(&mut self) -> squeue::Entry {
        self.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        opcode::Accept::new(types::Fd(self.fd), (&mut self.addr as *mut libc::sockaddr_storage).cast(), &mut self.len)
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
    }
}

/// `connect` to the address in `addr`, keeping `_keep` (the owner of `fd`) alive as long as the
/// op may run (see [`KeepAlive`]).
pub(crate) struct Connect<K> {
    fd: RawFd,
    addr: SockAddr,
    _keep: K,
}

// SAFETY: the SQE points at `self.addr`'s storage, inside the boxed value (not `MOVABLE`).
unsafe impl<K: Send + 'static> OpData for Connect<K> {
    const RESUBMIT_IF_KERNEL_CANCELLED: bool = false;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(types::Fd(self.fd), self.addr.as_ptr().cast(), self.addr.len()).build()
    }
}

fn buf_result<B>(c: Completion<B>) -> BufResult<usize, B> {
    (c.result.map(|n| n as usize), c.data)
}

fn filled<B: IoBufMut>(c: Completion<B>) -> BufResult<usize, B> {
    let (res, mut buf) = buf_result(c);
    if let Ok(n) = res {
        // SAFETY: the kernel initialized the first `n <= bytes_total` bytes.
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

/// Reads into `buf` (from its start) at the file position: the op future.
pub(crate) fn read_op<B: IoBufMut>(r: &Arc<Reactor>, fd: RawFd, buf: B) -> Op<'_, Read<B>> {
    Op::new(r, Read { fd, buf, offset: CURRENT_POS })
}

/// Reads into `buf` at the file position (streams, pipes): up to `bytes_total` bytes; the buffer
/// then holds exactly the bytes read.
pub(crate) async fn read<B: IoBufMut>(r: &Arc<Reactor>, fd: RawFd, buf: B) -> BufResult<usize, B> {
    let c = read_op(r, fd, buf).await;
    filled(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Reads into `buf` at offset `pos` (files).
pub(crate) async fn read_at<B: IoBufMut>(r: &Arc<Reactor>, fd: RawFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let c = Op::new(r, Read { fd, buf, offset: pos }).await;
    filled(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Writes `buf`'s initialized bytes at the file position (one write: may be short).
pub(crate) async fn write<B: IoBuf>(r: &Arc<Reactor>, fd: RawFd, buf: B) -> BufResult<usize, B> {
    let c = Op::new(r, Write { fd, buf, offset: CURRENT_POS }).await;
    buf_result(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Writes `buf`'s initialized bytes at offset `pos` (files; may be short).
pub(crate) async fn write_at<B: IoBuf>(r: &Arc<Reactor>, fd: RawFd, buf: B, pos: u64) -> BufResult<usize, B> {
    let c = Op::new(r, Write { fd, buf, offset: pos }).await;
    buf_result(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Receives into `buf` (sockets).
pub(crate) async fn recv<B: IoBufMut>(r: &Arc<Reactor>, fd: RawFd, buf: B) -> BufResult<usize, B> {
    let c = Op::new(r, Recv { fd, buf }).await;
    filled(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

impl<'r, B: IoBuf, K: Keep> Op<'r, SendOp<B, K>> {
    /// A `send` of `buf`'s initialized bytes on `reactor` (see [`send`]); the completion's data
    /// gives the buffer back ([`SendOp::into_buf`]).
    pub(crate) fn send(reactor: crate::driver::ReactorRef<'r>, fd: OpFd, buf: B, keep: K) -> Op<'r, SendOp<B, K>> {
        Op::on(reactor, SendOp { fd, buf, keep })
    }
}

impl<B, K> SendOp<B, K> {
    /// The buffer, back from the op.
    pub(crate) fn into_buf(self) -> B {
        self.buf
    }
}

/// Sends `buf`'s initialized bytes (sockets; may be short; `EPIPE` rather than SIGPIPE).
pub(crate) async fn send<B: IoBuf, K: Keep>(
    r: &Arc<Reactor>,
    fd: impl Into<OpFd>,
    buf: B,
    keep: K,
) -> BufResult<usize, B> {
    let c = Op::new(r, SendOp { fd: fd.into(), buf, keep }).await;
    buf_result(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Sends `buf`'s initialized bytes to `addr` (datagram sockets; `EPIPE` rather than SIGPIPE).
pub(crate) async fn send_to<B: IoBuf>(r: &Arc<Reactor>, fd: RawFd, buf: B, addr: &SockAddr) -> BufResult<usize, B> {
    let addr_len = addr.len();
    let data = SendTo { fd, buf, addr: addr.clone().as_storage(), addr_len, hdr: MsgHdr::new() };
    let c = Op::new(r, data).await;
    buf_result(Completion { result: c.result, flags: c.flags, data: c.data.buf })
}

/// Receives one datagram into `buf` (from its start) and the sender's address.
pub(crate) async fn recv_from<B: IoBufMut>(r: &Arc<Reactor>, fd: RawFd, buf: B) -> BufResult<(usize, SockAddr), B> {
    let data = RecvFrom { fd, buf, addr: SockAddrStorage::zeroed(), hdr: MsgHdr::new() };
    let c = Op::new(r, data).await;
    let RecvFrom { mut buf, addr, hdr, .. } = c.data;
    let res = c.result.map(|n| {
        let n = n as usize;
        // SAFETY: the kernel initialized the first `n <= bytes_total` bytes.
        unsafe { buf.set_init(n) };
        // SAFETY: the kernel wrote the sender's address into `addr` and its length (at most the
        // storage's size, which it was given) into `msg_namelen`.
        let from = unsafe { SockAddr::new(addr, hdr.msg.msg_namelen.min(SockAddrStorage::zeroed().size_of())) };
        (n, from)
    });
    (res, buf)
}

/// Reads into several buffers in order (at the file position when `pos` is `None`); each buffer
/// then holds the bytes read into it.
pub(crate) async fn readv<B: IoBufMut>(
    r: &Arc<Reactor>,
    fd: RawFd,
    bufs: Vec<B>,
    pos: Option<u64>,
) -> BufResult<usize, Vec<B>> {
    let c = Op::new(r, Readv { fd, bufs, iovecs: IoVecs::default(), offset: pos.unwrap_or(CURRENT_POS) }).await;
    let mut bufs = c.data.bufs;
    let res = c.result.map(|n| n as usize);
    if let Ok(n) = res {
        let mut left = n;
        for b in bufs.iter_mut() {
            let k = left.min(b.bytes_total());
            // SAFETY: the kernel filled the buffers in order; this one got its first `k` bytes.
            unsafe { b.set_init(k) };
            left -= k;
        }
    }
    (res, bufs)
}

/// Sends several owned buffers' initialized bytes on a connected socket in one `sendmsg`
/// (`MSG_NOSIGNAL`).
pub(crate) async fn send_vectored<B: IoBuf>(r: &Arc<Reactor>, fd: RawFd, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
    let c = Op::new(r, SendVectored { fd, bufs, iovecs: IoVecs::default(), hdr: MsgHdr::new() }).await;
    (c.result.map(|n| n as usize), c.data.bufs)
}

/// The accept op future (its output's data holds the peer address).
pub(crate) fn accept_op(r: &Arc<Reactor>, fd: RawFd) -> Op<'_, Accept> {
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let addr = unsafe { std::mem::zeroed() };
    Op::new(r, Accept { fd, addr, len: 0 })
}

/// Accepts a connection: the new socket (non-blocking, close-on-exec) and the peer address.
pub(crate) async fn accept(r: &Arc<Reactor>, fd: RawFd) -> io::Result<(OwnedFd, SocketAddr)> {
    let c = accept_op(r, fd).await;
    let newfd = c.result? as RawFd;
    // SAFETY: the kernel returned a new fd, ours alone.
    let owned = unsafe { OwnedFd::from_raw_fd(newfd) };
    let addr = sockaddr_to_std(&c.data.addr, c.data.len)?;
    Ok((owned, addr))
}

/// Connects `fd` to `addr`; `keep` (the owner of `fd`) stays alive until the op's final
/// completion even if this future is dropped.
pub(crate) async fn connect<K: Send + 'static>(r: &Arc<Reactor>, fd: RawFd, addr: SockAddr, keep: K) -> io::Result<()> {
    Op::new(r, Connect { fd, addr, _keep: keep }).await.result.map(drop)
}

fn sockaddr_to_std(s: &libc::sockaddr_storage, len: libc::socklen_t) -> io::Result<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in (size checked).
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes());
            Ok(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a sockaddr_in6 (size checked).
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => Err(io::Error::new(io::ErrorKind::InvalidData, "spindle: accept returned a non-IP address")),
    }
}
