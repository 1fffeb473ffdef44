//! The I/O trait implementations shared by stream types and their halves (TCP and Unix).

/// Implements the read-side traits (`AsyncReadOwned`, `futures_io::AsyncRead`, tokio's
/// `AsyncRead` under `tokio-io`, `hyper::rt::Read` under `hyper`) for `$ty`, whose `PollSocket` is reached by `|$s| $io`.
macro_rules! impl_read {
    ($ty:ty, |$s:ident| $io:expr) => {
        impl crate::io::AsyncReadOwned for $ty {
            fn read_owned<B: crate::io::IoBufMut>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = crate::io::BufResult<usize, B>> + Send {
                let $s = &*self;
                $io.recv_owned(buf)
            }
        }

        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut [u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s = &*self;
                $io.poll_recv(cx, buf)
            }

            fn poll_read_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s = &*self;
                $io.poll_recv_vectored(cx, bufs)
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $s = &*self;
                // SAFETY: the receive call only writes initialized bytes into the unfilled part, and
                // `assume_init` below covers exactly the bytes it reported.
                let n = std::task::ready!($io.poll_recv_uninit(cx, unsafe { buf.unfilled_mut() }))?;
                // SAFETY: the kernel initialized `n` bytes at the start of the unfilled part.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                std::task::Poll::Ready(Ok(()))
            }
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Read for $ty {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                mut buf: hyper::rt::ReadBufCursor<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $s = &*self;
                // SAFETY: the receive call only writes initialized bytes into the cursor's unfilled
                // part, and `advance` below covers exactly the bytes it reported.
                let n = std::task::ready!($io.poll_recv_uninit(cx, unsafe { buf.as_mut() }))?;
                // SAFETY: the kernel initialized `n` bytes at the start of the unfilled part.
                unsafe { buf.advance(n) };
                std::task::Poll::Ready(Ok(()))
            }
        }
    };
}

/// Implements the write-side traits for `$ty` (see [`impl_read`]).
macro_rules! impl_write {
    ($ty:ty, |$s:ident| $io:expr) => {
        impl crate::io::AsyncWriteOwned for $ty {
            fn write_owned<B: crate::io::IoBuf>(
                &mut self,
                buf: B,
            ) -> impl std::future::Future<Output = crate::io::BufResult<usize, B>> + Send {
                let $s = &*self;
                $io.send_owned(buf)
            }

            fn writev_owned<B: crate::io::IoBuf>(
                &mut self,
                bufs: Vec<B>,
            ) -> impl std::future::Future<Output = crate::io::BufResult<usize, Vec<B>>> + Send {
                let $s = &*self;
                $io.send_vectored_owned(bufs)
            }

            async fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }

            async fn shutdown(&mut self) -> std::io::Result<()> {
                let $s = &*self;
                $io.socket().shutdown(std::net::Shutdown::Write)
            }
        }

        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s = &*self;
                $io.poll_send(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                let $s = &*self;
                $io.poll_send_vectored(cx, bufs)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn poll_close(
                self: std::pin::Pin<&mut Self>,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                let $s = &*self;
                std::task::Poll::Ready($io.socket().shutdown(std::net::Shutdown::Write))
            }
        }

        #[cfg(feature = "tokio-io")]
        impl tokio::io::AsyncWrite for $ty {
            crate::net::stream_io::poll_write_methods!(|$s| $io);
        }

        #[cfg(feature = "hyper")]
        impl hyper::rt::Write for $ty {
            crate::net::stream_io::poll_write_methods!(|$s| $io);
        }
    };
}

/// The five methods tokio's `AsyncWrite` and hyper's `rt::Write` share (same names, same
/// signatures), written once for both impls in [`impl_write`].
#[cfg(any(feature = "tokio-io", feature = "hyper"))]
macro_rules! poll_write_methods {
    (|$s:ident| $io:expr) => {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let $s = &*self;
            $io.poll_send(cx, buf)
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let $s = &*self;
            $io.poll_send_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let $s = &*self;
            std::task::Poll::Ready($io.socket().shutdown(std::net::Shutdown::Write))
        }
    };
}

#[cfg(any(feature = "tokio-io", feature = "hyper"))]
pub(crate) use poll_write_methods;
pub(crate) use {impl_read, impl_write};

