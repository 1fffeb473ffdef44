//! A read dropped in flight never loses data. On io_uring an owned read whose future is dropped
//! is orphaned, and its `RECV` can still take bytes (a datagram, the end of stream) before its
//! cancel reaches the kernel; the socket stashes what it took, and the next read of any kind —
//! owned, slice, vectored, peek, pooled, multishot stream, tokio's — gets it first, in order.
//! On every runtime flavour; the suite runs on both backends (`SPINDLE_DRIVER=uring|epoll`).

mod common;

use std::io::{IoSliceMut, Write};
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use common::{bounded, each_flavor, serial};
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
use spindle::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixStream};

/// A spindle stream and a blocking std peer: the peer's writes happen at once, without the
/// runtime, so they land while a dropped read's op and its cancel may still be queued (on a
/// current-thread runtime they are: nothing is submitted before the runtime next waits).
async fn tcp_pair() -> (TcpStream, std::net::TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().await.unwrap();
    (s, peer)
}

/// Polls an owned read once and drops it (orphaning its op on io_uring); if it completed on
/// that poll (the stash or the socket had bytes), its bytes are kept in `got`.
async fn poll_once_and_drop<R: AsyncReadOwned>(s: &mut R, got: &mut Vec<u8>) {
    let r = pin!(s.read_owned(vec![0u8; 64]));
    if let Poll::Ready((res, buf)) = futures::poll!(r) {
        res.unwrap();
        got.extend_from_slice(&buf);
    }
}

/// The ways to read a stream the deterministic test checks.
#[derive(Clone, Copy, Debug)]
enum Next {
    Owned,
    Slice,
    Vectored,
    PeekThenRead,
    Pooled,
    #[cfg(feature = "tokio-io")]
    Tokio,
}

const NEXTS: &[Next] = &[
    Next::Owned,
    Next::Slice,
    Next::Vectored,
    Next::PeekThenRead,
    Next::Pooled,
    #[cfg(feature = "tokio-io")]
    Next::Tokio,
];

/// One read of kind `next`: the bytes it returned (empty: end of stream).
async fn read_some(s: &mut TcpStream, next: Next) -> Vec<u8> {
    match next {
        Next::Owned => {
            let (res, buf) = s.read_owned(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), buf.len());
            buf
        }
        Next::Slice => {
            let mut b = [0u8; 64];
            let n = s.read(&mut b).await.unwrap();
            b[..n].to_vec()
        }
        Next::Vectored => {
            let (mut a, mut b) = ([0u8; 5], [0u8; 59]);
            let n = s.readv(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)]).await.unwrap();
            [&a[..], &b[..]].concat()[..n].to_vec()
        }
        Next::PeekThenRead => {
            let mut p = [0u8; 64];
            let n = s.peek(&mut p).await.unwrap();
            // A peek leaves the bytes for the read that follows, stashed ones included.
            let mut b = vec![0u8; n];
            s.read_exact(&mut b).await.unwrap();
            assert_eq!(&p[..n], &b[..], "peek and the read after it disagree");
            b
        }
        Next::Pooled => s.recv_pooled().await.unwrap().into_vec(),
        #[cfg(feature = "tokio-io")]
        Next::Tokio => {
            let mut storage = [0u8; 64];
            let mut rb = tokio::io::ReadBuf::new(&mut storage);
            std::future::poll_fn(|cx| tokio::io::AsyncRead::poll_read(std::pin::Pin::new(&mut *s), cx, &mut rb))
                .await
                .unwrap();
            rb.filled().to_vec()
        }
    }
}

#[test]
fn dropped_read_owned_gives_its_bytes_to_the_next_read_of_any_kind() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            for &next in NEXTS {
                let (mut s, mut peer) = tcp_pair().await;
                let mut got = Vec::new();
                // A pending read dropped, then data: the orphaned read may take it.
                poll_once_and_drop(&mut s, &mut got).await;
                peer.write_all(b"first chunk|").unwrap();
                // Again, with the first orphan possibly still in flight.
                poll_once_and_drop(&mut s, &mut got).await;
                peer.write_all(b"second chunk|").unwrap();
                poll_once_and_drop(&mut s, &mut got).await;
                peer.write_all(b"third|").unwrap();
                peer.shutdown(Shutdown::Write).unwrap();
                // A dropped read may also take the end of stream: the next read still sees it.
                poll_once_and_drop(&mut s, &mut got).await;
                loop {
                    let b = read_some(&mut s, next).await;
                    if b.is_empty() {
                        break;
                    }
                    got.extend_from_slice(&b);
                }
                assert_eq!(
                    String::from_utf8_lossy(&got),
                    "first chunk|second chunk|third|",
                    "read after dropped reads: {next:?}"
                );
                // End of stream stays visible.
                assert!(read_some(&mut s, next).await.is_empty(), "{next:?}");
            }
        });
    });
}

