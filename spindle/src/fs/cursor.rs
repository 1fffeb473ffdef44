//! Stream-style I/O on a [`File`]: `futures_io`'s `AsyncRead`, `AsyncWrite` and `AsyncSeek`
//! (and tokio's, under `tokio-io`), at the file's own position, as `std::fs::File`'s
//! `Read`/`Write`/`Seek` and tokio's `File` do. A tokio user's `read_to_end`, `write_all`,
//! `seek`, `BufReader` and `io::copy` on a file compile and behave the same.
//!
//! # Contract
//!
//! - One operation at a time runs for the traits, on an owned buffer of the `File`'s (at most
//!   [`MAX_CHUNK`] bytes): an io_uring read or write at the current position (offset `-1`,
//!   which the kernel moves as `read(2)`/`write(2)` do), or `read(2)`/`write(2)` on the blocking
//!   pool on epoll. The caller's slice is never handed to the kernel, so dropping a read or write
//!   future at any point is safe.
//! - Reads copy out of that buffer. If a read finished for a longer slice than the caller polls
//!   with next, the rest is kept for the following reads; a write or seek first gives those bytes
//!   back (moves the position back over them), so the position always is what the caller has
//!   seen.
//! - Writes follow tokio's contract: `poll_write` copies the bytes, starts the write and reports
//!   them written; the write's own error comes from the next call (`poll_write`, `poll_read`,
//!   `poll_flush`, a seek). `flush` (or `close`) waits for the write in flight, so awaiting it is
//!   how to learn that everything landed. A `File` dropped with a write in flight lets it finish,
//!   and its error is lost (as with tokio; std's writes are synchronous).
//! - Positional methods (`read_at_owned`, ...) neither use nor move this position.

use std::future::Future;
use std::io::{self, Read, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::File;
use crate::driver::uring::op;
use crate::io::{blocking, IoBuf};

/// The largest buffer one trait operation uses (a larger slice is read or written in parts).
pub(crate) const MAX_CHUNK: usize = 1 << 20;

type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// What an operation of the traits gives back.
enum Done {
    Read(io::Result<usize>, Vec<u8>),
    Write(io::Result<()>, Vec<u8>),
}

/// The traits' state in a [`File`] (see the module contract). Only ever reached through
/// `&mut File`, behind a `Mutex` only so that `File` stays `Sync` (`Mutex::get_mut` takes no
/// lock).
#[derive(Default)]
pub(crate) struct Cursor {
    running: Option<Running>,
    /// Bytes read past what the caller took: `ahead[taken..]`.
    ahead: Vec<u8>,
    taken: usize,
    /// A buffer to reuse.
    spare: Vec<u8>,
    /// tokio's `start_seek`, waiting for `poll_complete`.
    #[cfg(feature = "tokio-io")]
    seek: Option<SeekFrom>,
}

impl File {
    fn cursor(&mut self) -> &mut Cursor {
        self.cursor.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a read of up to `len` bytes at the file position.
    fn start_read(&mut self, len: usize) -> Running {
        let mut buf = std::mem::take(&mut self.cursor().spare);
        buf.clear();
        buf.reserve(len.min(MAX_CHUNK));
        let file = self.std.clone();
        let error = self.error_context();
        Box::pin(async move {
            let (res, buf) = match crate::driver::uring_reactor() {
                Some(r) => {
                    let fd = file.as_raw_fd();
                    let (res, kept) = op::read(&r, fd, op::KeepAlive::new(buf, file)).await;
                    (res, kept.buf)
                }
                None => {
                    blocking::run_buf("read", buf, move |b: &mut Vec<u8>| {
                        let cap = b.capacity();
                        b.resize(cap, 0);
                        let r = retry(|| (&*file).read(b));
                        b.truncate(*r.as_ref().unwrap_or(&0));
                        r
                    })
                    .await
                }
            };
            Done::Read(res.map_err(|e| error("read", e)), buf)
        })
    }

    /// Starts writing all of `buf` at the file position.
    fn start_write(&mut self, buf: Vec<u8>) -> Running {
        let file = self.std.clone();
        let error = self.error_context();
        Box::pin(async move {
            let (res, buf) = match crate::driver::uring_reactor() {
                Some(r) => {
                    let fd = file.as_raw_fd();
                    let (total, mut written, mut buf, mut res) = (buf.len(), 0, buf, Ok(()));
                    while written < total {
                        let kept = op::KeepAlive::new(buf.slice(written..total), file.clone());
                        let (r2, kept) = op::write(&r, fd, kept).await;
                        buf = kept.buf.into_inner();
                        match r2 {
                            Ok(0) => {
                                res = Err(write_zero(written, total));
                                break;
                            }
                            Ok(n) => written += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                res = Err(e);
                                break;
                            }
                        }
                    }
                    (res, buf)
                }
                None => {
                    blocking::run_buf("write", buf, move |b: &mut Vec<u8>| {
                        let total = b.len();
                        let mut written = 0;
                        while written < total {
                            match retry(|| (&*file).write(&b[written..]))? {
                                0 => return Err(write_zero(written, total)),
                                n => written += n,
                            }
                        }
                        Ok(())
                    })
                    .await
                }
            };
            Done::Write(res.map_err(|e| error("write", e)), buf)
        })
    }
}

fn write_zero(written: usize, total: usize) -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, format!("the file accepted no more after {written} of {total} bytes"))
}

fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl File {
    /// Waits for the running operation (see the module contract): a read's bytes become the
    /// read-ahead, a write's failure is returned.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let c = self.cursor();
        let Some(running) = c.running.as_mut() else { return Poll::Ready(Ok(())) };
        let done = ready!(running.as_mut().poll(cx));
        c.running = None;
        match done {
            Done::Read(Ok(_), buf) => {
                // A read starts only with nothing left ahead.
                c.spare = std::mem::replace(&mut c.ahead, buf);
                c.taken = 0;
                Poll::Ready(Ok(()))
            }
            Done::Read(Err(e), buf) | Done::Write(Err(e), buf) => {
                c.spare = buf;
                Poll::Ready(Err(e))
            }
            Done::Write(Ok(()), buf) => {
                c.spare = buf;
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Moves the file position (`lseek`, which does not block), first giving back the bytes read
    /// ahead of the caller.
    fn seek_now(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let c = self.cursor();
        let unread = (c.ahead.len() - c.taken) as i64;
        let (offset, whence) = match pos {
            SeekFrom::Start(n) => (
                i64::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?,
                libc::SEEK_SET,
            ),
            SeekFrom::End(n) => (n, libc::SEEK_END),
            SeekFrom::Current(n) => (
                n.checked_sub(unread).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?,
                libc::SEEK_CUR,
            ),
        };
        // SAFETY: `lseek` on the fd this `File` owns; it only moves the position.
        let r = unsafe { libc::lseek(self.std.as_raw_fd(), offset, whence) };
        if r < 0 {
            return Err(self.error("seek", io::Error::last_os_error()));
        }
        let c = self.cursor();
        c.ahead.clear();
        c.taken = 0;
        Ok(r as u64)
    }

    fn poll_read_cursor(&mut self, cx: &mut Context<'_>, out: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let c = self.cursor();
            if c.taken < c.ahead.len() {
                let n = out.len().min(c.ahead.len() - c.taken);
                out[..n].copy_from_slice(&c.ahead[c.taken..c.taken + n]);
                c.taken += n;
                return Poll::Ready(Ok(n));
            }
            if let Some(running) = c.running.as_mut() {
                let done = ready!(running.as_mut().poll(cx));
                c.running = None;
                match done {
                    Done::Read(Ok(0), buf) => {
                        // End of file (or an empty read): reported once, the next read tries again.
                        c.spare = buf;
                        return Poll::Ready(Ok(0));
                    }
                    Done::Read(Ok(_), buf) => {
                        c.spare = std::mem::replace(&mut c.ahead, buf);
                        c.taken = 0;
                    }
                    Done::Read(Err(e), buf) | Done::Write(Err(e), buf) => {
                        c.spare = buf;
                        return Poll::Ready(Err(e));
                    }
                    Done::Write(Ok(()), buf) => c.spare = buf,
                }
                continue;
            }
            if out.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let running = self.start_read(out.len());
            self.cursor().running = Some(running);
        }
    }

    fn poll_write_cursor(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_settle(cx))?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // The bytes read ahead are not the caller's yet: the write goes where the caller is.
        if self.cursor().taken < self.cursor().ahead.len() {
            self.seek_now(SeekFrom::Current(0))?;
        }
        let n = data.len().min(MAX_CHUNK);
        let mut buf = std::mem::take(&mut self.cursor().spare);
        buf.clear();
        buf.extend_from_slice(&data[..n]);
        let mut running = self.start_write(buf);
        // Started here (an io_uring op is submitted, a pool job queued, by its first poll); it
        // runs on without being polled, and the next call collects it.
        match running.as_mut().poll(cx) {
            Poll::Ready(Done::Write(res, buf)) => {
                self.cursor().spare = buf;
                res?;
            }
            Poll::Ready(Done::Read(..)) => unreachable!("a write operation finished as a read"),
            Poll::Pending => self.cursor().running = Some(running),
        }
        Poll::Ready(Ok(n))
    }

    fn poll_seek_cursor(&mut self, cx: &mut Context<'_>, pos: SeekFrom) -> Poll<io::Result<u64>> {
        ready!(self.poll_settle(cx))?;
        Poll::Ready(self.seek_now(pos))
    }
}

