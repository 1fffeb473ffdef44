//! `spindle::io::unix::AsyncFd` on every flavour (and, through CI, both drivers): an eventfd
//! counted through `async_io` from another task, the guard's clear/retain rules, several waiters
//! woken by one event, `poll_read_ready`, a socket pair's backpressure and hang-up, taking the fd
//! back (`into_inner`, `try_new`'s error) without closing it, and waits on a shut-down runtime.
//! The tests count fds, so they take turns.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, each_flavor, open_fds, serial};
use spindle::io::unix::AsyncFd;
use spindle::io::{Interest, Ready};
use spindle::time::{sleep, timeout};

fn eventfd(initial: u32) -> OwnedFd {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = unsafe { libc::eventfd(initial, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn add(fd: &OwnedFd, n: u64) -> std::io::Result<()> {
    // SAFETY: writes 8 bytes from a live u64 to an fd we own.
    let r = unsafe { libc::write(fd.as_raw_fd(), (&n as *const u64).cast(), 8) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn take(fd: &OwnedFd) -> std::io::Result<u64> {
    let mut n = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from an fd we own.
    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n)
    }
}

/// Asserts that `efd` has nothing to read and that its read waits settle: a wait may still
/// return for an event delivered after the readiness was cleared (readiness is a hint; tokio's
/// too), but the read it allows must say `WouldBlock`, which clears it, and after a few such
/// stale events the wait must sleep.
async fn assert_settles_unreadable(efd: &AsyncFd<OwnedFd>) {
    for _ in 0..4 {
        match timeout(Duration::from_millis(30), efd.readable()).await {
            Err(_) => return,
            Ok(g) => {
                let r = g.unwrap().try_io(|fd| take(fd.get_ref()));
                assert!(r.is_err(), "read {:?} where nothing was written", r.unwrap());
            }
        }
    }
    panic!("read readiness kept coming back after every WouldBlock");
}

#[test]
fn an_eventfd_counted_from_another_task_loses_nothing() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let efd = Arc::new(AsyncFd::new(eventfd(0)).unwrap());
            let producer = {
                let efd = efd.clone();
                spindle::spawn(async move {
                    for i in 1..=1000u64 {
                        add(efd.get_ref(), i).unwrap();
                        if i % 10 == 0 {
                            spindle::task::yield_now().await;
                        }
                    }
                })
            };
            let mut total = 0;
            while total < 500_500 {
                total += efd.async_io(Interest::READABLE, take).await.unwrap();
            }
            producer.await.unwrap();
            assert_eq!(total, 500_500);
            // Drained: a read now says WouldBlock, and a wait sleeps until a new event.
            assert_eq!(efd.try_io(Interest::READABLE, take).unwrap_err().kind(), ErrorKind::WouldBlock);
            assert_settles_unreadable(&efd).await;
        });
    });
}

#[test]
fn a_guard_clears_what_it_saw_and_keeps_what_it_retains() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let efd = AsyncFd::new(eventfd(1)).unwrap();
            // Retained (or dropped without clearing): the next wait returns at once.
            let mut g = efd.readable().await.unwrap();
            assert!(g.ready().is_readable());
            g.retain_ready();
            let mut g = efd.readable().await.unwrap();
            // A try_io that reads succeeds and keeps the readiness; the next says WouldBlock,
            // which clears it and ends the guard's readiness.
            assert_eq!(g.try_io(|fd| take(fd.get_ref())).unwrap().unwrap(), 1);
            assert!(g.try_io(|fd| take(fd.get_ref())).is_err());
            assert!(g.ready().is_empty());
            assert_settles_unreadable(&efd).await;
            // A new event wakes the wait.
            add(efd.get_ref(), 7).unwrap();
            let mut g = efd.readable().await.unwrap();
            assert_eq!(take(efd.get_ref()).unwrap(), 7);
            g.clear_ready();
            assert!(!g.ready().is_readable());
            assert_settles_unreadable(&efd).await;

            // clear_ready_matching clears only what it names: writable stays.
            add(efd.get_ref(), 1).unwrap();
            let mut g = efd.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
            while !(g.ready().is_readable() && g.ready().is_writable()) {
                spindle::task::yield_now().await;
                g = efd.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
            }
            take(efd.get_ref()).unwrap();
            g.clear_ready_matching(Ready::READABLE);
            assert_eq!(g.ready(), Ready::WRITABLE);
            assert!(efd.writable().await.unwrap().ready().is_writable());
            assert_settles_unreadable(&efd).await;

            // The `_mut` forms.
            let mut efd = efd;
            add(efd.get_ref(), 2).unwrap();
            let mut g = efd.readable_mut().await.unwrap();
            assert_eq!(g.try_io(|fd| take(fd.get_mut())).unwrap().unwrap(), 2);
            assert_eq!(efd.async_io_mut(Interest::WRITABLE, |fd| add(fd, 3)).await.unwrap(), ());
            assert_eq!(efd.async_io_mut(Interest::READABLE, |fd| take(fd)).await.unwrap(), 3);
        });
    });
}

