//! Unit tests of the io_uring reactor (skipped, with a note, when io_uring is unavailable).

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::op;
use crate::driver::{Direction, Reactor as AnyReactor, Registration};

fn available() -> bool {
    match super::probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("io_uring unavailable, test skipped: {e}");
            false
        }
    }
}

fn shared() -> Arc<AnyReactor> {
    Arc::new(AnyReactor::Uring(super::Reactor::new().unwrap()))
}

fn pinned() -> Arc<AnyReactor> {
    Arc::new(AnyReactor::Uring(super::Reactor::new_pinned().unwrap()))
}

struct Flag(std::sync::atomic::AtomicBool);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Polls `f` on this thread, waiting in `r` between polls (a one-reactor executor).
fn run<F: Future>(r: &AnyReactor, f: F) -> F::Output {
    poll_to_end(f, "op did not complete", || {
        r.wait(Some(Duration::from_millis(50)));
    })
}

/// Polls `f` until it is ready, calling `wait` while it is not woken (10 s at most).
fn poll_to_end<F: Future>(f: F, stalled: &str, mut wait: impl FnMut()) -> F::Output {
    let flag = Arc::new(Flag(false.into()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        while !flag.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "{stalled}");
            wait();
        }
    }
}

fn settle(r: &AnyReactor) {
    let u = r.as_uring().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while u.in_flight() > 0 {
        assert!(Instant::now() < deadline, "{} ops still in flight", u.in_flight());
        r.wait(Some(Duration::from_millis(10)));
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn wake_interrupts_wait_shared_and_pinned() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO)); // adopt (pinned: enable) on this thread
                                      // The timeout works.
        let start = Instant::now();
        r.wait(Some(Duration::from_millis(20)));
        assert!(start.elapsed() >= Duration::from_millis(15));
        let r2 = r.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            r2.wake();
        });
        let start = Instant::now();
        let mut woken = false;
        while !woken {
            woken = r.wait(Some(Duration::from_secs(5)));
            assert!(start.elapsed() < Duration::from_secs(5));
        }
        t.join().unwrap();
        // Each wake is reported once: the eventfd's counter is never reset, and must not make
        // the next waits return as woken (several wakes before a wait may be one report).
        for _ in 0..3 {
            r.wake();
        }
        let mut reports = 0;
        while r.wait(Some(Duration::from_millis(20))) {
            reports += 1;
            assert!(reports <= 3, "a wake reported more than once");
        }
        assert!(reports >= 1, "the wakes were not reported");
        assert!(!r.wait(Some(Duration::from_millis(20))), "woken with no wake");
    }
}

#[test]
fn registration_readiness_on_uring() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO));
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registration::with_reactor(r.clone(), a.as_raw_fd()).unwrap();
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let mut cx = Context::from_waker(&waker);
        // The poll is armed by the first readiness wait (nothing observed yet).
        let _ = reg.poll_ready(&mut cx, Direction::Write);
        r.wait(Some(Duration::from_millis(50)));
        assert!(reg.poll_ready(&mut cx, Direction::Write).is_ready());
        assert!(reg.poll_ready(&mut cx, Direction::Read).is_pending());
        b.write_all(b"hi").unwrap();
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(Ok(ev)) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("not readable") };
        let mut buf = [0u8; 8];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        reg.clear_ready(ev, Direction::Read);
        assert!(reg.poll_ready(&mut cx, Direction::Read).is_pending());
        // Edge-triggered: a second write is a second event.
        b.write_all(b"again").unwrap();
        r.wait(Some(Duration::from_secs(1)));
        assert!(reg.poll_ready(&mut cx, Direction::Read).is_ready());
        assert_eq!(a.read(&mut buf).unwrap(), 5);
        drop(b);
        r.wait(Some(Duration::from_secs(1)));
        let Poll::Ready(Ok(ev)) = reg.poll_ready(&mut cx, Direction::Read) else { panic!("no hup") };
        assert!(ev.is_closed());
        drop(reg);
        settle(&r);
    }
}

