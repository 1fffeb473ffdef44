//! The epoll reactor: readiness for registered file descriptors, and the wait a worker parks in.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use spindle_core::loom::{AtomicU32, Ordering::*};
use spindle_core::spin::SpinLock;

/// Readiness bits (low byte of the readiness word); the high 16 bits count events (a tick) so a
/// clear only removes readiness that was observed.
const READABLE: u32 = 1 << 0;
const WRITABLE: u32 = 1 << 1;
const READ_CLOSED: u32 = 1 << 2;
const WRITE_CLOSED: u32 = 1 << 3;
const ERROR: u32 = 1 << 4;
const READY_MASK: u32 = 0xFF;
const TICK_SHIFT: u32 = 16;

/// The token the reactor uses for its own eventfd.
const WAKE_TOKEN: u64 = u64::MAX;

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
    /// The peer closed its side (reads will return 0) or an error is pending.
    #[allow(dead_code)]
    pub(crate) fn is_closed(&self) -> bool {
        self.bits & (READ_CLOSED | WRITE_CLOSED | ERROR) != 0
    }
}

#[allow(dead_code)]
struct ScheduledIo {
    /// Readiness bits and event tick.
    readiness: AtomicU32,
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

    /// Records an event and wakes the interested waiters.
    fn set_ready(&self, bits: u32) {
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
                let w = self.waker_slot(dir).lock(std::thread::yield_now).take();
                if let Some(w) = w {
                    w.wake();
                }
            }
        }
    }
}

struct Slot {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

/// One epoll instance with its wake eventfd and registrations.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    slots: Mutex<Slab>,
}

#[derive(Default)]
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

#[allow(dead_code)] // used by `register`, whose callers are the socket types
fn token(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscalls; results checked, fds wrapped in OwnedFd right away.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let eventfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: WAKE_TOKEN };
        // SAFETY: valid fds and a valid event struct on our stack.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, eventfd.as_raw_fd(), &mut ev) })
            .map_err(|e| io::Error::new(e.kind(), format!("spindle: epoll_ctl(eventfd): {e}")))?;
        Ok(Reactor { epoll, eventfd, slots: Mutex::new(Slab::default()) })
    }

    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a blocked (or the next) `wait` return.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. EAGAIN (counter full) still
        // leaves it readable, which is all we need.
        unsafe { libc::write(self.eventfd.as_raw_fd(), &one as *const u64 as *const libc::c_void, 8) };
    }

    /// Waits for events (or a wake, or the timeout) and dispatches readiness. Returns whether
    /// the eventfd was signalled.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> bool {
        let ms = match timeout {
            None => -1,
            // Round up so a timer due in 0.3 ms is not spun on with zero timeouts.
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        let mut events: [libc::epoll_event; 64] = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: the buffer is valid for 64 events.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 64, ms) };
        if n <= 0 {
            return false; // timeout or EINTR: the caller re-checks its state
        }
        let mut woken = false;
        let mut ready: Vec<(Arc<ScheduledIo>, u32)> = Vec::with_capacity(n as usize);
        {
            let slab = self.slab();
            for ev in &events[..n as usize] {
                let t = ev.u64;
                if t == WAKE_TOKEN {
                    woken = true;
                    continue;
                }
                let (index, generation) = (t as u32, (t >> 32) as u32);
                let Some(slot) = slab.slots.get(index as usize) else { continue };
                if slot.generation != generation {
                    continue; // registration dropped since: ignore the stale event
                }
                if let Some(io) = &slot.io {
                    ready.push((io.clone(), epoll_to_ready(ev.events)));
                }
            }
        }
        if woken {
            let mut buf = 0u64;
            // SAFETY: reads 8 bytes into a live u64 (resets the counter; EAGAIN is fine).
            unsafe { libc::read(self.eventfd.as_raw_fd(), &mut buf as *mut u64 as *mut libc::c_void, 8) };
        }
        // Wake outside the slab lock: wakers may register or drop I/O.
        for (io, bits) in ready {
            io.set_ready(bits);
        }
        woken
    }

    #[allow(dead_code)] // called through `Registration::new`
    fn register(&self, fd: RawFd) -> io::Result<(u32, u32, Arc<ScheduledIo>)> {
        let io = Arc::new(ScheduledIo {
            readiness: AtomicU32::new(0),
            reader: SpinLock::new(None),
            writer: SpinLock::new(None),
        });
        let (index, generation) = {
            let mut slab = self.slab();
            let index = match slab.free.pop() {
                Some(i) => i,
                None => {
                    slab.slots.push(Slot { generation: 0, io: None });
                    (slab.slots.len() - 1) as u32
                }
            };
            let slot = &mut slab.slots[index as usize];
            slot.generation = slot.generation.wrapping_add(1);
            slot.io = Some(io.clone());
            (index, slot.generation)
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token(index, generation),
        };
        // SAFETY: valid epoll fd and event struct; `fd` validity is the caller's (EBADF is an error).
        if let Err(e) = cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }) {
            self.release(index);
            return Err(io::Error::new(e.kind(), format!("spindle: cannot register fd {fd} with epoll: {e}")));
        }
        Ok((index, generation, io))
    }

    fn release(&self, index: u32) {
        let mut slab = self.slab();
        slab.slots[index as usize].io = None;
        slab.free.push(index);
    }

    fn deregister(&self, fd: RawFd, index: u32) {
        // SAFETY: valid epoll fd; a null event is allowed for DEL. Failure (fd already closed by
        // someone else) leaves nothing registered anyway.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
        self.release(index);
    }
}

