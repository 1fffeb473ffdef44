//! Unix-domain sockets: [`UnixListener`], [`UnixStream`] (with owned and borrowed halves),
//! [`UnixDatagram`]; the main types are re-exported from [`spindle::net`](crate::net). Pipes
//! and FIFOs are in [`pipe`].
//!
//! ```
//! use spindle::net::unix::{OwnedReadHalf, OwnedWriteHalf};
//! spindle::block_on(async {
//!     let (a, _b) = spindle::net::UnixStream::pair().unwrap();
//!     let (r, w): (OwnedReadHalf, OwnedWriteHalf) = a.into_split();
//!     # drop((r, w));
//! });
//! ```

pub mod pipe;

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::ManuallyDrop;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::net::{SocketAddr, UnixDatagram as StdDatagram, UnixStream as StdStream};
use std::path::Path;
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket, Type};

use super::socket::PollSocket;
use super::stream_io::{impl_read, impl_write};
use super::tcp::AcceptBackoff;
use crate::io::{BufResult, IoBuf, IoBufMut};

fn path_error(op: &str, path: &Path, e: io::Error) -> io::Error {
    crate::io::with_context(format!("{op} {}", path.display()), e)
}

/// Runs `f` on a std view of the socket (std gives Unix socket addresses their std type).
fn local_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: `fd` is a live socket owned by the caller for the duration of this call; the view
    // is never dropped (ManuallyDrop), so it does not close the fd. `local_addr` is getsockname,
    // valid on stream and datagram sockets alike.
    let view = ManuallyDrop::new(unsafe { StdStream::from_raw_fd(fd) });
    view.local_addr()
}

fn peer_addr_of(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: as in `local_addr_of` (getpeername).
    let view = ManuallyDrop::new(unsafe { StdStream::from_raw_fd(fd) });
    view.peer_addr()
}

fn new_socket(ty: Type) -> io::Result<Socket> {
    Socket::new(Domain::UNIX, ty.nonblocking().cloexec(), None)
}

/// A Unix-domain socket listening for stream connections.
///
/// ```
/// use spindle::net::{UnixListener, UnixStream};
/// use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
/// let path = std::env::temp_dir().join(format!("spindle-doc-unix-{}.sock", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// spindle::block_on(async {
///     let l = UnixListener::bind(&path).unwrap();
///     let mut c = UnixStream::connect(&path).await.unwrap();
///     let (mut s, _) = l.accept().await.unwrap();
///     let (res, _) = c.write_all_owned("hi").await;
///     res.unwrap();
///     let (res, buf) = s.read_exact_owned(Vec::with_capacity(2)).await;
///     res.unwrap();
///     assert_eq!(buf, b"hi");
/// });
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    io: PollSocket,
    backoff: AcceptBackoff,
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener").field("fd", &self.io.fd()).field("addr", &self.local_addr().ok()).finish()
    }
}

impl UnixListener {
    /// Binds to `path` (which must not exist; remove a stale socket file first) and listens.
    /// Synchronous, like tokio's: binding a path does not block.
    ///
    /// ```
    /// let e = spindle::block_on(async { spindle::net::UnixListener::bind("/no/such/dir/x.sock") }).unwrap_err();
    /// assert!(e.to_string().contains("/no/such/dir/x.sock"), "{e}");
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let path = path.as_ref();
        let sock = new_socket(Type::STREAM)
            .and_then(|s| {
                s.bind(&SockAddr::unix(path)?)?;
                s.listen(1024)?;
                Ok(s)
            })
            .map_err(|e| path_error("bind", path, e))?;
        Ok(UnixListener { io: PollSocket::new(sock)?, backoff: AcceptBackoff::default() })
    }

    /// Wraps a listening `std::os::unix::net::UnixListener` (made non-blocking here).
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("spindle-doc-unix-std-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// spindle::block_on(async {
    ///     let std = std::os::unix::net::UnixListener::bind(&path).unwrap();
    ///     let l = spindle::net::UnixListener::from_std(std).unwrap();
    ///     assert!(l.local_addr().unwrap().as_pathname().is_some());
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener { io: PollSocket::from_blocking(Socket::from(listener))?, backoff: AcceptBackoff::default() })
    }

    /// Accepts a connection. Resource exhaustion (EMFILE, ...) is handled as in
    /// [`TcpListener::accept`](crate::net::TcpListener::accept): an error, then a back-off.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("spindle-doc-unix-accept-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// spindle::block_on(async {
    ///     let l = spindle::net::UnixListener::bind(&path).unwrap();
    ///     let _c = spindle::net::UnixStream::connect(&path).await.unwrap();
    ///     let (_s, addr) = l.accept().await.unwrap();
    ///     assert!(addr.is_unnamed());
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (sock, _) = self.backoff.accept(&self.io).await?;
        let stream = UnixStream { io: Arc::new(PollSocket::accepted(sock, None)?) };
        let addr = peer_addr_of(stream.io.fd())?;
        Ok((stream, addr))
    }

    /// The address the listener is bound to.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("spindle-doc-unix-addr-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// spindle::block_on(async {
    ///     let l = spindle::net::UnixListener::bind(&path).unwrap();
    ///     assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr_of(self.io.fd())
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}

