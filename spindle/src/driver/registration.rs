//! Readiness registrations, the same on both backends: the state machine here, the event source
//! (epoll edge-triggered interest or an io_uring multishot `POLL_ADD`) in the backend.

use std::io;
use std::os::fd::RawFd;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use spindle_core::loom::{AtomicU32, Ordering::*};
use spindle_core::spin::SpinLock;

use super::Reactor;

/// Readiness bits (low byte of the readiness word); the high 16 bits count events (a tick) so a
/// clear only removes readiness that was observed.
pub(crate) const READABLE: u32 = 1 << 0;
pub(crate) const WRITABLE: u32 = 1 << 1;
pub(crate) const READ_CLOSED: u32 = 1 << 2;
pub(crate) const WRITE_CLOSED: u32 = 1 << 3;
pub(crate) const ERROR: u32 = 1 << 4;
const READY_MASK: u32 = 0xFF;
const TICK_SHIFT: u32 = 16;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Readable (or read side closed, or error).
    Read,
    /// Writable (or write side closed, or error).
    Write,
}

impl Direction {
    fn mask(self) -> u32 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// Readiness observed by `poll_ready`, to be passed back to `clear_ready`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadyEvent {
    tick: u32,
    bits: u32,
}

impl ReadyEvent {
    /// The readiness bits this event saw (in `crate::io::Ready`'s encoding, which is this
    /// module's).
    pub(crate) fn ready(&self) -> crate::io::Ready {
        crate::io::Ready::from_bits(self.bits as u8)
    }

    /// The peer closed its side (reads will return 0) or an error is pending.
    #[cfg(test)]
    pub(crate) fn is_closed(&self) -> bool {
        self.bits & (READ_CLOSED | WRITE_CLOSED | ERROR) != 0
    }
}

/// The readiness state of one registration, shared by the reactor (which sets it) and the
/// registration (which waits on and clears it).
pub(crate) struct ScheduledIo {
    /// Readiness bits and event tick.
    pub(crate) readiness: AtomicU32,
    reader: SpinLock<Option<Waker>>,
    writer: SpinLock<Option<Waker>>,
}

impl ScheduledIo {
    fn waker_slot(&self, dir: Direction) -> &SpinLock<Option<Waker>> {
        match dir {
            Direction::Read => &self.reader,
            Direction::Write => &self.writer,
        }
    }

