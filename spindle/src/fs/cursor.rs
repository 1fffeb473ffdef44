//! Stream-style I/O on a [`File`]: `futures_io`'s `AsyncRead`, `AsyncWrite` and `AsyncSeek`
//! (and tokio's, under `tokio-io`), at the file's own position, as `std::fs::File`'s
//! `Read`/`Write`/`Seek` and tokio's `File` do. A tokio user's `read_to_end`, `write_all`,
//! `seek`, `BufReader` and `io::copy` on a file compile and behave the same.
//!
//! # Contract
//!
//! - One operation at a time runs for the traits, on an owned buffer of the `File`'s (at most
//!   [`MAX_CHUNK`] bytes, and for a read never more than the caller's slice): an io_uring read or
//!   write at the current position (offset `-1`, which the kernel moves as `read(2)`/`write(2)`
//!   do), or `read(2)`/`write(2)` on the blocking pool on epoll. The caller's slice is never
//!   handed to the kernel, so dropping a read or write future at any point is safe.
//! - A write is reported only once it landed (all the bytes it took, or its error): unlike
//!   tokio's, which reports a write when it starts and its error at a later call, nothing
//!   reported written can be lost by dropping the `File` or shutting the runtime down. `flush`
//!   has nothing to wait for but an operation a dropped call left running. The price: a
//!   `poll_write` that returned `Pending` has started its write. Polled again with a slice that
//!   starts at the same address with the same bytes (what `write_all`, `BufWriter` and tokio's
//!   `io::copy` do, the last two with more bytes appended), it is that write, reported when it
//!   lands. Given anything else, or never polled again, those bytes land unreported, as a
//!   cancelled write's may: the next call waits for them first.
//! - A read left running by a dropped call is finished by the next call, and what it read is
//!   kept: later reads get those bytes first (a read polled again with a smaller slice does the
//!   same with the rest). A write or seek first gives such bytes back (moves the position back
//!   over them), so the position always is what the caller has seen; on a file that cannot seek
//!   (a FIFO) they stay for the next reads instead. Waiting for the running operation is also
//!   what `sync_all`, `sync_data`, `set_len` and `try_clone` do first (the last two also give
//!   the read-ahead back). Positional writes do not: a stream read may return bytes it read
//!   ahead before a positional write replaced them.
//! - Positional methods (`read_at_owned`, ...) neither use nor move this position.
//! - An io_uring operation is finished by the ring of the runtime that started it: a call made
//!   on another runtime while an abandoned one is still running waits for that runtime to run.

use std::future::Future;
use std::io::{self, Read, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll, Wake, Waker};

use super::file::{retry, write_zero};
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

/// The traits' state in a [`File`] (see the module contract). Reached through `&mut File`
/// (`Mutex::get_mut`, no lock), or locked by the `&self` methods that wait for the running
/// operation; the `Mutex` also keeps `File` `Sync`.
#[derive(Default)]
pub(crate) struct Cursor {
    running: Option<Running>,
    /// For a running write: the address of the caller's slice it copied and how many bytes of
    /// it (see `poll_write_cursor`).
    write_of: Option<(usize, usize)>,
    /// Bytes read past what the caller took: `ahead[taken..]`.
    ahead: Vec<u8>,
    taken: usize,
    /// A buffer to reuse.
    spare: Vec<u8>,
    /// The tasks waiting for `running` (see [`Cursor::poll_running`]).
    waiting: Arc<Waiting>,
    /// tokio's `start_seek`, waiting for `poll_complete`.
    #[cfg(feature = "tokio-io")]
    seek: Option<SeekFrom>,
}

/// Every task waiting for the running operation: it is polled with a waker that wakes them all.
/// Through `&self` (`sync_all` on an `Arc<File>` in two tasks) several tasks may wait for one
/// operation, which keeps only the waker it was last polled with.
#[derive(Default)]
struct Waiting(std::sync::Mutex<Vec<Waker>>);