/// A Unix-domain stream connection, with the same I/O traits as
/// [`TcpStream`](crate::net::TcpStream).
///
/// ```
/// use futures::{AsyncReadExt, AsyncWriteExt};
/// spindle::block_on(async {
///     let (mut a, mut b) = spindle::net::UnixStream::pair().unwrap();
///     a.write_all(b"ping").await.unwrap();
///     let mut buf = [0u8; 4];
///     b.read_exact(&mut buf).await.unwrap();
///     assert_eq!(&buf, b"ping");
/// });
/// ```
pub struct UnixStream {
    /// Shared with io_uring ops in flight (they keep the socket open until their final completion).
    io: Arc<PollSocket>,
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").field("fd", &self.io.fd()).field("peer", &self.peer_addr().ok()).finish()
    }
}

impl UnixStream {
    /// Connects to the socket at `path`.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let e = spindle::net::UnixStream::connect("/no/such/socket").await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    ///     assert!(e.to_string().starts_with("connect /no/such/socket: "), "{e}");
    /// });
    /// ```
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let path = path.as_ref();
        let connect = async {
            let sock = new_socket(Type::STREAM)?;
            Ok(UnixStream { io: PollSocket::connect(sock, &SockAddr::unix(path)?).await? })
        };
        connect.await.map_err(|e| path_error("connect", path, e))
    }

    /// A connected pair of streams.
    ///
    /// ```
    /// let (a, b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
    /// # drop((a, b));
    /// ```
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        Ok((UnixStream { io: Arc::new(PollSocket::new(a)?) }, UnixStream { io: Arc::new(PollSocket::new(b)?) }))
    }

    /// Wraps a connected `std::os::unix::net::UnixStream` (made non-blocking here).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    ///     let s = spindle::net::UnixStream::from_std(a).unwrap();
    ///     assert!(s.peer_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(stream: StdStream) -> io::Result<UnixStream> {
        Ok(UnixStream { io: Arc::new(PollSocket::from_blocking(Socket::from(stream))?) })
    }

    /// The local address.
    ///
    /// ```
    /// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
    /// assert!(a.local_addr().unwrap().is_unnamed());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr_of(self.io.fd())
    }

    /// The peer's address.
    ///
    /// ```
    /// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
    /// assert!(a.peer_addr().unwrap().is_unnamed());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        peer_addr_of(self.io.fd())
    }

    super::stream_io::readiness_methods!(
        "use futures::AsyncWriteExt;
# spindle::block_on(async {
let (mut c, s) = spindle::net::UnixStream::pair().unwrap();"
    );

    /// Receives the next chunk into a buffer of the runtime's pool; `Ok` with an empty buffer
    /// means end of stream. As [`TcpStream::recv_pooled`](crate::net::TcpStream::recv_pooled),
    /// with the same cancel safety (nothing is lost) and pool-exhaustion behaviour.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// spindle::block_on(async {
    ///     let (mut a, b) = spindle::net::UnixStream::pair().unwrap();
    ///     a.write_all(b"pooled").await.unwrap();
    ///     assert_eq!(&b.recv_pooled().await.unwrap()[..], b"pooled");
    /// });
    /// ```
    pub async fn recv_pooled(&self) -> io::Result<super::PooledBuf> {
        super::pooled::recv_pooled(&self.io).await
    }

    /// A stream of received chunks in pool buffers (one multishot receive on io_uring); as
    /// [`TcpStream::recv_stream`](crate::net::TcpStream::recv_stream).
    ///
    /// ```
    /// use futures::{AsyncWriteExt, StreamExt};
    /// spindle::block_on(async {
    ///     let (mut a, b) = spindle::net::UnixStream::pair().unwrap();
    ///     a.write_all(b"stream").await.unwrap();
    ///     let mut bufs = b.recv_stream();
    ///     assert_eq!(&bufs.next().await.unwrap().unwrap()[..], b"stream");
    /// });
    /// ```
    pub fn recv_stream(&self) -> super::RecvStream<'_> {
        super::RecvStream::new(&self.io)
    }

    /// Reads into several slices with one system call.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// spindle::block_on(async {
    ///     let (mut a, mut b) = spindle::net::UnixStream::pair().unwrap();
    ///     a.write_all(b"xy").await.unwrap();
    ///     let (mut p, mut q) = ([0u8; 1], [0u8; 1]);
    ///     let n = b.readv(&mut [std::io::IoSliceMut::new(&mut p), std::io::IoSliceMut::new(&mut q)]).await.unwrap();
    ///     assert!(n >= 1);
    /// });
    /// ```
    pub async fn readv(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.io.poll_recv_vectored(cx, bufs)).await
    }

    /// Writes from several slices with one system call.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (mut a, _b) = spindle::net::UnixStream::pair().unwrap();
    ///     assert_eq!(a.writev(&[std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"c")]).await.unwrap(), 3);
    /// });
    /// ```
    pub async fn writev(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.io.poll_send_vectored(cx, bufs)).await
    }

    /// Shuts down the read, write or both directions at once.
    ///
    /// ```
    /// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
    /// a.shutdown_std(std::net::Shutdown::Both).unwrap();
    /// ```
    pub fn shutdown_std(&self, how: Shutdown) -> io::Result<()> {
        self.io.socket().shutdown(how)
    }

    /// Borrows the stream as a read half and a write half, usable at the same time (for example
    /// by two futures joined in one task), as tokio's `split`. Shutting the write half down shuts
    /// the stream's write direction down.
    ///
    /// With `futures::AsyncReadExt` in scope, `stream.split()` resolves to that trait's by-value
    /// `split` (method lookup tries by-value receivers first); write `UnixStream::split(&mut stream)` to
    /// get this one.
    ///
    /// ```
    /// use futures::{AsyncReadExt, AsyncWriteExt};
    /// # spindle::block_on(async {
    /// let (mut c, mut s) = spindle::net::UnixStream::pair().unwrap();
    ///     let (mut r, mut w) = spindle::net::UnixStream::split(&mut s);
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

    /// Splits into owned read and write halves (dropping the write half shuts writing down).
    ///
    /// ```
    /// use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
    /// spindle::block_on(async {
    ///     let (a, mut b) = spindle::net::UnixStream::pair().unwrap();
    ///     let (mut r, w) = a.into_split();
    ///     drop(w); // b reads end of stream
    ///     let (res, _) = b.read_owned(vec![0u8; 4]).await;
    ///     assert_eq!(res.unwrap(), 0);
    ///     let (res, _) = b.write_all_owned("still open").await;
    ///     res.unwrap();
    ///     let (res, buf) = r.read_owned(Vec::with_capacity(32)).await;
    ///     assert!(res.unwrap() > 0 && buf.starts_with(b"still"));
    /// });
    /// ```
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.io.prepare_for_split();
        let inner = Arc::new(self);
        (OwnedReadHalf { inner: inner.clone() }, OwnedWriteHalf { inner, shutdown_on_drop: true })
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}

