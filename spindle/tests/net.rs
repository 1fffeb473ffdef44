//! spindle::net on every runtime flavour (and outside any runtime): echo, half-close, refused and
//! reset connections, invalid addresses, reads and writes after shutdown, many connections,
//! cancellation storms with a stable fd count, UDP and Unix sockets. Loopback only; every test
//! body is bounded in time.

mod common;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{bounded, each_flavor, open_fds, serial};
use futures::{AsyncReadExt, AsyncWriteExt};
use spindle::io::{AsyncReadOwned, AsyncWriteOwned, IoBuf};
use spindle::net::{TcpListener, TcpSocket, TcpStream, UdpSocket, UnixDatagram, UnixListener, UnixStream};

/// Waits with `$wait` (a `readable()`/`writable()` future) and tries `$attempt` (a `try_*` call)
/// until the attempt says something other than `WouldBlock`; its success value (an error
/// panics). The loop every caller of the readiness API writes, since a wait may end spuriously.
macro_rules! when_ready {
    ($wait:expr, $attempt:expr) => {
        loop {
            $wait.await.unwrap();
            match $attempt {
                Ok(r) => break r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{}: {e}", stringify!($attempt)),
            }
        }
    };
}

/// A fresh socket path under the temp dir.
fn sock_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "spindle-test-net-{tag}-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits until the open fd count is back to `before` (background closes may lag a little).
fn assert_fds_back_to(before: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(open_fds() <= before, "fds before: {before}, after: {}", open_fds());
}

async fn echo_server(listener: TcpListener, conns: usize) {
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut s, _) = listener.accept().await.unwrap();
        tasks.push(spindle::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                let (res, b) = s.read_owned(buf).await;
                if res.unwrap() == 0 {
                    break;
                }
                let (res, b) = s.write_all_owned(b).await;
                res.unwrap();
                buf = b;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn tcp_echo_owned_and_slices() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(echo_server(listener, 16));
            let clients: Vec<_> = (0..16u8)
                .map(|i| {
                    spindle::spawn(async move {
                        let mut c = TcpStream::connect(addr).await.unwrap();
                        c.set_nodelay(true).unwrap();
                        for round in 0..20u8 {
                            let msg = vec![i ^ round; 100 + round as usize * 50];
                            if round % 2 == 0 {
                                // Owned buffers.
                                let (res, msg) = c.write_all_owned(msg).await;
                                res.unwrap();
                                let (res, back) = c.read_exact_owned(Vec::with_capacity(msg.len())).await;
                                res.unwrap();
                                assert_eq!(back, msg);
                            } else {
                                // Slices through futures-io.
                                c.write_all(&msg).await.unwrap();
                                let mut back = vec![0u8; msg.len()];
                                c.read_exact(&mut back).await.unwrap();
                                assert_eq!(back, msg);
                            }
                        }
                        // Vectored I/O both ways.
                        let n = c.writev(&[std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"cd")]).await.unwrap();
                        assert_eq!(n, 4);
                        let (res, bufs) = c.writev_owned(vec![b"ef".to_vec(), b"gh".to_vec()]).await;
                        assert_eq!(res.unwrap(), 4);
                        assert_eq!(bufs.len(), 2);
                        let mut got = Vec::new();
                        while got.len() < 8 {
                            let (mut x, mut y) = ([0u8; 3], [0u8; 5]);
                            let n = c
                                .readv(&mut [std::io::IoSliceMut::new(&mut x), std::io::IoSliceMut::new(&mut y)])
                                .await
                                .unwrap();
                            let both: Vec<u8> = x.iter().chain(y.iter()).copied().collect();
                            got.extend_from_slice(&both[..n]);
                        }
                        assert_eq!(got, b"abcdefgh");
                        AsyncWriteOwned::shutdown(&mut c).await.unwrap();
                        let (res, _) = c.read_owned(vec![0u8; 8]).await;
                        assert_eq!(res.unwrap(), 0);
                    })
                })
                .collect();
            for c in clients {
                c.await.unwrap();
            }
            server.await.unwrap();
        });
    });
}

/// Sockets made while a runtime's handle is entered belong to that runtime, even on a thread
/// driving another one: a current-thread `block_on` enters a multi-thread runtime, binds a
/// listener and spawns (there) the task that accepts on it and echoes, then returns. A client
/// from outside is then served, by the multi-thread runtime's reactor. (The listener's
/// registration decides this on both backends: on io_uring its multishot accept goes to the ring
/// of that registration's reactor.)
#[test]
fn sockets_made_under_an_entered_handle_belong_to_its_runtime() {
    let _s = serial();
    let mt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let driven = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let (addr, server) = driven.block_on(async {
        let _entered = mt.enter();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spindle::spawn(async move {
            let (mut s, _) = listener.accept().await?;
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await?;
            s.write_all(&got).await?;
            std::io::Result::Ok(got)
        });
        (addr, server)
    });
    // The current-thread runtime is not driven any more: only the multi-thread one serves.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    c.read_exact(&mut echoed).expect("the accepted connection was never served");
    assert_eq!(&echoed, b"ping");
    assert_eq!(&mt.block_on(server).unwrap().unwrap(), b"ping");
}

/// A socket belongs to the runtime it was made in on both backends, whoever polls it first: a
/// listener first accepted (and a stream first read with `recv_pooled`) from another runtime's
/// `block_on` still serves its own runtime's tasks once that other runtime is idle. (On io_uring
/// the listener's multishot accept and the stream's pooled receive went to the first poller's
/// ring, which nobody drives once its `block_on` returned.)
#[test]
fn a_socket_first_polled_from_another_runtime_keeps_serving_its_own() {
    let _s = serial();
    let mt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let other = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let listener = mt.block_on(mt.spawn(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = Arc::new(listener);

    // The listener's first accept, from the other runtime's `block_on` (the connection it
    // accepts is that runtime's, as in tokio).
    use std::io::Write;
    let _c0 = std::net::TcpStream::connect(addr).unwrap();
    drop(other.block_on(listener.accept()).unwrap());
    // Now only the multi-thread runtime is driven.
    let mut c1 = std::net::TcpStream::connect(addr).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    mt.spawn(async move {
        let _ = tx.send(listener.accept().await);
    });
    let (s1, _) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the listener's own runtime never accepted (its accept is tied to the other runtime's ring)")
        .unwrap();

    // The same for a stream's first pooled receive. (Made from the other runtime, it finds the
    // home ring's buffer pool not registered yet, which only that ring's thread may do, so this
    // stream's pooled receives use readiness; before, they were tied to the other runtime's
    // ring.)
    c1.write_all(b"one").unwrap();
    let s1 = Arc::new(s1);
    assert_eq!(&other.block_on(s1.recv_pooled()).unwrap()[..], b"one");
    let (tx, rx) = std::sync::mpsc::channel();
    mt.spawn(async move {
        let _ = tx.send(s1.recv_pooled().await.map(|b| b.to_vec()));
    });
    c1.write_all(b"two").unwrap();
    let received = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the stream's own runtime never received (its pooled receive is tied to the other runtime's ring)");
    assert_eq!(received.unwrap(), b"two");
}

/// The same for an owned read that another runtime's `block_on` dropped in flight: what it may
/// still take is the socket's next read's (`net::stash`), so that read waits for the dropped
/// op's last completion, which must come from a ring the socket's own runtime drives.
#[test]
fn a_read_dropped_in_flight_on_another_runtime_does_not_stall_the_sockets_own() {
    let _s = serial();
    let mt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let other = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let listener = mt.block_on(mt.spawn(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))).unwrap().unwrap();
    let addr = listener.local_addr().unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let (mut s, _) = mt.block_on(mt.spawn(async move { listener.accept().await })).unwrap().unwrap();
    let mut s = other.block_on(async move {
        let read = spindle::time::timeout(Duration::from_millis(20), s.read_owned(vec![0u8; 16])).await;
        assert!(read.is_err(), "nothing was sent: the read times out");
        s
    });
    // Now only the multi-thread runtime is driven.
    let (tx, rx) = std::sync::mpsc::channel();
    mt.spawn(async move {
        let mut got = [0u8; 3];
        let _ = tx.send(s.read_exact(&mut got).await.map(|_| got));
    });
    use std::io::Write;
    c.write_all(b"abc").unwrap();
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the socket's own runtime never read (waiting for a dropped op on the other runtime's ring)");
    assert_eq!(&got.unwrap(), b"abc");
}

