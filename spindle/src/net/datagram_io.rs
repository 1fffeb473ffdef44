//! The readiness methods shared by the datagram socket types (UDP and Unix), as tokio has them.

/// `readable`/`writable`/`try_recv`/`try_send` of a datagram socket type whose `PollSocket` is its
/// `io` field, expanded inside its `impl` block. `$setup` starts each doc example: it makes `a`
/// and `b`, two sockets of the type connected to each other.
macro_rules! datagram_readiness_methods {
    ($setup:literal) => {
        /// Waits until a datagram may be there to receive (or one that a cancelled owned
        /// receive took). Several tasks may wait at once. It can return when a receive would
        /// still block; [`try_recv`](Self::try_recv) then fails with `WouldBlock`, and the next
        /// wait sleeps until a datagram arrives. Cancel-safe.
        ///
        /// ```
        #[doc = $setup]
        /// a.send(b"ping").await.unwrap();
        /// let mut buf = [0u8; 8];
        /// let n = loop {
        ///     b.readable().await.unwrap();
        ///     match b.try_recv(&mut buf) {
        ///         Ok(n) => break n,
        ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
        ///         Err(e) => panic!("{e}"),
        ///     }
        /// };
        /// assert_eq!(&buf[..n], b"ping");
        /// # });
        /// ```
        pub async fn readable(&self) -> std::io::Result<()> {
            self.io.datagram_ready(crate::driver::Direction::Read).await
        }

        /// Waits until a datagram may be sent without blocking (see
        /// [`readable`](Self::readable)).
        ///
        /// ```
        #[doc = $setup]
        /// a.writable().await.unwrap();
        /// assert_eq!(a.try_send(b"now").unwrap(), 3);
        /// # drop(b);
        /// # });
        /// ```
        pub async fn writable(&self) -> std::io::Result<()> {
            self.io.datagram_ready(crate::driver::Direction::Write).await
        }

        /// Waits until the socket is ready for any of `interest` (a datagram to receive, room
        /// to send, or both) and reports what it is ready for. As with
        /// [`readable`](Self::readable), the report can be stale: the `try_` call that follows
        /// may get `WouldBlock`. Cancel-safe.
        ///
        /// ```
        #[doc = $setup]
        /// use spindle::io::Interest;
        /// a.send(b"ping").await.unwrap();
        /// let r = b.ready(Interest::READABLE).await.unwrap();
        /// assert!(r.is_readable());
        /// # });
        /// ```
        pub async fn ready(&self, interest: crate::io::Interest) -> std::io::Result<crate::io::Ready> {
            self.io.ready_for(interest, true).await
        }

        /// Receives a datagram from the connected peer now, without waiting: `WouldBlock` when
        /// none is there (use with [`readable`](Self::readable)). The rest of a longer datagram
        /// is dropped.
        ///
        /// ```
        #[doc = $setup]
        /// let mut buf = [0u8; 8];
        /// assert_eq!(b.try_recv(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        /// # drop(a);
        /// # });
        /// ```
        pub fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.io.try_recv_datagram_now(buf)
        }

        /// Sends a datagram to the connected peer now, without waiting: `WouldBlock` when it
        /// cannot be queued yet (use with [`writable`](Self::writable)).
        ///
        /// ```
        #[doc = $setup]
        /// assert_eq!(a.try_send(b"x").unwrap(), 1);
        /// let mut buf = [0u8; 1];
        /// assert_eq!(b.recv(&mut buf).await.unwrap(), 1);
        /// # });
        /// ```
        pub fn try_send(&self, buf: &[u8]) -> std::io::Result<usize> {
            self.io.try_send_now(buf)
        }
    };
}

pub(crate) use datagram_readiness_methods;