impl_read!(UnixStream, |s| s.io);
impl_write!(UnixStream, |s| s.io);

/// The read half of a [`UnixStream`], from [`UnixStream::into_split`].
///
/// ```
/// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
/// let (r, w) = a.into_split();
/// let _a = r.reunite(w).unwrap();
/// ```
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: Arc<UnixStream>,
}

/// The write half of a [`UnixStream`]; dropping it shuts writing down.
///
/// ```
/// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
/// let (_r, w) = a.into_split();
/// # drop(w);
/// ```
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: Arc<UnixStream>,
    shutdown_on_drop: bool,
}

/// The halves passed to [`OwnedReadHalf::reunite`] came from different streams; they are given back.
///
/// ```
/// let ((a, _), (b, _)) = spindle::block_on(async {
///     (spindle::net::UnixStream::pair().unwrap(), spindle::net::UnixStream::pair().unwrap())
/// });
/// let (r, _) = a.into_split();
/// let (_, w) = b.into_split();
/// assert!(r.reunite(w).is_err());
/// ```
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same UnixStream")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// [`UnixStream::recv_pooled`] on this half.
    ///
    /// ```
    /// use futures::AsyncWriteExt;
    /// # spindle::block_on(async {
    /// # let (mut c, s) = spindle::net::UnixStream::pair().unwrap();
    /// let (r, mut w) = s.into_split();
    /// c.write_all(b"x").await.unwrap();
    /// assert_eq!(&r.recv_pooled().await.unwrap()[..], b"x");
    /// # drop(w);
    /// # });
    /// ```
    pub async fn recv_pooled(&self) -> io::Result<super::PooledBuf> {
        self.inner.recv_pooled().await
    }

    /// [`UnixStream::recv_stream`] on this half: with the write half, a zero-copy streaming echo.
    ///
    /// ```
    /// use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    /// use spindle::io::AsyncWriteOwned;
    /// # spindle::block_on(async {
    /// # let (mut c, s) = spindle::net::UnixStream::pair().unwrap();
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
    /// let (a, _b) = spindle::block_on(async { spindle::net::UnixStream::pair() }).unwrap();
    /// let (r, w) = a.into_split();
    /// assert!(r.reunite(w).is_ok());
    /// ```
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<UnixStream, ReuniteError> {
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

/// A Unix-domain datagram socket. Methods take `&self` (see [`UdpSocket`](crate::net::UdpSocket)).
///
/// ```
/// spindle::block_on(async {
///     let (a, b) = spindle::net::UnixDatagram::pair().unwrap();
///     a.send(b"dgram").await.unwrap();
///     let mut buf = [0u8; 16];
///     assert_eq!(b.recv(&mut buf).await.unwrap(), 5);
/// });
/// ```
pub struct UnixDatagram {
    /// Shared with io_uring ops in flight (they keep the socket open until their final completion).
    io: Arc<PollSocket>,
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram").field("fd", &self.io.fd()).finish()
    }
}