/// A stream connected under an entered handle belongs to that runtime, as a listener bound there
/// does: a current-thread `block_on` enters a multi-thread runtime, connects, and hands the
/// stream to a task of that runtime, which uses it after the `block_on` returned. (On io_uring
/// the connect registered the stream with the runtime this thread drives, whose ring nobody
/// drives afterwards.)
#[test]
fn a_stream_connected_under_an_entered_handle_belongs_to_its_runtime() {
    let _s = serial();
    let mt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let driven = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let server = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        use std::io::{Read, Write};
        let (mut s, _) = server.accept()?;
        let mut got = [0u8; 4];
        s.read_exact(&mut got)?;
        s.write_all(&got)
    });
    let (tx, rx) = std::sync::mpsc::channel();
    driven.block_on(async {
        let _entered = mt.enter();
        let stream = TcpStream::connect(addr).await.unwrap();
        spindle::spawn(async move {
            let mut stream = stream;
            let r = async {
                let (res, _) = stream.write_all_owned(b"ping".to_vec()).await;
                res?;
                let (res, buf) = stream.read_exact_owned(vec![0u8; 4]).await;
                res?;
                std::io::Result::Ok(buf)
            }
            .await;
            let _ = tx.send(r);
        });
    });
    // The current-thread runtime is not driven any more.
    let echoed = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the stream's runtime never finished its ops (tied to the idle runtime's ring)");
    assert_eq!(echoed.unwrap(), b"ping");
    echo.join().unwrap().unwrap();
}

/// A socket made outside any runtime outlives the runtimes that use it: a listener (and a
/// stream's pooled receives) first used by runtime A keeps working in runtime B after A is
/// dropped. (Their long-lived io_uring requests stay on the fallback ring, not on A's worker's,
/// which is shut down with A.)
#[test]
fn a_socket_made_outside_any_runtime_outlives_the_runtime_that_first_used_it() {
    let _s = serial();
    use std::io::Write;
    let std_listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let listener = Arc::new(TcpListener::from_std(std_listener).unwrap());
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server, _) = {
        let a = spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let l = listener.clone();
        a.block_on(a.spawn(spindle::time::timeout(Duration::from_secs(20), async move { l.accept().await })))
            .unwrap()
            .expect("the first runtime's accept hung")
            .unwrap()
    };
    // The same for a stream made outside any runtime, whose buffer pool A's worker had set up.
    let other = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let mut writer = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
    let (reader, _) = other.accept().unwrap();
    reader.set_nonblocking(true).unwrap();
    let reader = Arc::new(TcpStream::from_std(reader).unwrap());
    writer.write_all(b"one").unwrap();
    {
        let a = spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let r = reader.clone();
        let got = a
            .block_on(a.spawn(async move {
                // Lets A's worker wait on its ring first (a ring's first waiter owns it, and only
                // the owner may set up its buffer pool): where these requests once went, to A's
                // worker's ring, that was the case that broke once A was gone.
                spindle::time::sleep(Duration::from_millis(20)).await;
                spindle::time::timeout(Duration::from_secs(20), r.recv_pooled()).await
            }))
            .unwrap()
            .expect("the first runtime's pooled receive hung")
            .map(|b| b.to_vec())
            .unwrap();
        assert_eq!(got, b"one");
    }
    drop((client, server));
    writer.write_all(b"two").unwrap();
    let b = spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let _client = std::net::TcpStream::connect(addr).unwrap();
    let (accepted, received) = b
        .block_on(b.spawn(async move {
            let wait = Duration::from_secs(20);
            let accepted = spindle::time::timeout(wait, listener.accept()).await.map(|r| r.map(|_| ()));
            let received = spindle::time::timeout(wait, reader.recv_pooled()).await.map(|r| r.map(|b| b.to_vec()));
            (accepted, received)
        }))
        .unwrap();
    // Both checked before either fails the test, so that a failure shows both halves.
    let accepted = accepted.map_err(|_| "hung".to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    let received = received.map_err(|_| "hung".to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    assert!(
        accepted.is_ok() && received.as_deref() == Ok(&b"two"[..]),
        "after the first runtime was dropped: accept {accepted:?}, pooled receive {received:?}"
    );
}

/// On a multi-thread worker, sockets register with the worker's runtime even with an idle
/// runtime's handle entered (the worker's reactors are always driven): an accepted connection
/// from outside the runtime (no paired end) is spread over the worker's runtime, not the idle one.
#[test]
fn accepted_sockets_on_a_worker_stay_in_its_runtime_with_another_handle_entered() {
    let _s = serial();
    let mt = spindle::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let idle = spindle::runtime::Builder::new_current_thread().build().unwrap();
    let idle = idle.handle().clone();
    let echoed = mt.block_on(async move {
        // `spawn_local`: the enter guard is not `Send`; the task stays on its worker.
        let task = spindle::spawn(async move {
            spindle::spawn_local(async move {
                let _entered = idle.enter();
                let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
                let addr = listener.local_addr()?;
                let client = std::thread::spawn(move || -> std::io::Result<[u8; 4]> {
                    use std::io::{Read, Write};
                    let mut c = std::net::TcpStream::connect(addr)?;
                    c.set_read_timeout(Some(Duration::from_secs(20)))?;
                    // Later than the accepted end's first read, which then waits for readiness.
                    std::thread::sleep(Duration::from_millis(20));
                    c.write_all(b"ping")?;
                    let mut echoed = [0u8; 4];
                    c.read_exact(&mut echoed)?;
                    Ok(echoed)
                });
                let (mut s, _) = listener.accept().await?;
                let mut got = [0u8; 4];
                s.read_exact(&mut got).await?;
                s.write_all(&got).await?;
                client.join().expect("client thread panicked")
            })
            .await
            .unwrap()
        });
        spindle::time::timeout(Duration::from_secs(20), task).await
    });
    let echoed = echoed.expect("the accepted connection was never served").unwrap().unwrap();
    assert_eq!(&echoed, b"ping");
}

#[test]
fn tcp_split_halves_and_peek() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(echo_server(listener, 1));
            let c = TcpStream::connect(addr).await.unwrap();
            let (mut r, mut w) = c.into_split();
            let writer = spindle::spawn(async move {
                for i in 0..100u32 {
                    let (res, _) = w.write_all_owned(i.to_le_bytes().to_vec()).await;
                    res.unwrap();
                }
                w
            });
            let mut first = [0u8; 4];
            assert!(r.peek(&mut first).await.unwrap() > 0);
            for i in 0..100u32 {
                let (res, buf) = r.read_exact_owned(Vec::with_capacity(4)).await;
                res.unwrap();
                assert_eq!(buf, i.to_le_bytes());
            }
            let w = writer.await.unwrap();
            // Dropping the write half shuts writing down: the echo server sees end of stream,
            // closes, and the read half sees it too.
            drop(w);
            let (res, _) = r.read_owned(vec![0u8; 4]).await;
            assert_eq!(res.unwrap(), 0);
            server.await.unwrap();
        });
    });
}

#[test]
fn borrowed_split_copies_a_stream_onto_itself() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            // The echo server as tokio users write it: split, then copy the read half into the
            // write half.
            let server = spindle::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let (mut r, mut w) = TcpStream::split(&mut s);
                let n = futures::io::copy(&mut r, &mut w).await.unwrap();
                AsyncWriteOwned::shutdown(&mut w).await.unwrap();
                n
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
            let (rd, wr) = TcpStream::split(&mut c);
            let write = async move {
                let mut wr = wr;
                let (res, _) = wr.write_all_owned(data).await;
                res.unwrap();
                AsyncWriteOwned::shutdown(&mut wr).await.unwrap();
            };
            let read = async move {
                let mut rd = rd;
                let mut back = Vec::new();
                rd.read_to_end(&mut back).await.unwrap();
                back
            };
            let ((), back) = futures::join!(write, read);
            assert_eq!(back.len(), 100_000);
            assert!(back.iter().enumerate().all(|(i, &b)| b == i as u8));
            assert_eq!(server.await.unwrap(), 100_000);
        });
    });
}

