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
