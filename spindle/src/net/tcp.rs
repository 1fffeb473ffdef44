//! TCP: [`TcpListener`], [`TcpStream`], its owned halves ([`OwnedReadHalf`], [`OwnedWriteHalf`])
//! and borrowed halves ([`ReadHalf`], [`WriteHalf`]); the main types are re-exported from
//! [`spindle::net`](crate::net).
//!
//! ```
//! use spindle::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
//! spindle::block_on(async {
//!     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
//!     let (r, w): (OwnedReadHalf, OwnedWriteHalf) = s.into_split();
//!     # drop((r, w));
//! });
//! ```

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::addr::{resolve, ToSocketAddrs};
use super::socket::PollSocket;
use super::stream_io::{impl_read, impl_write};
use crate::driver::Direction;

/// `op addr: error`, keeping the error's kind.
pub(crate) fn addr_error(op: &str, addr: impl fmt::Display, e: io::Error) -> io::Error {
    crate::io::with_context(format!("{op} {addr}"), e)
}

pub(crate) fn inet_addr(a: io::Result<SockAddr>) -> io::Result<SocketAddr> {
    a?.as_socket().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an internet socket address"))
}

/// Tries `f` on each address in turn; the last error if none works.
pub(crate) fn first_ok<T>(addrs: Vec<SocketAddr>, mut f: impl FnMut(SocketAddr) -> io::Result<T>) -> io::Result<T> {
    let mut last = None;
    for a in addrs {
        match f(a) {
            Ok(t) => return Ok(t),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to use")))
}

/// The backlog of `listen`.
const BACKLOG: i32 = 1024;

/// Back-off after an `accept` failed for lack of resources (EMFILE and friends).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A TCP socket listening for connections.
///
/// ```
/// use spindle::net::{TcpListener, TcpStream};
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// spindle::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     spindle::spawn(async move {
///         let (mut s, _peer) = listener.accept().await.unwrap();
///         let mut buf = [0u8; 5];
///         s.read_exact(&mut buf).await.unwrap();
///         s.write_all(&buf).await.unwrap(); // echo
///     });
///     let mut c = TcpStream::connect(addr).await.unwrap();
///     c.write_all(b"hello").await.unwrap();
///     let mut buf = [0u8; 5];
///     c.read_exact(&mut buf).await.unwrap();
///     assert_eq!(&buf, b"hello");
/// });
/// ```
pub struct TcpListener {
    pub(super) io: PollSocket,
    backoff: AcceptBackoff,
}

/// The accept loop of a listener, with its back-off after resource exhaustion.
#[derive(Default)]
pub(crate) struct AcceptBackoff(Mutex<Backoff>);

#[derive(Default)]
struct Backoff {
    /// No `accept` before this instant.
    until: Option<crate::time::Instant>,
    /// The last delay (doubles while failures repeat).
    delay: Duration,
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener").field("fd", &self.io.fd()).field("addr", &self.local_addr().ok()).finish()
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl AcceptBackoff {
    /// Accepts one connection (non-blocking, close-on-exec), skipping aborted ones; after EMFILE
    /// and friends, returns the error and makes the next call wait first (see `TcpListener::accept`).
    pub(crate) async fn accept(&self, io: &PollSocket) -> io::Result<(Socket, SockAddr)> {
        let until = self.0.lock().unwrap_or_else(|e| e.into_inner()).until;
        if let Some(until) = until {
            crate::time::sleep_until(until).await;
        }
        let res = io
            .io_shared(Direction::Read, || loop {
                match io.socket().accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) {
                    Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                    r => return r,
                }
            })
            .await;
        let mut backoff = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match res {
            Ok(r) => {
                *backoff = Backoff::default();
                Ok(r)
            }
            Err(e) if is_resource_exhaustion(&e) => {
                let delay = (backoff.delay * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                *backoff = Backoff { until: Some(crate::time::Instant::now() + delay), delay };
                Err(io::Error::new(
                    e.kind(),
                    format!("accept: {e}; this listener waits {delay:?} before the next accept"),
                ))
            }
            Err(e) => Err(io::Error::new(e.kind(), format!("accept: {e}"))),
        }
    }
}

impl TcpListener {
    /// Binds a listener to `addr` (each resolved address is tried in turn), with `SO_REUSEADDR`
    /// set as std and tokio do. Port 0 picks a free port ([`local_addr`](Self::local_addr) tells).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     assert_ne!(l.local_addr().unwrap().port(), 0);
    ///     let e = spindle::net::TcpListener::bind("not an address").await.unwrap_err();
    ///     assert!(e.to_string().contains("not an address"), "{e}");
    /// });
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let addrs = resolve(&addr).await?;
        first_ok(addrs, |a| TcpListener::bind_addr(a).map_err(|e| addr_error("bind", a, e)))
    }

    fn bind_addr(addr: SocketAddr) -> io::Result<TcpListener> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.bind(&addr.into())?;
        sock.listen(BACKLOG)?;
        TcpListener::from_listening(sock)
    }

    /// A listener from a bound, listening, non-blocking socket ([`super::TcpSocket::listen`]).
    pub(super) fn from_listening(sock: Socket) -> io::Result<TcpListener> {
        Ok(TcpListener { io: PollSocket::new(sock)?, backoff: AcceptBackoff::default() })
    }

    /// Wraps a bound, listening `std::net::TcpListener` (made non-blocking here).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let l = spindle::net::TcpListener::from_std(std).unwrap();
    ///     assert!(l.local_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener { io: PollSocket::from_blocking(Socket::from(listener))?, backoff: AcceptBackoff::default() })
    }

    /// Accepts a connection, returning the stream and the peer's address.
    ///
    /// When the process runs out of file descriptors (EMFILE, ENFILE) or kernel memory, the error
    /// is returned (the pending connection stays queued) and this listener backs off: the next
    /// `accept` waits 5 ms, doubling up to 1 s while failures repeat, before trying again. A loop
    /// that logs the error and calls `accept` again therefore keeps serving without spinning.
    /// Connections aborted before they were accepted are skipped.
    ///
    /// On io_uring the listener keeps one multishot accept in the kernel (started by the first
    /// `accept`) that queues accepted connections for the following calls; it pauses while 64
    /// wait unclaimed, and the queued ones are closed when the listener is dropped. On epoll (or
    /// while the fd for the multishot accept cannot be had, under EMFILE) it waits for readiness
    /// and calls `accept4`.
    ///
    /// # Cancel safety
    /// Cancel safe: if the future is dropped, no connection is lost (it stays in the kernel's
    /// queue, or in the listener's on io_uring, for the next `accept`).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let addr = l.local_addr().unwrap();
    ///     let c = spindle::spawn(async move { spindle::net::TcpStream::connect(addr).await.unwrap() });
    ///     let (s, peer) = l.accept().await.unwrap();
    ///     assert_eq!(peer, c.await.unwrap().local_addr().unwrap());
    ///     # drop(s);
    /// });
    /// ```
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (sock, addr) = match super::pooled::accept_multishot(&self.io).await {
            Some(r) => r?,
            None => self.backoff.accept(&self.io).await?,
        };
        let addr = inet_addr(Ok(addr))?;
        Ok((TcpStream::new(Arc::new(PollSocket::accepted(sock, Some(addr))?)), addr))
    }

    /// The address the listener is bound to.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     assert!(l.local_addr().unwrap().ip().is_loopback());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.io.socket().local_addr())
    }

    /// Sets the IP time-to-live of accepted connections' packets.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     l.set_ttl(42).unwrap();
    ///     assert_eq!(l.ttl().unwrap(), 42);
    /// });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        set_ttl(self.io.socket(), ttl)
    }

    /// The IP time-to-live.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     assert!(l.ttl().unwrap() > 0);
    /// });
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        ttl(self.io.socket())
    }
}