    /// Locks the waker slot of `dir`.
    fn lock_slot(&self, dir: Direction) -> spindle_core::spin::SpinGuard<'_, Option<Waker>> {
        self.waker_slot(dir).lock(crate::rt::park::spin_relax)
    }

    /// Readiness in `dir`, or `Pending` with `cx`'s waker stored for the next event in `dir`.
    /// The waker is stored before the second look, so an event that [`set_ready`](Self::set_ready)
    /// records in between is either seen by that look or finds the waker to wake.
    fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let mask = dir.mask();
        let cur = self.readiness.load(Acquire);
        if cur & mask != 0 {
            return Poll::Ready(ReadyEvent { tick: cur >> TICK_SHIFT, bits: cur & mask });
        }
        {
            let mut slot = self.lock_slot(dir);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // An event may have arrived while we stored the waker.
        let cur = self.readiness.load(Acquire);
        if cur & mask != 0 {
            return Poll::Ready(ReadyEvent { tick: cur >> TICK_SHIFT, bits: cur & mask });
        }
        Poll::Pending
    }

    /// Clears the data readiness seen in `ev` (after a syscall that emptied the source), unless
    /// a newer event arrived since (its tick differs): that event's readiness stays for the next
    /// look. Closed states stay: a read that emptied a socket whose peer closed is followed by
    /// end of stream, which no new event announces.
    fn clear_ready(&self, ev: ReadyEvent, dir: Direction) {
        // A pending error does go away: the syscall that reports it consumes it (a UDP socket's
        // ICMP error), after which the socket would block again; kept, it made every later wait
        // ready at once and the retry loop spin inside one poll. Another error is reported by a
        // new event.
        self.clear_bits(
            ev,
            match dir {
                Direction::Read => READABLE | ERROR,
                Direction::Write => WRITABLE | ERROR,
            },
        )
    }

    /// Clears all the readiness seen in `ev` after a syscall in `dir` said `WouldBlock` (unless a
    /// newer event arrived since), closed states included: a closed direction never says
    /// `WouldBlock`, so a hang-up seen before it is over. A FIFO's is: a new writer opens it
    /// (kept, the hang-up made every later read wait ready at once, and the retry loop spun
    /// inside one poll, starving the thread).
    fn clear_would_block(&self, ev: ReadyEvent, dir: Direction) {
        self.clear_bits(
            ev,
            match dir {
                Direction::Read => READABLE | ERROR | READ_CLOSED,
                Direction::Write => WRITABLE | ERROR | WRITE_CLOSED,
            },
        )
    }

    /// Clears `mask`'s bits of those seen in `ev`, unless a newer event arrived since.
    fn clear_bits(&self, ev: ReadyEvent, mask: u32) {
        let clear = mask & ev.bits;
        let mut cur = self.readiness.load(Acquire);
        loop {
            if cur >> TICK_SHIFT != ev.tick {
                return;
            }
            match self.readiness.compare_exchange_weak(cur, cur & !clear, AcqRel, Acquire) {
                Ok(_) => return,
                Err(a) => cur = a,
            }
        }
    }

    /// Records an event and wakes the interested waiters.
    pub(crate) fn set_ready(&self, bits: u32) {
        let mut cur = self.readiness.load(Acquire);
        loop {
            let tick = (cur >> TICK_SHIFT).wrapping_add(1) & 0xFFFF;
            let next = (tick << TICK_SHIFT) | (cur & READY_MASK) | bits;
            match self.readiness.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(a) => cur = a,
            }
        }
        for dir in [Direction::Read, Direction::Write] {
            if bits & dir.mask() != 0 {
                let w = self.lock_slot(dir).take();
                if let Some(w) = w {
                    w.wake();
                }
            }
        }
    }
}

impl ScheduledIo {
    /// Drops the stored wakers (the registration is gone: nobody waits on it any more). The
    /// reactor may keep this state until the kernel confirms the deregistration; a waker kept
    /// that long would hold its task, and through it the runtime that owns the reactor: a
    /// reference cycle that leaked the runtime when it was dropped first.
    fn clear_wakers(&self) {
        for dir in [Direction::Read, Direction::Write] {
            let w = self.lock_slot(dir).take();
            drop(w);
        }
    }

    pub(crate) fn new() -> Arc<ScheduledIo> {
        Arc::new(ScheduledIo { readiness: AtomicU32::new(0), reader: SpinLock::new(None), writer: SpinLock::new(None) })
    }
}

/// Test-only access to the readiness protocol for the loom models (`tests/loom_readiness.rs`):
/// [`ScheduledIo`] alone, with no fd or reactor (the reactor's part is [`ScheduledIo::set_ready`]).
/// Only built with `--cfg loom`, so the public API is unchanged.
#[cfg(loom)]
pub mod __loom {
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};

    use super::{Direction, ReadyEvent, ScheduledIo};

    /// The readable bit of an event (see [`Readiness::set_ready`]).
    pub const READABLE: u32 = super::READABLE;
    /// The read-closed (peer hung up) bit of an event.
    pub const READ_CLOSED: u32 = super::READ_CLOSED;
    /// The writable bit of an event.
    pub const WRITABLE: u32 = super::WRITABLE;

    /// One registration's readiness state (clones share it, as a registration and its reactor do).
    #[derive(Clone)]
    pub struct Readiness(Arc<ScheduledIo>);

    /// Readiness observed by [`Readiness::poll_read`], for [`Readiness::clear_read`].
    #[derive(Clone, Copy, Debug)]
    pub struct Event(ReadyEvent);

    impl Event {
        /// Whether both were observed after the same event (same event tick).
        pub fn same_event_as(&self, other: &Event) -> bool {
            self.0.tick == other.0.tick
        }
    }

    impl Readiness {
        /// No readiness yet, no waiter.
        #[allow(clippy::new_without_default)]
        pub fn new() -> Readiness {
            Readiness(ScheduledIo::new())
        }

        /// What a reader's poll does: read readiness, or `Pending` with `waker` stored.
        pub fn poll_read(&self, waker: &Waker) -> Poll<Event> {
            self.0.poll_ready(&mut Context::from_waker(waker), Direction::Read).map(Event)
        }

        /// What a reader does after a read that emptied the source. (After `WouldBlock` it also
        /// clears the closed states it saw, which a `WouldBlock` proves over; the tick check,
        /// what these models test, is the same code.)
        pub fn clear_read(&self, ev: Event) {
            self.0.clear_ready(ev.0, Direction::Read)
        }

        /// What a writer's poll does: write readiness, or `Pending` with `waker` stored.
        pub fn poll_write(&self, waker: &Waker) -> Poll<Event> {
            self.0.poll_ready(&mut Context::from_waker(waker), Direction::Write).map(Event)
        }

        /// What a writer does after a write that filled the sink (see [`clear_read`](Self::clear_read)).
        pub fn clear_write(&self, ev: Event) {
            self.0.clear_ready(ev.0, Direction::Write)
        }

        /// What the reactor does with an event: records `bits` and wakes the waiters.
        pub fn set_ready(&self, bits: u32) {
            self.0.set_ready(bits)
        }
    }
}

