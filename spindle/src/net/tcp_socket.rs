//! [`TcpSocket`]: a TCP socket configured before it listens or connects (tokio's `TcpSocket`).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::tcp::{addr_error, inet_addr};
use super::{TcpListener, TcpStream};

/// A TCP socket that is neither listening nor connected yet: set its options (`SO_REUSEPORT`,
/// buffer sizes, ...), bind it, then turn it into a [`TcpListener`] with
/// [`listen`](Self::listen) or into a [`TcpStream`] with [`connect`](Self::connect). The names
/// are tokio's.
///
/// `SO_REUSEPORT` is what a [per-core runtime](crate::runtime::Builder::new_per_core) server
/// uses: one listener per core on the same port, the kernel dealing new connections out to
/// them, each core accepting and serving its own.
///
/// ```
/// use spindle::net::TcpSocket;
/// spindle::block_on(async {
///     let first = TcpSocket::new_v4().unwrap();
///     first.set_reuseport(true).unwrap();
///     first.bind("127.0.0.1:0".parse().unwrap()).unwrap();
///     let addr = first.local_addr().unwrap();
///     let first = first.listen(1024).unwrap();
///     // A second listener on the same port.
///     let second = TcpSocket::new_v4().unwrap();
///     second.set_reuseport(true).unwrap();
///     second.bind(addr).unwrap();
///     let second = second.listen(1024).unwrap();
///     assert_eq!(second.local_addr().unwrap(), addr);
///     # drop((first, second));
/// });
/// ```
pub struct TcpSocket {
    sock: Socket,
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket").field("fd", &self.sock.as_raw_fd()).field("local", &self.local_addr().ok()).finish()
    }
}