#[test]
fn several_waiters_are_woken_by_one_event() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let efd = Arc::new(AsyncFd::new(eventfd(0)).unwrap());
            let waiters: Vec<_> = (0..4)
                .map(|_| {
                    let efd = efd.clone();
                    spindle::spawn(async move { efd.readable().await.unwrap().ready().is_readable() })
                })
                .collect();
            sleep(Duration::from_millis(20)).await;
            add(efd.get_ref(), 1).unwrap();
            for w in waiters {
                assert!(w.await.unwrap());
            }
            // poll_read_ready keeps one waker and wakes it.
            take(efd.get_ref()).unwrap();
            efd.try_io(Interest::READABLE, take).unwrap_err();
            let poller = {
                let efd = efd.clone();
                spindle::spawn(async move {
                    std::future::poll_fn(|cx| efd.poll_read_ready(cx).map(|r| r.map(|g| g.ready()))).await.unwrap()
                })
            };
            sleep(Duration::from_millis(20)).await;
            add(efd.get_ref(), 1).unwrap();
            assert!(poller.await.unwrap().is_readable());
        });
    });
}

#[test]
fn a_socket_pair_applies_backpressure_and_reports_hang_up() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let a = AsyncFd::new(a).unwrap();
            // Fill the socket until it says WouldBlock.
            let chunk = [7u8; 4096];
            let mut sent = 0;
            loop {
                let mut g = a.writable().await.unwrap();
                match g.try_io(|fd| fd.get_ref().write(&chunk)) {
                    Ok(r) => sent += r.unwrap(),
                    Err(_would_block) => break,
                }
            }
            assert!(sent > 0);
            // Full: a wait may return for a stale event, but the write it allows says WouldBlock.
            for attempt in 0.. {
                assert!(attempt < 4, "write readiness kept coming back on a full socket");
                match timeout(Duration::from_millis(30), a.writable()).await {
                    Err(_) => break,
                    Ok(g) => {
                        assert!(g.unwrap().try_io(|fd| fd.get_ref().write(&chunk)).is_err(), "a full socket took more")
                    }
                }
            }
            // A reader on a std thread drains it all; the writer wakes and sends one more chunk.
            let reader = std::thread::spawn(move || {
                let mut b = b;
                b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut got = vec![0u8; sent + chunk.len()];
                b.read_exact(&mut got).unwrap();
                b // closed by the caller, for the hang-up below
            });
            a.async_io(Interest::WRITABLE, |s| (&*s).write_all(&chunk).map(drop)).await.unwrap();
            let b = spindle::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
            drop(b);
            let g = a.readable().await.unwrap();
            assert!(g.ready().is_read_closed(), "{:?}", g.ready());
            let mut buf = [0u8; 8];
            assert_eq!(a.get_ref().read(&mut buf).unwrap(), 0);
        });
    });
}

#[test]
fn the_fd_is_given_back_open_and_closed_once() {
    let _s = serial();
    let before = open_fds();
    each_flavor(|rt| {
        let _g = rt.enter();
        // into_inner: still open, usable.
        let efd = AsyncFd::new(eventfd(5)).unwrap();
        let fd = efd.into_inner();
        assert_eq!(take(&fd).unwrap(), 5);
        drop(fd);
        // Dropping the AsyncFd leaves the fd to its owner, which finds it still open and closes
        // it (an fd count cannot tell a double close from one).
        let open_at_owner_drop = Arc::new(AtomicBool::new(false));
        drop(AsyncFd::new(ChecksOpenOnDrop(eventfd(0), open_at_owner_drop.clone())).unwrap());
        assert!(open_at_owner_drop.load(SeqCst), "the AsyncFd closed its owner's fd");
        // A wait for an interest it was not registered for.
        let w = AsyncFd::with_interest(eventfd(0), Interest::READABLE).unwrap();
        let e = bounded(rt, 10, async { w.writable().await.map(drop).unwrap_err() });
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        // A regular file: epoll refuses it (EPERM) and the file comes back open; io_uring polls
        // it as always ready.
        let file = std::fs::File::open("Cargo.toml").unwrap();
        match AsyncFd::try_new(file) {
            Ok(f) => drop(f.into_inner()),
            Err(e) => {
                let (file, error) = e.into_parts();
                assert_eq!(spindle::io::raw_os_error(&error), Some(libc::EPERM), "{error}");
                assert!(error.to_string().contains("AsyncFd"), "{error}");
                file.metadata().expect("the file was closed by a failed registration");
            }
        }
    });
    assert_eq!(open_fds(), before, "an fd leaked");
}

/// Owns an fd; when dropped, records whether the fd was still open (nobody closed it first),
/// then closes it.
struct ChecksOpenOnDrop(OwnedFd, Arc<AtomicBool>);

impl AsRawFd for ChecksOpenOnDrop {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Drop for ChecksOpenOnDrop {
    fn drop(&mut self) {
        // SAFETY: F_GETFD only asks about the number; it changes nothing.
        let open = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_GETFD) } != -1;
        self.1.store(open, SeqCst);
    }
}