#[test]
fn tcp_half_close() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (mut s, peer) = listener.accept().await.unwrap();
            assert_eq!(peer, c.local_addr().unwrap());
            c.write_all(b"request").await.unwrap();
            c.close().await.unwrap(); // futures' close: shut the write direction
                                      // The server reads the request, then end of stream, and can still answer.
            let mut req = Vec::new();
            s.read_to_end(&mut req).await.unwrap();
            assert_eq!(req, b"request");
            s.write_all(b"response").await.unwrap();
            drop(s);
            let mut resp = Vec::new();
            c.read_to_end(&mut resp).await.unwrap();
            assert_eq!(resp, b"response");
            // Reads after end of stream keep returning 0; writes after our shutdown fail cleanly.
            let (res, _) = c.read_owned(vec![0u8; 4]).await;
            assert_eq!(res.unwrap(), 0);
            let (res, buf) = c.write_owned(b"late".to_vec()).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
            assert_eq!(buf, b"late");
        });
    });
}

#[test]
fn tcp_refused_reset_and_bad_addresses() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            // A port nobody listens on (bound, then closed).
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let e = TcpStream::connect(("127.0.0.1", port)).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
            assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");

            // Invalid addresses: errors that say what was wrong, no panics.
            for bad in ["not an address", "127.0.0.1", "127.0.0.1:99999", "256.1.1.1:80", ":80", ""] {
                let e = TcpStream::connect(bad).await.unwrap_err();
                assert!(!e.to_string().is_empty(), "{bad}");
                let e = TcpListener::bind(bad).await.unwrap_err();
                assert!(e.to_string().contains(bad) || bad.is_empty(), "{bad}: {e}");
            }
            let e = TcpStream::connect(&[][..] as &[SocketAddr]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            // Binding a port in use.
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let e = TcpListener::bind(l.local_addr().unwrap()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}");

            // Reset: the server closes with SO_LINGER 0.
            {
                let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                let (s, _) = l.accept().await.unwrap();
                s.set_linger(Some(Duration::ZERO)).unwrap();
                drop(s);
                let mut buf = [0u8; 8];
                let e = c.read(&mut buf).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
                // Writing to a reset connection: an error (EPIPE or ECONNRESET), never SIGPIPE.
                let mut saw_error = false;
                for _ in 0..10 {
                    if c.write_all(&[0u8; 1024]).await.is_err() {
                        saw_error = true;
                        break;
                    }
                }
                assert!(saw_error);
            }

            // Read shutdown: our reads see end of stream.
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (_s, _) = l.accept().await.unwrap();
            c.shutdown_std(Shutdown::Read).unwrap();
            let mut c = c;
            let (res, _) = c.read_owned(vec![0u8; 8]).await;
            assert_eq!(res.unwrap(), 0);
        });
    });
}

/// The TTL (IPv4) or unicast hop limit (IPv6) is set and read back on listeners, streams and UDP
/// sockets of both families (on IPv6 it is `IPV6_UNICAST_HOPS`: `IP_TTL` would not apply).
#[test]
fn ttl_on_both_address_families() {
    let v6_loopback = std::net::TcpListener::bind("[::1]:0").is_ok();
    each_flavor(|rt| {
        bounded(rt, 20, async move {
            let hosts: &[&str] = if v6_loopback { &["127.0.0.1", "[::1]"] } else { &["127.0.0.1"] };
            for host in hosts {
                let l = TcpListener::bind(format!("{host}:0")).await.unwrap();
                l.set_ttl(7).unwrap();
                assert_eq!(l.ttl().unwrap(), 7, "{host}");
                let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
                c.set_ttl(9).unwrap();
                assert_eq!(c.ttl().unwrap(), 9, "{host}");
                let (a, _) = l.accept().await.unwrap();
                a.set_ttl(11).unwrap();
                assert_eq!(a.ttl().unwrap(), 11, "{host}");
                let u = UdpSocket::bind(format!("{host}:0")).await.unwrap();
                u.set_ttl(13).unwrap();
                assert_eq!(u.ttl().unwrap(), 13, "{host}");
            }
        });
    });
}

/// IPv4 multicast over the loopback interface: two members of a group each receive what a
/// third socket sends to it; membership, loop, TTL and interface options read back; bad requests
/// (a unicast "group", leaving a group not joined) give errors that name them.
#[test]
fn udp_multicast_v4_reaches_every_member() {
    use std::net::Ipv4Addr;
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let group = Ipv4Addr::new(239, 255, 77, 1);
            // Two members on one port, both bound with SO_REUSEADDR (through socket2).
            let member = || {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
                s.set_reuse_address(true).unwrap();
                s
            };
            let (a_sock, b_sock) = (member(), member());
            let any: std::net::SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
            a_sock.bind(&any.into()).unwrap();
            let port = a_sock.local_addr().unwrap().as_socket().unwrap().port();
            let any: std::net::SocketAddr = (Ipv4Addr::UNSPECIFIED, port).into();
            b_sock.bind(&any.into()).unwrap();
            let members = [a_sock, b_sock].map(|s| {
                s.set_nonblocking(true).unwrap();
                UdpSocket::from_std(std::net::UdpSocket::from(s)).unwrap()
            });
            for m in &members {
                m.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
            }
            let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            tx.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
            assert_eq!(tx.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
            tx.set_multicast_loop_v4(true).unwrap();
            assert!(tx.multicast_loop_v4().unwrap());
            tx.set_multicast_ttl_v4(2).unwrap();
            assert_eq!(tx.multicast_ttl_v4().unwrap(), 2);
            for i in 0..20u8 {
                tx.send_to(&[i], (group, port)).await.unwrap();
                for m in &members {
                    let mut buf = [0u8; 4];
                    let (n, from) = m.recv_from(&mut buf).await.unwrap();
                    assert_eq!((&buf[..n], from), (&[i][..], tx.local_addr().unwrap()));
                }
            }
            for m in &members {
                m.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
            }
            let err = members[0].leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap_err();
            assert!(err.to_string().contains("leave_multicast_v4 239.255.77.1 on 127.0.0.1"), "{err}");
            let err = members[0].join_multicast_v4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::UNSPECIFIED).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains("join_multicast_v4 10.0.0.1"), "{err}");
        });
    });
}

/// `ready(Interest)` on TCP and UDP, every flavour and both drivers: it reports exactly what the
/// socket is ready for (a stale readiness event is waited past, so an idle socket's read
/// interest times out instead of returning at once), wakes a waiting task when data arrives, and
/// tells end of stream apart (`is_read_closed`).
#[test]
fn ready_reports_what_the_socket_is_ready_for() {
    use spindle::io::{Interest, Ready};
    use spindle::time::timeout;
    let idle = Duration::from_millis(20);
    each_flavor(|rt| {
        bounded(rt, 20, async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let r = s.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
            assert_eq!(r, Ready::WRITABLE);
            assert!(timeout(idle, s.ready(Interest::READABLE)).await.is_err(), "nothing to read yet");
            // A task waiting for data is woken by it.
            let s = Arc::new(s);
            let waiter = {
                let s = s.clone();
                spindle::spawn(async move { s.ready(Interest::READABLE).await.unwrap() })
            };
            spindle::time::sleep(Duration::from_millis(5)).await;
            c.write_all(b"abc").await.unwrap();
            let r = waiter.await.unwrap();
            assert!(r.is_readable() && !r.is_read_closed(), "{r:?}");
            let mut buf = [0u8; 8];
            assert_eq!(s.try_read(&mut buf).unwrap(), 3);
            assert!(timeout(idle, s.ready(Interest::READABLE)).await.is_err(), "everything was read");
            // End of stream: read-closed, and the read returns 0.
            c.shutdown_std(Shutdown::Write).unwrap();
            let r = s.ready(Interest::READABLE).await.unwrap();
            assert!(r.is_read_closed() && r.is_readable(), "{r:?}");
            assert_eq!(s.try_read(&mut buf).unwrap(), 0);
            drop(c);

            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            a.connect(b.local_addr().unwrap()).await.unwrap();
            b.connect(a.local_addr().unwrap()).await.unwrap();
            assert!(timeout(idle, b.ready(Interest::READABLE)).await.is_err(), "no datagram yet");
            assert_eq!(b.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap(), Ready::WRITABLE);
            a.send(b"d").await.unwrap();
            assert_eq!(b.ready(Interest::READABLE).await.unwrap(), Ready::READABLE);
            assert_eq!(b.try_recv(&mut buf).unwrap(), 1);
            assert!(timeout(idle, b.ready(Interest::READABLE)).await.is_err(), "the datagram was taken");

            // A pending error (ICMP port unreachable on a connected UDP socket) is reported as
            // readable with `is_error`, and once a receive has taken it the socket waits again.
            let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let dead_addr = dead.local_addr().unwrap();
            drop(dead);
            let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            u.connect(dead_addr).await.unwrap();
            u.send(b"anyone?").await.unwrap();
            // Nothing will ever arrive: only the error ends this wait.
            let r = u.ready(Interest::READABLE).await.unwrap();
            assert!(r.is_error() && r.is_readable() && !r.is_read_closed(), "{r:?}");
            assert_eq!(u.try_recv(&mut buf).unwrap_err().kind(), ErrorKind::ConnectionRefused);
            assert!(timeout(idle, u.ready(Interest::READABLE)).await.is_err(), "the error was taken");
        });
    });
}

