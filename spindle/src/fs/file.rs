//! [`File`] and [`OpenOptions`].

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::{path_error, Metadata, Permissions};
use crate::driver::uring::op;
use crate::driver::Reactor;
use crate::io::blocking;
use crate::io::{BufResult, IoBuf, IoBufMut};

/// An open file, read and written at explicit positions with owned buffers, or as a stream.
///
/// All positional methods take `&self`: positional I/O has no cursor, so several tasks may use
/// one `File` (share it with an `Arc`). For stream-style code (`read_to_end`, `write_all`, `seek`,
/// `BufReader`, `io::copy`), `File` implements `futures_io`'s `AsyncRead`/`AsyncWrite`/`AsyncSeek`
/// and, under `tokio-io`, tokio's, at the file's own position (a write is reported once it
/// landed). The descriptor is closed when the `File` and every operation still running on it are
/// gone. See the [module docs](crate::fs) for the error and cancellation rules.
///
/// ```
/// use spindle::fs::File;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-file-{}", std::process::id()));
/// spindle::block_on(async {
///     let f = File::create_new(&path).await.unwrap(); // read-write
///     let (res, _) = f.write_all_at_owned(b"hello world".to_vec(), 0).await;
///     res.unwrap();
///     let (res, buf) = f.read_at_owned(Vec::with_capacity(5), 6).await;
///     assert_eq!(res.unwrap(), 5);
///     assert_eq!(buf, b"world");
///     f.sync_all().await.unwrap();
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
pub struct File {
    pub(super) std: Arc<std::fs::File>,
    /// For error messages (absent for files made by `from_std`).
    path: Option<Arc<Path>>,
    /// Whether positional io_uring ops may be used: set at the first one (see `check_seekable`).
    seekable: OnceLock<bool>,
    /// The stream-style traits' state (`fs::cursor`).
    pub(super) cursor: std::sync::Mutex<super::cursor::Cursor>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("fd", &self.std.as_raw_fd()).field("path", &self.path).finish()
    }
}

/// Offsets past `i64::MAX` are refused before an io_uring op is built (the kernel's offsets are
/// signed, and io_uring reads `-1` as "the file position").
fn check_offset(pos: u64) -> io::Result<u64> {
    if pos > i64::MAX as u64 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "offset too large"));
    }
    Ok(pos)
}

/// The error of a write the file took nothing more of.
pub(super) fn write_zero(written: usize, total: usize) -> io::Error {
    io::Error::new(io::ErrorKind::WriteZero, format!("the file accepted no more after {written} of {total} bytes"))
}