/// Reads at the file position (see the [`fs` module docs](crate::fs)).
///
/// ```
/// use futures::AsyncReadExt;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-cursor-read-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, "hello world").await.unwrap();
///     let mut f = spindle::fs::File::open(&path).await.unwrap();
///     let mut word = [0u8; 5];
///     f.read_exact(&mut word).await.unwrap();
///     let mut rest = String::new();
///     f.read_to_string(&mut rest).await.unwrap();
///     assert_eq!((&word[..], rest.as_str()), (&b"hello"[..], " world"));
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
impl futures_io::AsyncRead for File {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_read_cursor(cx, buf)
    }
}

/// Writes at the file position; `flush` waits for the last write (see the [`fs` module
/// docs](crate::fs)).
///
/// ```
/// use futures::AsyncWriteExt;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-cursor-write-{}", std::process::id()));
/// spindle::block_on(async {
///     let mut f = spindle::fs::File::create(&path).await.unwrap();
///     f.write_all(b"hello ").await.unwrap();
///     f.write_all(b"world").await.unwrap();
///     f.flush().await.unwrap(); // the writes' errors, if any, come here
///     assert_eq!(spindle::fs::read(&path).await.unwrap(), b"hello world");
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
impl futures_io::AsyncWrite for File {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_cursor(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_settle(cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_settle(cx)
    }
}

/// Moves the file position (see the [`fs` module docs](crate::fs)).
///
/// ```
/// use futures::{AsyncReadExt, AsyncSeekExt};
/// use std::io::SeekFrom;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-cursor-seek-{}", std::process::id()));
/// spindle::block_on(async {
///     spindle::fs::write(&path, "0123456789").await.unwrap();
///     let mut f = spindle::fs::File::open(&path).await.unwrap();
///     assert_eq!(f.seek(SeekFrom::End(-3)).await.unwrap(), 7);
///     let mut tail = String::new();
///     f.read_to_string(&mut tail).await.unwrap();
///     assert_eq!(tail, "789");
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
impl futures_io::AsyncSeek for File {
    fn poll_seek(self: Pin<&mut Self>, cx: &mut Context<'_>, pos: SeekFrom) -> Poll<io::Result<u64>> {
        self.get_mut().poll_seek_cursor(cx, pos)
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncRead for File {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = ready!(self.get_mut().poll_read_cursor(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for File {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_cursor(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_settle(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_settle(cx)
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let c = self.get_mut().cursor();
        if c.seek.is_some() {
            return Err(io::Error::other("a seek is already started: call poll_complete first"));
        }
        c.seek = Some(position);
        Ok(())
    }
    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let f = self.get_mut();
        ready!(f.poll_settle(cx))?;
        let pos = f.cursor().seek.take().unwrap_or(SeekFrom::Current(0));
        Poll::Ready(f.seek_now(pos))
    }
}
