//! Runtime-owned buffers: `recv_pooled`, `recv_stream`, `PooledBuf` going back to its pool, no
//! data lost when pooled receives are cancelled, pool exhaustion (ENOBUFS) and recovery, and the
//! multishot accept losing no connection. Every test runs on every runtime flavour; CI runs the
//! file with `SPINDLE_DRIVER=uring` and `SPINDLE_DRIVER=epoll`.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, each_flavor, open_fds, serial};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use spindle::io::AsyncWriteOwned;
use spindle::net::{BufPool, TcpListener, TcpStream, UnixStream};

fn on_uring() -> bool {
    spindle::runtime::Handle::current().io_driver() == "io_uring"
}

/// Waits (letting the runtime reap completions) until the fd count is back to `before`.
async fn fds_back_to(before: usize) {
    for _ in 0..500 {
        if open_fds() <= before {
            return;
        }
        spindle::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fds before: {before}, after: {}", open_fds());
}

/// Waits until `pool` has every buffer back.
async fn pool_full(pool: &BufPool) {
    for _ in 0..500 {
        let s = pool.stats();
        if s.available == s.total {
            return;
        }
        spindle::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("pool never got its buffers back: {:?}", pool.stats());
}

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

/// Bytes 0, 1, 2, ... (mod 251, so chunk boundaries never line up with the pattern).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn recv_pooled_echo_round_trip() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let before = open_fds();
            let uring = on_uring();
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut pool = None;
                loop {
                    let buf = s.recv_pooled().await.unwrap();
                    if buf.is_empty() {
                        break;
                    }
                    let stats = buf.pool_stats().unwrap();
                    // A spawned task runs on a worker, which owns its ring: the kernel picks.
                    assert_eq!(stats.kernel_ring, uring, "{stats:?}");
                    assert!(stats.available < stats.total);
                    pool = buf.pool();
                    // Zero-copy echo: the pool's buffer goes out as is, then back to the pool.
                    let (res, _buf) = s.write_all_owned(buf).await;
                    res.unwrap();
                }
                pool
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let data = pattern(100_000);
            let mut echoed = Vec::new();
            for chunk in data.chunks(7_000) {
                c.write_all(chunk).await.unwrap();
                let want = echoed.len() + chunk.len();
                while echoed.len() < want {
                    let b = c.recv_pooled().await.unwrap();
                    assert!(!b.is_empty(), "early end of stream");
                    echoed.extend_from_slice(&b);
                }
            }
            assert_eq!(echoed, data);
            c.shutdown_std(std::net::Shutdown::Write).unwrap();
            assert!(c.recv_pooled().await.unwrap().is_empty(), "end of stream after the server closed");
            let pool = server.await.unwrap().expect("the server received data");
            pool_full(&pool).await;
            drop(c);
            fds_back_to(before).await;
        });
    });
}

#[test]
fn recv_stream_echo_round_trip() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let before = open_fds();
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                // Streaming zero-copy echo: each pool buffer received goes straight back out.
                let (r, mut w) = s.into_split();
                let mut n = 0;
                let mut bufs = r.recv_stream();
                while let Some(b) = bufs.next().await {
                    let b = b.unwrap();
                    assert!(!b.is_empty());
                    n += b.len();
                    let (res, _) = w.write_all_owned(b).await;
                    res.unwrap();
                }
                n
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let data = pattern(60_000);
            c.write_all(&data).await.unwrap();
            c.shutdown_std(std::net::Shutdown::Write).unwrap();
            let mut echoed = Vec::new();
            let mut bufs = c.recv_stream();
            while let Some(b) = bufs.next().await {
                echoed.extend_from_slice(&b.unwrap());
            }
            drop(bufs);
            assert_eq!(server.await.unwrap(), data.len());
            assert_eq!(echoed, data);

            // Unix streams too.
            let (mut a, b) = UnixStream::pair().unwrap();
            a.write_all(b"over unix").await.unwrap();
            drop(a);
            let mut got = Vec::new();
            let mut bufs = b.recv_stream();
            while let Some(x) = bufs.next().await {
                got.extend_from_slice(&x.unwrap());
            }
            assert_eq!(got, b"over unix");
            drop(bufs);
            drop((b, c));
            fds_back_to(before).await;
        });
    });
}