/// An fd registered with a reactor. See the module contract.
pub(crate) struct Registration {
    /// The reactor the fd was registered with: its runtime's, which says whether it was shut
    /// down. The readiness watch is armed on it too, unless [`placement`](Self::placement)
    /// picks another of the runtime's reactors.
    pub(super) reactor: Arc<Reactor>,
    pub(super) io: Arc<ScheduledIo>,
    pub(super) fd: RawFd,
    /// The readiness watch: where it is armed and the backend's key for it (slab index and
    /// generation), or the errno arming it failed with. Set at creation on epoll (unless
    /// placed); on io_uring on the first readiness wait ([`Registration::poll_ready`]): a socket
    /// only ever used through completion ops (the owned-buffer methods) then never arms a
    /// multishot poll, whose CQE per readiness change (every arriving segment) would be kernel
    /// work and dispatch for nothing. Arming late loses nothing: the watch reports the readiness
    /// the fd has when it is armed (epoll's `EPOLL_CTL_ADD` of an edge-triggered fd reports what
    /// is already ready).
    watch: OnceLock<Result<Watch, i32>>,
    /// One end of a loopback connection on a multi-thread runtime, or a socket created outside
    /// the cores of a per-core runtime: the watch is armed lazily, on the reactor the placement
    /// picks (see [`super::placement`]); set at creation, or (connects) once connected, before
    /// any other use.
    placement: OnceLock<super::placement::Placed>,
}

/// An armed readiness watch.
struct Watch {
    key: u64,
    /// The reactor it is armed on when that is not the registration's own (placed ones).
    on: Option<Arc<Reactor>>,
}

impl Registration {
    /// Registers `fd` (already non-blocking) with the current runtime's reactor (the current
    /// worker's), or with the fallback reactor outside any runtime.
    pub(crate) fn new(fd: RawFd) -> io::Result<Registration> {
        let reactor = crate::rt::current_reactor().unwrap_or_else(super::global_reactor);
        Registration::with_reactor_or_first_user(reactor, fd)
    }

    /// Registers `fd` (already non-blocking), an accepted connection, with the reactor
    /// `rt::spread_reactor` picks: on a multi-thread runtime the workers' in turn.
    pub(crate) fn new_spread(fd: RawFd) -> io::Result<Registration> {
        let reactor = crate::rt::spread_reactor().unwrap_or_else(super::global_reactor);
        Registration::with_reactor_or_first_user(reactor, fd)
    }

    /// [`with_reactor`](Self::with_reactor), except outside the cores of a per-core runtime:
    /// there the watch is armed lazily, by the core that first waits on the fd (see
    /// [`super::placement::Placed::FirstUser`]), `reactor` being the fallback.
    fn with_reactor_or_first_user(reactor: Arc<Reactor>, fd: RawFd) -> io::Result<Registration> {
        match crate::rt::outside_per_core() {
            Some(runtime) => Ok(Registration::placed(reactor, fd, super::placement::Placed::FirstUser { runtime })),
            None => Registration::with_reactor(reactor, fd),
        }
    }

