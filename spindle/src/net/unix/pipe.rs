//! Unix pipes and FIFOs (named pipes), tokio's `net::unix::pipe`: [`pipe()`] makes an anonymous
//! pipe, [`OpenOptions`] opens a FIFO by path, and [`Sender`]/[`Receiver`] take over any pipe
//! end (from a `File` or an `OwnedFd`).
//!
//! # Contract
//!
//! - An end is a non-blocking fd registered with the reactor of the runtime it was made in, as a
//!   socket is: it waits for readiness (epoll, or a poll op on io_uring) and then reads or
//!   writes with a non-blocking `read(2)`/`write(2)` into the caller's slice. No copy buffer, and
//!   nothing is lost when a read or write future is dropped: a syscall either ran (and its
//!   result was returned) or did not.
//! - [`Receiver`] implements `futures_io::AsyncRead` (and tokio's `AsyncRead` under `tokio-io`);
//!   [`Sender`] implements `AsyncWrite`. The readiness methods (`readable`, `writable`, `ready`)
//!   take `&self`, and several tasks may wait at once.
//! - End of stream: a read returns `Ok(0)` once every write end is closed and the pipe is empty.
//!   A write to a pipe whose read ends are all closed fails with `BrokenPipe` (Rust programs
//!   ignore `SIGPIPE`, so it does not kill the process).
//! - Checks: an end made from a `File` or fd must be a FIFO opened for its direction
//!   (`InvalidInput` otherwise), unless taken with the `_unchecked` constructors or
//!   [`OpenOptions::unchecked`], which accept any fd that can be polled (a character device, a
//!   terminal).
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt};
//! spindle::block_on(async {
//!     let (mut tx, mut rx) = spindle::net::unix::pipe::pipe().unwrap();
//!     let writer = spindle::spawn(async move {
//!         tx.write_all(b"hello through a pipe").await.unwrap();
//!         // Dropping the only write end ends the stream.
//!     });
//!     let mut got = String::new();
//!     rx.read_to_string(&mut got).await.unwrap();
//!     assert_eq!(got, "hello through a pipe");
//!     writer.await.unwrap();
//! });
//! ```

use std::fmt;
use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use socket2::Socket;

use crate::driver::Direction;
use crate::io::{with_context, Interest, Ready};
use crate::net::socket::{as_uninit, PollSocket, IOV_MAX};

/// Makes an anonymous pipe: what is written to the [`Sender`] is read from the [`Receiver`].
/// Both ends are close-on-exec and registered with the current runtime's reactor (or the global
/// one outside a runtime).
///
/// Errors when the process or system is out of file descriptors (`EMFILE`/`ENFILE`).
///
/// ```
/// spindle::block_on(async {
///     let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
///     tx.writable().await.unwrap();
///     assert_eq!(tx.try_write(b"ping").unwrap(), 4);
///     rx.readable().await.unwrap();
///     let mut buf = [0u8; 8];
///     assert_eq!(rx.try_read(&mut buf).unwrap(), 4);
///     assert_eq!(&buf[..4], b"ping");
/// });
/// ```
pub fn pipe() -> io::Result<(Sender, Receiver)> {
    let (read, write) = os_pipe()?;
    let rx = register(read, Direction::Read)?;
    Ok((Sender { io: register(write, Direction::Write)? }, Receiver { io: rx }))
}

/// A new pipe's (read, write) fds, close-on-exec and non-blocking, registered nowhere.
pub(crate) fn os_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two fds `pipe2` writes on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(with_context("creating a pipe".to_string(), io::Error::last_os_error()));
    }
    // SAFETY: `pipe2` succeeded: both fds are new, open, and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Registers `fd`, already non-blocking, with the current reactor, as an end for `dir`.
