//! Sockets: TCP ([`TcpListener`], [`TcpStream`], and [`TcpSocket`] to set options before either),
//! UDP ([`UdpSocket`]) and Unix-domain ([`UnixListener`], [`UnixStream`], [`UnixDatagram`]).
//!
//! # Contract
//!
//! - **Built on the driver's readiness** (`crate::driver::Registration`): every socket is
//!   non-blocking and registered (edge-triggered) with the reactor of the worker that created it,
//!   or with the fallback reactor outside a runtime, so the types work on any executor. An
//!   operation tries its system call when the reactor last reported readiness, and on
//!   `WouldBlock` clears that readiness and waits for the next event. The registration is dropped
//!   before the socket is closed (field order in `socket::PollSocket`). Until a direction has
//!   seen its first readiness event, its first operation tries the syscall eagerly (a fresh
//!   socket is usually writable at once), so it does not wait for the reactor's next turn.
//!   On io_uring the owned-buffer operations (`read_owned`, `write_owned`, `writev_owned`,
//!   datagram `send_owned`/`recv_owned`, `send_to_owned`/`recv_from_owned`) are completion ops
//!   (`RECV`, `SEND`, `SENDMSG`, `RECVMSG`) instead: on the current thread's ring
//!   when that thread runs for the socket's runtime (for a socket made outside any runtime: when
//!   it is a multi-thread worker or a per-core core), else on the socket's own ring (another
//!   runtime's ring may not be driven when the socket's runtime needs the op's completion).
//!   On a multi-thread runtime accepted connections are spread over the workers, and the two
//!   ends of a loopback connection made and accepted in the same runtime are served by one
//!   worker (its reactor watches both, or both ends' ops go to its ring): see
//!   `driver::placement`.
//! - **A socket belongs to the runtime it was created in** (or to the fallback reactor, if
//!   created outside any runtime): use it there. Once that runtime is dropped nothing drives its
//!   reactor: operations on such a socket fail with an `io::Error` saying the runtime was shut
//!   down (waiters are woken to see it) instead of waiting forever.
//! - **Naming** (DESIGN.md section 4): slices through `futures_io`/tokio traits and std-named
//!   inherent methods (`send_to(&[u8], addr)`, `recv_from(&mut [u8])`, `peek`); owned buffers
//!   through [`AsyncReadOwned`](crate::io::AsyncReadOwned) / [`AsyncWriteOwned`](crate::io::AsyncWriteOwned)
//!   and `_owned` inherent methods. Slice reads are zero-copy: readiness, then `recv` straight into
//!   the caller's slice. Inherent methods never shadow a tokio/futures trait method with another
//!   meaning (the std-style `shutdown(how)` is `shutdown_std`).
//! - **Waiters**: stream reads and writes take `&mut self` (one waiter per direction, as the
//!   borrow checker guarantees); `&self` methods of listeners and datagram sockets may be awaited by
//!   several tasks at once: each readiness event wakes them all.
//! - **Faults are `io::Error`s with the address or path in the message**, never panics or hangs:
//!   refused or reset connections, invalid or unresolvable addresses, writes after shutdown
//!   (`BrokenPipe`; SIGPIPE is never raised: sends use `MSG_NOSIGNAL`). `accept` under fd
//!   exhaustion returns the error and backs off (5 ms doubling to 1 s) so accept loops never spin.
//! - **Cancellation**: dropping any future is safe and leaks nothing (a half-open `connect` closes
//!   its socket). Slice operations use readiness on both backends (on io_uring through the
//!   driver's multishot poll registrations), so nothing is in flight in the kernel when their
//!   future is dropped. A dropped owned-buffer op on io_uring is cancelled; until its final
//!   completion the driver keeps its buffer and the socket itself (the op holds a reference), so
//!   the fd is neither closed nor reused under the kernel. Data such an op had already received
//!   is not lost: it waits in the socket's stash and the next read returns it first (`net::stash`).
//! - **Runtime-owned buffers**: `recv_pooled` / `recv_stream` on stream sockets give
//!   [`PooledBuf`]s from the worker's buffer pool (a provided-buffer ring the kernel picks from
//!   on io_uring, with multishot receives; a userspace pool on epoll), and `TcpListener::accept`
//!   keeps one multishot accept per listener on io_uring. Their completions go to a per-socket
//!   queue rather than to a future, so dropping any of these futures or streams loses no data and
//!   no connection; those requests name a `dup` of the socket's fd. Details in `net::pooled`.
//! - Name resolution (`"host:port"`) runs on the blocking pool; literal addresses are parsed inline.
//! - Sockets are created non-blocking and close-on-exec in one system call.
//!
//! ```
//! use spindle::io::{AsyncReadOwned, AsyncWriteOwned};
//! use spindle::net::{TcpListener, TcpStream};
//! spindle::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = spindle::spawn(async move {
//!         let (mut s, _) = listener.accept().await.unwrap();
//!         let mut buf = Vec::with_capacity(1024);
//!         loop {
//!             let (res, b) = s.read_owned(buf).await;
//!             if res.unwrap() == 0 {
//!                 break; // end of stream
//!             }
//!             let (res, b) = s.write_all_owned(b).await; // echo it back
//!             res.unwrap();
//!             buf = b;
//!         }
//!     });
//!     let mut c = TcpStream::connect(addr).await.unwrap();
//!     let (res, _) = c.write_all_owned("echo me").await;
//!     res.unwrap();
//!     let (res, buf) = c.read_exact_owned(Vec::with_capacity(7)).await;
//!     res.unwrap();
//!     assert_eq!(buf, b"echo me");
//!     drop(c);
//!     server.await.unwrap();
//! });
//! ```

mod addr;
mod datagram_io;
mod pooled;
pub(crate) mod socket;
mod stash;
mod stream_io;
pub mod tcp;
mod tcp_socket;
pub mod udp;
pub mod unix;

pub use crate::driver::pool::PooledBuf;
#[doc(hidden)]
pub use crate::driver::pool::{BufPool, PoolStats};
pub use addr::{lookup_host, ToSocketAddrs};
pub use pooled::RecvStream;
pub use tcp::{TcpListener, TcpStream};
pub use tcp_socket::TcpSocket;
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixListener, UnixStream};