#[test]
fn pooled_bufs_return_to_the_pool_from_any_thread() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (mut c, s) = pair().await;
            let mut held = Vec::new();
            for i in 0..10u8 {
                c.write_all(&[i; 100]).await.unwrap();
                let b = s.recv_pooled().await.unwrap();
                assert_eq!(&b[..], &[i; 100][..]);
                held.push(b);
            }
            let pool = held[0].pool().unwrap();
            let stats = pool.stats();
            assert_eq!(s.pool_stats(), Some(stats), "the stream reports its pool");
            assert_eq!(stats.buf_size, 4096);
            assert!(stats.available <= stats.total - 10, "{stats:?}");
            // Copy-out helper: the buffer goes back at once.
            let first = held.remove(0).into_vec();
            assert_eq!(first, [0u8; 100]);
            // Dropped on another thread (the pool belongs to this runtime's reactor).
            std::thread::spawn(move || drop(held)).join().unwrap();
            pool_full(&pool).await;
            // Edited in place and written out (DerefMut + IoBuf).
            c.write_all(b"abc").await.unwrap();
            let mut b = s.recv_pooled().await.unwrap();
            b.make_ascii_uppercase();
            let mut s = s;
            let (res, _) = s.write_all_owned(b).await;
            res.unwrap();
            let mut back = [0u8; 3];
            c.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"ABC");
            pool_full(&pool).await;
        });
    });
}

#[test]
fn cancelled_recv_pooled_loses_no_data() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 60, async {
            let before = open_fds();
            let (mut c, s) = pair().await;
            let data = pattern(200 * 300);
            let mut got = Vec::new();
            for (i, chunk) in data.chunks(300).enumerate() {
                match i % 3 {
                    // Polled once (the receive is armed), then dropped before any data.
                    0 => {
                        let r = pin!(s.recv_pooled());
                        assert!(futures::poll!(r).is_pending());
                        c.write_all(chunk).await.unwrap();
                    }
                    // Armed, data arrives (and on io_uring completes into the socket's queue)
                    // while nobody polls, then dropped.
                    1 => {
                        let mut r = Box::pin(s.recv_pooled());
                        assert!(futures::poll!(r.as_mut()).is_pending());
                        c.write_all(chunk).await.unwrap();
                        spindle::time::sleep(Duration::from_millis(2)).await;
                        drop(r);
                    }
                    // Cut by a timeout.
                    _ => {
                        assert!(spindle::time::timeout(Duration::from_millis(1), s.recv_pooled()).await.is_err());
                        c.write_all(chunk).await.unwrap();
                    }
                }
                let want = (i + 1) * 300;
                while got.len() < want {
                    let b = s.recv_pooled().await.unwrap();
                    assert!(!b.is_empty());
                    got.extend_from_slice(&b);
                }
                assert_eq!(got.len(), want, "more data than was sent");
            }
            assert_eq!(got, data);
            // A dropped receive leaves nothing behind: closing still works and the fds go.
            {
                let r = pin!(s.recv_pooled());
                assert!(futures::poll!(r).is_pending());
            }
            drop((c, s));
            fds_back_to(before).await;
        });
    });
}

#[test]
fn recv_stream_dropped_mid_stream_then_recv_gets_the_rest() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 60, async {
            let before = open_fds();
            for round in 0..5 {
                let (mut c, s) = pair().await;
                let data = pattern(256 * 1024);
                let writer = {
                    let data = data.clone();
                    spindle::spawn(async move {
                        c.write_all(&data).await.unwrap();
                        c
                    })
                };
                let mut got = Vec::new();
                {
                    let mut bufs = s.recv_stream();
                    // Take a few items, then let the multishot run ahead a little.
                    for _ in 0..=round {
                        got.extend_from_slice(&bufs.next().await.unwrap().unwrap());
                    }
                    spindle::time::sleep(Duration::from_millis(5)).await;
                } // dropped mid-stream
                let c = writer.await.unwrap();
                drop(c); // end of stream after the data
                loop {
                    let b = s.recv_pooled().await.unwrap();
                    if b.is_empty() {
                        break;
                    }
                    got.extend_from_slice(&b);
                }
                assert_eq!(got.len(), data.len(), "round {round}");
                assert!(got == data, "round {round}: bytes out of order");
                drop(s);
            }
            fds_back_to(before).await;
        });
    });
}