///
/// A read end's first read waits for the reactor's event instead of trying `read(2)` first: a
/// FIFO nobody has opened for writing yet reads as end of stream (0) at once, though nothing
/// hung up, and `poll` reports nothing for it. tokio's first read waits too; reading 0 there,
/// a "reopen on end of stream" loop spun.
fn register(fd: OwnedFd, dir: Direction) -> io::Result<PollSocket> {
    // `Socket` is only the fd's owner here (closing it on drop); no socket call is made on it.
    let io = PollSocket::new(Socket::from(fd)).map_err(|e| {
        // epoll refuses regular files and directories (EPERM): only an `_unchecked` end can be one.
        with_context("registering a pipe end with the reactor (is it a file that can be polled?)".to_string(), e)
    })?;
    if dir == Direction::Read {
        io.wait_for_first_event(Direction::Read);
    }
    Ok(io)
}

/// Sets or clears `O_NONBLOCK` on `fd` (`what` names the step in the error).
pub(crate) fn set_nonblocking(fd: RawFd, on: bool, what: &str) -> io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns, reading and then setting its status flags.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(with_context(what.to_string(), io::Error::last_os_error()))
    }
}

/// Checks that `fd` is a FIFO opened for `dir` (read or write access).
fn check_fifo(fd: BorrowedFd<'_>, dir: Direction) -> io::Result<()> {
    let end = match dir {
        Direction::Read => "Receiver",
        Direction::Write => "Sender",
    };
    // fstat on the borrowed fd (a `File` to call `metadata` on would need a duplicate fd, which
    // fails at the fd limit).
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` has room for one `stat`, which fstat fills on success; the fd is live.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return Err(with_context(format!("pipe::{end}: fstat"), io::Error::last_os_error()));
    }
    // SAFETY: fstat succeeded, so `st` is initialized.
    let mode = unsafe { st.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFIFO {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pipe::{end}: the file is not a FIFO (use the `_unchecked` constructors for other pollable files)"),
        ));
    }
    // SAFETY: F_GETFL on a live fd borrowed for the call.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(with_context(format!("pipe::{end}: reading the fd's flags"), io::Error::last_os_error()));
    }
    let access = flags & libc::O_ACCMODE;
    let allowed = match dir {
        Direction::Read => access == libc::O_RDONLY || access == libc::O_RDWR,
        Direction::Write => access == libc::O_WRONLY || access == libc::O_RDWR,
    };
    if !allowed {
        let access = if dir == Direction::Read { "reading" } else { "writing" };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pipe::{end}: the FIFO was not opened for {access}"),
        ));
    }
    Ok(())
}

/// Takes over `fd` as an end for `dir`: checked (unless `unchecked`), made non-blocking,
/// registered.
fn adopt(fd: OwnedFd, dir: Direction, unchecked: bool) -> io::Result<PollSocket> {
    if !unchecked {
        check_fifo(fd.as_fd(), dir)?;
    }
    set_nonblocking(fd.as_raw_fd(), true, "making a pipe end non-blocking")?;
    register(fd, dir)
}

/// The fd of `io`, unregistered, with `O_NONBLOCK` as `nonblocking` says.
fn release(io: PollSocket, nonblocking: bool) -> io::Result<OwnedFd> {
    let fd = OwnedFd::from(io.into_socket());
    if !nonblocking {
        set_nonblocking(fd.as_raw_fd(), false, "making a pipe end blocking again")?;
    }
    Ok(fd)
}

/// A `read(2)`/`write(2)`/`readv`/`writev` result: the byte count, or the error `errno` names.
fn byte_count(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn sys_read(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writes for the whole call.
    byte_count(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

fn sys_readv(fd: RawFd, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    // At most `IOV_MAX` buffers (a partial read, as std's): the kernel refuses more (EINVAL).
    let n = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: `IoSliceMut` has the layout of `iovec`; each is valid for writes for the call.
    byte_count(unsafe { libc::readv(fd, bufs.as_mut_ptr().cast(), n) })
}

fn sys_write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of reads for the whole call.
    byte_count(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

fn sys_writev(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // At most `IOV_MAX` buffers (a partial write, as std's `write_vectored`).
    let n = bufs.len().min(IOV_MAX) as libc::c_int;
    // SAFETY: `IoSlice` has the layout of `iovec`; each is valid for reads for the call.
    byte_count(unsafe { libc::writev(fd, bufs.as_ptr().cast(), n) })
}

/// Options for opening a FIFO by path (tokio's `pipe::OpenOptions`).
///
/// ```
/// # spindle::block_on(async {
/// let dir = std::env::temp_dir().join(format!("spindle-doc-fifo-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("fifo");
/// # let _ = std::fs::remove_file(&path);
/// let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
/// assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
/// use spindle::net::unix::pipe::OpenOptions;
/// let rx = OpenOptions::new().open_receiver(&path).unwrap();
/// let tx = OpenOptions::new().open_sender(&path).unwrap();
/// tx.writable().await.unwrap();
/// tx.try_write(b"x").unwrap();
/// rx.readable().await.unwrap();
/// # drop((rx, tx));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    read_write: bool,
    unchecked: bool,
}