#[test]
fn dropped_read_owned_then_recv_stream_and_unix_stream() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            // A multishot pooled stream continues where the dropped read stopped.
            let (mut s, mut peer) = tcp_pair().await;
            let mut got = Vec::new();
            poll_once_and_drop(&mut s, &mut got).await;
            peer.write_all(b"taken by an orphan? ").unwrap();
            poll_once_and_drop(&mut s, &mut got).await;
            peer.write_all(b"then the rest").unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let mut bufs = s.recv_stream();
            while let Some(b) = bufs.next().await {
                got.extend_from_slice(&b.unwrap());
            }
            assert_eq!(String::from_utf8_lossy(&got), "taken by an orphan? then the rest");

            // Unix streams share the code; check the owned and slice reads there too.
            let (std_a, mut std_b) = std::os::unix::net::UnixStream::pair().unwrap();
            let mut a = UnixStream::from_std(std_a).unwrap();
            let mut got = Vec::new();
            poll_once_and_drop(&mut a, &mut got).await;
            std_b.write_all(b"unix one|").unwrap();
            poll_once_and_drop(&mut a, &mut got).await;
            std_b.write_all(b"unix two").unwrap();
            drop(std_b);
            let mut rest = Vec::new();
            a.read_to_end(&mut rest).await.unwrap();
            got.extend_from_slice(&rest);
            assert_eq!(String::from_utf8_lossy(&got), "unix one|unix two");
        });
    });
}

#[test]
fn dropped_datagram_receive_keeps_the_whole_datagram() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            // UDP: the receiver is spindle's, the sender a blocking std socket.
            let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b_addr = b.local_addr().unwrap();
            let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let a_addr = a.local_addr().unwrap();
            let mut early = Vec::new();
            {
                let r = pin!(b.recv_from_owned(vec![0u8; 64]));
                if let Poll::Ready((res, buf)) = futures::poll!(r) {
                    let (n, from) = res.unwrap();
                    early.push((buf[..n].to_vec(), from));
                }
            }
            a.send_to(b"one", b_addr).unwrap();
            {
                let r = pin!(b.recv_owned(vec![0u8; 64]));
                if let Poll::Ready((res, buf)) = futures::poll!(r) {
                    let n = res.unwrap();
                    early.push((buf[..n].to_vec(), a_addr));
                }
            }
            a.send_to(b"two", b_addr).unwrap();
            a.send_to(b"three", b_addr).unwrap();
            let mut got = early;
            while got.len() < 3 {
                let i = got.len();
                let mut buf = [0u8; 64];
                let (n, from) = if i == 2 {
                    // A peek of a stashed datagram leaves it for the receive after it.
                    let (n, from) = b.peek_from(&mut buf).await.unwrap();
                    let mut again = [0u8; 64];
                    let (m, from2) = b.recv_from(&mut again).await.unwrap();
                    assert_eq!((&again[..m], from2), (&buf[..n], from));
                    (n, from)
                } else {
                    b.recv_from(&mut buf).await.unwrap()
                };
                got.push((buf[..n].to_vec(), from));
            }
            let want: Vec<(Vec<u8>, std::net::SocketAddr)> =
                [&b"one"[..], b"two", b"three"].iter().map(|d| (d.to_vec(), a_addr)).collect();
            assert_eq!(got, want);

            // A datagram longer than the next receive's buffer is truncated as any receive of it
            // is, and only that one: the next datagram is whole.
            {
                let r = pin!(b.recv_owned(vec![0u8; 64]));
                assert!(futures::poll!(r).is_pending());
            }
            a.send_to(b"a long datagram", b_addr).unwrap();
            a.send_to(b"next", b_addr).unwrap();
            let mut small = [0u8; 6];
            let n = b.recv(&mut small).await.unwrap();
            assert_eq!(&small[..n], b"a long");
            let mut buf = [0u8; 64];
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"next");

            // Unix datagrams, connected pair.
            let (std_x, std_y) = std::os::unix::net::UnixDatagram::pair().unwrap();
            let x = UnixDatagram::from_std(std_x).unwrap();
            let mut got = Vec::new();
            {
                let r = pin!(x.recv_owned(vec![0u8; 64]));
                if let Poll::Ready((res, buf)) = futures::poll!(r) {
                    res.unwrap();
                    got.push(buf);
                }
            }
            std_y.send(b"dgram 1").unwrap();
            std_y.send(b"dgram 2").unwrap();
            while got.len() < 2 {
                let (res, buf) = x.recv_owned(Vec::with_capacity(64)).await;
                res.unwrap();
                got.push(buf);
            }
            assert_eq!(got, [b"dgram 1".to_vec(), b"dgram 2".to_vec()]);
        });
    });
}