/// Owned-buffer `send_to_owned`/`recv_from_owned` on Unix datagram sockets, every flavour and
/// both drivers: 100 datagrams each way with their senders' paths, and a `recv_from_owned`
/// dropped in flight loses nothing (the next one gets the datagram and its sender).
#[test]
fn unix_datagram_owned_send_to_and_recv_from() {
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let (pa, pb) = (sock_path("ud-owned-a"), sock_path("ud-owned-b"));
            let a = UnixDatagram::bind(&pa).unwrap();
            let b = UnixDatagram::bind(&pb).unwrap();
            let mut buf = Vec::with_capacity(64);
            for i in 0..100u32 {
                let (from, to, to_path, from_path) = if i % 2 == 0 { (&a, &b, &pb, &pa) } else { (&b, &a, &pa, &pb) };
                let (res, sent) = from.send_to_owned(i.to_le_bytes().to_vec(), to_path).await;
                assert_eq!(res.unwrap(), 4);
                assert_eq!(sent, i.to_le_bytes());
                buf.clear();
                let (res, got) = to.recv_from_owned(buf).await;
                let (n, addr) = res.unwrap();
                assert_eq!((&got[..n], addr.as_pathname()), (&i.to_le_bytes()[..], Some(from_path.as_path())));
                buf = got;
            }
            // Dropped in flight, then the datagram arrives: the next receive gets it.
            let r = spindle::time::timeout(Duration::from_millis(2), a.recv_from_owned(vec![0u8; 16])).await;
            assert!(r.is_err(), "nothing was sent yet");
            b.send_to(b"late", &pa).await.unwrap();
            let (res, got) = a.recv_from_owned(Vec::with_capacity(16)).await;
            let (n, addr) = res.unwrap();
            assert_eq!((&got[..n], addr.as_pathname()), (&b"late"[..], Some(pb.as_path())));
            let _ = (std::fs::remove_file(&pa), std::fs::remove_file(&pb));
        });
    });
}

/// A connected UDP socket whose peer is gone: the receive reports the ICMP error
/// (`ConnectionRefused`), and the next receive waits for a datagram. It used to spin inside one
/// poll for ever (the error stayed recorded as readiness after the error was taken), freezing
/// the worker so that not even a timeout around it could fire.
#[test]
fn udp_receive_after_a_refused_send_waits_instead_of_spinning() {
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let dead_addr = dead.local_addr().unwrap();
            drop(dead);
            let u = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            u.connect(dead_addr).await.unwrap();
            let mut buf = [0u8; 16];
            for _ in 0..3 {
                u.send(b"anyone?").await.unwrap();
                let e = u.recv(&mut buf).await.unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
                let r = spindle::time::timeout(Duration::from_millis(20), u.recv(&mut buf)).await;
                assert!(r.is_err(), "nothing was sent to us: {r:?}");
            }
        });
    });
}

#[test]
fn tcp_socket_options_reuseport_listeners_and_connect() {
    each_flavor(|rt| {
        bounded(rt, 20, async {
            // Two listeners on one port: every connection is accepted by one of them.
            let listen = |addr: SocketAddr| {
                let s = TcpSocket::new_v4().unwrap();
                s.set_reuseport(true).unwrap();
                s.bind(addr).unwrap();
                s.listen(64).unwrap()
            };
            let first = listen((Ipv4Addr::LOCALHOST, 0).into());
            let addr = first.local_addr().unwrap();
            let second = listen(addr);
            let accepted = Arc::new(AtomicUsize::new(0));
            let servers: Vec<_> = [first, second]
                .into_iter()
                .map(|l| {
                    let accepted = accepted.clone();
                    spindle::spawn(async move {
                        loop {
                            let (mut s, _) = l.accept().await.unwrap();
                            accepted.fetch_add(1, Ordering::SeqCst);
                            spindle::spawn(async move {
                                let (res, b) = s.read_owned(vec![0u8; 8]).await;
                                let n = res.unwrap();
                                let (res, _) = s.write_all_owned(b.slice(..n)).await;
                                res.unwrap();
                            });
                        }
                    })
                })
                .collect();
            for i in 0..32u8 {
                let sock = TcpSocket::new_v4().unwrap();
                sock.set_nodelay(true).unwrap();
                sock.set_recv_buffer_size(32 * 1024).unwrap();
                let mut c = sock.connect(addr).await.unwrap();
                assert!(c.nodelay().unwrap(), "options set before connect stay");
                let (res, _) = c.write_all_owned(vec![i; 3]).await;
                res.unwrap();
                let (res, back) = c.read_exact_owned(Vec::with_capacity(3)).await;
                res.unwrap();
                assert_eq!(back, [i; 3]);
            }
            assert_eq!(accepted.load(Ordering::SeqCst), 32);
            // Without SO_REUSEPORT the port (listened on) is taken: a clear error naming it.
            let taken = TcpSocket::new_v4().unwrap();
            let e = taken.bind(addr).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse);
            assert!(e.to_string().contains(&addr.to_string()), "{e}");
            for s in servers {
                s.abort();
            }
            // Through a raw fd and back, options kept: a listener still comes out of it.
            let sock = TcpSocket::new_v4().unwrap();
            sock.set_reuseaddr(true).unwrap();
            let fd = std::os::fd::IntoRawFd::into_raw_fd(sock);
            // SAFETY: `fd` was just released by the `TcpSocket` above; nothing else owns it.
            let sock = unsafe { <TcpSocket as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            assert!(sock.reuseaddr().unwrap());
            assert!(sock.take_error().unwrap().is_none());
            sock.bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
            let l = sock.listen(8).unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            assert_eq!(l.accept().await.unwrap().1, c.local_addr().unwrap());
            // Connecting to nothing: refused, with the address.
            let e = TcpSocket::new_v4().unwrap().connect((Ipv4Addr::LOCALHOST, 1).into()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
            assert!(e.to_string().starts_with("connect 127.0.0.1:1: "), "{e}");
        });
    });
}

/// A stream dropped on its runtime's thread is closed at once, not at the runtime's next turn:
/// a peer on a std thread sees end of stream while this thread blocks joining it (on io_uring
/// the readiness watch's poll holds the file until its cancel's deferred work runs).
#[test]
fn a_dropped_stream_closes_even_if_its_thread_then_blocks() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut peer, _) = listener.accept().unwrap();
            stream.writable().await.unwrap();
            // Let the runtime collect what the kernel has for it, so the drop is the next thing
            // its ring sees.
            spindle::time::sleep(Duration::from_millis(5)).await;
            drop(stream);
            let reader = std::thread::spawn(move || {
                peer.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                std::io::Read::read(&mut peer, &mut [0u8; 8])
            });
            assert_eq!(reader.join().unwrap().expect("the peer saw no close"), 0);
        });
    });
}

#[test]
fn peer_close_reaches_a_waiting_reader() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut buf = [0u8; 8];
            // FIN: the reader sees end of stream.
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            drop(s);
            let r = spindle::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
            assert_eq!(r.expect("the FIN never woke the reader").unwrap(), 0);
            // RST: the reader sees ConnectionReset.
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            s.set_linger(Some(Duration::ZERO)).unwrap();
            drop(s);
            let r = spindle::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await;
            assert_eq!(r.expect("the RST never woke the reader").unwrap_err().kind(), ErrorKind::ConnectionReset);
        });
    });
}