impl OpenOptions {
    /// Default options: the FIFO is opened for its end's direction only, and must be a FIFO.
    ///
    /// ```
    /// let o = spindle::net::unix::pipe::OpenOptions::new();
    /// # drop(o);
    /// ```
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }

    /// Opens the FIFO for reading and writing (`O_RDWR`, Linux-specific). A sender then opens
    /// even with no reader (otherwise that fails with `ENXIO`), and a receiver never sees end
    /// of stream, since it holds a write end itself.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("spindle-doc-fifo-rw-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let path = dir.join("fifo");
    /// # let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    /// # assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    /// # spindle::block_on(async {
    /// use spindle::net::unix::pipe::OpenOptions;
    /// // Nobody reads the FIFO yet: a write-only open would fail.
    /// assert!(OpenOptions::new().open_sender(&path).is_err());
    /// let tx = OpenOptions::new().read_write(true).open_sender(&path).unwrap();
    /// # drop(tx);
    /// # });
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn read_write(&mut self, on: bool) -> &mut OpenOptions {
        self.read_write = on;
        self
    }

    /// Skips the check that the path is a FIFO: any file that supports `poll` will do, such as
    /// a character device whose driver implements it. (epoll refuses files that do not, regular
    /// files and `/dev/null` among them, with `EPERM`; io_uring reports them always ready.)
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("spindle-doc-fifo-unchecked-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// # let path = dir.join("fifo");
    /// # let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    /// # assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    /// # spindle::block_on(async {
    /// use spindle::net::unix::pipe::OpenOptions;
    /// // No fstat to check the file type first.
    /// let rx = OpenOptions::new().unchecked(true).open_receiver(&path).unwrap();
    /// # drop(rx);
    /// # });
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn unchecked(&mut self, on: bool) -> &mut OpenOptions {
        self.unchecked = on;
        self
    }

    /// Opens the FIFO at `path` as a [`Receiver`]. Without writers yet, the open does not wait
    /// (it is non-blocking); reads do, until a writer opens the FIFO and writes (or closes it
    /// again: end of stream). Once every writer has left, reads return end of stream until a
    /// new writer comes.
    ///
    /// Errors: the path does not exist or cannot be opened (the message names it), or it is not
    /// a FIFO (`InvalidInput`, unless [`unchecked`](Self::unchecked)).
    ///
    /// ```
    /// let e = spindle::net::unix::pipe::OpenOptions::new().open_receiver("/nonexistent/fifo").unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    /// assert!(e.to_string().contains("/nonexistent/fifo"));
    /// ```
    pub fn open_receiver(&self, path: impl AsRef<Path>) -> io::Result<Receiver> {
        self.open(path.as_ref(), Direction::Read).map(|io| Receiver { io })
    }

    /// Opens the FIFO at `path` as a [`Sender`].
    ///
    /// Errors: as [`open_receiver`](Self::open_receiver), and `ENXIO` (tell it with
    /// [`spindle::io::raw_os_error`](crate::io::raw_os_error); the message says why) when no
    /// process has the FIFO open for reading, unless [`read_write`](Self::read_write) is set.
    ///
    /// ```
    /// let e = spindle::net::unix::pipe::OpenOptions::new().open_sender("/dev/null").unwrap_err();
    /// assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput); // not a FIFO
    /// ```
    pub fn open_sender(&self, path: impl AsRef<Path>) -> io::Result<Sender> {
        self.open(path.as_ref(), Direction::Write).map(|io| Sender { io })
    }

    fn open(&self, path: &Path, dir: Direction) -> io::Result<PollSocket> {
        let mut o = std::fs::OpenOptions::new();
        if self.read_write {
            o.read(true).write(true);
        } else if dir == Direction::Read {
            o.read(true);
        } else {
            o.write(true);
        }
        // std adds O_CLOEXEC.
        let file = o.custom_flags(libc::O_NONBLOCK).open(path).map_err(|e| {
            let what = if dir == Direction::Read { "a pipe receiver" } else { "a pipe sender" };
            if e.raw_os_error() == Some(libc::ENXIO) {
                with_context(
                    format!("opening {} as {what}: no process has the FIFO open for reading (OpenOptions::read_write opens it anyway)", path.display()),
                    e,
                )
            } else {
                with_context(format!("opening {} as {what}", path.display()), e)
            }
        })?;
        adopt(file.into(), dir, self.unchecked)
    }
}