pub(crate) fn is_v6(sock: &Socket) -> bool {
    matches!(sock.local_addr().ok().and_then(|a| a.as_socket()), Some(SocketAddr::V6(_)))
}

pub(crate) fn set_ttl(sock: &Socket, ttl: u32) -> io::Result<()> {
    if is_v6(sock) {
        sock.set_unicast_hops_v6(ttl)
    } else {
        sock.set_ttl_v4(ttl)
    }
}

pub(crate) fn ttl(sock: &Socket) -> io::Result<u32> {
    if is_v6(sock) {
        sock.unicast_hops_v6()
    } else {
        sock.ttl_v4()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}

/// A TCP connection.
///
/// Reading and writing:
/// - with slices, through `futures_io::AsyncRead`/`AsyncWrite` (always) and tokio's
///   `AsyncRead`/`AsyncWrite` (feature `tokio-io`): `use futures::AsyncReadExt;
///   stream.read(&mut buf).await`. These wait for readiness, then receive straight into the
///   caller's slice: no intermediate buffer.
/// - with owned buffers, through [`AsyncReadOwned`](crate::io::AsyncReadOwned) and
///   [`AsyncWriteOwned`](crate::io::AsyncWriteOwned): `read_owned`, `write_all_owned`, ...
///
/// Faults are `io::Error`s: `ConnectionRefused` from `connect`, `ConnectionReset` from a read
/// after the peer reset, `Ok(0)` from a read after the peer's (or our own) shutdown of that
/// direction, `BrokenPipe` from a write after shutdown (never a SIGPIPE).
///
/// ```
/// use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
/// use spindle::net::{TcpListener, TcpStream};
/// spindle::block_on(async {
///     let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = l.local_addr().unwrap();
///     let server = spindle::spawn(async move {
///         let (mut s, _) = l.accept().await.unwrap();
///         let (res, buf) = s.read_owned(Vec::with_capacity(64)).await;
///         res.unwrap();
///         buf
///     });
///     let mut c = TcpStream::connect(addr).await.unwrap();
///     let (res, _) = c.write_all_owned(b"owned".to_vec()).await;
///     res.unwrap();
///     assert_eq!(server.await.unwrap(), b"owned");
/// });
/// ```
pub struct TcpStream {
    /// Shared with io_uring ops in flight (they keep the socket open until their final completion).
    pub(super) io: Arc<PollSocket>,
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("fd", &self.io.fd())
            .field("local", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .finish()
    }
}

impl TcpStream {
    /// Connects to `addr`, trying each resolved address in turn; the error names the address.
    ///
    /// # Cancel safety
    /// Dropping the future closes the half-open socket; nothing leaks.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     // Port 1 on loopback: nothing listens there.
    ///     let e = spindle::net::TcpStream::connect("127.0.0.1:1").await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    ///     assert!(e.to_string().starts_with("connect 127.0.0.1:1: "), "{e}");
    /// });
    /// ```
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addrs = resolve(&addr).await?;
        let mut last = None;
        for a in addrs {
            match TcpStream::connect_addr(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(addr_error("connect", a, e)),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "connect: no addresses to use")))
    }

    async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
        TcpStream::connect_socket(sock, addr).await
    }

    /// Connects a fresh non-blocking socket (from [`connect`](Self::connect) or
    /// [`super::TcpSocket::connect`]).
    pub(super) async fn connect_socket(sock: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
        Ok(TcpStream::new(PollSocket::connect(sock, &addr.into()).await?))
    }

    /// Wraps a connected `std::net::TcpStream` (made non-blocking here).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ///     let std = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    ///     let s = spindle::net::TcpStream::from_std(std).unwrap();
    ///     assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
    /// });
    /// ```
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream::new(Arc::new(PollSocket::from_blocking(Socket::from(stream))?)))
    }

    /// Every stream is made here: a connected TCP socket, with `TCP_INQ` asked for (see
    /// `PollSocket::report_inq`) before anything else can use it.
    fn new(io: Arc<PollSocket>) -> TcpStream {
        io.report_inq();
        TcpStream { io }
    }

    /// The local address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.io.socket().local_addr())
    }

    /// The peer's address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.io.socket().peer_addr())
    }

    super::stream_io::readiness_methods!(
        "use futures::AsyncWriteExt;
# spindle::block_on(async {
# let l = spindle::net::TcpListener::bind(\"127.0.0.1:0\").await.unwrap();
let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
let (s, _) = l.accept().await.unwrap();"
    );

    /// Receives into `buf` without removing the data from the queue.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let (mut s, _) = l.accept().await.unwrap();
    /// c.write_all(b"look").await.unwrap();
    /// let mut buf = [0u8; 4];
    /// assert_eq!(s.peek(&mut buf).await.unwrap(), 4);
    /// assert_eq!(s.peek(&mut buf).await.unwrap(), 4); // still there
    /// # });
    /// ```
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.io.poll_peek(cx, buf)).await
    }

    /// Receives the next chunk of data into a buffer of the runtime's pool: no buffer to manage,
    /// and on io_uring the kernel picks the buffer only when data arrives (a `RECV` from a
    /// provided-buffer ring), so thousands of idle connections hold no memory. `Ok` with an empty
    /// buffer means end of stream. The [`PooledBuf`](crate::net::PooledBuf) goes back to the pool
    /// when dropped.
    ///
    /// When every buffer of the pool is held, returns an `ErrorKind::OutOfMemory` (ENOBUFS) error
    /// once; the next call waits until a buffer comes back.
    ///
    /// # Cancel safety
    /// Cancel safe: no data is lost. On io_uring a dropped call's receive stays armed and what it
    /// gets is kept for the next `recv_pooled` / [`recv_stream`](Self::recv_stream) on this
    /// stream (so finish with pooled receives before switching to other reads).
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (s, _) = l.accept().await.unwrap();
    ///     c.write_all(b"pooled").await.unwrap();
    ///     assert_eq!(&s.recv_pooled().await.unwrap()[..], b"pooled");
    ///     drop(c);
    ///     assert!(s.recv_pooled().await.unwrap().is_empty()); // end of stream
    /// });
    /// ```
    pub async fn recv_pooled(&self) -> io::Result<super::PooledBuf> {
        super::pooled::recv_pooled(&self.io).await
    }

    /// A stream of received chunks in pool buffers: on io_uring one multishot `RECV` that keeps
    /// delivering until end of stream, an error, or the stream is dropped (see
    /// [`RecvStream`](crate::net::RecvStream)); on epoll, readiness and `recv` per item.
    ///
    /// # Cancel safety
    /// Dropping the stream loses no data: chunks received but not yet yielded are kept for the
    /// next pooled receive on this stream.
    ///
    /// ```
    /// use futures::{AsyncWriteExt, StreamExt};
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (s, _) = l.accept().await.unwrap();
    ///     c.write_all(b"stream").await.unwrap();
    ///     let mut bufs = s.recv_stream();
    ///     assert_eq!(&bufs.next().await.unwrap().unwrap()[..], b"stream");
    /// });
    /// ```
    pub fn recv_stream(&self) -> super::RecvStream<'_> {
        super::RecvStream::new(&self.io)
    }

    /// The counters of the buffer pool this stream's pooled receives use (for tests).
    #[doc(hidden)]
    pub fn pool_stats(&self) -> Option<super::PoolStats> {
        super::pooled::pool_stats(&self.io)
    }

    /// Reads into several slices with one system call (`readv`).
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// use std::io::IoSliceMut;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let (mut s, _) = l.accept().await.unwrap();
    /// c.write_all(b"abcd").await.unwrap();
    /// let (mut a, mut b) = ([0u8; 2], [0u8; 2]);
    /// let mut n = 0;
    /// while n < 4 {
    ///     let mut bufs = [IoSliceMut::new(&mut a[n.min(2)..]), IoSliceMut::new(&mut b[n.saturating_sub(2)..])];
    ///     n += s.readv(&mut bufs).await.unwrap();
    /// }
    /// assert_eq!((&a, &b), (b"ab", b"cd"));
    /// # });
    /// ```
    pub async fn readv(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.io.poll_recv_vectored(cx, bufs)).await
    }

    /// Writes from several slices with one system call (`sendmsg`), returning the count written.
    ///
    /// ```
    /// use std::io::IoSlice;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let n = c.writev(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).await.unwrap();
    /// assert_eq!(n, 4);
    /// # });
    /// ```
    pub async fn writev(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.io.poll_send_vectored(cx, bufs)).await
    }

    /// Shuts down the read, write or both directions at once (`shutdown(2)`); see also the async
    /// `AsyncWriteOwned::shutdown` / tokio's `AsyncWriteExt::shutdown` / futures' `close`, which
    /// shut down the write direction.
    ///
    /// ```
    /// use spindle::io::AsyncReadOwned;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// c.shutdown_std(std::net::Shutdown::Read).unwrap();
    /// let (res, _) = c.read_owned(vec![0u8; 8]).await;
    /// assert_eq!(res.unwrap(), 0); // reads after our own read shutdown see end of stream
    /// # });
    /// ```
    pub fn shutdown_std(&self, how: Shutdown) -> io::Result<()> {
        self.io.socket().shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm when `true`).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// # });
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.socket().set_tcp_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert!(!s.nodelay().unwrap());
    /// # });
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.socket().tcp_nodelay()
    }

    /// Enables or disables `SO_KEEPALIVE` (with the system's default timings).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// s.set_keepalive(true).unwrap();
    /// assert!(s.keepalive().unwrap());
    /// # });
    /// ```
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.io.socket().set_keepalive(keepalive)
    }

    /// Whether `SO_KEEPALIVE` is set.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert!(!s.keepalive().unwrap());
    /// # });
    /// ```
    pub fn keepalive(&self) -> io::Result<bool> {
        self.io.socket().keepalive()
    }

    /// Sets `SO_LINGER`: `Some(d)` makes closing wait up to `d` for unsent data (`Some(ZERO)`
    /// resets the connection on close); `None` is the default.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// s.set_linger(Some(std::time::Duration::from_secs(1))).unwrap();
    /// assert_eq!(s.linger().unwrap(), Some(std::time::Duration::from_secs(1)));
    /// # });
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.io.socket().set_linger(linger)
    }

    /// The `SO_LINGER` setting.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert_eq!(s.linger().unwrap(), None);
    /// # });
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.io.socket().linger()
    }

    /// Sets the IP time-to-live of outgoing packets.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// s.set_ttl(7).unwrap();
    /// assert_eq!(s.ttl().unwrap(), 7);
    /// # });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        set_ttl(self.io.socket(), ttl)
    }

    /// The IP time-to-live.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let s = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// assert!(s.ttl().unwrap() > 0);
    /// # });
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        ttl(self.io.socket())
    }

    /// Borrows the stream as a read half and a write half, usable at the same time (for example
    /// by two futures joined in one task), as tokio's `split`. Shutting the write half down shuts
    /// the stream's write direction down.
    ///
    /// With `futures::AsyncReadExt` in scope, `stream.split()` resolves to that trait's by-value
    /// `split` (method lookup tries by-value receivers first); write `TcpStream::split(&mut stream)` to
    /// get this one.
    ///
    /// ```
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let (mut s, _) = l.accept().await.unwrap();
    ///     let (mut r, mut w) = spindle::net::TcpStream::split(&mut s);
    ///     let echo = async {
    ///         let mut buf = [0u8; 4];
    ///         r.read_exact(&mut buf).await.unwrap();
    ///         w.write_all(&buf).await.unwrap();
    ///     };
    ///     let client = async {
    ///         c.write_all(b"ping").await.unwrap();
    ///         let mut buf = [0u8; 4];
    ///         c.read_exact(&mut buf).await.unwrap();
    ///         buf
    ///     };
    ///     let ((), back) = futures::join!(echo, client);
    ///     assert_eq!(&back, b"ping");
    /// # });
    /// ```
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        self.io.prepare_for_split();
        (ReadHalf { inner: self }, WriteHalf { inner: self })
    }

    /// Splits into a read half and a write half that can move to different tasks.
    /// Dropping the write half shuts the write direction down (the peer reads end of stream), as
    /// tokio's does; [`OwnedReadHalf::reunite`] puts them back together.
    ///
    /// ```
    /// use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// let (mut s, _) = l.accept().await.unwrap();
    /// let (mut r, mut w) = c.into_split();
    /// let writer = spindle::spawn(async move {
    ///     let (res, _) = w.write_all_owned("ping").await;
    ///     res.unwrap();
    ///     w
    /// });
    /// let (res, buf) = s.read_exact_owned(Vec::with_capacity(4)).await;
    /// res.unwrap();
    /// assert_eq!(buf, b"ping");
    /// let w = writer.await.unwrap();
    /// let (res, _) = s.write_all_owned("pong").await;
    /// res.unwrap();
    /// let (res, buf) = r.read_exact_owned(Vec::with_capacity(4)).await;
    /// res.unwrap();
    /// assert_eq!(buf, b"pong");
    /// let _stream = r.reunite(w).unwrap();
    /// # });
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.io.prepare_for_split();
        let inner = Arc::new(self);
        (OwnedReadHalf { inner: inner.clone() }, OwnedWriteHalf { inner, shutdown_on_drop: true })
    }
}