impl UnixDatagram {
    /// A socket bound to `path`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("spindle-doc-dgram-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// spindle::block_on(async {
    ///     let s = spindle::net::UnixDatagram::bind(&path).unwrap();
    ///     let c = spindle::net::UnixDatagram::unbound().unwrap();
    ///     c.send_to(b"to path", &path).await.unwrap();
    ///     let mut buf = [0u8; 16];
    ///     let (n, _from) = s.recv_from(&mut buf).await.unwrap();
    ///     assert_eq!(&buf[..n], b"to path");
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let path = path.as_ref();
        let sock = new_socket(Type::DGRAM).map_err(|e| path_error("bind", path, e))?;
        note_unnamed_addr(&sock);
        sock.bind(&SockAddr::unix(path).map_err(|e| path_error("bind", path, e))?)
            .map_err(|e| path_error("bind", path, e))?;
        Ok(UnixDatagram { io: Arc::new(PollSocket::new(sock)?) })
    }

    /// An unbound socket (it can send; replies need a bound sender).
    ///
    /// ```
    /// let s = spindle::block_on(async { spindle::net::UnixDatagram::unbound() }).unwrap();
    /// # drop(s);
    /// ```
    pub fn unbound() -> io::Result<UnixDatagram> {
        let sock = new_socket(Type::DGRAM)?;
        note_unnamed_addr(&sock);
        Ok(UnixDatagram { io: Arc::new(PollSocket::new(sock)?) })
    }

    /// A connected pair of datagram sockets.
    ///
    /// ```
    /// let (a, b) = spindle::block_on(async { spindle::net::UnixDatagram::pair() }).unwrap();
    /// # drop((a, b));
    /// ```
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)?;
        note_unnamed_addr(&a);
        Ok((UnixDatagram { io: Arc::new(PollSocket::new(a)?) }, UnixDatagram { io: Arc::new(PollSocket::new(b)?) }))
    }

    /// Wraps a `std::os::unix::net::UnixDatagram` (made non-blocking here).
    ///
    /// ```
    /// let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    /// let s = spindle::block_on(async { spindle::net::UnixDatagram::from_std(a) }).unwrap();
    /// # drop(s);
    /// ```
    pub fn from_std(socket: StdDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram { io: Arc::new(PollSocket::from_blocking(Socket::from(socket))?) })
    }

    /// Sets the default destination.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("spindle-doc-dgram-conn-{}.sock", std::process::id()));
    /// # let _ = std::fs::remove_file(&path);
    /// spindle::block_on(async {
    ///     let s = spindle::net::UnixDatagram::bind(&path).unwrap();
    ///     let c = spindle::net::UnixDatagram::unbound().unwrap();
    ///     c.connect(&path).unwrap();
    ///     c.send(b"x").await.unwrap();
    ///     let mut b = [0u8; 1];
    ///     assert_eq!(s.recv(&mut b).await.unwrap(), 1);
    /// });
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let path = path.as_ref();
        self.io
            .socket()
            .connect(&SockAddr::unix(path).map_err(|e| path_error("connect", path, e))?)
            .map_err(|e| path_error("connect", path, e))
    }

    /// Sends to the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, _b) = spindle::net::UnixDatagram::pair().unwrap();
    ///     assert_eq!(a.send(b"abc").await.unwrap(), 3);
    /// });
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.send_shared(buf).await
    }

    /// Receives from the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, b) = spindle::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"z").await.unwrap();
    ///     let mut buf = [0u8; 4];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 1);
    /// });
    /// ```
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.recv_shared(buf).await
    }

    /// Sends to the socket bound at `path`.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UnixDatagram::unbound().unwrap();
    ///     let e = s.send_to(b"x", "/no/such/socket").await.unwrap_err();
    ///     assert!(e.to_string().contains("/no/such/socket"), "{e}");
    /// });
    /// ```
    pub async fn send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        let to = SockAddr::unix(path).map_err(|e| path_error("send_to", path, e))?;
        self.io.send_to_shared(buf, &to).await.map_err(|e| path_error("send_to", path, e))
    }

    /// Receives a datagram and its sender's address.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, b) = spindle::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"q").await.unwrap();
    ///     let mut buf = [0u8; 4];
    ///     let (n, _addr) = b.recv_from(&mut buf).await.unwrap();
    ///     assert_eq!(n, 1);
    /// });
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.io.recv_from_shared(buf).await?;
        Ok((n, std_unix_addr(&from)?))
    }

    super::datagram_io::datagram_readiness_methods!(
        "# spindle::block_on(async {
let (a, b) = spindle::net::UnixDatagram::pair().unwrap();"
    );

    /// Receives a datagram and its sender's address now, without waiting (see
    /// [`try_recv`](Self::try_recv)).
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("spindle-doc-ud-try-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// spindle::block_on(async {
    ///     let a = spindle::net::UnixDatagram::bind(dir.join("a")).unwrap();
    ///     let b = spindle::net::UnixDatagram::bind(dir.join("b")).unwrap();
    ///     b.send_to(b"hi", dir.join("a")).await.unwrap();
    ///     a.readable().await.unwrap();
    ///     let mut buf = [0u8; 8];
    ///     let (n, from) = a.try_recv_from(&mut buf).unwrap();
    ///     assert_eq!((&buf[..n], from.as_pathname()), (&b"hi"[..], Some(dir.join("b").as_path())));
    /// });
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.io.try_recv_from_now(buf)?;
        Ok((n, std_unix_addr(&from)?))
    }

    /// Sends a datagram to the socket bound at `path` now, without waiting (see
    /// [`try_send`](Self::try_send)). Errors other than `WouldBlock` name the path.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UnixDatagram::unbound().unwrap();
    ///     let e = s.try_send_to(b"x", "/no/such/socket").unwrap_err();
    ///     assert!(e.to_string().contains("/no/such/socket"), "{e}");
    /// });
    /// ```
    pub fn try_send_to(&self, buf: &[u8], path: impl AsRef<Path>) -> io::Result<usize> {
        let path = path.as_ref();
        let to = SockAddr::unix(path).map_err(|e| path_error("send_to", path, e))?;
        self.io.try_send_to_now(buf, &to).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => e,
            _ => path_error("send_to", path, e),
        })
    }

    /// Sends an owned buffer to the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, _b) = spindle::net::UnixDatagram::pair().unwrap();
    ///     let (res, _) = a.send_owned(vec![1u8; 3]).await;
    ///     assert_eq!(res.unwrap(), 3);
    /// });
    /// ```
    pub async fn send_owned<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.io.send_owned_shared(buf).await
    }

    /// Receives into an owned buffer from the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let (a, b) = spindle::net::UnixDatagram::pair().unwrap();
    ///     a.send(b"own").await.unwrap();
    ///     let (res, buf) = b.recv_owned(Vec::with_capacity(8)).await;
    ///     assert_eq!((res.unwrap(), &buf[..]), (3, &b"own"[..]));
    /// });
    /// ```
    pub async fn recv_owned<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.io.recv_owned_shared(buf).await
    }

    /// Sends an owned buffer's initialized bytes to the socket bound at `path` (on io_uring a
    /// `sendmsg` op; the kernel copies the datagram before it completes). Errors name the path
    /// and give the buffer back.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("spindle-doc-ud-owned-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// spindle::block_on(async {
    ///     let a = spindle::net::UnixDatagram::bind(dir.join("a")).unwrap();
    ///     let b = spindle::net::UnixDatagram::bind(dir.join("b")).unwrap();
    ///     let (res, buf) = b.send_to_owned(b"ping".to_vec(), dir.join("a")).await;
    ///     assert_eq!(res.unwrap(), 4);
    ///     let (res, buf) = a.recv_from_owned(buf).await;
    ///     let (n, from) = res.unwrap();
    ///     assert_eq!((&buf[..n], from.as_pathname()), (&b"ping"[..], Some(dir.join("b").as_path())));
    ///
    ///     let (res, buf) = a.send_to_owned(buf, "/no/such/socket").await;
    ///     assert!(res.unwrap_err().to_string().contains("/no/such/socket"));
    ///     assert_eq!(buf, b"ping"); // given back
    /// });
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub async fn send_to_owned<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        let path = path.as_ref();
        let to = match SockAddr::unix(path) {
            Ok(to) => to,
            Err(e) => return (Err(path_error("send_to", path, e)), buf),
        };
        let (res, buf) = self.io.send_to_owned_shared(buf, &to).await;
        (res.map_err(|e| path_error("send_to", path, e)), buf)
    }

    /// Receives a datagram into an owned buffer (it then holds exactly the datagram, truncated
    /// to `bytes_total()`), with its sender's address. See
    /// [`send_to_owned`](Self::send_to_owned) for an example.
    pub async fn recv_from_owned<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = self.io.recv_from_owned_shared(buf).await;
        (res.and_then(|(n, from)| Ok((n, std_unix_addr(&from)?))), buf)
    }

    /// The local address.
    ///
    /// ```
    /// let s = spindle::block_on(async { spindle::net::UnixDatagram::unbound() }).unwrap();
    /// assert!(s.local_addr().unwrap().is_unnamed());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: the fd is our live socket; the view is never dropped, so it does not close it.
        let view = ManuallyDrop::new(unsafe { StdDatagram::from_raw_fd(self.io.fd()) });
        view.local_addr()
    }

    /// The connected peer's address.
    ///
    /// ```
    /// let (a, _b) = spindle::block_on(async { spindle::net::UnixDatagram::pair() }).unwrap();
    /// assert!(a.peer_addr().is_ok());
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        // SAFETY: as in `local_addr`.
        let view = ManuallyDrop::new(unsafe { StdDatagram::from_raw_fd(self.io.fd()) });
        view.peer_addr()
    }
}