#[test]
fn tcp_many_connections() {
    let _s = serial();
    const CONNS: usize = 2000;
    // Each connection costs two fds in this process (client and server side).
    let limit = raise_nofile_limit();
    if limit < (2 * CONNS + 200) as u64 {
        eprintln!("skipping tcp_many_connections: RLIMIT_NOFILE is {limit}");
        return;
    }
    each_flavor(|rt| {
        let before = open_fds();
        bounded(rt, 60, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(echo_server(listener, CONNS));
            let mut clients = Vec::with_capacity(CONNS);
            // Connect everything first (all open at once), then talk on each.
            let mut streams = Vec::with_capacity(CONNS);
            for _ in 0..CONNS {
                streams.push(TcpStream::connect(addr).await.unwrap());
            }
            for (i, mut c) in streams.into_iter().enumerate() {
                clients.push(spindle::spawn(async move {
                    let msg = (i as u32).to_le_bytes().to_vec();
                    let (res, msg) = c.write_all_owned(msg).await;
                    res.unwrap();
                    let (res, back) = c.read_exact_owned(Vec::with_capacity(4)).await;
                    res.unwrap();
                    assert_eq!(back, msg);
                }));
            }
            for c in clients {
                c.await.unwrap();
            }
            server.await.unwrap();
        });
        assert_fds_back_to(before);
    });
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force.
fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max.min(65536), rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

#[test]
fn cancellation_storm_keeps_fd_count_and_runtime_serving() {
    let _s = serial();
    each_flavor(|rt| {
        let before = open_fds();
        bounded(rt, 60, async {
            let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
            let addr = listener.local_addr().unwrap();

            // 1. Thousands of accepts, pending or polled once, dropped (some in spawned tasks that
            //    are aborted, so they are dropped on whichever worker runs them).
            for _ in 0..1000 {
                let a = pin!(listener.accept());
                assert!(futures::poll!(a).is_pending());
            }
            let tasks: Vec<_> = (0..500)
                .map(|_| {
                    let l = listener.clone();
                    spindle::spawn(async move { l.accept().await.map(|_| ()) })
                })
                .collect();
            spindle::task::yield_now().await;
            for t in tasks {
                t.abort();
                let _ = t.await;
            }

            // 2. Thousands of connects dropped at random points (before, during and after the
            //    handshake), with nobody accepting them.
            for i in 0..1500u64 {
                let d = Duration::from_micros(i % 7 * 30);
                let _ = spindle::time::timeout(d, TcpStream::connect(addr)).await;
            }
            // Drain the backlog those connects filled, dropping the server sides at once.
            while let Ok(Ok(_)) = spindle::time::timeout(Duration::from_millis(50), listener.accept()).await {}

            // 3. Thousands of pending reads (owned buffers and slices), dropped.
            let mut pairs = Vec::new();
            for _ in 0..20 {
                let c = TcpStream::connect(addr).await.unwrap();
                let (s, _) = listener.accept().await.unwrap();
                pairs.push((c, s));
            }
            for i in 0..2000 {
                let (c, _) = &mut pairs[i % 20];
                if i % 2 == 0 {
                    let r = pin!(c.read_owned(vec![0u8; 1024]));
                    assert!(futures::poll!(r).is_pending());
                } else {
                    let mut buf = [0u8; 16];
                    let r = pin!(c.read(&mut buf));
                    assert!(futures::poll!(r).is_pending());
                }
            }
            // The connections still work after all that.
            for (c, s) in &mut pairs {
                s.write_all(b"still here").await.unwrap();
                let mut buf = [0u8; 10];
                c.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"still here");
            }
            drop(pairs);

            // 4. The runtime still serves new connections.
            let l2 = listener.clone();
            let server = spindle::spawn(async move {
                let (mut s, _) = l2.accept().await.unwrap();
                s.write_all(b"ok").await.unwrap();
            });
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ok");
            server.await.unwrap();
        });
        assert_fds_back_to(before);
    });
}

#[test]
fn udp_send_recv_owned_and_concurrent_receivers() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let b_addr = b.local_addr().unwrap();

            a.send_to(b"one", b_addr).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"one"[..], a.local_addr().unwrap()));

            let (res, buf) = a.send_to_owned(b"two".to_vec(), b_addr).await;
            assert_eq!(res.unwrap(), 3);
            let (res, buf) = b.recv_from_owned(buf).await;
            assert_eq!(res.unwrap().0, 3);
            assert_eq!(buf, b"two");

            // Connected sockets.
            a.connect(b_addr).await.unwrap();
            b.connect(a.local_addr().unwrap()).await.unwrap();
            let (res, _) = a.send_owned(vec![9u8; 100]).await;
            assert_eq!(res.unwrap(), 100);
            let (res, buf) = b.recv_owned(Vec::with_capacity(1500)).await;
            assert_eq!((res.unwrap(), buf.len()), (100, 100));

            // Several tasks waiting in recv at once on one socket: each datagram reaches one of
            // them and none hangs.
            let got = Arc::new(AtomicUsize::new(0));
            let receivers: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    let got = got.clone();
                    spindle::spawn(async move {
                        let mut buf = [0u8; 8];
                        for _ in 0..5 {
                            b.recv(&mut buf).await.unwrap();
                            got.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for i in 0..20u8 {
                a.send(&[i]).await.unwrap();
                if i % 4 == 0 {
                    spindle::time::sleep(Duration::from_millis(1)).await;
                }
            }
            for r in receivers {
                r.await.unwrap();
            }
            assert_eq!(got.load(Ordering::SeqCst), 20);

            // Bad input.
            assert!(a.send_to(b"x", "not an address").await.is_err());
            let (res, buf) = a.send_to_owned(vec![1u8], "nope:nope").await;
            assert!(res.is_err());
            assert_eq!(buf, [1]);
            let unconnected = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            assert!(unconnected.send(b"x").await.is_err());
        });
    });
}

#[test]
fn unix_stream_and_datagram() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let path = sock_path("stream");
            let l = UnixListener::bind(&path).unwrap();
            assert!(UnixListener::bind(&path).is_err(), "the path is taken");
            let mut c = UnixStream::connect(&path).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let (res, _) = c.write_all_owned(b"unix".to_vec()).await;
            res.unwrap();
            let (res, buf) = s.read_exact_owned(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(buf, b"unix");
            // Half close.
            c.close().await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            s.write_all(b"back").await.unwrap();
            drop(s);
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, b"back");
            std::fs::remove_file(&path).unwrap();
            // Connecting to a socket file nobody listens on any more.
            drop(l);
            assert!(UnixStream::connect(&path).await.is_err());

            // Split halves over a pair.
            let (a, mut b) = UnixStream::pair().unwrap();
            let (mut r, w) = a.into_split();
            let (res, _) = b.write_all_owned("to a").await;
            res.unwrap();
            let (res, buf) = r.read_exact_owned(Vec::with_capacity(4)).await;
            res.unwrap();
            assert_eq!(buf, b"to a");
            drop(w);
            let (res, _) = b.read_owned(vec![0u8; 4]).await;
            assert_eq!(res.unwrap(), 0);

            // Datagrams.
            let dpath = sock_path("dgram");
            let server = UnixDatagram::bind(&dpath).unwrap();
            let client = UnixDatagram::unbound().unwrap();
            client.send_to(b"hello", &dpath).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert!(from.is_unnamed());
            let (x, y) = UnixDatagram::pair().unwrap();
            let (res, _) = x.send_owned(b"pair".to_vec()).await;
            assert_eq!(res.unwrap(), 4);
            let (res, buf) = y.recv_owned(Vec::with_capacity(8)).await;
            assert_eq!((res.unwrap(), &buf[..]), (4, &b"pair"[..]));
            assert!(client.send_to(b"x", "/no/such/socket").await.is_err());
            std::fs::remove_file(&dpath).unwrap();
        });
    });
}