/// The write end of a pipe: `AsyncWrite` (futures-io; tokio's under `tokio-io`), `writable` and
/// `try_write` for readiness-style code. Dropping it closes the fd; when no write end is left,
/// readers see end of stream.
///
/// ```
/// use futures::AsyncWriteExt;
/// spindle::block_on(async {
///     let (mut tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
///     tx.write_all(b"abc").await.unwrap();
///     # drop(rx);
/// });
/// ```
pub struct Sender {
    io: PollSocket,
}

/// The read end of a pipe: `AsyncRead` (futures-io; tokio's under `tokio-io`), `readable` and
/// `try_read` for readiness-style code.
///
/// ```
/// use futures::AsyncReadExt;
/// spindle::block_on(async {
///     let (tx, mut rx) = spindle::net::unix::pipe::pipe().unwrap();
///     drop(tx);
///     let mut buf = [0u8; 4];
///     assert_eq!(rx.read(&mut buf).await.unwrap(), 0); // no writer left: end of stream
/// });
/// ```
pub struct Receiver {
    io: PollSocket,
}

impl fmt::Debug for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("fd", &self.io.fd()).finish()
    }
}

impl fmt::Debug for Receiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver").field("fd", &self.io.fd()).finish()
    }
}

/// The constructors and conversions both ends share; `$dir` is the end's direction.
macro_rules! pipe_end_conversions {
    ($ty:ident, $var:literal, $dir:expr, $doc_open:literal) => {
        impl $ty {
            /// Takes over `file`, which must be a FIFO opened for this end's direction (else
            /// `InvalidInput`); it is made non-blocking and registered with the current runtime.
            ///
            /// ```
            #[doc = $doc_open]
            /// ```
            pub fn from_file(file: File) -> io::Result<$ty> {
                $ty::from_owned_fd(file.into())
            }

            /// [`from_file`](Self::from_file) for an fd.
            ///
            /// ```
            #[doc = $doc_open]
            /// ```
            pub fn from_owned_fd(fd: OwnedFd) -> io::Result<$ty> {
                adopt(fd, $dir, false).map(|io| $ty { io })
            }

            /// Takes over `file` without checking that it is a FIFO opened for this direction
            /// (any file that supports `poll`: see [`OpenOptions::unchecked`]). It is still made
            /// non-blocking and registered.
            ///
            /// ```
            /// # spindle::block_on(async {
            /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
            #[doc = concat!("let f = std::fs::File::from(", $var, ".into_blocking_fd().unwrap());")]
            #[doc = concat!("let end = spindle::net::unix::pipe::", stringify!($ty), "::from_file_unchecked(f).unwrap();")]
            /// # drop(end);
            /// # });
            /// ```
            pub fn from_file_unchecked(file: File) -> io::Result<$ty> {
                $ty::from_owned_fd_unchecked(file.into())
            }

            /// [`from_file_unchecked`](Self::from_file_unchecked) for an fd.
            ///
            /// ```
            /// # spindle::block_on(async {
            /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
            #[doc = concat!("let f = std::fs::File::from(", $var, ".into_blocking_fd().unwrap());")]
            #[doc = concat!("let end = spindle::net::unix::pipe::", stringify!($ty), "::from_owned_fd_unchecked(f.into()).unwrap();")]
            /// # drop(end);
            /// # });
            /// ```
            pub fn from_owned_fd_unchecked(fd: OwnedFd) -> io::Result<$ty> {
                adopt(fd, $dir, true).map(|io| $ty { io })
            }

            /// The fd, no longer watched by the runtime and blocking again (for std I/O, or for
            /// a child process to inherit).
            ///
            /// ```
            /// # spindle::block_on(async {
            /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
            #[doc = concat!("let fd = ", $var, ".into_blocking_fd().unwrap();")]
            /// use std::os::fd::AsRawFd;
            /// assert_eq!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK, 0);
            /// # });
            /// ```
            pub fn into_blocking_fd(self) -> io::Result<OwnedFd> {
                release(self.io, false)
            }

            /// The fd, no longer watched by the runtime, still non-blocking.
            ///
            /// ```
            /// # spindle::block_on(async {
            /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
            #[doc = concat!("let fd = ", $var, ".into_nonblocking_fd().unwrap();")]
            /// use std::os::fd::AsRawFd;
            /// assert_ne!(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) } & libc::O_NONBLOCK, 0);
            /// # });
            /// ```
            pub fn into_nonblocking_fd(self) -> io::Result<OwnedFd> {
                release(self.io, true)
            }
        }

        impl AsRawFd for $ty {
            fn as_raw_fd(&self) -> RawFd {
                self.io.fd()
            }
        }

        impl AsFd for $ty {
            fn as_fd(&self) -> BorrowedFd<'_> {
                // SAFETY: the fd stays open while `self` (which owns it) is borrowed.
                unsafe { BorrowedFd::borrow_raw(self.io.fd()) }
            }
        }
    };
}

