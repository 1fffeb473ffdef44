//! `connect` on both backends: the io_uring `CONNECT` op and the epoll path agree on errors, a
//! connect dropped in flight (or left in flight by a dropped runtime) closes its socket, and a
//! connect the kernel cancelled because the thread that submitted it exited still connects.
//!
//! A listener with a full accept queue keeps a connect in flight: its SYN is dropped, and only
//! the retransmission (about a second later) after room was made gets through.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spindle::net::{TcpStream, UnixStream};
use spindle::runtime::{Builder, IoDriver, Runtime};

/// Both backends where the kernel allows io_uring, else epoll alone.
fn drivers() -> Vec<IoDriver> {
    match Builder::new_current_thread().io_driver(IoDriver::Uring).build() {
        Ok(_) => vec![IoDriver::Epoll, IoDriver::Uring],
        Err(e) => {
            eprintln!("io_uring unavailable, epoll only: {e}");
            vec![IoDriver::Epoll]
        }
    }
}

/// Runs `case` for each backend (see [`drivers`]) on a current-thread and a multi-thread runtime.
fn each_backend_and_flavour(case: impl Fn(IoDriver, bool)) {
    for driver in drivers() {
        for multi in [false, true] {
            case(driver, multi);
        }
    }
}

fn runtime(driver: IoDriver, multi: bool) -> Runtime {
    let mut b = if multi { Builder::new_multi_thread() } else { Builder::new_current_thread() };
    if multi {
        b.worker_threads(2);
    }
    b.io_driver(driver).build().unwrap()
}

/// A TCP listener whose accept queue is full (backlog 0 and one queued connection), the address,
/// and the queued connection.
fn full_listener() -> (socket2::Socket, SocketAddr, std::net::TcpStream) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let filler = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    filler.set_nonblocking(true).unwrap();
    let _ = filler.connect(&addr.into());
    // Full once the filler's handshake has put it in the queue: the kernel does that soon, but
    // asynchronously (on a loaded machine its softirq work can wait in `ksoftirqd`), so a fixed
    // sleep here could let a test's connect in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while accept_queue_len(&l) == 0 {
        assert!(std::time::Instant::now() < deadline, "the filler connection never reached the accept queue");
        std::thread::sleep(Duration::from_millis(1));
    }
    (l, addr, filler.into())
}

/// How many connections wait in listener `l`'s accept queue (Linux reports it as a listener's
/// `tcpi_unacked`).
fn accept_queue_len(l: &socket2::Socket) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: `tcp_info` is plain data, for which all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is that large.
    let r = unsafe {
        libc::getsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "TCP_INFO of the listener: {}", std::io::Error::last_os_error());
    info.tcpi_unacked
}

/// The open socket count once it is back to `before`, or after 5 s of calling `wait`.
fn sockets_once_settled(before: usize, wait: impl Fn()) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while common::open_sockets() != before && std::time::Instant::now() < deadline {
        wait();
    }
    common::open_sockets()
}