/// A dropped registration lets go of the wakers waiting on it at once, not when the kernel
/// confirms the cancelled poll (the slot keeps the readiness state until then, and a waker kept
/// that long held its task and through it the runtime owning the reactor: a reference cycle that
/// leaked every current-thread runtime dropped with such a socket, found by LeakSanitizer).
#[test]
fn dropped_registration_releases_its_wakers_at_once() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO));
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let reg = Registration::with_reactor(r.clone(), a.as_raw_fd()).unwrap();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        // Nothing to read: the read waiter's waker is stored.
        assert!(reg.poll_ready(&mut Context::from_waker(&waker), Direction::Read).is_pending());
        drop(waker);
        assert_eq!(Arc::strong_count(&flag), 2, "the registration stores the waker");
        drop(reg); // the poll's cancel is pushed; its final completion is not reaped yet
        assert_eq!(Arc::strong_count(&flag), 1, "the dropped registration still holds a waker");
        settle(&r);
    }
}

#[test]
fn ops_read_write_readv_send_vectored() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO));
        let (a, b) = UnixStream::pair().unwrap();
        let (res, buf) = run(&r, op::write(&r, a.as_raw_fd(), b"hello".to_vec()));
        assert_eq!((res.unwrap(), &buf[..]), (5, &b"hello"[..]));
        let (res, buf) = run(&r, op::read(&r, b.as_raw_fd(), vec![0u8; 16]));
        assert_eq!((res.unwrap(), &buf[..]), (5, &b"hello"[..]));
        let (res, _) = run(&r, op::send_vectored(&r, a.as_raw_fd(), vec![b"ab".to_vec(), b"cde".to_vec()]));
        assert_eq!(res.unwrap(), 5);
        let (res, bufs) = run(&r, op::readv(&r, b.as_raw_fd(), vec![vec![0u8; 3], vec![0u8; 8]], None));
        assert_eq!(res.unwrap(), 5);
        assert_eq!((&bufs[0][..], &bufs[1][..]), (&b"abc"[..], &b"de"[..]));
        let (res, _) = run(&r, op::send(&r, a.as_raw_fd(), b"xyz".to_vec(), ()));
        assert_eq!(res.unwrap(), 3);
        let (res, buf) = run(&r, op::recv(&r, b.as_raw_fd(), Vec::with_capacity(8)));
        assert_eq!((res.unwrap(), &buf[..]), (3, &b"xyz"[..]));
        settle(&r);
    }
}

#[test]
fn file_read_at_write_at() {
    if !available() {
        return;
    }
    let r = shared();
    let path = std::env::temp_dir().join(format!("spindle-uring-at-{}", std::process::id()));
    let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
    let (res, _) = run(&r, op::write_at(&r, f.as_raw_fd(), b"0123456789".to_vec(), 0));
    assert_eq!(res.unwrap(), 10);
    let (res, buf) = run(&r, op::read_at(&r, f.as_raw_fd(), vec![0u8; 4], 3));
    assert_eq!((res.unwrap(), &buf[..]), (4, &b"3456"[..]));
    let (res, buf) = run(&r, op::read_at(&r, f.as_raw_fd(), vec![0u8; 4], 100));
    assert_eq!((res.unwrap(), buf.len()), (0, 0));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn accept_and_connect() {
    if !available() {
        return;
    }
    let r = shared();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // SAFETY: a plain syscall; the fd is wrapped at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a fresh fd we own.
    let sock = unsafe { <std::net::TcpStream as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let (a, c) =
        run(&r, async { futures_join(op::accept(&r, l.as_raw_fd()), op::connect(&r, fd, addr.into(), ())).await });
    c.unwrap();
    let (fd, peer) = a.unwrap();
    assert_eq!(peer, sock.local_addr().unwrap());
    drop(fd);
    settle(&r);
}

async fn futures_join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = pin!(a);
    let mut b = pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

#[test]
fn cancel_returns_the_buffer() {
    if !available() {
        return;
    }
    let r = shared();
    let (a, _b) = UnixStream::pair().unwrap();
    let c = run(&r, async {
        let mut read = op::read_op(&r, a.as_raw_fd(), vec![0u8; 32]);
        // Submit it (first poll), then cancel.
        let waker = Waker::from(Arc::new(Flag(false.into())));
        assert!(std::pin::Pin::new(&mut read).poll(&mut Context::from_waker(&waker)).is_pending());
        read.cancel().await
    });
    assert_eq!(c.result.as_ref().unwrap_err().raw_os_error(), Some(libc::ECANCELED));
    assert_eq!(c.data_buf().len(), 32);
    settle(&r);
}

impl<B> op::Completion<op::Read<B>> {
    fn data_buf(&self) -> &B {
        self.data.buf()
    }
}

#[test]
fn dropped_ops_are_orphaned_then_released() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO));
        let fds = open_fds();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let mut cx = Context::from_waker(&waker);
        for i in 0..500 {
            let mut rd = op::read_op(&r, a.as_raw_fd(), vec![0u8; 64]);
            let mut ac = op::accept_op(&r, l.as_raw_fd());
            assert!(std::pin::Pin::new(&mut rd).poll(&mut cx).is_pending());
            assert!(std::pin::Pin::new(&mut ac).poll(&mut cx).is_pending());
            if i % 3 == 0 {
                r.wait(Some(Duration::ZERO)); // submitted before the drop
            }
            if i % 5 == 0 {
                // A connection and data may complete them before the cancel lands: the accepted
                // fd must then be closed by the orphaned slot.
                let _c = std::net::TcpStream::connect(addr).unwrap();
                (&b).write_all(b"x").unwrap();
            }
            drop(rd);
            drop(ac);
        }
        // Also dropped from another thread.
        let mut rd = op::read_op(&r, a.as_raw_fd(), vec![0u8; 64]);
        assert!(std::pin::Pin::new(&mut rd).poll(&mut cx).is_pending());
        std::thread::scope(|s| {
            s.spawn(move || drop(rd));
        });
        settle(&r);
        drop((a, b, l));
        // Other tests in this process open fds concurrently: the exact count is checked by the
        // cancellation storm in tests/uring.rs, which runs alone.
        let _ = fds;
    }
}