    /// Registers `fd` with a given reactor.
    pub(crate) fn with_reactor(reactor: Arc<Reactor>, fd: RawFd) -> io::Result<Registration> {
        let reg = Registration::unarmed(reactor, fd);
        if reg.reactor.as_uring().is_none() {
            // epoll_ctl can fail: report it now, where the caller expects errors.
            let key = reg.reactor.register(fd, &reg.io)?;
            let _ = reg.watch.set(Ok(Watch { key, on: None }));
        }
        Ok(reg)
    }

    /// Registers `fd`, one end of an in-process loopback connection, with `reactor` (its
    /// runtime's; see [`reactor`](Self::reactor)); its readiness watch is armed by the first
    /// readiness wait, on the reactor `placement` picks.
    pub(crate) fn placed(reactor: Arc<Reactor>, fd: RawFd, placement: super::placement::Placed) -> Registration {
        let reg = Registration::unarmed(reactor, fd);
        reg.set_placement(placement);
        reg
    }

    fn unarmed(reactor: Arc<Reactor>, fd: RawFd) -> Registration {
        Registration { reactor, io: ScheduledIo::new(), fd, watch: OnceLock::new(), placement: OnceLock::new() }
    }

    /// Gives a registration made lazily (io_uring) its placement, before any use.
    pub(crate) fn set_placement(&self, placement: super::placement::Placed) {
        debug_assert!(self.watch.get().is_none(), "placed after use");
        let _ = self.placement.set(placement);
    }

    /// The io_uring reactor owned-buffer ops on this fd go to when its connection's two ends are
    /// in one runtime: the one its placement picks (see [`super::placement`]), so that the two
    /// ends' tasks meet on its worker (a task follows the ring its op completes on).
    pub(crate) fn placed_ops_reactor(&self) -> Option<&Arc<Reactor>> {
        let p = self.placement.get()?.matched_pair()?;
        let r = p.reactor(&self.reactor);
        r.as_uring().is_some().then_some(r)
    }

    /// The reactor for this fd's long-lived requests (a listener's multishot accept, pooled
    /// receives, `net::pooled`) when the thread asking may not use its own ring
    /// (`rt::may_submit_here`): the one its readiness watch is armed on, or would be armed on by
    /// this thread, which is its own runtime's. Not the asking thread's ring: that may be
    /// another runtime's, which nobody drives once it is idle, while this fd's runtime still
    /// uses the request.
    pub(crate) fn home_reactor(&self) -> Arc<Reactor> {
        if let Some(Ok(w)) = self.watch.get() {
            return w.on.clone().unwrap_or_else(|| self.reactor.clone());
        }
        match self.placement.get() {
            Some(p) => p.watch_reactor(&self.reactor),
            None => self.reactor.clone(),
        }
    }

    /// Arms the readiness watch on first use (see `watch`); a no-op once armed.
    fn arm(&self) -> io::Result<()> {
        let watch = self.watch.get_or_init(|| {
            let on = self.placement.get().map(|p| p.watch_reactor(&self.reactor));
            match on.as_ref().unwrap_or(&self.reactor).register(self.fd, &self.io) {
                Ok(key) => Ok(Watch { key, on }),
                // The system's code, also through the context the backend added to it.
                Err(e) => Err(crate::io::raw_os_error(&e).unwrap_or(libc::EIO)),
            }
        });
        match watch {
            Ok(_) => Ok(()),
            Err(errno) => {
                let e = io::Error::from_raw_os_error(*errno);
                Err(crate::io::with_context(format!("spindle: cannot watch fd {} for readiness", self.fd), e))
            }
        }
    }

    /// Whether a readiness watch is armed for the fd (always on epoll; on io_uring once a
    /// readiness wait needed it).
    #[cfg(test)]
    pub(crate) fn is_armed(&self) -> bool {
        matches!(self.watch.get(), Some(Ok(_)))
    }

    /// The address of the reactor the readiness watch is armed on, if armed.
    #[cfg(test)]
    pub(crate) fn watched_by(&self) -> Option<usize> {
        match self.watch.get() {
            Some(Ok(w)) => Some(Arc::as_ptr(w.on.as_ref().unwrap_or(&self.reactor)) as usize),
            _ => None,
        }
    }