pipe_end_conversions!(
    Sender,
    "tx",
    Direction::Write,
    "# spindle::block_on(async {\nlet (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();\n// An anonymous pipe's write end is a FIFO opened for writing.\nlet fd = tx.into_blocking_fd().unwrap();\nlet tx = spindle::net::unix::pipe::Sender::from_owned_fd(fd).unwrap();\n// A read end is refused.\nlet e = spindle::net::unix::pipe::Sender::from_owned_fd(rx.into_blocking_fd().unwrap()).unwrap_err();\nassert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);\n# drop(tx);\n# });"
);
pipe_end_conversions!(
    Receiver,
    "rx",
    Direction::Read,
    "# spindle::block_on(async {\nlet (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();\nlet rx = spindle::net::unix::pipe::Receiver::from_owned_fd(rx.into_blocking_fd().unwrap()).unwrap();\n// A regular file is refused.\nlet f = std::fs::File::open(\"/proc/self/exe\").unwrap();\nlet e = spindle::net::unix::pipe::Receiver::from_file(f).unwrap_err();\nassert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);\n# drop((tx, rx));\n# });"
);

impl Sender {
    /// Waits until the pipe takes a write (room in its buffer, or no reader left: the write
    /// then reports `BrokenPipe`). Several tasks may wait at once. Each readiness event is
    /// checked with a zero-timeout `poll(2)`, so this returns only when there was room; another
    /// writer may still fill it first, and [`try_write`](Self::try_write) then fails with
    /// `WouldBlock`. Cancel-safe.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// tx.writable().await.unwrap();
    /// assert_eq!(tx.try_write(b"hello").unwrap(), 5);
    /// # drop(rx);
    /// # });
    /// ```
    pub async fn writable(&self) -> io::Result<()> {
        self.io.ready_for(Interest::WRITABLE, false).await.map(drop)
    }