#[test]
fn teardown_waits_for_in_flight_ops() {
    if !available() {
        return;
    }
    let r = shared();
    let (a, _b) = UnixStream::pair().unwrap();
    let waker = Waker::from(Arc::new(Flag(false.into())));
    let mut cx = Context::from_waker(&waker);
    for _ in 0..100 {
        let mut rd = op::read_op(&r, a.as_raw_fd(), vec![0u8; 4096]);
        assert!(std::pin::Pin::new(&mut rd).poll(&mut cx).is_pending());
        drop(rd);
    }
    assert!(r.as_uring().unwrap().in_flight() > 0);
    drop(r); // cancels and reaps everything before freeing the buffers
}

/// Runs the `#[ignore]`d test `name` alone in a child process (so the fd count is not disturbed
/// by tests running in parallel), on io_uring.
fn run_isolated(name: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--test-threads=1", "--nocapture"])
        .env("SPINDLE_DRIVER", "uring")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("1 passed"), "{name} failed:\n{text}");
}

#[test]
fn cancellation_storm_on_the_runtime() {
    if !available() {
        return;
    }
    run_isolated("driver::uring::tests::cancellation_storm_inner");
}

/// Thousands of reads and accepts dropped in flight (by timeouts, aborts and plain drops) at
/// random points on a multi-thread runtime; then the runtime still serves, and after shutdown
/// the process has exactly the fds it had before.
#[test]
#[ignore = "run by cancellation_storm_on_the_runtime in its own process"]
fn cancellation_storm_inner() {
    use crate::time::timeout;
    let fds = open_fds();
    {
        let rt = crate::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        assert_eq!(rt.handle().io_driver(), "io_uring");
        let l = Arc::new(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let pairs: Vec<_> = (0..16).map(|_| Arc::new(UnixStream::pair().unwrap())).collect();
        rt.block_on(async {
            let mut handles = Vec::new();
            let mut seed = 0x9E37_79B9_7F4A_7C15u64;
            for i in 0..3000u64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let delay = Duration::from_micros(seed % 2000);
                let (l, p) = (l.clone(), pairs[(i % 16) as usize].clone());
                handles.push(crate::spawn(async move {
                    let r = crate::driver::uring_reactor().expect("io_uring runtime");
                    match i % 4 {
                        0 => drop(timeout(delay, op::read(&r, p.0.as_raw_fd(), vec![0u8; 256])).await),
                        1 => drop(timeout(delay, op::accept(&r, l.as_raw_fd())).await),
                        2 => {
                            // Completes some accepts (their fds must be closed by whoever
                            // ends up owning them) and feeds some reads.
                            let _c = std::net::TcpStream::connect(addr);
                            let _ = (&p.1).write(b"x");
                            drop(timeout(delay, op::read(&r, p.1.as_raw_fd(), vec![0u8; 64])).await);
                        }
                        _ => {
                            let mut f = std::pin::pin!(op::accept(&r, l.as_raw_fd()));
                            // Submit, then drop on whichever worker this lands.
                            let _ = std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await;
                            crate::task::yield_now().await;
                        }
                    }
                }));
                if seed % 7 == 0 {
                    handles[handles.len() / 2].abort();
                }
            }
            for h in handles {
                let _ = h.await;
            }
            // Still serves: an echo round trip through completion ops.
            let (a, b) = UnixStream::pair().unwrap();
            let r = crate::driver::uring_reactor().unwrap();
            let (res, _) = op::write(&r, a.as_raw_fd(), b"ping".to_vec()).await;
            assert_eq!(res.unwrap(), 4);
            let (res, buf) = op::read(&r, b.as_raw_fd(), vec![0u8; 8]).await;
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"ping"[..]));
        });
        drop(rt);
    }
    // Shutdown dropped the rings only after every orphaned op completed; the listener, pairs
    // and every accepted fd are closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds() != fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(open_fds(), fds, "fds leaked");
}

