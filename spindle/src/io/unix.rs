//! [`AsyncFd`]: readiness events for any file descriptor the caller owns (tokio's
//! `tokio::io::unix::AsyncFd`, same names), for fds spindle has no type for (an `eventfd`, a
//! `timerfd`, an `inotify` fd, a socket of another family, a library's fd).
//!
//! # Contract
//!
//! - An `AsyncFd<T>` owns `T` (which owns the fd) and a readiness registration of the fd with the
//!   reactor current where it is made (the fallback reactor outside runtimes), the same
//!   registration sockets use (`net::socket::PollSocket`, whose fd-closing `Socket` is never
//!   allowed to close this fd: it is handed back, not dropped, on every path). The fd must be
//!   non-blocking and stay open for the `AsyncFd`'s life; dropping the `AsyncFd` or
//!   [`into_inner`](AsyncFd::into_inner) deregisters it before `T` is dropped or returned.
//! - Readiness is edge-style and cleared by the caller: a wait returns a guard holding the event
//!   it saw; the caller does its syscall and, when that says `WouldBlock`, clears the event
//!   ([`AsyncFdReadyGuard::clear_ready`], or [`try_io`](AsyncFdReadyGuard::try_io), which does it).
//!   An event the reactor records after the guard's event (a newer tick) is never cleared by it.
//!   A guard dropped without clearing leaves the readiness for the next wait.
//! - `&self` waits may run in several tasks at once; each is woken by the next event.
//!   [`poll_read_ready`](AsyncFd::poll_read_ready)/[`poll_write_ready`](AsyncFd::poll_write_ready)
//!   keep one waker per direction (the last caller's), as tokio's do.
//! - Once the runtime driving the registration shuts down, waits fail with an error instead of
//!   hanging.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, RawFd};
use std::task::{Context, Poll};

use socket2::Socket;

use super::{Interest, Ready};
use crate::driver::{Direction, ReadyEvent};
use crate::net::socket::{LeaveOnDrop, PollSocket};

/// Readiness events for a file descriptor owned by `T` (tokio's `AsyncFd`).
///
/// Wait with [`readable`](Self::readable), [`writable`](Self::writable) or
/// [`ready`](Self::ready); each returns a guard. Do the non-blocking syscall through the guard's
/// [`try_io`](AsyncFdReadyGuard::try_io), which clears the readiness when the syscall says
/// `WouldBlock`, and wait again. [`async_io`](Self::async_io) is that loop.
///
/// The fd must be non-blocking (`O_NONBLOCK`); `AsyncFd` does not change its flags.
///
/// ```
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// use spindle::io::{unix::AsyncFd, Interest};
///
/// // SAFETY (of the example): eventfd returns a new fd or -1.
/// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
/// assert!(fd >= 0);
/// let efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
/// spindle::block_on(async {
///     let read_count = |fd: &OwnedFd| {
///         let mut n = 0u64;
///         let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
///         if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
///     };
///     let writer = efd.as_raw_fd();
///     spindle::spawn(async move {
///         let one = 1u64;
///         unsafe { libc::write(writer, (&one as *const u64).cast(), 8) };
///     });
///     let n = efd.async_io(Interest::READABLE, read_count).await.unwrap();
///     assert_eq!(n, 1);
/// });
/// ```
pub struct AsyncFd<T: AsRawFd> {
    /// `None` only while being taken apart (drop, `into_inner`).
    io: Option<PollSocket>,
    interest: Interest,
    inner: Option<T>,
}

/// The error of [`AsyncFd::try_new`] and [`AsyncFd::try_with_interest`]: the registration's
/// error and the value that could not be registered, given back.
///
/// ```
/// use spindle::io::unix::AsyncFd;
/// let file = std::fs::File::open("Cargo.toml").unwrap();
/// match AsyncFd::try_new(file) {
///     Ok(_) => {} // io_uring polls a regular file as always ready
///     Err(e) => {
///         let (file, error) = e.into_parts();
///         assert!(error.to_string().contains("AsyncFd"), "{error}");
///         drop(file);
///     }
/// }
/// ```
pub struct AsyncFdTryNewError<T> {
    inner: T,
    cause: io::Error,
}

