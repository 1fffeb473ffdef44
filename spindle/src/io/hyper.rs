//! hyper 1.x on spindle (feature `hyper`): the runtime traits hyper asks its user to provide.
//!
//! # Contract
//!
//! - **I/O**: [`TcpStream`](crate::net::TcpStream), [`UnixStream`](crate::net::UnixStream) and
//!   their owned halves implement `hyper::rt::Read` and `hyper::rt::Write` directly, zero-copy:
//!   they wait for readiness (epoll, or a poll op on io_uring) and then run one non-blocking
//!   syscall straight into hyper's buffer. No wrapper type, no intermediate copy.
//! - **Executor**: [`HyperExecutor`] spawns the background tasks hyper's HTTP/2 and pooled client
//!   connections need onto a spindle runtime: the one current when the executor was made (it
//!   keeps a [`Handle`](crate::runtime::Handle)), so it also works when hyper calls it from a
//!   thread outside the runtime.
//! - **Timer**: [`HyperTimer`] backs hyper's header-read timeouts and keep-alive timers with
//!   spindle's timer wheel, so they follow spindle's clock (virtual time in tests included).
//!
//! ```
//! use http_body_util::Full;
//! use hyper::body::{Bytes, Incoming};
//! use hyper::{Request, Response};
//! use spindle::io::hyper::HyperTimer;
//! use spindle::net::{TcpListener, TcpStream};
//!
//! spindle::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = spindle::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         let hello = hyper::service::service_fn(|_req: Request<Incoming>| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("hello"))))
//!         });
//!         hyper::server::conn::http1::Builder::new()
//!             .timer(HyperTimer::new())
//!             .serve_connection(stream, hello)
//!             .await
//!             .unwrap();
//!     });
//!
//!     let stream = TcpStream::connect(addr).await.unwrap();
//!     let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.unwrap();
//!     let conn = spindle::spawn(conn);
//!     let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
//!     let resp = sender.send_request(req).await.unwrap();
//!     assert_eq!(resp.status(), 200);
//!     drop(sender); // closes the connection: both ends finish
//!     conn.await.unwrap().unwrap();
//!     server.await.unwrap();
//! });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use crate::runtime::Handle;
use crate::time::{Instant, Sleep};

/// A `hyper::rt::Executor` that spawns onto a spindle runtime.
///
/// Made inside a runtime, it keeps that runtime's [`Handle`]; made outside one, it spawns onto
/// whichever runtime is current when hyper calls it (and panics with spindle's "spawn outside a
/// runtime" message if there is none).
///
/// ```
/// use spindle::io::hyper::HyperExecutor;
///
/// spindle::block_on(async {
///     let exec = HyperExecutor::new();
///     let (tx, rx) = spindle::sync::oneshot::channel();
///     hyper::rt::Executor::execute(&exec, async move { tx.send(7).unwrap() });
///     assert_eq!(rx.await.unwrap(), 7);
/// });
/// ```
#[derive(Clone, Default)]
pub struct HyperExecutor {
    handle: Option<Handle>,
}

impl HyperExecutor {
    /// An executor for the current runtime (or, outside one, for whichever is current later).
    pub fn new() -> HyperExecutor {
        HyperExecutor { handle: Handle::try_current().ok() }
    }

    /// An executor for the runtime behind `handle`.
    ///
    /// ```
    /// let rt = spindle::runtime::Runtime::new().unwrap();
    /// let exec = spindle::io::hyper::HyperExecutor::with_handle(rt.handle().clone());
    /// # drop(exec);
    /// ```
    pub fn with_handle(handle: Handle) -> HyperExecutor {
        HyperExecutor { handle: Some(handle) }
    }
}

impl fmt::Debug for HyperExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HyperExecutor").field("bound", &self.handle.is_some()).finish()
    }
}

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    #[track_caller]
    fn execute(&self, fut: F) {
        // Detached, as hyper expects: the connection task ends when its connection does.
        match &self.handle {
            Some(h) => drop(h.spawn(fut)),
            None => drop(crate::spawn(fut)),
        }
    }
}

/// A `hyper::rt::Timer` on spindle's timers (and therefore on spindle's clock: paused or
/// advanced virtual time applies to hyper's timeouts too).
///
/// ```
/// use std::time::Duration;
/// use hyper::rt::Timer;
///
/// spindle::block_on(async {
///     let t = spindle::io::hyper::HyperTimer::new();
///     t.sleep(Duration::from_millis(1)).await;
/// });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer(());

impl HyperTimer {
    /// The timer.
    pub fn new() -> HyperTimer {
        HyperTimer(())
    }
}

/// A spindle [`Sleep`] as hyper's `Sleep` (which must be `Sync`).
struct HyperSleep {
    inner: Sleep,
}

// SAFETY: a `&HyperSleep` gives access to nothing: the only way to reach `inner` is through
// `Pin<&mut HyperSleep>` (polling, resetting), which requires exclusive access. Sharing a
// reference across threads therefore cannot race on the sleep's state.
unsafe impl Sync for HyperSleep {}

impl HyperSleep {
    fn inner(self: Pin<&mut Self>) -> Pin<&mut Sleep> {
        // SAFETY: structural pinning: `inner` is never moved out of a pinned `HyperSleep`.
        unsafe { self.map_unchecked_mut(|s| &mut s.inner) }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner().poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl hyper::rt::Timer for HyperTimer {
    /// Spindle's clock (virtual time in tests included): hyper computes its deadlines from this.
    fn now(&self) -> StdInstant {
        Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep { inner: crate::time::sleep(duration) })
    }

    fn sleep_until(&self, deadline: StdInstant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep { inner: crate::time::sleep_until(Instant::from_std(deadline)) })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: StdInstant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(s) => s.inner().reset(Instant::from_std(new_deadline)),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}