/// On io_uring, the owned-buffer socket and file methods really run as ring ops (the worker's
/// reactor counts them), on both runtime flavours; on epoll there is no ring at all.
#[test]
fn owned_socket_and_file_io_are_ring_ops() {
    use crate::io::{AsyncReadOwned, AsyncWriteOwned};
    let rts = [
        crate::runtime::Builder::new_current_thread().build().unwrap(),
        crate::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap(),
    ];
    let path = std::env::temp_dir().join(format!("spindle-ring-ops-{}", std::process::id()));
    for rt in &rts {
        let path = path.clone();
        let counted = rt.block_on(rt.spawn(async move {
            let Some(r) = crate::driver::uring_reactor() else {
                assert_eq!(crate::driver::backend_name(), "epoll");
                return None;
            };
            // Multi-thread workers own pinned rings (SINGLE_ISSUER|DEFER_TASKRUN) when that mode
            // is on; a current-thread runtime, driven by whichever thread calls block_on, always
            // a shared one.
            let flavor = crate::runtime::Handle::current().runtime_flavor();
            let multi = flavor == crate::runtime::RuntimeFlavor::MultiThread;
            assert_eq!(r.as_uring().unwrap().is_pinned(), multi && crate::rt::multi_thread::PINNED_RINGS);
            let ops = || r.as_uring().unwrap().ops_submitted();
            let (mut a, mut b) = crate::net::UnixStream::pair().unwrap();
            let before = ops();
            let (res, _) = a.write_all_owned(b"ring".to_vec()).await;
            res.unwrap();
            let (res, buf) = b.read_exact_owned(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(buf, b"ring");
            let sockets = ops() - before;
            let mut opts = crate::fs::OpenOptions::new();
            let f = opts.read(true).write(true).create(true).truncate(true).open(&path).await.unwrap();
            let before = ops();
            let (res, _) = f.write_all_at_owned(b"file".to_vec(), 0).await;
            res.unwrap();
            let (res, buf) = f.read_at_owned(Vec::with_capacity(8), 0).await;
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"file"[..]));
            Some((sockets, ops() - before))
        }));
        if let Some((sockets, files)) = counted.unwrap() {
            assert!(sockets >= 2, "socket ops submitted: {sockets}");
            assert!(files >= 2, "file ops submitted: {files}");
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// A 64-byte heap buffer that, when dropped, is filled with [`POISON`] and quarantined (never
/// freed) instead of released: if the kernel wrote into it after its op let it go, the poison is
/// overwritten, which [`check_quarantine`] sees. This tests the driver's central promise (never
/// free memory the kernel may still write) directly, without a sanitizer (ASan cannot see kernel
/// writes, and valgrind does not run io_uring).
struct Canary {
    mem: *mut [u8; CANARY_LEN],
    init: usize,
}

const CANARY_LEN: usize = 64;
const POISON: u8 = 0xA5;

/// The dropped canaries' addresses (as integers: the list is shared between threads).
static QUARANTINE: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

impl Canary {
    fn new() -> Canary {
        Canary { mem: Box::into_raw(Box::new([0u8; CANARY_LEN])), init: 0 }
    }
}

// SAFETY: the canary owns its heap allocation (moved only as a pointer), so it may go to and be
// dropped on any thread.
unsafe impl Send for Canary {}

impl Drop for Canary {
    fn drop(&mut self) {
        // SAFETY: `mem` is our live allocation; nothing else refers to it once we are dropped
        // (that is what the test checks).
        unsafe { std::ptr::write_bytes(self.mem.cast::<u8>(), POISON, CANARY_LEN) };
        QUARANTINE.lock().unwrap().push(self.mem as usize);
    }
}

// SAFETY: `mem` is a heap allocation of CANARY_LEN bytes that stays at its address while the
// canary lives (and after, quarantined), wherever the canary moves; `init <= CANARY_LEN`.
unsafe impl crate::io::IoBuf for Canary {
    fn stable_ptr(&self) -> *const u8 {
        self.mem.cast()
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        CANARY_LEN
    }
}

// SAFETY: as above; the memory is writable.
unsafe impl crate::io::IoBufMut for Canary {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.mem.cast()
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.init = self.init.max(n);
    }
}

/// Asserts that no quarantined canary was written after it was dropped, then frees them.
fn check_quarantine() -> usize {
    let dropped = std::mem::take(&mut *QUARANTINE.lock().unwrap());
    let mut written = 0;
    for &p in &dropped {
        // SAFETY: quarantined canaries are never freed until here; reading them is sound.
        let mem = unsafe { &*(p as *const [u8; CANARY_LEN]) };
        written += usize::from(mem.iter().any(|&b| b != POISON));
    }
    for &p in &dropped {
        // SAFETY: allocated by `Box::into_raw` in `Canary::new`, freed exactly once here.
        drop(unsafe { Box::from_raw(p as *mut [u8; CANARY_LEN]) });
    }
    assert_eq!(written, 0, "{written} of {} buffers were written by the kernel after they were dropped", dropped.len());
    dropped.len()
}

/// Reads dropped in flight, on this thread and on another one (whose cancel a pinned ring hands
/// over to its owner, so it reaches the kernel late), while the peer keeps writing: orphaned
/// reads then complete into their buffers, which the slots must keep until the final
/// completion. Movable ops (read: the future holds the buffer until dropped) and boxed ones
/// (recvmsg) both. Every buffer is poisoned when dropped and checked afterwards.
#[test]
fn dropped_reads_never_free_a_buffer_the_kernel_writes() {
    if !available() {
        return;
    }
    for r in [shared(), pinned()] {
        r.wait(Some(Duration::ZERO)); // adopt (pinned: become the owner)
        let (a, b) = UnixStream::pair().unwrap();
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let udp_addr = udp.local_addr().unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let waker = Waker::from(Arc::new(Flag(false.into())));
        let mut cx = Context::from_waker(&waker);
        let mut remote: Vec<op::Op<'_, op::Read<Canary>>> = Vec::new();
        for i in 0..600 {
            let mut rd = op::read_op(&r, a.as_raw_fd(), Canary::new());
            assert!(std::pin::Pin::new(&mut rd).poll(&mut cx).is_pending());
            let mut dg = Box::pin(op::recv_from(&r, udp.as_raw_fd(), Canary::new()));
            assert!(dg.as_mut().poll(&mut cx).is_pending());
            if i % 2 == 0 {
                r.wait(Some(Duration::ZERO)); // in the kernel before the drop
            }
            // Data for whichever read is in flight now (or the next one).
            (&b).write_all(&[i as u8; 16]).unwrap();
            sender.send_to(&[i as u8; 16], udp_addr).unwrap();
            if i % 3 == 0 {
                remote.push(rd); // dropped from another thread below
            } else {
                drop(rd);
            }
            drop(dg);
            if remote.len() == 8 {
                let batch = std::mem::take(&mut remote);
                std::thread::scope(|s| {
                    s.spawn(move || drop(batch));
                });
            }
            if i % 5 == 0 {
                r.wait(Some(Duration::ZERO));
            }
        }
        std::thread::scope(|s| {
            s.spawn(move || drop(remote));
        });
        settle(&r);
        let checked = check_quarantine();
        assert!(checked >= 1200, "only {checked} buffers were dropped");
    }
}

/// Registered files (see `files`): an op naming a slot reaches the file installed there; the
/// slot holds the file open after its fd is closed, until the slot is released; a full table
/// says `None` (the caller names the fd) and a released slot is given out again; an op naming an
/// empty slot (what a failed install leaves) falls back to its fd.
#[test]
fn registered_file_slots_name_their_file_until_released() {
    if !available() {
        return;
    }
    if !super::files::supported() {
        eprintln!("kernel older than 6.13: registered files are not used, test skipped");
        return;
    }
    for r in [shared(), pinned()] {
        let u = r.as_uring().unwrap();
        // A pinned ring installs only for its owner: become it (the first wait).
        r.wait(Some(Duration::ZERO));
        let wait_released = |n: u32| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while u.files_in_use() > n {
                assert!(Instant::now() < deadline, "a release never completed");
                r.wait(Some(Duration::from_millis(10)));
            }
        };
        let (a, mut b) = UnixStream::pair().unwrap();
        let (c, _d) = UnixStream::pair().unwrap();
        let slot = u.install_file_within(a.as_raw_fd(), Some(2)).slot().expect("a slot in a fresh table");
        let other = u.install_file_within(c.as_raw_fd(), Some(2)).slot().expect("the second slot");
        assert_eq!(
            u.install_file_within(c.as_raw_fd(), Some(2)),
            super::files::FileInstall::Never,
            "a table of two slots is full"
        );
        assert_eq!(u.files_in_use(), 2);

        let (res, _) = run(&r, op::send(&r, op::OpFd::Fixed { slot, fd: a.as_raw_fd() }, b"via slot".to_vec(), ()));
        assert_eq!(res.unwrap(), 8);
        let mut got = [0u8; 8];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"via slot");

        // An empty slot: the send gets EBADF and goes again naming the fd.
        u.release_file(other);
        wait_released(1);
        let (res, _) =
            run(&r, op::send(&r, op::OpFd::Fixed { slot: other, fd: a.as_raw_fd() }, b"fallback".to_vec(), ()));
        assert_eq!(res.unwrap(), 8);
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"fallback");

        // Closing the fd leaves the socket open: the slot holds its file.
        drop(a);
        b.set_nonblocking(true).unwrap();
        let e = b.read(&mut got).expect_err("no end of file while the slot holds the socket");
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        u.release_file(slot);
        wait_released(0);
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(b.read(&mut got).unwrap(), 0, "released: the peer sees the close");

        // A released slot is given out again.
        assert!(u.install_file_within(c.as_raw_fd(), Some(2)).slot().is_some());
        settle(&r);
    }
}