/// A UDP socket "connected" to a port nobody listens on: the first send brings back an ICMP
/// port-unreachable, i.e. a pending socket error (POLLERR), which the next recv consumes.
fn udp_to_dead_port() -> UdpSocket {
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(addr).unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

/// tokio's manual loop (`readable` → syscall → `clear_ready` on WouldBlock) on a socket whose
/// pending error was consumed: `clear_ready` clears the error readiness too (it used to keep
/// it, and every later `readable()` returned at once: a spin).
#[test]
fn clear_ready_clears_a_consumed_error_so_waits_sleep() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let a = AsyncFd::new(udp_to_dead_port()).unwrap();
            a.get_ref().send(b"x").unwrap();
            let mut buf = [0u8; 16];
            // The error arrives; recv reports (and consumes) it.
            let mut refused = false;
            for _ in 0..50 {
                let mut g = timeout(Duration::from_secs(2), a.readable()).await.expect("no error event").unwrap();
                match g.get_inner().recv(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                        refused = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => g.clear_ready(),
                    r => panic!("unexpected {r:?}"),
                }
            }
            assert!(refused, "no ECONNREFUSED");
            // The socket is now quiet: nothing to read, no error left. The manual loop:
            let mut spins = 0;
            loop {
                match timeout(Duration::from_millis(200), a.readable()).await {
                    Err(_) => break, // slept: fine
                    Ok(g) => {
                        let mut g = g.unwrap();
                        assert_eq!(g.get_inner().recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
                        g.clear_ready();
                        spins += 1;
                        assert!(
                            spins < 100,
                            "readable() returned {spins} times at once after clear_ready (ready = {:?}): spin",
                            g.ready()
                        );
                    }
                }
            }
        });
    });
}

/// A guard from `ready(READABLE | WRITABLE)` whose `try_io` makes a write that says
/// WouldBlock keeps the read side's end of stream (the WouldBlock says nothing about it): it
/// was announced once and nothing would announce it again, so clearing it (as this once did)
/// made a later `readable()` hang although a read returns 0 at once.
#[test]
fn a_write_would_block_on_a_two_way_guard_keeps_the_end_of_stream() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.shutdown(Shutdown::Write).unwrap(); // a: end of stream pending
            let a = AsyncFd::new(a).unwrap();
            let seen = a.readable().await.unwrap().ready();
            assert!(seen.is_read_closed(), "{seen:?}");
            // Full-duplex loop: wait for either direction, write while it can.
            let chunk = [1u8; 4096];
            loop {
                let mut g = a.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
                match g.try_io(|fd| fd.get_ref().write(&chunk)) {
                    Ok(r) => {
                        r.unwrap();
                    }
                    Err(_would_block) => break,
                }
            }
            // The end of stream is still there...
            let mut buf = [0u8; 8];
            assert_eq!(a.get_ref().read(&mut buf).unwrap(), 0);
            // ...but the readiness that announced it was cleared by the write's WouldBlock.
            let r = timeout(Duration::from_secs(1), a.readable()).await;
            assert!(r.is_ok(), "readable() hangs on a socket at end of stream");
            drop(b);
        });
    });
}

/// Same through `AsyncFd::try_io(READABLE | WRITABLE, write)`.
#[test]
fn try_io_on_both_interests_keeps_the_end_of_stream() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let (a, b) = UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            b.shutdown(Shutdown::Write).unwrap();
            let a = AsyncFd::new(a).unwrap();
            assert!(a.readable().await.unwrap().ready().is_read_closed());
            let chunk = [1u8; 4096];
            while a.try_io(Interest::READABLE | Interest::WRITABLE, |s| (&*s).write(&chunk)).is_ok() {}
            let r = timeout(Duration::from_secs(1), a.readable()).await;
            assert!(r.is_ok(), "readable() hangs on a socket at end of stream");
            drop(b);
        });
    });
}

/// AsyncFd made under `rt.enter()` (per-core: outside its cores, armed by the first core that
/// waits), the runtime then dropped: a wait must fail, not hang, on every flavour.
#[test]
fn waits_after_shutdown_fail_on_every_flavour() {
    let _s = serial();
    for (name, rt) in common::flavors() {
        let efd = {
            let _g = rt.enter();
            AsyncFd::new(eventfd(0)).unwrap()
        };
        // armed (first wait) before the shutdown on half of them
        if name.contains('4') || name.contains("per_core") {
            let _ = rt.block_on(async { timeout(Duration::from_millis(10), efd.readable()).await.is_err() });
        }
        drop(rt);
        let other = spindle::runtime::Builder::new_current_thread().build().unwrap();
        let r = other.block_on(async { timeout(Duration::from_secs(3), efd.readable()).await });
        match r {
            Err(_) => panic!("{name}: wait hangs after the runtime shut down"),
            Ok(Ok(_)) => panic!("{name}: wait returned a guard after the runtime shut down"),
            Ok(Err(e)) => assert!(e.to_string().contains("shut down"), "{name}: {e}"),
        }
    }
}