impl Wake for Waiting {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        let all = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for w in all {
            w.wake();
        }
    }
}

impl Cursor {
    /// Polls the running operation for `cx`'s task (`None`: nothing runs); every task that
    /// polled it since its last wake is woken when it can progress.
    fn poll_running(&mut self, cx: &mut Context<'_>) -> Poll<Option<Done>> {
        let Some(running) = self.running.as_mut() else { return Poll::Ready(None) };
        {
            let mut list = self.waiting.0.lock().unwrap_or_else(|p| p.into_inner());
            if !list.iter().any(|w| w.will_wake(cx.waker())) {
                list.push(cx.waker().clone());
            }
        }
        let fan = Waker::from(self.waiting.clone());
        let done = ready!(running.as_mut().poll(&mut Context::from_waker(&fan)));
        self.running = None;
        // Done without a wake (in this poll): the other waiters learn it now.
        let others = std::mem::take(&mut *self.waiting.0.lock().unwrap_or_else(|p| p.into_inner()));
        for w in others {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
        Poll::Ready(Some(done))
    }

    fn unread(&self) -> usize {
        self.ahead.len() - self.taken
    }

    /// Waits for the running operation: a read's bytes become the read-ahead, a write's error is
    /// returned.
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(done) = ready!(self.poll_running(cx)) else { return Poll::Ready(Ok(())) };
        self.write_of = None;
        Poll::Ready(self.absorb(done))
    }

    fn absorb(&mut self, done: Done) -> io::Result<()> {
        match done {
            Done::Read(Ok(_), buf) => {
                // A read starts only with nothing left ahead.
                self.spare = std::mem::replace(&mut self.ahead, buf);
                self.taken = 0;
                Ok(())
            }
            Done::Read(Err(e), buf) | Done::Write(Err(e), buf) => {
                self.spare = buf;
                Err(e)
            }
            Done::Write(Ok(()), buf) => {
                self.spare = buf;
                Ok(())
            }
        }
    }

    /// Gives the read-ahead back: moves the position of `fd` back over it. On a file that cannot
    /// seek the bytes stay, for the next reads.
    fn give_back(&mut self, fd: std::os::fd::RawFd) -> io::Result<()> {
        let unread = self.unread();
        if unread == 0 {
            return Ok(());
        }
        // SAFETY: `lseek` on the file's fd; it only moves the position.
        if unsafe { libc::lseek(fd, -(unread as libc::off_t), libc::SEEK_CUR) } < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ESPIPE) { Ok(()) } else { Err(e) };
        }
        self.ahead.clear();
        self.taken = 0;
        Ok(())
    }
}