/// Waits for a non-blocking `connect` to finish: write readiness, then `SO_ERROR`.
impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}

impl_read!(TcpStream, |s| s.io);
impl_write!(TcpStream, |s| s.io);

/// The read half of a [`TcpStream`], from [`TcpStream::into_split`].
///
/// ```
/// # spindle::block_on(async {
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let (r, w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
/// assert_eq!(r.peer_addr().unwrap(), l.local_addr().unwrap());
/// # drop(w);
/// # });
/// ```
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: Arc<TcpStream>,
}

/// The write half of a [`TcpStream`], from [`TcpStream::into_split`]. Dropping it shuts the
/// write direction down.
///
/// ```
/// # spindle::block_on(async {
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let (r, w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
/// assert!(w.local_addr().unwrap().ip().is_loopback());
/// # drop(r);
/// # });
/// ```
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: Arc<TcpStream>,
    shutdown_on_drop: bool,
}

/// The halves passed to [`OwnedReadHalf::reunite`] came from different streams; they are given
/// back.
///
/// ```
/// # spindle::block_on(async {
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let (r1, _w1) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
/// let (_r2, w2) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
/// let err = r1.reunite(w2).unwrap_err();
/// let (_r1, _w2) = (err.0, err.1);
/// # });
/// ```
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same TcpStream")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// [`TcpStream::recv_pooled`] on this half.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// let (r, mut w) = s.into_split();
    /// c.write_all(b"x").await.unwrap();
    /// assert_eq!(&r.recv_pooled().await.unwrap()[..], b"x");
    /// # drop(w);
    /// # });
    /// ```
    pub async fn recv_pooled(&self) -> io::Result<super::PooledBuf> {
        self.inner.recv_pooled().await
    }

    /// [`TcpStream::recv_stream`] on this half: with the write half, a zero-copy streaming echo.
    ///
    /// ```
    /// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    /// use spindle::io::AsyncWriteOwned;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// # let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    /// # let (s, _) = l.accept().await.unwrap();
    /// let (r, mut w) = s.into_split();
    /// c.write_all(b"echo").await.unwrap();
    /// let mut bufs = r.recv_stream();
    /// let buf = bufs.next().await.unwrap().unwrap();
    /// let (res, _) = w.write_all_owned(buf).await; // the pool's buffer goes out as is
    /// res.unwrap();
    /// let mut back = [0u8; 4];
    /// c.read_exact(&mut back).await.unwrap();
    /// assert_eq!(&back, b"echo");
    /// # });
    /// ```
    pub fn recv_stream(&self) -> super::RecvStream<'_> {
        self.inner.recv_stream()
    }

    /// Puts the halves back together.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (r, w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// let s = r.reunite(w).unwrap();
    /// # drop(s);
    /// # });
    /// ```
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.inner, &other.inner) {
            return Err(ReuniteError(self, other));
        }
        let mut other = other;
        other.shutdown_on_drop = false;
        let inner = other.inner.clone();
        drop(other);
        drop(self);
        Ok(Arc::into_inner(inner).expect("spindle: both halves were just dropped"))
    }

    /// The peer's address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (r, _w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// assert!(r.peer_addr().is_ok());
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (r, _w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// assert!(r.local_addr().is_ok());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Receives without removing the data from the queue.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (mut r, _w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// let (mut s, _) = l.accept().await.unwrap();
    /// s.write_all(b"x").await.unwrap();
    /// let mut b = [0u8; 1];
    /// assert_eq!(r.peek(&mut b).await.unwrap(), 1);
    /// # });
    /// ```
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.inner.io.poll_peek(cx, buf)).await
    }
}