#[test]
fn works_outside_a_runtime() {
    let _s = serial();
    // No spindle runtime: the fallback reactor thread serves readiness, the blocking work runs on
    // plain threads.
    futures::executor::block_on(async {
        let l = TcpListener::bind("localhost:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            futures::executor::block_on(async {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 3];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            })
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        t.join().unwrap();
    });
}

#[test]
fn owned_buffers_are_not_copied() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let buf = vec![5u8; 64];
            let ptr = buf.stable_ptr();
            let (res, buf) = a.write_all_owned(buf).await;
            res.unwrap();
            assert_eq!(buf.stable_ptr(), ptr);
            let (res, buf) = b.read_exact_owned(buf).await;
            res.unwrap();
            assert_eq!(buf.stable_ptr(), ptr, "read into the same allocation");
        });
    });
}

#[cfg(feature = "tokio-io")]
#[test]
fn tokio_io_traits_are_implemented() {
    fn assert_tokio<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send>() {}
    assert_tokio::<TcpStream>();
    assert_tokio::<UnixStream>();
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let mut storage = [0u8; 8];
            futures::future::poll_fn(|cx| {
                tokio::io::AsyncWrite::poll_write(std::pin::Pin::new(&mut a), cx, b"tokio").map(|r| r.map(|_| ()))
            })
            .await
            .unwrap();
            let mut rb = tokio::io::ReadBuf::new(&mut storage);
            futures::future::poll_fn(|cx| tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut b), cx, &mut rb))
                .await
                .unwrap();
            assert_eq!(rb.filled(), b"tokio");
        });
    });
}

/// A task that never stops yielding keeps its worker (or current-thread runtime) busy for good:
/// the worker never parks, so only its periodic maintenance poll of the reactor can deliver I/O
/// to another task on the same worker (readiness, and on io_uring the op's submission and its
/// completion). Data written by a plain thread must still reach a reader there.
#[test]
fn busy_worker_still_delivers_io() {
    let _s = serial();
    let rts = [
        ("current_thread", spindle::runtime::Builder::new_current_thread().build().unwrap()),
        ("multi_thread(1)", spindle::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap()),
    ];
    for (name, rt) in &rts {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let spinner = rt.spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                spindle::task::yield_now().await;
            }
        });
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (c, mut d) = std::os::unix::net::UnixStream::pair().unwrap();
        // Both readers are spawned (on the one worker), register there and wait there.
        let owned = rt.spawn(async move {
            let mut a = UnixStream::from_std(a).unwrap();
            let (res, buf) = a.read_owned(Vec::with_capacity(16)).await;
            res.map(|_| buf)
        });
        let slices = rt.spawn(async move {
            let mut c = UnixStream::from_std(c).unwrap();
            let mut buf = [0u8; 16];
            c.read(&mut buf).await.map(|n| buf[..n].to_vec())
        });
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_millis(50));
            b.write_all(b"owned").unwrap();
            d.write_all(b"slices").unwrap();
            (b, d)
        });
        let got = rt.block_on(async {
            spindle::time::timeout(Duration::from_secs(10), async {
                (owned.await.unwrap().unwrap(), slices.await.unwrap().unwrap())
            })
            .await
        });
        stop.store(true, Ordering::Relaxed);
        let _ends = writer.join().unwrap();
        let (x, y) = got.unwrap_or_else(|_| panic!("{name}: a busy worker never delivered the I/O"));
        assert_eq!((&x[..], &y[..]), (&b"owned"[..], &b"slices"[..]), "{name}");
        rt.block_on(spinner).unwrap();
    }
}

/// A socket whose runtime was dropped fails with a clear error instead of waiting forever.
#[test]
fn socket_outlives_its_runtime() {
    let _s = serial();
    for (name, rt) in common::flavors() {
        let (a, b) = rt.block_on(async {
            // Registered from a worker (multi-thread) or the driving thread (current-thread).
            spindle::spawn(async { UnixStream::pair().unwrap() }).await.unwrap()
        });
        drop(rt);
        let (mut a, _b) = (a, b);
        let r = spindle::block_on(async {
            let mut buf = [0u8; 4];
            spindle::time::timeout(Duration::from_secs(5), a.read(&mut buf)).await
        });
        let e = r.unwrap_or_else(|_| panic!("{name}: a read on a socket of a dropped runtime hung")).unwrap_err();
        assert!(e.to_string().contains("shut down"), "{name}: {e}");
    }
}

/// A socket's readiness is dispatched while another task keeps the worker busy with timers
/// (a paused clock makes every park a virtual-time jump that never waits in the reactor): the
/// periodic maintenance must still poll the reactor. Found in review: resetting the maintenance
/// count at every park left the readiness undelivered on epoll.
#[test]
fn readiness_is_dispatched_while_a_task_sleeps_in_a_loop() {
    let _s = serial();
    for driver in [spindle::runtime::IoDriver::Epoll, spindle::runtime::IoDriver::Uring] {
        let Ok(rt) = spindle::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .io_driver(driver)
            .start_paused(true)
            .build()
        else {
            eprintln!("{driver:?} unavailable, skipped");
            continue;
        };
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d = done.clone();
        rt.spawn(async move {
            let mut s = TcpStream::from_std(client).unwrap();
            let mut b = [0u8; 4];
            let r = s.read_exact(&mut b).await;
            d.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(r.map(|()| b));
        });
        let d = done.clone();
        rt.spawn(async move {
            let start = std::time::Instant::now();
            while !d.load(std::sync::atomic::Ordering::SeqCst) && start.elapsed() < Duration::from_secs(4) {
                spindle::time::sleep(Duration::from_millis(1)).await;
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        std::io::Write::write_all(&mut server, b"ping").unwrap();
        let r = rx.recv_timeout(Duration::from_secs(3));
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let r = r.unwrap_or_else(|_| panic!("{driver:?}: the socket's readiness was not dispatched in 3 s"));
        assert_eq!(&r.unwrap(), b"ping");
    }
}

/// Sends `data` with `fd` attached (`SCM_RIGHTS`) on the Unix stream `sock`.
fn send_with_fd(sock: std::os::fd::RawFd, data: &[u8], fd: std::os::fd::RawFd) {
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let mut control = [0u64; 4];
    // SAFETY: plain data, all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a size computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as _;
    // SAFETY: `msg` has room for one control message carrying an `int` (`control` is 32 bytes).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
    }
    // SAFETY: `msg` points at live data and control buffers for the call.
    let n = unsafe { libc::sendmsg(sock, &msg, 0) };
    assert_eq!(n, data.len() as isize, "sendmsg: {}", std::io::Error::last_os_error());
}

/// How many of this process's fds are open on `path`.
fn fds_opening(path: &str) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.as_os_str() == path)
        .count()
}

/// File descriptors a Unix stream's peer attaches (`SCM_RIGHTS`) are never installed in this
/// process by spindle's reads (nothing would close them): every kind of read gets the bytes and
/// the kernel drops the descriptors.
#[test]
fn unix_stream_reads_never_take_passed_fds() {
    use std::os::fd::AsRawFd;
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let passed = std::fs::File::open("/dev/null").unwrap();
            let (a, mut b) = UnixStream::pair().unwrap();
            // Counted by what they open (this binary's other tests open and close sockets
            // meanwhile; nothing else here opens /dev/null): an installed copy would be one more.
            let before = fds_opening("/dev/null");
            for _ in 0..3 {
                send_with_fd(a.as_raw_fd(), b"abcd", passed.as_raw_fd());
            }
            let mut got = Vec::new();
            let (mut p, mut q) = ([0u8; 1], [0u8; 3]);
            let n = b.readv(&mut [std::io::IoSliceMut::new(&mut p), std::io::IoSliceMut::new(&mut q)]).await.unwrap();
            got.extend_from_slice(&[&p[..], &q[..]].concat()[..n]);
            let mut buf = [0u8; 4];
            let n = b.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
            while got.len() < 12 {
                let (res, v) = b.read_owned(vec![0u8; 4]).await;
                res.unwrap();
                got.extend_from_slice(&v);
            }
            assert_eq!(got, b"abcdabcdabcd");
            assert_eq!(fds_opening("/dev/null"), before, "a read installed a passed descriptor");
            drop((a, b));
        });
    });
}

static SIGPIPES: AtomicUsize = AtomicUsize::new(0);

extern "C" fn count_sigpipe(_: libc::c_int) {
    SIGPIPES.fetch_add(1, Ordering::SeqCst);
}

