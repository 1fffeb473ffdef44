//! Owned-buffer I/O: the buffer traits, [`BufResult`], and the traits [`AsyncReadOwned`] and
//! [`AsyncWriteOwned`] that spindle's streams implement.
//!
//! # Contract
//!
//! What this module owns: the public vocabulary of spindle's I/O. Buffers ([`IoBuf`], [`IoBufMut`],
//! [`Slice`]) live in [`spindle_core::buf`] (runtime-neutral, `no_std`) and are re-exported here.
//!
//! **Naming rule** (DESIGN.md section 4): `read`, `read_exact`, `write`, `write_all`, `send_to`,
//! `recv_from` keep the `&mut [u8]` / `&[u8]` meaning they have in std, tokio and `futures`: on
//! spindle's streams they come from `futures_io::AsyncRead`/`AsyncWrite` (always) and tokio's io
//! traits (feature `tokio-io`), so `use futures::AsyncReadExt; stream.read(&mut buf).await` works
//! unchanged. Every operation that takes a buffer **by value** and gives it back ends in `_owned`:
//! `read_owned`, `write_all_owned`, `read_at_owned`, `send_to_owned`, ... Those are the operations
//! that completion I/O (io_uring) serves without a copy, and that stay sound when their future is
//! dropped mid-flight (the operation, not the caller, owns the buffer until the kernel is done).
//!
//! **Send-ness.** The futures of [`AsyncReadOwned`] and [`AsyncWriteOwned`] are declared `Send`
//! (and the traits require `Send`), so generic code over `S: AsyncReadOwned` can be handed to
//! [`spawn`](crate::spawn) on the multi-thread runtime without naming the futures' types (which
//! stable Rust cannot bound otherwise: `async fn` in a trait gives callers no way to require
//! `Send`). Buffers are `Send` already ([`IoBuf`] requires it: an orphaned operation's buffer is
//! dropped by the driver, possibly on another thread). A `!Send` stream implements the same
//! operations as inherent methods instead.
//!
//! **Cancel safety.** Dropping an owned-buffer future never frees memory the kernel still uses;
//! the buffer is dropped (or recycled) once the kernel is done. Whether data was transferred when
//! the future is dropped is unknown, as with any cancelled I/O: in general a stream whose read was
//! cancelled may have lost the bytes that read took. Use the result, not cancellation, to stop
//! reading. Spindle's own sockets lose nothing: what a dropped read took (bytes, a whole datagram,
//! the end of stream, an error) is kept on the socket and returned, in order, by its next read of
//! any kind.
//!
//! **Small buffers on several workers.** Owned buffers live on the heap, and the allocator packs
//! small ones side by side (a 64-byte box from glibc's `malloc` takes 80 bytes, so neighbouring
//! boxes share cache lines). When the connections those buffers belong to are served by
//! different workers of the multi-thread runtime, the kernel's copies into them and the tasks'
//! reads of them on two cores take the shared lines from each other. Give each connection's
//! small buffers lines of their own (a type aligned to 128 bytes, as `spindle-bench`'s echo
//! does): measured on the 64-byte echo over two workers, 8% of the round trip.
//!
//! ```
//! use spindle::io::{AsyncReadOwned, AsyncWriteOwned, BufResult, IoBuf, IoBufMut};
//!
//! // Any stream: here a toy in-memory one; spindle's TCP and Unix streams implement the same traits.
//! struct Pipe(Vec<u8>);
//!
//! impl AsyncWriteOwned for Pipe {
//!     async fn write_owned<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
//!         // SAFETY: `IoBuf` promises `bytes_init()` initialized bytes at `stable_ptr()`.
//!         let data = unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) };
//!         self.0.extend_from_slice(data);
//!         (Ok(data.len()), buf)
//!     }
//!     async fn flush(&mut self) -> std::io::Result<()> { Ok(()) }
//!     async fn shutdown(&mut self) -> std::io::Result<()> { Ok(()) }
//! }
//!
//! spindle::block_on(async {
//!     let mut p = Pipe(Vec::new());
//!     let (res, buf) = p.write_all_owned(b"hello".to_vec()).await;
//!     res.unwrap();
//!     assert_eq!(buf, b"hello"); // the buffer comes back
//!     assert_eq!(p.0, b"hello");
//! });
//! ```

pub(crate) mod blocking;
mod context;
#[cfg(feature = "hyper")]
pub mod hyper;
mod ready;
mod traits;
pub mod unix;

pub use context::raw_os_error;
pub(crate) use context::with_context;
pub use ready::{Interest, Ready};
pub use spindle_core::buf::{IoBuf, IoBufMut, Slice};
pub use std::io::{Error, ErrorKind, Result};
pub use traits::{AsyncReadOwned, AsyncWriteOwned};

/// The result of an owned-buffer operation: the outcome and the buffer, given back either way.
///
/// ```
/// use spindle::io::BufResult;
/// fn give_back(buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
///     (Ok(buf.len()), buf)
/// }
/// let (n, buf) = give_back(vec![1, 2, 3]);
/// assert_eq!((n.unwrap(), buf.len()), (3, 3));
/// ```
pub type BufResult<T, B> = (std::io::Result<T>, B);