impl OwnedWriteHalf {
    /// The peer's address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (_r, w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// assert!(w.peer_addr().is_ok());
    /// # });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    /// let (_r, w) = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap().into_split();
    /// assert!(w.local_addr().is_ok());
    /// # });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.inner.io.socket().shutdown(Shutdown::Write);
        }
    }
}

impl_read!(OwnedReadHalf, |s| s.inner.io);
impl_write!(OwnedWriteHalf, |s| s.inner.io);

/// The read half of a [`TcpStream`] borrowed by [`TcpStream::split`].
///
/// ```
/// use spindle::io::AsyncReadOwned;
/// # spindle::block_on(async {
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let mut a = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
/// let (mut b, _) = l.accept().await.unwrap();
/// futures::AsyncWriteExt::write_all(&mut b, b"x").await.unwrap();
/// let (mut r, _w) = spindle::net::TcpStream::split(&mut a);
/// let (res, buf) = r.read_owned(Vec::with_capacity(1)).await;
/// assert_eq!((res.unwrap(), buf), (1, b"x".to_vec()));
/// # });
/// ```
#[derive(Debug)]
pub struct ReadHalf<'a> {
    inner: &'a TcpStream,
}

/// The write half of a [`TcpStream`] borrowed by [`TcpStream::split`].
///
/// ```
/// use spindle::io::AsyncWriteOwned;
/// # spindle::block_on(async {
/// # let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// let mut a = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
/// let (mut b, _) = l.accept().await.unwrap();
/// let (_r, mut w) = spindle::net::TcpStream::split(&mut a);
/// let (res, _) = w.write_all_owned("y").await;
/// res.unwrap();
/// let mut got = [0u8; 1];
/// futures::AsyncReadExt::read_exact(&mut b, &mut got).await.unwrap();
/// assert_eq!(&got, b"y");
/// # });
/// ```
#[derive(Debug)]
pub struct WriteHalf<'a> {
    inner: &'a TcpStream,
}

super::stream_io::impl_readiness_halves!(
    OwnedReadHalf,
    OwnedWriteHalf,
    "use futures::AsyncWriteExt;
# spindle::block_on(async {
# let l = spindle::net::TcpListener::bind(\"127.0.0.1:0\").await.unwrap();
let c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
let (s, _) = l.accept().await.unwrap();
let (_c_read, mut c) = c.into_split();
let (s, _s_write) = s.into_split();"
);

super::stream_io::impl_readiness_halves!(
    ReadHalf<'_>,
    WriteHalf<'_>,
    "use futures::AsyncWriteExt;
# spindle::block_on(async {
# let l = spindle::net::TcpListener::bind(\"127.0.0.1:0\").await.unwrap();
let mut c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
let (mut s, _) = l.accept().await.unwrap();
let (_c_read, mut c) = c.split();
let (s, _s_write) = s.split();"
);

impl_read!(ReadHalf<'_>, |s| s.inner.io);
impl_write!(WriteHalf<'_>, |s| s.inner.io);