#[test]
fn kernel_release_strings_compare() {
    use super::files::kernel_at_least;
    assert!(kernel_at_least("6.18.0-1-amd64", (6, 13)));
    assert!(kernel_at_least("6.13", (6, 13)));
    assert!(kernel_at_least("7.0.1", (6, 13)));
    assert!(!kernel_at_least("6.12.48+deb13-amd64", (6, 13)));
    assert!(!kernel_at_least("5.15.0-91-generic", (6, 13)));
    assert!(!kernel_at_least("garbage", (6, 13)));
}

/// Polls `f` on a thread that does not drive the ring its ops go to (their completions are
/// dispatched by the thread that does), sleeping between polls.
fn run_elsewhere<F: Future>(f: F) -> F::Output {
    poll_to_end(f, "a handed-over op never completed", || std::thread::sleep(Duration::from_micros(200)))
}

/// Ops submitted to a pinned ring by threads that do not own it are handed over to the owner,
/// which is woken once per burst (not per op): with several threads handing over at once, every
/// op is still submitted and completes, and the owner does not sleep through handovers (its
/// waits here last 2 s unless woken: a handover that failed to wake it would trip the deadline).
#[test]
fn ops_handed_over_from_many_threads_all_complete() {
    if !available() {
        return;
    }
    const THREADS: usize = 4;
    const OPS: usize = 300;
    let r = pinned();
    r.wait(Some(Duration::ZERO)); // this thread owns the ring
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (a, mut b) = UnixStream::pair().unwrap();
    let a = Arc::new(a);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (r, done, a) = (r.clone(), done.clone(), a.clone());
            std::thread::spawn(move || {
                for i in 0..OPS {
                    let msg = [(t * OPS + i) as u8; 4];
                    let (res, _) = run_elsewhere(op::write(&r, a.as_raw_fd(), msg.to_vec()));
                    assert_eq!(res.unwrap(), 4);
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                // Only so the owner's last wait ends: the handovers woke it by themselves.
                r.wake();
            })
        })
        .collect();
    let reader = std::thread::spawn(move || {
        let mut all = vec![0u8; THREADS * OPS * 4];
        b.read_exact(&mut all).unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(std::sync::atomic::Ordering::SeqCst) < THREADS * OPS {
        assert!(Instant::now() < deadline, "handed-over ops stalled");
        r.wait(Some(Duration::from_secs(2)));
    }
    for t in threads {
        t.join().unwrap();
    }
    reader.join().unwrap();
    settle(&r);
}
