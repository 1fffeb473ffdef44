//! [`AsyncReadOwned`] and [`AsyncWriteOwned`].

use std::future::Future;
use std::io;

use super::{BufResult, IoBuf, IoBufMut};

/// Reading into owned buffers: the buffer goes into the operation and comes back with the result.
///
/// Implemented by spindle's streams (`TcpStream`, `UnixStream`, their read halves). The futures
/// are `Send` (see the [module docs](crate::io) for why).
///
/// ```
/// use spindle::io::{AsyncReadOwned, BufResult, IoBufMut};
///
/// /// A stream of `n` zero bytes.
/// struct Zeros(usize);
///
/// impl AsyncReadOwned for Zeros {
///     async fn read_owned<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
///         let n = buf.bytes_total().min(self.0);
///         // SAFETY: `n <= bytes_total()` bytes are written before being marked initialized.
///         unsafe {
///             buf.stable_mut_ptr().write_bytes(0, n);
///             buf.set_init(n);
///         }
///         self.0 -= n;
///         (Ok(n), buf)
///     }
/// }
///
/// spindle::block_on(async {
///     let mut z = Zeros(10);
///     let (res, buf) = z.read_owned(Vec::with_capacity(4)).await;
///     assert_eq!((res.unwrap(), buf.len()), (4, 4));
///     let (res, buf) = z.read_exact_owned(Vec::with_capacity(8)).await;
///     assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
///     assert_eq!(buf.len(), 6); // what was read before the end is kept
/// });
/// ```
pub trait AsyncReadOwned: Send {
    /// Reads at most `buf.bytes_total()` bytes into the start of `buf` and gives it back with the
    /// count; the buffer then holds exactly the bytes read (a `Vec`'s length becomes the count).
    /// `Ok(0)` means end of stream (or a buffer with no capacity).
    ///
    /// To append to a buffer instead, pass `buf.slice(buf.len()..)` and take it back with
    /// [`Slice::into_inner`](crate::io::Slice::into_inner).
    ///
    /// # Cancel safety
    /// Dropping the future may lose data the operation had already taken from the stream; the
    /// buffer is never freed while the kernel may write into it. Spindle's streams lose nothing:
    /// bytes a dropped read took are returned by the stream's next read.
    ///
    /// ```
    /// # use spindle::io::{AsyncReadOwned, BufResult, IoBufMut};
    /// # struct One;
    /// # impl AsyncReadOwned for One {
    /// #     async fn read_owned<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
    /// #         if buf.bytes_total() == 0 { return (Ok(0), buf); }
    /// #         // SAFETY: one byte written, then marked.
    /// #         unsafe { buf.stable_mut_ptr().write(1); buf.set_init(1); }
    /// #         (Ok(1), buf)
    /// #     }
    /// # }
    /// spindle::block_on(async {
    ///     let (res, buf) = One.read_owned(vec![0u8; 16]).await;
    ///     assert_eq!(res.unwrap(), 1);
    ///     assert_eq!(buf, [1]);
    /// });
    /// ```
    fn read_owned<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> + Send;

    /// Reads until `buf` is full (`buf.bytes_total()` bytes), retrying short reads and
    /// `Interrupted`. At end of stream before that, fails with `UnexpectedEof`; either way the
    /// buffer comes back holding every byte read.
    ///
    /// # Cancel safety
    /// Not cancel safe: dropping the future loses the bytes read so far.
    ///
    /// ```
    /// # use spindle::io::{AsyncReadOwned, BufResult, IoBufMut};
    /// # struct One;
    /// # impl AsyncReadOwned for One {
    /// #     async fn read_owned<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
    /// #         if buf.bytes_total() == 0 { return (Ok(0), buf); }
    /// #         // SAFETY: one byte written, then marked.
    /// #         unsafe { buf.stable_mut_ptr().write(1); buf.set_init(1); }
    /// #         (Ok(1), buf)
    /// #     }
    /// # }
    /// spindle::block_on(async {
    ///     // `One` yields a single byte per read; read_exact_owned loops until the buffer is full.
    ///     let (res, buf) = One.read_exact_owned(Vec::with_capacity(3)).await;
    ///     res.unwrap();
    ///     assert_eq!(buf.len(), buf.capacity());
    /// });
    /// ```
    fn read_exact_owned<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<(), B>> + Send {
        async move {
            let total = buf.bytes_total();
            let mut filled = 0;
            let mut buf = buf;
            while filled < total {
                let (res, slice) = self.read_owned(buf.slice(filled..)).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("read_exact_owned: end of stream after {filled} of {total} bytes"),
                        );
                        return (Err(e), buf);
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            (Ok(()), buf)
        }
    }
}