/// The byte at `i` of connection `conn`'s stream: position-dependent with a long period, so a
/// lost, repeated or reordered chunk shows.
fn expected(conn: usize, i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 8).wrapping_mul(7) ^ conn.wrapping_mul(29)) as u8
}

/// A small xorshift generator (deterministic per seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Checks received bytes against the expected stream at `pos` and advances it.
fn check(conn: usize, pos: &mut usize, data: &[u8]) {
    for (k, &b) in data.iter().enumerate() {
        assert_eq!(
            b,
            expected(conn, *pos + k),
            "connection {conn}: wrong byte at {} (lost or reordered data)",
            *pos + k
        );
    }
    *pos += data.len();
}

const STORM_CONNS: usize = 16;
const STORM_BYTES: usize = 512 * 1024;

/// A reader that drops reads at random points while its peer writes: the whole stream arrives,
/// in order. Returns how many reads it dropped unfinished.
async fn storm_reader<S>(conn: usize, mut s: S, seed: u64) -> usize
where
    S: AsyncReadOwned + futures::AsyncRead + Unpin,
{
    let mut rng = Rng(seed | 1);
    let mut pos = 0;
    let mut dropped = 0;
    loop {
        let cap = 1 + rng.below(4096) as usize;
        let wait = Duration::from_micros(rng.below(400));
        let data: Option<Vec<u8>> = match rng.below(5) {
            // Polled once and dropped (on io_uring: submitted, then orphaned).
            0 | 1 => {
                let r = pin!(s.read_owned(Vec::with_capacity(cap)));
                match futures::poll!(r) {
                    Poll::Ready((res, buf)) => Some(res.map(|_| buf).unwrap()),
                    Poll::Pending => None,
                }
            }
            // Dropped by a timeout at some point of its life (or not at all).
            2 => match spindle::time::timeout(wait, s.read_owned(Vec::with_capacity(cap))).await {
                Ok((res, buf)) => Some(res.map(|_| buf).unwrap()),
                Err(_) => None,
            },
            3 => {
                let mut b = vec![0u8; cap];
                match spindle::time::timeout(wait, s.read(&mut b)).await {
                    Ok(n) => {
                        b.truncate(n.unwrap());
                        Some(b)
                    }
                    Err(_) => None,
                }
            }
            // Awaited to the end.
            _ => {
                let (res, buf) = s.read_owned(Vec::with_capacity(cap)).await;
                Some(res.map(|_| buf).unwrap())
            }
        };
        match data {
            None => dropped += 1,
            Some(d) if d.is_empty() => break,
            Some(d) => check(conn, &mut pos, &d),
        }
    }
    assert_eq!(pos, STORM_BYTES, "connection {conn}: stream ended early (bytes lost)");
    dropped
}

/// Writes connection `conn`'s whole stream in random chunks with pauses, then closes.
async fn storm_writer<W: futures::AsyncWrite + Unpin>(conn: usize, mut w: W, seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut i = 0;
    while i < STORM_BYTES {
        let n = (1 + rng.below(3000) as usize).min(STORM_BYTES - i);
        let chunk: Vec<u8> = (i..i + n).map(|k| expected(conn, k)).collect();
        w.write_all(&chunk).await.unwrap();
        i += n;
        match rng.below(8) {
            0 => spindle::time::sleep(Duration::from_micros(200)).await,
            1..=3 => spindle::task::yield_now().await,
            _ => {}
        }
    }
    w.close().await.unwrap();
}