/// Counts SIGPIPE deliveries instead of ignoring them (Rust's default hides a raised one).
fn catch_sigpipe() {
    // SAFETY: installs a plain async-signal-safe handler (one atomic add).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = count_sigpipe as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGPIPE, &sa, std::ptr::null_mut()), 0);
    }
}

/// No write path raises SIGPIPE on a socket that can no longer send (net's contract): on
/// io_uring `writev_owned` was a `writev` op, which cannot say `MSG_NOSIGNAL`.
#[test]
fn writes_on_a_shut_down_socket_raise_no_sigpipe() {
    let _s = serial();
    catch_sigpipe();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (_s, _) = l.accept().await.unwrap();
            c.shutdown_std(Shutdown::Write).unwrap();
            let (u, _peer) = UnixStream::pair().unwrap();
            u.shutdown_std(Shutdown::Write).unwrap();
            let mut u = u;
            let before = SIGPIPES.load(Ordering::SeqCst);
            assert_eq!(c.write(b"x").await.unwrap_err().kind(), ErrorKind::BrokenPipe);
            let (res, _) = c.write_owned(b"x".to_vec()).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
            let (res, _) = c.writev_owned(vec![b"x".to_vec(), b"y".to_vec()]).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
            let (res, _) = u.writev_owned(vec![b"x".to_vec()]).await;
            assert_eq!(res.unwrap_err().kind(), ErrorKind::BrokenPipe);
            assert_eq!(SIGPIPES.load(Ordering::SeqCst), before, "a write raised SIGPIPE");
        })
    });
}

/// `writev_owned` still gathers every buffer, in order.
#[test]
fn writev_owned_sends_every_buffer_in_order() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let (res, bufs) = a.writev_owned(vec![b"ab".to_vec(), Vec::new(), b"cde".to_vec()]).await;
            assert_eq!((res.unwrap(), bufs.len()), (5, 3));
            let mut got = [0u8; 5];
            b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"abcde");
        })
    });
}

/// A datagram's sender bound to an abstract address is named in `recv_from` (it was reported as
/// unnamed, so no reply could reach it).
#[test]
fn unix_datagram_recv_from_names_an_abstract_sender() {
    let _s = serial();
    use std::os::linux::net::SocketAddrExt;
    each_flavor(|rt| {
        bounded(rt, 10, async {
            static N: AtomicUsize = AtomicUsize::new(0);
            let id = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let a_name = format!("\0spindle-test-a-{id}");
            let b_name = format!("\0spindle-test-b-{id}");
            let a = UnixDatagram::bind(&a_name).unwrap();
            let b = UnixDatagram::bind(&b_name).unwrap();
            a.send_to(b"hi", &b_name).await.unwrap();
            let mut buf = [0u8; 8];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(from.as_abstract_name(), Some(&a_name.as_bytes()[1..]));
            let (c, d) = UnixDatagram::pair().unwrap();
            c.send(b"u").await.unwrap();
            let (_, from) = d.recv_from(&mut buf).await.unwrap();
            assert!(from.is_unnamed());
        })
    });
}

/// Send errors name the target (net's contract: faults carry the address or path).
#[test]
fn send_to_errors_name_the_target() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 10, async {
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let e = a.send_to(b"x", "[::1]:9").await.unwrap_err();
            assert!(e.to_string().contains("[::1]:9"), "{e}");
            let (res, _) = a.send_to_owned(b"x".to_vec(), "[::1]:9").await;
            let e = res.unwrap_err();
            assert!(e.to_string().contains("[::1]:9"), "{e}");
            assert_eq!(spindle::io::raw_os_error(&e), Some(libc::EAFNOSUPPORT));
            let long = "x".repeat(200);
            let d = UnixDatagram::unbound().unwrap();
            let e = d.send_to(b"x", &long).await.unwrap_err();
            assert!(e.to_string().contains(&long), "{e}");
        })
    });
}

/// Vectored reads and writes with more slices than one syscall takes (IOV_MAX, 1024) transfer a
/// prefix, as std's do (they failed with EMSGSIZE).
#[test]
fn vectored_io_with_more_than_iov_max_slices_transfers_a_prefix() {
    let _s = serial();
    use std::io::{IoSlice, IoSliceMut};
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let (mut a, mut b) = UnixStream::pair().unwrap();
            let data = vec![7u8; 2000];
            let slices: Vec<IoSlice<'_>> = data.chunks(1).map(IoSlice::new).collect();
            let n = futures::AsyncWriteExt::write_vectored(&mut a, &slices).await.unwrap();
            assert!(n > 0 && n <= 1024, "{n}");
            let mut got = vec![0u8; 2000];
            let mut into: Vec<IoSliceMut<'_>> = got.chunks_mut(1).map(IoSliceMut::new).collect();
            let m = futures::AsyncReadExt::read_vectored(&mut b, &mut into).await.unwrap();
            assert!(m > 0 && m <= n, "{m}");
            let (res, _) = a.writev_owned((0..2000).map(|_| vec![1u8]).collect::<Vec<_>>()).await;
            let w = res.unwrap();
            assert!(w > 0 && w <= 1024, "{w}");
        })
    });
}

/// `lookup_host` on every flavour: literal addresses at once, names through the resolver on the
/// blocking pool, an empty list as an empty iterator, and a bad name as an error naming it.
#[test]
fn lookup_host_literal_named_empty_and_bad() {
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let v: Vec<SocketAddr> = spindle::net::lookup_host("[::1]:9").await.unwrap().collect();
            assert_eq!(v, vec!["[::1]:9".parse::<SocketAddr>().unwrap()]);
            let named: Vec<SocketAddr> = spindle::net::lookup_host(("localhost", 7)).await.unwrap().collect();
            assert!(!named.is_empty() && named.iter().all(|a| a.ip().is_loopback() && a.port() == 7), "{named:?}");
            let empty: &[SocketAddr] = &[];
            assert_eq!(spindle::net::lookup_host(empty).await.unwrap().count(), 0);
            let err = spindle::net::lookup_host("localhost").await.unwrap_err();
            assert!(err.to_string().contains("\"localhost\""), "{err}");
        })
    });
}

/// The readiness API (`readable`/`writable` + `try_read`/`try_write`, all `&self`) moves 256 KiB
/// each way intact on every flavour: a `WouldBlock` clears the readiness it saw, so the next wait
/// sleeps until new data or room arrives (a wait that kept returning at once would still pass
/// here, but one that missed an event would hang the bounded test). End of stream reads as 0.
#[test]
fn readiness_api_moves_data_both_ways_and_sees_end_of_stream() {
    const N: usize = 256 * 1024;
    async fn send_all(s: &TcpStream, data: &[u8]) {
        let mut off = 0;
        while off < data.len() {
            off += when_ready!(s.writable(), s.try_write(&data[off..]));
        }
    }
    async fn recv_exactly(s: &TcpStream, n: usize) -> Vec<u8> {
        let mut got = Vec::with_capacity(n);
        let mut buf = [0u8; 4096];
        while got.len() < n {
            let k = when_ready!(s.readable(), s.try_read(&mut buf));
            assert!(k > 0, "early end of stream after {} bytes", got.len());
            got.extend_from_slice(&buf[..k]);
        }
        got
    }
    each_flavor(|rt| {
        bounded(rt, 60, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let data: Vec<u8> = (0..N).map(|i| (i * 7 % 251) as u8).collect();
            let expect = data.clone();
            // The server echoes through the readiness API on two tasks sharing the stream.
            let s = Arc::new(s);
            let s2 = s.clone();
            let echo = spindle::spawn(async move {
                let got = recv_exactly(&s2, N).await;
                send_all(&s2, &got).await;
            });
            let c = Arc::new(c);
            let c2 = c.clone();
            let reader = spindle::spawn(async move { recv_exactly(&c2, N).await });
            send_all(&c, &data).await;
            echo.await.unwrap();
            assert_eq!(reader.await.unwrap(), expect);
            // Nothing more is there: WouldBlock, not a stale readiness's zero.
            let mut buf = [0u8; 16];
            assert_eq!(c.try_read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
            drop(s);
            // `readable` may end spuriously (a readiness event for bytes already read can come
            // in late, as in tokio, whose docs say so), so wait the way callers must: until
            // `try_read` says something other than `WouldBlock`. (Asserting the first
            // `try_read` failed in 4 of 40 io_uring runs under load.)
            let end = when_ready!(c.readable(), c.try_read(&mut buf));
            assert_eq!(end, 0, "end of stream");
        })
    });
}