impl TcpSocket {
    fn new(domain: Domain) -> io::Result<TcpSocket> {
        let sock = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))
            .map_err(|e| io::Error::new(e.kind(), format!("create a TCP socket: {e}")))?;
        Ok(TcpSocket { sock })
    }

    /// A new IPv4 TCP socket.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// # drop(s);
    /// ```
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v6().unwrap();
    /// # drop(s);
    /// ```
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    /// Sets `SO_REUSEADDR`: bind to a port whose old connections are still in `TIME_WAIT`
    /// ([`TcpListener::bind`] sets it).
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_reuseaddr(true).unwrap();
    /// assert!(s.reuseaddr().unwrap());
    /// ```
    pub fn set_reuseaddr(&self, reuse: bool) -> io::Result<()> {
        self.sock.set_reuse_address(reuse)
    }

    /// The `SO_REUSEADDR` setting.
    ///
    /// ```
    /// assert!(!spindle::net::TcpSocket::new_v4().unwrap().reuseaddr().unwrap());
    /// ```
    pub fn reuseaddr(&self) -> io::Result<bool> {
        self.sock.reuse_address()
    }

    /// Sets `SO_REUSEPORT`: several sockets (of the same user) may bind the same address and
    /// port; for listeners the kernel spreads incoming connections over them.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_reuseport(true).unwrap();
    /// assert!(s.reuseport().unwrap());
    /// ```
    pub fn set_reuseport(&self, reuse: bool) -> io::Result<()> {
        self.sock.set_reuse_port(reuse)
    }

    /// The `SO_REUSEPORT` setting.
    ///
    /// ```
    /// assert!(!spindle::net::TcpSocket::new_v4().unwrap().reuseport().unwrap());
    /// ```
    pub fn reuseport(&self) -> io::Result<bool> {
        self.sock.reuse_port()
    }

    /// Sets the size of the kernel's send buffer (`SO_SNDBUF`; the kernel doubles it and
    /// applies its limits).
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_send_buffer_size(64 * 1024).unwrap();
    /// assert!(s.send_buffer_size().unwrap() >= 64 * 1024);
    /// ```
    pub fn set_send_buffer_size(&self, size: u32) -> io::Result<()> {
        self.sock.set_send_buffer_size(size as usize)
    }

    /// The size of the kernel's send buffer (`SO_SNDBUF`).
    ///
    /// ```
    /// assert!(spindle::net::TcpSocket::new_v4().unwrap().send_buffer_size().unwrap() > 0);
    /// ```
    pub fn send_buffer_size(&self) -> io::Result<u32> {
        self.sock.send_buffer_size().map(|n| n as u32)
    }

    /// Sets the size of the kernel's receive buffer (`SO_RCVBUF`; the kernel doubles it and
    /// applies its limits).
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_recv_buffer_size(64 * 1024).unwrap();
    /// assert!(s.recv_buffer_size().unwrap() >= 64 * 1024);
    /// ```
    pub fn set_recv_buffer_size(&self, size: u32) -> io::Result<()> {
        self.sock.set_recv_buffer_size(size as usize)
    }

    /// The size of the kernel's receive buffer (`SO_RCVBUF`).
    ///
    /// ```
    /// assert!(spindle::net::TcpSocket::new_v4().unwrap().recv_buffer_size().unwrap() > 0);
    /// ```
    pub fn recv_buffer_size(&self) -> io::Result<u32> {
        self.sock.recv_buffer_size().map(|n| n as u32)
    }

    /// Sets `TCP_NODELAY` (no Nagle delay for small writes); a stream made by
    /// [`connect`](Self::connect) keeps it.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// ```
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.sock.set_tcp_nodelay(nodelay)
    }

    /// The `TCP_NODELAY` setting.
    ///
    /// ```
    /// assert!(!spindle::net::TcpSocket::new_v4().unwrap().nodelay().unwrap());
    /// ```
    pub fn nodelay(&self) -> io::Result<bool> {
        self.sock.tcp_nodelay()
    }

    /// Sets `SO_KEEPALIVE`.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_keepalive(true).unwrap();
    /// assert!(s.keepalive().unwrap());
    /// ```
    pub fn set_keepalive(&self, keepalive: bool) -> io::Result<()> {
        self.sock.set_keepalive(keepalive)
    }

    /// The `SO_KEEPALIVE` setting.
    ///
    /// ```
    /// assert!(!spindle::net::TcpSocket::new_v4().unwrap().keepalive().unwrap());
    /// ```
    pub fn keepalive(&self) -> io::Result<bool> {
        self.sock.keepalive()
    }

    /// Sets `SO_LINGER`: how long closing waits for unsent data (`Some(0)`: reset at once).
    ///
    /// ```
    /// use std::time::Duration;
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_linger(Some(Duration::from_secs(1))).unwrap();
    /// assert_eq!(s.linger().unwrap(), Some(Duration::from_secs(1)));
    /// ```
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.sock.set_linger(linger)
    }

    /// The `SO_LINGER` setting.
    ///
    /// ```
    /// assert_eq!(spindle::net::TcpSocket::new_v4().unwrap().linger().unwrap(), None);
    /// ```
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.sock.linger()
    }

    /// Sets the IPv4 type-of-service byte of outgoing packets (`IP_TOS`).
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.set_tos(0x10).unwrap();
    /// assert_eq!(s.tos().unwrap(), 0x10);
    /// ```
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        self.sock.set_tos_v4(tos)
    }

    /// The `IP_TOS` setting.
    ///
    /// ```
    /// assert_eq!(spindle::net::TcpSocket::new_v4().unwrap().tos().unwrap(), 0);
    /// ```
    pub fn tos(&self) -> io::Result<u32> {
        self.sock.tos_v4()
    }

    /// Binds the socket to a network interface by name (`SO_BINDTODEVICE`; `None` unbinds).
    /// Binding needs `CAP_NET_RAW` unless the interface is the one the socket already uses.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// if s.bind_device(Some(b"lo")).is_ok() {
    ///     assert_eq!(s.device().unwrap().as_deref(), Some(&b"lo"[..]));
    /// }
    /// ```
    pub fn bind_device(&self, interface: Option<&[u8]>) -> io::Result<()> {
        self.sock.bind_device(interface)
    }

    /// The interface the socket is bound to (`SO_BINDTODEVICE`), if any.
    ///
    /// ```
    /// assert_eq!(spindle::net::TcpSocket::new_v4().unwrap().device().unwrap(), None);
    /// ```
    pub fn device(&self) -> io::Result<Option<Vec<u8>>> {
        self.sock.device()
    }

    /// Takes the socket's pending error (`SO_ERROR`), clearing it.
    ///
    /// ```
    /// assert!(spindle::net::TcpSocket::new_v4().unwrap().take_error().unwrap().is_none());
    /// ```
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.sock.take_error()
    }

    /// A `TcpSocket` from a std stream's socket (made non-blocking), to change its options with
    /// these methods; as tokio's, for symmetry with the other constructors.
    ///
    /// ```
    /// let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let std = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    /// let s = spindle::net::TcpSocket::from_std_stream(std);
    /// s.set_nodelay(true).unwrap();
    /// assert!(s.nodelay().unwrap());
    /// ```
    pub fn from_std_stream(stream: std::net::TcpStream) -> TcpSocket {
        let sock = Socket::from(stream);
        // A std stream is blocking; spindle's sockets never are. Failing here leaves it blocking,
        // which only a later `connect` would notice (as a blocking connect).
        let _ = sock.set_nonblocking(true);
        TcpSocket { sock }
    }

    /// Binds the socket to `addr` (port 0 picks a free port); the error names the address.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert_ne!(s.local_addr().unwrap().port(), 0);
    /// // An IPv6 address on an IPv4 socket: a clear error, not a panic.
    /// let e = spindle::net::TcpSocket::new_v4().unwrap().bind("[::1]:0".parse().unwrap()).unwrap_err();
    /// assert!(e.to_string().starts_with("bind [::1]:0: "), "{e}");
    /// ```
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.sock.bind(&addr.into()).map_err(|e| addr_error("bind", addr, e))
    }

    /// The address the socket is bound to.
    ///
    /// ```
    /// let s = spindle::net::TcpSocket::new_v4().unwrap();
    /// s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    /// assert!(s.local_addr().unwrap().ip().is_loopback());
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.sock.local_addr())
    }

    /// Starts listening, with room for `backlog` connections not yet accepted. The listener
    /// belongs to the runtime current on this thread (see [`crate::net`]).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::TcpSocket::new_v4().unwrap();
    ///     s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ///     let l = s.listen(128).unwrap();
    ///     let c = spindle::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    ///     let (_s, peer) = l.accept().await.unwrap();
    ///     assert_eq!(peer, c.local_addr().unwrap());
    /// });
    /// ```
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
        self.sock.listen(backlog).map_err(|e| io::Error::new(e.kind(), format!("listen: {e}")))?;
        TcpListener::from_listening(self.sock)
    }

    /// Connects to `addr`; the error names the address.
    ///
    /// # Cancel safety
    /// Dropping the future closes the half-open socket; nothing leaks.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let l = spindle::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    ///     let s = spindle::net::TcpSocket::new_v4().unwrap();
    ///     s.set_nodelay(true).unwrap();
    ///     let c = s.connect(l.local_addr().unwrap()).await.unwrap();
    ///     assert!(c.nodelay().unwrap());
    ///     let e = spindle::net::TcpSocket::new_v4().unwrap().connect("127.0.0.1:1".parse().unwrap()).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    /// });
    /// ```
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_socket(self.sock, addr).await.map_err(|e| addr_error("connect", addr, e))
    }
}

impl AsRawFd for TcpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl AsFd for TcpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl IntoRawFd for TcpSocket {
    fn into_raw_fd(self) -> RawFd {
        self.sock.into_raw_fd()
    }
}

impl FromRawFd for TcpSocket {
    /// Takes ownership of `fd`, a TCP socket; it is made non-blocking.
    ///
    /// # Safety
    /// `fd` must be an open TCP socket that nothing else owns (it is closed with the
    /// `TcpSocket`).
    unsafe fn from_raw_fd(fd: RawFd) -> TcpSocket {
        // SAFETY: the caller hands over an open socket it owns (this function's contract).
        let sock = unsafe { Socket::from_raw_fd(fd) };
        let _ = sock.set_nonblocking(true);
        TcpSocket { sock }
    }
}