#[test]
fn pool_exhaustion_reports_enobufs_and_recovers() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 120, async {
            let before = open_fds();
            const CONNS: usize = 64;
            const PER_CONN: usize = 80 * 1024;
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // Clients on plain threads: each writes its id and its bytes, then closes.
            let clients: Vec<_> = (0..CONNS)
                .map(|i| {
                    std::thread::spawn(move || {
                        let mut c = std::net::TcpStream::connect(addr).unwrap();
                        c.write_all(&[i as u8]).unwrap();
                        let mut d = pattern(PER_CONN);
                        d[0] = i as u8;
                        c.write_all(&d).unwrap();
                    })
                })
                .collect();
            let mut conns = Vec::new();
            for _ in 0..CONNS {
                let (s, _) = l.accept().await.unwrap();
                let id = s.recv_pooled().await.unwrap();
                conns.push((id[0] as usize, s, Vec::new(), false));
                // `id` may hold more than the id byte: keep the rest.
                conns.last_mut().unwrap().2.extend_from_slice(&id[1..]);
            }
            // Receive everything while holding every buffer: some pool runs dry.
            let mut held = Vec::new();
            let mut pools: Vec<Arc<BufPool>> = Vec::new();
            let mut enobufs = 0;
            while conns.iter().any(|c| !c.3) {
                for (_, s, got, done) in conns.iter_mut().filter(|c| !c.3) {
                    match s.recv_pooled().await {
                        Ok(b) if b.is_empty() => *done = true,
                        Ok(b) => {
                            got.extend_from_slice(&b);
                            let p = b.pool().unwrap();
                            if !pools.iter().any(|q| Arc::ptr_eq(q, &p)) {
                                pools.push(p);
                            }
                            held.push(b);
                        }
                        Err(e) if e.kind() == ErrorKind::OutOfMemory => {
                            assert!(e.to_string().contains("ENOBUFS"), "{e}");
                            enobufs += 1;
                            // Recover: give every buffer back.
                            held.clear();
                        }
                        Err(e) => panic!("unexpected error: {e}"),
                    }
                }
            }
            for c in clients {
                c.join().unwrap();
            }
            assert!(enobufs > 0, "the pools never ran dry (held {} buffers)", held.len());
            for (i, _, got, _) in &conns {
                let mut want = pattern(PER_CONN);
                want[0] = *i as u8;
                assert!(got == &want, "connection {i}: {} bytes, not the ones sent", got.len());
            }
            drop(held);
            for p in &pools {
                pool_full(p).await;
            }

            // The multishot path: one stream runs its pool dry, ends with ENOBUFS, and re-arms
            // once buffers come back.
            let (mut c, s) = pair().await;
            let data = pattern(2 * 1024 * 1024);
            let writer = {
                let data = data.clone();
                spindle::spawn(async move {
                    c.write_all(&data).await.unwrap();
                    c
                })
            };
            let mut got = Vec::new();
            let mut held = Vec::new();
            let mut enobufs = 0;
            let mut bufs = s.recv_stream();
            while got.len() < data.len() {
                match bufs.next().await.expect("early end of stream") {
                    Ok(b) => {
                        got.extend_from_slice(&b);
                        held.push(b);
                    }
                    Err(e) if e.kind() == ErrorKind::OutOfMemory => {
                        enobufs += 1;
                        held.clear();
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            drop(bufs);
            assert!(got == data, "bytes lost or out of order");
            assert!(enobufs > 0, "the pool never ran dry");
            drop(held);
            drop((writer.await.unwrap(), s, conns, l));
            fds_back_to(before).await;
        });
    });
}