/// Retries a syscall wrapper on `EINTR`.
pub(super) fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// `pread` into `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` is valid for writes of `len` bytes for the duration of the call.
unsafe fn pread(fd: RawFd, ptr: *mut u8, len: usize, pos: u64) -> io::Result<usize> {
    let pos =
        libc::off_t::try_from(pos).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let len = len.min(isize::MAX as usize);
    // SAFETY: the caller guarantees `ptr` is writable for `len` bytes.
    let n = unsafe { libc::pread(fd, ptr.cast(), len, pos) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `pwrite` of `len` bytes at `ptr`.
///
/// # Safety
/// `ptr` is valid for reads of `len` initialized bytes for the duration of the call.
unsafe fn pwrite(fd: RawFd, ptr: *const u8, len: usize, pos: u64) -> io::Result<usize> {
    let pos =
        libc::off_t::try_from(pos).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
    let len = len.min(isize::MAX as usize);
    // SAFETY: the caller guarantees `ptr` is readable for `len` initialized bytes.
    let n = unsafe { libc::pwrite(fd, ptr.cast(), len, pos) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl File {
    /// Opens a file read-only.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let e = spindle::fs::File::open("/no/such/file").await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    ///     assert!(e.to_string().starts_with("open /no/such/file: "), "{e}");
    /// });
    /// ```
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens a file write-only, creating it or truncating it.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-create-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     assert_eq!(f.metadata().await.unwrap().len(), 0);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().write(true).create(true).truncate(true).open(path).await
    }

    /// Creates a new file read-write, failing with `AlreadyExists` if it exists.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-create-new-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let _f = spindle::fs::File::create_new(&path).await.unwrap();
    ///     let e = spindle::fs::File::create_new(&path).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).create_new(true).open(path).await
    }

    /// A builder of open options (`File::options().append(true).open(p)`).
    ///
    /// ```
    /// let opts = spindle::fs::File::options();
    /// # drop(opts);
    /// ```
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Wraps an open `std::fs::File`.
    ///
    /// ```
    /// let f = spindle::fs::File::from_std(std::fs::File::open("/dev/null").unwrap());
    /// # drop(f);
    /// ```
    pub fn from_std(file: std::fs::File) -> File {
        File { std: Arc::new(file), path: None, seekable: OnceLock::new(), cursor: Default::default() }
    }

    /// What [`error`](Self::error) adds to an error, as a function an operation can carry.
    pub(super) fn error_context(&self) -> impl Fn(&str, io::Error) -> io::Error + Send + 'static {
        let (path, fd) = (self.path.clone(), self.std.as_raw_fd());
        move |op, e| match &path {
            Some(p) => path_error(op, p, e),
            None => crate::io::with_context(format!("{op} fd {fd}"), e),
        }
    }

    pub(super) fn error(&self, op: &str, e: io::Error) -> io::Error {
        match &self.path {
            Some(p) => path_error(op, p, e),
            None => crate::io::with_context(format!("{op} fd {}", self.std.as_raw_fd()), e),
        }
    }

    /// Runs `f` on the blocking pool with the file and its buffer, naming `op` in errors.
    async fn run_buf<B, T>(
        &self,
        op: &'static str,
        buf: B,
        f: impl FnOnce(&std::fs::File, &mut B) -> io::Result<T> + Send + 'static,
    ) -> BufResult<T, B>
    where
        B: Send + 'static,
        T: Send + 'static,
    {
        let file = self.std.clone();
        let (res, buf) = blocking::run_buf(op, buf, move |b| f(&file, b)).await;
        (res.map_err(|e| self.error(op, e)), buf)
    }

    /// Reads up to `buf.bytes_total()` bytes at offset `pos` into the start of `buf`; the buffer
    /// then holds exactly the bytes read (`Ok(0)`: `pos` is at or past the end).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-read-at-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     spindle::fs::write(&path, "0123456789").await.unwrap();
    ///     let f = spindle::fs::File::open(&path).await.unwrap();
    ///     let (res, buf) = f.read_at_owned(vec![0u8; 4], 3).await;
    ///     assert_eq!((res.unwrap(), &buf[..]), (4, &b"3456"[..]));
    ///     let (res, buf) = f.read_at_owned(buf, 100).await;
    ///     assert_eq!((res.unwrap(), buf.len()), (0, 0));
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn read_at_owned<B: IoBufMut>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Some(reactor) = crate::driver::uring_reactor() {
            let (res, buf) = self.uring_read_at(&reactor, buf, pos).await;
            return (res.map_err(|e| self.error("read_at", e)), buf);
        }
        self.run_buf("read_at", buf, move |f, b| {
            let total = b.bytes_total();
            // SAFETY: `IoBufMut` promises `bytes_total()` writable bytes at the stable pointer.
            let n = retry(|| unsafe { pread(f.as_raw_fd(), b.stable_mut_ptr(), total, pos) })?;
            // SAFETY: the kernel initialized the first `n <= total` bytes.
            unsafe { b.set_init(n) };
            Ok(n)
        })
        .await
    }

    /// Reads exactly `buf.bytes_total()` bytes at `pos`, or fails with `UnexpectedEof` (the buffer
    /// then holds what was read).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-read-exact-at-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     spindle::fs::write(&path, "abc").await.unwrap();
    ///     let f = spindle::fs::File::open(&path).await.unwrap();
    ///     let (res, buf) = f.read_exact_at_owned(Vec::with_capacity(2), 1).await;
    ///     res.unwrap();
    ///     assert_eq!(buf, b"bc");
    ///     let (res, _) = f.read_exact_at_owned(vec![0u8; 8], 0).await;
    ///     assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn read_exact_at_owned<B: IoBufMut>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        if let Some(reactor) = crate::driver::uring_reactor() {
            // io_uring reads until full (each one an op).
            let total = buf.bytes_total();
            let mut filled = 0;
            let mut buf = buf;
            let mut result = Ok(());
            while filled < total {
                let Some(at) = pos.checked_add(filled as u64) else {
                    result = Err(io::Error::new(io::ErrorKind::InvalidInput, "offset too large"));
                    break;
                };
                let (res, slice) = self.uring_read_at(&reactor, buf.slice(filled..), at).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        result = Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("end of file after {filled} of {total} bytes"),
                        ));
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            // The buffer holds what was read, no more (a slice's `set_init` never shrinks its
            // buffer, so a buffer that came with a length would keep its old bytes past `filled`).
            // SAFETY: the first `filled` bytes were written by the kernel (contiguously from 0).
            unsafe { buf.set_init(filled) };
            return (result.map_err(|e| self.error("read_exact_at", e)), buf);
        }
        self.run_buf("read_exact_at", buf, move |f, b| {
            let total = b.bytes_total();
            let mut filled = 0;
            let mut result = Ok(());
            while filled < total {
                // SAFETY: `filled < total`, so the range `filled..total` is inside the buffer's
                // writable bytes (`IoBufMut`'s contract).
                match retry(|| unsafe {
                    pread(f.as_raw_fd(), b.stable_mut_ptr().add(filled), total - filled, pos + filled as u64)
                }) {
                    Ok(0) => {
                        result = Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("end of file after {filled} of {total} bytes"),
                        ));
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            // SAFETY: the first `filled` bytes were written by the kernel (contiguously from 0).
            unsafe { b.set_init(filled) };
            result
        })
        .await
    }

    /// Writes up to `buf.bytes_init()` bytes at offset `pos`, returning how many were written.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-write-at-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     let (res, buf) = f.write_at_owned("abc", 2).await;
    ///     assert_eq!((res.unwrap(), buf), (3, "abc"));
    ///     assert_eq!(spindle::fs::read(&path).await.unwrap(), b"\0\0abc");
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn write_at_owned<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<usize, B> {
        if let Some(reactor) = crate::driver::uring_reactor() {
            let (res, buf) = self.uring_write_at(&reactor, buf, pos).await;
            return (res.map_err(|e| self.error("write_at", e)), buf);
        }
        self.run_buf("write_at", buf, move |f, b| {
            // SAFETY: `IoBuf` promises `bytes_init()` initialized bytes at the stable pointer.
            retry(|| unsafe { pwrite(f.as_raw_fd(), b.stable_ptr(), b.bytes_init(), pos) })
        })
        .await
    }

    /// Writes all of `buf.bytes_init()` bytes at offset `pos` (`WriteZero` if the file takes no more).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-write-all-at-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     let (res, buf) = f.write_all_at_owned(vec![b'x'; 100_000], 0).await;
    ///     res.unwrap();
    ///     assert_eq!(buf.len(), 100_000);
    ///     assert_eq!(f.metadata().await.unwrap().len(), 100_000);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn write_all_at_owned<B: IoBuf>(&self, buf: B, pos: u64) -> BufResult<(), B> {
        if let Some(reactor) = crate::driver::uring_reactor() {
            // io_uring writes until all is written (each one an op).
            let total = buf.bytes_init();
            let mut written = 0;
            let mut buf = buf;
            while written < total {
                let Some(at) = pos.checked_add(written as u64) else {
                    let e = io::Error::new(io::ErrorKind::InvalidInput, "offset too large");
                    return (Err(self.error("write_all_at", e)), buf);
                };
                let (res, slice) = self.uring_write_at(&reactor, buf.slice(written..total), at).await;
                buf = slice.into_inner();
                match res {
                    Ok(0) => return (Err(self.error("write_all_at", write_zero(written, total))), buf),
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return (Err(self.error("write_all_at", e)), buf),
                }
            }
            return (Ok(()), buf);
        }
        self.run_buf("write_all_at", buf, move |f, b| {
            let total = b.bytes_init();
            let mut written = 0;
            while written < total {
                // SAFETY: `written < total`, so `written..total` is inside the initialized bytes.
                let n = retry(|| unsafe {
                    pwrite(f.as_raw_fd(), b.stable_ptr().add(written), total - written, pos + written as u64)
                })?;
                if n == 0 {
                    return Err(write_zero(written, total));
                }
                written += n;
            }
            Ok(())
        })
        .await
    }

    /// An io_uring read at `pos` (errors without the operation's name): no blocking-pool hop.
    /// The op owns an `Arc` of the file with the buffer, so an op orphaned by a dropped future
    /// keeps the fd open until its final completion (its number cannot be reused under the kernel).
    async fn uring_read_at<B: IoBufMut>(&self, reactor: &Arc<Reactor>, buf: B, pos: u64) -> BufResult<usize, B> {
        let pos = match self.uring_offset(pos) {
            Ok(p) => p,
            Err(e) => return (Err(e), buf),
        };
        let buf = op::KeepAlive::new(buf, self.std.clone());
        let (res, buf) = op::read_at(reactor, self.std.as_raw_fd(), buf, pos).await;
        (res, buf.buf)
    }

    /// An io_uring write at `pos`, holding the file open as [`uring_read_at`](Self::uring_read_at).
    async fn uring_write_at<B: IoBuf>(&self, reactor: &Arc<Reactor>, buf: B, pos: u64) -> BufResult<usize, B> {
        let pos = match self.uring_offset(pos) {
            Ok(p) => p,
            Err(e) => return (Err(e), buf),
        };
        let buf = op::KeepAlive::new(buf, self.std.clone());
        let (res, buf) = op::write_at(reactor, self.std.as_raw_fd(), buf, pos).await;
        (res, buf.buf)
    }

    /// The offset of a positional io_uring op, once it is known to be representable and the file
    /// able to seek.
    fn uring_offset(&self, pos: u64) -> io::Result<u64> {
        let pos = check_offset(pos)?;
        self.check_seekable()?;
        Ok(pos)
    }

    /// Refuses positional io_uring ops on a file that cannot seek (a pipe, FIFO or socket), as
    /// `pread`/`pwrite` do with `ESPIPE`: there the kernel ignores an io_uring op's offset and
    /// reads or writes the stream. One `lseek` per file, at its first positional op.
    fn check_seekable(&self) -> io::Result<()> {
        let seekable = *self.seekable.get_or_init(|| {
            // SAFETY: `lseek` on an fd we own; moving by 0 from the current offset changes nothing.
            let r = unsafe { libc::lseek(self.std.as_raw_fd(), 0, libc::SEEK_CUR) };
            !(r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESPIPE))
        });
        if seekable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ESPIPE))
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&std::fs::File) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        self.run_buf(op, (), move |file, _| f(file)).await.0
    }

    /// Flushes data and metadata to the device (`fsync`).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-sync-all-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     f.sync_all().await.unwrap();
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn sync_all(&self) -> io::Result<()> {
        // A stream write a dropped call left running lands first (`fs::cursor`).
        self.settle_shared(false).await?;
        self.run("sync_all", |f| f.sync_all()).await
    }

    /// Flushes data (not necessarily metadata) to the device (`fdatasync`).
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-sync-data-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     f.sync_data().await.unwrap();
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn sync_data(&self) -> io::Result<()> {
        self.settle_shared(false).await?;
        self.run("sync_data", |f| f.sync_data()).await
    }

    /// The file's metadata.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::open("/dev/null").await.unwrap();
    ///     assert!(!f.metadata().await.unwrap().is_dir());
    /// });
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.run("metadata", |f| f.metadata()).await
    }

    /// Truncates or extends (with zeros) the file to `size` bytes.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-set-len-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     f.set_len(10).await.unwrap();
    ///     assert_eq!(f.metadata().await.unwrap().len(), 10);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        // Also gives back bytes the stream reads took ahead: later reads see the new length.
        self.settle_shared(true).await?;
        self.run("set_len", move |f| f.set_len(size)).await
    }

    /// Changes the file's permissions.
    ///
    /// ```
    /// use std::os::unix::fs::PermissionsExt;
    /// # let path = std::env::temp_dir().join(format!("spindle-doc-perm-{}", std::process::id()));
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::create(&path).await.unwrap();
    ///     f.set_permissions(std::fs::Permissions::from_mode(0o600)).await.unwrap();
    ///     assert_eq!(f.metadata().await.unwrap().permissions().mode() & 0o777, 0o600);
    ///     # spindle::fs::remove_file(&path).await.unwrap();
    /// });
    /// ```
    pub async fn set_permissions(&self, perm: Permissions) -> io::Result<()> {
        self.run("set_permissions", move |f| f.set_permissions(perm)).await
    }

    /// A second `File` for the same open file description (`dup`), which shares the stream
    /// position: it starts where this one's caller is (bytes this one's stream reads took ahead
    /// are given back first).
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let f = spindle::fs::File::open("/dev/null").await.unwrap();
    ///     let g = f.try_clone().await.unwrap();
    ///     assert!(g.metadata().await.is_ok());
    /// });
    /// ```
    pub async fn try_clone(&self) -> io::Result<File> {
        self.settle_shared(true).await?;
        let std = self.run("try_clone", |f| f.try_clone()).await?;
        Ok(File { std: Arc::new(std), path: self.path.clone(), seekable: OnceLock::new(), cursor: Default::default() })
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.std.as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.std.as_fd()
    }
}