impl<T> AsyncFdTryNewError<T> {
    /// The value given to `try_new` and the error.
    ///
    /// ```
    /// use spindle::io::unix::AsyncFd;
    /// #[derive(Debug)]
    /// struct NoFd;
    /// impl std::os::fd::AsRawFd for NoFd {
    ///     fn as_raw_fd(&self) -> std::os::fd::RawFd { -1 }
    /// }
    /// let (_no_fd, e) = AsyncFd::try_new(NoFd).unwrap_err().into_parts();
    /// assert_eq!(spindle::io::raw_os_error(&e), Some(libc::EBADF));
    /// ```
    pub fn into_parts(self) -> (T, io::Error) {
        (self.inner, self.cause)
    }
}

impl<T> fmt::Debug for AsyncFdTryNewError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFdTryNewError").field("cause", &self.cause).finish_non_exhaustive()
    }
}

impl<T> fmt::Display for AsyncFdTryNewError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.cause, f)
    }
}

impl<T> std::error::Error for AsyncFdTryNewError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

impl<T> From<AsyncFdTryNewError<T>> for io::Error {
    fn from(e: AsyncFdTryNewError<T>) -> io::Error {
        e.cause
    }
}

/// The error of a guard's `try_io` whose syscall said `WouldBlock` (the readiness is cleared:
/// wait again).
///
/// ```
/// let e = spindle::io::unix::TryIoError::default();
/// assert!(format!("{e:?}").contains("TryIoError"));
/// ```
#[derive(Debug, Default)]
pub struct TryIoError(());

impl<T: AsRawFd> AsyncFd<T> {
    /// Registers `inner`'s fd for both read and write readiness with the current runtime's
    /// reactor (the fallback reactor outside runtimes). `inner` is dropped if that fails; see
    /// [`try_new`](Self::try_new) to get it back.
    ///
    /// Made on a per-core runtime's handle from outside its cores, the fd is watched by the
    /// first core that waits on it, so an fd the backend cannot watch (a regular file on epoll)
    /// is reported by that first wait rather than here.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// assert!(efd.interest().is_readable() && efd.interest().is_writable());
    /// ```
    pub fn new(inner: T) -> io::Result<AsyncFd<T>> {
        AsyncFd::with_interest(inner, Interest::READABLE | Interest::WRITABLE)
    }

    /// [`new`](Self::new), for the readiness in `interest` only: a wait for another direction
    /// fails with `InvalidInput`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::with_interest(unsafe { OwnedFd::from_raw_fd(fd) }, Interest::READABLE).unwrap();
    /// spindle::block_on(async {
    ///     assert_eq!(efd.writable().await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    /// });
    /// ```
    pub fn with_interest(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
        AsyncFd::try_with_interest(inner, interest).map_err(io::Error::from)
    }

    /// [`new`](Self::new), giving `inner` back when it cannot be registered.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::try_new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// drop(efd);
    /// ```
    pub fn try_new(inner: T) -> Result<AsyncFd<T>, AsyncFdTryNewError<T>> {
        AsyncFd::try_with_interest(inner, Interest::READABLE | Interest::WRITABLE)
    }

    /// [`with_interest`](Self::with_interest), giving `inner` back when it cannot be registered.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::try_with_interest(unsafe { OwnedFd::from_raw_fd(fd) }, Interest::WRITABLE).unwrap();
    /// assert!(!efd.interest().is_readable());
    /// ```
    pub fn try_with_interest(inner: T, interest: Interest) -> Result<AsyncFd<T>, AsyncFdTryNewError<T>> {
        let fd = inner.as_raw_fd();
        if fd < 0 {
            let cause = io::Error::from_raw_os_error(libc::EBADF);
            let cause = crate::io::with_context(format!("AsyncFd: {fd} is not a file descriptor"), cause);
            return Err(AsyncFdTryNewError { inner, cause });
        }
        // Registered by number before any fd-owning value exists: whatever fails or unwinds in
        // there closes nothing of the caller's.
        let reg = match crate::driver::Registration::new(fd) {
            Ok(reg) => reg,
            Err(e) => {
                let cause = crate::io::with_context(
                    format!("AsyncFd: cannot watch fd {fd} for readiness (is it a file that can be polled?)"),
                    e,
                );
                return Err(AsyncFdTryNewError { inner, cause });
            }
        };
        // SAFETY: the `Socket` only carries the fd number for the registration's users; it is
        // never dropped (which would close the fd `inner` owns): `release` turns it back into a
        // bare number before anything else is dropped.
        let io = PollSocket::with_registration(unsafe { Socket::from_raw_fd(fd) }, reg);
        // The fan-outs first: several `&self` waits and a `poll_*_ready` caller may wait in one
        // direction at once.
        io.prepare_for_split();
        // No eager syscall before the first event: there is none to make here.
        io.wait_for_first_event(Direction::Read);
        io.wait_for_first_event(Direction::Write);
        Ok(AsyncFd { io: Some(io), interest, inner: Some(inner) })
    }