fn epoll_to_ready(events: u32) -> u32 {
    let e = events as libc::c_int;
    let mut bits = 0;
    if e & (libc::EPOLLIN | libc::EPOLLPRI) != 0 {
        bits |= READABLE;
    }
    if e & libc::EPOLLOUT != 0 {
        bits |= WRITABLE;
    }
    if e & (libc::EPOLLRDHUP | libc::EPOLLHUP) != 0 {
        bits |= READ_CLOSED;
    }
    if e & libc::EPOLLHUP != 0 {
        bits |= WRITE_CLOSED;
    }
    if e & libc::EPOLLERR != 0 {
        bits |= ERROR;
    }
    bits
}

/// An fd registered with a reactor. See the module contract.
#[allow(dead_code)] // constructed by the socket types (spindle::net)
pub(crate) struct Registration {
    reactor: Arc<Reactor>,
    io: Arc<ScheduledIo>,
    fd: RawFd,
    index: u32,
}

#[allow(dead_code)] // used by the socket types (spindle::net)
impl Registration {
    /// Registers `fd` (already non-blocking) with the current runtime's reactor (the current
    /// worker's), or with the fallback reactor outside any runtime.
    pub(crate) fn new(fd: RawFd) -> io::Result<Registration> {
        let reactor = crate::rt::current_reactor().unwrap_or_else(global_reactor);
        let (index, _generation, io) = reactor.register(fd)?;
        Ok(Registration { reactor, io, fd, index })
    }

    /// Polls for readiness in `dir`.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let mask = dir.mask();
        let cur = self.io.readiness.load(Acquire);
        if cur & mask != 0 {
            return Poll::Ready(ReadyEvent { tick: cur >> TICK_SHIFT, bits: cur & mask });
        }
        {
            let mut slot = self.io.waker_slot(dir).lock(std::thread::yield_now);
            match &*slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
        }
        // An event may have arrived while we stored the waker.
        let cur = self.io.readiness.load(Acquire);
        if cur & mask != 0 {
            return Poll::Ready(ReadyEvent { tick: cur >> TICK_SHIFT, bits: cur & mask });
        }
        Poll::Pending
    }

    /// Clears readiness seen in `ev` (after a syscall returned `WouldBlock`), unless a newer
    /// event arrived since.
    pub(crate) fn clear_ready(&self, ev: ReadyEvent, dir: Direction) {
        // Closed/error states stay: they do not go away.
        let clear = match dir {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        } & ev.bits;
        let mut cur = self.io.readiness.load(Acquire);
        loop {
            if cur >> TICK_SHIFT != ev.tick {
                return;
            }
            match self.io.readiness.compare_exchange_weak(cur, cur & !clear, AcqRel, Acquire) {
                Ok(_) => return,
                Err(a) => cur = a,
            }
        }
    }

    /// Runs the non-blocking syscall `f` when `dir` is ready, retrying after `WouldBlock`.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = match self.poll_ready(cx, dir) {
                Poll::Ready(ev) => ev,
                Poll::Pending => return Poll::Pending,
            };
            match f() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_ready(ev, dir),
                r => return Poll::Ready(r),
            }
        }
    }

    /// Awaits readiness and runs `f`, retrying after `WouldBlock`.
    #[allow(dead_code)]
    pub(crate) async fn io<R>(&self, dir: Direction, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_io(cx, dir, &mut f)).await
    }

    /// The registered fd.
    #[allow(dead_code)]
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.reactor.deregister(self.fd, self.index);
    }
}

/// The process-wide reactor for I/O objects created outside any spindle runtime.
#[allow(dead_code)] // reached through `Registration::new`
fn global_reactor() -> Arc<Reactor> {
    static GLOBAL: OnceLock<Arc<Reactor>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let r = Arc::new(Reactor::new().expect("spindle: cannot create the fallback epoll reactor"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn readiness_is_reported_and_cleared() {
        let r = Arc::new(Reactor::new().unwrap());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (index, _, io) = r.register(a.as_raw_fd()).unwrap();
        let reg = Registration { reactor: r.clone(), io, fd: a.as_raw_fd(), index };
        let waker = futures_task_noop();
        let mut cx = Context::from_waker(&waker);
        // Writable right away (after the first event).
        r.wait(Some(Duration::from_millis(10)));
        assert!(reg.poll_ready(&mut cx, Direction::Write).is_ready());
        // Not readable until the peer writes.
        let ev = match reg.poll_ready(&mut cx, Direction::Read) {
            Poll::Ready(ev) => Some(ev),
            Poll::Pending => None,
        };
        assert!(ev.is_none());
        b.write_all(b"hi").unwrap();
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(ev) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("not readable") };
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        assert_eq!(a.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        reg.clear_ready(ev, Direction::Read);
        assert!(reg.poll_ready(&mut cx, Direction::Read).is_pending());
        drop(b);
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(ev) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("no hup") };
        assert!(ev.is_closed());
    }

    #[test]
    fn wake_interrupts_wait() {
        let r = Arc::new(Reactor::new().unwrap());
        let r2 = r.clone();
        let t = std::thread::spawn(move || r2.wait(None));
        std::thread::sleep(Duration::from_millis(10));
        r.wake();
        assert!(t.join().unwrap());
    }

    fn futures_task_noop() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }
}