#[test]
fn errors_are_the_same_on_both_backends_and_flavours() {
    let _s = common::serial();
    let dir = std::env::temp_dir().join(format!("spindle-net-connect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("regular-file");
    std::fs::write(&file, b"x").unwrap();
    let results = std::sync::Mutex::new(Vec::new());
    each_backend_and_flavour(|driver, multi| {
        let file = file.clone();
        let r = common::bounded(&runtime(driver, multi), 10, async move {
            let mut v = Vec::new();
            let e = TcpStream::connect("127.0.0.1:1").await.unwrap_err();
            v.push(format!("{:?} {e}", e.kind()));
            for path in ["/no/such/socket", file.to_str().unwrap(), "\0spindle-no-such-abstract", ""] {
                let e = UnixStream::connect(path).await.unwrap_err();
                v.push(format!("{:?} {e}", e.kind()));
            }
            v
        });
        results.lock().unwrap().push((driver, multi, r));
    });
    let results = results.into_inner().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    for (driver, multi, r) in &results {
        assert!(r[0].starts_with("ConnectionRefused connect 127.0.0.1:1: "), "{r:?}");
        assert!(r[1].starts_with("NotFound connect /no/such/socket: "), "{r:?}");
        assert_eq!(r, &results[0].2, "{driver:?} multi={multi} differs from {:?}", results[0].0);
    }
}

/// A connect in flight when the thread that submitted it exits (a current-thread runtime first
/// driven by a thread that ends) still connects: the kernel cancels that thread's io_uring
/// requests, which must not surface as an error.
#[test]
fn connect_outlives_the_thread_that_submitted_it() {
    let _s = common::serial();
    for driver in drivers() {
        let (l, addr, filler) = full_listener();
        let rt = Arc::new(runtime(driver, false));
        let rt1 = rt.clone();
        let h = std::thread::spawn(move || {
            let h = rt1.spawn(async move { TcpStream::connect(addr).await.map(drop) });
            rt1.block_on(spindle::time::sleep(Duration::from_millis(50)));
            h
        })
        .join()
        .unwrap();
        drop(l.accept().unwrap()); // room for the retransmitted SYN
        let r = rt.block_on(async { spindle::time::timeout(Duration::from_secs(10), h).await });
        drop(filler);
        let r = r.expect("connect hung").expect("connect task panicked");
        assert!(r.is_ok(), "{driver:?}: {r:?}");
    }
}

/// The same outside any runtime (the fallback reactor), the future moved to another thread.
#[test]
fn connect_outside_a_runtime_outlives_the_thread_that_submitted_it() {
    let _s = common::serial();
    let (l, addr, filler) = full_listener();
    let fut = std::thread::spawn(move || {
        let mut fut = Box::pin(TcpStream::connect(addr));
        let w = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&w);
        for _ in 0..5 {
            assert!(fut.as_mut().poll(&mut cx).is_pending(), "connected though the accept queue is full");
            std::thread::sleep(Duration::from_millis(10));
        }
        fut
    })
    .join()
    .unwrap();
    drop(l.accept().unwrap());
    let (tx, rx) = futures::channel::oneshot::channel::<()>();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(10));
        let _ = tx.send(());
    });
    let r = futures::executor::block_on(futures::future::select(fut, rx));
    drop(filler);
    match r {
        futures::future::Either::Left((r, _)) => drop(r.expect("connect failed")),
        futures::future::Either::Right(_) => panic!("connect hung"),
    }
    drop(timer); // detached: ends by itself
}

/// A connect dropped in flight closes its socket, on every backend and flavour.
#[test]
fn dropped_connect_closes_its_socket() {
    let _s = common::serial();
    each_backend_and_flavour(|driver, multi| {
        let (l, addr, filler) = full_listener();
        let rt = runtime(driver, multi);
        let before = common::open_sockets();
        common::bounded(&rt, 10, async move {
            let r = spindle::time::timeout(Duration::from_millis(50), TcpStream::connect(addr)).await;
            assert!(r.is_err(), "connected though the accept queue is full");
        });
        // The runtime reaps the orphaned op's final completion while it runs.
        let after = sockets_once_settled(before, || rt.block_on(spindle::time::sleep(Duration::from_millis(10))));
        assert_eq!(after, before, "{driver:?} multi={multi}: the dropped connect's socket leaked");
        drop((l, filler, rt));
    });
}

/// A runtime dropped with a connect in flight ends promptly and closes the socket.
#[test]
fn runtime_dropped_with_a_connect_in_flight_closes_its_socket() {
    let _s = common::serial();
    each_backend_and_flavour(|driver, multi| {
        let (l, addr, filler) = full_listener();
        let before = common::open_sockets();
        let rt = runtime(driver, multi);
        let _h = rt.spawn(async move { TcpStream::connect(addr).await.map(drop) });
        std::thread::sleep(Duration::from_millis(50));
        drop(rt);
        let after = sockets_once_settled(before, || std::thread::sleep(Duration::from_millis(10)));
        assert_eq!(after, before, "{driver:?} multi={multi}: the socket leaked");
        drop((l, filler));
    });
}

fn _assert_send<F: Future + Send>(_: F) {}

#[test]
fn connect_futures_are_send() {
    _assert_send(TcpStream::connect("127.0.0.1:1"));
    _assert_send(UnixStream::connect("/no/such/socket"));
}