/// A std Unix socket address for a received sender address: its path, its abstract name, or
/// unnamed.
fn std_unix_addr(a: &SockAddr) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    if let Some(p) = a.as_pathname() {
        return SocketAddr::from_pathname(p);
    }
    if let Some(name) = a.as_abstract_namespace() {
        return SocketAddr::from_abstract_name(name);
    }
    unnamed_addr()
}

/// std has no constructor of an unnamed address: one is taken from an unbound socket, once per
/// process, and cloned from then on (a fresh socket per datagram cost two syscalls and, out of
/// file descriptors, failed after the datagram was already taken off the socket: it was lost).
static UNNAMED: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();

/// Records the unnamed address from `sock` if it is unbound (no extra fd), so a receive needs
/// none later; called as each datagram socket is made.
fn note_unnamed_addr(sock: &Socket) {
    if UNNAMED.get().is_none() {
        // SAFETY: a borrowed view of `sock`'s fd for `local_addr`; `ManuallyDrop` keeps it open.
        let view = ManuallyDrop::new(unsafe { StdDatagram::from_raw_fd(sock.as_raw_fd()) });
        if let Ok(a) = view.local_addr() {
            if a.is_unnamed() {
                let _ = UNNAMED.set(a);
            }
        }
    }
}

fn unnamed_addr() -> io::Result<SocketAddr> {
    if let Some(a) = UNNAMED.get() {
        return Ok(a.clone());
    }
    let a = StdDatagram::unbound()?.local_addr()?;
    Ok(UNNAMED.get_or_init(|| a).clone())
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}