    fn io(&self) -> &PollSocket {
        self.io.as_ref().expect("AsyncFd used while being taken apart")
    }

    /// The interest it was registered with.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::with_interest(unsafe { OwnedFd::from_raw_fd(fd) }, Interest::READABLE).unwrap();
    /// assert_eq!(efd.interest(), Interest::READABLE);
    /// ```
    pub fn interest(&self) -> Interest {
        self.interest
    }

    /// The inner value.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// assert_eq!(efd.get_ref().as_raw_fd(), fd);
    /// ```
    pub fn get_ref(&self) -> &T {
        self.inner.as_ref().expect("AsyncFd used while being taken apart")
    }

    /// The inner value, mutably (it must keep the same fd open).
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// let _inner: &mut OwnedFd = efd.get_mut();
    /// ```
    pub fn get_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("AsyncFd used while being taken apart")
    }

    /// Deregisters the fd and gives the inner value back (the fd stays open, still
    /// non-blocking).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// let owned: OwnedFd = efd.into_inner();
    /// assert_eq!(owned.as_raw_fd(), fd);
    /// ```
    pub fn into_inner(mut self) -> T {
        self.release();
        self.inner.take().expect("AsyncFd taken apart twice")
    }

    /// Deregisters the fd, handing the registration's `Socket` back as a bare fd number so it
    /// closes nothing.
    fn release(&mut self) {
        if let Some(io) = self.io.take() {
            let _ = io.into_raw_fd_deregistered();
        }
    }

    fn check(&self, interest: Interest) -> io::Result<()> {
        let missing = (interest.is_readable() && !self.interest.is_readable())
            || (interest.is_writable() && !self.interest.is_writable());
        if missing {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "AsyncFd: waiting for {interest:?} on fd {} registered only for {:?}",
                    self.io().fd(),
                    self.interest
                ),
            ));
        }
        Ok(())
    }

    /// The events of a wait for `interest`: every direction asked for that has readiness.
    async fn wait(&self, interest: Interest) -> io::Result<[Option<ReadyEvent>; 2]> {
        self.check(interest)?;
        let io = self.io();
        let mut read = LeaveOnDrop { sock: io, dir: Direction::Read, wait: Default::default() };
        let mut write = LeaveOnDrop { sock: io, dir: Direction::Write, wait: Default::default() };
        poll_fn(|cx| {
            let mut events = [None, None];
            if interest.is_readable() {
                if let Poll::Ready(r) = io.poll_event_shared(cx, Direction::Read, &mut read.wait) {
                    events[0] = Some(r?);
                }
            }
            if interest.is_writable() {
                if let Poll::Ready(r) = io.poll_event_shared(cx, Direction::Write, &mut write.wait) {
                    events[1] = Some(r?);
                }
            }
            if events.iter().all(Option::is_none) {
                Poll::Pending
            } else {
                Poll::Ready(Ok(events))
            }
        })
        .await
    }

    /// Waits until the fd may be readable; several tasks may wait at once.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let guard = efd.readable().await.unwrap();
    ///     assert!(guard.ready().is_readable());
    /// });
    /// ```
    pub async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, T>> {
        self.ready(Interest::READABLE).await
    }

    /// Waits until the fd may be writable; several tasks may wait at once.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     assert!(efd.writable().await.unwrap().ready().is_writable());
    /// });
    /// ```
    pub async fn writable(&self) -> io::Result<AsyncFdReadyGuard<'_, T>> {
        self.ready(Interest::WRITABLE).await
    }

    /// Waits until the fd may be ready for any of `interest`; the guard says for what.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let guard = efd.ready(Interest::READABLE | Interest::WRITABLE).await.unwrap();
    ///     // Nothing to read yet, room to write.
    ///     assert!(guard.ready().is_writable() && !guard.ready().is_readable());
    /// });
    /// ```
    pub async fn ready(&self, interest: Interest) -> io::Result<AsyncFdReadyGuard<'_, T>> {
        let events = self.wait(interest).await?;
        Ok(AsyncFdReadyGuard { fd: self, seen: Seen::new(events, one_direction(interest)) })
    }

    /// [`readable`](Self::readable) through `&mut self`, for a guard that gives `&mut T`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     let _inner: &mut OwnedFd = guard.get_inner_mut();
    /// });
    /// ```
    pub async fn readable_mut(&mut self) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
        self.ready_mut(Interest::READABLE).await
    }

    /// [`writable`](Self::writable) through `&mut self`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     assert!(efd.writable_mut().await.unwrap().ready().is_writable());
    /// });
    /// ```
    pub async fn writable_mut(&mut self) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
        self.ready_mut(Interest::WRITABLE).await
    }

    /// [`ready`](Self::ready) through `&mut self`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     assert!(efd.ready_mut(Interest::WRITABLE).await.unwrap().ready().is_writable());
    /// });
    /// ```
    pub async fn ready_mut(&mut self, interest: Interest) -> io::Result<AsyncFdReadyMutGuard<'_, T>> {
        let events = self.wait(interest).await?;
        Ok(AsyncFdReadyMutGuard { fd: self, seen: Seen::new(events, one_direction(interest)) })
    }

    /// `Ready` with a guard once the fd may be readable, else `Pending` with `cx`'s waker kept
    /// to be woken by the next read event (only the last caller's waker is kept, as in tokio;
    /// use [`readable`](Self::readable) for several waiters).
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let guard = std::future::poll_fn(|cx| efd.poll_read_ready(cx)).await.unwrap();
    ///     assert!(guard.ready().is_readable());
    /// });
    /// ```
    pub fn poll_read_ready<'a>(&'a self, cx: &mut Context<'_>) -> Poll<io::Result<AsyncFdReadyGuard<'a, T>>> {
        self.poll_dir(cx, Direction::Read)
            .map_ok(|events| AsyncFdReadyGuard { fd: self, seen: Seen::new(events, true) })
    }

    /// [`poll_read_ready`](Self::poll_read_ready) for write readiness.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let guard = std::future::poll_fn(|cx| efd.poll_write_ready(cx)).await.unwrap();
    ///     assert!(guard.ready().is_writable());
    /// });
    /// ```
    pub fn poll_write_ready<'a>(&'a self, cx: &mut Context<'_>) -> Poll<io::Result<AsyncFdReadyGuard<'a, T>>> {
        self.poll_dir(cx, Direction::Write)
            .map_ok(|events| AsyncFdReadyGuard { fd: self, seen: Seen::new(events, true) })
    }

    /// [`poll_read_ready`](Self::poll_read_ready) through `&mut self`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     std::future::poll_fn(|cx| efd.poll_read_ready_mut(cx).map_ok(drop)).await.unwrap();
    /// });
    /// ```
    pub fn poll_read_ready_mut<'a>(
        &'a mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyMutGuard<'a, T>>> {
        let events = std::task::ready!(self.poll_dir(cx, Direction::Read))?;
        Poll::Ready(Ok(AsyncFdReadyMutGuard { fd: self, seen: Seen::new(events, true) }))
    }

    /// [`poll_write_ready`](Self::poll_write_ready) through `&mut self`.
    ///
    /// ```
    /// use std::os::fd::{FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     std::future::poll_fn(|cx| efd.poll_write_ready_mut(cx).map_ok(drop)).await.unwrap();
    /// });
    /// ```
    pub fn poll_write_ready_mut<'a>(
        &'a mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<AsyncFdReadyMutGuard<'a, T>>> {
        let events = std::task::ready!(self.poll_dir(cx, Direction::Write))?;
        Poll::Ready(Ok(AsyncFdReadyMutGuard { fd: self, seen: Seen::new(events, true) }))
    }

    fn poll_dir(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<io::Result<[Option<ReadyEvent>; 2]>> {
        let interest = match dir {
            Direction::Read => Interest::READABLE,
            Direction::Write => Interest::WRITABLE,
        };
        self.check(interest)?;
        let ev = std::task::ready!(self.io().poll_event(cx, dir))?;
        Poll::Ready(Ok(match dir {
            Direction::Read => [Some(ev), None],
            Direction::Write => [None, Some(ev)],
        }))
    }

    /// Waits for `interest` and runs the non-blocking syscall `f` on the inner value, again after
    /// each `WouldBlock` (clearing the readiness each time), until it gives anything else.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let add = |fd: &OwnedFd| {
    ///         let n = 5u64;
    ///         let r = unsafe { libc::write(fd.as_raw_fd(), (&n as *const u64).cast(), 8) };
    ///         if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
    ///     };
    ///     efd.async_io(Interest::WRITABLE, add).await.unwrap();
    ///     assert!(efd.readable().await.unwrap().ready().is_readable());
    /// });
    /// ```
    pub async fn async_io<R>(&self, interest: Interest, mut f: impl FnMut(&T) -> io::Result<R>) -> io::Result<R> {
        loop {
            let mut guard = self.ready(interest).await?;
            if let Ok(r) = guard.try_io(|fd| f(fd.get_ref())) {
                return r;
            }
        }
    }

    /// [`async_io`](Self::async_io) with `&mut T`.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(3, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let n = efd
    ///         .async_io_mut(Interest::READABLE, |fd| {
    ///             let mut n = 0u64;
    ///             let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    ///             if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
    ///         })
    ///         .await
    ///         .unwrap();
    ///     assert_eq!(n, 3);
    /// });
    /// ```
    pub async fn async_io_mut<R>(
        &mut self,
        interest: Interest,
        mut f: impl FnMut(&mut T) -> io::Result<R>,
    ) -> io::Result<R> {
        loop {
            let mut guard = self.ready_mut(interest).await?;
            if let Ok(r) = guard.try_io(|fd| f(fd.get_mut())) {
                return r;
            }
        }
    }

    /// Runs the non-blocking syscall `f` now, whatever the recorded readiness; a `WouldBlock`
    /// clears the readiness in `interest` recorded before the call, so the next wait sleeps until
    /// a new event.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// use spindle::io::{unix::AsyncFd, Interest};
    /// let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// let r = efd.try_io(Interest::READABLE, |fd| {
    ///     let mut n = 0u64;
    ///     let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
    ///     if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
    /// });
    /// assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    /// ```
    pub fn try_io<R>(&self, interest: Interest, f: impl FnOnce(&T) -> io::Result<R>) -> io::Result<R> {
        self.check(interest)?;
        let io = self.io();
        let before = [
            interest.is_readable().then(|| io.current_event(Direction::Read)),
            interest.is_writable().then(|| io.current_event(Direction::Write)),
        ];
        if io.is_shut_down() {
            return Err(crate::driver::shut_down_error());
        }
        let r = f(self.get_ref());
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            clear_would_block(io, &before, one_direction(interest));
        }
        r
    }
}