#[test]
fn read_cancellation_storm_keeps_every_stream_intact_and_in_order() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 120, async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            let mut readers = Vec::new();
            let mut writers = Vec::new();
            for conn in 0..STORM_CONNS {
                let seed = seed.wrapping_add(conn as u64 * 1_000_003);
                if conn % 3 == 2 {
                    let (r, w) = UnixStream::pair().unwrap();
                    readers.push(spindle::spawn(storm_reader(conn, r, seed)));
                    writers.push(spindle::spawn(storm_writer(conn, w, seed)));
                } else {
                    let w = TcpStream::connect(addr).await.unwrap();
                    let (r, _) = l.accept().await.unwrap();
                    readers.push(spindle::spawn(storm_reader(conn, r, seed)));
                    writers.push(spindle::spawn(storm_writer(conn, w, seed)));
                }
            }
            let mut dropped = 0;
            for r in readers {
                dropped += r.await.unwrap();
            }
            for w in writers {
                w.await.unwrap();
            }
            eprintln!("storm: {dropped} reads dropped");
            // The storm really dropped reads mid-stream (seed printed to replay a failure). How
            // many depends on timing (a read polled once finds data more often on a slow host):
            // hundreds to thousands per flavour, fewest on epoll (about 400 on the per-core
            // runtime here; a review saw 148 once on a busy host, against a bound of 160).
            assert!(dropped >= STORM_CONNS * 4, "only {dropped} reads dropped (seed {seed})");
        });
    });
}

/// Owned writes are unaffected, and an owned read half stashes like the whole stream.
#[test]
fn owned_read_half_dropped_reads_lose_nothing() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let (s, mut peer) = tcp_pair().await;
            let (mut rd, mut wr) = s.into_split();
            let mut got = Vec::new();
            poll_once_and_drop(&mut rd, &mut got).await;
            peer.write_all(b"half ").unwrap();
            poll_once_and_drop(&mut rd, &mut got).await;
            peer.write_all(b"closed").unwrap();
            peer.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            rd.read_to_end(&mut rest).await.unwrap();
            got.extend_from_slice(&rest);
            assert_eq!(String::from_utf8_lossy(&got), "half closed");
            let (res, _) = wr.write_all_owned(b"back".to_vec()).await;
            res.unwrap();
            let mut back = [0u8; 4];
            std::io::Read::read_exact(&mut peer, &mut back).unwrap();
            assert_eq!(&back, b"back");
        });
    });
}

/// A read dropped in flight and then its stream dropped: on io_uring the orphaned op is the
/// socket's last owner until its final completion (it borrowed the socket while its future
/// lived, and the reactor's slot took a reference when the future was dropped). The completion
/// still reaches the socket's stash safely (run under ASan: no use after free), and then the
/// socket closes: the peer sees the end of stream, and no socket is left open.
#[test]
fn read_dropped_in_flight_then_stream_dropped_closes_once_the_op_ends() {
    let _s = serial();
    each_flavor(|rt| {
        bounded(rt, 30, async {
            let before = common::open_sockets();
            for data_first in [false, true] {
                let (mut s, mut peer) = tcp_pair().await;
                let mut got = Vec::new();
                if data_first {
                    // The orphaned read may complete with these bytes before its cancel lands.
                    poll_once_and_drop(&mut s, &mut got).await;
                    peer.write_all(b"late bytes").unwrap();
                    poll_once_and_drop(&mut s, &mut got).await;
                } else {
                    poll_once_and_drop(&mut s, &mut got).await;
                }
                drop(s);
                // The runtime runs on: the cancel and the final completion are reaped, the slot
                // drops its reference, the socket closes.
                peer.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
                let mut buf = [0u8; 16];
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    match std::io::Read::read(&mut peer, &mut buf) {
                        // Closed; with unread bytes left in its receive queue (epoll: nothing
                        // took them) the close is a reset.
                        Ok(0) => break,
                        Err(e) if data_first && e.kind() == std::io::ErrorKind::ConnectionReset => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Ok(_) => panic!("the peer got data it did not expect"),
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            assert!(
                                std::time::Instant::now() < deadline,
                                "the socket never closed (data_first {data_first})"
                            );
                            spindle::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(e) => panic!("peer read: {e}"),
                    }
                }
            }
            let mut after = common::open_sockets();
            for _ in 0..100 {
                if after <= before {
                    break;
                }
                spindle::time::sleep(Duration::from_millis(10)).await;
                after = common::open_sockets();
            }
            assert_eq!(after, before, "sockets left open");
        });
    });
}