    /// Waits until the pipe is ready for `interest` (only writability means anything for a
    /// write end) and says what it is ready for; no reader left shows as
    /// [`Ready::is_write_closed`] (and [`Ready::is_error`]). Cancel-safe.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// use spindle::io::Interest;
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// assert!(tx.ready(Interest::WRITABLE).await.unwrap().is_writable());
    /// # drop(rx);
    /// # });
    /// ```
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        let r = self.io.ready_for(interest, false).await?;
        // A pipe's write end reports an error (`POLLERR`) for one thing only: no reader is left.
        // That is a closed write side (as tokio reports it); writes fail with `BrokenPipe`.
        Ok(if r.is_error() { r | Ready::WRITE_CLOSED } else { r })
    }

    /// Polls for room to write (tokio's `poll_write_ready`): `Ready` once a write can go in (or
    /// no reader is left), checked as [`writable`](Self::writable) checks it. Only the waker of
    /// the last call is kept, so use it from one task; several tasks wait with `writable`.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// std::future::poll_fn(|cx| tx.poll_write_ready(cx)).await.unwrap();
    /// assert_eq!(tx.try_write(b"ok").unwrap(), 2);
    /// # drop(rx);
    /// # });
    /// ```
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_ready_checked(cx, Direction::Write)
    }

    /// Writes what the pipe takes now from `buf`, without waiting: `WouldBlock` when its buffer
    /// is full (use with [`writable`](Self::writable)), `BrokenPipe` when no reader is left.
    /// Up to `PIPE_BUF` (4096) bytes are written atomically, all or nothing.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// drop(rx);
    /// assert_eq!(tx.try_write(b"x").unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
    /// # });
    /// ```
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        let fd = self.io.fd();
        self.io.try_io_now(Direction::Write, || sys_write(fd, buf))
    }

    /// [`try_write`](Self::try_write) from several buffers in order (`writev(2)`).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// use std::io::IoSlice;
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// let n = tx.try_write_vectored(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")]).unwrap();
    /// assert_eq!(n, 4);
    /// # drop(rx);
    /// # });
    /// ```
    pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let fd = self.io.fd();
        self.io.try_io_now(Direction::Write, || sys_writev(fd, bufs))
    }

    fn poll_write_priv(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let fd = self.io.fd();
        self.io.poll_io(cx, Direction::Write, || sys_write(fd, buf))
    }

    fn poll_write_vectored_priv(&self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let fd = self.io.fd();
        self.io.poll_io(cx, Direction::Write, || sys_writev(fd, bufs))
    }
}

impl Receiver {
    /// Waits until the pipe has something to read (data, or end of stream once no writer is
    /// left). Several tasks may wait at once. Each readiness event is checked with a
    /// zero-timeout `poll(2)`, so this returns only when there was something; another reader
    /// may still take it first, and [`try_read`](Self::try_read) then fails with `WouldBlock`.
    /// Cancel-safe.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// tx.try_write(b"hi").unwrap();
    /// rx.readable().await.unwrap();
    /// let mut buf = [0u8; 4];
    /// assert_eq!(rx.try_read(&mut buf).unwrap(), 2);
    /// # });
    /// ```
    pub async fn readable(&self) -> io::Result<()> {
        self.io.ready_for(Interest::READABLE, false).await.map(drop)
    }