/// Whether a wait for `interest` was in one direction only: then the syscall that followed was
/// in that direction, and its `WouldBlock` proves the direction open.
fn one_direction(interest: Interest) -> bool {
    !(interest.is_readable() && interest.is_writable())
}

/// Clears, after a `WouldBlock`, the readiness each event saw. Closed states too when the wait
/// was in `one_direction` (a direction that says `WouldBlock` is open); after a wait in both,
/// the syscall may have been in the other direction, which proves nothing about this one's end
/// of stream, so they stay (nothing would announce them again).
fn clear_would_block(io: &PollSocket, events: &[Option<ReadyEvent>; 2], one_direction: bool) {
    for ev in events.iter().flatten() {
        let mut bits = ev.ready();
        if !one_direction {
            bits = Ready::from_bits(bits.bits() & !(Ready::READ_CLOSED | Ready::WRITE_CLOSED).bits());
        }
        io.clear_matching(*ev, bits);
    }
}

/// What a guard saw and what it cleared since, shared by both guard kinds.
struct Seen {
    /// The events of the wait, per direction slot (read, write).
    events: [Option<ReadyEvent>; 2],
    /// What the guard cleared (no longer in its `ready`).
    cleared: Ready,
    /// The wait was in one direction (see [`one_direction`]).
    one_direction: bool,
}

