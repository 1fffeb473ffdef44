//! UDP: [`UdpSocket`] (re-exported from [`spindle::net`](crate::net)).
//!
//! ```
//! spindle::block_on(async {
//!     let s = spindle::net::udp::UdpSocket::bind("127.0.0.1:0").await.unwrap();
//!     assert!(s.local_addr().unwrap().ip().is_loopback());
//! });
//! ```

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::addr::{resolve, resolve_one, ToSocketAddrs};
use super::socket::PollSocket;
use super::tcp::{addr_error, first_ok, inet_addr};
use crate::io::{BufResult, IoBuf, IoBufMut};

/// A UDP socket.
///
/// Methods take `&self`, so one socket can be shared (`Arc<UdpSocket>`) by tasks that send and
/// receive concurrently; several tasks may wait in `recv_from` at once (each readiness event wakes
/// them all, and the ones that find nothing wait again).
///
/// `send_to(&[u8], addr)` and `recv_from(&mut [u8])` have std's meaning; the owned-buffer
/// versions end in `_owned`.
///
/// ```
/// use spindle::net::UdpSocket;
/// spindle::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
///     a.send_to(b"hi", b.local_addr().unwrap()).await.unwrap();
///     let mut buf = [0u8; 16];
///     let (n, from) = b.recv_from(&mut buf).await.unwrap();
///     assert_eq!((&buf[..n], from), (&b"hi"[..], a.local_addr().unwrap()));
/// });
/// ```
pub struct UdpSocket {
    /// Shared with io_uring ops in flight (they keep the socket open until their final completion).
    pub(crate) io: Arc<PollSocket>,
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket").field("fd", &self.io.fd()).field("local", &self.local_addr().ok()).finish()
    }
}