/// The read-side readiness methods (tokio's `readable`/`try_read`) of a stream type or read half
/// whose `PollSocket` is reached by `|$s| $io`, expanded inside its `impl` block. `$setup` starts
/// each doc example: it makes `c`, something to write with (mutable), and `s`, the type itself.
macro_rules! readiness_read_methods {
    ($setup:literal, |$s:ident| $io:expr) => {
        /// Waits until the stream may be readable: data, end of stream or an error to report (or
        /// bytes a cancelled owned read left for the next read). Several tasks may wait at once.
        /// It can return when a read would still block; [`try_read`](Self::try_read) then fails
        /// with `WouldBlock`, and the next wait sleeps until new data arrives. Cancel-safe.
        ///
        /// ```
        #[doc = $setup]
        /// c.write_all(b"hi").await.unwrap();
        /// let mut buf = [0u8; 8];
        /// let n = loop {
        ///     s.readable().await.unwrap();
        ///     match s.try_read(&mut buf) {
        ///         Ok(n) => break n,
        ///         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
        ///         Err(e) => panic!("{e}"),
        ///     }
        /// };
        /// assert_eq!(&buf[..n], b"hi");
        /// # });
        /// ```
        pub async fn readable(&self) -> std::io::Result<()> {
            let $s = self;
            $io.ready(crate::driver::Direction::Read).await
        }

        /// Reads what is there now into `buf`, without waiting: `Ok(0)` at end of stream (or for
        /// an empty `buf`), `WouldBlock` when nothing is there yet (use with
        /// [`readable`](Self::readable)). Takes `&self`, so one task can read while another writes.
        ///
        /// ```
        #[doc = $setup]
        /// let mut buf = [0u8; 8];
        /// assert_eq!(s.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
        /// # drop(c);
        /// # });
        /// ```
        pub fn try_read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
            let $s = self;
            $io.try_recv_now(buf)
        }
    };
}

/// The write-side readiness methods (tokio's `writable`/`try_write`), as
/// [`readiness_read_methods!`]; here `c` is the type itself and `s` its peer.
macro_rules! readiness_write_methods {
    ($setup:literal, |$s:ident| $io:expr) => {
        /// Waits until the stream may be writable: room in its send buffer, or an error to
        /// report. Several tasks may wait at once. It can return when a write would still block;
        /// [`try_write`](Self::try_write) then fails with `WouldBlock`, and the next wait sleeps
        /// until room frees up. Cancel-safe.
        ///
        /// ```
        #[doc = $setup]
        /// c.writable().await.unwrap();
        /// assert_eq!(c.try_write(b"hello").unwrap(), 5);
        /// # drop(s);
        /// # });
        /// ```
        pub async fn writable(&self) -> std::io::Result<()> {
            let $s = self;
            $io.ready(crate::driver::Direction::Write).await
        }

        /// Writes what the socket takes now from `buf`, without waiting: `WouldBlock` when its
        /// send buffer is full (use with [`writable`](Self::writable)).
        ///
        /// ```
        #[doc = $setup]
        /// assert_eq!(c.try_write(b"now").unwrap(), 3);
        /// # drop(s);
        /// # });
        /// ```
        pub fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
            let $s = self;
            $io.try_send_now(buf)
        }
    };
}

/// tokio's `ready(interest)` for a stream type or split half, as [`readiness_read_methods!`].
macro_rules! readiness_ready_method {
    ($setup:literal, |$s:ident| $io:expr) => {
        /// Waits until the stream is ready for any of `interest` (readable, writable or both)
        /// and reports what it is ready for, including whether the peer closed its side
        /// ([`Ready::is_read_closed`](crate::io::Ready::is_read_closed)) or this side can no
        /// longer send. As with the `readable` and `writable` waits, the report can be stale: the
        /// `try_` call that follows may get `WouldBlock`, and the loop goes on. Cancel-safe.
        ///
        /// ```
        #[doc = $setup]
        /// use spindle::io::Interest;
        /// let r = c.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
        /// assert!(r.is_writable() && !r.is_readable()); // nothing sent to `c` yet
        /// # drop(s);
        /// # });
        /// ```
        pub async fn ready(&self, interest: crate::io::Interest) -> std::io::Result<crate::io::Ready> {
            let $s = self;
            $io.ready_for(interest, false).await
        }
    };
}

/// The readiness methods of a stream type itself (its `PollSocket` is its `io` field), expanded
/// inside its `impl` block; `$setup` as for [`readiness_read_methods!`], `c` and `s` both streams.
macro_rules! readiness_methods {
    ($setup:literal) => {
        crate::net::stream_io::readiness_read_methods!($setup, |s| s.io);
        crate::net::stream_io::readiness_write_methods!($setup, |s| s.io);
        crate::net::stream_io::readiness_ready_method!($setup, |s| s.io);
    };
}

/// The readiness methods of a pair of split halves (each reaching the stream through `inner`):
/// `readable`/`try_read` on `$read`, `writable`/`try_write` on `$write`, with one doc setup that
/// makes `c` a write half and `s` a read half.
macro_rules! impl_readiness_halves {
    ($read:ty, $write:ty, $setup:literal) => {
        impl $read {
            crate::net::stream_io::readiness_read_methods!($setup, |s| s.inner.io);
            crate::net::stream_io::readiness_ready_method!($setup, |s| s.inner.io);
        }

        impl $write {
            crate::net::stream_io::readiness_write_methods!($setup, |s| s.inner.io);
            crate::net::stream_io::readiness_ready_method!($setup, |s| s.inner.io);
        }
    };
}

pub(crate) use {
    impl_readiness_halves, readiness_methods, readiness_read_methods, readiness_ready_method, readiness_write_methods,
};