impl Seen {
    fn new(events: [Option<ReadyEvent>; 2], one_direction: bool) -> Seen {
        Seen { events, cleared: Ready::EMPTY, one_direction }
    }

    /// The readiness the events saw, less what was cleared.
    fn ready(&self) -> Ready {
        let all = self.events.iter().flatten().fold(Ready::EMPTY, |r, ev| r | ev.ready());
        Ready::from_bits(all.bits() & !self.cleared.bits())
    }

    /// Clears `bits` of what the events saw (unless newer events arrived since).
    fn clear_matching(&mut self, io: &PollSocket, bits: Ready) {
        for ev in self.events.iter().flatten() {
            io.clear_matching(*ev, bits);
        }
        self.cleared |= bits;
    }

    /// Clears all but closed states (a guard's `clear_ready`).
    fn clear_ready(&mut self, io: &PollSocket) {
        let data = Ready::from_bits(self.ready().bits() & !(Ready::READ_CLOSED | Ready::WRITE_CLOSED).bits());
        self.clear_matching(io, data);
    }

    /// A guard's `try_io` result: a `WouldBlock` clears the readiness and is `TryIoError`.
    fn after_try<R>(&mut self, io: &PollSocket, r: io::Result<R>) -> Result<io::Result<R>, TryIoError> {
        if matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            clear_would_block(io, &self.events, self.one_direction);
            self.cleared = Ready::ALL;
            return Err(TryIoError(()));
        }
        Ok(r)
    }
}