impl UdpSocket {
    /// Binds a socket to `addr` (each resolved address is tried in turn).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert_ne!(s.local_addr().unwrap().port(), 0);
    /// });
    /// ```
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addrs = resolve(&addr).await?;
        first_ok(addrs, |a| {
            let sock = Socket::new(Domain::for_address(a), Type::DGRAM.nonblocking().cloexec(), Some(Protocol::UDP))
                .and_then(|s| s.bind(&a.into()).map(|()| s))
                .map_err(|e| addr_error("bind", a, e))?;
            Ok(UdpSocket { io: Arc::new(PollSocket::new(sock)?) })
        })
    }

    /// Wraps a bound `std::net::UdpSocket` (made non-blocking here).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let std = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    ///     let s = spindle::net::UdpSocket::from_std(std).unwrap();
    ///     assert!(s.local_addr().is_ok());
    /// });
    /// ```
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket { io: Arc::new(PollSocket::from_blocking(Socket::from(socket))?) })
    }

    /// Sets the default destination (and the only source accepted by `recv`).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let a = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     let b = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     a.connect(b.local_addr().unwrap()).await.unwrap();
    ///     assert_eq!(a.peer_addr().unwrap(), b.local_addr().unwrap());
    ///     a.send(b"x").await.unwrap();
    ///     let mut buf = [0u8; 1];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 1);
    /// });
    /// ```
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let addrs = resolve(&addr).await?;
        first_ok(addrs, |a| self.io.socket().connect(&a.into()).map_err(|e| addr_error("connect", a, e)))
    }

    /// The local address.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert!(s.local_addr().unwrap().ip().is_loopback());
    /// });
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.io.socket().local_addr())
    }

    /// The connected peer's address (`NotConnected` if `connect` was not called).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert_eq!(s.peer_addr().unwrap_err().kind(), std::io::ErrorKind::NotConnected);
    /// });
    /// ```
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        inet_addr(self.io.socket().peer_addr())
    }

    super::datagram_io::datagram_readiness_methods!(
        "# spindle::block_on(async {
let a = spindle::net::UdpSocket::bind(\"127.0.0.1:0\").await.unwrap();
let b = spindle::net::UdpSocket::bind(\"127.0.0.1:0\").await.unwrap();
a.connect(b.local_addr().unwrap()).await.unwrap();
b.connect(a.local_addr().unwrap()).await.unwrap();"
    );

    /// Receives a datagram and its sender now, without waiting (see [`try_recv`](Self::try_recv)).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(s.try_recv_from(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    ///     s.send_to(b"ping", s.local_addr().unwrap()).await.unwrap();
    ///     let (n, from) = loop {
    ///         s.readable().await.unwrap();
    ///         match s.try_recv_from(&mut buf) {
    ///             Ok(r) => break r,
    ///             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
    ///             Err(e) => panic!("{e}"),
    ///         }
    ///     };
    ///     assert_eq!((&buf[..n], from), (&b"ping"[..], s.local_addr().unwrap()));
    /// });
    /// ```
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.io.try_recv_from_now(buf)?;
        Ok((n, inet_addr(Ok(from))?))
    }

    /// Sends a datagram to `target` now, without waiting (a literal address: nothing to look up;
    /// see [`try_send`](Self::try_send)). Errors other than `WouldBlock` name the target.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert_eq!(s.try_send_to(b"self", s.local_addr().unwrap()).unwrap(), 4);
    /// });
    /// ```
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        // `WouldBlock` is the expected answer of a full buffer: passed on as it is, without the
        // allocation of a message.
        self.io.try_send_to_now(buf, &SockAddr::from(target)).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => e,
            _ => addr_error("send_to", target, e),
        })
    }

    /// Sends a datagram to the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     // Not connected: an error, not a panic.
    ///     assert!(s.send(b"x").await.is_err());
    /// });
    /// ```
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.send_shared(buf).await
    }

    /// Receives a datagram from the connected peer (the rest of a longer datagram is dropped).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let a = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     let b = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     b.connect(a.local_addr().unwrap()).await.unwrap();
    ///     a.send_to(b"abc", b.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0u8; 2];
    ///     assert_eq!(b.recv(&mut buf).await.unwrap(), 2); // truncated
    /// });
    /// ```
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.recv_shared(buf).await
    }

    /// Sends a datagram to `target` (its first resolved address).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     let to = s.local_addr().unwrap();
    ///     assert_eq!(s.send_to(b"self", to).await.unwrap(), 4);
    /// });
    /// ```
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let to_std = resolve_one(&target).await?;
        let to = SockAddr::from(to_std);
        self.io.send_to_shared(buf, &to).await.map_err(|e| addr_error("send_to", to_std, e))
    }

    /// Receives a datagram and its sender's address.
    ///
    /// # Cancel safety
    /// Cancel safe: a dropped future received nothing.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.send_to(b"me", s.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0u8; 8];
    ///     let (n, from) = s.recv_from(&mut buf).await.unwrap();
    ///     assert_eq!((n, from), (2, s.local_addr().unwrap()));
    /// });
    /// ```
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.io.recv_from_shared(buf).await?;
        Ok((n, inet_addr(Ok(from))?))
    }

    /// Receives a datagram's first bytes and its sender without removing it from the queue.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.send_to(b"peek", s.local_addr().unwrap()).await.unwrap();
    ///     let mut buf = [0u8; 8];
    ///     assert_eq!(s.peek_from(&mut buf).await.unwrap().0, 4);
    ///     assert_eq!(s.recv_from(&mut buf).await.unwrap().0, 4);
    /// });
    /// ```
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.io.peek_from_shared(buf).await?;
        Ok((n, inet_addr(Ok(from))?))
    }

    /// Sends the initialized bytes of an owned buffer to the connected peer.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let a = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     a.connect(a.local_addr().unwrap()).await.unwrap();
    ///     let (res, buf) = a.send_owned(vec![1u8, 2]).await;
    ///     assert_eq!((res.unwrap(), buf.len()), (2, 2));
    /// });
    /// ```
    pub async fn send_owned<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.io.send_owned_shared(buf).await
    }

    /// Receives a datagram from the connected peer into an owned buffer (it then holds exactly
    /// the datagram, truncated to `bytes_total()`).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let a = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     a.connect(a.local_addr().unwrap()).await.unwrap();
    ///     a.send(b"own").await.unwrap();
    ///     let (res, buf) = a.recv_owned(Vec::with_capacity(16)).await;
    ///     assert_eq!((res.unwrap(), &buf[..]), (3, &b"own"[..]));
    /// });
    /// ```
    pub async fn recv_owned<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        self.io.recv_owned_shared(buf).await
    }

    /// Sends an owned buffer's initialized bytes to `target` (its first resolved address). A
    /// resolution error gives the buffer back with the error.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     let (res, buf) = s.send_to_owned(b"ping".to_vec(), s.local_addr().unwrap()).await;
    ///     assert_eq!(res.unwrap(), 4);
    ///     let (res, buf) = s.recv_from_owned(buf).await;
    ///     let (n, from) = res.unwrap();
    ///     assert_eq!((n, from, &buf[..]), (4, s.local_addr().unwrap(), &b"ping"[..]));
    /// });
    /// ```
    pub async fn send_to_owned<B: IoBuf>(&self, buf: B, target: impl ToSocketAddrs) -> BufResult<usize, B> {
        match resolve_one(&target).await {
            Ok(to_std) => {
                let (res, buf) = self.io.send_to_owned_shared(buf, &SockAddr::from(to_std)).await;
                (res.map_err(|e| addr_error("send_to", to_std, e)), buf)
            }
            Err(e) => (Err(e), buf),
        }
    }

    /// Receives a datagram into an owned buffer, with its sender's address.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.send_to(b"x", s.local_addr().unwrap()).await.unwrap();
    ///     let (res, buf) = s.recv_from_owned(vec![0u8; 8]).await;
    ///     assert_eq!((res.unwrap().0, buf.len()), (1, 1));
    /// });
    /// ```
    pub async fn recv_from_owned<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (res, buf) = self.io.recv_from_owned_shared(buf).await;
        (res.and_then(|(n, a)| Ok((n, inet_addr(Ok(a))?))), buf)
    }

    /// Enables sending to broadcast addresses (`SO_BROADCAST`).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.set_broadcast(true).unwrap();
    ///     assert!(s.broadcast().unwrap());
    /// });
    /// ```
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.socket().set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert!(!s.broadcast().unwrap());
    /// });
    /// ```
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.socket().broadcast()
    }

    /// Sets the IP time-to-live of outgoing datagrams.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.set_ttl(3).unwrap();
    ///     assert_eq!(s.ttl().unwrap(), 3);
    /// });
    /// ```
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        super::tcp::set_ttl(self.io.socket(), ttl)
    }

    /// The IP time-to-live.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert!(s.ttl().unwrap() > 0);
    /// });
    /// ```
    pub fn ttl(&self) -> io::Result<u32> {
        super::tcp::ttl(self.io.socket())
    }

    /// Joins the IPv4 multicast group `multiaddr` on the interface whose address is `interface`
    /// (`Ipv4Addr::UNSPECIFIED`: the one the kernel routes the group to), as tokio's and std's
    /// `join_multicast_v4` do. The socket then receives the group's datagrams sent to its port.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    ///
    /// spindle::block_on(async {
    ///     let group = Ipv4Addr::new(239, 255, 0, 42);
    ///     let rx = spindle::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
    ///     rx.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
    ///     // Send through the loopback interface, and deliver to members on this host.
    ///     let tx = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     tx.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
    ///     tx.set_multicast_loop_v4(true).unwrap();
    ///     tx.send_to(b"to all", (group, rx.local_addr().unwrap().port())).await.unwrap();
    ///     let mut buf = [0u8; 16];
    ///     let (n, _) = rx.recv_from(&mut buf).await.unwrap();
    ///     assert_eq!(&buf[..n], b"to all");
    ///     rx.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
    ///
    ///     // A unicast address is no group: a clear error.
    ///     let err = rx.join_multicast_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED).unwrap_err();
    ///     assert!(err.to_string().contains("join_multicast_v4 127.0.0.1"), "{err}");
    /// });
    /// ```
    pub fn join_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io
            .socket()
            .join_multicast_v4(&multiaddr, &interface)
            .map_err(|e| option_error(format_args!("join_multicast_v4 {multiaddr} on {interface}"), e))
    }

    /// Leaves an IPv4 multicast group joined with [`join_multicast_v4`](Self::join_multicast_v4).
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    ///
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("0.0.0.0:0").await.unwrap();
    ///     let group = Ipv4Addr::new(239, 255, 0, 43);
    ///     s.join_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
    ///     s.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).unwrap();
    ///     // Not a member any more.
    ///     assert!(s.leave_multicast_v4(group, Ipv4Addr::LOCALHOST).is_err());
    /// });
    /// ```
    pub fn leave_multicast_v4(&self, multiaddr: Ipv4Addr, interface: Ipv4Addr) -> io::Result<()> {
        self.io
            .socket()
            .leave_multicast_v4(&multiaddr, &interface)
            .map_err(|e| option_error(format_args!("leave_multicast_v4 {multiaddr} on {interface}"), e))
    }

    /// Joins the IPv6 multicast group `multiaddr` on the interface with index `interface` (0:
    /// the kernel's choice).
    ///
    /// ```
    /// use std::net::Ipv6Addr;
    ///
    /// spindle::block_on(async {
    ///     // (Skipped where the host has no IPv6.)
    ///     let Ok(s) = spindle::net::UdpSocket::bind("[::]:0").await else { return };
    ///     let group: Ipv6Addr = "ff02::1:2a".parse().unwrap();
    ///     s.join_multicast_v6(&group, 1).unwrap(); // interface 1: loopback on Linux
    ///     s.leave_multicast_v6(&group, 1).unwrap();
    /// });
    /// ```
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io
            .socket()
            .join_multicast_v6(multiaddr, interface)
            .map_err(|e| option_error(format_args!("join_multicast_v6 {multiaddr} on interface {interface}"), e))
    }

    /// Leaves an IPv6 multicast group joined with [`join_multicast_v6`](Self::join_multicast_v6).
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io
            .socket()
            .leave_multicast_v6(multiaddr, interface)
            .map_err(|e| option_error(format_args!("leave_multicast_v6 {multiaddr} on interface {interface}"), e))
    }

    /// Whether this socket's IPv4 multicast datagrams are also delivered to members on this host
    /// (`IP_MULTICAST_LOOP`; on by default).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     s.set_multicast_loop_v4(false).unwrap();
    ///     assert!(!s.multicast_loop_v4().unwrap());
    /// });
    /// ```
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.io
            .socket()
            .set_multicast_loop_v4(on)
            .map_err(|e| option_error(format_args!("set_multicast_loop_v4 {on}"), e))
    }

    /// See [`set_multicast_loop_v4`](Self::set_multicast_loop_v4).
    pub fn multicast_loop_v4(&self) -> io::Result<bool> {
        self.io.socket().multicast_loop_v4()
    }

    /// The time-to-live of this socket's IPv4 multicast datagrams (`IP_MULTICAST_TTL`; 1 by
    /// default: they stay on the local network).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert_eq!(s.multicast_ttl_v4().unwrap(), 1);
    ///     s.set_multicast_ttl_v4(4).unwrap();
    ///     assert_eq!(s.multicast_ttl_v4().unwrap(), 4);
    /// });
    /// ```
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.io
            .socket()
            .set_multicast_ttl_v4(ttl)
            .map_err(|e| option_error(format_args!("set_multicast_ttl_v4 {ttl}"), e))
    }

    /// See [`set_multicast_ttl_v4`](Self::set_multicast_ttl_v4).
    pub fn multicast_ttl_v4(&self) -> io::Result<u32> {
        self.io.socket().multicast_ttl_v4()
    }

    /// Whether this socket's IPv6 multicast datagrams are also delivered to members on this host
    /// (`IPV6_MULTICAST_LOOP`; on by default).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let Ok(s) = spindle::net::UdpSocket::bind("[::1]:0").await else { return }; // no IPv6
    ///     s.set_multicast_loop_v6(false).unwrap();
    ///     assert!(!s.multicast_loop_v6().unwrap());
    /// });
    /// ```
    pub fn set_multicast_loop_v6(&self, on: bool) -> io::Result<()> {
        self.io
            .socket()
            .set_multicast_loop_v6(on)
            .map_err(|e| option_error(format_args!("set_multicast_loop_v6 {on}"), e))
    }

    /// See [`set_multicast_loop_v6`](Self::set_multicast_loop_v6).
    pub fn multicast_loop_v6(&self) -> io::Result<bool> {
        self.io.socket().multicast_loop_v6()
    }

    /// The interface this socket sends IPv4 multicast datagrams through, by its address
    /// (`IP_MULTICAST_IF`; unspecified by default: the route to the group decides). Not in
    /// tokio's API (socket2's name); see the example of
    /// [`join_multicast_v4`](Self::join_multicast_v4).
    pub fn set_multicast_if_v4(&self, interface: Ipv4Addr) -> io::Result<()> {
        self.io
            .socket()
            .set_multicast_if_v4(&interface)
            .map_err(|e| option_error(format_args!("set_multicast_if_v4 {interface}"), e))
    }

    /// See [`set_multicast_if_v4`](Self::set_multicast_if_v4).
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    ///
    /// spindle::block_on(async {
    ///     let s = spindle::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ///     assert_eq!(s.multicast_if_v4().unwrap(), Ipv4Addr::UNSPECIFIED);
    ///     s.set_multicast_if_v4(Ipv4Addr::LOCALHOST).unwrap();
    ///     assert_eq!(s.multicast_if_v4().unwrap(), Ipv4Addr::LOCALHOST);
    /// });
    /// ```
    pub fn multicast_if_v4(&self) -> io::Result<Ipv4Addr> {
        self.io.socket().multicast_if_v4()
    }

    /// The interface (by index; 0: the route decides) this socket sends IPv6 multicast
    /// datagrams through (`IPV6_MULTICAST_IF`). Not in tokio's API (socket2's name).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let Ok(s) = spindle::net::UdpSocket::bind("[::1]:0").await else { return }; // no IPv6
    ///     s.set_multicast_if_v6(1).unwrap();
    ///     assert_eq!(s.multicast_if_v6().unwrap(), 1);
    /// });
    /// ```
    pub fn set_multicast_if_v6(&self, interface: u32) -> io::Result<()> {
        self.io
            .socket()
            .set_multicast_if_v6(interface)
            .map_err(|e| option_error(format_args!("set_multicast_if_v6 {interface}"), e))
    }

    /// See [`set_multicast_if_v6`](Self::set_multicast_if_v6).
    pub fn multicast_if_v6(&self) -> io::Result<u32> {
        self.io.socket().multicast_if_v6()
    }
}

/// A socket option's error with what was asked (its kind is kept).
fn option_error(what: fmt::Arguments<'_>, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.io.fd()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.socket().as_fd()
    }
}