impl File {
    fn cursor(&mut self) -> &mut Cursor {
        self.cursor.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a read of up to `len` bytes (at most [`MAX_CHUNK`]) at the file position.
    fn start_read(&mut self, len: usize) -> Running {
        let len = len.min(MAX_CHUNK);
        let mut buf = std::mem::take(&mut self.cursor().spare);
        buf.clear();
        buf.reserve(len);
        let file = self.std.clone();
        let error = self.error_context();
        Box::pin(async move {
            let (res, buf) = match crate::driver::uring_reactor() {
                Some(r) => {
                    let fd = file.as_raw_fd();
                    // Exactly `len` bytes: the buffer's capacity may be larger.
                    let (res, kept) = op::read(&r, fd, op::KeepAlive::new(buf.slice(..len), file)).await;
                    (res, kept.buf.into_inner())
                }
                None => {
                    blocking::run_buf("read", buf, move |b: &mut Vec<u8>| {
                        b.resize(len, 0);
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

impl File {
    fn poll_settle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.cursor().poll_settle(cx)
    }

    /// Waits for the operation a dropped call left running, through `&self` (`sync_all`,
    /// `sync_data`, `set_len`), and with `give_back` also gives the read-ahead back.
    pub(super) async fn settle_shared(&self, give_back: bool) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut c = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
            ready!(c.poll_settle(cx))?;
            if give_back {
                c.give_back(self.std.as_raw_fd()).map_err(|e| self.error("seek", e))?;
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Moves the file position (`lseek`, which does not block), counting from what the caller
    /// has seen (the read-ahead given back).
    fn seek_now(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let unread = self.cursor().unread() as i64;
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
        self.poll_read_into(cx, out.len(), |bytes| out[..bytes.len()].copy_from_slice(bytes))
    }

    /// A read of up to `want` bytes: `deliver` gets them (from the read-ahead or a finished
    /// read; never more than `want`), and their count is returned (0: end of file).
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
        deliver: impl FnOnce(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if want == 0 {
            return Poll::Ready(Ok(0));
        }
        loop {
            let c = self.cursor();
            if c.unread() > 0 {
                let n = want.min(c.unread());
                deliver(&c.ahead[c.taken..c.taken + n]);
                c.taken += n;
                return Poll::Ready(Ok(n));
            }
            if let Some(done) = ready!(c.poll_running(cx)) {
                c.write_of = None;
                if let Done::Read(Ok(0), buf) = done {
                    // End of file (or an empty read): reported once, the next read tries again.
                    c.spare = buf;
                    return Poll::Ready(Ok(0));
                }
                c.absorb(done)?;
                continue;
            }
            let running = self.start_read(want);
            self.cursor().running = Some(running);
        }
    }

    fn poll_write_cursor(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let key = data.as_ptr() as usize;
        loop {
            let c = self.cursor();
            if let Some(done) = ready!(c.poll_running(cx)) {
                let of = c.write_of.take();
                let was_write = matches!(done, Done::Write(..));
                c.absorb(done)?;
                match of {
                    // The same write polled again: the same start, at least as long (tokio's
                    // `io::copy` and a `BufWriter` append while a write is pending), and the bytes
                    // that landed are this slice's.
                    Some((ptr, n)) if was_write && ptr == key && c.spare.get(..n) == data.get(..n) => {
                        return Poll::Ready(Ok(n))
                    }
                    // An abandoned operation, finished: now this write.
                    _ => continue,
                }
            }
            // The bytes read ahead are not the caller's yet: the write goes where the caller is.
            let fd = self.std.as_raw_fd();
            if let Err(e) = self.cursor().give_back(fd) {
                return Poll::Ready(Err(self.error("seek", e)));
            }
            let n = data.len().min(MAX_CHUNK);
            let mut buf = std::mem::take(&mut self.cursor().spare);
            buf.clear();
            buf.extend_from_slice(&data[..n]);
            let running = self.start_write(buf);
            let c = self.cursor();
            c.running = Some(running);
            c.write_of = Some((key, n));
        }
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

/// Writes at the file position, each write reported once it landed (see the [`fs` module
/// docs](crate::fs)).
///
/// ```
/// use futures::AsyncWriteExt;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-cursor-write-{}", std::process::id()));
/// spindle::block_on(async {
///     let mut f = spindle::fs::File::create(&path).await.unwrap();
///     f.write_all(b"hello ").await.unwrap();
///     f.write_all(b"world").await.unwrap();
///     f.flush().await.unwrap(); // nothing left to wait for: each write landed when reported
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
        // Copied into the unfilled part as is (no zeroing of what the read does not reach).
        ready!(self.get_mut().poll_read_into(cx, buf.remaining(), |bytes| buf.put_slice(bytes)))?;
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
        if let Err(e) = ready!(f.poll_settle(cx)) {
            // The started seek fails with it (it is not kept for a later call).
            f.cursor().seek = None;
            return Poll::Ready(Err(e));
        }
        let pos = f.cursor().seek.take().unwrap_or(SeekFrom::Current(0));
        Poll::Ready(f.seek_now(pos))
    }
}