/// Bytes a cancelled owned read took (io_uring: into the socket's stash) are what the readiness
/// API reads next: `readable` waits for the orphaned read to finish, `try_read` returns its bytes.
#[test]
fn readiness_api_reads_what_a_cancelled_owned_read_took() {
    each_flavor(|rt| {
        bounded(rt, 20, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            {
                let mut read = pin!(s.read_owned(vec![0u8; 16]));
                assert!(futures::poll!(read.as_mut()).is_pending());
            } // dropped in flight
            c.write_all(b"abc").await.unwrap();
            let mut buf = [0u8; 16];
            let n = when_ready!(s.readable(), s.try_read(&mut buf));
            assert_eq!(&buf[..n], b"abc");
        })
    });
}

/// The split halves have the readiness API too: 64 KiB through owned TCP halves on two tasks
/// and through borrowed Unix halves in one, on every flavour.
#[test]
fn readiness_api_on_split_halves() {
    const N: usize = 64 * 1024;
    let data: Vec<u8> = (0..N).map(|i| (i * 13 % 241) as u8).collect();
    each_flavor(|rt| {
        let data = data.clone();
        bounded(rt, 60, async move {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let (_c_read, c_write) = c.into_split();
            let (s_read, _s_write) = s.into_split();
            let to_send = data.clone();
            let writer = spindle::spawn(async move {
                let mut off = 0;
                while off < to_send.len() {
                    off += when_ready!(c_write.writable(), c_write.try_write(&to_send[off..]));
                }
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while got.len() < N {
                let n = when_ready!(s_read.readable(), s_read.try_read(&mut buf));
                assert!(n > 0, "early end of stream");
                got.extend_from_slice(&buf[..n]);
            }
            writer.await.unwrap();
            assert_eq!(got, data);

            let (mut a, mut b) = UnixStream::pair().unwrap();
            let (_ar, aw) = UnixStream::split(&mut a);
            let (br, _bw) = UnixStream::split(&mut b);
            aw.writable().await.unwrap();
            assert_eq!(aw.try_write(b"half").unwrap(), 4);
            let mut buf = [0u8; 8];
            let n = when_ready!(br.readable(), br.try_read(&mut buf));
            assert_eq!(&buf[..n], b"half");
        })
    });
}

/// The UDP readiness API: 200 datagrams through `writable`/`try_send_to` and
/// `readable`/`try_recv_from` (sender checked), then `WouldBlock` on an empty socket, and the
/// connected `try_send`/`try_recv`, on every flavour.
#[test]
fn udp_readiness_api() {
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            let b2 = b.clone();
            let receiver = spindle::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 16];
                while seen.len() < 200 {
                    let (n, from) = when_ready!(b2.readable(), b2.try_recv_from(&mut buf));
                    assert_eq!(from, a_addr);
                    seen.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
                }
                seen
            });
            for i in 0u32..200 {
                assert_eq!(
                    when_ready!(a.writable(), a.try_send_to(&i.to_le_bytes(), b_addr)),
                    4,
                    "short datagram send"
                );
                if i % 16 == 0 {
                    // Let the receiver drain (loopback drops datagrams past the receive buffer).
                    spindle::task::yield_now().await;
                }
            }
            let seen = receiver.await.unwrap();
            assert_eq!(seen, (0u32..200).collect::<Vec<_>>());
            let mut buf = [0u8; 8];
            assert_eq!(b.try_recv_from(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
            a.connect(b_addr).await.unwrap();
            b.connect(a_addr).await.unwrap();
            assert_eq!(a.try_send(b"conn").unwrap(), 4);
            let n = when_ready!(b.readable(), b.try_recv(&mut buf));
            assert_eq!(&buf[..n], b"conn");
        })
    });
}

/// `UnixDatagram`'s readiness API, as tokio's: 2,000 datagrams in order through
/// `writable`/`try_send_to` and `readable`/`try_recv_from`, each with its sender's path (a Unix
/// datagram queue holds few datagrams, so the sender meets `WouldBlock` and waits in `writable`);
/// `WouldBlock` on an empty socket; a connected pair's `try_send`/`try_recv`; and a datagram a
/// cancelled owned receive took comes back through `readable` and `try_recv`.
#[test]
fn unix_datagram_readiness_api() {
    let _serial = serial();
    each_flavor(|rt| {
        let dir = std::env::temp_dir().join(format!("spindle-ud-ready-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (pa, pb) = (dir.join("a"), dir.join("b"));
        bounded(rt, 30, async {
            let a = UnixDatagram::bind(&pa).unwrap();
            let b = Arc::new(UnixDatagram::bind(&pb).unwrap());
            // Fill b's queue first (it holds few datagrams), so the sender surely meets
            // `WouldBlock` and then waits in `writable` for the receiver to drain it.
            let mut next = 0u32;
            loop {
                match a.try_send_to(&next.to_le_bytes(), &pb) {
                    Ok(4) => next += 1,
                    Ok(n) => panic!("short datagram send: {n}"),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("try_send_to: {e}"),
                }
                assert!(next < 2000, "the queue never filled");
            }
            let b2 = b.clone();
            let from_path = pa.clone();
            let receiver = spindle::spawn(async move {
                let (mut seen, mut buf) = (Vec::new(), [0u8; 16]);
                while seen.len() < 2000 {
                    let (n, from) = when_ready!(b2.readable(), b2.try_recv_from(&mut buf));
                    assert_eq!(from.as_pathname(), Some(from_path.as_path()));
                    seen.push(u32::from_le_bytes(buf[..n].try_into().unwrap()));
                }
                seen
            });
            for i in next..2000 {
                assert_eq!(when_ready!(a.writable(), a.try_send_to(&i.to_le_bytes(), &pb)), 4, "short datagram send");
            }
            assert_eq!(receiver.await.unwrap(), (0u32..2000).collect::<Vec<_>>());
            let mut buf = [0u8; 8];
            assert_eq!(b.try_recv(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);

            let (x, y) = UnixDatagram::pair().unwrap();
            assert_eq!(x.try_send(b"pair").unwrap(), 4);
            let n = when_ready!(y.readable(), y.try_recv(&mut buf));
            assert_eq!(&buf[..n], b"pair");
            {
                let mut recv = pin!(y.recv_owned(vec![0u8; 16]));
                assert!(futures::poll!(recv.as_mut()).is_pending());
            } // dropped in flight: on io_uring its datagram goes to the stash
            x.send(b"stashed").await.unwrap();
            let n = when_ready!(y.readable(), y.try_recv(&mut buf));
            assert_eq!(&buf[..n], b"stashed");
        });
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A read half waiting in `read` and the write half waiting in `ready(READABLE)` at once: one
/// event wakes both (the two waits share the registration's read direction).
#[test]
fn a_read_half_and_a_write_half_waiting_for_readability_are_both_woken() {
    use futures::AsyncReadExt;
    use spindle::io::Interest;
    common::each_flavor(|rt| {
        common::bounded(rt, 30, async {
            let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let mut c = spindle::net::TcpStream::connect(addr).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let (mut r, w) = s.into_split();
            // The reader takes two of the three bytes, so the socket stays readable for the
            // watcher whichever runs first.
            let reader = spindle::spawn(async move {
                let mut buf = [0u8; 2];
                let n = r.read(&mut buf).await.unwrap();
                buf[..n].to_vec()
            });
            spindle::time::sleep(std::time::Duration::from_millis(20)).await;
            let watcher = spindle::spawn(async move { w.ready(Interest::READABLE).await.unwrap().is_readable() });
            spindle::time::sleep(std::time::Duration::from_millis(20)).await;
            futures::AsyncWriteExt::write_all(&mut c, b"hey").await.unwrap();
            let t = std::time::Duration::from_secs(5);
            assert!(spindle::time::timeout(t, watcher).await.expect("the write half's wait was not woken").unwrap());
            let got = spindle::time::timeout(t, reader).await.expect("the read half's read was not woken").unwrap();
            assert_eq!(got, b"he");
        });
    });
}
