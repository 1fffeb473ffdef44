//! The epoll reactor: readiness for registered file descriptors, and the wait a worker parks in.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spindle_core::loom::unmodelled::{AtomicBool, AtomicUsize, Ordering::*};

use super::registration::{ScheduledIo, ERROR, READABLE, READ_CLOSED, WRITABLE, WRITE_CLOSED};

/// The token the reactor uses for its own eventfd.
const WAKE_TOKEN: u64 = u64::MAX;

struct Slot {
    generation: u32,
    io: Option<Arc<ScheduledIo>>,
}

/// One epoll instance with its wake eventfd and registrations.
pub(crate) struct Reactor {
    epoll: OwnedFd,
    eventfd: OwnedFd,
    slots: Mutex<Slab>,
    /// The runtime owning this reactor was shut down.
    shut_down: AtomicBool,
    /// The id of the runtime owning this reactor (see `driver::Reactor::owner`).
    pub(super) owner: AtomicUsize,
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

fn token(index: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | index as u64
}

impl Reactor {
    pub(crate) fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscalls; results checked, fds wrapped in OwnedFd right away.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let eventfd = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?) };
        // Edge-triggered: one event per wake (see `signal_eventfd`), so the counter is never read.
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: WAKE_TOKEN };
        // SAFETY: valid fds and a valid event struct on our stack.
        cvt(unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, eventfd.as_raw_fd(), &mut ev) })
            .map_err(|e| io::Error::new(e.kind(), format!("spindle: epoll_ctl(eventfd): {e}")))?;
        Ok(Reactor {
            epoll,
            eventfd,
            slots: Mutex::new(Slab::default()),
            shut_down: AtomicBool::new(false),
            owner: AtomicUsize::new(0),
        })
    }

    fn slab(&self) -> std::sync::MutexGuard<'_, Slab> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a blocked (or the next) `wait` return.
    pub(crate) fn wake(&self) {
        super::signal_eventfd(&self.eventfd);
    }

    /// See [`crate::driver::Reactor::has_undispatched_events`]: an epoll instance is readable
    /// while its ready list holds events (every registration is edge-triggered, so a reported
    /// event leaves the list).
    pub(crate) fn has_undispatched_events(&self) -> bool {
        let mut p = libc::pollfd { fd: self.epoll.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, zero timeout; the epoll fd lives as long as `self`.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n != 0 && (n < 0 || p.revents & libc::POLLIN != 0)
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
        // Wake outside the slab lock: wakers may register or drop I/O.
        for (io, bits) in ready {
            io.set_ready(bits);
        }
        woken
    }

    /// Adds `fd` (edge-triggered, read and write) and returns its key.
    /// Whether [`shutdown`](Self::shutdown) ran.
    #[inline]
    pub(crate) fn is_shut_down(&self) -> bool {
        self.shut_down.load(Acquire)
    }

    /// The runtime is gone: marks the reactor shut down and wakes every registration's waiters
    /// (they then see the shutdown and fail instead of waiting for events nobody dispatches).
    pub(crate) fn shutdown(&self) {
        self.shut_down.store(true, Release);
        let ios: Vec<Arc<ScheduledIo>> = self.slab().slots.iter().filter_map(|s| s.io.clone()).collect();
        for io in ios {
            io.set_ready(ERROR);
        }
    }

    pub(crate) fn register(&self, fd: RawFd, io: &Arc<ScheduledIo>) -> io::Result<u64> {
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
            return Err(crate::io::with_context(format!("spindle: cannot register fd {fd} with epoll"), e));
        }
        Ok(token(index, generation))
    }

    fn release(&self, index: u32) {
        let mut slab = self.slab();
        slab.slots[index as usize].io = None;
        slab.free.push(index);
    }

    /// Removes `fd` (before its owner closes it).
    pub(crate) fn deregister(&self, fd: RawFd, key: u64) {
        let index = key as u32;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Direction, Reactor as AnyReactor, Registration};
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::task::{Context, Poll, Waker};

    #[test]
    fn readiness_is_reported_and_cleared() {
        let r = Arc::new(AnyReactor::Epoll(Reactor::new().unwrap()));
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registration::with_reactor(r.clone(), a.as_raw_fd()).unwrap();
        let waker = futures_task_noop();
        let mut cx = Context::from_waker(&waker);
        // Writable right away (after the first event).
        r.wait(Some(Duration::from_millis(10)));
        assert!(reg.poll_ready(&mut cx, Direction::Write).is_ready());
        // Not readable until the peer writes.
        let ev = match reg.poll_ready(&mut cx, Direction::Read) {
            Poll::Ready(ev) => Some(ev.unwrap()),
            Poll::Pending => None,
        };
        assert!(ev.is_none());
        b.write_all(b"hi").unwrap();
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(Ok(ev)) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("not readable") };
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        assert_eq!(a.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        reg.clear_ready(ev, Direction::Read);
        assert!(reg.poll_ready(&mut cx, Direction::Read).is_pending());
        drop(b);
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(Ok(ev)) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("no hup") };
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
        // Each wake is reported once (edge-triggered; the counter is never reset), and again
        // after the counter has grown.
        for _ in 0..2 {
            r.wake();
            r.wake();
            assert!(r.wait(Some(Duration::from_millis(20))));
            assert!(!r.wait(Some(Duration::from_millis(20))), "woken with no wake");
        }
    }

    fn futures_task_noop() -> Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        Waker::from(Arc::new(Noop))
    }
}