    /// Waits until the pipe is ready for `interest` (only readability means anything for a
    /// read end) and says what it is ready for; no writer left shows as
    /// [`Ready::is_read_closed`]. Cancel-safe.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// use spindle::io::Interest;
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// drop(tx);
    /// assert!(rx.ready(Interest::READABLE).await.unwrap().is_read_closed());
    /// # });
    /// ```
    pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
        self.io.ready_for(interest, false).await
    }

    /// Polls for something to read (tokio's `poll_read_ready`): `Ready` once data or end of
    /// stream is there, checked as [`readable`](Self::readable) checks it. Only the waker of the
    /// last call is kept, so use it from one task; several tasks wait with `readable`.
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// tx.try_write(b"x").unwrap();
    /// std::future::poll_fn(|cx| rx.poll_read_ready(cx)).await.unwrap();
    /// assert_eq!(rx.try_read(&mut [0u8; 4]).unwrap(), 1);
    /// # });
    /// ```
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_ready_checked(cx, Direction::Read)
    }

    /// Reads what is there now into `buf`, without waiting: `Ok(0)` at end of stream (or for an
    /// empty `buf`), `WouldBlock` when nothing is there yet (use with
    /// [`readable`](Self::readable)).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// let mut buf = [0u8; 4];
    /// assert_eq!(rx.try_read(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// drop(tx);
    /// assert_eq!(rx.try_read(&mut buf).unwrap(), 0);
    /// # });
    /// ```
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.io.fd();
        self.io.try_io_now(Direction::Read, || sys_read(fd, as_uninit(buf)))
    }

    /// [`try_read`](Self::try_read) into several buffers in order (`readv(2)`).
    ///
    /// ```
    /// # spindle::block_on(async {
    /// use std::io::IoSliceMut;
    /// let (tx, rx) = spindle::net::unix::pipe::pipe().unwrap();
    /// tx.try_write(b"abcd").unwrap();
    /// let (mut a, mut b) = ([0u8; 2], [0u8; 2]);
    /// rx.readable().await.unwrap();
    /// assert_eq!(rx.try_read_vectored(&mut [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)]).unwrap(), 4);
    /// assert_eq!((&a, &b), (b"ab", b"cd"));
    /// # });
    /// ```
    pub fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let fd = self.io.fd();
        self.io.try_io_now(Direction::Read, || sys_readv(fd, bufs))
    }

    fn poll_read_uninit(&self, cx: &mut Context<'_>, buf: &mut [MaybeUninit<u8>]) -> Poll<io::Result<usize>> {
        let fd = self.io.fd();
        self.io.poll_io(cx, Direction::Read, || sys_read(fd, buf))
    }
}

impl futures_io::AsyncRead for Receiver {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        self.poll_read_uninit(cx, as_uninit(buf))
    }

    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        let fd = self.io.fd();
        self.io.poll_io(cx, Direction::Read, || sys_readv(fd, bufs))
    }
}

impl futures_io::AsyncWrite for Sender {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_priv(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_priv(cx, bufs)
    }

    /// Nothing is buffered: a write is in the pipe once it returned.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// A pipe has no half-close: dropping the `Sender` closes it.
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncRead for Receiver {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<io::Result<()>> {
        // read(2) straight into the unfilled part: no zeroing first.
        // SAFETY: `read` only writes (initializes) the bytes it reports, and only those are
        // marked initialized below; nothing reads the unfilled part.
        let unfilled = unsafe { buf.unfilled_mut() };
        let n = std::task::ready!(self.poll_read_uninit(cx, unfilled))?;
        // SAFETY: the read initialized the first `n` unfilled bytes.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(feature = "tokio-io")]
impl tokio::io::AsyncWrite for Sender {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_priv(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_priv(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