    /// Whether read readiness is currently recorded (the next read tries its syscall at once).
    #[cfg(test)]
    pub(crate) fn is_readable(&self) -> bool {
        self.io.readiness.load(Acquire) & READABLE != 0
    }

    /// The reactor this fd is registered with.
    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.reactor
    }

    /// Whether the runtime owning the reactor was shut down (see `Reactor::is_shut_down`).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.reactor.is_shut_down()
    }

    /// Polls for readiness in `dir` (see [`ScheduledIo::poll_ready`]).
    /// Fails only if the watch could not be armed (see `watch`).
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<io::Result<ReadyEvent>> {
        self.arm()?;
        self.io.poll_ready(cx, dir).map(Ok)
    }

    /// Clears readiness seen in `ev` (after a syscall returned `WouldBlock`, which proves the
    /// direction open as well: see `ScheduledIo::clear_would_block`), unless a newer event
    /// arrived since.
    pub(crate) fn clear_ready(&self, ev: ReadyEvent, dir: Direction) {
        self.io.clear_would_block(ev, dir)
    }

    /// The readiness recorded in `dir` now, without waiting or leaving a waker.
    pub(crate) fn current_event(&self, dir: Direction) -> ReadyEvent {
        let cur = self.io.readiness.load(Acquire);
        ReadyEvent { tick: cur >> TICK_SHIFT, bits: cur & dir.mask() }
    }

    /// Clears the readiness bits of `ev` that are in `bits` (`AsyncFd`'s guards: data readiness
    /// the caller found stale, closed states if it asks), unless a newer event arrived since.
    pub(crate) fn clear_matching(&self, ev: ReadyEvent, bits: crate::io::Ready) {
        self.io.clear_bits(ev, u32::from(bits.bits()))
    }

    /// Runs the non-blocking syscall `f` now, whatever the recorded readiness (tokio's `try_io`
    /// family): `WouldBlock` (or an `emptied` result) clears the readiness recorded before the
    /// call, so a later readiness wait sleeps until the next event instead of returning at once.
    /// An event recorded during the call has a newer tick and stays.
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        f: impl FnOnce() -> io::Result<R>,
        emptied: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        if self.reactor.is_shut_down() {
            return Err(super::shut_down_error());
        }
        self.arm()?;
        self.attempt(self.current_event(dir), dir, f, emptied)
    }

    /// Runs `f` under readiness `ev`, clearing `ev` after `WouldBlock` or an `emptied` result.
    fn attempt<R>(
        &self,
        ev: ReadyEvent,
        dir: Direction,
        f: impl FnOnce() -> io::Result<R>,
        emptied: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let r = f();
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.clear_ready(ev, dir);
        } else if r.as_ref().is_ok_and(&emptied) {
            // Emptied, not blocked: the data readiness only (a closed side stays announced).
            self.io.clear_ready(ev, dir);
        }
        r
    }

    /// Runs the non-blocking syscall `f` when `dir` is ready, retrying after `WouldBlock`.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        self.poll_io_clearing(cx, dir, f, |_| false)
    }

    /// [`poll_io`](Self::poll_io) for a syscall that can tell it emptied the source (`emptied`
    /// says so of its result): the readiness it used is cleared then, as after `WouldBlock`.
    /// Sound for the same reason: an event for anything that came after the syscall has a newer
    /// tick, or is still to come and sets readiness again.
    pub(crate) fn poll_io_clearing<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut f: impl FnMut() -> io::Result<R>,
        emptied: impl Fn(&R) -> bool,
    ) -> Poll<io::Result<R>> {
        loop {
            if self.reactor.is_shut_down() {
                return Poll::Ready(Err(super::shut_down_error()));
            }
            let ev = match self.poll_ready(cx, dir) {
                Poll::Ready(Ok(ev)) => ev,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match self.attempt(ev, dir, &mut f, &emptied) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
        }
    }
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").field("fd", &self.fd).finish_non_exhaustive()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(Ok(w)) = self.watch.get() {
            w.on.as_ref().unwrap_or(&self.reactor).deregister(self.fd, w.key);
        }
        self.io.clear_wakers();
    }
}