#[test]
fn multishot_accept_with_dropped_accepts_loses_no_connection() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 60, async {
            let before = open_fds();
            const N: usize = 100;
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // Accept futures polled once and dropped, before any client (arms the multishot
            // accept on io_uring).
            for _ in 0..10 {
                let a = pin!(l.accept());
                assert!(futures::poll!(a).is_pending());
            }
            let clients = std::thread::spawn(move || {
                (0..N)
                    .map(|i| {
                        let mut c = std::net::TcpStream::connect(addr).unwrap();
                        c.write_all(&[i as u8]).unwrap();
                        c
                    })
                    .collect::<Vec<_>>()
            });
            let mut seen = HashSet::new();
            let mut dropped = 0;
            while seen.len() < N {
                // Every other accept is cut short by a tiny timeout (if it wins, its result
                // counts like any other).
                let r = if dropped < 200 && seen.len() % 2 == 0 {
                    dropped += 1;
                    match spindle::time::timeout(Duration::from_micros(50), l.accept()).await {
                        Err(_) => continue,
                        Ok(r) => r,
                    }
                } else {
                    l.accept().await
                };
                let (s, peer) = r.unwrap();
                assert!(peer.ip().is_loopback());
                let b = s.recv_pooled().await.unwrap();
                assert!(seen.insert(b[0]), "connection {} accepted twice", b[0]);
            }
            let clients = clients.join().unwrap();
            assert_eq!(seen.len(), N);

            // Connections nobody accepts are closed with the listener: their clients see EOF.
            let mut late: Vec<_> = (0..5).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
            spindle::time::sleep(Duration::from_millis(20)).await; // queued by the multishot accept
            drop(l);
            for c in &mut late {
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut b = [0u8; 1];
                match c.read(&mut b) {
                    Ok(0) => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                    r => panic!("a never-accepted connection should be closed, got {r:?}"),
                }
            }
            drop((clients, late));
            fds_back_to(before).await;
        });
    });
}

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointer to a live rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile(cur: u64) {
    let lim = libc::rlimit { rlim_cur: cur, rlim_max: nofile().rlim_max };
    // SAFETY: valid pointer to a live rlimit; lowering (or restoring) the soft limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Restores the soft fd limit, also when a test fails.
struct RestoreNofile(u64);

impl Drop for RestoreNofile {
    fn drop(&mut self) {
        set_nofile(self.0);
    }
}

/// The multishot accept armed before the process runs out of fds: the accept reports EMFILE,
/// the listener backs off (a retrying loop does not spin), and the connection that waited is
/// accepted once fds are free.
#[test]
fn multishot_accept_under_emfile_backs_off_and_recovers() {
    let _s = serial();
    let original = nofile().rlim_cur;
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // The clients' sockets exist before the fds run out; one connects after (a few
            // spares: see the retry below).
            let mut clients: Vec<_> = (0..3)
                .map(|_| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap())
                .collect();
            // Lowered first: io_uring's accept takes the fd limit when the request is prepared.
            let _restore = RestoreNofile(original);
            set_nofile(open_fds() as u64 + 16);
            {
                // Arms the multishot accept on io_uring (a dropped accept leaves it armed).
                let a = pin!(l.accept());
                assert!(futures::poll!(a).is_pending());
            }
            // The request may still wait in the ring's queue (pushed by this thread, or handed
            // over to the worker that owns a pinned ring). A probe connection accepted through
            // it proves it is in the kernel, prepared under the limit above; the multishot accept
            // stays armed after it.
            {
                let probe = std::net::TcpStream::connect(addr).unwrap();
                let (accepted, _) = spindle::time::timeout(Duration::from_secs(10), l.accept())
                    .await
                    .expect("the probe connection is accepted")
                    .unwrap();
                drop(accepted);
                drop(probe);
            }
            let mut fillers = Vec::new();
            // An fd closed after the filling (a runtime of an earlier test going away: its
            // threads and rings may outlive it briefly) makes room for the connection: then
            // fill again and connect a spare client.
            let (e, client) = loop {
                loop {
                    match std::fs::File::open("/dev/null") {
                        Ok(f) => fillers.push(f),
                        Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break,
                        Err(e) => panic!("unexpected error filling fds: {e}"),
                    }
                }
                let client = clients.pop().expect("an accept failed with EMFILE within 3 tries");
                client.connect(&addr.into()).unwrap();
                match l.accept().await {
                    Err(e) => break (e, client),
                    Ok((s, _)) => drop((s, client)),
                }
            };
            assert!(e.to_string().contains("Too many open files"), "{e}");
            assert!(e.to_string().contains("waits"), "{e}");
            let start = spindle::time::Instant::now();
            let mut attempts = 0;
            while start.elapsed() < Duration::from_millis(300) {
                if let Ok(r) = spindle::time::timeout(Duration::from_millis(300), l.accept()).await {
                    assert!(r.is_err());
                }
                attempts += 1;
            }
            assert!(attempts <= 12, "{attempts} accept attempts in 300 ms: the loop spins");
            drop(fillers);
            set_nofile(original);
            let (s, _) = spindle::time::timeout(Duration::from_secs(5), l.accept())
                .await
                .expect("accept resumes after fds are freed")
                .unwrap();
            let mut client = std::net::TcpStream::from(client);
            client.write_all(b"hi").unwrap();
            assert_eq!(&s.recv_pooled().await.unwrap()[..], b"hi");
        });
        set_nofile(original);
    });
}