/// Writing from owned buffers: the buffer goes into the operation and comes back with the result.
///
/// Implemented by spindle's streams (`TcpStream`, `UnixStream`, their write halves). The futures
/// are `Send` (see the [module docs](crate::io)).
///
/// `flush` and `shutdown` have the names and meaning of tokio's `AsyncWriteExt` methods; if both
/// traits are imported in one scope, call them by path (`AsyncWriteOwned::shutdown(&mut s)`).
///
/// ```
/// use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
///
/// /// Accepts at most 2 bytes per write.
/// struct Slow(Vec<u8>);
///
/// impl AsyncWriteOwned for Slow {
///     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
///         let n = buf.bytes_init().min(2);
///         // SAFETY: `IoBuf` promises `bytes_init()` initialized bytes at `stable_ptr()`.
///         self.0.extend_from_slice(unsafe { std::slice::from_raw_parts(buf.stable_ptr(), n) });
///         (Ok(n), buf)
///     }
///     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
///     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
/// }
///
/// spindle::block_on(async {
///     let mut w = Slow(Vec::new());
///     let (res, _buf) = w.write_all_owned("hello world").await;
///     res.unwrap();
///     assert_eq!(w.0, b"hello world");
///     let (res, _bufs) = w.writev_owned(vec![b"ab".to_vec(), b"cd".to_vec()]).await;
///     assert_eq!(res.unwrap(), 2); // the default writev writes one buffer
/// });
/// ```
pub trait AsyncWriteOwned: Send {
    /// Writes some of the initialized bytes of `buf` (`buf.bytes_init()` of them at most) and gives
    /// it back with the count. `Ok(0)` for a non-empty buffer means the stream accepts no more.
    ///
    /// # Cancel safety
    /// Dropping the future may or may not have written data; the buffer is never freed while the
    /// kernel may still read it.
    ///
    /// ```
    /// # use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
    /// # struct Sink;
    /// # impl AsyncWriteOwned for Sink {
    /// #     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> { (Ok(buf.bytes_init()), buf) }
    /// #     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// spindle::block_on(async {
    ///     let (res, buf) = Sink.write_owned(vec![7u8; 5]).await;
    ///     assert_eq!((res.unwrap(), buf.len()), (5, 5));
    /// });
    /// ```
    fn write_owned<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> + Send;

    /// Writes every initialized byte of `buf`, retrying short writes and `Interrupted`. A write of
    /// zero bytes fails with `WriteZero`. The buffer comes back either way.
    ///
    /// # Cancel safety
    /// Not cancel safe: an unknown prefix may have been written.
    ///
    /// ```
    /// # use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
    /// # struct Sink;
    /// # impl AsyncWriteOwned for Sink {
    /// #     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> { (Ok(buf.bytes_init().min(1)), buf) }
    /// #     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// spindle::block_on(async {
    ///     let (res, buf) = Sink.write_all_owned(b"abc".to_vec()).await;
    ///     res.unwrap();
    ///     assert_eq!(buf, b"abc");
    /// });
    /// ```
    fn write_all_owned<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<(), B>> + Send {
        async move {
            let total = buf.bytes_init();
            let mut written = 0;
            let mut buf = buf;
            while written < total {
                let (res, slice) = self.write_owned(buf.slice(written..total)).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        let e = io::Error::new(
                            io::ErrorKind::WriteZero,
                            format!("write_all_owned: the stream accepted no more after {written} of {total} bytes"),
                        );
                        return (Err(e), buf);
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (Err(e), buf),
                }
            }
            (Ok(()), buf)
        }
    }

    /// Writes from several buffers in order (one gathering write where the stream supports it) and
    /// gives them back with the total count. The default writes the first non-empty buffer only.
    ///
    /// ```
    /// # use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
    /// # struct Sink;
    /// # impl AsyncWriteOwned for Sink {
    /// #     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> { (Ok(buf.bytes_init()), buf) }
    /// #     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// spindle::block_on(async {
    ///     let (res, bufs) = Sink.writev_owned(vec![Vec::new(), b"xy".to_vec()]).await;
    ///     assert_eq!((res.unwrap(), bufs.len()), (2, 2));
    /// });
    /// ```
    fn writev_owned<B: IoBuf>(&mut self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> + Send {
        async move {
            let mut bufs = bufs;
            let Some(i) = bufs.iter().position(|b| b.bytes_init() > 0) else {
                return (Ok(0), bufs);
            };
            let b = bufs.remove(i);
            let (res, b) = self.write_owned(b).await;
            bufs.insert(i, b);
            (res, bufs)
        }
    }

    /// Sends anything buffered inside the writer on to the stream (a no-op for sockets).
    ///
    /// ```
    /// # use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
    /// # struct Sink;
    /// # impl AsyncWriteOwned for Sink {
    /// #     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> { (Ok(buf.bytes_init()), buf) }
    /// #     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// spindle::block_on(async { AsyncWriteOwned::flush(&mut Sink).await.unwrap() });
    /// ```
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;

    /// Flushes, then shuts the write direction down (for a socket, the peer reads end of stream).
    /// Writing afterwards fails (`BrokenPipe` on sockets).
    ///
    /// ```
    /// # use spindle::io::{AsyncWriteOwned, BufResult, IoBuf};
    /// # struct Sink;
    /// # impl AsyncWriteOwned for Sink {
    /// #     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> { (Ok(buf.bytes_init()), buf) }
    /// #     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
    /// #     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
    /// # }
    /// spindle::block_on(async { AsyncWriteOwned::shutdown(&mut Sink).await.unwrap() });
    /// ```
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

impl<T: AsyncReadOwned + ?Sized> AsyncReadOwned for &mut T {
    fn read_owned<B: IoBufMut>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> + Send {
        (**self).read_owned(buf)
    }
}

impl<T: AsyncWriteOwned + ?Sized> AsyncWriteOwned for &mut T {
    fn write_owned<B: IoBuf>(&mut self, buf: B) -> impl Future<Output = BufResult<usize, B>> + Send {
        (**self).write_owned(buf)
    }
    fn writev_owned<B: IoBuf>(&mut self, bufs: Vec<B>) -> impl Future<Output = BufResult<usize, Vec<B>>> + Send {
        (**self).writev_owned(bufs)
    }
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        (**self).flush()
    }
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        (**self).shutdown()
    }
}