/// The read half of a [`UnixStream`] borrowed by [`UnixStream::split`].
///
/// ```
/// use spindle::io::AsyncReadOwned;
/// # spindle::block_on(async {
/// let (mut a, mut b) = spindle::net::UnixStream::pair().unwrap();
/// futures::AsyncWriteExt::write_all(&mut b, b"x").await.unwrap();
/// let (mut r, _w) = spindle::net::UnixStream::split(&mut a);
/// let (res, buf) = r.read_owned(Vec::with_capacity(1)).await;
/// assert_eq!((res.unwrap(), buf), (1, b"x".to_vec()));
/// # });
/// ```
#[derive(Debug)]
pub struct ReadHalf<'a> {
    inner: &'a UnixStream,
}

/// The write half of a [`UnixStream`] borrowed by [`UnixStream::split`].
///
/// ```
/// use spindle::io::AsyncWriteOwned;
/// # spindle::block_on(async {
/// let (mut a, mut b) = spindle::net::UnixStream::pair().unwrap();
/// let (_r, mut w) = spindle::net::UnixStream::split(&mut a);
/// let (res, _) = w.write_all_owned("y").await;
/// res.unwrap();
/// let mut got = [0u8; 1];
/// futures::AsyncReadExt::read_exact(&mut b, &mut got).await.unwrap();
/// assert_eq!(&got, b"y");
/// # });
/// ```
#[derive(Debug)]
pub struct WriteHalf<'a> {
    inner: &'a UnixStream,
}

super::stream_io::impl_readiness_halves!(
    OwnedReadHalf,
    OwnedWriteHalf,
    "use futures::AsyncWriteExt;
# spindle::block_on(async {
let (c, s) = spindle::net::UnixStream::pair().unwrap();
let (_c_read, mut c) = c.into_split();
let (s, _s_write) = s.into_split();"
);

super::stream_io::impl_readiness_halves!(
    ReadHalf<'_>,
    WriteHalf<'_>,
    "use futures::AsyncWriteExt;
# spindle::block_on(async {
let (mut c, mut s) = spindle::net::UnixStream::pair().unwrap();
let (_c_read, mut c) = c.split();
let (s, _s_write) = s.split();"
);

impl_read!(ReadHalf<'_>, |s| s.inner.io);
impl_write!(WriteHalf<'_>, |s| s.inner.io);