impl<T: AsRawFd> Drop for AsyncFd<T> {
    fn drop(&mut self) {
        // Deregistered before `inner` (and so the fd) is dropped.
        self.release();
    }
}

impl<T: AsRawFd> AsRawFd for AsyncFd<T> {
    fn as_raw_fd(&self) -> RawFd {
        self.io().fd()
    }
}

impl<T: AsRawFd> AsFd for AsyncFd<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd stays open while `self` (which owns `inner`, its owner) lives.
        unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
    }
}

impl<T: AsRawFd + fmt::Debug> fmt::Debug for AsyncFd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFd").field("inner", &self.inner).field("interest", &self.interest).finish()
    }
}

/// Readiness an [`AsyncFd`] wait saw, to be cleared when the syscall it allowed says
/// `WouldBlock` (tokio's `AsyncFdReadyGuard`). Dropped without clearing, the readiness stays.
///
/// ```
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// let fd = unsafe { libc::eventfd(2, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
/// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
/// spindle::block_on(async {
///     let mut guard = efd.readable().await.unwrap();
///     let read = |fd: &spindle::io::unix::AsyncFd<OwnedFd>| {
///         let mut n = 0u64;
///         let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
///         if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
///     };
///     assert_eq!(guard.try_io(read).unwrap().unwrap(), 2);
///     // The counter is empty now: the next read says WouldBlock, which clears the readiness.
///     assert!(guard.try_io(read).is_err());
/// });
/// ```
pub struct AsyncFdReadyGuard<'a, T: AsRawFd> {
    fd: &'a AsyncFd<T>,
    seen: Seen,
}

impl<'a, T: AsRawFd> AsyncFdReadyGuard<'a, T> {
    /// What the wait saw the fd ready for (less what this guard cleared).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     assert!(guard.ready().is_readable());
    /// });
    /// ```
    pub fn ready(&self) -> Ready {
        self.seen.ready()
    }

    /// Marks the fd not ready for what this guard saw (data, priority data, a pending error),
    /// after the syscall said `WouldBlock`: the next wait sleeps until a new event. Closed states
    /// stay (nothing would announce them again); an event recorded after this guard's stays too.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     guard.clear_ready(); // as after a read that said WouldBlock
    ///     assert!(guard.ready().is_empty());
    /// });
    /// ```
    pub fn clear_ready(&mut self) {
        self.seen.clear_ready(self.fd.io());
    }

    /// Clears only `ready`'s part of what this guard saw (closed states and errors included, if
    /// named).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     guard.clear_ready_matching(spindle::io::Ready::READABLE);
    ///     assert!(!guard.ready().is_readable());
    /// });
    /// ```
    pub fn clear_ready_matching(&mut self, ready: Ready) {
        self.seen.clear_matching(self.fd.io(), ready);
    }

    /// Keeps the readiness (what dropping the guard does too).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     guard.retain_ready(); // the next wait returns at once
    /// });
    /// ```
    pub fn retain_ready(&mut self) {}