/// Options for opening a file, with the builder methods of `std::fs::OpenOptions`.
///
/// ```
/// use spindle::fs::OpenOptions;
/// # let path = std::env::temp_dir().join(format!("spindle-doc-opts-{}", std::process::id()));
/// spindle::block_on(async {
///     let f = OpenOptions::new().read(true).write(true).create(true).open(&path).await.unwrap();
///     let (res, _) = f.write_all_at_owned("data", 0).await;
///     res.unwrap();
///     # spindle::fs::remove_file(&path).await.unwrap();
/// });
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions(std::fs::OpenOptions);

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// Options with everything off (set at least one of read, write, append).
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new();
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Open for reading.
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().read(true);
    /// ```
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Open for writing.
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().write(true);
    /// ```
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Open for appending (`O_APPEND`: on Linux, positional writes then also append).
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().append(true);
    /// ```
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate to length 0 when opening (needs write).
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().write(true).truncate(true);
    /// ```
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it does not exist (needs write or append).
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().write(true).create(true);
    /// ```
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing with `AlreadyExists` if it exists.
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().write(true).create_new(true);
    /// ```
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// The mode bits of a created file (before the umask), as `OpenOptionsExt::mode`.
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().write(true).create(true).mode(0o600);
    /// ```
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.0.mode(mode);
        self
    }

    /// Extra `open(2)` flags (`libc::O_DIRECT`, ...), as `OpenOptionsExt::custom_flags`.
    ///
    /// ```
    /// let _ = spindle::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME);
    /// ```
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.0.custom_flags(flags);
        self
    }

    /// Opens `path` with these options.
    ///
    /// ```
    /// spindle::block_on(async {
    ///     let e = spindle::fs::OpenOptions::new().open("/tmp").await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput); // no access mode chosen
    /// });
    /// ```
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        let opts = self.0.clone();
        let path: PathBuf = path.as_ref().to_owned();
        let path: Arc<Path> = Arc::from(path);
        let p = path.clone();
        let std = blocking::run("open", move || opts.open(&p).map_err(|e| path_error("open", &p, e))).await?;
        Ok(File { std: Arc::new(std), path: Some(path), seekable: OnceLock::new(), cursor: Default::default() })
    }
}