    /// Runs the non-blocking syscall `f`; when it says `WouldBlock`, clears the readiness the
    /// guard saw (closed states too if the wait was in one direction, which the `WouldBlock`
    /// proves open) and returns `Err(TryIoError)` (wait again), else its result. See the type's
    /// example.
    pub fn try_io<R>(&mut self, f: impl FnOnce(&'a AsyncFd<T>) -> io::Result<R>) -> Result<io::Result<R>, TryIoError> {
        let r = f(self.fd);
        self.seen.after_try(self.fd.io(), r)
    }

    /// The `AsyncFd`.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     assert_eq!(guard.get_ref().as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_ref(&self) -> &'a AsyncFd<T> {
        self.fd
    }

    /// The `AsyncFd`'s inner value.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable().await.unwrap();
    ///     assert_eq!(guard.get_inner().as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_inner(&self) -> &'a T {
        self.fd.get_ref()
    }
}

impl<T: AsRawFd> fmt::Debug for AsyncFdReadyGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFdReadyGuard").field("ready", &self.ready()).finish_non_exhaustive()
    }
}

/// [`AsyncFdReadyGuard`] from a `&mut self` wait: gives `&mut` access to the `AsyncFd` and its
/// inner value.
///
/// ```
/// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
/// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
/// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
/// spindle::block_on(async {
///     let mut guard = efd.readable_mut().await.unwrap();
///     let r = guard.try_io(|fd| {
///         let mut n = 0u64;
///         let r = unsafe { libc::read(fd.get_mut().as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
///         if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
///     });
///     assert_eq!(r.unwrap().unwrap(), 1);
/// });
/// ```
pub struct AsyncFdReadyMutGuard<'a, T: AsRawFd> {
    fd: &'a mut AsyncFd<T>,
    seen: Seen,
}

impl<T: AsRawFd> AsyncFdReadyMutGuard<'_, T> {
    /// What the wait saw the fd ready for (less what this guard cleared).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     assert!(guard.ready().is_readable());
    /// });
    /// ```
    pub fn ready(&self) -> Ready {
        self.seen.ready()
    }

    /// See [`AsyncFdReadyGuard::clear_ready`].
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     guard.clear_ready(); // as after a read that said WouldBlock
    ///     assert!(guard.ready().is_empty());
    /// });
    /// ```
    pub fn clear_ready(&mut self) {
        self.seen.clear_ready(self.fd.io());
    }

    /// See [`AsyncFdReadyGuard::clear_ready_matching`].
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     guard.clear_ready_matching(spindle::io::Ready::READABLE);
    ///     assert!(!guard.ready().is_readable());
    /// });
    /// ```
    pub fn clear_ready_matching(&mut self, ready: Ready) {
        self.seen.clear_matching(self.fd.io(), ready);
    }

    /// Keeps the readiness (what dropping the guard does too).
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     guard.retain_ready(); // the next wait returns at once
    /// });
    /// ```
    pub fn retain_ready(&mut self) {}

    /// See [`AsyncFdReadyGuard::try_io`]; `f` gets `&mut AsyncFd`.
    pub fn try_io<R>(&mut self, f: impl FnOnce(&mut AsyncFd<T>) -> io::Result<R>) -> Result<io::Result<R>, TryIoError> {
        let r = f(self.fd);
        self.seen.after_try(self.fd.io(), r)
    }

    /// The `AsyncFd`.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     assert_eq!(guard.get_ref().as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_ref(&self) -> &AsyncFd<T> {
        self.fd
    }

    /// The `AsyncFd`, mutably.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     assert_eq!(guard.get_mut().as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_mut(&mut self) -> &mut AsyncFd<T> {
        self.fd
    }

    /// The inner value.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     assert_eq!(guard.get_inner().as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_inner(&self) -> &T {
        self.fd.get_ref()
    }

    /// The inner value, mutably.
    ///
    /// ```
    /// use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// let fd = unsafe { libc::eventfd(1, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    /// let mut efd = spindle::io::unix::AsyncFd::new(unsafe { OwnedFd::from_raw_fd(fd) }).unwrap();
    /// spindle::block_on(async {
    ///     let mut guard = efd.readable_mut().await.unwrap();
    ///     let inner: &mut OwnedFd = guard.get_inner_mut();
    ///     assert_eq!(inner.as_raw_fd(), fd);
    /// });
    /// ```
    pub fn get_inner_mut(&mut self) -> &mut T {
        self.fd.get_mut()
    }
}

impl<T: AsRawFd> fmt::Debug for AsyncFdReadyMutGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncFdReadyMutGuard").field("ready", &self.ready()).finish_non_exhaustive()
    }
}
